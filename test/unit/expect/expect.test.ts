import { readFileSync } from 'fs';
import { join } from 'path';
import { ConntrackError } from '../../../lib/common/errors';
import { decodeExpectation } from '../../../lib/expect/decode';
import { encodeCreate, encodeKey } from '../../../lib/expect/encode';
import { compileExpectationFilter } from '../../../lib/expect/filter';
import { decodeExpectationStats } from '../../../lib/expect/stats';
import { eventGroups } from '../../../lib/expect/events';
import { forEachAttr, NFNL_ATTR_OFFSET } from '../../../lib/wire/netlink';
import { decodeTuple } from '../../../lib/flows/tuple';

const dir = join(__dirname, '../../fixtures/expect');
const fixture = (name: string): Buffer => readFileSync(join(dir, name));
const decode = (b: Buffer) => decodeExpectation(b, 0, b.length);

/** Messages captured from Linux 6.18 by test/fixtures/expect/capture.js. */
describe('decodeExpectation on captured kernel messages', () => {
  const cli = readFileSync(join(dir, 'conntrack-L-expect.txt'), 'utf8');

  test('an IPv4 expectation matches what conntrack -L expect printed for it', () => {
    const x = decode(fixture('exp-ipv4-50000.bin'));
    expect(x).toMatchObject({
      family: 'ipv4',
      tuple: { proto: 'tcp', src: '10.1.0.2', dst: '10.1.0.1', sport: 0, dport: 50000 },
      mask: { proto: 'tcp', src: '255.255.255.255', dst: '255.255.255.255', sport: 0, dport: 65535 },
      master: { proto: 'tcp', src: '10.1.0.1', dst: '10.1.0.2', sport: 40000, dport: 21 },
      class: 0,
      helper: 'ftp',
      flags: [],
      nat: undefined,
      unknown: undefined,
    });
    expect(x.id).toBeGreaterThan(0);
    expect(cli).toContain(`${x.timeout} proto=6 src=10.1.0.2 dst=10.1.0.1 sport=0 dport=50000 mask-src=255.255.255.255`);
  });

  test('flags, a source mask and a NAT mapping', () => {
    const x = decode(fixture('exp-ipv4-50001.bin'));
    expect(x.flags).toEqual(['PERMANENT', 'INACTIVE']);
    expect(x.flagBits).toBe(3);
    expect(x.mask.src).toBe('255.255.255.0');
    expect(x.nat).toEqual({ dir: 'reply', tuple: { proto: 'tcp', src: '192.0.2.7', dst: '0.0.0.0', sport: 2121, dport: 0 } });
    expect(cli).toContain(`${x.timeout} proto=6 src=10.1.0.0 dst=10.1.0.1 sport=0 dport=50001 mask-src=255.255.255.0`);
    expect(cli).toContain('PERMANENT,INACTIVE class=0 helper=ftp');
  });

  test('an IPv6 expectation', () => {
    const x = decode(fixture('exp-ipv6-50002.bin'));
    expect(x.family).toBe('ipv6');
    expect(x.tuple).toEqual({ proto: 'tcp', src: 'fd00::2', dst: 'fd00::1', sport: 0, dport: 50002 });
    expect(x.mask.src).toBe('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
    expect(x.master).toMatchObject({ src: 'fd00::1', dst: 'fd00::2', sport: 40000 });
  });

  test('truncated messages and unknown attributes are skipped, never fatal', () => {
    const whole = fixture('exp-ipv4-50001.bin');
    for (let cut = 0; cut <= whole.length; cut++) {
      const b = Buffer.from(whole.subarray(0, cut));
      if (cut >= 4) b.writeUInt32LE(cut, 0);
      expect(() => decodeExpectation(b, 0, Math.max(cut, NFNL_ATTR_OFFSET))).not.toThrow();
    }
    const half = Buffer.from(whole.subarray(0, whole.length - 3));
    expect(decode(half).unknown).toEqual([-1]);
    // Append an attribute of an unknown type (99).
    const extra = Buffer.concat([whole, Buffer.from([8, 0, 99, 0, 1, 2, 3, 4])]);
    extra.writeUInt32LE(extra.length, 0);
    const x = decode(extra);
    expect(x.unknown).toEqual([99]);
    expect(x.tuple.dport).toBe(50001);
  });

  test('per-CPU statistics', () => {
    const s0 = fixture('stats-cpu0.bin');
    const s1 = fixture('stats-cpu1.bin');
    const a = decodeExpectationStats(s0, 0, s0.length);
    const b = decodeExpectationStats(s1, 0, s1.length);
    expect([a.cpu, b.cpu]).toEqual([0, 1]);
    // The capture created three expectations and removed none.
    expect(a.create + b.create).toBe(3);
    expect(a.delete + b.delete).toBe(0);
    expect(a.new + b.new).toBe(0);
  });
});

function nested(payload: Buffer, type: number): Buffer | undefined {
  let found: Buffer | undefined;
  forEachAttr(payload, 0, payload.length, (t, s, e) => {
    if (t === type) found = payload.subarray(s, e);
  });
  return found;
}

describe('encodeCreate', () => {
  const master = { proto: 'tcp' as const, orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 40000, dport: 21 } };

  test('defaults: proto from the master, sport 0, mask over the whole source, any source port', () => {
    const enc = encodeCreate({ master, tuple: { src: '10.0.0.2', dst: '10.0.0.1', dport: 50000 } });
    expect(enc.nfFamily).toBe(2);
    const t = decodeTuple(nested(enc.payload, 2)!, 0, nested(enc.payload, 2)!.length);
    expect(t).toMatchObject({ protonum: 6, tuple: { src: '10.0.0.2', dst: '10.0.0.1', sport: 0, dport: 50000 } });
    const m = nested(enc.payload, 3)!;
    expect(decodeTuple(m, 0, m.length).tuple).toMatchObject({ src: '255.255.255.255', dst: '255.255.255.255', sport: 0, dport: 65535 });
    const ms = nested(enc.payload, 1)!;
    expect(decodeTuple(ms, 0, ms.length).tuple).toMatchObject(master.orig);
    expect(enc.timeoutPayload).toBeUndefined();
    expect(enc.masterText).toBe('10.0.0.1:40000 -> 10.0.0.2:21');
  });

  test('a given source port is matched exactly by default; a Flow-like or ProtoTuple master works', () => {
    const enc = encodeCreate({ master: { proto: 'tcp', ...master.orig }, tuple: { src: '10.0.0.2', dst: '10.0.0.1', sport: 20, dport: 50000 }, timeout: 30 });
    const m = nested(enc.payload, 3)!;
    expect(decodeTuple(m, 0, m.length).tuple.sport).toBe(65535);
    expect(nested(enc.payload, 4)!.readUInt32BE(0)).toBe(30);
    expect(enc.timeoutPayload).toBeDefined();
  });

  const bad: Array<[string, unknown, string, RegExp]> = [
    ['not an object', 5, 'spec', /must be an object/],
    ['unknown key', { master, tuple: {}, colour: 1 }, 'colour', /unknown key/],
    ['no master', { tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 } }, 'master', /required/],
    ['master without proto', { master: { orig: master.orig }, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 } }, 'master.proto', /required/],
    ['icmp master', { master: { proto: 'icmp', orig: { src: '1.1.1.1', dst: '1.1.1.2', icmp: { type: 8, code: 0, id: 1 } } }, tuple: { src: '1.1.1.1', dst: '1.1.1.2' } }, 'master.proto', /helpers track/],
    ['bad master port', { master: { proto: 'tcp', orig: { ...master.orig, dport: 65536 } }, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 } }, 'master.orig.dport', /0-65535/],
    ['no tuple', { master }, 'tuple', /required/],
    ['bad tuple address', { master, tuple: { src: '1.1.1', dst: '1.1.1.2', dport: 1 } }, 'tuple.src', /not an IPv4 or IPv6/],
    ['family mix', { master, tuple: { src: '::1', dst: '::2', dport: 1 } }, 'tuple.src', /ipv6 but the master is ipv4/],
    ['icmp tuple', { master, tuple: { proto: 'icmp', src: '1.1.1.1', dst: '1.1.1.2' } }, 'tuple.proto', /can be created for tcp/],
    ['mask of another family', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, mask: { src: 'ffff::' } }, 'mask.src', /ipv6 but the tuple is ipv4/],
    ['mask dst not all ones', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, mask: { dst: '255.0.0.0' } }, 'mask.dst', /exactly/],
    ['mask dport not all ones', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, mask: { dport: 1 } }, 'mask.dport', /exactly/],
    ['mask proto differs', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, mask: { proto: 'udp' } }, 'mask.proto', /must equal/],
    ['mask unknown key', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, mask: { foo: 1 } }, 'mask.foo', /unknown key/],
    ['zero timeout', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, timeout: 0 }, 'timeout', /at least 1/],
    ['fractional timeout', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, timeout: 1.5 }, 'timeout', /integer/],
    ['unknown flag', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, flags: ['FOREVER'] }, 'flags', /unknown flag/],
    ['USERSPACE flag', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, flags: ['USERSPACE'] }, 'flags', /set by the kernel/],
    ['class without helper', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, class: 1 }, 'class', /together with helper/],
    ['long helper name', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, helper: 'x'.repeat(16) }, 'helper', /1-15 bytes/],
    ['zone mismatch', { master: { ...master, zone: 1 }, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, zone: 2 }, 'zone', /differs/],
    ['nat dir', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, nat: { dir: 'in', tuple: { src: '1.1.1.1' } } }, 'nat.dir', /'orig' or 'reply'/],
    ['nat family', { master, tuple: { src: '1.1.1.1', dst: '1.1.1.2', dport: 1 }, nat: { dir: 'orig', tuple: { src: '::1' } } }, 'nat.tuple.src', /ipv6 but the master is ipv4/],
  ];
  test.each(bad)('refuses %s, naming the field', (_name, spec, field, message) => {
    let err: unknown;
    try {
      encodeCreate(spec);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConntrackError);
    expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field });
    expect((err as Error).message).toMatch(message);
  });
});

