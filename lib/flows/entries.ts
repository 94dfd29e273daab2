/**
 * Single-entry operations: get, create, update and delete, each one request on the
 * handle's request socket (pipelined with others issued in the same tick).
 */
import type { Handle } from '../wire/handle';
import {
  IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_GET_CTRZERO, IPCTNL_MSG_CT_NEW, IPS_ASSURED_BIT, IPS_SEEN_REPLY_BIT,
  NFNL_SUBSYS_CTNETLINK, NLM_F_CREATE, NLM_F_EXCL,
} from '../wire/enums';
import { ConntrackError, invalid } from '../common/errors';
import { type AttrWriter, NFGEN_FAMILY_OFFSET, ctType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import { Flow, decodeFlow, isFlowFamily, statusNames } from './flow';
import type { CreateSpec, EntryKey, GetOptions, UpdateSpec } from './entry-types';
import { checkBoolean, checkKeys, checkObject, show } from '../common/validate';
import { FAMILY_NUM, SETTABLE, encodeCreate, encodeKey, encodeKeyRequest, encodeUpdate, needsScaleFlags, readUpdateFast, resolveKey, resolveUpdate, writeCreate, writeCreateFast, writeKeyFast, writeUpdateFast } from './entry-spec';
import type { FastUpdate, ResolvedUpdate } from './entry-spec';
import { explainTableFull } from './table-full';

function decodeOne(replies: Buffer[]): Flow | undefined {
  for (const m of replies) {
    const type = m.readUInt16LE(4);
    if (nfnlSubsys(type) === NFNL_SUBSYS_CTNETLINK && nfnlMsg(type) === IPCTNL_MSG_CT_NEW && isFlowFamily(m[NFGEN_FAMILY_OFFSET])) {
      return decodeFlow(m, 0, m.length);
    }
  }
  return undefined;
}

function notFound(op: string): ConntrackError {
  return new ConntrackError('ENOENT', `${op} failed: ENOENT: no such entry`, { errno: 2 });
}

/** ct.get(): the flow named by key. */
const GET_KEYS = new Set(['direction', 'zeroCounters']);

export async function getEntry(ct: Handle, key: EntryKey, options: GetOptions = {}): Promise<Flow> {
  ct.assertOpen('get');
  checkObject(options, 'options', "{ direction: 'reply' }");
  checkKeys(options as Record<string, unknown>, GET_KEYS, 'options', 'get()');
  const dir = options.direction;
  if (dir !== undefined && dir !== 'orig' && dir !== 'reply') throw invalid('options.direction', `must be 'orig' or 'reply', got ${show(dir)}`);
  const zero = options.zeroCounters === undefined ? false : checkBoolean(options.zeroCounters, 'options.zeroCounters');
  const { family, payload, key: k } = encodeKeyRequest(key, dir, false);
  const msg = zero ? IPCTNL_MSG_CT_GET_CTRZERO : IPCTNL_MSG_CT_GET;
  const flow = decodeOne(await ct.request(ctType(msg), 0, family, payload, 'get'));
  if (!flow) throw new ConntrackError('ERR_PROTOCOL', 'get: the kernel acknowledged but sent no entry');
  if (k.id !== undefined && flow.id !== k.id) throw notFound('get');
  return flow;
}

/** Writes a create spec that has no labels; returns its family. */
function writeCreateFamily(w: AttrWriter, spec: CreateSpec): number {
  const fast = writeCreateFast(w, spec);
  return fast >= 0 ? fast : writeCreate(w, spec).family;
}

/** ct.create(). Not an async function: bulk callers make 100k of these at once. */
export function createEntry(ct: Handle, spec: CreateSpec): Promise<void> {
  let enc: ReturnType<typeof encodeCreate>;
  try {
    ct.assertOpen('create');
    // Without labels (nothing to check afterwards) the spec is encoded straight into the
    // socket's outgoing buffer.
    if (spec === null || typeof spec !== 'object' || !('labels' in spec)) {
      return ct.requestAckEncoded(ctType(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL, writeCreateFamily, spec, 'create', explainTableFull);
    }
    enc = encodeCreate(spec);
  } catch (err) {
    return Promise.reject(err);
  }
  const sent = ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL, enc.family, enc.payload, 'create', explainTableFull);
  const labels = enc.labels;
  if (!labels || labels.every((b) => b === 0)) return sent;
  return sent.then(() => checkLabelsKept(ct, spec));
}

/**
 * The kernel drops labels silently when the namespace has no label space: check, and undo
 * the creation so the caller is never left with a half-made entry.
 */
async function checkLabelsKept(ct: Handle, spec: CreateSpec): Promise<void> {
  let flow: Flow | undefined;
  try {
    flow = await getEntry(ct, spec as EntryKey);
  } catch {
    return; // gone already (expired or deleted by someone else)
  }
  if (!flow.labels || flow.labels.length === 0) {
    try {
      await deleteEntry(ct, { ...(spec as EntryKey), id: flow.id });
    } catch {
      /* already gone */
    }
    throw new ConntrackError(
      'ERR_UNSUPPORTED',
      'create: labels: this network namespace has no connlabel space, so the kernel cannot store labels. ' +
        "Load a ruleset that sets labels first (e.g. nft add rule inet t c ct label set 127), then retry; the entry was not kept",
      { field: 'labels' },
    );
  }
}

/** The error of an update that gave a timeout, as fixedTimeout() explains it. */
const explainFixedTimeout = async (_ct: Handle, err: unknown): Promise<unknown> => fixedTimeout(err, 'update', 'timeout');

/**
 * ct.update(). Not an async function: bulk callers make 100k of these at once. An update of
 * the common shape (a port protocol's original tuple, mark and timeout, no id or status) is
 * encoded straight into the socket's outgoing buffer; any other goes through resolveUpdate().
 */
export function updateEntry(ct: Handle, spec: UpdateSpec): Promise<void> {
  let fast: FastUpdate | undefined;
  try {
    ct.assertOpen('update');
    fast = readUpdateFast(spec);
  } catch (err) {
    return Promise.reject(err);
  }
  if (fast === undefined) return updateResolved(ct, spec);
  return ct.requestAckEncoded(ctType(IPCTNL_MSG_CT_NEW), 0, writeUpdateFast, fast, 'update', fast.timeout !== undefined ? explainFixedTimeout : undefined);
}

async function updateResolved(ct: Handle, spec: UpdateSpec): Promise<void> {
  const r = resolveUpdate(spec);
  let current: number | undefined;
  let prior: Flow | undefined;
  const scales = needsScaleFlags(r);
  if (r.key.id !== undefined || r.hasStatus || scales) {
    // The kernel ignores CTA_ID on updates, so the id is checked here first; the status word
    // must be sent whole, so it is read too; window scales need WINDOW_SCALE on both sides.
    const flow = await getEntry(ct, spec);
    prior = flow;
    current = flow.statusBits;
    if (scales) checkScaleFlags(r, flow);
    const missing = r.statusFixed & ~current;
    if (missing) {
      throw invalid('status', `the kernel does not let callers set ${statusNames(missing).join(', ')}; settable flags are ${Object.keys(SETTABLE).join(', ')} (flags the entry already has may be listed)`);
    }
  }
  const family = FAMILY_NUM[r.key.family];
  let rest: ResolvedUpdate = r;
  let restoreLabels: (() => Promise<void>) | undefined;
  if (r.labels && hasOtherChanges(r)) {
    // The kernel applies an update attribute by attribute and refuses labels last (ENOSPC
    // on an entry without label space), after mark, timeout and the rest took effect. So
    // labels go first, on their own: refused, nothing changed; accepted, and the rest then
    // fails, the labels are put back as they were.
    const before = prior ?? (await getEntry(ct, spec));
    await updateLabels(ct, family, { ...r, labels: r.labels });
    const old = labelBits(before.labels);
    restoreLabels = () => updateLabels(ct, family, { ...r, labels: { bits: old, mask: r.labels!.mask } });
    rest = { ...r, labels: undefined };
  }
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, family, encodeUpdate(rest, current), 'update');
  } catch (err) {
    if (restoreLabels) await restoreLabels().catch(() => undefined);
    throw r.timeout !== undefined ? fixedTimeout(err, 'update', 'timeout') : err;
  }
}

