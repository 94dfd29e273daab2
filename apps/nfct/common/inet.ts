/**
 * Address parsing as conntrack does it: IPv4 with inet_aton() rules ("10.1", "0x0a.0.0.1"
 * are valid), IPv6 with inet_pton() rules; plus byte-level comparison and masks, for the
 * checks the CLI makes itself (NAT addresses, --mask-src/--mask-dst).
 */
import { isIPv6 } from 'net';

export interface InetAddr {
  family: 'ipv4' | 'ipv6';
  bytes: Uint8Array;
  /** Canonical text: dotted quad, or the IPv6 form inet_ntop prints. */
  text: string;
}

function cNumber(s: string): number | undefined {
  if (/^0x[0-9a-f]*$/i.test(s)) return s.length === 2 ? 0 : parseInt(s.slice(2), 16);
  if (/^0[0-7]*$/.test(s)) return s.length === 1 ? 0 : parseInt(s.slice(1), 8);
  if (/^[1-9]\d*$/.test(s)) return Number(s);
  return undefined;
}

/** inet_aton(): 1 to 4 parts, the last part fills the remaining bytes. */
export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length < 1 || parts.length > 4) return undefined;
  const nums = parts.map(cNumber);
  if (nums.some((n) => n === undefined)) return undefined;
  const n = nums as number[];
  const last = n[n.length - 1];
  const maxLast = [0xffffffff, 0xffffff, 0xffff, 0xff][n.length - 1];
  if (last > maxLast || n.slice(0, -1).some((x) => x > 255)) return undefined;
  let value = last;
  for (let k = 0; k < n.length - 1; k++) value += n[k] * 2 ** (8 * (3 - k));
  return Uint8Array.of((value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255);
}

export function parseIPv6(s: string): Uint8Array | undefined {
  if (!isIPv6(s)) return undefined;
  let text = s;
  const out = new Uint8Array(16);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    const b = v4[1].split('.').map(Number);
    tail = [(b[0] << 8) | b[1], (b[2] << 8) | b[3]];
    text = text.slice(0, -v4[1].length) + '0:0';
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':').map((x) => parseInt(x, 16)) : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':').map((x) => parseInt(x, 16)) : [];
  const words = rest === undefined ? h : [...h, ...new Array(8 - h.length - r.length).fill(0), ...r];
  if (tail.length) words.splice(6, 2, ...tail);
  for (let k = 0; k < 8; k++) {
    out[2 * k] = words[k] >> 8;
    out[2 * k + 1] = words[k] & 255;
  }
  return out;
}

/** IPv6 text as glibc's inet_ntop() writes it. */
export function formatIPv6(b: Uint8Array): string {
  const w: number[] = [];
  for (let k = 0; k < 8; k++) w.push((b[2 * k] << 8) | b[2 * k + 1]);
  if (w.slice(0, 5).every((x) => x === 0) && (w[5] === 0xffff || (w[5] === 0 && (w[6] !== 0 || w[7] > 1)))) {
    const v4 = `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
    return w[5] === 0xffff ? `::ffff:${v4}` : `::${v4}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let k = 0; k < 8; ) {
    if (w[k] !== 0) {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && w[e] === 0) e++;
    if (e - k > bestLen) {
      best = k;
      bestLen = e - k;
    }
    k = e;
  }
  const hex = w.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

export function parseInetAddr(s: string): InetAddr | undefined {
  const v4 = parseIPv4(s);
  if (v4) return { family: 'ipv4', bytes: v4, text: Array.from(v4).join('.') };
  const v6 = parseIPv6(s);
  if (v6) return { family: 'ipv6', bytes: v6, text: formatIPv6(v6) };
  return undefined;
}

/** The netmask of a prefix length, as an address string. */
export function prefixMask(family: 'ipv4' | 'ipv6', len: number): string {
  const n = family === 'ipv4' ? 4 : 16;
  const b = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    const bits = Math.max(0, Math.min(8, len - 8 * k));
    b[k] = bits === 0 ? 0 : (0xff << (8 - bits)) & 0xff;
  }
  return family === 'ipv4' ? Array.from(b).join('.') : formatIPv6(b);
}

export function sameAddress(a: string, b: string): boolean {
  const x = parseInetAddr(a);
  const y = parseInetAddr(b);
  if (!x || !y || x.family !== y.family) return false;
  return x.bytes.every((v, k) => v === y.bytes[k]);
}

/** (addr & mask) == (network & mask), byte by byte. */
export function maskedEqual(addr: string, network: string, mask: string): boolean {
  const a = parseInetAddr(addr);
  const n = parseInetAddr(network);
  const m = parseInetAddr(mask);
  if (!a || !n || !m || a.family !== n.family || a.family !== m.family) return false;
  return a.bytes.every((v, k) => (v & m.bytes[k]) === (n.bytes[k] & m.bytes[k]));
}
