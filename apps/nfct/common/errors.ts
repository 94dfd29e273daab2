/**
 * Errors on stderr with a stable exit code:
 *   0  success
 *   1  the operation failed (kernel refusal such as ENOENT/EEXIST/EPERM, I/O error)
 *   2  bad usage or input (unknown option, ERR_INVALID_ARGUMENT): nothing was done
 * The line names the ConntrackError code, and the field for invalid input:
 *   nfct: get failed: ENOENT: no such entry [ENOENT]
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A usage problem found by the CLI itself (unknown option, missing value...). */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
  constructor(message: string, readonly field?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function exitCodeOf(err: unknown): number {
  const e = err as { code?: unknown };
  if (err instanceof UsageError) return EXIT_USAGE;
  if (e && (e.code === 'ERR_INVALID_ARGUMENT' || e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
    e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')) return EXIT_USAGE;
  return EXIT_FAILURE;
}

/** Prints the error on stderr and returns the exit code to use. */
export function reportError(err: unknown, prefix = 'nfct'): number {
  const e = err as { code?: unknown; message?: unknown; field?: unknown };
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  let line = `${prefix}: ${message}`;
  if (code && code !== 'ERR_USAGE') line += ` [${code}]`;
  process.stderr.write(line + '\n');
  return exitCodeOf(err);
}
