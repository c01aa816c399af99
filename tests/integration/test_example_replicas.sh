#!/usr/bin/env bash
# train_mnist_cnn --replicas 2 (data-parallel iterations, kusari/parallel.h)
# against the plain updater on the same small Fashion-MNIST run: the same
# learning to rounding (final validation loss and accuracy within a small
# margin, model.npz of the same keys and shapes, numpy recomputes the
# replicas' accuracy from their model.npz), and bad --replicas values are
# refused with a message before anything is written.
set -euo pipefail
TRAIN=$1
PY=${2:-}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
source "$(dirname "$0")/blas_env.sh"
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

for v in 0 65 two -1; do
  if "$TRAIN" --replicas "$v" -o "$tmp/bad" >"$tmp/out" 2>&1; then echo "FAIL: --replicas $v accepted"; exit 1; fi
  grep -q -- "--replicas must be" "$tmp/out" || { echo "FAIL: no message for --replicas $v"; cat "$tmp/out"; exit 1; }
  [ ! -e "$tmp/bad" ] || { echo "FAIL: --replicas $v wrote $tmp/bad"; exit 1; }
done
"$TRAIN" --help > "$tmp/help"
grep -q -- "--replicas N" "$tmp/help"

args=(-e 2 --train-size 6000 --test-size 2000 --channels 16,32 -u 64 --data "$DATA")
for r in 1 2; do
  start=$(date +%s.%N)
  "$TRAIN" "${args[@]}" --replicas "$r" -o "$tmp/r$r" < /dev/null > "$tmp/r$r.stdout"
  echo "replicas $r: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s"
done

"$PY" - "$tmp/r1" "$tmp/r2" "$DATA" <<'PYEOF'
import gzip, json, sys
import numpy as np
r1, r2, data = sys.argv[1:4]
l1, l2 = json.load(open(r1 + "/log")), json.load(open(r2 + "/log"))
assert [e["epoch"] for e in l1] == [e["epoch"] for e in l2] == [1, 2], (l1, l2)
for k in ("main/loss", "validation/main/loss"):
    a, b = l1[-1][k], l2[-1][k]
    assert abs(a - b) <= 0.02 * a, f"{k}: plain {a:.5f}, replicas {b:.5f}"
a1, a2 = l1[-1]["validation/main/accuracy"], l2[-1]["validation/main/accuracy"]
assert abs(a1 - a2) <= 0.015, f"accuracy: plain {a1:.4f}, replicas {a2:.4f}"
assert a2 >= 0.70, f"replicas reached only {a2:.4f}"
z1, z2 = np.load(r1 + "/model.npz"), np.load(r2 + "/model.npz")
assert {k: z1[k].shape for k in z1.files} == {k: z2[k].shape for k in z2.files}
assert any(not np.array_equal(z1[k], z2[k]) for k in z1.files), "replicas gave the plain step's bits"
# numpy's forward of the replicas' model gives the accuracy they logged
with gzip.open(data + "/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)[:2000].astype(np.float32) / 255
with gzip.open(data + "/t10k-labels-idx1-ubyte.gz") as f:
    t = np.frombuffer(f.read(), np.uint8, offset=8)[:2000]
win = np.lib.stride_tricks.sliding_window_view
def conv(h, W, b):
    return np.einsum("nchwij,ocij->nohw", win(h, (5, 5), axis=(2, 3)), W, optimize=True) + b[None, :, None, None]
def pool(h):
    n, c, hh, ww = h.shape
    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
z = z2
h = pool(np.maximum(conv(x, z["predictor/conv1/W"], z["predictor/conv1/b"]), 0))
h = pool(np.maximum(conv(h, z["predictor/conv2/W"], z["predictor/conv2/b"]), 0))
h = np.maximum(h.reshape(len(h), -1) @ z["predictor/fc3/W"].T + z["predictor/fc3/b"], 0)
acc = float(((h @ z["predictor/fc4/W"].T + z["predictor/fc4/b"]).argmax(1) == t).mean())
assert abs(acc - a2) < 1e-3, f"numpy {acc:.4f}, log {a2:.4f}"
print(f"plain {a1:.4f}, replicas {a2:.4f}, numpy from the replicas' model.npz {acc:.4f}")
PYEOF
echo "PASS"
