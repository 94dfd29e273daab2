/**
 * updateMatching(filter, changes) against the kernel and `conntrack -U`: two namespaces get
 * the same entries; one is changed by the library, the other by the CLI with the same
 * filter, and both the counts and the resulting tables must agree. (conntrack 1.4.7's -U
 * sends its updates with nfgen_family AF_UNSPEC unless -f is given, which Linux 6.18 refuses
 * with EOPNOTSUPP (code ENOTSUP): the CLI runs get -f.)
 */
import { Conntrack } from '../../../lib';
import type { CreateSpec, Flow } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';

function table(): CreateSpec[] {
  const out: CreateSpec[] = [];
  for (let i = 0; i < 40; i++) {
    const v6 = i % 2 === 1;
    out.push({
      proto: i % 4 < 2 ? 'tcp' : 'udp',
      orig: { src: v6 ? 'fd00::1' : '10.0.0.1', dst: v6 ? 'fd00::2' : '10.0.0.2', sport: 1000 + i, dport: 80 },
      timeout: 300,
      mark: i % 3 === 0 ? 0x21 : 1,
      ...(i % 4 < 2 ? { state: 'ESTABLISHED' } : {}),
    });
  }
  return out;
}

const picture = (fs: Flow[]): string[] =>
  fs.map((f) => `${f.proto} ${f.orig.src} ${f.orig.sport} mark=${f.mark} ${f.status.filter((s) => s !== 'CONFIRMED').join(',')}`).sort();

async function twins(fn: (a: { ns: Sandbox; ct: Conntrack }, b: { ns: Sandbox; ct: Conntrack }) => Promise<void>): Promise<void> {
  await withSandbox(async (nsA) => withSandbox(async (nsB) => {
    const a = await Conntrack.open({ netns: nsA.path });
    const b = await Conntrack.open({ netns: nsB.path });
    try {
      expect((await a.createMany(table())).ok).toBe(40);
      expect((await b.createMany(table())).ok).toBe(40);
      await fn({ ns: nsA, ct: a }, { ns: nsB, ct: b });
    } finally {
      await a.close();
      await b.close();
    }
  }));
}

/** The count `conntrack -U ...` reports. */
async function cliUpdate(ns: Sandbox, args: string): Promise<number> {
  // Exit status 1 when nothing was updated; the count is on stderr either way.
  const { stdout } = await ns.sh(`conntrack -U ${args} 2>&1 || true`);
  const m = /(\d+) flow entries have been updated/.exec(stdout);
  if (!m) throw new Error(`conntrack -U ${args}: ${stdout}`);
  return Number(m[1]);
}

