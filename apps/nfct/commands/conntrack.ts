/**
 * `nfct -L|-G|-D|-I|-U|-A|-E|-F|-C|-S ...`: the conntrack CLI's own options, run on the
 * library. Same acceptance, effect, exit codes and (for -L/-G/-E/-D/-U) the same printed
 * lines as conntrack-tools 1.4.7, including the summary line on stderr.
 */
import { readFileSync } from 'fs';
import type { Conntrack, CreateSpec, Flow, FlowEvent, TcpFlag, UpdateChanges, UpdateSpec } from '../../../lib';
import { formatEvent, formatExpectation, formatFlow, formatSave, writeFlows, type ConntrackFormatOptions } from '../common/conntrack-format';
import { SelectMode, Selection, protoName, select } from '../common/ct-filter';
import { Cmd, CtRefusal, OTHER_PROBLEM, Opt, PARAMETER_PROBLEM, Parsed, hasComparison, parseConntrackArgs } from '../common/ct-parse';
import { readVersion } from '../common/commands';
import { openHandle } from '../common/handle';
import { LineWriter } from '../common/output';

const SUMMARY_PREFIX = 'conntrack v1.4.7 (conntrack-tools): ';

function summary(text: string): void {
  process.stderr.write(SUMMARY_PREFIX + text + '\n');
}

class OpFailed extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

/** Removes nfct's own --netns option (anywhere on the line); returns its value. */
function takeNetns(argv: string[]): string | undefined {
  let netns = process.env.NFCT_NETNS || undefined;
  for (let k = 0; k < argv.length; k++) {
    if (argv[k] === '--netns' && k + 1 < argv.length) {
      netns = argv[k + 1];
      argv.splice(k, 2);
      k--;
    } else if (argv[k].startsWith('--netns=')) {
      netns = argv[k].slice(8);
      argv.splice(k, 1);
      k--;
    }
  }
  return netns;
}

let netnsOption: string | undefined;

export async function run(args: string[], out = new LineWriter()): Promise<number> {
  const argv = [...args];
  netnsOption = takeNetns(argv);
  if ((argv[0] === '-R' || argv[0] === '--load-file') && argv.length > 1) return loadFile(argv[1], out);
  let parsed: Parsed;
  try {
    parsed = parseConntrackArgs(argv);
  } catch (err) {
    return refusal(err);
  }
  for (const w of parsed.warnings) process.stderr.write(w + '\n');
  if ((parsed as { noCommand?: boolean }).noCommand || parsed.cmd === Cmd.CT_HELP) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (parsed.cmd === Cmd.CT_VERSION) {
    process.stdout.write(`nfct v${readVersion()} (conntrack-tools 1.4.7 compatible)\n`);
    return 0;
  }
  let ct: Conntrack | undefined;
  try {
    ct = await openHandle(netnsOption);
    const n = await execute(ct, parsed, out, true);
    await out.end();
    return n;
  } catch (err) {
    await out.end();
    return failure(err, parsed.cmd);
  } finally {
    await ct?.close();
  }
}

function refusal(err: unknown): number {
  if (err instanceof CtRefusal) {
    process.stderr.write(`nfct: ${err.message}\n`);
    if (err.exitCode === PARAMETER_PROBLEM) process.stderr.write('Try `nfct -h` for the options.\n');
    return err.exitCode;
  }
  throw err;
}

function failure(err: unknown, cmd: Cmd): number {
  if (err instanceof CtRefusal) return refusal(err);
  const e = err as { code?: string; message?: string; field?: string };
  if (err instanceof OpFailed) {
    process.stderr.write(`nfct: ${e.message}${e.code ? ` [${e.code}]` : ''}\n`);
    return OTHER_PROBLEM;
  }
  const hint = ERRNO_HINT[`${cmd}:${e.code}`] ?? ERRNO_HINT[`*:${e.code}`];
  process.stderr.write(`nfct: ${e.message ?? String(err)}${hint ? ` (${hint})` : ''}${e.code ? ` [${e.code}]` : ''}\n`);
  // Input the library refused is a parameter problem; everything else an operation failure.
  return e.code === 'ERR_INVALID_ARGUMENT' ? PARAMETER_PROBLEM : OTHER_PROBLEM;
}

