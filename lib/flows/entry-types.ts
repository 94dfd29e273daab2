/**
 * The shapes callers use to name, create and change entries, and what bulk operations
 * resolve with. An entry is named the way a Flow names itself, so a Flow from list() can
 * be passed straight back.
 */
import type { ConntrackError } from '../common/errors';
import type { StatusFlag } from '../wire/enums';
import type { ProtoSpec } from './protocols';

/** One direction of an entry, as given by a caller. */
export interface EntryTuple {
  src: string;
  dst: string;
  /** Ports, required for TCP, UDP, UDP-Lite, SCTP, DCCP (GRE: the keys). */
  sport?: number;
  dport?: number;
  /** ICMP / ICMPv6 identity; `code` and `id` default to 0. */
  icmp?: { type: number; code?: number; id?: number };
  /** Per-direction tuple zone (rare; most callers use the entry's `zone`). */
  zone?: number;
}

/**
 * Names one entry: the shape a Flow has, so a Flow from `list()` can be passed back.
 * `id` (a Flow's) makes the operation miss an entry that was deleted and re-created with
 * the same tuple meanwhile.
 */
export interface EntryKey {
  /** A name (built-in, or from /etc/protocols) or a number 0-255. */
  proto: ProtoSpec;
  /** The original tuple; names the entry when given. */
  orig?: EntryTuple;
  /** The reply tuple; names the entry when `orig` is absent (or with `direction: 'reply'`). */
  reply?: EntryTuple;
  /** Conntrack zone (default 0). */
  zone?: number;
  /** The kernel's id of the entry (Flow.id). */
  id?: number;
}

export interface GetOptions {
  /**
   * Which tuple names the entry: `'orig'` uses key.orig, `'reply'` key.reply. Default:
   * orig when the key has it, else reply.
   */
  direction?: 'orig' | 'reply';
  /**
   * Read and zero the entry's packet and byte counters in one step
   * (IPCTNL_MSG_CT_GET_CTRZERO): the Flow has the counters as they were before zeroing.
   * With an `id` that no longer matches (the entry was re-created), the get rejects with
   * ENOENT but the new entry's counters were zeroed.
   */
  zeroCounters?: boolean;
}

/** TCP flag names as Flow.tcp.flagsOrig shows them (IP_CT_TCP_FLAG_*). */
export type TcpFlag =
  | 'WINDOW_SCALE' | 'SACK_PERM' | 'CLOSE_INIT' | 'BE_LIBERAL' | 'DATA_UNACKNOWLEDGED'
  | 'MAXACK_SET' | 'EXP_CHALLENGE_ACK' | 'SIMULTANEOUS_OPEN';

/**
 * A change to one direction's TCP tracking flags (CTA_PROTOINFO_TCP_FLAGS_*): the flags in
 * `mask` become as in `flags`; the others stay. `mask` defaults to `flags` (set them).
 * Names, or the bits as a number.
 */
export interface TcpFlagsChange {
  flags: TcpFlag[] | number;
  mask?: TcpFlag[] | number;
}

/**
 * TCP window tracking state to set (CTA_PROTOINFO_TCP_*), e.g. BE_LIBERAL on both sides as
 * `conntrack -I` sets for the entries it creates. Window scales (0-14) go in pairs and need
 * WINDOW_SCALE on both sides: the kernel ignores them otherwise.
 */
export interface TcpSpec {
  flagsOrig?: TcpFlagsChange;
  flagsReply?: TcpFlagsChange;
  wscaleOrig?: number;
  wscaleReply?: number;
}

/** A NAT mapping requested at creation. */
export interface NatTarget {
  /** The address to map to (same family as the entry). */
  address: string;
  /** The port to map to (port protocols only); default: keep the port. */
  port?: number;
}

/** Status flags a caller may set (the kernel refuses or ignores the others). */
export type SettableStatusFlag = 'SEEN_REPLY' | 'ASSURED' | 'FIXED_TIMEOUT';

