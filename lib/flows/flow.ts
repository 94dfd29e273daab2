/**
 * Flows: the decoded form of one conntrack entry (an IPCTNL_MSG_CT_NEW/DELETE message),
 * with every attribute the kernel sends. Decoding walks the bytes once with plain reads
 * and builds objects of one stable shape (see bench/README.md for why).
 */
import {
  AF_INET, AF_INET6, CTA_COUNTERS32_BYTES, CTA_COUNTERS32_PACKETS, CTA_COUNTERS_BYTES,
  CTA_COUNTERS_ORIG, CTA_COUNTERS_PACKETS, CTA_COUNTERS_REPLY, CTA_HELP, CTA_HELP_NAME, CTA_ID,
  CTA_LABELS, CTA_MARK, CTA_PROTOINFO, CTA_PROTOINFO_DCCP, CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ,
  CTA_PROTOINFO_DCCP_ROLE, CTA_PROTOINFO_DCCP_STATE, CTA_PROTOINFO_SCTP,
  CTA_PROTOINFO_SCTP_STATE, CTA_PROTOINFO_SCTP_VTAG_ORIGINAL, CTA_PROTOINFO_SCTP_VTAG_REPLY,
  CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY,
  CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_WSCALE_ORIGINAL, CTA_PROTOINFO_TCP_WSCALE_REPLY,
  CTA_SECCTX, CTA_SECCTX_NAME, CTA_SECMARK, CTA_SEQADJ_CORRECTION_POS, CTA_SEQADJ_OFFSET_AFTER,
  CTA_SEQADJ_OFFSET_BEFORE, CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY, CTA_STATUS, CTA_SYNPROXY,
  CTA_SYNPROXY_ISN, CTA_SYNPROXY_ITS, CTA_SYNPROXY_TSOFF, CTA_TIMEOUT, CTA_TIMESTAMP,
  CTA_TIMESTAMP_EVENT, CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP, CTA_TUPLE_MASTER,
  CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_USE, CTA_ZONE, CTA_NAT_SRC, CTA_NAT_DST,
  DCCP_STATES, Family, NLA_TYPE_MASK, Proto, SCTP_STATES, STATUS_NAMES, StatusFlag,
  TCP_FLAG_NAMES, TCP_STATES,
} from '../wire/enums';
import { ProtoTuple, Tuple, protoName, readTuple, tupleScratch } from './tuple';
import { NFNL_ATTR_OFFSET, align4, readString } from '../wire/netlink';
import { jsonCopy } from '../common/json';
import { u16le, u32be } from '../wire/bytes';

export interface Counter {
  packets: bigint;
  bytes: bigint;
}

export interface TcpInfo {
  state: string;
  wscaleOrig?: number;
  wscaleReply?: number;
  /** IP_CT_TCP_FLAG_* names set in the original direction (frozen, shared). */
  flagsOrig?: readonly string[];
  flagsReply?: readonly string[];
}

export interface SctpInfo {
  state: string;
  vtagOrig?: number;
  vtagReply?: number;
}

export interface DccpInfo {
  state: string;
  role?: number;
  handshakeSeq?: bigint;
}

export interface SeqAdj {
  correctionPos: number;
  offsetBefore: number;
  offsetAfter: number;
}

export interface Synproxy {
  isn: number;
  its: number;
  tsoff: number;
}

export interface Flow {
  /** The kernel's id for this entry (CTA_ID). Ids are 32-bit hashes: not unique alone. */
  id: number;
  family: Family;
  proto: Proto | number;
  orig: Tuple;
  reply: Tuple;
  /**
   * Status flag names without the IPS_ prefix, e.g. 'ASSURED'. In decoded flows the list is
   * frozen and shared by every flow with the same status word.
   */
  status: readonly StatusFlag[];
  /** The raw CTA_STATUS bits. */
  statusBits: number;
  /** Seconds until expiry. */
  timeout: number;
  mark: number;
  zone: number;
  use: number;
  /** TCP, SCTP or DCCP state name, when the protocol has one. */
  state?: string;
  tcp?: TcpInfo;
  sctp?: SctpInfo;
  dccp?: DccpInfo;
  /** Packet and byte counters, when accounting (nf_conntrack_acct) is on. */
  counters?: { orig: Counter; reply: Counter };
  /** Start (and, for destroyed flows, stop) time in ns, when nf_conntrack_timestamp is on. */
  timestamp?: { start: bigint; stop?: bigint };
  /** Time of the event in ns (events on newer kernels with timestamps on). */
  eventTimestamp?: bigint;
  /** Set connlabel bit numbers. */
  labels?: number[];
  helper?: string;
  secctx?: string;
  secmark?: number;
  seqAdj?: { orig?: SeqAdj; reply?: SeqAdj };
  synproxy?: Synproxy;
  /** The master flow's original tuple, for related (expected) flows. */
  master?: ProtoTuple;
  /** Attribute types the decoder did not know or could not parse (skipped). */
  unknown?: number[];
}

