/**
 * Conntrack event streams: NEW / UPDATE / DESTROY notifications from the kernel on a
 * dedicated netlink socket, with a bounded queue (reading stops, and the kernel's buffer
 * fills, while the consumer is behind), exact loss accounting from the socket's drop
 * counter, optional kernel-side (BPF) filtering and reliable DESTROY delivery.
 */
import { constants as osConstants } from 'os';
import { Readable } from 'stream';
import { abortError } from '../common/abort';
import { emitGuarded, rethrowLater } from '../common/callback';
import { type EventStreamEvents, TypedEventEmitter } from '../common/emitter';
import { ConntrackError, invalid } from '../common/errors';
import { LossMeter } from '../common/loss';
import { jsonCopy } from '../common/json';
import { BoundedQueue } from '../common/queue';
import { checkBoolean, checkInt, checkKeys, checkObject, checkSignal, isObject, show } from '../common/validate';
import type { Handle } from '../wire/handle';
import {
  AF_UNSPEC, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_STATS, IPCTNL_MSG_CT_NEW, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS,
  NFNLGRP_CONNTRACK_DESTROY, NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
  NFNL_SUBSYS_CTNETLINK, NLM_F_CREATE, SK_MEMINFO_RMEM_ALLOC,
} from '../wire/enums';
import { ctType } from '../wire/netlink';
import { NfSocket, type ReplyHandler } from '../wire/socket';
import { compileFilter, FlowFilter } from './filter';
import { compileEventFilter, EventFilterProgram } from './event-filter';
import { decodeFlow, Flow, isFlowFamily } from './flow';

export type FlowEventType = 'new' | 'update' | 'destroy';

/** One conntrack event. */
export interface FlowEvent {
  type: FlowEventType;
  /**
   * The entry as the kernel described it. UPDATE events carry the tuples, id, status,
   * timeout and only the attributes that changed; DESTROY events carry status, counters and
   * timestamps (when enabled) and, on Linux 6.x, the timeout left when it is not 0. Events
   * carry no CTA_USE, and CTA_MARK only when the mark is set or the event changed it (every
   * event a netlink request caused), so a 0 there can mean "not sent".
   */
  flow: Flow;
  /** When the kernel stamped the event (ns, CTA_TIMESTAMP_EVENT), if it did. */
  timestamp?: bigint;
  /**
   * The netlink port id of the socket whose request caused the event (the message's
   * nlmsg_pid), when a netlink client (this library, `conntrack -I/-U/-D`, ...) caused it;
   * absent for events caused by traffic or timeouts. `conntrack -E` prints it as
   * `[USERSPACE] portid=N`.
   */
  portId?: number;
}

export interface EventsOptions {
  /** Event types to subscribe to (one multicast group each). Default: all three. */
  types?: FlowEventType[];
  /**
   * Which flows to report. Family, protocol, orig/reply addresses or prefixes, ports,
   * mark and zone are checked in the kernel by a BPF socket filter, so non-matching events
   * never reach this process (and never take space in its buffer); the rest (status, ICMP
   * fields, per-tuple zones) is checked by the library.
   */
  filter?: FlowFilter;
  /**
   * Receive buffer to ask for, in bytes. Uses SO_RCVBUFFORCE when the process may
   * (CAP_NET_ADMIN in the initial user namespace), else SO_RCVBUF, which the kernel caps at
   * net.core.rmem_max. The granted size is in `stream.receiveBufferSize`.
   */
  receiveBufferSize?: number;
  /**
   * Grow the receive buffer (doubling) each time the kernel drops events, up to `max` bytes.
   */
  growBuffer?: { max: number };
  /** Events queued ahead of the consumer before reading pauses (default 8192). */
  highWaterMark?: number;
  /**
   * Reliable delivery (NETLINK_BROADCAST_ERROR, with NETLINK_NO_ENOBUFS off): when an event
   * cannot be queued on this socket the kernel learns of it; DESTROY events are then kept
   * (the entry stays on the dying list) and re-sent until delivered. See docs/events.md for
   * the cost.
   */
  reliable?: boolean;
  /** Ends the stream: a pending next() rejects with ERR_ABORTED. */
  signal?: AbortSignal;
}

