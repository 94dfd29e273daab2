/**
 * Streaming dumps: one dedicated netlink socket per dump (a netlink socket runs one dump
 * at a time, so this keeps dumps independent of each other and of requests), decoded
 * batch by batch, with backpressure: reading stops while the consumer is behind.
 */
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import type { Netns } from '../common/netns';
import { BoundedQueue } from '../common/queue';
import { checkBoolean, checkInt, checkKeys, checkSignal, isObject } from '../common/validate';
import { NLM_F_DUMP, NLM_F_REQUEST } from './enums';
import { RecentPairs } from './dedupe';
import { NfSocket } from './socket';

export interface DumpOptions {
  /** Cancels the dump; the iterator rejects with code ERR_ABORTED. */
  signal?: AbortSignal;
  /** Items decoded ahead of the consumer before reading pauses (default 8192). */
  highWaterMark?: number;
  /**
   * Drop the entries the kernel repeats when the table changes under the dump (default
   * true; fixed memory, see wire/dedupe.ts). false hands on every message as the kernel
   * sent it.
   */
  dedupe?: boolean;
}

/** What to dump and how to decode it. */
export interface DumpSpec<T> {
  type: number;
  family: number;
  payload?: Buffer;
  operation: string;
  /** Decodes one message; undefined skips it. */
  decode(buf: Buffer, off: number, len: number, msgType: number): T | undefined;
  /** Filter applied after decoding. */
  match?(item: T): boolean;
  /**
   * Duplicate suppression (both or neither). Kernel ids are 32-bit hashes that can collide
   * between distinct entries (a few pairs are expected among 200k), so an entry is its id
   * plus a signature of its tuple (from the item, or from its message bytes
   * buf[off, off + len)): items with equal id and signature are one entry.
   */
  idOf?(item: T): number;
  signatureOf?(item: T, buf: Buffer, off: number, len: number): number;
}

/** The keys DumpOptions takes. */
export const DUMP_OPTION_KEYS: readonly string[] = ['signal', 'highWaterMark', 'dedupe'];
const DUMP_KEYS = new Set(DUMP_OPTION_KEYS);

/** Refuses DumpOptions that are not (unknown keys, a read-ahead that is not a count). */
export function validateDumpOptions(options: unknown, known: ReadonlySet<string> = DUMP_KEYS, what = 'a dump'): void {
  if (!isObject(options)) throw invalid('options', 'must be an object like { signal, highWaterMark: 1024 }');
  checkKeys(options, known, 'options', what);
  if (options.highWaterMark !== undefined) checkInt(options.highWaterMark, 1, 1 << 24, 'options.highWaterMark', 'the read-ahead (items)');
  checkSignal(options.signal, 'options.signal');
  if (options.dedupe !== undefined) checkBoolean(options.dedupe, 'options.dedupe');
}

/** Where a dump runs: the namespace, and the handle that closes its socket when it closes. */
export interface DumpContext {
  netnsFile: Netns | undefined;
  adopt(child: { close(): void }): () => void;
}

/** An AsyncIterable over a kernel dump, with bounded read-ahead. */
export class Dump<T> implements AsyncIterableIterator<T> {
  private readonly sock: NfSocket;
  private readonly queue: BoundedQueue<T>;
  private finished = false;
  private error: ConntrackError | undefined;
  /** Pending next() calls, oldest first: each gets the next item (calls may overlap). */
  private waiters: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void }[] = [];
  private discarding = false;
  private readonly recent: RecentPairs | undefined;
  private readonly abort?: () => void;
  private released = false;
  private releaseHook: (() => void) | undefined;
  private disown: (() => void) | undefined;
  /** Entries the kernel repeated (dump raced with table changes) and that were merged. */
  duplicates = 0;

  /** @internal Use Conntrack.dump() (or Handle.dump()). */
  constructor(private readonly spec: DumpSpec<T>, options: DumpOptions, context: DumpContext) {
    validateDumpOptions(options);
    this.queue = new BoundedQueue<T>(Math.max(1, options.highWaterMark ?? 8192), (paused) => this.sock.setPaused(paused));
    if (options.dedupe !== undefined) checkBoolean(options.dedupe, 'options.dedupe');
    if (spec.idOf && spec.signatureOf && options.dedupe !== false) this.recent = new RecentPairs();
    const signal = options.signal;
    if (signal?.aborted) {
      this.finished = true;
      this.error = abortError(spec.operation, signal);
      this.sock = undefined as unknown as NfSocket;
      return;
    }
    this.sock = new NfSocket({ netns: context.netnsFile, threaded: true });
    this.sock.batchBytes = 1 << 20;
    this.disown = context.adopt(this.sock);
    if (signal) {
      this.abort = () => this.fail(abortError(spec.operation, signal));
      signal.addEventListener('abort', this.abort, { once: true });
      this.releaseHook = () => signal.removeEventListener('abort', this.abort!);
    }
    this.sock.request(spec.type, NLM_F_REQUEST | NLM_F_DUMP, spec.family, spec.payload, {
      operation: spec.operation,
      message: (buf, off, len, msgType) => this.onMessage(buf, off, len, msgType),
      done: (err) => this.onDone(err),
    });
  }

  private onMessage(buf: Buffer, off: number, len: number, msgType: number): void {
    if (this.discarding) return;
    const item = this.spec.decode(buf, off, len, msgType);
    if (item === undefined) return;
    if (this.spec.match && !this.spec.match(item)) return;
    if (this.recent !== undefined && this.recent.seen(this.spec.idOf!(item), this.spec.signatureOf!(item, buf, off, len))) {
      this.duplicates++;
      return;
    }
    const w = this.waiters.shift();
    if (w) {
      w.resolve({ value: item, done: false });
      return;
    }
    this.queue.push(item);
  }

  private onDone(err?: ConntrackError): void {
    this.finished = true;
    // Keep the first error: fail() (an abort) closes the socket, which reports ERR_CLOSED here.
    if (err && !this.discarding && !this.error) this.error = err;
    this.release();
    for (const w of this.waiters.splice(0)) {
      if (this.error) w.reject(this.error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  private fail(err: ConntrackError): void {
    if (this.finished && !this.discarding) return;
    this.error = err;
    this.finished = true;
    this.queue.clear();
    this.release();
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.releaseHook?.();
    if (this.sock) {
      this.sock.close();
      this.disown?.();
    }
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift() as T, done: false });
    if (this.error) return Promise.reject(this.error);
    if (this.finished) return Promise.resolve({ value: undefined, done: true });
    this.queue.resume();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
    });
  }

  /**
   * Called when the consumer stops early (break/return/throw in for-await). The kernel
   * dump is still drained to NLMSG_DONE, without decoding, before the socket closes, so
   * the kernel never holds a half-read dump; the consumer does not wait for it.
   */
  return(): Promise<IteratorResult<T>> {
    this.queue.clear();
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    if (!this.finished) {
      this.discarding = true;
      this.queue.resume();
      this.sock.handle.unref();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Lets the process exit while the dump runs (like socket.unref()). */
  unref(): this {
    if (this.sock && !this.released) this.sock.handle.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    if (this.sock && !this.released && !this.discarding) this.sock.handle.ref();
    return this;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Reads everything into an array. */
  async toArray(): Promise<T[]> {
    const out: T[] = [];
    for (;;) {
      // Take whole runs of buffered items at once rather than one promise per item.
      if (this.queue.length > 0) {
        this.queue.drainInto(out);
        continue;
      }
      const r = await this.next();
      if (r.done) return out;
      out.push(r.value);
    }
  }
}
