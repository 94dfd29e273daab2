/**
 * lib/common/errors.ts and the message builder show(): errno names as Node gives them,
 * syscall names, hints, and messages that survive whatever value a caller passes.
 */
import { getSystemErrorName } from 'util';
import { ConntrackError, errnoName, fromNative, kernelError } from '../../../lib/common/errors';
import { checkHelperName, checkInt, show } from '../../../lib/common/validate';
import { compileFilter } from '../../../lib/flows/filter';
import { encodeCreate as encodeEntry, resolveKey, resolveUpdate } from '../../../lib/flows/entry-spec';
import { validateEventsOptions } from '../../../lib/flows/events';
import { encodeCreate as encodeExpectation } from '../../../lib/expect/encode';
import { compileExpectationFilter } from '../../../lib/expect/filter';

describe('errnoName', () => {
  test('agrees with util.getSystemErrorName for every errno libuv names', () => {
    let named = 0;
    for (let n = 1; n < 200; n++) {
      const node = getSystemErrorName(-n);
      if (node.startsWith('Unknown')) continue;
      named++;
      expect([n, errnoName(n)]).toEqual([n, node]);
    }
    expect(named).toBeGreaterThan(60);
  });

  test('EAGAIN, not EWOULDBLOCK; ENOTSUP for 95, as Node names them', () => {
    expect(errnoName(11)).toBe('EAGAIN');
    expect(errnoName(95)).toBe('ENOTSUP');
    expect(kernelError(11, 'receiving').code).toBe('EAGAIN');
  });

  test('errnos libuv does not name fall back to the C name, then to E<n>', () => {
    expect(errnoName(35)).toBe('EDEADLK');
    expect(errnoName(42)).toBe('ENOMSG');
    expect(errnoName(4095)).toBe('E4095'); // libuv's UV_EOF, not an errno
    expect(errnoName(524)).toBe('E524');
  });
});

describe('kernelError and fromNative', () => {
  test('a ctnetlink refusal has no syscall and the entry hint', () => {
    const e = kernelError(2, 'deleting an entry');
    expect(e).toMatchObject({ code: 'ENOENT', errno: 2 });
    expect(e.syscall).toBeUndefined();
    expect(e.message).toBe('deleting an entry failed: ENOENT: no such entry');
  });

  test('a failed syscall keeps the bare syscall name; the detail stays in the message', () => {
    const e = fromNative(Object.assign(new Error('setsockopt(SO_RCVBUF): Operation not permitted'), { errno: 1, syscall: 'setsockopt(SO_RCVBUF)' }), 'setting the receive buffer');
    expect(e).toMatchObject({ code: 'EPERM', errno: 1, syscall: 'setsockopt' });
    expect(e.message).toMatch(/^setting the receive buffer failed: EPERM from setsockopt\(SO_RCVBUF\)\. .*CAP_NET_ADMIN/);
  });

  test('a syscall failure gets the hint for that syscall and errno, not the entry hint', () => {
    const e = kernelError(93, 'opening a netlink socket', undefined, 'socket');
    expect(e).toMatchObject({ code: 'EPROTONOSUPPORT', errno: 93, syscall: 'socket' });
    expect(e.message).toBe('opening a netlink socket failed: EPROTONOSUPPORT from socket: the kernel has no netfilter netlink support: load the nfnetlink and nf_conntrack_netlink modules');
    expect(kernelError(2, 'reading', undefined, 'open').message).not.toMatch(/no such entry/);
  });

  test('the addon\'s "closed" pseudo-syscall becomes ERR_CLOSED', () => {
    const e = fromNative(Object.assign(new Error('closed: Bad file descriptor'), { errno: 9, syscall: 'closed' }), 'joining a group');
    expect(e).toMatchObject({ code: 'ERR_CLOSED' });
    expect(e.syscall).toBeUndefined();
  });

  test('a ConntrackError passes through; anything else is ERR_NATIVE with the cause', () => {
    const ce = new ConntrackError('ERR_CLOSED', 'x');
    expect(fromNative(ce, 'op')).toBe(ce);
    const other = new TypeError('boom');
    expect(fromNative(other, 'op')).toMatchObject({ code: 'ERR_NATIVE', message: 'op failed: boom', cause: other });
  });
});

