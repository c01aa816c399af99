#!/usr/bin/env bash
# platform_server_sweeps: sweeps and scoring services over the tracking
# server's API (issue 12 §2, the data of issue 15's Sweep and Services
# pages), against a real `kusari server` on 127.0.0.1. A real bandit sweep
# (two children, the second stopped by the policy) and a real scoring
# service (a Linear 4->3 written with numpy, deployed with --auth and
# scored over HTTP) are made first; then GET /sweeps, /sweeps/{id},
# /services and /services/{name} must be exactly what `sweep list|show
# --json` and `service list|show --json` print, the canceled child carries
# its rule and numbers, the keys are in no answer, /services/{name}/metrics
# gives the service's own request counters and latency (and 503
# service_not_running once it is stopped), and each route answers 401, 404,
# 400, 405 and 413 where it should.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
/usr/bin/python3 -c "import numpy" 2>/dev/null || { echo "skip: python3-numpy not installed"; exit 77; }
run_ok $K compute create cpu --max-nodes 4 >/dev/null

# --- a sweep whose second child the bandit policy stops ---------------------------------
mkdir -p "$T/src"
cat > "$T/src/entry.sh" <<'SH'
curve=""
while [ $# -gt 0 ]; do case "$1" in --curve) curve=$2;; esac; shift 2; done
for v in $(grep "^$curve " curves.txt | cut -d' ' -f2-); do kusari log metric acc "$v"; sleep 0.1; done
SH
printf 'b1 0.5 0.6 0.7 0.8 0.8 0.8\nb2 0.4 0.5 0.55 0.6 0.6 0.6\n' > "$T/src/curves.txt"
cat > "$T/sweep.json" <<JSON
{"experiment": "sw", "run": {"source": "$T/src", "entry": "entry.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--curve": {"choice": ["b1", "b2"]}}},
 "primary_metric": {"name": "acc", "goal": "maximize"},
 "policy": {"type": "bandit", "evaluation_interval": 1, "slack_factor": 0.1, "delay_evaluation": 2},
 "max_concurrent_runs": 1, "cancel_grace_seconds": 1}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$SW" --timeout 120 --quiet >/dev/null

# --- a scoring service with keys ------------------------------------------------------------
mkdir -p "$T/lin"
/usr/bin/python3 - "$T/lin" <<'PYM' || die "cannot write the model"
import numpy as np, sys
d = sys.argv[1]
np.savez(d + "/model.npz", **{"l1/W": np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "l1/b": np.zeros(3, np.float32)})
open(d + "/model.json", "w").write('{"format": "kusari-sequential/1", "input": [4], "layers": '
                                   '[{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": false}]}\n')
PYM
run_ok $K model register --name lin --file "$T/lin" >/dev/null
SURI="$(run_ok $K model deploy lin --name ks --auth | tail -1)"
keys="$(run_ok $K service keys ks --json)"
K1="$(jget "$keys" 'j["primary_key"]')"; K2="$(jget "$keys" 'j["secondary_key"]')"
score() { curl -s -m 20 -o /dev/null -w '%{http_code}' -d '{"data": [[1, 2, 3, 4]]}' "$@" "$SURI"; }
assert_eq "200 200 401" "$(score -H "Authorization: Bearer $K1") $(score -H "Authorization: Bearer $K1") $(score)" \
  "the service scored twice and refused one request without a key"

TOK="$($K server token create rw 2>/dev/null)"
RO="$($K server token create ro --read-only 2>/dev/null)"
start_server --max-body 4096

# --- sweeps ----------------------------------------------------------------------------------
body="$(api GET sweeps)"
assert_eq 200 "$(code)" "GET /sweeps: 200"
same_json "$body" "$($K sweep list --json)" "GET /sweeps is sweep list --json" 'j["sweeps"]'
body="$(api GET "sweeps?experiment=sw")"
same_json "$body" "[\"$SW\"]" "GET /sweeps?experiment=sw: that sweep" '[s["id"] for s in j["sweeps"]]'
same_json "$(api GET "sweeps?experiment=nope")" '{"sweeps": []}' "GET /sweeps?experiment=nope: none"
body="$(api GET "sweeps/$SW")"
assert_eq 200 "$(code)" "GET /sweeps/{id}: 200"
same_json "$body" "$($K sweep show "$SW" --json)" "GET /sweeps/{id} is sweep show --json"
same_json "$body" '[{"--curve": {"choice": ["b1", "b2"]}}, {"evaluation_interval": 1, "delay_evaluation": 2, "slack_factor": 0.1}, "bandit", "acc", "maximize", "grid"]' \
  "the sweep's search space and policy settings" \
  '[j["search_space"], j["policy_settings"], j["policy"], j["primary_metric"], j["goal"], j["sampling"]]'
