/**
 * The Conntrack handle: one netlink socket for requests (plus one per running dump or
 * event stream), opened in the caller's network namespace or another one. It composes the
 * concept modules, which reach it only through the narrow Handle interface.
 */
import { checkInt, checkKeys } from './common/validate';
import { ChildRegistry, type Child } from './common/children';
import { ConntrackError, invalid } from './common/errors';
import { checkObject } from './common/validate';
import { Netns, type NetnsOption } from './common/netns';
import { Dump, DumpOptions, DumpSpec } from './wire/dump';
import { IPCTNL_MSG_CT_GET_STATS, NLM_F_DUMP, NLM_F_REQUEST } from './wire/enums';
import type { ExplainError, Handle, Subscription } from './wire/handle';
import { type AttrWriter, ctType } from './wire/netlink';
import { NfSocket, ReplyHandler } from './wire/socket';
import { openSubscription } from './wire/subscription';
import type {
  BulkResult, CreateSpec, DeleteMatchingOptions, EntryKey, GetOptions, UpdateChanges, UpdateMatchingOptions, UpdateSpec,
} from './flows/entry-types';
import { createEntry, deleteEntry, getEntry, updateEntry, upsertEntry } from './flows/entries';
import { createMany, deleteMany, upsertMany } from './flows/bulk';
import { deleteMatchingEntries, flushEntries } from './flows/delete-matching';
import { updateMatchingEntries } from './flows/update-matching';
import { FlowDumpOptions, dumpFlows, listFlows } from './flows/dump';
import { EventsOptions, FlowEventStream } from './flows/events';
import type { FlowFilter } from './flows/filter';
import type { Flow } from './flows/flow';
import { Mirror, MirrorOptions } from './flows/mirror';
import { Expectations } from './expect/expectations';
import { ConntrackStats, fetchStats } from './stats/counters';
import { Settings } from './stats/settings';
import { PressureMonitor, PressureOptions } from './stats/pressure';

/** How long close() waits for the kernel to answer requests already sent (ms). */
export const CLOSE_WAIT_MS = 5000;

const OPEN_KEYS = new Set(['netns', 'receiveBufferSize']);
/** Receive buffer sizes open() takes: the kernel's minimum is about 2 KiB; setsockopt() takes an int and doubles it. */
const MIN_RECEIVE_BUFFER = 4096;
const MAX_RECEIVE_BUFFER = 1 << 30;

export interface OpenOptions {
  /**
   * The network namespace whose table to use: a name under /var/run/netns (`ip netns
   * add NAME`), a path (`/proc/PID/ns/net`, a bind mount such as `/var/run/netns/NAME`), a
   * pid, or an open descriptor of a namespace file as `{ fd }`. The file is opened once
   * here and kept open until close(), so every socket of the handle works in the same
   * namespace even if the pid is reused or the name deleted meanwhile; the caller may
   * close its own descriptor once open() resolves. Sockets are made on a native helper
   * thread that joins the namespace: the JavaScript thread never changes namespace.
   * Joining needs CAP_SYS_ADMIN in the user namespace that owns the network namespace.
   * Default: the caller's own namespace.
   */
  netns?: NetnsOption;
  /** Receive buffer for the request socket in bytes (larger allows more requests in flight). */
  receiveBufferSize?: number;
}

/**
 * One request's reply collector. A class with prototype methods rather than closures:
 * bulk operations keep thousands of these alive at once.
 */
class PendingRequest implements ReplyHandler {
  replies: Buffer[] | undefined = undefined;
  resolve!: (replies: Buffer[]) => void;
  reject!: (err: unknown) => void;

  /** Called first when the request finishes (a dump hands the socket to the next one). */
  finished: (() => void) | undefined = undefined;

  constructor(readonly operation: string) {}

  message(buf: Buffer, off: number, len: number): void {
    (this.replies ??= []).push(Buffer.from(buf.subarray(off, off + len)));
  }

