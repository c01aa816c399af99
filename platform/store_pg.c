/*
 * platform/store_pg.c — the PostgreSQL backend of the store interface
 * (store.h), on libpq: a database that many kusari processes (and machines)
 * share. Same rules as the SQLite backend (store_sqlite.c), which is the
 * reference: tests/platform/test_store.c runs the same cases against both.
 *
 *   - Schema: the same tables as SQLite's, in PostgreSQL types (double
 *     precision times, bigint ids, bigserial keys), created by migrations
 *     numbered like SQLite's; the table schema_version records the version.
 *     Migrations run in one transaction under the store's write lock, so
 *     concurrent first opens migrate once.
 *   - "One writer at a time": every transaction (kp_store_begin, and the
 *     one a multi-statement operation opens itself) first takes a
 *     transaction-level advisory lock, the store's write lock (SQLite's
 *     BEGIN IMMEDIATE). Model versions, node claims and metric ids are thus
 *     assigned in commit order. Inside a caller's transaction an operation
 *     runs in a savepoint, so a failed operation leaves the caller's
 *     earlier work intact (as a failed SQLite statement does).
 *   - NaN metric values are stored as NaN (double precision has NaN and
 *     +-Infinity); the aggregates that SQLite computes over "NULL = NaN"
 *     (experiment spreads, ordering runs by a metric) use nullif(value, NaN)
 *     so both backends give the same answers.
 *   - Every query is parameterised (PQexecParams, text parameters); only
 *     the fixed migration DDL goes through PQexec.
 *   - Errors: a unique violation is KP_STORE_EEXISTS; anything else from the
 *     server KP_STORE_EBACKEND. A lost connection fails the operation with
 *     a message naming the server; the next operation reconnects (PQreset).
 *   - Text is ordered bytewise (COLLATE "C"), as SQLite orders it.
 *
 * Without libpq (cmake -DKUSARI_POSTGRESQL=OFF, or libpq-dev missing) only
 * kp_store_pg_open exists, and it fails with a clear error.
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KUSARI_WITH_POSTGRESQL

int kp_store_pg_open(const char *uri, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out) {
  (void)uri, (void)hook, (void)hook_ctx;
  *out = NULL;
  kp_store_clear_error();
  return kp_store_fail(KP_STORE_EINVAL,
                       "this kusari was built without PostgreSQL support (libpq), so it cannot open a postgresql:// store; "
                       "install libpq-dev and rebuild (cmake -DKUSARI_POSTGRESQL=ON)");
}

int kp_store_pg_schema_version(void) { return 0; }

#else

#include "filter.h"

#include <libpq-fe.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/time.h>

/* migrations[i] takes the schema from version i to i+1; the version equals
 * the SQLite backend's (store_sqlite.c), and test_store.c checks that both
 * backends reach the same one */
#define PG_SCHEMA_VERSION 9

#define SQL_ENDED "('Completed','Failed','Canceled')"
#define SQL_ACTIVE "('Queued','Preparing','Running','Finalizing')"
#define SQL_BUSY "('Preparing','Running','Finalizing')"

/* the store's write lock (pg_advisory_xact_lock key: "kusari" + 1) */
#define WRITE_LOCK "SELECT pg_advisory_xact_lock(7738135479215570945)"

static const char *const migrations[] = {
  /* 0 -> 1: the tables of SQLite's version 1 (with its 1 -> 2 columns) */
  "CREATE TABLE experiments(\n"
  "  id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL);\n"
  "CREATE TABLE computes(\n"
  "  name TEXT PRIMARY KEY, type TEXT NOT NULL, max_nodes INTEGER NOT NULL,\n"
  "  created DOUBLE PRECISION NOT NULL);\n"
  "CREATE TABLE runs(\n"
  "  seq BIGSERIAL PRIMARY KEY,\n"
  "  id TEXT UNIQUE,\n"
  "  experiment_id BIGINT NOT NULL REFERENCES experiments(id),\n"
  "  parent_id TEXT,\n"
  "  status TEXT NOT NULL,\n"
  "  compute TEXT NOT NULL,\n"
  "  source TEXT NOT NULL,\n"
  "  entry TEXT NOT NULL,\n"
  "  args TEXT NOT NULL,\n"
  "  snapshot TEXT NOT NULL,\n"
  "  snapshot_bytes BIGINT NOT NULL DEFAULT 0,\n"
  "  env_json TEXT,\n"
  "  env_hash TEXT,\n"
  "  build_cache TEXT,\n"
  "  created DOUBLE PRECISION NOT NULL, prepared DOUBLE PRECISION, started DOUBLE PRECISION, ended DOUBLE PRECISION,\n"
  "  exit_code INTEGER, signal INTEGER, error TEXT,\n"
  "  supervisor_pid BIGINT, supervisor_start BIGINT,\n"
  "  entry_pid BIGINT, entry_start BIGINT,\n"
  "  cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_grace DOUBLE PRECISION NOT NULL DEFAULT 10,\n"
  "  cancel_reason TEXT,\n"
  "  channel_offset BIGINT NOT NULL DEFAULT 0);\n"
  "CREATE INDEX runs_by_status ON runs(status, compute);\n"
  "CREATE INDEX runs_by_experiment ON runs(experiment_id);\n"
  "CREATE TABLE tags(run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,\n"
  "  PRIMARY KEY(run_id, key));\n"
  "CREATE TABLE metrics(id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, name TEXT NOT NULL,\n"
  "  step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION);\n"
  "CREATE INDEX metrics_by_run ON metrics(run_id, name, step);\n"
  "CREATE INDEX metrics_by_name ON metrics(name);\n"
  "CREATE TABLE files(run_id TEXT NOT NULL, path TEXT NOT NULL, size BIGINT NOT NULL,\n"
  "  sha256 TEXT NOT NULL, PRIMARY KEY(run_id, path));\n"
  "CREATE INDEX files_by_sha256 ON files(sha256);\n"
  "CREATE TABLE models(id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL,\n"
  "  run_id TEXT, path TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',\n"
  "  created DOUBLE PRECISION NOT NULL, UNIQUE(name, version));\n"
  "CREATE TABLE model_files(model_id BIGINT NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
  "  path TEXT NOT NULL, size BIGINT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY(model_id, path));\n"
  "CREATE TABLE model_tags(model_id BIGINT NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
  "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(model_id, key));\n",
  /* 1 -> 2: columns that SQLite stores of version 1 lacked; here from the start */
  "",
  /* 2 -> 3: scoring services */
  "CREATE TABLE services(name TEXT PRIMARY KEY, model_id BIGINT NOT NULL, model_name TEXT NOT NULL,\n"
  "  model_version BIGINT NOT NULL, entry_name TEXT, entry_sha256 TEXT, host TEXT NOT NULL,\n"
  "  port INTEGER NOT NULL, bound_port INTEGER, auth INTEGER NOT NULL, workers INTEGER NOT NULL,\n"
  "  max_body BIGINT NOT NULL, timeout INTEGER NOT NULL, primary_key TEXT NOT NULL,\n"
  "  secondary_key TEXT NOT NULL, state TEXT NOT NULL, pid BIGINT, pid_start BIGINT, error TEXT,\n"
  "  created DOUBLE PRECISION NOT NULL, started DOUBLE PRECISION, stopped DOUBLE PRECISION);\n",
  /* 3 -> 4: hyperparameter sweeps */
  "CREATE TABLE sweeps(run_id TEXT PRIMARY KEY, spec TEXT NOT NULL, env_json TEXT, stop_reason TEXT,\n"
  "  created DOUBLE PRECISION NOT NULL);\n"
  "CREATE TABLE sweep_trials(sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL, run_id TEXT,\n"
  "  evaluated INTEGER NOT NULL DEFAULT 0, decision TEXT, error TEXT, created DOUBLE PRECISION NOT NULL,\n"
  "  PRIMARY KEY(sweep_id, idx));\n"
  "CREATE INDEX runs_by_parent ON runs(parent_id);\n",
  /* 4 -> 5: services keep only the sha256 of their keys (the keys live in
   * files of the workspace; a PostgreSQL store never held any) */
  "ALTER TABLE services RENAME COLUMN primary_key TO primary_key_sha256;\n"
  "ALTER TABLE services RENAME COLUMN secondary_key TO secondary_key_sha256;\n",
  /* 5 -> 6: run search (store_sqlite.c's migration 6 in PostgreSQL terms):
   * params with a numeric shadow column (kp_num: the number a text is, as
   * SQLite's NUMERIC affinity reads it, else NULL), backfilled from the
   * sweep trials; each run's latest value of each metric (metric_latest,
   * NULL for NaN, kept by pg_metrics_ingest and pg_sweep_log_best, the only
   * writers of metrics); indexes by name and value; the key that signs page
   * tokens. SQLite's triggers are statements of the operations here
   * (pg_sweep_trial_attach_run, pg_sweep_log_best, RUN_DELETES). Like
   * SQLite's, migrations 6 and 7 may run again over what they made. */
  "CREATE OR REPLACE FUNCTION kp_num(t TEXT) RETURNS DOUBLE PRECISION LANGUAGE plpgsql IMMUTABLE AS $f$\n"
  "BEGIN\n"
  "  IF t ~ '^[[:space:]]*[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?[[:space:]]*$' THEN\n"
  "    RETURN t::double precision;\n"
  "  END IF;\n"
  "  RETURN NULL;\n"
  "EXCEPTION WHEN others THEN RETURN NULL;\n"
  "END $f$;\n"
  "CREATE OR REPLACE FUNCTION kp_jsonb(t TEXT) RETURNS JSONB LANGUAGE plpgsql IMMUTABLE AS $f$\n"
  "BEGIN\n"
  "  RETURN t::jsonb;\n"
  "EXCEPTION WHEN others THEN RETURN NULL;\n"
  "END $f$;\n"
  /* a JSON scalar as SQLite's json_each gives it as text (true 1, false 0) */
  "CREATE OR REPLACE FUNCTION kp_json_text(v JSONB) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $f$\n"
  "  SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN CASE WHEN v::text = 'true' THEN '1' ELSE '0' END\n"
  "  ELSE v #>> '{}' END $f$;\n"
  "CREATE TABLE IF NOT EXISTS store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
  "INSERT INTO store_meta(key, value) VALUES('page_token_key',\n"
  "  replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''))\n"
  "  ON CONFLICT (key) DO NOTHING;\n"
  "CREATE TABLE IF NOT EXISTS params(run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, num DOUBLE PRECISION,\n"
  "  PRIMARY KEY(run_id, key));\n"
  "CREATE INDEX IF NOT EXISTS params_by_key ON params(key, num);\n"
  "INSERT INTO params(run_id, key, value, num)\n"
  "  SELECT t.run_id, j.key, kp_json_text(j.value), kp_num(kp_json_text(j.value))\n"
  "  FROM sweep_trials t, jsonb_each(CASE WHEN jsonb_typeof(kp_jsonb(t.params)) = 'object' THEN kp_jsonb(t.params) END) j\n"
  "  WHERE t.run_id IS NOT NULL AND jsonb_typeof(j.value) NOT IN ('object', 'array', 'null')\n"
  "  ON CONFLICT (run_id, key) DO NOTHING;\n"
  "CREATE TABLE IF NOT EXISTS metric_latest(run_id TEXT NOT NULL, name TEXT NOT NULL, step BIGINT NOT NULL,\n"
  "  mid BIGINT NOT NULL, value DOUBLE PRECISION, PRIMARY KEY(run_id, name));\n"
  "CREATE INDEX IF NOT EXISTS metric_latest_by_name ON metric_latest(name, value);\n"
  "INSERT INTO metric_latest(run_id, name, step, mid, value)\n"
  "  SELECT DISTINCT ON (run_id, name) run_id, name, step, id, nullif(value, 'NaN'::float8) FROM metrics\n"
  "  ORDER BY run_id, name, step DESC, id DESC\n"
  "  ON CONFLICT (run_id, name) DO NOTHING;\n"
  "CREATE INDEX IF NOT EXISTS tags_by_key ON tags(key, value);\n",
  /* 6 -> 7: the tracking server's API tokens: the sha256 of each secret */
  "CREATE TABLE IF NOT EXISTS tokens(name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE,\n"
  "  read_only INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL, last_used DOUBLE PRECISION);\n",
  /* 7 -> 8: distributed runs (issue 13): the points that ranks > 0 log, each
   * with its rank, apart from rank 0's in 'metrics' (so every view, filter,
   * run search and sweep policy reads rank 0's without a rank condition) */
  "CREATE TABLE IF NOT EXISTS metric_ranks(id BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, rank INTEGER NOT NULL,\n"
  "  name TEXT NOT NULL, step BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION);\n"
  "CREATE INDEX IF NOT EXISTS metric_ranks_by_run ON metric_ranks(run_id, rank, name, step);\n",
  /* 8 -> 9: when each run became Finalizing (the web UI's run timeline) */
  "ALTER TABLE runs ADD COLUMN IF NOT EXISTS finalizing DOUBLE PRECISION;\n",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == PG_SCHEMA_VERSION, "one migration per version");

typedef struct pg_store {
  kp_store base;
  PGconn *conn;
  char where[600];  /* "database D on H:P", for messages (no password) */
  int tx;           /* a transaction of the caller's (kp_store_begin) is open */
  int tx_lost;      /* ... and the connection was lost with it: every operation
                     * fails until the caller ends it (commit says it was lost) */
  int sp;           /* savepoints open (kp_op) */
  int own_tx;       /* an operation's own transaction is open (tx_begin) */
} pg_store;

#define PG(s) ((pg_store *)(s))

int kp_store_pg_schema_version(void) { return PG_SCHEMA_VERSION; }

static double now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static int oom(void) { return kp_store_fail(KP_STORE_EBACKEND, "out of memory"); }

#define GROW(arr, n, cap, first)                                          \
  __extension__({                                                         \
    int grow_rc_ = 0;                                                     \
    if ((n) == (cap)) {                                                   \
      size_t grow_cap_ = (cap) ? 2 * (cap) : (first);                     \
      void *grow_p_ = realloc((arr), grow_cap_ * sizeof *(arr));          \
      if (grow_p_) (arr) = grow_p_, (cap) = grow_cap_;                     \
      else grow_rc_ = -1;                                                 \
    }                                                                     \
    grow_rc_;                                                             \
  })

/* ---- parameters (text format) ------------------------------------------------- */
#define PMAX 12
typedef struct pa {
  const char *v[PMAX];
  char b[PMAX][40];
  int n;
} pa;

static void p_txt(pa *a, const char *s) { a->v[a->n++] = s; }
static void p_i64(pa *a, long long x) {
  snprintf(a->b[a->n], sizeof a->b[0], "%lld", x);
  a->v[a->n] = a->b[a->n];
  a->n++;
}
static void fmt_f64(char *out, size_t n, double x) {
  if (isnan(x)) snprintf(out, n, "NaN");
  else if (isinf(x)) snprintf(out, n, "%s", x > 0 ? "Infinity" : "-Infinity");
  else snprintf(out, n, "%.17g", x);
}
static void p_f64(pa *a, double x) {
  fmt_f64(a->b[a->n], sizeof a->b[0], x);
  a->v[a->n] = a->b[a->n];
  a->n++;
}

/* A growable string, for array literals. */
typedef struct sbuf {
  char *p;
  size_t n, cap;
  int bad;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
  if (b->bad) return;
  if (b->n + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + len + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->bad = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, len);
  b->n += len;
  b->p[b->n] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* Appends 's' as a quoted element of an array literal. */
static void sb_elem(sbuf *b, const char *s) {
  sb_put(b, "\"", 1);
  for (const char *c = s ? s : ""; *c; c++) {
    if (*c == '"' || *c == '\\') sb_put(b, "\\", 1);
    sb_put(b, c, 1);
  }
  sb_put(b, "\"", 1);
}

/* '{"a","b"}' for a text[] parameter (free() it); NULL when out of memory. */
static char *text_array(const char *const *v, size_t n) {
  sbuf b = {0};
  sb_str(&b, "{");
  for (size_t i = 0; i < n; i++) {
    if (i) sb_str(&b, ",");
    sb_elem(&b, v[i]);
  }
  sb_str(&b, "}");
  if (b.bad) { free(b.p); return NULL; }
  return b.p;
}

/* ---- connection and queries ------------------------------------------------------ */
static void quiet_notices(void *arg, const char *msg) { (void)arg, (void)msg; }

/* libpq's messages span lines ("...failed: ...\n\tIs the server running...?\n"): one line */
static void trim(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (*r == '\n' || *r == '\t' || *r == '\r') {
      if (w > s && w[-1] != ' ') *w++ = ' ';
    } else {
      *w++ = *r;
    }
  }
  while (w > s && w[-1] == ' ') w--;
  *w = '\0';
}

static void describe(pg_store *s) {
  const char *h = PQhost(s->conn), *p = PQport(s->conn), *d = PQdb(s->conn);
  snprintf(s->where, sizeof s->where, "database %s on %s%s%s", d ? d : "?", h && *h ? h : "localhost", p && *p ? ":" : "",
           p ? p : "");
}

static int conn_lost(pg_store *s, const char *msg) {
  if (s->tx) s->tx_lost = 1;  /* the server dropped whatever transaction was open */
  s->sp = 0;
  return kp_store_fail_unreachable("lost the connection to the PostgreSQL store (%s): %s", s->where,
                                   msg && *msg ? msg : "no reply");
}

/* Sets the thread's error back to 'e' (after a rollback that may have
 * replaced it), keeping whether the store was unreachable. */
static void restore_error(const kp_store_error *e, int unreachable) {
  if (unreachable) kp_store_fail_unreachable("%s", e->message);
  else kp_store_fail(e->code, "%s", e->message);
}

/* Reconnects when the connection was lost (never inside a caller's
 * transaction: that is gone with the connection, and says so). */
static int ensure_conn(pg_store *s) {
  if (PQstatus(s->conn) == CONNECTION_OK) return 0;
  PQreset(s->conn);
  if (PQstatus(s->conn) == CONNECTION_OK) return 0;
  char msg[600];
  snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
  trim(msg);
  return kp_store_fail_unreachable("cannot reach the PostgreSQL store (%s): %s", s->where, msg);
}

