#!/usr/bin/env bash
# Builds kusari with warnings as errors and runs the whole test suite, then
# builds the unit tests again with AddressSanitizer + UBSan and runs them.
#   scripts/test.sh            # everything
#   SKIP_ASAN=1 scripts/test.sh
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
