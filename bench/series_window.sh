#!/usr/bin/env bash
# bench/series_window.sh [KUSARI]: one run with a 1,000,000-point series
# (posted to a local `kusari server` in 10 batches), then the times of
# GET /runs/{id}/metrics/big?max_points=1000 on the whole series and on step
# windows (the web UI's zoom: from_step/to_step), as curl measures them.
# SQLite workspace in a temporary folder; figures in bench/RESULTS.md.
set -euo pipefail
K="$(realpath "${1:-build/platform/kusari}")"
D="$(mktemp -d)"
trap 'kill "$SRV" 2>/dev/null || true; rm -rf "$D"' EXIT
SRV=""
export KUSARI_WORKSPACE="$D/ws" HOME="$D/home"
mkdir -p "$D/home" "$D/src"
cd "$D"
"$K" workspace create "$D/ws" >/dev/null 2>&1
"$K" compute create cpu >/dev/null
echo 'echo quiet' > src/q.sh
R="$("$K" run submit --experiment b --compute cpu --source src --entry q.sh 2>/dev/null | tail -1)"
"$K" run wait "$R" >/dev/null
TOK="$("$K" server token create b 2>/dev/null)"
"$K" server --port 0 --max-body 200000000 > srv.out 2> srv.err &
SRV=$!
URL=""
for _ in $(seq 100); do URL="$(head -1 srv.out 2>/dev/null)"; [ -n "$URL" ] && break; sleep 0.1; done
A=(-s -H "Authorization: Bearer $TOK")
O="$(curl "${A[@]}" -d '{"from": 999999999, "to": 999999999}' "$URL/api/v1/runs/$R/metrics" | sed -n 's/.*"offset":\([0-9]*\).*/\1/p')"
for b in $(seq 0 9); do
  python3 -c '
import json, math, sys
o, b = int(sys.argv[1]), int(sys.argv[2])
pts = [{"name": "big", "step": i, "timestamp": 1.7e9 + i, "value": math.sin(i / 1000.0)} for i in range(b * 100000, (b + 1) * 100000)]
print(json.dumps({"from": o + b, "to": o + b + 1, "points": pts}))' "$O" "$b" > batch.json
  curl "${A[@]}" --data-binary @batch.json "$URL/api/v1/runs/$R/metrics" -o /dev/null -w "batch $b: %{http_code}\n"
done
for q in "max_points=1000" "max_points=1000" "max_points=1000" \
         "max_points=1000&from_step=500000&to_step=500999" "max_points=1000&from_step=500000&to_step=500999" \
         "max_points=1000&from_step=0&to_step=99999" "max_points=1000&from_step=0&to_step=99999"; do
  curl "${A[@]}" "$URL/api/v1/runs/$R/metrics/big?$q" -o out.json -w "$q: %{time_total} s"
  python3 -c 'import json; j = json.load(open("out.json")); print(" (%d of %d points)" % (len(j["points"]), j["total_points"]))'
done
