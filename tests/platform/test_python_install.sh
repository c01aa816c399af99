#!/usr/bin/env bash
# platform_python_install: the README's set-up installs the kusari Python
# package where a user's Python finds it (scripts/python-install.sh, run by
# scripts/setup.sh): a venv made with --system-site-packages, since Debian
# 12's python3 refuses pip installs (PEP 668). Into a venv given with --venv
# and into PREFIX/share/kusari/venv, both without network; `import kusari`
# then works from anywhere with the venv's python, Debian's numpy stays
# importable, and a bad argument gets a
# clear error.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"

py="$(bash "$REPO/scripts/python-install.sh" --venv "$T/venv" 2>"$T/err" | tail -1)"
assert_eq "$T/venv/bin/python" "$py" "--venv DIR: it names the venv's python"
assert_contains "$(cat "$T/err")" "the kusari package is in $T/venv" "it says where"
out="$(cd / && "$T/venv/bin/python" -c 'import kusari, sys; print(kusari.__version__, kusari.__file__.startswith(sys.argv[1] + "/lib/"), kusari.Run.get_context().offline)' "$T/venv" 2>&1)"
assert_eq "0.1.0 True True" "$out" "python -c 'import kusari' works from / (installed in the venv's site-packages, not found through the source tree)"
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  assert_eq "ok" "$(cd / && "$T/venv/bin/python" -c 'import numpy; print("ok")' 2>&1)" "the system's numpy is importable in the venv"
fi
left="$(cd "$REPO/python" && ls -d build dist *.egg-info 2>/dev/null)"
assert_eq "" "$left" "python/ left clean (no build/, dist/ or egg-info)"

# the default place, as scripts/setup.sh calls it
py="$(PREFIX="$T/prefix" bash "$REPO/scripts/python-install.sh" 2>/dev/null | tail -1)"
assert_eq "$T/prefix/share/kusari/venv/bin/python" "$py" "the default venv is PREFIX/share/kusari/venv"
assert_eq "0.1.0" "$(cd / && "$py" -c 'import kusari; print(kusari.__version__)' 2>&1)" "import kusari from PREFIX's venv"
assert_contains "$(grep -n python-install.sh "$REPO/scripts/setup.sh")" 'PREFIX="$PREFIX" bash scripts/python-install.sh' "scripts/setup.sh runs it with its PREFIX"

# --help, as the other scripts (platform_scripts)
for sc in python-install python-peers; do
  out="$(bash "$REPO/scripts/$sc.sh" --help 2>&1)"; rc=$?
  assert_eq 0 $rc "$sc.sh --help exits 0"
  assert_eq 0 "$(printf '%s\n' "$out" | grep -c '^#\|set -euo')" "$sc.sh --help prints its comment block only"
  assert_contains "$out" "scripts/$sc.sh" "$sc.sh --help shows how to call it"
done

# bad input
out="$(bash "$REPO/scripts/python-install.sh" --venv 2>&1)"; rc=$?
assert_eq 2 $rc "--venv without a directory: exit 2"
assert_contains "$out" "python-install: error: --venv needs a directory" "its message"
out="$(bash "$REPO/scripts/python-install.sh" --user 2>&1)"; rc=$?
assert_eq 2 $rc "an unknown argument: exit 2"
assert_contains "$out" "hint: see scripts/python-install.sh --help" "with a hint"
out="$(PYTHON=/nonexistent/python3 bash "$REPO/scripts/python-install.sh" --venv "$T/v2" 2>&1)"; rc=$?
assert_eq 1 $rc "an interpreter that cannot make a venv: exit 1"
assert_contains "$out" "hint: on Debian install python3-venv" "with a hint"
finish
