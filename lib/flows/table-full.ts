/**
 * ENOMEM from a create is, in practice, the kernel's "table full": nf_conntrack_alloc()
 * refuses a new entry once the namespace holds nf_conntrack_max of them. The bare errno
 * says nothing of that, so the refusal is rewritten with the count, the limit and what to do.
 */
import { ConntrackError } from '../common/errors';
import type { Handle } from '../wire/handle';
import { fetchStats } from '../stats/counters';

/** A table-full refusal: the kernel's ENOMEM, with the table's `count` and `max` then. */
export type TableFullError = ConntrackError & { count?: number; max?: number };

/** `err` unchanged unless it is ENOMEM; then the same code and errno with a message that explains. */
export async function explainTableFull(ct: Handle, err: unknown, operation: string): Promise<unknown> {
  const e = err as ConntrackError;
  if (!(e instanceof ConntrackError) || e.code !== 'ENOMEM' || e.syscall === 'malloc') return err;
  let count: number | undefined;
  let max: number | undefined;
  try {
    const s = await fetchStats(ct);
    count = s.count;
    max = s.max;
  } catch {
    /* the numbers are a courtesy: keep the explanation without them */
  }
  const numbers = count !== undefined && max !== undefined && max > 0 ? ` (${count} of ${max} entries)` : '';
  const out = new ConntrackError(
    'ENOMEM',
    `${operation} failed: ENOMEM: the conntrack table is full${numbers}, so the kernel refuses new entries ` +
      '(it drops new connections too). Raise net.netfilter.nf_conntrack_max (global: set it from the initial ' +
      'network namespace, e.g. sysctl -w net.netfilter.nf_conntrack_max=524288), delete stale entries ' +
      '(ct.deleteMatching), or shorten timeouts (ct.settings.set)',
    { errno: e.errno, syscall: e.syscall, extack: e.extack, cause: err },
  ) as TableFullError;
  if (count !== undefined) out.count = count;
  if (max !== undefined) out.max = max;
  return out;
}
