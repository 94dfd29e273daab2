/**
 * Flow filters: validated once, then split into what the kernel can filter (so fewer
 * flows cross into user space) and a predicate the library applies to every flow, so the
 * result is the same on kernels that lack a filter.
 */
import {
  AF_INET, AF_INET6, AF_UNSPEC, CTA_FILTER, CTA_FILTER_F_CTA_IP_DST, CTA_FILTER_F_CTA_IP_SRC,
  CTA_FILTER_F_CTA_PROTO_DST_PORT, CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE,
  CTA_FILTER_F_CTA_PROTO_ICMPV6_ID, CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE,
  CTA_FILTER_F_CTA_PROTO_ICMP_CODE, CTA_FILTER_F_CTA_PROTO_ICMP_ID,
  CTA_FILTER_F_CTA_PROTO_ICMP_TYPE, CTA_FILTER_F_CTA_PROTO_NUM, CTA_FILTER_F_CTA_PROTO_SRC_PORT,
  CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST,
  CTA_IP_V6_SRC, CTA_MARK, CTA_MARK_MASK, CTA_PROTO_DST_PORT, CTA_PROTO_ICMPV6_CODE,
  CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID,
  CTA_PROTO_ICMP_TYPE, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_STATUS, CTA_STATUS_MASK,
  CTA_TUPLE_IP, CTA_TUPLE_ORIG, CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, CTA_ZONE, Family,
  IPPROTO_ICMP, IPPROTO_ICMPV6, IPS_DST_NAT_DONE_BIT, IPS_SRC_NAT_DONE_BIT, PORT_PROTOS, STATUS_NAMES, StatusFlag,
} from '../wire/enums';
import { Prefix, parsePrefix, prefixContains, parseAddress } from '../common/address';
import { invalid } from '../common/errors';
import { checkKeys, checkObject, checkU16, checkU32, checkU8, isObject, show } from '../common/validate';
import { AttrWriter } from '../wire/netlink';
import { checkPort, protoName, protoNumber } from './tuple';
import type { Flow } from './flow';
import type { RawEntry, RawTuple } from './raw-entry';
import type { ProtoSpec } from './protocols';
import { acceptedStates, canonicalState, stateNames } from './states';

export interface TupleFilter {
  /** Address or prefix (`'10.0.0.1'`, `'10.0.0.0/8'`, `'fd00::/8'`). */
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  icmp?: { type?: number; code?: number; id?: number };
  /** Per-direction tuple zone. */
  zone?: number;
}

export interface FlowFilter {
  /** Default: both. */
  family?: Family;
  /** A name (built-in, or from /etc/protocols such as 'igmp') or a number 0-255. */
  proto?: ProtoSpec;
  /** Exact mark, or `{ value, mask }`: matches when (flow.mark & mask) === value. */
  mark?: number | { value: number; mask: number };
  zone?: number;
  /**
   * Status flags: an array means all listed flags are set; `{ set, unset }` also
   * requires the `unset` flags to be clear.
   */
  status?: readonly StatusFlag[] | { set?: readonly StatusFlag[]; unset?: readonly StatusFlag[] };
  orig?: TupleFilter;
  reply?: TupleFilter;
  /**
   * TCP, SCTP or DCCP state name (or several: any of them), as Flow.state shows it, e.g.
   * 'ESTABLISHED'. The conntrack CLI's aliases are accepted too: LISTEN (TCP, = SYN_SENT2)
   * and SHUTDOWN_RECV (SCTP, = SHUTDOWN_RECD). With `proto`, names are checked against that
   * protocol's states.
   */
  state?: string | string[];
  /**
   * Translated entries, as `conntrack --src-nat/--dst-nat/--any-nat` selects them: 'src'
   * when the source was rewritten (the reply goes to another address or port than the
   * original came from), 'dst' when the destination was, 'any' for either. IPv4 and IPv6.
   */
  nat?: 'src' | 'dst' | 'any';
  /**
   * The address the entry was translated to (SNAT: reply.dst; DNAT: reply.src), or a
   * prefix; implies `nat: 'any'` when `nat` is not given. Like the CLI, an address only
   * matches when it differs from the original one.
   */
  natAddress?: string;
  /** The port the entry was translated to (SNAT: reply.dport; DNAT: reply.sport). */
  natPort?: number;
  /**
   * Which kernel list to read (list and dump only): 'conntrack' (default), 'dying' or
   * 'unconfirmed'. See docs/dump.md for what Linux answers for the last two.
   */
  table?: FlowTable;
}

