#!/usr/bin/env bash
# platform_remote: the CLI against a tracking server (issue 12 §3):
# KUSARI_TRACKING_URI + KUSARI_TRACKING_TOKEN, or 'workspace connect', make
# the read and control commands talk to a real `kusari server` on a free port
# of 127.0.0.1 serving the workspace that real runs were submitted into. Each
# covered command's stdout equals the local one (same workspace, the same
# command without KUSARI_TRACKING_URI); a wrong token and a server that is
# down fail clearly; writes (tag, cancel) show up locally; commands that need
# the workspace's files refuse, naming the command and the server.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/job.sh" <<'SH'
kusari log metric acc "${ACC:-0.5}"
kusari log metric acc 0.75
kusari log metric loss 1.5
if [ -n "${1:-}" ]; then while [ ! -f "$1" ]; do sleep 0.1; done; fi
mkdir -p outputs
seq 1 100 > outputs/data.txt
echo "done with ${1:-no file}"
SH
sub() { submit --experiment remote --source "$T/src" --entry job.sh --param lr=0.1 --tag team=a -- "$@"; }
A="$(sub)"; run_ok $K run wait "$A" >/dev/null
B="$(sub)"; run_ok $K run wait "$B" >/dev/null
C="$(submit --experiment other --source "$T/src" --entry job.sh)"; run_ok $K run wait "$C" >/dev/null
run_ok $K model register --run "$A" --name m1 --path outputs/data.txt >/dev/null
# a sweep (two children, one stopped by its bandit policy) and a scoring service
printf 'for v in 0.5 0.6 0.7 0.8; do kusari log metric acc "$(awk -v v=$v -v x="$2" "BEGIN { print v * x }")"; sleep 0.1; done\n' \
  > "$T/src/sweep.sh"
cat > "$T/sweep.json" <<JSON
{"experiment": "remote", "run": {"source": "$T/src", "entry": "sweep.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--x": {"choice": ["1", "0.5"]}}}, "primary_metric": {"name": "acc", "goal": "maximize"},
 "policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 1}, "max_concurrent_runs": 1,
 "cancel_grace_seconds": 1}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$SW" --timeout 120 --quiet >/dev/null
HAVE_NUMPY=0
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  HAVE_NUMPY=1
  mkdir -p "$T/lin"
  /usr/bin/python3 - "$T/lin" <<'PYM'
import numpy as np, sys
d = sys.argv[1]
np.savez(d + "/model.npz", **{"l1/W": np.ones((3, 4), np.float32), "l1/b": np.zeros(3, np.float32)})
open(d + "/model.json", "w").write('{"format": "kusari-sequential/1", "input": [4], "layers": '
                                   '[{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": false}]}\n')
PYM
  run_ok $K model register --name lin --file "$T/lin" >/dev/null
  run_ok $K model deploy lin --name ks --auth >/dev/null
fi
TOK="$($K server token create writer 2>/dev/null)"
RO="$($K server token create reader --read-only 2>/dev/null)"
start_server

