/**
 * Native socket edges: which items of a batch were sent when a send fails part-way,
 * the receive buffer size as a C int, allocation failures that fail a call or a socket
 * (never the process), and dropped sockets that are collected with their fds and threads.
 */
import { promises as fsp, readdirSync } from 'fs';
import * as v8 from 'v8';
import * as vm from 'vm';
import { Sandbox, sandbox } from '../../../apps/testing';
import { waitFor } from '../../helpers/wait';
import { AttrWriter } from '../../../lib/wire/netlink';
import { writeCreate } from '../../../lib/flows/entry-spec';
import { AF_INET, CT_GET, Client, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK, NLM_F_ACK, NLM_F_REQUEST, addon, client } from './addon';

const ENOMEM = 12;
const ENOBUFS = 105;
let ns: Sandbox;

beforeAll(async () => {
  ns = await sandbox();
});
afterAll(() => ns?.close());
afterEach(() => addon.testing.reset());

/** `count` payloads of one unknown (ignored) attribute of `size` bytes each, and their ends. */
function batch(count: number, size: number): { payloads: Buffer; ends: Uint32Array } {
  const payloads = Buffer.alloc(count * size);
  const ends = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    payloads.writeUInt16LE(size, i * size);
    payloads.writeUInt16LE(0x3000, i * size + 2);
    ends[i] = (i + 1) * size;
  }
  return { payloads, ends };
}

/** Resolves when `c` got an answer (ack or error) for `seq`. */
function answered(c: Client, seq: number): boolean {
  const a = c.seen.get(seq);
  return a !== undefined && (a.errno !== 0 || a.messages.length === 0);
}

/** Sends one more request and waits for its ack: the kernel answers in order, so every answer to earlier requests has arrived. */
async function drain(c: Client): Promise<void> {
  const seq = c.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET);
  await c.answer(seq);
}

describe('requestBatch when a send fails part-way', () => {
  // 40 KB items: three fit one datagram (below 128 KiB), so nine make three sends.
  const { payloads, ends } = batch(9, 40000);

  test('synchronous sends: the error says how many were sent, and exactly those are answered', async () => {
    const c = client({ netns: ns.path });
    c.sock.start();
    addon.testing.failSend(2, ENOBUFS);
    let err: { errno: number; syscall: string; sent: number; firstSeq: number; message: string } | undefined;
    try {
      c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, payloads, ends);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toMatchObject({ errno: ENOBUFS, syscall: 'sendmsg', sent: 3, message: expect.stringMatching(/after 3 of 9 requests were sent/) });
    await drain(c);
    const got = [...Array(9).keys()].map((i) => answered(c, (err!.firstSeq + i) >>> 0));
    expect(got).toEqual([true, true, true, false, false, false, false, false, false]);
    c.sock.close();
  });

  test('sender thread: the failed block is reported by sequence number; later blocks go out', async () => {
    const c = client({ netns: ns.path, asyncSend: true });
    c.sock.start();
    addon.testing.failSend(2, ENOBUFS);
    const first = c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, payloads, ends);
    // The sender thread reports the block it could not send as a negative errno whose
    // batch lists the block's sequence numbers.
    await waitFor(() => c.errors.includes(-ENOBUFS), 'the ENOBUFS error');
    await drain(c);
    expect(c.failedSeqs).toEqual([3, 4, 5].map((i) => (first + i) >>> 0));
    const got = [...Array(9).keys()].map((i) => answered(c, (first + i) >>> 0));
    expect(got).toEqual([true, true, true, false, false, false, true, true, true]);
    c.sock.close();
  });

  test('bad arguments are refused before anything is sent', async () => {
    const c = client({ netns: ns.path });
    c.sock.start();
    const bad = new Uint32Array([40000, 30000]);
    expect(() => c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, payloads, bad)).toThrow(/increasing offsets/);
    const huge = Buffer.alloc(140000);
    expect(() => c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, huge, new Uint32Array([140000]))).toThrow(/item 0 is larger than 131072 bytes/);
    expect(() => c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, payloads, [40000])).toThrow(/Uint32Array/);
    await drain(c);
    // Only the drain request was answered: nothing of the refused batches reached the kernel.
    expect(c.seen.size).toBe(1);
    c.sock.close();
  });
});

