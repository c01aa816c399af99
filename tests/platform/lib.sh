# tests/platform/lib.sh — shared helpers of the platform's bash tests.
# Each test sources this: it gets $K (the kusari program), a fresh workspace
# in a temp dir ($WS, exported as KUSARI_WORKSPACE), $T (scratch dir) and
# assertions that exit non-zero with a message on failure.
set -u
K="${KUSARI_BIN:?KUSARI_BIN must name the kusari program}"
ENTRY_BIN="${KUSARI_LOG_ENTRY:-}"
T="$(mktemp -d /tmp/kusari-test-XXXXXX)"
WS="$T/ws"
# Hermetic: every variable kusari, its supervisors and libkusari read is set
# here or unset, so the caller's environment changes nothing (grep getenv in
# platform/ and src/). The harness's own KUSARI_BIN, KUSARI_LOG_ENTRY,
# KUSARI_INCLUDE_DIR, KUSARI_STATIC_LIB and KUSARI_TEST_CFLAGS stay; libpq's
# PG* variables go too (a PostgreSQL store's URI says everything).
export KUSARI_WORKSPACE="$WS"
export HOME="$T/home"            # the default workspace, if any, stays inside $T
unset XDG_DATA_HOME              # so the default workspace is $HOME/.local/share/kusari/workspace
unset XDG_CONFIG_HOME KUSARI_TRACKING_URI KUSARI_TRACKING_TOKEN  # no tracking server unless a test sets one
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL KUSARI_UPLOAD_DIR KUSARI_EXPERIMENT \
      KUSARI_TRACKING_URI KUSARI_OUTPUT_DIR KUSARI_DATA KUSARI_FAULT_SQLITE_OOM \
      KUSARI_NUM_THREADS OMP_NUM_THREADS OPENBLAS_NUM_THREADS OPENBLAS_CORETYPE \
      PYTHONUNBUFFERED PYTHONPATH LD_LIBRARY_PATH PKG_CONFIG_PATH KUSARI_MPIRUN KUSARI_LIMITS_NO_CGROUP \
      SKIP_ASAN SKIP_TSAN SKIP_FUZZ SKIP_PEERS CTEST_ARGS FUZZ_SECONDS JOBS \
      PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE PGSERVICEFILE PGOPTIONS \
      PGSSLMODE PGCONNECT_TIMEOUT PGAPPNAME PGTARGETSESSIONATTRS
mkdir -p "$HOME"
# the workspace lookup walks up from the current directory: start in $T
# (tests find their files from $0, so it must be absolute, as ctest gives it)
case "$0" in /*) ;; *) echo "lib.sh: run the test by its absolute path (\$0 is '$0')" >&2; rm -rf "$T"; exit 2;; esac
cd "$T" || exit 1
FAILS=0

# The store of the test workspace: its own kusari.db (SQLite, the default),
# or with KUSARI_TEST_STORE=postgresql a database on a temporary PostgreSQL
# server started for this script (pg.sh; stopped by cleanup).
KUSARI_TEST_STORE="${KUSARI_TEST_STORE:-sqlite}"
TEST_PG_URI=""
case "$KUSARI_TEST_STORE" in
  sqlite) ;;
  postgresql)
    PG_EXIT_ALSO='rm -rf "$T"'  # until cleanup's trap replaces pg.sh's
    . "$(dirname "${BASH_SOURCE[0]}")/pg.sh"
    TEST_PG_URI="$(pg_createdb ws)" || { echo "lib.sh: cannot create the test database" >&2; rm -rf "$T"; exit 1; } ;;
  *) echo "lib.sh: KUSARI_TEST_STORE must be sqlite or postgresql, not '$KUSARI_TEST_STORE'" >&2; rm -rf "$T"; exit 2 ;;
esac

cleanup() {
  # stop whatever runs and scoring services are still active (our own only;
  # a server that would not stop is killed by its recorded pid)
  if [ -f "$WS/config.json" ]; then
    for id in $("$K" run list --status Running --json 2>/dev/null | python3 -c 'import json,sys; [print(r["id"]) for r in json.load(sys.stdin)]' 2>/dev/null); do
      "$K" run cancel "$id" --grace 0 >/dev/null 2>&1
    done
  fi
  if [ -f "$WS/kusari.db" ]; then
    for s in $(sqlite3 -cmd ".timeout 5000" "$WS/kusari.db" "SELECT name FROM services" 2>/dev/null); do
      "$K" service stop "$s" >/dev/null 2>&1
    done
    for pid in $(sqlite3 -cmd ".timeout 5000" "$WS/kusari.db" "SELECT pid FROM services WHERE pid IS NOT NULL" 2>/dev/null); do
      kill -9 "$pid" 2>/dev/null
    done
  fi
  if [ -n "$TEST_PG_URI" ]; then pg_stop; fi
  rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# assert_eq EXPECTED ACTUAL WHAT
assert_eq() { if [ "$1" == "$2" ]; then ok "$3"; else fail "$3: expected '$1', got '$2'"; fi; }
# assert_contains HAYSTACK NEEDLE WHAT
assert_contains() { case "$1" in *"$2"*) ok "$3";; *) fail "$3: '$2' not in: $1";; esac; }
assert_not_contains() { case "$1" in *"$2"*) fail "$3: '$2' unexpectedly in: $1";; *) ok "$3";; esac; }

# expect_fail "MESSAGE PART" CMD... : CMD must exit non-zero and say MESSAGE PART on stderr
expect_fail() {
  local msg="$1"; shift
  local err rc
  err="$("$@" 2>&1 >/dev/null)"; rc=$?
  if [ $rc -eq 0 ]; then fail "expected failure of: $* (exit 0)"; return; fi
  case "$err" in *"$msg"*) ok "fails clearly: $* -> $(echo "$err" | head -1)";;
    *) fail "failure of '$*' does not say '$msg': $err";; esac
}

# run_ok CMD... : must succeed; prints its stdout
run_ok() {
  local out rc
  out="$("$@" 2>"$T/.err")"; rc=$?
  if [ $rc -ne 0 ]; then fail "command failed ($rc): $* : $(cat "$T/.err")"; fi
  printf '%s' "$out"
}

# sql QUERY: a query on the workspace's store, waiting for locks like kusari
# does (on PostgreSQL: psql, rows printed as sqlite3 prints them, a|b)
if [ -n "$TEST_PG_URI" ]; then
  sql() { pg_psql "$TEST_PG_URI" -c "$*"; }
else
  sql() { sqlite3 -cmd ".timeout 10000" "$WS/kusari.db" "$@"; }
fi

# jq-like field access with python3: jget JSON EXPR (EXPR uses variable j)
jget() { python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# submit ARGS... : submits and echoes the run id (last line of output)
submit() { "$K" run submit "$@" | tail -1; }

finish() {
  # supervisors run detached: their sanitizer reports land in supervisor.log
  local bad
  bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$T"/*/runs/*/supervisor.log "$T"/ws*/runs/*/supervisor.log "$T"/*/*/runs/*/supervisor.log 2>/dev/null | sort -u)"
  if [ -n "$bad" ]; then fail "sanitizer reports from supervisors: $(cat $bad | head -40)"; fi
  if [ "$FAILS" -ne 0 ]; then echo "$FAILS assertion(s) failed" >&2; exit 1; fi
  echo "all assertions passed"
  exit 0
}

"$K" workspace create "$WS" --no-select ${TEST_PG_URI:+--store "$TEST_PG_URI"} >/dev/null || die "cannot create workspace"
