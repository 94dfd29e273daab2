/**
 * User callbacks (predicates, 'event' / 'add' / ... listeners) run inside the socket's
 * receive callback. A throw there must not escape into native code: it is caught where
 * the callback runs and turned into a ConntrackError with code ERR_CALLBACK (the thrown
 * value as `cause`), which ends the operation the callback belonged to.
 */
import type { EventEmitter } from 'events';
import { ConntrackError } from './errors';

/** The error that ends an operation whose callback `what` threw `thrown`. */
export function callbackError(what: string, thrown: unknown): ConntrackError {
  const text = thrown instanceof Error ? thrown.message : String(thrown);
  return new ConntrackError('ERR_CALLBACK', `${what} threw: ${text}`, { cause: thrown });
}

/**
 * Emits `name` on `em`; a listener's throw is returned as an ERR_CALLBACK error (the
 * listeners after it do not run) instead of propagating.
 */
export function emitGuarded(em: EventEmitter, what: string, name: string, ...args: unknown[]): ConntrackError | undefined {
  try {
    em.emit(name, ...args);
    return undefined;
  } catch (err) {
    return callbackError(`${what} '${name}' listener`, err);
  }
}

/**
 * Reports an error nobody can receive any more (an 'error' or 'close' listener threw, or a
 * callback failed a stream nobody reads): as an uncaught exception on the next tick, the
 * way Node reports an unhandled 'error', once the library's own state is consistent.
 */
export function rethrowLater(err: unknown): void {
  process.nextTick(() => {
    throw err;
  });
}
