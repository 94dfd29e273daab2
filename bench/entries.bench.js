'use strict';
/**
 * Entries benchmark, in one namespace, round by round:
 *   - create N IPv4 UDP entries, update their mark, delete them: with the library
 *     (N concurrent promises on one Conntrack) and with bench/c/entries_floor.c (libmnl,
 *     same window of requests in flight, messages packed per sendmsg);
 *   - bulk delete of N entries by mark: deleteMatching() against `conntrack -D -m MARK`
 *     (and flush({ mark }), the kernel's own filtered flush, for reference), once for
 *     entries made without an event cache and once for entries made with one;
 *   - bulk update by filter: updateMatching({ family: 'ipv4', proto: 'udp' }, { mark })
 *     against `conntrack -U -f ipv4 -p udp -m MARK` and the C floor's update-matching mode
 *     (dump, and pipelined updates of each entry by its original tuple).
 * Prints ops/s and ratios.
 * Usage: node bench/entries.bench.js [entries=100000] [rounds=3] [only: update-matching | create]
 * `create` runs only the create and delete rows (C floor, createMany / deleteMany, 2048
 * outstanding), interleaved, with CPU time beside wall time (process.cpuUsage() for the library, getrusage() in C),
 * which a loaded machine disturbs less. BENCH_BASE=/path/to/other/dist/lib adds the same
 * rows for another build in the same process (A/B on the same machine state).
 */
const { sandbox, timed, compileC, since, printTable, machine } = require('./lib');

const N = Number(process.argv[2] ?? 100000);
const ROUNDS = Number(process.argv[3] ?? 3);
const ONLY = process.argv[4];
const CLI_N = 250; // the most entries conntrack 1.4.7 -U updates here before ENOBUFS
const os = require('os');
const WINDOW = 1024; // the library's window with the 8 MB receive buffer it gets as root

