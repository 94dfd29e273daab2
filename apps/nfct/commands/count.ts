/** `nfct count [filters]`: how many entries (the kernel's count without filters). */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct count [filters]', `Count entries.

${FILTER_HELP}`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, FILTER_OPTIONS);
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const filter = filterFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      let n = 0;
      if (Object.keys(filter).length) for await (const _ of ct.dump(filter)) n++;
      else n = (await ct.stats()).count;
      process.stdout.write(output === 'json' || output === 'ndjson' ? toJson({ count: n }) + '\n' : `${n}\n`);
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
