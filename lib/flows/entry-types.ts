/**
 * The shapes callers use to name, create and change entries, and what bulk operations
 * resolve with. An entry is named the way a Flow names itself, so a Flow from list() can
 * be passed straight back.
 */
import type { ConntrackError } from '../common/errors';
import type { Proto, StatusFlag } from '../wire/enums';

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
  proto: Proto | number;
  orig?: EntryTuple;
  reply?: EntryTuple;
  /** Conntrack zone (default 0). */
  zone?: number;
  /** The kernel's id of the entry (Flow.id). */
  id?: number;
}

export interface GetOptions {
  /** Which tuple names the entry: `'orig'` (default) uses key.orig, `'reply'` key.reply. */
  direction?: 'orig' | 'reply';
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
  proto: Proto | number;
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
  status?: SettableStatusFlag[];
  /** TCP, SCTP or DCCP state name, e.g. 'ESTABLISHED'. */
  state?: string;
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
   * Status flags to set (array), or `{ set, unset }`. SEEN_REPLY and ASSURED can only be
   * set; FIXED_TIMEOUT can be set and cleared. Other flags may be listed only when the entry
   * already has them (so a Flow can be passed back with changes).
   */
  status?: StatusFlag[] | { set?: StatusFlag[]; unset?: SettableStatusFlag[] };
  /** Labels: an array replaces all labels; `{ set, unset }` changes only those bits. */
  labels?: number[] | { set?: number[]; unset?: number[] };
  /** New TCP/SCTP/DCCP state name. */
  state?: string;
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

