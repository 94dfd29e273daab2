/**
 * Opens the Conntrack handle for a command (--netns NAME|PATH|PID, or NFCT_NETNS). The library is
 * required here, on first use, so that commands that never talk to the kernel (and
 * --help) don't load the native addon.
 */
import type { Conntrack as ConntrackT } from '../../../lib';

export type Lib = typeof import('../../../lib');

let lib: Lib | undefined;

export function loadLib(): Lib {
  return (lib ??= require('../../../lib') as Lib);
}

/** The namespace a command works in: --netns, else NFCT_NETNS, else the caller's (undefined). */
export function commandNetns(option: string | undefined): string | undefined {
  if (option !== undefined && option !== '') return option;
  return process.env.NFCT_NETNS || undefined;
}

export async function openHandle(netns?: string): Promise<ConntrackT> {
  const { Conntrack } = loadLib();
  const ns = commandNetns(netns);
  return Conntrack.open(ns === undefined ? {} : { netns: ns });
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
