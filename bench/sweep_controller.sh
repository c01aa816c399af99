#!/usr/bin/env bash
# bench/sweep_controller.sh — what a sweep's controller costs per child run.
# For each count N, a fresh workspace runs a sweep of N trivial children (the
# entry is 'exit 0'; random sampling over a uniform space; no policy, or
# POLICY=bandit with the entry logging one value of the primary metric), at
# most CONC at once on a local target of CONC nodes, and prints the wall time
# of the sweep and the controller's own CPU time (it writes it to its
# controller.log when it ends), total and per child.
#
#   bench/sweep_controller.sh [N ...]          # default: 500 2000
#   CONC=16 POLICY=bandit bench/sweep_controller.sh 500 2000 10000
#   KUSARI=/path/to/kusari bench/sweep_controller.sh 500   # another build
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
K=${KUSARI:-$root/build/platform/kusari}
conc=${CONC:-8}
policy=${POLICY:-none}
[ $# -gt 0 ] || set -- 500 2000
[ -x "$K" ] || { echo "bench: no kusari program at $K (build it, or set KUSARI)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/kusari-bench-sweep-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
if [ "$policy" = none ]; then
  printf 'exit 0\n' > "$tmp/src/entry.sh"
  pol='"policy": {"type": "none"}'
else
  printf 'x=0; while [ $# -gt 0 ]; do [ "$1" = --x ] && x=$2; shift 2; done\nkusari log metric score "$x"\n' > "$tmp/src/entry.sh"
  pol='"policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.5}'
fi
printf '%8s %6s %-7s %10s %12s %14s %12s\n' children conc policy wall_s ctl_cpu_s ctl_cpu_ms/child ctl_peak_MiB
for n in "$@"; do
  ws="$tmp/ws-$n"
  KUSARI_WORKSPACE= "$K" workspace create "$ws" >/dev/null
  export KUSARI_WORKSPACE="$ws"
  "$K" compute create cpu --type local --max-nodes "$conc" >/dev/null
  cat > "$tmp/sweep.json" <<JSON
{"experiment": "bench", "run": {"source": "$tmp/src", "entry": "entry.sh", "compute": "cpu"},
 "sampling": {"type": "random", "seed": 1, "space": {"--x": {"uniform": [0, 1]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}, $pol,
 "max_total_runs": $n, "max_concurrent_runs": $conc}
JSON
  t0=$(date +%s.%N)
  id=$("$K" sweep submit "$tmp/sweep.json" 2>/dev/null | tail -1)
  "$K" sweep wait "$id" --quiet >/dev/null
  t1=$(date +%s.%N)
  line=$(grep "controller .* done:" "$ws/runs/$id/controller.log" | tail -1)
  cpu=$(sed -E 's/.*done: ([0-9.]+) s CPU.*/\1/' <<<"$line")
  peak=$(sed -E 's/.* ([0-9]+) KiB peak memory.*/\1/' <<<"$line")
  ended=$("$K" sweep show "$id" --json | python3 -c 'import json,sys; print(sum(c["status"]=="Completed" for c in json.load(sys.stdin)["children"]))')
  [ "$ended" = "$n" ] || echo "bench: only $ended of $n children Completed" >&2
  awk -v n="$n" -v c="$conc" -v p="$policy" -v w="$(echo "$t1 - $t0" | bc)" -v cpu="$cpu" -v peak="$peak" \
    'BEGIN { printf "%8d %6d %-7s %10.1f %12.2f %14.2f %12.1f\n", n, c, p, w, cpu, 1000 * cpu / n, peak / 1024 }'
  rm -rf "$ws"
done
