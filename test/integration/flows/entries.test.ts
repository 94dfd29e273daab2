import { Conntrack } from '../../../lib/conntrack';
import { ConntrackError } from '../../../lib/common/errors';
import type { Flow } from '../../../lib/flows/flow';
import { Sandbox, withSandbox } from '../../../apps/testing';

/** One line of `conntrack -L -o extended,id`, parsed. */
interface CliEntry {
  family: string;
  proto: string;
  timeout: number;
  state?: string;
  orig: Record<string, string>;
  reply: Record<string, string>;
  flags: string[];
  mark: number;
  zone: number;
  id: number;
  line: string;
}

function parseCli(out: string): CliEntry[] {
  const entries: CliEntry[] = [];
  for (const line of out.split('\n')) {
    const m = /^(ipv4|ipv6)\s+\d+\s+(\S+)\s+\d+\s+(\d+)\s+(.*)$/.exec(line.trim());
    if (!m) continue;
    const rest = m[4].split(/\s+/);
    const e: CliEntry = { family: m[1], proto: m[2], timeout: Number(m[3]), orig: {}, reply: {}, flags: [], mark: 0, zone: 0, id: 0, line };
    let side: Record<string, string> = e.orig;
    for (const tok of rest) {
      const kv = /^(\w+)=(.*)$/.exec(tok);
      if (tok.startsWith('[')) e.flags.push(tok.slice(1, -1));
      else if (!kv) e.state = tok;
      else if (kv[1] === 'mark') e.mark = Number(kv[2]);
      else if (kv[1] === 'zone') e.zone = Number(kv[2]);
      else if (kv[1] === 'use') continue;
      else if (kv[1] === 'id' && side === e.reply && e.reply.id !== undefined) e.id = Number(kv[2]);
      else if (kv[1] === 'id' && side === e.reply && e.proto !== 'icmp' && e.proto !== 'ipv6-icmp') e.id = Number(kv[2]);
      else {
        if (kv[1] === 'src' && side === e.orig && e.orig.src !== undefined) side = e.reply;
        side[kv[1]] = kv[2];
      }
    }
    entries.push(e);
  }
  return entries;
}

async function cliList(ns: Sandbox, args = ''): Promise<CliEntry[]> {
  const { stdout } = await ns.sh(`conntrack -L -o extended,id ${args} 2>/dev/null`);
  return parseCli(stdout);
}

/** A stable, comparable picture of the whole table. */
async function snapshot(ct: Conntrack): Promise<string[]> {
  const flows = await ct.list();
  return flows
    .map((f) => JSON.stringify([f.id, f.family, f.proto, f.orig, f.reply, f.mark, f.zone, f.status, f.state, f.labels ?? []]))
    .sort();
}

async function open(ns: Sandbox): Promise<Conntrack> {
  return Conntrack.open({ netns: ns.path });
}

const udp = (dport: number, src = '10.0.0.1') => ({ proto: 'udp' as const, orig: { src, dst: '10.0.0.2', sport: 1000, dport } });

describe('get', () => {
  test('finds by original tuple, by reply tuple, within a zone; ENOENT when absent', async () => {
    await withSandbox(async (ns) => {
      await ns.sh(
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 -m 9 && ' +
          'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 -w 7 -m 10',
      );
      const ct = await open(ns);
      try {
        const cli = await cliList(ns);
        const f = await ct.get(udp(53));
        expect(f.mark).toBe(9);
        expect(f.zone).toBe(0);
        expect(f.id).toBe(cli.find((e) => e.zone === 0)!.id);
        const z = await ct.get({ ...udp(53), zone: 7 });
        expect(z.mark).toBe(10);
        expect(z.id).toBe(cli.find((e) => e.zone === 7)!.id);
        const r = await ct.get({ proto: 'udp', reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 53, dport: 1000 } }, { direction: 'reply' });
        expect(r.id).toBe(f.id);
        // A Flow passed straight back.
        expect((await ct.get(f)).id).toBe(f.id);
        await expect(ct.get(udp(54))).rejects.toMatchObject({ code: 'ENOENT', errno: 2 });
        await expect(ct.get({ ...udp(53), zone: 8 })).rejects.toMatchObject({ code: 'ENOENT' });
      } finally {
        await ct.close();
      }
    });
  });
});

