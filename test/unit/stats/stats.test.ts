import { readFileSync } from 'fs';
import * as path from 'path';
import { ConntrackError, parseProcStats, readProcStats } from '../../../lib';
import { decodeCpuStats, decodeGlobalStats, sumCpuStats, CpuStats } from '../../../lib/stats/counters';

const proc = (name: string): string => path.join(__dirname, '../../fixtures/proc', name);
const stats = (name: string): Buffer => readFileSync(path.join(__dirname, '../../fixtures/stats', name));

/** Splits a capture of back-to-back netlink messages. */
function messages(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p + 16 <= buf.length) {
    const len = buf.readUInt32LE(p);
    out.push(buf.subarray(p, p + len));
    p += (len + 3) & ~3;
  }
  return out;
}

describe('parseProcStats', () => {
  test('Linux 6.18 layout: keys are the header names, values hex, entries not summed', () => {
    const s = parseProcStats(readFileSync(proc('nf_conntrack-6.18.txt'), 'utf8'));
    expect(s.perCpu).toHaveLength(2);
    expect(Object.keys(s.perCpu[0])).toEqual([
      'entries', 'clashres', 'found', 'new', 'invalid', 'ignore', 'delete', 'chainlength', 'insert',
      'insert_failed', 'drop', 'early_drop', 'icmp_error', 'expect_new', 'expect_create', 'expect_delete', 'search_restart',
    ]);
    expect(s.perCpu[0].entries).toBe(7);
    expect(s.perCpu[1].entries).toBe(7);
    expect(s.total.entries).toBe(7);
    expect(s.total.insert).toBe(s.perCpu[0].insert + s.perCpu[1].insert);
    expect(s.total.insert).toBe(1);
  });

  test('Linux 6.18 with a full table: drops per CPU and summed', () => {
    const s = parseProcStats(readFileSync(proc('nf_conntrack-6.18-full.txt'), 'utf8'));
    expect(s.total.entries).toBe(7);
    expect(s.total.drop).toBeGreaterThanOrEqual(3);
    expect(s.total.drop).toBe(s.perCpu.reduce((a, r) => a + r.drop, 0));
  });

  test('Linux 4.19 layout (searched, delete_list), 4 CPUs', () => {
    const s = parseProcStats(readFileSync(proc('nf_conntrack-4.19.txt'), 'utf8'));
    expect(s.perCpu).toHaveLength(4);
    expect(s.perCpu[0]).toMatchObject({ searched: 0, delete_list: 0, found: 0x1a2f4, search_restart: 0x255 });
    expect(s.perCpu[0]).not.toHaveProperty('clashres');
    expect(s.total.entries).toBe(0x5d2);
    expect(s.total.drop).toBe(0xa + 0x5 + 0 + 0x1);
    expect(s.total.insert_failed).toBe(3 + 1);
    expect(s.total.early_drop).toBe(2 + 1);
    expect(s.total.ignore).toBe(0x47b7ef + 0x441c00 + 0x46fa11 + 0x450000);
  });

  test('Linux 2.6 layout: 16 columns, rows with a trailing space', () => {
    const s = parseProcStats(readFileSync(proc('nf_conntrack-2.6.32.txt'), 'utf8'));
    expect(s.perCpu).toHaveLength(2);
    expect(Object.keys(s.total)).toHaveLength(16);
    expect(s.total).not.toHaveProperty('search_restart');
    expect(s.total.searched).toBe(0xa0000 + 0x90000);
    expect(s.total.entries).toBe(0x40);
  });

  test('malformed rows are skipped, never fatal', () => {
    const text = 'entries  found drop\n00000003  00000001 00000002\ngarbage here\n00000003 0000000z 00000001\n00000003  00000004\n00000003  00000010 00000001\n';
    const s = parseProcStats(text);
    expect(s.perCpu).toEqual([
      { entries: 3, found: 1, drop: 2 },
      { entries: 3, found: 16, drop: 1 },
    ]);
    expect(s.total).toEqual({ entries: 3, found: 17, drop: 3 });
  });

  test('a file without a header is refused', () => {
    expect(() => parseProcStats('00000001 00000002\n')).toThrow(ConntrackError);
    expect(() => parseProcStats('')).toThrow(/header/);
  });

  test('readProcStats reads a given path, and validates its options', async () => {
    const s = await readProcStats(proc('nf_conntrack-4.19.txt'));
    expect(s.perCpu).toHaveLength(4);
    const s2 = await readProcStats({ path: proc('nf_conntrack-6.18.txt') });
    expect(s2.total.entries).toBe(7);
    await expect(readProcStats({ path: '' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'path' });
    await expect(readProcStats({ path: proc('x'), netns: 1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns' });
    await expect(readProcStats({ netns: -3 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'netns' });
    await expect(readProcStats(proc('does-not-exist'))).rejects.toMatchObject({ code: 'ENOENT', errno: 2 });
  });
});

describe('netlink statistics decoders (bytes captured from Linux 6.18)', () => {
  test('IPCTNL_MSG_CT_GET_STATS_CPU: one message per CPU, cpu from res_id', () => {
    const msgs = messages(stats('get_stats_cpu.bin'));
    expect(msgs).toHaveLength(2);
    const perCpu = msgs.map((m) => decodeCpuStats(m, 0, m.length));
    expect(perCpu.map((c) => c.cpu)).toEqual([0, 1]);
    // conntrack -S printed from the same namespace right after the capture:
    const cli = readFileSync(path.join(__dirname, '../../fixtures/stats/conntrack-S.txt'), 'utf8');
    const insertByCpu = [...cli.matchAll(/cpu=(\d+)\s+.*?insert=(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(insertByCpu).toEqual(perCpu.map((c) => [c.cpu, c.insert]));
    expect(perCpu[1]).toEqual({
      cpu: 1, found: 0, invalid: 0, insert: 1, insertFailed: 0, drop: 0, earlyDrop: 0, error: 0,
      searchRestart: 0, clashResolve: 0, chainTooLong: 0,
    });
  });

  test('IPCTNL_MSG_CT_GET_STATS: count and max', () => {
    const [m] = messages(stats('get_stats.bin'));
    expect(decodeGlobalStats(m, 0, m.length)).toEqual({ count: 7, max: 262144 });
    const cli = readFileSync(path.join(__dirname, '../../fixtures/stats/conntrack-C.txt'), 'utf8');
    expect(Number(cli.trim())).toBe(7);
  });

  test('unknown and truncated attributes are skipped', () => {
    const [m] = messages(stats('get_stats_cpu.bin'));
    // Append an unknown attribute (type 99) and a truncated CTA_STATS_DROP (2-byte payload).
    const extra = Buffer.from([8, 0, 99, 0, 0, 0, 0, 5, 6, 0, 10, 0, 0, 9, 0, 0]);
    const msg = Buffer.concat([m, extra]);
    msg.writeUInt32LE(msg.length, 0);
    const s = decodeCpuStats(msg, 0, msg.length);
    expect(s.drop).toBe(0);
    expect(s).not.toHaveProperty('99');
    // A cut-off attribute header stops decoding without throwing.
    const cut = decodeCpuStats(m, 0, m.length - 2);
    expect(cut.cpu).toBe(0);
  });

  test('sumCpuStats adds every counter, including old ones when a CPU sent them', () => {
    const a: CpuStats = { cpu: 0, found: 1, invalid: 2, insert: 3, insertFailed: 4, drop: 5, earlyDrop: 6, error: 7, searchRestart: 8, clashResolve: 9, chainTooLong: 10 };
    const b: CpuStats = { ...a, cpu: 1, drop: 1, searched: 4 };
    const t = sumCpuStats([a, b]);
    expect(t).toMatchObject({ found: 2, drop: 6, chainTooLong: 20, searched: 4 });
    expect(t).not.toHaveProperty('cpu');
  });
});

describe('decodeCpuStats on malformed input', () => {
  test('a message too short for its header decodes to zeros instead of throwing', () => {
    for (const len of [0, 4, 16, 19]) {
      const s = decodeCpuStats(Buffer.alloc(len), 0, len);
      expect(s.cpu).toBe(0);
      expect(s.found + s.insert + s.drop + s.earlyDrop).toBe(0);
    }
  });
});
