'use strict';
/**
 * Events benchmark: drain rate of a full event queue. Three listeners subscribe to
 * NFNLGRP_CONNTRACK_NEW in one namespace, each with a large forced receive buffer, and
 * none reads while the table is filled with N real flows (UDP on loopback, tracked by an
 * nft ct rule), so each socket holds the same N queued events. Then each drains in turn:
 *   - the floor: bench/c/events_floor.c, a minimal libmnl listener (parses attributes);
 *   - ct.events() consumed with for await (one event at a time, reading a few fields);
 *   - ct.events() consumed with nextBatch() (all queued events per call).
 * Prints events/s, CPU time per event (user+sys) and the ratio to the floor's rate.
 * Then a sustained flood: FLOOD new flows sent as fast as one C sender can (in this run's
 * namespace), heard at the same time by ct.events() (for await) and by the C listener, each
 * with the same receive buffer (the default one, then 4 MB): events received and lost (the
 * socket's drop counter) and CPU per event of each listener over the whole flood
 * (process.cpuUsage() here, getrusage() in the C listener).
 * The drain part needs real root (a forced 256 MB buffer); in a user namespace it is skipped
 * and the flood runs with the buffers the namespace allows.
 * Usage: node bench/events.bench.js [events=100000] [flood=200000]   (after `npm run build`)
 */
const { sandbox, compileC, fillUdp, sendUdp, since, printTable, machine } = require('./lib');

const N = Number(process.argv[2] ?? 100000);
const FLOOD = Number(process.argv[3] ?? 200000);
const RCVBUF = 256 << 20; // forced: room for N queued events (about 1.3 KB each)

function touch(ev) {
  const f = ev.flow;
  return f.id ^ f.orig.src.length ^ (f.orig.sport ?? 0) ^ (f.orig.dport ?? 0) ^ ev.type.length;
}

async function drain(stream, mode) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let n = 0;
  let h = 0;
  stream.resume();
  if (mode === 'iterate') {
    for await (const ev of stream) {
      h ^= touch(ev);
      if (++n >= N) break;
    }
  } else {
    while (n < N) {
      const batch = await stream.nextBatch();
      for (let i = 0; i < batch.length; i++) h ^= touch(batch[i]);
      n += batch.length;
    }
  }
  const secs = since(t0);
  const cpu = process.cpuUsage(c0);
  if (h === 0.5) console.log(h);
  return { n, secs, cpu: (cpu.user + cpu.system) / 1e6, lost: stream.lost };
}

/** Starts the C listener in flood mode (reads until told to stop); resolves once it listens. */
async function startFloor(floorBin, ns, rcvbuf) {
  const child = ns.spawn(floorBin, ['0', String(rcvbuf)], { stdio: ['pipe', 'pipe', 'inherit'], ref: true });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 5));
  child.stdin.write('go\n');
  return {
    async stop() {
      const done = new Promise((resolve) => child.on('exit', resolve));
      child.stdin.end('stop\n');
      await done;
      const [events, , cpu, drops] = out.split('\n')[1].trim().split(' ').map(Number);
      return { events, cpu, drops };
    },
  };
}

/** One sustained flood heard by ct.events() and the C listener, both with `rcvbuf` (0: default). */
async function flood(ct, ns, floorBin, rcvbuf, first) {
  const stream = ct.events({ types: ['new'], receiveBufferSize: rcvbuf || undefined });
  const floor = await startFloor(floorBin, ns, rcvbuf);
  let n = 0;
  let h = 0;
  const c0 = process.cpuUsage();
  const reading = (async () => {
    for await (const ev of stream) {
      h ^= touch(ev);
      n++;
    }
  })();
  const t0 = process.hrtime.bigint();
  const sent = await sendUdp(ns, FLOOD, first);
  const secs = since(t0);
  await stream.barrier(); // everything the kernel queued for the stream has been read
  while (stream.queued > 0) await new Promise((r) => setImmediate(r)); // and consumed by the loop
  const cpu = process.cpuUsage(c0);
  const lost = stream.lost;
  const granted = stream.receiveBufferSize;
  stream.close();
  await reading;
  const c = await floor.stop();
  if (h === 0.5) console.log(h);
  return { sent, secs, granted, js: { n, lost, cpu: (cpu.user + cpu.system) / 1e6 }, c };
}

