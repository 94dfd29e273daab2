/**
 * Runs a script in a child Node process against the built package (dist/lib), for what a
 * test cannot observe inside Jest: process-level uncaught exceptions, exit codes, crashes.
 */
import { execFile } from 'child_process';
import * as path from 'path';

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
