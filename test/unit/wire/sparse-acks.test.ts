/**
 * Sparse acks on the receive side, through a scripted connection: ack-only requests sent
 * together go out without NLM_F_ACK (but the datagram's last); a reply to a later request
 * settles the earlier silent ones as successes, an error settles only its own request, and
 * replies to requests sent before them (a dump's later parts) vouch for none.
 */
import { ConntrackError } from '../../../lib/common/errors';
import { NLMSG_DONE, Outcome, ack, capableSocket, fakeSocket, nlmsg, recorder } from './fake-connection';

const EEXIST = 17;

async function batchOf(n: number) {
  const { sock, conn } = await capableSocket();
  const outcomes: Outcome[] = Array.from({ length: n }, () => ({ settled: false, messages: 0 }));
  const payloads = Buffer.alloc(8 * n);
  const ends = Uint32Array.from({ length: n }, (_, i) => 8 * (i + 1));
  sock.requestMany(0x100, 0, 2, payloads, ends, {
    operation: 'createMany',
    ackOnly: true,
    message() {},
    done(err, item) {
      const o = outcomes[item];
      if (o.settled) throw new Error(`item ${item} settled twice`);
      o.settled = true;
      o.ok = err === undefined;
      o.error = err;
    },
  });
  return { sock, conn, outcomes };
}

describe('sparse acks', () => {
  test('a batch of ack-only items is sent with sparse acks; one later reply settles every earlier item', async () => {
    const { sock, conn, outcomes } = await batchOf(5);
    expect(conn.sent.map((r) => r.sparse)).toEqual([true, true, true, true, true]);
    const seq = (i: number) => conn.sent[i].seq;
    conn.feed(Buffer.concat([ack(seq(1), EEXIST), ack(seq(4))]));
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true, true, true]);
    expect((outcomes[1].error as ConntrackError).code).toBe('EEXIST');
    expect(sock.outstanding).toBe(0);
  });

  test('an error in the middle settles the items before it, not those after', async () => {
    const { conn, outcomes } = await batchOf(6);
    const seq = (i: number) => conn.sent[i].seq;
    conn.feed(ack(seq(2), EEXIST));
    expect(outcomes.map((o) => o.settled)).toEqual([true, true, true, false, false, false]);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, undefined, undefined, undefined]);
    conn.feed(ack(seq(5)));
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, true, true, true]);
  });

  test('a reply to a request sent before the silent ones vouches for none of them', async () => {
    const { sock, conn } = await capableSocket();
    const dump = recorder('list', false);
    sock.request(0x101, 0x300, 2, undefined, dump.handler);
    await new Promise((r) => process.nextTick(r));
    const dumpSeq = conn.sent[0].seq;
    const items = [recorder(), recorder(), recorder()];
    // Three single ack-only requests queued in one tick go out as one run.
    for (const r of items) sock.request(0x100, 0, 2, Buffer.alloc(8), r.handler);
    await new Promise((r) => process.nextTick(r));
    expect(conn.sent.slice(1).map((r) => r.sparse)).toEqual([true, true, true]);
    expect(conn.sent[0].sparse).toBeUndefined();
    // A later part of the dump (read in recvmsg(), after the silent requests were handled or not).
    conn.feed(nlmsg(0x100, 2 /* NLM_F_MULTI */, dumpSeq, Buffer.alloc(4)));
    expect(items.map((r) => r.outcome.settled)).toEqual([false, false, false]);
    conn.feed(Buffer.concat([nlmsg(NLMSG_DONE, 2, dumpSeq, Buffer.alloc(4)), ack(conn.sent[3].seq)]));
    expect(dump.outcome).toMatchObject({ settled: true, ok: true, messages: 1 });
    expect(items.map((r) => r.outcome.ok)).toEqual([true, true, true]);
  });

  test('requests that bring replies are not sent silently', async () => {
    const { sock, conn } = await capableSocket();
    const a = recorder('get', false);
    const b = recorder('get', false);
    sock.request(0x101, 0, 2, Buffer.alloc(8), a.handler);
    sock.request(0x101, 0, 2, Buffer.alloc(8), b.handler);
    await new Promise((r) => process.nextTick(r));
    expect(conn.sent.map((r) => r.sparse)).toEqual([undefined, undefined]);
    conn.feed(ack(conn.sent[1].seq));
    expect(a.outcome.settled).toBe(false); // its own reply is still to come
    expect(b.outcome.settled).toBe(true);
  });

  test('a batch that reports an overrun vouches for no silent request: they fail with ENOBUFS', async () => {
    const { conn, outcomes } = await batchOf(4);
    // The lost reply could be item 0's error: item 1's ack settles item 1 only.
    conn.feed(ack(conn.sent[1].seq), 1);
    expect(outcomes.map((o) => o.ok)).toEqual([false, true, false, false]);
    expect(outcomes.filter((o) => !o.ok).map((o) => (o.error as ConntrackError).code)).toEqual(['ENOBUFS', 'ENOBUFS', 'ENOBUFS']);
  });

  test('replies in a batch before the overrun settle as usual', async () => {
    const { conn, outcomes } = await batchOf(4);
    conn.feed(ack(conn.sent[1].seq));
    conn.feed(null, 1);
    expect(outcomes.map((o) => o.ok)).toEqual([true, true, false, false]);
    expect((outcomes[2].error as ConntrackError).code).toBe('ENOBUFS');
  });
});

