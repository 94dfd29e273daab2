/** `nfct list [filters]`: the table (or the matching part) in the chosen format. */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { printFlows } from '../common/print';
import { parseOutput } from '../common/output';

const HELP = helpText('nfct list [filters] [--output table|json|ndjson|conntrack]', `List the flows of the conntrack table.
With --output json the result is the array ct.list() returns (bigints as strings).

${FILTER_HELP}  --zero-counters               read the packet and byte counters and zero them
                                (conntrack -L -z; with any filter, only the matches)
`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, 'zero-counters': { type: 'boolean' } });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
    const output = parseOutput(values.output as string | undefined, 'table');
    const filter = filterFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      // dump() zeroes as the kernel dumps (family and mark filters only); list() any filter.
      await printFlows(values['zero-counters'] ? await ct.list(filter, { zeroCounters: true }) : ct.dump(filter), output);
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
