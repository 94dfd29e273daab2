/**
 * One netlink socket as seen from JavaScript: requests matched to replies by sequence
 * number, a bounded window of requests in flight (so the kernel's acks always fit in the
 * receive buffer), requests issued in the same tick coalesced into one sendmsg(), and
 * unsolicited (multicast) messages handed to an event handler.
 */
import { constants as osConstants } from 'os';
import { ConntrackError, fromNative, kernelError } from '../common/errors';
import { isObject } from '../common/validate';
import { type Netns, isNetnsError } from '../common/netns';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NLM_F_ACK, NLM_F_DUMP_INTR, NLM_F_REQUEST, SK_MEMINFO_DROPS } from './enums';
import { AttrWriter, NLMSG_HDRLEN, align4, parseError } from './netlink';
import { rethrowLater } from '../common/callback';
import { type BatchSendError, NativeSocket, type NativeSocketOptions, type OnData, native } from './native';

/** Receives the data messages of one request, then exactly one done() call. */
export interface ReplyHandler {
  /** A data message (not ACK/DONE/ERROR) at buf[off, off + len). */
  message(buf: Buffer, off: number, len: number, type: number, flags: number): void;
  /**
   * The request finished: with an error, or successfully (ack or NLMSG_DONE). For the
   * items of a requestMany() batch, `item` is the item's index (else -1).
   */
  done(err: ConntrackError | undefined, item: number): void;
  /** Label used in error messages. */
  operation: string;
  /**
   * True when the kernel answers with an ack alone (create, update, delete, flush): such a
   * request takes less of the receive buffer window than one that brings a reply message.
   */
  readonly ackOnly?: boolean;
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
  /** The payload: bytes [start, end) of the socket's staging writer (none when equal). */
  start: number;
  end: number;
  handler: ReplyHandler;
  /** Receive buffer budgeted for the reply (see replyCost). */
  cost: number;
  /** Set for requestMany(): many messages, sent as the window allows. */
  batch?: { payloads: Buffer; ends: Uint32Array; next: number };
}

export interface SocketOptions {
  /** The namespace to open the socket in (default: the caller's). */
  netns?: Netns;
  /**
   * Read on a native thread instead of the event loop (for dump sockets): the kernel builds
   * the next part of a dump inside recvmsg(), so a reader thread overlaps that with decoding.
   */
  threaded?: boolean;
  /** Send on a native thread, in order (see native/sender.cc). */
  asyncSend?: boolean;
  /** Receive buffer to ask for (bytes); default keeps the kernel default. */
  receiveBufferSize?: number;
  /**
   * @internal Opens the native socket (default: the addon's Socket). Tests pass a scripted
   * fake that implements the same data callback contract.
   */
  open?: (onData: OnData) => NativeSocket;
}

/**
 * Receive buffer budgeted per request in flight, by what the kernel will send back: an
 * ack alone takes well under 1 KiB of socket memory; anything else may bring a reply
 * message of up to a page first.
 */
const ACK_COST = 1024;
const REPLY_COST = 16384;
const replyCost = (h: ReplyHandler): number => (h.ackOnly ? ACK_COST : REPLY_COST);
/** Most requests in flight on one socket; the pending ring is twice as large. */
const MAX_IN_FLIGHT = 4096;
const RING = MAX_IN_FLIGHT * 2;
/** Largest errno Linux uses (MAX_ERRNO); an error field outside -4095..0 is damage. */
const MAX_ERRNO = 4095;
/**
 * The staging buffer's usual size; one that grew past STAGING_KEEP (100k requests queued
 * in one loop) is dropped once empty rather than held for the socket's lifetime.
 */
const STAGING_SIZE = 1 << 16;
const STAGING_KEEP = 1 << 20;
/** Queued requests that are sent at once instead of at the end of the tick. */
const EAGER_BATCH = 128;

