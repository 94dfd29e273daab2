/**
 * The `nfct exporter` command module: --help, refused arguments (exit 2, nothing started),
 * several namespaces behind one server with a netns label, and a stop that closes the
 * server and every handle.
 */
import { PassThrough } from 'stream';
import { run, parseListen } from '../../../apps/nfct/commands/exporter';
import { startExporter, wantsOpenMetrics } from '../../../apps/prometheus';
import { Sandbox, sandbox } from '../../../apps/testing';
import { parseExposition, valueOf } from './helpers';
import { sleep } from '../../helpers/wait';

function capture(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

describe('nfct exporter command', () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  test('--help prints the usage and exits 0', async () => {
    const out = capture();
    expect(await run(['--help'], { stdout: out.stream })).toBe(0);
    expect(out.text()).toMatch(/^Usage: nfct exporter \[--listen HOST:PORT\] \[--netns NAME\|PATH\|PID\]\.\.\./);
  });

  test.each([
    [['--listen', 'localhost'], /--listen: expected HOST:PORT/],
    [['--listen', '1.2.3.4:70000'], /port must be 0-65535/],
    [['--bogus'], /Unknown option '--bogus'/],
    [['--netns', ''], /--netns: must not be empty/],
    [['extra'], /Unexpected argument 'extra'/],
  ])('refuses %j with exit 2 and a message', async (argv, message) => {
    const err = capture();
    expect(await run(argv, { stderr: err.stream })).toBe(2);
    expect(err.text()).toMatch(message);
    expect(err.text()).toMatch(/see nfct exporter --help/);
  });

  test('a namespace that cannot be opened: exit 1 and the reason', async () => {
    const err = capture();
    expect(await run(['--listen', '127.0.0.1:0', '--netns', 'no-such-namespace-here'], { stderr: err.stream })).toBe(1);
    expect(err.text()).toMatch(/no namespace named "no-such-namespace-here"/);
  });

  test('startExporter() refuses an unknown option, naming it, before it opens anything', async () => {
    await expect(startExporter({ port: 0, netnss: ['x'] } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.netnss' });
  });

  test('parses listen addresses', () => {
    expect(parseListen('127.0.0.1:9940')).toEqual({ host: '127.0.0.1', port: 9940 });
    expect(parseListen('[::1]:80')).toEqual({ host: '::1', port: 80 });
    expect(parseListen(':9940')).toEqual({ host: '::', port: 9940 });
    expect(wantsOpenMetrics('application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5')).toBe(true);
    expect(wantsOpenMetrics('text/plain;version=0.0.4')).toBe(false);
    expect(wantsOpenMetrics('text/plain, application/openmetrics-text;q=0.5')).toBe(false);
    expect(wantsOpenMetrics(undefined)).toBe(false);
  });

  test('several --netns behind one server, each with its netns label; stopping closes everything', async () => {
    const a = await sandbox();
    cleanup.push(() => a.close());
    const b = await sandbox();
    cleanup.push(() => b.close());
    await a.sh('conntrack -I -p udp -s 10.4.0.1 -d 10.4.0.2 --sport 1 --dport 53 -t 600 >/dev/null 2>&1');
    await b.sh('for p in 1 2 3; do conntrack -I -p tcp -s 10.4.0.1 -d 10.4.0.2 --sport $p --dport 80 -t 600 --state ESTABLISHED >/dev/null 2>&1; done');

    const ac = new AbortController();
    cleanup.push(() => ac.abort());
    const out = capture();
    const done = run(['--listen', '127.0.0.1:0', '--netns', a.path, '--netns', String(b.pid)], { signal: ac.signal, stdout: out.stream });
    let url = '';
    for (let i = 0; i < 500 && !url; i++) {
      url = /serving (http:\S+)/.exec(out.text())?.[1] ?? '';
      if (!url) await sleep(10);
    }
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const f = parseExposition(await (await fetch(url)).text());
    expect(valueOf(f, 'node_nf_conntrack_entries', { netns: a.path })).toBe(1);
    expect(valueOf(f, 'node_nf_conntrack_entries', { netns: String(b.pid) })).toBe(3);
    expect(valueOf(f, 'conntrack_flows', { netns: String(b.pid), proto: 'tcp', state: 'ESTABLISHED' })).toBe(3);
    expect(valueOf(f, 'conntrack_flows', { netns: a.path, proto: 'udp' })).toBe(1);
    const health = await fetch(url.replace('/metrics', '/healthz'));
    expect(health.status).toBe(200);
    expect((await fetch(url, { method: 'POST' })).status).toBe(405);

    ac.abort();
    expect(await done).toBe(0);
    expect(out.text()).toMatch(/stopped/);
    await expect(fetch(url)).rejects.toThrow();
  });
});
