/**
 * Opens the Conntrack handle for a command (--netns NAME|PATH|PID). The library is
 * required here, on first use, so that commands that never talk to the kernel (and
 * --help) don't load the native addon.
 */
import type { Conntrack as ConntrackT } from '../../../lib';

export type Lib = typeof import('../../../lib');

let lib: Lib | undefined;

export function loadLib(): Lib {
  return (lib ??= require('../../../lib') as Lib);
}

export async function openHandle(netns?: string): Promise<ConntrackT> {
  const { Conntrack } = loadLib();
  return Conntrack.open(netns === undefined || netns === '' ? {} : { netns });
}

/** Runs fn with an open handle and always closes it. */
export async function withHandle<T>(netns: string | undefined, fn: (ct: ConntrackT) => Promise<T>): Promise<T> {
  const ct = await openHandle(netns);
  try {
    return await fn(ct);
  } finally {
    await ct.close();
  }
}
