#!/usr/bin/env bash
# platform_filter: run filters and orders evaluated in the store (issue 12):
# `run list --filter EXPR --order-by KEY --max N --page-token T` over runs
# with known metrics, params (run submit --param) and tags. Every expected
# set and order is computed here, in Python, from the table the runs were
# made from (never by kusari): every operator, and/or/parentheses, orders by
# a metric, a param and attributes, pages covering every run exactly once,
# errors with their positions (exit 2), an injection attempt treated as
# data, KUSARI_PARAM_* for the entry, a sweep's children's params, and the
# migration of a schema-5 store (params backfilled from sweep trials).
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 8 >/dev/null
mkdir -p "$T/src"
# logs --acc (each value in turn: the latest is the last) and --loss; the
# param bs comes back through the environment as the metric bs_env
cat > "$T/src/log.sh" <<'SH'
acc=""; loss=""; fail=0
while [ $# -gt 0 ]; do case "$1" in --acc) acc=$2; shift;; --loss) loss=$2; shift;; --fail) fail=1;; esac; shift; done
for a in $acc; do kusari log metric acc "$a"; done
[ -n "$loss" ] && kusari log metric loss "$loss"
[ -n "$KUSARI_PARAM_bs" ] && kusari log metric bs_env "$KUSARI_PARAM_bs"
exit $fail
SH
# the table: name | acc values ("" = none) | loss | bs | lr | team tag | fails
TABLE="r0|0.5 0.1|0.9|128|0.1|vision|0
r1|0.3 0.7|0.5|64|0.01|Vision-2|0
r2||0.4|128|0.001|nlp|0
r3|0.2 0.9|0.8|large|0.1|vision|0
r4|0.7|0.3|32|0.05|speech|1
r5|0.05 0.3|0.2|64|0.01|nlp|0
r6|0.9 0.7|0.6|128|0.02|vision|0"
declare -A ID
while IFS='|' read -r name acc loss bs lr team fails; do
  args=(--loss "$loss")
  [ -n "$acc" ] && args+=(--acc "$acc")
  [ "$fails" = 1 ] && args+=(--fail)
  ID[$name]="$(submit --experiment filt --source "$T/src" --entry log.sh --param "bs=$bs" --param "lr=$lr" \
    --tag "team=$team" --tag "name=$name" -- "${args[@]}")"
done <<< "$TABLE"
# a sweep over --acc, whose children get the params 0.25 and 0.75 (checked below)
cat > "$T/sweep.json" <<JSON
{"experiment": "swp", "run": {"source": "$T/src", "entry": "log.sh", "compute": "cpu", "arguments": []},
 "sampling": {"type": "grid", "space": {"--acc": {"choice": [0.25, 0.75]}}},
 "primary_metric": {"name": "acc", "goal": "maximize"}, "max_concurrent_runs": 2}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
# one run in another experiment, which --experiment leaves out
OTHER="$(submit --experiment elsewhere --source "$T/src" --entry log.sh --param bs=128 -- --acc 0.99 --loss 0.1)"
for r in "${ID[@]}" "$OTHER"; do $K run wait "$r" >/dev/null 2>&1; done
MAP="$(for n in "${!ID[@]}"; do echo "${ID[$n]}=$n"; done)"

# The checks that compare with expected sets and orders run in one Python
# process (its start-up is slow on a loaded machine): it runs kusari for each
# filter and computes what each must give from TABLE (r: name, i (submission
# order), acc (latest value or None), loss, bs, lr, team, status). Prints
# "ok: ..." and "FAIL: ..." lines.
checks() {
  python3 - "$K" "$TABLE" "$MAP" "$OTHER" <<'PY'
import json, subprocess, sys
K, table, idmap, other = sys.argv[1:5]
name_of = dict(l.split("=") for l in idmap.splitlines())
id_of = {v: k for k, v in name_of.items()}
rows = []
for i, line in enumerate(table.splitlines()):
    name, acc, loss, bs, lr, team, fails = line.split("|")
    rows.append(dict(i=i, name=name, acc=float(acc.split()[-1]) if acc else None, loss=float(loss), bs=bs, lr=float(lr),
                     team=team, status="Failed" if fails == "1" else "Completed"))
def num(v):
    try: return float(v)
    except ValueError: return None
def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
def kusari(*args):
    p = subprocess.run([K, *args], capture_output=True, text=True)
    if p.returncode != 0:
        check(False, "kusari %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr.strip()))
        return None
    return json.loads(p.stdout)
def names(runs):
    return " ".join(name_of.get(r["id"], r["id"]) for r in runs)

# expect(PYEXPR, FILTER): the runs of 'filt' that --filter keeps, newest first,
# are the rows for which PYEXPR holds, newest first
def expect(py, flt):
    want = " ".join(r["name"] for r in reversed(rows) if eval(py, {"num": num}, {"r": r}))
    got = kusari("run", "list", "--experiment", "filt", "--filter", flt, "--json")
    check(got is not None and names(got) == want, '--filter "%s": expected [%s], got [%s]' % (flt, want, got and names(got)))

# every operator, on metrics, params, tags and attributes
expect('r["acc"] is not None and r["acc"] > 0.5', "metrics.acc > 0.5")
expect('r["acc"] is not None and r["acc"] >= 0.7', "metrics.acc >= 0.7")
expect('r["acc"] is not None and r["acc"] < 0.3', "metrics.acc < 0.3")
expect('r["acc"] is not None and r["acc"] <= 0.3', "metrics.acc <= 0.3")
expect('r["acc"] is not None and r["acc"] == 0.7', "metrics.acc = 0.7")
expect('r["acc"] is not None and r["acc"] != 0.7', "metrics.acc != 0.7")
expect('r["acc"] in (0.1, 0.9)', "metrics.acc IN (0.1, 0.9)")
expect('r["acc"] is not None and r["acc"] not in (0.1, 0.9)', "metrics.acc not in (0.1, 0.9)")
expect('r["bs"] == "128"', "params.bs = 128")
expect('r["bs"] == "128"', "params.bs = '128'")
expect('num(r["bs"]) is not None and num(r["bs"]) < 100', "params.bs < 100")
expect('num(r["bs"]) is not None and num(r["bs"]) >= 64', "params.bs >= 64")
expect('r["bs"] != "64"', "params.bs != '64'")
expect('r["lr"] <= 0.01', "params.lr <= 0.01")
expect('r["lr"] > 0.01', "params.lr > 0.01")
expect('r["bs"] in ("32", "large")', "params.bs in (32, 'large')")
expect('r["team"].startswith("vision")', "tags.team LIKE 'vision%'")
expect('r["team"].lower().startswith("vision")', "tags.team ILIKE 'VISION%'")
expect('not r["team"].startswith("vision")', "tags.team NOT LIKE 'vision%'")
expect('not r["team"].lower().startswith("vision")', "tags.team not ilike 'vision%'")
expect('len(r["team"]) == 3', "tags.team like '___'")
expect('r["team"] in ("nlp", "speech")', "tags.team in ('nlp', \"speech\")")
expect('r["team"] not in ("nlp", "speech")', "tags.team NOT IN ('nlp', 'speech')")
expect('r["status"] == "Failed"', "status = 'Failed'")
expect('r["status"] != "Failed"', "status != 'Failed'")
expect('True', "experiment = 'filt' and created > '2020-01-01' and duration >= 0")
expect('False', "parent = 'filt_1'")
expect('r["name"] == "r2"', "id = '%s'" % id_of["r2"])
# and binds tighter than or; parentheses group
expect('r["acc"] is not None and r["acc"] > 0.5 and r["bs"] == "128" and r["status"] == "Completed"',
       "metrics.acc > 0.5 and params.bs = 128 and status = 'Completed'")
expect('(r["acc"] is not None and r["acc"] > 0.8) or (r["team"] == "nlp" and r["loss"] < 0.3)',
       "metrics.acc > 0.8 OR tags.team = 'nlp' AND metrics.loss < 0.3")
expect('(r["team"] == "vision" or r["team"] == "nlp") and r["loss"] < 0.7',
       "(tags.team = 'vision' or tags.team = 'nlp') and metrics.loss < 0.7")
# the entry saw its param bs as KUSARI_PARAM_bs (it logged it back as bs_env)
expect('r["bs"] == "64"', "metrics.bs_env = 64")
# user text is data
expect('False', "tags.team = 'x'' OR 1=1 --'")
expect('False', "tags.team = 'vision''; DROP TABLE runs; --'")
expect('False', "params.`bs = bs) OR (1=1` = 1")
expect('False', "tags.`team' OR '1'='1` LIKE '%'")

j = kusari("run", "show", id_of["r1"], "--json")
check(j is not None and j["params"] == {"bs": "64", "lr": "0.01"}, "run show --json has the run's params: %s" % (j and j["params"]))
j = kusari("run", "list", "--experiment", "filt", "--filter", "tags.name = 'r1'", "--json")
check(j is not None and j[0]["params"]["bs"] == "64", "run list --json has the params")
j = kusari("run", "list", "--filter", "metrics.acc > 0.95", "--json")
check(j is not None and [r["id"] for r in j] == [other], "no --experiment: the runs of every experiment")

# order(PYKEY, ORDER, desc): --order-by ORDER gives the rows sorted by PYKEY,
# runs without a value last, ties newest first
def order(key, spec, desc):
    vals = [(eval(key, {"num": num}, {"r": r}), r) for r in rows]
    has = sorted([(v, r) for v, r in vals if v is not None], key=lambda vr: -vr[1]["i"])
    has.sort(key=lambda vr: vr[0], reverse=desc)
    none = sorted([r for v, r in vals if v is None], key=lambda r: -r["i"])
    want = " ".join([r["name"] for v, r in has] + [r["name"] for r in none])
    got = kusari("run", "list", "--experiment", "filt", "--order-by", spec, "--json")
    check(got is not None and names(got) == want, '--order-by "%s": expected [%s], got [%s]' % (spec, want, got and names(got)))
order('r["acc"]', "metrics.acc DESC", True)
order('r["acc"]', "metrics.acc", False)
order('r["loss"]', "metrics.loss asc", False)
order('r["lr"]', "params.lr desc", True)
order('(0, num(r["bs"])) if num(r["bs"]) is not None else (1, r["bs"])', "params.bs", False)  # numbers as numbers, then text
order('r["team"]', "tags.team DESC", True)
order('r["i"]', "id", False)
order('r["i"]', "created desc", True)
got = kusari("run", "list", "--experiment", "filt", "--order-by", "metrics.acc", "desc", "--limit", "1", "--json")
check(got is not None and names(got) == "r3", "--order-by KEY desc (two words) and --limit still work")

# pages: every run exactly once, in the order of one list
def pages(mx, flt, spec):
    out, tok, n = [], None, 0
    while True:
        args = ["run", "list", "--experiment", "filt", "--filter", flt, "--order-by", spec, "--max", str(mx), "--json"]
        page = kusari(*args + (["--page-token", tok] if tok else []))
        if page is None: return None
        if len(page["runs"]) > mx: check(False, "a page of --max %d held %d runs" % (mx, len(page["runs"])))
        out += [r["id"] for r in page["runs"]]
        tok, n = page["next_page_token"], n + 1
        if not tok or n > 20: return out
full = [r["id"] for r in kusari("run", "list", "--experiment", "filt", "--order-by", "metrics.loss desc", "--json")]
for mx in (1, 2, 3, 7):
    got = pages(mx, "", "metrics.loss desc")
    check(got == full and len(set(got)) == len(rows), "--max %d: the pages hold every run exactly once, in order" % mx)
fullf = [r["id"] for r in kusari("run", "list", "--experiment", "filt", "--filter", "metrics.acc >= 0.3", "--order-by",
                                  "metrics.acc desc", "--json")]
want = [id_of[r["name"]] for r in rows if r["acc"] is not None and r["acc"] >= 0.3]
check(sorted(fullf) == sorted(want) and len(fullf) == 5, "the filter keeps the five runs with acc >= 0.3")
check(pages(2, "metrics.acc >= 0.3", "metrics.acc desc") == fullf, "pages with a filter and ties (three runs at 0.7)")
PY
}
while IFS= read -r line; do
  case "$line" in ok:*) echo "$line" ;; FAIL:*) fail "${line#FAIL: }" ;; *) fail "checks: $line" ;; esac
