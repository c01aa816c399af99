#!/usr/bin/env bash
# The Python SDK (python/kusari: Workspace, Experiment, ScriptRunConfig, Run)
# over the kusari program's --json output, against real runs: from_config,
# submit with arguments, an environment dict and tags, wait_for_completion
# with its output, get_status/get_metrics/get_file_names/get_tags,
# download_file/download_files, register_model; errors carry the program's
# message; a missing program is a clear KusariError. Also ComputeTarget,
# Model (register, get, list, download, deploy), Webservice (keys, run over
# HTTP with the key, delete) and a HyperDrive sweep with a Bandit policy.
source "$(dirname "$0")/lib.sh"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
export PYTHONPATH="$SRC/python"
export PATH="$(dirname "$K"):$PATH"     # the SDK runs the kusari program from PATH

mkdir -p "$T/src"
cat > "$T/src/train.sh" <<'SH'
echo "training with $* lr=$LR"
for a in 0.5 0.75 0.875; do kusari log metric Accuracy $a; done
kusari log metric Epochs 3
kusari log tag framework bash
mkdir -p outputs/model && echo weights > outputs/model/model.npz && echo '{}' > outputs/model/model.json
echo notes > outputs/notes.txt
SH
printf 'echo failing on purpose\nexit 3\n' > "$T/src/fail.sh"

cat > "$T/sdk.py" <<'PY'
import io, os, sys, contextlib
from kusari import Workspace, Experiment, ScriptRunConfig, Run, ComputeTarget, Model, KusariError
src, dl = sys.argv[1], sys.argv[2]
ws = Workspace.from_config()
print("workspace", ws.path == os.environ["KUSARI_WORKSPACE"])
try:
    ComputeTarget(ws, "cpu")
    print("compute exists before create")
except KusariError as e:
    print("no compute yet:", e.message)
cpu = ComputeTarget.create(ws, "cpu", max_nodes=2)
print("compute", cpu.name, cpu.type, cpu.get_status()["max_nodes"], [c.name for c in ComputeTarget.list(ws)])
exp = Experiment(ws, "sdk-exp")
cfg = ScriptRunConfig(source_directory=src, script="train.sh", arguments=["--epochs", 3],
                      compute_target=cpu, environment={"variables": {"LR": "0.01"}},
                      tags={"owner": "sdk"})
run = exp.submit(cfg)
print("submitted", run.id.startswith("sdk-exp_"), run.experiment.name)
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    details = run.wait_for_completion(show_output=True)
print("output:", "training with --epochs 3 lr=0.01" in buf.getvalue())
print("status", details["status"], run.get_status())
print("metrics", sorted(run.get_metrics().items()))
print("one metric", run.get_metrics("Epochs"))
print("files", sorted(run.get_file_names()))
print("tags", sorted(run.get_tags().items()))
p = run.download_file("outputs/notes.txt", dl)
print("download_file", os.path.relpath(p, dl), open(p).read().strip())
run.download_files("outputs/model", os.path.join(dl, "all"))
print("download_files", sorted(os.listdir(os.path.join(dl, "all", "outputs", "model"))))
m = run.register_model("sdk-model", "outputs/model", tags={"stage": "test"}, description="from the SDK")
print("model", m, m.run_id == run.id, m.description, m.tags, sorted(m.get_file_names()))
m.download(os.path.join(dl, "model"))
print("model download", sorted(os.listdir(os.path.join(dl, "model", "model"))))
print("model list", Model.list(ws) == [m], Model(ws, "sdk-model") == m)
print("runs", [r.id for r in exp.get_runs()] == [run.id])
print("experiments", sorted(ws.experiments))
bad = exp.submit(ScriptRunConfig(src, "fail.sh", compute_target="cpu"))
try:
    bad.wait_for_completion()
    print("failed run did not raise")
except KusariError as e:
    print("failed run raises:", e.message)
print("failed status", bad.wait_for_completion(raise_on_error=False)["status"])
for what, f in [("unknown run", lambda: Run(exp, "no_such_run").get_metrics()),
                ("unknown compute", lambda: exp.submit(ScriptRunConfig(src, "train.sh", compute_target="gpu9"))),
                ("missing file", lambda: run.download_file("outputs/none.txt", dl)),
                ("bad config", lambda: exp.submit("train.sh"))]:
    try:
        f()
        print(what, "accepted")
    except (KusariError, TypeError) as e:
        print(what, "->", type(e).__name__, str(e).replace("\n", " | "))
