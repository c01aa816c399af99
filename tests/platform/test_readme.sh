#!/usr/bin/env bash
# platform_readme: the README's workflow block, extracted from README.md and
# run line by line as a user pastes it, with the installed kusari (a temp
# `cmake --install`, found on PATH and by pkg-config, no LD_LIBRARY_PATH) in
# a fresh directory holding a copy of examples/. KUSARI_WORKSPACE is unset:
# `workspace create ./ws` must select ./ws for the commands after it.
# Documented substitutions, in this test only: `--epochs 10` becomes
# `--epochs 1`, and the copy's examples/mnist/sweep.json samples 1 epoch for
# 2 runs (the README's sweep trains 8 runs of 5 to 40 epochs). Skipped (77) in
# sanitizer builds (an uninstrumented example cannot link the instrumented
# library) and without the example, the data set or curl.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && { echo "skip: sanitizer build"; exit 77; }
[ -f "$REPO/examples/mnist/train_mnist.c" ] || { echo "skip: examples/mnist not there"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null || die "cmake --install failed"
unset KUSARI_WORKSPACE
export PATH="$T/prefix/bin:$PATH" PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig"
D="$T/user"                  # the user's checkout: examples/ and nothing else
mkdir -p "$D" && cp -r "$REPO/examples" "$D/examples"

# the block under "## The workflow": its indented lines, up to the next paragraph
python3 - "$REPO/README.md" > "$T/workflow.sh" <<'PY' || die "no workflow block in README.md"
import sys
lines = open(sys.argv[1]).read().split("\n")
i = lines.index("## The workflow") + 1
while not lines[i].strip(): i += 1
block = []
while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
    block.append(lines[i][4:]); i += 1
assert block, "empty block"
print("\n".join(block).strip())
PY
grep -q '^kusari workspace create ./ws' "$T/workflow.sh" || die "the block does not start with 'kusari workspace create ./ws': $(head -3 "$T/workflow.sh")"
n="$(grep -c -- '--epochs 10' "$T/workflow.sh")"
assert_eq 1 "$n" "the README trains with --epochs 10 once (substituted by --epochs 1)"
sed -i 's/--epochs 10 /--epochs 1 /' "$T/workflow.sh"
python3 - "$D/examples/mnist/sweep.json" <<'PY' || die "cannot shorten the sweep"
import json, sys
s = json.load(open(sys.argv[1]))
s["sampling"]["space"]["--epochs"] = {"choice": [1]}
s["max_total_runs"] = 2
json.dump(s, open(sys.argv[1], "w"))
PY
[ -f "$D/examples/mnist/score_request.py" ] || die "examples/mnist/score_request.py is missing (the README scores with it)"

echo "== the README's workflow (as run) =="
cat "$T/workflow.sh"
(cd "$D" && bash -e "$T/workflow.sh") > "$T/workflow.out" 2>&1; rc=$?
assert_eq 0 $rc "the README's workflow runs to the end"
[ $rc -eq 0 ] || tail -40 "$T/workflow.out"
out="$(cat "$T/workflow.out")"
"$K" --workspace "$D/ws" service delete mnist-svc >/dev/null 2>&1   # stop the scoring service

# everything happened in ./ws, nothing in the default workspace
test -f "$D/.kusari/config.json" && ok "workspace create wrote $D/.kusari/config.json" || fail "no pointer in $D"
test ! -e "$HOME/.local/share/kusari/workspace" && ok "the default workspace was never created" || fail "the default workspace was used"
assert_eq "cpu 2" "$(sqlite3 "$D/ws/kusari.db" 'SELECT name, max_nodes FROM computes' | tr '|' ' ')" "the compute target is in ./ws"
assert_eq "3" "$(sqlite3 "$D/ws/kusari.db" "SELECT count(*) FROM runs WHERE parent_id IS NOT NULL OR id NOT IN (SELECT run_id FROM sweeps)" )" "./ws holds the run and the sweep's 2 children"
assert_eq "chainer-dnn-mnist:1 chainer-dnn-mnist:2" "$(sqlite3 "$D/ws/kusari.db" "SELECT group_concat(name || ':' || version, ' ') FROM (SELECT name, version FROM models ORDER BY version)")" "two model versions registered in ./ws"
assert_contains "$out" "Run chainer-mnist_1: Completed" "the run completed"
assert_eq "PNG" "$(head -c 4 "$D/accuracy.png" 2>/dev/null | tail -c 3)" "run plot wrote accuracy.png"
assert_eq 2 "$(echo "$out" | sed -n '/^RUN .*DURATION *Accuracy$/,/^[^ ]*: /p' | grep -cE '_[0-9]+ .*Completed .* 0\.[0-9]+$')" \
  "run list --metrics lists the sweep's 2 children with their Accuracy"
# the last line of output is curl's answer: a prediction for the test image
resp="$(tail -1 "$T/workflow.out")"
pred="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); p=r["predictions"][0]; assert 0 <= p <= 9 and len(r["probabilities"][0]) == 10; print(p)' "$resp" 2>/dev/null)"
test -n "$pred" && ok "the scoring service answered with class $pred" || fail "no prediction in: $resp"
finish
