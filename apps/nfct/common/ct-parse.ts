/**
 * Parses the conntrack CLI's own options (conntrack-tools 1.4.7) with the same acceptance:
 * getopt_long rules (clusters, attached values, unique long prefixes, optional values only
 * when they follow as the next word), the same option/command legality table, the same
 * compulsory options per command and protocol, and the same exit codes (2 for a parameter
 * problem, 1 for the value errors conntrack reports as "other problems"). Messages are
 * nfct's own and name the option at fault.
 */
import { readFileSync } from 'fs';
import { parseInetAddr, prefixMask } from './inet';

export const PARAMETER_PROBLEM = 2;
export const OTHER_PROBLEM = 1;

export class CtRefusal extends Error {
  readonly code = 'ERR_USAGE';
  constructor(readonly exitCode: number, message: string) {
    super(message);
    this.name = 'CtRefusal';
  }
}

const refuse = (msg: string): never => {
  throw new CtRefusal(PARAMETER_PROBLEM, msg);
};
const refuseOther = (msg: string): never => {
  throw new CtRefusal(OTHER_PROBLEM, msg);
};

// Commands, in conntrack's bit order (CT_LIST_BIT = 0 ...).
export const enum Cmd {
  CT_LIST, CT_CREATE, CT_UPDATE, CT_DELETE, CT_GET, CT_FLUSH, CT_EVENT, CT_VERSION, CT_HELP,
  EXP_LIST, EXP_CREATE, EXP_DELETE, EXP_GET, EXP_FLUSH, EXP_EVENT, CT_COUNT, EXP_COUNT,
  CT_STATS, EXP_STATS, CT_ADD,
}
export const CMD_NAMES = ['-L', '-I', '-U', '-D', '-G', '-F', '-E', '-V', '-h', '-L expect', '-I expect',
  '-D expect', '-G expect', '-F expect', '-E expect', '-C', '-C expect', '-S', '-S expect', '-A'];

// Options, in conntrack's bit order (the columns of its legality table).
export const enum Opt {
  s, d, r, q, p, t, u, z, e, expSrc, expDst, maskSrc, maskDst, natRange, m, i, f, n, g, o, c, b, j, w, l,
  labelAdd, labelDel, origZone, replyZone,
}
const OPT_NAMES = ['src', 'dst', 'reply-src', 'reply-dst', 'protonum', 'timeout', 'status', 'zero', 'event-mask',
  'tuple-src', 'tuple-dst', 'mask-src', 'mask-dst', 'nat-range', 'mark', 'id', 'family', 'src-nat', 'dst-nat',
  'output', 'secmark', 'buffer-size', 'any-nat', 'zone', 'label', 'label-add', 'label-del', 'orig-zone', 'reply-zone'];

// 0 illegal, 1 compulsory, 2 optional, 3 one of the address pairs (src+dst or reply-src+reply-dst).
/*                         s d r q p t u z e [ ] { } a m i f n g o c b j w l < > ( ) */
const LEGAL: number[][] = [];
LEGAL[Cmd.CT_LIST] =      [2,2,2,2,2,0,2,2,0,0,0,2,2,0,2,0,2,2,2,2,2,0,2,2,2,0,0,2,2];
LEGAL[Cmd.CT_CREATE] =    [3,3,3,3,1,1,2,0,0,0,0,0,0,2,2,0,0,2,2,0,0,0,0,2,0,2,0,2,2];
LEGAL[Cmd.CT_UPDATE] =    [2,2,2,2,2,2,2,0,0,0,0,2,2,0,2,2,2,2,2,2,0,0,0,0,2,2,2,0,0];
LEGAL[Cmd.CT_DELETE] =    [2,2,2,2,2,2,2,0,0,0,0,2,2,0,2,2,2,2,2,2,0,0,0,2,2,0,0,2,2];
LEGAL[Cmd.CT_GET] =       [3,3,3,3,1,0,0,0,0,0,0,0,0,0,0,2,0,0,0,2,0,0,0,0,2,0,0,0,0];
LEGAL[Cmd.CT_FLUSH] =     [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.CT_EVENT] =     [2,2,2,2,2,0,0,0,2,0,0,2,2,0,2,0,2,2,2,2,2,2,2,2,2,0,0,2,2];
LEGAL[Cmd.CT_VERSION] =   [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.CT_HELP] =      [0,0,0,0,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_LIST] =     [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,2,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_CREATE] =   [1,1,2,2,1,1,2,0,0,1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_DELETE] =   [1,1,2,2,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_GET] =      [1,1,2,2,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_FLUSH] =    [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_EVENT] =    [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.CT_COUNT] =     [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_COUNT] =    [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.CT_STATS] =     [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.EXP_STATS] =    [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0];
LEGAL[Cmd.CT_ADD] =       [3,3,3,3,1,1,2,0,0,0,0,0,0,2,2,0,0,2,2,0,0,0,0,2,0,2,0,2,2];

/** Options that make -L/-D/-E compare entries (conntrack's CT_COMPARISON). */
const COMPARISON = [Opt.p, Opt.s, Opt.d, Opt.r, Opt.q, Opt.m, Opt.c, Opt.u, Opt.i, Opt.w, Opt.l, Opt.origZone, Opt.replyZone];

