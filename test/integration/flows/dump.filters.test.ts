/**
 * Filters return the same flows as `conntrack -L` given the same filter, on one mixed
 * table (real loopback traffic plus netlink-created entries with marks and zones).
 */
import { Conntrack, FlowFilter } from '../../../lib';
import { withSandbox } from '../../../apps/testing';
import { parseCli } from './dump.cli';

const CASES: [string, FlowFilter, string[]][] = [
  ['-p tcp', { proto: 'tcp' }, ['-p', 'tcp']],
  ['-p udp', { proto: 'udp' }, ['-p', 'udp']],
  ['-p icmp', { proto: 'icmp' }, ['-p', 'icmp']],
  ['-f ipv6', { family: 'ipv6' }, ['-f', 'ipv6']],
  ['-s 127.0.0.1', { orig: { src: '127.0.0.1' } }, ['-s', '127.0.0.1']],
  ['-d ::1', { orig: { dst: '::1' } }, ['-d', '::1']],
  ['-p tcp --dport 80', { proto: 'tcp', orig: { dport: 80 } }, ['-p', 'tcp', '--dport', '80']],
  ['-p udp --sport 5353', { proto: 'udp', orig: { sport: 5353 } }, ['-p', 'udp', '--sport', '5353']],
  ['-m 0x11', { mark: 0x11 }, ['-m', '0x11']],
  ['-m 0x10/0xf0', { mark: { value: 0x10, mask: 0xf0 } }, ['-m', '0x10/0xf0']],
  ['-w 9', { zone: 9 }, ['-w', '9']],
  ['--status ASSURED', { status: ['ASSURED'] }, ['--status', 'ASSURED']],
  ['--status SEEN_REPLY', { status: ['SEEN_REPLY'] }, ['--status', 'SEEN_REPLY']],
  ['-f ipv6 -p udp', { family: 'ipv6', proto: 'udp' }, ['-f', 'ipv6', '-p', 'udp']],
  ['-d fd00::4 -p udp --dport 53', { proto: 'udp', orig: { dst: 'fd00::4', dport: 53 } }, ['-d', 'fd00::4', '-p', 'udp', '--dport', '53']],
  ['-f ipv4 -p udp -w 9', { family: 'ipv4', proto: 'udp', zone: 9 }, ['-f', 'ipv4', '-p', 'udp', '-w', '9']],
];

describe('filters agree with conntrack -L', () => {
  test('every filter returns the same flows as the CLI', async () => {
    await withSandbox(async (ns) => {
      await ns.run('nft', ['-f', '-'], {
        input: 'table inet t {\n chain c {\n type filter hook output priority 0;\n ct state new counter\n meta l4proto icmp ct mark set 0x10\n }\n}\n',
      });
      await ns.run('ping', ['-c1', '-q', '127.0.0.1']);
      await ns.run('ping', ['-6', '-c1', '-q', '::1']);
      await ns.run('node', ['-e', `
        const d = require('dgram');
        const s4 = d.createSocket('udp4'), s6 = d.createSocket('udp6');
        let n = 2; const done = () => { if (--n === 0) { s4.close(); s6.close(); } };
        s4.send('x', 9999, '127.0.0.1', done); s6.send('x', 9999, '::1', done);`]);
      await ns.sh(
        [
          'conntrack -I -p tcp -s 10.1.0.1 -d 10.1.0.2 --sport 1234 --dport 80 -t 300 --state ESTABLISHED -m 0x11 -w 9 -u SEEN_REPLY,ASSURED',
          'conntrack -I -p tcp -s 10.1.0.1 -d 10.1.0.3 --sport 1235 --dport 80 -t 300 --state ESTABLISHED -m 0x1f',
          'conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 40000 --dport 443 -t 250 --state SYN_SENT',
          'conntrack -I -p udp -s fd00::3 -d fd00::4 --sport 5353 --dport 53 -t 120 -m 3 -w 2',
          'conntrack -I -p udp -s 10.1.0.3 -d 10.1.0.4 --sport 5353 --dport 67 -t 60 -w 9',
          'conntrack -I -p icmp -s 10.1.0.5 -d 10.1.0.6 --icmp-type 8 --icmp-code 0 --icmp-id 4242 -t 30 -w 9',
        ].join(' && '),
      );
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const all = await ct.list();
        expect(all.length).toBeGreaterThanOrEqual(10);
        for (const [label, filter, args] of CASES) {
          const { stdout } = await ns.run('conntrack', ['-L', '-o', 'extended,id', ...args]);
          const want = parseCli(stdout).map((c) => c.id).sort();
          const got = (await ct.list(filter)).map((f) => f.id).sort();
          expect({ label, ids: got }).toEqual({ label, ids: want });
        }
        // The cases are not vacuous: most select a proper, non-empty part of the table.
        const sizes = await Promise.all(CASES.map(([, f]) => ct.list(f).then((l) => l.length)));
        expect(sizes.filter((n) => n > 0 && n < all.length).length).toBeGreaterThanOrEqual(CASES.length - 2);
      } finally {
        await ct.close();
      }
    });
  });
});
