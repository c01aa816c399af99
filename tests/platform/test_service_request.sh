#!/usr/bin/env bash
# platform_service_request: from a real run to a scored test image, as the
# docs tell it, with the examples' defaults.
# - Inside a run the examples write to $KUSARI_OUTPUT_DIR by default (an
#   entry script that changes directory first still gets its model kept);
#   an explicit --output_dir wins. train_mnist and train_mnist_cnn.
# - A model registered as the run's outputs/model.npz gets the model.json
#   written beside it: `model download` gives a servable folder, and that
#   folder, registered from disk, deploys.
# - examples/mnist/score_request.py builds a request from real Fashion-MNIST
#   test images; the deployed model's predictions match the labels (read
#   here, independently) for most of 20 images. Raw pixels (0..255) are
#   outside the description's input_range: a 400 that says so.
# - `model delete` refuses a version a service uses, naming the service,
#   unless --force; the service then fails to start with the reason.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
DATA=/usr/share/datasets/fashion-mnist
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
[ -n "${KUSARI_STATIC_LIB:-}" ] && command -v cc >/dev/null || { echo "skip: no compiler or static library"; exit 77; }
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "skip: dataset-fashion-mnist not installed"; exit 77; }

export KUSARI_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset KUSARI_OUTPUT_DIR
LIBS="$(pkg-config --libs openblas libzip zlib cairo) $(pkg-config --libs ompi-c 2>/dev/null) -lm -pthread"
extra=()
if [ -n "${KUSARI_TEST_CFLAGS:-}" ]; then  # fontconfig's caches (PlotReport's text), as in platform_service_cnn
  printf 'const char *__lsan_default_suppressions(void);\nconst char *__lsan_default_suppressions(void) { return "leak:libfontconfig\\n"; }\n' > "$T/lsan.c"
  extra=("$T/lsan.c")
fi
mkdir -p "$T/src"
for p in train_mnist train_mnist_cnn; do
  cc ${KUSARI_TEST_CFLAGS:-} -O1 -o "$T/src/$p" "$REPO/examples/mnist/$p.c" "${extra[@]}" -I"$KUSARI_INCLUDE_DIR" \
    "$KUSARI_STATIC_LIB" $LIBS || die "cannot compile examples/mnist/$p.c"
done
# an entry that changes directory before it trains: ./outputs is then not the run's
printf 'mkdir -p elsewhere && cd elsewhere && exec ../"$@"\n' > "$T/src/in_subdir.sh"
run_ok $K compute create cpu --type local --max-nodes 1 >/dev/null

# --- the examples' default output directory inside a run ------------------------------------
run="$(submit --experiment req --source "$T/src" --entry in_subdir.sh -- train_mnist --epochs 1)"
out="$($K run wait "$run" --show-output 2>&1)"; rc=$?
assert_eq 0 $rc "train_mnist (default output directory) completed as a run"
[ $rc -eq 0 ] || echo "$out" | tail -20 >&2
files="$(run_ok $K run files "$run")"
assert_contains "$files" "outputs/model.npz" "train_mnist wrote model.npz into the run's outputs (\$KUSARI_OUTPUT_DIR)"
assert_contains "$files" "outputs/model.json" "and model.json beside it"
cnn="$(submit --experiment req --source "$T/src" --entry in_subdir.sh -- train_mnist_cnn --epochs 1 --train-size 300 --test-size 100)"
out="$($K run wait "$cnn" --show-output 2>&1)"; rc=$?
assert_eq 0 $rc "train_mnist_cnn (default output directory) completed as a run"
[ $rc -eq 0 ] || echo "$out" | tail -20 >&2
files="$(run_ok $K run files "$cnn")"
assert_contains "$files" "outputs/model.npz" "train_mnist_cnn wrote model.npz into the run's outputs, not ./result"
assert_contains "$files" "outputs/log" "and its Trainer's log"
cnn2="$(submit --experiment req --source "$T/src" --entry train_mnist_cnn -- --epochs 1 --train-size 300 --test-size 100 \
  --output_dir ./outputs/mine)"
run_ok $K run wait "$cnn2" >/dev/null
files="$(run_ok $K run files "$cnn2")"
assert_contains "$files" "outputs/mine/model.npz" "an explicit --output_dir wins"
assert_not_contains "$files" "outputs/model.npz" "and nothing goes to the default"

# --- register outputs/model.npz: model.json comes with it ---------------------------------------
out="$(run_ok $K model register --run "$run" --name fm --path outputs/model.npz)"
assert_contains "$out" "with model.json" "registering the .npz says model.json came with it"
assert_eq "model.json model.npz" "$(jget "$(run_ok $K model show fm:1 --json)" '" ".join(f["path"] for f in j["files"])')" \
  "the version's files: the weights and the description beside them"
