/**
 * Runs the real `conntrack` and the built `nfct` (dist/apps/nfct/main.js) inside a test
 * namespace, and normalises what changes from one second to the next (timeouts).
 */
import { execFile, spawn, ChildProcess } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';
import type { Netns } from '../../helpers/netns';

export const NFCT = join(__dirname, '../../../dist/apps/nfct/main.js');

export function assertBuilt(): void {
  if (!existsSync(NFCT)) throw new Error(`${NFCT} is missing: run \`npm run build\` before the tests`);
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command inside the namespace and resolves with its exit code and output (never rejects). */
export function runIn(ns: Netns, cmd: string, args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile('nsenter', [`--net=${ns.path}`, '--', cmd, ...args], { maxBuffer: 256 << 20, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number) ?? 1 : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

export const conntrack = (ns: Netns, args: string[], input?: string) => runIn(ns, 'conntrack', args, input);
export const nfct = (ns: Netns, args: string[], input?: string) => runIn(ns, process.execPath, [NFCT, ...args], input);

export type Step = { tool: 'conntrack' | 'nfct' | 'sh'; args: string[]; input?: string };

const RUNNER = join(__dirname, 'runner.js');

/**
 * Runs the steps in order inside the namespace in one process (see runner.js): conntrack
 * and sh steps as child processes, nfct steps through the built bin's main(). Resolves with
 * one Result per step.
 */
export function script(ns: Netns, steps: Step[]): Promise<Result[]> {
  return new Promise((resolve, reject) => {
    const child = execFile('nsenter', [`--net=${ns.path}`, '--', process.execPath, RUNNER, NFCT], { maxBuffer: 256 << 20, env: { ...process.env, NO_COLOR: '1' } }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`runner failed: ${stderr || err.message}`));
      resolve(JSON.parse(stdout) as Result[]);
    });
    child.stdin!.end(JSON.stringify(steps));
  });
}

/** Steps that run each argument line with both tools: conntrack first, then nfct. */
export const bothSteps = (lines: string[]): Step[] => lines.flatMap((l) => [{ tool: 'conntrack' as const, args: l.split(' ') }, { tool: 'nfct' as const, args: l.split(' ') }]);

/** Runs each line with both tools in one process; returns the pairs in order. */
export async function bothAll(ns: Netns, lines: string[]): Promise<{ c: Result; n: Result }[]> {
  const r = await script(ns, bothSteps(lines));
  return lines.map((_, i) => ({ c: r[2 * i], n: r[2 * i + 1] }));
}

export function spawnIn(ns: Netns, cmd: string, args: string[]): ChildProcess {
  return spawn('nsenter', [`--net=${ns.path}`, '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
}

/** Lines with the timeout (and delta-time) masked, sorted: the two tools list in the same order, but a second may tick between runs. */
export function normalize(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) =>
      l
        .replace(/^((?:ipv[46]\s+\d+ )?\S+\s+\d+ )\d+ /, '$1T ')
        .replace(/^(\s*\[[A-Z]+\] (?:ipv[46]\s+\d+ )?\S+\s+\d+ )\d+ /, '$1T ')
        .replace(/-t \d+ /, '-t T ')
        .replace(/delta-time=\d+/, 'delta-time=D')
        .replace(/^\d+ proto=/, 'T proto='),
    )
    .sort();
}

/** Both tools on the same arguments; the comparison the tests make. */
export async function both(ns: Netns, args: string[]): Promise<{ c: Result; n: Result }> {
  const c = await conntrack(ns, args);
  const n = await nfct(ns, args);
  return { c, n };
}

export async function waitFor(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
