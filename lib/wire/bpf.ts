/**
 * A classic BPF assembler for socket filters: the instruction encoding
 * (linux/bpf_common.h, linux/filter.h), forward labels, and packing into the struct
 * sock_filter array that SO_ATTACH_FILTER takes.
 *
 * On a netlink socket the "packet" a classic BPF program sees is the netlink message
 * itself: the nlmsghdr (host byte order), the nfgenmsg, then the attributes. Attributes
 * are found without loops through the kernel's ancillary loads SKF_AD_NLATTR (find a
 * top-level attribute of type X, scanning from offset A) and SKF_AD_NLATTR_NEST (find
 * attribute X inside the nested attribute at offset A); both leave the attribute's offset
 * in A, or 0 when it is absent.
 */

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

/** A jump target: a label name. */
export type Target = string;

interface PendingInsn {
  code: number;
  k: number;
  jt?: Target;
  jf?: Target;
  ja?: Target;
}

/** A tiny assembler with forward labels. */
export class Asm {
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
export const LDB_ABS = BPF_LD | BPF_B | BPF_ABS;
export const LDH_IND = BPF_LD | BPF_H | BPF_IND;
export const LDW_IND = BPF_LD | BPF_W | BPF_IND;
export const LDB_IND = BPF_LD | BPF_B | BPF_IND;
export const LD_IMM = BPF_LD | BPF_IMM;
export const LDX_IMM = BPF_LDX | BPF_IMM;
export const LD_MEM = BPF_LD | BPF_MEM;
export const ST = BPF_ST;
export const TAX = BPF_MISC | BPF_TAX;
export const AND_K = BPF_ALU | BPF_AND | BPF_K;
export const JEQ_K = BPF_JMP | BPF_JEQ | BPF_K;
export const JSET_K = BPF_JMP | BPF_JSET | BPF_K;
export const RET_K = BPF_RET | BPF_K;

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
