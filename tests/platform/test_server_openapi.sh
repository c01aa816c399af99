#!/usr/bin/env bash
# platform_server_openapi: docs/openapi.json against a real `kusari server`.
# Every path + method of the file exists on the server (a GET answers 200
# with a body that validates against the file's schema; a write with a
# read-only token answers 403, which the server checks only on a route it
# has), and the other way round: every other method on those paths answers
# 405, and a list of probed paths the file does not have answers 404. Every
# status seen is one the file declares for the operation, and every error
# body validates against its Error schema. The schema checker is this
# test's own (a small subset of OpenAPI 3.0's schema objects: $ref, type,
# nullable, enum, properties, required, additionalProperties, items, oneOf).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
SPEC="$(cd "$(dirname "$0")/../.." && pwd)/docs/openapi.json"
[ -f "$SPEC" ] || die "no $SPEC"
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
cat > "$T/src/job.sh" <<'SH'
echo hello
kusari log metric acc 0.5
kusari log metric main/loss 1.5
mkdir -p outputs
echo data > outputs/data.txt
SH
A="$(submit --experiment spec --source "$T/src" --entry job.sh)"
run_ok $K run wait "$A" >/dev/null
run_ok $K run tag "$A" k1=v1 >/dev/null
run_ok $K model register --run "$A" --name m1 --path outputs/data.txt >/dev/null
# a sweep of one child and a running scoring service (a Linear 4->3 written with numpy)
cat > "$T/sweep.json" <<JSON
{"experiment": "spec", "run": {"source": "$T/src", "entry": "job.sh", "compute": "cpu"},
 "sampling": {"type": "grid", "space": {"--x": {"choice": ["1"]}}}, "primary_metric": {"name": "acc", "goal": "maximize"}}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
run_ok $K sweep wait "$SW" --timeout 120 --quiet >/dev/null
mkdir -p "$T/lin"
/usr/bin/python3 - "$T/lin" <<'PYM' || die "cannot write the model (python3-numpy)"
import numpy as np, sys
d = sys.argv[1]
np.savez(d + "/model.npz", **{"l1/W": np.ones((3, 4), np.float32), "l1/b": np.zeros(3, np.float32)})
open(d + "/model.json", "w").write('{"format": "kusari-sequential/1", "input": [4], "layers": '
                                   '[{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": false}]}\n')
PYM
run_ok $K model register --name lin --file "$T/lin" >/dev/null
run_ok $K model deploy lin --name svc >/dev/null
TOK="$($K server token create rw 2>/dev/null)"
RO="$($K server token create ro --read-only 2>/dev/null)"
start_server

out="$(python3 - "$SPEC" "$URL" "$TOK" "$RO" "$A" "$SW" <<'PY'
import json, sys, urllib.request, urllib.error
spec_path, url, tok, ro, run, sweep = sys.argv[1:7]
spec = json.load(open(spec_path))
base = url + spec["servers"][0]["url"]
comp = spec["components"]
fails = []

def say(okay, what):
    print(("ok: " if okay else "FAIL: ") + what)
    if not okay:
        fails.append(what)

def resolve(s):
    while "$ref" in s:
        kind, name = s["$ref"].split("/")[-2:]
        s = comp[kind][name]
    return s