/** True when an update changes more than labels. */
function hasOtherChanges(r: ResolvedUpdate): boolean {
  return r.mark !== undefined || r.timeout !== undefined || r.hasStatus || r.state !== undefined || r.tcp !== undefined;
}

/** A labels-only update of the entry `r` names; ENOSPC becomes ERR_UNSUPPORTED (nothing changed). */
async function updateLabels(ct: Handle, family: number, r: ResolvedUpdate): Promise<void> {
  const only: ResolvedUpdate = { key: r.key, statusSet: 0, statusUnset: 0, statusFixed: 0, hasStatus: false, labels: r.labels };
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, family, encodeUpdate(only, undefined), 'update');
  } catch (err) {
    if ((err as ConntrackError).code !== 'ENOSPC') throw err;
    throw new ConntrackError(
      'ERR_UNSUPPORTED',
      'update: labels: this entry has no connlabel space (it was created before this network namespace used labels), ' +
        'so the kernel cannot store labels on it (ENOSPC). Nothing was changed. Load a ruleset that sets labels ' +
        '(e.g. nft add rule inet t c ct label set 127) before the entry is created',
      { errno: (err as ConntrackError).errno, field: 'labels', cause: err },
    );
  }
}

/** Label bit numbers as the kernel's bitmap (host-order 32-bit words). */
function labelBits(labels: readonly number[] | undefined): Buffer {
  const words = Buffer.alloc(16);
  for (const b of labels ?? []) {
    const w = b >> 5;
    words.writeUInt32LE((words.readUInt32LE(w * 4) | (1 << (b & 31))) >>> 0, w * 4);
  }
  return words;
}

