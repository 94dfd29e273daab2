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
import type { UpdateChanges, UpdateMatchingOptions } from './entry-types';
import { CHANGES_ONLY, ResolvedChanges, resolveChanges, updatedStatus, writeChanges } from './entry-spec';
import { keyLength, matchDump, writeKey } from './matching';
import { RawEntry, labelByte, scanEntry } from './raw-entry';
import { fixedTimeout } from './entries';

const OPTION_KEYS = new Set(['signal']);

/** True when applying `r` would change the entry (what `conntrack -U` checks before sending). */
function changes(r: ResolvedChanges, e: RawEntry, buf: Buffer): boolean {
  if (r.mark !== undefined && ((((e.mark & ~r.mark.mask) | r.mark.value) >>> 0) !== e.mark >>> 0)) return true;
  if (r.timeout !== undefined && r.timeout !== e.timeout) return true;
  if (r.hasStatus && updatedStatus(r, e.status) !== e.status >>> 0) return true;
  if (r.labels) {
    for (let i = 0; i < 16; i++) {
      const cur = labelByte(buf, e, i);
      if (((cur & ~r.labels.mask[i]) | r.labels.bits[i]) !== cur) return true;
    }
  }
  return false;
}

/** Updates of one family gathered from the dump, sent with one requestMany() call. */
interface Batch {
  family: number;
  w: AttrWriter;
  ends: number[];
  /** Key length of each item (its payload starts with its key), for the EBUSY re-read. */
  keyLens: number[];
}

/** Updates sent per requestMany() call. */
const BATCH = 256;

/** Writes the request payload for one entry: its key, the shared change attributes, its status word. */
function writePayload(w: AttrWriter, buf: Buffer, e: RawEntry, tail: Buffer, r: ResolvedChanges): number {
  const kl = keyLength(e);
  const o = w.raw(kl + tail.length + (r.hasStatus ? 8 : 0));
  const out = w.buffer;
  writeKey(buf, e, out, o);
  for (let i = 0; i < tail.length; i++) out[o + kl + i] = tail[i];
  if (r.hasStatus) {
    const s = o + kl + tail.length;
    const v = updatedStatus(r, e.status);
    out[s] = 8;
    out[s + 1] = 0;
    out[s + 2] = CTA_STATUS & 0xff;
    out[s + 3] = CTA_STATUS >> 8;
    out[s + 4] = v >>> 24;
    out[s + 5] = (v >>> 16) & 0xff;
    out[s + 6] = (v >>> 8) & 0xff;
    out[s + 7] = v & 0xff;
  }
  return kl;
}

/**
 * An update refused with EBUSY: the status word was computed from a dump that raced with
 * the entry's own progress (say SEEN_REPLY set by a reply meanwhile). Read it again and
 * retry once. Resolves true when the entry was changed.
 */
async function retryStatus(ct: Handle, family: number, key: Buffer, r: ResolvedChanges, tail: Buffer): Promise<boolean> {
  let reply: Buffer | undefined;
  try {
    const replies = await ct.request(ctType(IPCTNL_MSG_CT_GET), 0, family, key, 'updateMatching (re-read)');
    reply = replies[0];
  } catch (err) {
    if ((err as ConntrackError).code === 'ENOENT') return false;
    throw err;
  }
  if (!reply) return false;
  const e = scanEntry(reply, 0, reply.length, new RawEntry());
  if (e.origAttr < 0 || !changes(r, e, reply)) return false;
  const w = new AttrWriter();
  writePayload(w, reply, e, tail, r);
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, family, w.finish(), 'updateMatching');
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
  const r = resolveChanges(c, { prefix: 'changes.', keys: CHANGES_ONLY });
  if (!isObject(options)) throw invalid('options', 'must be an object like { signal }');
  checkKeys(options, OPTION_KEYS, 'options', 'updateMatching()');
  const signal = checkSignal(options.signal, 'options.signal');
  const compiled = compileFilter(filter);
  if (signal?.aborted) throw abortError('updateMatching', signal);

  const w = new AttrWriter();
  writeChanges(w, r, undefined);
  const tail = w.finish();

  // The dump's decode step checks each entry on its bytes and writes its update straight
  // into its family's batch; the loop below only receives full batches to send.
  const open = new Map<number, Batch>();
  const take = (family: number): Batch | undefined => {
    const b = open.get(family);
    open.delete(family);
    return b;
  };
  const { dump } = matchDump(ct, compiled, undefined, 'updateMatching (dump)', { signal, highWaterMark: 16 }, false, (m) => {
    if (!changes(r, m.raw, m.buf)) return undefined;
    let b = open.get(m.family);
    if (!b) open.set(m.family, (b = { family: m.family, w: new AttrWriter(BATCH * 128), ends: [], keyLens: [] }));
    b.keyLens.push(writePayload(b.w, m.buf, m.raw, tail, r));
    b.ends.push(b.w.length);
    return b.ends.length >= BATCH ? take(m.family) : undefined;
  }, false, false);

  let changed = 0;
  let failure: ConntrackError | undefined;
  const busy: { family: number; key: Buffer }[] = [];
  const window = new RequestWindow<void>(() => undefined, () => undefined);
  const type = ctType(IPCTNL_MSG_CT_NEW);
  const onError = (e: ConntrackError, b: Batch, payloads: Buffer, item: number): void => {
    // Gone by itself meanwhile (expired, deleted elsewhere): not an error, not counted.
    if (e.code === 'ENOENT') return;
    if (e.code === 'EBUSY' && r.hasStatus) {
      const start = item === 0 ? 0 : b.ends[item - 1];
      busy.push({ family: b.family, key: Buffer.from(payloads.subarray(start, start + b.keyLens[item])) });
      return;
    }
    failure ??= e.code === 'ENOSPC' && r.labels ? labelsRefused(e)
      : r.timeout !== undefined ? (fixedTimeout(e, 'updateMatching', 'changes.timeout') as ConntrackError) : e;
  };
  const send = (b: Batch): Promise<void> | undefined => {
    let left = b.ends.length;
    let finish!: () => void;
    const done = new Promise<void>((res) => (finish = res));
    const payloads = b.w.take();
    ct.requestMany(type, 0, b.family, payloads, Uint32Array.from(b.ends), {
      operation: 'updateMatching',
      ackOnly: true,
      message() {
        /* acks only */
      },
      done(err, item) {
        if (err) onError(err, b, payloads, item);
        else changed++;
        if (--left === 0) finish();
      },
    });
    return window.addBatch(b.ends.length, done);
  };
  try {
    for await (const b of dump) {
      if (failure) break;
      const full = send(b);
      if (full) await full;
    }
    for (const family of [...open.keys()]) if (!failure) send(take(family)!);
  } catch (err) {
    failure ??= err as ConntrackError;
  }
  await window.drain();
  if (!failure) {
    for (const p of busy) {
      try {
        if (await retryStatus(ct, p.family, p.key, r, tail)) changed++;
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
