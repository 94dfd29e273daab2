/**
 * The dump's duplicate filter as an option: `dedupe: false` hands on what the kernel sent
 * (on a quiet table, every entry once), the default gives the same entries, and a
 * non-boolean is refused naming the field.
 */
import { Conntrack } from '../../../lib';
import { withSandbox } from '../../../apps/testing';

describe('dump({ dedupe })', () => {
  test('with and without the filter, a quiet table dumps each entry once; bad values are refused', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const specs = Array.from({ length: 300 }, (_, i) => ({ proto: 'udp' as const, orig: { src: '10.7.0.1', dst: '10.7.0.2', sport: 1000 + i, dport: 53 }, timeout: 600 }));
        const made = await ct.createMany(specs);
        expect(made.ok).toBe(300);
        const plain = ct.dump(undefined, { dedupe: false });
        const raw = await plain.toArray();
        const filtered = await ct.list();
        expect(raw).toHaveLength(300);
        expect(plain.duplicates).toBe(0);
        const ports = (l: { orig: { sport?: number } }[]) => l.map((f) => f.orig.sport).sort((a, b) => a! - b!);
        expect(ports(raw)).toEqual(ports(filtered));
        expect(new Set(ports(raw)).size).toBe(300);
        expect(() => ct.dump(undefined, { dedupe: 'no' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.dedupe' }));
        await expect(ct.list(undefined, { dedupe: 1 as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.dedupe' });
      } finally {
        await ct.close();
      }
    });
  });
});
