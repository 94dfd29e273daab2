/**
 * deleteMatching() counts what it removed exactly, even while other entries come and go,
 * and falls back to the table's shrinkage when the namespace has event delivery off.
 */
import { Conntrack } from '../../lib/conntrack';
import { withNetns } from '../helpers/netns';

const udp = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.2.0.1', dst: '10.2.0.2', sport: 1000 + i, dport: 53 } });

async function count(ns: { run(c: string, a: string[]): Promise<{ stdout: string }> }, mark?: number): Promise<number> {
  const args = ['-L', ...(mark === undefined ? [] : ['-m', String(mark)])];
  const { stdout } = await ns.run('conntrack', args);
  return stdout.split('\n').filter((l) => /^(tcp|udp|icmp)/.test(l)).length;
}

describe('deleteMatching counts', () => {
  test('the kernel flush is counted exactly while other entries are created at the same time', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.createMany(Array.from({ length: 3000 }, (_, i) => ({ ...udp(i), timeout: 300, mark: i % 3 === 0 ? 1 : 2 })));
        // Churn: 2000 more entries (mark 3) are created while the flush runs.
        const churn = ct.createMany(Array.from({ length: 2000 }, (_, i) => ({ ...udp(10000 + i), timeout: 300, mark: 3 })));
        const removed = await ct.deleteMatching({ mark: 1 });
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

  test('more removals than the counting socket can queue are still counted (drops)', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // Each DESTROY event takes far more than 200 bytes of socket buffer: 20,000 of them
        // overflow the counting socket's default buffer many times over.
        const made = await ct.createMany(Array.from({ length: 20000 }, (_, i) => ({ ...udp(i), timeout: 300, mark: 9 })));
        expect(made.ok).toBe(20000);
        expect(await ct.deleteMatching({ mark: 9 })).toBe(20000);
        expect(await count(ns)).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('with event delivery off, the count is the table shrinkage', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.createMany(Array.from({ length: 50 }, (_, i) => ({ ...udp(i), timeout: 300, mark: i < 20 ? 4 : 5 })));
        expect(await ct.deleteMatching({ mark: 4 })).toBe(20);
        expect(await ct.deleteMatching({ mark: 5 }, undefined, { exact: false })).toBe(30);
        expect(await count(ns)).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });
});
