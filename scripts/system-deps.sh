#!/usr/bin/env bash
# Installs the Debian 12 packages this repository needs to build, test and benchmark:
# libmnl and a compiler for the addon; the arm64 cross toolchain, libmnl-dev:arm64 and
# qemu-user for the arm64 prebuild; clang's sanitizer runtime for `npm run test:native-asan`;
# conntrack, nftables, iproute2, ping, tmux, Prometheus and node_exporter, which the tests
# run beside the package. As root: `bash scripts/system-deps.sh` (used by .ci/run and the
# Dockerfile). A user of the npm package needs none of this, only libmnl0.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
dpkg --add-architecture arm64
apt-get update
apt-get install -y --no-install-recommends \
  libmnl-dev libmnl0 python3 make g++ gcc binutils \
  g++-aarch64-linux-gnu libmnl-dev:arm64 qemu-user-static clang libclang-rt-14-dev \
  conntrack nftables iproute2 iputils-ping util-linux procps tmux \
  prometheus prometheus-node-exporter
