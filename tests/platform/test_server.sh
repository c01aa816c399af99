#!/usr/bin/env bash
# platform_server: `kusari server` (issue 12 §2) on a free port of 127.0.0.1,
# driven with curl, with real runs submitted with the CLI into the same
# workspace: tokens (401 without, unknown or revoked; 403 for a read-only
# token writing; --no-auth only on loopback), every endpoint's answer against
# the CLI's --json, pagination, cancel, tags, files with Range (206, 416),
# path traversal refused, 400/404/405/413 as JSON errors with stable codes,
# long polls (wait, logs) that return when the run moves, and a clean stop on
# SIGTERM that answers the request still waiting.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || die "curl is needed"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
mkdir -p "$T/src"
# prints "before", logs acc, waits for the file $1 (if given), prints "after", writes outputs/
cat > "$T/src/job.sh" <<'SH'
echo before
kusari log metric acc "${ACC:-0.5}"
kusari log metric acc 0.75
if [ -n "${1:-}" ]; then while [ ! -f "$1" ]; do sleep 0.1; done; fi
echo after
mkdir -p outputs
seq 1 1000 > outputs/data.txt
SH
sub() { submit --experiment srv --source "$T/src" --entry job.sh -- "$@"; }
A="$(sub)"; run_ok $K run wait "$A" >/dev/null
B="$(sub)"; run_ok $K run wait "$B" >/dev/null
C="$(submit --experiment other --source "$T/src" --entry job.sh)"; run_ok $K run wait "$C" >/dev/null
run_ok $K model register --run "$A" --name m1 --path outputs/data.txt >/dev/null
seq 1 1000 > "$T/expected.txt"

# --- --help and bad options --------------------------------------------------------
for c in "server" "server token" "server token create" "server token list" "server token revoke"; do
  out="$($K $c --help)"; rc=$?
  assert_eq "0 yes" "$rc $(case "$out" in *"usage: kusari $c"*) echo yes;; *) echo no;; esac)" "kusari $c --help shows its usage"
done
expect_fail "--port must be 0 to 65535" $K server --port 70000
expect_fail "--workers must be 1 to 256" $K server --workers 0
expect_fail "--max-body must be" $K server --max-body 10
expect_fail "unexpected argument 'start'" $K server start
expect_fail "unknown command 'server token frob'" $K server token frob

# --- tokens ------------------------------------------------------------------------
TOK="$($K server token create writer 2>/dev/null)"
RO="$($K server token create reader --read-only 2>/dev/null)"
assert_contains "$TOK" "kst_" "token create prints the secret"
assert_eq 0 "$(sql "SELECT count(*) FROM tokens WHERE sha256='$TOK' OR name='$TOK'")" "the secret itself is not in the store"
assert_eq "$(printf '%s' "$TOK" | sha256sum | cut -d' ' -f1)" "$(sql "SELECT sha256 FROM tokens WHERE name='writer'")" "the store keeps its sha256"
expect_fail "a token named 'writer' exists already" $K server token create writer
expect_fail "not a valid token name" $K server token create "bad name"
expect_fail "no token named 'nope'" $K server token revoke nope
expect_fail "--no-auth is refused on 0.0.0.0" $K server --host 0.0.0.0 --port 0 --no-auth
expect_fail "not an IPv4 address" $K server --host nowhere --port 0
start_server --max-body 4096
assert_contains "$URL" "http://127.0.0.1:" "the first line is the URL"

