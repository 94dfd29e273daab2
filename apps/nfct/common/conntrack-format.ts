/**
 * The text conntrack-tools 1.4.7 prints for a flow (libnetfilter_conntrack's default
 * format plus the CLI's own `-o` variants), so that `nfct -L` lines compare equal to
 * `conntrack -L` lines.
 */
import type { Flow } from '../../../lib';

export interface ConntrackFormatOptions {
  /** -o extended: prefix the layer-3 name and number. */
  extended?: boolean;
  /** -o id: append id=N. */
  id?: boolean;
  /** -o timestamp: append [start=...] [stop=...] (ctime, local time). */
  timestamp?: boolean;
  /** Event prefix: '[NEW]', '[UPDATE]', '[DESTROY]' right-aligned in 9 columns. */
  event?: 'new' | 'update' | 'destroy';
  /** Events leave out mark=0 (the kernel sends CTA_MARK only when set or changed). */
  omitZeroMark?: boolean;
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

function tuple(t: Flow['orig'], proto: string | number): string {
  let s = `src=${t.src} dst=${t.dst} `;
  if (proto === 'gre') s += `srckey=0x${(t.sport ?? 0).toString(16)} dstkey=0x${(t.dport ?? 0).toString(16)} `;
  else if (t.icmp) s += `type=${t.icmp.type} code=${t.icmp.code} id=${t.icmp.id} `;
  else if (t.sport !== undefined) s += `sport=${t.sport} dport=${t.dport} `;
  return s;
}

function ctime(ns: bigint): string {
  const d = new Date(Number(ns / 1000000000n) * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
}

const EVENT_PREFIX = { new: '    [NEW] ', update: ' [UPDATE] ', destroy: '[DESTROY] ' };

/** One flow as conntrack prints it (no trailing newline). */
export function formatFlow(f: Flow, o: ConntrackFormatOptions = {}): string {
  const num = protoNum(f.proto);
  let s = o.event ? EVENT_PREFIX[o.event] : '';
  if (o.extended) s += f.family === 'ipv6' ? 'ipv6     10 ' : 'ipv4     2 ';
  s += `${pad8(l4Name(f.proto))} ${num} `;
  if (f.timeout !== undefined) s += `${f.timeout} `;
  if (f.state !== undefined && (f.tcp || f.sctp || f.dccp)) s += `${f.state} `;
  s += tuple(f.orig, f.proto);
  if (f.orig.zone !== undefined) s += `zone-orig=${f.orig.zone} `;
  const c = f.counters;
  if (c) s += `packets=${c.orig.packets} bytes=${c.orig.bytes} `;
  const hasStatus = f.statusBits !== undefined && f.status !== undefined;
  if (hasStatus && !f.status.includes('SEEN_REPLY')) s += '[UNREPLIED] ';
  s += tuple(f.reply, f.proto);
  if (f.reply.zone !== undefined) s += `zone-reply=${f.reply.zone} `;
  if (c) s += `packets=${c.reply.packets} bytes=${c.reply.bytes} `;
  if (hasStatus) {
    if (f.status.includes('HW_OFFLOAD')) s += '[HW_OFFLOAD] ';
    else if (f.status.includes('OFFLOAD')) s += '[OFFLOAD] ';
    else if (f.status.includes('ASSURED')) s += '[ASSURED] ';
  }
  if (!(o.omitZeroMark && !f.mark)) s += `mark=${f.mark ?? 0} `;
  if (f.secmark !== undefined) s += `secmark=${f.secmark} `;
  if (f.secctx !== undefined) s += `secctx=${f.secctx} `;
  if (f.zone) s += `zone=${f.zone} `;
  if (f.timestamp) {
    const stop = f.timestamp.stop !== undefined ? Number(f.timestamp.stop / 1000000000n) : o.now ?? Math.floor(Date.now() / 1000);
    s += `delta-time=${stop - Number(f.timestamp.start / 1000000000n)} `;
    if (o.timestamp) {
      s += `[start=${ctime(f.timestamp.start)}] `;
      if (f.timestamp.stop !== undefined) s += `[stop=${ctime(f.timestamp.stop)}] `;
    }
  }
  if (f.helper !== undefined) s += `helper=${f.helper} `;
  if (f.use !== undefined) s += `use=${f.use} `;
  if (o.id) s += `id=${f.id} `;
  if (o.labelNames && f.labels && f.labels.length) {
    const names = f.labels.map((b) => o.labelNames!.get(b)).filter((n): n is string => !!n);
    if (names.length) s += `labels=${names.join(',')} `;
  }
  return s.slice(0, -1);
}
