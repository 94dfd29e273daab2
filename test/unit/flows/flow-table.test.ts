/**
 * FlowTable, the mirror's table of raw ctnetlink messages, fed with bytes captured from the
 * kernel (a dump and the events of creates, updates and a flush): entries decode to what
 * the stored message decodes to, both indexes (key and id) stay right through inserts,
 * replacements that need a bigger slot and deletes, also when every key collides; merge()
 * keeps what an UPDATE or DESTROY event leaves out.
 */
import { CTA_ID, CTA_MARK, CTA_STATUS, CTA_TIMEOUT, CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, IPCTNL_MSG_CT_DELETE, NLM_F_CREATE } from '../../../lib/wire/enums';
import { Flow, decodeFlow } from '../../../lib/flows/flow';
import { FlowTable, keyHash } from '../../../lib/flows/flow-table';
import { RawEntry, scanEntry } from '../../../lib/flows/raw-entry';
import { capturedMessages, hexMessages } from '../../helpers/fixtures';

const dumped = hexMessages('dump-mixed.hex');
const events = capturedMessages('events/events.bin');
const kind = (m: Buffer): string => ((m.readUInt16LE(4) & 0xff) === IPCTNL_MSG_CT_DELETE ? 'destroy' : m.readUInt16LE(6) & NLM_F_CREATE ? 'new' : 'update');
const created = events.filter((m) => kind(m) === 'new');
const updates = events.filter((m) => kind(m) === 'update');
const destroys = events.filter((m) => kind(m) === 'destroy');

/** What names an entry, as the mirror's key did when it held Flows. */
function keyOf(f: Flow): string {
  const o = f.orig;
  const ports = o.icmp ? `i${o.icmp.type}|${o.icmp.code}|${o.icmp.id}` : `${o.sport}|${o.dport}`;
  return `${f.proto}|${o.src}|${o.dst}|${ports}|${f.zone}|${o.zone ?? ''}`;
}

const decoded = (m: Buffer): Flow => decodeFlow(m, 0, m.length);
const scan = (m: Buffer): RawEntry => scanEntry(m, 0, m.length, new RawEntry());

/** A copy of `m` with an extra (unknown) attribute of `pad` bytes: the same entry, a longer message. */
function longer(m: Buffer, pad: number): Buffer {
  const attr = Buffer.alloc(4 + pad);
  attr.writeUInt16LE(4 + pad, 0);
  attr.writeUInt16LE(0x3ff0, 2);
  const out = Buffer.concat([m, attr]);
  out.writeUInt32LE(out.length, 0);
  return out;
}

/** `m` with only the top-level attributes of `keep` (in order), nlmsg_len fixed: the shape of an UPDATE event. */
function only(m: Buffer, keep: number[], timeout?: number): Buffer {
  const parts = [Buffer.from(m.subarray(0, 20))];
  for (let p = 20; p + 4 <= m.length; ) {
    const l = m.readUInt16LE(p);
    const t = m.readUInt16LE(p + 2) & 0x3fff;
    if (keep.includes(t)) {
      const a = Buffer.from(m.subarray(p, p + ((l + 3) & ~3)));
      if (t === CTA_TIMEOUT && timeout !== undefined) a.writeUInt32BE(timeout, 4);
      parts.push(a);
    }
    p += (l + 3) & ~3;
  }
  const out = Buffer.concat(parts);
  out.writeUInt32LE(out.length, 0);
  return out;
}

const HASHES: [string, (b: Buffer, e: RawEntry) => number][] = [
  ['keyHash', keyHash],
  ['a constant hash (every key collides)', () => 7],
  ['a 1-bit hash', (b, e) => keyHash(b, e) & 1],
];

