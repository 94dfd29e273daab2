/**
 * Conntrack.open({ netns }) by name, path, pid and { fd }: each handle sees its
 * namespace's table and not the caller's, every later socket of the handle (dumps, event
 * streams, settings, proc stats) works in the same namespace, the JavaScript thread never
 * changes namespace, and the errors name the namespace and what is missing.
 */
import { execFile, spawn } from 'child_process';
import { closeSync, existsSync, openSync, readlinkSync } from 'fs';
import * as path from 'path';
import { promisify } from 'util';
import { Conntrack, ConntrackError, readProcStats } from '../../lib';
import { Sandbox, sandbox } from '../../apps/testing';
import { stdoutOf } from '../helpers/child';

const execFileP = promisify(execFile);
const DIST = path.join(__dirname, '../../dist/lib');
const own = (): string => readlinkSync('/proc/thread-self/ns/net');

let a: Sandbox;
let b: Sandbox;
const name = `nsjs-${process.pid}`;

/** `conntrack -I` of a UDP entry from `src`, run inside the namespace at `nsPath`. */
async function insert(nsPath: string, src: string): Promise<void> {
  await execFileP('nsenter', [`--net=${nsPath}`, '--', 'conntrack', '-I', '-p', 'udp', '-s', src, '-d', '10.77.0.1', '--sport', '1000', '--dport', '53', '-t', '300']);
}

const sources = async (ct: Conntrack): Promise<string[]> => (await ct.list()).map((f) => f.orig.src).sort();

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(), sandbox()]);
  await execFileP('ip', ['netns', 'add', name]);
  await Promise.all([
    insert(a.path, '10.71.0.1'),
    insert(a.path, '10.71.0.2'),
    insert(b.path, '10.72.0.1'),
    insert(`/var/run/netns/${name}`, '10.73.0.1'),
  ]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await execFileP('ip', ['netns', 'del', name]).catch(() => undefined);
});

