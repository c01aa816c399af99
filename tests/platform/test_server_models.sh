#!/usr/bin/env bash
# platform_server_models: model registration over the tracking server's API
# (issue 12 §2), against a real `kusari server` on 127.0.0.1 with a small
# --max-body. PUT /blobs/{sha256} stores bytes only when they hash to the
# name; POST /models/{name}/versions registers a real run's file or folder
# (the server collects them as `model register --run --path` does, model.json
# going with a single .npz) or uploaded blobs, with versions counted by the
# store as locally; the registered bytes download unchanged. Every bad input
# (traversal, a file given twice, a blob not uploaded or of another size,
# bad names and bodies) is 400 and registers nothing; read-only tokens 403,
# wrong ones 401, unknown runs 404, bodies over --max-body 413.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/server_lib.sh"
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
cat > "$T/src/job.sh" <<'SH'
mkdir -p outputs/net
printf 'weights' > outputs/net/model.npz
printf '{"format": "x"}' > outputs/net/model.json
printf 'notes' > outputs/net/notes.txt
SH
A="$(submit --experiment m --source "$T/src" --entry job.sh)"
run_ok $K run wait "$A" >/dev/null
TOK="$($K server token create rw 2>/dev/null)"
RO="$($K server token create ro --read-only 2>/dev/null)"
start_server --max-body 4096
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# --- blobs --------------------------------------------------------------------------------------
H="$(sha 'hello blob')"
api GET "blobs/$H" >/dev/null; assert_eq 404 "$(code)" "GET /blobs/{sha} before the upload: 404"
api PUT "blobs/$H" --data-binary 'hello blob' -H 'Content-Type: application/octet-stream' >/dev/null
assert_eq 201 "$(code)" "PUT /blobs/{sha}: 201"
api PUT "blobs/$H" --data-binary 'hello blob' >/dev/null; assert_eq 200 "$(code)" "the same again: 200 (kept once)"
body="$(api GET "blobs/$H")"; assert_eq 200 "$(code)" "GET /blobs/{sha}: 200"
assert_eq "$H 10" "$(jget "$body" 'j["sha256"] + " " + str(j["size"])')" "its sha256 and size"
api PUT "blobs/$H" --data-binary 'other bytes' >/dev/null; assert_eq 400 "$(code)" "bytes that do not hash to the name: 400"
assert_contains "$(cat "$T/body")" "the body's sha256 is $(sha 'other bytes')" "it names the sha256 that arrived"
api PUT "blobs/XYZ" --data-binary 'x' >/dev/null; assert_eq 400 "$(code)" "a name that is not a sha256: 400"
api GET "blobs/.." --path-as-is >/dev/null; assert_eq 400 "$(code)" "GET /blobs/.. : 400 (not a sha256)"
api GET "blobs/..%2fkusari.db" --path-as-is >/dev/null; assert_eq 404 "$(code)" "GET /blobs/..%2fkusari.db: 404 (no such path)"
TOKEN_HEADER="Authorization: Bearer $RO" api PUT "blobs/$(sha x)" --data-binary 'x' >/dev/null
assert_eq 403 "$(code)" "PUT /blobs with a read-only token: 403"
TOKEN_HEADER="Authorization: Bearer kst_wrong" api GET "blobs/$H" >/dev/null; assert_eq 401 "$(code)" "GET /blobs with a wrong token: 401"
head -c 5000 /dev/zero > "$T/big"
api PUT "blobs/$(sha256sum "$T/big" | cut -d' ' -f1)" --data-binary @"$T/big" >/dev/null
assert_eq 413 "$(code)" "a blob over --max-body: 413"

# --- from a run's files ------------------------------------------------------------------------------
reg() { api POST "models/$1/versions" -d "$2"; }
body="$(reg net "{\"run\": \"$A\", \"path\": \"outputs/net/model.npz\", \"description\": \"d\", \"tags\": {\"stage\": \"dev\"}}")"
assert_eq 201 "$(code)" "POST /models/net/versions from a run's .npz: 201"
same_json "$body" "[1, \"$A\", \"outputs/net/model.npz\", [\"model.json\", \"model.npz\"], true, {\"stage\": \"dev\"}, \"d\"]" \
  "version 1 from the run, model.json beside the .npz, tags and description" \
  '[j["model"]["version"], j["model"]["run"], j["model"]["path"], sorted(f["path"] for f in j["model"]["files"]), j["model_json_added"], j["model"]["tags"], j["model"]["description"]]'
