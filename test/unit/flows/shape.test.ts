/**
 * The decoded Flow's shape (captured kernel bytes, test/fixtures/dump-mixed.hex): the fields
 * every entry has, in one order, optional ones only when sent; status and TCP flag lists
 * shared and frozen; JSON.stringify through the prototype's toJSON with bigints as strings.
 */
import { readFileSync } from 'fs';
import * as path from 'path';
import { decodeFlow, newFlow, statusNames } from '../../../lib/flows/flow';
import { CTA_COUNTERS_BYTES, CTA_COUNTERS_ORIG, CTA_COUNTERS_PACKETS, CTA_COUNTERS_REPLY, CTA_TIMESTAMP, CTA_TIMESTAMP_START, NLA_F_NESTED } from '../../../lib/wire/enums';

const fixtures = path.join(__dirname, '../../fixtures');
const messages = readFileSync(path.join(fixtures, 'dump-mixed.hex'), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex'));
const decode = (m: Buffer) => decodeFlow(m, 0, m.length);
const COMMON = ['id', 'family', 'proto', 'orig', 'reply', 'status', 'statusBits', 'timeout', 'mark', 'zone', 'use'];

function attr(type: number, payload: Buffer): Buffer {
  const out = Buffer.alloc((4 + payload.length + 3) & ~3);
  out.writeUInt16LE(4 + payload.length, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}
const u64 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
/** A captured message with counters and a start timestamp appended (what acct and timestamps add). */
function withCountersAndTimestamp(m: Buffer, packets: bigint, bytes: bigint, start: bigint): Buffer {
  const counters = Buffer.concat([attr(CTA_COUNTERS_PACKETS, u64(packets)), attr(CTA_COUNTERS_BYTES, u64(bytes))]);
  const out = Buffer.concat([
    m,
    attr(CTA_COUNTERS_ORIG | NLA_F_NESTED, counters),
    attr(CTA_COUNTERS_REPLY | NLA_F_NESTED, counters),
    attr(CTA_TIMESTAMP | NLA_F_NESTED, attr(CTA_TIMESTAMP_START, u64(start))),
  ]);
  out.writeUInt32LE(out.length, 0);
  return out;
}

describe('decoded flow shape', () => {
  const flows = messages.map(decode);

  test('the fields every entry has come first, in one order; optional ones only when sent', () => {
    for (const f of flows) {
      expect(Object.keys(f).slice(0, COMMON.length)).toEqual(COMMON);
      for (const k of Object.keys(f)) expect((f as unknown as Record<string, unknown>)[k]).not.toBeUndefined();
    }
    // The capture had accounting, timestamps and synproxy on: those come after, when sent.
    const udp = flows.find((f) => f.proto === 'udp' && f.family === 'ipv4')!;
    expect(Object.keys(udp)).toEqual([...COMMON, 'counters', 'timestamp', 'synproxy']);
    expect(Object.keys(udp.orig)).toEqual(['src', 'dst', 'sport', 'dport']);
    const tcp = flows.find((f) => f.proto === 'tcp')!;
    expect(Object.keys(tcp).slice(COMMON.length)).toContain('tcp');
    expect(Object.keys(tcp)).not.toContain('sctp');
  });

  test('status and TCP flag lists are frozen and shared between flows', () => {
    const again = messages.map(decode);
    for (let i = 0; i < flows.length; i++) {
      expect(Object.isFrozen(flows[i].status)).toBe(true);
      expect(again[i].status).toBe(flows[i].status);
      expect([...flows[i].status]).toEqual(statusNames(flows[i].statusBits));
      if (flows[i].tcp?.flagsOrig) {
        expect(Object.isFrozen(flows[i].tcp!.flagsOrig)).toBe(true);
        expect(again[i].tcp!.flagsOrig).toBe(flows[i].tcp!.flagsOrig);
      }
    }
    expect(() => (flows[0].status as string[]).push('ASSURED')).toThrow(TypeError);
  });

  test('JSON.stringify writes bigints as decimal strings that parse back to the same values', () => {
    const big = 2n ** 63n + 5n; // beyond Number.MAX_SAFE_INTEGER: a number would lose it
    const f = decode(withCountersAndTimestamp(messages[0], 7n, big, 1700000000123456789n));
    expect(f.counters?.orig.bytes).toBe(big);
    const parsed = JSON.parse(JSON.stringify(f));
    expect(parsed.counters).toEqual({ orig: { packets: '7', bytes: big.toString() }, reply: { packets: '7', bytes: big.toString() } });
    expect(BigInt(parsed.counters.orig.bytes)).toBe(big);
    expect(parsed.timestamp).toEqual({ start: '1700000000123456789' });
    expect(parsed.id).toBe(f.id);
    expect(parsed.orig).toEqual(f.orig);
    expect(parsed.status).toEqual([...f.status]);
    // Plain JSON.stringify of the same fields (no prototype) throws on the bigints.
    expect(() => JSON.stringify({ ...f })).toThrow(TypeError);
  });

  test('flows decoded to be kept (list()) have the same fields, order, values and prototype', () => {
    const kept = messages.map((m) => decodeFlow(m, 0, m.length, true));
    for (let i = 0; i < flows.length; i++) {
      expect(Object.keys(kept[i])).toEqual(Object.keys(flows[i]));
      expect(Object.keys(kept[i].orig)).toEqual(Object.keys(flows[i].orig));
      expect(Object.getPrototypeOf(kept[i])).toBe(Object.getPrototypeOf(flows[i]));
      expect(kept[i]).toStrictEqual(flows[i]);
      expect(JSON.stringify(kept[i])).toBe(JSON.stringify(flows[i]));
    }
  });

  test('newFlow() copies fields into the decoded shape (with toJSON)', () => {
    const f = decode(withCountersAndTimestamp(messages[0], 1n, 2n, 3n));
    const copy = newFlow({ ...f, mark: 42 });
    expect(Object.keys(copy)).toEqual(Object.keys(f));
    expect(copy.mark).toBe(42);
    expect(JSON.parse(JSON.stringify(copy)).counters.reply.bytes).toBe('2');
  });
});
