/**
 * The dump's duplicate signature, on captured kernel bytes (test/fixtures/dump-mixed.hex): a
 * repeat of an entry whose timeout, counters or status moved between the two copies must
 * give the same signature, and two entries with different original tuples different ones.
 */
import { flowSignature } from '../../../lib/flows/dump';
import { decodeFlow } from '../../../lib/flows/flow';
import { CTA_TIMEOUT, CTA_TUPLE_ORIG, CTA_ZONE, NLA_TYPE_MASK } from '../../../lib/wire/enums';
import { NFNL_ATTR_OFFSET } from '../../../lib/wire/netlink';
import { hexMessages } from '../../helpers/fixtures';

const messages = hexMessages('dump-mixed.hex');
const sig = (m: Buffer): number => flowSignature(decodeFlow(m, 0, m.length), m, 0, m.length);

/** Offset of the first top-level attribute of `type` (its header). */
function attrAt(m: Buffer, type: number): number {
  for (let p = NFNL_ATTR_OFFSET; p + 4 <= m.length; p += (m.readUInt16LE(p) + 3) & ~3) {
    if ((m.readUInt16LE(p + 2) & NLA_TYPE_MASK) === type) return p;
  }
  return -1;
}

describe('flowSignature', () => {
  test('distinct entries give distinct signatures', () => {
    expect(messages.length).toBeGreaterThan(5);
    const tuples = new Set(messages.map((m) => JSON.stringify(decodeFlow(m, 0, m.length).orig)));
    expect(new Set(messages.map(sig)).size).toBe(tuples.size);
  });

  test('fields that change between two copies of one entry leave it alone', () => {
    let checked = 0;
    for (const m of messages) {
      const t = attrAt(m, CTA_TIMEOUT);
      if (t < 0) continue;
      const later = Buffer.from(m);
      later.writeUInt32BE((later.readUInt32BE(t + 4) + 17) >>> 0, t + 4);
      expect(decodeFlow(later, 0, later.length).timeout).not.toBe(decodeFlow(m, 0, m.length).timeout);
      expect(sig(later)).toBe(sig(m));
      checked++;
    }
    expect(checked).toBeGreaterThan(5);
  });

  test('a byte of the original tuple changes it', () => {
    for (const m of messages) {
      const o = attrAt(m, CTA_TUPLE_ORIG);
      expect(o).toBeGreaterThanOrEqual(0);
      const other = Buffer.from(m);
      other[o + other.readUInt16LE(o) - 1] ^= 0x5a; // the tuple's last byte
      expect(sig(other)).not.toBe(sig(m));
    }
  });

  test('the same tuple in another zone (CTA_ZONE, outside the tuple) changes it', () => {
    for (const m of messages) {
      if (attrAt(m, CTA_ZONE) >= 0) continue;
      const zoned = Buffer.concat([m, Buffer.from([6, 0, CTA_ZONE, 0, 0, 3, 0, 0])]);
      zoned.writeUInt32LE(zoned.length, 0);
      expect(decodeFlow(zoned, 0, zoned.length).zone).toBe(3);
      expect(sig(zoned)).not.toBe(sig(m));
    }
  });

  test('never throws on damaged bytes', () => {
    for (const m of messages) {
      for (const cut of [0, 1, 17, 19, 20, 23, 24, m.length - 1]) {
        const d = m.subarray(0, cut);
        expect(typeof flowSignature(decodeFlow(d, 0, d.length), d, 0, d.length)).toBe('number');
      }
    }
  });
});
