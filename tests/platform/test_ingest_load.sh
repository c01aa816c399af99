#!/usr/bin/env bash
# platform_ingest_load (issues 18, 19): a run that logs a burst of metrics
# with distinct names (KUSARI_INGEST_NAMES, 250,000 by default) while other
# processes submit runs and register models: every submit and registration
# succeeds (ingestion commits in bounded chunks, so nobody waits long for the
# write lock), and every point is stored exactly once.
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
N="${KUSARI_INGEST_NAMES:-250000}"
mkdir -p "$T/src" "$T/small" && cp "$ENTRY_BIN" "$T/src/entry"
printf 'echo hi > outputs/m.txt\n' > "$T/small/job.sh"
run_ok $K compute create cpu --max-nodes 8 >/dev/null
# a run whose file can be registered as a model while the burst is ingested
mid="$(submit --experiment load --source "$T/small" --entry job.sh --compute cpu)"
run_ok $K run wait "$mid" >/dev/null
# the burst: the entry writes N records, then waits so the supervisor
# ingests them while it runs (the live path), then exits
id="$(submit --experiment load --source "$T/src" --entry entry --compute cpu -- --n 0 --names "$N" --marker "$T/logged" --sleep 2)"
for _ in $(seq 1 600); do [ -f "$T/logged" ] && break; sleep 0.1; done
[ -f "$T/logged" ] || die "the entry did not log its $N metrics"
# while it is ingested: 4 submits and 4 registrations from 8 processes,
# plus 'kusari log'-free readers
for i in 1 2 3 4; do
  ( $K run submit --experiment other --source "$T/small" --entry job.sh --compute cpu > "$T/sub.$i" 2>&1; echo $? > "$T/sub.$i.rc" ) &
  ( $K model register --run "$mid" --name "m$i" --path outputs/m.txt > "$T/reg.$i" 2>&1; echo $? > "$T/reg.$i.rc" ) &
done
wait
for i in 1 2 3 4; do
  assert_eq 0 "$(cat "$T/sub.$i.rc")" "run submit $i during the burst succeeded ($(tail -1 "$T/sub.$i"))"
  assert_eq 0 "$(cat "$T/reg.$i.rc")" "model register $i during the burst succeeded ($(tail -1 "$T/reg.$i"))"
done
run_ok $K run wait "$id" >/dev/null
assert_eq "$N" "$(sql "SELECT count(DISTINCT name) FROM metrics WHERE run_id='$id' AND name GLOB 'm[0-9]*'")" "all $N distinct metrics stored"
assert_eq "$((N + 4))" "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id'")" "every point stored exactly once ($N names, Accuracy, 3 of curve)"
assert_eq 0 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id' AND name GLOB 'm[0-9]*' AND value != CAST(substr(name, 2) AS REAL)")" "each metric holds its own value"
for i in 1 2 3 4; do
  sid="$(tail -1 "$T/sub.$i")"
  $K run wait "$sid" >/dev/null 2>&1 || fail "run $sid submitted during the burst did not complete"
done
finish
