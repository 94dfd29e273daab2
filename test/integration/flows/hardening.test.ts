/**
 * Defects found by lifecycle abuse and bad input, against the real kernel: half-applied
 * updates, close() with requests in flight, overlapping Dump.next() calls, input that was
 * accepted but should not be, and a full table reported as a bare ENOMEM.
 */
import { readFileSync, writeFileSync } from 'fs';
import { Conntrack, ConntrackError } from '../../../lib';
import { Sandbox as Netns, withSandbox as withNetns } from '../../../apps/testing';
import { realRootTest } from '../../helpers/real-root';

const udp = (i: number, base = 1) => ({ proto: 'udp' as const, orig: { src: `10.${base}.${(i >> 8) & 255}.${i & 255}`, dst: '10.99.0.1', sport: 1000, dport: 53 } });

async function cliLines(ns: Netns): Promise<string[]> {
  const { stdout } = await ns.run('conntrack', ['-L']);
  return stdout.split('\n').filter((l) => /^(udp|tcp)\s/.test(l));
}

async function open(ns: Netns, options: object = {}): Promise<Conntrack> {
  return Conntrack.open({ netns: ns.path, ...options });
}

describe('update() is all or nothing', () => {
  test('mark + timeout + labels without label space: refused, and mark and timeout are unchanged', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(1), timeout: 600, mark: 1 });
        const err = await ct.update({ ...udp(1), mark: 99, timeout: 30, labels: [3] }).catch((e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err).toMatchObject({ code: 'ERR_UNSUPPORTED', field: 'labels' });
        expect(err.message).toMatch(/Nothing was changed/);
        const [line] = await cliLines(ns);
        expect(line).toMatch(/mark=1\b/);
        const timeout = Number(/^udp\s+\d+\s+(\d+)/.exec(line)![1]);
        expect(timeout).toBeGreaterThan(500);
      } finally {
        await ct.close();
      }
    });
  });

  test('with label space, mark, timeout and labels all change', async () => {
    await withNetns(async (ns) => {
      await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct label set 127");
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(1), timeout: 600, mark: 1, labels: [1] });
        await ct.update({ ...udp(1), mark: 99, timeout: 30, labels: [3] });
        const f = await ct.get(udp(1));
        expect(f.mark).toBe(99);
        expect(f.timeout).toBeLessThanOrEqual(30);
        expect(f.labels).toEqual([3]);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('close() with requests in flight', () => {
  test('5,000 pending creates: none is ERR_CLOSED if the kernel made it; every one settles', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns);
      const outcomes = new Map<string, string>();
      const all = [];
      for (let i = 0; i < 5000; i++) {
        all.push(ct.create({ ...udp(i), timeout: 600 }).then(() => outcomes.set(udp(i).orig.src, 'ok'), (e: ConntrackError) => outcomes.set(udp(i).orig.src, e.code)));
      }
      // Let part of them go out, then close.
      await new Promise((r) => setImmediate(r));
      await ct.close();
      await Promise.all(all);
      expect(outcomes.size).toBe(5000);
      const codes = new Set(outcomes.values());
      for (const c of codes) expect(['ok', 'ERR_CLOSED', 'ERR_OUTCOME_UNKNOWN']).toContain(c);
      const made = new Set((await cliLines(ns)).map((l) => /src=(\S+)/.exec(l)![1]));
      for (const [src, code] of outcomes) {
        if (code === 'ok') expect(made.has(src)).toBe(true);
        if (code === 'ERR_CLOSED') expect(made.has(src)).toBe(false);
      }
      expect([...outcomes.values()].filter((c) => c === 'ok').length).toBeGreaterThan(0);
    });
  });
});

