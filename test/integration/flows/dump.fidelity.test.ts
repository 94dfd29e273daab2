/**
 * list() against `conntrack -L -o extended,id,ktimestamp`, field by field, on a mixed
 * workload: real IPv4/IPv6 TCP, UDP and ICMP traffic on loopback (tracked through an nft
 * ruleset that also sets marks and a zone), plus entries created over netlink with marks
 * and zones, with accounting and timestamps on.
 */
import { Conntrack, Flow } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { CliFlow, parseCli } from './dump.cli';

const RULESET = `
table inet fidelity {
  chain raw {
    type filter hook output priority -300;
    udp dport 7001 ct zone set 5
    udp sport 7001 ct zone set 5
  }
  chain out {
    type filter hook output priority 0;
    ct state new counter
    tcp dport 7000 ct mark set 0x2a
    meta l4proto icmp ct mark set 0x10
  }
}
`;

// Real traffic: TCP and UDP exchanges over 127.0.0.1 and ::1, and a one-way UDP datagram.
const TRAFFIC = `
const net = require('net'), dgram = require('dgram');
async function tcp(host) {
  const srv = net.createServer((s) => s.on('data', (d) => s.end('pong:' + d)));
  await new Promise((r) => srv.listen(7000, host, r));
  await new Promise((resolve, reject) => {
    const c = net.connect(7000, host, () => c.write('ping'));
    c.on('data', () => {}); c.on('end', () => { c.end(); resolve(); }); c.on('error', reject);
  });
  await new Promise((r) => srv.close(r));
}
async function udp(type, host) {
  const srv = dgram.createSocket(type); const cli = dgram.createSocket(type);
  await new Promise((r) => srv.bind(7001, host, r));
  srv.on('message', (m, rinfo) => srv.send('pong', rinfo.port, rinfo.address));
  await new Promise((r) => { cli.on('message', r); cli.send('ping', 7001, host); });
  await new Promise((r) => cli.send('again', 7001, host, r));
  await new Promise((r) => setTimeout(r, 50));
  cli.close(); srv.close();
}
async function oneway(type, host) {
  const s = dgram.createSocket(type);
  await new Promise((r) => s.send('x', 7002, host, r));
  s.close();
}
(async () => {
  await tcp('127.0.0.1'); await tcp('::1');
  await udp('udp4', '127.0.0.1'); await udp('udp6', '::1');
  await oneway('udp4', '127.0.0.1'); await oneway('udp6', '::1');
})().catch((e) => { console.error(e); process.exit(1); });
`;

async function populate(ns: Sandbox): Promise<void> {
  await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
  await ns.sysctl('net.netfilter.nf_conntrack_timestamp', 1);
  await ns.run('nft', ['-f', '-'], { input: RULESET });
  await ns.run('node', ['-e', TRAFFIC]);
  await ns.run('ping', ['-c1', '-q', '127.0.0.1']);
  await ns.run('ping', ['-6', '-c1', '-q', '::1']);
  await ns.sh(
    [
      'conntrack -I -p tcp -s 10.1.0.1 -d 10.1.0.2 --sport 1234 --dport 80 -t 300 --state ESTABLISHED -m 0x11 -w 9',
      'conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 40000 --dport 443 -t 250 --state SYN_SENT -m 0xfffffffe',
      'conntrack -I -p udp -s fd00::3 -d fd00::4 --sport 5353 --dport 53 -t 120 -m 3 -w 2',
      'conntrack -I -p udp -s 10.1.0.3 -d 10.1.0.4 --sport 68 --dport 67 -t 60',
      'conntrack -I -p icmp -s 10.1.0.5 -d 10.1.0.6 --icmp-type 8 --icmp-code 0 --icmp-id 4242 -t 30 -w 9',
      'conntrack -I -p icmpv6 -s fd00::5 -d fd00::6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 77 -t 30 -m 5',
    ].join(' && '),
  );
}

