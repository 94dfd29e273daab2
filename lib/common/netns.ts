/**
 * Network namespaces named the way callers name them: a path, a name under
 * /var/run/netns, or a pid.
 */
import { existsSync, lstatSync, promises as fsp } from 'fs';
import { constants as osConstants } from 'os';
import { invalid, kernelError } from './errors';
import { show } from './validate';

/**
 * Resolves OpenOptions.netns to a namespace file path. A pid whose process does not exist,
 * or a path with nothing there, is refused here with ENOENT (and what that means).
 */
export function resolveNetns(netns: string | number | undefined): string | undefined {
  if (netns === undefined) return undefined;
  if (typeof netns === 'number') {
    if (!Number.isInteger(netns) || netns <= 0) throw invalid('netns', `a pid must be a positive integer, got ${show(netns)}`);
    return existing(`/proc/${netns}/ns/net`);
  }
  if (typeof netns !== 'string' || netns === '') throw invalid('netns', `must be a path, a name under /var/run/netns, or a pid, got ${show(netns)}`);
  if (netns.includes('/')) return existing(netns);
  if (/^\d+$/.test(netns)) return existing(`/proc/${netns}/ns/net`);
  const named = `/var/run/netns/${netns}`;
  if (!existsSync(named)) throw invalid('netns', `no namespace named ${show(netns)} under /var/run/netns (create it with \`ip netns add ${netns}\`, or pass a path or pid)`);
  return named;
}

/** The path, unless nothing is there (for /proc/PID/ns/net: unless no process PID exists). */
function existing(nsPath: string): string {
  const pid = /^\/proc\/(\d+)\/ns\/net$/.exec(nsPath)?.[1];
  try {
    // /proc/PID itself: another user's namespace link cannot be stat'ed, yet exists.
    lstatSync(pid !== undefined ? `/proc/${pid}` : nsPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw kernelError(osConstants.errno.ENOENT, `opening network namespace ${nsPath}`, undefined, 'open(netns)');
    }
  }
  return nsPath;
}

/** @internal `/proc/PID/net` for a `/proc/PID/ns/net` path (procfs shows that process's namespace there). */
export function procNetDir(nsPath: string): string | undefined {
  const m = /^\/proc\/(\d+|self|thread-self)(\/task\/\d+)?\/ns\/net$/.exec(nsPath);
  return m ? `/proc/${m[1]}${m[2] ?? ''}/net` : undefined;
}

/** @internal True when nsPath is the namespace this process is in. */
export async function sameNetnsAsCaller(nsPath: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([fsp.stat(nsPath), fsp.stat('/proc/self/ns/net')]);
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}
