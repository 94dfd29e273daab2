/**
 * `nfct` spelled like conntrack-tools: for each command the real `conntrack` 1.4.7 and
 * `nfct` run on the same table, and acceptance, exit code, printed lines and the effect on
 * the table are compared.
 */
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Conntrack } from '../../../lib';
import { Netns, withNetns } from '../../helpers/netns';
import { assertBuilt, both, conntrack, nfct, normalize, spawnIn, waitFor } from './helpers';

beforeAll(assertBuilt);

/** A table with one entry of each kind the formats treat differently. */
const SEED = [
  '-I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80 --state ESTABLISHED -t 100 -u ASSURED,SEEN_REPLY -m 7',
  '-I -p udp -s 10.0.0.1 -d 10.0.0.3 --sport 53 --dport 53 -t 50 -w 3',
  '-I -p icmp -s 10.0.0.1 -d 10.0.0.4 --icmp-type 8 --icmp-code 0 --icmp-id 77 -t 30',
  '-I -p udp -s fd00::1 -d fd00::2 --sport 5 --dport 6 -t 40 -m 0x12',
  '-I -p tcp -s 10.0.0.9 -d 10.0.0.2 --sport 1 --dport 2 --state SYN_SENT -t 100 --dst-nat 10.9.9.9:8080',
  '-I -p tcp -s fd00::9 -d fd00::2 --sport 3 --dport 4 --state ESTABLISHED -t 100 --src-nat fd00::99',
  '-I -p 2 -s 10.0.0.1 -d 10.0.0.2 -t 100',
];

async function seed(ns: Netns): Promise<void> {
  for (const line of SEED) {
    const r = await conntrack(ns, line.split(' '));
    if (r.code !== 0) throw new Error(`seeding failed: conntrack ${line}: ${r.stderr}`);
  }
}

/** The table as `conntrack -L -o save` shows it, timeouts masked. */
async function table(ns: Netns): Promise<string[]> {
  const r = await conntrack(ns, ['-L', '-o', 'save']);
  expect(r.code).toBe(0);
  return normalize(r.stdout);
}

async function inBatches<T, R>(items: T[], fn: (x: T) => Promise<R>, width = 6): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

function expectSame(args: string, c: { code: number; stdout: string; stderr: string }, n: { code: number; stdout: string; stderr: string }, stderrToo = true): void {
  const label = `conntrack ${args}`;
  expect({ label, code: n.code, lines: normalize(n.stdout) }).toEqual({ label, code: c.code, lines: normalize(c.stdout) });
  if (stderrToo) expect({ label, stderr: n.stderr }).toEqual({ label, stderr: c.stderr });
}

