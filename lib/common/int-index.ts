/**
 * A multimap from 32-bit integer keys (hashes) to non-negative integer values (refs) in two
 * typed arrays: open addressing with linear probing, and deletion by shifting the entries
 * that follow back (no tombstones). A churn of inserts and deletes at a steady size therefore
 * allocates nothing; the arrays are replaced only when the index grows past half full. (A
 * `Map` rehashes into a new backing store as deleted entries pile up: under a churn of a
 * large table, megabytes of garbage each time.)
 *
 * Lookups walk the keys' probe run with a cursor: `first(key)`, then `next(slot, key)`,
 * until -1; `valueAt(slot)` is the value there.
 */

const EMPTY = -1;

export class IntIndex {
  private keys: Int32Array;
  private values: Int32Array;
  private mask: number;
  private count = 0;

  constructor(capacity = 1024) {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.keys = new Int32Array(size);
    this.values = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Adds (key, value); a key may have several values. */
  add(key: number, value: number): void {
    if ((this.count + 1) * 2 > this.values.length) this.grow();
    this.put(key | 0, value);
    this.count++;
  }

  private put(key: number, value: number): void {
    const mask = this.mask;
    let i = this.home(key);
    while (this.values[i] !== EMPTY) i = (i + 1) & mask;
    this.keys[i] = key;
    this.values[i] = value;
  }

  private home(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> 0 & this.mask;
  }

  private grow(): void {
    const keys = this.keys;
    const values = this.values;
    this.keys = new Int32Array(keys.length * 2);
    this.values = new Int32Array(values.length * 2).fill(EMPTY);
    this.mask = this.values.length - 1;
    for (let i = 0; i < values.length; i++) if (values[i] !== EMPTY) this.put(keys[i], values[i]);
  }

  /** The first slot holding `key` (-1: none). */
  first(key: number): number {
    return this.scan(this.home(key | 0), key | 0);
  }

  /** The next slot after `slot` holding `key` (-1: none). */
  next(slot: number, key: number): number {
    return this.scan((slot + 1) & this.mask, key | 0);
  }

  private scan(i: number, key: number): number {
    const mask = this.mask;
    for (; this.values[i] !== EMPTY; i = (i + 1) & mask) if (this.keys[i] === key) return i;
    return -1;
  }

  valueAt(slot: number): number {
    return this.values[slot];
  }

  /** Replaces the value of (key, from) with `to`; false when the pair is not there. */
  replace(key: number, from: number, to: number): boolean {
    for (let s = this.first(key); s >= 0; s = this.next(s, key)) {
      if (this.values[s] === from) {
        this.values[s] = to;
        return true;
      }
    }
    return false;
  }

  /** Removes the pair (key, value); false when it is not there. */
  delete(key: number, value: number): boolean {
    let s = this.first(key);
    while (s >= 0 && this.values[s] !== value) s = this.next(s, key);
    if (s < 0) return false;
    // Shift back the entries of the run that follows whose home is not in (s, j].
    const mask = this.mask;
    let hole = s;
    for (let j = (s + 1) & mask; this.values[j] !== EMPTY; j = (j + 1) & mask) {
      const h = this.home(this.keys[j]);
      const stays = hole <= j ? hole < h && h <= j : hole < h || h <= j;
      if (stays) continue;
      this.keys[hole] = this.keys[j];
      this.values[hole] = this.values[j];
      hole = j;
    }
    this.values[hole] = EMPTY;
    this.count--;
    return true;
  }

  /** Every value, in slot order, into a new array (a snapshot). */
  allValues(): Int32Array {
    const out = new Int32Array(this.count);
    let n = 0;
    const values = this.values;
    for (let i = 0; i < values.length; i++) if (values[i] !== EMPTY) out[n++] = values[i];
    return out;
  }

  clear(): void {
    this.values.fill(EMPTY);
    this.count = 0;
  }
}
