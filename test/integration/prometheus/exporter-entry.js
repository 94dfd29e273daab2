'use strict';
// Runs the built `nfct exporter` command module as a process (until the nfct CLI routes to it).
const { run } = require('../../../dist/apps/nfct/commands/exporter');

run(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(1);
});
