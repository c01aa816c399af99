#!/usr/bin/env bash
# bench/peers/run-peers.sh — runs the Python peers (numpy, torch, chainer) for
# both benchmark configs on 1 and 2 threads, interleaved, and prints one JSON
# line per run (also appended to bench/out/peers.jsonl).
#
#   bench/peers/run-peers.sh [epochs (2)] [repetitions (1)]
#   PEERS="numpy torch" THREADS="1" bench/peers/run-peers.sh 3 2
#
# Threads: OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS are set
# per run; the torch peer also calls torch.set_num_threads and
# set_num_interop_threads with the same count.
#
# OpenBLAS kernel: on this machine (KVM Intel Xeon, family 6 model 207)
# OpenBLAS runs its generic Prescott kernel when OPENBLAS_CORETYPE is unset
# (~16 GFLOP/s), while an empty OPENBLAS_CORETYPE lets it detect the CPU
# (Cooperlake, AVX-512). The peers run with OPENBLAS_CORETYPE set to
# $PEER_OPENBLAS_CORETYPE, default empty (= OpenBLAS's own detection); each
# JSON line records the kernel in use (blas_coretype, from threadpoolctl).
# Only these benchmark commands get it; tests and CI are left as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
py="$bench/.venv/bin/python"
[ -x "$py" ] || { echo "run-peers: no $py; run bench/setup-peers.sh first" >&2; exit 1; }

epochs=${1:-2}
reps=${2:-1}
peers=${PEERS:-numpy torch chainer}
threads_list=${THREADS:-1 2}
configs=${CONFIGS:-"100:128 1000:100"}
mkdir -p "$bench/out"
log="$bench/out/peers.jsonl"

if ! SETUPTOOLS_USE_DISTUTILS=stdlib "$py" -W ignore -c "import chainer" 2>/dev/null; then
  echo "run-peers: chainer not importable, skipping it" >&2
  peers=${peers//chainer/}
fi

for rep in $(seq 1 "$reps"); do
  for cfg in $configs; do
    unit=${cfg%%:*}
    batch=${cfg##*:}
    for threads in $threads_list; do
      for peer in $peers; do
        line=$(env OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
                   MKL_NUM_THREADS="$threads" OPENBLAS_CORETYPE="${PEER_OPENBLAS_CORETYPE-}" \
                   SETUPTOOLS_USE_DISTUTILS=stdlib \
                   "$py" -W ignore "$here/mlp_$peer.py" --unit "$unit" --batch "$batch" \
                   --epochs "$epochs" --threads "$threads" | tail -n 1)
        echo "$line"
        echo "$line" >> "$log"
      done
    done
  done
done
