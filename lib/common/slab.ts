/**
 * Byte records kept outside the JS object graph: each record lives in a slot of a size
 * class (multiples of 32 bytes) inside large shared Buffers, and is named by a small integer
 * (a Smi), so holding, replacing or freeing a record allocates no JS objects and leaves no
 * garbage for the collector. Freed slots are reused by their class (a free list); the
 * Buffers themselves are kept for later records.
 */

/** Slot sizes are multiples of this. */
const GRAIN = 32;
/** Size classes held in shared chunks; class LARGE keeps each record in a Buffer of its own. */
const LARGE = 63;
/** Bytes of one shared chunk. */
const CHUNK_BYTES = 64 * 1024;
/** What a freed large record's place holds: zeros (its memory is let go). */
const FREED = Buffer.alloc(GRAIN);

class SizeClass {
  readonly chunks: Buffer[] = [];
  readonly free: number[] = [];
  /** Slots handed out so far (freed ones included). */
  used = 0;
  constructor(readonly slotBytes: number, readonly perChunk: number) {}
}

export class Slab {
  private readonly classes: SizeClass[] = [];
  private readonly large: Buffer[] = [];
  private readonly largeFree: number[] = [];
  private records = 0;

  constructor() {
    for (let c = 0; c < LARGE; c++) {
      const bytes = (c + 1) * GRAIN;
      this.classes.push(new SizeClass(bytes, Math.floor(CHUNK_BYTES / bytes)));
    }
  }

  /** Records held. */
  get size(): number {
    return this.records;
  }

  /** Bytes of Buffer memory held (slots in use, free slots and large records). */
  get bytes(): number {
    let n = 0;
    for (const c of this.classes) n += c.chunks.length * c.perChunk * c.slotBytes;
    for (const b of this.large) if (b !== FREED) n += b.length;
    return n;
  }

  /** A new record of at least `len` bytes (contents undefined): its ref. */
  alloc(len: number): number {
    this.records++;
    const c = len <= LARGE * GRAIN ? Math.max(0, Math.ceil(len / GRAIN) - 1) : LARGE;
    if (c === LARGE) {
      const b = Buffer.allocUnsafeSlow(len);
      const i = this.largeFree.length > 0 ? this.largeFree.pop()! : this.large.length;
      this.large[i] = b;
      return (i << 6) | LARGE;
    }
    const k = this.classes[c];
    let slot: number;
    if (k.free.length > 0) slot = k.free.pop()!;
    else {
      slot = k.used++;
      if (slot >= k.chunks.length * k.perChunk) k.chunks.push(Buffer.allocUnsafeSlow(k.perChunk * k.slotBytes));
    }
    return (slot << 6) | c;
  }

  /** Frees record `ref` (its slot is reused by a later alloc()). */
  free(ref: number): void {
    this.records--;
    const c = ref & 63;
    const slot = ref >>> 6;
    if (c === LARGE) {
      this.large[slot] = FREED;
      this.largeFree.push(slot);
    } else this.classes[c].free.push(slot);
  }

  /** True when record `ref` can hold `len` bytes. */
  fits(ref: number, len: number): boolean {
    const c = ref & 63;
    return c === LARGE ? this.large[ref >>> 6] !== FREED && this.large[ref >>> 6].length >= len : len <= (c + 1) * GRAIN;
  }

  /**
   * The Buffer holding record `ref` (read it from offsetOf(ref)). A freed record's bytes
   * are whatever was there (zeros for a large one) until its slot is reused.
   */
  bufferOf(ref: number): Buffer {
    const c = ref & 63;
    if (c === LARGE) return this.large[ref >>> 6];
    const k = this.classes[c];
    return k.chunks[Math.floor((ref >>> 6) / k.perChunk)];
  }

  /** Where record `ref` starts in bufferOf(ref). */
  offsetOf(ref: number): number {
    const c = ref & 63;
    if (c === LARGE) return 0;
    const k = this.classes[c];
    return ((ref >>> 6) % k.perChunk) * k.slotBytes;
  }

  /** Frees everything (the Buffers too). */
  clear(): void {
    for (let c = 0; c < LARGE; c++) {
      const k = this.classes[c];
      k.chunks.length = 0;
      k.free.length = 0;
      k.used = 0;
    }
    this.large.length = 0;
    this.largeFree.length = 0;
    this.records = 0;
  }
}