/* Sets the thread's error from a failed result. */
static int fail_from(pg_store *s, PGresult *r) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  const char *primary = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  char msg[800];
  snprintf(msg, sizeof msg, "%s", primary ? primary : PQerrorMessage(s->conn));
  trim(msg);
  if (PQstatus(s->conn) != CONNECTION_OK || (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3))))
    return conn_lost(s, msg);
  if (state && !strcmp(state, "23505")) return kp_store_fail(KP_STORE_EEXISTS, "store: %s", msg);
  return kp_store_fail(KP_STORE_EBACKEND, "store (%s): %s", s->where, msg);
}

/* Runs 'sql' with parameters 'a' (NULL: none): the result (PQclear it), or
 * NULL with the error set. */
static PGresult *qry(pg_store *s, const char *sql, const pa *a) {
  if (s->tx_lost) {
    kp_store_fail_unreachable("lost the connection to the PostgreSQL store (%s) inside a transaction: roll it back",
                              s->where);
    return NULL;
  }
  /* outside any transaction, a connection the server has closed since the
   * last statement (a restart: it sent its FATAL and hung up) is noticed
   * here, before anything is sent, so that a statement is never retried:
   * PQconsumeInput reads what is there without waiting and marks the
   * connection bad at the end of the stream (a second read reaches the end
   * after the goodbye message) */
  for (int i = 0; i < 2; i++)
    if (!s->tx && !s->own_tx && PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) == PQTRANS_IDLE)
      PQconsumeInput(s->conn);
  if (PQstatus(s->conn) != CONNECTION_OK) {
    if (s->tx || s->own_tx) {  /* never go on outside the transaction */
      conn_lost(s, "the transaction was lost with it");
      return NULL;
    }
    if (ensure_conn(s) != 0) return NULL;
  }
  PGresult *r = PQexecParams(s->conn, sql, a ? a->n : 0, NULL, a ? a->v : NULL, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) return r;
  fail_from(s, r);
  PQclear(r);
  return NULL;
}

/* A statement whose rows do not matter: 0 or -1. 'changed' (or NULL) gets
 * the number of rows it changed. */
static int cmd(pg_store *s, const char *sql, const pa *a, long long *changed) {
  PGresult *r = qry(s, sql, a);
  if (!r) return -1;
  if (changed) *changed = atoll(PQcmdTuples(r));
  PQclear(r);
  return 0;
}

static char *gdup(PGresult *r, int i, int c) { return strdup(PQgetisnull(r, i, c) ? "" : PQgetvalue(r, i, c)); }
static char *gdupn(PGresult *r, int i, int c) { return PQgetisnull(r, i, c) ? NULL : strdup(PQgetvalue(r, i, c)); }
static double gtime(PGresult *r, int i, int c) { return PQgetisnull(r, i, c) ? 0 : strtod(PQgetvalue(r, i, c), NULL); }
/* a metric value: NULL (none) is NaN too */
static double gval(PGresult *r, int i, int c) { return PQgetisnull(r, i, c) ? NAN : strtod(PQgetvalue(r, i, c), NULL); }
static long long gi64(PGresult *r, int i, int c) { return PQgetisnull(r, i, c) ? 0 : strtoll(PQgetvalue(r, i, c), NULL, 10); }
static int gint(PGresult *r, int i, int c) { return (int)gi64(r, i, c); }
static kp_run_status gstatus(PGresult *r, int i, int c) {
  kp_run_status v = KP_RUN_FAILED;
  kp_run_status_parse(PQgetvalue(r, i, c), &v);
  return v;
}

/* Begins a transaction (taking the write lock) unless the caller has one
 * open; inside the caller's, a savepoint. *own says which; tx_end ends it. */
static int tx_begin(pg_store *s, int *own) {
  *own = !s->tx && (PQstatus(s->conn) != CONNECTION_OK || PQtransactionStatus(s->conn) == PQTRANS_IDLE);
  if (*own) {
    if (cmd(s, "BEGIN", NULL, NULL) != 0) return -1;
    s->own_tx = 1;
    if (cmd(s, WRITE_LOCK, NULL, NULL) != 0) {
      s->own_tx = 0;
      if (PQstatus(s->conn) == CONNECTION_OK) PQclear(PQexec(s->conn, "ROLLBACK"));
      return -1;
    }
    return 0;
  }
  if (cmd(s, "SAVEPOINT kp_op", NULL, NULL) != 0) return -1;
  s->sp++;
  return 0;
}

static int tx_end(pg_store *s, int own, int ok) {
  if (!own) {
    if (!s->sp) return ok;  /* the connection went, and the transaction with it */
    s->sp--;
    if (ok == 0) {
      if (cmd(s, "RELEASE SAVEPOINT kp_op", NULL, NULL) == 0) return 0;
      return -1;
    }
    kp_store_error e = *kp_store_last_error();
    int unr = kp_store_unreachable();
    PQclear(PQexec(s->conn, "ROLLBACK TO SAVEPOINT kp_op"));
    PQclear(PQexec(s->conn, "RELEASE SAVEPOINT kp_op"));
    restore_error(&e, unr);
    return ok;
  }
  if (ok == 0) {
    int c = cmd(s, "COMMIT", NULL, NULL);
    s->own_tx = 0;
    if (c == 0) return 0;
    ok = -1;
  }
  s->own_tx = 0;
  if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
    kp_store_error e = *kp_store_last_error();
    int unr = kp_store_unreachable();
    PQclear(PQexec(s->conn, "ROLLBACK"));
    restore_error(&e, unr);
  }
  return ok;
}

/* 1 when the query gives a row, 0 when not, -1 on error. */
static int exists_q(pg_store *s, const char *sql, const char *arg) {
  pa a = {0};
  p_txt(&a, arg);
  PGresult *r = qry(s, sql, &a);
  if (!r) return -1;
  int n = PQntuples(r) > 0;
  PQclear(r);
  return n;
}

static int run_exists(pg_store *s, const char *id) {
  int r = exists_q(s, "SELECT 1 FROM runs WHERE id=$1", id);
  if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
  return r;
}

/* ---- lifecycle and transactions ------------------------------------------------- */
static void pg_close(kp_store *base) {
  pg_store *s = PG(base);
  PQfinish(s->conn);
  free(s);
}

static int pg_begin(kp_store *base) {
  pg_store *s = PG(base);
  if (s->tx) return kp_store_fail(KP_STORE_EINVAL, "a transaction is open already");
  s->tx_lost = 0;
  int own;
  if (tx_begin(s, &own) != 0) return -1;
  s->tx = 1;
  s->sp = 0;
  return 0;
}

static int pg_commit(kp_store *base) {
  pg_store *s = PG(base);
  if (!s->tx) return kp_store_fail(KP_STORE_EINVAL, "no transaction is open");
  int lost = s->tx_lost;
  s->tx = s->tx_lost = s->sp = 0;
  if (lost) {
    s->own_tx = 0;
    return kp_store_fail_unreachable("lost the connection to the PostgreSQL store (%s): the transaction was not committed",
                                     s->where);
  }
  return tx_end(s, 1, 0);
}

static void pg_rollback(kp_store *base) {
  pg_store *s = PG(base);
  s->tx = s->tx_lost = s->sp = s->own_tx = 0;
  if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) PQclear(PQexec(s->conn, "ROLLBACK"));
}

/* ---- experiments ------------------------------------------------------------------- */
static int pg_experiment_list(kp_store *base, kp_experiment_summary **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  PGresult *r = qry(s,
                    "SELECT e.name, e.created, count(r.seq),"
                    " count(*) FILTER (WHERE r.status='Completed'), count(*) FILTER (WHERE r.status='Failed'),"
                    " count(*) FILTER (WHERE r.status='Canceled'), count(*) FILTER (WHERE r.status IN " SQL_ACTIVE "),"
                    " max(r.created)"
                    " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id GROUP BY e.id ORDER BY e.name COLLATE \"C\"",
                    NULL);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_experiment_summary *e = &(*out)[(*n)++];
    e->name = gdup(r, i, 0);
    e->created = gtime(r, i, 1);
    e->runs = gint(r, i, 2);
    e->completed = gint(r, i, 3);
    e->failed = gint(r, i, 4);
    e->canceled = gint(r, i, 5);
    e->active = gint(r, i, 6);
    e->last_run = gtime(r, i, 7);
  }
  PQclear(r);
  return 0;
}

static int pg_experiment_get(kp_store *base, const char *name, kp_experiment_detail *o) {
  pg_store *s = PG(base);
  memset(o, 0, sizeof *o);
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s,
                    "SELECT e.id, e.created, count(r.seq), max(greatest(coalesce(r.ended, 0), coalesce(r.started, 0), r.created)),"
                    " (SELECT count(*) FROM sweeps w JOIN runs x ON x.id=w.run_id WHERE x.experiment_id=e.id)"
                    " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id WHERE e.name=$1 GROUP BY e.id",
                    &a);
  if (!r) return -1;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  }
  long long eid = gi64(r, 0, 0);
  o->name = strdup(name);
  o->created = gtime(r, 0, 1);
  o->runs = gint(r, 0, 2);
  o->last_activity = o->runs ? gtime(r, 0, 3) : 0;
  o->sweeps = gint(r, 0, 4);
  PQclear(r);
  pa e = {0};
  p_i64(&e, eid);
  if (!(r = qry(s, "SELECT status, count(*) FROM runs WHERE experiment_id=$1 GROUP BY status", &e))) goto fail;
  for (int i = 0; i < PQntuples(r); i++) {
    kp_run_status v;
    if (kp_run_status_parse(PQgetvalue(r, i, 0), &v) == 0) o->by_status[v] = gint(r, i, 1);
  }
  PQclear(r);
  /* each run's final value of each metric (latest step), then per metric:
   * how many runs, the lowest and highest with their runs, the newest run's;
   * NaN counts as no value, as in SQLite (which stores NaN as NULL) */
  r = qry(s,
          "WITH fin AS (SELECT m.name, nullif(m.value, 'NaN'::float8) AS value, r.id AS run, r.seq FROM metrics m"
          "  JOIN runs r ON r.id=m.run_id"
          "  WHERE r.experiment_id=$1 AND m.id=(SELECT x.id FROM metrics x WHERE x.run_id=m.run_id AND x.name=m.name"
          "  ORDER BY x.step DESC, x.id DESC LIMIT 1)),"
          " g AS (SELECT name, count(*) AS n, min(value) AS lo, max(value) AS hi, max(seq) AS newest FROM fin GROUP BY name)"
          " SELECT g.name, g.n, g.lo, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.lo ORDER BY seq DESC LIMIT 1),"
          "  g.hi, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.hi ORDER BY seq DESC LIMIT 1),"
          "  (SELECT value FROM fin WHERE fin.name=g.name AND fin.seq=g.newest),"
          "  (SELECT run FROM fin WHERE fin.name=g.name AND fin.seq=g.newest)"
          " FROM g ORDER BY g.name COLLATE \"C\"",
          &e);
  if (!r) goto fail;
  int rows = PQntuples(r);
  if (rows && !(o->metrics = calloc((size_t)rows, sizeof *o->metrics))) { PQclear(r); oom(); goto fail; }
  for (int i = 0; i < rows; i++) {
    kp_metric_spread *m = &o->metrics[o->nmetrics++];
    m->name = gdup(r, i, 0);
    m->runs = gint(r, i, 1);
    m->has_min = !PQgetisnull(r, i, 2);
    m->min = gval(r, i, 2);
    m->min_run = gdup(r, i, 3);
    m->has_max = !PQgetisnull(r, i, 4);
    m->max = gval(r, i, 4);
    m->max_run = gdup(r, i, 5);
    m->latest = gval(r, i, 6);
    m->latest_run = gdup(r, i, 7);
  }
  PQclear(r);
  if (!(r = qry(s, "SELECT id, status, created FROM runs WHERE experiment_id=$1 ORDER BY seq DESC LIMIT 5", &e))) goto fail;
  o->recent = calloc(5, sizeof *o->recent);
  if (!o->recent) { PQclear(r); oom(); goto fail; }
  for (int i = 0; i < PQntuples(r) && i < 5; i++) {
    kp_run_brief *b = &o->recent[o->nrecent++];
    b->id = gdup(r, i, 0);
    b->status = gstatus(r, i, 1);
    b->created = gtime(r, i, 2);
  }
  PQclear(r);
  return 0;
fail:
  kp_experiment_detail_free(o);
  return -1;
}

/* ---- compute targets ----------------------------------------------------------------- */
static int pg_compute_create(kp_store *base, const char *name, const char *type, int max_nodes) {
  pg_store *s = PG(base);
  pa a = {0};
  p_txt(&a, name);
  p_txt(&a, type);
  p_i64(&a, max_nodes);
  p_f64(&a, now());
  if (cmd(s, "INSERT INTO computes(name, type, max_nodes, created) VALUES($1,$2,$3,$4)", &a, NULL) == 0) return 0;
  if (kp_store_last_error()->code == KP_STORE_EEXISTS)
    return kp_store_fail(KP_STORE_EEXISTS, "compute target '%s' already exists", name);
  return -1;
}

static int pg_compute_list(kp_store *base, const char *only, kp_compute **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  pa a = {0};
  p_txt(&a, only);
  PGresult *r = qry(s,
                    "SELECT c.name, c.type, c.max_nodes,"
                    " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status IN " SQL_BUSY "),"
                    " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status='Queued')"
                    " FROM computes c WHERE $1::text IS NULL OR c.name=$1 ORDER BY c.name COLLATE \"C\"",
                    &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows == 0 && only) {
    PQclear(r);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", only);
  }
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_compute *c = &(*out)[(*n)++];
    c->name = gdup(r, i, 0);
    c->type = gdup(r, i, 1);
    c->max_nodes = gint(r, i, 2);
    c->busy_nodes = gint(r, i, 3);
    c->queued_runs = gint(r, i, 4);
  }
  PQclear(r);
  return 0;
}

static int pg_compute_delete(kp_store *base, const char *name, int *active_runs) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (active_runs) *active_runs = 0;
  if (tx_begin(s, &own) != 0) return -1;
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s, "SELECT count(*) FROM runs WHERE compute=$1 AND status IN " SQL_ACTIVE, &a);
  if (!r) goto out;
  int active = gint(r, 0, 0);
  PQclear(r);
  if (active > 0) {
    if (active_runs) *active_runs = active;
    kp_store_fail(KP_STORE_ECONFLICT, "compute target '%s' is in use by %d active run(s)", name, active);
    goto out;
  }
  long long changed = 0;
  if (cmd(s, "DELETE FROM computes WHERE name=$1", &a, &changed) != 0) goto out;
  if (changed == 0) {
    kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", name);
    goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* ---- runs ------------------------------------------------------------------------------ */
static int set_tag(pg_store *s, const char *run_id, const char *key, const char *value) {
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, key);
  p_txt(&a, value);
  return cmd(s,
             "INSERT INTO tags(run_id, key, value) VALUES($1,$2,$3)"
             " ON CONFLICT (run_id, key) DO UPDATE SET value=EXCLUDED.value",
             &a, NULL);
}

static int pg_run_create(kp_store *base, const kp_run_new *rn, char *id, size_t idn) {
  pg_store *s = PG(base);
  if (!rn->experiment || !*rn->experiment) return kp_store_fail(KP_STORE_EINVAL, "a run needs an experiment");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  pa a = {0};
  p_txt(&a, rn->experiment);
  p_f64(&a, now());
  if (cmd(s, "INSERT INTO experiments(name, created) VALUES($1, $2) ON CONFLICT (name) DO NOTHING", &a, NULL) != 0) goto out;
  pa b = {0};
  p_txt(&b, rn->experiment);
  p_txt(&b, rn->compute);
  p_txt(&b, rn->source);
  p_txt(&b, rn->entry);
  p_txt(&b, rn->args_json ? rn->args_json : "[]");
  p_txt(&b, rn->snapshot);
  p_i64(&b, (long long)rn->snapshot_bytes);
  p_txt(&b, rn->env_json);
  p_txt(&b, rn->env_json ? rn->env_hash : NULL);
  p_f64(&b, now());
  p_txt(&b, rn->parent_id);
  p_txt(&b, kp_run_status_name(KP_RUN_QUEUED));
  PGresult *r = qry(s,
                    "INSERT INTO runs(experiment_id, status, compute, source, entry, args, snapshot, snapshot_bytes,"
                    " env_json, env_hash, created, parent_id) VALUES((SELECT id FROM experiments WHERE name=$1),"
                    " $12, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING seq",
                    &b);
  if (!r) goto out;
  long long seq = gi64(r, 0, 0);
  PQclear(r);
  snprintf(id, idn, "%s_%lld", rn->experiment, seq);
  pa c = {0};
  p_txt(&c, id);
  p_i64(&c, seq);
  if (cmd(s, "UPDATE runs SET id=$1 WHERE seq=$2", &c, NULL) != 0) goto out;
  for (size_t i = 0; i < rn->ntags; i++)
    if (set_tag(s, id, rn->tag_keys[i], rn->tag_values[i]) != 0) goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

#define RUN_COLS                                                                                              \
  "SELECT r.id, e.name, r.parent_id, r.status, r.compute, r.error, r.created, r.prepared, r.started, r.ended," \
  " r.exit_code, r.signal, r.cancel_requested, r.channel_offset, r.cancel_grace,"                             \
  " r.supervisor_pid, r.supervisor_start, r.entry_pid, r.entry_start,"                                        \
  " r.source, r.entry, r.args, r.snapshot, r.env_json, r.env_hash, r.cancel_reason, r.build_cache,"           \
  " r.snapshot_bytes, r.finalizing"                                                                           \
  " FROM runs r JOIN experiments e ON e.id=r.experiment_id"

static void run_from_row(PGresult *r, int i, kp_run *o) {
  memset(o, 0, sizeof *o);
  o->id = gdup(r, i, 0);
  o->experiment = gdup(r, i, 1);
  o->parent_id = gdupn(r, i, 2);
  o->status = gstatus(r, i, 3);
  o->compute = gdup(r, i, 4);
  o->error = gdupn(r, i, 5);
  o->created = gtime(r, i, 6);
  o->prepared = gtime(r, i, 7);
  o->started = gtime(r, i, 8);
  o->ended = gtime(r, i, 9);
  o->has_exit_code = !PQgetisnull(r, i, 10);
  o->exit_code = gint(r, i, 10);
  o->signal = gint(r, i, 11);
  o->cancel_requested = gint(r, i, 12);
  o->channel_offset = (uint64_t)gi64(r, i, 13);
  o->cancel_grace = gtime(r, i, 14);
  o->supervisor_pid = gi64(r, i, 15);
  o->supervisor_start = (uint64_t)gi64(r, i, 16);
  o->entry_pid = gi64(r, i, 17);
  o->entry_start = (uint64_t)gi64(r, i, 18);
  o->source = gdup(r, i, 19);
  o->entry = gdup(r, i, 20);
  o->args_json = gdup(r, i, 21);
  o->snapshot = gdup(r, i, 22);
  o->env_json = gdupn(r, i, 23);
  o->env_hash = gdupn(r, i, 24);
  o->cancel_reason = gdupn(r, i, 25);
  o->build_cache = gdupn(r, i, 26);
  o->snapshot_bytes = gi64(r, i, 27);
  o->finalizing = gtime(r, i, 28);
}

/* The rows of a RUN_COLS query as runs. */
static int runs_from(PGresult *r, kp_run **out, size_t *n) {
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) run_from_row(r, i, &(*out)[(*n)++]);
  PQclear(r);
  return 0;
}

