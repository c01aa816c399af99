#!/usr/bin/env bash
# A run on a slurm compute target over its time limit ends Failed with
# Slurm's TIMEOUT in the run's error, on a real single-host Slurm cluster
# (tests/platform/slurm.sh). Slurm's limits are whole minutes, checked every
# 30 s: the running job's end time is moved to now (scontrol update
# EndTime=now, as an administrator can), as in test_slurm_timeout.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --time-limit 5 >/dev/null
mkdir -p "$T/src"
printf 'echo started\nsleep 300 & wait\n' >"$T/src/sleep.sh"
status() { jget "$("$K" run show "$1" --json)" 'j["status"]'; }
tag() { jget "$("$K" run show "$1" --json)" "j['tags'].get('$2', '')"; }
wait_for() {  # RUN STATUS: up to 30 s
  local i
  for ((i = 0; i < 150; i++)); do [ "$(status "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}

# ---- over its time limit: TIMEOUT ----
d="$(submit -e e --source "$T/src" --entry sleep.sh --compute s)"
wait_for "$d" Running || fail "run $d not Running"
jd="$(tag "$d" kusari.slurm_job)"
slurm_end_now "$jd" || fail "scontrol update EndTime=now failed"
"$K" run wait "$d" --timeout 50 >/dev/null 2>&1
j="$("$K" run show "$d" --json)"
assert_eq Failed "$(jget "$j" 'j["status"]')" "a run over its time limit: Failed"
assert_contains "$(jget "$j" 'j["error"]')" "Slurm job $jd TIMEOUT: it reached its time limit" "with TIMEOUT in the error"

assert_contains "$("$K" run logs "$d")" "started" "its log is kept"

finish
