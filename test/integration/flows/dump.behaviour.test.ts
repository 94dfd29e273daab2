/**
 * Dump behaviour against the kernel: early break on a large table, AbortSignal, opening a
 * namespace by pid, and the permission error without CAP_NET_ADMIN.
 */
import { execFile } from 'child_process';
import { readdirSync } from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { Conntrack, ConntrackError } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { waitFor } from '../../helpers/wait';

const execFileP = promisify(execFile);

/** Real UDP flows on loopback: `count` datagrams to distinct ports (nft ct rule loaded). */
async function fillUdp(ns: Sandbox, count: number): Promise<void> {
  await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 600);
  await ns.run('nft', ['-f', '-'], {
    input: 'table inet t {\n chain out {\n type filter hook output priority 0;\n ct state new counter\n }\n chain in {\n type filter hook input priority 0;\n meta l4proto udp drop\n }\n}\n',
  });
  await ns.run('node', ['-e', `
    const s = require('dgram').createSocket('udp4');
    let i = 0;
    // A send refused while the socket buffer is full (a loaded machine) is sent again.
    const next = (err) => {
      if (err) return setTimeout(() => { i--; next(); }, 2);
      if (i === ${count}) return s.close();
      s.send('x', 10000 + (i % 50000), '127.0.0.' + (2 + Math.floor(i / 50000)), next);
      i++;
    };
    next();`]);
  const { stdout } = await ns.run('conntrack', ['-C']);
  expect(Number(stdout)).toBe(count);
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('dump behaviour', () => {
  test('an early break leaves no open socket and a second dump sees the whole table', async () => {
    await withSandbox(async (ns) => {
      await fillUdp(ns, 6000);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const fdsBefore = openFds();
        let n = 0;
        for await (const f of ct.dump()) {
          expect(f.proto).toBe('udp');
          if (++n === 10) break;
        }
        expect(n).toBe(10);
        // The rest of the kernel dump is drained without decoding, then the socket closes.
        const dumps = ct.children;
        await waitFor(() => dumps.size === 0 && openFds() <= fdsBefore, 'the dump socket to close');
        expect(dumps.size).toBe(0);
        expect(openFds()).toBeLessThanOrEqual(fdsBefore);
        const all = await ct.list();
        expect(all).toHaveLength(6000);
        expect(new Set(all.map((f) => `${f.orig.dst}:${f.orig.dport}`)).size).toBe(6000);
      } finally {
        await ct.close();
      }
    });
  });

  test('an AbortSignal aborts a running dump with ERR_ABORTED', async () => {
    await withSandbox(async (ns) => {
      await fillUdp(ns, 4000);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const ac = new AbortController();
        let n = 0;
        const run = (async () => {
          for await (const _ of ct.dump(undefined, { signal: ac.signal })) if (++n === 5) ac.abort();
        })();
        await expect(run).rejects.toMatchObject({ name: 'ConntrackError', code: 'ERR_ABORTED' });
        expect(n).toBe(5);
        // An already aborted signal refuses at once, and list() takes one too.
        await expect(ct.list(undefined, { signal: ac.signal })).rejects.toBeInstanceOf(ConntrackError);
        expect(await ct.list()).toHaveLength(4000);
      } finally {
        await ct.close();
      }
    });
  });

  test('Conntrack.open({ netns }) accepts a pid number', async () => {
    await withSandbox(async (ns) => {
      await ns.run('conntrack', ['-I', '-p', 'udp', '-s', '10.9.0.1', '-d', '10.9.0.2', '--sport', '1', '--dport', '2', '-t', '60']);
      const ct = await Conntrack.open({ netns: ns.pid });
      try {
        const flows = await ct.list();
        expect(flows.map((f) => f.orig.src)).toEqual(['10.9.0.1']);
      } finally {
        await ct.close();
      }
    });
  });

  test('without CAP_NET_ADMIN, open() fails with EPERM and says what is needed', async () => {
    const dist = path.resolve(__dirname, '../../../dist/lib');
    const script = `
      require(${JSON.stringify(dist)}).Conntrack.open().then(
        () => { console.log(JSON.stringify({ ok: true })); },
        (e) => { console.log(JSON.stringify({ code: e.code, errno: e.errno, message: e.message, name: e.name })); });`;
    const { stdout } = await execFileP('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '-e', script]);
    const r = JSON.parse(stdout.trim());
    expect(r.ok).toBeUndefined();
    expect(r.name).toBe('ConntrackError');
    expect(r.code).toBe('EPERM');
    expect(r.errno).toBe(1);
    expect(r.message).toMatch(/CAP_NET_ADMIN/);
    expect(r.message).toMatch(/unshare -Urn/);
    expect(r.message).toMatch(/sudo|root/);
  });
});
