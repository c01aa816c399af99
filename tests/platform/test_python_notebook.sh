#!/usr/bin/env bash
# platform_python_notebook: the seed notebook's flow as a Python script on the
# SDK (python/examples/notebook.py) on the real example: workspace, compute
# target, estimator for train_mnist, submit and wait with output, metrics,
# register chainer-dnn-mnist, download outputs/model*, the notebook's
# HyperDrive sweep (random sampling over batch size {128, 256} x epochs
# {5, 10, 20, 40}, Bandit slack 0.1 / interval 1 / delay 3, 8 runs, 4 at a
# time), register the best, deploy with a key, score test images and check
# the service's answers against numpy's own evaluation of the downloaded
# model.npz. To fit a 2-core CI machine the runs train on a slice of
# Fashion-MNIST (800 training and 500 test images, through train_mnist
# --data), the first run for 2 epochs (docs/PYTHON.md). With the installed
# kusari (a temp `cmake --install`: the example builds through kusari.pc),
# like platform_readme. Skipped (77) in sanitizer builds (an uninstrumented
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

# the slice: the first 800 training and 500 test images, in the idx format
mkdir -p "$T/data"
python3 - "$T/data" <<'PY' || die "writing the data slice"
import gzip, struct, sys
src = "/usr/share/datasets/fashion-mnist/"
for name, n in (("train-images-idx3-ubyte", 800), ("train-labels-idx1-ubyte", 800),
                ("t10k-images-idx3-ubyte", 500), ("t10k-labels-idx1-ubyte", 500)):
    raw = gzip.open(src + name + ".gz").read()
    nd = raw[3]
    dims = list(struct.unpack(">%dI" % nd, raw[4:4 + 4 * nd]))
    size = 1
    for d in dims[1:]:
        size *= d
    dims[0] = n
    with gzip.open(sys.argv[1] + "/" + name + ".gz", "wb") as f:
        f.write(raw[:4] + struct.pack(">%dI" % nd, *dims) + raw[4 + 4 * nd:4 + 4 * nd + n * size])
PY

(cd "$D" && python3 "$REPO/python/examples/notebook.py" --data "$T/data" --epochs 2 --score 500 \
   --predictions "$T/pred.json") > "$T/nb.out" 2>&1; rc=$?
out="$(cat "$T/nb.out")"
assert_eq 0 $rc "the notebook script runs to its end"
[ $rc -eq 0 ] || tail -30 "$T/nb.out"
assert_contains "$out" "created compute target cpu" "ComputeTarget.create"
assert_contains "$out" "data: $T/data (train 800, test 500)" "the runs train on the slice"
assert_contains "$out" "epoch" "wait_for_completion(show_output=True) shows the training's output"
assert_contains "$out" "'Accuracy':" "get_metrics has Accuracy"
assert_contains "$out" "registered chainer-dnn-mnist version 1" "register_model"
assert_contains "$out" "downloaded outputs/model.npz" "download_file of outputs/model*"
test -s "$D/downloads/model.npz" && ok "model.npz downloaded" || fail "no $D/downloads/model.npz"

# the sweep, as the CLI sees it: 8 children of the notebook's space, 4 at a time, Bandit
sweep="$(sed -n 's/^sweep //p' "$T/nb.out")"
assert_contains "$out" "children: 8" "the sweep ran its 8 children"
sj="$(kusari sweep show "$sweep" --json)"
assert_eq "8 4 random bandit Accuracy maximize" "$(jget "$sj" '" ".join(str(j[k]) for k in ("max_total_runs", "max_concurrent_runs", "sampling", "policy", "primary_metric", "goal"))')" "the sweep: 8 runs, 4 at a time, random sampling, a Bandit policy, maximizing Accuracy"
kids="$(kusari run list --parent "$sweep" --json)"
assert_eq "8" "$(jget "$kids" 'len(j)')" "8 child runs"
assert_eq "True" "$(jget "$kids" 'all(int(r["params"]["--batchsize"]) in (128, 256) and int(r["params"]["--epochs"]) in (5, 10, 20, 40) for r in j)')" "every child's point is in batch size {128, 256} x epochs {5, 10, 20, 40}"
# the best child worked out here: the highest Accuracy any child logged
best="" bestacc=-1
for id in $(jget "$kids" '" ".join(r["id"] for r in j)'); do
  a="$(jget "$(kusari run metrics "$id" --name Accuracy --json)" 'max([r["value"] for r in j.get("Accuracy", [])] or [-1])')"
  if python3 -c "import sys; sys.exit(0 if float('$a') > float('$bestacc') else 1)"; then best="$id" bestacc="$a"; fi
done
v2="$(kusari model show chainer-dnn-mnist:2 --json)"
assert_eq "$best" "$(jget "$v2" 'j["run"]')" "the registered version 2 is the child with the best Accuracy ($bestacc)"
assert_contains "$out" "registered the best run's model as chainer-dnn-mnist:2" "the best run's model registered"
test -s "$D/downloads/best/model.npz" && ok "the best model downloaded" || fail "no $D/downloads/best/model.npz"

# deployed with a key; its answers against numpy's evaluation of the downloaded model.npz
assert_contains "$out" "Running" "the service is running"
acc="$(sed -n 's/^service accuracy on 500 test images: //p' "$T/nb.out")"
ev="$(/usr/bin/python3 - "$D/downloads/best/model.npz" "$T/pred.json" <<'PY'
import gzip, json, sys
import numpy as np
m = np.load(sys.argv[1])
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
x = np.frombuffer(raw, np.uint8, offset=16)[:500 * 784].reshape(500, 784).astype(np.float32) / 255
h = np.maximum(x @ m["l1/W"].T + m["l1/b"], 0)
h = np.maximum(h @ m["l2/W"].T + m["l2/b"], 0)
mine = (h @ m["l3/W"].T + m["l3/b"]).argmax(1)
p = json.load(open(sys.argv[2]))
labels = np.array(p["labels"])
print(int((mine != np.array(p["predictions"])).sum()), "%.4f" % (mine == labels).mean())
PY
)"
read -r differ npacc <<< "$ev"
assert_eq "True" "$(python3 -c "print(${differ:-999} <= 1)")" "the service's answers are numpy's own on the downloaded model ($differ of 500 differ)"
assert_eq "True" "$(python3 -c "print(abs(float('${acc:-0}') - float('${npacc:-9}')) <= 0.002)")" "the scored accuracy ($acc) is numpy's ($npacc)"
assert_eq "True" "$(python3 -c "print(0.6 <= float('${npacc:-0}') <= 1.0)")" "the best model learned (numpy's accuracy $npacc >= 0.6; chance is 0.1)"
assert_contains "$out" "deleted the service" "service.delete"
models="$(kusari model list --json)"
assert_eq "1 2" "$(jget "$models" '" ".join(str(m["version"]) for m in sorted(j, key=lambda m: m["version"]) if m["name"] == "chainer-dnn-mnist")')" "two versions of chainer-dnn-mnist, seen by the CLI"
finish
