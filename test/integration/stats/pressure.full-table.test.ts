/**
 * The full-table experiment, as real root only: nf_conntrack_max is global and writable
 * only from the initial network namespace, so this lowers it for the whole machine. The
 * window is kept to about a second, and the old value is restored in `finally`.
 */
import { once } from 'events';
import { readFileSync } from 'fs';
import { Conntrack, ConntrackStats, PressureWarning, ProcStats, readProcStats } from '../../../lib';
import { withSandbox } from '../../../apps/testing';
import { realRootTest } from '../../helpers/real-root';

const rootTest = realRootTest('pressure.full-table', 'lowering nf_conntrack_max needs real root in the initial user namespace (/proc/self/uid_map is not "0 0 4294967295")');

/**
 * Runs inside the namespace: a server, then seven connections held open (established,
 * hence ASSURED and never early-dropped). On SIGUSR2 it tries three more at once with an
 * 800 ms connect timeout and reports how many got through.
 */
const CLIENT = `
const net = require('net');
const held = [];
const srv = net.createServer((c) => { held.push(c); c.on('error', () => {}); });
srv.listen(0, '127.0.0.1', async () => {
  const port = srv.address().port;
  const connect = (ms) => new Promise((resolve) => {
    const c = net.connect({ port, host: '127.0.0.1' });
    const t = setTimeout(() => { c.destroy(); resolve(false); }, ms);
    c.on('connect', () => { clearTimeout(t); held.push(c); resolve(true); });
    c.on('error', () => { clearTimeout(t); resolve(false); });
  });
  let ok = 0;
  for (let i = 0; i < 7; i++) if (await connect(3000)) ok++;
  process.on('SIGUSR2', async () => {
    const r = await Promise.all([connect(800), connect(800), connect(800)]);
    console.log(JSON.stringify({ phase: 'more', ok: r.filter(Boolean).length, timedOut: r.filter((x) => !x).length }));
  });
  console.log(JSON.stringify({ phase: 'open', ok }));
});
`;

describe('a full table (real root)', () => {
  rootTest('max lowered to 7: ten connects, three time out; stats report 7 of 7 and drops; the monitor warns', async () => {
    await withSandbox(async (ns) => {
      await ns.sh(
        "nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter",
      );
      const child = ns.spawn('node', ['-e', CLIENT]);
      const lines: { phase: string; ok: number; timedOut?: number }[] = [];
      const wake: (() => void)[] = [];
      let exited = false;
      child.stdout!.on('data', (d: Buffer) => {
        for (const t of d.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(t));
        wake.splice(0).forEach((f) => f());
      });
      child.once('exit', () => {
        exited = true;
        wake.splice(0).forEach((f) => f());
      });
      const waitFor = async (phase: string): Promise<{ phase: string; ok: number; timedOut?: number }> => {
        for (;;) {
          const l = lines.find((x) => x.phase === phase);
          if (l) return l;
          if (exited) throw new Error(`the client in the namespace exited before "${phase}"`);
          await new Promise<void>((r) => wake.push(r));
        }
      };
      const ct = await Conntrack.open({ netns: ns.path });
      const init = await Conntrack.open();
      try {
        const opened = await waitFor('open');
        expect(opened.ok).toBe(7);
        expect((await ct.stats()).count).toBe(7);

        const mon = ct.pressure({ interval: 100, warnAt: 0.9 });
        const warnings: PressureWarning[] = [];
        mon.on('warning', (w) => warnings.push(w));
        await once(mon, 'sample'); // the baseline: drops are measured from here

        let more: { phase: string; ok: number; timedOut?: number };
        let stats: ConntrackStats;
        let proc: ProcStats;
        let cliS: string;
        let cliC: string;
        const { max: oldMax } = await init.settings.get();
        try {
          // ---- window start: the whole machine has a limit of 7 entries per namespace
          await init.settings.set({ max: 7 });
          child.kill('SIGUSR2');
          more = await waitFor('more');
          stats = await ct.stats();
          proc = await readProcStats({ netns: ns.pid });
          [cliS, cliC] = await Promise.all([ns.run('conntrack', ['-S']), ns.run('conntrack', ['-C'])]).then((r) => r.map((x) => x.stdout));
          // At most two more seconds of samples: the limit must not stay lowered for long.
          for (let i = 0; i < 20 && !(warnings.some((w) => w.reason === 'fill') && warnings.some((w) => w.reason === 'drops')); i++) {
            await once(mon, 'sample');
          }
        } finally {
          await init.settings.set({ max: oldMax });
          // ---- window end
        }
        mon.close();
        expect(Number(readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8'))).toBe(oldMax);

        expect(more).toEqual({ phase: 'more', ok: 0, timedOut: 3 });
        expect(stats.count).toBe(7);
        expect(stats.max).toBe(7);
        expect(stats.total.drop).toBeGreaterThanOrEqual(3);
        expect(proc.total.entries).toBe(7);
        expect(proc.total.drop).toBe(stats.total.drop);
        expect(Number(cliC.trim())).toBe(7);
        const cliDrops = [...cliS.matchAll(/ drop=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
        expect(cliDrops).toBe(stats.total.drop);

        const fill = warnings.find((w) => w.reason === 'fill')!;
        expect(fill.sample).toMatchObject({ count: 7, max: 7, fill: 1 });
        expect(fill.message).toMatch(/100\.0% full \(7 of 7 entries/);
        const drops = warnings.find((w) => w.reason === 'drops')!;
        expect(drops.sample.rates.drop).toBeGreaterThan(0);
        expect(drops.message).toMatch(/dropping flows: drop \+\d+/);
      } finally {
        child.kill('SIGKILL');
        await ct.close();
        await init.close();
      }
    });
  });
});
