/**
 * registerMetrics() in a user's own prom-client registry, next to the user's own metrics:
 * values follow the kernel as entries come and go, several namespaces share one registry
 * through their labels, close() takes everything away again, and bad options are refused
 * before anything is registered.
 */
import { spawn } from 'child_process';
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { Counter, Registry } from 'prom-client';
import { Conntrack, ConntrackError } from '../../../lib';
import { registerMetrics } from '../../../apps/prometheus';
import { Sandbox, sandbox } from '../../../apps/testing';
import { cliCount, cliCounts, parseExposition, valueOf } from './helpers';
import { sleep } from '../../helpers/wait';

const udp = (sport: number) => ({ proto: 'udp' as const, orig: { src: '10.3.0.1', dst: '10.3.0.2', sport, dport: 53 }, timeout: 600 });
const tcp = (sport: number, state: 'ESTABLISHED' | 'SYN_SENT') => ({ proto: 'tcp' as const, orig: { src: '10.3.0.1', dst: '10.3.0.2', sport, dport: 443 }, timeout: 600, state });

/** Scrapes until `done` holds for the parsed exposition (events arrive asynchronously). */
async function scrapeUntil(registry: Registry, done: (f: ReturnType<typeof parseExposition>) => boolean, ms = 10000): Promise<ReturnType<typeof parseExposition>> {
  const end = Date.now() + ms;
  for (;;) {
    const f = parseExposition(await registry.metrics());
    if (done(f) || Date.now() > end) return f;
    await sleep(20);
  }
}

function flowsByState(f: ReturnType<typeof parseExposition>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of f.get('conntrack_flows')?.samples ?? []) {
    const k = `${s.labels.proto}|${s.labels.state ?? ''}`;
    out[k] = (out[k] ?? 0) + s.value;
  }
  return out;
}

