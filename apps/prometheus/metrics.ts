/**
 * registerMetrics(): conntrack metrics as prom-client collectors.
 *
 * Each metric is a prom-client Gauge or Counter whose collect() fills in the values of
 * every source attached to it: several handles (one per network namespace, told apart by
 * their labels) can share one registry, and one handle can feed several registries (for
 * example one Prometheus-text and one OpenMetrics registry).
 */
import type { Counter as PromCounter, Gauge as PromGauge, Registry } from 'prom-client';
import { Conntrack, ConntrackError, Mirror } from '../../lib';
import type { CpuStats } from '../../lib';
import { ByteGroup, KernelSnapshot, MetricsSource } from './source';

/** Any prom-client registry, of either content type. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyRegistry = Registry<any>;

export interface RegisterMetricsOptions {
  /**
   * The registry (or registries) to add the metrics to. Default: prom-client's global
   * `register`. Give one registry of each content type to serve both text formats.
   */
  registry?: AnyRegistry | AnyRegistry[];
  /** Prefix of the package's own metrics (default `conntrack_`). The `node_nf_conntrack_*` names never change. */
  prefix?: string;
  /**
   * The mirror to count flows from. Default: a mirror of the whole table made for this
   * purpose (closed by `close()`); a mirror you pass stays yours. `false`: no flow metrics
   * (then nothing is kept in memory per flow).
   */
  mirror?: Mirror | false;
  /** Constant labels put on every series of this handle, e.g. `{ netns: 'blue' }`. */
  labels?: Record<string, string>;
  /**
   * Count events by type (default true): from the mirror's event socket, or, with
   * `mirror: false`, on an event stream of its own.
   */
  events?: boolean;
  /** Export node_exporter's `node_nf_conntrack_*` metrics (default true). */
  nodeMetrics?: boolean;
}

export interface MetricsHandle {
  /** Removes this handle's series (and the metrics, once no other handle uses them); closes what it opened. */
  close(): void;
  /** Whether collection works: the handle is open, the mirror follows and the last scrape's requests succeeded. */
  health(): { ok: boolean; reason?: string };
  /** The mirror flows are counted from (undefined with `mirror: false`). */
  readonly mirror: Mirror | undefined;
}

type Emit = (labels: Record<string, string>, value: number) => void;

