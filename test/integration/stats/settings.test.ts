import { readFileSync } from 'fs';
import { Conntrack, ConntrackError } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';
import { DIST, runScript } from '../../helpers/child';

const DIR = '/proc/sys/net/netfilter';
const inside = async (ns: Sandbox, name: string): Promise<string> =>
  (await ns.run('cat', [`${DIR}/nf_conntrack_${name}`])).stdout.trim();
const host = (name: string): string => readFileSync(`${DIR}/nf_conntrack_${name}`, 'utf8').trim();

describe('settings (nf_conntrack sysctls) against the kernel', () => {
  test('get() reads the namespace\'s sysctls, typed, every file accounted for', async () => {
    await withSandbox(async (ns) => {
      await ns.sysctl('net.netfilter.nf_conntrack_acct', 1);
      await ns.sysctl('net.netfilter.nf_conntrack_udp_timeout', 17);
      await ns.sh('conntrack -I -p udp -s 10.4.0.1 -d 10.4.0.2 --sport 7 --dport 8 -t 60');
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const s = await ct.settings.get();
        expect(s.acct).toBe(true);
        expect(s.udpTimeout).toBe(17);
        expect(s.count).toBe(1);
        expect(s.max).toBe(Number(await inside(ns, 'max')));
        expect(s.buckets).toBe(Number(await inside(ns, 'buckets')));
        expect(s.timestamp).toBe((await inside(ns, 'timestamp')) !== '0');
        expect(s.tcpTimeoutEstablished).toBe(Number(await inside(ns, 'tcp_timeout_established')));
        expect(s.tcpLoose).toBe((await inside(ns, 'tcp_loose')) === '1');
        const ev = await inside(ns, 'events');
        expect(s.events).toBe(ev === '2' ? 'auto' : ev === '1');
        // Every nf_conntrack_* file inside the namespace is either a typed field or in extra.
        const files = (await ns.sh(`ls ${DIR} | grep '^nf_conntrack_'`)).stdout.trim().split('\n');
        const typedCount = Object.keys(s).filter((k) => k !== 'extra').length;
        expect(typedCount + Object.keys(s.extra).length).toBe(files.length);
        // The host's own namespace is untouched and reads differently.
        const own = await Conntrack.open();
        try {
          expect((await own.settings.get()).udpTimeout).toBe(Number(host('udp_timeout')));
        } finally {
          await own.close();
        }
      } finally {
        await ct.close();
      }
    });
  });

  test('set() writes per-namespace settings and returns the previous values', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const hostAcct = host('acct');
      const hostEst = host('tcp_timeout_established');
      try {
        const before = await ct.settings.get();
        const previous = await ct.settings.set({ acct: true, tcpTimeoutEstablished: 3600, events: false, tcpLoose: false });
        expect(previous).toEqual({ acct: before.acct, tcpTimeoutEstablished: before.tcpTimeoutEstablished, events: before.events, tcpLoose: before.tcpLoose });
        expect(await inside(ns, 'acct')).toBe('1');
        expect(await inside(ns, 'tcp_timeout_established')).toBe('3600');
        expect(await inside(ns, 'events')).toBe('0');
        expect(await inside(ns, 'tcp_loose')).toBe('0');
        expect(host('acct')).toBe(hostAcct);
        expect(host('tcp_timeout_established')).toBe(hostEst);
        await ct.settings.set(previous);
        expect(await ct.settings.get()).toEqual(before);
      } finally {
        await ct.close();
      }
    });
  });

  test('writing max from a child namespace is refused with a message saying why; nothing is written', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const max = host('max');
      try {
        expect(await inside(ns, 'acct')).toBe('0');
        const err = await ct.settings.set({ acct: true, max: 1000 }).catch((e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err.code).toBe('EACCES');
        expect(err.errno).toBe(13);
        expect(err.field).toBe('max');
        expect(err.message).toMatch(/net\.netfilter\.nf_conntrack_max/);
        expect(err.message).toMatch(/read-only outside the initial network namespace/);
        expect(err.message).toMatch(/nf_conntrack_buckets \(the hash size\)/);
        expect(err.message).toMatch(/nothing was changed/);
        expect(await inside(ns, 'acct')).toBe('0');
        expect(host('max')).toBe(max);
        const b = await ct.settings.set({ buckets: 1024 }).catch((e) => e);
        expect(b).toMatchObject({ code: 'EACCES', field: 'buckets' });
        expect(b.message).toMatch(/global/);
      } finally {
        await ct.close();
      }
    });
  });

  test('a value the kernel refuses rolls back the writes made before it', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const high = Number(await inside(ns, 'frag6_high_thresh'));
        const low = await inside(ns, 'frag6_low_thresh');
        // The kernel keeps low_thresh at most high_thresh: this passes validation, then EINVAL.
        const err = await ct.settings.set({ acct: true, udpTimeout: 99, frag6LowThresh: high + 1 }).catch((e) => e);
        expect(err).toBeInstanceOf(ConntrackError);
        expect(err).toMatchObject({ code: 'EINVAL', field: 'frag6LowThresh', syscall: 'write' });
        expect(err.message).toMatch(/restored/);
        expect(await inside(ns, 'acct')).toBe('0');
        expect(await inside(ns, 'udp_timeout')).not.toBe('99');
        expect(await inside(ns, 'frag6_low_thresh')).toBe(low);
      } finally {
        await ct.close();
      }
    });
  });

  test('bad values are refused with the field named, before anything is written', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const cases: [Record<string, unknown>, string, RegExp][] = [
          [{ acct: true, udpTimeout: 'x' }, 'udpTimeout', /integer 0-\d+ seconds/],
          [{ acct: 'yes' }, 'acct', /true or false/],
          [{ acct: true, count: 3 }, 'count', /read-only/],
          [{ acct: true, bogus: 1 }, 'bogus', /unknown setting; known settings are max, buckets/],
          [{ tcpTimeoutEstablished: -1 }, 'tcpTimeoutEstablished', /integer/],
          [{ tcpTimeoutEstablished: 1.5 }, 'tcpTimeoutEstablished', /integer/],
          [{ events: 'sometimes' }, 'events', /'auto'/],
          [{ logInvalid: 256 }, 'logInvalid', /0-255/],
          [{ max: -1 }, 'max', /0-2147483647/],
        ];
        for (const [values, field, msg] of cases) {
          const err = await ct.settings.set(values as never).catch((e) => e);
          expect(err).toBeInstanceOf(ConntrackError);
          expect([field, err.code, err.field]).toEqual([field, 'ERR_INVALID_ARGUMENT', field]);
          expect(err.message).toMatch(msg);
        }
        await expect(ct.settings.set(null as never)).rejects.toMatchObject({ field: 'values' });
        expect(await inside(ns, 'acct')).toBe('0');
        expect(await ct.settings.set({})).toEqual({});
      } finally {
        await ct.close();
      }
    });
  });

  test('a setting the kernel does not have is ERR_UNSUPPORTED', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const s = await ct.settings.get();
        // nf_conntrack_helper was removed in Linux 6.0; dccp timeouts depend on the config.
        const absent = (['helper', 'dccpTimeoutOpen', 'sctpTimeoutHeartbeatAcked'] as const).find((k) => s[k] === undefined);
        expect(absent).toBeDefined();
        const value = absent === 'helper' ? false : 60;
        const err = await ct.settings.set({ acct: true, [absent!]: value }).catch((e) => e);
        expect(err).toMatchObject({ code: 'ERR_UNSUPPORTED', field: absent });
        expect(err.message).toMatch(/does not exist on this kernel/);
        expect(await inside(ns, 'acct')).toBe('0');
      } finally {
        await ct.close();
      }
    });
  });
  test('after close(), get() and set() reject with ERR_CLOSED, also on a handle of the caller\'s own namespace', async () => {
    await withSandbox(async (ns) => {
      // A child inside the namespace opens a handle without netns (its own namespace).
      const r = await runScript('nsenter', [`--net=${ns.path}`, '--'], `
        const { Conntrack } = require(${JSON.stringify(DIST)});
        (async () => {
          const ct = await Conntrack.open();
          const before = (await ct.settings.get()).udpTimeout;
          await ct.close();
          const codes = [];
          for (const p of [() => ct.settings.get(), () => ct.settings.set({ udpTimeout: 1 })]) codes.push(await p().then(() => 'resolved', (e) => e.code));
          console.log(JSON.stringify({ before, codes }));
        })();
      `);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(typeof out.before).toBe('number');
      expect(out.codes).toEqual(['ERR_CLOSED', 'ERR_CLOSED']);
      expect(Number(await inside(ns, 'udp_timeout'))).toBe(out.before); // nothing written
    });
  });
});