same_json "$(api GET models/net/versions/1)" "$($K model show net:1 --json)" "the version as model show --json prints it"
body="$(reg net "{\"run\": \"$A\", \"path\": \"outputs/net/\"}")"
assert_eq 201 "$(code)" "a run's folder: 201"
same_json "$body" '[2, ["net/model.json", "net/model.npz", "net/notes.txt"], false]' "version 2 (counted by the store), the folder's files" \
  '[j["model"]["version"], sorted(f["path"] for f in j["model"]["files"]), j["model_json_added"]]'
# --- from uploaded blobs -------------------------------------------------------------------------------
W="$(sha 'w-bytes')"; D="$(sha '{}')"
api PUT "blobs/$W" --data-binary 'w-bytes' >/dev/null; api PUT "blobs/$D" --data-binary '{}' >/dev/null
body="$(reg up "{\"files\": [{\"path\": \"model.npz\", \"sha256\": \"$W\", \"size\": 7}, {\"path\": \"model.json\", \"sha256\": \"$D\", \"size\": 2}], \"source\": \"/home/me/up\", \"model_json_added\": true}")"
assert_eq 201 "$(code)" "uploaded blobs: 201"
same_json "$body" '[1, null, "/home/me/up", true]' "version 1, no run, the source as given" \
  '[j["model"]["version"], j["model"]["run"], j["model"]["path"], j["model_json_added"]]'
run_ok $K model download up:1 --to "$T/dl" >/dev/null
assert_eq "w-bytes {}" "$(cat "$T/dl/model.npz") $(cat "$T/dl/model.json")" "the model's files download as uploaded"

# --- bad input: 400 and nothing registered ---------------------------------------------------------
bad() {  # bad NAME BODY WHAT [MESSAGE]
  reg "$1" "$2" >/dev/null
  assert_eq 400 "$(code)" "$3: 400"
  [ -z "${4:-}" ] || assert_contains "$(cat "$T/body")" "$4" "$3: says '$4'"
}
F1="{\"path\": \"a\", \"sha256\": \"$W\", \"size\": 7}"
bad x "{\"files\": [{\"path\": \"../etc/passwd\", \"sha256\": \"$W\", \"size\": 7}]}" "a file path with '..'" "not a file's path"
bad x "{\"files\": [{\"path\": \"/abs\", \"sha256\": \"$W\", \"size\": 7}]}" "an absolute file path" "not a file's path"
bad x "{\"files\": [$F1, $F1]}" "a file given twice" "given twice"
bad x "{\"files\": [{\"path\": \"a\", \"sha256\": \"$(sha never)\", \"size\": 1}]}" "a blob not uploaded" "upload it first"
bad x "{\"files\": [{\"path\": \"a\", \"sha256\": \"$W\", \"size\": 8}]}" "a size that is not the blob's" "holds 7 bytes, not 8"
bad x "{\"files\": [{\"path\": \"a\", \"sha256\": \"nothex\", \"size\": 1}]}" "a sha256 that is not one" "is not a sha256"
bad x "{\"files\": []}" "no files"
bad x "{\"run\": \"$A\", \"path\": \"../../kusari.db\"}" "a run path with '..'" "not absolute, no '..'"
bad x "{\"run\": \"$A\", \"path\": \"outputs/net/model.npz\", \"files\": [$F1]}" "both a path and files"
bad x "{\"path\": \"outputs\"}" "a path without its run"
bad x "{\"run\": \"$A\", \"path\": \"outputs\", \"tags\": {\"a=b\": \"c\"}}" "a tag key with '='"
bad x "{\"run\": \"$A\", \"path\": \"outputs\", \"description\": 5}" "a description that is not text"
bad x '[1' "a body that is not JSON"
bad 'bad%20name' "{\"run\": \"$A\", \"path\": \"outputs\"}" "a model name with a space" "invalid model name"
reg x "{\"run\": \"nope\", \"path\": \"outputs\"}" >/dev/null; assert_eq 404 "$(code)" "an unknown run: 404"
reg x "{\"run\": \"$A\", \"path\": \"outputs/nope\"}" >/dev/null; assert_eq 404 "$(code)" "a path the run does not have: 404"
assert_contains "$(cat "$T/body")" "has no file or folder 'outputs/nope' to register" "it says so"
TOKEN_HEADER="Authorization: Bearer $RO" reg x "{\"run\": \"$A\", \"path\": \"outputs\"}" >/dev/null
assert_eq 403 "$(code)" "a read-only token: 403"
api POST "models/x/versions" --data-binary @"$T/big" >/dev/null; assert_eq 413 "$(code)" "a body over --max-body: 413"
assert_eq "net up" "$($K model list --json | python3 -c 'import json,sys; print(" ".join(sorted({m["name"] for m in json.load(sys.stdin)})))')" \
  "nothing was registered by the refused requests"
check_json
stop_server
finish
