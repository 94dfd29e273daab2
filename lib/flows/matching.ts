/**
 * The entries a filter selects, for operations that act on each of them (deleteMatching,
 * updateMatching, listing with zeroed counters): a filtered dump on a socket of its own
 * whose every entry is checked here (even when the kernel filtered it: a kernel that
 * ignores a filter attribute must never widen a bulk change), yielded once each with the
 * attributes that name it (original tuple, id, zone) copied straight out of the message.
 */
import { callbackError } from '../common/callback';
import { CTA_ID, CTA_TUPLE_ORIG, CTA_ZONE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK } from '../wire/enums';
import type { Dump, DumpOptions } from '../wire/dump';
import type { Handle } from '../wire/handle';
import { NFGEN_FAMILY_OFFSET, NFNL_ATTR_OFFSET, align4, ctType, forEachAttr, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import type { CompiledFilter } from './filter';
import { Flow, decodeFlow, isFlowFamily } from './flow';

/** One matching entry. */
export interface Match {
  /** Address family of the message (AF_INET / AF_INET6). */
  family: number;
  /** The entry's id (CTA_ID), 0 when the kernel sent none. */
  id: number;
  /** CTA_TUPLE_ORIG, CTA_ID and CTA_ZONE as attribute bytes: a request payload naming it. */
  key: Buffer;
  /** The decoded entry, when the filter, the predicate or `needFlow` asked for it. */
  flow: Flow | undefined;
}

/**
 * Pulls the original tuple, zone and id straight out of a dumped message into request
 * attributes: no decoding, no re-encoding.
 */
function keyAttrs(buf: Buffer, off: number, len: number): Buffer | undefined {
  let tS = -1, tL = 0, idS = -1, zS = -1;
  // Offsets of whole attributes (header included): the payload starts 4 bytes in.
  forEachAttr(buf, off + NFNL_ATTR_OFFSET, off + len, (t, pos, pend) => {
    const l = pend - pos + 4;
    if (t === CTA_TUPLE_ORIG) {
      tS = pos - 4;
      tL = l;
    } else if (t === CTA_ID && l === 8) idS = pos - 4;
    else if (t === CTA_ZONE && l >= 6) zS = pos - 4;
  });
  if (tS < 0) return undefined;
  const out = Buffer.allocUnsafe(align4(tL) + (idS >= 0 ? 8 : 0) + (zS >= 0 ? 8 : 0));
  buf.copy(out, 0, tS, tS + tL);
  out.fill(0, tL, align4(tL));
  let o = align4(tL);
  if (idS >= 0) {
    buf.copy(out, o, idS, idS + 8);
    o += 8;
  }
  if (zS >= 0) {
    out.writeUInt16LE(6, o);
    out.writeUInt16LE(CTA_ZONE, o + 2);
    out.writeUInt16BE(buf.readUInt16BE(zS + 4), o + 4);
    out.writeUInt16LE(0, o + 6);
  }
  return out;
}

/** FNV-1a over bytes: the signature of an entry's key attributes. */
function bytesHash(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}

/**
 * A dump of the entries that match `compiled` and `predicate`, each passed through `make`
 * (undefined skips it). A dump racing with table changes can repeat an entry: each is
 * yielded once. With `keys`, `seen` holds the keys (as raw attribute bytes) of all of them;
 * without, repeats are found by id and a hash of the key (the dump's own table, no strings).
 */
export function matchDump<T>(
  ct: Handle, compiled: CompiledFilter, predicate: ((flow: Flow) => boolean) | undefined, operation: string,
  options: DumpOptions, needFlow: boolean, make: (m: Match) => T | undefined, keys = true,
): { dump: Dump<T>; seen: Set<string> } {
  const seen = new Set<string>();
  const decodeAlways = needFlow || predicate !== undefined || !compiled.empty;
  // The id and key hash of the entry last made, for the dump's duplicate table: Dump asks
  // idOf()/signatureOf() right after decode() returned that item.
  let lastId = 0;
  let lastSig = 0;
  const dump = ct.startDump<T>({
    type: ctType(IPCTNL_MSG_CT_GET),
    family: compiled.nfFamily,
    payload: compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined,
    operation,
    decode: (buf, off, len, msgType) => {
      if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK || nfnlMsg(msgType) !== IPCTNL_MSG_CT_NEW) return undefined;
      const family = buf[off + NFGEN_FAMILY_OFFSET];
      if (!isFlowFamily(family)) return undefined;
      let flow: Flow | undefined;
      if (decodeAlways) {
        flow = decodeFlow(buf, off, len);
        if (!compiled.match(flow)) return undefined;
        if (predicate) {
          let keep: boolean;
          try {
            keep = predicate(flow);
          } catch (err) {
            // Ends the dump here: entries the predicate accepted before it threw are still
            // yielded (and acted on), none after.
            throw callbackError(`${operation.replace(/ \(.*\)$/, '')}: the predicate`, err);
          }
          if (!keep) return undefined;
        }
      }
      const key = keyAttrs(buf, off, len);
      if (!key) return undefined;
      if (keys) {
        const s = key.toString('latin1');
        if (seen.has(s)) return undefined;
        seen.add(s);
      }
      const id = flow ? flow.id : 0;
      lastId = id;
      lastSig = bytesHash(key);
      return make({ family, id, key, flow });
    },
    ...(keys ? {} : { idOf: () => lastId, signatureOf: () => lastSig }),
  }, options);
  return { dump, seen };
}
