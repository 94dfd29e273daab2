import { once } from 'events';
import { Conntrack, ConntrackError, PressureSample, PressureWarning } from '../../../lib';
import { withSandbox } from '../../../apps/testing';

const ourTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('pressure monitor against the kernel', () => {
  test('samples count and max; warns once when the fill passes warnAt; recovers', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const { max } = await ct.stats();
        // Three entries of a table of `max`: warn at a ratio between 2 and 3 entries' worth.
        const warnAt = 2.5 / max;
        const mon = ct.pressure({ interval: 20, warnAt });
        const warnings: PressureWarning[] = [];
        const recovered: string[] = [];
        mon.on('warning', (w) => warnings.push(w));
        mon.on('recovered', (r) => recovered.push(r.reason));
        const first: PressureSample = (await once(mon, 'sample'))[0];
        expect(first).toMatchObject({ count: 0, max, fill: 0, elapsed: 0, rates: { drop: 0, earlyDrop: 0, insertFailed: 0, insert: 0 } });
        await ns.sh('for p in 1 2 3; do conntrack -I -p udp -s 10.5.0.1 -d 10.5.0.2 --sport $p --dport 53 -t 60; done');
        let s: PressureSample;
        do s = (await once(mon, 'sample'))[0];
        while (s.count < 3);
        expect(s.fill).toBeCloseTo(3 / max, 12);
        expect(s.elapsed).toBeGreaterThan(0);
        expect(warnings).toHaveLength(1);
        expect(warnings[0].reason).toBe('fill');
        expect(warnings[0].sample.count).toBe(3);
        expect(warnings[0].message).toMatch(new RegExp(`3 of ${max} entries`));
        // Stays warned (no repeat) while full; recovers when entries go away.
        await once(mon, 'sample');
        expect(warnings).toHaveLength(1);
        const recovery = once(mon, 'recovered');
        await ns.run('conntrack', ['-D', '-p', 'udp', '--sport', '1']);
        const [r] = await recovery;
        expect(recovered).toEqual(['fill']);
        expect(r.sample.count).toBe(2);
        mon.close();
        expect(mon.isClosed).toBe(true);
      } finally {
        await ct.close();
      }
    });
  });

  test('async iteration yields samples; leaving the loop closes the monitor', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ns.sh('conntrack -I -p tcp -s 10.6.0.1 -d 10.6.0.2 --sport 5 --dport 6 -t 60 --state ESTABLISHED');
        const mon = ct.pressure({ interval: 15 });
        const seen: PressureSample[] = [];
        for await (const s of mon) {
          seen.push(s);
          if (seen.length === 3) break;
        }
        expect(seen.map((s) => s.count)).toEqual([1, 1, 1]);
        expect(seen[2].time).toBeGreaterThan(seen[0].time);
        expect(mon.isClosed).toBe(true);
      } finally {
        await ct.close();
      }
    });
  });

  test('timers: unref() lets the process exit, close() and abort clear them, ct.close() closes monitors', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // Timers are counted process-wide, and the test runner may hold one of its own for a
        // moment across an await; so each count is compared with one taken in the same
        // synchronous stretch, just before our call.
        const mon = ct.pressure({ interval: 5000 });
        await once(mon, 'sample');
        const held = ourTimers(); // includes the monitor's next tick
        mon.unref();
        expect(ourTimers()).toBe(held - 1);
        mon.ref();
        expect(ourTimers()).toBe(held);
        mon.close();
        expect(ourTimers()).toBe(held - 1);

        const quiet = ct.pressure({ interval: 5000, persistent: false });
        await once(quiet, 'sample');
        const unheld = ourTimers(); // its next tick is scheduled but does not hold the process
        quiet.ref();
        expect(ourTimers()).toBe(unheld + 1);
        quiet.close();
        expect(ourTimers()).toBe(unheld);

        const ac = new AbortController();
        const aborted = ct.pressure({ interval: 5000, signal: ac.signal });
        await once(aborted, 'sample');
        const closed = once(aborted, 'close');
        const beforeAbort = ourTimers();
        ac.abort();
        expect(aborted.isClosed).toBe(true);
        expect(ourTimers()).toBe(beforeAbort - 1);
        await closed;

        const pre = new AbortController();
        pre.abort();
        expect(ct.pressure({ signal: pre.signal }).isClosed).toBe(true);

        const last = ct.pressure({ interval: 5000 });
        await once(last, 'sample');
        const beforeClose = ourTimers();
        const closing = ct.close(); // closes its monitors before it returns
        expect(last.isClosed).toBe(true);
        expect(ourTimers()).toBe(beforeClose - 1);
        await closing;
        expect(() => ct.pressure()).toThrow(ConntrackError);
      } finally {
        await ct.close();
      }
    });
  });

  test('bad options are refused with the field named', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const cases: [unknown, string][] = [
          [{ interval: 0 }, 'interval'],
          [{ interval: 'fast' }, 'interval'],
          [{ warnAt: 0 }, 'warnAt'],
          [{ warnAt: 1.5 }, 'warnAt'],
          [{ warnAt: NaN }, 'warnAt'],
          [{ signal: {} }, 'signal'],
          [{ persistent: 1 }, 'persistent'],
          [null, 'options'],
        ];
        for (const [opts, field] of cases) {
          let err: unknown;
          try {
            ct.pressure(opts as never);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(ConntrackError);
          expect([field, (err as ConntrackError).code, (err as ConntrackError).field]).toEqual([field, 'ERR_INVALID_ARGUMENT', field]);
        }
      } finally {
        await ct.close();
      }
    });
  });
});
