/**
 * decodeFlow() on bytes captured from the kernel (test/fixtures/dump-mixed.hex, made by
 * test/fixtures/capture-dump.js), checked against what `conntrack -L` printed for the same
 * table at capture time; then the same bytes damaged: an unknown attribute and a truncated
 * one are skipped and reported in flow.unknown, never thrown.
 */
import { readFileSync } from 'fs';
import * as path from 'path';
import { decodeFlow } from '../../../lib/flows/flow';
import { parseCli } from '../../integration/flows/dump.cli';

const fixtures = path.join(__dirname, '../../fixtures');
const messages = readFileSync(path.join(fixtures, 'dump-mixed.hex'), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex'));
const expected = parseCli(readFileSync(path.join(fixtures, 'dump-mixed.cli.txt'), 'utf8'));

/** Appends an attribute (type, payload) to a copy of a message, fixing nlmsg_len. */
function withAttr(msg: Buffer, type: number, payload: Buffer, declaredLen?: number): Buffer {
  const len = 4 + payload.length;
  const attr = Buffer.alloc((len + 3) & ~3);
  attr.writeUInt16LE(declaredLen ?? len, 0);
  attr.writeUInt16LE(type, 2);
  payload.copy(attr, 4);
  const out = Buffer.concat([msg, attr]);
  out.writeUInt32LE(out.length, 0);
  return out;
}

describe('decodeFlow on captured kernel bytes', () => {
  test('every message decodes to what conntrack -L printed', () => {
    expect(messages).toHaveLength(6);
    expect(expected).toHaveLength(6);
    for (const m of messages) {
      const f = decodeFlow(m, 0, m.length);
      const c = expected.find((e) => e.id === f.id)!;
      expect(c).toBeDefined();
      expect({ family: f.family, proto: f.proto, state: f.state, mark: f.mark, zone: f.zone, use: f.use }).toEqual({
        family: c.family, proto: c.proto, state: c.state, mark: c.mark, zone: c.zone, use: c.use,
      });
      expect(Math.abs(f.timeout - c.timeout)).toBeLessThanOrEqual(1);
      for (const dir of ['orig', 'reply'] as const) {
        const { packets, bytes, ...tuple } = c[dir];
        expect({ src: f[dir].src, dst: f[dir].dst, sport: f[dir].sport, dport: f[dir].dport, icmp: f[dir].icmp }).toEqual({
          sport: undefined, dport: undefined, icmp: undefined, ...tuple,
        });
        expect(f.counters![dir]).toEqual({ packets, bytes });
      }
      expect(f.status.includes('SEEN_REPLY')).toBe(!c.unreplied);
      expect(f.status).toContain('CONFIRMED');
      expect(typeof f.timestamp!.start).toBe('bigint');
      expect(f.timestamp!.start).toBeGreaterThan(1_600_000_000n * 1_000_000_000n);
      expect(f.unknown).toBeUndefined();
    }
    const tcp = messages.map((m) => decodeFlow(m, 0, m.length)).find((f) => f.proto === 'tcp' && f.family === 'ipv4')!;
    expect(tcp.tcp).toMatchObject({ state: 'ESTABLISHED' });
  });

  test('decodes a message in the middle of a larger buffer (offset and length respected)', () => {
    const m = messages[0];
    const big = Buffer.concat([Buffer.alloc(12, 0xee), m, Buffer.alloc(40, 0xee)]);
    expect(decodeFlow(big, 12, m.length)).toEqual(decodeFlow(m, 0, m.length));
  });

  test('an unknown attribute type is skipped and listed in flow.unknown', () => {
    const m = messages[0];
    const good = decodeFlow(m, 0, m.length);
    const f = decodeFlow(withAttr(m, 99, Buffer.from([1, 2, 3, 4])), 0, m.length + 8);
    expect(f.unknown).toEqual([99]);
    expect({ ...f, unknown: undefined }).toEqual(good);
  });

  test('a truncated attribute stops decoding there, is reported as -1, and never throws', () => {
    const m = messages[0];
    const good = decodeFlow(m, 0, m.length);
    // An attribute claiming 200 bytes where only 8 follow.
    const bad = withAttr(m, 7 /* CTA_TIMEOUT */, Buffer.from([0, 0, 0, 5]), 200);
    const f = decodeFlow(bad, 0, bad.length);
    expect(f.unknown).toEqual([-1]);
    expect(f.timeout).toBe(good.timeout);
    expect(f.orig).toEqual(good.orig);
    // Cut the message short in the middle of its attributes: whatever is whole still decodes.
    for (let cut = 20; cut < m.length; cut += 7) {
      const g = decodeFlow(m, 0, cut);
      expect(g.family).toBe(good.family);
    }
  });

  test('a short attribute of a known type is ignored, not misread', () => {
    const m = messages[0];
    const good = decodeFlow(m, 0, m.length);
    // CTA_MARK with a 2-byte payload (a u32 needs 4): skipped, mark unchanged.
    const f = decodeFlow(withAttr(m, 8, Buffer.from([0xff, 0xff])), 0, m.length + 8);
    expect(f.mark).toBe(good.mark);
    expect(f.unknown).toBeUndefined();
  });
});