describe('FlowTable on captured kernel messages', () => {
  test('the captures hold distinct entries of several shapes (IPv4, IPv6, ICMP, TCP with state, zones)', () => {
    const keys = new Set([...dumped, ...created].map((m) => keyOf(decoded(m))));
    expect(keys.size).toBe(dumped.length + created.length);
    expect(updates.length).toBeGreaterThan(0);
    expect(destroys.length).toBe(created.length);
  });

  for (const [name, hash] of HASHES) {
    test(`stores messages and gives back equal flows, by key and by id, with ${name}`, () => {
      const t = new FlowTable(hash);
      const all = [...dumped, ...created];
      const refs = all.map((m) => {
        const e = scan(m);
        expect(t.find(m, e)).toBe(-1);
        return t.insert(m, 0, m.length, e, 1);
      });
      expect(t.size).toBe(all.length);
      all.forEach((m, i) => {
        const e = scan(m);
        expect(t.find(m, e)).toBe(refs[i]);
        expect(t.decode(refs[i])).toEqual(decoded(m));
        expect(t.findById(e.id)).toEqual([refs[i]]);
        expect(t.generationOf(refs[i])).toBe(1);
      });
      expect(new Set([...t.values()].map(keyOf))).toEqual(new Set(all.map((m) => keyOf(decoded(m)))));
      // A key the table does not have: the same tuple in another zone.
      const other = Buffer.from(created[0]);
      const e = scan(other);
      expect(t.find(other, { ...e, zone: 9 } as RawEntry)).toBe(-1);
    });

    test(`acts as a Map of key -> message through inserts, replacements and deletes, with ${name}`, () => {
      const t = new FlowTable(hash);
      const model = new Map<string, { ref: number; msg: Buffer }>();
      // Several messages per key: a NEW event, its UPDATE, longer copies (bigger slots), a dump copy.
      const pool = [...dumped, ...events.filter((m) => kind(m) !== 'destroy')];
      for (const m of [...pool]) pool.push(longer(m, 40), longer(m, 400), longer(m, 3000));
      let seed = 4242;
      const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
      for (let i = 0; i < 4000; i++) {
        const m = pool[next() % pool.length];
        const k = keyOf(decoded(m));
        const e = scan(m);
        const ref = t.find(m, e);
        expect(ref).toBe(model.get(k)?.ref ?? -1);
        if (next() % 4 === 0) {
          if (ref >= 0) {
            t.delete(ref);
            model.delete(k);
          }
        } else if (ref >= 0) {
          model.set(k, { ref: t.replace(ref, m, 0, m.length, e, i), msg: m });
        } else {
          model.set(k, { ref: t.insert(m, 0, m.length, e, i), msg: m });
        }
        expect(t.size).toBe(model.size);
      }
      for (const { ref, msg } of model.values()) {
        expect(t.decode(ref)).toEqual(decoded(msg));
        expect(t.findById(scan(msg).id)).toEqual([ref]);
      }
      expect([...t.refs()].sort()).toEqual([...model.values()].map((v) => v.ref).sort());
      t.clear();
      expect(t.size).toBe(0);
      expect([...t.values()]).toEqual([]);
    });
  }

  test('an entry replaced by another with the same tuple (a new id) is found by the new id only', () => {
    const t = new FlowTable();
    const m = created[0];
    const ref = t.insert(m, 0, m.length, scan(m), 1);
    const again = Buffer.from(m);
    const e0 = scan(again);
    expect(e0.idAttr).toBeGreaterThan(0);
    again.writeUInt32BE((e0.id + 1) >>> 0, e0.idAttr + 4);
    const now = t.replace(ref, again, 0, again.length, scan(again), 2);
    expect(t.findById(e0.id)).toEqual([]);
    expect(t.findById((e0.id + 1) >>> 0)).toEqual([now]);
    expect(t.decode(now).id).toBe((e0.id + 1) >>> 0);
  });

  test('merge() keeps the attributes an UPDATE leaves out and takes the ones it carries', () => {
    for (const d of dumped) {
      const t = new FlowTable();
      const ref = t.insert(d, 0, d.length, scan(d), 1);
      // An update of the kernel's shape: tuples, id, status and a new timeout only.
      const u = only(d, [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_ID, CTA_TIMEOUT], 7);
      const n = t.merge(ref, u, 0, u.length);
      const merged = decodeFlow(t.merged, 0, n);
      expect(t.merged.readUInt32LE(0)).toBe(n);
      expect(merged).toEqual({ ...decoded(d), timeout: 7 });
    }
    // Real events: the UPDATE of an entry made with mark 0 that set mark 9.
    const made = created.find((m) => decoded(m).orig.src === '10.1.2.3')!;
    const upd = updates.find((m) => decoded(m).orig.src === '10.1.2.3')!;
    const t = new FlowTable();
    const ref = t.insert(made, 0, made.length, scan(made), 1);
    const merged = decodeFlow(t.merged, 0, t.merge(ref, upd, 0, upd.length));
    expect([decoded(made).mark, merged.mark, merged.timeout]).toEqual([0, 9, decoded(upd).timeout]);
  });

  test('merge() of a DESTROY keeps what the event lacks from the held copy', () => {
    for (const d of destroys) {
      const f = decoded(d);
      const held = created.find((m) => keyOf(decoded(m)) === keyOf(f))!;
      const t = new FlowTable();
      const ref = t.insert(held, 0, held.length, scan(held), 1);
      const merged = decodeFlow(t.merged, 0, t.merge(ref, d, 0, d.length));
      const h = decoded(held);
      expect(merged.id).toBe(f.id);
      expect(merged.timeout).toBe(f.timeout);
      // Every field the DESTROY did not carry comes from the held copy.
      for (const k of Object.keys(h) as (keyof Flow)[]) {
        if ((f as unknown as Record<string, unknown>)[k] === undefined) expect(merged[k]).toEqual(h[k]);
      }
      expect(merged.unknown).toBeUndefined();
    }
  });
  test('merge() of an UPDATE does not carry CTA_MARK, CTA_HELP or CTA_SECCTX (the kernel sends them whenever set: absent means gone); of a DESTROY it does', () => {
    const d = dumped[0];
    // The held copy with a mark of 5 (an attribute of its own, appended).
    const mark = Buffer.alloc(8);
    mark.writeUInt16LE(8, 0);
    mark.writeUInt16LE(CTA_MARK, 2);
    mark.writeUInt32BE(5, 4);
    const held = Buffer.concat([only(d, [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_ID, CTA_TIMEOUT]), mark]);
    held.writeUInt32LE(held.length, 0);
    expect(decoded(held).mark).toBe(5);
    const t = new FlowTable();
    const ref = t.insert(held, 0, held.length, scan(held), 1);
    const u = only(d, [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_ID, CTA_TIMEOUT], 7);
    expect(decodeFlow(t.merged, 0, t.merge(ref, u, 0, u.length, true)).mark).toBe(0);
    expect(decodeFlow(t.merged, 0, t.merge(ref, u, 0, u.length, false)).mark).toBe(5);
  });

  test('an iteration paused while an entry moves to a bigger slot never yields its old copy', () => {
    const t = new FlowTable();
    const refs = dumped.slice(0, 4).map((m) => t.insert(m, 0, m.length, scan(m), 1));
    const it = t.refs();
    const seen: number[] = [it.next().value as number];
    const moved = dumped[3];
    const big = longer(moved, 900);
    const to = t.replace(refs[3], big, 0, big.length, scan(big), 2);
    expect(to).not.toBe(refs[3]);
    for (let r = it.next(); !r.done; r = it.next()) seen.push(r.value);
    // The moved entry is not reached (it was not in its old slot when the walk got there)
    // or is reached at its new slot; its old copy is never handed out.
    const copies = seen.map((ref) => t.decode(ref)).filter((f) => f.id === decoded(moved).id);
    expect(copies.length).toBeLessThanOrEqual(1);
    for (const f of copies) expect(f.unknown).toContain(0x3ff0);
    expect(seen.length).toBeGreaterThanOrEqual(3);
  });
});
