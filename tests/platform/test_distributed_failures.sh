#!/usr/bin/env bash
# platform_distributed_failures: how distributed runs end badly, with a real
# mpirun and 2 ranks (issue 13, platform side):
#  - a rank that exits 3: the run is Failed naming rank 1 and its exit 3, the
#    other rank is stopped, and nothing of the run's session is left running;
#  - a rank killed with SIGKILL: Failed naming rank 1 and SIGKILL, nothing left;
#  - cancel: every rank gets SIGTERM; ranks that ignore it get SIGKILL after
#    the grace; Canceled, nothing left;
#  - kill -9 of the supervisor: the next command reconciles the run, Failed,
#    and kills every rank;
#  - --nodes 2 on a 2-node target while a plain run holds one node: the
#    distributed run waits Queued (compute show: 1 busy, 1 queued) until that
#    node frees, then runs and completes.
# The ranks are shell scripts (mpirun starts any program); Open MPI's
# permission variables for root on 2 cores are set here. Skipped (77)
# without mpirun.
. "$(dirname "$0")/lib.sh"
# the system's python3 when there is one: a version manager's shim costs
# half a second a call on a loaded machine, and this test calls it often
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
command -v mpirun >/dev/null || { echo "skip: no mpirun (apt-get install openmpi-bin)"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# under ASan: Open MPI's own until-exit allocations are not kusari's leaks
printf 'leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\nleak:libpmix.so\nleak:libevent\nleak:mca_\n' > "$T/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"  # full stacks to match them
# sanitizer_reports: what an instrumented `kusari __rank` (or entry) said in the ranks' logs
sanitizer_reports() { grep -hE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/logs/std_log*.txt 2>/dev/null | head -20; }
run_ok "$K" compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
# RANK MODE: exit3 (rank 1 exits 3 once both run), hang (sleep until killed),
# stubborn (ignore SIGTERM); each rank writes its pid to $T/pid_<mode>_<rank>
cat > "$T/src/rank.sh" <<'SH'
r=$OMPI_COMM_WORLD_RANK
mode=$1; dir=$2
[ "$mode" = stubborn ] && trap 'echo "rank $r ignores SIGTERM"' TERM
echo $$ > "$dir/pid_${mode}_$r.tmp" && mv "$dir/pid_${mode}_$r.tmp" "$dir/pid_${mode}_$r"
echo "rank $r up ($mode)"
if [ "$mode" = exit3 ] && [ "$r" = 1 ]; then
  while [ ! -f "$dir/pid_${mode}_0" ]; do sleep 0.1; done
  echo "rank 1 fails"; exit 3
fi
while true; do sleep 0.2; done
SH

# left RUN: the processes (not zombies) still in the session of RUN's launcher
left() {
  local sid; sid="$(sql "SELECT entry_pid FROM runs WHERE id='$1'")"
  [ -n "$sid" ] && [ "$sid" != 0 ] || { echo "no-launcher-pid"; return; }
  ps -s "$sid" -o stat=,pid=,args= 2>/dev/null | grep -v '^Z' || true
}
# wait_file F: until F exists (the guard ends a hang)
wait_file() { for _ in $(seq 1 600); do [ -f "$1" ] && return 0; sleep 0.1; done; return 1; }
rank_status() { jget "$("$K" run show "$1" --json)" '" ".join("%d:%s" % (r["rank"], r["status"]) for r in j["distributed"]["rank_status"])'; }

# ---- one rank exits 3
id="$(submit -e d --source "$T/src" --entry rank.sh --processes-per-node 2 -- exit3 "$T")"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq "Failed" "$(jget "$j" 'j["status"]')" "a rank exiting 3 fails the run"
assert_contains "$(jget "$j" 'j["error"]')" "rank 1 of 2 failed: exit 3" "the error names rank 1 and its exit status"
assert_eq 3 "$(jget "$j" 'j["exit_code"]')" "the run's exit code is the failing rank's"
assert_eq "0:signal 15 (SIGTERM) 1:exit 3" "$(rank_status "$id")" "rank 0 was stopped with SIGTERM; rank 1 exited 3"
assert_eq "" "$(left "$id")" "no process of the run is left"
assert_contains "$("$K" run logs "$id" --rank 1)" "rank 1 fails" "rank 1's own log"

# ---- one rank killed with SIGKILL
id="$(submit -e d --source "$T/src" --entry rank.sh --processes-per-node 2 -- hang "$T")"
wait_file "$T/pid_hang_0" && wait_file "$T/pid_hang_1" || die "the ranks did not start: $("$K" run logs "$id")"
kill -9 "$(cat "$T/pid_hang_1")"
"$K" run wait "$id" --timeout 60 >/dev/null 2>&1
j="$("$K" run show "$id" --json)"
assert_eq "Failed" "$(jget "$j" 'j["status"]')" "a rank killed with SIGKILL fails the run"
assert_contains "$(jget "$j" 'j["error"]')" "rank 1 of 2 failed: killed by signal 9 (SIGKILL)" "the error names rank 1 and SIGKILL"
assert_eq "" "$(left "$id")" "no process of the killed run is left"

# ---- cancel: SIGTERM to every rank, SIGKILL after the grace for those that ignore it
id="$(submit -e d --source "$T/src" --entry rank.sh --processes-per-node 2 -- stubborn "$T")"
wait_file "$T/pid_stubborn_0" && wait_file "$T/pid_stubborn_1" || die "the ranks did not start"
[ "$(left "$id" | awk '$3 == "/bin/bash"' | grep -c "rank.sh stubborn")" = 2 ] && ok "both ranks run in the launcher's session" || fail "ranks in the session: $(left "$id")"
out="$("$K" run cancel "$id" --grace 1 2>&1)"
assert_contains "$out" "Canceled" "cancel ends the run Canceled"
assert_eq "" "$(left "$id")" "no rank is left after cancel"
log="$("$K" run logs "$id")"
assert_contains "$log" "ignores SIGTERM" "the ranks got SIGTERM first"
assert_contains "$log" "sent SIGKILL" "then SIGKILL after the grace"
assert_eq "0:signal 9 (SIGKILL) 1:signal 9 (SIGKILL)" "$(rank_status "$id")" "each rank ended by SIGKILL"

# ---- the supervisor killed: reconciliation stops every rank
id="$(submit -e d --source "$T/src" --entry rank.sh --processes-per-node 2 -- orphan "$T")"
wait_file "$T/pid_orphan_0" && wait_file "$T/pid_orphan_1" || die "the ranks did not start"
kill -9 "$(sql "SELECT supervisor_pid FROM runs WHERE id='$id'")"
for _ in $(seq 1 100); do kill -0 "$(sql "SELECT supervisor_pid FROM runs WHERE id='$id'")" 2>/dev/null || break; sleep 0.1; done
j="$("$K" run show "$id" --json)"
assert_eq "Failed" "$(jget "$j" 'j["status"]')" "a distributed run whose supervisor died is reconciled Failed"
assert_eq "" "$(left "$id")" "reconciliation left no rank running"

# ---- --nodes 2 waits while a plain run holds one of the 2 nodes
plain="$(submit -e d --source "$T/src" --entry rank.sh -- hang "$T/plain")"
mkdir -p "$T/plain"
for _ in $(seq 1 300); do [ "$("$K" run show "$plain" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')" = Running ] && break; sleep 0.1; done
big="$(submit -e d --source "$T/src" --entry rank.sh --nodes 2 -- exit0 "$T")"
# its supervisor has looked for nodes (the line is written before it polls)
for _ in $(seq 1 300); do grep -q "Queued on compute target" "$WS/runs/$big/supervisor.log" 2>/dev/null && break; sleep 0.1; done
sleep 1
assert_eq "Queued" "$(jget "$("$K" run show "$big" --json)" 'j["status"]')" "the 2-node run waits Queued while one node is busy"
cj="$("$K" compute show cpu --json)"
assert_eq "1 1" "$(jget "$cj" '"%d %d" % (j["busy_nodes"], j["queued_runs"])')" "compute show: 1 node busy, 1 run queued"
run_ok "$K" run cancel "$plain" --grace 0 >/dev/null
# exit0 mode: rank.sh loops forever unless told otherwise; cancel it once it runs
for _ in $(seq 1 300); do [ -f "$T/pid_exit0_0" ] && [ -f "$T/pid_exit0_1" ] && break; sleep 0.1; done
assert_eq "Running" "$(jget "$("$K" run show "$big" --json)" 'j["status"]')" "the 2-node run starts once the node is free"
cj="$("$K" compute show cpu --json)"
assert_eq "2 0" "$(jget "$cj" '"%d %d" % (j["busy_nodes"], j["queued_runs"])')" "compute show: it holds both nodes"
run_ok "$K" run cancel "$big" --grace 0 >/dev/null
assert_eq "" "$(left "$big")" "nothing of it is left"
assert_eq "" "$(sanitizer_reports)" "no sanitizer report in the ranks' logs"
finish
