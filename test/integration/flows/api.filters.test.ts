/**
 * The filters issue 13 added, against the kernel and `conntrack -L`'s own selection:
 * NAT (--src-nat / --dst-nat / --any-nat, with and without an address), protocol state
 * (--state, with the CLI's LISTEN alias), protocol names from /etc/protocols (-p igmp), and
 * entries named by their reply tuple (-D --reply-src ...). IPv4 and IPv6.
 */
import { Conntrack } from '../../../lib';
import type { Flow } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { CliFlow, parseCli } from './dump.cli';

const key = (f: { orig: { src: string; dst: string; sport?: number; dport?: number } }): string =>
  `${f.orig.src}|${f.orig.dst}|${f.orig.sport ?? ''}|${f.orig.dport ?? ''}`;
const keys = (fs: Array<Flow | CliFlow>): string[] => fs.map(key).sort();

async function cli(ns: Sandbox, args: string): Promise<CliFlow[]> {
  const { stdout } = await ns.sh(`conntrack -L -o extended,id ${args} 2>/dev/null`);
  return parseCli(stdout);
}

/** NAT entries of both families: SNAT with and without a port, DNAT, and untranslated ones. */
async function natTable(ct: Conntrack): Promise<void> {
  const t4 = (sport: number) => ({ src: '10.0.0.1', dst: '10.0.0.2', sport, dport: 80 });
  const t6 = (sport: number) => ({ src: 'fd00::1', dst: 'fd00::2', sport, dport: 80 });
  await ct.create({ proto: 'tcp', orig: t4(1000), timeout: 300, state: 'ESTABLISHED', nat: { src: { address: '192.0.2.9', port: 4000 } } });
  await ct.create({ proto: 'tcp', orig: t4(1001), timeout: 300, state: 'ESTABLISHED', nat: { src: { address: '192.0.2.8' } } });
  await ct.create({ proto: 'udp', orig: t4(1002), timeout: 300, nat: { dst: { address: '10.9.9.9', port: 8080 } } });
  await ct.create({ proto: 'udp', orig: t4(1003), timeout: 300 });
  await ct.create({ proto: 'udp', orig: t6(2000), timeout: 300, nat: { src: { address: 'fd00::99' } } });
  await ct.create({ proto: 'udp', orig: t6(2001), timeout: 300, nat: { src: { address: 'fd00::98', port: 7000 } } });
  await ct.create({ proto: 'tcp', orig: t6(2002), timeout: 300, state: 'SYN_SENT', nat: { dst: { address: 'fd00::77' } } });
  await ct.create({ proto: 'udp', orig: t6(2003), timeout: 300 });
}

