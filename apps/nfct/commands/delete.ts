/** `nfct delete [filters]`: deletes every matching entry (deleteMatching); prints how many. */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { UsageError, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct delete FILTERS [--all]', `Delete every entry that matches the filters. Without filters, --all is needed
(or use nfct flush). Entries that vanish meanwhile are not counted.

${FILTER_HELP}  --all                         allow deleting everything
  --exact                       exact count for mark-only filters (kernel flush)
`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, all: { type: 'boolean' }, exact: { type: 'boolean' } });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const filter = filterFromValues(values);
    if (!Object.keys(filter).length && !values.all) throw new UsageError('no filter given: add filters, or --all to delete every entry', 'filter');
    return await withHandle(values.netns as string | undefined, async (ct) => {
      const n = await ct.deleteMatching(filter, undefined, values.exact ? { exact: true } : undefined);
      process.stdout.write(output === 'table' || output === 'conntrack' ? `${n} entries deleted\n` : toJson({ deleted: n }) + '\n');
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
