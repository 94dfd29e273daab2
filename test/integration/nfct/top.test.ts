/**
 * `nfct top` in a real terminal: tmux runs it in a pane on a sandbox's table; the test
 * reads the screen (capture-pane), changes the table, presses keys, resizes, and quits.
 */
import { execFileSync } from 'child_process';
import { join } from 'path';
import { Sandbox, sandbox } from '../../../apps/testing';

const main = join(__dirname, '..', '..', '..', 'dist/apps/nfct/main.js');
let sock = '';
let sb: Sandbox;

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', sock, '-f', '/dev/null', ...args], { encoding: 'utf8' });
}
const screen = (): string => tmux('capture-pane', '-p', '-t', 'top');
const keys = (...k: string[]): string => tmux('send-keys', '-t', 'top', ...k);

/** Polls the pane until it matches (returns the screen), or throws with the last screen. */
async function waitFor(pred: (s: string) => boolean, what: string, ms = 15000): Promise<string> {
  const end = Date.now() + ms;
  let s = '';
  while (Date.now() < end) {
    s = screen();
    if (pred(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}; the screen was:\n${s}`);
}

function startTop(args: string[], width = 160, height = 40): void {
  sock = `nfct-top-test-${process.pid}-${Date.now()}`;
  // The shell stays after nfct exits, so the test can see the exit code and the restored terminal.
  const cmd = `${process.execPath} ${main} top --netns ${sb.path} ${args.join(' ')}; echo "EXIT=$?"; sleep 60`;
  tmux('new-session', '-d', '-s', 'top', '-x', String(width), '-y', String(height), cmd);
}

afterEach(async () => {
  try {
    if (sock) tmux('kill-server');
  } catch {
    /* already gone */
  }
  sock = '';
  await sb?.close();
});

/** The flow rows: the lines below the column header. */
function dataRows(s: string): string[] {
  const lines = s.split('\n');
  const h = lines.findIndex((l) => /BYTES\/S/.test(l));
  return h < 0 ? [] : lines.slice(h + 1).filter((l) => l.trim() !== '');
}
/** The BYTES/S column of a row, with the k/M suffix applied. */
function rate(row: string): number {
  const m = /^\s*([\d.]+)([kM]?)\s/.exec(row);
  return m ? Number(m[1]) * (m[2] === 'k' ? 1e3 : m[2] === 'M' ? 1e6 : 1) : NaN;
}

const udp = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.1.1.1', dst: '10.2.2.2', sport: 5000 + i, dport: 1000 + i }, timeout: 600 + i });

test('renders a known table, follows changes, sorts, filters, redraws on resize, and q restores the terminal', async () => {
  sb = await sandbox({ tracking: true });
  for (let i = 1; i <= 3; i++) await sb.ct.create(udp(i));
  await sb.ct.create({ proto: 'tcp', orig: { src: '10.3.3.3', dst: '10.4.4.4', sport: 4000, dport: 80 }, timeout: 900, state: 'ESTABLISHED', status: ['SEEN_REPLY', 'ASSURED'] });
  startTop(['--interval', '300', '--sort', 'timeout']);

  let s = await waitFor((x) => /flows udp 3 {2}tcp 1 \(ESTABLISHED 1\)/.test(x), 'the counts by protocol and state');
  expect(s).toMatch(/nfct top \(netns \/proc\/\d+\/ns\/net\)/);
  expect(s).toMatch(/table 4\/\d+ /);
  expect(s).toMatch(/sort timeout/);
  const rows = dataRows(s);
  // Sorted by timeout: the TCP entry (900 s), then UDP 1003, 1002, 1001 (603, 602, 601 s).
  expect(rows.map((r) => /(\d+\.\d+\.\d+\.\d+:\d+) -> (\d+\.\d+\.\d+\.\d+:\d+)/.exec(r)![0])).toEqual([
    '10.3.3.3:4000 -> 10.4.4.4:80', '10.1.1.1:5003 -> 10.2.2.2:1003', '10.1.1.1:5002 -> 10.2.2.2:1002', '10.1.1.1:5001 -> 10.2.2.2:1001',
  ]);
  expect(rows[0]).toMatch(/ESTABLISHED/);
  // Accounting is off in the namespace, so no flow carries counters: the hint says how to turn it on.
  expect(s).toMatch(/accounting is off: .*sysctl -w net\.netfilter\.nf_conntrack_acct=1/);

  // The table changes: one UDP entry goes, a new one comes; the screen follows, with event rates.
  await sb.ct.delete(udp(2));
  await sb.ct.create(udp(7));
  s = await waitFor((x) => x.includes('10.1.1.1:5007 -> 10.2.2.2:1007') && !x.includes(':5002 '), 'the changed table');
  expect(s).toMatch(/flows udp 3 {2}tcp 1/);

  // Real traffic with accounting on: the ping's flow tops the bytes/s sort.
  await sb.sysctl('net.netfilter.nf_conntrack_acct', 1);
  const ping = sb.spawn('ping', ['-i', '0.2', '-c', '40', '127.0.0.1']);
  keys('b');
  const topRow = (x: string): string => dataRows(x)[0] ?? '';
  s = await waitFor((x) => /sort bytes\/s/.test(x) && /\sicmp\s+127\.0\.0\.1 -> 127\.0\.0\.1/.test(topRow(x)) && rate(topRow(x)) > 0, 'the ICMP flow at the top by bytes/s');
  // About 84 bytes each way every 0.2 s.
  expect(rate(topRow(s))).toBeGreaterThan(100);
  expect(s).not.toMatch(/accounting is off/);
  ping.kill();

  // A text filter.
  keys('/', '10.3.3.3', 'Enter');
  s = await waitFor((x) => /text "10\.3\.3\.3"/.test(x), 'the text filter');
  s = await waitFor((x) => x.includes('10.3.3.3:4000') && !x.includes('10.1.1.1:'), 'only the filtered row');

  // Resize: redrawn to the new width.
  tmux('resize-window', '-t', 'top', '-x', '100', '-y', '30');
  s = await waitFor((x) => x.split('\n').some((l) => l.startsWith('nfct top')) && /REPLY/.test(x) && x.split('\n').every((l) => l.length <= 100) && x.split('\n').length <= 31, 'a redraw at 100 columns');
  expect(s.split('\n').find((l) => /BYTES\/S/.test(l))!.length).toBeLessThanOrEqual(100);

  keys('q');
  s = await waitFor((x) => /EXIT=\d+/.test(x), 'nfct to exit');
  expect(s).toMatch(/EXIT=0/);
  // The terminal is restored: primary screen, cursor visible; nothing of top is left on it.
  expect(tmux('display-message', '-p', '-t', 'top', '#{alternate_on} #{cursor_flag}').trim()).toBe('0 1');
  expect(s).not.toMatch(/BYTES\/S/);
});

test('a 200,000-flow table: refreshes stream the dump and keys are still answered at once', async () => {
  sb = await sandbox();
  const r = await sb.fill(200000);
  expect(r.ok).toBe(200000);
  startTop(['--interval', '100']);
  let s = await waitFor((x) => /dump \d+ ms, 200000 flows/.test(x), 'the first full dump', 30000);
  const dumps: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = /  (\d\d:\d\d:\d\d)  /.exec(s)?.[1];
    s = await waitFor((x) => /dump \d+ ms, 200000 flows/.test(x) && /  (\d\d:\d\d:\d\d)  /.exec(x)?.[1] !== before, 'another refresh', 30000);
    dumps.push(Number(/dump (\d+) ms/.exec(s)![1]));
  }
  expect(s).toMatch(/flows udp 200000/);
  expect(s).toMatch(/table 200000\/\d+ /);
  // With a 100 ms interval a dump is nearly always running: a key is handled between its batches.
  const t0 = Date.now();
  keys('t');
  await waitFor((x) => /sort total bytes/.test(x), 'the sort key to change', 10000);
  const keyMs = Date.now() - t0;
  const t1 = Date.now();
  keys('q');
  await waitFor((x) => /EXIT=0/.test(x), 'nfct to exit', 10000);
  const quitMs = Date.now() - t1;
  // eslint-disable-next-line no-console
  console.log(`nfct top, 200,000 flows: dumps ${dumps.join(', ')} ms; key answered in ${keyMs} ms; quit in ${quitMs} ms`);
  expect(keyMs).toBeLessThan(Math.max(...dumps));
});