// Per-protocol options: sport dport reply-sport reply-dport mask-sport mask-dport state tuple-sport tuple-dport.
/*                            1 2 3 4 5 6 7 8 9 */
const PORT_LEGAL: number[][] = [];
PORT_LEGAL[Cmd.CT_LIST] =    [2,2,2,2,0,0,2,0,0];
PORT_LEGAL[Cmd.CT_CREATE] =  [3,3,3,3,0,0,1,0,0];
PORT_LEGAL[Cmd.CT_UPDATE] =  [2,2,2,2,0,0,2,0,0];
PORT_LEGAL[Cmd.CT_DELETE] =  [2,2,2,2,0,0,2,0,0];
PORT_LEGAL[Cmd.CT_GET] =     [3,3,3,3,0,0,2,0,0];
PORT_LEGAL[Cmd.CT_EVENT] =   [2,2,2,2,0,0,2,0,0];
PORT_LEGAL[Cmd.EXP_CREATE] = [1,1,0,0,1,1,0,1,1];
PORT_LEGAL[Cmd.EXP_DELETE] = [1,1,1,1,0,0,0,0,0];
PORT_LEGAL[Cmd.EXP_GET] =    [1,1,1,1,0,0,0,0,0];
PORT_LEGAL[Cmd.CT_ADD] =     [3,3,3,3,0,0,1,0,0];
const PORT_OPT_NAMES = ['sport', 'dport', 'reply-port-src', 'reply-port-dst', 'mask-port-src', 'mask-port-dst', 'state', 'tuple-port-src', 'tuple-port-dst'];

// ICMP: type code id (all three are optional for lists; create needs type and code).
const ICMP_LEGAL: number[][] = [];
ICMP_LEGAL[Cmd.CT_LIST] = [2, 2, 2];
ICMP_LEGAL[Cmd.CT_CREATE] = [1, 1, 2];
ICMP_LEGAL[Cmd.CT_UPDATE] = [2, 2, 2];
ICMP_LEGAL[Cmd.CT_DELETE] = [2, 2, 2];
ICMP_LEGAL[Cmd.CT_GET] = [1, 1, 2];
ICMP_LEGAL[Cmd.CT_EVENT] = [2, 2, 2];
ICMP_LEGAL[Cmd.EXP_CREATE] = [2, 2, 2];
ICMP_LEGAL[Cmd.CT_ADD] = [1, 1, 2];

export interface ProtoHandler {
  name: string;
  num: number;
  kind: 'ports' | 'icmp' | 'gre' | 'unknown';
  states?: readonly string[];
}

const TCP_STATES = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];
const SCTP_STATES = ['NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED', 'SHUTDOWN_SENT', 'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT', 'HEARTBEAT_ACKED'];
const DCCP_STATES = ['NONE', 'REQUEST', 'RESPOND', 'PARTOPEN', 'OPEN', 'CLOSEREQ', 'CLOSING', 'TIMEWAIT', 'IGNORE', 'INVALID'];

export const HANDLERS: ProtoHandler[] = [
  { name: 'tcp', num: 6, kind: 'ports', states: TCP_STATES },
  { name: 'udp', num: 17, kind: 'ports' },
  { name: 'udplite', num: 136, kind: 'ports' },
  { name: 'sctp', num: 132, kind: 'ports', states: SCTP_STATES },
  { name: 'dccp', num: 33, kind: 'ports', states: DCCP_STATES },
  { name: 'icmp', num: 1, kind: 'icmp' },
  { name: 'icmpv6', num: 58, kind: 'icmp' },
  { name: 'gre', num: 47, kind: 'gre' },
];

let protocols: Map<string, number> | undefined;

