/**
 * Conntrack statistics from two sources:
 *
 * - `/proc/net/stat/nf_conntrack`: one header line naming the columns (the names and
 *   their number differ between kernels), then one line of hex numbers per possible CPU.
 *   The file belongs to the network namespace of the process that reads it.
 * - ctnetlink: IPCTNL_MSG_CT_GET_STATS_CPU (a dump, one message per CPU with the CPU
 *   number in nfgenmsg.res_id) and IPCTNL_MSG_CT_GET_STATS (entries and the table limit).
 */
import { promises as fsp } from 'fs';
import type { Conntrack } from './conntrack';
import { resolveNetns } from './conntrack';
import { ConntrackError, invalid } from './errors';
import {
  AF_UNSPEC,
  CTA_STATS_CHAIN_TOOLONG,
  CTA_STATS_CLASH_RESOLVE,
  CTA_STATS_DELETE,
  CTA_STATS_DELETE_LIST,
  CTA_STATS_DROP,
  CTA_STATS_EARLY_DROP,
  CTA_STATS_ERROR,
  CTA_STATS_FOUND,
  CTA_STATS_GLOBAL_ENTRIES,
  CTA_STATS_GLOBAL_MAX_ENTRIES,
  CTA_STATS_IGNORE,
  CTA_STATS_INSERT,
  CTA_STATS_INSERT_FAILED,
  CTA_STATS_INVALID,
  CTA_STATS_NEW,
  CTA_STATS_SEARCHED,
  CTA_STATS_SEARCH_RESTART,
  IPCTNL_MSG_CT_GET_STATS,
  IPCTNL_MSG_CT_GET_STATS_CPU,
  NFNL_SUBSYS_CTNETLINK,
  NLM_F_DUMP,
} from './enums';
import { NFNL_ATTR_OFFSET, forEachAttr } from './netlink';
import { procNetDir, runInNetns, sameNetnsAsCaller } from './sysctl';

// ---------------------------------------------------------------------------------------
// /proc/net/stat/nf_conntrack

/** The parsed `/proc/net/stat/nf_conntrack`, keyed by the kernel's own column names. */
export interface ProcStats {
  /** One record per row of the file (one per possible CPU, in CPU order). */
  perCpu: Record<string, number>[];
  /**
   * Column sums over all rows, except `entries`: the kernel repeats the namespace's
   * entry count on every row, so `total.entries` is that count, not a sum.
   */
  total: Record<string, number>;
}

/** Where readProcStats reads from. */
export interface ReadProcStatsOptions {
  /** A file to read instead of `/proc/net/stat/nf_conntrack` (e.g. a captured copy). */
  path?: string;
  /**
   * Another network namespace, named like `Conntrack.open({ netns })`: a pid, a
   * `/proc/PID/ns/net` path, a bind mount such as `/var/run/netns/NAME`, or a name under
   * /var/run/netns. A pid (or `/proc/PID/ns/net`) is read through `/proc/PID/net/...`;
   * other paths are entered with `nsenter` in a short-lived child process.
   */
  netns?: string | number;
  /** Cancels the read. */
  signal?: AbortSignal;
}

/** The default location of the per-namespace statistics file. */
export const PROC_STATS_PATH = '/proc/net/stat/nf_conntrack';

/** Columns whose value is the same namespace-wide number on every row (not summed). */
const NOT_SUMMED = new Set(['entries']);

/**
 * Parses the text of `/proc/net/stat/nf_conntrack` by its header line. Values are hex.
 * Rows with the wrong number of fields or a token that is not hex are skipped (never
 * fatal); a file without a header line is refused with ERR_PROTOCOL.
 */
export function parseProcStats(text: string): ProcStats {
  if (typeof text !== 'string') throw invalid('text', 'must be the text of /proc/net/stat/nf_conntrack');
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.length ? lines[0].trim().split(/\s+/) : [];
  if (header.length === 0 || header.every((h) => /^[0-9a-fA-F]+$/.test(h))) {
    throw new ConntrackError('ERR_PROTOCOL', 'nf_conntrack statistics: the first line is not a header of column names');
  }
  const perCpu: Record<string, number>[] = [];
  for (let i = 1; i < lines.length; i++) {
    const cells = lines[i].trim().split(/\s+/);
    if (cells.length !== header.length || !cells.every((c) => /^[0-9a-fA-F]{1,16}$/.test(c))) continue;
    const row: Record<string, number> = {};
    for (let k = 0; k < header.length; k++) row[header[k]] = parseInt(cells[k], 16);
    perCpu.push(row);
  }
  const total: Record<string, number> = {};
  for (const name of header) {
    if (NOT_SUMMED.has(name)) {
      total[name] = perCpu.length ? perCpu[0][name] : 0;
      continue;
    }
    let sum = 0;
    for (const row of perCpu) sum += row[name];
    total[name] = sum;
  }
  return { perCpu, total };
}

