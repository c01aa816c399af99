#!/usr/bin/env bash
# platform_cli: --help everywhere, workspace and compute commands, bad input.
. "$(dirname "$0")/lib.sh"

# --help on every command and subcommand, exit 0, mentions usage
for c in "" workspace compute experiment run log model; do
  out="$($K $c --help)"; rc=$?
  assert_eq 0 $rc "kusari $c --help exits 0"
  assert_contains "$out" "usage: kusari" "kusari $c --help prints usage"
done
for c in "workspace create" "workspace show" "compute create" "compute list" "compute show" "compute delete" \
         "run submit" "run wait" "run list" "run show" "run logs" "run files" "run download" "run cancel" \
         "run metrics" "log metric" "log tag" "model register" "model list" "model show" "model download" \
         "model delete" "experiment list"; do
  out="$($K $c --help)"; rc=$?
  assert_eq 0 $rc "kusari $c --help exits 0"
  assert_contains "$out" "usage: kusari $c" "kusari $c --help shows its usage"
done
expect_fail "unknown command 'frobnicate'" $K frobnicate
expect_fail "unknown command 'run frob'" $K run frob
expect_fail "unknown option '--bogus'" $K run list --bogus
expect_fail "needs a value" $K run list --status
expect_fail "unknown --status 'Done'" $K run list --status Done
$K >/dev/null 2>&1; assert_eq 2 $? "kusari without a command exits 2"
assert_contains "$($K --version)" "kusari 0.1.0" "--version"
SV="$($K --version | sed -n 's/.*(schema \([0-9]*\)).*/\1/p')"   # the schema version of this build

# workspace
out="$(run_ok $K workspace show --json)"
assert_eq "$WS" "$(jget "$out" 'j["path"]')" "workspace show names the workspace"
assert_eq "$SV" "$(jget "$out" 'j["schema_version"]')" "schema version $SV"
assert_eq "wal" "$(sql 'PRAGMA journal_mode')" "store is in WAL mode"
assert_eq "$SV" "$(sql 'PRAGMA user_version')" "user_version = schema version"
run_ok $K workspace create "$WS" >/dev/null   # idempotent
ok "workspace create is idempotent"
# found from a config.json in a parent directory
mkdir -p "$WS/sub/dir"
out="$(cd "$WS/sub/dir" && KUSARI_WORKSPACE= $K workspace show --json)"
assert_eq "$WS" "$(jget "$out" 'j["path"]')" "workspace found from a parent directory"
# --workspace wins over the environment
run_ok $K workspace create "$T/ws2" --name second >/dev/null
out="$($K --workspace "$T/ws2" workspace show --json)"
assert_eq second "$(jget "$out" 'j["name"]')" "--workspace selects another workspace"
# default workspace under $HOME when nothing else says
out="$(cd / && KUSARI_WORKSPACE= $K workspace show --json)"
assert_eq "$HOME/.local/share/kusari/workspace" "$(jget "$out" 'j["path"]')" "default workspace created on first use"
expect_fail "not a kusari workspace" env KUSARI_WORKSPACE="$T/nope" $K workspace show
mkdir -p "$T/other"; echo '{"foo": 1}' > "$T/other/config.json"
expect_fail "not a kusari workspace" $K workspace create "$T/other"
# a migration from an older (empty, version 0) store
rm -rf "$T/ws3"; mkdir -p "$T/ws3"; echo '{"kusari_workspace": true, "name": "old", "schema_version": 0}' > "$T/ws3/config.json"
sqlite3 -cmd ".timeout 10000" "$T/ws3/kusari.db" 'PRAGMA user_version=0; CREATE TABLE IF NOT EXISTS dummy(x);'
run_ok $K --workspace "$T/ws3" workspace show >/dev/null
assert_eq "$SV" "$(sqlite3 -cmd ".timeout 10000" "$T/ws3/kusari.db" 'PRAGMA user_version')" "empty store migrated to version $SV"
assert_contains "$(cat "$T/ws3/config.json")" '"schema_version":	'"$SV" "config.json schema_version updated"
# a version-1 store from a development build (without runs.prepared and
# runs.cancel_reason) is repaired by migration 2 and runs work in it
run_ok $K workspace create "$T/ws4" >/dev/null
sqlite3 "$T/ws4/kusari.db" 'ALTER TABLE runs DROP COLUMN prepared; ALTER TABLE runs DROP COLUMN cancel_reason; PRAGMA user_version=1'
run_ok $K --workspace "$T/ws4" workspace show >/dev/null
assert_eq "$SV 2" "$(sqlite3 "$T/ws4/kusari.db" "PRAGMA user_version; SELECT count(*) FROM pragma_table_info('runs') WHERE name IN ('prepared','cancel_reason')" | xargs)" "migration 1 -> 2 adds the missing columns"
mkdir -p "$T/m4" && echo 'echo migrated-ok' > "$T/m4/t.sh"
run_ok $K --workspace "$T/ws4" compute create cpu >/dev/null
r4="$($K --workspace "$T/ws4" run submit --experiment m --source "$T/m4" --entry t.sh | tail -1)"
assert_contains "$(run_ok $K --workspace "$T/ws4" run wait "$r4" --show-output)" "migrated-ok" "runs work in a migrated store"
sqlite3 -cmd ".timeout 10000" "$T/ws3/kusari.db" 'PRAGMA user_version=99'
expect_fail "newer than this kusari" $K --workspace "$T/ws3" workspace show