export class NfSocket {
  readonly handle: NativeSocket;
  // Requests in flight, by sequence number: sequence numbers are consecutive and at most
  // MAX_IN_FLIGHT are outstanding, so a ring indexed by seq replaces a Map (no hashing,
  // no per-entry allocation on the hot path of bulk operations).
  private readonly ring: (ReplyHandler | undefined)[] = new Array(RING).fill(undefined);
  private readonly ringSeq = new Uint32Array(RING);
  private readonly ringCost = new Uint32Array(RING);
  private readonly ringItem = new Int32Array(RING);
  /**
   * 1 for a request sent without NLM_F_ACK (sparse acks): the kernel answers it only if it
   * fails, and any later reply on this socket says it succeeded otherwise.
   */
  private readonly ringSilent = new Uint8Array(RING);
  /** Silent requests in flight, and the lowest sequence number one of them may have. */
  private silent = 0;
  private silentLow = 0;
  /**
   * A request on this socket succeeded, so the kernel's CAP_NET_ADMIN check passes for it
   * (it checks the opener's capability once per datagram and, failing, answers only the
   * datagram's first message with EPERM: sparse acks would then vouch for the rest).
   */
  private capable = false;
  /**
   * Replies may have gone missing unannounced: after an overrun the socket stays congested
   * (the kernel reports ENOBUFS once and drops silently until the queue empties), and a
   * skipped datagram may have held an error. No sparse acks and no vouching until nothing
   * is in flight.
   */
  private tainted = false;

  /** Whether ack-only requests may go out silently now (see `capable`, `tainted`). */
  private get sparseAcks(): boolean {
    return this.capable && !this.tainted;
  }
  /** The batch item index of the request takePending() last returned. */
  private takenItem = -1;
  private inFlight = 0;
  /** Receive buffer the replies of the requests in flight may take (see replyCost). */
  private inFlightBytes = 0;
  /** Half the granted receive buffer (see updateWindow). */
  private halfBuffer = 32 * 1024;
  private queue: Queued[] = [];
  private queueHead = 0;
  /**
   * The payloads of the queued requests, back to back in queue order: a run of requests
   * goes to the native side as one slice of it (no per-request Buffer, no copy in JS), and
   * encoders can write a request straight into it (requestEncoded).
   */
  private staging = new AttrWriter(STAGING_SIZE);
  private flushScheduled = false;
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

  /**
   * Opens the socket now; in another namespace the JS thread waits for the native helper
   * thread (well under a millisecond). `adopted`: a socket made by NfSocket.open().
   */
  constructor(options: SocketOptions = {}, adopted?: { handle: NativeSocket; box: { sock?: NfSocket } }) {
    if (adopted) {
      this.handle = adopted.handle;
      adopted.box.sock = this;
    } else if (options.open) {
      this.handle = options.open(this.onData);
    } else {
      const opts = nativeOptions(options);
      try {
        this.handle = new (native().Socket)(this.onData, opts);
      } catch (err) {
        throw openError(err, options);
      }
    }
    if (options.receiveBufferSize) this.setReceiveBufferSize(options.receiveBufferSize, true);
    else this.updateWindow(this.handle.getReceiveBuffer());
  }

  /** Opens a socket without blocking the JS thread (made on the thread pool, in the namespace). */
  static async open(options: SocketOptions = {}): Promise<NfSocket> {
    const opts = nativeOptions(options);
    // The native callback reaches the NfSocket made below through the box.
    const box: { sock?: NfSocket } = {};
    const onData: OnData = (batch, overruns, skipped, errno) => box.sock?.onData(batch, overruns, skipped, errno);
    let handle: NativeSocket;
    try {
      handle = await native().openSocket(onData, opts);
    } catch (err) {
      throw openError(err, options);
    }
    try {
      return new NfSocket(options, { handle, box });
    } catch (err) {
      handle.close();
      throw err;
    }
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
    this.inFlightBytes -= this.ringCost[i];
    this.takenItem = this.ringItem[i];
    if (this.ringSilent[i] === 1) {
      this.ringSilent[i] = 0;
      this.silent--;
    }
    return h;
  }

  private peekPending(seq: number): ReplyHandler | undefined {
    const i = seq & (RING - 1);
    return this.ringSeq[i] === seq ? this.ring[i] : undefined;
  }

