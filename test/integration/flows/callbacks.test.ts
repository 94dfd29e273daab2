/**
 * Callbacks of the caller's that throw (deleteMatching predicates, event stream, mirror
 * and expectation listeners) run inside the socket's receive callback: the throw must end
 * the operation with ERR_CALLBACK at a defined point, never escape into native code (a
 * fatal exception) or leave a promise pending.
 */
import { Conntrack, ConntrackError, Flow, FlowEvent } from '../../../lib';
import { runNode } from '../../helpers/child';
import { Sandbox as Netns, withSandbox as withNetns } from '../../../apps/testing';

const spec = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.7.0.1', dst: '10.7.0.2', sport: 1000 + i, dport: 53 }, timeout: 600 });

async function cliCount(ns: Netns): Promise<number> {
  const { stdout } = await ns.run('conntrack', ['-L']);
  return stdout.split('\n').filter((l) => l.startsWith('udp')).length;
}

/** Fails the test if anything reaches process-level uncaught exception handling. */
function noUncaught(): { errors: unknown[]; restore(): void } {
  const errors: unknown[] = [];
  const on = (e: unknown): void => void errors.push(e);
  process.on('uncaughtException', on);
  return { errors, restore: () => void process.off('uncaughtException', on) };
}

describe('throwing callbacks', () => {
  test('deleteMatching: a predicate that throws at the 55th entry rejects with ERR_CALLBACK and deleted = 54; 46 stay', async () => {
    await withNetns(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const guard = noUncaught();
      try {
        const r = await ct.createMany(Array.from({ length: 100 }, (_, i) => spec(i)));
        expect(r.ok).toBe(100);
        let calls = 0;
        const boom = new Error('predicate bug');
        const err = await ct.deleteMatching({ proto: 'udp' }, () => {
          if (++calls === 55) throw boom;
          return true;
        }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err).toMatchObject({ code: 'ERR_CALLBACK', deleted: 54 });
        expect((err as Error).cause).toBe(boom);
        expect((err as Error).message).toMatch(/predicate threw: predicate bug/);
        expect(calls).toBe(55); // stops at the throw: no entry is looked at after it
        expect(await cliCount(ns)).toBe(46);
        // The handle still works.
        expect(await ct.deleteMatching({ proto: 'udp' })).toBe(46);
        expect(guard.errors).toEqual([]);
      } finally {
        guard.restore();
        await ct.close();
      }
    });
  });

  test("events: an 'event' listener that throws ends the stream with ERR_CALLBACK ('error' listener, then 'close')", async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      const guard = noUncaught();
      try {
        const stream = ct.events({ types: ['new'] });
        const seen: number[] = [];
        const boom = new Error('listener bug');
        stream.on('event', (ev: FlowEvent) => {
          seen.push(ev.flow.orig.sport!);
          if (seen.length === 2) throw boom;
        });
        const failed = new Promise<ConntrackError>((resolve) => stream.once('error', resolve));
        const closed = new Promise<void>((resolve) => stream.once('close', resolve));
        for (let i = 0; i < 5; i++) await ct.create(spec(i));
        const err = await failed;
        await closed;
        expect(err).toMatchObject({ code: 'ERR_CALLBACK' });
        expect(err.cause).toBe(boom);
        expect(seen).toEqual([1000, 1001]); // nothing delivered after the throw
        expect(stream.isClosed).toBe(true);
        await expect(stream.next()).rejects.toMatchObject({ code: 'ERR_CALLBACK' });
        expect(guard.errors).toEqual([]);
        expect(await cliCount(ns)).toBe(5); // the handle is unaffected
      } finally {
        guard.restore();
        await ct.close();
      }
    });
  });

  test('events: with no error listener and no iterator, the throw is reported as an uncaught exception after the stream closed', async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      // Jest owns uncaught exceptions in its own process: observe them in a child.
      const r = await runNode(`
        const { Conntrack } = require(DIST);
        process.on('uncaughtException', (e) => {
          console.log(JSON.stringify({ uncaught: e.code, cause: e.cause && e.cause.message, closed: stream.isClosed }));
          ct.close().then(() => process.exit(0));
        });
        let ct, stream;
        (async () => {
          ct = await Conntrack.open({ netns: process.argv[1] });
          stream = ct.events({ types: ['new'] });
          stream.on('event', () => { throw new Error('unobserved'); });
          await ct.create({ proto: 'udp', orig: { src: '10.7.0.1', dst: '10.7.0.2', sport: 1, dport: 53 }, timeout: 60 });
        })();
      `, [ns.path]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ uncaught: 'ERR_CALLBACK', cause: 'unobserved', closed: true });
    });
  });

  test("mirror: an 'add' listener that throws closes the mirror with ERR_CALLBACK; the copy keeps that add", async () => {
    await withNetns(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      const guard = noUncaught();
      try {
        const m = ct.mirror({ refreshInterval: 0 });
        await m.ready;
        const boom = new Error('mirror listener bug');
        m.on('add', (f: Flow) => {
          if (f.orig.sport === 1001) throw boom;
        });
        const failed = new Promise<ConntrackError>((resolve) => m.once('error', resolve));
        await ct.create(spec(0));
        await ct.create(spec(1));
        const err = await failed;
        expect(err).toMatchObject({ code: 'ERR_CALLBACK' });
        expect(err.cause).toBe(boom);
        expect(m.size).toBe(2);
        await ct.create(spec(2));
        await new Promise((r) => setTimeout(r, 50));
        expect(m.size).toBe(2); // closed: no longer follows the table
        expect(guard.errors).toEqual([]);
      } finally {
        guard.restore();
        await ct.close();
      }
    });
  });
});
