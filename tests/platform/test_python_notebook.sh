#!/usr/bin/env bash
# platform_python_notebook: the seed notebook's flow as a Python script on the
# SDK (python/examples/notebook.py) on the real example: workspace, compute
# target, estimator for train_mnist, submit and wait with output, metrics,
# register chainer-dnn-mnist, download outputs/model*, a HyperDrive sweep
# (random sampling over batch size x epochs, Bandit 0.1/1/3), register the
# best, deploy with a key, score test images and check the accuracy.
# Sizes for a 2-core CI machine (documented in docs/PYTHON.md): 1 epoch, a
# 2-run sweep of 1 epoch, 500 test images. With the installed kusari (a temp
# `cmake --install`: the example builds through kusari.pc), like
# platform_readme. Skipped (77) in sanitizer builds (an uninstrumented
# example cannot link the instrumented library) and without the data set.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && { echo "skip: sanitizer build"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null || die "cmake --install failed"
export PATH="$T/prefix/bin:$PATH" PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig"
export PYTHONPATH="$T/prefix/share/kusari/python"      # the installed package
unset KUSARI_BIN                                       # the SDK finds the installed kusari on PATH
D="$T/user"; mkdir -p "$D" && cp -r "$REPO/examples" "$D/examples"
kusari workspace create "$D/ws" >/dev/null || die "workspace create"
export KUSARI_WORKSPACE="$D/ws" WS="$D/ws"
nb_cleanup() { kusari service delete mnist-svc >/dev/null 2>&1; cleanup; }
trap nb_cleanup EXIT

(cd "$D" && python3 "$REPO/python/examples/notebook.py" --epochs 1 --sweep-epochs 1 --sweep-runs 2 \
   --sweep-concurrent 2 --max-nodes 2 --score 500) > "$T/nb.out" 2>&1; rc=$?
out="$(cat "$T/nb.out")"
assert_eq 0 $rc "the notebook script runs to its end"
[ $rc -eq 0 ] || tail -30 "$T/nb.out"
assert_contains "$out" "created compute target cpu" "ComputeTarget.create"
assert_contains "$out" "epoch" "wait_for_completion(show_output=True) shows the training's output"
assert_contains "$out" "'Accuracy':" "get_metrics has Accuracy"
assert_contains "$out" "registered chainer-dnn-mnist version 1" "register_model"
assert_contains "$out" "downloaded outputs/model.npz" "download_file of outputs/model*"
test -s "$D/downloads/model.npz" && ok "model.npz downloaded" || fail "no $D/downloads/model.npz"
assert_contains "$out" "children: 2" "the sweep ran its 2 children"
assert_contains "$out" "registered the best run's model as chainer-dnn-mnist:2" "the best run's model registered"
assert_contains "$out" "Running" "the service is running"
acc="$(sed -n 's/^service accuracy on 500 test images: //p' "$T/nb.out")"
# 1 epoch of the MLP on Fashion-MNIST scores about 0.8 (README: 0.87 after 10)
assert_eq "True" "$(python3 -c "print(0.7 <= float('${acc:-0}') <= 1.0)")" "the deployed model's accuracy on 500 test images ($acc) is at least 0.7"
assert_contains "$out" "deleted the service" "service.delete"
models="$(kusari model list --json)"
assert_eq "1 2" "$(jget "$models" '" ".join(str(m["version"]) for m in sorted(j, key=lambda m: m["version"]) if m["name"] == "chainer-dnn-mnist")')" "two versions of chainer-dnn-mnist, seen by the CLI"
finish
