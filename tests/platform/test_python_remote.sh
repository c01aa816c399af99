#!/usr/bin/env bash
# platform_python_remote: the Python SDK on a workspace served by a real
# `kusari server` on a free port of 127.0.0.1 (issue 16 §2: "also a server
# URL once the tracking server exists"). Runs are submitted locally; then,
# from Python, Workspace("http://...", auth_token=...) and
# Workspace.from_config() with KUSARI_TRACKING_URI list the experiments and
# runs and read status, metrics, files and downloads, and the answers equal
# those of the same SDK calls on the local workspace. A wrong token and a
# server that is down raise KusariError with the program's message (no
# subprocess stack trace).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$SRC/python"
export PATH="$(dirname "$K"):$PATH"     # the SDK runs the kusari program from PATH
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src" "$T/client"
cat > "$T/src/train.sh" <<'SH'
for a in 0.5 0.75 0.875; do kusari log metric Accuracy $a; done
kusari log metric Epochs 3
mkdir -p outputs && echo "weights $1" > outputs/model.npz
SH
A="$(submit --experiment sdk-remote --source "$T/src" --entry train.sh -- a)"; run_ok $K run wait "$A" >/dev/null
B="$(submit --experiment sdk-remote --source "$T/src" --entry train.sh -- b)"; run_ok $K run wait "$B" >/dev/null
TOK="$($K server token create sdk 2>/dev/null)"
[ -n "$TOK" ] || die "server token create"
start_server

cat > "$T/sdk.py" <<'PY'
import json, os, sys
from kusari import Workspace, Experiment, KusariError
url, tok, dl = sys.argv[1], sys.argv[2], sys.argv[3]

def view(ws, where):
    exp = Experiment(ws, "sdk-remote")
    out = {"experiments": sorted(ws.experiments), "runs": []}
    for r in exp.get_runs():
        os.makedirs(os.path.join(dl, where, r.id), exist_ok=True)
        path = os.path.join(dl, where, r.id, "model.npz")
        r.download_file("outputs/model.npz", path)
        out["runs"].append({"id": r.id, "status": r.get_status(), "metrics": r.get_metrics(),
                            "files": sorted(r.get_file_names()), "model": open(path).read()})
    return out

local = view(Workspace(os.environ["KUSARI_WORKSPACE"]), "local")
ws = Workspace(url, auth_token=tok)
print("remote", ws.is_remote, ws.path == url)
remote = view(ws, "remote")
print("same", json.dumps(local, sort_keys=True) == json.dumps(remote, sort_keys=True))
print("runs", len(remote["runs"]), sorted(r["model"].strip() for r in remote["runs"]))
print("accuracy", remote["runs"][0]["metrics"]["Accuracy"])
# from_config: KUSARI_TRACKING_URI (and its token) name the server
os.environ["KUSARI_TRACKING_URI"] = url
os.environ["KUSARI_TRACKING_TOKEN"] = tok
ws2 = Workspace.from_config()
print("from_config", ws2.is_remote, ws2.path == url, sorted(ws2.experiments))
del os.environ["KUSARI_TRACKING_URI"], os.environ["KUSARI_TRACKING_TOKEN"]
# submitting through the server: the run is created there and runs on this
# machine (docs/SERVER.md "Remote runs"), and the SDK follows it the same way
from kusari import ScriptRunConfig
run = Experiment(ws, "sdk-remote").submit(ScriptRunConfig(source_directory=sys.argv[4], script="train.sh",
                                                          arguments=["c"], compute_target="cpu"))
run.wait_for_completion()
print("submitted", run.get_status(), run.get_metrics()["Accuracy"])
print("runs now", len(Experiment(ws, "sdk-remote").get_runs()))
try:
    Workspace(url, auth_token="wrong").experiments
    print("wrong token accepted")
except KusariError as e:
    print("wrong token:", e.message)
PY
out="$(cd "$T/client" && env -u KUSARI_TRACKING_URI HOME="$T/client" KUSARI_SPOOL="$T/client/spool" \
  "$PY" "$T/sdk.py" "$URL" "$TOK" "$T/dl" "$T/src" 2>&1)"
echo "$out"
assert_contains "$out" "remote True True" "Workspace(URL) is a remote workspace"
assert_contains "$out" "same True" "experiments, runs, status, metrics, files and downloads are the same through the server"
assert_contains "$out" "runs 2 ['weights a', 'weights b']" "both runs and their outputs, downloaded through the server"
assert_contains "$out" "accuracy [0.5, 0.75, 0.875]" "the metrics by step"
assert_contains "$out" "from_config True True ['sdk-remote']" "from_config() follows KUSARI_TRACKING_URI"
assert_contains "$out" "submitted Completed [0.5, 0.75, 0.875]" "a run submitted through the server completes with its metrics"
assert_contains "$out" "runs now 3" "and the server lists it"
assert_eq "3" "$($K run list --experiment sdk-remote --json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')" "the server's workspace has the third run"
assert_contains "$out" "wrong token:" "a wrong token raises KusariError"
assert_not_contains "$out" "Traceback" "no stack trace"
stop_server
out="$("$PY" -c "
import sys
from kusari import Workspace, KusariError
try:
    Workspace(sys.argv[1], auth_token=sys.argv[2]).experiments
    print('no error')
except KusariError as e:
    print('down:', e.message)
" "$URL" "$TOK" 2>&1)"
echo "$out"
assert_contains "$out" "down:" "a server that is down raises KusariError"
assert_contains "$out" "${URL#http://}" "naming the server"
assert_not_contains "$out" "Traceback" "no stack trace"
finish
