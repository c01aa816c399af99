#!/usr/bin/env bash
# platform_runs: the run lifecycle end to end with shell, Python and C entries:
# submit, wait --show-output, show, list, logs, files, download, metrics,
# tags, environment files (packages, cached build), ignore file, failures.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null

# --- a shell entry logging through `kusari log` --------------------------------
mkdir -p "$T/sh"
cat > "$T/sh/train.sh" <<'SH'
echo "args: $*"
echo "run $KUSARI_RUN_ID experiment $KUSARI_EXPERIMENT"
test -n "$KUSARI_OUTPUT_DIR" && test -d "$KUSARI_OUTPUT_DIR" || { echo "no output dir"; exit 9; }
for i in 1 2 3; do kusari log metric loss "0.$i"; done
kusari log metric Accuracy 0.9 --step 10
kusari log metric weird nan && kusari log metric weird inf && kusari log metric weird -2.5
kusari log tag phase done
mkdir -p outputs/sub && echo weights > outputs/model.npz && echo x > outputs/sub/extra.txt
echo "to stderr" >&2
SH
echo "big.bin" > "$T/sh/.kusariignore"
head -c 100000 /dev/zero > "$T/sh/big.bin"
out="$($K run submit --experiment shell-exp --source "$T/sh" --entry train.sh --tag owner=me -- --epochs 3 'two words')"
id="$(echo "$out" | tail -1)"
assert_eq "shell-exp_1" "$id" "submit prints the run id last"
assert_contains "$out" "2 files" "snapshot honours .kusariignore (big.bin left out)"
out="$($K run wait "$id" --show-output)"; rc=$?
assert_eq 0 $rc "run wait exits 0 for a completed run"
assert_contains "$out" "args: --epochs 3 two words" "arguments passed through"
assert_contains "$out" "run shell-exp_1 experiment shell-exp" "run protocol variables set"
assert_contains "$out" "to stderr" "stderr streamed"
assert_contains "$out" "Run shell-exp_1: Completed" "final status printed"
j="$(run_ok $K run show "$id" --json)"
assert_eq Completed "$(jget "$j" 'j["status"]')" "status Completed"
assert_eq 0 "$(jget "$j" 'j["exit_code"]')" "exit code 0"
assert_eq "['--epochs', '3', 'two words']" "$(jget "$j" 'j["arguments"]')" "arguments recorded"
assert_eq "me done" "$(jget "$j" 'j["tags"]["owner"] + " " + j["tags"]["phase"]')" "tags from submit and from kusari log tag"
assert_eq "0.3 0.9" "$(jget "$j" '"%g %g" % (j["metrics"]["loss"], j["metrics"]["Accuracy"])')" "last metrics in show"
assert_eq 64 "$(jget "$j" 'len(j["snapshot"])')" "snapshot hash recorded"
assert_eq none "$(jget "$j" 'j["build_cache"]')" "no build"
assert_contains "$(run_ok $K run show "$id")" "duration:" "run show text has a duration"
csv="$(run_ok $K run metrics "$id" --csv)"
assert_eq "name,step,timestamp,value" "$(echo "$csv" | head -1)" "csv header"
assert_eq "loss,0 loss,1 loss,2 Accuracy,10" "$(echo "$csv" | grep -v weird | tail -n +2 | cut -d, -f1,2 | sort -t, -k1,1r -k2n | tr '\n' ' ' | sed 's/ $//')" "metrics in order with steps"
assert_eq "nan inf -2.5" "$(echo "$csv" | grep weird | cut -d, -f4 | xargs)" "NaN and infinities are stored"
mj="$(run_ok $K run metrics "$id" --json --name loss)"
assert_eq "[0.1, 0.2, 0.3]" "$(jget "$mj" '[m["value"] for m in j["loss"]]')" "metrics --json --name"
expect_fail "has no metric named 'nope'" $K run metrics "$id" --name nope
files="$(run_ok $K run files "$id")"
assert_eq "logs/std_log.txt outputs/model.npz outputs/sub/extra.txt" "$(echo $files)" "run files"
run_ok $K run download "$id" outputs/model.npz --to "$T/dl" >/dev/null
assert_eq weights "$(cat "$T/dl/outputs/model.npz")" "download one file"
run_ok $K run download "$id" outputs --to "$T/dl2" >/dev/null
assert_eq x "$(cat "$T/dl2/outputs/sub/extra.txt")" "download a folder prefix"
expect_fail "has no file or folder 'outputs/nope'" $K run download "$id" outputs/nope
assert_contains "$(run_ok $K run logs "$id")" "args: --epochs 3" "run logs"
assert_contains "$(run_ok $K run logs "$id" -f)" "to stderr" "run logs -f on an ended run"
rm -rf "$WS/runs/$id"
assert_contains "$(run_ok $K run logs "$id")" "args: --epochs 3" "run logs from the store when runs/ is gone"
# blobs are content addressed: the file's sha256 names its blob
sha="$(sha256sum "$T/dl/outputs/model.npz" | cut -d' ' -f1)"
test -f "$WS/blobs/${sha:0:2}/${sha:2}" && ok "blob stored under its sha256" || fail "blob $sha missing"