def check(v, s, where):
    """the reasons v does not fit schema s (empty: it fits)"""
    s = resolve(s)
    if v is None:
        return [] if s.get("nullable") else [where + ": null"]
    if "oneOf" in s:
        n = sum(1 for alt in s["oneOf"] if not check(v, alt, where))
        return [] if n == 1 else [where + ": fits %d of oneOf" % n]
    t = s.get("type")
    okt = {"object": lambda x: isinstance(x, dict), "array": lambda x: isinstance(x, list),
           "string": lambda x: isinstance(x, str), "boolean": lambda x: isinstance(x, bool),
           "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
           "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)}
    if t and not okt[t](v):
        return [where + ": %r is not a %s" % (v, t)]
    if "enum" in s and v not in s["enum"]:
        return [where + ": %r not in %s" % (v, s["enum"])]
    errs = []
    if t == "object":
        props = s.get("properties", {})
        for r in s.get("required", []):
            if r not in v:
                errs.append(where + ": no '%s'" % r)
        extra = s.get("additionalProperties", True if not props else False)
        for k, x in v.items():
            if k in props:
                errs += check(x, props[k], where + "." + k)
            elif extra is False:
                errs.append(where + ": '%s' is not in the schema" % k)
            elif isinstance(extra, dict):
                errs += check(x, extra, where + "." + k)
    if t == "array":
        for i, x in enumerate(v):
            errs += check(x, s["items"], "%s[%d]" % (where, i))
    return errs

def call(method, path, token, body=None):
    req = urllib.request.Request(base + path, method=method, data=body,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()

import hashlib
values = {"run": run, "experiment": "spec", "model": "m1", "version": "1", "name": "main/loss", "key": "k1",
          "sweep": sweep, "service": "svc", "sha256": hashlib.sha256(b"data\n").hexdigest()}
def fill(path):
    p = path
    for k, v in values.items():
        p = p.replace("{%s}" % k, v)
    if "{path}" in p:
        p = p.replace("{path}", "outputs/data.txt" if p.startswith("/runs/") else "data.txt")
    return p

def query(op):
    q = [(p["name"], run) for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")]
    return "?" + "&".join("%s=%s" % x for x in q) if q else ""

def check_error(what, status, ctype, body, op):
    say(str(status) in op["responses"], "%s: %d is declared" % (what, status))
    say(ctype.startswith("application/json"), "%s: the error is JSON" % what)
    try:
        errs = check(json.loads(body), comp["schemas"]["Error"], "error")
    except ValueError:
        errs = ["not JSON: %r" % body[:200]]
    say(not errs, "%s: the error fits Error %s" % (what, errs[:3]))

methods = ["get", "post", "put", "delete", "patch"]
for path, item in spec["paths"].items():
    p = fill(path)
    for m in methods:
        what = "%s %s" % (m.upper(), path)
        if m not in item:
            status, ctype, body = call(m.upper(), p, ro, b"{}" if m != "get" else None)
            say(status == 405, "%s is not in the file: the server answers 405 (got %d)" % (what, status))
            continue
        op = item[m]
        if m == "get":
            status, ctype, body = call("GET", p + query(op), tok)
            say(status == 200, "%s: 200 (got %d %r)" % (what, status, body[:200]))
            resp = op["responses"].get("200", {})
            content = resp.get("content", {})
            if "application/json" in content:
                try:
                    errs = check(json.loads(body), content["application/json"]["schema"], "body")
                except ValueError:
                    errs = ["not JSON"]
                say(not errs, "%s: the body fits its schema %s" % (what, errs[:5]))
            else:
                want = list(content)[0]
                say(ctype.startswith(want), "%s: Content-Type %s (got %s)" % (what, want, ctype))
            # an unknown run/model/experiment: a declared 404 with an Error body
            if "{" in path:
                bad = path
                # (a metric name is the id of /metrics/names/{name})
                for k in ("run", "experiment", "model", "sweep", "service") + (("name",) if path.startswith("/metrics/names/") else ()):
                    bad = bad.replace("{%s}" % k, "no-such-thing")
                bad = bad.replace("{sha256}", "0" * 64)
                status, ctype, body = call("GET", fill(bad) + query(op), tok)
                say(status == 404, "%s of an unknown id: 404 (got %d)" % (what, status))
                check_error(what + " unknown id", status, ctype, body, op)
        else:
            status, ctype, body = call(m.upper(), p, ro, b"{}")
            say(status == 403, "%s with a read-only token: 403, so the route exists (got %d)" % (what, status))
            check_error(what + " read-only", status, ctype, body, op)
        status, ctype, body = call(m.upper(), p + query(op), "kst_wrong", b"{}" if m != "get" else None)
        say(status == 401, "%s with a wrong token: 401 (got %d)" % (what, status))
        check_error(what + " wrong token", status, ctype, body, op)

# query parameters: one the file does not list for an operation is 400
op = spec["paths"]["/runs"]["get"]
status, ctype, body = call("GET", "/runs?nope=1", tok)
check_error("GET /runs?nope=1", status, ctype, body, op)
say(status == 400, "a query parameter the file does not list: 400")
for name in [p["name"] for p in op["parameters"] if p["name"] != "page_token"]:
    v = {"status": "Completed", "max_results": "5", "order_by": "created", "metrics": "acc",
         "filter": "status%20%3D%20'Completed'"}.get(name, "x")
    status, _, _ = call("GET", "/runs?%s=%s" % (name, v), tok)
    say(status == 200, "GET /runs takes %s (got %d)" % (name, status))

# the other way round: a list of paths (the server's routes and others it
# might have); the server has a route for a method (anything but 404 "no
# such path" and 405) exactly when the file has it
import re
def template_re(t):
    parts = []
    for seg in t.strip("/").split("/"):
        parts.append(".+" if seg in ("{path}", "{name}", "{key}") else "[^/]+" if seg.startswith("{") else re.escape(seg))
    return re.compile("^/" + "/".join(parts) + "$")
templates = [(template_re(t), item) for t, item in spec["paths"].items()]
probes = ["health", "experiments", "experiments/spec", "runs", "runs/R", "runs/R/cancel", "runs/R/wait", "runs/R/metrics",
          "runs/R/metrics/acc", "runs/R/metrics/main/loss", "runs/R/logs", "runs/R/files", "runs/R/files/outputs/data.txt",
          "runs/R/tags/k1", "metrics/latest", "models", "models/m1", "models/m1/versions/1", "models/m1/versions/latest",
          "models/m1/versions/1/files/data.txt", "computes",
          "", "sweeps", "services", "tokens", "runs/R/params", "runs/R/artifacts", "experiments/spec/runs",
          "models/m1/versions", "health/x", "runs/R/cancel/x", "metrics", "runs/R/tags", "computes/cpu", "runs/R/submit",
          "experiments/spec/delete", "models/m1/files/data.txt", "sweeps/S", "sweeps/S/cancel", "services/svc",
          "services/svc/metrics", "services/svc/keys", "services/svc/start", "services/svc/stop", "services/svc/restart", "runs/R/events", "blobs/0123", "blobs"]
for probe in probes:
    probe = probe.replace("/S", "/" + sweep)
    path = "/" + probe.replace("R", run) if probe else "/"
    for m in ["GET", "POST", "PUT", "DELETE"]:
        status, ctype, body = call(m, path + ("?runs=" + run if probe == "metrics/latest" and m == "GET" else ""), ro,
                                   b"{}" if m != "GET" else None)
        server_has = not (status == 405 or (status == 404 and b"no such path" in body))
        spec_has = any(rx.match("/" + probe.replace("R", run)) and m.lower() in item for rx, item in templates) if probe else False
        say(server_has == spec_has, "%s /%s: the server %s it and the file %s it (%d)" % (
            m, probe, "has" if server_has else "has not", "has" if spec_has else "has not", status))
        if not server_has:
            say(ctype.startswith("application/json") and not check(json.loads(body), comp["schemas"]["Error"], "error"),
                "%s /%s: the 404/405 is an Error" % (m, probe))
print("%d checks failed" % len(fails))
PY
)"
printf '%s\n' "$out" | grep '^ok: ' | wc -l | xargs -I{} echo "ok: {} checks of the file against the server passed"
printf '%s\n' "$out" | grep -v '^ok: ' >&2
[ "$(printf '%s\n' "$out" | tail -1)" = "0 checks failed" ] || fail "docs/openapi.json and the server disagree"
stop_server
finish
