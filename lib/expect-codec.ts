/**
 * Expectations on the wire: decoding CTA_EXPECT_* messages into Expectation objects,
 * validating what users pass to create/get/delete, and encoding it for the kernel.
 */
import {
  AF_INET, AF_INET6, AF_UNSPEC, CTA_EXPECT_CLASS, CTA_EXPECT_FLAGS, CTA_EXPECT_FN,
  CTA_EXPECT_HELP_NAME, CTA_EXPECT_ID, CTA_EXPECT_MASK, CTA_EXPECT_MASTER, CTA_EXPECT_NAT,
  CTA_EXPECT_NAT_DIR, CTA_EXPECT_NAT_TUPLE, CTA_EXPECT_TIMEOUT, CTA_EXPECT_TUPLE,
  CTA_EXPECT_ZONE, Family, IPPROTO_ICMP, IPPROTO_ICMPV6, NF_CT_EXPECT_INACTIVE,
  NF_CT_EXPECT_PERMANENT, NF_CT_EXPECT_USERSPACE, NLA_TYPE_MASK, PORT_PROTOS, Proto,
} from './enums';
import { ProtoTuple, ResolvedTuple, Tuple, checkPort, decodeTuple, encodeTuple, protoName, protoNumber, resolveTuple } from './tuple';
import { NFNL_ATTR_OFFSET, AttrWriter, align4, readString } from './netlink';
import { Prefix, formatIPv4, formatIPv6, parseAddress, parsePrefix, prefixContains } from './address';
import { invalid } from './errors';

/** Expectation flag names (NF_CT_EXPECT_* without the prefix). */
export type ExpectationFlag = 'PERMANENT' | 'INACTIVE' | 'USERSPACE';

/** Flag names by bit. */
export const EXPECTATION_FLAGS: ReadonlyArray<readonly [ExpectationFlag, number]> = [
  ['PERMANENT', NF_CT_EXPECT_PERMANENT],
  ['INACTIVE', NF_CT_EXPECT_INACTIVE],
  ['USERSPACE', NF_CT_EXPECT_USERSPACE],
];

/** Direction of an expectation's NAT mapping. */
export type NatDirection = 'orig' | 'reply';

/**
 * An expectation: a connection the kernel waits for because a helper (or a program)
 * announced it. When a packet matching `tuple` under `mask` arrives, the new flow is
 * marked RELATED and linked to `master`.
 */
export interface Expectation {
  /** The kernel's id (CTA_EXPECT_ID), used by delete() to hit exactly this entry. */
  id: number;
  family: Family;
  /** Original tuple of the master flow (the control connection). */
  master: ProtoTuple;
  /** The expected connection; a source port of 0 with a mask port of 0 means "any". */
  tuple: ProtoTuple;
  /**
   * Which bits of `tuple` must match. The kernel only masks the source address and
   * source port; destination fields are always compared in full (shown as all ones).
   */
  mask: ProtoTuple;
  /** Seconds until the expectation expires. */
  timeout: number;
  /**
   * The master's zone. Kernels up to at least 6.18 do not report it (CTA_EXPECT_ZONE is
   * not dumped): then it is 0 in list()/events, and the requested zone after get()/create().
   */
  zone: number;
  /** Flag names (PERMANENT, INACTIVE, USERSPACE). */
  flags: ExpectationFlag[];
  /** The raw CTA_EXPECT_FLAGS bits. */
  flagBits: number;
  /** Expectation class of the helper (e.g. SIP signalling / audio / video). */
  class: number;
  /** Name of the master's helper (e.g. 'ftp'). */
  helper?: string;
  /** NAT mapping applied to the expected connection, when the helper set one. */
  nat?: { dir: NatDirection; tuple: ProtoTuple };
  /** Name of the helper callback run when the connection arrives (e.g. 'nat-follow-master'). */
  fn?: string;
  /** Attribute types the decoder did not know or could not parse (skipped). */
  unknown?: number[];
}

