/** `nfct expect list|get|create|delete|flush|events`: the expectation table. */
import type { Conntrack } from '../../../lib';
import { helpText, parse, parseFamily, parseProto, parseUint, Values } from '../common/args';
import { formatExpectation } from '../common/conntrack-format';
import { UsageError, reportError } from '../common/errors';
import { withHandle } from '../common/handle';
import { LineWriter, formatTable, palette, parseOutput, toJson } from '../common/output';

const HELP = helpText('nfct expect list|get|create|delete|flush|events [options]', `The expectation table.

  list [--family F] [--proto P] [--helper NAME]
  get    --proto P --src A --dst B [--sport P] --dport P        (the expected tuple)
  delete --proto P --src A --dst B [--sport P] --dport P
  create --proto P --master-src A --master-dst B --master-sport P --master-dport P
         --src A --dst B [--sport P] --dport P [--mask-src M] [--timeout S]
         (the master must have a helper, e.g. one made with nfct create --helper ftp)
  flush [--helper NAME]
  events [--count N]
  --zone Z names the conntrack zone of the tuple (and of the master, for create).`);

const OPTS = {
  family: { type: 'string' }, proto: { type: 'string', short: 'p' }, helper: { type: 'string' },
  src: { type: 'string' }, dst: { type: 'string' }, sport: { type: 'string' }, dport: { type: 'string' },
  'master-src': { type: 'string' }, 'master-dst': { type: 'string' }, 'master-sport': { type: 'string' }, 'master-dport': { type: 'string' },
  'mask-src': { type: 'string' }, timeout: { type: 'string', short: 't' }, count: { type: 'string' }, zone: { type: 'string' },
} as const;

function tuple(v: Values, prefix: '' | 'master-') {
  const s = (k: string) => v[`${prefix}${k}`] as string | undefined;
  if (!v.proto) throw new UsageError('--proto is required', 'proto');
  if (!s('src') || !s('dst')) throw new UsageError(`--${prefix}src and --${prefix}dst are required`, `${prefix}src`);
  const t: Record<string, unknown> = { proto: parseProto(v.proto as string), src: s('src'), dst: s('dst') };
  if (s('sport') !== undefined) t.sport = parseUint(s('sport')!, `${prefix}sport`, 65535);
  if (s('dport') !== undefined) t.dport = parseUint(s('dport')!, `${prefix}dport`, 65535);
  if (v.zone !== undefined) t.zone = parseUint(v.zone as string, 'zone', 65535);
  return t;
}

async function printExpectations(xs: Parameters<typeof formatExpectation>[0][], output: string): Promise<void> {
  const out = new LineWriter();
  if (output === 'json') await out.line(toJson(xs));
  else if (output === 'ndjson') for (const x of xs) await out.line(toJson(x));
  else if (output === 'conntrack') for (const x of xs) await out.line(formatExpectation(x));
  else {
    const rows = xs.map((x) => [String(x.tuple.proto), `${x.tuple.src}:${x.tuple.sport ?? 0} -> ${x.tuple.dst}:${x.tuple.dport ?? 0}`, `${x.master.src}:${x.master.sport} -> ${x.master.dst}:${x.master.dport}`, String(x.timeout), x.helper ?? '', x.flags.join(',')]);
    for (const l of formatTable(['PROTO', 'EXPECTED', 'MASTER', 'TIMEOUT', 'HELPER', 'FLAGS'], rows, palette())) await out.line(l);
  }
  await out.end();
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (!sub || sub === '--help' || sub === '-h') {
      process.stdout.write(HELP);
      return sub ? 0 : 2;
    }
    const { values } = parse(rest, OPTS as never);
    if (values.help) return void process.stdout.write(HELP), 0;
    const output = parseOutput(values.output as string | undefined, sub === 'events' && !process.stdout.isTTY ? 'ndjson' : 'table');
    const go = (fn: (ct: Conntrack) => Promise<number>) => withHandle(values.netns as string | undefined, fn);
    switch (sub) {
      case 'list':
        return await go(async (ct) => {
          const f: Record<string, unknown> = {};
          if (values.family) f.family = parseFamily(values.family as string);
          if (values.proto) f.proto = parseProto(values.proto as string);
          if (values.helper) f.helper = values.helper;
          await printExpectations(await ct.expectations.list(f), output);
          return 0;
        });
      case 'get':
        return await go(async (ct) => {
          await printExpectations([await ct.expectations.get(tuple(values, '') as never)], output === 'json' ? 'ndjson' : output);
          return 0;
        });
      case 'delete':
        return await go(async (ct) => {
          await ct.expectations.delete(tuple(values, '') as never);
          return 0;
        });
      case 'flush':
        return await go(async (ct) => {
          await ct.expectations.flush(values.helper ? { helper: values.helper as string } : undefined);
          return 0;
        });
      case 'create':
        return await go(async (ct) => {
          const m = tuple(values, 'master-');
          const t = tuple(values, '');
          const spec: Record<string, unknown> = { master: { proto: m.proto, orig: m, ...(m.zone !== undefined ? { zone: m.zone } : {}) }, tuple: t };
          if (values['mask-src']) spec.mask = { src: values['mask-src'] };
          if (values.timeout) spec.timeout = parseUint(values.timeout as string, 'timeout', 0xffffffff);
          await ct.expectations.create(spec as never);
          return 0;
        });
      case 'events':
        return await go(async (ct) => {
          const max = values.count !== undefined ? parseUint(values.count as string, 'count', Number.MAX_SAFE_INTEGER) : Infinity;
          const stream = ct.expectations.events();
          const stop = () => void (stream as unknown as { close(): unknown }).close();
          process.once('SIGINT', stop);
          const out = new LineWriter();
          let n = 0;
          try {
            for await (const ev of stream as AsyncIterable<{ type: 'new' | 'update' | 'destroy'; expectation: Parameters<typeof formatExpectation>[0] }>) {
              await out.line(output === 'conntrack' || output === 'table' ? formatExpectation(ev.expectation, ev.type) : toJson(ev));
              await out.flush();
              if (++n >= max) break;
            }
          } finally {
            process.off('SIGINT', stop);
            await out.end();
          }
          return 0;
        });
      default:
        throw new UsageError(`unknown expect command ${JSON.stringify(sub)}; use list, get, create, delete, flush or events`);
    }
  } catch (err) {
    return reportError(err);
  }
}
