'use strict';
/**
 * Shared helpers for the benchmarks in bench/: a throwaway network namespace, compiling
 * and running a C floor program, filling a table with real flows, and printing tables.
 * Plain CommonJS so every bench runs standalone with `node bench/x.bench.js`.
 */
const { execFileSync, spawn, spawnSync } = require('child_process');
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

/** A network namespace held open by `unshare -n sleep infinity`. */
class Netns {
  constructor(child) {
    this.child = child;
    this.pid = child.pid;
    this.path = `/proc/${child.pid}/ns/net`;
  }

  static async create() {
    const child = spawn('unshare', ['-n', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
    const own = fs.readlinkSync('/proc/self/ns/net');
    for (let i = 0; i < 1000; i++) {
      if (child.exitCode !== null) throw new Error('unshare -n failed: run as root or under `unshare -Urn`');
      let theirs = '';
      try {
        theirs = fs.readlinkSync(`/proc/${child.pid}/ns/net`);
      } catch {
        /* not yet */
      }
      if (theirs && theirs !== own) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const ns = new Netns(child);
    ns.run('ip', ['link', 'set', 'lo', 'up']);
    process.on('exit', () => ns.destroy());
    return ns;
  }

  /** Runs a command inside the namespace synchronously; returns stdout. */
  run(cmd, args, options = {}) {
    return execFileSync('nsenter', [`--net=${this.path}`, '--', cmd, ...args], {
      maxBuffer: 1 << 30,
      encoding: options.encoding ?? 'utf8',
      stdio: options.stdio,
      input: options.input,
    });
  }

  sh(script) {
    return this.run('sh', ['-c', script]);
  }

  /** Runs a command inside the namespace and returns its wall time in seconds. */
  time(cmd, args) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    const t = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`${cmd} exited with ${r.status}`);
    return t;
  }

  destroy() {
    if (this.child.exitCode === null && !this.child.killed) this.child.kill('SIGKILL');
  }
}

/**
 * Fills the namespace's table with `count` real IPv4 UDP flows: an nft rule that refers to
 * conntrack, a long UDP timeout so the entries outlive the run, and a C sender on loopback.
 * Returns the number of entries the kernel reports afterwards.
 */
function fillUdp(ns, count) {
  const sender = compileC('lib/fill_udp.c', 'fill_udp', []);
  ns.sh('sysctl -q -w net.netfilter.nf_conntrack_udp_timeout=3600 net.netfilter.nf_conntrack_udp_timeout_stream=3600');
  ns.run('nft', ['-f', '-'], {
    input:
      'table inet bench {\n' +
      '  chain out { type filter hook output priority 0; ct state new counter; }\n' +
      '  chain in { type filter hook input priority 0; meta l4proto udp drop; }\n' +
      '}\n',
  });
  ns.run(sender, [String(count)]);
  return Number(ns.run('cat', ['/proc/sys/net/netfilter/nf_conntrack_count']).trim());
}

/**
 * Starts sending `count` more UDP datagrams to new destinations (index `first` on) in the
 * background (fillUdp must have set up the namespace); resolves with the sent count.
 */
function sendUdp(ns, count, first) {
  const sender = compileC('lib/fill_udp.c', 'fill_udp', []);
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${ns.path}`, '--', sender, String(count), String(first)], { stdio: ['ignore', 'pipe', 'inherit'] });
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

module.exports = { compileC, Netns, fillUdp, sendUdp, withConntrackMax, since, rssMB, printTable, machine, OUT };
