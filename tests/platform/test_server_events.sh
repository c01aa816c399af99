#!/usr/bin/env bash
# platform_server_events: GET /api/v1/runs/{id}/events, server-sent events
# of a real run, read with curl over loopback from a real `kusari server`
# with ONE worker thread. The run logs a metric and a line, then waits for a
# file: the stream must have shown both while the run is still Running (live,
# not at the end); three streams open at once must leave the one worker free
# (GET /health answers); heartbeats come as comments; once the run goes on
# and ends, the stream sends the rest in order (every point, every line, the
# final status after them, then "end") and closes by itself. Last-Event-ID
# resumes after an event (nothing before it again), from=start replays the
# whole run, and bad requests get 400/401/404/405/413.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
run_ok $K compute create cpu --max-nodes 4 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/job.sh" <<'SH'
kusari log metric acc 0.25
echo "first line"
while [ ! -f "$1" ]; do sleep 0.1; done
kusari log metric acc 0.5
kusari log metric loss 1.5
echo "second line"
printf 'last words without a newline'
SH
R="$(submit --experiment ev --source "$T/src" --entry job.sh -- "$T/go")"
TOK="$($K server token create rw 2>/dev/null)"
start_server --workers 1 --max-body 4096
ev() {  # ev OUT ARGS...: a stream in the background (curl -N), its pid in $EVPID
  local out=$1
  shift
  curl -sN -m 120 -H "Authorization: Bearer $TOK" "$@" >"$out" 2>/dev/null &
  EVPID=$!
}
wait_for() {  # wait_for FILE TEXT: up to 30 s
  for _ in $(seq 1 300); do grep -qF -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# events FILE: "TYPE DATA" per event (comments and retry lines left out)
events() { awk '/^event: /{t=$2} /^data: /{sub(/^data: /, ""); print t " " $0}' "$1"; }

# --- live: the first point and line while the run waits ------------------------------------------
ev "$T/live" "$URL/api/v1/runs/$R/events?from=start"; LIVE=$EVPID
wait_for "$T/live" '"line":"first line"' || fail "the first log line came on the stream while the run ran: $(cat "$T/live")"
wait_for "$T/live" '"name":"acc","step":0,"value":0.25' || fail "the first point came on the stream: $(cat "$T/live")"
assert_eq Running "$(jget "$($K run show "$R" --json)" 'j["status"]')" "the run is still Running: the events came as they happened"
assert_contains "$(events "$T/live" | grep '^status ')" '"status":"Running"' "the stream gave the status Running"
grep -q '^id: ' "$T/live" && ok "events carry ids" || fail "no id: lines"
# --- three more streams on the one worker; the worker is still free -------------------------------
ev "$T/s1" "$URL/api/v1/runs/$R/events"; P1=$EVPID
ev "$T/s2" "$URL/api/v1/runs/$R/events?heartbeat=1"; P2=$EVPID
ev "$T/s3" "$URL/api/v1/runs/$R/events"; P3=$EVPID
wait_for "$T/s3" '"status":"Running"' || fail "the third stream started: $(cat "$T/s3")"
assert_eq 200 "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOK" "$URL/api/v1/health")" \
  "with 4 streams open the single worker still answers GET /health"
wait_for "$T/s2" ': keepalive' && ok "heartbeat=1: a keepalive comment while nothing happens" || fail "no heartbeat: $(cat "$T/s2")"
assert_not_contains "$(cat "$T/s1")" '"line":"first line"' "a stream from now does not replay what came before"

# --- the run goes on and ends: every stream gets the rest and closes -----------------------------------
touch "$T/go"
run_ok $K run wait "$R" >/dev/null
for p in $LIVE $P1 $P2 $P3; do
  wait "$p"; rc=$?
  [ $rc -eq 0 ] || fail "a stream did not end by itself once the run ended (curl exit $rc)"
done
ts() { sed -E 's/"timestamp":[0-9.e+-]+/"timestamp":TS/'; }
got="$(events "$T/live" | ts)"
# points and lines each in their order (the two may interleave either way:
# the supervisor ingests points in batches), Running before them, the final
# status after all of them, then end (Queued or Preparing may come first or
# not: the stream starts when it starts)
assert_eq 'metric {"name":"acc","step":0,"value":0.25,"timestamp":TS}
metric {"name":"acc","step":1,"value":0.5,"timestamp":TS}
metric {"name":"loss","step":0,"value":1.5,"timestamp":TS}' "$(printf '%s\n' "$got" | grep '^metric ')" "the live stream: every point, in order"
assert_eq 'log {"offset":0,"line":"first line"}
log {"offset":11,"line":"second line"}
log {"offset":23,"line":"last words without a newline"}' "$(printf '%s\n' "$got" | grep '^log ')" \
  "every log line in order, the last one without its newline once the run ended"