/** The kernel lists a dump can read. */
export type FlowTable = 'conntrack' | 'dying' | 'unconfirmed';

interface CompiledTuple {
  src?: Prefix;
  dst?: Prefix;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  icmpId?: number;
  zone?: number;
}

/** A validated filter: what to send to the kernel, and the predicate to apply. */
export interface CompiledFilter {
  nfFamily: number;
  /** Attributes for a dump or flush request (may be empty). */
  kernelAttrs: Buffer;
  /** Applied to every decoded flow. */
  match(flow: Flow): boolean;
  /**
   * match() on an entry read in place (see raw-entry.ts), for the filters it can decide:
   * all but state, nat and ICMP fields (undefined then: decode a Flow and use match()).
   */
  matchRaw: ((e: RawEntry, buf: Buffer) => boolean) | undefined;
  /** True when the filter asks nothing (every flow matches). */
  empty: boolean;
  /**
   * True when `nfFamily` and `kernelAttrs` select exactly the matching entries on any
   * kernel (only family and mark, long-standing dump filters): what a request that acts on
   * every entry it dumps (zeroing counters) may rely on.
   */
  kernelExact: boolean;
  /** The kernel list to read. */
  table: FlowTable;
  source: FlowFilter;
}

export interface CompileOptions {
  /** Accept `table` other than 'conntrack' (dumps only). */
  tables?: boolean;
}

const KNOWN_KEYS = new Set(['family', 'proto', 'mark', 'zone', 'status', 'orig', 'reply', 'state', 'nat', 'natAddress', 'natPort', 'table']);
const TABLES: readonly FlowTable[] = ['conntrack', 'dying', 'unconfirmed'];
const SRC_NAT_DONE = 1 << IPS_SRC_NAT_DONE_BIT;
const DST_NAT_DONE = 1 << IPS_DST_NAT_DONE_BIT;

/** A validated NAT filter: which sides, and the translated address and port asked for. */
interface NatCheck {
  src: boolean;
  dst: boolean;
  address?: Prefix;
  port?: number;
}

/**
 * One side of the CLI's filter_nat(): with neither address nor port, "was translated" (the
 * address or the port differs); with an address, that it differs and equals (is inside)
 * `address`; with a port, that it differs and equals `port`; with both, both.
 */
function natSide(n: NatCheck, done: boolean, origAddr: string, newAddr: string, origPort: number | undefined, newPort: number | undefined, family: Family): boolean {
  if (!done) return false;
  const addrChanged = origAddr !== newAddr;
  const portChanged = origPort !== newPort;
  if (n.address === undefined && n.port === undefined) return addrChanged || portChanged;
  if (n.address !== undefined && !(addrChanged && prefixMatch(n.address, newAddr, family))) return false;
  if (n.port !== undefined && !(portChanged && newPort === n.port)) return false;
  return true;
}

function natMatches(n: NatCheck, f: Flow): boolean {
  const src = n.src && natSide(n, (f.statusBits & SRC_NAT_DONE) !== 0, f.orig.src, f.reply.dst, f.orig.sport, f.reply.dport, f.family);
  if (src) return true;
  return n.dst && natSide(n, (f.statusBits & DST_NAT_DONE) !== 0, f.orig.dst, f.reply.src, f.orig.dport, f.reply.sport, f.family);
}
const TUPLE_KEYS = new Set(['src', 'dst', 'sport', 'dport', 'icmp', 'zone']);

/** Status names to bits; throws naming the field on an unknown name. */
export function statusBits(names: unknown, field: string): number {
  if (!Array.isArray(names)) throw invalid(field, 'must be an array of status flag names such as ["ASSURED"]');
  let bits = 0;
  for (const n of names) {
    const i = typeof n === 'string' ? STATUS_NAMES.indexOf(n.toUpperCase().replace(/^IPS_/, '') as StatusFlag) : -1;
    if (i < 0) throw invalid(field, `unknown status flag ${show(n)}: use one of ${STATUS_NAMES.join(', ')}`);
    bits |= 1 << i;
  }
  return bits >>> 0;
}

