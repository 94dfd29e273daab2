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
  CTA_PROTOINFO_SCTP_VTAG_REPLY, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE,
  CTA_PROTONAT_PORT_MAX, CTA_PROTONAT_PORT_MIN, CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_ORIG,
  CTA_TUPLE_REPLY, CTA_ZONE, DCCP_STATES, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, IPS_ASSURED_BIT,
  IPS_CONFIRMED_BIT, IPS_FIXED_TIMEOUT_BIT, IPS_SEEN_REPLY_BIT, PORT_PROTOS, SCTP_STATES, STATUS_NAMES,
  StatusFlag, TCP_STATES,
} from '../wire/enums';
import { invalid } from '../common/errors';
import { checkHelperName, checkInt, checkObject, show } from '../common/validate';
import { AttrWriter } from '../wire/netlink';
import { parseAddress } from '../common/address';
import { ResolvedTuple, encodeTuple, invertTuple, protoName, protoNumber, resolveTuple } from './tuple';
import type { CreateSpec, EntryKey, SettableStatusFlag, UpdateSpec } from './entry-types';

export const FAMILY_NUM = { ipv4: AF_INET, ipv6: AF_INET6 } as const;

export const SETTABLE: Record<SettableStatusFlag, number> = {
  SEEN_REPLY: 1 << IPS_SEEN_REPLY_BIT,
  ASSURED: 1 << IPS_ASSURED_BIT,
  FIXED_TIMEOUT: 1 << IPS_FIXED_TIMEOUT_BIT,
};
const CLEARABLE = SETTABLE.FIXED_TIMEOUT;

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
  const names: readonly string[] | undefined =
    protonum === IPPROTO_TCP ? TCP_STATES : protonum === IPPROTO_SCTP ? SCTP_STATES : protonum === IPPROTO_DCCP ? DCCP_STATES : undefined;
  if (!names) throw invalid(field, `${protoName(protonum)} has no state; state is for tcp, sctp and dccp`);
  const name = typeof v === 'string' ? v.toUpperCase() : '';
  // DCCP: only states below CT_DCCP_IGNORE are accepted by the kernel.
  const allowed = protonum === IPPROTO_DCCP ? names.slice(0, 8) : names;
  const i = allowed.indexOf(name);
  if (i < 0) throw invalid(field, `unknown state ${show(v)} for this protocol: use one of ${allowed.join(', ')}`);
  return { protonum, value: i };
}