describe('requestBatch with sparse acks', () => {
  const CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
  const NLM_F_CREATE = 0x400;
  const NLM_F_EXCL = 0x200;
  const EEXIST = 17;
  /** Creates of UDP entries 10.7.x.y -> 10.7.0.1 for the given item numbers. */
  function creates(items: number[]): { payloads: Buffer; ends: Uint32Array } {
    const w = new AttrWriter(1 << 16);
    const ends = new Uint32Array(items.length);
    items.forEach((i, k) => {
      writeCreate(w, { proto: 'udp', orig: { src: `10.7.${i >> 8}.${i & 255}`, dst: '10.7.0.1', sport: 1000, dport: 53 }, timeout: 120 });
      ends[k] = w.length;
    });
    return { payloads: w.take(), ends };
  }

  test('only each datagram\'s last message is acked; failures are answered at their own sequence number', async () => {
    const c = client({ netns: ns.path, asyncSend: true });
    c.sock.start();
    const N = 3000;
    const existing = [0, 1, 1499, 2998];
    const pre = creates(existing);
    await c.answer(c.sock.requestBatch(CT_NEW, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, AF_INET, pre.payloads, pre.ends) + existing.length - 1);
    c.seen.clear();
    const { payloads, ends } = creates([...Array(N).keys()]);
    const first = c.sock.requestBatch(CT_NEW, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, AF_INET, payloads, ends, true);
    await c.answer((first + N - 1) >>> 0);
    await drain(c);
    const answers = [...Array(N).keys()].map((i) => c.seen.get((first + i) >>> 0));
    const failed = answers.flatMap((a, i) => (a && a.errno !== 0 ? [[i, a.errno]] : []));
    const acked = answers.flatMap((a, i) => (a && a.errno === 0 ? [i] : []));
    expect(failed).toEqual(existing.map((i) => [i, EEXIST]));
    // One ack per datagram (the batch is about 400 KB: a handful of datagrams of at most
    // 128 KiB), the last item's among them.
    const datagrams = Math.ceil(payloads.length / (96 * 1024));
    expect(acked.length).toBeGreaterThanOrEqual(Math.ceil(payloads.length / (128 * 1024)));
    expect(acked.length).toBeLessThanOrEqual(datagrams + 1);
    expect(acked[acked.length - 1]).toBe(N - 1);
    expect((await c.dumpSources()).length).toBe(N);
    c.sock.close();
  });
});

describe('receive buffer size', () => {
  test('must be an integer from 1 to INT_MAX', () => {
    const c = client();
    for (const bad of [1.5, 0, -1, NaN, Infinity, 2 ** 31, 2 ** 40]) {
      expect(() => c.sock.setReceiveBuffer(bad, false)).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(/integer from 1 to 2147483647/) }));
    }
    expect(() => c.sock.setReceiveBuffer('x', false)).toThrow(expect.objectContaining({ name: 'TypeError' }));
    expect(c.sock.setReceiveBuffer(16384, false)).toEqual({ granted: 32768, forced: false });
    c.sock.close();
  });

  test('INT_MAX is passed whole to the kernel (which caps it), not wrapped negative', () => {
    const c = client();
    const r = c.sock.setReceiveBuffer(2147483647, true);
    if (r.forced) expect(r.granted).toBe(2147483646); // INT_MAX / 2, doubled
    else expect(r.granted).toBeGreaterThan(4096); // no CAP_NET_ADMIN: capped by rmem_max
    c.sock.close();
  });
});