describe('show', () => {
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  test.each<[string, unknown, RegExp]>([
    ['NaN', NaN, /^NaN$/],
    ['Infinity', -Infinity, /^-Infinity$/],
    ['-0', -0, /^-0$/],
    ['a bigint', 10n, /^10n$/],
    ['a symbol', Symbol('tcp'), /^Symbol\(tcp\)$/],
    ['a string', 'tcpp', /^"tcpp"$/],
    ['undefined', undefined, /^undefined$/],
    ['a null-prototype object', Object.assign(Object.create(null), { a: 1 }), /null prototype.*a: 1/],
    ['a bigint inside an object', { value: 10n }, /value: 10n/],
    ['NaN inside an array', [1, NaN], /NaN/],
    ['a cyclic object', cyclic, /Circular/],
    ['a function', function helper() {}, /helper/],
    ['a revoked proxy', revoked.proxy, /./],
    ['an object whose custom inspect throws', { [Symbol.for('nodejs.util.inspect.custom')]: () => { throw new Error('no'); } }, /./],
  ])('%s', (_name, value, shown) => {
    expect(show(value)).toMatch(shown);
  });

  test('long strings are cut', () => {
    expect(show('x'.repeat(10_000)).length).toBeLessThan(120);
  });

  test('checkInt reports NaN and bigints as they are', () => {
    expect(() => checkInt(NaN, 0, 1, 'f')).toThrow('f: must be an integer 0-1, got NaN');
    expect(() => checkInt(10n, 0, 1, 'f')).toThrow('f: must be an integer 0-1, got 10n');
  });
});

describe('one helper-name rule, the kernel\'s (NF_CT_HELPER_NAME_LEN)', () => {
  test.each(['ftp', 'Q.931', 'netbios-ns', 'x'.repeat(15)])('accepts %j', (name) => {
    expect(checkHelperName(name, 'helper')).toBe(name);
  });
  test.each<unknown>(['', 'x'.repeat(16), 'é'.repeat(8), 'ft\0p', 7, null])('refuses %j', (name) => {
    expect(() => checkHelperName(name, 'helper')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'helper', message: expect.stringMatching(/1-15 bytes/) }));
  });
  test('entries, expectations and expectation filters apply it alike', () => {
    const long = 'x'.repeat(16);
    const flow = { proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 5 };
    const master = { proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 21 } };
    const tuple = { src: '10.0.0.2', dst: '10.0.0.1', dport: 3 };
    expect(() => encodeEntry({ ...flow, helper: long } as never)).toThrow(/helper: must be a helper name of 1-15 bytes/);
    expect(() => encodeExpectation({ master, tuple, helper: long })).toThrow(/helper: must be a helper name of 1-15 bytes/);
    expect(() => compileExpectationFilter({ helper: long })).toThrow(/filter.helper: must be a helper name of 1-15 bytes/);
    // A callback name is not a helper name: the kernel takes any length.
    expect(() => encodeExpectation({ master, tuple, fn: 'nat-follow-master' })).not.toThrow();
  });
});

describe('a missing port says which protocol needs which ports', () => {
  test.each([
    ['udp', { src: '10.0.0.1', dst: '10.0.0.2', sport: 1 }, 'orig.dport', /orig.dport: is missing: udp names a flow by both ports; give sport and dport/],
    ['tcp', { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 }, 'orig.sport', /orig.sport: is missing: tcp names a flow by both ports/],
    ['sctp', { src: '10.0.0.1', dst: '10.0.0.2' }, 'orig.sport', /sctp names a flow by both ports/],
  ])('%s', (proto, orig, field, message) => {
    expect(() => resolveKey({ proto, orig })).toThrow(expect.objectContaining({ field, message: expect.stringMatching(message) }));
  });
  test('ports on a protocol without ports name that protocol', () => {
    expect(() => resolveKey({ proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, icmp: { type: 8 } } })).toThrow('orig.sport: icmp has no ports; remove sport and dport');
    expect(() => resolveKey({ proto: 'gre', orig: { src: '10.0.0.1', dst: '10.0.0.2' } })).toThrow(/gre names a flow by both ports/);
  });
});

