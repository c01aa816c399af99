#!/usr/bin/env bash
# platform_scripts: the set-up scripts (issue 11). --help of each prints its
# comment block and nothing of the script itself; setup.sh run by a user who
# is not root says what to do (with or without sudo) before doing anything;
# scripts/test.sh, run on a small CMake project with real cmake and ctest,
# runs every stage even when one fails, then prints each stage's result and
# the closing line "N passed, N failed", and exits non-zero.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"

# ---- --help ---------------------------------------------------------------------
for s in setup quickstart test install-deps; do
  out="$(bash "$REPO/scripts/$s.sh" --help 2>&1)"; rc=$?
  assert_eq 0 $rc "$s.sh --help exits 0"
  assert_not_contains "$out" "set -euo" "$s.sh --help prints no script line"
  assert_not_contains "$out" "#!/" "$s.sh --help prints no shebang"
  assert_eq 0 "$(printf '%s\n' "$out" | grep -c '^#')" "$s.sh --help strips the comment marks"
  assert_contains "$out" "scripts/$s.sh" "$s.sh --help shows how to call it"
done
assert_eq "The README's main job: train examples/mnist as a tracked run, the way the" \
  "$(bash "$REPO/scripts/quickstart.sh" --help | head -1)" "quickstart.sh --help starts with its description"
assert_eq "inside the run, libkusari installed where pkg-config finds it." \
  "$(bash "$REPO/scripts/quickstart.sh" --help | tail -1)" "quickstart.sh --help ends with its last comment line"
assert_contains "$(bash "$REPO/scripts/setup.sh" --help)" "Where sudo is not" "setup.sh --help says what to do without sudo"
expect_fail "unknown argument '--frob'" bash "$REPO/scripts/test.sh" --frob

# ---- setup.sh as a user who is not root ------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
else
  as_user() { "$@"; }
fi
if command -v sudo >/dev/null 2>&1; then want="hint: run it as: sudo PREFIX=/opt/kusari-nowhere scripts/setup.sh"
else want="hint: sudo is not installed: run it from a root shell"; fi
out="$(cd / && PREFIX=/opt/kusari-nowhere as_user bash "$REPO/scripts/setup.sh" 2>&1)"; rc=$?
assert_eq 1 $rc "setup.sh as a user who cannot write the prefix exits 1"
assert_contains "$out" "setup: this needs root to write to /opt/kusari-nowhere." "it says why it needs root"
assert_contains "$out" "$want" "and what to do"
assert_not_contains "$out" "== build ==" "before building anything"
test ! -e /opt/kusari-nowhere && ok "nothing created under the prefix" || fail "/opt/kusari-nowhere exists"

# ---- scripts/test.sh: every stage runs, then a summary ----------------------------
F="$T/fake"; mkdir -p "$F/scripts"
cp "$REPO/scripts/test.sh" "$F/scripts/test.sh"
# the threaded unit tests are the ones test.sh names for its TSan stage
tsan="$(sed -n 's/^ *tsan_tests="\(.*\)"$/\1/p' "$REPO/scripts/test.sh")"
nt=$(echo $tsan | wc -w)
[ "$nt" -ge 1 ] || die "cannot read tsan_tests from scripts/test.sh"
# the fuzzing stage: a fuzz.sh with one target that passes and one that
# crashes, and a clang on PATH (the stage only checks that it exists)
cat > "$F/scripts/fuzz.sh" <<'FUZZ'
#!/bin/sh
[ "$1" = --list ] && { echo fuzz_ok; echo fuzz_crash; exit 0; }
for a; do last=$a; done
echo "$last: fake"; [ "$last" = fuzz_ok ]
FUZZ
mkdir -p "$F/bin"; printf '#!/bin/sh\nexit 0\n' > "$F/bin/clang"; chmod +x "$F/bin/clang" "$F/scripts/fuzz.sh"
cat > "$F/CMakeLists.txt" <<CMAKE
# kusari's options and test names, no compiler: $nt threaded unit tests, one
# platform test that passes, one skipped (77), one that fails in the Release
# stage only; the ASan stage's configuration fails when asan-breaks exists.
cmake_minimum_required(VERSION 3.20)
project(fake NONE)
option(KUSARI_WERROR "" OFF)
option(KUSARI_SANITIZE "" OFF)
option(KUSARI_TSAN "" OFF)
if(KUSARI_SANITIZE AND EXISTS \${CMAKE_SOURCE_DIR}/asan-breaks)
  message(FATAL_ERROR "this stage's build is broken on purpose")
