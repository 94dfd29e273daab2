'use strict';
/**
 * Mirror memory: a namespace whose table is filled to nf_conntrack_max with real flows (IPv4
 * UDP on loopback), a mirror of it (default event buffer, no periodic refresh), then a
 * table-filling flood: FLOOD more datagrams to new destinations, so every new entry makes
 * the kernel evict an unreplied one (a NEW and a DESTROY event each) and the mirror's socket
 * overruns again and again, each time a resync (a full dump reconciled with the copy).
 * Prints the steady memory per entry, the peak RSS during the flood (sampled every 20 ms),
 * the CPU the mirror's process used meanwhile, the resyncs, and whether the mirror equals
 * the kernel's table at the end.
 * Usage: node --expose-gc bench/mirror.bench.js [flood=1000000]   (after `npm run build`)
 */
const fs = require('fs');
const { sandbox, fillUdp, sendUdp, since, printTable, machine } = require('./lib');

const FLOOD = Number(process.argv[2] ?? 1000000);
const MB = 1 << 20;

async function settledGc() {
  await new Promise((r) => setTimeout(r, 50));
  global.gc?.();
  global.gc?.();
}

async function main() {
  const max = Number(fs.readFileSync('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').trim());
  const ns = await sandbox();
  let t0 = process.hrtime.bigint();
  const filled = await fillUdp(ns, max);
  console.log(`${machine()}\nfilled ${filled} flows (nf_conntrack_max ${max}) in ${since(t0).toFixed(2)} s`);

  const ct = ns.ct;
  await settledGc();
  const before = process.memoryUsage();
  t0 = process.hrtime.bigint();
  const m = ct.mirror({ refreshInterval: 0 });
  await m.ready;
  const readySecs = since(t0);
  await settledGc();
  const steady = process.memoryUsage();
  const size0 = m.size;

  let peak = process.memoryUsage().rss;
  let peakHeap = 0;
  let peakBuffers = 0;
  const sampler = setInterval(() => {
    const u = process.memoryUsage();
    peak = Math.max(peak, u.rss);
    peakHeap = Math.max(peakHeap, u.heapTotal);
    peakBuffers = Math.max(peakBuffers, u.arrayBuffers);
  }, 20);
  let resyncs = 0;
  let worstResyncMs = 0;
  m.on('resync', (info) => {
    resyncs++;
    worstResyncMs = Math.max(worstResyncMs, info.durationMs);
  });
  t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const sent = await sendUdp(ns, FLOOD, max);
  const floodSecs = since(t0);
  await m.settle();
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const kernel = Number(await ns.sysctl('net.netfilter.nf_conntrack_count'));
  const size1 = m.size;
  const lost = m.lost;
  m.close();
  await ns.close();

  const perEntry = (a, b) => ((b - a) / size0).toFixed(0);
  printTable(`mirror of ${size0} entries, then a flood of ${sent} new flows in ${floodSecs.toFixed(2)} s`,
    ['measure', 'value'], [
      ['initial dump + apply (s)', readySecs.toFixed(2)],
      ['heap per entry (B, after GC)', perEntry(before.heapUsed, steady.heapUsed)],
      ['RSS per entry (B, after GC)', perEntry(before.rss, steady.rss)],
      ['RSS before the mirror (MB)', (before.rss / MB).toFixed(0)],
      ['peak RSS during the flood (MB)', (peak / MB).toFixed(0)],
      ['  of which JS heap (peak heapTotal, MB)', (peakHeap / MB).toFixed(0)],
      ['  of which ArrayBuffers (peak, MB)', (peakBuffers / MB).toFixed(0)],
      ['CPU of this process, flood until settled (s)', ((cpu.user + cpu.system) / 1e6).toFixed(2)],
      ['resyncs during the flood', resyncs],
      ['longest resync (ms)', worstResyncMs],
      ['events lost (kernel drop counter)', lost],
      ['mirror size / kernel count at the end', `${size1} / ${kernel}`],
    ]);
  const ok = peak < 400 * MB && Number(perEntry(before.rss, steady.rss)) <= 1024 && size1 === kernel;
  console.log(`targets (peak RSS < 400 MB, <= 1 KB per entry, equal to the kernel at the end): ${ok ? 'met' : 'NOT met'}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
