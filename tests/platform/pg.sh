# tests/platform/pg.sh — a temporary PostgreSQL server for a test (sourced).
#
# Sourcing it initialises a cluster in a new temp dir (initdb), starts it on a
# unix socket in that dir (no TCP: listen_addresses is empty; the port is a
# free one, which names the socket) and stops and removes it when the shell
# exits (a trap; lib.sh's cleanup calls pg_stop itself). PostgreSQL refuses to
# run as root, so as root the server runs as the unprivileged user 'nobody'
# (the dir is made that user's); as anyone else, as that user. Durability is
# off (fsync, synchronous_commit): the cluster lives for one test.
#
# After sourcing:
#   PG_BIN, PG_DIR, PG_SOCK (socket dir), PG_PORT, PG_USER (the superuser role)
#   pg_createdb NAME   creates database NAME and prints its URI
#   pg_uri NAME        the URI of database NAME (postgresql://...?host=SOCK&port=PORT)
#   pg_psql URI ARGS   psql on a database, unaligned, no header (like sqlite3's output)
#   pg_server_stop     stops the server (fast: connections are cut), keeps the cluster
#   pg_server_start    starts it again
#   pg_stop            stops it and removes the cluster (the trap does this)
# Without initdb (apt-get install postgresql) it exits 77, which ctest reports as skipped.

PG_BIN=""
for d in "${KUSARI_PG_BIN:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then PG_BIN="$d"; break; fi
done
if [ -z "$PG_BIN" ]; then
  echo "pg.sh: no PostgreSQL server programs (initdb, pg_ctl) found: apt-get install postgresql" >&2
  eval "${PG_EXIT_ALSO:-}"
  exit 77
fi
PG_DIR="$(mktemp -d /tmp/kusari-pg-XXXXXX)"
PG_SOCK="$PG_DIR/sock"
PG_USER=kusari
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$PG_DIR/data" "$PG_SOCK"
if [ "$(id -u)" -eq 0 ]; then
  chmod 755 "$PG_DIR"
  chown nobody "$PG_DIR/data" "$PG_SOCK"
  chmod 700 "$PG_DIR/data"
  chmod 755 "$PG_SOCK"
  pg_as() { (cd / && runuser -u nobody -- "$@"); }
else
  pg_as() { "$@"; }
fi

pg_server_start() {
  pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_SOCK/server.log" -w -t 60 \
    -o "-k $PG_SOCK -p $PG_PORT -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null
}
pg_server_stop() { pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null; }
pg_stop() {
  [ -n "${PG_DIR:-}" ] || return 0
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1; fi
  rm -rf "$PG_DIR"
  PG_DIR=""
}
pg_uri() { echo "postgresql://$PG_USER@/$1?host=$PG_SOCK&port=$PG_PORT"; }
pg_psql() { local uri="$1"; shift; "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$uri" "$@"; }
pg_createdb() {
  "$PG_BIN/createdb" -h "$PG_SOCK" -p "$PG_PORT" -U "$PG_USER" "$1" || return 1
  pg_uri "$1"
}

# (PG_EXIT_ALSO: more to run at exit, for a caller that sets its own trap later)
trap 'pg_stop; eval "${PG_EXIT_ALSO:-}"' EXIT
if ! pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" --auth=trust -E UTF8 --locale=C --no-sync \
     >"$PG_DIR/initdb.log" 2>&1; then
  echo "pg.sh: initdb failed:" >&2; cat "$PG_DIR/initdb.log" >&2; exit 1
fi
if ! pg_server_start; then
  echo "pg.sh: the PostgreSQL server did not start:" >&2; cat "$PG_SOCK/server.log" >&2; exit 1
fi
