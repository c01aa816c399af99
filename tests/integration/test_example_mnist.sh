#!/usr/bin/env bash
# The issue's target: 10 epochs, batch 128, 100 units reach >= 0.87 test
# accuracy on Fashion-MNIST. 0.87 lies near the middle of what this
# configuration gives over seeds, for kusari and for Chainer alike (seed
# study, 2026-11-26, bench/RESULTS.md: kusari's final accuracy over seeds
# 1-20 is 0.8655-0.8779, mean 0.8723, 4 of 20 below 0.87; Chainer's own
# computation, bench/peers/mlp_numpy.py, over seeds 1-16: 0.8651-0.8784, mean
# 0.8720, 3 of 16 below). So one seed's run says little (seed 1 ends at
# 0.8710 with the platform's kernels, 0.8690 with OpenBLAS's generic ones)
# and the test trains seeds 1-20 and asks the MEAN final accuracy to reach
# 0.87 (its standard error is about 0.001), no seed below 0.855.
#
# numpy loads every model.npz, checks Chainer's keys and shapes, and
# recomputes the test accuracy from the saved weights with its own forward
# pass: it must agree with what the program printed. The example runs with
# the OpenBLAS kernel set the platform gives runs (blas_env.sh), as in the
# reference story (about 3 s a run here).
set -euo pipefail
TRAIN=$1
PY=${2:-}
source "$(dirname "$0")/blas_env.sh"
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

SEEDS=20
for seed in $(seq 1 "$SEEDS"); do
  mkdir -p "$out/s$seed"
  "$TRAIN" --epochs 10 --batchsize 128 --unit 100 --seed "$seed" -o "$out/s$seed" --data "$DATA" \
    > "$out/s$seed/log" 2> "$out/s$seed/err" || { cat "$out/s$seed/err"; echo "FAIL: seed $seed"; exit 1; }
  n=$(grep -c '^epoch:' "$out/s$seed/log")
  [ "$n" -eq 10 ] || { cat "$out/s$seed/log"; echo "FAIL: seed $seed: expected 10 epoch lines, got $n"; exit 1; }
  grep -Eq '^epoch:01 train_loss:[0-9]+\.[0-9]{4} val_loss:[0-9]+\.[0-9]{4} val_accuracy:[0-9]\.[0-9]{4}' \
    "$out/s$seed/log" || { echo "FAIL: epoch line format"; exit 1; }
  echo "seed $seed: $(grep '^epoch:10' "$out/s$seed/log")"
done

"$PY" - "$out" "$DATA" "$SEEDS" <<'PYEOF'
import gzip, re, sys
import numpy as np
out, data, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3])
with gzip.open(data + "/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
with gzip.open(data + "/t10k-labels-idx1-ubyte.gz") as f:
    t = np.frombuffer(f.read(), np.uint8, offset=8)
want = {"l1/W": (100, 784), "l1/b": (100,), "l2/W": (100, 100), "l2/b": (100,),
        "l3/W": (10, 100), "l3/b": (10,)}
accs = []
for s in range(1, seeds + 1):
    z = np.load(f"{out}/s{s}/model.npz")
    assert sorted(z.files) == sorted(want), z.files
    for k, shape in want.items():
        assert z[k].shape == shape and z[k].dtype == np.float32, (k, z[k].shape, z[k].dtype)
    h = np.maximum(x @ z["l1/W"].T + z["l1/b"], 0)
    h = np.maximum(h @ z["l2/W"].T + z["l2/b"], 0)
    y = h @ z["l3/W"].T + z["l3/b"]
    acc = float((y.argmax(1) == t).mean())
    log = open(f"{out}/s{s}/log").read()
    printed = float(re.search(r"^epoch:10 .*val_accuracy:([0-9.]+)", log, re.M).group(1))
    # the program averages per-batch accuracies (like the Chainer example);
    # with 10000 = 78*128 + 16 the last small batch weighs a little more
    assert abs(acc - printed) < 0.005, (s, acc, printed)
    accs.append(acc)
mean = sum(accs) / len(accs)
print("numpy accuracies from model.npz: " + " ".join(f"{a:.4f}" for a in accs))
print(f"mean {mean:.4f}, min {min(accs):.4f}, max {max(accs):.4f} over {len(accs)} seeds")
assert mean >= 0.87, f"mean accuracy {mean:.4f} below the 0.87 target"
assert min(accs) >= 0.855, f"a seed ended at {min(accs):.4f}"
PYEOF
echo "PASS"
