#!/usr/bin/env bash
# bench/scale/run.sh — the tracking server at scale (issue 12 §5), kusari's
# server and MLflow's tracking server in the same run, on the same machine,
# with the same data, through their HTTP APIs:
#   - a store of RUNS runs x 10 params x 5 metrics x 100 points (bench_search's
#     data; kusari's store is seeded through the store interface, MLflow's
#     through its REST API), plus one run with BIG points of one metric
#     (logged through each server's API in batches of 1,000);
#   - reads (scale.py reads): the runs list's first page filtered on a metric
#     and a param and ordered by a metric; a run page (the run and 5 series);
#     the big series downsampled to at most 1,000 points;
#   - ingestion (scale.py ingest): CLIENTS concurrent clients posting batches
#     of 1,000 points for SECONDS, with the server's RSS before, max and end;
# on SQLite and on PostgreSQL (a temporary cluster, tests/platform/pg.sh).
#
#   bench/scale/run.sh [BUILD_DIR]          # default build/ (needs bench_search, kusari)
#   RUNS=10000 BIG=1000000 CLIENTS=50 SECONDS=60 REPS=21 bench/scale/run.sh
#   MLFLOW=0 bench/scale/run.sh             # kusari only
#   BACKENDS="sqlite" bench/scale/run.sh    # SQLite only
#
# MLflow comes from a venv in ~/.cache/kusari/mlflow-venv (pip mlflow,
# psycopg2-binary), made on first use. Everything runs on loopback; timings
# are client-side (upper bounds of the server's time). Results: bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
BUILD="$(cd "${1:-build}" && pwd)"
K="$BUILD/platform/kusari"
BS="$BUILD/bench/bench_search"
RUNS=${RUNS:-10000} BIG=${BIG:-1000000} CLIENTS=${CLIENTS:-50} SECONDS_=${SECONDS:-60} REPS=${REPS:-21}
MLFLOW=${MLFLOW:-1} BACKENDS=${BACKENDS:-"sqlite postgresql"}
[ -x "$K" ] && [ -x "$BS" ] || { echo "run.sh: build kusari and bench_search first (cmake --build $BUILD)" >&2; exit 1; }
PY="$(python3 -c 'import sys; print(sys.executable)')"
S="$REPO/bench/scale/scale.py"
W="$(mktemp -d /tmp/kusari-scale-XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$W"; }
PG_EXIT_ALSO=cleanup
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "run.sh: $1 did not answer" >&2; return 1; }

MLPY="$HOME/.cache/kusari/mlflow-venv/bin/python"
if [ "$MLFLOW" = 1 ] && ! "$MLPY" -c "import mlflow, psycopg2" 2>/dev/null; then
  echo "== making the MLflow venv (pip mlflow psycopg2-binary) =="
  python3 -m venv "$HOME/.cache/kusari/mlflow-venv"
  "$HOME/.cache/kusari/mlflow-venv/bin/pip" install -q mlflow psycopg2-binary
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "kusari $(git -C "$REPO" rev-parse --short HEAD); MLflow $("$MLPY" -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null || echo -)"
echo "data: $RUNS runs x 10 params x 5 metrics x 100 points, one run of $BIG points; $CLIENTS clients for ${SECONDS_} s"

# kusari_round BACKEND STORE_ARG
kusari_round() {
  local be="$1" store="$2" ws="$W/ws-$1"
  echo "== kusari server on $be =="
  if [ "$be" = sqlite ]; then "$K" workspace create "$ws" --no-select >/dev/null; "$BS" --runs "$RUNS" --db "$ws/kusari.db" --seed-only
  else "$K" workspace create "$ws" --no-select --store "$store" >/dev/null; "$BS" --runs "$RUNS" --db "$store" --seed-only; fi
  local port; port="$(free_port)"
  KUSARI_WORKSPACE="$ws" "$K" server --port "$port" --no-auth --workers 4 >"$W/k-$be.out" 2>"$W/k-$be.err" &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/api/v1/health"
  local url="http://127.0.0.1:$port"
  "$PY" "$S" big --kind kusari --url "$url" --points "$BIG" --id-file "$W/big-k-$be"
  "$PY" "$S" reads --kind kusari --url "$url" --label "$be" --reps "$REPS" --id-file "$W/big-k-$be"
  "$PY" "$S" ingest --kind kusari --url "$url" --label "$be" --clients "$CLIENTS" --seconds "$SECONDS_" --pid "$pid"
  kill -TERM "$pid"; wait "$pid" || true
}

# mlflow_round BACKEND STORE_URI
mlflow_round() {
  local be="$1" store="$2"
  echo "== MLflow tracking server on $be =="
  local port; port="$(free_port)"
  (cd "$W" && exec "$MLPY" -m mlflow server --backend-store-uri "$store" --default-artifact-root "$W/mlartifacts" \
     --host 127.0.0.1 --port "$port" --workers 4 >"$W/m-$be.out" 2>&1) &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$port/health" || { tail -20 "$W/m-$be.out" >&2; return 1; }
  local url="http://127.0.0.1:$port"
  "$PY" "$S" seed --kind mlflow --url "$url" --runs "$RUNS"
  "$PY" "$S" big --kind mlflow --url "$url" --points "$BIG" --id-file "$W/big-m-$be"
  "$PY" "$S" reads --kind mlflow --url "$url" --label "$be" --reps "$REPS" --id-file "$W/big-m-$be"
  "$PY" "$S" ingest --kind mlflow --url "$url" --label "$be" --clients "$CLIENTS" --seconds "$SECONDS_" --pid "$pid"
  kill -TERM "$pid"; wait "$pid" || true
}

for be in $BACKENDS; do
  case "$be" in
    sqlite)
      kusari_round sqlite ""
      [ "$MLFLOW" = 1 ] && mlflow_round sqlite "sqlite:///$W/mlflow.db"
      ;;
    postgresql)
      [ -n "${PG_BIN:-}" ] || . "$REPO/tests/platform/pg.sh"
      kusari_round postgresql "$(pg_createdb kusari_scale)"
      if [ "$MLFLOW" = 1 ]; then
        pg_createdb mlflow_scale >/dev/null
        mlflow_round postgresql "postgresql+psycopg2://$PG_USER@/mlflow_scale?host=$PG_SOCK&port=$PG_PORT"
      fi
      ;;
    *) echo "run.sh: unknown backend '$be' (sqlite, postgresql)" >&2; exit 2 ;;
  esac
done
