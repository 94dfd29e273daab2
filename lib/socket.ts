/**
 * One netlink socket as seen from JavaScript: requests matched to replies by sequence
 * number, a bounded window of requests in flight (so the kernel's acks always fit in the
 * receive buffer), requests issued in the same tick coalesced into one sendmsg(), and
 * unsolicited (multicast) messages handed to an event handler.
 */
import { ConntrackError, fromNative, kernelError } from './errors';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP_INTR } from './enums';
import { NLMSG_HDRLEN, align4, parseError } from './netlink';
import { NativeSocket, native } from './native';

/** Receives the data messages of one request, then exactly one done() call. */
export interface ReplyHandler {
  /** A data message (not ACK/DONE/ERROR) at buf[off, off + len). */
  message(buf: Buffer, off: number, len: number, type: number, flags: number): void;
  /** The request finished: with an error, or successfully (ack or NLMSG_DONE). */
  done(err?: ConntrackError): void;
  /** Label used in error messages. */
  operation: string;
}

/** Receives multicast messages (events) on a subscribed socket. */
export interface EventSink {
  message(buf: Buffer, off: number, len: number, type: number, flags: number): void;
  /** The kernel dropped messages for this socket (ENOBUFS). */
  overrun(count: number): void;
  error(err: ConntrackError): void;
}

interface Queued {
  type: number;
  flags: number;
  family: number;
  payload: Buffer | undefined;
  handler: ReplyHandler;
}

export interface SocketOptions {
  netns?: string;
  /**
   * Read on a native thread instead of the event loop (for dump sockets): the kernel builds
   * the next part of a dump inside recvmsg(), so a reader thread overlaps that with decoding.
   */
  threaded?: boolean;
  /** Receive buffer to ask for (bytes); default keeps the kernel default. */
  receiveBufferSize?: number;
}

/** Bytes of receive buffer we budget per request in flight (its ack plus a reply). */
const BUDGET_PER_REQUEST = 4096;
/** Most requests in flight on one socket; the pending ring is twice as large. */
const MAX_IN_FLIGHT = 4096;
const RING = MAX_IN_FLIGHT * 2;

export class NfSocket {
  readonly handle: NativeSocket;
  // Requests in flight, by sequence number: sequence numbers are consecutive and at most
  // MAX_IN_FLIGHT are outstanding, so a ring indexed by seq replaces a Map (no hashing,
  // no per-entry allocation on the hot path of bulk operations).
  private readonly ring: (ReplyHandler | undefined)[] = new Array(RING).fill(undefined);
  private readonly ringSeq = new Uint32Array(RING);
  private inFlight = 0;
  private queue: Queued[] = [];
  private queueHead = 0;
  private flushScheduled = false;
  private maxInFlight = 32;
  private closed = false;
  private reading = false;
  private keepReading = false;
  /** Set when the socket is subscribed to multicast groups. */
  events: EventSink | undefined;
  /** Messages received that matched no request (late replies to aborted requests). */
  unmatched = 0;
  /** Datagrams the native layer skipped (truncated, or not from the kernel). */
  skipped = 0;
  /** Last batch size handed to JS, for diagnostics. */
  batchBytes = 1 << 20;

  constructor(options: SocketOptions = {}) {
    const { Socket } = native();
    try {
      this.handle = new Socket(this.onData, options.netns || options.threaded ? { netns: options.netns, threaded: options.threaded } : undefined);
    } catch (err) {
      throw fromNative(err, options.netns ? `opening a netlink socket in ${options.netns}` : 'opening a netlink socket');
    }
    if (options.receiveBufferSize) this.setReceiveBufferSize(options.receiveBufferSize, true);
    else this.updateWindow(this.handle.getReceiveBuffer());
  }

