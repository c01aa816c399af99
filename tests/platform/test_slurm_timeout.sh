#!/usr/bin/env bash
# A job over its time limit ends Failed with Slurm's TIMEOUT in the error
# text (platform/compute_slurm.c's mapping), on a real single-host Slurm
# cluster (tests/platform/slurm.sh). Slurm's time limits are whole minutes
# and slurmctld checks them every 30 s; so that the test need not wait a
# minute, it moves the running job's end time to now (scontrol update
# EndTime=now, as an administrator can) and waits for slurmctld's next check.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --time-limit 5 >/dev/null
J="$T/jobs"
mkdir -p "$J"
id="$("$K" compute slurm-probe submit long --compute s --workdir "$J" --output "$J/long.out" --script "$J/long.sh" -- sleep 300)"
assert_contains "$(cat "$J/long.sh")" "#SBATCH --time=5" "the target's time limit is in the batch script"
assert_eq "00:05:00" "$(scontrol show job -o "$id" | tr ' ' '\n' | sed -n 's/^TimeLimit=//p')" "Slurm has the job's time limit"
for ((i = 0; i < 100; i++)); do
  [ "$(jget "$("$K" compute slurm-probe poll "$id")" 'j["status"]')" = Running ] && break; sleep 0.2
done
slurm_end_now "$id" || fail "scontrol update EndTime=now failed"
for ((i = 0; i < 60; i++)); do
  p="$("$K" compute slurm-probe poll "$id")"
  [ "$(jget "$p" 'j["status"]')" = Running ] || break
  sleep 1
done
assert_eq "TIMEOUT|Failed" "$(jget "$p" 'j["state"]+"|"+j["status"]')" "over its time limit: TIMEOUT, Failed"
assert_eq "Slurm job $id TIMEOUT: it reached its time limit (reason: TimeLimit)" "$(jget "$p" 'j["error"]')" "the error text says TIMEOUT"

finish
