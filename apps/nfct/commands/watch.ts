/** `nfct watch [filters]`: the table again every --interval seconds (cleared on a terminal). */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse, parseUint } from '../common/args';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { LineWriter, parseOutput } from '../common/output';
import { printFlows } from '../common/print';

const HELP = helpText('nfct watch [--interval S] [--count N] [filters]', `Print the (filtered) table every interval until interrupted or --count rounds.

  --interval SECONDS            default 2
  --count N                     stop after N rounds

${FILTER_HELP}`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, interval: { type: 'string' }, count: { type: 'string' } });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const filter = filterFromValues(values);
    const interval = values.interval !== undefined ? Number(values.interval) : 2;
    if (!(interval > 0)) throw Object.assign(new Error(`--interval: must be a positive number of seconds, got ${values.interval}`), { code: 'ERR_INVALID_ARGUMENT' });
    const rounds = values.count !== undefined ? parseUint(values.count as string, 'count', Number.MAX_SAFE_INTEGER) : Infinity;
    return await withHandle(values.netns as string | undefined, async (ct) => {
      let stopped = false;
      let wake: (() => void) | undefined;
      const stop = () => {
        stopped = true;
        wake?.();
      };
      process.once('SIGINT', stop);
      try {
        for (let i = 0; i < rounds && !stopped; i++) {
          if (process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
          else if (i > 0) process.stdout.write('\n');
          if (output === 'table') process.stdout.write(`# ${new Date().toISOString()}\n`);
          await printFlows(ct.dump(filter), output, new LineWriter());
          if (i + 1 < rounds) await new Promise<void>((r) => { wake = r; setTimeout(r, interval * 1000); });
        }
      } finally {
        process.off('SIGINT', stop);
      }
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