describe('NAT filters', () => {
  test("nat: 'src' | 'dst' | 'any' select what conntrack -L --src-nat / --dst-nat / --any-nat select, IPv4 and IPv6", async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await natTable(ct);
        const src = await ct.list({ nat: 'src' });
        const dst = await ct.list({ nat: 'dst' });
        const any = await ct.list({ nat: 'any' });
        expect(src).toHaveLength(4);
        expect(dst).toHaveLength(2);
        expect(any).toHaveLength(6);
        expect(keys(src)).toEqual(keys(await cli(ns, '--src-nat')));
        expect(keys(dst)).toEqual(keys(await cli(ns, '--dst-nat')));
        expect(keys(any)).toEqual(keys(await cli(ns, '--any-nat')));
        expect(keys(await ct.list({ family: 'ipv6', nat: 'src' }))).toEqual(keys(await cli(ns, '-f ipv6 --src-nat')));
        // Combined with the kernel-side filters.
        expect(keys(await ct.list({ proto: 'tcp', nat: 'any' }))).toEqual(keys(await cli(ns, '-p tcp --any-nat')));
      } finally {
        await ct.close();
      }
    });
  });

  test('natAddress / natPort: the translated address and port, as --src-nat ADDR[:PORT] means them; IPv6 compared too', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await natTable(ct);
        // IPv4: the same selection as the CLI.
        const bySnat = await ct.list({ nat: 'src', natAddress: '192.0.2.9' });
        expect(bySnat.map((f) => f.orig.sport)).toEqual([1000]);
        expect(keys(bySnat)).toEqual(keys(await cli(ns, '--src-nat 192.0.2.9')));
        const withPort = await ct.list({ nat: 'src', natAddress: '192.0.2.9', natPort: 4000 });
        expect(keys(withPort)).toEqual(keys(await cli(ns, '--src-nat 192.0.2.9:4000')));
        expect(keys(await ct.list({ nat: 'dst', natAddress: '10.9.9.9' }))).toEqual(keys(await cli(ns, '--dst-nat 10.9.9.9')));
        expect(keys(await ct.list({ natAddress: '10.9.9.9' }))).toEqual(keys(await cli(ns, '--any-nat 10.9.9.9')));
        expect(await ct.list({ nat: 'dst', natAddress: '10.9.9.9', natPort: 8080 })).toHaveLength(1);
        expect(await ct.list({ nat: 'dst', natAddress: '10.9.9.9', natPort: 8081 })).toHaveLength(0);
        // A prefix works too.
        expect(await ct.list({ nat: 'src', natAddress: '192.0.2.0/24' })).toHaveLength(2);

        // IPv6: the library compares the address; conntrack 1.4.7 ignores an IPv6 address
        // and lists every IPv6 SNAT entry (filter_nat() reads only ATTR_SNAT_IPV4).
        const v6 = await ct.list({ nat: 'src', natAddress: 'fd00::99' });
        expect(v6.map((f) => f.orig.sport)).toEqual([2000]);
        expect(v6[0].reply.dst).toBe('fd00::99');
        const cliV6 = await cli(ns, '--src-nat fd00::99');
        expect(keys(cliV6)).toEqual(keys(await ct.list({ family: 'ipv6', nat: 'src' })));
        expect(cliV6.map((f) => f.reply.dst).sort()).toEqual(['fd00::98', 'fd00::99']);
        expect((await ct.list({ nat: 'dst', natAddress: 'fd00::77' })).map((f) => f.orig.sport)).toEqual([2002]);
        expect(await ct.list({ nat: 'src', natAddress: 'fd00::98', natPort: 7000 })).toHaveLength(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('refusals name the field', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await expect(ct.list({ nat: 'both' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.nat' });
        await expect(ct.list({ natAddress: '1.2.3' })).rejects.toMatchObject({ field: 'filter.natAddress' });
        await expect(ct.list({ family: 'ipv6', natAddress: '1.2.3.4' })).rejects.toMatchObject({ field: 'filter.natAddress' });
        await expect(ct.list({ proto: 'icmp', natPort: 80 })).rejects.toMatchObject({ field: 'filter.natPort' });
        await expect(ct.list({ natPort: 70000 })).rejects.toMatchObject({ field: 'filter.natPort' });
      } finally {
        await ct.close();
      }
    });
  });
});

describe('state filter', () => {
  test('state names select what conntrack -L --state selects, including the CLI alias LISTEN; SCTP and arrays', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const states = ['ESTABLISHED', 'SYN_SENT', 'TIME_WAIT', 'ESTABLISHED', 'SYN_SENT2', 'CLOSE'];
        for (let i = 0; i < states.length; i++) {
          const fam = i % 2 ? { src: 'fd00::1', dst: 'fd00::2' } : { src: '10.0.0.1', dst: '10.0.0.2' };
          await ct.create({ proto: 'tcp', orig: { ...fam, sport: 3000 + i, dport: 22 }, timeout: 300, state: states[i] });
        }
        await ct.create({ proto: 'sctp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 5, dport: 6 }, timeout: 300, state: 'ESTABLISHED' });
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 5, dport: 6 }, timeout: 300 });

        for (const s of ['ESTABLISHED', 'SYN_SENT', 'TIME_WAIT', 'LISTEN', 'CLOSE']) {
          const ours = await ct.list({ proto: 'tcp', state: s });
          expect(keys(ours)).toEqual(keys(await cli(ns, `-p tcp --state ${s}`)));
        }
        expect(await ct.list({ proto: 'tcp', state: 'ESTABLISHED' })).toHaveLength(2);
        // LISTEN is SYN_SENT2 (one value since Linux 2.6.31): Flow.state shows SYN_SENT2.
        const listen = await ct.list({ proto: 'tcp', state: 'listen' });
        expect(listen.map((f) => f.state)).toEqual(['SYN_SENT2']);
        expect(keys(await ct.list({ family: 'ipv6', proto: 'tcp', state: 'SYN_SENT2' }))).toEqual(keys(await cli(ns, '-f ipv6 -p tcp --state LISTEN')));
        // Without proto: every protocol with that state name (TCP and SCTP here).
        expect((await ct.list({ state: 'ESTABLISHED' })).map((f) => f.proto).sort()).toEqual(['sctp', 'tcp', 'tcp']);
        expect(keys(await ct.list({ proto: 'sctp', state: 'ESTABLISHED' }))).toEqual(keys(await cli(ns, '-p sctp --state ESTABLISHED')));
        expect(await ct.list({ proto: 'tcp', state: ['TIME_WAIT', 'CLOSE'] })).toHaveLength(2);

        await expect(ct.list({ proto: 'tcp', state: 'OPEN' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.state' });
        await expect(ct.list({ proto: 'udp', state: 'ESTABLISHED' })).rejects.toMatchObject({ field: 'filter.state' });
        await expect(ct.list({ state: ['ESTABLISHED', 'NOPE'] })).rejects.toMatchObject({ field: 'filter.state[1]' });
        await expect(ct.list({ state: [] })).rejects.toMatchObject({ field: 'filter.state' });
      } finally {
        await ct.close();
      }
    });
  });

  test('events take the state filter too (checked by the library after the kernel filter)', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const ev = ct.events({ types: ['new'], filter: { proto: 'tcp', state: 'ESTABLISHED' } });
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 300, state: 'SYN_SENT' });
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 3, dport: 4 }, timeout: 300, state: 'ESTABLISHED' });
        const it = ev[Symbol.asyncIterator]();
        const first = await it.next();
        expect(first.value.flow.orig.sport).toBe(3);
        expect(ev.stats.filtered).toBe(1);
        ev.close();
      } finally {
        await ct.close();
      }
    });
  });
});

