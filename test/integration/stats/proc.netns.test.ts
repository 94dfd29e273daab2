/**
 * readProcStats({ netns }): a pid (or /proc/PID/ns/net) is read as /proc/PID/net/stat/
 * nf_conntrack without joining the namespace, so it works without CAP_SYS_ADMIN; names,
 * other paths and descriptors join the namespace on the native helper thread (which needs
 * it). The unprivileged reader is a child process as `nobody` with no capabilities.
 */
import { execFileSync, spawn } from 'child_process';
import { closeSync, existsSync, openSync, statSync } from 'fs';
import * as path from 'path';
import { Conntrack, ProcStats, parseProcStats, readProcStats } from '../../../lib';
import { withSandbox } from '../../../apps/testing';

const ROOT = path.join(__dirname, '../../..');
const DIST = path.join(ROOT, 'dist', 'lib');

beforeAll(() => {
  const built = path.join(DIST, 'stats', 'proc.js');
  if (!existsSync(built) || statSync(built).mtimeMs < statSync(path.join(ROOT, 'lib', 'stats', 'proc.ts')).mtimeMs) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore', timeout: 300000 });
  }
});

type Outcome = { ok: true; stats: ProcStats } | { ok: false; code: string; errno: number; syscall: string; message: string };

/** Runs readProcStats for each option as uid 65534 with no capabilities (fd 3: `fd`). */
function readAsNobody(options: unknown[], fd: number): Promise<Outcome[]> {
  const script = `
    const { readProcStats } = require(${JSON.stringify(DIST)});
    (async () => {
      const out = [];
      for (const netns of ${JSON.stringify(options)}) {
        await readProcStats({ netns }).then((stats) => out.push({ ok: true, stats }), (e) => out.push({ ok: false, code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }));
      }
      process.stdout.write(JSON.stringify(out));
    })();`;
  const args = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--', process.execPath, '-e', script];
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe', fd], cwd: '/' });
    let o = '';
    let e = '';
    child.stdout!.on('data', (d) => (o += d));
    child.stderr!.on('data', (d) => (e += d));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(o));
      else reject(new Error(`child exited ${code}: ${e}`));
    });
  });
}

const spec = (i: number) => ({ proto: 'udp' as const, orig: { src: `10.41.0.${i}`, dst: '10.41.1.1', sport: 2000 + i, dport: 53 }, timeout: 300 });

describe('readProcStats({ netns })', () => {
  test('a pid or /proc/PID/ns/net is read without joining the namespace (no CAP_SYS_ADMIN needed); a descriptor joins it', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.pid });
      const fd = openSync(ns.path, 'r');
      try {
        for (let i = 1; i <= 3; i++) await ct.create(spec(i));
        // The namespace's own view of the file, and the library's by every way of naming it.
        const inside = parseProcStats((await ns.run('cat', ['/proc/net/stat/nf_conntrack'])).stdout);
        expect(inside.total.entries).toBe(3);
        const byPid = await readProcStats({ netns: ns.pid });
        expect(byPid).toEqual(inside);
        expect(await readProcStats({ netns: String(ns.pid) })).toEqual(inside);
        expect(await readProcStats({ netns: ns.path })).toEqual(inside);
        expect(await readProcStats({ netns: `/proc/${ns.pid}/task/${ns.pid}/ns/net` })).toEqual(inside);
        expect(await readProcStats({ netns: { fd } })).toEqual(inside); // through the helper thread
        const own = await readProcStats({ netns: '/proc/self/ns/net' });
        expect(own).toEqual(await readProcStats());

        // Without any capability: the pid and its ns path still read the namespace's file;
        // the descriptor (joining the namespace) is refused.
        const [pid, nsPath, byFd] = await readAsNobody([ns.pid, ns.path, { fd: 3 }], fd);
        expect(pid).toEqual({ ok: true, stats: inside });
        expect(nsPath).toEqual({ ok: true, stats: inside });
        expect(byFd).toMatchObject({ ok: false, code: 'EPERM', errno: 1, syscall: 'setns' });
        expect((byFd as { message: string }).message).toMatch(/^readProcStats: joining network namespace fd 3 was refused \(EPERM\): setns\(\) needs CAP_SYS_ADMIN/);
      } finally {
        closeSync(fd);
        await ct.close();
      }
    });
  });

  test('a pid that has exited: ENOENT naming the pid', async () => {
    let gone = 0;
    await withSandbox(async (ns) => {
      gone = ns.pid;
    });
    while (existsSync(`/proc/${gone}`)) await new Promise((r) => setTimeout(r, 5));
    for (const netns of [gone, `/proc/${gone}/ns/net`]) {
      const err = await readProcStats({ netns }).catch((e) => e);
      expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open', field: 'netns' });
      expect(err.message).toBe(`readProcStats: no such process or namespace: pid ${gone} (/proc/${gone} does not exist; the process may have exited): pass the pid of a running process, a name created with \`ip netns add NAME\`, or { fd }`);
    }
    await expect(readProcStats({ netns: 1.5 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns' });
    await expect(readProcStats({ netns: 0 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns' });
  });
});