same_json "$body" '[["b1", "Completed", false], ["b2", "Canceled", true]]' \
  "the children's status; the canceled one says why" \
  '[[c["parameters"]["--curve"], c["status"], "bandit" in (c["early_termination"] or "")] for c in sorted(j["children"], key=lambda c: c["index"])]'
same_json "$body" 'true' "best_child is the b1 child" \
  '[c["id"] for c in j["children"] if c["parameters"]["--curve"] == "b1"] == [j["best_child"]]'
api GET "sweeps/nope" >/dev/null; assert_eq 404 "$(code)" "GET /sweeps/nope: 404"
assert_eq not_found "$(err_code "$(cat "$T/body")")" "GET /sweeps/nope: code not_found"
api GET "sweeps?nope=1" >/dev/null; assert_eq 400 "$(code)" "GET /sweeps?nope=1: 400"
api GET "sweeps/$SW?x=1" >/dev/null; assert_eq 400 "$(code)" "GET /sweeps/{id}?x=1: 400"
TOKEN_HEADER="Authorization: Bearer kst_wrong" api GET sweeps >/dev/null; assert_eq 401 "$(code)" "GET /sweeps with a wrong token: 401"
TOKEN_HEADER="X-None: 1" api GET "sweeps/$SW" >/dev/null; assert_eq 401 "$(code)" "GET /sweeps/{id} without a token: 401"
TOKEN_HEADER="Authorization: Bearer $RO" api GET "sweeps/$SW" >/dev/null; assert_eq 200 "$(code)" "a read-only token reads a sweep"
api POST "sweeps/$SW" -d '{}' >/dev/null; assert_eq 405 "$(code)" "POST /sweeps/{id}: 405"
api DELETE "sweeps/$SW/cancel" >/dev/null; assert_eq 405 "$(code)" "DELETE /sweeps/{id}/cancel: 405"
head -c 10000 /dev/zero | tr '\0' x > "$T/big"
api GET sweeps --data-binary @"$T/big" -X GET >/dev/null; assert_eq 413 "$(code)" "a body over --max-body on GET /sweeps: 413"

# --- cancel (a write: read-write tokens only) ------------------------------------------------------
printf 'while [ ! -f "%s/never" ]; do sleep 0.1; done\n' "$T" > "$T/src/wait.sh"
cat > "$T/live.json" <<JSON
{"experiment": "live", "run": {"source": "$T/src", "entry": "wait.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--x": {"choice": ["1", "2"]}}}, "primary_metric": {"name": "acc", "goal": "maximize"},
 "max_concurrent_runs": 2, "cancel_grace_seconds": 1}
JSON
LIVE="$(run_ok $K sweep submit "$T/live.json" | tail -1)"
for _ in $(seq 1 300); do
  [ "$($K sweep show "$LIVE" --json | python3 -c 'import json,sys; print(sum(c["status"] == "Running" for c in json.load(sys.stdin)["children"]))')" = 2 ] && break
  sleep 0.1
done
TOKEN_HEADER="Authorization: Bearer $RO" api POST "sweeps/$LIVE/cancel" >/dev/null
assert_eq 403 "$(code)" "POST /sweeps/{id}/cancel with a read-only token: 403"
api POST "sweeps/$LIVE/cancel" -d '{"reason": 5}' >/dev/null; assert_eq 400 "$(code)" "a reason that is not text: 400"
api POST "sweeps/$LIVE/cancel" -d '[' >/dev/null; assert_eq 400 "$(code)" "a body that is not JSON: 400"
api POST "sweeps/$LIVE/cancel" --data-binary @"$T/big" >/dev/null; assert_eq 413 "$(code)" "a body over --max-body: 413"
api POST "sweeps/nope/cancel" >/dev/null; assert_eq 404 "$(code)" "cancel of an unknown sweep: 404"
assert_eq Running "$(jget "$($K sweep show "$LIVE" --json)" 'j["status"]')" "none of the refused cancels touched the sweep"
body="$(api POST "sweeps/$LIVE/cancel" -d '{"reason": "stopped from the API test"}')"
assert_eq 202 "$(code)" "POST /sweeps/{id}/cancel: 202"
assert_eq "$LIVE" "$(jget "$body" 'j["id"]')" "it answers the sweep's view"
$K sweep wait "$LIVE" --timeout 60 --quiet >/dev/null 2>&1  # (exits 1: the sweep was canceled)
out="$($K sweep show "$LIVE" --json)"
assert_eq "Canceled Canceled Canceled" "$(jget "$out" '" ".join([j["status"]] + [c["status"] for c in j["children"]])')" \
  "the sweep and both its children ended Canceled"
