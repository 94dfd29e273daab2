#!/usr/bin/env node
/**
 * Soak: memory, descriptors and threads over time, against the real kernel in a private
 * network namespace (run as root, or under `unshare -Urn`).
 *
 *   node scripts/soak.js [--events SECONDS] [--cycles N] [--interval SECONDS]
 *
 * 1. An event stream consumed while a second handle creates and deletes entries in a loop
 *    (NEW and DESTROY events as fast as the kernel makes them), for --events seconds.
 * 2. --cycles open()/list()/close() cycles.
 * Prints RSS (and the JS heap) at intervals and descriptors and threads at the start and
 * end of each phase. Fails (exit 1) when RSS ends more than 10% above the level it settled
 * at (the median of the samples in the second quarter of the phase), or when descriptors or
 * threads are not back where they started.
 */
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '600' },
    cycles: { type: 'string', default: '100000' },
    interval: { type: 'string', default: '10' },
  },
});
const EVENT_SECONDS = Number(values.events);
const CYCLES = Number(values.cycles);
const INTERVAL_MS = Number(values.interval) * 1000;

const { Conntrack } = require(path.join(__dirname, '..', 'dist', 'lib'));

const mb = (n) => (n / 1048576).toFixed(1);
const fdTargets = () => {
  const out = new Map();
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      out.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      /* the directory's own descriptor, closed meanwhile */
    }
  }
  return out;
};
const fds = () => fdTargets().size;
const threads = () => Number(/^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]);
const rss = () => process.memoryUsage().rss;

async function netns() {
  const child = spawn('unshare', ['-n', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
  const own = fs.readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 500; i++) {
    try {
      if (fs.readlinkSync(`/proc/${child.pid}/ns/net`) !== own) break;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  fs.writeFileSync(`/proc/${child.pid}/root/proc/sys/net/netfilter/nf_conntrack_events`, '1');
  return { path: `/proc/${child.pid}/ns/net`, close: () => child.kill('SIGKILL') };
}

/** Samples RSS every INTERVAL_MS while `work` runs; returns the samples. */
async function sampled(label, work) {
  const samples = [];
  const start = Date.now();
  const take = () => {
    const r = rss();
    samples.push(r);
    const heap = process.memoryUsage().heapUsed;
    console.log(`${label} t=${((Date.now() - start) / 1000).toFixed(0)}s rss=${mb(r)} MB heap=${mb(heap)} MB`);
  };
  take();
  const timer = setInterval(take, INTERVAL_MS);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  if (global.gc) global.gc();
  take();
  return samples;
}

/** The level RSS settled at, and whether the end stays within 10% of it. */
function verdict(label, samples) {
  const n = samples.length;
  const q = samples.slice(Math.floor(n / 4), Math.max(Math.floor(n / 2), Math.floor(n / 4) + 1)).sort((a, b) => a - b);
  const level = q[Math.floor(q.length / 2)];
  const end = samples[n - 1];
  const growth = end / level - 1;
  const ok = growth <= 0.1;
  console.log(`${label}: levelled at ${mb(level)} MB, ended at ${mb(end)} MB (${(growth * 100).toFixed(1)}%): ${ok ? 'ok' : 'FAIL'}`);
  return ok;
}

async function eventSoak(ns) {
  const ct = await Conntrack.open({ netns: ns.path });
  const load = await Conntrack.open({ netns: ns.path });
  const stream = ct.events({ receiveBufferSize: 8 << 20 });
  let received = 0;
  stream.on('event', () => received++);
  let stop = false;
  const keys = Array.from({ length: 2000 }, (_, i) => ({ proto: 'udp', orig: { src: `10.5.${i >> 8}.${i & 255}`, dst: '10.6.0.1', sport: 1000, dport: 53 } }));
  const specs = keys.map((k) => ({ ...k, timeout: 600 }));
  const driver = (async () => {
    while (!stop) {
      await load.createMany(specs);
      await load.deleteMany(keys);
    }
  })();
  const samples = await sampled('events', async () => {
    await new Promise((r) => setTimeout(r, EVENT_SECONDS * 1000));
    stop = true;
    await driver;
  });
  console.log(`events: ${received} received, ${stream.lost} lost`);
  stream.close();
  await load.close();
  await ct.close();
  return samples;
}

async function cycleSoak(ns) {
  return sampled('cycles', async () => {
    for (let i = 0; i < CYCLES; i++) {
      const ct = await Conntrack.open({ netns: ns.path });
      await ct.list();
      await ct.close();
    }
  });
}

async function main() {
  const ns = await netns();
  // Warm-up, so one-time costs are not counted as growth: the first open() starts libuv's
  // thread pool (4 threads, for good) and loads the addon; the first write to stdout opens
  // a descriptor for good.
  console.log(`soak: events ${EVENT_SECONDS} s, ${CYCLES} open/close cycles, RSS every ${INTERVAL_MS / 1000} s`);
  {
    const ct = await Conntrack.open({ netns: ns.path });
    const s = ct.events();
    s.on('event', () => undefined);
    const key = { proto: 'udp', orig: { src: '10.4.0.1', dst: '10.4.0.2', sport: 1, dport: 2 } };
    await ct.createMany([{ ...key, timeout: 5 }]);
    await ct.deleteMany([key]);
    await new Promise((r) => setTimeout(r, 100));
    await ct.close();
  }
  let ok = true;
  try {
    for (const [label, run, skip] of [['events', eventSoak, EVENT_SECONDS <= 0], ['cycles', cycleSoak, CYCLES <= 0]]) {
      if (skip) continue;
      const startFds = fdTargets();
      const before = { fds: startFds.size, threads: threads() };
      console.log(`${label}: start fds=${before.fds} threads=${before.threads}`);
      const samples = await run(ns);
      await new Promise((r) => setTimeout(r, 200)); // reader and sender threads finish exiting
      const after = { fds: fds(), threads: threads() };
      console.log(`${label}: end fds=${after.fds} threads=${after.threads}`);
      if (after.fds !== before.fds || after.threads !== before.threads) {
        console.log(`${label}: FAIL: descriptors or threads changed`);
        for (const [fd, target] of fdTargets()) if (startFds.get(fd) !== target) console.log(`  new fd ${fd} -> ${target}`);
        ok = false;
      }
      if (!verdict(label, samples)) ok = false;
    }
  } finally {
    ns.close();
  }
  process.exitCode = ok ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
