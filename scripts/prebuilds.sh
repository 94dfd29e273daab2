#!/usr/bin/env bash
# Builds the N-API prebuilds shipped in the npm tarball: prebuilds/linux-x64 and
# prebuilds/linux-arm64, each tagged glibc. One binary per platform serves every Node.js
# version with N-API 8 (Node >= 18). libstdc++ is linked statically (see binding.gyp), so
# the binaries need only glibc >= 2.34, libgcc_s and libmnl.so.0 on the target machine.
#
# Needs (Debian 12): g++, libmnl-dev, and for arm64 g++-aarch64-linux-gnu and
# libmnl-dev:arm64 (dpkg --add-architecture arm64). `--x64-only` skips the cross build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONNTRACK_STATIC_RUNTIME=1

prebuildify() {
  npx --no-install prebuildify --napi --strip --tag-libc "$@"
}

rm -rf prebuilds
if [ "${1:-}" != "--x64-only" ]; then
  # Cross build first: prebuildify works in build/, and the native x64 build below
  # leaves build/Release loadable on this machine afterwards.
  CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar \
    prebuildify --arch arm64 --strip-bin aarch64-linux-gnu-strip
fi
prebuildify --arch x64
find prebuilds -name '*.node' -exec ls -l {} +
