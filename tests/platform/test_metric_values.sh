#!/usr/bin/env bash
# platform_metric_values: what a metric value may be, and how it is shown.
# NaN, +Inf and -Inf are recorded as logged, from the CLI and from the C
# client (a diverged loss is a result worth seeing, as in MLflow); they print
# as nan/inf/-inf in text and CSV and as the strings "NaN", "Infinity",
# "-Infinity" in JSON (valid JSON that Python's float() reads back); a value
# that overflows a double is refused; a sweep never takes a non-finite value
# as a child's best. `run metrics` text shows each value's time.
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
run_ok $K compute create cpu --max-nodes 2 >/dev/null

# --- the CLI -----------------------------------------------------------------------------
mkdir -p "$T/sh"
cat > "$T/sh/log.sh" <<'SH'
for v in nan inf -inf NaN -Infinity 0.25; do kusari log metric v "$v" || echo "refused $v"; done
kusari log metric big 1e999 2>&1 || echo "refused 1e999 with exit $?"
kusari log metric tiny 1e-400 || echo "refused 1e-400"
SH
id="$(submit --experiment mv --source "$T/sh" --entry log.sh)"
out="$($K run wait "$id" --show-output)" || fail "the shell entry did not complete: $out"
assert_not_contains "$out" "refused nan" "kusari log metric accepts nan"
assert_not_contains "$out" "refused 1e-400" "an underflow is a (zero) value, not an error"
assert_contains "$out" "VALUE '1e999' is not a number" "a value that overflows a double is refused, not turned into inf"
assert_contains "$out" "refused 1e999 with exit 2" "with exit status 2"
csv="$(run_ok $K run metrics "$id" --csv --name v)"
assert_eq "nan inf -inf nan -inf 0.25" "$(echo "$csv" | tail -n +2 | cut -d, -f4 | xargs)" "CSV: non-finite values as nan, inf, -inf"
mj="$(run_ok $K run metrics "$id" --json --name v)"
assert_eq "['NaN', 'Infinity', '-Infinity', 'NaN', '-Infinity', 0.25]" "$(jget "$mj" '[m["value"] for m in j["v"]]')" \
  "JSON: the strings NaN, Infinity, -Infinity (valid JSON), finite values as numbers"
assert_eq "nan inf -inf" "$(jget "$mj" '" ".join(str(float(m["value"])) for m in j["v"][:3])')" "which Python's float() reads back"
txt="$(run_ok $K run metrics "$id" --name v)"
assert_eq "nan inf -inf nan -inf 0.25" "$(echo "$txt" | awk '/step/ {print $4}' | xargs)" "text: nan, inf, -inf"
assert_eq 6 "$(echo "$txt" | grep -cE '^  step [0-9]+ +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z  ')" \
  "text: every value with its time (UTC, milliseconds), as --help promises"
assert_contains "$(run_ok $K run metrics --help)" "its time (UTC, as logged)" "run metrics --help says what the text shows"
assert_eq 0 "$(jget "$(run_ok $K run metrics "$id" --json --name tiny)" 'j["tiny"][0]["value"]')" "1e-400 is stored as 0"

# every view of a latest value agrees: JSON strings, text nan/inf
printf 'kusari log metric last "$1"\n' > "$T/sh/last.sh"
nid="$(submit --experiment lastv --source "$T/sh" --entry last.sh -- nan)"; run_ok $K run wait "$nid" >/dev/null
iid="$(submit --experiment lastv --source "$T/sh" --entry last.sh -- inf)"; run_ok $K run wait "$iid" >/dev/null
assert_eq "NaN Infinity" "$(jget "$(run_ok $K run show "$nid" --json)" 'j["metrics"]["last"]') $(jget "$(run_ok $K run show "$iid" --json)" 'j["metrics"]["last"]')" \
  "run show --json: NaN and Infinity as in run metrics"
assert_eq "['Infinity', 'NaN']" "$(jget "$(run_ok $K run list --experiment lastv --metrics last --json)" '[r["metrics"]["last"] for r in j]')" \
  "run list --metrics --json: the same strings"
assert_eq "inf nan" "$(run_ok $K run list --experiment lastv --metrics last | tail -n +2 | awk '{print $NF}' | xargs)" \
  "run list --metrics text: inf and nan"
assert_contains "$(run_ok $K experiment show lastv)" "inf ($iid)" "experiment show: an infinite latest value as inf"

# --- the C client (ks_run_log) -------------------------------------------------------------
mkdir -p "$T/c" && cp "$ENTRY_BIN" "$T/c/entry"
cid="$(submit --experiment mv --source "$T/c" --entry entry -- --n 1 --nonfinite 1)"
run_ok $K run wait "$cid" >/dev/null
assert_eq "['NaN', 'Infinity', '-Infinity', 2.5]" "$(jget "$(run_ok $K run metrics "$cid" --json --name nf)" '[m["value"] for m in j["nf"]]')" \
  "ks_run_log records NaN, +Inf and -Inf the same way"

# --- sweeps: an infinity is not a best value ------------------------------------------------
cat > "$T/sh/score.sh" <<'SH'
while [ $# -gt 0 ]; do case "$1" in --v) v=$2;; esac; shift 2; done
kusari log metric score "$v"
SH
cat > "$T/sweep.json" <<JSON
{"experiment": "mvs", "run": {"source": "$T/sh", "entry": "score.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--v": {"choice": ["inf", "0.5", "nan", "0.25"]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}, "max_concurrent_runs": 2}
JSON
sw="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$sw" --timeout 120 >/dev/null
best="$(run_ok $K sweep best "$sw" | tail -1)"
assert_eq "0.5" "$(jget "$(run_ok $K run show "$best" --json)" 'j["tags"]["--v"]')" \
  "the best child of a maximizing sweep is the one with 0.5, not the one that logged inf"
assert_eq 4 "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw' AND status='Completed'")" "every child completed"
finish