/** The events of a FlowEventStream and their listener arguments. */
export interface FlowEventStreamEvents extends EventStreamEvents {
  /** An event (only while someone listens; otherwise events queue for the iterator). */
  event: [event: FlowEvent];
}

/** Counters of what reached the socket and what the library did with it. */
export interface EventStreamStats {
  /** Netlink messages read from the socket (after the kernel's BPF filter). */
  messages: number;
  /** Events handed to the consumer. */
  delivered: number;
  /** Events rejected by the library's part of the filter. */
  filtered: number;
  /** Messages that were not conntrack events (ignored). */
  ignored: number;
  /** ENOBUFS overruns reported by the socket. */
  overruns: number;
  /**
   * Events of each subscribed type that reached the socket (after the kernel's BPF
   * filter, before the library's part of the filter): exact, each message counted once
   * as it is read, whether or not it is decoded. `received` plus `lost` is what the
   * kernel produced for this socket.
   */
  received: { new: number; update: number; destroy: number };
}

const ALL_TYPES: readonly FlowEventType[] = ['new', 'update', 'destroy'];
const GROUP: Record<FlowEventType, number> = {
  new: NFNLGRP_CONNTRACK_NEW,
  update: NFNLGRP_CONNTRACK_UPDATE,
  destroy: NFNLGRP_CONNTRACK_DESTROY,
};
const EVENT_KEYS = new Set(['types', 'filter', 'receiveBufferSize', 'growBuffer', 'highWaterMark', 'reliable', 'signal']);
const MAX_BUFFER = 0x7fffffff;

interface Validated {
  types: FlowEventType[];
  filter: FlowFilter | undefined;
  receiveBufferSize: number | undefined;
  growMax: number | undefined;
  highWaterMark: number;
  reliable: boolean;
  signal: AbortSignal | undefined;
}

/** @internal Validates events() options; throws ERR_INVALID_ARGUMENT naming the field. */
export function validateEventsOptions(options: unknown, field = 'options'): Validated {
  if (options === undefined) options = {};
  if (!isObject(options)) throw invalid(field, 'must be an object such as { types: ["new", "destroy"] }');
  const o = options;
  checkKeys(o, EVENT_KEYS, field, 'events()');
  let types = [...ALL_TYPES];
  if (o.types !== undefined) {
    if (!Array.isArray(o.types) || o.types.length === 0) throw invalid(`${field}.types`, "must be a non-empty array of 'new', 'update', 'destroy'");
    for (const t of o.types) if (!ALL_TYPES.includes(t)) throw invalid(`${field}.types`, `unknown event type ${show(t)}: use 'new', 'update' or 'destroy'`);
    types = ALL_TYPES.filter((t) => (o.types as unknown[]).includes(t));
  }
  const receiveBufferSize = o.receiveBufferSize === undefined ? undefined : checkInt(o.receiveBufferSize, 1, MAX_BUFFER, `${field}.receiveBufferSize`);
  let growMax: number | undefined;
  if (o.growBuffer !== undefined && o.growBuffer !== false) {
    const g = checkObject(o.growBuffer, `${field}.growBuffer`, '{ max: bytes }');
    growMax = checkInt(g.max, 1, MAX_BUFFER, `${field}.growBuffer.max`);
  }
  const highWaterMark = o.highWaterMark === undefined ? 8192 : checkInt(o.highWaterMark, 1, 1 << 24, `${field}.highWaterMark`);
  if (o.reliable !== undefined) checkBoolean(o.reliable, `${field}.reliable`);
  const signal = checkSignal(o.signal, `${field}.signal`);
  return { types, filter: o.filter as FlowFilter | undefined, receiveBufferSize, growMax, highWaterMark, reliable: o.reliable === true, signal };
}

