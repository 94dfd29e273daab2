/**
 * Expectation events: a dedicated netlink socket subscribed to the kernel's expectation
 * multicast groups, delivered both as an AsyncIterable and as an EventEmitter. Messages
 * the kernel could not queue (receive buffer full) are counted in `lost`, never hidden.
 */
import { abortError } from '../common/abort';
import { emitGuarded, rethrowLater } from '../common/callback';
import { type EventStreamEvents, TypedEventEmitter } from '../common/emitter';
import { ConntrackError, invalid } from '../common/errors';
import { show } from '../common/validate';
import { LossMeter } from '../common/loss';
import { BoundedQueue } from '../common/queue';
import {
  IPCTNL_MSG_EXP_DELETE, IPCTNL_MSG_EXP_NEW, NFNLGRP_CONNTRACK_EXP_DESTROY,
  NFNLGRP_CONNTRACK_EXP_NEW, NFNL_SUBSYS_CTNETLINK_EXP,
} from '../wire/enums';
import type { Handle } from '../wire/handle';
import { nfnlMsg, nfnlSubsys } from '../wire/netlink';
import type { NfSocket } from '../wire/socket';
import { Expectation, decodeExpectation } from './decode';
import type { CompiledExpectationFilter } from './filter';

export type ExpectationEventType = 'new' | 'destroy';

export interface ExpectationEvent {
  type: ExpectationEventType;
  expectation: Expectation;
}

export interface ExpectationEventsOptions {
  /** Which events to receive (default both). */
  types?: ExpectationEventType[];
  /**
   * Stops the stream: the iterator ends (done) and the socket closes. Already aborted,
   * events() throws ERR_ABORTED instead.
   */
  signal?: AbortSignal;
  /** Receive buffer in bytes (default 1 MiB; forced past rmem_max when privileged). */
  receiveBufferSize?: number;
  /** Events buffered for a slow iterator before reading pauses (default 4096). */
  highWaterMark?: number;
}

/** The events of an ExpectationEvents stream and their listener arguments. */
export interface ExpectationEventsEvents extends EventStreamEvents {
  /** Every event, new or destroy. */
  event: [event: ExpectationEvent];
  /** An expectation was created. */
  new: [expectation: Expectation];
  /** An expectation was matched, expired or deleted. */
  destroy: [expectation: Expectation];
}

/**
 * A live stream of expectation events.
 *
 * Emits `'event'` ({ type, expectation }), `'new'` and `'destroy'` (the Expectation),
 * `'lost'` (LostInfo: events the kernel dropped, in total and since the last notice), `'error'`
 * and `'close'`. Iterate it with `for await` for backpressure instead.
 */
export class ExpectationEvents extends TypedEventEmitter<ExpectationEventsEvents> implements AsyncIterable<ExpectationEvent> {
  private readonly sock: NfSocket;
  private readonly disown: () => void;
  private readonly queue: BoundedQueue<ExpectationEvent>;
  private waiter: { resolve: (r: IteratorResult<ExpectationEvent>) => void; reject: (e: unknown) => void } | undefined;
  private iterating = false;
  private closed = false;
  private closing = false;
  private failure: ConntrackError | undefined;
  private loss: LossMeter | undefined;
  private granted = 0;
  private readonly onAbort?: () => void;
  private readonly signal?: AbortSignal;
  /** Events received (after type and filter selection). */
  received = 0;

