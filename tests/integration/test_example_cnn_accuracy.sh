#!/usr/bin/env bash
# The issue's target: train_mnist_cnn with its DEFAULT settings (CNN, 5
# epochs, batch 100, Adam) reaches >= 0.90 test accuracy on Fashion-MNIST.
# Checks the output directory (log, plots, snapshots, model.npz), then numpy
# recomputes the test accuracy from model.npz with its own convolutions and
# must agree with the log. Takes a few minutes on 2 cores.
set -euo pipefail
TRAIN=$1
PY=${2:-}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
source "$(dirname "$0")/blas_env.sh"
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

start=$(date +%s)
"$TRAIN" -o "$out/result" --data "$DATA" < /dev/null | tee "$out/stdout"
echo "trained in $(( $(date +%s) - start )) s"
for f in log loss.png accuracy.png model.npz model.json snapshot_iter_600 snapshot_iter_3000; do
  [ -s "$out/result/$f" ] || { echo "FAIL: $f missing in the output directory"; exit 1; }
done
grep -q '^epoch  *main/loss  *validation/main/loss' "$out/stdout" || { echo "FAIL: PrintReport header"; exit 1; }
if grep -q $'\033' "$out/stdout"; then echo "FAIL: ProgressBar drew into a pipe"; exit 1; fi

"$PY" - "$out/result" "$DATA" <<'PYEOF'
import gzip, json, sys
import numpy as np
res, data = sys.argv[1], sys.argv[2]
log = json.load(open(res + "/log"))
assert [e["epoch"] for e in log] == [1, 2, 3, 4, 5], log
acc_log = log[-1]["validation/main/accuracy"]
z = np.load(res + "/model.npz")
want = {"predictor/conv1/W": (32, 1, 5, 5), "predictor/conv1/b": (32,),
        "predictor/conv2/W": (64, 32, 5, 5), "predictor/conv2/b": (64,),
        "predictor/fc3/W": (256, 1024), "predictor/fc3/b": (256,),
        "predictor/fc4/W": (10, 256), "predictor/fc4/b": (10,)}
assert {k: z[k].shape for k in z.files} == want, {k: z[k].shape for k in z.files}
desc = json.load(open(res + "/model.json"))   # what makes the output folder deployable
assert desc.get("root") == "predictor", desc
with gzip.open(data + "/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
with gzip.open(data + "/t10k-labels-idx1-ubyte.gz") as f:
    t = np.frombuffer(f.read(), np.uint8, offset=8)
win = np.lib.stride_tricks.sliding_window_view
def conv(h, W, b):            # valid 5x5 convolution, stride 1
    p = win(h, (5, 5), axis=(2, 3))                 # (N, C, H', W', 5, 5)
    return np.einsum("nchwij,ocij->nohw", p, W, optimize=True) + b[None, :, None, None]
def pool(h):                  # 2x2 max pooling, even sizes
    n, c, hh, ww = h.shape
    return h.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
correct = 0
for i in range(0, len(x), 1000):
    h = pool(np.maximum(conv(x[i:i + 1000], z["predictor/conv1/W"], z["predictor/conv1/b"]), 0))
    h = pool(np.maximum(conv(h, z["predictor/conv2/W"], z["predictor/conv2/b"]), 0))
    h = np.maximum(h.reshape(len(h), -1) @ z["predictor/fc3/W"].T + z["predictor/fc3/b"], 0)
    y = h @ z["predictor/fc4/W"].T + z["predictor/fc4/b"]
    correct += int((y.argmax(1) == t[i:i + 1000]).sum())
acc = correct / len(x)
print(f"numpy accuracy from model.npz: {acc:.4f} (log: {acc_log:.4f})")
assert acc >= 0.90, f"test accuracy {acc} below the 0.90 target"
assert abs(acc - acc_log) < 0.002, (acc, acc_log)   # 10000 = 100 batches of 100: same mean
PYEOF
echo PASS
