/**
 * The nf_conntrack sysctls (/proc/sys/net/netfilter/nf_conntrack_*) of a network
 * namespace: read as one typed object, written all-or-nothing.
 *
 * A sysctl file shows the namespace of the thread that opens it, so another namespace's
 * sysctls are read and written by netnsFiles() of the addon, on a helper thread that joins
 * the namespace (the JavaScript thread never changes namespace).
 */
import { getSystemErrorName } from 'util';
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import { type Netns, namespaceFiles } from '../common/netns';
import { checkBoolean, checkInt, checkKeys, checkObject, checkSignal, isObject, show } from '../common/validate';
import type { NetnsFileOp } from '../wire/native';

const SYSCTL_DIR = '/proc/sys/net/netfilter';
const PREFIX = 'nf_conntrack_';

// ---------------------------------------------------------------------------------------
// The settings

/** `nf_conntrack_events`: off, on, or (Linux 5.18+, the default there) on when someone listens. */
export type EventsSetting = boolean | 'auto';

/**
 * The nf_conntrack sysctls of one network namespace, as `ct.settings.get()` returns them.
 * Fields are present when the running kernel has the sysctl (protocol timeouts depend on
 * the kernel's configuration; `helper` was removed in Linux 6.0).
 */
export interface ConntrackSettings {
  /** nf_conntrack_max: table limit, 0 = none. Global; writable only from the initial namespace. */
  max: number;
  /** nf_conntrack_buckets: hash table size. Global; writable only from the initial namespace. */
  buckets: number;
  /** nf_conntrack_count: entries in this namespace's table (read-only). */
  count: number;
  /** nf_conntrack_expect_max: expectation limit. Global; writable only from the initial namespace. */
  expectMax?: number;
  /** nf_conntrack_acct: byte and packet counters on new entries. */
  acct: boolean;
  /** nf_conntrack_timestamp: start/stop timestamps on new entries. */
  timestamp: boolean;
  /** nf_conntrack_checksum: verify checksums of tracked packets. */
  checksum?: boolean;
  /** nf_conntrack_events: event delivery. */
  events: EventsSetting;
  /** nf_conntrack_helper: automatic helper assignment (Linux < 6.0 only). */
  helper?: boolean;
  /** nf_conntrack_log_invalid: protocol number whose invalid packets are logged (0 none, 255 all). */
  logInvalid?: number;
  /** nf_conntrack_tcp_loose: pick up TCP connections already in progress. */
  tcpLoose?: boolean;
  /** nf_conntrack_tcp_be_liberal: accept out-of-window TCP packets. */
  tcpBeLiberal?: boolean;
  /** nf_conntrack_tcp_ignore_invalid_rst (Linux 5.14+). */
  tcpIgnoreInvalidRst?: boolean;
  /** nf_conntrack_tcp_max_retrans: retransmissions before the max_retrans timeout applies. */
  tcpMaxRetrans?: number;
  /** nf_conntrack_frag6_high_thresh / _low_thresh: IPv6 reassembly memory (bytes). */
  frag6HighThresh?: number;
  frag6LowThresh?: number;
  /** Timeouts, in seconds (nf_conntrack_<name>_timeout...). */
  genericTimeout?: number;
  icmpTimeout?: number;
  icmpv6Timeout?: number;
  udpTimeout?: number;
  udpTimeoutStream?: number;
  tcpTimeoutSynSent?: number;
  tcpTimeoutSynRecv?: number;
  tcpTimeoutEstablished?: number;
  tcpTimeoutFinWait?: number;
  tcpTimeoutCloseWait?: number;
  tcpTimeoutLastAck?: number;
  tcpTimeoutTimeWait?: number;
  tcpTimeoutClose?: number;
  tcpTimeoutMaxRetrans?: number;
  tcpTimeoutUnacknowledged?: number;
  sctpTimeoutClosed?: number;
  sctpTimeoutCookieWait?: number;
  sctpTimeoutCookieEchoed?: number;
  sctpTimeoutEstablished?: number;
  sctpTimeoutShutdownSent?: number;
  sctpTimeoutShutdownRecd?: number;
  sctpTimeoutShutdownAckSent?: number;
  sctpTimeoutHeartbeatSent?: number;
  sctpTimeoutHeartbeatAcked?: number;
  dccpTimeoutRequest?: number;
  dccpTimeoutRespond?: number;
  dccpTimeoutPartopen?: number;
  dccpTimeoutOpen?: number;
  dccpTimeoutCloseReq?: number;
  dccpTimeoutClosing?: number;
  dccpTimeoutTimewait?: number;
  greTimeout?: number;
  greTimeoutStream?: number;
  frag6Timeout?: number;
  /** nf_conntrack_* files this library does not know, by file name, as the raw text. */
  extra: Record<string, string>;
}

