/**
 * Bulk updates by filter: updateMatching(). The matching entries come from the same
 * filtered dump deleteMatching uses (every entry checked here), and each is updated by its
 * original tuple in pipelined requests, within the same request window.
 *
 * Like `conntrack -U`, an entry that already has the requested values is left alone and not
 * counted, so the result is the number of entries changed. The kernel's update rules, from
 * ctnetlink_change_conntrack() and ctnetlink_change_mark() in nf_conntrack_netlink.c:
 * the mark becomes (mark & ~CTA_MARK_MASK) ^ CTA_MARK, so the value is kept inside the
 * mask; labels change under CTA_LABELS_MASK; the status word is sent whole (computed from
 * each dumped entry) and SEEN_REPLY / ASSURED can never be cleared.
 */
import { CTA_STATUS, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW } from '../wire/enums';
import type { Handle } from '../wire/handle';
import { abortError } from '../common/abort';
import { ConntrackError, invalid } from '../common/errors';
import { checkKeys, checkObject, checkSignal, isObject } from '../common/validate';
import { RequestWindow } from '../common/window';
import { AttrWriter, ctType } from '../wire/netlink';
import { compileFilter, FlowFilter } from './filter';
import { decodeFlow, Flow } from './flow';
import type { UpdateChanges, UpdateMatchingOptions } from './entry-types';
import { ResolvedChanges, resolveChanges, updatedStatus, writeChanges } from './entry-spec';
import { matchDump } from './matching';
import { fixedTimeout } from './entries';

const OPTION_KEYS = new Set(['signal']);

/** The label bitmap of a decoded flow as the kernel stores it (four host-order words). */
function labelWordsOf(flow: Flow): Buffer {
  const b = Buffer.alloc(16);
  for (const bit of flow.labels ?? []) {
    const o = (bit >> 5) * 4;
    if (o < 16) b.writeUInt32LE((b.readUInt32LE(o) | (1 << (bit & 31))) >>> 0, o);
  }
  return b;
}

/** True when applying `r` would change `flow` (what `conntrack -U` checks before sending). */
function changes(r: ResolvedChanges, flow: Flow): boolean {
  if (r.mark !== undefined && ((((flow.mark & ~r.mark.mask) | r.mark.value) >>> 0) !== flow.mark >>> 0)) return true;
  if (r.timeout !== undefined && r.timeout !== flow.timeout) return true;
  if (r.hasStatus && updatedStatus(r, flow.statusBits) !== flow.statusBits >>> 0) return true;
  if (r.labels) {
    const cur = labelWordsOf(flow);
    for (let i = 0; i < 16; i++) if (((cur[i] & ~r.labels.mask[i]) | r.labels.bits[i]) !== cur[i]) return true;
  }
  return false;
}

interface Pending {
  family: number;
  key: Buffer;
  payload: Buffer;
}

interface Batch {
  family: number;
  items: Pending[];
}

/** Updates sent per requestMany() call. */
const BATCH = 256;

/** The request payload for one entry: its key, the shared change attributes, its status word. */
function payloadFor(key: Buffer, tail: Buffer, r: ResolvedChanges, flow: Flow): Buffer {
  const out = Buffer.allocUnsafe(key.length + tail.length + (r.hasStatus ? 8 : 0));
  key.copy(out, 0);
  tail.copy(out, key.length);
  if (r.hasStatus) {
    const o = key.length + tail.length;
    out.writeUInt16LE(8, o);
    out.writeUInt16LE(CTA_STATUS, o + 2);
    out.writeUInt32BE(updatedStatus(r, flow.statusBits), o + 4);
  }
  return out;
}

/**
 * An update refused with EBUSY: the status word was computed from a dump that raced with
 * the entry's own progress (say SEEN_REPLY set by a reply meanwhile). Read it again and
 * retry once. Resolves true when the entry was changed.
 */
async function retryStatus(ct: Handle, p: Pending, r: ResolvedChanges, tail: Buffer): Promise<boolean> {
  let flow: Flow | undefined;
  try {
    const replies = await ct.request(ctType(IPCTNL_MSG_CT_GET), 0, p.family, p.key, 'updateMatching (re-read)');
    if (replies.length > 0) flow = decodeFlow(replies[0], 0, replies[0].length);
  } catch (err) {
    if ((err as ConntrackError).code === 'ENOENT') return false;
    throw err;
  }
  if (!flow || !changes(r, flow)) return false;
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, p.family, payloadFor(p.key, tail, r, flow), 'updateMatching');
    return true;
  } catch (err) {
    if ((err as ConntrackError).code === 'ENOENT') return false;
    throw err;
  }
}

