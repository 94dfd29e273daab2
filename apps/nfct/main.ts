#!/usr/bin/env node
/**
 * The `nfct` command line. Two spellings of the same commands: subcommands
 * (`nfct list --proto tcp`) and the conntrack CLI's own options (`nfct -L -p tcp`).
 * Command modules are required only when used, so `nfct --version` loads nothing
 * but this file (and no native addon).
 */
import { COMMANDS, readVersion, usage } from './common/commands';

export async function main(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    if (first === 'help' && argv[1] && COMMANDS[argv[1]]) return dispatch(argv[1], ['--help']);
    process.stdout.write(usage());
    return first === undefined ? 2 : 0;
  }
  if (first === '--version' || first === 'version') {
    process.stdout.write(`nfct v${readVersion()} (conntrack for Node.js)\n`);
    return 0;
  }
  if (first.startsWith('-')) {
    // conntrack-tools spelling: nfct -L -p tcp, nfct -D -s 10.0.0.1 ...
    const mod = require('./commands/conntrack') as { run(argv: string[]): Promise<number> };
    return mod.run(argv);
  }
  if (!COMMANDS[first]) {
    process.stderr.write(`nfct: unknown command ${JSON.stringify(first)}; run \`nfct --help\` for the list\n`);
    return 2;
  }
  return dispatch(first, argv.slice(1));
}

async function dispatch(name: string, rest: string[]): Promise<number> {
  let mod: { run(argv: string[]): Promise<number> };
  try {
    mod = require(COMMANDS[name].module);
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'MODULE_NOT_FOUND' && e.message?.includes(COMMANDS[name].module.slice(2))) {
      process.stderr.write(`nfct: the ${name} command is not part of this build\n`);
      return 2;
    }
    throw err;
  }
  return mod.run(rest);
}

if (require.main === module) {
  // A reader that goes away (nfct list | head) ends the output, not in a crash.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      // Commands report their own errors; this is the last line of defence.
      const { reportError } = require('./common/errors') as typeof import('./common/errors');
      process.exitCode = reportError(err);
    },
  );
}
