#!/usr/bin/env bash
# platform_server_metrics: the tracking server's metrics (issue 12 §2):
# POST /runs/{id}/metrics applies a batch exactly once (the same batch twice
# is stored once and answered "applied": false; a gap or an overlap is 409),
# and GET /runs/{id}/metrics/{name}?max_points=N downsamples a 10,000-point
# series in the store to at most N points that keep its global min and max.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || die "curl is needed"
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
echo 'echo quiet' > "$T/src/quiet.sh"   # logs no metric
E="$(submit --experiment m --source "$T/src" --entry quiet.sh)"
run_ok $K run wait "$E" >/dev/null
TOK="$($K server token create w 2>/dev/null)"
start_server

# where the store is in the run's channel (its header): a batch starting
# elsewhere is refused with 409 and the store's offset
body="$(api POST "runs/$E/metrics" -d '{"from": 999999, "to": 999999}')"
assert_eq "409 conflict" "$(code) $(err_code "$body")" "a batch that does not start at the store's offset: 409"
O="$(printf '%s' "$body" | sed -n 's/.*"offset":\([0-9]*\).*/\1/p')"
[ -n "$O" ] || die "the 409 does not say the store's offset: $body"

# 10,000 points of "loss": sin(i/100), except a low at 4321, a high at 7777 and a NaN at 5000
python3 - "$T" "$O" <<'PY'
import json, math, sys
t, o = sys.argv[1], int(sys.argv[2])
pts = []
for i in range(10000):
    v = math.sin(i / 100.0)
    if i == 4321: v = -7.5
    if i == 7777: v = 12.25
    pts.append({"name": "loss", "step": i, "timestamp": 1700000000 + i, "value": "NaN" if i == 5000 else v})
json.dump({"from": o, "to": o + 10000, "points": pts, "tags": {"source": "http"}}, open(t + "/batch.json", "w"))
json.dump({"from": o + 10000, "to": o + 10010, "points": [{"name": "acc", "value": k / 10.0} for k in range(10)]},
          open(t + "/next.json", "w"))
PY
post() { api POST "runs/$E/metrics" --data-binary @"$1"; }

# --- exactly once ------------------------------------------------------------------------
body="$(post "$T/batch.json")"
assert_eq 200 "$(code)" "a batch of 10,000 points: 200"
same_json "$body" "{\"applied\": true, \"offset\": $((O + 10000)), \"points\": 10000}" "applied, the store's offset moves to its end"
body="$(post "$T/batch.json")"
assert_eq 200 "$(code)" "the same batch again: 200"
same_json "$body" "{\"applied\": false, \"offset\": $((O + 10000)), \"points\": 0}" "answered as already applied"
count() { $K run metrics "$E" --name "$1" --csv | tail -n +2 | wc -l; }
assert_eq 10000 "$(count loss)" "stored once: 10,000 points, not 20,000"
same_json "$($K run show $E --json)" '{"source": "http"}' "the batch's tags are set" 'j["tags"]'
echo "{\"from\": $((O + 20000)), \"to\": $((O + 20005)), \"points\": []}" > "$T/gap.json"
body="$(post "$T/gap.json")"
assert_eq "409 conflict" "$(code) $(err_code "$body")" "a batch after a gap: 409"
echo "{\"from\": $((O + 5000)), \"to\": $((O + 15000)), \"points\": [{\"name\": \"loss\", \"value\": 1}]}" > "$T/overlap.json"
body="$(post "$T/overlap.json")"
assert_eq "409 conflict" "$(code) $(err_code "$body")" "a batch overlapping the stored offset: 409"
assert_eq 10000 "$(count loss)" "neither was stored"
body="$(post "$T/next.json")"
same_json "$body" "{\"applied\": true, \"offset\": $((O + 10010)), \"points\": 10}" "the next batch applies"
same_json "$($K run metrics $E --name acc --json)" '[[0, 0], [1, 0.1], [2, 0.2], [3, 0.3], [4, 0.4], [5, 0.5], [6, 0.6], [7, 0.7], [8, 0.8], [9, 0.9]]' \
  "points without a step take the next steps" '[[p["step"], p["value"]] for p in j["acc"]]'
