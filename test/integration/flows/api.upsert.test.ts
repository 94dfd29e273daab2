/**
 * upsert / upsertMany (one IPCTNL_MSG_CT_NEW with NLM_F_CREATE and without NLM_F_EXCL) and
 * TCP window flags on create and update, against the kernel and `conntrack -A` / `-I`.
 */
import { Conntrack } from '../../../lib';
import type { CreateSpec, Flow } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { parseCli } from './dump.cli';

async function cliLine(ns: Sandbox, args: string): Promise<ReturnType<typeof parseCli>> {
  const { stdout } = await ns.sh(`conntrack -L -o extended,id ${args} 2>/dev/null`);
  return parseCli(stdout);
}

const fams = [
  { family: 'ipv4', src: '10.0.0.1', dst: '10.0.0.2', flag: '-f ipv4' },
  { family: 'ipv6', src: 'fd00::1', dst: 'fd00::2', flag: '-f ipv6' },
] as const;

describe('upsert', () => {
  test.each(fams)('$family: creates, then updates in place (same id), as conntrack -A does', async ({ src, dst, flag }) => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const spec: CreateSpec = { proto: 'udp', orig: { src, dst, sport: 5000, dport: 53 }, timeout: 120, mark: 1 };
        await ct.upsert(spec);
        const first = await ct.get(spec);
        await ct.upsert({ ...spec, timeout: 900, mark: 7 });
        const second = await ct.get(spec);
        expect(second.id).toBe(first.id);
        expect(second.mark).toBe(7);
        expect(second.timeout).toBeGreaterThan(800);

        // conntrack 1.4.7's -A sends NLM_F_CREATE|NLM_F_EXCL (seen with strace), so on an
        // existing entry it adds nothing ("0 flow entries have been added", exit 0) and the
        // entry keeps its first values; upsert does what -A is documented to do.
        const args = `-p udp -s ${src} -d ${dst} --sport 5001 --dport 53`;
        await ns.sh(`conntrack -A ${args} -t 120 -m 1`);
        const { stderr } = await ns.sh(`conntrack -A ${args} -t 900 -m 7`);
        expect(stderr).toContain('0 flow entries have been added');
        const cli = await cliLine(ns, `${flag} -p udp`);
        expect(cli).toHaveLength(2);
        const ours = cli.find((c) => c.orig.sport === 5000)!;
        const theirs = cli.find((c) => c.orig.sport === 5001)!;
        expect(ours.id).toBe(first.id);
        expect(ours.mark).toBe(7);
        expect(ours.timeout).toBeGreaterThan(800);
        expect(theirs.mark).toBe(1);
        expect(theirs.timeout).toBeLessThanOrEqual(120);
        // upsert on the CLI's entry updates it in place.
        const cliId = theirs.id;
        await ct.upsert({ ...spec, orig: { ...spec.orig, sport: 5001 }, timeout: 900, mark: 7 });
        const after = (await cliLine(ns, `${flag} -p udp --sport 5001`))[0];
        expect([after.id, after.mark]).toEqual([cliId, 7]);
      } finally {
        await ct.close();
      }
    });
  });

  test('on an existing entry: NAT refused (ENOTSUP, field nat) and nothing changed; status keeps SEEN_REPLY/ASSURED', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const orig = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 };
        await ct.upsert({ proto: 'tcp', orig, timeout: 100, state: 'ESTABLISHED', nat: { src: { address: '192.0.2.1' } } });
        const before = await ct.get({ proto: 'tcp', orig });
        expect(before.reply.dst).toBe('192.0.2.1');
        await expect(ct.upsert({ proto: 'tcp', orig, timeout: 100, mark: 3, nat: { src: { address: '192.0.2.2' } } }))
          .rejects.toMatchObject({ code: 'ENOTSUP', field: 'nat' });
        const after = await ct.get({ proto: 'tcp', orig });
        expect(after.mark).toBe(0);
        expect(after.reply.dst).toBe('192.0.2.1');

        const u = { src: '10.0.0.1', dst: '10.0.0.2', sport: 7, dport: 8 };
        await ct.create({ proto: 'udp', orig: u, timeout: 100, status: ['SEEN_REPLY', 'ASSURED'] });
        // The kernel refuses a status word without SEEN_REPLY/ASSURED on such an entry (EBUSY):
        // upsert keeps them and applies the rest.
        await ct.upsert({ proto: 'udp', orig: u, timeout: 300, status: ['FIXED_TIMEOUT'] });
        const f = await ct.get({ proto: 'udp', orig: u });
        expect(f.status).toEqual(expect.arrayContaining(['SEEN_REPLY', 'ASSURED', 'FIXED_TIMEOUT']));
        expect((await cliLine(ns, '-p udp --sport 7'))[0].assured).toBe(true);
        // The kernel never clears flags, and refuses any timeout once FIXED_TIMEOUT is set.
        await expect(ct.upsert({ proto: 'udp', orig: u, timeout: 300, status: ['ASSURED'] })).rejects.toMatchObject({ code: 'EPERM', field: 'timeout' });
        await expect(ct.update({ proto: 'udp', orig: u, status: { unset: ['FIXED_TIMEOUT'] } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'status.unset' });
        await expect(ct.update({ proto: 'udp', orig: u, timeout: 50, mark: 5 })).rejects.toMatchObject({ code: 'EPERM', field: 'timeout' });
        await ct.update({ proto: 'udp', orig: u, mark: 4 });
        expect(await ct.get({ proto: 'udp', orig: u })).toMatchObject({ mark: 4, status: expect.arrayContaining(['FIXED_TIMEOUT']) });
      } finally {
        await ct.close();
      }
    });
  });

  test('upsertMany: new and existing entries in one call; a bad item refuses the call before anything is sent', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const spec = (i: number, mark: number): CreateSpec => ({
          proto: 'udp', orig: { src: i % 2 ? 'fd00::1' : '10.0.0.1', dst: i % 2 ? 'fd00::2' : '10.0.0.2', sport: 1000 + i, dport: 53 }, timeout: 300, mark,
        });
        expect(await ct.createMany([0, 1, 2, 3].map((i) => spec(i, 1)))).toEqual({ ok: 4, errors: [] });
        const ids = new Map((await ct.list()).map((f) => [f.orig.sport, f.id]));
        const res = await ct.upsertMany([0, 1, 2, 3, 4, 5, 6, 7].map((i) => spec(i, 9)));
        expect(res).toEqual({ ok: 8, errors: [] });
        const now = await ct.list();
        expect(now).toHaveLength(8);
        expect(now.every((f) => f.mark === 9)).toBe(true);
        for (const f of now) if (ids.has(f.orig.sport!)) expect(f.id).toBe(ids.get(f.orig.sport!));
        expect((await cliLine(ns, '-m 9')).length).toBe(8);

        await expect(ct.upsertMany([spec(10, 1), { ...spec(11, 1), timeout: 0 }])).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'items[1].timeout' });
        await expect(ct.upsertMany([{ ...spec(12, 1), labels: [1] }])).rejects.toMatchObject({ field: 'items[0].labels' });
        expect(await ct.list()).toHaveLength(8);
        // Per-item refusals by index: NAT on an existing entry.
        const r2 = await ct.upsertMany([spec(20, 1), { ...spec(0, 1), nat: { dst: { address: '10.9.9.9' } } }]);
        expect(r2.ok).toBe(1);
        expect(r2.errors.map((e) => [e.index, e.error.code])).toEqual([[1, 'ENOTSUP']]);
      } finally {
        await ct.close();
      }
    });
  });
});