run_ok $K model download fm:1 --to "$T/dl" >/dev/null
[ -s "$T/dl/model.json" ] && [ -s "$T/dl/model.npz" ] || fail "model download gives model.npz and model.json"
run_ok $K model register --name fm-copy --file "$T/dl" >/dev/null
URI="$(run_ok $K model deploy fm-copy --name req --auth --workers 2 | tail -1)"
assert_contains "$URI" "http://127.0.0.1:" "the downloaded folder, registered from disk, deploys ($URI)"
KEY="$(jget "$(run_ok $K service keys req --json)" 'j["primary_key"]')"
assert_contains "$(run_ok $K service logs req)" "input values must lie in [0, 1]" "the server logs the declared input range"

# --- score_request.py: real test images, predictions against the labels -------------------------
python3 "$REPO/examples/mnist/score_request.py" --count 20 > "$T/request.json" 2>"$T/sr.err" || die "score_request.py failed: $(cat "$T/sr.err")"
code="$(curl -s -m 60 -o "$T/answer.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary @"$T/request.json" "$URI")"
assert_eq 200 "$code" "the request of 20 test images scores"
python3 - "$T/answer.json" "$DATA/t10k-labels-idx1-ubyte.gz" <<'EOF'
import gzip, json, sys
preds = json.load(open(sys.argv[1]))["predictions"]
raw = gzip.open(sys.argv[2]).read()
assert raw[:4] == b"\x00\x00\x08\x01", "not an idx1 label file"
labels = list(raw[8:8 + 20])
hits = sum(p == t for p, t in zip(preds, labels))
print("%d of 20 predictions match the labels" % hits)
# one epoch of train_mnist reaches about 0.8 on the test set; chance is 0.1
assert len(preds) == 20 and hits >= 12, (hits, preds, labels)
EOF
assert_eq 0 $? "most of the 20 predictions match the test labels"
r="$(python3 "$REPO/examples/mnist/score_request.py" --index 9999 --count 1)"
assert_eq 784 "$(echo "$r" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"][0]))')" "--index picks an image: 784 values"
expect_fail "has 10000 (0 to 9999)" python3 "$REPO/examples/mnist/score_request.py" --index 9999 --count 2
expect_fail "cannot read the images" python3 "$REPO/examples/mnist/score_request.py" --images "$T/none.gz"

# --- raw pixels are outside the declared range --------------------------------------------------
python3 - "$DATA/t10k-images-idx3-ubyte.gz" > "$T/raw.json" <<'EOF'
import gzip, json, sys
px = gzip.open(sys.argv[1]).read()[16:16 + 784]
print(json.dumps({"data": [list(px)]}))
EOF
code="$(curl -s -m 60 -o "$T/answer.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary @"$T/raw.json" "$URI")"
assert_eq 400 "$code" "raw pixels (0..255): 400"
assert_contains "$(cat "$T/answer.json")" "outside the model's input range [0, 1]" "the answer names the range"
assert_contains "$(cat "$T/answer.json")" "pixels / 255" "and the preprocessing"

# --- model delete while a service uses the version ------------------------------------------------
expect_fail "model fm-copy:1 is used by service req" $K model delete fm-copy:1
assert_contains "$($K model delete fm-copy:1 2>&1)" "--force" "the hint names --force"
assert_eq 1 "$(jget "$(run_ok $K model list --name fm-copy --json)" 'len(j)')" "the refused delete kept the version"
assert_eq 200 "$(curl -s -m 60 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" --data-binary @"$T/request.json" "$URI")" \
  "the service goes on serving"
run_ok $K model deploy fm-copy --name req2 >/dev/null
run_ok $K service stop req2 >/dev/null
expect_fail "used by services req, req2" $K model delete fm-copy:1
out="$($K model delete fm-copy:1 --force 2>&1)"; rc=$?
assert_eq 0 $rc "--force deletes it"
assert_contains "$out" "warning: services req, req2 used fm-copy:1" "and warns about the services"
expect_fail "has no version 1" $K model show fm-copy:1
expect_fail "model fm-copy:1 was deleted" $K service start req2
assert_contains "$($K service start req2 2>&1)" "kusari model deploy fm-copy:VERSION --name req2" "the reason says how to fix it"
run_ok $K model delete fm:1 >/dev/null   # no service uses it
assert_eq 0 "$(jget "$(run_ok $K model list --name fm --json)" 'len(j)')" "a version no service uses deletes at once"

run_ok $K service stop req >/dev/null
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/services/*/server.log 2>/dev/null)"
[ -z "$bad" ] || fail "sanitizer reports from the server: $(cat $bad | head -40)"
finish