N=$((O + 10010))
for bad in '{"from": 3, "to": 1}' '{"from": -1, "to": 1}' '{"from": '$N', "to": 1, "points": [{"value": 1}]}' \
           '{"from": '$N', "to": '$((N + 1))', "points": [{"value": 1}]}' \
           '{"from": '$N', "to": '$((N + 1))', "points": [{"name": "x", "value": "high"}]}' \
           '{"from": '$N', "to": '$((N + 1))', "points": [{"name": "x", "value": 1, "step": 1.5}]}' \
           '{"from": '$N', "to": '$((N + 1))', "tags": {"k": 1}}' '[1, 2]' '{"from": 1, "to": 2'; do
  printf '%s' "$bad" > "$T/bad.json"
  body="$(post "$T/bad.json")"
  assert_eq "400 invalid" "$(code) $(err_code "$body")" "a bad batch: $bad"
done
body="$(api POST runs/nope/metrics -d '{"from": 0, "to": 1}')"
assert_eq "404 not_found" "$(code) $(err_code "$body")" "a batch for an unknown run: 404"
same_json "$($K run metrics $E --name acc --json)" 10 "the bad batches stored nothing" 'len(j["acc"])'

# --- downsampling ------------------------------------------------------------------------------
for n in 100 7 2; do
  same_json "$(api GET "runs/$E/metrics/loss?max_points=$n")" "[true, 10000, true, true, true, true, true]" \
    "max_points=$n: downsampled from 10,000, at most $n points, global min -7.5 and max 12.25 kept, in step order, each an original point" \
    '[j["downsampled"], j["total_points"], 0 < len(j["points"]) <= '$n', min(p["value"] for p in j["points"] if p["value"] != "NaN") == -7.5,
      max(p["value"] for p in j["points"] if p["value"] != "NaN") == 12.25,
      [p["step"] for p in j["points"]] == sorted(p["step"] for p in j["points"]),
      all(p["timestamp"] == 1700000000 + p["step"] for p in j["points"])]'
done
same_json "$(api GET "runs/$E/metrics/loss?max_points=10000")" "$($K run metrics $E --name loss --json)" \
  "max_points at least the count: every point, as run metrics --json" 'j["points"]' 'j["loss"]'
same_json "$(api GET "runs/$E/metrics/loss?max_points=100")" 100 "max_points=100: 50 buckets of 200 points, each giving its min and its max: 100 points" 'len(j["points"])'
body="$(api GET "runs/$E/metrics/nope?max_points=10")"
assert_eq "404 not_found" "$(code) $(err_code "$body")" "an unknown metric: 404"
# --- a step window (a zoomed chart in the web UI) ------------------------------------------
same_json "$(api GET "runs/$E/metrics/loss?max_points=1000&from_step=4000&to_step=4999")" "[1000, false, 4000, 4999, true]" \
  "from_step/to_step: the window's 1,000 points at full resolution (low -7.5 at 4321 among them)" \
  '[j["total_points"], j["downsampled"], j["points"][0]["step"], j["points"][-1]["step"], any(p["step"] == 4321 and p["value"] == -7.5 for p in j["points"])]'
same_json "$(api GET "runs/$E/metrics/loss?max_points=10&from_step=7000&to_step=8999")" "[2000, true, true, true]" \
  "a window with more points than max_points: downsampled within it, its max 12.25 kept" \
  '[j["total_points"], j["downsampled"], len(j["points"]) <= 10 and all(7000 <= p["step"] <= 8999 for p in j["points"]), any(p["value"] == 12.25 for p in j["points"])]'
same_json "$(api GET "runs/$E/metrics/loss?from_step=9990")" "[10, false, 9990, 9999]" \
  "from_step alone: up to the last step, every point (no max_points)" \
  '[j["total_points"], j["downsampled"], j["points"][0]["step"], j["points"][-1]["step"]]'
same_json "$(api GET "runs/$E/metrics/loss?from_step=20000&to_step=30000")" "[0, []]" "an empty window: no points, no error" \
  '[j["total_points"], j["points"]]'
for q in "from_step=10&to_step=5" "from_step=x" "to_step=1.5" "from_step=&to_step=3"; do
  body="$(api GET "runs/$E/metrics/loss?$q")"
  assert_eq "400 invalid" "$(code) $(err_code "$body")" "a bad window ($q): 400"
done
body="$(api GET "runs/$E/metrics/loss?from_step=10&to_step=5")"
assert_contains "$body" "from_step (10) is after to_step (5)" "the reversed window's error says so"
body="$(api GET "runs/$E/metrics/nope?from_step=0&to_step=5")"
assert_eq "404 not_found" "$(code) $(err_code "$body")" "a window of an unknown metric: 404"
check_json
stop_server
finish