body="$(TOKEN_HEADER="X-None: 1" api GET runs)"
assert_eq "401 unauthorized" "$(code) $(err_code "$body")" "no token: 401"
body="$(TOKEN_HEADER="Authorization: Bearer kst_00" api GET runs)"
assert_eq "401 unauthorized" "$(code) $(err_code "$body")" "an unknown token: 401"
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api GET runs/$A)"
assert_eq 200 "$(code)" "a read-only token reads"
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api PUT runs/$A/tags/k -d '{"value": "v"}')"
assert_eq "403 forbidden" "$(code) $(err_code "$body")" "a read-only token writing: 403"
same_json "$($K run show $A --json)" '{}' "the refused write changed nothing" 'j["tags"]'
api GET health >/dev/null
lu="$($K server token list --json)"
assert_eq "read-only True read-write True" "$(jget "$lu" '" ".join("%s %s" % (t["scope"], t["last_used"] is not None) for t in j)')" "token list: scopes, and the last use recorded"
assert_not_contains "$lu$($K server token list)" "$RO" "token list never shows a secret"
run_ok $K server token revoke reader >/dev/null
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api GET runs/$A)"
assert_eq "401 unauthorized" "$(code) $(err_code "$body")" "a revoked token: 401"

# --- reads against the CLI's --json ----------------------------------------------------
same_json "$(api GET runs/$A)" "$($K run show $A --json)" "GET runs/{id} = run show --json"
assert_eq 200 "$(code)" "run show: 200"
same_json "$(api GET runs)" "$($K run list --json)" "GET runs = run list --json" 'j["runs"]'
same_json "$(api GET 'runs?experiment=srv&metrics=acc')" \
  "$($K run list --experiment srv --metrics acc --json)" "GET runs?experiment&metrics = run list --experiment --metrics --json" 'j["runs"]'
same_json "$(api GET 'runs?order_by=metrics.acc%20desc&status=Completed')" \
  "$($K run list --order-by 'metrics.acc desc' --status Completed --json)" "order_by and status as the CLI's" 'j["runs"]'
same_json "$(api GET experiments)" "$($K experiment list --json)" "GET experiments = experiment list --json" 'j["experiments"]'
same_json "$(api GET experiments/srv)" "$($K experiment show srv --json)" "GET experiments/{name} = experiment show --json"
same_json "$(api GET computes)" "$($K compute list --json)" "GET computes = compute list --json" 'j["computes"]'
same_json "$(api GET runs/$A/files)" "$($K run files $A --json)" "GET runs/{id}/files = run files --json" 'j["files"]'
same_json "$(api GET models)" "$($K model list --json)" "GET models = model list --json" 'j["models"]'
same_json "$(api GET models/m1/versions/1)" "$($K model show m1:1 --json)" "GET models/{name}/versions/{v} = model show --json"
same_json "$(api GET models/m1/versions/latest)" "$($K model show m1 --json)" "version 'latest'"
same_json "$(api GET models/m1)" "$($K model list --name m1 --json)" "GET models/{name}: its versions" 'j["versions"]'
same_json "$(api GET runs/$A/metrics/acc)" "$($K run metrics $A --json)" "GET a series = run metrics --json" 'j["points"]' 'j["acc"]'
same_json "$(api GET runs/$A/metrics)" '[{"name": "acc", "step": 1, "value": 0.75}]' "GET runs/{id}/metrics: each metric's latest value and step" 'j["metrics"]'
same_json "$(api GET "metrics/latest?runs=$A,$C&names=acc,none")" "{\"runs\": {\"$A\": {\"acc\": 0.75, \"none\": null}, \"$C\": {\"acc\": 0.75, \"none\": null}}}" \
  "GET metrics/latest: chosen metrics of many runs (null when a run has none)"
api GET "metrics/latest?runs=$A,nope" >/dev/null
assert_eq 404 "$(code)" "metrics/latest with an unknown run: 404"
same_json "$(api GET health)" "{\"status\": \"ok\", \"schema_version\": $($K --version | sed -n 's/.*(schema \([0-9]*\)).*/\1/p'), \"backend\": \"${KUSARI_TEST_STORE:-sqlite}\"}" \
  "health: ok, the store's schema version and backend" '{k: j[k] for k in ("status", "schema_version", "backend")}'

