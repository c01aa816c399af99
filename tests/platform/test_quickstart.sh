#!/usr/bin/env bash
# platform_quickstart: scripts/quickstart.sh end to end on a stand-in of
# examples/mnist (same entry name, flags, env file with a `make` build,
# metrics and outputs/model.npz), in a temp workspace; then a second time to
# show the cached build and the model's version 2.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$T/bin" && ln -s "$K" "$T/bin/kusari"
export PATH="$T/bin:$PATH"
S="$T/mnist"
mkdir -p "$S"
cat > "$S/train_mnist.sh" <<'SH'
#!/bin/sh
epochs=1; batch=100; out=result
while [ $# -gt 0 ]; do
  case "$1" in --epochs|-e) epochs=$2; shift 2;; --batchsize|-b) batch=$2; shift 2;;
    --output_dir|-o) out=$2; shift 2;; *) shift;; esac
done
kusari log metric "Batch size" "$batch"
kusari log metric Epochs "$epochs"
i=1
while [ $i -le "$epochs" ]; do echo "epoch $i"; kusari log metric Accuracy "0.$((80 + i))"; i=$((i + 1)); done
mkdir -p "$out" && echo weights > "$out/model.npz"
SH
printf 'train_mnist: train_mnist.sh\n\tcp train_mnist.sh train_mnist && chmod +x train_mnist && echo COMPILED\n' > "$S/Makefile"
cp "$REPO/examples/mnist/kusari-env.json" "$S/kusari-env.json"
before="$(cat "$REPO/.kusari/config.json" 2>/dev/null)"
out="$(bash "$REPO/scripts/quickstart.sh" --workspace "$WS" --source "$S" --epochs 3 2>&1)"; rc=$?
assert_eq 0 $rc "quickstart exits 0"
assert_eq "$before" "$(cat "$REPO/.kusari/config.json" 2>/dev/null)" "quickstart --workspace selects nothing in the directory it runs in"
assert_contains "$out" "COMPILED" "the environment's make ran"
assert_contains "$out" "epoch 3" "the run's output was shown"
assert_contains "$out" "model: chainer-dnn-mnist:1" "model registered as chainer-dnn-mnist:1"
assert_contains "$out" "Accuracy:" "summary shows metrics"
run="$(sql "SELECT id FROM runs ORDER BY seq DESC LIMIT 1")"
j="$($K run show "$run" --json)"
assert_eq "['--epochs', '3', '--batchsize', '128', '--output_dir', './outputs']" "$(jget "$j" 'j["arguments"]')" "quickstart's arguments"
assert_eq "128 3 0.83" "$(jget "$j" '"%g %g %g" % (j["metrics"]["Batch size"], j["metrics"]["Epochs"], j["metrics"]["Accuracy"])')" "Batch size, Epochs, Accuracy logged"
out="$(bash "$REPO/scripts/quickstart.sh" --workspace "$WS" --source "$S" --epochs 3 2>&1)"; rc=$?
assert_eq 0 $rc "second quickstart exits 0"
assert_contains "$out" "build cache:  hit" "second run reuses the build"
assert_contains "$out" "model: chainer-dnn-mnist:2" "second registration is version 2"
# a run that fails: the script shows the end of the run's log; when the
# entry cannot load libkusari (a prefix without a run path), it says so
S2="$T/broken"; mkdir -p "$S2"
printf '#!/bin/sh\necho "./train_mnist: error while loading shared libraries: libkusari.so.0: cannot open shared object file: No such file or directory" >&2\nexit 127\n' > "$S2/train_mnist"
chmod +x "$S2/train_mnist"
echo '{}' > "$S2/kusari-env.json"
out="$(bash "$REPO/scripts/quickstart.sh" --workspace "$WS" --source "$S2" --epochs 1 2>&1)"; rc=$?
assert_eq 1 $rc "quickstart exits 1 when the run fails"
assert_contains "$out" "the entry program cannot load libkusari.so" "it names the missing library as the cause"
assert_not_contains "$out" "run logs $(sql "SELECT id FROM runs ORDER BY seq DESC LIMIT 1") --build" "and does not send the user to the build log"
printf '#!/bin/sh\necho "Traceback: something else went wrong"\nexit 3\n' > "$S2/train_mnist"
out="$(bash "$REPO/scripts/quickstart.sh" --workspace "$WS" --source "$S2" --epochs 1 2>&1)"; rc=$?
assert_eq 1 $rc "quickstart exits 1 when the run fails otherwise"
assert_contains "$out" "Traceback: something else went wrong" "it shows the end of the run's log"
finish
