/**
 * Table pressure: samples the entry count, the limit and the drop counters at an
 * interval and warns before (and when) the table overflows. A full table drops new flows
 * silently (connects time out, UDP sendto() fails with EPERM); the counters are the only
 * witness.
 */
import { TypedEventEmitter } from '../common/emitter';
import { ConntrackError, invalid } from '../common/errors';
import { BoundedQueue } from '../common/queue';
import { checkBoolean, checkKeys, checkNumber, checkObject, checkSignal, show } from '../common/validate';
import type { Handle } from '../wire/handle';
import { fetchStats } from './counters';

export interface PressureOptions {
  /** Milliseconds between samples (default 1000, at least 10). */
  interval?: number;
  /** Fill ratio (count / max) from which to warn, greater than 0 and at most 1 (default 0.9). */
  warnAt?: number;
  /** Closes the monitor when aborted. */
  signal?: AbortSignal;
  /**
   * Keep the process alive while the monitor is open (default true, like setInterval).
   * With false the timer is unref'd: the process may exit while the monitor is open.
   */
  persistent?: boolean;
}

/** Per-second rates between two samples. */
export interface PressureRates {
  drop: number;
  earlyDrop: number;
  insertFailed: number;
  /** Entries inserted per second. */
  insert: number;
}

/** One observation of the table. */
export interface PressureSample {
  /** When it was taken (ms since the epoch). */
  time: number;
  /** Entries in the namespace's table. */
  count: number;
  /** nf_conntrack_max (0 = no limit). */
  max: number;
  /** count / max, 0 when there is no limit. */
  fill: number;
  /** Cumulative counters, summed over CPUs. */
  drop: number;
  earlyDrop: number;
  insertFailed: number;
  insert: number;
  /** Seconds since the previous sample (0 for the first). */
  elapsed: number;
  /** Rates since the previous sample (all 0 for the first). */
  rates: PressureRates;
}

/** Why a warning was raised. */
export type PressureReason = 'fill' | 'drops';

export interface PressureWarning {
  /** `'fill'`: the table passed `warnAt`; `'drops'`: drop, early_drop or insert_failed started rising. */
  reason: PressureReason;
  /** A sentence for logs. */
  message: string;
  sample: PressureSample;
}

export interface PressureRecovery {
  reason: PressureReason;
  sample: PressureSample;
}

/** The events of a PressureMonitor and their listener arguments. */
export interface PressureMonitorEvents {
  sample: [sample: PressureSample];
  /** Once when a condition starts. */
  warning: [warning: PressureWarning];
  /** When it ends. */
  recovered: [recovery: PressureRecovery];
  /** A sample failed; sampling goes on. */
  error: [error: ConntrackError];
  close: [];
}

/** Samples kept for a slow async iterator before sampling pauses (until it has read half). */
const ITERATOR_BUFFER = 64;

/**
 * A running monitor. Events: `sample`, `warning` (once when a condition starts),
 * `recovered` (when it ends), `error` (a sample failed; sampling goes on), `close`.
 * Also an AsyncIterable of samples; leaving a `for await` loop closes it.
 */
const PRESSURE_KEYS = new Set(['interval', 'warnAt', 'signal', 'persistent']);

export class PressureMonitor extends TypedEventEmitter<PressureMonitorEvents> implements AsyncIterable<PressureSample> {
  /** Milliseconds between samples. */
  readonly interval: number;
  /** The fill ratio that triggers a warning. */
  readonly warnAt: number;
  /** The most recent sample. */
  latest: PressureSample | undefined;
  private timer: NodeJS.Timeout | undefined;
  private persistent: boolean;
  private closed = false;
  private fillWarned = false;
  private dropsWarned = false;
  private readonly queue = new BoundedQueue<PressureSample>(ITERATOR_BUFFER, (paused) => {
    if (!paused && this.timer === undefined && !this.sampling) this.schedule(0);
  });
  private sampling = false;
  private readonly waiters: { resolve: (r: IteratorResult<PressureSample>) => void; reject: (e: unknown) => void }[] = [];
  private iterating = 0;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.close();
  private disown: (() => void) | undefined;

  /** @internal Use `ct.pressure()`. */
  constructor(private readonly ct: Handle, options: PressureOptions = {}) {
    super();
    checkObject(options, 'options', '{ interval?, warnAt?, signal?, persistent? }');
    checkKeys(options as Record<string, unknown>, PRESSURE_KEYS, 'options', 'pressure()');
    const { interval = 1000, warnAt = 0.9, signal, persistent = true } = options;
    checkNumber(interval, 10, 2 ** 31 - 1, 'interval', 'a number of milliseconds');
    if (typeof warnAt !== 'number' || !(warnAt > 0 && warnAt <= 1)) {
      throw invalid('warnAt', `must be a fill ratio greater than 0 and at most 1 (0.9 warns at 90% full), got ${show(warnAt)}`);
    }
    checkSignal(signal, 'signal');
    checkBoolean(persistent, 'persistent');
    ct.assertOpen('pressure');
    this.interval = interval;
    this.warnAt = warnAt;
    this.persistent = persistent;
    this.signal = signal;
    if (signal?.aborted) {
      this.closed = true;
      process.nextTick(() => this.emit('close'));
      return;
    }
    this.disown = ct.adopt(this);
    signal?.addEventListener('abort', this.onAbort, { once: true });
    this.schedule(0);
  }

