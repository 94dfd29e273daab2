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
  /** Sends `ends.length` requests whose payloads are consecutive slices; returns the first seq. */
  requestBatch(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array): number;
  start(batchBytes?: number): void;
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

export interface NativeAddon {
  /**
   * `threaded`: read on a native thread (dump sockets: overlaps kernel work with decoding).
   * `asyncSend`: send on a native thread, in order (bulk requests: the kernel's work happens
   * inside sendmsg(), which then overlaps with encoding the next batch).
   */
  Socket: new (onData: OnData, options?: { netns?: string; threaded?: boolean; asyncSend?: boolean }) => NativeSocket;
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
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    addon = load(packageRoot());
  } catch (err) {
    throw new ConntrackError(
      'ERR_NATIVE',
      `cannot load the conntrack native addon: ${(err as Error).message}. ` +
        'It needs Linux with libmnl (Debian: apt-get install libmnl0); to build from source ' +
        'install libmnl-dev, python3, make and g++, then run `npm rebuild conntrack`',
      { cause: err },
    );
  }
  return addon;
}
