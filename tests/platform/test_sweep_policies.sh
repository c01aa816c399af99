#!/usr/bin/env bash
# platform_sweep_policies: early termination checked exactly. A synthetic
# entry logs a fixed curve of the primary metric (one value per interval,
# picked by its --curve parameter); grid sampling with max_concurrent_runs 1
# makes the order fixed, so each policy's decisions are known in advance:
# which children end Canceled, at which interval, with which numbers.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 8 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/entry.sh" <<'SH'
curve=""; sl=0.3
while [ $# -gt 0 ]; do case "$1" in --curve) curve=$2;; --sleep) sl=$2;; esac; shift 2; done
for v in $(grep "^$curve " curves.txt | cut -d' ' -f2-); do kusari log metric acc "$v"; sleep "$sl"; done
SH
cat > "$T/src/curves.txt" <<'TXT'
b1 0.5 0.6 0.7 0.8 0.8 0.8 0.8 0.8 0.8 0.8
b2 0.4 0.5 0.55 0.6 0.6 0.6 0.6 0.6 0.6 0.6
b3 0.6 0.7 0.8 0.85 0.9 0.9 0.9 0.9 0.9 0.9
b4 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.8 0.8
b5 0.6 0.65 0.66 0.67 0.68 0.69 0.7 0.7 0.7 0.7
l1 1.0 0.8 0.6 0.5 0.4 0.3 0.3 0.3 0.3 0.3
l2 1.0 0.9 0.9 0.9 0.9 0.9 0.9 0.9 0.9 0.9
l3 0.9 0.7 0.55 0.45 0.35 0.25 0.25 0.25 0.25 0.25
m1 0.5 0.6 0.7 0.8 0.8 0.8 0.8 0.8 0.8 0.8
m2 0.7 0.8 0.9 0.9 0.9 0.9 0.9 0.9 0.9 0.9
m3 0.3 0.4 0.45 0.5 0.5 0.5 0.5 0.5 0.5 0.5
m4 0.6 0.62 0.63 0.64 0.65 0.66 0.67 0.68 0.68 0.68
t1 0.5 0.6 0.7 0.8 0.8 0.8 0.8 0.8 0.8 0.8
t2 0.4 0.5 0.6 0.7 0.7 0.7 0.7 0.7 0.7 0.7
t3 0.7 0.8 0.9 0.9 0.9 0.9 0.9 0.9 0.9 0.9
t4 0.55 0.65 0.66 0.67 0.68 0.69 0.7 0.7 0.7 0.7
TXT
# sweep_file NAME GOAL CURVES POLICY_JSON
sweep_file() {
  cat > "$T/$1.json" <<JSON
{"experiment": "$1", "run": {"source": "$T/src", "entry": "entry.sh", "compute": "cpu", "arguments": ["--sleep", "0.3"]},
 "sampling": {"type": "grid", "space": {"--curve": {"choice": [$3]}}},
 "primary_metric": {"name": "acc", "goal": "$2"}, "policy": $4, "max_concurrent_runs": 1,
 "cancel_grace_seconds": 1}
JSON
}
sweep_file bandit maximize '"b1", "b2", "b3", "b4", "b5"' '{"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 2}'
sweep_file amount minimize '"l1", "l2", "l3"' '{"type": "bandit", "evaluation_interval": 2, "slack_amount": 0.2, "delay_evaluation": 3}'
sweep_file median maximize '"m1", "m2", "m3", "m4"' '{"type": "median", "evaluation_interval": 1, "delay_evaluation": 2}'
sweep_file trunc maximize '"t1", "t2", "t3", "t4"' '{"type": "truncation", "truncation_percentage": 50, "evaluation_interval": 1, "delay_evaluation": 2}'
sweep_file none maximize '"b1", "b2", "b4"' '{"type": "none"}'
# the five sweeps run side by side (each one child at a time)
declare -A S
for n in bandit amount median trunc none; do S[$n]="$(run_ok $K sweep submit "$T/$n.json" | tail -1)"; done
for n in bandit amount median trunc none; do
  run_ok $K sweep wait "${S[$n]}" --timeout 120 --quiet >/dev/null
done
# outcome NAME: "curve:status:interval-of-decision" for each child in grid order
outcome() {
  $K sweep show "${S[$1]}" --json | python3 -c '
import json, re, sys
j = json.load(sys.stdin)
out = []
for c in sorted(j["children"], key=lambda c: c["index"]):
    why = c["early_termination"] or ""
    m = re.search(r"at interval (\d+)", why)
    out.append("%s:%s%s" % (c["parameters"]["--curve"], c["status"], ":" + m.group(1) if m else ""))
print(" ".join(out))'
}
reason() { $K sweep show "${S[$1]}" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print([c for c in j["children"] if c["parameters"]["--curve"] == sys.argv[1]][0]["early_termination"])' "$2"; }
assert_eq "b1:Completed b2:Canceled:2 b3:Completed b4:Canceled:2 b5:Canceled:3" "$(outcome bandit)" "bandit slack_factor: who is terminated, at which interval"
assert_contains "$(reason bandit b2)" "best value 0.5 < 0.6 / (1 + 0.1) = 0.545455" "bandit b2: Y < B/(1+s) with B = best of any run by interval 2"
assert_contains "$(reason bandit b4)" "best value 0.2 < 0.7 / (1 + 0.1) = 0.636364" "bandit b4: B includes younger children's best by interval 2"
assert_contains "$(reason bandit b5)" "interval 3: best value 0.66 < 0.8 / (1 + 0.1) = 0.727273" "bandit b5: passes interval 2, terminated at 3"
assert_eq "l1:Completed l2:Canceled:4 l3:Completed" "$(outcome amount)" "bandit slack_amount, minimize, evaluation_interval 2, delay 3: first look at interval 4"
assert_contains "$(reason amount l2)" "best value 0.9 > 0.5 + 0.2 = 0.7" "slack_amount minimize: Y > B + a"
assert_eq "m1:Completed m2:Completed m3:Canceled:2 m4:Canceled:4" "$(outcome median)" "median stopping: who and when"
assert_contains "$(reason median m3)" "best value 0.4 < 0.55, the median of the running averages over intervals 1..2 of the 3 runs" "median m3 numbers"
assert_contains "$(reason median m4)" "best value 0.64 < 0.65, the median of the running averages over intervals 1..4 of the 3 runs" "median m4: the terminated m3 no longer counts at interval 4"
assert_eq "t1:Completed t2:Canceled:2 t3:Completed t4:Canceled:3" "$(outcome trunc)" "truncation selection: who and when"
assert_contains "$(reason trunc t4)" "value 0.66 ranks 3 of the 3 runs that reached interval 3, in the worst 50% (the worst 1)" "truncation t4 numbers"
assert_eq "b1:Completed b2:Completed b4:Completed" "$(outcome none)" "no policy: every child runs to the end"
# the decision is the canceled child's error text, and sweep show lists it
j="$($K sweep show "${S[bandit]}" --json)"
b2="$(jget "$j" '[c["id"] for c in j["children"] if c["parameters"]["--curve"] == "b2"][0]')"
rj="$(run_ok $K run show "$b2" --json)"
assert_eq Canceled "$(jget "$rj" 'j["status"]')" "early-terminated child is an ordinary Canceled run"
assert_contains "$(jget "$rj" 'j["error"]')" "bandit policy at interval 2" "its error is the rule with its numbers"
assert_eq "b2 ${S[bandit]}" "$(jget "$rj" 'j["tags"]["--curve"] + " " + j["tags"]["sweep"]')" "child tagged with its parameter value and its sweep"
assert_contains "$(jget "$rj" '" ".join(j["arguments"])')" "--sleep 0.3 --curve b2" "parameter passed as --name value after the fixed arguments"
txt="$(run_ok $K sweep show "${S[bandit]}")"
assert_contains "$txt" "bandit policy at interval 3: best value 0.66" "sweep show prints the reasons"
first="$(echo "$txt" | awk '/^RUN/{getline; print $2, $3; exit}')"
assert_eq "Completed 0.9" "$first" "sweep show: children sorted by the primary metric, best first"
best="$(run_ok $K sweep best "${S[bandit]}" | tail -1)"
assert_eq "$(jget "$j" '[c["id"] for c in j["children"] if c["parameters"]["--curve"] == "b3"][0]')" "$best" "sweep best: the b3 child"
assert_eq "$best" "$(jget "$(run_ok $K run show "${S[bandit]}" --json)" 'j["tags"]["best_child_run_id"]')" "parent tagged with its best child"
bestl="$(run_ok $K sweep best "${S[amount]}" | tail -1)"
assert_eq l3 "$(jget "$(run_ok $K run show "$bestl" --json)" 'j["tags"]["--curve"]')" "sweep best with goal minimize: lowest loss"
assert_eq Completed "$(jget "$(run_ok $K run show "${S[bandit]}" --json)" 'j["status"]')" "parent run Completed"
assert_eq 5 "$(run_ok $K run list --parent "${S[bandit]}" --limit 100000 --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')" "5 child runs with the parent id"
assert_eq "0.8 0.8 0.9 0.9 0.9" "$(run_ok $K run metrics "${S[bandit]}" --json | python3 -c '
import json, sys
print(" ".join("%g" % v["value"] for v in json.load(sys.stdin)["best_child_by_primary_metric"]))')" "parent logs best_child_by_primary_metric as children end"
list="$(run_ok $K sweep list)"
assert_contains "$list" "${S[trunc]}" "sweep list shows the sweeps"
# sweep controllers run detached: their sanitizer reports land in controller.log
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/controller.log 2>/dev/null)"
[ -z "$bad" ] && ok "no sanitizer reports from sweep controllers" || fail "sanitizer reports: $(head -40 $bad)"
finish
