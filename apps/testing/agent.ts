/**
 * The traffic agent: a small Node program run inside a sandbox's namespace (through
 * nsenter) that makes real TCP and UDP traffic on request over the IPC channel. It is kept
 * as source text and started with `node -e`, so it works the same from dist/ and from the
 * TypeScript sources under ts-jest.
 *
 * Requests: { id, op, ... }; replies: { id, ok: true, result } or { id, ok: false, error, code }.
 */
export const AGENT_SOURCE = String.raw`
'use strict';
const net = require('net');
const dgram = require('dgram');
const handles = new Map();
let nextHandle = 1;
const keep = (h) => { const id = nextHandle++; handles.set(id, h); return id; };
const fam = (host) => (host.includes(':') ? 6 : 4);
const listen = (host, port) => new Promise((resolve, reject) => {
  const conns = new Set();
  const srv = net.createServer((c) => {
    conns.add(c);
    c.on('error', () => {});
    c.on('close', () => conns.delete(c));
    c.on('data', (d) => c.write(d));
    c.on('end', () => c.end());
  });
  srv.once('error', reject);
  srv.listen({ host, port, exclusive: true }, () => resolve({ srv, conns, close: () => { for (const c of conns) c.destroy(); srv.close(); } }));
});
const connect = (host, port, timeout, localAddress) => new Promise((resolve) => {
  const started = Date.now();
  const c = net.connect({ host, port, localAddress, family: fam(host) });
  const timer = setTimeout(() => { c.destroy(); resolve({ ok: false, timedOut: true, ms: Date.now() - started }); }, timeout);
  c.once('connect', () => { clearTimeout(timer); resolve({ ok: true, socket: c, ms: Date.now() - started }); });
  c.once('error', (e) => { clearTimeout(timer); resolve({ ok: false, timedOut: false, error: e.code || e.message, ms: Date.now() - started }); });
});
const tupleOf = (s) => ({ src: s.localAddress, sport: s.localPort, dst: s.remoteAddress, dport: s.remotePort });
const ops = {
  async listen({ host, port }) {
    const l = await listen(host, port);
    return { handle: keep(l), host, port: l.srv.address().port };
  },
  async connect({ host, port, timeout, hold }) {
    const r = await connect(host, port, timeout);
    if (!r.ok) return { ok: false, timedOut: r.timedOut, error: r.error, ms: r.ms };
    const t = tupleOf(r.socket);
    r.socket.on('error', () => {});
    if (hold) return { ok: true, ms: r.ms, ...t, handle: keep({ close: () => r.socket.destroy() }) };
    r.socket.destroy();
    return { ok: true, ms: r.ms, ...t };
  },
  async tcp({ host, port, listenHost, listenPort, payload, hold, timeout }) {
    const l = await listen(listenHost, listenPort);
    const target = port || l.srv.address().port;
    const r = await connect(host, target, timeout);
    if (!r.ok) { l.close(); throw Object.assign(new Error('connect to ' + host + ':' + target + ' failed: ' + (r.timedOut ? 'timed out' : r.error)), { code: r.error || 'ETIMEDOUT' }); }
    const s = r.socket;
    s.on('error', () => {});
    const t = tupleOf(s);
    await new Promise((resolve) => { let got = 0; s.on('data', (d) => { got += d.length; if (got >= payload.length) resolve(); }); s.write(payload); });
    if (hold) return { ...t, handle: keep({ close: () => { s.destroy(); l.close(); } }) };
    await new Promise((resolve) => { s.once('close', resolve); s.end(); s.resume(); });
    l.close();
    return t;
  },
  async udp({ host, port, listenHost, listenPort, payload, reply }) {
    const type = fam(listenHost) === 6 ? 'udp6' : 'udp4';
    const server = dgram.createSocket(type);
    await new Promise((resolve, reject) => { server.once('error', reject); server.bind(listenPort, listenHost, resolve); });
    const client = dgram.createSocket(fam(host) === 6 ? 'udp6' : 'udp4');
    const target = port || server.address().port;
    const answered = new Promise((resolve) => {
      server.on('message', (m, ri) => { if (reply) server.send(m, ri.port, ri.address); else resolve(); });
      client.on('message', () => resolve());
    });
    // A connected socket learns its source address from the route, as the kernel's tuple has it.
    await new Promise((resolve) => client.connect(target, host, resolve));
    await new Promise((resolve, reject) => client.send(payload, (e) => (e ? reject(e) : resolve())));
    await answered;
    const t = { src: client.address().address, sport: client.address().port, dst: host, dport: target };
    client.close();
    server.close();
    return t;
  },
  async ftp({ host, port, hold }) {
    // An FTP control connection: the server greets, the client asks for passive mode and
    // the server answers with a data port, which the kernel's ftp helper reads.
    const data = await listen(host, 0);
    const dataPort = data.srv.address().port;
    const ctrl = net.createServer((c) => {
      c.on('error', () => {});
      c.write('220 sandbox FTP\r\n');
      c.on('data', (d) => {
        const line = String(d);
        if (/^PASV/i.test(line)) c.write('227 Entering Passive Mode (' + host.split('.').join(',') + ',' + (dataPort >> 8) + ',' + (dataPort & 255) + ').\r\n');
        else if (/^QUIT/i.test(line)) c.end('221 bye\r\n');
        else c.write('200 ok\r\n');
      });
    });
    await new Promise((resolve, reject) => { ctrl.once('error', reject); ctrl.listen(port, host, resolve); });
    const r = await connect(host, port, 3000);
    if (!r.ok) throw new Error('ftp connect failed: ' + (r.error || 'timed out'));
    const s = r.socket;
    s.on('error', () => {});
    const lines = [];
    const next = () => new Promise((resolve) => s.once('data', (d) => { lines.push(String(d).trim()); resolve(); }));
    await next();
    s.write('PASV\r\n');
    await next();
    const t = { ...tupleOf(s), dataPort, lines };
    const close = () => { s.destroy(); ctrl.close(); data.close(); };
    if (hold) return { ...t, handle: keep({ close }) };
    close();
    return t;
  },
  async close({ handle }) {
    const h = handles.get(handle);
    if (h) { handles.delete(handle); h.close(); }
    return {};
  },
};
process.on('message', async (m) => {
  try {
    const result = await ops[m.op](m);
    process.send({ id: m.id, ok: true, result });
  } catch (e) {
    process.send({ id: m.id, ok: false, error: e.message, code: e.code });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
`;
