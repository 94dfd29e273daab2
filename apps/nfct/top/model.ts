/**
 * What `nfct top` shows, computed from periodic dumps: per-flow counter deltas (rates)
 * between two dumps, counts by protocol and state, the statistics (fill, drops) and event
 * rates. The dump is streamed (the loop stays free for keys and redraws between batches)
 * and only the best `keep` flows by the sort key are kept as objects.
 */
import type { Conntrack, Flow, FlowEventStream, FlowFilter } from '../../../lib';

export type SortKey = 'bytes' | 'packets' | 'total' | 'timeout';
export const SORT_KEYS: readonly SortKey[] = ['bytes', 'packets', 'total', 'timeout'];

export interface TopRow {
  flow: Flow;
  /** Bytes and packets per second, both directions, since the previous dump (undefined on the first). */
  bytesPerSec: number | undefined;
  packetsPerSec: number | undefined;
  totalBytes: number;
  totalPackets: number;
}

export interface Snapshot {
  time: number;
  /** Seconds between this dump and the previous one (0 for the first). */
  elapsed: number;
  /** How long the dump took, in ms. */
  dumpMs: number;
  flows: number;
  /** Flows that carried counters (0 when accounting is off). */
  withCounters: number;
  rows: TopRow[];
  byProto: Map<string, { count: number; states: Map<string, number> }>;
  count: number;
  max: number;
  drop: number;
  earlyDrop: number;
  insertFailed: number;
  dropRate: number;
  earlyDropRate: number;
  events: { new: number; update: number; destroy: number };
  eventRates: { new: number; update: number; destroy: number };
  lost: number;
  error?: string;
}

function sortValue(r: TopRow, key: SortKey): number {
  switch (key) {
    case 'bytes':
      return r.bytesPerSec ?? 0;
    case 'packets':
      return r.packetsPerSec ?? 0;
    case 'total':
      return r.totalBytes;
    case 'timeout':
      return r.flow.timeout ?? 0;
  }
}

/** Orders rows: the key (descending), then total bytes, then timeout, then id. */
export function compareRows(a: TopRow, b: TopRow, key: SortKey): number {
  return sortValue(b, key) - sortValue(a, key) || b.totalBytes - a.totalBytes || (b.flow.timeout ?? 0) - (a.flow.timeout ?? 0) || a.flow.id - b.flow.id;
}

export interface SamplerOptions {
  filter?: FlowFilter;
  sort: SortKey;
  /** Rows to keep (the screen shows at most this many). */
  keep: number;
  /** A text filter on the rows (a substring of the tuples, protocol or state). */
  text?: string;
}

/** Text a row's text filter searches. */
export function rowText(f: Flow): string {
  const t = (x: Flow['orig']) => `${x.src}:${x.sport ?? ''} ${x.dst}:${x.dport ?? ''}`;
  return `${f.proto} ${f.state ?? ''} ${t(f.orig)} ${t(f.reply)} mark=${f.mark}`;
}

export class Sampler {
  private prev = new Map<number, number[]>();
  private prevTime = 0;
  private prevStats: { drop: number; earlyDrop: number; time: number } | undefined;
  private events: FlowEventStream | undefined;
  private eventCounts = { new: 0, update: 0, destroy: 0 };
  private lastEventCounts = { new: 0, update: 0, destroy: 0 };
  private lastEventTime = 0;
  private closed = false;

  constructor(private readonly ct: Conntrack, public options: SamplerOptions) {}

  /** Starts counting events (by type). */
  startEvents(): void {
    const stream = this.ct.events({ filter: this.options.filter });
    stream.unref();
    stream.on('event', (ev: { type: 'new' | 'update' | 'destroy' }) => {
      this.eventCounts[ev.type]++;
    });
    stream.on('error', () => {
      /* shown as lost/absent rates; the dump goes on */
    });
    this.events = stream;
    this.lastEventTime = Date.now();
  }

