#!/usr/bin/env bash
# Builds kusari with warnings as errors and runs the whole test suite, then
# builds it again with AddressSanitizer + UBSan and runs the unit and
# platform tests under it, and builds the unit tests of threaded code (the
# thread pool, threaded kernels, data-parallel replicas, the optimizer's
# update, the Trainer) with ThreadSanitizer and runs them, and last builds
# the libFuzzer targets of fuzz/ with clang and runs each for FUZZ_SECONDS
# (default 15) from its seed corpus (each target counts as one test; a
# crash, leak or out-of-memory input fails it, see scripts/fuzz.sh).
#
# Every stage runs, whatever the earlier ones gave (a build that fails skips
# only its own tests). At the end it prints each stage's result and, as its
# last line, "N passed, N failed": the tests over all stages, where a build
# that failed counts as one failure and skipped tests count in neither (their
# number is on the line before). Exits 1 if anything failed.
#
#   scripts/test.sh                          # everything
#   SKIP_ASAN=1 SKIP_TSAN=1 SKIP_FUZZ=1 scripts/test.sh  # the Release stage only
#   FUZZ_SECONDS=60 scripts/test.sh          # fuzz each target longer
#   CTEST_ARGS="-R platform_" scripts/test.sh   # extra ctest arguments, every stage
#   JOBS=N scripts/test.sh                   # parallelism (default: nproc)
#   SKIP_PEERS=1 scripts/test.sh             # no Chainer venv: platform_python_frameworks skips
#
# First it makes (or reuses) the venv with Chainer 7.8.1 that
# platform_python_frameworks trains with (scripts/python-peers.sh, cached in
# ~/.cache/kusari/python-peers; PyPI's PyTorch too with PEERS_TORCH=1), and
# requires it: without Chainer, or without PyTorch (Debian's python3-torch,
# which scripts/install-deps.sh installs, or the venv's), that test fails
# instead of skipping.
set -uo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") ;;
  *) echo "test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.." || exit 1
JOBS=${JOBS:-$(nproc)}
if [ "${SKIP_PEERS:-0}" != 1 ] && [ -z "${KUSARI_TEST_PEERS_PYTHON:-}" ] && [ -f scripts/python-peers.sh ]; then
  echo "== Python peers (Chainer venv for platform_python_frameworks) =="
  export PEERS_TORCH=${PEERS_TORCH:-0}
  if py="$(bash scripts/python-peers.sh | tail -1)" && [ -x "$py" ]; then
    export KUSARI_TEST_PEERS_PYTHON="$py"
  else
    echo "test.sh: scripts/python-peers.sh failed: platform_python_frameworks will fail (SKIP_PEERS=1 to skip it)" >&2
  fi
  export KUSARI_TEST_REQUIRE_PEERS=1
fi
read -r -a EXTRA <<< "${CTEST_ARGS:-}"
RESULTS_DIR="$(mktemp -d /tmp/kusari-test-sh-XXXXXX)"
trap 'rm -rf "$RESULTS_DIR"' EXIT
SUMMARY=()
PASSED=0 FAILED=0 SKIPPED=0

record() { SUMMARY+=("$(printf '  %-48s %s' "$1" "$2")"); }

# build NAME DIR CMAKE_ARGS... [-- TARGETS...]: configure and build; 0 if it worked
build() {
  local name="$1" dir="$2"; shift 2
  local args=() targets=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -gt 0 ] && shift && targets=(--target "$@")
  echo "== $name =="
  if cmake -S . -B "$dir" "${args[@]}" >/dev/null && cmake --build "$dir" -j"$JOBS" "${targets[@]}"; then
    record "$name" ok
    return 0
  fi
  record "$name" "FAILED (counted as 1 failure)"
  FAILED=$((FAILED + 1))
  return 1
}

# tests NAME DIR [ENV=VALUE...] -- CTEST_ARGS...: runs ctest and counts its tests
tests() {
  local name="$1" dir="$2"; shift 2
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local xml="$RESULTS_DIR/$(echo "$name" | tr -c 'A-Za-z0-9' _).xml"
  echo "== $name =="
  (cd "$dir" && env "${envs[@]}" ctest --output-on-failure -j"$JOBS" --output-junit "$xml" "$@" "${EXTRA[@]}")
  local rc=$?
  local counts
  counts="$(python3 - "$xml" <<'PY' 2>/dev/null
import sys, xml.etree.ElementTree as ET
p = f = s = 0
failed = []
for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    status = tc.get("status", "")
    if tc.find("skipped") is not None or status in ("notrun", "disabled"):
        s += 1
    elif tc.find("failure") is not None or tc.find("error") is not None or status == "fail":
        f += 1
        failed.append(tc.get("name", "?"))
    else:
        p += 1
print(p, f, s, " ".join(failed))
PY
)"
  if [ -z "$counts" ]; then
    record "$name" "FAILED: ctest gave no results (exit $rc; counted as 1 failure)"
    FAILED=$((FAILED + 1))
    return
  fi
  local p f s names
  read -r p f s names <<< "$counts"
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
  if [ "$f" -eq 0 ] && [ "$rc" -ne 0 ]; then
    # ctest failed without a failed test (a timeout it did not report, a crash)
    FAILED=$((FAILED + 1))
    record "$name" "FAILED: ctest exited $rc with $p passed (counted as 1 failure)"
  elif [ "$f" -eq 0 ]; then
    record "$name" "ok: $p passed, $s skipped"
  else
    record "$name" "FAILED: $f failed ($names), $p passed, $s skipped"
  fi
}

