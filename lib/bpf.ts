/**
 * Classic BPF socket filters for conntrack event sockets.
 *
 * On a netlink socket the "packet" a classic BPF program sees is the netlink message
 * itself: the nlmsghdr (host byte order), the nfgenmsg, then the ctnetlink attributes.
 * Attributes are found without loops through the kernel's ancillary loads
 * SKF_AD_NLATTR (find a top-level attribute of type X, scanning from offset A) and
 * SKF_AD_NLATTR_NEST (find attribute X inside the nested attribute at offset A); both
 * leave the attribute's offset in A, or 0 when it is absent.
 *
 * The program only rejects an event when it can prove the filter does not match, and it
 * decides exactly what the library's predicate (the one dumps use) decides for the parts it
 * covers (test/unit/bpf.test.ts runs both over captured events). When the program covers
 * the whole filter the predicate is not run again; otherwise it checks the rest.
 */
import {
  AF_INET, AF_INET6, CTA_IP_V4_DST, CTA_IP_V4_SRC, CTA_IP_V6_DST, CTA_IP_V6_SRC, CTA_MARK,
  CTA_PROTO_DST_PORT, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_TUPLE_IP, CTA_TUPLE_ORIG,
  CTA_TUPLE_PROTO, CTA_TUPLE_REPLY, CTA_ZONE, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW,
  NFNL_SUBSYS_CTNETLINK, NLM_F_CREATE,
} from './enums';
import { parsePrefix, Prefix } from './address';
import { protoNumber } from './tuple';
import type { FlowFilter, TupleFilter } from './filter';

// Instruction classes, sizes, modes and operations (linux/bpf_common.h, linux/filter.h).
export const BPF_LD = 0x00; // BPF_LD
export const BPF_LDX = 0x01; // BPF_LDX
export const BPF_ST = 0x02; // BPF_ST
export const BPF_STX = 0x03; // BPF_STX
export const BPF_ALU = 0x04; // BPF_ALU
export const BPF_JMP = 0x05; // BPF_JMP
export const BPF_RET = 0x06; // BPF_RET
export const BPF_MISC = 0x07; // BPF_MISC
export const BPF_W = 0x00; // BPF_W
export const BPF_H = 0x08; // BPF_H
export const BPF_B = 0x10; // BPF_B
export const BPF_IMM = 0x00; // BPF_IMM
export const BPF_ABS = 0x20; // BPF_ABS
export const BPF_IND = 0x40; // BPF_IND
export const BPF_MEM = 0x60; // BPF_MEM
export const BPF_LEN = 0x80; // BPF_LEN
export const BPF_AND = 0x50; // BPF_AND
export const BPF_JA = 0x00; // BPF_JA
export const BPF_JEQ = 0x10; // BPF_JEQ
export const BPF_JGT = 0x20; // BPF_JGT
export const BPF_JGE = 0x30; // BPF_JGE
export const BPF_JSET = 0x40; // BPF_JSET
export const BPF_K = 0x00; // BPF_K
export const BPF_X = 0x08; // BPF_X
export const BPF_A = 0x10; // BPF_A (return A)
export const BPF_TAX = 0x00; // BPF_TAX
export const BPF_TXA = 0x80; // BPF_TXA
export const BPF_MEMWORDS = 16; // BPF_MEMWORDS
export const SKF_AD_OFF = -0x1000; // SKF_AD_OFF
export const SKF_AD_NLATTR = 12; // SKF_AD_NLATTR
export const SKF_AD_NLATTR_NEST = 16; // SKF_AD_NLATTR_NEST
/** Ancillary load operands as the unsigned k field carries them. */
export const K_NLATTR = (SKF_AD_OFF + SKF_AD_NLATTR) >>> 0;
export const K_NLATTR_NEST = (SKF_AD_OFF + SKF_AD_NLATTR_NEST) >>> 0;