/** Names and aliases from /etc/protocols (getprotobyname's source). */
function protocolsFile(): Map<string, number> {
  if (protocols) return protocols;
  protocols = new Map();
  try {
    for (const line of readFileSync('/etc/protocols', 'utf8').split('\n')) {
      const words = line.replace(/#.*/, '').trim().split(/\s+/);
      if (words.length < 2 || !/^\d+$/.test(words[1])) continue;
      const num = Number(words[1]);
      protocols.set(words[0], num);
      for (const alias of words.slice(2)) protocols.set(alias, num);
    }
  } catch {
    /* no /etc/protocols: names of the built-in handlers and numbers still work */
  }
  return protocols;
}

/** conntrack's findproto(): handler names (any case), /etc/protocols names, then numbers 0-255. */
export function findProto(name: string): ProtoHandler | undefined {
  const lower = name.toLowerCase();
  const h = HANDLERS.find((x) => x.name === lower);
  if (h) return h;
  const byName = protocolsFile().get(name);
  if (byName !== undefined) return HANDLERS.find((x) => x.num === byName) ?? { name: 'unknown', num: byName, kind: 'unknown' };
  const n = strtoul(name);
  if (n !== undefined && n <= 255) return HANDLERS.find((x) => x.num === n) ?? { name: 'unknown', num: n, kind: 'unknown' };
  return undefined;
}

/** strtoul(s, &end, 0) that must consume the whole string. */
export function strtoul(s: string): number | undefined {
  const t = s.trim();
  let n: number;
  if (/^0x[0-9a-f]+$/i.test(t)) n = parseInt(t.slice(2), 16);
  else if (/^0[0-7]+$/.test(t)) n = parseInt(t.slice(1), 8);
  else if (/^\d+$/.test(t)) n = Number(t);
  else return undefined;
  return n;
}

/**
 * strtoul(s, NULL, 0) as conntrack 1.4.7 uses it for -m, -w, -c, -i: the longest numeric
 * prefix, 0 when there is none. A value that is not wholly a number gets a warning.
 */
function lenientNumber(s: string, name: string, p: Parsed): number {
  const t = s.trim();
  const m = /^(0x[0-9a-f]+|0[0-7]*|[1-9]\d*)/i.exec(t);
  const n = m ? strtoul(m[1]) ?? 0 : 0;
  if (!m || m[1].length !== t.length) p.warnings.push(`nfct: warning: --${name} ${JSON.stringify(s)} is not a number; using ${n} as conntrack does`);
  return n;
}

/** C atoi/atol: leading digits, else 0. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number(m[1]) : 0;
}

export type Table = 'conntrack' | 'expect' | 'dying' | 'unconfirmed';

export interface CtAddr {
  address: string;
  family: 'ipv4' | 'ipv6';
  /** Prefix length when given with /N (only -s, -d, --tuple-src, --tuple-dst). */
  prefix?: number;
}

export interface Parsed {
  cmd: Cmd;
  table: Table;
  options: Set<Opt>;
  family?: 'ipv4' | 'ipv6';
  proto?: ProtoHandler;
  addr: Partial<Record<'s' | 'd' | 'r' | 'q' | 'expSrc' | 'expDst' | 'maskSrc' | 'maskDst', CtAddr>>;
  ports: Partial<Record<'sport' | 'dport' | 'replySport' | 'replyDport' | 'maskSport' | 'maskDport' | 'tupleSport' | 'tupleDport', number>>;
  icmp: { type?: number; code?: number; id?: number };
  state?: string;
  timeout?: number;
  status: { set: string[]; unset: string[] };
  eventMask: Set<'new' | 'update' | 'destroy'>;
  output: Set<string>;
  mark?: { value: number; mask: number };
  id?: number;
  secmark?: number;
  zone?: number;
  origZone?: number;
  replyZone?: number;
  bufferSize?: number;
  labels: string[];
  labelModify: string[];
  /** --label-del without a value: remove all labels. */
  labelDelAll: boolean;
  nat: { src?: { address?: CtAddr; port?: number }; dst?: { address?: CtAddr; port?: number }; any?: { address?: CtAddr; port?: number } };
  /** Warnings conntrack prints on stderr (deprecated options, ignored status names). */
  warnings: string[];
}

interface LongOpt {
  name: string;
  arg: 0 | 1 | 2; // none, required, optional
  key: string;
}

const SHORT: Record<string, 0 | 1 | 2> = {
  L: 0, I: 0, U: 0, D: 0, G: 0, E: 0, F: 0, A: 0, h: 0, V: 0, S: 0, C: 2,
  s: 1, d: 1, r: 1, q: 1, p: 1, t: 1, u: 1, e: 1, a: 1, z: 0, m: 1, i: 1, f: 1, o: 1,
  n: 2, g: 2, c: 1, b: 1, j: 2, w: 1, l: 1,
};

const LONG: LongOpt[] = [
  ['dump', 2, 'L'], ['create', 2, 'I'], ['add', 2, 'A'], ['delete', 2, 'D'], ['update', 2, 'U'], ['get', 2, 'G'],
  ['flush', 2, 'F'], ['event', 2, 'E'], ['counter', 2, 'C'], ['stats', 0, 'S'], ['version', 0, 'V'], ['help', 0, 'h'],
  ['orig-src', 1, 's'], ['src', 1, 's'], ['orig-dst', 1, 'd'], ['dst', 1, 'd'], ['reply-src', 1, 'r'],
  ['reply-dst', 1, 'q'], ['protonum', 1, 'p'], ['timeout', 1, 't'], ['status', 1, 'u'], ['zero', 0, 'z'],
  ['event-mask', 1, 'e'], ['tuple-src', 1, '['], ['tuple-dst', 1, ']'], ['mask-src', 1, '{'], ['mask-dst', 1, '}'],
  ['nat-range', 1, 'a'], ['mark', 1, 'm'], ['secmark', 1, 'c'], ['id', 2, 'i'], ['family', 1, 'f'],
  ['src-nat', 2, 'n'], ['dst-nat', 2, 'g'], ['output', 1, 'o'], ['buffer-size', 1, 'b'], ['any-nat', 2, 'j'],
  ['zone', 1, 'w'], ['label', 1, 'l'], ['label-add', 1, '<'], ['label-del', 2, '>'], ['orig-zone', 1, '('],
  ['reply-zone', 1, ')'],
].map(([name, arg, key]) => ({ name: name as string, arg: arg as 0 | 1 | 2, key: key as string }));

