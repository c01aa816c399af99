#!/usr/bin/env bash
# platform_hardening (issues 18, 19): small limits a hostile or broken entry
# program meets: metric steps out of range, output files that are links or
# have odd names, working folders deeper than PATH_MAX, processes an entry
# leaves behind.
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
MAXSTEP=9007199254740991   # 2^53 - 1 (docs/PLATFORM.md)

# --- steps: never past 2^53 - 1, never wrapping -------------------------------
mkdir -p "$T/steps"
cat > "$T/steps/job.sh" <<SH
kusari log metric s 1 --step 9223372036854775807 2>step_err.txt; echo "rc=\$?" >> step_err.txt
kusari log metric s 1 --step $((MAXSTEP + 1)) 2>>step_err.txt; echo "rc=\$?" >> step_err.txt
kusari log metric s 1 --step $MAXSTEP
kusari log metric s 2
kusari log metric s 3
cp step_err.txt outputs/
SH
id="$(submit --experiment hard --source "$T/steps" --entry job.sh --compute cpu)"
run_ok $K run wait "$id" >/dev/null
$K run download "$id" outputs/step_err.txt --to "$T/dl" >/dev/null 2>&1; cp "$T/dl/outputs/step_err.txt" "$T/step_err.txt" 2>/dev/null; err="$(cat "$T/step_err.txt" 2>/dev/null)"
assert_contains "$err" "kusari: error: --step must be a non-negative integer of at most $MAXSTEP, got '9223372036854775807'" "log metric --step 2^63-1: clear error"
assert_contains "$err" "got '$((MAXSTEP + 1))'" "log metric --step 2^53: clear error"
assert_eq "rc=2
rc=2" "$(grep '^rc=' "$T/step_err.txt")" "both out-of-range steps exit 2"
assert_eq "3 $MAXSTEP $MAXSTEP" "$(sql "SELECT count(*) || ' ' || min(step) || ' ' || max(step) FROM metrics WHERE run_id='$id' AND name='s'")" \
  "implicit steps after the largest stay at it (no wrap to negative)"
mkdir -p "$T/cstep" && cp "$ENTRY_BIN" "$T/cstep/entry"
id="$(submit --experiment hard --source "$T/cstep" --entry entry --compute cpu -- --n 0 --bigstep 1)"
out="$($K run wait "$id" --show-output 2>&1)"
assert_contains "$out" "steps out of range refused" "ks_run_log_step refuses steps past KS_RUN_STEP_MAX"
assert_eq "3 $MAXSTEP $MAXSTEP" "$(sql "SELECT count(*) || ' ' || min(step) || ' ' || max(step) FROM metrics WHERE run_id='$id' AND name='big'")" \
  "run client: implicit steps after the largest stay at it"

# --- output collection: links, odd names, trees deeper than PATH_MAX -----------
mkdir -p "$T/outs"
echo "secret outside the run" > "$T/secret.txt"
cat > "$T/outs/job.sh" <<'SH'
echo kept > outputs/plain.txt
ln "$1/secret.txt" outputs/hardlink.txt          # a hard link to a file outside the run
ln -s "$1/secret.txt" outputs/symlink.txt        # a symbolic link
echo tab > "outputs/with	tab.txt"
echo nl > "outputs/with
newline.txt"
# a folder tree deeper than PATH_MAX (50 levels of 100-byte names), in the
# working folder and under outputs/
long=$(printf 'd%.0s' $(seq 1 100))
for top in deep outputs/deep; do
  ( mkdir -p "$top" && cd "$top" && for i in $(seq 1 50); do mkdir "$long" && cd "$long" || exit 1; done; echo bottom > f.txt ) || exit 1
done
SH
id="$(submit --experiment hard --source "$T/outs" --entry job.sh --compute cpu -- "$T")"
run_ok $K run wait "$id" >/dev/null
files="$($K run files "$id" 2>&1)"
assert_contains "$files" "outputs/plain.txt" "a plain output is kept"
assert_not_contains "$files" "hardlink.txt" "a hard link to a file outside the run is not published"
assert_not_contains "$files" "symlink.txt" "a symbolic link is not followed"
assert_not_contains "$files" "with" "names with a tab or newline are not stored"
logs="$($K run logs "$id" 2>&1)"
assert_contains "$logs" "kusari: not kept: outputs/hardlink.txt: it has 2 hard links" "the run's log names the hard link"
assert_contains "$logs" 'kusari: not kept: outputs/with\x09tab.txt: its name has a control character' "the run's log names the file with a tab"
assert_contains "$logs" 'kusari: not kept: outputs/with\x0anewline.txt' "the run's log names the file with a newline"
# (the folder goes right after the run's end is recorded: wait for it)
for _ in $(seq 1 100); do [ -e "$WS/runs/$id/wd" ] || break; sleep 0.1; done
[ ! -e "$WS/runs/$id/wd" ] && ok "a working folder deeper than PATH_MAX is removed" || fail "the working folder of run $id is left on disk"
assert_eq "secret outside the run" "$(cat "$T/secret.txt")" "the outside file is untouched"

# --- processes an entry leaves behind end with the run (and on cancel) -----------
U="$$$RANDOM"
leftovers() { pgrep -f "sleep 30[01].$U" | xargs; }
# ours only (a unique argument); ended at exit whatever happens
trap 'p="$(leftovers)"; [ -n "$p" ] && kill -9 $p 2>/dev/null; cleanup' EXIT
mkdir -p "$T/procs"
cat > "$T/procs/job.sh" <<SH
setsid sleep 300.$U &                               # its own session
( setsid sh -c 'sleep 300.$U & sleep 300.$U' & ) &  # a double fork
sleep 0.3
echo started
SH
cat > "$T/procs/cancel.sh" <<SH
setsid sleep 301.$U &
touch "$T/cancel-started"
sleep 300
SH
id="$(submit --experiment hard --source "$T/procs" --entry job.sh --compute cpu)"
run_ok $K run wait "$id" >/dev/null
assert_eq "" "$(leftovers)" "no process the entry started outlives its run"
assert_contains "$($K run logs "$id" 2>&1)" "processes the run left behind (such as pid" "the run's log says what was ended"
id="$(submit --experiment hard --source "$T/procs" --entry cancel.sh --compute cpu)"
for _ in $(seq 1 200); do [ -f "$T/cancel-started" ] && break; sleep 0.05; done
run_ok $K run cancel "$id" --grace 1 >/dev/null
$K run wait "$id" >/dev/null 2>&1
assert_eq "Canceled" "$(jget "$($K run show "$id" --json)" 'j["status"]')" "the run was canceled"
assert_eq "" "$(leftovers)" "no process a canceled run started outlives it"

finish
