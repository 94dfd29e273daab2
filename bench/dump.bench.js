'use strict';
/**
 * Dump benchmark: a namespace filled with 200,000 real flows (IPv4 UDP on loopback, tracked
 * through an nft ct rule), then, in one run and interleaved round by round:
 *   - the floor: bench/c/dump_floor.c, a minimal libmnl dump that only counts messages;
 *   - list() plus a pass that reads every flow's fields;
 *   - a streaming dump() (for await, counting), with its RSS growth;
 *   - `conntrack -L > /dev/null`.
 * Prints the best and median time of each, the rate as a ratio to the floor's, and RSS.
 * Usage: node bench/dump.bench.js [flows=200000] [rounds=5]   (after `npm run build`)
 */
const { Netns, compileC, fillUdp, since, rssMB, printTable, machine } = require('./lib');

const FLOWS = Number(process.argv[2] ?? 200000);
const ROUNDS = Number(process.argv[3] ?? 5);

/** Reads every field a consumer would, so lazy work cannot hide. */
function touch(f) {
  let h = f.id ^ f.timeout ^ f.mark ^ f.zone ^ f.use ^ f.statusBits ^ f.status.length;
  h ^= f.orig.src.length ^ f.orig.dst.length ^ (f.orig.sport ?? 0) ^ (f.orig.dport ?? 0);
  h ^= f.reply.src.length ^ f.reply.dst.length ^ (f.reply.sport ?? 0) ^ (f.reply.dport ?? 0);
  h ^= f.family.length ^ (typeof f.proto === 'string' ? f.proto.length : f.proto);
  if (f.state) h ^= f.state.length;
  if (f.counters) h ^= Number(f.counters.orig.packets & 0xffn);
  return h;
}

/** One streaming dump: time, count, and RSS growth (after a full GC when exposed). */
async function streamOnce(ct) {
  global.gc?.();
  const before = process.memoryUsage().rss;
  let peak = before;
  const t = process.hrtime.bigint();
  let count = 0;
  let h = 0;
  for await (const f of ct.dump()) {
    h ^= touch(f);
    if ((++count & 8191) === 0) peak = Math.max(peak, process.memoryUsage().rss);
  }
  const secs = since(t);
  peak = Math.max(peak, process.memoryUsage().rss);
  return { secs, count, h, rss: (peak - before) / (1 << 20) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const { Conntrack } = require('../dist/lib');
  const floorBin = compileC('c/dump_floor.c', 'dump_floor');
  const ns = await Netns.create();
  const t0 = process.hrtime.bigint();
  const count = fillUdp(ns, FLOWS);
  console.log(`${machine()}\nfilled ${count} flows in ${since(t0).toFixed(2)} s`);
  if (count < FLOWS * 0.99) throw new Error(`only ${count} of ${FLOWS} flows were created (nf_conntrack_max?)`);

  const ct = await Conntrack.open({ netns: ns.path });
  // First, a streaming dump in a fresh process (nothing allocated yet): its RSS growth is
  // the honest one; later rounds run in a heap that list() already grew.
  const cold = await streamOnce(ct);
  const times = { floor: [], list: [], dump: [], cli: [] };
  let dumpRss = 0;
  let seen = { list: 0, dump: 0, floor: 0 };
  for (let r = 0; r < ROUNDS; r++) {
    const [n, secs] = ns.run(floorBin, ['1']).trim().split(' ');
    seen.floor = Number(n);
    times.floor.push(Number(secs));

    let t = process.hrtime.bigint();
    const flows = await ct.list();
    let h = 0;
    for (const f of flows) h ^= touch(f);
    times.list.push(since(t));
    seen.list = flows.length;

    flows.length = 0; // drop list()'s result before measuring the streaming dump
    const d = await streamOnce(ct);
    times.dump.push(d.secs);
    dumpRss = Math.max(dumpRss, d.rss);
    seen.dump = d.count;
    h ^= d.h;
    if (h === 0.5) console.log(h); // keep h alive

    times.cli.push(ns.time('sh', ['-c', 'conntrack -L >/dev/null 2>&1']));
    global.gc?.();
  }
  await ct.close();
  ns.destroy();

  const best = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.min(...v)]));
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const row = (name, key, n, extra = '') => [
    name, n, best[key].toFixed(3), med[key].toFixed(3), Math.round(n / best[key]).toLocaleString('en-US'),
    (best.floor / best[key]).toFixed(2), (med.floor / med[key]).toFixed(2), extra,
  ];
  printTable(`dump of ${count} flows, ${ROUNDS} interleaved rounds (ratio = rate / floor rate; >= 0.75 is the target)`,
    ['method', 'flows', 'best s', 'median s', 'flows/s (best)', 'ratio best', 'ratio median', 'notes'], [
      row('C libmnl floor (dump_floor.c)', 'floor', seen.floor),
      row('list() + read every field', 'list', seen.list),
      row('dump() streaming, for await', 'dump', seen.dump, `RSS +${cold.rss.toFixed(1)} MB first run, +${dumpRss.toFixed(1)} MB later${global.gc ? '' : ' (no --expose-gc)'}`),
      row('conntrack -L > /dev/null', 'cli', seen.floor),
    ]);
  const ok = best.floor / best.list >= 0.75 && best.floor / best.dump >= 0.75 && cold.rss < 64 && dumpRss < 64;
  console.log(`targets (list and dump >= 0.75x floor rate, dump RSS growth < 64 MB): ${ok ? 'met' : 'NOT met'}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
