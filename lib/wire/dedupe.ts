/**
 * Duplicate suppression for dumps, in fixed memory.
 *
 * When the kernel resumes a dump (each recvmsg() builds the next part) it looks for the entry
 * it stopped at in that hash bucket; if the entry is gone it restarts the bucket, so the
 * entries of that one bucket that were already sent come again. A repeat therefore follows
 * its first copy within one hash chain's length of entries, and the kernel bounds chains
 * (nf_conntrack_core.c refuses to insert into a chain of more than MIN_CHAINLEN +
 * random(MAX_CHAINLEN), under 100 entries; older kernels keep chains short with a seeded
 * hash). Remembering the last `window` entries (at least 4096 by default, forty times that
 * bound) catches every repeat with memory independent of the table size. Not covered, as
 * with `conntrack -L`: a resize of the hash table (nf_conntrack_buckets) during the dump.
 */

/**
 * A signature to pair with an entry's id: FNV-1a over buf[start, start + len) (an entry's
 * key attribute, such as CTA_TUPLE_ORIG, header included) a little-endian 32-bit word at a
 * time (netlink nests are 4-byte multiples; any remainder goes byte by byte), then `zone`.
 * It tells apart two entries whose 32-bit ids collide, with no strings read per entry.
 */
export function bytesSignature(buf: Buffer, start: number, len: number, zone: number): number {
  let h = 0x811c9dc5;
  const end = start + len;
  let q = start;
  for (; q + 4 <= end; q += 4) h = Math.imul(h ^ (buf[q] | (buf[q + 1] << 8) | (buf[q + 2] << 16) | (buf[q + 3] << 24)), 0x01000193);
  for (; q < end; q++) h = Math.imul(h ^ buf[q], 0x01000193);
  return Math.imul(h ^ zone, 0x01000193) >>> 0;
}

/**
 * A set of (id, signature) pairs that remembers at least the last `window` pairs added:
 * two open-addressing generations of `window` pairs each; when the current one is full it
 * becomes the previous one and the oldest generation is forgotten. A slot is in use when its
 * stamp equals its generation's stamp, so rotating clears nothing.
 */
export class RecentPairs {
  private readonly mask: number;
  private readonly ids: [Uint32Array, Uint32Array];
  private readonly sigs: [Uint32Array, Uint32Array];
  private readonly stamps: [Uint32Array, Uint32Array];
  private readonly gen: [number, number] = [1, 0];
  private cur = 0;
  private count = 0;

  constructor(private readonly window = 4096) {
    let size = 8;
    while (size < window * 2) size *= 2; // at most half full
    this.mask = size - 1;
    this.ids = [new Uint32Array(size), new Uint32Array(size)];
    this.sigs = [new Uint32Array(size), new Uint32Array(size)];
    this.stamps = [new Uint32Array(size), new Uint32Array(size)];
  }

  /** True when (id, sig) is among the recent pairs; otherwise adds it and returns false. */
  seen(id: number, sig: number): boolean {
    id >>>= 0;
    sig >>>= 0;
    const start = (Math.imul(id ^ sig, 0x9e3779b1) >>> 0) & this.mask;
    const other = this.cur ^ 1;
    if (this.gen[other] !== 0 && this.find(other, id, sig, start) >= 0) return true;
    const slot = this.find(this.cur, id, sig, start);
    if (slot >= 0) return true;
    if (this.count === this.window) this.rotate();
    const c = this.cur;
    const stamps = this.stamps[c];
    const g = this.gen[c];
    let i = start;
    while (stamps[i] === g) i = (i + 1) & this.mask;
    stamps[i] = g;
    this.ids[c][i] = id;
    this.sigs[c][i] = sig;
    this.count++;
    return false;
  }

  private find(t: number, id: number, sig: number, start: number): number {
    const stamps = this.stamps[t];
    const ids = this.ids[t];
    const sigs = this.sigs[t];
    const g = this.gen[t];
    for (let i = start; stamps[i] === g; i = (i + 1) & this.mask) {
      if (ids[i] === id && sigs[i] === sig) return i;
    }
    return -1;
  }

  private rotate(): void {
    const next = this.cur ^ 1;
    // A fresh stamp for the generation being reused: its old slots read as free.
    const stamp = Math.max(this.gen[0], this.gen[1]) + 1;
    if (stamp > 0xffffffff) {
      this.stamps[next].fill(0);
      this.gen[next] = 1;
    } else this.gen[next] = stamp;
    this.cur = next;
    this.count = 0;
  }
}
