/**
 * Direct access to the compiled addon for the native tests (the same loader lib/ uses:
 * node-gyp-build from the package root), and a minimal netlink client on top of it:
 * enough to dump the conntrack table and collect acks without going through lib/.
 */
import * as path from 'path';

/* eslint-disable @typescript-eslint/no-explicit-any */
// eslint-disable-next-line @typescript-eslint/no-var-requires
export const addon: any = require('node-gyp-build')(path.resolve(__dirname, '../../..'));

// Kernel constants (linux/netlink.h, linux/netfilter/nfnetlink*.h).
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 1;
export const NLM_F_ACK = 4;
export const NLM_F_DUMP = 0x300;
export const NFNL_SUBSYS_CTNETLINK = 1;
export const IPCTNL_MSG_CT_NEW = 0;
export const IPCTNL_MSG_CT_GET = 1;
export const CTA_TUPLE_ORIG = 1;
export const CTA_TUPLE_IP = 1;
export const CTA_IP_V4_SRC = 1;
export const NLA_TYPE_MASK = 0x3fff;
export const AF_INET = 2;
export const CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;

export interface Answer {
  /** Data messages (type, body after nlmsghdr + nfgenmsg). */
  messages: { type: number; body: Buffer }[];
  /** 0 for an ack or NLMSG_DONE, else the errno the kernel answered with. */
  errno: number;
}

/** Calls fn(type, payload) for each attribute in buf[off, end). */
export function forEachAttr(buf: Buffer, off: number, end: number, fn: (type: number, value: Buffer) => void): void {
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > end) return;
    fn(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + 4, off + len));
    off += (len + 3) & ~3;
  }
}

/** The original-direction IPv4 source of a ctnetlink flow message body. */
export function origSource(body: Buffer): string | undefined {
  let src: string | undefined;
  forEachAttr(body, 4, body.length, (t, v) => {
    if (t !== CTA_TUPLE_ORIG) return;
    forEachAttr(v, 0, v.length, (t2, v2) => {
      if (t2 !== CTA_TUPLE_IP) return;
      forEachAttr(v2, 0, v2.length, (t3, v3) => {
        if (t3 === CTA_IP_V4_SRC && v3.length === 4) src = Array.from(v3).join('.');
      });
    });
  });
  return src;
}

/** A native socket with request/answer matching by sequence number. */
export class Client {
  readonly sock: any;
  readonly seen = new Map<number, Answer>();
  private readonly waiting = new Map<number, { answer: Answer; resolve: (a: Answer) => void }>();
  errors: number[] = [];
  /** Sequence numbers the sender thread reported as not sent (negative errno batches). */
  failedSeqs: number[] = [];

  constructor(sock: any) {
    this.sock = sock;
  }

  /** The onData callback to construct the native socket with. */
  readonly onData = (batch: Buffer | null, _overruns: number, _skipped: number, errno: number): void => {
    if (errno !== 0) this.errors.push(errno);
    if (batch && errno < 0) for (let p = 0; p + 4 <= batch.length; p += 4) this.failedSeqs.push(batch.readUInt32LE(p));
    if (!batch || errno < 0) return;
    for (let p = 0; p + 16 <= batch.length; ) {
      const len = batch.readUInt32LE(p);
      if (len < 16 || p + len > batch.length) break;
      const type = batch.readUInt16LE(p + 4);
      const seq = batch.readUInt32LE(p + 8);
      let answer = this.seen.get(seq);
      if (!answer) {
        answer = { messages: [], errno: 0 };
        this.seen.set(seq, answer);
      }
      if (type === NLMSG_ERROR || type === NLMSG_DONE) {
        answer.errno = type === NLMSG_ERROR ? -batch.readInt32LE(p + 16) : 0;
        const w = this.waiting.get(seq);
        if (w) {
          this.waiting.delete(seq);
          w.resolve(answer);
        }
      } else {
        answer.messages.push({ type, body: Buffer.from(batch.subarray(p + 16, p + len)) });
      }
      p += (len + 3) & ~3;
    }
  };

  /** Resolves when the request with this sequence number is acked or done. */
  answer(seq: number): Promise<Answer> {
    return new Promise((resolve) => this.waiting.set(seq, { answer: this.seen.get(seq) ?? { messages: [], errno: 0 }, resolve }));
  }

  /** Dumps the IPv4 table; resolves with the original source address of each entry. */
  async dumpSources(): Promise<string[]> {
    this.sock.start();
    const seq = this.sock.request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP | NLM_F_ACK, AF_INET);
    const a = await this.answer(seq);
    this.sock.pause();
    if (a.errno !== 0) throw new Error(`dump failed: errno ${a.errno}`);
    return a.messages.map((m) => origSource(m.body) ?? '?').sort();
  }
}

/** Opens a native socket (synchronously) with a Client attached. */
export function client(options: Record<string, unknown> = {}): Client {
  let c: Client | undefined;
  const sock = new addon.Socket((...args: [Buffer | null, number, number, number]) => c!.onData(...args), options);
  c = new Client(sock);
  return c;
}

/** Opens a native socket with openSocket() (asynchronously) with a Client attached. */
export async function clientAsync(options: Record<string, unknown> = {}): Promise<Client> {
  let c: Client | undefined;
  const sock = await addon.openSocket((...args: [Buffer | null, number, number, number]) => c!.onData(...args), options);
  c = new Client(sock);
  return c;
}

/** `conntrack -I` of a UDP entry from `src` inside the namespace. */
export async function insertUdp(ns: { run(cmd: string, args: string[]): Promise<unknown> }, src: string): Promise<void> {
  await ns.run('conntrack', ['-I', '-p', 'udp', '-s', src, '-d', '10.200.0.1', '--sport', '1000', '--dport', '53', '-t', '300']);
}
