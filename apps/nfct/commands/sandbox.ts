/**
 * `nfct sandbox [--scenario NAME] [--shell]`: a private network namespace with tracking on,
 * real traffic, its flows, a live stream of events and the statistics, explained as it
 * goes. Not root: re-executes itself under `unshare -Urn` (root of a private user and
 * network namespace). The scenarios live in ../sandbox/scenarios.
 */
import { spawnSync } from 'child_process';
import { helpText, parse } from '../common/args';
import { UsageError, reportError } from '../common/errors';
import { SCENARIOS, runDefault, runShell } from '../sandbox/scenarios';

const HELP = helpText('nfct sandbox [--scenario NAME] [--shell]', `Makes a private network namespace (as root, or under \`unshare -Urn\` as a normal
user), switches tracking on with an nft rule that refers to conntrack, makes real TCP,
UDP and ICMP traffic, and shows the flows, a live stream of events and the statistics.
It ends by itself and leaves nothing behind.

Options:
  --scenario NAME    replay a classic experiment, explained as it goes:
${Object.entries(SCENARIOS).map(([n, s]) => `                       ${n.padEnd(20)} ${s.summary}`).join('\n')}
  --shell            afterwards, leave you in a shell inside the sandbox with nfct on PATH
                     (the sandbox goes away when the shell exits)`, 'none');

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { scenario: { type: 'string', short: 's' }, shell: { type: 'boolean' } });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    if (values.netns !== undefined) throw new UsageError('--netns: the sandbox makes its own namespace; use another command for an existing one', 'netns');
    if (values.output !== undefined) throw new UsageError('--output: the sandbox prints an explained walk-through; it has no output formats', 'output');
    const scenario = values.scenario as string | undefined;
    if (scenario !== undefined && !SCENARIOS[scenario]) {
      throw new UsageError(`--scenario: unknown scenario ${JSON.stringify(scenario)}; use one of ${Object.keys(SCENARIOS).join(', ')}`, 'scenario');
    }
    if (process.getuid?.() !== 0) return reexecUnderUnshare(argv);
    const out = (line = ''): void => void process.stdout.write(line + '\n');
    const sb = scenario ? await SCENARIOS[scenario].run(out) : await runDefault(out);
    try {
      if (values.shell) return await runShell(sb, out);
      return 0;
    } finally {
      await sb.close();
    }
  } catch (err) {
    return reportError(err);
  }
}

/** Runs this same command again as root of a private user and network namespace. */
function reexecUnderUnshare(argv: string[]): number {
  const main = process.argv[1];
  process.stdout.write('(not root: running again inside `unshare -Urn`, as root of a private user namespace)\n');
  const r = spawnSync('unshare', ['-Urn', '--', process.execPath, main, 'sandbox', ...argv], { stdio: 'inherit' });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    process.stderr.write(`nfct sandbox: cannot run unshare: ${e.code === 'ENOENT' ? 'it is not installed (util-linux)' : e.message}; run as root instead [${e.code}]\n`);
    return 1;
  }
  if (r.signal) process.stderr.write(`nfct sandbox: ended by ${r.signal}\n`);
  return r.status ?? 1;
}
