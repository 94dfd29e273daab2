/**
 * JSON.stringify of what the package hands out, from the real kernel: flows and events
 * with counters and timestamps on (bigints, written as decimal strings that parse back to
 * the same values), netlink and /proc statistics, and an expectation (captured bytes).
 */
import { readFileSync } from 'fs';
import * as path from 'path';
import { Conntrack, FlowEvent, readProcStats } from '../../../lib';
import { decodeExpectation } from '../../../lib/expect/decode';
import { withSandbox } from '../../../apps/testing';

const UDP = { proto: 'udp' as const, orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 4000, dport: 53 } };

describe('JSON.stringify against the kernel', () => {
  test('a flow and its events: bigints become decimal strings that round-trip', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
      await ns.sysctl('net.netfilter.nf_conntrack_timestamp', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const stream = ct.events({ types: ['new', 'destroy'] });
        const events: FlowEvent[] = [];
        const two = new Promise<void>((resolve) => stream.on('event', (ev) => events.push(ev) === 2 && resolve()));
        await ct.create({ ...UDP, timeout: 100, mark: 3 });
        const [flow] = await ct.list();
        expect(typeof flow.counters?.orig.bytes).toBe('bigint');
        expect(typeof flow.timestamp?.start).toBe('bigint');
        const j = JSON.parse(JSON.stringify(flow));
        expect(j).toMatchObject({ id: flow.id, proto: 'udp', mark: 3, orig: UDP.orig, status: [...flow.status] });
        expect(j.counters).toEqual({
          orig: { packets: String(flow.counters!.orig.packets), bytes: String(flow.counters!.orig.bytes) },
          reply: { packets: String(flow.counters!.reply.packets), bytes: String(flow.counters!.reply.bytes) },
        });
        expect(BigInt(j.timestamp.start)).toBe(flow.timestamp!.start);
        expect(j.timestamp.start).toMatch(/^\d+$/);

        await ct.delete(UDP);
        await two;
        stream.close();
        for (const ev of events) {
          const e = JSON.parse(JSON.stringify(ev));
          expect(e.type).toBe(ev.type);
          expect(e.flow.id).toBe(ev.flow.id);
          if (ev.timestamp !== undefined) expect(BigInt(e.timestamp)).toBe(ev.timestamp);
        }
        const destroy = events.find((e) => e.type === 'destroy')!;
        expect(destroy.flow.timestamp?.stop).toBeDefined();
        expect(BigInt(JSON.parse(JSON.stringify(destroy)).flow.timestamp.stop)).toBe(destroy.flow.timestamp!.stop);

        const stats = await ct.stats();
        expect(JSON.parse(JSON.stringify(stats))).toEqual(stats);
      } finally {
        await ct.close();
      }
    });
  });

  test('/proc statistics and an expectation stringify and parse back equal', async () => {
    const proc = await readProcStats();
    expect(JSON.parse(JSON.stringify(proc))).toEqual(proc);
    const bytes = readFileSync(path.join(__dirname, '../../fixtures/expect/exp-ipv4-50000.bin'));
    const x = decodeExpectation(bytes, 0, bytes.length);
    const back = JSON.parse(JSON.stringify(x));
    expect(back).toEqual(x); // no bigints in an expectation: every field as it was
    expect(back.master.src).toBe(x.master.src);
  });
});