test('a callback that closes the socket while earlier silent items settle: every item settles once', async () => {
  const { sock, conn } = await capableSocket();
  const outcomes: (string | undefined)[][] = [[], [], []];
  sock.requestMany(0x100, 0, 2, Buffer.alloc(24), Uint32Array.of(8, 16, 24), {
    operation: 'createMany',
    ackOnly: true,
    message() {},
    done(err, item) {
      outcomes[item].push(err ? (err as ConntrackError).code : 'ok');
      if (item === 0) sock.close();
    },
  });
  conn.feed(ack(conn.sent[2].seq));
  expect(outcomes).toEqual([['ok'], ['ERR_CLOSED'], ['ERR_CLOSED']]);
});

describe('staged payloads', () => {
  test('every request goes out with its own payload bytes, through window stalls and queue compaction', async () => {
    const { sock, conn } = await capableSocket({ receiveBufferSize: 32 * 1024 }); // a window of 32 ack-only requests
    const N = 3000;
    const size = (i: number): number => 4 + (i % 3) * 4 + (i % 7 === 0 ? 200 : 0); // mixed sizes, enough to outgrow the staging buffer
    const outcomes = Array.from({ length: N }, () => recorder());
    for (let i = 0; i < N; i++) {
      const payload = Buffer.alloc(size(i), i & 0xff);
      payload.writeUInt32LE(i, 0);
      sock.request(0x100, 0, 2, payload, outcomes[i].handler);
    }
    await new Promise((r) => process.nextTick(r));
    // Answer whatever was sent with one ack for the newest request, until all went out.
    for (let acked = 0; acked < N; ) {
      expect(conn.sent.length).toBeGreaterThan(acked);
      acked = conn.sent.length;
      conn.feed(ack(conn.sent[acked - 1].seq));
      await new Promise((r) => process.nextTick(r));
    }
    expect(conn.sent.map((r) => r.payload!.readUInt32LE(0))).toEqual([...Array(N).keys()]);
    expect(conn.sent.map((r) => r.payload!.length)).toEqual([...Array(N).keys()].map(size));
    // Every byte after the index is the fill of its own request.
    expect(conn.sent.filter((r, i) => !r.payload!.subarray(4).every((b) => b === (i & 0xff)))).toEqual([]);
    expect(outcomes.every((o) => o.outcome.ok === true)).toBe(true);
    expect(sock.outstanding).toBe(0);
  });
});

describe('when sparse acks are not safe', () => {
  const EPERM = 1;
  function many(sock: ReturnType<typeof fakeSocket>['sock'], n: number): Outcome[] {
    const outcomes: Outcome[] = Array.from({ length: n }, () => ({ settled: false, messages: 0 }));
    sock.requestMany(0x100, 0, 2, Buffer.alloc(8 * n), Uint32Array.from({ length: n }, (_, i) => 8 * (i + 1)), {
      operation: 'createMany',
      ackOnly: true,
      message() {},
      done(err, item) {
        outcomes[item].settled = true;
        outcomes[item].ok = err === undefined;
        outcomes[item].error = err;
      },
    });
    return outcomes;
  }

  test('before any request on the socket succeeded, every request carries its own ack: a datagram refused as a whole (EPERM for its first message only) reports nothing else created', () => {
    const { conn, sock } = fakeSocket();
    const outcomes = many(sock, 4);
    expect(conn.sent.map((r) => r.sparse === true)).toEqual([false, false, false, false]);
    // Without CAP_NET_ADMIN nfnetlink_rcv() answers a datagram's first message and drops the rest.
    conn.feed(ack(conn.sent[0].seq, EPERM));
    expect(outcomes.map((o) => o.ok)).toEqual([false, undefined, undefined, undefined]);
    expect((outcomes[0].error as ConntrackError).code).toBe('EPERM');
  });

  test('once a request succeeded, later batches go out with sparse acks', () => {
    const { conn, sock } = fakeSocket();
    const first = many(sock, 2);
    conn.feed(Buffer.concat([ack(conn.sent[0].seq), ack(conn.sent[1].seq)]));
    expect(first.every((o) => o.ok)).toBe(true);
    many(sock, 3);
    expect(conn.sent.slice(2).map((r) => r.sparse)).toEqual([true, true, true]);
  });

  test('a skipped (malformed) datagram fails the silent requests in flight as of unknown outcome, and sparse acks wait until the socket is idle', async () => {
    const { conn, sock } = await capableSocket();
    const outcomes = many(sock, 3);
    expect(conn.sent.map((r) => r.sparse)).toEqual([true, true, true]);
    conn.feed(null, 0, 1); // one datagram skipped by the native receive path
    expect(outcomes.map((o) => (o.error as ConntrackError | undefined)?.code)).toEqual(['ERR_OUTCOME_UNKNOWN', 'ERR_OUTCOME_UNKNOWN', 'ERR_OUTCOME_UNKNOWN']);
    expect(sock.outstanding).toBe(0);
    // Idle again: the taint is gone with the last request in flight.
    many(sock, 2);
    expect(conn.sent.slice(3).map((r) => r.sparse)).toEqual([true, true]);
  });
});
