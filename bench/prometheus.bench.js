'use strict';
/**
 * Prometheus scrape latency at N flows (default 200,000): entries made with createMany in
 * a namespace (TCP in three states and UDP), registerMetrics() on a fresh registry, then
 *   - registry.metrics() (text), repeated: what a scrape costs inside an agent;
 *   - GET /metrics over HTTP from startExporter() (text and OpenMetrics);
 *   - for comparison, counting the mirror's table per (family, proto, state) on each
 *     scrape instead of keeping the counts from the mirror's events.
 * Prints median / p95 / max in ms. Usage: node bench/prometheus.bench.js [flows=200000] [scrapes=50]
 */
const { sandbox, since, printTable, machine, rssMB } = require('./lib');

const N = Number(process.argv[2] ?? 200000);
const SCRAPES = Number(process.argv[3] ?? 50);
const STATES = ['ESTABLISHED', 'SYN_SENT', 'TIME_WAIT'];

function spec(i) {
  const orig = { src: '10.0.0.1', dst: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, sport: 1000 + (i % 50000), dport: 80 };
  if (i % 4 === 3) return { proto: 'udp', orig, timeout: 3600 };
  return { proto: 'tcp', orig, timeout: 3600, state: STATES[i % 4] };
}

const ms = (s) => (s * 1000).toFixed(2);
function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return [ms(s[Math.floor(s.length / 2)]), ms(s[Math.min(s.length - 1, Math.floor(s.length * 0.95))]), ms(s[s.length - 1])];
}

async function timeIt(n, fn) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out.push(since(t0));
  }
  return out;
}

async function main() {
  const { registerMetrics, startExporter } = require('../dist/apps/prometheus');
  const { Registry } = require('prom-client');
  const ns = await sandbox();
  await ns.sh(`sysctl -q -w net.netfilter.nf_conntrack_max=${Math.max(262144, N * 2)} 2>/dev/null || true`);
  const ct = ns.ct;
  console.log(`${machine()}\n${N} flows, ${SCRAPES} scrapes per method`);

  let t0 = process.hrtime.bigint();
  const { ok, errors } = await ct.createMany(Array.from({ length: N }, (_, i) => spec(i)));
  const created = since(t0);
  if (ok !== N) throw new Error(`createMany: ${ok} ok, ${errors.length} refused (${errors[0]?.error?.message})`);
  const count = Number((await ns.run('conntrack', ['-C'])).stdout.trim());
  if (count !== N) throw new Error(`conntrack -C says ${count}, expected ${N}`);
  console.log(`created ${N} entries in ${created.toFixed(2)} s`);

  global.gc?.();
  const rss0 = rssMB();
  // registerMetrics() unrefs the mirror it makes (an agent may exit while it follows the
  // table), so nothing else would keep this process alive while the first scrape waits.
  const keepAlive = setInterval(() => undefined, 1000);
  const registry = new Registry();
  t0 = process.hrtime.bigint();
  const metrics = registerMetrics(ct, { registry });
  const first = await registry.metrics();
  const firstScrape = since(t0);
  const sum = [...first.matchAll(/^conntrack_flows\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
  if (sum !== N) throw new Error(`conntrack_flows sums to ${sum}, expected ${N}`);
  global.gc?.();
  const rss1 = rssMB();

  const scrape = await timeIt(SCRAPES, () => registry.metrics());

  // The alternative: walk the table on each scrape.
  const mirror = metrics.mirror;
  const walk = await timeIt(SCRAPES, async () => {
    const groups = new Map();
    for (const f of mirror.values()) {
      const k = `${f.family}|${f.proto}|${f.state ?? ''}`;
      groups.set(k, (groups.get(k) ?? 0) + 1);
    }
    return groups;
  });

  const exporter = await startExporter({ host: '127.0.0.1', port: 0, netns: [ns.path] });
  await (await fetch(exporter.url)).text(); // the exporter's own mirror dumps on the first scrape
  const httpText = await timeIt(SCRAPES, async () => (await fetch(exporter.url)).text());
  const httpOm = await timeIt(SCRAPES, async () => (await fetch(exporter.url, { headers: { accept: 'application/openmetrics-text; version=1.0.0' } })).text());
  await exporter.close();

  printTable(`Scrape latency at ${N} flows (ms)`, ['method', 'median', 'p95', 'max'], [
    ['registry.metrics() (registerMetrics)', ...summary(scrape)],
    ['GET /metrics, Prometheus text (exporter)', ...summary(httpText)],
    ['GET /metrics, OpenMetrics (exporter)', ...summary(httpOm)],
    ['walk the mirror per scrape (counting only)', ...summary(walk)],
  ]);
  console.log(`\nfirst scrape (waits for the mirror's initial dump): ${ms(firstScrape)} ms; mirror + collectors RSS: +${(rss1 - rss0).toFixed(0)} MB`);
  console.log(`exposition: ${first.length} bytes, ${first.split('\n').filter((l) => l && !l.startsWith('#')).length} samples`);

  metrics.close();
  clearInterval(keepAlive);
  await ns.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