describe('Dump.next()', () => {
  test('two next() calls before the first settles both get an entry, in order', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns);
      try {
        await ct.createMany([udp(1), udp(2), udp(3)].map((k) => ({ ...k, timeout: 60 })));
        const dump = ct.dump();
        const [a, b] = await Promise.all([dump.next(), dump.next()]);
        const c = await dump.next();
        const d = await dump.next();
        expect([a.done, b.done, c.done, d.done]).toEqual([false, false, false, true]);
        expect(new Set([a.value!.orig.src, b.value!.orig.src, c.value!.orig.src]).size).toBe(3);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('input that must be refused', () => {
  test('open({ receiveBufferSize }) takes whole byte counts in range only', async () => {
    await withNetns(async (ns) => {
      for (const bad of [1.5, 0, -1, 100, NaN, Infinity, '65536', 2 ** 31]) {
        const err = await open(ns, { receiveBufferSize: bad }).catch((e) => e);
        expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.receiveBufferSize' });
      }
    });
  });

  test('a 16 KiB receive buffer: createMany of 2,000 reports what the kernel did (no false ENOBUFS)', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns, { receiveBufferSize: 16384 });
      try {
        const r = await ct.createMany(Array.from({ length: 2000 }, (_, i) => ({ ...udp(i), timeout: 600 })));
        expect(r.errors.map((e) => e.error.code)).toEqual([]);
        expect(r.ok).toBe(2000);
        expect(await cliLines(ns)).toHaveLength(2000);
      } finally {
        await ct.close();
      }
    });
  });

  test('a netns path with an embedded NUL is refused, not cut short', async () => {
    await withNetns(async (ns) => {
      const err = await Conntrack.open({ netns: `${ns.path}\0junk` }).catch((e) => e);
      expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    });
  });

  test('dump highWaterMark of NaN, "x", Infinity, 0 or 1.5 is refused', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns);
      try {
        for (const bad of [NaN, 'x', Infinity, 0, 1.5]) {
          expect(() => ct.dump(undefined, { highWaterMark: bad as number })).toThrow(expect.objectContaining({ field: 'options.highWaterMark' }));
          await expect(ct.list(undefined, { highWaterMark: bad as number })).rejects.toMatchObject({ field: 'options.highWaterMark' });
          expect(() => ct.expectations.dump(undefined, { highWaterMark: bad as number })).toThrow(expect.objectContaining({ field: 'options.highWaterMark' }));
        }
      } finally {
        await ct.close();
      }
    });
  });

  test('unknown keys are refused by every method taking options or a spec, naming the closest valid key', async () => {
    await withNetns(async (ns) => {
      const openErr = await open(ns, { recieveBufferSize: 1 << 20 }).catch((e) => e);
      expect(openErr).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'options.recieveBufferSize' });
      expect(openErr.message).toMatch(/did you mean receiveBufferSize\?/);
      const ct = await open(ns);
      try {
        await ct.create({ ...udp(1), timeout: 60 });
        const cases: [string, () => Promise<unknown> | unknown, string, string][] = [
          ['create', () => ct.create({ ...udp(2), timeout: 60, timout: 5 } as never), 'spec.timout', 'timeout'],
          ['upsert', () => ct.upsert({ ...udp(2), timeout: 60, mrk: 5 } as never), 'spec.mrk', 'mark'],
          ['createMany', () => ct.createMany([{ ...udp(2), timeout: 60, zon: 1 } as never]), 'items[0].spec.zon', 'zone'],
          ['update', () => ct.update({ ...udp(1), makr: 5 } as never), 'spec.makr', 'mark'],
          ['get key', () => ct.get({ ...udp(1), zoen: 1 } as never), 'key.zoen', 'zone'],
          ['get options', () => ct.get(udp(1), { zeroCounter: true } as never), 'options.zeroCounter', 'zeroCounters'],
          ['delete', () => ct.delete({ ...udp(1), idd: 1 } as never), 'key.idd', 'id'],
          ['list options', () => ct.list(undefined, { highWatermark: 5 } as never), 'options.highWatermark', 'highWaterMark'],
          ['dump options', () => ct.dump(undefined, { singal: undefined } as never), 'options.singal', 'signal'],
          ['filter', () => ct.list({ prto: 'udp' } as never), 'filter.prto', 'proto'],
          ['events', () => ct.events({ type: ['new'] } as never), 'options.type', 'types'],
          ['mirror', () => ct.mirror({ fliter: {} } as never), 'options.fliter', 'filter'],
          ['deleteMatching', () => ct.deleteMatching({ proto: 'udp' }, undefined, { exat: true } as never), 'options.exat', 'exact'],
          ['flush', () => ct.flush(undefined, { exact: true, sigal: 1 } as never), 'options.sigal', 'signal'],
          ['updateMatching', () => ct.updateMatching({ proto: 'udp' }, { mark: 1 }, { signl: undefined } as never), 'options.signl', 'signal'],
          ['expectations.events', () => ct.expectations.events({ typs: ['new'] } as never), 'options.typs', 'types'],
          ['expectations.list', () => ct.expectations.list(undefined, { highWaterMar: 1 } as never), 'options.highWaterMar', 'highWaterMark'],
          ['pressure', () => ct.pressure({ intervall: 100 } as never), 'options.intervall', 'interval'],
          ['settings.get', () => ct.settings.get({ signa: undefined } as never), 'options.signa', 'signal'],
        ];
        for (const [name, call, field, near] of cases) {
          let err: unknown;
          try {
            await call();
          } catch (e) {
            err = e;
          }
          expect([name, err]).toEqual([name, expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field })]);
          expect([name, (err as Error).message]).toEqual([name, expect.stringContaining(`did you mean ${near}?`)]);
        }
        // Nothing reached the kernel: the table holds the one entry made above.
        expect(await cliLines(ns)).toHaveLength(1);
        // A Flow from list() is still accepted where an entry is named.
        const [flow] = await ct.list();
        await expect(ct.get(flow)).resolves.toMatchObject({ id: flow.id });
        await ct.update({ ...flow, mark: 5 });
        await ct.delete(flow);
      } finally {
        await ct.close();
      }
    });
  });
});

const rootTest = realRootTest('hardening: table-full message', 'lowering nf_conntrack_max needs real root in the initial user namespace');

describe('a full table', () => {
  rootTest('create and createMany say the table is full, with count and max and what to do', async () => {
    await withNetns(async (ns) => {
      const ct = await open(ns);
      const MAX = '/proc/sys/net/netfilter/nf_conntrack_max';
      const old = readFileSync(MAX, 'utf8').trim();
      try {
        await ct.createMany(Array.from({ length: 20 }, (_, i) => ({ ...udp(i), timeout: 600 })));
        // nf_conntrack_max is global: lowered for as short a time as possible.
        let err: ConntrackError & { count?: number; max?: number };
        let bulk;
        writeFileSync(MAX, '20');
        try {
          err = await ct.create({ ...udp(100), timeout: 600 }).catch((e) => e);
          bulk = await ct.createMany([{ ...udp(101), timeout: 600 }]);
        } finally {
          writeFileSync(MAX, old);
        }
        expect(err).toMatchObject({ code: 'ENOMEM', errno: 12 });
        expect(err.message).toMatch(/table is full/);
        expect(err.message).toMatch(/nf_conntrack_max/);
        expect(err.message).toMatch(/of 20 entries/);
        expect(err.max).toBe(20);
        expect(err.count).toBeGreaterThanOrEqual(20);
        expect(bulk.ok).toBe(0);
        expect(bulk.errors[0].error.message).toMatch(/createMany failed: ENOMEM: the conntrack table is full/);
      } finally {
        writeFileSync(MAX, old);
        await ct.close();
      }
    });
  });
});
