/**
 * EventEmitter typed by an event map (event name -> listener arguments), so that a
 * misspelt event name or a payload field that does not exist fails to compile. At run
 * time it is Node's EventEmitter itself.
 */
import { EventEmitter } from 'node:events';
import type { ConntrackError } from './errors';
import type { LostInfo } from './loss';

/** The events every EventEmitter has besides its own. */
export interface EmitterEvents {
  newListener: [event: string | symbol, listener: (...args: any[]) => void];
  removeListener: [event: string | symbol, listener: (...args: any[]) => void];
}

/** The events every kernel event stream (flows, expectations) has besides its own. */
export interface EventStreamEvents {
  /** The kernel dropped events for this stream: its buffer was full (see `lost`). */
  lost: [info: LostInfo];
  /** The socket failed. */
  error: [error: ConntrackError];
  /** The stream closed (close(), abort, an error, or its Conntrack closing). */
  close: [];
}

/** A listener for event `K` of map `E`. */
export type EmitterListener<E, K extends keyof E> = E[K] extends unknown[] ? (...args: E[K]) => void : never;

type TypedMethods =
  | 'on' | 'once' | 'off' | 'addListener' | 'removeListener' | 'prependListener' | 'prependOnceListener'
  | 'emit' | 'listeners' | 'rawListeners' | 'listenerCount' | 'removeAllListeners';

/**
 * The listener methods of an EventEmitter whose events are `M` (for example
 * `{ event: [FlowEvent]; close: [] }`), plus `newListener` and `removeListener`.
 */
export interface TypedEmitter<M extends Record<keyof M, unknown[]>, E = M & EmitterEvents> extends Omit<EventEmitter, TypedMethods> {
  on<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  once<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  off<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  addListener<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  removeListener<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  prependListener<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  prependOnceListener<K extends keyof E>(event: K, listener: EmitterListener<E, K>): this;
  emit<K extends keyof E>(event: K, ...args: E[K] extends unknown[] ? E[K] : never): boolean;
  removeAllListeners(event?: keyof E): this;
  listeners<K extends keyof E>(event: K): EmitterListener<E, K>[];
  rawListeners<K extends keyof E>(event: K): EmitterListener<E, K>[];
  listenerCount<K extends keyof E>(event: K, listener?: EmitterListener<E, K>): number;
}

/** Base class of the package's emitters: `class X extends TypedEventEmitter<XEvents>`. */
export const TypedEventEmitter = EventEmitter as unknown as new <M extends Record<keyof M, unknown[]>>() => TypedEmitter<M>;