interface MetricDef {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  labelNames: string[];
  /** Reads from the kernel snapshot (undefined: reads from memory only). */
  kernel: boolean;
  read(src: MetricsSource, k: KernelSnapshot | undefined, emit: Emit): void;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const OPTION_KEYS = new Set(['registry', 'prefix', 'mirror', 'labels', 'events', 'nodeMetrics']);

// node_exporter's conntrack collector: names, help and type (gauge) as it exports them;
// the stat_* values are sums over all CPUs, like its reading of /proc/net/stat/nf_conntrack.
const NODE_STATS: [string, string, (t: ConntrackStatsTotal) => number][] = [
  ['found', 'Number of searched entries which were successful.', (t) => t.found],
  ['invalid', 'Number of packets seen which can not be tracked.', (t) => t.invalid],
  ['ignore', 'Number of packets seen which are already connected to a conntrack entry.', (t) => t.ignore ?? 0],
  ['insert', 'Number of entries inserted into the list.', (t) => t.insert],
  ['insert_failed', 'Number of entries for which list insertion was attempted but failed.', (t) => t.insertFailed],
  ['drop', 'Number of packets dropped due to conntrack failure.', (t) => t.drop],
  ['early_drop', 'Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.', (t) => t.earlyDrop],
  ['search_restart', 'Number of conntrack table lookups which had to be restarted due to hashtable resizes.', (t) => t.searchRestart],
];
type ConntrackStatsTotal = Omit<CpuStats, 'cpu'>;

const CPU_COUNTERS: [string, string, (c: CpuStats) => number][] = [
  ['found', 'Lookups that found an entry.', (c) => c.found],
  ['invalid', 'Packets that could not be tracked.', (c) => c.invalid],
  ['insert', 'Entries inserted.', (c) => c.insert],
  ['insert_failed', 'Entries that could not be inserted (a clash with an entry that won the race).', (c) => c.insertFailed],
  ['drop', 'New flows dropped because the table was full and nothing could be evicted.', (c) => c.drop],
  ['early_drop', 'Entries evicted to make room for new ones when the table was full.', (c) => c.earlyDrop],
  ['error', 'ICMP errors that referred to no known flow.', (c) => c.error],
  ['search_restart', 'Hash lookups restarted because the table was being resized.', (c) => c.searchRestart],
  ['clash_resolve', 'Insert clashes that were resolved (the packet kept its flow).', (c) => c.clashResolve],
  ['chain_toolong', 'Inserts refused because a hash chain was too long.', (c) => c.chainTooLong],
];

function definitions(prefix: string, nodeMetrics: boolean, flows: boolean, events: boolean): MetricDef[] {
  const defs: MetricDef[] = [];
  const gauge = (name: string, help: string, labelNames: string[], kernel: boolean, read: MetricDef['read']): void => {
    defs.push({ name, help, type: 'gauge', labelNames, kernel, read });
  };
  const counter = (name: string, help: string, labelNames: string[], kernel: boolean, read: MetricDef['read']): void => {
    defs.push({ name, help, type: 'counter', labelNames, kernel, read });
  };
  if (nodeMetrics) {
    gauge('node_nf_conntrack_entries', 'Number of currently allocated flow entries for connection tracking.', [], true, (_s, k, emit) => emit({}, k!.stats.count));
    gauge('node_nf_conntrack_entries_limit', 'Maximum size of connection tracking table.', [], true, (_s, k, emit) => emit({}, k!.stats.max));
    for (const [stat, help, value] of NODE_STATS) {
      gauge(`node_nf_conntrack_stat_${stat}`, help, [], true, (_s, k, emit) => emit({}, value(k!.stats.total)));
    }
  }
  const p = prefix;
  gauge(`${p}up`, 'Whether the last collection from the kernel succeeded (1) or not (0).', [], false, (s, _k, emit) => emit({}, s.health().ok ? 1 : 0));
  gauge(`${p}table_fill_ratio`, 'Entries divided by the table limit (nf_conntrack_max); 0 when there is no limit.', [], true, (_s, k, emit) => {
    const { count, max } = k!.stats;
    emit({}, max > 0 ? count / max : 0);
  });
  gauge(`${p}expectations`, 'Expectations in the table, by the helper of their master flow.', ['helper'], true, (_s, k, emit) => {
    for (const [helper, n] of k!.expectations) emit(helper ? { helper } : {}, n);
  });
  for (const [stat, help, value] of CPU_COUNTERS) {
    counter(`${p}cpu_${stat}_total`, `${help} Per CPU, since the namespace was created.`, ['cpu'], true, (_s, k, emit) => {
      for (const c of k!.stats.perCpu) emit({ cpu: String(c.cpu) }, value(c));
    });
  }
  const EXPECT: [string, string, 'new' | 'create' | 'delete'][] = [
    ['new', 'Expectations that matched a new connection.', 'new'],
    ['create', 'Expectations created.', 'create'],
    ['delete', 'Expectations deleted (expired, removed or replaced).', 'delete'],
  ];
  for (const [stat, help, field] of EXPECT) {
    counter(`${p}cpu_expect_${stat}_total`, `${help} Per CPU, since the namespace was created.`, ['cpu'], true, (_s, k, emit) => {
      for (const c of k!.expectStats) emit({ cpu: String(c.cpu) }, c[field]);
    });
  }
  if (events) {
    counter(`${p}events_total`, 'Conntrack events received, by type (on the mirror\'s event socket, or on one of the collector\'s own without a mirror).', ['type'], false, (s, _k, emit) => {
      const received = s.received;
      emit({ type: 'new' }, received.new);
      emit({ type: 'update' }, received.update);
      emit({ type: 'destroy' }, received.destroy);
    });
    counter(`${p}events_lost_total`, 'Conntrack events the kernel dropped for that event socket (exact, from the socket\'s drop counter).', [], false, (s, _k, emit) => emit({}, s.eventsLost));
  }
  if (flows) {
    gauge(`${p}flows`, 'Flows in the table, by family, protocol and state (TCP, SCTP, DCCP), from the mirror.', ['family', 'proto', 'state'], false, (s, _k, emit) => {
      for (const g of s.groups.values()) {
        if (g.flows === 0) continue;
        emit(g.state ? { family: g.family, proto: g.proto, state: g.state } : { family: g.family, proto: g.proto }, g.flows);
      }
    });
    counter(`${p}mirror_events_lost_total`, 'Events the kernel dropped for the mirror\'s socket (each loss makes it resynchronise).', [], false, (s, _k, emit) => emit({}, s.mirror!.lost));
    counter(`${p}mirror_resyncs_total`, 'Reconciling dumps of the mirror: after lost events (reason="lost") or periodic/requested (reason="refresh").', ['reason'], false, (s, _k, emit) => {
      emit({ reason: 'lost' }, s.mirror!.resyncs);
      emit({ reason: 'refresh' }, s.mirror!.refreshes);
    });
    gauge(`${p}mirror_last_resync_duration_seconds`, 'How long the last reconciling dump of the mirror took.', ['reason'], false, (s, _k, emit) => {
      if (s.lastResync) emit({ reason: s.lastResync.reason }, s.lastResync.durationMs / 1000);
    });
    gauge(`${p}mirror_last_resync_timestamp_seconds`, 'When the last reconciling dump of the mirror finished (Unix time).', [], false, (s, _k, emit) => {
      if (s.lastResync) emit({}, s.lastResync.at / 1000);
    });
    const bytes = (pick: 'Bytes' | 'Packets') => (s: MetricsSource, into: Map<string, ByteGroup>, emit: Emit): void => {
      if (!s.accounting) return;
      for (const g of into.values()) {
        emit({ family: g.family, proto: g.proto, direction: 'orig' }, g[`orig${pick}`]);
        emit({ family: g.family, proto: g.proto, direction: 'reply' }, g[`reply${pick}`]);
      }
    };
    const b = bytes('Bytes');
    const pk = bytes('Packets');
    counter(`${p}finished_flow_bytes_total`, 'Bytes counted by flows that ended (DESTROY events) since collection started, by protocol and direction (needs nf_conntrack_acct).', ['family', 'proto', 'direction'], false, (s, _k, emit) => b(s, s.finished, emit));
    counter(`${p}finished_flow_packets_total`, 'Packets counted by flows that ended (DESTROY events) since collection started, by protocol and direction (needs nf_conntrack_acct).', ['family', 'proto', 'direction'], false, (s, _k, emit) => pk(s, s.finished, emit));
    gauge(`${p}flow_bytes`, 'Bytes counted so far by the flows in the table, as of the mirror\'s last reconciling dump, by protocol and direction (needs nf_conntrack_acct).', ['family', 'proto', 'direction'], false, (s, _k, emit) => b(s, s.liveBytes, emit));
    gauge(`${p}flow_packets`, 'Packets counted so far by the flows in the table, as of the mirror\'s last reconciling dump, by protocol and direction (needs nf_conntrack_acct).', ['family', 'proto', 'direction'], false, (s, _k, emit) => pk(s, s.liveBytes, emit));
  }
  return defs;
}

/** One metric in one registry, fed by every source attached to it. */
class Family {
  readonly sources = new Set<MetricsSource>();
  readonly metric: PromGauge<string> | PromCounter<string>;

