/**
 * Dumping the flow table: a FlowFilter compiled into the kernel's dump filter plus the
 * library's predicate, decoded flow by flow on a dump socket of its own. Also the other
 * kernel lists (dying, unconfirmed) and dumps that zero counters as they read them.
 */
import { DUMP_OPTION_KEYS, validateDumpOptions } from '../wire/dump';
import { u16le } from '../wire/bytes';
import { bytesSignature } from '../wire/dedupe';
import { ConntrackError, invalid } from '../common/errors';
import { checkBoolean, isObject } from '../common/validate';
import { RequestWindow } from '../common/window';
import type { Dump, DumpOptions, DumpSpec } from '../wire/dump';
import {
  IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_GET_CTRZERO, IPCTNL_MSG_CT_GET_DYING,
  IPCTNL_MSG_CT_GET_UNCONFIRMED, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK, CTA_TUPLE_ORIG, NLA_TYPE_MASK,
} from '../wire/enums';
import type { Handle } from '../wire/handle';
import { NFGEN_FAMILY_OFFSET, NFNL_ATTR_OFFSET, ctType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import { CompiledFilter, FlowFilter, compileFilter } from './filter';
import { Flow, decodeFlow, isFlowFamily } from './flow';
import { matchDump } from './matching';
import { RawEntry, scanEntry } from './raw-entry';

export interface FlowDumpOptions extends DumpOptions {
  /**
   * Read and zero each entry's packet and byte counters in one step
   * (IPCTNL_MSG_CT_GET_CTRZERO, `conntrack -L -z`): the flows carry the counters as they were
   * before zeroing, so successive calls give deltas. Only entries the filter selects are
   * zeroed: with a filter of only `family` and `mark` the kernel zeroes as it dumps; list()
   * takes any other filter too, zeroing the matches one request each (dump() refuses it).
   */
  zeroCounters?: boolean;
}

/**
 * @internal Exported for tests. The signature paired with a flow's id for duplicate
 * suppression: a hash of its CTA_TUPLE_ORIG attribute's bytes (the kernel writes it first)
 * and its zone (CTA_ZONE, a later attribute: taken from the decoded flow), which tells
 * apart two entries whose 32-bit ids collide. Hashed from the bytes: no strings are read
 * per flow.
 */
export function flowSignature(f: Flow, buf: Buffer, off: number, len: number): number {
  const end = off + len;
  for (let p = off + NFNL_ATTR_OFFSET; p + 4 <= end;) {
    const l = u16le(buf, p);
    if (l < 4 || p + l > end) break;
    if ((u16le(buf, p + 2) & NLA_TYPE_MASK) === CTA_TUPLE_ORIG) return bytesSignature(buf, p, l, f.zone);
    p += (l + 3) & ~3;
  }
  return bytesSignature(buf, 0, 0, f.zone);
}

const TABLE_MSG = { conntrack: IPCTNL_MSG_CT_GET, dying: IPCTNL_MSG_CT_GET_DYING, unconfirmed: IPCTNL_MSG_CT_GET_UNCONFIRMED } as const;

/** True when the dumped message is a conntrack entry of a family we decode. */
function isFlowMessage(buf: Buffer, off: number, msgType: number): boolean {
  const m = nfnlMsg(msgType);
  if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK || (m !== IPCTNL_MSG_CT_NEW && m !== IPCTNL_MSG_CT_DELETE)) return false;
  return isFlowFamily(buf[off + NFGEN_FAMILY_OFFSET]);
}

/** The request part of a dump of `compiled` (ctnetlink message `msg`). */
function dumpRequest(compiled: CompiledFilter, msg: number): { type: number; family: number; payload: Buffer | undefined } {
  return {
    type: ctType(msg),
    family: compiled.nfFamily,
    // The dying and unconfirmed lists take no filter attributes: the library filters them.
    payload: compiled.table === 'conntrack' && compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined,
  };
}

/**
 * The dump of the flows matching `compiled` (ctnetlink message `msg`). `kept`: the caller
 * keeps every flow (list()), which decodeFlow() builds to be pretenured.
 */
function flowDumpSpec(compiled: CompiledFilter, operation: string, kept: boolean, msg: number = TABLE_MSG[compiled.table]): DumpSpec<Flow> {
  return {
    ...dumpRequest(compiled, msg),
    operation,
    decode: (buf: Buffer, off: number, len: number, msgType: number): Flow | undefined =>
      isFlowMessage(buf, off, msgType) ? decodeFlow(buf, off, len, kept) : undefined,
    // Applied even when the kernel filtered too: an older kernel that ignores CTA_FILTER
    // must not change the result. It costs a few comparisons per flow.
    match: compiled.empty ? undefined : compiled.match,
    idOf: (f: Flow) => f.id,
    signatureOf: flowSignature,
  };
}

interface Prepared {
  compiled: CompiledFilter;
  zero: boolean;
  rest: DumpOptions;
}

