#!/usr/bin/env bash
# platform_run_views: the everyday reading commands of issue 11: `run list
# --metrics` (latest values as columns) and `--order-by` (metrics.NAME, started,
# status; sorted before --limit; runs without a value last), aligned columns
# (COMPUTE of a sweep parent), `experiment show`, `run compare` (differing
# cells marked), `run tag` / `run untag` (shown by run show and run list
# --json), and their bad inputs.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
mkdir -p "$T/src"
# logs each value of --acc as Accuracy (in order) and --loss once; --fail exits 1
cat > "$T/src/log.sh" <<'SH'
acc=""; loss=""; fail=0; hold=""
while [ $# -gt 0 ]; do case "$1" in --acc) acc=$2; shift;; --loss) loss=$2; shift;; --hold) hold=$2; shift;; --fail) fail=1;; esac; shift; done
for a in $acc; do kusari log metric Accuracy "$a"; done
[ -n "$loss" ] && kusari log metric loss "$loss"
if [ -n "$hold" ]; then while [ ! -f "$hold" ]; do sleep 0.1; done; fi
exit $fail
SH
sub() { local id; id="$(submit --experiment views --source "$T/src" --entry log.sh -- "$@")"; $K run wait "$id" >/dev/null 2>&1; echo "$id"; }
A="$(sub --acc "0.1 0.5 0.3" --loss 0.9 --lr 0.1 --epochs 3)"   # latest Accuracy 0.3 (not its best, 0.5)
B="$(sub --acc 0.7 --loss 0.2 --lr 0.01 --epochs 3)"
C="$(sub --loss 0.5)"                                             # no Accuracy at all
D="$(sub --acc 0.05 --fail)"                                      # Failed, newest
assert_eq "Completed Completed Completed Failed" "$(for r in $A $B $C $D; do jget "$($K run show $r --json)" 'j["status"]'; done | xargs)" "four runs ended as planned"

# --- run list --metrics -----------------------------------------------------------
j="$(run_ok $K run list --experiment views --metrics Accuracy,loss --json)"
assert_eq "$D:0.05:None $C:None:0.5 $B:0.7:0.2 $A:0.3:0.9" \
  "$(jget "$j" '" ".join("%s:%s:%s" % (r["id"], r["metrics"]["Accuracy"], r["metrics"]["loss"]) for r in j)')" \
  "--metrics gives each run's latest value (null when it has none), newest run first"
txt="$(run_ok $K run list --experiment views --metrics Accuracy,loss)"
assert_eq "RUN EXPERIMENT STATUS COMPUTE CREATED DURATION Accuracy loss" "$(echo "$txt" | head -1 | xargs)" "a column per metric"
assert_eq "0.3 0.9" "$(echo "$txt" | grep "^$A " | awk '{print $(NF-1), $NF}')" "the text columns hold the latest values"
assert_eq "- 0.5" "$(echo "$txt" | grep "^$C " | awk '{print $(NF-1), $NF}')" "'-' where a run has no value"
err="$($K run list --metrics Accurcy 2>&1 >/dev/null)"
assert_contains "$err" "no run has a metric named 'Accurcy'" "a metric no run has is warned about"

# --- --order-by -----------------------------------------------------------------------
order_in() { local e=$1; shift; $K run list --experiment "$e" --json "$@" | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)))'; }
order() { order_in views "$@"; }
assert_eq "$B $A $D $C" "$(order --order-by metrics.Accuracy desc)" "metrics.Accuracy desc (two words); no value last"
assert_eq "$B $A $D $C" "$(order --order-by "metrics.Accuracy DESC")" "metrics.Accuracy DESC (one word)"
assert_eq "$D $A $B $C" "$(order --order-by metrics.Accuracy)" "ascending by default; no value still last"
assert_eq "$B" "$(order --order-by metrics.loss --limit 1)" "sorted before --limit applies (lowest loss of all runs)"
assert_eq "$A $B $C $D" "$(order --order-by started)" "by start time"
assert_eq "$D" "$(order --order-by status desc --limit 1)" "by status"
# by duration, without timing: LONG starts before SHORT starts and ends after SHORT ends
LONG="$(submit --experiment dur --source "$T/src" --entry log.sh -- --hold "$T/release")"
for _ in $(seq 1 300); do [ "$(jget "$($K run show "$LONG" --json)" 'j["status"]')" = Running ] && break; sleep 0.1; done
SHORT="$(submit --experiment dur --source "$T/src" --entry log.sh)"
run_ok $K run wait "$SHORT" >/dev/null
touch "$T/release"
run_ok $K run wait "$LONG" >/dev/null
assert_eq "$LONG $SHORT" "$(order_in dur --order-by duration desc)" "by duration, longest first"
assert_eq "$SHORT $LONG" "$(order_in dur --order-by duration)" "by duration, shortest first"
expect_fail "cannot order by 'speed'" $K run list --order-by speed
expect_fail "no run has a metric named 'nope' to order by" $K run list --order-by metrics.nope
expect_fail "asc or desc, not 'sideways'" $K run list --order-by created sideways
expect_fail "unexpected argument 'desc'" $K run list desc
expect_fail "--metrics needs metric names" $K run list --metrics ,