  constructor(readonly def: MetricDef, readonly labelNames: string[], registry: AnyRegistry, prom: typeof import('prom-client')) {
    const family = this;
    const config = {
      name: def.name,
      help: def.help,
      labelNames,
      registers: [registry],
      async collect(this: PromGauge<string> | PromCounter<string>): Promise<void> {
        await family.collect(this);
      },
    };
    this.metric = def.type === 'gauge' ? new prom.Gauge(config) : new prom.Counter(config);
  }

  private async collect(m: PromGauge<string> | PromCounter<string>): Promise<void> {
    const sources = [...this.sources];
    const snaps = await Promise.all(sources.map((s) => (this.def.kernel ? s.snapshot() : s.flowsReady().then(() => undefined))));
    m.reset();
    let failure: Error | undefined;
    for (let i = 0; i < sources.length; i++) {
      const src = sources[i];
      const snap = snaps[i];
      if (snap !== undefined && !snap.ok) {
        failure = snap.error;
        continue;
      }
      const emit: Emit = (labels, value) => {
        if (!Number.isFinite(value)) return;
        const all = { ...labels, ...src.labels };
        if (this.def.type === 'gauge') (m as PromGauge<string>).set(all, value);
        else (m as PromCounter<string>).inc(all, value);
      };
      this.def.read(src, snap?.kernel, emit);
    }
    // Without labels prom-client would report 0 for a metric nobody could read: fail the
    // scrape instead, with the reason.
    if (failure && this.labelNames.length === 0) throw failure;
  }
}

/** The families of each registry, by metric name. */
const registries = new WeakMap<AnyRegistry, Map<string, Family>>();

function loadPromClient(): typeof import('prom-client') {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client');
  } catch (err) {
    throw new ConntrackError('ERR_INVALID_ARGUMENT', 'registerMetrics: prom-client is not installed: `npm install prom-client` (it is a peer dependency of conntrack/prometheus)', { field: 'prom-client', cause: err });
  }
}

