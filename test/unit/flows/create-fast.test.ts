/**
 * lib/flows/entry-spec.ts writeCreateFast(), writeKeyFast() and readUpdateFast() +
 * writeUpdateFast(): the hand-written encoders bulk creates, deletes and updates use for
 * their common shape must accept only what the general path (writeCreate(), resolveKey() +
 * encodeKey(), resolveUpdate() + encodeUpdate()) accepts, and write the same bytes.
 */
import fc from 'fast-check';
import { encodeKey, encodeUpdate, readUpdateFast, resolveKey, resolveUpdate, writeCreate, writeCreateFast, writeKeyFast, writeUpdateFast } from '../../../lib/flows/entry-spec';
import { AttrWriter } from '../../../lib/wire/netlink';
import { AF_INET, AF_INET6 } from '../../../lib/wire/enums';

/** writeCreate()'s bytes and family, or undefined when it refuses the spec. */
function general(spec: unknown): { family: number; bytes: Buffer } | undefined {
  const w = new AttrWriter(16);
  try {
    const { family } = writeCreate(w, spec as never);
    return { family, bytes: w.finish() };
  } catch {
    return undefined;
  }
}

function fast(spec: unknown): { family: number; bytes: Buffer } | undefined {
  const w = new AttrWriter(16);
  const family = writeCreateFast(w, spec);
  if (family < 0) {
    expect(w.length).toBe(0); // nothing written when it declines
    return undefined;
  }
  return { family, bytes: w.finish() };
}

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'));
const oddValue = fc.oneof(
  fc.constant(undefined), fc.constant(null), fc.constant(-1), fc.constant(1.5), fc.constant(NaN), fc.constant('80'),
  fc.constant(0), fc.constant(65535), fc.constant(65536), fc.constant(0xffffffff), fc.constant(2 ** 32), fc.constant(10n), fc.constant([]),
);
const port = fc.oneof(fc.nat(65535), oddValue);
const u32 = fc.oneof(fc.nat(0xffffffff), oddValue);
const proto = fc.oneof(
  fc.constantFrom('tcp', 'udp', 'udplite', 'sctp', 'dccp', 'icmp', 'gre', 'UDP', 'igmp', 'nope'),
  fc.constantFrom(6, 17, 136, 132, 33, 1, 47, 256, -1),
);
const address = fc.oneof({ weight: 4, arbitrary: v4 }, { weight: 2, arbitrary: v6 }, fc.constantFrom('::1', '10.0.0.01', '1.2.3', '', 'x', '::ffff:1.2.3.4'), oddValue);
const tuple = fc.record(
  { src: address, dst: address, sport: port, dport: port, zone: fc.nat(3), icmp: fc.constant({ type: 8 }), extra: fc.constant(1) },
  { requiredKeys: [] },
);
const spec = fc.record(
  {
    proto, orig: fc.oneof({ weight: 5, arbitrary: tuple }, oddValue), timeout: u32, mark: u32, zone: fc.oneof(fc.nat(65535), oddValue),
    reply: tuple, status: fc.constant(['ASSURED']), labels: fc.constant([1]), colour: fc.constant('red'),
  },
  { requiredKeys: [] },
);
/** Mostly specs of the common shape, so the accepting branch is exercised often. */
const common = fc.record(
  {
    proto: fc.constantFrom('tcp', 'udp', 'udplite', 'sctp', 'dccp', 6, 17),
    orig: fc.record({ src: v4, dst: v4, sport: fc.nat(65535), dport: fc.nat(65535) }),
    timeout: fc.integer({ min: 1, max: 0xffffffff }),
    mark: fc.option(fc.nat(0xffffffff), { nil: undefined }),
    zone: fc.option(fc.nat(65535), { nil: undefined }),
  },
  { requiredKeys: ['proto', 'orig', 'timeout'] },
);

