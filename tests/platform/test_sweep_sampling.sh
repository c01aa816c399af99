#!/usr/bin/env bash
# platform_sweep_sampling: grid coverage (and its cap), max_total_runs and
# max_concurrent_runs (never more children active at once), reproducible
# random sampling by seed with every expression type, an end-to-end bayesian
# sweep, warm start from earlier sweeps, random sampling over a finite space
# (no point twice, then the sweep ends), the warning when the compute target
# runs fewer children at once than max_concurrent_runs, and bad sweep files
# rejected before anything starts.
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
# sweep_file NAME SAMPLING_JSON EXTRA_JSON [ARGS_JSON]
sweep_file() {
  cat > "$T/$1.json" <<JSON
{"experiment": "s", "run": {"source": "$T/src", "entry": "score.sh", "compute": "cpu", "arguments": ${4:-[]}},
 "sampling": $2, "primary_metric": {"name": "score", "goal": "maximize"}, $3}
JSON
}
nruns() {  # nruns [--parent SWEEP]: how many runs (the children of SWEEP)
  run_ok $K run list "$@" --limit 100000 --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}
children() {  # children() SWEEP EXPR: one line per child in index order
  $K sweep show "$1" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
for c in sorted(j["children"], key=lambda c: c["index"]):
    p = c["parameters"]
    print(eval(sys.argv[1]))' "$2"
}

# --- grid: every combination once, in order; capped by max_total_runs -------------------
sweep_file grid '{"type": "grid", "space": {"--a": {"choice": [1, 2, 3]}, "b": {"choice": ["x", "y"]}}}' '"max_concurrent_runs": 2'
sweep_file gridcap '{"type": "grid", "space": {"--a": {"choice": [1, 2, 3]}, "b": {"choice": ["x", "y"]}}}' '"max_total_runs": 4, "max_concurrent_runs": 4'
# --- random with every expression type, twice with seed 7 and once with 8 --------------
SPACE='{"--c": {"choice": [16, 32, "adam"]}, "--r": {"randint": [4]}, "--u": {"uniform": [-1, 1]},
  "--qu": {"quniform": [0, 10, 2.5]}, "--lu": {"loguniform": [-9.2, -2.3]}, "--qlu": {"qloguniform": [0, 4.6, 5]},
  "--n": {"normal": [0, 1]}, "--qn": {"qnormal": [100, 10, 1]}, "--ln": {"lognormal": [0, 1]}, "--qln": {"qlognormal": [2, 0.5, 0.5]}}'
for n in 1 2; do sweep_file "seven$n" '{"type": "random", "seed": 7, "space": '"$SPACE"'}' '"max_total_runs": 5, "max_concurrent_runs": 5'; done
sweep_file eight '{"type": "random", "seed": 8, "space": '"$SPACE"'}' '"max_total_runs": 5, "max_concurrent_runs": 5'
# --- concurrency: 7 runs, 3 at once, on an 8-node target -----------------------------------
sweep_file conc '{"type": "random", "seed": 1, "space": {"--x": {"uniform": [0, 1]}}}' '"max_total_runs": 7, "max_concurrent_runs": 3' '["--epochs", "2", "--sleep", "0.4"]'
# --- bayesian with the median policy --------------------------------------------------------
sweep_file bayes '{"type": "bayesian", "seed": 3, "space": {"--x": {"uniform": [0, 1]}, "--lr": {"loguniform": [-6, -1]}, "--o": {"choice": ["sgd", "adam"]}}}' \
  '"max_total_runs": 10, "max_concurrent_runs": 2, "policy": {"type": "median", "delay_evaluation": 1}' '["--epochs", "2"]'
declare -A S
for n in grid gridcap seven1 seven2 eight conc bayes; do S[$n]="$(run_ok $K sweep submit "$T/$n.json" | tail -1)"; done
declare -A W
for n in grid gridcap seven1 seven2 eight conc bayes; do
  W[$n]="$($K sweep wait "${S[$n]}" --timeout 150 2>&1)" || fail "sweep $n did not complete: ${W[$n]}"
