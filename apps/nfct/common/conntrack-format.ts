/**
 * The text conntrack-tools 1.4.7 prints for a flow (libnetfilter_conntrack's default
 * format plus the CLI's own `-o` variants), so that `nfct -L` lines compare equal to
 * `conntrack -L` lines.
 */
import type { Flow, FlowEvent } from '../../../lib';
import type { LineWriter } from './output';
import { userspaceSuffix } from './progname';

export interface ConntrackFormatOptions {
  /** -o extended: prefix the layer-3 name and number. */
  extended?: boolean;
  /** -o id: append id=N. */
  id?: boolean;
  /** -o timestamp: append [start=...] [stop=...] (ctime, local time). */
  timestamp?: boolean;
  /** Event prefix: '[NEW]', '[UPDATE]', '[DESTROY]' right-aligned in 9 columns. */
  event?: 'new' | 'update' | 'destroy';
  /**
   * Event messages carry fewer attributes than dumps (ctnetlink_conntrack_event()): never
   * CTA_USE; CTA_TIMEOUT except on DESTROY when none is left; CTA_MARK when the mark is not
   * 0 or the event changed it (`markSent`). The decoded Flow has 0 for what was absent, so
   * in event mode these rules decide what is printed.
   */
  eventMode?: boolean;
  /** Event mode: the message carried CTA_MARK even if 0 (events a netlink request caused). */
  markSent?: boolean;
  /** Label names by bit (connlabel.conf), for -o labels. */
  labelNames?: Map<number, string>;
  /** Seconds since the epoch, for delta-time of live flows (default: now). */
  now?: number;
}

const PROTO_NUM: Record<string, number> = { icmp: 1, igmp: 2, tcp: 6, udp: 17, gre: 47, esp: 50, ah: 51, icmpv6: 58, sctp: 132, udplite: 136, dccp: 33 };
const L4_NAMES = new Set(['tcp', 'udp', 'udplite', 'icmp', 'icmpv6', 'sctp', 'gre', 'dccp']);

export function protoNum(proto: string | number): number {
  return typeof proto === 'number' ? proto : PROTO_NUM[proto] ?? 0;
}

function l4Name(proto: string | number): string {
  return typeof proto === 'string' && L4_NAMES.has(proto) ? proto : 'unknown';
}

function pad8(s: string): string {
  return s.length >= 8 ? s : s + ' '.repeat(8 - s.length);
}

