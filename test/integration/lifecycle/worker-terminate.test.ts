/**
 * Hazard: terminating a worker thread while the addon is busy in it. From the moment
 * worker.terminate() is called, every N-API call in that worker that could run JS fails,
 * napi_throw included; a Napi::Error raised then (by a socket method the worker is inside,
 * or by an openSocket()/netnsFiles() completion that the worker's teardown still runs)
 * used to escape node-addon-api's noexcept wrappers and abort the whole process with
 * "terminate called after throwing an instance of 'Napi::Error'". The loop runs in a child
 * process, so a crash fails this test instead of killing Jest.
 */
import { runNode } from '../../helpers/child';
import { withSandbox } from '../../../apps/testing';

describe('terminating a worker thread while the addon is busy in it', () => {
  test('with openSocket, netnsFiles, dumps and event streams in flight: no abort, no leaked fd, many iterations', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const r = await runNode(`
        const { Worker } = require('worker_threads');
        const fs = require('fs');
        const netns = process.argv[1];
        const fds = () => fs.readdirSync('/proc/self/fd').length;
        // Each worker keeps all four kinds of work going at once until it is terminated.
        const code = \`
          const { parentPort, workerData } = require('worker_threads');
          const { Conntrack } = require(workerData.dist);
          const forever = (f) => (async () => { for (;;) await f(); })().catch(() => {});
          (async () => {
            const ct = await Conntrack.open({ netns: workerData.netns });
            ct.events().on('event', () => {});
            // openSocket(): AsyncWorker completions pending when the worker is torn down.
            forever(() => Promise.all(Array.from({ length: 8 }, () => Conntrack.open({ netns: workerData.netns }).then((c) => c.close()))));
            // netnsFiles(): the same through the sysctl reader.
            forever(() => Promise.all([ct.settings.get(), ct.settings.get()]));
            // Socket methods called from JS (constructor, start, pause, close) by dumps and stats.
            forever(() => Promise.all([ct.list(), ct.stats()]));
            // Requests sent, and event batches delivered to JS.
            forever(() => ct.createMany(Array.from({ length: 200 }, (_, i) => ({ proto: 'udp', orig: { src: '10.7.0.1', dst: '10.7.0.2', sport: i + 1, dport: 53 }, timeout: 60 }))).then(() => ct.flush()));
            parentPort.postMessage('ready');
          })().catch((e) => parentPort.postMessage('error: ' + (e && e.message)));
        \`;
        (async () => {
          const before = fds();
          const iterations = 40;
          for (let i = 0; i < iterations; i++) {
            const w = new Worker(code, { eval: true, workerData: { dist: DIST, netns } });
            const msg = await new Promise((r) => w.once('message', r));
            if (msg !== 'ready') throw new Error('worker: ' + msg);
            await new Promise((r) => setTimeout(r, (i * 7) % 30));  // a different moment each time
            await w.terminate();
          }
          console.log(JSON.stringify({ iterations, before, after: fds() }));
        })().catch((e) => { console.error(e); process.exit(1); });
      `, [ns.path]);
      expect(r.stderr).toBe('');
      expect(r.signal).toBeNull();
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.iterations).toBe(40);
      // Sockets made for a worker that was torn down before it could adopt them are closed
      // (each iteration has up to 8 openSocket() calls in flight).
      expect(out.after - out.before).toBeLessThanOrEqual(2);
    });
  });
});
