/**
 * `nfct -L|-G|-D|-I|-U|-A|-E|-F|-C|-S ...`: the conntrack CLI's own options, run on the
 * library. Same acceptance, effect, exit codes and (for -L/-G/-E/-D/-U) the same printed
 * lines as conntrack-tools 1.4.7, including the summary line on stderr.
 */
import { readFileSync } from 'fs';
import type { Conntrack, CreateSpec, Flow, FlowFilter, UpdateSpec } from '../../../lib';
import { formatExpectation, formatFlow, formatSave, type ConntrackFormatOptions } from '../common/conntrack-format';
import { Cmd, CtAddr, CtRefusal, OTHER_PROBLEM, Opt, PARAMETER_PROBLEM, Parsed, hasComparison, parseConntrackArgs } from '../common/ct-parse';
import { readVersion } from '../common/commands';
import { openHandle } from '../common/handle';
import { maskedEqual, sameAddress } from '../common/inet';
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

/** True once the library has the calls of issue 13 (upsert, updateMatching, zeroCounters...). */
function hasExtendedApi(ct: Conntrack): boolean {
  const c = ct as unknown as Record<string, unknown>;
  return typeof c.upsert === 'function' && typeof c.updateMatching === 'function';
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
// Matching (conntrack's nfct_filter): done in full here, on every flow.

function protoName(p: Parsed): string | number | undefined {
  if (!p.proto) return undefined;
  return p.proto.kind === 'unknown' ? p.proto.num : p.proto.name;
}

/** The part of the options the library's filter can express (it also filters in the kernel). */
function libFilter(p: Parsed, withStatus: boolean): FlowFilter {
  const f: FlowFilter = {};
  if (p.family) f.family = p.family;
  const proto = protoName(p);
  if (proto !== undefined) f.proto = proto as FlowFilter['proto'];
  if (p.mark) f.mark = p.mark.mask === 0xffffffff ? p.mark.value : { value: (p.mark.value & p.mark.mask) >>> 0, mask: p.mark.mask };
  if (p.zone !== undefined) f.zone = p.zone;
  if (withStatus && (p.status.set.length || p.status.unset.length)) {
    f.status = { set: p.status.set as never[], unset: p.status.unset as never[] };
  }
  return f;
}

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

function natMatches(p: Parsed, f: Flow): boolean {
  const o = p.options;
  let checkSrc = o.has(Opt.n);
  let checkDst = o.has(Opt.g);
  if (o.has(Opt.j)) checkSrc = checkDst = true;
  if (!checkSrc && !checkDst) return true;
  const isSnat = f.status.includes('SRC_NAT') && !sameAddress(f.reply.dst, f.orig.src);
  const isSpat = f.status.includes('SRC_NAT') && f.reply.dport !== f.orig.sport;
  const isDnat = f.status.includes('DST_NAT') && !sameAddress(f.reply.src, f.orig.dst);
  const isDpat = f.status.includes('DST_NAT') && f.reply.sport !== f.orig.dport;
  const side = (spec: { address?: CtAddr; port?: number } | undefined, isAddr: boolean, isPort: boolean, addr: string, port: number | undefined): boolean => {
    // The translated address is compared for IPv4 and IPv6 alike (conntrack compares IPv4 only).
    if (spec?.address) {
      if (!(isAddr && sameAddress(spec.address.address, addr))) return false;
      if (spec.port !== undefined && !(isPort && spec.port === port)) return false;
      return true;
    }
    if (spec?.port !== undefined) return isPort && spec.port === port;
    return isAddr || isPort;
  };
  const spec = (which: 'src' | 'dst') => p.nat[which] ?? p.nat.any;
  const hasSrc = checkSrc && side(spec('src'), isSnat, isSpat, f.reply.dst, f.reply.dport);
  const hasDst = checkDst && side(spec('dst'), isDnat, isDpat, f.reply.src, f.reply.sport);
  if (o.has(Opt.j)) return hasSrc || hasDst;
  if (o.has(Opt.n) && o.has(Opt.g)) return hasSrc && hasDst;
  return o.has(Opt.n) ? hasSrc : hasDst;
}

function tupleMatches(p: Parsed, f: Flow, dir: 'orig' | 'reply'): boolean {
  const t = f[dir];
  const a = dir === 'orig' ? [p.addr.s, p.addr.d] : [p.addr.r, p.addr.q];
  const masked = dir === 'orig' ? [p.addr.maskSrc, p.addr.maskDst] : [undefined, undefined];
  for (const [k, spec] of a.entries()) {
    if (!spec) continue;
    const addr = k === 0 ? t.src : t.dst;
    if (masked[k]) {
      if (f.family !== spec.family || !maskedEqual(addr, spec.address, masked[k]!.address)) return false;
    } else if (!sameAddress(addr, spec.address)) return false;
  }
  const ports = dir === 'orig' ? [p.ports.sport, p.ports.dport] : [p.ports.replySport, p.ports.replyDport];
  if (ports[0] !== undefined && t.sport !== ports[0]) return false;
  if (ports[1] !== undefined && t.dport !== ports[1]) return false;
  if (dir === 'orig' && (p.icmp.type !== undefined || p.icmp.code !== undefined || p.icmp.id !== undefined)) {
    if (!t.icmp) return false;
    if (p.icmp.type !== undefined && t.icmp.type !== p.icmp.type) return false;
    if (p.icmp.code !== undefined && t.icmp.code !== p.icmp.code) return false;
    if (p.icmp.id !== undefined && t.icmp.id !== p.icmp.id) return false;
  }
  return true;
}

function protoMatches(p: Parsed, f: Flow): boolean {
  if (!p.proto) return true;
  const num = typeof f.proto === 'number' ? f.proto : PROTO_NUMS[f.proto];
  return num === p.proto.num;
}
const PROTO_NUMS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, dccp: 33, gre: 47, icmpv6: 58, sctp: 132, udplite: 136 };