  /** True once closed. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Keeps the process alive while the monitor is open (the default). */
  ref(): this {
    this.persistent = true;
    this.timer?.ref();
    return this;
  }

  /** Lets the process exit while the monitor is open. */
  unref(): this {
    this.persistent = false;
    this.timer?.unref();
    return this;
  }

  /** Stops sampling; pending iterators finish. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.disown?.();
    for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true });
    this.emit('close');
  }

  private schedule(delay: number): void {
    if (this.closed || this.queue.isPaused) return;
    this.timer = setTimeout(this.tick, delay);
    if (!this.persistent) this.timer.unref();
  }

  private tick = async (): Promise<void> => {
    this.timer = undefined;
    this.sampling = true;
    const started = Date.now();
    try {
      const s = await fetchStats(this.ct);
      if (this.closed) return;
      this.record(s.count, s.max, s.total.drop, s.total.earlyDrop, s.total.insertFailed, s.total.insert);
    } catch (err) {
      if (this.closed) return;
      const e = err instanceof ConntrackError ? err : new ConntrackError('ERR_PROTOCOL', String(err), { cause: err });
      if (e.code === 'ERR_CLOSED') {
        this.close();
        return;
      }
      if (this.waiters.length) {
        for (const w of this.waiters.splice(0)) w.reject(e);
        this.close();
        return;
      }
      if (this.listenerCount('error') > 0) this.emit('error', e);
    }
    this.sampling = false;
    this.schedule(Math.max(0, this.interval - (Date.now() - started)));
  };

  private record(count: number, max: number, drop: number, earlyDrop: number, insertFailed: number, insert: number): void {
    const time = Date.now();
    const prev = this.latest;
    const elapsed = prev ? Math.max(0.001, (time - prev.time) / 1000) : 0;
    const rate = (now: number, before: number | undefined): number =>
      prev && before !== undefined ? Math.max(0, now - before) / elapsed : 0;
    const sample: PressureSample = {
      time,
      count,
      max,
      fill: max > 0 ? count / max : 0,
      drop,
      earlyDrop,
      insertFailed,
      insert,
      elapsed,
      rates: {
        drop: rate(drop, prev?.drop),
        earlyDrop: rate(earlyDrop, prev?.earlyDrop),
        insertFailed: rate(insertFailed, prev?.insertFailed),
        insert: rate(insert, prev?.insert),
      },
    };
    this.latest = sample;
    this.emit('sample', sample);

    if (max > 0 && sample.fill >= this.warnAt && !this.fillWarned) {
      this.fillWarned = true;
      this.emit('warning', {
        reason: 'fill',
        sample,
        message: `the conntrack table is ${(sample.fill * 100).toFixed(1)}% full (${count} of ${max} entries, warning at ${(this.warnAt * 100).toFixed(1)}%); ` +
          'when it is full new flows are dropped: raise net.netfilter.nf_conntrack_max or shorten timeouts',
      });
    } else if (this.fillWarned && (max === 0 || sample.fill < this.warnAt)) {
      this.fillWarned = false;
      this.emit('recovered', { reason: 'fill', sample });
    }

    if (prev) {
      const d = { drop: drop - prev.drop, earlyDrop: earlyDrop - prev.earlyDrop, insertFailed: insertFailed - prev.insertFailed };
      const rising = d.drop > 0 || d.earlyDrop > 0 || d.insertFailed > 0;
      if (rising && !this.dropsWarned) {
        this.dropsWarned = true;
        this.emit('warning', {
          reason: 'drops',
          sample,
          message: `conntrack is dropping flows: drop +${d.drop}, early_drop +${d.earlyDrop}, insert_failed +${d.insertFailed} ` +
            `in ${elapsed.toFixed(1)} s (table ${count} of ${max || 'unlimited'})`,
        });
      } else if (!rising && this.dropsWarned) {
        this.dropsWarned = false;
        this.emit('recovered', { reason: 'drops', sample });
      }
    }

    const w = this.waiters.shift();
    if (w) w.resolve({ value: sample, done: false });
    else if (this.iterating > 0) {
      this.queue.push(sample);
    }
  }

  /** Samples as they are taken; leaving the loop closes the monitor. */
  [Symbol.asyncIterator](): AsyncIterator<PressureSample> {
    this.iterating++;
    let done = false;
    const finish = (): IteratorResult<PressureSample> => {
      if (!done) {
        done = true;
        this.iterating--;
      }
      return { value: undefined, done: true };
    };
    return {
      next: () => {
        if (done) return Promise.resolve(finish());
        const queued = this.queue.shift();
        if (queued) return Promise.resolve({ value: queued, done: false });
        if (this.closed) return Promise.resolve(finish());
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
      },
      return: () => {
        this.close();
        return Promise.resolve(finish());
      },
    };
  }
}