function protoLongOpts(h: ProtoHandler): LongOpt[] {
  if (h.kind === 'ports') {
    const o: LongOpt[] = [
      { name: 'orig-port-src', arg: 1, key: 'P1' }, { name: 'sport', arg: 1, key: 'P1' },
      { name: 'orig-port-dst', arg: 1, key: 'P2' }, { name: 'dport', arg: 1, key: 'P2' },
      { name: 'reply-port-src', arg: 1, key: 'P3' }, { name: 'reply-port-dst', arg: 1, key: 'P4' },
      { name: 'mask-port-src', arg: 1, key: 'P5' }, { name: 'mask-port-dst', arg: 1, key: 'P6' },
      { name: 'tuple-port-src', arg: 1, key: 'P8' }, { name: 'tuple-port-dst', arg: 1, key: 'P9' },
    ];
    if (h.states) o.push({ name: 'state', arg: 1, key: 'P7' });
    if (h.name === 'sctp') o.push({ name: 'orig-vtag', arg: 1, key: 'Vo' }, { name: 'reply-vtag', arg: 1, key: 'Vr' });
    return o;
  }
  if (h.kind === 'icmp') {
    const p = h.name === 'icmpv6' ? 'icmpv6' : 'icmp';
    return [{ name: `${p}-type`, arg: 1, key: 'T' }, { name: `${p}-code`, arg: 1, key: 'K' }, { name: `${p}-id`, arg: 1, key: 'Y' }];
  }
  if (h.kind === 'gre') {
    return [
      { name: 'srckey', arg: 1, key: 'P1' }, { name: 'orig-key-src', arg: 1, key: 'P1' },
      { name: 'dstkey', arg: 1, key: 'P2' }, { name: 'orig-key-dst', arg: 1, key: 'P2' },
      { name: 'reply-key-src', arg: 1, key: 'P3' }, { name: 'reply-key-dst', arg: 1, key: 'P4' },
    ];
  }
  return [];
}

const STATUS_PARAMS = ['ASSURED', 'SEEN_REPLY', 'UNSET', 'FIXED_TIMEOUT', 'EXPECTED', 'OFFLOAD', 'HW_OFFLOAD'];
const EVENT_PARAMS: [string, ('new' | 'update' | 'destroy')[]][] = [['ALL', ['new', 'update', 'destroy']], ['NEW', ['new']], ['UPDATES', ['update']], ['DESTROY', ['destroy']]];
const OUTPUT_PARAMS = ['xml', 'extended', 'timestamp', 'id', 'ktimestamp', 'labels', 'userspace', 'save'];

/** strncasecmp(token, param, token.length) === 0: a token matches every param it is a prefix of. */
function prefixMatch(token: string, param: string): boolean {
  return param.toLowerCase().startsWith(token.toLowerCase());
}

function splitList(arg: string, what: string): string[] {
  const parts = arg.split(',');
  for (const p of parts) if (p === '') refuse(`${what}: empty item in ${JSON.stringify(arg)}`);
  return parts;
}

function parseStatus(arg: string, p: Parsed): void {
  for (let tok of splitList(arg, '--status')) {
    const negated = tok.startsWith('!');
    if (negated) tok = tok.slice(1);
    if (tok === '') refuse(`--status: bad value ${JSON.stringify(arg)}`);
    if (!negated && tok.startsWith('UNREPLIED')) {
      p.status.unset.push('SEEN_REPLY');
      continue;
    }
    if (prefixMatch(tok, 'SRC_NAT') || prefixMatch(tok, 'DST_NAT')) {
      const which = prefixMatch(tok, 'SRC_NAT') ? 'SRC_NAT' : 'DST_NAT';
      p.warnings.push(`WARNING: ignoring ${which}, use --${which === 'SRC_NAT' ? 'src' : 'dst'}-nat instead`);
      continue;
    }
    const name = STATUS_PARAMS.find((x) => prefixMatch(tok, x));
    if (!name) refuse(`--status: unknown flag ${JSON.stringify(tok)}; use ${STATUS_PARAMS.join(', ')}, UNREPLIED, or !FLAG`);
    if (name === 'UNSET') continue;
    (negated ? p.status.unset : p.status.set).push(name!);
  }
}

export function parseU32Mask(arg: string): { value: number; mask: number } | undefined {
  const [v, m, extra] = arg.split('/');
  if (extra !== undefined) return undefined;
  const value = strtoul(v);
  if (value === undefined || value > 0xffffffff) return undefined;
  if (m === undefined) return { value, mask: 0xffffffff };
  const mask = strtoul(m);
  if (mask === undefined || mask > 0xffffffff) return undefined;
  return { value, mask };
}

