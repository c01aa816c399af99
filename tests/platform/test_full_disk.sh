#!/usr/bin/env bash
# platform_full_disk (issue 19): a run whose entry logs 20,000 metrics, fills
# the workspace's disk and exits 0 ends Failed with an error naming the full
# disk; its metrics channel and working folder are kept; once space returns,
# the next kusari command stores every metric and the outputs. Needs a small
# tmpfs (mount as root): where mounting is refused the test is skipped (77).
. "$(dirname "$0")/lib.sh"
[ -n "$ENTRY_BIN" ] || die "KUSARI_LOG_ENTRY must name platform_log_entry"
MNT="$T/mnt"
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=48m tmpfs "$MNT" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs here (needs root)"; rm -rf "$T"; trap - EXIT; exit 77
fi
trap 'cleanup_all' EXIT
cleanup_all() {
  # our own runs' processes first, then the file system
  WS="$MNT/ws"
  rm -f "$MNT/filler"
  if [ -f "$WS/kusari.db" ]; then
    for id in $("$K" run list --status Running --json 2>/dev/null | python3 -c 'import json,sys; [print(r["id"]) for r in json.load(sys.stdin)]' 2>/dev/null); do
      "$K" run cancel "$id" --grace 0 >/dev/null 2>&1
    done
  fi
  umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
  rm -rf "$T"
}
export KUSARI_WORKSPACE="$MNT/ws"
WS="$MNT/ws"
run_ok $K workspace create "$WS" --no-select >/dev/null
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src" && cp "$ENTRY_BIN" "$T/src/entry"
cat > "$T/src/job.sh" <<'SH'
./entry --n 20000 || exit 1
echo "the result" > outputs/result.txt
mkdir -p outputs/sub && echo "deeper" > outputs/sub/more.txt
# fill the disk, then end successfully
dd if=/dev/zero of="$1/filler" bs=1M 2>/dev/null
df -k "$1" | tail -1
exit 0
SH
id="$(submit --experiment disk --source "$T/src" --entry job.sh --compute cpu -- "$MNT")"
$K run wait "$id" >/dev/null 2>&1
st="$($K run show "$id" --json 2>/dev/null)"
assert_eq "Failed" "$(jget "$st" 'j["status"]')" "a run whose results cannot be stored ends Failed"
err="$(jget "$st" 'j.get("error")')"
assert_contains "$err" "the disk holding the workspace is full" "its error names the full disk"
assert_contains "$err" "$WS" "its error names the workspace"
[ -f "$WS/runs/$id/channel" ] && ok "the metrics channel is kept" || fail "the metrics channel was deleted before its metrics were stored"
[ -f "$WS/runs/$id/wd/outputs/result.txt" ] && ok "the working folder is kept" || fail "the working folder was deleted before its outputs were stored"
# more commands while the disk is still full lose nothing either
$K run list >/dev/null 2>&1
[ -f "$WS/runs/$id/channel" ] && [ -f "$WS/runs/$id/wd/outputs/result.txt" ] && ok "a reconcile on the full disk keeps them" || fail "a reconcile on the full disk removed them"
# space returns: the next command stores the rest
rm -f "$MNT/filler"
run_ok $K run list >/dev/null
assert_eq 20000 "$(sql "SELECT count(*) FROM metrics WHERE run_id='$id' AND name='loss'")" "all 20,000 metrics stored once space returned"
assert_eq "0 19999 $((19999 * 20000 / 2))" "$(sql "SELECT min(step) || ' ' || max(step) || ' ' || CAST(sum(value) AS INTEGER) FROM metrics WHERE run_id='$id' AND name='loss'")" "each exactly once, with its value"
files="$($K run files "$id" 2>&1)"
assert_contains "$files" "outputs/result.txt" "the outputs were stored"
assert_contains "$files" "outputs/sub/more.txt" "the outputs' subfolders were stored"
$K run download "$id" outputs/result.txt --to "$T/dl" >/dev/null 2>&1
assert_eq "the result" "$(cat "$T/dl/outputs/result.txt" 2>/dev/null)" "the stored output has its content"
assert_contains "$($K run logs "$id" 2>&1)" "were stored after the storage failure" "the run's log says they were stored late"
[ ! -e "$WS/runs/$id/channel" ] && [ ! -e "$WS/runs/$id/wd" ] && [ ! -e "$WS/runs/.unstored/$id" ] && ok "then the channel, working folder and marker are removed" \
  || fail "channel/wd/marker left after storing: $(ls -a "$WS/runs/$id" "$WS/runs/.unstored" 2>&1)"
assert_eq "ok" "$(sql "PRAGMA integrity_check")" "the store is intact"
finish
