/**
 * lib/flows/raw-entry.ts and CompiledFilter.matchRaw: the fields read in place equal the
 * decoded Flow's, and the raw matcher decides exactly as match() on the Flow, on generated
 * messages (well-formed, odd and truncated) and generated filters.
 */
import fc from 'fast-check';
import { compileFilter, FlowFilter } from '../../../lib/flows/filter';
import { decodeFlow } from '../../../lib/flows/flow';
import { RawEntry, labelByte, scanEntry } from '../../../lib/flows/raw-entry';
import { keyLength, writeKey } from '../../../lib/flows/matching';
import { capturedMessages, hexMessages } from '../../helpers/fixtures';
import { AttrWriter } from '../../../lib/wire/netlink';
import {
  AF_INET, AF_INET6, CTA_ID, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_LABELS, CTA_MARK,
  CTA_PROTO_DST_PORT, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_IP, CTA_TUPLE_ORIG,
  CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, CTA_TUPLE_ZONE, CTA_USE, CTA_ZONE, PROTO_NUMBERS,
} from '../../../lib/wire/enums';

type Addr = { v6: boolean; bytes: readonly number[] };
interface TupleSpec {
  src?: Addr;
  dst?: Addr;
  proto?: number;
  sport?: number;
  dport?: number;
  zone?: number;
}
interface MsgSpec {
  nfFamily: number;
  orig?: TupleSpec;
  reply?: TupleSpec;
  status?: number;
  timeout?: number;
  mark?: number;
  zone?: number;
  id?: number;
  labels?: readonly number[];
  use?: number;
  truncate: number;
}

function writeTuple(w: AttrWriter, attr: number, t: TupleSpec): void {
  w.nest(attr).nest(CTA_TUPLE_IP);
  if (t.src) w.bytes(t.src.v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, Uint8Array.from(t.src.bytes));
  if (t.dst) w.bytes(t.dst.v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, Uint8Array.from(t.dst.bytes));
  w.end().nest(CTA_TUPLE_PROTO);
  if (t.proto !== undefined) w.u8(CTA_PROTO_NUM, t.proto);
  if (t.sport !== undefined) w.u16(CTA_PROTO_SRC_PORT, t.sport);
  if (t.dport !== undefined) w.u16(CTA_PROTO_DST_PORT, t.dport);
  w.end();
  if (t.zone !== undefined) w.u16(CTA_TUPLE_ZONE, t.zone);
  w.end();
}

/** A whole IPCTNL_MSG_CT_NEW message (nlmsghdr, nfgenmsg, attributes), cut `truncate` bytes short. */
function message(m: MsgSpec): Buffer {
  const w = new AttrWriter();
  if (m.orig) writeTuple(w, CTA_TUPLE_ORIG, m.orig);
  if (m.reply) writeTuple(w, CTA_TUPLE_REPLY, m.reply);
  if (m.status !== undefined) w.u32(CTA_STATUS, m.status);
  if (m.timeout !== undefined) w.u32(CTA_TIMEOUT, m.timeout);
  if (m.mark !== undefined) w.u32(CTA_MARK, m.mark);
  if (m.use !== undefined) w.u32(CTA_USE, m.use);
  if (m.id !== undefined) w.u32(CTA_ID, m.id);
  if (m.zone !== undefined) w.u16(CTA_ZONE, m.zone);
  if (m.labels) w.bytes(CTA_LABELS, Uint8Array.from(m.labels));
  const attrs = w.finish();
  const len = Math.max(20, 20 + attrs.length - m.truncate);
  const b = Buffer.alloc(len);
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE((1 << 8) | 0, 4);
  b[16] = m.nfFamily;
  attrs.copy(b, 20, 0, len - 20);
  return b;
}

