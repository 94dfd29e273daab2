export { Conntrack, OpenOptions } from './conntrack';
export { ConntrackError, ConntrackErrorCode } from './errors';
export type { Flow, Counter, TcpInfo, SctpInfo, DccpInfo, SeqAdj, Synproxy } from './flow';
export type { Tuple, ProtoTuple, IcmpTuple } from './tuple';
export type { FlowFilter, TupleFilter } from './filter';
export type { DumpOptions } from './dump';
export { Dump } from './dump';
export type { Family, Proto, StatusFlag, TcpState, SctpState, DccpState } from './enums';
export * as constants from './enums';

// <entries>
export type { EntryKey, EntryTuple, GetOptions, CreateSpec, UpdateSpec, NatTarget, SettableStatusFlag, DeleteMatchingOptions } from './entries';
// </entries>
// <events>
// </events>
// <expectations>
// </expectations>
// <stats>
// </stats>
