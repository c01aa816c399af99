#!/usr/bin/env bash
# Installs the kusari Python package (python/) where a user's Python finds
# it, without pip touching the system Python: Debian 12 marks its python3
# "externally managed" (PEP 668), so `sudo pip install` and
# `pip install --user` are refused there, and forcing them
# (--break-system-packages) can break Debian's own Python packages.
# scripts/setup.sh runs it; it works alone too.
#
#   scripts/python-install.sh                 # a venv in PREFIX/share/kusari/venv (PREFIX: /usr/local)
#   scripts/python-install.sh --venv DIR      # into the venv DIR (made if missing)
#
# The venv is made with --system-site-packages, so Debian's python3-numpy
# and the like stay importable in it (and Debian's pip serves it: in a venv
# pip installs into the venv, PEP 668 does not apply), and the package is installed with
# `pip install --no-index --no-build-isolation ./python` (it is pure Python:
# no network needed). Then use DIR/bin/python, or `. DIR/bin/activate`.
# PYTHON picks the interpreter the venv is made from (default: /usr/bin/python3
# where it exists, else python3). Prints DIR/bin/python as its last line.
set -euo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
VENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --venv) [ $# -ge 2 ] || { echo "python-install: error: --venv needs a directory" >&2; exit 2; }; VENV="$2"; shift 2 ;;
    *) echo "python-install: error: unknown argument '$1'" >&2; echo "  hint: see scripts/python-install.sh --help" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
VENV=${VENV:-${PREFIX:-/usr/local}/share/kusari/venv}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3; [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi

if [ ! -x "$VENV/bin/python" ]; then
  # without its own pip when the system's (Debian's python3-pip) can serve:
  # making a venv with ensurepip takes a minute on a busy machine
  wp=--without-pip
  "$PYTHON" -m pip --version >/dev/null 2>&1 || wp=""
  "$PYTHON" -m venv --system-site-packages $wp "$VENV" >/dev/null || {
    echo "python-install: error: '$PYTHON -m venv' could not make $VENV" >&2
    echo "  hint: on Debian install python3-venv (scripts/install-deps.sh does), or set PYTHON" >&2
    exit 1
  }
fi
# pip builds in the source tree: build from a copy, to leave python/ clean
src="$(mktemp -d)"
trap 'rm -rf "$src"' EXIT
cp -r python "$src/python"
if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-index --no-build-isolation \
     --upgrade "$src/python" >"$src/pip.log" 2>&1; then
  echo "python-install: error: pip could not install python/ into $VENV:" >&2
  tail -5 "$src/pip.log" >&2
  echo "  hint: the venv needs setuptools (Debian: python3-setuptools); or use PYTHONPATH=PREFIX/share/kusari/python" >&2
  exit 1
fi
"$VENV/bin/python" -c "import kusari" || { echo "python-install: error: kusari does not import from $VENV" >&2; exit 1; }
echo "python-install: the kusari package is in $VENV (use $VENV/bin/python, or . $VENV/bin/activate)" >&2
echo "$VENV/bin/python"
