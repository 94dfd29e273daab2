/**
 * Protocol state names (TCP, SCTP, DCCP) as Flow.state shows them, plus the aliases the
 * conntrack CLI accepts: LISTEN for TCP's SYN_SENT2 (the same value since Linux 2.6.31) and
 * SHUTDOWN_RECV, the name older conntrack-tools printed for SCTP's SHUTDOWN_RECD.
 */
import { DCCP_STATES, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, SCTP_STATES, TCP_STATES } from '../wire/enums';

const NAMES: Record<number, readonly string[]> = {
  [IPPROTO_TCP]: TCP_STATES,
  [IPPROTO_SCTP]: SCTP_STATES,
  [IPPROTO_DCCP]: DCCP_STATES,
};

const ALIASES: Record<number, Record<string, string>> = {
  [IPPROTO_TCP]: { LISTEN: 'SYN_SENT2' },
  [IPPROTO_SCTP]: { SHUTDOWN_RECV: 'SHUTDOWN_RECD' },
  [IPPROTO_DCCP]: {},
};

/** The state names of a protocol, or undefined when it has no state. */
export function stateNames(protonum: number): readonly string[] | undefined {
  return NAMES[protonum];
}

/**
 * The canonical name for `name` (any case, aliases resolved) in `protonum`, or in any of
 * the three protocols when protonum is undefined; undefined when no protocol has it.
 */
export function canonicalState(name: string, protonum?: number): string | undefined {
  const upper = name.toUpperCase();
  for (const p of protonum === undefined ? [IPPROTO_TCP, IPPROTO_SCTP, IPPROTO_DCCP] : [protonum]) {
    const names = NAMES[p];
    if (!names) continue;
    const n = ALIASES[p][upper] ?? upper;
    if (names.includes(n)) return n;
  }
  return undefined;
}

/** Every name canonicalState() accepts for a protocol (for error messages). */
export function acceptedStates(protonum?: number): string[] {
  const ps = protonum === undefined ? [IPPROTO_TCP, IPPROTO_SCTP, IPPROTO_DCCP] : [protonum];
  const out = new Set<string>();
  for (const p of ps) {
    for (const n of NAMES[p] ?? []) out.add(n);
    for (const a of Object.keys(ALIASES[p] ?? {})) out.add(a);
  }
  return [...out];
}
