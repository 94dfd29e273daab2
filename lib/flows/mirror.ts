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
import { canonicalAddress } from '../common/address';
import { emitGuarded, rethrowLater } from '../common/callback';
import { TypedEventEmitter } from '../common/emitter';
import { ConntrackError, invalid } from '../common/errors';
import { checkKeys, checkNumber, checkObject, isObject, show } from '../common/validate';
import type { Handle } from '../wire/handle';
import { Settings } from '../stats/settings';
import type { Dump } from '../wire/dump';
import { dumpFlows } from './dump';
import { FlowTable } from './flow-table';
import { FlowEvent, FlowEventStream } from './events';
import type { FlowFilter } from './filter';
import { Flow, newFlow } from './flow';
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

/** Fields an UPDATE event leaves out when they did not change: kept from the previous copy. */
const CARRIED: (keyof Flow)[] = [
  'state', 'tcp', 'sctp', 'dccp', 'counters', 'timestamp', 'labels', 'helper', 'secctx',
  'secmark', 'seqAdj', 'synproxy', 'master',
];

// The kernel keeps an original tuple unique per zone, and per direction-zone when the entry
// has one (CTA_TUPLE_ZONE, decoded into orig.zone): both are part of the key.
function keyOf(protonum: number, o: { src: string; dst: string; sport?: number; dport?: number; icmp?: Partial<IcmpTuple>; zone?: number }, zone: number): string {
  const z = `${zone}|${o.zone ?? ''}`;
  if (o.icmp) return `${protonum}|${o.src}|${o.dst}|i${o.icmp.type ?? 0}|${o.icmp.code ?? 0}|${o.icmp.id ?? 0}|${z}`;
  return `${protonum}|${o.src}|${o.dst}|${o.sport ?? ''}|${o.dport ?? ''}|${z}`;
}

function flowKey(f: Flow): string {
  return keyOf(typeof f.proto === 'number' ? f.proto : protoNumber(f.proto, 'proto'), f.orig, f.zone);
}

function changed(a: Flow, b: Flow): boolean {
  return a.id !== b.id || a.statusBits !== b.statusBits || a.mark !== b.mark || a.state !== b.state;
}

/**
 * The mirror. Iterating yields the current flows; events: 'add' (flow), 'update' (flow,
 * previous), 'delete' (flow, previous), 'resync' (ResyncInfo), 'error' (err), 'close'.
 * 'update' and 'delete' pass the copy the mirror held before as `previous`; for a
 * DESTROY event `flow` is that copy merged with what the event carried (its final
 * counters and timestamps), while a delete found by a reconciling dump passes the held
 * copy as both. No 'add' events are emitted for the initial contents: read them once
 * `ready` resolves.
 */
