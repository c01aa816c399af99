#!/usr/bin/env bash
# platform_install: kusari installed under a prefix nothing knows about (a
# temp `cmake --install --prefix`, no ldconfig, no LD_LIBRARY_PATH) works:
# the installed kusari runs, and a tracked run whose entry is a C program
# built by its environment's `make` through the installed kusari.pc starts,
# logs a metric through the shared libkusari and completes (issue 11: such
# runs failed with "libkusari.so.0: cannot open shared object file").
. "$(dirname "$0")/lib.sh"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
command -v cc >/dev/null && command -v make >/dev/null && command -v pkg-config >/dev/null ||
  { echo "skip: no cc, make or pkg-config"; exit 77; }
P="$T/opt/kusari"
cmake --install "$BUILD" --prefix "$P" >/dev/null || die "cmake --install failed"
unset LD_LIBRARY_PATH
export PATH="$P/bin:$PATH" PKG_CONFIG_PATH="$P/lib/pkgconfig"
# in a sanitizer build the installed library is instrumented: so is the program
[ -n "${KUSARI_TEST_CFLAGS:-}" ] && export CFLAGS="-O1 $KUSARI_TEST_CFLAGS"
test -f "$P/lib/libkusari.so.0" && ok "libkusari.so.0 installed under the prefix" || fail "no $P/lib/libkusari.so.0"
assert_contains "$("$P/bin/kusari" --version)" "kusari 0.1.0" "the installed kusari runs"
assert_contains "$(pkg-config --libs kusari)" "-Wl,-rpath," "kusari.pc gives programs a run path"

S="$T/src"; mkdir -p "$S"
cat > "$S/train.c" <<'C'
#include <kusari/kusari.h>
#include <stdio.h>
int main(void) {
  ks_run *r = ks_run_current();
  if (ks_run_log(r, "Accuracy", 0.5) != KS_OK) return 1;
  printf("logged from %s\n", ks_run_is_offline(r) ? "outside a run" : ks_run_id(r));
  return 0;
}
C
printf 'train: train.c\n\t$(CC) $(CFLAGS) -o $@ $< $(shell pkg-config --cflags --libs kusari)\n' > "$S/Makefile"
echo '{"build": "make"}' > "$T/env.json"
run_ok "$P/bin/kusari" compute create cpu >/dev/null
id="$("$P/bin/kusari" run submit --experiment install --source "$S" --entry train --env "$T/env.json" | tail -1)"
out="$("$P/bin/kusari" run wait "$id" --show-output 2>&1)"; rc=$?
assert_eq 0 $rc "the run completes"
assert_not_contains "$out" "cannot open shared object file" "the entry finds libkusari.so.0"
assert_contains "$out" "logged from $id" "the entry ran inside the run"
assert_eq "0.5" "$(jget "$("$P/bin/kusari" run show "$id" --json)" 'j["metrics"]["Accuracy"]')" "its metric reached the store"
# the same flags outside kusari: the program runs by itself too
(cd "$S" && make -s train >/dev/null 2>&1 && ./train) > "$T/direct.out" 2>&1
assert_eq "logged from outside a run" "$(cat "$T/direct.out")" "the program built by the Makefile runs outside kusari without LD_LIBRARY_PATH"
finish
