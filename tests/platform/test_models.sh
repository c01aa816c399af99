#!/usr/bin/env bash
# platform_models: the model registry: register from a run (file, folder) and
# from disk, auto-incrementing versions, list/show/download/delete, lineage,
# tag/untag, and clear failures.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src"
printf 'mkdir -p outputs/net && echo W1 > outputs/model.npz && echo net > outputs/net/desc.json\n' > "$T/src/t.sh"
id="$(submit --experiment m --source "$T/src" --entry t.sh)"
run_ok $K run wait "$id" >/dev/null
out="$(run_ok $K model register --run "$id" --name chainer-dnn-mnist --path outputs/model.npz --tag acc=0.97 --description "first")"
assert_eq "chainer-dnn-mnist:1" "$(echo "$out" | tail -1)" "first version is 1"
out="$(run_ok $K model register --run "$id" --name chainer-dnn-mnist --path outputs/)"
assert_eq "chainer-dnn-mnist:2" "$(echo "$out" | tail -1)" "versions auto-increment; a folder registers"
assert_contains "$out" "2 files" "folder registers all of its files"
echo local > "$T/local.npz"
assert_eq "other:1" "$(run_ok $K model register --name other --file "$T/local.npz" | tail -1)" "register a file from disk"
mkdir -p "$T/mdir/sub" && echo a > "$T/mdir/a" && echo b > "$T/mdir/sub/b"
assert_eq "other:2" "$(run_ok $K model register --name other --file "$T/mdir" | tail -1)" "register a folder from disk"
l="$(run_ok $K model list --json)"
assert_eq "chainer-dnn-mnist:1 chainer-dnn-mnist:2 other:1 other:2" "$(jget "$l" '" ".join("%s:%d" % (m["name"], m["version"]) for m in j)')" "model list"
assert_eq 2 "$(jget "$(run_ok $K model list --name other --json)" 'len(j)')" "model list --name"
assert_contains "$(run_ok $K model list)" "chainer-dnn-mnist" "model list text"
s="$(run_ok $K model show chainer-dnn-mnist --json)"
assert_eq "2 $id" "$(jget "$s" '"%d %s" % (j["version"], j["run"])')" "show without version = latest, with lineage"
assert_eq "outputs/model.npz outputs/net/desc.json" "$(jget "$s" '" ".join(f["path"] for f in j["files"])')" "folder files keep their paths"
s="$(run_ok $K model show chainer-dnn-mnist:1 --json)"
assert_eq "0.97 first model.npz" "$(jget "$s" 'j["tags"]["acc"] + " " + j["description"] + " " + j["files"][0]["path"]')" "tags, description, file"
assert_eq "$(sha256sum "$T/local.npz" | cut -d' ' -f1)" "$(jget "$(run_ok $K model show other:1 --json)" 'j["files"][0]["sha256"]')" "stored by sha256"
assert_contains "$(run_ok $K model show chainer-dnn-mnist:1)" "model:        chainer-dnn-mnist:1" "model show text"
run_ok $K model download chainer-dnn-mnist:1 --to "$T/d1" >/dev/null
assert_eq W1 "$(cat "$T/d1/model.npz")" "download version 1"
run_ok $K model download other --to "$T/d2" >/dev/null
assert_eq b "$(cat "$T/d2/mdir/sub/b")" "download latest folder model"
run_ok $K model delete chainer-dnn-mnist:1 >/dev/null
expect_fail "has no version 1" $K model show chainer-dnn-mnist:1
assert_eq "chainer-dnn-mnist:3" "$(run_ok $K model register --run "$id" --name chainer-dnn-mnist --path outputs/model.npz | tail -1)" "a deleted version number is not reused"
# a local .npz registers with the model.json beside it (not with other files there)
mkdir -p "$T/loc" && echo W > "$T/loc/weights.npz" && echo '{}' > "$T/loc/model.json" && echo x > "$T/loc/other"
out="$(run_ok $K model register --name withdesc --file "$T/loc/weights.npz")"
assert_contains "$out" "with model.json" "registering a local .npz says model.json came with it"
assert_eq "model.json weights.npz" "$(jget "$(run_ok $K model show withdesc --json)" '" ".join(f["path"] for f in j["files"])')" \
  "a local .npz registers with the model.json beside it"
run_ok $K model delete withdesc:1 >/dev/null
# tags: set, replace, remove; shown by model show (text and --json)
out="$(run_ok $K model tag other:2 stage=prod acc=0.91)"
assert_contains "$out" "Tagged model other:2: stage=prod" "model tag sets tags"
run_ok $K model tag other:2 acc=0.93 note= >/dev/null
assert_eq "{'acc': '0.93', 'note': '', 'stage': 'prod'}" "$(jget "$(run_ok $K model show other:2 --json)" 'j["tags"]')" \
  "a tag set again takes the new value; an empty value is a value"
assert_contains "$(run_ok $K model show other:2)" "tag:          stage=prod" "model show lists the tags"
assert_eq "{}" "$(jget "$(run_ok $K model show other:1 --json)" 'j["tags"]')" "the tags are the version's, not the model's"
out="$(run_ok $K model untag other:2 note stage)"
assert_contains "$out" "Removed tag stage from model other:2" "model untag removes tags"
assert_eq "{'acc': '0.93'}" "$(jget "$(run_ok $K model show other:2 --json)" 'j["tags"]')" "only acc is left"
expect_fail "model other:2 has no tag 'ghost'" $K model untag other:2 acc ghost
assert_eq "{'acc': '0.93'}" "$(jget "$(run_ok $K model show other:2 --json)" 'j["tags"]')" "a failed untag removes nothing"
expect_fail "say which version to tag" $K model tag other k=v
expect_fail "'k' must look like KEY=VALUE" $K model tag other:2 k
expect_fail "tag key '' must be 1 to 255" $K model tag other:2 =v
expect_fail "at least one KEY=VALUE" $K model tag other:2
expect_fail "has no version 9" $K model tag other:9 k=v
expect_fail "give the tag's KEY only" $K model untag other:2 acc=0.93
assert_contains "$($K model tag --help)" "usage: kusari model tag NAME:VERSION KEY=VALUE" "model tag --help"
assert_contains "$($K model untag --help)" "usage: kusari model untag NAME:VERSION KEY" "model untag --help"
assert_contains "$($K model deploy --help)" "default 200" "model deploy --help gives --batch-wait-us's default, 200"
# failures
expect_fail "has no file or folder 'outputs/missing.npz'" $K model register --run "$id" --name x --path outputs/missing.npz
expect_fail "no run with id 'nope_9'" $K model register --run nope_9 --name x --path outputs/model.npz
expect_fail "--path needs --run" $K model register --name x --path outputs/model.npz
expect_fail "give exactly one of --path" $K model register --name x --run "$id"
expect_fail "missing --name" $K model register --run "$id" --path outputs/model.npz
expect_fail "invalid model name 'a:b/c'" $K model register --name a:b/c --file "$T/local.npz"
expect_fail "cannot register" $K model register --name x --file "$T/nonexistent"
expect_fail "no model named 'ghost'" $K model show ghost
expect_fail "say which version to delete" $K model delete other
expect_fail "must be a positive integer" $K model show other:zero
expect_fail "has no version 7" $K model delete other:7
expect_fail "no model named 'ghost'" $K model download ghost
assert_eq 4 "$(sql 'SELECT count(*) FROM models')" "failed registrations record nothing"
finish
