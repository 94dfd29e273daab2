/**
 * Entry specs: everything a caller passes to get, create, update and delete is validated
 * here (refusals name the field) and encoded into ctnetlink attributes before anything
 * is sent, so bad input never reaches the kernel.
 */
import {
  AF_INET, AF_INET6, CTA_HELP, CTA_HELP_NAME, CTA_ID, CTA_LABELS, CTA_LABELS_MASK,
  CTA_MARK, CTA_MARK_MASK, CTA_NAT_DST, CTA_NAT_PROTO, CTA_NAT_SRC, CTA_NAT_V4_MAXIP,
  CTA_NAT_V4_MINIP, CTA_NAT_V6_MAXIP, CTA_NAT_V6_MINIP, CTA_PROTOINFO, CTA_PROTOINFO_DCCP,
  CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ, CTA_PROTOINFO_DCCP_ROLE, CTA_PROTOINFO_DCCP_STATE,
  CTA_PROTOINFO_SCTP, CTA_PROTOINFO_SCTP_STATE, CTA_PROTOINFO_SCTP_VTAG_ORIGINAL,
  CTA_PROTOINFO_SCTP_VTAG_REPLY, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
  CTA_PROTOINFO_TCP_FLAGS_REPLY, CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL,
  CTA_PROTOINFO_TCP_WSCALE_REPLY,
  CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_PROTO_DST_PORT, CTA_PROTO_NUM,
  CTA_PROTO_SRC_PORT, CTA_TUPLE_IP, CTA_TUPLE_PROTO, NLA_F_NESTED,
  CTA_PROTONAT_PORT_MAX, CTA_PROTONAT_PORT_MIN, CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_ORIG,
  CTA_TUPLE_REPLY, CTA_ZONE, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPS_ASSURED_BIT,
  IPS_CONFIRMED_BIT, IPS_FIXED_TIMEOUT_BIT, IPS_SEEN_REPLY_BIT, PORT_PROTOS, STATUS_NAMES,
  StatusFlag, TCP_FLAG_NAMES,
} from '../wire/enums';
import { invalid } from '../common/errors';
import { checkHelperName, checkInt, checkKeys, checkObject, show } from '../common/validate';
import { acceptedStates, canonicalState, stateNames } from './states';
import { AttrWriter } from '../wire/netlink';
import { ParsedAddress, parseAddress } from '../common/address';
import { ResolvedTuple, encodeTuple, invertTuple, protoName, protoNumber, resolveTuple } from './tuple';
import type { CreateSpec, EntryKey, SettableStatusFlag, UpdateSpec } from './entry-types';

export const FAMILY_NUM = { ipv4: AF_INET, ipv6: AF_INET6 } as const;

export const SETTABLE: Record<SettableStatusFlag, number> = {
  SEEN_REPLY: 1 << IPS_SEEN_REPLY_BIT,
  ASSURED: 1 << IPS_ASSURED_BIT,
  FIXED_TIMEOUT: 1 << IPS_FIXED_TIMEOUT_BIT,
};

/**
 * Flag names to bits. `others` (for updates) collects known flags the caller may not set:
 * they are accepted when the entry already has them, so a Flow can be passed back.
 */
function statusBitsOf(v: unknown, field: string, others?: { bits: number }): number {
  if (!Array.isArray(v)) throw invalid(field, `must be an array of flag names such as ["ASSURED"]`);
  let bits = 0;
  for (const n of v) {
    const name = typeof n === 'string' ? n.toUpperCase().replace(/^IPS_/, '') : '';
    const bit = SETTABLE[name as SettableStatusFlag];
    if (bit === undefined) {
      const known = STATUS_NAMES.indexOf(name as StatusFlag);
      if (known >= 0 && others) {
        others.bits |= 1 << known;
        continue;
      }
      throw invalid(field, known >= 0
        ? `the kernel does not let callers set ${name}; settable flags are ${Object.keys(SETTABLE).join(', ')}`
        : `unknown status flag ${show(n)}: use ${Object.keys(SETTABLE).join(', ')}`);
    }
    bits |= bit;
  }
  return bits;
}

function labelWords(v: unknown, field: string): Buffer {
  if (!Array.isArray(v)) throw invalid(field, 'must be an array of label bit numbers 0-127, e.g. [1, 5]');
  const words = Buffer.alloc(16);
  for (let i = 0; i < v.length; i++) {
    const b = checkInt(v[i], 0, 127, `${field}[${i}]`, 'label bit');
    const w = b >> 5;
    // The kernel reads the bitmap as host-order 32-bit words (little endian here).
    words.writeUInt32LE((words.readUInt32LE(w * 4) | (1 << (b & 31))) >>> 0, w * 4);
  }
  return words;
}

interface StateInfo {
  protonum: number;
  value: number;
}

function resolveState(v: unknown, protonum: number, field: string): StateInfo {
  const names = stateNames(protonum);
  if (!names) throw invalid(field, `${protoName(protonum)} has no state; state is for tcp, sctp and dccp`);
  // DCCP: only states below CT_DCCP_IGNORE are accepted by the kernel.
  const allowed = protonum === IPPROTO_DCCP ? names.slice(0, 8) : names;
  const name = typeof v === 'string' ? canonicalState(v, protonum) : undefined;
  const i = name === undefined ? -1 : allowed.indexOf(name);
  if (i < 0) throw invalid(field, `unknown state ${show(v)} for this protocol: use one of ${protonum === IPPROTO_DCCP ? allowed.join(', ') : acceptedStates(protonum).join(', ')}`);
  return { protonum, value: i };
}