  get portId(): number {
    return this.handle.portId;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Requests in flight plus queued. */
  get outstanding(): number {
    return this.inFlight + this.queue.length - this.queueHead;
  }

  private takePending(seq: number): ReplyHandler | undefined {
    const i = seq & (RING - 1);
    const h = this.ring[i];
    if (h === undefined || this.ringSeq[i] !== seq) return undefined;
    this.ring[i] = undefined;
    this.inFlight--;
    return h;
  }

  private peekPending(seq: number): ReplyHandler | undefined {
    const i = seq & (RING - 1);
    return this.ringSeq[i] === seq ? this.ring[i] : undefined;
  }

  private addPending(seq: number, h: ReplyHandler): void {
    const i = seq & (RING - 1);
    // Cannot be occupied: at most MAX_IN_FLIGHT consecutive sequence numbers are live.
    this.ring[i] = h;
    this.ringSeq[i] = seq;
    this.inFlight++;
  }

  setReceiveBufferSize(bytes: number, force: boolean): { granted: number; forced: boolean } {
    let r: { granted: number; forced: boolean };
    try {
      r = this.handle.setReceiveBuffer(bytes, force);
    } catch (err) {
      throw fromNative(err, 'setting the receive buffer');
    }
    this.updateWindow(r.granted);
    return r;
  }

  private updateWindow(granted: number): void {
    this.maxInFlight = Math.max(8, Math.min(MAX_IN_FLIGHT, Math.floor(granted / 2 / BUDGET_PER_REQUEST)));
  }

  /** Queues a request; it is sent (coalesced with others of this tick) within the window. */
  request(type: number, flags: number, family: number, payload: Buffer | undefined, handler: ReplyHandler): void {
    if (this.closed) {
      handler.done(new ConntrackError('ERR_CLOSED', `${handler.operation}: the connection is closed`));
      return;
    }
    this.queue.push({ type, flags: flags | NLM_F_ACK, family, payload, handler });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  /** Sends what the window allows, grouping runs of the same header into one batch call. */
  private flush = (): void => {
    this.flushScheduled = false;
    if (this.closed) return;
    const room = this.maxInFlight - this.inFlight;
    const queued = this.queue.length - this.queueHead;
    if (room <= 0 || queued === 0) {
      this.updateReading();
      return;
    }
    const q = this.queue;
    const end = this.queueHead + Math.min(room, queued);
    let i = this.queueHead;
    while (i < end) {
      let j = i + 1;
      const a = q[i];
      while (j < end && q[j].type === a.type && q[j].flags === a.flags && q[j].family === a.family) j++;
      this.sendRun(q, i, j);
      i = j;
    }
    // Drop what was sent: cheaply (a moving head) until the dead prefix is worth compacting.
    if (end === q.length) {
      this.queue = [];
      this.queueHead = 0;
    } else if (end > 1024 && end * 2 > q.length) {
      this.queue = q.slice(end);
      this.queueHead = 0;
    } else {
      for (let k = this.queueHead; k < end; k++) q[k] = undefined as unknown as Queued;
      this.queueHead = end;
    }
    this.updateReading();
  };

  private sendRun(items: Queued[], from: number, to: number): void {
    const a = items[from];
    try {
      if (to - from === 1) {
        const seq = this.handle.request(a.type, a.flags, a.family, a.payload);
        this.addPending(seq, a.handler);
        return;
      }
      let total = 0;
      for (let k = from; k < to; k++) total += items[k].payload?.length ?? 0;
      const payloads = Buffer.allocUnsafe(total);
      const ends = new Uint32Array(to - from);
      let off = 0;
      for (let k = from; k < to; k++) {
        const p = items[k].payload;
        if (p) {
          p.copy(payloads, off);
          off += p.length;
        }
        ends[k - from] = off;
      }
      const first = this.handle.requestBatch(a.type, a.flags, a.family, payloads, ends);
      for (let k = from; k < to; k++) this.addPending((first + (k - from)) >>> 0, items[k].handler);
    } catch (err) {
      for (let k = from; k < to; k++) items[k].handler.done(fromNative(err, items[k].handler.operation));
    }
  }

  /** Forgets a request (after an abort); its late reply is counted and dropped. */
  forget(handler: ReplyHandler): void {
    for (let i = 0; i < RING; i++) {
      if (this.ring[i] === handler) {
        this.ring[i] = undefined;
        this.inFlight--;
      }
    }
    this.queue = this.queue.slice(this.queueHead).filter((q) => q.handler !== handler);
    this.queueHead = 0;
    this.updateReading();
  }

  /** Keep reading even with nothing pending (event subscriptions). */
  setListening(on: boolean): void {
    this.keepReading = on;
    this.updateReading();
  }

  /** Pause or resume reading for backpressure (only while listening). */
  private paused = false;
  setPaused(paused: boolean): void {
    this.paused = paused;
    this.updateReading();
  }

  private updateReading(): void {
    if (this.closed) return;
    const want = !this.paused && (this.keepReading || this.inFlight > 0);
    if (want && !this.reading) {
      this.handle.start(this.batchBytes);
      this.reading = true;
    } else if (!want && this.reading) {
      this.handle.pause();
      this.reading = false;
    }
  }

  private onData = (batch: Buffer | null, overruns: number, skipped: number, errno: number): void => {
    this.skipped += skipped;
    if (batch) this.dispatch(batch);
    if (overruns > 0) {
      if (this.events) this.events.overrun(overruns);
      if (this.inFlight > 0) {
        // Replies were dropped: nothing says which, so fail every request in flight.
        const err = kernelError(105 /* ENOBUFS */, 'receiving replies', 'the receive buffer overflowed; replies were lost');
        this.failPending(err);
      }
    }
    if (errno !== 0) {
      const err = kernelError(errno, 'receiving from the netlink socket');
      this.failPending(err);
      this.events?.error(err);
    }
    if (this.queue.length > this.queueHead && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    } else {
      this.updateReading();
    }
  };

  private failPending(err: ConntrackError): void {
    const handlers: ReplyHandler[] = [];
    for (let i = 0; i < RING; i++) {
      const h = this.ring[i];
      if (h !== undefined) {
        handlers.push(h);
        this.ring[i] = undefined;
      }
    }
    this.inFlight = 0;
    for (const h of handlers) h.done(err);
  }

  private dispatch(buf: Buffer): void {
    const end = buf.length;
    const portId = this.handle.portId;
    let p = 0;
    while (p + NLMSG_HDRLEN <= end) {
      const len = buf.readUInt32LE(p);
      if (len < NLMSG_HDRLEN || p + len > end) break;
      const type = buf.readUInt16LE(p + 4);
      const flags = buf.readUInt16LE(p + 6);
      const seq = buf.readUInt32LE(p + 8);
      const pid = buf.readUInt32LE(p + 12);
      const h = seq !== 0 && pid === portId ? this.peekPending(seq) : undefined;
      if (h === undefined) {
        if (seq === 0 && this.events && type !== NLMSG_ERROR && type !== NLMSG_DONE && type !== NLMSG_NOOP) {
          this.events.message(buf, p, len, type, flags);
        } else {
          this.unmatched++;
        }
      } else if (type === NLMSG_ERROR) {
        this.takePending(seq);
        const e = parseError(buf, p, len, flags);
        if (e.errno === 0) h.done();
        else h.done(kernelError(e.errno, h.operation, e.extack));
      } else if (type === NLMSG_DONE) {
        this.takePending(seq);
        const status = len >= NLMSG_HDRLEN + 4 ? buf.readInt32LE(p + NLMSG_HDRLEN) : 0;
        if (status < 0) h.done(kernelError(-status, h.operation));
        else h.done();
      } else if (type === NLMSG_NOOP || type === NLMSG_OVERRUN) {
        // nothing to deliver
      } else {
        h.message(buf, p, len, type, flags & ~NLM_F_DUMP_INTR);
      }
      p += align4(len);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new ConntrackError('ERR_CLOSED', 'the connection was closed');
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    for (const q of queued) q.handler.done(err);
    this.failPending(err);
    this.reading = false;
    this.handle.close();
  }
}
