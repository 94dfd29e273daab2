/**
 * Helpers for the Prometheus tests: known table contents in a namespace, long-running
 * children inside it (the exporter, Prometheus, node_exporter) that are always killed,
 * HTTP requests made from inside the namespace, and a parser for the text exposition.
 */
import { ChildProcess } from 'child_process';
import * as path from 'path';
import { Sandbox } from '../../../apps/testing';
import { sleep } from '../../helpers/wait';

export const EXPORTER_ENTRY = path.join(__dirname, 'exporter-entry.js');

/** A child process inside a namespace, with its output kept for failure messages. */
export class NsChild {
  output = '';
  private exited: Promise<number | null>;

  constructor(readonly name: string, readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once `re` appears in the output; rejects if the child exits first or after `ms`. */
  async waitFor(re: RegExp, ms = 20000): Promise<RegExpExecArray> {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.output);
      if (m) return m;
      if (!this.running) throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${re}:\n${this.output}`);
      if (Date.now() > end) throw new Error(`${this.name} did not print ${re} within ${ms} ms:\n${this.output}`);
      await sleep(20);
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves with the exit code. */
  async stop(graceMs = 5000): Promise<number | null> {
    if (!this.running) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  wait(): Promise<number | null> {
    return this.exited;
  }
}

/** Keeps track of children so afterEach can kill whatever a test left running. */
export class Children {
  private list: NsChild[] = [];

  start(ns: Sandbox, name: string, cmd: string, args: string[]): NsChild {
    const c = new NsChild(name, ns.spawn(cmd, args));
    this.list.push(c);
    return c;
  }

  async stopAll(): Promise<void> {
    const all = this.list.splice(0);
    await Promise.all(all.map((c) => c.stop(2000)));
  }
}

/** Starts the exporter command (built dist) inside the namespace and waits until it serves. */
export async function startExporter(children: Children, ns: Sandbox, args: string[]): Promise<NsChild> {
  const c = children.start(ns, 'exporter', process.execPath, [EXPORTER_ENTRY, ...args]);
  await c.waitFor(/serving http:\/\/\S+\/metrics/);
  return c;
}

export interface HttpResult {
  status: number;
  contentType: string;
  body: string;
}

const FETCH = `
const [url, accept] = process.argv.slice(1);
fetch(url, { headers: accept ? { accept } : {} }).then(async (r) => {
  process.stdout.write(JSON.stringify({ status: r.status, contentType: r.headers.get('content-type') || '', body: await r.text() }));
}, (e) => { process.stderr.write(String(e && e.cause || e)); process.exit(3); });`;

/** GET from inside the namespace (its loopback is not reachable from the test process). */
export async function nsGet(ns: Sandbox, url: string, accept?: string): Promise<HttpResult> {
  const { stdout } = await ns.run(process.execPath, ['-e', FETCH, url, accept ?? '']);
  return JSON.parse(stdout) as HttpResult;
}

/** GET that retries while the server is not up yet. */
export async function nsGetRetry(ns: Sandbox, url: string, ms = 20000): Promise<HttpResult> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      return await nsGet(ns, url);
    } catch (err) {
      if (Date.now() > end) throw err;
      await sleep(100);
    }
  }
}

/**
 * Known contents: real ICMP traffic counted by an nft `ct state new counter` rule (IPv4
 * only, so the tests' HTTP over ::1 is not tracked and the table stays still), and
 * entries made with `conntrack -I` in several protocols and states, IPv4 and IPv6.
 */
export async function seedTable(ns: Sandbox): Promise<void> {
  await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
  await ns.sysctl('net.netfilter.nf_conntrack_icmp_timeout', 600);
  await ns.run('nft', ['-f', '-'], {
    input: 'table ip t {\n chain o {\n  type filter hook output priority 0;\n  ct state new counter\n }\n}\n',
  });
  await ns.run('ping', ['-c', '3', '-i', '0.2', '-q', '127.0.0.1']);
  await ns.run('ping', ['-c', '2', '-i', '0.2', '-q', '127.0.0.2']);
  const entries: string[] = [];
  const tcp = (n: number, state: string, base: number): void => {
    for (let i = 0; i < n; i++) entries.push(`-p tcp -s 10.1.0.1 -d 10.1.0.2 --sport ${base + i} --dport 443 -t 600 --state ${state}`);
  };
  tcp(3, 'ESTABLISHED', 1000);
  tcp(2, 'SYN_SENT', 2000);
  tcp(1, 'TIME_WAIT', 3000);
  for (let i = 0; i < 4; i++) entries.push(`-p udp -s 10.1.0.1 -d 10.1.0.3 --sport ${4000 + i} --dport 53 -t 600`);
  entries.push('-p udp -s fd00::1 -d fd00::2 --sport 5000 --dport 53 -t 600');
  entries.push('-p tcp -s fd00::1 -d fd00::2 --sport 5001 --dport 80 -t 600 --state ESTABLISHED');
  entries.push('-p sctp -s 10.1.0.1 -d 10.1.0.4 --sport 6000 --dport 7000 -t 600 --state ESTABLISHED --orig-vtag 1 --reply-vtag 2');
  await ns.sh(entries.map((e) => `conntrack -I ${e} >/dev/null 2>&1`).join(' && '));
}

/** Counts of `conntrack -L` (all families) by protocol and state ('' when none is shown). */
export async function cliCounts(ns: Sandbox): Promise<Map<string, number>> {
  const { stdout } = await ns.run('conntrack', ['-L']);
  const out = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !/^\d+$/.test(f[1])) continue;
    const state = /^[A-Z_]+$/.test(f[3]) ? f[3] : '';
    const k = `${f[0]}|${state}`;
    out.set(k, (out.get(k) ?? 0) + 1);
  }
  return out;
}

export async function cliCount(ns: Sandbox): Promise<number> {
  return Number((await ns.run('conntrack', ['-C'])).stdout.trim());
}

export interface Sample {
  labels: Record<string, string>;
  value: number;
}
export interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

/** Parses the Prometheus text format (HELP, TYPE, samples with labels). */
export function parseExposition(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  const fam = (name: string): Family => {
    let f = fams.get(name);
    if (!f) fams.set(name, (f = { type: 'untyped', help: '', samples: [] }));
    return f;
  };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (m) {
      if (m[1] === 'HELP') fam(m[2]).help = m[3];
      else fam(m[2]).type = m[3];
      continue;
    }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const value = Number(m[3]);
    // A counter's samples are named NAME_total in OpenMetrics; the family is NAME.
    const base = fams.has(m[1]) ? m[1] : m[1].replace(/_total$/, '');
    fam(fams.has(base) ? base : m[1]).samples.push({ labels, value });
  }
  return fams;
}

/** The value of a family's only sample (or of the sample whose labels include `match`). */
export function valueOf(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number | undefined {
  const f = fams.get(name);
  const s = f?.samples.find((x) => Object.entries(match).every(([k, v]) => x.labels[k] === v));
  return s?.value;
}
