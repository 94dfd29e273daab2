/**
 * The mirror's own accounting (what its event socket received and lost), the previous copy
 * passed with 'delete', settle() through an overflow that takes the barrier's reply, and
 * unref(). Child processes load the compiled package from dist/ (rebuilt when older than lib/).
 */
import { Conntrack, Flow, Mirror } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { DIST, ensureDist, floodBlocking, runScript } from '../../helpers/child';

beforeAll(ensureDist);

const spec = (i: number, base = 1) => ({ proto: 'udp' as const, orig: { src: `10.${base}.${i >> 8}.${i & 255}`, dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600 });

async function count(ns: Sandbox): Promise<number> {
  return Number((await ns.run('conntrack', ['-C'])).stdout.trim());
}

describe('mirror.stats', () => {
  test('counts what its event socket received by type, exactly', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 3; i++) await ct.create(spec(i)); // before the mirror: not counted
        const m = ct.mirror();
        await m.ready;
        expect(m.stats).toEqual({ received: { new: 0, update: 0, destroy: 0 }, lost: 0, resyncs: 0, refreshes: 0 });
        for (let i = 10; i < 17; i++) await ct.create(spec(i));
        for (let i = 10; i < 14; i++) await ct.update({ proto: 'udp', orig: spec(i).orig, mark: 5 });
        for (let i = 0; i < 3; i++) await ct.delete({ proto: 'udp', orig: spec(i).orig });
        await m.settle();
        expect(m.stats).toEqual({ received: { new: 7, update: 4, destroy: 3 }, lost: 0, resyncs: 0, refreshes: 0 });
        // A copy: changing it changes nothing.
        m.stats.received.new = 100;
        expect(m.stats.received.new).toBe(7);
        await m.refresh();
        expect(m.stats.refreshes).toBe(1);
        m.close();
      } finally {
        await ct.close();
      }
    });
  });

  test('through a flood that overran it, received + lost is every event the kernel produced', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 200; i++) await ct.create(spec(i, 1));
        const m = ct.mirror();
        await m.ready;
        // Another process floods while this thread is blocked (so it overruns on any machine):
        // 30,000 entries made and deleted, 3,000 more, and deletes of the first 200.
        floodBlocking(ns.path, `
          const churn = range(30000, (i) => spec(i, 3));
          check(await ct.createMany(churn));
          check(await ct.deleteMany(churn.map(key)));
          check(await ct.createMany(range(3000, (i) => spec(i, 2))));
          check(await ct.deleteMany(range(200, (i) => key(spec(i, 1)))));`);
        // Nothing but the mirror's own resync barriers is sent on its socket (no settle(),
        // whose reply could be dropped too), so once everything queued was read the sum is
        // exact up to those barriers' replies and error acks, if the kernel dropped any.
        const produced = 2 * 30000 + 3000 + 200;
        const sum = (): number => {
          const s = m.stats;
          return s.received.new + s.received.update + s.received.destroy + s.lost;
        };
        for (let i = 0; i < 3000 && sum() < produced; i++) await new Promise((r) => setTimeout(r, 10));
        const s = m.stats;
        expect(s.lost).toBeGreaterThan(0);
        expect(s.received.update).toBe(0);
        const barriers = (m as unknown as { barriers: number }).barriers;
        expect(barriers).toBeGreaterThan(0);
        expect(sum()).toBeGreaterThanOrEqual(produced);
        expect(sum() - produced).toBeLessThanOrEqual(2 * barriers);
        expect(s.received.new).toBeLessThan(33000);
        expect(s.received.destroy).toBeLessThanOrEqual(30200);
        await m.settle();
        expect(m.size).toBe(3000);
        expect(m.stats.resyncs).toBeGreaterThan(0);
      } finally {
        await ct.close();
      }
    });
  });
});

