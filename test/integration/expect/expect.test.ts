import { ChildProcess } from 'child_process';
import { Conntrack, ConntrackError, Expectation } from '../../../lib';
import { Sandbox, withSandbox } from '../../../apps/testing';

/** nft ruleset that hands port-21 connections to the kernel's ftp helper (first packet is in OUTPUT on loopback). */
const FTP_RULES = `table inet t {
  ct helper ftp-h { type "ftp" protocol tcp; }
  chain pre { type filter hook prerouting priority 0; tcp dport 21 ct helper set "ftp-h"; }
  chain out { type filter hook output priority 0; tcp dport 21 ct helper set "ftp-h"; }
}
`;

/**
 * A tiny FTP server on 127.0.0.1:21 and a client that sends PASV (or PORT) and then keeps
 * the control connection open. Prints one JSON line once the server's reply was read.
 */
const FTP_SCRIPT = `
const net = require('net');
const mode = process.argv[1];
const dataPort = 50123;
const srv = net.createServer((s) => {
  s.write('220 fake ftp\\r\\n');
  s.on('data', (d) => {
    const l = d.toString();
    if (l.startsWith('PASV')) s.write('227 Entering Passive Mode (127,0,0,1,' + (dataPort >> 8) + ',' + (dataPort & 255) + ')\\r\\n');
    else if (l.startsWith('PORT')) s.write('200 PORT command successful\\r\\n');
    else if (l.startsWith('USER')) s.write('230 logged in\\r\\n');
    else s.write('502 not implemented\\r\\n');
  });
  s.on('error', () => {});
});
srv.listen(21, '127.0.0.1', () => {
  const c = net.connect(21, '127.0.0.1');
  let step = 0;
  // The kernel helper parses a direction only after its first complete line, so the
  // client logs in before the command that carries the address.
  c.on('data', () => {
    if (step === 0) {
      step = 1;
      c.write('USER anonymous\\r\\n');
    } else if (step === 1) {
      step = 2;
      c.write(mode === 'pasv' ? 'PASV\\r\\n' : 'PORT 127,0,0,1,' + (dataPort >> 8) + ',' + (dataPort & 255) + '\\r\\n');
    } else if (step === 2) {
      step = 3;
      console.log(JSON.stringify({ clientPort: c.localPort, dataPort }));
    }
  });
});
setInterval(() => {}, 1 << 30); // stays until killed
`;

async function startFtp(ns: Sandbox, mode: 'pasv' | 'port'): Promise<{ child: ChildProcess; clientPort: number; dataPort: number }> {
  await ns.run('nft', ['-f', '-'], { input: FTP_RULES });
  const child = ns.spawn('node', ['-e', FTP_SCRIPT, mode]);
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code) => reject(new Error(`ftp script exited (${code}): ${err}`)));
  });
  return { child, ...JSON.parse(line) };
}

/** Parses `conntrack -L expect` lines into comparable records. */
function cliExpectations(text: string) {
  return text
    .split('\n')
    .filter((l) => /proto=/.test(l))
    .map((l) => {
      const timeout = Number(l.trim().split(/\s+/)[0]);
      const kv = [...l.matchAll(/(\S+?)=(\S+)/g)].map((m) => [m[1], m[2]] as const);
      const ports = kv.filter(([k]) => k === 'sport' || k === 'dport').map(([, v]) => Number(v));
      const get = (k: string) => kv.find(([kk]) => kk === k)?.[1];
      const flags = l.includes('PERMANENT') || l.includes('INACTIVE') || l.includes('USERSPACE') ? l.match(/PERMANENT|INACTIVE|USERSPACE/g) : [];
      return {
        timeout,
        proto: Number(get('proto')),
        tuple: { src: get('src'), dst: get('dst'), sport: ports[0], dport: ports[1] },
        mask: { src: get('mask-src'), dst: get('mask-dst'), sport: ports[2], dport: ports[3] },
        master: { src: get('master-src'), dst: get('master-dst'), sport: ports[4], dport: ports[5] },
        class: Number(get('class')),
        helper: get('helper'),
        flags,
      };
    });
}

