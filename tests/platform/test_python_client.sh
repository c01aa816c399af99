#!/usr/bin/env bash
# The Python run client (python/kusari, docs/PYTHON.md): .py entries import
# it without installing anything (the platform puts it on PYTHONPATH) and log
# through libkusari's run client into the run's metrics channel. Checks:
# values, steps, lists, rows, tags and an uploaded file as `run metrics/show/
# files --json` see them; kill -9 of the script after N logs keeps all N;
# Python and `kusari log metric` logging one metric at once; offline mode and
# bad input; a missing libkusari; `pip install ./python`.
source "$(dirname "$0")/lib.sh"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
"$K" compute create cpu --type local --max-nodes 2 >/dev/null || die "compute create"
# jfile FILE EXPR: like jget, on JSON in a file (too long for an argument)
jfile() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# In a sanitizer build libkusari is instrumented: Python can load it only
# with the sanitizer runtimes preloaded, and the interpreter's own
# allocations at exit are not kusari's leaks.
ENVF=()
if [ -n "${KUSARI_TEST_CFLAGS:-}" ]; then
  echo "leak:python3" > "$T/lsan.supp"
  cat > "$T/asan-env.json" <<JSON
{"variables": {"LD_PRELOAD": "$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)",
               "LSAN_OPTIONS": "suppressions=$T/lsan.supp"}}
JSON
  ENVF=(--env "$T/asan-env.json")
fi

# --- everything a script logs lands in the run ----------------------------------
mkdir -p "$T/py"
cat > "$T/py/train.py" <<'PY'
import sys
from kusari import Run
run = Run.get_context()
print("run", run.id, "experiment", run.experiment.name)
for i in range(5):
    run.log("Accuracy", 0.5 + i / 10)
run.log("loss", 2.5, step=7)
run.log("loss", 1.25, step=9)
run.log_list("lr", [0.1, 0.01, 0.001])
run.log_row("curve", epoch=1, acc=0.25)
run.log_row("curve", epoch=2, acc=0.75)
run.log("ints", 3)
run.tag("framework", "numpy")
run.tag("epochs", 40)
with open("plot.txt", "w") as f:
    f.write("a plot\n")
run.upload_file("outputs/plots/plot.txt", "plot.txt")
for bad in [lambda: run.log("Accuracy", "high"), lambda: run.log("", 1.0),
            lambda: run.log("x", 1.0, step=-2), lambda: run.upload_file("../escape", "plot.txt"),
            lambda: run.upload_file("outputs/x", "no-such-file")]:
    try:
        bad()
        print("accepted bad input")
    except Exception as e:
        print("refused:", type(e).__name__, e)
print("done", sys.argv[1:])
PY
id="$(submit --experiment pyclient --source "$T/py" --entry train.py --compute cpu "${ENVF[@]}" -- --epochs 2)"
out="$($K run wait "$id" --show-output 2>&1)"
assert_contains "$out" "run $id experiment pyclient" "run.id and run.experiment inside the run"
assert_contains "$out" "done ['--epochs', '2']" "the script ran to its end"
assert_contains "$out" "Completed" "the run completed"
assert_not_contains "$out" "accepted bad input" "bad arguments raise"
assert_contains "$out" "refused: TypeError log: value of 'Accuracy' must be a number, got str" "a str value is a TypeError"
assert_contains "$out" "refused: ValueError log: name must be 1..255 bytes" "an empty name is a ValueError"
assert_contains "$out" "refused: ValueError log: step must be a non-negative integer" "a negative step is a ValueError"
assert_contains "$out" "may not contain empty, '.' or '..' parts" "an upload name with .. is refused (libkusari's message)"
assert_contains "$out" "cannot open no-such-file" "a missing upload file is refused (libkusari's message)"
metrics="$($K run metrics "$id" --json)"
got="$(jget "$metrics" '"; ".join("%s=%s" % (n, ",".join("%d:%g" % (r["step"], r["value"]) for r in j[n])) for n in sorted(j))')"
assert_eq "Accuracy=0:0.5,1:0.6,2:0.7,3:0.8,4:0.9; curve/acc=0:0.25,1:0.75; curve/epoch=0:1,1:2; ints=0:3; loss=7:2.5,9:1.25; lr=0:0.1,1:0.01,2:0.001" \
  "$got" "values, explicit steps, lists and rows in 'run metrics --json'"