const ERRNO_HINT: Record<string, string> = {
  [`${Cmd.CT_CREATE}:EEXIST`]: 'use -U to update it, or -A to add or update',
  [`${Cmd.CT_GET}:ENOENT`]: 'no entry has this tuple',
  [`${Cmd.EXP_CREATE}:ENOENT`]: 'the master conntrack was not found',
  '*:EPERM': 'needs CAP_NET_ADMIN: run as root, or inside `unshare -Urn`',
};

// ---------------------------------------------------------------------------------------
// Selection (conntrack's nfct_filter) is the library's filter: see common/ct-filter.ts.

function labelBits(names: string[]): number[] {
  const map = labelMap();
  return names.map((n) => {
    if (/^\d+$/.test(n) && Number(n) < 128) return Number(n);
    const bit = map.get(n);
    if (bit === undefined) {
      if (map.size === 0) throw new CtRefusal(PARAMETER_PROBLEM, `label ${JSON.stringify(n)}: no label names are defined (/etc/xtables/connlabel.conf is missing); give the bit number instead`);
      throw new CtRefusal(PARAMETER_PROBLEM, `unknown label ${JSON.stringify(n)}: define it in /etc/xtables/connlabel.conf ("BIT NAME" per line) or give the bit number`);
    }
    return bit;
  });
}

let labels: Map<string, number> | undefined;
function labelMap(): Map<string, number> {
  if (labels) return labels;
  labels = new Map();
  for (const file of ['/etc/xtables/connlabel.conf', '/etc/connlabel.conf']) {
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const m = /^\s*(\d+)\s+(\S+)/.exec(line);
        if (m) labels.set(m[2], Number(m[1]));
      }
      break;
    } catch {
      /* next */
    }
  }
  return labels;
}

const PROTO_NUMS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, dccp: 33, gre: 47, icmpv6: 58, sctp: 132, udplite: 136 };

function selection(p: Parsed, mode: SelectMode): Selection {
  return select(p, mode, p.labels.length ? labelBits(p.labels) : []);
}

function formatOptions(p: Parsed): ConntrackFormatOptions {
  const o = p.output;
  const opts: ConntrackFormatOptions = { extended: o.has('extended'), id: o.has('id'), timestamp: o.has('ktimestamp') };
  if (o.has('labels')) {
    const names = new Map<number, string>();
    for (const [n, b] of labelMap()) if (!names.has(b)) names.set(b, n);
    opts.labelNames = names;
  }
  return opts;
}

function lineFor(p: Parsed, opts: ConntrackFormatOptions, saveType: 'new' | 'update' | 'destroy' = 'new'): (f: Flow) => string {
  if (p.output.has('save')) return (f) => formatSave(f, saveType);
  if (p.output.has('xml')) return (f) => flowXml(f);
  return (f) => formatFlow(f, opts);
}

// ---------------------------------------------------------------------------------------
// Entries named by the options

function tupleFromOptions(p: Parsed, dir: 'orig' | 'reply'): { src: string; dst: string; sport?: number; dport?: number; icmp?: { type: number; code: number; id: number }; zone?: number } | undefined {
  const src = dir === 'orig' ? p.addr.s : p.addr.r;
  const dst = dir === 'orig' ? p.addr.d : p.addr.q;
  if (!src || !dst) return undefined;
  const t: { src: string; dst: string; sport?: number; dport?: number; icmp?: { type: number; code: number; id: number }; zone?: number } = { src: src.address, dst: dst.address };
  const kind = p.proto?.kind;
  if (kind === 'ports' || kind === 'gre') {
    const sp = dir === 'orig' ? p.ports.sport : p.ports.replySport;
    const dp = dir === 'orig' ? p.ports.dport : p.ports.replyDport;
    if (sp !== undefined && dp !== undefined) {
      t.sport = sp;
      t.dport = dp;
    }
  } else if (kind === 'icmp' && dir === 'orig' && p.icmp.type !== undefined) {
    t.icmp = { type: p.icmp.type, code: p.icmp.code ?? 0, id: p.icmp.id ?? 0 };
  }
  const z = dir === 'orig' ? p.origZone : p.replyZone;
  if (z !== undefined) t.zone = z;
  return t;
}