/** TCP flag names (IP_CT_TCP_FLAG_*, as Flow.tcp.flagsOrig shows them) to bits. */
const TCP_FLAG_BITS: Record<string, number> = Object.fromEntries(Object.entries(TCP_FLAG_NAMES).map(([bit, name]) => [name, Number(bit)]));

function tcpFlagBits(v: unknown, field: string): number {
  if (typeof v === 'number') return checkInt(v, 0, 255, field, 'TCP flag bits');
  if (!Array.isArray(v)) throw invalid(field, `must be an array of flag names such as ['BE_LIBERAL', 'SACK_PERM'] or a number 0-255`);
  let bits = 0;
  v.forEach((n, i) => {
    const b = typeof n === 'string' ? TCP_FLAG_BITS[n.toUpperCase().replace(/^IP_CT_TCP_FLAG_/, '')] : undefined;
    if (b === undefined) throw invalid(`${field}[${i}]`, `unknown TCP flag ${show(n)}: use ${Object.keys(TCP_FLAG_BITS).join(', ')}`);
    bits |= b;
  });
  return bits;
}

/** A validated TCP protoinfo change: per-direction {flags, mask} and window scales. */
export interface TcpChange {
  flagsOrig?: { flags: number; mask: number };
  flagsReply?: { flags: number; mask: number };
  wscaleOrig?: number;
  wscaleReply?: number;
}

const TCP_KEYS = new Set(['flagsOrig', 'flagsReply', 'wscaleOrig', 'wscaleReply']);
const WINDOW_SCALE = 0x01; // IP_CT_TCP_FLAG_WINDOW_SCALE
/** Largest window scale TCP allows (RFC 7323). */
const TCP_MAX_WSCALE = 14;

function resolveTcpFlags(v: unknown, field: string): { flags: number; mask: number } {
  const o = checkObject(v, field, "{ flags: ['BE_LIBERAL'], mask: ['BE_LIBERAL'] }");
  checkKeys(o, new Set(['flags', 'mask']), field, 'a TCP flags change');
  const flags = tcpFlagBits(o.flags ?? [], `${field}.flags`);
  const mask = o.mask === undefined ? flags : tcpFlagBits(o.mask, `${field}.mask`);
  if (flags & ~mask) throw invalid(`${field}.flags`, `has flags outside ${field}.mask (0x${flags.toString(16)} vs 0x${mask.toString(16)}): the kernel changes only masked flags`);
  if (mask === 0) throw invalid(`${field}.mask`, 'is empty: name the flags to set or clear');
  return { flags, mask };
}

/**
 * Validates `tcpWindow` (create and update). The kernel applies window scales only when
 * both are given and both directions have WINDOW_SCALE, ignoring them silently otherwise,
 * so both are required together (whether WINDOW_SCALE is on is checked by the callers:
 * create needs it in the same request, update may find it on the entry).
 */
function resolveTcp(v: unknown, protonum: number, field: string): TcpChange {
  if (protonum !== IPPROTO_TCP) throw invalid(field, `only TCP entries have TCP flags and window scales (protocol is ${protonum})`);
  const o = checkObject(v, field, "{ flagsOrig: { flags: ['BE_LIBERAL'] }, flagsReply: { flags: ['BE_LIBERAL'] } }");
  checkKeys(o, TCP_KEYS, field, 'tcpWindow');
  const t: TcpChange = {};
  if (o.flagsOrig !== undefined) t.flagsOrig = resolveTcpFlags(o.flagsOrig, `${field}.flagsOrig`);
  if (o.flagsReply !== undefined) t.flagsReply = resolveTcpFlags(o.flagsReply, `${field}.flagsReply`);
  if ((o.wscaleOrig === undefined) !== (o.wscaleReply === undefined)) {
    const missing = o.wscaleOrig === undefined ? 'wscaleOrig' : 'wscaleReply';
    throw invalid(`${field}.${missing}`, 'window scales go together: the kernel ignores one without the other; give wscaleOrig and wscaleReply');
  }
  if (o.wscaleOrig !== undefined) {
    t.wscaleOrig = checkInt(o.wscaleOrig, 0, TCP_MAX_WSCALE, `${field}.wscaleOrig`, 'window scale');
    t.wscaleReply = checkInt(o.wscaleReply, 0, TCP_MAX_WSCALE, `${field}.wscaleReply`, 'window scale');
    for (const dir of ['flagsOrig', 'flagsReply'] as const) {
      const f = t[dir];
      if (f && f.mask & WINDOW_SCALE && !(f.flags & WINDOW_SCALE)) {
        throw invalid(`${field}.${dir}`, 'clears WINDOW_SCALE while setting window scales: the kernel applies scales only with WINDOW_SCALE on in both directions');
      }
    }
  }
  if (Object.keys(t).length === 0) throw invalid(field, 'is empty: give flagsOrig, flagsReply, or wscaleOrig with wscaleReply');
  return t;
}

/** True when `t` itself turns WINDOW_SCALE on for both directions. */
function setsWindowScale(t: TcpChange): boolean {
  return ((t.flagsOrig?.flags ?? 0) & (t.flagsReply?.flags ?? 0) & WINDOW_SCALE) !== 0;
}