PY
mkdir -p "$T/dl"
out="$(python3 "$T/sdk.py" "$T/src" "$T/dl" 2>&1)"
assert_contains "$out" "workspace True" "Workspace.from_config() finds the workspace the CLI uses"
assert_contains "$out" "submitted True sdk-exp" "Experiment.submit returns the run"
assert_contains "$out" "output: True" "wait_for_completion(show_output=True) streams the output (arguments and environment applied)"
assert_contains "$out" "status Completed Completed" "status from wait and get_status"
assert_contains "$out" "metrics [('Accuracy', [0.5, 0.75, 0.875]), ('Epochs', 3)]" "get_metrics: lists and single values"
assert_contains "$out" "one metric {'Epochs': 3}" "get_metrics(name)"
assert_contains "$out" "files ['logs/std_log.txt', 'outputs/model/model.json', 'outputs/model/model.npz', 'outputs/notes.txt']" "get_file_names"
assert_contains "$out" "tags [('framework', 'bash'), ('owner', 'sdk')]" "tags from the config and from the run"
assert_contains "$out" "download_file notes.txt notes" "download_file into a directory"
assert_contains "$out" "download_files ['model.json', 'model.npz']" "download_files of a folder"
assert_contains "$out" "no compute yet: no compute target named 'cpu'" "ComputeTarget(ws, name) of an unknown target raises"
assert_contains "$out" "compute cpu local 2 ['cpu']" "ComputeTarget.create, get_status, list"
assert_contains "$out" "model Model('sdk-model', version=1) True from the SDK {'stage': 'test'} ['model/model.json', 'model/model.npz']" "register_model returns the Model with its lineage, description, tags, files"
assert_contains "$out" "model download ['model.json', 'model.npz']" "Model.download"
assert_contains "$out" "model list True True" "Model.list and Model(ws, name) (the latest version)"
show="$($K model show sdk-model --json)"
assert_contains "$show" "model/model.npz" "the registered model's files, seen by the CLI"
assert_contains "$show" "from the SDK" "the registered model's description"
assert_contains "$out" "runs True" "Experiment.get_runs"
assert_contains "$out" "experiments ['sdk-exp']" "Workspace.experiments"
assert_contains "$out" "failed run raises: run sdk-exp_2 ended Failed" "a failed run raises from wait_for_completion"
assert_contains "$out" "failed status Failed" "raise_on_error=False returns the details"
assert_contains "$out" "unknown run -> KusariError" "an unknown run is a KusariError"
assert_contains "$out" "unknown compute -> KusariError" "an unknown compute target is a KusariError"
assert_contains "$out" "hint:" "errors carry the program's hint"
assert_contains "$out" "missing file -> KusariError" "a missing run file is a KusariError"
assert_contains "$out" "bad config -> TypeError submit: config must be a ScriptRunConfig or a HyperDriveConfig, got str" "a wrong config type is a TypeError"
assert_not_contains "$out" "accepted" "bad input is refused"
assert_not_contains "$out" "Traceback" "no tracebacks"

