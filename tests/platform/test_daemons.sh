#!/usr/bin/env bash
# platform_daemons: the detached daemons (a run's supervisor, a sweep's
# controller; the scoring service is covered by platform_service) all start
# through one routine (kp_daemon_start): each runs in its own session, with
# stdin from /dev/null, stdout and stderr into its log, and no pipe left open
# once it said it is up; when the fork fails (KUSARI_FAULT_DAEMON_FORK=1, as at
# the process limit) the submit fails clearly and the run or sweep is
# recorded Failed, not left Queued.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
printf 'while [ ! -f "%s/go" ]; do sleep 0.05; done\nkusari log metric score 1\n' "$T" > "$T/src/hold.sh"

# check_daemon PID LOG WHAT
check_daemon() {
  local pid="$1" log="$2" what="$3"
  [ -d "/proc/$pid" ] || { fail "$what: pid $pid is not running"; return; }
  assert_eq /dev/null "$(readlink "/proc/$pid/fd/0")" "$what: stdin is /dev/null"
  assert_eq "$log $log" "$(readlink "/proc/$pid/fd/1") $(readlink "/proc/$pid/fd/2")" "$what: stdout and stderr go to its log"
  assert_eq 0 "$(ls -l "/proc/$pid/fd" | grep -c 'pipe:')" "$what: no pipe left open"
  [ "$(ps -o sid= -p "$pid" | xargs)" != "$(ps -o sid= -p $$ | xargs)" ] && ok "$what: in a session of its own" \
    || fail "$what: in the test's session"
}

id="$(submit --experiment d --source "$T/src" --entry hold.sh)"
for _ in $(seq 100); do [ "$(sql "SELECT status FROM runs WHERE id='$id'")" = Running ] && break; sleep 0.05; done
check_daemon "$(sql "SELECT supervisor_pid FROM runs WHERE id='$id'")" "$WS/runs/$id/supervisor.log" "run supervisor"

cat > "$T/sweep.json" <<JSON
{"experiment": "ds", "run": {"source": "$T/src", "entry": "hold.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--k": {"choice": ["a"]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}}
JSON
sw="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
# (once its only child runs, the controller is starting nothing: no start pipe of its own)
for _ in $(seq 200); do [ "$(sql "SELECT status FROM runs WHERE parent_id='$sw'")" = Running ] && break; sleep 0.05; done
check_daemon "$(sql "SELECT supervisor_pid FROM runs WHERE id='$sw'")" "$WS/runs/$sw/controller.log" "sweep controller"
touch "$T/go"
run_ok $K run wait "$id" >/dev/null
run_ok $K sweep wait "$sw" --timeout 60 >/dev/null

# --- the fork fails --------------------------------------------------------------------------
err="$(KUSARI_FAULT_DAEMON_FORK=1 $K run submit --experiment d --source "$T/src" --entry hold.sh 2>&1 >/dev/null)"; rc=$?
assert_eq 1 "$rc" "run submit exits 1 when its supervisor cannot be started"
assert_contains "$err" "kusari: error: cannot fork: Resource temporarily unavailable" "it says the fork failed"
assert_contains "$err" "the supervisor of run d_" "and which run's supervisor did not start"
assert_eq "Failed|its supervisor did not start" "$(sql "SELECT status, error FROM runs WHERE experiment_id=(SELECT id FROM experiments WHERE name='d') ORDER BY seq DESC LIMIT 1")" \
  "the run is recorded Failed, not left Queued"
err="$(KUSARI_FAULT_DAEMON_FORK=1 $K sweep submit "$T/sweep.json" 2>&1 >/dev/null)"; rc=$?
assert_eq 1 "$rc" "sweep submit exits 1 when its controller cannot be started"
assert_contains "$err" "the controller of sweep ds_" "it names the sweep whose controller did not start"
assert_eq "Failed|its sweep controller did not start" "$(sql "SELECT status, error FROM runs WHERE parent_id IS NULL AND compute LIKE 'sweep:%' ORDER BY seq DESC LIMIT 1")" \
  "the sweep is recorded Failed"
finish