done < <(checks 2>&1)

txt="$($K run list --experiment filt --max 2)"
assert_contains "$txt" "next page: --page-token " "the text output gives the next page's token"
tok="$(echo "$txt" | sed -n 's/^next page: --page-token //p')"
if [ "${tok: -1}" = 0 ]; then alt="${tok%?}1"; else alt="${tok%?}0"; fi
expect_fail "page token" $K run list --experiment filt --max 2 --page-token "$alt"
$K run list --experiment filt --max 2 --page-token "$alt" >/dev/null 2>&1; assert_eq 2 $? "an altered page token exits 2"
$K run list --experiment filt --max 2 --page-token "$tok" --filter "status = 'Failed'" >/dev/null 2>&1
assert_eq 2 $? "a page token of another search exits 2"
assert_eq 4 "$($K run list --experiment filt --max 2 --page-token "$tok" | wc -l)" "the right token gives the next page (header, two runs, the next token)"

# --- bad filters: exit 2, the position, the text with a caret ---------------------------------
bad() {
  local err rc
  err="$($K run list --filter "$1" 2>&1 >/dev/null)"; rc=$?
  assert_eq 2 "$rc" "bad filter \"$1\" exits 2"
  assert_contains "$err" "$2" "bad filter \"$1\": the message"
}
bad "metrics.acc > " "kusari: error: --filter: position 15: expected a value (a number or a 'quoted string') after '>'"
bad "metrics.Accuracy > 0.9 and params.batchsize =" "position 46: expected a value"
bad "metrics.acc >> 1" "position 14: expected a value"
bad "status = 'Bogus'" "position 10: 'Bogus' is not a run status"
bad "metrics.acc > 'high'" "position 15: metrics.acc is a number"
bad "colour = 'red'" "position 1: unknown attribute 'colour'"
bad "(metrics.acc > 1 or metrics.loss < 1" "position 37: expected AND, OR or ')' to close the '(' at position 1"
bad "tags.team = 'vision" "position 13: the string opened here is not closed"
bad "metrics.acc 1" "position 13: expected an operator"
bad "params.bs in 1, 2" "position 14: expected '(' and a list of values after 'IN'"
err="$($K run list --filter "metrics.acc > " 2>&1)"
assert_contains "$err" "$(printf '  hint: metrics.acc > \n%22s^ here' '')" "the hint points at the position"
err="$($K run list --order-by "metrics.acc sideways" 2>&1)"; rc=$?
assert_eq 2 $rc "a bad --order-by exits 2"
assert_contains "$err" "position 13: expected ASC, DESC" "a bad --order-by says where"

