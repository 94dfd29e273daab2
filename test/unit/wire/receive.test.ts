/**
 * The receive path fed damaged replies through a scripted connection: every message it
 * cannot parse settles its request with ERR_PROTOCOL, nothing throws into the native
 * caller, and the rest of the batch is still delivered.
 */
import { ConntrackError } from '../../../lib/common/errors';
import { NLMSG_DONE, NLMSG_ERROR, Outcome, PORT_ID, ack, fakeSocket, nlmsg, recorder, tick } from './fake-connection';

const NLM_F_ACK_TLVS = 0x200;

async function sendOne(ackOnly = true) {
  const { sock, conn } = fakeSocket();
  const { handler, outcome } = recorder('create', ackOnly);
  sock.request(0x100, 0, 2, Buffer.alloc(8), handler);
  await tick();
  expect(conn.sent).toHaveLength(1);
  return { sock, conn, outcome, handler, seq: conn.sent[0].seq };
}

function expectProtocolError(outcome: Outcome): void {
  expect(outcome.settled).toBe(true);
  expect(outcome.error).toBeInstanceOf(ConntrackError);
  expect((outcome.error as ConntrackError).code).toBe('ERR_PROTOCOL');
}

describe('damaged acks', () => {
  test('an ack cut to 20 bytes (no echoed header) settles with ERR_PROTOCOL', async () => {
    const { conn, outcome, seq } = await sendOne();
    const body = Buffer.alloc(4); // error 0, nothing else
    expect(() => conn.feed(nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, seq, body))).not.toThrow();
    expectProtocolError(outcome);
  });

  test('an echoed length whose int32 align4 is negative neither throws nor loses the errno', async () => {
    const { conn, outcome, seq } = await sendOne();
    const m = ack(seq, 17 /* EEXIST */, NLM_F_ACK_TLVS);
    m.writeUInt32LE(0x7ffffffe, 16 + 4); // the echoed request length: align4() of it is negative in int32
    expect(() => conn.feed(m)).not.toThrow();
    expect(outcome.settled).toBe(true);
    expect((outcome.error as ConntrackError).code).toBe('EEXIST');
  });

  test('an error field outside -4095..0 settles with ERR_PROTOCOL, not a made-up errno', async () => {
    const { conn, outcome, seq } = await sendOne();
    const m = ack(seq);
    m.writeInt32LE(-2147483648, 16);
    conn.feed(m);
    expectProtocolError(outcome);
    const second = await sendOne();
    const p = ack(second.seq);
    p.writeInt32LE(5, 16); // a positive error field
    second.conn.feed(p);
    expectProtocolError(second.outcome);
  });

  test('a message whose length runs past the batch fails the request it names', async () => {
    const { conn, outcome, seq } = await sendOne(false);
    const m = ack(seq);
    m.writeUInt32LE(400, 0);
    conn.feed(m);
    expectProtocolError(outcome);
  });

  test('a message shorter than its header fails the request it names', async () => {
    const { conn, outcome, seq } = await sendOne(false);
    const m = ack(seq);
    m.writeUInt32LE(8, 0);
    conn.feed(m);
    expectProtocolError(outcome);
  });
});

describe('handlers that throw', () => {
  test("a reply handler whose message() throws ends that request only; the batch's other replies still arrive", async () => {
    const { sock, conn } = fakeSocket();
    const a = recorder('get', false);
    const b = recorder('create');
    a.handler.message = () => {
      throw new TypeError('decoder bug');
    };
    sock.request(0x100, 0, 2, undefined, a.handler);
    sock.request(0x100, 0, 2, undefined, b.handler);
    await tick();
    const [ra, rb] = conn.sent;
    const batch = Buffer.concat([nlmsg(0x100, 0, ra.seq, Buffer.alloc(8)), nlmsg(0x100, 0, ra.seq, Buffer.alloc(8)), ack(ra.seq), ack(rb.seq)]);
    expect(() => conn.feed(batch)).not.toThrow();
    expectProtocolError(a.outcome);
    expect((a.outcome.error as Error & { cause?: unknown }).cause).toBeInstanceOf(TypeError);
    expect(b.outcome).toMatchObject({ settled: true, ok: true });
    expect(sock.unmatched).toBe(2); // the failed request's second message and its ack
  });

  test('an event sink whose message() throws gets error() and later events still flow', async () => {
    const { sock, conn } = fakeSocket();
    const seen: string[] = [];
    let n = 0;
    sock.events = {
      message: () => {
        if (n++ === 0) throw new Error('listener');
        seen.push('event');
      },
      overrun: () => undefined,
      error: (err) => seen.push(`error:${err.message}`),
    };
    sock.setListening(true);
    const ev = nlmsg(0x100, 0, 0, Buffer.alloc(8), 0);
    expect(() => conn.feed(Buffer.concat([ev, ev]))).not.toThrow();
    expect(seen).toEqual(['error:an event could not be decoded: listener', 'event']);
  });
});

describe('NLMSG_DONE', () => {
  test('a DONE carrying a negative status rejects with that errno', async () => {
    const { conn, outcome, seq } = await sendOne(false);
    const body = Buffer.alloc(4);
    body.writeInt32LE(-16, 0);
    conn.feed(nlmsg(NLMSG_DONE, 2, seq, body));
    expect((outcome.error as ConntrackError).code).toBe('EBUSY');
  });

  test('replies from another port id are not taken for ours', async () => {
    const { conn, outcome, seq } = await sendOne();
    conn.feed(nlmsg(NLMSG_ERROR, 0, seq, Buffer.alloc(20), PORT_ID + 1));
    expect(outcome.settled).toBe(false);
    conn.feed(ack(seq));
    expect(outcome).toMatchObject({ settled: true, ok: true });
  });
});

describe('cancel()', () => {
  test('a request whose reply never comes settles with the given error, frees its slot, and a late reply is ignored', async () => {
    const { sock, conn, outcome, handler, seq } = await sendOne(false);
    expect(sock.cancel(recorder('other').handler, new ConntrackError('ERR_ABORTED', 'x'))).toBe(false); // not in flight
    expect(outcome.settled).toBe(false);
    expect(sock.cancel(handler, new ConntrackError('ERR_ABORTED', 'given up'))).toBe(true);
    expect(outcome.settled).toBe(true);
    expect((outcome.error as ConntrackError).code).toBe('ERR_ABORTED');
    expect((sock as unknown as { inFlight: number }).inFlight).toBe(0);
    const before = sock.unmatched;
    expect(() => conn.feed(nlmsg(0x100, 0, seq, Buffer.alloc(8)))).not.toThrow();
    expect(sock.unmatched).toBe(before + 1);
    expect(outcome.messages).toBe(0);
  });

  test('cancelling a request in flight sends what waited behind it in the queue', async () => {
    const { sock, conn } = fakeSocket();
    const handlers = [];
    for (let i = 0; i < 400; i++) {
      const r = recorder('get', false);
      handlers.push(r.handler);
      sock.request(0x100, 0, 2, Buffer.alloc(8), r.handler);
    }
    await tick();
    const sent = conn.sent.length;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(400); // the window is full: the rest wait
    expect(sock.cancel(handlers[sent], new ConntrackError('ERR_ABORTED', 'x'))).toBe(false); // queued, not in flight
    expect(sock.cancel(handlers[0], new ConntrackError('ERR_ABORTED', 'given up'))).toBe(true);
    await tick();
    expect(conn.sent.length).toBeGreaterThan(sent);
  });
});
