/**
 * Ack-only requests sent in runs and bulk batches ask the kernel for one ack per datagram
 * (sparse acks): a request without NLM_F_ACK is answered only when it fails, and a later
 * reply says it succeeded. These check, against the real kernel, that every outcome still
 * lands on the right item: failures in the middle, at the ends, from a send that failed,
 * and mixed with single requests of other kinds on the same socket.
 */
import { Conntrack } from '../../../lib/conntrack';
import { ConntrackError } from '../../../lib/common/errors';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { addon } from '../native/addon';

const ENOBUFS = 105;

async function tableSize(ns: Sandbox): Promise<number> {
  return Number((await ns.sh('conntrack -C')).stdout.trim());
}

const key = (i: number) => ({ proto: 'udp' as const, orig: { src: '10.3.0.1', dst: '10.3.0.2', sport: 1 + (i % 60000), dport: 1000 + Math.floor(i / 60000) } });
const spec = (i: number) => ({ ...key(i), timeout: 300, mark: 3 });

afterEach(() => addon.testing.reset());

describe('sparse acks', () => {
  test('createMany: refusals anywhere in a large batch are reported at their index', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const N = 20000; // several windows and many datagrams
        const existing = [0, 1, 977, 4095, 4096, 8191, 12345, 19998, 19999];
        for (const i of existing) await ct.create({ ...spec(i), mark: 9 });
        const r = await ct.createMany(Array.from({ length: N }, (_, i) => spec(i)));
        expect(r.ok).toBe(N - existing.length);
        expect(r.errors.map((e) => [e.index, e.error.code])).toEqual(existing.map((i) => [i, 'EEXIST']));
        expect(r.errors[0].error).toBeInstanceOf(ConntrackError);
        expect(await tableSize(ns)).toBe(N);
        // The pre-existing entries kept their mark: the refused items changed nothing.
        expect((await ct.list({ mark: 9 })).map((f) => f.orig.sport as number).sort((a, b) => a - b)).toEqual(existing.map((i) => key(i).orig.sport).sort((a, b) => a - b));
      } finally {
        await ct.close();
      }
    });
  });

  test('concurrent single creates: exactly the refused promises reject', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const N = 5000;
        const existing = new Set([3, 128, 129, 2500, 4999]);
        for (const i of existing) await ct.create(spec(i));
        const outcomes = await Promise.allSettled(Array.from({ length: N }, (_, i) => ct.create(spec(i))));
        const rejected = outcomes.flatMap((o, i) => (o.status === 'rejected' ? [[i, (o.reason as ConntrackError).code]] : []));
        expect(rejected).toEqual([...existing].map((i) => [i, 'EEXIST']));
        expect(await tableSize(ns)).toBe(N);
      } finally {
        await ct.close();
      }
    });
  });

  test('many concurrent updates each reach the kernel with their own payload', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const N = 20000; // more than the window: queued payloads outgrow and compact the staging buffer
        expect((await ct.createMany(Array.from({ length: N }, (_, i) => spec(i)))).ok).toBe(N);
        await Promise.all(Array.from({ length: N }, (_, i) => ct.update({ ...key(i), mark: 100 + (i % 977) })));
        const marks = new Map((await ct.list()).map((f) => [f.orig.sport as number, f.mark]));
        const wrong = Array.from({ length: N }, (_, i) => i).filter((i) => marks.get(key(i).orig.sport) !== 100 + (i % 977));
        expect(wrong).toEqual([]);
      } finally {
        await ct.close();
      }
    });
  });

  test('deleteMany and gets on the same socket at the same time keep their own outcomes', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const N = 6000;
        expect((await ct.createMany(Array.from({ length: N }, (_, i) => spec(i)))).ok).toBe(N);
        // Delete the even ones plus some that never existed, while reading odd ones.
        const keys = Array.from({ length: N / 2 }, (_, k) => key(2 * k)).concat([key(N), key(N + 2)]);
        const [d, ...got] = await Promise.all([ct.deleteMany(keys), ...[1, 777, 5999].map((i) => ct.get(key(i)))]);
        expect(d.ok).toBe(N / 2);
        expect(d.errors.map((e) => [e.index, e.error.code])).toEqual([[N / 2, 'ENOENT'], [N / 2 + 1, 'ENOENT']]);
        expect(got.map((f) => f?.orig.sport)).toEqual([1, 777, 5999].map((i) => key(i).orig.sport));
        expect(await tableSize(ns)).toBe(N / 2);
      } finally {
        await ct.close();
      }
    });
  });

  test('a datagram the sender thread could not send fails exactly its items; later datagrams do not vouch for them', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const N = 3000; // about 400 KB of messages: several datagrams
        addon.testing.failSend(2, ENOBUFS); // the second datagram of the batch
        const r = await ct.createMany(Array.from({ length: N }, (_, i) => spec(i)));
        const failed = r.errors.map((e) => e.index);
        expect(failed.length).toBeGreaterThan(0);
        expect(r.errors.every((e) => e.error.code === 'ENOBUFS' && e.error.syscall === 'sendmsg')).toBe(true);
        // One contiguous run of items after the first datagram, before the last.
        expect(failed[0]).toBeGreaterThan(0);
        expect(failed[failed.length - 1]).toBeLessThan(N - 1);
        expect(failed[failed.length - 1] - failed[0] + 1).toBe(failed.length);
        expect(r.ok).toBe(N - failed.length);
        // What the kernel has is what was reported: the failed items are not in the table.
        expect(await tableSize(ns)).toBe(r.ok);
        for (const i of [failed[0], failed[failed.length - 1]]) {
          await expect(ct.get(key(i))).rejects.toMatchObject({ code: 'ENOENT' });
        }
      } finally {
        await ct.close();
      }
    });
  });
});
