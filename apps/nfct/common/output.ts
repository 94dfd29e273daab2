/**
 * Output: table | json | ndjson | conntrack. JSON is the objects exactly as the library
 * returns them, with bigints as decimal strings. Colour only on a terminal, never when
 * NO_COLOR is set (https://no-color.org). Output is written in large chunks with
 * backpressure, so printing 200,000 flows costs little beyond formatting them.
 */
import type { Writable } from 'stream';
import type { Flow } from '../../../lib';
import { UsageError } from './errors';

export type OutputFormat = 'table' | 'json' | 'ndjson' | 'conntrack';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'json', 'ndjson', 'conntrack'];

export function parseOutput(value: string | undefined, fallback: OutputFormat): OutputFormat {
  if (value === undefined) return fallback;
  if ((OUTPUT_FORMATS as readonly string[]).includes(value)) return value as OutputFormat;
  throw new UsageError(`--output: unknown format ${JSON.stringify(value)}; use one of ${OUTPUT_FORMATS.join(', ')}`, 'output');
}

/** JSON.stringify replacer: bigints become decimal strings. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

export function toJson(value: unknown, space?: number): string {
  return JSON.stringify(value, jsonReplacer, space);
}

/** True when colour may be used on this stream. */
export function useColor(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

export interface Palette {
  dim(s: string): string;
  bold(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  red(s: string): string;
  cyan(s: string): string;
}

const plain = (s: string): string => s;
const sgr = (code: string) => (s: string): string => `\x1b[${code}m${s}\x1b[0m`;
export const NO_COLOR_PALETTE: Palette = { dim: plain, bold: plain, green: plain, yellow: plain, red: plain, cyan: plain };
export const COLOR_PALETTE: Palette = { dim: sgr('2'), bold: sgr('1'), green: sgr('32'), yellow: sgr('33'), red: sgr('31'), cyan: sgr('36') };

export function palette(stream: { isTTY?: boolean } = process.stdout): Palette {
  return useColor(stream) ? COLOR_PALETTE : NO_COLOR_PALETTE;
}

/**
 * Buffers lines into a Buffer and writes it in chunks, waiting for 'drain' when the pipe is
 * full. Encoding each line straight into the chunk keeps no array of strings alive.
 */
export class LineWriter {
  private buf: Buffer;
  private used = 0;
  private broken = false;

  constructor(readonly stream: Writable = process.stdout, readonly chunk = 1 << 18) {
    this.buf = Buffer.allocUnsafe(chunk);
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (nfct list | head): stop writing, not an error of ours.
      if (err.code === 'EPIPE') this.broken = true;
    });
  }

  get closed(): boolean {
    return this.broken;
  }

  /** Adds a line (without its newline). Resolves at once unless the chunk was flushed into a full pipe. */
  line(s: string): Promise<void> | undefined {
    let wait: Promise<void> | undefined;
    const max = s.length * 3 + 1;
    if (this.used + max > this.buf.length) {
      wait = this.flush();
      if (max > this.buf.length) this.buf = Buffer.allocUnsafe(max);
    }
    this.used += this.buf.write(s, this.used);
    this.buf[this.used++] = 10;
    return wait;
  }

  /** Adds text that holds its own newlines, like line(). */
  text(s: string): Promise<void> | undefined {
    let wait: Promise<void> | undefined;
    const max = s.length * 3;
    if (this.used + max > this.buf.length) {
      wait = this.flush();
      if (max > this.buf.length) this.buf = Buffer.allocUnsafe(max);
    }
    this.used += this.buf.write(s, this.used);
    return wait;
  }

  flush(): Promise<void> | undefined {
    if (this.used === 0 || this.broken) {
      this.used = 0;
      return undefined;
    }
    const full = this.buf.subarray(0, this.used);
    this.buf = Buffer.allocUnsafe(this.chunk);
    this.used = 0;
    if (!this.stream.write(full)) {
      return new Promise((resolve) => {
        const done = () => {
          this.stream.off('drain', done);
          this.stream.off('error', done);
          this.stream.off('close', done);
          resolve();
        };
        this.stream.once('drain', done);
        this.stream.once('error', done);
        this.stream.once('close', done);
      });
    }
    return undefined;
  }

  /** Flushes and waits until everything written has been handed to the OS. */
  async end(): Promise<void> {
    await this.flush();
    if (this.broken) return;
    await new Promise<void>((resolve) => {
      if (this.stream.writableLength === 0) return resolve();
      this.stream.write('', () => resolve());
    });
  }
}

/** Aligned columns; the last column is not padded. */
export function formatTable(header: string[], rows: string[][], pal: Palette = NO_COLOR_PALETTE, color?: (col: number, cell: string) => string): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const pad = (cells: string[], colorize: boolean) =>
    cells
      .map((c, i) => {
        const text = i === cells.length - 1 ? c : c.padEnd(widths[i]);
        return colorize && color ? color(i, text) : text;
      })
      .join('  ')
      .trimEnd();
  return [pal.bold(pad(header, false)), ...rows.map((r) => pad(r, true))];
}

function endpoint(addr: string, port: number | undefined): string {
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === undefined ? a : `${a}:${port}`;
}

function tupleText(t: Flow['orig']): string {
  if (t.icmp) return `${t.src} -> ${t.dst} type=${t.icmp.type} code=${t.icmp.code} id=${t.icmp.id}`;
  return `${endpoint(t.src, t.sport)} -> ${endpoint(t.dst, t.dport)}`;
}

export const FLOW_TABLE_HEADER = ['PROTO', 'ORIGINAL', 'REPLY', 'STATE', 'TIMEOUT', 'MARK', 'ZONE', 'STATUS', 'PACKETS', 'BYTES'];

export function flowRow(f: Flow): string[] {
  const c = f.counters;
  return [
    `${f.family === 'ipv6' ? '6' : '4'}/${f.proto}`,
    tupleText(f.orig),
    tupleText(f.reply),
    f.state ?? '',
    f.timeout === undefined ? '' : String(f.timeout),
    String(f.mark ?? 0),
    String(f.zone ?? 0),
    (f.status ?? []).filter((s) => s !== 'CONFIRMED').join(','),
    c ? `${c.orig.packets}/${c.reply.packets}` : '',
    c ? `${c.orig.bytes}/${c.reply.bytes}` : '',
  ];
}

export function flowTable(flows: Flow[], pal: Palette): string[] {
  return formatTable(FLOW_TABLE_HEADER, flows.map(flowRow), pal, (col, cell) => {
    if (col === 3) return cell.trim() === 'ESTABLISHED' ? pal.green(cell) : cell.trim() ? pal.yellow(cell) : cell;
    if (col === 0) return pal.cyan(cell);
    return cell;
  });
}
