#!/usr/bin/env bash
# platform_run_wait: `run wait` without --show-output, on a terminal (a pty
# from python3's pty module), shows each status change and the latest value of
# a metric as the run goes (the entry waits for the test to see each value
# before it logs the next: no timing); which metric: --metric NAME, else a
# sweep child's primary metric, else the one logged last. Into a pipe it
# prints only the final status.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
# the entry logs what its arguments say; "wait:NAME" waits for file $T/NAME
cat > "$T/src/steps.sh" <<SH
for a in "\$@"; do
  case "\$a" in
    wait:*) while [ ! -f "$T/\${a#wait:}" ]; do sleep 0.05; done;;
    *=*) kusari log metric "\${a%%=*}" "\${a#*=}";;
  esac
done
SH

# watch EXPECT... -- CMD... : runs CMD on a pty; each time the output shows
# EXPECT "text>file", creates $T/file; fails (exit 1) if the output stops first.
# Prints the whole output.
cat > "$T/watch.py" <<'PY'
import os, pty, sys, time
sep = sys.argv.index("--")
steps = [a.split(">", 1) for a in sys.argv[1:sep]]
cmd = sys.argv[sep + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
out = b""
deadline = time.time() + 120
while True:
    while steps and steps[0][0].encode() in out:
        open(os.path.join(os.environ["T"], steps[0][1]), "w").close()
        steps.pop(0)
    if time.time() > deadline:
        break
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.stdout.write("\n[exit %d, waiting for %s]\n" % (os.waitstatus_to_exitcode(st), steps[0][0] if steps else "nothing"))
PY
export T
watch() { python3 "$T/watch.py" "$@"; }

# --- the metric logged last ----------------------------------------------------------------
id="$(submit --experiment w --source "$T/src" --entry steps.sh -- loss=0.5 wait:a Accuracy=0.75 wait:b)"
out="$(watch "loss = 0.5>a" "Accuracy = 0.75>b" -- $K run wait "$id")"
assert_contains "$out" "Run $id: Running" "a terminal sees the status change to Running"
assert_contains "$out" "loss = 0.5 (step 0)" "then the latest value of the metric logged last"
assert_contains "$out" "Accuracy = 0.75 (step 0)" "which follows the run to the next metric it logs"
assert_contains "$out" "Run $id: Completed (duration" "and ends with the final status"
assert_contains "$out" "[exit 0, waiting for nothing]" "exit 0; every value was seen while the run went on"
assert_contains "$out" $'\r\033[K  Accuracy' "the metric line is rewritten in place"

# --- --metric NAME --------------------------------------------------------------------------
id="$(submit --experiment w --source "$T/src" --entry steps.sh -- loss=0.5 wait:c Accuracy=0.75 loss=0.25 wait:d)"
out="$(watch "loss = 0.5>c" "loss = 0.25>d" -- $K run wait "$id" --metric loss)"
assert_contains "$out" "loss = 0.25 (step 1)" "--metric loss: its latest value"
assert_not_contains "$out" "Accuracy" "--metric loss: no other metric"
assert_contains "$out" "[exit 0, waiting for nothing]" "--metric: every value seen"

# --- a sweep child: the sweep's primary metric ------------------------------------------------
cat > "$T/sweep.json" <<JSON
{"experiment": "ws", "run": {"source": "$T/src", "entry": "steps.sh", "compute": "cpu",
                           "arguments": ["score=0.6", "wait:e", "other=9"]},
 "sampling": {"type": "grid", "space": {"--k": {"choice": ["x"]}}},
 "primary_metric": {"name": "score", "goal": "maximize"}}
JSON
# (the entry ignores --k x: it is not NAME=VALUE nor wait:)
sw="$(run_ok $K sweep submit "$T/sweep.json" | tail -1)"
child=""
for _ in $(seq 100); do child="$(sql "SELECT run_id FROM sweep_trials WHERE sweep_id='$sw' AND run_id IS NOT NULL")"; [ -n "$child" ] && break; sleep 0.1; done
[ -n "$child" ] || die "the sweep's child was not submitted"
out="$(watch "score = 0.6>e" -- $K run wait "$child")"
assert_contains "$out" "score = 0.6 (step 0)" "a sweep child: the sweep's primary metric"
assert_not_contains "$out" "other" "not the metric it logged last (other, logged after score)"
assert_contains "$out" "Run $child: Completed" "the child's final status"
run_ok $K sweep wait "$sw" --timeout 60 >/dev/null

# --- not a terminal: only the final status ---------------------------------------------------
id="$(submit --experiment w --source "$T/src" --entry steps.sh -- loss=0.5)"
out="$($K run wait "$id")"
assert_eq "Run $id: Completed" "$(echo "$out" | sed 's/ (duration.*//')" "into a pipe: one line, the final status"
assert_eq 1 "$(echo "$out" | wc -l)" "and nothing else"
out="$(watch -- $K run wait "$id" --show-output)"
assert_not_contains "$out" "loss = " "--show-output on a terminal streams the log, without the metric line"
expect_fail "--metric needs a metric name" $K run wait "$id" --metric ""
finish
