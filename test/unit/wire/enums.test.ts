/**
 * lib/wire/enums.ts mirrors kernel constants. This compiles a C program against the system's
 * Linux UAPI headers (6.1 on the build machine) that prints every mirrored constant, and
 * checks the TypeScript values agree. Constants the 6.1 headers lack are checked against
 * facts from the kernel source instead (cited beside each).
 */
import { execFileSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import * as enums from '../../../lib/wire/enums';

const source = readFileSync(path.join(__dirname, '../../../lib/wire/enums.ts'), 'utf8');
const values = enums as unknown as Record<string, unknown>;

/** [TS name, kernel name] for every scalar constant, minus those checked separately. */
function scalarConstants(): [string, string][] {
  const out: [string, string][] = [];
  for (const line of source.split('\n')) {
    const m = /^export const (\w+) = [^;]+; \/\/ (\w+)(.*)$/.exec(line);
    if (!m) continue;
    if (m[3].includes('newer kernels')) continue; // checked below against kernel source facts
    if (m[1].startsWith('CTA_FILTER_F_')) continue; // kernel-internal (nf_internals.h): checked below
    out.push([m[1], m[2]]);
  }
  return out;
}

const HEADERS = [
  'sys/socket.h', 'netinet/in.h', 'linux/netlink.h', 'linux/sock_diag.h', 'linux/netfilter/nfnetlink.h',
  'linux/netfilter/nfnetlink_conntrack.h', 'linux/netfilter/nf_conntrack_common.h',
  'linux/netfilter/nf_conntrack_tcp.h', 'linux/netfilter/nf_conntrack_sctp.h',
];

describe('lib/wire/enums.ts agrees with the Linux headers', () => {
  const scalars = scalarConstants();
  const statusNames = enums.STATUS_NAMES.map((n) => `IPS_${n}_BIT`);
  const tcpStates = enums.TCP_STATES.map((n) => `TCP_CONNTRACK_${n}`);
  const sctpStates = enums.SCTP_STATES.map((n) => `SCTP_CONNTRACK_${n}`);
  const tcpFlag = (n: string): string =>
    n === 'EXP_CHALLENGE_ACK' ? 'IP_CT_EXP_CHALLENGE_ACK' : n === 'SIMULTANEOUS_OPEN' ? 'IP_CT_TCP_SIMULTANEOUS_OPEN' : `IP_CT_TCP_FLAG_${n}`;
  const tcpFlags = Object.entries(enums.TCP_FLAG_NAMES).map(([bit, n]) => [Number(bit), tcpFlag(n)] as const);
  const protos = Object.entries(enums.PROTO_NUMBERS).map(([n, v]) => [v, `IPPROTO_${n.toUpperCase()}`] as const);

  let printed: Map<string, number>;
  beforeAll(() => {
    const names = [...new Set([...scalars.map(([, k]) => k), ...statusNames, ...tcpStates, ...sctpStates, ...tcpFlags.map(([, k]) => k), ...protos.map(([, k]) => k)])];
    const dir = mkdtempSync(path.join(tmpdir(), 'ct-enums-'));
    try {
      const c =
        HEADERS.map((h) => `#include <${h}>`).join('\n') +
        '\n#include <stdio.h>\nint main(void) {\n' +
        // NLA_TYPE_MASK is ~(...) on an int: the TS side keeps its 16 attribute-type bits.
        names.map((n) => `  printf("%s %lld\\n", "${n}", (long long)${n === 'NLA_TYPE_MASK' ? '(unsigned short)' : ''}(${n}));`).join('\n') +
        '\n  return 0;\n}\n';
      writeFileSync(path.join(dir, 'enums.c'), c);
      execFileSync('cc', ['-o', path.join(dir, 'enums'), path.join(dir, 'enums.c')], { stdio: 'pipe' });
      const out = execFileSync(path.join(dir, 'enums'), { encoding: 'utf8' });
      printed = new Map(out.trim().split('\n').map((l) => { const [k, v] = l.split(' '); return [k, Number(v)] as [string, number]; }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the C program printed every constant (at least 180)', () => {
    expect(scalars.length).toBeGreaterThan(180);
    for (const [, k] of scalars) expect(printed.has(k)).toBe(true);
  });

  test('every scalar constant equals the header value', () => {
    const mismatches = scalars.filter(([ts, k]) => values[ts] !== printed.get(k)).map(([ts, k]) => `${ts}=${String(values[ts])} but ${k}=${printed.get(k)}`);
    expect(mismatches).toEqual([]);
  });

  test('name tables are indexed by the kernel values', () => {
    statusNames.forEach((k, i) => expect([k, printed.get(k)]).toEqual([k, i]));
    tcpStates.forEach((k, i) => expect([k, printed.get(k)]).toEqual([k, i]));
    sctpStates.forEach((k, i) => expect([k, printed.get(k)]).toEqual([k, i]));
    for (const [bit, k] of tcpFlags) expect([k, printed.get(k)]).toEqual([k, bit]);
    for (const [num, k] of protos) expect([k, printed.get(k)]).toEqual([k, num]);
  });

  test('constants newer than the 6.1 headers match the kernel source', () => {
    // include/uapi/linux/netfilter/nfnetlink_conntrack.h (Linux 6.14): CTA_TIMESTAMP_EVENT
    // follows CTA_STATUS_MASK in enum ctattr_type.
    expect(enums.CTA_TIMESTAMP_EVENT).toBe(printed.get('CTA_STATUS_MASK')! + 1);
    expect(enums.CTA_TIMESTAMP_EVENT).toBe(27);
    // net/netfilter/nf_internals.h: CTA_FILTER_F_* are bits 0..11 in this order.
    const order = ['IP_SRC', 'IP_DST', 'TUPLE_ZONE', 'PROTO_NUM', 'PROTO_SRC_PORT', 'PROTO_DST_PORT', 'PROTO_ICMP_TYPE',
      'PROTO_ICMP_CODE', 'PROTO_ICMP_ID', 'PROTO_ICMPV6_TYPE', 'PROTO_ICMPV6_CODE', 'PROTO_ICMPV6_ID'];
    order.forEach((n, i) => expect([n, values[`CTA_FILTER_F_CTA_${n}`]]).toEqual([n, 1 << i]));
  });
});