function invert(t: NonNullable<ReturnType<typeof tupleFromOptions>>, proto: string | number | undefined): NonNullable<ReturnType<typeof tupleFromOptions>> {
  const r: NonNullable<ReturnType<typeof tupleFromOptions>> = { src: t.dst, dst: t.src };
  if (t.sport !== undefined) {
    r.sport = t.dport;
    r.dport = t.sport;
  }
  if (t.icmp) {
    // Echo request (8 / 128) <-> reply (0 / 129); other types keep theirs.
    const pairs: Record<number, number> = proto === 'icmpv6' ? { 128: 129, 129: 128 } : { 8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17 };
    r.icmp = { type: pairs[t.icmp.type] ?? t.icmp.type, code: t.icmp.code, id: t.icmp.id };
  }
  return r;
}

/** The kernel's TCP state numbers (enum tcp_conntrack), in order. */
const TCP_STATE_ORDER = ['NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'SYN_SENT2'];

function createSpec(p: Parsed): CreateSpec {
  const proto = protoName(p)!;
  let orig = tupleFromOptions(p, 'orig');
  const reply = tupleFromOptions(p, 'reply');
  if (!orig && reply) orig = invert(reply, proto);
  const spec: CreateSpec = { proto: proto as CreateSpec['proto'], orig: orig!, timeout: p.timeout! };
  // ICMP reply tuples are the kernel's to work out (-o save lines give only their addresses).
  if (reply && tupleFromOptions(p, 'orig') && p.proto?.kind !== 'icmp') spec.reply = reply;
  if (p.status.set.length) {
    const other = p.status.set.filter((x) => !['SEEN_REPLY', 'ASSURED', 'FIXED_TIMEOUT'].includes(x));
    // The kernel refuses these on create (EBUSY); say so instead of sending them.
    if (other.length) throw new OpFailed(`${p.cmd === Cmd.CT_ADD ? '-A' : '-I'}: the kernel does not let a new entry start with status ${other.join(',')} (only SEEN_REPLY, ASSURED, FIXED_TIMEOUT)`, 'EBUSY');
    spec.status = p.status.set as CreateSpec['status'];
  }
  if (p.mark) spec.mark = p.mark.value;
  if (p.zone !== undefined) spec.zone = p.zone;
  if (p.state) spec.state = p.state;
  // conntrack -I/-A create TCP entries with window tracking off (BE_LIBERAL) and SACK
  // permitted, in both directions (an entry made without packets has no window to check),
  // and from TIME_WAIT on with CLOSE_INIT, so a new connection may reopen it.
  if (proto === 'tcp') {
    const closing = TCP_STATE_ORDER.indexOf(p.state ?? 'NONE') >= TCP_STATE_ORDER.indexOf('TIME_WAIT');
    const flags = { flags: ['BE_LIBERAL', 'SACK_PERM', ...(closing ? ['CLOSE_INIT'] : [])] as TcpFlag[] };
    spec.tcpWindow = { flagsOrig: flags, flagsReply: { flags: [...flags.flags] } };
  }
  if (p.labelModify.length) spec.labels = labelBits(p.labelModify);
  const nat: NonNullable<CreateSpec['nat']> = {};
  for (const which of ['src', 'dst'] as const) {
    const n = p.nat[which];
    if (!n?.address) continue;
    let port = n.port;
    // -o save writes the mapped port as the reply port (-n ADDR ... --reply-port-dst PORT).
    const replyPort = which === 'src' ? p.ports.replyDport : p.ports.replySport;
    const origPort = which === 'src' ? p.ports.sport : p.ports.dport;
    if (port === undefined && replyPort !== undefined && replyPort !== origPort) port = replyPort;
    nat[which] = port !== undefined ? { address: n.address.address, port } : { address: n.address.address };
  }
  if (nat.src || nat.dst) spec.nat = nat;
  return spec;
}

// ---------------------------------------------------------------------------------------

async function execute(ct: Conntrack, p: Parsed, out: LineWriter, interactive: boolean): Promise<number> {
  switch (p.cmd) {
    case Cmd.CT_LIST:
      return list(ct, p, out);
    case Cmd.CT_GET:
      return get(ct, p, out);
    case Cmd.CT_DELETE:
      return del(ct, p, out, interactive);
    case Cmd.CT_CREATE:
    case Cmd.CT_ADD:
      return create(ct, p, interactive);
    case Cmd.CT_UPDATE:
      return update(ct, p, out, interactive);
    case Cmd.CT_FLUSH:
      await ct.flush(p.family ? { family: p.family } : undefined);
      if (interactive) summary('connection tracking table has been emptied.');
      return 0;
    case Cmd.CT_EVENT:
      return events(ct, p, out);
    case Cmd.CT_COUNT: {
      const s = await ct.stats();
      await out.line(String(s.count));
      return 0;
    }
    case Cmd.CT_STATS:
      return stats(ct, out);
    case Cmd.EXP_LIST: {
      const xs = await ct.expectations.list(p.family ? { family: p.family } : undefined);
      for (const x of xs) await out.line(formatExpectation(x));
      summary(`${xs.length} expectations have been shown.`);
      return 0;
    }
    case Cmd.EXP_COUNT: {
      const xs = await ct.expectations.list();
      await out.line(String(xs.length));
      return 0;
    }
    case Cmd.EXP_STATS: {
      const st = await ct.expectations.stats();
      for (const c of st) await out.line(`cpu=${String(c.cpu).padEnd(4)}\texpect_new=${c.new} expect_create=${c.create} expect_delete=${c.delete} `);
      return 0;
    }
    case Cmd.EXP_FLUSH:
      await ct.expectations.flush();
      if (interactive) summary('expectation table has been emptied.');
      return 0;
    case Cmd.EXP_CREATE:
      return expCreate(ct, p);
    case Cmd.EXP_GET:
    case Cmd.EXP_DELETE:
      return expGetDelete(ct, p, out);
    case Cmd.EXP_EVENT:
      return expEvents(ct, out);
    default:
      throw new CtRefusal(PARAMETER_PROBLEM, 'no command given');
  }
}

async function list(ct: Conntrack, p: Parsed, out: LineWriter): Promise<number> {
  if (p.options.has(Opt.z) && hasComparison(p)) throw new CtRefusal(PARAMETER_PROBLEM, '-z (zero counters) cannot be combined with filters');
  const { filter, rest } = selection(p, 'list');
  if (p.table === 'dying' || p.table === 'unconfirmed') filter.table = p.table;
  // Every message as the kernel sent it: conntrack -L does not drop the entries a racing
  // dump repeats either, and skipping that check saves time on large tables.
  const flows = ct.dump(filter, { dedupe: false, ...(p.options.has(Opt.z) ? { zeroCounters: true } : {}) });
  let n: number;
  if (p.output.has('xml')) {
    const line = lineFor(p, formatOptions(p));
    n = 0;
    for await (const f of flows) {
      if (rest && !rest(f)) continue;
      if (n === 0) await out.line('<?xml version="1.0" encoding="utf-8"?>\n<conntrack>');
      const w = out.line(line(f));
      if (w) await w;
      n++;
    }
    if (n > 0) await out.line('</conntrack>');
  } else if (p.output.has('save')) {
    n = await writeFlows(flows, out, (f) => formatSave(f, 'new'), rest);
  } else {
    n = await writeFlows(flows, out, formatOptions(p), rest);
  }
  await out.flush();
  summary(`${n} flow entries have been shown.`);
  return 0;
}

function keyOf(f: Flow) {
  return { proto: f.proto, orig: f.orig, zone: f.zone, id: f.id };
}

async function get(ct: Conntrack, p: Parsed, out: LineWriter): Promise<number> {
  const proto = protoName(p)!;
  const orig = tupleFromOptions(p, 'orig');
  const reply = tupleFromOptions(p, 'reply');
  const key = { proto, ...(orig ? { orig } : { reply }), ...(p.id !== undefined ? { id: p.id } : {}) } as Parameters<Conntrack['get']>[0];
  let f: Flow;
  try {
    f = await ct.get(key, orig ? undefined : { direction: 'reply' });
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') throw new OpFailed('-G: no such entry', 'ENOENT');
    throw err;
  }
  const { rest } = selection(p, 'get');
  let n = 0;
  if (!rest || rest(f)) {
    await out.line(lineFor(p, formatOptions(p))(f));
    n = 1;
  }
  await out.flush();
  summary(`${n} flow entries have been shown.`);
  return n === 0 ? OTHER_PROBLEM : 0;
}

async function del(ct: Conntrack, p: Parsed, out: LineWriter, interactive: boolean): Promise<number> {
  const { filter, rest } = selection(p, 'list');
  const line = lineFor(p, formatOptions(p), 'destroy');
  // Printed as the dump returned them, in order, once the kernel has acked the deletes.
  const deleted: Flow[] = [];
  const n = await ct.deleteMatching(filter, (f) => {
    if (rest && !rest(f)) return false;
    deleted.push(f);
    return true;
  });
  for (const f of deleted) {
    const w = out.line(line(f));
    if (w) await w;
  }
  await out.flush();
  if (!interactive) return 0;
  summary(`${n} flow entries have been deleted.`);
  return n === 0 ? OTHER_PROBLEM : 0;
}

async function create(ct: Conntrack, p: Parsed, interactive: boolean): Promise<number> {
  const spec = createSpec(p);
  if (p.cmd === Cmd.CT_ADD) {
    // One request: NLM_F_CREATE without NLM_F_EXCL creates the entry or updates it.
    await ct.upsert(spec);
    if (interactive) summary('1 flow entries have been added.');
    return 0;
  }
  try {
    await ct.create(spec);
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') throw new OpFailed('-I: the entry already exists (use -U to update it, or -A to add or update)', 'EEXIST');
    throw err;
  }
  if (interactive) summary('1 flow entries have been created.');
  return 0;
}

/** True when `after` differs from `before` in what -U changes (conntrack prints and counts those). */
function changedBy(p: Parsed, before: Flow, after: Flow): boolean {
  if (before.mark !== after.mark || before.statusBits !== after.statusBits || before.state !== after.state) return true;
  if (p.timeout !== undefined && before.timeout !== p.timeout) return true;
  const a = before.labels ?? [];
  const b = after.labels ?? [];
  return a.length !== b.length || a.some((x, i) => x !== b[i]);
}

async function update(ct: Conntrack, p: Parsed, out: LineWriter, interactive: boolean): Promise<number> {
  const { filter, rest } = selection(p, 'update');
  const changes: UpdateChanges = {};
  if (p.mark) changes.mark = p.mark.mask === 0xffffffff ? p.mark.value : { value: p.mark.value, mask: p.mark.mask };
  if (p.timeout !== undefined) changes.timeout = p.timeout;
  if (p.status.set.length) changes.status = p.status.set as UpdateChanges['status'];
  if (p.options.has(Opt.labelAdd)) changes.labels = { set: labelBits(p.labelModify) };
  else if (p.options.has(Opt.labelDel)) changes.labels = p.labelDelAll ? [] : { unset: labelBits(p.labelModify) };
  // The entries before the change: the lines conntrack prints are those the update changed.
  const before = (await ct.list(filter)).filter((f) => !rest || rest(f));
  let n: number;
  if (!rest && p.state === undefined) {
    n = await ct.updateMatching(filter, changes);
  } else {
    // A state (per protocol) or a selection the library's filter cannot express: by entry.
    await Promise.all(before.map((f) => ct.update({ ...keyOf(f), ...changes, ...(p.state !== undefined ? { state: p.state } : {}) } as UpdateSpec).catch((err) => {
      if ((err as { code?: string }).code !== 'ENOENT') throw err; // gone meanwhile: not counted
    })));
    n = -1;
  }
  const after = await Promise.all(before.map((f) => ct.get(keyOf(f)).catch((err) => {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  })));
  const line = lineFor(p, formatOptions(p));
  let printed = 0;
  for (let i = 0; i < before.length; i++) {
    const f = after[i];
    if (!f || !changedBy(p, before[i], f)) continue;
    const w = out.line(line(f));
    if (w) await w;
    printed++;
  }
  if (n < 0) n = printed;
  await out.flush();
  if (!interactive) return 0;
  summary(`${n} flow entries have been updated.`);
  return n === 0 ? OTHER_PROBLEM : 0;
}

function eventTimePrefix(ns: bigint | undefined): string {
  let sec: number;
  let usec: number;
  if (ns !== undefined) {
    sec = Number(ns / 1000000000n);
    usec = Number((ns % 1000000000n) / 1000n);
  } else {
    const now = Date.now();
    sec = Math.floor(now / 1000);
    usec = (now % 1000) * 1000 + Math.floor((Number(process.hrtime.bigint() % 1000000n)) / 1000) % 1000;
  }
  return `[${String(sec).padStart(8, '0')}.${String(usec).padStart(6, '0')}]\t`;
}

/** One -E line: the event as conntrack prints it, after the -o timestamp prefix. */
function eventLine(ev: FlowEvent, p: Parsed, opts: ConntrackFormatOptions): string {
  const text = formatEvent(ev, opts, p.output.has('save'));
  return p.output.has('timestamp') && !p.output.has('save') ? eventTimePrefix(ev.timestamp) + text : text;
}

async function events(ct: Conntrack, p: Parsed, out: LineWriter): Promise<number> {
  const types = p.eventMask.size ? [...p.eventMask] : undefined;
  const { filter, rest } = selection(p, 'list');
  const stream = ct.events({ filter, ...(types ? { types } : {}), ...(p.bufferSize ? { receiveBufferSize: p.bufferSize } : {}) });
  if (p.bufferSize) {
    process.stderr.write(`NOTICE: Netlink socket buffer size has been set to ${stream.receiveBufferSize} bytes.\n`);
  }
  const opts = formatOptions(p);
  let n = 0;
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void (stream as unknown as { close?: () => unknown }).close?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const lost = (info: { delta: number }) => {
    process.stderr.write(`WARNING: ${info.delta} events were lost (the socket receive buffer was full); see --buffer-size\n`);
  };
  (stream as unknown as { on?: (e: string, f: (i: { delta: number }) => void) => void }).on?.('lost', lost);
  try {
    for await (const ev of stream) {
      if (rest && !rest(ev.flow)) continue;
      await out.line(eventLine(ev, p, opts));
      await out.flush();
      n++;
    }
  } catch (err) {
    if (!stopping) throw err;
  }
  await out.end();
  summary(`${n} flow events have been shown.`);
  return 0;
}

async function stats(ct: Conntrack, out: LineWriter): Promise<number> {
  const s = await ct.stats();
  const order: [string, string][] = [
    ['searched', 'searched'], ['found', 'found'], ['new', 'new'], ['invalid', 'invalid'], ['ignore', 'ignore'],
    ['delete', 'delete'], ['deleteList', 'delete_list'], ['insert', 'insert'], ['insertFailed', 'insert_failed'],
    ['drop', 'drop'], ['earlyDrop', 'early_drop'], ['error', 'error'], ['searchRestart', 'search_restart'],
    ['clashResolve', 'clash_resolve'], ['chainTooLong', 'chaintoolong'],
  ];
  for (const c of s.perCpu) {
    const rec = c as unknown as Record<string, number | undefined>;
    let line = `cpu=${String(c.cpu).padEnd(4)}\t`;
    for (const [k, name] of order) if (rec[k] !== undefined) line += `${name}=${rec[k]} `;
    await out.line(line);
  }
  return 0;
}

function expTuple(p: Parsed, which: 'master' | 'tuple') {
  const proto = protoName(p)!;
  if (which === 'master') {
    return { proto, src: p.addr.s!.address, dst: p.addr.d!.address, ...(p.ports.sport !== undefined ? { sport: p.ports.sport, dport: p.ports.dport } : {}) };
  }
  return { proto, src: p.addr.expSrc!.address, dst: p.addr.expDst!.address, ...(p.ports.tupleSport !== undefined ? { sport: p.ports.tupleSport, dport: p.ports.tupleDport } : {}) };
}

async function expCreate(ct: Conntrack, p: Parsed): Promise<number> {
  const master = expTuple(p, 'master');
  const tuple = expTuple(p, 'tuple');
  const mask: Record<string, unknown> = { src: p.addr.maskSrc!.address, dst: p.addr.maskDst!.address };
  if (p.ports.maskSport !== undefined) mask.sport = p.ports.maskSport;
  if (p.ports.maskDport !== undefined) mask.dport = p.ports.maskDport;
  try {
    await ct.expectations.create({ master: { proto: master.proto, orig: master } as never, tuple, mask, timeout: p.timeout } as never);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') throw new OpFailed('-I expect: the master conntrack was not found', 'ENOENT');
    throw err;
  }
  return 0;
}

async function expGetDelete(ct: Conntrack, p: Parsed, out: LineWriter): Promise<number> {
  // Both name the expectation by its expected tuple (-s/-d/-p and ports).
  const target = expTuple(p, 'master');
  if (p.cmd === Cmd.EXP_GET) {
    const x = await ct.expectations.get(target as never);
    await out.line(formatExpectation(x));
    return 0;
  }
  await ct.expectations.delete(target as never);
  // conntrack counts expectations it printed, prints none here, and so exits with 1.
  summary('0 expectations have been shown.');
  return OTHER_PROBLEM;
}

async function expEvents(ct: Conntrack, out: LineWriter): Promise<number> {
  const stream = ct.expectations.events();
  let n = 0;
  let stopping = false;
  const stop = () => {
    stopping = true;
    void (stream as unknown as { close?: () => unknown }).close?.();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for await (const ev of stream as AsyncIterable<{ type: 'new' | 'update' | 'destroy'; expectation: Parameters<typeof formatExpectation>[0] }>) {
      await out.line(formatExpectation(ev.expectation, ev.type));
      await out.flush();
      n++;
    }
  } catch (err) {
    if (!stopping) throw err;
  }
  await out.end();
  summary(`${n} expectation events have been shown.`);
  return 0;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** One <flow> element (libnetfilter_conntrack's layout, not byte-identical). */
function flowXml(f: Flow): string {
  const tuple = (dir: 'original' | 'reply', t: Flow['orig']) => {
    let s = `<meta direction="${dir}"><layer3 protonum="${f.family === 'ipv6' ? 10 : 2}" protoname="${f.family}"><src>${xmlEscape(t.src)}</src><dst>${xmlEscape(t.dst)}</dst></layer3>`;
    s += `<layer4 protonum="${typeof f.proto === 'number' ? f.proto : PROTO_NUMS[f.proto]}" protoname="${typeof f.proto === 'number' ? 'unknown' : f.proto}">`;
    if (t.sport !== undefined) s += `<sport>${t.sport}</sport><dport>${t.dport}</dport>`;
    s += '</layer4>';
    const c = f.counters?.[dir === 'original' ? 'orig' : 'reply'];
    if (c) s += `<counters><packets>${c.packets}</packets><bytes>${c.bytes}</bytes></counters>`;
    return s + '</meta>';
  };
  let s = '<flow>' + tuple('original', f.orig) + tuple('reply', f.reply) + '<meta direction="independent">';
  if (f.state) s += `<state>${f.state}</state>`;
  s += `<timeout>${f.timeout}</timeout><mark>${f.mark}</mark>`;
  if (f.zone) s += `<zone>${f.zone}</zone>`;
  s += `<use>${f.use}</use><id>${f.id}</id>`;
  if (f.status.includes('ASSURED')) s += '<assured/>';
  if (!f.status.includes('SEEN_REPLY')) s += '<unreplied/>';
  return s + '</meta></flow>';
}

// ---------------------------------------------------------------------------------------
// -R / --load-file: one command per line, as `-o save` writes them.

/** Splits a line into words the way conntrack does (double quotes, backslash escapes in quotes). */
function splitWords(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote = false;
  for (let k = 0; k < line.length; k++) {
    const ch = line[k];
    if (quote) {
      if (ch === '\\' && k + 1 < line.length) cur += line[++k];
      else if (ch === '"') quote = false;
      else cur += ch;
      continue;
    }
    if (ch === '"') {
      quote = true;
      inWord = true;
    } else if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

async function loadFile(file: string, out: LineWriter): Promise<number> {
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (err) {
    process.stderr.write(`nfct: cannot read ${file}: ${(err as Error).message}\n`);
    return PARAMETER_PROBLEM;
  }
  const cmds: Parsed[] = [];
  try {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/^[ \t]+/, '');
      if (line === '' || line.startsWith('#')) continue;
      cmds.push(parseConntrackArgs(splitWords(line)));
    }
    for (const c of cmds) {
      if (![Cmd.CT_CREATE, Cmd.CT_ADD, Cmd.CT_UPDATE, Cmd.CT_DELETE, Cmd.CT_FLUSH].includes(c.cmd)) {
        throw new CtRefusal(PARAMETER_PROBLEM, `--load-file takes only -I, -A, -U, -D and -F lines, not ${['-L', '-I', '-U', '-D', '-G', '-F', '-E', '-V', '-h', '-L expect', '-I expect', '-D expect', '-G expect', '-F expect', '-E expect', '-C', '-C expect', '-S', '-S expect', '-A'][c.cmd]}`);
      }
    }
  } catch (err) {
    return refusal(err);
  }
  const ct = await openHandle(netnsOption);
  let current: Parsed | undefined;
  try {
    for (const c of cmds) {
      current = c;
      for (const w of c.warnings) process.stderr.write(w + '\n');
      await execute(ct, c, out, false);
    }
    await out.end();
    return 0;
  } catch (err) {
    await out.end();
    return failure(err, current?.cmd ?? Cmd.CT_CREATE);
  } finally {
    await ct.close();
  }
}

const USAGE = `nfct: the conntrack command line, on the conntrack npm package (conntrack-tools 1.4.7 options)
Usage: nfct [commands] [options]       (and: nfct COMMAND ..., see nfct --help)

Commands:
  -L [table] [options]          List conntrack or expectation table
  -G [table] parameters         Get conntrack or expectation
  -D [table] parameters         Delete conntrack or expectation
  -I [table] parameters         Create a conntrack or expectation
  -U [table] parameters         Update a conntrack
  -A [table] parameters         Add or update a conntrack
  -E [table] [options]          Show events
  -F [table]                    Flush table
  -C [table]                    Show counter
  -S                            Show statistics
  -R, --load-file FILE          Run the -I/-A/-U/-D/-F lines of FILE (- for stdin)

Tables: conntrack, expect, dying, unconfirmed

Conntrack parameters and options:
  -n, --src-nat [ip[:port]]     source NAT ip
  -g, --dst-nat [ip[:port]]     destination NAT ip
  -j, --any-nat [ip[:port]]     source or destination NAT ip
  -m, --mark mark[/mask]        Set mark
  -c, --secmark secmark         Set selinux secmark
  -e, --event-mask eventmask    Event mask, eg. NEW,DESTROY
  -z, --zero                    Zero counters while listing
  -o, --output type[,...]       Output format: extended, id, ktimestamp, labels, timestamp, save, userspace, xml
  -l, --label label[,...]       conntrack labels

Expectation parameters and options:
  --tuple-src ip                Source address in expect tuple
  --tuple-dst ip                Destination address in expect tuple

Updating parameters and options:
  --label-add label             Add label
  --label-del label             Delete label

Common parameters and options:
  -s, --src, --orig-src ip      Source address from original direction
  -d, --dst, --orig-dst ip      Destination address from original direction
  -r, --reply-src ip            Source address from reply direction
  -q, --reply-dst ip            Destination address from reply direction
  -p, --protonum proto          Layer 4 Protocol, eg. 'tcp'
  -f, --family proto            Layer 3 Protocol, eg. 'ipv6'
  -t, --timeout timeout         Set timeout
  -u, --status status           Set status, eg. ASSURED
  -w, --zone value              Set conntrack zone
  --orig-zone value             Set zone for original direction
  --reply-zone value            Set zone for reply direction
  -b, --buffer-size             Netlink socket buffer size
  --mask-src ip                 Source mask address
  --mask-dst ip                 Destination mask address
  --netns NAME|PATH|PID         Work on that network namespace's table (nfct only)

Protocol options (after -p): --sport/--orig-port-src, --dport/--orig-port-dst, --reply-port-src,
  --reply-port-dst, --mask-port-src, --mask-port-dst, --tuple-port-src, --tuple-port-dst,
  --state (tcp, sctp, dccp), --icmp-type/--icmp-code/--icmp-id (icmpv6: --icmpv6-...),
  --srckey/--dstkey (gre).
Environment: NFCT_NETNS=NAME|PATH|PID works on that namespace's table.
Exit codes: 0 success, 1 operation failed, 2 bad parameters.
`;
