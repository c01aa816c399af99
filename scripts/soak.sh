#!/usr/bin/env bash
# Soak test of runs on the local target (issue 18; not in CI: it takes
# minutes). Submits RUNS short runs whose entry logs metric m = 1..N with
# `kusari log metric`, noting each value kusari acknowledged (exit 0) in a
# file of its own; meanwhile kills, at a random moment of each run, one of:
# nothing, the entry (kill -9), the run's supervisor (kill -9) or one of the
# entry's `kusari log` processes (kill -9, possibly mid-record). Then checks:
#   - every run ended with the right status: Completed when nothing was
#     killed (or the kill came after the run had ended, or hit only a
#     `kusari log`), Failed when its entry or its supervisor was killed
#   - every acknowledged metric is in the store, exactly once
#   - PRAGMA integrity_check is ok; no process of a run is left
# and prints the figures (one line each) for bench/RESULTS.md.
#
#   scripts/soak.sh                     # 1,000 runs, 4 at a time
#   scripts/soak.sh 200 --parallel 2    # fewer
#   scripts/soak.sh --kusari build/platform/kusari --keep   # keep the workspace
# Exits 1 if any check failed.
set -uo pipefail
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
cd "$(dirname "$0")/.." || exit 1
RUNS=1000 PAR=4 K="$PWD/build/platform/kusari" KEEP=0 N=20
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --parallel) PAR="$2"; shift ;;
    --kusari) K="$(realpath "$2")"; shift ;;
    --keep) KEEP=1 ;;
    [0-9]*) RUNS="$1" ;;
    *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$K" ] || { echo "soak.sh: no kusari program at $K (build first, or --kusari PATH)" >&2; exit 2; }
W="$(mktemp -d /tmp/kusari-soak-XXXXXX)"
export KUSARI_WORKSPACE="$W/ws" HOME="$W/home"
unset KUSARI_RUN_ID KUSARI_METRICS_CHANNEL KUSARI_UPLOAD_DIR KUSARI_EXPERIMENT KUSARI_TRACKING_URI KUSARI_OUTPUT_DIR
mkdir -p "$HOME" "$W/src" "$W/ack" "$W/kills"
[ "$KEEP" = 1 ] || trap 'rm -rf "$W"' EXIT
sql() { sqlite3 -cmd ".timeout 20000" "$W/ws/kusari.db" "$@"; }
"$K" workspace create "$W/ws" --no-select >/dev/null || exit 1
"$K" compute create cpu --max-nodes "$PAR" >/dev/null || exit 1
cat > "$W/src/job.sh" <<'SH'
for i in $(seq 1 "$2"); do
  kusari log metric m "$i" && echo "$i" >> "$1/$KUSARI_RUN_ID"
  sleep "0.0$((RANDOM % 5))"
done
SH
# kill_later ID: picks an action, waits a random moment, does it; notes
# "action killed_at status_then" in $W/kills/ID
kill_later() {
  local id="$1" act pid target=""
  case $((RANDOM % 4)) in 0) act=none;; 1) act=entry;; 2) act=supervisor;; 3) act=logger;; esac
  sleep "$((RANDOM % 2)).$((RANDOM % 10))"
  local row; row="$(sql "SELECT status || ' ' || coalesce(entry_pid, 0) || ' ' || coalesce(supervisor_pid, 0) FROM runs WHERE id='$id'")"
  local st epid spid; read -r st epid spid <<< "$row"
  case "$act" in
    entry) target="$epid" ;;
    supervisor) target="$spid" ;;
    logger) # a `kusari log` lives for milliseconds: look for one for up to 2 s
      for _ in $(seq 1 100); do
        [ "$epid" -gt 0 ] && target="$(pgrep -P "$epid" -f 'log metric m' | head -1)"
        [ -n "$target" ] && break
        sleep 0.02
      done ;;
  esac
  local done_kill=0
  if [ -n "$target" ] && [ "$target" -gt 0 ] && kill -9 "$target" 2>/dev/null; then done_kill=1; fi
  # after the kill: a supervisor that recorded the run's end before then was not hit in time
  echo "$act $done_kill $(date +%s.%N) $st" > "$W/kills/$id"
}
echo "soak: $RUNS runs, $PAR at a time, workspace $W/ws"
T0=$(date +%s)
ids=()
for r in $(seq 1 "$RUNS"); do
  id="$("$K" run submit --experiment soak --source "$W/src" --entry job.sh --compute cpu -- "$W/ack" "$N" 2>>"$W/submit.err" | tail -1)"
  [ -n "$id" ] || { echo "soak: submit $r failed: $(tail -1 "$W/submit.err")"; continue; }
  ids+=("$id")
  kill_later "$id" &
  # keep at most PAR runs active (plus the queue of one batch)
  while [ "$(sql "SELECT count(*) FROM runs WHERE status NOT IN ('Completed','Failed','Canceled')")" -ge $((2 * PAR)) ]; do
    sleep 0.2; "$K" run list --limit 1 >/dev/null 2>&1   # reconciles runs whose supervisor was killed
  done
