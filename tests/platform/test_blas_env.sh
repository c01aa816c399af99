#!/usr/bin/env bash
# platform_blas_env: the supervisor gives entries the OpenBLAS kernel set that
# fits this CPU when Debian's OpenBLAS does not know it (see
# docs/ARCHITECTURE.md), and never overrides a choice made by the user or the
# environment file.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu --max-nodes 1 >/dev/null
ver="$(run_ok $K --version)"
assert_contains "$ver" "BLAS: OpenBLAS" "--version names the BLAS kernels"
want="$(echo "$ver" | sed -n 's/.*runs get OPENBLAS_CORETYPE=\([A-Za-z0-9]*\).*/\1/p')"

mkdir -p "$T/e"
printf 'echo "coretype=[${OPENBLAS_CORETYPE-unset}]"\n' > "$T/e/show.sh"
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
finish
