#!/usr/bin/env bash
# platform_service_keys: a service's keys are not in the store. The store
# (kusari.db, its WAL) holds only their sha256 (checked with sqlite3's dump
# and the raw files, against hashlib's digests); the keys are in
# services/NAME/keys, mode 0600 in a 0700 folder; the server still takes
# both keys over real HTTP and answers 401 to anything else (a wrong key, a
# key one character short or long, the digest itself); --regenerate
# primary|secondary|both updates the file and the store, and a running
# server refuses the old key at once; a lost keys file is an error with a
# hint, and regenerating repairs it; a workspace of schema 4 (keys in plain
# text in the store) is migrated: its keys move into the file, the store
# keeps their digests, and they still open the service.
# The model is a Linear 4->3 written with numpy (no training needed).
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "skip: curl not installed"; exit 77; }
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 not installed"; exit 77; }
/usr/bin/python3 -c "import numpy" 2>/dev/null || { echo "skip: python3-numpy not installed"; exit 77; }
PY=/usr/bin/python3
# the schema version before the keys left the store (platform/store.c's migration 4 -> 5)
PRE_HASH_VERSION=4

mkdir -p "$T/lin"
$PY - "$T/lin" <<'EOF' || die "cannot write the model"
import numpy as np, sys
d = sys.argv[1]
np.savez(d + "/model.npz", **{"l1/W": np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "l1/b": np.zeros(3, np.float32)})
open(d + "/model.json", "w").write('{"format": "kusari-sequential/1", "input": [4], "layers": '
                                   '[{"type": "linear", "name": "l1", "in": 4, "out": 3, "nobias": false}]}\n')
