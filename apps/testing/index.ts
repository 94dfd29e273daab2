/**
 * `conntrack/testing`: throwaway network namespaces for test suites.
 *
 * `await sandbox()` starts a holder process in a new network namespace (`unshare -n`), with
 * loopback up, and opens a Conntrack handle in it. Commands run inside through `nsenter`.
 * The holder is `cat` reading a pipe from this process: it exits when the sandbox is
 * closed, and also when this process dies in any way (the pipe closes), so a crashed or
 * killed test run leaves no namespace behind. Children started with `spawn()` get
 * PR_SET_PDEATHSIG (setpriv --pdeathsig KILL) for the same reason. Live sandboxes are
 * tracked and killed on process exit; none of them keeps the event loop alive while idle.
 *
 * Needs: root, or root of a private user namespace (`unshare -Urn npx jest`); util-linux
 * (unshare, nsenter, setpriv), iproute2 (ip), and nftables (nft) for `tracking`/`nft`.
 */
import { ChildProcess, spawn as spawnChild, SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Conntrack, ConntrackError, CreateSpec, OpenOptions } from '../../lib';
import { AGENT_SOURCE } from './agent';

export interface SandboxOptions {
  /**
   * Load a ruleset that refers to conntrack (`ct state new counter` in the input and
   * output hooks of an inet table), so real traffic in the namespace is tracked.
   * Default false: entries made with `ct.create()` need no rules.
   */
  tracking?: boolean;
  /** Sysctls of the namespace to set at once, by full name: `{ 'net.netfilter.nf_conntrack_acct': 1 }`. */
  sysctls?: Record<string, string | number | boolean>;
  /** An nft ruleset (the text `nft -f` reads) to load after the tracking rules. */
  nft?: string;
  /** Options for the `ct` handle (`receiveBufferSize`); `netns` is the sandbox's own. */
  conntrack?: Omit<OpenOptions, 'netns'>;
}

export interface SandboxSpawnOptions extends SpawnOptions {
  /** Keep the event loop alive while the child runs (like a plain child_process.spawn). Default false. */
  ref?: boolean;
}

export interface RunOptions {
  /** Text written to the command's stdin. */
  input?: string;
  /** Resolve with the exit code instead of rejecting when it is not 0. Default false. */
  allowFailure?: boolean;
  /** Kill the command after this many ms (rejects with code ETIMEDOUT). */
  timeout?: number;
  /** The command's environment. Default: this process's (process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status (null when killed by a signal). */
  code: number | null;
}

