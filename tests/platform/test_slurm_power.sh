#!/usr/bin/env bash
# compute show of a slurm target shows the nodes' power state (Slurm's power
# saving: how a Slurm cluster scales down idle nodes), on a real single-host
# cluster (tests/platform/slurm.sh) with power saving configured
# (SuspendProgram/ResumeProgram are /bin/true: nothing is really switched off).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
SLURM_EXTRA_CONF=$'SuspendProgram=/bin/true\nResumeProgram=/bin/true\nSuspendTime=3600\nSuspendTimeout=2\nResumeTimeout=10'
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 1 --min-nodes 0 >/dev/null
power() { jget "$(run_ok "$K" compute show s --json)" 'j["slurm"]["view"]["nodes"][0]["power"]'; }
assert_eq "on" "$(power)" "an idle node is on"
scontrol update NodeName=localhost State=POWER_DOWN_FORCE || fail "scontrol update State=POWER_DOWN_FORCE failed"
p="$(power)"
case "$p" in "power down pending"|"powering down"|"powered down") ok "after POWER_DOWN the node is $p";; *) fail "power after POWER_DOWN: '$p'";; esac
for ((i = 0; i < 100; i++)); do p="$(power)"; [ "$p" = "powered down" ] && break; sleep 0.2; done
assert_eq "powered down" "$p" "after SuspendTimeout the node is powered down"
show="$(run_ok "$K" compute show s)"
assert_contains "$show" "powered down" "compute show prints the power state"
assert_eq "idle" "$(jget "$(run_ok "$K" compute show s --json)" 'j["slurm"]["view"]["nodes"][0]["state"]')" "the state without sinfo's power suffix"

finish
