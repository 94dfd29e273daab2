/**
 * The mirror's table: each entry kept as its ctnetlink message bytes in a Slab (no Flow
 * objects held, so replacing an entry leaves no garbage for the collector), found through
 * two IntIndexes (typed arrays, no garbage under churn either) from a hash of the entry's
 * key (protocol, original tuple, zones) and from its kernel id to the slab ref of the
 * entry. A hit is confirmed against the stored message, so hash collisions cost only time.
 * Flows are decoded from the bytes when asked for.
 */
import { IntIndex } from '../common/int-index';
import { Slab } from '../common/slab';
import { u16le } from '../wire/bytes';
import { CTA_HELP, CTA_MARK, CTA_SECCTX, NLA_TYPE_MASK } from '../wire/enums';
import { NFNL_ATTR_OFFSET, NLMSG_HDRLEN, align4 } from '../wire/netlink';
import { Flow, decodeFlow } from './flow';
import { RawEntry, scanEntry } from './raw-entry';

const FNV = 0x01000193;
/** Key hashes are masked to this, so they are Smis on every V8 build. */
const SMI_MASK = 0x3fffffff;
/** nlmsg_seq of a stored message (unused otherwise) holds the resync generation that last saw it. */
const GEN_OFFSET = 8;

const mix = (h: number, v: number): number => Math.imul(h ^ v, FNV);

/** True when the tuple names an ICMP / ICMPv6 flow (the decoded tuple has `icmp`). */
const isIcmp = (e: RawEntry): boolean => e.orig.icmpType >= 0 || e.orig.icmpId >= 0;

/**
 * The hash of an entry's key as scanEntry() read it from buf: protocol, the original
 * tuple's addresses and ports (or ICMP type, code and id), the entry's zone and the
 * tuple's own zone, the parts the kernel keeps unique.
 */
export function keyHash(buf: Buffer, e: RawEntry): number {
  const t = e.orig;
  let h = mix(0x811c9dc5, e.protonum);
  h = mix(h, t.srcLen);
  for (let i = 0; i < t.srcLen; i++) h = mix(h, buf[t.srcPos + i]);
  h = mix(h, t.dstLen);
  for (let i = 0; i < t.dstLen; i++) h = mix(h, buf[t.dstPos + i]);
  if (isIcmp(e)) {
    h = mix(h, 0x1000000 | (Math.max(0, t.icmpType) << 8) | Math.max(0, t.icmpCode));
    h = mix(h, Math.max(0, t.icmpId));
  } else {
    h = mix(h, t.sport);
    h = mix(h, t.dport);
  }
  h = mix(h, e.zone);
  h = mix(h, t.zone);
  return h & SMI_MASK;
}

/** True when the two scanned messages name the same entry (what keyHash() hashes is equal). */
export function sameKey(ab: Buffer, a: RawEntry, bb: Buffer, b: RawEntry): boolean {
  const x = a.orig;
  const y = b.orig;
  if (a.protonum !== b.protonum || a.zone !== b.zone || x.zone !== y.zone) return false;
  if (x.srcLen !== y.srcLen || x.dstLen !== y.dstLen) return false;
  for (let i = 0; i < x.srcLen; i++) if (ab[x.srcPos + i] !== bb[y.srcPos + i]) return false;
  for (let i = 0; i < x.dstLen; i++) if (ab[x.dstPos + i] !== bb[y.dstPos + i]) return false;
  const icmp = isIcmp(a);
  if (icmp !== isIcmp(b)) return false;
  if (icmp) {
    return Math.max(0, x.icmpType) === Math.max(0, y.icmpType) && Math.max(0, x.icmpCode) === Math.max(0, y.icmpCode)
      && Math.max(0, x.icmpId) === Math.max(0, y.icmpId);
  }
  return x.sport === y.sport && x.dport === y.dport;
}

/** Copies `len` bytes of an attribute to out[n], padded with zeros to 4 bytes; the next offset. */
function copyAttr(from: Buffer, p: number, len: number, out: Buffer, n: number): number {
  from.copy(out, n, p, p + len);
  const end = n + align4(len);
  out.fill(0, n + len, end);
  return end;
}

export class FlowTable {
  /** `hash` is replaceable for tests (a constant one makes every key collide). */
  constructor(private readonly hash: (buf: Buffer, e: RawEntry) => number = keyHash) {}

