#!/usr/bin/env bash
# platform_concurrency: a local target with --max-nodes 2 never runs more
# than 2 runs at once, runs queued runs in submission order, and many
# processes submitting at once all succeed (no "database is locked").
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/job.sh" <<'SH'
echo "start $(date +%s.%N) $1" >> "$2"
kusari log metric slot "$1"
sleep 1
echo "end $(date +%s.%N) $1" >> "$2"
SH
LOG="$T/timeline"
# 6 submissions from 6 processes at once
for i in 1 2 3 4 5 6; do
  ( $K run submit --experiment conc --source "$T/src" --entry job.sh --compute cpu -- "$i" "$LOG" > "$T/sub.$i" 2>&1; echo $? > "$T/sub.$i.rc" ) &
done
wait
for i in 1 2 3 4 5 6; do assert_eq 0 "$(cat "$T/sub.$i.rc")" "concurrent submit $i succeeded ($(tail -1 "$T/sub.$i"))"; done
# watch while they run: never more than 2 active
maxrun=0; sawqueue=0
for _ in $(seq 1 100); do
  c="$($K compute show cpu --json)"
  busy="$(jget "$c" 'j["busy_nodes"]')"; q="$(jget "$c" 'j["queued_runs"]')"
  [ "$busy" -gt "$maxrun" ] && maxrun=$busy
  [ "$q" -gt 0 ] && sawqueue=1
  [ "$busy" -eq 0 ] && [ "$q" -eq 0 ] && break
  sleep 0.1
done
assert_eq 2 "$maxrun" "at most (and at best) 2 runs active at once (compute show)"
assert_eq 1 "$sawqueue" "runs beyond max-nodes waited Queued"
for id in $($K run list --experiment conc --json | python3 -c 'import json,sys; [print(r["id"]) for r in json.load(sys.stdin)]'); do
  $K run wait "$id" >/dev/null || fail "run $id did not complete"
done
# timeline of the entries themselves: max overlap must be 2
overlap="$(sort -k2 -n "$LOG" | awk '$1=="start"{n++; if(n>m)m=n} $1=="end"{n--} END{print m}')"
assert_eq 2 "$overlap" "never more than 2 entries running at once (entry timeline)"
assert_eq 12 "$(wc -l < "$LOG")" "all 6 runs started and ended"
assert_eq 6 "$(sql "SELECT count(*) FROM runs WHERE status='Completed'")" "6 runs completed"
# FIFO: queued runs take a node in submission order; runs that got free nodes
# at the same moment may claim them in either order, so a run's place in
# claim order is within max-nodes - 1 = 1 of its place in submission order
order="$(sql "SELECT seq FROM runs ORDER BY prepared, seq" | xargs)"
far="$(echo $order | awk '{for(i=1;i<=NF;i++){d=$i-i; if(d<0)d=-d; if(d>1)bad=1}} END{print bad+0}')"
assert_eq 0 "$far" "queued runs take a node in submission order (claim order: $order)"

# many writers and readers at once on one workspace: 8 background `kusari log`
# loops inside one run while this shell reads the live metrics
cat > "$T/src/many.sh" <<'SH'
for w in 1 2 3 4 5 6 7 8; do
  ( for i in $(seq 1 40); do kusari log metric hits 1 || echo "LOG FAILED"; done ) &
done
wait
SH
id="$(submit --experiment stress --source "$T/src" --entry many.sh --compute cpu)"
errs=0
for _ in $(seq 1 20); do $K run metrics "$id" --csv >/dev/null 2>>"$T/readers.err" || errs=$((errs + 1)); $K run list --json >/dev/null 2>>"$T/readers.err" || errs=$((errs + 1)); done
out="$($K run wait "$id" --show-output)"
assert_eq 0 "$errs" "concurrent readers never failed"
assert_not_contains "$(cat "$T/readers.err")" "locked" "no 'database is locked'"
assert_not_contains "$out" "LOG FAILED" "every kusari log call succeeded"
assert_eq "320 0 319 320" "$(sql "SELECT count(*), min(step), max(step), count(DISTINCT step) FROM metrics WHERE run_id='$id'" | tr '|' ' ')" "320 values from 8 processes, steps 0..319 each once"
finish
