#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, in one command:
#   1. install the Debian packages kusari needs (scripts/install-deps.sh),
#   2. build libkusari and kusari and install them under PREFIX (/usr/local),
#   3. install the kusari Python package into a venv, PREFIX/share/kusari/venv
#      (scripts/python-install.sh: Debian 12's python3 refuses pip installs,
#      PEP 668; the venv sees Debian's numpy),
#   4. run the quickstart: train examples/mnist as a tracked run in the default
#      workspace, wait for it with its output, register its model.
#
#   sudo scripts/setup.sh                      # as a user with sudo
#   scripts/setup.sh                           # as root (containers, root shells)
#   PREFIX=/opt/kusari scripts/setup.sh        # install elsewhere: any prefix works
#   scripts/setup.sh --workspace DIR --epochs N   # options go to scripts/quickstart.sh
#
# It needs root to install packages and to write PREFIX. Where sudo is not
# installed, run it from a root shell (su -, or docker exec -u 0 ...).
# Installed programs find libkusari through their run path, and programs built
# with `pkg-config --libs kusari` get one too, so PREFIX needs no ldconfig or
# LD_LIBRARY_PATH. JOBS=N sets the build's parallelism (default: nproc).
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
cd "$(dirname "$0")/.."
GIVEN_PREFIX=${PREFIX:-}
PREFIX=${PREFIX:-/usr/local}
JOBS=${JOBS:-$(nproc)}

# Root is needed for missing packages and for a PREFIX this user cannot write.
need=""
bash scripts/install-deps.sh --check >/dev/null 2>&1 || need="to install Debian packages"
p="$PREFIX"; while [ ! -e "$p" ]; do p="$(dirname "$p")"; done   # the nearest existing part
[ -w "$p" ] || need="${need:+$need and }to write to $PREFIX"
if [ -n "$need" ] && [ "$(id -u)" -ne 0 ]; then
  echo "setup: this needs root $need." >&2
  if command -v sudo >/dev/null 2>&1; then
    echo "  hint: run it as: sudo ${GIVEN_PREFIX:+PREFIX=$GIVEN_PREFIX }scripts/setup.sh $*" >&2
  else
    echo "  hint: sudo is not installed: run it from a root shell (su -, then cd $PWD and" >&2
    echo "        run scripts/setup.sh), or choose a PREFIX you can write, e.g. PREFIX=\$HOME/.local" >&2
  fi
  exit 1
fi

bash scripts/install-deps.sh

echo "== build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" >/dev/null
cmake --build build -j"$JOBS"
echo "== install into $PREFIX =="
cmake --install build >/dev/null
command -v ldconfig >/dev/null && ldconfig || true
echo "== Python package =="
PREFIX="$PREFIX" bash scripts/python-install.sh >/dev/null
export PATH="$PREFIX/bin:$PATH"
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

echo "== quickstart =="
bash scripts/quickstart.sh "$@"
