/**
 * File jobs in a network namespace: a sysctl or /proc/net file shows the namespace of the
 * process that opens it (there is no /proc/PID/sys), so another namespace's files are
 * reached by running a tiny script in a child process that `nsenter --net` puts inside
 * it. The same script runs in-process for the caller's own namespace, so both paths
 * behave alike.
 */
import { execFile } from 'child_process';
import { abortError } from './abort';
import { ConntrackError } from './errors';
import { sameNetnsAsCaller } from './netns';

/** @internal An operation of the file job. */
export type NetnsOp =
  | { op: 'read'; file: string }
  | { op: 'snapshot'; dir: string; prefix: string }
  | { op: 'transaction'; writes: { file: string; value: string }[] };

/** @internal An errno as the job reports it. */
export interface NetnsJobError {
  code: string;
  errno?: number;
}

/** @internal The result of one operation. */
export interface NetnsResult {
  error?: NetnsJobError;
  value?: string;
  entries?: { name: string; value?: string; error?: NetnsJobError; mode?: number; writable: boolean }[];
  ok?: boolean;
  index?: number;
  stage?: 'check' | 'write';
  mode?: number;
  rolledBack?: boolean;
  old?: string[];
}

/*
 * The job, as plain JavaScript source: it must survive being handed to `node -e` in a
 * child process, so it cannot be a compiled TypeScript function (coverage tools and
 * transpilers rewrite those). Synchronous on purpose: the files are a few bytes of procfs
 * each, and a transaction must not interleave with anything else.
 */
const JOB_SOURCE = String.raw`
function job(ops) {
  const fs = require('fs');
  const err = (e) => ({ code: e.code || 'EIO', errno: typeof e.errno === 'number' ? Math.abs(e.errno) : undefined });
  const modeOf = (f) => { try { return fs.statSync(f).mode & 0o777; } catch (e) { return undefined; } };
  const canWrite = (f) => { try { fs.accessSync(f, fs.constants.W_OK); return true; } catch (e) { return false; } };
  return ops.map((o) => {
    if (o.op === 'read') {
      try { return { value: fs.readFileSync(o.file, 'utf8') }; } catch (e) { return { error: err(e) }; }
    }
    if (o.op === 'snapshot') {
      let names;
      try { names = fs.readdirSync(o.dir).filter((n) => n.startsWith(o.prefix)).sort(); } catch (e) { return { error: err(e) }; }
      const entries = [];
      for (const name of names) {
        const file = o.dir + '/' + name;
        let value, error;
        try { value = fs.readFileSync(file, 'utf8'); } catch (e) { error = err(e); if (error.code === 'EISDIR') continue; }
        entries.push({ name, value, error, mode: modeOf(file), writable: canWrite(file) });
      }
      return { entries };
    }
    if (o.op === 'transaction') {
      const old = [];
      for (let i = 0; i < o.writes.length; i++) {
        const w = o.writes[i];
        try { old.push(fs.readFileSync(w.file, 'utf8')); fs.accessSync(w.file, fs.constants.W_OK); }
        catch (e) { return { ok: false, index: i, stage: 'check', error: err(e), mode: modeOf(w.file) }; }
      }
      for (let i = 0; i < o.writes.length; i++) {
        const w = o.writes[i];
        try { fs.writeFileSync(w.file, w.value); }
        catch (e) {
          let rolledBack = true;
          for (let j = i - 1; j >= 0; j--) { try { fs.writeFileSync(o.writes[j].file, old[j]); } catch (e2) { rolledBack = false; } }
          return { ok: false, index: i, stage: 'write', error: err(e), mode: modeOf(w.file), rolledBack };
        }
      }
      return { ok: true, old };
    }
    return { error: { code: 'EINVAL' } };
  });
}
`;

let localJob: ((ops: NetnsOp[]) => NetnsResult[]) | undefined;

/** @internal Runs the job in the caller's own namespace. */
function runLocal(ops: NetnsOp[]): NetnsResult[] {
  if (!localJob) {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    localJob = new Function('require', `${JOB_SOURCE}\nreturn job;`)(require) as (ops: NetnsOp[]) => NetnsResult[];
  }
  return localJob(ops);
}

/**
 * @internal Runs the job inside another network namespace: `nsenter --net=PATH` starts
 * this same Node binary there. Needs nsenter (util-linux) and the right to enter the
 * namespace (CAP_SYS_ADMIN over its user namespace).
 */
export function runInNetns(nsPath: string, ops: NetnsOp[], signal?: AbortSignal): Promise<NetnsResult[]> {
  const script = `${JOB_SOURCE}\nprocess.stdout.write(JSON.stringify(job(JSON.parse(process.argv[1]))));`;
  return new Promise((resolve, reject) => {
    execFile(
      'nsenter',
      [`--net=${nsPath}`, '--', process.execPath, '-e', script, JSON.stringify(ops)],
      { signal, maxBuffer: 16 << 20, env: { ...process.env, NODE_OPTIONS: '' } },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: string | number };
          if (e.name === 'AbortError') return reject(abortError('running a job in the namespace', signal));
          if (e.code === 'ENOENT') {
            return reject(new ConntrackError('ERR_UNSUPPORTED', `reaching the files of namespace ${nsPath} needs nsenter (util-linux), which was not found`, { cause: err }));
          }
          const text = String(stderr).trim();
          let code = 'ERR_NATIVE';
          if (/not permitted/i.test(text)) code = 'EPERM';
          else if (/no such file/i.test(text)) code = 'ENOENT';
          else if (/permission denied/i.test(text)) code = 'EACCES';
          const hint = code === 'EPERM' || code === 'EACCES' ? ': entering a namespace needs CAP_SYS_ADMIN over its user namespace (run as root, or inside the same `unshare -U` user namespace)'
            : code === 'ENOENT' ? ': no such process or network namespace' : '';
          const syscall = code === 'ENOENT' ? 'open' : 'setns';
          return reject(new ConntrackError(code, `entering namespace ${nsPath} failed: ${text || e.message}${hint}`, { syscall, cause: err }));
        }
        try {
          resolve(JSON.parse(stdout) as NetnsResult[]);
        } catch (parseErr) {
          reject(new ConntrackError('ERR_PROTOCOL', `unexpected output from the helper process in ${nsPath}`, { cause: parseErr }));
        }
      },
    );
  });
}

/** @internal Runs the job where the namespace is: in-process when it is ours. */
export async function runJob(nsPath: string | undefined, ops: NetnsOp[], signal?: AbortSignal): Promise<NetnsResult[]> {
  if (signal?.aborted) throw abortError('running a job in the namespace', signal);
  if (nsPath === undefined || (await sameNetnsAsCaller(nsPath))) return runLocal(ops);
  // A job that writes is never interrupted part-way: killing it between two writes would
  // leave a half-applied change with no rollback. The signal is honoured before it starts.
  const writes = ops.some((o) => o.op === 'transaction');
  return runInNetns(nsPath, ops, writes ? undefined : signal);
}