describe('each way of naming a namespace sees that table and not the caller\'s', () => {
  test('by name, path, pid and { fd }', async () => {
    const caller = await Conntrack.open();
    const fd = openSync(b.path, 'r');
    try {
      const callerSources = await sources(caller);
      // options, the entries expected, ct.netns, and where to make an event
      const cases: [Parameters<typeof Conntrack.open>[0], string[], string, string][] = [
        [{ netns: name }, ['10.73.0.1'], `/var/run/netns/${name}`, `/var/run/netns/${name}`],
        [{ netns: a.path }, ['10.71.0.1', '10.71.0.2'], a.path, a.path],
        [{ netns: a.pid }, ['10.71.0.1', '10.71.0.2'], a.path, a.path],
        [{ netns: String(b.pid) }, ['10.72.0.1'], b.path, b.path],
        [{ netns: { fd } }, ['10.72.0.1'], `fd ${fd}`, b.path],
      ];
      for (const [options, expected, label, where] of cases) {
        const ct = await Conntrack.open(options);
        try {
          expect(ct.netns).toBe(label);
          expect(await sources(ct)).toEqual(expected);
          // A second socket of the same handle (an event stream) is in the same namespace.
          const events = ct.events({ types: ['new'] });
          const next = events.next();
          await insert(where, '10.79.0.9');
          expect((await next).value.flow.orig.src).toBe('10.79.0.9');
          events.close();
          await ct.delete({ proto: 'udp', orig: { src: '10.79.0.9', dst: '10.77.0.1', sport: 1000, dport: 53 } });
        } finally {
          await ct.close();
        }
      }
      // The caller's own table has none of them.
      for (const src of ['10.71.0.1', '10.72.0.1', '10.73.0.1', '10.79.0.9']) expect(callerSources).not.toContain(src);
      expect(await sources(caller)).toEqual(callerSources);
    } finally {
      closeSync(fd);
      await caller.close();
    }
  });

  test('the namespace is pinned at open(): the caller may close its fd, and the process may exit', async () => {
    const c = await sandbox();
    await insert(c.path, '10.74.0.1');
    const fd = openSync(c.path, 'r');
    const byFd = await Conntrack.open({ netns: { fd } });
    const byPid = await Conntrack.open({ netns: c.pid });
    closeSync(fd);
    await c.close(); // the only process in the namespace is gone; the handles still hold it
    while (existsSync(`/proc/${c.pid}`)) await new Promise((r) => setTimeout(r, 5));
    try {
      // New sockets (each dump has its own) are made after the process exited.
      expect(await sources(byFd)).toEqual(['10.74.0.1']);
      expect(await sources(byPid)).toEqual(['10.74.0.1']);
      expect((await byPid.settings.get()).count).toBe(1);
    } finally {
      await byFd.close();
      await byPid.close();
    }
    // Once closed, nothing of the handle works on (or reopens) the namespace.
    await expect(byPid.settings.get()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
  });

  test('settings and proc stats of a namespace opened by name and by fd', async () => {
    await execFileP('ip', ['netns', 'exec', name, 'sysctl', '-q', '-w', 'net.netfilter.nf_conntrack_udp_timeout=23']);
    const byName = await Conntrack.open({ netns: name });
    const fd = openSync(`/var/run/netns/${name}`, 'r');
    try {
      expect((await byName.settings.get()).udpTimeout).toBe(23);
      const stats = await readProcStats({ netns: { fd } });
      expect(stats.total.entries).toBe(1);
      expect((await readProcStats({ netns: name })).total.entries).toBe(1);
    } finally {
      closeSync(fd);
      await byName.close();
    }
  });
});

test("the main thread's namespace is the same before, during and after many concurrent opens", async () => {
  const before = own();
  const seen = new Set<string>();
  const timer = setInterval(() => seen.add(own()), 1);
  const fd = openSync(b.path, 'r');
  let samples = 0;
  try {
    for (let round = 0; round < 10; round++) {
      const handles = await Promise.all([
        Conntrack.open({ netns: a.path }),
        Conntrack.open({ netns: b.pid }),
        Conntrack.open({ netns: name }),
        Conntrack.open({ netns: { fd } }),
        Conntrack.open({ netns: a.pid }),
        Conntrack.open({ netns: b.path }),
      ]);
      seen.add(own());
      // Later sockets and file operations of the handles, concurrently too.
      const work = handles.flatMap((ct) => [ct.list(), ct.settings.get(), ct.stats()]);
      const streams = handles.map((ct) => ct.events());
      seen.add(own());
      await Promise.all(work);
      for (const s of streams) s.close();
      await Promise.all(handles.map((ct) => ct.close()));
      samples = seen.size;
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    clearInterval(timer);
    closeSync(fd);
  }
  expect(samples).toBeGreaterThan(0);
  expect([...seen]).toEqual([before]);
  expect(own()).toBe(before);
  expect(readlinkSync(a.path)).not.toBe(before);
});

describe('errors name the namespace and what to do', () => {
  test('a pid that does not exist: no such process or namespace', async () => {
    expect(existsSync('/proc/999999')).toBe(false);
    const err = await Conntrack.open({ netns: 999999 }).catch((e) => e);
    expect(err).toBeInstanceOf(ConntrackError);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open' });
    expect(err.message).toMatch(/no such process or namespace: pid 999999 \(\/proc\/999999\/ns\/net does not exist/);
    await expect(readProcStats({ netns: '999999' })).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/no such process or namespace/) });
  });

  test('bad names, paths and descriptors', async () => {
    await expect(Conntrack.open({ netns: 'no-such-ns-here' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns', message: expect.stringMatching(/ip netns add no-such-ns-here/) });
    await expect(Conntrack.open({ netns: '/nonexistent/ns' })).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/network namespace \/nonexistent\/ns does not exist/) });
    await expect(Conntrack.open({ netns: `${a.path}\0x` })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringMatching(/NUL/) });
    await expect(Conntrack.open({ netns: { fd: 1.5 } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns.fd' });
    await expect(Conntrack.open({ netns: { fd: 3, pid: 1 } as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns.pid' });
    await expect(Conntrack.open({ netns: { fd: 987654 } })).rejects.toMatchObject({ code: 'EBADF', message: expect.stringMatching(/987654 is not an open file descriptor/) });
    // A file that is not a network namespace: named as the caller named it.
    const fd = openSync('/etc/hostname', 'r');
    try {
      const err = await Conntrack.open({ netns: { fd } }).catch((e) => e);
      expect(err).toMatchObject({ code: 'EINVAL', errno: 22, syscall: 'setns' });
      expect(err.message).toMatch(new RegExp(`^opening a netlink socket: fd ${fd} is not a network namespace`));
    } finally {
      closeSync(fd);
    }
    await expect(Conntrack.open({ netns: '/proc/self/ns/uts' })).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/\/proc\/self\/ns\/uts is not a network namespace/) });
  });

  test('without CAP_SYS_ADMIN over the namespace (from inside unshare -Urn): EPERM naming the namespace and the permission', async () => {
    expect(existsSync(path.join(DIST, 'index.js'))).toBe(true); // run `npm run build` first
    // The child is root of a new user namespace, which owns none of our namespaces. It
    // gets the namespace made by `ip netns add` by name and by its bind mount, and a's as
    // an inherited descriptor (fd 3): each opens, and joining it is refused. a's
    // /proc/PID/ns/net cannot even be opened from there (no ptrace access to a process of
    // a user namespace it has no capability over).
    const script = `
      const { Conntrack, readProcStats } = require(${JSON.stringify(DIST)});
      const out = [];
      const record = (e) => out.push({ code: e.code, errno: e.errno, syscall: e.syscall, message: e.message });
      (async () => {
        for (const netns of [${JSON.stringify(name)}, ${JSON.stringify(`/var/run/netns/${name}`)}, { fd: 3 }, ${a.pid}]) {
          await Conntrack.open({ netns }).then(() => out.push('opened'), record);
        }
        await readProcStats({ netns: { fd: 3 } }).then(() => out.push('read'), record);
        process.stdout.write(JSON.stringify(out));
      })();`;
    const fd = openSync(a.path, 'r');
    let stdout: string;
    try {
      stdout = await stdoutOf(spawn('unshare', ['-Urn', '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe', fd] }));
    } finally {
      closeSync(fd);
    }
    const results = JSON.parse(stdout) as { code: string; errno: number; syscall: string; message: string }[];
    expect(results).toHaveLength(5);
    const [byName, byMount, byFd, byPid, stats] = results;
    for (const r of [byName, byMount, byFd, stats]) {
      expect(r).toMatchObject({ code: 'EPERM', errno: 1, syscall: 'setns' });
      expect(r.message).toMatch(/refused \(EPERM\): setns\(\) needs CAP_SYS_ADMIN in the user namespace that owns that network namespace/);
    }
    expect(byName.message).toMatch(new RegExp(`^opening a netlink socket: joining network namespace /var/run/netns/${name} was refused`));
    expect(byMount.message).toContain(`joining network namespace /var/run/netns/${name} was refused`);
    expect(byFd.message).toContain('joining network namespace fd 3 was refused');
    expect(stats.message).toMatch(/^readProcStats: joining network namespace fd 3 was refused/);
    expect(byPid).toMatchObject({ code: 'EACCES', errno: 13, syscall: 'open' });
    expect(byPid.message).toContain(`cannot open network namespace ${a.path} (open: EACCES): /proc/PID/ns/net of another process can be opened only with ptrace access`);
  });
});
