/**
 * Throwaway network namespaces for integration tests. Each namespace is held open by a
 * `sleep` process started with `unshare -n`; commands run inside it through nsenter.
 * Works as real root, and inside `unshare -Urn` (root of a private user namespace).
 */
import { ChildProcess, execFile, spawn } from 'child_process';
import { readlinkSync } from 'fs';
import { promisify } from 'util';

const execFileP = promisify(execFile);

export class Netns {
  private constructor(private readonly child: ChildProcess, readonly pid: number) {}

  /** Path of the namespace file, for Conntrack.open({ netns }). */
  get path(): string {
    return `/proc/${this.pid}/ns/net`;
  }

  static async create(): Promise<Netns> {
    const child = spawn('unshare', ['-n', '--', 'sleep', 'infinity'], { stdio: 'ignore' });
    const pid = child.pid;
    if (pid === undefined) throw new Error('unshare did not start');
    const own = readlinkSync('/proc/self/ns/net');
    // Wait until the child has switched namespaces (unshare execs sleep afterwards).
    for (let i = 0; i < 500; i++) {
      let theirs = '';
      try {
        theirs = readlinkSync(`/proc/${pid}/ns/net`);
      } catch {
        /* not there yet */
      }
      if (child.exitCode !== null) throw new Error(`unshare -n failed (exit ${child.exitCode}): run the tests as root or under \`unshare -Urn\``);
      if (theirs && theirs !== own) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const ns = new Netns(child, pid);
    await ns.run('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside the namespace; rejects on a non-zero exit. */
  async run(cmd: string, args: string[], options: { input?: string } = {}): Promise<{ stdout: string; stderr: string }> {
    const p = execFileP('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { maxBuffer: 256 << 20 });
    if (options.input !== undefined) {
      p.child.stdin?.end(options.input);
    }
    return p;
  }

  /** Runs a shell script inside the namespace. */
  sh(script: string): Promise<{ stdout: string; stderr: string }> {
    return this.run('sh', ['-c', script]);
  }

  /** Starts a long-running process inside the namespace. */
  spawn(cmd: string, args: string[]): ChildProcess {
    return spawn('nsenter', [`--net=${this.path}`, '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** Writes a sysctl of this namespace (e.g. net.netfilter.nf_conntrack_acct). */
  async sysctl(name: string, value: string | number): Promise<void> {
    await this.run('sysctl', ['-q', '-w', `${name}=${value}`]);
  }

  destroy(): void {
    this.child.kill('SIGKILL');
  }
}

/** Makes a namespace for the duration of fn. */
export async function withNetns<T>(fn: (ns: Netns) => Promise<T>): Promise<T> {
  const ns = await Netns.create();
  try {
    return await fn(ns);
  } finally {
    ns.destroy();
  }
}