assert_eq 'status {"status":"Running","error":null}' "$(printf '%s\n' "$got" | grep -v '"status":"\(Queued\|Preparing\)"' | head -1)" \
  "Running comes before the points and lines"
assert_eq 'status {"status":"Completed","error":null}
end {"status":"Completed"}' "$(printf '%s\n' "$got" | tail -2)" "the final status after everything, then end"
assert_contains "$(events "$T/s1")" 'metric {"name":"acc","step":1,"value":0.5' "a stream from now gets the new points"
assert_eq "end" "$(events "$T/s1" | tail -1 | cut -d' ' -f1)" "and ends with 'end'"

# --- Last-Event-ID resumes after an event ---------------------------------------------------------
id="$(grep -B2 '"name":"acc","step":0' "$T/live" | sed -n 's/^id: //p')"
[ -n "$id" ] || fail "the first point's id"
curl -sN -m 30 -H "Authorization: Bearer $TOK" -H "Last-Event-ID: $id" "$URL/api/v1/runs/$R/events" >"$T/resume"
got="$(events "$T/resume" | ts)"
# (the events after the one with that id: from the blank line that ends it;
# a status the run passed through meanwhile, Finalizing, is one the resumed
# stream cannot see: it reports the status as it is when it looks)
want="$(awk -v id="$id" 'f == 1; f == 2 && $0 == "" {f = 1}; $0 == "id: " id {f = 2}' "$T/live" > "$T/after"
        events "$T/after" | ts | grep -v '^status {"status":"Finalizing"')"
[ -n "$want" ] || fail "events after $id in the live stream"
# (points and lines each in their order; how the two interleave depends on
# when the stream looked)
for k in metric log; do
  assert_eq "$(printf '%s\n' "$want" | grep "^$k ")" "$(printf '%s\n' "$got" | grep "^$k ")" \
    "Last-Event-ID: exactly the live stream's ${k} events after that event"
done
assert_eq "$(printf '%s\n' "$want" | tail -2)" "$(printf '%s\n' "$got" | tail -2)" "and the same end"
assert_not_contains "$got" '"value":0.25' "the point of that event is not sent again"
# --- from=start after the end: the whole run -------------------------------------------------------------
curl -sN -m 30 -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$R/events?from=start" >"$T/replay"
assert_eq "3 3 1 1" "$(events "$T/replay" | grep -c '^metric ') $(events "$T/replay" | grep -c '^log ') \
$(events "$T/replay" | grep -c '^status ') $(events "$T/replay" | grep -c '^end ')" \
  "from=start on an ended run: 3 points, 3 lines, its status, end"
assert_contains "$(head -c 200 "$T/replay")" "retry: " "the stream tells the client how soon to reconnect"

# --- bad requests --------------------------------------------------------------------------------------
api GET "runs/nope/events" >/dev/null; assert_eq 404 "$(code)" "an unknown run: 404"
assert_eq not_found "$(err_code "$(cat "$T/body")")" "code not_found"
api GET "runs/$R/events" -H "Last-Event-ID: x-1" >/dev/null; assert_eq 400 "$(code)" "a Last-Event-ID it did not send: 400"
api GET "runs/$R/events?from=yesterday" >/dev/null; assert_eq 400 "$(code)" "from=yesterday: 400"
api GET "runs/$R/events?heartbeat=0" >/dev/null; assert_eq 400 "$(code)" "heartbeat=0: 400"
api GET "runs/$R/events?x=1" >/dev/null; assert_eq 400 "$(code)" "an unknown parameter: 400"
TOKEN_HEADER="X-None: 1" api GET "runs/$R/events" >/dev/null; assert_eq 401 "$(code)" "no token: 401"
api POST "runs/$R/events" -d '{}' >/dev/null; assert_eq 405 "$(code)" "POST: 405"
head -c 10000 /dev/zero | tr '\0' x > "$T/big"
api GET "runs/$R/events" --data-binary @"$T/big" -X GET >/dev/null; assert_eq 413 "$(code)" "a body over --max-body: 413"

# --- SIGTERM with a stream open on a live run: the stream ends, the server exits 0 ------------------------
R2="$(submit --experiment ev --source "$T/src" --entry job.sh -- "$T/go2")"
ev "$T/open" "$URL/api/v1/runs/$R2/events"; P=$EVPID
wait_for "$T/open" '"status":"' || fail "the stream on the second run started"
stop_server
wait "$P"; assert_eq 0 $? "the open stream ended cleanly when the server stopped"
touch "$T/go2"
run_ok $K run wait "$R2" >/dev/null
finish
