/** Prints a stream of flows in one of the output formats. */
import type { Flow } from '../../../lib';
import { formatFlow } from './conntrack-format';
import { LineWriter, OutputFormat, flowTable, palette, toJson } from './output';

/** Writes the flows; resolves with how many were printed. */
export async function printFlows(flows: AsyncIterable<Flow> | Iterable<Flow>, format: OutputFormat, out = new LineWriter()): Promise<number> {
  let n = 0;
  if (format === 'table') {
    const all: Flow[] = [];
    for await (const f of flows) all.push(f);
    for (const line of flowTable(all, palette(out.stream as { isTTY?: boolean }))) await out.line(line);
    n = all.length;
  } else if (format === 'json') {
    // One flow per line inside the array: valid JSON, and streamable.
    let first = true;
    for await (const f of flows) {
      const p = out.line((first ? '[' : ',') + toJson(f));
      if (p) await p;
      first = false;
      n++;
    }
    await out.line(first ? '[]' : ']');
  } else {
    const line = format === 'ndjson' ? (f: Flow) => toJson(f) : (f: Flow) => formatFlow(f);
    for await (const f of flows) {
      const p = out.line(line(f));
      if (p) await p;
      n++;
    }
  }
  await out.end();
  return n;
}
