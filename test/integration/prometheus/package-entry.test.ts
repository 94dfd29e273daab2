/**
 * `conntrack/prometheus` as a user loads it, through package.json "exports" (built dist/),
 * and the main entry without prom-client loaded (it is an optional peer dependency).
 */
import { execFileSync } from 'child_process';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..', '..');
const node = (args: string[]): string => execFileSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 60000 });

describe('conntrack/prometheus entry point', () => {
  test('require and import resolve it, with its types', () => {
    const cjs = node(['-e', "const p = require('conntrack/prometheus'); console.log(JSON.stringify([typeof p.registerMetrics, typeof p.startExporter]))"]);
    expect(JSON.parse(cjs)).toEqual(['function', 'function']);
    const esm = node(['--input-type=module', '-e', "import { registerMetrics } from 'conntrack/prometheus'; console.log(typeof registerMetrics)"]);
    expect(esm.trim()).toBe('function');
    const dts = node(['-e', "console.log(require('fs').readFileSync(require('path').join(require('path').dirname(require.resolve('conntrack/prometheus')), 'index.d.ts'), 'utf8'))"]);
    expect(dts).toMatch(/registerMetrics/);
    const pkg = JSON.parse(node(['-e', "console.log(JSON.stringify(require('conntrack/package.json')))"]));
    expect(pkg.exports['./prometheus'].types).toBe('./dist/apps/prometheus/index.d.ts');
    expect(pkg.peerDependenciesMeta['prom-client']).toEqual({ optional: true });
  });

  test('the main entry does not load prom-client', () => {
    const out = node(['-e', "require('conntrack'); console.log(Object.keys(require.cache).some((k) => k.includes('prom-client')))"]);
    expect(out.trim()).toBe('false');
  });
});