function familyOf(nfFamily: number): Family {
  return nfFamily === AF_INET6 ? 'ipv6' : 'ipv4';
}

// TCP flag bytes and status words take few values: each distinct list is made once, frozen
// and shared by every flow that has it (an array per flow would cost ~70 bytes).
const flagCache: (readonly string[] | undefined)[] = new Array(256);
function flagNames(bits: number): readonly string[] {
  let names = flagCache[bits];
  if (names === undefined) {
    const out: string[] = [];
    for (let b = 1; b <= 0x80; b <<= 1) if (bits & b) out.push(TCP_FLAG_NAMES[b]);
    names = flagCache[bits] = Object.freeze(out);
  }
  return names;
}

/** Status bits to names (a new, mutable array). */
export function statusNames(bits: number): StatusFlag[] {
  const out: StatusFlag[] = [];
  for (let i = 0; i < STATUS_NAMES.length; i++) if (bits & (1 << i)) out.push(STATUS_NAMES[i]);
  return out;
}

const statusCache = new Map<number, readonly StatusFlag[]>();
/** The shared, frozen name list for a status word (uncommon words beyond 4096 get their own). */
function sharedStatusNames(bits: number): readonly StatusFlag[] {
  let names = statusCache.get(bits);
  if (names === undefined) {
    names = Object.freeze(statusNames(bits));
    if (statusCache.size < 4096) statusCache.set(bits, names);
  }
  return names;
}

/**
 * The prototype of decoded flows. The fields every entry has are own properties set in one
 * order (one hidden class per way of building them: this constructor, and keptFlowRecord's
 * literal); the optional ones are added only when the kernel sent them.
 */
class FlowRecord {
  declare id: number;
  declare family: Family;
  declare proto: Proto | number;
  declare orig: Tuple;
  declare reply: Tuple;
  declare status: readonly StatusFlag[];
  declare statusBits: number;
  declare timeout: number;
  declare mark: number;
  declare zone: number;
  declare use: number;

  // Plain `this.x =` stores: V8 sizes the instances from the assignments to `this` it sees
  // in the constructor (through an alias it guessed ten, and the eleventh field went to a
  // separate property array: 40 bytes more per flow).
  constructor(family: Family) {
    this.id = 0;
    this.family = family;
    this.proto = 0;
    this.orig = EMPTY_TUPLE;
    this.reply = EMPTY_TUPLE;
    this.status = NO_STATUS;
    this.statusBits = 0;
    this.timeout = 0;
    this.mark = 0;
    this.zone = 0;
    this.use = 0;
  }

  /** For JSON.stringify: the same fields, bigints (counters, timestamps) as decimal strings. */
  toJSON(): Record<string, unknown> {
    return jsonCopy(this);
  }
}

/** A new flow object of the decoded shape (for code that builds one from parts, such as a merge). */
export function newFlow(fields: Flow): Flow {
  const f = new FlowRecord(fields.family) as unknown as Flow;
  Object.assign(f, fields);
  return f;
}


function decodeCounters(buf: Buffer, s: number, e: number): Counter {
  let packets = 0n;
  let bytes = 0n;
  let p = s;
  while (p + 4 <= e) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > e) break;
    const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
    if (t === CTA_COUNTERS_PACKETS && l >= 12) packets = buf.readBigUInt64BE(p + 4);
    else if (t === CTA_COUNTERS_BYTES && l >= 12) bytes = buf.readBigUInt64BE(p + 4);
    else if (t === CTA_COUNTERS32_PACKETS && l >= 8) packets = BigInt(u32be(buf, p + 4));
    else if (t === CTA_COUNTERS32_BYTES && l >= 8) bytes = BigInt(u32be(buf, p + 4));
    p += align4(l);
  }
  return { packets, bytes };
}

