'use strict';
/**
 * Decode designs (DESIGN.md, "The performance rule"), measured on the same bytes: a real
 * dump of 200,000 flows captured from the kernel once, then decoded
 *   - in JS from whole receive buffers (lib/flows/flow.ts decodeFlow, what the package does);
 *   - in C++, building each object property by property through N-API
 *     (bench/c/napi_objects.cc, a bench-only addon decoding only the common fields).
 * Both keep every decoded object alive, as list() does. Best of 5 per design.
 * Usage: node --expose-gc bench/decode.bench.js [flows=200000]
 */
const { execFileSync } = require('child_process');
const path = require('path');
const { sandbox, fillUdp, printTable, machine, OUT } = require('./lib');

const FLOWS = Number(process.argv[2] ?? 200000);

function captureDump(nsPath) {
  const { native } = require('../dist/lib/wire/native');
  const parts = [];
  return new Promise((resolve) => {
    const s = new (native().Socket)((buf) => {
      if (!buf) return;
      parts.push(Buffer.from(buf));
      for (let p = 0; p + 16 <= buf.length; p += (buf.readUInt32LE(p) + 3) & ~3) {
        if (buf.readUInt16LE(p + 4) === 3 /* NLMSG_DONE */) {
          s.close();
          resolve(Buffer.concat(parts));
          return;
        }
      }
    }, { netns: nsPath, threaded: true });
    s.request((1 << 8) | 1 /* IPCTNL_MSG_CT_GET */, 0x301 /* REQUEST|DUMP */, 0);
    s.start(1 << 20);
  });
}

async function main() {
  const { decodeFlow } = require('../dist/lib/flows/flow');
  const addonPath = path.join(OUT, 'napi_objects.node');
  execFileSync('g++', ['-O2', '-shared', '-fPIC', `-I${path.join(path.dirname(process.execPath), '..', 'include', 'node')}`,
    '-o', addonPath, path.join(__dirname, 'c', 'napi_objects.cc')], { stdio: 'inherit' });
  const addon = require(addonPath);

  const ns = await sandbox();
  await fillUdp(ns, FLOWS);
  const buf = await captureDump(ns.path);
  await ns.close();
  const offs = [];
  for (let p = 0; p + 16 <= buf.length; p += (buf.readUInt32LE(p) + 3) & ~3) {
    if (buf.readUInt16LE(p + 4) === 0x100) offs.push(p, buf.readUInt32LE(p));
  }
  const pairs = Uint32Array.from(offs);
  const n = pairs.length / 2;
  console.log(`${machine()}\ncaptured ${n} flows (${(buf.length / 1048576).toFixed(1)} MB of messages)`);

  const designs = {
    'JS decodeFlow from whole buffers': () => {
      const out = new Array(n);
      for (let i = 0; i < pairs.length; i += 2) out[i >> 1] = decodeFlow(buf, pairs[i], pairs[i + 1]);
      return out;
    },
    'C++ objects via N-API properties': () => addon.decode(buf, pairs),
  };
  const best = {};
  for (let r = 0; r < 5; r++) {
    for (const [name, fn] of Object.entries(designs)) {
      global.gc?.();
      const t = process.hrtime.bigint();
      const out = fn();
      const s = Number(process.hrtime.bigint() - t) / 1e9;
      if (out.length !== n || out[n - 1].orig.src === '') throw new Error(`${name} decoded badly`);
      best[name] = Math.min(best[name] ?? Infinity, s);
    }
  }
  const js = best['JS decodeFlow from whole buffers'];
  printTable(`decode ${n} captured flows, objects kept alive (best of 5)`, ['design', 'total s', 'µs / flow', 'vs JS'],
    Object.entries(best).map(([k, s]) => [k, s.toFixed(3), ((s / n) * 1e6).toFixed(2), (s / js).toFixed(2) + 'x']));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
