#!/usr/bin/env bash
# platform_python_frameworks: real framework training scripts as kusari runs,
# logging Accuracy per epoch through the kusari package (python/kusari):
# Chainer 7.8.1 and, where it is installed, PyTorch. Each trains an MLP on
# 3000 Fashion-MNIST training images for 3 epochs and logs the accuracy on
# 1000 test images after each epoch; the test checks 3 values at steps 0..2
# and that the last one is that of a model that learned (>= 0.6; chance is
# 0.1). Each framework comes from a Python that has it: Chainer from
# $KUSARI_TEST_PEERS_PYTHON, else the venv of scripts/python-peers.sh
# (~/.cache/kusari/python-peers, or $KUSARI_PEERS_DIR; scripts/test.sh makes
# it), else bench/.venv (bench/setup-peers.sh); PyTorch from
# $KUSARI_TEST_TORCH_PYTHON, else the first of those that has it, else
# Debian's /usr/bin/python3 with python3-torch (scripts/install-deps.sh
# installs it: PyTorch 1.13.1, CPU only, ~80 MB, where PyPI's wheel pulls
# 5 GB of CUDA libraries). Skipped (77) when no such Python or no data set is
# found, unless KUSARI_TEST_REQUIRE_PEERS=1 (CI sets it): then a missing
# Python or framework fails.
# (lib.sh moves HOME into the test's temp dir: find the peers' place first)
PEERS_DIR=${KUSARI_PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kusari/python-peers}
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA=/usr/share/datasets/fashion-mnist
[ -d "$DATA" ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
has() { SETUPTOOLS_USE_DISTUTILS=stdlib "$1" -W ignore -c "import $2" >/dev/null 2>&1; }
# python_for FRAMEWORK CANDIDATES...: the first candidate that imports it
python_for() {
  local fw="$1" p; shift
  for p in "$@"; do [ -n "$p" ] && [ -x "$p" ] && has "$p" "$fw" && { echo "$p"; return 0; }; done
  return 1
}
CANDIDATES=("${KUSARI_TEST_PEERS_PYTHON:-}" "$PEERS_DIR/venv/bin/python" "$REPO/bench/.venv/bin/python")
declare -A PY=()
PY[chainer]="$(python_for chainer "${CANDIDATES[@]}")"
PY[torch]="$(python_for torch "${KUSARI_TEST_TORCH_PYTHON:-}" "${CANDIDATES[@]}" /usr/bin/python3)"
if [ -z "${PY[chainer]}${PY[torch]}" ]; then
  [ "${KUSARI_TEST_REQUIRE_PEERS:-0}" = 1 ] && die "no Python with chainer or torch, and KUSARI_TEST_REQUIRE_PEERS=1 (run scripts/python-peers.sh; apt install python3-torch)"
  echo "skip: no Python with chainer or torch (run scripts/python-peers.sh, apt install python3-torch, or set KUSARI_TEST_PEERS_PYTHON)"; exit 77
fi
"$K" compute create cpu --type local --max-nodes 1 >/dev/null || die "compute create"
ENVF=()
if [ -n "${KUSARI_TEST_CFLAGS:-}" ]; then   # see platform_python_client
  echo "leak:python3" > "$T/lsan.supp"
  VARS="\"LD_PRELOAD\": \"$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)\", \"LSAN_OPTIONS\": \"suppressions=$T/lsan.supp\", "
else
  VARS=""
fi
for fw in chainer torch; do
  [ -n "${PY[$fw]}" ] || continue
  cat > "$T/env_$fw.json" <<JSON
{"interpreter": "${PY[$fw]}", "variables": {${VARS}"SETUPTOOLS_USE_DISTUTILS": "stdlib", "PYTHONWARNINGS": "ignore"}}
JSON
done

mkdir -p "$T/src"
cat > "$T/src/data.py" <<'PY'
import gzip, struct
import numpy as np
D = "/usr/share/datasets/fashion-mnist/"
def idx(name):
    raw = gzip.open(D + name, "rb").read()
    n = raw[3]
    dims = struct.unpack(">%dI" % n, raw[4:4 + 4 * n])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * n).reshape(dims)
