#!/usr/bin/env node
// The package's install step. Uses the prebuilt binary when it loads. When it is there but
// cannot load because libmnl is missing, says which package to install and finishes (a
// build from source would need libmnl's headers too, and the prebuild works as soon as
// libmnl0 is installed). Otherwise builds from source, as node-gyp-build does; so does
// `npm rebuild conntrack --build-from-source`.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.join(__dirname, '..');
const fromSource = /^(true|1|conntrack)$/.test(process.env.npm_config_build_from_source || '');

if (!fromSource) {
  let binary;
  try {
    binary = require('node-gyp-build').path(root);
  } catch {
    // no binary for this platform: build from source below
  }
  if (binary) {
    const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(binary)})`], { encoding: 'utf8' });
    if (load.status === 0) process.exit(0);
    if (/libmnl\.so/.test(load.stderr)) {
      console.warn(
        'conntrack: the prebuilt binary needs libmnl, which is not installed. Install the libmnl0 package ' +
          '(Debian/Ubuntu: apt-get install libmnl0; RHEL, Fedora, Amazon Linux: dnf install libmnl; Alpine: apk add libmnl).',
      );
      process.exit(0);
    }
  }
}
const build = spawnSync(process.execPath, [require.resolve('node-gyp-build/bin.js')], { stdio: 'inherit', cwd: root });
process.exit(build.status === null ? 1 : build.status);
