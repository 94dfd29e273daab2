/**
 * Expectation filters: validated once, applied by the library to every expectation (the
 * kernel filters expectation dumps by nothing but family).
 */
import { AF_INET, AF_INET6, AF_UNSPEC, Family, Proto } from '../wire/enums';
import { Prefix, parseAddress, parsePrefix, prefixContains } from '../common/address';
import { invalid } from '../common/errors';
import { checkHelperName, checkU32, isObject, show } from '../common/validate';
import { ProtoTuple, checkPort, protoNumber } from '../flows/tuple';
import type { Expectation } from './decode';

/** Selects tuples: addresses or prefixes, ports. */
export interface ExpectationTupleFilter {
  /** Address or prefix (`'10.0.0.1'`, `'10.0.0.0/8'`). */
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
}

export interface ExpectationFilter {
  family?: Family;
  /** Protocol of the expected connection. */
  proto?: Proto | number;
  /** Name of the master's helper, e.g. 'ftp'. */
  helper?: string;
  zone?: number;
  class?: number;
  /** Matches the expected connection's tuple. */
  tuple?: ExpectationTupleFilter;
  /** Matches the master flow's original tuple. */
  master?: ExpectationTupleFilter;
}

export interface CompiledExpectationFilter {
  nfFamily: number;
  match(x: Expectation): boolean;
  /** True when the filter has nothing but `helper` (the kernel can flush by helper name). */
  helperOnly: boolean;
  empty: boolean;
  helper?: string;
}

const FILTER_KEYS = new Set(['family', 'proto', 'helper', 'zone', 'class', 'tuple', 'master']);
const TFILTER_KEYS = new Set(['src', 'dst', 'sport', 'dport']);

interface CTF { src?: Prefix; dst?: Prefix; sport?: number; dport?: number }

function compileTF(v: unknown, field: string, family: Family | undefined): CTF {
  if (!isObject(v)) throw invalid(field, 'must be an object like { src, dst, sport, dport }');
  for (const k of Object.keys(v)) if (!TFILTER_KEYS.has(k)) throw invalid(`${field}.${k}`, `unknown key; a tuple filter takes ${[...TFILTER_KEYS].join(', ')}`);
  const out: CTF = {};
  for (const side of ['src', 'dst'] as const) {
    if (v[side] === undefined) continue;
    const p = parsePrefix(v[side] as string);
    if (!p) throw invalid(`${field}.${side}`, `not an address or prefix: ${show(v[side])} (e.g. '10.0.0.1', '10.0.0.0/8')`);
    if (family && p.family !== family) throw invalid(`${field}.${side}`, `is ${p.family} but the filter is for ${family}`);
    out[side] = p;
  }
  if (v.sport !== undefined) out.sport = checkPort(v.sport, `${field}.sport`);
  if (v.dport !== undefined) out.dport = checkPort(v.dport, `${field}.dport`);
  return out;
}

function tfMatch(f: CTF, t: ProtoTuple): boolean {
  for (const side of ['src', 'dst'] as const) {
    const p = f[side];
    if (!p) continue;
    const a = parseAddress(t[side]);
    if (!a || a.family !== p.family || !prefixContains(p, a.bytes)) return false;
  }
  if (f.sport !== undefined && t.sport !== f.sport) return false;
  if (f.dport !== undefined && t.dport !== f.dport) return false;
  return true;
}

/** Validates an expectation filter. Throws ERR_INVALID_ARGUMENT naming the field. */
export function compileExpectationFilter(filter: unknown, field = 'filter'): CompiledExpectationFilter {
  if (filter === undefined) return { nfFamily: AF_UNSPEC, match: () => true, helperOnly: false, empty: true };
  if (!isObject(filter)) throw invalid(field, "must be an object such as { helper: 'ftp' }");
  const keys = Object.keys(filter).filter((k) => filter[k] !== undefined);
  for (const k of keys) if (!FILTER_KEYS.has(k)) throw invalid(`${field}.${k}`, `unknown filter key; use ${[...FILTER_KEYS].join(', ')}`);
  let family: Family | undefined;
  if (filter.family !== undefined) {
    if (filter.family !== 'ipv4' && filter.family !== 'ipv6') throw invalid(`${field}.family`, `must be 'ipv4' or 'ipv6', got ${show(filter.family)}`);
    family = filter.family;
  }
  const protonum = filter.proto !== undefined ? protoNumber(filter.proto, `${field}.proto`) : undefined;
  const helper = filter.helper !== undefined ? checkHelperName(filter.helper, `${field}.helper`) : undefined;
  // The kernel does not report an expectation's zone (Linux 6.18 included): a zone filter
  // could only ever match zone 0, so it is refused rather than silently wrong.
  if (filter.zone !== undefined) {
    throw invalid(`${field}.zone`, "the kernel does not report an expectation's zone, so expectations cannot be filtered by it; name the zone in get(), delete() and create() instead");
  }
  const zone: number | undefined = undefined;
  const cls = filter.class !== undefined ? checkU32(filter.class, `${field}.class`, 'class') : undefined;
  const tuple = filter.tuple !== undefined ? compileTF(filter.tuple, `${field}.tuple`, family) : undefined;
  const master = filter.master !== undefined ? compileTF(filter.master, `${field}.master`, family) : undefined;
  const match = (x: Expectation): boolean => {
    if (family !== undefined && x.family !== family) return false;
    if (protonum !== undefined && (typeof x.tuple.proto === 'number' ? x.tuple.proto : protoNumber(x.tuple.proto, 'proto')) !== protonum) return false;
    if (helper !== undefined && x.helper !== helper) return false;
    if (zone !== undefined && x.zone !== zone) return false;
    if (cls !== undefined && x.class !== cls) return false;
    if (tuple && !tfMatch(tuple, x.tuple)) return false;
    if (master && !tfMatch(master, x.master)) return false;
    return true;
  };
  return {
    nfFamily: family === 'ipv4' ? AF_INET : family === 'ipv6' ? AF_INET6 : AF_UNSPEC,
    match,
    helperOnly: keys.length === 1 && helper !== undefined,
    empty: keys.length === 0,
    helper,
  };
}
