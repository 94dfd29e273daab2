export { Conntrack } from './conntrack';
export type { OpenOptions } from './conntrack';
export { ConntrackError } from './common/errors';
export type { ConntrackErrorCode, ConntrackErrorOptions } from './common/errors';
export type { NetnsOption } from './common/netns';
export { TypedEventEmitter } from './common/emitter';
export type { TypedEmitter, EmitterEvents, EmitterListener, EventStreamEvents } from './common/emitter';
export type { LostInfo } from './common/loss';

export type { Flow, Counter, TcpInfo, SctpInfo, DccpInfo, SeqAdj, Synproxy } from './flows/flow';
export type { Tuple, ProtoTuple, IcmpTuple } from './flows/tuple';
export type { FlowFilter, TupleFilter, FlowTable } from './flows/filter';
export { Dump } from './wire/dump';
export type { DumpOptions } from './wire/dump';
export type { FlowDumpOptions } from './flows/dump';
export type { ProtoSpec } from './flows/protocols';
export type { Family, Proto, StatusFlag, TcpState, SctpState, DccpState } from './wire/enums';
export * as constants from './wire/enums';

export type {
  EntryKey, EntryTuple, GetOptions, CreateSpec, UpdateSpec, NatTarget, SettableStatusFlag, DeleteMatchingOptions, BulkResult,
  UpdateChanges, UpdateMatchingOptions, TcpSpec, TcpFlagsChange, TcpFlag,
} from './flows/entry-types';
export type { TableFullError } from './flows/table-full';
export type { DeleteMatchingError } from './flows/delete-matching';
export { FlowEventStream } from './flows/events';
export type { FlowEvent, FlowEventType, EventsOptions, EventStreamStats, FlowEventStreamEvents } from './flows/events';
export { Mirror, DEFAULT_REFRESH_INTERVAL } from './flows/mirror';
export type { MirrorOptions, MirrorEvents, MirrorStats, ResyncInfo, TupleKey } from './flows/mirror';

export { Expectations } from './expect/expectations';
export type { ExpectationTarget } from './expect/expectations';
export { ExpectationEvents } from './expect/events';
export type { ExpectationEvent, ExpectationEventType, ExpectationEventsOptions, ExpectationEventsEvents } from './expect/events';
export { decodeExpectation } from './expect/decode';
export type { Expectation, ExpectationFlag, NatDirection } from './expect/decode';
export type { ExpectationKey, ExpectationSpec } from './expect/encode';
export type { ExpectationFilter, ExpectationTupleFilter } from './expect/filter';
export { decodeExpectationStats } from './expect/stats';
export type { ExpectationCpuStats } from './expect/stats';

export { readProcStats, parseProcStats, PROC_STATS_PATH } from './stats/proc';
export type { ProcStats, ReadProcStatsOptions } from './stats/proc';
export type { ConntrackStats, CpuStats, StatsCounters } from './stats/counters';
export { Settings } from './stats/settings';
export type { ConntrackSettings, SettingsUpdate, EventsSetting } from './stats/settings';
export { PressureMonitor } from './stats/pressure';
export type { PressureOptions, PressureSample, PressureRates, PressureWarning, PressureRecovery, PressureReason, PressureMonitorEvents } from './stats/pressure';
