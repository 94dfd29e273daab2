/**
 * Tuples: the (addresses, protocol, ports or ICMP identity, zone) that name one direction
 * of a flow. Decoding from CTA_TUPLE_* attributes, and encoding for requests.
 */
import {
  CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_PROTO_DST_PORT,
  CTA_PROTO_ICMPV6_CODE, CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMP_CODE,
  CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_TUPLE_IP,
  CTA_TUPLE_PROTO, CTA_TUPLE_ZONE, Family, IPPROTO_ICMP, IPPROTO_ICMPV6, NLA_TYPE_MASK,
  PORT_PROTOS, PROTO_NAMES, PROTO_NUMBERS, Proto,
} from '../wire/enums';
import { formatIPv4Cached, formatIPv6, parseAddress } from '../common/address';
import { AttrWriter } from '../wire/netlink';
import { invalid } from '../common/errors';
import { checkInt, checkObject, isObject, show } from '../common/validate';
import { protocolByName } from './protocols';
import { u16be, u16le } from '../wire/bytes';

export interface IcmpTuple {
  type: number;
  code: number;
  id: number;
}

/** One direction of a flow. */
export interface Tuple {
  src: string;
  dst: string;
  /** Source port (TCP, UDP, UDP-Lite, SCTP, DCCP; GRE: the source key). */
  sport?: number;
  dport?: number;
  /** ICMP / ICMPv6 type, code and identifier. */
  icmp?: IcmpTuple;
  /** Per-direction zone (CTA_TUPLE_ZONE), only when the kernel sends one. */
  zone?: number;
}

/** A tuple that carries its own protocol, as expectations and master tuples use. */
export interface ProtoTuple extends Tuple {
  proto: Proto | number;
}

/** What decodeTuple() extracts besides the Tuple itself. */
export interface DecodedTuple {
  tuple: Tuple;
  family: Family | undefined;
  protonum: number;
}

/** Family and protocol number of the tuple last read by readTuple() (scratch, not reentrant-safe across calls). */
export const tupleScratch = { family: undefined as Family | undefined, protonum: 0 };


/**
 * Reads a CTA_TUPLE_* nest whose payload is buf[start, end) into a Tuple; its family and
 * protocol number are left in `tupleScratch`. Never throws. (The hot path of a dump: plain
 * byte reads, no intermediate objects.) `kept`: as decodeFlow()'s; a port tuple then comes
 * from an object literal of its own, which V8 can pretenure.
 */
