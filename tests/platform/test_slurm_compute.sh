#!/usr/bin/env bash
# kusari compute create/show/list/delete --type slurm against a real
# single-host Slurm cluster (tests/platform/slurm.sh): the partition check,
# the settings kept in computes/NAME.json, Slurm's view in compute show (nodes,
# this workspace's jobs only), and the clear errors when Slurm is not
# installed, not configured, its controller is down or the partition unknown.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/slurm.sh"
slurm_start

# ---- bad options: refused before Slurm is asked, nothing recorded ----
expect_fail "applies to --type slurm only" "$K" compute create l1 --type local --partition debug
expect_fail "is not a Slurm time" "$K" compute create s0 --type slurm --time-limit 1:2:3:4
expect_fail "is not a Slurm time" "$K" compute create s0 --type slurm --time-limit 0
expect_fail "--min-nodes must be an integer from 0 to --max-nodes (2)" "$K" compute create s0 --type slurm --max-nodes 2 --min-nodes 3
expect_fail "--gpus-per-node must be an integer" "$K" compute create s0 --type slurm --gpus-per-node -1
expect_fail "is not a Slurm name" "$K" compute create s0 --type slurm --account 'a"b'
expect_fail "supports: local, slurm" "$K" compute create s0 --type kubernetes
expect_fail "the Slurm partition 'nope' does not exist" "$K" compute create s0 --type slurm --partition nope
err="$("$K" compute create s0 --type slurm --partition nope 2>&1)"
assert_contains "$err" "hint: the partitions are: debug, batch" "the hint lists the cluster's partitions"
assert_eq "0" "$(sql "SELECT count(*) FROM computes")" "no target recorded after the refusals"
[ ! -e "$WS/computes" ] || [ -z "$(ls "$WS/computes")" ] && ok "no settings file after the refusals" || fail "settings left: $(ls "$WS/computes")"

# ---- create: default partition, and one with every setting ----
out="$("$K" compute create s1 --type slurm 2>&1)"
assert_contains "$out" "compute target s1 created (type slurm, partition debug, max nodes 1)" "created on Slurm's default partition"
assert_not_contains "$out" "note:" "max nodes 1 on a 1-node partition: nothing to say"
# --max-nodes against Slurm's view of the partition (1 node, 2 CPUs)
out="$("$K" compute create sm2 --type slurm --max-nodes 2 2>&1)"
assert_contains "$out" "note: Slurm partition debug has 1 node with 2 CPUs in all: with --max-nodes 2, runs share nodes" \
  "more nodes than the partition has: a note with Slurm's count"
assert_not_contains "$out" "beyond its CPUs" "within its CPUs: no word about waiting"
out="$("$K" compute create sm3 --type slurm --max-nodes 3 2>&1)"
assert_contains "$out" "runs beyond its CPUs wait in Slurm's queue (Queued); a distributed run can use at most 1 node" \
  "more than its CPUs: the note says the rest wait"
run_ok "$K" compute delete sm2 >/dev/null
run_ok "$K" compute delete sm3 >/dev/null
run_ok "$K" compute create s2 --type slurm --partition batch --max-nodes 3 --min-nodes 1 --gpus-per-node 2 \
  --time-limit 1-02:03 --account proj --qos high >/dev/null
assert_eq "slurm|3" "$(sql "SELECT type || '|' || max_nodes FROM computes WHERE name='s2'")" "the store has type and max nodes"
assert_eq "600" "$(stat -c %a "$WS/computes/s2.json")" "the settings file is 0600"
s2="$(cat "$WS/computes/s2.json")"
assert_eq "batch|3|1|2|1-02:03|proj|high" \
  "$(jget "$s2" '"|".join(str(j[k]) for k in ["partition","max_nodes","min_nodes","gpus_per_node","time_limit","account","qos"])')" \
  "the settings file has every option as given"
expect_fail "already exists" "$K" compute create s2 --type slurm --partition debug
assert_eq "batch" "$(jget "$(cat "$WS/computes/s2.json")" 'j["partition"]')" "a refused duplicate leaves the settings alone"

list="$(run_ok "$K" compute list)"
assert_contains "$list" "s2                   slurm" "compute list shows the slurm targets"

# ---- show: settings and Slurm's view ----
show="$(run_ok "$K" compute show s2)"
assert_contains "$show" "partition:   batch" "show: partition"
assert_contains "$show" "time limit:  1-02:03" "show: time limit"
assert_contains "$show" "qos:         high" "show: qos"
assert_contains "$show" "partition batch is UP" "show: the partition's state from Slurm"
assert_contains "$show" "localhost" "show: the node"
assert_contains "$show" "0 pending/running job(s) of this workspace" "show: no jobs yet"

# jobs: two of this workspace (one running, one pending behind it), one of
# someone else's on the same partition (not shown)
mkdir -p "$T/jobs"
probe() { "$K" compute slurm-probe submit "$1" --compute s1 --workdir "$T/jobs" --output "$T/jobs/$1.out" --script "$T/jobs/$1.sh" -- sleep 60; }
j1="$(probe a)"; j2="$(probe b)"; j3="$(probe c)"
other="$(sbatch --parsable -p debug -o /dev/null --comment "kusari:/elsewhere/ws" --wrap 'sleep 60')"
for i in $(seq 1 100); do
  [ "$(squeue -h -j "$j1,$j2" -t R -o %i | wc -l)" = 2 ] && break; sleep 0.1