/** What `settings.set()` accepts: any writable subset. */
export type SettingsUpdate = Partial<Omit<ConntrackSettings, 'count' | 'extra'>>;

type Kind = 'int' | 'bool' | 'events' | 'timeout' | 'readonly';

interface Descriptor {
  key: keyof ConntrackSettings;
  file: string;
  kind: Kind;
  min?: number;
  max?: number;
  /** Global setting: read-only outside the initial network namespace. */
  global?: boolean;
}

const INT_MAX = 2147483647;
/** proc_dointvec_jiffies refuses seconds above INT_MAX / HZ; HZ is at most 1000. */
const TIMEOUT_MAX = Math.floor(INT_MAX / 1000);

const DESCRIPTORS: Descriptor[] = [
  { key: 'max', file: 'max', kind: 'int', min: 0, max: INT_MAX, global: true },
  { key: 'buckets', file: 'buckets', kind: 'int', min: 1, max: INT_MAX, global: true },
  { key: 'count', file: 'count', kind: 'readonly' },
  { key: 'expectMax', file: 'expect_max', kind: 'int', min: 1, max: INT_MAX, global: true },
  { key: 'acct', file: 'acct', kind: 'bool' },
  { key: 'timestamp', file: 'timestamp', kind: 'bool' },
  { key: 'checksum', file: 'checksum', kind: 'bool' },
  { key: 'events', file: 'events', kind: 'events' },
  { key: 'helper', file: 'helper', kind: 'bool' },
  { key: 'logInvalid', file: 'log_invalid', kind: 'int', min: 0, max: 255 },
  { key: 'tcpLoose', file: 'tcp_loose', kind: 'bool' },
  { key: 'tcpBeLiberal', file: 'tcp_be_liberal', kind: 'bool' },
  { key: 'tcpIgnoreInvalidRst', file: 'tcp_ignore_invalid_rst', kind: 'bool' },
  { key: 'tcpMaxRetrans', file: 'tcp_max_retrans', kind: 'int', min: 0, max: 255 },
  { key: 'frag6HighThresh', file: 'frag6_high_thresh', kind: 'int', min: 0, max: INT_MAX },
  { key: 'frag6LowThresh', file: 'frag6_low_thresh', kind: 'int', min: 0, max: INT_MAX },
  ...(
    [
      'generic_timeout', 'icmp_timeout', 'icmpv6_timeout', 'udp_timeout', 'udp_timeout_stream',
      'tcp_timeout_syn_sent', 'tcp_timeout_syn_recv', 'tcp_timeout_established', 'tcp_timeout_fin_wait',
      'tcp_timeout_close_wait', 'tcp_timeout_last_ack', 'tcp_timeout_time_wait', 'tcp_timeout_close',
      'tcp_timeout_max_retrans', 'tcp_timeout_unacknowledged',
      'sctp_timeout_closed', 'sctp_timeout_cookie_wait', 'sctp_timeout_cookie_echoed', 'sctp_timeout_established',
      'sctp_timeout_shutdown_sent', 'sctp_timeout_shutdown_recd', 'sctp_timeout_shutdown_ack_sent',
      'sctp_timeout_heartbeat_sent', 'sctp_timeout_heartbeat_acked',
      'dccp_timeout_request', 'dccp_timeout_respond', 'dccp_timeout_partopen', 'dccp_timeout_open',
      'dccp_timeout_closereq', 'dccp_timeout_closing', 'dccp_timeout_timewait',
      'gre_timeout', 'gre_timeout_stream', 'frag6_timeout',
    ] as const
  ).map((file): Descriptor => ({ key: timeoutKey(file), file, kind: 'timeout', min: 0, max: TIMEOUT_MAX })),
];

function timeoutKey(file: string): keyof ConntrackSettings {
  if (file === 'dccp_timeout_closereq') return 'dccpTimeoutCloseReq';
  return file.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()) as keyof ConntrackSettings;
}

const BY_KEY = new Map<string, Descriptor>(DESCRIPTORS.map((d) => [d.key, d]));
const BY_FILE = new Map<string, Descriptor>(DESCRIPTORS.map((d) => [d.file, d]));

/** The sysctl name of a setting, for messages: `net.netfilter.nf_conntrack_max`. */
function sysctlName(key: string): string {
  const d = BY_KEY.get(key);
  return d ? `net.netfilter.${PREFIX}${d.file}` : key;
}

function decode(d: Descriptor, raw: string): number | boolean | 'auto' | undefined {
  const t = raw.trim();
  if (!/^-?\d+$/.test(t)) return undefined;
  const n = Number(t);
  if (d.kind === 'bool') return n !== 0;
  if (d.kind === 'events') return n === 2 ? 'auto' : n !== 0;
  return n;
}

