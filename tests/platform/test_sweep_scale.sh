#!/usr/bin/env bash
# platform_sweep_scale: a sweep of many short children is accounted for child
# by child. The controller keeps its children in memory between ticks
# (issue 19: a 10,000-child sweep re-read every trial and curve each tick);
# this checks that nothing is lost or counted twice by that bookkeeping:
# every trial index once, one child run each, statuses as the entry decided,
# the best child and the parent's best_child_by_primary_metric curve against
# the values the children logged.
#
# 200 children in CI (about 10 s); KUSARI_SCALE_TESTS=1 runs 2,000 (about
# 80 s on a loaded 2-core machine: kept out of CI for time).
. "$(dirname "$0")/lib.sh"
n=200
[ "${KUSARI_SCALE_TESTS:-0}" = 1 ] && n=2000
run_ok $K compute create cpu --max-nodes 8 >/dev/null
mkdir -p "$T/src"
# logs score = x; fails (exit 3) when x > 0.9, after logging
cat > "$T/src/entry.sh" <<'SH'
x=0; while [ $# -gt 0 ]; do [ "$1" = --x ] && x=$2; shift 2; done
kusari log metric score "$x"
awk -v x="$x" 'BEGIN { exit (x > 0.9) ? 3 : 0 }'
SH
cat > "$T/sweep.json" <<JSON
{"experiment": "scale", "run": {"source": "$T/src", "entry": "entry.sh", "compute": "cpu"},
 "sampling": {"type": "random", "seed": 5, "space": {"--x": {"uniform": [0, 1]}}},
 "primary_metric": {"name": "score", "goal": "maximize"},
 "max_total_runs": $n, "max_concurrent_runs": 8}
JSON
sw="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$sw" --quiet --timeout 900 >/dev/null
show="$($K sweep show "$sw" --json)"
assert_eq Completed "$(jget "$show" 'j["status"]')" "the $n-child sweep Completed"
assert_eq "$n" "$(jget "$show" 'len(j["children"])')" "sweep show lists $n children"
assert_eq "$n" "$(sql "SELECT count(DISTINCT idx) FROM sweep_trials WHERE sweep_id='$sw' AND idx BETWEEN 0 AND $n - 1")" "trial indexes 0..$((n - 1)), each once"
assert_eq "$n" "$(sql "SELECT count(*) FROM sweep_trials WHERE sweep_id='$sw'")" "no other trial"
assert_eq "$n" "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw'")" "$n child runs"
assert_eq "$n" "$(sql "SELECT count(DISTINCT t.run_id) FROM sweep_trials t JOIN runs r ON r.id=t.run_id AND r.parent_id='$sw' WHERE t.sweep_id='$sw'")" "each trial linked to its own child run"
assert_eq "$n" "$(sql "SELECT count(*) FROM sweep_trials t JOIN tags g ON g.run_id=t.run_id AND g.key='sweep_index' AND g.value=CAST(t.idx AS TEXT) WHERE t.sweep_id='$sw'")" "each child tagged with its trial's index"
# statuses as the entry decided from its x
want_failed="$(sql "SELECT count(*) FROM sweep_trials WHERE sweep_id='$sw' AND CAST(json_extract(params, '$.\"--x\"') AS REAL) > 0.9")"
assert_eq "$want_failed" "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw' AND status='Failed'")" "the children with x > 0.9 Failed ($want_failed)"
assert_eq "$((n - want_failed))" "$(sql "SELECT count(*) FROM runs WHERE parent_id='$sw' AND status='Completed'")" "the others Completed"
assert_eq "$n" "$(sql "SELECT count(*) FROM metrics m JOIN runs r ON r.id=m.run_id WHERE r.parent_id='$sw' AND m.name='score'")" "one score per child stored"
# the best child and the parent's best-so-far curve (step k: the best of the
# first k+1 children ended with a value; written when the count grows)
best_id="$(sql "SELECT m.run_id FROM metrics m JOIN runs r ON r.id=m.run_id WHERE r.parent_id='$sw' AND m.name='score' ORDER BY m.value DESC LIMIT 1")"
best_v="$(sql "SELECT max(m.value) FROM metrics m JOIN runs r ON r.id=m.run_id WHERE r.parent_id='$sw' AND m.name='score'")"
assert_eq "$best_id" "$(jget "$show" 'j["best_child"]')" "the best child is the one with the highest score"
assert_eq "$((n - 1))" "$(sql "SELECT max(step) FROM metrics WHERE run_id='$sw' AND name='best_child_by_primary_metric'")" "best_child_by_primary_metric's last step is $((n - 1)) (all $n children counted, none twice)"
assert_eq "$best_v" "$(sql "SELECT value FROM metrics WHERE run_id='$sw' AND name='best_child_by_primary_metric' AND step=$n - 1")" "its last step is the best score"
assert_eq 0 "$(sql "SELECT count(*) FROM metrics a JOIN metrics b ON a.run_id=b.run_id AND a.name=b.name AND b.step=a.step+1 WHERE a.run_id='$sw' AND a.name='best_child_by_primary_metric' AND b.value < a.value")" "and it never decreases"
assert_contains "$(cat "$WS/runs/$sw/controller.log")" "done:" "the controller logged its CPU time"
finish
