/**
 * Zeroed counters (IPCTNL_MSG_CT_GET_CTRZERO, `conntrack -L -z`) and the dying and
 * unconfirmed lists (IPCTNL_MSG_CT_GET_DYING / GET_UNCONFIRMED, `conntrack -L dying`),
 * against the kernel and the CLI.
 */
import { Conntrack } from '../../../lib';
import type { CreateSpec, Flow } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { parseCli } from './dump.cli';

/** Real UDP flows with counters: `perPort` datagrams to each port (IPv4 and IPv6). */
async function traffic(ns: Sandbox, ports: number[], perPort: number): Promise<void> {
  await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
  await ns.run('nft', ['-f', '-'], {
    input: 'table inet t {\n chain out {\n type filter hook output priority 0;\n ct state new counter\n }\n}\n',
  });
  await ns.run('node', ['-e', `
    const dgram = require('dgram');
    (async () => {
      for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']]) {
        const s = dgram.createSocket(type);
        // A fixed source port: later rounds count on the same entries.
        await new Promise((r) => s.bind(6000, r));
        for (const p of ${JSON.stringify(ports)}) for (let i = 0; i < ${perPort}; i++) await new Promise((r) => s.send('0123456789', p, host, r));
        s.close();
      }
    })();`]);
}

/** `conntrack -L [table] -o extended,id [args]` (the table must follow -L directly). */
async function cli(ns: Sandbox, args: string, table = ''): Promise<ReturnType<typeof parseCli>> {
  const { stdout } = await ns.sh(`conntrack -L ${table} -o extended,id ${args} 2>/dev/null`);
  return parseCli(stdout);
}

const packets = (f: Flow): bigint => f.counters!.orig.packets;