describe('nfct with conntrack options against conntrack 1.4.7', () => {
  test('-L, -G, -C, -S: same lines, summary line and exit code, for every output format and filter', async () => {
    await withNetns(async (ns) => {
      await seed(ns);
      const cases = [
        '-L', '-L conntrack', '-L -o extended', '-L -o id', '-L -o extended,id', '-L -o save', '-L -o ktimestamp', '-L -o e',
        '-L -p udp', '-L -p UDP', '-L -p 17', '-L -p tcp --dport 80', '-L -p tcp --orig-port-src 1', '-L -p tcp --reply-port-src 8080',
        '-L -s 10.0.0.1', '-L -s 10.0.0.0/24', '-L -d 10.0.0.2', '-L -s fd00::/64', '-L --orig-dst 10.0.0.3', '-L -r 10.9.9.9',
        '-L -q 10.0.0.1', '-L -u UNREPLIED', '-L -u ASSURED', '-L -u SEEN_REPLY', '-L -u ASS', '-L -m 7', '-L -m 0x2/0x2',
        '-L -m 0', '-L -w 3', '-L -w 0', '-L -f ipv6', '-L -f ipv4', '-L --dst-nat', '-L --dst-nat 10.9.9.9',
        '-L --dst-nat 10.9.9.9:8080', '-L --dst-nat 10.9.9.9:8081', '-L --src-nat', '-L --any-nat', '-L -j',
        '-L -p tcp --state ESTABLISHED', '-L -p tcp --state SYN_SENT', '-L -p icmp --icmp-type 8', '-L -p icmp --icmp-id 78',
        '-L -p 2', '-L -p igmp', '-L -s 10.0.0.1 --mask-src 255.255.0.0', '-L -p udp -o save',
        '-G -p udp -s 10.0.0.1 -d 10.0.0.3 --sport 53 --dport 53', '-G -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80',
        '-G -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80 -o extended,id',
        '-G -p icmp -s 10.0.0.1 -d 10.0.0.4 --icmp-type 8 --icmp-code 0 --icmp-id 77',
        '-C', '-S',
      ];
      // conntrack 1.4.7 cannot get an entry by its reply tuple alone (it fails); nfct can.
      const byReply = await nfct(ns, '-G -p tcp -r 10.9.9.9 -q 10.0.0.9 --reply-port-src 8080 --reply-port-dst 1'.split(' '));
      expect(byReply.code).toBe(0);
      // A get reply counts the reference the kernel holds while answering (use=2), as conntrack -G shows.
      const unUse = (lines: string[]) => lines.map((l) => l.replace(/ use=\d+/, ' use=U'));
      expect(unUse(normalize(byReply.stdout))).toEqual(unUse(normalize((await conntrack(ns, '-L -r 10.9.9.9'.split(' '))).stdout)));
      // Read-only commands: run several at once (the machine has few cores, spawning dominates).
      const results = await inBatches(cases, (args) => both(ns, args.split(' ')));
      cases.forEach((args, i) => expectSame(args, results[i].c, results[i].n, results[i].c.code === 0));
    });
  });

  test('refusals: what conntrack refuses nfct refuses, with the same exit code and a message of its own', async () => {
    await withNetns(async (ns) => {
      await seed(ns);
      const refused = [
        '-I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2 -t 10', // no --state
        '-I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1 -t 10', // one port
        '-I -p udp -s 10.0.0.1 --sport 1 --dport 2 -t 10', // one address
        '-I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2', // no timeout
        '-I -s 10.0.0.1 -d 10.0.0.2 -t 10', // no protocol
        '-I -p gre -s 1.1.1.1 -d 2.2.2.2 -t 1', '-I -p sctp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2 --state ESTABLISHED -t 100',
        '-I -s 1.1.1.1/8 -d 2.2.2.2 -p udp --sport 1 --dport 2 -t 5', '-I -p udp -s 1.1.1.1 -d ::1 --sport 1 --dport 2 -t 5',
        '-I -p udp -s 1.1.1.1 -d 2.2.2.2 --sport 1 --dport 2 -t 5 -f ipv4', '-G -p udp -w 3', '-G -s 10.0.0.1 -d 10.0.0.3',
        '-L -t 5', '-L -x', '-L --orig', '-L -I', '-L -A', '-L -e NEW', '-L --sport 5', '-L -p tcp --sport', '-L -p bogus',
        '-L -p tcp --state BOGUS', '-L -p tcp --state listen', '-L -z -p tcp', '-L -o save,id', '-L -o bogus', '-L -u BOGUS',
        '-L -u ASSURED,', '-L --mask-src 255.0.0.0', '-L foo', '-D dying', '-U expect', '-A expect', '-L -f ipv7',
        '-L --any-nat --src-nat', '-L -s 300.1.1.1', '-L -r 10.0.0.0/8', '-L --dst-nat 10.0.0.1:', '-L --dst-nat 10.0.0.1:x',
        '-C -p tcp', '-L expect -p tcp', '-F -p tcp', '-D -p udp -t', '-E -z', '-L -l foo',
        '-G -p udp -s 10.0.0.1 -d 10.0.0.3 --sport 53 --dport 54', '-D -p tcp --dport 81',
        '-I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 80 --state ESTABLISHED -t 100', // exists
      ];
      const before = await table(ns);
      const results = await inBatches(refused, (args) => both(ns, args.split(' ')));
      for (const [i, args] of refused.entries()) {
        const { c, n } = results[i];
        expect({ args, code: n.code }).toEqual({ args, code: c.code });
        expect({ args, refused: c.code !== 0 }).toEqual({ args, refused: true });
        expect(n.stdout).toBe('');
        expect(n.stderr.length).toBeGreaterThan(0);
      }
      // Lenient values conntrack 1.4.7 accepts are accepted too (with a warning from nfct).
      for (const args of ['-L -w foo', '-L -m foo', '-L -c foo', '-L -u ass', '-L -f ipv4x', '-L -s 10.1', '-L -o userspace']) {
        const { c, n } = await both(ns, args.split(' '));
        expect({ args, code: n.code, lines: normalize(n.stdout) }).toEqual({ args, code: c.code, lines: normalize(c.stdout) });
      }
      expect(await table(ns)).toEqual(before);
    });
  });

  test('-I, -A, -D, -F, -U, -R: same effect on the table, exit code and printed lines', async () => {
    await withNetns(async (ns) => {
      const create = [
        '-I -p udp -s 10.1.0.1 -d 10.1.0.2 --sport 100 --dport 200 -t 120 -m 3',
        '-I -p tcp -s 10.1.0.1 -d 10.1.0.2 --sport 100 --dport 200 --state LISTEN -t 120 -u ASSURED',
        '-I -p tcp -r 10.1.0.2 -q 10.1.0.1 --reply-port-src 300 --reply-port-dst 400 --state ESTABLISHED -t 120',
        '-I -p udp -s fd01::1 -d fd01::2 --sport 7 --dport 8 -t 120 -w 9',
        '-I -p icmpv6 -s fd01::1 -d fd01::2 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 5 -t 120',
        '-I -p udp -s 10.1.0.5 -d 10.1.0.6 --sport 1 --dport 2 -t 120 --src-nat 10.1.0.99:999',
        '-I -p udp -s 10.1.0.5 -d 10.1.0.7 --sport 1 --dport 2 -t 120 -u FIXED_TIMEOUT',
      ];
      // Each tool builds the table on its own; conntrack -L shows the same.
      const states: string[][] = [];
      for (const tool of [conntrack, nfct]) {
        for (const line of create) {
          const r = await tool(ns, line.split(' '));
          expect({ line, code: r.code, stderr: r.stderr }).toEqual({ line, code: 0, stderr: 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been created.\n' });
        }
        states.push(await table(ns));
        const f = await tool(ns, ['-F']);
        expect(f).toEqual({ code: 0, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n' });
        expect(await table(ns)).toEqual([]);
      }
      expect(states[1]).toEqual(states[0]);
      expect(states[0].length).toBe(create.length);

      // -D with filters: the same entries go, the same lines are printed.
      const seedFile = join(mkdtempSync(join(tmpdir(), 'nfct-')), 'seed');
      writeFileSync(seedFile, ['-F', ...create].join('\n') + '\n');
      const reseed = async () => {
        const r = await conntrack(ns, ['-R', seedFile]);
        expect(r.code).toBe(0);
      };
      for (const args of ['-D -p udp', '-D -s 10.1.0.1', '-D -m 3', '-D -f ipv6', '-D -p tcp --state LISTEN', '-D -s 10.1.0.0/16 -p udp', '-D --src-nat', '-D', '-D -p udp --dport 9999']) {
        await reseed();
        const c = await conntrack(ns, args.split(' '));
        const afterC = await table(ns);
        await reseed();
        const n = await nfct(ns, args.split(' '));
        const afterN = await table(ns);
        expectSame(args, c, n);
        expect({ args, table: afterN }).toEqual({ args, table: afterC });
      }

      // -A: adds, and on an existing entry updates it (as conntrack -A does).
      await conntrack(ns, ['-F']);
      for (const tool of [conntrack, nfct]) {
        const a = await tool(ns, '-A -p udp -s 10.2.0.1 -d 10.2.0.2 --sport 1 --dport 2 -t 100'.split(' '));
        expect(a.code).toBe(0);
        expect(a.stderr).toBe('conntrack v1.4.7 (conntrack-tools): 1 flow entries have been added.\n');
      }
      expect((await table(ns)).length).toBe(1);

      // -U: nfct changes the matching entries and prints them as conntrack would list them.
      await reseed();
      const u = await nfct(ns, '-U -p udp -m 42'.split(' '));
      expect(u.code).toBe(0);
      expect(u.stderr).toBe('conntrack v1.4.7 (conntrack-tools): 4 flow entries have been updated.\n');
      const marked = await conntrack(ns, '-L -m 42'.split(' '));
      // Updated entries are printed as a get returns them (use=2 while the kernel answers), as conntrack -U does.
      const unUse = (lines: string[]) => lines.map((l) => l.replace(/ use=\d+/, ' use=U'));
      expect(unUse(normalize(u.stdout))).toEqual(unUse(normalize(marked.stdout)));
      expect(normalize(marked.stdout).length).toBe(4);
      const none = await nfct(ns, '-U -p udp -m 42'.split(' ')); // nothing left to change
      expect(none.code).toBe(1);
      expect(none.stderr).toBe('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been updated.\n');

      // -R: the -o save output loads back into an empty table.
      await reseed();
      const saved = await conntrack(ns, ['-L', '-o', 'save']);
      const original = await table(ns);
      await conntrack(ns, ['-F']);
      const r = await nfct(ns, ['-R', '-'], saved.stdout);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(await table(ns)).toEqual(original);
      const bad = await nfct(ns, ['-R', '-'], '-L\n');
      expect(bad.code).toBe(2);
    });
  });

  test('-E: the same event lines as conntrack -E for real traffic, and the same summary on SIGINT', async () => {
    await withNetns(async (ns) => {
      await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter");
      const variants = [['-E'], ['-E', '-o', 'extended,id'], ['-E', '-e', 'NEW', '-p', 'udp'], ['-E', '-o', 'save']];
      const procs = variants.flatMap((v) => [
        { v, tool: 'conntrack', p: spawnIn(ns, 'conntrack', v), out: '', err: '' },
        { v, tool: 'nfct', p: spawnIn(ns, process.execPath, [require('./helpers').NFCT, ...v]), out: '', err: '' },
      ]);
      for (const x of procs) {
        x.p.stdout!.on('data', (d) => (x.out += d));
        x.p.stderr!.on('data', (d) => (x.err += d));
      }
      // Both listeners subscribe before the traffic: wait until a probe entry's event reaches them.
      const probe = await Conntrack.open({ netns: ns.path });
      try {
        let sport = 1;
        const seen = () => procs.every((x) => x.out.includes('10.9.0.1') || x.v.includes('-e'));
        for (let i = 0; i < 100 && !seen(); i++) {
          await probe.create({ proto: 'udp', orig: { src: '10.9.0.1', dst: '10.9.0.2', sport: sport++, dport: 2 }, timeout: 30 });
          await new Promise((r) => setTimeout(r, 100));
        }
        await waitFor(seen, 'the listeners to start');
        await new Promise((r) => setTimeout(r, 300));
        const mark = procs.map((x) => x.out.length);
        await ns.run('ping', ['-c', '1', '-W', '1', '127.0.0.1']);
        await ns.run('node', ['-e', "const s=require('dgram').createSocket('udp4');s.send('x',4444,'127.0.0.1',()=>s.close())"]);
        await waitFor(() => procs.every((x) => x.out.includes('dport=4444') || x.out.includes('--dport 4444')), 'the UDP event');
        await new Promise((r) => setTimeout(r, 300));
        for (const x of procs) x.p.kill('SIGINT');
        await Promise.all(procs.map((x) => new Promise((r) => (x.p.exitCode !== null ? r(null) : x.p.on('close', r)))));
        for (let i = 0; i < procs.length; i += 2) {
          const c = procs[i];
          const n = procs[i + 1];
          const linesC = normalize(c.out.slice(mark[i]));
          const linesN = normalize(n.out.slice(mark[i + 1]));
          expect({ args: c.v.join(' '), lines: linesN }).toEqual({ args: c.v.join(' '), lines: linesC });
          expect(linesC.length).toBeGreaterThan(0);
          expect(n.p.exitCode).toBe(c.p.exitCode);
          // conntrack prints its closing notice on stdout too; the summary line goes to stderr.
          const summaryC = c.err.trim().split('\n').pop()!.replace(/\d+ flow events/, 'N flow events');
          const summaryN = n.err.trim().split('\n').pop()!.replace(/\d+ flow events/, 'N flow events');
          expect(summaryN).toBe(summaryC);
        }
      } finally {
        for (const x of procs) if (x.p.exitCode === null) x.p.kill('SIGKILL');
        await probe.close();
      }
    });
  });

  test('expectations: -I/-L/-G/-C/-S/-D/-F expect', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 4000, dport: 21 }, timeout: 100, state: 'ESTABLISHED', helper: 'ftp' });
        const make = '-I expect -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 4000 --dport 21 --tuple-src 10.0.0.1 --tuple-dst 10.0.0.2 --tuple-port-src 0 --tuple-port-dst 5000 --mask-src 255.255.255.255 --mask-dst 255.255.255.255 --mask-port-src 0 --mask-port-dst 65535 -t 50';
        const mc = await conntrack(ns, make.split(' '));
        const mn = await nfct(ns, make.split(' '));
        expect({ c: mc.code, n: mn.code }).toEqual({ c: 0, n: 0 });
        // conntrack-tools stores the tuple port in the protocol field (proto=19 for port 5000);
        // nfct makes the TCP expectation the options describe. The ftp helper keeps one
        // expectation per master, so nfct's replaced conntrack's.
        const xs = await ct.expectations.list();
        expect(xs.map((x) => x.tuple.proto)).toEqual(['tcp']);
        expect(xs[0]).toMatchObject({ tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 5000 }, master: { dport: 21 }, helper: 'ftp' });
        for (const args of ['-L expect', '-C expect', '-S expect']) {
          const { c, n } = await both(ns, args.split(' '));
          expectSame(args, c, n);
        }
        // -G/-D expect name the expected tuple; -D exits 1 like conntrack (it counts printed lines).
        const g = await nfct(ns, '-G expect -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 0 --dport 5000 --reply-port-src 1 --reply-port-dst 1'.split(' '));
        expect(g.code).toBe(0);
        expect(normalize(g.stdout)).toEqual(normalize((await conntrack(ns, ['-L', 'expect'])).stdout).filter((l) => l.includes('proto=6')));
        const d = await nfct(ns, '-D expect -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 0 --dport 5000 --reply-port-src 1 --reply-port-dst 1'.split(' '));
        expect(d.code).toBe(1);
        expect(await ct.expectations.list()).toEqual([]);
        await nfct(ns, make.split(' '));
        const { c, n } = await both(ns, ['-F', 'expect']);
        expectSame('-F expect', c, n);
        expect(await ct.expectations.list()).toEqual([]);
      } finally {
        await ct.close();
      }
    });
  });
});