function ctime(ns: bigint): string {
  const d = new Date(Number(ns / 1000000000n) * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
}

const EVENT_PREFIX = { new: '    [NEW] ', update: ' [UPDATE] ', destroy: '[DESTROY] ' };

// Each piece of a line starts with its separating space, so a line is built without a
// trailing space to cut off (cutting would copy every line once more).
const HEADS: Record<string, string> = {};
for (const name of L4_NAMES) HEADS[name] = `${pad8(name)} ${PROTO_NUM[name]}`;

/** The "tcp      6" column: name padded to 8, then the number. */
function head(proto: string | number): string {
  return (typeof proto === 'string' && HEADS[proto]) || `${pad8(l4Name(proto))} ${protoNum(proto)}`;
}

// Formatting numbers is the costly part of a line: the pieces of small numbers (ports,
// timeouts, marks, use counts) are made once and reused.
const SPORT: string[] = [];
const DPORT: string[] = [];
const NUM: string[] = [];
const MARK: string[] = [];
const USE: string[] = [];
const SMALL = 65536;

function sportText(n: number): string {
  return n < SMALL ? (SPORT[n] ??= ` sport=${n}`) : ` sport=${n}`;
}
function dportText(n: number): string {
  return n < SMALL ? (DPORT[n] ??= ` dport=${n}`) : ` dport=${n}`;
}
/** ` N` */
function numText(n: number): string {
  return n < SMALL ? (NUM[n] ??= ` ${n}`) : ` ${n}`;
}
function markText(n: number): string {
  return n < 256 ? (MARK[n] ??= ` mark=${n}`) : ` mark=${n}`;
}
function useText(n: number): string {
  return n < 256 ? (USE[n] ??= ` use=${n}`) : ` use=${n}`;
}

function ports(t: Flow['orig'], proto: string | number): string {
  if (t.sport !== undefined && proto !== 'gre') return sportText(t.sport) + dportText(t.dport!);
  if (proto === 'gre') return ` srckey=0x${(t.sport ?? 0).toString(16)} dstkey=0x${(t.dport ?? 0).toString(16)}`;
  if (t.icmp) return ` type=${t.icmp.type} code=${t.icmp.code} id=${t.icmp.id}`;
  return '';
}

const SEEN_REPLY = 1 << 1;
const ASSURED = 1 << 2;
const OFFLOAD = 1 << 14;
const HW_OFFLOAD = 1 << 15;

/** One flow as conntrack prints it (no trailing newline). Written for speed: it runs once per flow of -L. */
export function formatFlow(f: Flow, o: ConntrackFormatOptions = {}): string {
  const ev = o.eventMode === true;
  let s = o.event ? EVENT_PREFIX[o.event] : '';
  if (o.extended) s += f.family === 'ipv6' ? 'ipv6     10 ' : 'ipv4     2 ';
  s += head(f.proto);
  if (!(ev && f.timeout === 0 && o.event === 'destroy')) s += numText(f.timeout);
  if (f.state !== undefined && (f.tcp || f.sctp || f.dccp)) s += ' ' + f.state;
  const orig = f.orig;
  const reply = f.reply;
  s += ' src=' + orig.src + ' dst=' + orig.dst + ports(orig, f.proto);
  if (orig.zone !== undefined) s += ` zone-orig=${orig.zone}`;
  const c = f.counters;
  if (c) s += ` packets=${c.orig.packets} bytes=${c.orig.bytes}`;
  const bits = f.statusBits;
  const hasStatus = !(ev && bits === 0);
  if (hasStatus && !(bits & SEEN_REPLY)) s += ' [UNREPLIED]';
  s += ' src=' + reply.src + ' dst=' + reply.dst + ports(reply, f.proto);
  if (reply.zone !== undefined) s += ` zone-reply=${reply.zone}`;
  if (c) s += ` packets=${c.reply.packets} bytes=${c.reply.bytes}`;
  if (hasStatus) {
    if (bits & HW_OFFLOAD) s += ' [HW_OFFLOAD]';
    else if (bits & OFFLOAD) s += ' [OFFLOAD]';
    else if (bits & ASSURED) s += ' [ASSURED]';
  }
  if (!ev || f.mark !== 0 || o.markSent === true) s += markText(f.mark);
  if (f.secmark !== undefined) s += ` secmark=${f.secmark}`;
  if (f.secctx !== undefined) s += ` secctx=${f.secctx}`;
  if (f.zone) s += ` zone=${f.zone}`;
  if (f.timestamp) {
    const stop = f.timestamp.stop !== undefined ? Number(f.timestamp.stop / 1000000000n) : o.now ?? Math.floor(Date.now() / 1000);
    s += ` delta-time=${stop - Number(f.timestamp.start / 1000000000n)}`;
    if (o.timestamp) {
      s += ` [start=${ctime(f.timestamp.start)}]`;
      if (f.timestamp.stop !== undefined) s += ` [stop=${ctime(f.timestamp.stop)}]`;
    }
  }
  if (f.helper !== undefined) s += ` helper=${f.helper}`;
  if (!ev) s += useText(f.use);
  if (o.id) s += ` id=${f.id}`;
  if (o.labelNames && f.labels && f.labels.length) {
    const names = f.labels.map((b) => o.labelNames!.get(b)).filter((n): n is string => !!n);
    if (names.length) s += ` labels=${names.join(',')}`;
  }
  return s;
}

const SAVE_STATUS: [string, number][] = [['EXPECTED', 0], ['SEEN_REPLY', 1], ['ASSURED', 2], ['FIXED_TIMEOUT', 10]];
const SAVE_PREFIX = { new: '-A ', update: '-U ', destroy: '-D ' };

function isNat(f: Flow, which: 'src' | 'dst'): boolean {
  if (which === 'src') return f.status.includes('SRC_NAT') && f.reply.dst !== f.orig.src;
  return f.status.includes('DST_NAT') && f.reply.src !== f.orig.dst;
}

/**
 * `-o save`: the flow as conntrack options that re-create it (`conntrack -R` reads them
 * back). Dumps are written as -A; events as -A/-U/-D by type.
 */
export function formatSave(f: Flow, type: 'new' | 'update' | 'destroy' = 'new', event?: { event: 'new' | 'update' | 'destroy' }): string {
  const eventMode = event !== undefined;
  let s = SAVE_PREFIX[type];
  if (!(eventMode && f.timeout === 0 && type === 'destroy')) s += `-t ${f.timeout} `;
  if (!(eventMode && f.statusBits === 0)) {
    const names = SAVE_STATUS.filter(([, bit]) => (f.statusBits >>> bit) & 1).map(([n]) => n);
    s += `-u ${names.length ? names.join(',') : 'UNSET'} `;
  }
  if (f.secmark !== undefined) s += `-c ${f.secmark} `;
  if (f.zone) s += `-w ${f.zone} `;
  if (f.orig.zone !== undefined) s += `--orig-zone ${f.orig.zone} `;
  if (f.reply.zone !== undefined) s += `--reply-zone ${f.reply.zone} `;
  s += `-s ${f.orig.src} -d ${f.orig.dst} `;
  s += `${isNat(f, 'dst') ? '-g' : '-r'} ${f.reply.src} `;
  s += `${isNat(f, 'src') ? '-n' : '-q'} ${f.reply.dst} `;
  const name = l4Name(f.proto);
  if (name === 'unknown') {
    s += `-p ${protoNum(f.proto)}`;
  } else {
    s += `-p ${name} `;
    if (f.orig.icmp) {
      const p = name === 'icmpv6' ? 'icmpv6' : 'icmp';
      s += `--${p}-type ${f.orig.icmp.type} --${p}-code ${f.orig.icmp.code} --${p}-id ${f.orig.icmp.id} `;
    } else if (name === 'gre') {
      s += `--srckey ${f.orig.sport ?? 0} --dstkey ${f.orig.dport ?? 0} `;
    } else if (f.orig.sport !== undefined) {
      s += `--sport ${f.orig.sport} --dport ${f.orig.dport} --reply-port-src ${f.reply.sport} --reply-port-dst ${f.reply.dport} `;
    }
    if (f.state !== undefined && (f.tcp || f.sctp || f.dccp)) s += `--state ${f.state} `;
  }
  return s.trimEnd();
}

/** Minimal subset of Expectation used by the formatter. */
export interface ExpectationLike {
  timeout: number;
  tuple: { proto: string | number; src: string; dst: string; sport?: number; dport?: number; icmp?: { type: number; code: number; id: number } };
  mask: { proto: string | number; src: string; dst: string; sport?: number; dport?: number; icmp?: { type: number; code: number; id: number } };
  master: { proto: string | number; src: string; dst: string; sport?: number; dport?: number; icmp?: { type: number; code: number; id: number } };
  zone?: number;
  flags: string[];
  class: number;
  helper?: string;
}

function expPorts(t: ExpectationLike['tuple']): string {
  if (t.icmp) return `type=${t.icmp.type} code=${t.icmp.code} id=${t.icmp.id} `;
  if (t.sport !== undefined || t.dport !== undefined) return `sport=${t.sport ?? 0} dport=${t.dport ?? 0} `;
  return '';
}

/** An expectation as `conntrack -L expect` prints it. */
export function formatExpectation(x: ExpectationLike, event?: 'new' | 'update' | 'destroy'): string {
  let s = event ? EVENT_PREFIX[event] : '';
  s += `${x.timeout} proto=${protoNum(x.tuple.proto)} `;
  s += `src=${x.tuple.src} dst=${x.tuple.dst} ${expPorts(x.tuple)}`;
  s += `mask-src=${x.mask.src} mask-dst=${x.mask.dst} ${expPorts(x.mask)}`;
  s += `master-src=${x.master.src} master-dst=${x.master.dst} ${expPorts(x.master)}`;
  if (x.zone) s += `zone=${x.zone} `;
  const flags = x.flags.filter((f) => f === 'PERMANENT' || f === 'INACTIVE' || f === 'USERSPACE');
  if (flags.length) s += `${flags.join(',')} `;
  s += `class=${x.class} `;
  if (x.helper) s += `helper=${x.helper} `;
  return s.trimEnd();
}

/**
 * Writes flows as conntrack lines, many lines per write: the text is gathered into large
 * strings and handed to the writer in chunks. Resolves with the number written.
 */
export async function writeFlows(
  flows: AsyncIterable<Flow>,
  out: LineWriter,
  format: ConntrackFormatOptions | ((f: Flow) => string),
  rest?: (f: Flow) => boolean,
): Promise<number> {
  const line = typeof format === 'function' ? format : undefined;
  const options = typeof format === 'function' ? {} : format;
  let n = 0;
  let text = '';
  for await (const f of flows) {
    if (rest !== undefined && !rest(f)) continue;
    text += (line === undefined ? formatFlow(f, options) : line(f)) + '\n';
    n++;
    if (text.length >= CHUNK_CHARS) {
      const w = out.text(text);
      text = '';
      if (w) await w;
    }
  }
  if (text.length > 0) await out.text(text);
  return n;
}

const CHUNK_CHARS = 1 << 16;

/**
 * An event as `conntrack -E` prints it (`save`: as `-E -o save`), with the suffix of events a
 * netlink client caused. CTA_MARK is in every such event except DESTROY (the kernel adds
 * IPCT_MARK to what ctnetlink requests report), so `mark=0` is printed for those.
 */
export function formatEvent(ev: FlowEvent, o: ConntrackFormatOptions = {}, save = false): string {
  const text = save
    ? formatSave(ev.flow, ev.type, { event: ev.type })
    : formatFlow(ev.flow, { ...o, event: ev.type, eventMode: true, markSent: ev.portId !== undefined && ev.type !== 'destroy' });
  return ev.portId === undefined ? text : text + userspaceSuffix(ev.portId);
}
