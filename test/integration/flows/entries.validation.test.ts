import { Conntrack } from '../../../lib/conntrack';
import { ConntrackError } from '../../../lib/common/errors';
import { withSandbox } from '../../../apps/testing';

/**
 * Every bad input is refused with ERR_INVALID_ARGUMENT naming the field, and the table
 * is unchanged afterwards (nothing reached the kernel).
 */
const orig = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53 };
const base = { proto: 'udp', orig, timeout: 60 };

// [description, operation name, argument, field]
type Case = [string, 'create' | 'update' | 'delete' | 'get' | 'deleteMatching' | 'flush', unknown, string];

const cases: Case[] = [
  ['spec not an object', 'create', 42, 'spec'],
  ['bad source address', 'create', { ...base, orig: { ...orig, src: '10.0.0.300' } }, 'orig.src'],
  ['bad destination address', 'create', { ...base, orig: { ...orig, dst: 'example.com' } }, 'orig.dst'],
  ['mixed families in orig', 'create', { ...base, orig: { ...orig, dst: 'fd00::2' } }, 'orig.dst'],
  ['reply of another family', 'create', { ...base, reply: { src: 'fd00::2', dst: 'fd00::1', sport: 53, dport: 1000 } }, 'reply.src'],
  ['port above 65535', 'create', { ...base, orig: { ...orig, sport: 65536 } }, 'orig.sport'],
  ['negative port', 'create', { ...base, orig: { ...orig, dport: -1 } }, 'orig.dport'],
  ['fractional port', 'create', { ...base, orig: { ...orig, dport: 1.5 } }, 'orig.dport'],
  ['missing port for udp', 'create', { ...base, orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1 } }, 'orig.dport'],
  ['unknown protocol name', 'create', { ...base, proto: 'tcpp' }, 'proto'],
  ['protocol number out of range', 'create', { ...base, proto: 256 }, 'proto'],
  ['ports on a protocol without ports', 'create', { ...base, proto: 'icmp', orig: { ...orig, icmp: { type: 8 } } }, 'orig.sport'],
  ['icmp without icmp fields', 'create', { ...base, proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2' } }, 'orig.icmp'],
  ['icmp type out of range', 'create', { ...base, proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', icmp: { type: 256 } } }, 'orig.icmp.type'],
  ['icmp code out of range', 'create', { ...base, proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', icmp: { type: 8, code: -1 } } }, 'orig.icmp.code'],
  ['icmp id out of range', 'create', { ...base, proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', icmp: { type: 8, id: 70000 } } }, 'orig.icmp.id'],
  ['icmp with IPv6 addresses', 'create', { ...base, proto: 'icmp', orig: { src: 'fd00::1', dst: 'fd00::2', icmp: { type: 8 } } }, 'orig.src'],
  ['mark above 32 bits', 'create', { ...base, mark: 2 ** 32 }, 'mark'],
  ['negative mark', 'create', { ...base, mark: -1 }, 'mark'],
  ['zone above 16 bits', 'create', { ...base, zone: 65536 }, 'zone'],
  ['missing timeout', 'create', { proto: 'udp', orig }, 'timeout'],
  ['zero timeout', 'create', { ...base, timeout: 0 }, 'timeout'],
  ['negative timeout', 'create', { ...base, timeout: -5 }, 'timeout'],
  ['unknown TCP state', 'create', { ...base, proto: 'tcp', state: 'OPENISH' }, 'state'],
  ['state for UDP', 'create', { ...base, state: 'ESTABLISHED' }, 'state'],
  ['status flag the kernel will not set', 'create', { ...base, status: ['CONFIRMED'] }, 'status'],
  ['unknown status flag', 'create', { ...base, status: ['FAST'] }, 'status'],
  ['label bit out of range', 'create', { ...base, labels: [128] }, 'labels[0]'],
  ['helper name too long', 'create', { ...base, helper: 'a-very-long-helper-name' }, 'helper'],
  ['NAT target of the wrong family', 'create', { ...base, nat: { src: { address: 'fd00::9' } } }, 'nat.src.address'],
  ['NAT target not an address', 'create', { ...base, nat: { dst: { address: 'nope' } } }, 'nat.dst.address'],
  ['NAT port out of range', 'create', { ...base, nat: { dst: { address: '10.0.0.9', port: 70000 } } }, 'nat.dst.port'],
  ['NAT port on icmp', 'create', { ...base, proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.2', icmp: { type: 8 } }, nat: { src: { address: '10.0.0.9', port: 5 } } }, 'nat.src.port'],
  ['unknown NAT key', 'create', { ...base, nat: { masquerade: true } }, 'nat.masquerade'],
  ['update with nothing to change', 'update', { proto: 'udp', orig }, 'spec'],
  ['update mark value outside mask', 'update', { proto: 'udp', orig, mark: { value: 0x100, mask: 0xff } }, 'mark.value'],
  ['update unset ASSURED', 'update', { proto: 'udp', orig, status: { unset: ['ASSURED'] } }, 'status.unset'],
  ['update bad timeout', 'update', { proto: 'udp', orig, timeout: 1.5 }, 'timeout'],
  ['update unknown state', 'update', { proto: 'tcp', orig, state: 'NOPE' }, 'state'],
  ['update id out of range', 'update', { proto: 'udp', orig, id: -1, mark: 1 }, 'id'],
  ['delete without orig', 'delete', { proto: 'udp' }, 'orig'],
  ['delete with bad port', 'delete', { proto: 'udp', orig: { ...orig, sport: 99999 } }, 'orig.sport'],
  ['get without reply for direction reply', 'get', { proto: 'udp', orig }, 'reply'],
  ['deleteMatching with a bad filter', 'deleteMatching', { orig: { src: 'not-an-ip' } }, 'filter.orig.src'],
  ['flush with a bad mark', 'flush', { mark: -3 }, 'filter.mark'],
];

describe('validation of entry operations', () => {
  test.each(cases)('%s is refused and the table is unchanged', async (_name, op, arg, field) => {
    await withSandbox(async (ns) => {
      await ns.sh(
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 -m 5 && ' +
          'conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 --state ESTABLISHED',
      );
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const before = (await ns.sh('conntrack -L -o id 2>/dev/null | sort')).stdout;
        const listBefore = JSON.stringify((await ct.list()).map((f) => [f.id, f.mark, f.timeout > 0, f.status]).sort());
        let p: Promise<unknown>;
        const a = arg as never;
        switch (op) {
          case 'create': p = ct.create(a); break;
          case 'update': p = ct.update(a); break;
          case 'delete': p = ct.delete(a); break;
          case 'get': p = ct.get(a, { direction: 'reply' }); break;
          case 'deleteMatching': p = ct.deleteMatching(a); break;
          default: p = ct.flush(a); break;
        }
        const err = await p.then(() => undefined, (e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err.code).toBe('ERR_INVALID_ARGUMENT');
        expect(err.field).toBe(field);
        expect(err.message.startsWith(`${field}:`)).toBe(true);
        expect(err.message.length).toBeGreaterThan(field.length + 10);
        const after = (await ns.sh('conntrack -L -o id 2>/dev/null | sort')).stdout;
        expect(after.replace(/\s\d+\s/, ' ')).toBe(before.replace(/\s\d+\s/, ' '));
        expect(JSON.stringify((await ct.list()).map((f) => [f.id, f.mark, f.timeout > 0, f.status]).sort())).toBe(listBefore);
      } finally {
        await ct.close();
      }
    });
  });

  test('update listing a flag the entry does not have is refused before anything changes', async () => {
    await withSandbox(async (ns) => {
      await ns.sh('conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 -m 5');
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const err = await ct.update({ proto: 'udp', orig, status: ['SRC_NAT'], mark: 9 }).catch((e) => e);
        expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'status' });
        expect((await ct.get({ proto: 'udp', orig })).mark).toBe(5);
      } finally {
        await ct.close();
      }
    });
  });

  test('a kernel refusal carries errno and code, and nothing is created', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // No such helper is registered: the kernel refuses with ENOTSUP.
        const err = await ct.create({ ...base, proto: 'udp', helper: 'nosuchhelper' } as never).catch((e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err.code).toBe('ENOTSUP');
        expect(err.errno).toBe(95);
        expect(err.message).toContain('create');
        expect(await ct.list()).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });
});