describe('updateMatching', () => {
  test.each([
    ['ipv4', { family: 'ipv4', proto: 'tcp' }, '-f ipv4 -p tcp'],
    ['ipv6', { family: 'ipv6', proto: 'udp' }, '-f ipv6 -p udp'],
  ] as const)('%s: mark under a mask, as conntrack -U --mark VALUE/MASK: same count, same table; unchanged entries not counted', async (_f, filter, cli) => {
    await twins(async (a, b) => {
      const n = await a.ct.updateMatching(filter, { mark: { value: 0x10, mask: 0xf0 } });
      const m = await cliUpdate(b.ns, `${cli} -m 0x10/0xf0`);
      expect(n).toBe(10);
      expect(m).toBe(n);
      expect(picture(await a.ct.list())).toEqual(picture(await b.ct.list()));
      // (mark & ~0xf0) ^ 0x10: 0x21 -> 0x11, 1 -> 0x11.
      expect(new Set((await a.ct.list(filter)).map((f) => f.mark))).toEqual(new Set([0x11]));
      // Again: nothing left to change, like the CLI.
      expect(await a.ct.updateMatching(filter, { mark: { value: 0x10, mask: 0xf0 } })).toBe(0);
      expect(await cliUpdate(b.ns, `${cli} -m 0x10/0xf0`)).toBe(0);
    });
  });

  test('status and timeout by filter, as conntrack -U -u ASSURED -t; a mark filter (which -U cannot express) narrows it', async () => {
    await twins(async (a, b) => {
      const n = await a.ct.updateMatching({ family: 'ipv4', proto: 'udp' }, { status: ['ASSURED'], timeout: 1000 });
      const m = await cliUpdate(b.ns, '-f ipv4 -p udp -u ASSURED -t 1000');
      expect([n, m]).toEqual([10, 10]);
      expect(picture(await a.ct.list())).toEqual(picture(await b.ct.list()));
      const udp4 = await a.ct.list({ family: 'ipv4', proto: 'udp' });
      expect(udp4.every((f) => f.status.includes('ASSURED') && f.timeout > 990)).toBe(true);

      // By mark: only the 0x21 entries change.
      const marked = (await a.ct.list({ mark: 0x21 })).length;
      expect(await a.ct.updateMatching({ mark: 0x21 }, { mark: 0x22 })).toBe(marked);
      expect(await a.ct.list({ mark: 0x21 })).toHaveLength(0);
      expect(await a.ct.list({ mark: 0x22 })).toHaveLength(marked);
      expect((await a.ct.list({ mark: 1 })).length).toBe(40 - marked);
      // By state and NAT-free filters the library checks itself.
      expect(await a.ct.updateMatching({ proto: 'tcp', state: 'ESTABLISHED', orig: { sport: 1000 } }, { mark: 5 })).toBe(1);
    });
  });

  test('labels under a mask (the namespace has label space)', async () => {
    await withSandbox(async (ns) => {
      await ns.sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c ct label set 127");
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const orig = (p: number) => ({ src: '10.0.0.1', dst: '10.0.0.2', sport: p, dport: 53 });
        for (const p of [1, 2, 3]) await ct.create({ proto: 'udp', orig: orig(p), timeout: 300, labels: [3] });
        expect(await ct.updateMatching({ proto: 'udp' }, { labels: { set: [4], unset: [3] } })).toBe(3);
        expect((await ct.list()).map((f) => f.labels)).toEqual([[4], [4], [4]]);
        expect(await ct.updateMatching({ proto: 'udp' }, { labels: { set: [4] } })).toBe(0);
        const { stdout } = await ns.sh('conntrack -L -o labels 2>/dev/null || true');
        expect(stdout.split('\n').filter((l) => l.includes('udp'))).toHaveLength(3);
      } finally {
        await ct.close();
      }
    });
  });

  test('entries that vanish meanwhile are not errors; a concurrent flush leaves a consistent count', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const specs: CreateSpec[] = [];
        for (let i = 0; i < 20000; i++) specs.push({ proto: 'udp', orig: { src: '10.1.0.1', dst: `10.2.${i >> 8}.${i & 255}`, sport: 1, dport: 2 }, timeout: 300 });
        expect((await ct.createMany(specs)).ok).toBe(20000);
        const run = ct.updateMatching({ proto: 'udp' }, { mark: 9 });
        await new Promise((r) => setImmediate(r));
        await ct.flush();
        const n = await run;
        expect(n).toBeGreaterThanOrEqual(0);
        expect(n).toBeLessThanOrEqual(20000);
        expect(await ct.list()).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('refusals name the field and nothing is changed', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ct.create({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, timeout: 300, state: 'ESTABLISHED', mark: 1 });
        const bad: Array<[unknown, unknown, string]> = [
          [{}, {}, 'changes'],
          [{}, null, 'changes'],
          [{}, { state: 'CLOSE' }, 'changes.state'],
          [{}, { tcpWindow: { flagsOrig: { flags: 1 } } }, 'changes.tcpWindow'],
          [{}, { status: ['DYING'] }, 'changes.status'],
          [{}, { status: { unset: ['ASSURED'] } }, 'changes.status.unset'],
          [{}, { mark: { value: 0x100, mask: 0xff } }, 'changes.mark.value'],
          [{}, { timeout: 0 }, 'changes.timeout'],
          [{}, { colour: 'red' }, 'changes.colour'],
          [{ table: 'dying' }, { mark: 2 }, 'filter.table'],
          [{ state: 'NOPE' }, { mark: 2 }, 'filter.state'],
        ];
        for (const [filter, changes, field] of bad) {
          await expect(ct.updateMatching(filter as never, changes as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field });
        }
        await expect(ct.updateMatching({}, { mark: 2 }, { bogus: 1 } as never)).rejects.toMatchObject({ field: 'options.bogus' });
        expect((await ct.list())[0].mark).toBe(1);
        // FIXED_TIMEOUT entries refuse a timeout: EPERM naming changes.timeout.
        await ct.update({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 }, status: ['FIXED_TIMEOUT'] });
        await expect(ct.updateMatching({}, { timeout: 50 })).rejects.toMatchObject({ code: 'EPERM', field: 'changes.timeout' });
      } finally {
        await ct.close();
      }
    });
  });
});