# pagination: pages of 2 cover run list in its order
p1="$(api GET 'runs?max_results=2')"
tok="$(printf '%s' "$p1" | sed -n 's/.*"next_page_token":"\([^"]*\)".*/\1/p')"
p2="$(api GET "runs?max_results=2&page_token=$tok")"
same_json "[$p1, $p2]" "$($K run list --json)" "two pages of 2 = run list; the last has no next_page_token" \
  '[r["id"] for p in j for r in p["runs"]] + [j[1]["next_page_token"]]' '[r["id"] for r in j] + [None]'

check_json

# --- files, Range, traversal ------------------------------------------------------------
curl -s -o "$T/dl" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$A/files/outputs/data.txt" > "$T/code"
assert_eq 200 "$(code)" "download: 200"
cmp -s "$T/dl" "$T/expected.txt" && ok "download: the file's bytes" || fail "download differs"
curl -s -o "$T/dl" -w '%{http_code}' -H "Authorization: Bearer $TOK" -H "Range: bytes=10-29" "$URL/api/v1/runs/$A/files/outputs/data.txt" > "$T/code"
assert_eq "206 $(tail -c +11 "$T/expected.txt" | head -c 20 | od -An -tx1 | tr -d ' \n')" "$(code) $(od -An -tx1 < "$T/dl" | tr -d ' \n')" "Range bytes=10-29: 206 and those 20 bytes"
curl -s -o "$T/dl" -w '%{http_code}' -H "Authorization: Bearer $TOK" -H "Range: bytes=-7" "$URL/api/v1/runs/$A/files/outputs/data.txt" > "$T/code"
assert_eq "206 $(tail -c 7 "$T/expected.txt" | od -An -tx1 | tr -d ' \n')" "$(code) $(od -An -tx1 < "$T/dl" | tr -d ' \n')" "Range bytes=-7: the last 7 bytes"
curl -s -o "$T/dl" -w '%{http_code}' -H "Authorization: Bearer $TOK" -H "Range: bytes=99999-" "$URL/api/v1/runs/$A/files/outputs/data.txt" > "$T/code"
assert_eq "416 range_not_satisfiable" "$(code) $(err_code "$(cat "$T/dl")")" "a range past the end: 416"
curl -s -o "$T/dl" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$URL/api/v1/models/m1/versions/1/files/data.txt" > "$T/code"
cmp -s "$T/dl" "$T/expected.txt" && assert_eq 200 "$(code)" "a model version's file downloads" || fail "model file download differs ($(code))"
for p in "runs/$A/files/../../../kusari.db" "runs/$A/files/outputs/%2e%2e/%2e%2e/%2e%2e/kusari.db" "runs/$A/files/outputs/./data.txt" \
         "models/m1/versions/1/files/../../kusari.db"; do
  body="$(curl -s --path-as-is -w ' %{http_code}' -H "Authorization: Bearer $TOK" "$URL/api/v1/$p")"
  assert_eq "400 invalid" "${body##* } $(err_code "${body% *}")" "path traversal refused: $p"
done
body="$(api GET runs/$A/files/outputs/none.txt)"
assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown file: 404"

# --- errors --------------------------------------------------------------------------------
body="$(api GET runs/nope)";               assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown run: 404"
body="$(api GET experiments/nope)";        assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown experiment: 404"
body="$(api GET models/nope)";             assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown model: 404"
body="$(api GET models/m1/versions/9)";    assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown version: 404"
body="$(api GET nothing/here)";            assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown path: 404"
body="$(curl -s -w ' %{http_code}' "$URL/no/such/page")"; assert_eq "404 not_found" "${body##* } $(err_code "${body% *}")" "outside /api/v1 (and not a file of the web UI): 404 JSON"
body="$(api DELETE runs)";                 assert_eq "405 method_not_allowed" "$(code) $(err_code "$body")" "a wrong method: 405"
assert_contains "$(curl -s -X POST -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$A/tags/k" -o /dev/null -D - | tr -d '\r')" "Allow: PUT, DELETE" "405 says the allowed methods (Allow)"

body="$(api GET 'runs?max_results=0')";    assert_eq "400 invalid" "$(code) $(err_code "$body")" "max_results=0: 400"
body="$(api GET 'runs?status=Done')";      assert_eq "400 invalid" "$(code) $(err_code "$body")" "an unknown status: 400"
body="$(api GET 'runs?order_by=speed')";   assert_eq "400 invalid" "$(code) $(err_code "$body")" "a bad order_by: 400"
body="$(api GET 'runs?page_token=x')";     assert_eq "400 invalid" "$(code) $(err_code "$body")" "a bad page_token: 400"
body="$(api GET 'runs?page_token=9223372036854775807')"; assert_eq "400 invalid" "$(code) $(err_code "$body")" "a page_token out of range: 400"
body="$(api GET 'runs?colour=red')";       assert_eq "400 invalid" "$(code) $(err_code "$body")" "an unknown query parameter: 400"
# filters: the store's filter language (filter.h), the same runs as run list --filter
body="$(api GET 'runs?filter=metrics.acc%20%3E%3D%200&max_results=1000')"; assert_eq 200 "$(code)" "filter: 200"
same_json "$body" "$($K run list --filter 'metrics.acc >= 0' --json)" "filter metrics.acc >= 0: the runs of run list --filter" \
  '[r["id"] for r in j["runs"]]' '[r["id"] for r in j]'
body="$(api GET "runs?filter=id%20%3D%20'$A'")"; assert_eq "200 $A" "$(code) $(printf '%s' "$body" | python3 -c 'import json,sys; print(" ".join(r["id"] for r in json.load(sys.stdin)["runs"]))')" "filter id = A: that run alone"
body="$(api GET "runs?parent=x'%20or%201%3D1%20--")"; assert_eq "200 0" "$(code) $(printf '%s' "$body" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["runs"]))')" "a parent with a quote is data, not filter syntax"
body="$(api GET 'runs?filter=metrics.acc%20%3E')"; assert_eq "400 invalid" "$(code) $(err_code "$body")" "a bad filter: 400"
assert_contains "$body" "position" "a bad filter's message gives the position"
body="$(api GET "runs/$A/metrics/acc?max_points=1")"; assert_eq "400 invalid" "$(code) $(err_code "$body")" "max_points=1: 400"
body="$(api PUT runs/$A/tags/k -d 'not json')"; assert_eq "400 invalid" "$(code) $(err_code "$body")" "a body that is not JSON: 400"
head -c 5000 /dev/zero | tr '\0' 'x' > "$T/big"
body="$(api PUT runs/$A/tags/k --data-binary @"$T/big")"; assert_eq "413 too_large" "$(code) $(err_code "$body")" "a body over --max-body: 413"
body="$(api GET runs/$A -H "X-Big: $(head -c 9000 /dev/zero | tr '\0' 'y')")"; assert_eq "431 headers_too_large" "$(code) $(err_code "$body")" "headers over the limit: 431 JSON"

