/**
 * A scripted stand-in for the native socket, in the style of mdlayher/netlink's test
 * connection: it implements the data callback contract of native/socket.cc (whole netlink
 * messages back to back, plus overrun / skip counts and an errno) and lets a test feed
 * crafted bytes to the receive path. Requests are recorded with the sequence numbers the
 * real socket would give them.
 */
import type { NativeSocket, OnData } from '../../../lib/wire/native';
import { NfSocket, ReplyHandler } from '../../../lib/wire/socket';

export const PORT_ID = 4242;

export interface SentRequest {
  seq: number;
  type: number;
  flags: number;
  family: number;
  payload: Buffer | undefined;
  /** Sent by requestBatch() with sparse acks (only a datagram's last message acked). */
  sparse?: boolean;
}

export class FakeConnection implements NativeSocket {
  readonly portId = PORT_ID;
  readonly sent: SentRequest[] = [];
  reading = false;
  closed = false;
  private nextSeq = 1;
  onData!: OnData;

  request(type: number, flags: number, family: number, payload?: Buffer): number {
    const seq = this.nextSeq++;
    // A copy, as the native side makes before it returns (the caller may reuse the bytes).
    this.sent.push({ seq, type, flags, family, payload: payload && Buffer.from(payload) });
    return seq;
  }

  requestBatch(type: number, flags: number, family: number, payloads: Buffer, ends: Uint32Array, sparseAcks?: boolean): number {
    const first = this.nextSeq;
    let start = 0;
    for (let i = 0; i < ends.length; i++) {
      this.request(type, flags, family, payloads.subarray(start, ends[i]));
      if (sparseAcks) this.sent[this.sent.length - 1].sparse = true;
      start = ends[i];
    }
    return first;
  }

  start(): void {
    this.reading = true;
  }
  pause(): void {
    this.reading = false;
  }
  ref(): void {}
  unref(): void {}
  setReceiveBuffer(bytes: number): { granted: number; forced: boolean } {
    return { granted: bytes * 2, forced: false };
  }
  getReceiveBuffer(): number {
    return 4 << 20;
  }
  memInfo(): number[] {
    return [0, 0, 0, 0, 0, 0, 0, 0, 0];
  }
  setNetlinkOption(): void {}
  joinGroup(): void {}
  attachFilter(): void {}
  close(): void {
    this.closed = true;
    this.reading = false;
  }

  /** Delivers one receive batch, exactly as the native layer calls back. */
  feed(batch: Buffer | null, overruns = 0, skipped = 0, errno = 0): void {
    this.onData(batch, overruns, skipped, errno);
  }
}

/** An NfSocket on a fake connection. */
export function fakeSocket(options: { receiveBufferSize?: number } = {}): { sock: NfSocket; conn: FakeConnection } {
  const conn = new FakeConnection();
  const sock = new NfSocket({
    receiveBufferSize: options.receiveBufferSize,
    open: (onData) => {
      conn.onData = onData;
      return conn;
    },
  });
  return { sock, conn };
}

/**
 * An NfSocket on a fake connection that has already seen a request succeed (one ack-only
 * request, acked), as sparse acks need; `conn.sent` starts empty.
 */
export async function capableSocket(options: { receiveBufferSize?: number } = {}): Promise<{ sock: NfSocket; conn: FakeConnection }> {
  const r = fakeSocket(options);
  r.sock.request(0x100, 0, 2, undefined, { operation: 'probe', ackOnly: true, message() {}, done() {} });
  await new Promise((resolve) => process.nextTick(resolve));
  r.conn.feed(ack(r.conn.sent[0].seq));
  r.conn.sent.splice(0);
  return r;
}

/** A netlink header followed by `body` (length, type, flags, seq, pid filled in). */
export function nlmsg(type: number, flags: number, seq: number, body: Buffer = Buffer.alloc(0), pid = PORT_ID): Buffer {
  const len = 16 + body.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq, 8);
  out.writeUInt32LE(pid, 12);
  body.copy(out, 16);
  return out;
}

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

/** An ack (errno 0) or error for `seq`, with the request header echoed (capped). */
export function ack(seq: number, errno = 0, flags = 0x100 /* NLM_F_CAPPED */): Buffer {
  const body = Buffer.alloc(20);
  body.writeInt32LE(-errno, 0);
  body.writeUInt32LE(20, 4); // echoed length
  body.writeUInt32LE(seq, 12);
  body.writeUInt32LE(PORT_ID, 16);
  return nlmsg(NLMSG_ERROR, flags, seq, body);
}

/** What a request's promise did, for assertions: settled or not, and how. */
export interface Outcome {
  settled: boolean;
  ok?: boolean;
  error?: unknown;
  messages: number;
}

/** A reply handler recording its outcome. */
export function recorder(operation = 'test', ackOnly = true): { handler: ReplyHandler; outcome: Outcome } {
  const outcome: Outcome = { settled: false, messages: 0 };
  const handler: ReplyHandler = {
    operation,
    ackOnly,
    message() {
      outcome.messages++;
    },
    done(err) {
      if (outcome.settled) throw new Error('done() called twice');
      outcome.settled = true;
      outcome.ok = err === undefined;
      outcome.error = err;
    },
  };
  return { handler, outcome };
}

/** Runs queued process.nextTick work (the socket sends at the end of the tick). */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
