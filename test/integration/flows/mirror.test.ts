import { Conntrack, DEFAULT_REFRESH_INTERVAL, Flow, Mirror, ResyncInfo } from '../../../lib';
import { withSandbox, Sandbox } from '../../../apps/testing';
import { floodBlocking } from '../../helpers/child';

/** The table as `conntrack -L -o id` prints it: "proto src dst sport dport id" lines. */
async function kernelTable(ns: Sandbox): Promise<string[]> {
  const { stdout } = await ns.run('conntrack', ['-L', '-o', 'id']);
  const rows: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^(\w+)\s.*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+).*\bid=(\d+)/.exec(line);
    if (m) rows.push(`${m[1]} ${m[2]} ${m[3]} ${m[4]} ${m[5]} ${m[6]}`);
  }
  return rows.sort();
}

const row = (f: Flow): string => `${f.proto} ${f.orig.src} ${f.orig.dst} ${f.orig.sport} ${f.orig.dport} ${f.id}`;

function spec(i: number, base = 1) {
  return { proto: 'udp' as const, orig: { src: `10.${base}.${i >> 8}.${i & 255}`, dst: '10.99.0.1', sport: 1000, dport: 53 }, timeout: 600 };
}

/** The mirror's change events, as "add SRC" / "update SRC OLDMARK->MARK" / "delete SRC". */
function track(m: Mirror): string[] {
  const changes: string[] = [];
  m.on('add', (f: Flow) => changes.push(`add ${f.orig.src}`));
  m.on('update', (f: Flow, prev: Flow) => changes.push(`update ${f.orig.src} ${prev.mark}->${f.mark}`));
  m.on('delete', (f: Flow) => changes.push(`delete ${f.orig.src}`));
  return changes;
}