static int pg_run_get(kp_store *base, const char *id, kp_run *o) {
  pg_store *s = PG(base);
  memset(o, 0, sizeof *o);
  pa a = {0};
  p_txt(&a, id);
  PGresult *r = qry(s, RUN_COLS " WHERE r.id=$1", &a);
  if (!r) return -1;
  if (PQntuples(r) == 0) {
    PQclear(r);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
  }
  run_from_row(r, 0, o);
  PQclear(r);
  return 0;
}

static int pg_run_list(kp_store *base, const kp_run_query *q, kp_run **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  pa a = {0};
  p_txt(&a, q->experiment);
  p_txt(&a, q->has_status ? kp_run_status_name(q->status) : NULL);
  p_txt(&a, q->parent_id);
  if (q->limit > 0) p_i64(&a, q->limit);
  else p_txt(&a, NULL);
  const char *oexpr = NULL;
  switch (q->order) {
  case KP_ORDER_NEWEST: break;
  case KP_ORDER_CREATED: oexpr = "r.created"; break;
  case KP_ORDER_STARTED: oexpr = "r.started"; break;
  case KP_ORDER_STATUS: oexpr = "r.status COLLATE \"C\""; break;
  case KP_ORDER_DURATION:
    oexpr = "coalesce(r.ended, $5::float8) - r.started";
    p_f64(&a, now());
    break;
  case KP_ORDER_ID: oexpr = "r.seq"; break;
  case KP_ORDER_METRIC:
    if (!q->order_metric || !*q->order_metric) return kp_store_fail(KP_STORE_EINVAL, "ordering by a metric needs its name");
    oexpr = "(SELECT nullif(x.value, 'NaN'::float8) FROM metrics x WHERE x.run_id=r.id AND x.name=$5::text"
            " ORDER BY x.step DESC, x.id DESC LIMIT 1)";
    p_txt(&a, q->order_metric);
    break;
  default: return kp_store_fail(KP_STORE_EINVAL, "unknown order %d", (int)q->order);
  }
  char sql[3072];
  const char *where = " WHERE ($1::text IS NULL OR e.name=$1) AND ($2::text IS NULL OR r.status=$2)"
                      " AND ($3::text IS NULL OR r.parent_id=$3)";
  if (oexpr)
    snprintf(sql, sizeof sql, RUN_COLS "%s ORDER BY (%s) IS NULL, (%s) %s, r.seq DESC LIMIT $4::bigint", where, oexpr, oexpr,
             q->desc ? "DESC" : "ASC");
  else snprintf(sql, sizeof sql, RUN_COLS "%s ORDER BY r.seq DESC LIMIT $4::bigint", where);
  PGresult *r = qry(s, sql, &a);
  if (!r) return -1;
  return runs_from(r, out, n);
}

static int pg_run_list_active(kp_store *base, kp_run **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  PGresult *r = qry(s, RUN_COLS " WHERE r.status NOT IN " SQL_ENDED " ORDER BY r.seq", NULL);
  if (!r) return -1;
  return runs_from(r, out, n);
}

/* Sets two integer columns of run 'id': 0 done, 1 no such row, -1 error. */
static int set_pids(pg_store *s, const char *sql, const char *id, int64_t pid, uint64_t start) {
  pa a = {0};
  p_i64(&a, pid);
  p_i64(&a, (long long)start);
  p_txt(&a, id);
  long long changed = 0;
  if (cmd(s, sql, &a, &changed) != 0) return -1;
  return changed > 0 ? 0 : 1;
}

static int pg_run_attach_supervisor(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  pg_store *s = PG(base);
  int r = set_pids(s, "UPDATE runs SET supervisor_pid=$1, supervisor_start=$2 WHERE id=$3 AND status='Queued'", id, pid, start);
  if (r <= 0) return r;
  if (run_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "run %s is not a queued run", id);
}

static int pg_run_attach_entry(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  pg_store *s = PG(base);
  int r = set_pids(s, "UPDATE runs SET entry_pid=$1, entry_start=$2 WHERE id=$3", id, pid, start);
  if (r <= 0) return r;
  return kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
}

static int pg_run_set_build_cache(kp_store *base, const char *id, const char *cache) {
  pg_store *s = PG(base);
  pa a = {0};
  p_txt(&a, cache);
  p_txt(&a, id);
  long long changed = 0;
  if (cmd(s, "UPDATE runs SET build_cache=$1 WHERE id=$2", &a, &changed) != 0) return -1;
  return changed > 0 ? 0 : kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
}

static int pg_run_transition(kp_store *base, const char *id, const kp_run_transition *t) {
  pg_store *s = PG(base);
  if ((unsigned)t->to >= KP_RUN_NSTATUS) return kp_store_fail(KP_STORE_EINVAL, "not a run status: %d", (int)t->to);
  pa a = {0};
  p_txt(&a, id);
  p_txt(&a, kp_run_status_name(t->to));
  p_f64(&a, now());
  p_i64(&a, t->end);
  if (t->has_exit_code) p_i64(&a, t->exit_code);
  else p_txt(&a, NULL);
  if (t->signal) p_i64(&a, t->signal);
  else p_txt(&a, NULL);
  p_txt(&a, t->error);
  long long changed = 0;
  if (cmd(s,
          "UPDATE runs SET status=$2::text,"
          " prepared=CASE WHEN $2::text='Preparing' THEN $3::float8 ELSE prepared END,"
          " started=CASE WHEN $2::text='Running' THEN $3::float8 ELSE started END,"
          " finalizing=CASE WHEN $2::text='Finalizing' THEN $3::float8 ELSE finalizing END,"
          " ended=CASE WHEN $4::int<>0 THEN $3::float8 ELSE ended END,"
          " exit_code=coalesce($5::int, exit_code),"
          " signal=coalesce($6::int, signal),"
          " error=coalesce($7::text, CASE WHEN $2::text='Canceled' THEN cancel_reason END, error)"
          " WHERE id=$1 AND status NOT IN " SQL_ENDED,
          &a, &changed) != 0)
    return -1;
  if (changed > 0) return 0;
  kp_run run;
  if (pg_run_get(base, id, &run) != 0) return -1;  /* ENOTFOUND */
  kp_store_fail(KP_STORE_ECONFLICT, "run %s has ended (%s); its status stays", id, kp_run_status_name(run.status));
  kp_run_free(&run);
  return -1;
}

static int pg_run_claim_node(kp_store *base, const char *id, kp_node_claim *claim, int *max_nodes) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  pa a = {0};
  p_txt(&a, id);
  PGresult *r = qry(s,
                    "SELECT r.cancel_requested, c.max_nodes,"
                    " (SELECT count(*) FROM runs x WHERE x.compute=r.compute AND x.status IN " SQL_BUSY "),"
                    " (SELECT count(*) FROM runs x WHERE x.compute=r.compute AND x.status='Queued' AND x.seq<r.seq)"
                    " FROM runs r LEFT JOIN computes c ON c.name=r.compute WHERE r.id=$1",
                    &a);
  if (!r) goto out;
  if (PQntuples(r) == 0) {
    PQclear(r);
    kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
    goto out;
  }
  int cancel = gint(r, 0, 0), max = gint(r, 0, 1), busy = gint(r, 0, 2), ahead = gint(r, 0, 3);
  PQclear(r);
  if (cancel) *claim = KP_CLAIM_CANCELED;
  else if (max == 0) *claim = KP_CLAIM_NO_TARGET;
  else if (busy + ahead < max) *claim = KP_CLAIM_TAKEN;
  else *claim = KP_CLAIM_WAIT;
  if (max_nodes) *max_nodes = max;
  if (*claim == KP_CLAIM_TAKEN) {
    kp_run_transition t = {.to = KP_RUN_PREPARING};
    if (pg_run_transition(base, id, &t) != 0) goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_run_files_put(kp_store *base, const char *run_id, const kp_file_entry *f, size_t n) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (run_exists(s, run_id) <= 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!f[i].path || !*f[i].path || !f[i].sha256) { kp_store_fail(KP_STORE_EINVAL, "a run file needs a path and a sha256"); goto out; }
    pa a = {0};
    p_txt(&a, run_id);
    p_txt(&a, f[i].path);
    p_i64(&a, f[i].size);
    p_txt(&a, f[i].sha256);
    if (cmd(s,
            "INSERT INTO files(run_id, path, size, sha256) VALUES($1,$2,$3,$4)"
            " ON CONFLICT (run_id, path) DO UPDATE SET size=EXCLUDED.size, sha256=EXCLUDED.sha256",
            &a, NULL) != 0)
      goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_run_request_cancel(kp_store *base, const char *id, double grace, const char *reason) {
  pg_store *s = PG(base);
  pa a = {0};
  p_f64(&a, grace);
  p_txt(&a, reason);
  p_txt(&a, id);
  long long changed = 0;
  if (cmd(s, "UPDATE runs SET cancel_requested=1, cancel_grace=$1, cancel_reason=$2 WHERE id=$3 AND status NOT IN " SQL_ENDED,
          &a, &changed) != 0)
    return -1;
  if (changed > 0) return 0;
  if (run_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "run %s has already ended; there is nothing to cancel", id);
}

/* ---- deleting runs ------------------------------------------------------------------- */
/* Rows (id, status, created) as briefs; clears r. */
static int briefs(PGresult *r, kp_run_brief **out, size_t *n) {
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_run_brief *b = &(*out)[(*n)++];
    b->id = gdup(r, i, 0);
    b->status = gstatus(r, i, 1);
    b->created = gtime(r, i, 2);
  }
  PQclear(r);
  return 0;
}

/* The first column of every row as strings; clears r. */
static int strings(PGresult *r, char ***out, size_t *n) {
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) (*out)[(*n)++] = gdup(r, i, 0);
  PQclear(r);
  return 0;
}

static int pg_experiment_runs(kp_store *base, const char *name, kp_run_brief **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  int e = exists_q(s, "SELECT 1 FROM experiments WHERE name=$1", name);
  if (e <= 0) return e < 0 ? -1 : kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s,
                    "SELECT r.id, r.status, r.created FROM runs r JOIN experiments e ON e.id=r.experiment_id"
                    " WHERE e.name=$1 ORDER BY r.seq",
                    &a);
  return r ? briefs(r, out, n) : -1;
}

static int pg_sweep_runs(kp_store *base, const char *sweep_id, kp_run_brief **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  int e = exists_q(s, "SELECT 1 FROM sweeps WHERE run_id=$1", sweep_id);
  if (e <= 0) return e < 0 ? -1 : kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", sweep_id);
  pa a = {0};
  p_txt(&a, sweep_id);
  PGresult *r = qry(s, "SELECT id, status, created FROM runs WHERE id=$1 OR parent_id=$1 ORDER BY seq", &a);
  return r ? briefs(r, out, n) : -1;
}

static int pg_run_is_sweep(kp_store *base, const char *id, int *yes) {
  int r = exists_q(PG(base), "SELECT 1 FROM sweeps WHERE run_id=$1", id);
  if (r < 0) return -1;
  *yes = r;
  return 0;
}

static int pg_runs_files_size(kp_store *base, const char *const *ids, size_t n, int64_t *files, int64_t *bytes) {
  pg_store *s = PG(base);
  *files = *bytes = 0;
  char *arr = text_array(ids, n);
  if (!arr) return oom();
  pa a = {0};
  p_txt(&a, arr);
  PGresult *r = qry(s, "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE run_id = ANY($1::text[])", &a);
  free(arr);
  if (!r) return -1;
  *files = gi64(r, 0, 0);
  *bytes = gi64(r, 0, 1);
  PQclear(r);
  return 0;
}

static int pg_runs_blobs(kp_store *base, const char *const *ids, size_t n, char ***files, size_t *nfiles, char ***snapshots,
                         size_t *nsnapshots) {
  pg_store *s = PG(base);
  *files = *snapshots = NULL;
  *nfiles = *nsnapshots = 0;
  char *arr = text_array(ids, n);
  if (!arr) return oom();
  pa a = {0};
  p_txt(&a, arr);
  int rc = -1;
  PGresult *r = qry(s, "SELECT DISTINCT sha256 FROM files WHERE run_id = ANY($1::text[])", &a);
  if (!r || strings(r, files, nfiles) != 0) goto out;
  r = qry(s, "SELECT DISTINCT snapshot FROM runs WHERE id = ANY($1::text[])", &a);
  if (!r || strings(r, snapshots, nsnapshots) != 0) goto out;
  rc = 0;
out:
  free(arr);
  if (rc != 0) {
    kp_strings_free(*files, *nfiles);
    *files = NULL;
    *nfiles = 0;
  }
  return rc;
}

static const char *const RUN_DELETES[] = {
  "DELETE FROM metrics WHERE run_id = ANY($1::text[])",
  "DELETE FROM metric_ranks WHERE run_id = ANY($1::text[])",
  "DELETE FROM tags WHERE run_id = ANY($1::text[])",
  "DELETE FROM params WHERE run_id = ANY($1::text[])",
  "DELETE FROM metric_latest WHERE run_id = ANY($1::text[])",
  "DELETE FROM files WHERE run_id = ANY($1::text[])",
  "DELETE FROM sweep_trials WHERE sweep_id = ANY($1::text[]) OR run_id = ANY($1::text[])",
  "DELETE FROM sweeps WHERE run_id = ANY($1::text[])",
  "DELETE FROM runs WHERE id = ANY($1::text[])",
};

static int pg_runs_delete(kp_store *base, const char *const *ids, size_t n) {
  pg_store *s = PG(base);
  char *arr = text_array(ids, n);
  if (!arr) return oom();
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) { free(arr); return -1; }
  pa a = {0};
  p_txt(&a, arr);
  for (size_t i = 0; i < sizeof RUN_DELETES / sizeof RUN_DELETES[0]; i++)
    if (cmd(s, RUN_DELETES[i], &a, NULL) != 0) goto out;
  rc = 0;
out:
  free(arr);
  return tx_end(s, own, rc);
}

static int pg_experiment_delete(kp_store *base, const char *name) {
  pg_store *s = PG(base);
  pa a = {0};
  p_txt(&a, name);
  long long changed = 0;
  if (cmd(s, "DELETE FROM experiments WHERE name=$1", &a, &changed) != 0) return -1;
  if (changed == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  return 0;
}

/* ---- workspace and blobs --------------------------------------------------------------- */
static int pg_counts(kp_store *base, kp_store_counts *o) {
  PGresult *r = qry(PG(base),
                    "SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM runs), (SELECT count(*) FROM computes),"
                    " (SELECT count(*) FROM models)",
                    NULL);
  if (!r) return -1;
  o->experiments = gint(r, 0, 0);
  o->runs = gint(r, 0, 1);
  o->computes = gint(r, 0, 2);
  o->models = gint(r, 0, 3);
  PQclear(r);
  return 0;
}

static int pg_blobs_referenced(kp_store *base, const char *const *hex, size_t n, unsigned char *used) {
  pg_store *s = PG(base);
  for (size_t i = 0; i < n; i++) used[i] = 1;  /* on failure nothing looks unused */
  char *arr = text_array(hex, n);
  if (!arr) return oom();
  pa a = {0};
  p_txt(&a, arr);
  /* every column that refers to a blob */
  PGresult *r = qry(s,
                    "SELECT c.i FROM unnest($1::text[]) WITH ORDINALITY AS c(h, i)"
                    " WHERE EXISTS (SELECT 1 FROM files WHERE sha256=c.h)"
                    " OR EXISTS (SELECT 1 FROM model_files WHERE sha256=c.h)"
                    " OR EXISTS (SELECT 1 FROM runs WHERE snapshot=c.h)"
                    " OR EXISTS (SELECT 1 FROM services WHERE entry_sha256=c.h)",
                    &a);
  free(arr);
  if (!r) return -1;
  for (size_t i = 0; i < n; i++) used[i] = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    long long k = gi64(r, i, 0);
    if (k >= 1 && (size_t)k <= n) used[k - 1] = 1;
  }
  PQclear(r);
  return 0;
}

static int pg_snapshot_list(kp_store *base, char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  PGresult *r = qry(PG(base), "SELECT DISTINCT snapshot FROM runs", NULL);
  return r ? strings(r, out, n) : -1;
}

/* ---- tags -------------------------------------------------------------------------------- */
static int pg_tag_set(kp_store *base, const char *run_id, const char *key, const char *value) {
  pg_store *s = PG(base);
  if (!key || !*key || !value) return kp_store_fail(KP_STORE_EINVAL, "a tag needs a key and a value");
  if (run_exists(s, run_id) <= 0) return -1;
  return set_tag(s, run_id, key, value);
}

/* Rows (key, value) as tags; clears r. */
static int tags_from(PGresult *r, kp_tag **out, size_t *n) {
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    (*out)[*n].key = gdup(r, i, 0);
    (*out)[*n].value = gdup(r, i, 1);
    (*n)++;
  }
  PQclear(r);
  return 0;
}

