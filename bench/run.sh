#!/usr/bin/env bash
# bench/run.sh — the MLP benchmark: kusari against numpy (Chainer's CPU
# computation), PyTorch and Chainer 7.8.1, same machine, same run,
# interleaved repetitions; prints a table of median seconds per epoch, ratios
# to kusari, peak RSS and GEMM efficiency (bench/report.py).
#
#   bench/setup-peers.sh           # once: bench/.venv with numpy, torch, chainer
#   bench/run.sh [epochs (3)] [repetitions (3)]
#   PEERS="numpy" THREADS="1" CONFIGS="100:128" bench/run.sh 3 5
#   DP=1 bench/run.sh              # also kusari's data-parallel step
#                                  # (--replicas = threads) on 2+ threads
#
# OpenBLAS kernels: Debian's OpenBLAS 0.3.21 does not know this CPU and would
# run generic SSE3 kernels; every run here gets the kernel set OpenBLAS's own
# feature detection picks (Cooperlake on this machine; see
# docs/ARCHITECTURE.md), so all contestants use the same AVX-512 kernels.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
epochs=${1:-3}
reps=${2:-3}
peers=${PEERS:-numpy torch chainer}
threads_list=${THREADS:-1 2}
configs=${CONFIGS:-"100:128 1000:100"}
py="$here/.venv/bin/python"
build=${BUILD:-$root/build}

cmake --build "$build" --target bench_mlp -j"$(nproc)" >/dev/null
kusari_bin="$build/bench/bench_mlp"
if [ ! -x "$py" ]; then
  echo "bench: no $py (run bench/setup-peers.sh); measuring kusari alone" >&2
  peers=""
elif ! SETUPTOOLS_USE_DISTUTILS=stdlib "$py" -W ignore -c "import chainer" 2>/dev/null; then
  echo "bench: chainer does not import in bench/.venv; skipping it" >&2
  peers=${peers//chainer/}
fi
mkdir -p "$here/out"
log="$here/out/mlp-$(date +%Y%m%d-%H%M%S).jsonl"
coretype=$("$kusari_bin" --suggest-coretype 2>/dev/null || true)

for rep in $(seq 1 "$reps"); do
  for cfg in $configs; do
    unit=${cfg%%:*}; batch=${cfg##*:}
    for threads in $threads_list; do
      contestants="kusari"
      [ "${DP:-0}" = 1 ] && [ "$threads" -gt 1 ] && contestants="kusari kusari-dp"
      for who in $contestants $peers; do
        if [ "$who" = kusari ] || [ "$who" = kusari-dp ]; then
          replicas=1
          [ "$who" = kusari-dp ] && replicas=$threads
          line=$(env OPENBLAS_CORETYPE="${coretype}" KUSARI_NUM_THREADS="$threads" \
                 "$kusari_bin" --unit "$unit" --batch "$batch" --epochs "$epochs" --threads "$threads" \
                 --replicas "$replicas")
        else
          line=$(env OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
                     MKL_NUM_THREADS="$threads" OPENBLAS_CORETYPE="${coretype}" \
                     SETUPTOOLS_USE_DISTUTILS=stdlib \
                 "$py" -W ignore "$here/peers/mlp_$who.py" --unit "$unit" --batch "$batch" \
                     --epochs "$epochs" --threads "$threads" | tail -n 1)
        fi
        # the machine's 1-minute load average when the run ended, in the record
        load1=$(cut -d' ' -f1 /proc/loadavg)
        line=$(printf '%s' "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["load1"]=float(sys.argv[1]); print(json.dumps(d))' "$load1")
        echo "$line" >> "$log"
        echo "rep $rep  U=$unit b=$batch  threads=$threads  $who: $(echo "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["median_epoch_s"], "s/epoch")')" >&2
      done
    done
  done
done
python3 "$here/report.py" "$log"