  done(err?: ConntrackError): void {
    this.finished?.();
    if (err) this.reject(err);
    else this.resolve(this.replies ?? []);
  }
}

/** A dump request waiting for the request socket (see Conntrack.request). */
interface WaitingDump {
  type: number;
  flags: number;
  family: number;
  payload: Buffer | undefined;
  handler: PendingRequest;
}

/** Collects nothing: for requests that only expect an ack. */
class AckRequest implements ReplyHandler {
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor(readonly operation: string, private readonly ct?: Handle, private readonly explain?: ExplainError) {}

  get ackOnly(): boolean {
    return true;
  }

  message(): void {
    /* an ack-only request has no data messages; anything else is ignored */
  }

  done(err?: ConntrackError): void {
    if (!err) this.resolve();
    // The explainer may send requests of its own: never from inside the socket's send or
    // receive loop that is settling this one.
    else if (this.explain) Promise.resolve().then(() => this.explain!(this.ct!, err, this.operation)).then(this.reject, this.reject);
    else this.reject(err);
  }
}

/**
 * A handle on one namespace's conntrack table. It is the Handle (lib/wire/handle.ts) the
 * concept modules receive; each call passing `this` checks that it still fits.
 */
export class Conntrack {
  /** @internal The request socket. */ readonly sock: NfSocket;
  /**
   * The namespace as named at open(): its file path (a name is /var/run/netns/NAME, a pid
   * /proc/PID/ns/net) or `fd N`; undefined for the caller's own.
   */
  readonly netns: string | undefined;
  /** @internal The namespace file, open until close(). */
  readonly netnsFile: Netns | undefined;
  /** @internal Dumps, event streams, mirrors and monitors, closed with this handle. */
  readonly children = new ChildRegistry();
  private closed = false;
  /** True while a dump request (NLM_F_DUMP) is in flight on the request socket. */
  private dumping = false;
  /** Dump requests waiting for the one in flight, in order. */
  private readonly waitingDumps: WaitingDump[] = [];

  private constructor(sock: NfSocket, netnsFile: Netns | undefined) {
    this.sock = sock;
    this.netnsFile = netnsFile;
    this.netns = netnsFile?.label;
  }

  /**
   * Opens a handle. Rejects with EPERM (and how to fix it) without CAP_NET_ADMIN, and
   * with the errno of the namespace (naming it) when it cannot be opened or joined.
   */
  static async open(options: OpenOptions = {}): Promise<Conntrack> {
    checkObject(options, 'options', "{ netns: '/proc/1234/ns/net' }");
    checkKeys(options as Record<string, unknown>, OPEN_KEYS, 'options', 'open()');
    const receiveBufferSize = options.receiveBufferSize === undefined
      ? 4 << 20
      : checkInt(options.receiveBufferSize, MIN_RECEIVE_BUFFER, MAX_RECEIVE_BUFFER, 'options.receiveBufferSize', 'a receive buffer size in bytes');
    const netnsFile = options.netns === undefined ? undefined : Netns.open(options.netns);
    let sock: NfSocket;
    try {
      sock = await NfSocket.open({ netns: netnsFile, receiveBufferSize, asyncSend: true });
    } catch (err) {
      netnsFile?.close();
      throw err;
    }
    const ct = new Conntrack(sock, netnsFile);
    // A stats request is the cheapest way to learn now whether we may talk to ctnetlink.
    try {
      await ct.request(ctType(IPCTNL_MSG_CT_GET_STATS), 0, 0, undefined, 'opening ctnetlink');
    } catch (err) {
      sock.close();
      netnsFile?.close();
      throw err;
    }
    return ct;
  }

  /** True once close() was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal Throws ERR_CLOSED after close(). */
  assertOpen(operation: string): void {
    if (this.closed) throw new ConntrackError('ERR_CLOSED', `${operation}: this Conntrack is closed`);
  }