describe('writeCreateFast', () => {
  test('writes what writeCreate() writes for the common shape (IPv4 and IPv6)', () => {
    const cases = [
      { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 1000 }, timeout: 600, mark: 1 },
      { proto: 'tcp', orig: { src: '2001:db8::1', dst: 'fd00::2', sport: 443, dport: 65535 }, timeout: 1, zone: 7 },
      { proto: 132, orig: { src: '192.0.2.1', dst: '192.0.2.2', sport: 0, dport: 0 }, timeout: 0xffffffff, mark: 0, zone: 0 },
    ];
    for (const s of cases) {
      const f = fast(s);
      expect(f).toBeDefined();
      expect(f).toEqual(general(s));
    }
    expect(fast(cases[0])!.family).toBe(AF_INET);
    expect(fast(cases[1])!.family).toBe(AF_INET6);
  });

  test('specs made with spread syntax, and objects with a null prototype: the same bytes', () => {
    const keys = [...Array(50).keys()].map((i) => ({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1 + i, dport: 53 } }));
    for (const s of [...keys.map((k) => ({ ...k, timeout: 600, mark: 1 })), Object.assign(Object.create(null), keys[0], { timeout: 5 })]) {
      const f = fast(s);
      expect(f).toBeDefined();
      expect(f).toEqual(general(s));
    }
  });

  test('a class instance (its getters are not own keys) takes the general path', () => {
    class Spec {
      proto = 'udp';
      orig = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 };
      timeout = 30;
      get mark(): number {
        return 9;
      }
    }
    const s = new Spec();
    expect(fast(s)).toBeUndefined();
    expect(general(s)).toBeDefined();
  });

  test('declines what it does not handle, leaving it to writeCreate()', () => {
    const base = { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 30 };
    for (const s of [
      { ...base, reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 2, dport: 1 } }, // accepted by writeCreate, not fast
      { ...base, status: ['ASSURED'] },
      { ...base, proto: 'icmp' },
      { ...base, orig: { ...base.orig, zone: 1 } },
      { ...base, timeout: 0 },
      { ...base, orig: { ...base.orig, dst: '::1' } },
      null,
      [base],
    ]) {
      expect(fast(s)).toBeUndefined();
    }
  });

  test('on generated common specs: always accepts, same bytes as writeCreate()', () => {
    fc.assert(
      fc.property(common, (s) => {
        const f = fast(s);
        expect(f).toBeDefined();
        expect(f).toEqual(general(s));
      }),
      { numRuns: 2000 },
    );
  });

  test('on generated specs of any shape: accepts only what writeCreate() accepts, with the same bytes', () => {
    fc.assert(
      fc.property(spec, (s) => {
        const f = fast(s);
        if (f !== undefined) expect(f).toEqual(general(s));
      }),
      { numRuns: 5000 },
    );
  });
});

/** resolveKey() + encodeKey()'s bytes and family, or undefined when it refuses the key. */
function generalKey(key: unknown): { family: number; bytes: Buffer } | undefined {
  const w = new AttrWriter(16);
  try {
    const k = resolveKey(key);
    encodeKey(w, k, true);
    return { family: k.family === 'ipv4' ? AF_INET : AF_INET6, bytes: w.finish() };
  } catch {
    return undefined;
  }
}

function fastKey(key: unknown): { family: number; bytes: Buffer } | undefined {
  const w = new AttrWriter(16);
  const family = writeKeyFast(w, key);
  if (family < 0) {
    expect(w.length).toBe(0);
    return undefined;
  }
  return { family, bytes: w.finish() };
}

const commonKey = fc.record(
  {
    proto: fc.constantFrom('tcp', 'udp', 'udplite', 'sctp', 'dccp', 6, 17),
    orig: fc.record({ src: v4, dst: v4, sport: fc.nat(65535), dport: fc.nat(65535) }),
    zone: fc.option(fc.nat(65535), { nil: undefined }),
    id: fc.option(fc.nat(0xffffffff), { nil: undefined }),
  },
  { requiredKeys: ['proto', 'orig'] },
);
const anyKey = fc.record(
  { proto, orig: fc.oneof({ weight: 5, arbitrary: tuple }, oddValue), reply: tuple, zone: fc.oneof(fc.nat(65535), oddValue), id: u32, mark: u32, colour: fc.constant('red') },
  { requiredKeys: [] },
);

describe('writeKeyFast', () => {
  test('writes what resolveKey() + encodeKey() write (IPv4, IPv6, zone, id)', () => {
    for (const k of [
      { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 1000 } },
      { proto: 'tcp', orig: { src: '2001:db8::1', dst: 'fd00::2', sport: 443, dport: 65535 }, zone: 7, id: 0xfffffffe },
      { proto: 132, orig: { src: '192.0.2.1', dst: '192.0.2.2', sport: 0, dport: 0 }, zone: 0, id: 0 },
    ]) {
      const f = fastKey(k);
      expect(f).toBeDefined();
      expect(f).toEqual(generalKey(k));
    }
  });

  test('declines what it does not handle, leaving it to the general path', () => {
    const base = { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 } };
    for (const k of [
      { proto: 'udp', reply: base.orig },
      { ...base, mark: 1 }, // a Flow's field: accepted and ignored by resolveKey, not fast
      { ...base, proto: 'icmp' },
      { ...base, orig: { ...base.orig, dst: '::1' } },
      { ...base, id: -1 },
      null,
      [base],
    ]) {
      expect(fastKey(k)).toBeUndefined();
    }
  });

  test('on generated common keys: always accepts, same bytes as the general path', () => {
    fc.assert(
      fc.property(commonKey, (k) => {
        const f = fastKey(k);
        expect(f).toBeDefined();
        expect(f).toEqual(generalKey(k));
      }),
      { numRuns: 2000 },
    );
  });

  test('on generated keys of any shape: accepts only what the general path accepts, with the same bytes', () => {
    fc.assert(
      fc.property(anyKey, (k) => {
        const f = fastKey(k);
        if (f !== undefined) expect(f).toEqual(generalKey(k));
      }),
      { numRuns: 5000 },
    );
  });
});