// Few distinct values, so that generated filters often hit.
const addr = fc.oneof(
  fc.constantFrom([10, 0, 0, 1], [10, 0, 0, 2], [10, 1, 2, 3], [192, 0, 2, 1]).map((bytes) => ({ v6: false, bytes })),
  fc.constantFrom([0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 1], [0xfd, ...Array(14).fill(0), 2], [...Array(10).fill(0), 0xff, 0xff, 10, 0, 0, 1])
    .map((bytes) => ({ v6: true, bytes })),
);
const port = fc.constantFrom(0, 53, 80, 443, 65535);
const tupleSpec = fc.record(
  { src: addr, dst: addr, proto: fc.constantFrom(6, 17, 1, 58, 132, 47), sport: port, dport: port, zone: fc.constantFrom(0, 1, 7) },
  { requiredKeys: [] },
);
const msgSpec: fc.Arbitrary<MsgSpec> = fc.record(
  {
    nfFamily: fc.constantFrom(AF_INET, AF_INET6),
    orig: fc.option(tupleSpec, { nil: undefined, freq: 8 }),
    reply: fc.option(tupleSpec, { nil: undefined, freq: 6 }),
    status: fc.option(fc.constantFrom(0, 0x8, 0xe, 0x1ca, 0x30, 0x7fffffff), { nil: undefined }),
    timeout: fc.option(fc.constantFrom(0, 30, 600, 0xffffffff), { nil: undefined }),
    mark: fc.option(fc.constantFrom(0, 1, 7, 0x100, 0xffffffff), { nil: undefined }),
    zone: fc.option(fc.constantFrom(0, 1, 7), { nil: undefined }),
    id: fc.option(fc.nat(0xffffffff), { nil: undefined }),
    use: fc.option(fc.nat(5), { nil: undefined }),
    labels: fc.option(fc.array(fc.nat(255), { minLength: 0, maxLength: 20 }), { nil: undefined }),
    truncate: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, fc.nat(40)),
  },
  { requiredKeys: ['nfFamily', 'truncate'] },
);
const v4Prefix = fc.constantFrom('10.0.0.1', '10.0.0.0/8', '10.1.0.0/16', '192.0.2.1', '10.0.0.0/7', '0.0.0.0/0');
const v6Prefix = fc.constantFrom('2001:db8::1', 'fd00::/8', '::ffff:10.0.0.1', '::/0', '2001:db8::/32');
const tupleFilter = (prefix: fc.Arbitrary<string>) =>
  fc.record({ src: prefix, dst: prefix, sport: port, dport: port, zone: fc.constantFrom(0, 1) }, { requiredKeys: [] });
/** Filters of one family (their prefixes agree with it), mostly with few keys. */
const familyFilter = (family: 'ipv4' | 'ipv6', prefix: fc.Arbitrary<string>) => fc.record(
  {
    family: fc.constant(family),
    proto: fc.constantFrom('tcp', 'udp', 6, 17, 132),
    mark: fc.oneof(fc.constantFrom(0, 1, 7), fc.constant({ value: 0, mask: 0xff }), fc.constant({ value: 0x100, mask: 0xf00 })),
    zone: fc.constantFrom(0, 1, 7),
    status: fc.oneof(fc.constant(['ASSURED']), fc.constant({ set: ['SEEN_REPLY'], unset: ['ASSURED'] }), fc.constant({ unset: ['SRC_NAT'] })),
    orig: tupleFilter(prefix),
    reply: tupleFilter(prefix),
  },
  { requiredKeys: [] },
);
const filterSpec = fc.oneof(familyFilter('ipv4', v4Prefix), familyFilter('ipv6', v6Prefix), fc.constant({}), fc.record({ gre: fc.constant({ proto: 'gre', mark: 1 }) }).map((r) => r.gre));

/** The filter compiled, or undefined when it is refused (contradicting families and the like). */
function compiled(f: unknown) {
  try {
    return compileFilter(f as FlowFilter);
  } catch {
    return undefined;
  }
}

