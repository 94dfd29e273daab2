/** Options that name one entry (get/create) and the changes create/update apply. */
import type { CreateSpec, EntryKey, UpdateChanges } from '../../../lib';
import { parseFamily, parseMark, parseProto, parseUint, Values } from './args';
import { UsageError } from './errors';

type Options = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export const TUPLE_OPTIONS: Options = {
  proto: { type: 'string', short: 'p' },
  family: { type: 'string' },
  src: { type: 'string' },
  dst: { type: 'string' },
  sport: { type: 'string' },
  dport: { type: 'string' },
  'icmp-type': { type: 'string' },
  'icmp-code': { type: 'string' },
  'icmp-id': { type: 'string' },
  'reply-src': { type: 'string' },
  'reply-dst': { type: 'string' },
  'reply-sport': { type: 'string' },
  'reply-dport': { type: 'string' },
  zone: { type: 'string' },
  id: { type: 'string' },
};

export const TUPLE_HELP = `Naming the entry:
  -p, --proto NAME|NUMBER       protocol (required)
  --src ADDR --dst ADDR         original addresses
  --sport PORT --dport PORT     original ports (port protocols)
  --icmp-type T [--icmp-code C] [--icmp-id I]   ICMP / ICMPv6
  --reply-src, --reply-dst, --reply-sport, --reply-dport   the reply tuple (name the
                                entry by it when no original tuple is given)
  --zone N                      conntrack zone (default 0)
  --id N                        only the entry with this id (Flow.id)
`;

function tuple(v: Values, prefix: '' | 'reply-'): EntryKey['orig'] | undefined {
  const s = (k: string) => v[`${prefix}${k}`] as string | undefined;
  if (!s('src') && !s('dst')) return undefined;
  if (!s('src') || !s('dst')) throw new UsageError(`--${prefix}src and --${prefix}dst go together`, `${prefix}src`);
  const t: NonNullable<EntryKey['orig']> = { src: s('src')!, dst: s('dst')! };
  if (s('sport') !== undefined) t.sport = parseUint(s('sport')!, `${prefix}sport`, 65535);
  if (s('dport') !== undefined) t.dport = parseUint(s('dport')!, `${prefix}dport`, 65535);
  if (prefix === '' && v['icmp-type'] !== undefined) {
    t.icmp = { type: parseUint(v['icmp-type'] as string, 'icmp-type', 255) };
    if (v['icmp-code'] !== undefined) t.icmp.code = parseUint(v['icmp-code'] as string, 'icmp-code', 255);
    if (v['icmp-id'] !== undefined) t.icmp.id = parseUint(v['icmp-id'] as string, 'icmp-id', 65535);
  }
  return t;
}

/** The key and which tuple names it. */
export function keyFromValues(v: Values): { key: EntryKey; direction: 'orig' | 'reply' } {
  if (!v.proto) throw new UsageError('--proto is required to name an entry', 'proto');
  if (v.family) parseFamily(v.family as string);
  const key: EntryKey = { proto: parseProto(v.proto as string) as EntryKey['proto'] };
  const orig = tuple(v, '');
  const reply = tuple(v, 'reply-');
  if (orig) key.orig = orig;
  if (reply) key.reply = reply;
  if (!orig && !reply) throw new UsageError('name the entry with --src/--dst (and ports), or --reply-src/--reply-dst', 'src');
  if (v.zone !== undefined) key.zone = parseUint(v.zone as string, 'zone', 65535);
  if (v.id !== undefined) key.id = parseUint(v.id as string, 'id', 0xffffffff);
  return { key, direction: orig ? 'orig' : 'reply' };
}

export const CHANGE_OPTIONS: Options = {
  timeout: { type: 'string', short: 't' },
  'set-mark': { type: 'string' },
  'set-status': { type: 'string' },
  'set-label': { type: 'string', multiple: true },
  'unset-label': { type: 'string', multiple: true },
};

export const CHANGE_HELP = `Changes (ct.updateMatching):
  -t, --timeout SECONDS         new timeout
  --set-mark VALUE[/MASK]       new mark (with MASK: only those bits)
  --set-status FLAG[,FLAG]      set status flags (ASSURED, SEEN_REPLY, FIXED_TIMEOUT; the
                                kernel never clears them)
  --set-label BIT, --unset-label BIT   connlabel bits (repeatable)
A state is per protocol, so per entry: use nfct -U -p tcp ... --state NAME for that.
`;

export function changesFromValues(v: Values): UpdateChanges {
  const c: UpdateChanges = {};
  if (v.timeout !== undefined) c.timeout = parseUint(v.timeout as string, 'timeout', 0xffffffff);
  if (v['set-mark'] !== undefined) c.mark = parseMark(v['set-mark'] as string, 'set-mark');
  if (v['set-status'] !== undefined) {
    const set: string[] = [];
    const unset: string[] = [];
    for (const n of (v['set-status'] as string).split(',').filter(Boolean)) (n.startsWith('!') ? unset : set).push(n.replace(/^!/, '').toUpperCase());
    c.status = (unset.length ? { set, unset } : set) as UpdateChanges['status'];
  }
  const bits = (k: string) => ((v[k] as string[] | undefined) ?? []).map((b) => parseUint(b, k, 127));
  const setL = bits('set-label');
  const unsetL = bits('unset-label');
  if (setL.length || unsetL.length) c.labels = { set: setL, unset: unsetL };
  return c;
}

export function natTarget(text: string, field: string): { address: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m) return { address: text };
  return m[2] !== undefined ? { address: m[1], port: parseUint(m[2], field, 65535) } : { address: m[1] };
}

export function createSpecFromValues(v: Values): CreateSpec {
  const { key } = keyFromValues(v);
  if (!key.orig) throw new UsageError('create needs the original tuple (--src, --dst, and ports)', 'src');
  if (v.timeout === undefined) throw new UsageError('create needs --timeout SECONDS', 'timeout');
  const spec: CreateSpec = { proto: key.proto, orig: key.orig, timeout: parseUint(v.timeout as string, 'timeout', 0xffffffff) };
  if (key.reply) spec.reply = key.reply;
  if (key.zone !== undefined) spec.zone = key.zone;
  if (v.mark !== undefined) {
    const m = parseMark(v.mark as string);
    if (typeof m !== 'number') throw new UsageError('--mark: create takes a plain value (no mask)', 'mark');
    spec.mark = m;
  }
  if (v.status !== undefined) spec.status = (v.status as string).split(',').map((s) => s.trim().toUpperCase()) as CreateSpec['status'];
  if (v.state !== undefined) spec.state = (v.state as string).toUpperCase();
  if (v.label !== undefined) spec.labels = (v.label as string[]).map((b) => parseUint(b, 'label', 127));
  if (v.helper !== undefined) spec.helper = v.helper as string;
  const nat: NonNullable<CreateSpec['nat']> = {};
  if (v.snat !== undefined) nat.src = natTarget(v.snat as string, 'snat');
  if (v.dnat !== undefined) nat.dst = natTarget(v.dnat as string, 'dnat');
  if (nat.src || nat.dst) spec.nat = nat;
  return spec;
}
