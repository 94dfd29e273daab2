/**
 * Option parsing shared by the subcommands: util.parseArgs plus the common options
 * (--help, --netns, --output) and the flow filter options.
 */
import { parseArgs, ParseArgsConfig } from 'util';
import type { FlowFilter, TupleFilter } from '../../../lib';
import { UsageError } from './errors';

type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export const COMMON_OPTIONS: Options = {
  help: { type: 'boolean', short: 'h' },
  netns: { type: 'string' },
  output: { type: 'string', short: 'o' },
};

export const FILTER_OPTIONS: Options = {
  family: { type: 'string' },
  proto: { type: 'string', short: 'p' },
  src: { type: 'string' },
  dst: { type: 'string' },
  sport: { type: 'string' },
  dport: { type: 'string' },
  'reply-src': { type: 'string' },
  'reply-dst': { type: 'string' },
  'reply-sport': { type: 'string' },
  'reply-dport': { type: 'string' },
  'icmp-type': { type: 'string' },
  'icmp-code': { type: 'string' },
  'icmp-id': { type: 'string' },
  mark: { type: 'string' },
  zone: { type: 'string' },
  'orig-zone': { type: 'string' },
  'reply-zone': { type: 'string' },
  status: { type: 'string' },
  state: { type: 'string' },
  nat: { type: 'string' },
  'src-nat': { type: 'string' },
  'dst-nat': { type: 'string' },
  'any-nat': { type: 'string' },
};

export const FILTER_HELP = `Filters (all combine with AND):
  --family ipv4|ipv6            address family
  --proto NAME|NUMBER           tcp, udp, udplite, icmp, icmpv6, sctp, dccp, gre, or a number
  --src ADDR[/PREFIX]           original source address or CIDR prefix (IPv4 or IPv6)
  --dst ADDR[/PREFIX]           original destination
  --sport PORT, --dport PORT    original ports
  --reply-src, --reply-dst      reply-direction addresses (or prefixes)
  --reply-sport, --reply-dport  reply-direction ports
  --icmp-type, --icmp-code, --icmp-id   ICMP/ICMPv6 fields of the original tuple
  --mark VALUE[/MASK]           (mark & MASK) == VALUE; decimal or 0x hex
  --zone N                      conntrack zone; --orig-zone/--reply-zone: per-direction zones
  --status FLAG[,FLAG]          all these status flags set (ASSURED, SEEN_REPLY, ...);
                                !FLAG requires it clear
  --state NAME                  TCP/SCTP/DCCP state (ESTABLISHED, LISTEN, ...)
  --nat src|dst|any             source-NATed, destination-NATed, or either
  --src-nat ADDR[/PREFIX][:PORT], --dst-nat ..., --any-nat ...
                                translated to that address (and port): SNAT looks at
                                the reply destination, DNAT at the reply source
`;

/** Parses argv; positional arguments are allowed only when `positionals` is true. */
export function parse(argv: string[], options: Options, positionals = false): { values: Values; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: positionals, strict: true });
    return { values: r.values as Values, positionals: r.positionals };
  } catch (err) {
    const e = err as { message?: string; code?: string };
    throw new UsageError(`${e.message ?? String(err)} (see --help)`);
  }
}

/** An unsigned integer in decimal or 0x hex, within max. */
export function parseUint(text: string, field: string, max: number): number {
  const t = text.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) throw new UsageError(`--${field}: expected a number, got ${JSON.stringify(text)}`, field);
  const n = Number(t);
  if (!Number.isSafeInteger(n) || n > max) throw new UsageError(`--${field}: ${text} is out of range 0-${max}`, field);
  return n;
}

export function parseMark(text: string, field = 'mark'): number | { value: number; mask: number } {
  const [v, m] = text.split('/');
  const value = parseUint(v, field, 0xffffffff);
  if (m === undefined) return value;
  return { value, mask: parseUint(m, field, 0xffffffff) };
}

export function parseFamily(text: string): 'ipv4' | 'ipv6' {
  const t = text.toLowerCase();
  if (t === 'ipv4' || t === '4' || t === 'inet') return 'ipv4';
  if (t === 'ipv6' || t === '6' || t === 'inet6') return 'ipv6';
  throw new UsageError(`--family: unknown family ${JSON.stringify(text)}; use ipv4 or ipv6`, 'family');
}

export function parseProto(text: string): string | number {
  if (/^\d+$/.test(text)) return parseUint(text, 'proto', 255);
  return text.toLowerCase();
}

