/** `nfct update [filters] CHANGES`: changes every matching entry; prints how many. */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { CHANGE_HELP, CHANGE_OPTIONS, changesFromValues } from '../common/entry';
import { UsageError, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct update [filters] CHANGES', `Change every entry that matches the filters (all entries without filters).

${CHANGE_HELP}
${FILTER_HELP}`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, ...CHANGE_OPTIONS });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const changes = changesFromValues(values);
    if (!Object.keys(changes).length) throw new UsageError('nothing to change: give --timeout, --set-mark, --set-status, --set-label or --unset-label', 'changes');
    const filter = filterFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      // Entries that already had the values are not counted, as conntrack -U counts.
      const n = await ct.updateMatching(filter, changes);
      process.stdout.write(output === 'table' || output === 'conntrack' ? `${n} entries updated\n` : toJson({ updated: n }) + '\n');
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
