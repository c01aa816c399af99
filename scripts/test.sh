#!/usr/bin/env bash
# Builds kusari with warnings as errors and runs the whole test suite, then
# builds the unit tests again with AddressSanitizer + UBSan and runs them,
# and the unit tests of threaded code (the thread pool, threaded kernels,
# data-parallel replicas, the optimizer's update, the Trainer) with
# ThreadSanitizer.
#   scripts/test.sh            # everything
#   SKIP_ASAN=1 SKIP_TSAN=1 scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

echo "== build (Release, -Werror) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DKUSARI_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
echo "== tests =="
(cd build && ctest --output-on-failure -j"$JOBS")

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  echo "== build (ASan + UBSan, -Werror) =="
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKUSARI_WERROR=ON -DKUSARI_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$JOBS"
  echo "== unit and platform tests under ASan + UBSan =="
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$JOBS" -L 'unit|platform')
fi

if [ "${SKIP_TSAN:-0}" != 1 ]; then
  echo "== build (ThreadSanitizer, -Werror): the unit tests of threaded code =="
  tsan_tests="backend_threads kernels_threads parallel optimizers trainer"
  cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DKUSARI_WERROR=ON -DKUSARI_TSAN=ON >/dev/null
  cmake --build build-tsan -j"$JOBS" --target $(printf 'test_%s ' $tsan_tests)
  echo "== threaded unit tests under ThreadSanitizer =="
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 \
     ctest --output-on-failure -j"$JOBS" -R "^lib_($(echo $tsan_tests | tr ' ' '|'))\$")
fi