  private readonly slab = new Slab();
  private readonly byKey = new IntIndex();
  private readonly byId = new IntIndex();
  /** The stored entry read by scan() (the caller's entry must be another RawEntry). */
  private readonly held = new RawEntry();
  /** Where merge() builds a message. */
  private out = Buffer.allocUnsafeSlow(4096);
  /** merge(): which attribute types (below 64) the newer message has, as two bit masks. */
  private lo = 0;
  private hi = 0;

  get size(): number {
    return this.slab.size;
  }

  /** The hash find(), insert() and replace() take for the message at buf (scanned into `e`). */
  hashOf(buf: Buffer, e: RawEntry): number {
    return this.hash(buf, e);
  }

  /** The ref of the entry with the key of `e` (scanned from buf), or -1. */
  find(buf: Buffer, e: RawEntry, hash: number = this.hash(buf, e)): number {
    const index = this.byKey;
    for (let s = index.first(hash); s >= 0; s = index.next(s, hash)) {
      const ref = index.valueAt(s);
      if (this.hasKey(ref, buf, e)) return ref;
    }
    return -1;
  }

  private hasKey(ref: number, buf: Buffer, e: RawEntry): boolean {
    return sameKey(this.slab.bufferOf(ref), this.scan(ref), buf, e);
  }

  /** The refs of the entries whose kernel id is `id`. */
  findById(id: number): number[] {
    const out: number[] = [];
    const index = this.byId;
    for (let s = index.first(id); s >= 0; s = index.next(s, id)) {
      const ref = index.valueAt(s);
      if (this.scan(ref).id === id) out.push(ref);
    }
    return out;
  }

  /** Reads stored entry `ref` into a RawEntry shared by every call (valid until the next one). */
  scan(ref: number): RawEntry {
    const b = this.slab.bufferOf(ref);
    const o = this.slab.offsetOf(ref);
    return scanEntry(b, o, b.readUInt32LE(o), this.held);
  }

  /** The stored entry as a new Flow. */
  decode(ref: number): Flow {
    const b = this.slab.bufferOf(ref);
    const o = this.slab.offsetOf(ref);
    return decodeFlow(b, o, b.readUInt32LE(o));
  }

  /** The resync generation that last stored or confirmed `ref`. */
  generationOf(ref: number): number {
    return this.slab.bufferOf(ref).readUInt32LE(this.slab.offsetOf(ref) + GEN_OFFSET);
  }

  /** Stores the message at buf[off, off + len) (scanned into `e`) as a new entry; its ref. */
  insert(buf: Buffer, off: number, len: number, e: RawEntry, generation: number, hash: number = this.hash(buf, e)): number {
    const ref = this.slab.alloc(len);
    this.write(ref, buf, off, len, generation);
    this.byKey.add(hash, ref);
    this.byId.add(e.id, ref);
    return ref;
  }

  /**
   * Replaces entry `ref` with the message at buf[off, off + len) (scanned into `e`, the
   * same key); returns the entry's ref, which changes when the message needs a bigger slot.
   */
  replace(ref: number, buf: Buffer, off: number, len: number, e: RawEntry, generation: number, hash: number = this.hash(buf, e)): number {
    const oldId = this.scan(ref).id;
    let to = ref;
    if (!this.slab.fits(ref, len)) {
      to = this.slab.alloc(len);
      this.release(ref);
      this.byKey.replace(hash, ref, to);
    }
    this.write(to, buf, off, len, generation);
    if (oldId !== e.id) {
      this.byId.delete(oldId, ref);
      this.byId.add(e.id, to);
    } else if (to !== ref) this.byId.replace(e.id, ref, to);
    return to;
  }

  /** Removes entry `ref`. */
  delete(ref: number): void {
    const b = this.slab.bufferOf(ref);
    const e = this.scan(ref);
    this.byKey.delete(this.hash(b, e), ref);
    this.byId.delete(e.id, ref);
    this.release(ref);
  }

  /** Frees slot `ref`, which then reads as length 0 (how refs() tells it was removed). */
  private release(ref: number): void {
    this.slab.bufferOf(ref).writeUInt32LE(0, this.slab.offsetOf(ref));
    this.slab.free(ref);
  }

