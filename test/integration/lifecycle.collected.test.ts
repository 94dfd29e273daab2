/**
 * Dropped handles, half-read dumps and dropped event streams are collected: their sockets
 * (fds), reader and sender threads and namespace files are released after gc(), while the
 * handle that made them may stay open. And the socket's failure paths seen from lib/: a
 * batch sent part-way, and the native side running out of memory.
 */
import { readdirSync } from 'fs';
import { constants as osConstants } from 'os';
import * as v8 from 'v8';
import * as vm from 'vm';
import { Conntrack, ConntrackError } from '../../lib';
import { native } from '../../lib/wire/native';
import { Sandbox, sandbox } from '../../apps/testing';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const fds = (): number => readdirSync('/proc/self/fd').length;
const threads = (): number => readdirSync('/proc/self/task').length;
const { ENOMEM, ENOBUFS } = osConstants.errno;

/** Collects until `done()` (FinalizationRegistry callbacks and ~Socket run in later jobs). */
async function collect(done: () => boolean, rounds = 300): Promise<void> {
  for (let i = 0; i < rounds && !done(); i++) {
    await new Promise((r) => setImmediate(r));
    gc();
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Collects until the process's fd and thread counts stop changing (at most `rounds` rounds). */
async function stable(rounds = 50): Promise<void> {
  let last = '';
  for (let i = 0; i < rounds; i++) {
    await collect(() => false, 3);
    const now = `${fds()}/${threads()}`;
    if (now === last) return;
    last = now;
  }
}

const TABLE = 20000;
let ns: Sandbox;

// Objects are made in functions of their own: a local of the test's own async function
// could stay reachable from its suspended frame.
beforeAll(async () => {
  ns = await sandbox();
  // More entries than a dump reads ahead (a batch of 1 MiB) before it pauses.
  const ct = await Conntrack.open({ netns: ns.path });
  const r = await ct.createMany(
    [...Array(TABLE).keys()].map((i) => ({ proto: 'udp' as const, orig: { src: `10.81.${i >> 8}.${i & 255}`, dst: '10.81.255.1', sport: 1000, dport: 53 }, timeout: 600 })),
  );
  expect(r.ok).toBe(TABLE);
  await ct.close();
  // The thread pool's threads and the first sockets' libuv handles belong in the baseline.
  const warm = await Conntrack.open({ netns: ns.path });
  await warm.list();
  await warm.close();
});
afterAll(() => ns?.close());
afterEach(() => native().testing.reset());

describe('dropped handles are collected', () => {
  test('500 dropped Conntrack handles release their sockets, sender threads and namespace files', async () => {
    const fdBase = fds();
    const threadBase = threads();
    for (let i = 0; i < 5; i++) {
      // Each handle: a request socket with a sender thread, and the namespace file it keeps open.
      const opened = await Promise.all([...Array(100)].map(() => Conntrack.open({ netns: i % 2 ? ns.path : ns.pid })));
      await Promise.all(opened.map((ct) => ct.stats())); // used, then idle
      expect(fds()).toBeGreaterThanOrEqual(fdBase + 200);
      opened.length = 0;
    }
    await collect(() => fds() === fdBase && threads() === threadBase);
    expect(fds()).toBe(fdBase);
    expect(threads()).toBe(threadBase);
  });

  test('50 half-read dumps release their sockets and reader threads while the handle stays open', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      // What earlier tests in this process dropped is collected first, so that nothing but
      // these dumps moves the counts from here on.
      await stable();
      const fdBase = fds();
      const threadBase = threads();
      // Held until the counts were read (a collection during the loop would otherwise
      // release some of them before the check), then dropped.
      const held: unknown[] = [];
      const halfRead = async (): Promise<boolean> => {
        const dump = ct.dump(undefined, { highWaterMark: 1 });
        held.push(dump);
        const first = await dump.next();
        return first.done === false; // neither read to the end nor returned
      };
      for (let i = 0; i < 50; i++) expect(await halfRead()).toBe(true);
      expect(fds()).toBeGreaterThanOrEqual(fdBase + 50);
      expect(threads()).toBeGreaterThanOrEqual(threadBase + 50);
      held.length = 0;
      await collect(() => fds() === fdBase && threads() === threadBase);
      expect(fds()).toBe(fdBase);
      expect(threads()).toBe(threadBase);
      expect(ct.children.size).toBe(0);
      // The handle itself is unaffected.
      expect((await ct.list()).length).toBe(TABLE);
    } finally {
      await ct.close();
    }
  });

  test('dropped event streams (never consumed, or their listener removed) release their sockets and threads', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const fdBase = fds();
      const threadBase = threads();
      const drop = async (i: number): Promise<void> => {
        const s = ct.events();
        if (i % 2) {
          const listener = (): void => undefined;
          s.on('event', listener);
          await ct.create({ proto: 'udp', orig: { src: '10.82.0.1', dst: '10.82.0.2', sport: 1000 + i, dport: 53 }, timeout: 600 });
          s.off('event', listener);
        }
        if (i % 4 === 0) ct.expectations.events(); // expectation streams too
      };
      for (let i = 0; i < 40; i++) await drop(i);
      expect(fds()).toBeGreaterThanOrEqual(fdBase + 50);
      await collect(() => fds() === fdBase && threads() === threadBase);
      expect(fds()).toBe(fdBase);
      expect(threads()).toBe(threadBase);
      expect(ct.children.size).toBe(0);
    } finally {
      await ct.close();
    }
  });

  test('a stream with an \'event\' listener keeps working when the program holds no reference to it', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const seen: string[] = [];
      ct.events({ types: ['new'] }).on('event', (ev) => seen.push(ev.flow.orig.src));
      await collect(() => false, 10);
      await ct.create({ proto: 'udp', orig: { src: '10.83.0.7', dst: '10.83.0.8', sport: 1, dport: 2 }, timeout: 60 });
      while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
      expect(seen).toEqual(['10.83.0.7']);
    } finally {
      await ct.close();
    }
  });
});

