/**
 * The package as a user loads it: by name, from CommonJS and from an ES module (through
 * package.json "exports"), with the API the design names. Uses the built dist/.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
}

describe('package entry points', () => {
  test('require("conntrack") gives the public API', () => {
    const out = node(['-e', "const c = require('conntrack'); console.log(JSON.stringify([typeof c.Conntrack.open, typeof c.readProcStats, typeof c.ConntrackError, c.constants.CTA_MARK]))"]);
    expect(JSON.parse(out)).toEqual(['function', 'function', 'function', 8]);
  });

  test('import { Conntrack } from "conntrack" works from an ES module', () => {
    const out = node([
      '--input-type=module',
      '-e',
      "import { Conntrack, readProcStats, ConntrackError } from 'conntrack'; console.log(JSON.stringify([typeof Conntrack.open, typeof readProcStats, new ConntrackError('ERR_INVALID_ARGUMENT', 'x').code]))",
    ]);
    expect(JSON.parse(out)).toEqual(['function', 'function', 'ERR_INVALID_ARGUMENT']);
  });

  test('type declarations are emitted for the entry point', () => {
    const out = node(['-e', "console.log(require('fs').readFileSync('dist/lib/index.d.ts', 'utf8'))"]);
    expect(out).toMatch(/Conntrack/);
    expect(out).toMatch(/readProcStats/);
  });
});
