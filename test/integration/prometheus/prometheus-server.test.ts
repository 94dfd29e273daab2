/**
 * End to end: the exporter and a real Prometheus server (Debian's `prometheus`) run inside
 * one namespace with known traffic and entries; Prometheus scrapes the exporter over
 * loopback and its HTTP query API must report what `conntrack -C` and `conntrack -L` say.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { Sandbox, sandbox } from '../../../apps/testing';
import { Children, cliCount, cliCounts, nsGet, seedTable, startExporter } from './helpers';
import { sleep } from '../../helpers/wait';

const EXPORTER = '[::1]:9940';
const PROMETHEUS = '[::1]:9090';

interface QueryResult {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(ns: Sandbox, expr: string): Promise<QueryResult[]> {
  const r = await nsGet(ns, `http://${PROMETHEUS}/api/v1/query?query=${encodeURIComponent(expr)}`);
  if (r.status !== 200) throw new Error(`query ${expr}: HTTP ${r.status}: ${r.body}`);
  const body = JSON.parse(r.body) as { status: string; data: { result: QueryResult[] } };
  if (body.status !== 'success') throw new Error(`query ${expr}: ${r.body}`);
  return body.data.result;
}

describe('a real Prometheus server scraping the exporter', () => {
  const children = new Children();
  let ns: Sandbox | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    await children.stopAll();
    await ns?.close();
    ns = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  test('node_nf_conntrack_entries equals conntrack -C and flows by state equal conntrack -L', async () => {
    ns = await sandbox();
    await seedTable(ns);
    const exporter = await startExporter(children, ns, ['--listen', EXPORTER]);

    dir = mkdtempSync(path.join(tmpdir(), 'conntrack-prom-'));
    const config = path.join(dir, 'prometheus.yml');
    writeFileSync(config, [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: conntrack',
      '    static_configs:',
      `      - targets: ['${EXPORTER}']`,
      '',
    ].join('\n'));
    const prometheus = children.start(ns, 'prometheus', '/usr/bin/prometheus', [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=${PROMETHEUS}`,
    ]);
    await prometheus.waitFor(/Server is ready to receive web requests/, 30000);

    // Wait for a successful scrape that carried our series.
    const end = Date.now() + 30000;
    let entries: QueryResult[] = [];
    for (;;) {
      const up = await query(ns, 'up{job="conntrack"}');
      entries = await query(ns, 'node_nf_conntrack_entries');
      if (up.length === 1 && up[0].value[1] === '1' && entries.length === 1) break;
      if (Date.now() > end) throw new Error(`no successful scrape: up=${JSON.stringify(up)}\nprometheus:\n${prometheus.output}\nexporter:\n${exporter.output}`);
      await sleep(250);
    }

    const count = await cliCount(ns);
    expect(count).toBe(15); // 2 ICMP flows (ping) + 13 entries made by seedTable
    expect(Number(entries[0].value[1])).toBe(count);

    const cli = await cliCounts(ns);
    const series = await query(ns, 'sum by (proto, state) (conntrack_flows)');
    const fromPrometheus = new Map(series.map((s) => [`${s.metric.proto}|${s.metric.state ?? ''}`, Number(s.value[1])]));
    expect(Object.fromEntries([...fromPrometheus].sort())).toEqual(Object.fromEntries([...cli].sort()));
    expect(cli.get('tcp|ESTABLISHED')).toBe(4);
    expect(cli.get('icmp|')).toBe(2);

    // The ipv6 entries are told apart by family.
    const v6 = await query(ns, 'sum(conntrack_flows{family="ipv6"})');
    expect(Number(v6[0].value[1])).toBe(2);
    const limit = await query(ns, 'node_nf_conntrack_entries_limit');
    const max = Number((await ns.run('cat', ['/proc/sys/net/netfilter/nf_conntrack_max'])).stdout.trim());
    expect(Number(limit[0].value[1])).toBe(max);

    // Prometheus asks for OpenMetrics first; the exporter answers in it.
    const accept = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
    const om = await nsGet(ns, `http://${EXPORTER}/metrics`, accept);
    expect(om.contentType).toMatch(/^application\/openmetrics-text; version=1\.0\.0/);
    expect(om.body.endsWith('# EOF\n')).toBe(true);

    expect(await exporter.stop()).toBe(0);
    expect(exporter.output).toMatch(/stopped/);
  });
});