/**
 * Reads and parses `/proc/net/stat/nf_conntrack` (of the caller's network namespace, of
 * another one with `{ netns }`, or any copy of the file with a path).
 *
 * @example
 * const { total } = await readProcStats();
 * console.log(total.entries, total.drop, total.early_drop);
 * const inner = await readProcStats({ netns: 4242 }); // the namespace of pid 4242
 */
export async function readProcStats(pathOrOptions: string | ReadProcStatsOptions = {}): Promise<ProcStats> {
  const options: ReadProcStatsOptions = typeof pathOrOptions === 'string' ? { path: pathOrOptions } : pathOrOptions;
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be a path or an object { path?, netns?, signal? }');
  if (options.path !== undefined && (typeof options.path !== 'string' || options.path === '')) {
    throw invalid('path', 'must be a non-empty string (the file to parse)');
  }
  if (options.path !== undefined && options.netns !== undefined) {
    throw invalid('netns', 'give either path or netns, not both (path already names the file to read)');
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal', 'must be an AbortSignal');
  if (signal?.aborted) throw new ConntrackError('ERR_ABORTED', 'readProcStats: aborted');

  let text: string;
  const nsPath = resolveNetns(options.netns);
  if (nsPath === undefined || (await sameNetnsAsCaller(nsPath))) {
    text = await readText(options.path ?? PROC_STATS_PATH, signal);
  } else {
    const dir = procNetDir(nsPath);
    if (dir !== undefined) {
      text = await readText(`${dir}/stat/nf_conntrack`, signal);
    } else {
      const [res] = await runInNetns(nsPath, [{ op: 'read', file: PROC_STATS_PATH }], signal);
      if (res.error) throw procReadError(PROC_STATS_PATH, res.error.code, res.error.errno);
      text = res.value ?? '';
    }
  }
  return parseProcStats(text);
}

async function readText(file: string, signal: AbortSignal | undefined): Promise<string> {
  try {
    return await fsp.readFile(file, { encoding: 'utf8', signal });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') throw new ConntrackError('ERR_ABORTED', 'readProcStats: aborted', { cause: err });
    throw procReadError(file, e.code ?? 'EIO', e.errno !== undefined ? Math.abs(e.errno) : undefined, err);
  }
}

function procReadError(file: string, code: string, errno: number | undefined, cause?: unknown): ConntrackError {
  let hint = '';
  if (code === 'ENOENT') hint = ': the nf_conntrack module is not loaded (modprobe nf_conntrack), or the namespace is gone';
  return new ConntrackError(code, `reading ${file} failed: ${code}${hint}`, { errno, syscall: 'open', cause });
}

// ---------------------------------------------------------------------------------------
// ctnetlink statistics

/** Counters of one CPU, as the kernel keeps them (per network namespace). */
export interface CpuStats {
  /** CPU number (nfgenmsg.res_id of the kernel's reply). */
  cpu: number;
  /** Lookups that found an entry. */
  found: number;
  /** Packets that could not be tracked (malformed, or not valid for their state). */
  invalid: number;
  /** Entries inserted. */
  insert: number;
  /** Entries that could not be inserted (a clash with an entry that won the race). */
  insertFailed: number;
  /** New flows dropped because the table was full and nothing could be evicted. */
  drop: number;
  /** Entries evicted to make room for new ones when the table was full. */
  earlyDrop: number;
  /** ICMP errors that referred to no known flow ("icmp_error" in /proc). */
  error: number;
  /** Hash lookups restarted because the table was being resized. */
  searchRestart: number;
  /** Insert clashes that were resolved (the packet kept its flow). */
  clashResolve: number;
  /** Inserts refused because a hash chain was too long (Linux 5.15+, else 0). */
  chainTooLong: number;
  /** Counters only older kernels send (no longer maintained): present when sent. */
  searched?: number;
  new?: number;
  ignore?: number;
  delete?: number;
  deleteList?: number;
}

/** The counters of CpuStats without the CPU number. */
export type StatsCounters = Omit<CpuStats, 'cpu'>;

/** What `ct.stats()` resolves to. */
export interface ConntrackStats {
  /** One record per possible CPU. */
  perCpu: CpuStats[];
  /** Sums over all CPUs. */
  total: StatsCounters;
  /** Entries in this namespace's table (nf_conntrack_count). */
  count: number;
  /**
   * The table limit (nf_conntrack_max; global: the same in every namespace). 0 means
   * no limit. Kernels before 4.20 do not send it; it is then read from the sysctl.
   */
  max: number;
}

const CPU_ATTRS: Record<number, keyof StatsCounters> = {
  [CTA_STATS_SEARCHED]: 'searched',
  [CTA_STATS_FOUND]: 'found',
  [CTA_STATS_NEW]: 'new',
  [CTA_STATS_INVALID]: 'invalid',
  [CTA_STATS_IGNORE]: 'ignore',
  [CTA_STATS_DELETE]: 'delete',
  [CTA_STATS_DELETE_LIST]: 'deleteList',
  [CTA_STATS_INSERT]: 'insert',
  [CTA_STATS_INSERT_FAILED]: 'insertFailed',
  [CTA_STATS_DROP]: 'drop',
  [CTA_STATS_EARLY_DROP]: 'earlyDrop',
  [CTA_STATS_ERROR]: 'error',
  [CTA_STATS_SEARCH_RESTART]: 'searchRestart',
  [CTA_STATS_CLASH_RESOLVE]: 'clashResolve',
  [CTA_STATS_CHAIN_TOOLONG]: 'chainTooLong',
};

const MAINTAINED: (keyof StatsCounters)[] = [
  'found', 'invalid', 'insert', 'insertFailed', 'drop', 'earlyDrop', 'error', 'searchRestart', 'clashResolve', 'chainTooLong',
];

function emptyCounters(): StatsCounters {
  return { found: 0, invalid: 0, insert: 0, insertFailed: 0, drop: 0, earlyDrop: 0, error: 0, searchRestart: 0, clashResolve: 0, chainTooLong: 0 };
}

/**
 * Decodes one IPCTNL_MSG_CT_GET_STATS_CPU reply message (buf[off, off+len) is the whole
 * netlink message). Unknown or malformed attributes are skipped.
 */
export function decodeCpuStats(buf: Buffer, off: number, len: number): CpuStats {
  // A message too short for its nfgenmsg has no CPU number and no counters: zeros.
  const cpu = len >= NFNL_ATTR_OFFSET && off + NFNL_ATTR_OFFSET <= buf.length ? buf.readUInt16BE(off + 18) : 0;
  const s = { cpu, ...emptyCounters() } as CpuStats;
  forEachAttr(buf, off + NFNL_ATTR_OFFSET, off + len, (type, p, e) => {
    const key = CPU_ATTRS[type];
    if (key !== undefined && e - p >= 4) (s as unknown as Record<string, number>)[key] = buf.readUInt32BE(p);
  });
  return s;
}

/** Decodes an IPCTNL_MSG_CT_GET_STATS reply: `{ count, max }` (max undefined when not sent). */
export function decodeGlobalStats(buf: Buffer, off: number, len: number): { count: number; max: number | undefined } {
  let count = 0;
  let max: number | undefined;
  forEachAttr(buf, off + NFNL_ATTR_OFFSET, off + len, (type, p, e) => {
    if (e - p < 4) return;
    if (type === CTA_STATS_GLOBAL_ENTRIES) count = buf.readUInt32BE(p);
    else if (type === CTA_STATS_GLOBAL_MAX_ENTRIES) max = buf.readUInt32BE(p);
  });
  return { count, max };
}

/** Sums per-CPU counters. Old counters are summed only when some CPU reported them. */
export function sumCpuStats(perCpu: readonly CpuStats[]): StatsCounters {
  const total = emptyCounters() as unknown as Record<string, number>;
  for (const c of perCpu) {
    for (const [k, v] of Object.entries(c)) {
      if (k === 'cpu' || typeof v !== 'number') continue;
      total[k] = (total[k] ?? 0) + v;
    }
  }
  return total as unknown as StatsCounters;
}

const CT_TYPE = (msg: number): number => (NFNL_SUBSYS_CTNETLINK << 8) | msg;

/** @internal Implementation of Conntrack.stats(). */
export async function fetchStats(ct: Conntrack): Promise<ConntrackStats> {
  ct.assertOpen('stats');
  const [cpuMsgs, globalMsgs] = await Promise.all([
    ct.request(CT_TYPE(IPCTNL_MSG_CT_GET_STATS_CPU), NLM_F_DUMP, AF_UNSPEC, undefined, 'reading per-CPU statistics'),
    ct.request(CT_TYPE(IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC, undefined, 'reading table statistics'),
  ]);
  const perCpu: CpuStats[] = [];
  for (const m of cpuMsgs) {
    if (m.readUInt16LE(4) !== CT_TYPE(IPCTNL_MSG_CT_GET_STATS_CPU) || m.length < NFNL_ATTR_OFFSET) continue;
    perCpu.push(decodeCpuStats(m, 0, m.length));
  }
  perCpu.sort((a, b) => a.cpu - b.cpu);
  let count = 0;
  let max: number | undefined;
  for (const m of globalMsgs) {
    if (m.readUInt16LE(4) !== CT_TYPE(IPCTNL_MSG_CT_GET_STATS) || m.length < NFNL_ATTR_OFFSET) continue;
    ({ count, max } = decodeGlobalStats(m, 0, m.length));
  }
  if (max === undefined) {
    // Kernels before 4.20 leave it out; nf_conntrack_max is global, so our own view is right.
    max = Number((await fsp.readFile('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').catch(() => '0')).trim()) || 0;
  }
  return { perCpu, total: sumCpuStats(perCpu), count, max };
}

/** The counters every kernel since 5.15 maintains, in the order `conntrack -S` prints them. */
export const CPU_COUNTER_NAMES: readonly (keyof StatsCounters)[] = MAINTAINED;
