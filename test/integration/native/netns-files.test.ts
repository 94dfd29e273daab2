/**
 * netnsFiles(): namespace-local files (the nf_conntrack sysctls, /proc/thread-self/net)
 * read and written from a helper thread inside the namespace, in one call, with an
 * error per file.
 */
import { readFileSync, openSync, closeSync } from 'fs';
import { Sandbox, sandbox } from '../../../apps/testing';
import { addon, insertUdp } from './addon';

const SYSCTL = '/proc/sys/net/netfilter';
let ns: Sandbox;

beforeAll(async () => {
  ns = await sandbox();
  await ns.run('conntrack', ['-L']); // loads nf_conntrack for the namespace if needed
  await ns.sysctl('net.netfilter.nf_conntrack_tcp_loose', 0);
  await Promise.all(['10.3.0.1', '10.3.0.2', '10.3.0.3'].map((s) => insertUdp(ns, s)));
});

afterAll(() => ns?.close());

const cat = async (file: string): Promise<string> => (await ns.run('cat', [file])).stdout;

test("reads the namespace's sysctls, not the caller's", async () => {
  const host = readFileSync(`${SYSCTL}/nf_conntrack_tcp_loose`, 'utf8');
  const [byPath] = await addon.netnsFiles({ netns: ns.path }, [{ op: 'read', path: `${SYSCTL}/nf_conntrack_tcp_loose` }]);
  const fd = openSync(ns.path, 'r');
  const [byFd, count] = await addon.netnsFiles({ netnsFd: fd }, [
    { op: 'read', path: `${SYSCTL}/nf_conntrack_tcp_loose` },
    { op: 'read', path: `${SYSCTL}/nf_conntrack_count` },
  ]);
  closeSync(fd);
  expect(byPath).toEqual({ ok: true, data: '0\n' });
  expect(byFd).toEqual({ ok: true, data: '0\n' });
  expect(count).toEqual({ ok: true, data: '3\n' });
  expect(host).toBe('1\n'); // the default, untouched in the test process's namespace
});

test('/proc/thread-self/net/stat/nf_conntrack is the namespace\'s table', async () => {
  const [stat] = await addon.netnsFiles({ netns: ns.path }, [{ op: 'read', path: '/proc/thread-self/net/stat/nf_conntrack' }]);
  expect(stat.ok).toBe(true);
  const [header, row] = (stat.data as string).trim().split('\n');
  const col = header.trim().split(/\s+/).indexOf('entries');
  expect(col).toBeGreaterThanOrEqual(0);
  expect(parseInt(row.trim().split(/\s+/)[col], 16)).toBe(3);
  // Same header as the kernel prints for a process inside the namespace.
  expect((await cat('/proc/net/stat/nf_conntrack')).split('\n')[0]).toBe(header);
});

test('writes land in the namespace; the caller\'s value is untouched', async () => {
  const file = `${SYSCTL}/nf_conntrack_udp_timeout`;
  const host = readFileSync(file, 'utf8');
  const old = (await cat(file)).trim();
  const next = old === '33' ? '34' : '33';
  const [w, r] = await addon.netnsFiles({ netns: ns.path }, [
    { op: 'write', path: file, data: next },
    { op: 'read', path: file },
  ]);
  expect(w).toEqual({ ok: true });
  expect(r).toEqual({ ok: true, data: `${next}\n` });
  expect((await cat(file)).trim()).toBe(next);
  expect(readFileSync(file, 'utf8')).toBe(host);
});

test('list: names under a prefix, sorted, with mode, write access and (optionally) contents', async () => {
  const [res] = await addon.netnsFiles({ netns: ns.path }, [{ op: 'list', path: SYSCTL, prefix: 'nf_conntrack_', read: true }]);
  expect(res.ok).toBe(true);
  const names = res.entries.map((e: { name: string }) => e.name);
  expect(names).toEqual([...names].sort());
  expect(names.every((n: string) => n.startsWith('nf_conntrack_'))).toBe(true);
  const byName = new Map(res.entries.map((e: { name: string }) => [e.name, e]));
  expect(byName.get('nf_conntrack_count')).toMatchObject({ data: '3\n', mode: 0o444, writable: false, isDirectory: false });
  expect(byName.get('nf_conntrack_tcp_loose')).toMatchObject({ data: '0\n', mode: 0o644, writable: true });
  // Global settings are read-only outside the initial namespace.
  expect(byName.get('nf_conntrack_max')).toMatchObject({ mode: 0o444, writable: false });
  const [stat] = await addon.netnsFiles({ netns: ns.path }, [{ op: 'stat', path: `${SYSCTL}/nf_conntrack_max` }]);
  expect(stat).toEqual({ ok: true, mode: 0o444, writable: false });
});

test('each file gets its own error; stopOnError skips the rest', async () => {
  const ops = [
    { op: 'read', path: `${SYSCTL}/nf_conntrack_no_such_thing` },
    { op: 'write', path: `${SYSCTL}/nf_conntrack_max`, data: '1000' },
    { op: 'read', path: `${SYSCTL}/nf_conntrack_tcp_loose` },
  ];
  const all = await addon.netnsFiles({ netns: ns.path }, ops);
  expect(all).toEqual([
    { ok: false, errno: 2, syscall: 'open' },
    { ok: false, errno: 13, syscall: 'open' }, // global: read-only in a child namespace
    { ok: true, data: '0\n' },
  ]);
  const stopped = await addon.netnsFiles({ netns: ns.path }, ops.slice(1), { stopOnError: true });
  expect(stopped).toEqual([{ ok: false, errno: 13, syscall: 'open' }, { ok: false, skipped: true }]);
  expect((await cat(`${SYSCTL}/nf_conntrack_max`)).trim()).toBe(readFileSync(`${SYSCTL}/nf_conntrack_max`, 'utf8').trim());
});

test('without a namespace it works in the caller\'s own', async () => {
  const [r] = await addon.netnsFiles({}, [{ op: 'read', path: `${SYSCTL}/nf_conntrack_tcp_loose` }]);
  expect(r).toEqual({ ok: true, data: readFileSync(`${SYSCTL}/nf_conntrack_tcp_loose`, 'utf8') });
});

test('a namespace that cannot be entered rejects the whole call, naming it', async () => {
  await expect(addon.netnsFiles({ netns: '/proc/999999999/ns/net' }, [{ op: 'read', path: '/proc/version' }])).rejects.toMatchObject({
    errno: 2,
    syscall: 'open',
    message: expect.stringMatching(/\/proc\/999999999\/ns\/net does not exist/),
  });
});

test('bad operations are refused before anything runs', () => {
  const typeError = (ops: unknown, message: RegExp): void =>
    expect(() => addon.netnsFiles({}, ops)).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(message) }));
  typeError('x', /ops must be an array/);
  typeError([{ op: 'delete', path: '/tmp/x' }], /ops\[0\]\.op must be 'read', 'write', 'stat' or 'list'/);
  typeError([{ op: 'read', path: 'relative' }], /absolute path/);
  typeError([{ op: 'read', path: '/proc/version\0x' }], /NUL/);
  typeError([{ op: 'write', path: '/tmp/x' }], /ops\[0\]\.data must be a string/);
});
