/** lib/common/address.ts: formatting matches inet_ntop() (RFC 5952), parsing and prefixes. */
import { canonicalAddress, formatIPv4, formatIPv4Cached, formatIPv6, parseAddress, parsePrefix, prefixContains } from '../../../lib/common/address';

const v6 = (words: number[]): Buffer => {
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, 2 * i));
  return b;
};

describe('formatIPv6 follows inet_ntop', () => {
  test.each([
    [[0, 0, 0, 0, 0, 0, 0, 1], '::1'],
    [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
    [[1, 0, 0, 0, 0, 0, 0, 0], '1::'],
    [[0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304], '::ffff:1.2.3.4'],
    [[0, 0, 0, 0, 0, 0, 0x0102, 0x0304], '::1.2.3.4'],
    [[0xfd00, 0, 0, 0, 0, 0, 0, 1], 'fd00::1'],
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'], // first of two equal runs
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'], // a single zero group stays
    [[0x2001, 0xdb8, 0, 0, 0, 1, 0, 0], '2001:db8::1:0:0'], // the longest run wins
    [[0xfe80, 0, 0, 0, 0xabcd, 0xef01, 0x2345, 0x6789], 'fe80::abcd:ef01:2345:6789'],
    [[0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff], 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    [[0, 0, 0, 0, 0, 0xfffe, 0x0102, 0x0304], '::fffe:102:304'],
  ])('%j -> %s', (words, text) => {
    expect(formatIPv6(v6(words), 0)).toBe(text);
    expect(canonicalAddress(text)).toBe(text);
  });

  test('reads at an offset', () => {
    const b = Buffer.concat([Buffer.alloc(3), v6([0xfd00, 0, 0, 0, 0, 0, 0, 2])]);
    expect(formatIPv6(b, 3)).toBe('fd00::2');
  });
});

describe('IPv4', () => {
  test('formatIPv4 and the cached variant agree', () => {
    const b = Buffer.from([0, 192, 168, 1, 254, 10, 0, 0, 1]);
    expect(formatIPv4(b, 1)).toBe('192.168.1.254');
    expect(formatIPv4Cached(b, 1)).toBe('192.168.1.254');
    expect(formatIPv4Cached(b, 5)).toBe('10.0.0.1');
    expect(formatIPv4Cached(Buffer.from([255, 255, 255, 255]), 0)).toBe('255.255.255.255');
    expect(formatIPv4Cached(Buffer.from([128, 0, 0, 0]), 0)).toBe('128.0.0.0');
  });

  test('the cache never answers with another address whose slot it took (more addresses than slots)', () => {
    const b = Buffer.alloc(4);
    let wrong = 0;
    // 200,000 distinct addresses, each looked up twice at a distance: hits and evictions.
    for (let i = 0; i < 200000; i++) {
      for (const n of [i, i >> 1]) {
        b.writeUInt32BE(((Math.imul(n, 2654435761) ^ 0x0a000000) >>> 0));
        if (formatIPv4Cached(b, 0) !== formatIPv4(b, 0)) wrong++;
      }
    }
    expect(wrong).toBe(0);
  });
});

describe('parseAddress and prefixes', () => {
  test('parses both families to bytes', () => {
    expect(parseAddress('10.1.2.3')).toEqual({ family: 'ipv4', bytes: Buffer.from([10, 1, 2, 3]) });
    expect(parseAddress('::ffff:1.2.3.4')!.bytes).toEqual(v6([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]));
    expect(parseAddress('1::')!.bytes).toEqual(v6([1, 0, 0, 0, 0, 0, 0, 0]));
    expect(canonicalAddress('FD00:0000::0001')).toBe('fd00::1');
  });

  test.each(['', '1.2.3', '1.2.3.256', 'fe80::1%eth0', ':::', 'hello', '1::2::3'])('rejects %j', (bad) => {
    expect(parseAddress(bad)).toBeUndefined();
  });

  test('prefixes match what they contain', () => {
    const p = parsePrefix('10.0.0.0/8')!;
    expect(prefixContains(p, Buffer.from([10, 200, 1, 1]))).toBe(true);
    expect(prefixContains(p, Buffer.from([11, 0, 0, 1]))).toBe(false);
    const q = parsePrefix('fd00::/7')!;
    expect(prefixContains(q, v6([0xfc00, 0, 0, 0, 0, 0, 0, 1]))).toBe(true);
    expect(prefixContains(q, v6([0xfe00, 0, 0, 0, 0, 0, 0, 1]))).toBe(false);
    expect(prefixContains(q, Buffer.from([10, 0, 0, 1]))).toBe(false);
    expect(parsePrefix('10.0.0.0/33')).toBeUndefined();
    expect(parsePrefix('10.0.0.0/x')).toBeUndefined();
    expect(parsePrefix('10.0.0.1')!.bits).toBe(32);
  });
});