describe("the mirror's 'delete'", () => {
  test('passes the merged DESTROY view and the copy it held (with the counters of the last dump)', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
      await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter");
      // UDP from a fixed source port to a port nobody listens on: one flow, `n` packets each time.
      const send = (n: number): Promise<unknown> => ns.run('node', ['-e', `
        const u = require('dgram').createSocket('udp4');
        u.bind(40123, '127.0.0.1', async () => {
          for (let i = 0; i < ${n}; i++) await new Promise((r) => u.send(Buffer.alloc(100), 9999, '127.0.0.1', r));
          u.close();
        });`]);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await send(3);
        const m = ct.mirror();
        await m.ready;
        const key = { proto: 'udp', src: '127.0.0.1', dst: '127.0.0.1', sport: 40123, dport: 9999 };
        const held = m.get(key)!;
        expect(held.counters?.orig.packets).toBe(3n);
        await send(2);
        await m.settle();
        const before = (await ct.get({ proto: 'udp', orig: { src: '127.0.0.1', dst: '127.0.0.1', sport: 40123, dport: 9999 } })).counters!;
        expect(before.orig.packets).toBe(5n);
        const stored = m.get(key);
        const deletes: [Flow, Flow][] = [];
        m.on('delete', (flow: Flow, previous: Flow) => deletes.push([flow, previous]));
        await ct.delete({ proto: 'udp', orig: { src: '127.0.0.1', dst: '127.0.0.1', sport: 40123, dport: 9999 } });
        await m.settle();
        expect(deletes).toHaveLength(1);
        const [flow, previous] = deletes[0];
        expect(previous).toEqual(stored); // the copy the mirror held (now gone from it)
        expect(m.has(key)).toBe(false);
        expect(previous.counters).toEqual(held.counters);
        expect(flow.counters).toEqual(before); // the final counters, from the DESTROY event
        expect(flow.id).toBe(previous.id);
        expect(flow.status).toEqual(previous.status);
      } finally {
        await ct.close();
      }
    });
  });

  test('a delete found by a reconciling dump passes the held copy as both', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 0); // no event cache: the delete is silent
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create(spec(1));
        const m = ct.mirror({ refreshInterval: 0 });
        await m.ready;
        const held = [...m][0];
        await ct.delete({ proto: 'udp', orig: spec(1).orig });
        const deletes: [Flow, Flow][] = [];
        m.on('delete', (flow: Flow, previous: Flow) => deletes.push([flow, previous]));
        const info = await m.refresh();
        expect(info.removed).toBe(1);
        expect(deletes).toEqual([[held, held]]);
        expect(deletes[0][0]).toBe(deletes[0][1]);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('mirror.settle() through an overflow', () => {
  test('the barrier reply lost with the events: settle() resyncs, then resolves, equal to the kernel', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const m: Mirror = ct.mirror({ receiveBufferSize: 64 * 1024 });
        await m.ready;
        // Observe (not replace) the barrier requests settle() makes on the mirror's socket.
        const stream = (m as unknown as { stream: { barrier(): Promise<void> } }).stream;
        const barrier = stream.barrier.bind(stream);
        const outcomes: string[] = [];
        stream.barrier = () => barrier().then(() => void outcomes.push('ok'), (err: { code: string }) => {
          outcomes.push(err.code);
          throw err;
        });
        // Another process floods the namespace while this thread is blocked: the reader
        // thread stops once 4 MB wait for JavaScript, then the socket's buffer fills and the
        // kernel drops the rest. The barrier below is sent before anything is read, so
        // its reply finds the buffer full too.
        const n = 40000;
        floodBlocking(ns.path, `check(await ct.createMany(range(${n}, (i) => spec(i, 7))));`);
        await m.settle();
        expect(outcomes[0]).toBe('ENOBUFS');
        expect(outcomes[outcomes.length - 1]).toBe('ok');
        expect(m.lost).toBeGreaterThan(0);
        expect(m.resyncs).toBeGreaterThan(0);
        expect(m.synchronizing).toBe(false);
        expect(m.size).toBe(n);
        expect(await count(ns)).toBe(n);
        // And it keeps following afterwards.
        await ct.delete({ proto: 'udp', orig: { src: '10.7.0.0', dst: '10.99.0.1', sport: 1000, dport: 53 } });
        await m.settle();
        expect(m.size).toBe(n - 1);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('mirror.unref()', () => {
  test('an open mirror keeps the process alive until unref(); ref() undoes it', async () => {
    const script = (unrefFirst: boolean) => `
      const { Conntrack } = require(${JSON.stringify(DIST)});
      (async () => {
        const ct = await Conntrack.open();
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 100 });
        const m = ct.mirror({ refreshInterval: 50 });
        await m.ready;
        ${unrefFirst ? 'm.unref(); m.ref();' : ''}
        setTimeout(() => {
          console.log(m.size, m.refreshes > 0 ? 'refreshed' : 'not refreshed');
          m.unref();
        }, 400);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    for (const unrefFirst of [false, true]) {
      const r = await runScript('unshare', ['-n'], script(unrefFirst), 20000);
      expect(r.stderr).toBe('');
      expect(r.signal).toBeNull(); // it exited by itself once unref() was called
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('1 refreshed');
      expect(r.ms).toBeGreaterThanOrEqual(400);
    }
  });

  test('an unref()ed mirror lets the process exit, also during a reconciling dump', async () => {
    const script = `
      const { Conntrack } = require(${JSON.stringify(DIST)});
      (async () => {
        const ct = await Conntrack.open();
        const specs = [];
        for (let i = 0; i < 20000; i++) specs.push({ proto: 'udp', orig: { src: '10.8.' + (i >> 8) + '.' + (i & 255), dst: '10.99.0.1', sport: 1, dport: 2 }, timeout: 100 });
        await ct.createMany(specs);
        const m = ct.mirror();
        process.on('exit', () => console.log('exit', m.synchronizing ? 'during the dump' : 'after it', m.size));
        await m.ready;
        // Let what the first sync used wind down (its dump socket closing): from here on
        // only the mirror's sockets could hold the event loop.
        await new Promise((r) => setTimeout(r, 300));
        m.unref();
        m.refresh().catch(() => {});
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runScript('unshare', ['-n'], script, 20000);
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('exit during the dump 20000');
  });
});
