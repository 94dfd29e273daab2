/** `nfct flush [filters]`: the kernel's flush (whole table, or by mark); other filters delete matching entries. */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';

const HELP = helpText('nfct flush [filters]', `Delete every entry (or every matching entry). Without filters, or with only --mark,
one kernel request does it.

${FILTER_HELP}`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, FILTER_OPTIONS);
    if (values.help) return void process.stdout.write(HELP), 0;
    const filter = filterFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      await ct.flush(Object.keys(filter).length ? filter : undefined);
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
