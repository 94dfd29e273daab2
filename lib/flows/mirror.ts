/**
 * A live in-memory copy of the conntrack table: subscribe to events first, then dump,
 * then apply the events that arrived meanwhile (and all later ones) in order. When the
 * kernel drops events for the mirror's socket (its `lost` count grows), the copy can no
 * longer be trusted, so it dumps again and reconciles by itself, reporting what changed.
 *
 * Some entries never produce events: the kernel gives an entry its event cache when the
 * entry is created, and only if event delivery is on (nf_conntrack_events=1) or, in the
 * default mode (2), if some process on the host listens for conntrack events at that
 * moment. Entries made without one change and vanish silently. The mirror therefore also
 * reconciles with a dump periodically (`refreshInterval`) unless the namespace has
 * nf_conntrack_events=1, and on demand (`refresh()`).
 */
import { parseAddress } from '../common/address';
import { emitGuarded, rethrowLater } from '../common/callback';
import { TypedEventEmitter } from '../common/emitter';
import { ConntrackError, invalid } from '../common/errors';
import { Slab } from '../common/slab';
import { checkKeys, checkNumber, checkObject, isObject, show } from '../common/validate';
import type { Handle } from '../wire/handle';
import { Settings } from '../stats/settings';
import type { Dump } from '../wire/dump';
import { dumpRawFlows } from './dump';
import { FlowTable } from './flow-table';
import { FlowEventStream, FlowEventType } from './events';
import type { FlowFilter } from './filter';
import { Flow, decodeFlow } from './flow';
import { RawEntry, scanEntry } from './raw-entry';
import type { IcmpTuple } from './tuple';
import { protoNumber } from './tuple';

export interface MirrorOptions {
  /** Mirror only the entries that match (best on fields that do not change: tuples, proto, zone). */
  filter?: FlowFilter;
  /** Receive buffer for the mirror's event socket (see EventsOptions.receiveBufferSize). */
  receiveBufferSize?: number;
  /** Grow the event socket's buffer after each loss, up to `max` bytes. */
  growBuffer?: { max: number };
  /** Closes the mirror. */
  signal?: AbortSignal;
  /**
   * Milliseconds between reconciling dumps, which catch the changes of entries the kernel
   * sends no events for (see above); 0 turns them off. Default: 60000, or 0 when the
   * namespace's nf_conntrack_events is 1 (then every entry created since has events).
   */
  refreshInterval?: number;
}

/** The refresh interval used when nf_conntrack_events is not 1. */
export const DEFAULT_REFRESH_INTERVAL = 60_000;

/** How an entry is named for get()/has(): its original tuple plus protocol and zone. */
export interface TupleKey {
  proto: string | number;
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  icmp?: Partial<IcmpTuple>;
  zone?: number;
}

/** Details of a (re)synchronisation, emitted as 'resync'. */
export interface ResyncInfo {
  /**
   * 'initial' for the first sync, 'lost' after the kernel dropped events, 'refresh' for a
   * periodic or requested reconcile (`refreshInterval`, `refresh()`).
   */
  reason: 'initial' | 'lost' | 'refresh';
  /** Events lost on the mirror's socket so far (total). */
  lost: number;
  /** Entries that appeared, changed (id, status, mark or state) or vanished versus the old copy. */
  added: number;
  updated: number;
  removed: number;
  /** Entries in the mirror afterwards. */
  size: number;
  /** Events that arrived during the dump and were applied after it. */
  replayed: number;
  durationMs: number;
}

/** What the mirror's event socket received and lost, and how often the mirror reconciled (`mirror.stats`). */
export interface MirrorStats {
  /**
   * Events the mirror's socket received, by type: exact (each message counted once as it
   * is read, including those that arrive during a resync's dump), after the kernel's part
   * of the mirror's filter.
   */
  received: { new: number; update: number; destroy: number };
  /** Events the kernel dropped for the mirror's socket (exact, from its drop counter; as `mirror.lost`). */
  lost: number;
  /** Resynchronisations after losses (as `mirror.resyncs`). */
  resyncs: number;
  /** Reconciling dumps made by `refreshInterval` or `refresh()` (as `mirror.refreshes`). */
  refreshes: number;
}

