/**
 * A resync requested while the mirror replays the events it held during a reconciling dump
 * (a listener that reads `lost` can start one): the events being replayed must survive it,
 * and the mirror must go on resynchronising afterwards. The request is made through the
 * mirror's private requestResync() from an 'add' listener that runs during the replay; the
 * loss that would make it in the field cannot be timed to that moment.
 */
import { Conntrack, Mirror, ResyncInfo } from '../../../lib';
import { withSandbox } from '../../../apps/testing';

const TABLE = 60000; // a dump long enough (about 50 ms) for each burst below to land inside it
const spec = (i: number, b: number) => ({ proto: 'udp' as const, orig: { src: `10.${b}.${(i >> 8) & 255}.${i & 255}`, dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600 });

test('a resync requested during the replay of held events: the replay completes and the next resync runs', async () => {
  await withSandbox(async (ns) => {
    const ct = await Conntrack.open({ netns: ns.path });
    const load = await Conntrack.open({ netns: ns.path });
    const m: Mirror = ct.mirror({ refreshInterval: 0, receiveBufferSize: 32 << 20 }); // room for the bursts below
    try {
      expect((await ct.createMany(Array.from({ length: TABLE }, (_, i) => spec(i, 60)))).ok).toBe(TABLE);
      await m.ready;
      await m.settle();
      const internals = m as unknown as { syncing: boolean; pending: unknown[] | undefined; dump: unknown; requestResync(): void };
      let requested = 0;
      m.on('add', () => {
        // In the replay: still synchronising, the dump over and the held events detached.
        if (internals.syncing && internals.dump === undefined && internals.pending === undefined && requested === 0) {
          requested++;
          internals.requestResync();
        }
      });
      const resyncs: ResyncInfo[] = [];
      m.on('resync', (info) => resyncs.push(info));
      // Entries made while a refresh dumps: their NEW events are held, then replayed.
      let replayed = 0;
      for (let round = 0; round < 8 && requested === 0; round++) {
        const refresh = m.refresh();
        // Once the refresh holds events (its barrier answered, its dump starting).
        for (let k = 0; k < 100000 && internals.pending === undefined; k++) await new Promise((r) => setImmediate(r));
        await load.createMany(Array.from({ length: 3000 }, (_, i) => spec(i, 61 + round)));
        replayed = (await refresh).replayed;
      }
      expect(replayed).toBeGreaterThan(0);
      expect(requested).toBe(1);
      // The resync it asked for runs once the refresh is done; then the copy is exact.
      await m.settle();
      expect(resyncs.some((r) => r.reason === 'lost')).toBe(true);
      expect(m.synchronizing).toBe(false);
      expect(m.size).toBe((await ct.stats()).count);
    } finally {
      m.close();
      await load.close();
      await ct.close();
    }
  });
});
