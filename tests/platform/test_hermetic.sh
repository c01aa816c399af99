#!/usr/bin/env bash
# platform_hermetic: the platform tests do not depend on the caller's
# environment (issue 11: platform_cli failed whenever XDG_DATA_HOME was set).
# Runs test_cli.sh with junk in every variable kusari reads; lib.sh must set
# or unset each of them.
. "$(dirname "$0")/lib.sh"
mkdir -p "$T/junk"
out="$(cd "$T/junk" && env XDG_DATA_HOME="$T/junk/xdg" KUSARI_WORKSPACE="$T/junk/not-a-workspace" \
  KUSARI_RUN_ID=junk_1 KUSARI_METRICS_CHANNEL="$T/junk/channel" KUSARI_UPLOAD_DIR="$T/junk/up" \
  KUSARI_EXPERIMENT=junk KUSARI_TRACKING_URI=http://junk:1 KUSARI_OUTPUT_DIR="$T/junk/out" \
  KUSARI_DATA="$T/junk/data" KUSARI_NUM_THREADS=junk OMP_NUM_THREADS=junk OPENBLAS_NUM_THREADS=junk \
  OPENBLAS_CORETYPE=Junk LD_LIBRARY_PATH="$T/junk/lib" PKG_CONFIG_PATH="$T/junk/pc" \
  bash "$(dirname "$0")/test_cli.sh" 2>&1)"; rc=$?
assert_eq 0 $rc "test_cli.sh passes with junk XDG_DATA_HOME, KUSARI_* and thread variables"
[ $rc -eq 0 ] && echo "$out" | tail -1 || echo "$out" | grep -E "FAIL|error" | head -20
test ! -e "$T/junk/xdg" && ok "nothing was written under the caller's XDG_DATA_HOME" || fail "$T/junk/xdg was written"
finish