function parseAddrArg(arg: string, opt: string, cidrOk: boolean): CtAddr {
  let addr = arg;
  let prefix: number | undefined;
  const slash = arg.indexOf('/');
  if (slash >= 0) {
    addr = arg.slice(0, slash);
    const len = arg.slice(slash + 1);
    prefix = /^\d+$/.test(len) ? Number(len) : -2;
  }
  const parsed = parseInetAddr(addr);
  if (!parsed) refuse(`--${opt}: not an IPv4 or IPv6 address: ${JSON.stringify(addr)}`);
  if (prefix !== undefined && !cidrOk) refuse(`--${opt}: CIDR notation (ADDRESS/PREFIX) is not available for this option`);
  if (prefix !== undefined && (prefix < 0 || prefix > (parsed!.family === 'ipv4' ? 32 : 128))) refuse(`--${opt}: invalid prefix length in ${JSON.stringify(arg)}`);
  return { address: parsed!.text, family: parsed!.family, prefix };
}

/** conntrack's split_address_and_port(): "1.2.3.4:80", "[fd00::1]:80", or a bare address. */
function splitAddressPort(arg: string, opt: string): { address: string; port?: number } {
  let address = arg;
  let port: string | undefined;
  const lb = arg.indexOf('[');
  if (lb >= 0) {
    const rb = arg.indexOf(']', lb + 1);
    if (rb === lb + 1) refuse(`--${opt}: no IPv6 address inside [ ]`);
    if (rb < 0) refuse(`--${opt}: no closing ']' around the IPv6 address`);
    const colon = arg.indexOf(':', rb);
    if (colon >= 0) {
      address = arg.slice(lb + 1, rb);
      port = arg.slice(colon + 1);
    }
  } else {
    const colon = arg.indexOf(':');
    if (colon >= 0 && arg.indexOf(':', colon + 1) < 0) {
      address = arg.slice(0, colon);
      port = arg.slice(colon + 1);
    }
  }
  if (port === undefined) return { address };
  if (port === '') refuse(`--${opt}: no port after ':'`);
  if (!/^\d+$/.test(port) || Number(port) > 65535) refuse(`--${opt}: invalid port ${JSON.stringify(port)} (0-65535)`);
  return { address, port: Number(port) };
}

function setFamily(p: Parsed, family: 'ipv4' | 'ipv6'): void {
  if (p.family === undefined) p.family = family;
  else if (p.family !== family) refuse('addresses of different families (IPv4 and IPv6) in one command');
}

const OPT_BY_KEY: Record<string, Opt> = {
  s: Opt.s, d: Opt.d, r: Opt.r, q: Opt.q, '[': Opt.expSrc, ']': Opt.expDst, '{': Opt.maskSrc, '}': Opt.maskDst,
  n: Opt.n, g: Opt.g, j: Opt.j, m: Opt.m, c: Opt.c, i: Opt.i, w: Opt.w, l: Opt.l, '<': Opt.labelAdd, '>': Opt.labelDel,
  '(': Opt.origZone, ')': Opt.replyZone,
};

const CMD_BY_KEY: Record<string, [Cmd, Cmd | -1]> = {
  L: [Cmd.CT_LIST, Cmd.EXP_LIST], I: [Cmd.CT_CREATE, Cmd.EXP_CREATE], D: [Cmd.CT_DELETE, Cmd.EXP_DELETE],
  G: [Cmd.CT_GET, Cmd.EXP_GET], F: [Cmd.CT_FLUSH, Cmd.EXP_FLUSH], E: [Cmd.CT_EVENT, Cmd.EXP_EVENT],
  V: [Cmd.CT_VERSION, Cmd.CT_VERSION], h: [Cmd.CT_HELP, Cmd.CT_HELP], C: [Cmd.CT_COUNT, Cmd.EXP_COUNT],
  S: [Cmd.CT_STATS, Cmd.EXP_STATS], U: [Cmd.CT_UPDATE, -1], A: [Cmd.CT_ADD, -1],
};
const CMD_LONG: Record<string, string> = { L: 'dump', I: 'create', D: 'delete', G: 'get', F: 'flush', E: 'event', V: 'version', h: 'help', C: 'counter', S: 'stats', U: 'update', A: 'add' };