describe('mirror', () => {
  test('starts from the table, then follows adds, updates and deletes; lookup by id and tuple', async () => {
    await withSandbox(async (ns) => {
      // With event delivery on, every entry gets an event cache when it is created; in the
      // default mode (2) only while some process on the host listens, which a test cannot
      // control (the 'refresh' test below covers entries without one).
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 5; i++) await ct.create(spec(i));
        const m = ct.mirror();
        const changes = track(m);
        await m.ready;
        expect(m.refreshInterval).toBe(0); // nf_conntrack_events=1: events cover every change
        expect(m.size).toBe(5);
        expect([...m].map(row).sort()).toEqual(await kernelTable(ns));
        const first = [...m.values()].find((f) => f.orig.src === '10.1.0.0')!;
        // Every read decodes a new Flow from the bytes the mirror holds.
        expect(m.get(first.id)).toEqual(first);
        expect(m.get(first.id)).not.toBe(first);
        expect(m.get({ proto: 'udp', src: '10.1.0.0', dst: '10.99.0.1', sport: 1000, dport: 53 })).toEqual(first);
        expect(m.get(first)).toEqual(first);
        expect(m.has({ proto: 'tcp', src: '10.1.0.0', dst: '10.99.0.1', sport: 1000, dport: 53 })).toBe(false);

        await ct.create(spec(7));
        await ct.update({ proto: 'udp', orig: spec(1).orig, mark: 42 });
        await ct.delete({ proto: 'udp', orig: spec(2).orig });
        await m.settle();
        expect(changes).toEqual(['add 10.1.0.7', 'update 10.1.0.1 0->42', 'delete 10.1.0.2']);
        expect(m.size).toBe(5);
        expect(m.get({ proto: 'udp', src: '10.1.0.1', dst: '10.99.0.1', sport: 1000, dport: 53 })?.mark).toBe(42);
        expect([...m].map(row).sort()).toEqual(await kernelTable(ns));
        m.close();
        expect(ct.children.size).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('after a flood that overran it, the mirror resynchronises and equals conntrack -L', async () => {
    await withSandbox(async (ns) => {
      // Event caches for the 300 entries made before the mirror: without them their deletes
      // below are silent, and a resync dump taken before the last delete keeps a few (that is
      // what refresh() is for, tested below; this test is about overruns).
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 300; i++) await ct.create(spec(i, 1));
        const m = ct.mirror();
        await m.ready;
        expect(m.size).toBe(300);
        const resyncs: ResyncInfo[] = [];
        m.on('resync', (info: ResyncInfo) => resyncs.push(info));
        // The flood runs in another process while this thread is blocked, so it overruns on
        // any machine: 30,000 entries made and deleted (60,000 events), then 3,000 creates
        // and deletes of the first 200, so the table ends at 3,100. The mirror falls behind
        // more than once, so events queued behind the first gap miss their own deletes: a
        // resync that held and replayed them (it used to, as the drop counter had already
        // been read in full at the first overrun) kept thousands of deleted entries.
        floodBlocking(ns.path, `
          const churn = range(30000, (i) => spec(i, 3));
          check(await ct.createMany(churn));
          check(await ct.deleteMany(churn.map(key)));
          await Promise.all([ct.createMany(range(3000, (i) => spec(i, 2))).then(check), ct.deleteMany(range(200, (i) => key(spec(i, 1)))).then(check)]);`);
        await m.settle();
        expect(m.lost).toBeGreaterThan(0);
        expect(m.resyncs).toBeGreaterThan(0);
        const last = resyncs[resyncs.length - 1];
        expect(last.reason).toBe('lost');
        expect(m.size).toBe(3100);
        expect(last.lost).toBe(m.lost);
        const table = await kernelTable(ns);
        expect(table).toHaveLength(3100);
        expect([...m].map(row).sort()).toEqual(table);
        // And it keeps following the table afterwards.
        await ct.delete({ proto: 'udp', orig: spec(0, 2).orig });
        await m.settle();
        expect(m.size).toBe(3099);
        expect([...m].map(row).sort()).toEqual(await kernelTable(ns));
      } finally {
        await ct.close();
      }
    });
  });

  test('a resync whose barrier reply the kernel drops silently (congested socket) still ends', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_events', 1);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        // A buffer larger than the 4 MB the reader thread holds for JavaScript: after the
        // flood the kernel's queue stays non-empty (and the socket congested, dropping every
        // reply without another ENOBUFS) for a while after the first resync starts.
        const m = ct.mirror({ receiveBufferSize: 16 << 20, refreshInterval: 0 });
        await m.ready;
        floodBlocking(ns.path, `
          const churn = range(60000, (i) => spec(i, 3));
          check(await ct.createMany(churn));
          check(await ct.deleteMany(churn.slice(0, 50000).map(key)));`);
        await m.settle();
        expect(m.lost).toBeGreaterThan(0);
        expect(m.size).toBe(10000);
        expect([...m].map(row).sort()).toEqual(await kernelTable(ns));
      } finally {
        await ct.close();
      }
    });
  });

  test('a filtered mirror holds only matching entries', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create(spec(1));
        await ct.create({ proto: 'tcp', orig: { src: '10.5.0.1', dst: '10.99.0.1', sport: 4000, dport: 80 }, state: 'ESTABLISHED', timeout: 600 });
        const m = ct.mirror({ filter: { proto: 'tcp' } });
        await m.ready;
        expect([...m].map((f) => f.proto)).toEqual(['tcp']);
        await ct.create(spec(2));
        await ct.create({ proto: 'tcp', orig: { src: '10.5.0.2', dst: '10.99.0.1', sport: 4000, dport: 80 }, state: 'ESTABLISHED', timeout: 600 });
        await m.settle();
        expect(m.size).toBe(2);
        expect(() => ct.mirror({ filter: { proto: 'nope' } } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.filter.proto' }));
        expect(() => ct.mirror({ size: 1 } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.size' }));
        m.close();
      } finally {
        await ct.close();
      }
    });
  });
  test('a refresh brings an unchanged entry up to date (its timeout) without reporting a change', async () => {
    await withSandbox(async (ns) => {
      // No event cache: the kernel announces neither the entry nor its new timeout.
      await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create(spec(0));
        await ns.sysctl('net.netfilter.nf_conntrack_events', 2);
        const m = ct.mirror({ refreshInterval: 0 });
        await m.ready;
        const key = { proto: 'udp' as const, src: '10.1.0.0', dst: '10.99.0.1', sport: 1000, dport: 53 };
        const held = m.get(key)!;
        expect(held.timeout).toBeGreaterThan(500);
        await ct.update({ proto: 'udp', orig: spec(0).orig, timeout: 30 });
        const info = await m.refresh();
        expect(info).toMatchObject({ added: 0, updated: 0, removed: 0, size: 1 });
        const now = m.get(key)!;
        expect(now).toEqual({ ...held, timeout: now.timeout });
        expect(held.timeout).toBeGreaterThan(500); // a Flow read before is a copy: it does not change
        const kernel = await ct.get({ proto: 'udp', orig: spec(0).orig });
        expect(now.timeout).toBeLessThanOrEqual(30);
        expect(now.timeout).toBeGreaterThanOrEqual(kernel.timeout);
        expect(now.timeout - kernel.timeout).toBeLessThanOrEqual(2);
        m.close();
      } finally {
        await ct.close();
      }
    });
  });
  test('entries the kernel never announces are caught by refresh(), and by the refresh timer', async () => {
    await withSandbox(async (ns) => {
      // Made while event delivery is off, these entries carry no event cache: the kernel
      // will never report their changes or their removal.
      await ns.sysctl('net.netfilter.nf_conntrack_events', 0);
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        for (let i = 0; i < 5; i++) await ct.create(spec(i));
        await ns.sysctl('net.netfilter.nf_conntrack_events', 2); // the default: 'auto'
        const m = ct.mirror();
        const changes = track(m);
        await m.ready;
        expect(m.refreshInterval).toBe(DEFAULT_REFRESH_INTERVAL); // not 1: periodic reconciles
        expect(m.size).toBe(5);

        await ct.update({ proto: 'udp', orig: spec(1).orig, mark: 42 });
        await ct.delete({ proto: 'udp', orig: spec(2).orig });
        await ct.create(spec(7)); // made while the mirror listens: announced
        await m.settle();
        expect(changes).toEqual(['add 10.1.0.7']); // the kernel said nothing about 1 and 2
        expect(m.size).toBe(6);

        const info = await m.refresh();
        expect(info).toMatchObject({ reason: 'refresh', added: 0, updated: 1, removed: 1, size: 5 });
        expect(changes).toEqual(['add 10.1.0.7', 'update 10.1.0.1 0->42', 'delete 10.1.0.2']);
        expect(m.refreshes).toBe(1);
        expect(m.resyncs).toBe(0);
        expect([...m].map(row).sort()).toEqual(await kernelTable(ns));
        m.close();
        await expect(m.refresh()).rejects.toMatchObject({ code: 'ERR_CLOSED' });

        // The timer: a mirror that refreshes every 50 ms notices a silent removal by itself.
        const t = ct.mirror({ refreshInterval: 50 });
        await t.ready;
        expect(t.refreshInterval).toBe(50);
        expect(t.has({ proto: 'udp', src: '10.1.0.3', dst: '10.99.0.1', sport: 1000, dport: 53 })).toBe(true);
        const refreshed = new Promise<ResyncInfo>((resolve) => t.on('resync', (r: ResyncInfo) => r.removed > 0 && resolve(r)));
        await ct.delete({ proto: 'udp', orig: spec(3).orig });
        expect(await refreshed).toMatchObject({ reason: 'refresh', removed: 1, size: 4 });
        expect(t.has({ proto: 'udp', src: '10.1.0.3', dst: '10.99.0.1', sport: 1000, dport: 53 })).toBe(false);
        t.close();
        expect(() => ct.mirror({ refreshInterval: -1 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'options.refreshInterval' }));
        expect(() => ct.mirror({ refreshInterval: '10' } as never)).toThrow(expect.objectContaining({ field: 'options.refreshInterval' }));
        expect(ct.children.size).toBe(0);
      } finally {
        await ct.close();
      }
    });
  });
});