done
assert_eq 6 "$(echo "${W[grid]}" | grep -c " Completed score ")" "sweep wait prints a line for each child that ended"
assert_contains "$(echo "${W[grid]}" | tail -1)" "Sweep ${S[grid]}: Completed (6 runs); best run" "sweep wait ends with the best run"

assert_eq "1 x,1 y,2 x,2 y,3 x,3 y" "$(children "${S[grid]}" 'p["--a"] + " " + p["b"]' | paste -sd,)" "grid: all 6 combinations, each once, first parameter slowest"
assert_eq 6 "$(nruns --parent "${S[grid]}")" "grid: 6 child runs"
assert_eq "Completed - every grid point was run" "$($K sweep show "${S[grid]}" | sed -n 's/^status: *//p')" "grid sweep ends when every point was run"
assert_eq "1 x,1 y,2 x,2 y" "$(children "${S[gridcap]}" 'p["--a"] + " " + p["b"]' | paste -sd,)" "grid capped by max_total_runs 4: the first 4 combinations"
c="$(children "${S[grid]}" 'c["id"]' | head -1)"
assert_contains "$(jget "$(run_ok $K run show "$c" --json)" '" ".join(j["arguments"])')" "--a 1 --b x" "a name without dashes is passed as --b"

s7a="$(children "${S[seven1]}" 'json.dumps(p, sort_keys=True)')"
s7b="$(children "${S[seven2]}" 'json.dumps(p, sort_keys=True)')"
s8="$(children "${S[eight]}" 'json.dumps(p, sort_keys=True)')"
assert_eq "$s7a" "$s7b" "random sampling with seed 7 twice: the same 5 points in the same order"
[ "$s7a" != "$s8" ] && ok "seed 8 gives other points" || fail "seed 8 gave the same points as seed 7"
echo "$s7a" | head -2
bad="$(printf '%s\n%s\n' "$s7a" "$s8" | python3 -c '
import json, math, sys
bad = []
for line in sys.stdin:
    p = json.loads(line)
    f = {k: (float(v) if k != "--c" else v) for k, v in p.items()}
    ok = (p["--c"] in ("16", "32", "adam") and f["--r"] in (0, 1, 2, 3) and p["--r"].isdigit()
          and -1 <= f["--u"] <= 1 and f["--qu"] in (0, 2.5, 5, 7.5, 10)
          and math.exp(-9.2) * 0.999 <= f["--lu"] <= math.exp(-2.3) * 1.001
          and f["--qlu"] % 5 == 0 and 0 <= f["--qlu"] <= 100 and f["--qn"] == int(f["--qn"]) and f["--ln"] > 0
          and abs(f["--qln"] / 0.5 - round(f["--qln"] / 0.5)) < 1e-9)
    if not ok: bad.append(line.strip())
print("\n".join(bad))')"
assert_eq "" "$bad" "every sampled value is inside its expression (randint 0..3, quniform multiples of 2.5, ...)"
c="$(children "${S[seven1]}" 'c["id"]' | head -1)"
tj="$(run_ok $K run show "$c" --json)"
assert_eq "$(children "${S[seven1]}" 'p["--lu"]' | head -1)" "$(jget "$tj" 'j["tags"]["--lu"]')" "child tagged with its sampled value"

assert_eq 7 "$(nruns --parent "${S[conc]}")" "max_total_runs 7: exactly 7 children"
maxc="$(sql "SELECT created, ended FROM runs WHERE parent_id='${S[conc]}'" | python3 -c '
import sys
iv = [tuple(map(float, l.split("|"))) for l in sys.stdin if l.strip()]
print(max(sum(1 for a, b in iv if a <= t < b) for t, _ in iv))')"
assert_eq 3 "$maxc" "max_concurrent_runs 3: at most (and at some point exactly) 3 children between submission and end"

