import { ChildProcess } from 'child_process';

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
