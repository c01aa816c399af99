#!/usr/bin/env bash
# platform_discarded_files: a run keeps ./outputs and ./logs of its working
# directory; files it wrote anywhere else are discarded with the directory,
# and its log says so (a few by name, the count of the rest). Files of the
# snapshot it did not touch are not named; one it changed is.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 1 >/dev/null
mkdir -p "$T/src/data" "$T/src/result"
echo 1 > "$T/src/data/input.txt"
echo keep > "$T/src/data/untouched.txt"
echo old > "$T/src/result/previous.txt"
cat > "$T/src/train.sh" <<'SH'
mkdir -p result deep/er outputs logs
echo w > result/model.npz            # like train_mnist_cnn's default result/
echo l > result/log
echo t > tmp.txt
echo d > deep/er/file.txt
for i in 1 2 3 4 5 6; do echo $i > "scratch$i.dat"; done
echo changed >> data/input.txt       # a snapshot file changed
ln -s tmp.txt link-to-tmp
echo kept > outputs/model.npz
echo mine > logs/train.log
SH
id="$(submit --experiment d --source "$T/src" --entry train.sh)"
run_ok $K run wait "$id" >/dev/null
log="$(run_ok $K run logs "$id")"
assert_contains "$log" "kusari: the entry wrote 12 files outside outputs/ and logs/, which the run does not keep: data/input.txt, deep/er/file.txt, link-to-tmp, result/log, result/model.npz and 7 more." \
  "the log counts the 12 discarded files and names the first 5 (new, changed, a symbolic link)"
assert_contains "$log" 'write what you want to keep under $KUSARI_OUTPUT_DIR (./outputs) or ./logs' "and says where to write instead"
assert_not_contains "$log" "untouched.txt" "an unchanged snapshot file is not named"
assert_not_contains "$log" "previous.txt" "nor one the entry did not rewrite"
files="$(run_ok $K run files "$id" | xargs)"
assert_eq "logs/std_log.txt logs/train.log outputs/model.npz" "$files" "the run keeps outputs/ and ./logs (beside the platform's log)"
assert_contains "$(cat "$WS/runs/$id/supervisor.log")" "wrote 12 file(s) outside outputs/ and logs/" "the supervisor's log notes it too"

# --- a run that keeps everything it wrote says nothing ---------------------------------------
mkdir -p "$T/clean"
printf 'mkdir -p outputs logs\necho a > outputs/a\necho b > logs/b\n' > "$T/clean/train.sh"
id="$(submit --experiment d --source "$T/clean" --entry train.sh)"
run_ok $K run wait "$id" >/dev/null
assert_not_contains "$(run_ok $K run logs "$id")" "outside outputs/" "no note when nothing was written elsewhere"

# --- a failing entry is told too --------------------------------------------------------------
printf 'echo x > lost.txt\nexit 3\n' > "$T/clean/fail.sh"
id="$(submit --experiment d --source "$T/clean" --entry fail.sh)"
$K run wait "$id" >/dev/null 2>&1
assert_contains "$(run_ok $K run logs "$id")" "wrote 1 file outside outputs/ and logs/, which the run does not keep: lost.txt." "a failed run's log says it too"
finish