# --- columns stay aligned: a sweep parent's COMPUTE is "sweep:cpu" ------------------
cat > "$T/sweep.json" <<JSON
{"experiment": "views-sweep", "run": {"source": "$T/src", "entry": "log.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--acc": {"choice": [0.4]}}},
 "primary_metric": {"name": "Accuracy", "goal": "maximize"}}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$SW" --quiet >/dev/null
txt="$(run_ok $K run list)"
assert_contains "$(echo "$txt" | grep "^$SW ")" "sweep:cpu" "the sweep parent's compute is listed"
col="$(echo "$txt" | head -1 | awk '{print index($0, "CREATED")}')"
bad="$(echo "$txt" | tail -n +2 | awk -v c="$col" 'match($0, /[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T/) != c {print $1}' | xargs)"
assert_eq "" "$bad" "every row's CREATED starts under its header (no column overflows)"

# --- experiment show ----------------------------------------------------------------------
j="$(run_ok $K experiment show views --json)"
assert_eq "4 3 1 0" "$(jget "$j" '"%d %d %d %d" % (j["runs"], j["by_status"]["Completed"], j["by_status"]["Failed"], j["by_status"]["Running"])')" "runs by status"
assert_eq "Accuracy 3 0.05 $D 0.7 $B 0.05 $D" \
  "$(jget "$j" '" ".join(str(x) for m in j["metrics"] if m["name"] == "Accuracy" for x in (m["name"], m["runs"], m["min"], m["min_run"], m["max"], m["max_run"], m["latest"], m["latest_run"]))')" \
  "Accuracy over the runs' final values: lowest, highest, newest"
assert_eq "loss 3 0.2 $B 0.9 $A 0.5 $C" \
  "$(jget "$j" '" ".join(str(x) for m in j["metrics"] if m["name"] == "loss" for x in (m["name"], m["runs"], m["min"], m["min_run"], m["max"], m["max_run"], m["latest"], m["latest_run"]))')" \
  "loss likewise"
assert_eq "True" "$(jget "$j" 'j["last_activity"] is not None and j["recent_runs"][0]["id"] == "'$D'"')" "last activity and the newest run"
txt="$(run_ok $K experiment show views)"
assert_contains "$txt" "runs:           4 (Completed 3, Failed 1)" "text: runs by status"
assert_contains "$txt" "0.7 ($B)" "text: the best value with its run"
expect_fail "no experiment named 'nope'" $K experiment show nope

# --- run compare ------------------------------------------------------------------------------
txt="$(run_ok $K run compare "$A" "$B")"
assert_eq "* param --lr 0.1 0.01" "$(echo "$txt" | grep -- ' --lr ' | xargs)" "a differing parameter is marked"
assert_eq "param --epochs 3 3" "$(echo "$txt" | grep -- ' --epochs ' | xargs)" "an equal parameter is not"
assert_eq "* metric Accuracy 0.3 0.7" "$(echo "$txt" | grep ' Accuracy ' | xargs)" "final metrics side by side, marked"
assert_eq "run status Completed Completed" "$(echo "$txt" | grep ' status ' | xargs)" "run attributes side by side"
j="$(run_ok $K run compare "$A" "$B" "$C" --json)"
assert_eq "[0.9, 0.2, 0.5] True" "$(jget "$j" '" ".join(str(x) for r in j["rows"] if r["name"] == "loss" for x in (r["values"], r["differs"]))')" "--json: values and differs"
assert_eq "['0.1', '0.01', None]" "$(jget "$j" '[r["values"] for r in j["rows"] if r["name"] == "--lr"][0]')" "a parameter one run lacks is null"
assert_eq "--acc --loss --lr" "$(run_ok $K run compare "$A" "$B" --only-differences | awk '$2 == "param" {print $3}' | xargs)" "--only-differences"
expect_fail "no run with id 'nope'" $K run compare "$A" nope
expect_fail "at least two RUN ids" $K run compare "$A"

# --- run tag / untag ---------------------------------------------------------------------------
run_ok $K run tag "$A" team=vision "note=two words" >/dev/null
j="$(run_ok $K run show "$A" --json)"
assert_eq "vision|two words" "$(jget "$j" 'j["tags"]["team"] + "|" + j["tags"]["note"]')" "run show has the tags"
assert_contains "$(run_ok $K run show "$A")" "tag:          team=vision" "run show text has them"
assert_eq "vision" "$(jget "$($K run list --json)" '[r["tags"].get("team") for r in j if r["id"] == "'$A'"][0]')" "run list --json has them"
run_ok $K run tag "$A" team=audio >/dev/null
assert_eq "audio" "$(jget "$($K run show "$A" --json)" 'j["tags"]["team"]')" "a tag is replaced"
expect_fail "has no tag 'nope'" $K run untag "$A" note nope
assert_eq "two words" "$(jget "$($K run show "$A" --json)" 'j["tags"].get("note")')" "a failed untag removes nothing"
run_ok $K run untag "$A" note >/dev/null
assert_eq "{'team': 'audio'}" "$(jget "$($K run show "$A" --json)" 'j["tags"]')" "untag removes the tag"
expect_fail "must look like KEY=VALUE" $K run tag "$A" novalue
expect_fail "set by kusari itself" $K run tag "$A" sweep_index=3
expect_fail "no run with id 'nope'" $K run tag nope a=b
expect_fail "missing KEY=VALUE" $K run tag "$A"
for c in "run list" "run compare" "run tag" "run untag" "experiment show"; do
  assert_contains "$($K $c --help)" "usage: kusari $c" "$c --help"
done
finish
