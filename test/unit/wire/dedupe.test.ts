/**
 * RecentPairs, the dump's duplicate filter: compared with a plain model (an array of the
 * pairs added so far) over seeded random streams in which pairs come back at every distance.
 */
import { RecentPairs } from '../../../lib/wire/dedupe';

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('RecentPairs', () => {
  test('reports every pair seen within the window, at any distance up to it', () => {
    for (const window of [8, 64, 4096]) {
      for (let seed = 1; seed <= 5; seed++) {
        const r = rng(seed * 7919 + window);
        const set = new RecentPairs(window);
        const added: [number, number][] = []; // pairs that were new when added, in order
        const keys = new Set<string>();
        let repeats = 0;
        const wrong: string[] = [];
        for (let n = 0; n < window * 6; n++) {
          let id: number;
          let sig: number;
          const roll = r();
          if (added.length > 0 && roll < 0.3) {
            // A repeat of one of the last `window` new pairs (the kernel's case).
            const back = 1 + Math.floor(r() * Math.min(window, added.length));
            [id, sig] = added[added.length - back];
            if (!set.seen(id, sig)) wrong.push(`missed repeat at ${n} (${back} back)`);
            repeats++;
            continue;
          }
          // A new pair; sometimes with an id already used (ids collide), a different signature.
          id = roll < 0.4 && added.length > 0 ? added[added.length - 1][0] : Math.floor(r() * 2 ** 32);
          sig = Math.floor(r() * 2 ** 32);
          if (keys.has(`${id}/${sig}`)) continue;
          if (set.seen(id, sig)) wrong.push(`false repeat at ${n}`);
          added.push([id, sig]);
          keys.add(`${id}/${sig}`);
        }
        expect(wrong).toEqual([]);
        expect(repeats).toBeGreaterThan(window);
      }
    }
  });

  test('a pair is new again only after more than twice the window of other pairs', () => {
    const set = new RecentPairs(16);
    expect(set.seen(1, 1)).toBe(false);
    for (let i = 0; i < 15; i++) expect(set.seen(100 + i, 7)).toBe(false);
    expect(set.seen(1, 1)).toBe(true); // still in the current generation
    for (let i = 0; i < 16; i++) expect(set.seen(200 + i, 7)).toBe(false);
    expect(set.seen(1, 1)).toBe(true); // now in the previous generation
    for (let i = 0; i < 16; i++) expect(set.seen(300 + i, 7)).toBe(false);
    expect(set.seen(1, 1)).toBe(false); // forgotten: 47 others since
  });

  test('ids and signatures are compared as unsigned 32-bit values', () => {
    const set = new RecentPairs(16);
    expect(set.seen(-1, -2)).toBe(false);
    expect(set.seen(0xffffffff, 0xfffffffe)).toBe(true);
    expect(set.seen(0xffffffff, 0xffffffff)).toBe(false);
  });
});