/** Validates one value; returns the text to write. Throws ERR_INVALID_ARGUMENT naming the key. */
function encode(key: string, value: unknown): string {
  const d = BY_KEY.get(key);
  if (!d) {
    throw invalid(key, `unknown setting; known settings are ${DESCRIPTORS.filter((x) => x.kind !== 'readonly').map((x) => x.key).join(', ')}`);
  }
  switch (d.kind) {
    case 'readonly':
      throw invalid(key, `is read-only (${sysctlName(key)} reports the number of entries in the table); it cannot be set`);
    case 'bool':
      return checkBoolean(value, key) ? '1' : '0';
    case 'events':
      if (value === 'auto') return '2';
      if (typeof value !== 'boolean') throw invalid(key, `must be true, false or 'auto', got ${show(value)}`);
      return value ? '1' : '0';
    case 'int':
    case 'timeout': {
      return String(checkInt(value, d.min!, d.max!, key, undefined, d.kind === 'timeout' ? ' seconds' : ''));
    }
  }
}

/** Why a set() was refused: the stage, the errno and the file's mode bits. */
interface Refusal {
  stage: 'check' | 'write';
  errno: number;
  mode?: number;
  rolledBack?: boolean;
}

/** Reads and, where the kernel allows it, writes the nf_conntrack sysctls of one namespace. */
/** The options object of settings.get() and set(): { signal }. */
function checkSettingsOptions(options: unknown, what: string): void {
  if (!isObject(options)) throw invalid('options', 'must be an object like { signal }');
  checkKeys(options, SETTINGS_OPTION_KEYS, 'options', what);
  checkSignal(options.signal, 'options.signal');
}
const SETTINGS_OPTION_KEYS = new Set(['signal']);

export class Settings {
  /** @internal `assertOpen` throws ERR_CLOSED once the handle is closed. */
  constructor(private readonly ns: Netns | undefined, private readonly assertOpen: (operation: string) => void = () => undefined) {}

  /**
   * Reads every nf_conntrack sysctl of the namespace.
   *
   * @example
   * const s = await ct.settings.get();
   * console.log(`${s.count} of ${s.max} entries, accounting ${s.acct ? 'on' : 'off'}`);
   */
  async get(options: { signal?: AbortSignal } = {}): Promise<ConntrackSettings> {
    this.assertOpen('settings.get');
    checkSettingsOptions(options, 'settings.get()');
    if (options.signal?.aborted) throw abortError('settings.get', options.signal);
    const [list] = await namespaceFiles(this.ns, [{ op: 'list', path: SYSCTL_DIR, prefix: PREFIX, read: true }], 'settings.get');
    if (options.signal?.aborted) throw abortError('settings.get', options.signal);
    if (!list.ok) {
      const code = getSystemErrorName(-(list.errno ?? 5));
      throw new ConntrackError(code === 'ENOENT' ? 'ERR_UNSUPPORTED' : code,
        `reading ${SYSCTL_DIR} failed: ${code}${code === 'ENOENT' ? ' (is the nf_conntrack module loaded?)' : ''}`,
        { errno: list.errno, syscall: list.syscall ?? 'opendir' });
    }
    const extra: Record<string, string> = {};
    const out: Record<string, unknown> = { extra };
    for (const e of list.entries ?? []) {
      if (e.isDirectory || e.data === undefined) continue;
      const d = BY_FILE.get(e.name.slice(PREFIX.length));
      const v = d ? decode(d, e.data) : undefined;
      if (d && v !== undefined) out[d.key] = v;
      else extra[e.name] = e.data.trim();
    }
    if (out.max === undefined || out.count === undefined) {
      throw new ConntrackError('ERR_UNSUPPORTED', `${SYSCTL_DIR} has no nf_conntrack_max/nf_conntrack_count: is the nf_conntrack module loaded?`);
    }
    return out as unknown as ConntrackSettings;
  }