describe('encodeKey, filters and event types', () => {
  test('an Expectation names itself by tuple, zone and id', () => {
    const x = decode(fixture('exp-ipv4-50000.bin'));
    const k = encodeKey({ ...x, zone: 4 }, 'target');
    const types: number[] = [];
    forEachAttr(k.payload, 0, k.payload.length, (t) => types.push(t));
    expect(types).toEqual([2, 7, 5]); // CTA_EXPECT_TUPLE, CTA_EXPECT_ZONE, CTA_EXPECT_ID
    expect(k.zone).toBe(4);
    expect(() => encodeKey({ proto: 'tcp', src: '1.1.1.1', dst: '1.1.1.2', dport: 70000 }, 'target')).toThrow(expect.objectContaining({ field: 'target.dport' }));
    expect(() => encodeKey(null, 'target')).toThrow(expect.objectContaining({ field: 'target' }));
  });

  test('filters match decoded expectations and name bad fields', () => {
    const x = decode(fixture('exp-ipv4-50001.bin'));
    expect(compileExpectationFilter({ helper: 'ftp', tuple: { src: '10.1.0.0/24', dport: 50001 } }).match(x)).toBe(true);
    expect(compileExpectationFilter({ master: { sport: 40000 } }).match(x)).toBe(false);
    expect(compileExpectationFilter({ family: 'ipv6' }).match(x)).toBe(false);
    expect(compileExpectationFilter({ helper: 'ftp' }).helperOnly).toBe(true);
    expect(() => compileExpectationFilter({ tuple: { src: '10.0.0.0/33' } })).toThrow(expect.objectContaining({ field: 'filter.tuple.src' }));
    expect(() => compileExpectationFilter({ family: 'ipv4', master: { dst: '::1' } })).toThrow(expect.objectContaining({ field: 'filter.master.dst' }));
    expect(() => compileExpectationFilter({ mark: 1 })).toThrow(expect.objectContaining({ field: 'filter.mark' }));
  });

  test('event types map to the expectation multicast groups', () => {
    expect(eventGroups(undefined, 'types')).toEqual([4, 6]);
    expect(eventGroups(['destroy'], 'types')).toEqual([6]);
    expect(() => eventGroups([], 'types')).toThrow(expect.objectContaining({ field: 'types' }));
    expect(() => eventGroups(['update'], 'types')).toThrow(/no update events/);
  });
});

describe('decodeExpectationStats on malformed input', () => {
  test('a message too short for its header decodes to zeros instead of throwing', () => {
    for (const len of [0, 4, 16, 19]) {
      expect(decodeExpectationStats(Buffer.alloc(len), 0, len)).toEqual({ cpu: 0, new: 0, create: 0, delete: 0 });
    }
  });
});