describe('TCP window flags and scales', () => {
  test('create sets per-direction flags as conntrack -I does (BE_LIBERAL, SACK_PERM), and window scales', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ns.sh('conntrack -I -p tcp -s 10.0.0.1 -d 10.0.0.2 --sport 1 --dport 2 -t 100 --state ESTABLISHED');
        const byCli = await ct.get({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 } });
        const liberal = { flags: ['BE_LIBERAL', 'SACK_PERM'] as const };
        await ct.create({
          proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 3, dport: 4 }, timeout: 100, state: 'ESTABLISHED',
          tcpWindow: { flagsOrig: { flags: [...liberal.flags] }, flagsReply: { flags: [...liberal.flags] } },
        });
        const ours = await ct.get({ proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 3, dport: 4 } });
        expect(ours.tcp?.flagsOrig).toEqual(byCli.tcp?.flagsOrig);
        expect(ours.tcp?.flagsReply).toEqual(byCli.tcp?.flagsReply);
        expect(ours.tcp?.flagsOrig).toEqual(['SACK_PERM', 'BE_LIBERAL']);

        const v6 = { src: 'fd00::1', dst: 'fd00::2', sport: 5, dport: 6 };
        await ct.create({
          proto: 'tcp', orig: v6, timeout: 100, state: 'ESTABLISHED',
          tcpWindow: { flagsOrig: { flags: ['WINDOW_SCALE', 'BE_LIBERAL'] }, flagsReply: { flags: 0x01 }, wscaleOrig: 7, wscaleReply: 14 },
        });
        const w = await ct.get({ proto: 'tcp', orig: v6 });
        expect(w.tcp).toMatchObject({ wscaleOrig: 7, wscaleReply: 14, flagsOrig: ['WINDOW_SCALE', 'BE_LIBERAL'], flagsReply: ['WINDOW_SCALE'] });
      } finally {
        await ct.close();
      }
    });
  });

  test('update changes only the masked flags; scales need WINDOW_SCALE on both sides; refusals name the field', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const orig = { src: '10.0.0.1', dst: '10.0.0.2', sport: 1, dport: 2 };
        await ct.create({ proto: 'tcp', orig, timeout: 100, state: 'ESTABLISHED', tcpWindow: { flagsOrig: { flags: ['BE_LIBERAL', 'SACK_PERM'] }, flagsReply: { flags: ['SACK_PERM'] } } });
        await ct.update({ proto: 'tcp', orig, tcpWindow: { flagsOrig: { flags: [], mask: ['BE_LIBERAL'] } } });
        expect((await ct.get({ proto: 'tcp', orig })).tcp?.flagsOrig).toEqual(['SACK_PERM']);
        // Scales on an entry without WINDOW_SCALE: refused before sending (the kernel would ignore them).
        await expect(ct.update({ proto: 'tcp', orig, tcpWindow: { wscaleOrig: 2, wscaleReply: 3 } })).rejects.toMatchObject({ field: 'tcpWindow.flagsOrig' });
        await ct.update({ proto: 'tcp', orig, tcpWindow: { flagsOrig: { flags: ['WINDOW_SCALE'] }, flagsReply: { flags: ['WINDOW_SCALE'] }, wscaleOrig: 2, wscaleReply: 3 } });
        expect((await ct.get({ proto: 'tcp', orig })).tcp).toMatchObject({ wscaleOrig: 2, wscaleReply: 3 });
        // Now the entry has WINDOW_SCALE: scales alone are fine.
        await ct.update({ proto: 'tcp', orig, tcpWindow: { wscaleOrig: 4, wscaleReply: 5 } });
        expect((await ct.get({ proto: 'tcp', orig })).tcp).toMatchObject({ wscaleOrig: 4, wscaleReply: 5 });

        const base = { proto: 'tcp' as const, orig: { ...orig, sport: 9 }, timeout: 100 };
        await expect(ct.create({ ...base, tcpWindow: { wscaleOrig: 1 } })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'tcpWindow.wscaleReply' });
        await expect(ct.create({ ...base, tcpWindow: { wscaleOrig: 1, wscaleReply: 1 } })).rejects.toMatchObject({ field: 'tcpWindow.wscaleOrig' });
        await expect(ct.create({ ...base, tcpWindow: { flagsOrig: { flags: ['NOPE' as never] } } })).rejects.toMatchObject({ field: 'tcpWindow.flagsOrig.flags[0]' });
        await expect(ct.create({ ...base, tcpWindow: { flagsOrig: { flags: ['BE_LIBERAL'], mask: ['SACK_PERM'] } } })).rejects.toMatchObject({ field: 'tcpWindow.flagsOrig.flags' });
        await expect(ct.create({ ...base, tcpWindow: { wscaleOrig: 15, wscaleReply: 1, flagsOrig: { flags: 1 }, flagsReply: { flags: 1 } } })).rejects.toMatchObject({ field: 'tcpWindow.wscaleOrig' });
        await expect(ct.create({ ...base, proto: 'udp', tcpWindow: { flagsOrig: { flags: 1 } } })).rejects.toMatchObject({ field: 'tcpWindow' });
        await expect(ct.create({ ...base, tcpWindow: { bogus: 1 } as never })).rejects.toMatchObject({ field: 'tcpWindow.bogus' });
        expect(await ct.list({ orig: { sport: 9 } })).toHaveLength(0);
        // A Flow passed back to update() keeps working: its read-only `tcp` is not a change.
        const flow: Flow = await ct.get({ proto: 'tcp', orig });
        await ct.update({ ...flow, mark: 5 });
        expect((await ct.get({ proto: 'tcp', orig })).mark).toBe(5);
      } finally {
        await ct.close();
      }
    });
  });
});