done
js="$(run_ok "$K" compute show s1 --json)"
assert_eq "debug" "$(jget "$js" 'j["slurm"]["view"]["partition"]')" "show --json: the partition"
assert_eq "localhost:2" "$(jget "$js" '":".join(str(n[k]) for n in j["slurm"]["view"]["nodes"] for k in ["name","cpus"])')" "show --json: the node and its CPUs (CPUs=2 in slurm.conf)"
assert_eq "on" "$(jget "$js" 'j["slurm"]["view"]["nodes"][0]["power"]')" "show --json: the node's power state"
assert_eq "$(printf '%s\n' "$j1" "$j2" "$j3" | sort -n | tr '\n' ' ')" "$(jget "$js" '" ".join(sorted((x["id"] for x in j["slurm"]["view"]["jobs"]), key=int)) + " "')" \
  "show --json: this workspace's jobs, not the other one ($other)"
assert_eq "kusari-a:RUNNING kusari-b:RUNNING kusari-c:PENDING" \
  "$(jget "$js" '" ".join(x["name"]+":"+x["state"] for x in sorted(j["slurm"]["view"]["jobs"], key=lambda x: x["name"]))')" \
  "show --json: the jobs' names and states (2 CPUs: two run, one waits)"
show="$(run_ok "$K" compute show s1)"
assert_contains "$show" "3 pending/running job(s) of this workspace" "show: the job count"
assert_contains "$show" "kusari-c                 PENDING" "show: the pending job and its state"
scancel "$j1" "$j2" "$j3" "$other"
slurm_wait_idle || fail "jobs did not end after scancel"

# ---- Slurm not installed / not configured ----
mkdir -p "$T/emptybin"
err="$(PATH="$T/emptybin" "$K" compute create s3 --type slurm 2>&1)"; rc=$?
assert_eq "1" "$rc" "not installed: exit 1"
assert_contains "$err" "kusari: error: Slurm is not installed here: 'sbatch' is not on PATH" "not installed: says so"
assert_contains "$err" "hint: install Slurm's client commands" "not installed: the hint"
err="$(SLURM_CONF="$T/missing.conf" "$K" compute create s3 --type slurm 2>&1)"
assert_contains "$err" "kusari: error: Slurm is installed but not configured: SLURM_CONF names $T/missing.conf" "no configuration: says so"
if [ ! -e /etc/slurm/slurm.conf ]; then
  err="$(env -u SLURM_CONF "$K" compute create s3 --type slurm 2>&1)"
  assert_contains "$err" "kusari: error: Slurm is installed but not configured: no slurm.conf (SLURM_CONF is not set" "no slurm.conf at all: says so"
else
  echo "note: this machine has /etc/slurm/slurm.conf: the no-slurm.conf case is not tried"
fi
printf 'ClusterName=broken\n' >"$T/broken.conf"
err="$(SLURM_CONF="$T/broken.conf" "$K" compute create s3 --type slurm 2>&1)"
assert_contains "$err" "kusari: error: Slurm is installed but not configured" "a configuration without a controller: says so"
err="$(PATH="$T/emptybin" "$K" compute show s1 2>&1)"; rc=$?
assert_eq "1" "$rc" "show without Slurm: exit 1"
assert_contains "$err" "partition:   debug" "show without Slurm: still prints what the workspace knows"
assert_contains "$err" "kusari: error: Slurm is not installed here" "show without Slurm: says why Slurm's view is missing"

# ---- controller down ----
slurm_stop_controller
err="$("$K" compute create s3 --type slurm 2>&1)"; rc=$?
assert_eq "1" "$rc" "controller down: exit 1"
assert_contains "$err" "kusari: error: the Slurm controller is down: Slurmctld(primary) at" "controller down: says so"
assert_contains "$err" "hint: start slurmctld" "controller down: the hint"
js="$("$K" compute show s1 --json 2>"$T/err")"; rc=$?
assert_eq "1" "$rc" "show, controller down: exit 1"
assert_contains "$(jget "$js" 'j["slurm"]["error"]')" "the Slurm controller is down" "show --json, controller down: the error in the JSON"
assert_contains "$(cat "$T/err")" "the Slurm controller is down" "show, controller down: the error on stderr"
assert_eq "2" "$(sql "SELECT count(*) FROM computes")" "nothing recorded while Slurm was unavailable"
err="$("$K" compute slurm-probe poll 1 2>&1)"; rc=$?
assert_eq "1" "$rc" "poll, controller down: exit 1"
assert_contains "$err" "kusari: error: the Slurm controller does not answer" "poll, controller down: says so (a supervisor retries later)"

# ---- delete removes the settings ----
run_ok "$K" compute delete s2 >/dev/null
[ ! -e "$WS/computes/s2.json" ] && ok "delete removes computes/s2.json" || fail "computes/s2.json left after delete"
expect_fail "no compute target named 's2'" "$K" compute show s2

finish