describe('allocation failure fails the call or the socket, never the process', () => {
  test('requestBatch: ENOMEM with the count that was sent', async () => {
    const c = client({ netns: ns.path });
    c.sock.start();
    const { payloads, ends } = batch(9, 40000);
    addon.testing.failAllocation(5); // the fifth message built: after the first send of three
    let err: { errno: number; syscall: string; sent: number; firstSeq: number } | undefined;
    try {
      c.sock.requestBatch(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET, payloads, ends);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toMatchObject({ errno: ENOMEM, syscall: 'malloc', sent: 3 });
    await drain(c); // and the socket still works
    expect([...Array(9).keys()].map((i) => answered(c, (err!.firstSeq + i) >>> 0)).filter(Boolean)).toHaveLength(3);
    c.sock.close();
  });

  test('request on a sender-thread socket: ENOMEM thrown', () => {
    const c = client({ netns: ns.path, asyncSend: true });
    addon.testing.failAllocation(2); // the copy handed to the sender thread
    expect(() => c.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET)).toThrow(expect.objectContaining({ errno: ENOMEM }));
    c.sock.close();
  });

  test('event-loop reader: the batch buffer, and the copy for JS, fail as onData errno ENOMEM', async () => {
    for (const point of [2, 3]) {
      const c = client({ netns: ns.path });
      c.sock.start();
      addon.testing.failAllocation(point); // 1: the request, 2: the receive block, 3: the copy for JS
      c.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET);
      await waitFor(() => c.errors.length > 0, 'an error');
      expect(c.errors).toEqual([ENOMEM]);
      c.sock.close();
    }
  });

  test('reader thread: the thread stops and the socket reports ENOMEM', async () => {
    const c = client({ netns: ns.path, threaded: true });
    addon.testing.failAllocation(1); // the thread's first block
    c.sock.start();
    await waitFor(() => c.errors.length > 0, 'an error');
    expect(c.errors).toEqual([ENOMEM]);
    c.sock.close();
  });

  test('sender thread: the socket reports ENOMEM and refuses further sends', async () => {
    const c = client({ netns: ns.path, asyncSend: true });
    c.sock.start();
    addon.testing.failSend(1, ENOBUFS);
    addon.testing.failAllocation(3); // 1: the message, 2: the copy, 3: the sender's list of failed requests
    c.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET);
    await waitFor(() => c.errors.includes(ENOMEM), 'the ENOMEM error');
    expect(c.errors).toEqual([-ENOBUFS, ENOMEM]);
    expect(() => c.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET)).toThrow(expect.objectContaining({ errno: ENOMEM }));
    c.sock.close();
  });

  test('netnsFiles: rejects with ENOMEM', async () => {
    addon.testing.failAllocation(1);
    const err = await addon.netnsFiles({ netns: ns.path }, [{ op: 'read', path: '/proc/sys/net/netfilter/nf_conntrack_count' }]).catch((e: Error) => e);
    expect(err).toMatchObject({ errno: ENOMEM, syscall: 'malloc', netns: ns.path });
    expect(err.message).toMatch(/^out of memory working in network namespace \/proc\/\d+\/ns\/net/);
  });
});

describe('dropped sockets are collected', () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const threads = (): number => readdirSync('/proc/self/task').length;

  // gc() runs in a job of its own: a WeakRef deref()ed in the same job keeps its target alive.
  async function collect(done: () => boolean, rounds = 200): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      await new Promise((r) => setImmediate(r));
      gc();
      await new Promise((r) => setTimeout(r, 5));
      if (done()) return;
    }
  }

  test('a wrapper whose callback captures it is released with its fd and threads', async () => {
    // Start the thread pool first so its threads are in the baseline.
    await Promise.all([...Array(8)].map(() => fsp.readFile('/proc/self/stat')));
    const fdBase = fds();
    const threadBase = threads();
    const refs: WeakRef<object>[] = [];
    (() => {
      for (let i = 0; i < 60; i++) {
        const owner: { sock?: { start(): void; pause(): void }; batches: number } = { batches: 0 };
        const kind = i % 3;
        owner.sock = new addon.Socket(() => owner.batches++, { netns: ns.path, asyncSend: kind === 1, threaded: kind === 2 });
        if (kind === 2) {
          owner.sock!.start(); // starts the reader thread; paused below, as a half-read dump is
          owner.sock!.pause();
        }
        refs.push(new WeakRef(owner.sock!));
      }
    })();
    expect(fds()).toBeGreaterThanOrEqual(fdBase + 60);
    expect(threads()).toBeGreaterThanOrEqual(threadBase + 40);
    await collect(() => fds() === fdBase && threads() === threadBase);
    expect(refs.filter((r) => r.deref() !== undefined)).toHaveLength(0);
    expect(fds()).toBe(fdBase);
    expect(threads()).toBe(threadBase);
  });

  test('a kept wrapper keeps its callback, even when nothing else holds it', async () => {
    let calls = 0;
    const sock = new addon.Socket(() => calls++, { netns: ns.path });
    await collect(() => false, 5); // nothing to wait for: a few collections
    sock.start();
    sock.request(CT_GET, NLM_F_REQUEST | NLM_F_ACK, AF_INET);
    await waitFor(() => calls > 0, 'the callback');
    expect(calls).toBeGreaterThan(0);
    sock.close();
  });

  test('a started (reading) socket is not collected; once paused it is', async () => {
    let ref: WeakRef<{ pause(): void; close(): void }> | undefined;
    (() => {
      const sock = new addon.Socket(() => {}, { netns: ns.path });
      sock.start();
      ref = new WeakRef(sock);
    })();
    await collect(() => false, 5);
    expect(ref!.deref()).toBeDefined();
    ref!.deref()!.pause();
    await collect(() => ref!.deref() === undefined);
    expect(ref!.deref()).toBeUndefined();
  });
});