  /** One dump and stats request; resolves with what to draw. */
  async sample(): Promise<Snapshot> {
    const t0 = Date.now();
    const next = new Map<number, number[]>();
    const keep = Math.max(1, this.options.keep);
    const sort = this.options.sort;
    const text = this.options.text?.toLowerCase();
    const elapsed = this.prevTime ? (t0 - this.prevTime) / 1000 : 0;
    const best: TopRow[] = [];
    const byProto = new Map<string, { count: number; states: Map<string, number> }>();
    let flows = 0;
    let withCounters = 0;
    const statsP = this.ct.stats();
    // Awaited after the dump; if the dump fails first (q closes the handle mid-dump), its
    // ERR_CLOSED rejection must not end the process as an unhandled one.
    statsP.catch(() => undefined);
    for await (const f of this.ct.dump(this.options.filter)) {
      if (this.closed) break;
      flows++;
      const proto = String(f.proto);
      let p = byProto.get(proto);
      if (!p) byProto.set(proto, (p = { count: 0, states: new Map() }));
      p.count++;
      if (f.state) p.states.set(f.state, (p.states.get(f.state) ?? 0) + 1);
      const c = f.counters;
      let totalBytes = 0;
      let totalPackets = 0;
      let bytesPerSec: number | undefined;
      let packetsPerSec: number | undefined;
      if (c) {
        withCounters++;
        totalBytes = Number(c.orig.bytes + c.reply.bytes);
        totalPackets = Number(c.orig.packets + c.reply.packets);
        next.set(f.id, [totalBytes, totalPackets]);
        const before = this.prev.get(f.id);
        if (elapsed > 0) {
          // A flow new since the previous dump counts from zero.
          bytesPerSec = Math.max(0, totalBytes - (before?.[0] ?? 0)) / elapsed;
          packetsPerSec = Math.max(0, totalPackets - (before?.[1] ?? 0)) / elapsed;
        }
      }
      if (text && !rowText(f).toLowerCase().includes(text)) continue;
      const row: TopRow = { flow: f, bytesPerSec, packetsPerSec, totalBytes, totalPackets };
      // Keep the best `keep` rows: a sorted array, replaced from the end.
      if (best.length < keep) {
        best.push(row);
        if (best.length === keep) best.sort((a, b) => compareRows(a, b, sort));
      } else if (compareRows(row, best[keep - 1], sort) < 0) {
        let i = keep - 1;
        while (i > 0 && compareRows(row, best[i - 1], sort) < 0) {
          best[i] = best[i - 1];
          i--;
        }
        best[i] = row;
      }
    }
    if (best.length < keep) best.sort((a, b) => compareRows(a, b, sort));
    const dumpMs = Date.now() - t0;
    this.prev = next;
    this.prevTime = t0;
    let stats;
    let error: string | undefined;
    try {
      stats = await statsP;
    } catch (err) {
      error = (err as Error).message;
    }
    const now = Date.now();
    const drop = stats?.total.drop ?? 0;
    const earlyDrop = stats?.total.earlyDrop ?? 0;
    const ps = this.prevStats;
    const dt = ps ? (now - ps.time) / 1000 : 0;
    this.prevStats = { drop, earlyDrop, time: now };
    const edt = (now - this.lastEventTime) / 1000;
    const rate = (k: 'new' | 'update' | 'destroy') => (edt > 0 ? (this.eventCounts[k] - this.lastEventCounts[k]) / edt : 0);
    const eventRates = { new: rate('new'), update: rate('update'), destroy: rate('destroy') };
    this.lastEventCounts = { ...this.eventCounts };
    this.lastEventTime = now;
    return {
      time: now,
      elapsed,
      dumpMs,
      flows,
      withCounters,
      rows: best,
      byProto,
      count: stats?.count ?? flows,
      max: stats?.max ?? 0,
      drop,
      earlyDrop,
      insertFailed: stats?.total.insertFailed ?? 0,
      dropRate: dt > 0 ? (drop - ps!.drop) / dt : 0,
      earlyDropRate: dt > 0 ? (earlyDrop - ps!.earlyDrop) / dt : 0,
      events: { ...this.eventCounts },
      eventRates,
      lost: this.events?.lost ?? 0,
      error,
    };
  }

  close(): void {
    this.closed = true;
    this.events?.close();
  }
}