static int pg_tag_list(kp_store *base, const char *run_id, kp_tag **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(s, "SELECT key, value FROM tags WHERE run_id=$1 ORDER BY key COLLATE \"C\"", &a);
  return r ? tags_from(r, out, n) : -1;
}

static int pg_tag_remove(kp_store *base, const char *run_id, const char *const *keys, size_t n) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (run_exists(s, run_id) <= 0) goto out;
  for (size_t i = 0; i < n; i++) {
    pa a = {0};
    p_txt(&a, run_id);
    p_txt(&a, keys[i]);
    long long changed = 0;
    if (cmd(s, "DELETE FROM tags WHERE run_id=$1 AND key=$2", &a, &changed) != 0) goto out;
    if (changed == 0) {
      kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no tag '%s'; no tag was removed", run_id, keys[i]);
      goto out;
    }
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* ---- metrics -------------------------------------------------------------------------- */
typedef struct next_steps {
  struct { const char *name; int64_t next; } *v;
  size_t n;
} next_steps;

/* The step of a point of 'name': the explicit one, else one past the last. */
static int step_for(pg_store *s, next_steps *ns, const char *run_id, const char *name, int64_t step, int64_t *out) {
  size_t i;
  for (i = 0; i < ns->n; i++)
    if (!strcmp(ns->v[i].name, name)) break;
  if (i == ns->n) {
    void *p = realloc(ns->v, (ns->n + 1) * sizeof *ns->v);
    if (!p) return oom();
    ns->v = p;
    pa a = {0};
    p_txt(&a, run_id);
    p_txt(&a, name);
    PGresult *r = qry(s, "SELECT coalesce(max(step)+1, 0) FROM metrics WHERE run_id=$1 AND name=$2", &a);
    if (!r) return -1;
    ns->v[i].name = name;
    ns->v[i].next = gi64(r, 0, 0);
    PQclear(r);
    ns->n++;
  }
  *out = step >= 0 ? step : ns->v[i].next;
  if (*out + 1 > ns->v[i].next) ns->v[i].next = *out + 1;
  return 0;
}

/* A point of rank > 0 (distributed runs) into metric_ranks; its implicit
 * step is one past that rank's last of that name. */
static int pg_ingest_ranked(pg_store *s, const char *run_id, const kp_metric_point *p) {
  char num[48], tm[48], val[48], rk[16];
  snprintf(rk, sizeof rk, "%d", p->rank);
  snprintf(num, sizeof num, "%lld", (long long)p->step);
  fmt_f64(tm, sizeof tm, p->time);
  fmt_f64(val, sizeof val, p->value);
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, rk);
  p_txt(&a, p->name);
  p_txt(&a, num);
  p_txt(&a, tm);
  p_txt(&a, val);
  return cmd(s,
             "INSERT INTO metric_ranks(run_id, rank, name, step, ts, value) SELECT $1, $2::int, $3,"
             " CASE WHEN $4::bigint >= 0 THEN $4::bigint ELSE (SELECT coalesce(max(step)+1, 0) FROM metric_ranks"
             " WHERE run_id=$1 AND rank=$2::int AND name=$3) END, $5::float8, $6::float8",
             &a, NULL);
}

static int pg_metrics_ingest(kp_store *base, const char *run_id, const kp_ingest_batch *b) {
  pg_store *s = PG(base);
  if (b->to < b->from) return kp_store_fail(KP_STORE_EINVAL, "a batch cannot end (%llu) before it starts (%llu)",
                                             (unsigned long long)b->to, (unsigned long long)b->from);
  for (size_t i = 0; i < b->npoints; i++) {
    if (!b->points[i].name || !*b->points[i].name) return kp_store_fail(KP_STORE_EINVAL, "a metric needs a name");
    if (b->points[i].rank < 0)
      return kp_store_fail(KP_STORE_EINVAL, "metric '%s': rank %d is negative", b->points[i].name, b->points[i].rank);
  }
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  next_steps ns = {0};
  sbuf names = {0}, steps = {0}, times = {0}, values = {0};
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(s, "SELECT channel_offset FROM runs WHERE id=$1 FOR UPDATE", &a);
  if (!r) goto out;
  if (PQntuples(r) == 0) {
    PQclear(r);
    kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", run_id);
    goto out;
  }
  uint64_t at = (uint64_t)gi64(r, 0, 0);
  PQclear(r);
  if (at != b->from) {
    kp_store_fail(KP_STORE_ECONFLICT, "run %s: the batch starts at offset %llu, the store is at %llu", run_id,
                  (unsigned long long)b->from, (unsigned long long)at);
    goto out;
  }
  /* the points go in as one statement of four arrays, in the batch's order */
  sb_str(&names, "{");
  sb_str(&steps, "{");
  sb_str(&times, "{");
  sb_str(&values, "{");
  size_t n0 = 0;  /* rank 0's points so far */
  for (size_t i = 0; i < b->npoints; i++) {
    const kp_metric_point *p = &b->points[i];
    int64_t step = 0;
    if (p->rank > 0) {
      if (pg_ingest_ranked(s, run_id, p) != 0) goto out;
      continue;
    }
    if (step_for(s, &ns, run_id, p->name, p->step, &step) != 0) goto out;
    char num[48];
    const char *sep = n0++ ? "," : "";
    sb_str(&names, sep);
    sb_elem(&names, p->name);
    snprintf(num, sizeof num, "%s%lld", sep, (long long)step);
    sb_str(&steps, num);
    sb_str(&times, sep);
    fmt_f64(num, sizeof num, p->time);
    sb_str(&times, num);
    sb_str(&values, sep);
    fmt_f64(num, sizeof num, p->value);
    sb_str(&values, num);
  }
  sb_str(&names, "}");
  sb_str(&steps, "}");
  sb_str(&times, "}");
  sb_str(&values, "}");
  if (names.bad || steps.bad || times.bad || values.bad) { oom(); goto out; }
  if (n0) {
    pa m = {0};
    p_txt(&m, run_id);
    p_txt(&m, names.p);
    p_txt(&m, steps.p);
    p_txt(&m, times.p);
    p_txt(&m, values.p);
    /* and each metric's latest point (for run search) from the batch's own
     * rows: a point replaces the kept one when its step is later, or the
     * same and it came later. Recomputing it from the whole series read
     * every earlier point of the metric again on each batch: 1,000,000
     * points of one metric took 1,034 s (bench/scale) */
    if (cmd(s,
            "WITH ins AS (INSERT INTO metrics(run_id, name, step, ts, value)"
            " SELECT $1, p.n, p.s, p.t, p.v FROM unnest($2::text[], $3::bigint[], $4::float8[], $5::float8[])"
            " WITH ORDINALITY AS p(n, s, t, v, i) ORDER BY p.i RETURNING id, name, step, value)"
            " INSERT INTO metric_latest(run_id, name, step, mid, value)"
            " SELECT DISTINCT ON (name) $1, name, step, id, nullif(value, 'NaN'::float8) FROM ins"
            " ORDER BY name, step DESC, id DESC"
            " ON CONFLICT (run_id, name) DO UPDATE SET step = EXCLUDED.step, mid = EXCLUDED.mid, value = EXCLUDED.value"
            " WHERE EXCLUDED.step > metric_latest.step"
            " OR (EXCLUDED.step = metric_latest.step AND EXCLUDED.mid > metric_latest.mid)",
            &m, NULL) != 0)
      goto out;
  }
  for (size_t i = 0; i < b->ntags; i++)
    if (set_tag(s, run_id, b->tag_keys[i], b->tag_values[i]) != 0) goto out;
  pa o = {0};
  p_i64(&o, (long long)b->to);
  p_txt(&o, run_id);
  if (cmd(s, "UPDATE runs SET channel_offset=$1 WHERE id=$2", &o, NULL) != 0) goto out;
  rc = 0;
out:
  free(ns.v);
  free(names.p);
  free(steps.p);
  free(times.p);
  free(values.p);
  return tx_end(s, own, rc);
}

static int pg_metric_series(kp_store *base, const char *run_id, const char *name, kp_metric_point **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, name);
  PGresult *r = qry(s, "SELECT step, ts, value FROM metrics WHERE run_id=$1 AND name=$2 ORDER BY step, id", &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows == 0) {
    PQclear(r);
    return kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no metric named '%s'", run_id, name);
  }
  if (!(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_metric_point *p = &(*out)[(*n)++];
    p->name = NULL;
    p->step = gi64(r, i, 0);
    p->time = gtime(r, i, 1);
    p->value = gval(r, i, 2);
  }
  PQclear(r);
  return 0;
}

static int pg_metric_exists(kp_store *base, const char *name, int *yes) {
  int r = exists_q(PG(base), "SELECT 1 FROM metrics WHERE name=$1 LIMIT 1", name);
  if (r < 0) return -1;
  *yes = r;
  return 0;
}

static int pg_metric_latest_value(kp_store *base, const char *run_id, const char *name, double *value, int *found) {
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, name);
  PGresult *r = qry(PG(base), "SELECT value FROM metrics WHERE run_id=$1 AND name=$2 ORDER BY step DESC, id DESC LIMIT 1", &a);
  if (!r) return -1;
  *found = PQntuples(r) > 0;
  if (*found) *value = gval(r, 0, 0);
  PQclear(r);
  return 0;
}

static int pg_metric_follow(kp_store *base, const char *run_id, const char *name, int64_t *cursor, kp_metric_latest *out,
                            int *found) {
  pg_store *s = PG(base);
  *found = 0;
  memset(out, 0, sizeof *out);
  PGresult *r;
  if (*cursor < 0) {
    /* this run's newest row so far */
    pa a = {0};
    p_txt(&a, run_id);
    p_txt(&a, name);
    if (!(r = qry(s, "SELECT coalesce(max(id), 0) FROM metrics WHERE run_id=$1 AND ($2::text IS NULL OR name=$2)", &a)))
      return -1;
    long long last = gi64(r, 0, 0);
    PQclear(r);
    *cursor = last ? last - 1 : 0;
  }
  /* only rows added since the cursor are read (by id; ids are assigned under
   * the write lock, so in commit order) */
  if (!(r = qry(s, "SELECT coalesce(max(id), 0) FROM metrics", NULL))) return -1;
  long long top = gi64(r, 0, 0);
  PQclear(r);
  if (top <= *cursor) return 0;
  pa a = {0};
  p_i64(&a, *cursor);
  p_i64(&a, top);
  p_txt(&a, run_id);
  p_txt(&a, name);
  if (!(r = qry(s,
                "SELECT name, step, value FROM metrics WHERE id > $1 AND id <= $2 AND run_id = $3"
                " AND ($4::text IS NULL OR name = $4) ORDER BY id DESC LIMIT 1",
                &a)))
    return -1;
  if (PQntuples(r) > 0) {
    out->name = gdup(r, 0, 0);
    out->step = gi64(r, 0, 1);
    out->value = gval(r, 0, 2);
    *found = 1;
  }
  PQclear(r);
  *cursor = top;
  return 0;
}

static int pg_run_sweep_spec(kp_store *base, const char *run_id, char **spec) {
  *spec = NULL;
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(PG(base), "SELECT w.spec FROM runs r JOIN sweeps w ON w.run_id=r.parent_id WHERE r.id=$1", &a);
  if (!r) return -1;
  if (PQntuples(r) > 0) *spec = gdup(r, 0, 0);
  PQclear(r);
  return 0;
}

static int pg_metrics_latest(kp_store *base, const char *run_id, kp_metric_latest **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(s,
                    "SELECT DISTINCT ON (name COLLATE \"C\") name, value, step FROM metrics WHERE run_id=$1"
                    " ORDER BY name COLLATE \"C\", step DESC, id DESC",
                    &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_metric_latest *m = &(*out)[(*n)++];
    m->name = gdup(r, i, 0);
    m->value = gval(r, i, 1);
    m->step = gi64(r, i, 2);
  }
  PQclear(r);
  return 0;
}

static int pg_metric_names(kp_store *base, const char *run_id, char ***out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(s, "SELECT name FROM metrics WHERE run_id=$1 GROUP BY name ORDER BY name COLLATE \"C\"", &a);
  return r ? strings(r, out, n) : -1;
}

/* ---- distributed runs: metrics per rank ------------------------------------------------- */
static int pg_metric_series_rank(kp_store *base, const char *run_id, const char *name, int rank, kp_metric_point **out,
                                 size_t *n) {
  if (rank < 0) return kp_store_fail(KP_STORE_EINVAL, "rank %d is negative", rank);
  if (rank == 0) return pg_metric_series(base, run_id, name, out, n);
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  char rk[16];
  snprintf(rk, sizeof rk, "%d", rank);
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, rk);
  p_txt(&a, name);
  PGresult *r = qry(s, "SELECT step, ts, value FROM metric_ranks WHERE run_id=$1 AND rank=$2::int AND name=$3 ORDER BY step, id",
                    &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows == 0) {
    PQclear(r);
    return kp_store_fail(KP_STORE_ENOTFOUND, "rank %d of run %s logged no metric named '%s'", rank, run_id, name);
  }
  if (!(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_metric_point *p = &(*out)[(*n)++];
    *p = (kp_metric_point){.step = gi64(r, i, 0), .time = gtime(r, i, 1), .value = gval(r, i, 2), .rank = rank};
  }
  PQclear(r);
  return 0;
}

static int pg_metric_names_rank(kp_store *base, const char *run_id, int rank, char ***out, size_t *n) {
  if (rank < 0) return kp_store_fail(KP_STORE_EINVAL, "rank %d is negative", rank);
  if (rank == 0) return pg_metric_names(base, run_id, out, n);
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  char rk[16];
  snprintf(rk, sizeof rk, "%d", rank);
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, rk);
  PGresult *r = qry(s, "SELECT name FROM metric_ranks WHERE run_id=$1 AND rank=$2::int GROUP BY name ORDER BY name COLLATE \"C\"",
                    &a);
  return r ? strings(r, out, n) : -1;
}

/* ---- models ---------------------------------------------------------------------------- */
static int pg_model_version_create(kp_store *base, const kp_model_new *m, int64_t *version) {
  pg_store *s = PG(base);
  if (!m->name || !*m->name || !m->path) return kp_store_fail(KP_STORE_EINVAL, "a model version needs a name and a path");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (m->run_id && run_exists(s, m->run_id) <= 0) goto out;
  pa a = {0};
  p_txt(&a, m->name);
  PGresult *r = qry(s, "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name=$1", &a);
  if (!r) goto out;
  int64_t v = gi64(r, 0, 0);
  PQclear(r);
  pa b = {0};
  p_txt(&b, m->name);
  p_i64(&b, v);
  p_txt(&b, m->run_id);
  p_txt(&b, m->path);
  p_txt(&b, m->description ? m->description : "");
  p_f64(&b, now());
  r = qry(s, "INSERT INTO models(name, version, run_id, path, description, created) VALUES($1,$2,$3,$4,$5,$6) RETURNING id", &b);
  if (!r) goto out;
  long long mid = gi64(r, 0, 0);
  PQclear(r);
  for (size_t i = 0; i < m->nfiles; i++) {
    pa f = {0};
    p_i64(&f, mid);
    p_txt(&f, m->files[i].path);
    p_i64(&f, m->files[i].size);
    p_txt(&f, m->files[i].sha256);
    if (cmd(s, "INSERT INTO model_files(model_id, path, size, sha256) VALUES($1,$2,$3,$4)", &f, NULL) != 0) {
      /* two files of one path: the version cannot be recorded (as SQLite says) */
      if (kp_store_last_error()->code == KP_STORE_EEXISTS)
        kp_store_fail(KP_STORE_EBACKEND, "store: model %s: two files have the path '%s'", m->name, m->files[i].path);
      goto out;
    }
  }
  for (size_t i = 0; i < m->ntags; i++) {
    pa t = {0};
    p_i64(&t, mid);
    p_txt(&t, m->tag_keys[i]);
    p_txt(&t, m->tag_values[i]);
    if (cmd(s,
            "INSERT INTO model_tags(model_id, key, value) VALUES($1,$2,$3)"
            " ON CONFLICT (model_id, key) DO UPDATE SET value=EXCLUDED.value",
            &t, NULL) != 0)
      goto out;
  }
  *version = v;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* Rows (path, sha256, size) as files; clears r. */
static int stored_files(PGresult *r, kp_stored_file **out, size_t *n) {
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_stored_file *f = &(*out)[(*n)++];
    f->path = gdup(r, i, 0);
    f->sha256 = gdup(r, i, 1);
    f->size = gi64(r, i, 2);
  }
  PQclear(r);
  return 0;
}

static int pg_run_files_list(kp_store *base, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, prefix);
  PGresult *r = qry(s,
                    "SELECT path, sha256, size FROM files WHERE run_id=$1 AND ($2::text IS NULL OR path=$2"
                    " OR substr(path, 1, length($2)+1)=$2||'/') ORDER BY path COLLATE \"C\"",
                    &a);
  return r ? stored_files(r, out, n) : -1;
}

/* The id of model version 'name':'version' (0: the latest); ENOTFOUND. */
static int model_id(pg_store *s, const char *name, int64_t version, long long *id, int64_t *got) {
  pa a = {0};
  p_txt(&a, name);
  p_i64(&a, version);
  PGresult *r = qry(s, "SELECT id, version FROM models WHERE name=$1 AND ($2::bigint=0 OR version=$2) ORDER BY version DESC LIMIT 1", &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) {
    *id = gi64(r, 0, 0);
    if (got) *got = gi64(r, 0, 1);
  }
  PQclear(r);
  if (!found) {
    if (version) return kp_store_fail(KP_STORE_ENOTFOUND, "model '%s' has no version %lld", name, (long long)version);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no model named '%s' is registered", name);
  }
  return 0;
}

#define MODEL_COLS "SELECT id, name, version, run_id, path, description, created FROM models"