/** Builds a FlowFilter from the filter options (the library validates the values further). */
export function filterFromValues(v: Values): FlowFilter {
  const f: FlowFilter & Record<string, unknown> = {};
  const s = (k: string) => v[k] as string | undefined;
  if (s('family')) f.family = parseFamily(s('family')!);
  if (s('proto')) f.proto = parseProto(s('proto')!) as FlowFilter['proto'];
  const tuple = (prefix: '' | 'reply-'): TupleFilter | undefined => {
    const t: TupleFilter = {};
    if (s(`${prefix}src`)) t.src = s(`${prefix}src`);
    if (s(`${prefix}dst`)) t.dst = s(`${prefix}dst`);
    if (s(`${prefix}sport`)) t.sport = parseUint(s(`${prefix}sport`)!, `${prefix}sport`, 65535);
    if (s(`${prefix}dport`)) t.dport = parseUint(s(`${prefix}dport`)!, `${prefix}dport`, 65535);
    return Object.keys(t).length ? t : undefined;
  };
  const orig = tuple('');
  const reply = tuple('reply-');
  const icmp: { type?: number; code?: number; id?: number } = {};
  if (s('icmp-type')) icmp.type = parseUint(s('icmp-type')!, 'icmp-type', 255);
  if (s('icmp-code')) icmp.code = parseUint(s('icmp-code')!, 'icmp-code', 255);
  if (s('icmp-id')) icmp.id = parseUint(s('icmp-id')!, 'icmp-id', 65535);
  if (orig || Object.keys(icmp).length || s('orig-zone')) {
    f.orig = { ...(orig ?? {}) };
    if (Object.keys(icmp).length) f.orig.icmp = icmp;
    if (s('orig-zone')) f.orig.zone = parseUint(s('orig-zone')!, 'orig-zone', 65535);
  }
  if (reply || s('reply-zone')) {
    f.reply = { ...(reply ?? {}) };
    if (s('reply-zone')) f.reply.zone = parseUint(s('reply-zone')!, 'reply-zone', 65535);
  }
  if (s('mark')) f.mark = parseMark(s('mark')!);
  if (s('zone')) f.zone = parseUint(s('zone')!, 'zone', 65535);
  if (s('status')) {
    const set: string[] = [];
    const unset: string[] = [];
    for (const name of s('status')!.split(',').map((x) => x.trim()).filter(Boolean)) {
      if (name.startsWith('!')) unset.push(name.slice(1).toUpperCase());
      else set.push(name.toUpperCase());
    }
    f.status = (unset.length ? { set, unset } : set) as FlowFilter['status'];
  }
  if (s('state')) f.state = s('state')!.toUpperCase();
  if (s('nat')) {
    const n = s('nat')!.toLowerCase();
    if (n !== 'src' && n !== 'dst' && n !== 'any') throw new UsageError(`--nat: use src, dst or any, got ${JSON.stringify(s('nat'))}`, 'nat');
    f.nat = n;
  }
  const natOpts = (['src', 'dst', 'any'] as const).filter((w) => v[`${w}-nat`] !== undefined);
  if (natOpts.length > 1) throw new UsageError('--src-nat, --dst-nat and --any-nat: give one (use --nat any with --any-nat ADDR for either side)', 'nat');
  if (natOpts.length === 1) {
    const which = natOpts[0];
    if (f.nat !== undefined && f.nat !== which) throw new UsageError(`--${which}-nat contradicts --nat ${f.nat}`, 'nat');
    f.nat = which;
    const { address, port } = natAddress(s(`${which}-nat`)!, `${which}-nat`);
    if (address) f.natAddress = address;
    if (port !== undefined) f.natPort = port;
  }
  return f;
}

/** ADDR, ADDR/PREFIX, ADDR:PORT, [IPV6]:PORT or :PORT (the library checks the address). */
function natAddress(text: string, field: string): { address?: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]*)(?::(\d+))?$/.exec(text);
  if (!m) return { address: text }; // IPv6 without brackets, without a port
  return { ...(m[1] ? { address: m[1] } : {}), ...(m[2] !== undefined ? { port: parseUint(m[2], field, 65535) } : {}) };
}

/**
 * A command's --help: usage, body, and the common options it takes (`common`: --netns and
 * --output, --netns only, or neither).
 */
export function helpText(usageLine: string, body: string, common: 'netns+output' | 'netns' | 'none' = 'netns+output'): string {
  const lines = [
    ...(common !== 'none' ? ["  --netns NAME|PATH|PID         work on that network namespace's table (default: NFCT_NETNS, else this one)"] : []),
    ...(common === 'netns+output' ? ['  -o, --output FORMAT           table | json | ndjson | conntrack'] : []),
    '  -h, --help                    this help',
  ];
  return `Usage: ${usageLine}\n\n${body.trimEnd()}\n\nCommon options:\n${lines.join('\n')}\n`;
}
