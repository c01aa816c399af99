#!/usr/bin/env bash
# platform_safety: paths and names cannot escape: '../', absolute paths and
# symbolic links in downloads, registrations, snapshots and run outputs.
. "$(dirname "$0")/lib.sh"
run_ok $K compute create cpu >/dev/null
mkdir -p "$T/src" "$T/outside"
echo secret > "$T/outside/secret.txt"
cat > "$T/src/t.sh" <<SH
mkdir -p outputs
echo ok > outputs/model.npz
ln -s "$T/outside/secret.txt" outputs/leak.txt
ln -s /etc outputs/etc
SH
id="$(submit --experiment s --source "$T/src" --entry t.sh)"
run_ok $K run wait "$id" >/dev/null
files="$(run_ok $K run files "$id")"
assert_not_contains "$files" "leak.txt" "symlinks in outputs are not stored (not followed)"
assert_not_contains "$files" "outputs/etc" "directory symlinks in outputs are not followed"
# download paths
expect_fail "absolute paths and '..' are not allowed" $K run download "$id" ../../outside/secret.txt
expect_fail "absolute paths and '..' are not allowed" $K run download "$id" /etc/passwd
expect_fail "absolute paths and '..' are not allowed" $K run download "$id" outputs/../../x
# a --to directory whose subfolder is a symlink pointing outside: refused
mkdir -p "$T/to" && ln -s "$T/outside" "$T/to/outputs"
expect_fail "symbolic link" $K run download "$id" outputs/model.npz --to "$T/to"
[ -e "$T/outside/model.npz" ] && fail "download wrote through a symlink" || ok "nothing written outside --to"
# a target file that is a symlink: refused
mkdir -p "$T/to2/outputs" && ln -s "$T/outside/secret.txt" "$T/to2/outputs/model.npz"
expect_fail "symbolic link" $K run download "$id" outputs/model.npz --to "$T/to2"
assert_eq secret "$(cat "$T/outside/secret.txt")" "symlink target not overwritten"
# registration paths
expect_fail "must be a path inside the run's files" $K model register --run "$id" --name m --path ../outside
expect_fail "must be a path inside the run's files" $K model register --run "$id" --name m --path /etc/passwd
mkdir -p "$T/mdir" && ln -s "$T/outside/secret.txt" "$T/mdir/link"
expect_fail "is a symbolic link" $K model register --name m --file "$T/mdir"
# snapshots: a symlink escaping the source fails the submit, one inside is fine
mkdir -p "$T/s2" && echo 'cat data.txt' > "$T/s2/t.sh" && echo inside > "$T/s2/real.txt" && ln -s real.txt "$T/s2/data.txt"
id2="$(submit --experiment s --source "$T/s2" --entry t.sh)"
assert_contains "$($K run wait "$id2" --show-output)" "inside" "symlink inside the source is snapshotted as its content"
ln -s "$T/outside/secret.txt" "$T/s2/escape.txt"
expect_fail "points outside the source directory" $K run submit --experiment s --source "$T/s2" --entry t.sh
ln -s /etc "$T/s2/etcdir"; rm "$T/s2/escape.txt"
expect_fail "points outside the source directory" $K run submit --experiment s --source "$T/s2" --entry t.sh
rm "$T/s2/etcdir"
# names and entries
expect_fail "invalid experiment name '../evil'" $K run submit --experiment ../evil --source "$T/s2" --entry t.sh
expect_fail "invalid experiment name 'a/b'" $K run submit --experiment a/b --source "$T/s2" --entry t.sh
expect_fail "must be a relative path inside the source" $K run submit --experiment s --source "$T/s2" --entry ../t.sh
expect_fail "must be a relative path inside the source" $K run submit --experiment s --source "$T/s2" --entry /bin/sh
expect_fail "invalid name" $K compute create "bad name"
expect_fail "invalid model name" $K model register --name "" --file "$T/outside/secret.txt"
# entry that is not executable
echo 'int main;' > "$T/s2/prog"; chmod -x "$T/s2/prog"
id3="$(submit --experiment s --source "$T/s2" --entry prog)"
$K run wait "$id3" >/dev/null 2>&1
assert_contains "$(jget "$(run_ok $K run show "$id3" --json)" 'j["error"]')" "is not executable" "non-executable entry fails clearly"
finish
