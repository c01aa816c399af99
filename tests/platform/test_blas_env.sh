#!/usr/bin/env bash
# platform_blas_env: the supervisor gives entries the OpenBLAS kernel set that
# fits this CPU when Debian's OpenBLAS does not know it, and a thread count of
# processors / max_nodes of their compute target (see docs/ARCHITECTURE.md);
# it never overrides a choice made by the submitter or the environment file.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 1 >/dev/null
ver="$(run_ok $K --version)"
assert_contains "$ver" "BLAS: OpenBLAS" "--version names the BLAS kernels"
want="$(echo "$ver" | sed -n 's/.*runs get OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')"

mkdir -p "$T/e"
printf 'echo "coretype=[${OPENBLAS_CORETYPE-unset}]"\necho "threads=[${KUSARI_NUM_THREADS-unset}/${OMP_NUM_THREADS-unset}/${OPENBLAS_NUM_THREADS-unset}]"\n' > "$T/e/show.sh"
id="$(env -u OPENBLAS_CORETYPE $K run submit --experiment blas --source "$T/e" --entry show.sh | tail -1)"
out="$($K run wait "$id" --show-output)"
if [ -n "$want" ]; then
  assert_contains "$out" "coretype=[$want]" "entry gets the suggested OPENBLAS_CORETYPE"
else
  assert_contains "$out" "coretype=[unset]" "no suggestion: the variable stays unset"
fi

id="$(OPENBLAS_CORETYPE=Haswell $K run submit --experiment blas --source "$T/e" --entry show.sh | tail -1)"
out="$($K run wait "$id" --show-output)"
assert_contains "$out" "coretype=[Haswell]" "the submitter's own choice is kept"

echo '{"variables": {"OPENBLAS_CORETYPE": "SandyBridge"}}' > "$T/env.json"
id="$(env -u OPENBLAS_CORETYPE $K run submit --experiment blas --source "$T/e" --entry show.sh --env "$T/env.json" | tail -1)"
out="$($K run wait "$id" --show-output)"
assert_contains "$out" "coretype=[SandyBridge]" "the environment file's choice is kept"
# thread share: one node gets every processor, two nodes half each
procs=$(nproc)
id="$(env -u KUSARI_NUM_THREADS -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS $K run submit --experiment blas --source "$T/e" --entry show.sh | tail -1)"
out="$($K run wait "$id" --show-output)"
assert_contains "$out" "threads=[$procs/$procs/$procs]" "max-nodes 1: all $procs processors"
run_ok $K compute create half --max-nodes 2 >/dev/null
half=$((procs / 2)); [ "$half" -ge 1 ] || half=1
id="$(env -u KUSARI_NUM_THREADS -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS $K run submit --experiment blas --compute half --source "$T/e" --entry show.sh | tail -1)"
out="$($K run wait "$id" --show-output)"
assert_contains "$out" "threads=[$half/$half/$half]" "max-nodes 2: processors / 2 each"
id="$(KUSARI_NUM_THREADS=3 $K run submit --experiment blas --compute half --source "$T/e" --entry show.sh | tail -1)"
out="$($K run wait "$id" --show-output)"
assert_contains "$out" "threads=[3/" "the submitter's KUSARI_NUM_THREADS is kept"
finish
