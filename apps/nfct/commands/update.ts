/** `nfct update [filters] CHANGES`: changes every matching entry; prints how many. */
import type { Conntrack, Flow, FlowFilter, UpdateSpec } from '../../../lib';
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse } from '../common/args';
import { CHANGE_HELP, CHANGE_OPTIONS, changesFromValues } from '../common/entry';
import { UsageError, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct update [filters] CHANGES', `Change every entry that matches the filters (all entries without filters).

${CHANGE_HELP}
${FILTER_HELP}`);

/** ct.updateMatching(filter, changes) when the library has it; else list and update each. */
async function updateMatching(ct: Conntrack, filter: FlowFilter, changes: Partial<UpdateSpec>): Promise<number> {
  const c = ct as unknown as { updateMatching?: (f: FlowFilter, ch: Partial<UpdateSpec>) => Promise<number> };
  if (typeof c.updateMatching === 'function') return c.updateMatching(filter, changes);
  const flows: Flow[] = await ct.list(filter);
  const done = await Promise.all(flows.map((f) => ct.update({ proto: f.proto, orig: f.orig, zone: f.zone, id: f.id, ...changes } as UpdateSpec).then(
    () => 1,
    (err) => {
      if ((err as { code?: string }).code === 'ENOENT') return 0; // vanished meanwhile
      throw err;
    },
  )));
  return done.reduce<number>((a, b) => a + b, 0);
}

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, ...CHANGE_OPTIONS });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, 'table');
    const changes = changesFromValues(values);
    if (!Object.keys(changes).length) throw new UsageError('nothing to change: give --timeout, --set-mark, --set-status, --set-state or --set-label', 'changes');
    const filter = filterFromValues(values);
    return await withHandle(values.netns as string | undefined, async (ct) => {
      const n = await updateMatching(ct, filter, changes);
      process.stdout.write(output === 'table' || output === 'conntrack' ? `${n} entries updated\n` : toJson({ updated: n }) + '\n');
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