/** True when some option filters beyond what libFilter() already guarantees. */
function needsMatcher(p: Parsed): boolean {
  const o = p.options;
  const libOnly = new Set([Opt.f, Opt.p, Opt.m, Opt.w, Opt.o, Opt.z, Opt.b, Opt.e, Opt.u]);
  for (const x of o) if (!libOnly.has(x)) return true;
  // Protocol options (ports, ICMP fields, state) and status are checked here too.
  return p.state !== undefined || Object.keys(p.ports).length > 0 || Object.keys(p.icmp).length > 0 || o.has(Opt.u);
}

/** conntrack's nfct_filter(): NAT, mark, labels, networks, then the compared attributes. */
function matcher(p: Parsed, forUpdate = false): (f: Flow) => boolean {
  const wantLabels = p.labels.length ? labelBits(p.labels) : [];
  const compare = forUpdate || hasComparison(p);
  return (f: Flow) => {
    if (p.family && f.family !== p.family) return false;
    if (!natMatches(p, f)) return false;
    if (wantLabels.length && !wantLabels.every((b) => f.labels?.includes(b))) return false;
    if (!tupleMatches(p, f, 'orig') || !tupleMatches(p, f, 'reply') || !protoMatches(p, f)) return false;
    if (p.id !== undefined && f.id !== p.id) return false;
    if (forUpdate) return true;
    if (p.mark && ((f.mark & p.mark.mask) >>> 0) !== p.mark.value) return false;
    if (!compare) return true;
    if (p.status.set.some((s) => !f.status.includes(s as never))) return false;
    if (p.status.unset.some((s) => f.status.includes(s as never))) return false;
    if (p.secmark !== undefined && (f.secmark ?? 0) !== p.secmark) return false;
    if (p.zone !== undefined && f.zone !== p.zone) return false;
    if (p.origZone !== undefined && (f.orig.zone ?? 0) !== p.origZone) return false;
    if (p.replyZone !== undefined && (f.reply.zone ?? 0) !== p.replyZone) return false;
    if (p.state !== undefined && f.state !== p.state) return false;
    if (p.timeout !== undefined && f.timeout !== p.timeout) return false;
    return true;
  };
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
  if (p.table === 'dying' || p.table === 'unconfirmed') {
    // The library lists these tables with list({ table }) once it has them (issue 13).
    let flows: Flow[];
    try {
      flows = await ct.list({ table: p.table } as FlowFilter);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_INVALID_ARGUMENT') {
        throw new OpFailed(`-L ${p.table}: this version of the library cannot list the ${p.table} table yet`, 'ERR_UNSUPPORTED');
      }
      throw err;
    }
    const line = lineFor(p, formatOptions(p));
    for (const f of flows) await out.line(line(f));
    summary(`${flows.length} flow entries have been shown.`);
    return 0;
  }
  if (p.options.has(Opt.z) && hasComparison(p)) throw new CtRefusal(PARAMETER_PROBLEM, '-z (zero counters) cannot be combined with filters');
  const dumpOptions: Record<string, unknown> = {};
  if (p.options.has(Opt.z)) {
    if (!hasExtendedApi(ct)) throw new OpFailed('-z: this version of the library cannot zero counters (IPCTNL_MSG_CT_GET_CTRZERO) yet', 'ERR_UNSUPPORTED');
    dumpOptions.zeroCounters = true;
  }
  const match = needsMatcher(p) ? matcher(p) : undefined;
  const line = lineFor(p, formatOptions(p));
  let n = 0;
  if (p.output.has('xml')) await out.line('<?xml version="1.0" encoding="utf-8"?>\n<conntrack>');
  for await (const f of ct.dump(libFilter(p, true), dumpOptions)) {
    if (match && !match(f)) continue;
    const w = out.line(line(f));
    if (w) await w;
    n++;
  }
  if (p.output.has('xml') && n > 0) await out.line('</conntrack>');
  await out.flush();
  summary(`${n} flow entries have been shown.`);
  return 0;
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
  let n = 0;
  if (matcher(p)(f)) {
    await out.line(lineFor(p, formatOptions(p))(f));
    n = 1;
  }
  await out.flush();
  summary(`${n} flow entries have been shown.`);
  return n === 0 ? OTHER_PROBLEM : 0;
}