  /** @internal Use `ct.expectations.events()`. */
  constructor(handle: Handle, private readonly filter: CompiledExpectationFilter, options: ExpectationEventsOptions, groups: number[]) {
    super();
    this.queue = new BoundedQueue<ExpectationEvent>(Math.max(1, options.highWaterMark ?? 4096), (paused) => this.sock.setPaused(paused));
    this.sock = handle.subscribe({
      operation: 'subscribing to expectation events',
      groups,
      prepare: (sock) => {
        this.granted = sock.setReceiveBufferSize(options.receiveBufferSize ?? 1 << 20, true).granted;
        this.loss = new LossMeter(() => sock.drops, (info) => this.emitUser('lost', info));
      },
      sink: {
        message: (buf, off, len, type) => this.onMessage(buf, off, len, type),
        overrun: () => this.onOverrun(),
        error: (err) => this.fail(err),
      },
    });
    this.disown = handle.adopt(this);
    // Reading only while something consumes the stream: until then events wait in the
    // kernel's socket buffer, and a stream the program dropped is paused, so it is
    // collected with its socket.
    this.on('newListener', (name) => {
      if (name === 'event' || name === 'new' || name === 'destroy') this.sock.setListening(true);
    });
    this.on('removeListener', () => this.updateReading());
    this.updateReading();
    if (options.signal) {
      this.signal = options.signal;
      this.onAbort = () => this.close();
      options.signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /**
   * Events the kernel dropped because this stream's receive buffer was full (the
   * socket's drop counter, SO_MEMINFO). Non-zero means the stream missed events:
   * re-read the table with `list()` to resynchronise.
   */
  get lost(): number {
    this.refreshDrops();
    return this.loss?.lost ?? 0;
  }

  /** True once closed (by close(), the signal, or the Conntrack closing). */
  get isClosed(): boolean {
    return this.closed;
  }

  private refreshDrops(): void {
    if (!this.closed) this.loss?.refresh(this.granted);
  }

  private onOverrun(): void {
    this.refreshDrops();
  }

  private onMessage(buf: Buffer, off: number, len: number, msgType: number): void {
    if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK_EXP) return;
    const m = nfnlMsg(msgType);
    let type: ExpectationEventType;
    if (m === IPCTNL_MSG_EXP_NEW) type = 'new';
    else if (m === IPCTNL_MSG_EXP_DELETE) type = 'destroy';
    else return;
    const expectation = decodeExpectation(buf, off, len);
    if (!this.filter.match(expectation)) return;
    this.received++;
    const ev: ExpectationEvent = { type, expectation };
    if (!this.emitUser('event', ev) || !this.emitUser(type, expectation)) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: ev, done: false });
      return;
    }
    // Buffer for an iterator (present, or not attached yet and nobody listening).
    if (this.iterating || this.listenerCount('event') + this.listenerCount('new') + this.listenerCount('destroy') === 0) {
      this.queue.push(ev);
    }
  }

  private updateReading(): void {
    if (this.closed) return;
    this.sock.setListening(this.iterating || this.listenerCount('event') + this.listenerCount('new') + this.listenerCount('destroy') > 0);
  }

  /** A socket error ends the stream: a pending next() rejects with it, later ones too. */
  /**
   * Emits to the caller's listeners. A listener that throws ends the stream with
   * ERR_CALLBACK (cause: what it threw) after the event it threw on: returns false then.
   */
  private emitUser(name: string, ...args: unknown[]): boolean {
    if (this.closed) return false;
    const err = emitGuarded(this, 'expectations.events:', name, ...args);
    if (err === undefined) return true;
    const unheard = this.listenerCount('error') === 0 && this.waiter === undefined && !this.iterating;
    this.fail(err);
    this.close();
    if (unheard) rethrowLater(err);
    return false;
  }

  private fail(err: ConntrackError): void {
    if (this.closed) return;
    this.failure = err;
    if (this.listenerCount('error') > 0) {
      const e = emitGuarded(this, 'expectations.events:', 'error', err);
      if (e) rethrowLater(e);
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
    this.close();
  }

  /** Leaves the groups and closes the socket; a pending iteration ends (done). */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.refreshDrops();
    this.closed = true;
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    this.sock.close();
    this.disown();
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
    const e = emitGuarded(this, 'expectations.events:', 'close');
    if (e) rethrowLater(e);
  }

  /** The next event; rejects on a socket error, ends when closed. */
  next(): Promise<IteratorResult<ExpectationEvent>> {
    if (!this.iterating) {
      this.iterating = true;
      this.updateReading();
    }
    if (this.queue.length > 0) return Promise.resolve({ value: this.queue.shift()!, done: false });
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    this.queue.resume();
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** Waits for the first event matching `predicate` (or rejects when `signal` aborts). */
  async waitFor(predicate: (ev: ExpectationEvent) => boolean, signal?: AbortSignal): Promise<ExpectationEvent> {
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.off('event', onEvent);
        this.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
      };
      const onEvent = (ev: ExpectationEvent): void => {
        if (!predicate(ev)) return;
        done();
        resolve(ev);
      };
      const onClose = (): void => {
        done();
        reject(new ConntrackError('ERR_CLOSED', 'the event stream closed before a matching event arrived'));
      };
      const onAbort = (): void => {
        done();
        reject(abortError('waiting for an expectation event', signal));
      };
      if (signal?.aborted) return onAbort();
      // Events already buffered count too.
      const queued = this.queue.find(predicate);
      if (queued !== undefined) {
        resolve(queued);
        return;
      }
      this.on('event', onEvent);
      this.once('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExpectationEvent> {
    this.iterating = true;
    this.updateReading();
    const self = this;
    return {
      next: () => self.next(),
      return: () => {
        self.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

/** Multicast groups for the requested event types; validates the names. */
export function eventGroups(types: unknown, field: string): number[] {
  if (types === undefined) return [NFNLGRP_CONNTRACK_EXP_NEW, NFNLGRP_CONNTRACK_EXP_DESTROY];
  if (!Array.isArray(types) || types.length === 0) throw invalid(field, "must be a non-empty array of 'new' and/or 'destroy'");
  const groups = new Set<number>();
  for (const t of types) {
    if (t === 'new') groups.add(NFNLGRP_CONNTRACK_EXP_NEW);
    else if (t === 'destroy') groups.add(NFNLGRP_CONNTRACK_EXP_DESTROY);
    else throw invalid(field, `unknown event type ${show(t)}: use 'new' or 'destroy' (the kernel sends no update events for expectations)`);
  }
  return [...groups];
}