export function readTuple(buf: Buffer, start: number, end: number, kept = false): Tuple {
  let src = '';
  let dst = '';
  let family: Family | undefined;
  let protonum = 0;
  let sport: number | undefined;
  let dport: number | undefined;
  let itype = -1;
  let icode = -1;
  let iid = -1;
  let zone: number | undefined;
  let p = start;
  while (p + 4 <= end) {
    const len = u16le(buf, p);
    if (len < 4 || p + len > end) break;
    const type = u16le(buf, p + 2) & NLA_TYPE_MASK;
    const pe = p + len;
    if (type === CTA_TUPLE_IP) {
      let q = p + 4;
      while (q + 4 <= pe) {
        const l = u16le(buf, q);
        if (l < 4 || q + l > pe) break;
        const t = u16le(buf, q + 2) & NLA_TYPE_MASK;
        if (l === 8 && (t === CTA_IP_V4_SRC || t === CTA_IP_V4_DST)) {
          family = 'ipv4';
          if (t === CTA_IP_V4_SRC) src = formatIPv4Cached(buf, q + 4);
          else dst = formatIPv4Cached(buf, q + 4);
        } else if (l === 20 && (t === CTA_IP_V6_SRC || t === CTA_IP_V6_DST)) {
          family = 'ipv6';
          if (t === CTA_IP_V6_SRC) src = formatIPv6(buf, q + 4);
          else dst = formatIPv6(buf, q + 4);
        }
        q += (l + 3) & ~3;
      }
    } else if (type === CTA_TUPLE_PROTO) {
      let q = p + 4;
      while (q + 4 <= pe) {
        const l = u16le(buf, q);
        if (l < 4 || q + l > pe) break;
        const t = u16le(buf, q + 2) & NLA_TYPE_MASK;
        const v = q + 4;
        switch (t) {
          case CTA_PROTO_NUM: if (l >= 5) protonum = buf[v]; break;
          case CTA_PROTO_SRC_PORT: if (l >= 6) sport = u16be(buf, v); break;
          case CTA_PROTO_DST_PORT: if (l >= 6) dport = u16be(buf, v); break;
          case CTA_PROTO_ICMP_ID: case CTA_PROTO_ICMPV6_ID: if (l >= 6) iid = u16be(buf, v); break;
          case CTA_PROTO_ICMP_TYPE: case CTA_PROTO_ICMPV6_TYPE: if (l >= 5) itype = buf[v]; break;
          case CTA_PROTO_ICMP_CODE: case CTA_PROTO_ICMPV6_CODE: if (l >= 5) icode = buf[v]; break;
          default: break; // unknown: skipped
        }
        q += (l + 3) & ~3;
      }
    } else if (type === CTA_TUPLE_ZONE && len >= 6) {
      zone = u16be(buf, p + 4);
    }
    p += (len + 3) & ~3;
  }
  tupleScratch.family = family;
  tupleScratch.protonum = protonum;
  // Only the keys the tuple has (a port tuple is { src, dst, sport, dport }): two shapes
  // cover nearly every flow, and absent keys cost no memory.
  let t: Tuple;
  if (itype >= 0 || iid >= 0) t = { src, dst, icmp: { type: itype < 0 ? 0 : itype, code: icode < 0 ? 0 : icode, id: iid < 0 ? 0 : iid } };
  // Two literals with one shape: two allocation sites, so that only kept tuples are pretenured.
  else if (sport !== undefined && dport !== undefined) t = kept ? { src, dst, sport, dport } : { src, dst, sport, dport };
  else {
    t = { src, dst };
    if (sport !== undefined) t.sport = sport;
    if (dport !== undefined) t.dport = dport;
  }
  if (zone !== undefined) t.zone = zone;
  return t;
}

/** Decodes a CTA_TUPLE_* nest whose payload is buf[start, end). Never throws. */
export function decodeTuple(buf: Buffer, start: number, end: number): DecodedTuple {
  const tuple = readTuple(buf, start, end);
  return { tuple, family: tupleScratch.family, protonum: tupleScratch.protonum };
}

/** The protocol name for a number, or the number when unnamed. */
export function protoName(num: number): Proto | number {
  return PROTO_NAMES[num] ?? num;
}

/** Resolves a protocol given by name or number; throws a validation error naming `field`. */
export function protoNumber(proto: unknown, field: string): number {
  if (typeof proto === 'number') {
    return checkInt(proto, 0, 255, field, 'protocol number');
  }
  if (typeof proto === 'string') {
    const n = protocolByName(proto);
    if (n !== undefined) return n;
  }
  throw invalid(field, `unknown protocol ${show(proto)}: use one of ${Object.keys(PROTO_NUMBERS).join(', ')}, a name from /etc/protocols, or a number 0-255`);
}

export function checkPort(v: unknown, field: string): number {
  return checkInt(v, 0, 65535, field, 'port');
}

/** A tuple validated and resolved to bytes, ready to encode. */
export interface ResolvedTuple {
  family: Family;
  protonum: number;
  src: Buffer;
  dst: Buffer;
  sport?: number;
  dport?: number;
  icmp?: IcmpTuple;
  zone?: number;
}

/**
 * Validates a tuple given by a user. `field` prefixes error messages ("orig", "tuple"...).
 * `requirePorts`: port protocols must give both ports (true for naming an entry).
 */