assert_contains "$($K run show "$LIVE")" "stopped from the API test" "the reason is recorded on the sweep's run"
api POST "sweeps/$LIVE/cancel" >/dev/null; assert_eq 409 "$(code)" "cancel of an ended sweep: 409"
assert_contains "$(cat "$T/body")" "already ended (Canceled); there is nothing to cancel" "it says why"

# a sweep whose controller is gone (kill -9): the cancel asks its children itself
sed 's/"live"/"orphan"/' "$T/live.json" > "$T/orphan.json"
ORPH="$(run_ok $K sweep submit "$T/orphan.json" | tail -1)"
for _ in $(seq 1 300); do
  [ "$($K sweep show "$ORPH" --json | python3 -c 'import json,sys; print(sum(c["status"] == "Running" for c in json.load(sys.stdin)["children"]))')" = 2 ] && break
  sleep 0.1
done
cpid="$(sql "SELECT supervisor_pid FROM runs WHERE id='$ORPH'")"
[ -n "$cpid" ] && kill -9 "$cpid" 2>/dev/null && ok "killed the controller (pid $cpid)" || fail "no controller pid for $ORPH"
api POST "sweeps/$ORPH/cancel" >/dev/null; assert_eq 202 "$(code)" "cancel of a sweep without its controller: 202"
for _ in $(seq 1 300); do
  [ "$($K sweep show "$ORPH" --json | python3 -c 'import json,sys; print(sum(c["status"] == "Canceled" for c in json.load(sys.stdin)["children"]))')" = 2 ] && break
  sleep 0.1
done
assert_eq "Canceled Canceled" "$(jget "$($K sweep show "$ORPH" --json)" '" ".join(c["status"] for c in j["children"])')" \
  "its children were canceled by the server"