function decodeSeqAdj(buf: Buffer, s: number, e: number): SeqAdj {
  const r: SeqAdj = { correctionPos: 0, offsetBefore: 0, offsetAfter: 0 };
  let p = s;
  while (p + 4 <= e) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > e) break;
    const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
    if (l >= 8) {
      const v = u32be(buf, p + 4);
      if (t === CTA_SEQADJ_CORRECTION_POS) r.correctionPos = v;
      else if (t === CTA_SEQADJ_OFFSET_BEFORE) r.offsetBefore = buf.readInt32BE(p + 4);
      else if (t === CTA_SEQADJ_OFFSET_AFTER) r.offsetAfter = buf.readInt32BE(p + 4);
    }
    p += align4(l);
  }
  return r;
}

function decodeProtoinfo(flow: Flow, buf: Buffer, s: number, e: number): void {
  let p = s;
  while (p + 4 <= e) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > e) break;
    const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
    const ps = p + 4;
    const pe = p + l;
    let q = ps;
    if (t === CTA_PROTOINFO_TCP) {
      const info: TcpInfo = { state: 'NONE' };
      while (q + 4 <= pe) {
        const ql = u16le(buf, q);
        if (ql < 4 || q + ql > pe) break;
        const qt = u16le(buf, q + 2) & NLA_TYPE_MASK;
        const v = q + 4;
        if (qt === CTA_PROTOINFO_TCP_STATE && ql >= 5) info.state = TCP_STATES[buf[v]] ?? String(buf[v]);
        else if (qt === CTA_PROTOINFO_TCP_WSCALE_ORIGINAL && ql >= 5) info.wscaleOrig = buf[v];
        else if (qt === CTA_PROTOINFO_TCP_WSCALE_REPLY && ql >= 5) info.wscaleReply = buf[v];
        else if (qt === CTA_PROTOINFO_TCP_FLAGS_ORIGINAL && ql >= 6) info.flagsOrig = flagNames(buf[v]);
        else if (qt === CTA_PROTOINFO_TCP_FLAGS_REPLY && ql >= 6) info.flagsReply = flagNames(buf[v]);
        q += align4(ql);
      }
      flow.tcp = info;
      flow.state = info.state;
    } else if (t === CTA_PROTOINFO_SCTP) {
      const info: SctpInfo = { state: 'NONE' };
      while (q + 4 <= pe) {
        const ql = u16le(buf, q);
        if (ql < 4 || q + ql > pe) break;
        const qt = u16le(buf, q + 2) & NLA_TYPE_MASK;
        const v = q + 4;
        if (qt === CTA_PROTOINFO_SCTP_STATE && ql >= 5) info.state = SCTP_STATES[buf[v]] ?? String(buf[v]);
        else if (qt === CTA_PROTOINFO_SCTP_VTAG_ORIGINAL && ql >= 8) info.vtagOrig = u32be(buf, v);
        else if (qt === CTA_PROTOINFO_SCTP_VTAG_REPLY && ql >= 8) info.vtagReply = u32be(buf, v);
        q += align4(ql);
      }
      flow.sctp = info;
      flow.state = info.state;
    } else if (t === CTA_PROTOINFO_DCCP) {
      const info: DccpInfo = { state: 'NONE' };
      while (q + 4 <= pe) {
        const ql = u16le(buf, q);
        if (ql < 4 || q + ql > pe) break;
        const qt = u16le(buf, q + 2) & NLA_TYPE_MASK;
        const v = q + 4;
        if (qt === CTA_PROTOINFO_DCCP_STATE && ql >= 5) info.state = DCCP_STATES[buf[v]] ?? String(buf[v]);
        else if (qt === CTA_PROTOINFO_DCCP_ROLE && ql >= 5) info.role = buf[v];
        else if (qt === CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ && ql >= 12) info.handshakeSeq = buf.readBigUInt64BE(v);
        q += align4(ql);
      }
      flow.dccp = info;
      flow.state = info.state;
    }
    p += align4(l);
  }
}