type Waiter = { resolve: (r: IteratorResult<FlowEvent>) => void; reject: (e: unknown) => void };

/**
 * A live stream of conntrack events. Three ways to consume it:
 * - `for await (const ev of stream)` (AsyncIterable; leaving the loop closes the stream);
 * - `stream.on('event', ev => ...)` (EventEmitter; also 'lost', 'error', 'close');
 * - `stream.readable()`, a Node Readable in object mode, for pipeline().
 *
 * The stream reads only while something consumes it (an 'event' listener, next(),
 * for await, readable()): until then events wait in the kernel's socket buffer, and a
 * stream the program dropped without closing is collected with its socket. While an
 * iterator is behind, events queue up to `highWaterMark`; then the stream stops reading
 * and the kernel's socket buffer fills. What the kernel cannot queue is dropped there and
 * counted in `lost` (exact, from the socket's drop counter).
 */
export class FlowEventStream extends TypedEventEmitter<FlowEventStreamEvents> implements AsyncIterableIterator<FlowEvent> {
  /** The event types subscribed to. */
  readonly types: readonly FlowEventType[];
  /** True when reliable delivery (NETLINK_BROADCAST_ERROR) is on. */
  readonly reliable: boolean;
  /** True when the kernel filters with a BPF program attached to the socket. */
  readonly kernelFilter: boolean;
  /** @internal */ readonly sock: NfSocket | undefined;
  // The queue holds undecoded messages (batch buffer, offset, length, kind): they are
  // decoded when taken, so queued events cost no Flow objects until they are read.
  private readonly queue: BoundedQueue<QueuedEvent>;
  private listening = false;
  /** Set by consumeRaw(): takes every event message undecoded. */
  private rawSink: ((buf: Buffer, off: number, len: number, kind: FlowEventType) => void) | undefined;
  /** Set by consumeRaw(): told of every gap in the event sequence. */
  private rawGap: (() => void) | undefined;
  private inOverrun = false;
  private waiter: Waiter | undefined;
  private error: ConntrackError | undefined;
  private closed = false;
  private shuttingDown = false;
  private iterating = false;
  private userPaused = false;
  private readonly match: ((f: Flow) => boolean) | undefined;
  private readonly wantNew: boolean;
  private readonly wantUpdate: boolean;
  private readonly wantDestroy: boolean;
  private loss: LossMeter | undefined;
  private granted = 0;
  private requested = 0;
  private forced = false;
  private readonly growMax: number | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort: (() => void) | undefined;
  private disown: (() => void) | undefined;
  private readonly counters: EventStreamStats = {
    messages: 0, delivered: 0, filtered: 0, ignored: 0, overruns: 0, received: { new: 0, update: 0, destroy: 0 },
  };

