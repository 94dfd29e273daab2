/**
 * Network namespaces named the way callers name them: a path, a name under
 * /var/run/netns, or a pid.
 */
import { existsSync, promises as fsp } from 'fs';
import { invalid } from './errors';

/** Resolves OpenOptions.netns to a namespace file path. */
export function resolveNetns(netns: string | number | undefined): string | undefined {
  if (netns === undefined) return undefined;
  if (typeof netns === 'number') {
    if (!Number.isInteger(netns) || netns <= 0) throw invalid('netns', `a pid must be a positive integer, got ${netns}`);
    return `/proc/${netns}/ns/net`;
  }
  if (typeof netns !== 'string' || netns === '') throw invalid('netns', 'must be a path, a name under /var/run/netns, or a pid');
  if (netns.includes('/')) return netns;
  if (/^\d+$/.test(netns)) return `/proc/${netns}/ns/net`;
  const named = `/var/run/netns/${netns}`;
  if (!existsSync(named)) throw invalid('netns', `no namespace named ${JSON.stringify(netns)} under /var/run/netns (create it with \`ip netns add ${netns}\`, or pass a path or pid)`);
  return named;
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