/** The original-direction tuple of a connection the sandbox made. */
export interface Endpoints {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

export interface TcpOptions {
  /** Address to connect to. Default 127.0.0.1. */
  host?: string;
  /** Port to connect to. Default: the listener's port. */
  port?: number;
  /** Where the server listens (differs from host/port behind a DNAT rule). Default: host and port (0: any free port). */
  listen?: { host?: string; port?: number };
  /** Bytes the client sends (echoed back). Default 'ping'. */
  payload?: string;
  /** Keep the connection open (ESTABLISHED) until `close()`; otherwise it is closed cleanly (TIME_WAIT). Default false. */
  hold?: boolean;
  /** Connect timeout in ms. Default 3000. */
  timeout?: number;
}

export interface UdpOptions {
  host?: string;
  port?: number;
  listen?: { host?: string; port?: number };
  payload?: string;
  /** The server answers (the entry gets SEEN_REPLY). Default true. */
  reply?: boolean;
}

export interface PingOptions {
  /** Default 127.0.0.1 (an IPv6 address pings with -6). */
  host?: string;
  /** Echo requests to send. Default 1. */
  count?: number;
}

/** A held connection or listener inside the sandbox. */
export interface Held {
  close(): Promise<void>;
}

export interface ConnectResult {
  ok: boolean;
  /** No answer within the timeout (a dropped SYN). */
  timedOut: boolean;
  /** The socket error code when refused (ECONNREFUSED, ...). */
  error?: string;
  /** How long the attempt took. */
  ms: number;
  /** When ok and held. */
  endpoints?: Endpoints;
  close(): Promise<void>;
}

export interface FtpSession extends Endpoints, Held {
  /** The data port the server announced in its 227 reply (what the ftp helper expects). */
  dataPort: number;
  /** The server's lines: the greeting and the 227 reply. */
  lines: string[];
}

export interface FillOptions {
  /** 'udp' (default) or 'tcp' (ESTABLISHED). */
  proto?: 'udp' | 'tcp';
  /** Entry timeout in seconds. Default 3600. */
  timeout?: number;
  /** Mark to give the entries. Default 0. */
  mark?: number;
  /** Zone. Default 0. */
  zone?: number;
}

export interface FillResult {
  /** Entries created. */
  ok: number;
  /** Entries the kernel refused, by index (ENOSPC... when the table is full). */
  errors: { index: number; error: ConntrackError }[];
}

export interface Sandbox {
  /** A Conntrack handle opened in the sandbox's namespace (closed by close()). */
  readonly ct: Conntrack;
  /** The namespace: its file (for `Conntrack.open({ netns })`, `nsenter --net=`) and the holder's pid. */
  readonly netns: { path: string; pid: number };
  /** Same as netns.path. */
  readonly path: string;
  /** Same as netns.pid. */
  readonly pid: number;
  readonly closed: boolean;
  /** Runs a command inside the namespace; rejects (code ERR_COMMAND_FAILED) on a non-zero exit unless allowFailure. */
  run(cmd: string, args?: string[], options?: RunOptions): Promise<RunResult>;
  /** Runs a shell script inside the namespace. */
  sh(script: string, options?: RunOptions): Promise<RunResult>;
  /**
   * Starts a long-running process inside the namespace; close() kills it, and so does the
   * end of this process (PR_SET_PDEATHSIG). Default stdio: ignore, pipe, pipe. It is
   * unref'd (it does not keep the event loop alive) unless `ref: true`.
   */
  spawn(cmd: string, args?: string[], options?: SandboxSpawnOptions): ChildProcess;
  /** Reads a sysctl of the namespace (`sysctl(name)`), or writes it (`sysctl(name, value)`). */
  sysctl(name: string): Promise<string>;
  sysctl(name: string, value: string | number | boolean): Promise<void>;
  /** Writes several sysctls in one command. */
  sysctls(values: Record<string, string | number | boolean>): Promise<void>;
  /** Loads an nft ruleset (`nft -f -`). */
  nft(ruleset: string): Promise<void>;
  /** Turns tracking on (the ruleset `tracking: true` loads); idempotent. */
  track(): Promise<void>;
  /** A real TCP connection: listen, connect, send, read the echo, then close cleanly or hold. */
  tcp(options?: TcpOptions): Promise<Endpoints & Held>;
  /** A real UDP exchange: a datagram each way (or one without a reply). */
  udp(options?: UdpOptions): Promise<Endpoints>;
  /** Real ICMP echo requests (ping). */
  ping(options?: PingOptions): Promise<void>;
  /** A TCP listener that stays until close() (e.g. a target for connect()). */
  listen(options?: { host?: string; port?: number }): Promise<Held & { host: string; port: number }>;
  /** One TCP connect attempt, reported rather than thrown: ok, refused, or timed out (dropped). */
  connect(options: { host?: string; port: number; timeout?: number; hold?: boolean }): Promise<ConnectResult>;
  /** An FTP control connection (port 21 by default) up to the server's PASV reply. */
  ftp(options?: { host?: string; port?: number; hold?: boolean }): Promise<FtpSession>;
  /** TCP (held), UDP and ICMP traffic on 127.0.0.1 at once: one entry of each protocol. */
  traffic(): Promise<{ tcp: Endpoints & Held; udp: Endpoints }>;
  /**
   * Fills the table with ASSURED entries (which early drop cannot evict), created over
   * ctnetlink with createMany. `count` entries, or 'max' for nf_conntrack_max minus
   * the entries already there.
   */
  fill(count: number | 'max', options?: FillOptions): Promise<FillResult>;
  /** Opens another Conntrack handle in the namespace (closed by close()). */
  open(options?: Omit<OpenOptions, 'netns'>): Promise<Conntrack>;
  /** Closes the handles, kills every process started in the sandbox and the holder; the namespace goes away. */
  close(): Promise<void>;
}

/** The nft ruleset that `tracking: true` loads. */
export const TRACKING_RULESET = `table inet sandbox_tracking {
  chain output { type filter hook output priority 0; policy accept; ct state new counter; }
  chain input { type filter hook input priority 0; policy accept; ct state new counter; }
}
`;

const RUN_HINT =
  'run the suite as root, or inside a private user and network namespace where you are root: `unshare -Urn npx jest` (or `unshare -Urn npm test`)';

const live = new Set<SandboxImpl>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous last resort for sandboxes a test did not close (a failure, a timeout).
  process.on('exit', () => {
    for (const sb of live) sb.killNow();
  });
}

