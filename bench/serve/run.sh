#!/usr/bin/env bash
# bench/serve/run.sh — serving benchmark (issue 6): the MNIST MLP of
# examples/mnist (784-100-100-10, trained 1 epoch) answering single-sample
# POST /score requests on loopback, measured with wrk:
#   kusari:  `kusari model deploy --auth --workers $(nproc)` (libmicrohttpd)
#   peer:    the same model.npz in PyTorch (bench/serve/peer_wsgi.py) behind
#            gunicorn (gthread workers, one per core, keep-alive)
# For each: the peak (CONNS connections as fast as they go), then a paced
# load at about half of that peak (wrk's delay(): each connection waits
# between requests), with requests/s and p50/p90/p99 latency.
#
#   bench/setup-peers.sh; bench/.venv/bin/pip install gunicorn   # once
#   BUILD=build bench/serve/run.sh            # DURATION=10 CONNS=16 PEER_BACKEND=torch
# Needs wrk (Debian package). Results: stdout and bench/out/serve-*.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${BUILD:-$root/build}" && pwd)
dur=${DURATION:-10}
conns=${CONNS:-16}
backend=${PEER_BACKEND:-torch}
K="$build/platform/kusari"
py="$root/bench/.venv/bin/python"
gunicorn="$root/bench/.venv/bin/gunicorn"
command -v wrk >/dev/null || { echo "bench/serve: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x "$K" ] && [ -x "$build/examples/mnist/train_mnist" ] || { echo "bench/serve: build kusari first (cmake --build $build)" >&2; exit 1; }
work=$(mktemp -d /tmp/kusari-serve-bench-XXXXXX)
export KUSARI_WORKSPACE="$work/ws"
gpid=""
cleanup() {
  "$K" service delete bench >/dev/null 2>&1 || true
  [ -n "$gpid" ] && kill "$gpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root/bench/out"
out="$root/bench/out/serve-$(date +%Y%m%d-%H%M%S).txt"

echo "training the MLP (1 epoch) ..." >&2
"$build/examples/mnist/train_mnist" -e 1 -o "$work/outputs" >/dev/null
"$py" - "$work/body.json" <<'PY'
import gzip, json, os, struct, sys
d = "/usr/share/datasets/fashion-mnist"
p = next(os.path.join(d, n) for n in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz") if os.path.exists(os.path.join(d, n)))
b = (gzip.open if p.endswith(".gz") else open)(p, "rb").read()
sc = struct.unpack("f", struct.pack("f", 1.0 / 255.0))[0]
row = [struct.unpack("f", struct.pack("f", v * sc))[0] for v in b[16:16 + 784]]
json.dump({"data": [row]}, open(sys.argv[1], "w"))
PY
"$K" workspace create "$work/ws" >/dev/null
"$K" model register --name mlp --file "$work/outputs" >/dev/null
uri=$("$K" model deploy mlp --name bench --auth | tail -1)
key=$("$K" service keys bench --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["primary_key"])')
gport=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MODEL_NPZ="$work/outputs/model.npz" PEER_BACKEND="$backend" "$gunicorn" -w "$(nproc)" -k gthread --threads 4 \
  -b "127.0.0.1:$gport" --chdir "$here" --log-level warning peer_wsgi:app &
gpid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$gport/health" >/dev/null && break; sleep 0.2; done
peer_uri="http://127.0.0.1:$gport/score"

kpid=$("$K" service show bench --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
# CPU clock ticks (user + system) used so far by the server's processes
cpu_ticks() {
  local pids total=0 p
  if [ "$1" == kusari ]; then pids=$kpid; else pids="$gpid $(pgrep -P "$gpid" | xargs)"; fi
  for p in $pids; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $total
}
# one wrk run: NAME URI KEY CONNS DELAY_MS -> "NAME ... rps=... p50_ms=... cpu_us_per_req=..."
# (the server's CPU time per request does not depend on what else the
# machine runs; requests/s and latency do)
measure() {
  local c0 c1 r
  c0=$(cpu_ticks "${1%-*}")
  r=$(BODY="$work/body.json" KEY="$3" DELAY_MS="$5" wrk -t1 -c"$4" -d"${dur}s" -s "$here/post.lua" "$2" | sed -n "s/^RESULT /$1 conns=$4 delay_ms=$5 /p")
  c1=$(cpu_ticks "${1%-*}")
  local n; n=$(echo "$r" | sed 's/.* requests=\([0-9]*\).*/\1/')
  echo "$r server_cpu_us_per_req=$(( (c1 - c0) * 1000000 / $(getconf CLK_TCK) / (n > 0 ? n : 1) )) load=$(cut -d' ' -f1 /proc/loadavg)"
}
# the answers agree
a=$(curl -s -H "Authorization: Bearer $key" --data-binary @"$work/body.json" "$uri" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["predictions"])')
b=$(curl -s --data-binary @"$work/body.json" "$peer_uri" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["predictions"])')
[ "$a" == "$b" ] || { echo "bench/serve: the answers differ: $a vs $b" >&2; exit 1; }
{
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk -t1, ${dur}s per run; peer: $backend + gunicorn $("$gunicorn" --version | awk '{print $3}' | tr -d ')') gthread"
  for who in kusari peer; do
    if [ $who == kusari ]; then u=$uri; k=$key; else u=$peer_uri; k=""; fi
    BODY="$work/body.json" KEY="$k" wrk -t1 -c"$conns" -d2s -s "$here/post.lua" "$u" >/dev/null   # warm-up
    peak=$(measure "$who-peak" "$u" "$k" "$conns" 0)
    echo "$peak"
    rps=$(echo "$peak" | sed 's/.* rps=\([0-9.]*\).*/\1/')
    # half the peak: c connections each waiting 5 ms between requests (about
    # 1 ms more per round trip with the answer)
    c=$("$py" -c "print(max(1, round($rps * 0.5 * 0.006)))")
    measure "$who-half" "$u" "$k" "$c" 5
  done
} | tee "$out"
echo "saved $out" >&2
