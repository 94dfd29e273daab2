/**
 * Streaming dumps: one dedicated netlink socket per dump (a netlink socket runs one dump
 * at a time, so this keeps dumps independent of each other and of requests), decoded
 * batch by batch, with backpressure: reading stops while the consumer is behind.
 */
import { abortError } from '../common/abort';
import { ConntrackError } from '../common/errors';
import { BoundedQueue } from '../common/queue';
import { NLM_F_DUMP, NLM_F_REQUEST } from './enums';
import { NfSocket } from './socket';

export interface DumpOptions {
  /** Cancels the dump; the iterator rejects with code ERR_ABORTED. */
  signal?: AbortSignal;
  /** Items decoded ahead of the consumer before reading pauses (default 8192). */
  highWaterMark?: number;
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
   * plus a signature of its tuple: items with equal id and signature are one entry.
   */
  idOf?(item: T): number;
  signatureOf?(item: T): number;
}

/** Where a dump runs: the namespace, and the handle that closes its socket when it closes. */
export interface DumpContext {
  netns: string | undefined;
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
  private readonly ids: IdTable<T> | undefined;
  private readonly abort?: () => void;
  private released = false;
  private releaseHook: (() => void) | undefined;
  private disown: (() => void) | undefined;
  /** Entries the kernel repeated (dump raced with table changes) and that were merged. */
  duplicates = 0;

  /** @internal Use Conntrack.dump() (or Handle.dump()). */
  constructor(private readonly spec: DumpSpec<T>, options: DumpOptions, context: DumpContext) {
    this.queue = new BoundedQueue<T>(Math.max(1, options.highWaterMark ?? 8192), (paused) => this.sock.setPaused(paused));
    if (spec.idOf && spec.signatureOf) this.ids = new IdTable<T>(spec.idOf, spec.signatureOf);
    const signal = options.signal;
    if (signal?.aborted) {
      this.finished = true;
      this.error = abortError(spec.operation, signal);
      this.sock = undefined as unknown as NfSocket;
      return;
    }
    this.sock = new NfSocket({ netns: context.netns, threaded: true });
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
    if (this.ids?.isRepeat(item)) {
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

/**
 * Duplicate detection over (id, signature) pairs: open addressing on typed arrays, so a
 * table of 200k entries costs a few MB and no per-entry objects (a Map of 200k entries
 * costs several times more, and keeping the items would pin every flow of a streaming dump).
 */
class IdTable<T> {
  private keys = new Uint32Array(1 << 12);
  private sigs = new Uint32Array(1 << 12);
  private used = new Uint8Array(1 << 12);
  private count = 0;

  constructor(private readonly idOf: (item: T) => number, private readonly signatureOf: (item: T) => number) {}

  isRepeat(item: T): boolean {
    const id = this.idOf(item) >>> 0;
    const sig = this.signatureOf(item) >>> 0;
    const mask = this.keys.length - 1;
    let i = (Math.imul(id, 0x9e3779b1) >>> 0) & mask;
    while (this.used[i]) {
      if (this.keys[i] === id && this.sigs[i] === sig) return true;
      i = (i + 1) & mask;
    }
    this.used[i] = 1;
    this.keys[i] = id;
    this.sigs[i] = sig;
    if (++this.count * 2 > this.keys.length) this.grow();
    return false;
  }

  private grow(): void {
    const { keys, sigs, used } = this;
    const size = keys.length * 2;
    this.keys = new Uint32Array(size);
    this.sigs = new Uint32Array(size);
    this.used = new Uint8Array(size);
    const mask = size - 1;
    for (let j = 0; j < keys.length; j++) {
      if (!used[j]) continue;
      let i = (Math.imul(keys[j], 0x9e3779b1) >>> 0) & mask;
      while (this.used[i]) i = (i + 1) & mask;
      this.used[i] = 1;
      this.keys[i] = keys[j];
      this.sigs[i] = sigs[j];
    }
  }
}
