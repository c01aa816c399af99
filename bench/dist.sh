#!/usr/bin/env bash
# bench/dist.sh — data-parallel scaling, 1 rank vs 2 ranks (1 thread each),
# kusari (examples/mnist/train_mnist_cnn --communicator mpi under mpirun)
# against PyTorch DistributedDataParallel (gloo; bench/peers/ddp_torch.py),
# the same models (the CNN, and the MLP 784-1000-1000-10), Adam, 100 examples
# per rank and update, Fashion-MNIST's first N training examples (a fraction
# of an epoch; the epoch time is scaled to 60000). Each pair of runs is made
# back to back, and the load average is printed around them: on a shared
# machine compare the ratios, not the seconds.
#
#   bench/dist.sh [BUILD_DIR]     (torch: bench/.venv's, else /usr/bin/python3's)
#
# kusari's 2-rank run is made twice: with the overlap of the gradients'
# allreduce with backward (the default) and without (KUSARI_COMM_OVERLAP=0).
#
# kusari's time is the Trainer's elapsed_time at the end of the pass (the
# first update's broadcast and a 100-example evaluation included); rank 0's
# communication (bytes and seconds per update) from the communicator's
# counters. PyTorch's is the timed loop of the slowest rank.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CNN=$BUILD/examples/mnist/train_mnist_cnn
# the peer's python: bench/.venv's (bench/setup-peers.sh), else Debian's
# python3-torch for /usr/bin/python3 (gloo included)
PY=bench/.venv/bin/python
[ -x "$PY" ] && "$PY" -c "import torch" 2>/dev/null || PY=/usr/bin/python3
DATA=${KUSARI_DATA:-/usr/share/datasets/fashion-mnist}
[ -x "$CNN" ] || { echo "kusari: error: $CNN not built"; echo "  hint: cmake --build $BUILD"; exit 1; }
"$PY" -c "import torch" 2>/dev/null || { echo "kusari: error: no torch in bench/.venv"; echo "  hint: bench/setup-peers.sh"; exit 1; }
# the OpenBLAS kernels kusari runs get (Debian's OpenBLAS does not know every CPU)
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -x "$BUILD/platform/kusari" ]; then
  core=$("$BUILD/platform/kusari" --version | sed -n 's/.*runs get OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')
  [ -z "$core" ] || export OPENBLAS_CORETYPE=$core
fi
export KUSARI_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# as a user on a machine with fewer cores than ranks these are not needed
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

kusari() {  # arch ranks n [overlap 0|1] -> "seconds bytes_per_update ms_per_update"
  local arch=$1 ranks=$2 n=$3 out="$tmp/k_$1_$2_${4:-1}"
  local args=(--arch "$arch" -b 100 -e 1 -f 1000 --train-size "$n" --test-size 100 --data "$DATA")
  [ "$arch" = mlp ] && args+=(-u 1000)
  if [ "$ranks" = 1 ]; then
    "$CNN" "${args[@]}" -o "$out" > "$out.stdout" 2>&1 < /dev/null
    echo "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[-1]["elapsed_time"])' "$out/log") - -"
  else
    KUSARI_COMM_OVERLAP=${4:-1} mpirun -np "$ranks" -x KUSARI_COMM_OVERLAP "$CNN" "${args[@]}" --communicator mpi \
      -o "$out" > "$out.stdout" 2>&1 < /dev/null
    local s
    s=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[-1]["elapsed_time"])' "$out/log")
    echo "$s $(sed -n 's/.*per update: \([0-9]*\) bytes, \([0-9.]*\) ms.*/\1 \2/p' "$out.stdout")"
  fi
}
torch() {  # arch ranks n -> seconds
  "$PY" bench/peers/ddp_torch.py --arch "$1" --world "$2" --n "$3" --data "$DATA" |
    "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["seconds"])'
}

echo "machine: $(nproc --all) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "| model | N | kusari 1 rank | kusari 2 ranks | speedup | efficiency | bytes/update | comm ms/update | 2 ranks, overlap off (comm ms/update) | DDP 1 rank | DDP 2 ranks | DDP speedup | kusari 2r / DDP 2r | load before, after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for spec in "cnn ${N_CNN:-6000}" "mlp ${N_MLP:-12000}"; do
  set -- $spec
  arch=$1 n=$2
  before=$(cut -d' ' -f1 /proc/loadavg)
  read -r k1 _ _ <<< "$(kusari "$arch" 1 "$n")"
  read -r k2 bytes ms <<< "$(kusari "$arch" 2 "$n")"
  read -r k2o _ mso <<< "$(kusari "$arch" 2 "$n" 0)"
  t1=$(torch "$arch" 1 "$n")
  t2=$(torch "$arch" 2 "$n")
  after=$(cut -d' ' -f1 /proc/loadavg)
  "$PY" - "$arch" "$n" "$k1" "$k2" "$bytes" "$ms" "$t1" "$t2" "$before" "$after" "$k2o" "$mso" <<'PYEOF'
import sys
arch, n, k1, k2, b, ms, t1, t2, lb, la, k2o, mso = sys.argv[1:]
k2o = float(k2o)
n = int(n); k1, k2, t1, t2 = map(float, (k1, k2, t1, t2))
ep = lambda s: f"{s:.2f} s ({s * 60000 / n:.0f} s/epoch)"
print(f"| {arch} | {n} | {ep(k1)} | {ep(k2)} | {k1 / k2:.2f}x | {k1 / k2 / 2:.0%} | {int(b) / 1e6:.2f} MB | {ms} "
      f"| {ep(k2o)} ({mso}) | {ep(t1)} | {ep(t2)} | {t1 / t2:.2f}x | {k2 / t2:.2f} | {lb}, {la} |")
PYEOF
done
