import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/**
 * Stable error codes. Kernel refusals use the errno name as Node names it (`ENOENT`,
 * `EEXIST`, `EPERM`, `EINVAL`, `EBUSY`, `ENOTSUP`, `EAGAIN`, ...); the library's own
 * refusals use the `ERR_*` codes below.
 */
export type ConntrackErrorCode =
  | 'ERR_INVALID_ARGUMENT' // bad input, refused before anything reached the kernel
  | 'ERR_CLOSED' // the Conntrack (or stream) was closed
  | 'ERR_ABORTED' // an AbortSignal fired
  | 'ERR_PROTOCOL' // the kernel sent something the library cannot make sense of
  | 'ERR_CALLBACK' // a callback of the caller's (predicate, listener) threw; `cause` is what it threw
  | 'ERR_OUTCOME_UNKNOWN' // closed while the request was in flight: the kernel may or may not have done it
  | 'ERR_NATIVE' // the native addon could not be loaded
  | 'ERR_UNSUPPORTED' // the running kernel lacks a feature
  | string; // errno names

// For the few errnos libuv has no name for (EDEADLK, ENOMSG, ...); the first name wins.
const osErrnoNames: Record<number, string> = {};
for (const [name, value] of Object.entries(osConstants.errno)) osErrnoNames[value] ??= name;

/**
 * The errno name for a positive errno value, as Node's util.getSystemErrorName() gives it
 * (`2` -> `'ENOENT'`, `11` -> `'EAGAIN'`, `95` -> `'ENOTSUP'`); `E<n>` when nothing names it.
 */
export function errnoName(errno: number): string {
  if (!Number.isInteger(errno) || errno <= 0) return `E${errno}`;
  // Above 511 libuv has codes of its own (-4095 is UV_EOF) that are no errno.
  const name = errno < 512 ? getSystemErrorName(-errno) : 'Unknown';
  if (!name.startsWith('Unknown')) return name;
  return osErrnoNames[errno] ?? `E${errno}`;
}

export interface ConntrackErrorOptions {
  errno?: number;
  syscall?: string;
  field?: string;
  extack?: string;
  cause?: unknown;
}

export class ConntrackError extends Error {
  /** Stable code: an errno name for kernel errors, `ERR_*` for the library's own. */
  readonly code: ConntrackErrorCode;
  /** Positive errno when the kernel or a system call refused. */
  declare readonly errno?: number;
  /** The system call or netlink operation that failed. */
  declare readonly syscall?: string;
  /** The input field at fault, for validation errors (e.g. `'orig.sport'`). */
  declare readonly field?: string;
  /** The kernel's extended-ack message, when it sent one. */
  declare readonly extack?: string;

  constructor(code: ConntrackErrorCode, message: string, options: ConntrackErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'ConntrackError';
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.field !== undefined) this.field = options.field;
    if (options.extack !== undefined) this.extack = options.extack;
  }
}

/** A validation error: names the field and says how to fix it. */
export function invalid(field: string, problem: string): ConntrackError {
  return new ConntrackError('ERR_INVALID_ARGUMENT', `${field}: ${problem}`, { field });
}

const PERMISSION_HINT =
  'ctnetlink needs CAP_NET_ADMIN in the network namespace it talks to: run as root (sudo), ' +
  'or work on a private namespace with `unshare -Urn`';

/** Hints for the kernel's refusal of a ctnetlink request, by errno name. */
const REFUSAL_HINTS: Record<string, string> = {
  ENOENT: 'no such entry',
  EEXIST: 'the entry already exists',
  EBUSY: 'the resource is busy',
  ENOTSUP: 'the running kernel does not support this operation',
  EAFNOSUPPORT: 'conntrack is not loaded for this address family (is nf_conntrack available?)',
};

/** Hints for a failed system call, by `syscall errno-name` (the syscall as the addon reports it). */
const SYSCALL_HINTS: Record<string, string> = {
  'socket EPROTONOSUPPORT': 'the kernel has no netfilter netlink support: load the nfnetlink and nf_conntrack_netlink modules',
};

/**
 * Turns an errno into a ConntrackError. Without `syscall` it is the kernel's refusal of a
 * ctnetlink request (NLMSG_ERROR, with the extended-ack text when there is one); with it, a
 * failed system call. `syscall` may carry a detail in parentheses, as the addon reports it
 * (`setsockopt(SO_RCVBUF)`): the error's `syscall` is the bare name.
 */
export function kernelError(errno: number, operation: string, extack?: string, syscall?: string): ConntrackError {
  const code = errnoName(errno);
  const name = syscall?.replace(/\(.*\)$/, '');
  let message = `${operation} failed: ${code}`;
  if (syscall !== undefined) message += ` from ${syscall}`;
  if (extack) message += ` (${extack})`;
  const hint = syscall === undefined ? REFUSAL_HINTS[code] : SYSCALL_HINTS[`${syscall} ${code}`];
  if (hint) message += `: ${hint}`;
  else if (errno === osConstants.errno.EPERM || errno === osConstants.errno.EACCES) message += `. ${PERMISSION_HINT}`;
  return new ConntrackError(code, message, { errno, syscall: name, extack });
}

/** Wraps an Error thrown by the native addon (it carries errno and the failed syscall). */
export function fromNative(err: unknown, operation: string): ConntrackError {
  if (err instanceof ConntrackError) return err;
  const e = err as { errno?: number; syscall?: string; message?: string } | undefined;
  // The addon reports a call on a socket it already closed as syscall 'closed'.
  if (e?.syscall === 'closed') return new ConntrackError('ERR_CLOSED', `${operation}: the socket is closed`, { cause: err });
  if (typeof e?.errno === 'number') return kernelError(e.errno, operation, undefined, typeof e.syscall === 'string' ? e.syscall : undefined);
  return new ConntrackError('ERR_NATIVE', `${operation} failed: ${e?.message ?? String(err)}`, { cause: err });
}
