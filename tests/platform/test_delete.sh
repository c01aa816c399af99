#!/usr/bin/env bash
# platform_delete: `run delete`, `sweep delete`, `experiment delete`: rows
# gone (runs, metrics, tags, files, sweep records, the experiment), the live
# run directory gone, blobs nothing refers to any more removed, and blobs
# still used kept: another run's file, a snapshot other runs share, a
# registered model's file (the model still downloads). Refused while a run or
# sweep is active, for a sweep child alone, for unknown ids (nothing deleted),
# and without --yes when stdin is not a terminal. A collection that cannot
# get the blob store's lock leaves its blobs for the next one.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 4 >/dev/null
blob() { local h; h="$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)"; echo "$WS/blobs/${h:0:2}/${h:2}"; }
have() { test -f "$(blob "$1")" && echo yes || echo no; }
rows() {  # rows RUN: its rows in every table that refers to runs
  sql "SELECT (SELECT count(*) FROM runs WHERE id='$1') || ' ' || (SELECT count(*) FROM metrics WHERE run_id='$1') || ' ' ||
       (SELECT count(*) FROM tags WHERE run_id='$1') || ' ' || (SELECT count(*) FROM files WHERE run_id='$1') || ' ' ||
       (SELECT count(*) FROM sweep_trials WHERE sweep_id='$1' OR run_id='$1') || ' ' || (SELECT count(*) FROM sweeps WHERE run_id='$1')"
}

