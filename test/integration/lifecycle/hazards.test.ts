/**
 * Lifecycle hazards, each test named after one: closing while work is under way, reliable
 * delivery under a flood, workers closing while busy, and a process exiting with
 * everything open. Real kernel, one namespace per test.
 */
import { Worker } from 'worker_threads';
import { Conntrack, ConntrackError } from '../../../lib';
import { DIST, runNode } from '../../helpers/child';
import { Sandbox as Netns, withSandbox as withNetns } from '../../../apps/testing';

const udp = (i: number) => ({ proto: 'udp' as const, orig: { src: `10.9.${(i >> 8) & 255}.${i & 255}`, dst: '10.8.0.1', sport: 1000, dport: 53 } });
const specs = (n: number) => Array.from({ length: n }, (_, i) => ({ ...udp(i), timeout: 600 }));
const fds = () => require('fs').readdirSync('/proc/self/fd').length as number;

async function cliCount(ns: Netns): Promise<number> {
  const { stdout } = await ns.run('conntrack', ['-C']);
  return Number(stdout.trim());
}

/** Creates and deletes `n` entries in a loop on its own handle until stopped (NEW + DESTROY events). */
function flood(ns: Netns, n = 1000): { stop(): Promise<void> } {
  let stopped = false;
  const done = (async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      while (!stopped) {
        await ct.createMany(specs(n));
        await ct.deleteMany(specs(n));
      }
    } finally {
      await ct.close();
    }
  })();
  return { stop: async () => ((stopped = true), await done) };
}

