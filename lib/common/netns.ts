/**
 * Network namespaces named the way callers name them (a name under /var/run/netns, a path,
 * a pid, or an open descriptor as `{ fd }`), opened once: the handle keeps the namespace
 * file open and hands its descriptor to every socket and file operation it makes later.
 * That pins the namespace (a pid reused meanwhile, or a name deleted, cannot redirect
 * later sockets) and lets the native side join it on a helper thread, so the JavaScript
 * thread never changes namespace.
 */
import { closeSync, existsSync, fstatSync, openSync, statSync } from 'fs';
import { getSystemErrorName } from 'util';
import { ConntrackError, invalid } from './errors';
import { isObject, show } from './validate';
import { type NetnsFileOp, type NetnsFileResult, type NetnsTarget, native } from '../wire/native';

/** How a caller names a namespace: a name, a path, a pid, or an open descriptor. */
export type NetnsOption = string | number | { fd: number };

// A namespace file a handle never closed (it became unreachable): close its descriptor.
const dropped = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    /* already gone */
  }
});

/** An open network namespace file. */
export class Netns {
  private fd: number;

  private constructor(
    fd: number,
    /** The namespace as the caller named it, for messages: a path, or `fd N`. */
    readonly label: string,
    /** False for a caller's descriptor that could not be reopened (kept open by the caller). */
    private readonly owned: boolean,
    /** True when it is the caller's own namespace: sockets then need no helper thread. */
    readonly isCallers: boolean,
  ) {
    this.fd = fd;
    if (owned) dropped.register(this, fd, this);
  }