  /** @internal Use Conntrack.events(). */
  constructor(handle: Handle, options?: EventsOptions) {
    super();
    const track = (): void => {
      this.listening = this.listenerCount('event') > 0;
      this.updatePaused();
    };
    // 'newListener' fires before the listener is added, 'removeListener' after it is gone.
    this.on('newListener', (name) => {
      if (name === 'event' && !this.listening) {
        this.listening = true;
        this.updatePaused();
      }
    });
    this.on('removeListener', track);
    const v = validateEventsOptions(options);
    const compiled = compileFilter(v.filter, 'options.filter');
    const bpf: EventFilterProgram = compileEventFilter(v.filter, v.types);
    this.types = Object.freeze(v.types);
    this.reliable = v.reliable;
    this.queue = new BoundedQueue<QueuedEvent>(v.highWaterMark, () => this.updatePaused());
    this.growMax = v.growMax;
    this.signal = v.signal;
    this.match = bpf.complete ? undefined : compiled.match;
    this.wantNew = v.types.includes('new');
    this.wantUpdate = v.types.includes('update');
    this.wantDestroy = v.types.includes('destroy');
    this.kernelFilter = bpf.program !== undefined;
    if (v.signal?.aborted) {
      this.closed = true;
      this.error = abortError('events', v.signal);
      this.sock = undefined;
      return;
    }

    // A reader thread drains the socket while JS decodes (see native/reader_thread.cc); it stops
    // once 4 MB wait for JS, so a slow consumer still fills the kernel buffer, where every
    // drop is counted. Reliable mode reads on the event loop instead: there the kernel's
    // redelivery from its dying list is paced by what this process reads, and the simpler
    // reader has proven steadier for it.
    this.sock = handle.subscribe({
      operation: 'subscribing to conntrack events',
      groups: v.types.map((t) => GROUP[t]),
      threaded: !v.reliable,
      prepare: (sock) => {
        sock.batchBytes = 1 << 20;
        if (v.receiveBufferSize !== undefined) this.applyBuffer(sock, v.receiveBufferSize);
        else this.granted = sock.handle.getReceiveBuffer();
        if (v.reliable) {
          sock.handle.setNetlinkOption(NETLINK_BROADCAST_ERROR, 1);
          sock.handle.setNetlinkOption(NETLINK_NO_ENOBUFS, 0);
        }
        // The filter goes on before the groups are joined, so nothing unfiltered slips in.
        if (bpf.program) sock.handle.attachFilter(bpf.program);
        this.loss = new LossMeter(() => sock.drops, (info) => {
          this.emitUser('lost', info);
          if (!this.inOverrun) this.rawGap?.();
        });
      },
      sink: {
        message: this.onMessage,
        overrun: (count) => this.onOverrun(count),
        error: (err) => this.fail(err),
      },
    });
    this.disown = handle.adopt(this);
    this.updatePaused(); // not reading until something consumes the stream
    if (v.signal) {
      this.onAbort = () => this.fail(abortError('events', v.signal!), false);
      v.signal.addEventListener('abort', this.onAbort, { once: true });
    }
  }

  /** The receive buffer the kernel granted, in bytes (as getsockopt(SO_RCVBUF) reports it). */
  get receiveBufferSize(): number {
    return this.granted;
  }

  /** True when SO_RCVBUFFORCE was permitted (so rmem_max did not cap the buffer). */
  get receiveBufferForced(): boolean {
    return this.forced;
  }

  /**
   * Events the kernel dropped for this stream because its buffer was full: exact, read
   * from the socket's drop counter (SO_MEMINFO) now. In reliable mode it counts failed
   * delivery attempts, and the kernel re-sends DESTROY events that failed.
   */
  get lost(): number {
    this.refreshLost();
    return this.loss?.lost ?? 0;
  }

  /** Counters of what reached the socket (after the kernel filter) and what became events. */
  get stats(): EventStreamStats {
    return { ...this.counters, received: { ...this.counters.received } };
  }

  /** Events waiting in the library's queue. */
  get queued(): number {
    return this.queue.length;
  }

  /** True once the stream has ended (close(), abort, or an error). */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Resolves once every message the kernel queued for this stream before the call has been
   * read and handed on ('event' listeners called, or queued for the iterator): a request on
   * the stream's own socket, whose reply comes behind those messages. Needs the stream to
   * be reading (not paused). Rejects with `ENOBUFS` when the kernel drops messages for the
   * stream after the request was sent and before its reply is read: the reply may be among
   * them (after an overrun the socket drops everything, replies too, until its queue is
   * empty, without another ENOBUFS), so the loss ends the wait and is counted in `lost`.
   * Resolves when the stream is closed meanwhile.
   */
  barrier(): Promise<void> {
    return this.barrierThen(undefined);
  }

