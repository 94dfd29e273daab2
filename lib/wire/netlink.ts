/**
 * Netlink wire helpers: walking messages and attributes in received batches, and an
 * attribute writer for request payloads. Numbers inside ctnetlink attributes are big
 * endian (network order); netlink headers are host order (little endian on every
 * platform this package builds for).
 */
import {
  NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_CTNETLINK_EXP, NLA_F_NESTED, NLA_TYPE_MASK, NLMSGERR_ATTR_MSG, NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
} from './enums';

export const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
/** Offset of the first attribute in an nfnetlink message. */
export const NFNL_ATTR_OFFSET = NLMSG_HDRLEN + NFGENMSG_LEN;

/** Offset of nfgenmsg.nfgen_family in an nfnetlink message. */
export const NFGEN_FAMILY_OFFSET = NLMSG_HDRLEN;
/** Offset of nfgenmsg.res_id (big endian; the CPU number in per-CPU statistics). */
export const NFGEN_RES_ID_OFFSET = NLMSG_HDRLEN + 2;

export const align4 = (n: number): number => (n + 3) & ~3;

/** An nfnetlink message type: (subsystem << 8) | message. */
const nfnlType = (subsys: number, msg: number): number => (subsys << 8) | msg;
/** A ctnetlink (conntrack) message type. */
export const ctType = (msg: number): number => nfnlType(NFNL_SUBSYS_CTNETLINK, msg);
/** A ctnetlink expectation message type. */
export const expType = (msg: number): number => nfnlType(NFNL_SUBSYS_CTNETLINK_EXP, msg);
/** The subsystem of an nfnetlink message type. */
export const nfnlSubsys = (type: number): number => type >> 8;
/** The message of an nfnetlink message type, without its subsystem. */
export const nfnlMsg = (type: number): number => type & 0xff;

/**
 * Iterates the attributes in buf[start, end): calls fn(type, payloadStart, payloadEnd).
 * Stops at a malformed attribute (never throws) and then returns false.
 */
export function forEachAttr(
  buf: Buffer,
  start: number,
  end: number,
  fn: (type: number, pos: number, pend: number) => void,
): boolean {
  let p = start;
  while (p + 4 <= end) {
    const len = buf.readUInt16LE(p);
    if (len < 4 || p + len > end) return false;
    fn(buf.readUInt16LE(p + 2) & NLA_TYPE_MASK, p + 4, p + len);
    p += align4(len);
  }
  return true;
}

/** Reads a NUL-terminated string attribute payload. */
export function readString(buf: Buffer, pos: number, end: number): string {
  let e = pos;
  while (e < end && buf[e] !== 0) e++;
  return buf.toString('utf8', pos, e);
}

export interface NlError {
  errno: number; // positive
  extack?: string;
}

/**
 * Decodes the body of an NLMSG_ERROR message at buf[off, off + len) (off: the message
 * start). Never throws and never reads outside the message: undefined when it is too short
 * for struct nlmsgerr (the error code and the echoed request header, 20 bytes). The errno is positive for a refusal, 0 for an ack; a negative
 * one means the kernel's (negative) error field was not negative.
 */
export function parseError(buf: Buffer, off: number, len: number, flags: number): NlError | undefined {
  const end = off + len;
  if (len < NLMSG_HDRLEN + 20 || end > buf.length) return undefined;
  const err = -buf.readInt32LE(off + NLMSG_HDRLEN);
  let extack: string | undefined;
  if (flags & NLM_F_ACK_TLVS) {
    // struct nlmsgerr: error (4) + the original header (16) + its payload unless capped.
    // The echoed length comes from the wire: computed in doubles and bounded by the message.
    const h = off + NLMSG_HDRLEN + 4;
    {
      const origLen = buf.readUInt32LE(h);
      const p = h + (flags & NLM_F_CAPPED ? NLMSG_HDRLEN : Math.max(NLMSG_HDRLEN, (origLen + 3) - ((origLen + 3) % 4)));
      if (p <= end) {
        forEachAttr(buf, p, end, (type, s, e) => {
          if (type === NLMSGERR_ATTR_MSG) extack = readString(buf, s, e);
        });
      }
    }
  }
  return { errno: err, extack };
}

