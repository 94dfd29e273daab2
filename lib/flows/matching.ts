/**
 * The entries a filter selects, for operations that act on each of them (deleteMatching,
 * updateMatching, listing with zeroed counters): a filtered dump on a socket of its own
 * whose every entry is checked here (even when the kernel filtered it: a kernel that
 * ignores a filter attribute must never widen a bulk change), yielded once each with the
 * attributes that name it (original tuple, id, zone) copied straight out of the message.
 */
import { callbackError } from '../common/callback';
import { CTA_ZONE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK } from '../wire/enums';
import type { Dump, DumpOptions } from '../wire/dump';
import type { Handle } from '../wire/handle';
import { RecentPairs, bytesSignature } from '../wire/dedupe';
import { NFGEN_FAMILY_OFFSET, align4, ctType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import type { CompiledFilter } from './filter';
import { Flow, decodeFlow, isFlowFamily } from './flow';
import { RawEntry, scanEntry } from './raw-entry';

/** One matching entry. */
export interface Match {
  /** Address family of the message (AF_INET / AF_INET6). */
  family: number;
  /** The entry's id (CTA_ID), 0 when the kernel sent none. */
  id: number;
  /**
   * CTA_TUPLE_ORIG, CTA_ID and CTA_ZONE as attribute bytes: a request payload naming it
   * (empty when matchDump() was asked not to build keys: write them with writeKey()).
   */
  key: Buffer;
  /** The decoded entry, when the filter, the predicate or `needFlow` asked for it. */
  flow: Flow | undefined;
  /** The entry read in place (shared by every match of the dump: valid only inside `make`). */
  raw: RawEntry;
  /** The receive buffer holding the message (valid only inside `make`). */
  buf: Buffer;
}

/** Length of the key attributes writeKey() writes. */
export function keyLength(e: RawEntry): number {
  return align4(e.origAttrLen) + (e.idAttr >= 0 ? 8 : 0) + (e.zoneAttr >= 0 ? 8 : 0);
}

/**
 * Writes the entry's original tuple, id and zone as request attributes at out[o], copied
 * straight out of the message (no decoding, no re-encoding); returns the next offset.
 */
export function writeKey(buf: Buffer, e: RawEntry, out: Buffer, o: number): number {
  const tS = e.origAttr;
  const tL = e.origAttrLen;
  for (let i = 0; i < tL; i++) out[o + i] = buf[tS + i];
  for (let i = tL; i < align4(tL); i++) out[o + i] = 0;
  o += align4(tL);
  if (e.idAttr >= 0) {
    for (let i = 0; i < 8; i++) out[o + i] = buf[e.idAttr + i];
    o += 8;
  }
  if (e.zoneAttr >= 0) {
    out[o] = 6;
    out[o + 1] = 0;
    out[o + 2] = CTA_ZONE & 0xff;
    out[o + 3] = CTA_ZONE >> 8;
    out[o + 4] = buf[e.zoneAttr + 4];
    out[o + 5] = buf[e.zoneAttr + 5];
    out[o + 6] = 0;
    out[o + 7] = 0;
    o += 8;
  }
  return o;
}

const NO_KEY = Buffer.alloc(0);

/**
 * A dump of the entries that match `compiled` and `predicate`, each passed through `make`
 * (undefined skips it). A dump racing with table changes can repeat an entry: each is
 * passed to `make` once. With `keys`, `seen` holds the keys (as raw attribute bytes) of all
 * of them; without, repeats are found by id and a hash of the key (recent pairs, fixed
 * memory), so `make` may also gather entries and return items for several at once.
 * Entries are checked on the bytes (compiled.matchRaw) unless a Flow is needed: for the
 * predicate, for `needFlow`, or for a filter only match() can decide.
 */
export function matchDump<T>(
  ct: Handle, compiled: CompiledFilter, predicate: ((flow: Flow) => boolean) | undefined, operation: string,
  options: DumpOptions, needFlow: boolean, make: (m: Match) => T | undefined, keys = true, buildKey = true,
): { dump: Dump<T>; seen: Set<string> } {
  const seen = new Set<string>();
  const checks = predicate !== undefined || !compiled.empty;
  const raw = new RawEntry();
  const rawOnly = !needFlow && predicate === undefined && (compiled.empty || compiled.matchRaw !== undefined);
  const recent = !keys && options.dedupe !== false ? new RecentPairs() : undefined;
  const dump = ct.startDump<T>({
    type: ctType(IPCTNL_MSG_CT_GET),
    family: compiled.nfFamily,
    payload: compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined,
    operation,
    decode: (buf, off, len, msgType) => {
      if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK || nfnlMsg(msgType) !== IPCTNL_MSG_CT_NEW) return undefined;
      const family = buf[off + NFGEN_FAMILY_OFFSET];
      if (!isFlowFamily(family)) return undefined;
      scanEntry(buf, off, len, raw);
      let flow: Flow | undefined;
      if (rawOnly) {
        if (checks && !compiled.matchRaw!(raw, buf)) return undefined;
      } else {
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
      if (raw.origAttr < 0) return undefined;
      let key = NO_KEY;
      if (buildKey || keys) {
        key = Buffer.allocUnsafe(keyLength(raw));
        writeKey(buf, raw, key, 0);
      }
      if (keys) {
        const s = key.toString('latin1');
        if (seen.has(s)) return undefined;
        seen.add(s);
      } else if (recent !== undefined && recent.seen(raw.id, bytesSignature(buf, raw.origAttr, raw.origAttrLen, raw.zone))) {
        return undefined;
      }
      return make({ family, id: raw.id, key, flow, raw, buf });
    },
  }, { ...options, dedupe: false });
  return { dump, seen };
}
