#!/usr/bin/env bash
# platform_workspace: which workspace a command uses and why (issue 11):
# 'workspace create DIR' selects DIR for the current directory through
# .kusari/config.json (and --no-select does not), 'workspace show' says what
# selected it; URLs are refused wherever a workspace is named; the
# workspace's directory and private files are 0700/0600 whatever the umask.
. "$(dirname "$0")/lib.sh"
unset KUSARI_WORKSPACE      # this test selects workspaces itself

# ---- selection ----------------------------------------------------------------
P="$T/project"; mkdir -p "$P/sub/deeper"
out="$(cd "$P" && run_ok $K workspace create ./ws)"
assert_contains "$out" "workspace $P/ws (schema" "create prints the workspace"
assert_contains "$out" "selected for $P and the directories below it" "create says it selected the workspace"
assert_eq "{\"workspace\": \"$P/ws\"}" "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$P/.kusari/config.json")" "the pointer names the workspace"
# the README's next command acts on the new workspace, not the default one
assert_contains "$(cd "$P" && run_ok $K compute create cpu --type local --max-nodes 2)" "compute target cpu created" "compute create in the selected workspace"
assert_eq "cpu" "$(sqlite3 "$P/ws/kusari.db" 'SELECT name FROM computes')" "the compute target is in ./ws"
test ! -e "$HOME/.local/share/kusari/workspace" && ok "the default workspace was not touched" || fail "the default workspace was created"
j="$(cd "$P/sub/deeper" && run_ok $K workspace show --json)"
assert_eq "$P/ws pointer $P/.kusari/config.json" "$(jget "$j" '"%s %s %s" % (j["path"], j["selected_by"], j["pointer"])')" "found from a subdirectory through the pointer"
assert_contains "$(cd "$P" && run_ok $K workspace show)" "selected by:     the pointer $P/.kusari/config.json" "show says the pointer selected it"
# what selected it, for each way
assert_eq "env" "$(jget "$(cd "$P" && KUSARI_WORKSPACE="$WS" run_ok $K workspace show --json)" 'j["selected_by"]')" "KUSARI_WORKSPACE wins over the pointer"
assert_contains "$(cd "$P" && run_ok $K --workspace "$WS" workspace show)" "selected by:     --workspace" "--workspace wins and is named"
assert_eq "directory" "$(jget "$(cd "$P/ws" && run_ok $K workspace show --json)" 'j["selected_by"]')" "inside the workspace: the directory"
assert_contains "$(cd / && run_ok $K workspace show)" "selected by:     default (nothing else selects a workspace)" "default named as such"
# KUSARI_WORKSPACE set while creating: the selection is written, and a note says the variable wins
err="$(cd "$P" && KUSARI_WORKSPACE="$WS" $K workspace create ./ws 2>&1 >/dev/null)"
assert_contains "$err" "KUSARI_WORKSPACE=$WS is set and takes precedence" "create notes that KUSARI_WORKSPACE wins"
# a second workspace replaces the selection, and says which it replaced
out="$(cd "$P" && run_ok $K workspace create ./ws2)"
assert_contains "$out" "it selected $P/ws before" "re-selection names the previous workspace"
assert_eq "$P/ws2" "$(jget "$(cd "$P" && run_ok $K workspace show --json)" 'j["path"]')" "the new workspace is in use"
# --no-select writes nothing
Q="$T/q"; mkdir -p "$Q"
out="$(cd "$Q" && run_ok $K workspace create ./wsq --no-select)"
assert_not_contains "$out" "selected" "--no-select says nothing about selecting"
test ! -e "$Q/.kusari" && ok "--no-select writes no pointer" || fail "--no-select wrote $Q/.kusari"
# creating from inside the workspace writes no pointer there
out="$(cd "$Q/wsq" && run_ok $K workspace create .)"
assert_contains "$out" "in use here: $Q/wsq is inside it" "create from inside: nothing to select"
test ! -e "$Q/wsq/.kusari" && ok "no pointer inside the workspace" || fail "pointer written inside the workspace"
# a pointer to a workspace that is gone, and one that is not ours: clear errors, nothing replaced
rm -rf "$P/ws2"
expect_fail ".kusari/config.json selects '$P/ws2', which is not a kusari workspace" sh -c "cd '$P' && exec $K run list"
R="$T/r"; mkdir -p "$R/.kusari"; echo '{"subscription_id": "x"}' > "$R/.kusari/config.json"
expect_fail "does not name a workspace" sh -c "cd '$R' && exec $K workspace show"
expect_fail "exists and does not name a kusari workspace; not replacing it" sh -c "cd '$R' && exec $K workspace create ./ws"
test ! -e "$R/ws" && ok "nothing created when the pointer cannot be written" || fail "$R/ws created"
assert_eq '{"subscription_id": "x"}' "$(cat "$R/.kusari/config.json")" "the foreign file is kept"

