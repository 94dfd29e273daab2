/** `nfct create`: a new entry (or, with --upsert, create or update). */
import { helpText, parse } from '../common/args';
import { TUPLE_HELP, TUPLE_OPTIONS, createSpecFromValues } from '../common/entry';
import { reportError } from '../common/errors';
import { withHandle } from '../common/handle';

const HELP = helpText('nfct create -p PROTO --src A --dst B [--sport P --dport P] --timeout S [options]', `Create an entry.

${TUPLE_HELP}
Values:
  -t, --timeout SECONDS         required
  --mark N, --status FLAG[,FLAG], --state NAME, --label BIT (repeatable), --helper NAME
  --snat ADDR[:PORT], --dnat ADDR[:PORT]   NAT mapping (the kernel rewrites the reply tuple)
  --upsert                      update the entry when it exists (ct.upsert)
`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, {
      ...TUPLE_OPTIONS, timeout: { type: 'string', short: 't' }, mark: { type: 'string' }, status: { type: 'string' },
      state: { type: 'string' }, label: { type: 'string', multiple: true }, helper: { type: 'string' },
      snat: { type: 'string' }, dnat: { type: 'string' }, upsert: { type: 'boolean' },
    });
    if (values.help) return void process.stdout.write(HELP), 0;
    const spec = createSpecFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      if (values.upsert) await ct.upsert(spec);
      else await ct.create(spec);
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
