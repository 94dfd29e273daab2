/**
 * Child processes in tests: the stdout of one that must exit 0, and scripts run in a child
 * Node process against the built package (dist/lib, rebuilt first when older than lib/), for
 * what a test cannot observe inside Jest: process-level uncaught exceptions, exit codes,
 * crashes, a process that must exit by itself, another namespace.
 */
import { ChildProcess, execFile, execFileSync, spawn } from 'child_process';
import { existsSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';

/** Resolves with a child process's stdout once it exits 0; rejects with the exit code and stderr otherwise. */
export function stdoutOf(child: ChildProcess): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let o = '';
    let e = '';
    child.stdout!.on('data', (d) => (o += d));
    child.stderr!.on('data', (d) => (e += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(o) : reject(new Error(`child exited ${code}: ${e}`))));
  });
}

export const DIST = path.join(__dirname, '..', '..', 'dist', 'lib');
const ROOT = path.join(__dirname, '..', '..');

let distChecked = false;
/**
 * Rebuilds dist/ when lib/ is newer (a test run straight after editing lib/, without
 * `npm run build`): children would otherwise run the old code. Checked once per process.
 */
export function ensureDist(): void {
  if (distChecked) return;
  distChecked = true;
  const built = path.join(DIST, 'conntrack.js');
  const newest = Math.max(...listTs(path.join(ROOT, 'lib')).map((f) => statSync(f).mtimeMs));
  if (!existsSync(built) || statSync(built).mtimeMs < newest) {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'ignore', timeout: 300000 });
  }
}

function listTs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? listTs(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []);
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `script` (saved to a temporary file) as `cmd ...args node FILE`, for example under
 * `unshare -n`; killed with SIGKILL after `timeoutMs`. Resolves once it exits, with its
 * run time in `ms`. The script requires the package from dist/lib itself (see `DIST`).
 */
export function runScript(cmd: string, args: string[], script: string, timeoutMs = 60000): Promise<ChildResult & { ms: number }> {
  ensureDist();
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'ct-child-')), 'child.js');
  writeFileSync(file, script);
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(cmd, [...args, process.execPath, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Runs `code` with `node -e`; `DIST` is defined in it as the path of dist/lib. */
export function runNode(code: string, args: string[] = [], nodeArgs: string[] = []): Promise<ChildResult> {
  ensureDist();
  const script = `const DIST = ${JSON.stringify(DIST)};\n${code}`;
  return new Promise((resolve) => {
    execFile(process.execPath, [...nodeArgs, '-e', script, '--', ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({
        code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
        signal: e?.signal ?? null,
        stdout,
        stderr,
      });
    });
  });
}

/**
 * Runs `body` in a child Node process with `ct` open in the namespace `netns` and blocks
 * this thread until it exits. A flood made this way overruns this process's event sockets
 * on any machine, however fast: their reader threads stop once 4 MB wait for JavaScript,
 * then the kernel drops the rest. In `body`, `spec(i, base)` is the UDP entry
 * 10.BASE.(i >> 8).(i & 255):1000 -> 10.99.0.1:53 (timeout 600) and `key(s)` its key;
 * a bulk call that reports errors fails the child, and so this call.
 */
export function floodBlocking(netns: string, body: string): void {
  ensureDist();
  const script = `const DIST = ${JSON.stringify(DIST)};
    const { Conntrack } = require(DIST);
    const spec = (i, base) => ({ proto: 'udp', orig: { src: '10.' + base + '.' + (i >> 8) + '.' + (i & 255), dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600 });
    const key = (s) => ({ proto: s.proto, orig: s.orig });
    const range = (n, f) => Array.from({ length: n }, (_, i) => f(i));
    const check = (r) => { if (r.errors.length) throw r.errors[0].error; return r; };
    (async () => {
      const ct = await Conntrack.open({ netns: ${JSON.stringify(netns)} });
      try {
        ${body}
      } finally {
        await ct.close();
      }
    })().catch((e) => { console.error(e); process.exit(1); });`;
  execFileSync(process.execPath, ['-e', script], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 120000, killSignal: 'SIGKILL' });
}