const EMPTY: ProtoTuple = Object.freeze({ proto: 0, src: '', dst: '' }) as ProtoTuple;

function protoTuple(buf: Buffer, s: number, e: number): { t: ProtoTuple; family: Family | undefined } {
  const d = decodeTuple(buf, s, e);
  const t: ProtoTuple = { proto: protoName(d.protonum), ...d.tuple };
  // Keep one stable shape: drop keys the tuple does not have.
  if (t.icmp === undefined) delete t.icmp;
  if (t.zone === undefined) delete t.zone;
  if (t.sport === undefined) delete t.sport;
  if (t.dport === undefined) delete t.dport;
  return { t, family: d.family };
}

/** Flag bits to names. */
export function expectationFlagNames(bits: number): ExpectationFlag[] {
  const out: ExpectationFlag[] = [];
  for (const [name, bit] of EXPECTATION_FLAGS) if (bits & bit) out.push(name);
  return out;
}

/**
 * Decodes one ctnetlink expectation message at buf[off, off + len). Never throws:
 * malformed or unknown attributes are skipped and listed in `unknown`.
 */
export function decodeExpectation(buf: Buffer, off: number, len: number): Expectation {
  const end = off + len;
  const nfFamily = buf[off + 16];
  const exp: Expectation = {
    id: 0,
    family: nfFamily === AF_INET6 ? 'ipv6' : 'ipv4',
    master: EMPTY,
    tuple: EMPTY,
    mask: EMPTY,
    timeout: 0,
    zone: 0,
    flags: [],
    flagBits: 0,
    class: 0,
    helper: undefined,
    nat: undefined,
    fn: undefined,
    unknown: undefined,
  };
  let p = off + NFNL_ATTR_OFFSET;
  while (p + 4 <= end) {
    const l = buf.readUInt16LE(p);
    if (l < 4 || p + l > end) {
      (exp.unknown ??= []).push(-1);
      break;
    }
    const t = buf.readUInt16LE(p + 2) & NLA_TYPE_MASK;
    const s = p + 4;
    const e = p + l;
    switch (t) {
      case CTA_EXPECT_MASTER: exp.master = protoTuple(buf, s, e).t; break;
      case CTA_EXPECT_TUPLE: {
        const d = protoTuple(buf, s, e);
        exp.tuple = d.t;
        if (d.family) exp.family = d.family;
        break;
      }
      case CTA_EXPECT_MASK: exp.mask = protoTuple(buf, s, e).t; break;
      case CTA_EXPECT_TIMEOUT: if (l >= 8) exp.timeout = buf.readUInt32BE(s); break;
      case CTA_EXPECT_ID: if (l >= 8) exp.id = buf.readUInt32BE(s); break;
      case CTA_EXPECT_FLAGS:
        if (l >= 8) {
          exp.flagBits = buf.readUInt32BE(s);
          exp.flags = expectationFlagNames(exp.flagBits);
        }
        break;
      case CTA_EXPECT_CLASS: if (l >= 8) exp.class = buf.readUInt32BE(s); break;
      case CTA_EXPECT_ZONE: if (l >= 6) exp.zone = buf.readUInt16BE(s); break;
      case CTA_EXPECT_HELP_NAME: exp.helper = readString(buf, s, e); break;
      case CTA_EXPECT_FN: exp.fn = readString(buf, s, e); break;
      case CTA_EXPECT_NAT: {
        let dir: NatDirection = 'orig';
        let tuple: ProtoTuple | undefined;
        let q = s;
        while (q + 4 <= e) {
          const ql = buf.readUInt16LE(q);
          if (ql < 4 || q + ql > e) break;
          const qt = buf.readUInt16LE(q + 2) & NLA_TYPE_MASK;
          if (qt === CTA_EXPECT_NAT_DIR && ql >= 8) dir = buf.readUInt32BE(q + 4) === 1 ? 'reply' : 'orig';
          else if (qt === CTA_EXPECT_NAT_TUPLE) tuple = protoTuple(buf, q + 4, q + ql).t;
          q += align4(ql);
        }
        if (tuple) exp.nat = { dir, tuple };
        break;
      }
      default:
        (exp.unknown ??= []).push(t);
    }
    p += align4(l);
  }
  return exp;
}