function encodeProtoinfo(w: AttrWriter, s: StateInfo | undefined, tcp: TcpChange | undefined, protonum: number): void {
  w.nest(CTA_PROTOINFO);
  if (protonum === IPPROTO_TCP) {
    w.nest(CTA_PROTOINFO_TCP);
    if (s) w.u8(CTA_PROTOINFO_TCP_STATE, s.value);
    // struct nf_ct_tcp_flags { __u8 flags; __u8 mask; }
    if (tcp?.flagsOrig) w.bytes(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, Uint8Array.of(tcp.flagsOrig.flags, tcp.flagsOrig.mask));
    if (tcp?.flagsReply) w.bytes(CTA_PROTOINFO_TCP_FLAGS_REPLY, Uint8Array.of(tcp.flagsReply.flags, tcp.flagsReply.mask));
    if (tcp?.wscaleOrig !== undefined) w.u8(CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, tcp.wscaleOrig).u8(CTA_PROTOINFO_TCP_WSCALE_REPLY, tcp.wscaleReply!);
    w.end();
  } else if (s && s.protonum === IPPROTO_SCTP) {
    // The kernel wants the verification tags alongside the state.
    w.nest(CTA_PROTOINFO_SCTP).u8(CTA_PROTOINFO_SCTP_STATE, s.value)
      .u32(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, 0).u32(CTA_PROTOINFO_SCTP_VTAG_REPLY, 0).end();
  } else if (s) {
    w.nest(CTA_PROTOINFO_DCCP).u8(CTA_PROTOINFO_DCCP_STATE, s.value).u8(CTA_PROTOINFO_DCCP_ROLE, 0)
      .u64(CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ, 0n).end();
  }
  w.end();
}

/** A validated entry name, ready to encode. */
export interface ResolvedKey {
  family: 'ipv4' | 'ipv6';
  protonum: number;
  tuple: ResolvedTuple;
  direction: 'orig' | 'reply';
  zone: number;
  id: number | undefined;
}

const tupleOf = (t: unknown, protonum: number, field: string): ResolvedTuple => resolveTuple(t, protonum, field, true);

function resolveZone(v: unknown, field: string): number {
  return v === undefined ? 0 : checkInt(v, 0, 65535, field, 'zone');
}

/**
 * Validates the name of an entry. `direction` undefined: the original tuple when given,
 * else the reply tuple (`{ proto, reply: {...} }` names an entry too, as for `conntrack -D
 * --reply-src ...`).
 */
/**
 * The fields of a decoded Flow: a Flow from list() may be passed back wherever an entry is
 * named (get, delete, update), so these keys are accepted there and ignored.
 */
export const FLOW_FIELDS: readonly string[] = [
  'id', 'family', 'proto', 'orig', 'reply', 'status', 'statusBits', 'timeout', 'mark', 'zone', 'use', 'state', 'tcp',
  'sctp', 'dccp', 'counters', 'timestamp', 'eventTimestamp', 'labels', 'helper', 'secctx', 'secmark', 'seqAdj',
  'synproxy', 'master', 'unknown',
];
const CREATE_KEYS = new Set(['proto', 'orig', 'reply', 'timeout', 'mark', 'zone', 'status', 'state', 'tcpWindow', 'labels', 'helper', 'nat']);
// A create or update spec names its entry too (it is passed to get() internally).
const KEY_KEYS = new Set(['proto', 'orig', 'reply', 'zone', 'id', ...FLOW_FIELDS, ...CREATE_KEYS]);

export function resolveKey(key: unknown, direction?: 'orig' | 'reply', field = 'key', checkUnknown = true): ResolvedKey {
  const k = checkObject(key, field, "{ proto: 'tcp', orig: { src, dst, sport, dport } }");
  if (checkUnknown) checkKeys(k, KEY_KEYS, field, 'an entry key');
  const protonum = protoNumber(k.proto, 'proto');
  const dir = direction ?? (k.orig === undefined && k.reply !== undefined ? 'reply' : 'orig');
  if (k[dir] === undefined) {
    throw invalid(dir, dir === 'orig'
      ? 'the entry is named by a tuple: give orig: { src, dst, sport, dport } (or icmp), or reply: { ... }'
      : "direction 'reply' names the entry by its reply tuple: give reply: { src, dst, sport, dport }");
  }
  const tuple = tupleOf(k[dir], protonum, dir);
  const zone = resolveZone(k.zone, 'zone');
  const id = k.id === undefined ? undefined : checkInt(k.id, 0, 0xffffffff, 'id', 'id');
  return { family: tuple.family, protonum, tuple, direction: dir, zone, id };
}

/** Writes the attributes that name an entry (tuple, zone, id). */
export function encodeKey(w: AttrWriter, k: ResolvedKey, withId: boolean): void {
  encodeTuple(w, k.direction === 'orig' ? CTA_TUPLE_ORIG : CTA_TUPLE_REPLY, k.tuple);
  if (k.zone !== 0) w.u16(CTA_ZONE, k.zone);
  if (withId && k.id !== undefined) w.u32(CTA_ID, k.id);
}

function resolveNat(v: unknown, field: string, family: 'ipv4' | 'ipv6', protonum: number): { ip: Buffer; port?: number } {
  const o = checkObject(v, field, "{ address: '192.0.2.1', port: 8080 }");
  for (const key of Object.keys(o)) if (key !== 'address' && key !== 'port') throw invalid(`${field}.${key}`, 'unknown key; a NAT target takes address and port');
  const a = parseAddress(o.address as string);
  if (!a) throw invalid(`${field}.address`, `not an IPv4 or IPv6 address: ${show(o.address)}`);
  if (a.family !== family) throw invalid(`${field}.address`, `is ${a.family} but the entry is ${family}: NAT to an address of the entry's family`);
  let port: number | undefined;
  if (o.port !== undefined) {
    if (!PORT_PROTOS.has(protonum)) throw invalid(`${field}.port`, `${protoName(protonum)} has no ports; remove port`);
    port = checkInt(o.port, 0, 65535, `${field}.port`, 'port');
  }
  return { ip: a.bytes, port };
}

