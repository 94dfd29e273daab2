/**
 * The one place that loads the compiled addon (through node-gyp-build, which prefers a
 * prebuild from prebuilds/ and falls back to build/Release), with a typed interface.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConntrackError } from '../common/errors';

/**
 * Called once per receive batch: whole netlink messages, back to back, with the overruns
 * (ENOBUFS) and skipped datagrams seen since the last call and a receive errno (0: none).
 * A negative errno instead reports a send failure: then `batch` holds the sequence numbers
 * (u32, host order) of the requests that were not sent.
 */
export type OnData = (batch: Buffer | null, overruns: number, skipped: number, errno: number) => void;

export interface NativeSocket {
  readonly portId: number;
  /** Sends one request; returns its sequence number. `type` is (subsys << 8) | msg. */
  request(type: number, flags: number, family: number, payload?: Buffer, resId?: number): number;
  /**
   * Sends `ends.length` requests whose payloads are consecutive slices; returns the first
   * seq. A TypeError or RangeError means nothing was sent; a failure part-way throws a
   * BatchSendError. With `sparseAcks`, only the last message of each datagram asks for an
   * ack (NLM_F_ACK); the others are answered only when they fail (see native/request.cc).
   */
  requestBatch(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array, sparseAcks?: boolean): number;
  /** Reads (and keeps the wrapper from being collected) until pause(). */
  start(batchBytes?: number): void;
  /** Stops reading; a paused socket that JS no longer reaches is collected with its fd. */
  pause(): void;
  ref(): void;
  unref(): void;
  setReceiveBuffer(bytes: number, force: boolean): { granted: number; forced: boolean };
  getReceiveBuffer(): number;
  memInfo(): number[];
  setNetlinkOption(option: number, value: number | boolean): void;
  joinGroup(group: number): void;
  attachFilter(program: Buffer): void;
  close(): void;
}

/**
 * A network namespace for the native side: a namespace file path, or an open descriptor
 * of one (or a pidfd), which the addon duplicates for the call. Neither: the caller's.
 */
export interface NetnsTarget {
  netns?: string;
  netnsFd?: number;
}

export interface NativeSocketOptions extends NetnsTarget {
  /** Read on a native thread (dump sockets: overlaps kernel work with decoding). */
  threaded?: boolean;
  /**
   * Send on a native thread, in order (bulk requests: the kernel's work happens inside
   * sendmsg(), which then overlaps with encoding the next batch).
   */
  asyncSend?: boolean;
}

/** An errno Error from the addon: `errno` (positive) and the failed `syscall`. */
export interface NativeError extends Error {
  errno: number;
  syscall: string;
}

/** requestBatch() failed part-way: items [0, sent) reached the kernel as firstSeq + k. */
export interface BatchSendError extends NativeError {
  sent: number;
  firstSeq: number;
}

/** One operation of netnsFiles(), run in order on a helper thread inside the namespace. */
export type NetnsFileOp =
  | { op: 'read'; path: string }
  | { op: 'write'; path: string; data: string }
  | { op: 'stat'; path: string }
  | { op: 'list'; path: string; prefix?: string; read?: boolean };

/** A directory entry of a `list` operation. */
export interface NetnsFileEntry {
  name: string;
  mode?: number;
  writable?: boolean;
  isDirectory?: boolean;
  data?: string;
  errno?: number;
  syscall?: string;
}

/** The result of one operation: ok, skipped (after a failure with stopOnError), or an errno. */
export interface NetnsFileResult {
  ok: boolean;
  skipped?: true;
  errno?: number;
  syscall?: string;
  /** `read`: the file's text. */
  data?: string;
  /** `stat`: mode bits and whether this thread may write the file. */
  mode?: number;
  writable?: boolean;
  /** `list`: the entries, sorted by name. */
  entries?: NetnsFileEntry[];
}

export interface NativeAddon {
  /** Opens a socket; with a namespace, waits (about half a millisecond) for the helper thread. */
  Socket: new (onData: OnData, options?: NativeSocketOptions) => NativeSocket;
  /** The same without blocking: the socket is made on the thread pool. */
  openSocket(onData: OnData, options?: NativeSocketOptions): Promise<NativeSocket>;
  /** File operations as a thread inside the namespace sees them (sysctls, /proc/thread-self/net). */
  netnsFiles(target: NetnsTarget, ops: NetnsFileOp[], options?: { stopOnError?: boolean }): Promise<NetnsFileResult[]>;
  /** Fault injection for the tests: the Nth allocation point or send() fails. */
  testing: {
    failAllocation(after: number): void;
    failSend(after: number, errno: number): void;
    reset(): void;
  };
}

let addon: NativeAddon | undefined;

/** The package's root (where binding.gyp lives): the same from lib/wire under ts-jest and from dist/lib/wire. */
function packageRoot(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'binding.gyp'))) return dir;
    if (path.dirname(dir) === dir) return path.join(__dirname, '..', '..');
  }
}

export function native(): NativeAddon {
  if (addon) return addon;
  const root = packageRoot();
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    addon = load(root);
  } catch (err) {
    throw new ConntrackError('ERR_NATIVE', `cannot load the conntrack native addon: ${loadProblem(err as Error, root)}`, {
      cause: err,
    });
  }
  return addon;
}

/** The oldest glibc the prebuilt binaries load on (checked against `objdump -T` in the tests). */
const PREBUILD_MIN_GLIBC = '2.34';
const BUILD_FROM_SOURCE =
  'To build from source, install libmnl-dev, python3, make and g++ (Debian/Ubuntu; RHEL and Amazon Linux: ' +
  'libmnl-devel, python3, make, gcc-c++), then run `npm rebuild conntrack --build-from-source`.';

/**
 * Says why loading failed and what fixes it. The addon uses N-API, so a binary built for
 * another Node.js version is never the cause; these are the causes that remain.
 */
function loadProblem(err: Error, root: string): string {
  const message = String(err.message).trim();
  if (/libmnl\.so/.test(message)) {
    return (
      `libmnl, the netlink library it links, is missing (${message}). Install the libmnl0 package ` +
      '(Debian/Ubuntu: apt-get install libmnl0; RHEL, Fedora, Amazon Linux: dnf install libmnl; Alpine: apk add libmnl).'
    );
  }
  if (/No native build was found/.test(message)) {
    let prebuilt: string[] = [];
    try {
      prebuilt = fs.readdirSync(path.join(root, 'prebuilds'));
    } catch {
      /* no prebuilds directory */
    }
    const platforms = prebuilt.length ? prebuilt.sort().join(', ') + ` (glibc ${PREBUILD_MIN_GLIBC} or later)` : 'none in this copy';
    return (
      `there is no binary for ${process.platform}-${process.arch} and no build from source. ` +
      `Prebuilt platforms: ${platforms}. ${BUILD_FROM_SOURCE}`
    );
  }
  if (/GLIBC(XX)?_[0-9.]+' not found/.test(message)) {
    return (
      `the prebuilt binary needs glibc ${PREBUILD_MIN_GLIBC} or later (${message}). ${BUILD_FROM_SOURCE}`
    );
  }
  return `${message}. It needs Linux with libmnl (Debian: apt-get install libmnl0). ${BUILD_FROM_SOURCE}`;
}
