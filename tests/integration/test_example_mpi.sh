#!/usr/bin/env bash
# train_mnist_mpi (examples/mnist, kusari/comm.h) under a real mpirun:
#  - 2 ranks train 2 epochs on 6000 Fashion-MNIST examples; rank 0 writes
#    the log and model.npz; numpy recomputes the accuracy of model.npz on
#    the 1000 test examples, which must be the multi-node Evaluator's last
#    validation/main/accuracy (500 examples a rank, batches of 100: the mean
#    over batches is the accuracy over the set);
#  - 3 ranks (shards of 2000 and 334 with duplicates) run to the end;
#  - exact resume: 2 ranks stopped after epoch 1 with per-rank snapshots,
#    then resumed (--autoload) to epoch 2, end with the parameters and log
#    of 2 ranks that trained 2 epochs straight, bit for bit;
#  - one rank killed with SIGKILL mid-training: mpirun ends the job with a
#    failure naming the signal, and no rank is left running (a hang would
#    run into the 120 s guard and fail);
#  - the same program without mpirun is one process; a bad communicator
#    name is refused;
#  - (given the source and build directories) the examples' Makefile builds
#    it against an installed libkusari, shared and static.
# mpirun as root and on 2 cores needs Open MPI's permission variables,
# which this test sets (a user does not).
set -euo pipefail
TRAIN=$1
PY=${2:-}
MPIRUN=${3:-mpirun}
SRC=${4:-}
BIN=${5:-}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
source "$(dirname "$0")/blas_env.sh"
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
args=(-e 2 -u 100 --train-size 6000 --test-size 1000 --data "$DATA")

if "$TRAIN" --communicator nccl5 -o "$tmp/bad" >"$tmp/out" 2>&1; then echo "FAIL: bad communicator accepted"; exit 1; fi
grep -q "unknown communicator 'nccl5'" "$tmp/out" || { echo "FAIL: no message"; cat "$tmp/out"; exit 1; }
"$TRAIN" --help | grep -q -- "--communicator C"

"$MPIRUN" -np 2 "$TRAIN" "${args[@]}" -o "$tmp/np2" < /dev/null > "$tmp/np2.stdout" 2>&1 ||
  { echo "FAIL: 2 ranks"; cat "$tmp/np2.stdout"; exit 1; }
grep -q "communicator: mpi  ranks: 2" "$tmp/np2.stdout" || { echo "FAIL: not 2 MPI ranks"; cat "$tmp/np2.stdout"; exit 1; }
"$MPIRUN" -np 3 "$TRAIN" "${args[@]}" -e 1 -o "$tmp/np3" < /dev/null > "$tmp/np3.stdout" 2>&1 ||
  { echo "FAIL: 3 ranks"; cat "$tmp/np3.stdout"; exit 1; }
grep -q "ranks: 3" "$tmp/np3.stdout"
"$TRAIN" "${args[@]}" -e 1 -o "$tmp/np1" < /dev/null > "$tmp/np1.stdout" 2>&1 ||
  { echo "FAIL: one process"; cat "$tmp/np1.stdout"; exit 1; }
grep -q "communicator: single  ranks: 1" "$tmp/np1.stdout"
for d in np2 np3 np1; do [ -s "$tmp/$d/model.npz" ] && [ -s "$tmp/$d/log" ] || { echo "FAIL: $d wrote no model/log"; exit 1; }; done

# one rank killed mid-training
"$MPIRUN" -np 2 "$TRAIN" -u 100 --train-size 20000 --test-size 500 -e 1000 --data "$DATA" -o "$tmp/killed" \
  < /dev/null > "$tmp/killed.stdout" 2>&1 &
mpirun_pid=$!
ranks=""
for _ in $(seq 1 600); do  # until both ranks run and rank 0 has the data
  ranks=$(pgrep -P "$mpirun_pid" -f train_mnist_mpi || true)
  [ "$(echo "$ranks" | grep -c .)" = 2 ] && grep -q "communicator: mpi" "$tmp/killed.stdout" && break
  sleep 0.1
