#!/usr/bin/env bash
# platform_sweep_mnist: the seed notebook's sweep for real, made small: a
# random sweep of examples/mnist (built by its environment's `make` against a
# temp `cmake --install`, once for all children through the build cache) on a
# 2000/500-image Fashion-MNIST subset, with the issue's bandit policy
# (evaluation_interval 1, slack_factor 0.1, delay_evaluation 3), 6 runs, 2 at
# once; the best child's model is registered. Skipped (77) in sanitizer
# builds and without the example, the data set or numpy.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && { echo "skip: sanitizer build"; exit 77; }
[ -f "$REPO/examples/mnist/train_mnist.c" ] || { echo "skip: examples/mnist not there"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
/usr/bin/python3 -c "import numpy" 2>/dev/null || { echo "skip: no numpy"; exit 77; }
cmake --install "$BUILD" --prefix "$T/prefix" >/dev/null || die "cmake --install failed"
export PATH="$T/prefix/bin:$PATH" PKG_CONFIG_PATH="$T/prefix/lib/pkgconfig" LD_LIBRARY_PATH="$T/prefix/lib"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
K="$T/prefix/bin/kusari"
# the subset: the first 2000 training and 500 test images, uncompressed IDX
/usr/bin/python3 - "$T/data" <<'PY' || die "cannot make the MNIST subset"
import gzip, os, sys
import numpy as np
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
os.makedirs(dst)
for name, n in (("train", 2000), ("t10k", 500)):
    for kind, hdr in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
        raw = gzip.open("%s/%s-%s.gz" % (src, name, kind)).read()
        head = bytearray(raw[:hdr])
        head[4:8] = np.array([n], ">u4").tobytes()
        item = 784 if kind.startswith("images") else 1
        open("%s/%s-%s" % (dst, name, kind), "wb").write(bytes(head) + raw[hdr:hdr + n * item])
PY
run_ok $K compute create cpu --max-nodes 2 >/dev/null
cat > "$T/sweep.json" <<JSON
{"experiment": "chainer-mnist",
 "run": {"source": "$REPO/examples/mnist", "entry": "train_mnist", "compute": "cpu",
         "environment": "$REPO/examples/mnist/kusari-env.json",
         "arguments": ["--output_dir", "./outputs", "--data", "$T/data"]},
 "sampling": {"type": "random", "seed": 7,
              "space": {"--batchsize": {"choice": [50, 100]}, "--epochs": {"choice": [4, 5]},
                        "--lr": {"loguniform": [-9.2, -2.3]}, "--unit": {"choice": [50, 100]}}},
 "primary_metric": {"name": "Accuracy", "goal": "maximize"},
 "policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 3},
 "max_total_runs": 6, "max_concurrent_runs": 2, "max_duration_minutes": 10}
JSON
sw="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
out="$($K sweep wait "$sw" --timeout 150 2>&1)"; rc=$?
assert_eq 0 $rc "the MNIST sweep completes"
[ $rc -eq 0 ] || { echo "$out"; $K sweep show "$sw"; cat "$WS/runs/$sw/controller.log"; }
$K sweep show "$sw"
j="$($K sweep show "$sw" --json)"
assert_eq 6 "$(jget "$j" 'len(j["children"])')" "6 child runs"
assert_eq "" "$(jget "$j" '",".join(c["id"] for c in j["children"] if c["status"] not in ("Completed", "Canceled"))')" "every child Completed or early-terminated"
assert_eq "" "$(jget "$j" '",".join(c["id"] for c in j["children"] if c["status"] == "Canceled" and "bandit policy at interval" not in (c["early_termination"] or ""))')" "every Canceled child was terminated by the bandit policy, with its numbers"
best="$(run_ok $K sweep best "$sw" --completed-only | tail -1)"
bj="$(run_ok $K run show "$best" --json)"
acc="$(jget "$bj" 'j["metrics"]["Accuracy"]')"
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') > 0.6 else 1)" && ok "best child's Accuracy $acc > 0.6 on the subset" || fail "best Accuracy $acc"
assert_contains "$(jget "$bj" '" ".join(j["arguments"])')" "--data $T/data --batchsize" "sampled parameters follow the fixed arguments"
assert_contains "$(grep -h "build cache" "$WS"/runs/chainer-mnist_*/logs/build.log | sort | uniq -c)" "hit" "children share the build (cache hits)"
run_ok $K model register --run "$best" --name chainer-dnn-mnist --path outputs/model.npz >/dev/null
assert_eq "$best" "$(jget "$(run_ok $K model show chainer-dnn-mnist --json)" 'j["run_id"] if "run_id" in j else j["run"]')" "the best child's model is registered"
# sweep controllers run detached: their sanitizer reports land in controller.log
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/controller.log 2>/dev/null)"
[ -z "$bad" ] && ok "no sanitizer reports from sweep controllers" || fail "sanitizer reports: $(head -40 $bad)"
finish
