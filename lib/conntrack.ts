/**
 * The Conntrack handle: one netlink socket for requests (plus one per running dump or
 * event stream), opened in the caller's network namespace or another one.
 */
import { existsSync } from 'fs';
import { Expectations } from './expect'; // <expectations/>
import * as entries from './entries'; // <entries/>
import { EventsOptions, FlowEventStream } from './event'; // <events/>
import { Mirror, MirrorOptions } from './mirror'; // <events/>
import { ConntrackStats, fetchStats } from './stats'; // <stats/>
import { Settings } from './sysctl'; // <stats/>
import { PressureMonitor, PressureOptions } from './pressure'; // <stats/>
import { ConntrackError, invalid } from './errors';
import { IPCTNL_MSG_CT_GET, NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE } from './enums';
import { Dump, DumpOptions, DumpSpec } from './dump';
import { CompiledFilter, FlowFilter, compileFilter } from './filter';
import { Flow, decodeFlow, isFlowFamily } from './flow';
import { NfSocket, ReplyHandler } from './socket';

export interface OpenOptions {
  /**
   * The network namespace whose table to use: a path (`/proc/PID/ns/net`, a bind mount
   * such as `/var/run/netns/NAME`), a name under /var/run/netns, or a pid. Default: the
   * caller's own namespace.
   */
  netns?: string | number;
  /** Receive buffer for the request socket in bytes (larger allows more requests in flight). */
  receiveBufferSize?: number;
}

/** Resolves OpenOptions.netns to a namespace file path. */
export function resolveNetns(netns: string | number | undefined): string | undefined {
  if (netns === undefined) return undefined;
  if (typeof netns === 'number') {
    if (!Number.isInteger(netns) || netns <= 0) throw invalid('netns', `a pid must be a positive integer, got ${netns}`);
    return `/proc/${netns}/ns/net`;
  }
  if (typeof netns !== 'string' || netns === '') throw invalid('netns', 'must be a path, a name under /var/run/netns, or a pid');
  if (netns.includes('/')) return netns;
  if (/^\d+$/.test(netns)) return `/proc/${netns}/ns/net`;
  const named = `/var/run/netns/${netns}`;
  if (!existsSync(named)) throw invalid('netns', `no namespace named ${JSON.stringify(netns)} under /var/run/netns (create it with \`ip netns add ${netns}\`, or pass a path or pid)`);
  return named;
}

const CT_TYPE = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