function pushUnknown(flow: Flow, type: number): void {
  (flow.unknown ??= []).push(type);
}

/**
 * A flow that decodeFlow() fills in, for a caller that keeps what it decodes in bulk
 * (list()). Built by an object literal of its own, with FlowRecord's fields in the same
 * order and its prototype: an allocation site V8 learns keeps its objects alive and then
 * allocates in the old generation directly (pretenuring), sparing the young-generation
 * collector a copy of every kept flow. Flows that die young (events, streaming dumps) come
 * from `new FlowRecord`, which V8 does not pretenure and which builds them faster, so a
 * list() never teaches their path the same.
 */
function keptFlowRecord(family: Family): Flow {
  return {
    __proto__: FlowRecord.prototype,
    id: 0, family, proto: 0, orig: EMPTY_TUPLE, reply: EMPTY_TUPLE, status: NO_STATUS,
    statusBits: 0, timeout: 0, mark: 0, zone: 0, use: 0,
  } as unknown as Flow;
}

/**
 * Decodes one ctnetlink conntrack message at buf[off, off + len). Never throws: malformed
 * or unknown attributes are skipped and listed in `flow.unknown`. `kept`: the caller keeps
 * the flows it decodes (see keptFlowRecord); the result is the same either way.
 */
export function decodeFlow(buf: Buffer, off: number, len: number, kept = false): Flow {
  const end = off + len;
  // A message too short for its nfgenmsg has no family byte of its own: flagged, not guessed.
  const nfFamily = len > 16 ? buf[off + 16] : 0;
  const flow = kept ? keptFlowRecord(familyOf(nfFamily)) : new FlowRecord(familyOf(nfFamily)) as unknown as Flow;
  if (len < NFNL_ATTR_OFFSET) pushUnknown(flow, -1);
  let replyFamily: Family | undefined;
  let p = off + NFNL_ATTR_OFFSET;
  while (p + 4 <= end) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > end) {
      pushUnknown(flow, -1); // truncated attribute: stop here
      break;
    }
    const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
    const s = p + 4;
    const e = p + l;
    switch (t) {
      case CTA_TUPLE_ORIG: {
        flow.orig = readTuple(buf, s, e, kept);
        const num = tupleScratch.protonum;
        flow.proto = num === 17 ? 'udp' : num === 6 ? 'tcp' : protoName(num);
        if (tupleScratch.family) flow.family = tupleScratch.family;
        break;
      }
      case CTA_TUPLE_REPLY:
        flow.reply = readTuple(buf, s, e, kept);
        replyFamily = tupleScratch.family;
        break;
      case CTA_TUPLE_MASTER: {
        const t = readTuple(buf, s, e);
        flow.master = { proto: protoName(tupleScratch.protonum), ...t };
        break;
      }
      case CTA_STATUS:
        if (l >= 8) {
          flow.statusBits = u32be(buf, s);
          flow.status = sharedStatusNames(flow.statusBits);
        }
        break;
      case CTA_TIMEOUT: if (l >= 8) flow.timeout = u32be(buf, s); break;
      case CTA_MARK: if (l >= 8) flow.mark = u32be(buf, s); break;
      case CTA_USE: if (l >= 8) flow.use = u32be(buf, s); break;
      case CTA_ID: if (l >= 8) flow.id = u32be(buf, s); break;
      case CTA_ZONE: if (l >= 6) flow.zone = (buf[s] << 8) | buf[s + 1]; break;
      case CTA_SECMARK: if (l >= 8) flow.secmark = u32be(buf, s); break;
      case CTA_PROTOINFO: decodeProtoinfo(flow, buf, s, e); break;
      case CTA_COUNTERS_ORIG:
        flow.counters ??= { orig: { packets: 0n, bytes: 0n }, reply: { packets: 0n, bytes: 0n } };
        flow.counters.orig = decodeCounters(buf, s, e);
        break;
      case CTA_COUNTERS_REPLY:
        flow.counters ??= { orig: { packets: 0n, bytes: 0n }, reply: { packets: 0n, bytes: 0n } };
        flow.counters.reply = decodeCounters(buf, s, e);
        break;
      case CTA_TIMESTAMP: {
        let start = 0n;
        let stop: bigint | undefined;
        let q = s;
        while (q + 4 <= e) {
          const ql = u16le(buf, q);
          if (ql < 4 || q + ql > e) break;
          const qt = u16le(buf, q + 2) & NLA_TYPE_MASK;
          if (qt === CTA_TIMESTAMP_START && ql >= 12) start = buf.readBigUInt64BE(q + 4);
          else if (qt === CTA_TIMESTAMP_STOP && ql >= 12) stop = buf.readBigUInt64BE(q + 4);
          q += align4(ql);
        }
        flow.timestamp = stop === undefined ? { start } : { start, stop };
        break;
      }
      case CTA_TIMESTAMP_EVENT: if (l >= 12) flow.eventTimestamp = buf.readBigUInt64BE(s); break;
      case CTA_LABELS: {
        const bits: number[] = [];
        // The kernel sends the label bitmap as host-order 32-bit words (little endian here),
        // 128 bits at most (NF_CT_LABELS_MAX_SIZE): a longer attribute is flagged, not read on.
        if (l - 4 > 16) pushUnknown(flow, CTA_LABELS);
        for (let w = 0; w + 4 <= l - 4 && w < 16; w += 4) {
          const word = buf.readUInt32LE(s + w);
          if (word === 0) continue;
          for (let b = 0; b < 32; b++) if (word & (1 << b)) bits.push(w * 8 + b);
        }
        flow.labels = bits;
        break;
      }
      case CTA_HELP: {
        let q = s;
        while (q + 4 <= e) {
          const ql = u16le(buf, q);
          if (ql < 4 || q + ql > e) break;
          if ((u16le(buf, q + 2) & NLA_TYPE_MASK) === CTA_HELP_NAME) flow.helper = readString(buf, q + 4, q + ql);
          q += align4(ql);
        }
        break;
      }
      case CTA_SECCTX: {
        let q = s;
        while (q + 4 <= e) {
          const ql = u16le(buf, q);
          if (ql < 4 || q + ql > e) break;
          if ((u16le(buf, q + 2) & NLA_TYPE_MASK) === CTA_SECCTX_NAME) flow.secctx = readString(buf, q + 4, q + ql);
          q += align4(ql);
        }
        break;
      }
      case CTA_SEQ_ADJ_ORIG:
        (flow.seqAdj ??= {}).orig = decodeSeqAdj(buf, s, e);
        break;
      case CTA_SEQ_ADJ_REPLY:
        (flow.seqAdj ??= {}).reply = decodeSeqAdj(buf, s, e);
        break;
      case CTA_SYNPROXY: {
        const sp: Synproxy = { isn: 0, its: 0, tsoff: 0 };
        let q = s;
        while (q + 4 <= e) {
          const ql = u16le(buf, q);
          if (ql < 4 || q + ql > e) break;
          const qt = u16le(buf, q + 2) & NLA_TYPE_MASK;
          if (ql >= 8) {
            if (qt === CTA_SYNPROXY_ISN) sp.isn = u32be(buf, q + 4);
            else if (qt === CTA_SYNPROXY_ITS) sp.its = u32be(buf, q + 4);
            else if (qt === CTA_SYNPROXY_TSOFF) sp.tsoff = u32be(buf, q + 4);
          }
          q += align4(ql);
        }
        flow.synproxy = sp;
        break;
      }
      case CTA_NAT_SRC:
      case CTA_NAT_DST:
        break; // requests only; the kernel does not dump them
      default:
        pushUnknown(flow, t);
    }
    p += align4(l);
  }
  // Both tuples of an entry have the message's family: a reply of another one is damage.
  if (replyFamily !== undefined && replyFamily !== flow.family) pushUnknown(flow, CTA_TUPLE_REPLY);
  return flow;
}

// The status of a flow whose message has no CTA_STATUS (DESTROY events).
const NO_STATUS: readonly StatusFlag[] = Object.freeze([]);

const EMPTY_TUPLE: Tuple = Object.freeze({ src: '', dst: '' }) as Tuple;

/** True when the message is an IPv4 or IPv6 conntrack message we can decode. */
export function isFlowFamily(nfFamily: number): boolean {
  return nfFamily === AF_INET || nfFamily === AF_INET6;
}
