/** `nfct events [filters]`: the event stream; ndjson (one event per line) unless on a terminal. */
import { FILTER_HELP, FILTER_OPTIONS, filterFromValues, helpText, parse, parseUint } from '../common/args';
import { formatEvent } from '../common/conntrack-format';
import { UsageError, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { LineWriter, palette, parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct events [--types new,update,destroy] [filters] [--count N] [--duration S] [--buffer-size BYTES]', `Stream conntrack events until interrupted (or --count/--duration).
Output: ndjson ({"type","flow","timestamp"} per line, and "portId" when a program caused
the event over ctnetlink) by default when not on a terminal;
conntrack prints the lines conntrack -E prints; table a short line per event.
Lost events are reported on stderr.

  --types LIST                  new, update, destroy (default: all)
  --count N                     stop after N events
  --duration SECONDS            stop after this long
  --buffer-size BYTES           socket receive buffer to ask for

${FILTER_HELP}`);

export async function run(argv: string[]): Promise<number> {
  try {
    const { values } = parse(argv, { ...FILTER_OPTIONS, types: { type: 'string' }, count: { type: 'string' }, duration: { type: 'string' }, 'buffer-size': { type: 'string' } });
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, process.stdout.isTTY ? 'table' : 'ndjson');
    const filter = filterFromValues(values);
    const types = values.types ? (values.types as string).split(',').map((t) => t.trim().toLowerCase()) : undefined;
    for (const t of types ?? []) if (!['new', 'update', 'destroy'].includes(t)) throw new UsageError(`--types: unknown event type ${JSON.stringify(t)}; use new, update, destroy`, 'types');
    const max = values.count !== undefined ? parseUint(values.count as string, 'count', Number.MAX_SAFE_INTEGER) : Infinity;
    const duration = values.duration !== undefined ? parseUint(values.duration as string, 'duration', 86400 * 365) : undefined;
    return await withHandle(values.netns as string | undefined, async (ct) => {
      const stream = ct.events({
        ...(types ? { types: types as ('new' | 'update' | 'destroy')[] } : {}),
        ...(Object.keys(filter).length ? { filter } : {}),
        ...(values['buffer-size'] ? { receiveBufferSize: parseUint(values['buffer-size'] as string, 'buffer-size', 2 ** 31) } : {}),
      });
      const s = stream as unknown as { on(e: string, f: (i: { delta: number; lost: number }) => void): void; close(): unknown };
      s.on('lost', (i) => process.stderr.write(`nfct: ${i.delta} events lost (${i.lost} in total); raise --buffer-size\n`));
      const stop = () => void s.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const timer = duration !== undefined ? setTimeout(stop, duration * 1000) : undefined;
      const out = new LineWriter();
      const pal = palette();
      let n = 0;
      try {
        if (max > 0) {
          for await (const ev of stream) {
            let line: string;
            if (output === 'ndjson' || output === 'json') line = toJson(ev);
            else if (output === 'conntrack') line = formatEvent(ev);
            else line = `${(ev.type === 'destroy' ? pal.red : ev.type === 'new' ? pal.green : pal.yellow)(ev.type.toUpperCase().padEnd(7))} ${formatEvent(ev).replace(/^ *\[[A-Z]+\] /, '')}`;
            await out.line(line);
            await out.flush();
            if (++n >= max) break;
          }
        }
      } finally {
        if (timer) clearTimeout(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await out.end();
      }
      return 0;
    });
  } catch (err) {
    return reportError(err);
  }
}
