/**
 * The kernel side of an event filter: a classic BPF socket filter (assembled with
 * wire/bpf.ts) compiled from a FlowFilter and the event types wanted.
 *
 * The program only rejects an event when it can prove the filter does not match, and it
 * decides exactly what the library's predicate (the one dumps use) decides for the parts it
 * covers (test/unit/flows/event-filter.test.ts runs both over captured events). When the
 * program covers the whole filter the predicate is not run again; otherwise it checks the rest.
 */
import {
  AF_INET, AF_INET6, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_MARK,
  CTA_PROTO_DST_PORT, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_TUPLE_IP, CTA_TUPLE_ORIG,
  CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, CTA_ZONE, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW,
  NFNL_SUBSYS_CTNETLINK, NLM_F_CREATE,
} from '../wire/enums';
import {
  AND_K, Asm, Insn, JEQ_K, JSET_K, K_NLATTR, K_NLATTR_NEST, LDB_ABS, LDB_IND, LDH_IND, LDW_IND, LDX_IMM, LD_IMM, LD_MEM,
  RET_K, ST, TAX, Target, pack,
} from '../wire/bpf';
import { NFGEN_FAMILY_OFFSET, NFNL_ATTR_OFFSET } from '../wire/netlink';
import { parsePrefix, Prefix } from '../common/address';
import { protoNumber } from './tuple';
import type { FlowFilter, TupleFilter } from './filter';

const ATTR_START = NFNL_ATTR_OFFSET;
const OFF_MSG_TYPE = 4; // low byte of nlmsg_type: the ctnetlink message
const OFF_SUBSYS = 5; // high byte of nlmsg_type: the nfnetlink subsystem
const OFF_FLAGS_HI = 7; // high byte of nlmsg_flags (NLM_F_CREATE lives there)
const OFF_FAMILY = NFGEN_FAMILY_OFFSET;
const ACCEPT_ALL = 0xffffffff;

/** What the compiled program decides, and what is left for the library. */
export interface EventFilterProgram {
  /** Packed struct sock_filter array for attachFilter(), or undefined when nothing to filter. */
  program: Buffer | undefined;
  instructions: Insn[];
  /** True when the program decides every part of the filter (no predicate needed after it). */
  complete: boolean;
}

export type EventKind = 'new' | 'update' | 'destroy';

/**
 * Compiles the kernel-expressible part of an (already validated) flow filter, plus the
 * event types wanted, into a socket filter. Handled in BPF: family, proto, orig/reply
 * src/dst prefixes, orig/reply ports, mark (value/mask), zone, event type. Left to the
 * library: status, ICMP fields, per-tuple zones.
 */