describe('create', () => {
  test('IPv4 UDP, IPv6 TCP with state, ICMP, mark and zone, as conntrack -L sees them', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(53), timeout: 120, mark: 42 });
        await ct.create({ proto: 'tcp', orig: { src: 'fd00::1', dst: 'fd00::2', sport: 40000, dport: 443 }, timeout: 300, state: 'ESTABLISHED', zone: 3, status: ['ASSURED'] });
        await ct.create({ proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.3', icmp: { type: 8, code: 0, id: 77 } }, timeout: 30 });
        await ct.create({ proto: 'icmpv6', orig: { src: 'fd00::1', dst: 'fd00::3', icmp: { type: 128, id: 9 } }, timeout: 30 });
        const cli = await cliList(ns);
        expect(cli).toHaveLength(4);
        const u = cli.find((e) => e.proto === 'udp')!;
        expect(u).toMatchObject({ family: 'ipv4', mark: 42, zone: 0 });
        expect(u.orig).toMatchObject({ src: '10.0.0.1', dst: '10.0.0.2', sport: '1000', dport: '53' });
        expect(u.reply).toMatchObject({ src: '10.0.0.2', dst: '10.0.0.1', sport: '53', dport: '1000' });
        expect(u.timeout).toBeGreaterThan(100);
        const t = cli.find((e) => e.proto === 'tcp')!;
        expect(t).toMatchObject({ family: 'ipv6', state: 'ESTABLISHED', zone: 3 });
        expect(t.flags).toContain('ASSURED');
        expect(t.orig).toMatchObject({ src: 'fd00::1', dst: 'fd00::2', sport: '40000', dport: '443' });
        const i = cli.find((e) => e.proto === 'icmp')!;
        expect(i.orig).toMatchObject({ src: '10.0.0.1', dst: '10.0.0.3', type: '8', code: '0', id: '77' });
        expect(i.reply).toMatchObject({ type: '0', id: '77' });
        const i6 = cli.find((e) => e.proto === 'icmpv6')!;
        expect(i6.orig).toMatchObject({ src: 'fd00::1', type: '128' });
        expect(i6.reply).toMatchObject({ type: '129' });
      } finally {
        await ct.close();
      }
    });
  });

  test('a duplicate rejects with EEXIST and leaves the first entry alone', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(53), timeout: 120, mark: 1 });
        const err = await ct.create({ ...udp(53), timeout: 50, mark: 2 }).catch((e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err).toMatchObject({ code: 'EEXIST', errno: 17 });
        const cli = await cliList(ns);
        expect(cli).toHaveLength(1);
        expect(cli[0].mark).toBe(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('NAT: SNAT rewrites reply.dst/dport and sets SRC_NAT, DNAT rewrites reply.src/sport and sets DST_NAT', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(53), timeout: 60, nat: { src: { address: '192.0.2.7', port: 3333 } } });
        await ct.create({ ...udp(80), timeout: 60, nat: { dst: { address: '198.51.100.9', port: 8080 } } });
        await ct.create({ proto: 'tcp', orig: { src: 'fd00::1', dst: 'fd00::2', sport: 5, dport: 6 }, timeout: 60, state: 'ESTABLISHED', nat: { src: { address: 'fd00::99' } } });
        const snat = await cliList(ns, '--src-nat');
        expect(snat).toHaveLength(2);
        const s4 = snat.find((e) => e.family === 'ipv4')!;
        expect(s4.reply).toMatchObject({ src: '10.0.0.2', dst: '192.0.2.7', sport: '53', dport: '3333' });
        const s6 = snat.find((e) => e.family === 'ipv6')!;
        expect(s6.reply).toMatchObject({ src: 'fd00::2', dst: 'fd00::99', sport: '6', dport: '5' });
        const dnat = await cliList(ns, '--dst-nat');
        expect(dnat).toHaveLength(1);
        expect(dnat[0].reply).toMatchObject({ src: '198.51.100.9', dst: '10.0.0.1', sport: '8080', dport: '1000' });
        const f = await ct.get(udp(80));
        expect(f.status).toContain('DST_NAT');
        expect(f.status).not.toContain('SRC_NAT');
      } finally {
        await ct.close();
      }
    });
  });

  test('labels: refused (and nothing kept) without label space; stored once a ruleset uses ct label', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        const before = await snapshot(ct);
        const err = await ct.create({ ...udp(53), timeout: 60, labels: [3] }).catch((e) => e);
        expect(err).toMatchObject({ code: 'ERR_UNSUPPORTED', field: 'labels' });
        expect(await snapshot(ct)).toEqual(before);
        expect(await cliList(ns)).toHaveLength(0);

        // nft's `ct label set` makes the kernel reserve label space in this namespace.
        await ns.sh(
          "nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct label set 127",
        );
        await ct.create({ ...udp(53), timeout: 60, labels: [3, 64, 100] });
        const f = await ct.get(udp(53));
        expect(f.labels).toEqual([3, 64, 100]);
        expect(await cliList(ns)).toHaveLength(1);
        await ct.update({ ...udp(53), labels: { set: [4], unset: [3] } });
        expect((await ct.get(udp(53))).labels).toEqual([4, 64, 100]);
        await ct.update({ ...udp(53), labels: [1] });
        expect((await ct.get(udp(53))).labels).toEqual([1]);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('update', () => {
  test('mark with and without mask, timeout, TCP state, status, checked with conntrack -L', async () => {
    await withSandbox(async (ns) => {
      await ns.sh(
        'conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2 -t 100 --state SYN_SENT -m 0x13 && ' +
          'conntrack -I -p udp -s fd00::1 -d fd00::2 --sport 1 --dport 2 -t 100 -w 4',
      );
      const ct = await open(ns);
      try {
        const tcp = { proto: 'tcp' as const, orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 } };
        await ct.update({ ...tcp, mark: { value: 0x20, mask: 0xf0 }, state: 'ESTABLISHED', timeout: 900, status: ['ASSURED'] });
        let cli = (await cliList(ns)).find((e) => e.proto === 'tcp')!;
        expect(cli.mark).toBe(0x23);
        expect(cli.state).toBe('ESTABLISHED');
        expect(cli.timeout).toBeGreaterThan(800);
        expect(cli.flags).toContain('ASSURED');
        await ct.update({ ...tcp, mark: 7 });
        cli = (await cliList(ns)).find((e) => e.proto === 'tcp')!;
        expect(cli.mark).toBe(7);
        // A Flow passed back with a change: its other fields (status list, timeout...) are harmless.
        const v6 = (await ct.list({ family: 'ipv6' }))[0];
        await ct.update({ ...v6, mark: 99 });
        const c6 = (await cliList(ns)).find((e) => e.family === 'ipv6')!;
        expect(c6).toMatchObject({ mark: 99, zone: 4 });
        await expect(ct.update({ ...tcp, orig: { ...tcp.orig, dport: 3 }, mark: 1 })).rejects.toMatchObject({ code: 'ENOENT' });
      } finally {
        await ct.close();
      }
    });
  });

  test('with the id of an entry that was deleted and re-created, the new entry is not touched', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(53), timeout: 100, mark: 1 });
        const old = await ct.get(udp(53));
        await ct.delete(old);
        // Ids hash the entry's memory address: let other entries take the freed slot first,
        // so the re-created entry gets a different id (as it would on a busy system).
        for (let i = 0; i < 8; i++) await ct.create({ ...udp(1000 + i), timeout: 100 });
        await ct.create({ ...udp(53), timeout: 100, mark: 2 });
        const fresh = await ct.get(udp(53));
        expect(fresh.id).not.toBe(old.id);
        await expect(ct.update({ ...udp(53), id: old.id, mark: 77 })).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(ct.delete({ ...udp(53), id: old.id })).rejects.toMatchObject({ code: 'ENOENT' });
        const cli = (await cliList(ns)).filter((e) => e.orig.dport === '53');
        expect(cli).toHaveLength(1);
        expect(cli[0].mark).toBe(2);
        expect(cli[0].id).toBe(fresh.id);
        await ct.update({ ...fresh, mark: 3 });
        expect((await cliList(ns)).find((e) => e.orig.dport === '53')!.mark).toBe(3);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('delete', () => {
  test('by tuple, by Flow (tuple + id), in a zone; ENOENT when absent', async () => {
    await withSandbox(async (ns) => {
      await ns.sh(
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 && ' +
          'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 -w 5 && ' +
          'conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 1 --dport 2 -t 100 --state ESTABLISHED',
      );
      const ct = await open(ns);
      try {
        await ct.delete({ ...udp(53), zone: 5 });
        let cli = await cliList(ns);
        expect(cli.map((e) => e.zone).sort()).toEqual([0, 0]);
        const v6 = (await ct.list({ family: 'ipv6' }))[0];
        await ct.delete(v6);
        cli = await cliList(ns);
        expect(cli).toHaveLength(1);
        expect(cli[0].proto).toBe('udp');
        await ct.delete(udp(53));
        expect(await cliList(ns)).toHaveLength(0);
        await expect(ct.delete(udp(53))).rejects.toMatchObject({ code: 'ENOENT', errno: 2 });
      } finally {
        await ct.close();
      }
    });
  });
});

describe('flush and deleteMatching', () => {
  async function populate(ns: Sandbox): Promise<void> {
    await ns.sh(
      [
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 53 -t 100 -m 0x101',
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 2 --dport 53 -t 100 -m 0x201',
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 3 --dport 53 -t 100 -m 0x102 -w 9',
        'conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 4 --dport 80 -t 100 --state ESTABLISHED -u ASSURED',
        'conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 5 --dport 80 -t 100 --state ESTABLISHED -w 9',
        'conntrack -I -p udp -s fd00::1 -d fd00::2 --sport 6 --dport 53 -t 100 -m 0x101',
      ].join(' && '),
    );
  }

  test('flush by mark with mask, by status, by family, by zone, then everything', async () => {
    await withSandbox(async (ns) => {
      await populate(ns);
      const ct = await open(ns);
      try {
        await ct.flush({ mark: { value: 0x1, mask: 0xff } }); // 0x101, 0x201, 0x101 (v6)
        let cli = await cliList(ns);
        expect(cli.map((e) => e.orig.sport).sort()).toEqual(['3', '4', '5']);
        await ct.flush({ status: ['ASSURED'] });
        cli = await cliList(ns);
        expect(cli.map((e) => e.orig.sport).sort()).toEqual(['3', '5']);
        await ct.flush({ family: 'ipv6' });
        cli = await cliList(ns);
        expect(cli.map((e) => e.orig.sport)).toEqual(['3']);
        await ct.create({ ...udp(7), timeout: 100 });
        await ct.flush({ zone: 9 });
        cli = await cliList(ns);
        expect(cli.map((e) => e.orig.dport)).toEqual(['7']);
        await ct.flush();
        expect(await cliList(ns)).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('deleteMatching counts what it removed, with filters and a predicate', async () => {
    await withSandbox(async (ns) => {
      await populate(ns);
      const ct = await open(ns);
      try {
        expect(await ct.deleteMatching({ proto: 'udp', orig: { dport: 53 } }, (f: Flow) => f.family === 'ipv4' && f.zone === 0)).toBe(2);
        let cli = await cliList(ns);
        expect(cli.map((e) => e.orig.sport).sort()).toEqual(['3', '4', '5', '6']);
        expect(await ct.deleteMatching({ zone: 9 })).toBe(2);
        cli = await cliList(ns);
        expect(cli.map((e) => e.orig.sport).sort()).toEqual(['4', '6']);
        expect(await ct.deleteMatching({ orig: { src: '10.0.0.0/8' } })).toBe(1);
        expect(await ct.deleteMatching({ mark: 0x999 })).toBe(0);
        await ct.create({ ...udp(9), timeout: 100, mark: 0x55 });
        await ct.create({ ...udp(10), timeout: 100, mark: 0x55 });
        expect(await ct.deleteMatching({ mark: 0x55 }, undefined, { exact: false })).toBe(2);
        expect(await ct.deleteMatching()).toBe(1);
        expect(await cliList(ns)).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('deleteMatching removes thousands with pipelined deletes; an AbortSignal stops it', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        const n = 3000;
        await Promise.all(Array.from({ length: n }, (_, i) => ct.create({ proto: 'udp', orig: { src: '10.1.0.1', dst: '10.2.0.1', sport: 1 + (i % 60000), dport: 53 }, timeout: 300, mark: i % 2 })));
        expect(await ct.deleteMatching({ proto: 'udp', mark: 1 })).toBe(n / 2); // proto: not a kernel flush, so dump + pipelined deletes
        const cli = await cliList(ns);
        expect(cli).toHaveLength(n / 2);
        expect(cli.every((e) => e.mark === 0)).toBe(true);
        const ac = new AbortController();
        ac.abort();
        await expect(ct.deleteMatching({}, undefined, { signal: ac.signal })).rejects.toMatchObject({ code: 'ERR_ABORTED' });
        expect(await cliList(ns)).toHaveLength(n / 2);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('concurrency', () => {
  test('5000 concurrent creates, then 5000 concurrent deletes (some absent) all settle correctly', async () => {
    await withSandbox(async (ns) => {
      const ct = await open(ns);
      try {
        const n = 5000;
        const key = (i: number) => ({ proto: (i % 2 ? 'udp' : 'tcp') as 'udp' | 'tcp', orig: { src: i % 3 ? '10.9.0.1' : 'fd00::9', dst: i % 3 ? '10.9.0.2' : 'fd00::a', sport: 10000 + i, dport: 80 } });
        const creates = await Promise.allSettled(
          Array.from({ length: n + 100 }, (_, i) => ct.create({ ...key(i % n), timeout: 300, state: i % 2 ? undefined : 'ESTABLISHED' })),
        );
        expect(creates.filter((r) => r.status === 'fulfilled')).toHaveLength(n);
        const dup = creates.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
        expect(dup).toHaveLength(100);
        expect(dup.every((r) => r.reason.code === 'EEXIST')).toBe(true);
        expect(await cliList(ns)).toHaveLength(n);
        // Delete the even ones twice over: one of each pair succeeds, the other is ENOENT.
        const dels = await Promise.allSettled(Array.from({ length: n }, (_, i) => ct.delete(key(2 * (i % (n / 2))))));
        expect(dels.filter((r) => r.status === 'fulfilled')).toHaveLength(n / 2);
        expect((dels.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]).every((r) => r.reason.code === 'ENOENT')).toBe(true);
        const left = await cliList(ns);
        expect(left).toHaveLength(n / 2);
        expect(left.every((e) => e.proto === 'udp')).toBe(true);
      } finally {
        await ct.close();
      }
    });
  });
});
