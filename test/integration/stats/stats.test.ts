import { closeSync, openSync } from 'fs';
import { Conntrack, ConntrackError, ConntrackStats, ProcStats, parseProcStats, readProcStats } from '../../../lib';
import { Sandbox, withSandbox, sandbox } from '../../../apps/testing';

/** Tracked traffic on loopback: an nft rule referring to conntrack, pings, TCP connects, a UDP flow. */
async function makeTraffic(ns: Sandbox): Promise<void> {
  await ns.sh(
    "nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && " +
      'nft add rule inet t c ct state new counter && ' +
      'conntrack -I -p udp -s 10.1.0.1 -d 10.1.0.2 --sport 1000 --dport 53 -t 100 && ' +
      'ping -c 2 -i 0.2 -q 127.0.0.1 >/dev/null',
  );
  await ns.run('node', [
    '-e',
    `const net = require('net'), dgram = require('dgram');
     const srv = net.createServer((c) => c.end()).listen(0, '127.0.0.1', async () => {
       const port = srv.address().port;
       for (let i = 0; i < 4; i++) await new Promise((r) => net.connect(port, '127.0.0.1', function () { this.end(); r(); }).on('error', r));
       await new Promise((r) => net.connect(1, '127.0.0.1').on('error', r)); // refused: RST
       const u = dgram.createSocket('udp4'); u.send('x', 9, '127.0.0.1', () => { u.close(); srv.close(); });
     });`,
  ]);
}

/** `conntrack -S` output: one record per CPU. */
function parseCliStats(text: string): Record<string, number>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('cpu='))
    .map((l) => Object.fromEntries(l.trim().split(/\s+/).map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)])));
}

/** The netlink names of the columns `conntrack -S` and /proc print. */
const CLI_NAMES: Record<string, keyof ConntrackStats['total']> = {
  found: 'found', invalid: 'invalid', insert: 'insert', insert_failed: 'insertFailed', drop: 'drop',
  early_drop: 'earlyDrop', error: 'error', search_restart: 'searchRestart', clash_resolve: 'clashResolve',
  chaintoolong: 'chainTooLong',
};
const PROC_NAMES: Record<string, keyof ConntrackStats['total']> = {
  found: 'found', invalid: 'invalid', insert: 'insert', insert_failed: 'insertFailed', drop: 'drop',
  early_drop: 'earlyDrop', icmp_error: 'error', search_restart: 'searchRestart', clashres: 'clashResolve',
  chainlength: 'chainTooLong',
};

function expectAgree(nl: ConntrackStats, proc: ProcStats, cli: Record<string, number>[], count: number): void {
  expect(nl.count).toBe(count);
  expect(proc.total.entries).toBe(count);
  expect(nl.perCpu.map((c) => c.cpu)).toEqual(cli.map((c) => c.cpu));
  expect(proc.perCpu).toHaveLength(nl.perCpu.length);
  nl.perCpu.forEach((c, i) => {
    for (const [cliName, key] of Object.entries(CLI_NAMES)) expect([cliName, cli[i][cliName]]).toEqual([cliName, c[key]]);
    for (const [procName, key] of Object.entries(PROC_NAMES)) expect([procName, proc.perCpu[i][procName]]).toEqual([procName, c[key]]);
    expect(proc.perCpu[i].entries).toBe(count);
  });
  for (const [procName, key] of Object.entries(PROC_NAMES)) expect([procName, proc.total[procName]]).toEqual([procName, nl.total[key]]);
}

describe('statistics against the kernel', () => {
  test('ct.stats(), readProcStats({ netns }), the file, conntrack -S and conntrack -C agree', async () => {
    await withSandbox(async (ns) => {
      await makeTraffic(ns);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const nl = await ct.stats();
        const fromPid = await readProcStats({ netns: ns.pid });
        const fromPath = await readProcStats({ netns: ns.path });
        const file = parseProcStats((await ns.run('cat', ['/proc/net/stat/nf_conntrack'])).stdout);
        const cli = parseCliStats((await ns.run('conntrack', ['-S'])).stdout);
        const count = Number((await ns.run('conntrack', ['-C'])).stdout.trim());

        // The traffic left entries and moved counters: the comparison is not between zeros.
        expect(count).toBeGreaterThanOrEqual(6);
        expect(nl.total.insert + nl.total.found).toBeGreaterThan(0);
        expect(nl.max).toBe(Number((await ns.run('cat', ['/proc/sys/net/netfilter/nf_conntrack_max'])).stdout.trim()));
        expect(nl.perCpu).toHaveLength(cli.length);
        expectAgree(nl, file, cli, count);
        expect(fromPid).toEqual(file);
        expect(fromPath).toEqual(file);
      } finally {
        await ct.close();
      }
    });
  });

  test('readProcStats enters a namespace given by a path that is not /proc/PID/ns/net', async () => {
    await withSandbox(async (ns) => {
      await ns.sh('conntrack -I -p tcp -s 10.2.0.1 -d 10.2.0.2 --sport 1 --dport 2 -t 50 --state ESTABLISHED');
      const fd = openSync(ns.path, 'r');
      try {
        // /proc/<our pid>/fd/N names the namespace without a pid inside it: read through nsenter.
        const viaFd = await readProcStats({ netns: `/proc/${process.pid}/fd/${fd}` });
        expect(viaFd.total.entries).toBe(1);
        // A misspelt key is refused (it would otherwise read the caller's own namespace).
        await expect(readProcStats({ netsn: ns.path } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.netsn', message: expect.stringContaining('did you mean netns?') });
        const own = await readProcStats();
        const ownCount = Number((await import('fs')).readFileSync('/proc/sys/net/netfilter/nf_conntrack_count', 'utf8'));
        expect(own.total.entries).toBe(ownCount);
      } finally {
        closeSync(fd);
      }
    });
  });

  test('stats count follows entries created and deleted over ctnetlink', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        expect((await ct.stats()).count).toBe(0);
        await ns.sh(
          'for p in 1 2 3; do conntrack -I -p udp -s 10.3.0.1 -d 10.3.0.2 --sport $p --dport 53 -t 60; done',
        );
        const s = await ct.stats();
        expect(s.count).toBe(3);
        expect((await readProcStats({ netns: ns.pid })).total.entries).toBe(3);
        await ns.run('conntrack', ['-D', '-p', 'udp', '--sport', '2']);
        expect((await ct.stats()).count).toBe(2);
      } finally {
        await ct.close();
      }
    });
  });

  test('stats() after close rejects with ERR_CLOSED; a vanished namespace is an ENOENT', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      await ct.close();
      await expect(ct.stats()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
      const ns2 = await sandbox();
      const pid = ns2.pid;
      await ns2.close();
      await new Promise((r) => setTimeout(r, 100));
      const err = await readProcStats({ netns: pid }).catch((e) => e);
      expect(err).toBeInstanceOf(ConntrackError);
      expect(err.code).toBe('ENOENT');
    });
  });
});