/** Parses one conntrack command line (without the program name). */
export function parseConntrackArgs(argv: string[]): Parsed {
  const p: Parsed = {
    cmd: -1 as Cmd, table: 'conntrack', options: new Set(), addr: {}, ports: {}, icmp: {}, status: { set: [], unset: [] },
    eventMask: new Set(), output: new Set(), labels: [], labelModify: [], labelDelAll: false, nat: {}, warnings: [],
  };
  let haveCmd = false;
  let longOpts = LONG;
  const protoFlags = new Set<string>();
  let i = 0;

  // The next word, if it can be an optional argument (does not start with '-' or '!').
  const optionalNext = (): string | undefined => {
    if (i < argv.length && !argv[i].startsWith('-') && !argv[i].startsWith('!')) return argv[i++];
    return undefined;
  };

  const handle = (key: string, value: string | undefined, shown: string, attached: boolean): void => {
    switch (key) {
      case 'L': case 'I': case 'D': case 'G': case 'F': case 'E': case 'V': case 'h': case 'C': case 'S': case 'U': case 'A': {
        const word = attached ? undefined : optionalNext();
        let table: Table = 'conntrack';
        if (word !== undefined) {
          const t = (['expect', 'conntrack', 'dying', 'unconfirmed'] as Table[]).find((x) => x.startsWith(word));
          if (!t) refuse(`${shown}: unknown table ${JSON.stringify(word)}; use conntrack, expect, dying or unconfirmed`);
          table = t!;
        }
        let cmd: Cmd | -1;
        if (table === 'dying' || table === 'unconfirmed') {
          if (key !== 'L') refuse(`${shown}: the ${table} table can only be listed (-L ${table})`);
          cmd = Cmd.CT_LIST;
        } else {
          cmd = CMD_BY_KEY[key][table === 'expect' ? 1 : 0];
          if (cmd === -1) refuse(`--${CMD_LONG[key]} cannot be used on the expectation table`);
        }
        if (haveCmd) refuse(`${shown}: only one command per invocation (already have ${CMD_NAMES[p.cmd]})`);
        haveCmd = true;
        p.cmd = cmd as Cmd;
        p.table = table;
        return;
      }
      case 's': case 'd': case 'r': case 'q': case '[': case ']': case '{': case '}': {
        const names: Record<string, string> = { s: 'src', d: 'dst', r: 'reply-src', q: 'reply-dst', '[': 'tuple-src', ']': 'tuple-dst', '{': 'mask-src', '}': 'mask-dst' };
        const a = parseAddrArg(value!, names[key], key === 's' || key === 'd' || key === '[' || key === ']');
        setFamily(p, a.family);
        const field = ({ s: 's', d: 'd', r: 'r', q: 'q', '[': 'expSrc', ']': 'expDst', '{': 'maskSrc', '}': 'maskDst' } as const)[key as 's'];
        p.addr[field] = a;
        p.options.add(OPT_BY_KEY[key]);
        if (a.prefix !== undefined && a.prefix !== (a.family === 'ipv4' ? 32 : 128)) {
          // A prefix on -s/-d (or --tuple-src/dst) sets the matching --mask-src/dst.
          const maskField = key === 's' || key === '[' ? 'maskSrc' : 'maskDst';
          p.addr[maskField] = { address: prefixMask(a.family, a.prefix), family: a.family };
          p.options.add(maskField === 'maskSrc' ? Opt.maskSrc : Opt.maskDst);
        }
        return;
      }
      case 'p': {
        p.options.add(Opt.p);
        const h = findProto(value!);
        if (!h) refuse(`--protonum: unknown protocol ${JSON.stringify(value)} (a name such as tcp, udp, icmp, or a number 0-255)`);
        p.proto = h;
        longOpts = [...LONG, ...protoLongOpts(h!)];
        return;
      }
      case 't':
        p.options.add(Opt.t);
        p.timeout = atoi(value!);
        return;
      case 'u':
        p.options.add(Opt.u);
        parseStatus(value!, p);
        return;
      case 'e':
        p.options.add(Opt.e);
        for (const tok of splitList(value!, '--event-mask')) {
          const m = EVENT_PARAMS.find(([n]) => prefixMatch(tok, n));
          if (!m) refuse(`--event-mask: unknown event ${JSON.stringify(tok)}; use NEW, UPDATES, DESTROY or ALL`);
          for (const t of m![1]) p.eventMask.add(t);
        }
        return;
      case 'o':
        p.options.add(Opt.o);
        for (const tok of splitList(value!, '--output')) {
          const m = OUTPUT_PARAMS.find((n) => prefixMatch(tok, n));
          if (!m) refuse(`--output: unknown format ${JSON.stringify(tok)}; use ${OUTPUT_PARAMS.join(', ')}`);
          p.output.add(m!);
        }
        if (p.output.has('save') && p.output.size > 1) refuseOther('-o save cannot be combined with other output formats: use -o save alone');
        return;
      case 'z':
        p.options.add(Opt.z);
        return;
      case 'n': case 'g': case 'j': {
        p.options.add(OPT_BY_KEY[key]);
        const word = value ?? optionalNext();
        const which = key === 'n' ? 'src' : key === 'g' ? 'dst' : 'any';
        const spec: { address?: CtAddr; port?: number } = {};
        if (word !== undefined) {
          const optName = `${which}-nat`;
          const { address, port } = splitAddressPort(word, optName);
          spec.address = parseAddrArg(address, optName, false);
          setFamily(p, spec.address.family);
          if (port !== undefined) spec.port = port;
        }
        p.nat[which] = spec;
        return;
      }
      case 'w': case '(': case ')': {
        // conntrack 1.4.7 reads these with strtoul() and no checks: "foo" is 0, 70000 wraps.
        const name = key === 'w' ? 'zone' : key === '(' ? 'orig-zone' : 'reply-zone';
        const v = lenientNumber(value!, name, p) % 65536;
        p.options.add(OPT_BY_KEY[key]);
        if (key === 'w') p.zone = v;
        else if (key === '(') p.origZone = v;
        else p.replyZone = v;
        return;
      }
      case 'i': case 'c': {
        const name = key === 'i' ? 'id' : 'secmark';
        const v = lenientNumber(value ?? '', name, p) % 2 ** 32;
        p.options.add(OPT_BY_KEY[key]);
        if (key === 'i') p.id = v;
        else p.secmark = v;
        return;
      }
      case 'm': {
        const [v, m] = value!.split('/');
        p.options.add(Opt.m);
        p.mark = { value: lenientNumber(v, 'mark', p) % 2 ** 32, mask: m === undefined ? 0xffffffff : lenientNumber(m, 'mark', p) % 2 ** 32 };
        return;
      }
      case 'l': case '<': case '>': {
        p.options.add(OPT_BY_KEY[key]);
        if (p.options.has(Opt.labelAdd) && p.options.has(Opt.labelDel)) refuseOther('--label-add and --label-del cannot be used together');
        let v = value;
        if (key === '>' && v === undefined) v = optionalNext();
        if (key === '>' && v === undefined) {
          p.labelDelAll = true;
          return;
        }
        const names = v!.split(',');
        if (key === 'l') p.labels.push(...names);
        else p.labelModify.push(...names);
        return;
      }
      case 'a':
        p.warnings.push('WARNING: ignoring -a, deprecated option.');
        return;
      case 'f':
        p.options.add(Opt.f);
        if (value!.startsWith('ipv4')) setFamily(p, 'ipv4');
        else if (value!.startsWith('ipv6')) setFamily(p, 'ipv6');
        else refuse(`--family: unknown family ${JSON.stringify(value)}; use ipv4 or ipv6`);
        return;
      case 'b':
        p.options.add(Opt.b);
        p.bufferSize = atoi(value!);
        return;
      default:
        protoOption(key, value!, p, protoFlags);
    }
  };

  while (i < argv.length) {
    const arg = argv[i++];
    if (arg === '--') break;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = arg.slice(2, eq >= 0 ? eq : undefined);
      let opt = longOpts.find((o) => o.name === name);
      if (!opt) {
        const cands = longOpts.filter((o) => o.name.startsWith(name));
        const keys = new Set(cands.map((c) => c.key));
        if (cands.length && keys.size === 1) opt = cands[0];
      }
      if (!opt) {
        const hint = p.proto === undefined && /port|sport|dport|state|icmp|key|vtag/.test(name) ? ' (protocol options such as --sport come after -p PROTO)' : '';
        refuse(`unknown option ${arg}${hint}`);
      }
      let value = eq >= 0 ? arg.slice(eq + 1) : undefined;
      if (opt!.arg === 0 && value !== undefined) refuse(`option --${opt!.name} takes no value`);
      if (opt!.arg === 1 && value === undefined) {
        if (i >= argv.length) refuse(`option ${arg} needs a value`);
        value = argv[i++];
      }
      handle(opt!.key, value, `--${opt!.name}`, eq >= 0);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      for (let k = 1; k < arg.length; k++) {
        const ch = arg[k];
        const kind = SHORT[ch];
        if (kind === undefined) refuse(`unknown option -${ch}`);
        if (kind === 0) {
          // A command letter inside a cluster can only take its table as the next word.
          handle(ch, undefined, `-${ch}`, k < arg.length - 1);
          continue;
        }
        const rest = arg.slice(k + 1);
        if (kind === 1) {
          let value = rest;
          if (value === '') {
            if (i >= argv.length) refuse(`option -${ch} needs a value`);
            value = argv[i++];
          }
          handle(ch, value, `-${ch}`, true);
        } else {
          // Optional value: attached only (getopt), else the next word for -n/-g/-j/-C.
          handle(ch, rest === '' ? undefined : rest, `-${ch}`, rest !== '');
        }
        break;
      }
      continue;
    }
    // Words that no option consumed are ignored, as getopt leaves them to the caller.
  }

  if (!haveCmd) {
    p.cmd = Cmd.CT_HELP;
    (p as { noCommand?: boolean }).noCommand = true;
    return p;
  }

  checkLegality(p);
  if ([Cmd.CT_LIST, Cmd.CT_UPDATE, Cmd.CT_DELETE, Cmd.CT_EVENT].includes(p.cmd)) {
    if (p.options.has(Opt.maskSrc) && !p.options.has(Opt.s)) refuse('--mask-src needs --src (the address the mask applies to)');
    if (p.options.has(Opt.maskDst) && !p.options.has(Opt.d)) refuse('--mask-dst needs --dst (the address the mask applies to)');
  }
  if (p.proto && p.cmd !== Cmd.CT_HELP) protoFinalCheck(p, protoFlags);
  return p;
}