async function del(ct: Conntrack, p: Parsed, out: LineWriter, interactive: boolean): Promise<number> {
  const match = matcher(p);
  const deleted: Flow[] = [];
  const n = await ct.deleteMatching(libFilter(p, false), (f) => {
    if (!match(f)) return false;
    deleted.push(f);
    return true;
  });
  const line = lineFor(p, formatOptions(p), 'destroy');
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
    const c = ct as unknown as { upsert?: (s: CreateSpec) => Promise<void> };
    if (typeof c.upsert === 'function') {
      await c.upsert(spec);
    } else {
      // Until the library has upsert (one request, NLM_F_CREATE without NLM_F_EXCL):
      // create, and update the existing entry on EEXIST.
      try {
        await ct.create(spec);
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST') throw err;
        const { reply: _r, nat: _n, helper: _h, labels, status, ...rest } = spec;
        const upd: UpdateSpec = { ...rest } as UpdateSpec;
        if (labels) upd.labels = labels;
        if (status) upd.status = status;
        await ct.update(upd);
      }
    }
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

async function update(ct: Conntrack, p: Parsed, out: LineWriter, interactive: boolean): Promise<number> {
  const match = matcher(p, true);
  const filter: FlowFilter = {};
  if (p.family) filter.family = p.family;
  const proto = protoName(p);
  if (proto !== undefined) filter.proto = proto as FlowFilter['proto'];
  const flows = (await ct.list(filter)).filter(match);
  const addLabels = p.labelModify.length && p.options.has(Opt.labelAdd) ? labelBits(p.labelModify) : [];
  const delLabels = p.options.has(Opt.labelDel) ? (p.labelDelAll ? undefined : labelBits(p.labelModify)) : [];
  const results = await Promise.all(
    flows.map(async (f) => {
      const changes: Partial<UpdateSpec> = {};
      let changed = false;
      if (p.mark) {
        const mark = (((f.mark & ~p.mark.mask) ^ p.mark.value) >>> 0);
        if (mark !== f.mark) {
          changes.mark = mark;
          changed = true;
        }
      }
      if (p.timeout !== undefined) {
        changes.timeout = p.timeout;
        changed = true;
      }
      if (p.status.set.length && p.status.set.some((s) => !f.status.includes(s as never))) {
        changes.status = p.status.set as UpdateSpec['status'];
        changed = true;
      }
      if (p.state !== undefined && p.state !== f.state) {
        changes.state = p.state;
        changed = true;
      }
      if (addLabels.length && addLabels.some((b) => !f.labels?.includes(b))) {
        changes.labels = { set: addLabels };
        changed = true;
      }
      if (p.options.has(Opt.labelDel) && f.labels?.length) {
        const unset = delLabels ?? f.labels;
        if (unset.some((b) => f.labels!.includes(b))) {
          changes.labels = { unset };
          changed = true;
        }
      }
      if (!changed) return undefined;
      const key = { proto: f.proto, orig: f.orig, zone: f.zone, id: f.id };
      try {
        await ct.update({ ...key, ...changes } as UpdateSpec);
        return await ct.get(key);
      } catch (err) {
        // The entry vanished meanwhile: not an error, not counted.
        if ((err as { code?: string }).code === 'ENOENT') return undefined;
        throw err;
      }
    }),
  );
  const line = lineFor(p, formatOptions(p));
  let n = 0;
  for (const f of results) {
    if (!f) continue;
    const w = out.line(line(f));
    if (w) await w;
    n++;
  }
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

async function events(ct: Conntrack, p: Parsed, out: LineWriter): Promise<number> {
  const types = p.eventMask.size ? [...p.eventMask] : undefined;
  const stream = ct.events({ ...(types ? { types } : {}), ...(p.bufferSize ? { receiveBufferSize: p.bufferSize } : {}) });
  if (p.bufferSize) {
    process.stderr.write(`NOTICE: Netlink socket buffer size has been set to ${(stream as unknown as { receiveBufferSize?: number }).receiveBufferSize ?? p.bufferSize} bytes.\n`);
  }
  const match = matcher(p);
  const opts = { ...formatOptions(p), eventMode: true };
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
      if (p.family && ev.flow.family !== p.family) continue;
      if (!match(ev.flow)) continue;
      let text: string;
      if (p.output.has('save')) text = formatSave(ev.flow, ev.type, true);
      else {
        text = formatFlow(ev.flow, { ...opts, event: ev.type });
        if (p.output.has('timestamp')) text = eventTimePrefix(ev.timestamp) + text;
      }
      await out.line(text);
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
  -o, --output type[,...]       Output format: extended, id, ktimestamp, labels, timestamp, save, xml
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

Protocol options (after -p): --sport/--orig-port-src, --dport/--orig-port-dst, --reply-port-src,
  --reply-port-dst, --mask-port-src, --mask-port-dst, --tuple-port-src, --tuple-port-dst,
  --state (tcp, sctp, dccp), --icmp-type/--icmp-code/--icmp-id (icmpv6: --icmpv6-...),
  --srckey/--dstkey (gre).
Environment: NFCT_NETNS=NAME|PATH|PID works on that namespace's table.
Exit codes: 0 success, 1 operation failed, 2 bad parameters.
`;
