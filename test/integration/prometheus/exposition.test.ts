/**
 * The exporter's exposition: node_exporter's conntrack metrics agree with Debian's
 * prometheus-node-exporter run on the same namespace (name, type, value), the text passes
 * `promtool check metrics`, OpenMetrics is served when asked for, /healthz answers, and
 * SIGTERM stops the process cleanly.
 */
import { execFile } from 'child_process';
import { Conntrack } from '../../../lib';
import { Sandbox, sandbox } from '../../../apps/testing';
import { Children, cliCount, nsGet, nsGetRetry, parseExposition, seedTable, startExporter, valueOf } from './helpers';

const EXPORTER = '[::1]:9940';
const NODE_EXPORTER = '[::1]:9100';

function promtool(input: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const p = execFile('promtool', ['check', 'metrics'], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr });
    });
    p.stdin?.end(input);
  });
}

describe('exporter exposition', () => {
  const children = new Children();
  let ns: Sandbox | undefined;

  afterEach(async () => {
    await children.stopAll();
    await ns?.close();
    ns = undefined;
  });

  test('the node_nf_conntrack_* metrics match prometheus-node-exporter --collector.conntrack on the same namespace', async () => {
    ns = await sandbox();
    await seedTable(ns);
    await startExporter(children, ns, ['--listen', EXPORTER]);
    children.start(ns, 'node_exporter', 'prometheus-node-exporter', ['--collector.disable-defaults', '--collector.conntrack', `--web.listen-address=${NODE_EXPORTER}`]);
    const theirs = parseExposition((await nsGetRetry(ns, `http://${NODE_EXPORTER}/metrics`)).body);
    const ours = parseExposition((await nsGet(ns, `http://${EXPORTER}/metrics`)).body);

    const nodeNames = (m: Map<string, unknown>): string[] => [...m.keys()].filter((n) => n.startsWith('node_nf_conntrack_')).sort();
    expect(nodeNames(theirs)).toEqual([
      'node_nf_conntrack_entries', 'node_nf_conntrack_entries_limit', 'node_nf_conntrack_stat_drop',
      'node_nf_conntrack_stat_early_drop', 'node_nf_conntrack_stat_found', 'node_nf_conntrack_stat_ignore',
      'node_nf_conntrack_stat_insert', 'node_nf_conntrack_stat_insert_failed', 'node_nf_conntrack_stat_invalid',
      'node_nf_conntrack_stat_search_restart',
    ]);
    expect(nodeNames(ours)).toEqual(nodeNames(theirs));
    for (const name of nodeNames(theirs)) {
      const a = theirs.get(name)!;
      const b = ours.get(name)!;
      expect({ name, type: b.type, samples: b.samples }).toEqual({ name, type: a.type, samples: a.samples });
    }
    // The values are this namespace's, not zeros: 15 entries, and the inserts of the ping flows.
    expect(valueOf(ours, 'node_nf_conntrack_entries')).toBe(await cliCount(ns));
    expect(valueOf(ours, 'node_nf_conntrack_entries')).toBe(15);
    expect(valueOf(ours, 'node_nf_conntrack_stat_insert')).toBeGreaterThanOrEqual(2);
  });

  test('the text exposition passes promtool check metrics, with every family populated', async () => {
    ns = await sandbox();
    await seedTable(ns);
    // An expectation (on a master with the ftp helper), so conntrack_expectations has a series.
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const master = { src: '10.2.0.1', dst: '10.2.0.2', sport: 40000, dport: 21 };
      await ct.create({ proto: 'tcp', orig: master, timeout: 600, state: 'ESTABLISHED', helper: 'ftp' });
      await ct.expectations.create({ master: { proto: 'tcp', orig: master }, tuple: { src: '10.2.0.2', dst: '10.2.0.1', dport: 50000 }, timeout: 300 });
    } finally {
      await ct.close();
    }
    const exporter = await startExporter(children, ns, ['--listen', EXPORTER]);
    await ns.run('ping', ['-c', '1', '-q', '127.0.0.3']);
    await ns.run('conntrack', ['-D', '-p', 'icmp', '-d', '127.0.0.3']);

    let text = '';
    for (let i = 0; i < 100; i++) {
      text = (await nsGet(ns, `http://${EXPORTER}/metrics`)).body;
      if (/conntrack_finished_flow_packets_total\{[^}]*proto="icmp"[^}]*direction="orig"\} 1\b/.test(text)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const fams = parseExposition(text);
    expect(valueOf(fams, 'conntrack_finished_flow_packets_total', { proto: 'icmp', direction: 'orig' })).toBe(1);
    expect(valueOf(fams, 'conntrack_finished_flow_bytes_total', { proto: 'icmp', direction: 'orig' })).toBe(84);
    expect(valueOf(fams, 'conntrack_events_total', { type: 'new' })).toBe(1);
    expect(valueOf(fams, 'conntrack_events_total', { type: 'destroy' })).toBe(1);
    const expectations = (await ns.run('conntrack', ['-L', 'expect'])).stdout.split('\n').filter((l) => l.trim() !== '').length;
    expect(expectations).toBe(1);
    expect(valueOf(fams, 'conntrack_expectations', { helper: 'ftp' })).toBe(1);
    for (const [name, f] of fams) {
      expect({ name, samples: f.samples.length > 0 }).toEqual({ name, samples: true });
    }
    const result = await promtool(text);
    expect(result).toEqual({ code: 0, output: '' });
    expect(exporter.running).toBe(true);
  });

  test('OpenMetrics on request, /healthz, 404, and a clean stop on SIGTERM', async () => {
    ns = await sandbox();
    await seedTable(ns);
    const exporter = await startExporter(children, ns, ['--listen', EXPORTER]);
    const text = await nsGet(ns, `http://${EXPORTER}/metrics`);
    expect(text.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(text.body).toMatch(/^# TYPE conntrack_events_total counter$/m);

    const om = await nsGet(ns, `http://${EXPORTER}/metrics`, 'application/openmetrics-text; version=1.0.0');
    expect(om.contentType).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    expect(om.body).toMatch(/^# TYPE conntrack_events counter$/m);
    expect(om.body).toMatch(/^conntrack_events_total\{type="new"\} \d+$/m);
    expect(om.body.endsWith('\n# EOF\n')).toBe(true);
    // Both formats say the same.
    expect(valueOf(parseExposition(om.body), 'node_nf_conntrack_entries')).toBe(15);
    expect(valueOf(parseExposition(text.body), 'node_nf_conntrack_entries')).toBe(15);
    // The text registry is not affected by the OpenMetrics one (counter names keep _total).
    const again = await nsGet(ns, `http://${EXPORTER}/metrics`);
    expect(again.body).toMatch(/^# TYPE conntrack_events_total counter$/m);

    const health = await nsGet(ns, `http://${EXPORTER}/healthz`);
    expect(health).toEqual({ status: 200, contentType: 'text/plain; charset=utf-8', body: 'ok\n' });
    expect((await nsGet(ns, `http://${EXPORTER}/nothing`)).status).toBe(404);

    expect(await exporter.stop()).toBe(0);
    expect(exporter.output).toMatch(/nfct exporter: stopped/);
  });
});