  /**
   * @internal One request; resolves with the data messages of the reply (as copies of
   * their bytes) once the kernel acks it. A netlink socket runs one dump at a time (the
   * kernel refuses a second NLM_F_DUMP request with EBUSY until the first one's
   * NLMSG_DONE), so dump requests (per-CPU statistics, say) wait for each other here,
   * in order; other requests go out beside them.
   */
  request(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string): Promise<Buffer[]> {
    const h = new PendingRequest(operation);
    const p = new Promise<Buffer[]>((resolve, reject) => {
      h.resolve = resolve;
      h.reject = reject;
    });
    if ((flags & NLM_F_DUMP) !== 0) {
      if (this.dumping) this.waitingDumps.push({ type, flags, family, payload, handler: h });
      else this.sendDump(type, flags, family, payload, h);
      return p;
    }
    this.sock.request(type, flags | NLM_F_REQUEST, family, payload, h);
    return p;
  }

  private sendDump(type: number, flags: number, family: number, payload: Buffer | undefined, h: PendingRequest): void {
    this.dumping = true;
    h.finished = this.nextDump;
    this.sock.request(type, flags | NLM_F_REQUEST, family, payload, h);
  }

  /** The dump in flight finished (the kernel sent NLMSG_DONE or an error): send the next one. */
  private nextDump = (): void => {
    this.dumping = false;
    const next = this.waitingDumps.shift();
    if (next) this.sendDump(next.type, next.flags, next.family, next.payload, next.handler);
  };

  /**
   * @internal A request answered by an ack alone (create, update, delete, flush): resolves
   * with nothing, and costs less than request() on the hot path of bulk operations.
   */
  requestAck(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string, explain?: ExplainError): Promise<void> {
    const h = new AckRequest(operation, explain && this, explain);
    const p = new Promise<void>((resolve, reject) => {
      h.resolve = resolve;
      h.reject = reject;
    });
    this.sock.request(type, flags | NLM_F_REQUEST, family, payload, h);
    return p;
  }

  /** @internal See Handle.requestAckEncoded. */
  requestAckEncoded<T>(type: number, flags: number, encode: (w: AttrWriter, item: T) => number, item: T, operation: string, explain?: ExplainError): Promise<void> {
    const h = new AckRequest(operation, explain && this, explain);
    // The promise first: the socket may settle the request at once (closed, or a failed send).
    const p = new Promise<void>((resolve, reject) => {
      h.resolve = resolve;
      h.reject = reject;
    });
    this.sock.requestEncoded(type, flags | NLM_F_REQUEST, encode, item, h);
    return p;
  }

  /** @internal Many requests of one header in one call (see NfSocket.requestMany). */
  requestMany(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array, handler: ReplyHandler): void {
    this.sock.requestMany(type, flags, family, payloads, ends, handler);
  }

  /**
   * Streams the table. Memory stays bounded: reading pauses while the consumer is behind.
   * Filtering uses the kernel's own filters where it has them and the library for the
   * rest; entries the kernel repeats during a racing dump appear once.
   */
  dump(filter?: FlowFilter, options: FlowDumpOptions = {}): Dump<Flow> {
    return dumpFlows(this, filter, options);
  }

  /** @internal A dump on a socket of its own, closed with this handle. */
  startDump<T>(spec: DumpSpec<T>, options: DumpOptions = {}): Dump<T> {
    this.assertOpen(spec.operation);
    return new Dump<T>(spec, options, this);
  }

