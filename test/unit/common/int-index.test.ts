/**
 * IntIndex, the typed-array multimap behind the mirror's table: behaves as a multimap of
 * key -> values through random adds, replaces and deletes (deletion shifts entries back,
 * so runs must stay findable), with keys that share probe runs and keys that are equal.
 */
import { IntIndex } from '../../../lib/common/int-index';

function valuesOf(ix: IntIndex, key: number): number[] {
  const out: number[] = [];
  for (let s = ix.first(key); s >= 0; s = ix.next(s, key)) out.push(ix.valueAt(s));
  return out.sort((a, b) => a - b);
}

describe('IntIndex', () => {
  for (const [name, keySpace] of [['few distinct keys (long runs of equal keys)', 7], ['many keys (shared runs)', 5000], ['32-bit keys', 2 ** 32]] as const) {
    test(`acts as a multimap with ${name}, growing from a small size`, () => {
      const ix = new IntIndex(4);
      const model = new Map<number, Set<number>>();
      let seed = 7;
      const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
      let value = 0;
      const pairs: [number, number][] = [];
      let wrong = 0; // operations whose result or size disagreed with the model
      for (let i = 0; i < 20000; i++) {
        const op = next() % 5;
        if (op < 2 || pairs.length === 0) {
          const key = (keySpace === 2 ** 32 ? next() : next() % keySpace) | 0;
          ix.add(key, value);
          if (!model.has(key)) model.set(key, new Set());
          model.get(key)!.add(value);
          pairs.push([key, value++]);
        } else if (op < 4) {
          const j = next() % pairs.length;
          const [key, v] = pairs[j];
          if (!ix.delete(key, v) || ix.delete(key, v)) wrong++;
          model.get(key)!.delete(v);
          pairs[j] = pairs[pairs.length - 1];
          pairs.pop();
        } else {
          const j = next() % pairs.length;
          const [key, v] = pairs[j];
          if (!ix.replace(key, v, value)) wrong++;
          model.get(key)!.delete(v);
          model.get(key)!.add(value);
          pairs[j] = [key, value++];
        }
        if (ix.size !== pairs.length) wrong++;
        if (i % 1999 === 0) {
          for (const [key, set] of model) if (valuesOf(ix, key).join() !== [...set].sort((a, b) => a - b).join()) wrong++;
        }
      }
      expect(wrong).toBe(0);
      for (const [key, set] of model) expect(valuesOf(ix, key)).toEqual([...set].sort((a, b) => a - b));
      expect([...ix.allValues()].sort((a, b) => a - b)).toEqual(pairs.map((p) => p[1]).sort((a, b) => a - b));
      ix.clear();
      expect(ix.size).toBe(0);
      expect(ix.first(pairs[0]?.[0] ?? 1)).toBe(-1);
    });
  }
});