function encodeNat(w: AttrWriter, attr: number, family: 'ipv4' | 'ipv6', t: { ip: Buffer; port?: number }): void {
  w.nest(attr);
  if (family === 'ipv4') w.bytes(CTA_NAT_V4_MINIP, t.ip).bytes(CTA_NAT_V4_MAXIP, t.ip);
  else w.bytes(CTA_NAT_V6_MINIP, t.ip).bytes(CTA_NAT_V6_MAXIP, t.ip);
  if (t.port !== undefined) {
    w.nest(CTA_NAT_PROTO).u16(CTA_PROTONAT_PORT_MIN, t.port).u16(CTA_PROTONAT_PORT_MAX, t.port).end();
  }
  w.end();
}

function checkTimeout(v: unknown, field: string): number {
  return checkInt(v, 1, 0xffffffff, field, undefined, ' seconds');
}

// ---------------------------------------------------------------------------------------
// Encoders

const writer = new AttrWriter(512);

/** Validates a create spec and encodes the IPCTNL_MSG_CT_NEW payload. */
export function encodeCreate(spec: CreateSpec): { family: number; payload: Buffer; labels?: Buffer } {
  const w = writer.reset();
  const fast = writeCreateFast(w, spec);
  if (fast >= 0) return { family: fast, payload: w.finish() };
  const { family, labels } = writeCreate(w, spec);
  return { family, payload: w.finish(), labels };
}

/** Validates a create spec and appends its payload to `w` (nothing written on a refusal). */
export function writeCreate(w: AttrWriter, spec: CreateSpec): { family: number; labels?: Buffer } {
  const s = checkObject(spec, 'spec', "{ proto: 'udp', orig: { src, dst, sport, dport }, timeout: 30 }");
  checkKeys(s, CREATE_KEYS, 'spec', 'a create spec');
  const protonum = protoNumber(s.proto, 'proto');
  if (s.orig === undefined) throw invalid('orig', 'create needs the original tuple: orig: { src, dst, sport, dport } (or icmp for ICMP)');
  const orig = tupleOf(s.orig, protonum, 'orig');
  let reply: ResolvedTuple;
  if (s.reply !== undefined) {
    reply = tupleOf(s.reply, protonum, 'reply');
    if (reply.family !== orig.family) throw invalid('reply.src', `is ${reply.family} but orig is ${orig.family}: both tuples need one family`);
  } else {
    reply = invertTuple(orig);
    if (reply.zone !== undefined) delete reply.zone;
  }
  const timeout = checkTimeout(s.timeout, 'timeout');
  const mark = s.mark === undefined ? undefined : checkInt(s.mark, 0, 0xffffffff, 'mark', 'mark');
  const zone = resolveZone(s.zone, 'zone');
  const status = s.status === undefined ? undefined : statusBitsOf(s.status, 'status');
  const state = s.state === undefined ? undefined : resolveState(s.state, protonum, 'state');
  const tcp = s.tcpWindow === undefined ? undefined : resolveTcp(s.tcpWindow, protonum, 'tcpWindow');
  if (tcp?.wscaleOrig !== undefined && !setsWindowScale(tcp)) {
    throw invalid('tcpWindow.wscaleOrig', "the kernel applies window scales only when both directions have WINDOW_SCALE: add it to tcpWindow.flagsOrig.flags and tcpWindow.flagsReply.flags");
  }
  const labels = s.labels === undefined ? undefined : labelWords(s.labels, 'labels');
  const helper = s.helper === undefined ? undefined : checkHelperName(s.helper, 'helper');
  let natSrc: { ip: Buffer; port?: number } | undefined;
  let natDst: { ip: Buffer; port?: number } | undefined;
  if (s.nat !== undefined) {
    const n = checkObject(s.nat, 'nat', "{ src: { address: '192.0.2.1' } }");
    for (const key of Object.keys(n)) if (key !== 'src' && key !== 'dst') throw invalid(`nat.${key}`, 'unknown key; use src (SNAT) or dst (DNAT)');
    if (n.src !== undefined) natSrc = resolveNat(n.src, 'nat.src', orig.family, protonum);
    if (n.dst !== undefined) natDst = resolveNat(n.dst, 'nat.dst', orig.family, protonum);
  }

  encodeTuple(w, CTA_TUPLE_ORIG, orig);
  encodeTuple(w, CTA_TUPLE_REPLY, reply);
  w.u32(CTA_TIMEOUT, timeout);
  if (zone !== 0) w.u16(CTA_ZONE, zone);
  if (mark !== undefined) w.u32(CTA_MARK, mark);
  // The kernel compares the whole word with the new entry's: CONFIRMED must be in it.
  if (status !== undefined) w.u32(CTA_STATUS, (status | (1 << IPS_CONFIRMED_BIT)) >>> 0);
  if (state || tcp) encodeProtoinfo(w, state, tcp, protonum);
  if (helper !== undefined) w.nest(CTA_HELP).string(CTA_HELP_NAME, helper).end();
  if (natSrc) encodeNat(w, CTA_NAT_SRC, orig.family, natSrc);
  if (natDst) encodeNat(w, CTA_NAT_DST, orig.family, natDst);
  if (labels) w.bytes(CTA_LABELS, labels);
  return { family: FAMILY_NUM[orig.family], labels };
}

// ---------------------------------------------------------------------------------------
// The common bulk create, hand-written