/** The events of a Mirror and their listener arguments. */
export interface MirrorEvents {
  /** An entry appeared. */
  add: [flow: Flow];
  /** An entry changed: the new copy and the one it replaced. */
  update: [flow: Flow, previous: Flow];
  /**
   * An entry vanished: its last view (for a DESTROY event, the held copy merged with the
   * event's final counters and timestamps) and the copy the mirror held.
   */
  delete: [flow: Flow, previous: Flow];
  /** A dump was reconciled with the copy. */
  resync: [info: ResyncInfo];
  /** Following the table failed; the mirror closes. */
  error: [error: ConntrackError];
  close: [];
}

/** Events buffered during a resync's dump before it gives up on them and dumps again (at least). */
const MAX_PENDING = 65536;

const MIRROR_KEYS = new Set(['filter', 'receiveBufferSize', 'growBuffer', 'signal', 'refreshInterval']);

/** Event kinds of buffered messages, kept in the copy's nlmsg_seq (see hold()). */
const KINDS: readonly FlowEventType[] = ['new', 'update', 'destroy'];
const SEQ_OFFSET = 8;

/** Change counts of one reconciling dump. */
interface Counts {
  added: number;
  updated: number;
}

/**
 * The mirror. Iterating yields the current flows; events: 'add' (flow), 'update' (flow,
 * previous), 'delete' (flow, previous), 'resync' (ResyncInfo), 'error' (err), 'close'.
 * 'update' and 'delete' pass the copy the mirror held before as `previous`; for a
 * DESTROY event `flow` is that copy merged with what the event carried (its final
 * counters and timestamps), while a delete found by a reconciling dump passes the held
 * copy as both. No 'add' events are emitted for the initial contents: read them once
 * `ready` resolves.
 *
 * The mirror holds each entry as the kernel's message bytes, not as a Flow: every read
 * (`get()`, iteration, the flows passed to listeners) decodes a new Flow, so two reads of
 * one entry give equal but distinct objects, and changing a Flow you got does not change
 * the mirror. Flows for 'add', 'update' and 'delete' are decoded only while someone
 * listens to that event.
 */
export class Mirror extends TypedEventEmitter<MirrorEvents> implements Iterable<Flow> {
  /** Resolves when the first dump has been applied; rejects if it failed. */
  readonly ready: Promise<void>;
  private readonly table = new FlowTable();
  /**
   * The resync generation: each reconciling dump takes the next one and marks the entries
   * it returns with it; entries left with an older one afterwards are gone.
   */
  private generation = 0;
  /** During a resync's dump: the events that arrived meanwhile (refs into `held`), in order. */
  private pending: number[] | undefined;
  /** Copies of the pending events' messages. */
  private readonly held = new Slab();
  /** The message being applied, read in place. */
  private readonly msg = new RawEntry();
  private readonly stream: FlowEventStream;
  private syncing = false;
  /** Barrier requests sent before resync dumps (a reply dropped in an overflow counts in `lost`, with its error ack). */
  private barriers = 0;
  private again = false;
  private closed = false;
  private readonly filter: FlowFilter | undefined;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort: (() => void) | undefined;
  /** Number of resynchronisations after losses. */
  resyncs = 0;
  /** Number of reconciling dumps made by `refreshInterval` or `refresh()`. */
  refreshes = 0;
  private interval = 0;
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<ResyncInfo | undefined> | undefined;
  private readonly disown: () => void;
  /** The dump of the running (re)sync, so unref() reaches its socket too. */
  private dump: Dump<never> | undefined;
  private unrefed = false;

