/** lib/flows/filter.ts: validation names the field and says how to fix it; compiled predicates. */
import { ConntrackError } from '../../../lib/common/errors';
import { compileFilter } from '../../../lib/flows/filter';

function refusal(filter: unknown): ConntrackError {
  try {
    compileFilter(filter as never);
  } catch (e) {
    expect(e).toBeInstanceOf(ConntrackError);
    expect((e as ConntrackError).code).toBe('ERR_INVALID_ARGUMENT');
    return e as ConntrackError;
  }
  throw new Error(`accepted ${JSON.stringify(filter)}`);
}

describe('compileFilter validation', () => {
  test.each([
    [null, 'filter', /must be an object/],
    [[], 'filter', /must be an object/],
    [{ colour: 'red' }, 'filter.colour', /unknown key; a flow filter takes family, proto/],
    [{ family: 'ipx' }, 'filter.family', /must be 'ipv4' or 'ipv6'/],
    [{ proto: 'tcpp' }, 'filter.proto', /unknown protocol "tcpp": use one of/],
    [{ proto: 300 }, 'filter.proto', /0-255/],
    [{ proto: 'icmp', family: 'ipv6' }, 'filter.proto', /use 'icmpv6'/],
    [{ mark: -1 }, 'filter.mark', /0-4294967295/],
    [{ mark: { value: 1 } }, 'filter.mark.mask', /0-4294967295/],
    [{ mark: 'x' }, 'filter.mark', /number or \{ value, mask \}/],
    [{ mark: { value: 0x105, mask: 0xff } }, 'filter.mark.value', /bits outside the mask/],
    [{ zone: 70000 }, 'filter.zone', /0-65535/],
    [{ status: ['ASURED'] }, 'filter.status', /unknown status flag "ASURED": use one of EXPECTED, SEEN_REPLY, ASSURED/],
    [{ status: { set: ['ASSURED'], unset: ['ASSURED'] } }, 'filter.status', /both set and unset/],
    [{ status: { maybe: [] } }, 'filter.status.maybe', /use set and unset/],
    [{ orig: { src: '10.0.0.999' } }, 'filter.orig.src', /not an address or prefix/],
    [{ orig: { src: '10.0.0.1', dst: 'fd00::1' } }, 'filter.orig.dst', /is ipv6 but the filter is for ipv4/],
    [{ family: 'ipv6', reply: { src: '10.0.0.1' } }, 'filter.reply.src', /is ipv4 but the filter is for ipv6/],
    [{ orig: { sport: 70000 } }, 'filter.orig.sport', /port must be an integer 0-65535/],
    [{ proto: 'icmp', orig: { sport: 1 } }, 'filter.orig.sport', /has no ports/],
    [{ proto: 'tcp', orig: { icmp: { type: 8 } } }, 'filter.orig.icmp', /set proto to icmp or icmpv6/],
    [{ orig: { icmp: { type: 256 } } }, 'filter.orig.icmp.type', /0-255/],
    [{ orig: { port: 1 } }, 'filter.orig.port', /unknown key; a tuple filter takes src, dst/],
  ])('%j is refused naming %s', (filter, field, message) => {
    const e = refusal(filter);
    expect(e.field).toBe(field);
    expect(e.message).toMatch(message);
    expect(e.message.startsWith(`${field}: `)).toBe(true);
  });
});

describe('compiled filters', () => {
  const flow = (over: Record<string, unknown>) => ({
    id: 1, family: 'ipv4', proto: 'tcp', orig: { src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 80 },
    reply: { src: '10.0.0.2', dst: '10.0.0.1', sport: 80, dport: 1000 }, status: ['SEEN_REPLY', 'ASSURED'],
    statusBits: 0b110, timeout: 10, mark: 0x1234, zone: 3, use: 1, ...over,
  }) as never;

  test('predicates', () => {
    expect(compileFilter({ mark: { value: 0x34, mask: 0xff } }).match(flow({}))).toBe(true);
    expect(compileFilter({ mark: { value: 0x35, mask: 0xff } }).match(flow({}))).toBe(false);
    expect(compileFilter({ orig: { src: '10.0.0.0/24', dport: 80 } }).match(flow({}))).toBe(true);
    expect(compileFilter({ orig: { src: '10.0.1.0/24' } }).match(flow({}))).toBe(false);
    expect(compileFilter({ status: { set: ['ASSURED'], unset: ['EXPECTED'] } }).match(flow({}))).toBe(true);
    expect(compileFilter({ status: { unset: ['SEEN_REPLY'] } }).match(flow({}))).toBe(false);
    expect(compileFilter({ zone: 3, family: 'ipv4', proto: 'tcp' }).match(flow({}))).toBe(true);
    expect(compileFilter({ family: 'ipv6' }).match(flow({}))).toBe(false);
  });

  test('kernel attributes: empty for no filter, CTA_MARK + CTA_MARK_MASK for a mark', () => {
    expect(compileFilter(undefined).kernelAttrs.length).toBe(0);
    const k = compileFilter({ mark: { value: 0x10, mask: 0xf0 } }).kernelAttrs;
    // CTA_MARK (8) = 0x10 and CTA_MARK_MASK (21) = 0xf0, big endian u32 each
    expect(k.toString('hex')).toBe('08000800000000100800150000000' + '0f0');
    expect(compileFilter({ family: 'ipv6' }).nfFamily).toBe(10);
  });
});