# ---- URLs are refused where a folder is meant; --workspace http://... is a server --
for u in http://localhost:5000 https://ml.example.com/ws file:///tmp/x; do
  expect_fail "KUSARI_WORKSPACE='$u' is a URL: tracking servers are not supported yet" env KUSARI_WORKSPACE="$u" $K run list
done
# --workspace http(s)://... names a tracking server (docs/SERVER.md): here none answers
expect_fail "cannot reach the tracking server http://localhost:5000" $K --workspace http://localhost:5000 workspace show
expect_fail "--workspace 'file:///tmp/x' is a URL: tracking servers are not supported yet" $K --workspace file:///tmp/x workspace show
expect_fail "'http://localhost:5000' is a URL: tracking servers are not supported yet" sh -c "cd '$Q' && exec $K workspace create http://localhost:5000"
expect_fail "'http://localhost:5000' is a URL" sh -c "cd '$Q' && exec $K --workspace http://localhost:5000 workspace create"
test ! -e "$Q/http:" && ok "no folder 'http:' was made" || fail "a folder 'http:' was made"
mkdir -p "$T/u/.kusari"; echo '{"workspace": "http://tracking:5000"}' > "$T/u/.kusari/config.json"
expect_fail "is a URL: tracking servers are not supported yet" sh -c "cd '$T/u' && exec $K workspace show"

# ---- privacy: 0700 / 0600 whatever the umask ----------------------------------
mode() { stat -c '%a' "$1"; }
V="$T/v"; mkdir -p "$V"
(cd "$V" && umask 000 && $K workspace create ./ws --no-select >/dev/null && $K --workspace ./ws compute create cpu >/dev/null) || fail "create under umask 000"
assert_eq 700 "$(mode "$V/ws")" "workspace directory 0700 under umask 000"
assert_eq 600 "$(mode "$V/ws/config.json")" "config.json 0600"
assert_eq 600 "$(mode "$V/ws/kusari.db")" "kusari.db 0600"
for d in blobs runs envs tmp; do assert_eq 700 "$(mode "$V/ws/$d")" "$d/ 0700"; done
# the -wal and -shm files SQLite makes while the store is open take its mode
modes="$(cd "$V" && umask 000 && sqlite3 ws/kusari.db 'SELECT count(*) FROM computes' ".shell stat -c '%a %n' ws/kusari.db-wal ws/kusari.db-shm" | grep kusari.db-)"
assert_eq "600 ws/kusari.db-wal
600 ws/kusari.db-shm" "$modes" "kusari.db-wal and -shm 0600"
# the blob store: a run's snapshot lands in blobs/ (0700, each blob read-only to its owner)
mkdir -p "$V/src"; echo 'echo hi' > "$V/src/hi.sh"
id="$(cd "$V" && umask 000 && $K --workspace ./ws run submit --experiment e --source src --entry hi.sh | tail -1)"
run_ok $K --workspace "$V/ws" run wait "$id" >/dev/null
blob="$(find "$V/ws/blobs" -type f | head -1)"
test -n "$blob" && ok "the run stored blobs" || fail "no blob in $V/ws/blobs"
assert_eq "700 400" "$(mode "$(dirname "$blob")") $(mode "$blob")" "blob directories 0700, blobs 0400"
others="$(find "$V/ws" -maxdepth 1 -perm /077 | wc -l)"
assert_eq 0 "$others" "nothing at the workspace's top level is open to group or others"
# a workspace made by an earlier kusari (0755/0644) is tightened when opened
chmod 755 "$V/ws" "$V/ws/blobs"; chmod 644 "$V/ws/config.json" "$V/ws/kusari.db"
run_ok $K --workspace "$V/ws" workspace show >/dev/null
assert_eq "700 700 600 600" "$(mode "$V/ws") $(mode "$V/ws/blobs") $(mode "$V/ws/config.json") $(mode "$V/ws/kusari.db")" "an older workspace is made private when opened"
finish
