'use strict';
/**
 * Runs a list of steps inside one process (started in the test namespace by helpers.ts
 * `script()`), so a test that compares many commands costs one process start instead of
 * one per command. Each step is `{ tool: 'conntrack' | 'nfct' | 'sh', args, input? }`:
 * conntrack and sh run as child processes; nfct runs the built bin's main() in this
 * process with stdout and stderr captured (the same code the `nfct` bin runs, without a
 * node start per command). Steps run in order; the results (code, stdout, stderr) go to
 * stdout as one JSON array.
 */
const { spawnSync } = require('child_process');
const { writeSync, readFileSync } = require('fs');

const NFCT = process.argv[2];
const { main } = require(NFCT);
const { reportError } = require(require('path').join(NFCT, '../common/errors.js'));

process.stdout.setMaxListeners(0);
process.stderr.setMaxListeners(0);

async function nfct(args) {
  let stdout = '';
  let stderr = '';
  const capture = (append) => function write(chunk, enc, cb) {
    append(typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString());
    const done = typeof enc === 'function' ? enc : cb;
    if (done) process.nextTick(done);
    return true;
  };
  const before = { out: process.stdout.listeners('error'), err: process.stderr.listeners('error') };
  process.stdout.write = capture((s) => (stdout += s));
  process.stderr.write = capture((s) => (stderr += s));
  let code;
  try {
    code = await main(args);
  } catch (err) {
    code = reportError(err);
  } finally {
    delete process.stdout.write;
    delete process.stderr.write;
    // Each command's writer listens for EPIPE on the streams: drop those of finished commands.
    for (const [stream, keep] of [[process.stdout, before.out], [process.stderr, before.err]]) {
      for (const l of stream.listeners('error')) if (!keep.includes(l)) stream.off('error', l);
    }
  }
  return { code, stdout, stderr };
}

function child(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

(async () => {
  const steps = JSON.parse(readFileSync(0, 'utf8'));
  const results = [];
  for (const s of steps) {
    if (s.tool === 'nfct') results.push(await nfct(s.args));
    else if (s.tool === 'sh') results.push(child('sh', ['-c', s.args[0]], s.input));
    else results.push(child('conntrack', s.args, s.input));
  }
  writeSync(1, JSON.stringify(results));
})().catch((err) => {
  writeSync(2, String(err && err.stack));
  process.exit(3);
});
