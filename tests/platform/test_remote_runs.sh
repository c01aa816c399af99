#!/usr/bin/env bash
# platform_remote_runs: `kusari run submit` against a tracking server (issue
# 12 §3, docs/SERVER.md "Remote runs"). Two directories stand for two
# machines: the server's workspace ($WS) and a client node ($T/client, its
# spool there) that never sees $WS. The run is created on the server, runs on
# the client, and its metrics, log, files and status are forwarded over HTTP;
# the server is killed mid-run and started again on the same store and port,
# and afterwards every metric is there exactly once, the log is whole, the
# output downloadable and the run Completed. A failing entry ends Failed with
# its exit code, a cancel on the server's side ends the run Canceled, and a
# read-only token is refused at submit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
TOK="$($K server token create writer 2>/dev/null)"
RO="$($K server token create reader --read-only 2>/dev/null)"
start_server
PORT="${URL##*:}"

# the client node: its own home and spool, no KUSARI_WORKSPACE
C="$T/client"
mkdir -p "$C/src"
cp "$ENTRY_BIN" "$C/src/log_entry"
cat > "$C/src/job.sh" <<'SH'
for c in 1 2 3 4 5; do ./log_entry --n 1000; echo "chunk $c done"; sleep 0.8; done
mkdir -p outputs
seq 1 1000 > outputs/data.txt
echo "the end"
SH
printf 'echo failing; exit 3\n' > "$C/src/fail.sh"
printf 'echo waiting; sleep 60\n' > "$C/src/sleep.sh"
cli() { (cd "$C" && env -u KUSARI_WORKSPACE HOME="$C" KUSARI_SPOOL="$C/spool" KUSARI_TRACKING_URI="$URL" \
  KUSARI_TRACKING_TOKEN="${CLI_TOKEN:-$TOK}" "$K" "$@"); }

# --- a run that logs 5,000 values while the server goes down and comes back -----------------
R="$(cli run submit --experiment fwd --source "$C/src" --entry job.sh --param lr=0.1 --tag team=a 2>"$T/sub.err" | tail -1)"
[ -n "$R" ] || die "remote submit failed: $(cat "$T/sub.err")"
assert_contains "$(cat "$T/sub.err")" "runs on this machine" "submit says where the run runs"
[ -e "$WS/runs/$R/channel" ] && fail "the server's workspace has no channel of the remote run" || ok "no channel on the server"
sleep 1.5
kill -KILL "$SRV"; wait "$SRV" 2>/dev/null; SRV=""
ok "server killed mid-run"
sleep 3
rm -f "$T/srv.out" "$T/srv.err"   # (not the killed server's URL: see start_server)
"$K" server --port "$PORT" >"$T/srv.out" 2>"$T/srv.err" &
SRV=$!
for _ in $(seq 1 100); do [ -n "$(head -1 "$T/srv.out" 2>/dev/null)" ] && break; sleep 0.1; done
[ -n "$(head -1 "$T/srv.out")" ] || die "the server did not start again: $(cat "$T/srv.err")"
ok "server started again on port $PORT"
for _ in $(seq 1 600); do
  st="$(api GET "runs/$R" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null)"
  case "$st" in Completed|Failed|Canceled) break;; esac
  sleep 0.2
done
assert_eq "Completed" "$st" "the run ends Completed on the server"
# the client's own record of the run (its spool) against the server's
LID="$(ls "$C/spool/runs" | grep -v '^\.' | head -1)"
assert_contains "$(cat "$C/spool/runs/$LID/forward.log")" "cannot reach the tracking server" \
  "the outage hit the forwarder (it retried)"