# --- submit: the source as blobs and a manifest (what `sweep submit` against a server sends) ------------
up() {  # up TEXT: uploads TEXT as a blob, echoes its sha256
  local h
  h="$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"
  api PUT "blobs/$h" --data-binary "$1" >/dev/null
  echo "$h"
}
ENTRY='kusari log metric acc 0.5'
E="$(up "$ENTRY")"
ent() { printf '{"path": "%s", "mode": 420, "size": %s, "sha256": "%s"}' "$1" "${2:-${#ENTRY}}" "${3:-$E}"; }
man() { up "{\"files\": [$1]}"; }
SPEC='{"experiment": "up", "run": {"entry": "e.sh", "compute": "cpu"}, "sampling": {"type": "grid", "space": {"--x": {"choice": ["1"]}}}, "primary_metric": {"name": "acc", "goal": "maximize"}}'
post() { api POST sweeps -d "{\"spec\": ${2:-$SPEC}, \"snapshot\": \"$1\", \"source\": \"my laptop:/src\"}"; }
nsweeps() { $K sweep list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
before="$(nsweeps)"
refused() {  # refused SNAPSHOT WHAT MESSAGE [SPEC]
  post "$1" "${4:-}" >/dev/null
  assert_eq 400 "$(code)" "POST /sweeps, $2: 400"
  assert_contains "$(cat "$T/body")" "$3" "$2: says '$3'"
}
refused "$(man "$(ent ../e.sh)")" "a manifest path with '..'" "not a file's path"
refused "$(man "$(ent /etc/e.sh)")" "an absolute manifest path" "not a file's path"
refused "$(man "$(ent e.sh), $(ent e.sh)")" "a path given twice" "is given twice"
refused "$(man "$(ent z.sh), $(ent e.sh)")" "entries out of order" "out of order"
refused "$(man "$(ent e.sh 3 "$(printf x | sha256sum | cut -d' ' -f1)")")" "a file not uploaded" "upload it first"
refused "$(man "$(ent e.sh 99)")" "a size that is not its blob's" "upload it first"
refused "$(man "$(ent other.sh)")" "an entry that is not in the source" "is not a file of the uploaded source"
refused "$E" "a snapshot that is not a manifest" "is not a snapshot manifest"
refused "$(printf nothing | sha256sum | cut -d' ' -f1)" "a snapshot not uploaded" "upload the source's files and then its manifest"
refused "xyz" "a snapshot that is not a sha256" "is not a sha256"
M="$(man "$(ent e.sh)")"
refused "$M" "a sweep file without primary_metric" "primary_metric" \
  '{"experiment": "up", "run": {"entry": "e.sh"}, "sampling": {"type": "grid", "space": {"--x": {"choice": ["1"]}}}}'
refused "$M" "a compute target it does not have" "no compute target named 'gpu'" "${SPEC/\"cpu\"/\"gpu\"}"
refused "$M" "an environment file" "environments are not supported over HTTP" "${SPEC/\"compute\"/\"environment\": \"/tmp/env.json\", \"compute\"}"
api POST sweeps -d '{"spec": 1}' >/dev/null; assert_eq 400 "$(code)" "POST /sweeps with a spec that is not an object: 400"
TOKEN_HEADER="Authorization: Bearer $RO" post "$M" >/dev/null; assert_eq 403 "$(code)" "POST /sweeps with a read-only token: 403"
TOKEN_HEADER="X-None: 1" post "$M" >/dev/null; assert_eq 401 "$(code)" "POST /sweeps without a token: 401"
api POST sweeps --data-binary @"$T/big" >/dev/null; assert_eq 413 "$(code)" "POST /sweeps over --max-body: 413"
assert_eq "$before" "$(nsweeps)" "no refused request recorded a sweep"
body="$(post "$M")"
assert_eq 201 "$(code)" "POST /sweeps with a good manifest: 201"
UP="$(jget "$body" 'j["id"]')"
$K sweep wait "$UP" --timeout 120 --quiet >/dev/null 2>&1
same_json "$($K sweep show "$UP" --json)" '["Completed", ["Completed"], 0.5]' "the uploaded sweep ran its child from the uploaded entry" \
  '[j["status"], [c["status"] for c in j["children"]], j["children"][0]["best"]]'
assert_contains "$($K run show "$UP")" "my laptop:/src" "the sweep records the source it was given"

# --- services ----------------------------------------------------------------------------------
body="$(api GET services)"
assert_eq 200 "$(code)" "GET /services: 200"
same_json "$body" "$($K service list --json)" "GET /services is service list --json" 'j["services"]'
body="$(api GET services/ks)"
assert_eq 200 "$(code)" "GET /services/ks: 200"
same_json "$body" "$($K service show ks --json)" "GET /services/{name} is service show --json"
same_json "$body" '["Running", true]' "the service is Running with auth" '[j["state"], j["auth"]]'
all="$(api GET services)$(api GET services/ks)$(api GET services/ks/metrics)"
assert_not_contains "$all" "$K1" "no answer holds the primary key"
assert_not_contains "$all" "$K2" "no answer holds the secondary key"
assert_not_contains "$all" "${K1:0:16}" "nor a part of it"
body="$(api GET services/ks/metrics)"
assert_eq 200 "$(code)" "GET /services/ks/metrics: 200"
# (its counters count every path: the deploy's /health probes and the /metrics reads answer 200 too)
same_json "$body" '["ks", "Running", true, 1, true, true, true]' "the service's counters: 2 scored, 1 refused; latency counted" \
  '[j["service"], j["state"], j["requests_by_code"].get("200", 0) >= 2, j["requests_by_code"].get("401"), j["requests_total"] >= 3, j["latency_seconds"]["count"] >= 3, j["latency_seconds"]["p50"] is not None and j["latency_seconds"]["p50"] <= j["latency_seconds"]["buckets"][-1]["le"]]'
api GET services/nope >/dev/null; assert_eq 404 "$(code)" "GET /services/nope: 404"
api GET services/nope/metrics >/dev/null; assert_eq 404 "$(code)" "GET /services/nope/metrics: 404"
api GET "services?all=1" >/dev/null; assert_eq 400 "$(code)" "GET /services?all=1: 400"
TOKEN_HEADER="Authorization: Bearer kst_wrong" api GET services/ks/metrics >/dev/null
assert_eq 401 "$(code)" "GET /services/ks/metrics with a wrong token: 401"
# the service's log
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api GET services/ks/logs)"
assert_eq 200 "$(code)" "GET /services/ks/logs (a read-only token reads it): 200"
assert_eq "$($K service logs ks)" "$body" "it is what service logs prints"
assert_eq "$($K service logs ks --tail 1)" "$(api GET "services/ks/logs?tail=1")" "?tail=1 is service logs --tail 1"
api GET "services/ks/logs?tail=0" >/dev/null; assert_eq 400 "$(code)" "?tail=0: 400"
api GET "services/nope/logs" >/dev/null; assert_eq 404 "$(code)" "the log of an unknown service: 404"
# keys: a POST (read-write tokens only), the keys in the answer; regenerating one
TOKEN_HEADER="Authorization: Bearer $RO" api POST services/ks/keys >/dev/null
assert_eq 403 "$(code)" "POST /services/ks/keys with a read-only token: 403"
assert_not_contains "$(cat "$T/body")" "$K1" "the refusal holds no key"
body="$(api POST services/ks/keys)"; assert_eq 200 "$(code)" "POST /services/ks/keys: 200"
assert_eq "$K1 $K2 True" "$(jget "$body" 'j["primary_key"] + " " + j["secondary_key"] + " " + str(j["auth"])')" \
  "the service's two keys, as service keys prints them"