endif()
enable_testing()
foreach(t $tsan)
  add_custom_target(test_\${t})
  add_test(NAME lib_\${t} COMMAND true)
  set_tests_properties(lib_\${t} PROPERTIES LABELS unit)
endforeach()
add_test(NAME platform_ok COMMAND true)
add_test(NAME platform_skip COMMAND sh -c "exit 77")
set_tests_properties(platform_ok platform_skip PROPERTIES LABELS platform SKIP_RETURN_CODE 77)
option(KUSARI_FUZZ "" OFF)
if(KUSARI_FUZZ)
  add_custom_target(fuzz_targets)
endif()
if(NOT KUSARI_SANITIZE AND NOT KUSARI_TSAN)
  add_test(NAME platform_fails_in_release COMMAND false)
  set_tests_properties(platform_fails_in_release PROPERTIES LABELS platform)
endif()
CMAKE
# a failing Release test, a failing ASan build: the TSan stage still runs
touch "$F/asan-breaks"
(cd "$F" && PATH="$F/bin:$PATH" JOBS=2 bash scripts/test.sh) > "$T/t1.out" 2>&1; rc=$?
assert_eq 1 $rc "test.sh exits 1 when a stage failed"
out="$(cat "$T/t1.out")"
assert_contains "$out" "== threaded unit tests under ThreadSanitizer ==" "the TSan stage ran after the failures"
assert_contains "$out" "FAILED: 1 failed (platform_fails_in_release), $((nt + 1)) passed, 1 skipped" "Release stage: the failed test named"
assert_contains "$out" "build (ASan + UBSan, -Werror)                    FAILED (counted as 1 failure)" "the ASan build's failure reported"
assert_contains "$out" "not run: its build failed" "its tests reported as not run"
assert_contains "$out" "threaded unit tests under ThreadSanitizer        ok: $nt passed, 0 skipped" "the TSan stage's result"
assert_eq "skipped tests: 1" "$(tail -2 "$T/t1.out" | head -1)" "skipped tests counted apart"
assert_contains "$out" "FAILED: 1 failed (fuzz_crash), 1 passed" "the fuzzing stage: each target counted"
# (nt + 1) + nt + 1 passed; 1 failed test + 1 failed build + 1 failed fuzz target
assert_eq "$((2 * nt + 2)) passed, 3 failed" "$(tail -1 "$T/t1.out")" "closing line counts every stage"
# everything passing but the Release test: the sanitizer stages run their tests
rm "$F/asan-breaks"
(cd "$F" && PATH="$F/bin:$PATH" JOBS=2 bash scripts/test.sh) > "$T/t2.out" 2>&1; rc=$?
assert_eq 1 $rc "still exits 1 for the one failed test"
assert_contains "$(cat "$T/t2.out")" "unit and platform tests under ASan + UBSan       ok: $((nt + 1)) passed, 1 skipped" "ASan stage ran its tests"
assert_eq "$((3 * nt + 3)) passed, 2 failed" "$(tail -1 "$T/t2.out")" "closing line: every stage's passed tests, 2 failed"
(cd "$F" && SKIP_ASAN=1 SKIP_TSAN=1 SKIP_FUZZ=1 CTEST_ARGS="-E fails_in_release" JOBS=2 bash scripts/test.sh) > "$T/t3.out" 2>&1; rc=$?
assert_eq 0 $rc "exits 0 when nothing failed"
assert_eq "$((nt + 1)) passed, 0 failed" "$(tail -1 "$T/t3.out")" "closing line with nothing failed"
finish