# --- a Python entry ------------------------------------------------------------
mkdir -p "$T/py"
cat > "$T/py/train.py" <<'PY'
import os, subprocess, sys
for epoch in range(4):
    subprocess.run(["kusari", "log", "metric", "acc", str(0.5 + epoch / 10)], check=True)
print("python done", sys.argv[1:])
PY
id2="$(submit --experiment py-exp --source "$T/py" --entry train.py -- --lr 0.1)"
out="$($K run wait "$id2" --show-output)"
assert_contains "$out" "python done ['--lr', '0.1']" "python entry runs"
assert_eq "0.5 0.6 0.7 0.8" "$($K run metrics "$id2" --csv | tail -n +2 | cut -d, -f4 | xargs printf '%g ' | sed 's/ $//')" "python entry metrics"

# --- a C entry using libkusari's client -----------------------------------------
if [ -n "$ENTRY_BIN" ]; then
  mkdir -p "$T/c" && cp "$ENTRY_BIN" "$T/c/entry"
  echo "uploaded content" > "$T/up.txt"
  id3="$(submit --experiment c-exp --source "$T/c" --entry entry -- --n 100000 --upload "$T/up.txt")"
  out="$($K run wait "$id3" --show-output)"
  assert_contains "$out" "offline=0" "C entry is connected"
  assert_eq 100000 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id3' AND name='loss'")" "all 100,000 ks_run_log values stored"
  assert_eq "99999 99999" "$(sql "SELECT max(step), max(value) FROM metrics WHERE run_id='$id3' AND name='loss'" | tr '|' ' ' | sed 's/\.0//g')" "steps and values in order"
  assert_eq "7 0.5" "$(sql "SELECT step, value FROM metrics WHERE run_id='$id3' AND name='Accuracy'" | tr '|' ' ')" "explicit step"
  assert_eq "0 1 2" "$(sql "SELECT step FROM metrics WHERE run_id='$id3' AND name='curve' ORDER BY step" | xargs)" "log_list"
  echo "$out" | grep "logged 100000"
  run_ok $K run download "$id3" plots --to "$T/dl3" >/dev/null
  assert_eq "uploaded content" "$(cat "$T/dl3/plots/uploaded.txt")" "ks_run_upload_file stores the file in the run's history"
fi

# --- a C program compiled by the environment's build, against libkusari ----------
if [ -n "${KUSARI_STATIC_LIB:-}" ] && command -v cc >/dev/null; then
  mkdir -p "$T/csrc"
  cat > "$T/csrc/train.c" <<'C'
#include <kusari/run.h>
#include <stdio.h>
int main(int argc, char **argv) {
  ks_run *run = ks_run_current();
  for (int epoch = 1; epoch <= 3; epoch++) {
    printf("epoch %d\n", epoch);
    ks_run_log(run, "Accuracy", 0.8 + epoch / 100.0);
  }
  ks_run_log(run, "Epochs", 3);
  ks_run_tag(run, "lang", "c");
  FILE *f = fopen("outputs/model.npz", "w");
  if (!f) return 1;
  fputs("npz", f);
  fclose(f);
  return argc > 1;
}
C
  printf 'train: train.c\n\tcc $(KUSARI_TEST_CFLAGS) -o train train.c -I$(KUSARI_INCLUDE_DIR) $(KUSARI_STATIC_LIB) $(shell pkg-config --libs openblas libzip zlib) -lm\n' > "$T/csrc/Makefile"
  printf '{"debian_packages": ["make", "pkg-config"], "build": "make"}\n' > "$T/csrc/env.json"
  idc="$(submit --experiment cbuild --source "$T/csrc" --entry train --env "$T/csrc/env.json")"
  out="$($K run wait "$idc" --show-output 2>&1)"; rc=$?
  assert_eq 0 $rc "C program built in Preparing and run ($(echo "$out" | tail -1))"
  assert_contains "$out" "epoch 3" "its output streamed"
  j="$(run_ok $K run show "$idc" --json)"
  assert_eq "0.83 3 c miss" "$(jget "$j" '"%g %g %s %s" % (j["metrics"]["Accuracy"], j["metrics"]["Epochs"], j["tags"]["lang"], j["build_cache"])')" "its metrics, tag and build"
  assert_contains "$(run_ok $K run files "$idc")" "outputs/model.npz" "its model file stored"
