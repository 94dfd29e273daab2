/**
 * Property tests over mutated kernel messages (the captures in test/fixtures): every
 * decoder (flow, expectation, statistics, events) and the receive path. Shared by the
 * bounded run in `npm test` (fuzz.test.ts) and the long one in `npm run fuzz`
 * (FUZZ_RUNS=N; see package.json).
 */
import * as fc from 'fast-check';
import { readFileSync } from 'fs';
import * as path from 'path';
import { ConntrackError } from '../../../lib/common/errors';
import { decodeExpectation } from '../../../lib/expect/decode';
import { decodeExpectationStats } from '../../../lib/expect/stats';
import { FlowEventStream } from '../../../lib/flows/events';
import { Flow, decodeFlow } from '../../../lib/flows/flow';
import { decodeCpuStats, decodeGlobalStats } from '../../../lib/stats/counters';
import type { Handle, Subscription } from '../../../lib/wire/handle';
import { NfSocket } from '../../../lib/wire/socket';
import { FakeConnection, ack, nlmsg, recorder } from './fake-connection';

const FIXTURES = path.join(__dirname, '..', '..', 'fixtures');

/** Splits a capture of back-to-back netlink messages. */
function split(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p + 16 <= b.length) {
    const len = b.readUInt32LE(p);
    if (len < 16) break;
    out.push(Buffer.from(b.subarray(p, p + len)));
    p += (len + 3) & ~3;
  }
  return out;
}

const file = (...p: string[]): Buffer => readFileSync(path.join(FIXTURES, ...p));
export const corpus = {
  flows: readFileSync(path.join(FIXTURES, 'dump-mixed.hex'), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex')),
  events: [...split(file('events', 'events.bin')), ...split(file('events', 'events-timestamp.bin'))],
  expectations: ['exp-ipv4-50000.bin', 'exp-ipv4-50001.bin', 'exp-ipv6-50002.bin'].flatMap((f) => split(file('expect', f))),
  expectStats: ['stats-cpu0.bin', 'stats-cpu1.bin'].flatMap((f) => split(file('expect', f))),
  stats: [...split(file('stats', 'get_stats.bin')), ...split(file('stats', 'get_stats_cpu.bin'))],
};

/** One damage to a message: what fuzzers of netlink code do to captured bytes. */
type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'u16'; at: number; value: number }
  | { kind: 'u32'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'extend'; bytes: Uint8Array };

