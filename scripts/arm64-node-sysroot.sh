#!/usr/bin/env bash
# Makes a sysroot with Debian's arm64 Node.js (and libmnl0) in .cache/arm64-node/root, so
# the install test can load the arm64 prebuild under qemu-user:
#   qemu-aarch64-static -L .cache/arm64-node/root .cache/arm64-node/root/usr/bin/node ...
# Needs `dpkg --add-architecture arm64` and `apt-get update` first. The packages are only
# downloaded and unpacked (dpkg -x), never installed on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/arm64-node
rm -rf "$dest"
mkdir -p "$dest/debs" "$dest/root"
# nodejs:arm64 and libmnl0:arm64 with their arm64 library dependencies, plus the
# architecture-independent packages Debian's libnode loads its bundled JS from.
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances --no-pre-depends nodejs:arm64 libmnl0:arm64 |
  grep -E '^[a-z0-9][a-z0-9.+-]*:arm64$' | grep -vE '^(dpkg|tar|install-info):' | sort -u)
(cd "$dest/debs" && apt-get download $pkgs node-acorn node-cjs-module-lexer node-undici 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest/root"; done
rm -rf "$dest/debs"
qemu-aarch64-static -L "$dest/root" "$dest/root/usr/bin/node" -p '`arm64 node ${process.version} (${process.arch})`'