/** Builds attribute payloads. Reuses one growing buffer; `finish()` copies the result. */
export class AttrWriter {
  private buf: Buffer;
  private pos = 0;
  private nests: number[] = [];

  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
  }

  reset(): this {
    this.pos = 0;
    this.nests.length = 0;
    return this;
  }

  get length(): number {
    return this.pos;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  // Byte stores instead of writeUInt16LE() and fill(): bulk calls encode ~10 attributes per
  // item, and the range checks and the native fill() call dominated their encoding.
  private header(type: number, payloadLen: number): void {
    const total = 4 + payloadLen;
    this.ensure(align4(total));
    const b = this.buf;
    const p = this.pos;
    b[p] = total & 0xff;
    b[p + 1] = total >> 8;
    b[p + 2] = type & 0xff;
    b[p + 3] = type >> 8;
    this.pos = p + 4;
  }

  private pad(payloadLen: number): void {
    const padded = align4(payloadLen);
    const b = this.buf;
    for (let i = this.pos + payloadLen; i < this.pos + padded; i++) b[i] = 0;
    this.pos += padded;
  }

  /** Writes the header of a fixed-size attribute; returns the buffer, with the payload at `this.pos`. */
  private fixed(type: number, size: number): Buffer {
    this.header(type, size);
    return this.buf;
  }

  /** Closes a fixed-size attribute written at `this.pos`. */
  private done(size: number): this {
    this.pad(size);
    return this;
  }

  u8(type: number, v: number): this {
    this.fixed(type, 1).writeUInt8(v, this.pos);
    return this.done(1);
  }

  u16(type: number, v: number): this {
    this.fixed(type, 2).writeUInt16BE(v, this.pos);
    return this.done(2);
  }

  u32(type: number, v: number): this {
    this.fixed(type, 4).writeUInt32BE(v >>> 0, this.pos);
    return this.done(4);
  }

  /** A host-order (little endian) u32, for the few NLA_U32 attributes that are not big endian. */
  u32host(type: number, v: number): this {
    this.fixed(type, 4).writeUInt32LE(v >>> 0, this.pos);
    return this.done(4);
  }

  u64(type: number, v: bigint): this {
    this.fixed(type, 8).writeBigUInt64BE(v, this.pos);
    return this.done(8);
  }

  bytes(type: number, v: Uint8Array): this {
    this.header(type, v.length);
    if (v.length <= 16) {
      const b = this.buf;
      for (let i = 0, p = this.pos; i < v.length; i++) b[p + i] = v[i];
    } else this.buf.set(v, this.pos);
    this.pad(v.length);
    return this;
  }

  string(type: number, v: string): this {
    const b = Buffer.from(v + '\0', 'utf8');
    return this.bytes(type, b);
  }

  nest(type: number): this {
    this.ensure(4);
    this.nests.push(this.pos);
    const t = type | NLA_F_NESTED;
    this.buf[this.pos + 2] = t & 0xff;
    this.buf[this.pos + 3] = t >> 8;
    this.pos += 4;
    return this;
  }

  end(): this {
    const start = this.nests.pop();
    if (start === undefined) throw new Error('AttrWriter: end() without nest()');
    const len = this.pos - start;
    this.buf[start] = len & 0xff;
    this.buf[start + 1] = len >> 8;
    return this;
  }

  /** The buffer written so far (valid until the next write: it may be replaced as it grows). */
  get buffer(): Buffer {
    return this.buf;
  }

  private wordsOf: Buffer | undefined;
  private wordsView: Uint32Array | undefined;

  /**
   * The buffer as host-order u32 words (word i is bytes 4i..4i+3), for hand-written
   * encoders that store whole aligned words. Valid until the buffer grows; a buffer that
   * does not start on a 4-byte boundary is moved to one that does.
   */
  get words(): Uint32Array {
    if (this.wordsOf !== this.buf) {
      if ((this.buf.byteOffset & 3) !== 0) {
        const next = Buffer.allocUnsafeSlow(this.buf.length);
        this.buf.copy(next, 0, 0, this.pos);
        this.buf = next;
      }
      this.wordsView = new Uint32Array(this.buf.buffer, this.buf.byteOffset, this.buf.length >>> 2);
      this.wordsOf = this.buf;
    }
    return this.wordsView!;
  }

  /** Makes room for `n` more bytes at once (a bulk call that knows its size: no regrowth). */
  reserve(n: number): this {
    this.ensure(n);
    return this;
  }

  /** Reserves `n` bytes at the end for a hand-written encoder; returns their offset in `buffer`. */
  raw(n: number): number {
    this.ensure(n);
    const p = this.pos;
    this.pos += n;
    return p;
  }

  /** Appends bytes [start, end) of another writer. */
  appendRange(other: AttrWriter, start: number, end: number): this {
    const n = end - start;
    this.ensure(n);
    other.buf.copy(this.buf, this.pos, start, end);
    this.pos += n;
    return this;
  }

  /** Drops the first `n` bytes written (closed nests only): the rest moves to the front. */
  dropFront(n: number): this {
    if (n <= 0) return this;
    this.buf.copyWithin(0, n, this.pos);
    this.pos -= n;
    return this;
  }

  /** Drops everything written after `length` (an earlier `length`), open nests included. */
  truncate(length: number): this {
    this.pos = length;
    while (this.nests.length && this.nests[this.nests.length - 1] >= length) this.nests.pop();
    return this;
  }

  /** Appends everything another writer holds (closed nests only). */
  append(other: AttrWriter): this {
    const n = other.length;
    this.ensure(n);
    // One item of a bulk call is ~100 bytes: a loop beats Buffer.copy()'s native call.
    if (n <= 512) {
      const src = other.buf;
      const dst = this.buf;
      for (let i = 0, p = this.pos; i < n; i++) dst[p + i] = src[i];
    } else other.buf.copy(this.buf, this.pos, 0, n);
    this.pos += n;
    return this;
  }

  /** A copy of what was written. */
  finish(): Buffer {
    if (this.nests.length) throw new Error('AttrWriter: unclosed nest');
    const n = this.pos;
    const out = Buffer.allocUnsafe(n);
    // A request payload is ~100 bytes: a loop beats Buffer.from()'s generic copy path.
    if (n <= 512) {
      const src = this.buf;
      for (let i = 0; i < n; i++) out[i] = src[i];
    } else this.buf.copy(out, 0, 0, n);
    return out;
  }

  /** What was written, without a copy: the writer must not be used afterwards. */
  take(): Buffer {
    if (this.nests.length) throw new Error('AttrWriter: unclosed nest');
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafe(0);
    this.pos = 0;
    return out;
  }
}