/** Sandboxes created and not yet closed (in this module instance). */
export function liveSandboxes(): number {
  return live.size;
}

/** Closes every live sandbox (for an afterAll hook). */
export async function closeAll(): Promise<void> {
  await Promise.all([...live].map((sb) => sb.close()));
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function unrefStdio(child: ChildProcess): void {
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as unknown as { unref?: () => void } | null)?.unref?.();
}

function toolMissing(tool: string, pkg: string): ConntrackError {
  return new ConntrackError('ENOENT', `sandbox(): \`${tool}\` was not found on PATH: install ${pkg}`, { syscall: 'spawn' });
}

function validateOptions(options: SandboxOptions): void {
  if (options === null || typeof options !== 'object') throw invalidArg('options', 'must be an object');
  if (options.tracking !== undefined && typeof options.tracking !== 'boolean') throw invalidArg('tracking', 'must be true or false');
  if (options.nft !== undefined && typeof options.nft !== 'string') throw invalidArg('nft', 'must be an nft ruleset (a string)');
  if (options.sysctls !== undefined) validateSysctls(options.sysctls, 'sysctls');
}

function invalidArg(field: string, problem: string): ConntrackError {
  return new ConntrackError('ERR_INVALID_ARGUMENT', `sandbox(): ${field}: ${problem}`, { field });
}

function validateSysctls(values: unknown, field: string): asserts values is Record<string, string | number | boolean> {
  if (values === null || typeof values !== 'object' || Array.isArray(values)) throw invalidArg(field, 'must be an object of sysctl name to value');
  for (const [k, v] of Object.entries(values)) {
    if (!/^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$/.test(k)) throw invalidArg(`${field}.${k}`, 'must be a full sysctl name such as net.netfilter.nf_conntrack_acct');
    const ok = typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)) || (typeof v === 'string' && v !== '' && !/[\n=]/.test(v));
    if (!ok) {
      throw invalidArg(`${field}.${k}`, `must be a number, a boolean or a word, got ${JSON.stringify(v)}`);
    }
  }
}

const sysctlValue = (v: string | number | boolean): string => (typeof v === 'boolean' ? (v ? '1' : '0') : String(v));

/** Starts the holder: a new network namespace with loopback up, held by `cat` on a pipe. */
function startHolder(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawnChild('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && echo ready && exec cat'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stderr = '';
    let done = false;
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.once('data', () => {
      if (done) return;
      done = true;
      // Only the stdin pipe stays: it is the holder's lifeline. Nothing keeps the loop alive.
      child.stdout!.destroy();
      child.stderr!.destroy();
      child.unref();
      unrefStdio(child);
      resolve(child);
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (done) return;
      done = true;
      reject(err.code === 'ENOENT' ? toolMissing('unshare', 'util-linux') : new ConntrackError(err.code ?? 'ERR_SANDBOX', `sandbox(): cannot start unshare: ${err.message}`));
    });
    child.once('exit', (code) => {
      if (done) return;
      done = true;
      const text = stderr.trim();
      if (/Operation not permitted|Permission denied/.test(text)) {
        const who = process.geteuid?.() === 0 ? '' : ` (uid ${process.geteuid?.()})`;
        reject(new ConntrackError('EPERM', `sandbox(): cannot create a network namespace${who}: ${text}: ${RUN_HINT}`, { errno: 1, syscall: 'unshare' }));
      } else if (/ip: not found|ip: No such file/.test(text)) {
        reject(toolMissing('ip', 'iproute2'));
      } else {
        reject(new ConntrackError('ERR_SANDBOX', `sandbox(): the namespace holder exited (${code}) before it was ready: ${text || 'no message'}`));
      }
    });
  });
}

