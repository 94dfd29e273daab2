/**
 * The mirror's table: flows by a string key (protocol, original tuple, zones), stored under a
 * 53-bit hash of the key instead of the key itself. A key string built per flow costs about
 * 300 bytes (a rope of its parts) and would live as long as the entry; the hash is a number,
 * and a hit is confirmed by rebuilding the candidate's key, so collisions cost only time.
 */
import { fnv1a } from '../common/hash';
import type { Flow } from './flow';

/** Two independent FNV-1a hashes of `k` combined into a safe integer (53 bits). */
export function hash53(k: string): number {
  return (fnv1a(k, 0x2545f491) & 0x1fffff) * 4294967296 + fnv1a(k);
}

export class FlowTable {
  private readonly m = new Map<number, Flow | Flow[]>();
  private n = 0;

  /** keyOf(flow) must give the key the flow was stored under; hash is replaceable for tests. */
  constructor(private readonly keyOf: (f: Flow) => string, private readonly hash: (k: string) => number = hash53) {}

  get size(): number {
    return this.n;
  }

  get(k: string): Flow | undefined {
    const v = this.m.get(this.hash(k));
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return this.keyOf(v) === k ? v : undefined;
    for (const f of v) if (this.keyOf(f) === k) return f;
    return undefined;
  }

  has(k: string): boolean {
    return this.get(k) !== undefined;
  }

  /** Stores f under k, replacing the flow stored under k before (if any). */
  set(k: string, f: Flow): void {
    const h = this.hash(k);
    const v = this.m.get(h);
    if (v === undefined) {
      this.m.set(h, f);
      this.n++;
    } else if (!Array.isArray(v)) {
      if (this.keyOf(v) === k) this.m.set(h, f);
      else {
        this.m.set(h, [v, f]);
        this.n++;
      }
    } else {
      const i = v.findIndex((x) => this.keyOf(x) === k);
      if (i >= 0) v[i] = f;
      else {
        v.push(f);
        this.n++;
      }
    }
  }

  delete(k: string): boolean {
    const h = this.hash(k);
    const v = this.m.get(h);
    if (v === undefined) return false;
    if (!Array.isArray(v)) {
      if (this.keyOf(v) !== k) return false;
      this.m.delete(h);
    } else {
      const i = v.findIndex((x) => this.keyOf(x) === k);
      if (i < 0) return false;
      v.splice(i, 1);
      if (v.length === 1) this.m.set(h, v[0]);
    }
    this.n--;
    return true;
  }

  clear(): void {
    this.m.clear();
    this.n = 0;
  }

  *values(): IterableIterator<Flow> {
    for (const v of this.m.values()) {
      if (Array.isArray(v)) yield* v;
      else yield v;
    }
  }
}
