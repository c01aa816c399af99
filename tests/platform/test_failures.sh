#!/usr/bin/env bash
# platform_failures: cancel (running, ignoring SIGTERM, queued), kill -9 of
# the entry and of the supervisor: the run ends Failed/Canceled and every
# metric logged before is kept.
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
run_ok $K compute create one --max-nodes 1 >/dev/null
mkdir -p "$T/src" && cp "$ENTRY_BIN" "$T/src/entry"
cat > "$T/src/stubborn.sh" <<'SH'
trap 'echo got TERM, ignoring' TERM
kusari log metric before_cancel 1
echo ready > "$1"
while true; do sleep 0.1; done
SH
printf 'kusari log metric m 1\necho ready > "$1"\nsleep 30\n' > "$T/src/polite.sh"

wait_file() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; fail "timeout waiting for $1"; }

# --- cancel a running entry that exits on SIGTERM ---------------------------------
id="$(submit --experiment f --source "$T/src" --entry polite.sh --compute cpu -- "$T/m.polite")"
wait_file "$T/m.polite"
t0=$(date +%s)
out="$(run_ok $K run cancel "$id" --grace 5)"
assert_contains "$out" "Canceled" "cancel waits and reports Canceled"
j="$(run_ok $K run show "$id" --json)"
assert_eq "Canceled: canceled by the user" "$(jget "$j" 'j["status"] + ": " + j["error"]')" "polite entry canceled, with the reason"
assert_eq 1 "$(jget "$j" 'j["metrics"]["m"]')" "metric logged before cancel kept"
[ $(( $(date +%s) - t0 )) -lt 5 ] && ok "SIGTERM was enough (no grace wait)" || fail "cancel took the whole grace period"
$K run wait "$id" >/dev/null 2>&1; assert_eq 1 $? "run wait exits non-zero for a canceled run"

# --- cancel an entry that ignores SIGTERM: SIGKILL after the grace period -------
id="$(submit --experiment f --source "$T/src" --entry stubborn.sh --compute cpu -- "$T/m.stub")"
wait_file "$T/m.stub"
run_ok $K run cancel "$id" --grace 1 >/dev/null
j="$(run_ok $K run show "$id" --json)"
assert_eq "Canceled 9" "$(jget "$j" 'j["status"] + " " + str(j["signal"])')" "stubborn entry killed after the grace period"
assert_eq 1 "$(jget "$j" 'j["metrics"]["before_cancel"]')" "its metric kept"
logs="$(run_ok $K run logs "$id")"
assert_contains "$logs" "got TERM, ignoring" "entry got SIGTERM first"
assert_contains "$logs" "sent SIGKILL" "then SIGKILL"

# --- cancel a queued run ---------------------------------------------------------------
blocker="$(submit --experiment f --source "$T/src" --entry polite.sh --compute one -- "$T/m.block")"
wait_file "$T/m.block"
queued="$(submit --experiment f --source "$T/src" --entry polite.sh --compute one -- "$T/m.never")"
sleep 0.3
assert_eq Queued "$(jget "$(run_ok $K run show "$queued" --json)" 'j["status"]')" "second run waits Queued on a 1-node target"
run_ok $K run cancel "$queued" >/dev/null
j="$(run_ok $K run show "$queued" --json)"
assert_eq "Canceled None" "$(jget "$j" 'j["status"] + " " + str(j["started"])')" "queued run canceled without starting"
assert_eq "canceled by the user (while queued)" "$(jget "$j" 'j["error"]')" "queued cancel reason"
run_ok $K run cancel "$blocker" --grace 0 >/dev/null
[ -e "$T/m.never" ] && fail "canceled queued run started anyway" || ok "canceled queued run never ran"

# --- cancel during the build ----------------------------------------------------------
echo '{"build": "echo building > '"$T"'/m.build; sleep 30"}' > "$T/env-slow.json"
id="$(submit --experiment f --source "$T/src" --entry polite.sh --compute cpu --env "$T/env-slow.json" -- "$T/m.nb")"
wait_file "$T/m.build"
assert_eq Preparing "$(jget "$(run_ok $K run show "$id" --json)" 'j["status"]')" "run is Preparing while it builds"
run_ok $K run cancel "$id" >/dev/null
j="$(run_ok $K run show "$id" --json)"
assert_eq "Canceled" "$(jget "$j" 'j["status"]')" "cancel during the build"
assert_contains "$(jget "$j" 'j["error"]')" "while building" "error says it was canceled while building"
[ -z "$(ls -A "$WS/envs")" ] && ok "no half-built environment left in the cache" || fail "build cache not clean: $(ls -a "$WS/envs")"