/* Fills 'm' from row i of a MODEL_COLS result, with its files and tags. */
static int model_from_row(pg_store *s, PGresult *row, int i, kp_model *m) {
  memset(m, 0, sizeof *m);
  long long id = gi64(row, i, 0);
  m->name = gdup(row, i, 1);
  m->version = gi64(row, i, 2);
  m->run_id = gdupn(row, i, 3);
  m->path = gdup(row, i, 4);
  m->description = gdup(row, i, 5);
  m->created = gtime(row, i, 6);
  pa a = {0};
  p_i64(&a, id);
  PGresult *r = qry(s, "SELECT path, sha256, size FROM model_files WHERE model_id=$1 ORDER BY path COLLATE \"C\"", &a);
  if (!r || stored_files(r, &m->files, &m->nfiles) != 0) return -1;
  r = qry(s, "SELECT key, value FROM model_tags WHERE model_id=$1 ORDER BY key COLLATE \"C\"", &a);
  if (!r || tags_from(r, &m->tags, &m->ntags) != 0) return -1;
  return 0;
}

static int pg_model_get(kp_store *base, const char *name, int64_t version, kp_model *out) {
  pg_store *s = PG(base);
  memset(out, 0, sizeof *out);
  long long id;
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  pa a = {0};
  p_i64(&a, id);
  PGresult *r = qry(s, MODEL_COLS " WHERE id=$1", &a);
  if (!r) return -1;
  int rc = -1;
  if (PQntuples(r) > 0) rc = model_from_row(s, r, 0, out);
  else kp_store_fail(KP_STORE_ENOTFOUND, "no model named '%s' is registered", name);
  PQclear(r);
  if (rc != 0) kp_model_free(out);
  return rc;
}