function compileTuple(t: unknown, field: string, family: Family | undefined, protonum: number | undefined): { ct: CompiledTuple; family: Family | undefined } {
  const o = checkObject(t, field, '{ src, dst, sport, dport }');
  for (const k of Object.keys(o)) if (!TUPLE_KEYS.has(k)) throw invalid(`${field}.${k}`, `unknown key; a tuple filter takes ${[...TUPLE_KEYS].join(', ')}`);
  const ct: CompiledTuple = {};
  for (const side of ['src', 'dst'] as const) {
    if (o[side] === undefined) continue;
    const p = parsePrefix(o[side] as string);
    if (!p) throw invalid(`${field}.${side}`, `not an address or prefix: ${show(o[side])} (e.g. '10.0.0.1', '10.0.0.0/8', 'fd00::/8')`);
    if (family && p.family !== family) throw invalid(`${field}.${side}`, `is ${p.family} but the filter is for ${family}`);
    family = p.family;
    ct[side] = p;
  }
  for (const side of ['sport', 'dport'] as const) {
    if (o[side] === undefined) continue;
    if (protonum !== undefined && !PORT_PROTOS.has(protonum)) throw invalid(`${field}.${side}`, `${protoName(protonum)} has no ports`);
    ct[side] = checkPort(o[side], `${field}.${side}`);
  }
  if (o.icmp !== undefined) {
    checkObject(o.icmp, `${field}.icmp`, '{ type?, code?, id? }');
    if (protonum !== undefined && protonum !== IPPROTO_ICMP && protonum !== IPPROTO_ICMPV6) throw invalid(`${field}.icmp`, 'only ICMP and ICMPv6 flows have icmp fields; set proto to icmp or icmpv6');
    const i = o.icmp as Record<string, unknown>;
    if (i.type !== undefined) ct.icmpType = checkU8(i.type, `${field}.icmp.type`);
    if (i.code !== undefined) ct.icmpCode = checkU8(i.code, `${field}.icmp.code`);
    if (i.id !== undefined) ct.icmpId = checkU16(i.id, `${field}.icmp.id`);
  }
  if (o.zone !== undefined) ct.zone = checkU16(o.zone, `${field}.zone`);
  return { ct, family };
}

function tupleMatches(ct: CompiledTuple, t: Flow['orig'], family: Family): boolean {
  if (ct.src && !prefixMatch(ct.src, t.src, family)) return false;
  if (ct.dst && !prefixMatch(ct.dst, t.dst, family)) return false;
  if (ct.sport !== undefined && t.sport !== ct.sport) return false;
  if (ct.dport !== undefined && t.dport !== ct.dport) return false;
  if (ct.icmpType !== undefined && t.icmp?.type !== ct.icmpType) return false;
  if (ct.icmpCode !== undefined && t.icmp?.code !== ct.icmpCode) return false;
  if (ct.icmpId !== undefined && t.icmp?.id !== ct.icmpId) return false;
  if (ct.zone !== undefined && (t.zone ?? 0) !== ct.zone) return false;
  return true;
}

/** tupleMatches() on a tuple read in place: the same checks on the address bytes. */
function rawTupleMatches(ct: CompiledTuple, t: RawTuple, family: Family, buf: Buffer): boolean {
  if (ct.src && !rawPrefixMatch(ct.src, buf, t.srcPos, t.srcLen, family)) return false;
  if (ct.dst && !rawPrefixMatch(ct.dst, buf, t.dstPos, t.dstLen, family)) return false;
  if (ct.sport !== undefined && t.sport !== ct.sport) return false;
  if (ct.dport !== undefined && t.dport !== ct.dport) return false;
  if (ct.zone !== undefined && (t.zone < 0 ? 0 : t.zone) !== ct.zone) return false;
  return true;
}

/** prefixMatch() on address bytes buf[pos, pos + len) (len 0: no address). */
function rawPrefixMatch(p: Prefix, buf: Buffer, pos: number, len: number, family: Family): boolean {
  if (p.family !== family || len !== p.bytes.length) return false;
  const full = p.bits >> 3;
  for (let i = 0; i < full; i++) if (buf[pos + i] !== p.bytes[i]) return false;
  const rem = p.bits & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (buf[pos + full] & mask) === (p.bytes[full] & mask);
}