const FLOW_DUMP_KEYS = new Set([...DUMP_OPTION_KEYS, 'zeroCounters']);

function prepare(filter: FlowFilter | undefined, options: FlowDumpOptions | undefined): Prepared {
  if (options !== undefined && !isObject(options)) throw invalid('options', 'must be an object like { signal, zeroCounters: true }');
  if (options !== undefined) validateDumpOptions(options, FLOW_DUMP_KEYS, 'dump() and list()');
  const { zeroCounters, ...rest } = options ?? {};
  const zero = zeroCounters === undefined ? false : checkBoolean(zeroCounters, 'options.zeroCounters');
  const compiled = compileFilter(filter, 'filter', { tables: true });
  if (zero && compiled.table !== 'conntrack') {
    throw invalid('options.zeroCounters', `zeroes counters of the conntrack table only, not of the ${compiled.table} table`);
  }
  return { compiled, zero, rest };
}

/** ct.dump(). */
export function dumpFlows(h: Handle, filter: FlowFilter | undefined, options?: FlowDumpOptions): Dump<Flow> {
  const { compiled, zero, rest } = prepare(filter, options);
  if (zero && !compiled.kernelExact) {
    throw invalid('options.zeroCounters', 'dump() zeroes counters only with a filter of just family and mark (the kernel zeroes every entry it dumps, including the ones the library then filters out); list() takes any filter');
  }
  return h.startDump(flowDumpSpec(compiled, 'dump', false, zero ? IPCTNL_MSG_CT_GET_CTRZERO : undefined), rest);
}

/**
 * A dump of the conntrack table's entries that match `filter`, each handed to `sink` as
 * its message bytes (valid only during the call) instead of a Flow: for the mirror, which
 * stores the bytes. The Dump yields nothing; it ends (or fails) when the kernel's dump does.
 * Repeats of an entry (a dump racing with table changes) are passed on: the mirror keys by
 * tuple, so a repeat replaces the first copy.
 */
export function dumpRawFlows(h: Handle, filter: FlowFilter | undefined, sink: (buf: Buffer, off: number, len: number) => void, operation = 'mirror'): Dump<never> {
  const compiled = compileFilter(filter, 'filter');
  const raw = compiled.matchRaw !== undefined ? new RawEntry() : undefined;
  return h.startDump<never>({
    ...dumpRequest(compiled, IPCTNL_MSG_CT_GET),
    operation,
    decode: (buf: Buffer, off: number, len: number, msgType: number): undefined => {
      if (!isFlowMessage(buf, off, msgType)) return undefined;
      if (!compiled.empty) {
        const ok = raw !== undefined ? compiled.matchRaw!(scanEntry(buf, off, len, raw), buf) : compiled.match(decodeFlow(buf, off, len));
        if (!ok) return undefined;
      }
      sink(buf, off, len);
      return undefined;
    },
  }, { dedupe: false });
}

/** ct.list(). */
export async function listFlows(h: Handle, filter: FlowFilter | undefined, options?: FlowDumpOptions): Promise<Flow[]> {
  const { compiled, zero, rest } = prepare(filter, options);
  if (!zero || compiled.kernelExact) {
    return h.startDump(flowDumpSpec(compiled, 'list', true, zero ? IPCTNL_MSG_CT_GET_CTRZERO : undefined), rest).toArray();
  }
  return zeroMatching(h, compiled, rest);
}

/**
 * Zeroes the counters of exactly the matching entries: a plain dump picks them, then one
 * IPCTNL_MSG_CT_GET_CTRZERO per entry (pipelined) reads and zeroes each. Entries gone
 * meanwhile are left out; so is one re-created with the same tuple (another id).
 */
async function zeroMatching(h: Handle, compiled: CompiledFilter, options: DumpOptions): Promise<Flow[]> {
  const out: Flow[] = [];
  let failure: ConntrackError | undefined;
  const window = new RequestWindow<Flow | undefined>(
    (flow) => {
      if (flow) out.push(flow);
    },
    (err) => {
      if ((err as ConntrackError).code !== 'ENOENT') failure ??= err as ConntrackError;
    },
  );
  const { dump } = matchDump(h, compiled, undefined, 'list (zeroCounters)', { ...options, highWaterMark: 4096 }, true, (m) => m, false);
  const type = ctType(IPCTNL_MSG_CT_GET_CTRZERO);
  try {
    for await (const m of dump) {
      if (failure) break;
      const id = m.flow!.id;
      const got = h.request(type, 0, m.family, m.key, 'list (zeroCounters)').then((replies) => {
        const r = replies[0];
        const flow = r ? decodeFlow(r, 0, r.length) : undefined;
        return flow && flow.id === id ? flow : undefined;
      });
      const full = window.add(got);
      if (full) await full;
    }
  } catch (err) {
    failure ??= err as ConntrackError;
  }
  await window.drain();
  if (failure) throw failure;
  return out;
}
