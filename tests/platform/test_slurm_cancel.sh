#!/usr/bin/env bash
# The slurm target's job operations (platform/compute_slurm.c) against a real
# single-host Slurm cluster (tests/platform/slurm.sh), one at a time through
# `kusari compute slurm-probe`: cancel with a grace period (SIGTERM first,
# SIGKILL after) of running and pending jobs, jobs canceled with scancel by
# someone else, jobs Slurm does not know.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 2 >/dev/null
J="$T/jobs"
mkdir -p "$J"

# submit NAME [OPTIONS...] -- CMD... : a job on target s in $J; echoes its id
submit_job() {
  local name="$1"; shift
  "$K" compute slurm-probe submit "$name" --compute s --workdir "$J" --output "$J/$name.out" --script "$J/$name.sh" "$@"
}
poll() { "$K" compute slurm-probe poll "$@"; }
# wait_status JOBID STATUS... : polls (up to 30 s) until the job's status is one of them; echoes the poll
wait_status() {
  local id="$1" p s i; shift
  for ((i = 0; i < 150; i++)); do
    p="$(poll "$id")"
    s="$(jget "$p" 'j["status"]')"
    for want in "$@"; do [ "$s" = "$want" ] && { echo "$p"; return 0; }; done
    sleep 0.2
  done
  echo "$p"
  return 1
}
in_squeue() { squeue -h -j "$1" -t PD,CF,R,CG,S -o %i 2>/dev/null; }

# two jobs fill the node: one handles SIGTERM, one ignores it
t="$(submit_job term -- bash -c 'trap "echo got TERM; exit 143" TERM; echo started; while :; do sleep 0.1; done')"
k="$(submit_job stubborn -- bash -c 'trap "echo ignoring TERM" TERM; echo started; while :; do sleep 0.1; done')"
wait_status "$t" Running >/dev/null && wait_status "$k" Running >/dev/null && ok "two jobs run on the 2 CPUs" || fail "term/stubborn not running"
for ((i = 0; i < 50; i++)); do grep -q started "$J/term.out" "$J/stubborn.out" 2>/dev/null && [ "$(cat "$J/term.out" "$J/stubborn.out" | grep -c started)" = 2 ] && break; sleep 0.1; done

# ---- cancel of a pending job ----
q="$(submit_job queued -- true)"
p="$(wait_status "$q" Queued)" && ok "a third job is Queued" || fail "not Queued: $p"
p="$(run_ok "$K" compute slurm-probe cancel "$q" --grace 5)"
assert_eq "CANCELLED|Canceled" "$(jget "$p" 'j["state"]+"|"+j["status"]')" "cancel of a pending job: CANCELLED, Canceled"
assert_eq "" "$(in_squeue "$q")" "the canceled pending job is gone from squeue"

# ---- cancel with grace: SIGTERM first, the job's handler runs ----
p="$(run_ok "$K" compute slurm-probe cancel "$t" --grace 20)"
assert_eq "Canceled" "$(jget "$p" 'j["status"]')" "cancel: Canceled"
assert_contains "$(cat "$J/term.out")" "got TERM" "the job got SIGTERM first and its handler ran"
assert_contains "$(jget "$p" 'j["error"]')" "canceled; Slurm job $t ended FAILED: exit code 143" "the error says Slurm's own end of the job"
assert_eq "" "$(in_squeue "$t")" "and it is gone from squeue"

# ---- a job that ignores SIGTERM: SIGKILL after the grace ----
p="$(run_ok "$K" compute slurm-probe cancel "$k" --grace 1)"
assert_eq "Canceled" "$(jget "$p" 'j["status"]')" "a job ignoring SIGTERM is Canceled (SIGKILL after the grace)"
assert_contains "$(cat "$J/stubborn.out")" "ignoring TERM" "it got SIGTERM first"
assert_eq "" "$(in_squeue "$k")" "and is gone from squeue"

# ---- canceled by someone else (scancel): Canceled, CANCELLED in the error ----
x="$(submit_job other -- sleep 120)"
wait_status "$x" Running >/dev/null || fail "job $x not running"
scancel "$x"
p="$(wait_status "$x" Canceled)" && ok "a job canceled with scancel is Canceled" || fail "not Canceled: $p"
assert_contains "$(jget "$p" 'j["error"]')" "Slurm job $x CANCELLED" "the error says CANCELLED"
assert_contains "$(jget "$p" 'j["error"]')" "by whom Slurm does not say without accounting" "and that, without accounting, Slurm does not say by whom"
p="$(run_ok "$K" compute slurm-probe cancel "$x")"
assert_eq "Canceled" "$(jget "$p" 'j["status"]')" "canceling an ended job changes nothing"

# ---- a job Slurm does not know ----
p="$(run_ok "$K" compute slurm-probe poll 999999)"
assert_eq "False|Failed" "$(jget "$p" 'str(j["found"])+"|"+j["status"]')" "an unknown job: not found, Failed"
assert_contains "$(jget "$p" 'j["error"]')" "unknown to the controller" "with a reason"
expect_fail "not a Slurm job id" "$K" compute slurm-probe poll 12abc

finish
