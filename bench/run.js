'use strict';
/**
 * Runs every bench/*.bench.js in turn, each standalone in its own node process (with
 * --expose-gc so benches can measure memory), and prints their tables as they come.
 * Usage: node bench/run.js [filter [bench arguments...]]   (npm run bench builds first)
 *   node bench/run.js dump             only dump.bench.js (200k, then 1M as real root)
 *   node bench/run.js dump 1000000     dump.bench.js with its own arguments
 */
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const only = process.argv[2];
const args = process.argv.slice(3);
const files = fs
  .readdirSync(__dirname)
  .filter((f) => f.endsWith('.bench.js') && (!only || f.includes(only)))
  .sort();
let failed = 0;
for (const f of files) {
  console.log(`\n=== ${f} ===`);
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, f), ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    failed++;
    console.log(`${f} failed (exit ${r.status ?? r.signal})`);
  }
}
console.log(`\n${files.length - failed}/${files.length} benchmarks completed`);
process.exit(failed ? 1 : 0);
