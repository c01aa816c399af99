#!/usr/bin/env bash
# Bad arguments and bad data give a clear message and a non-zero exit.
set -euo pipefail
TRAIN=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
expect_fail() { # expected-words... -- command...
  local words=() ; while [ "$1" != "--" ]; do words+=("$1"); shift; done; shift
  if "$@" >"$tmp/out" 2>&1; then echo "FAIL: succeeded: $*"; exit 1; fi
  for w in "${words[@]}"; do
    grep -q -- "$w" "$tmp/out" || { echo "FAIL: '$w' not in output of: $*"; cat "$tmp/out"; exit 1; }
  done
}
expect_fail "--batchsize" "integer" -- "$TRAIN" --batchsize 0
expect_fail "--epochs" -- "$TRAIN" -e abc
expect_fail "unexpected argument" -- "$TRAIN" stray
expect_fail "CUDA" -- "$TRAIN" --gpu_id 0
expect_fail "$tmp/nodata" -- "$TRAIN" --data "$tmp/nodata"
# a truncated image file
mkdir "$tmp/bad"
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c' > "$tmp/bad/train-images-idx3-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02' > "$tmp/bad/train-labels-idx1-ubyte"
cp "$tmp/bad/train-images-idx3-ubyte" "$tmp/bad/t10k-images-idx3-ubyte"
cp "$tmp/bad/train-labels-idx1-ubyte" "$tmp/bad/t10k-labels-idx1-ubyte"
expect_fail "train-images-idx3-ubyte" -- "$TRAIN" --data "$tmp/bad"
"$TRAIN" --help > "$tmp/help"   # (not piped into grep -q: SIGPIPE under pipefail)
grep -q -- "--output_dir" "$tmp/help"
echo "PASS"
