#!/usr/bin/env bash
# platform_distributed: distributed runs on the local target with a real
# mpirun (issue 13, platform side), 2 ranks:
#  - examples/mnist/train_mnist --communicator mpi on a 400/200-image slice of
#    Fashion-MNIST as one tracked run (--nodes 2 on a 2-node target):
#    Completed, Accuracy logged once per epoch (rank 0 reports, not every
#    rank), outputs/model.npz collected, per-rank logs stored and printed by
#    'run logs --rank', 'run show' gives nodes, processes and each rank's exit;
#  - both ranks log through the one metrics channel at once (platform_log_entry,
#    5000 values of "loss" each): every value of both arrives, none corrupted,
#    each kept with its rank: run metrics shows rank 0's, --rank 1 rank 1's;
#    "acc" logged with different values by each rank: run list --metrics,
#    --filter and run show use rank 0's, the API's ?rank=1 gives rank 1's;
#    run wait --show-output streams rank 0's output, not rank 1's;
#  - --mpirun PATH and KUSARI_MPIRUN choose the launcher;
#  - a sweep file's run.nodes / run.processes_per_node: children of 2 ranks
#    (the primary metric and the children's values are rank 0's);
#  - bad input: --nodes above the target's max nodes, a bad --nodes, a missing
#    launcher, --rank of a plain run or of a rank that does not exist,
#    kusari.* tags by hand.
# Open MPI as root on 2 cores needs its permission variables, set here (a
# user does not). Skipped (77) without mpirun, the example or the data set.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
# the system's python3 when there is one: a version manager's shim costs
# half a second a call on a loaded machine, and this test calls it often
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
jget() { "$PY" -c 'import json,sys; j=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="$(cd "$(dirname "$K")/.." && pwd)"
TRAIN="$BUILD/examples/mnist/train_mnist"
command -v mpirun >/dev/null || { echo "skip: no mpirun (apt-get install openmpi-bin)"; exit 77; }
[ -x "$TRAIN" ] || { echo "skip: $TRAIN not built"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }
/usr/bin/python3 -c "import numpy" 2>/dev/null || { echo "skip: no numpy"; exit 77; }
"$TRAIN" --help | grep -q -- "--communicator" || { echo "skip: train_mnist has no --communicator"; exit 77; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# under ASan: Open MPI's own until-exit allocations are not kusari's leaks
printf 'leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\nleak:libpmix.so\nleak:libevent\nleak:mca_\n' > "$T/lsan.supp"
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$T/lsan.supp"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"  # full stacks to match them
# sanitizer_reports: what an instrumented `kusari __rank` (or entry) said in the ranks' logs
sanitizer_reports() { grep -hE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/runs/*/logs/std_log*.txt 2>/dev/null | head -20; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
/usr/bin/python3 - "$T/data" <<'PY' || die "cannot make the MNIST slice"
import gzip, os, sys
import numpy as np
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
os.makedirs(dst)
for name, n in (("train", 400), ("t10k", 200)):
    for kind, hdr in (("images-idx3-ubyte", 16), ("labels-idx1-ubyte", 8)):
        raw = gzip.open("%s/%s-%s.gz" % (src, name, kind)).read()
        head = bytearray(raw[:hdr])
        head[4:8] = np.array([n], ">u4").tobytes()
        item = 784 if kind.startswith("images") else 1
        open("%s/%s-%s" % (dst, name, kind), "wb").write(bytes(head) + raw[hdr:hdr + n * item])
PY
run_ok "$K" compute create cpu --max-nodes 2 >/dev/null
mkdir -p "$T/mnist" && cp "$TRAIN" "$T/mnist/"

# ---- the MNIST example as a 2-rank run
id="$(submit -e dist --source "$T/mnist" --entry train_mnist --nodes 2 --processes-per-node 1 \
      -- --communicator mpi -e 2 -b 50 --data "$T/data")"
out="$("$K" run wait "$id" --timeout 120 2>&1)"; rc=$?
assert_eq 0 $rc "the 2-rank MNIST run completes"
[ $rc -eq 0 ] || { echo "$out"; cat "$WS/runs/$id/logs/std_log.txt" "$WS/runs/$id/supervisor.log"; }
mj="$(run_ok "$K" run metrics "$id" --name Accuracy --json)"
assert_eq 2 "$(jget "$mj" 'len(j["Accuracy"])')" "Accuracy logged once per epoch for 2 epochs (by rank 0 only)"
assert_eq "0 1" "$(jget "$mj" '" ".join(str(p["step"]) for p in j["Accuracy"])')" "Accuracy steps 0, 1"
assert_eq 2 "$(jget "$(run_ok "$K" run show "$id" --json)" 'int(j["metrics"]["Ranks"])')" "the program saw 2 MPI ranks"
files="$(run_ok "$K" run files "$id")"
assert_contains "$files" "outputs/model.npz" "model.npz collected"
assert_contains "$files" "logs/std_log_rank_0.txt" "rank 0's log stored"
assert_contains "$files" "logs/std_log_rank_1.txt" "rank 1's log stored"
run_ok "$K" run download "$id" outputs/model.npz --to "$T/got" >/dev/null
keys="$(/usr/bin/python3 -c "import numpy as np; print(' '.join(sorted(np.load('$T/got/outputs/model.npz').keys())))")"
assert_contains "$keys" "l1/W" "the collected model.npz loads in numpy"
j="$(run_ok "$K" run show "$id" --json)"
assert_eq "2 1 2" "$(jget "$j" '"%d %d %d" % (j["distributed"]["nodes"], j["distributed"]["processes_per_node"], j["distributed"]["ranks"])')" "run show --json: nodes, processes per node, ranks"
assert_eq "0:0 1:0" "$(jget "$j" '" ".join("%d:%d" % (r["rank"], r["exit_code"]) for r in j["distributed"]["rank_status"])')" "run show --json: each rank exited 0"
txt="$(run_ok "$K" run show "$id")"
assert_contains "$txt" "distributed:  2 nodes x 1 process per node = 2 ranks" "run show: the shape"
assert_contains "$txt" "rank 1        exit 0" "run show: rank 1's exit status"
r0="$(run_ok "$K" run logs "$id" --rank 0)"
r1="$(run_ok "$K" run logs "$id" --rank 1)"
all="$(run_ok "$K" run logs "$id")"
assert_contains "$r0" "val_accuracy" "rank 0's log has the epoch lines"
assert_not_contains "$r1" "val_accuracy" "rank 1's log has no epoch lines (rank 0 prints)"
assert_contains "$all" "epoch:02" "the merged log has rank 0's output"
# the live copies gone, the stored ones are printed
rm -rf "$WS/runs/$id/logs"
assert_eq "$r0" "$(run_ok "$K" run logs "$id" --rank 0)" "run logs --rank 0 from the stored copy"

# ---- two ranks writing to one metrics channel at once
mkdir -p "$T/logger" && cp "$ENTRY_BIN" "$T/logger/log_entry"
id2="$(submit -e dist --source "$T/logger" --entry log_entry --processes-per-node 2 -- --n 5000 --by-rank 1)"
out="$(run_ok "$K" run wait "$id2" --timeout 120 --show-output)"
assert_contains "$out" "rank 0 logs acc" "run wait --show-output streams rank 0's output"
assert_not_contains "$out" "rank 1 logs acc" "run wait --show-output does not stream rank 1's"
assert_contains "$(run_ok "$K" run logs "$id2")" "rank 1 logs acc" "(the merged log has rank 1's line)"
run_ok "$K" run metrics "$id2" --name loss --json > "$T/loss.json"
run_ok "$K" run metrics "$id2" --name loss --json --rank 1 > "$T/loss1.json"
# each rank logged 0..4999 once, as steps 0..4999 of its own series
same="lambda j: [(p['step'], p['value']) for p in j['loss']] == [(i, float(i)) for i in range(5000)]"
got="$("$PY" -c "import json,sys; f=$same; print(f(json.load(open(sys.argv[1]))), f(json.load(open(sys.argv[2]))))" "$T/loss.json" "$T/loss1.json")"
assert_eq "True True" "$got" "each rank's 5000 values arrived intact through the shared channel, each with its rank"
# two ranks logging one name do not interleave: rank 0 10 11 12, rank 1 20 21 22
acc="$(jget "$(run_ok "$K" run metrics "$id2" --name acc --json)" '" ".join("%d:%g" % (p["step"], p["value"]) for p in j["acc"])')"
assert_eq "0:10 1:11 2:12" "$acc" "run metrics: rank 0's acc"
acc1="$(jget "$(run_ok "$K" run metrics "$id2" --name acc --json --rank 1)" '" ".join("%d:%g" % (p["step"], p["value"]) for p in j["acc"])')"
assert_eq "0:20 1:21 2:22" "$acc1" "run metrics --rank 1: rank 1's acc"
assert_contains "$(run_ok "$K" run metrics "$id2" --rank 1 --csv)" "acc,2," "run metrics --rank 1 lists rank 1's metrics"
expect_fail "rank 2 of run $id2 logged no metric named 'acc'" "$K" run metrics "$id2" --name acc --rank 2
expect_fail "--rank is a rank of the run" "$K" run metrics "$id2" --rank -1
expect_fail "--rank is a rank of the run" "$K" run metrics "$id2" --rank one
assert_eq "12" "$(jget "$(run_ok "$K" run list -e dist --metrics acc --json)" '"%g" % [r for r in j if r["id"] == "'"$id2"'"][0]["metrics"]["acc"]')" "run list --metrics: rank 0's latest acc"
assert_eq "$id2" "$(jget "$(run_ok "$K" run list -e dist --filter 'metrics.acc = 12' --json)" '" ".join(r["id"] for r in j)')" "--filter metrics.acc = 12 finds the run (rank 0's value)"
assert_eq "" "$(jget "$(run_ok "$K" run list -e dist --filter 'metrics.acc = 22' --json)" '" ".join(r["id"] for r in j)')" "--filter metrics.acc = 22 does not (rank 1's value)"
assert_eq "12" "$(jget "$(run_ok "$K" run show "$id2" --json)" '"%g" % j["metrics"]["acc"]')" "run show: rank 0's latest acc"
# the tracking server's series route: ?rank=R
TOK="$("$K" server token create dist 2>/dev/null)"
start_server
assert_eq "0 10 11 12" "$(jget "$(api GET "runs/$id2/metrics/acc")" '" ".join(["%d" % j["rank"]] + ["%g" % p["value"] for p in j["points"]])')" "GET .../metrics/acc: rank 0's"
assert_eq "1 20 21 22" "$(jget "$(api GET "runs/$id2/metrics/acc?rank=1")" '" ".join(["%d" % j["rank"]] + ["%g" % p["value"] for p in j["points"]])')" "GET .../metrics/acc?rank=1: rank 1's"
api GET "runs/$id2/metrics/acc?rank=x" >/dev/null
assert_eq 400 "$(code)" "GET ...?rank=x: 400"
api GET "runs/$id2/metrics/acc?rank=1&max_points=10" >/dev/null
assert_eq 400 "$(code)" "GET ...?rank=1&max_points=10: 400 (downsampling is rank 0's)"
api GET "runs/$id2/metrics/acc?rank=3" >/dev/null
assert_eq 404 "$(code)" "GET ...?rank=3 (logged nothing): 404"
stop_server
assert_eq "0:0 1:0" "$(jget "$(run_ok "$K" run show "$id2" --json)" '" ".join("%d:%d" % (r["rank"], r["exit_code"]) for r in j["distributed"]["rank_status"])')" "both logging ranks exited 0"

# ---- another launcher: --mpirun PATH, else $KUSARI_MPIRUN
printf '#!/bin/sh\necho "launched by $(basename "$0")"\nexec mpirun "$@"\n' > "$T/my-mpirun"
cp "$T/my-mpirun" "$T/env-mpirun"
chmod +x "$T/my-mpirun" "$T/env-mpirun"
export KUSARI_MPIRUN="$T/env-mpirun"
id3="$(submit -e dist --source "$T/logger" --entry log_entry --processes-per-node 2 --mpirun "$T/my-mpirun" -- --n 1)"
id4="$(submit -e dist --source "$T/logger" --entry log_entry --processes-per-node 2 -- --n 1)"
unset KUSARI_MPIRUN
run_ok "$K" run wait "$id3" --timeout 60 >/dev/null
run_ok "$K" run wait "$id4" --timeout 60 >/dev/null
assert_contains "$("$K" run logs "$id3")" "launched by my-mpirun" "--mpirun PATH is the launcher"
assert_eq "$T/my-mpirun" "$(jget "$("$K" run show "$id3" --json)" 'j["distributed"]["launcher"]')" "the launcher is recorded"
assert_contains "$("$K" run logs "$id4")" "launched by env-mpirun" "KUSARI_MPIRUN is the launcher without --mpirun"

# ---- a sweep whose children are distributed runs (run.nodes, run.processes_per_node)
cat > "$T/sweep.json" <<JSON
{"experiment": "dsweep",
 "run": {"source": "$T/logger", "entry": "log_entry", "compute": "cpu", "nodes": 1, "processes_per_node": 2},
 "sampling": {"type": "grid", "space": {"--n": {"choice": [3, 5]}}},
 "primary_metric": {"name": "loss", "goal": "minimize"}, "max_concurrent_runs": 2}
JSON
sw="$(run_ok "$K" sweep submit "$T/sweep.json" | tail -1)"
run_ok "$K" sweep wait "$sw" --timeout 120 >/dev/null
sj="$(run_ok "$K" sweep show "$sw" --json)"
for c in $(jget "$sj" '" ".join(c["id"] for c in j["children"])'); do
  cj="$(run_ok "$K" run show "$c" --json)"
  n="$(jget "$cj" 'j["arguments"][-1]')"
  assert_eq "Completed 2 0:0 1:0" "$(jget "$cj" '"%s %d %s" % (j["status"], j["distributed"]["ranks"], " ".join("%d:%d" % (r["rank"], r["exit_code"]) for r in j["distributed"]["rank_status"]))')" "sweep child $c ran as 2 ranks"
  assert_eq "$n $n" "$(jget "$(run_ok "$K" run metrics "$c" --name loss --json)" 'len(j["loss"])') $(jget "$(run_ok "$K" run metrics "$c" --name loss --json --rank 1)" 'len(j["loss"])')" "sweep child $c: each rank's $n values of loss, apart"
done
echo '{"experiment": "x", "run": {"entry": "log_entry", "nodes": 0}, "sampling": {"type": "grid", "space": {"--n": {"choice": [1]}}}, "primary_metric": {"name": "loss", "goal": "minimize"}}' > "$T/bad.json"
expect_fail "run.nodes' must be an integer from 1 to 1024" "$K" sweep submit "$T/bad.json"

# ---- bad input
n_before="$(sql "SELECT count(*) FROM runs")"
expect_fail "has at most 2" "$K" run submit -e dist --source "$T/logger" --entry log_entry --nodes 3
expect_fail "--nodes must be an integer from 1 to 1024" "$K" run submit -e dist --source "$T/logger" --entry log_entry --nodes two
run_ok "$K" compute create big --max-nodes 8 >/dev/null
expect_fail "4096 ranks" "$K" run submit -e dist --source "$T/logger" --entry log_entry --compute big --nodes 5 --processes-per-node 1000
expect_fail "--processes-per-node must be an integer" "$K" run submit -e dist --source "$T/logger" --entry log_entry --processes-per-node 0
expect_fail "is not an executable file" "$K" run submit -e dist --source "$T/logger" --entry log_entry --nodes 2 --mpirun "$T/no-mpirun"
expect_fail "--mpirun is for distributed runs" "$K" run submit -e dist --source "$T/logger" --entry log_entry --mpirun mpirun
expect_fail "set by kusari itself" "$K" run submit -e dist --source "$T/logger" --entry log_entry --tag kusari.nodes=1
assert_eq "$n_before" "$(sql "SELECT count(*) FROM runs")" "refused submissions record nothing"
plain="$(submit -e dist --source "$T/logger" --entry log_entry --compute cpu -- --n 1)"
run_ok "$K" run wait "$plain" >/dev/null
expect_fail "is not a distributed run" "$K" run logs "$plain" --rank 0
expect_fail "there is no rank 2" "$K" run logs "$id" --rank 2
expect_fail "--rank must be a rank number" "$K" run logs "$id" --rank -1
expect_fail "set by kusari itself" "$K" run tag "$id" kusari.nodes=1
expect_fail "set by kusari itself" "$K" run untag "$id" kusari.rank_status
assert_eq "null" "$(jget "$(run_ok "$K" run show "$plain" --json)" 'json.dumps(j.get("distributed"))')" "a plain run has no distributed section"
assert_eq "" "$(sanitizer_reports)" "no sanitizer report in the ranks' logs"
finish
