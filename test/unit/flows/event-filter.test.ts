/**
 * The event socket filter, run in a small classic-BPF interpreter (with the kernel's
 * SKF_AD_NLATTR / SKF_AD_NLATTR_NEST semantics) over event messages captured from the
 * kernel (test/fixtures/events/, see capture.js there). Whatever the program accepts or
 * rejects must agree with the library's own filter predicate.
 */
import {
  BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JMP, BPF_JSET,
  BPF_LD, BPF_LDX, BPF_MEM, BPF_MISC, BPF_RET, BPF_ST, BPF_TAX, BPF_W, Insn, K_NLATTR,
  K_NLATTR_NEST, pack,
} from '../../../lib/wire/bpf';
import { compileEventFilter, EventKind } from '../../../lib/flows/event-filter';
import { compileFilter, FlowFilter } from '../../../lib/flows/filter';
import { decodeFlow } from '../../../lib/flows/flow';
import { capturedMessages } from '../../helpers/fixtures';

/** Reads a struct sock_filter array back (code u16, jt u8, jf u8, k u32; host order). */
function unpack(b: Buffer): Insn[] {
  const out: Insn[] = [];
  for (let o = 0; o + 8 <= b.length; o += 8) out.push({ code: b.readUInt16LE(o), jt: b[o + 2], jf: b[o + 3], k: b.readUInt32LE(o + 4) });
  return out;
}


const messages = (file: string): Buffer[] => capturedMessages(`events/${file}`);

/** nla_find(): first attribute of `type` in data[start, end), by the kernel's rules. */
function nlaFind(pkt: Buffer, start: number, end: number, type: number): number {
  let p = start;
  while (p + 4 <= end) {
    const len = pkt.readUInt16LE(p);
    if (len < 4 || p + len > end) return 0;
    if ((pkt.readUInt16LE(p + 2) & 0x3fff) === type) return p;
    p += (len + 3) & ~3;
  }
  return 0;
}

/** Runs a classic BPF program over a packet (the netlink message). Returns the verdict. */
function run(prog: Insn[], pkt: Buffer): number {
  let A = 0;
  let X = 0;
  const M = new Uint32Array(16);
  const fail = (): number => 0; // an out-of-bounds load ends the program with 0
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc];
    const cls = code & 0x07;
    if (cls === BPF_LD) {
      const mode = code & 0xe0;
      const size = code & 0x18;
      if (mode === BPF_IMM) A = k;
      else if (mode === BPF_MEM) A = M[k];
      else if (mode === BPF_ABS && size === BPF_B && (k === K_NLATTR || k === K_NLATTR_NEST)) {
        if (pkt.length < 4 || A > pkt.length - 4) A = 0;
        else if (k === K_NLATTR) A = nlaFind(pkt, A, pkt.length, X);
        else {
          const len = pkt.readUInt16LE(A);
          A = len > pkt.length - A ? 0 : nlaFind(pkt, A + 4, A + len, X);
        }
      } else {
        const off = mode === BPF_IND ? (X + k) >>> 0 : k;
        const n = size === BPF_W ? 4 : size === BPF_H ? 2 : 1;
        if (off + n > pkt.length) return fail();
        A = n === 4 ? pkt.readUInt32BE(off) : n === 2 ? pkt.readUInt16BE(off) : pkt[off];
      }
    } else if (cls === BPF_LDX) {
      if ((code & 0xe0) !== BPF_IMM) throw new Error(`unsupported ldx ${code}`);
      X = k;
    } else if (cls === BPF_ST) {
      M[k] = A;
    } else if (cls === BPF_ALU) {
      if ((code & 0xf0) !== BPF_AND) throw new Error(`unsupported alu ${code}`);
      A = (A & k) >>> 0;
    } else if (cls === BPF_JMP) {
      const op = code & 0xf0;
      if (op === BPF_JA) pc += k;
      else if (op === BPF_JEQ) pc += A === k ? jt : jf;
      else if (op === BPF_JSET) pc += (A & k) !== 0 ? jt : jf;
      else throw new Error(`unsupported jmp ${code}`);
    } else if (cls === BPF_MISC) {
      if ((code & 0xf8) !== BPF_TAX) throw new Error(`unsupported misc ${code}`);
      X = A;
    } else if (cls === BPF_RET) {
      return k >>> 0;
    } else throw new Error(`unsupported class ${cls}`);
  }
  throw new Error('program fell off its end');
}

function kindOf(msg: Buffer): EventKind {
  if ((msg.readUInt16LE(4) & 0xff) === 2) return 'destroy';
  return msg.readUInt16LE(6) & 0x400 ? 'new' : 'update';
}

const ALL = [...messages('events.bin'), ...messages('events-timestamp.bin')];

const FILTERS: FlowFilter[] = [
  { proto: 'udp' },
  { proto: 'tcp', family: 'ipv6' },
  { family: 'ipv4' },
  { orig: { src: '10.0.0.0/8' } },
  { orig: { src: '10.1.0.0/16', dport: 53 } },
  { orig: { src: '10.1.2.3' } },
  { orig: { dst: 'fd00:1::/32' } },
  { orig: { dst: 'fd00::/8' }, proto: 'udp' },
  { orig: { src: 'fd00::1' } },
  { reply: { sport: 443 } },
  { reply: { src: '192.168.1.1', dport: 40000 } },
  { orig: { sport: 5353 } },
  { mark: 5 },
  { mark: 0 },
  { mark: { value: 0x100, mask: 0xff00 } },
  { mark: { value: 0, mask: 0xf } },
  { zone: 7 },
  { zone: 0 },
  { proto: 'sctp', orig: { dport: 2905 } },
  { proto: 'icmp' },
  { proto: 'udp', orig: { src: '10.2.0.0/15' }, mark: 5 },
];

