#!/usr/bin/env bash
# tests/platform/store_pg.sh PROGRAM — runs the store conformance program
# (test_store.c) against a real PostgreSQL server: a temporary cluster
# (pg.sh) and a database in it, named by KUSARI_TEST_PG_URI.
set -u
PROG="${1:?usage: store_pg.sh TEST_PROGRAM}"
. "$(dirname "$0")/pg.sh"
KUSARI_TEST_PG_URI="$(pg_createdb conformance)" || { echo "store_pg.sh: cannot create the test database" >&2; exit 1; }
export KUSARI_TEST_PG_URI
"$PROG"
