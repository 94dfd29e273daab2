/**
 * The fields of a dumped entry that bulk operations decide on (family, protocol, tuples'
 * addresses and ports, mark, zone, status, timeout, id, labels), read in place from the
 * message into one reused object: a bulk update or delete checks every dumped entry, and
 * building a Flow for each (strings, tuples, status arrays) cost more than the kernel's
 * own work. Every field reads exactly as decodeFlow() would give it (absent: 0, or -1 where
 * the Flow has no key), which test/unit/flows/raw-entry.test.ts checks on generated messages.
 */
import {
  AF_INET6, CTA_ID, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_LABELS, CTA_MARK,
  CTA_PROTOINFO, CTA_PROTOINFO_DCCP, CTA_PROTOINFO_SCTP, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE, CTA_PROTO_DST_PORT, CTA_PROTO_ICMPV6_CODE, CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE,
  CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT,
  CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG,
  CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, CTA_TUPLE_ZONE, CTA_ZONE, Family, NLA_TYPE_MASK,
} from '../wire/enums';
import { NFNL_ATTR_OFFSET } from '../wire/netlink';
import { u16be, u16le, u32be } from '../wire/bytes';

/** One tuple's fields: offsets of the address bytes in the message, ports, zone. */
export class RawTuple {
  /** Offset and length (4, 16; 0 when absent) of the source address bytes. */
  srcPos = 0;
  srcLen = 0;
  dstPos = 0;
  dstLen = 0;
  /** -1 when absent (the Flow's tuple then has no such key). */
  sport = -1;
  dport = -1;
  zone = -1;
  /** ICMP / ICMPv6 type, code and id; -1 when absent (the tuple has `icmp` when type or id is there). */
  icmpType = -1;
  icmpCode = -1;
  icmpId = -1;
  protonum = 0;
  /** The family of the last address read (undefined when none), as readTuple() reports it. */
  family: Family | undefined = undefined;

  reset(): void {
    this.srcLen = this.dstLen = 0;
    this.sport = this.dport = this.zone = -1;
    this.icmpType = this.icmpCode = this.icmpId = -1;
    this.protonum = 0;
    this.family = undefined;
  }
}

export class RawEntry {
  /** The Flow's family: the message's, or the original tuple's address family. */
  family: Family = 'ipv4';
  /** The original tuple's protocol number (the Flow's proto). */
  protonum = 0;
  mark = 0;
  zone = 0;
  status = 0;
  timeout = 0;
  id = 0;
  /**
   * The TCP, SCTP or DCCP state number (0, 'NONE', for a nest without one), -1 when the
   * message has none: for entries of one protocol, equal exactly when the flows' `state` is.
   */
  state = -1;
  /** Offset and length (whole 32-bit words) of the CTA_LABELS bitmap; -1 when absent. */
  labelsPos = -1;
  labelsLen = 0;
  readonly orig = new RawTuple();
  readonly reply = new RawTuple();
  /** Offset and total length (header included) of the CTA_TUPLE_ORIG attribute; -1 when absent. */
  origAttr = -1;
  origAttrLen = 0;
  /** Offset of an 8-byte CTA_ID attribute, of a CTA_ZONE of at least 6 bytes; -1 when absent. */
  idAttr = -1;
  zoneAttr = -1;
}


/** readTuple()'s walk of a CTA_TUPLE_* payload buf[start, end), keeping offsets instead of strings. */
function scanTuple(buf: Buffer, start: number, end: number, t: RawTuple): void {
  t.reset();
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
        const at = u16le(buf, q + 2) & NLA_TYPE_MASK;
        if (l === 8 && (at === CTA_IP_V4_SRC || at === CTA_IP_V4_DST)) {
          t.family = 'ipv4';
          if (at === CTA_IP_V4_SRC) {
            t.srcPos = q + 4;
            t.srcLen = 4;
          } else {
            t.dstPos = q + 4;
            t.dstLen = 4;
          }
        } else if (l === 20 && (at === CTA_IP_V6_SRC || at === CTA_IP_V6_DST)) {
          t.family = 'ipv6';
          if (at === CTA_IP_V6_SRC) {
            t.srcPos = q + 4;
            t.srcLen = 16;
          } else {
            t.dstPos = q + 4;
            t.dstLen = 16;
          }
        }
        q += (l + 3) & ~3;
      }
    } else if (type === CTA_TUPLE_PROTO) {
      let q = p + 4;
      while (q + 4 <= pe) {
        const l = u16le(buf, q);
        if (l < 4 || q + l > pe) break;
        const at = u16le(buf, q + 2) & NLA_TYPE_MASK;
        if (at === CTA_PROTO_NUM && l >= 5) t.protonum = buf[q + 4];
        else if (at === CTA_PROTO_SRC_PORT && l >= 6) t.sport = u16be(buf, q + 4);
        else if (at === CTA_PROTO_DST_PORT && l >= 6) t.dport = u16be(buf, q + 4);
        else if ((at === CTA_PROTO_ICMP_ID || at === CTA_PROTO_ICMPV6_ID) && l >= 6) t.icmpId = u16be(buf, q + 4);
        else if ((at === CTA_PROTO_ICMP_TYPE || at === CTA_PROTO_ICMPV6_TYPE) && l >= 5) t.icmpType = buf[q + 4];
        else if ((at === CTA_PROTO_ICMP_CODE || at === CTA_PROTO_ICMPV6_CODE) && l >= 5) t.icmpCode = buf[q + 4];
        q += (l + 3) & ~3;
      }
    } else if (type === CTA_TUPLE_ZONE && len >= 6) {
      t.zone = u16be(buf, p + 4);
    }
    p += (len + 3) & ~3;
  }
}