  private addPending(seq: number, h: ReplyHandler, cost: number, item = -1, silent = false): void {
    const i = seq & (RING - 1);
    // At most MAX_IN_FLIGHT consecutive sequence numbers are live, and the kernel answers in
    // order, so the slot is free; if it ever is not, the request in it has gone 8192
    // requests without an answer: fail it rather than leave its caller waiting forever.
    const stale = this.ring[i];
    if (stale !== undefined) {
      this.inFlight--;
      this.inFlightBytes -= this.ringCost[i];
      if (this.ringSilent[i] === 1) {
        this.ringSilent[i] = 0;
        this.silent--;
      }
      stale.done(new ConntrackError('ERR_PROTOCOL', `${stale.operation}: the kernel never answered this request`), this.ringItem[i]);
    }
    this.ring[i] = h;
    this.ringSeq[i] = seq;
    this.ringCost[i] = cost;
    this.ringItem[i] = item;
    if (silent) {
      if (this.silent === 0) this.silentLow = seq;
      this.ringSilent[i] = 1;
      this.silent++;
    }
    this.inFlight++;
    this.inFlightBytes += cost;
  }

  /**
   * A reply for request `seq` arrived: every silent request sent before it that is still
   * pending succeeded. The kernel handles a socket's requests in order inside sendmsg()
   * and queues a failure's error reply there, so an error for an earlier request would
   * have been read before this reply (a batch that reports an overrun vouches for none),
   * and send failures are delivered before the replies that follow them.
   */
  private settleSilentBefore(seq: number): void {
    const span = (seq - this.silentLow) >>> 0;
    // Not after the lowest silent request (a dump's later part, say): vouches for none.
    if (span === 0 || span > RING) return;
    let s = this.silentLow;
    for (let k = 0; k < span && this.silent > 0; k++, s = (s + 1) >>> 0) {
      const i = s & (RING - 1);
      if (this.ringSilent[i] === 1 && this.ringSeq[i] === s) {
        const h = this.ring[i]!;
        this.settle(s, h, undefined);
      }
    }
    this.silentLow = seq;
  }

  /** True when one more request of `cost` fits the window (one always fits when idle). */
  private fits(cost: number): boolean {
    if (this.inFlight === 0) return true;
    return this.inFlight < MAX_IN_FLIGHT && this.inFlightBytes + cost <= this.budgetBytes;
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
    this.halfBuffer = Math.floor(granted / 2);
  }

  /**
   * Receive buffer the replies in flight may take: half the granted buffer (the kernel
   * counts skb overhead against it too). On a request socket nothing larger: a window
   * beyond the buffer lets acks overflow it (false ENOBUFS for requests the kernel carried
   * out). A subscribed socket's few requests (barriers) share the buffer with events, which
   * dominate it anyway: there the window keeps a 64 KiB floor, so they do not queue behind
   * each other on a small buffer. One request is always allowed when none is in flight.
   */
  private get budgetBytes(): number {
    return Math.max(this.events ? 64 * 1024 : ACK_COST, this.halfBuffer);
  }

  /** Queues a request; it is sent (coalesced with others of this tick) within the window. */
  request(type: number, flags: number, family: number, payload: Buffer | undefined, handler: ReplyHandler): void {
    if (this.closed || this.closing) {
      handler.done(this.failure ?? new ConntrackError('ERR_CLOSED', `${handler.operation}: the connection is closed`), -1);
      return;
    }
    const st = this.staging;
    const start = st.length;
    if (payload !== undefined && payload.length > 0) {
      const at = st.raw(payload.length); // may move the buffer: take `buffer` after it
      payload.copy(st.buffer, at);
    }
    this.enqueue(type, flags, family, start, handler);
  }

  /**
   * request() of a payload that `encode` writes straight into the staging buffer (and whose
   * family it returns). A throw from `encode` (a refused spec) queues nothing and passes on.
   */
  requestEncoded<T>(type: number, flags: number, encode: (w: AttrWriter, item: T) => number, item: T, handler: ReplyHandler): void {
    if (this.closed || this.closing) {
      handler.done(this.failure ?? new ConntrackError('ERR_CLOSED', `${handler.operation}: the connection is closed`), -1);
      return;
    }
    const st = this.staging;
    const start = st.length;
    let family: number;
    try {
      family = encode(st, item);
    } catch (err) {
      st.truncate(start);
      throw err;
    }
    this.enqueue(type, flags, family, start, handler);
  }

