/**
 * Naming a network namespace that does not exist: the error says so (ENOENT from open,
 * "no such process or network namespace"), not the conntrack-entry hint, whether the
 * library notices first or the addon's open() does.
 */
import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { Conntrack } from '../../../lib/conntrack';
import { ConntrackError } from '../../../lib/common/errors';
import { readProcStats } from '../../../lib/stats/proc';
import { NfSocket } from '../../../lib/wire/socket';

/** A pid no process has right now. */
function absentPid(): number {
  for (let pid = 999_999; ; pid++) if (!existsSync(`/proc/${pid}`)) return pid;
}

function expectNoNamespace(err: unknown, nsPath: string): void {
  expect(err).toBeInstanceOf(ConntrackError);
  const e = err as ConntrackError;
  expect(e).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open' });
  expect(e.message).toContain(nsPath);
  expect(e.message).toMatch(/no such process or network namespace/);
  expect(e.message).not.toMatch(/no such entry/);
}

describe('a namespace that does not exist', () => {
  test('open({ netns: pid }) of a pid no process has', async () => {
    const pid = absentPid();
    const err = await Conntrack.open({ netns: pid }).catch((e: unknown) => e);
    expectNoNamespace(err, `/proc/${pid}/ns/net`);
  });

  test('open({ netns: "pid" }) and open({ netns: path }) alike', async () => {
    const pid = absentPid();
    expectNoNamespace(await Conntrack.open({ netns: String(pid) }).catch((e: unknown) => e), `/proc/${pid}/ns/net`);
    const dir = mkdtempSync(path.join(tmpdir(), 'conntrack-netns-'));
    try {
      const missing = path.join(dir, 'gone');
      expectNoNamespace(await Conntrack.open({ netns: missing }).catch((e: unknown) => e), missing);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('readProcStats({ netns }) of a pid no process has', async () => {
    const pid = absentPid();
    expectNoNamespace(await readProcStats({ netns: pid }).catch((e: unknown) => e), `/proc/${pid}/ns/net`);
  });

  test('the addon failing to open the namespace file says the same', () => {
    const nsPath = `/proc/${absentPid()}/ns/net`;
    let err: unknown;
    try {
      new NfSocket({ netns: nsPath }).close();
    } catch (e) {
      err = e;
    }
    expectNoNamespace(err, nsPath);
  });
});
