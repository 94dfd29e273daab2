/**
 * `nfct` spelled like conntrack-tools: for each command the real `conntrack` 1.4.7 and
 * `nfct` run on the same table, and acceptance, exit code, printed lines and the effect on
 * the table are compared.
 */
import { mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Conntrack } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { Result, Step, assertBuilt, bothAll, bothSteps, conntrack, nfct, normalize, script, spawnIn } from './helpers';
import { waitFor } from '../../helpers/wait';

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

async function seed(ns: Sandbox): Promise<void> {
  const r = await script(ns, SEED.map((line) => ({ tool: 'conntrack', args: line.split(' ') })));
  r.forEach((x, i) => {
    if (x.code !== 0) throw new Error(`seeding failed: conntrack ${SEED[i]}: ${x.stderr}`);
  });
}

/** A step that lists the table as -o save (compare with saved()). */
const SAVE: Step = { tool: 'conntrack', args: ['-L', '-o', 'save'] };
function saved(r: Result): string[] {
  expect(r.code).toBe(0);
  return normalize(r.stdout);
}

/** The table as `conntrack -L -o save` shows it, timeouts masked. */
async function table(ns: Sandbox): Promise<string[]> {
  const r = await conntrack(ns, ['-L', '-o', 'save']);
  expect(r.code).toBe(0);
  return normalize(r.stdout);
}

function expectSame(args: string, c: { code: number; stdout: string; stderr: string }, n: { code: number; stdout: string; stderr: string }, stderrToo = true): void {
  const label = `conntrack ${args}`;
  expect({ label, code: n.code, lines: normalize(n.stdout) }).toEqual({ label, code: c.code, lines: normalize(c.stdout) });
  if (stderrToo) expect({ label, stderr: n.stderr }).toEqual({ label, stderr: c.stderr });
}

