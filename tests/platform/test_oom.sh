#!/usr/bin/env bash
# platform_oom (issue 19): an entry the kernel's out-of-memory killer ends is
# reported as out of memory, not as a bare "killed by signal 9". The test
# makes a memory cgroup with a 96 MB limit (v1, or v2 where its memory
# controller can be delegated) and submits from inside it; where no such
# cgroup can be made (not root, read-only cgroups) it is skipped (77).
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || die "needs python3"
CG=""; PARENT=""
own_v1="$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}memory\(,[^:]*\)\{0,1\}:\(.*\)$/\3/p' /proc/self/cgroup | head -1)"
if [ -n "$own_v1" ] && [ -d "/sys/fs/cgroup/memory${own_v1%/}" ]; then
  PARENT="/sys/fs/cgroup/memory${own_v1%/}"
  CG="$PARENT/kusari-test-oom-$$"
  { mkdir "$CG" && echo $((96 << 20)) > "$CG/memory.limit_in_bytes"; } 2>/dev/null || CG=""
fi
if [ -z "$CG" ]; then
  own_v2="$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup | head -1)"
  if [ -n "$own_v2" ] && [ -f "/sys/fs/cgroup${own_v2%/}/cgroup.controllers" ]; then
    PARENT="/sys/fs/cgroup${own_v2%/}"
    CG="$PARENT/kusari-test-oom-$$"
    { mkdir "$CG" && echo $((96 << 20)) > "$CG/memory.max"; } 2>/dev/null || { rmdir "$CG" 2>/dev/null; CG=""; }
  fi
fi
if [ -z "$CG" ] || ! echo $$ > "$CG/cgroup.procs" 2>/dev/null; then
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
  echo "SKIP: cannot make a memory cgroup with a limit here"; rm -rf "$T"; trap - EXIT; exit 77
fi
trap 'cleanup; echo $$ > "$PARENT/cgroup.procs" 2>/dev/null; for _ in $(seq 1 50); do rmdir "$CG" 2>/dev/null && break; sleep 0.1; done' EXIT
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
printf 'import sys\nprint("allocating", flush=True)\nb = b"x" * (400 << 20)\nprint("allocated", len(b))\n' > "$T/src/hog.py"
printf 'import sys\nprint("killing myself", flush=True)\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n' > "$T/src/kill9.py"
id="$(submit --experiment oom --source "$T/src" --entry hog.py --compute cpu)"
$K run wait "$id" >/dev/null 2>&1
st="$($K run show "$id" --json)"
assert_eq "Failed" "$(jget "$st" 'j["status"]')" "an entry killed for memory fails"
assert_contains "$(jget "$st" 'j.get("error")')" "the entry ran out of memory: the kernel's out-of-memory killer ended it" "its error says out of memory"
assert_contains "$($K run logs "$id" 2>&1)" "kusari: the entry ran out of memory" "so does its log"
# a SIGKILL that is not the kernel's for memory keeps the plain message
id="$(submit --experiment oom --source "$T/src" --entry kill9.py --compute cpu)"
$K run wait "$id" >/dev/null 2>&1
assert_eq "the entry was killed by signal 9 (SIGKILL)" "$(jget "$($K run show "$id" --json)" 'j.get("error")')" "another SIGKILL is not called out of memory"
finish
