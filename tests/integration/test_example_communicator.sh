#!/usr/bin/env bash
# train_mnist and train_mnist_cnn with --communicator (ChainerMN's
# train_mnist example) under a real mpirun with 2 ranks:
#  - an unknown communicator is refused with an error and a hint; --help
#    names the option; --communicator single (the default) trains the same
#    model as no option, bit for bit;
#  - each rank gets its own --out / --output_dir (the rank's number from
#    Open MPI's environment), so what each rank writes can be told apart:
#    rank 0 alone writes model.npz, model.json, the log and the plots, and
#    prints the epoch lines; rank 1 writes none of them (train_mnist_cnn:
#    only its own snapshot_rank1_iter_*);
#  - numpy recomputes the accuracy of rank 0's model.npz on the whole test
#    set, which must be the reported validation accuracy (the evaluation
#    over both ranks' shards: full batches, so the mean over batches is the
#    accuracy over the set).
# mpirun as root and on 2 cores needs Open MPI's permission variables,
# which this test sets (a user does not).
set -euo pipefail
MLP=$1
CNN=$2
PY=${3:-}
MPIRUN=${4:-mpirun}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
source "$(dirname "$0")/blas_env.sh"
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# under ASan: Open MPI's own until-exit allocations are not the examples'
# leaks (as tests/lib/test_comm.c suppresses them); full stacks to match them
printf 'leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\nleak:libpmix.so\nleak:libevent\nleak:mca_\nleak:libfontconfig\n' > "$tmp/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$tmp/lsan.supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"

for prog in "$MLP" "$CNN"; do
  if "$prog" --communicator nccl5 --data "$DATA" >"$tmp/out" 2>&1; then echo "FAIL: bad communicator accepted"; exit 1; fi
  grep -q "error: unknown communicator 'nccl5'" "$tmp/out" && grep -q "hint:" "$tmp/out" ||
    { echo "FAIL: no message"; cat "$tmp/out"; exit 1; }
  "$prog" --help | grep -q -- "--communicator C"
done

# the default is one process, as before
"$MLP" -e 1 -u 20 --data "$DATA" --output_dir "$tmp/default" < /dev/null > "$tmp/default.stdout" 2>&1
"$MLP" -e 1 -u 20 --data "$DATA" --output_dir "$tmp/single" --communicator single < /dev/null > "$tmp/single.stdout" 2>&1
"$PY" -c 'import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert sorted(a.keys()) == sorted(b.keys()) and all(np.array_equal(a[k], b[k]) for k in a), "single differs from the default"
' "$tmp/default/model.npz" "$tmp/single/model.npz"
! grep -q "communicator" "$tmp/default.stdout"

# rank R writes into $1/rank$R: rank 1 must write no model
mkdir "$tmp/mlp" "$tmp/cnn"
per_rank() { "$MPIRUN" -np 2 sh -c 'prog=$1; out=$2; shift 2; exec "$prog" "$@" "$out/rank$OMPI_COMM_WORLD_RANK"' sh "$@"; }

per_rank "$MLP" "$tmp/mlp" -e 2 --data "$DATA" --communicator mpi --output_dir < /dev/null > "$tmp/mlp.stdout" 2>&1 ||
  { echo "FAIL: train_mnist on 2 ranks"; cat "$tmp/mlp.stdout"; exit 1; }
grep -q "communicator: mpi  ranks: 2" "$tmp/mlp.stdout" || { echo "FAIL: not 2 MPI ranks"; cat "$tmp/mlp.stdout"; exit 1; }
[ "$(grep -c '^epoch:02' "$tmp/mlp.stdout")" = 1 ] || { echo "FAIL: not one report an epoch"; cat "$tmp/mlp.stdout"; exit 1; }
[ -s "$tmp/mlp/rank0/model.npz" ] && [ -s "$tmp/mlp/rank0/model.json" ] || { echo "FAIL: rank 0 wrote no model"; exit 1; }
[ ! -e "$tmp/mlp/rank1/model.npz" ] && [ ! -e "$tmp/mlp/rank1/model.json" ] || { echo "FAIL: rank 1 wrote a model"; exit 1; }
acc=$(sed -n 's/^epoch:02 .*val_accuracy:\([0-9.]*\).*/\1/p' "$tmp/mlp.stdout")