assert_eq 10 "$(nruns --parent "${S[bayes]}")" "bayesian: 10 children"
clog="$WS/runs/${S[bayes]}/controller.log"
ngp="$(grep -c "GP on" "$clog")"
[ "$ngp" -ge 2 ] && ok "bayesian: later trials ($ngp) come from the GP model" || fail "bayesian: only $ngp GP trials: $(cat "$clog")"
assert_contains "$(cat "$clog")" "trial 0: random point" "bayesian: the first trials are random"
run_ok $K sweep best "${S[bayes]}" >/dev/null

# --- warm start: grid skips what an earlier sweep ran; bayesian starts with its results ----
sweep_file warmgrid '{"type": "grid", "space": {"--a": {"choice": [1, 2, 3]}, "b": {"choice": ["x", "y"]}}}' '"warm_start": ["'"${S[gridcap]}"'"]'
sweep_file warmbayes '{"type": "bayesian", "seed": 4, "space": {"--x": {"uniform": [0, 1]}, "--lr": {"loguniform": [-6, -1]}, "--o": {"choice": ["sgd", "adam"]}}}' \
  '"max_total_runs": 2, "max_concurrent_runs": 1, "warm_start": ["'"${S[bayes]}"'"]' '["--epochs", "2"]'
wg="$(run_ok $K sweep submit "$T/warmgrid.json" | tail -1)"
wb="$(run_ok $K sweep submit "$T/warmbayes.json" | tail -1)"
run_ok $K sweep wait "$wg" --timeout 60 >/dev/null
run_ok $K sweep wait "$wb" --timeout 60 >/dev/null
assert_eq "3 x,3 y" "$(children "$wg" 'p["--a"] + " " + p["b"]' | paste -sd,)" "warm-started grid runs only the combinations the earlier sweep did not"
assert_contains "$(cat "$WS/runs/$wb/controller.log")" "trial 0: GP on 10 observations" "warm-started bayesian sweep models the earlier sweep's 10 results from its first trial"

# --- random over a finite space: no point twice, then the sweep ends ----------------------
sweep_file finite '{"type": "random", "seed": 2, "space": {"--a": {"choice": [1, 2, 3]}, "b": {"choice": ["x", "y"]}}}' '"max_total_runs": 10, "max_concurrent_runs": 3'
fs="$($K sweep submit "$T/finite.json" 2>"$T/finite.err" | tail -1)"
assert_contains "$(cat "$T/finite.err")" "the space has only 6 points and random sampling does not repeat a point: the sweep stops after 6 runs" \
  "submit says that a 6-point space ends a random sweep of 10 after 6 runs"
assert_not_contains "$(cat "$T/finite.err")" "compute target" "no capacity warning when the target (8 nodes) can run the sweep's 3 at once"
run_ok $K sweep wait "$fs" --timeout 90 >/dev/null
assert_eq "1 x,1 y,2 x,2 y,3 x,3 y" "$(children "$fs" 'p["--a"] + " " + p["b"]' | sort | paste -sd,)" \
  "random sampling over 6 points: 6 children, every point once (none drawn twice)"
assert_contains "$($K sweep show "$fs" | sed -n 's/^status: *//p')" "Completed - every point of the space was run (6 points" \
  "the sweep ends when every point was run, and says so"