/** Port protocols by the built-in names and numbers writeCreate() takes for them. */
function fastPortProto(p: unknown): number {
  switch (p) {
    case 'tcp': case IPPROTO_TCP: return IPPROTO_TCP;
    case 'udp': case IPPROTO_UDP: return IPPROTO_UDP;
    case 'udplite': case IPPROTO_UDPLITE: return IPPROTO_UDPLITE;
    case 'sctp': case IPPROTO_SCTP: return IPPROTO_SCTP;
    case 'dccp': case IPPROTO_DCCP: return IPPROTO_DCCP;
    default: return -1;
  }
}

/**
 * An object whose prototype is Object.prototype (or null): its for-in keys are all the
 * properties a named read could find, unless Object.prototype itself was given some.
 * Anything else (class instances with getters, arrays) takes the general path.
 */
function isPlain(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

const isU = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** The host stores u32 words little-endian (word stores below lay bytes out in that order). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** An attribute header (nla_len, nla_type) as one little-endian word. */
const hdr = (len: number, type: number): number => (len | (type << 16)) >>> 0;

/** A u16 in network order followed by two bytes of padding, as one little-endian word. */
const be16 = (v: number): number => (v >> 8) | ((v & 0xff) << 8);

/** A u32 in network order, as one little-endian word. */
const be32 = (v: number): number => (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;

/** Writes a u16 attribute (network order, padded) at word `i`; returns the next word. */
function fastU16(u: Uint32Array, i: number, type: number, v: number): number {
  u[i] = hdr(6, type);
  u[i + 1] = be16(v);
  return i + 2;
}

/** Writes a u32 attribute (network order) at word `i`; returns the next word. */
function fastU32(u: Uint32Array, i: number, type: number, v: number): number {
  u[i] = hdr(8, type);
  u[i + 1] = be32(v);
  return i + 2;
}

/** Bytes [i, i + 4) of an address as one little-endian word (the bytes stay in order). */
const word = (a: Buffer, i: number): number => (a[i] | (a[i + 1] << 8) | (a[i + 2] << 16) | (a[i + 3] << 24)) >>> 0;

/**
 * encodeTuple() of a port protocol's tuple at word u[i] (whole words: a tuple is ~13 of
 * them against ~52 byte stores); returns the next word index.
 */
function fastTuple(u: Uint32Array, i: number, attr: number, protonum: number, src: Buffer, dst: Buffer, sport: number, dport: number): number {
  const v6 = src.length === 16;
  const aw = v6 ? 4 : 1; // address words
  const ipLen = 4 + 2 * (4 + 4 * aw);
  u[i] = hdr(4 + ipLen + 28, attr | NLA_F_NESTED);
  u[i + 1] = hdr(ipLen, CTA_TUPLE_IP | NLA_F_NESTED);
  i += 2;
  u[i] = hdr(4 + 4 * aw, v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC);
  for (let k = 0; k < aw; k++) u[i + 1 + k] = word(src, 4 * k);
  i += 1 + aw;
  u[i] = hdr(4 + 4 * aw, v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST);
  for (let k = 0; k < aw; k++) u[i + 1 + k] = word(dst, 4 * k);
  i += 1 + aw;
  u[i] = hdr(28, CTA_TUPLE_PROTO | NLA_F_NESTED);
  u[i + 1] = hdr(5, CTA_PROTO_NUM);
  u[i + 2] = protonum;
  u[i + 3] = hdr(6, CTA_PROTO_SRC_PORT);
  u[i + 4] = be16(sport);
  u[i + 5] = hdr(6, CTA_PROTO_DST_PORT);
  u[i + 6] = be16(dport);
  return i + 7;
}

/** What fastOrig() read last (scratch: valid until its next call). */
const fastOrigRead = { src: undefined as unknown as ParsedAddress, dst: undefined as unknown as ParsedAddress, sport: 0, dport: 0 };

/**
 * Reads the original tuple of the fast encoders' shape ({ src, dst, sport, dport }, one
 * address family, ports 0-65535) into fastOrigRead; false for any other shape or value.
 * Values are read in the for-in loop, as writeCreateFast() explains.
 */
function fastOrig(orig: unknown): boolean {
  if (!isPlain(orig)) return false;
  let srcText: unknown, dstText: unknown, sport: unknown, dport: unknown;
  for (const k in orig) {
    const v = orig[k];
    if (k === 'src') srcText = v;
    else if (k === 'dst') dstText = v;
    else if (k === 'sport') sport = v;
    else if (k === 'dport') dport = v;
    else return false;
  }
  if (!isU(sport, 0xffff) || !isU(dport, 0xffff)) return false;
  const src = parseAddress(srcText as string);
  const dst = parseAddress(dstText as string);
  if (!src || !dst || src.family !== dst.family) return false;
  fastOrigRead.src = src;
  fastOrigRead.dst = dst;
  fastOrigRead.sport = sport as number;
  fastOrigRead.dport = dport as number;
  return true;
}

/**
 * writeCreate() for the shape bulk callers send ({ proto, orig: { src, dst, sport, dport },
 * timeout, mark?, zone? }, a port protocol, no reply tuple), writing bytes directly: bulk
 * calls validate every item before sending any, so this time cannot overlap the kernel's
 * work, and the general path's objects and calls cost several times more. Returns the
 * family, or -1 with nothing written for any other shape or any value writeCreate() might
 * refuse (the caller then uses writeCreate(), which names the problem). Its bytes equal
 * writeCreate()'s (test/unit/flows/create-fast.test.ts checks both on generated specs).
 */
export function writeCreateFast(w: AttrWriter, spec: unknown): number {
  if (!isPlain(spec)) return -1;
  // Values are read in the for-in loops (s[k] there takes V8's enum-cache path): specs
  // made with spread syntax can each have their own hidden class, and named loads
  // (s.mark) on 100k of them go megamorphic, several times slower.
  let proto: unknown, orig: unknown, timeout: unknown, mark: unknown, zone: unknown;
  for (const k in spec) {
    const v = spec[k];
    if (k === 'proto') proto = v;
    else if (k === 'orig') orig = v;
    else if (k === 'timeout') timeout = v;
    else if (k === 'mark') mark = v;
    else if (k === 'zone') zone = v;
    else return -1;
  }
  const protonum = fastPortProto(proto);
  if (protonum < 0 || !isU(timeout, 0xffffffff) || timeout === 0) return -1;
  if ((mark !== undefined && !isU(mark, 0xffffffff)) || (zone !== undefined && !isU(zone, 0xffff))) return -1;
  if (!fastOrig(orig)) return -1;
  const { src, dst, sport, dport } = fastOrigRead;
  // Whole-word stores need a little-endian host and a writer at a word boundary (where
  // attributes always end); otherwise the general path writes the same bytes.
  if (!LITTLE_ENDIAN || (w.length & 3) !== 0) return -1;
  const tupleLen = src.family === 'ipv4' ? 52 : 76;
  const p = w.raw(2 * tupleLen + 8 + (zone ? 8 : 0) + (mark !== undefined ? 8 : 0));
  const u = w.words;
  let i = fastTuple(u, p >>> 2, CTA_TUPLE_ORIG, protonum, src.bytes, dst.bytes, sport, dport);
  i = fastTuple(u, i, CTA_TUPLE_REPLY, protonum, dst.bytes, src.bytes, dport, sport);
  i = fastU32(u, i, CTA_TIMEOUT, timeout);
  if (zone) i = fastU16(u, i, CTA_ZONE, zone);
  if (mark !== undefined) fastU32(u, i, CTA_MARK, mark);
  return FAMILY_NUM[src.family];
}

/**
 * encodeKey() (with the id) of the key shape bulk deletes send ({ proto, orig: { src, dst,
 * sport, dport }, zone?, id? }, a port protocol), in whole words like writeCreateFast().
 * Returns the family, or -1 with nothing written for any other shape or any value
 * resolveKey() might refuse (the caller then takes the general path, which names the
 * problem). Its bytes equal the general path's (test/unit/flows/create-fast.test.ts).
 */
export function writeKeyFast(w: AttrWriter, key: unknown): number {
  if (!isPlain(key)) return -1;
  // Values read in the for-in loops, as in writeCreateFast().
  let proto: unknown, orig: unknown, zone: unknown, id: unknown;
  for (const k in key) {
    const v = key[k];
    if (k === 'proto') proto = v;
    else if (k === 'orig') orig = v;
    else if (k === 'zone') zone = v;
    else if (k === 'id') id = v;
    else return -1;
  }
  const protonum = fastPortProto(proto);
  if (protonum < 0) return -1;
  if ((zone !== undefined && !isU(zone, 0xffff)) || (id !== undefined && !isU(id, 0xffffffff))) return -1;
  if (!fastOrig(orig)) return -1;
  const { src, dst, sport, dport } = fastOrigRead;
  if (!LITTLE_ENDIAN || (w.length & 3) !== 0) return -1;
  const p = w.raw((src.family === 'ipv4' ? 52 : 76) + (zone ? 8 : 0) + (id !== undefined ? 8 : 0));
  const u = w.words;
  let i = fastTuple(u, p >>> 2, CTA_TUPLE_ORIG, protonum, src.bytes, dst.bytes, sport, dport);
  if (zone) i = fastU16(u, i, CTA_ZONE, zone);
  if (id !== undefined) fastU32(u, i, CTA_ID, id);
  return FAMILY_NUM[src.family];
}

/** An update read by readUpdateFast(): the entry's original tuple and the changes. */
export interface FastUpdate {
  protonum: number;
  src: ParsedAddress;
  dst: ParsedAddress;
  sport: number;
  dport: number;
  zone: number;
  timeout: number | undefined;
  mark: number | undefined;
}

const fastUpdateRead: FastUpdate = {
  protonum: 0, src: undefined as unknown as ParsedAddress, dst: undefined as unknown as ParsedAddress,
  sport: 0, dport: 0, zone: 0, timeout: undefined, mark: undefined,
};

/**
 * Reads an update of the shape bulk callers send ({ proto, orig: { src, dst, sport, dport },
 * zone?, timeout?, mark? as a number }, a port protocol: no id or status, so nothing to read
 * from the entry first) for writeUpdateFast(). Returns a scratch object, valid until the
 * next call, or undefined for any other shape or any value resolveUpdate() might refuse (the
 * caller then takes the general path, which names the problem). resolveUpdate()'s named
 * reads and the objects it builds cost several times the kernel's work on such an update.
 */
export function readUpdateFast(spec: unknown): FastUpdate | undefined {
  if (!isPlain(spec)) return undefined;
  // Values read in the for-in loop, as in writeCreateFast().
  let proto: unknown, orig: unknown, zone: unknown, timeout: unknown, mark: unknown;
  for (const k in spec) {
    const v = spec[k];
    if (k === 'proto') proto = v;
    else if (k === 'orig') orig = v;
    else if (k === 'zone') zone = v;
    else if (k === 'timeout') timeout = v;
    else if (k === 'mark') mark = v;
    else return undefined;
  }
  const protonum = fastPortProto(proto);
  if (protonum < 0 || (timeout === undefined && mark === undefined)) return undefined;
  if (timeout !== undefined && (!isU(timeout, 0xffffffff) || timeout === 0)) return undefined;
  if ((mark !== undefined && !isU(mark, 0xffffffff)) || (zone !== undefined && !isU(zone, 0xffff))) return undefined;
  if (!fastOrig(orig)) return undefined;
  const u = fastUpdateRead;
  u.protonum = protonum;
  u.src = fastOrigRead.src;
  u.dst = fastOrigRead.dst;
  u.sport = fastOrigRead.sport;
  u.dport = fastOrigRead.dport;
  u.zone = (zone as number | undefined) ?? 0;
  u.timeout = timeout as number | undefined;
  u.mark = mark as number | undefined;
  return u;
}

/**
 * encodeUpdate() of what readUpdateFast() read, in whole words like writeCreateFast();
 * returns the family. Its bytes equal encodeUpdate()'s (test/unit/flows/create-fast.test.ts).
 */
export function writeUpdateFast(w: AttrWriter, r: FastUpdate): number {
  const { protonum, src, dst, sport, dport, zone, timeout, mark } = r;
  if (!LITTLE_ENDIAN || (w.length & 3) !== 0) {
    // The general encoders, on what was read.
    const tuple: ResolvedTuple = { family: src.family, protonum, src: src.bytes, dst: dst.bytes, sport, dport };
    encodeKey(w, { family: src.family, protonum, tuple, direction: 'orig', zone, id: undefined }, false);
    writeChanges(w, { mark: mark === undefined ? undefined : { value: mark, mask: 0xffffffff }, timeout, statusSet: 0, statusUnset: 0, statusFixed: 0, hasStatus: false }, protonum);
    return FAMILY_NUM[src.family];
  }
  const p = w.raw((src.family === 'ipv4' ? 52 : 76) + (zone ? 8 : 0) + (timeout !== undefined ? 8 : 0) + (mark !== undefined ? 16 : 0));
  const u = w.words;
  let i = fastTuple(u, p >>> 2, CTA_TUPLE_ORIG, protonum, src.bytes, dst.bytes, sport, dport);
  if (zone) i = fastU16(u, i, CTA_ZONE, zone);
  if (timeout !== undefined) i = fastU32(u, i, CTA_TIMEOUT, timeout);
  if (mark !== undefined) fastU32(u, fastU32(u, i, CTA_MARK, mark), CTA_MARK_MASK, 0xffffffff);
  return FAMILY_NUM[src.family];
}

/** Validates a key and encodes a GET or DELETE payload. */
export function encodeKeyRequest(key: EntryKey, direction?: 'orig' | 'reply', withId = true): { family: number; payload: Buffer; key: ResolvedKey } {
  const k = resolveKey(key, direction);
  const w = writer.reset();
  encodeKey(w, k, withId);
  return { family: FAMILY_NUM[k.family], payload: w.finish(), key: k };
}

/** Validated changes to an entry (update, updateMatching, the status fallback of upsert). */
export interface ResolvedChanges {
  mark?: { value: number; mask: number };
  timeout?: number;
  statusSet: number;
  statusUnset: number;
  /** Flags named that callers cannot set: must already be set on the entry. */
  statusFixed: number;
  hasStatus: boolean;
  labels?: { bits: Buffer; mask: Buffer };
  state?: StateInfo;
  tcp?: TcpChange;
}

export interface ResolvedUpdate extends ResolvedChanges {
  key: ResolvedKey;
}

export interface ChangeOptions {
  /** Field prefix for error messages ('' or 'changes.'). */
  prefix?: string;
  /** The protocol, for state and tcp; undefined refuses both (bulk updates). */
  protonum?: number;
  /** Accept status flags callers cannot set when the entry already has them (update()). */
  fixedStatus?: boolean;
  /** The keys the object may hold, checked when given (update(): the changes and the entry's name). */
  keys?: ReadonlySet<string>;
}

const CHANGE_KEYS = ['mark', 'timeout', 'status', 'labels', 'state', 'tcpWindow'];
/** An object of changes only (updateMatching()). */
export const CHANGES_ONLY: ReadonlySet<string> = new Set(CHANGE_KEYS);
/** update()'s spec: the changes and what names the entry (a whole Flow may be passed). */
const UPDATE_KEYS: ReadonlySet<string> = new Set([...CHANGE_KEYS, ...KEY_KEYS]);

/** Validates changes (throws ERR_INVALID_ARGUMENT naming the field). */
export function resolveChanges(s: Record<string, unknown>, options: ChangeOptions = {}): ResolvedChanges {
  const pre = options.prefix ?? '';
  const r: ResolvedChanges = { statusSet: 0, statusUnset: 0, statusFixed: 0, hasStatus: false };
  const fixed = { bits: 0 };
  const others = options.fixedStatus ? fixed : undefined;
  if (options.keys) checkKeys(s, options.keys, pre ? pre.slice(0, -1) : 'spec', 'an update');
  if (s.mark !== undefined) {
    if (typeof s.mark === 'number') r.mark = { value: checkInt(s.mark, 0, 0xffffffff, `${pre}mark`, 'mark'), mask: 0xffffffff };
    else {
      const m = checkObject(s.mark, `${pre}mark`, '{ value: 1, mask: 0xff }');
      const value = checkInt(m.value, 0, 0xffffffff, `${pre}mark.value`, 'mark value');
      const mask = checkInt(m.mask, 0, 0xffffffff, `${pre}mark.mask`, 'mark mask');
      // The kernel computes (old & ~mask) ^ value: bits outside the mask would toggle.
      if ((value & ~mask) >>> 0) throw invalid(`${pre}mark.value`, `has bits outside mark.mask (0x${value.toString(16)} vs mask 0x${mask.toString(16)}): keep the value within the mask`);
      r.mark = { value, mask };
    }
  }
  if (s.timeout !== undefined) r.timeout = checkTimeout(s.timeout, `${pre}timeout`);
  if (s.status !== undefined) {
    r.hasStatus = true;
    if (Array.isArray(s.status)) r.statusSet = statusBitsOf(s.status, `${pre}status`, others);
    else {
      const st = checkObject(s.status, `${pre}status`, "['ASSURED'] or { set: [...], unset: ['FIXED_TIMEOUT'] }");
      for (const key of Object.keys(st)) if (key !== 'set' && key !== 'unset') throw invalid(`${pre}status.${key}`, 'unknown key; use set and unset');
      if (st.set !== undefined) r.statusSet = statusBitsOf(st.set, `${pre}status.set`, others);
      if (st.unset !== undefined) r.statusUnset = statusBitsOf(st.unset, `${pre}status.unset`);
      // nf_ct_change_status_common() hands the new word to __nf_ct_change_status(ct, status, 0):
      // bits are only ever set, so an unset would be acknowledged and silently not done.
      if (r.statusUnset) throw invalid(`${pre}status.unset`, 'the kernel never clears status flags of an existing entry (ctnetlink only sets them): SEEN_REPLY, ASSURED and FIXED_TIMEOUT stay once set');
    }
    r.statusFixed = fixed.bits;
  }
  if (s.labels !== undefined) {
    if (Array.isArray(s.labels)) r.labels = { bits: labelWords(s.labels, `${pre}labels`), mask: Buffer.alloc(16, 0xff) };
    else {
      const l = checkObject(s.labels, `${pre}labels`, '[1, 2] or { set: [1], unset: [2] }');
      for (const key of Object.keys(l)) if (key !== 'set' && key !== 'unset') throw invalid(`${pre}labels.${key}`, 'unknown key; use set and unset');
      const set = labelWords(l.set ?? [], `${pre}labels.set`);
      const unset = labelWords(l.unset ?? [], `${pre}labels.unset`);
      const mask = Buffer.alloc(16);
      for (let i = 0; i < 16; i++) {
        if (set[i] & unset[i]) throw invalid(`${pre}labels`, 'a label cannot be both set and unset');
        mask[i] = set[i] | unset[i];
      }
      r.labels = { bits: set, mask };
    }
  }
  for (const k of ['state', 'tcpWindow'] as const) {
    if (s[k] !== undefined && options.protonum === undefined) {
      throw invalid(`${pre}${k}`, `is not a bulk change (entries of several protocols may match): use update() per entry`);
    }
  }
  if (s.state !== undefined) r.state = resolveState(s.state, options.protonum!, `${pre}state`);
  if (s.tcpWindow !== undefined) r.tcp = resolveTcp(s.tcpWindow, options.protonum!, `${pre}tcpWindow`);
  if (r.mark === undefined && r.timeout === undefined && !r.hasStatus && !r.labels && !r.state && !r.tcp) {
    throw invalid(pre ? pre.slice(0, -1) : 'spec', `nothing to update: give at least one of ${options.protonum === undefined ? 'mark, timeout, status, labels' : 'mark, timeout, status, labels, state, tcpWindow'}`);
  }
  return r;
}

/** Validates an update spec (throws ERR_INVALID_ARGUMENT naming the field). */
export function resolveUpdate(spec: UpdateSpec): ResolvedUpdate {
  const key = resolveKey(spec, undefined, 'spec', false);
  const changes = resolveChanges(spec as unknown as Record<string, unknown>, { protonum: key.protonum, fixedStatus: true, keys: UPDATE_KEYS });
  return { key, ...changes };
}

/** The status word an update sends: the whole word, as the kernel wants it. */
export function updatedStatus(r: ResolvedChanges, current: number): number {
  return ((current | r.statusSet) & ~r.statusUnset) >>> 0;
}

/** Appends the change attributes (all but CTA_STATUS, which depends on the entry). */
export function writeChanges(w: AttrWriter, r: ResolvedChanges, protonum: number | undefined): void {
  if (r.timeout !== undefined) w.u32(CTA_TIMEOUT, r.timeout);
  if (r.mark !== undefined) w.u32(CTA_MARK, (r.mark.value & r.mark.mask) >>> 0).u32(CTA_MARK_MASK, r.mark.mask);
  if ((r.state || r.tcp) && protonum !== undefined) encodeProtoinfo(w, r.state, r.tcp, protonum);
  if (r.labels) w.bytes(CTA_LABELS, r.labels.bits).bytes(CTA_LABELS_MASK, r.labels.mask);
}

/**
 * True when `r` needs the entry's TCP flags to be known valid: window scales without
 * WINDOW_SCALE being set in both directions by the same request.
 */
export function needsScaleFlags(r: ResolvedChanges): boolean {
  return r.tcp?.wscaleOrig !== undefined && !setsWindowScale(r.tcp);
}

export function encodeUpdate(r: ResolvedUpdate, currentStatus: number | undefined): Buffer {
  const w = writer.reset();
  encodeKey(w, r.key, true);
  writeChanges(w, r, r.key.protonum);
  if (r.hasStatus && currentStatus !== undefined) w.u32(CTA_STATUS, updatedStatus(r, currentStatus));
  return w.finish();
}
