import { existsSync, mkdtempSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { parseProtocols, protocolByName, useProtocolsFile } from '../../../lib/flows/protocols';
import { protoNumber } from '../../../lib/flows/tuple';

describe('protocol names', () => {
  afterEach(() => useProtocolsFile(undefined));

  test('parseProtocols reads names and aliases, skips comments and bad lines', () => {
    const t = parseProtocols('# comment\nigmp\t2\tIGMP\t\t# Internet Group Management\nipv6-icmp 58 IPv6-ICMP\nbogus x\nbig 300\n\n');
    expect([...t]).toEqual([['igmp', 2], ['ipv6-icmp', 58]]);
  });

  test('built-in names first, then the protocols file; without the file, built-in names only', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'protocols-'));
    const file = path.join(dir, 'protocols');
    writeFileSync(file, 'tcp 99 TCP\nvrrp 112 VRRP\n');
    useProtocolsFile(file);
    expect(protocolByName('tcp')).toBe(6); // built-in wins
    expect(protocolByName('VRRP')).toBe(112);
    expect(protoNumber('vrrp', 'proto')).toBe(112);
    useProtocolsFile(path.join(dir, 'missing'));
    expect(protocolByName('udp')).toBe(17);
    expect(protocolByName('vrrp')).toBeUndefined();
    expect(() => protoNumber('vrrp', 'filter.proto')).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.proto' }));
  });

  // Debian's netbase provides /etc/protocols; the CI image and this machine have it.
  (existsSync('/etc/protocols') ? test : test.skip)('the system file names protocols the enum does not', () => {
    expect(protocolByName('igmp')).toBe(2);
    expect(protocolByName('ipv6-icmp')).toBe(58);
  });
});