describe('socket failures seen from the library', () => {
  const specs = (n: number, b: number): Parameters<Conntrack['createMany']>[0] =>
    [...Array(n).keys()].map((i) => ({ proto: 'udp' as const, orig: { src: `10.${b}.${i >> 8}.${i & 255}`, dst: '10.90.0.1', sport: 2000, dport: 53 }, timeout: 600 }));

  test('a batch that fails part-way: the items sent get their true answers, only the rest fail', async () => {
    const inner = await sandbox();
    const ct = await Conntrack.open({ netns: inner.path });
    try {
      // The 1500th allocation of the first requestBatch() (one per message, one per datagram
      // handed to the sender thread) fails: the datagrams before it went out.
      native().testing.failAllocation(1500);
      const r = await ct.createMany(specs(3000, 91));
      native().testing.reset();
      const inKernel = (await ct.list()).length;
      expect(r.errors.length).toBeGreaterThan(0);
      expect(r.errors.every((e) => e.error.code === 'ENOMEM')).toBe(true);
      // Exactly the entries the kernel has are reported created; the rest failed.
      expect(r.ok).toBe(inKernel);
      expect(r.ok + r.errors.length).toBe(3000);
      expect(r.ok).toBeGreaterThan(0);
      // The failed ones are one contiguous run, starting after the items that were sent.
      const idx = r.errors.map((e) => e.index).sort((x, y) => x - y);
      expect(idx[idx.length - 1] - idx[0] + 1).toBe(idx.length);
      expect(idx[0]).toBeGreaterThan(0);
    } finally {
      await ct.close();
      await inner.close();
    }
  });

  test('the sender thread failing a block fails only that block\'s requests', async () => {
    const inner = await sandbox();
    const ct = await Conntrack.open({ netns: inner.path });
    try {
      native().testing.failSend(1, ENOBUFS);
      const r = await ct.createMany(specs(3000, 92));
      const inKernel = (await ct.list()).length;
      expect(r.errors.length).toBeGreaterThan(0);
      expect(r.errors.every((e) => e.error.code === 'ENOBUFS')).toBe(true);
      expect(r.ok).toBe(inKernel);
      expect(r.ok + r.errors.length).toBe(3000);
    } finally {
      await ct.close();
      await inner.close();
    }
  });

  test('ENOMEM in a dump\'s reader thread: the dump rejects with an ENOMEM ConntrackError and closes', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const fdBase = fds();
      native().testing.failAllocation(2); // 1: the dump request, 2: the reader thread's first block
      const err = await ct.list().catch((e) => e);
      expect(err).toBeInstanceOf(ConntrackError);
      expect(err).toMatchObject({ code: 'ENOMEM', errno: ENOMEM });
      expect(err.message).toMatch(/out of memory/);
      await collect(() => fds() === fdBase, 20);
      expect(fds()).toBe(fdBase);
      expect((await ct.list()).length).toBeGreaterThanOrEqual(TABLE); // the handle's other sockets are fine
    } finally {
      await ct.close();
    }
  });

  test('ENOMEM in an event stream: the iterator rejects with ENOMEM and the stream closes', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const s = ct.events();
      native().testing.failAllocation(1); // the reader thread's first block, when iteration starts
      const err = await s.next().catch((e) => e);
      expect(err).toMatchObject({ code: 'ENOMEM', errno: ENOMEM });
      expect(s.isClosed).toBe(true);
      await expect(s.next()).rejects.toMatchObject({ code: 'ENOMEM' });
    } finally {
      await ct.close();
    }
  });

  test('ENOMEM on the request socket: pending and later requests fail with ENOMEM', async () => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      const key = { proto: 'udp' as const, orig: { src: '10.81.0.1', dst: '10.81.255.1', sport: 1000, dport: 53 } };
      native().testing.failAllocation(3); // 1: the message, 2: the copy for the sender thread, 3: the receive block
      const err = await ct.get(key).catch((e) => e);
      expect(err).toMatchObject({ code: 'ENOMEM', errno: ENOMEM });
      native().testing.reset();
      expect(err.message).toMatch(/the netlink socket failed: out of memory/);
      await expect(ct.get(key)).rejects.toMatchObject({ code: 'ENOMEM' });
    } finally {
      await ct.close();
    }
  });
});
