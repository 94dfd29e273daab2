import { Conntrack, ConntrackStats, ExpectationCpuStats, PressureSample } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';

/** `conntrack -S` / `conntrack -S expect` output: one record per CPU. */
async function cliStats(ns: Sandbox, ...args: string[]): Promise<Record<string, number>[]> {
  const { stdout } = await ns.run('conntrack', ['-S', ...args]);
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('cpu='))
    .map((l) => Object.fromEntries(l.trim().split(/\s+/).map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)])));
}

const spec = (i: number) => ({ proto: 'udp' as const, orig: { src: `10.31.0.${i}`, dst: '10.31.1.1', sport: 1000 + i, dport: 53 }, timeout: 300 });

describe('dump requests on one handle', () => {
  test('many concurrent stats(), expectations.stats() and list() calls all succeed with the kernel\'s numbers', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 1; i <= 20; i++) await ct.create(spec(i));
        // Nothing changes the counters from here on (no traffic, no more entries).
        const cli = await cliStats(ns);
        const cliExpect = await cliStats(ns, 'expect');
        expect(cli.length).toBeGreaterThan(0);

        // Per-CPU statistics and expectation statistics are dumps on the request socket:
        // all of them in the same tick, beside dumps on sockets of their own and gets.
        const stats: Promise<ConntrackStats>[] = [];
        const expectStats: Promise<ExpectationCpuStats[]>[] = [];
        const lists: Promise<number>[] = [];
        const gets: Promise<number | undefined>[] = [];
        for (let k = 0; k < 25; k++) {
          stats.push(ct.stats());
          expectStats.push(ct.expectations.stats());
          if (k % 5 === 0) lists.push(ct.list().then((l) => l.length));
          gets.push(ct.get(spec(1 + (k % 20))).then((f) => f.orig.sport));
        }
        const [s, e, l, g] = await Promise.all([Promise.all(stats), Promise.all(expectStats), Promise.all(lists), Promise.all(gets)]);
        for (const one of s) {
          expect(one.count).toBe(20);
          expect(one.perCpu.map((c) => [c.cpu, c.found, c.insert, c.insertFailed, c.drop, c.earlyDrop, c.invalid]))
            .toEqual(cli.map((c) => [c.cpu, c.found, c.insert, c.insert_failed, c.drop, c.early_drop, c.invalid]));
        }
        for (const one of e) {
          expect(one.map((c) => [c.cpu, c.new, c.create, c.delete])).toEqual(cliExpect.map((c) => [c.cpu, c.expect_new, c.expect_create, c.expect_delete]));
        }
        expect(l).toEqual([20, 20, 20, 20, 20]);
        expect(g).toEqual(Array.from({ length: 25 }, (_, k) => 1001 + (k % 20)));
      } finally {
        await ct.close();
      }
    });
  });

  test('a pressure monitor sampling every 10 ms while stats() is called in a loop: no request fails', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create(spec(1));
        const mon = ct.pressure({ interval: 10 });
        const errors: Error[] = [];
        const samples: PressureSample[] = [];
        mon.on('error', (err: Error) => errors.push(err));
        mon.on('sample', (sm: PressureSample) => samples.push(sm));
        const started = Date.now();
        let calls = 0;
        while (Date.now() - started < 300 || samples.length < 5) {
          const [a, b] = await Promise.all([ct.stats(), ct.expectations.stats()]);
          expect(a.count).toBe(1);
          expect(b.length).toBe(a.perCpu.length);
          calls++;
        }
        mon.close();
        expect(errors).toEqual([]);
        expect(calls).toBeGreaterThan(5);
        expect(samples.every((sm) => sm.count === 1)).toBe(true);
      } finally {
        await ct.close();
      }
    });
  });

  test('dump requests still queued when the handle closes reject with ERR_CLOSED', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const calls = Array.from({ length: 10 }, () => ct.stats().then(() => 'ok', (err) => err.code));
      await ct.close();
      const outcomes = await Promise.all(calls);
      expect(outcomes.every((o) => o === 'ok' || o === 'ERR_CLOSED')).toBe(true);
      expect(outcomes).toContain('ERR_CLOSED');
    });
  });
});
