#!/usr/bin/env bash
# platform_service: scoring services end to end over real HTTP on 127.0.0.1.
# examples/mnist/train_mnist (compiled against the built libkusari) trains
# on a small Fashion-MNIST subset as a real run; its outputs (model.npz +
# model.json) are registered and deployed with --auth; the 1000 test images
# are scored over HTTP and must give exactly the run's own evaluation
# accuracy and numpy's predictions from the npz. Then keys (restart,
# redeploy, regenerate), batching (--batch-max) against unbatched answers,
# every bad input with its status code (431/414 too), slow clients,
# concurrent clients, metrics, a Sequential CNN built by a helper program
# (tests/platform/service_model.c) against the library's offline logits, a
# user entry library (--entry), a model without a description, delete.
# Services are stopped at exit, even on failure.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA=/usr/share/datasets/fashion-mnist
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
[ -n "${KUSARI_STATIC_LIB:-}" ] && command -v cc >/dev/null || { echo "skip: no compiler or static library"; exit 77; }
[ -d "$DATA" ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
PY=python3
/usr/bin/python3 -c "import numpy" 2>/dev/null && PY=/usr/bin/python3

export KUSARI_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
LIBS="$(pkg-config --libs openblas libzip zlib) $(pkg-config --libs ompi-c 2>/dev/null) -lm -pthread"

# --- a small data set: 3000 training images, the first 1000 test images ------------
mkdir -p "$T/data"
$PY - "$DATA" "$T/data" <<'EOF' || die "cannot make the data subset"
import gzip, os, struct, sys
src, dst = sys.argv[1:3]
def read(name):
    for n in (name, name + ".gz"):
        p = os.path.join(src, n)
        if os.path.exists(p):
            return (gzip.open if n.endswith(".gz") else open)(p, "rb").read()
    raise SystemExit("missing " + name)
for name, n in (("train-images-idx3-ubyte", 3000), ("train-labels-idx1-ubyte", 3000),
                ("t10k-images-idx3-ubyte", 1000), ("t10k-labels-idx1-ubyte", 1000)):
    b = read(name)
    ndim = b[3]
    dims = list(struct.unpack(">%dI" % ndim, b[4:4 + 4 * ndim]))
    per = 1
    for d in dims[1:]:
        per *= d
    dims[0] = n
    open(os.path.join(dst, name), "wb").write(b[:4] + struct.pack(">%dI" % ndim, *dims) + b[4 + 4 * ndim:4 + 4 * ndim + n * per])
EOF

# --- train (a real run), register, deploy with auth -----------------------------------
mkdir -p "$T/src"
run_ok $K compute create cpu --type local --max-nodes 1 >/dev/null
cc ${KUSARI_TEST_CFLAGS:-} -O1 -o "$T/src/train_mnist" "$REPO/examples/mnist/train_mnist.c" -I"$KUSARI_INCLUDE_DIR" \
  "$KUSARI_STATIC_LIB" $LIBS || die "cannot compile examples/mnist/train_mnist.c"
run="$(submit --experiment serve --source "$T/src" --entry train_mnist -- --epochs 1 --batchsize 100 --data "$T/data" --output_dir ./outputs)"
out="$($K run wait "$run" --show-output 2>&1)"; rc=$?
assert_eq 0 $rc "the training run completed"
run_acc="$(echo "$out" | sed -n 's/.*val_accuracy:\([0-9.]*\).*/\1/p' | tail -1)"
[ -n "$run_acc" ] || die "no val_accuracy in the run's output: $out"
assert_contains "$(run_ok $K run files "$run")" "outputs/model.json" "the run wrote model.json beside model.npz"
run_ok $K model register --run "$run" --name fmnist --path outputs >/dev/null
expect_fail "missing --name SERVICE" $K model deploy fmnist
expect_fail "no model named 'nope'" $K model deploy nope --name s1
expect_fail "--workers must be 1 to 256" $K model deploy fmnist --name s1 --workers 0
out="$(run_ok $K model deploy fmnist:1 --name fm --auth --workers 2 --timeout 2)"
URI="$(echo "$out" | tail -1)"
assert_contains "$URI" "http://127.0.0.1:" "deploy prints the scoring URI last ($URI)"
BASE="${URI%/score}"
j="$(run_ok $K service show fm --json)"
assert_eq "Running fmnist:1 True $URI" "$(jget "$j" '"%s %s %s %s" % (j["state"], j["model"], j["auth"], j["scoring_uri"])')" "service show: state, model, auth, URI"
assert_contains "$(run_ok $K service list)" "fm" "service list names it"
keys="$(run_ok $K service keys fm --json)"
K1="$(jget "$keys" 'j["primary_key"]')"; K2="$(jget "$keys" 'j["secondary_key"]')"
assert_eq "64 64 1" "${#K1} ${#K2} $([ "$K1" != "$K2" ] && echo 1)" "two different 64-hex-digit keys"
pid1="$(jget "$j" 'j["pid"]')"

# status URL [curl args...] : prints the HTTP status code, the body to $T/body
status() { local u="$1"; shift; curl -s -m 20 -o "$T/body" -w '%{http_code}' "$@" "$u"; }
auth=(-H "Authorization: Bearer $K1")

# --- score the test set: the run's accuracy exactly, numpy's predictions --------------
$PY - "$URI" "$K1" "$T/data" "$T/pred.json" "$run_acc" <<'EOF'
import json, struct, sys, urllib.request
uri, key, data, out, run_acc = sys.argv[1:6]
b = open(data + "/t10k-images-idx3-ubyte", "rb").read()
n, rows, cols = struct.unpack(">3I", b[4:16])
lab = open(data + "/t10k-labels-idx1-ubyte", "rb").read()[8:]
try:
    import numpy as np
    scale = np.float32(1.0 / 255.0)
    X = (np.frombuffer(b[16:], np.uint8).reshape(n, rows * cols).astype(np.float32) * scale)
    rowsv = [[float(v) for v in r] for r in X]
except ImportError:
    sc = struct.unpack("f", struct.pack("f", 1.0 / 255.0))[0]
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
    rowsv = [[f32(p * sc) for p in b[16 + i * rows * cols:16 + (i + 1) * rows * cols]] for i in range(n)]
preds, probs = [], []
for s in range(0, n, 100):
    req = urllib.request.Request(uri, data=json.dumps({"data": rowsv[s:s + 100]}).encode(),
                                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = json.load(urllib.request.urlopen(req, timeout=60))
    assert len(r["predictions"]) == len(r["probabilities"]) == min(100, n - s)
    preds += r["predictions"]
    probs += r["probabilities"]
acc = sum(int(p == l) for p, l in zip(preds, lab)) / n
print("served accuracy %.4f, the run's evaluation %s" % (acc, run_acc))
assert "%.4f" % acc == run_acc, "accuracy differs"
assert all(abs(sum(p) - 1) < 1e-4 and len(p) == 10 for p in probs), "probabilities do not sum to 1"
assert all(max(range(10), key=lambda k: p[k]) == q for p, q in zip(probs, preds)), "predictions are not the argmax"
json.dump({"predictions": preds}, open(out, "w"))
EOF
assert_eq 0 $? "1000 test images scored over HTTP: the same accuracy as the run's own evaluation ($run_acc)"
if $PY -c "import numpy" 2>/dev/null; then
  run_ok $K model download fmnist --to "$T/m" >/dev/null
  $PY - "$T/m/outputs/model.npz" "$T/data" "$T/pred.json" <<'EOF'
import json, struct, sys
import numpy as np
m = np.load(sys.argv[1]); data = sys.argv[2]
b = open(data + "/t10k-images-idx3-ubyte", "rb").read()
X = np.frombuffer(b[16:], np.uint8).reshape(-1, 784).astype(np.float32) * np.float32(1.0 / 255.0)
h = np.maximum(X @ m["l1/W"].T + m["l1/b"], 0)
h = np.maximum(h @ m["l2/W"].T + m["l2/b"], 0)
y = h @ m["l3/W"].T + m["l3/b"]
served = np.array(json.load(open(sys.argv[3]))["predictions"])
ref = y.argmax(1)
top2 = np.sort(y, 1)[:, -2:]
diff = np.nonzero(served != ref)[0]
# float32 sums in another order may only flip exact near-ties
assert all(top2[i, 1] - top2[i, 0] < 1e-4 for i in diff), "predictions differ from numpy at %s" % diff[:10]
print("numpy agrees on %d/%d predictions (the rest are ties within 1e-4)" % (len(ref) - len(diff), len(ref)))
EOF
  assert_eq 0 $? "the served predictions are numpy's predictions from model.npz"
fi

# --- batching: single-sample requests from 16 concurrent clients, batched -------------
# (--batch-max 8) and not: the same predictions and probabilities (the batch
# runs one GEMM per layer where a lone sample runs GEMV: float32 sums in
# another order, so equal to 1e-6); the metrics show batches of several
expect_fail "--batch-max must be 1" $K model deploy fmnist --name fmb --batch-max 0
out="$(run_ok $K model deploy fmnist:1 --name fmb --auth --workers 2 --batch-max 8 --batch-wait-us 2000)"
URIB="$(echo "$out" | tail -1)"
KB="$(jget "$(run_ok $K service keys fmb --json)" 'j["primary_key"]')"
assert_contains "$(cat "$WS/services/fmb/server.log")" "batching: up to 8 single-sample requests, waiting up to 2000 us" "the server batches"
assert_eq "8 2000" "$(jget "$(run_ok $K service show fmb --json)" '"%d %d" % (j["batch_max"], j["batch_wait_us"])')" "service show tells the batching"
assert_contains "$(run_ok $K service show fmb)" "batch_wait_us:   2000" "service show's text too"
assert_contains "$(run_ok $K model deploy --help)" "--batch-max N" "deploy --help lists the batching options"
$PY - "$URI" "$K1" "$URIB" "$KB" "$T/data" <<'EOF'
import json, struct, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
uri, key, urib, keyb, data = sys.argv[1:6]
b = open(data + "/t10k-images-idx3-ubyte", "rb").read()
sc = struct.unpack("f", struct.pack("f", 1.0 / 255.0))[0]
f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
rows = [[f32(p * sc) for p in b[16 + i * 784:16 + (i + 1) * 784]] for i in range(300)]
def ask(u, k, row):
    req = urllib.request.Request(u, data=json.dumps({"data": [row]}).encode(), headers={"Authorization": "Bearer " + k})
    return json.load(urllib.request.urlopen(req, timeout=60))
with ThreadPoolExecutor(16) as ex:
    one = list(ex.map(lambda r: ask(uri, key, r), rows))
    bat = list(ex.map(lambda r: ask(urib, keyb, r), rows))
worst = 0.0
for i, (a, c) in enumerate(zip(one, bat)):
    pa, pc = a["probabilities"][0], c["probabilities"][0]
    worst = max(worst, max(abs(x - y) for x, y in zip(pa, pc)))
    top = sorted(pa)[-2:]
    assert a["predictions"] == c["predictions"] or top[1] - top[0] < 1e-5, "input %d: %s vs %s" % (i, a, c)
assert worst <= 1e-6, "probabilities differ by %g" % worst
m = urllib.request.urlopen(urib.replace("/score", "/metrics"), timeout=60).read().decode()
nb = int(next(l for l in m.splitlines() if l.startswith("kusari_batches_total")).split()[-1])
nr = int(next(l for l in m.splitlines() if l.startswith("kusari_batched_requests_total")).split()[-1])
print("batched: %d requests in %d batches; largest difference from unbatched answers %g" % (nr, nb, worst))
assert nr == 300 and nb < nr, "no batches of several requests"
EOF
assert_eq 0 $? "300 concurrent single-sample requests: batched answers = unbatched answers, in batches of several"
out="$(run_ok $K model deploy fmnist:1 --name fmb --auth --workers 2)"
assert_contains "$(tail -3 "$WS/services/fmb/server.log")" "batching off" "redeployed without --batch-max: no batching"
run_ok $K service delete fmb >/dev/null

# --- bad input: each gets a JSON error with its status; the server survives --------------
badcase() {  # CODE WHAT curl-args...
  local code="$1" what="$2"; shift 2
  local got; got="$(status "$@")"
  local err; err="$($PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["status"], bool(j["error"]))' "$T/body" 2>&1)"
  if [ "$got" == "$code" ] && [ "$err" == "$code True" ]; then ok "$what -> $code with a JSON error"
  else fail "$what: expected $code and a JSON error, got $got: $(head -c 300 "$T/body")"; fi
}
one='{"data": [['"$($PY -c 'print(", ".join(["0.5"] * 784))')"']]}'
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "$one")" "one sample scores"
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "${one%\}}, \"id\": [7, {\"x\": null}]}")" "other fields are ignored (the general JSON path)"
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "$(echo "$one" | sed 's/, /,\n\t /g; s/\[\[/[ [ /')")" "any JSON whitespace"
# the same numbers written four ways (the fast path, the strtod fallback for
# long mantissas, the cJSON path) give the same bits
v1="${one//0.5/0.1}"
a1="$(status "$URI" "${auth[@]}" -d "$v1")$(cat "$T/body")"
a2="$(status "$URI" "${auth[@]}" -d "${one//0.5/1e-1}")$(cat "$T/body")"
a3="$(status "$URI" "${auth[@]}" -d "${one//0.5/0.1000000000000000055511151231257827021181583404541015625}")$(cat "$T/body")"
a4="$(status "$URI" "${auth[@]}" -d "{\"x\": 0, ${v1#\{}")$(cat "$T/body")"
assert_contains "$a1" '200{"predictions": [' "0.1 everywhere scores"
assert_eq "$a1" "$a2" "0.1 and 1e-1 give the same answer"
assert_eq "$a1" "$a3" "and 0.1 with 55 digits (strtod)"
assert_eq "$a1" "$a4" "and the general JSON path (another field first)"
badcase 401 "no Authorization header" "$URI" -d "$one"
wrong="${K1%?}$([ "${K1: -1}" == 0 ] && echo 1 || echo 0)"
badcase 401 "a wrong key (last digit changed)" "$URI" -H "Authorization: Bearer $wrong" -d "$one"
badcase 401 "a key prefix" "$URI" -H "Authorization: Bearer ${K1:0:10}" -d "$one"
badcase 401 "Basic instead of Bearer" "$URI" -H "Authorization: Basic $K1" -d "$one"
assert_eq 200 "$(status "$URI" -H "Authorization: Bearer $K2" -d "$one")" "the secondary key works too"
badcase 400 "malformed JSON" "$URI" "${auth[@]}" -d '{"data": [[1, 2'
badcase 400 "not an object" "$URI" "${auth[@]}" -d '[1, 2, 3]'
badcase 400 "no data field" "$URI" "${auth[@]}" -d '{"x": 1}'
badcase 400 "empty batch" "$URI" "${auth[@]}" -d '{"data": []}'
badcase 400 "empty body" "$URI" "${auth[@]}" -X POST
badcase 400 "wrong input width" "$URI" "${auth[@]}" -d '{"data": [[1, 2, 3]]}'
badcase 400 "a row that is not a list" "$URI" "${auth[@]}" -d '{"data": [5]}'
badcase 400 "a string value" "$URI" "${auth[@]}" -d '{"data": [["a"]]}'
badcase 400 "NaN" "$URI" "${auth[@]}" -d '{"data": [[NaN]]}'
badcase 400 "Infinity" "$URI" "${auth[@]}" -d '{"data": [[Infinity]]}'
badcase 400 "1e999 (inf)" "$URI" "${auth[@]}" -d "${one/0.5/1e999}"
badcase 400 "1e300 (over float32)" "$URI" "${auth[@]}" -d "${one/0.5/-1e300}"
badcase 400 "deep nesting" "$URI" "${auth[@]}" -d "$($PY -c 'print("[" * 5000 + "]" * 5000)')"
head -c 17000000 /dev/zero | tr '\0' ' ' > "$T/big.json"
badcase 413 "a 17 MB body (Content-Length over the limit)" "$URI" "${auth[@]}" --data-binary @"$T/big.json"
badcase 413 "a 17 MB chunked body" "$URI" "${auth[@]}" -H "Transfer-Encoding: chunked" --data-binary @"$T/big.json"
badcase 405 "GET /score" "$URI" "${auth[@]}"
badcase 405 "DELETE /health" "$BASE/health" -X DELETE
badcase 404 "an unknown path" "$BASE/score/x" "${auth[@]}" -d "$one"
badcase 404 "the root" "$BASE/"
# the request's head: over the service's limits (headers 8 KiB, path 4 KiB)
# the answer is kusari's JSON, with a body (read and dropped first) or without
big_h="X-Big: $(head -c 20000 /dev/zero | tr '\0' a)"
badcase 431 "20 KB of headers" "$URI" "${auth[@]}" -H "$big_h" -d "$one"
badcase 431 "20 KB of headers, chunked body" "$URI" "${auth[@]}" -H "$big_h" -H "Transfer-Encoding: chunked" -d "$one"
badcase 431 "20 KB of headers on GET /health" "$BASE/health" -H "$big_h"
badcase 414 "a 5 KB path" "$BASE/$(head -c 5000 /dev/zero | tr '\0' a)" "${auth[@]}" -d "$one"
# past the connection's 32 KiB of memory libmicrohttpd answers itself (its
# HTML page, docs/SERVING.md), as it does for an unparsable request; the
# server goes on
$PY - "${BASE#http://}" <<'EOF'
import socket, sys
host, port = sys.argv[1].split(":")
def ask(raw):
    s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    s.sendall(raw)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass
    return out
for raw, code in ((b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", b" 431 "),
                  (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", b" 400 "),
                  (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", b" 505 ")):
    out = ask(raw)
    if out and code not in out.split(b"\r\n")[0]:
        sys.exit("unexpected answer to %r: %r" % (raw[:40], out[:100]))
EOF
assert_eq 0 $? "libmicrohttpd's own 431/400/505 (headers over 32 KiB, a header line without a colon, HTTP/9.9)"
assert_eq 200 "$(status "$BASE/health")" "the server goes on after them"
# slow clients: a request that never finishes is closed after --timeout (2 s)
t0=$SECONDS
$PY - "${BASE#http://}" "$K1" <<'EOF'
import socket, sys, time
host, port = sys.argv[1].split(":")
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() +
          b"\r\nContent-Length: 100\r\n\r\n{\"da")
s.settimeout(10)
try:
    r = s.recv(100)
except socket.timeout:
    sys.exit("the server kept a stalled connection open")
sys.exit(0 if r == b"" or r.startswith(b"HTTP/1.1 4") else "unexpected: %r" % r)
EOF
rc=$?; dt=$((SECONDS - t0))
assert_eq 0 $rc "a stalled client is disconnected (after ${dt}s)"
[ $dt -ge 1 ] && [ $dt -le 8 ] && ok "by the 2 s timeout" || fail "disconnected after ${dt}s, not by the 2 s timeout"
# a client trickling its body (a byte every 0.5 s) is cut after 3 x the timeout
t0=$SECONDS
$PY - "${BASE#http://}" "$K1" <<'EOF'
import socket, sys, time
host, port = sys.argv[1].split(":")
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + sys.argv[2].encode() +
          b"\r\nContent-Length: 100000\r\n\r\n{")
t0 = time.time()
try:
    while time.time() - t0 < 20:
        s.sendall(b" ")
        time.sleep(0.5)
except OSError:
    sys.exit(0)
sys.exit("the server kept a trickling client for 20 s")
EOF
rc=$?; dt=$((SECONDS - t0))
assert_eq 0 $rc "a trickling client is disconnected (after ${dt}s)"
[ $dt -ge 5 ] && [ $dt -le 12 ] && ok "by the body deadline (3 x 2 s)" || fail "trickling client cut after ${dt}s, not by the 6 s deadline"
assert_eq 200 "$(status "$BASE/health")" "health is still OK after every bad request"
assert_eq "$pid1" "$(jget "$(run_ok $K service show fm --json)" 'j["pid"]')" "the same server process answered everything"

# --- concurrency: 8 clients x 25 single-sample requests, all answers right ----------------
$PY - "$URI" "$K1" "$T/data" "$T/pred.json" <<'EOF'
import json, struct, sys, threading, urllib.request
uri, key, data, predf = sys.argv[1:5]
b = open(data + "/t10k-images-idx3-ubyte", "rb").read()
sc = struct.unpack("f", struct.pack("f", 1.0 / 255.0))[0]
f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]
ref = json.load(open(predf))["predictions"]
bad = []
def client(c):
    for i in range(c * 25, c * 25 + 25):
        row = [f32(p * sc) for p in b[16 + i * 784:16 + (i + 1) * 784]]
        req = urllib.request.Request(uri, data=json.dumps({"data": [row]}).encode(), headers={"Authorization": "Bearer " + key})
        r = json.load(urllib.request.urlopen(req, timeout=60))
        if r["predictions"] != [ref[i]]:
            bad.append(i)
def batch_client(c):  # batches of 10: the library's GEMM path, from several threads
    for s0 in range(200 + c * 100, 200 + c * 100 + 100, 10):
        rows = [[f32(p * sc) for p in b[16 + i * 784:16 + (i + 1) * 784]] for i in range(s0, s0 + 10)]
        req = urllib.request.Request(uri, data=json.dumps({"data": rows}).encode(), headers={"Authorization": "Bearer " + key})
        r = json.load(urllib.request.urlopen(req, timeout=60))
        if r["predictions"] != ref[s0:s0 + 10]:
            bad.append(s0)
ts = [threading.Thread(target=client, args=(c,)) for c in range(8)]
ts += [threading.Thread(target=batch_client, args=(c,)) for c in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
sys.exit("wrong answers for %s" % bad[:10] if bad else 0)
EOF
assert_eq 0 $? "200 concurrent single-sample requests and 40 concurrent batches of 10 get the batch answers"

# --- metrics -----------------------------------------------------------------------------
assert_eq 200 "$(status "$BASE/metrics")" "GET /metrics"
m="$(cat "$T/body")"
for c in 200 400 401 404 405 413; do assert_contains "$m" "kusari_requests_total{service=\"fm\",code=\"$c\"}" "metrics count code $c"; done
assert_contains "$m" 'kusari_request_duration_seconds_bucket{service="fm",le="+Inf"}' "latency histogram"
n200="$(echo "$m" | sed -n 's/^kusari_requests_total{service="fm",code="200"} //p')"
[ "${n200:-0}" -ge 252 ] && ok "200 count $n200 >= 252" || fail "200 count is $n200"

# --- keys: restart keeps them; regenerate; redeploy keeps them -----------------------------
run_ok $K service stop fm >/dev/null
assert_eq "Stopped" "$(jget "$(run_ok $K service show fm --json)" 'j["state"]')" "service stop"
assert_eq 000 "$(status "$BASE/health")" "nothing listens after stop"
out="$(run_ok $K service start fm)"
assert_eq "$URI" "$(echo "$out" | tail -1)" "service start: the same URI"
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "$one")" "the primary key still works after a restart"
assert_eq "$keys" "$(run_ok $K service keys fm --json)" "the same keys after a restart"
run_ok $K service keys fm --regenerate secondary >/dev/null
K2n="$(jget "$(run_ok $K service keys fm --json)" 'j["secondary_key"]')"
assert_eq "1 $K1" "$([ "$K2n" != "$K2" ] && echo 1) $(jget "$(run_ok $K service keys fm --json)" 'j["primary_key"]')" "regenerate secondary: new secondary, same primary"
sleep 0.3
assert_eq 401 "$(status "$URI" -H "Authorization: Bearer $K2" -d "$one")" "the old secondary key is refused at once"
assert_eq 200 "$(status "$URI" -H "Authorization: Bearer $K2n" -d "$one")" "the new secondary key works"
expect_fail "--regenerate takes 'primary', 'secondary' or 'both'" $K service keys fm --regenerate third
out="$(run_ok $K model deploy fmnist --name fm --auth --workers 2)"
assert_contains "$out" "redeploying with the same keys" "deploy again says so"
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "$one")" "the primary key works after a redeploy"
kill -9 "$(jget "$(run_ok $K service show fm --json)" 'j["pid"]')"
sleep 0.3
j="$(run_ok $K service show fm --json)"
assert_eq "Failed" "$(jget "$j" 'j["state"]')" "a killed server shows as Failed"
assert_contains "$(jget "$j" 'j["error"]')" "is gone" "with the reason"
run_ok $K service start fm >/dev/null
assert_eq 200 "$(status "$URI" "${auth[@]}" -d "$one")" "and starts again"
assert_contains "$(run_ok $K service logs fm)" "serving model fmnist:1" "service logs"

# --- a Sequential CNN built through the API, against the library's offline logits ----------
mkdir -p "$T/cnn/m"
cc ${KUSARI_TEST_CFLAGS:-} -o "$T/cnn/service_model" "$REPO/tests/platform/service_model.c" -I"$KUSARI_INCLUDE_DIR" \
  "$KUSARI_STATIC_LIB" $LIBS || die "cannot compile service_model.c"
mkdir -p "$T/chain/m"
run_ok "$T/cnn/service_model" "$T/cnn/m" "$T/chain/m" >/dev/null
assert_eq 0 $? "the description API (Sequential save, error cases)"
mv "$T/cnn/m/inputs.json" "$T/cnn/m/expected.json" "$T/cnn/"; rm -f "$T/cnn/m/bad.json"
run_ok $K model register --name cnn --file "$T/cnn/m" >/dev/null
URI2="$(run_ok $K model deploy cnn --name cnn --workers 1 | tail -1)"
assert_eq 200 "$(status "$URI2" --data-binary @"$T/cnn/inputs.json")" "the CNN service scores without auth"
$PY - "$T/body" "$T/cnn/expected.json" <<'EOF'
import json, math, sys
got = json.load(open(sys.argv[1])); exp = json.load(open(sys.argv[2]))
assert got["predictions"] == exp["predictions"], (got["predictions"], exp["predictions"])
for p, l in zip(got["probabilities"], exp["logits"]):
    m = max(l); e = [math.exp(v - m) for v in l]; s = sum(e)
    assert all(abs(a - b / s) < 1e-6 for a, b in zip(p, e)), (p, l)
EOF
assert_eq 0 $? "Sequential CNN (conv, BN, pooling, grouped deconv, dilated conv, dropout) served: the library's predictions and softmax"
badcase 400 "CNN: wrong width" "$URI2" -d '{"data": [[1, 2]]}'
# a Chain CNN shaped like examples/mnist/train_mnist_cnn, described with ks_model_desc_save_chain
mv "$T/chain/m/inputs.json" "$T/chain/m/expected.json" "$T/chain/"
run_ok $K model register --name chaincnn --file "$T/chain/m" >/dev/null
URI4="$(run_ok $K model deploy chaincnn --name chaincnn --workers 1 | tail -1)"
assert_eq 200 "$(status "$URI4" --data-binary @"$T/chain/inputs.json")" "the Chain CNN service scores"
$PY - "$T/body" "$T/chain/expected.json" <<'EOF'
import json, math, sys
got = json.load(open(sys.argv[1])); exp = json.load(open(sys.argv[2]))
assert got["predictions"] == exp["predictions"], (got["predictions"], exp["predictions"])
for p, l in zip(got["probabilities"], exp["logits"]):
    m = max(l); e = [math.exp(v - m) for v in l]; s = sum(e)
    assert all(abs(a - b / s) < 1e-6 for a, b in zip(p, e)), (p, l)
EOF
assert_eq 0 $? "Chain CNN (conv-relu-pool x2, fc-relu-fc; ks_model_desc_save_chain) served: the library's answers"
run_ok $K service stop chaincnn >/dev/null

# --- a user scoring entry (--entry LIB) -----------------------------------------------------
cat > "$T/entry.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char dir[4096];
int init(const char *model_dir) { snprintf(dir, sizeof dir, "%s", model_dir); return 0; }
char *run(const char *input_json) {
  char *out = malloc(8192);
  snprintf(out, 8192, "{\"entry\": true, \"bytes\": %zu, \"has_model\": %d}", strlen(input_json),
           strstr(dir, "/model") != NULL);
  return out;
}
C
cc ${KUSARI_TEST_CFLAGS:-} -shared -fPIC -o "$T/myentry.so" "$T/entry.c" || die "cannot build the entry library"
URI3="$(run_ok $K model deploy fmnist --name custom --entry "$T/myentry.so" --auth | tail -1)"
K3="$(jget "$(run_ok $K service keys custom --json)" 'j["primary_key"]')"
assert_eq "200" "$(status "$URI3" -H "Authorization: Bearer $K3" -d '{"x": [1, 2]}')" "the entry answers"
assert_eq '{"entry": true, "bytes": 13, "has_model": 1}' "$(cat "$T/body")" "run(input_json) got the body, init(model_dir) the model"
badcase 400 "entry: malformed JSON" "$URI3" -H "Authorization: Bearer $K3" -d '{'
badcase 401 "entry: no key" "$URI3" -d '{}'
expect_fail "is not a file" $K model deploy fmnist --name custom2 --entry "$T/nope.so"
# an entry whose init() kills the server before it can answer
printf '#include <stdlib.h>\n#include <unistd.h>\nint init(const char *d) { (void)d; _exit(3); }\nchar *run(const char *j) { (void)j; return NULL; }\n' > "$T/dies.c"
cc ${KUSARI_TEST_CFLAGS:-} -shared -fPIC -o "$T/dies.so" "$T/dies.c" || die "cannot build dies.so"
expect_fail "did not start (no answer from its server)" $K model deploy fmnist --name dies --entry "$T/dies.so"
j="$(run_ok $K service show dies --json)"
assert_eq "Failed" "$(jget "$j" 'j["state"]')" "a server that died while starting is Failed, not Starting"
assert_contains "$(jget "$j" 'j["error"]')" "before it listened" "with the reason"
run_ok $K service delete dies >/dev/null

# --- the quickstart's registration (the run's outputs/model.npz alone) --------------------------
run_ok $K model register --run "$run" --name fmfile --path outputs/model.npz >/dev/null
# registered since with model.json beside it; a version registered before
# (its model.json not among its files) takes the run's through its lineage
sql "DELETE FROM model_files WHERE path='model.json' AND model_id=(SELECT id FROM models WHERE name='fmfile')"
URI5="$(run_ok $K model deploy fmfile --name fmfile | tail -1)"
assert_eq 200 "$(status "$URI5" -d "$one")" "a model registered as outputs/model.npz deploys: model.json comes through its run"
assert_contains "$(run_ok $K service logs fmfile)" "model.json: outputs/model.json of run lineage" "the log says where the description came from"
run_ok $K service stop fmfile >/dev/null

# --- a port in use ---------------------------------------------------------------------------
port="${BASE##*:}"
expect_fail "cannot listen on 127.0.0.1:$port" $K model deploy fmnist --name clash --port "$port"
assert_eq "Failed" "$(jget "$(run_ok $K service show clash --json)" 'j["state"]')" "a service that could not listen is Failed"
expect_fail "--host must be an IPv4 address" $K model deploy fmnist --name h --host nowhere
run_ok $K service delete clash >/dev/null

# --- a model without a description ---------------------------------------------------------
mkdir -p "$T/raw"; cp "$T/m/outputs/model.npz" "$T/raw/"
run_ok $K model register --name raw --file "$T/raw" >/dev/null
expect_fail "has no model.json" $K model deploy raw --name rawsvc
assert_eq "Failed" "$(jget "$(run_ok $K service show rawsvc --json)" 'j["state"]')" "it is recorded as Failed"

# --- delete ----------------------------------------------------------------------------------
pid="$(jget "$(run_ok $K service show custom --json)" 'j["pid"]')"
run_ok $K service delete custom >/dev/null
# (a zombie is not running: this sandbox's pid 1 may not reap it)
st="$(sed 's/^.*) //' /proc/$pid/stat 2>/dev/null | cut -c1)"
[ -z "$st" ] || [ "$st" == Z ] && ok "delete stops the server" || fail "the server process $pid still runs after delete ($st)"
assert_eq 000 "$(status "$URI3")" "nothing listens after delete"
expect_fail "no service named 'custom'" $K service show custom
[ -d "$WS/services/custom" ] && fail "services/custom is still there" || ok "delete removes the service's files"

# --- sanitizer reports of the servers (printed when they exit) -------------------------------
for s in fm cnn; do run_ok $K service stop "$s" >/dev/null; done
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/services/*/server.log 2>/dev/null)"
[ -z "$bad" ] || fail "sanitizer reports from servers: $(cat $bad | head -40)"
for s in fm cnn chaincnn fmfile rawsvc; do run_ok $K service delete "$s" >/dev/null; done
assert_eq "0" "$(jget "$(run_ok $K service list --json)" 'len(j)')" "no services left"
finish
