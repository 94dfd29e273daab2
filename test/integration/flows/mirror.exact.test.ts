/**
 * The mirror holds entries as the kernel's message bytes and merges UPDATE events into
 * them: its contents must equal what `conntrack -L` prints, field by field (tuples, ICMP,
 * mark, zone, state, status, id, timeout), after creates, updates and destroys, after a
 * refresh, and after resyncs forced by losses.
 */
import { Conntrack, Flow, Mirror } from '../../../lib';
import { withSandbox, Sandbox } from '../../../apps/testing';
import { CliFlow, CliTuple, parseCli } from './dump.cli';

type Row = Record<string, unknown>;

function tuple(t: Flow['orig'] | CliTuple): Row {
  return t.icmp ? { src: t.src, dst: t.dst, icmp: { ...t.icmp } } : { src: t.src, dst: t.dst, sport: t.sport, dport: t.dport };
}

function fromFlow(f: Flow): Row {
  return {
    family: f.family, proto: f.proto, state: f.state, orig: tuple(f.orig), reply: tuple(f.reply), mark: f.mark, zone: f.zone,
    id: f.id, assured: f.status.includes('ASSURED'), unreplied: !f.status.includes('SEEN_REPLY'),
  };
}

function fromCli(c: CliFlow): Row {
  return {
    family: c.family, proto: c.proto, state: c.state, orig: tuple(c.orig), reply: tuple(c.reply), mark: c.mark, zone: c.zone,
    id: c.id, assured: c.assured, unreplied: c.unreplied,
  };
}

const byId = (a: Row, b: Row): number => (a.id as number) - (b.id as number);

/** Asserts the mirror equals the kernel's table; timeouts within a few seconds (they tick). */
async function expectExact(ns: Sandbox, m: Mirror): Promise<void> {
  await m.settle();
  const { stdout } = await ns.run('conntrack', ['-L', '-o', 'extended,id']);
  const cli = parseCli(stdout);
  const flows = [...m];
  expect(flows.map(fromFlow).sort(byId)).toEqual(cli.map(fromCli).sort(byId));
  const timeouts = new Map(cli.map((c) => [c.id, c.timeout]));
  for (const f of flows) {
    const t = timeouts.get(f.id)!;
    expect(f.timeout).toBeGreaterThanOrEqual(t);
    expect(f.timeout - t).toBeLessThanOrEqual(3);
  }
  // Every entry is found by its id and its tuple, and reads the same each time.
  for (const f of flows) {
    expect(m.get(f.id)).toEqual(f);
    expect(m.get(f)).toEqual(f);
  }
}

const udp = (i: number, zone = 0) => ({ proto: 'udp' as const, orig: { src: `10.1.${i >> 8}.${i & 255}`, dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600, zone });
const tcp = (i: number) => ({ proto: 'tcp' as const, orig: { src: `10.2.0.${i}`, dst: '10.99.0.2', sport: 40000 + i, dport: 443 }, state: 'ESTABLISHED' as const, timeout: 900 });
const v6 = (i: number) => ({ proto: 'udp' as const, orig: { src: `fd00::${i + 1}`, dst: 'fd00:1::1', sport: 5353, dport: 53 }, timeout: 600 });
const icmp = (i: number) => ({ proto: 'icmp' as const, orig: { src: '10.3.0.1', dst: '10.3.0.2', icmp: { type: 8, code: 0, id: 100 + i } }, timeout: 30 });

describe('mirror exactness', () => {
  test('equals conntrack -L after creates, updates, destroys, a refresh and resyncs after losses', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 40; i++) await ct.create(udp(i));
        for (let i = 0; i < 10; i++) await ct.create(tcp(i));
        for (let i = 0; i < 5; i++) await ct.create(v6(i));
        for (let i = 0; i < 5; i++) await ct.create(icmp(i));
        await ct.create(udp(0, 3)); // the same tuple in another zone: another entry
        const m = ct.mirror({ refreshInterval: 0 });
        await m.ready;
        expect(m.size).toBe(61);
        await expectExact(ns, m);

        // Updates that change marks, timeouts, TCP states and status; destroys; new entries.
        for (let i = 0; i < 10; i++) await ct.update({ proto: 'udp', orig: udp(i).orig, mark: 100 + i });
        for (let i = 0; i < 5; i++) await ct.update({ proto: 'tcp', orig: tcp(i).orig, state: 'TIME_WAIT', timeout: 120 });
        await ct.update({ proto: 'tcp', orig: tcp(5).orig, status: ['ASSURED'] });
        await ct.update({ proto: 'udp', orig: v6(0).orig, mark: 7, timeout: 60 });
        for (let i = 30; i < 40; i++) await ct.delete({ proto: 'udp', orig: udp(i).orig });
        await ct.delete({ proto: 'icmp', orig: icmp(0).orig });
        for (let i = 40; i < 50; i++) await ct.create(udp(i));
        await expectExact(ns, m);
        expect(m.get({ proto: 'tcp', src: '10.2.0.1', dst: '10.99.0.2', sport: 40001, dport: 443 })?.state).toBe('TIME_WAIT');
        expect(m.get({ proto: 'udp', src: '10.1.0.0', dst: '10.99.0.1', sport: 1000, dport: 53, zone: 3 })?.zone).toBe(3);

        const info = await m.refresh();
        expect(info).toMatchObject({ added: 0, updated: 0, removed: 0, size: 60 });
        await expectExact(ns, m);
        m.close();

        // A mirror with a small buffer, overrun by bursts of requests in flight: resyncs.
        const small = ct.mirror({ refreshInterval: 0, receiveBufferSize: 4096 });
        await small.ready;
        const work: Promise<unknown>[] = [];
        for (let i = 0; i < 40; i++) work.push(ct.update({ proto: 'udp', orig: udp(i % 30).orig, mark: 1000 + i }));
        for (let i = 50; i < 1500; i++) work.push(ct.create(udp(i)));
        for (let i = 0; i < 5; i++) work.push(ct.update({ proto: 'tcp', orig: tcp(i).orig, state: 'CLOSE', timeout: 10 }));
        for (let i = 40; i < 45; i++) work.push(ct.delete({ proto: 'udp', orig: udp(i).orig }));
        await Promise.all(work);
        await small.settle();
        expect(small.lost).toBeGreaterThan(0);
        expect(small.resyncs).toBeGreaterThan(0);
        await expectExact(ns, small);
        // And it keeps following exactly after the resyncs.
        for (let i = 0; i < 20; i++) await ct.update({ proto: 'udp', orig: udp(50 + i).orig, mark: 5 });
        for (let i = 100; i < 120; i++) await ct.delete({ proto: 'udp', orig: udp(i).orig });
        await expectExact(ns, small);
        small.close();
      } finally {
        await ct.close();
      }
    });
  });
});
