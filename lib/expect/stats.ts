import { CTA_STATS_EXP_CREATE, CTA_STATS_EXP_DELETE, CTA_STATS_EXP_NEW } from '../wire/enums';
import { NFGEN_RES_ID_OFFSET, NFNL_ATTR_OFFSET, forEachAttr } from '../wire/netlink';

/** Per-CPU expectation counters (IPCTNL_MSG_EXP_GET_STATS_CPU). */
export interface ExpectationCpuStats {
  cpu: number;
  /** Expectations that matched a new connection (it became RELATED). */
  new: number;
  /** Expectations created. */
  create: number;
  /** Expectations deleted (expired, removed or replaced). */
  delete: number;
}

/** Decodes one IPCTNL_MSG_EXP_GET_STATS_CPU reply (the CPU number is in res_id). */
export function decodeExpectationStats(buf: Buffer, off: number, len: number): ExpectationCpuStats {
  // A message too short for its nfgenmsg has no CPU number and no counters: zeros.
  const s: ExpectationCpuStats = { cpu: len >= NFNL_ATTR_OFFSET && off + NFNL_ATTR_OFFSET <= buf.length ? buf.readUInt16BE(off + NFGEN_RES_ID_OFFSET) : 0, new: 0, create: 0, delete: 0 };
  forEachAttr(buf, off + NFNL_ATTR_OFFSET, off + len, (type, p, e) => {
    if (e - p < 4) return;
    const v = buf.readUInt32BE(p);
    if (type === CTA_STATS_EXP_NEW) s.new = v;
    else if (type === CTA_STATS_EXP_CREATE) s.create = v;
    else if (type === CTA_STATS_EXP_DELETE) s.delete = v;
  });
  return s;
}