  /** @internal Use Conntrack.mirror(). */
  constructor(private readonly ct: Handle, options: MirrorOptions = {}) {
    super();
    checkKeys(checkObject(options, 'options', "{ filter: { proto: 'tcp' } }"), MIRROR_KEYS, 'options', 'mirror()');
    const every = options.refreshInterval;
    if (every !== undefined) checkNumber(every, 0, 2 ** 31 - 1, 'options.refreshInterval', 'a number of milliseconds (0: never)');
    this.filter = options.filter;
    // Validates everything (filter included) before anything is subscribed.
    this.stream = new FlowEventStream(ct, {
      filter: options.filter,
      receiveBufferSize: options.receiveBufferSize,
      growBuffer: options.growBuffer,
    });
    this.stream.consumeRaw((buf, off, len, kind) => {
      if (this.pending !== undefined) {
        if (this.again) return;
        this.hold(buf, off, len, kind);
        // More events than half the entries while one dump runs: cheaper to dump again than
        // to hold them, and the held events never amount to a second copy of the table.
        if (this.pending.length > Math.max(MAX_PENDING, this.size >> 1)) this.requestResync();
      } else if (!this.syncing) {
        this.apply(buf, off, len, kind, true);
      }
      // (else a resync waits for its barrier: the event is older than its dump, which supersedes it)
    }, () => this.requestResync());
    this.stream.on('error', (err: ConntrackError) => this.fail(err));
    this.signal = options.signal;
    if (this.signal) {
      this.onAbort = () => this.close();
      this.signal.addEventListener('abort', this.onAbort, { once: true });
    }
    this.disown = ct.adopt(this);
    this.ready = this.start(every);
    this.ready.catch(() => undefined); // reported through ready / 'error'; never unhandled
    if (this.signal?.aborted) this.close();
  }

  /** Entries in the mirror. */
  get size(): number {
    return this.table.size;
  }

  /** Events the kernel dropped for the mirror's socket (each loss triggers a resync). */
  get lost(): number {
    return this.stream.lost;
  }

  /**
   * Milliseconds between reconciling dumps (0: none). Decided when `ready` resolves: the
   * `refreshInterval` option, or its default for the namespace's nf_conntrack_events.
   */
  get refreshInterval(): number {
    return this.interval;
  }

  /** True while a dump is being taken and reconciled. */
  get synchronizing(): boolean {
    return this.syncing;
  }

  /** What the mirror's event socket received by type and lost, and the resync counts. */
  get stats(): MirrorStats {
    return { received: this.stream.stats.received, lost: this.stream.lost, resyncs: this.resyncs, refreshes: this.refreshes };
  }

  /**
   * Lets the process exit while the mirror follows the table (like socket.unref()): its
   * event socket, and the socket of a reconciling dump, no longer keep the event loop
   * alive. The refresh timer never does.
   */
  unref(): this {
    this.unrefed = true;
    this.stream.unref();
    this.dump?.unref();
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    this.unrefed = false;
    this.stream.ref();
    this.dump?.ref();
    return this;
  }

  /** The receive buffer granted to the mirror's event socket. */
  get receiveBufferSize(): number {
    return this.stream.receiveBufferSize;
  }

  /**
   * The entry with kernel id `key` (ids are 32-bit hashes: with a collision, the first
   * one), or the entry whose original tuple is `key` (`{ proto, src, dst, sport, dport,
   * zone? }`, or a Flow). A new Flow decoded from what the mirror holds, on every call.
   */
  get(key: number | TupleKey | Flow): Flow | undefined {
    const ref = this.refOf(key);
    return ref < 0 ? undefined : this.table.decode(ref);
  }

  /** Every entry with kernel id `id` (usually one), as new Flows. */
  getAllById(id: number): Flow[] {
    return this.table.findById(id >>> 0).map((ref) => this.table.decode(ref));
  }

  has(key: number | TupleKey | Flow): boolean {
    return this.refOf(key) >= 0;
  }

  /**
   * The current flows, each decoded as it is reached (a live view, like a Map's iterator:
   * changes applied while iterating may or may not be seen). `[...mirror]` takes a snapshot.
   */
  values(): IterableIterator<Flow> {
    return this.table.values();
  }