const hasIcmp = (t: CompiledTuple | undefined): boolean => t !== undefined && (t.icmpType !== undefined || t.icmpCode !== undefined || t.icmpId !== undefined);

function prefixMatch(p: Prefix, addr: string, family: Family): boolean {
  if (p.family !== family) return false;
  const a = parseAddress(addr);
  return a !== undefined && prefixContains(p, a.bytes);
}

const isHost = (p: Prefix | undefined): boolean => p !== undefined && p.bits === (p.family === 'ipv4' ? 32 : 128);
/**
 * Addresses the kernel is asked to filter on. Only IPv4: measured on Linux 6.18, a
 * CTA_FILTER with an IPv6 CTA_IP_V6_SRC/DST (flags CTA_FILTER_F_CTA_IP_SRC/DST) matches no
 * entry at all, so IPv6 addresses are matched by the library (see test/integration/flows/dump.filters.test.ts).
 */
const kernelHost = (p: Prefix | undefined): boolean => isHost(p) && p!.family === 'ipv4';

/** Encodes the kernel-expressible part of a tuple filter (CTA_FILTER semantics). */
function encodeTupleFilter(w: AttrWriter, attr: number, ct: CompiledTuple, family: Family, protonum: number | undefined): number {
  let flags = 0;
  w.nest(attr);
  w.nest(CTA_TUPLE_IP);
  if (kernelHost(ct.src)) {
    w.bytes(family === 'ipv4' ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, ct.src!.bytes);
    flags |= CTA_FILTER_F_CTA_IP_SRC;
  }
  if (kernelHost(ct.dst)) {
    w.bytes(family === 'ipv4' ? CTA_IP_V4_DST : CTA_IP_V6_DST, ct.dst!.bytes);
    flags |= CTA_FILTER_F_CTA_IP_DST;
  }
  w.end();
  if (protonum !== undefined) {
    w.nest(CTA_TUPLE_PROTO);
    w.u8(CTA_PROTO_NUM, protonum);
    flags |= CTA_FILTER_F_CTA_PROTO_NUM;
    if (ct.sport !== undefined) {
      w.u16(CTA_PROTO_SRC_PORT, ct.sport);
      flags |= CTA_FILTER_F_CTA_PROTO_SRC_PORT;
    }
    if (ct.dport !== undefined) {
      w.u16(CTA_PROTO_DST_PORT, ct.dport);
      flags |= CTA_FILTER_F_CTA_PROTO_DST_PORT;
    }
    const v6 = protonum === IPPROTO_ICMPV6;
    if (ct.icmpType !== undefined) {
      w.u8(v6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE, ct.icmpType);
      flags |= v6 ? CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE : CTA_FILTER_F_CTA_PROTO_ICMP_TYPE;
    }
    if (ct.icmpCode !== undefined) {
      w.u8(v6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE, ct.icmpCode);
      flags |= v6 ? CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE : CTA_FILTER_F_CTA_PROTO_ICMP_CODE;
    }
    if (ct.icmpId !== undefined) {
      w.u16(v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, ct.icmpId);
      flags |= v6 ? CTA_FILTER_F_CTA_PROTO_ICMPV6_ID : CTA_FILTER_F_CTA_PROTO_ICMP_ID;
    }
    w.end();
  }
  w.end();
  return flags;
}

