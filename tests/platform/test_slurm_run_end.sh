#!/usr/bin/env bash
# How runs on a slurm compute target end other than by completing, on a real
# single-host Slurm cluster (tests/platform/slurm.sh):
#  - a run that waits in Slurm's queue is Queued (with its job id) and runs
#    when the node frees;
#  - `run cancel` of a running run: SIGTERM first (the entry's handler runs),
#    Canceled, the job gone from squeue; of a run pending in Slurm: Canceled;
#  - scancel by someone else: Canceled, Slurm's CANCELLED in the error;
#  - the supervisor killed: reconciliation cancels the job, the run Failed.
# Over its time limit: test_slurm_run_timeout.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 4 --time-limit 5 >/dev/null
J="$T/jobs"
mkdir -p "$T/src" "$J"
cat >"$T/src/sleep.sh" <<'EOF'
trap 'echo "got TERM"; exit 143' TERM
echo started
sleep 120 & wait
EOF
status() { jget "$("$K" run show "$1" --json)" 'j["status"]'; }
tag() { jget "$("$K" run show "$1" --json)" "j['tags'].get('$2', '')"; }
wait_for() {  # RUN STATUS: up to 30 s
  local i
  for ((i = 0; i < 150; i++)); do [ "$(status "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
wait_log() {  # RUN TEXT: up to 20 s
  local i
  for ((i = 0; i < 100; i++)); do grep -q "$2" "$WS/runs/$1/logs/std_log.txt" 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
in_squeue() { squeue -h -j "$1" -t PD,CF,R,CG,S -o %i 2>/dev/null; }
state_of() { scontrol show job -o "$1" | tr ' ' '\n' | sed -n 's/^JobState=//p'; }

# ---- two runs fill the node's 2 CPUs; a third waits in Slurm's queue ----
a="$(submit -e e --source "$T/src" --entry sleep.sh --compute s)"
b="$(submit -e e --source "$T/src" --entry sleep.sh --compute s)"
wait_for "$a" Running && wait_for "$b" Running && ok "two runs are Running" || fail "not Running: $(status "$a") $(status "$b")"
c="$(submit -e e --source "$T/src" --entry sleep.sh --compute s)"
for ((i = 0; i < 100; i++)); do [ -n "$(tag "$c" kusari.slurm_job)" ] && break; sleep 0.2; done
jc="$(tag "$c" kusari.slurm_job)"
sleep 1
assert_eq "Queued PENDING" "$(status "$c") $(state_of "$jc")" "a run whose job is pending in Slurm is Queued"

# ---- cancel of the run pending in Slurm ----
run_ok "$K" run cancel "$c" --grace 5 >/dev/null
"$K" run wait "$c" --timeout 30 >/dev/null 2>&1
assert_eq Canceled "$(status "$c")" "cancel of a run pending in Slurm: Canceled"
assert_eq "" "$(in_squeue "$jc")" "its job is gone from squeue"

# ---- cancel of a running run: SIGTERM first ----
ja="$(tag "$a" kusari.slurm_job)"
wait_log "$a" started || fail "run $a did not start"
run_ok "$K" run cancel "$a" --grace 20 >/dev/null
"$K" run wait "$a" --timeout 30 >/dev/null 2>&1
assert_eq Canceled "$(status "$a")" "run cancel: Canceled"
assert_contains "$("$K" run logs "$a")" "got TERM" "the entry got SIGTERM first, its handler ran"
assert_eq "" "$(in_squeue "$ja")" "its job is gone from squeue"

# ---- scancel by someone else ----
jb="$(tag "$b" kusari.slurm_job)"
scancel "$jb"
"$K" run wait "$b" --timeout 30 >/dev/null 2>&1
j="$("$K" run show "$b" --json)"
assert_eq Canceled "$(jget "$j" 'j["status"]')" "a run whose job someone scancels: Canceled"
assert_contains "$(jget "$j" 'j["error"]')" "Slurm job $jb CANCELLED" "with Slurm's CANCELLED in the error"

# ---- the supervisor killed: reconciliation cancels the job ----
e="$(submit -e e --source "$T/src" --entry sleep.sh --compute s)"
wait_for "$e" Running || fail "run $e not Running"
je="$(tag "$e" kusari.slurm_job)"
kill -9 "$(sql "SELECT supervisor_pid FROM runs WHERE id='$e'")"
sleep 0.5
run_ok "$K" run list >/dev/null   # reconciles
j="$("$K" run show "$e" --json)"
assert_eq Failed "$(jget "$j" 'j["status"]')" "the run of a killed supervisor is reconciled: Failed"
assert_contains "$(jget "$j" 'j["error"]')" "supervisor" "the error says its supervisor died"
assert_eq "" "$(in_squeue "$je")" "its Slurm job was canceled"
assert_contains "$("$K" run logs "$e")" "got TERM" "the job got SIGTERM (then SIGKILL)"

finish