describe('protocol names from /etc/protocols', () => {
  test("proto: 'igmp' is 2 (as conntrack -p igmp), Flow.proto shows the number, aliases and case are accepted", async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ proto: 'igmp', orig: { src: '10.0.0.1', dst: '224.0.0.1' }, timeout: 300 });
        await ct.create({ proto: 'IGMP', orig: { src: 'fd00::1', dst: 'ff02::1' }, timeout: 300 });
        await ct.create({ proto: 'ospf', orig: { src: '10.0.0.1', dst: '224.0.0.5' }, timeout: 300 });
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 300 });
        const igmp = await ct.list({ proto: 'igmp' });
        expect(igmp.map((f) => f.proto)).toEqual([2, 2]);
        expect(keys(igmp)).toEqual(keys(await cli(ns, '-p igmp')));
        expect(keys(await ct.list({ proto: 'OSPFIGP' }))).toEqual(keys(await cli(ns, '-p ospf')));
        expect(await ct.get({ proto: 'igmp', orig: { src: '10.0.0.1', dst: '224.0.0.1' } })).toMatchObject({ proto: 2 });
        await expect(ct.list({ proto: 'no-such-proto' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.proto', message: expect.stringContaining('/etc/protocols') });
      } finally {
        await ct.close();
      }
    });
  });
});

describe('entries named by their reply tuple', () => {
  test('get and delete take { proto, reply }, like conntrack -G / -D --reply-src ... ; IPv4 and IPv6, NAT entries', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await natTable(ct);
        const all = await ct.list();
        for (const family of ['ipv4', 'ipv6'] as const) {
          const [a, b] = all.filter((f) => f.family === family && (f.status.includes('SRC_NAT') || f.status.includes('DST_NAT')));
          // get by the reply tuple finds the entry (the reply differs from the inverse: NAT).
          const got = await ct.get({ proto: a.proto, reply: a.reply });
          expect(got.id).toBe(a.id);
          // delete by the reply tuple: ours, and the CLI's for another entry.
          await ct.delete({ proto: a.proto, reply: { src: a.reply.src, dst: a.reply.dst, sport: a.reply.sport, dport: a.reply.dport } });
          await ns.sh(`conntrack -D -p ${b.proto} -r ${b.reply.src} -q ${b.reply.dst} --reply-port-src ${b.reply.sport} --reply-port-dst ${b.reply.dport}`);
          const left = await ct.list({ family });
          expect(left.find((f) => f.id === a.id)).toBeUndefined();
          expect(left.find((f) => f.id === b.id)).toBeUndefined();
          expect(keys(left)).toEqual(keys(await cli(ns, `-f ${family}`)));
          await expect(ct.delete({ proto: a.proto, reply: a.reply })).rejects.toMatchObject({ code: 'ENOENT' });
        }
        // deleteMany takes reply keys too.
        const rest = await ct.list({ proto: 'udp' });
        expect(await ct.deleteMany(rest.map((f) => ({ proto: f.proto, reply: f.reply })))).toEqual({ ok: rest.length, errors: [] });
        await expect(ct.get({ proto: 'udp' } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'orig' });
      } finally {
        await ct.close();
      }
    });
  });
});
