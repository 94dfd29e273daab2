/**
 * Slab: records of any length get a slot that holds them, keep their bytes while other
 * records come and go, and freed slots are reused by their size class.
 */
import { Slab } from '../../../lib/common/slab';

/** Writes a pattern derived from `tag` into record `ref` (len bytes). */
function fill(s: Slab, ref: number, len: number, tag: number): void {
  const b = s.bufferOf(ref);
  const o = s.offsetOf(ref);
  for (let i = 0; i < len; i++) b[o + i] = (tag * 31 + i) & 0xff;
}

function holds(s: Slab, ref: number, len: number, tag: number): boolean {
  const b = s.bufferOf(ref);
  const o = s.offsetOf(ref);
  for (let i = 0; i < len; i++) if (b[o + i] !== ((tag * 31 + i) & 0xff)) return false;
  return true;
}

describe('Slab', () => {
  test('records keep their bytes through random allocs and frees of all sizes (large ones included)', () => {
    const s = new Slab();
    const live = new Map<number, { len: number; tag: number }>();
    let seed = 99;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 20000; i++) {
      if (live.size > 0 && next() % 3 === 0) {
        const refs = [...live.keys()];
        const ref = refs[next() % refs.length];
        const { len, tag } = live.get(ref)!;
        expect(holds(s, ref, len, tag)).toBe(true);
        s.free(ref);
        live.delete(ref);
      } else {
        const len = next() % 9 === 0 ? 2017 + (next() % 5000) : 1 + (next() % 600);
        const ref = s.alloc(len);
        expect(live.has(ref)).toBe(false); // never a slot in use
        expect(s.fits(ref, len)).toBe(true);
        expect(s.offsetOf(ref) + len).toBeLessThanOrEqual(s.bufferOf(ref).length);
        fill(s, ref, len, i);
        live.set(ref, { len, tag: i });
      }
      expect(s.size).toBe(live.size);
    }
    for (const [ref, { len, tag }] of live) expect(holds(s, ref, len, tag)).toBe(true);
    s.clear();
    expect(s.size).toBe(0);
    expect(s.bytes).toBe(0);
  });

  test('a freed slot is reused by its size class, so a steady churn needs no new memory', () => {
    const s = new Slab();
    const refs = Array.from({ length: 5000 }, () => s.alloc(200));
    const bytes = s.bytes;
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < refs.length; i++) {
        s.free(refs[i]);
        refs[i] = s.alloc(193 + (i % 32)); // the same class as 200 (224-byte slots)
      }
    }
    expect(s.bytes).toBe(bytes);
    expect(new Set(refs).size).toBe(refs.length);
    // Refs are small integers (Smis), whatever the class.
    for (const r of refs) expect(Number.isInteger(r) && r >= 0 && r < 2 ** 30).toBe(true);
    expect(s.fits(refs[0], 224)).toBe(true);
    expect(s.fits(refs[0], 225)).toBe(false);
  });
});
