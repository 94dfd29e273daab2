import { constants as osConstants } from 'os';

/**
 * Stable error codes. Kernel refusals use the errno name (`ENOENT`, `EEXIST`, `EPERM`,
 * `EINVAL`, `EBUSY`, ...); the library's own refusals use the `ERR_*` codes below.
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

const errnoNames: Record<number, string> = {};
for (const [name, value] of Object.entries(osConstants.errno)) errnoNames[value] = name;

/** The errno name for a positive errno value (`2` -> `'ENOENT'`). */
export function errnoName(errno: number): string {
  return errnoNames[errno] ?? `E${errno}`;
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

/** Turns a kernel errno (from NLMSG_ERROR or a syscall) into a ConntrackError. */
export function kernelError(errno: number, operation: string, extack?: string): ConntrackError {
  const code = errnoName(errno);
  let message = `${operation} failed: ${code}`;
  if (extack) message += ` (${extack})`;
  if (errno === osConstants.errno.EPERM || errno === osConstants.errno.EACCES) {
    message += `. ${PERMISSION_HINT}`;
  } else {
    const hint = HINTS[code];
    if (hint) message += `: ${hint}`;
  }
  return new ConntrackError(code, message, { errno, syscall: operation, extack });
}

const HINTS: Record<string, string> = {
  ENOENT: 'no such entry',
  EEXIST: 'the entry already exists',
  EBUSY: 'the resource is busy',
  EOPNOTSUPP: 'the running kernel does not support this operation',
  EAFNOSUPPORT: 'conntrack is not loaded for this address family (is nf_conntrack available?)',
};

/** Wraps an Error thrown by the native addon (it carries errno and syscall). */
export function fromNative(err: unknown, operation: string): ConntrackError {
  if (err instanceof ConntrackError) return err;
  const e = err as { errno?: number; syscall?: string; message?: string };
  if (typeof e?.errno === 'number') {
    const ce = kernelError(e.errno, `${operation} (${e.syscall ?? 'syscall'})`);
    return ce;
  }
  return new ConntrackError('ERR_NATIVE', `${operation} failed: ${e?.message ?? String(err)}`, { cause: err });
}
