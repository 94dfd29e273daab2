/**
 * Deleting by filter: flush() and deleteMatching(). A filter the kernel's own flush can
 * express goes there in one request; anything else is a filtered dump with pipelined
 * deletes by tuple and id, each entry checked here before it is deleted.
 */
import { checkKeys, checkSignal } from '../common/validate';
import type { Handle } from '../wire/handle';
import { AF_UNSPEC, CTA_STATS_GLOBAL_ENTRIES, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_STATS } from '../wire/enums';
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import { checkObject } from '../common/validate';
import { RequestWindow } from '../common/window';
import { NFNL_ATTR_OFFSET, ctType, forEachAttr } from '../wire/netlink';
import { CompiledFilter, FlowFilter, compileFilter } from './filter';
import type { Flow } from './flow';
import type { DeleteMatchingOptions } from './entry-types';
import { matchDump } from './matching';

// Only a mark filter is handed to the kernel's flush: a kernel that did not know a flush
// filter attribute would ignore it and flush the whole table, and mark filtering of flushes
// is long-standing, while status filtering is recent. Everything else (status included)
// goes through a dump where the library checks every entry before deleting it.
const FLUSH_KERNEL_KEYS = new Set(['mark']);

/** True when the kernel's filtered flush expresses the whole filter by itself. */
function kernelFlushable(filter: FlowFilter | undefined): boolean {
  const f = (filter ?? {}) as Record<string, unknown>;
  return Object.keys(f).every((k) => f[k] === undefined || FLUSH_KERNEL_KEYS.has(k));
}

/** The table's entry count (CTA_STATS_GLOBAL_ENTRIES of IPCTNL_MSG_CT_GET_STATS). */
async function entryCount(ct: Handle): Promise<number> {
  const replies = await ct.request(ctType(IPCTNL_MSG_CT_GET_STATS), 0, AF_UNSPEC, undefined, 'deleteMatching (count)');
  let n = -1;
  for (const m of replies) {
    forEachAttr(m, NFNL_ATTR_OFFSET, m.length, (type, pos, pend) => {
      if (type === CTA_STATS_GLOBAL_ENTRIES && pend - pos >= 4) n = m.readUInt32BE(pos);
    });
  }
  if (n < 0) throw new ConntrackError('ERR_PROTOCOL', 'deleteMatching: the kernel sent no entry count');
  return n;
}

const DELETE_KEYS = new Set(['signal', 'exact']);

/** ct.flush(). */
export async function flushEntries(ct: Handle, filter?: FlowFilter, options: DeleteMatchingOptions = {}): Promise<void> {
  ct.assertOpen('flush');
  if (options === null || typeof options !== 'object') throw invalid('options', 'must be an object like { signal }');
  checkKeys(options as Record<string, unknown>, DELETE_KEYS, 'options', 'deleteMatching() and flush()');
  const compiled = compileFilter(filter);
  if (kernelFlushable(filter)) {
    if (options.signal?.aborted) throw abortError('flush', options.signal);
    await kernelFlush(ct, compiled, 'flush');
    return;
  }
  await deleteMatchingEntries(ct, filter, undefined, options);
}

/**
 * The kernel's own flush, one request: no tuple means "everything", CTA_MARK/CTA_MARK_MASK
 * narrow it. (The family in the header only counts with nfgen version 1, which we do not
 * send, so a family filter goes the dump-and-delete way.) Only for kernelFlushable filters.
 */
function kernelFlush(ct: Handle, compiled: CompiledFilter, operation: string): Promise<void> {
  return ct.requestAck(ctType(IPCTNL_MSG_CT_DELETE), 0, AF_UNSPEC, compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined, operation);
}

/** The keys of the entries that match `compiled` now (see matchDump). */
async function matchingKeys(ct: Handle, compiled: CompiledFilter, signal: AbortSignal | undefined): Promise<Set<string>> {
  const { dump, seen } = matchDump(ct, compiled, undefined, 'deleteMatching (count)', { signal }, false, () => true);
  await dump.toArray();
  return seen;
}