const key = (i) => ({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1 + (i % 60000), dport: 1000 + Math.floor(i / 60000) } });
/** Runs fn(0..n-1) with at most `limit` promises outstanding. */
async function pool(n, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const best = (xs) => Math.min(...xs);

async function main() {
  const floor = compileC('c/entries_floor.c', 'entries_floor');
  const ns = await sandbox();
  await ns.sh(`sysctl -q -w net.netfilter.nf_conntrack_max=${Math.max(262144, N * 2)} 2>/dev/null || true`);
  const ct = ns.ct;
  console.log(`${machine()}\n${N} entries, ${ROUNDS} rounds, window ${WINDOW}`);

  let floorCpu = 0;
  const runFloor = async (op, mark = 1) => {
    const [ok, errs, secs, cpu] = (await ns.run(floor, [op, String(N), String(WINDOW), String(mark)])).stdout.trim().split(' ').map(Number);
    if (ok !== N || errs !== 0) throw new Error(`floor ${op}: ${ok} ok, ${errs} errors`);
    floorCpu = cpu;
    return secs;
  };
  const count = async () => Number((await ns.sh('conntrack -C')).stdout.trim());

  if (ONLY === 'create') {
    await createOnly(ns, ct, runFloor, () => floorCpu, count);
    await ns.close();
    return;
  }

  const um = { floor: [], lib: [], cli: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // updateMatching: the table filled by the floor (mark 1), then every entry to another mark.
    await runFloor('create', 1);
    let [ok, errs, secs] = (await ns.run(floor, ['update-matching', '0', String(WINDOW), '7'])).stdout.trim().split(' ').map(Number);
    if (ok !== N || errs !== 0) throw new Error(`floor update-matching: ${ok} ok, ${errs} errors`);
    um.floor.push(secs);
    const t0 = process.hrtime.bigint();
    const changed = await ct.updateMatching({ family: 'ipv4', proto: 'udp' }, { mark: 8 });
    um.lib.push(since(t0));
    if (changed !== N) throw new Error(`updateMatching changed ${changed}`);
    // conntrack 1.4.7 -U stops with ENOBUFS after 256 updates here: it leaves a reply
    // unread on its update socket per entry until the default 208 KB buffer overflows. So
    // it is timed on CLI_N entries (what it completes) and its rate compared per entry.
    const full = await ns.run('conntrack', ['-U', '-f', 'ipv4', '-p', 'udp', '-m', '9'], { allowFailure: true });
    um.cliFull = `${full.code === 0 ? 'completed' : 'failed'}: ${full.stderr.trim().split('\n').pop()}`;
    await runFloor('delete');
    await ns.run(floor, ['create', String(CLI_N), String(WINDOW), '1']);
    um.cli.push(await timed(ns, 'sh', ['-c', 'conntrack -U -f ipv4 -p udp -m 9 >/dev/null 2>&1']) * (N / CLI_N));
    if ((await ct.list({ mark: 9 })).length !== CLI_N) throw new Error('conntrack -U did not change every entry');
    await ct.flush();
  }
  const umRows = (ops) => [
    ['C floor (dump + pipelined updates)', best(um.floor).toFixed(3), ops(best(um.floor)), '1.00x'],
    ["updateMatching({ family: 'ipv4', proto: 'udp' }, { mark })", best(um.lib).toFixed(3), ops(best(um.lib)), (best(um.floor) / best(um.lib)).toFixed(2) + 'x'],
    [`conntrack -U -f ipv4 -p udp -m MARK (timed on ${CLI_N}, scaled)`, best(um.cli).toFixed(3), ops(best(um.cli)), (best(um.floor) / best(um.cli)).toFixed(2) + 'x'],
  ];
  const umNote = () => console.log(`conntrack -U on all ${N} entries ${um.cliFull}`);
  if (ONLY === 'update-matching') {
    printTable(`bulk update of ${N} entries by filter (best of ${ROUNDS}; ratio = method / C floor)`, ['method', 'seconds', 'entries/s', 'vs floor'], umRows((x) => Math.round(N / x).toLocaleString('en-US')));
    umNote();
    console.log(`\ntarget: updateMatching >= 0.7x floor ${best(um.floor) / best(um.lib) >= 0.7 ? 'met' : 'MISSED'}`);
    await ns.close();
    return;
  }

  const t = { cCreate: [], cUpdate: [], cDelete: [], jsCreate: [], jsUpdate: [], jsDelete: [], pCreate: [], pUpdate: [], pDelete: [], bCreate: [], bDelete: [] };
  const dm = { noCache: { dm: [], dmExact: [], dmDump: [], cli: [], flush: [] }, cache: { dm: [], dmExact: [], dmDump: [], cli: [], flush: [] } };
  for (let r = 0; r < ROUNDS; r++) {
    // C floor.
    t.cCreate.push(await runFloor('create'));
    t.cUpdate.push(await runFloor('update', 7));
    t.cDelete.push(await runFloor('delete'));
    if ((await count()) !== 0) throw new Error('floor left entries behind');

    // Library. The specs are built before the clock starts, as for createMany below (the
    // floor builds its messages from integers): only the library's work is timed.
    const keys = Array.from({ length: N }, (_, i) => key(i));
    const specs = keys.map((k) => ({ ...k, timeout: 600, mark: 1 }));
    const changes = keys.map((k) => ({ ...k, mark: 7 }));
    let t0 = process.hrtime.bigint();
    await Promise.all(specs.map((sp) => ct.create(sp)));
    t.jsCreate.push(since(t0));
    if ((await count()) !== N) throw new Error('create: wrong count');
    t0 = process.hrtime.bigint();
    await Promise.all(changes.map((c) => ct.update(c)));
    t.jsUpdate.push(since(t0));
    t0 = process.hrtime.bigint();
    await Promise.all(keys.map((k) => ct.delete(k)));
    t.jsDelete.push(since(t0));
    if ((await count()) !== 0) throw new Error('delete: entries left');

    // Library, at most 2048 promises outstanding (what a careful bulk caller does).
    t0 = process.hrtime.bigint();
    await pool(N, 2048, (i) => ct.create(specs[i]));
    t.pCreate.push(since(t0));
    t0 = process.hrtime.bigint();
    await pool(N, 2048, (i) => ct.update(changes[i]));
    t.pUpdate.push(since(t0));
    t0 = process.hrtime.bigint();
    await pool(N, 2048, (i) => ct.delete(keys[i]));
    t.pDelete.push(since(t0));
    if ((await count()) !== 0) throw new Error('pooled delete: entries left');

    // Library bulk calls: createMany / deleteMany (one promise per call, items pipelined).
    t0 = process.hrtime.bigint();
    const made = await ct.createMany(specs);
    t.bCreate.push(since(t0));
    if (made.ok !== N || (await count()) !== N) throw new Error(`createMany: ${made.ok} ok, ${made.errors.length} errors`);
    t0 = process.hrtime.bigint();
    const gone = await ct.deleteMany(keys);
    t.bDelete.push(since(t0));
    if (gone.ok !== N || (await count()) !== 0) throw new Error(`deleteMany: ${gone.ok} ok, ${gone.errors.length} errors`);

    // Bulk delete by mark: library vs conntrack -D (tables filled by the floor), for entries
    // made without and with an event cache (nf_conntrack_events 0 / 1 while they are made;
    // back to the default 2 for the delete). The kernel's flush costs about 3x more per
    // entry that has one, whoever deletes it.
    for (const state of ['noCache', 'cache']) {
      const fill = async () => {
        await ns.sysctl('net.netfilter.nf_conntrack_events', state === 'cache' ? 1 : 0);
        await runFloor('create', 1);
        await ns.sysctl('net.netfilter.nf_conntrack_events', 2);
      };
      const d = dm[state];
      await fill();
      t0 = process.hrtime.bigint();
      const removed = await ct.deleteMatching({ mark: 1 });
      d.dm.push(since(t0));
      if (removed !== N || (await count()) !== 0) throw new Error(`deleteMatching removed ${removed}`);
      await fill();
      t0 = process.hrtime.bigint();
      const exact = await ct.deleteMatching({ mark: 1 }, undefined, { exact: true });
      d.dmExact.push(since(t0));
      if (exact !== N || (await count()) !== 0) throw new Error(`deleteMatching (exact: true) removed ${exact}`);
      await fill();
      t0 = process.hrtime.bigint();
      const dumped = await ct.deleteMatching({ mark: 1 }, () => true);
      d.dmDump.push(since(t0));
      if (dumped !== N || (await count()) !== 0) throw new Error(`deleteMatching (dump path) removed ${dumped}`);
      await fill();
      d.cli.push(await timed(ns, 'sh', ['-c', 'conntrack -D -m 1 >/dev/null 2>&1']));
      if ((await count()) !== 0) throw new Error('conntrack -D left entries');
      await fill();
      t0 = process.hrtime.bigint();
      await ct.flush({ mark: 1 });
      d.flush.push(since(t0));
      if ((await count()) !== 0) throw new Error('flush left entries');
    }
  }

  const ops = (s) => Math.round(N / s).toLocaleString('en-US');
  const rows = [];
  for (const [name, js, p, c] of [['create', t.jsCreate, t.pCreate, t.cCreate], ['update', t.jsUpdate, t.pUpdate, t.cUpdate], ['delete', t.jsDelete, t.pDelete, t.cDelete]]) {
    rows.push([name, ops(best(c)), ops(best(js)), (best(c) / best(js)).toFixed(2) + 'x', ops(best(p)), (best(c) / best(p)).toFixed(2) + 'x']);
  }
  printTable(`per-entry operations, ${N} entries (ops/s, best of ${ROUNDS}; ratio = library / C floor)`, ['op', 'C floor', 'all at once', 'ratio', '2048 outstanding', 'ratio'], rows);
  printTable(`bulk calls, ${N} entries (ops/s, best of ${ROUNDS}; ratio = library / C floor)`, ['op', 'C floor', 'createMany / deleteMany', 'ratio'], [
    ['create', ops(best(t.cCreate)), ops(best(t.bCreate)), (best(t.cCreate) / best(t.bCreate)).toFixed(2) + 'x'],
    ['delete', ops(best(t.cDelete)), ops(best(t.bDelete)), (best(t.cDelete) / best(t.bDelete)).toFixed(2) + 'x'],
  ]);
  for (const [state, title] of [['noCache', 'entries without an event cache'], ['cache', 'entries with an event cache']]) {
    const d = dm[state];
    printTable(`bulk delete of ${N} entries by mark, ${title} (best of ${ROUNDS})`, ['method', 'seconds', 'entries/s', 'vs conntrack -D'], [
      ['conntrack -D -m 1', best(d.cli).toFixed(3), ops(best(d.cli)), '1.00x'],
      ['deleteMatching({ mark: 1 }) (default)', best(d.dm).toFixed(3), ops(best(d.dm)), (best(d.cli) / best(d.dm)).toFixed(2) + 'x'],
      ['deleteMatching(.., { exact: true })', best(d.dmExact).toFixed(3), ops(best(d.dmExact)), (best(d.cli) / best(d.dmExact)).toFixed(2) + 'x'],
      ['deleteMatching(.., () => true) (dump path)', best(d.dmDump).toFixed(3), ops(best(d.dmDump)), (best(d.cli) / best(d.dmDump)).toFixed(2) + 'x'],
      ['ct.flush({ mark: 1 }) (kernel flush)', best(d.flush).toFixed(3), ops(best(d.flush)), (best(d.cli) / best(d.flush)).toFixed(2) + 'x'],
    ]);
  }
  printTable(`bulk update of ${N} entries by filter (best of ${ROUNDS}; ratio = method / C floor)`, ['method', 'seconds', 'entries/s', 'vs floor'], umRows(ops));
  umNote();
  // Best library path: per-entry promises or the bulk call.
  const createOk = best(t.cCreate) / Math.min(best(t.jsCreate), best(t.pCreate)) >= 0.9;
  const createManyOk = best(t.cCreate) / best(t.bCreate) >= 0.9;
  const deleteOk = best(t.cDelete) / Math.min(best(t.jsDelete), best(t.pDelete), best(t.bDelete)) >= 1.0;
  const dmRatio = (state, key = 'dm') => best(dm[state].cli) / best(dm[state][key]);
  const dmOk = dmRatio('noCache') >= 5;
  console.log(`\ntargets: create (best window) >= 0.9x floor ${createOk ? 'met' : 'MISSED'}, createMany >= 0.9x floor ${createManyOk ? 'met' : 'MISSED'}, delete >= 1.0x floor ${deleteOk ? 'met' : 'MISSED'}, ` +
    `deleteMatching >= 5x conntrack -D ${dmOk ? 'met' : 'MISSED'} (${dmRatio('noCache').toFixed(1)}x) for entries without an event cache; ` +
    `with one ${dmRatio('cache').toFixed(1)}x, where the kernel's flush by itself reaches ${dmRatio('cache', 'flush').toFixed(1)}x; ` +
    `updateMatching >= 0.7x floor ${best(um.floor) / best(um.lib) >= 0.7 ? 'met' : 'MISSED'} (${(best(um.floor) / best(um.lib)).toFixed(2)}x)`);
  await ns.close();
}

/**
 * The create and delete rows only (C floor, createMany / deleteMany, 2048 outstanding),
 * interleaved per round, wall and CPU time (see the usage above).
 */
async function createOnly(ns, ct, runFloor, lastFloorCpu, count) {
  const libs = [['', ct]];
  if (process.env.BENCH_BASE) libs.push([' (base)', await require(process.env.BENCH_BASE).Conntrack.open({ netns: ns.path })]);
  const keys = Array.from({ length: N }, (_, i) => key(i));
  const specs = keys.map((k) => ({ ...k, timeout: 600, mark: 1 }));
  const rows = new Map();
  const add = (name, wall, cpu) => {
    if (!rows.has(name)) rows.set(name, { wall: [], cpu: [] });
    rows.get(name).wall.push(wall);
    rows.get(name).cpu.push(cpu);
  };
  const timed = async (name, fn, expected) => {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await fn();
    const wall = since(t0);
    const c = process.cpuUsage(c0);
    add(name, wall, (c.user + c.system) / 1e6);
    if ((await count()) !== expected) throw new Error(`${name}: wrong count`);
  };
  for (let r = 0; r < ROUNDS; r++) {
    add('create: C floor', await runFloor('create'), lastFloorCpu());
    add('delete: C floor', await runFloor('delete'), lastFloorCpu());
    for (const [tag, c] of libs) {
      const bulk = async () => {
        await timed(`create: createMany${tag}`, async () => {
          const made = await c.createMany(specs);
          if (made.ok !== N) throw new Error(`createMany: ${made.ok} ok, ${made.errors.length} errors`);
        }, N);
        await timed(`delete: deleteMany${tag}`, async () => {
          const gone = await c.deleteMany(keys);
          if (gone.ok !== N) throw new Error(`deleteMany: ${gone.ok} ok, ${gone.errors.length} errors`);
        }, 0);
      };
      const single = async () => {
        await timed(`create: 2048 outstanding${tag}`, () => pool(N, 2048, (i) => c.create(specs[i])), N);
        await timed(`delete: 2048 outstanding${tag}`, () => pool(N, 2048, (i) => c.delete(keys[i])), 0);
      };
      // The first library run after the floor's tends to be slower (the kernel reallocates
      // what the floor's deletes freed): alternate which goes first.
      for (const run of r % 2 === 0 ? [bulk, single] : [single, bulk]) await run();
    }
  }
  const order = [...rows.keys()].sort((a, b) => (a.startsWith('create') === b.startsWith('create') ? 0 : a.startsWith('create') ? -1 : 1));
  const table = order.map((name) => {
    const v = rows.get(name);
    const f = rows.get(name.startsWith('create') ? 'create: C floor' : 'delete: C floor');
    return [
      name, best(v.wall).toFixed(3), median(v.wall).toFixed(3), (median(f.wall) / median(v.wall)).toFixed(2) + 'x',
      best(v.cpu).toFixed(3), median(v.cpu).toFixed(3), (median(f.cpu) / median(v.cpu)).toFixed(2) + 'x',
    ];
  });
  printTable(`create and delete ${N} entries (best and median of ${ROUNDS}; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`,
    ['method', 'best s', 'median s', 'wall vs floor (median)', 'best CPU s', 'median CPU s', 'CPU vs floor (median)'], table);
  for (const [, c] of libs.slice(1)) await c.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