export function resolveTuple(t: unknown, protonum: number, field: string, requirePorts = true): ResolvedTuple {
  const o = checkObject(t, field, '{ src, dst, sport, dport }');
  const src = parseAddress(o.src as string);
  if (!src) throw invalid(`${field}.src`, `not an IPv4 or IPv6 address: ${show(o.src)}`);
  const dst = parseAddress(o.dst as string);
  if (!dst) throw invalid(`${field}.dst`, `not an IPv4 or IPv6 address: ${show(o.dst)}`);
  if (src.family !== dst.family) {
    throw invalid(`${field}.dst`, `address family differs from ${field}.src (${src.family} vs ${dst.family}): use two addresses of one family`);
  }
  const r: ResolvedTuple = { family: src.family, protonum, src: src.bytes, dst: dst.bytes };
  const ports = PORT_PROTOS.has(protonum);
  if (!ports && (o.sport !== undefined || o.dport !== undefined)) {
    throw invalid(`${field}.${o.sport !== undefined ? 'sport' : 'dport'}`, `${protoName(protonum)} has no ports; remove sport and dport`);
  }
  if (protonum === IPPROTO_ICMP || protonum === IPPROTO_ICMPV6) {
    if (protonum === IPPROTO_ICMP && src.family !== 'ipv4') throw invalid(`${field}.src`, 'icmp needs IPv4 addresses; use proto "icmpv6" for IPv6');
    if (protonum === IPPROTO_ICMPV6 && src.family !== 'ipv6') throw invalid(`${field}.src`, 'icmpv6 needs IPv6 addresses; use proto "icmp" for IPv4');
    const icmp = o.icmp;
    if (!isObject(icmp)) throw invalid(`${field}.icmp`, `${protoName(protonum)} tuples need icmp: { type, code, id }`);
    r.icmp = {
      type: checkInt(icmp.type, 0, 255, `${field}.icmp.type`, 'ICMP type'),
      code: checkInt(icmp.code ?? 0, 0, 255, `${field}.icmp.code`, 'ICMP code'),
      id: checkInt(icmp.id ?? 0, 0, 65535, `${field}.icmp.id`, 'ICMP id'),
    };
  } else if (ports) {
    for (const k of ['sport', 'dport'] as const) {
      if (o[k] !== undefined) r[k] = checkPort(o[k], `${field}.${k}`);
      else if (requirePorts) throw invalid(`${field}.${k}`, `is missing: ${protoName(protonum)} names a flow by both ports; give sport and dport (0-65535)`);
    }
  }
  if (o.zone !== undefined) r.zone = checkInt(o.zone, 0, 65535, `${field}.zone`, 'zone');
  return r;
}

/** Writes a CTA_TUPLE_* nest of type `attr` for a resolved tuple. */
export function encodeTuple(w: AttrWriter, attr: number, t: ResolvedTuple): void {
  w.nest(attr);
  w.nest(CTA_TUPLE_IP);
  if (t.family === 'ipv4') {
    w.bytes(CTA_IP_V4_SRC, t.src).bytes(CTA_IP_V4_DST, t.dst);
  } else {
    w.bytes(CTA_IP_V6_SRC, t.src).bytes(CTA_IP_V6_DST, t.dst);
  }
  w.end();
  w.nest(CTA_TUPLE_PROTO);
  w.u8(CTA_PROTO_NUM, t.protonum);
  if (t.icmp) {
    const v6 = t.protonum === IPPROTO_ICMPV6;
    w.u16(v6 ? CTA_PROTO_ICMPV6_ID : CTA_PROTO_ICMP_ID, t.icmp.id);
    w.u8(v6 ? CTA_PROTO_ICMPV6_TYPE : CTA_PROTO_ICMP_TYPE, t.icmp.type);
    w.u8(v6 ? CTA_PROTO_ICMPV6_CODE : CTA_PROTO_ICMP_CODE, t.icmp.code);
  } else {
    if (t.sport !== undefined) w.u16(CTA_PROTO_SRC_PORT, t.sport);
    if (t.dport !== undefined) w.u16(CTA_PROTO_DST_PORT, t.dport);
  }
  w.end();
  if (t.zone !== undefined) w.u16(CTA_TUPLE_ZONE, t.zone);
  w.end();
}

/** The reverse direction of a tuple (what the kernel computes when no reply is given). */
export function invertTuple(t: ResolvedTuple): ResolvedTuple {
  const r: ResolvedTuple = { ...t, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport };
  if (t.icmp) {
    // ICMP echo request (8) <-> echo reply (0); ICMPv6 128 <-> 129; others keep their type.
    const inv: Record<number, number> = t.protonum === IPPROTO_ICMP ? { 8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17 } : { 128: 129, 129: 128 };
    r.icmp = { ...t.icmp, type: inv[t.icmp.type] ?? t.icmp.type };
  }
  return r;
}
