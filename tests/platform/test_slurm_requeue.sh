#!/usr/bin/env bash
# A requeued or preempted Slurm job resumes as the same run, on a real
# single-host Slurm cluster (tests/platform/slurm.sh) with preemption set up
# (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE; partition "hi"
# has the higher PriorityTier than "lo"): examples/mnist/train_mnist_cnn,
# compiled against the built libkusari, trains with --autoload and a snapshot
# every epoch.
#  - `scontrol requeue JOB` after its first snapshot: the run goes back to
#    Queued, runs again (Slurm's Restarts=1), its working directory kept (not
#    prepared again), the trainer resumes from its last snapshot (the first
#    one, unless the job took an epoch to stop): the
#    epoch counter goes on (the LogReport has epochs 1..N once each), the
#    run's metrics have N steps each, no duplicates; model.npz is kept;
#  - a job of partition "hi" that needs the whole node preempts the run's job
#    on "lo" (requeued): the run is Queued while "hi" runs, then resumes and
#    completes the same way.
# Slurm holds a requeued job for a while (Reason=BeginTime); the test moves
# its start time to now (scontrol update StartTime=now), as an administrator would.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA=/usr/share/datasets/fashion-mnist
[ -n "${KUSARI_STATIC_LIB:-}" ] && command -v cc >/dev/null || { echo "skip: no compiler or static library"; exit 77; }
[ -d "$DATA" ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
SLURM_EXTRA_CONF="PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
PartitionName=lo Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=hi Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2"
slurm_start

export KUSARI_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LIBS="$(pkg-config --libs openblas libzip zlib cairo) $(pkg-config --libs ompi-c 2>/dev/null) -lm -pthread"
extra=()
if [ -n "${KUSARI_TEST_CFLAGS:-}" ]; then  # fontconfig's process-wide caches (PlotReport): not kusari's leak
  printf 'const char *__lsan_default_suppressions(void);\nconst char *__lsan_default_suppressions(void) { return "leak:libfontconfig\\n"; }\n' > "$T/lsan.c"
  extra=("$T/lsan.c")
fi
mkdir -p "$T/src"
cc ${KUSARI_TEST_CFLAGS:-} -O1 -o "$T/src/train_mnist_cnn" "$REPO/examples/mnist/train_mnist_cnn.c" "${extra[@]}" \
  -I"$KUSARI_INCLUDE_DIR" "$KUSARI_STATIC_LIB" $LIBS || die "cannot compile examples/mnist/train_mnist_cnn.c"
run_ok "$K" compute create s --type slurm --partition lo --max-nodes 1 >/dev/null
EPOCHS=4
# 30 iterations an epoch (about 1.4 s here); a sanitizer build trains about
# 5x slower: 10 there, so that an epoch takes about as long
IT=30
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && IT=10
ARGS=(--epochs $EPOCHS --batchsize 100 --train-size $((IT * 100)) --test-size 100 --data "$DATA" --frequency 1 --autoload)
SNAP1=snapshot_iter_$IT

status() { jget "$("$K" run show "$1" --json)" 'j["status"]'; }
tag() { jget "$("$K" run show "$1" --json)" "j['tags'].get('$2', '')"; }
jfield() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
wait_for() {  # RUN STATUS SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do [ "$(status "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
wait_file() {  # FILE SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}
# release JOB: a requeued job waits for its begin time; now
release() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ "$(jfield "$1" Reason)" = BeginTime ] && { scontrol update JobId="$1" StartTime=now; return 0; }
    [ "$(jfield "$1" JobState)" = RUNNING ] && return 0
    sleep 0.1
  done
}
# check_resumed RUN WHAT: one run, resumed from its first snapshot, metrics without duplicates
check_resumed() {
  local id="$1" what="$2" logs j
  "$K" run wait "$id" --timeout 60 >/dev/null 2>&1
  assert_eq Completed "$(status "$id")" "$what: the run completes"
  logs="$("$K" run logs "$id")"
  assert_contains "$logs" "the job was requeued: keeping its working directory" "$what: the working directory was kept"
  # from the first snapshot, or a later one when the machine was slow to stop the job
  if echo "$logs" | grep -qE "^resumed from $WS/runs/$id/wd/outputs/snapshot_iter_($IT|$((2 * IT))|$((3 * IT))) at iteration ($IT|$((2 * IT))|$((3 * IT))) \(epoch [123]\)$"; then
    ok "$what: the trainer resumed from its snapshot ($(echo "$logs" | grep -o 'snapshot_iter_[0-9]* at' | head -1))"
  else
    fail "$what: the trainer did not resume from a snapshot: $(echo "$logs" | grep -E 'resumed|epoch' | head -5)"
  fi
  assert_eq 1 "$(jfield "$(tag "$id" kusari.slurm_job)" Restarts)" "$what: Slurm ran the job twice (Restarts=1)"
  run_ok "$K" run download "$id" outputs/log --to "$T/dl-$id" >/dev/null
  assert_eq "[1, 2, 3, 4]" "$(python3 -c 'import json,sys; print([e["epoch"] for e in json.load(open(sys.argv[1]))])' "$T/dl-$id/outputs/log")" \
    "$what: the epoch counter went on (each epoch once in the LogReport)"
  j="$("$K" run metrics "$id" --json)"
  assert_eq "0 1 2 3|0 1 2 3" "$(jget "$j" '" ".join(str(p["step"]) for p in j["main/loss"]) + "|" + " ".join(str(p["step"]) for p in j["validation/main/accuracy"])')" \
    "$what: one value per epoch and metric, steps 0..3, no duplicates"
  assert_contains "$("$K" run files "$id")" "outputs/model.npz" "$what: model.npz is kept"
  assert_eq 1 "$("$K" run list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" "$what: still one run"
}

# ---- scontrol requeue after the first snapshot ----
id="$(submit -e e --source "$T/src" --entry train_mnist_cnn --compute s -- "${ARGS[@]}")"
wait_file "$WS/runs/$id/wd/outputs/$SNAP1" 40 || die "no first snapshot: $(status "$id"); $("$K" run logs "$id" | tail -5)"
job="$(tag "$id" kusari.slurm_job)"
scontrol requeue "$job" || die "scontrol requeue $job failed"
wait_for "$id" Queued 15 && ok "requeued: the run is Queued again" || fail "not Queued after the requeue: $(status "$id")"
release "$job"
wait_for "$id" Running 30 && ok "then Running again" || fail "not Running after the requeue: $(status "$id")"
check_resumed "$id" "requeue"
"$K" run delete "$id" --yes >/dev/null 2>&1 || run_ok "$K" run delete "$id" >/dev/null

# ---- preemption by a job of a higher-tier partition ----
id="$(submit -e e --source "$T/src" --entry train_mnist_cnn --compute s -- "${ARGS[@]}")"
wait_file "$WS/runs/$id/wd/outputs/$SNAP1" 40 || die "no first snapshot: $(status "$id"); $("$K" run logs "$id" | tail -5)"
job="$(tag "$id" kusari.slurm_job)"
hi="$(sbatch --parsable -p hi -c 2 -o /dev/null --wrap 'sleep 2')"
wait_for "$id" Queued 15 && ok "preempted: the run is Queued" || fail "not Queued when preempted: $(status "$id")"
for ((i = 0; i < 100; i++)); do [ "$(jfield "$hi" JobState)" = COMPLETED ] && break; sleep 0.1; done
release "$job"
check_resumed "$id" "preemption"
assert_contains "$(cat "$WS/runs/$id/supervisor.log")" "Queued (waiting in the scheduler's queue)" "the supervisor's log has the run waiting again"

finish
