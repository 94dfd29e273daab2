import { pipeline, Writable } from 'stream';
import { promisify } from 'util';
import { Conntrack, ConntrackError, FlowEvent, FlowEventStream } from '../../../lib';
import { withSandbox, Sandbox } from '../../../apps/testing';

const pipelineP = promisify(pipeline);

/** Collects events from a stream until `done(list)` is true (the caller generates them). */
function collect(stream: FlowEventStream, done: (evs: FlowEvent[]) => boolean): Promise<FlowEvent[]> {
  return new Promise((resolve, reject) => {
    const evs: FlowEvent[] = [];
    const onEvent = (ev: FlowEvent) => {
      evs.push(ev);
      if (done(evs)) {
        stream.off('event', onEvent);
        resolve(evs);
      }
    };
    stream.on('event', onEvent);
    stream.once('error', reject);
    // Events the kernel dropped never come: fail with the count instead of waiting forever.
    stream.once('lost', (info) => reject(new Error(`the kernel dropped ${info.lost} events after ${evs.length} arrived`)));
  });
}

async function udpSpecs(n: number, base = 1) {
  const out = [];
  for (let i = 0; i < n; i++) {
    out.push({ proto: 'udp' as const, orig: { src: `10.${base}.${i >> 8}.${i & 255}`, dst: '10.99.0.1', sport: 1000 + (i % 1000), dport: 53 }, timeout: 600 });
  }
  return out;
}

const TRAFFIC = `
const dgram = require('dgram'), net = require('net');
const u = dgram.createSocket('udp4');
u.bind(0, '127.0.0.1', () => {
  const port = u.address().port;
  const c = dgram.createSocket('udp4');
  c.send('hi', port, '127.0.0.1', () => {
    c.close();
    const srv = net.createServer((s) => { s.end('ok'); });
    srv.listen(0, '127.0.0.1', () => {
      const tp = srv.address().port;
      const k = net.connect(tp, '127.0.0.1');
      k.on('data', () => {});
      k.on('close', () => { srv.close(); u.close(); console.log(JSON.stringify({ udp: port, tcp: tp })); });
    });
  });
});`;

async function trackTraffic(ns: Sandbox): Promise<void> {
  await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter");
}