# --- tags and cancel -------------------------------------------------------------------------
body="$(api PUT runs/$A/tags/stage -d '{"value": "prod <b>"}')"
assert_eq 200 "$(code)" "PUT a tag"
same_json "$($K run show $A --json)" '{"stage": "prod <b>"}' "the tag is in run show" 'j["tags"]'
body="$(api PUT runs/$A/tags/sweep -d '{"value": "x"}')"; assert_eq "400 invalid" "$(code) $(err_code "$body")" "kusari's own tags cannot be set"
body="$(api DELETE runs/$A/tags/stage)"; assert_eq 200 "$(code)" "DELETE a tag"; same_json "$body" '{}' "the tag is gone" 'j["tags"]'
body="$(api DELETE runs/$A/tags/stage)"; assert_eq "404 not_found" "$(code) $(err_code "$body")" "DELETE a missing tag: 404"
body="$(api PUT runs/nope/tags/k -d '{"value": "v"}')"; assert_eq "404 not_found" "$(code) $(err_code "$body")" "tag an unknown run: 404"

H="$(sub "$T/release-h")"
for _ in $(seq 1 300); do [ "$(api GET "runs/$H/logs")" = before ] && break; sleep 0.1; done  # Running
body="$(api POST runs/$H/cancel -d '{"reason": "stopped over HTTP", "grace": 1}')"
assert_eq 202 "$(code)" "POST cancel: 202"
$K run wait "$H" >/dev/null 2>&1
same_json "$($K run show $H --json)" '["Canceled", "stopped over HTTP"]' "the run was canceled with the reason" '[j["status"], j["error"]]'
body="$(api POST runs/$H/cancel)"; assert_eq "409 conflict" "$(code) $(err_code "$body")" "cancel an ended run: 409"