function protoOption(key: string, value: string, p: Parsed, flags: Set<string>): void {
  const h = p.proto!;
  flags.add(key);
  switch (key) {
    case 'P1': p.ports.sport = atoi(value) & 0xffff; return;
    case 'P2': p.ports.dport = atoi(value) & 0xffff; return;
    case 'P3': p.ports.replySport = atoi(value) & 0xffff; return;
    case 'P4': p.ports.replyDport = atoi(value) & 0xffff; return;
    case 'P5': p.ports.maskSport = atoi(value) & 0xffff; return;
    case 'P6': p.ports.maskDport = atoi(value) & 0xffff; return;
    case 'P8': p.ports.tupleSport = atoi(value) & 0xffff; return;
    case 'P9': p.ports.tupleDport = atoi(value) & 0xffff; return;
    case 'P7': {
      let state = value;
      if (h.name === 'tcp' && value === 'LISTEN') state = 'SYN_SENT2';
      if (!h.states!.includes(state)) refuse(`--state: unknown ${h.name.toUpperCase()} state ${JSON.stringify(value)}; use ${h.states!.join(', ')}${h.name === 'tcp' ? ' or LISTEN' : ''}`);
      p.state = state;
      return;
    }
    case 'T': p.icmp.type = atoi(value) & 0xff; return;
    case 'K': p.icmp.code = atoi(value) & 0xff; return;
    case 'Y': p.icmp.id = atoi(value) & 0xffff; return;
    case 'Vo': case 'Vr': return;
  }
}

