/**
 * `nfct sandbox` and `npm run demo`: each scenario runs for real and its output shows what
 * it claims. Runs the built CLI (dist/), as `npm test` builds first.
 */
import { spawnSync, SpawnSyncReturns } from 'child_process';
import { join } from 'path';
import { realRootTest } from '../../helpers/real-root';

const root = join(__dirname, '..', '..', '..');
const main = join(root, 'dist/apps/nfct/main.js');

function nfct(args: string[], input?: string, env?: Record<string, string>): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 60000, input, env: env && { ...process.env, ...env } });
}

function ok(r: SpawnSyncReturns<string>): string {
  if (r.status !== 0) throw new Error(`exit ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('default: real TCP, UDP and ICMP traffic, their events, the table, a DESTROY, the statistics; it ends by itself', () => {
  const out = ok(nfct(['sandbox']));
  for (const p of ['tcp', 'udp', 'icmp']) expect(out).toMatch(new RegExp(`\\[NEW\\] ${p} `));
  expect(out).toMatch(/\[UPDATE\] tcp .* ESTABLISHED .*\[ASSURED\]/);
  expect(out).toMatch(/4\/tcp .*ESTABLISHED .*SEEN_REPLY,ASSURED/);
  expect(out).toMatch(/\[UPDATE\] tcp .* TIME_WAIT /);
  expect(out).toMatch(/\[DESTROY\] icmp /);
  expect(out).toMatch(/count 2 of max \d+/); // the ICMP entry was deleted
  expect(out).toMatch(/events seen: 3 new, \d+ update, 1 destroy; lost 0/);
});

test('table-full: filled to nf_conntrack_max with ASSURED entries, new connects time out, drops are counted', () => {
  const out = ok(nfct(['sandbox', '--scenario', 'table-full']));
  // The limit as the command read it (a real-root test elsewhere may lower it for a moment).
  const max = Number(/nf_conntrack_max = (\d+)/.exec(out)?.[1]);
  expect(max).toBeGreaterThan(0);
  expect(out).toContain(`the table holds ${max} of ${max}`);
  expect(out.match(/timed out after \d+ ms: the SYN was dropped/g)).toHaveLength(3);
  const drops = Number(/drop \+(\d+) \(new flows dropped/.exec(out)?.[1]);
  expect(drops).toBeGreaterThanOrEqual(3);
  expect(out).toMatch(/early_drop \+0 /);
  expect(out).toMatch(/Freeing one entry[^\n]*\n\s+connected in \d+ ms/);
});

test('drop-before-confirm: the SYN dropped in INPUT leaves no entry and no event; the accepted one does', () => {
  const out = ok(nfct(['sandbox', '--scenario', 'drop-before-confirm']));
  expect(out).toMatch(/port 8080: timed out/);
  expect(out).toMatch(/port 8081: connected/);
  expect(out).toContain('entries for dport 8080: 0; for dport 8081: 1');
  expect(out).not.toMatch(/\[NEW\] tcp .*dport=8080/);
  expect(out).toMatch(/\[NEW\] tcp .*dport=8081/);
});

test('nat: the reply tuple shows the DNAT target', () => {
  const out = ok(nfct(['sandbox', '--scenario', 'nat']));
  expect(out).toMatch(/tcp +6 \d+ ESTABLISHED src=10\.99\.0\.2 dst=10\.99\.0\.80 sport=(\d+) dport=80 .*src=10\.99\.0\.2 dst=10\.99\.0\.2 sport=8080 dport=\1 /);
  expect(out).toMatch(/status: .*DST_NAT/);
});

test('expectations: the ftp helper makes the expectation the 227 reply announces; the data connection is related to it', () => {
  const out = ok(nfct(['sandbox', '--scenario', 'expectations']));
  const [, hi, lo] = /227 Entering Passive Mode \(127,0,0,1,(\d+),(\d+)\)/.exec(out)!.map(Number);
  const port = hi * 256 + lo;
  expect(out).toMatch(/dport=21 .*helper=ftp/);
  expect(out).toContain(`expected: tcp src=127.0.0.1 dst=127.0.0.1 sport=0 dport=${port}`);
  expect(out).toMatch(/master: +src=127\.0\.0\.1 dst=127\.0\.0\.1 sport=\d+ dport=21/);
  expect(out).toMatch(new RegExp(`dport=${port} .*\\n\\s+its master: src=127\\.0\\.0\\.1 dport=21 .*expectations left: 0`));
});

test('--shell: a shell inside the sandbox with nfct on PATH; its exit code is the command\'s', () => {
  // NFCT_NETNS of the caller's shell must not send the sandbox shell's nfct elsewhere.
  const r = nfct(['sandbox', '--shell'], 'nfct list --output json --proto tcp\nexit 3\n', { NFCT_NETNS: '/nonexistent/netns' });
  expect(r.status).toBe(3);
  const json = r.stdout.split('\n').filter((l) => /^[[,\]]/.test(l)).join('');
  const flows = JSON.parse(json);
  expect(flows).toHaveLength(1);
  expect(flows[0]).toMatchObject({ proto: 'tcp', state: 'TIME_WAIT' });
});

test('bad usage: an unknown scenario is refused with exit code 2 and the list of scenarios', () => {
  const r = nfct(['sandbox', '--scenario', 'nope']);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/--scenario: unknown scenario "nope"; use one of table-full, drop-before-confirm, nat, expectations/);
});

test('npm run demo runs to the end (as root, or as root of a user namespace)', () => {
  const r = spawnSync('npm', ['run', '--silent', 'demo'], { cwd: root, encoding: 'utf8', timeout: 60000 });
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/4\/tcp .*ESTABLISHED/);
  expect(r.stdout).toContain('==> Done');
});

realRootTest('nfct sandbox as a normal user', 'switching to user nobody needs real root')('npm run demo as a normal user (nobody): re-executes under unshare -Urn and runs to the end', () => {
  const home = spawnSync('mktemp', ['-d'], { encoding: 'utf8' }).stdout.trim();
  spawnSync('chown', ['nobody', home]);
  const r = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', 'env', `HOME=${home}`, 'npm_config_update_notifier=false',
    'npm', 'run', '--silent', 'demo'], { cwd: root, encoding: 'utf8', timeout: 60000 });
  spawnSync('rm', ['-rf', home]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('not root: running again inside `unshare -Urn`');
  expect(r.stdout).toMatch(/4\/tcp .*ESTABLISHED/);
  expect(r.stdout).toContain('==> Done');
});