describe('nfct with conntrack options against conntrack 1.4.7', () => {
  test('-L, -G, -C, -S: same lines, summary line and exit code, for every output format and filter', async () => {
    await withSandbox(async (ns) => {
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
        '-C', '-S', '-L dying', '-L unconfirmed', '-L -p tcp --state LISTEN', '-L -p tcp --state ESTABLISHED -s fd00::9',
        '-L --src-nat fd00::99', '-L -n', '-L -g 10.9.9.9', '-L -g :8080', '-L -j 10.9.9.9', '-L -p tcp --dst-nat 10.9.9.9 --dport 2',
        '-L -f ipv6 --src-nat', '-L --dst-nat 10.0.0.2', '-D -p tcp --state SYN_RECV', '-L -o save --any-nat',
      ];
      // The subcommands' --state and NAT filters select what conntrack's do.
      const sub: [string, string][] = [
        ['list --state ESTABLISHED -o conntrack', '-L -p tcp --state ESTABLISHED'],
        ['list --proto tcp --state SYN_SENT -o conntrack', '-L -p tcp --state SYN_SENT'],
        ['list --nat dst -o conntrack', '-L --dst-nat'],
        ['list --nat src -o conntrack', '-L --src-nat'],
        ['list --nat any -o conntrack', '-L --any-nat'],
        ['list --dst-nat 10.9.9.9:8080 -o conntrack', '-L --dst-nat 10.9.9.9:8080'],
        ['list --dst-nat 10.9.9.9:8081 -o conntrack', '-L --dst-nat 10.9.9.9:8081'],
        ['list --any-nat 10.9.9.9 -o conntrack', '-L --any-nat 10.9.9.9'],
        ['list --src-nat 10.9.9.9 -o conntrack', '-L --src-nat 10.9.9.9'],
      ];
      // Read-only commands, all in one process (starting processes dominates otherwise).
      const steps: Step[] = [
        ...bothSteps(cases),
        // conntrack 1.4.7 cannot get an entry by its reply tuple alone (it fails); nfct can.
        { tool: 'nfct', args: '-G -p tcp -r 10.9.9.9 -q 10.0.0.9 --reply-port-src 8080 --reply-port-dst 1'.split(' ') },
        { tool: 'conntrack', args: '-L -r 10.9.9.9'.split(' ') },
        ...sub.flatMap(([n, c]): Step[] => [{ tool: 'nfct', args: n.split(' ') }, { tool: 'conntrack', args: c.split(' ') }]),
      ];
      const r = await script(ns, steps);
      cases.forEach((args, i) => expectSame(args, r[2 * i], r[2 * i + 1], r[2 * i].code === 0));
      let k = 2 * cases.length;
      const [byReply, viaList] = [r[k++], r[k++]];
      expect(byReply.code).toBe(0);
      // A get reply counts the reference the kernel holds while answering (use=2), as conntrack -G shows.
      const unUse = (lines: string[]) => lines.map((l) => l.replace(/ use=\d+/, ' use=U'));
      expect(unUse(normalize(byReply.stdout))).toEqual(unUse(normalize(viaList.stdout)));
      expect(normalize(viaList.stdout)).toHaveLength(1);
      for (const [n, c] of sub) {
        const [a, b] = [r[k++], r[k++]];
        expect({ n, code: a.code, lines: normalize(a.stdout) }).toEqual({ n, code: 0, lines: normalize(b.stdout) });
      }
      // The filters selected something where they should (the cases are not all empty).
      expect(normalize(r[2 * cases.indexOf('-L --dst-nat 10.9.9.9:8080') + 1].stdout)).toHaveLength(1);
      expect(normalize(r[2 * cases.indexOf('-L --src-nat fd00::99') + 1].stdout)).toHaveLength(1);
    });
  });

  test('refusals: what conntrack refuses nfct refuses, with the same exit code and a message of its own', async () => {
    await withSandbox(async (ns) => {
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
      const lenient = ['-L -w foo', '-L -m foo', '-L -c foo', '-L -u ass', '-L -f ipv4x', '-L -s 10.1', '-L -o userspace'];
      const r = await script(ns, [SAVE, ...bothSteps(refused), ...bothSteps(lenient), SAVE]);
      const before = saved(r[0]);
      const results = refused.map((_, i) => ({ c: r[1 + 2 * i], n: r[2 + 2 * i] }));
      for (const [i, args] of refused.entries()) {
        const { c, n } = results[i];
        expect({ args, code: n.code }).toEqual({ args, code: c.code });
        expect({ args, refused: c.code !== 0 }).toEqual({ args, refused: true });
        expect(n.stdout).toBe('');
        expect(n.stderr.length).toBeGreaterThan(0);
      }
      // Lenient values conntrack 1.4.7 accepts are accepted too (with a warning from nfct).
      for (const [i, args] of lenient.entries()) {
        const [c, n] = [r[1 + 2 * refused.length + 2 * i], r[2 + 2 * refused.length + 2 * i]];
        expect({ args, code: n.code, lines: normalize(n.stdout) }).toEqual({ args, code: c.code, lines: normalize(c.stdout) });
      }
      expect(saved(r[r.length - 1])).toEqual(before);
      expect(before.length).toBe(SEED.length);
    });
  });

  test('-I, -A, -D, -F, -U, -R: same effect on the table, exit code and printed lines', async () => {
    await withSandbox(async (ns) => {
      const create = [
        '-I -p udp -s 10.1.0.1 -d 10.1.0.2 --sport 100 --dport 200 -t 120 -m 3',
        '-I -p tcp -s 10.1.0.1 -d 10.1.0.2 --sport 100 --dport 200 --state LISTEN -t 120 -u ASSURED',
        '-I -p tcp -r 10.1.0.2 -q 10.1.0.1 --reply-port-src 300 --reply-port-dst 400 --state ESTABLISHED -t 120',
        '-I -p udp -s fd01::1 -d fd01::2 --sport 7 --dport 8 -t 120 -w 9',
        '-I -p icmpv6 -s fd01::1 -d fd01::2 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 5 -t 120',
        '-I -p udp -s 10.1.0.5 -d 10.1.0.6 --sport 1 --dport 2 -t 120 --src-nat 10.1.0.99:999',
        '-I -p udp -s 10.1.0.5 -d 10.1.0.7 --sport 1 --dport 2 -t 120 -u FIXED_TIMEOUT',
      ];
      const created = 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been created.\n';
      const emptied = { code: 0, stdout: '', stderr: 'conntrack v1.4.7 (conntrack-tools): connection tracking table has been emptied.\n' };
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // Each tool builds the table on its own; conntrack -L shows the same, and the TCP
        // entries carry the window-tracking flags conntrack -I gives them.
        const states: string[][] = [];
        const tcpInfo: unknown[] = [];
        for (const tool of ['conntrack', 'nfct'] as const) {
          const r = await script(ns, [...create.map((l): Step => ({ tool, args: l.split(' ') })), SAVE]);
          create.forEach((line, i) => expect({ line, code: r[i].code, stderr: r[i].stderr }).toEqual({ line, code: 0, stderr: created }));
          states.push(saved(r[create.length]));
          tcpInfo.push((await ct.list({ proto: 'tcp' })).map((f) => [f.orig.sport, f.tcp]).sort());
          const f = await script(ns, [{ tool, args: ['-F'] }, SAVE]);
          expect(f[0]).toEqual(emptied);
          expect(saved(f[1])).toEqual([]);
        }
        expect(states[1]).toEqual(states[0]);
        expect(states[0].length).toBe(create.length);
        expect(tcpInfo[1]).toEqual(tcpInfo[0]);
        expect(JSON.stringify(tcpInfo[0])).toContain('BE_LIBERAL');
      } finally {
        await ct.close();
      }

      // -D with filters: the same entries go, the same lines are printed.
      const seedFile = join(mkdtempSync(join(tmpdir(), 'nfct-')), 'seed');
      writeFileSync(seedFile, ['-F', ...create].join('\n') + '\n');
      const reseed: Step = { tool: 'conntrack', args: ['-R', seedFile] };
      const deletes = ['-D -p udp', '-D -s 10.1.0.1', '-D -m 3', '-D -f ipv6', '-D -p tcp --state LISTEN', '-D -s 10.1.0.0/16 -p udp', '-D --src-nat', '-D', '-D -p udp --dport 9999', '-D --src-nat 10.1.0.99:999', '-D -p tcp --state ESTABLISHED -r 10.1.0.2'];
      const d = await script(ns, deletes.flatMap((args): Step[] => [reseed, { tool: 'conntrack', args: args.split(' ') }, SAVE, reseed, { tool: 'nfct', args: args.split(' ') }, SAVE]));
      deletes.forEach((args, i) => {
        const [rc, c, afterC, rn, n, afterN] = d.slice(6 * i, 6 * i + 6);
        expect([rc.code, rn.code]).toEqual([0, 0]);
        expectSame(args, c, n);
        expect({ args, table: saved(afterN) }).toEqual({ args, table: saved(afterC) });
      });

      // -A: adds; on an existing entry nfct updates it in place (mark, timeout, status) in one
      // upsert request, as conntrack -A is documented to. conntrack 1.4.7 sends -A with
      // NLM_F_EXCL like -I, so there it changes nothing and reports 0 entries added.
      const base = '-A -p udp -s 10.2.0.1 -d 10.2.0.2 --sport 1 --dport 2 -t 100';
      const again = `${base.replace('-t 100', '-t 300')} -m 5 -u ASSURED`;
      const LIST: Step = { tool: 'conntrack', args: ['-L'] };
      const add = (tool: 'conntrack' | 'nfct'): Step[] => [{ tool: 'conntrack', args: ['-F'] }, { tool, args: base.split(' ') }, LIST, { tool, args: again.split(' ') }, LIST];
      const a = await script(ns, [...add('conntrack'), ...add('nfct')]);
      const added = (n: number) => ({ code: 0, stderr: `conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been added.\n` });
      for (const k of [1, 6]) expect({ code: a[k].code, stderr: a[k].stderr }).toEqual(added(1));
      expect(normalize(a[7].stdout)).toEqual(normalize(a[2].stdout)); // the same entry created
      expect({ code: a[3].code, stderr: a[3].stderr }).toEqual(added(0));
      expect(normalize(a[4].stdout)).toEqual(normalize(a[2].stdout)); // conntrack 1.4.7: unchanged
      expect({ code: a[8].code, stderr: a[8].stderr }).toEqual(added(1));
      expect(normalize(a[9].stdout)).toEqual([normalize(a[2].stdout)[0].replace(' mark=0 ', ' [ASSURED] mark=5 ')]);
      expect(Number(/^udp\s+17 (\d+) /.exec(a[9].stdout)![1])).toBeGreaterThan(200);

      // -U: the same entries change, with the same count and exit code; each changed entry is
      // printed as a get returns it. (conntrack 1.4.7 prints only the first one it changed,
      // and needs -f here: without it its update is sent with AF_UNSPEC, which Linux 6.18
      // refuses.)
      const updates = ['-U -f ipv4 -p udp -m 42', '-U -f ipv4 -p udp -m 42', '-U -f ipv4 -s 10.1.0.5 -m 0x10/0xf0', '-U -f ipv4 -p tcp -t 500', '-U -f ipv4 -p udp -u ASSURED', '-U -f ipv4 -p tcp --src-nat -m 1', '-U -f ipv4 -p tcp -s 10.1.0.1 --state ESTABLISHED', '-U -f ipv6 -p udp --dport 999 -m 1'];
      const steps = (tool: 'conntrack' | 'nfct'): Step[] => [reseed, ...updates.flatMap((args): Step[] => [{ tool, args: args.split(' ') }, LIST])];
      const u = await script(ns, [...steps('conntrack'), ...steps('nfct')]);
      const half = u.length / 2;
      updates.forEach((args, i) => {
        const [c, listC] = [u[1 + 2 * i], u[2 + 2 * i]];
        const [n, listN] = [u[half + 1 + 2 * i], u[half + 2 + 2 * i]];
        expect({ args, code: n.code, stderr: n.stderr }).toEqual({ args, code: c.code, stderr: c.stderr });
        const linesN = normalize(n.stdout);
        const count = Number(/(\d+) flow entries have been updated/.exec(n.stderr)?.[1]);
        expect({ args, printed: linesN.length }).toEqual({ args, printed: count });
        for (const l of normalize(c.stdout)) expect({ args, printedByConntrack: l, nfct: linesN.includes(l) }).toEqual({ args, printedByConntrack: l, nfct: true });
        expect({ args, table: normalize(listN.stdout) }).toEqual({ args, table: normalize(listC.stdout) });
      });
      expect(u[1].stderr).toBe('conntrack v1.4.7 (conntrack-tools): 3 flow entries have been updated.\n');
      expect(normalize(u[half + 1].stdout)).toHaveLength(3);
      expect(u[3].code).toBe(1); // nothing left to change
      // nfct -U works without -f as well.
      const nf = await script(ns, [reseed, { tool: 'nfct', args: '-U -p udp -m 7'.split(' ') }, { tool: 'conntrack', args: '-L -m 7'.split(' ') }]);
      expect(nf[1].stderr).toBe('conntrack v1.4.7 (conntrack-tools): 4 flow entries have been updated.\n');
      expect(normalize(nf[1].stdout).map((l) => l.replace(/ use=\d+/, ''))).toEqual(normalize(nf[2].stdout).map((l) => l.replace(/ use=\d+/, '')));

      // -R: the -o save output loads back into an empty table.
      const sv = await script(ns, [reseed, SAVE, { tool: 'conntrack', args: ['-F'] }]);
      const original = saved(sv[1]);
      const r = await nfct(ns, ['-R', '-'], sv[1].stdout);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(await table(ns)).toEqual(original);
      const bad = await nfct(ns, ['-R', '-'], '-L\n');
      expect(bad.code).toBe(2);
    });
  });

  test('-z: counters read and zeroed as conntrack -L -z does; the subcommands --zero-counters', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
      await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct state new counter");
      const traffic: Step = { tool: 'sh', args: ['ping -c 2 -i 0.01 -W 1 127.0.0.1 >/dev/null && ping -6 -c 1 -W 1 ::1 >/dev/null'] };
      const LIST: Step = { tool: 'conntrack', args: ['-L'] };
      const r = await script(ns, [
        traffic, LIST, { tool: 'nfct', args: ['-L', '-z'] }, LIST,
        traffic, { tool: 'conntrack', args: ['-L', '-z'] }, LIST, { tool: 'nfct', args: ['-L', '-z'] },
        traffic, { tool: 'nfct', args: ['list', '--zero-counters', '--family', 'ipv4', '-o', 'conntrack'] }, LIST,
        traffic, LIST,
      ]);
      const packets = (text: string) => normalize(text).map((l) => [...l.matchAll(/packets=(\d+)/g)].map((m) => Number(m[1])));
      expect(r[0].code).toBe(0);
      // nfct -L -z prints what conntrack -L showed just before, then the counters are 0.
      expect(normalize(r[2].stdout)).toEqual(normalize(r[1].stdout));
      expect(r[2].stderr).toBe(`conntrack v1.4.7 (conntrack-tools): ${normalize(r[1].stdout).length} flow entries have been shown.\n`);
      expect(packets(r[1].stdout).flat().some((p) => p > 0)).toBe(true);
      expect(packets(r[3].stdout).flat().every((p) => p === 0)).toBe(true);
      // After conntrack -L -z, nfct -L -z sees zeros, as conntrack's own next -L does.
      expect(packets(r[5].stdout).flat().some((p) => p > 0)).toBe(true);
      expect(normalize(r[7].stdout)).toEqual(normalize(r[6].stdout));
      // list --zero-counters with a filter: only the IPv4 entries are zeroed.
      const listed = normalize(r[9].stdout);
      expect(listed.length).toBeGreaterThan(0);
      expect(listed.every((l) => l.startsWith('icmp '))).toBe(true);
      expect(listed.some((l) => / packets=[1-9]/.test(l))).toBe(true);
      const after = normalize(r[10].stdout);
      expect(after.filter((l) => l.startsWith('icmp ')).every((l) => !/ packets=[1-9]/.test(l))).toBe(true);
      expect(after.filter((l) => l.startsWith('icmpv6 ')).some((l) => / packets=[1-9]/.test(l))).toBe(true);
      // get --zero-counters -o json: the counters before zeroing, then 0.
      const line = normalize(r[12].stdout).find((l) => l.startsWith('icmp ') && / packets=[1-9]/.test(l))!;
      const [, id] = /type=8 code=0 id=(\d+)/.exec(line)!;
      const key = ['-p', 'icmp', '--src', '127.0.0.1', '--dst', '127.0.0.1', '--icmp-type', '8', '--icmp-id', id];
      const g = await script(ns, [{ tool: 'nfct', args: ['get', ...key, '--zero-counters', '-o', 'json'] }, { tool: 'nfct', args: ['get', ...key, '-o', 'json'] }]);
      expect(g.map((x) => x.code)).toEqual([0, 0]);
      expect(BigInt(JSON.parse(g[0].stdout).counters.orig.packets)).toBeGreaterThan(0n);
      expect(JSON.parse(g[1].stdout).counters.orig.packets).toBe('0');
    });
  });

  test('-E: the same event lines as conntrack -E for real traffic, and the same summary on SIGINT', async () => {
    await withSandbox(async (ns) => {
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
        // Events a netlink request caused: [USERSPACE] portid=N progname=..., and the mark
        // the kernel sends with them even when it is 0.
        const orig = { src: '10.9.0.7', dst: '10.9.0.8', sport: 7777, dport: 7 };
        await probe.create({ proto: 'udp', orig, timeout: 30 });
        await probe.update({ proto: 'udp', orig, mark: 5 });
        await probe.update({ proto: 'udp', orig, mark: 0 });
        await probe.delete({ proto: 'udp', orig });
        const count = (s: string) => s.split('10.9.0.7').length - 1;
        await waitFor(() => procs.every((x) => count(x.out.slice(mark[procs.indexOf(x)])) >= (x.v.includes('-e') ? 1 : 4)), 'the netlink-made events');
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
          expect(linesN.filter((l) => l.includes('10.9.0.7')).every((l) => / \[USERSPACE\] portid=\d+ progname=\S+$/.test(l))).toBe(true);
          if (!c.v.includes('save')) expect(linesN.filter((l) => l.includes('10.9.0.7') && !l.includes('DESTROY')).every((l) => / mark=\d+ /.test(l))).toBe(true);
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
    await withSandbox(async (ns) => {
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
        const lines = ['-L expect', '-C expect', '-S expect'];
        (await bothAll(ns, lines)).forEach(({ c, n }, i) => expectSame(lines[i], c, n));
        // -G/-D expect name the expected tuple; -D exits 1 like conntrack (it counts printed lines).
        const g = await nfct(ns, '-G expect -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 0 --dport 5000 --reply-port-src 1 --reply-port-dst 1'.split(' '));
        expect(g.code).toBe(0);
        expect(normalize(g.stdout)).toEqual(normalize((await conntrack(ns, ['-L', 'expect'])).stdout).filter((l) => l.includes('proto=6')));
        const d = await nfct(ns, '-D expect -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 0 --dport 5000 --reply-port-src 1 --reply-port-dst 1'.split(' '));
        expect(d.code).toBe(1);
        expect(await ct.expectations.list()).toEqual([]);
        await nfct(ns, make.split(' '));
        const [{ c, n }] = await bothAll(ns, ['-F expect']);
        expectSame('-F expect', c, n);
        expect(await ct.expectations.list()).toEqual([]);
      } finally {
        await ct.close();
      }
    });
  });
});