export interface CreateSpec {
  /** A name (built-in, or from /etc/protocols) or a number 0-255. */
  proto: ProtoSpec;
  orig: EntryTuple;
  /**
   * The reply tuple. Default: the inverse of `orig`; with `nat` the kernel then rewrites
   * it (SNAT changes reply.dst/dport, DNAT reply.src/sport) and sets SRC_NAT / DST_NAT.
   */
  reply?: EntryTuple;
  /** Seconds until the entry expires (required, >= 1). */
  timeout: number;
  mark?: number;
  zone?: number;
  /** Flags to set: SEEN_REPLY, ASSURED, FIXED_TIMEOUT. */
  status?: readonly SettableStatusFlag[];
  /** TCP, SCTP or DCCP state name, e.g. 'ESTABLISHED' (the CLI's LISTEN is SYN_SENT2). */
  state?: string;
  /**
   * TCP window tracking flags and window scales (TCP entries only). Not `tcp`: that is the
   * Flow's read-only view, and a Flow can be passed back to update().
   */
  tcpWindow?: TcpSpec;
  /** Connlabel bit numbers (0-127) to set; the namespace needs label space (see docs). */
  labels?: number[];
  /** Name of a conntrack helper to attach (e.g. 'ftp'). */
  helper?: string;
  nat?: { src?: NatTarget; dst?: NatTarget };
}

export interface UpdateSpec extends EntryKey {
  /** New mark, or `{ value, mask }` to change only the bits in mask. */
  mark?: number | { value: number; mask: number };
  /** New timeout in seconds (>= 1). */
  timeout?: number;
  /**
   * Status flags to set (array), or `{ set }`. The kernel only ever sets flags of an
   * existing entry (SEEN_REPLY, ASSURED, FIXED_TIMEOUT stay once set), so a non-empty
   * `unset` is refused. Other flags may be listed only when the entry already has them (so
   * a Flow can be passed back with changes). Once FIXED_TIMEOUT is set, the kernel refuses
   * timeout changes (EPERM).
   */
  status?: readonly StatusFlag[] | { set?: readonly StatusFlag[]; unset?: readonly SettableStatusFlag[] };
  /** Labels: an array replaces all labels; `{ set, unset }` changes only those bits. */
  labels?: number[] | { set?: number[]; unset?: number[] };
  /** New TCP/SCTP/DCCP state name. */
  state?: string;
  /** TCP window tracking flags and window scales to change (TCP entries only). */
  tcpWindow?: TcpSpec;
}

/**
 * What updateMatching() changes on every matching entry: the same fields as UpdateSpec
 * except `state` and `tcpWindow` (per protocol, so per entry). `status` may only name settable
 * flags here.
 */
export interface UpdateChanges {
  mark?: UpdateSpec['mark'];
  timeout?: number;
  status?: SettableStatusFlag[] | { set?: SettableStatusFlag[]; unset?: SettableStatusFlag[] };
  labels?: UpdateSpec['labels'];
}

export interface UpdateMatchingOptions {
  /** Stops the operation; the promise rejects with ERR_ABORTED (updates already acked stay done). */
  signal?: AbortSignal;
}

export interface DeleteMatchingOptions {
  /** Stops the operation; the promise rejects with ERR_ABORTED (deletes already acked stay done). */
  signal?: AbortSignal;
  /**
   * deleteMatching only: how the count is made when the kernel's filtered flush does the
   * work (a filter of only a mark, and no predicate). One request deletes every match; the
   * kernel does not say how many.
   * - false (default): the count is how much the table shrank (its entry count read before
   *   and after). Exact when nothing else creates or expires entries meanwhile; otherwise
   *   off by that many. The fastest way.
   * - true: the matching entries are listed (tuple, zone, id) before the flush and again
   *   after it; the count is how many of the first list are gone, whatever else happens in
   *   the table. Costs one more dump (bench/RESULTS-entries.md has the figures).
   * (DESTROY events cannot give the count: the kernel sends none for entries created while
   * nobody listened for events.) Other filters always dump, then delete each match by
   * tuple and id: an exact count.
   */
  exact?: boolean;
}


/** What createMany() and deleteMany() resolve with. */
export interface BulkResult {
  /** Items the kernel acknowledged. */
  ok: number;
  /** Items the kernel refused (EEXIST, ENOENT, ...), by their index in the input. */
  errors: { index: number; error: ConntrackError }[];
}

