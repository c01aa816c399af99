#!/usr/bin/env bash
# Exact resume across processes: train_mnist_cnn (mlp, a data subset) runs
# 4 epochs straight; a second run is killed with SIGKILL right after its
# epoch-2 snapshot appears, then the same command is run again with
# --autoload (Chainer's way after a preemption), which resumes from the
# newest snapshot of its output directory, to 4 epochs. The final model.npz
# and the logged losses must be bit-identical (numpy reads both). Also: a
# corrupt or foreign snapshot fails clearly and overwrites nothing in the
# output directory; -r DIR takes the newest snapshot in DIR, and a DIR
# without one fails clearly.
set -euo pipefail
TRAIN=$1
PY=${2:-}
ARCH=${3:-mlp}
DATA=/usr/share/datasets/fashion-mnist
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "FAIL: $DATA missing (apt-get install dataset-fashion-mnist)"; exit 1; }
[ -n "$PY" ] || { echo "FAIL: numpy missing (apt-get install python3-numpy)"; exit 1; }
source "$(dirname "$0")/blas_env.sh"
export KUSARI_NUM_THREADS=${KUSARI_NUM_THREADS:-2}
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ "$ARCH" = cnn ]; then
  ARGS=(--arch cnn --channels 8,16 -u 64 --train-size 3000 --test-size 500 -b 50 --seed 7 -e 4)
else
  ARGS=(--arch mlp --train-size 20000 --test-size 2000 -b 50 --seed 7 -e 4)
fi
ITERS_PER_EPOCH=$(( $( [ "$ARCH" = cnn ] && echo 3000 || echo 20000 ) / 50 ))
SNAP=snapshot_iter_$((2 * ITERS_PER_EPOCH))

"$TRAIN" "${ARGS[@]}" -o "$tmp/a" > "$tmp/a.out"

# the run to kill
"$TRAIN" "${ARGS[@]}" -o "$tmp/b" > "$tmp/b.out" &
pid=$!
for _ in $(seq 1 6000); do
  [ -f "$tmp/b/$SNAP" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.01
done
kill -9 $pid 2>/dev/null || true
set +e; wait $pid; rc=$?; set -e
[ -f "$tmp/b/$SNAP" ] || { echo "FAIL: no $SNAP before the run ended (rc $rc)"; cat "$tmp/b.out"; exit 1; }
if [ $rc -ne 137 ]; then echo "FAIL: the run finished (rc $rc) before it could be killed; make it longer"; exit 1; fi
echo "killed after $SNAP (rc $rc)"
[ ! -f "$tmp/b/model.npz" ] || { echo "FAIL: the killed run wrote model.npz"; exit 1; }

# bad snapshots: clear errors, nothing in b/ changes
printf 'not a snapshot' > "$tmp/garbage"
head -c 20000 "$tmp/b/$SNAP" > "$tmp/truncated"
(cd "$tmp/b" && md5sum * | sort) > "$tmp/before.md5"
for bad in "$tmp/garbage" "$tmp/truncated" "$tmp/missing"; do
  set +e; "$TRAIN" "${ARGS[@]}" -o "$tmp/b" -r "$bad" > "$tmp/bad.out" 2> "$tmp/bad.err"; rc=$?; set -e
  [ $rc -ne 0 ] || { echo "FAIL: resuming from $bad succeeded"; exit 1; }
  grep -q "cannot resume from '$bad'" "$tmp/bad.err" || { echo "FAIL: unclear error for $bad:"; cat "$tmp/bad.err"; exit 1; }
done
(cd "$tmp/b" && md5sum * | sort) > "$tmp/after.md5"
cmp "$tmp/before.md5" "$tmp/after.md5" || { echo "FAIL: a failed resume changed files in the output directory"; exit 1; }
# a snapshot of another model (other widths) is refused by shape
set +e; "$TRAIN" "${ARGS[@]}" -u 32 -o "$tmp/c" -r "$tmp/b/$SNAP" > /dev/null 2> "$tmp/shape.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "shape" "$tmp/shape.err" || { echo "FAIL: a foreign snapshot was not refused by shape"; cat "$tmp/shape.err"; exit 1; }

# -r DIR: the newest snapshot in DIR (2 epochs: nothing left to train)
"$TRAIN" "${ARGS[@]}" -e 2 -o "$tmp/d" -r "$tmp/b" > "$tmp/d.out"
grep -q "resumed from $tmp/b/$SNAP at iteration $((2 * ITERS_PER_EPOCH))" "$tmp/d.out" || { echo "FAIL: -r DIR did not take $SNAP"; cat "$tmp/d.out"; exit 1; }
mkdir "$tmp/empty"
set +e; "$TRAIN" "${ARGS[@]}" -o "$tmp/e" -r "$tmp/empty" > /dev/null 2> "$tmp/empty.err"; rc=$?; set -e
[ $rc -ne 0 ] && grep -q "no snapshot" "$tmp/empty.err" || { echo "FAIL: -r of a directory without snapshots"; cat "$tmp/empty.err"; exit 1; }

# resume to the end: the killed command again, with --autoload
"$TRAIN" "${ARGS[@]}" -o "$tmp/b" --autoload > "$tmp/b2.out"
grep -q "resumed from $tmp/b/$SNAP" "$tmp/b2.out" || { echo "FAIL: --autoload did not resume from $SNAP"; cat "$tmp/b2.out"; exit 1; }

"$PY" - "$tmp/a" "$tmp/b" <<'PYEOF'
import json, sys
import numpy as np
a, b = sys.argv[1], sys.argv[2]
za, zb = np.load(a + "/model.npz"), np.load(b + "/model.npz")
assert sorted(za.files) == sorted(zb.files), (za.files, zb.files)
for k in za.files:
    assert za[k].dtype == zb[k].dtype and za[k].shape == zb[k].shape, k
    assert za[k].tobytes() == zb[k].tobytes(), f"{k} differs after resume"
la, lb = json.load(open(a + "/log")), json.load(open(b + "/log"))
assert len(la) == len(lb) == 4, (len(la), len(lb))
for x, y in zip(la, lb):
    for k in x:
        if k != "elapsed_time":
            assert x[k] == y[k], (k, x[k], y[k])
print("bit-identical: %d arrays, %d log entries; final validation accuracy %.4f"
      % (len(za.files), len(la), la[-1]["validation/main/accuracy"]))
PYEOF
echo PASS