# remote CMD... : CMD against the server
remote() { KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$TOK" "$@"; }
# same CMD... : stdout and exit status the same locally and against the server
# (page tokens differ from one search to the next: they are compared by shape)
tokens() { sed -E 's/(page-token |"next_page_token":\s*")[0-9a-f]+\.[0-9a-f]{64}/\1TOKEN/'; }
same() {
  local a b ra rb
  a="$("$@" 2>"$T/local.err" | tokens)"; ra=${PIPESTATUS[0]}
  b="$(remote "$@" 2>"$T/remote.err" | tokens)"; rb=${PIPESTATUS[0]}
  if grep -qE "Sanitizer|runtime error:" "$T/remote.err"; then fail "sanitizer report from: ${*:2}: $(head -30 "$T/remote.err")"; fi
  if [ "$ra $a" == "$rb $b" ]; then ok "same output locally and remotely: ${*:2}"
  else fail "${*:2}: local ($ra) and remote ($rb) differ:
--- local
$a
--- remote
$b
$(cat "$T/remote.err")"; fi
}
same $K experiment list
same $K experiment list --json
same $K experiment show remote
same $K experiment show remote --json
same $K experiment show nope
same $K run list
same $K run list --json
same $K run list --experiment remote --filter "metrics.acc > 0.1 and params.lr = '0.1'" --order-by "metrics.acc desc"
same $K run list --max 1
same $K run list --max 1 --json
same $K run list --order-by created --metrics acc,loss
TOKEN1="$($K run list --max 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("next_page_token") or "")' 2>/dev/null)"
[ -n "$TOKEN1" ] && same $K run list --max 1 --page-token "$TOKEN1"
same $K run show "$A"
same $K run show "$A" --json
same $K run show nope
same $K run metrics "$A"
same $K run metrics "$A" --json
same $K run metrics "$A" --name acc --csv
same $K run files "$A"
same $K run wait "$B"
same $K run logs "$A"
same $K run logs "$A" --build
same $K run logs "$A" --follow
same $K run download "$A" outputs/nope --to "$T/dl-none"
mkdir -p "$T/dl-local" "$T/dl-remote"
(cd "$T/dl-local" && $K run download "$A" outputs >/dev/null) || fail "local run download"
out="$(cd "$T/dl-remote" && remote $K run download "$A" outputs)" || fail "remote run download: $out"
assert_eq "$T/dl-remote/outputs/data.txt" "$out" "run download against the server prints the file it wrote"
assert_eq "$(seq 1 100)" "$(cat "$T/dl-remote/outputs/data.txt")" "run download against the server writes the run's bytes"
cmp -s "$T/dl-local/outputs/data.txt" "$T/dl-remote/outputs/data.txt" && ok "run download: the same bytes as locally" \
  || fail "run download: remote bytes differ from local"
expect_fail "run logs --rank does not work against a tracking server yet" remote $K run logs "$A" --rank 0
expect_fail "run wait --show-output does not work against a tracking server yet" remote $K run wait "$A" --show-output
same $K model list
same $K model list --json
same $K model show m1
same $K model show m1 --json
same $K compute list
same $K compute list --json
same $K compute show cpu
same $K compute show cpu --json
same $K compute show nope
same $K sweep list
same $K sweep list --json
same $K sweep show "$SW"
same $K sweep show "$SW" --json
same $K sweep show nope
assert_contains "$($K sweep show "$SW")" "Canceled" "(the sweep compared has a child its policy stopped)"
if [ $HAVE_NUMPY = 1 ]; then
  same $K service list
  same $K service list --json
  same $K service show ks --json
  same $K service show nope
  # the text is the same but for its last line, the log's path (on the server's machine)
  assert_eq "$($K service show ks | sed '$d')" "$(remote $K service show ks | sed '$d')" "service show: the same text but the log line"
  assert_contains "$(remote $K service show ks | tail -1)" "on the server's machine ('kusari service logs ks')" \
    "service show against a server says where the log is"
  keys="$($K service keys ks --json)"
  assert_not_contains "$(remote $K service show ks --json)$(remote $K service list --json)" \
    "$(jget "$keys" 'j["primary_key"]')" "no key in what service list|show print against a server"
  same $K service logs ks
  same $K service logs ks --tail 1
  same $K service logs nope
  same $K service keys ks
  same $K service keys ks --json
  same $K service keys nope
  expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K service keys ks
  out="$(remote $K service keys ks --regenerate primary --json 2>"$T/regen.err")"
  assert_contains "$(cat "$T/regen.err")" "Regenerated the primary key of service ks (the running server reloads them now)" \
    "service keys --regenerate against the server says what it did"
  assert_eq "$out" "$($K service keys ks --json)" "the new keys are the server's"
  assert_eq "Service ks stopped" "$(remote $K service stop ks)" "service stop against the server"
  same $K service list
  same $K service show ks --json
  out="$(remote $K service start ks)"
  assert_contains "$out" "Service ks: Running (model lin:1, 2 workers, auth on: see 'kusari service keys')" \
    "service start against the server"
  same $K service start ks
  same $K service start nope
  same $K service stop nope
  out="$(remote $K model deploy lin --name rs --auth --workers 1)"
  assert_contains "$out" "Service rs: Running (model lin:1, 1 workers, auth on: see 'kusari service keys')" \
    "model deploy against the server"
  assert_eq Running "$(jget "$($K service show rs --json)" 'j["state"]')" "the service runs on the server's machine"
  out="$(remote $K model deploy lin:1 --name rs --workers 1)"
  assert_contains "$out" "Service rs exists (model lin:1, Running): redeploying with the same keys" "a redeploy says so, as locally"
  expect_fail "no model named 'nope'" remote $K model deploy nope --name rs2
  expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K model deploy lin --name rs2
  assert_eq "Deleted service rs" "$(remote $K service delete rs)" "(deleted)"
  assert_eq "Deleted service ks" "$(remote $K service delete ks)" "service delete against the server"
  same $K service list --json
  assert_eq "[]" "$($K service list --json | tr -d ' \n')" "the service is gone from the server's workspace"
fi

# --- writes go to the server's workspace ------------------------------------------------
run_ok remote $K run tag "$A" color=blue >/dev/null
assert_contains "$($K run show "$A")" "tag:          color=blue" "run tag against the server shows up locally"
run_ok remote $K run untag "$A" color >/dev/null
assert_not_contains "$($K run show "$A")" "color=blue" "run untag against the server shows up locally"
D="$(sub "$T/wait-forever")"
for _ in $(seq 1 200); do [ "$($K run show "$D" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = Running ] && break; sleep 0.1; done
out="$(remote $K run cancel "$D" --grace 1)"; rc=$?
assert_eq "0" "$rc" "run cancel against the server exits 0"
assert_contains "$out" "Run $D: Canceled" "run cancel against the server waits for the end"
assert_contains "$($K run show "$D")" "status:       Canceled" "the cancel shows up locally"

# sweep submit through the server: the source travels as blobs; the same lines as locally
a="$($K sweep submit "$T/sweep.json")"; la="$(printf '%s\n' "$a" | tail -1)"
b="$(remote $K sweep submit "$T/sweep.json")"; rb="$(printf '%s\n' "$b" | tail -1)"
assert_eq "${a//$la/ID}" "${b//$rb/ID}" "sweep submit against the server prints what it prints locally (the same snapshot id)"
run_ok $K sweep wait "$la" --timeout 120 --quiet >/dev/null
out="$(remote $K sweep wait "$rb" --timeout 120)"; rc=$?
assert_eq 0 "$rc" "sweep wait against the server follows the sweep to its end"
assert_contains "$out" "Canceled  acc" "it prints each child as it ends, with the policy's decision"
assert_contains "$(printf '%s\n' "$out" | tail -1)" "Sweep $rb: Completed (2 runs); best run " "and the end, as locally"
same $K sweep wait "$rb" --quiet
same $K sweep wait nope
same $K sweep best "$rb"
same $K sweep best "$rb" --completed-only
same $K sweep best nope
CH='sorted((c["parameters"]["--x"], c["status"]) for c in j["children"])'
same_json "$($K sweep show "$la" --json)" "$($K sweep show "$rb" --json)" \
  "the sweep submitted through the server ran the same children to the same ends" "$CH" "$CH"
child="$($K sweep show "$rb" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["children"][0]["id"])')"
assert_contains "$($K run show "$child")" "$T/src" "its children's source is the submitter's directory (as a label)"
sed 's/"compute": "cpu"/"compute": "nope"/' "$T/sweep.json" > "$T/nocomp.json"
expect_fail "no compute target named 'nope'" remote $K sweep submit "$T/nocomp.json"
printf '{"variables": {"A": "1"}}\n' > "$T/env.json"
sed "s|\"compute\": \"cpu\"|\"compute\": \"cpu\", \"environment\": \"$T/env.json\"|" "$T/sweep.json" > "$T/env.json.sweep"
expect_fail "environments are not supported against a tracking server yet" remote $K sweep submit "$T/env.json.sweep"
expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K sweep submit "$T/sweep.json"

# sweep cancel through the server: the same lines as locally
printf 'while [ ! -f "%s/never" ]; do sleep 0.1; done\n' "$T" > "$T/src/wait.sh"
sed -e 's/"sweep.sh"/"wait.sh"/' -e 's/"max_concurrent_runs": 1/"max_concurrent_runs": 2/' "$T/sweep.json" > "$T/live.json"
LIVE="$(run_ok $K sweep submit "$T/live.json" | tail -1)"
for _ in $(seq 1 300); do
  [ "$($K sweep show "$LIVE" --json | python3 -c 'import json,sys; print(sum(c["status"] == "Running" for c in json.load(sys.stdin)["children"]))')" = 2 ] && break
  sleep 0.1
done
out="$(remote $K sweep cancel "$LIVE")"; rc=$?
assert_eq "0 Sweep $LIVE: Canceled" "$rc $out" "sweep cancel against the server waits for the end, as locally"
out="$($K sweep show "$LIVE" --json)"
assert_eq "Canceled Canceled Canceled" "$(jget "$out" '" ".join([j["status"]] + [c["status"] for c in j["children"]])')" \
  "the sweep and its children are Canceled in the server's workspace"
same $K sweep cancel "$LIVE"
same $K sweep cancel nope
expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K sweep cancel "$SW"

# --- errors ----------------------------------------------------------------------------
expect_fail "refused the token" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN= $K experiment list
expect_fail "refused the token" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN=kst_wrong $K run list
expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K run tag "$A" x=1
expect_fail "'kusari run delete' does not work against a tracking server yet ($URL" \
  remote $K run delete "$A" --yes
# model register through the server: the same lines as locally (versions counted by its store)
a="$($K model register --run "$A" --name ml --path outputs/data.txt --description d --tag k=v)"
b="$(remote $K model register --run "$A" --name mr --path outputs/data.txt --description d --tag k=v)"
assert_eq "${a//ml/mr}" "$b" "model register --run --path against the server prints what it prints locally"
MV='[j["version"], j["run"], j["path"], j["files"], j["tags"], j["description"]]'
same_json "$($K model show ml --json)" "$($K model show mr --json)" "the registered version is the same as the local one (but its name and time)" \
  "$MV" "$MV"
b="$(remote $K model register --run "$A" --name mr --path outputs)"
assert_contains "$b" "Registered model mr version 2 (1 file" "a second registration is version 2"
if [ $HAVE_NUMPY = 1 ]; then
  a="$($K model register --name fl --file "$T/lin")"
  b="$(remote $K model register --name fr --file "$T/lin")"
  assert_eq "${a//fl/fr}" "$b" "model register --file FOLDER against the server (files uploaded) prints what it prints locally"
  a="$($K model register --name nl --file "$T/lin/model.npz")"
  b="$(remote $K model register --name nr --file "$T/lin/model.npz")"
  assert_eq "${a//nl/nr}" "$b" "model register --file X.npz takes model.json along, as locally"
  assert_contains "$b" "with model.json" "(it says so)"
  run_ok $K model download fr:1 --to "$T/fr" >/dev/null
  cmp -s "$T/fr/lin/model.npz" "$T/lin/model.npz" && cmp -s "$T/fr/lin/model.json" "$T/lin/model.json" \
    && ok "the uploaded model's files are the local bytes" || fail "uploaded model files differ: $(ls -R "$T/fr")"
fi
expect_fail "has no file or folder 'outputs/nope' to register" remote $K model register --run "$A" --name m2 --path outputs/nope
expect_fail "no run with id 'nope' in this workspace" remote $K model register --run nope --name m2 --path outputs
expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" \
  $K model register --run "$A" --name m2 --path outputs/data.txt
assert_eq "" "$($K model list | grep m2)" "nothing half-done: no model m2"
expect_fail "'kusari sweep resume' does not work against a tracking server" remote $K sweep resume "$SW"
expect_fail "not an http:// or https:// URL" env KUSARI_TRACKING_URI=ftp://x $K run list

# --- workspace connect / show / disconnect ------------------------------------------------
for c in "workspace connect" "workspace disconnect" "workspace show"; do
  assert_contains "$($K $c --help)" "usage: kusari $c" "kusari $c --help"
done
expect_fail "missing --token" $K workspace connect "$URL"
expect_fail "not an http:// or https:// URL" $K workspace connect nowhere --token x
out="$($K workspace connect "$URL" --token "$TOK" --token-name writer)"
assert_not_contains "$out" "$TOK" "connect does not print the token"
CFG="$HOME/.config/kusari/tracking.json"
assert_eq "600" "$(stat -c %a "$CFG")" "the connection file is 0600"
local_list="$($K run list)"
out="$(env -u KUSARI_WORKSPACE $K workspace show)"
assert_contains "$out" "server:          $URL" "workspace show names the server"
assert_contains "$out" "token:           writer" "workspace show names the token"
assert_not_contains "$out" "$TOK" "workspace show does not print the token"
assert_eq "$local_list" "$(env -u KUSARI_WORKSPACE $K run list)" "run list through 'workspace connect'"
assert_contains "$($K workspace show)" "path:            $WS" "KUSARI_WORKSPACE takes precedence over the saved connection"
assert_contains "$(env -u KUSARI_WORKSPACE KUSARI_TRACKING_TOKEN=kst_wrong $K run list 2>&1)" "refused the token" \
  "KUSARI_TRACKING_TOKEN overrides the saved token"
run_ok $K workspace disconnect >/dev/null
[ -e "$CFG" ] && fail "disconnect removes the connection file" || ok "disconnect removes the connection file"

# --- the server down ------------------------------------------------------------------------
stop_server
expect_fail "cannot reach the tracking server $URL" remote $K run list
out="$(remote $K run list 2>&1)"
assert_not_contains "$out" "$TOK" "the error does not show the token"
check_json
finish
