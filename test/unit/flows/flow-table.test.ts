/**
 * FlowTable, the mirror's table keyed by a hash of the flow key: behaves as a Map from key to
 * flow, also when every key collides (a constant hash) and when keys share a hash in part.
 */
import type { Flow } from '../../../lib/flows/flow';
import { FlowTable, hash53 } from '../../../lib/flows/flow-table';

const flow = (key: string, id: number) => ({ id, key }) as unknown as Flow;
const keyOf = (f: Flow) => (f as unknown as { key: string }).key;

describe('FlowTable', () => {
  for (const [name, hash] of [['hash53', hash53], ['a constant hash (every key collides)', () => 7], ['a 2-bit hash', (k: string) => hash53(k) % 4]] as const) {
    test(`acts as a Map of key -> flow with ${name}`, () => {
      const t = new FlowTable(keyOf, hash);
      const model = new Map<string, Flow>();
      let seed = 12345;
      const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
      for (let i = 0; i < 3000; i++) {
        const k = `k${next() % 200}`;
        const op = next() % 3;
        if (op === 0) {
          const f = flow(k, i);
          t.set(k, f);
          model.set(k, f);
        } else if (op === 1) {
          expect(t.delete(k)).toBe(model.delete(k));
        } else {
          expect(t.get(k)).toBe(model.get(k));
          expect(t.has(k)).toBe(model.has(k));
        }
        expect(t.size).toBe(model.size);
      }
      expect(new Set(t.values())).toEqual(new Set(model.values()));
      t.clear();
      expect(t.size).toBe(0);
      expect([...t.values()]).toEqual([]);
    });
  }

  test('hash53 gives safe integers that differ for near keys', () => {
    const a = hash53('17|10.0.0.1|10.0.0.2|1000|53|0|');
    const b = hash53('17|10.0.0.1|10.0.0.2|1001|53|0|');
    expect(Number.isSafeInteger(a) && Number.isSafeInteger(b)).toBe(true);
    expect(a).not.toBe(b);
  });
});