describe('event BPF filter', () => {
  test('the fixtures hold new, update and destroy events for IPv4 and IPv6', () => {
    const kinds = new Set(ALL.map(kindOf));
    expect([...kinds].sort()).toEqual(['destroy', 'new', 'update']);
    const fams = new Set(ALL.map((m) => decodeFlow(m, 0, m.length).family));
    expect([...fams].sort()).toEqual(['ipv4', 'ipv6']);
  });

  test.each(FILTERS.map((f) => [JSON.stringify(f), f] as const))('%s: the program agrees with the library predicate on every captured event', (_name, filter) => {
    const prog = compileEventFilter(filter, ['new', 'update', 'destroy']);
    expect(prog.complete).toBe(true);
    expect(prog.program).toBeDefined();
    const match = compileFilter(filter).match;
    let accepted = 0;
    for (const m of ALL) {
      const verdict = run(prog.instructions, m) !== 0;
      expect(verdict).toBe(match(decodeFlow(m, 0, m.length)));
      if (verdict) accepted++;
    }
    // Every filter in the list keeps something and drops something in these fixtures.
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(ALL.length);
  });

  test.each([
    [['new'] as EventKind[]],
    [['update'] as EventKind[]],
    [['destroy'] as EventKind[]],
    [['new', 'destroy'] as EventKind[]],
  ])('event types %j are selected by the program', (types) => {
    const prog = compileEventFilter(undefined, types);
    for (const m of ALL) expect(run(prog.instructions, m) !== 0).toBe(types.includes(kindOf(m)));
  });

  test('no filter and all types compiles to no program', () => {
    expect(compileEventFilter(undefined, ['new', 'update', 'destroy']).program).toBeUndefined();
    expect(compileEventFilter({}, ['new', 'update', 'destroy']).program).toBeUndefined();
  });

  test('parts BPF does not decide are left to the library (complete is false), never wrongly rejected', () => {
    const filters: FlowFilter[] = [
      { status: ['ASSURED'] },
      { proto: 'icmp', orig: { icmp: { id: 77 } } },
      { orig: { src: '10.0.0.0/8', zone: 1 } },
    ];
    for (const filter of filters) {
      const prog = compileEventFilter(filter, ['new', 'update', 'destroy']);
      expect(prog.complete).toBe(false);
      if (filter.status) expect(prog.program).toBeUndefined(); // nothing for the kernel to do
      const match = compileFilter(filter).match;
      for (const m of ALL) {
        // The library's predicate is final: the program may only pass more, never fewer.
        if (match(decodeFlow(m, 0, m.length)) && prog.program) expect(run(prog.instructions, m)).not.toBe(0);
      }
    }
  });

  test('malformed messages (truncated attributes) are passed to the library, not rejected', () => {
    const prog = compileEventFilter({ orig: { src: '10.0.0.0/8' } }, ['new', 'update', 'destroy']);
    const m = Buffer.from(ALL[0]);
    const cut = m.subarray(0, 24); // header, nfgenmsg and a truncated first attribute
    cut.writeUInt32LE(24, 0);
    expect(run(prog.instructions, cut)).not.toBe(0);
  });

  test('non-conntrack messages pass (the library ignores them)', () => {
    const prog = compileEventFilter({ proto: 'tcp' }, ['new']);
    const m = Buffer.from(ALL[0]);
    m.writeUInt16LE((2 << 8) | 0, 4); // NFNL_SUBSYS_CTNETLINK_EXP
    expect(run(prog.instructions, m)).not.toBe(0);
  });

  test('pack and unpack are inverse and produce 8-byte sock_filter records', () => {
    const prog = compileEventFilter({ proto: 'udp', orig: { src: 'fd00::/8', dport: 53 }, mark: 1 }, ['destroy']);
    expect(prog.program!.length).toBe(prog.instructions.length * 8);
    expect(unpack(pack(prog.instructions))).toEqual(prog.instructions);
    // Every jump lands inside the program and it ends with a return.
    prog.instructions.forEach((x, i) => {
      if ((x.code & 7) === BPF_JMP) {
        const far = (x.code & 0xf0) === BPF_JA ? x.k : Math.max(x.jt, x.jf);
        expect(i + 1 + far).toBeLessThan(prog.instructions.length);
      }
    });
    expect(prog.instructions[prog.instructions.length - 1].code & 7).toBe(BPF_RET);
    expect(BPF_LD | BPF_B | BPF_ABS).toBe(0x30);
    expect(BPF_LD | BPF_H | BPF_IND).toBe(0x48);
    expect(BPF_LD | BPF_W | BPF_IND).toBe(0x40);
    expect(BPF_ALU | BPF_AND).toBe(0x54);
    expect(BPF_MISC | BPF_TAX).toBe(0x07);
    expect(BPF_JMP | BPF_JSET).toBe(0x45);
    expect(BPF_JMP | BPF_JEQ).toBe(0x15);
    expect(BPF_LD | BPF_MEM).toBe(0x60);
    expect(K_NLATTR).toBe(0xfffff00c);
    expect(K_NLATTR_NEST).toBe(0xfffff010);
  });
});
