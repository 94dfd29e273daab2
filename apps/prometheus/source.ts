/**
 * What one registerMetrics() call reads: a Conntrack handle and the mirror whose contents
 * are counted. Events are counted by type from the mirror's own event socket (its stats);
 * only without a mirror does the source open an event stream of its own to count them.
 *
 * Flow counts per (family, proto, state) are kept up to date from the mirror's
 * 'add' / 'update' / 'delete' events, so a scrape never walks the table. After every
 * resync or refresh of the mirror (the mirror has just swapped in a fresh dump) they are
 * recounted from the table once. The kernel's counters (statistics, expectations) are
 * asked for at scrape time with small netlink requests that never dump the flow table;
 * one fetch serves every metric of a scrape.
 */
import type { Conntrack, ConntrackStats, ExpectationCpuStats, Flow, FlowEventStream, Mirror, ResyncInfo } from '../../lib';

/** One (family, proto, state) group of flows. */
export interface FlowGroup {
  family: string;
  proto: string;
  /** TCP/SCTP/DCCP state name; '' for protocols without one. */
  state: string;
  flows: number;
}

/** Bytes and packets of one (family, proto) group, per direction. */
export interface ByteGroup {
  family: string;
  proto: string;
  origBytes: number;
  replyBytes: number;
  origPackets: number;
  replyPackets: number;
}

/** What a scrape asks the kernel for (one fetch per scrape and source). */
export interface KernelSnapshot {
  stats: ConntrackStats;
  /** Expectations per helper name ('' for none). */
  expectations: Map<string, number>;
  expectStats: ExpectationCpuStats[];
}

export type SnapshotResult = { ok: true; kernel: KernelSnapshot } | { ok: false; error: Error };

export interface SourceOptions {
  /** A mirror to count; undefined makes one (closed by close()); null: no flow metrics. */
  mirror: Mirror | null | undefined;
  /** Count events by type (from the mirror's socket, or without a mirror on a stream of its own). */
  events: boolean;
  labels: Record<string, string>;
}

const groupKey = (family: string, proto: string, state: string): string => `${family}|${proto}|${state}`;
const protoName = (f: Flow): string => String(f.proto);

export class MetricsSource {
  readonly ct: Conntrack;
  readonly mirror: Mirror | undefined;
  /** The stream events are counted on when there is no mirror. */
  readonly stream: FlowEventStream | undefined;
  readonly labels: Record<string, string>;
  private readonly ownMirror: boolean;
  /** Live flow groups, maintained from the mirror's events. */
  readonly groups = new Map<string, FlowGroup>();
  /** Counters of flows that ended (DESTROY events), since the source started. */
  readonly finished = new Map<string, ByteGroup>();
  /**
   * Counters of the flows in the mirror, as the mirror holds them (the kernel sends them
   * only in dumps and DESTROY events, so mostly as of the last reconciling dump): the sum
   * over the held copies, kept as flows are added, updated and deleted.
   */
  liveBytes = new Map<string, ByteGroup>();
  /** True once any flow carried counters (accounting is on). */
  accounting = false;
  lastResync: (ResyncInfo & { at: number }) | undefined;
  mirrorError: Error | undefined;
  lastError: Error | undefined;
  private counted = false;
  private dirty = false;
  private pending: Promise<SnapshotResult> | undefined;
  private closed = false;
  private readonly detach: (() => void)[] = [];

  constructor(ct: Conntrack, options: SourceOptions) {
    this.ct = ct;
    this.labels = options.labels;
    this.ownMirror = options.mirror === undefined;
    // Both constructors validate and open their sockets synchronously; if the second one
    // throws, the first is closed so nothing is left half set up.
    const mirror = options.mirror === null ? undefined : options.mirror ?? ct.mirror();
    this.mirror = mirror;
    // An exporter stays alive through its HTTP server; what the collectors open should not
    // keep a user's process alive on its own.
    if (mirror && this.ownMirror) mirror.unref();
    if (mirror) this.follow(mirror);
    if (options.events && !mirror) {
      const s = ct.events();
      this.stream = s;
      // The stream reads (and counts) only while something consumes it.
      s.on('event', () => undefined);
      s.on('error', (err: Error) => {
        this.lastError = err;
      });
      s.unref();
    }
  }

  /** Events received by type: on the mirror's socket, or on the counting stream. */
  get received(): { new: number; update: number; destroy: number } {
    if (this.mirror) return this.mirror.stats.received;
    return this.stream ? this.stream.stats.received : { new: 0, update: 0, destroy: 0 };
  }

  /** Events the kernel dropped for that socket (exact, from its drop counter). */
  get eventsLost(): number {
    if (this.mirror) return this.mirror.lost;
    return this.stream ? this.stream.lost : 0;
  }

