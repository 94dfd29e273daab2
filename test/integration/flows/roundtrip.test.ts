/**
 * Round trips (fast-check): a random valid create spec is encoded, created in the kernel,
 * read back with get() and compared field by field. Bounded here; the same property runs
 * longer with FUZZ_RUNS (npm run fuzz covers the decoders; this one needs the kernel).
 */
import * as fc from 'fast-check';
import { Conntrack, CreateSpec } from '../../../lib';
import { withSandbox as withNetns } from '../../../apps/testing';

const octet = fc.integer({ min: 1, max: 254 });
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
// Canonical (RFC 5952) text, as the library prints addresses: no zero group next to '::'.
const v6 = fc.tuple(fc.integer({ min: 1, max: 0xffff }), fc.integer({ min: 1, max: 0xffff })).map(([a, b]) => `fd00:${a.toString(16)}::${b.toString(16)}`);
const port = fc.integer({ min: 1, max: 65535 });

const spec: fc.Arbitrary<CreateSpec> = fc.record({
  v6: fc.boolean(),
  proto: fc.constantFrom('tcp', 'udp', 'sctp', 'icmp'),
  srcs: fc.tuple(v4, v4, v6, v6),
  sport: port,
  dport: port,
  timeout: fc.integer({ min: 30, max: 100000 }),
  mark: fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined }),
  zone: fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }),
  assured: fc.boolean(),
  tcpState: fc.constantFrom('SYN_SENT', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'TIME_WAIT'),
}).filter((r) => !(r.v6 ? r.srcs[2] === r.srcs[3] : r.srcs[0] === r.srcs[1])).map((r) => {
  const [src, dst] = r.v6 ? [r.srcs[2], r.srcs[3]] : [r.srcs[0], r.srcs[1]];
  const proto = r.proto === 'icmp' ? (r.v6 ? 'icmpv6' : 'icmp') : r.proto;
  const orig = proto.startsWith('icmp') ? { src, dst, icmp: { type: r.v6 ? 128 : 8, code: 0, id: r.sport } } : { src, dst, sport: r.sport, dport: r.dport };
  const s: Record<string, unknown> = { proto, orig, timeout: r.timeout };
  if (r.mark !== undefined) s.mark = r.mark;
  if (r.zone !== undefined) s.zone = r.zone;
  if (r.assured) s.status = ['ASSURED'];
  if (proto === 'tcp') s.state = r.tcpState;
  return s as unknown as CreateSpec;
});

test('create(spec) then get(): the kernel holds what was asked for', async () => {
  await withNetns(async (ns) => {
    const ct = await Conntrack.open({ netns: ns.path });
    try {
      await fc.assert(fc.asyncProperty(spec, async (s) => {
        await ct.create(s);
        try {
          const f = await ct.get(s);
          expect(f.proto).toBe(s.proto);
          expect(f.family).toBe(s.orig.src.includes(':') ? 'ipv6' : 'ipv4');
          expect(f.orig.src).toBe(s.orig.src);
          expect(f.orig.dst).toBe(s.orig.dst);
          if (s.orig.icmp) expect(f.orig.icmp).toMatchObject(s.orig.icmp);
          else expect([f.orig.sport, f.orig.dport]).toEqual([s.orig.sport, s.orig.dport]);
          // The reply defaults to the inverse of orig.
          expect([f.reply.src, f.reply.dst]).toEqual([s.orig.dst, s.orig.src]);
          expect(f.mark).toBe(s.mark ?? 0);
          expect(f.zone).toBe(s.zone ?? 0);
          expect(f.timeout).toBeLessThanOrEqual(s.timeout);
          expect(f.timeout).toBeGreaterThan(s.timeout - 10);
          if (s.status) expect(f.status).toContain('ASSURED');
          if (s.state) expect(f.state).toBe(s.state);
        } finally {
          await ct.delete(s);
        }
      }), { numRuns: Number(process.env.FUZZ_ROUNDTRIPS ?? 60) });
    } finally {
      await ct.close();
    }
  });
});