  /**
   * Changes settings, all or nothing: every value is validated before anything is
   * written, every file is read and checked for write access before the first write, and
   * if the kernel refuses a write the ones already made are put back. Resolves with the
   * previous values of the settings it changed (pass them to set() again to restore).
   * A signal is honoured before the first write, never between writes.
   *
   * Refusals: ERR_INVALID_ARGUMENT (bad value; `field` names it), ERR_UNSUPPORTED (the
   * kernel has no such sysctl), EACCES (read-only here: `max`, `buckets` and `expectMax`
   * are global and can be changed only from the initial network namespace; or not root),
   * or the kernel's errno for a value it rejects.
   *
   * @example
   * const previous = await ct.settings.set({ acct: true, tcpTimeoutEstablished: 3600 });
   * // ... later
   * await ct.settings.set(previous);
   */
  async set(values: SettingsUpdate, options: { signal?: AbortSignal } = {}): Promise<SettingsUpdate> {
    this.assertOpen('settings.set');
    checkSettingsOptions(options, 'settings.set()');
    checkObject(values, 'values', '{ acct: true, tcpTimeoutEstablished: 3600 }');
    const keys = Object.keys(values).filter((k) => (values as Record<string, unknown>)[k] !== undefined);
    const writes = keys.map((key) => ({ key, value: encode(key, (values as Record<string, unknown>)[key]), path: `${SYSCTL_DIR}/${PREFIX}${BY_KEY.get(key)!.file}` }));
    if (writes.length === 0) return {};
    if (options.signal?.aborted) throw abortError('settings.set', options.signal);

    // 1. The old value and write access of every file; refuse before writing anything.
    const checks = await namespaceFiles(this.ns, writes.flatMap((w): NetnsFileOp[] => [{ op: 'read', path: w.path }, { op: 'stat', path: w.path }]), 'settings.set');
    const old: string[] = [];
    for (let i = 0; i < writes.length; i++) {
      const read = checks[2 * i];
      const stat = checks[2 * i + 1];
      if (!read.ok) throw refusal(writes[i].key, writes[i].value, { stage: 'check', errno: read.errno ?? 5, mode: stat.mode });
      if (!stat.ok || stat.writable === false) throw refusal(writes[i].key, writes[i].value, { stage: 'check', errno: stat.errno ?? 13, mode: stat.mode });
      old.push(read.data ?? '');
    }
    if (options.signal?.aborted) throw abortError('settings.set', options.signal);

    // 2. The writes, stopping at the first the kernel refuses.
    const results = await namespaceFiles(this.ns, writes.map((w): NetnsFileOp => ({ op: 'write', path: w.path, data: w.value })), 'settings.set', true);
    const failed = results.findIndex((r) => !r.ok);
    if (failed >= 0) {
      // 3. Put back what was written before it, newest first.
      let rolledBack = true;
      if (failed > 0) {
        const undo: NetnsFileOp[] = [];
        for (let j = failed - 1; j >= 0; j--) undo.push({ op: 'write', path: writes[j].path, data: old[j] });
        try {
          rolledBack = (await namespaceFiles(this.ns, undo, 'settings.set')).every((r) => r.ok);
        } catch {
          rolledBack = false;
        }
      }
      const stat = checks[2 * failed + 1];
      throw refusal(writes[failed].key, writes[failed].value, { stage: 'write', errno: results[failed].errno ?? 5, mode: stat.mode, rolledBack });
    }
    const previous: Record<string, unknown> = {};
    writes.forEach((w, i) => {
      previous[w.key] = decode(BY_KEY.get(w.key)!, old[i]);
    });
    return previous as SettingsUpdate;
  }
}

function refusal(key: string, value: string, res: Refusal): ConntrackError {
  const d = BY_KEY.get(key)!;
  const name = sysctlName(key);
  const code = getSystemErrorName(-res.errno);
  const errno = res.errno;
  const opts = { errno, field: key, syscall: res.stage === 'write' ? 'write' : 'open' };
  if (res.stage === 'check' && code === 'ENOENT') {
    const why = key === 'helper' ? ' (it was removed in Linux 6.0; assign helpers with rules instead)' : '';
    return new ConntrackError('ERR_UNSUPPORTED', `settings.set: ${key} (${name}) does not exist on this kernel${why}; nothing was changed`, opts);
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    const readOnlyHere = res.mode !== undefined && (res.mode & 0o222) === 0;
    let why: string;
    if (readOnlyHere && d.global) {
      why = `it is read-only outside the initial network namespace: nf_conntrack_max, nf_conntrack_buckets (the hash size) ` +
        `and nf_conntrack_expect_max are global to the whole machine, so change them from the initial namespace as real root`;
    } else if (readOnlyHere) {
      why = 'it is read-only in this namespace on this kernel';
    } else {
      why = 'writing sysctls needs root (CAP_NET_ADMIN over the namespace, and the sysctl files writable: /proc/sys must not be mounted read-only)';
    }
    return new ConntrackError(code, `settings.set: cannot change ${key} (${name}): ${code}: ${why}; nothing was changed`, opts);
  }
  const undone = res.stage === 'write' ? (res.rolledBack ? '; the settings written before it were restored' : '; restoring the settings written before it also failed') : '; nothing was changed';
  return new ConntrackError(code, `settings.set: the kernel refused ${key}=${value} (${name}): ${code}${undone}`, opts);
}