show="$($K run show "$id" --json)"
assert_eq "{'epochs': '40', 'framework': 'numpy'}" "$(jget "$show" 'dict(sorted(j["tags"].items()))')" "tags in 'run show --json'"
files="$($K run files "$id" --json)"
assert_contains "$(jget "$files" '[f["path"] for f in j]')" "'outputs/plots/plot.txt'" "the uploaded file in 'run files --json'"
mkdir -p "$T/dl" && $K run download "$id" outputs/plots/plot.txt --to "$T/dl" >/dev/null
assert_eq "a plot" "$(cat "$T/dl/outputs/plots/plot.txt")" "the uploaded file's content"

# --- kill -9 of the script after N logs keeps all N --------------------------------
N=5000
mkdir -p "$T/kill"
cat > "$T/kill/train.py" <<'PY'
import os, sys, time
from kusari import Run
run = Run.get_context()
n, flag = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    run.log("k", i)
with open(flag + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(flag + ".tmp", flag)
time.sleep(3600)
PY
id="$(submit --experiment pykill --source "$T/kill" --entry train.py --compute cpu "${ENVF[@]}" -- $N "$T/kill.flag")"
for _ in $(seq 1 600); do [ -f "$T/kill.flag" ] && break; sleep 0.2; done
[ -f "$T/kill.flag" ] || die "the kill -9 script never reported its $N logs: $($K run logs "$id" 2>&1 | tail -5)"
kill -9 "$(cat "$T/kill.flag")"
$K run wait "$id" >/dev/null 2>&1
assert_eq "Failed" "$(jget "$($K run show "$id" --json)" 'j["status"]')" "the killed run ended Failed"
$K run metrics "$id" --name k --json > "$T/m.json"
assert_eq "$N" "$(jfile "$T/m.json" 'len(j["k"])')" "all $N values logged before kill -9 are kept"
assert_eq "True" "$(jfile "$T/m.json" '[(r["step"], r["value"]) for r in j["k"]] == [(i, i) for i in range('$N')]')" "with their values and steps 0..$((N - 1))"

# --- Python and `kusari log metric` on one metric at once --------------------------
mkdir -p "$T/mix"
cat > "$T/mix/train.py" <<'PY'
import subprocess, time
from kusari import Run
run = Run.get_context()
shell = subprocess.Popen(["bash", "-c", "for i in $(seq 1 100); do kusari log metric mix -$i || exit 1; done"])
i = 0
while shell.poll() is None or i < 2000:
    if i < 2000:
        run.log("mix", i)
        i += 1
    else:
        time.sleep(0.01)
print("shell exit", shell.returncode)
PY
id="$(submit --experiment pymix --source "$T/mix" --entry train.py --compute cpu "${ENVF[@]}")"
out="$($K run wait "$id" --show-output 2>&1)"
assert_contains "$out" "shell exit 0" "the shell logger succeeded"
$K run metrics "$id" --name mix --json > "$T/mix.json"
assert_eq "2100" "$(jfile "$T/mix.json" 'len(j["mix"])')" "2000 Python + 100 CLI values in one metric"
assert_eq "True" "$(jfile "$T/mix.json" 'sorted(r["step"] for r in j["mix"]) == list(range(2100))')" "one step sequence 0..2099 shared by both writers"
assert_eq "True" "$(jfile "$T/mix.json" 'sorted(r["value"] for r in j["mix"]) == sorted(list(range(2000)) + [-i for i in range(1, 101)])')" "every value of both writers, once"
assert_eq "True" "$(jfile "$T/mix.json" '[r["value"] for r in j["mix"] if r["value"] >= 0] == list(range(2000))')" "Python's values in the order it logged them"

# --- a missing libkusari is a clear error ------------------------------------------
echo '{"variables": {"KUSARI_LIBRARY": "/nonexistent/libkusari.so"}}' > "$T/nolib.json"
id="$(submit --experiment pynolib --source "$T/py" --entry train.py --compute cpu --env "$T/nolib.json")"
$K run wait "$id" >/dev/null 2>&1
log="$($K run logs "$id" 2>&1)"
assert_contains "$log" "kusari.errors.KusariError: cannot load libkusari, which the run client needs to log to this run" "missing libkusari: what was wrong"
assert_contains "$log" "hint: install kusari (scripts/setup.sh), or set KUSARI_LIBRARY" "missing libkusari: what to do"

# --- offline: outside a run every call succeeds and records nothing ----------------
cat > "$T/offline.py" <<'PY'
from kusari import Run, KusariError
run = Run.get_context()
print("offline", run.offline, repr(run.id), run.experiment)
run.log("a", 1.0); run.log("a", 2, step=3); run.log_list("l", [1, 2]); run.log_row("t", x=1)
run.tag("k", "v"); run.upload_file("outputs/f.py", __file__); run.flush(); run.complete()
try:
    run.log("a", None)
except TypeError as e:
    print("offline checks too:", e)
try:
    Run.get_context(allow_offline=False)
except KusariError as e:
    print("strict:", e)
PY
runs_before="$(sql 'SELECT count(*) FROM runs; SELECT count(*) FROM metrics')"
out="$(cd "$T" && PYTHONPATH="$SRC/python" KUSARI_LIBRARY=/nonexistent python3 "$T/offline.py" 2>&1)"
assert_contains "$out" "offline True '' None" "offline run: no id, no experiment, no library needed"
assert_contains "$out" "offline checks too: log: value of 'a' must be a number, got NoneType" "offline calls still check their arguments"
assert_contains "$out" "strict: not inside a kusari run (KUSARI_RUN_ID is not set)" "allow_offline=False refuses"
assert_not_contains "$out" "Traceback" "no traceback offline"
assert_eq "$runs_before" "$(sql 'SELECT count(*) FROM runs; SELECT count(*) FROM metrics')" "offline logging recorded nothing"

# --- an installed kusari: the package from PREFIX/share/kusari/python, the library from PREFIX/lib
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
P="$T/opt/kusari"
if cmake --install "$BUILD" --prefix "$P" >/dev/null; then
  test -f "$P/share/kusari/python/kusari/run.py" && ok "the package is installed under PREFIX/share/kusari/python" || fail "no $P/share/kusari/python/kusari"
  mkdir -p "$T/inst"
  printf 'import kusari\nfrom kusari import Run\nRun.get_context().log("inst", 42)\nprint("package from", kusari.__file__)\n' > "$T/inst/train.py"
  id="$(PATH="$P/bin:$PATH" "$P/bin/kusari" run submit --experiment pyinst --source "$T/inst" --entry train.py --compute cpu "${ENVF[@]}" | tail -1)"
  out="$("$P/bin/kusari" run wait "$id" --show-output 2>&1)"
  assert_contains "$out" "package from $P/share/kusari/python/kusari/__init__.py" "an installed kusari's entries import the installed package"
  assert_eq "42" "$(jget "$($K run metrics "$id" --json)" 'j["inst"][0]["value"]')" "and log through the installed libkusari"
else
  fail "cmake --install failed"
fi

# --- pip install ./python ------------------------------------------------------------
# Debian's python3 has setuptools and wheel, so the install needs no network
PY3=/usr/bin/python3; [ -x "$PY3" ] || PY3="$(command -v python3)"
# (the venv without its own pip: Debian's python3-pip serves it, and making
# a venv with ensurepip takes a minute on a busy machine)
if "$PY3" -m venv --system-site-packages --without-pip "$T/venv" >/dev/null 2>&1 && "$T/venv/bin/python" -m pip --version >/dev/null 2>&1; then
  cp -r "$SRC/python" "$T/pysrc"     # pip builds in place: keep the sources clean
  if "$T/venv/bin/python" -m pip install -q --no-index --no-build-isolation "$T/pysrc" >"$T/pip.log" 2>&1; then
    out="$(cd / && "$T/venv/bin/python" -c 'import kusari, sys; print(kusari.__version__, kusari.Run.get_context().offline, kusari.__file__.startswith(sys.argv[1]))' "$T/venv" 2>&1)"
    assert_eq "0.1.0 True True" "$out" "pip install ./python: importable from the venv's site-packages"
  else
    fail "pip install ./python failed: $(tail -5 "$T/pip.log")"
  fi
else
  fail "$PY3 -m venv or its pip does not work here (install python3-venv python3-pip)"
fi

finish