  private follow(m: Mirror): void {
    const onAdd = (f: Flow): void => {
      if (!this.counted || m.synchronizing) return;
      this.addFlow(f, 1);
      this.addBytes(this.liveBytes, f, 1);
    };
    const onUpdate = (f: Flow, prev: Flow): void => {
      if (!this.counted || m.synchronizing) return;
      this.addFlow(prev, -1);
      this.addFlow(f, 1);
      this.addBytes(this.liveBytes, prev, -1);
      this.addBytes(this.liveBytes, f, 1);
    };
    const onDelete = (f: Flow, prev: Flow): void => {
      // During a resync the differences are emitted after the table was swapped; the
      // 'resync' that follows recounts everything.
      if (!this.counted || m.synchronizing) return;
      this.addFlow(prev, -1);
      // What the flow had counted in the end (a DESTROY event's counters) moves to the
      // finished flows; what the mirror held for it leaves the live sum.
      this.addBytes(this.finished, f, 1);
      this.addBytes(this.liveBytes, prev, -1);
    };
    const onResync = (info: ResyncInfo): void => {
      this.lastResync = { ...info, at: Date.now() };
      this.recount();
    };
    const onError = (err: Error): void => {
      this.mirrorError = err;
    };
    const onClose = (): void => {
      if (!this.closed) this.mirrorError ??= new Error('the mirror was closed');
    };
    m.on('add', onAdd);
    m.on('update', onUpdate);
    m.on('delete', onDelete);
    m.on('resync', onResync);
    m.on('error', onError);
    m.on('close', onClose);
    this.detach.push(() => {
      m.off('add', onAdd);
      m.off('update', onUpdate);
      m.off('delete', onDelete);
      m.off('resync', onResync);
      m.off('error', onError);
      m.off('close', onClose);
    });
    // A mirror handed in may be ready already (its initial 'resync' is past).
    m.ready.then(
      () => {
        if (!this.counted) this.recount();
      },
      (err: Error) => {
        this.mirrorError = err;
      },
    );
  }

  private addFlow(f: Flow, delta: 1 | -1): void {
    const family = f.family;
    const proto = protoName(f);
    const state = f.state ?? '';
    const k = groupKey(family, proto, state);
    let g = this.groups.get(k);
    if (g === undefined) {
      if (delta < 0) {
        this.dirty = true;
        return;
      }
      g = { family, proto, state, flows: 0 };
      this.groups.set(k, g);
    }
    g.flows += delta;
    if (g.flows < 0) {
      g.flows = 0;
      this.dirty = true;
    }
    if (f.counters) this.accounting = true;
  }

  private addBytes(into: Map<string, ByteGroup>, f: Flow, sign: 1 | -1): void {
    const c = f.counters;
    if (!c) return;
    this.accounting = true;
    const family = f.family;
    const proto = protoName(f);
    const k = `${family}|${proto}`;
    let g = into.get(k);
    if (g === undefined) {
      g = { family, proto, origBytes: 0, replyBytes: 0, origPackets: 0, replyPackets: 0 };
      into.set(k, g);
    }
    g.origBytes += sign * Number(c.orig.bytes);
    g.replyBytes += sign * Number(c.reply.bytes);
    g.origPackets += sign * Number(c.orig.packets);
    g.replyPackets += sign * Number(c.reply.packets);
  }

  /** Counts the mirror's table from scratch (after a dump was swapped in). */
  private recount(): void {
    const m = this.mirror;
    if (!m) return;
    for (const g of this.groups.values()) g.flows = 0;
    const live = new Map<string, ByteGroup>();
    for (const f of m.values()) {
      const proto = protoName(f);
      const state = f.state ?? '';
      const k = groupKey(f.family, proto, state);
      let g = this.groups.get(k);
      if (g === undefined) {
        g = { family: f.family, proto, state, flows: 0 };
        this.groups.set(k, g);
      }
      g.flows++;
      if (f.counters) this.addBytes(live, f, 1);
    }
    // Groups that emptied are dropped, so a series disappears once its last flow is gone.
    for (const [k, g] of this.groups) if (g.flows === 0) this.groups.delete(k);
    this.liveBytes = live;
    this.counted = true;
    this.dirty = false;
  }

  /** Waits for the mirror's first dump (if any) and repairs the counts if they drifted. */
  async flowsReady(): Promise<boolean> {
    const m = this.mirror;
    if (!m) return false;
    try {
      await m.ready;
    } catch {
      return false;
    }
    if (!this.counted || this.dirty) this.recount();
    return true;
  }

  /**
   * The kernel's counters for this scrape. Every metric of one scrape calls this in the
   * same synchronous stretch, so they share one fetch.
   */
  snapshot(): Promise<SnapshotResult> {
    if (this.pending) return this.pending;
    const p = this.fetch();
    this.pending = p;
    const clear = (): void => {
      if (this.pending === p) this.pending = undefined;
    };
    p.then(clear, clear);
    return p;
  }

  private async fetch(): Promise<SnapshotResult> {
    try {
      const [stats, expectStats, list] = await Promise.all([
        this.ct.stats(), this.ct.expectations.stats(), this.ct.expectations.list(), this.flowsReady(),
      ]);
      const expectations = new Map<string, number>();
      for (const x of list) expectations.set(x.helper ?? '', (expectations.get(x.helper ?? '') ?? 0) + 1);
      this.lastError = undefined;
      return { ok: true, kernel: { stats, expectations, expectStats } };
    } catch (err) {
      this.lastError = err as Error;
      return { ok: false, error: err as Error };
    }
  }

  /** Whether the source works: the handle is open, the mirror follows, the last fetch succeeded. */
  health(): { ok: boolean; reason?: string } {
    if (this.closed) return { ok: false, reason: 'closed' };
    if (this.ct.isClosed) return { ok: false, reason: 'the Conntrack handle is closed' };
    if (this.mirrorError) return { ok: false, reason: `mirror: ${this.mirrorError.message}` };
    if (this.lastError) return { ok: false, reason: this.lastError.message };
    return { ok: true };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.detach) d();
    this.stream?.close();
    if (this.ownMirror) this.mirror?.close();
  }
}
