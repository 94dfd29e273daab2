'use strict';
/**
 * `npm run demo`: makes a private network namespace (unshare -n, or unshare -Urn when not
 * root), loads an nft rule that refers to conntrack, makes real traffic on loopback (a TCP
 * connection, a UDP exchange, a ping), and prints the flows with Conntrack.list().
 */
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const TRAFFIC = `
const net = require('net'), dgram = require('dgram');
(async () => {
  const srv = net.createServer((s) => s.on('data', (d) => s.write('pong ' + d)));
  await new Promise((r) => srv.listen(8080, '127.0.0.1', r));
  const c = net.connect(8080, '127.0.0.1', () => c.write('ping'));
  await new Promise((r) => c.once('data', r));
  const u = dgram.createSocket('udp6'), v = dgram.createSocket('udp6');
  await new Promise((r) => u.bind(5353, '::1', r));
  u.on('message', (m, ri) => u.send('answer', ri.port, ri.address));
  await new Promise((r) => { v.on('message', r); v.send('query', 5353, '::1'); });
  u.close(); v.close();
  process.stdout.write('ready');
  setInterval(() => {}, 1000); // keep the TCP connection open (ESTABLISHED) until killed
})();`;

async function main() {
  const { Conntrack } = require(path.join(__dirname, '..', 'dist', 'lib'));
  if (process.getuid() !== 0) {
    // Not root: run the demo as root of a private user and network namespace instead.
    const r = require('child_process').spawnSync('unshare', ['-Urn', process.execPath, __filename], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  const holder = spawn('unshare', ['-n', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
  const nsPath = `/proc/${holder.pid}/ns/net`;
  const own = fs.readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 400; i++) {
    try {
      if (fs.readlinkSync(nsPath) !== own) break;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 5));
  }
  const enter = [`--net=${nsPath}`, '--'];
  const inNs = (cmd, args, opts = {}) => execFileSync('nsenter', [...enter, cmd, ...args], { encoding: 'utf8', ...opts });
  let traffic;
  try {
    inNs('ip', ['link', 'set', 'lo', 'up']);
    inNs('nft', ['-f', '-'], { input: 'table inet demo {\n chain out {\n type filter hook output priority 0;\n ct state new counter\n }\n}\n' });
    traffic = spawn('nsenter', [...enter, process.execPath, '-e', TRAFFIC], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      traffic.stdout.once('data', resolve);
      traffic.once('exit', (code) => reject(new Error(`traffic script exited (${code})`)));
    });
    inNs('ping', ['-c1', '-q', '127.0.0.1']);
    inNs('ping', ['-6', '-c1', '-q', '::1']);

    const ct = await Conntrack.open({ netns: nsPath });
    const flows = await ct.list();
    await ct.close();
    const rows = flows.map((f) => {
      const ep = (t, a, p) => (p === undefined ? a : a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
      const detail = f.orig.icmp ? `type=${f.orig.icmp.type} id=${f.orig.icmp.id}` : '';
      return [f.family, String(f.proto), f.state ?? '', ep(f.orig, f.orig.src, f.orig.sport), ep(f.orig, f.orig.dst, f.orig.dport), detail,
        f.status.filter((s) => s !== 'CONFIRMED').join(','), String(f.timeout), String(f.id)];
    });
    const header = ['family', 'proto', 'state', 'source', 'destination', 'icmp', 'status', 'timeout', 'id'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
    console.log(`${flows.length} flows in a private network namespace (Conntrack.list()):\n`);
    console.log(line(header));
    console.log(line(widths.map((w) => '-'.repeat(w))));
    for (const r of rows) console.log(line(r));
  } finally {
    traffic?.kill('SIGKILL');
    holder.kill('SIGKILL');
  }
}

main().catch((e) => {
  console.error(e.message ?? e);
  process.exit(1);
});
