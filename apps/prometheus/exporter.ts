/**
 * The exporter: an HTTP server (node:http) that serves /metrics for one network namespace
 * or several, and /healthz.
 *
 * /metrics answers in the Prometheus text format, or in OpenMetrics when the Accept header
 * asks for `application/openmetrics-text` (as Prometheus itself does). Each namespace has
 * one Conntrack handle and one set of collectors feeding two registries, one per format.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import type { AddressInfo } from 'net';
import type { OpenMetricsContentType, Registry } from 'prom-client';
import { Conntrack, ConntrackError } from '../../lib';
import { MetricsHandle, registerMetrics } from './metrics';

export interface ExporterOptions {
  /** Address to listen on (default '127.0.0.1'; '::' or '0.0.0.0' for every interface). */
  host?: string;
  /** Port (default 9940; 0 picks a free one). */
  port?: number;
  /**
   * Namespaces to export, named like `Conntrack.open({ netns })`: a name under
   * /var/run/netns, a path, or a pid. Empty or absent: the exporter's own namespace. When
   * given, every series carries a `netns` label with the name as written here.
   */
  netns?: (string | number)[];
  /** Prefix of the package's own metrics (default `conntrack_`). */
  prefix?: string;
}

export interface Exporter {
  /** The server (already listening). */
  readonly server: Server;
  /** Where it listens. */
  readonly address: { host: string; port: number };
  /** `http://HOST:PORT/metrics`. */
  readonly url: string;
  /** Stops accepting, ends open connections, closes every handle. */
  close(): Promise<void>;
}

export const DEFAULT_PORT = 9940;

interface Target {
  name: string | undefined;
  ct: Conntrack;
  metrics: MetricsHandle;
}

/** Whether the Accept header prefers OpenMetrics over the Prometheus text format. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  let best = { om: -1, text: -1 };
  for (const part of accept.split(',')) {
    const [type, ...params] = part.trim().split(';').map((x) => x.trim());
    const qp = params.find((p) => p.startsWith('q='));
    const q = qp ? Number(qp.slice(2)) : 1;
    if (!Number.isFinite(q) || q <= 0) continue;
    if (type === 'application/openmetrics-text') best = { ...best, om: Math.max(best.om, q) };
    else if (type === 'text/plain' || type === '*/*' || type === 'text/*') best = { ...best, text: Math.max(best.text, q) };
  }
  return best.om > 0 && best.om >= best.text;
}

const EXPORTER_KEYS: readonly string[] = ['host', 'port', 'netns', 'prefix'];

/**
 * Opens a handle per namespace, registers the metrics and starts the HTTP server. Rejects
 * (closing what it opened) when a namespace cannot be opened or the address is taken.
 */
export async function startExporter(options: ExporterOptions = {}): Promise<Exporter> {
  if (options === null || typeof options !== 'object') throw new ConntrackError('ERR_INVALID_ARGUMENT', 'options: must be an object', { field: 'options' });
  for (const k of Object.keys(options)) {
    if (!EXPORTER_KEYS.includes(k)) throw new ConntrackError('ERR_INVALID_ARGUMENT', `options.${k}: unknown key; startExporter() takes ${EXPORTER_KEYS.join(', ')}`, { field: `options.${k}` });
  }
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConntrackError('ERR_INVALID_ARGUMENT', `port: must be an integer 0-65535, got ${port}`, { field: 'port' });
  const names = options.netns ?? [];
  if (new Set(names.map(String)).size !== names.length) throw new ConntrackError('ERR_INVALID_ARGUMENT', 'netns: the same namespace is named twice', { field: 'netns' });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const prom: typeof import('prom-client') = require('prom-client');
  const text: Registry = new prom.Registry();
  const om = new prom.Registry<OpenMetricsContentType>();
  om.setContentType(prom.Registry.OPENMETRICS_CONTENT_TYPE);

  const targets: Target[] = [];
  const closeTargets = async (): Promise<void> => {
    for (const t of targets.splice(0)) {
      t.metrics.close();
      await t.ct.close();
    }
  };
  try {
    for (const name of names.length ? names : [undefined]) {
      const ct = await Conntrack.open(name === undefined ? {} : { netns: name });
      try {
        const metrics = registerMetrics(ct, {
          registry: [text, om],
          labels: name === undefined ? {} : { netns: String(name) },
          ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
        });
        targets.push({ name: name === undefined ? undefined : String(name), ct, metrics });
      } catch (err) {
        await ct.close();
        throw err;
      }
    }
  } catch (err) {
    await closeTargets();
    throw err;
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`collection failed: ${err.message}\n`);
    });
  });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('use GET\n');
      return;
    }
    if (path === '/metrics') {
      const reg = wantsOpenMetrics(req.headers.accept) ? om : text;
      const body = await reg.metrics();
      res.writeHead(200, { 'content-type': reg.contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/healthz') {
      const bad = targets
        .map((t) => ({ t, h: t.metrics.health() }))
        .filter((x) => !x.h.ok)
        .map((x) => `${x.t.name ?? 'own namespace'}: ${x.h.reason}`);
      res.writeHead(bad.length ? 503 : 200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(bad.length ? `${bad.join('\n')}\n` : 'ok\n');
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><head><title>conntrack exporter</title></head><body><a href="/metrics">metrics</a> <a href="/healthz">healthz</a></body></html>\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: try /metrics or /healthz\n');
  };

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await closeTargets();
    const e = err as NodeJS.ErrnoException;
    throw new ConntrackError(e.code ?? 'ERR_LISTEN', `cannot listen on ${formatHostPort(host, port)}: ${e.message}`, { cause: err, syscall: 'listen' });
  }
  const addr = server.address() as AddressInfo;
  const address = { host, port: addr.port };
  let closing: Promise<void> | undefined;
  return {
    server,
    address,
    url: `http://${formatHostPort(host, addr.port)}/metrics`,
    close(): Promise<void> {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeIdleConnections();
          // Scrapes in flight get a moment to finish; connections still open then are cut.
          const t = setTimeout(() => server.closeAllConnections(), 2000);
          t.unref();
        });
        await closeTargets();
      })();
      return closing;
    },
  };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