/**
 * The kernel's filtered flush, counted exactly (`exact: true`). The count is taken from the
 * table, not from DESTROY events: the kernel sends no event at all for an entry created while event
 * delivery was off or (nf_conntrack_events=2, the default) while no process anywhere on the
 * host listened for conntrack events, so events would undercount. The matching entries are
 * listed (by tuple, id and zone) before the flush and again after it; the count is how many
 * of the first list are gone. Entries that start to match while the call runs may be flushed
 * too, but are not counted: the number is what matched when deleteMatching began.
 */
async function countedFlush(ct: Handle, compiled: CompiledFilter, signal: AbortSignal | undefined): Promise<number> {
  const before = await matchingKeys(ct, compiled, signal);
  if (signal?.aborted) throw abortError('deleteMatching', signal);
  await kernelFlush(ct, compiled, 'deleteMatching (flush)');
  if (before.size === 0) return 0;
  // The flush is done; what is left over is counted even if the caller aborts now.
  const after = await matchingKeys(ct, compiled, undefined);
  let removed = 0;
  for (const k of before) if (!after.has(k)) removed++;
  return removed;
}

/** A deleteMatching() failure, with how many entries it had deleted by then. */
export type DeleteMatchingError = ConntrackError & { deleted: number };

/**
 * ct.deleteMatching(): filtered dump + pipelined deletes by tuple and id. On a failure (a
 * kernel refusal, an abort, or the predicate throwing: ERR_CALLBACK) no further delete is
 * sent, the deletes already sent are awaited, and the rejection carries `deleted`, the
 * number of entries removed.
 */
export async function deleteMatchingEntries(
  ct: Handle,
  filter: FlowFilter | undefined,
  predicate: ((flow: Flow) => boolean) | undefined,
  options: DeleteMatchingOptions = {},
): Promise<number> {
  ct.assertOpen('deleteMatching');
  if (predicate !== undefined && typeof predicate !== 'function') throw invalid('predicate', 'must be a function (flow) => boolean');
  checkObject(options, 'options', '{ signal }');
  checkKeys(options as Record<string, unknown>, DELETE_KEYS, 'options', 'deleteMatching() and flush()');
  checkSignal(options.signal, 'options.signal');
  if (options.exact !== undefined && typeof options.exact !== 'boolean') throw invalid('options.exact', 'must be true (count by listing the matches) or false (count by the table size)');
  const compiled = compileFilter(filter);
  const signal = options.signal;
  if (signal?.aborted) throw abortError('deleteMatching', signal);
  if (!predicate && kernelFlushable(filter)) {
    if (options.exact === true) return countedFlush(ct, compiled, signal);
    const before = await entryCount(ct);
    await kernelFlush(ct, compiled, 'deleteMatching (flush)');
    return Math.max(0, before - (await entryCount(ct)));
  }
  // The kernel's dump filter ignores a zone given without a tuple filter, so zones (and
  // whatever else the kernel cannot filter) are checked here on the decoded flow.
  // Every entry is checked here before it is deleted, even when the kernel filtered the
  // dump: a kernel that ignores a filter attribute must never widen a delete.
  const { dump } = matchDump(ct, compiled, predicate, 'deleteMatching (dump)', { signal, highWaterMark: 4096 }, false, (m) => m);

  let removed = 0;
  let failure: ConntrackError | undefined;
  const window = new RequestWindow(
    () => removed++,
    (err) => {
      // Gone by itself meanwhile (expired, deleted elsewhere, re-created with a new id): fine.
      if ((err as ConntrackError).code !== 'ENOENT') failure ??= err as ConntrackError;
    },
  );
  const type = ctType(IPCTNL_MSG_CT_DELETE);
  try {
    for await (const m of dump) {
      if (failure) break;
      const full = window.add(ct.requestAck(type, 0, m.family, m.key, 'deleteMatching'));
      if (full) await full;
    }
  } catch (err) {
    failure ??= err as ConntrackError;
  }
  await window.drain();
  if (!failure && signal?.aborted) failure = abortError('deleteMatching', signal);
  if (failure) {
    (failure as DeleteMatchingError).deleted = removed;
    throw failure;
  }
  return removed;
}
