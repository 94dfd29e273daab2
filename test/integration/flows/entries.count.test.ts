/**
 * deleteMatching() counts what it removed: with exact: true even while other entries come
 * and go, and including entries the kernel sends no events for.
 */
import { Conntrack } from '../../../lib/conntrack';
import { withSandbox } from '../../../apps/testing';

const udp = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.2.0.1', dst: '10.2.0.2', sport: 1000 + i, dport: 53 } });

async function count(ns: { run(c: string, a: string[]): Promise<{ stdout: string }> }, mark?: number): Promise<number> {
  const args = ['-L', ...(mark === undefined ? [] : ['-m', String(mark)])];
  const { stdout } = await ns.run('conntrack', args);
  return stdout.split('\n').filter((l) => /^(tcp|udp|icmp)/.test(l)).length;
}

describe('deleteMatching counts', () => {
  test('with exact: true the kernel flush is counted exactly while other entries are created at the same time', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.createMany(Array.from({ length: 3000 }, (_, i) => ({ ...udp(i), timeout: 300, mark: i % 3 === 0 ? 1 : 2 })));
        // Churn: 2000 more entries (mark 3) are created while the flush runs.
        const churn = ct.createMany(Array.from({ length: 2000 }, (_, i) => ({ ...udp(10000 + i), timeout: 300, mark: 3 })));
        const removed = await ct.deleteMatching({ mark: 1 }, undefined, { exact: true });
        expect((await churn).ok).toBe(2000);
        expect(removed).toBe(1000);
        expect(await count(ns, 1)).toBe(0);
        expect(await count(ns, 2)).toBe(2000);
        expect(await count(ns, 3)).toBe(2000);
        // A status filter is checked in the library on the received events.
        expect(await ct.deleteMatching({ mark: 2, status: ['CONFIRMED'] })).toBe(2000);
        expect(await count(ns)).toBe(2000);
      } finally {
        await ct.close();
      }
    });
  });

  test('20,000 entries removed by one flush are all counted', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // Far more DESTROY events than a default socket buffer holds: the count must not
        // depend on them.
        const made = await ct.createMany(Array.from({ length: 20000 }, (_, i) => ({ ...udp(i), timeout: 300, mark: 9 })));
        expect(made.ok).toBe(20000);
        expect(await ct.deleteMatching({ mark: 9 })).toBe(20000);
        await ct.createMany(Array.from({ length: 20000 }, (_, i) => ({ ...udp(i), timeout: 300, mark: 9 })));
        expect(await ct.deleteMatching({ mark: 9 }, undefined, { exact: true })).toBe(20000);
        await expect(ct.deleteMatching({ mark: 9 }, undefined, { exact: 1 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.exact' });
        expect(await count(ns)).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('entries the kernel sends no events for (created with delivery off) are counted too', async () => {
    await withSandbox(async (ns) => {
      // Entries created while nf_conntrack_events is 0 carry no event cache: the kernel never
      // announces their removal. Half of the entries below are such, half are not.
      await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.createMany(Array.from({ length: 50 }, (_, i) => ({ ...udp(i), timeout: 300, mark: i < 20 ? 4 : 5 })));
        await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
        await ct.createMany(Array.from({ length: 50 }, (_, i) => ({ ...udp(100 + i), timeout: 300, mark: i < 20 ? 4 : 5 })));
        const events = ct.events({ types: ['destroy'] });
        expect(await ct.deleteMatching({ mark: 4 }, undefined, { exact: true })).toBe(40);
        expect(await ct.deleteMatching({ mark: 5 })).toBe(60);
        expect(await count(ns)).toBe(0);
        // The kernel announced only the second half's removals.
        await events.barrier();
        expect(events.stats.delivered + events.queued).toBe(50);
        events.close();
      } finally {
        await ct.close();
      }
    });
  });
});