export function compileEventFilter(filter: FlowFilter | undefined, types: readonly EventKind[]): EventFilterProgram {
  const a = new Asm();
  const f = filter ?? {};
  let complete = true;
  let emitted = false;
  const REJECT = 'reject';
  const ACCEPT = 'accept';

  // Not a ctnetlink conntrack message: let it through (the library ignores it).
  a.ins(LDB_ABS, OFF_SUBSYS);
  a.ins(JEQ_K, NFNL_SUBSYS_CTNETLINK, undefined, ACCEPT);

  const want = new Set(types);
  if (want.size < 3) {
    emitted = true;
    const notDel = a.fresh('notdel');
    const isNew = a.fresh('new');
    const body = a.fresh('body');
    a.ins(LDB_ABS, OFF_MSG_TYPE);
    a.ins(JEQ_K, IPCTNL_MSG_CT_DELETE, undefined, notDel);
    a.ja(want.has('destroy') ? body : REJECT);
    a.label(notDel);
    a.ins(JEQ_K, IPCTNL_MSG_CT_NEW, undefined, ACCEPT);
    a.ins(LDB_ABS, OFF_FLAGS_HI);
    a.ins(JSET_K, NLM_F_CREATE >> 8, isNew);
    a.ja(want.has('update') ? body : REJECT);
    a.label(isNew);
    a.ja(want.has('new') ? body : REJECT);
    a.label(body);
  }

  // Family: explicit, or implied by an address.
  let family = f.family;
  for (const t of [f.orig, f.reply]) {
    for (const side of ['src', 'dst'] as const) {
      const text = t?.[side];
      if (text !== undefined) family = parsePrefix(text)?.family ?? family;
    }
  }
  if (family !== undefined) {
    emitted = true;
    a.ins(LDB_ABS, OFF_FAMILY);
    a.ins(JEQ_K, family === 'ipv4' ? AF_INET : AF_INET6, undefined, REJECT);
  }

  const protonum = f.proto !== undefined ? protoNumber(f.proto, 'filter.proto') : undefined;

  // Scratch memory: M[0] orig tuple, M[1] reply tuple, M[2] current CTA_TUPLE_PROTO.
  const tuple = (attr: number, slot: number, t: TupleFilter | undefined, withProto: boolean): void => {
    const needIp = t !== undefined && (t.src !== undefined || t.dst !== undefined);
    const needPorts = t !== undefined && (t.sport !== undefined || t.dport !== undefined);
    if (t?.icmp !== undefined || t?.zone !== undefined) complete = false;
    if (!needIp && !needPorts && !withProto) return;
    emitted = true;
    a.ins(LD_IMM, ATTR_START);
    a.ins(LDX_IMM, attr);
    a.ins(LDB_ABS, K_NLATTR);
    a.ins(JEQ_K, 0, ACCEPT);
    a.ins(ST, slot);
    if (needIp) {
      a.ins(LDX_IMM, CTA_TUPLE_IP);
      a.ins(LDB_ABS, K_NLATTR_NEST);
      a.ins(JEQ_K, 0, ACCEPT);
      a.ins(ST, 3);
      for (const side of ['src', 'dst'] as const) {
        const text = t![side];
        if (text === undefined) continue;
        const p = parsePrefix(text)!;
        const type = p.family === 'ipv4' ? (side === 'src' ? CTA_IP_V4_SRC : CTA_IP_V4_DST) : side === 'src' ? CTA_IP_V6_SRC : CTA_IP_V6_DST;
        a.ins(LD_MEM, 3);
        a.ins(LDX_IMM, type);
        a.ins(LDB_ABS, K_NLATTR_NEST);
        a.ins(JEQ_K, 0, ACCEPT);
        a.ins(TAX);
        prefixCheck(a, p, REJECT);
      }
    }
    if (needPorts || withProto) {
      a.ins(LD_MEM, slot);
      a.ins(LDX_IMM, CTA_TUPLE_PROTO);
      a.ins(LDB_ABS, K_NLATTR_NEST);
      a.ins(JEQ_K, 0, ACCEPT);
      a.ins(ST, 2);
      if (withProto) {
        a.ins(LDX_IMM, CTA_PROTO_NUM);
        a.ins(LDB_ABS, K_NLATTR_NEST);
        a.ins(JEQ_K, 0, ACCEPT);
        a.ins(TAX);
        a.ins(LDB_IND, 4);
        a.ins(JEQ_K, protonum!, undefined, REJECT);
      }
      for (const side of ['sport', 'dport'] as const) {
        const port = t?.[side];
        if (port === undefined) continue;
        a.ins(LD_MEM, 2);
        a.ins(LDX_IMM, side === 'sport' ? CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT);
        a.ins(LDB_ABS, K_NLATTR_NEST);
        a.ins(JEQ_K, 0, REJECT); // no port (ICMP, GRE...): the library would not match it either
        a.ins(TAX);
        a.ins(LDH_IND, 4);
        a.ins(JEQ_K, port, undefined, REJECT);
      }
    }
  };
  tuple(CTA_TUPLE_ORIG, 0, f.orig, protonum !== undefined);
  tuple(CTA_TUPLE_REPLY, 1, f.reply, false);

  // Top-level u32/u16 attributes whose absence means 0 (ctnetlink omits a zero mark/zone).
  const scalar = (attr: number, size: 'w' | 'h', value: number, mask: number): void => {
    emitted = true;
    const found = a.fresh('found');
    const absentMatches = ((0 & mask) >>> 0) === value;
    a.ins(LD_IMM, ATTR_START);
    a.ins(LDX_IMM, attr);
    a.ins(LDB_ABS, K_NLATTR);
    const after = a.fresh('after');
    a.ins(JEQ_K, 0, undefined, found);
    // Absent: the value is 0, known now.
    a.ja(absentMatches ? after : REJECT);
    a.label(found);
    a.ins(TAX);
    a.ins(size === 'w' ? LDW_IND : LDH_IND, 4);
    if (mask !== 0xffffffff) a.ins(AND_K, mask);
    a.ins(JEQ_K, value, undefined, REJECT);
    a.label(after);
  };
  if (f.mark !== undefined) {
    const value = typeof f.mark === 'number' ? f.mark : f.mark.value;
    const mask = typeof f.mark === 'number' ? 0xffffffff : f.mark.mask >>> 0;
    scalar(CTA_MARK, 'w', value >>> 0, mask); // same test as the library: (mark & mask) === value
  }
  if (f.zone !== undefined) scalar(CTA_ZONE, 'h', f.zone, 0xffffffff);
  if (f.status !== undefined) complete = false;
  // State and NAT need the decoded flow: left to the library.
  if (f.state !== undefined || f.nat !== undefined || f.natAddress !== undefined || f.natPort !== undefined) complete = false;

  if (!emitted) return { program: undefined, instructions: [], complete };
  a.label(ACCEPT);
  a.ins(RET_K, ACCEPT_ALL);
  a.label(REJECT);
  a.ins(RET_K, 0);
  const instructions = a.assemble();
  return { program: pack(instructions), instructions, complete };
}

/** Compares the address attribute at X (payload at X+4) with a prefix; jumps to reject on mismatch. */
function prefixCheck(a: Asm, p: Prefix, reject: Target): void {
  const words = p.bytes.length / 4;
  for (let i = 0; i < words; i++) {
    const bitsHere = Math.max(0, Math.min(32, p.bits - i * 32));
    if (bitsHere === 0) break;
    const mask = bitsHere === 32 ? 0xffffffff : (0xffffffff << (32 - bitsHere)) >>> 0;
    const value = (p.bytes.readUInt32BE(i * 4) & mask) >>> 0;
    a.ins(LDW_IND, 4 + i * 4);
    if (mask !== 0xffffffff) a.ins(AND_K, mask);
    a.ins(JEQ_K, value, undefined, reject);
  }
}