/** resolveUpdate() + encodeUpdate()'s bytes and family, or undefined when it refuses the spec. */
function generalUpdate(spec: unknown): { family: number; bytes: Buffer } | undefined {
  try {
    const r = resolveUpdate(spec as never);
    // An id or a status makes update() read the entry first: never the fast path's business.
    if (r.key.id !== undefined || r.hasStatus) return undefined;
    return { family: r.key.family === 'ipv4' ? AF_INET : AF_INET6, bytes: encodeUpdate(r, undefined) };
  } catch {
    return undefined;
  }
}

/** The fast path's bytes, written at `offset` bytes into a writer (2: not at a word boundary). */
function fastUpdate(spec: unknown, offset = 0): { family: number; bytes: Buffer } | undefined {
  const u = readUpdateFast(spec);
  if (u === undefined) return undefined;
  const w = new AttrWriter(16);
  w.raw(offset);
  const family = writeUpdateFast(w, u);
  return { family, bytes: w.finish().subarray(offset) };
}

const commonUpdate = fc.record(
  {
    proto: fc.constantFrom('tcp', 'udp', 'udplite', 'sctp', 'dccp', 6, 17),
    orig: fc.oneof(
      fc.record({ src: v4, dst: v4, sport: fc.nat(65535), dport: fc.nat(65535) }),
      fc.record({ src: v6, dst: v6, sport: fc.nat(65535), dport: fc.nat(65535) }),
    ),
    zone: fc.option(fc.nat(65535), { nil: undefined }),
    timeout: fc.integer({ min: 1, max: 0xffffffff }),
    mark: fc.nat(0xffffffff),
  },
  { requiredKeys: ['proto', 'orig', 'mark'] },
);
/** Any keys, and the fast shape's keys with odd values (so both verdicts come up often). */
const anyUpdate = fc.oneof(
  fc.record(
    {
      proto, orig: fc.oneof({ weight: 5, arbitrary: tuple }, oddValue), reply: tuple, zone: fc.oneof(fc.nat(65535), oddValue),
      id: u32, mark: fc.oneof(u32, fc.constant({ value: 1, mask: 0xff })), timeout: u32, status: fc.constant(['ASSURED']), labels: fc.constant([1]),
    },
    { requiredKeys: [] },
  ),
  fc.record(
    {
      proto, orig: fc.oneof({ weight: 5, arbitrary: fc.record({ src: address, dst: address, sport: port, dport: port }) }, oddValue),
      zone: fc.oneof(fc.nat(65535), oddValue), mark: u32, timeout: u32,
    },
    { requiredKeys: [] },
  ),
);

describe('readUpdateFast + writeUpdateFast', () => {
  test('write what resolveUpdate() + encodeUpdate() write (IPv4, IPv6, zone, timeout, mark)', () => {
    for (const s of [
      { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 1000 }, mark: 7 },
      { proto: 'tcp', orig: { src: '2001:db8::1', dst: 'fd00::2', sport: 443, dport: 65535 }, zone: 7, timeout: 30 },
      { proto: 132, orig: { src: '192.0.2.1', dst: '192.0.2.2', sport: 0, dport: 0 }, zone: 0, timeout: 0xffffffff, mark: 0 },
    ]) {
      const f = fastUpdate(s);
      expect(f).toBeDefined();
      expect(f).toEqual(generalUpdate(s));
      expect(fastUpdate(s, 2)).toEqual(f); // the byte-wise branch, for a writer off a word boundary
    }
  });

  test('decline what they do not handle, leaving it to resolveUpdate()', () => {
    const base = { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, mark: 1 };
    for (const s of [
      { proto: 'udp', reply: base.orig, mark: 1 },
      { ...base, id: 5 }, // checked against the entry first
      { ...base, status: ['ASSURED'] },
      { ...base, labels: [1] },
      { ...base, mark: { value: 1, mask: 0xff } },
      { ...base, timeout: 0 },
      { ...base, proto: 'icmp' },
      { proto: 'udp', orig: base.orig }, // nothing to update: resolveUpdate() says so
      { ...base, orig: { ...base.orig, dst: '::1' } },
      { ...base, makr: 5 }, // a typo: resolveUpdate() names it
      null,
      [base],
    ]) {
      expect(readUpdateFast(s)).toBeUndefined();
    }
  });

  test('on generated common updates: always accept, same bytes as the general path', () => {
    fc.assert(
      fc.property(commonUpdate, (s) => {
        const f = fastUpdate(s);
        expect(f).toBeDefined();
        expect(f).toEqual(generalUpdate(s));
      }),
      { numRuns: 2000 },
    );
  });

  test('on generated updates of any shape: accept only what the general path accepts, with the same bytes', () => {
    let accepted = 0;
    fc.assert(
      fc.property(anyUpdate, (s) => {
        const f = fastUpdate(s);
        if (f === undefined) return;
        accepted++;
        expect(f).toEqual(generalUpdate(s));
      }),
      { numRuns: 5000 },
    );
    expect(accepted).toBeGreaterThan(0); // the comparison ran
  });
});