export class Mirror extends TypedEventEmitter<MirrorEvents> implements Iterable<Flow> {
  /** Resolves when the first dump has been applied; rejects if it failed. */
  readonly ready: Promise<void>;
  private table = new FlowTable(flowKey);
  /** During a resync: the entries the dump has not confirmed yet (see runSync). */
  private unseen: FlowTable | undefined;
  private byId = new Map<number, Flow | Flow[]>();
  private readonly stream: FlowEventStream;
  private pending: FlowEvent[] | undefined;
  private syncing = false;
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
  private dump: Dump<Flow> | undefined;
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
    this.stream.on('event', (ev: FlowEvent) => {
      if (this.pending === undefined) this.apply(this.table, this.byId, ev, true);
      else if (!this.again) {
        this.pending.push(ev);
        // More events than entries while one dump runs: cheaper to dump again than to hold them.
        if (this.pending.length > Math.max(MAX_PENDING, this.size)) this.requestResync();
      }
    });
    this.stream.on('lost', () => this.requestResync());
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
    return this.table.size + (this.unseen?.size ?? 0);
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
   * zone? }`, or a Flow).
   */
  get(key: number | TupleKey | Flow): Flow | undefined {
    if (typeof key === 'number') {
      const v = this.byId.get(key >>> 0);
      return Array.isArray(v) ? v[0] : v;
    }
    if ((key as Flow).orig !== undefined) {
      const f = key as Flow;
      const hit = this.lookup(flowKey(f));
      return hit !== undefined && (f.id === undefined || f.id === 0 || hit.id === f.id) ? hit : undefined;
    }
    const k = this.tupleKey(key as TupleKey);
    return k === undefined ? undefined : this.lookup(k);
  }

  private lookup(k: string): Flow | undefined {
    return this.table.get(k) ?? this.unseen?.get(k);
  }

  /** Every entry with kernel id `id` (usually one). */
  getAllById(id: number): Flow[] {
    const v = this.byId.get(id >>> 0);
    return v === undefined ? [] : Array.isArray(v) ? [...v] : [v];
  }

  has(key: number | TupleKey | Flow): boolean {
    return this.get(key) !== undefined;
  }

  values(): IterableIterator<Flow> {
    return this.unseen === undefined ? this.table.values() : this.both(this.table, this.unseen);
  }

  [Symbol.iterator](): IterableIterator<Flow> {
    return this.values();
  }

  private *both(a: FlowTable, b: FlowTable): IterableIterator<Flow> {
    yield* a.values();
    yield* b.values();
  }

  private tupleKey(t: TupleKey): string | undefined {
    if (!isObject(t)) throw invalid('key', 'must be an id, a Flow or { proto, src, dst, sport, dport }');
    const protonum = protoNumber(t.proto, 'key.proto');
    const src = canonicalAddress(t.src);
    const dst = canonicalAddress(t.dst);
    if (src === undefined) throw invalid('key.src', `not an IP address: ${show(t.src)}`);
    if (dst === undefined) throw invalid('key.dst', `not an IP address: ${show(t.dst)}`);
    return keyOf(protonum, { src, dst, sport: t.sport, dport: t.dport, icmp: t.icmp }, t.zone ?? 0);
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
      if (this.pending) this.pending.length = 0;
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
   * Dumps and reconciles in place, holding one copy of the table: the current entries move
   * to `unseen`, each dumped entry replaces its old copy in `table` as it arrives (emitting
   * 'add' / 'update' for differences), and what is left in `unseen` afterwards is gone.
   * Every entry is in exactly one of the two maps, so lookups see the whole table meanwhile.
   * Events that arrive during the dump are applied after it, in order.
   */
  private async runSync(reason: ResyncInfo['reason']): Promise<ResyncInfo | undefined> {
    this.syncing = true;
    const started = Date.now();
    this.pending = [];
    const emit = reason !== 'initial';
    const unseen = this.table;
    const table = new FlowTable(flowKey);
    this.table = table;
    this.unseen = unseen;
    const byId = this.byId;
    let added = 0;
    let updated = 0;
    let removed = 0;
    const restore = (): void => {
      for (const f of unseen.values()) {
        const k = flowKey(f);
        if (!table.has(k)) table.set(k, f);
      }
      this.unseen = undefined;
      this.pending = undefined;
      this.syncing = false;
    };
    try {
      const dump = dumpFlows(this.ct, this.filter, {});
      this.dump = dump;
      if (this.unrefed) dump.unref();
      for await (const f of dump) {
        if (this.closed) break;
        const k = flowKey(f);
        let prev = unseen.get(k);
        if (prev !== undefined) unseen.delete(k);
        else prev = table.get(k); // the same tuple twice: an entry replaced during the dump
        if (prev !== undefined && !changed(prev, f)) {
          // Unchanged (id, status, mark, state): keep the copy held, so a resync allocates
          // only for what changed (the old objects would otherwise be garbage in the old
          // generation, doubling the heap until a full collection), with the fields that
          // move on their own (timeout, counters, use, timestamps) taken from the dump.
          refreshVolatile(prev, f);
          table.set(k, prev);
          continue;
        }
        if (prev !== undefined) this.unindex(byId, prev);
        table.set(k, f);
        index(byId, f);
        if (!emit) continue;
        if (prev === undefined) {
          added++;
          this.emitUser('add', f);
        } else {
          updated++;
          this.emitUser('update', f, prev);
        }
      }
    } catch (err) {
      this.dump = undefined;
      restore();
      if (this.closed) return undefined;
      this.fail(err as ConntrackError);
      throw err;
    }
    this.dump = undefined;
    if (this.closed) {
      restore();
      return undefined;
    }
    this.unseen = undefined;
    for (const f of unseen.values()) {
      this.unindex(byId, f);
      if (emit) {
        removed++;
        this.emitUser('delete', f, f);
      }
    }
    unseen.clear();
    const replay = this.pending;
    this.pending = undefined;
    for (const ev of replay) this.apply(table, byId, ev, emit);
    if (reason === 'lost') this.resyncs++;
    else if (reason === 'refresh') this.refreshes++;
    this.syncing = false;
    const info: ResyncInfo = {
      reason, lost: this.stream.lost, added, updated, removed, size: table.size, replayed: replay.length,
      durationMs: Date.now() - started,
    };
    this.emitUser('resync', info);
    if (this.again && !this.closed) {
      this.again = false;
      this.requestResync();
    }
    return info;
  }

  private put(table: FlowTable, byId: Map<number, Flow | Flow[]>, k: string, f: Flow): Flow | undefined {
    const prev = table.get(k);
    if (prev !== undefined) this.unindex(byId, prev);
    table.set(k, f);
    index(byId, f);
    return prev;
  }

  private unindex(byId: Map<number, Flow | Flow[]>, f: Flow): void {
    const cur = byId.get(f.id);
    if (cur === f) byId.delete(f.id);
    else if (Array.isArray(cur)) {
      const rest = cur.filter((x) => x !== f);
      if (rest.length === 0) byId.delete(f.id);
      else byId.set(f.id, rest.length === 1 ? rest[0] : rest);
    }
  }

  private apply(table: FlowTable, byId: Map<number, Flow | Flow[]>, ev: FlowEvent, emit: boolean): void {
    const f = ev.flow;
    const k = flowKey(f);
    const prev = table.get(k);
    if (ev.type === 'destroy') {
      // A DESTROY for an older entry with the same tuple (different id) changes nothing.
      if (prev === undefined || prev.id !== f.id) return;
      table.delete(k);
      this.unindex(byId, prev);
      if (emit) {
        const gone = merge(prev, f);
        gone.status = prev.status;
        gone.statusBits = prev.statusBits;
        gone.timeout = 0;
        this.emitUser('delete', gone, prev);
      }
      return;
    }
    const next = prev !== undefined && prev.id === f.id ? merge(prev, f) : f;
    this.put(table, byId, k, next);
    if (!emit) return;
    if (prev === undefined) this.emitUser('add', next);
    else if (prev.id !== f.id) {
      this.emitUser('delete', prev, prev);
      this.emitUser('add', next);
    } else this.emitUser('update', next, prev);
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
    this.disown();
    const e = emitGuarded(this, 'mirror:', 'close');
    if (e) rethrowLater(e);
  }
}

function index(byId: Map<number, Flow | Flow[]>, f: Flow): void {
  const cur = byId.get(f.id);
  if (cur === undefined) byId.set(f.id, f);
  else if (Array.isArray(cur)) cur.push(f);
  else byId.set(f.id, [cur, f]);
}

/**
 * Copies into `held` the fields of `dumped` (the same entry, id, status, mark and state
 * unchanged) that change without an event: the remaining timeout, the use count, counters
 * and timestamps. Values already equal are left alone, so an idle entry is not written.
 */
function refreshVolatile(held: Flow, dumped: Flow): void {
  if (held.timeout !== dumped.timeout) held.timeout = dumped.timeout;
  if (held.use !== dumped.use) held.use = dumped.use;
  const c = dumped.counters;
  if (c !== undefined) {
    const h = held.counters;
    if (h === undefined) held.counters = c;
    else {
      if (h.orig.packets !== c.orig.packets || h.orig.bytes !== c.orig.bytes) h.orig = c.orig;
      if (h.reply.packets !== c.reply.packets || h.reply.bytes !== c.reply.bytes) h.reply = c.reply;
    }
  }
  const t = dumped.timestamp;
  if (t !== undefined && (held.timestamp === undefined || held.timestamp.start !== t.start || held.timestamp.stop !== t.stop)) held.timestamp = t;
}

/** The newer description of an entry, with fields the event left out taken from the older. */
function merge(prev: Flow, next: Flow): Flow {
  const out = newFlow(next);
  for (const key of CARRIED) {
    if (out[key] === undefined && prev[key] !== undefined) (out as unknown as Record<string, unknown>)[key] = prev[key];
  }
  if (out.use === 0) out.use = prev.use;
  return out;
}
