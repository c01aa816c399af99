#!/usr/bin/env bash
# The slurm target's job operations (platform/compute_slurm.c) against a real
# single-host Slurm cluster (tests/platform/slurm.sh), one at a time through
# `kusari compute slurm-probe`: the generated batch script, sbatch, the
# mapping of Slurm's states to run statuses (Queued, Running, Completed,
# Failed with the exit code), the shared-filesystem check, a 2-task job under
# srun. Cancel: test_slurm_cancel.sh; TIMEOUT: test_slurm_timeout.sh.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 2 >/dev/null
run_ok "$K" compute create full --type slurm --partition batch --gpus-per-node 2 --time-limit 0:30 \
  --account proj --qos high >/dev/null
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

# ---- the batch script ----
script="$(run_ok "$K" compute slurm-probe script r1 --compute full --workdir "$J" --output "$J/o.txt" --error "$J/e.txt" \
  --nodes 2 --ntasks-per-node 3 --env "A=it's \$HOME" --env B=2 -- python3 train.py --lr 0.1)"
for line in '#SBATCH --job-name="kusari-r1"' "#SBATCH --comment=\"kusari:$WS\"" "#SBATCH --chdir=\"$J\"" \
            "#SBATCH --output=\"$J/o.txt\"" "#SBATCH --error=\"$J/e.txt\"" '#SBATCH --nodes=2' '#SBATCH --ntasks-per-node=3' \
            '#SBATCH --partition="batch"' '#SBATCH --time=0:30' '#SBATCH --account="proj"' '#SBATCH --qos="high"' \
            '#SBATCH --gpus-per-node=2' "export A='it'\\''s \$HOME'" "export B='2'" \
            "exec srun --kill-on-bad-exit=1 --nodes=2 --ntasks-per-node=3 'python3' 'train.py' '--lr' '0.1'"; do
  case "$script" in *"$line"*) ok "script has: $line";; *) fail "script lacks: $line"$'\n'"$script";; esac
done
expect_fail "not an environment variable assignment" "$K" compute slurm-probe script r1 --compute s --workdir "$J" \
  --output "$J/o" --env "1A=x" -- true
expect_fail "cannot go on an #SBATCH line" "$K" compute slurm-probe script r1 --compute s --workdir "$J/a\"b" --output "$J/o" -- true
expect_fail "must be absolute paths" "$K" compute slurm-probe script r1 --compute s --workdir jobs --output "$J/o" -- true

# ---- a job that completes: in its directory, with its environment ----
id="$(submit_job ok --env "MSG=it's \"quoted\" \$NOT_EXPANDED" -- bash -c 'echo "$MSG"; pwd; echo "$SLURM_JOB_ID"')"
[ -n "$id" ] && ok "submit printed job id $id" || die "submit printed no job id"
[ -x "$J/ok.sh" ] && ok "the batch script is kept, executable" || fail "no executable $J/ok.sh"
p="$(wait_status "$id" Completed)" && ok "the job ends Completed" || fail "not Completed: $p"
assert_eq "COMPLETED|0" "$(jget "$p" 'j["state"]+"|"+str(j["exit_code"])')" "Slurm's state and exit code"
assert_eq "it's \"quoted\" \$NOT_EXPANDED|$J|$id" "$(paste -sd'|' "$J/ok.out")" "the job ran in its directory with its environment, as job $id"

# ---- a failing job: Failed with the exit code ----
id="$(submit_job bad -- bash -c 'echo failing >&2; exit 4')"
p="$(wait_status "$id" Failed)" && ok "a failing job ends Failed" || fail "not Failed: $p"
assert_eq "FAILED|4" "$(jget "$p" 'j["state"]+"|"+str(j["exit_code"])')" "Slurm says FAILED with exit code 4"
assert_eq "Slurm job $id FAILED: exit code 4 (reason: NonZeroExitCode)" "$(jget "$p" 'j["error"]')" "the error text has Slurm's state, the exit code and reason"

# ---- Queued while the node is full ----
b1="$(submit_job block1 -- sleep 120)"; b2="$(submit_job block2 -- sleep 120)"
wait_status "$b1" Running >/dev/null && wait_status "$b2" Running >/dev/null && ok "two jobs run on the 2 CPUs" || fail "blockers not running"
q="$(submit_job queued -- true)"
p="$(wait_status "$q" Queued)" && ok "a third job is Queued" || fail "not Queued: $p"
assert_eq "PENDING" "$(jget "$p" 'j["state"]')" "Slurm says PENDING"
case "$(jget "$p" 'j["reason"]')" in Resources|Priority|None) ok "with Slurm's reason ($(jget "$p" 'j["reason"]'))";; *) fail "odd pending reason: $p";; esac
scancel "$q"

# ---- the working directory is not visible on the node: exit 97 with a message ----
mkdir -p "$J/gone" "$J/logs"
g="$("$K" compute slurm-probe submit gone --compute s --workdir "$J/gone" --output "$J/logs/gone.out" --script "$J/logs/gone.sh" -- true)"
p="$(poll "$g")"
assert_eq "Queued" "$(jget "$p" 'j["status"]')" "the job waits while the node is full"
rmdir "$J/gone"
scancel "$b1" "$b2"
p="$(wait_status "$g" Failed)" && ok "the job without its directory ends Failed" || fail "not Failed: $p"
assert_eq "97" "$(jget "$p" 'j["exit_code"]')" "exit code 97"
assert_contains "$(cat "$J/logs/gone.out")" "kusari: error: the run's directory $J/gone is not visible on node" "the job's log says why"
assert_contains "$(cat "$J/logs/gone.out")" "hint: Slurm nodes must see the workspace at the same path" "with the hint"

# ---- two tasks under srun ----
m="$("$K" compute slurm-probe submit two --compute s --workdir "$J" --output "$J/two.out" --script "$J/two.sh" \
  --ntasks-per-node 2 -- bash -c 'echo "task $SLURM_PROCID of $SLURM_NTASKS"')"
p="$(wait_status "$m" Completed Failed)"
assert_eq "Completed" "$(jget "$p" 'j["status"]')" "a 2-task job completes"
assert_eq "task 0 of 2|task 1 of 2" "$(sort "$J/two.out" | paste -sd'|')" "srun ran both tasks"

finish
