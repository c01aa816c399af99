#!/usr/bin/env bash
# platform_mnist: the README's main job for real: libkusari and kusari
# installed into a temp prefix, scripts/quickstart.sh on examples/mnist (built
# by its environment's `make` through pkg-config, trained on Fashion-MNIST
# for 1 epoch), model registered, and the model file readable by numpy.
# Skipped (77) in sanitizer builds (an uninstrumented example cannot link the
# instrumented library) and when the example or the data set is missing.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && { echo "skip: sanitizer build"; exit 77; }
[ -f "$REPO/examples/mnist/train_mnist.c" ] || { echo "skip: examples/mnist not there"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null || die "cmake --install failed"
export PATH="$T/prefix/bin:$PATH" PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig" LD_LIBRARY_PATH="$T/prefix/lib"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
out="$(bash "$REPO/scripts/quickstart.sh" --workspace "$WS" --epochs 1 2>&1)"; rc=$?
assert_eq 0 $rc "quickstart on examples/mnist exits 0"
[ $rc -eq 0 ] || echo "$out" | tail -30
assert_contains "$out" "running 'make'" "the example was built by its environment"
assert_contains "$out" "epoch:01" "training output streamed"
assert_contains "$out" "model: chainer-dnn-mnist:1" "model registered"
run="$(sql "SELECT id FROM runs ORDER BY seq DESC LIMIT 1")"
j="$($K run show "$run" --json)"
assert_eq "128 1" "$(jget "$j" '"%g %g" % (j["metrics"]["Batch size"], j["metrics"]["Epochs"])')" "Batch size and Epochs logged"
acc="$(jget "$j" 'j["metrics"]["Accuracy"]')"
python3 -c "import sys; sys.exit(0 if float('$acc') > 0.7 else 1)" && ok "Accuracy $acc > 0.7 after one epoch" || fail "Accuracy $acc"
run_ok "$K" model download chainer-dnn-mnist --to "$T/m" >/dev/null
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  keys="$(/usr/bin/python3 -c "import numpy as np; print(' '.join(sorted(np.load('$T/m/model.npz').keys())))")"
  assert_contains "$keys" "l1/W" "registered model.npz loads in numpy"
fi
finish