done
[ "$(echo "$ranks" | grep -c .)" = 2 ] || { echo "FAIL: the 2 ranks did not start"; cat "$tmp/killed.stdout"; exit 1; }
sleep 1
kill -9 $(echo "$ranks" | tail -1)
rc=0
timeout 120 tail --pid="$mpirun_pid" -f /dev/null || { echo "FAIL: mpirun still running after a rank was killed"; exit 1; }
wait "$mpirun_pid" || rc=$?
[ "$rc" != 0 ] || { echo "FAIL: mpirun exited 0 after a rank was killed"; exit 1; }
grep -q "signal 9" "$tmp/killed.stdout" || { echo "FAIL: no word of the killed rank"; cat "$tmp/killed.stdout"; exit 1; }
for p in $ranks; do  # mpirun has signalled them; give them the guard's time to go
  for _ in $(seq 1 1200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$p" 2>/dev/null || { echo "FAIL: rank $p left running"; ps -o pid,stat,cmd -p "$p"; exit 1; }
done
echo "killed rank: mpirun exit $rc, no rank left"

# exact resume with the same number of ranks
small=(-u 50 --train-size 1000 --test-size 200 --data "$DATA")
"$MPIRUN" -np 2 "$TRAIN" "${small[@]}" -e 2 -o "$tmp/straight" < /dev/null > "$tmp/straight.stdout" 2>&1
"$MPIRUN" -np 2 "$TRAIN" "${small[@]}" -e 1 -f 1 -o "$tmp/resumed" < /dev/null > "$tmp/part1.stdout" 2>&1
ls "$tmp/resumed/snapshot_rank0_iter_5" "$tmp/resumed/snapshot_rank1_iter_5" > /dev/null
"$MPIRUN" -np 2 "$TRAIN" "${small[@]}" -e 2 -f 1 --autoload -o "$tmp/resumed" < /dev/null > "$tmp/part2.stdout" 2>&1
grep -q "resumed from .*snapshot_rank0_iter_5 at iteration 5" "$tmp/part2.stdout" ||
  { echo "FAIL: did not resume"; cat "$tmp/part2.stdout"; exit 1; }
"$PY" - "$tmp/straight" "$tmp/resumed" <<'PYEOF'
import json, sys
import numpy as np
a, b = sys.argv[1:3]
pa, pb = np.load(a + "/model.npz"), np.load(b + "/model.npz")
assert sorted(pa.keys()) == sorted(pb.keys())
for k in pa:
    assert np.array_equal(pa[k], pb[k]), k
la, lb = json.load(open(a + "/log")), json.load(open(b + "/log"))
keys = ("epoch", "iteration", "main/loss", "main/accuracy", "validation/main/loss", "validation/main/accuracy")
assert [[e[k] for k in keys] for e in la] == [[e[k] for k in keys] for e in lb], (la, lb)
print("resume: parameters and log identical to the straight run")
PYEOF

"$PY" - "$tmp/np2" "$DATA" <<'PYEOF'
import gzip, json, sys
import numpy as np
out, data = sys.argv[1:3]
log = json.load(open(out + "/log"))
assert [e["epoch"] for e in log] == [1, 2], log
acc = log[-1]["validation/main/accuracy"]
with gzip.open(data + "/t10k-images-idx3-ubyte.gz") as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:1000]
with gzip.open(data + "/t10k-labels-idx1-ubyte.gz") as f:
    t = np.frombuffer(f.read(), np.uint8, offset=8)[:1000]
x = x.astype(np.float32) * np.float32(1.0 / 255)
m = np.load(out + "/model.npz")
h = np.maximum(x @ m["predictor/l1/W"].T + m["predictor/l1/b"], 0)
h = np.maximum(h @ m["predictor/l2/W"].T + m["predictor/l2/b"], 0)
y = h @ m["predictor/l3/W"].T + m["predictor/l3/b"]
mine = float((y.argmax(1) == t).mean())
print(f"2 ranks: validation/main/accuracy {acc:.4f}, numpy on model.npz {mine:.4f}")
assert abs(mine - acc) <= 0.002, (mine, acc)
assert acc > 0.6, acc
PYEOF

if [ -n "$SRC" ] && [ -n "$BIN" ]; then
  cmake --install "$BIN" --prefix "$tmp/prefix" > /dev/null
  cp -r "$SRC/examples/mnist" "$tmp/mnist"
  rm -f "$tmp/mnist/train_mnist_mpi"
  pc="$tmp/prefix/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
  PKG_CONFIG_LIBDIR="$pc" make -C "$tmp/mnist" train_mnist_mpi CFLAGS="-O2 -Wall -Wextra -Werror" > "$tmp/make.out" 2>&1 ||
    { echo "FAIL: make train_mnist_mpi"; cat "$tmp/make.out"; exit 1; }
  LD_LIBRARY_PATH="$tmp/prefix/lib" "$tmp/mnist/train_mnist_mpi" --help > "$tmp/help"
  grep -q -- "--communicator" "$tmp/help"
  PKG_CONFIG_LIBDIR="$pc" sh -c \
    'cc -O2 -o "$0/static_mpi" "$0/mnist/train_mnist_mpi.c" $(pkg-config --cflags kusari) "$0/prefix/lib/libkusari.a" $(pkg-config --libs-only-L --libs-only-l --static kusari | sed "s/-lkusari//")' "$tmp"
  "$tmp/static_mpi" --help > /dev/null
  echo "Makefile and static link: built"
fi
echo "PASS"
