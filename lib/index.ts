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
export { FlowEventStream } from './event';
export type { FlowEvent, FlowEventType, EventsOptions, LostInfo, EventStreamStats } from './event';
export { Mirror, DEFAULT_REFRESH_INTERVAL } from './mirror';
export type { MirrorOptions, ResyncInfo, TupleKey } from './mirror';
// </events>
// <expectations>
export { Expectations, ExpectationEvents, decodeExpectationStats } from './expect';
export type {
  Expectation, ExpectationFilter, ExpectationKey, ExpectationSpec, ExpectationFlag, ExpectationTupleFilter,
  NatDirection, ExpectationEvent, ExpectationEventType, ExpectationEventsOptions, ExpectationCpuStats, ExpectationTarget,
} from './expect';
export { decodeExpectation } from './expect-codec';
// </expectations>
// <stats>
export { readProcStats, parseProcStats, PROC_STATS_PATH } from './stats';
export type { ProcStats, ReadProcStatsOptions, ConntrackStats, CpuStats, StatsCounters } from './stats';
export { Settings } from './sysctl';
export type { ConntrackSettings, SettingsUpdate, EventsSetting } from './sysctl';
export { PressureMonitor } from './pressure';
export type { PressureOptions, PressureSample, PressureRates, PressureWarning, PressureRecovery, PressureReason, PressureMonitorEvents } from './pressure';
// </stats>
