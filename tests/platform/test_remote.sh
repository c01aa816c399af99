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

# --- errors ----------------------------------------------------------------------------
expect_fail "refused the token" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN= $K experiment list
expect_fail "refused the token" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN=kst_wrong $K run list
expect_fail "a read-write token is needed" env KUSARI_TRACKING_URI="$URL" KUSARI_TRACKING_TOKEN="$RO" $K run tag "$A" x=1
expect_fail "'kusari run delete' does not work against a tracking server yet ($URL" \
  remote $K run delete "$A" --yes
expect_fail "'kusari model register' does not work against a tracking server" \
  remote $K model register --run "$A" --name m2 --path outputs/data.txt
assert_eq "" "$($K model list | grep m2)" "nothing half-done: no model m2"
expect_fail "'kusari service list' does not work against a tracking server" remote $K service list
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
finish