if build "build (Release, -Werror)" build -DCMAKE_BUILD_TYPE=Release -DKUSARI_WERROR=ON; then
  tests "tests (Release)" build --
else
  record "tests (Release)" "not run: its build failed"
fi

# Left out of the sanitizer stage (they run in Release): the platform scripts
# run a second time with their workspace on PostgreSQL (the same CLI code;
# store_pg.c itself runs under the sanitizers in platform_store_pg,
# platform_pg_server and platform_pg_outage), and the Slurm tests that wait
# on slurmctld's clock (time limits, power states, cancel of pending jobs)
# more than they run kusari code; keeps CI under 30 minutes.
asan_exclude='^platform_pg_(runs|models|failures|concurrency|safety|workspace|filter|service|sweep_control|server_metrics|metric_values|delete|distributed)$|^platform_slurm_(power|timeout|run_timeout|cancel|jobs)$'

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  if build "build (ASan + UBSan, -Werror)" build-asan -DCMAKE_BUILD_TYPE=Debug -DKUSARI_WERROR=ON -DKUSARI_SANITIZE=ON; then
    tests "unit and platform tests under ASan + UBSan" build-asan \
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 -- -L 'unit|platform' \
      -E "$asan_exclude"
  else
    record "unit and platform tests under ASan + UBSan" "not run: its build failed"
  fi
else
  record "ASan + UBSan" "skipped (SKIP_ASAN=1)"
fi

if [ "${SKIP_TSAN:-0}" != 1 ]; then
  tsan_tests="backend_threads backend_first_use kernels_threads parallel optimizers trainer"
  # shellcheck disable=SC2046
  if build "build (ThreadSanitizer, -Werror)" build-tsan \
       -DCMAKE_BUILD_TYPE=Debug -DKUSARI_WERROR=ON -DKUSARI_TSAN=ON -- $(printf 'test_%s ' $tsan_tests); then
    tests "threaded unit tests under ThreadSanitizer" build-tsan TSAN_OPTIONS=halt_on_error=1 -- \
      -R "^lib_($(echo $tsan_tests | tr ' ' '|'))\$"
  else
    record "threaded unit tests under ThreadSanitizer" "not run: its build failed"
  fi
else
  record "ThreadSanitizer" "skipped (SKIP_TSAN=1)"
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  fuzz_s=${FUZZ_SECONDS:-15}
  fuzz_name="fuzz targets, ${fuzz_s} s each (libFuzzer + ASan + UBSan)"
  if ! command -v clang >/dev/null 2>&1; then
    record "build (fuzz targets, clang)" "FAILED: clang is not installed (apt-get install clang; counted as 1 failure)"
    FAILED=$((FAILED + 1))
    record "$fuzz_name" "not run: no clang"
  elif build "build (fuzz targets, clang)" build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
         -DKUSARI_FUZZ=ON -DKUSARI_TESTS=OFF -DKUSARI_EXAMPLES=OFF -DKUSARI_BENCH=OFF -DKUSARI_PLATFORM=OFF -- fuzz_targets; then
    echo "== $fuzz_name =="
    fp=0 ff=0 fnames=""
    for t in $(scripts/fuzz.sh --list); do
      FUZZ_BUILD_DIR=build-fuzz scripts/fuzz.sh --no-build "$fuzz_s" "$t" >"$RESULTS_DIR/fuzz.out" 2>&1
      frc=$?
      grep -v ' passed, .* failed$' "$RESULTS_DIR/fuzz.out"
      if [ "$frc" -eq 0 ]; then fp=$((fp + 1)); else ff=$((ff + 1)) fnames="$fnames $t"; fi
    done
    PASSED=$((PASSED + fp)) FAILED=$((FAILED + ff))
    if [ "$ff" -eq 0 ]; then
      record "$fuzz_name" "ok: $fp passed"
    else
      record "$fuzz_name" "FAILED: $ff failed (${fnames# }), $fp passed; inputs in build-fuzz/artifacts/"
    fi
  else
    record "$fuzz_name" "not run: its build failed"
  fi
else
  record "fuzzing" "skipped (SKIP_FUZZ=1)"
fi

echo
echo "== summary =="
printf '%s\n' "${SUMMARY[@]}"
echo "skipped tests: $SKIPPED"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