function expectTuple(kind: string, proto: string, got: Flow['orig'], want: CliFlow['orig'], counters: Flow['counters'] extends infer C ? C : never, dir: 'orig' | 'reply'): void {
  const ctx = `${kind} ${dir}`;
  expect({ ctx, src: got.src, dst: got.dst }).toEqual({ ctx, src: want.src, dst: want.dst });
  if (proto === 'icmp' || proto === 'icmpv6') {
    expect({ ctx, icmp: got.icmp }).toEqual({ ctx, icmp: want.icmp });
    expect(got.sport).toBeUndefined();
  } else {
    expect({ ctx, sport: got.sport, dport: got.dport }).toEqual({ ctx, sport: want.sport, dport: want.dport });
  }
  expect(counters).toBeDefined();
  expect({ ctx, packets: counters![dir].packets, bytes: counters![dir].bytes }).toEqual({ ctx, packets: want.packets, bytes: want.bytes });
}

describe('list() matches conntrack -L field by field', () => {
  test('mixed IPv4/IPv6 TCP/UDP/ICMP: real traffic and netlink-created entries, accounting, timestamps, marks, zones', async () => {
    await withSandbox(async (ns) => {
      await populate(ns);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const flows = await ct.list();
        // conntrack prints [start=...] in local time: pin it to UTC for parsing.
        const { stdout } = await ns.sh('TZ=UTC conntrack -L -o extended,id,ktimestamp');
        const cli = parseCli(stdout);

        // The workload really is mixed.
        const kinds = new Set(flows.map((f) => `${f.family}/${f.proto}`));
        expect([...kinds].sort()).toEqual(['ipv4/icmp', 'ipv4/tcp', 'ipv4/udp', 'ipv6/icmpv6', 'ipv6/tcp', 'ipv6/udp']);
        expect(flows.some((f) => f.zone === 5 && f.proto === 'udp' && f.orig.dport === 7001)).toBe(true); // nft ct zone set
        expect(flows.some((f) => f.mark === 0x2a && f.proto === 'tcp' && f.orig.src === '::1')).toBe(true); // nft ct mark set
        expect(flows.some((f) => f.status.includes('ASSURED'))).toBe(true);
        expect(flows.some((f) => !f.status.includes('SEEN_REPLY'))).toBe(true);
        expect(flows.length).toBeGreaterThanOrEqual(14);
        expect(cli).toHaveLength(flows.length);

        const byId = new Map(cli.map((c) => [c.id, c]));
        for (const f of flows) {
          const c = byId.get(f.id);
          const kind = `${f.family} ${f.proto} ${f.orig.src} -> ${f.orig.dst} id=${f.id}`;
          expect({ kind, found: c !== undefined }).toEqual({ kind, found: true });
          expect({ kind, family: f.family, proto: f.proto, state: f.state, mark: f.mark, zone: f.zone, use: f.use }).toEqual({
            kind,
            family: c!.family,
            proto: c!.proto,
            state: c!.state,
            mark: c!.mark,
            zone: c!.zone,
            use: c!.use,
          });
          expect({ kind, assured: f.status.includes('ASSURED'), unreplied: !f.status.includes('SEEN_REPLY') }).toEqual({
            kind,
            assured: c!.assured,
            unreplied: c!.unreplied,
          });
          expect(Math.abs(f.timeout - c!.timeout)).toBeLessThanOrEqual(1);
          expectTuple(kind, String(f.proto), f.orig, c!.orig, f.counters, 'orig');
          expectTuple(kind, String(f.proto), f.reply, c!.reply, f.counters, 'reply');
          expect(f.timestamp).toBeDefined();
          expect(c!.start).toBeDefined();
          const startSec = Number(f.timestamp!.start / 1_000_000_000n);
          expect(Math.abs(startSec - c!.start!)).toBeLessThanOrEqual(1);
          expect(f.unknown).toBeUndefined();
        }
      } finally {
        await ct.close();
      }
    });
  });
});
