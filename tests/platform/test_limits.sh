#!/usr/bin/env bash
# platform_limits: per-run memory and CPU limits on the local target (issue
# 19): `run submit --memory SIZE --cpus N` and a sweep file's run.memory /
# run.cpus. Bad values are refused with a clear error and record nothing.
# Where this machine lets kusari make a cgroup (v2, else v1), an entry that
# goes past its memory limit ends Failed with "out of memory (limit 64M)",
# one under it Completes, the CPU quota is the entry's own cgroup's, and the
# run's cgroups are gone afterwards with whatever it left in them; without a
# cgroup (KUSARI_LIMITS_NO_CGROUP=1) memory becomes RLIMIT_AS, as 'run show'
# says, and --cpus is said not to be enforced.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src"
cat > "$T/src/hog.py" <<'PY'
import sys
x = bytearray(int(sys.argv[1]) << 20)
for i in range(0, len(x), 4096):
    x[i] = 1
print("allocated", sys.argv[1], "MiB")
PY
# prints the CFS quota (v1) or cpu.max (v2) of its own cgroup, leaves a
# process behind in a new session
cat > "$T/src/quota.sh" <<'SH'
v1="$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}cpu\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup | head -1)"
v2="$(sed -n 's/^0:://p' /proc/self/cgroup)"
if [ -n "$v1" ] && [ -f "/sys/fs/cgroup/cpu$v1/cpu.cfs_quota_us" ]; then echo "quota $(cat "/sys/fs/cgroup/cpu$v1/cpu.cfs_quota_us")"
elif [ -f "/sys/fs/cgroup$v2/cpu.max" ]; then echo "quota $(cut -d' ' -f1 "/sys/fs/cgroup$v2/cpu.max")"; fi
setsid sleep 397 >/dev/null 2>&1 < /dev/null &
SH

# --- bad values: a clear error, exit 2, nothing recorded -------------------------------------------
for bad in 12Q 1M -5M 0 "" 512MX 1e9 0x100000; do
  expect_fail "--memory must be a size such as 512M or 2G" $K run submit -e lim --source "$T/src" --entry hog.py --memory "$bad"
done
for bad in 0 abc -1 2000 0.001 1e3; do
  expect_fail "--cpus must be a number of processors" $K run submit -e lim --source "$T/src" --entry hog.py --cpus "$bad"
done
$K run submit -e lim --source "$T/src" --entry hog.py --memory 12Q >/dev/null 2>&1
assert_eq 2 "$?" "a bad --memory exits 2"
assert_eq 0 "$(sql "SELECT count(*) FROM runs")" "no run was recorded for a bad value"
sweep() {  # sweep NAME RUN_EXTRA_JSON
  cat > "$T/$1.json" <<JSON
{"experiment": "lim", "run": {"source": "$T/src", "entry": "hog.py", "compute": "cpu", "arguments": ["1"], $2},
 "sampling": {"type": "grid", "space": {"--x": {"choice": [1]}}}, "primary_metric": {"name": "m", "goal": "maximize"}}
JSON
}
sweep badmem '"memory": "lots"'
expect_fail "field 'run.memory' must be a size such as 512M" $K sweep submit "$T/badmem.json"
sweep nummem '"memory": 512'
expect_fail "field 'run.memory' must be a text such as \"512M\"" $K sweep submit "$T/nummem.json"
sweep badcpu '"cpus": "1"'
expect_fail "field 'run.cpus' must be a number such as 1" $K sweep submit "$T/badcpu.json"
sweep zerocpu '"cpus": 0'
expect_fail "field 'run.cpus' must be a number of processors" $K sweep submit "$T/zerocpu.json"
assert_eq 0 "$(sql "SELECT count(*) FROM runs")" "no sweep was recorded for a bad value"
# a sweep's children get its limits
sweep good '"memory": "64M", "cpus": 0.5'
sw="$(run_ok $K sweep submit "$T/good.json" | tail -1)"
run_ok $K sweep wait "$sw" --quiet --timeout 120 >/dev/null
child="$($K sweep best "$sw" 2>/dev/null | tail -1)"
[ -n "$child" ] || child="$(sql "SELECT id FROM runs WHERE parent_id='$sw'")"
assert_contains "$($K run show "$child")" "limits:       memory 64M (" "a sweep's child runs with run.memory"
assert_contains "$($K run show "$child")" "cpus 0.5 (" "and run.cpus"

# --- enforced by a cgroup where this machine allows one ---------------------------------------------
big="$(submit -e lim --source "$T/src" --entry hog.py --memory 64M --cpus 0.5 -- 400)"
$K run wait "$big" >/dev/null 2>&1
lim="$($K run show "$big" | sed -n 's/^limits: *//p')"
if [[ "$lim" == *cgroup* ]]; then
  ok "limits by cgroup here: $lim"
  assert_eq Failed "$($K run show "$big" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" "an entry past --memory 64M Failed"
  assert_contains "$($K run show "$big")" "out of memory (limit 64M)" "with 'out of memory (limit 64M)'"
  assert_contains "$lim" "memory 64M (cgroup v" "run show: memory by cgroup"
  assert_contains "$lim" "cpus 0.5 (cgroup v" "run show: cpus by cgroup"
  small="$(submit -e lim --source "$T/src" --entry hog.py --memory 64M -- 8)"
  run_ok $K run wait "$small" >/dev/null
  ok "an entry under its --memory limit Completed"
  q="$(submit -e lim --source "$T/src" --entry quota.sh --memory 64M --cpus 0.25)"
  run_ok $K run wait "$q" >/dev/null
  assert_contains "$($K run logs "$q" 2>/dev/null || cat "$WS/runs/$q/logs/std_log.txt")" "quota 25000" "the entry runs in a cgroup with a 0.25-processor quota"
  assert_eq "" "$(pgrep -f 'sleep 397' || true)" "the process it left behind (setsid) was ended"
  assert_eq "" "$(find /sys/fs/cgroup -maxdepth 6 -name "kusari-$q" -o -maxdepth 6 -name "kusari-$big" 2>/dev/null)" "the runs' cgroups were removed"
else
  ok "no cgroup kusari may create here ($lim): the cgroup checks are left out"
fi

# --- no cgroup: RLIMIT_AS, and --cpus said not to be enforced ------------------------------------------------
rl="$(KUSARI_LIMITS_NO_CGROUP=1 submit -e lim --source "$T/src" --entry hog.py --memory 128M --cpus 1 -- 400)"
$K run wait "$rl" >/dev/null 2>&1
show="$($K run show "$rl")"
assert_contains "$show" "limits:       memory 128M (RLIMIT_AS" "run show: memory as RLIMIT_AS without a cgroup"
assert_contains "$show" "cpus 1 (not enforced" "run show: cpus not enforced without a cgroup"
assert_contains "$show" "status:       Failed" "an entry past its address-space limit Failed"
assert_contains "$show" "address space limited to 128M by RLIMIT_AS" "and the error names the limit"
assert_contains "$(cat "$WS/runs/$rl/logs/std_log.txt")" "MemoryError" "(its allocation failed)"
ok2="$(KUSARI_LIMITS_NO_CGROUP=1 submit -e lim --source "$T/src" --entry hog.py --memory 128M -- 8)"
run_ok $K run wait "$ok2" >/dev/null
ok "an entry under its RLIMIT_AS Completed"
finish
