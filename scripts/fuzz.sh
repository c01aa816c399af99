#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, -fsanitize=fuzzer,address,
# undefined; cmake -DKUSARI_FUZZ=ON in build-fuzz/) and runs each for SECONDS
# (default 60), starting from its seed corpus fuzz/corpus/<target>/. New
# inputs the fuzzer finds go to a scratch corpus, so the repository's seeds
# stay small; a crash, leak, timeout or out-of-memory input is written to
# build-fuzz/artifacts/<target>/ and the target counts as failed.
#
#   scripts/fuzz.sh                      # every target, 60 s each
#   scripts/fuzz.sh 600 fuzz_npz         # one target, 10 minutes
#   scripts/fuzz.sh --no-build 20        # reuse build-fuzz/ as it is
#   scripts/fuzz.sh --list               # the targets
#   FUZZ_BUILD_DIR=DIR JOBS=N scripts/fuzz.sh
#
# Reproduce a finding: build-fuzz/fuzz/<target> build-fuzz/artifacts/<target>/crash-...
# When it is fixed, keep the input as fuzz/corpus/<target>/regress-<what>.
# Prints one line per target and, last, "N passed, N failed"; exits 1 if any
# target failed. Needs clang (Debian: apt-get install clang).
set -uo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
cd "$(dirname "$0")/.." || exit 1
TARGETS_ALL=(fuzz_npz fuzz_idx fuzz_channel fuzz_model_json fuzz_sweep fuzz_score_body fuzz_env fuzz_filter)
BUILD=1 SECONDS_EACH=60 TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --list) printf '%s\n' "${TARGETS_ALL[@]}"; exit 0 ;;
    --no-build) BUILD=0 ;;
    [0-9]*) SECONDS_EACH="$1" ;;
    fuzz_*)
      if ! printf '%s\n' "${TARGETS_ALL[@]}" | grep -qx -- "$1"; then
        echo "fuzz.sh: no fuzz target '$1' (see --list)" >&2; exit 2
      fi
      TARGETS+=("$1") ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${TARGETS_ALL[@]}")
DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
if [ "$BUILD" = 1 ]; then
  if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz.sh: clang is not installed (libFuzzer comes with it)" >&2
    echo "  hint: apt-get install clang (or scripts/install-deps.sh)" >&2
    exit 1
  fi
  echo "== building the fuzz targets in $DIR =="
  cmake -S . -B "$DIR" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DKUSARI_FUZZ=ON \
        -DKUSARI_TESTS=OFF -DKUSARI_EXAMPLES=OFF -DKUSARI_BENCH=OFF -DKUSARI_PLATFORM=OFF >/dev/null &&
    cmake --build "$DIR" -j"$JOBS" --target fuzz_targets || { echo "fuzz.sh: the build failed" >&2; exit 1; }
fi
SCRATCH="$(mktemp -d /tmp/kusari-fuzz-XXXXXX)"
trap 'rm -rf "$SCRATCH"' EXIT
# leaks count; a parser given a huge size must fail cleanly, not abort
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0 failed=0
for t in "${TARGETS[@]}"; do
  bin="$DIR/fuzz/$t"
  if [ ! -x "$bin" ]; then
    echo "$t: FAILED (no program $bin: build first, without --no-build)"
    failed=$((failed + 1)); continue
  fi
  art="$DIR/artifacts/$t"
  mkdir -p "$SCRATCH/$t" "$art"
  log="$SCRATCH/$t.log"
  # -max_len 16 KiB: big enough for every seed; -timeout: one input may take 10 s
  "$bin" "$SCRATCH/$t" "fuzz/corpus/$t" -max_total_time="$SECONDS_EACH" -max_len=16384 -timeout=10 \
         -rss_limit_mb=2048 -artifact_prefix="$art/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  if [ $rc -eq 0 ]; then
    echo "$t: ok (${runs:-?} inputs in ${SECONDS_EACH} s)"
    passed=$((passed + 1))
    rmdir "$art" 2>/dev/null
  else
    echo "$t: FAILED (exit $rc after ${runs:-?} inputs); the fuzzer's report:"
    grep -E "ERROR|SUMMARY|runtime error|invariant failed|Test unit written|out-of-memory|timeout" "$log" | head -20 | sed 's/^/    /'
    cp "$log" "$art/log.txt"
    echo "    (inputs and the whole log in $art/)"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
