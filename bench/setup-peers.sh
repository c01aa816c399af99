#!/usr/bin/env bash
# bench/setup-peers.sh — the Python peers of the benchmark in bench/.venv
# (gitignored): numpy, PyTorch (CPU use), Chainer 7.8.1, threadpoolctl.
# Idempotent: re-running only installs what is missing.
#
# What works here (PyPI only; download.pytorch.org is not reachable, so the
# CPU-only torch index cannot be used):
#   - torch from PyPI's default wheel (pulls the CUDA libraries, ~5 GB in the
#     venv; they are not loaded on CPU). torch 2.15.0 installed in ~2 min.
#   - numpy 1.26.4: Chainer 7.8.1 imports numpy.distutils, gone in numpy 2.
#   - chainer 7.8.1: its setup.py imports pkg_resources, so it is built
#     without build isolation against setuptools < 81 (81 dropped
#     pkg_resources; torch wants >= 77.0.3). At import it needs
#     SETUPTOOLS_USE_DISTUTILS=stdlib (Python 3.11's distutils;
#     mlp_chainer.py sets it), else numpy.distutils fails on setuptools'
#     distutils (no msvccompiler).
# PYTHON picks the interpreter (default python3: pyenv 3.11.7 here; Python
# 3.12+ has no stdlib distutils, so Chainer would not import there).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" install --disable-pip-version-check -q)

"${PIP[@]}" "numpy==1.26.4" "setuptools>=77.0.3,<81" wheel threadpoolctl gunicorn  # gunicorn: the serving peer
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu gives the small
  # CPU-only wheel where that host is reachable (not here: it would only
  # time out), else PyPI's default wheel.
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" torch --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" torch
  fi
fi
if ! SETUPTOOLS_USE_DISTUTILS=stdlib "$VENV/bin/python" -W ignore -c "import chainer" 2>/dev/null; then
  "${PIP[@]}" --no-build-isolation "chainer==7.8.1" ||
    echo "setup-peers: chainer 7.8.1 could not be installed; mlp_chainer.py will be skipped" >&2
fi

SETUPTOOLS_USE_DISTUTILS=stdlib "$VENV/bin/python" -W ignore - <<'EOF'
import numpy, torch
print("numpy", numpy.__version__, "| torch", torch.__version__, end="")
try:
    import chainer
    print(" | chainer", chainer.__version__)
except Exception as e:  # noqa: BLE001
    print(" | chainer unavailable:", e)
EOF
