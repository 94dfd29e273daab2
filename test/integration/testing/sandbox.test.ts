/**
 * conntrack/testing: what each sandbox helper does, checked against the real kernel (and
 * the conntrack CLI where it can say the same thing).
 */
import { execFileSync, spawnSync } from 'child_process';
import { existsSync, readFileSync, readlinkSync } from 'fs';
import { join } from 'path';
import { ConntrackError } from '../../../lib';
import { Sandbox, TRACKING_RULESET, liveSandboxes, sandbox, withSandbox } from '../../../apps/testing';

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/\) Z /.test(safeRead(`/proc/${pid}/stat`));
function safeRead(p: string): string {
  try {
    return require('fs').readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

describe('sandbox()', () => {
  let sb: Sandbox;
  afterEach(async () => {
    await sb?.close();
  });

  test('a namespace of its own, lo up, an empty table; entries made with ct are what conntrack -L sees there', async () => {
    sb = await sandbox();
    expect(readlinkSync(sb.path)).not.toBe(readlinkSync('/proc/self/ns/net'));
    expect(sb.netns).toEqual({ path: `/proc/${sb.pid}/ns/net`, pid: sb.pid });
    expect((await sb.run('ip', ['-o', 'link', 'show', 'lo'])).stdout).toMatch(/UP/);
    expect(await sb.ct.list()).toEqual([]);
    await sb.ct.create({ proto: 'udp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1111, dport: 53 }, timeout: 100 });
    const cli = await sb.run('conntrack', ['-L']);
    expect(cli.stdout).toMatch(/udp\s+17 \d+ src=10\.0\.0\.1 dst=10\.0\.0\.2 sport=1111 dport=53/);
    expect((await sb.sh('echo $((6*7))')).stdout.trim()).toBe('42');
  });

  test('tracking: traffic() makes one TCP (ESTABLISHED, held), one UDP (SEEN_REPLY) and one ICMP entry', async () => {
    sb = await sandbox({ tracking: true });
    const { tcp, udp } = await sb.traffic();
    const flows = await sb.ct.list();
    const t = flows.find((f) => f.proto === 'tcp')!;
    expect(t.orig).toMatchObject({ src: '127.0.0.1', sport: tcp.sport, dst: '127.0.0.1', dport: tcp.dport });
    expect(t.state).toBe('ESTABLISHED');
    expect(t.status).toContain('ASSURED');
    const u = flows.find((f) => f.proto === 'udp')!;
    expect(u.orig).toMatchObject({ src: udp.src, sport: udp.sport, dport: udp.dport });
    expect(u.status).toContain('SEEN_REPLY');
    const i = flows.find((f) => f.proto === 'icmp')!;
    expect(i.orig.icmp?.type).toBe(8);
    expect(flows).toHaveLength(3);
    await tcp.close();
    const after = await sb.ct.get({ proto: 'tcp', orig: { src: '127.0.0.1', dst: '127.0.0.1', sport: tcp.sport, dport: tcp.dport } });
    expect(after.state).not.toBe('ESTABLISHED');
  });

  test('without tracking, real traffic leaves no entry', async () => {
    sb = await sandbox();
    await sb.tcp();
    await sb.udp();
    await sb.ping();
    expect(await sb.ct.list()).toEqual([]);
    await sb.track();
    await sb.udp();
    expect(await sb.ct.list({ proto: 'udp' })).toHaveLength(1);
  });

  test('tcp() without hold closes cleanly (TIME_WAIT); udp() without reply has no SEEN_REPLY; ping() with IPv6', async () => {
    sb = await sandbox({ tracking: true });
    const tcp = await sb.tcp({ payload: 'x'.repeat(5000) });
    const udp = await sb.udp({ reply: false, host: '::1' });
    await sb.ping({ host: '::1', count: 2 });
    const tf = await sb.ct.list({ proto: 'tcp', orig: { sport: tcp.sport } });
    expect(tf.map((f) => f.state)).toEqual(['TIME_WAIT']);
    const uf = await sb.ct.list({ proto: 'udp' });
    expect(uf).toHaveLength(1);
    expect(uf[0]).toMatchObject({ family: 'ipv6', orig: { dst: '::1', dport: udp.dport } });
    expect(uf[0].status).not.toContain('SEEN_REPLY');
    const icmp6 = await sb.ct.list({ proto: 'icmpv6' });
    expect(icmp6).toHaveLength(1);
  });

  test('sysctls and nft options are applied; sysctl() reads and writes', async () => {
    sb = await sandbox({
      sysctls: { 'net.netfilter.nf_conntrack_acct': 1, 'net.netfilter.nf_conntrack_udp_timeout': 17 },
      nft: 'table ip extra { chain c { type filter hook output priority 10; udp dport 9999 drop; }; }',
    });
    expect(await sb.sysctl('net.netfilter.nf_conntrack_acct')).toBe('1');
    expect(await sb.sysctl('net.netfilter.nf_conntrack_udp_timeout')).toBe('17');
    expect((await sb.ct.settings.get()).acct).toBe(true);
    await sb.sysctl('net.netfilter.nf_conntrack_acct', false);
    expect(await sb.sysctl('net.netfilter.nf_conntrack_acct')).toBe('0');
    // This namespace only: ours is untouched.
    expect((await sb.run('nft', ['list', 'ruleset'])).stdout).toMatch(/udp dport 9999 drop/);
    expect((await sb.run('nft', ['list', 'ruleset'])).stdout).not.toMatch(/sandbox_tracking/);
  });

  test('fill(n) makes n ASSURED entries (conntrack -C agrees); fill("max") tops the table up to nf_conntrack_max', async () => {
    sb = await sandbox();
    const r = await sb.fill(2000, { proto: 'tcp', mark: 5 });
    expect(r).toEqual({ ok: 2000, errors: [] });
    expect((await sb.run('conntrack', ['-C'])).stdout.trim()).toBe('2000');
    const flows = await sb.ct.list({ mark: 5 });
    expect(flows).toHaveLength(2000);
    expect(flows.every((f) => f.status.includes('ASSURED') && f.state === 'ESTABLISHED')).toBe(true);
    expect(new Set(flows.map((f) => `${f.orig.src}:${f.orig.sport}`)).size).toBe(2000);
  });

  test('connect() reports refused and dropped attempts; listen() + connect(hold) makes an ESTABLISHED entry', async () => {
    sb = await sandbox({ tracking: true });
    const refused = await sb.connect({ port: 9 });
    expect(refused).toMatchObject({ ok: false, timedOut: false, error: 'ECONNREFUSED' });
    const l = await sb.listen();
    const ok = await sb.connect({ port: l.port, hold: true });
    expect(ok.ok).toBe(true);
    const f = await sb.ct.list({ proto: 'tcp', orig: { dport: l.port } });
    expect(f.map((x) => x.state)).toEqual(['ESTABLISHED']);
    await sb.nft(`table ip drops { chain c { type filter hook input priority 0; tcp dport ${l.port} ct state new drop; }; }`);
    const dropped = await sb.connect({ port: l.port, timeout: 300 });
    expect(dropped).toMatchObject({ ok: false, timedOut: true });
    expect(dropped.ms).toBeGreaterThanOrEqual(290);
  });

  test('ftp() speaks FTP up to the PASV reply', async () => {
    sb = await sandbox({ tracking: true });
    const s = await sb.ftp();
    expect(s.dport).toBe(21);
    expect(s.lines[0]).toMatch(/^220 /);
    expect(s.lines[1]).toMatch(new RegExp(`^227 .*\\(127,0,0,1,${s.dataPort >> 8},${s.dataPort & 255}\\)`));
    expect((await sb.ct.list({ proto: 'tcp', orig: { dport: 21 } })).map((f) => f.state)).toEqual(['ESTABLISHED']);
  });

  test('spawn() runs inside the namespace and close() kills it; close() removes the namespace and closes ct', async () => {
    sb = await sandbox();
    const child = sb.spawn('sleep', ['infinity']);
    await new Promise((r) => child.once('spawn', r));
    for (let i = 0; i < 200 && readlinkSync(`/proc/${child.pid}/exe`).endsWith('nsenter'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(readlinkSync(`/proc/${child.pid}/ns/net`)).toBe(readlinkSync(sb.path));
    const before = liveSandboxes();
    const holder = sb.pid;
    await sb.close();
    expect(liveSandboxes()).toBe(before - 1);
    expect(alive(child.pid!)).toBe(false);
    expect(alive(holder)).toBe(false);
    expect(sb.closed).toBe(true);
    await expect(sb.ct.list()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    await expect(sb.run('true')).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    await sb.close(); // idempotent
  });

  test('run() rejects with the command, exit code and stderr; allowFailure resolves with the code', async () => {
    sb = await sandbox();
    const e = await sb.run('sh', ['-c', 'echo nope >&2; exit 3']).catch((x) => x);
    expect(e).toBeInstanceOf(ConntrackError);
    expect(e.code).toBe('ERR_COMMAND_FAILED');
    expect(e.message).toMatch(/exited with 3: nope/);
    expect(await sb.run('sh', ['-c', 'exit 4'], { allowFailure: true })).toMatchObject({ code: 4 });
    expect((await sb.run('cat', [], { input: 'fed' })).stdout).toBe('fed');
  });

  test('run() and spawn() take the environment to run with', async () => {
    sb = await sandbox();
    const env = { PATH: process.env.PATH, SANDBOX_TEST_VAR: 'from-env' };
    expect((await sb.run('sh', ['-c', 'echo "$SANDBOX_TEST_VAR:$HOME"'], { env })).stdout).toBe('from-env:\n');
    // Without env, the command inherits this process's environment.
    expect((await sb.sh('echo "$PATH"')).stdout).toBe(`${process.env.PATH}\n`);
    const child = sb.spawn('sh', ['-c', 'echo "$SANDBOX_TEST_VAR"'], { env });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.once('close', r));
    expect(out).toBe('from-env\n');
  });

  test('bad options are refused before anything starts', async () => {
    const n = liveSandboxes();
    await expect(sandbox({ sysctls: { 'not a name': 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'sysctls.not a name' });
    await expect(sandbox({ tracking: 'yes' as unknown as boolean })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'tracking' });
    expect(liveSandboxes()).toBe(n);
    sb = await sandbox();
    await expect(sb.fill(-1)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'count' });
  });

  test('a bad nft ruleset fails sandbox() and leaves nothing behind', async () => {
    const n = liveSandboxes();
    const e = await sandbox({ nft: 'table ip x { bogus }' }).catch((x) => x);
    expect(e.code).toBe('ERR_COMMAND_FAILED');
    expect(e.message).toMatch(/nft -f -/);
    expect(liveSandboxes()).toBe(n);
  });

  test('withSandbox closes after the callback, also when it throws', async () => {
    let pid = 0;
    await expect(withSandbox(async (s) => { pid = s.pid; throw new Error('boom'); })).rejects.toThrow('boom');
    expect(alive(pid)).toBe(false);
  });

  test('the tracking ruleset refers to conntrack in input and output', () => {
    expect(TRACKING_RULESET).toMatch(/hook output[^}]*ct state new/);
    expect(TRACKING_RULESET).toMatch(/hook input[^}]*ct state new/);
  });
});

const root = join(__dirname, '..', '..', '..');

describe('sandbox() permissions and process lifetime', () => {
  test('without the capabilities to make a namespace: EPERM, and the message says how to run the suite', () => {
    // An empty bounding set: even uid 0 gets no capabilities after exec.
    const r = spawnSync('setpriv', ['--bounding-set=-all', '--inh-caps=-all', '--', process.execPath, '-e', `
      require(${JSON.stringify(join(root, 'dist/apps/testing'))}).sandbox().then(
        () => console.log('created'),
        (e) => console.log(JSON.stringify({ code: e.code, name: e.name, message: e.message })))`], { encoding: 'utf8' });
    const out = JSON.parse(r.stdout);
    expect(out.name).toBe('ConntrackError');
    expect(out.code).toBe('EPERM');
    expect(out.message).toContain('unshare -Urn npx jest');
    expect(out.message).toMatch(/as root/);
  });

  test('a script that never closes its sandbox exits by itself, and the holder and spawned children die with it', () => {
    const r = spawnSync(process.execPath, ['-e', `
      const { sandbox } = require(${JSON.stringify(join(root, 'dist/apps/testing'))});
      sandbox({ tracking: true }).then(async (sb) => {
        await sb.traffic();
        const c = sb.spawn('sleep', ['infinity']);
        await new Promise((r) => c.once('spawn', r));
        console.log(JSON.stringify({ holder: sb.pid, child: c.pid }));
      });`], { encoding: 'utf8', timeout: 20000 });
    expect(r.error).toBeUndefined();
    expect(r.status).toBe(0);
    const { holder, child } = JSON.parse(r.stdout);
    // The exit hook sends SIGKILL as the script ends; the kernel finishes the kill a moment later.
    for (let i = 0; i < 100 && (alive(holder) || alive(child)); i++) spawnSync('sleep', ['0.02']);
    expect(alive(holder)).toBe(false);
    expect(alive(child)).toBe(false);
  });

  test('a SIGKILLed parent leaves no holder or child behind (pipe EOF, pdeathsig)', async () => {
    const out = execFileSync('sh', ['-c', `${process.execPath} -e '
      const { sandbox } = require(${JSON.stringify(join(root, 'dist/apps/testing'))});
      sandbox().then(async (sb) => {
        const c = sb.spawn("sleep", ["infinity"]);
        await new Promise((r) => c.once("spawn", r));
        await new Promise((r) => setTimeout(r, 100));
        console.log(JSON.stringify({ holder: sb.pid, child: c.pid }));
        process.kill(process.pid, "SIGKILL");
      });' || true`], { encoding: 'utf8', timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'] }); // sh's "Killed" stays out of the log
    const { holder, child } = JSON.parse(out);
    for (let i = 0; i < 100 && (alive(holder) || alive(child)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive(holder)).toBe(false);
    expect(alive(child)).toBe(false);
  });
});

test('docs/testing.md holds the complete example exactly as test/integration/testing/example.test.ts runs it', () => {
  const doc = readFileSync(join(root, 'docs/testing.md'), 'utf8');
  const block = /```ts\n\/\/ conntrack\.test\.ts\n([\s\S]*?)```/.exec(doc)![1];
  const file = readFileSync(join(__dirname, 'example.test.ts'), 'utf8').replace(/^\/\*\*[\s\S]*?\*\/\n/, '');
  expect(file).toBe(block.replace("from 'conntrack/testing'", "from '../../../apps/testing'"));
});
