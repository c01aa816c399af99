#!/usr/bin/env bash
# platform_faults: persistent out-of-memory injected into SQLite after the
# N-th allocation (KUSARI_FAULT_SQLITE_OOM=N), for N swept from 0 until the
# command succeeds. Every attempt must fail cleanly (exit 1 with
# "kusari: error:", never a crash), the store must stay consistent
# (integrity_check), and exactly the successful attempts must be recorded.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/src" && printf 'kusari log metric m 1\nmkdir -p outputs && echo w > outputs/model.npz\n' > "$T/src/t.sh"
id="$(submit --experiment f --source "$T/src" --entry t.sh)"
run_ok $K run wait "$id" >/dev/null

# sweep CMD...: runs CMD with N = 0, STEP, 2*STEP, ... until it succeeds
STEP=${STEP:-7}
sweep() {
  local n=0 rc out tries=0
  while :; do
    out="$(KUSARI_FAULT_SQLITE_OOM=$n "$@" 2>&1 >/dev/null)"; rc=$?
    tries=$((tries + 1))
    [ $rc -eq 0 ] && break
    if [ $rc -ne 1 ]; then fail "N=$n: '$*' exited $rc (crash?): $out"; return; fi
    case "$out" in *"kusari: error:"*) ;; *) fail "N=$n: '$*' failed without an error message: $out"; return;; esac
    case "$out" in *AddressSanitizer*|*"runtime error"*) fail "N=$n: sanitizer report: $out"; return;; esac
    n=$((n + STEP))
    [ $n -gt 20000 ] && { fail "'$*' never succeeded"; return; }
  done
  ok "'$*' failed cleanly $((tries - 1)) times, then succeeded at N=$n"
}

sweep $K model register --run "$id" --name fm --path outputs/model.npz --tag a=b
assert_eq 1 "$(sql "SELECT count(*) FROM models WHERE name='fm'")" "only the successful registration recorded"
assert_eq 1 "$(sql "SELECT count(*) FROM model_files f JOIN models m ON m.id=f.model_id WHERE m.name='fm'")" "its file recorded once"
sweep $K compute create c2 --max-nodes 3
assert_eq 1 "$(sql "SELECT count(*) FROM computes WHERE name='c2'")" "compute created once"
sweep $K run show "$id" --json
sweep $K run list --json
sweep $K run metrics "$id" --csv
sweep $K model show fm:1
before="$(sql 'SELECT count(*) FROM runs')"
# submissions: the supervisor inherits the fault too, so its run may fail,
# but it must end (Failed or Completed), never hang
STEP=60 sweep $K run submit --experiment fs --source "$T/src" --entry t.sh --compute cpu
for r in $(sql "SELECT id FROM runs WHERE id LIKE 'fs_%'"); do
  $K run wait "$r" --timeout 90 >/dev/null 2>&1
  st="$(sql "SELECT status FROM runs WHERE id='$r'")"
  case "$st" in Completed|Failed) ;; *) fail "run $r left in state $st";; esac
done
ok "every submitted run ended"
assert_eq 0 "$(sql "SELECT count(*) FROM runs WHERE id LIKE 'fs_%' AND status='Failed' AND (error IS NULL OR error='')")" "every failed run says why"
id2="$(submit --experiment fs --source "$T/src" --entry t.sh --compute cpu)"
run_ok $K run wait "$id2" >/dev/null
ok "the workspace works normally after the faults"
assert_eq ok "$(sql 'PRAGMA integrity_check')" "store integrity after all faults"
assert_eq 1 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id'")" "earlier metrics untouched"
finish
