/**
 * `nfct exporter`: serves conntrack metrics for Prometheus over HTTP until SIGTERM or
 * SIGINT, then closes the server and every handle and exits 0.
 */
import { parseArgs } from 'util';
import { DEFAULT_PORT, startExporter } from '../../prometheus';
import { commandNetns } from '../common/handle';

export const USAGE = `Usage: nfct exporter [--listen HOST:PORT] [--netns NAME|PATH|PID]... [--prefix PREFIX]

Serves conntrack metrics for Prometheus: /metrics (Prometheus text, or OpenMetrics when
the scraper asks for it) and /healthz.

Options:
  --listen HOST:PORT   where to listen (default 127.0.0.1:${DEFAULT_PORT}; [::1]:PORT for IPv6,
                       0.0.0.0:PORT or [::]:PORT for every interface, port 0 for any free one)
  --netns NS           export this network namespace (a name under /var/run/netns, a path
                       such as /proc/PID/ns/net, or a pid); repeat for several. Each
                       series then carries netns="NS". Default: NFCT_NETNS if set, else
                       the exporter's own.
  --prefix PREFIX      prefix of the conntrack_* metrics (default conntrack_)
  -h, --help           show this help

Needs CAP_NET_ADMIN in each namespace (root, or inside \`unshare -Urn\`).`;

/** Parses HOST:PORT, [IPV6]:PORT or :PORT (every interface). */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.%\w]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value);
  if (!m) throw new Error(`--listen: expected HOST:PORT (e.g. 127.0.0.1:${DEFAULT_PORT} or [::1]:${DEFAULT_PORT}), got ${JSON.stringify(value)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--listen: port must be 0-65535, got ${port}`);
  const host = m[1] ?? (m[2] === '' ? '::' : m[2]);
  return { host, port };
}

export interface RunOptions {
  /** Stops the exporter like SIGTERM does (for embedding and tests). */
  signal?: AbortSignal;
  /** Where messages go (default process.stdout / process.stderr). */
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/** Runs the exporter until SIGTERM/SIGINT (or options.signal); resolves with the exit code. */
export async function run(argv: string[], options: RunOptions = {}): Promise<number> {
  const out = options.stdout ?? process.stdout;
  const err = options.stderr ?? process.stderr;
  let values: { listen?: string; netns?: string[]; prefix?: string; help?: boolean };
  let listen: { host: string; port: number };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        netns: { type: 'string', multiple: true },
        prefix: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
    if (values.help) {
      out.write(`${USAGE}\n`);
      return 0;
    }
    listen = parseListen(values.listen ?? `127.0.0.1:${DEFAULT_PORT}`);
    for (const n of values.netns ?? []) if (n === '') throw new Error('--netns: must not be empty (a name, a path or a pid)');
  } catch (e) {
    err.write(`nfct exporter: ${(e as Error).message}\n(see nfct exporter --help)\n`);
    return 2;
  }

  const fromEnv = commandNetns(undefined);
  const netns = values.netns?.length ? values.netns : fromEnv !== undefined ? [fromEnv] : undefined;
  let exporter;
  try {
    exporter = await startExporter({ host: listen.host, port: listen.port, netns, prefix: values.prefix });
  } catch (e) {
    err.write(`nfct exporter: ${(e as Error).message}\n`);
    return 1;
  }
  out.write(`nfct exporter: serving ${exporter.url} (${netns ? `namespaces ${netns.join(', ')}` : 'own namespace'})\n`);

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      options.signal?.removeEventListener('abort', stop);
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener('abort', stop, { once: true });
  });
  await exporter.close();
  out.write('nfct exporter: stopped\n');
  return 0;
}
