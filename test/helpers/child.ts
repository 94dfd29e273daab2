/**
 * Child processes in tests: the stdout of one that must exit 0, and scripts run in a child
 * Node process against the built package (dist/lib), for what a test cannot observe inside
 * Jest: process-level uncaught exceptions, exit codes, crashes.
 */
import { ChildProcess, execFile } from 'child_process';
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

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `code` with `node -e`; `DIST` is defined in it as the path of dist/lib. */
export function runNode(code: string, args: string[] = [], nodeArgs: string[] = []): Promise<ChildResult> {
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
