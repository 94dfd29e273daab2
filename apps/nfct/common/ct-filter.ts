/**
 * conntrack's entry selection (nfct_filter(), and update_cb()'s for -U) as a library
 * FlowFilter: family, protocol, addresses and prefixes (-s/-d with /N or a contiguous
 * --mask-src/--mask-dst), ports, ICMP fields, mark, zones, status, state and NAT are all
 * the library's filter (checked in the kernel where it can be, else by the library).
 * What the library's filter has no field for is the small `rest` predicate: labels, the
 * id, the secmark, -D's timeout comparison, a non-contiguous mask, GRE keys, and
 * --src-nat together with --dst-nat (the library's nat filter selects one side or either).
 */
import type { Flow, FlowFilter, TupleFilter } from '../../../lib';
import { CtAddr, Opt, Parsed, hasComparison } from './ct-parse';
import { maskedEqual, parseInetAddr, sameAddress } from './inet';

export type SelectMode = 'list' | 'update' | 'get';

export interface Selection {
  filter: FlowFilter;
  /** The checks the filter cannot express; undefined when there are none. */
  rest: ((f: Flow) => boolean) | undefined;
}

/** Prefix length of a contiguous netmask (255.255.0.0 -> 16), undefined otherwise. */
function maskBits(mask: string): number | undefined {
  const m = parseInetAddr(mask);
  if (!m) return undefined;
  let bits = 0;
  let ended = false;
  for (const byte of m.bytes) {
    for (let b = 7; b >= 0; b--) {
      const set = (byte >> b) & 1;
      if (set && ended) return undefined;
      if (set) bits++;
      else ended = true;
    }
  }
  return bits;
}

export function protoName(p: Parsed): string | number | undefined {
  if (!p.proto) return undefined;
  return p.proto.kind === 'unknown' ? p.proto.num : p.proto.name;
}

type NatSpec = { address?: CtAddr; port?: number } | undefined;

/** One side of conntrack's filter_nat() for the -n/-g pair (IPv6 addresses compared too). */
function natSide(spec: NatSpec, done: boolean, origAddr: string, newAddr: string, origPort: number | undefined, newPort: number | undefined): boolean {
  if (!done) return false;
  const addrChanged = !sameAddress(origAddr, newAddr);
  const portChanged = origPort !== newPort;
  if (spec?.address && !(addrChanged && sameAddress(spec.address.address, newAddr))) return false;
  if (spec?.port !== undefined && !(portChanged && spec.port === newPort)) return false;
  return spec?.address !== undefined || spec?.port !== undefined || addrChanged || portChanged;
}

/** `labels`: the bit numbers of -l (resolved from connlabel.conf by the caller). */
export function select(p: Parsed, mode: SelectMode, labels: number[] = []): Selection {
  const o = p.options;
  const f: FlowFilter = {};
  const checks: ((fl: Flow) => boolean)[] = [];
  if (p.family) f.family = p.family;
  const proto = protoName(p);
  if (proto !== undefined) f.proto = proto as FlowFilter['proto'];
  const portsInFilter = p.proto?.kind === 'ports';

  // Tuples. -s/-d take prefixes (a /N sets --mask-src/--mask-dst); -r/-q are exact.
  const orig: TupleFilter = {};
  const reply: TupleFilter = {};
  if (mode !== 'get') {
    for (const [side, addr, mask] of [['src', p.addr.s, p.addr.maskSrc], ['dst', p.addr.d, p.addr.maskDst]] as const) {
      if (!addr) continue;
      if (!mask) {
        orig[side] = addr.address;
        continue;
      }
      const bits = mask.family === addr.family ? maskBits(mask.address) : undefined;
      if (bits !== undefined) orig[side] = `${addr.address}/${bits}`;
      else checks.push((fl) => fl.family === addr.family && maskedEqual(fl.orig[side], addr.address, mask.address));
    }
    if (p.addr.r) reply.src = p.addr.r.address;
    if (p.addr.q) reply.dst = p.addr.q.address;
    const ports: [TupleFilter, 'sport' | 'dport', number | undefined, 'orig' | 'reply'][] = [
      [orig, 'sport', p.ports.sport, 'orig'], [orig, 'dport', p.ports.dport, 'orig'],
      [reply, 'sport', p.ports.replySport, 'reply'], [reply, 'dport', p.ports.replyDport, 'reply'],
    ];
    for (const [t, k, v, dir] of ports) {
      if (v === undefined) continue;
      if (portsInFilter) t[k] = v;
      else checks.push((fl) => fl[dir][k] === v); // GRE keys: the library filter has no key fields
    }
    if (p.icmp.type !== undefined || p.icmp.code !== undefined || p.icmp.id !== undefined) orig.icmp = { ...p.icmp };
  }
  if (p.origZone !== undefined && mode === 'list') orig.zone = p.origZone;
  if (p.replyZone !== undefined && mode === 'list') reply.zone = p.replyZone;
  if (Object.keys(orig).length) f.orig = orig;
  if (Object.keys(reply).length) f.reply = reply;

  // NAT: one side or either in the filter; both sides at once checked here.
  if (o.has(Opt.n) && o.has(Opt.g)) {
    const src = p.nat.src;
    const dst = p.nat.dst;
    checks.push((fl) =>
      natSide(src, fl.status.includes('SRC_NAT'), fl.orig.src, fl.reply.dst, fl.orig.sport, fl.reply.dport) &&
      natSide(dst, fl.status.includes('DST_NAT'), fl.orig.dst, fl.reply.src, fl.orig.dport, fl.reply.sport));
  } else if (o.has(Opt.n) || o.has(Opt.g) || o.has(Opt.j)) {
    const which = o.has(Opt.j) ? 'any' : o.has(Opt.n) ? 'src' : 'dst';
    f.nat = which;
    const spec = which === 'any' ? p.nat.any : p.nat[which];
    if (spec?.address) f.natAddress = spec.address.address;
    if (spec?.port !== undefined) f.natPort = spec.port;
  }

  if (labels.length) checks.push((fl) => labels.every((b) => fl.labels?.includes(b) === true));
  if (p.id !== undefined) {
    const id = p.id;
    checks.push((fl) => fl.id === id);
  }

  if (mode === 'list') {
    if (p.mark && ((p.mark.value & ~p.mark.mask) >>> 0) !== 0) checks.push(() => false); // (mark & mask) never equals it
    else if (p.mark) f.mark = p.mark.mask === 0xffffffff ? p.mark.value : { value: p.mark.value, mask: p.mark.mask };
    // conntrack compares these only when some comparison option is given; each of them is one.
    if (p.status.set.length || p.status.unset.length) f.status = { set: p.status.set as never[], unset: p.status.unset as never[] };
    if (p.zone !== undefined) f.zone = p.zone;
    if (p.state !== undefined) f.state = p.state;
    if (p.secmark !== undefined) {
      const v = p.secmark;
      checks.push((fl) => (fl.secmark ?? 0) === v);
    }
    if (p.timeout !== undefined && hasComparison(p)) {
      const t = p.timeout;
      checks.push((fl) => fl.timeout === t);
    }
  } else if (mode === 'get' && p.state !== undefined) {
    const s = p.state;
    checks.push((fl) => fl.state === s);
  }
  const rest = checks.length === 0 ? undefined : checks.length === 1 ? checks[0] : (fl: Flow) => checks.every((c) => c(fl));
  return { filter: f, rest };
}