function checkLegality(p: Parsed): void {
  if (p.options.has(Opt.j) && (p.options.has(Opt.n) || p.options.has(Opt.g))) refuse('--any-nat cannot be combined with --src-nat or --dst-nat');
  const row = LEGAL[p.cmd];
  let special = false;
  for (let o = 0; o < OPT_NAMES.length; o++) {
    const has = p.options.has(o as Opt);
    if (!has && row[o] === 1) refuse(`${CMD_NAMES[p.cmd]} needs --${OPT_NAMES[o]}`);
    if (has && row[o] === 0) refuse(`--${OPT_NAMES[o]} cannot be used with ${CMD_NAMES[p.cmd]}`);
    if (row[o] === 3) special = true;
  }
  if (special) {
    const o = p.options;
    const orig = o.has(Opt.s) && o.has(Opt.d);
    const repl = o.has(Opt.r) && o.has(Opt.q);
    if (!orig && !repl) {
      if (!(o.has(Opt.s) || o.has(Opt.d)) && (o.has(Opt.r) || o.has(Opt.q))) refuse(`${CMD_NAMES[p.cmd]} needs both --reply-src and --reply-dst (or --src and --dst)`);
      refuse(`${CMD_NAMES[p.cmd]} needs both --src and --dst (or --reply-src and --reply-dst)`);
    }
  }
}

function protoFinalCheck(p: Parsed, flags: Set<string>): void {
  const h = p.proto!;
  if (h.kind === 'ports') {
    const row = PORT_LEGAL[p.cmd] ?? [0, 0, 0, 0, 0, 0, 0, 0, 0];
    const keys = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9'];
    let special = false;
    for (let k = 0; k < keys.length; k++) {
      if (k === 6 && !h.states) continue;
      const has = flags.has(keys[k]);
      if (!has && row[k] === 1) refuse(`${CMD_NAMES[p.cmd]} -p ${h.name} needs --${PORT_OPT_NAMES[k]}`);
      if (has && row[k] === 0) refuse(`--${PORT_OPT_NAMES[k]} cannot be used with ${CMD_NAMES[p.cmd]}`);
      if (row[k] === 3) special = true;
    }
    if (h.name === 'sctp' && (p.cmd === Cmd.CT_CREATE || p.cmd === Cmd.CT_ADD)) {
      if (!flags.has('Vo')) refuse(`${CMD_NAMES[p.cmd]} -p sctp needs --orig-vtag`);
      if (!flags.has('Vr')) refuse(`${CMD_NAMES[p.cmd]} -p sctp needs --reply-vtag`);
    }
    if (special) {
      const orig = flags.has('P1') && flags.has('P2');
      const repl = flags.has('P3') && flags.has('P4');
      if (!orig && !repl) {
        if (!(flags.has('P1') || flags.has('P2')) && (flags.has('P3') || flags.has('P4'))) refuse(`${CMD_NAMES[p.cmd]} needs both --reply-port-src and --reply-port-dst (or --sport and --dport)`);
        refuse(`${CMD_NAMES[p.cmd]} needs both --sport and --dport (or --reply-port-src and --reply-port-dst)`);
      }
    }
  } else if (h.kind === 'icmp') {
    const row = ICMP_LEGAL[p.cmd] ?? [0, 0, 0];
    const keys = ['T', 'K', 'Y'];
    const names = h.name === 'icmpv6' ? ['icmpv6-type', 'icmpv6-code', 'icmpv6-id'] : ['icmp-type', 'icmp-code', 'icmp-id'];
    for (let k = 0; k < 3; k++) {
      const has = flags.has(keys[k]);
      if (!has && row[k] === 1) refuse(`${CMD_NAMES[p.cmd]} -p ${h.name} needs --${names[k]}`);
      if (has && row[k] === 0) refuse(`--${names[k]} cannot be used with ${CMD_NAMES[p.cmd]}`);
    }
  } else if (h.kind === 'gre') {
    if (p.cmd === Cmd.CT_CREATE || p.cmd === Cmd.CT_ADD || p.cmd === Cmd.CT_GET) {
      const orig = flags.has('P1') && flags.has('P2');
      const repl = flags.has('P3') && flags.has('P4');
      if (!orig && !repl) refuse(`${CMD_NAMES[p.cmd]} -p gre needs both --srckey and --dstkey`);
    }
  }
}

/** True when the options ask -L/-D/-E to compare entries (conntrack's CT_COMPARISON). */
export function hasComparison(p: Parsed): boolean {
  return COMPARISON.some((o) => p.options.has(o));
}