const position = fc.nat({ max: 4095 });
const edge16 = fc.constantFrom(0, 1, 3, 4, 5, 8, 0x7fff, 0x8000, 0xfffc, 0xffff);
const edge32 = fc.constantFrom(0, 1, 4, 16, 20, 0x7ffffffe, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('byte' as const), at: position, value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('u16' as const), at: position, value: fc.oneof(edge16, fc.nat({ max: 0xffff })) }),
  fc.record({ kind: fc.constant('u32' as const), at: position, value: fc.oneof(edge32, fc.nat({ max: 0xffffffff })) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('extend' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
);

/** Applies mutations to a copy of `msg`. Positions wrap around the message length. */
export function mutate(msg: Buffer, ms: readonly Mutation[]): Buffer {
  let b = Buffer.from(msg);
  for (const m of ms) {
    if (b.length === 0 && m.kind !== 'extend') continue;
    switch (m.kind) {
      case 'flip': b[m.at % b.length] ^= 1 << m.bit; break;
      case 'byte': b[m.at % b.length] = m.value; break;
      case 'u16': if (b.length >= 2) b.writeUInt16LE(m.value, m.at % (b.length - 1)); break;
      case 'u32': if (b.length >= 4) b.writeUInt32LE(m.value >>> 0, m.at % (b.length - 3)); break;
      case 'truncate': b = b.subarray(0, m.at % (b.length + 1)); break;
      case 'extend': b = Buffer.concat([b, Buffer.from(m.bytes)]); break;
    }
  }
  return b;
}

/** A mutated message from `messages`: mostly attribute damage, the header kept (so decoders run deep). */
export const damaged = (messages: Buffer[]): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.nat({ max: messages.length - 1 }), fc.array(mutation, { minLength: 1, maxLength: 6 }), fc.boolean()).map(([i, ms, keepLength]) => {
    const b = mutate(messages[i], ms);
    // Usually keep nlmsg_len consistent with the buffer, so the damage is inside the message.
    if (keepLength && b.length >= 4) b.writeUInt32LE(b.length, 0);
    return b;
  });

const isU32 = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
const isPort = (v: unknown): boolean => v === undefined || (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff);

/** Throws unless every field of `f` has the type the Flow interface declares. */
export function checkFlowTypes(f: Flow): void {
  const fail = (what: string): never => {
    throw new Error(`flow.${what} has the wrong type: ${JSON.stringify(f, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))}`);
  };
  if (!isU32(f.id)) fail('id');
  if (f.family !== 'ipv4' && f.family !== 'ipv6') fail('family');
  if (typeof f.proto !== 'string' && !(typeof f.proto === 'number' && Number.isInteger(f.proto) && f.proto >= 0 && f.proto <= 255)) fail('proto');
  for (const [name, t] of [['orig', f.orig], ['reply', f.reply]] as const) {
    if (t === null || typeof t !== 'object') fail(name);
    if (typeof t.src !== 'string' || typeof t.dst !== 'string') fail(`${name}.src/dst`);
    if (!isPort(t.sport) || !isPort(t.dport)) fail(`${name}.sport/dport`);
  }
  if (!Array.isArray(f.status) || !f.status.every((s) => typeof s === 'string')) fail('status');
  for (const k of ['statusBits', 'timeout', 'mark', 'use'] as const) if (!isU32(f[k])) fail(k);
  if (!(Number.isInteger(f.zone) && f.zone >= 0 && f.zone <= 0xffff)) fail('zone');
  if (f.state !== undefined && typeof f.state !== 'string') fail('state');
  if (f.counters !== undefined) {
    for (const d of [f.counters.orig, f.counters.reply]) if (typeof d.packets !== 'bigint' || typeof d.bytes !== 'bigint') fail('counters');
  }
  if (f.timestamp !== undefined && (typeof f.timestamp.start !== 'bigint' || (f.timestamp.stop !== undefined && typeof f.timestamp.stop !== 'bigint'))) fail('timestamp');
  if (f.eventTimestamp !== undefined && typeof f.eventTimestamp !== 'bigint') fail('eventTimestamp');
  if (f.labels !== undefined && !(Array.isArray(f.labels) && f.labels.every((l) => Number.isInteger(l) && l >= 0 && l < 128))) fail('labels');
  for (const k of ['helper', 'secctx'] as const) if (f[k] !== undefined && typeof f[k] !== 'string') fail(k);
  if (f.secmark !== undefined && !isU32(f.secmark)) fail('secmark');
  if (f.unknown !== undefined && !(Array.isArray(f.unknown) && f.unknown.every((n) => Number.isInteger(n)))) fail('unknown');
  // A value JSON cannot carry would break every exporter downstream.
  JSON.stringify(f);
}

export interface Budget {
  numRuns: number;
  seed?: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const run = (prop: fc.IProperty<any>, b: Budget): void => fc.assert(prop, { numRuns: b.numRuns, seed: b.seed });

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const runAsync = (prop: fc.IAsyncProperty<any>, b: Budget): Promise<void> => fc.assert(prop, { numRuns: b.numRuns, seed: b.seed });

export const properties = {
  flowDecoder: (b: Budget) =>
    run(fc.property(damaged([...corpus.flows, ...corpus.events]), (m) => checkFlowTypes(decodeFlow(m, 0, m.length))), b),

  expectationDecoder: (b: Budget) =>
    run(fc.property(damaged(corpus.expectations), (m) => {
      const x = decodeExpectation(m, 0, m.length);
      if (!isU32(x.id) || !isU32(x.timeout) || !Array.isArray(x.flags) || typeof x.tuple.src !== 'string' || typeof x.master.dst !== 'string') {
        throw new Error(`bad expectation ${JSON.stringify(x)}`);
      }
      JSON.stringify(x);
    }), b),

  statsDecoders: (b: Budget) =>
    run(fc.property(damaged([...corpus.stats, ...corpus.expectStats]), (m) => {
      const c = decodeCpuStats(m, 0, m.length);
      for (const [k, v] of Object.entries(c)) if (!isU32(v)) throw new Error(`cpu stats ${k} = ${v}`);
      const g = decodeGlobalStats(m, 0, m.length);
      if (!isU32(g.count) || (g.max !== undefined && !isU32(g.max))) throw new Error(`global stats ${JSON.stringify(g)}`);
      const e = decodeExpectationStats(m, 0, m.length);
      for (const [k, v] of Object.entries(e)) if (!isU32(v)) throw new Error(`expectation stats ${k} = ${v}`);
    }), b),

  /** Event batches through a real FlowEventStream on a scripted socket: never throws, typed events. */
  eventStream: (b: Budget) =>
    run(fc.property(fc.array(damaged(corpus.events), { minLength: 1, maxLength: 8 }), (msgs) => {
      const conn = new FakeConnection();
      const handle = fakeHandle(conn);
      const stream = new FlowEventStream(handle);
      const seen: unknown[] = [];
      stream.on('event', (ev) => seen.push(ev));
      stream.on('error', () => undefined);
      for (const m of msgs) {
        // Events come with seq 0 and pid 0.
        if (m.length >= 16) m.writeUInt32LE(0, 8);
        conn.feed(m);
      }
      for (const ev of seen as { type: string; flow: Flow }[]) {
        if (!['new', 'update', 'destroy'].includes(ev.type)) throw new Error(`event type ${ev.type}`);
        checkFlowTypes(ev.flow);
      }
      stream.close();
    }), b),

  /**
   * The receive path: requests answered by damaged replies (acks, errors, data, DONE),
   * interleaved with good ones. Feeding never throws; every request settles exactly once
   * (the recorder throws on a second done()), at the latest when the socket closes; every
   * error is a ConntrackError.
   */
  receivePath: (b: Budget) =>
    runAsync(fc.asyncProperty(
      fc.array(fc.record({
        reply: fc.constantFrom('ack', 'error', 'data', 'done'),
        damage: fc.array(mutation, { maxLength: 4 }),
        keepLength: fc.boolean(),
      }), { minLength: 1, maxLength: 12 }),
      fc.nat({ max: 12 }),
      async (script, closeAfter) => {
        const conn = new FakeConnection();
        const sock = new NfSocket({ open: (onData) => ((conn.onData = onData), conn) });
        const recs = script.map((s) => recorder('fuzz', s.reply === 'ack' || s.reply === 'error'));
        for (const r of recs) sock.request(0x100, 0, 2, undefined, r.handler);
        // Requests go out at the end of the tick: send them now, synchronously.
        (sock as unknown as { flush(): void }).flush();
        const batch: Buffer[] = [];
        script.forEach((s, i) => {
          const seq = conn.sent[i]?.seq ?? i + 1;
          let m: Buffer;
          if (s.reply === 'ack') m = ack(seq);
          else if (s.reply === 'error') m = ack(seq, 2);
          else if (s.reply === 'data') m = Buffer.concat([nlmsg(0x100, 2, seq, Buffer.alloc(20)), nlmsg(3, 2, seq, Buffer.alloc(4))]);
          else m = nlmsg(3, 2, seq, Buffer.alloc(4));
          m = mutate(m, s.damage);
          if (s.keepLength && m.length >= 4) m.writeUInt32LE(m.length, 0);
          batch.push(m);
        });
        for (let i = 0; i < batch.length; i++) {
          if (i === closeAfter) sock.close();
          conn.feed(batch[i]);
        }
        sock.close();
        recs.forEach(({ outcome }, i) => {
          if (!outcome.settled) throw new Error(`request ${i} never settled`);
          if (!outcome.ok && !(outcome.error instanceof ConntrackError)) throw new Error(`request ${i} failed with ${String(outcome.error)}`);
        });
        // Let the socket's end-of-tick work run, as it would in a program (else every
        // socket of a long synchronous run stays referenced by the pending tick queue).
        await new Promise((r) => setImmediate(r));
      },
    ), b),
};

/** A Handle whose subscriptions use the scripted connection. */
function fakeHandle(conn: FakeConnection): Handle {
  return {
    netns: undefined,
    assertOpen() {},
    request: () => Promise.resolve([]),
    requestAck: () => Promise.resolve(),
    requestMany() {},
    startDump() {
      throw new Error('not used');
    },
    subscribe(s: Subscription): NfSocket {
      const sock = new NfSocket({ open: (onData) => ((conn.onData = onData), conn) });
      s.prepare?.(sock);
      sock.events = s.sink;
      sock.setListening(true);
      return sock;
    },
    adopt: () => () => undefined,
  } as unknown as Handle;
}
