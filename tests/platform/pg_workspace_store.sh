#!/usr/bin/env bash
# platform_pg_workspace_store: a workspace whose store is a PostgreSQL database
# ('workspace create DIR --store URI'): what config.json and 'workspace show'
# say (never the password), bad --store values, a workspace that would switch
# stores, and sweeps and scoring services answering on PostgreSQL.
export KUSARI_TEST_STORE=postgresql
. "$(dirname "$0")/lib.sh"
assert_eq "$TEST_PG_URI" "$(jget "$(cat "$WS/config.json")" 'j["store"]')" "config.json records the store URI"
[ -e "$WS/kusari.db" ] && fail "a PostgreSQL workspace has a kusari.db" || ok "no kusari.db in a PostgreSQL workspace"
j="$(run_ok $K workspace show --json)"
assert_eq "postgresql $TEST_PG_URI" "$(jget "$j" 'j["store_backend"] + " " + j["store"]')" "workspace show --json names the store"
assert_contains "$(run_ok $K workspace show)" "store:           postgresql://" "workspace show names the store"

# a URI with a password (trust authentication ignores it): shown as ***
U2="$(pg_createdb ws2)"
U2P="${U2/kusari@/kusari:s3cret@}"
out="$(run_ok $K workspace create "$T/ws2" --no-select --store "$U2P")"
assert_not_contains "$out" "s3cret" "workspace create does not print the password"
out="$(run_ok $K --workspace "$T/ws2" workspace show --json)"
assert_not_contains "$out" "s3cret" "workspace show does not print the password"
assert_contains "$out" "kusari:***@" "workspace show marks where the password is"
run_ok $K --workspace "$T/ws2" compute create cpu >/dev/null
assert_eq "cpu" "$(pg_psql "$U2" -c 'SELECT name FROM computes')" "the second workspace writes to its own database"
assert_eq "0" "$(sql 'SELECT count(*) FROM computes')" "and not to the first one's"

# bad input: nothing is created
expect_fail "is not a PostgreSQL URI" $K workspace create "$T/ws3" --no-select --store "mysql://x/y"
[ -e "$T/ws3" ] && fail "a refused --store created $T/ws3" || ok "a refused --store creates nothing"
expect_fail "not switching it to" $K workspace create "$WS" --no-select --store "$U2"
run_ok $K workspace create "$T/ws2" --no-select >/dev/null
assert_contains "$(cat "$T/ws2/config.json")" "/ws2?" "creating it again without --store keeps its store"
expect_fail "cannot connect to the PostgreSQL store" $K workspace create "$T/ws4" --no-select --store "$(pg_uri nosuchdb)"
[ -e "$T/ws4" ] && fail "a database that cannot be reached left $T/ws4" || ok "a database that cannot be reached creates nothing"
assert_eq "$TEST_PG_URI" "$(jget "$(cat "$WS/config.json")" 'j["store"]')" "config.json unchanged by the refused switch"

err="$($K --workspace "$TEST_PG_URI" workspace show 2>&1)"
assert_contains "$err" "workspace create DIR --store $TEST_PG_URI" "a PostgreSQL URI as the workspace says how to use it"

# sweeps and scoring services are on the store interface: they work on
# PostgreSQL as on SQLite (platform_pg_sweep_*, platform_pg_service run them)
assert_eq "[]" "$(run_ok $K sweep list --json | tr -d ' \n')" "'kusari sweep list' works on a PostgreSQL workspace"
assert_eq "[]" "$(run_ok $K service list --json | tr -d ' \n')" "'kusari service list' works on a PostgreSQL workspace"
expect_fail "model 'm' has no version 1" $K model deploy m:1 --name svc
finish
