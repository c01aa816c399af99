#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, in one command:
#   1. install the Debian packages kusari needs (scripts/install-deps.sh),
#   2. build libkusari and kusari and install them under PREFIX (/usr/local),
#   3. run the quickstart: train examples/mnist as a tracked run in the default
#      workspace, wait for it with its output, register its model.
# Run as root (or with sudo). PREFIX=/opt/kusari scripts/setup.sh installs elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

echo "== build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" >/dev/null
cmake --build build -j"$JOBS"
echo "== install into $PREFIX =="
cmake --install build >/dev/null
command -v ldconfig >/dev/null && ldconfig || true
export PATH="$PREFIX/bin:$PATH"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

echo "== quickstart =="
bash scripts/quickstart.sh "$@"