/** Validates a filter and compiles it. Throws ConntrackError naming the bad field. */
export function compileFilter(filter: FlowFilter | undefined, field = 'filter', options: CompileOptions = {}): CompiledFilter {
  const source = filter ?? {};
  if (filter !== undefined) checkObject(filter, field, "{ family: 'ipv4', proto: 'tcp' }");
  checkKeys(source as Record<string, unknown>, KNOWN_KEYS, field, 'a flow filter');

  let family: Family | undefined;
  if (source.family !== undefined) {
    if (source.family !== 'ipv4' && source.family !== 'ipv6') throw invalid(`${field}.family`, `must be 'ipv4' or 'ipv6', got ${show(source.family)}`);
    family = source.family;
  }
  const protonum = source.proto !== undefined ? protoNumber(source.proto, `${field}.proto`) : undefined;
  if (protonum === IPPROTO_ICMP && family === 'ipv6') throw invalid(`${field}.proto`, "icmp flows are IPv4; use 'icmpv6' for IPv6");
  if (protonum === IPPROTO_ICMPV6 && family === 'ipv4') throw invalid(`${field}.proto`, "icmpv6 flows are IPv6; use 'icmp' for IPv4");
  if (protonum === IPPROTO_ICMP) family = 'ipv4';
  if (protonum === IPPROTO_ICMPV6) family = 'ipv6';

  let markValue: number | undefined;
  let markMask = 0xffffffff;
  if (source.mark !== undefined) {
    if (typeof source.mark === 'number') markValue = checkU32(source.mark, `${field}.mark`);
    else if (isObject(source.mark)) {
      markValue = checkU32(source.mark.value, `${field}.mark.value`);
      markMask = checkU32(source.mark.mask, `${field}.mark.mask`);
    } else throw invalid(`${field}.mark`, 'must be a number or { value, mask }');
    if (((markValue & ~markMask) >>> 0) !== 0) {
      // (mark & mask) can never equal such a value: refuse rather than silently match nothing.
      throw invalid(`${field}.mark.value`, `has bits outside the mask (value 0x${markValue.toString(16)}, mask 0x${markMask.toString(16)}): use value & mask`);
    }
  }
  const zone = source.zone !== undefined ? checkU16(source.zone, `${field}.zone`) : undefined;

  let statusSet = 0;
  let statusUnset = 0;
  if (source.status !== undefined) {
    if (Array.isArray(source.status)) statusSet = statusBits(source.status, `${field}.status`);
    else if (isObject(source.status)) {
      const st = source.status as { set?: unknown; unset?: unknown };
      for (const k of Object.keys(st)) if (k !== 'set' && k !== 'unset') throw invalid(`${field}.status.${k}`, 'unknown key; use set and unset');
      if (st.set !== undefined) statusSet = statusBits(st.set, `${field}.status.set`);
      if (st.unset !== undefined) statusUnset = statusBits(st.unset, `${field}.status.unset`);
      if (statusSet & statusUnset) throw invalid(`${field}.status`, 'a flag cannot be both set and unset');
    } else throw invalid(`${field}.status`, 'must be an array of flag names or { set, unset }');
  }

  let orig: CompiledTuple | undefined;
  let reply: CompiledTuple | undefined;
  if (source.orig !== undefined) ({ ct: orig, family } = compileTuple(source.orig, `${field}.orig`, family, protonum));
  if (source.reply !== undefined) ({ ct: reply, family } = compileTuple(source.reply, `${field}.reply`, family, protonum));

  let states: Set<string> | undefined;
  if (source.state !== undefined) {
    const list = Array.isArray(source.state) ? source.state : [source.state];
    if (list.length === 0) throw invalid(`${field}.state`, "must be a state name such as 'ESTABLISHED' or a non-empty array of them");
    if (protonum !== undefined && !stateNames(protonum)) throw invalid(`${field}.state`, `protocol ${protonum} has no state; state is for tcp, sctp and dccp`);
    states = new Set();
    list.forEach((v, i) => {
      const at = Array.isArray(source.state) ? `${field}.state[${i}]` : `${field}.state`;
      const name = typeof v === 'string' ? canonicalState(v, protonum) : undefined;
      if (!name) throw invalid(at, `unknown state ${show(v)}${protonum !== undefined ? ' for this protocol' : ''}: use one of ${acceptedStates(protonum).join(', ')}`);
      states!.add(name);
    });
  }

  let nat: NatCheck | undefined;
  if (source.nat !== undefined || source.natAddress !== undefined || source.natPort !== undefined) {
    const side = source.nat ?? 'any';
    if (side !== 'src' && side !== 'dst' && side !== 'any') throw invalid(`${field}.nat`, `must be 'src', 'dst' or 'any', got ${show(side)}`);
    nat = { src: side !== 'dst', dst: side !== 'src' };
    if (source.natAddress !== undefined) {
      const p = typeof source.natAddress === 'string' ? parsePrefix(source.natAddress) : undefined;
      if (!p) throw invalid(`${field}.natAddress`, `not an address or prefix: ${show(source.natAddress)} (e.g. '192.0.2.1', '2001:db8::/64')`);
      if (family && p.family !== family) throw invalid(`${field}.natAddress`, `is ${p.family} but the filter is for ${family}`);
      family = p.family;
      nat.address = p;
    }
    if (source.natPort !== undefined) {
      if (protonum !== undefined && !PORT_PROTOS.has(protonum)) throw invalid(`${field}.natPort`, `protocol ${protonum} has no ports`);
      nat.port = checkPort(source.natPort, `${field}.natPort`);
    }
  }

  const table = source.table ?? 'conntrack';
  if (!TABLES.includes(table)) throw invalid(`${field}.table`, `must be 'conntrack', 'dying' or 'unconfirmed', got ${show(table)}`);
  if (table !== 'conntrack' && !options.tables) throw invalid(`${field}.table`, `only list() and dump() read the ${table} table; this operation works on the conntrack table`);

  // Kernel side.
  const w = new AttrWriter();
  if (markValue !== undefined) w.u32(CTA_MARK, markValue).u32(CTA_MARK_MASK, markMask);
  if (statusSet | statusUnset) w.u32(CTA_STATUS, statusSet).u32(CTA_STATUS_MASK, (statusSet | statusUnset) >>> 0);
  if (zone !== undefined) w.u16(CTA_ZONE, zone);
  // CTA_FILTER needs a protocol or an exact address to say anything; prefixes stay in JS.
  const wantsTupleFilter = protonum !== undefined || kernelHost(orig?.src) || kernelHost(orig?.dst) || kernelHost(reply?.src) || kernelHost(reply?.dst);
  if (wantsTupleFilter && family !== undefined) {
    let oflags = 0;
    let rflags = 0;
    if (orig || protonum !== undefined) oflags = encodeTupleFilter(w, CTA_TUPLE_ORIG, orig ?? {}, family, protonum);
    if (reply) rflags = encodeTupleFilter(w, CTA_TUPLE_REPLY, reply, family, protonum);
    // The flag words are NLA_U32 in host order (nf_conntrack_netlink.c uses nla_get_u32).
    w.nest(CTA_FILTER).u32host(CTA_FILTER_ORIG_FLAGS, oflags).u32host(CTA_FILTER_REPLY_FLAGS, rflags).end();
  }

  const nfFamily = family === 'ipv4' ? AF_INET : family === 'ipv6' ? AF_INET6 : AF_UNSPEC;
  const match = (f: Flow): boolean => {
    if (family !== undefined && f.family !== family) return false;
    if (protonum !== undefined && (typeof f.proto === 'number' ? f.proto : protoNumber(f.proto, 'proto')) !== protonum) return false;
    if (markValue !== undefined && ((f.mark & markMask) >>> 0) !== markValue) return false;
    if (zone !== undefined && f.zone !== zone) return false;
    if ((f.statusBits & statusSet) !== statusSet || (f.statusBits & statusUnset) !== 0) return false;
    if (orig && !tupleMatches(orig, f.orig, f.family)) return false;
    if (reply && !tupleMatches(reply, f.reply, f.family)) return false;
    if (states && (f.state === undefined || !states.has(f.state))) return false;
    if (nat && !natMatches(nat, f)) return false;
    return true;
  };
  // The same checks as match(), by hand on the bytes: bulk operations check every dumped
  // entry, and decoding each into a Flow first cost more than the kernel's own work.
  const matchRaw = states !== undefined || nat !== undefined || hasIcmp(orig) || hasIcmp(reply) ? undefined : (e: RawEntry, buf: Buffer): boolean => {
    if (family !== undefined && e.family !== family) return false;
    if (protonum !== undefined && e.protonum !== protonum) return false;
    if (markValue !== undefined && ((e.mark & markMask) >>> 0) !== markValue) return false;
    if (zone !== undefined && e.zone !== zone) return false;
    if ((e.status & statusSet) !== statusSet || (e.status & statusUnset) !== 0) return false;
    if (orig && !rawTupleMatches(orig, e.orig, e.family, buf)) return false;
    if (reply && !rawTupleMatches(reply, e.reply, e.family, buf)) return false;
    return true;
  };
  const empty = family === undefined && protonum === undefined && markValue === undefined && zone === undefined &&
    statusSet === 0 && statusUnset === 0 && orig === undefined && reply === undefined && states === undefined && nat === undefined;
  const kernelExact = protonum === undefined && zone === undefined && statusSet === 0 && statusUnset === 0 &&
    orig === undefined && reply === undefined && states === undefined && nat === undefined;
  return { nfFamily, kernelAttrs: w.finish(), match, matchRaw, empty, kernelExact, table, source };
}
