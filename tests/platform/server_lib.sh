# tests/platform/server_lib.sh — helpers of the tracking server's tests
# (test_server*.sh), sourced after lib.sh: start a real `kusari server` on a
# free port of 127.0.0.1 and talk to it with curl.

# python3 by its real path: a version manager's shim (pyenv) costs a few
# tenths of a second per call, and these tests read JSON many times
PY="$(python3 -c 'import sys; print(sys.executable)')"
python3() { "$PY" "$@"; }

SRV=""
URL=""
TOK=""
# the server is stopped before lib.sh's cleanup removes its workspace
trap 'if [ -n "$SRV" ]; then kill -TERM "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null; fi; cleanup' EXIT

# start_server ARGS... : `kusari server --port 0 ARGS` in the background; sets SRV and URL
start_server() {
  URL=""
  # (removed first: the shell truncates them in the child, which may come after
  # the loop below has read the previous server's URL from them)
  rm -f "$T/srv.out" "$T/srv.err"
  "$K" server --port 0 "$@" >"$T/srv.out" 2>"$T/srv.err" &
  SRV=$!
  for _ in $(seq 1 300); do
    URL="$(head -1 "$T/srv.out" 2>/dev/null)"
    [ -n "$URL" ] && break
    kill -0 "$SRV" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$URL" ] || die "the server did not start: $(cat "$T/srv.err")"
}

# stop_server: SIGTERM; it must exit 0 (status in $SRV_RC) with no sanitizer report
stop_server() {
  kill -TERM "$SRV"
  wait "$SRV"
  SRV_RC=$?
  SRV=""
  [ "$SRV_RC" -eq 0 ] || fail "the server exited with $SRV_RC on SIGTERM: $(tail -20 "$T/srv.err")"
  if grep -qE "Sanitizer|runtime error:" "$T/srv.err"; then fail "sanitizer report from the server: $(head -40 "$T/srv.err")"; fi
}

# api METHOD PATH [CURL ARGS...] : the body on stdout, the status in $T/code
# (read it with 'code'); the token $TOK unless TOKEN_HEADER is set to another header
api() {
  local m=$1 p=$2
  shift 2
  curl -s -g -o "$T/body" -w '%{http_code}' -X "$m" -H "${TOKEN_HEADER:-Authorization: Bearer $TOK}" "$@" \
    "$URL/api/v1/$p" >"$T/code"
  cat "$T/body"
}
code() { cat "$T/code"; }

# same_json A B WHAT [EXPR_A [EXPR_B]] : A and B must be the same JSON document
# (or the python expressions of 'j', the document, that EXPR_A and EXPR_B give); queued, and
# checked by check_json in one python3 call (python3 starts slowly on a
# loaded machine)
NJSON=0
mkdir -p "$T/json"
same_json() {
  NJSON=$((NJSON + 1))
  printf '%s' "$1" > "$T/json/$NJSON.a"
  printf '%s' "$2" > "$T/json/$NJSON.b"
  printf '%s' "$3" > "$T/json/$NJSON.what"
  printf '%s' "${4:-j}" > "$T/json/$NJSON.ea"
  printf '%s' "${5:-j}" > "$T/json/$NJSON.eb"
}
check_json() {
  local out
  out="$(python3 - "$T/json" "$NJSON" <<'PY'
import json, sys, os
d, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    p = os.path.join(d, str(i))
    if not os.path.exists(p + ".what"):
        continue
    what = open(p + ".what").read()
    a, b = open(p + ".a").read(), open(p + ".b").read()
    ea, eb = open(p + ".ea").read(), open(p + ".eb").read()
    try:
        same = eval(ea, {"j": json.loads(a)}) == eval(eb, {"j": json.loads(b)})
    except Exception:
        same = False
    print(("ok: " if same else "FAIL: ") + what + ("" if same else ": the documents differ: %s VS %s" % (a[:600], b[:600])))
    for e in (".a", ".b", ".what", ".ea", ".eb"):
        os.remove(p + e)
PY
)"
  printf '%s\n' "$out" | grep '^ok: '
  printf '%s\n' "$out" | grep '^FAIL: ' >&2 && FAILS=$((FAILS + $(printf '%s\n' "$out" | grep -c '^FAIL: ')))
  return 0
}

# err_code BODY : the stable code of a JSON error (the server writes compact JSON)
err_code() {
  local c
  c="$(printf '%s' "$1" | sed -n 's/^{"error":{"code":"\([a-z_]*\)".*/\1/p')"
  printf '%s' "${c:-(not a JSON error: $1)}"
}
