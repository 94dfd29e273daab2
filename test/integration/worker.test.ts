/**
 * The addon keeps per-environment state and closes its sockets in the environment's
 * cleanup hook, so it loads in worker threads, and a worker that exits with sockets still
 * open does not leak or crash the process.
 */
import { Worker } from 'worker_threads';
import * as path from 'path';
import { withSandbox } from '../../apps/testing';

const DIST = path.join(__dirname, '..', '..', 'dist', 'lib');

function runWorker(code: string, workerData: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData });
    let result: unknown;
    w.on('message', (m) => (result = m));
    w.on('error', reject);
    w.on('exit', (codeNum) => (codeNum === 0 ? resolve(result) : reject(new Error(`worker exited with ${codeNum}`))));
  });
}

describe('worker threads', () => {
  test('two workers list the same namespace at once, each with its own addon instance', async () => {
    await withSandbox(async (ns) => {
      await ns.sh('conntrack -I -p udp -s 192.0.2.1 -d 192.0.2.2 --sport 5000 --dport 53 -t 60');
      const code = `
        const { parentPort, workerData } = require('worker_threads');
        const { Conntrack } = require(workerData.dist);
        (async () => {
          const ct = await Conntrack.open({ netns: workerData.netns });
          const flows = await ct.list();
          await ct.close();
          parentPort.postMessage(flows.map((f) => f.orig.src + ':' + f.orig.sport));
        })().catch((e) => { parentPort.postMessage('error: ' + e.message); });
      `;
      const results = await Promise.all([
        runWorker(code, { dist: DIST, netns: ns.path }),
        runWorker(code, { dist: DIST, netns: ns.path }),
      ]);
      expect(results).toEqual([['192.0.2.1:5000'], ['192.0.2.1:5000']]);
    });
  });

  test('a worker that exits with an open handle and a running dump is cleaned up', async () => {
    await withSandbox(async (ns) => {
      await ns.sh('for p in $(seq 1000 1200); do conntrack -I -p udp -s 192.0.2.1 -d 192.0.2.2 --sport $p --dport 53 -t 60 2>/dev/null; done');
      const code = `
        const { parentPort, workerData } = require('worker_threads');
        const { Conntrack } = require(workerData.dist);
        (async () => {
          const ct = await Conntrack.open({ netns: workerData.netns });
          const it = ct.dump()[Symbol.asyncIterator]();
          const first = await it.next();
          parentPort.postMessage(first.done ? 'empty' : 'got one');
          process.exit(0); // leave the socket and the dump open: the cleanup hook must close them
        })();
      `;
      await expect(runWorker(code, { dist: DIST, netns: ns.path })).resolves.toBe('got one');
      // The main thread's addon instance is unaffected.
      const { Conntrack } = await import('../../lib');
      const ct = await Conntrack.open({ netns: ns.path });
      expect((await ct.list()).length).toBe(201);
      await ct.close();
    });
  });
});