/** FNV-1a over the strings that name a flow's original direction. */
export function flowSignature(f: Flow): number {
  const o = f.orig;
  const s = `${o.src}|${o.dst}|${o.sport ?? o.icmp?.id}|${o.dport ?? o.icmp?.type}|${f.proto}|${f.zone}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * One request's reply collector. A class with prototype methods rather than closures:
 * bulk operations keep thousands of these alive at once.
 */
class PendingRequest implements ReplyHandler {
  replies: Buffer[] | undefined = undefined;
  resolve!: (replies: Buffer[]) => void;
  reject!: (err: unknown) => void;

  constructor(readonly operation: string) {}

  message(buf: Buffer, off: number, len: number): void {
    (this.replies ??= []).push(Buffer.from(buf.subarray(off, off + len)));
  }

  done(err?: ConntrackError): void {
    if (err) this.reject(err);
    else this.resolve(this.replies ?? []);
  }
}

/** Collects nothing: for requests that only expect an ack. */
class AckRequest implements ReplyHandler {
  resolve!: () => void;
  reject!: (err: unknown) => void;

  constructor(readonly operation: string) {}

  message(): void {
    /* an ack-only request has no data messages; anything else is ignored */
  }

  done(err?: ConntrackError): void {
    if (err) this.reject(err);
    else this.resolve();
  }
}

export class Conntrack {
  /** @internal */ readonly sock: NfSocket;
  /** @internal */ readonly netnsPath: string | undefined;
  private readonly dumps = new Set<NfSocket>();
  /** @internal Extra sockets (event streams, ...) closed with this handle. */
  readonly extraSockets = new Set<{ close(): void }>();
  private closed = false;

  private constructor(sock: NfSocket, netnsPath: string | undefined) {
    this.sock = sock;
    this.netnsPath = netnsPath;
  }

  /** Opens a handle. Rejects with EPERM (and how to fix it) without CAP_NET_ADMIN. */
  static async open(options: OpenOptions = {}): Promise<Conntrack> {
    if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object');
    const netnsPath = resolveNetns(options.netns);
    const sock = new NfSocket({ netns: netnsPath, receiveBufferSize: options.receiveBufferSize ?? 4 << 20, asyncSend: true });
    const ct = new Conntrack(sock, netnsPath);
    // A stats request is the cheapest way to learn now whether we may talk to ctnetlink.
    try {
      await ct.request(CT_TYPE(5 /* IPCTNL_MSG_CT_GET_STATS */), 0, 0, undefined, 'opening ctnetlink');
    } catch (err) {
      sock.close();
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
   * their bytes) once the kernel acks it.
   */
  request(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string): Promise<Buffer[]> {
    const h = new PendingRequest(operation);
    const p = new Promise<Buffer[]>((resolve, reject) => {
      h.resolve = resolve;
      h.reject = reject;
    });
    this.sock.request(type, flags | 1 /* NLM_F_REQUEST */, family, payload, h);
    return p;
  }

  /**
   * @internal A request answered by an ack alone (create, update, delete, flush): resolves
   * with nothing, and costs less than request() on the hot path of bulk operations.
   */
  requestAck(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string): Promise<void> {
    const h = new AckRequest(operation);
    const p = new Promise<void>((resolve, reject) => {
      h.resolve = resolve;
      h.reject = reject;
    });
    this.sock.request(type, flags | 1 /* NLM_F_REQUEST */, family, payload, h);
    return p;
  }

  /** @internal Starts a dump on its own socket. */
  startDump<T>(spec: Omit<DumpSpec<T>, 'netns' | 'onSocket' | 'onRelease'>, options?: DumpOptions): Dump<T> {
    this.assertOpen(spec.operation);
    return new Dump<T>(
      {
        ...spec,
        netns: this.netnsPath,
        onSocket: (s) => this.dumps.add(s),
        onRelease: (s) => this.dumps.delete(s),
      },
      options,
    );
  }

  /**
   * Streams the table. Memory stays bounded: reading pauses while the consumer is behind.
   * Filtering uses the kernel's own filters where it has them and the library for the
   * rest; entries the kernel repeats during a racing dump appear once.
   */
  dump(filter?: FlowFilter, options: DumpOptions = {}): Dump<Flow> {
    const compiled = compileFilter(filter);
    return this.startDump<Flow>(this.flowDumpSpec(compiled, IPCTNL_MSG_CT_GET, 'dump'), options);
  }

  /** @internal */
  flowDumpSpec(compiled: CompiledFilter, msg: number, operation: string) {
    return {
      type: CT_TYPE(msg),
      family: compiled.nfFamily,
      payload: compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined,
      operation,
      decode: (buf: Buffer, off: number, len: number, msgType: number): Flow | undefined => {
        const m = msgType & 0xff;
        if (msgType >> 8 !== NFNL_SUBSYS_CTNETLINK || (m !== IPCTNL_MSG_CT_NEW && m !== IPCTNL_MSG_CT_DELETE)) return undefined;
        if (!isFlowFamily(buf[off + 16])) return undefined;
        return decodeFlow(buf, off, len);
      },
      // Applied even when the kernel filtered too: an older kernel that ignores CTA_FILTER
      // must not change the result. It costs a few comparisons per flow.
      match: compiled.empty ? undefined : compiled.match,
      idOf: (f: Flow) => f.id,
      signatureOf: flowSignature,
    };
  }

  /** The whole table (or the filtered part) as an array. */
  list(filter?: FlowFilter, options: DumpOptions = {}): Promise<Flow[]> {
    try {
      return this.dump(filter, options).toArray();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  // <entries> (issue 3: get, create, update, delete, flush, deleteMatching)
  /**
   * The entry named by `key` (its original tuple, or with `{ direction: 'reply' }` its reply
   * tuple, within `key.zone`). A Flow from list() can be passed back: with its `id`, an
   * entry re-created meanwhile is not returned. Rejects with code ENOENT when absent.
   */
  get(key: entries.EntryKey, options?: entries.GetOptions): Promise<Flow> {
    return entries.getEntry(this, key, options);
  }

  /**
   * Creates an entry. The family comes from the addresses; `reply` defaults to the inverse
   * of `orig` (adjusted by the kernel for `nat`). Rejects with EEXIST for a duplicate.
   */
  create(spec: entries.CreateSpec): Promise<void> {
    return entries.createEntry(this, spec);
  }

  /**
   * Changes mark (optionally under a mask), timeout, settable status flags, labels or
   * state of the entry named by `spec` (tuple, zone and, when given, id).
   */
  update(spec: entries.UpdateSpec): Promise<void> {
    return entries.updateEntry(this, spec);
  }

  /** Deletes the entry named by a tuple, or by a Flow (tuple plus id). ENOENT when absent. */
  delete(key: entries.EntryKey): Promise<void> {
    return entries.deleteEntry(this, key);
  }

  /**
   * Creates many entries in one call: every spec is validated first (a bad one refuses the
   * whole call, naming `items[i].field`, before anything is sent), then they stream to the
   * kernel pipelined, without a promise per entry. Resolves with how many the kernel
   * accepted and the refusals (e.g. EEXIST) by index. Specs take no `labels` here.
   */
  createMany(specs: Iterable<entries.CreateSpec>): Promise<entries.BulkResult> {
    return entries.createMany(this, specs);
  }

  /**
   * Deletes many entries named by tuple (or Flows, tuple plus id) in one call, like
   * createMany(). Entries already gone are reported as ENOENT in `errors`.
   */
  deleteMany(keys: Iterable<entries.EntryKey>): Promise<entries.BulkResult> {
    return entries.deleteMany(this, keys);
  }

  /**
   * Deletes every entry, or those matching `filter`. The kernel flushes by itself when the
   * filter is only a mark; other filters use deleteMatching(), which checks each entry.
   */
  flush(filter?: FlowFilter, options?: entries.DeleteMatchingOptions): Promise<void> {
    return entries.flushEntries(this, filter, options);
  }

  /**
   * Deletes the entries that match `filter` (and `predicate`, when given): a filtered dump
   * with pipelined deletes by tuple and id. Resolves with the number removed; entries that
   * vanish by themselves meanwhile are not errors and not counted.
   */
  deleteMatching(filter?: FlowFilter, predicate?: (flow: Flow) => boolean, options?: entries.DeleteMatchingOptions): Promise<number> {
    return entries.deleteMatchingEntries(this, filter, predicate, options);
  }
  // </entries>

  // <events> (issue 4: events, mirror)
  /**
   * Subscribes to conntrack events (NEW / UPDATE / DESTROY) on a socket of its own in this
   * handle's namespace. The result is an AsyncIterable of FlowEvent, an EventEmitter
   * ('event', 'lost', 'error', 'close') and, through `.readable()`, a Node Readable.
   * Throws ERR_INVALID_ARGUMENT (nothing subscribed) on bad options.
   */
  events(options?: EventsOptions): FlowEventStream {
    this.assertOpen('events');
    const stream = new FlowEventStream({ netns: this.netnsPath, onClose: (s) => this.extraSockets.delete(s) }, options);
    if (!stream.isClosed) this.extraSockets.add(stream);
    return stream;
  }

  /**
   * A live in-memory copy of the table (or of the entries matching `options.filter`):
   * subscribes to events, dumps, then applies the events in order; resynchronises by itself
   * after the kernel drops events. Await `mirror.ready` before reading it.
   */
  mirror(options?: MirrorOptions): Mirror {
    this.assertOpen('mirror');
    const m = new Mirror(this, options);
    this.extraSockets.add(m);
    m.once('close', () => this.extraSockets.delete(m));
    return m;
  }
  // </events>

  // <expectations> (issue 5)
  private expectationsTable: Expectations | undefined;
  /** The expectation table: list / dump / get / create / delete / flush / events / stats. */
  get expectations(): Expectations {
    return (this.expectationsTable ??= new Expectations(this));
  }
  // </expectations>

  // <stats> (issue 6: stats, settings, pressure)
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
    this.statsSettings ??= new Settings(this.netnsPath);
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
  // </stats>

  /** Closes every socket of this handle; pending requests reject with ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
    for (const d of this.dumps) d.close();
    this.dumps.clear();
    for (const s of [...this.extraSockets]) s.close();
    this.extraSockets.clear();
  }
}
