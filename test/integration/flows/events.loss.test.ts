/**
 * Loss accounting and socket lifetime. Some scenarios run in child processes (a user
 * namespace, or a process that must exit by itself); those load the compiled package
 * from dist/, which is rebuilt first when older than lib/.
 */
import { readFileSync } from 'fs';
import { Conntrack, ConntrackError, FlowEvent } from '../../../lib';
import { withSandbox } from '../../../apps/testing';
import { DIST, ensureDist, floodBlocking, runScript } from '../../helpers/child';
import { realRootTest } from '../../helpers/real-root';

beforeAll(ensureDist);

describe('event loss accounting', () => {
  test('in a user namespace with the default buffer and a slow consumer, received + lost equals the events produced', async () => {
    const script = `
      const { Conntrack } = require(${JSON.stringify(DIST)});
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const spec = (i, b) => ({ proto: 'udp', orig: { src: '10.' + b + '.' + (i >> 8) + '.' + (i & 255), dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600 });
      (async () => {
        const ct = await Conntrack.open();
        const big = ct.events({ receiveBufferSize: 64 << 20 });
        const forcedBig = big.receiveBufferForced, grantedBig = big.receiveBufferSize;
        big.close();
        const s = ct.events({ types: ['new'], highWaterMark: 64 });
        const lostNotices = [];
        s.on('lost', (i) => lostNotices.push(i));
        // Phase 1, deterministic: nothing is read while N events are produced.
        s.pause();
        const N1 = 2000;
        for (let i = 0; i < N1; i++) await ct.create(spec(i, 1));
        s.resume();
        let received = 0;
        while (received + s.lost < N1) received += (await s.nextBatch()).length;
        const phase1 = { received, lost: s.lost };
        // Phase 2: a slow consumer (1 ms per 20 events) while the producer runs.
        const N2 = 3000;
        const producer = (async () => { for (let i = 0; i < N2; i++) await ct.create(spec(i, 2)); })();
        let done = false;
        producer.then(() => (done = true));
        while (!(done && s.kernelQueuedBytes === 0 && s.queued === 0)) {
          if (s.queued === 0) { await sleep(2); continue; }
          const batch = await s.nextBatch();
          received += batch.length;
          for (let k = 0; k < batch.length; k += 20) await sleep(1);
        }
        const out = { forcedBig, grantedBig, rcvbuf: s.receiveBufferSize, produced: N1 + N2, received, lost: s.lost, phase1,
          noticed: lostNotices.reduce((a, x) => a + x.delta, 0), lastNotice: lostNotices.length ? lostNotices[lostNotices.length - 1].lost : 0,
          stats: s.stats };
        console.log(JSON.stringify(out));
        await ct.close();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runScript('unshare', ['-Urn'], script);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
    // SO_RCVBUFFORCE is refused in a user namespace: SO_RCVBUF, capped by rmem_max.
    expect(out.forcedBig).toBe(false);
    expect(out.grantedBig).toBeLessThanOrEqual(2 * rmemMax);
    expect(out.rcvbuf).toBe(Number(readFileSync('/proc/sys/net/core/rmem_default', 'utf8')));
    expect(out.phase1.lost).toBeGreaterThan(0);
    expect(out.phase1.received + out.phase1.lost).toBe(2000);
    expect(out.received + out.lost).toBe(out.produced);
    expect(out.noticed).toBe(out.lost);
    expect(out.lastNotice).toBe(out.lost);
    expect(out.stats.delivered).toBe(out.received);
  });

  realRootTest('the 64 MB flood check', 'SO_RCVBUFFORCE needs CAP_NET_ADMIN in the initial user namespace')('as real root, a 64 MB buffer takes a 100,000-flow flood with nothing lost', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const s = ct.events({ types: ['new'], receiveBufferSize: 64 << 20 });
        expect(s.receiveBufferForced).toBe(true);
        expect(s.receiveBufferSize).toBe(128 << 20);
        const N = 100000;
        const seen = new Set<number>();
        const consume = (async () => {
          let n = 0;
          while (n < N) {
            const batch: FlowEvent[] = await s.nextBatch();
            for (const ev of batch) seen.add(((ev.flow.orig.sport! - 1024) << 16) | ev.flow.orig.dport!);
            n += batch.length;
          }
          return n;
        })();
        const creates: Promise<void>[] = [];
        for (let i = 0; i < N; i++) {
          creates.push(ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1024 + (i >> 16), dport: i & 0xffff }, timeout: 600 }));
        }
        await Promise.all(creates);
        expect(await consume).toBe(N);
        expect(seen.size).toBe(N);
        expect(s.lost).toBe(0);
        expect(s.stats.overruns).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });
  realRootTest('the congested barrier check', 'it needs a forced 16 MB buffer (SO_RCVBUFFORCE)')('barrier() on a congested socket, which drops its reply without another ENOBUFS, rejects instead of hanging', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // A buffer larger than the 4 MB the reader thread holds for JavaScript: when the
        // overrun is read, the kernel's queue is still long, and the socket congested (the
        // kernel drops every message, replies too, without reporting ENOBUFS again).
        const s = ct.events({ types: ['new'], receiveBufferSize: 16 << 20 });
        expect(s.receiveBufferForced).toBe(true);
        let received = 0;
        s.on('event', () => received++);
        // At the overrun the stream pauses a moment: the kernel's queue is still long (and the
        // socket congested, until the queue is empty) when the barrier goes out.
        let queuedAtBarrier = -1;
        let notices = 0;
        s.on('lost', () => notices++);
        let barriers = 0;
        const outcome = new Promise<string>((resolve) => {
          s.once('lost', () => {
            s.pause();
            setImmediate(() => {
              queuedAtBarrier = s.kernelQueuedBytes;
              barriers++;
              const noticesBefore = notices;
              s.barrier().then(() => resolve('resolved'), (err: ConntrackError) => resolve(notices > noticesBefore ? err.code : `${err.code} before 'lost'`));
              s.resume();
            });
          });
        });
        const N = 60000;
        floodBlocking(ns.path, `check(await ct.createMany(range(${N}, (i) => spec(i, 3))));`);
        expect(await outcome).toBe('ENOBUFS');
        expect(queuedAtBarrier).toBeGreaterThan(0); // congested until the queue is empty
        // Once the queue has drained, barriers are answered again.
        for (;;) {
          try {
            barriers++;
            await s.barrier();
            break;
          } catch (err) {
            expect((err as ConntrackError).code).toBe('ENOBUFS');
          }
        }
        expect(s.lost).toBeGreaterThan(0);
        // Every event was received or counted lost; a dropped barrier adds its reply and error ack.
        expect(received + s.lost).toBeGreaterThanOrEqual(N);
        expect(received + s.lost).toBeLessThanOrEqual(N + 2 * barriers);
        s.close();
      } finally {
        await ct.close();
      }
    });
  }, 60000);
});

describe('event stream lifetime', () => {
  test('closing streams frees their sockets and the process exits with no handle left open', async () => {
    const script = `
      const fs = require('fs');
      const { Conntrack } = require(${JSON.stringify(DIST)});
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      (async () => {
        const ct = await Conntrack.open();
        const before = fds();
        const a = ct.events();
        const b = ct.events({ types: ['destroy'], filter: { proto: 'tcp' } });
        const during = fds();
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 100 });
        for await (const ev of a) { if (ev.type === 'new') break; }  // leaving the loop closes a
        b.close();
        const after = fds();
        console.log(JSON.stringify({ before, during, after, extra: ct.children.size }));
        // No ct.close(): an idle handle must not keep the process alive either.
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runScript('unshare', ['-n'], script, 20000);
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull(); // not killed by the timeout: it exited by itself
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    // Each stream holds its netlink socket and its reader thread's wake-up eventfd.
    expect(out.during).toBe(out.before + 4);
    expect(out.after).toBe(out.before);
    expect(out.extra).toBe(0);
  });

  test('an open stream keeps the process alive until unref()', async () => {
    const script = `
      const { Conntrack } = require(${JSON.stringify(DIST)});
      (async () => {
        const ct = await Conntrack.open();
        const s = ct.events();
        setTimeout(() => { console.log('still alive'); s.unref(); }, 300);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const r = await runScript('unshare', ['-n'], script, 20000);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('still alive');
    expect(r.ms).toBeGreaterThanOrEqual(300);
  });
});
