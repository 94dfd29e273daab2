/**
 * conntrack/testing: 1,000 sandboxes created and closed leave this process's open files,
 * child processes and network namespaces as they were; a jest run that forgets to close
 * one still exits by itself, without the "did not exit" warning.
 */
import { spawnSync } from 'child_process';
import { readdirSync, readFileSync, readlinkSync } from 'fs';
import { join } from 'path';
import { sandbox, liveSandboxes } from '../../../apps/testing';

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Pids whose parent is this process (from /proc/PID/stat: the field after the command). */
function children(): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === process.pid) out.push(Number(name));
  }
  return out;
}

/** Distinct network namespaces our children are in. */
function childNamespaces(): Set<string> {
  const s = new Set<string>();
  for (const pid of children()) {
    try {
      s.add(readlinkSync(`/proc/${pid}/ns/net`));
    } catch {
      /* gone */
    }
  }
  return s;
}

test('1,000 sandboxes created and closed leave fds, children and namespaces unchanged', async () => {
  // One sandbox first, so lazily opened files (the addon, its eventfds) are counted in the baseline.
  await (await sandbox()).close();
  const fds = openFds();
  const kids = children().sort();
  const nss = childNamespaces();
  const N = 1000;
  const CONCURRENCY = 8;
  let made = 0;
  let maxLive = 0;
  // Inode numbers are reused once a namespace is freed, so distinctness is checked among
  // the sandboxes alive at the same time.
  const liveNs = new Set<string>();
  const own = readlinkSync('/proc/self/ns/net');
  let collisions = 0;
  const createMs: number[] = [];
  const closeMs: number[] = [];
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (made < N) {
      made++;
      const a = performance.now();
      const sb = await sandbox();
      const b = performance.now();
      const ns = readlinkSync(sb.path);
      if (liveNs.has(ns) || ns === own) collisions++;
      liveNs.add(ns);
      maxLive = Math.max(maxLive, liveSandboxes());
      // Each one is usable: its own (empty) table.
      if (made % 100 === 0) expect(await sb.ct.list()).toEqual([]);
      liveNs.delete(ns);
      await sb.close();
      createMs.push(b - a);
      closeMs.push(performance.now() - b);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const total = performance.now() - t0;
  const avg = (a: number[]) => (a.reduce((x, y) => x + y, 0) / a.length).toFixed(2);
  // eslint-disable-next-line no-console
  console.log(`1,000 sandboxes, ${CONCURRENCY} at a time: ${(total / 1000).toFixed(2)} s; create ${avg(createMs)} ms, close ${avg(closeMs)} ms on average`);
  expect(createMs).toHaveLength(N);
  expect(collisions).toBe(0); // every sandbox had a namespace of its own
  expect(maxLive).toBeGreaterThan(1);
  expect(liveSandboxes()).toBe(0);
  expect(openFds()).toBe(fds);
  expect(children().sort()).toEqual(kids);
  expect(childNamespaces()).toEqual(nss);
});

test('a jest run whose test never closes its sandbox passes and exits by itself (no "did not exit")', () => {
  const root = join(__dirname, '..', '..', '..');
  const r = spawnSync(process.execPath, [join(root, 'node_modules/jest/bin/jest.js'), '--rootDir', root, '--roots', '<rootDir>/test/fixtures/testing',
    '--testMatch', '**/*.fixture.ts', '--reporters', 'default'], { cwd: root, encoding: 'utf8', timeout: 90000 });
  const output = r.stdout + r.stderr;
  expect(r.error).toBeUndefined();
  expect(output).toMatch(/Tests:\s+2 passed, 2 total/);
  expect(output).not.toMatch(/did not exit/);
  expect(r.status).toBe(0);
  // The holder the fixture left open is gone with the jest process.
  const holder = Number(/leaked holder (\d+)/.exec(output)?.[1]);
  expect(holder).toBeGreaterThan(0);
  let alive = true;
  try {
    alive = !/\) Z /.test(readFileSync(`/proc/${holder}/stat`, 'utf8'));
  } catch {
    alive = false;
  }
  expect(alive).toBe(false);
});
