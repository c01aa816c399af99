#!/usr/bin/env bash
# Makes the Python that platform_python_frameworks runs its framework
# scripts with: a venv with numpy 1.26.4, Chainer 7.8.1 and (unless
# PEERS_TORCH=0) PyTorch, all from PyPI. Prints the venv's python as its last
# line. Idempotent and cached: a second run finds what is installed and
# downloads nothing (the wheels stay in DIR/pip-cache too, so a venv that was
# removed is rebuilt from the cache).
#
#   scripts/python-peers.sh                    # into ~/.cache/kusari/python-peers
#   KUSARI_PEERS_DIR=/ci/cache scripts/python-peers.sh
#   PEERS_TORCH=0 scripts/python-peers.sh      # Chainer only (a few MB, seconds)
#   KUSARI_TEST_PEERS_PYTHON=$(scripts/python-peers.sh | tail -1) ctest -R frameworks
#
# The test finds the venv by itself at the default place, or through
# $KUSARI_TEST_PEERS_PYTHON. .ci/run runs this before the tests.
#
# Why these versions (only PyPI is reachable: download.pytorch.org's CPU-only
# index is not, so torch is PyPI's default Linux wheel, which pulls the CUDA
# libraries as nvidia-* packages; they are never loaded on CPU, but they are
# most of the download and of the venv's size):
#   - numpy 1.26.4: Chainer 7.8.1 imports numpy.distutils, gone in numpy 2.
#   - chainer 7.8.1: an sdist whose setup.py imports pkg_resources, so it is
#     built without build isolation against setuptools < 81. At import it
#     needs SETUPTOOLS_USE_DISTUTILS=stdlib (Python 3.11's distutils); the
#     test sets it in the run's environment file.
#   - Python 3.11 (Debian 12's python3): 3.12 has no stdlib distutils.
# PYTHON picks the interpreter (default python3).
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "python-peers: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
DIR=${KUSARI_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kusari/python-peers}
VENV="$DIR/venv"
mkdir -p "$DIR"
start=$(date +%s)

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || {
    echo "python-peers: error: '$PYTHON -m venv' failed" >&2
    echo "  hint: install python3-venv (scripts/install-deps.sh does), or set PYTHON" >&2
    exit 1
  }
fi
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q --cache-dir "$DIR/pip-cache")
py() { SETUPTOOLS_USE_DISTUTILS=stdlib "$VENV/bin/python" -W ignore "$@"; }

py -c "import numpy, setuptools, wheel; assert numpy.__version__ == '1.26.4'" 2>/dev/null ||
  "${PIP[@]}" "numpy==1.26.4" "setuptools>=77.0.3,<81" wheel
py -c "import chainer" 2>/dev/null ||
  "${PIP[@]}" --no-build-isolation "chainer==7.8.1"
if [ "${PEERS_TORCH:-1}" != 0 ]; then
  py -c "import torch" 2>/dev/null || "${PIP[@]}" torch
fi

py - <<'EOF' >&2
import numpy, chainer
print("python-peers: numpy", numpy.__version__, "| chainer", chainer.__version__, end="")
try:
    import torch
    print(" | torch", torch.__version__)
except ImportError:
    print(" | no torch")
EOF
echo "python-peers: ready in $(( $(date +%s) - start )) s; $(du -sh "$VENV" | cut -f1) in $VENV" >&2
echo "$VENV/bin/python"