api POST services/ks/keys -d '{"regenerate": "all"}' >/dev/null; assert_eq 400 "$(code)" "regenerate 'all': 400"
api POST services/nope/keys >/dev/null; assert_eq 404 "$(code)" "keys of an unknown service: 404"
assert_eq "$K1 $K2" "$(jget "$($K service keys ks --json)" 'j["primary_key"] + " " + j["secondary_key"]')" "the refused requests changed no key"
body="$(api POST services/ks/keys -d '{"regenerate": "secondary"}')"; assert_eq 200 "$(code)" "regenerate secondary: 200"
N2="$(jget "$body" 'j["secondary_key"]')"
assert_eq "$K1 True" "$(jget "$body" 'j["primary_key"] + " " + str(j["reloaded"])')" "the primary key is kept; the running server reloads"
assert_eq "401 200" "$(score -H "Authorization: Bearer $K2") $(score -H "Authorization: Bearer $N2")" \
  "the service refuses the old secondary key and takes the new one at once"
K2="$N2"
# deploy (model deploy on the server's machine)
dep() { api POST services -d "$1"; }
badd() { dep "$1" >/dev/null; assert_eq 400 "$(code)" "POST /services, $2: 400"; }
badd '{"name": "ks2"}' "no model"
badd '{"name": "ks2", "model": "lin", "workers": 0}' "workers 0"
badd '{"name": "ks2", "model": "lin", "port": 70000}' "port 70000"
badd '{"name": "ks 2", "model": "lin"}' "a service name with a space"
badd '{"name": "ks2", "model": "lin", "host": "localhost"}' "a host that is not an IPv4 address"
badd '{"name": "ks2", "model": "lin", "auth": "yes"}' "auth as text"
badd "{\"name\": \"ks2\", \"model\": \"lin\", \"entry\": {\"sha256\": \"$(sha256sum "$T/big" | cut -c1-64)\", \"name\": \"e.so\"}}" \
  "an entry library not uploaded"