# --- injection attempts are data ---------------------------------------------------------------
before="$(sql "SELECT count(*) FROM runs")"
bad "status = 'x' OR 1=1 --" "position 10: 'x' is not a run status"
bad "tags.team = 'vision' OR 1=1 --" "position 25: expected a key"
assert_eq "$before" "$(sql "SELECT count(*) FROM runs")" "the runs table is intact"

# --- --param: bad names refused; the value is kept as text --------------------------------------
expect_fail "must look like NAME=VALUE" $K run submit --experiment filt --source "$T/src" --entry log.sh --param "1bs=3"
expect_fail "must look like NAME=VALUE" $K run submit --experiment filt --source "$T/src" --entry log.sh --param "b-s=3"
expect_fail "must look like NAME=VALUE" $K run submit --experiment filt --source "$T/src" --entry log.sh --param "novalue"
assert_eq "$before" "$(sql "SELECT count(*) FROM runs")" "a refused submit records nothing"

# --- a sweep's children get their params; a schema-5 store gets them by migration -------------
run_ok $K sweep wait "$SW" --timeout 120 --quiet >/dev/null
j="$($K run list --parent "$SW" --filter "params.--acc > 0.5" --json)"
assert_eq "1 0.75" "$(jget "$j" '"%d %s" % (len(j), j[0]["params"]["--acc"])')" "a sweep child's params are recorded and filter"
assert_eq "0.75" "$(jget "$($K run list --parent "$SW" --order-by 'params.`--acc` desc' --json)" 'j[0]["params"]["--acc"]')" \
  "sweep children order by a param"
