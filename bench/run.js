'use strict';
/**
 * Runs every bench/*.bench.js in turn, each standalone in its own node process (with
 * --expose-gc so benches can measure memory), and prints their tables as they come.
 * Usage: node bench/run.js [filter]   (npm run bench builds first)
 */
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const only = process.argv[2];
const files = fs
  .readdirSync(__dirname)
  .filter((f) => f.endsWith('.bench.js') && (!only || f.includes(only)))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f} ===`);
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, f)], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${f} failed (exit ${r.status ?? r.signal})`);
  }
}
console.log(`\n${files.length - failed}/${files.length} benchmarks completed`);
process.exit(failed ? 1 : 0);
