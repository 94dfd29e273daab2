/**
 * Messages that decode without an exception but are not what a conntrack entry can be are
 * flagged in `flow.unknown`, never returned as a clean success.
 */
import { readFileSync } from 'fs';
import * as path from 'path';
import { decodeFlow } from '../../../lib/flows/flow';
import { CTA_TUPLE_REPLY } from '../../../lib/wire/enums';

const messages = readFileSync(path.join(__dirname, '../../fixtures/dump-mixed.hex'), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex'));
const v4 = messages.find((m) => m[16] === 2)!;
const v6 = messages.find((m) => m[16] === 10)!;

/** The attribute of `type` at the top level of a conntrack message: [start, end). */
function attr(m: Buffer, type: number): [number, number] {
  for (let p = 20; p + 4 <= m.length; p += (m.readUInt16LE(p) + 3) & ~3) {
    if ((m.readUInt16LE(p + 2) & 0x3fff) === type) return [p, p + ((m.readUInt16LE(p) + 3) & ~3)];
  }
  throw new Error(`no attribute ${type}`);
}

test('an IPv4 entry whose reply tuple is IPv6 is flagged in unknown', () => {
  expect(decodeFlow(v4, 0, v4.length).unknown).toBeUndefined();
  const [s4, e4] = attr(v4, CTA_TUPLE_REPLY);
  const [s6, e6] = attr(v6, CTA_TUPLE_REPLY);
  const mixed = Buffer.concat([v4.subarray(0, s4), v6.subarray(s6, e6), v4.subarray(e4)]);
  mixed.writeUInt32LE(mixed.length, 0);
  const f = decodeFlow(mixed, 0, mixed.length);
  expect(f.family).toBe('ipv4');
  expect(f.reply.src).toContain(':');
  expect(f.unknown).toContain(CTA_TUPLE_REPLY);
});

test('a 16-byte message (its family byte would lie past its end) is flagged, not decoded as IPv6 or IPv4 silently', () => {
  // The next message's bytes follow in the same buffer: the family must not be read from them.
  const buf = Buffer.concat([v4.subarray(0, 16), v6]);
  buf.writeUInt32LE(16, 0);
  const f = decodeFlow(buf, 0, 16);
  expect(f.unknown).toEqual([-1]);
  expect(f.family).toBe('ipv4'); // not ipv6 from the next message's byte
});

test('a label bitmap longer than 128 bits (found by the fuzz properties) yields labels 0-127 only, and is flagged', () => {
  // An entry with a 24-byte CTA_LABELS (the kernel sends at most 16): bits 3 and 131.
  const labels = Buffer.alloc(4 + 24);
  labels.writeUInt16LE(28, 0);
  labels.writeUInt16LE(22 /* CTA_LABELS */, 2);
  labels.writeUInt32LE(1 << 3, 4);
  labels.writeUInt32LE(1 << 3, 4 + 16); // bit 128 + 3
  const m = Buffer.concat([v4, labels]);
  m.writeUInt32LE(m.length, 0);
  const f = decodeFlow(m, 0, m.length);
  expect(f.labels).toEqual([3]);
  expect(f.unknown).toContain(22);
});