per_rank "$CNN" "$tmp/cnn" -e 1 -f 1 --train-size 2000 --test-size 400 --data "$DATA" --communicator mpi --out \
  < /dev/null > "$tmp/cnn.stdout" 2>&1 || { echo "FAIL: train_mnist_cnn on 2 ranks"; cat "$tmp/cnn.stdout"; exit 1; }
grep -q "communicator: mpi  ranks: 2" "$tmp/cnn.stdout" || { echo "FAIL: not 2 MPI ranks"; cat "$tmp/cnn.stdout"; exit 1; }
for f in model.npz model.json log loss.png accuracy.png snapshot_rank0_iter_10; do
  [ -s "$tmp/cnn/rank0/$f" ] || { echo "FAIL: rank 0 wrote no $f"; ls -l "$tmp/cnn/rank0"; exit 1; }
done
[ "$(ls "$tmp/cnn/rank1")" = snapshot_rank1_iter_10 ] || { echo "FAIL: rank 1 wrote more than its snapshot"; ls -l "$tmp/cnn/rank1"; exit 1; }
# with mpi, -r names a directory (each rank its newest snapshot there)
if "$CNN" --communicator mpi --data "$DATA" -r "$tmp/cnn/rank0/snapshot_rank0_iter_10" > "$tmp/r.out" 2>&1; then
  echo "FAIL: -r FILE accepted with mpi"; exit 1
fi
grep -q "takes a directory" "$tmp/r.out" || { echo "FAIL: no message for -r FILE"; cat "$tmp/r.out"; exit 1; }

"$PY" - "$tmp" "$DATA" "$acc" <<'PYEOF'
import gzip, json, sys
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
tmp, data, mlp_acc = sys.argv[1], sys.argv[2], float(sys.argv[3])
with gzip.open(data + "/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
with gzip.open(data + "/t10k-labels-idx1-ubyte.gz") as f:
    t = np.frombuffer(f.read(), np.uint8, offset=8)
x = x.astype(np.float32) * np.float32(1.0 / 255)

m = np.load(tmp + "/mlp/rank0/model.npz")
h = np.maximum(x @ m["l1/W"].T + m["l1/b"], 0)
h = np.maximum(h @ m["l2/W"].T + m["l2/b"], 0)
mine = float(((h @ m["l3/W"].T + m["l3/b"]).argmax(1) == t).mean())
print(f"train_mnist, 2 ranks: val_accuracy {mlp_acc:.4f}, numpy on model.npz {mine:.4f}")
assert abs(mine - mlp_acc) <= 0.0002, (mine, mlp_acc)
assert mlp_acc > 0.7, mlp_acc

def conv(a, W, b):  # valid, stride 1: (N,C,H,W) x (O,C,k,k)
    win = sliding_window_view(a, W.shape[2:], axis=(2, 3))  # N,C,H',W',k,k
    return np.einsum("nchwij,ocij->nohw", win, W) + b[None, :, None, None]
def pool(a):
    n, c, hh, ww = a.shape
    return a.reshape(n, c, hh // 2, 2, ww // 2, 2).max(axis=(3, 5))
m = np.load(tmp + "/cnn/rank0/model.npz")
p = lambda k: m["predictor/" + k]
xs, ts = x[:400].reshape(-1, 1, 28, 28), t[:400]
h = pool(np.maximum(conv(xs, p("conv1/W"), p("conv1/b")), 0))
h = pool(np.maximum(conv(h, p("conv2/W"), p("conv2/b")), 0)).reshape(400, -1)
h = np.maximum(h @ p("fc3/W").T + p("fc3/b"), 0)
mine = float(((h @ p("fc4/W").T + p("fc4/b")).argmax(1) == ts).mean())
log = json.load(open(tmp + "/cnn/rank0/log"))
assert [e["epoch"] for e in log] == [1], log
acc = log[-1]["validation/main/accuracy"]
print(f"train_mnist_cnn, 2 ranks: validation/main/accuracy {acc:.4f}, numpy on model.npz {mine:.4f}")
assert abs(mine - acc) <= 1e-5, (mine, acc)
assert acc > 0.4, acc
PYEOF
echo "PASS"