function labelsRefused(err: ConntrackError): ConntrackError {
  return new ConntrackError(
    'ERR_UNSUPPORTED',
    'updateMatching: changes.labels: an entry has no connlabel space (it was created before this network namespace used labels), ' +
      'so the kernel cannot store labels on it (ENOSPC). Entries changed before this one stay changed',
    { errno: err.errno, field: 'changes.labels', cause: err },
  );
}

/** ct.updateMatching(). */
export async function updateMatchingEntries(
  ct: Handle,
  filter: FlowFilter | undefined,
  changesSpec: UpdateChanges,
  options: UpdateMatchingOptions = {},
): Promise<number> {
  ct.assertOpen('updateMatching');
  const c = checkObject(changesSpec, 'changes', '{ mark: 2 } or { mark: { value: 0x10, mask: 0xf0 }, timeout: 60 }');
  const r = resolveChanges(c, { prefix: 'changes.', ignore: new Set() });
  if (!isObject(options)) throw invalid('options', 'must be an object like { signal }');
  checkKeys(options, OPTION_KEYS, 'options', 'updateMatching()');
  const signal = checkSignal(options.signal, 'options.signal');
  const compiled = compileFilter(filter);
  if (signal?.aborted) throw abortError('updateMatching', signal);

  const w = new AttrWriter();
  writeChanges(w, r, undefined);
  const tail = w.finish();

  const { dump } = matchDump(ct, compiled, undefined, 'updateMatching (dump)', { signal, highWaterMark: 4096 }, true, (m) => {
    if (!changes(r, m.flow!)) return undefined;
    return { family: m.family, key: m.key, payload: payloadFor(m.key, tail, r, m.flow!) };
  }, false);

  let changed = 0;
  let failure: ConntrackError | undefined;
  const busy: Pending[] = [];
  const window = new RequestWindow<void>(() => undefined, () => undefined);
  const type = ctType(IPCTNL_MSG_CT_NEW);
  const onError = (e: ConntrackError, p: Pending): void => {
    // Gone by itself meanwhile (expired, deleted elsewhere): not an error, not counted.
    if (e.code === 'ENOENT') return;
    if (e.code === 'EBUSY' && r.hasStatus) {
      busy.push(p);
      return;
    }
    failure ??= e.code === 'ENOSPC' && r.labels ? labelsRefused(e)
      : r.timeout !== undefined ? (fixedTimeout(e, 'updateMatching', 'changes.timeout') as ConntrackError) : e;
  };
  // Updates go out in batches of one family (one requestMany() each, no promise per entry).
  const batches = new Map<number, Batch>();
  const send = (b: Batch): Promise<void> | undefined => {
    batches.delete(b.family);
    const items = b.items;
    let left = items.length;
    let finish!: () => void;
    const done = new Promise<void>((res) => (finish = res));
    const payloads = Buffer.concat(items.map((p) => p.payload));
    const ends = new Uint32Array(items.length);
    let end = 0;
    for (let i = 0; i < items.length; i++) ends[i] = end += items[i].payload.length;
    ct.requestMany(type, 0, b.family, payloads, ends, {
      operation: 'updateMatching',
      ackOnly: true,
      message() {
        /* acks only */
      },
      done(err, item) {
        if (err) onError(err, items[item]);
        else changed++;
        if (--left === 0) finish();
      },
    });
    return window.addBatch(items.length, done);
  };
  try {
    for await (const p of dump) {
      if (failure) break;
      let b = batches.get(p.family);
      if (!b) batches.set(p.family, (b = { family: p.family, items: [] }));
      b.items.push(p);
      if (b.items.length >= BATCH) {
        const full = send(b);
        if (full) await full;
      }
    }
    for (const b of [...batches.values()]) if (!failure) send(b);
  } catch (err) {
    failure ??= err as ConntrackError;
  }
  await window.drain();
  if (!failure) {
    for (const p of busy) {
      try {
        if (await retryStatus(ct, p, r, tail)) changed++;
      } catch (err) {
        failure = err as ConntrackError;
        break;
      }
    }
  }
  if (failure) throw failure;
  if (signal?.aborted) throw abortError('updateMatching', signal);
  return changed;
}