describe('scanEntry', () => {
  test('reads the fields decodeFlow() decodes', () => {
    fc.assert(
      fc.property(msgSpec, (m) => {
        const b = message(m);
        const e = scanEntry(b, 0, b.length, new RawEntry());
        const f = decodeFlow(b, 0, b.length);
        expect(e.family).toBe(f.family);
        expect(e.protonum).toBe(typeof f.proto === 'number' ? f.proto : PROTO_NUMBERS[f.proto]);
        expect([e.mark, e.zone, e.status, e.timeout, e.id]).toEqual([f.mark, f.zone, f.statusBits, f.timeout, f.id]);
        for (const dir of ['orig', 'reply'] as const) {
          const t = e[dir];
          expect(t.sport < 0 ? undefined : t.sport).toBe(f[dir].sport);
          expect(t.dport < 0 ? undefined : t.dport).toBe(f[dir].dport);
          expect(t.zone < 0 ? undefined : t.zone).toBe(f[dir].zone);
        }
        // labelWordsOf(flow) in update-matching.ts: the bitmap's first 16 bytes.
        const words = Buffer.alloc(16);
        for (const bit of f.labels ?? []) if (bit < 128) words[bit >> 3] |= 1 << (bit & 7);
        for (let i = 0; i < 16; i++) expect(labelByte(b, e, i)).toBe(words[i]);
      }),
      { numRuns: 1000 },
    );
  });

  test('reads ICMP fields and the protocol state as decodeFlow() does, on captured kernel messages', () => {
    const all = [...hexMessages('dump-mixed.hex'), ...capturedMessages('events/events.bin'), ...capturedMessages('events/events-timestamp.bin')];
    const states = new Map<number, string | undefined>();
    let icmp = 0;
    for (const b of all) {
      const e = scanEntry(b, 0, b.length, new RawEntry());
      const f = decodeFlow(b, 0, b.length);
      for (const dir of ['orig', 'reply'] as const) {
        const t = e[dir];
        const has = t.icmpType >= 0 || t.icmpId >= 0;
        expect(has).toBe(f[dir].icmp !== undefined);
        if (has) {
          icmp++;
          expect({ type: Math.max(0, t.icmpType), code: Math.max(0, t.icmpCode), id: Math.max(0, t.icmpId) }).toEqual(f[dir].icmp);
        }
      }
      expect(e.state < 0).toBe(f.state === undefined);
      // One state number names one state per protocol (what the mirror compares).
      const k = e.state * 256 + (typeof f.proto === 'number' ? f.proto : PROTO_NUMBERS[f.proto]);
      if (states.has(k)) expect(states.get(k)).toBe(f.state);
      states.set(k, f.state);
    }
    expect(icmp).toBeGreaterThan(0);
    expect([...states.values()].filter((s) => s !== undefined).length).toBeGreaterThan(1);
  });

  test('writeKey copies the original tuple, id and zone', () => {
    const b = message({ nfFamily: AF_INET, orig: { src: { v6: false, bytes: [10, 0, 0, 1] }, dst: { v6: false, bytes: [10, 0, 0, 2] }, proto: 17, sport: 1, dport: 2 }, id: 0x01020304, zone: 7, truncate: 0 });
    const e = scanEntry(b, 0, b.length, new RawEntry());
    const key = Buffer.alloc(keyLength(e));
    expect(writeKey(b, e, key, 0)).toBe(key.length);
    const w = new AttrWriter();
    writeTuple(w, CTA_TUPLE_ORIG, { src: { v6: false, bytes: [10, 0, 0, 1] }, dst: { v6: false, bytes: [10, 0, 0, 2] }, proto: 17, sport: 1, dport: 2 });
    w.u32(CTA_ID, 0x01020304).u16(CTA_ZONE, 7);
    expect(key.equals(w.finish())).toBe(true);
  });
});

describe('CompiledFilter.matchRaw', () => {
  test('is there for filters without state, nat or icmp, and absent otherwise', () => {
    expect(compileFilter({ family: 'ipv4', proto: 'udp' }).matchRaw).toBeDefined();
    expect(compileFilter({ state: 'ESTABLISHED' }).matchRaw).toBeUndefined();
    expect(compileFilter({ nat: 'src' }).matchRaw).toBeUndefined();
    expect(compileFilter({ orig: { icmp: { type: 8 } } }).matchRaw).toBeUndefined();
  });

  test('decides as match() does on the decoded Flow', () => {
    let hits = 0;
    let refused = 0;
    fc.assert(
      fc.property(msgSpec, filterSpec, (m, fs) => {
        const c = compiled(fs);
        if (!c) {
          refused++;
          return;
        }
        const b = message(m);
        const want = c.match(decodeFlow(b, 0, b.length));
        if (want) hits++;
        expect(c.matchRaw!(scanEntry(b, 0, b.length, new RawEntry()), b)).toBe(want);
      }),
      { numRuns: 5000 },
    );
    // The generators reach both branches, and few filters are refused.
    expect(hits).toBeGreaterThan(250);
    expect(refused).toBeLessThan(500);
  });
});