static int pg_model_list(kp_store *base, const char *name, kp_model **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s, MODEL_COLS " WHERE $1::text IS NULL OR name=$1 ORDER BY name COLLATE \"C\", version", &a);
  if (!r) return -1;
  int rows = PQntuples(r), rc = 0;
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows && rc == 0; i++) rc = model_from_row(s, r, i, &(*out)[(*n)++]);
  PQclear(r);
  if (rc != 0) {
    kp_models_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int pg_model_services(kp_store *base, const char *name, int64_t version, char ***out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  long long id;
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  pa a = {0};
  p_i64(&a, id);
  PGresult *r = qry(s, "SELECT name FROM services WHERE model_id=$1 ORDER BY name COLLATE \"C\"", &a);
  return r ? strings(r, out, n) : -1;
}

static int pg_model_delete(kp_store *base, const char *name, int64_t version) {
  pg_store *s = PG(base);
  long long id;
  if (version <= 0) return kp_store_fail(KP_STORE_EINVAL, "say which version of '%s' to delete", name);
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  pa a = {0};
  p_i64(&a, id);
  return cmd(s, "DELETE FROM models WHERE id=$1", &a, NULL);
}

static int pg_model_tags_set(kp_store *base, const char *name, int64_t version, const char *const *keys,
                             const char *const *values, size_t n) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  long long id;
  if (model_id(s, name, version, &id, NULL) != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!keys[i] || !*keys[i] || !values[i]) { kp_store_fail(KP_STORE_EINVAL, "a tag needs a key and a value"); goto out; }
    pa a = {0};
    p_i64(&a, id);
    p_txt(&a, keys[i]);
    p_txt(&a, values[i]);
    if (cmd(s,
            "INSERT INTO model_tags(model_id, key, value) VALUES($1,$2,$3)"
            " ON CONFLICT (model_id, key) DO UPDATE SET value=EXCLUDED.value",
            &a, NULL) != 0)
      goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_model_tags_remove(kp_store *base, const char *name, int64_t version, const char *const *keys, size_t n) {
  pg_store *s = PG(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  long long id;
  int64_t got = version;
  if (model_id(s, name, version, &id, &got) != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    pa a = {0};
    p_i64(&a, id);
    p_txt(&a, keys[i]);
    long long changed = 0;
    if (cmd(s, "DELETE FROM model_tags WHERE model_id=$1 AND key=$2", &a, &changed) != 0) goto out;
    if (changed == 0) {
      kp_store_fail(KP_STORE_ENOTFOUND, "model %s:%lld has no tag '%s'; nothing was removed", name, (long long)got, keys[i]);
      goto out;
    }
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* ---- run search ----------------------------------------------------------------------------- */
static int pg_run_params_set(kp_store *base, const char *run_id, const char *const *keys, const char *const *values,
                             size_t n) {
  pg_store *s = PG(base);
  for (size_t i = 0; i < n; i++)
    if (!keys[i] || !*keys[i] || !values[i]) return kp_store_fail(KP_STORE_EINVAL, "a param needs a key and a value");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (run_exists(s, run_id) <= 0) goto out;
  /* num: the number the text is (kp_num, as SQLite's NUMERIC column keeps
   * it), NULL for text, so params compare and order as numbers */
  for (size_t i = 0; i < n; i++) {
    pa a = {0};
    p_txt(&a, run_id);
    p_txt(&a, keys[i]);
    p_txt(&a, values[i]);
    if (cmd(s,
            "INSERT INTO params(run_id, key, value, num) VALUES($1, $2, $3, kp_num($3))"
            " ON CONFLICT (run_id, key) DO UPDATE SET value=EXCLUDED.value, num=EXCLUDED.num",
            &a, NULL) != 0)
      goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_run_params(kp_store *base, const char *run_id, kp_tag **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  PGresult *r = qry(s, "SELECT key, value FROM params WHERE run_id=$1 ORDER BY key COLLATE \"C\"", &a);
  return r ? tags_from(r, out, n) : -1;
}

/* A search's SQL with numbered parameters ($k, text format): every value
 * and name the user wrote is a parameter, never part of the text. */
typedef struct pgq {
  sbuf sql;
  const char **v;
  int n, cap;
  char **owned;
  int nowned;
  int bad;
  int now;  /* the parameter holding 'now' (duration), 0 until used */
  double now_value;
} pgq;

static void q_add(pgq *q, const char *t) { sb_str(&q->sql, t); }

/* a new parameter with value 'text' (borrowed, or owned when 'own'); its number */
static int q_param(pgq *q, const char *text, int own) {
  if (q->bad) return 1;
  if (q->n == q->cap) {
    int cap = q->cap ? 2 * q->cap : 16;
    const char **v = realloc(q->v, (size_t)cap * sizeof *v);
    if (!v) { q->bad = 1; return 1; }
    q->v = v;
    q->cap = cap;
  }
  if (own) {
    char **o = realloc(q->owned, (size_t)(q->nowned + 1) * sizeof *o);
    if (!o || !text) { free(o ? NULL : (void *)text); if (o) q->owned = o; q->bad = 1; return 1; }
    q->owned = o;
    q->owned[q->nowned++] = (char *)text;
  }
  q->v[q->n++] = text;
  return q->n;
}

/* appends "$k::cast" */
static void q_ref(pgq *q, int k, const char *cast) {
  char b[48];
  snprintf(b, sizeof b, "$%d::%s", k, cast);
  q_add(q, b);
}

static void q_text(pgq *q, const char *text) { q_ref(q, q_param(q, text, 0), "text"); }

static void q_num(pgq *q, double x) {
  char *b = malloc(40);
  if (b) fmt_f64(b, 40, x);
  q_ref(q, q_param(q, b, 1), "float8");
}

static void q_int(pgq *q, long long x) {
  char *b = malloc(24);
  if (b) snprintf(b, 24, "%lld", x);
  q_ref(q, q_param(q, b, 1), "bigint");
}

static void pgq_free(pgq *q) {
  free(q->sql.p);
  free(q->v);
  for (int i = 0; i < q->nowned; i++) free(q->owned[i]);
  free(q->owned);
}

/* an attribute's SQL (r: runs, e: experiments) into 'out'; duration is an
 * expression over the search's 'now' (one parameter, however often used) */
static void q_attr(pgq *q, kp_filter_attr a, char *out, size_t n) {
  const char *c = "NULL";
  switch (a) {
  case KP_ATTR_STATUS: c = "r.status"; break;
  case KP_ATTR_EXPERIMENT: c = "e.name"; break;
  case KP_ATTR_COMPUTE: c = "r.compute"; break;
  case KP_ATTR_CREATED: c = "r.created"; break;
  case KP_ATTR_STARTED: c = "r.started"; break;
  case KP_ATTR_ENDED: c = "r.ended"; break;
  case KP_ATTR_ID: c = "r.id"; break;
  case KP_ATTR_PARENT: c = "r.parent_id"; break;
  case KP_ATTR_DURATION:
    if (!q->now) {
      char *b = malloc(40);
      if (b) fmt_f64(b, 40, q->now_value);
      q->now = q_param(q, b, 1);
    }
    snprintf(out, n, "(coalesce(r.ended, $%d::float8) - r.started)", q->now);
    return;
  }
  snprintf(out, n, "%s", c);
}

static const char *const PG_OPS[] = {" = ", " <> ", " < ", " <= ", " > ", " >= "};

/* One comparison of a value: 'text' the column as text (ordered bytewise),
 * 'num' the column as a number or NULL (tags: numbers compare as the text
 * written). Params compare numbers only with values that are numbers (num
 * not NULL), as SQLite's typeof() test does. LIKE is case-sensitive and
 * ILIKE folds case as the database's ctype does (ASCII with the C locale). */
static void q_cmp(pgq *q, const kp_filter *f, const kp_filter_value *v, kp_filter_op op, const char *text, const char *num) {
  if (op == KP_FOP_IN) op = KP_FOP_EQ;
  switch (op) {
  case KP_FOP_LIKE:
  case KP_FOP_NOT_LIKE:
  case KP_FOP_ILIKE:
  case KP_FOP_NOT_ILIKE:
    q_add(q, op == KP_FOP_NOT_LIKE || op == KP_FOP_NOT_ILIKE ? "NOT (" : "(");
    q_add(q, text);
    q_add(q, op == KP_FOP_LIKE || op == KP_FOP_NOT_LIKE ? " LIKE " : " ILIKE ");
    q_text(q, v->text);
    q_add(q, ")");
    return;
  default: break;
  }
  if (v->is_number && num) {
    q_add(q, "(");
    if (f->key.kind == KP_FILTER_PARAM) {
      q_add(q, num);
      q_add(q, " IS NOT NULL AND ");
    }
    q_add(q, num);
    q_add(q, PG_OPS[op]);
    q_num(q, v->number);
    q_add(q, ")");
  } else {
    q_add(q, "(");
    q_add(q, text);
    q_add(q, " COLLATE \"C\"");
    q_add(q, PG_OPS[op]);
    q_text(q, v->text);
    q_add(q, ")");
  }
}

static void q_cmps(pgq *q, const kp_filter *f, const char *text, const char *num) {
  if (f->op != KP_FOP_IN && f->op != KP_FOP_NOT_IN) {
    q_cmp(q, f, &f->values[0], f->op, text, num);
    return;
  }
  q_add(q, f->op == KP_FOP_NOT_IN ? "NOT (" : "(");
  for (size_t i = 0; i < f->nvalues; i++) {
    if (i) q_add(q, " OR ");
    q_cmp(q, f, &f->values[i], KP_FOP_IN, text, num);
  }
  q_add(q, ")");
}

/* The filter's AST as a WHERE condition: the one place that turns a user's
 * filter into SQL. NULLs behave as in SQLite (NOT of NULL is NULL: the run
 * is left out). */
static void q_filter(pgq *q, const kp_filter *f) {
  if (f->type != KP_FILTER_CMP) {
    q_add(q, "(");
    q_filter(q, f->left);
    q_add(q, f->type == KP_FILTER_AND ? " AND " : " OR ");
    q_filter(q, f->right);
    q_add(q, ")");
    return;
  }
  static const char *const sub[] = {
    [KP_FILTER_METRIC] = "r.id IN (SELECT run_id FROM metric_latest WHERE name = ",
    [KP_FILTER_PARAM] = "r.id IN (SELECT run_id FROM params WHERE key = ",
    [KP_FILTER_TAG] = "r.id IN (SELECT run_id FROM tags WHERE key = ",
  };
  if (f->key.kind != KP_FILTER_ATTR) {
    q_add(q, sub[f->key.kind]);
    q_text(q, f->key.name);
    q_add(q, " AND ");
    q_cmps(q, f, "value", f->key.kind == KP_FILTER_METRIC ? "value" : f->key.kind == KP_FILTER_PARAM ? "num" : NULL);
    q_add(q, ")");
    return;
  }
  char col[96];
  q_attr(q, f->key.attr, col, sizeof col);
  q_cmps(q, f, col, kp_filter_attr_numeric(f->key.attr) ? col : NULL);
}

/* The order as three keys (SQLite's one value, its type included): rank
 * (0, 1, ...: numbers before text ascending, text before numbers
 * descending, runs without a value last), then the number, then the text
 * (bytewise); ties newest first. */
typedef struct pgorder {
  int has, desc;
  kp_filter_key key;
  char rank[160], num[96], text[96];
} pgorder;

static void q_order_setup(pgq *q, pgorder *o) {
  if (!o->has) return;
  const kp_filter_key *k = &o->key;
  if (k->kind == KP_FILTER_METRIC) {
    snprintf(o->rank, sizeof o->rank, "CASE WHEN ok.value IS NULL THEN 1 ELSE 0 END");
    snprintf(o->num, sizeof o->num, "ok.value");
    snprintf(o->text, sizeof o->text, "NULL::text");
  } else if (k->kind == KP_FILTER_PARAM) {
    snprintf(o->rank, sizeof o->rank, "CASE WHEN ok.value IS NULL THEN 2 WHEN ok.num IS NOT NULL THEN %d ELSE %d END",
             o->desc ? 1 : 0, o->desc ? 0 : 1);
    snprintf(o->num, sizeof o->num, "ok.num");
    snprintf(o->text, sizeof o->text, "CASE WHEN ok.num IS NULL THEN ok.value END");
  } else if (k->kind == KP_FILTER_TAG) {
    snprintf(o->rank, sizeof o->rank, "CASE WHEN ok.value IS NULL THEN 1 ELSE 0 END");
    snprintf(o->num, sizeof o->num, "NULL::float8");
    snprintf(o->text, sizeof o->text, "ok.value");
  } else if (k->attr == KP_ATTR_ID) {  /* ids order by submission */
    snprintf(o->rank, sizeof o->rank, "0::int");  /* (a bare 0 in ORDER BY names a column) */
    snprintf(o->num, sizeof o->num, "r.seq::float8");
    snprintf(o->text, sizeof o->text, "NULL::text");
  } else {
    char col[96];
    q_attr(q, k->attr, col, sizeof col);
    snprintf(o->rank, sizeof o->rank, "CASE WHEN %s IS NULL THEN 1 ELSE 0 END", col);
    if (kp_filter_attr_numeric(k->attr)) {
      snprintf(o->num, sizeof o->num, "%s", col);
      snprintf(o->text, sizeof o->text, "NULL::text");
    } else {
      snprintf(o->num, sizeof o->num, "NULL::float8");
      snprintf(o->text, sizeof o->text, "%s", col);
    }
  }
}

static void q_order_join(pgq *q, const pgorder *o) {
  if (!o->has || o->key.kind == KP_FILTER_ATTR) return;
  q_add(q, o->key.kind == KP_FILTER_METRIC ? " LEFT JOIN metric_latest ok ON ok.run_id = r.id AND ok.name = "
           : o->key.kind == KP_FILTER_PARAM ? " LEFT JOIN params ok ON ok.run_id = r.id AND ok.key = "
                                            : " LEFT JOIN tags ok ON ok.run_id = r.id AND ok.key = ");
  q_text(q, o->key.name);
}

/* ---- page tokens: hex(payload) "." hex(HMAC-SHA256(key, payload 0 search)),
 * as store_sqlite.c signs them; the payload is this backend's:
 * "1 NOW SEQ RANK TYPE VALUE" (TYPE r: a number, t: text, n: none) */
typedef struct pgpos {
  double now;
  long long seq;
  int rank;
  char type;
  char *value;  /* as PostgreSQL wrote it (a number) or the text */
} pgpos;

static int pg_token_key(pg_store *s, char *key, size_t n) {
  PGresult *r = qry(s, "SELECT value FROM store_meta WHERE key = 'page_token_key'", NULL);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) snprintf(key, n, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  return found ? 0 : kp_store_fail(KP_STORE_EBACKEND, "store: no page token key (schema migration 6 missing)");
}

static int pg_token_mac(const char *key, const char *payload, size_t plen, const kp_run_search *q, char hex[65]) {
  const char *parts[] = {q->experiment ? q->experiment : "", q->filter ? q->filter : "", q->order_by ? q->order_by : ""};
  const int given[] = {q->experiment != NULL, q->filter != NULL, q->order_by != NULL};
  size_t n = plen + 3;
  for (int i = 0; i < 3; i++) n += strlen(parts[i]) + 1;
  char *m = malloc(n), *o = m;
  if (!m) return oom();
  memcpy(o, payload, plen);
  o += plen;
  for (int i = 0; i < 3; i++) {
    *o++ = '\0';
    *o++ = given[i] ? 'y' : 'n';
    size_t l = strlen(parts[i]);
    memcpy(o, parts[i], l);
    o += l;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  unsigned char *r = HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)m, (size_t)(o - m), mac, &mlen);
  free(m);
  if (!r || mlen != 32) return kp_store_fail(KP_STORE_EBACKEND, "store: cannot sign a page token");
  for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
  return 0;
}

static char *pg_token_make(pg_store *s, const kp_run_search *q, const pgpos *p) {
  char key[128], mac[65];
  if (pg_token_key(s, key, sizeof key) != 0) return NULL;
  sbuf b = {0};
  char head[128];
  snprintf(head, sizeof head, "1 %.17g %lld %d %c ", p->now, p->seq, p->rank, p->type);
  sb_str(&b, head);
  if (p->type != 'n') sb_str(&b, p->value ? p->value : "");
  if (b.bad) { free(b.p); return oom(), NULL; }
  if (pg_token_mac(key, b.p, b.n, q, mac) != 0) { free(b.p); return NULL; }
  char *t = malloc(2 * b.n + 1 + 64 + 1);
  if (!t) { free(b.p); return oom(), NULL; }
  for (size_t i = 0; i < b.n; i++) snprintf(t + 2 * i, 3, "%02x", (unsigned char)b.p[i]);
  t[2 * b.n] = '.';
  memcpy(t + 2 * b.n + 1, mac, 65);
  free(b.p);
  return t;
}

static int pg_bad_token(void) {
  return kp_store_fail(KP_STORE_EINVAL, "the page token is not one this search gave (altered, or from another "
                                        "filter, order or experiment)");
}

static int pg_hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

static int pg_token_read(pg_store *s, const kp_run_search *q, const char *tok, pgpos *p) {
  memset(p, 0, sizeof *p);
  const char *dot = strchr(tok, '.');
  size_t hl = dot ? (size_t)(dot - tok) : 0;
  if (!dot || hl % 2 || hl == 0 || hl > 65536 || strlen(dot + 1) != 64) return pg_bad_token();
  char *payload = malloc(hl / 2 + 1);
  if (!payload) return oom();
  for (size_t i = 0; i < hl / 2; i++) {
    int a = pg_hexval(tok[2 * i]), b = pg_hexval(tok[2 * i + 1]);
    if (a < 0 || b < 0) { free(payload); return pg_bad_token(); }
    payload[i] = (char)(a * 16 + b);
  }
  payload[hl / 2] = '\0';
  char key[128], mac[65];
  if (pg_token_key(s, key, sizeof key) != 0 || pg_token_mac(key, payload, hl / 2, q, mac) != 0) { free(payload); return -1; }
  if (CRYPTO_memcmp(mac, dot + 1, 64) != 0) { free(payload); return pg_bad_token(); }
  int n = 0;
  if (sscanf(payload, "1 %lf %lld %d %c %n", &p->now, &p->seq, &p->rank, &p->type, &n) != 4 || n == 0 ||
      (p->type != 'r' && p->type != 't' && p->type != 'n') || strlen(payload) != hl / 2) {
    free(payload);
    return pg_bad_token();
  }
  if (p->type != 'n' && !(p->value = strdup(payload + n))) { free(payload); return oom(); }
  free(payload);
  return 0;
}

static int pg_run_search(kp_store *base, const kp_run_search *q, kp_run **out, size_t *n, char **next) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  *next = NULL;
  kp_filter *f = NULL;
  kp_filter_error fe;
  if (kp_filter_parse(q->filter, &f, &fe) != 0) return kp_store_fail(KP_STORE_EINVAL, "filter: %s", fe.message);
  pgorder o = {0};
  if (q->order_by && *q->order_by) {
    if (kp_filter_parse_order(q->order_by, &o.key, &o.desc, &fe) != 0) {
      kp_filter_free(f);
      return kp_store_fail(KP_STORE_EINVAL, "order: %s", fe.message);
    }
    o.has = 1;
  }
  pgpos pp = {.now = now(), .type = 'n'}, last = {.type = 'n'};
  int have_pos = 0, rc = -1, own = 0, sp = 0;
  pgq sq = {0};
  long long *seqs = NULL;
  size_t nseq = 0;
  PGresult *r = NULL;
  if (q->page_token && *q->page_token) {
    if (pg_token_read(s, q, q->page_token, &pp) != 0) goto out;
    have_pos = 1;
  }
  sq.now_value = pp.now;
  last.now = pp.now;
  q_order_setup(&sq, &o);
  q_add(&sq, "SELECT r.seq");
  if (o.has) {
    q_add(&sq, ", ");
    q_add(&sq, o.rank);
    q_add(&sq, ", ");
    q_add(&sq, o.num);
    q_add(&sq, ", ");
    q_add(&sq, o.text);
  }
  q_add(&sq, " FROM runs r JOIN experiments e ON e.id = r.experiment_id");
  q_order_join(&sq, &o);
  q_add(&sq, " WHERE true");
  if (q->experiment) {
    q_add(&sq, " AND e.name = ");
    q_text(&sq, q->experiment);
  }
  if (f) {
    q_add(&sq, " AND ");
    q_filter(&sq, f);
  }
  if (have_pos && (!o.has || pp.type == 'n')) {
    if (o.has) {
      q_add(&sq, " AND (");
      q_add(&sq, o.rank);
      q_add(&sq, ") = ");
      q_int(&sq, pp.rank);
    }
    q_add(&sq, " AND r.seq < ");
    q_int(&sq, pp.seq);
  } else if (have_pos) {
    /* after (rank, key, seq) in (rank ASC, key ASC|DESC, seq DESC) */
    const char *key = pp.type == 'r' ? o.num : o.text;
    const char *coll = pp.type == 't' ? " COLLATE \"C\"" : "";
    int kref = q_param(&sq, pp.value, 0), rref = 0;
    char *rk = malloc(16);
    if (rk) snprintf(rk, 16, "%d", pp.rank);
    rref = q_param(&sq, rk, 1);
    q_add(&sq, " AND ((");
    q_add(&sq, o.rank);
    q_add(&sq, ") > ");
    q_ref(&sq, rref, "int");
    q_add(&sq, " OR ((");
    q_add(&sq, o.rank);
    q_add(&sq, ") = ");
    q_ref(&sq, rref, "int");
    q_add(&sq, " AND ((");
    q_add(&sq, key);
    q_add(&sq, ")");
    q_add(&sq, coll);
    q_add(&sq, o.desc ? " < " : " > ");
    q_ref(&sq, kref, pp.type == 'r' ? "float8" : "text");
    q_add(&sq, " OR ((");
    q_add(&sq, key);
    q_add(&sq, ")");
    q_add(&sq, coll);
    q_add(&sq, " = ");
    q_ref(&sq, kref, pp.type == 'r' ? "float8" : "text");
    q_add(&sq, " AND r.seq < ");
    q_int(&sq, pp.seq);
    q_add(&sq, "))))");
  }
  q_add(&sq, " ORDER BY ");
  if (o.has) {
    q_add(&sq, o.rank);
    q_add(&sq, ", ");
    q_add(&sq, o.num);
    q_add(&sq, o.desc ? " DESC, (" : " ASC, (");
    q_add(&sq, o.text);
    q_add(&sq, o.desc ? ") COLLATE \"C\" DESC, " : ") COLLATE \"C\" ASC, ");
  }
  q_add(&sq, "r.seq DESC");
  if (q->max_results > 0 && q->max_results < INT64_MAX) {
    q_add(&sq, " LIMIT ");
    q_int(&sq, q->max_results + 1);
  }
  if (sq.bad || sq.sql.bad) { oom(); goto out; }
  /* one read snapshot: the page and its rows agree (inside the caller's
   * transaction, a savepoint so that a failure leaves it usable) */
  if (s->tx) {
    if (tx_begin(s, &own) != 0) goto out;
    sp = 1;
  } else {
    if (cmd(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL, NULL) != 0) goto out;
    s->own_tx = own = 1;
  }
  r = PQexecParams(s->conn, sq.sql.p, sq.n, NULL, sq.v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fail_from(s, r);
    goto out;
  }
  int rows = PQntuples(r);
  if (rows && !(seqs = malloc((size_t)rows * sizeof *seqs))) { oom(); goto out; }
  for (int i = 0; i < rows; i++) {
    if (q->max_results > 0 && (int64_t)nseq == q->max_results) {
      /* there is a next page: it starts after the last row taken */
      if (!(*next = pg_token_make(s, q, &last))) goto out;
      break;
    }
    seqs[nseq++] = gi64(r, i, 0);
    last.seq = seqs[nseq - 1];
    if (o.has) {
      last.rank = gint(r, i, 1);
      last.type = !PQgetisnull(r, i, 2) ? 'r' : !PQgetisnull(r, i, 3) ? 't' : 'n';
      last.value = last.type == 'r' ? PQgetvalue(r, i, 2) : last.type == 't' ? PQgetvalue(r, i, 3) : NULL;
    }
  }
  PQclear(r);
  r = NULL;
  if (nseq) {
    sbuf arr = {0};
    sb_str(&arr, "{");
    for (size_t i = 0; i < nseq; i++) {
      char b[32];
      snprintf(b, sizeof b, "%s%lld", i ? "," : "", seqs[i]);
      sb_str(&arr, b);
    }
    sb_str(&arr, "}");
    if (arr.bad) { free(arr.p); oom(); goto out; }
    pa a = {0};
    p_txt(&a, arr.p);
    PGresult *rr = qry(s, RUN_COLS " WHERE r.seq = ANY($1::bigint[]) ORDER BY array_position($1::bigint[], r.seq)", &a);
    free(arr.p);
    if (!rr) goto out;
    if (runs_from(rr, out, n) != 0) goto out;
  }
  rc = 0;
out:
  PQclear(r);
  if (own && !sp) {
    s->own_tx = 0;
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
      kp_store_error e = *kp_store_last_error();
      int unr = kp_store_unreachable();
      PQclear(PQexec(s->conn, rc == 0 ? "COMMIT" : "ROLLBACK"));
      if (rc != 0) restore_error(&e, unr);
    }
  } else if (sp) {
    rc = tx_end(s, 0, rc);
  }
  if (rc != 0) {
    kp_runs_free(*out, *n);
    *out = NULL;
    *n = 0;
    free(*next);
    *next = NULL;
  }
  pgq_free(&sq);
  free(seqs);
  free(pp.value);
  kp_filter_free(f);
  kp_filter_key_clear(&o.key);
  return rc;
}

/* ---- services ----------------------------------------------------------------------------- */
#define SERVICE_COLS                                                                                              \
  "SELECT name, state, model_name, model_version, entry_name, entry_sha256, host, port, coalesce(bound_port, 0),"  \
  " auth, workers, timeout, max_body, primary_key_sha256, secondary_key_sha256, error, coalesce(pid, 0),"         \
  " coalesce(pid_start, 0), created, started, stopped FROM services"

static void service_from_row(PGresult *r, int i, kp_service *o) {
  memset(o, 0, sizeof *o);
  o->name = gdup(r, i, 0);
  o->state = KP_SERVICE_FAILED;
  kp_service_state_parse(PQgetvalue(r, i, 1), &o->state);
  o->model_name = gdup(r, i, 2);
  o->model_version = gi64(r, i, 3);
  o->entry_name = gdupn(r, i, 4);
  o->entry_sha256 = gdupn(r, i, 5);
  o->host = gdup(r, i, 6);
  o->port = gint(r, i, 7);
  o->bound_port = gint(r, i, 8);
  o->auth = gint(r, i, 9);
  o->workers = gint(r, i, 10);
  o->timeout = gint(r, i, 11);
  o->max_body = gi64(r, i, 12);
  o->primary_key_sha256 = gdup(r, i, 13);
  o->secondary_key_sha256 = gdup(r, i, 14);
  o->error = gdupn(r, i, 15);
  o->pid = gi64(r, i, 16);
  o->pid_start = (uint64_t)gi64(r, i, 17);
  o->created = gtime(r, i, 18);
  o->started = gtime(r, i, 19);
  o->stopped = gtime(r, i, 20);
}

static int no_service(const char *name) {
  return kp_store_fail(KP_STORE_ENOTFOUND, "no service named '%s' in this workspace", name);
}

/* 1 when service 'name' exists, 0 when not (ENOTFOUND set), -1 on error */
static int service_exists(pg_store *s, const char *name) {
  int r = exists_q(s, "SELECT 1 FROM services WHERE name=$1", name);
  if (r == 0) no_service(name);
  return r;
}

/* Runs an UPDATE of one service (its name is $1 of 'a'): 0, ENOTFOUND when
 * there is no such service, or 1 when it exists but the statement's
 * condition left it alone. */
static int service_update(pg_store *s, const char *sql, const pa *a, const char *name) {
  long long changed = 0;
  if (cmd(s, sql, a, &changed) != 0) return -1;
  if (changed > 0) return 0;
  int r = service_exists(s, name);
  return r < 0 ? -1 : r == 0 ? -1 : 1;
}

static int is_sha256_hex(const char *h) {
  if (!h || strlen(h) != 64) return 0;
  for (const char *p = h; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

static int service_new_check(const kp_service_new *n, int create) {
  if (!n->name || !*n->name) return kp_store_fail(KP_STORE_EINVAL, "a service needs a name");
  if (!n->model_name || !*n->model_name || n->model_version < 1)
    return kp_store_fail(KP_STORE_EINVAL, "service %s needs a model name and version", n->name);
  if (!n->host || !*n->host) return kp_store_fail(KP_STORE_EINVAL, "service %s needs a host", n->name);
  if (n->port < 0 || n->port > 65535) return kp_store_fail(KP_STORE_EINVAL, "service %s: port %d is not 0 to 65535", n->name, n->port);
  if (!n->entry_name != !n->entry_sha256)
    return kp_store_fail(KP_STORE_EINVAL, "service %s: an entry needs its name and its blob", n->name);
  if (create && (!is_sha256_hex(n->primary_key_sha256) || !is_sha256_hex(n->secondary_key_sha256)))
    return kp_store_fail(KP_STORE_EINVAL, "service %s needs the sha256 of its two keys (64 hex digits each)", n->name);
  return 0;
}

/* $1 name, $2 model id, $3 model name, $4 version, $5 entry name, $6 entry
 * blob, $7 host, $8 port, $9 auth, $10 workers, $11 max body, $12 timeout */
static void service_params(pa *a, const kp_service_new *n, long long mid) {
  p_txt(a, n->name);
  p_i64(a, mid);
  p_txt(a, n->model_name);
  p_i64(a, n->model_version);
  p_txt(a, n->entry_name);
  p_txt(a, n->entry_sha256);
  p_txt(a, n->host);
  p_i64(a, n->port);
  p_i64(a, n->auth);
  p_i64(a, n->workers);
  p_i64(a, n->max_body);
  p_i64(a, n->timeout);
}

static int pg_service_create(kp_store *base, const kp_service_new *n) {
  pg_store *s = PG(base);
  if (service_new_check(n, 1) != 0) return -1;
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  long long mid;
  if (model_id(s, n->model_name, n->model_version, &mid, NULL) != 0) goto out;
  pa a = {0};
  service_params(&a, n, mid);
  /* the key digests and the state go in through a second statement's
   * parameters (PMAX): the row is inserted first, then completed */
  if (cmd(s,
          "INSERT INTO services(name, model_id, model_name, model_version, entry_name, entry_sha256, host, port,"
          " auth, workers, max_body, timeout, primary_key_sha256, secondary_key_sha256, state, created)"
          " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,'','','Stopped',0)",
          &a, NULL) != 0) {
    if (kp_store_last_error()->code == KP_STORE_EEXISTS) kp_store_fail(KP_STORE_EEXISTS, "service '%s' already exists", n->name);
    goto out;
  }
  pa b = {0};
  p_txt(&b, n->name);
  p_txt(&b, n->primary_key_sha256);
  p_txt(&b, n->secondary_key_sha256);
  p_txt(&b, kp_service_state_name(KP_SERVICE_STOPPED));
  p_f64(&b, now());
  if (cmd(s, "UPDATE services SET primary_key_sha256=$2, secondary_key_sha256=$3, state=$4, created=$5 WHERE name=$1", &b,
          NULL) != 0)
    goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_service_redeploy(kp_store *base, const kp_service_new *n) {
  pg_store *s = PG(base);
  if (service_new_check(n, 0) != 0) return -1;
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  long long mid;
  if (model_id(s, n->model_name, n->model_version, &mid, NULL) != 0) goto out;
  pa a = {0};
  service_params(&a, n, mid);
  rc = service_update(s,
                      "UPDATE services SET model_id=$2, model_name=$3, model_version=$4, entry_name=$5, entry_sha256=$6,"
                      " host=$7, port=$8, auth=$9, workers=$10, max_body=$11, timeout=$12,"
                      " bound_port=CASE WHEN $8::int=0 THEN bound_port ELSE NULL END WHERE name=$1",
                      &a, n->name);
out:
  return tx_end(s, own, rc);
}

static int pg_service_get(kp_store *base, const char *name, kp_service *out) {
  pg_store *s = PG(base);
  memset(out, 0, sizeof *out);
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s, SERVICE_COLS " WHERE name=$1", &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) service_from_row(r, 0, out);
  PQclear(r);
  return found ? 0 : no_service(name);
}

static int pg_service_list(kp_store *base, kp_service **out, size_t *n) {
  *out = NULL;
  *n = 0;
  PGresult *r = qry(PG(base), SERVICE_COLS " ORDER BY name COLLATE \"C\"", NULL);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) service_from_row(r, i, &(*out)[(*n)++]);
  PQclear(r);
  return 0;
}

static int pg_service_model(kp_store *base, const char *name, kp_model *out, int *found) {
  pg_store *s = PG(base);
  memset(out, 0, sizeof *out);
  *found = 0;
  pa a = {0};
  p_txt(&a, name);
  PGresult *r = qry(s, MODEL_COLS " WHERE id=(SELECT model_id FROM services WHERE name=$1)", &a);
  if (!r) return -1;
  int rc = 0, rows = PQntuples(r);
  if (rows > 0) {
    rc = model_from_row(s, r, 0, out);
    *found = rc == 0;
  }
  PQclear(r);
  if (rc != 0) {
    kp_model_free(out);
    memset(out, 0, sizeof *out);
    return -1;
  }
  if (rows == 0 && service_exists(s, name) <= 0) return -1;
  return 0;
}

static int pg_service_set_keys(kp_store *base, const char *name, const char *primary_sha256, const char *secondary_sha256) {
  if (!is_sha256_hex(primary_sha256) || !is_sha256_hex(secondary_sha256))
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a key's sha256 is 64 lowercase hex digits", name);
  pa a = {0};
  p_txt(&a, name);
  p_txt(&a, primary_sha256);
  p_txt(&a, secondary_sha256);
  return service_update(PG(base), "UPDATE services SET primary_key_sha256=$2, secondary_key_sha256=$3 WHERE name=$1", &a,
                        name) == 0 ? 0 : -1;
}

static int pg_service_starting(kp_store *base, const char *name) {
  pa a = {0};
  p_txt(&a, name);
  return service_update(PG(base),
                        "UPDATE services SET state='Starting', pid=NULL, pid_start=NULL, error=NULL, stopped=NULL"
                        " WHERE name=$1",
                        &a, name) == 0 ? 0 : -1;
}

static int pg_service_start_failed(kp_store *base, const char *name, const char *error) {
  pa a = {0};
  p_txt(&a, name);
  p_txt(&a, error);
  p_f64(&a, now());
  return service_update(PG(base),
                        "UPDATE services SET state='Failed', error=coalesce(error, $2), stopped=$3"
                        " WHERE name=$1 AND state='Starting'",
                        &a, name) < 0 ? -1 : 0;
}

static int pg_service_running(kp_store *base, const char *name, int64_t pid, uint64_t pid_start, int port) {
  if (pid <= 0 || port <= 0 || port > 65535)
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a running server needs its process and port", name);
  pa a = {0};
  p_txt(&a, name);
  p_i64(&a, pid);
  p_i64(&a, (long long)pid_start);
  p_i64(&a, port);
  p_f64(&a, now());
  return service_update(PG(base),
                        "UPDATE services SET state='Running', pid=$2, pid_start=$3, bound_port=$4, started=$5, error=NULL"
                        " WHERE name=$1",
                        &a, name) == 0 ? 0 : -1;
}

static int pg_service_stopped(kp_store *base, const char *name) {
  pa a = {0};
  p_txt(&a, name);
  p_f64(&a, now());
  return service_update(PG(base),
                        "UPDATE services SET state='Stopped', pid=NULL, pid_start=NULL, stopped=coalesce(stopped, $2)"
                        " WHERE name=$1",
                        &a, name) == 0 ? 0 : -1;
}

static int pg_service_exited(kp_store *base, const char *name, int64_t pid, kp_service_state to, const char *error) {
  if (to != KP_SERVICE_STOPPED && to != KP_SERVICE_FAILED)
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a server ends Stopped or Failed, not %s", name, kp_service_state_name(to));
  pa a = {0};
  p_txt(&a, name);
  p_txt(&a, kp_service_state_name(to));
  p_txt(&a, error);
  p_f64(&a, now());
  p_i64(&a, pid);
  int r = service_update(PG(base), "UPDATE services SET state=$2, error=$3, stopped=$4 WHERE name=$1 AND (pid IS NULL OR pid=$5)",
                         &a, name);
  if (r == 1)
    return kp_store_fail(KP_STORE_ECONFLICT, "service %s is recorded with another server process than %lld", name,
                         (long long)pid);
  return r;
}

static int pg_service_delete(kp_store *base, const char *name) {
  pa a = {0};
  p_txt(&a, name);
  return service_update(PG(base), "DELETE FROM services WHERE name=$1", &a, name) == 0 ? 0 : -1;
}

/* ---- sweeps ------------------------------------------------------------------------------- */
/* 1 when sweep 'id' exists, 0 when not (ENOTFOUND set), -1 on error */
static int sweep_exists(pg_store *s, const char *id) {
  int r = exists_q(s, "SELECT 1 FROM sweeps WHERE run_id=$1", id);
  if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
  return r;
}

/* The error for an update of trial 'idx' that matched no row. */
static int trial_missing(pg_store *s, const char *id, int64_t idx) {
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ENOTFOUND, "sweep %s has no trial %lld", id, (long long)idx);
}

static int pg_sweep_create(kp_store *base, const kp_sweep_new *w, char *id, size_t idn) {
  pg_store *s = PG(base);
  if (!w->experiment || !*w->experiment || !w->compute || !*w->compute || !w->spec || !*w->spec || !w->source ||
      !w->entry || !w->snapshot)
    return kp_store_fail(KP_STORE_EINVAL, "a sweep needs an experiment, a compute target, a source, an entry, a snapshot"
                                          " and its sweep file");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  int e = exists_q(s, "SELECT 1 FROM computes WHERE name=$1", w->compute);
  if (e <= 0) {
    if (e == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", w->compute);
    goto out;
  }
  pa a = {0};
  p_txt(&a, w->experiment);
  p_f64(&a, now());
  if (cmd(s, "INSERT INTO experiments(name, created) VALUES($1, $2) ON CONFLICT (name) DO NOTHING", &a, NULL) != 0) goto out;
  pa b = {0};
  p_txt(&b, w->experiment);
  p_txt(&b, w->compute);
  p_txt(&b, w->source);
  p_txt(&b, w->entry);
  p_txt(&b, w->args_json ? w->args_json : "[]");
  p_txt(&b, w->snapshot);
  p_i64(&b, (long long)w->snapshot_bytes);
  p_txt(&b, w->env_json);
  p_f64(&b, now());
  p_txt(&b, kp_run_status_name(KP_RUN_RUNNING));
  PGresult *r = qry(s,
                    "INSERT INTO runs(experiment_id, status, compute, source, entry, args, snapshot, snapshot_bytes,"
                    " env_json, created, started) VALUES((SELECT id FROM experiments WHERE name=$1),"
                    " $10, 'sweep:'||$2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING seq",
                    &b);
  if (!r) goto out;
  long long seq = gi64(r, 0, 0);
  PQclear(r);
  snprintf(id, idn, "%s_%lld", w->experiment, seq);
  pa c = {0};
  p_txt(&c, id);
  p_i64(&c, seq);
  if (cmd(s, "UPDATE runs SET id=$1 WHERE seq=$2", &c, NULL) != 0) goto out;
  pa d = {0};
  p_txt(&d, id);
  p_txt(&d, w->spec);
  p_txt(&d, w->env_json);
  p_f64(&d, now());
  if (cmd(s, "INSERT INTO sweeps(run_id, spec, env_json, created) VALUES($1,$2,$3,$4)", &d, NULL) != 0) goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* a sweep: its parent run's columns (RUN_COLS), then those of the sweep */
#define SWEEP_COLS                                                                                  \
  "SELECT x.*, w.spec, w.env_json, w.stop_reason,"                                                  \
  " (SELECT count(*) FROM sweep_trials t WHERE t.sweep_id=w.run_id),"                               \
  " (SELECT value FROM tags g WHERE g.run_id=w.run_id AND g.key='best_child_run_id')"               \
  " FROM sweeps w JOIN (" RUN_COLS ") x ON x.id=w.run_id"
#define SWEEP_COL0 29  /* the first column after the run's */

static void sweep_from_row(PGresult *r, int i, kp_sweep *w) {
  memset(w, 0, sizeof *w);
  run_from_row(r, i, &w->run);
  const char *c = w->run.compute ? w->run.compute : "";
  w->compute = strdup(strncmp(c, "sweep:", 6) ? c : c + 6);
  w->spec = gdup(r, i, SWEEP_COL0);
  w->env_json = gdupn(r, i, SWEEP_COL0 + 1);
  w->stop_reason = gdupn(r, i, SWEEP_COL0 + 2);
  w->trials = gi64(r, i, SWEEP_COL0 + 3);
  w->best_child = gdupn(r, i, SWEEP_COL0 + 4);
}

static int pg_sweep_get(kp_store *base, const char *id, kp_sweep *out) {
  memset(out, 0, sizeof *out);
  pa a = {0};
  p_txt(&a, id);
  PGresult *r = qry(PG(base), SWEEP_COLS " WHERE w.run_id=$1", &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0;
  if (found) sweep_from_row(r, 0, out);
  PQclear(r);
  return found ? 0 : kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
}

static int pg_sweep_list(kp_store *base, kp_sweep **out, size_t *n) {
  *out = NULL;
  *n = 0;
  PGresult *r = qry(PG(base), SWEEP_COLS " ORDER BY (SELECT seq FROM runs q WHERE q.id=w.run_id)", NULL);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) sweep_from_row(r, i, &(*out)[(*n)++]);
  PQclear(r);
  return 0;
}

static int pg_sweep_attach_controller(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  pg_store *s = PG(base);
  int r = set_pids(s,
                   "UPDATE runs SET supervisor_pid=$1, supervisor_start=$2 WHERE id=$3 AND status='Running'"
                   " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=$3)",
                   id, pid, start);
  if (r <= 0) return r;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "sweep %s is not running", id);
}

static int pg_sweep_reopen(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  pg_store *s = PG(base);
  int r = set_pids(s,
                   "UPDATE runs SET status='Running', ended=NULL, error=NULL, supervisor_pid=$1, supervisor_start=$2"
                   " WHERE id=$3 AND status='Failed'"
                   " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=$3 AND coalesce(stop_reason, '')='')",
                   id, pid, start);
  if (r <= 0) return r;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "sweep %s is not one whose controller died (Failed without a stop reason)", id);
}

static int pg_sweep_end(kp_store *base, const char *id, const kp_sweep_end *e) {
  pg_store *s = PG(base);
  if ((unsigned)e->status >= KP_RUN_NSTATUS || !kp_run_status_ended(e->status))
    return kp_store_fail(KP_STORE_EINVAL, "a sweep ends Completed, Failed or Canceled, not %s", kp_run_status_name(e->status));
  if (!e->reason || !*e->reason) return kp_store_fail(KP_STORE_EINVAL, "a sweep's end needs its stop reason");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  pa a = {0};
  p_txt(&a, kp_run_status_name(e->status));
  p_f64(&a, now());
  p_txt(&a, e->reason);
  p_txt(&a, id);
  long long changed = 0;
  if (cmd(s,
          "UPDATE runs SET status=$1::text, ended=$2, error=CASE WHEN $1::text='Canceled' THEN coalesce(cancel_reason, $3)"
          " WHEN $1::text='Failed' THEN $3 END"
          " WHERE id=$4 AND status NOT IN " SQL_ENDED " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=$4)",
          &a, &changed) != 0)
    goto out;
  if (changed == 0) {
    if (sweep_exists(s, id) > 0) kp_store_fail(KP_STORE_ECONFLICT, "sweep %s has ended already; nothing was changed", id);
    goto out;
  }
  if (e->best_child) {
    char v[64];
    snprintf(v, sizeof v, "%.17g", e->best_value);
    if (set_tag(s, id, "best_child_run_id", e->best_child) != 0 || set_tag(s, id, "best_metric_value", v) != 0) goto out;
  }
  pa b = {0};
  p_txt(&b, e->reason);
  p_txt(&b, id);
  if (cmd(s, "UPDATE sweeps SET stop_reason=$1 WHERE run_id=$2", &b, NULL) != 0) goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

#define SWEEP_BEST_METRIC "best_child_by_primary_metric"

static int pg_sweep_log_best(kp_store *base, const char *id, int64_t step, double value) {
  pg_store *s = PG(base);
  if (step < 0) return kp_store_fail(KP_STORE_EINVAL, "a step is 0 or more, not %lld", (long long)step);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (sweep_exists(s, id) <= 0) goto out;
  pa a = {0};
  p_txt(&a, id);
  p_i64(&a, step);
  PGresult *r = qry(s, "SELECT 1 FROM metrics WHERE run_id=$1 AND name='" SWEEP_BEST_METRIC "' AND step=$2", &a);
  if (!r) goto out;
  int there = PQntuples(r) > 0;
  PQclear(r);
  if (there) {
    kp_store_fail(KP_STORE_ECONFLICT, "sweep %s has step %lld of " SWEEP_BEST_METRIC " already", id, (long long)step);
    goto out;
  }
  p_f64(&a, now());
  p_f64(&a, value);
  /* the metric's row and its metric_latest (what SQLite's trigger
   * metric_latest_of_sweep_best does) in one statement */
  if (cmd(s,
          "WITH m AS (INSERT INTO metrics(run_id, name, step, ts, value) VALUES($1, '" SWEEP_BEST_METRIC "', $2, $3, $4)"
          " RETURNING id, run_id, name, step, value)"
          " INSERT INTO metric_latest(run_id, name, step, mid, value)"
          " SELECT run_id, name, step, id, nullif(value, 'NaN'::float8) FROM m"
          " ON CONFLICT (run_id, name) DO UPDATE SET step = EXCLUDED.step, mid = EXCLUDED.mid, value = EXCLUDED.value"
          " WHERE EXCLUDED.step > metric_latest.step OR (EXCLUDED.step = metric_latest.step AND EXCLUDED.mid > metric_latest.mid)",
          &a, NULL) != 0)
    goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int pg_sweep_trial_add(kp_store *base, const char *id, int64_t idx, const char *params) {
  pg_store *s = PG(base);
  if (idx < 0) return kp_store_fail(KP_STORE_EINVAL, "a trial's index is 0 or more, not %lld", (long long)idx);
  if (!params || !*params) return kp_store_fail(KP_STORE_EINVAL, "a trial needs its parameter values");
  pa a = {0};
  p_txt(&a, id);
  p_i64(&a, idx);
  p_txt(&a, params);
  p_f64(&a, now());
  long long changed = 0;
  if (cmd(s,
          "INSERT INTO sweep_trials(sweep_id, idx, params, created) SELECT $1, $2, $3, $4"
          " WHERE EXISTS(SELECT 1 FROM sweeps WHERE run_id=$1) ON CONFLICT (sweep_id, idx) DO NOTHING",
          &a, &changed) != 0)
    return -1;
  if (changed > 0) return 0;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_EEXISTS, "sweep %s has a trial %lld already", id, (long long)idx);
}

static int pg_sweep_trial_list(kp_store *base, const char *id, const char *metric, kp_sweep_trial **out, size_t *n) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  pa a = {0};
  p_txt(&a, id);
  PGresult *r = qry(s,
                    "SELECT t.idx, t.params, t.run_id, r.id IS NOT NULL, r.status, r.error, t.error, t.decision, t.evaluated,"
                    " t.created FROM sweep_trials t LEFT JOIN runs r ON r.id=t.run_id WHERE t.sweep_id=$1 ORDER BY t.idx",
                    &a);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_sweep_trial *t = &(*out)[(*n)++];
    t->idx = gi64(r, i, 0);
    t->params = gdup(r, i, 1);
    t->run_id = gdupn(r, i, 2);
    t->has_run = PQgetvalue(r, i, 3)[0] == 't';
    t->run_status = t->has_run ? gstatus(r, i, 4) : KP_RUN_QUEUED;
    t->run_error = gdupn(r, i, 5);
    t->error = gdupn(r, i, 6);
    t->decision = gdupn(r, i, 7);
    t->evaluated = gint(r, i, 8);
    t->created = gtime(r, i, 9);
  }
  PQclear(r);
  if (rows == 0) return sweep_exists(s, id) > 0 ? 0 : -1;  /* (trials exist only with their sweep) */
  if (!metric) return 0;
  /* every child's values in one query (trials come ordered by idx) */
  pa b = {0};
  p_txt(&b, id);
  p_txt(&b, metric);
  r = qry(s,
          "SELECT t.idx, m.value FROM sweep_trials t JOIN metrics m ON m.run_id=t.run_id AND m.name=$2"
          " WHERE t.sweep_id=$1 ORDER BY t.idx, m.step, m.id",
          &b);
  if (!r) goto fail;
  size_t pos = 0, vcap = 0;
  for (int i = 0; i < PQntuples(r); i++) {
    int64_t idx = gi64(r, i, 0);
    while (pos < *n && (*out)[pos].idx < idx) pos++, vcap = 0;
    if (pos >= *n || (*out)[pos].idx != idx) continue;
    kp_sweep_trial *t = &(*out)[pos];
    if (GROW(t->values, t->nvalues, vcap, 16) != 0) { PQclear(r); oom(); goto fail; }
    t->values[t->nvalues++] = gval(r, i, 1);
  }
  PQclear(r);
  return 0;
fail:
  kp_sweep_trials_free(*out, *n);
  *out = NULL;
  *n = 0;
  return -1;
}

static int pg_sweep_trial_attach_run(kp_store *base, const char *id, int64_t idx, const char *run_id) {
  pg_store *s = PG(base);
  if (!run_id || !*run_id) return kp_store_fail(KP_STORE_EINVAL, "say which run to link to the trial");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  pa a = {0};
  p_txt(&a, id);
  p_i64(&a, idx);
  PGresult *r = qry(s, "SELECT run_id FROM sweep_trials WHERE sweep_id=$1 AND idx=$2", &a);
  if (!r) goto out;
  if (PQntuples(r) == 0) {
    PQclear(r);
    trial_missing(s, id, idx);
    goto out;
  }
  if (!PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 0), run_id) != 0) {
    kp_store_fail(KP_STORE_ECONFLICT, "trial %lld of sweep %s has run %s already", (long long)idx, id, PQgetvalue(r, 0, 0));
    PQclear(r);
    goto out;
  }
  PQclear(r);
  pa b = {0};
  p_txt(&b, run_id);
  if (!(r = qry(s, "SELECT coalesce(parent_id, '') FROM runs WHERE id=$1", &b))) goto out;
  if (PQntuples(r) == 0) {
    PQclear(r);
    kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", run_id);
    goto out;
  }
  int child = !strcmp(PQgetvalue(r, 0, 0), id);
  PQclear(r);
  if (!child) {
    kp_store_fail(KP_STORE_EINVAL, "run %s is not a child run of sweep %s", run_id, id);
    goto out;
  }
  p_txt(&a, run_id);
  if (cmd(s, "UPDATE sweep_trials SET run_id=$3 WHERE sweep_id=$1 AND idx=$2", &a, NULL) != 0) goto out;
  /* run search: the trial's values become the run's params (SQLite's
   * trigger params_of_sweep_trial) */
  if (cmd(s,
          "INSERT INTO params(run_id, key, value, num)"
          " SELECT $3, j.key, kp_json_text(j.value), kp_num(kp_json_text(j.value))"
          " FROM sweep_trials t, jsonb_each(CASE WHEN jsonb_typeof(kp_jsonb(t.params)) = 'object' THEN kp_jsonb(t.params) END) j"
          " WHERE t.sweep_id=$1 AND t.idx=$2 AND jsonb_typeof(j.value) NOT IN ('object', 'array', 'null')"
          " ON CONFLICT (run_id, key) DO UPDATE SET value=EXCLUDED.value, num=EXCLUDED.num",
          &a, NULL) != 0)
    goto out;
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* Runs 'sql' ($1 sweep id, $2 trial index, $3 'text', $4 'num') on one
 * trial; ENOTFOUND when it matched none. */
static int trial_update(pg_store *s, const char *sql, const char *id, int64_t idx, const char *text, int num) {
  pa a = {0};
  p_txt(&a, id);
  p_i64(&a, idx);
  p_txt(&a, text);
  p_i64(&a, num);
  long long changed = 0;
  if (cmd(s, sql, &a, &changed) != 0) return -1;
  return changed > 0 ? 0 : trial_missing(s, id, idx);
}

static int pg_sweep_trial_set_error(kp_store *base, const char *id, int64_t idx, const char *error) {
  if (!error || !*error) return kp_store_fail(KP_STORE_EINVAL, "say why the trial's run could not be submitted");
  return trial_update(PG(base), "UPDATE sweep_trials SET error=$3 WHERE sweep_id=$1 AND idx=$2 AND $4::int IS NOT NULL", id,
                      idx, error, 0);
}

static int pg_sweep_trial_evaluated(kp_store *base, const char *id, int64_t idx, int evaluated, const char *decision) {
  if (evaluated < 0) return kp_store_fail(KP_STORE_EINVAL, "a number of intervals is 0 or more, not %d", evaluated);
  return trial_update(PG(base),
                      "UPDATE sweep_trials SET evaluated=$4, decision=coalesce($3, decision) WHERE sweep_id=$1 AND idx=$2", id,
                      idx, decision, evaluated);
}

static int pg_sweep_cancel_requested(kp_store *base, const char *id, int *requested, char **reason) {
  *requested = 0;
  *reason = NULL;
  pa a = {0};
  p_txt(&a, id);
  PGresult *r = qry(PG(base), "SELECT r.cancel_requested, r.cancel_reason FROM sweeps w JOIN runs r ON r.id=w.run_id WHERE w.run_id=$1",
                    &a);
  if (!r) return -1;
  int found = PQntuples(r) > 0, rc = 0;
  if (found && (*requested = gint(r, 0, 0) != 0) && !PQgetisnull(r, 0, 1) && !(*reason = gdup(r, 0, 1))) rc = oom();
  PQclear(r);
  if (!found) return kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
  return rc;
}

static int pg_sweep_child_by_index(kp_store *base, const char *id, int64_t idx, char **run_id) {
  pg_store *s = PG(base);
  *run_id = NULL;
  if (sweep_exists(s, id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, id);
  p_i64(&a, idx);
  PGresult *r = qry(s,
                    "SELECT r.id FROM runs r JOIN tags g ON g.run_id=r.id AND g.key='sweep_index'"
                    " WHERE r.parent_id=$1 AND g.value=$2 ORDER BY r.seq LIMIT 1",
                    &a);
  if (!r) return -1;
  int rc = 0;
  if (PQntuples(r) > 0 && !(*run_id = gdup(r, 0, 0))) rc = oom();
  PQclear(r);
  return rc;
}

/* ---- tokens (the tracking server) ------------------------------------------------------ */
static int pg_token_create(kp_store *base, const char *name, const char *sha256_hex, int read_only) {
  pg_store *s = PG(base);
  /* which name is taken is asked first (the caller's transaction keeps it so) */
  int e = exists_q(s, "SELECT 1 FROM tokens WHERE name=$1", name);
  if (e != 0) return e < 0 ? -1 : kp_store_fail(KP_STORE_EEXISTS, "a token named '%s' exists already", name);
  pa a = {0};
  p_txt(&a, name);
  p_txt(&a, sha256_hex);
  p_i64(&a, read_only ? 1 : 0);
  p_f64(&a, now());
  if (cmd(s, "INSERT INTO tokens(name, sha256, read_only, created) VALUES($1,$2,$3,$4)", &a, NULL) == 0) return 0;
  if (kp_store_last_error()->code != KP_STORE_EEXISTS) return -1;
  e = exists_q(s, "SELECT 1 FROM tokens WHERE name=$1", name);
  if (e > 0) return kp_store_fail(KP_STORE_EEXISTS, "a token named '%s' exists already", name);
  return kp_store_fail(KP_STORE_EEXISTS, "a token with that secret exists already");
}

static int pg_token_list(kp_store *base, kp_token **out, size_t *n) {
  *out = NULL;
  *n = 0;
  PGresult *r = qry(PG(base), "SELECT name, read_only, created, last_used FROM tokens ORDER BY name COLLATE \"C\"", NULL);
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_token *t = &(*out)[(*n)++];
    t->name = gdup(r, i, 0);
    t->read_only = gint(r, i, 1);
    t->created = gtime(r, i, 2);
    t->last_used = gtime(r, i, 3);
  }
  PQclear(r);
  return 0;
}

static int pg_token_revoke(kp_store *base, const char *name) {
  pa a = {0};
  p_txt(&a, name);
  long long changed = 0;
  if (cmd(PG(base), "DELETE FROM tokens WHERE name=$1", &a, &changed) != 0) return -1;
  if (changed == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no token named '%s'", name);
  return 0;
}

static int pg_token_check(kp_store *base, const char *sha256_hex, int *found, int *read_only) {
  pg_store *s = PG(base);
  *found = 0;
  *read_only = 1;
  pa a = {0};
  p_txt(&a, sha256_hex);
  PGresult *r = qry(s, "SELECT read_only, coalesce(last_used, 0) FROM tokens WHERE sha256=$1", &a);
  if (!r) return -1;
  double last = 0;
  if (PQntuples(r) > 0) {
    *found = 1;
    *read_only = gint(r, 0, 0) != 0;
    last = gtime(r, 0, 1);
  }
  PQclear(r);
  double t = now();
  if (!*found || t - last < 60) return 0;
  pa b = {0};
  p_f64(&b, t);
  p_txt(&b, sha256_hex);
  return cmd(s, "UPDATE tokens SET last_used=$1 WHERE sha256=$2", &b, NULL);
}

/* ---- downsampled series ------------------------------------------------------------------ */
/* one metric's points with from <= step <= to, downsampled over the window's
 * own step range when there are more than max_points (see store.h) */
static int pg_metric_series_window(kp_store *base, const char *run_id, const char *name, int64_t from, int64_t to,
                                   int64_t max_points, kp_metric_point **out, size_t *n, int64_t *total) {
  pg_store *s = PG(base);
  *out = NULL;
  *n = 0;
  *total = 0;
  if (max_points < 2) return kp_store_fail(KP_STORE_EINVAL, "max_points must be 2 or more (got %lld)", (long long)max_points);
  if (from > to)
    return kp_store_fail(KP_STORE_EINVAL, "from_step (%lld) is after to_step (%lld)", (long long)from, (long long)to);
  if (run_exists(s, run_id) <= 0) return -1;
  pa a = {0};
  p_txt(&a, run_id);
  p_txt(&a, name);
  p_i64(&a, from);
  p_i64(&a, to);
  PGresult *r = qry(s,
                    "SELECT count(*), coalesce(min(step), 0), coalesce(max(step), 0) FROM metrics"
                    " WHERE run_id=$1 AND name=$2 AND step BETWEEN $3 AND $4",
                    &a);
  if (!r) return -1;
  *total = gi64(r, 0, 0);
  int64_t lo = gi64(r, 0, 1), hi = gi64(r, 0, 2);
  PQclear(r);
  if (*total == 0) {
    /* an empty window of a metric the run has is no error */
    pa b = {0};
    p_txt(&b, run_id);
    p_txt(&b, name);
    r = qry(s, "SELECT 1 FROM metrics WHERE run_id=$1 AND name=$2 LIMIT 1", &b);
    if (!r) return -1;
    int has = PQntuples(r) > 0;
    PQclear(r);
    return has ? 0 : kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no metric named '%s'", run_id, name);
  }
  /* buckets of equal step ranges as store_sqlite.c cuts them; in each, the
   * row of the lowest and of the highest value (NaN, which PostgreSQL sorts
   * above every number, only when the bucket has nothing else; ties: the
   * first row by step) */
  if (*total <= max_points) {
    r = qry(s, "SELECT step, ts, value FROM metrics WHERE run_id=$1 AND name=$2 AND step BETWEEN $3 AND $4 ORDER BY step, id",
            &a);
  } else {
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1, nb = (uint64_t)(max_points / 2);
    int64_t width = (int64_t)(span / nb + (span % nb != 0));
    p_i64(&a, lo);
    p_i64(&a, width);
    r = qry(s,
            "SELECT step, ts, value FROM ("
            " (SELECT DISTINCT ON ((step - $5) / $6) step, ts, value, id FROM metrics"
            "  WHERE run_id=$1 AND name=$2 AND step BETWEEN $3 AND $4"
            "  ORDER BY (step - $5) / $6, nullif(value, 'NaN'::float8) ASC NULLS LAST, step, id)"
            " UNION"
            " (SELECT DISTINCT ON ((step - $5) / $6) step, ts, value, id FROM metrics"
            "  WHERE run_id=$1 AND name=$2 AND step BETWEEN $3 AND $4"
            "  ORDER BY (step - $5) / $6, nullif(value, 'NaN'::float8) DESC NULLS LAST, step, id)) b"
            " ORDER BY step, id",
            &a);
  }
  if (!r) return -1;
  int rows = PQntuples(r);
  if (rows && !(*out = calloc((size_t)rows, sizeof **out))) { PQclear(r); return oom(); }
  for (int i = 0; i < rows; i++) {
    kp_metric_point *p = &(*out)[(*n)++];
    p->name = NULL;
    p->step = gi64(r, i, 0);
    p->time = gtime(r, i, 1);
    p->value = gval(r, i, 2);
  }
  PQclear(r);
  return 0;
}

static int pg_metric_series_downsampled(kp_store *base, const char *run_id, const char *name, int64_t max_points,
                                        kp_metric_point **out, size_t *n, int64_t *total) {
  return pg_metric_series_window(base, run_id, name, INT64_MIN, INT64_MAX, max_points, out, n, total);
}

/* ---- server-sent events (h-api) ----------------------------------------------- */
static int pg_metric_events(kp_store *base, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out,
                            size_t *n) {
  pg_store *s = PG(base);
  PGresult *r;
  if (*cursor <= 0 && run_exists(s, run_id) <= 0) return -1;
  if (*cursor < 0) {
    if (!(r = qry(s, "SELECT coalesce(max(id), 0) FROM metrics", NULL))) return -1;
    *cursor = gi64(r, 0, 0);
    PQclear(r);
    return 0;
  }
  if (*cursor == 0) {
    pa a = {0};
    p_txt(&a, run_id);
    if (!(r = qry(s, "SELECT coalesce(min(id), 0) FROM metrics WHERE run_id=$1", &a))) return -1;
    long long first = gi64(r, 0, 0);
    PQclear(r);
    if (first > 0) *cursor = first - 1;
  }
  if (max == 0) return 0;
  pa a = {0};
  p_i64(&a, *cursor);
  p_txt(&a, run_id);
  p_i64(&a, (int64_t)max);
  /* ids are assigned under the write lock, so in commit order (metric_follow) */
  if (!(r = qry(s, "SELECT id, name, step, ts, value FROM metrics WHERE id > $1 AND run_id = $2 ORDER BY id LIMIT $3", &a)))
    return -1;
  size_t k = (size_t)PQntuples(r);
  kp_metric_event *v = calloc(k ? k : 1, sizeof *v);
  if (!v) {
    PQclear(r);
    return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  }
  for (size_t i = 0; i < k; i++) {
    v[i].seq = gi64(r, (int)i, 0);
    v[i].name = gdup(r, (int)i, 1);
    v[i].step = gi64(r, (int)i, 2);
    v[i].time = gval(r, (int)i, 3);
    v[i].value = gval(r, (int)i, 4);
  }
  PQclear(r);
  if (k) *cursor = v[k - 1].seq;
  *out = v;
  *n = k;
  return 0;
}

static const kp_store_ops pg_ops = {
  .backend = "postgresql",
  .close = pg_close,
  .begin = pg_begin,
  .commit = pg_commit,
  .rollback = pg_rollback,
  .experiment_list = pg_experiment_list,
  .experiment_get = pg_experiment_get,
  .compute_create = pg_compute_create,
  .compute_list = pg_compute_list,
  .compute_delete = pg_compute_delete,
  .run_create = pg_run_create,
  .run_get = pg_run_get,
  .run_transition = pg_run_transition,
  .run_request_cancel = pg_run_request_cancel,
  .run_list_active = pg_run_list_active,
  .run_claim_node = pg_run_claim_node,
  .run_attach_supervisor = pg_run_attach_supervisor,
  .run_attach_entry = pg_run_attach_entry,
  .run_set_build_cache = pg_run_set_build_cache,
  .run_files_put = pg_run_files_put,
  .counts = pg_counts,
  .experiment_runs = pg_experiment_runs,
  .sweep_runs = pg_sweep_runs,
  .run_is_sweep = pg_run_is_sweep,
  .runs_files_size = pg_runs_files_size,
  .runs_blobs = pg_runs_blobs,
  .runs_delete = pg_runs_delete,
  .experiment_delete = pg_experiment_delete,
  .blobs_referenced = pg_blobs_referenced,
  .snapshot_list = pg_snapshot_list,
  .tag_set = pg_tag_set,
  .tag_list = pg_tag_list,
  .tag_remove = pg_tag_remove,
  .metrics_ingest = pg_metrics_ingest,
  .metric_series = pg_metric_series,
  .metric_names = pg_metric_names,
  .metrics_latest = pg_metrics_latest,
  .metric_follow = pg_metric_follow,
  .run_sweep_spec = pg_run_sweep_spec,
  .metric_exists = pg_metric_exists,
  .metric_latest_value = pg_metric_latest_value,
  .run_list = pg_run_list,
  .model_version_create = pg_model_version_create,
  .model_get = pg_model_get,
  .model_list = pg_model_list,
  .model_services = pg_model_services,
  .model_delete = pg_model_delete,
  .model_tags_set = pg_model_tags_set,
  .model_tags_remove = pg_model_tags_remove,
  .run_files_list = pg_run_files_list,
  /* run search */
  .run_params_set = pg_run_params_set,
  .run_params = pg_run_params,
  .run_search = pg_run_search,
  /* services */
  .service_create = pg_service_create,
  .service_redeploy = pg_service_redeploy,
  .service_get = pg_service_get,
  .service_list = pg_service_list,
  .service_model = pg_service_model,
  .service_set_keys = pg_service_set_keys,
  .service_starting = pg_service_starting,
  .service_start_failed = pg_service_start_failed,
  .service_running = pg_service_running,
  .service_stopped = pg_service_stopped,
  .service_exited = pg_service_exited,
  .service_delete = pg_service_delete,
  /* sweeps */
  .sweep_create = pg_sweep_create,
  .sweep_get = pg_sweep_get,
  .sweep_list = pg_sweep_list,
  .sweep_attach_controller = pg_sweep_attach_controller,
  .sweep_reopen = pg_sweep_reopen,
  .sweep_end = pg_sweep_end,
  .sweep_log_best = pg_sweep_log_best,
  .sweep_trial_add = pg_sweep_trial_add,
  .sweep_trial_list = pg_sweep_trial_list,
  .sweep_trial_attach_run = pg_sweep_trial_attach_run,
  .sweep_trial_set_error = pg_sweep_trial_set_error,
  .sweep_trial_evaluated = pg_sweep_trial_evaluated,
  .sweep_child_by_index = pg_sweep_child_by_index,
  .sweep_cancel_requested = pg_sweep_cancel_requested,
  /* tokens (the tracking server) */
  .token_create = pg_token_create,
  .token_list = pg_token_list,
  .token_revoke = pg_token_revoke,
  .token_check = pg_token_check,
  .metric_series_downsampled = pg_metric_series_downsampled,
  /* server-sent events */
  .metric_events = pg_metric_events,
  /* distributed runs: metrics per rank */
  .metric_series_rank = pg_metric_series_rank,
  .metric_names_rank = pg_metric_names_rank,
  /* web UI zoom (h-ui) */
  .metric_series_window = pg_metric_series_window,
};

/* ---- opening and migrating ---------------------------------------------------------- */
static int migrate(pg_store *s, kp_store_migrate_hook hook, void *ctx) {
  if (tx_begin(s, &(int){0}) != 0) return -1;
  PGresult *r = NULL;
  if (cmd(s, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)", NULL, NULL) != 0 ||
      !(r = qry(s, "SELECT coalesce(max(version), 0) FROM schema_version", NULL))) {
    tx_end(s, 1, -1);
    return -1;
  }
  int version = gint(r, 0, 0);
  PQclear(r);
  if (version > PG_SCHEMA_VERSION) {
    tx_end(s, 1, -1);
    return kp_store_fail(KP_STORE_ECONFLICT, "has schema version %d, newer than this kusari (%d)", version, PG_SCHEMA_VERSION);
  }
  for (int v = version; v < PG_SCHEMA_VERSION; v++) {
    int ok = 0;
    if (migrations[v][0]) {
      PGresult *m = PQexec(s->conn, migrations[v]);
      if (PQresultStatus(m) != PGRES_COMMAND_OK) ok = fail_from(s, m);
      PQclear(m);
    }
    pa a = {0};
    p_i64(&a, v + 1);
    if (ok != 0 || (hook && hook(ctx, &s->base, v + 1) != 0) || cmd(s, "DELETE FROM schema_version", NULL, NULL) != 0 ||
        cmd(s, "INSERT INTO schema_version(version) VALUES($1)", &a, NULL) != 0) {
      kp_store_error cause = *kp_store_last_error();
      tx_end(s, 1, -1);
      return kp_store_fail(KP_STORE_EBACKEND, "migration to schema version %d failed%s%s", v + 1, cause.message[0] ? ": " : "",
                           cause.message);
    }
  }
  return tx_end(s, 1, 0);
}

int kp_store_pg_open(const char *uri, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out) {
  kp_store_clear_error();
  *out = NULL;
  pg_store *s = calloc(1, sizeof *s);
  if (!s) return oom();
  s->base.ops = &pg_ops;
  /* a 10 s connect timeout unless the URI says otherwise (it comes later, so
   * it wins); PQreset reuses these */
  const char *const keys[] = {"connect_timeout", "dbname", NULL};
  const char *const vals[] = {"10", uri, NULL};
  s->conn = PQconnectdbParams(keys, vals, 1);
  if (!s->conn) {
    free(s);
    return oom();
  }
  PQsetNoticeProcessor(s->conn, quiet_notices, NULL);
  char safe[600];
  kp_store_uri_redact(uri, safe, sizeof safe);
  if (PQstatus(s->conn) != CONNECTION_OK) {
    char msg[800];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
    trim(msg);
    pg_close(&s->base);
    return kp_store_fail_unreachable("cannot connect to the PostgreSQL store %s: %s", safe, msg);
  }
  describe(s);
  if (migrate(s, hook, hook_ctx) != 0) {
    kp_store_error e = *kp_store_last_error();
    int unr = kp_store_unreachable();
    pg_close(&s->base);
    restore_error(&e, unr);
    return -1;
  }
  *out = &s->base;
  return 0;
}

#endif
