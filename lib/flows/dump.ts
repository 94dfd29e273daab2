/**
 * Dumping the flow table: a FlowFilter compiled into the kernel's dump filter plus the
 * library's predicate, decoded flow by flow on a dump socket of its own.
 */
import { fnv1a } from '../common/hash';
import type { Dump, DumpOptions, DumpSpec } from '../wire/dump';
import { IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK } from '../wire/enums';
import type { Handle } from '../wire/handle';
import { NFGEN_FAMILY_OFFSET, ctType, nfnlMsg, nfnlSubsys } from '../wire/netlink';
import { CompiledFilter, FlowFilter, compileFilter } from './filter';
import { Flow, decodeFlow, isFlowFamily } from './flow';

/**
 * A signature of what names a flow's original direction (with its id: one entry): the
 * address strings hashed in place and the numbers mixed in, with no string built per flow.
 */
export function flowSignature(f: Flow): number {
  const o = f.orig;
  let h = fnv1a(o.src, fnv1a(o.dst));
  const a = o.icmp === undefined ? ((o.sport ?? 0x10000) << 16) ^ (o.dport ?? 0x10000) : 0x40000000 ^ (o.icmp.id << 8) ^ o.icmp.type;
  h = Math.imul(h ^ a, 0x01000193);
  const p = typeof f.proto === 'number' ? f.proto : fnv1a(f.proto);
  h = Math.imul(h ^ p, 0x01000193);
  h = Math.imul(h ^ ((f.zone << 16) | (o.zone ?? 0)), 0x01000193);
  return h >>> 0;
}

/** The dump of the flows matching `compiled`. */
export function flowDumpSpec(compiled: CompiledFilter, operation: string): DumpSpec<Flow> {
  return {
    type: ctType(IPCTNL_MSG_CT_GET),
    family: compiled.nfFamily,
    payload: compiled.kernelAttrs.length ? compiled.kernelAttrs : undefined,
    operation,
    decode: (buf: Buffer, off: number, len: number, msgType: number): Flow | undefined => {
      const m = nfnlMsg(msgType);
      if (nfnlSubsys(msgType) !== NFNL_SUBSYS_CTNETLINK || (m !== IPCTNL_MSG_CT_NEW && m !== IPCTNL_MSG_CT_DELETE)) return undefined;
      if (!isFlowFamily(buf[off + NFGEN_FAMILY_OFFSET])) return undefined;
      return decodeFlow(buf, off, len);
    },
    // Applied even when the kernel filtered too: an older kernel that ignores CTA_FILTER
    // must not change the result. It costs a few comparisons per flow.
    match: compiled.empty ? undefined : compiled.match,
    idOf: (f: Flow) => f.id,
    signatureOf: flowSignature,
  };
}

/** ct.dump(). */
export function dumpFlows(h: Handle, filter: FlowFilter | undefined, options: DumpOptions): Dump<Flow> {
  return h.startDump(flowDumpSpec(compileFilter(filter), 'dump'), options);
}