function encodeState(w: AttrWriter, s: StateInfo): void {
  w.nest(CTA_PROTOINFO);
  if (s.protonum === IPPROTO_TCP) {
    w.nest(CTA_PROTOINFO_TCP).u8(CTA_PROTOINFO_TCP_STATE, s.value).end();
  } else if (s.protonum === IPPROTO_SCTP) {
    // The kernel wants the verification tags alongside the state.
    w.nest(CTA_PROTOINFO_SCTP).u8(CTA_PROTOINFO_SCTP_STATE, s.value)
      .u32(CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, 0).u32(CTA_PROTOINFO_SCTP_VTAG_REPLY, 0).end();
  } else {
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

export function resolveKey(key: unknown, direction: 'orig' | 'reply' = 'orig', field = 'key'): ResolvedKey {
  const k = checkObject(key, field, "{ proto: 'tcp', orig: { src, dst, sport, dport } }");
  const protonum = protoNumber(k.proto, 'proto');
  const tfield = direction;
  if (k[tfield] === undefined) {
    throw invalid(tfield, direction === 'orig'
      ? 'the entry is named by its original tuple: give orig: { src, dst, sport, dport } (or icmp)'
      : "direction 'reply' names the entry by its reply tuple: give reply: { src, dst, sport, dport }");
  }
  const tuple = tupleOf(k[tfield], protonum, tfield);
  const zone = resolveZone(k.zone, 'zone');
  const id = k.id === undefined ? undefined : checkInt(k.id, 0, 0xffffffff, 'id', 'id');
  return { family: tuple.family, protonum, tuple, direction, zone, id };
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
  const { family, labels } = writeCreate(w, spec);
  return { family, payload: w.finish(), labels };
}

/** Validates a create spec and appends its payload to `w` (nothing written on a refusal). */
export function writeCreate(w: AttrWriter, spec: CreateSpec): { family: number; labels?: Buffer } {
  const s = checkObject(spec, 'spec', "{ proto: 'udp', orig: { src, dst, sport, dport }, timeout: 30 }");
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
  if (state) encodeState(w, state);
  if (helper !== undefined) w.nest(CTA_HELP).string(CTA_HELP_NAME, helper).end();
  if (natSrc) encodeNat(w, CTA_NAT_SRC, orig.family, natSrc);
  if (natDst) encodeNat(w, CTA_NAT_DST, orig.family, natDst);
  if (labels) w.bytes(CTA_LABELS, labels);
  return { family: FAMILY_NUM[orig.family], labels };
}

/** Validates a key and encodes a GET or DELETE payload. */
export function encodeKeyRequest(key: EntryKey, direction: 'orig' | 'reply' = 'orig', withId = true): { family: number; payload: Buffer; key: ResolvedKey } {
  const k = resolveKey(key, direction);
  const w = writer.reset();
  encodeKey(w, k, withId);
  return { family: FAMILY_NUM[k.family], payload: w.finish(), key: k };
}

export interface ResolvedUpdate {
  key: ResolvedKey;
  mark?: { value: number; mask: number };
  timeout?: number;
  statusSet: number;
  statusUnset: number;
  /** Flags named that callers cannot set: must already be set on the entry. */
  statusFixed: number;
  hasStatus: boolean;
  labels?: { bits: Buffer; mask: Buffer };
  state?: StateInfo;
}

/** Validates an update spec (throws ERR_INVALID_ARGUMENT naming the field). */
export function resolveUpdate(spec: UpdateSpec): ResolvedUpdate {
  const key = resolveKey(spec, 'orig', 'spec');
  const s = spec as unknown as Record<string, unknown>;
  const r: ResolvedUpdate = { key, statusSet: 0, statusUnset: 0, statusFixed: 0, hasStatus: false };
  const fixed = { bits: 0 };
  if (s.mark !== undefined) {
    if (typeof s.mark === 'number') r.mark = { value: checkInt(s.mark, 0, 0xffffffff, 'mark', 'mark'), mask: 0xffffffff };
    else {
      const m = checkObject(s.mark, 'mark', '{ value: 1, mask: 0xff }');
      const value = checkInt(m.value, 0, 0xffffffff, 'mark.value', 'mark value');
      const mask = checkInt(m.mask, 0, 0xffffffff, 'mark.mask', 'mark mask');
      if ((value & ~mask) >>> 0) throw invalid('mark.value', `has bits outside mark.mask (0x${value.toString(16)} vs mask 0x${mask.toString(16)}): keep the value within the mask`);
      r.mark = { value, mask };
    }
  }
  if (s.timeout !== undefined) r.timeout = checkTimeout(s.timeout, 'timeout');
  if (s.status !== undefined) {
    r.hasStatus = true;
    if (Array.isArray(s.status)) r.statusSet = statusBitsOf(s.status, 'status', fixed);
    else {
      const st = checkObject(s.status, 'status', "['ASSURED'] or { set: [...], unset: ['FIXED_TIMEOUT'] }");
      for (const key of Object.keys(st)) if (key !== 'set' && key !== 'unset') throw invalid(`status.${key}`, 'unknown key; use set and unset');
      if (st.set !== undefined) r.statusSet = statusBitsOf(st.set, 'status.set', fixed);
      if (st.unset !== undefined) r.statusUnset = statusBitsOf(st.unset, 'status.unset');
      if (r.statusUnset & ~CLEARABLE) throw invalid('status.unset', 'the kernel never clears SEEN_REPLY or ASSURED; only FIXED_TIMEOUT can be unset');
      if (r.statusSet & r.statusUnset) throw invalid('status', 'a flag cannot be both set and unset');
    }
    r.statusFixed = fixed.bits;
  }
  if (s.labels !== undefined) {
    if (Array.isArray(s.labels)) r.labels = { bits: labelWords(s.labels, 'labels'), mask: Buffer.alloc(16, 0xff) };
    else {
      const l = checkObject(s.labels, 'labels', '[1, 2] or { set: [1], unset: [2] }');
      for (const key of Object.keys(l)) if (key !== 'set' && key !== 'unset') throw invalid(`labels.${key}`, 'unknown key; use set and unset');
      const set = labelWords(l.set ?? [], 'labels.set');
      const unset = labelWords(l.unset ?? [], 'labels.unset');
      const mask = Buffer.alloc(16);
      for (let i = 0; i < 16; i++) {
        if (set[i] & unset[i]) throw invalid('labels', 'a label cannot be both set and unset');
        mask[i] = set[i] | unset[i];
      }
      r.labels = { bits: set, mask };
    }
  }
  if (s.state !== undefined) r.state = resolveState(s.state, key.protonum, 'state');
  if (r.mark === undefined && r.timeout === undefined && !r.hasStatus && !r.labels && !r.state) {
    throw invalid('spec', 'nothing to update: give at least one of mark, timeout, status, labels, state');
  }
  return r;
}

export function encodeUpdate(r: ResolvedUpdate, currentStatus: number | undefined): Buffer {
  const w = writer.reset();
  encodeKey(w, r.key, true);
  if (r.timeout !== undefined) w.u32(CTA_TIMEOUT, r.timeout);
  if (r.mark !== undefined) w.u32(CTA_MARK, (r.mark.value & r.mark.mask) >>> 0).u32(CTA_MARK_MASK, r.mark.mask);
  if (r.hasStatus && currentStatus !== undefined) {
    w.u32(CTA_STATUS, ((currentStatus | r.statusSet) & ~r.statusUnset) >>> 0);
  }
  if (r.state) encodeState(w, r.state);
  if (r.labels) w.bytes(CTA_LABELS, r.labels.bits).bytes(CTA_LABELS_MASK, r.labels.mask);
  return w.finish();
}
