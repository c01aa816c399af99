#!/usr/bin/env bash
# bench/slurm.sh — the overhead of the slurm compute target on the tests'
# single-host Slurm cluster (tests/platform/slurm.sh: one node, 2 CPUs,
# sched_interval=1), against the same jobs submitted by hand with sbatch and
# polled with scontrol every 0.5 s (the supervisor's own poll interval).
#
#   bench/slurm.sh [BUILD_DIR] [PAIRS] [MANY]     (as root: it starts munged, slurmctld, slurmd)
#
# Latency, PAIRS pairs (default 10), kusari and by hand interleaved; the entry
# is a shell script that writes its start time, sleeps 1 s, writes its end
# time (date +%s.%N; both paths pass the environment on to the job):
#   submit -> start     from just before `kusari run submit` / `sbatch` to the entry's first line
#   submit -> Running   to when the caller sees it: `run show` says Running / scontrol says RUNNING
#                       (polled every 0.05 s by this script)
#   end -> Completed    from the entry's last line to when `kusari run wait` returns / the
#                       by-hand poll (every 0.5 s) sees COMPLETED
# Throughput: MANY tiny runs (default 200) submitted at once to a target of
# --max-nodes 2 (the node's CPUs), waited for, counted (Completed, and the jobs
# Slurm finished, from its jobcomp log); then MANY `sbatch --wrap` jobs by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PAIRS=${2:-10}
MANY=${3:-200}
export KUSARI_BIN="$PWD/$BUILD/platform/kusari"
[ -x "$KUSARI_BIN" ] || { echo "kusari: error: $KUSARI_BIN not built"; echo "  hint: cmake --build $BUILD"; exit 1; }
set +u
# a scratch workspace and a fresh cluster, both removed at exit
REPO="$PWD"
source "$REPO/tests/platform/lib.sh"
source "$REPO/tests/platform/slurm.sh"
set +e
slurm_start
now() { date +%s.%N; }
sub() { python3 -c "import sys; print('%.3f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$1" "$2"; }
mkdir -p "$T/src" "$T/hand"
cat >"$T/src/tiny.sh" <<'EOF'
date +%s.%N > "$KUSARI_OUTPUT_DIR/start"
sleep "${TINY_SLEEP:-0}"
date +%s.%N > "$KUSARI_OUTPUT_DIR/end"
EOF
cat >"$T/hand/tiny.sh" <<'EOF'
#!/bin/bash
date +%s.%N > "$1.start"
sleep "${TINY_SLEEP:-0}"
date +%s.%N > "$1.end"
EOF
chmod +x "$T/hand/tiny.sh"
"$K" compute create s --type slurm --max-nodes 2 >/dev/null 2>&1 || die "compute create failed"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(sinfo -V); load $(cut -d' ' -f1-3 /proc/loadavg)"
export TINY_SLEEP=1   # the entry runs 1 s, so that Running can be seen
echo "latency, $PAIRS pairs (seconds): who submit->start submit->Running end->Completed"
LAT="$T/lat.txt"
for ((i = 0; i < PAIRS; i++)); do
  # kusari
  t0=$(now)
  id="$("$K" run submit -e bench --source "$T/src" --entry tiny.sh --compute s 2>/dev/null | tail -1)"
  tr=""
  while :; do
    st="$("$K" run show "$id" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
    case "$st" in Running) tr=$(now); break;; Completed|Failed|Canceled) break;; esac
    sleep 0.05
  done
  "$K" run wait "$id" --timeout 120 >/dev/null 2>&1
  t3=$(now)
  "$K" run download "$id" outputs --to "$T/dl-$id" >/dev/null 2>&1
  ts=$(cat "$T/dl-$id/outputs/start"); te=$(cat "$T/dl-$id/outputs/end")
  echo "kusari $(sub "$ts" "$t0") $([ -n "$tr" ] && sub "$tr" "$t0" || echo NA) $(sub "$t3" "$te")" | tee -a "$LAT"
  # by hand
  f="$T/hand/j$i"
  t0=$(now)
  job="$(sbatch --parsable -o /dev/null "$T/hand/tiny.sh" "$f")"
  tr=""
  while :; do
    st="$(scontrol show job -o "$job" | tr ' ' '\n' | sed -n 's/^JobState=//p')"
    case "$st" in RUNNING) [ -z "$tr" ] && tr=$(now); break;; COMPLETED|FAILED|CANCELLED) break;; esac
    sleep 0.05
  done
  [ -n "$tr" ] || tr=$(now)   # started and ended between two looks
  while [ "$(scontrol show job -o "$job" | tr ' ' '\n' | sed -n 's/^JobState=//p')" != COMPLETED ]; do sleep 0.5; done
  t3=$(now)
  echo "hand $(sub "$(cat "$f.start")" "$t0") $(sub "$tr" "$t0") $(sub "$t3" "$(cat "$f.end")")" | tee -a "$LAT"
done
python3 - "$LAT" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for who in ("kusari", "hand"):
    r = [x for x in rows if x[0] == who]
    def med(k):
        v = [float(x[k]) for x in r if x[k] != "NA"]
        return "%.2f" % statistics.median(v) if v else "NA"
    print("median %-6s submit->start %s  submit->Running %s  end->Completed %s" % (who, med(1), med(2), med(3)))
EOF

export TINY_SLEEP=0
echo "throughput: $MANY tiny runs (load $(cut -d' ' -f1-3 /proc/loadavg))"
slurm_wait_idle
before=$(wc -l <"$SLURM_DIR/log/jobcomp.txt" 2>/dev/null || echo 0)
t0=$(now)
ids=()
for ((i = 0; i < MANY; i++)); do ids+=("$("$K" run submit -e many --source "$T/src" --entry tiny.sh --compute s 2>/dev/null | tail -1)"); done
t1=$(now)
for id in "${ids[@]}"; do "$K" run wait "$id" --timeout 1200 >/dev/null 2>&1; done
t2=$(now)
done_n="$("$K" run list --experiment many --status Completed --limit 100000 --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
slurm_wait_idle
after=$(wc -l <"$SLURM_DIR/log/jobcomp.txt")
echo "kusari: $MANY submitted in $(sub "$t1" "$t0") s, all ended after $(sub "$t2" "$t0") s: $done_n Completed, $((after - before)) jobs finished in Slurm's jobcomp log; $(python3 -c "print('%.2f' % ($MANY / (float('$t2') - float('$t0'))))") runs/s"
t0=$(now)
for ((i = 0; i < MANY; i++)); do sbatch --parsable -o /dev/null "$T/hand/tiny.sh" "$T/hand/m$i" >/dev/null; done
t1=$(now)
slurm_wait_idle || while [ -n "$(squeue -h -o %i)" ]; do sleep 0.5; done
t2=$(now)
echo "hand:   $MANY submitted in $(sub "$t1" "$t0") s, all ended after $(sub "$t2" "$t0") s: $(ls "$T"/hand/m*.end | wc -l) ran; $(python3 -c "print('%.2f' % ($MANY / (float('$t2') - float('$t0'))))") jobs/s"