# --- kill -9 of the entry ---------------------------------------------------------------
id="$(submit --experiment f --source "$T/src" --entry entry --compute cpu -- --n 5000 --marker "$T/m.entry" --sleep 30)"
wait_file "$T/m.entry"
kill -9 "$(cat "$T/m.entry")"
err="$($K run wait "$id" 2>&1 >/dev/null)"; rc=$?
assert_eq 1 $rc "run wait exits 1 after kill -9 of the entry"
assert_contains "$err" "killed by signal 9 (SIGKILL)" "wait says the entry was killed"
j="$(run_ok $K run show "$id" --json)"
assert_eq "Failed 9" "$(jget "$j" 'j["status"] + " " + str(j["signal"])')" "killed entry: Failed with signal 9"
assert_eq 5000 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id' AND name='loss'")" "all 5000 metrics logged before kill -9 kept"
assert_eq c "$(jget "$j" 'j["tags"]["entry"]')" "tag logged before kill -9 kept"
assert_contains "$(run_ok $K run files "$id")" "logs/std_log.txt" "logs of the killed run kept"

# --- kill -9 of the entry in the middle of logging: no gap, no duplicate -------------
id="$(submit --experiment f --source "$T/src" --entry entry --compute cpu -- --n 7000000)"
for _ in $(seq 1 200); do
  epid="$(sql "SELECT entry_pid FROM runs WHERE id='$id' AND status='Running'")"
  [ -n "$epid" ] && break; sleep 0.05
done
sleep 0.3
kill -9 "$epid"
$K run wait "$id" >/dev/null 2>&1
res="$(sql "SELECT count(*), min(value), max(value), count(DISTINCT value), max(step) FROM metrics WHERE run_id='$id' AND name='loss'" | tr '|' ' ')"
read -r n lo hi distinct maxstep <<< "$res"
[ "$n" -gt 0 ] && [ "$n" -lt 7000000 ] && ok "killed mid-logging after $n values" || fail "expected a kill mid-logging, got $n values"
assert_eq "0 $((n - 1)) $n $((n - 1))" "${lo%.0} ${hi%.0} $distinct $maxstep" "values 0..n-1 each stored once, in step order (nothing lost before the kill)"
assert_eq Failed "$(jget "$(run_ok $K run show "$id" --json)" 'j["status"]')" "run killed mid-logging is Failed"

# --- kill -9 of the supervisor --------------------------------------------------------------
id="$(submit --experiment f --source "$T/src" --entry entry --compute cpu -- --n 3000 --marker "$T/m.sup" --sleep 60)"
wait_file "$T/m.sup"
epid="$(cat "$T/m.sup")"
spid="$(sql "SELECT supervisor_pid FROM runs WHERE id='$id'")"
kill -9 "$spid"
# the store still says Running until someone looks; any kusari command reconciles
err="$($K run wait "$id" --timeout 30 2>&1 >/dev/null)"; rc=$?
assert_eq 1 $rc "run wait exits 1 after kill -9 of the supervisor"
j="$(run_ok $K run show "$id" --json)"
assert_eq Failed "$(jget "$j" 'j["status"]')" "dead supervisor: run reconciled to Failed"
assert_contains "$(jget "$j" 'j["error"]')" "supervisor (pid $spid) died" "error says the supervisor died"
assert_eq 3000 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id' AND name='loss'")" "all 3000 metrics logged before the supervisor died kept"
st="$(awk '{print $3}' /proc/$epid/stat 2>/dev/null)"
case "$st" in ""|Z|X) ok "orphaned entry was stopped";; *) fail "orphaned entry $epid still alive (state $st)";; esac
# nothing else is left active
assert_eq 0 "$(sql "SELECT count(*) FROM runs WHERE status NOT IN ('Completed','Failed','Canceled')")" "no run left active"
finish
