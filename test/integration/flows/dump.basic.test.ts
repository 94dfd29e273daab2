import { Conntrack, ConntrackError } from '../../../lib';
import { withSandbox } from '../../../apps/testing';

describe('dump and list against the kernel', () => {
  test('lists entries created with the conntrack CLI, IPv4 and IPv6', async () => {
    await withSandbox(async (ns) => {
      await ns.sh(
        'conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.2 --sport 1000 --dport 53 -t 100 && ' +
          'conntrack -I -p tcp -s fd00::1 -d fd00::2 --sport 40000 --dport 443 -t 200 --state ESTABLISHED -m 7 -w 3',
      );
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const flows = await ct.list();
        expect(flows).toHaveLength(2);
        const udp = flows.find((f) => f.proto === 'udp')!;
        expect(udp.family).toBe('ipv4');
        expect(udp.orig).toMatchObject({ src: '10.0.0.1', dst: '10.0.0.2', sport: 1000, dport: 53 });
        expect(udp.reply).toMatchObject({ src: '10.0.0.2', dst: '10.0.0.1', sport: 53, dport: 1000 });
        const tcp = flows.find((f) => f.proto === 'tcp')!;
        expect(tcp).toMatchObject({ family: 'ipv6', state: 'ESTABLISHED', mark: 7, zone: 3 });
        expect(tcp.orig).toMatchObject({ src: 'fd00::1', dst: 'fd00::2', sport: 40000, dport: 443 });
        expect(await ct.list({ family: 'ipv6' })).toHaveLength(1);
        expect(await ct.list({ orig: { src: '10.0.0.0/8' } })).toHaveLength(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('a bad filter is refused with the field named, before anything is sent', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        expect(() => ct.dump({ orig: { sport: 70000 } })).toThrow(ConntrackError);
        try {
          ct.dump({ orig: { src: 'not-an-ip' } });
        } catch (e) {
          expect(e).toBeInstanceOf(ConntrackError);
          expect((e as ConntrackError).code).toBe('ERR_INVALID_ARGUMENT');
          expect((e as ConntrackError).field).toBe('filter.orig.src');
        }
        expect.assertions(4);
      } finally {
        await ct.close();
      }
    });
  });
});
