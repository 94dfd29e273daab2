/**
 * Expectations on the wire: decoding CTA_EXPECT_* messages into Expectation objects.
 */
import {
  AF_INET6, CTA_EXPECT_CLASS, CTA_EXPECT_FLAGS, CTA_EXPECT_FN, CTA_EXPECT_HELP_NAME, CTA_EXPECT_ID, CTA_EXPECT_MASK,
  CTA_EXPECT_MASTER, CTA_EXPECT_NAT, CTA_EXPECT_NAT_DIR, CTA_EXPECT_NAT_TUPLE, CTA_EXPECT_TIMEOUT, CTA_EXPECT_TUPLE,
  CTA_EXPECT_ZONE, Family, NF_CT_EXPECT_INACTIVE, NF_CT_EXPECT_PERMANENT, NF_CT_EXPECT_USERSPACE,
} from '../wire/enums';
import { NFNL_ATTR_OFFSET, forEachAttr, readString } from '../wire/netlink';
import { fnv1a } from '../common/hash';
import { ProtoTuple, decodeTuple, protoName } from '../flows/tuple';

/** Expectation flag names (NF_CT_EXPECT_* without the prefix). */
export type ExpectationFlag = 'PERMANENT' | 'INACTIVE' | 'USERSPACE';

/** Flag names by bit. */
export const EXPECTATION_FLAGS: ReadonlyArray<readonly [ExpectationFlag, number]> = [
  ['PERMANENT', NF_CT_EXPECT_PERMANENT],
  ['INACTIVE', NF_CT_EXPECT_INACTIVE],
  ['USERSPACE', NF_CT_EXPECT_USERSPACE],
];

/** Direction of an expectation's NAT mapping. */
export type NatDirection = 'orig' | 'reply';

/**
 * An expectation: a connection the kernel waits for because a helper (or a program)
 * announced it. When a packet matching `tuple` under `mask` arrives, the new flow is
 * marked RELATED and linked to `master`.
 */
export interface Expectation {
  /** The kernel's id (CTA_EXPECT_ID), used by delete() to hit exactly this entry. */
  id: number;
  family: Family;
  /** Original tuple of the master flow (the control connection). */
  master: ProtoTuple;
  /** The expected connection; a source port of 0 with a mask port of 0 means "any". */
  tuple: ProtoTuple;
  /**
   * Which bits of `tuple` must match. The kernel only masks the source address and
   * source port; destination fields are always compared in full (shown as all ones).
   */
  mask: ProtoTuple;
  /** Seconds until the expectation expires. */
  timeout: number;
  /**
   * The master's zone. Kernels up to at least 6.18 do not report it (CTA_EXPECT_ZONE is
   * not dumped): then it is 0 in list()/events, and the requested zone after get()/create().
   */
  zone: number;
  /** Flag names (PERMANENT, INACTIVE, USERSPACE). */
  flags: ExpectationFlag[];
  /** The raw CTA_EXPECT_FLAGS bits. */
  flagBits: number;
  /** Expectation class of the helper (e.g. SIP signalling / audio / video). */
  class: number;
  /** Name of the master's helper (e.g. 'ftp'). */
  helper?: string;
  /** NAT mapping applied to the expected connection, when the helper set one. */
  nat?: { dir: NatDirection; tuple: ProtoTuple };
  /** Name of the helper callback run when the connection arrives (e.g. 'nat-follow-master'). */
  fn?: string;
  /** Attribute types the decoder did not know or could not parse (skipped). */
  unknown?: number[];
}

const EMPTY: ProtoTuple = Object.freeze({ proto: 0, src: '', dst: '' }) as ProtoTuple;

function protoTuple(buf: Buffer, s: number, e: number): { t: ProtoTuple; family: Family | undefined } {
  const d = decodeTuple(buf, s, e);
  const t: ProtoTuple = { proto: protoName(d.protonum), ...d.tuple };
  // Keep one stable shape: drop keys the tuple does not have.
  if (t.icmp === undefined) delete t.icmp;
  if (t.zone === undefined) delete t.zone;
  if (t.sport === undefined) delete t.sport;
  if (t.dport === undefined) delete t.dport;
  return { t, family: d.family };
}

/** Flag bits to names. */
function expectationFlagNames(bits: number): ExpectationFlag[] {
  const out: ExpectationFlag[] = [];
  for (const [name, bit] of EXPECTATION_FLAGS) if (bits & bit) out.push(name);
  return out;
}

/**
 * Decodes one ctnetlink expectation message at buf[off, off + len). Never throws:
 * malformed or unknown attributes are skipped and listed in `unknown`.
 */
export function decodeExpectation(buf: Buffer, off: number, len: number): Expectation {
  const nfFamily = buf[off + 16];
  const exp: Expectation = {
    id: 0,
    family: nfFamily === AF_INET6 ? 'ipv6' : 'ipv4',
    master: EMPTY,
    tuple: EMPTY,
    mask: EMPTY,
    timeout: 0,
    zone: 0,
    flags: [],
    flagBits: 0,
    class: 0,
    helper: undefined,
    nat: undefined,
    fn: undefined,
    unknown: undefined,
  };
  const whole = forEachAttr(buf, off + NFNL_ATTR_OFFSET, off + len, (t, s, e) => {
    const l = e - s + 4;
    switch (t) {
      case CTA_EXPECT_MASTER: exp.master = protoTuple(buf, s, e).t; break;
      case CTA_EXPECT_TUPLE: {
        const d = protoTuple(buf, s, e);
        exp.tuple = d.t;
        if (d.family) exp.family = d.family;
        break;
      }
      case CTA_EXPECT_MASK: exp.mask = protoTuple(buf, s, e).t; break;
      case CTA_EXPECT_TIMEOUT: if (l >= 8) exp.timeout = buf.readUInt32BE(s); break;
      case CTA_EXPECT_ID: if (l >= 8) exp.id = buf.readUInt32BE(s); break;
      case CTA_EXPECT_FLAGS:
        if (l >= 8) {
          exp.flagBits = buf.readUInt32BE(s);
          exp.flags = expectationFlagNames(exp.flagBits);
        }
        break;
      case CTA_EXPECT_CLASS: if (l >= 8) exp.class = buf.readUInt32BE(s); break;
      case CTA_EXPECT_ZONE: if (l >= 6) exp.zone = buf.readUInt16BE(s); break;
      case CTA_EXPECT_HELP_NAME: exp.helper = readString(buf, s, e); break;
      case CTA_EXPECT_FN: exp.fn = readString(buf, s, e); break;
      case CTA_EXPECT_NAT: {
        let dir: NatDirection = 'orig';
        let tuple: ProtoTuple | undefined;
        forEachAttr(buf, s, e, (qt, qs, qe) => {
          if (qt === CTA_EXPECT_NAT_DIR && qe - qs >= 4) dir = buf.readUInt32BE(qs) === 1 ? 'reply' : 'orig';
          else if (qt === CTA_EXPECT_NAT_TUPLE) tuple = protoTuple(buf, qs, qe).t;
        });
        if (tuple) exp.nat = { dir, tuple };
        break;
      }
      default:
        (exp.unknown ??= []).push(t);
    }
  });
  if (!whole) (exp.unknown ??= []).push(-1); // a truncated attribute: decoding stopped there
  return exp;
}

/** A signature of the fields that name an expectation (duplicate suppression in dumps). */
export function expectationSignature(x: Expectation): number {
  const t = x.tuple;
  return fnv1a(`${t.src}|${t.dst}|${t.sport}|${t.dport}|${t.proto}|${x.zone}|${x.master.src}|${x.master.sport}`);
}