  [Symbol.iterator](): IterableIterator<Flow> {
    return this.values();
  }

  private refOf(key: number | TupleKey | Flow): number {
    if (typeof key === 'number') {
      const refs = this.table.findById(key >>> 0);
      return refs.length > 0 ? refs[0] : -1;
    }
    if (!isObject(key)) throw invalid('key', 'must be an id, a Flow or { proto, src, dst, sport, dport }');
    if ((key as Flow).orig !== undefined) {
      const f = key as Flow;
      const o = f.orig;
      const protonum = typeof f.proto === 'number' ? f.proto : protoNumber(f.proto, 'key.proto');
      const src = parseAddress(o.src);
      const dst = parseAddress(o.dst);
      if (src === undefined || dst === undefined) return -1;
      const ref = this.find(protonum, src.bytes, dst.bytes, o.sport, o.dport, o.icmp, f.zone ?? 0, o.zone);
      return ref >= 0 && (f.id === undefined || f.id === 0 || this.table.scan(ref).id === f.id) ? ref : -1;
    }
    const t = key as TupleKey;
    const protonum = protoNumber(t.proto, 'key.proto');
    const src = parseAddress(t.src);
    const dst = parseAddress(t.dst);
    if (src === undefined) throw invalid('key.src', `not an IP address: ${show(t.src)}`);
    if (dst === undefined) throw invalid('key.dst', `not an IP address: ${show(t.dst)}`);
    return this.find(protonum, src.bytes, dst.bytes, t.sport, t.dport, t.icmp, t.zone ?? 0, undefined);
  }

  /** The ref of the entry with this key, found as for a message that names it. */
  private find(
    protonum: number, src: Buffer, dst: Buffer, sport: number | undefined, dport: number | undefined,
    icmp: Partial<IcmpTuple> | undefined, zone: number, tupleZone: number | undefined,
  ): number {
    const q = QUERY;
    src.copy(QUERY_BYTES, 0);
    dst.copy(QUERY_BYTES, 16);
    const o = q.orig;
    o.reset();
    q.protonum = o.protonum = protonum;
    q.zone = Number(zone);
    o.srcPos = 0;
    o.srcLen = src.length;
    o.dstPos = 16;
    o.dstLen = dst.length;
    if (icmp !== undefined) {
      o.icmpType = Number(icmp.type ?? 0);
      o.icmpCode = Number(icmp.code ?? 0);
      o.icmpId = Number(icmp.id ?? 0);
    } else {
      o.sport = sport === undefined ? -1 : Number(sport);
      o.dport = dport === undefined ? -1 : Number(dport);
    }
    o.zone = tupleZone === undefined ? -1 : Number(tupleZone);
    return this.table.find(QUERY_BYTES, q);
  }

