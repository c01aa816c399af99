#!/usr/bin/env bash
# platform_sweep_control: the sweep controller's life: kill -9 of the
# controller (the sweep ends Failed, `sweep wait` says how to resume; resume
# re-runs no finished child, keeps the running ones, and submits exactly the
# missing ones with the same seeded parameters), max_duration_minutes, and
# `sweep cancel` (active children Canceled with the reason, no new ones).
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 8 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/score.sh" <<'SH'
epochs=1; sl=0; x=0
while [ $# -gt 0 ]; do case "$1" in --epochs) epochs=$2;; --sleep) sl=$2;; --x) x=$2;; esac; shift 2; done
for ((e = 1; e <= epochs; e++)); do
  kusari log metric score "$(awk -v x="$x" -v e="$e" 'BEGIN { printf "%.6f", e * (1 - (x - 0.3) ^ 2) }')"
  sleep "$sl"
done
SH
sweep_file() {  # sweep_file NAME EXTRA_JSON ARGS_JSON
  cat > "$T/$1.json" <<JSON
{"experiment": "c", "run": {"source": "$T/src", "entry": "score.sh", "compute": "cpu", "arguments": $3},
 "sampling": {"type": "random", "seed": 11, "space": {"--x": {"uniform": [0, 1]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}, "cancel_grace_seconds": 2, $2}
JSON
}
params() { $K sweep show "$1" --json | python3 -c '
import json, sys
for c in sorted(json.load(sys.stdin)["children"], key=lambda c: c["index"]): print(c["index"], c["parameters"]["--x"])'; }

# --- reference: the same sweep, never interrupted ------------------------------------------------
sweep_file ref '"max_total_runs": 6, "max_concurrent_runs": 6' '["--epochs", "1"]'
ref="$(run_ok $K sweep submit "$T/ref.json" | tail -1)"
# --- kill -9 of the controller, then resume -----------------------------------------------------------
sweep_file res '"max_total_runs": 6, "max_concurrent_runs": 2' '["--epochs", "3", "--sleep", "0.3"]'
sw="$(run_ok $K sweep submit "$T/res.json" | tail -1)"
# kill it while it is idle: 2 children done and every child it submitted is
# up under its own supervisor (a controller killed inside kp_run_submit can
# leave a child whose supervisor dies on the closed start pipe: SIGPIPE)
for _ in $(seq 1 200); do
  # (CASE ... THEN 1: a boolean prints 1 in SQLite, t in PostgreSQL)
  [ "$(sql "SELECT CASE WHEN (SELECT count(*) FROM runs WHERE parent_id='$sw' AND status='Completed') >= 2
            AND (SELECT count(*) FROM sweep_trials WHERE sweep_id='$sw') = (SELECT count(*) FROM runs WHERE parent_id='$sw')
            AND (SELECT count(*) FROM runs WHERE parent_id='$sw' AND status NOT IN ('Completed','Failed','Canceled')) = 2
            AND (SELECT count(*) FROM runs WHERE parent_id='$sw' AND supervisor_pid IS NULL) = 0 THEN 1 ELSE 0 END")" = 1 ] && break
  sleep 0.05
done
cpid="$(sql "SELECT supervisor_pid FROM runs WHERE id='$sw'")"
kill -9 "$cpid" && ok "killed the controller (pid $cpid) after 2 children completed"
done_before="$(sql "SELECT id FROM runs WHERE parent_id='$sw' AND status='Completed' ORDER BY id" | paste -sd' ')"
n_before="$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw'")"
err="$($K sweep wait "$sw" --timeout 30 2>&1 >/dev/null)"; rc=$?
assert_eq 1 $rc "sweep wait exits 1 when the controller died"
assert_contains "$err" "kusari sweep resume $sw" "and says how to resume"
assert_eq Failed "$(jget "$($K sweep show "$sw" --json)" 'j["status"]')" "the parent run ended Failed (reconciled)"
sleep 1  # children keep running without their controller
# the two windows a controller can die in: after recording a trial but before
# submitting its child (the next index, recorded with the point an
# uninterrupted sweep draws), and after submitting it but before linking it
run_ok $K sweep wait "$ref" --timeout 60 >/dev/null
n="$(sql "SELECT count(*) FROM sweep_trials WHERE sweep_id='$sw'")"
if [ "$n" -lt 6 ]; then
  p="$(sql "SELECT params FROM sweep_trials WHERE sweep_id='$ref' AND idx=$n")"
  sql "INSERT INTO sweep_trials(sweep_id, idx, params, created) VALUES('$sw', $n, '$p', 0)"
fi
sql "UPDATE sweep_trials SET run_id=NULL WHERE sweep_id='$sw' AND idx=0"
out="$(run_ok $K sweep resume "$sw")"
assert_eq "$sw" "$(echo "$out" | tail -1)" "sweep resume prints the id"
expect_fail "is running" $K sweep resume "$sw"
run_ok $K sweep wait "$sw" --timeout 60 >/dev/null
assert_eq Completed "$(jget "$($K sweep show "$sw" --json)" 'j["status"]')" "the resumed sweep Completed"
assert_eq 6 "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw'")" "exactly max_total_runs children in all ($n_before before the kill)"
assert_eq "0 1 2 3 4 5" "$(sql "SELECT idx FROM sweep_trials WHERE sweep_id='$sw' ORDER BY idx" | paste -sd' ')" "each trial index once"
for id in $done_before; do
  assert_eq 1 "$(sql "SELECT count(*) FROM runs r JOIN tags g ON g.run_id=r.id AND g.key='sweep_index' WHERE r.parent_id='$sw' AND g.value=(SELECT value FROM tags WHERE run_id='$id' AND key='sweep_index')")" "finished child $id was not re-run"
done
assert_eq 0 "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw' AND status!='Completed'")" "every child Completed"
run_ok $K sweep wait "$ref" --timeout 60 >/dev/null
assert_eq "$(params "$ref")" "$(params "$sw")" "the resumed sweep sampled exactly the points of an uninterrupted one (seed 11)"
clog="$(cat "$WS/runs/$sw/controller.log")"
assert_contains "$clog" "trial 0: linked its run" "a child submitted but not linked is linked, not submitted again"
[ "$n" -lt 6 ] && assert_contains "$clog" "trial $n: recorded but never submitted (restart); submitting it now" "a trial recorded but never submitted is submitted"

# --- max_duration_minutes: running children are canceled, the sweep ends ------------------------------
sweep_file dur '"max_total_runs": 10, "max_concurrent_runs": 2, "max_duration_minutes": 0.05' '["--epochs", "100", "--sleep", "0.2"]'
t0=$(date +%s)
sd="$(run_ok $K sweep submit "$T/dur.json" | tail -1)"
run_ok $K sweep wait "$sd" --timeout 60 >/dev/null
dt=$(( $(date +%s) - t0 ))
[ $dt -lt 20 ] && ok "the sweep stopped after max_duration_minutes (${dt}s)" || fail "max_duration_minutes 0.05 took ${dt}s"
j="$($K sweep show "$sd" --json)"
assert_eq "Completed the sweep reached max_duration_minutes (0.05)" "$(jget "$j" 'j["status"] + " " + j["stop_reason"]')" "parent Completed with the stop reason"
assert_eq "2 Canceled" "$(jget "$j" '"%d %s" % (len(j["children"]), ",".join(sorted(set(c["status"] for c in j["children"]))))')" "its 2 running children Canceled, no new ones"
assert_contains "$(jget "$j" 'j["children"][0]["error"]')" "max_duration_minutes" "children's error says why"

# --- sweep cancel -----------------------------------------------------------------------------------------
sweep_file can '"max_total_runs": 10, "max_concurrent_runs": 3' '["--epochs", "100", "--sleep", "0.2"]'
sc="$(run_ok $K sweep submit "$T/can.json" | tail -1)"
for _ in $(seq 1 100); do
  [ "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sc' AND status='Running'")" -ge 3 ] && break; sleep 0.1
done
out="$(run_ok $K sweep cancel "$sc")"
assert_contains "$out" "Canceled" "sweep cancel waits and reports Canceled"
j="$($K sweep show "$sc" --json)"
assert_eq "Canceled 3 Canceled" "$(jget "$j" '"%s %d %s" % (j["status"], len(j["children"]), ",".join(sorted(set(c["status"] for c in j["children"]))))')" "parent and its 3 active children Canceled, none started after"
assert_contains "$(jget "$j" 'j["children"][0]["error"]')" "the sweep was canceled" "children's error says the sweep was canceled"
$K sweep wait "$sc" >/dev/null 2>&1; assert_eq 1 $? "sweep wait exits 1 for a canceled sweep"
expect_fail "already ended" $K sweep cancel "$sc"
expect_fail "no sweep with id" $K sweep show nope_1

# --- fail fast: the first 3 children all failed, so the other 7 are not run -----------------------
printf 'echo "bad arguments: $*" >&2\nexit 3\n' > "$T/src/broken.sh"
sed 's/"score.sh"/"broken.sh"/' "$T/can.json" > "$T/broken.json"
sf="$(run_ok $K sweep submit "$T/broken.json" | tail -1)"
err="$($K sweep wait "$sf" --timeout 60 2>&1 >/dev/null)"; rc=$?
assert_eq 1 $rc "sweep wait exits 1 for a sweep whose children all fail"
# (3 ended, or up to 2 more that the controller started before it looked, under load)
echo "$err" | grep -qE "the first [345] child runs failed \(run c_" && ok "it says the first children failed" \
  || fail "it does not say that the first 3-5 children failed: $err"
assert_contains "$err" "exited with code 3" "with the first one's error"
j="$($K sweep show "$sf" --json)"
assert_eq "Failed True" "$(jget "$j" '"%s %s" % (j["status"], len(j["children"]) <= 5)')" "the sweep ended Failed without running its 10 children (3 failed + at most 2 more started meanwhile)"
expect_fail "failed on its own" $K sweep resume "$sf"
# sweep controllers run detached: their sanitizer reports land in controller.log
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/controller.log 2>/dev/null)"
[ -z "$bad" ] && ok "no sanitizer reports from sweep controllers" || fail "sanitizer reports: $(head -40 $bad)"
finish
