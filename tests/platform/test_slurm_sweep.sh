#!/usr/bin/env bash
# A sweep on a slurm compute target, on a real single-host Slurm cluster
# (tests/platform/slurm.sh): each child is a Slurm job; grid sampling over
# three fixed curves of the primary metric with a bandit policy (as in
# test_sweep_policies.sh) and max_concurrent_runs 1 on a target of 4 nodes:
#  - the policy cancels the child it should (b2 at interval 2), the others
#    complete; the canceled child's job got SIGTERM (its handler ran) and is
#    gone from squeue, the child Canceled with the policy's reason;
#  - never more than one of the sweep's jobs pending or running at once
#    (the sweep's limit, not Slurm's: the node has room for two).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

run_ok "$K" compute create s --type slurm --max-nodes 4 >/dev/null
mkdir -p "$T/src"
cat >"$T/src/entry.sh" <<'SH'
trap 'echo "got TERM"; exit 143' TERM
curve=""
while [ $# -gt 0 ]; do case "$1" in --curve) curve=$2;; esac; shift 2; done
for v in $(grep "^$curve " curves.txt | cut -d' ' -f2-); do kusari log metric acc "$v"; sleep 0.5 & wait; done
SH
cat >"$T/src/curves.txt" <<'TXT'
b1 0.5 0.6 0.7 0.8 0.8 0.8
b2 0.4 0.5 0.55 0.6 0.6 0.6
b3 0.6 0.7 0.8 0.85 0.9 0.9
TXT
cat >"$T/sweep.json" <<JSON
{"experiment": "sw", "run": {"source": "$T/src", "entry": "entry.sh", "compute": "s"},
 "sampling": {"type": "grid", "space": {"--curve": {"choice": ["b1", "b2", "b3"]}}},
 "primary_metric": {"name": "acc", "goal": "maximize"},
 "policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 2},
 "max_concurrent_runs": 1, "cancel_grace_seconds": 5}
JSON
sw="$(run_ok "$K" sweep submit "$T/sweep.json" | tail -1)"
# the sweep's jobs pending or running, sampled until it ends
(
  while [ ! -e "$T/sweep.done" ]; do squeue -h -t PD,CF,R -o %j 2>/dev/null | grep -c '^kusari-' >>"$T/concurrent"; sleep 0.1; done
) &
sampler=$!
run_ok "$K" sweep wait "$sw" --timeout 90 --quiet >/dev/null
touch "$T/sweep.done"
wait $sampler
j="$("$K" sweep show "$sw" --json)"
outcome="$(jget "$j" '" ".join("%s:%s%s" % (c["parameters"]["--curve"], c["status"], ":" + c["early_termination"].split("at interval ")[1].split(":")[0] if c["early_termination"] else "") for c in sorted(j["children"], key=lambda c: c["index"]))')"
assert_eq "b1:Completed b2:Canceled:2 b3:Completed" "$outcome" "the bandit policy cancels b2 at interval 2, the others complete"
b2="$(jget "$j" '[c["id"] for c in j["children"] if c["parameters"]["--curve"] == "b2"][0]')"
job="$(jget "$("$K" run show "$b2" --json)" "j['tags'].get('kusari.slurm_job', '')")"
case "$job" in [0-9]*) ok "the canceled child was Slurm job $job";; *) fail "no Slurm job for child $b2";; esac
assert_eq "" "$(squeue -h -j "$job" -t PD,CF,R,CG,S -o %i 2>/dev/null)" "its job is gone from squeue"
assert_contains "$("$K" run logs "$b2")" "got TERM" "its job got SIGTERM first (the entry's handler ran)"
assert_contains "$(jget "$("$K" run show "$b2" --json)" 'j["error"]')" "best value 0.5 < 0.6 / (1 + 0.1)" "the child's error is the policy's reason"
for c in $(jget "$j" '" ".join(c["id"] for c in j["children"])'); do
  case "$(jget "$("$K" run show "$c" --json)" "j['tags'].get('kusari.slurm_job', '')")" in
    [0-9]*) ;; *) fail "child $c has no Slurm job";;
  esac
done
ok "every child ran as a Slurm job"
max="$(sort -n "$T/concurrent" | tail -1)"
[ -s "$T/concurrent" ] && [ "$max" -le 1 ] && ok "at most one of the sweep's jobs at a time ($(wc -l <"$T/concurrent") samples, max $max)" \
  || fail "max_concurrent_runs 1 not respected: up to $max jobs at once"
grep -qx 1 "$T/concurrent" && ok "a child's job was seen in Slurm's queue" || fail "no job seen while the sweep ran"

finish