def load(ntrain=3000, ntest=1000):
    xtr = idx("train-images-idx3-ubyte.gz")[:ntrain].reshape(ntrain, -1).astype(np.float32) / 255
    ytr = idx("train-labels-idx1-ubyte.gz")[:ntrain].astype(np.int32)
    xte = idx("t10k-images-idx3-ubyte.gz")[:ntest].reshape(ntest, -1).astype(np.float32) / 255
    yte = idx("t10k-labels-idx1-ubyte.gz")[:ntest].astype(np.int32)
    return xtr, ytr, xte, yte
PY
cat > "$T/src/train_chainer.py" <<'PY'
import numpy as np
import chainer, chainer.functions as F, chainer.links as L
from kusari import Run
from data import load
run = Run.get_context()
run.tag("framework", "chainer " + chainer.__version__)
xtr, ytr, xte, yte = load()
np.random.seed(0)
model = L.Classifier(chainer.Sequential(L.Linear(784, 100), F.relu, L.Linear(100, 10)))
opt = chainer.optimizers.Adam()
opt.setup(model)
for epoch in range(3):
    perm = np.random.permutation(len(xtr))
    for i in range(0, len(xtr), 100):
        b = perm[i:i + 100]
        opt.update(model, xtr[b], ytr[b])
    with chainer.using_config("train", False), chainer.no_backprop_mode():
        acc = float(F.accuracy(model.predictor(xte), yte).array)
    run.log("Accuracy", acc)
    print("chainer epoch", epoch + 1, "accuracy", acc)
PY
cat > "$T/src/train_torch.py" <<'PY'
import torch
from kusari import Run
from data import load
run = Run.get_context()
run.tag("framework", "torch " + torch.__version__)
torch.manual_seed(0)
xtr, ytr, xte, yte = [torch.from_numpy(a) for a in load()]
model = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 10))
opt = torch.optim.Adam(model.parameters())
for epoch in range(3):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), 100):
        b = perm[i:i + 100]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xtr[b]), ytr[b].long()).backward()
        opt.step()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte.long()).float().mean().item()
    run.log("Accuracy", torch.tensor(acc))     # a one-element tensor is a value too
    print("torch epoch", epoch + 1, "accuracy", acc)
PY

ran=0
for fw in chainer torch; do
  if [ -z "${PY[$fw]}" ]; then
    [ "${KUSARI_TEST_REQUIRE_PEERS:-0}" = 1 ] && { fail "no Python here has $fw (KUSARI_TEST_REQUIRE_PEERS=1)"; continue; }
    echo "note: no Python here has $fw; its script is not run"; continue
  fi
  echo "$fw from ${PY[$fw]}"
  ran=$((ran + 1))
  id="$(submit --experiment "py-$fw" --source "$T/src" --entry "train_$fw.py" --compute cpu --env "$T/env_$fw.json")"
  out="$($K run wait "$id" --show-output 2>&1)"
  assert_contains "$out" "$fw epoch 3 accuracy" "$fw: the script trained 3 epochs"
  assert_contains "$out" "Completed" "$fw: the run completed"
  m="$($K run metrics "$id" --name Accuracy --json)"
  assert_eq "[0, 1, 2]" "$(jget "$m" '[r["step"] for r in j["Accuracy"]]')" "$fw: Accuracy logged per epoch through the kusari package"
  assert_eq "True" "$(jget "$m" '0.6 <= j["Accuracy"][-1]["value"] <= 1')" "$fw: the last Accuracy is that of a model that learned"
  assert_contains "$(jget "$($K run show "$id" --json)" 'j["tags"]["framework"]')" "$fw" "$fw: its tag"
done
[ $ran -gt 0 ] || fail "no framework was run"
finish
