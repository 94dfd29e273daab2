/**
 * `nfct` subcommands against a real namespace: JSON equals list(), ndjson events carry the
 * same flows as ct.events(), and each subcommand's effect is checked with conntrack -L.
 */
import { Conntrack, FlowEvent } from '../../../lib';
import { withSandbox } from '../../../apps/testing';
import { NFCT, Step, assertBuilt, conntrack, nfct, normalize, script, spawnIn } from './helpers';

beforeAll(assertBuilt);

const bigintsAsStrings = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x)));
const withoutTimeout = (flows: { timeout?: number }[]) => flows.map(({ timeout: _t, ...rest }) => rest);

describe('nfct subcommands', () => {
  test('list/get/count/stats/watch: json equals list(), conntrack output equals conntrack -L, help and errors', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 80 }, timeout: 100, state: 'ESTABLISHED', mark: 3 });
        await ct.create({ proto: 'udp', orig: { src: 'fd00::1', dst: 'fd00::2', sport: 5, dport: 53 }, timeout: 100, zone: 4 });
        await ct.create({ proto: 'icmp', orig: { src: '10.0.0.1', dst: '10.0.0.9', icmp: { type: 8, id: 3 } }, timeout: 100 });
        // One process runs them all (the bin's main() per command; see runner.js).
        const [json, ndjson, table, conn, connL, count, countF, get, stats, help, bad, watch, missing] = await script(ns, [
          ['list', '--output', 'json'],
          ['list', '--output', 'ndjson', '--family', 'ipv6'],
          ['list', '--proto', 'tcp'],
          ['list', '-o', 'conntrack'],
          'conntrack',
          ['count'],
          ['count', '--dst', '10.0.0.0/24', '--output', 'json'],
          ['get', '-p', 'tcp', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--sport', '1', '--dport', '80', '-o', 'json'],
          ['stats', '-o', 'json'],
          ['list', '--help'],
          ['list', '--sport', '70000'],
          ['watch', '--count', '2', '--interval', '0.1', '-o', 'ndjson'],
          ['get', '-p', 'udp', '--src', '1.1.1.1', '--dst', '2.2.2.2', '--sport', '1', '--dport', '2'],
        ].map((a): Step => (a === 'conntrack' ? { tool: 'conntrack', args: ['-L'] } : { tool: 'nfct', args: a as string[] })));
        const listed = await ct.list();
        expect(json.code).toBe(0);
        expect(withoutTimeout(JSON.parse(json.stdout))).toEqual(withoutTimeout(bigintsAsStrings(listed)));
        expect(JSON.parse(json.stdout)[0].counters.orig.bytes).toBe('0'); // bigints as strings
        expect(ndjson.stdout.trim().split('\n').map((l) => JSON.parse(l).orig.src)).toEqual(['fd00::1']);
        expect(table.stdout).toMatch(/^PROTO\s+ORIGINAL/);
        expect(table.stdout).toContain('10.0.0.1:1 -> 10.0.0.2:80');
        expect(table.stdout).not.toContain('\x1b['); // not a terminal: no colour
        expect(normalize(conn.stdout)).toEqual(normalize(connL.stdout));
        expect(count.stdout).toBe('3\n');
        expect(JSON.parse(countF.stdout)).toEqual({ count: 2 });
        expect(JSON.parse(get.stdout)).toMatchObject({ proto: 'tcp', mark: 3, state: 'ESTABLISHED' });
        expect(JSON.parse(stats.stdout).count).toBe(3);
        expect(help.code).toBe(0);
        expect(help.stdout).toContain('--reply-src');
        expect(bad.code).toBe(2);
        expect(bad.stderr).toContain('--sport');
        expect(watch.stdout.trim().split('\n').filter(Boolean).length).toBe(6);
        expect(missing.code).toBe(1);
        expect(missing.stderr).toContain('[ENOENT]');
        // --netns works from outside the namespace too.
        const { execFile } = await import('child_process');
        const outside = await new Promise<string>((res, rej) => execFile(process.execPath, [NFCT, 'count', '--netns', ns.path], (e, so) => (e ? rej(e) : res(so))));
        expect(outside).toBe('3\n');
      } finally {
        await ct.close();
      }
    });
  });

  test('create/update/delete/flush change the table as conntrack -L shows it', async () => {
    await withSandbox(async (ns) => {
      const steps: [string[], number][] = [
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.2', '--sport', '1', '--dport', '2', '-t', '60', '--mark', '1'], 0],
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.3', '--sport', '1', '--dport', '2', '-t', '60', '--dnat', '10.9.0.1:99'], 0],
        [['create', '-p', 'tcp', '--src', '10.1.0.1', '--dst', '10.1.0.2', '--sport', '1', '--dport', '2', '-t', '60', '--state', 'ESTABLISHED'], 0],
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.2', '--sport', '1', '--dport', '2', '-t', '60'], 1], // exists
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.2', '--sport', '1', '-t', '60'], 2], // no dport
        // --upsert: the existing entry is updated in place (ct.upsert, one request).
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.2', '--sport', '1', '--dport', '2', '-t', '90', '--mark', '4', '--upsert'], 0],
        [['create', '-p', 'udp', '--src', '10.1.0.1', '--dst', '10.1.0.4', '--sport', '1', '--dport', '2', '-t', '60', '--upsert'], 0],
      ];
      const LIST: Step = { tool: 'conntrack', args: ['-L'] };
      const r1 = await script(ns, [...steps.map(([args]): Step => ({ tool: 'nfct', args })), LIST]);
      steps.forEach(([args, code], i) => expect({ args, code: r1[i].code }).toEqual({ args, code }));
      const l1 = r1[steps.length].stdout;
      expect(l1).toContain('src=10.9.0.1 dst=10.1.0.1 sport=99 dport=1');
      expect(l1).toMatch(/udp +17 (8\d|90) src=10\.1\.0\.1 dst=10\.1\.0\.2 .* mark=4 /);
      expect(l1).toContain('dst=10.1.0.4');

      // update: ct.updateMatching; the count is what conntrack -U reports for the same change.
      const r2 = await script(ns, [
        { tool: 'nfct', args: ['update', '--proto', 'udp', '--set-mark', '7', '-t', '300', '-o', 'json'] },
        { tool: 'conntrack', args: ['-L', '-m', '7'] },
        { tool: 'nfct', args: ['update', '--proto', 'udp'] },
        { tool: 'nfct', args: ['update', '--proto', 'udp', '--set-mark', '7'] }, // nothing left to change
        { tool: 'conntrack', args: ['-U', '-f', 'ipv4', '-p', 'udp', '-m', '7'] },
        { tool: 'nfct', args: ['update', '--proto', 'udp', '--dst', '10.1.0.2', '--set-mark', '0x10/0xf0'] },
        { tool: 'conntrack', args: ['-U', '-f', 'ipv4', '-p', 'udp', '-d', '10.1.0.3', '-m', '0x10/0xf0'] },
        { tool: 'nfct', args: ['update', '--nat', 'dst', '--set-mark', '0x20'] },
        { tool: 'conntrack', args: ['-L', '--dst-nat', '-m', '0x20'] },
        { tool: 'nfct', args: ['delete'] },
        { tool: 'nfct', args: ['delete', '--dst', '10.1.0.3'] },
        { tool: 'conntrack', args: ['-C'] },
        { tool: 'nfct', args: ['flush', '--mark', '0x17'] },
        LIST,
        { tool: 'conntrack', args: ['-C'] },
        { tool: 'nfct', args: ['flush'] },
        { tool: 'conntrack', args: ['-C'] },
      ]);
      expect(JSON.parse(r2[0].stdout)).toEqual({ updated: 3 });
      expect(normalize(r2[1].stdout)).toHaveLength(3);
      expect(r2[2].code).toBe(2); // nothing to change given
      expect({ code: r2[3].code, out: r2[3].stdout }).toEqual({ code: 0, out: '0 entries updated\n' });
      expect(r2[4].stderr).toBe('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been updated.\n');
      expect(r2[5].stdout).toBe('1 entries updated\n');
      expect(r2[6].stderr).toBe('conntrack v1.4.7 (conntrack-tools): 1 flow entries have been updated.\n');
      expect(r2[7].stdout).toBe('1 entries updated\n');
      expect(normalize(r2[8].stdout)).toEqual([expect.stringContaining('src=10.9.0.1')]);
      expect(r2[9].code).toBe(2); // needs a filter or --all
      expect(r2[10].stdout).toBe('1 entries deleted\n');
      expect(r2[11].stdout).toBe('3\n');
      expect(r2[12].code).toBe(0);
      expect(r2[13].stdout).toContain('tcp');
      expect(r2[14].stdout).toBe('2\n');
      expect(r2[16].stdout).toBe('0\n');
    });
  });

  test('events --output ndjson: one event per line, the same flows as ct.events(); expect subcommands', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const p = spawnIn(ns, process.execPath, [NFCT, 'events', '--output', 'ndjson', '--count', '4']);
      let out = '';
      p.stdout!.on('data', (d) => (out += d));
      const seen: FlowEvent[] = [];
      const stream = ct.events();
      stream.on('event', (e) => seen.push(e));
      try {
        // Wait until the CLI's listener is up: probe entries until it reports one.
        for (let i = 1; i < 100 && !out.includes('10.8.0.1'); i++) {
          await ct.create({ proto: 'udp', orig: { src: '10.8.0.1', dst: '10.8.0.2', sport: i, dport: 9 }, timeout: 30 });
          await new Promise((r) => setTimeout(r, 100));
        }
        const before = out.trim().split('\n').length;
        const need = 4 - before;
        for (let i = 0; i < need; i++) await ct.create({ proto: 'tcp', orig: { src: '10.7.0.1', dst: '10.7.0.2', sport: 100 + i, dport: 80 }, timeout: 30, state: 'SYN_SENT' });
        await new Promise((r) => p.on('close', r));
        expect(p.exitCode).toBe(0);
        const lines = out.trim().split('\n').map((l) => JSON.parse(l));
        expect(lines.length).toBe(4);
        for (const ev of lines) {
          const mine = seen.find((e) => e.flow.id === ev.flow.id && e.type === ev.type);
          expect(mine).toBeDefined();
          expect(ev).toEqual(bigintsAsStrings(mine));
        }

        // expect: list/create/get/delete/flush through the subcommands.
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 4000, dport: 21 }, timeout: 100, state: 'ESTABLISHED', helper: 'ftp' });
        const mk = await nfct(ns, ['expect', 'create', '-p', 'tcp', '--master-src', '10.0.0.1', '--master-dst', '10.0.0.2', '--master-sport', '4000', '--master-dport', '21', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--dport', '5000', '-t', '60']);
        expect({ code: mk.code, err: mk.stderr }).toEqual({ code: 0, err: '' });
        const lj = JSON.parse((await nfct(ns, ['expect', 'list', '-o', 'json'])).stdout);
        expect(lj).toEqual(bigintsAsStrings(await ct.expectations.list()).map((x: { timeout: number }) => ({ ...x, timeout: lj[0].timeout })));
        const lc = await nfct(ns, ['expect', 'list', '-o', 'conntrack']);
        expect(normalize(lc.stdout)).toEqual(normalize((await conntrack(ns, ['-L', 'expect'])).stdout));
        const g = await nfct(ns, ['expect', 'get', '-p', 'tcp', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--sport', '0', '--dport', '5000', '-o', 'json']);
        expect(JSON.parse(g.stdout).tuple.dport).toBe(5000);
        expect((await nfct(ns, ['expect', 'delete', '-p', 'tcp', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--sport', '0', '--dport', '5000'])).code).toBe(0);
        expect(await ct.expectations.list()).toEqual([]);
        await nfct(ns, ['expect', 'create', '-p', 'tcp', '--master-src', '10.0.0.1', '--master-dst', '10.0.0.2', '--master-sport', '4000', '--master-dport', '21', '--src', '10.0.0.1', '--dst', '10.0.0.2', '--dport', '5001']);
        expect((await nfct(ns, ['expect', 'flush'])).code).toBe(0);
        expect(await ct.expectations.list()).toEqual([]);
        expect((await nfct(ns, ['expect', 'bogus'])).code).toBe(2);
      } finally {
        if (p.exitCode === null) p.kill('SIGKILL');
        await stream.close();
        await ct.close();
      }
    });
  });

  test('the bin: --version, --help, unknown commands, a cold start that loads no native code', async () => {
    await withSandbox(async (ns) => {
      const v = await nfct(ns, ['--version']);
      expect(v).toEqual({ code: 0, stdout: expect.stringMatching(/^nfct v\d+\.\d+\.\d+/), stderr: '' });
      const h = await nfct(ns, ['--help']);
      for (const c of ['list', 'get', 'create', 'update', 'delete', 'flush', 'count', 'stats', 'events', 'expect', 'watch', 'top', 'sandbox', 'exporter']) expect(h.stdout).toContain(`  ${c} `);
      expect((await nfct(ns, ['frobnicate'])).code).toBe(2);
      // --version requires only the bin's own files (measured in bench/, not timed here).
      const r = await new Promise<string>((res, rej) =>
        require('child_process').execFile(process.execPath, ['-e', `require(${JSON.stringify(NFCT)}); setImmediate(()=>console.log(Object.keys(require.cache).filter(k=>!k.includes('/apps/nfct/')).length))`, '--', '--version'], (e: Error | null, so: string) => (e ? rej(e) : res(so))),
      );
      expect(r.trim().split('\n').pop()).toBe('0');
    });
  });
  test('NFCT_NETNS names the namespace for every subcommand that opens a handle (--netns wins), the exporter too', async () => {
    await withSandbox(async (ns) => {
      await withSandbox(async (other) => {
        await ns.ct.create({ proto: 'udp', orig: { src: '10.9.0.1', dst: '10.9.0.2', sport: 1, dport: 2 }, timeout: 300 });
        await other.ct.create({ proto: 'udp', orig: { src: '10.8.0.1', dst: '10.8.0.2', sport: 1, dport: 2 }, timeout: 300 });
        await other.ct.create({ proto: 'udp', orig: { src: '10.8.0.1', dst: '10.8.0.2', sport: 3, dport: 4 }, timeout: 300 });
        // Run from this process's namespace: only the variable (or --netns) points at a sandbox.
        const run = (args: string[], env: Record<string, string>) => new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
          require('child_process').execFile(process.execPath, [NFCT, ...args], { env: { ...process.env, NO_COLOR: '1', ...env } }, (e: { code?: number } | null, stdout: string, stderr: string) =>
            res({ code: e ? (e.code ?? 1) : 0, stdout, stderr }));
        });
        const env = { NFCT_NETNS: ns.path };
        expect(await run(['count'], env)).toMatchObject({ code: 0, stdout: '1\n' });
        const listed = JSON.parse((await run(['list', '-o', 'json'], env)).stdout);
        expect(listed.map((f: { orig: { src: string } }) => f.orig.src)).toEqual(['10.9.0.1']);
        expect(await run(['count', '--netns', other.path], env)).toMatchObject({ code: 0, stdout: '2\n' });
        expect((await run(['-C'], env)).stdout.trim()).toBe('1'); // the conntrack spelling
        expect(JSON.parse((await run(['stats', '-o', 'ndjson'], env)).stdout)).toMatchObject({ count: 1 });
        // The exporter: one namespace from the variable, labelled with it.
        const exp = require('child_process').spawn(process.execPath, [NFCT, 'exporter', '--listen', '127.0.0.1:0'], { env: { ...process.env, ...env } });
        try {
          let line = '';
          await new Promise<void>((res, rej) => {
            exp.stdout.on('data', (d: Buffer) => {
              line += d.toString();
              if (line.includes('\n')) res();
            });
            exp.once('exit', (code: number) => rej(new Error(`exporter exited ${code}`)));
          });
          expect(line).toContain(`namespaces ${ns.path}`);
          const url = /serving (\S+)/.exec(line)![1];
          const body = await (await fetch(url)).text();
          expect(body.split('\n')).toContain(`node_nf_conntrack_entries{netns="${ns.path}"} 1`);
        } finally {
          if (exp.exitCode === null && exp.signalCode === null) {
            const gone = new Promise((res) => exp.once('exit', res));
            exp.kill('SIGTERM');
            await gone;
          }
        }
      });
    });
  });
});
