#!/usr/bin/env bash
# Builds the addon with clang AddressSanitizer + UndefinedBehaviorSanitizer into
# build-asan/ (the normal build/ is left alone) and runs the jest suite on it: node is
# not instrumented, so the clang ASan runtime is preloaded into it, and node-gyp-build is
# pointed at the sanitizer build through CONNTRACK_PREBUILD (it then loads
# build-asan/build/Release/conntrack.node for lib/ and for the native tests alike).
# Any ASan report or undefined behaviour aborts the process, which fails the run.
# Needs clang and its runtime (Debian: apt-get install clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNTIME=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
if [ ! -f "$RUNTIME" ]; then
  echo "test:native-asan: the clang ASan runtime (libclang_rt.asan-x86_64.so) is missing: apt-get install libclang-rt-14-dev" >&2
  exit 1
fi

# A separate gyp project whose sources are this package's.
OUT=$ROOT/build-asan
mkdir -p "$OUT"
ln -sfn ../native "$OUT/native"
cp binding.gyp "$OUT/binding.gyp"
# node-gyp-build reads the package name from package.json in the directory it is given.
printf '{ "name": "conntrack", "private": true }\n' > "$OUT/package.json"
# Node's headers: where npm's nodedir says (as `npm run build:native` uses), else node-gyp's default.
NODEDIR=${npm_config_nodedir:-$(npm config get nodedir 2>/dev/null || true)}
GYP_ARGS=()
if [ -n "$NODEDIR" ] && [ "$NODEDIR" != undefined ] && [ "$NODEDIR" != null ]; then GYP_ARGS+=(--nodedir="$NODEDIR"); fi
(
  cd "$OUT"
  CC=clang CXX=clang++ LINK=clang++ "$ROOT/node_modules/.bin/node-gyp" rebuild --loglevel=warn "${GYP_ARGS[@]}" -- -Dsanitize=1
)
test -f "$OUT/build/Release/conntrack.node"

npm run --silent build:ts

export CONNTRACK_PREBUILD=$OUT
export LD_PRELOAD=$RUNTIME
# Leak checking is off: node itself (not instrumented) keeps allocations until exit that
# LeakSanitizer would report. Everything else aborts on the first report.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Make sure the sanitizer build is the one loaded (the runtime is in the process and the
# addon carries ASan's instrumentation symbols).
node -e "
  require('node-gyp-build')('$ROOT');
  const maps = require('fs').readFileSync('/proc/self/maps', 'utf8');
  if (!maps.includes('$OUT/build/Release/conntrack.node')) { console.error('the sanitizer build was not loaded'); process.exit(1); }
  if (!maps.includes('libclang_rt.asan')) { console.error('the ASan runtime is not in the process'); process.exit(1); }
"
exec "$ROOT/node_modules/.bin/jest" --runInBand "$@"