async function cliList(ns: Sandbox) {
  return cliExpectations((await ns.run('conntrack', ['-L', 'expect'])).stdout);
}

const sameAsCli = (x: Expectation, c: ReturnType<typeof cliExpectations>[number]) => {
  expect(c.proto).toBe(6);
  expect(x.tuple).toMatchObject(c.tuple);
  expect(x.mask).toMatchObject(c.mask);
  expect(x.master).toMatchObject(c.master);
  expect(x.class).toBe(c.class);
  expect(x.helper).toBe(c.helper);
  expect(Math.abs(x.timeout - c.timeout)).toBeLessThanOrEqual(2);
};

const MASTER = { src: '10.1.0.1', dst: '10.1.0.2', sport: 40000, dport: 21 };

async function ftpMaster(ct: Conntrack, orig = MASTER, extra: Record<string, unknown> = {}): Promise<void> {
  await ct.create({ proto: 'tcp', orig, timeout: 600, state: 'ESTABLISHED', helper: 'ftp', ...extra });
}

describe('expectations against the kernel', () => {
  test('the ftp helper creates an expectation from a real PASV exchange; listed with tuple, mask, master and helper', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const events = ct.expectations.events({ types: ['new'] });
      const ftp = await startFtp(ns, 'pasv');
      try {
        const ev = await events.waitFor((e) => e.expectation.tuple.dport === ftp.dataPort);
        expect(ev.type).toBe('new');
        const list = await ct.expectations.list();
        expect(list).toHaveLength(1);
        const x = list[0];
        expect(x.family).toBe('ipv4');
        // The client will connect from any port to the address and port in the 227 reply.
        expect(x.tuple).toEqual({ proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.1', sport: 0, dport: ftp.dataPort });
        expect(x.mask).toEqual({ proto: 'tcp', src: '255.255.255.255', dst: '255.255.255.255', sport: 0, dport: 65535 });
        expect(x.master).toEqual({ proto: 'tcp', src: '127.0.0.1', dst: '127.0.0.1', sport: ftp.clientPort, dport: 21 });
        expect(x.helper).toBe('ftp');
        expect(x.class).toBe(0);
        expect(x.flags).toEqual([]);
        expect(x.timeout).toBeGreaterThan(200);
        expect(x.timeout).toBeLessThanOrEqual(300);
        expect(ev.expectation).toMatchObject({ tuple: x.tuple, mask: x.mask, master: x.master, helper: 'ftp' });
        const cli = await cliList(ns);
        expect(cli).toHaveLength(1);
        sameAsCli(x, cli[0]);
        // get by the tuple the kernel reported
        expect(await ct.expectations.get(x.tuple)).toMatchObject({ id: x.id, helper: 'ftp' });
        expect(await ct.expectations.list({ helper: 'ftp', master: { dport: 21 } })).toHaveLength(1);
        expect(await ct.expectations.list({ helper: 'sip' })).toHaveLength(0);
      } finally {
        ftp.child.kill();
        events.close();
        await ct.close();
      }
    });
  });

  test('an active-mode PORT command makes an expectation from the server side', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const ftp = await startFtp(ns, 'port');
      try {
        let list: Expectation[] = [];
        for (let i = 0; i < 100 && list.length === 0; i++) {
          list = await ct.expectations.list();
          if (list.length === 0) await new Promise((r) => setTimeout(r, 20));
        }
        expect(list).toHaveLength(1);
        expect(list[0].tuple).toMatchObject({ proto: 'tcp', dst: '127.0.0.1', dport: ftp.dataPort });
        expect(list[0].master).toMatchObject({ sport: ftp.clientPort, dport: 21 });
        sameAsCli(list[0], (await cliList(ns))[0]);
      } finally {
        ftp.child.kill();
        await ct.close();
      }
    });
  });

  test('create, get, delete and flush agree with conntrack -L expect', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        await ftpMaster(ct);
        const created = await ct.expectations.create({
          master: { proto: 'tcp', orig: MASTER },
          tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50000 },
          timeout: 120,
        });
        expect(created).toBeDefined();
        expect(created!.tuple).toEqual({ proto: 'tcp', src: '10.1.0.2', dst: '10.1.0.1', sport: 0, dport: 50000 });
        expect(created!.mask).toEqual({ proto: 'tcp', src: '255.255.255.255', dst: '255.255.255.255', sport: 0, dport: 65535 });
        expect(created!.master).toEqual({ proto: 'tcp', ...MASTER });
        expect(created!.helper).toBe('ftp');
        expect(created!.timeout).toBeGreaterThanOrEqual(118);
        expect(created!.timeout).toBeLessThanOrEqual(120);
        let cli = await cliList(ns);
        expect(cli).toHaveLength(1);
        sameAsCli(created!, cli[0]);

        const got = await ct.expectations.get({ proto: 'tcp', src: '10.1.0.2', dst: '10.1.0.1', sport: 0, dport: 50000 });
        expect(got.id).toBe(created!.id);

        // A masked source: any address in 10.1.0.0/24, any port.
        const orig2 = { ...MASTER, sport: 40001 };
        await ftpMaster(ct, orig2);
        const masked = await ct.expectations.create({
          master: { proto: 'tcp', orig: orig2 },
          tuple: { src: '10.1.0.0', dst: '10.1.0.1', dport: 50001 },
          mask: { src: '255.255.255.0', sport: 0 },
          flags: ['PERMANENT'],
        });
        expect(masked!.mask).toMatchObject({ src: '255.255.255.0', sport: 0 });
        expect(masked!.flags).toEqual(['PERMANENT']);
        cli = await cliList(ns);
        expect(cli).toHaveLength(2);
        const cliMasked = cli.find((c) => c.tuple.dport === 50001)!;
        sameAsCli(masked!, cliMasked);
        expect(cliMasked.flags).toEqual(['PERMANENT']);

        // delete by the Expectation (tuple + id)
        await ct.expectations.delete(created!);
        cli = await cliList(ns);
        expect(cli.map((c) => c.tuple.dport)).toEqual([50001]);
        await expect(ct.expectations.delete(created!)).rejects.toMatchObject({ code: 'ENOENT' });
        await expect(ct.expectations.get(created!)).rejects.toMatchObject({ code: 'ENOENT', errno: 2 });

        // the id of an Expectation is checked: a different id leaves the entry alone
        const again = await ct.expectations.create({ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50000 } });
        await expect(ct.expectations.delete({ ...again!, id: (again!.id ^ 1) >>> 0 })).rejects.toMatchObject({ code: 'ENOENT' });
        expect(await cliList(ns)).toHaveLength(2);

        // filtered flush (by master) leaves the other one
        await ct.expectations.flush({ master: { sport: 40001 } });
        cli = await cliList(ns);
        expect(cli.map((c) => c.master.sport)).toEqual([40000]);
        // flush everything
        await ct.expectations.create({ master: { proto: 'tcp', orig: orig2 }, tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50002 } });
        expect(await cliList(ns)).toHaveLength(2);
        await ct.expectations.flush();
        expect(await cliList(ns)).toHaveLength(0);
        expect(await ct.expectations.list()).toEqual([]);
        // flush by helper name (done by the kernel)
        await ct.expectations.create({ master: { proto: 'tcp', orig: orig2 }, tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50003 } });
        await ct.expectations.flush({ helper: 'sip' });
        expect(await cliList(ns)).toHaveLength(1);
        await ct.expectations.flush({ helper: 'ftp' });
        expect(await cliList(ns)).toHaveLength(0);
      } finally {
        await ct.close();
      }
    });
  });

  test('IPv6 expectations and zones', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const orig = { src: 'fd00::1', dst: 'fd00::2', sport: 40000, dport: 21 };
        await ftpMaster(ct, orig, { zone: 7 });
        const x = await ct.expectations.create({
          master: { proto: 'tcp', orig, zone: 7 },
          tuple: { src: 'fd00::2', dst: 'fd00::1', dport: 50000 },
        });
        expect(x!.family).toBe('ipv6');
        expect(x!.tuple).toMatchObject({ src: 'fd00::2', dst: 'fd00::1', sport: 0, dport: 50000 });
        expect(x!.mask.src).toBe('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
        expect(x!.zone).toBe(7); // known from the request: this kernel does not report expectation zones
        const cli = (await ns.run('conntrack', ['-L', 'expect', '-f', 'ipv6'])).stdout;
        expect(cli).toContain('src=fd00::2 dst=fd00::1 sport=0 dport=50000');
        // without the zone the kernel does not find it
        await expect(ct.expectations.get({ proto: 'tcp', src: 'fd00::2', dst: 'fd00::1', dport: 50000 })).rejects.toMatchObject({ code: 'ENOENT' });
        expect((await ct.expectations.get({ proto: 'tcp', src: 'fd00::2', dst: 'fd00::1', dport: 50000, zone: 7 })).id).toBe(x!.id);
        expect(await ct.expectations.list({ family: 'ipv4' })).toEqual([]);
        expect(await ct.expectations.list({ family: 'ipv6' })).toHaveLength(1);
        // Zones are not reported, so they cannot be filtered, and a filtered flush that cannot
        // reach a zone-7 expectation says so instead of claiming success.
        await expect(ct.expectations.list({ zone: 7 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field: 'filter.zone' });
        await expect(ct.expectations.flush({ family: 'ipv6' })).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
        expect(await ct.expectations.list()).toHaveLength(1);
        await ct.expectations.flush();
        expect(await ct.expectations.list()).toEqual([]);
      } finally {
        await ct.close();
      }
    });
  });

  test('kernel refusals are explained: no master, master without helper, duplicate', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const tuple = { src: '10.1.0.2', dst: '10.1.0.1', dport: 50000 };
        const noMaster = await ct.expectations.create({ master: { proto: 'tcp', orig: MASTER }, tuple }).catch((e) => e);
        expect(noMaster).toBeInstanceOf(ConntrackError);
        expect(noMaster).toMatchObject({ code: 'ENOENT', errno: 2 });
        expect(noMaster.message).toMatch(/no master flow 10\.1\.0\.1:40000 -> 10\.1\.0\.2:21/);

        await ct.create({ proto: 'tcp', orig: MASTER, timeout: 600, state: 'ESTABLISHED' });
        const noHelper = await ct.expectations.create({ master: { proto: 'tcp', orig: MASTER }, tuple }).catch((e) => e);
        expect(noHelper).toMatchObject({ code: 'ENOTSUP', errno: 95 });
        expect(noHelper.message).toMatch(/only on a master flow that has a helper/);
        expect(noHelper.message).toMatch(/helper: 'ftp'/);

        const orig2 = { ...MASTER, sport: 40001 };
        await ftpMaster(ct, orig2);
        // ftp has a single expectation class (0)
        const badClass = await ct.expectations.create({ master: { proto: 'tcp', orig: orig2 }, tuple, class: 1, helper: 'ftp' }).catch((e) => e);
        expect(badClass).toMatchObject({ code: 'EINVAL', errno: 22 });
        expect(badClass.message).toMatch(/class/);

        await ct.expectations.create({ master: { proto: 'tcp', orig: orig2 }, tuple });
        const dup = await ct.expectations.create({ master: { proto: 'tcp', orig: orig2 }, tuple }).catch((e) => e);
        expect(dup).toMatchObject({ code: 'EEXIST', errno: 17 });
        expect(dup.message).toMatch(/already exists/);
        expect(await cliList(ns)).toHaveLength(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('events report new and destroy; types select them; lost stays 0', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      // Subscribe before the master exists: the kernel only reports expectations of
      // masters created while someone listened (see docs/expectations.md).
      const all = ct.expectations.events();
      const destroyOnly = ct.expectations.events({ types: ['destroy'] });
      const emitted: string[] = [];
      // Create the iterator before attaching a listener so events are buffered for it too.
      const it = all[Symbol.asyncIterator]();
      all.on('event', (e) => emitted.push(e.type));
      try {
        await ftpMaster(ct);
        const x = await ct.expectations.create({ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50000 } });
        await ct.expectations.delete(x!);
        const first = (await it.next()).value;
        const second = (await it.next()).value;
        expect(first.type).toBe('new');
        expect(first.expectation).toMatchObject({ id: x!.id, tuple: x!.tuple, master: { proto: 'tcp', ...MASTER }, helper: 'ftp' });
        expect(second.type).toBe('destroy');
        expect(second.expectation.id).toBe(x!.id);
        const d = (await destroyOnly[Symbol.asyncIterator]().next()).value;
        expect(d.type).toBe('destroy');
        expect(destroyOnly.received).toBe(1);
        expect(emitted).toEqual(['new', 'destroy']);
        expect(all.lost).toBe(0);
        // closing ends a pending iteration
        const pending = it.next();
        all.close();
        expect(await pending).toEqual({ value: undefined, done: true });
      } finally {
        destroyOnly.close();
        await ct.close();
      }
      expect(destroyOnly.isClosed).toBe(true);
    });
  });

  test('an AbortSignal ends the event stream and Conntrack.close() closes it', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const ac = new AbortController();
      const ev = ct.expectations.events({ signal: ac.signal });
      const other = ct.expectations.events();
      const seen: unknown[] = [];
      const loop = (async () => {
        for await (const e of ev) seen.push(e);
      })();
      ac.abort();
      await loop;
      expect(ev.isClosed).toBe(true);
      expect(seen).toEqual([]);
      await ct.close();
      expect(other.isClosed).toBe(true);
    });
  });

  test('stats() reports per-CPU create and delete counters', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      try {
        const before = await ct.expectations.stats();
        expect(before.length).toBeGreaterThanOrEqual(1);
        expect(before.map((s) => s.cpu)).toEqual([...before.keys()].map((i) => before[i].cpu).sort((a, b) => a - b));
        await ftpMaster(ct);
        const x = await ct.expectations.create({ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.1.0.2', dst: '10.1.0.1', dport: 50000 } });
        await ct.expectations.delete(x!);
        const after = await ct.expectations.stats();
        const sum = (s: typeof after, k: 'create' | 'delete') => s.reduce((a, c) => a + c[k], 0);
        expect(sum(after, 'create') - sum(before, 'create')).toBe(1);
        expect(sum(after, 'delete') - sum(before, 'delete')).toBe(1);
      } finally {
        await ct.close();
      }
    });
  });

  test('bad specs are refused with the field named, and nothing is sent', async () => {
    await withSandbox(async (ns) => {
      const ct = await Conntrack.open({ netns: ns.path });
      const sent = jest.spyOn(ct.sock, 'request');
      try {
        const bad: Array<[unknown, string]> = [
          [{ tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 } }, 'master'],
          [{ master: { proto: 'tcp', orig: { ...MASTER, sport: 70000 } }, tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 } }, 'master.orig.sport'],
          [{ master: { proto: 'tcp', orig: MASTER }, tuple: { src: 'fd00::1', dst: 'fd00::2', dport: 1 } }, 'tuple.src'],
          [{ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 }, mask: { dst: '255.255.0.0' } }, 'mask.dst'],
          [{ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 }, flags: ['USERSPACE'] }, 'flags'],
          [{ master: { proto: 'tcp', orig: MASTER }, tuple: { src: '10.0.0.1', dst: '10.0.0.2', dport: 1 }, timeout: -1 }, 'timeout'],
        ];
        for (const [spec, field] of bad) {
          const e = await ct.expectations.create(spec as never).catch((err) => err);
          expect(e).toBeInstanceOf(ConntrackError);
          expect(e).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', field });
        }
        await expect(ct.expectations.delete({ proto: 'tcp', src: 'nope', dst: '10.0.0.1', dport: 1 } as never)).rejects.toMatchObject({ field: 'target.src' });
        await expect(ct.expectations.get({ src: '10.0.0.1', dst: '10.0.0.2' } as never)).rejects.toMatchObject({ field: 'target.proto' });
        await expect(ct.expectations.list({ helper: 7 } as never)).rejects.toMatchObject({ field: 'filter.helper' });
        expect(() => ct.expectations.dump({ tuple: { sport: -1 } })).toThrow(expect.objectContaining({ field: 'filter.tuple.sport' }));
        expect(() => ct.expectations.events({ types: ['update'] } as never)).toThrow(expect.objectContaining({ field: 'options.types' }));
        expect(sent).not.toHaveBeenCalled();
      } finally {
        sent.mockRestore();
        await ct.close();
      }
    });
  });
});
