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

/** A signature of the strings that name a flow's original direction (with its id: one entry). */
function flowSignature(f: Flow): number {
  const o = f.orig;
  return fnv1a(`${o.src}|${o.dst}|${o.sport ?? o.icmp?.id}|${o.dport ?? o.icmp?.type}|${f.proto}|${f.zone}`);
}

/** The dump of the flows matching `compiled`. */
function flowDumpSpec(compiled: CompiledFilter, operation: string): DumpSpec<Flow> {
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