  /**
   * Opens the namespace `option` names. Throws ERR_INVALID_ARGUMENT (naming `field`) for
   * a malformed option, and ENOENT / EACCES / EBADF with what to do when it cannot be opened.
   */
  static open(option: NetnsOption, field = 'netns'): Netns {
    if (isObject(option)) return Netns.fromFd(option as { fd: number }, field);
    const path = resolvePath(option, field);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw openError(err as NodeJS.ErrnoException, option, path);
    }
    return new Netns(fd, path, true, isCallers(fd));
  }

  private static fromFd(option: { fd: number }, field: string): Netns {
    const keys = Object.keys(option).filter((k) => k !== 'fd');
    if (keys.length > 0) throw invalid(`${field}.${keys[0]}`, 'unknown key: a namespace descriptor is given as { fd }');
    const n = option.fd;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
      throw invalid(`${field}.fd`, `must be an open file descriptor (a non-negative integer), got ${typeof n === 'number' ? n : typeof n}`);
    }
    const label = `fd ${n}`;
    // A descriptor of our own, so the caller may close theirs: a namespace file reopens
    // through /proc/self/fd. A pidfd does not; then the caller's descriptor is used.
    let fd: number;
    try {
      fd = openSync(`/proc/self/fd/${n}`, 'r');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        throw new ConntrackError('EBADF', `${field}.fd: ${n} is not an open file descriptor (EBADF): open the namespace file (fs.openSync('/proc/PID/ns/net', 'r') or /var/run/netns/NAME) and keep it open until Conntrack.open() resolves`, { errno: 9, syscall: 'open', field: `${field}.fd` });
      }
      try {
        fstatSync(n);
      } catch {
        throw new ConntrackError('EBADF', `${field}.fd: ${n} is not an open file descriptor (EBADF)`, { errno: 9, syscall: 'fstat', field: `${field}.fd` });
      }
      return new Netns(n, label, false, false);
    }
    return new Netns(fd, label, true, isCallers(fd));
  }

  /** True once close() was called. */
  get isClosed(): boolean {
    return this.fd < 0;
  }

  /** The namespace for the native side; throws ERR_CLOSED after close(). */
  target(operation: string): NetnsTarget {
    if (this.fd < 0) throw new ConntrackError('ERR_CLOSED', `${operation}: this Conntrack is closed (its namespace file was closed with it)`);
    return this.isCallers ? {} : { netnsFd: this.fd };
  }

  /** Turns an Error of the addon about this namespace into a ConntrackError. */
  error(err: unknown, operation: string): ConntrackError {
    return netnsError(err, operation, this);
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    if (!this.owned) return;
    dropped.unregister(this);
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

/** A name, path or pid as a namespace file path. */
function resolvePath(netns: string | number, field: string): string {
  if (typeof netns === 'number') {
    if (!Number.isInteger(netns) || netns <= 0) throw invalid(field, `a pid must be a positive integer, got ${netns}`);
    return `/proc/${netns}/ns/net`;
  }
  if (typeof netns !== 'string' || netns === '') {
    throw invalid(field, 'must be a name under /var/run/netns, a path, a pid, or { fd } (an open namespace file)');
  }
  if (netns.includes('\0')) throw invalid(field, 'must not contain a NUL byte (the path would be cut short there)');
  if (netns.includes('/')) return netns;
  if (/^\d+$/.test(netns)) return `/proc/${netns}/ns/net`;
  const named = `/var/run/netns/${netns}`;
  if (!existsSync(named)) throw invalid(field, `no namespace named ${show(netns)} under /var/run/netns (create it with \`ip netns add ${netns}\`, or pass a path, a pid or { fd })`);
  return named;
}

function isCallers(fd: number): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync('/proc/thread-self/ns/net');
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

function openError(e: NodeJS.ErrnoException, option: string | number, path: string): ConntrackError {
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : undefined;
  const code = errno !== undefined ? getSystemErrorName(-errno) : e.code ?? 'EIO';
  const pid = typeof option === 'number' ? option : /^\/proc\/(\d+)\/ns\/net$/.exec(path)?.[1] ?? (/^\d+$/.test(option) ? option : undefined);
  let message: string;
  if (code === 'ENOENT' && pid !== undefined) {
    message = `no such process or namespace: pid ${pid} (${path} does not exist; the process may have exited): pass the pid of a running process, a name created with \`ip netns add NAME\`, or { fd }`;
  } else if (code === 'ENOENT') {
    message = `network namespace ${path} does not exist (open: ENOENT): pass /proc/PID/ns/net of a running process, a namespace created with \`ip netns add NAME\` (/var/run/netns/NAME), or { fd }`;
  } else if (code === 'EACCES' || code === 'EPERM') {
    message = `cannot open network namespace ${path} (open: ${code}): /proc/PID/ns/net of another process can be opened only with ptrace access to it (the same user, in the same or a parent user namespace, or CAP_SYS_PTRACE over its user namespace); pass a bind mount such as /var/run/netns/NAME, or { fd } of a namespace file opened by a process that may`;
  } else {
    message = `cannot open network namespace ${path} (open: ${code})`;
  }
  return new ConntrackError(code, message, { errno, syscall: 'open', field: 'netns', cause: e });
}

/**
 * An Error of the addon about a namespace (it carries errno, syscall, and netns or
 * netnsFd) as a ConntrackError: the errno's name as code, the addon's message (which names
 * the namespace and the fix), with the descriptor the addon saw replaced by the caller's name.
 */
function netnsError(err: unknown, operation: string, ns?: Netns): ConntrackError {
  if (err instanceof ConntrackError) return err;
  const e = err as { errno?: unknown; syscall?: unknown; message?: unknown; netnsFd?: unknown };
  let message = String(e?.message ?? err);
  const fd = typeof e?.netnsFd === 'number' ? e.netnsFd : undefined;
  if (ns && fd !== undefined) {
    message = message.replace(new RegExp(`(?<![A-Za-z])fd ${fd}(?!\\d)`, 'g'), ns.label);
  }
  if (typeof e?.errno !== 'number') return new ConntrackError('ERR_NATIVE', `${operation}: ${message}`, { cause: err });
  const errno = e.errno;
  return new ConntrackError(getSystemErrorName(-errno), `${operation}: ${message}`, {
    errno,
    syscall: typeof e.syscall === 'string' ? e.syscall : undefined,
    cause: err,
  });
}

/** True for an addon Error about joining or opening a namespace (not a socket or send failure). */
export function isNetnsError(err: unknown): boolean {
  const e = err as { netns?: unknown; netnsFd?: unknown };
  return isObject(e) && (e.netns !== undefined || e.netnsFd !== undefined);
}

/**
 * Runs file operations as a thread inside the namespace sees them (the caller's when `ns`
 * is undefined): sysctls under /proc/sys/net and /proc/thread-self/net show the namespace
 * of the thread that opens them. One call, on a native helper thread that joins the
 * namespace; one result per operation. Rejects (naming the namespace) when it cannot be
 * entered.
 */
export async function namespaceFiles(ns: Netns | undefined, ops: NetnsFileOp[], operation: string, stopOnError = false): Promise<NetnsFileResult[]> {
  const target = ns ? ns.target(operation) : {};
  try {
    return await native().netnsFiles(target, ops, { stopOnError });
  } catch (err) {
    throw netnsError(err, operation, ns);
  }
}