/**
 * The kernel answers EPERM to a timeout change on an entry with FIXED_TIMEOUT
 * (__nf_ct_change_timeout()); the handle's open() already proved the permission, so say so.
 */
export function fixedTimeout(err: unknown, operation: string, field: string): unknown {
  const e = err as ConntrackError;
  if (e?.code !== 'EPERM') return err;
  return new ConntrackError('EPERM', `${operation} failed: EPERM: ${field}: the entry has FIXED_TIMEOUT, and the kernel refuses to change its timeout (the flag cannot be cleared); leave ${field} out`, {
    errno: e.errno, syscall: operation, field, cause: e,
  });
}

/**
 * Window scales are applied by the kernel only when WINDOW_SCALE is on in both directions
 * (nlattr_to_tcp() in nf_conntrack_proto_tcp.c), and ignored silently otherwise.
 */
function checkScaleFlags(r: ReturnType<typeof resolveUpdate>, flow: Flow): void {
  for (const [dir, now] of [['flagsOrig', flow.tcp?.flagsOrig], ['flagsReply', flow.tcp?.flagsReply]] as const) {
    const change = r.tcp?.[dir];
    const has = change && change.mask & 1 ? (change.flags & 1) !== 0 : (now ?? []).includes('WINDOW_SCALE');
    if (!has) {
      throw invalid(`tcpWindow.${dir}`, 'the entry lacks WINDOW_SCALE in this direction, and the kernel applies window scales only with it on both sides: add WINDOW_SCALE to the flags');
    }
  }
}

/** ct.delete(). Not an async function, like createEntry(). */
export function deleteEntry(ct: Handle, key: EntryKey): Promise<void> {
  try {
    ct.assertOpen('delete');
    return ct.requestAckEncoded(ctType(IPCTNL_MSG_CT_DELETE), 0, writeDeleteKey, key, 'delete');
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Writes a delete's key (with its id, when given) straight into the request buffer; returns its family. */
function writeDeleteKey(w: AttrWriter, key: EntryKey): number {
  const fast = writeKeyFast(w, key);
  if (fast >= 0) return fast;
  const k = resolveKey(key);
  encodeKey(w, k, true);
  return FAMILY_NUM[k.family];
}

const NEVER_CLEARED = (1 << IPS_SEEN_REPLY_BIT) | (1 << IPS_ASSURED_BIT);

/**
 * ct.upsert(): create, or update the existing entry, in one request (IPCTNL_MSG_CT_NEW
 * with NLM_F_CREATE and without NLM_F_EXCL). On an existing entry the kernel
 * (ctnetlink_change_conntrack()) applies timeout, status (setting flags only), protocol
 * state and TCP flags, mark, labels, sequence adjustments and synproxy; it refuses NAT
 * (ENOTSUP: NAT is set only at creation), a different helper (EBUSY) and a timeout on
 * an entry with FIXED_TIMEOUT (EPERM), and ignores the reply tuple.
 */
export async function upsertEntry(ct: Handle, spec: CreateSpec): Promise<void> {
  ct.assertOpen('upsert');
  const enc = encodeCreate(spec);
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), NLM_F_CREATE, enc.family, enc.payload, 'upsert');
  } catch (err) {
    const e = err as ConntrackError;
    if (e.code === 'EBUSY' && spec.status !== undefined && spec.helper === undefined) {
      await upsertKeepingFlags(ct, spec);
    } else if (e.code === 'EPERM') {
      throw fixedTimeout(e, 'upsert', 'timeout');
    } else if (e.code === 'ENOTSUP' && spec.nat !== undefined) {
      throw new ConntrackError(
        'ENOTSUP',
        'upsert failed: ENOTSUP: nat: the entry exists, and the kernel sets NAT only when it creates an entry; delete it first, or upsert without nat',
        { errno: e.errno, syscall: 'upsert', field: 'nat', cause: e },
      );
    } else throw err;
  }
  if (enc.labels && !enc.labels.every((b) => b === 0)) await checkLabelsKept(ct, spec);
}

/**
 * The existing entry has SEEN_REPLY or ASSURED and the spec's status word lacks them: the
 * kernel refuses to clear those (EBUSY). Send the word again with the entry's own
 * SEEN_REPLY / ASSURED kept, as an update only; create after all if it vanished meanwhile.
 */
async function upsertKeepingFlags(ct: Handle, spec: CreateSpec): Promise<void> {
  let flow: Flow;
  try {
    flow = await getEntry(ct, spec as EntryKey);
  } catch (err) {
    if ((err as ConntrackError).code === 'ENOENT') return createEntry(ct, spec);
    throw err;
  }
  const keep = statusNames(flow.statusBits & NEVER_CLEARED);
  const status = [...new Set([...(spec.status ?? []), ...keep])] as CreateSpec['status'];
  const enc = encodeCreate({ ...spec, status });
  try {
    await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, enc.family, enc.payload, 'upsert');
  } catch (err) {
    if ((err as ConntrackError).code === 'ENOENT') return createEntry(ct, spec);
    throw fixedTimeout(err, 'upsert', 'timeout');
  }
}