done
wait
for id in "${ids[@]}"; do "$K" run wait "$id" --timeout 120 >/dev/null 2>&1; done
T1=$(date +%s)
bad_status=0 lost=0 dup=0 acked=0
declare -A kills=([none]=0 [entry]=0 [supervisor]=0 [logger]=0) missed=0
for id in "${ids[@]}"; do
  read -r act killed at st_then < "$W/kills/$id" || { act=none killed=0 at=0; }
  row="$(sql "SELECT status || ' ' || coalesce(ended, 0) || ' ' || coalesce(exit_code, -1) || ' ' || coalesce(signal, 0) FROM runs WHERE id='$id'")"
  read -r status ended code sig <<< "$row"
  expect=Completed
  if [ "$killed" = 1 ]; then
    kills[$act]=$((kills[$act] + 1))
    # a kill that came too late is no kill: an entry that had already exited
    # (a zombie takes kill -9 without effect: the run records exit code 0, no
    # signal), a supervisor that had recorded the run's end before the kill
    if [ "$act" = entry ]; then
      if [ "$status" = Completed ] && [ "$code" = 0 ] && [ "$sig" = 0 ]; then missed=$((missed + 1)); else expect=Failed; fi
    elif [ "$act" = supervisor ]; then
      if [ "$status" = Completed ] && awk -v e="$ended" -v k="$at" 'BEGIN { exit !(e > 0 && e <= k) }'; then missed=$((missed + 1)); else expect=Failed; fi
    fi
  else
    kills[none]=$((kills[none] + 1))
  fi
  if [ "$status" != "$expect" ]; then
    bad_status=$((bad_status + 1))
    echo "soak: run $id: $status, expected $expect (action $act, kill done $killed, status then $st_then): $(sql "SELECT error FROM runs WHERE id='$id'")"
  fi
  if [ -f "$W/ack/$id" ]; then
    n_ack=$(wc -l < "$W/ack/$id"); acked=$((acked + n_ack))
    vals="$(paste -sd, "$W/ack/$id")"
    l=$(sql "SELECT $n_ack - count(DISTINCT value) FROM metrics WHERE run_id='$id' AND name='m' AND value IN ($vals)")
    d=$(sql "SELECT count(*) - count(DISTINCT value) FROM metrics WHERE run_id='$id' AND name='m'")
    lost=$((lost + l)); dup=$((dup + d))
    [ "$l" = 0 ] || echo "soak: run $id: $l acknowledged metric(s) missing"
  fi
done
integrity="$(sql "PRAGMA integrity_check")"
left="$(pgrep -f "$W/" | grep -v "^$$\$" | wc -l)"
stored="$(sql "SELECT count(*) FROM metrics")"
echo "runs: ${#ids[@]} in $((T1 - T0)) s ($PAR at a time)"
echo "kills: entry ${kills[entry]}, supervisor ${kills[supervisor]}, kusari log ${kills[logger]}, nothing (or nothing left to kill) ${kills[none]} (kills that came after the run had ended: $missed)"
echo "statuses: $bad_status wrong"
echo "metrics: $acked acknowledged, $lost lost, $dup stored twice ($stored stored in all)"
echo "integrity_check: $integrity; processes left: $left"
[ "$bad_status" = 0 ] && [ "$lost" = 0 ] && [ "$dup" = 0 ] && [ "$integrity" = ok ] && [ "$left" = 0 ]