async function floodRuns(ct, ns, floorBin) {
  const rows = [];
  const met = [];
  let first = 10_000_000; // destinations not used by the drain part
  for (const rcvbuf of [0, 4 << 20]) {
    await ct.flush();
    const r = await flood(ct, ns, floorBin, rcvbuf, first);
    first += FLOOD;
    const us = (cpu, k) => (k ? ((cpu / k) * 1e6).toFixed(2) : '-');
    const label = `${rcvbuf ? '4 MB' : 'default'} (${(r.granted / 1024).toFixed(0)} KB granted)`;
    rows.push([label, Math.round(r.sent / r.secs).toLocaleString('en-US'), 'C libmnl listener', r.c.events, r.c.drops, us(r.c.cpu, r.c.events), '1.00']);
    const cpuRatio = r.c.events && r.js.n ? (r.js.cpu / r.js.n) / (r.c.cpu / r.c.events) : Infinity;
    rows.push(['', '', 'ct.events(), for await', r.js.n, r.js.lost, us(r.js.cpu, r.js.n), cpuRatio.toFixed(2)]);
    met.push(`${rcvbuf ? '4 MB' : 'default'}: lost ${r.js.lost <= r.c.drops ? 'met' : 'NOT met'}, CPU ${cpuRatio <= 2 ? 'met' : 'NOT met'}`);
  }
  printTable(`sustained flood of ${FLOOD} new flows, both listeners at once (targets: lost <= the C listener's, CPU per event <= 2x)`,
    ['buffer', 'flows/s sent', 'listener', 'events', 'lost', 'CPU us/event', 'CPU vs C'], rows);
  console.log(`targets: ${met.join('; ')}`);
}

async function main() {
  const floorBin = compileC('c/events_floor.c', 'events_floor');
  const ns = await sandbox();
  const ct = ns.ct;
  console.log(machine());
  const a = ct.events({ types: ['new'], receiveBufferSize: RCVBUF }).pause();
  const b = ct.events({ types: ['new'], receiveBufferSize: RCVBUF }).pause();
  if (!a.receiveBufferForced) {
    console.log(`drain of ${N} queued events: skipped (SO_RCVBUFFORCE refused, so ${N} events cannot be queued: run as real root for it)`);
    a.close();
    b.close();
    await fillUdp(ns, 1); // the namespace's tracking rule and timeouts, which the flood relies on
    await floodRuns(ct, ns, floorBin);
    await ns.close();
    return;
  }

  // Warm-up (JIT), before the floor subscribes: 20,000 real UDP flows of the same kind as
  // the measured ones, each stream draining their NEW events the way it is measured below
  // (next() one by one, nextBatch()), then the entries are flushed (DESTROY events unheard).
  const WARM = 20000;
  await fillUdp(ns, WARM);
  for (const [s, mode] of [[a, 'iterate'], [b, 'batch']]) {
    let n = 0;
    s.resume();
    if (mode === 'iterate') {
      for (; n < WARM; n++) touch((await s.next()).value);
    } else {
      while (n < WARM) n += (await s.nextBatch()).length;
    }
    s.pause();
  }
  await ct.flush();

  const floor = ns.spawn(floorBin, [String(N), String(RCVBUF)], { stdio: ['pipe', 'pipe', 'inherit'], ref: true });
  let out = '';
  floor.stdout.on('data', (d) => (out += d));
  while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 5));

  const t0 = process.hrtime.bigint();
  const count = await fillUdp(ns, N);
  console.log(`queued ${count} NEW events (real UDP flows) in ${since(t0).toFixed(2)} s; kernel buffer ${(a.kernelQueuedBytes / (1 << 20)).toFixed(1)} MB per socket`);
  if (count < N) throw new Error(`only ${count} of ${N} flows were created (nf_conntrack_max?)`);

  const done = new Promise((resolve) => floor.on('exit', resolve));
  floor.stdin.write('go\n');
  await done;
  const [fn, fsecs, fcpu, fdrops] = out.split('\n')[1].trim().split(' ').map(Number);

  const it = await drain(a, 'iterate');
  const bt = await drain(b, 'batch');
  a.close();
  b.close();

  const rate = (n, s) => Math.round(n / s);
  const floorRate = rate(fn, fsecs);
  const row = (name, n, secs, cpu, lost) => [
    name, n, secs.toFixed(3), rate(n, secs).toLocaleString('en-US'), ((cpu / n) * 1e9).toFixed(0),
    (rate(n, secs) / floorRate).toFixed(2), lost,
  ];
  printTable(`drain of ${N} queued NEW events (ratio = rate / floor rate; >= 0.9 is the target)`,
    ['listener', 'events', 'seconds', 'events/s', 'CPU ns/event', 'ratio', 'lost'], [
      row('C libmnl floor (events_floor.c)', fn, fsecs, fcpu, fdrops),
      row('ct.events(), for await', it.n, it.secs, it.cpu, it.lost),
      row('ct.events(), nextBatch()', bt.n, bt.secs, bt.cpu, bt.lost),
    ]);
  const ok = rate(it.n, it.secs) / floorRate >= 0.9 && it.lost === 0 && bt.lost === 0;
  console.log(`target (for await >= 0.9x the C listener, nothing lost): ${ok ? 'met' : 'NOT met'}`);
  await floodRuns(ct, ns, floorBin);
  await ns.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