# --- long polls ---------------------------------------------------------------------------------
W="$(sub "$T/release-w")"
body="$(api GET "runs/$W/wait?timeout=1")"
assert_eq 200 "$(code)" "wait?timeout=1 on a held run: 200"; same_json "$body" false "wait?timeout=1 on a held run answers ended=false" 'j["ended"]'
for _ in $(seq 1 300); do [ "$(api GET "runs/$W/logs")" = "before" ] && break; sleep 0.1; done
assert_eq "before" "$(api GET "runs/$W/logs")" "logs from offset 0"
curl -s -D "$T/lh" -o "$T/logtail" -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$W/logs?offset=7&wait=120" &
LP=$!
curl -s -o "$T/waited" -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$W/wait?timeout=120" &
WP=$!
sleep 0.5
kill -0 $WP 2>/dev/null && ok "wait is still waiting while the run is held" || fail "wait returned while the run was held"
touch "$T/release-w"
wait $LP; wait $WP
assert_eq "after" "$(cat "$T/logtail")" "logs?wait= returned the new bytes"
assert_contains "$(tr -d '\r' < "$T/lh")" "X-Kusari-Next-Offset: 13" "and the next offset"
same_json "$(cat "$T/waited")" '[true, "Completed"]' "wait returned when the run ended" '[j["ended"], j["run"]["status"]]'

# --- SIGTERM: a waiting request is answered, the server exits 0 -----------------------------------
S2="$(sub "$T/release-s")"
curl -s -o "$T/cut" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$URL/api/v1/runs/$S2/wait?timeout=120" > "$T/cutcode" &
CP=$!
sleep 0.5
stop_server
wait $CP
assert_eq 0 "$SRV_RC" "SIGTERM: the server exits 0"
assert_eq 200 "$(cat "$T/cutcode")" "the waiting request was answered"; same_json "$(cat "$T/cut")" false "with ended=false" 'j["ended"]'
assert_contains "$(cat "$T/srv.err")" "stopped" "the server logged its stop"
touch "$T/release-s"
$K run wait "$S2" >/dev/null 2>&1

# --- --no-auth on loopback; the whole-request deadline (3 x --timeout) ---------------------------
start_server --no-auth --timeout 1
body="$(TOKEN_HEADER="X-None: 1" api GET runs/$A)"
assert_eq 200 "$(code)" "--no-auth on 127.0.0.1: no token needed"
# a client trickling its headers a byte at a time is never idle for the 1 s
# idle timeout; the watchdog closes it once its request took over 3 s
cut="$(python3 - "${URL#http://}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
s.settimeout(0.3)
for _ in range(200):  # up to about a minute of trickling
    try:
        s.sendall(b"a")
        if s.recv(1) == b"":
            print("closed"); break
    except socket.timeout:
        continue
    except OSError:
        print("closed"); break
else:
    print("still open")
PY
)"
assert_eq closed "$cut" "a trickling client is cut by the request deadline"
assert_contains "$(cat "$T/srv.err")" "whose request took over 3 s" "and the server says so"
W2="$(sub "$T/release-w2")"
body="$(TOKEN_HEADER="X-None: 1" api GET "runs/$W2/wait?timeout=5")"
assert_eq 200 "$(code)" "a long poll longer than the deadline is not cut (it waits suspended)"
same_json "$body" false "and answers ended=false at its timeout" 'j["ended"]'
touch "$T/release-w2"
stop_server
$K run wait "$W2" >/dev/null 2>&1
check_json
finish
