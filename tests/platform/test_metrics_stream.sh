#!/usr/bin/env bash
# platform_metrics_stream (issue 19): `run metrics --json` is written as it
# is read, so its memory does not grow with a JSON document of every point.
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
run_ok $K compute create cpu >/dev/null
# --- run metrics --json streams: memory does not grow with a document ----------
# 300,000 points: as one cJSON document it took ~150 MB (about 490 bytes a
# point); streamed, one series' points (32 bytes each) and the program
mkdir -p "$T/many" && cp "$ENTRY_BIN" "$T/many/entry"
id="$(submit --experiment hard --source "$T/many" --entry entry --compute cpu -- --n 300000 --nonfinite 1)"
run_ok $K run wait "$id" >/dev/null
rss_kb="$(python3 -c '
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode == 0 else -1)' $K run metrics "$id" --json)"
[ "$rss_kb" -gt 0 ] && [ "$rss_kb" -lt 100000 ] && ok "run metrics --json on 300,000 points: ${rss_kb} KB max RSS (< 100 MB)" \
  || fail "run metrics --json on 300,000 points used ${rss_kb} KB (a document in memory?)"
$K run metrics "$id" --json > "$T/m.json"
check="$(python3 - "$T/m.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
loss = j["loss"]
ok = len(loss) == 300000 and all(p["step"] == i and p["value"] == i for i, p in enumerate(loss))
print(ok, [p["value"] for p in j["nf"]], j["Accuracy"][0]["step"], sorted(j))
PY
)"
assert_eq "True ['NaN', 'Infinity', '-Infinity', 2.5] 7 ['Accuracy', 'curve', 'loss', 'nf']" "$check" "the streamed JSON holds every point, non-finite values as strings"

finish
