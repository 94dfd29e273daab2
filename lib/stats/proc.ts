/**
 * `/proc/net/stat/nf_conntrack`: one header line naming the columns (the names and their
 * number differ between kernels), then one line of hex numbers per possible CPU. The file
 * belongs to the network namespace of the process that reads it.
 */
import { existsSync, promises as fsp } from 'fs';
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import { getSystemErrorName } from 'util';
import { Netns, type NetnsOption, namespaceFiles } from '../common/netns';
import { checkKeys, isObject } from '../common/validate';

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
   * Another network namespace, named like `Conntrack.open({ netns })`: a name under
   * /var/run/netns, a path (`/proc/PID/ns/net`, a bind mount such as
   * `/var/run/netns/NAME`), a pid, or `{ fd }`. For a pid (or `/proc/PID/ns/net`) the
   * file is read as `/proc/PID/net/stat/nf_conntrack`, which procfs shows in that
   * process's namespace without any capability; for the others a native helper thread
   * joins the namespace (which needs CAP_SYS_ADMIN over it).
   */
  netns?: NetnsOption;
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

const PROC_STATS_KEYS: ReadonlySet<string> = new Set(['path', 'netns', 'signal']);

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
  if (!isObject(options as unknown)) throw invalid('options', 'must be a path or an object { path?, netns?, signal? }');
  checkKeys(options as Record<string, unknown>, PROC_STATS_KEYS, 'options', 'readProcStats()');
  if (options.path !== undefined && (typeof options.path !== 'string' || options.path === '')) {
    throw invalid('path', 'must be a non-empty string (the file to parse)');
  }
  if (options.path !== undefined && options.netns !== undefined) {
    throw invalid('netns', 'give either path or netns, not both (path already names the file to read)');
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalid('signal', 'must be an AbortSignal');
  if (signal?.aborted) throw abortError('readProcStats', signal);

  if (options.netns === undefined) return parseProcStats(await readText(options.path ?? PROC_STATS_PATH, signal));
  const byPid = pidFile(options.netns);
  if (byPid !== undefined) return parseProcStats(await readPidFile(byPid, signal));
  const ns = Netns.open(options.netns);
  try {
    return parseProcStats(await readInNetns(ns));
  } finally {
    ns.close();
  }
}

/**
 * For a namespace named by a pid, or by `/proc/PID/ns/net` (also `/proc/self/...` and
 * `/proc/PID/task/TID/...`): the process's own view of the file, `/proc/PID/net/...`,
 * which procfs shows in that process's network namespace. Undefined for anything else
 * (names, other paths, descriptors, malformed values: Netns.open() handles those).
 */
function pidFile(netns: NetnsOption): { file: string; proc: string; pid: string } | undefined {
  let base: string | undefined;
  if (typeof netns === 'number') {
    if (Number.isInteger(netns) && netns > 0) base = `/proc/${netns}`;
  } else if (typeof netns === 'string') {
    if (/^\d+$/.test(netns)) base = `/proc/${netns}`;
    else base = /^(\/proc\/(?:\d+|self)(?:\/task\/\d+)?)\/ns\/net$/.exec(netns)?.[1];
  }
  if (base === undefined) return undefined;
  return { file: `${base}/net/stat/nf_conntrack`, proc: base, pid: base.split('/')[2] };
}

async function readPidFile(target: { file: string; proc: string; pid: string }, signal: AbortSignal | undefined): Promise<string> {
  try {
    return await fsp.readFile(target.file, { encoding: 'utf8', signal });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') throw abortError('readProcStats', signal);
    const code = e.code ?? 'EIO';
    const errno = e.errno !== undefined ? Math.abs(e.errno) : undefined;
    if (code === 'ENOENT' && !existsSync(target.proc)) {
      throw new ConntrackError('ENOENT', `readProcStats: no such process or namespace: pid ${target.pid} (${target.proc} does not exist; the process may have exited): pass the pid of a running process, a name created with \`ip netns add NAME\`, or { fd }`, { errno, syscall: 'open', field: 'netns', cause: err });
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ConntrackError(code, `readProcStats: reading ${target.file} failed (${code}): procfs refused this process the file of pid ${target.pid}; pass a bind mount such as /var/run/netns/NAME, or { fd }, to read them by joining the namespace instead (which needs CAP_SYS_ADMIN over it)`, { errno, syscall: 'open', field: 'netns', cause: err });
    }
    throw procReadError(target.file, code, errno, err);
  }
}

/**
 * The statistics file as a thread in `ns` sees it: /proc/thread-self/net follows the
 * reading thread's namespace (/proc/net follows the thread group leader's).
 */
async function readInNetns(ns: Netns): Promise<string> {
  const file = '/proc/thread-self/net/stat/nf_conntrack';
  const [res] = await namespaceFiles(ns, [{ op: 'read', path: file }], 'readProcStats');
  if (!res.ok) {
    const errno = res.errno ?? 5;
    throw procReadError(`${file} in network namespace ${ns.label}`, getSystemErrorName(-errno), errno);
  }
  return res.data ?? '';
}

async function readText(file: string, signal: AbortSignal | undefined): Promise<string> {
  try {
    return await fsp.readFile(file, { encoding: 'utf8', signal });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.name === 'AbortError') throw abortError('readProcStats', signal);
    throw procReadError(file, e.code ?? 'EIO', e.errno !== undefined ? Math.abs(e.errno) : undefined, err);
  }
}

function procReadError(file: string, code: string, errno: number | undefined, cause?: unknown): ConntrackError {
  let hint = '';
  if (code === 'ENOENT') hint = ': the nf_conntrack module is not loaded (modprobe nf_conntrack), or the namespace is gone';
  return new ConntrackError(code, `reading ${file} failed: ${code}${hint}`, { errno, syscall: 'open', cause });
}
