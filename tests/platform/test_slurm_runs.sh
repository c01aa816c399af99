#!/usr/bin/env bash
# Tracked runs on a slurm compute target (platform/compute_slurm_target.c)
# against a real single-host Slurm cluster (tests/platform/slurm.sh):
#  - a run of the tests' log entry completes as Slurm job: its metrics, its
#    log, its param as KUSARI_PARAM_*, `run show` gives the job id (tag
#    kusari.slurm_job), the batch script is among the run's files;
#  - a failing entry ends Failed with Slurm's state and the exit code;
#  - a 2-task distributed run of a trivial entry completes under srun, with
#    each rank's log and exit;
#  - max-nodes holds runs back: on a 1-node target the second run waits
#    Queued (no Slurm job) while the first runs, though the cluster has room.
# Cancel, TIMEOUT and reconciliation: test_slurm_run_end.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 2 >/dev/null
run_ok "$K" compute create one --type slurm --max-nodes 1 >/dev/null
mkdir -p "$T/src" && cp "$ENTRY_BIN" "$T/src/entry"
cat >"$T/src/env.sh" <<'EOF'
echo "param lr=$KUSARI_PARAM_lr run=$KUSARI_RUN_ID channel=$KUSARI_METRICS_CHANNEL job=$SLURM_JOB_ID"
EOF
cat >"$T/src/fail.sh" <<'EOF'
echo "failing on purpose" >&2
exit 4
EOF
cat >"$T/src/rank.sh" <<'EOF'
echo "task $SLURM_PROCID of $SLURM_NTASKS"
EOF
cat >"$T/src/sleep.sh" <<'EOF'
echo started
sleep 120 & wait
EOF
status() { jget "$("$K" run show "$1" --json)" 'j["status"]'; }
tag() { jget "$("$K" run show "$1" --json)" "j['tags'].get('$2', '')"; }
# wait_for RUN STATUS: up to 30 s
wait_for() {
  local i
  for ((i = 0; i < 150; i++)); do [ "$(status "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
in_squeue() { squeue -h -j "$1" -t PD,CF,R,CG,S -o %i 2>/dev/null; }

assert_contains "$("$K" compute show s)" "runs on:     Slurm partition debug: each run one job (sbatch), up to 2 nodes at once" \
  "compute show has the slurm type's describe line"

# ---- a tracked run: metrics, logs, the job id, the batch script ----
id="$(submit -e e --source "$T/src" --entry entry --compute s -- --n 5)"
out="$("$K" run wait "$id" --timeout 60 2>&1)"
assert_eq Completed "$(status "$id")" "the run on the slurm target completes"
[ "$(status "$id")" = Completed ] || { echo "$out"; cat "$WS/runs/$id/supervisor.log" "$WS/runs/$id/logs/std_log.txt"; }
j="$("$K" run show "$id" --json)"
assert_eq "4 0.5 c" "$(jget "$j" '"%s %s %s" % (j["metrics"]["loss"], j["metrics"]["Accuracy"], j["tags"]["entry"])')" \
  "its metrics and tag arrived through the channel"
job="$(tag "$id" kusari.slurm_job)"
case "$job" in [0-9]*) ok "run show gives the Slurm job id ($job)";; *) fail "no Slurm job id in run show: $j";; esac
assert_contains "$("$K" run show "$id")" "kusari.slurm_job=$job" "the text form too"
assert_eq "COMPLETED" "$(scontrol show job -o "$job" | tr ' ' '\n' | sed -n 's/^JobState=//p')" "Slurm ran job $job to COMPLETED"
assert_eq "kusari-$id" "$(scontrol show job -o "$job" | tr ' ' '\n' | sed -n 's/^JobName=//p')" "the job is named after the run"
files="$("$K" run files "$id")"
assert_contains "$files" "logs/slurm_job.sh" "the batch script is among the run's files"
assert_contains "$files" "logs/std_log.txt" "and the log"
assert_contains "$("$K" run logs "$id")" "logged 5 values" "the job's output is the run's log"
run_ok "$K" run download "$id" logs/slurm_job.sh --to "$T/dl" >/dev/null
script="$(cat "$T/dl/logs/slurm_job.sh")"
assert_contains "$script" "#SBATCH --job-name=\"kusari-$id\"" "the kept script is the job's"
assert_contains "$script" "export KUSARI_RUN_ID='$id'" "it exports the run protocol's variables"

# ---- the entry's environment: params, the run protocol, inside the job ----
id="$(submit -e e --source "$T/src" --entry env.sh --compute s --param lr=0.25)"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
assert_eq Completed "$(status "$id")" "a shell entry completes"
assert_contains "$("$K" run logs "$id")" "param lr=0.25 run=$id channel=$WS/runs/$id/channel job=$(tag "$id" kusari.slurm_job)" \
  "the job has KUSARI_PARAM_*, the run protocol's variables and the channel"

# ---- a failing entry: Failed with Slurm's state and the exit code ----
id="$(submit -e e --source "$T/src" --entry fail.sh --compute s)"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq "Failed 4" "$(jget "$j" 'j["status"] + " " + str(j["exit_code"])')" "a failing entry: Failed, exit code 4"
job="$(tag "$id" kusari.slurm_job)"
assert_eq "Slurm job $job FAILED: exit code 4 (reason: NonZeroExitCode); see logs/std_log.txt" "$(jget "$j" 'j["error"]')" \
  "the error has Slurm's state, the exit code and reason"
assert_contains "$("$K" run logs "$id")" "failing on purpose" "its stderr is in the log"

# ---- a distributed run: 2 tasks under srun ----
id="$(submit -e e --source "$T/src" --entry rank.sh --compute s --nodes 1 --processes-per-node 2)"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq Completed "$(jget "$j" 'j["status"]')" "a 2-task distributed run completes"
[ "$(jget "$j" 'j["status"]')" = Completed ] || { cat "$WS/runs/$id/supervisor.log"; "$K" run logs "$id"; }
assert_eq "exit 0|exit 0" "$(jget "$j" '"|".join(r["status"] for r in j["distributed"]["rank_status"])')" "both ranks exited 0"
assert_eq "task 0 of 2|task 1 of 2" "$("$K" run logs "$id" | grep '^task' | sort | paste -sd'|')" "srun ran both tasks"
assert_contains "$("$K" run logs "$id" --rank 1)" "task 1 of 2" "rank 1's own log"
assert_contains "$("$K" run files "$id")" "logs/slurm_job.sh" "its batch script is kept"

# ---- max-nodes holds runs back (the cluster itself has room for two) ----
a="$(submit -e e --source "$T/src" --entry sleep.sh --compute one)"
b="$(submit -e e --source "$T/src" --entry sleep.sh --compute one)"
wait_for "$a" Running && ok "the first run on the 1-node target runs" || fail "first run not Running: $(status "$a")"
sleep 2
assert_eq Queued "$(status "$b")" "the second waits Queued (max-nodes 1)"
assert_eq "" "$(tag "$b" kusari.slurm_job)" "and has no Slurm job yet"
assert_eq 1 "$(squeue -h -o %i | wc -l)" "Slurm has one job"
run_ok "$K" run cancel "$a" --grace 1 >/dev/null
wait_for "$b" Running && ok "when the first ends, the second runs" || fail "second run not Running: $(status "$b")"
run_ok "$K" run cancel "$b" --grace 1 >/dev/null
"$K" run wait "$b" --timeout 30 >/dev/null 2>&1
assert_eq Canceled "$(status "$b")" "and is canceled"

finish