# --- a HyperDrive sweep from Python ---------------------------------------------------
cat > "$T/src/sweep.sh" <<'SH'
# --batchsize B --epochs E: Accuracy B/1000 + epoch/100 for epoch 1..E
while [ $# -gt 0 ]; do case "$1" in --batchsize) b=$2; shift 2;; --epochs) e=$2; shift 2;; *) shift;; esac; done
for ep in $(seq 1 "$e"); do kusari log metric Accuracy "$(awk -v b="$b" -v ep="$ep" 'BEGIN { print b / 1000 + ep / 100 }')"; done
SH
cat > "$T/hd.py" <<'PY'
import sys
from kusari import (Workspace, Experiment, ScriptRunConfig, HyperDriveConfig, RandomParameterSampling,
                    BanditPolicy, PrimaryMetricGoal, choice, KusariError)
ws = Workspace.from_config()
exp = Experiment(ws, "sdk-sweep")
src = ScriptRunConfig(source_directory=sys.argv[1], script="sweep.sh", compute_target="cpu")
hd = HyperDriveConfig(run_config=src,
                      hyperparameter_sampling=RandomParameterSampling({"--batchsize": choice(128, 256),
                                                                       "--epochs": choice([1, 2])}, seed=7),
                      policy=BanditPolicy(evaluation_interval=1, slack_factor=0.1, delay_evaluation=3),
                      primary_metric_name="Accuracy", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
                      max_total_runs=4, max_concurrent_runs=2)
sweep = exp.submit(hd)
print("sweep status", sweep.wait_for_completion()["status"])
kids = sweep.get_children()
print("children", len(kids), sorted((k.get_tags()["--batchsize"], k.get_tags()["--epochs"]) for k in kids))
best = sweep.get_best_run_by_primary_metric()
print("best", best.get_tags()["--batchsize"], best.get_tags()["--epochs"], best.get_metrics()["Accuracy"])
try:
    exp.submit(HyperDriveConfig(src, RandomParameterSampling({"--lr": {"uniform": [2, 1]}}), "Accuracy",
                                "maximize", max_total_runs=2))
    print("bad sweep accepted")
except KusariError as e:
    print("bad sweep ->", e.message)
PY
out="$(python3 "$T/hd.py" "$T/src" 2>&1)"
assert_contains "$out" "sweep status Completed" "HyperDriveRun.wait_for_completion"
assert_contains "$out" "children 4 [('128', '1'), ('128', '2'), ('256', '1'), ('256', '2')]" "get_children: the 4 points of the space, each once"
assert_contains "$out" "best 256 2 [0.266, 0.276]" "get_best_run_by_primary_metric: batch 256, 2 epochs"
assert_contains "$out" "sampling.space.--lr.uniform: min 2 > max 1" "an invalid sweep is the program's message"
assert_not_contains "$out" "Traceback" "no tracebacks from the sweep"

# --- deploy a registered model and score it from Python ------------------------------------
# a Linear 4->3 (W = arange(12)/10 as 3x4, b = 0) written with numpy, as platform_service_keys does
if /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  mkdir -p "$T/lin"
  /usr/bin/python3 - "$T/lin" <<'PYM' || die "cannot write the model"
import numpy as np, sys
d = sys.argv[1]
np.savez(d + "/model.npz", **{"l1/W": np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "l1/b": np.zeros(3, np.float32)})
open(d + "/model.json", "w").write('{"format": "kusari-sequential/1", "input": [4], "layers": '
                                   '[{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": false}]}\n')
PYM
  $K model register --name lin --file "$T/lin" >/dev/null || die "model register"
  cat > "$T/svc.py" <<'PY'
from kusari import Workspace, Model, Webservice, KusariError
ws = Workspace.from_config()
svc = Model(ws, "lin").deploy("lin-svc", auth=True, workers=1)
print("uri", svc.scoring_uri.startswith("http://127.0.0.1:"), svc.state)
k1, k2 = svc.get_keys()
print("keys", len(k1), len(k2), k1 != k2)
print("scores", svc.run({"data": [[1, 2, 3, 4]]})["predictions"])
print("text input", svc.run('{"data": [[0, 0, 0, 1]]}')["predictions"])
try:
    svc.run({"data": [[1, 2]]})
    print("bad input accepted")
except KusariError as e:
    print("bad input ->", e.message)
svc.delete()
try:
    Webservice(ws, "lin-svc")
    print("deleted service still there")
except KusariError as e:
    print("deleted ->", e.message)
PY
  out="$(python3 "$T/svc.py" 2>&1)"
  assert_contains "$out" "uri True Running" "Model.deploy returns a running Webservice with its scoring URI"
  assert_contains "$out" "keys 64 64 True" "Webservice.get_keys: two keys"
  # W x for x = (1,2,3,4): rows (0 .1 .2 .3), (.4 .5 .6 .7), (.8 .9 1 1.1) give 2, 6, 10: class 2
  assert_contains "$out" "scores [2]" "Webservice.run with the key: the class worked out by hand"
  assert_contains "$out" "text input [2]" "Webservice.run with a JSON text"
  assert_contains "$out" "bad input -> service lin-svc answered 400:" "a refused input is a KusariError with the server's status"
  assert_contains "$out" "deleted -> " "Webservice.delete"
  assert_not_contains "$out" "Traceback" "no tracebacks from the service"
else
  fail "python3-numpy is needed to write the test's model (install-deps installs it)"
fi

# no kusari program: a clear error, not a stack trace from subprocess
PY="$(python3 -c 'import sys; print(sys.executable)')"
out="$(cd "$T" && env -u KUSARI_BIN PATH=/nonexistent "$PY" -c 'from kusari import Workspace, KusariError
try:
    Workspace.from_config()
except KusariError as e:
    print("no program:", e)' 2>&1)"
assert_contains "$out" "no program: cannot find the kusari program on PATH" "a missing kusari program: what was wrong"
assert_contains "$out" "hint: install kusari" "a missing kusari program: what to do"
finish
