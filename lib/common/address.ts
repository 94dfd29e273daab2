/**
 * IP address text <-> bytes. Formatting follows glibc's inet_ntop() exactly (so strings
 * compare equal with `conntrack -L`), which is RFC 5952 style: lower-case hex, the longest
 * run of two or more zero groups shortened to `::`, IPv4-mapped and IPv4-compatible
 * addresses written with a dotted quad.
 */
import { isIPv4, isIPv6 } from 'net';

export function formatIPv4(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

// Addresses repeat heavily across a table (local addresses, busy peers), so decoding keeps
// the text of recently seen IPv4 addresses in a direct-mapped cache: one array probe per
// address, and a miss (a table of distinct peers) overwrites its slot instead of growing a
// Map that is thrown away when full.
const V4_SLOTS = 1 << 16;
const v4keys = new Int32Array(V4_SLOTS);
const v4text: (string | undefined)[] = Array.from({ length: V4_SLOTS }, () => undefined);

/** formatIPv4() through the cache, keyed by the address as an int32. */
export function formatIPv4Cached(b: Uint8Array, o: number): string {
  const key = (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
  const i = Math.imul(key, 0x9e3779b1) >>> 16;
  const s = v4text[i];
  if (s !== undefined && v4keys[i] === key) return s;
  const t = formatIPv4(b, o);
  v4keys[i] = key;
  v4text[i] = t;
  return t;
}

export function formatIPv6(b: Uint8Array, o: number): string {
  const w = new Array<number>(8);
  for (let i = 0; i < 8; i++) w[i] = (b[o + 2 * i] << 8) | b[o + 2 * i + 1];
  // Longest run of zero words (first one wins on ties), as inet_ntop6 picks it.
  let bestBase = -1;
  let bestLen = 0;
  let curBase = -1;
  let curLen = 0;
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curBase === -1) {
        curBase = i;
        curLen = 1;
      } else curLen++;
    } else if (curBase !== -1) {
      if (bestBase === -1 || curLen > bestLen) {
        bestBase = curBase;
        bestLen = curLen;
      }
      curBase = -1;
    }
  }
  if (curBase !== -1 && (bestBase === -1 || curLen > bestLen)) {
    bestBase = curBase;
    bestLen = curLen;
  }
  if (bestBase !== -1 && bestLen < 2) bestBase = -1;

  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && w[5] === 0xffff))) {
      out += formatIPv4(b, o + 12);
      break;
    }
    out += w[i].toString(16);
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':';
  return out;
}

/** Dotted-quad IPv4 without leading zeros (what isIPv4 accepts), parsed by hand. */
function parseIPv4(text: string): Buffer | undefined {
  const n = text.length;
  if (n < 7 || n > 15) return undefined;
  const bytes = Buffer.allocUnsafe(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 46; /* '.' */
    if (c === 46) {
      if (digits === 0 || part > 3) return undefined;
      bytes[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return undefined; // leading zero
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return undefined;
    } else return undefined;
  }
  return part === 4 ? bytes : undefined;
}

export type ParsedAddress = { readonly family: 'ipv4' | 'ipv6'; readonly bytes: Buffer };

// The last two IPv4 addresses parsed: a bulk call names the same source and destination
// over and over. Results are shared, so callers only read `bytes`.
let v4Text0 = '';
let v4Text1 = '';
let v4Res0: ParsedAddress | undefined;
let v4Res1: ParsedAddress | undefined;

/** Parses a textual IPv4 or IPv6 address; undefined when it is neither. The result is shared: read only. */
export function parseAddress(text: string): ParsedAddress | undefined {
  if (typeof text !== 'string') return undefined;
  if (text === v4Text0) return v4Res0;
  if (text === v4Text1) return v4Res1;
  const v4 = parseIPv4(text);
  if (v4) {
    const r: ParsedAddress = { family: 'ipv4', bytes: v4 };
    v4Text1 = v4Text0;
    v4Res1 = v4Res0;
    v4Text0 = text;
    v4Res0 = r;
    return r;
  }
  if (isIPv4(text)) {
    const bytes = Buffer.alloc(4);
    const parts = text.split('.');
    for (let i = 0; i < 4; i++) bytes[i] = Number(parts[i]);
    return { family: 'ipv4', bytes };
  }
  if (!isIPv6(text) || text.includes('%')) return undefined;
  const bytes = Buffer.alloc(16);
  let s = text;
  let tail: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) !== -1) {
    const v4 = s.slice(lastColon + 1).split('.').map(Number);
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head, rest] = s.split('::');
  const hw = head ? head.split(':').map((h) => parseInt(h, 16)) : [];
  const rw = rest !== undefined && rest !== '' ? rest.split(':').map((h) => parseInt(h, 16)) : [];
  const words = new Array<number>(8).fill(0);
  hw.forEach((v, i) => (words[i] = v));
  rw.forEach((v, i) => (words[8 - rw.length + i] = v));
  if (tail.length) {
    words[6] = tail[0];
    words[7] = tail[1];
  }
  for (let i = 0; i < 8; i++) bytes.writeUInt16BE(words[i], 2 * i);
  return { family: 'ipv6', bytes };
}

/** The canonical text of an address (`'::0001'` -> `'::1'`), or undefined if invalid. */
export function canonicalAddress(text: string): string | undefined {
  const p = parseAddress(text);
  if (!p) return undefined;
  return p.family === 'ipv4' ? formatIPv4(p.bytes, 0) : formatIPv6(p.bytes, 0);
}

/** A prefix such as `10.0.0.0/8` or `fd00::/8`, parsed for matching. */
export interface Prefix {
  family: 'ipv4' | 'ipv6';
  bytes: Buffer;
  bits: number;
}

export function parsePrefix(text: string): Prefix | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.indexOf('/');
  const addr = parseAddress(slash === -1 ? text : text.slice(0, slash));
  if (!addr) return undefined;
  const max = addr.family === 'ipv4' ? 32 : 128;
  let bits = max;
  if (slash !== -1) {
    const b = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > max) return undefined;
  }
  return { family: addr.family, bytes: addr.bytes, bits };
}

/** True when `bytes` (an address of the prefix's family) lies inside `prefix`. */
export function prefixContains(prefix: Prefix, bytes: Uint8Array): boolean {
  if (bytes.length !== prefix.bytes.length) return false;
  const full = prefix.bits >> 3;
  for (let i = 0; i < full; i++) if (bytes[i] !== prefix.bytes[i]) return false;
  const rem = prefix.bits & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (bytes[full] & mask) === (prefix.bytes[full] & mask);
}