/** FNV-1a over the fields that name an expectation (duplicate suppression in dumps). */
export function expectationSignature(x: Expectation): number {
  const t = x.tuple;
  const s = `${t.src}|${t.dst}|${t.sport}|${t.dport}|${t.proto}|${x.zone}|${x.master.src}|${x.master.sport}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// ---------------------------------------------------------------------------------
// Validation and encoding

/** Names an expectation: its tuple (with proto), and optionally zone and id. */
export interface ExpectationKey extends ProtoTuple {
  /** Zone of the expectation (its master's zone); default 0. */
  zone?: number;
}

/** What create() takes. */
export interface ExpectationSpec {
  /**
   * The master flow, named the way a Flow names itself: `{ proto, orig: { src, dst,
   * sport, dport }, zone? }`. A Flow from list() works, and so does a ProtoTuple such as
   * Expectation.master. The master must have a helper (see docs).
   */
  master: { proto: Proto | number; orig: Tuple; zone?: number } | ProtoTuple;
  /** The expected connection. `proto` defaults to the master's; sport defaults to 0 (any). */
  tuple: Omit<ProtoTuple, 'proto'> & { proto?: Proto | number };
  /**
   * Which bits of the source must match: `{ src, sport }` (address and port masks).
   * Default: the whole source address; the source port only when tuple.sport is not 0.
   * Destination fields may be given only as all ones (the kernel always compares them fully).
   */
  mask?: { proto?: Proto | number; src?: string; dst?: string; sport?: number; dport?: number };
  /** Seconds to live. Without it, the master helper's policy decides (ftp: 300 s). */
  timeout?: number;
  /** PERMANENT (stays after a match) and/or INACTIVE (does not match until activated). */
  flags?: ExpectationFlag[];
  /** Expectation class (needs `helper`; must be below the helper's class count). */
  class?: number;
  /** Helper to attach to the expected connection; must exist for the master's protocol. */
  helper?: string;
  /** NAT mapping for the expected connection: `{ dir, tuple: { src, sport } }`. */
  nat?: { dir: NatDirection; tuple: { src: string; sport?: number; dst?: string; dport?: number } };
  /** Zone of the master (and the expectation). Default: master.zone, else 0. */
  zone?: number;
  /** Callback name the kernel registered (e.g. 'nat-follow-master'). */
  fn?: string;
}

/** A create request, validated and encoded. */
export interface EncodedCreate {
  nfFamily: number;
  payload: Buffer;
  /** Payload naming the master flow (CTA_TUPLE_ORIG + CTA_ZONE) for diagnostics. */
  masterLookup: Buffer;
  /** Payload for the follow-up timeout change, when a timeout was given. */
  timeoutPayload?: Buffer;
  /** Payload for the follow-up get. */
  getPayload: Buffer;
  helper?: string;
  masterText: string;
  zone?: number;
}

const SPEC_KEYS = new Set(['master', 'tuple', 'mask', 'timeout', 'flags', 'class', 'helper', 'nat', 'zone', 'fn']);
const MASK_KEYS = new Set(['proto', 'src', 'dst', 'sport', 'dport']);
const HELPER_NAME_MAX = 15; // NF_CT_HELPER_NAME_LEN - 1

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkU16(v: unknown, field: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) throw invalid(field, `${what} must be an integer 0-65535, got ${JSON.stringify(v)}`);
  return v;
}

function checkU32(v: unknown, field: string, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw invalid(field, `${what} must be an integer 0-4294967295, got ${JSON.stringify(v)}`);
  return v;
}

function checkName(v: unknown, field: string, what: string): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw invalid(field, `${what} must be a non-empty string such as 'ftp'`);
  if (Buffer.byteLength(v) > HELPER_NAME_MAX) throw invalid(field, `${what} is at most ${HELPER_NAME_MAX} bytes, got ${JSON.stringify(v)}`);
  return v;
}

/** Flag names to bits, naming `field` on a bad name. */
export function expectationFlagBits(v: unknown, field: string): number {
  if (!Array.isArray(v)) throw invalid(field, "must be an array of flag names such as ['PERMANENT']");
  let bits = 0;
  for (const n of v) {
    const name = typeof n === 'string' ? n.toUpperCase().replace(/^NF_CT_EXPECT_/, '') : '';
    const f = EXPECTATION_FLAGS.find(([fn]) => fn === name);
    if (!f) throw invalid(field, `unknown flag ${JSON.stringify(n)}: use PERMANENT or INACTIVE`);
    if (f[1] === NF_CT_EXPECT_USERSPACE) throw invalid(field, 'USERSPACE is set by the kernel for expectations made through nfqueue and cannot be requested; use PERMANENT or INACTIVE');
    bits |= f[1];
  }
  return bits;
}

const nfFamilyOf = (f: Family): number => (f === 'ipv4' ? AF_INET : AF_INET6);

/** Resolves the master reference of a spec (or of a get/delete by master). */
function resolveMaster(m: unknown, field: string): { r: ResolvedTuple; zone?: number } {
  if (!isObject(m)) throw invalid(field, "must name the master flow: { proto, orig: { src, dst, sport, dport } } (a Flow from list() works)");
  if (m.proto === undefined) throw invalid(`${field}.proto`, "is required: the master flow's protocol, e.g. 'tcp'");
  const protonum = protoNumber(m.proto, `${field}.proto`);
  const hasOrig = m.orig !== undefined;
  const r = resolveTuple(hasOrig ? m.orig : m, protonum, hasOrig ? `${field}.orig` : field, true);
  r.zone = undefined; // a per-direction zone is not part of the lookup
  const zone = m.zone !== undefined ? checkU16(m.zone, `${field}.zone`, 'zone') : undefined;
  return { r, zone };
}

/** Resolves an expectation tuple: ports default to 0 (the wildcard value). */
function resolveExpTuple(t: unknown, protonum: number, field: string): ResolvedTuple {
  const r = resolveTuple(t, protonum, field, false);
  r.zone = undefined;
  if (PORT_PROTOS.has(protonum)) {
    r.sport ??= 0;
    r.dport ??= 0;
  }
  return r;
}

function allOnes(family: Family): Buffer {
  return Buffer.alloc(family === 'ipv4' ? 4 : 16, 0xff);
}

/** Validates a create spec and encodes the request. Throws ERR_INVALID_ARGUMENT naming the field. */
export function encodeCreate(spec: unknown): EncodedCreate {
  if (!isObject(spec)) throw invalid('spec', 'must be an object { master, tuple, mask?, timeout?, ... }');
  for (const k of Object.keys(spec)) if (!SPEC_KEYS.has(k)) throw invalid(k, `unknown key; an expectation spec takes ${[...SPEC_KEYS].join(', ')}`);
  if (spec.master === undefined) throw invalid('master', 'is required: the flow this expectation belongs to, { proto, orig: { src, dst, sport, dport } }');
  const { r: master, zone: masterZone } = resolveMaster(spec.master, 'master');
  if (!PORT_PROTOS.has(master.protonum)) throw invalid('master.proto', 'helpers track tcp, udp, sctp, dccp or gre masters; an expectation needs such a master');

  if (!isObject(spec.tuple)) throw invalid('tuple', 'is required: the expected connection { src, dst, sport?, dport }');
  const tprotonum = spec.tuple.proto !== undefined ? protoNumber(spec.tuple.proto, 'tuple.proto') : master.protonum;
  if (!PORT_PROTOS.has(tprotonum)) throw invalid('tuple.proto', 'expectations can be created for tcp, udp, udplite, sctp, dccp and gre connections');
  const tuple = resolveExpTuple(spec.tuple, tprotonum, 'tuple');
  if (tuple.family !== master.family) throw invalid('tuple.src', `is ${tuple.family} but the master is ${master.family}: use one address family`);

  // Mask: only the source address and port are masks for the kernel.
  const m = spec.mask === undefined ? {} : spec.mask;
  if (!isObject(m)) throw invalid('mask', 'must be an object { src?, sport? }');
  for (const k of Object.keys(m)) if (!MASK_KEYS.has(k)) throw invalid(`mask.${k}`, 'unknown key; a mask takes src, sport (and dst, dport as all ones)');
  if (m.proto !== undefined && protoNumber(m.proto, 'mask.proto') !== tprotonum) throw invalid('mask.proto', "must equal the tuple's protocol (or be left out)");
  let maskSrc = allOnes(tuple.family);
  if (m.src !== undefined) {
    const a = parseAddress(m.src as string);
    if (!a) throw invalid('mask.src', `not an address mask: ${JSON.stringify(m.src)} (e.g. '255.255.255.0', or '0.0.0.0' for any source)`);
    if (a.family !== tuple.family) throw invalid('mask.src', `is ${a.family} but the tuple is ${tuple.family}`);
    maskSrc = a.bytes;
  }
  if (m.dst !== undefined) {
    const a = parseAddress(m.dst as string);
    if (!a || a.family !== tuple.family || !a.bytes.equals(allOnes(tuple.family))) {
      throw invalid('mask.dst', `the kernel always matches the destination address exactly: leave mask.dst out or give ${tuple.family === 'ipv4' ? "'255.255.255.255'" : "'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'"}`);
    }
  }
  const maskSport = m.sport !== undefined ? checkPort(m.sport, 'mask.sport') : tuple.sport === 0 ? 0 : 0xffff;
  if (m.dport !== undefined && checkPort(m.dport, 'mask.dport') !== 0xffff) {
    throw invalid('mask.dport', 'the kernel always matches the destination port exactly: leave mask.dport out or give 65535');
  }
  const mask: ResolvedTuple = { family: tuple.family, protonum: tprotonum, src: maskSrc, dst: allOnes(tuple.family), sport: maskSport, dport: 0xffff };

  let zone = masterZone;
  if (spec.zone !== undefined) {
    const z = checkU16(spec.zone, 'zone', 'zone');
    if (masterZone !== undefined && masterZone !== z) throw invalid('zone', `differs from master.zone (${masterZone}); give one of them`);
    zone = z;
  }
  let timeout: number | undefined;
  if (spec.timeout !== undefined) {
    timeout = checkU32(spec.timeout, 'timeout', 'timeout (seconds)');
    if (timeout === 0) throw invalid('timeout', 'must be at least 1 second');
  }
  const flags = spec.flags !== undefined ? expectationFlagBits(spec.flags, 'flags') : undefined;
  const helper = spec.helper !== undefined ? checkName(spec.helper, 'helper', 'helper name') : undefined;
  let cls: number | undefined;
  if (spec.class !== undefined) {
    cls = checkU32(spec.class, 'class', 'class');
    if (cls !== 0 && helper === undefined) throw invalid('class', "is only applied together with helper (the kernel checks the class against that helper's classes); add helper, e.g. helper: 'sip'");
  }
  const fn = spec.fn !== undefined ? checkName(spec.fn, 'fn', 'callback name') : undefined;

  let nat: { dir: number; tuple: ResolvedTuple } | undefined;
  if (spec.nat !== undefined) {
    const n = spec.nat;
    if (!isObject(n)) throw invalid('nat', "must be { dir: 'orig' | 'reply', tuple: { src, sport } }");
    if (n.dir !== 'orig' && n.dir !== 'reply') throw invalid('nat.dir', `must be 'orig' or 'reply', got ${JSON.stringify(n.dir)}`);
    if (!isObject(n.tuple)) throw invalid('nat.tuple', 'must be { src, sport } (the address and port to map to)');
    const nt = n.tuple;
    const srcAddr = parseAddress(nt.src as string);
    if (!srcAddr) throw invalid('nat.tuple.src', `not an IPv4 or IPv6 address: ${JSON.stringify(nt.src)}`);
    if (srcAddr.family !== master.family) throw invalid('nat.tuple.src', `is ${srcAddr.family} but the master is ${master.family}`);
    const filled = { ...nt, dst: nt.dst ?? (master.family === 'ipv4' ? '0.0.0.0' : '::') };
    // The kernel reads the NAT tuple with the master's protocol and keeps its source part.
    const r = resolveExpTuple(filled, master.protonum, 'nat.tuple');
    nat = { dir: n.dir === 'reply' ? 1 : 0, tuple: r };
  }

  const w = new AttrWriter(512);
  encodeTuple(w, CTA_EXPECT_MASTER, master);
  encodeTuple(w, CTA_EXPECT_TUPLE, tuple);
  encodeTuple(w, CTA_EXPECT_MASK, mask);
  if (zone !== undefined) w.u16(CTA_EXPECT_ZONE, zone);
  if (timeout !== undefined) w.u32(CTA_EXPECT_TIMEOUT, timeout);
  if (flags !== undefined) w.u32(CTA_EXPECT_FLAGS, flags);
  if (helper !== undefined) w.string(CTA_EXPECT_HELP_NAME, helper);
  if (cls !== undefined) w.u32(CTA_EXPECT_CLASS, cls);
  if (fn !== undefined) w.string(CTA_EXPECT_FN, fn);
  if (nat) {
    w.nest(CTA_EXPECT_NAT).u32(CTA_EXPECT_NAT_DIR, nat.dir);
    encodeTuple(w, CTA_EXPECT_NAT_TUPLE, nat.tuple);
    w.end();
  }
  const payload = w.finish();

  const key = (extra?: (w: AttrWriter) => void): Buffer => {
    const kw = new AttrWriter(256);
    encodeTuple(kw, CTA_EXPECT_TUPLE, tuple);
    if (zone !== undefined) kw.u16(CTA_EXPECT_ZONE, zone);
    extra?.(kw);
    return kw.finish();
  };
  const lw = new AttrWriter(256);
  encodeTuple(lw, 1 /* CTA_TUPLE_ORIG */, master);
  if (zone !== undefined) lw.u16(18 /* CTA_ZONE */, zone);
  // A timeout change names the expectation by tuple; the kernel also wants mask and master present.
  const timeoutPayload = timeout === undefined ? undefined : (() => {
    const tw = new AttrWriter(512);
    encodeTuple(tw, CTA_EXPECT_MASTER, master);
    encodeTuple(tw, CTA_EXPECT_TUPLE, tuple);
    encodeTuple(tw, CTA_EXPECT_MASK, mask);
    if (zone !== undefined) tw.u16(CTA_EXPECT_ZONE, zone);
    tw.u32(CTA_EXPECT_TIMEOUT, timeout);
    return tw.finish();
  })();
  return {
    nfFamily: nfFamilyOf(master.family),
    payload,
    masterLookup: lw.finish(),
    timeoutPayload,
    getPayload: key(),
    helper,
    masterText: masterText(master),
    zone,
  };
}

function masterText(r: ResolvedTuple): string {
  const a = (b: Buffer): string => (b.length === 4 ? formatIPv4(b, 0) : `[${formatIPv6(b, 0)}]`);
  return `${a(r.src)}:${r.sport} -> ${a(r.dst)}:${r.dport}`;
}

/** A get/delete target: the expectation's tuple, zone and (from an Expectation) id. */
export interface EncodedKey {
  nfFamily: number;
  payload: Buffer;
  zone?: number;
}

/**
 * Validates what get()/delete() take: a ProtoTuple `{ proto, src, dst, sport, dport,
 * zone? }` naming the expected connection, or an Expectation from list() (its tuple,
 * zone and id are used, so a re-created expectation with the same tuple is not hit).
 */
export function encodeKey(target: unknown, field: string): EncodedKey {
  if (!isObject(target)) throw invalid(field, "must be an expectation tuple { proto, src, dst, sport, dport } or an Expectation from list()");
  let t: Record<string, unknown>;
  let zone: number | undefined;
  let id: number | undefined;
  let tf: string;
  if (isObject(target.tuple)) {
    t = target.tuple;
    tf = `${field}.tuple`;
    if (target.zone !== undefined) zone = checkU16(target.zone, `${field}.zone`, 'zone');
    if (target.id !== undefined) id = checkU32(target.id, `${field}.id`, 'id');
  } else {
    t = target;
    tf = field;
    if (target.zone !== undefined) zone = checkU16(target.zone, `${field}.zone`, 'zone');
  }
  if (t.proto === undefined) throw invalid(`${tf}.proto`, "is required: the expected connection's protocol, e.g. 'tcp'");
  const protonum = protoNumber(t.proto, `${tf}.proto`);
  if (protonum === IPPROTO_ICMP || protonum === IPPROTO_ICMPV6) {
    const r = resolveTuple({ ...t, zone: undefined }, protonum, tf, true);
    return { nfFamily: nfFamilyOf(r.family), payload: keyPayload(r, zone, id), zone };
  }
  const r = resolveExpTuple({ ...t, zone: undefined }, protonum, tf);
  return { nfFamily: nfFamilyOf(r.family), payload: keyPayload(r, zone, id), zone };
}

function keyPayload(r: ResolvedTuple, zone: number | undefined, id: number | undefined): Buffer {
  const w = new AttrWriter(256);
  encodeTuple(w, CTA_EXPECT_TUPLE, r);
  if (zone !== undefined && zone !== 0) w.u16(CTA_EXPECT_ZONE, zone);
  if (id !== undefined) w.u32(CTA_EXPECT_ID, id);
  return w.finish();
}

// ---------------------------------------------------------------------------------
// Filters

/** Selects tuples: addresses or prefixes, ports. */
export interface ExpectationTupleFilter {
  /** Address or prefix (`'10.0.0.1'`, `'10.0.0.0/8'`). */
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
}

export interface ExpectationFilter {
  family?: Family;
  /** Protocol of the expected connection. */
  proto?: Proto | number;
  /** Name of the master's helper, e.g. 'ftp'. */
  helper?: string;
  zone?: number;
  class?: number;
  /** Matches the expected connection's tuple. */
  tuple?: ExpectationTupleFilter;
  /** Matches the master flow's original tuple. */
  master?: ExpectationTupleFilter;
}

export interface CompiledExpectationFilter {
  nfFamily: number;
  match(x: Expectation): boolean;
  /** True when the filter has nothing but `helper` (the kernel can flush by helper name). */
  helperOnly: boolean;
  empty: boolean;
  helper?: string;
}

const FILTER_KEYS = new Set(['family', 'proto', 'helper', 'zone', 'class', 'tuple', 'master']);
const TFILTER_KEYS = new Set(['src', 'dst', 'sport', 'dport']);

interface CTF { src?: Prefix; dst?: Prefix; sport?: number; dport?: number }

function compileTF(v: unknown, field: string, family: Family | undefined): CTF {
  if (!isObject(v)) throw invalid(field, 'must be an object like { src, dst, sport, dport }');
  for (const k of Object.keys(v)) if (!TFILTER_KEYS.has(k)) throw invalid(`${field}.${k}`, `unknown key; a tuple filter takes ${[...TFILTER_KEYS].join(', ')}`);
  const out: CTF = {};
  for (const side of ['src', 'dst'] as const) {
    if (v[side] === undefined) continue;
    const p = parsePrefix(v[side] as string);
    if (!p) throw invalid(`${field}.${side}`, `not an address or prefix: ${JSON.stringify(v[side])} (e.g. '10.0.0.1', '10.0.0.0/8')`);
    if (family && p.family !== family) throw invalid(`${field}.${side}`, `is ${p.family} but the filter is for ${family}`);
    out[side] = p;
  }
  if (v.sport !== undefined) out.sport = checkPort(v.sport, `${field}.sport`);
  if (v.dport !== undefined) out.dport = checkPort(v.dport, `${field}.dport`);
  return out;
}

function tfMatch(f: CTF, t: ProtoTuple): boolean {
  for (const side of ['src', 'dst'] as const) {
    const p = f[side];
    if (!p) continue;
    const a = parseAddress(t[side]);
    if (!a || a.family !== p.family || !prefixContains(p, a.bytes)) return false;
  }
  if (f.sport !== undefined && t.sport !== f.sport) return false;
  if (f.dport !== undefined && t.dport !== f.dport) return false;
  return true;
}

/** Validates an expectation filter. Throws ERR_INVALID_ARGUMENT naming the field. */
export function compileExpectationFilter(filter: unknown, field = 'filter'): CompiledExpectationFilter {
  if (filter === undefined) return { nfFamily: AF_UNSPEC, match: () => true, helperOnly: false, empty: true };
  if (!isObject(filter)) throw invalid(field, "must be an object such as { helper: 'ftp' }");
  const keys = Object.keys(filter).filter((k) => filter[k] !== undefined);
  for (const k of keys) if (!FILTER_KEYS.has(k)) throw invalid(`${field}.${k}`, `unknown filter key; use ${[...FILTER_KEYS].join(', ')}`);
  let family: Family | undefined;
  if (filter.family !== undefined) {
    if (filter.family !== 'ipv4' && filter.family !== 'ipv6') throw invalid(`${field}.family`, `must be 'ipv4' or 'ipv6', got ${JSON.stringify(filter.family)}`);
    family = filter.family;
  }
  const protonum = filter.proto !== undefined ? protoNumber(filter.proto, `${field}.proto`) : undefined;
  const helper = filter.helper !== undefined ? checkName(filter.helper, `${field}.helper`, 'helper name') : undefined;
  // The kernel does not report an expectation's zone (Linux 6.18 included): a zone filter
  // could only ever match zone 0, so it is refused rather than silently wrong.
  if (filter.zone !== undefined) {
    throw invalid(`${field}.zone`, "the kernel does not report an expectation's zone, so expectations cannot be filtered by it; name the zone in get(), delete() and create() instead");
  }
  const zone: number | undefined = undefined;
  const cls = filter.class !== undefined ? checkU32(filter.class, `${field}.class`, 'class') : undefined;
  const tuple = filter.tuple !== undefined ? compileTF(filter.tuple, `${field}.tuple`, family) : undefined;
  const master = filter.master !== undefined ? compileTF(filter.master, `${field}.master`, family) : undefined;
  const match = (x: Expectation): boolean => {
    if (family !== undefined && x.family !== family) return false;
    if (protonum !== undefined && (typeof x.tuple.proto === 'number' ? x.tuple.proto : protoNumber(x.tuple.proto, 'proto')) !== protonum) return false;
    if (helper !== undefined && x.helper !== helper) return false;
    if (zone !== undefined && x.zone !== zone) return false;
    if (cls !== undefined && x.class !== cls) return false;
    if (tuple && !tfMatch(tuple, x.tuple)) return false;
    if (master && !tfMatch(master, x.master)) return false;
    return true;
  };
  return {
    nfFamily: family === 'ipv4' ? AF_INET : family === 'ipv6' ? AF_INET6 : AF_UNSPEC,
    match,
    helperOnly: keys.length === 1 && helper !== undefined,
    empty: keys.length === 0,
    helper,
  };
}

/** Payload of a flush by helper name. */
export function encodeHelperFlush(helper: string): Buffer {
  return new AttrWriter(64).string(CTA_EXPECT_HELP_NAME, helper).finish();
}