badd '{"name": "ks2", "model": "lin", "entry": {"sha256": "x", "name": "../e.so"}}' "an entry named with '..'"
dep '{"name": "ks2", "model": "nope"}' >/dev/null; assert_eq 404 "$(code)" "POST /services of an unknown model: 404"
TOKEN_HEADER="Authorization: Bearer $RO" dep '{"name": "ks2", "model": "lin"}' >/dev/null
assert_eq 403 "$(code)" "POST /services with a read-only token: 403"
api POST services --data-binary @"$T/big" >/dev/null; assert_eq 413 "$(code)" "POST /services over --max-body: 413"
api GET services/ks2 >/dev/null; assert_eq 404 "$(code)" "the refused deploys made no service"
body="$(dep '{"name": "ks2", "model": "lin", "version": 1, "auth": true, "workers": 1}')"
assert_eq 201 "$(code)" "POST /services: 201"
same_json "$body" '["ks2", "Running", "lin:1", true, 1, null]' "the new service runs the model with auth" \
  '[j["service"]["name"], j["service"]["state"], j["service"]["model"], j["service"]["auth"], j["service"]["workers"], j["redeployed"]]'
S2URI="$(jget "$body" 'j["service"]["scoring_uri"]')"
S2K="$(jget "$(api POST services/ks2/keys)" 'j["primary_key"]')"
assert_eq "200 401" "$(SURI=$S2URI score -H "Authorization: Bearer $S2K") $(curl -s -m 20 -o /dev/null -w '%{http_code}' -d '{"data": [[1, 2, 3, 4]]}' "$S2URI")" \
  "it scores with its key and refuses a request without"
body="$(dep '{"name": "ks2", "model": "lin", "workers": 2}')"
assert_eq 200 "$(code)" "POST /services of an existing name: 200 (redeployed)"
same_json "$body" '[{"model": "lin:1", "state": "Running"}, 2, "Running"]' "it says what it replaced; the new deployment runs" \
  '[j["redeployed"], j["service"]["workers"], j["service"]["state"]]'
assert_eq "$S2K" "$(jget "$(api POST services/ks2/keys)" 'j["primary_key"]')" "a redeployed service keeps its keys"
api DELETE services/ks2 >/dev/null; assert_eq 200 "$(code)" "DELETE /services/ks2: 200"
for w in "POST services/ks/stop" "POST services/ks/start" "DELETE services/ks"; do
  TOKEN_HEADER="Authorization: Bearer $RO" api $w >/dev/null; assert_eq 403 "$(code)" "$w with a read-only token: 403"
done
api POST services/nope/start >/dev/null; assert_eq 404 "$(code)" "POST /services/nope/start: 404"
api DELETE services/nope >/dev/null; assert_eq 404 "$(code)" "DELETE /services/nope: 404"
api POST services/ks/stop --data-binary @"$T/big" >/dev/null; assert_eq 413 "$(code)" "a body over --max-body: 413"
assert_eq Running "$(jget "$($K service show ks --json)" 'j["state"]')" "the refused requests left it Running"
body="$(api POST services/ks/stop)"; assert_eq 200 "$(code)" "POST /services/ks/stop: 200"
assert_eq Stopped "$(jget "$body" 'j["state"]')" "it answers the service Stopped"
curl -s -m 5 -o /dev/null "$SURI" && fail "the stopped service still answers" || ok "the service's port no longer answers"
body="$(api GET services/ks/metrics)"
assert_eq 503 "$(code)" "a stopped service's metrics: 503"
assert_eq service_not_running "$(err_code "$body")" "code service_not_running"
assert_contains "$body" "service ks is Stopped" "the message says its state"
same_json "$(api GET services/ks)" '"Stopped"' "GET /services/ks: Stopped" 'j["state"]'
body="$(api POST services/ks/start)"; assert_eq 200 "$(code)" "POST /services/ks/start: 200"
assert_eq Running "$(jget "$body" 'j["state"]')" "it answers the service Running"
SURI="$(jget "$body" 'j["scoring_uri"]')"
assert_eq 200 "$(score -H "Authorization: Bearer $K2")" "the restarted service scores with its key"
api POST services/ks/start >/dev/null; assert_eq 200 "$(code)" "starting a Running service: 200, nothing done"
body="$(api DELETE services/ks)"; assert_eq 200 "$(code)" "DELETE /services/ks: 200"
assert_eq ks "$(jget "$body" 'j["deleted"]')" "it names the service deleted"
api GET services/ks >/dev/null; assert_eq 404 "$(code)" "then GET /services/ks: 404"
[ -e "$WS/services/ks" ] && fail "the service's folder (its keys) is still there" || ok "its folder and keys are gone"
curl -s -m 5 -o /dev/null "$SURI" && fail "the deleted service still answers" || ok "the deleted service's port no longer answers"
check_json
stop_server
finish