/**
 * Every field of each input, replaced by a value JSON cannot show: the call either accepts
 * it or throws a ConntrackError, never a TypeError from building the message.
 */
describe('odd values in any field never break the message builder', () => {
  const odd: [string, () => unknown][] = [
    ['a bigint', () => 10n],
    ['a symbol', () => Symbol('odd')],
    ['a null-prototype object', () => Object.create(null)],
    ['a null-prototype object with a bigint', () => Object.assign(Object.create(null), { value: 10n })],
    ['NaN', () => NaN],
  ];
  const orig = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53 };
  const samples: [string, unknown, (input: never) => unknown][] = [
    ['compileFilter', { family: 'ipv4', proto: 'tcp', orig: { src: '10.0.0.0/8', sport: 1 }, mark: { value: 1, mask: 3 }, zone: 1, status: { set: ['ASSURED'] } }, compileFilter],
    ['entry create', { proto: 'udp', orig, timeout: 30, mark: 1, zone: 2, status: ['ASSURED'], labels: [1], helper: 'ftp', nat: { src: { address: '192.0.2.1', port: 1 } } }, encodeEntry],
    ['entry update', { proto: 'tcp', orig, mark: { value: 1, mask: 1 }, timeout: 5, state: 'ESTABLISHED' }, resolveUpdate],
    ['entry key', { proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', icmp: { type: 8, code: 0, id: 1 } }, zone: 1, id: 5 }, resolveKey],
    ['events options', { types: ['new'], receiveBufferSize: 4096, growBuffer: { max: 8192 }, highWaterMark: 10, reliable: true }, validateEventsOptions],
    ['expectation', { master: { proto: 'tcp', orig: { ...orig, dport: 21 } }, tuple: { src: '10.0.0.2', dst: '10.0.0.1', dport: 3 }, mask: { src: '255.255.255.255' }, timeout: 5, flags: ['PERMANENT'], helper: 'ftp', class: 0, nat: { dir: 'orig', tuple: { src: '10.0.0.3', sport: 1 } } }, encodeExpectation],
    ['expectation filter', { family: 'ipv4', proto: 'tcp', helper: 'ftp', class: 1, tuple: { src: '10.0.0.0/8' } }, compileExpectationFilter],
  ];

  /** Paths to every value in a sample (objects and arrays included). */
  function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
    const out: (string | number)[][] = at.length ? [at] : [];
    if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, Array.isArray(v) ? Number(k) : k]));
    return out;
  }
  function replaced(v: unknown, path: (string | number)[], value: unknown): unknown {
    if (path.length === 0) return value;
    const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
    copy[path[0]] = replaced(copy[path[0]], path.slice(1), value);
    return copy;
  }

  test.each(samples)('%s', (_name, sample, call) => {
    expect(() => call(sample as never)).not.toThrow();
    let refused = 0;
    for (const path of paths(sample)) {
      for (const [what, make] of odd) {
        try {
          call(replaced(sample, path, make()) as never);
        } catch (e) {
          if (!(e instanceof ConntrackError)) throw new Error(`${path.join('.')} = ${what}: ${(e as Error)?.stack}`);
          expect(e.message).not.toMatch(/\[object Object\]/);
          refused++;
        }
      }
    }
    expect(refused).toBeGreaterThan(0);
  });

  test('a filter family of 10n is shown as 10n', () => {
    expect(() => compileFilter({ family: 10n } as never)).toThrow("filter.family: must be 'ipv4' or 'ipv6', got 10n");
  });
});