  /**
   * The whole table (or the filtered part) as an array. `filter.table` reads the dying or
   * unconfirmed list instead; `options.zeroCounters` zeroes the counters of the listed
   * entries, returning them as they were before (see docs/dump.md).
   *
   * @example
   * const busy = await ct.list({ proto: 'tcp', state: 'ESTABLISHED', nat: 'dst' });
   * const deltas = await ct.list({ mark: 7 }, { zeroCounters: true });
   */
  list(filter?: FlowFilter, options: FlowDumpOptions = {}): Promise<Flow[]> {
    try {
      return listFlows(this, filter, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** @internal An event subscription on a socket of its own in this handle's namespace. */
  subscribe(subscription: Subscription): NfSocket {
    this.assertOpen(subscription.operation);
    return openSubscription(this.netnsFile, subscription);
  }

  /** @internal Registers a child that closes with this handle. */
  adopt(child: Child): () => void {
    return this.children.adopt(child);
  }

  /**
   * The entry named by `key`: its original tuple, or its reply tuple when the key has only
   * `reply` (or with `{ direction: 'reply' }`), within `key.zone`. A Flow from list() can be
   * passed back: with its `id`, an entry re-created meanwhile is not returned. Rejects with
   * code ENOENT when absent. `{ zeroCounters: true }` reads and zeroes its counters.
   */
  get(key: EntryKey, options?: GetOptions): Promise<Flow> {
    return getEntry(this, key, options);
  }

  /**
   * Creates an entry. The family comes from the addresses; `reply` defaults to the inverse
   * of `orig` (adjusted by the kernel for `nat`). Rejects with EEXIST for a duplicate.
   */
  create(spec: CreateSpec): Promise<void> {
    return createEntry(this, spec);
  }

  /**
   * Changes mark (optionally under a mask), timeout, settable status flags, labels or
   * state of the entry named by `spec` (tuple, zone and, when given, id).
   */
  update(spec: UpdateSpec): Promise<void> {
    return updateEntry(this, spec);
  }

  /**
   * Deletes the entry named by a tuple (`orig`, or `reply` alone), or by a Flow (tuple plus
   * id). ENOENT when absent.
   */
  delete(key: EntryKey): Promise<void> {
    return deleteEntry(this, key);
  }

  /**
   * Creates the entry, or updates it when it exists, in one request (what `conntrack -A`
   * documents). On an existing entry the kernel applies timeout, mark, status (it only sets
   * flags), state, TCP flags and labels, and refuses `nat` (ENOTSUP), a different
   * `helper` (EBUSY) and any timeout once the entry has FIXED_TIMEOUT (EPERM).
   *
   * @example
   * await ct.upsert({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 5000, dport: 53 }, timeout: 60, mark: 1 });
   */
  upsert(spec: CreateSpec): Promise<void> {
    return upsertEntry(this, spec);
  }

  /**
   * upsert() for many specs, validated and pipelined like createMany(): resolves with how
   * many were created or updated and the refusals by index.
   */
  upsertMany(specs: Iterable<CreateSpec>): Promise<BulkResult> {
    return upsertMany(this, specs);
  }

  /**
   * Changes mark (optionally under a mask), labels, timeout and settable status flags of
   * every entry matching `filter` (`conntrack -U`): a filtered dump with pipelined updates,
   * each entry checked here first. Resolves with the number of entries changed; entries
   * that already had the values, and entries that vanished meanwhile, are not counted.
   *
   * @example
   * const n = await ct.updateMatching({ proto: 'tcp', mark: 1 }, { mark: 2 });
   */
  updateMatching(filter: FlowFilter | undefined, changes: UpdateChanges, options?: UpdateMatchingOptions): Promise<number> {
    return updateMatchingEntries(this, filter, changes, options);
  }

  /**
   * Creates many entries in one call: every spec is validated first (a bad one refuses the
   * whole call, naming `items[i].field`, before anything is sent), then they stream to the
   * kernel pipelined, without a promise per entry. Resolves with how many the kernel
   * accepted and the refusals (e.g. EEXIST) by index. Specs take no `labels` here.
   */
  createMany(specs: Iterable<CreateSpec>): Promise<BulkResult> {
    return createMany(this, specs);
  }

  /**
   * Deletes many entries named by tuple (or Flows, tuple plus id) in one call, like
   * createMany(). Entries already gone are reported as ENOENT in `errors`.
   */
  deleteMany(keys: Iterable<EntryKey>): Promise<BulkResult> {
    return deleteMany(this, keys);
  }

  /**
   * Deletes every entry, or those matching `filter`. The kernel flushes by itself when the
   * filter is only a mark; other filters use deleteMatching(), which checks each entry.
   */
  flush(filter?: FlowFilter, options?: DeleteMatchingOptions): Promise<void> {
    return flushEntries(this, filter, options);
  }

  /**
   * Deletes the entries that match `filter` (and `predicate`, when given): a filtered dump
   * with pipelined deletes by tuple and id. Resolves with the number removed; entries that
   * vanish by themselves meanwhile are not errors and not counted.
   */
  deleteMatching(filter?: FlowFilter, predicate?: (flow: Flow) => boolean, options?: DeleteMatchingOptions): Promise<number> {
    return deleteMatchingEntries(this, filter, predicate, options);
  }

  /**
   * Subscribes to conntrack events (NEW / UPDATE / DESTROY) on a socket of its own in this
   * handle's namespace. The result is an AsyncIterable of FlowEvent, an EventEmitter
   * ('event', 'lost', 'error', 'close') and, through `.readable()`, a Node Readable.
   * Throws ERR_INVALID_ARGUMENT (nothing subscribed) on bad options.
   */
  events(options?: EventsOptions): FlowEventStream {
    this.assertOpen('events');
    return new FlowEventStream(this, options);
  }

  /**
   * A live in-memory copy of the table (or of the entries matching `options.filter`):
   * subscribes to events, dumps, then applies the events in order; resynchronises by itself
   * after the kernel drops events. Await `mirror.ready` before reading it.
   */
  mirror(options?: MirrorOptions): Mirror {
    this.assertOpen('mirror');
    return new Mirror(this, options);
  }

  private expectationsTable: Expectations | undefined;
  /** The expectation table: list / dump / get / create / delete / flush / events / stats. */
  get expectations(): Expectations {
    return (this.expectationsTable ??= new Expectations(this));
  }

  /**
   * The kernel's conntrack statistics for this handle's namespace: per-CPU counters
   * (IPCTNL_MSG_CT_GET_STATS_CPU), their sums, the entry count and the table limit.
   *
   * @example
   * const { count, max, total } = await ct.stats();
   * if (total.drop > 0) console.warn(`${total.drop} flows dropped; table ${count}/${max}`);
   */
  stats(): Promise<ConntrackStats> {
    try {
      return fetchStats(this);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private statsSettings: Settings | undefined;
  /**
   * The nf_conntrack sysctls of this handle's namespace: `get()` and `set()` (all or
   * nothing; `max`, `buckets` and `expectMax` are global, changed only from the initial
   * namespace).
   */
  get settings(): Settings {
    this.statsSettings ??= new Settings(this.netnsFile, (op) => this.assertOpen(op));
    return this.statsSettings;
  }

  /**
   * Watches the table fill up: samples count, max and the drop counters every
   * `interval` ms, emits `warning` when the fill passes `warnAt` or drops begin.
   * Close it (or abort its signal, or close this handle) when done.
   *
   * @example
   * const mon = ct.pressure({ interval: 5000, warnAt: 0.8 });
   * mon.on('warning', (w) => log.warn(w.message));
   */
  pressure(options: PressureOptions = {}): PressureMonitor {
    return new PressureMonitor(this, options);
  }

  /**
   * Closes every socket of this handle. Dumps and event streams end at once. Requests not
   * yet sent reject with ERR_CLOSED; requests already sent get the kernel's answer (close()
   * waits for it, at most CLOSE_WAIT_MS), or, past that, ERR_OUTCOME_UNKNOWN: the kernel
   * may or may not have carried them out.
   */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.children.closeAll();
    }
    await this.sock.closeAfterInFlight(CLOSE_WAIT_MS);
    this.netnsFile?.close();
  }
}
