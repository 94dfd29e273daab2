/**
 * What the concept modules (entries, expectations, statistics, event streams, mirrors)
 * need from a Conntrack handle, and nothing more. Conntrack implements it; the modules
 * never import Conntrack, so they can be driven by a scripted fake as well.
 */
import type { Child } from '../common/children';
import type { ConntrackError } from '../common/errors';
import type { AttrWriter } from './netlink';
import type { Netns } from '../common/netns';
import type { Dump, DumpOptions, DumpSpec } from './dump';
import type { EventSink, NfSocket, ReplyHandler } from './socket';

/** An event subscription on a socket of its own (see Handle.subscribe). */
export interface Subscription {
  /** Multicast groups to join. */
  groups: readonly number[];
  /** Read on a native thread (see SocketOptions.threaded). */
  threaded?: boolean;
  /**
   * Runs on the new socket before it joins the groups: receive buffer, socket options,
   * filters, loss baseline. A throw closes the socket and fails the subscription.
   */
  prepare?(sock: NfSocket): void;
  /** Receives the messages, overruns and errors. */
  sink: EventSink;
  /** Label for error messages. */
  operation: string;
}

/** Maps a request's refusal to the error its caller sees (may ask the kernel more first). */
export type ExplainError = (ct: Handle, err: ConntrackError, operation: string) => Promise<unknown>;

export interface Handle {
  /**
   * The namespace the handle's sockets and file operations work in, open for the handle's
   * lifetime (undefined: the caller's).
   */
  readonly netnsFile: Netns | undefined;
  /** Throws ERR_CLOSED once the handle is closed. */
  assertOpen(operation: string): void;
  /** One request; resolves with copies of the reply's data messages once the kernel acks it. */
  request(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string): Promise<Buffer[]>;
  /**
   * A request the kernel answers with an ack alone (create, update, delete, flush).
   * `explain`, when given, turns a refusal into the error the promise rejects with (one
   * shared function instead of a .catch() chain per request).
   */
  requestAck(type: number, flags: number, family: number, payload: Buffer | undefined, operation: string, explain?: ExplainError): Promise<void>;
  /**
   * requestAck() of a payload `encode` writes straight into the socket's outgoing buffer,
   * returning the family: no payload Buffer per request. A throw from `encode` (a refused
   * item) is thrown from here, with nothing queued.
   */
  requestAckEncoded<T>(type: number, flags: number, encode: (w: AttrWriter, item: T) => number, item: T, operation: string, explain?: ExplainError): Promise<void>;
  /**
   * `ends.length` requests of one header whose payloads are consecutive slices of
   * `payloads`; `handler.done(err, i)` is called once per item.
   */
  requestMany(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array, handler: ReplyHandler): void;
  /** A dump on a socket of its own, closed with the handle. */
  startDump<T>(spec: DumpSpec<T>, options?: DumpOptions): Dump<T>;
  /** A subscribed socket in the handle's namespace; it reads once the owner calls setListening(true). */
  subscribe(subscription: Subscription): NfSocket;
  /** Registers a child closed with the handle; returns what the child calls once it closed. */
  adopt(child: Child): () => void;
}
