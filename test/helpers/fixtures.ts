/** Captured kernel bytes under test/fixtures, split into netlink messages. */
import { readFileSync } from 'fs';
import * as path from 'path';

export const FIXTURES = path.join(__dirname, '../fixtures');

/** The messages of a capture of back-to-back netlink messages (each padded to 4 bytes), as copies. */
export function capturedMessages(file: string): Buffer[] {
  const b = readFileSync(path.join(FIXTURES, file));
  const out: Buffer[] = [];
  for (let p = 0; p + 16 <= b.length; ) {
    const len = b.readUInt32LE(p);
    out.push(Buffer.from(b.subarray(p, p + len)));
    p += (len + 3) & ~3;
  }
  return out;
}

/** The messages of a capture stored as one hex string per line (test/fixtures/dump-mixed.hex). */
export function hexMessages(file: string): Buffer[] {
  return readFileSync(path.join(FIXTURES, file), 'utf8').trim().split('\n').map((h) => Buffer.from(h, 'hex'));
}
