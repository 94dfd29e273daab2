'use strict';
/**
 * Shared helpers for the benchmarks in bench/: a throwaway network namespace (a sandbox), compiling
 * and running a C floor program, filling a table with real flows, and printing tables.
 * Plain CommonJS so every bench runs standalone with `node bench/x.bench.js`.
 */
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const OUT = path.join(__dirname, '..', 'out');

/** Compiles bench C sources with `cc -O2 ... -lmnl`; returns the binary path. */
function compileC(sources, name, libs = ['-lmnl']) {
  fs.mkdirSync(OUT, { recursive: true });
  const out = path.join(OUT, name);
  const srcs = (Array.isArray(sources) ? sources : [sources]).map((s) => path.resolve(__dirname, '..', s));
  execFileSync('cc', ['-O2', '-Wall', '-o', out, ...srcs, ...libs], { stdio: 'inherit' });
  return out;
}

/**
 * A throwaway network namespace: conntrack/testing's sandbox() from the build (dist/), so
 * the benches use the same namespaces, commands and cleanup as the package's own tests.
 */
function sandbox(options) {
  return require('../../dist/apps/testing').sandbox(options);
}

/** Runs a command inside the sandbox and returns its wall time in seconds. */
async function timed(sb, cmd, args) {
  const t0 = process.hrtime.bigint();
  await sb.run(cmd, args);
  return since(t0);
}

/**
 * Fills the namespace's table with `count` real IPv4 UDP flows: an nft rule that refers to
 * conntrack, a long UDP timeout so the entries outlive the run, and a C sender on loopback.
 * Returns the number of entries the kernel reports afterwards.
 */
async function fillUdp(sb, count) {
  const sender = compileC('lib/fill_udp.c', 'fill_udp', []);
  await sb.sysctls({ 'net.netfilter.nf_conntrack_udp_timeout': 3600, 'net.netfilter.nf_conntrack_udp_timeout_stream': 3600 });
  await sb.nft(
    'table inet bench {\n' +
      '  chain out { type filter hook output priority 0; ct state new counter; }\n' +
      '  chain in { type filter hook input priority 0; meta l4proto udp drop; }\n' +
      '}\n',
  );
  await sb.run(sender, [String(count)]);
  return Number(await sb.sysctl('net.netfilter.nf_conntrack_count'));
}

/**
 * Starts sending `count` more UDP datagrams to new destinations (index `first` on) in the
 * background (fillUdp must have set up the namespace); resolves with the sent count.
 */
function sendUdp(sb, count, first) {
  const sender = compileC('lib/fill_udp.c', 'fill_udp', []);
  return new Promise((resolve, reject) => {
    const child = sb.spawn(sender, [String(count), String(first)], { stdio: ['ignore', 'pipe', 'inherit'], ref: true });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`fill_udp exited with ${code}`))));
  });
}

/**
 * Runs fn with net.netfilter.nf_conntrack_max raised to at least `max` (host-wide: only real
 * root in the initial namespace may write it), restoring the old value afterwards. Returns
 * undefined without running fn when the value cannot be raised (inside a user namespace).
 */
async function withConntrackMax(max, fn) {
  const file = '/proc/sys/net/netfilter/nf_conntrack_max';
  const old = Number(fs.readFileSync(file, 'utf8').trim());
  if (old >= max) return fn();
  try {
    fs.writeFileSync(file, String(max));
  } catch (err) {
    return { skipped: `nf_conntrack_max is ${old} and cannot be raised here (${err.code}): run as real root for ${max} flows` };
  }
  try {
    return await fn();
  } finally {
    fs.writeFileSync(file, String(old));
  }
}

/** Seconds since t0 (a hrtime bigint). */
function since(t0) {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function rssMB() {
  return process.memoryUsage().rss / (1 << 20);
}

/** Prints rows (arrays of cells) as an aligned text table with a header row. */
function printTable(title, header, rows) {
  const all = [header, ...rows].map((r) => r.map(String));
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(all[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of all.slice(1)) console.log(line(r));
}

function machine() {
  return `${os.cpus().length} cpus (${os.cpus()[0].model.trim()}), Linux ${os.release()}, node ${process.version}`;
}

module.exports = { compileC, sandbox, timed, fillUdp, sendUdp, withConntrackMax, since, rssMB, printTable, machine, OUT };
