#!/usr/bin/env bash
# platform_pg_outage: the PostgreSQL server of a workspace's store goes away
# while the workspace is in use. Commands fail with a clear message and exit
# 1 (no crash, nothing half-written), and work again once it is back; a run
# that was going on when it went away ends with every metric it had logged
# before and after (the supervisor's ingestion is exactly-once and retried).
export KUSARI_TEST_STORE=postgresql
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
printf 'kusari log metric m 1\necho done\n' > "$T/src/quick.sh"
# logs one value, waits for the go file, logs another
printf 'kusari log metric m 1\necho ready > "$1"\nwhile [ ! -e "$2" ]; do sleep 0.1; done\nkusari log metric m 2\n' > "$T/src/slow.sh"
wait_file() { for _ in $(seq 1 300); do [ -s "$1" ] && return 0; sleep 0.05; done; fail "timeout waiting for $1"; }

a="$(submit --experiment outage --source "$T/src" --entry quick.sh)"
run_ok $K run wait "$a" >/dev/null
b="$(submit --experiment outage --source "$T/src" --entry slow.sh -- "$T/ready" "$T/go")"
wait_file "$T/ready"

pg_server_stop || die "cannot stop the PostgreSQL server"
for cmd in "run list" "run show $a" "experiment list" "workspace show"; do
  err="$($K $cmd 2>&1 >/dev/null)"; rc=$?
  assert_eq 1 "$rc" "'kusari $cmd' exits 1 while the database is away"
  assert_contains "$err" "kusari: error: workspace $WS: cannot connect to the PostgreSQL store" "'kusari $cmd' says the store cannot be reached"
  assert_contains "$err" "hint: check that the PostgreSQL server is running" "'kusari $cmd' says what to do"
done
expect_fail "cannot connect to the PostgreSQL store" $K run submit --experiment outage --source "$T/src" --entry quick.sh
: > "$T/go"   # the running entry finishes while the database is away
for _ in $(seq 1 300); do grep -q "the store cannot be reached; retrying" "$WS/runs/$b/supervisor.log" && break; sleep 0.05; done
assert_contains "$(cat "$WS/runs/$b/supervisor.log")" "the store cannot be reached; retrying" \
  "the supervisor of the running run waits for the store to come back"
pg_server_start || die "cannot start the PostgreSQL server again"

out="$(run_ok $K run list)"
assert_contains "$out" "$a" "after the restart, run list works again"
assert_eq "Completed" "$(jget "$(run_ok $K run show "$a" --json)" 'j["status"]')" "the finished run is intact"
assert_eq 2 "$($K run list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" \
  "the submit refused during the outage recorded nothing"
$K run wait "$b" --timeout 60 >/dev/null 2>&1
j="$(run_ok $K run show "$b" --json)"
assert_eq "Completed" "$(jget "$j" 'j["status"]')" "the run that spanned the outage ends Completed"
assert_eq "2" "$(run_ok $K run metrics "$b" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["m"]))')" \
  "the run that spanned the outage kept both of its metric values"
finish
