/** `nfct stats`: per-CPU and global statistics (ct.stats()). */
import { helpText, parse } from '../common/args';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { formatTable, palette, parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct stats', 'Per-CPU conntrack counters, their totals, the entry count and the table limit.\n');

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {});
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    return await withHandle(values.netns as string | undefined, async (ct) => {
      const s = await ct.stats();
      if (output === 'json') process.stdout.write(toJson(s, 2) + '\n');
      else if (output === 'ndjson') process.stdout.write(toJson(s) + '\n');
      else {
        const keys = Object.keys(s.total);
        const rows = [...s.perCpu.map((c) => [String(c.cpu), ...keys.map((k) => String((c as unknown as Record<string, number>)[k] ?? ''))]),
          ['total', ...keys.map((k) => String((s.total as unknown as Record<string, number>)[k] ?? ''))]];
        for (const l of formatTable(['CPU', ...keys], rows, palette())) process.stdout.write(l + '\n');
        process.stdout.write(`entries ${s.count}, max ${s.max}\n`);
      }
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