# --- capacity: a compute target smaller than max_concurrent_runs is warned about ----------
run_ok $K compute create small --max-nodes 2 >/dev/null
cat > "$T/small.json" <<JSON
{"experiment": "s", "run": {"source": "$T/src", "entry": "score.sh", "compute": "small"},
 "sampling": {"type": "random", "seed": 1, "space": {"--x": {"uniform": [0, 1]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}, "max_total_runs": 4, "max_concurrent_runs": 4}
JSON
ss="$($K sweep submit "$T/small.json" 2>"$T/small.err" | tail -1)"
assert_contains "$(cat "$T/small.err")" "warning: compute target 'small' runs at most 2 runs at once (--max-nodes 2), fewer than the sweep's 4 at once (max_concurrent_runs)" \
  "sweep submit warns when the target's max nodes are below max_concurrent_runs"
assert_contains "$(cat "$T/small.err")" "hint: use a target with --max-nodes 4 or more" "with what to do"
run_ok $K sweep wait "$ss" --timeout 90 >/dev/null
run_ok $K compute delete small >/dev/null

# --- bad sweep files: a clear message naming the field, nothing recorded ------------------------
nbefore="$(nruns)"
bad_file() {  # bad_file MESSAGE JSON
  echo "$2" > "$T/bad.json"
  expect_fail "$1" $K sweep submit "$T/bad.json"
}
R='"run": {"source": "'"$T/src"'", "entry": "score.sh"}'
M='"primary_metric": {"name": "score", "goal": "maximize"}'
bad_file "sampling.space.--x: unknown expression 'gaussian'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"gaussian": [0, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "sampling.space.--x.choice: is empty" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"choice": []}}}, '"$M"', "max_total_runs": 2}'
bad_file "sampling.space.--x.uniform: min 2 > max 1" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [2, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "sampling.space.--x.qloguniform: min 3 > max 1" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"qloguniform": [3, 1, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "field 'primary_metric.goal': unknown goal 'maximise'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, "primary_metric": {"name": "score", "goal": "maximise"}, "max_total_runs": 2}'
bad_file "missing field 'primary_metric.goal'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, "primary_metric": {"name": "score"}, "max_total_runs": 2}'
bad_file "unknown policy 'bandits'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "policy": {"type": "bandits"}, "max_total_runs": 2}'
bad_file "needs exactly one of 'policy.slack_factor' and 'policy.slack_amount'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "policy": {"type": "bandit"}, "max_total_runs": 2}'
bad_file "missing field 'policy.truncation_percentage'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "policy": {"type": "truncation"}, "max_total_runs": 2}'
bad_file "unknown sampling 'sobol'" '{"experiment": "b", '"$R"', "sampling": {"type": "sobol", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "grid sampling takes only choice expressions, not uniform" '{"experiment": "b", '"$R"', "sampling": {"type": "grid", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"'}'
bad_file "missing field 'max_total_runs'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"'}'
bad_file "missing field 'primary_metric'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, "max_total_runs": 2}'
bad_file "missing field 'run.entry'" '{"experiment": "b", "run": {"source": "'"$T/src"'"}, "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "field 'run.entry': 'nope.sh' is not a file" '{"experiment": "b", "run": {"source": "'"$T/src"'", "entry": "nope.sh"}, "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "no compute target named 'gpu'" '{"experiment": "b", "run": {"source": "'"$T/src"'", "entry": "score.sh", "compute": "gpu"}, "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "unknown field 'max_runs'" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_runs": 2}'
bad_file "field 'warm_start': 'b_999' is not a sweep" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"uniform": [0, 1]}}}, '"$M"', "max_total_runs": 2, "warm_start": ["b_999"]}'
bad_file "sampling.space.--x.randint: upper must be an integer >= 1" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"randint": [0]}}}, '"$M"', "max_total_runs": 2}'
bad_file "sigma must be > 0" '{"experiment": "b", '"$R"', "sampling": {"type": "random", "space": {"--x": {"normal": [0, -1]}}}, '"$M"', "max_total_runs": 2}'
bad_file "not a JSON object" '{"experiment": '
assert_eq "$nbefore" "$(nruns)" "no run was recorded by any rejected sweep file"
assert_eq 0 "$(run_ok $K experiment list --json | python3 -c 'import json, sys; print(sum(e["name"] == "b" for e in json.load(sys.stdin)))')" "nor an experiment"
# sweep controllers run detached: their sanitizer reports land in controller.log
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/controller.log 2>/dev/null)"
[ -z "$bad" ] && ok "no sanitizer reports from sweep controllers" || fail "sanitizer reports: $(head -40 $bad)"
finish