api GET "runs/$R/metrics/loss" >"$T/srv_loss.json"
KUSARI_WORKSPACE="$C/spool" $K run metrics "$LID" --json >"$T/local_metrics.json" 2>/dev/null
out="$(python3 - "$T/srv_loss.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
pts = j["points"] if isinstance(j, dict) and "points" in j else j
vals = sorted((p["step"], float(p["value"])) for p in pts)
print(len(vals), len(set(s for s, _ in vals)), vals == [(i, float(i % 1000)) for i in range(5000)])
PY
)"
assert_eq "5000 5000 True" "$out" "every 'loss' value is on the server exactly once, with its value and step"
api GET "runs/$R/logs" >"$T/srv_log.txt"
cmp -s "$T/srv_log.txt" "$C/spool/runs/$LID/logs/std_log.txt" && ok "the server's log equals the node's" \
  || fail "the logs differ: $(diff "$T/srv_log.txt" "$C/spool/runs/$LID/logs/std_log.txt" | head -5)"
assert_eq "5" "$(grep -c '^chunk . done' "$T/srv_log.txt")" "the log has every chunk's line"
api GET "runs/$R/files/outputs/data.txt" >"$T/data.txt"
assert_eq "200" "$(code)" "the output file is downloadable"
cmp -s "$T/data.txt" <(seq 1 1000) && ok "the output's bytes" || fail "the output differs"
show="$($K run show "$R" --json)"
assert_eq "lr=0.1 a" "$(jget "$show" '"lr=" + j["params"]["lr"] + " " + j["tags"]["team"]')" "params and tags are the server run's"
[ -e "$C/spool/runs/$LID/channel" ] && fail "the forwarder removes the channel once sent" || ok "the spool's channel is gone"

# --- a failing entry, a cancel from the server's side ---------------------------------------
F="$(cli run submit --experiment fwd --source "$C/src" --entry fail.sh 2>/dev/null | tail -1)"
S="$(cli run submit --experiment fwd --source "$C/src" --entry sleep.sh 2>/dev/null | tail -1)"
for _ in $(seq 1 300); do
  [ "$(jget "$($K run show "$S" --json)" 'j["status"]')" = Running ] && break; sleep 0.2
done
run_ok $K run cancel "$S" >/dev/null
for id in "$F" "$S"; do
  for _ in $(seq 1 600); do
    case "$(jget "$($K run show "$id" --json)" 'j["status"]')" in Completed|Failed|Canceled) break;; esac
    sleep 0.2
  done
done
fs="$($K run show "$F" --json)"
assert_eq "Failed 3" "$(jget "$fs" 'j["status"] + " " + str(j.get("exit_code"))')" "a failing entry ends Failed with its exit code"
assert_eq "Canceled" "$(jget "$($K run show "$S" --json)" 'j["status"]')" "a cancel on the server reaches the node"
assert_contains "$(api GET "runs/$F/logs")" "failing" "the failing run's log"

# --- refusals --------------------------------------------------------------------------------
CLI_TOKEN="$RO" cli run submit --experiment fwd --source "$C/src" --entry job.sh >/dev/null 2>"$T/ro.err" \
  && fail "a read-only token submits" || ok "a read-only token is refused"
assert_contains "$(cat "$T/ro.err")" "read-write token" "the refusal says a read-write token is needed"
expect_fail "runs on this machine from --source" cli run submit --experiment fwd --snapshot abc --entry job.sh
assert_eq "$($K run list)" "$(cd "$C" && env -u KUSARI_WORKSPACE HOME="$C" KUSARI_TRACKING_TOKEN="$TOK" $K --workspace "$URL" run list)" \
  "--workspace URL names a server too"
# log parts: one already there is skipped, one after a gap is refused with the log's size
size="$(stat -c %s "$T/srv_log.txt")"
out="$(api POST "runs/$R/logs?offset=0" --data-binary 'chunk')"
assert_eq "200 $size" "$(code) $(jget "$out" 'j["offset"]')" "a part already there is skipped"
out="$(api POST "runs/$R/logs?offset=$((size + 10))" --data-binary 'x')"
assert_eq "409 $size" "$(code) $(jget "$out" 'j["error"]["offset"]')" "a part after a gap: 409 with the log's size"
cmp -s "$T/srv_log.txt" <(api GET "runs/$R/logs") && ok "the log is unchanged" || fail "the log changed"
finish
