/**
 * The command table. Kept free of imports of the library so that reading it (for
 * `--help` and `--version`) stays cheap. `module` is resolved relative to main.js.
 */
import { readFileSync } from 'fs';
import { join } from 'path';

export interface CommandInfo {
  module: string;
  summary: string;
}

export const COMMANDS: Record<string, CommandInfo> = {
  list: { module: './commands/list', summary: 'list flows (filters as options)' },
  get: { module: './commands/get', summary: 'show one flow named by its tuple' },
  create: { module: './commands/create', summary: 'create a flow' },
  update: { module: './commands/update', summary: 'change a flow (or every matching flow)' },
  delete: { module: './commands/delete', summary: 'delete one flow, or every matching flow' },
  flush: { module: './commands/flush', summary: 'delete every flow (or every matching flow)' },
  count: { module: './commands/count', summary: 'count flows (matching a filter)' },
  stats: { module: './commands/stats', summary: 'per-CPU and global conntrack statistics' },
  events: { module: './commands/events', summary: 'stream events (ndjson by default when piped)' },
  expect: { module: './commands/expect', summary: 'expectations: list|get|create|delete|flush|events' },
  watch: { module: './commands/watch', summary: 'print the table again every interval' },
  top: { module: './commands/top', summary: 'live full-screen view of the table' },
  sandbox: { module: './commands/sandbox', summary: 'a private namespace with real traffic, explained' },
  exporter: { module: './commands/exporter', summary: 'Prometheus exporter HTTP server' },
};

let version: string | undefined;

/** The package version, from the nearest package.json named "conntrack". */
export function readVersion(): string {
  if (version) return version;
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'conntrack' && pkg.version) return (version = pkg.version);
    } catch {
      /* not here */
    }
    dir = join(dir, '..');
  }
  return (version = 'unknown');
}

export function usage(): string {
  const names = Object.keys(COMMANDS);
  const w = Math.max(...names.map((n) => n.length));
  return [
    'Usage: nfct COMMAND [options]        (nfct COMMAND --help for its options)',
    '       nfct -L|-G|-D|-I|-U|-A|-E|-F|-C|-S [conntrack options]   (as conntrack-tools)',
    '',
    'Commands:',
    ...names.map((n) => `  ${n.padEnd(w)}  ${COMMANDS[n].summary}`),
    '',
    'Common options: --netns NAME|PATH|PID, --output table|json|ndjson|conntrack, --help',
    'Environment: NO_COLOR disables colour (colour is used only on a terminal).',
    '',
  ].join('\n');
}