describe('lifecycle hazards', () => {
  test('close during a dump: the iterator ends with ERR_CLOSED, the socket is released', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      await ct.createMany(specs(5000));
      const before = fds();
      const dump = ct.dump(undefined, { highWaterMark: 16 });
      const first = await dump.next();
      expect(first.done).toBe(false);
      await ct.close();
      let err: unknown;
      try {
        for (;;) if ((await dump.next()).done) break;
      } catch (e) {
        err = e;
      }
      // Either the buffered items ran out and the dump reports the close, or it had finished.
      if (err) expect(err).toMatchObject({ code: 'ERR_CLOSED' });
      expect(ct.children.size).toBe(0);
      expect(fds()).toBeLessThan(before);
    });
  });

  test('close during a flood: the event stream ends, next() settles, no uncaught error', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      const stream = ct.events();
      const f = flood(ns);
      let n = 0;
      // Reads until the stream ends: close() must end the loop (a pending next() settles done).
      const reading = (async () => {
        for await (const _ of stream) n++;
        return 'ended';
      })();
      await new Promise((r) => setTimeout(r, 200));
      await ct.close();
      await f.stop();
      await expect(reading).resolves.toBe('ended');
      expect(stream.isClosed).toBe(true);
      expect(n).toBeGreaterThan(0);
    });
  });

  test('close with pending creates: each settles with its true outcome or ERR_OUTCOME_UNKNOWN, ERR_CLOSED only if never sent', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const results = specs(3000).map((s) => ct.create(s).then(() => 'ok', (e: ConntrackError) => e.code));
      const bulk = ct.createMany(specs(3000).map((s, i) => ({ ...s, orig: { ...s.orig, sport: 2000 + (i % 60000) } })));
      await ct.close();
      const codes = await Promise.all(results);
      const b = await bulk;
      // ENOMEM is a true answer too (the table is full): nf_conntrack_max is global, and other
      // test runs on the machine may lower it for a moment.
      for (const c of [...codes, ...b.errors.map((e) => e.error.code)]) expect(['ok', 'ERR_CLOSED', 'ERR_OUTCOME_UNKNOWN', 'ENOMEM']).toContain(c);
      const okCount = codes.filter((c) => c === 'ok').length + b.ok;
      const unknown = codes.filter((c) => c === 'ERR_OUTCOME_UNKNOWN').length + b.errors.filter((e) => e.error.code === 'ERR_OUTCOME_UNKNOWN').length;
      const inTable = await cliCount(ns);
      expect(inTable).toBeGreaterThanOrEqual(okCount);
      expect(inTable).toBeLessThanOrEqual(okCount + unknown);
    });
  });

  test('close with expectation streams open: they end (done), listeners see close, fds are released', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const before = fds();
      const a = ct.expectations.events();
      const b = ct.expectations.events({ types: ['new'] });
      const closes: string[] = [];
      a.on('close', () => closes.push('a'));
      b.on('close', () => closes.push('b'));
      const pending = a.next();
      expect(fds()).toBeGreaterThan(before);
      await ct.close();
      await expect(pending).resolves.toMatchObject({ done: true });
      expect(closes.sort()).toEqual(['a', 'b']);
      expect(fds()).toBeLessThan(before);
    });
  });

  test('reliable: true under a flood: every DESTROY of the flood is delivered, none lost for good', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const stream = ct.events({ types: ['destroy'], reliable: true, receiveBufferSize: 1 << 16 });
        const gone = new Set<string>();
        stream.on('event', (ev) => gone.add(ev.flow.orig.src));
        const load = await Conntrack.open({ netns: ns.path });
        await load.createMany(specs(3000));
        await load.deleteMany(specs(3000));
        await load.close();
        for (let i = 0; i < 200 && gone.size < 3000; i++) await new Promise((r) => setTimeout(r, 50));
        expect(gone.size).toBe(3000);
        stream.close();
      } finally {
        await ct.close();
      }
    });
  });

  test('workers closing while busy: each worker closes mid-dump and mid-flood and exits 0', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const setup = await Conntrack.open({ netns: ns.path });
      await setup.createMany(specs(3000));
      await setup.close();
      const code = `
        const { parentPort, workerData } = require('worker_threads');
        const { Conntrack } = require(workerData.dist);
        (async () => {
          const ct = await Conntrack.open({ netns: workerData.netns });
          const events = ct.events();
          events.on('event', () => {});
          const dump = ct.dump(undefined, { highWaterMark: 8 });
          await dump.next();
          const creates = [];
          for (let i = 0; i < 500; i++) creates.push(ct.create({ proto: 'tcp', orig: { src: '10.3.0.' + workerData.n, dst: '10.4.0.1', sport: 1000 + i, dport: 80 }, timeout: 60 }).catch((e) => e.code));
          await ct.close();
          const outcomes = await Promise.all(creates);
          parentPort.postMessage(outcomes.every((o) => o === undefined || o === 'ERR_CLOSED' || o === 'ERR_OUTCOME_UNKNOWN'));
        })().catch((e) => parentPort.postMessage(String(e)));
      `;
      const run = (n: number) => new Promise<unknown>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { dist: DIST, netns: ns.path, n } });
        let msg: unknown;
        w.on('message', (m) => (msg = m));
        w.on('error', reject);
        w.on('exit', (c) => (c === 0 ? resolve(msg) : reject(new Error(`worker exited ${c}`))));
      });
      expect(await Promise.all([run(1), run(2), run(3)])).toEqual([true, true, true]);
    });
  });

  test('a worker terminated while busy does not crash the process', async () => {
    await withNetns(async (ns) => {
      const code = `
        const { parentPort, workerData } = require('worker_threads');
        const { Conntrack } = require(workerData.dist);
        (async () => {
          const ct = await Conntrack.open({ netns: workerData.netns });
          ct.events().on('event', () => {});
          parentPort.postMessage('ready');
          for (;;) await ct.createMany(Array.from({ length: 500 }, (_, i) => ({ proto: 'udp', orig: { src: '10.2.0.1', dst: '10.2.0.2', sport: i + 1, dport: 53 }, timeout: 60 }))).then(() => ct.flush());
        })();
      `;
      const w = new Worker(code, { eval: true, workerData: { dist: DIST, netns: ns.path } });
      await new Promise((r) => w.once('message', r));
      await new Promise((r) => setTimeout(r, 100));
      const exit = await w.terminate();
      expect(exit).toBe(1); // terminate()'s code
      // The process is still fine: open and use a handle here.
      const ct = await Conntrack.open({ netns: ns.path });
      expect(await ct.list()).toBeDefined();
      await ct.close();
    });
  });

  test('process exit with everything open: the child exits cleanly with code 0', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const r = await runNode(`
        const { Conntrack } = require(DIST);
        (async () => {
          const ct = await Conntrack.open({ netns: process.argv[1] });
          await ct.createMany(Array.from({ length: 2000 }, (_, i) => ({ proto: 'udp', orig: { src: '10.1.0.1', dst: '10.1.0.2', sport: i + 1, dport: 53 }, timeout: 60 })));
          ct.events().on('event', () => {});
          ct.expectations.events().on('event', () => {});
          ct.mirror({ refreshInterval: 0 });
          ct.pressure({ interval: 100 });
          const dump = ct.dump(undefined, { highWaterMark: 4 });
          await dump.next();
          for (let i = 0; i < 200; i++) ct.create({ proto: 'tcp', orig: { src: '10.1.0.9', dst: '10.1.0.8', sport: i + 1, dport: 80 }, timeout: 60 }).catch(() => {});
          console.log('open');
          process.exit(0);
        })();
      `, [ns.path]);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('open');
      expect(r.signal).toBeNull();
      expect(r.code).toBe(0);
    });
  });
});
