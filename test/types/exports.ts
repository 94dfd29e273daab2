/**
 * Compiled by test/unit/types.test.ts against the built package: every public type is
 * importable from the package's entries ('conntrack', 'conntrack/prometheus', 'conntrack/testing'), by name, as a type and (for classes) as a value.
 */
import type {
  BulkResult, ConntrackErrorCode, ConntrackErrorOptions, ConntrackSettings, ConntrackStats, Counter, CpuStats,
  CreateSpec, DccpInfo, DccpState, DeleteMatchingOptions, DumpOptions, EmitterEvents, EmitterListener, EntryKey,
  EntryTuple, EventStreamEvents, EventStreamStats, EventsOptions, EventsSetting, Expectation, ExpectationCpuStats,
  ExpectationEvent, ExpectationEventType, ExpectationEventsEvents, ExpectationEventsOptions, ExpectationFilter,
  ExpectationFlag, ExpectationKey, ExpectationSpec, ExpectationTarget, ExpectationTupleFilter, Family, Flow,
  FlowEvent, FlowEventStreamEvents, FlowEventType, FlowFilter, GetOptions, IcmpTuple, LostInfo, MirrorEvents,
  MirrorOptions, NatDirection, NatTarget, OpenOptions, PressureMonitorEvents, PressureOptions, PressureRates,
  PressureReason, PressureRecovery, PressureSample, PressureWarning, ProcStats, Proto, ProtoTuple,
  ReadProcStatsOptions, ResyncInfo, SctpInfo, SctpState, SeqAdj, SettableStatusFlag, SettingsUpdate, StatsCounters,
  StatusFlag, Synproxy, TcpInfo, TcpState, Tuple, TupleFilter, TupleKey, TypedEmitter, UpdateSpec,
  NetnsOption, FlowTable, FlowDumpOptions, ProtoSpec, UpdateChanges, UpdateMatchingOptions, TcpSpec, TcpFlagsChange, TcpFlag,
  TableFullError, DeleteMatchingError,
} from 'conntrack';
import {
  Conntrack, ConntrackError, DEFAULT_REFRESH_INTERVAL, Dump, ExpectationEvents, Expectations, FlowEventStream, Mirror,
  PROC_STATS_PATH, PressureMonitor, Settings, TypedEventEmitter, constants, decodeExpectation, decodeExpectationStats,
  parseProcStats, readProcStats,
} from 'conntrack';
import type { AnyRegistry, Exporter, ExporterOptions, MetricsHandle, RegisterMetricsOptions } from 'conntrack/prometheus';
import { DEFAULT_PORT, registerMetrics, startExporter, wantsOpenMetrics } from 'conntrack/prometheus';
import type {
  ConnectResult, Endpoints, FillOptions, FillResult, FtpSession, Held, PingOptions, RunOptions, RunResult, Sandbox,
  SandboxOptions, SandboxSpawnOptions, TcpOptions, UdpOptions,
} from 'conntrack/testing';
import { TRACKING_RULESET, closeAll, isRealRoot, liveSandboxes, sandbox, withSandbox } from 'conntrack/testing';

/** Every imported type, used once, so an unresolved one fails to compile. */
export type Everything = [
  BulkResult, ConntrackErrorCode, ConntrackErrorOptions, ConntrackSettings, ConntrackStats, Counter, CpuStats,
  CreateSpec, DccpInfo, DccpState, DeleteMatchingOptions, DumpOptions, EmitterEvents, EmitterListener<MirrorEvents, 'add'>,
  EntryKey, EntryTuple, EventStreamEvents, EventStreamStats, EventsOptions, EventsSetting, Expectation,
  ExpectationCpuStats, ExpectationEvent, ExpectationEventType, ExpectationEventsEvents, ExpectationEventsOptions,
  ExpectationFilter, ExpectationFlag, ExpectationKey, ExpectationSpec, ExpectationTarget, ExpectationTupleFilter,
  Family, Flow, FlowEvent, FlowEventStreamEvents, FlowEventType, FlowFilter, GetOptions, IcmpTuple, LostInfo,
  MirrorEvents, MirrorOptions, NatDirection, NatTarget, OpenOptions, PressureMonitorEvents, PressureOptions,
  PressureRates, PressureReason, PressureRecovery, PressureSample, PressureWarning, ProcStats, Proto, ProtoTuple,
  ReadProcStatsOptions, ResyncInfo, SctpInfo, SctpState, SeqAdj, SettableStatusFlag, SettingsUpdate, StatsCounters,
  StatusFlag, Synproxy, TcpInfo, TcpState, Tuple, TupleFilter, TupleKey, TypedEmitter<MirrorEvents>, UpdateSpec,
  NetnsOption, FlowTable, FlowDumpOptions, ProtoSpec, UpdateChanges, UpdateMatchingOptions, TcpSpec, TcpFlagsChange, TcpFlag,
  TableFullError, DeleteMatchingError,
  AnyRegistry, Exporter, ExporterOptions, MetricsHandle, RegisterMetricsOptions,
  ConnectResult, Endpoints, FillOptions, FillResult, FtpSession, Held, PingOptions, RunOptions, RunResult, Sandbox,
  SandboxOptions, SandboxSpawnOptions, TcpOptions, UdpOptions,
  Conntrack, ConntrackError, Dump<Flow>, ExpectationEvents, Expectations, FlowEventStream, Mirror, PressureMonitor, Settings,
];

export const values = [
  Conntrack.open, ConntrackError, DEFAULT_REFRESH_INTERVAL, Dump, ExpectationEvents, Expectations, FlowEventStream, Mirror,
  PROC_STATS_PATH, PressureMonitor, Settings, TypedEventEmitter, constants.IPPROTO_TCP, decodeExpectation,
  decodeExpectationStats, parseProcStats, readProcStats, DEFAULT_PORT, registerMetrics, startExporter, wantsOpenMetrics,
  TRACKING_RULESET, closeAll, isRealRoot, liveSandboxes, sandbox, withSandbox,
];

/** Values of the public signatures' types can be named and built by a caller. */
export const deletedBefore = (e: DeleteMatchingError): number => e.deleted;
export const fill = (e: TableFullError): string => `${e.code} ${e.count ?? '?'} of ${e.max ?? '?'}`;
export const result: BulkResult = { ok: 1, errors: [{ index: 0, error: new ConntrackError('EEXIST', 'exists', { errno: 17 } satisfies ConntrackErrorOptions) }] };

// @ts-expect-error TS2305 internals are not exported
import type { Handle } from 'conntrack';
