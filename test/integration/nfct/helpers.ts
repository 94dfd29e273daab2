/**
 * Runs the real `conntrack` and the built `nfct` (dist/apps/nfct/main.js) inside a test
 * namespace, and normalises what changes from one second to the next (timeouts).
 */
import { ChildProcess } from 'child_process';
import { existsSync } from 'fs';
import { join } from 'path';
import type { Sandbox } from '../../../apps/testing';

export const NFCT = join(__dirname, '../../../dist/apps/nfct/main.js');

export function assertBuilt(): void {
  if (!existsSync(NFCT)) throw new Error(`${NFCT} is missing: run \`npm run build\` before the tests`);
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

const ENV = { ...process.env, NO_COLOR: '1' };

/** Runs a command inside the namespace and resolves with its exit code and output (never rejects). */
export async function runIn(ns: Sandbox, cmd: string, args: string[], input?: string): Promise<Result> {
  const r = await ns.run(cmd, args, { input, allowFailure: true, env: ENV });
  return { code: r.code ?? 1, stdout: r.stdout, stderr: r.stderr };
}

export const conntrack = (ns: Sandbox, args: string[], input?: string) => runIn(ns, 'conntrack', args, input);
export const nfct = (ns: Sandbox, args: string[], input?: string) => runIn(ns, process.execPath, [NFCT, ...args], input);

export type Step = { tool: 'conntrack' | 'nfct' | 'sh'; args: string[]; input?: string };

const RUNNER = join(__dirname, 'runner.js');

/**
 * Runs the steps in order inside the namespace in one process (see runner.js): conntrack
 * and sh steps as child processes, nfct steps through the built bin's main(). Resolves with
 * one Result per step.
 */
export async function script(ns: Sandbox, steps: Step[]): Promise<Result[]> {
  const r = await ns.run(process.execPath, [RUNNER, NFCT], { input: JSON.stringify(steps), env: ENV, allowFailure: true });
  if (r.code !== 0) throw new Error(`runner failed: ${r.stderr || `exit ${r.code ?? 'by a signal'}`}`);
  return JSON.parse(r.stdout) as Result[];
}

/** Steps that run each argument line with both tools: conntrack first, then nfct. */
export const bothSteps = (lines: string[]): Step[] => lines.flatMap((l) => [{ tool: 'conntrack' as const, args: l.split(' ') }, { tool: 'nfct' as const, args: l.split(' ') }]);

/** Runs each line with both tools in one process; returns the pairs in order. */
export async function bothAll(ns: Sandbox, lines: string[]): Promise<{ c: Result; n: Result }[]> {
  const r = await script(ns, bothSteps(lines));
  return lines.map((_, i) => ({ c: r[2 * i], n: r[2 * i + 1] }));
}

export function spawnIn(ns: Sandbox, cmd: string, args: string[]): ChildProcess {
  return ns.spawn(cmd, args, { env: ENV });
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
export async function both(ns: Sandbox, args: string[]): Promise<{ c: Result; n: Result }> {
  const c = await conntrack(ns, args);
  const n = await nfct(ns, args);
  return { c, n };
}