fi

# --- experiments ---
e="$(run_ok $K experiment list --json)"
assert_eq "1 1 0" "$(jget "$e" '" ".join(str(x[k]) for x in j if x["name"] == "shell-exp" for k in ("runs", "completed", "failed"))')" "experiment list counts runs"
assert_contains "$(run_ok $K experiment list)" "py-exp" "experiment list text"

# --- list filters ---------------------------------------------------------------
l="$(run_ok $K run list --json)"
assert_eq "$(sql 'SELECT count(*) FROM runs')" "$(jget "$l" 'len(j)')" "run list"
assert_eq "$id2" "$(jget "$(run_ok $K run list --experiment py-exp --json)" 'j[0]["id"]')" "run list --experiment"
assert_eq 0 "$(jget "$(run_ok $K run list --status Failed --json)" 'len(j)')" "run list --status"
assert_eq 0 "$(jget "$(run_ok $K run list --parent "$id" --json)" 'len(j)')" "run list --parent (no children)"
assert_eq None "$(jget "$(run_ok $K run show "$id" --json)" 'j["parent"]')" "run show has a parent field"
assert_contains "$(run_ok $K run list)" "shell-exp_1" "run list text"

# --- a failing entry -------------------------------------------------------------
mkdir -p "$T/bad"; printf 'echo about to fail\nkusari log metric before 1\nexit 3\n' > "$T/bad/fail.sh"
idf="$(submit --experiment bad --source "$T/bad" --entry fail.sh)"
err="$($K run wait "$idf" 2>&1 >/dev/null)"; rc=$?
assert_eq 1 $rc "run wait exits 1 for a failed run"
assert_contains "$err" "exited with code 3" "wait says why"
j="$(run_ok $K run show "$idf" --json)"
assert_eq "Failed 3" "$(jget "$j" 'j["status"] + " " + str(j["exit_code"])')" "failed run recorded with exit code"
assert_eq 1 "$(jget "$j" 'j["metrics"]["before"]')" "metrics of a failed run kept"

# --- environment: missing Debian package, build cached by hash -------------------
echo '{"debian_packages": ["kusari-no-such-package"]}' > "$T/env-missing.json"
idm="$(submit --experiment env --source "$T/bad" --entry fail.sh --env "$T/env-missing.json")"
$K run wait "$idm" >/dev/null 2>&1
j="$(run_ok $K run show "$idm" --json)"
assert_eq Failed "$(jget "$j" 'j["status"]')" "missing package fails the run"
assert_contains "$(jget "$j" 'j["error"]')" "kusari-no-such-package" "error names the missing package"
mkdir -p "$T/b"
printf 'all:\n\techo built > built.txt\n\techo "#!/bin/sh" > prog && echo "cat built.txt; echo built-run" >> prog && chmod +x prog\n' > "$T/b/Makefile"
printf '{"name": "b", "debian_packages": ["bash"], "build": "make && echo BUILD-RAN", "variables": {"MYVAR": "42"}}\n' > "$T/b/kusari-env.json"
idb1="$(submit --experiment build --source "$T/b" --entry prog --env "$T/b/kusari-env.json")"
out1="$($K run wait "$idb1" --show-output)"
assert_eq 1 "$(echo "$out1" | grep -cx BUILD-RAN)" "build command ran"
assert_contains "$out1" "built-run" "built entry ran"
idb2="$(submit --experiment build --source "$T/b" --entry prog --env "$T/b/kusari-env.json")"
out2="$($K run wait "$idb2" --show-output)"
assert_eq 0 "$(echo "$out2" | grep -cx BUILD-RAN)" "second submit of the same code does not build"
assert_eq "miss hit" "$(jget "$(run_ok $K run show "$idb1" --json)" 'j["build_cache"]') $(jget "$(run_ok $K run show "$idb2" --json)" 'j["build_cache"]')" "run show says whether the build cache was hit"
assert_contains "$(run_ok $K run show "$idb2")" "build cache:  hit" "run show text shows the cache hit"
assert_contains "$(run_ok $K run logs "$idb2" --build)" "build cache hit" "build log says cache hit"
echo '{"build": "false"}' > "$T/env-fail.json"
idbf="$(submit --experiment build --source "$T/b" --entry prog --env "$T/env-fail.json")"
$K run wait "$idbf" >/dev/null 2>&1; assert_eq 1 $? "failed build fails the run"
assert_contains "$(jget "$(run_ok $K run show "$idbf" --json)" 'j["error"]')" "build command 'false' failed" "error names the failed build"

