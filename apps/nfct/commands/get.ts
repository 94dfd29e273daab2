/** `nfct get`: one entry named by its tuple. */
import type { GetOptions } from '../../../lib';
import { helpText, parse } from '../common/args';
import { TUPLE_HELP, TUPLE_OPTIONS, keyFromValues } from '../common/entry';
import { EXIT_FAILURE, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { parseOutput } from '../common/output';
import { printFlows } from '../common/print';

const HELP = helpText('nfct get -p PROTO --src A --dst B [--sport P --dport P] [options]', `Show one entry.

${TUPLE_HELP}  --zero-counters               read the packet and byte counters and zero them
`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...TUPLE_OPTIONS, 'zero-counters': { type: 'boolean' } });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const { key, direction } = keyFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      const opts: GetOptions = {};
      if (direction === 'reply') opts.direction = 'reply';
      if (values['zero-counters']) opts.zeroCounters = true;
      try {
        const flow = await ct.get(key, opts);
        await printFlows([flow], output === 'json' ? 'ndjson' : output);
        return 0;
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') {
          reportError(err);
          return EXIT_FAILURE;
        }
        throw err;
      }
    });
  } catch (err) {
    return reportError(err);
  }
}
