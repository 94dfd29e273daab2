'use strict';
/**
 * `npm run demo`: runs `nfct sandbox` (apps/nfct/commands/sandbox.ts): a private network
 * namespace (unshare -Urn when not root), tracking on, real TCP, UDP and ICMP traffic, then
 * the flows, a live stream of events and the statistics. Arguments are passed on:
 * `npm run demo -- --scenario nat`.
 */
const { execSync } = require('child_process');
const { existsSync } = require('fs');
const path = require('path');

const main = path.join(__dirname, '..', 'dist', 'apps', 'nfct', 'main.js');
// `npm ci` builds the addon and dist/; build here only when that has not happened.
if (!existsSync(main)) execSync('npm run build', { cwd: path.join(__dirname, '..'), stdio: 'inherit' });
// The sandbox command re-executes main.js under unshare when not root, so it must see main.js as argv[1].
process.argv[1] = main;
require(main)
  .main(['sandbox', ...process.argv.slice(2)])
  .then((code) => {
    process.exitCode = code;
  });