assert_eq "$SW" "$($K run list --experiment swp --filter "metrics.best_child_by_primary_metric = 0.75" | awk 'NR > 1 {print $1}')" \
  "the sweep's best value (logged by its controller) filters its parent run"
# back to schema 5 (as an older kusari left it), then any command migrates
child="$(jget "$j" 'j[0]["id"]')"
if [ "$KUSARI_TEST_STORE" = postgresql ]; then
  sql "DROP TABLE params; DROP TABLE metric_latest; DROP INDEX tags_by_key; DROP TABLE store_meta;
       DROP FUNCTION kp_num; DROP FUNCTION kp_jsonb; DROP FUNCTION kp_json_text; UPDATE schema_version SET version=5"
  tables_of_6="SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('params', 'metric_latest')"
  schema_version="SELECT version FROM schema_version"
else
  sql "DROP TABLE params; DROP TABLE metric_latest; DROP TRIGGER params_of_sweep_trial; DROP INDEX tags_by_key;
       DROP TRIGGER metric_latest_of_sweep_best; DROP TRIGGER run_search_on_run_delete;
       DROP TABLE store_meta; PRAGMA user_version=5"
  tables_of_6="SELECT count(*) FROM sqlite_master WHERE name IN ('params', 'metric_latest')"
  schema_version="PRAGMA user_version"
fi
assert_eq "0" "$(sql "$tables_of_6")" "schema 5 has no params"
j="$($K run list --parent "$SW" --filter "params.--acc = 0.75 and metrics.acc = 0.75" --json)"
assert_eq "$child" "$(jget "$j" 'j[0]["id"]')" "migration 6 backfilled the children's params and the latest metric values"
SV="$($K --version | sed -n 's/.*(schema \([0-9]*\)).*/\1/p')"   # the schema version of this build
assert_eq "$SV" "$(sql "$schema_version")" "the store is at the current schema ($SV: 6, then the server's tokens, the ranks' metrics, the Finalizing time)"
assert_eq "$(for n in r1 r3 r4 r6; do echo "${ID[$n]}"; done | sort | xargs)" \
  "$($K run list --experiment filt --filter "metrics.acc > 0.5" | awk 'NR > 1 {print $1}' | sort | xargs)" \
  "after the migration, metric filters work on the runs' latest values"
finish
