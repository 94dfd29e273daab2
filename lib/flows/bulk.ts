/**
 * Bulk operations (createMany, deleteMany): every item is validated and encoded first (a
 * bad one refuses the whole call before anything is sent), then the items stream to the
 * kernel pipelined, without a promise per item.
 */
import { explainTableFull } from './table-full';
import type { Handle } from '../wire/handle';
import type { ReplyHandler } from '../wire/socket';
import { IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, NLM_F_EXCL } from '../wire/enums';
import { ConntrackError, invalid } from '../common/errors';
import { AttrWriter, ctType } from '../wire/netlink';
import type { BulkResult, CreateSpec, EntryKey } from './entry-types';
import { FAMILY_NUM, encodeKey, resolveKey, writeCreate, writeCreateFast, writeKeyFast } from './entry-spec';
import { upsertEntry } from './entries';

/** Prefixes a validation error's field with the item's place in a bulk call. */
function atIndex(err: unknown, index: number): unknown {
  if (err instanceof ConntrackError && err.code === 'ERR_INVALID_ARGUMENT') {
    const field = `items[${index}]${err.field ? '.' + err.field : ''}`;
    return new ConntrackError(err.code, `${field}: ${err.message.replace(/^[^:]*: /, '')}`, { field });
  }
  return err;
}

/** Settles one bulk call: counts the per-item outcomes, resolves after the last. */
class BulkHandler {
  readonly ackOnly = true;
  ok = 0;
  errors: { index: number; error: ConntrackError }[] = [];
  private left: number;
  constructor(readonly operation: string, count: number, private readonly resolve: (r: BulkResult) => void, private readonly indexMap: Uint32Array) {
    this.left = count;
    if (count === 0) resolve({ ok: 0, errors: [] });
  }
  message(): void {
    /* acks only */
  }
  done(err: ConntrackError | undefined, item: number): void {
    if (err) this.errors.push({ index: this.indexMap[item] ?? item, error: err });
    else this.ok++;
    if (--this.left === 0) {
      this.errors.sort((a, b) => a.index - b.index);
      this.resolve({ ok: this.ok, errors: this.errors });
    }
  }
}

/** A growable list of u32 (item ends and indexes: no JS array of 100k numbers). */
type U32List = { a: Uint32Array; n: number };

function push(l: U32List, v: number): void {
  if (l.n === l.a.length) {
    const next = new Uint32Array(l.a.length * 2);
    next.set(l.a);
    l.a = next;
  }
  l.a[l.n++] = v;
}

/** One family's items: their messages back to back, where each ends, and its index in the call. */
type Group = { w: AttrWriter; ends: U32List; index: U32List };

function newGroup(known: number): Group {
  const n = known > 0 ? known : 256;
  return { w: new AttrWriter(1 << 16), ends: { a: new Uint32Array(n), n: 0 }, index: { a: new Uint32Array(n), n: 0 } };
}

/**
 * Validates and encodes every item (nothing is sent if any is refused), groups them by
 * family, and sends each group as one requestMany() batch.
 */
