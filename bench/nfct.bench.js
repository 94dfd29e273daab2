'use strict';
/**
 * nfct benchmark (lightweight): a namespace with 200,000 real flows, then, interleaved round
 * by round, `conntrack -L > /dev/null` and `nfct -L > /dev/null` (the same text), plus the
 * cold start of `nfct --version` (a fresh node process each time).
 * Usage: node bench/nfct.bench.js [flows=200000] [rounds=3]   (after `npm run build`)
 */
const path = require('path');
const { execFileSync } = require('child_process');
const { sandbox, timed, fillUdp, since, printTable, machine } = require('./lib');

const FLOWS = Number(process.argv[2] ?? 200000);
const ROUNDS = Number(process.argv[3] ?? 3);
const NFCT = path.join(__dirname, '../dist/apps/nfct/main.js');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const ns = await sandbox();
  try {
    const t0 = process.hrtime.bigint();
    const count = await fillUdp(ns, FLOWS);
    console.log(`${machine()}\nfilled ${count} flows in ${since(t0).toFixed(2)} s`);
    const times = { cli: [], nfct: [] };
    for (let r = 0; r < ROUNDS; r++) {
      times.cli.push(await timed(ns, 'sh', ['-c', 'conntrack -L >/dev/null 2>&1']));
      times.nfct.push(await timed(ns, 'sh', ['-c', `${process.execPath} ${NFCT} -L >/dev/null 2>&1`]));
    }
    // Same lines from both (a check that the bench compares like with like).
    const strip = (s) => s.split('\n').map((l) => l.replace(/^(\S+\s+\d+ )\d+ /, '$1T ')).sort().join('\n');
    const a = (await ns.sh('conntrack -L 2>/dev/null | head -1000')).stdout;
    const b = (await ns.sh(`${process.execPath} ${NFCT} -L 2>/dev/null | head -1000`)).stdout;
    if (strip(a).split('\n').length !== strip(b).split('\n').length) throw new Error('conntrack -L and nfct -L printed different line counts');
    // Interleaved with a bare `node -e 0`: most of a cold start is Node's own.
    const version = [];
    const bare = [];
    for (let i = 0; i < 10; i++) {
      let t = process.hrtime.bigint();
      execFileSync(process.execPath, [NFCT, '--version']);
      version.push(since(t));
      t = process.hrtime.bigint();
      execFileSync(process.execPath, ['-e', '0']);
      bare.push(since(t));
    }
    const best = (xs) => Math.min(...xs);
    printTable(`nfct -L vs conntrack -L (${count} flows, ${ROUNDS} rounds)`, ['method', 'best s', 'median s', 'flows/s (best)', 'ratio to conntrack -L (best)'], [
      ['conntrack -L > /dev/null', best(times.cli).toFixed(3), median(times.cli).toFixed(3), `${Math.round(count / best(times.cli) / 1000)}k`, '1.00'],
      ['nfct -L > /dev/null', best(times.nfct).toFixed(3), median(times.nfct).toFixed(3), `${Math.round(count / best(times.nfct) / 1000)}k`, (best(times.cli) / best(times.nfct)).toFixed(2)],
    ]);
    printTable('cold start', ['command', 'best ms', 'median ms'], [
      ['nfct --version', (best(version) * 1000).toFixed(0), (median(version) * 1000).toFixed(0)],
      ['node -e 0', (best(bare) * 1000).toFixed(0), (median(bare) * 1000).toFixed(0)],
    ]);
  } finally {
    await ns.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
