#!/usr/bin/env bash
# The README's main job: train examples/mnist as a tracked run, the way the
# Azure ML + Chainer quickstart does, and register its model.
#
#   scripts/quickstart.sh [--workspace DIR] [--epochs N] [--source DIR]
#
#   1. use the default workspace (or --workspace DIR, created if needed),
#   2. create the local compute target "cpu" (2 nodes) if it is missing,
#   3. submit examples/mnist (entry train_mnist, environment kusari-env.json:
#      its Debian packages are checked and `make` builds it, cached) with
#      -- --epochs 10 --batchsize 128 --output_dir ./outputs,
#   4. wait for the run with its output,
#   5. register outputs/model.npz as model chainer-dnn-mnist (a new version),
#   6. print a summary: the run, its metrics, the model.
# Needs `kusari` on PATH (or KUSARI=/path/to/kusari) and, for the build
# inside the run, libkusari installed where pkg-config finds it.
set -euo pipefail
# --help: the comment block above, from its second line to the first line
# that is not a comment
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
cd "$(dirname "$0")/.."
KUSARI=${KUSARI:-kusari}
WS=()
EPOCHS=10
SOURCE=examples/mnist
while [ $# -gt 0 ]; do
  case "$1" in
    --workspace) WS=(--workspace "$2"); shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! command -v "$KUSARI" >/dev/null 2>&1; then
  echo "quickstart: the kusari program is not on PATH; run scripts/setup.sh or set KUSARI=/path/to/kusari" >&2
  exit 1
fi
k() { "$KUSARI" "${WS[@]}" "$@"; }

echo "== workspace =="
# --no-select: the script names its workspace in every command, and writes
# no .kusari/config.json into the directory it runs in
if [ ${#WS[@]} -gt 0 ]; then k workspace create "${WS[1]}" --no-select >/dev/null; fi
k workspace show

echo "== compute target cpu =="
k compute show cpu >/dev/null 2>&1 || k compute create cpu --type local --max-nodes 2
k compute show cpu

echo "== submit $SOURCE =="
RUN=$(k run submit --experiment chainer-mnist --source "$SOURCE" --entry train_mnist --compute cpu \
        --env "$SOURCE/kusari-env.json" -- --epochs "$EPOCHS" --batchsize 128 --output_dir ./outputs | tail -1)
echo "run: $RUN"

echo "== wait for $RUN =="
status=0
k run wait "$RUN" --show-output || status=$?
if [ $status -ne 0 ]; then
  echo "quickstart: run $RUN did not complete:" >&2
  k run show "$RUN" >&2 || true
  log="$(k run logs "$RUN" 2>/dev/null || true)"
  if printf '%s' "$log" | grep -q "error while loading shared libraries"; then
    # the entry, built by `make` through pkg-config, cannot find libkusari
    echo "quickstart: the entry program cannot load libkusari.so: its pkg-config flags carry no run path." >&2
    echo "  hint: reinstall with this version of scripts/setup.sh (kusari.pc adds -Wl,-rpath), or add" >&2
    echo "        \$(pkg-config --variable=libdir kusari) to /etc/ld.so.conf.d/ and run ldconfig" >&2
  elif [ -n "$log" ]; then
    echo "quickstart: the end of the run's log (kusari run logs $RUN):" >&2
    printf '%s\n' "$log" | tail -20 >&2
  else
    echo "  hint: the build log: kusari run logs $RUN --build" >&2
  fi
  exit 1
fi

echo "== register the model =="
MODEL=$(k model register --run "$RUN" --name chainer-dnn-mnist --path outputs/model.npz \
          --tag framework=kusari --description "MLP on Fashion-MNIST, trained by scripts/quickstart.sh" | tail -1)
echo "model: $MODEL"

echo "== summary =="
k run show "$RUN"
echo
k run metrics "$RUN"
echo
k model show "$MODEL"
echo
echo "quickstart: run $RUN completed; model $MODEL registered"
