/**
 * Conntrack statistics from ctnetlink: IPCTNL_MSG_CT_GET_STATS_CPU (a dump, one message
 * per CPU with the CPU number in nfgenmsg.res_id) and IPCTNL_MSG_CT_GET_STATS (entries
 * and the table limit).
 */
import { promises as fsp } from 'fs';
import type { Handle } from '../wire/handle';
import {
  AF_UNSPEC, CTA_STATS_CHAIN_TOOLONG, CTA_STATS_CLASH_RESOLVE, CTA_STATS_DELETE, CTA_STATS_DELETE_LIST,
  CTA_STATS_DROP, CTA_STATS_EARLY_DROP, CTA_STATS_ERROR, CTA_STATS_FOUND, CTA_STATS_GLOBAL_ENTRIES,
  CTA_STATS_GLOBAL_MAX_ENTRIES, CTA_STATS_IGNORE, CTA_STATS_INSERT, CTA_STATS_INSERT_FAILED, CTA_STATS_INVALID,
  CTA_STATS_NEW, CTA_STATS_SEARCHED, CTA_STATS_SEARCH_RESTART, IPCTNL_MSG_CT_GET_STATS, IPCTNL_MSG_CT_GET_STATS_CPU,
  NLM_F_DUMP,
} from '../wire/enums';
import { NFGEN_RES_ID_OFFSET, NFNL_ATTR_OFFSET, ctType, forEachAttr } from '../wire/netlink';

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

function emptyCounters(): StatsCounters {
  return { found: 0, invalid: 0, insert: 0, insertFailed: 0, drop: 0, earlyDrop: 0, error: 0, searchRestart: 0, clashResolve: 0, chainTooLong: 0 };
}

/**
 * Decodes one IPCTNL_MSG_CT_GET_STATS_CPU reply message (buf[off, off+len) is the whole
 * netlink message). Unknown or malformed attributes are skipped.
 */
export function decodeCpuStats(buf: Buffer, off: number, len: number): CpuStats {
  // A message too short for its nfgenmsg has no CPU number and no counters: zeros.
  const cpu = len >= NFNL_ATTR_OFFSET && off + NFNL_ATTR_OFFSET <= buf.length ? buf.readUInt16BE(off + NFGEN_RES_ID_OFFSET) : 0;
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

/** @internal Implementation of Conntrack.stats(). */
export async function fetchStats(ct: Handle): Promise<ConntrackStats> {
  ct.assertOpen('stats');
  const [cpuMsgs, globalMsgs] = await Promise.all([
    ct.request(ctType(IPCTNL_MSG_CT_GET_STATS_CPU), NLM_F_DUMP, AF_UNSPEC, undefined, 'reading per-CPU statistics'),
    ct.request(ctType(IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC, undefined, 'reading table statistics'),
  ]);
  const perCpu: CpuStats[] = [];
  for (const m of cpuMsgs) {
    if (m.readUInt16LE(4) !== ctType(IPCTNL_MSG_CT_GET_STATS_CPU) || m.length < NFNL_ATTR_OFFSET) continue;
    perCpu.push(decodeCpuStats(m, 0, m.length));
  }
  perCpu.sort((a, b) => a.cpu - b.cpu);
  let count = 0;
  let max: number | undefined;
  for (const m of globalMsgs) {
    if (m.readUInt16LE(4) !== ctType(IPCTNL_MSG_CT_GET_STATS) || m.length < NFNL_ATTR_OFFSET) continue;
    ({ count, max } = decodeGlobalStats(m, 0, m.length));
  }
  if (max === undefined) {
    // Kernels before 4.20 leave it out; nf_conntrack_max is global, so our own view is right.
    max = Number((await fsp.readFile('/proc/sys/net/netfilter/nf_conntrack_max', 'utf8').catch(() => '0')).trim()) || 0;
  }
  return { perCpu, total: sumCpuStats(perCpu), count, max };
}

