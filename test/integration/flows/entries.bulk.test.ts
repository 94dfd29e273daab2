/**
 * createMany() / deleteMany(): many entries per call, pipelined, with per-item outcomes.
 * Checked against the conntrack CLI's view of the namespace's table.
 */
import { Conntrack } from '../../../lib/conntrack';
import { ConntrackError } from '../../../lib/common/errors';
import { Sandbox, withSandbox } from '../../../apps/testing';

async function cliLines(ns: Sandbox): Promise<string[]> {
  const { stdout } = await ns.run('conntrack', ['-L', '-o', 'extended']);
  return stdout.split('\n').filter((l) => /^ipv[46]\s/.test(l));
}

const v4 = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.1.0.1', dst: '10.1.0.2', sport: 10000 + i, dport: 53 } });
const v6 = (i: number) => ({ proto: 'tcp' as const, orig: { src: 'fd00::1', dst: 'fd00::2', sport: 20000 + i, dport: 443 } });

describe('bulk create and delete', () => {
  test('createMany makes every entry of a mixed IPv4/IPv6 batch, as the CLI sees it', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const specs = [];
        for (let i = 0; i < 3000; i++) specs.push({ ...v4(i), timeout: 300, mark: 7 });
        for (let i = 0; i < 1000; i++) specs.push({ ...v6(i), timeout: 300, state: 'ESTABLISHED' as const, zone: 4 });
        const r = await ct.createMany(specs);
        expect(r).toEqual({ ok: 4000, errors: [] });
        const lines = await cliLines(ns);
        expect(lines).toHaveLength(4000);
        expect(lines.filter((l) => l.includes('src=10.1.0.1 dst=10.1.0.2') && l.includes('mark=7'))).toHaveLength(3000);
        expect(lines.filter((l) => l.startsWith('ipv6') && l.includes('ESTABLISHED') && l.includes('zone=4'))).toHaveLength(1000);
        expect(lines.some((l) => l.includes('sport=12999 dport=53'))).toBe(true);
      } finally {
        await ct.close();
      }
    });
  });

  test('refusals are reported by index and the rest still happen', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ ...v4(5), timeout: 60 });
        const r = await ct.createMany([0, 1, 2, 3, 4, 5, 6].map((i) => ({ ...v4(i), timeout: 60 })));
        expect(r.ok).toBe(6);
        expect(r.errors).toHaveLength(1);
        expect(r.errors[0].index).toBe(5);
        expect(r.errors[0].error).toBeInstanceOf(ConntrackError);
        expect(r.errors[0].error.code).toBe('EEXIST');
        expect(await cliLines(ns)).toHaveLength(7);

        // Delete 0..9: 3 of them (7, 8, 9) never existed.
        const d = await ct.deleteMany([0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(v4));
        expect(d.ok).toBe(7);
        expect(d.errors.map((e) => [e.index, e.error.code])).toEqual([[7, 'ENOENT'], [8, 'ENOENT'], [9, 'ENOENT']]);
        expect(await cliLines(ns)).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('one bad item refuses the whole call before anything is sent', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ ...v4(1), timeout: 60 });
        const before = await cliLines(ns);
        const bad = [{ ...v4(2), timeout: 60 }, { ...v4(3), timeout: 60 }, { ...v4(4), orig: { ...v4(4).orig, dport: 70000 }, timeout: 60 }];
        await expect(ct.createMany(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'items[2].orig.dport' });
        await expect(ct.deleteMany([v4(1), { proto: 'udp', orig: { src: '10.1.0.1', dst: 'fd00::2', sport: 1, dport: 2 } }])).rejects.toMatchObject({
          code: 'ERR_INVALID_ARGUMENT',
          field: 'items[1].orig.dst',
        });
        await expect(ct.createMany([{ ...v4(9), timeout: 60, labels: [1] }])).rejects.toMatchObject({ field: 'items[0].labels' });
        await expect(ct.createMany(42 as unknown as [])).rejects.toMatchObject({ field: 'items' });
        expect(await cliLines(ns)).toEqual(before);
      } finally {
        await ct.close();
      }
    });
  });

  test('a Flow from list() deletes by tuple and id, so a re-created entry is spared', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.createMany([1, 2, 3].map((i) => ({ ...v4(i), timeout: 60 })));
        const flows = await ct.list();
        const stale = flows.find((f) => f.orig.sport === 10002)!;
        await ct.delete(v4(2));
        // Ids hash the entry's address: let other entries take the freed slot first, so the
        // re-created entry gets a new id (as it would on a busy system).
        await ct.createMany([100, 101, 102, 103, 104, 105, 106, 107].map((i) => ({ ...v4(i), timeout: 60 })));
        await ct.create({ ...v4(2), timeout: 60 }); // same tuple, new id
        const fresh = (await ct.list({ orig: { sport: 10002 } }))[0];
        expect(fresh.id).not.toBe(stale.id);
        const d = await ct.deleteMany(flows);
        expect(d.ok).toBe(2);
        expect(d.errors.map((e) => [flows[e.index].orig.sport, e.error.code])).toEqual([[stale.orig.sport, 'ENOENT']]);
        const left = await ct.list({ orig: { sport: 10002 } });
        expect(left.map((f) => f.id)).toEqual([fresh.id]);
      } finally {
        await ct.close();
      }
    });
  });

  test('an empty batch resolves at once', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        expect(await ct.createMany([])).toEqual({ ok: 0, errors: [] });
        expect(await ct.deleteMany([])).toEqual({ ok: 0, errors: [] });
      } finally {
        await ct.close();
      }
    });
  });
});