function invalid(field: string, problem: string): ConntrackError {
  return new ConntrackError('ERR_INVALID_ARGUMENT', `${field}: ${problem}`, { field });
}

interface Validated {
  registries: AnyRegistry[] | undefined;
  prefix: string;
  mirror: Mirror | false | undefined;
  labels: Record<string, string>;
  events: boolean;
  nodeMetrics: boolean;
}

function isRegistry(r: unknown): r is AnyRegistry {
  return r !== null && typeof r === 'object' && typeof (r as AnyRegistry).registerMetric === 'function' && typeof (r as AnyRegistry).getSingleMetric === 'function';
}

function validate(ct: unknown, options: unknown): Validated {
  if (!(ct instanceof Conntrack)) throw invalid('ct', 'must be a Conntrack handle from `await Conntrack.open()`');
  if (ct.isClosed) throw new ConntrackError('ERR_CLOSED', 'registerMetrics: the Conntrack handle is closed');
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw invalid('options', 'must be an object such as { registry }');
  const o = options as RegisterMetricsOptions;
  for (const k of Object.keys(o)) if (!OPTION_KEYS.has(k)) throw invalid(`options.${k}`, `unknown option; use ${[...OPTION_KEYS].join(', ')}`);
  let regs: AnyRegistry[] | undefined;
  if (o.registry !== undefined) {
    regs = Array.isArray(o.registry) ? o.registry : [o.registry];
    if (regs.length === 0) throw invalid('options.registry', 'must be a prom-client Registry or a non-empty array of them');
    regs.forEach((r, i) => {
      if (!isRegistry(r)) throw invalid(Array.isArray(o.registry) ? `options.registry[${i}]` : 'options.registry', 'must be a prom-client Registry (new Registry())');
    });
    if (new Set(regs).size !== regs.length) throw invalid('options.registry', 'names the same registry twice');
  }
  const prefix = o.prefix ?? 'conntrack_';
  if (typeof prefix !== 'string' || !NAME.test(`${prefix}x`) || prefix.startsWith('__') || prefix.startsWith('node_nf_conntrack')) {
    throw invalid('options.prefix', `must be a metric name prefix such as "conntrack_" (letters, digits, _ and :, not starting with a digit), got ${JSON.stringify(prefix)}`);
  }
  if (o.mirror !== undefined && o.mirror !== false && !(o.mirror instanceof Mirror)) throw invalid('options.mirror', 'must be a Mirror from ct.mirror(), or false for no flow metrics');
  const labels: Record<string, string> = {};
  if (o.labels !== undefined) {
    if (o.labels === null || typeof o.labels !== 'object' || Array.isArray(o.labels)) throw invalid('options.labels', 'must be an object of label names to string values, e.g. { netns: "blue" }');
    for (const [k, v] of Object.entries(o.labels)) {
      if (!LABEL.test(k) || k.startsWith('__')) throw invalid(`options.labels.${k}`, 'not a valid label name (letters, digits and _, not starting with a digit or __)');
      if (RESERVED.has(k)) throw invalid(`options.labels.${k}`, `is a label the metrics set themselves (${[...RESERVED].join(', ')}); choose another name`);
      if (typeof v !== 'string') throw invalid(`options.labels.${k}`, `must be a string, got ${typeof v}`);
      labels[k] = v;
    }
  }
  for (const k of ['events', 'nodeMetrics'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalid(`options.${k}`, 'must be true or false');
  }
  return { registries: regs, prefix, mirror: o.mirror, labels, events: o.events ?? true, nodeMetrics: o.nodeMetrics ?? true };
}

/** Labels the metrics themselves use. */
const RESERVED = new Set(['family', 'proto', 'state', 'helper', 'cpu', 'type', 'reason', 'direction']);

/**
 * Adds conntrack metrics for `ct` to a prom-client registry: node_exporter's
 * `node_nf_conntrack_*` (same names, types and values) and the package's own
 * `conntrack_*` (flows by protocol and state from a mirror, fill ratio, events and losses,
 * expectations by helper, per-CPU counters, the mirror's last reconciling dump, bytes and
 * packets when accounting is on). A scrape reads the flow counts from memory and asks the
 * kernel only for its counters (no dump of the flow table).
 *
 * Several handles can share a registry when their `labels` tell them apart (same label
 * names for all). Throws ERR_INVALID_ARGUMENT (with `field`) on bad options, or when the
 * registry already holds a metric of the same name that is not one of these; nothing is
 * registered or opened then.
 *
 * @example
 * const registry = new Registry()
 * const metrics = registerMetrics(ct, { registry, labels: { netns: 'blue' } })
 * // ... await registry.metrics()
 * metrics.close()
 */
export function registerMetrics(ct: Conntrack, options: RegisterMetricsOptions = {}): MetricsHandle {
  const v = validate(ct, options);
  const prom = loadPromClient();
  const regs = v.registries ?? [prom.register];
  const flows = v.mirror !== false;
  const defs = definitions(v.prefix, v.nodeMetrics, flows, v.events);
  const userLabels = Object.keys(v.labels).sort();

  // Check every registry before changing any: a conflict leaves everything as it was.
  for (const reg of regs) {
    const fams = registries.get(reg);
    for (const def of defs) {
      const fam = fams?.get(def.name);
      const existing = reg.getSingleMetric(def.name);
      if (fam !== undefined && existing === fam.metric) {
        const want = [...def.labelNames, ...userLabels].sort().join(',');
        const have = [...fam.labelNames].sort().join(',');
        if (want !== have) {
          const theirs = fam.labelNames.filter((l) => !def.labelNames.includes(l));
          throw invalid('options.labels', `another registerMetrics() on this registry uses the label names [${theirs.join(', ')}], these are [${userLabels.join(', ')}]: use the same label names (with different values) for every handle`);
        }
        for (const other of fam.sources) {
          if (userLabels.every((l) => other.labels[l] === v.labels[l])) {
            throw invalid('options.labels', `another registerMetrics() on this registry has the same labels ${JSON.stringify(v.labels)}: give each handle distinct label values (e.g. { netns: NAME })`);
          }
        }
      } else if (existing !== undefined) {
        throw invalid('options.registry', `the registry already has a metric named ${def.name} that registerMetrics() did not make: use another registry or options.prefix`);
      }
    }
  }

  const source = new MetricsSource(ct, { mirror: v.mirror === false ? null : v.mirror, events: v.events, labels: v.labels });
  const attached: Family[] = [];
  for (const reg of regs) {
    let fams = registries.get(reg);
    if (!fams) registries.set(reg, (fams = new Map()));
    for (const def of defs) {
      let fam = fams.get(def.name);
      if (fam === undefined || reg.getSingleMetric(def.name) !== fam.metric) {
        fam = new Family(def, [...def.labelNames, ...userLabels], reg, prom);
        fams.set(def.name, fam);
      }
      fam.sources.add(source);
      attached.push(fam);
    }
  }

  let closed = false;
  return {
    mirror: source.mirror,
    health: () => source.health(),
    close(): void {
      if (closed) return;
      closed = true;
      for (const reg of regs) {
        const fams = registries.get(reg);
        for (const def of defs) {
          const fam = fams?.get(def.name);
          if (!fam || !attached.includes(fam)) continue;
          fam.sources.delete(source);
          if (fam.sources.size === 0) {
            if (reg.getSingleMetric(def.name) === fam.metric) reg.removeSingleMetric(def.name);
            fams!.delete(def.name);
          }
        }
      }
      source.close();
    },
  };
}