# --- resubmitting a snapshot: same code, no new snapshot, same build ------------
snap="$(jget "$(run_ok $K run show "$idb1" --json)" 'j["snapshot"]')"
out="$(run_ok $K run submit --experiment build --snapshot "$snap" --entry prog --env "$T/b/kusari-env.json")"
assert_contains "$out" "snapshot ${snap:0:12}: 2 files" "submit --snapshot reuses a snapshot"
idr="$(echo "$out" | tail -1)"
run_ok $K run wait "$idr" >/dev/null
assert_eq "hit snapshot:$snap" "$(jget "$(run_ok $K run show "$idr" --json)" 'j["build_cache"] + " " + j["source"]')" "resubmitted snapshot hits the build cache"
expect_fail "is not a snapshot in this workspace" $K run submit --experiment build --snapshot 0123 --entry prog
expect_fail "not both" $K run submit --experiment build --snapshot "$snap" --source "$T/b" --entry prog

# --- a workspace inside the source directory is not snapshotted --------------------
mkdir -p "$T/inner" && echo 'echo inner' > "$T/inner/t.sh"
run_ok $K workspace create "$T/inner/ws" >/dev/null
run_ok $K --workspace "$T/inner/ws" compute create cpu >/dev/null
out="$(run_ok $K --workspace "$T/inner/ws" run submit --experiment in --source "$T/inner" --entry t.sh)"
assert_contains "$out" "1 files" "the workspace inside the source is left out of the snapshot"
run_ok $K --workspace "$T/inner/ws" run wait "$(echo "$out" | tail -1)" >/dev/null

# --- bad submissions: nothing recorded -------------------------------------------
before="$(sql 'SELECT count(*) FROM runs')"
expect_fail "missing --experiment" $K run submit --source "$T/sh" --entry train.sh
expect_fail "missing --entry" $K run submit --experiment x --source "$T/sh"
expect_fail "is not a file in the source directory" $K run submit --experiment x --source "$T/sh" --entry nope.sh
expect_fail "does not exist or is not a directory" $K run submit --experiment x --source "$T/nodir" --entry a.sh --env "$T/b/kusari-env.json"
expect_fail "no compute target named 'gpu'" $K run submit --experiment x --source "$T/sh" --entry train.sh --compute gpu
expect_fail "cannot read environment file" $K run submit --experiment x --source "$T/sh" --entry train.sh --env "$T/none.json"
echo '{"build": 3}' > "$T/env-bad.json"
expect_fail "field 'build' has the wrong type" $K run submit --experiment x --source "$T/sh" --entry train.sh --env "$T/env-bad.json"
echo '{"packages": []}' > "$T/env-bad2.json"
expect_fail "unknown field 'packages'" $K run submit --experiment x --source "$T/sh" --entry train.sh --env "$T/env-bad2.json"
echo 'not json' > "$T/env-bad3.json"
expect_fail "is not a JSON object" $K run submit --experiment x --source "$T/sh" --entry train.sh --env "$T/env-bad3.json"
expect_fail "--tag 'novalue' must look like key=value" $K run submit --experiment x --source "$T/sh" --entry train.sh --tag novalue
# size limit
mkdir -p "$T/huge"; head -c 2100000 /dev/zero > "$T/huge/data.bin"; echo 'echo hi' > "$T/huge/t.sh"
expect_fail "over the snapshot size limit of 1.0 MB" $K run submit --experiment x --source "$T/huge" --entry t.sh --snapshot-limit-mb 1
assert_eq "$before" "$(sql 'SELECT count(*) FROM runs')" "failed submissions record nothing"
expect_fail "no run with id 'nope_1'" $K run show nope_1
expect_fail "no run with id 'nope_1'" $K run wait nope_1
expect_fail "no run with id 'nope_1'" $K run files nope_1
expect_fail "no run with id 'nope_1'" $K run logs nope_1
expect_fail "no run with id 'nope_1'" $K run metrics nope_1
expect_fail "no run with id 'nope_1'" $K run cancel nope_1
expect_fail "already ended (Completed)" $K run cancel "$id"
finish