  /**
   * @internal barrier(), calling `onReply` as the reply is read: before any message that
   * follows it is handed on (the promise settles only later, in a microtask).
   */
  barrierThen(onReply: (() => void) | undefined): Promise<void> {
    const sock = this.sock;
    if (this.closed || !sock) return Promise.resolve();
    let drops = this.dropCounter;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const handler: ReplyHandler = {
        operation: 'events barrier',
        message: () => undefined,
        done: (err) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          if (err && err.code !== 'ERR_CLOSED') return reject(err);
          if (!err) onReply?.();
          resolve();
        },
      };
      // A dropped reply never comes and nothing reports it but the drop counter: polled,
      // at 1, 2, 4 ... 64 ms, while the request waits. Growth while it is in flight gives it
      // up (its slot is freed; a reply that still comes is ignored). Growth while it still
      // waits in the send queue (the window full of earlier requests) is not about its
      // reply: the count starts again from there, and the watch goes on.
      let delay = 1;
      const watch = (): void => {
        if (settled) return;
        const now = this.dropCounter;
        if (now !== drops) {
          drops = now;
          const err = new ConntrackError('ENOBUFS', 'events barrier failed: ENOBUFS (the kernel dropped messages for the stream before the reply was read, perhaps the reply itself; the loss is counted in stream.lost)', { errno: osConstants.errno.ENOBUFS });
          this.refreshLost(); // 'lost' first, as for an overrun
          if (settled || sock.cancel(handler, err)) return;
        }
        delay = Math.min(delay * 2, 64);
        timer = setTimeout(watch, delay).unref();
      };
      sock.request(ctType(IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC, undefined, handler);
      if (!settled) timer = setTimeout(watch, delay).unref();
    });
  }

  /** @internal The socket's drop counter as the kernel has it now (not reported as 'lost'). */
  get dropCounter(): number {
    if (this.closed || !this.sock) return 0;
    return this.sock.drops;
  }

  /** Bytes of events waiting in the kernel's socket buffer (SK_MEMINFO_RMEM_ALLOC). */
  get kernelQueuedBytes(): number {
    if (this.closed || !this.sock) return 0;
    return this.sock.handle.memInfo()[SK_MEMINFO_RMEM_ALLOC] ?? 0;
  }

  private applyBuffer(sock: NfSocket, bytes: number): void {
    const r = sock.setReceiveBufferSize(bytes, true);
    this.requested = bytes;
    this.granted = r.granted;
    this.forced = r.forced;
  }

  private onMessage = (buf: Buffer, off: number, len: number, type: number, flags: number): void => {
    if (this.closed) return;
    this.counters.messages++;
    if (type >> 8 !== NFNL_SUBSYS_CTNETLINK || len < 20 || !isFlowFamily(buf[off + 16])) {
      this.counters.ignored++;
      return;
    }
    const m = type & 0xff;
    let kind: FlowEventType;
    if (m === IPCTNL_MSG_CT_DELETE) {
      if (!this.wantDestroy) return void this.counters.ignored++;
      kind = 'destroy';
    } else if (m === IPCTNL_MSG_CT_NEW) {
      if (flags & NLM_F_CREATE) {
        if (!this.wantNew) return void this.counters.ignored++;
        kind = 'new';
      } else {
        if (!this.wantUpdate) return void this.counters.ignored++;
        kind = 'update';
      }
    } else {
      this.counters.ignored++;
      return;
    }
    this.counters.received[kind]++;
    if (this.rawSink !== undefined) {
      if (this.match !== undefined && !this.match(decodeFlow(buf, off, len))) {
        this.counters.filtered++;
        return;
      }
      this.counters.delivered++;
      this.rawSink(buf, off, len, kind);
      return;
    }
    if (this.listening) {
      const ev = this.decode(buf, off, len, kind);
      if (ev === undefined) return;
      if (!this.emitUser('event', ev)) return;
      if (!this.iterating) return;
      this.enqueueDecoded(ev);
      return;
    }
    if (this.waiter !== undefined) {
      const ev = this.decode(buf, off, len, kind);
      if (ev === undefined) return;
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: ev, done: false });
      return;
    }
    this.queue.push({ buf, off, len, kind, decoded: undefined });
  };

  /**
   * @internal Hands every event message that passes the filters to `sink` as its bytes
   * (valid only during the call), instead of emitting 'event' or queueing it: for the
   * mirror, which stores messages rather than Flows. `gap` is called at each point where
   * events are missing: each overrun in the order the messages arrive, and each growth of
   * the drop counter noticed elsewhere. The stream reads from now on.
   */
  consumeRaw(sink: (buf: Buffer, off: number, len: number, kind: FlowEventType) => void, gap: () => void): void {
    this.rawSink = sink;
    this.rawGap = gap;
    this.updatePaused();
  }

  /** Decodes and filters one message; undefined when the library's filter rejects it. */
  private decode(buf: Buffer, off: number, len: number, kind: FlowEventType): FlowEvent | undefined {
    const flow = decodeFlow(buf, off, len);
    if (this.match !== undefined && !this.match(flow)) {
      this.counters.filtered++;
      return undefined;
    }
    this.counters.delivered++;
    // nlmsg_pid (host order, offset 12 of the header): the requester's port id, 0 for the kernel's own events.
    const pid = buf.readUInt32LE(off + 12);
    return new FlowEventRecord(kind, flow, flow.eventTimestamp, pid === 0 ? undefined : pid);
  }

  /** Queues an event already decoded (for 'event' listeners) for the iterator as well. */
  private enqueueDecoded(ev: FlowEvent): void {
    if (this.waiter !== undefined) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: ev, done: false });
      return;
    }
    this.queue.push({ buf: EMPTY, off: 0, len: 0, kind: ev.type, decoded: ev });
  }

  /** Takes the next queued event, decoding it; undefined when the queue is exhausted. */
  private take(): FlowEvent | undefined {
    for (let q = this.queue.shift(); q !== undefined; q = this.queue.shift()) {
      const ev = q.decoded ?? this.decode(q.buf, q.off, q.len, q.kind);
      if (ev !== undefined) return ev;
    }
    return undefined;
  }

  private updatePaused(): void {
    if (this.closed || !this.sock) return;
    this.sock.setPaused(this.queue.isPaused || this.userPaused);
    this.sock.setListening(this.listening || this.iterating || this.rawSink !== undefined);
  }

  /** Marks the stream as consumed by an iterator (it reads from now on). */
  private startIterating(): void {
    if (this.iterating) return;
    this.iterating = true;
    this.updatePaused();
  }

  private onOverrun(count: number): void {
    this.counters.overruns += count;
    this.inOverrun = true;
    try {
      this.refreshLost();
    } finally {
      this.inOverrun = false;
    }
    // Every overrun is a gap at its own place in the sequence, even when the drop counter
    // had already been read after it (one long stall can show up as several overruns).
    this.rawGap?.();
    if (this.growMax !== undefined && this.sock && !this.closed) {
      const current = this.requested || Math.floor(this.granted / 2);
      if (current < this.growMax) {
        try {
          this.applyBuffer(this.sock, Math.min(this.growMax, Math.max(current * 2, 4096)));
        } catch {
          /* keep the current buffer */
        }
      }
    }
  }

  /** Reads the drop counter; emits 'lost' when it grew. */
  private refreshLost(): void {
    if (this.closed || !this.sock) return;
    this.loss?.refresh(this.granted);
  }

  /** Stops reading until resume() (for 'event' listeners that need to catch up). */
  pause(): this {
    this.userPaused = true;
    this.updatePaused();
    return this;
  }

  /** Resumes reading after pause(). */
  resume(): this {
    this.userPaused = false;
    this.updatePaused();
    return this;
  }

  /** Lets the process exit while the stream is open (like socket.unref()). */
  unref(): this {
    this.sock?.handle.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    this.sock?.handle.ref();
    return this;
  }

  /** Next event; resolves done after close(); rejects with ERR_ABORTED after an abort. */
  next(): Promise<IteratorResult<FlowEvent>> {
    this.startIterating();
    if (this.queue.length > 0) {
      const value = this.take();
      if (value !== undefined) return Promise.resolve({ value, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    this.queue.resume();
    if (this.waiter) return Promise.reject(new ConntrackError('ERR_INVALID_ARGUMENT', 'next() called again before the previous call settled', { field: 'next' }));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /**
   * Takes every event already queued (at least one: waits for it), in one call. Cheaper
   * than next() per event for high-rate consumers. Resolves [] once the stream ended.
   */
  async nextBatch(): Promise<FlowEvent[]> {
    this.startIterating();
    const out: FlowEvent[] = [];
    for (;;) {
      let ev: FlowEvent | undefined;
      while ((ev = this.take()) !== undefined) out.push(ev);
      if (out.length > 0) return out;
      const r = await this.next();
      if (r.done) return out;
      out.push(r.value);
    }
  }

  /** Ends iteration early (break in for-await): closes the stream. */
  return(): Promise<IteratorResult<FlowEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    this.startIterating();
    return this;
  }

  /**
   * A Node Readable (object mode) over this stream, for pipeline(). Destroying the
   * Readable closes the stream; an abort or socket error destroys it with that error.
   */
  readable(options: { highWaterMark?: number } = {}): Readable {
    this.startIterating();
    return Readable.from(this, { objectMode: true, highWaterMark: options.highWaterMark ?? 64 });
  }

  /**
   * Emits to the caller's listeners. A listener that throws ends the stream with
   * ERR_CALLBACK (cause: what it threw) after the event it threw on: returns false then.
   */
  private emitUser(name: string, ...args: unknown[]): boolean {
    const err = emitGuarded(this, 'events:', name, ...args);
    if (err === undefined) return true;
    // Nobody would hear of it otherwise (no 'error' listener, no iterator): report it as
    // an uncaught exception, the way a throwing listener of any emitter is reported.
    const unheard = this.listenerCount('error') === 0 && this.waiter === undefined && !this.iterating;
    this.fail(err);
    if (unheard) rethrowLater(err);
    return false;
  }

  private fail(err: ConntrackError, emitError = true): void {
    if (this.closed) return;
    this.error = err;
    this.queue.clear();
    // An abort is a normal way to stop: listeners just see 'close'.
    if (emitError && this.listenerCount('error') > 0) {
      const e = emitGuarded(this, 'events:', 'error', err);
      if (e) rethrowLater(e);
    }
    this.shutdown();
  }

  /** Closes the socket; queued events are discarded, a pending next() resolves done. */
  close(): void {
    if (this.closed) return;
    this.queue.clear();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.closed || this.shuttingDown) return;
    this.shuttingDown = true;
    this.refreshLost(); // last reading of the drop counter (a 'lost' listener may throw: fail() then)
    this.closed = true;
    if (this.onAbort && this.signal) this.signal.removeEventListener('abort', this.onAbort);
    this.sock?.close();
    this.disown?.();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      if (this.error) w.reject(this.error);
      else w.resolve({ value: undefined, done: true });
    }
    const e = emitGuarded(this, 'events:', 'close');
    if (e) rethrowLater(e);
  }
}

/** A message waiting for the iterator: decoded when taken, unless 'event' listeners had it decoded already. */
interface QueuedEvent {
  buf: Buffer;
  off: number;
  len: number;
  kind: FlowEventType;
  decoded: FlowEvent | undefined;
}

const EMPTY = Buffer.alloc(0);

/** The prototype of delivered events: { type, flow, timestamp, portId } and a toJSON for JSON.stringify. */
class FlowEventRecord implements FlowEvent {
  constructor(public type: FlowEventType, public flow: Flow, public timestamp: bigint | undefined, public portId: number | undefined) {}

  /** The event with bigints (the timestamp, the flow's counters) as decimal strings. */
  toJSON(): Record<string, unknown> {
    return jsonCopy(this);
  }
}