describe('conntrack events against the kernel', () => {
  test('netlink-made entries give new, update and destroy events with their fields', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_timestamp', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const stream = ct.events();
        expect(stream.types).toEqual(['new', 'update', 'destroy']);
        const got = collect(stream, (evs) => evs.length >= 4);
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 443 }, state: 'ESTABLISHED', mark: 3, timeout: 100 });
        await ct.create({ proto: 'udp', orig: { src: 'fd00::1', dst: 'fd00::2', sport: 5000, dport: 53 }, timeout: 100, zone: 4 });
        await ct.update({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 443 }, mark: 9 });
        await ct.delete({ proto: 'udp', orig: { src: 'fd00::1', dst: 'fd00::2', sport: 5000, dport: 53 }, zone: 4 });
        const evs = await got;
        expect(evs.map((e) => e.type)).toEqual(['new', 'new', 'update', 'destroy']);
        expect(evs[0].flow).toMatchObject({ family: 'ipv4', proto: 'tcp', state: 'ESTABLISHED', mark: 3 });
        expect(evs[0].flow.orig).toMatchObject({ src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 443 });
        expect(evs[0].flow.reply).toMatchObject({ src: '10.0.0.2', dst: '10.0.0.1', sport: 443, dport: 40000 });
        expect(evs[1].flow).toMatchObject({ family: 'ipv6', proto: 'udp', zone: 4 });
        expect(evs[2].flow.mark).toBe(9);
        expect(evs[2].flow.id).toBe(evs[0].flow.id);
        expect(evs[3].flow.id).toBe(evs[1].flow.id);
        expect(evs[3].flow.timestamp?.stop).toBeGreaterThan(0n);
        for (const e of evs) {
          expect(typeof e.timestamp).toBe('bigint');
          expect(e.timestamp).toBe(e.flow.eventTimestamp);
        }
        expect(evs[1].timestamp! >= evs[0].timestamp!).toBe(true);
        expect(stream.lost).toBe(0);
        stream.close();
      } finally {
        await ct.close();
      }
    });
  });

  test('real loopback UDP and TCP traffic gives new events, TCP updates and destroy on flush', async () => {
    await withSandbox(async (ns) => {
      await trackTraffic(ns);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const stream = ct.events({ filter: { orig: { dst: '127.0.0.1' } } });
        const evs: FlowEvent[] = [];
        stream.on('event', (e) => evs.push(e));
        const { stdout } = await ns.run('node', ['-e', TRAFFIC]);
        const ports = JSON.parse(stdout) as { udp: number; tcp: number };
        const waitFor = async (pred: () => boolean) => {
          while (!pred()) await new Promise((r) => setTimeout(r, 10));
        };
        await waitFor(() => evs.some((e) => e.flow.proto === 'tcp' && e.type === 'update' && e.flow.state === 'ESTABLISHED'));
        const udpNew = evs.find((e) => e.type === 'new' && e.flow.proto === 'udp');
        expect(udpNew?.flow.orig).toMatchObject({ src: '127.0.0.1', dst: '127.0.0.1', dport: ports.udp });
        expect(udpNew?.flow.status).toContain('CONFIRMED');
        const tcpNew = evs.find((e) => e.type === 'new' && e.flow.proto === 'tcp');
        expect(tcpNew?.flow.orig.dport).toBe(ports.tcp);
        expect(tcpNew?.flow.state).toBe('SYN_SENT');
        const before = evs.length;
        await ct.flush();
        await waitFor(() => evs.filter((e) => e.type === 'destroy').length >= 2);
        const destroyed = evs.slice(before).filter((e) => e.type === 'destroy').map((e) => e.flow.proto).sort();
        expect(destroyed).toEqual(['tcp', 'udp']);
        expect(stream.lost).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('a filter keeps unwanted events out at the socket (kernel BPF), not only in the library', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // The unfiltered stream must see all 200 events: a buffer with room for them (the
        // default holds about 160, and a busy machine may not schedule the reader in time).
        const all = ct.events({ receiveBufferSize: 1 << 20 });
        const only = ct.events({ types: ['new'], filter: { proto: 'udp', orig: { src: '10.1.0.0/16', dport: 53 }, mark: 5 } });
        expect(only.kernelFilter).toBe(true);
        const wanted = collect(only, (evs) => evs.length >= 7);
        const everything = collect(all, (evs) => evs.length >= 200);
        const specs = [];
        for (let i = 0; i < 100; i++) {
          specs.push({ proto: (i % 2 ? 'udp' : 'tcp') as 'udp' | 'tcp', state: i % 2 ? undefined : 'ESTABLISHED', orig: { src: `10.${1 + (i % 3)}.0.${i}`, dst: '10.9.9.9', sport: 1000 + i, dport: i % 5 ? 53 : 54 }, mark: i % 4 === 1 ? 5 : 0, timeout: 100 });
        }
        const expected = specs.filter((s) => s.proto === 'udp' && s.orig.src.startsWith('10.1.') && s.orig.dport === 53 && s.mark === 5);
        expect(expected.length).toBe(7);
        for (const s of specs) await ct.create(s);
        await ct.flush();
        await everything;
        const got = await wanted;
        expect(got.map((e) => e.flow.orig.sport).sort()).toEqual(expected.map((s) => s.orig.sport).sort());
        // Counted at the socket: only the matching NEW events were ever read from it.
        expect(all.stats.messages).toBe(200);
        expect(only.stats.messages).toBe(7);
        expect(only.stats.filtered).toBe(0);
        expect(only.lost).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('a filter part BPF cannot express (status) is applied by the library', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const s = ct.events({ types: ['new'], filter: { status: ['ASSURED'] } });
        expect(s.kernelFilter).toBe(true); // the event type is still checked in the kernel
        const got = collect(s, (evs) => evs.length >= 1);
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 100 });
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 3, dport: 4 }, timeout: 100, status: ['SEEN_REPLY', 'ASSURED'] });
        const [ev] = await got;
        expect(ev.flow.orig.sport).toBe(3);
        expect(s.stats).toMatchObject({ messages: 2, filtered: 1, delivered: 1 });
      } finally {
        await ct.close();
      }
    });
  });

  test('the stream is an AsyncIterable, an EventEmitter and a Readable', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const specs = await udpSpecs(6);
        // AsyncIterable: events queued before iteration starts are kept.
        const it = ct.events({ types: ['new'] });
        // Readable in object mode, through pipeline().
        const rs = ct.events({ types: ['new'] });
        // EventEmitter.
        const em = ct.events({ types: ['new'] });
        const emitted = collect(em, (evs) => evs.length >= 6);
        let closed = 0;
        em.on('close', () => closed++);
        for (const s of specs) await ct.create(s);

        const iterated: FlowEvent[] = [];
        for await (const ev of it) {
          iterated.push(ev);
          if (iterated.length === 6) break; // leaving the loop closes the stream
        }
        expect(it.isClosed).toBe(true);
        expect(iterated.map((e) => e.flow.orig.src)).toEqual(specs.map((s) => s.orig.src));

        const piped: FlowEvent[] = [];
        const readable = rs.readable();
        await pipelineP(
          readable,
          new Writable({
            objectMode: true,
            write(ev: FlowEvent, _enc, cb) {
              piped.push(ev);
              if (piped.length === 6) readable.destroy();
              cb();
            },
          }),
        ).catch((e: Error & { code?: string }) => {
          if (e.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw e;
        });
        expect(piped.map((e) => e.type)).toEqual(Array(6).fill('new'));
        expect(piped.map((e) => e.flow.orig.src)).toEqual(specs.map((s) => s.orig.src));
        expect(rs.isClosed).toBe(true);

        expect((await emitted).length).toBe(6);
        em.close();
        em.close();
        expect(closed).toBe(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('an AbortSignal ends the stream: a waiting next() rejects with ERR_ABORTED', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const ac = new AbortController();
        const s = ct.events({ signal: ac.signal });
        const pending = s.next();
        ac.abort();
        await expect(pending).rejects.toMatchObject({ code: 'ERR_ABORTED' });
        expect(s.isClosed).toBe(true);
        const pre = ct.events({ signal: AbortSignal.abort() });
        await expect(pre.next()).rejects.toMatchObject({ code: 'ERR_ABORTED' });
      } finally {
        await ct.close();
      }
    });
  });

  test('bad options are refused with the field named, before any socket is opened', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const cases: [unknown, string][] = [
          [{ types: ['created'] }, 'options.types'],
          [{ types: [] }, 'options.types'],
          [{ receiveBufferSize: -1 }, 'options.receiveBufferSize'],
          [{ highWaterMark: 0 }, 'options.highWaterMark'],
          [{ growBuffer: { max: 'big' } }, 'options.growBuffer.max'],
          [{ reliable: 'yes' }, 'options.reliable'],
          [{ filter: { orig: { src: 'nope' } } }, 'options.filter.orig.src'],
          [{ colour: 'red' }, 'options.colour'],
        ];
        for (const [opts, field] of cases) {
          let err: unknown;
          try {
            ct.events(opts as never);
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(ConntrackError);
          expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field });
        }
        expect(ct.children.size).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('ct.close() closes its event streams; a closed stream reports done', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const s = ct.events();
      expect(ct.children.has(s)).toBe(true);
      const waiting = s.next();
      await ct.close();
      expect(s.isClosed).toBe(true);
      await expect(waiting).resolves.toEqual({ value: undefined, done: true });
      expect(() => ct.events()).toThrow(expect.objectContaining({ code: 'ERR_CLOSED' }));
    });
  });

  test('receiveBufferSize is reported and grows on overrun up to growBuffer.max', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const s = ct.events({ types: ['new'], receiveBufferSize: 65536, growBuffer: { max: 1 << 20 }, highWaterMark: 1 });
        // The kernel doubles the request for its bookkeeping.
        expect(s.receiveBufferSize).toBe(131072);
        const losses: number[] = [];
        s.on('lost', (info) => losses.push(info.delta));
        s.pause();
        for (const spec of await udpSpecs(400)) await ct.create(spec);
        s.resume();
        let received = 0;
        while (received + s.lost < 400) {
          const batch = await s.nextBatch();
          received += batch.length;
        }
        expect(received + s.lost).toBe(400);
        expect(losses.reduce((a, b) => a + b, 0)).toBe(s.lost);
        expect(s.lost).toBeGreaterThan(0);
        expect(s.receiveBufferSize).toBe(262144);
      } finally {
        await ct.close();
      }
    });
  });

  test('reliable mode: every DESTROY arrives even when the buffer overflows', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // Subscribed before the entries exist, as a monitoring agent is: with the default
        // nf_conntrack_events=2 the kernel then equips each new entry for event redelivery.
        const s = ct.events({ types: ['destroy'], reliable: true });
        expect(s.reliable).toBe(true);
        const specs = await udpSpecs(600);
        for (const spec of specs) await ct.create(spec);
        s.pause(); // nothing is read while the flush runs: the buffer overflows
        await ct.flush();
        s.resume();
        const seen = new Set<string>();
        // The kernel re-sends what failed every 100 ms or so; bound the wait so that a stall
        // fails here, with the stream's state, instead of hanging the run.
        const deadline = Date.now() + 30000;
        let pending: Promise<FlowEvent[]> | null = null;
        while (seen.size < 600 && Date.now() < deadline) {
          pending ??= s.nextBatch().then((b) => {
            pending = null;
            return b;
          });
          const batch = await Promise.race([pending, new Promise<FlowEvent[]>((r) => setTimeout(() => r([]), 500))]);
          for (const ev of batch) seen.add(ev.flow.orig.src);
        }
        const state = { seen: seen.size, lost: s.lost, stats: s.stats, queued: s.queued, kernelQueuedBytes: s.kernelQueuedBytes };
        expect(state).toMatchObject({ seen: 600 });
        // The default buffer holds far fewer than 600 events: delivery failed and was retried.
        expect(s.lost).toBeGreaterThan(0);
      } finally {
        await ct.close();
      }
    });
  });
});
