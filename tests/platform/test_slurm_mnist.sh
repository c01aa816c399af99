#!/usr/bin/env bash
# The reference story on a slurm compute target, on a real single-host Slurm
# cluster (tests/platform/slurm.sh): libkusari installed into a temp prefix,
# examples/mnist submitted with its environment (kusari-env.json: Debian
# packages checked and `make` run on the node, inside the job), train_mnist
# trained on Fashion-MNIST for 2 epochs as a Slurm job: Completed, Accuracy
# per epoch, Batch size and Epochs, the log streamed, model.npz kept,
# registered as a model and readable by numpy.
# Skipped (77) in sanitizer builds (an uninstrumented example cannot link
# the instrumented library) and when the data set is missing.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && { echo "skip: sanitizer build"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
slurm_require
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null || die "cmake --install failed"
# the job gets the submitter's environment: make finds the installed libkusari
export PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig" LD_LIBRARY_PATH="$T/prefix/lib"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
slurm_start

run_ok "$K" compute create gpu --type slurm --max-nodes 2 >/dev/null
id="$(submit --experiment chainer-mnist --source "$REPO/examples/mnist" --entry train_mnist --compute gpu \
  --env "$REPO/examples/mnist/kusari-env.json" -- --epochs 2 --batchsize 128 --output_dir ./outputs)"
out="$("$K" run wait "$id" --show-output --timeout 120 2>&1)"; rc=$?
assert_eq 0 $rc "run wait: the MNIST run on the Slurm target completed"
[ $rc -eq 0 ] || { echo "$out" | tail -30; cat "$WS/runs/$id/supervisor.log"; }
assert_contains "$out" "epoch:02" "the training output streamed"
j="$("$K" run show "$id" --json)"
job="$(jget "$j" "j['tags'].get('kusari.slurm_job', '')")"
case "$job" in [0-9]*) ok "it ran as Slurm job $job";; *) fail "no Slurm job: $j";; esac
assert_eq miss "$(jget "$j" 'j["build_cache"]')" "make built the example on the node (build cache miss)"
run_ok "$K" run download "$id" logs/build.log --to "$T/dl" >/dev/null
assert_contains "$(cat "$T/dl/logs/build.log")" "-o train_mnist train_mnist.c" "the build's log (a run file) has make's compile line"
assert_eq "128 2" "$(jget "$j" '"%g %g" % (j["metrics"]["Batch size"], j["metrics"]["Epochs"])')" "Batch size and Epochs logged"
acc="$("$K" run metrics "$id" --name Accuracy --json)"
assert_eq 2 "$(jget "$acc" 'len(j["Accuracy"])')" "Accuracy once per epoch"
python3 -c "import json,sys; v=json.loads(sys.argv[1])['Accuracy'][-1]['value']; sys.exit(0 if v > 0.7 else 1)" "$acc" \
  && ok "Accuracy > 0.7 after 2 epochs" || fail "Accuracy: $acc"
assert_contains "$("$K" run files "$id")" "outputs/model.npz" "model.npz is among the run's files"
run_ok "$K" model register --run "$id" --name chainer-dnn-mnist --path outputs/model.npz >/dev/null
assert_contains "$("$K" model list)" "chainer-dnn-mnist" "registered"
run_ok "$K" model download chainer-dnn-mnist --to "$T/m" >/dev/null
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  keys="$(/usr/bin/python3 -c "import numpy as np; print(' '.join(sorted(np.load('$T/m/model.npz').keys())))")"
  assert_contains "$keys" "l1/W" "the registered model.npz loads in numpy"
fi

finish