  /**
   * Resolves once every event the kernel has queued for the mirror so far has been applied
   * and no resync is running or due (useful before comparing with a dump). A loss meanwhile
   * (even one that takes the barrier's own reply) is waited out: the mirror resyncs, then
   * settles.
   */
  async settle(): Promise<void> {
    await this.ready;
    for (;;) {
      if (this.closed) return;
      if (!this.syncing) {
        // Everything queued so far is applied once a request on the stream's socket is
        // answered (the reply comes behind the queued events).
        try {
          await this.stream.barrier();
        } catch (err) {
          // The socket overflowed and the reply was dropped with the events: the loss
          // starts a resync (from the overrun, or from the drop counter read here).
          if ((err as ConntrackError).code !== 'ENOBUFS') throw err;
          void this.stream.lost;
          if (!this.syncing) this.requestResync();
          continue;
        }
        void this.stream.lost; // reads the drop counter: a loss not yet reported starts a resync
        if (this.closed || !this.syncing) return;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /**
   * Dumps the table now and reconciles the copy with it, emitting 'add', 'update' and
   * 'delete' for the differences and 'resync' with `reason: 'refresh'`. This is how changes
   * the kernel never announced (entries without an event cache) reach the mirror.
   */
  async refresh(): Promise<ResyncInfo> {
    await this.ready;
    while (this.current) await this.current.catch(() => undefined);
    if (this.closed) throw new ConntrackError('ERR_CLOSED', 'mirror.refresh(): the mirror is closed');
    const info = await this.sync('refresh');
    if (info === undefined) throw new ConntrackError('ERR_CLOSED', 'mirror.refresh(): the mirror was closed meanwhile');
    return info;
  }

  private async start(every: number | undefined): Promise<void> {
    // Read the namespace's setting while the first dump runs.
    const decided = every !== undefined
      ? Promise.resolve(every)
      : new Settings(this.ct.netnsFile).get().then((s) => (s.events === true ? 0 : DEFAULT_REFRESH_INTERVAL), () => DEFAULT_REFRESH_INTERVAL);
    await this.sync('initial');
    this.interval = Math.floor(await decided);
    this.schedule();
  }

  private schedule(): void {
    if (this.closed || this.interval <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh().catch(() => undefined).finally(() => this.schedule());
    }, this.interval);
    // The mirror's socket decides whether the process stays alive, not this timer.
    this.timer.unref();
  }

  private requestResync(): void {
    if (this.closed) return;
    if (this.syncing) {
      // Another dump follows this one, so the events buffered for it can no longer make it
      // exact: drop them (and buffer no more) instead of holding them through a flood.
      this.again = true;
      this.dropPending();
      return;
    }
    this.sync('lost').catch(() => undefined);
  }

  private sync(reason: ResyncInfo['reason']): Promise<ResyncInfo | undefined> {
    const run = this.runSync(reason);
    this.current = run;
    const clear = (): void => {
      if (this.current === run) this.current = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  /**
   * Dumps and reconciles in place, holding one copy of the table: each dumped entry
   * replaces the one held with its key (emitting 'add' / 'update' for differences) and is
   * marked with this resync's generation; entries left unmarked afterwards are gone. The
   * entries not yet dumped stay readable meanwhile. Events that arrive during the dump are
   * kept as bytes and applied after it, in order.
   */
  private async runSync(reason: ResyncInfo['reason']): Promise<ResyncInfo | undefined> {
    this.syncing = true;
    const started = Date.now();
    this.pending = undefined; // until the barrier's reply: see holdFromBarrier()
    const emit = reason !== 'initial';
    const gen = this.generation = (this.generation + 1) >>> 0;
    const counts: Counts = { added: 0, updated: 0 };
    const end = (): void => {
      this.dropPending();
      this.pending = undefined;
      this.syncing = false;
    };
    try {
      await this.holdFromBarrier();
      if (this.closed) {
        end();
        return undefined;
      }
      const dump = dumpRawFlows(this.ct, this.filter, (buf, off, len) => {
        if (!this.closed) this.reconcile(buf, off, len, gen, emit, counts);
      });
      this.dump = dump;
      if (this.unrefed) dump.unref();
      // The dump yields nothing (its messages went to reconcile()): this waits for its end.
      while (!(await dump.next()).done) { /* nothing is yielded */ }
    } catch (err) {
      this.dump = undefined;
      end();
      if (this.closed) return undefined;
      this.fail(err as ConntrackError);
      throw err;
    }
    this.dump = undefined;
    if (this.closed) {
      end();
      return undefined;
    }
    const table = this.table;
    const tell = emit && this.listenerCount('delete') > 0;
    const removed = table.sweep(gen, tell ? (prev) => this.emitUser('delete', prev, prev) : undefined);
    const replay = this.pending ?? []; // none when the stream closed before the barrier's reply
    this.pending = undefined;
    for (const ref of replay) {
      const b = this.held.bufferOf(ref);
      const o = this.held.offsetOf(ref);
      this.apply(b, o, b.readUInt32LE(o), KINDS[b[o + SEQ_OFFSET]], emit);
    }
    this.held.clear();
    if (reason === 'lost') this.resyncs++;
    else if (reason === 'refresh') this.refreshes++;
    // Read while still syncing: a loss noticed now schedules one more resync (below), not two.
    const lost = this.stream.lost;
    this.syncing = false;
    const info: ResyncInfo = {
      reason, lost, added: counts.added, updated: counts.updated, removed: emit ? removed : 0,
      size: table.size, replayed: replay.length, durationMs: Date.now() - started,
    };
    this.emitUser('resync', info);
    if (this.again && !this.closed) {
      this.again = false;
      this.requestResync();
    }
    return info;
  }

  /**
   * Starts holding events for the running resync at the reply to a barrier request on the
   * event socket. Whatever arrives before that reply happened before the dump starts, and
   * the dump supersedes it, so it is dropped. Holding from the moment the resync starts
   * would be wrong after an overrun: the kernel reports ENOBUFS ahead of the datagrams it
   * had queued before the drop, so older events still follow the overrun, and replayed
   * after the dump a NEW whose DESTROY was dropped would bring a deleted entry back.
   * The request waits (up to about 100 ms) until the socket's buffer is at most half full,
   * so that its reply is rarely dropped. If the kernel drops anything for the socket before
   * the reply comes (an overrun, or only the drop counter: a congested socket reports no
   * second ENOBUFS, and the reply itself may be what it dropped), there is a gap after the
   * resync began: another resync is due anyway, so this one dumps without holding anything.
   */
  private async holdFromBarrier(): Promise<void> {
    const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1).unref());
    for (let i = 0; i < 100 && !this.closed && this.stream.kernelQueuedBytes > this.stream.receiveBufferSize / 2; i++) await tick();
    if (this.closed) return;
    this.barriers++;
    await this.stream.barrierThen(() => {
      if (this.syncing && !this.again) this.pending = [];
    }).catch((err: ConntrackError) => {
      // ENOBUFS (a loss before the reply: reported as 'lost', which marked this resync for
      // another) ends the wait; anything else fails the resync.
      if (err.code !== 'ENOBUFS') throw err;
    });
  }

  /** Applies one dumped entry (generation `gen`): stores it, counting and emitting what changed. */
  private reconcile(buf: Buffer, off: number, len: number, gen: number, emit: boolean, counts: Counts): void {
    const e = scanEntry(buf, off, len, this.msg);
    if (e.origAttr < 0) return; // no original tuple: nothing names it
    const table = this.table;
    const hash = table.hashOf(buf, e);
    const ref = table.find(buf, e, hash);
    if (ref < 0) {
      const added = table.insert(buf, off, len, e, gen, hash);
      if (!emit) return;
      counts.added++;
      if (this.listenerCount('add') > 0) this.emitUser('add', table.decode(added));
      return;
    }
    const h = table.scan(ref);
    // The same id, status, mark and state: the dump's copy replaces the held one (its
    // timeout, counters and timestamps are newer) and nothing is reported. A tuple seen
    // twice in one dump (an entry replaced meanwhile) compares with the first copy.
    if (h.id === e.id && h.status === e.status && h.mark === e.mark && h.state === e.state) {
      table.replace(ref, buf, off, len, e, gen, hash);
      return;
    }
    const prev = emit && this.listenerCount('update') > 0 ? table.decode(ref) : undefined;
    const now = table.replace(ref, buf, off, len, e, gen, hash);
    if (!emit) return;
    counts.updated++;
    if (prev !== undefined) this.emitUser('update', table.decode(now), prev);
  }

  /** Applies one event to the table, emitting what it changed (`emit`). */
  private apply(buf: Buffer, off: number, len: number, kind: FlowEventType, emit: boolean): void {
    const e = scanEntry(buf, off, len, this.msg);
    if (e.origAttr < 0) return;
    const table = this.table;
    const hash = table.hashOf(buf, e);
    const ref = table.find(buf, e, hash);
    const sameEntry = ref >= 0 && table.scan(ref).id === e.id;
    if (kind === 'destroy') {
      // A DESTROY for an older entry with the same tuple (different id) changes nothing.
      if (!sameEntry) return;
      let gone: Flow | undefined;
      let prev: Flow | undefined;
      if (emit && this.listenerCount('delete') > 0) {
        prev = table.decode(ref);
        const n = table.merge(ref, buf, off, len);
        gone = decodeFlow(table.merged, 0, n);
        gone.status = prev.status;
        gone.statusBits = prev.statusBits;
        gone.timeout = 0;
      }
      table.delete(ref);
      if (gone !== undefined) this.emitUser('delete', gone, prev);
      return;
    }
    const gen = this.generation;
    if (ref < 0) {
      const added = table.insert(buf, off, len, e, gen, hash);
      if (emit && this.listenerCount('add') > 0) this.emitUser('add', table.decode(added));
      return;
    }
    if (sameEntry) {
      // The same entry: the attributes the event left out (unchanged) are kept.
      const prev = emit && this.listenerCount('update') > 0 ? table.decode(ref) : undefined;
      const n = table.merge(ref, buf, off, len, true);
      const merged = scanEntry(table.merged, 0, n, this.msg);
      const now = table.replace(ref, table.merged, 0, n, merged, gen, hash);
      if (prev !== undefined) this.emitUser('update', table.decode(now), prev);
      return;
    }
    // Another entry with the same tuple (the old one is gone): the event replaces it whole.
    const prev = emit && this.listenerCount('delete') > 0 ? table.decode(ref) : undefined;
    const now = table.replace(ref, buf, off, len, e, gen, hash);
    if (!emit) return;
    if (prev !== undefined) this.emitUser('delete', prev, prev);
    if (this.listenerCount('add') > 0) this.emitUser('add', table.decode(now));
  }

  /** Keeps a copy of an event that arrived during a resync's dump (its kind in the copy's nlmsg_seq). */
  private hold(buf: Buffer, off: number, len: number, kind: FlowEventType): void {
    const ref = this.held.alloc(len);
    const b = this.held.bufferOf(ref);
    const o = this.held.offsetOf(ref);
    buf.copy(b, o, off, off + len);
    b.writeUInt32LE(len, o);
    b[o + SEQ_OFFSET] = KINDS.indexOf(kind);
    this.pending!.push(ref);
  }

  /** Forgets the events held for the running resync (and the memory that held them). */
  private dropPending(): void {
    // During the replay `pending` is already detached and its events are being applied:
    // a resync requested meanwhile (a listener reading `lost`) must not free them.
    if (this.pending === undefined) return;
    this.pending.length = 0;
    this.held.clear();
  }

  /**
   * Emits to the caller's listeners. A listener that throws closes the mirror with
   * ERR_CALLBACK (cause: what it threw); the copy stays as it was after that change.
   */
  private emitUser(name: string, ...args: unknown[]): boolean {
    if (this.closed) return false;
    const err = emitGuarded(this, 'mirror:', name, ...args);
    if (err === undefined) return true;
    if (this.listenerCount('error') === 0) rethrowLater(err);
    this.fail(err);
    return false;
  }

  private fail(err: ConntrackError): void {
    if (this.closed) return;
    if (this.listenerCount('error') > 0) {
      const e = emitGuarded(this, 'mirror:', 'error', err);
      if (e) rethrowLater(e);
    }
    this.close();
  }

  /** Stops following the table (closes the event socket); the contents stay readable. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.onAbort && this.signal) this.signal.removeEventListener('abort', this.onAbort);
    this.stream.close();
    // A running dump is drained without applying it (see Dump.return()).
    void this.dump?.return();
    this.disown();
    const e = emitGuarded(this, 'mirror:', 'close');
    if (e) rethrowLater(e);
  }
}

/** A key being looked up, as if scanned from a message whose address bytes are QUERY_BYTES. */
const QUERY = new RawEntry();
const QUERY_BYTES = Buffer.alloc(32);