# compute
assert_contains "$(run_ok $K compute create cpu --type local --max-nodes 2)" "compute target cpu created" "compute create"
expect_fail "already exists" $K compute create cpu
expect_fail "unsupported --type 'kubernetes'" $K compute create c2 --type kubernetes
expect_fail "--max-nodes must be an integer" $K compute create c2 --max-nodes 0
expect_fail "--max-nodes must be an integer" $K compute create c2 --max-nodes two
expect_fail "invalid name '../x'" $K compute create ../x
expect_fail "missing the compute target's NAME" $K compute create
run_ok $K compute create gpu --max-nodes 1 >/dev/null
out="$(run_ok $K compute list --json)"
assert_eq "cpu gpu" "$(jget "$out" '" ".join(c["name"] for c in j)')" "compute list"
out="$(run_ok $K compute show cpu --json)"
assert_eq "2 0 2 0" "$(jget "$out" '"%d %d %d %d" % (j["max_nodes"], j["busy_nodes"], j["idle_nodes"], j["queued_runs"])')" "compute show counts"
assert_contains "$(run_ok $K compute show cpu)" "max nodes:   2" "compute show text"
assert_contains "$(run_ok $K compute list)" "cpu" "compute list text"
expect_fail "no compute target named 'nope'" $K compute show nope
run_ok $K compute delete gpu >/dev/null
expect_fail "no compute target named 'gpu'" $K compute delete gpu
# delete is refused while a run uses the target
mkdir -p "$T/src"; printf 'sleep 30\n' > "$T/src/slow.sh"
id="$(submit --experiment e --source "$T/src" --entry slow.sh --compute cpu)"
expect_fail "in use by 1 active run" $K compute delete cpu
run_ok $K run cancel "$id" --grace 0 >/dev/null
run_ok $K compute delete cpu >/dev/null
ok "compute delete after the run ended"

# log outside a run: offline, says so, exit 0
err="$($K log metric loss 1 2>&1)"; rc=$?
assert_eq 0 $rc "log metric offline exits 0"
assert_contains "$err" "not inside a kusari run" "log metric offline says so"
err="$(KUSARI_RUN_ID=x_1 KUSARI_METRICS_CHANNEL="$T/gone" $K log metric loss 1 2>&1)"; rc=$?
assert_eq 0 $rc "log metric with a vanished channel exits 0"
assert_contains "$err" "run x_1 has no usable metrics channel" "and says why nothing was logged"
expect_fail "VALUE 'abc' is not a number" $K log metric loss abc
expect_fail "--step must be a non-negative integer" $K log metric loss 1 --step -3
expect_fail "usage: kusari log tag KEY VALUE" $K log tag onlykey
finish