EOF
run_ok $K model register --name lin --file "$T/lin" >/dev/null
URI="$(run_ok $K model deploy lin --name ks --auth --workers 2 | tail -1)"
assert_contains "$URI" "http://127.0.0.1:" "deployed with --auth ($URI)"
one='{"data": [[1, 2, 3, 4]]}'
status() { curl -s -m 20 -o "$T/body" -w '%{http_code}' -d "$one" "$@" "$URI"; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
keys="$(run_ok $K service keys ks --json)"
K1="$(jget "$keys" 'j["primary_key"]')"; K2="$(jget "$keys" 'j["secondary_key"]')"
assert_eq "64 64 1" "${#K1} ${#K2} $([ "$K1" != "$K2" ] && echo 1)" "two different keys of 64 hex digits"
assert_contains "$(run_ok $K service keys ks)" "primary:   $K1" "service keys prints them as text too"

# --- the store holds their digests only ---------------------------------------------------
in_store() {  # in_store TEXT: how many times TEXT is in the store (dump) + its raw files
  local d r
  d="$(sqlite3 -cmd ".timeout 10000" "$WS/kusari.db" .dump | grep -c "$1")"
  r="$(cat "$WS"/kusari.db* | grep -ac "$1")"
  echo "$((d + r))"
}
assert_eq "0 0" "$(in_store "$K1") $(in_store "$K2")" "neither key is in kusari.db (dump, raw file, WAL)"
assert_eq "$(sha "$K1") $(sha "$K2")" "$(sql "SELECT primary_key_sha256 || ' ' || secondary_key_sha256 FROM services WHERE name='ks'")" \
  "the store keeps their sha256 (as hashlib computes it)"
assert_eq 600 "$(stat -c %a "$WS/services/ks/keys")" "the keys file is 0600"
assert_eq 700 "$(stat -c %a "$WS/services/ks")" "in a 0700 folder"
assert_contains "$(cat "$WS/services/ks/keys")" "$K1" "the file holds the primary key"

# --- the server checks them -------------------------------------------------------------------
assert_eq 200 "$(status -H "Authorization: Bearer $K1")" "the primary key scores"
assert_eq 200 "$(status -H "Authorization: Bearer $K2")" "the secondary key scores"
assert_eq 401 "$(status)" "no key: 401"
assert_eq 401 "$(status -H "Authorization: Bearer 0123")" "a wrong key: 401"
assert_eq 401 "$(status -H "Authorization: Bearer ${K1%?}")" "the key less its last digit: 401"
assert_eq 401 "$(status -H "Authorization: Bearer ${K1}0")" "the key with one digit more: 401"
assert_eq 401 "$(status -H "Authorization: Bearer $(sha "$K1")")" "the stored digest is no key: 401"
assert_contains "$(cat "$T/body")" '"status":401' "401 is JSON"

# --- regenerate -------------------------------------------------------------------------------
run_ok $K service keys ks --regenerate primary >/dev/null
N1="$(jget "$(run_ok $K service keys ks --json)" 'j["primary_key"]')"
assert_eq "1 $K2" "$([ "$N1" != "$K1" ] && [ ${#N1} -eq 64 ] && echo 1) $(jget "$(run_ok $K service keys ks --json)" 'j["secondary_key"]')" \
  "regenerate primary: a new primary, the same secondary"
assert_eq "$(sha "$N1")" "$(sql "SELECT primary_key_sha256 FROM services WHERE name='ks'")" "the store has the new key's digest"
assert_eq "0 600" "$(in_store "$N1") $(stat -c %a "$WS/services/ks/keys")" "the new key is not in the store; the file stays 0600"
assert_eq 401 "$(status -H "Authorization: Bearer $K1")" "the running server refuses the old primary at once"
assert_eq 200 "$(status -H "Authorization: Bearer $N1")" "and takes the new one"
assert_eq 200 "$(status -H "Authorization: Bearer $K2")" "and still the secondary"
run_ok $K service keys ks --regenerate both >/dev/null
keys="$(run_ok $K service keys ks --json)"
B1="$(jget "$keys" 'j["primary_key"]')"; B2="$(jget "$keys" 'j["secondary_key"]')"
assert_eq "1" "$([ "$B1" != "$N1" ] && [ "$B2" != "$K2" ] && echo 1)" "regenerate both: two new keys"
assert_eq "401 401 200 200" "$(status -H "Authorization: Bearer $N1") $(status -H "Authorization: Bearer $K2") $(status -H "Authorization: Bearer $B1") $(status -H "Authorization: Bearer $B2")" \
  "the old keys are refused, the new ones taken"
expect_fail "takes 'primary', 'secondary' or 'both'" $K service keys ks --regenerate all
# a lost keys file: said clearly; the store cannot give the keys back; regenerating repairs it
rm "$WS/services/ks/keys"
expect_fail "the keys of service ks are not readable" $K service keys ks
err="$($K service keys ks 2>&1)"
assert_contains "$err" "--regenerate both" "the hint says how to get keys again"
expect_fail "are not readable" $K service keys ks --regenerate primary
run_ok $K service keys ks --regenerate both >/dev/null
R1="$(jget "$(run_ok $K service keys ks --json)" 'j["primary_key"]')"
assert_eq 200 "$(status -H "Authorization: Bearer $R1")" "after regenerating both, the new primary scores"
# a keys file that is not the store's (edited, or left ahead of the store): said, not printed
cp "$WS/services/ks/keys" "$T/keys.good"
printf '{"primary_key": "%s", "secondary_key": "%s"}\n' "$K1" "$R1" > "$WS/services/ks/keys"
expect_fail "the primary key in $WS/services/ks/keys is not the one service ks takes" $K service keys ks --json
cp "$T/keys.good" "$WS/services/ks/keys"
assert_eq "$R1" "$(jget "$(run_ok $K service keys ks --json)" 'j["primary_key"]')" "the right file reads again"
# regenerations at once: each under the store's write lock, so the file
# and the digests end up from the same one
pids=()
for w in primary secondary both primary secondary both; do
  $K service keys ks --regenerate $w >/dev/null 2>"$T/regen.$w.$RANDOM" & pids+=($!)
done
rcs=0; for p in "${pids[@]}"; do wait "$p" || rcs=$((rcs + 1)); done
assert_eq 0 "$rcs" "6 regenerations at once all succeed"
R1="$(jget "$(run_ok $K service keys ks --json)" 'j["primary_key"]')"
assert_eq 200 "$(status -H "Authorization: Bearer $R1")" "after them the file's keys are the server's"
# a redeploy keeps the keys
run_ok $K model deploy lin --name ks --auth --workers 1 >/dev/null
assert_eq "$R1" "$(jget "$(run_ok $K service keys ks --json)" 'j["primary_key"]')" "a redeploy keeps the keys"
assert_eq 200 "$(status -H "Authorization: Bearer $R1")" "and the server takes them"

# --- a workspace of the previous schema: keys in plain text in the store --------------------------
run_ok $K service stop ks >/dev/null
P1=1111111111111111111111111111111111111111111111111111111111111111
P2=2222222222222222222222222222222222222222222222222222222222222222
sql "ALTER TABLE services RENAME COLUMN primary_key_sha256 TO primary_key;
     ALTER TABLE services RENAME COLUMN secondary_key_sha256 TO secondary_key;
     UPDATE services SET primary_key='$P1', secondary_key='$P2' WHERE name='ks';
     PRAGMA user_version=$PRE_HASH_VERSION;" || die "cannot make a schema-$PRE_HASH_VERSION store"
rm -f "$WS/services/ks/keys"
[ "$(in_store "$P1")" -gt 0 ] || die "the old-schema store does not hold the plain key"
keys="$(run_ok $K service keys ks --json)"
assert_eq "$P1 $P2" "$(jget "$keys" 'j["primary_key"] + " " + j["secondary_key"]')" "the migration moved the keys into the keys file"
assert_eq 600 "$(stat -c %a "$WS/services/ks/keys")" "which is 0600"
assert_eq "0 0" "$(sqlite3 "$WS/kusari.db" .dump | grep -c "$P1") $(sqlite3 "$WS/kusari.db" .dump | grep -c "$P2")" \
  "the migrated store's dump holds neither key"
assert_eq "$(sha "$P1")" "$(sql "SELECT primary_key_sha256 FROM services WHERE name='ks'")" "it holds the primary's digest"
sqlite3 "$WS/kusari.db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
assert_eq 0 "$(in_store "$P1")" "nor is the old plain key left in the store's file (secure_delete)"
assert_eq "$(sql 'PRAGMA user_version')" "$(jget "$(cat "$WS/config.json")" 'j["schema_version"]')" "config.json follows the schema version"
run_ok $K service start ks >/dev/null
assert_eq "200 200 401" "$(status -H "Authorization: Bearer $P1") $(status -H "Authorization: Bearer $P2") $(status -H "Authorization: Bearer $R1")" \
  "after the migration the old keys open the service, others do not"

run_ok $K service stop ks >/dev/null
bad="$(grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$WS"/services/*/server.log 2>/dev/null)"
[ -z "$bad" ] || fail "sanitizer reports from the server: $(cat $bad | head -40)"
run_ok $K service delete ks >/dev/null
assert_eq 0 "$([ -e "$WS/services/ks" ] && echo 1 || echo 0)" "delete removes the keys with the service's folder"
finish
