#!/usr/bin/env bash
# platform_service_cnn: the CNN example's output folder is a deployable model.
# examples/mnist/train_mnist_cnn (compiled against the built libkusari) trains
# one epoch on 3000 Fashion-MNIST images as a real run; its model.npz holds a
# Classifier's keys ("predictor/conv1/W", ...) and its model.json the
# predictor's description with "root": "predictor". The outputs folder is
# registered as it is and deployed with --auth; the first 500 test images,
# sent flattened (784 numbers each), are scored over HTTP and must give the
# run's own evaluation accuracy on the same images exactly, and numpy's
# predictions recomputed from model.npz (differences only on near-ties).
# Services are stopped at exit, even on failure.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA=/usr/share/datasets/fashion-mnist
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
[ -n "${KUSARI_STATIC_LIB:-}" ] && command -v cc >/dev/null || { echo "skip: no compiler or static library"; exit 77; }
[ -d "$DATA" ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
/usr/bin/python3 -c "import numpy" 2>/dev/null || { echo "skip: python3-numpy not installed"; exit 77; }
PY=/usr/bin/python3

export KUSARI_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LIBS="$(pkg-config --libs openblas libzip zlib cairo) $(pkg-config --libs ompi-c 2>/dev/null) -lm -pthread"
NTEST=500

# --- train (a real run), register its outputs folder, deploy with auth ------------------
mkdir -p "$T/src"
run_ok $K compute create cpu --type local --max-nodes 1 >/dev/null
# fontconfig (under PlotReport's cairo text) keeps process-wide caches it
# never frees: not a leak of kusari's, suppressed in sanitizer builds
extra=()
if [ -n "${KUSARI_TEST_CFLAGS:-}" ]; then
  printf 'const char *__lsan_default_suppressions(void);\nconst char *__lsan_default_suppressions(void) { return "leak:libfontconfig\\n"; }\n' > "$T/lsan.c"
  extra=("$T/lsan.c")
fi
cc ${KUSARI_TEST_CFLAGS:-} -O1 -o "$T/src/train_mnist_cnn" "$REPO/examples/mnist/train_mnist_cnn.c" "${extra[@]}" \
  -I"$KUSARI_INCLUDE_DIR" "$KUSARI_STATIC_LIB" $LIBS || die "cannot compile examples/mnist/train_mnist_cnn.c"
run="$(submit --experiment servecnn --source "$T/src" --entry train_mnist_cnn -- --epochs 1 --batchsize 100 \
  --train-size 3000 --test-size $NTEST --data "$DATA" --out ./outputs)"
out="$($K run wait "$run" --show-output 2>&1)"; rc=$?
assert_eq 0 $rc "the CNN training run completed"
[ $rc -eq 0 ] || echo "$out" | tail -30 >&2
files="$(run_ok $K run files "$run")"
assert_contains "$files" "outputs/model.npz" "the run wrote model.npz"
assert_contains "$files" "outputs/model.json" "the run wrote model.json beside it"
run_ok $K model register --run "$run" --name fcnn --path outputs >/dev/null
run_ok $K model download fcnn --to "$T/m" >/dev/null
M="$T/m/outputs"
[ -s "$M/model.json" ] && [ -s "$M/model.npz" ] && [ -s "$M/log" ] || die "the registered folder lacks model.json, model.npz or log"
assert_eq "predictor [1, 28, 28]" "$(jget "$(cat "$M/model.json")" '"%s %s" % (j["root"], j["input"])')" \
  "the description is the predictor's, rooted at predictor/, input (1, 28, 28)"
out="$(run_ok $K model deploy fcnn --name fcnn --auth --workers 2)"
URI="$(echo "$out" | tail -1)"
assert_contains "$URI" "http://127.0.0.1:" "deploy prints the scoring URI last ($URI)"
K1="$(jget "$(run_ok $K service keys fcnn --json)" 'j["primary_key"]')"
assert_contains "$(run_ok $K service logs fcnn)" "input width 784, 10 classes" "the server loaded the CNN: 784 inputs, 10 classes"

status() { local u="$1"; shift; curl -s -m 20 -o "$T/body" -w '%{http_code}' "$@" "$u"; }
one='{"data": [['"$($PY -c 'print(", ".join(["0.5"] * 784))')"']]}'
assert_eq 401 "$(status "$URI" -d "$one")" "no key: 401"
assert_eq 200 "$(status "$URI" -H "Authorization: Bearer $K1" -d "$one")" "one flattened sample scores"
assert_eq 400 "$(status "$URI" -H "Authorization: Bearer $K1" -d '{"data": [[0.5, 0.5]]}')" "a sample of the wrong width: 400"

# --- the test images over HTTP against the run's evaluation and numpy -----------------------
$PY - "$URI" "$K1" "$DATA" "$M" $NTEST <<'EOF'
import gzip, json, sys, urllib.request
import numpy as np
uri, key, data, m, n = sys.argv[1:6]
n = int(n)
def idx(name, off):
    with gzip.open("%s/%s.gz" % (data, name)) as f:
        return np.frombuffer(f.read(), np.uint8, offset=off)
# the library's conversion: uint8 * float32(1/255)
X = idx("t10k-images-idx3-ubyte", 16).reshape(-1, 784)[:n].astype(np.float32) * np.float32(1.0 / 255.0)
t = idx("t10k-labels-idx1-ubyte", 8)[:n]
preds, probs = [], []
for s in range(0, n, 100):       # batches of 100, as the run's Evaluator took them
    body = json.dumps({"data": [[float(v) for v in r] for r in X[s:s + 100]]}).encode()
    req = urllib.request.Request(uri, data=body, headers={"Authorization": "Bearer " + key})
    r = json.load(urllib.request.urlopen(req, timeout=60))
    preds += r["predictions"]
    probs += r["probabilities"]
assert len(preds) == len(probs) == n, (len(preds), n)
assert all(len(p) == 10 and abs(sum(p) - 1) < 1e-4 for p in probs), "probabilities are not a softmax over 10 classes"
preds = np.array(preds)
acc = float((preds == t).mean())
log_acc = json.load(open(m + "/log"))[-1]["validation/main/accuracy"]
print("served accuracy %.4f, the run's evaluation %.4f" % (acc, log_acc))
# the log averages float32 batch accuracies: exact up to float32 rounding,
# far below one image (1/500)
assert abs(acc - log_acc) < 1e-6, "the served accuracy differs from the run's own evaluation"

z = np.load(m + "/model.npz")
win = np.lib.stride_tricks.sliding_window_view
def conv(h, W, b):            # valid 5x5 convolution, stride 1
    p = win(h, (5, 5), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", p, W, optimize=True) + b[None, :, None, None]
def pool(h):                  # 2x2 max pooling of even sizes
    k, c, hh, ww = h.shape
    return h.reshape(k, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
P = lambda k: z["predictor/" + k]
h = pool(np.maximum(conv(X.reshape(-1, 1, 28, 28), P("conv1/W"), P("conv1/b")), 0))
h = pool(np.maximum(conv(h, P("conv2/W"), P("conv2/b")), 0))
h = np.maximum(h.reshape(len(h), -1) @ P("fc3/W").T + P("fc3/b"), 0)
y = h @ P("fc4/W").T + P("fc4/b")
ref = y.argmax(1)
top2 = np.sort(y, 1)[:, -2:]
diff = np.nonzero(preds != ref)[0]
# float32 sums in another order may only flip exact near-ties
assert all(top2[i, 1] - top2[i, 0] < 1e-4 for i in diff), "predictions differ from numpy at %s" % diff[:10]
e = np.exp(y - y.max(1, keepdims=True))
assert np.abs(np.array(probs) - e / e.sum(1, keepdims=True)).max() < 1e-4, "probabilities differ from numpy's softmax"
print("numpy agrees on %d of %d predictions" % (n - len(diff), n))
EOF
assert_eq 0 $? "$NTEST test images scored over HTTP: the run's evaluation accuracy and numpy's predictions"

# --- sanitizer reports of the server (printed when it exits) ----------------------------------
run_ok $K service stop fcnn >/dev/null
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/services/*/server.log 2>/dev/null)"
[ -z "$bad" ] || fail "sanitizer reports from the server: $(cat $bad | head -40)"
run_ok $K service delete fcnn >/dev/null
finish
