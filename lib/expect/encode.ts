/**
 * Expectations from callers: validating what create, get and delete take (refusals name
 * the field) and encoding it for the kernel.
 */
import {
  AF_INET, AF_INET6, CTA_EXPECT_CLASS, CTA_EXPECT_FLAGS, CTA_EXPECT_FN, CTA_EXPECT_HELP_NAME, CTA_EXPECT_ID,
  CTA_EXPECT_MASK, CTA_EXPECT_MASTER, CTA_EXPECT_NAT, CTA_EXPECT_NAT_DIR, CTA_EXPECT_NAT_TUPLE, CTA_EXPECT_TIMEOUT,
  CTA_EXPECT_TUPLE, CTA_EXPECT_ZONE, CTA_TUPLE_ORIG, CTA_ZONE, Family, IPPROTO_ICMP, IPPROTO_ICMPV6,
  NF_CT_EXPECT_USERSPACE, PORT_PROTOS, Proto,
} from '../wire/enums';
import { AttrWriter } from '../wire/netlink';
import { formatIPv4, formatIPv6, parseAddress } from '../common/address';
import { invalid } from '../common/errors';
import { checkHelperName, checkU16, checkU32, isObject, show } from '../common/validate';
import { ProtoTuple, ResolvedTuple, Tuple, checkPort, encodeTuple, protoNumber, resolveTuple } from '../flows/tuple';
import { EXPECTATION_FLAGS, ExpectationFlag, NatDirection } from './decode';

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
/** Flag names to bits, naming `field` on a bad name. */
function expectationFlagBits(v: unknown, field: string): number {
  if (!Array.isArray(v)) throw invalid(field, "must be an array of flag names such as ['PERMANENT']");
  let bits = 0;
  for (const n of v) {
    const name = typeof n === 'string' ? n.toUpperCase().replace(/^NF_CT_EXPECT_/, '') : '';
    const f = EXPECTATION_FLAGS.find(([fn]) => fn === name);
    if (!f) throw invalid(field, `unknown flag ${show(n)}: use PERMANENT or INACTIVE`);
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
    if (!a) throw invalid('mask.src', `not an address mask: ${show(m.src)} (e.g. '255.255.255.0', or '0.0.0.0' for any source)`);
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
  const helper = spec.helper !== undefined ? checkHelperName(spec.helper, 'helper') : undefined;
  let cls: number | undefined;
  if (spec.class !== undefined) {
    cls = checkU32(spec.class, 'class', 'class');
    if (cls !== 0 && helper === undefined) throw invalid('class', "is only applied together with helper (the kernel checks the class against that helper's classes); add helper, e.g. helper: 'sip'");
  }
  const fn = spec.fn;
  if (fn !== undefined && (typeof fn !== 'string' || fn === '' || fn.includes('\0'))) {
    throw invalid('fn', `must name a callback the kernel registered, such as 'nat-follow-master', got ${show(fn)}`);
  }

  let nat: { dir: number; tuple: ResolvedTuple } | undefined;
  if (spec.nat !== undefined) {
    const n = spec.nat;
    if (!isObject(n)) throw invalid('nat', "must be { dir: 'orig' | 'reply', tuple: { src, sport } }");
    if (n.dir !== 'orig' && n.dir !== 'reply') throw invalid('nat.dir', `must be 'orig' or 'reply', got ${show(n.dir)}`);
    if (!isObject(n.tuple)) throw invalid('nat.tuple', 'must be { src, sport } (the address and port to map to)');
    const nt = n.tuple;
    const srcAddr = parseAddress(nt.src as string);
    if (!srcAddr) throw invalid('nat.tuple.src', `not an IPv4 or IPv6 address: ${show(nt.src)}`);
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
  encodeTuple(lw, CTA_TUPLE_ORIG, master);
  if (zone !== undefined) lw.u16(CTA_ZONE, zone);
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

/** Payload of a flush by helper name. */
export function encodeHelperFlush(helper: string): Buffer {
  return new AttrWriter(64).string(CTA_EXPECT_HELP_NAME, helper).finish();
}
