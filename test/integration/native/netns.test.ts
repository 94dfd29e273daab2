/**
 * Sockets in other network namespaces, made on a native helper thread: by path and by
 * fd, synchronously (new Socket) and asynchronously (openSocket), without the calling
 * thread ever changing namespace; and the errors when that cannot be done.
 */
import { execFile, spawn } from 'child_process';
import { closeSync, openSync, readlinkSync } from 'fs';
import * as path from 'path';
import { Sandbox, sandbox } from '../../../apps/testing';
import { stdoutOf } from '../../helpers/child';
import { addon, client, clientAsync, insertUdp } from './addon';

let a: Sandbox;
let b: Sandbox;

beforeAll(async () => {
  [a, b] = await Promise.all([sandbox(), sandbox()]);
  await Promise.all([insertUdp(a, '10.1.0.1'), insertUdp(a, '10.1.0.2'), insertUdp(b, '10.2.0.1')]);
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
});

const own = (): string => readlinkSync('/proc/thread-self/ns/net');

describe('opening a socket in another namespace', () => {
  test('by path (new Socket) sees that namespace and not the other', async () => {
    const ca = client({ netns: a.path });
    const cb = client({ netns: b.path });
    expect(await ca.dumpSources()).toEqual(['10.1.0.1', '10.1.0.2']);
    expect(await cb.dumpSources()).toEqual(['10.2.0.1']);
    ca.sock.close();
    cb.sock.close();
  });

  test('by fd (new Socket); the caller may close its fd right after', async () => {
    const fd = openSync(a.path, 'r');
    const c = client({ netnsFd: fd });
    closeSync(fd);
    expect(await c.dumpSources()).toEqual(['10.1.0.1', '10.1.0.2']);
    c.sock.close();
  });

  test('by path and by fd with openSocket()', async () => {
    const fd = openSync(b.path, 'r');
    const pending = clientAsync({ netnsFd: fd });
    closeSync(fd); // duplicated at call time
    const [byPath, byFd] = await Promise.all([clientAsync({ netns: a.path, threaded: true }), pending]);
    expect(await byPath.dumpSources()).toEqual(['10.1.0.1', '10.1.0.2']);
    expect(await byFd.dumpSources()).toEqual(['10.2.0.1']);
    byPath.sock.close();
    byFd.sock.close();
  });

  test('a namespace path of the caller\'s own namespace works without setns', async () => {
    const c = await clientAsync({ netns: '/proc/self/ns/net' });
    expect(typeof c.sock.portId).toBe('number');
    c.sock.close();
  });

  test("the main thread's namespace is the same before, during and after the opens", async () => {
    const before = own();
    const seen = new Set<string>();
    const timer = setInterval(() => seen.add(own()), 1);
    try {
      for (let round = 0; round < 20; round++) {
        const socks = await Promise.all([
          clientAsync({ netns: a.path }),
          clientAsync({ netns: b.path }),
          clientAsync({ netns: a.path, threaded: true, asyncSend: true }),
        ]);
        seen.add(own());
        const sync = client({ netns: b.path }); // the JS thread waits for the helper, never enters
        seen.add(own());
        for (const c of [...socks, sync]) c.sock.close();
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      clearInterval(timer);
    }
    expect(seen.size).toBeGreaterThan(0);
    expect([...seen]).toEqual([before]);
    expect(own()).toBe(before);
    // And the namespaces really are different ones.
    expect(readlinkSync(a.path)).not.toBe(before);
  });
});

describe('errors name the namespace and what to do', () => {
  test('a path that does not exist: ENOENT, open', async () => {
    const p = '/proc/999999999/ns/net';
    await expect(addon.openSocket(() => {}, { netns: p })).rejects.toMatchObject({
      errno: 2,
      syscall: 'open',
      netns: p,
      message: expect.stringMatching(/network namespace \/proc\/999999999\/ns\/net does not exist.*ip netns add/),
    });
    expect(() => new addon.Socket(() => {}, { netns: p })).toThrow(/does not exist/);
  });

  test('a file that is not a network namespace: EINVAL, setns', async () => {
    await expect(addon.openSocket(() => {}, { netns: '/proc/self/ns/uts' })).rejects.toMatchObject({
      errno: 22,
      syscall: 'setns',
      message: expect.stringMatching(/\/proc\/self\/ns\/uts is not a network namespace.*\/proc\/PID\/ns\/net/),
    });
    const fd = openSync('/etc/hostname', 'r');
    try {
      await expect(addon.openSocket(() => {}, { netnsFd: fd })).rejects.toMatchObject({
        errno: 22,
        syscall: 'setns',
        netnsFd: fd,
        message: expect.stringMatching(new RegExp(`fd ${fd} is not a network namespace`)),
      });
    } finally {
      closeSync(fd);
    }
  });

  test('a descriptor that is not open: EBADF, thrown at once', () => {
    expect(() => addon.openSocket(() => {}, { netnsFd: 987654 })).toThrow(
      expect.objectContaining({ errno: 9, message: expect.stringMatching(/netnsFd 987654 is not an open file descriptor/) }),
    );
  });

  test('a path with a NUL byte is refused, not cut short', () => {
    expect(() => new addon.Socket(() => {}, { netns: `${a.path}\0junk` })).toThrow(/must not contain a NUL byte/);
    expect(() => addon.openSocket(() => {}, { netns: `${a.path}\0` })).toThrow(/NUL/);
  });

  test('bad option types are TypeErrors', () => {
    // The addon's errors come from the main realm, not jest's: compare by name.
    const typeError = (fn: () => unknown, message: RegExp): void =>
      expect(fn).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(message) }));
    typeError(() => new addon.Socket(() => {}, { netns: 5 }), /netns must be a string/);
    typeError(() => addon.openSocket(() => {}, { netnsFd: '3' }), /netnsFd must be a number/);
    typeError(() => addon.openSocket(() => {}, { netnsFd: 1.5 }), /non-negative integer/);
    typeError(() => addon.openSocket(() => {}, { netns: a.path, netnsFd: 0 }), /one, not both/);
    typeError(() => addon.openSocket(42), /onData must be a function/);
  });

  test('without CAP_SYS_ADMIN over the namespace: EPERM with the missing permission named', async () => {
    // A process in a fresh user namespace has no capability over ours; it gets the
    // namespace as an inherited fd (fd 3), and as the path /proc/self/fd/3.
    const fd = openSync(a.path, 'r');
    const script = `
      const addon = require('node-gyp-build')(${JSON.stringify(path.resolve(__dirname, '../../..'))});
      const out = [];
      const record = (e) => out.push({ errno: e.errno, syscall: e.syscall, message: e.message });
      (async () => {
        await addon.openSocket(() => {}, { netnsFd: 3 }).catch(record);
        await addon.openSocket(() => {}, { netns: '/proc/self/fd/3' }).catch(record);
        try { new addon.Socket(() => {}, { netnsFd: 3 }); } catch (e) { record(e); }
        await addon.netnsFiles({ netnsFd: 3 }, [{ op: 'read', path: '/proc/sys/net/netfilter/nf_conntrack_max' }]).catch(record);
        process.stdout.write(JSON.stringify(out));
      })();`;
    let stdout: string;
    try {
      stdout = await stdoutOf(spawn('unshare', ['-U', '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe', fd] }));
    } finally {
      closeSync(fd);
    }
    const results = JSON.parse(stdout) as { errno: number; syscall: string; message: string }[];
    expect(results).toHaveLength(4);
    for (const r of results) {
      expect(r.errno).toBe(1);
      expect(r.syscall).toBe('setns');
      expect(r.message).toMatch(/refused \(EPERM\): setns\(\) needs CAP_SYS_ADMIN in the user namespace that owns/);
    }
    expect(results[0].message).toMatch(/network namespace fd 3/);
    expect(results[1].message).toMatch(/network namespace \/proc\/self\/fd\/3/);
  });
});

test('the helper process used above really is unprivileged over our namespace', async () => {
  // Guards the EPERM test: `unshare -U` must not have been given a mapping to root.
  const uid = await new Promise<string>((resolve, reject) =>
    execFile('unshare', ['-U', '--', 'id', '-u'], (err, out) => (err ? reject(err) : resolve(out.trim()))),
  );
  expect(uid).toBe('65534');
});
