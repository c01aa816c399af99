#!/usr/bin/env bash
# platform_pg_server: `kusari server` on a workspace whose store is PostgreSQL
# (issue 12 §4): tokens, list and show against the CLI's --json, a metrics
# batch applied exactly once; then the database server goes away while the
# tracking server runs: requests get a 503 JSON error (code "backend"), the
# server stays up, and answers again once PostgreSQL is back.
export KUSARI_TEST_STORE=postgresql
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || die "curl is needed"
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
printf 'kusari log metric acc 0.5\nkusari log metric acc 0.75\n' > "$T/src/job.sh"
A="$(submit --experiment srv --source "$T/src" --entry job.sh)"
run_ok $K run wait "$A" >/dev/null

# --- tokens (kept in PostgreSQL) -----------------------------------------------------
TOK="$($K server token create writer 2>/dev/null)"
RO="$($K server token create reader --read-only 2>/dev/null)"
assert_contains "$TOK" "kst_" "token create prints the secret"
expect_fail "a token named 'writer' exists already" $K server token create writer
assert_eq "reader writer" "$($K server token list --json | python3 -c 'import json,sys; print(" ".join(t["name"] for t in json.load(sys.stdin)))')" \
  "token list names both"
start_server
body="$(TOKEN_HEADER="Authorization: Bearer kst_00" api GET runs)"
assert_eq "401 unauthorized" "$(code) $(err_code "$body")" "an unknown token: 401"
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api PUT runs/$A/tags/k -d '{"value": "v"}')"
assert_eq "403 forbidden" "$(code) $(err_code "$body")" "a read-only token writing: 403"
run_ok $K server token revoke reader >/dev/null
body="$(TOKEN_HEADER="Authorization: Bearer $RO" api GET runs/$A)"
assert_eq "401 unauthorized" "$(code) $(err_code "$body")" "a revoked token: 401"

# --- reads against the CLI -------------------------------------------------------------
same_json "$(api GET runs/$A)" "$($K run show $A --json)" "GET runs/{id} = run show --json"
body="$(api GET "runs?filter=metrics.acc%20%3E%200.7&order_by=metrics.acc%20DESC")"
assert_eq 200 "$(code)" "GET runs with a filter and an order: 200"
same_json "$body" "[\"$A\"]" "the filter runs in PostgreSQL" '[r["id"] for r in j["runs"]]'

# --- a metrics batch, exactly once ------------------------------------------------------
body="$(api POST "runs/$A/metrics" -d '{"from": 999999, "to": 999999}')"
assert_eq "409 conflict" "$(code) $(err_code "$body")" "a batch at the wrong offset: 409"
O="$(printf '%s' "$body" | sed -n 's/.*"offset":\([0-9]*\).*/\1/p')"
[ -n "$O" ] || die "the 409 does not say the store's offset: $body"
printf '{"from": %d, "to": %d, "points": [{"name": "loss", "step": 0, "value": 3}, {"name": "loss", "step": 1, "value": 2}, {"name": "loss", "step": 2, "value": 1}]}' \
  "$O" "$((O + 3))" > "$T/batch.json"
body="$(api POST "runs/$A/metrics" --data-binary @"$T/batch.json")"
same_json "$body" "{\"applied\": true, \"offset\": $((O + 3)), \"points\": 3}" "the batch is applied"
body="$(api POST "runs/$A/metrics" --data-binary @"$T/batch.json")"
same_json "$body" "{\"applied\": false, \"offset\": $((O + 3)), \"points\": 0}" "the same batch again: already applied"
assert_eq 3 "$($K run metrics "$A" --name loss --csv | tail -n +2 | wc -l)" "stored once: 3 points"

# --- the database goes away, and comes back ---------------------------------------------
pg_server_stop || die "cannot stop the PostgreSQL server"
for p in runs "runs/$A" "runs/$A/metrics/loss"; do
  body="$(api GET "$p")"
  assert_eq "503 backend" "$(code) $(err_code "$body")" "GET $p while PostgreSQL is away: 503 backend"
  assert_contains "$body" "PostgreSQL store" "GET $p: the error says the store cannot be reached"
done
body="$(api POST "runs/$A/metrics" -d "{\"from\": $((O + 3)), \"to\": $((O + 4)), \"points\": [{\"name\": \"loss\", \"step\": 3, \"value\": 0}]}")"
assert_eq "503" "$(code)" "a metrics batch while PostgreSQL is away: 503"
kill -0 "$SRV" 2>/dev/null && ok "the server is still up" || fail "the server died when PostgreSQL went away"
pg_server_start || die "cannot start the PostgreSQL server again"
body="$(api GET "runs/$A")"
assert_eq 200 "$(code)" "after PostgreSQL is back: 200"
same_json "$body" "$($K run show $A --json)" "GET runs/{id} answers as before"
body="$(api POST "runs/$A/metrics" -d "{\"from\": $((O + 3)), \"to\": $((O + 4)), \"points\": [{\"name\": \"loss\", \"step\": 3, \"value\": 0}]}")"
same_json "$body" "{\"applied\": true, \"offset\": $((O + 4)), \"points\": 1}" "the refused batch, sent again, is applied once"
assert_eq 4 "$($K run metrics "$A" --name loss --csv | tail -n +2 | wc -l)" "4 points: nothing lost, nothing twice"
check_json
stop_server
finish
