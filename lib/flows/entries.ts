/**
 * Single-entry operations: get, create, update and delete, each one request on the
 * handle's request socket (pipelined with others issued in the same tick).
 */
import type { Handle } from '../wire/handle';
import { IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK, NLM_F_CREATE, NLM_F_EXCL } from '../wire/enums';
import { ConntrackError, invalid } from '../common/errors';
import { NFGEN_FAMILY_OFFSET, ctType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import { Flow, decodeFlow, isFlowFamily, statusNames } from './flow';
import type { CreateSpec, EntryKey, GetOptions, UpdateSpec } from './entry-types';
import { checkObject, show } from '../common/validate';
import { FAMILY_NUM, SETTABLE, encodeCreate, encodeKeyRequest, encodeUpdate, resolveUpdate } from './entry-spec';

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
export async function getEntry(ct: Handle, key: EntryKey, options: GetOptions = {}): Promise<Flow> {
  ct.assertOpen('get');
  checkObject(options, 'options', "{ direction: 'reply' }");
  const dir = options.direction ?? 'orig';
  if (dir !== 'orig' && dir !== 'reply') throw invalid('options.direction', `must be 'orig' or 'reply', got ${show(dir)}`);
  const { family, payload, key: k } = encodeKeyRequest(key, dir, false);
  const flow = decodeOne(await ct.request(ctType(IPCTNL_MSG_CT_GET), 0, family, payload, 'get'));
  if (!flow) throw new ConntrackError('ERR_PROTOCOL', 'get: the kernel acknowledged but sent no entry');
  if (k.id !== undefined && flow.id !== k.id) throw notFound('get');
  return flow;
}

/** ct.create(). Not an async function: bulk callers make 100k of these at once. */
export function createEntry(ct: Handle, spec: CreateSpec): Promise<void> {
  let enc: ReturnType<typeof encodeCreate>;
  try {
    ct.assertOpen('create');
    enc = encodeCreate(spec);
  } catch (err) {
    return Promise.reject(err);
  }
  const sent = ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), NLM_F_CREATE | NLM_F_EXCL, enc.family, enc.payload, 'create');
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

/** ct.update(). */
export async function updateEntry(ct: Handle, spec: UpdateSpec): Promise<void> {
  ct.assertOpen('update');
  const r = resolveUpdate(spec);
  let current: number | undefined;
  if (r.key.id !== undefined || r.hasStatus) {
    // The kernel ignores CTA_ID on updates, so the id is checked here first; the status word
    // must be sent whole, so it is read too.
    const flow = await getEntry(ct, spec);
    current = flow.statusBits;
    const missing = r.statusFixed & ~current;
    if (missing) {
      throw invalid('status', `the kernel does not let callers set ${statusNames(missing).join(', ')}; settable flags are ${Object.keys(SETTABLE).join(', ')} (flags the entry already has may be listed)`);
    }
  }
  await ct.requestAck(ctType(IPCTNL_MSG_CT_NEW), 0, FAMILY_NUM[r.key.family], encodeUpdate(r, current), 'update');
}

/** ct.delete(). Not an async function, like createEntry(). */
export function deleteEntry(ct: Handle, key: EntryKey): Promise<void> {
  let enc: ReturnType<typeof encodeKeyRequest>;
  try {
    ct.assertOpen('delete');
    enc = encodeKeyRequest(key, 'orig', true);
  } catch (err) {
    return Promise.reject(err);
  }
  return ct.requestAck(ctType(IPCTNL_MSG_CT_DELETE), 0, enc.family, enc.payload, 'delete');
}