describe('registerMetrics in a user registry', () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function namespace(): Promise<{ ns: Sandbox; ct: Conntrack }> {
    // Every entry gets an event cache, also those made before registerMetrics subscribes:
    // with the default (2) that depends on whether any ctnetlink listener exists on the host
    // at that moment (the kernel tracks listeners globally), and without one a delete sends
    // no DESTROY event.
    const ns = await sandbox({ sysctls: { 'net.netfilter.nf_conntrack_events': 1 } });
    cleanup.push(() => ns.close());
    const ct = await Conntrack.open({ netns: ns.path });
    cleanup.push(() => ct.close());
    return { ns, ct };
  }

  test('beside the user\'s own metrics; follows creates and deletes; close() removes it', async () => {
    const { ns, ct } = await namespace();
    // Event caches for entries made before anyone listens: in the default mode (2) the
    // kernel gives an entry one only if some process on the host listens at that moment,
    // and without one the delete of udp(1) below would be silent.
    await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
    await ct.create(udp(1));
    await ct.create(tcp(2, 'ESTABLISHED'));

    const registry = new Registry();
    const mine = new Counter({ name: 'myapp_requests_total', help: 'Requests.', registers: [registry] });
    mine.inc(3);
    const metrics = registerMetrics(ct, { registry, labels: { host: 'h1' } });
    cleanup.push(() => metrics.close());

    let f = parseExposition(await registry.metrics());
    expect(valueOf(f, 'myapp_requests_total')).toBe(3);
    expect(valueOf(f, 'node_nf_conntrack_entries')).toBe(2);
    expect(f.get('node_nf_conntrack_entries')!.samples[0].labels).toEqual({ host: 'h1' });
    expect(flowsByState(f)).toEqual({ 'udp|': 1, 'tcp|ESTABLISHED': 1 });
    expect(valueOf(f, 'conntrack_up')).toBe(1);

    // Changes arrive through the mirror's events; the counts follow without a dump.
    await ct.create(tcp(3, 'SYN_SENT'));
    await ct.create(tcp(4, 'SYN_SENT'));
    await ct.create(udp(5));
    await ct.delete(udp(1));
    await metrics.mirror!.settle();
    const cli = Object.fromEntries(await cliCounts(ns));
    const same = (a: Record<string, number>, b: Record<string, number>): boolean => JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());
    f = await scrapeUntil(registry, (x) => same(flowsByState(x), cli) && valueOf(x, 'conntrack_events_total', { type: 'destroy' }) === 1);
    expect(flowsByState(f)).toEqual(cli);
    expect(valueOf(f, 'node_nf_conntrack_entries')).toBe(await cliCount(ns));
    expect(valueOf(f, 'conntrack_events_total', { type: 'new' })).toBe(3);
    expect(valueOf(f, 'conntrack_events_total', { type: 'destroy' })).toBe(1);
    expect(valueOf(f, 'conntrack_events_lost_total')).toBe(0);
    expect(valueOf(f, 'conntrack_mirror_events_lost_total')).toBe(0);
    expect(f.get('conntrack_events_total')!.type).toBe('counter');

    // The counts kept from events equal a recount from the table after a reconciling dump.
    await metrics.mirror!.refresh();
    expect(flowsByState(parseExposition(await registry.metrics()))).toEqual(cli);
    expect(valueOf(parseExposition(await registry.metrics()), 'conntrack_mirror_resyncs_total', { reason: 'refresh' })).toBe(1);

    metrics.close();
    const after = await registry.metrics();
    expect(after).toMatch(/^myapp_requests_total 3$/m);
    expect(after).not.toMatch(/conntrack/);
    expect(metrics.mirror!.listenerCount('add')).toBe(0);
  });

  test('after the kernel drops events the counts are recounted; received + lost equals the events produced', async () => {
    const { ns, ct } = await namespace();
    // A mirror with the smallest receive buffer loses events on a burst and resynchronises.
    const mirror = ct.mirror({ receiveBufferSize: 1, refreshInterval: 0 });
    cleanup.push(() => mirror.close());
    await mirror.ready;
    const registry = new Registry();
    const metrics = registerMetrics(ct, { registry, mirror });
    cleanup.push(() => metrics.close());
    const N = 3000;
    const specs = Array.from({ length: N }, (_, i) => (i % 3 === 0 ? udp(10000 + i) : tcp(10000 + i, i % 3 === 1 ? 'ESTABLISHED' : 'SYN_SENT')));
    const { ok } = await ct.createMany(specs);
    expect(ok).toBe(N);
    // (mirror.settle() is not used here: its barrier request can itself be lost on so small
    // a buffer.) Wait until the mirror holds every entry with no resync running.
    const total = (x: ReturnType<typeof parseExposition>): number => Object.values(flowsByState(x)).reduce((a, b) => a + b, 0);
    const f = await scrapeUntil(registry, (x) => !mirror.synchronizing && total(x) === N &&
      (valueOf(x, 'conntrack_events_total', { type: 'new' }) ?? 0) + (valueOf(x, 'conntrack_events_lost_total') ?? 0) >= N);
    const cli = Object.fromEntries(await cliCounts(ns));
    expect(mirror.lost).toBeGreaterThan(0);
    expect(valueOf(f, 'conntrack_mirror_events_lost_total')).toBe(mirror.lost);
    expect(valueOf(f, 'conntrack_mirror_resyncs_total', { reason: 'lost' })).toBe(mirror.resyncs);
    expect(mirror.resyncs).toBeGreaterThan(0);
    expect(flowsByState(f)).toEqual(cli);
    expect(valueOf(f, 'node_nf_conntrack_entries')).toBe(N);
    // Exact loss accounting on the counting socket: every NEW event was received or counted lost.
    expect((valueOf(f, 'conntrack_events_total', { type: 'new' }) ?? 0) + (valueOf(f, 'conntrack_events_lost_total') ?? 0)).toBe(N);
    expect(valueOf(f, 'conntrack_mirror_last_resync_duration_seconds', { reason: 'lost' })).toBeGreaterThanOrEqual(0);
  });

  test('several namespaces in one registry, told apart by a netns label', async () => {
    const a = await namespace();
    const b = await namespace();
    await a.ct.create(udp(1));
    for (let i = 0; i < 3; i++) await b.ct.create(udp(10 + i));
    const registry = new Registry();
    const ma = registerMetrics(a.ct, { registry, labels: { netns: 'a' }, events: false });
    cleanup.push(() => ma.close());
    const mb = registerMetrics(b.ct, { registry, labels: { netns: 'b' }, events: false });
    cleanup.push(() => mb.close());
    const f = parseExposition(await registry.metrics());
    expect(valueOf(f, 'node_nf_conntrack_entries', { netns: 'a' })).toBe(1);
    expect(valueOf(f, 'node_nf_conntrack_entries', { netns: 'b' })).toBe(3);
    expect(valueOf(f, 'conntrack_flows', { netns: 'b', proto: 'udp' })).toBe(3);
    expect(f.has('conntrack_events_total')).toBe(false);

    // The same labels twice, or other label names, are refused and change nothing.
    const before = await registry.metrics();
    expect(() => registerMetrics(b.ct, { registry, labels: { netns: 'a' } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.labels' }));
    expect(() => registerMetrics(b.ct, { registry, labels: { zone: 'x' } })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.labels' }));
    expect(await registry.metrics()).toBe(before);

    // Closing one handle leaves the other's series.
    ma.close();
    const g = parseExposition(await registry.metrics());
    expect(g.get('node_nf_conntrack_entries')!.samples).toEqual([{ labels: { netns: 'b' }, value: 3 }]);
  });

  test('a mirror passed in is used and stays open; bad options are refused with the field', async () => {
    const { ct } = await namespace();
    await ct.create(udp(1));
    const mirror = ct.mirror();
    cleanup.push(() => mirror.close());
    await mirror.ready;
    const registry = new Registry();
    const m = registerMetrics(ct, { registry, mirror, prefix: 'ct_', nodeMetrics: false });
    expect(m.mirror).toBe(mirror);
    const f = parseExposition(await registry.metrics());
    expect(valueOf(f, 'ct_flows', { proto: 'udp' })).toBe(1);
    expect(f.has('node_nf_conntrack_entries')).toBe(false);
    m.close();
    await ct.create(udp(2));
    await mirror.settle();
    expect(mirror.size).toBe(2); // still following

    const reg2 = new Registry();
    new Counter({ name: 'conntrack_up', help: 'taken', registers: [reg2] });
    const bad: [unknown, string][] = [
      [{ registry: {} }, 'options.registry'],
      [{ registry: reg2 }, 'options.registry'],
      [{ prefix: '9x' }, 'options.prefix'],
      [{ mirror: {} }, 'options.mirror'],
      [{ labels: { 'bad-name': 'x' } }, 'options.labels.bad-name'],
      [{ labels: { proto: 'x' } }, 'options.labels.proto'],
      [{ labels: { a: 1 } }, 'options.labels.a'],
      [{ events: 'yes' }, 'options.events'],
      [{ colour: 'red' }, 'options.colour'],
    ];
    for (const [options, field] of bad) {
      let caught: unknown;
      try {
        registerMetrics(ct, options as never);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(ConntrackError);
      expect({ field: (caught as ConntrackError).field, code: (caught as ConntrackError).code }).toEqual({ field, code: 'ERR_INVALID_ARGUMENT' });
    }
    expect(Object.keys(await reg2.getMetricsAsJSON())).toHaveLength(1);
    expect(() => registerMetrics({} as never)).toThrow(expect.objectContaining({ field: 'ct' }));
  });

  test('events are counted on the mirror\'s socket (no second one); with mirror: false on a stream of its own', async () => {
    const { ns, ct } = await namespace();
    await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
    const alone = ct.mirror();
    await alone.ready;
    const mirrorOnly = ct.children.size; // a mirror and its event stream
    alone.close();
    const registry = new Registry();
    const metrics = registerMetrics(ct, { registry });
    cleanup.push(() => metrics.close());
    await metrics.mirror!.ready;
    expect(ct.children.size).toBe(mirrorOnly); // no second event stream beside the mirror's
    for (let i = 0; i < 4; i++) await ct.create(udp(100 + i));
    await ct.update({ ...udp(100), mark: 3 });
    await ct.delete(udp(101));
    await metrics.mirror!.settle();
    let f = parseExposition(await registry.metrics());
    expect([0, 1, 2].map((k) => valueOf(f, 'conntrack_events_total', { type: ['new', 'update', 'destroy'][k] }))).toEqual([4, 1, 1]);
    expect(metrics.mirror!.stats.received).toEqual({ new: 4, update: 1, destroy: 1 });
    metrics.close();
    expect(ct.children.size).toBe(0);

    const reg2 = new Registry();
    const noFlows = registerMetrics(ct, { registry: reg2, mirror: false });
    cleanup.push(() => noFlows.close());
    expect(noFlows.mirror).toBeUndefined();
    expect(ct.children.size).toBe(1); // the counting stream
    await ct.create(udp(200));
    await ct.delete(udp(200));
    f = await scrapeUntil(reg2, (x) => valueOf(x, 'conntrack_events_total', { type: 'destroy' }) === 1);
    expect(valueOf(f, 'conntrack_events_total', { type: 'new' })).toBe(1);
    expect(valueOf(f, 'conntrack_events_total', { type: 'destroy' })).toBe(1);
    expect(valueOf(f, 'conntrack_events_lost_total')).toBe(0);
    expect(f.has('conntrack_flows')).toBe(false);
    noFlows.close();
    expect(ct.children.size).toBe(0);
  });

  test('bytes: a flow that ends moves from conntrack_flow_* to conntrack_finished_flow_*_total (no double count)', async () => {
    const { ns, ct } = await namespace();
    await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
    await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
    await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter");
    // One UDP flow from a fixed port to a port nobody listens on: `n` datagrams of 100 bytes each time.
    const send = (n: number): Promise<unknown> => ns.run('node', ['-e', `
      const u = require('dgram').createSocket('udp4');
      u.bind(40124, '127.0.0.1', async () => {
        for (let i = 0; i < ${n}; i++) await new Promise((r) => u.send(Buffer.alloc(100), 9998, '127.0.0.1', r));
        u.close();
      });`]);
    const key = { proto: 'udp' as const, orig: { src: '127.0.0.1', dst: '127.0.0.1', sport: 40124, dport: 9998 } };
    await send(3);
    const registry = new Registry();
    const metrics = registerMetrics(ct, { registry, events: false });
    cleanup.push(() => metrics.close());
    const live = { proto: 'udp', family: 'ipv4', direction: 'orig' };
    let f = parseExposition(await registry.metrics()); // the first scrape waits for the mirror's dump
    expect(valueOf(f, 'conntrack_flow_packets', live)).toBe(3);
    expect(valueOf(f, 'conntrack_flow_bytes', live)).toBe(3 * 128); // 100 bytes of data, 8 of UDP, 20 of IP
    await send(2);
    const final = (await ct.get(key)).counters!;
    expect(final.orig.packets).toBe(5n);
    await ct.delete(key);
    await metrics.mirror!.settle();
    f = parseExposition(await registry.metrics());
    // The ended flow's final counters (from its DESTROY event) are in the finished totals,
    // and what the mirror held for it (3 packets, from its dump) left the live gauge.
    expect(valueOf(f, 'conntrack_finished_flow_packets_total', live)).toBe(5);
    expect(valueOf(f, 'conntrack_finished_flow_bytes_total', live)).toBe(Number(final.orig.bytes));
    expect(valueOf(f, 'conntrack_flow_packets', live)).toBe(0);
    expect(valueOf(f, 'conntrack_flow_bytes', live)).toBe(0);
    // A reconciling dump agrees with what the events kept.
    await metrics.mirror!.refresh();
    f = parseExposition(await registry.metrics());
    expect(valueOf(f, 'conntrack_flow_packets', live) ?? 0).toBe(0); // the recount drops empty groups
    expect(valueOf(f, 'conntrack_finished_flow_packets_total', live)).toBe(5);
  });

  test('what registerMetrics opens does not keep the process alive', async () => {
    const root = path.join(__dirname, '../../..');
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'ct-prom-')), 'child.js');
    writeFileSync(file, `
      const { Conntrack } = require(${JSON.stringify(path.join(root, 'dist/lib'))});
      const { registerMetrics } = require(${JSON.stringify(path.join(root, 'dist/apps/prometheus'))});
      const { Registry } = require('prom-client');
      (async () => {
        const ct = await Conntrack.open();
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 100 });
        const registry = new Registry();
        registerMetrics(ct, { registry });
        const text = await registry.metrics();
        console.log(/^node_nf_conntrack_entries 1$/m.test(text) ? 'scraped' : text);
        // Neither closed: the mirror (and its refresh timer) must not hold the process.
      })().catch((e) => { console.error(e); process.exit(1); });`);
    const r = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }>((resolve) => {
      const env = { ...process.env, NODE_PATH: path.join(root, 'node_modules') };
      const child = spawn('unshare', ['-n', process.execPath, file], { stdio: ['ignore', 'pipe', 'pipe'], cwd: root, env });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, out });
      });
    });
    expect(r).toEqual({ code: 0, signal: null, out: 'scraped\n' });
  });
});