describe('zeroCounters', () => {
  test('list({}, { zeroCounters }) returns the counters before zeroing, as conntrack -L -z shows them; IPv4 and IPv6', async () => {
    await withSandbox(async (ns) => {
      await traffic(ns, [7001, 7002], 3);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const before = await ct.list();
        expect(before).toHaveLength(4);
        expect(before.map(packets)).toEqual([3n, 3n, 3n, 3n]);
        const zeroed = await ct.list(undefined, { zeroCounters: true });
        expect(zeroed.map(packets)).toEqual([3n, 3n, 3n, 3n]);
        expect(zeroed.map((f) => f.counters!.orig.bytes)).toEqual(before.map((f) => f.counters!.orig.bytes));
        expect((await ct.list()).map(packets)).toEqual([0n, 0n, 0n, 0n]);
        // The CLI's -z: the same, read and zero.
        await traffic(ns, [7001], 2);
        const z = await cli(ns, '-z');
        expect(z.filter((f) => f.orig.dport === 7001).map((f) => f.orig.packets)).toEqual([2n, 2n]);
        expect((await ct.list()).map(packets)).toEqual([0n, 0n, 0n, 0n]);
        // A family filter: the kernel zeroes as it dumps.
        await traffic(ns, [7002], 1);
        const v6 = await ct.list({ family: 'ipv6' }, { zeroCounters: true });
        expect(v6.map((f) => [f.orig.dport, packets(f)]).sort()).toEqual([[7001, 0n], [7002, 1n]]);
        expect((await ct.list({ family: 'ipv6' })).map(packets)).toEqual([0n, 0n]);
        expect((await ct.list({ family: 'ipv4', orig: { dport: 7002 } })).map(packets)).toEqual([1n]);
      } finally {
        await ct.close();
      }
    });
  });

  test('with a filter the kernel cannot apply, only the matching entries are zeroed (conntrack -z refuses filters)', async () => {
    await withSandbox(async (ns) => {
      await traffic(ns, [7001, 7002, 7003], 2);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const z = await ct.list({ proto: 'udp', orig: { dport: 7002 } }, { zeroCounters: true });
        expect(z.map((f) => [f.family, packets(f)]).sort()).toEqual([['ipv4', 2n], ['ipv6', 2n]]);
        const after = await ct.list();
        for (const f of after) expect(packets(f)).toBe(f.orig.dport === 7002 ? 0n : 2n);
        const { stderr } = await ns.sh('conntrack -L -z -p udp 2>&1 1>/dev/null; true').then((r) => ({ stderr: r.stdout }));
        expect(stderr).toContain("Can't use -z with filtering parameters");

        // get(): one entry, read and zeroed.
        const one = after.find((f) => f.family === 'ipv6' && f.orig.dport === 7003)!;
        const got = await ct.get(one, { zeroCounters: true });
        expect(packets(got)).toBe(2n);
        expect(packets(await ct.get(one))).toBe(0n);
        // dump() cannot promise that with such a filter, and says so.
        expect(() => ct.dump({ proto: 'udp' }, { zeroCounters: true })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.zeroCounters' }));
        await expect(ct.list(undefined, { zeroCounters: 'yes' } as never)).rejects.toMatchObject({ field: 'options.zeroCounters' });
        await expect(ct.get(one, { zeroCounters: 1 } as never)).rejects.toMatchObject({ field: 'options.zeroCounters' });
        // A family-only dump zeroes as it streams.
        let n = 0;
        for await (const f of ct.dump({ family: 'ipv4' }, { zeroCounters: true })) n += Number(packets(f));
        expect(n).toBe(4);
        expect((await ct.list({ family: 'ipv4' })).map(packets)).toEqual([0n, 0n, 0n]);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('dying and unconfirmed tables', () => {
  test("table 'dying' lists entries whose DESTROY event is waiting for redelivery, as conntrack -L dying does", async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // A reliable listener (NETLINK_BROADCAST_ERROR) that does not read: its small buffer
        // fills, delivery of further DESTROY events fails, and the kernel keeps those entries
        // on its dying list to re-send the events later.
        const stalled = ct.events({ types: ['destroy'], reliable: true, receiveBufferSize: 4096, highWaterMark: 1 });
        const specs: CreateSpec[] = [];
        for (let i = 0; i < 40; i++) specs.push({ proto: 'udp', orig: { src: i % 2 ? 'fd00::1' : '10.0.0.1', dst: i % 2 ? 'fd00::2' : '10.0.0.2', sport: 1000 + i, dport: 53 }, timeout: 300 });
        expect((await ct.createMany(specs)).ok).toBe(40);
        expect(await ct.list({ table: 'dying' })).toEqual([]);
        expect(await ct.deleteMatching({ proto: 'udp' })).toBe(40);
        expect(await ct.list()).toEqual([]);

        const dying = await ct.list({ table: 'dying' });
        expect(dying.length).toBeGreaterThan(20);
        expect(dying.every((f) => f.status.includes('DYING'))).toBe(true);
        const key = (f: { family?: string; orig: { src: string; sport?: number } }) => `${f.orig.src}|${f.orig.sport}`;
        expect(dying.map(key).sort()).toEqual((await cli(ns, '', 'dying')).map(key).sort());
        // Filters apply (in the library: the kernel takes none for this list).
        expect((await ct.list({ table: 'dying', family: 'ipv6' })).every((f) => f.family === 'ipv6')).toBe(true);
        expect((await ct.list({ table: 'dying', orig: { sport: dying[0].orig.sport } })).map(key)).toEqual([key(dying[0])]);
        stalled.close();
      } finally {
        await ct.close();
      }
    });
  });

  test("table 'unconfirmed' is an empty dump on this kernel (as conntrack -L unconfirmed); other operations refuse table", async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 300 });
        expect(await ct.list({ table: 'unconfirmed' })).toEqual([]);
        expect(await cli(ns, '', 'unconfirmed')).toEqual([]);
        expect(await ct.list({ table: 'conntrack' })).toHaveLength(1);
        await expect(ct.list({ table: 'expect' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.table' });
        await expect(ct.list({ table: 'dying' }, { zeroCounters: true })).rejects.toMatchObject({ field: 'options.zeroCounters' });
        await expect(ct.deleteMatching({ table: 'dying' })).rejects.toMatchObject({ field: 'filter.table' });
        expect(() => ct.events({ filter: { table: 'dying' } })).toThrow(expect.objectContaining({ field: 'options.filter.table' }));
        expect(await ct.list()).toHaveLength(1);
      } finally {
        await ct.close();
      }
    });
  });
});