/** One struct sock_filter. */
export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** Offset of the first ctnetlink attribute: nlmsghdr (16) + nfgenmsg (4). */
const ATTR_START = 20;
const OFF_MSG_TYPE = 4; // low byte of nlmsg_type: the ctnetlink message
const OFF_SUBSYS = 5; // high byte of nlmsg_type: the nfnetlink subsystem
const OFF_FLAGS_HI = 7; // high byte of nlmsg_flags (NLM_F_CREATE lives there)
const OFF_FAMILY = 16; // nfgenmsg.nfgen_family
const ACCEPT_ALL = 0xffffffff;

type Target = string; // a label

interface PendingInsn {
  code: number;
  k: number;
  jt?: Target;
  jf?: Target;
  ja?: Target;
}

/** A tiny assembler with forward labels. */
class Asm {
  readonly code: (PendingInsn | { label: string })[] = [];
  private n = 0;

  label(name: string): void {
    this.code.push({ label: name });
  }
  fresh(prefix: string): string {
    return `${prefix}${this.n++}`;
  }
  ins(code: number, k = 0, jt?: Target, jf?: Target): void {
    this.code.push({ code, k: k >>> 0, jt, jf });
  }
  ja(target: Target): void {
    this.code.push({ code: BPF_JMP | BPF_JA, k: 0, ja: target });
  }
  /** Resolves labels; a missing jt/jf falls through to the next instruction. */
  assemble(): Insn[] {
    const where = new Map<string, number>();
    let pc = 0;
    for (const c of this.code) {
      if ('label' in c) where.set(c.label, pc);
      else pc++;
    }
    const out: Insn[] = [];
    for (const c of this.code) {
      if ('label' in c) continue;
      const here = out.length;
      const rel = (t: Target | undefined): number => {
        if (t === undefined) return 0;
        const at = where.get(t);
        if (at === undefined) throw new Error(`bpf: unknown label ${t}`);
        const d = at - here - 1;
        if (d < 0) throw new Error('bpf: backward jump');
        return d;
      };
      if (c.ja !== undefined) {
        out.push({ code: c.code, jt: 0, jf: 0, k: rel(c.ja) });
      } else {
        const jt = rel(c.jt);
        const jf = rel(c.jf);
        if (jt > 255 || jf > 255) throw new Error('bpf: conditional jump out of range');
        out.push({ code: c.code, jt, jf, k: c.k });
      }
    }
    return out;
  }
}

// Shorthands.
const LDB_ABS = BPF_LD | BPF_B | BPF_ABS;
const LDH_IND = BPF_LD | BPF_H | BPF_IND;
const LDW_IND = BPF_LD | BPF_W | BPF_IND;
const LDB_IND = BPF_LD | BPF_B | BPF_IND;
const LD_IMM = BPF_LD | BPF_IMM;
const LDX_IMM = BPF_LDX | BPF_IMM;
const LD_MEM = BPF_LD | BPF_MEM;
const ST = BPF_ST;
const TAX = BPF_MISC | BPF_TAX;
const AND_K = BPF_ALU | BPF_AND | BPF_K;
const JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
const JSET_K = BPF_JMP | BPF_JSET | BPF_K;
const RET_K = BPF_RET | BPF_K;

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

/** Packs instructions as struct sock_filter records (host order: little endian). */
export function pack(insns: Insn[]): Buffer {
  const b = Buffer.alloc(insns.length * 8);
  insns.forEach((x, i) => {
    b.writeUInt16LE(x.code, i * 8);
    b.writeUInt8(x.jt, i * 8 + 2);
    b.writeUInt8(x.jf, i * 8 + 3);
    b.writeUInt32LE(x.k >>> 0, i * 8 + 4);
  });
  return b;
}

/** Unpacks a struct sock_filter array (for tests and diagnostics). */
export function unpack(b: Buffer): Insn[] {
  const out: Insn[] = [];
  for (let o = 0; o + 8 <= b.length; o += 8) {
    out.push({ code: b.readUInt16LE(o), jt: b[o + 2], jf: b[o + 3], k: b.readUInt32LE(o + 4) });
  }
  return out;
}