mkdir -p "$T/src"
printf 'source-only-content-1' > "$T/src/data.txt"
# writes outputs/model.npz = "weights-<w>" and outputs/common.txt = "common-output" (the same bytes in every run)
cat > "$T/src/train.sh" <<'SH'
w=x; hold=""
while [ $# -gt 0 ]; do case "$1" in --w) w=$2;; --hold) hold=$2;; esac; shift 2; done
kusari log metric loss 0.5; kusari log tag kind train
mkdir -p outputs && printf 'weights-%s' "$w" > outputs/model.npz && printf 'common-output' > outputs/common.txt
if [ -n "$hold" ]; then while [ ! -f "$hold" ]; do sleep 0.1; done; fi
SH
sub() { local id; id="$(submit --experiment del --source "$T/src" "$@")"; echo "$id"; }
A="$(sub --entry train.sh -- --w a)"; B="$(sub --entry train.sh -- --w b)"; C="$(sub --entry train.sh -- --w c)"
for r in $A $B $C; do run_ok $K run wait "$r" >/dev/null; done
run_ok $K model register --run "$A" --path outputs/model.npz --name del-model >/dev/null
assert_eq "yes yes yes yes yes" "$(have weights-a) $(have weights-b) $(have weights-c) $(have common-output) $(have source-only-content-1)" "blobs stored"
assert_eq "1 1 1 3 0 0" "$(rows "$C")" "run C has its rows"

# --- refusals that delete nothing ------------------------------------------------------
expect_fail "no run with id 'nope'" $K run delete "$C" nope --yes
assert_eq "1 1 1 3 0 0" "$(rows "$C")" "an unknown id among the ids deletes nothing"
err="$($K run delete "$C" 2>&1 </dev/null)"; rc=$?
assert_eq 2 $rc "without --yes and without a terminal: exit 2"
assert_contains "$err" "add --yes" "and it says how to delete non-interactively"
out="$(run_ok $K run delete "$C" --dry-run)"
assert_contains "$out" "Would delete 1 run: $C (3 stored files" "--dry-run says what would go"
assert_eq "1 1 1 3 0 0 yes" "$(rows "$C") $(have weights-c)" "--dry-run deletes nothing"

# --- a run with a file of its own and a file another run shares ------------------------------
test -d "$WS/runs/$C" && ok "C has a live run directory" || fail "no live directory for $C"
out="$(run_ok $K run delete "$C" --yes)"
assert_contains "$out" "Deleted 1 run: $C" "run delete says what it deleted"
assert_eq "0 0 0 0 0 0" "$(rows "$C")" "every row of C is gone"
test ! -e "$WS/runs/$C" && ok "C's live directory is gone" || fail "runs/$C still exists"
assert_eq "no yes yes" "$(have weights-c) $(have common-output) $(have source-only-content-1)" \
  "C's own file blob removed; the output B still has and the shared snapshot's files kept"
expect_fail "no run with id '$C'" $K run show "$C"

# --- a run a model was registered from --------------------------------------------------------
run_ok $K run delete "$A" --yes >/dev/null
assert_eq "0 0 0 0 0 0" "$(rows "$A")" "A's rows are gone"
assert_eq "yes" "$(have weights-a)" "the registered model's blob is kept"
run_ok $K model download del-model:1 --to "$T/dl" >/dev/null
assert_eq "weights-a" "$(cat "$T/dl/model.npz")" "the model from the deleted run still downloads"

# --- refused while running ----------------------------------------------------------------------
R="$(sub --entry train.sh -- --w r --hold "$T/go")"
for _ in $(seq 1 300); do [ "$(sql "SELECT status FROM runs WHERE id='$R'")" = Running ] && break; sleep 0.1; done
expect_fail "still active: $R (Running)" $K run delete "$R" --yes
expect_fail "still active" $K experiment delete del --yes
assert_eq 1 "$(sql "SELECT count(*) FROM runs WHERE id='$R'")" "the running run is still there"
touch "$T/go"
run_ok $K run wait "$R" >/dev/null
run_ok $K run delete "$R" --yes >/dev/null
assert_eq "0 0 0 0 0 0" "$(rows "$R")" "deleted once it ended"

# --- the last run of a snapshot: the snapshot and its files go too ---------------------------------
snap="$(jget "$($K run show "$B" --json)" 'j["snapshot"]')"
run_ok $K run delete "$B" --yes >/dev/null
assert_eq "no no no" "$(have weights-b) $(have common-output) $(have source-only-content-1)" "the last user's blobs are removed"
test ! -e "$WS/blobs/${snap:0:2}/${snap:2}" && ok "the snapshot manifest is removed" || fail "snapshot $snap kept"
assert_eq "yes" "$(have weights-a)" "the model's blob is still kept"

# --- sweeps: children share the parent's snapshot ------------------------------------------------
mkdir -p "$T/ssrc" && printf 'sweep-source-only' > "$T/ssrc/data.txt" && cp "$T/src/train.sh" "$T/ssrc/"
cat > "$T/sweep.json" <<JSON
{"experiment": "del-sweep", "run": {"source": "$T/ssrc", "entry": "train.sh", "compute": "cpu", "arguments": ["--hold", "$T/go2"]},
 "sampling": {"type": "grid", "space": {"--w": {"choice": ["s1", "s2"]}}},
 "primary_metric": {"name": "loss", "goal": "minimize"}}
JSON
SW="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
for _ in $(seq 1 300); do [ "$(sql "SELECT count(*) FROM runs WHERE parent_id='$SW'")" = 2 ] && break; sleep 0.1; done
K1="$(sql "SELECT id FROM runs WHERE parent_id='$SW' ORDER BY seq LIMIT 1")"
expect_fail "still active: $SW (Running)" $K sweep delete "$SW" --yes
touch "$T/go2"
run_ok $K sweep wait "$SW" --quiet >/dev/null
expect_fail "is a child run of sweep $SW" $K run delete "$K1" --yes
expect_fail "is a sweep" $K run delete "$SW" --yes
expect_fail "no sweep with id '$K1'" $K sweep delete "$K1" --yes
assert_eq "yes yes yes" "$(have weights-s1) $(have weights-s2) $(have sweep-source-only)" "the sweep's blobs are there"
out="$(run_ok $K sweep delete "$SW" --yes)"
assert_contains "$out" "Deleted sweep $SW with its 2 child runs" "sweep delete says what it deleted"
assert_eq "0 0 0 0 0 0" "$(rows "$SW")" "the sweep's rows (parent, trials, sweep record) are gone"
assert_eq 0 "$(sql "SELECT count(*) FROM runs WHERE parent_id='$SW'")" "its children are gone"
assert_eq "0 0 0 0 0 0" "$(rows "$K1")" "with their metrics, tags, files and trials"
assert_eq "no no no" "$(have weights-s1) $(have weights-s2) $(have sweep-source-only)" "the sweep's blobs are removed"

# --- experiments; a snapshot shared with another experiment stays ---------------------------------
mkdir -p "$T/esrc" && printf 'experiment-source' > "$T/esrc/data.txt" && cp "$T/src/train.sh" "$T/esrc/"
E1="$(submit --experiment gone --source "$T/esrc" --entry train.sh -- --w e1)"
E2="$(submit --experiment stays --source "$T/esrc" --entry train.sh -- --w e2)"
run_ok $K run wait "$E1" >/dev/null; run_ok $K run wait "$E2" >/dev/null
out="$(run_ok $K experiment delete gone --yes)"
assert_contains "$out" "Deleted experiment gone with its 1 run: $E1" "experiment delete says what it deleted"
assert_eq "0 0" "$(sql "SELECT count(*) FROM experiments WHERE name='gone'") $(sql "SELECT count(*) FROM runs WHERE id='$E1'")" "the experiment and its runs are gone"
assert_eq "no yes yes" "$(have weights-e1) $(have weights-e2) $(have experiment-source)" "its own blob removed; the snapshot the other experiment uses kept"
expect_fail "no experiment named 'gone'" $K experiment show gone
expect_fail "no experiment named 'gone'" $K experiment delete gone --yes

# --- on a terminal it asks (a pseudo-terminal here) --------------------------------------------------
G="$(submit --experiment stays --source "$T/esrc" --entry train.sh -- --w g)"
run_ok $K run wait "$G" >/dev/null
ask() {  # ask ANSWER: runs `run delete $G` on a pty, answers the question; prints "EXIT|OUTPUT"
  python3 - "$K" "$G" "$1" <<'PY'
import os, pty, sys
k, run, answer = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(k, [k, "run", "delete", run])
out, sent = b"", False
while True:
    try:
        d = os.read(fd, 1024)
    except OSError:
        break
    if not d:
        break
    out += d
    if b"[y/N]" in out and not sent:
        os.write(fd, answer.encode() + b"\n")
        sent = True
_, st = os.waitpid(pid, 0)
print("%d|%s" % (os.WEXITSTATUS(st), out.decode(errors="replace").replace("\r", "").replace("\n", " ")))
PY
}
out="$(ask n)"
assert_contains "$out" "Delete 1 run: $G? This cannot be undone. [y/N]" "a terminal is asked"
assert_contains "$out" "Nothing was deleted." "answering n deletes nothing"
assert_eq "1|1" "${out%%|*}|$(sql "SELECT count(*) FROM runs WHERE id='$G'")" "exit 1 and the run is still there"
out="$(ask y)"
assert_eq "0|0" "${out%%|*}|$(sql "SELECT count(*) FROM runs WHERE id='$G'")" "answering y deletes it"

# --- the blob store's lock: a collection that cannot get it defers, the next one collects ---------
F="$(submit --experiment stays --source "$T/esrc" --entry train.sh -- --w f)"
run_ok $K run wait "$F" >/dev/null
python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "a"); fcntl.flock(f, fcntl.LOCK_SH); open(sys.argv[2], "w").close(); time.sleep(60)' "$WS/blobs/.lock" "$T/locked" &
holder=$!
for _ in $(seq 1 100); do [ -e "$T/locked" ] && break; sleep 0.1; done
out="$(run_ok $K run delete "$F" --yes)"
assert_contains "$out" "for the next delete to collect" "a busy store defers the collection"
assert_eq "yes" "$(have weights-f)" "the deferred blob is still there"
kill "$holder"; wait "$holder" 2>/dev/null
run_ok $K run delete "$E2" --yes >/dev/null
assert_eq "no no no" "$(have weights-f) $(have weights-e2) $(have experiment-source)" "the next delete collects the deferred blob with its own"
for c in "run delete" "sweep delete" "experiment delete"; do assert_contains "$($K $c --help)" "usage: kusari $c" "$c --help"; done
finish