function bulk<T>(
  ct: Handle,
  items: Iterable<T>,
  operation: string,
  msg: number,
  flags: number,
  write: (w: AttrWriter, item: T) => number,
): Promise<BulkResult> {
  try {
    ct.assertOpen(operation);
    if (items === null || typeof (items as Iterable<T>)?.[Symbol.iterator] !== 'function') {
      throw invalid('items', 'must be an array (or iterable) of entries');
    }
    const groups = new Map<number, Group>();
    const known = Array.isArray(items) ? items.length : -1;
    // Items are written straight into their family's writer (a refused item refuses the
    // whole call, so nothing needs undoing): into the last item's group, moved when the
    // item turns out to be of another family.
    let cur: Group | undefined;
    let curFamily = -1;
    let i = 0;
    for (const item of items) {
      if (!cur) cur = newGroup(known);
      const start = cur.w.length;
      let family: number;
      try {
        family = write(cur.w, item);
      } catch (err) {
        throw atIndex(err, i);
      }
      if (family !== curFamily) {
        let g = groups.get(family);
        if (!g) {
          // The first item of a family: the current writer becomes its group when unused.
          g = curFamily === -1 ? cur : newGroup(-1);
          groups.set(family, g);
        }
        if (g !== cur) {
          g.w.appendRange(cur.w, start, cur.w.length);
          cur.w.truncate(start);
        }
        cur = g;
        curFamily = family;
      }
      // An array's first item tells about how large all of them are: room for every item
      // at once instead of regrowing (and copying) the buffer a dozen times.
      if (i === 0 && known > 1) cur.w.reserve((cur.w.length - start) * (known - 1) + 4096);
      push(cur.ends, cur.w.length);
      push(cur.index, i);
      i++;
    }
    const total = i;
    return new Promise<BulkResult>((resolve) => {
      const batches: [number, Group, number][] = [];
      let indexMap: Uint32Array;
      if (groups.size === 1) {
        const [family, g] = groups.entries().next().value as [number, Group];
        indexMap = g.index.a.subarray(0, g.index.n);
        batches.push([family, g, 0]);
      } else {
        indexMap = new Uint32Array(total);
        let base = 0;
        for (const [family, g] of groups) {
          indexMap.set(g.index.a.subarray(0, g.index.n), base);
          batches.push([family, g, base]);
          base += g.index.n;
        }
      }
      const handler = new BulkHandler(operation, total, resolve, indexMap);
      for (const [family, g, start] of batches) {
        // Item numbers in a batch start at 0: shift them into the shared index map.
        const shifted: ReplyHandler = { operation, ackOnly: true, message() {}, done: (err, item) => handler.done(err, start + item) };
        ct.requestMany(ctType(msg), flags, family, g.w.take(), g.ends.a.subarray(0, g.ends.n), shifted);
      }
    });
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Encodes a create or upsert spec for a bulk call (labels refused: see createMany). */
function writeBulkCreate(operation: string, single: string): (w: AttrWriter, spec: CreateSpec) => number {
  return (w, spec) => {
    const fast = writeCreateFast(w, spec);
    if (fast >= 0) return fast;
    const { family, labels } = writeCreate(w, spec);
    if (labels) {
      throw invalid('labels', `${operation} does not take labels (the kernel may drop them silently); use ${single}() for entries with labels`);
    }
    return family;
  };
}

/** ct.createMany(). */
export function createMany(ct: Handle, specs: Iterable<CreateSpec>): Promise<BulkResult> {
  return bulk(ct, specs, 'createMany', IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, writeBulkCreate('createMany', 'create'))
    .then((r) => explainBulkTableFull(ct, r, 'createMany'));
}

/** Rewrites the ENOMEM refusals of a bulk result as table-full errors (one stats request). */
async function explainBulkTableFull(ct: Handle, r: BulkResult, operation: string): Promise<BulkResult> {
  const first = r.errors.find((e) => e.error.code === 'ENOMEM');
  if (!first) return r;
  const full = (await explainTableFull(ct, first.error, operation)) as ConntrackError;
  if (full === first.error) return r;
  for (const e of r.errors) if (e.error.code === 'ENOMEM' && e.error.syscall === first.error.syscall) e.error = full;
  return r;
}

/**
 * ct.upsertMany(): createMany() without NLM_F_EXCL, so existing entries are updated. Items
 * the kernel refused with EBUSY because the existing entry has SEEN_REPLY or ASSURED that
 * the item's status lacks get the same second try as upsert() (one request each).
 */
export async function upsertMany(ct: Handle, specs: Iterable<CreateSpec>): Promise<BulkResult> {
  if (specs === null || typeof (specs as Iterable<CreateSpec>)?.[Symbol.iterator] !== 'function') {
    throw invalid('items', 'must be an array (or iterable) of entries');
  }
  const items = Array.isArray(specs) ? specs : [...specs];
  const result = await bulk(ct, items, 'upsertMany', IPCTNL_MSG_CT_NEW, NLM_F_CREATE, writeBulkCreate('upsertMany', 'upsert'));
  const errors: BulkResult['errors'] = [];
  for (const e of result.errors) {
    const spec = items[e.index];
    if (e.error.code === 'EBUSY' && spec.status !== undefined && spec.helper === undefined) {
      try {
        await upsertEntry(ct, spec);
        result.ok++;
        continue;
      } catch (err) {
        errors.push({ index: e.index, error: err as ConntrackError });
        continue;
      }
    }
    errors.push(e);
  }
  return { ok: result.ok, errors };
}

/** ct.deleteMany(). */
export function deleteMany(ct: Handle, keys: Iterable<EntryKey>): Promise<BulkResult> {
  return bulk(ct, keys, 'deleteMany', IPCTNL_MSG_CT_DELETE, 0, (w, key) => {
    const fast = writeKeyFast(w, key);
    if (fast >= 0) return fast;
    const k = resolveKey(key);
    encodeKey(w, k, true);
    return FAMILY_NUM[k.family];
  });
}