class SandboxImpl implements Sandbox {
  ct!: Conntrack;
  readonly netns: { path: string; pid: number };
  private readonly children = new Set<ChildProcess>();
  private readonly handles = new Set<Conntrack>();
  private agent: Promise<Agent> | undefined;
  private tracked = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly holder: ChildProcess) {
    this.netns = { pid: holder.pid!, path: `/proc/${holder.pid}/ns/net` };
  }

  get path(): string {
    return this.netns.path;
  }
  get pid(): number {
    return this.netns.pid;
  }
  get closed(): boolean {
    return this.closing !== undefined;
  }

  private assertOpen(op: string): void {
    if (this.closing) throw new ConntrackError('ERR_CLOSED', `sandbox.${op}: the sandbox is closed`);
  }

  run(cmd: string, args: string[] = [], options: RunOptions = {}): Promise<RunResult> {
    if (this.closing) return Promise.reject(new ConntrackError('ERR_CLOSED', 'sandbox.run: the sandbox is closed'));
    return new Promise((resolve, reject) => {
      const child = spawnChild('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: options.env });
      this.children.add(child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout!.on('data', (d: Buffer) => out.push(d));
      child.stderr!.on('data', (d: Buffer) => err.push(d));
      child.stdin!.on('error', () => {});
      child.stdin!.end(options.input ?? '');
      let timedOut = false;
      const timer = options.timeout !== undefined ? setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), options.timeout) : undefined;
      child.once('error', (e: NodeJS.ErrnoException) => {
        if (timer) clearTimeout(timer);
        this.children.delete(child);
        reject(e.code === 'ENOENT' ? toolMissing('nsenter', 'util-linux') : e);
      });
      child.once('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        this.children.delete(child);
        const r = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code };
        // On a refusal the error carries the output too (error.code stays the stable code).
        const extra = { stdout: r.stdout, stderr: r.stderr, exitCode: code };
        const line = [cmd, ...args].join(' ');
        if (timedOut) {
          reject(Object.assign(new ConntrackError('ETIMEDOUT', `sandbox.run: \`${line}\` did not finish within ${options.timeout} ms`), extra));
        } else if (code !== 0 && !options.allowFailure) {
          const why = code === null ? `was killed by ${signal}` : `exited with ${code}`;
          const notFound = code === 127 || /No such file or directory/.test(r.stderr) ? ` (is ${cmd} installed?)` : '';
          reject(Object.assign(new ConntrackError('ERR_COMMAND_FAILED', `sandbox.run: \`${line}\` ${why}${notFound}: ${r.stderr.trim()}`), extra));
        } else resolve(r);
      });
    });
  }

  sh(script: string, options?: RunOptions): Promise<RunResult> {
    return this.run('sh', ['-c', script], options);
  }

  spawn(cmd: string, args: string[] = [], options: SandboxSpawnOptions = {}): ChildProcess {
    this.assertOpen('spawn');
    // setpriv --pdeathsig: the child dies with this process even if close() never runs.
    const { ref: _ref, ...spawnOptions } = options;
    const child = spawnChild('nsenter', [`--net=${this.path}`, '--', 'setpriv', '--pdeathsig', 'KILL', '--', cmd, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...spawnOptions,
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    // The sandbox owns its lifetime: it does not keep the process alive unless asked.
    if (!options.ref) {
      child.unref();
      unrefStdio(child);
    }
    return child;
  }

  async sysctl(name: string, value?: string | number | boolean): Promise<any> {
    if (value === undefined) {
      validateSysctls({ [name]: 0 }, 'name');
      return (await this.run('sysctl', ['-n', name])).stdout.trim();
    }
    await this.sysctls({ [name]: value });
  }

  async sysctls(values: Record<string, string | number | boolean>): Promise<void> {
    validateSysctls(values, 'sysctls');
    const args = Object.entries(values).map(([k, v]) => `${k}=${sysctlValue(v)}`);
    if (args.length) await this.run('sysctl', ['-q', '-w', ...args]);
  }

  async nft(ruleset: string): Promise<void> {
    if (typeof ruleset !== 'string') throw invalidArg('nft', 'must be an nft ruleset (a string)');
    await this.run('nft', ['-f', '-'], { input: ruleset });
  }

  async track(): Promise<void> {
    if (this.tracked) return;
    await this.nft(TRACKING_RULESET);
    this.tracked = true;
  }

  private startAgent(): Promise<Agent> {
    this.agent ??= Agent.start(this.spawn(process.execPath, ['-e', AGENT_SOURCE], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] }));
    return this.agent;
  }

  private async request<T>(op: string, args: Record<string, unknown>): Promise<T> {
    this.assertOpen(op);
    const agent = await this.startAgent();
    return agent.request<T>(op, args);
  }

  private held(handle: number | undefined): () => Promise<void> {
    let closed = false;
    return async () => {
      if (closed || handle === undefined || this.closing) return;
      closed = true;
      await this.request('close', { handle });
    };
  }

  async tcp(options: TcpOptions = {}): Promise<Endpoints & Held> {
    const host = options.host ?? '127.0.0.1';
    const r = await this.request<Endpoints & { handle?: number }>('tcp', {
      host,
      port: options.port ?? options.listen?.port ?? 0,
      listenHost: options.listen?.host ?? host,
      listenPort: options.listen?.port ?? options.port ?? 0,
      payload: options.payload ?? 'ping',
      hold: options.hold ?? false,
      timeout: options.timeout ?? 3000,
    });
    const { handle, ...ep } = r;
    return { ...ep, close: this.held(handle) };
  }

  async udp(options: UdpOptions = {}): Promise<Endpoints> {
    const host = options.host ?? '127.0.0.1';
    return this.request<Endpoints>('udp', {
      host,
      port: options.port ?? options.listen?.port ?? 0,
      listenHost: options.listen?.host ?? host,
      listenPort: options.listen?.port ?? options.port ?? 0,
      payload: options.payload ?? 'ping',
      reply: options.reply ?? true,
    });
  }

  async ping(options: PingOptions = {}): Promise<void> {
    const host = options.host ?? '127.0.0.1';
    const count = options.count ?? 1;
    if (!Number.isInteger(count) || count < 1) throw invalidArg('count', `must be a positive integer, got ${count}`);
    await this.run('ping', [...(host.includes(':') ? ['-6'] : []), '-c', String(count), '-i', '0.2', '-W', '1', '-q', host]);
  }

  async listen(options: { host?: string; port?: number } = {}): Promise<Held & { host: string; port: number }> {
    const r = await this.request<{ handle: number; host: string; port: number }>('listen', { host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
    return { host: r.host, port: r.port, close: this.held(r.handle) };
  }

  async connect(options: { host?: string; port: number; timeout?: number; hold?: boolean }): Promise<ConnectResult> {
    if (!options || !Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw invalidArg('port', 'must be a port number from 1 to 65535');
    const r = await this.request<{ ok: boolean; timedOut?: boolean; error?: string; ms: number; handle?: number } & Partial<Endpoints>>('connect', {
      host: options.host ?? '127.0.0.1',
      port: options.port,
      timeout: options.timeout ?? 1000,
      hold: options.hold ?? false,
    });
    const endpoints = r.ok ? { src: r.src!, sport: r.sport!, dst: r.dst!, dport: r.dport! } : undefined;
    return { ok: r.ok, timedOut: r.timedOut ?? false, error: r.error, ms: r.ms, endpoints, close: this.held(r.handle) };
  }

  async ftp(options: { host?: string; port?: number; hold?: boolean } = {}): Promise<FtpSession> {
    const r = await this.request<Endpoints & { dataPort: number; lines: string[]; handle?: number }>('ftp', {
      host: options.host ?? '127.0.0.1',
      port: options.port ?? 21,
      hold: options.hold ?? true,
    });
    const { handle, ...rest } = r;
    return { ...rest, close: this.held(handle) };
  }

  async traffic(): Promise<{ tcp: Endpoints & Held; udp: Endpoints }> {
    const [tcp, udp] = await Promise.all([this.tcp({ hold: true }), this.udp(), this.ping()]);
    return { tcp, udp };
  }

  async fill(count: number | 'max', options: FillOptions = {}): Promise<FillResult> {
    this.assertOpen('fill');
    let n: number;
    if (count === 'max') {
      const { count: now, max } = await this.ct.stats();
      if (max === 0) throw invalidArg('count', "'max': nf_conntrack_max is 0 (no limit); pass a number");
      n = Math.max(0, max - now);
    } else {
      if (!Number.isInteger(count) || count < 0) throw invalidArg('count', `must be a non-negative integer or 'max', got ${count}`);
      n = count;
    }
    const proto = options.proto ?? 'udp';
    if (proto !== 'udp' && proto !== 'tcp') throw invalidArg('proto', `must be 'udp' or 'tcp', got ${JSON.stringify(proto)}`);
    const timeout = options.timeout ?? 3600;
    // Unique tuples: sources from 198.18.0.0/15 (benchmarking addresses), 64,000 ports each.
    const specs = function* (): Generator<CreateSpec> {
      for (let i = 0; i < n; i++) {
        const host = Math.floor(i / 64000);
        const src = `198.${18 + ((host >> 16) & 1)}.${(host >> 8) & 255}.${host & 255}`;
        yield {
          proto,
          orig: { src, dst: '198.51.100.1', sport: 1024 + (i % 64000), dport: 9 },
          timeout,
          status: ['SEEN_REPLY', 'ASSURED'],
          ...(proto === 'tcp' ? { state: 'ESTABLISHED' } : {}),
          ...(options.mark !== undefined ? { mark: options.mark } : {}),
          ...(options.zone !== undefined ? { zone: options.zone } : {}),
        };
      }
    };
    const r = await this.ct.createMany(specs());
    return { ok: r.ok, errors: r.errors };
  }

  async open(options: Omit<OpenOptions, 'netns'> = {}): Promise<Conntrack> {
    this.assertOpen('open');
    const ct = await Conntrack.open({ ...options, netns: this.path });
    this.handles.add(ct);
    return ct;
  }

  /** @internal Kills everything at once, synchronously (process exit). */
  killNow(): void {
    for (const c of this.children) c.kill('SIGKILL');
    this.holder.kill('SIGKILL');
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    try {
      if (this.agent) await this.agent.then((a) => a.close(), () => undefined);
      await Promise.all([...this.handles, this.ct].filter(Boolean).map((h) => h.close()));
      this.handles.clear();
      const waits = [...this.children].map((c) => {
        c.ref();
        c.kill('SIGKILL');
        return exited(c);
      });
      // Ref the holder until it is gone, so code after `await close()` runs.
      this.holder.ref();
      const gone = exited(this.holder);
      this.holder.stdin?.destroy();
      this.holder.kill('SIGKILL');
      await Promise.all([...waits, gone]);
    } finally {
      live.delete(this);
    }
  }
}

/** The traffic agent process inside the namespace, driven over IPC. */
class Agent {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private exitError: Error | undefined;

  private constructor(private readonly child: ChildProcess) {
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string; code?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.idle();
      if (m.ok) p.resolve(m.result);
      else p.reject(new ConntrackError(m.code ?? 'ERR_SANDBOX', `sandbox: ${m.error}`));
    });
    child.once('exit', (code, signal) => {
      this.exitError = new ConntrackError('ERR_SANDBOX', `sandbox: the traffic agent exited (${code ?? signal})`);
      for (const p of this.pending.values()) p.reject(this.exitError);
      this.pending.clear();
    });
  }

  static start(child: ChildProcess): Promise<Agent> {
    return new Promise((resolve, reject) => {
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      const onExit = (code: number | null): void => reject(new ConntrackError('ERR_SANDBOX', `sandbox: the traffic agent exited (${code}) before it was ready: ${stderr.trim()}`));
      child.once('exit', onExit);
      child.once('error', reject);
      child.once('message', () => {
        child.off('exit', onExit);
        const agent = new Agent(child);
        agent.idle();
        resolve(agent);
      });
    });
  }

  /** Keeps the loop alive only while a request is outstanding. */
  private idle(): void {
    const ch = this.child as ChildProcess & { channel?: { ref(): void; unref(): void } };
    if (this.pending.size === 0) {
      this.child.unref();
      ch.channel?.unref();
      unrefStdio(this.child);
    } else {
      this.child.ref();
      ch.channel?.ref();
    }
  }

  request<T>(op: string, args: Record<string, unknown>): Promise<T> {
    if (this.exitError) return Promise.reject(this.exitError);
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.idle();
      this.child.send({ id, op, ...args });
    });
  }

  async close(): Promise<void> {
    const gone = exited(this.child);
    this.child.ref();
    this.child.kill('SIGKILL');
    await gone;
  }
}