  /**
   * Removes every entry whose generation is not `generation`, passing each, decoded, to
   * `removed` once it is gone (when given); returns how many were removed.
   */
  sweep(generation: number, removed?: (flow: Flow) => void): number {
    let n = 0;
    // allValues() is a snapshot: deleting while walking it is safe.
    for (let i = 0, all = this.byKey.allValues(); i < all.length; i++) {
      const ref = all[i];
      if (this.generationOf(ref) === generation) continue;
      const flow = removed !== undefined ? this.decode(ref) : undefined;
      this.delete(ref);
      n++;
      if (flow !== undefined) removed!(flow);
    }
    return n;
  }

  clear(): void {
    this.byKey.clear();
    this.byId.clear();
    this.slab.clear();
  }

  /**
   * Every entry's ref: those held when the iteration starts, each skipped if it was removed
   * by the time the iteration reaches it (an entry moved to a bigger slot meanwhile, or
   * added meanwhile, is not reached; a slot reused meanwhile yields its new entry).
   */
  *refs(): IterableIterator<number> {
    const all = this.byKey.allValues();
    for (let i = 0; i < all.length; i++) {
      const ref = all[i];
      if (this.slab.bufferOf(ref).readUInt32LE(this.slab.offsetOf(ref)) !== 0) yield ref;
    }
  }

  /** Every entry, decoded. */
  *values(): IterableIterator<Flow> {
    for (const ref of this.refs()) yield this.decode(ref);
  }

  private write(ref: number, buf: Buffer, off: number, len: number, generation: number): void {
    const to = this.slab.bufferOf(ref);
    const at = this.slab.offsetOf(ref);
    buf.copy(to, at, off, off + len);
    to.writeUInt32LE(len, at); // nlmsg_len: the stored message's own length
    to.writeUInt32LE(generation, at + GEN_OFFSET);
  }

  /** The message the last merge() built, from offset 0 (valid until the next call). */
  get merged(): Buffer {
    return this.out;
  }

  /**
   * Builds in `merged` the message at buf[off, off + len) with the top-level attributes it
   * lacks taken from stored entry `ref`: what an UPDATE event leaves out because it did
   * not change (protocol info, counters, labels, use count, ...). Returns its length.
   * With `update`, the attributes the kernel puts in every UPDATE event while they are set
   * (CTA_HELP, CTA_SECCTX, CTA_MARK when non-zero) are not carried: their absence means
   * the helper, the context or the mark is gone. A DESTROY event lacks them anyway.
   */
  merge(ref: number, buf: Buffer, off: number, len: number, update = false): number {
    const sb = this.slab.bufferOf(ref);
    const so = this.slab.offsetOf(ref);
    const slen = sb.readUInt32LE(so);
    if (this.out.length < len + slen) this.out = Buffer.allocUnsafeSlow(2 * (len + slen));
    const out = this.out;
    const end = off + len;
    let n = Math.min(len, NFNL_ATTR_OFFSET);
    buf.copy(out, 0, off, off + n);
    this.lo = this.hi = 0;
    let p = off + NFNL_ATTR_OFFSET;
    while (p + 4 <= end) {
      const l = u16le(buf, p);
      if (l < 4 || p + l > end) break;
      const t = u16le(buf, p + 2) & NLA_TYPE_MASK;
      if (t < 32) this.lo |= 1 << t;
      else if (t < 64) this.hi |= 1 << (t - 32);
      n = copyAttr(buf, p, Math.min(align4(l), end - p), out, n);
      p += align4(l);
    }
    const send = so + slen;
    p = so + NFNL_ATTR_OFFSET;
    while (p + 4 <= send) {
      const l = u16le(sb, p);
      if (l < 4 || p + l > send) break;
      const t = u16le(sb, p + 2) & NLA_TYPE_MASK;
      const present = t < 32 ? (this.lo >>> t) & 1 : t < 64 ? (this.hi >>> (t - 32)) & 1 : 1;
      if (update && (t === CTA_HELP || t === CTA_SECCTX || t === CTA_MARK)) {
        p += align4(l);
        continue;
      }
      if (!present) n = copyAttr(sb, p, Math.min(align4(l), send - p), out, n);
      p += align4(l);
    }
    if (n >= NLMSG_HDRLEN) out.writeUInt32LE(n, 0);
    return n;
  }
}