  private enqueue(type: number, flags: number, family: number, start: number, handler: ReplyHandler): void {
    this.queue.push({ type, flags: flags | NLM_F_REQUEST | NLM_F_ACK, family, start, end: this.staging.length, handler, cost: replyCost(handler) });
    // A caller issuing many requests in one synchronous loop: send full batches right away,
    // so the kernel (on the sender thread) works while the caller encodes the rest.
    if (this.queue.length - this.queueHead >= EAGER_BATCH && this.fits(ACK_COST)) {
      this.flush();
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  /**
   * Queues `ends.length` requests of one header whose payloads are consecutive slices of
   * `payloads` (item i ends at ends[i]). They go out in order as the window allows, with
   * no per-item object; `handler.done(err, i)` is called once per item.
   */
  requestMany(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array, handler: ReplyHandler): void {
    if (this.closed || this.closing) {
      const err = this.failure ?? new ConntrackError('ERR_CLOSED', `${handler.operation}: the connection is closed`);
      for (let k = 0; k < ends.length; k++) handler.done(err, k);
      return;
    }
    if (ends.length === 0) return;
    // Without NLM_F_REQUEST the kernel acks a message without acting on it.
    const at = this.staging.length;
    this.queue.push({
      type, flags: flags | NLM_F_REQUEST | NLM_F_ACK, family, start: at, end: at, handler, cost: replyCost(handler),
      batch: { payloads, ends, next: 0 },
    });
    this.flush();
  }

  /** Nothing is queued: the staging buffer starts over (smaller, if it grew large). */
  private resetStaging(): void {
    if (this.staging.buffer.length > STAGING_KEEP) this.staging = new AttrWriter(STAGING_SIZE);
    else this.staging.reset();
  }

  /** Sends as many items of a batch as the window allows; true when all are sent. */
  private sendBatchItems(a: Queued): boolean {
    const b = a.batch!;
    const cost = a.cost;
    let n = 0;
    const left = b.ends.length - b.next;
    while (n < left) {
      const count = this.inFlight + n;
      if (count > 0 && (count >= MAX_IN_FLIGHT || this.inFlightBytes + (n + 1) * cost > this.budgetBytes)) break;
      n++;
    }
    if (n === 0) return false;
    const startOff = b.next === 0 ? 0 : b.ends[b.next - 1];
    const endOff = b.ends[b.next + n - 1];
    const ends = new Uint32Array(n);
    for (let k = 0; k < n; k++) ends[k] = b.ends[b.next + k] - startOff;
    const silent = a.handler.ackOnly === true && this.sparseAcks;
    try {
      const first = this.handle.requestBatch(a.type, a.flags, a.family, b.payloads.subarray(startOff, endOff), ends, silent);
      for (let k = 0; k < n; k++) this.addPending((first + k) >>> 0, a.handler, cost, b.next + k, silent);
    } catch (err) {
      // Items [0, sent) reached the kernel and will be answered; only the rest failed.
      const sent = sentBefore(err, n);
      for (let k = 0; k < sent; k++) this.addPending(((err as BatchSendError).firstSeq + k) >>> 0, a.handler, cost, b.next + k, silent);
      const e = fromNative(err, a.handler.operation);
      for (let k = sent; k < n; k++) a.handler.done(e, b.next + k);
    }
    b.next += n;
    return b.next === b.ends.length;
  }

  /** Sends what the window allows, grouping runs of the same header into one batch call. */
  private flush = (): void => {
    this.flushScheduled = false;
    if (this.closed) return;
    const q = this.queue;
    // Send queued requests in order while their replies fit the window: runs of single
    // requests with one header go out in one batch call; requestMany() batches in slices.
    let end = this.queueHead;
    while (end < q.length && !this.closed) {
      const a = q[end];
      if (a.batch) {
        if (!this.sendBatchItems(a)) break; // window full part-way: resume here later
        end++;
        continue;
      }
      let j = end;
      let count = this.inFlight;
      let bytes = this.inFlightBytes;
      while (j < q.length) {
        const b = q[j];
        if (b.batch || b.type !== a.type || b.flags !== a.flags || b.family !== a.family) break;
        if (count > 0 && (count >= MAX_IN_FLIGHT || bytes + b.cost > this.budgetBytes)) break;
        count++;
        bytes += b.cost;
        j++;
      }
      if (j === end) break; // window full
      this.sendRun(q, end, j);
      end = j;
    }
    if (end === this.queueHead) {
      this.updateReading();
      return;
    }
    // Drop what was sent: cheaply (a moving head) until the dead prefix is worth compacting.
    if (this.closed) return;
    if (end === q.length) {
      this.queue = [];
      this.queueHead = 0;
      this.resetStaging();
    } else if (end > 1024 && end * 2 > q.length) {
      this.queue = q.slice(end);
      this.queueHead = 0;
      // The staging bytes of what was sent go too.
      const base = this.queue[0].start;
      this.staging.dropFront(base);
      for (const r of this.queue) {
        r.start -= base;
        r.end -= base;
      }
    } else {
      for (let k = this.queueHead; k < end; k++) q[k] = undefined as unknown as Queued;
      this.queueHead = end;
    }
    this.updateReading();
  };

  private sendRun(items: Queued[], from: number, to: number): void {
    const a = items[from];
    let runSilent = false;
    try {
      // The native side copies the payloads before it returns: slices of staging suffice.
      const st = this.staging.buffer;
      if (to - from === 1) {
        const seq = this.handle.request(a.type, a.flags, a.family, a.end > a.start ? st.subarray(a.start, a.end) : undefined);
        this.addPending(seq, a.handler, a.cost);
        return;
      }
      // Consecutive queued requests have consecutive payloads.
      const base = a.start;
      const payloads = st.subarray(base, items[to - 1].end);
      const ends = new Uint32Array(to - from);
      let silent = this.sparseAcks;
      for (let k = from; k < to; k++) {
        ends[k - from] = items[k].end - base;
        if (items[k].handler.ackOnly !== true) silent = false;
      }
      runSilent = silent;
      const first = this.handle.requestBatch(a.type, a.flags, a.family, payloads, ends, silent);
      for (let k = from; k < to; k++) this.addPending((first + (k - from)) >>> 0, items[k].handler, items[k].cost, -1, silent);
    } catch (err) {
      // Items [0, sent) of the run reached the kernel and will be answered; only the rest failed.
      const sent = to - from > 1 ? sentBefore(err, to - from) : 0;
      for (let k = 0; k < sent; k++) this.addPending(((err as BatchSendError).firstSeq + k) >>> 0, items[from + k].handler, items[from + k].cost, -1, runSilent);
      for (let k = from + sent; k < to; k++) items[k].handler.done(fromNative(err, items[k].handler.operation), -1);
    }
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
    // Nothing may escape into the native caller (a throw there is a fatal exception and
    // would leave the rest of the batch unread): handlers are guarded one by one in
    // dispatch(); whatever still escapes is reported after the socket is consistent again.
    try {
      this.receive(batch, overruns, skipped, errno);
    } catch (err) {
      rethrowLater(err);
    }
  };

  private receive(batch: Buffer | null, overruns: number, skipped: number, errno: number): void {
    this.skipped += skipped;
    if (errno < 0) {
      // Not a receive batch: the native layer reports a send failure through the same callback.
      this.onSendFailure(batch, -errno);
      return;
    }
    // A batch with an overrun: replies were lost, perhaps the error of a silent request,
    // and nothing says where in the batch. Its replies then settle only their own requests;
    // the silent ones fail below with everything else in flight (never reported created).
    if (batch) this.dispatch(batch, overruns === 0 && skipped === 0 && !this.tainted);
    if (overruns > 0 || skipped > 0) this.tainted = true;
    if (skipped > 0 && overruns === 0 && this.silent > 0) {
      // A dropped datagram may have held a silent request's error: none of them can be
      // vouched for now.
      this.failSilent(new ConntrackError('ERR_OUTCOME_UNKNOWN', 'a reply from the kernel was malformed and skipped; this request may or may not have been carried out: check the table'));
    }
    if (overruns > 0) {
      if (this.events) this.events.overrun(overruns);
      if (this.inFlight > 0) {
        // Replies were dropped: nothing says which, so fail every request in flight.
        const err = kernelError(osConstants.errno.ENOBUFS, 'receiving replies', 'the receive buffer overflowed; replies were lost', 'recvfrom');
        this.failPending(err);
      }
    }
    if (errno === osConstants.errno.ENOMEM) {
      this.failSocket();
      return;
    }
    if (errno !== 0) {
      const err = kernelError(errno, 'receiving from the netlink socket', undefined, 'recvfrom');
      this.failPending(err);
      this.events?.error(err);
    }
    if (this.tainted && this.inFlight === 0) this.tainted = false; // every reply read: the queue is empty
    this.kick();
  }

  /** Set once the native side ran out of memory: the socket is unusable from then on. */
  private failure: ConntrackError | undefined;

  /**
   * The native side could not allocate for this socket (a receive block, the copy for JS,
   * or the sender thread's bookkeeping): replies may have been lost and the socket cannot
   * go on. Everything queued or in flight fails with ENOMEM, the event sink is told (a
   * dump or stream closes with that error), the socket closes, and later requests fail
   * with the same error.
   */
  private failSocket(): void {
    if (this.closed) return;
    const err = new ConntrackError('ENOMEM', 'the netlink socket failed: out of memory in the native addon (ENOMEM); requests in flight may have been carried out or not. Close this handle (or stream) and open a new one', { errno: osConstants.errno.ENOMEM, syscall: 'malloc' });
    this.failure = err;
    const sink = this.events;
    this.closeWith(err);
    sink?.error(err);
  }

  /**
   * The sender thread could not send a block of requests: `seqs` holds their sequence
   * numbers (u32, host order). Only those fail; earlier ones were carried out.
   */
  private onSendFailure(seqs: Buffer | null, errno: number): void {
    const err = kernelError(errno, 'sending requests', undefined, 'sendmsg');
    for (let p = 0; seqs && p + 4 <= seqs.length; p += 4) {
      const h = this.takePending(seqs.readUInt32LE(p));
      if (h) h.done(err, this.takenItem);
    }
    this.kick();
  }

  /** After replies freed room in the window: send what is queued, or adjust reading. */
  private kick(): void {
    if (this.onIdle && this.inFlight === 0) {
      this.onIdle();
      return;
    }
    if (this.queue.length > this.queueHead && !this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    } else {
      this.updateReading();
    }
  }

  private failPending(err: ConntrackError): void {
    const handlers: ReplyHandler[] = [];
    const items: number[] = [];
    for (let i = 0; i < RING; i++) {
      const h = this.ring[i];
      if (h !== undefined) {
        handlers.push(h);
        items.push(this.ringItem[i]);
        this.ring[i] = undefined;
      }
      this.ringSilent[i] = 0;
    }
    this.inFlight = 0;
    this.inFlightBytes = 0;
    this.silent = 0;
    for (let k = 0; k < handlers.length; k++) handlers[k].done(err, items[k]);
  }

  private dispatch(buf: Buffer, vouch = true): void {
    const end = buf.length;
    const portId = this.handle.portId;
    let p = 0;
    // A handler may close the socket (a dump that failed, a stream whose listener threw):
    // the rest of the batch is then dropped.
    while (p + NLMSG_HDRLEN <= end && !this.closed) {
      // Plain byte reads (in bounds: checked just above): readUInt32LE()'s own range checks
      // showed in profiles of event drains and dumps, a few per message.
      const len = (buf[p] | (buf[p + 1] << 8) | (buf[p + 2] << 16) | (buf[p + 3] << 24)) >>> 0;
      const type = buf[p + 4] | (buf[p + 5] << 8);
      const flags = buf[p + 6] | (buf[p + 7] << 8);
      const seq = (buf[p + 8] | (buf[p + 9] << 8) | (buf[p + 10] << 16) | (buf[p + 11] << 24)) >>> 0;
      const pid = (buf[p + 12] | (buf[p + 13] << 8) | (buf[p + 14] << 16) | (buf[p + 15] << 24)) >>> 0;
      const h = seq !== 0 && pid === portId ? this.peekPending(seq) : undefined;
      if (len < NLMSG_HDRLEN || p + len > end) {
        // A length that does not fit: nothing after it can be trusted. The request it
        // names (if any) fails rather than waiting for an answer that has been mangled.
        if (h !== undefined) this.settle(seq, h, protocolError(h.operation, `a reply of ${len} bytes in a batch of ${end - p}`));
        else this.unmatched++;
        break;
      }
      if (h !== undefined && this.silent > 0 && vouch) {
        this.settleSilentBefore(seq);
        if (this.closed) break; // a settled request's callback closed the socket
      }
      if (h === undefined) {
        if (seq === 0 && this.events && type !== NLMSG_ERROR && type !== NLMSG_DONE && type !== NLMSG_NOOP) {
          this.deliverEvent(buf, p, len, type, flags);
        } else {
          this.unmatched++;
        }
      } else if (type === NLMSG_ERROR) {
        // A plain ack (error 0, whole nlmsgerr) needs no parsing: one per item of a bulk operation.
        if (len >= NLMSG_HDRLEN + 20 && buf.readInt32LE(p + NLMSG_HDRLEN) === 0) {
          this.settle(seq, h, undefined);
        } else {
          const e = parseError(buf, p, len, flags);
          if (e === undefined) this.settle(seq, h, protocolError(h.operation, `an error message of ${len} bytes (at least 36 expected)`));
          else if (e.errno === 0) this.settle(seq, h, undefined);
          else if (e.errno < 0 || e.errno > MAX_ERRNO) this.settle(seq, h, protocolError(h.operation, `an error message with error field ${-e.errno}`));
          else this.settle(seq, h, kernelError(e.errno, h.operation, e.extack));
        }
      } else if (type === NLMSG_DONE) {
        const status = len >= NLMSG_HDRLEN + 4 ? buf.readInt32LE(p + NLMSG_HDRLEN) : 0;
        this.settle(seq, h, status < 0 ? kernelError(-status, h.operation) : undefined);
      } else if (type === NLMSG_NOOP || type === NLMSG_OVERRUN) {
        // nothing to deliver
      } else {
        try {
          h.message(buf, p, len, type, flags & ~NLM_F_DUMP_INTR);
        } catch (err) {
          // A decoder that cannot make sense of the message, or a user callback run on it
          // (those throw ERR_CALLBACK): the request ends with that error; later messages
          // of it are dropped as unmatched.
          const e = err instanceof ConntrackError ? err : protocolError(h.operation, 'a reply that could not be decoded', err);
          if (this.peekPending(seq) === h) this.settle(seq, h, e);
        }
      }
      p += align4(len);
    }
  }

  /** Fails the silent requests in flight (and only those). */
  private failSilent(err: ConntrackError): void {
    for (let i = 0; i < RING && this.silent > 0; i++) {
      const h = this.ring[i];
      if (h !== undefined && this.ringSilent[i] === 1) this.settle(this.ringSeq[i], h, err);
    }
  }

  /** The kernel's count of messages it dropped for this socket (SO_MEMINFO, SK_MEMINFO_DROPS). */
  get drops(): number {
    return this.handle.memInfo()[SK_MEMINFO_DROPS] ?? 0;
  }

  /**
   * Gives up on a request that was sent and is still waiting for its reply: it settles now
   * with `err`, and its reply, should it still come, is ignored as unmatched. For a request
   * whose reply the kernel may have dropped without a word (on a congested socket only the
   * drop counter tells). Returns false when the request is not in flight (answered already,
   * or not yet sent).
   */
  cancel(h: ReplyHandler, err: ConntrackError): boolean {
    for (let i = 0; i < RING; i++) {
      if (this.ring[i] === h) {
        this.settle(this.ringSeq[i], h, err);
        this.kick(); // its room in the window may let queued requests go out
        return true;
      }
    }
    return false;
  }

  /** Takes request `seq` off the window and calls its handler once. */
  private settle(seq: number, h: ReplyHandler, err: ConntrackError | undefined): void {
    if (err === undefined) this.capable = true;
    this.takePending(seq);
    const item = this.takenItem;
    try {
      h.done(err, item);
    } catch (thrown) {
      rethrowLater(thrown);
    }
  }

  private deliverEvent(buf: Buffer, off: number, len: number, type: number, flags: number): void {
    const sink = this.events!;
    try {
      sink.message(buf, off, len, type, flags);
    } catch (err) {
      const e = err instanceof ConntrackError ? err : new ConntrackError('ERR_PROTOCOL', `an event could not be decoded: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      try {
        sink.error(e);
      } catch (thrown) {
        rethrowLater(thrown);
      }
    }
  }

  /**
   * Closes after the requests already sent have been answered (their outcome is known),
   * waiting at most `waitMs`. Requests not yet sent fail at once with ERR_CLOSED (the
   * kernel never saw them); those still unanswered at the deadline fail with
   * ERR_OUTCOME_UNKNOWN (the kernel may or may not have carried them out).
   */
  closeAfterInFlight(waitMs: number): Promise<void> {
    if (this.closed || this.closing) return this.closingDone ?? Promise.resolve();
    this.closing = true;
    this.failQueued(new ConntrackError('ERR_CLOSED', 'the connection was closed before this request was sent'));
    this.closingDone = new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        if (timer) clearTimeout(timer);
        this.onIdle = undefined;
        this.closeWith(new ConntrackError('ERR_CLOSED', 'the connection was closed'), new ConntrackError(
          'ERR_OUTCOME_UNKNOWN',
          'the connection was closed while this request was in flight: the kernel may or may not have carried it out',
        ));
        resolve();
      };
      if (this.inFlight === 0) {
        finish();
        return;
      }
      timer = setTimeout(finish, waitMs);
      this.onIdle = finish;
      this.updateReading();
    });
    return this.closingDone;
  }

  private closing = false;
  private closingDone: Promise<void> | undefined;
  /** Called once nothing is in flight while closing. */
  private onIdle: (() => void) | undefined;

  private failQueued(err: ConntrackError): void {
    const queued = this.queue.slice(this.queueHead);
    this.queue = [];
    this.queueHead = 0;
    this.resetStaging();
    for (const q of queued) {
      if (q.batch) for (let k = q.batch.next; k < q.batch.ends.length; k++) q.handler.done(err, k);
      else q.handler.done(err, -1);
    }
  }

  /** Closes now: queued and in-flight requests fail with ERR_CLOSED. */
  close(): void {
    this.closeWith(new ConntrackError('ERR_CLOSED', 'the connection was closed'));
  }

  /** Closes now: queued requests fail with `err`, those in flight with `inFlightErr`. */
  private closeWith(err: ConntrackError, inFlightErr = err): void {
    if (this.closed) return;
    this.closed = true;
    this.failQueued(err);
    this.failPending(inFlightErr);
    this.reading = false;
    this.handle.close();
  }
}

function protocolError(operation: string, what: string, cause?: unknown): ConntrackError {
  return new ConntrackError('ERR_PROTOCOL', `${operation}: the kernel sent ${what}, which the library cannot parse`, cause === undefined ? {} : { cause });
}

function nativeOptions(options: SocketOptions): NativeSocketOptions {
  const target = options.netns?.target('opening a netlink socket') ?? {};
  return { ...target, threaded: options.threaded, asyncSend: options.asyncSend };
}

function openError(err: unknown, options: SocketOptions): ConntrackError {
  if (options.netns && isNetnsError(err)) return options.netns.error(err, 'opening a netlink socket');
  return fromNative(err, options.netns && !options.netns.isCallers ? `opening a netlink socket in network namespace ${options.netns.label}` : 'opening a netlink socket');
}

/**
 * How many items of a requestBatch() call of `n` reached the kernel before it threw: the
 * error's `sent` for a failure part-way; 0 for a TypeError or RangeError (arguments
 * refused before anything was sent) or anything else.
 */
function sentBefore(err: unknown, n: number): number {
  if (!isObject(err)) return 0;
  const e = err as Partial<BatchSendError>;
  // By name: the addon's errors come from the main realm (not a VM context's, under jest).
  if (e.name === 'TypeError' || e.name === 'RangeError') return 0;
  if (typeof e.sent !== 'number' || typeof e.firstSeq !== 'number') return 0;
  return Math.max(0, Math.min(n, Math.floor(e.sent)));
}