/** Reads the message at buf[off, off + len) into `e` (decodeFlow()'s top-level walk). */
export function scanEntry(buf: Buffer, off: number, len: number, e: RawEntry): RawEntry {
  const end = off + len;
  e.family = buf[off + 16] === AF_INET6 ? 'ipv6' : 'ipv4';
  e.protonum = e.mark = e.zone = e.status = e.timeout = e.id = 0;
  e.labelsPos = e.state = -1;
  e.labelsLen = 0;
  e.origAttr = e.idAttr = e.zoneAttr = -1;
  e.origAttrLen = 0;
  e.orig.reset();
  e.reply.reset();
  let p = off + NFNL_ATTR_OFFSET;
  while (p + 4 <= end) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > end) break;
    const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
    const s = p + 4;
    switch (t) {
      case CTA_TUPLE_ORIG:
        scanTuple(buf, s, p + l, e.orig);
        e.protonum = e.orig.protonum;
        if (e.orig.family) e.family = e.orig.family;
        e.origAttr = p;
        e.origAttrLen = l;
        break;
      case CTA_TUPLE_REPLY: scanTuple(buf, s, p + l, e.reply); break;
      case CTA_STATUS: if (l >= 8) e.status = u32be(buf, s); break;
      case CTA_TIMEOUT: if (l >= 8) e.timeout = u32be(buf, s); break;
      case CTA_MARK: if (l >= 8) e.mark = u32be(buf, s); break;
      case CTA_ID:
        if (l >= 8) e.id = u32be(buf, s);
        if (l === 8) e.idAttr = p;
        break;
      case CTA_ZONE:
        if (l >= 6) {
          e.zone = u16be(buf, s);
          e.zoneAttr = p;
        }
        break;
      case CTA_PROTOINFO: e.state = protoState(buf, s, p + l); break;
      case CTA_LABELS:
        e.labelsPos = s;
        e.labelsLen = (l - 4) & ~3;
        break;
      default: break;
    }
    p += (l + 3) & ~3;
  }
  return e;
}

/** decodeProtoinfo()'s state: the last CTA_PROTOINFO_{TCP,DCCP,SCTP} nest's *_STATE, or -1. */
function protoState(buf: Buffer, start: number, end: number): number {
  let state = -1;
  let p = start;
  while (p + 4 <= end) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > end) break;
    const kind = u16le(buf, p + 2) & NLA_TYPE_MASK;
    if (kind === CTA_PROTOINFO_TCP || kind === CTA_PROTOINFO_DCCP || kind === CTA_PROTOINFO_SCTP) {
      state = 0;
      let q = p + 4;
      while (q + 4 <= p + l) {
        const ql = u16le(buf, q);
        if (ql < 4 || q + ql > p + l) break;
        // CTA_PROTOINFO_TCP_STATE, _DCCP_STATE and _SCTP_STATE are all 1.
        if ((u16le(buf, q + 2) & NLA_TYPE_MASK) === CTA_PROTOINFO_TCP_STATE && ql >= 5) state = buf[q + 4];
        q += (ql + 3) & ~3;
      }
    }
    p += (l + 3) & ~3;
  }
  return state;
}

/** Byte `i` of the entry's label bitmap as labelWordsOf(flow) would give it (0 past its end). */
export function labelByte(buf: Buffer, e: RawEntry, i: number): number {
  return e.labelsPos >= 0 && i < e.labelsLen ? buf[e.labelsPos + i] : 0;
}