/**
 * Creates a sandbox: a new network namespace with loopback up and a Conntrack handle in it.
 * Rejects with code EPERM (and how to run the suite) when namespaces cannot be created.
 */
export async function sandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  validateOptions(options);
  installExitHook();
  const holder = await startHolder();
  const sb = new SandboxImpl(holder);
  live.add(sb);
  try {
    sb.ct = await Conntrack.open({ ...(options.conntrack ?? {}), netns: sb.path });
    if (options.sysctls && Object.keys(options.sysctls).length) await sb.sysctls(options.sysctls);
    if (options.tracking) await sb.track();
    if (options.nft) await sb.nft(options.nft);
  } catch (err) {
    await sb.close();
    throw err;
  }
  return sb;
}

/** Runs fn with a sandbox that is closed afterwards, whatever fn does. */
export async function withSandbox<T>(fn: (sb: Sandbox) => Promise<T>, options?: SandboxOptions): Promise<T> {
  const sb = await sandbox(options);
  try {
    return await fn(sb);
  } finally {
    await sb.close();
  }
}

/** True when this process is root in the initial user namespace (e.g. nf_conntrack_max can be changed). */
export function isRealRoot(): boolean {
  try {
    return readFileSync('/proc/self/uid_map', 'utf8').trim().split(/\s+/).join(' ') === '0 0 4294967295';
  } catch {
    return false;
  }
}
