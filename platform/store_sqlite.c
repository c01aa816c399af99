/*
 * platform/store_sqlite.c — the SQLite backend of the store interface
 * (store.h): one database file per workspace (kusari.db) in WAL mode with a
 * busy timeout, its versioned schema and migrations, and the SQL of every
 * operation migrated to the interface so far (docs/ARCHITECTURE.md, "Store
 * interface").
 *
 * Migrations are an ordered list of SQL scripts; PRAGMA user_version records
 * how many have been applied. They all run in one transaction, so a crash
 * leaves the store at the previous version. Run statuses are stored by name
 * (kp_run_status_name).
 */
#include "store.h"

#include "filter.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define SCHEMA_VERSION 9

/* the status sets the SQL below uses (names as kp_run_status_name gives) */
#define SQL_ENDED "('Completed','Failed','Canceled')"
#define SQL_ACTIVE "('Queued','Preparing','Running','Finalizing')"
#define SQL_BUSY "('Preparing','Running','Finalizing')"
/* the nodes run X holds (a distributed run's tag kusari.nodes, else 1) */
#define SQL_NODES(x) "coalesce((SELECT CAST(t.value AS INTEGER) FROM tags t WHERE t.run_id=" x ".id AND t.key='kusari.nodes'),1)"

/* migrations[i] takes the schema from version i to i+1 */
static const char *const migrations[] = {
  /* 0 -> 1 */
  "CREATE TABLE experiments(\n"
  "  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);\n"
  "CREATE TABLE computes(\n"
  "  name TEXT PRIMARY KEY, type TEXT NOT NULL, max_nodes INTEGER NOT NULL,\n"
  "  created REAL NOT NULL);\n"
  "CREATE TABLE runs(\n"
  "  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
  "  id TEXT UNIQUE,\n"
  "  experiment_id INTEGER NOT NULL REFERENCES experiments(id),\n"
  "  parent_id TEXT,\n"
  "  status TEXT NOT NULL,\n"
  "  compute TEXT NOT NULL,\n"
  "  source TEXT NOT NULL,\n"
  "  entry TEXT NOT NULL,\n"
  "  args TEXT NOT NULL,\n"
  "  snapshot TEXT NOT NULL,\n"
  "  snapshot_bytes INTEGER NOT NULL DEFAULT 0,\n"
  "  env_json TEXT,\n"
  "  env_hash TEXT,\n"
  "  build_cache TEXT,\n"
  "  created REAL NOT NULL, prepared REAL, started REAL, ended REAL,\n"
  "  exit_code INTEGER, signal INTEGER, error TEXT,\n"
  "  supervisor_pid INTEGER, supervisor_start INTEGER,\n"
  "  entry_pid INTEGER, entry_start INTEGER,\n"
  "  cancel_requested INTEGER NOT NULL DEFAULT 0, cancel_grace REAL NOT NULL DEFAULT 10, cancel_reason TEXT,\n"
  "  channel_offset INTEGER NOT NULL DEFAULT 0);\n"
  "CREATE INDEX runs_by_status ON runs(status, compute);\n"
  "CREATE TABLE tags(run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,\n"
  "  PRIMARY KEY(run_id, key));\n"
  "CREATE TABLE metrics(id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, name TEXT NOT NULL,\n"
  "  step INTEGER NOT NULL, ts REAL NOT NULL, value REAL);  -- NULL = NaN\n"
  "CREATE INDEX metrics_by_run ON metrics(run_id, name, step);\n"
  "CREATE TABLE files(run_id TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,\n"
  "  sha256 TEXT NOT NULL, PRIMARY KEY(run_id, path));\n"
  "CREATE TABLE models(id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,\n"
  "  run_id TEXT, path TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',\n"
  "  created REAL NOT NULL, UNIQUE(name, version));\n"
  "CREATE TABLE model_files(model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
  "  path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY(model_id, path));\n"
  "CREATE TABLE model_tags(model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
  "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(model_id, key));\n",
  /* 1 -> 2: see migrate_1_to_2 */
  "",
  /* 2 -> 3: scoring services (platform/cmd_service.c) */
  "CREATE TABLE IF NOT EXISTS services(name TEXT PRIMARY KEY, model_id INTEGER NOT NULL, model_name TEXT NOT NULL,\n"
  "  model_version INTEGER NOT NULL, entry_name TEXT, entry_sha256 TEXT, host TEXT NOT NULL,\n"
  "  port INTEGER NOT NULL, bound_port INTEGER, auth INTEGER NOT NULL, workers INTEGER NOT NULL,\n"
  "  max_body INTEGER NOT NULL, timeout INTEGER NOT NULL, primary_key TEXT NOT NULL,\n"
  "  secondary_key TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER, pid_start INTEGER, error TEXT,\n"
  "  created REAL NOT NULL, started REAL, stopped REAL);\n",
  /* 3 -> 4: hyperparameter sweeps (platform/cmd_sweep.c): the parent run's
   * resolved sweep file, and one trial per child run */
  "CREATE TABLE IF NOT EXISTS sweeps(run_id TEXT PRIMARY KEY, spec TEXT NOT NULL, env_json TEXT, stop_reason TEXT,\n"
  "  created REAL NOT NULL);\n"
  "CREATE TABLE IF NOT EXISTS sweep_trials(sweep_id TEXT NOT NULL, idx INTEGER NOT NULL, params TEXT NOT NULL, run_id TEXT,\n"
  "  evaluated INTEGER NOT NULL DEFAULT 0, decision TEXT, error TEXT, created REAL NOT NULL,\n"
  "  PRIMARY KEY(sweep_id, idx));\n"
  "CREATE INDEX IF NOT EXISTS runs_by_parent ON runs(parent_id);\n",
  /* 4 -> 5: services keep only the sha256 of their keys; the keys move to
   * services/NAME/keys (0600): the migration hook of the workspace
   * (kp_service_keys_migrate, cmd_service.c) calls
   * kp_store_sqlite_service_keys_migrate with a callback that writes the
   * file; then migrate_4_to_5 renames the columns of a store that has no
   * keys to move (or refuses one that has). Columns that have their new
   * names already (a store set back to an older version) are left alone. */
  "",
  /* 5 -> 6: run search (filter.h; "run search" below): params (key -> value
   * text, and the same in a NUMERIC column so numbers compare as numbers),
   * backfilled from the sweep trials and recorded by a trigger when a trial
   * gets its run; each run's latest value of each metric (metric_latest:
   * sq_metrics_ingest updates it once per metric and batch — a per-row
   * trigger doubled the cost of ingestion; whatever else writes metrics must
   * update it too: a trigger does it for the sweep controller's one metric);
   * indexes by name and value; the key that signs page tokens */
  "CREATE TABLE IF NOT EXISTS store_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
  "INSERT OR IGNORE INTO store_meta(key, value) VALUES('page_token_key', lower(hex(randomblob(32))));\n"
  "CREATE TABLE IF NOT EXISTS params(run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, num NUMERIC,\n"
  "  PRIMARY KEY(run_id, key));\n"
  "CREATE INDEX IF NOT EXISTS params_by_key ON params(key, num);\n"
  "INSERT OR IGNORE INTO params(run_id, key, value, num)\n"
  "  SELECT t.run_id, j.key, j.value, j.value FROM sweep_trials t, json_each(t.params) j\n"
  "  WHERE t.run_id IS NOT NULL AND json_valid(t.params) AND j.type NOT IN ('object', 'array', 'null');\n"
  "CREATE TRIGGER IF NOT EXISTS params_of_sweep_trial AFTER UPDATE OF run_id ON sweep_trials\n"
  "  WHEN NEW.run_id IS NOT NULL AND json_valid(NEW.params) BEGIN\n"
  "  INSERT OR REPLACE INTO params(run_id, key, value, num) SELECT NEW.run_id, j.key, j.value, j.value\n"
  "    FROM json_each(NEW.params) j WHERE j.type NOT IN ('object', 'array', 'null');\n"
  "END;\n"
  "CREATE TABLE IF NOT EXISTS metric_latest(run_id TEXT NOT NULL, name TEXT NOT NULL, step INTEGER NOT NULL,\n"
  "  mid INTEGER NOT NULL, value REAL, PRIMARY KEY(run_id, name));  -- value NULL = NaN\n"
  "CREATE INDEX IF NOT EXISTS metric_latest_by_name ON metric_latest(name, value);\n"
  "INSERT OR REPLACE INTO metric_latest(run_id, name, step, mid, value)\n"
  "  SELECT x.run_id, x.name, x.step, x.id, x.value FROM (SELECT DISTINCT run_id, name FROM metrics) g\n"
  "  JOIN metrics x ON x.id = (SELECT y.id FROM metrics y WHERE y.run_id = g.run_id AND y.name = g.name\n"
  "    ORDER BY y.step DESC, y.id DESC LIMIT 1);\n"
  /* the one writer of metrics outside ingestion (the sweep controller logs
   * its best child's value on the parent run, cmd_sweep.c): only its rows */
  "CREATE TRIGGER IF NOT EXISTS metric_latest_of_sweep_best AFTER INSERT ON metrics\n"
  "  WHEN NEW.name = 'best_child_by_primary_metric' BEGIN\n"
  "  INSERT INTO metric_latest(run_id, name, step, mid, value) VALUES(NEW.run_id, NEW.name, NEW.step, NEW.id, NEW.value)\n"
  "  ON CONFLICT(run_id, name) DO UPDATE SET step = excluded.step, mid = excluded.mid, value = excluded.value\n"
  "  WHERE excluded.step > metric_latest.step OR (excluded.step = metric_latest.step AND excluded.mid > metric_latest.mid);\n"
  "END;\n"
  "CREATE TRIGGER IF NOT EXISTS run_search_on_run_delete AFTER DELETE ON runs BEGIN\n"
  "  DELETE FROM metric_latest WHERE run_id = OLD.id;\n"
  "  DELETE FROM params WHERE run_id = OLD.id;\n"
  "END;\n"
  "CREATE INDEX IF NOT EXISTS tags_by_key ON tags(key, value);\n",
  /* 6 -> 7: the tracking server's API tokens (platform/cmd_server.c): the
   * sha256 of each secret, never the secret */
  "CREATE TABLE IF NOT EXISTS tokens(name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE,\n"
  "  read_only INTEGER NOT NULL, created REAL NOT NULL, last_used REAL);\n",
  /* 7 -> 8: distributed runs (issue 13): the points that ranks > 0 log, each
   * with its rank, apart from rank 0's in 'metrics' (so every view, filter,
   * run search and sweep policy reads rank 0's without a rank condition) */
  "CREATE TABLE IF NOT EXISTS metric_ranks(id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, rank INTEGER NOT NULL,\n"
  "  name TEXT NOT NULL, step INTEGER NOT NULL, ts REAL NOT NULL, value REAL);  -- value NULL = NaN\n"
  "CREATE INDEX IF NOT EXISTS metric_ranks_by_run ON metric_ranks(run_id, rank, name, step);\n"
  "CREATE TRIGGER IF NOT EXISTS metric_ranks_on_run_delete AFTER DELETE ON runs BEGIN\n"
  "  DELETE FROM metric_ranks WHERE run_id = OLD.id;\n"
  "END;\n",
  /* 8 -> 9: when each run became Finalizing (the web UI's run timeline; the
   * other status times were kept already): see migrate_8_to_9 */
  "",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == SCHEMA_VERSION, "one migration per version");

typedef struct sq_store {
  kp_store base;
  sqlite3 *db;
  char path[4200];
} sq_store;

#define SQ(s) ((sq_store *)(s))

int kp_store_sqlite_schema_version(void) { return SCHEMA_VERSION; }
static const kp_store_ops sqlite_ops;
void *kp_store_sqlite_handle(kp_store *s) { return s && s->ops == &sqlite_ops ? SQ(s)->db : NULL; }

static double now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* ---- helpers ------------------------------------------------------------------- */
static int db_fail(sq_store *s) { return kp_store_fail(KP_STORE_EBACKEND, "store: %s", sqlite3_errmsg(s->db)); }

static int exec(sq_store *s, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    kp_store_fail(KP_STORE_EBACKEND, "store %s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

static int prep(sq_store *s, sqlite3_stmt **st, const char *sql) {
  if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK) {
    *st = NULL;
    return kp_store_fail(KP_STORE_EBACKEND, "store: cannot prepare query: %s", sqlite3_errmsg(s->db));
  }
  return 0;
}

/* sqlite3_step of a query: 1 a row, 0 done, -1 error (set) */
static int row(sq_store *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return 1;
  if (rc == SQLITE_DONE) return 0;
  return db_fail(s);
}

static int done(sq_store *s, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(s);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) {
  if (v) sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
  else sqlite3_bind_null(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return strdup(t ? (const char *)t : "");
}

static char *col_dup_or_null(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : col_dup(st, i);
}

static double col_time(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : sqlite3_column_double(st, i);
}

static kp_run_status col_status(sqlite3_stmt *st, int i) {
  kp_run_status v = KP_RUN_FAILED;
  kp_run_status_parse((const char *)sqlite3_column_text(st, i), &v);
  return v;
}

static int oom(void) { return kp_store_fail(KP_STORE_EBACKEND, "out of memory"); }

/* Room for one more element in the array 'arr' of which 'n' are used and
 * 'cap' allocated (doubling, from 'first'): 0, or -1 when out of memory
 * (arr and cap unchanged). The row collectors below all grow this way. */
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

/* Begins a write transaction unless one is open already (the caller's);
 * *own says whether this call must end it. */
static int tx_begin(sq_store *s, int *own) {
  *own = sqlite3_get_autocommit(s->db) != 0;
  return *own ? exec(s, "BEGIN IMMEDIATE") : 0;
}

/* Ends what tx_begin began: commits when 'ok' is 0, else rolls back. */
static int tx_end(sq_store *s, int own, int ok) {
  if (!own) return ok;
  if (ok == 0) {
    if (exec(s, "COMMIT") == 0) return 0;
    ok = -1;
  }
  if (!sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  return ok;
}

/* 1 when run 'id' exists, 0 when not (ENOTFOUND set), -1 on error */
static int run_exists(sq_store *s, const char *id) {
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT 1 FROM runs WHERE id=?") != 0) return -1;
  bind_text(st, 1, id);
  int r = row(s, st);
  sqlite3_finalize(st);
  if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
  return r;
}

/* ---- lifecycle and transactions ------------------------------------------------ */
static void sq_close(kp_store *base) {
  sq_store *s = SQ(base);
  sqlite3_close(s->db);
  free(s);
}

static int sq_begin(kp_store *s) { return exec(SQ(s), "BEGIN IMMEDIATE"); }
static int sq_commit(kp_store *s) { return exec(SQ(s), "COMMIT"); }
static void sq_rollback(kp_store *s) {
  if (!sqlite3_get_autocommit(SQ(s)->db)) sqlite3_exec(SQ(s)->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- experiments --------------------------------------------------------------- */
static int sq_experiment_list(kp_store *base, kp_experiment_summary **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT e.name, e.created, count(r.seq),"
           " sum(r.status='Completed'), sum(r.status='Failed'), sum(r.status='Canceled'),"
           " sum(r.status IN " SQL_ACTIVE "), max(r.created)"
           " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id GROUP BY e.id ORDER BY e.name") != 0)
    return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    kp_experiment_summary *e = &(*out)[(*n)++];
    e->name = col_dup(st, 0);
    e->created = col_time(st, 1);
    e->runs = sqlite3_column_int(st, 2);
    e->completed = sqlite3_column_int(st, 3);
    e->failed = sqlite3_column_int(st, 4);
    e->canceled = sqlite3_column_int(st, 5);
    e->active = sqlite3_column_int(st, 6);
    e->last_run = col_time(st, 7);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_experiment_summaries_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_experiment_get(kp_store *base, const char *name, kp_experiment_detail *o) {
  sq_store *s = SQ(base);
  memset(o, 0, sizeof *o);
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT e.id, e.created, count(r.seq), max(max(coalesce(r.ended, 0), coalesce(r.started, 0), r.created)),"
           " (SELECT count(*) FROM sweeps w JOIN runs x ON x.id=w.run_id WHERE x.experiment_id=e.id)"
           " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id WHERE e.name=? GROUP BY e.id") != 0)
    return -1;
  bind_text(st, 1, name);
  int r = row(s, st);
  if (r <= 0) {
    sqlite3_finalize(st);
    return r < 0 ? -1 : kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  }
  sqlite3_int64 eid = sqlite3_column_int64(st, 0);
  o->name = strdup(name);
  o->created = col_time(st, 1);
  o->runs = sqlite3_column_int(st, 2);
  o->last_activity = o->runs ? col_time(st, 3) : 0;
  o->sweeps = sqlite3_column_int(st, 4);
  sqlite3_finalize(st);
  if (prep(s, &st, "SELECT status, count(*) FROM runs WHERE experiment_id=? GROUP BY status") != 0) goto fail;
  sqlite3_bind_int64(st, 1, eid);
  while ((r = row(s, st)) > 0) {
    kp_run_status v;
    if (kp_run_status_parse((const char *)sqlite3_column_text(st, 0), &v) == 0) o->by_status[v] = sqlite3_column_int(st, 1);
  }
  sqlite3_finalize(st);
  if (r < 0) goto fail;
  /* each run's final value of each metric (latest step), then per metric:
   * how many runs, the lowest and highest with their runs, the newest run's */
  if (prep(s, &st,
           "WITH fin AS (SELECT m.name, m.value, r.id AS run, r.seq FROM metrics m JOIN runs r ON r.id=m.run_id"
           "  WHERE r.experiment_id=?1 AND m.id=(SELECT x.id FROM metrics x WHERE x.run_id=m.run_id AND x.name=m.name"
           "  ORDER BY x.step DESC, x.id DESC LIMIT 1)),"
           " g AS (SELECT name, count(*) AS n, min(value) AS lo, max(value) AS hi, max(seq) AS newest FROM fin GROUP BY name)"
           " SELECT g.name, g.n, g.lo, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.lo ORDER BY seq DESC LIMIT 1),"
           "  g.hi, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.hi ORDER BY seq DESC LIMIT 1),"
           "  (SELECT value FROM fin WHERE fin.name=g.name AND fin.seq=g.newest), (SELECT run FROM fin WHERE fin.name=g.name AND fin.seq=g.newest)"
           " FROM g ORDER BY g.name") != 0)
    goto fail;
  sqlite3_bind_int64(st, 1, eid);
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(o->metrics, o->nmetrics, cap, 8) != 0) { r = oom(); break; }
    kp_metric_spread *m = &o->metrics[o->nmetrics++];
    m->name = col_dup(st, 0);
    m->runs = sqlite3_column_int(st, 1);
    m->has_min = sqlite3_column_type(st, 2) != SQLITE_NULL;  /* NaN is stored as NULL */
    m->min = m->has_min ? sqlite3_column_double(st, 2) : NAN;
    m->min_run = col_dup(st, 3);
    m->has_max = sqlite3_column_type(st, 4) != SQLITE_NULL;
    m->max = m->has_max ? sqlite3_column_double(st, 4) : NAN;
    m->max_run = col_dup(st, 5);
    m->latest = sqlite3_column_type(st, 6) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 6);
    m->latest_run = col_dup(st, 7);
  }
  sqlite3_finalize(st);
  if (r < 0) goto fail;
  if (prep(s, &st, "SELECT id, status, created FROM runs WHERE experiment_id=? ORDER BY seq DESC LIMIT 5") != 0) goto fail;
  sqlite3_bind_int64(st, 1, eid);
  o->recent = calloc(5, sizeof *o->recent);
  if (!o->recent) { sqlite3_finalize(st); oom(); goto fail; }
  while (o->nrecent < 5 && (r = row(s, st)) > 0) {
    kp_run_brief *b = &o->recent[o->nrecent++];
    b->id = col_dup(st, 0);
    b->status = col_status(st, 1);
    b->created = col_time(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) goto fail;
  return 0;
fail:
  kp_experiment_detail_free(o);
  return -1;
}

/* ---- compute targets ----------------------------------------------------------- */
static int sq_compute_create(kp_store *base, const char *name, const char *type, int max_nodes) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "INSERT INTO computes(name, type, max_nodes, created) VALUES(?,?,?,?)") != 0) return -1;
  bind_text(st, 1, name);
  bind_text(st, 2, type);
  sqlite3_bind_int(st, 3, max_nodes);
  sqlite3_bind_double(st, 4, now());
  int r = sqlite3_step(st), rc = 0;
  if (r != SQLITE_DONE) {
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
      rc = kp_store_fail(KP_STORE_EEXISTS, "compute target '%s' already exists", name);
    else rc = db_fail(s);
  }
  sqlite3_finalize(st);
  return rc;
}

static int sq_compute_list(kp_store *base, const char *only, kp_compute **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT c.name, c.type, c.max_nodes,"
           " (SELECT coalesce(sum(" SQL_NODES("r") "),0) FROM runs r WHERE r.compute=c.name AND r.status IN " SQL_BUSY "),"
           " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status='Queued')"
           " FROM computes c WHERE ?1 IS NULL OR c.name=?1 ORDER BY c.name") != 0)
    return -1;
  bind_text(st, 1, only);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 8) != 0) { r = oom(); break; }
    kp_compute *c = &(*out)[(*n)++];
    c->name = col_dup(st, 0);
    c->type = col_dup(st, 1);
    c->max_nodes = sqlite3_column_int(st, 2);
    c->busy_nodes = sqlite3_column_int(st, 3);
    c->queued_runs = sqlite3_column_int(st, 4);
  }
  sqlite3_finalize(st);
  if (r == 0 && only && *n == 0) r = kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", only);
  if (r < 0) {
    kp_computes_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_compute_delete(kp_store *base, const char *name, int *active_runs) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (active_runs) *active_runs = 0;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT count(*) FROM runs WHERE compute=? AND status IN " SQL_ACTIVE) != 0) goto out;
  bind_text(st, 1, name);
  int active = row(s, st) > 0 ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  if (active < 0) goto out;
  if (active > 0) {
    if (active_runs) *active_runs = active;
    kp_store_fail(KP_STORE_ECONFLICT, "compute target '%s' is in use by %d active run(s)", name, active);
    goto out;
  }
  if (prep(s, &st, "DELETE FROM computes WHERE name=?") != 0) goto out;
  bind_text(st, 1, name);
  int d = done(s, st);
  sqlite3_finalize(st);
  if (d != 0) goto out;
  if (sqlite3_changes(s->db) == 0) {
    kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", name);
    goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

/* ---- runs ------------------------------------------------------------------------ */
static int set_tag(sq_store *s, const char *run_id, const char *key, const char *value) {
  sqlite3_stmt *st;
  if (prep(s, &st, "INSERT OR REPLACE INTO tags(run_id, key, value) VALUES(?,?,?)") != 0) return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, key);
  bind_text(st, 3, value);
  int rc = done(s, st);
  sqlite3_finalize(st);
  return rc;
}

static int sq_run_create(kp_store *base, const kp_run_new *r, char *id, size_t idn) {
  sq_store *s = SQ(base);
  if (!r->experiment || !*r->experiment) return kp_store_fail(KP_STORE_EINVAL, "a run needs an experiment");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (prep(s, &st, "INSERT OR IGNORE INTO experiments(name, created) VALUES(?, ?)") != 0) goto out;
  bind_text(st, 1, r->experiment);
  sqlite3_bind_double(st, 2, now());
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  if (prep(s, &st,
           "INSERT INTO runs(experiment_id, status, compute, source, entry, args, snapshot, snapshot_bytes,"
           " env_json, env_hash, created, parent_id) VALUES((SELECT id FROM experiments WHERE name=?1),"
           " ?12, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)") != 0)
    goto out;
  bind_text(st, 1, r->experiment);
  bind_text(st, 2, r->compute);
  bind_text(st, 3, r->source);
  bind_text(st, 4, r->entry);
  bind_text(st, 5, r->args_json ? r->args_json : "[]");
  bind_text(st, 6, r->snapshot);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)r->snapshot_bytes);
  bind_text(st, 8, r->env_json);
  bind_text(st, 9, r->env_json ? r->env_hash : NULL);
  sqlite3_bind_double(st, 10, now());
  bind_text(st, 11, r->parent_id);
  bind_text(st, 12, kp_run_status_name(KP_RUN_QUEUED));
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  st = NULL;
  sqlite3_int64 seq = sqlite3_last_insert_rowid(s->db);
  snprintf(id, idn, "%s_%lld", r->experiment, (long long)seq);
  if (prep(s, &st, "UPDATE runs SET id=? WHERE seq=?") != 0) goto out;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, seq);
  if (done(s, st) != 0) goto out;
  for (size_t i = 0; i < r->ntags; i++)
    if (set_tag(s, id, r->tag_keys[i], r->tag_values[i]) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

#define RUN_COLS                                                                                              \
  "SELECT r.id, e.name, r.parent_id, r.status, r.compute, r.error, r.created, r.prepared, r.started, r.ended," \
  " r.exit_code, r.signal, r.cancel_requested, r.channel_offset, r.cancel_grace,"                             \
  " r.supervisor_pid, r.supervisor_start, r.entry_pid, r.entry_start,"                                        \
  " r.source, r.entry, r.args, r.snapshot, r.env_json, r.env_hash, r.cancel_reason, r.build_cache,"           \
  " r.snapshot_bytes, r.finalizing"                                                                           \
  " FROM runs r JOIN experiments e ON e.id=r.experiment_id"

static void run_from_row(sqlite3_stmt *st, kp_run *o) {
  o->id = col_dup(st, 0);
  o->experiment = col_dup(st, 1);
  o->parent_id = col_dup_or_null(st, 2);
  o->status = col_status(st, 3);
  o->compute = col_dup(st, 4);
  o->error = col_dup_or_null(st, 5);
  o->created = col_time(st, 6);
  o->prepared = col_time(st, 7);
  o->started = col_time(st, 8);
  o->ended = col_time(st, 9);
  o->has_exit_code = sqlite3_column_type(st, 10) != SQLITE_NULL;
  o->exit_code = sqlite3_column_int(st, 10);
  o->signal = sqlite3_column_int(st, 11);
  o->cancel_requested = sqlite3_column_int(st, 12);
  o->channel_offset = (uint64_t)sqlite3_column_int64(st, 13);
  o->cancel_grace = sqlite3_column_double(st, 14);
  o->supervisor_pid = sqlite3_column_int64(st, 15);
  o->supervisor_start = (uint64_t)sqlite3_column_int64(st, 16);
  o->entry_pid = sqlite3_column_int64(st, 17);
  o->entry_start = (uint64_t)sqlite3_column_int64(st, 18);
  o->source = col_dup(st, 19);
  o->entry = col_dup(st, 20);
  o->args_json = col_dup(st, 21);
  o->snapshot = col_dup(st, 22);
  o->env_json = col_dup_or_null(st, 23);
  o->env_hash = col_dup_or_null(st, 24);
  o->cancel_reason = col_dup_or_null(st, 25);
  o->build_cache = col_dup_or_null(st, 26);
  o->snapshot_bytes = sqlite3_column_int64(st, 27);
  o->finalizing = col_time(st, 28);
}

static int sq_run_get(kp_store *base, const char *id, kp_run *o) {
  sq_store *s = SQ(base);
  memset(o, 0, sizeof *o);
  sqlite3_stmt *st;
  if (prep(s, &st, RUN_COLS " WHERE r.id=?") != 0) return -1;
  bind_text(st, 1, id);
  int r = row(s, st);
  if (r > 0) run_from_row(st, o);
  sqlite3_finalize(st);
  if (r == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
  return r < 0 ? -1 : 0;
}

static int sq_run_list(kp_store *base, const kp_run_query *q, kp_run **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  const char *oexpr = NULL;
  switch (q->order) {
  case KP_ORDER_NEWEST: break;
  case KP_ORDER_CREATED: oexpr = "r.created"; break;
  case KP_ORDER_STARTED: oexpr = "r.started"; break;
  case KP_ORDER_STATUS: oexpr = "r.status"; break;
  case KP_ORDER_DURATION: oexpr = "coalesce(r.ended, ?6) - r.started"; break;
  case KP_ORDER_ID: oexpr = "r.seq"; break;
  case KP_ORDER_METRIC:
    if (!q->order_metric || !*q->order_metric) return kp_store_fail(KP_STORE_EINVAL, "ordering by a metric needs its name");
    oexpr = "(SELECT value FROM metrics x WHERE x.run_id=r.id AND x.name=?5 ORDER BY x.step DESC, x.id DESC LIMIT 1)";
    break;
  default: return kp_store_fail(KP_STORE_EINVAL, "unknown order %d", (int)q->order);
  }
  char sql[2048];
  const char *where = " WHERE (?1 IS NULL OR e.name=?1) AND (?2 IS NULL OR r.status=?2) AND (?4 IS NULL OR r.parent_id=?4)";
  if (oexpr)
    snprintf(sql, sizeof sql, RUN_COLS "%s ORDER BY (%s) IS NULL, (%s) %s, r.seq DESC LIMIT ?3", where, oexpr, oexpr,
             q->desc ? "DESC" : "ASC");
  else snprintf(sql, sizeof sql, RUN_COLS "%s ORDER BY r.seq DESC LIMIT ?3", where);
  sqlite3_stmt *st;
  if (prep(s, &st, sql) != 0) return -1;
  bind_text(st, 1, q->experiment);
  bind_text(st, 2, q->has_status ? kp_run_status_name(q->status) : NULL);
  sqlite3_bind_int64(st, 3, q->limit > 0 ? q->limit : -1);
  bind_text(st, 4, q->parent_id);
  if (q->order == KP_ORDER_METRIC) bind_text(st, 5, q->order_metric);
  if (q->order == KP_ORDER_DURATION) sqlite3_bind_double(st, 6, now());
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    memset(&(*out)[*n], 0, sizeof **out);
    run_from_row(st, &(*out)[(*n)++]);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_runs_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_run_list_active(kp_store *base, kp_run **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, RUN_COLS " WHERE r.status NOT IN " SQL_ENDED " ORDER BY r.seq") != 0) return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    memset(&(*out)[*n], 0, sizeof **out);
    run_from_row(st, &(*out)[(*n)++]);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_runs_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

/* Sets two integer columns of run 'id' ("supervisor", "entry"). */
static int set_pids(sq_store *s, const char *sql, const char *id, int64_t pid, uint64_t start) {
  sqlite3_stmt *st;
  if (prep(s, &st, sql) != 0) return -1;
  sqlite3_bind_int64(st, 1, pid);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)start);
  bind_text(st, 3, id);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  return sqlite3_changes(s->db) > 0 ? 0 : 1;
}

static int sq_run_attach_supervisor(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  sq_store *s = SQ(base);
  int r = set_pids(s, "UPDATE runs SET supervisor_pid=?, supervisor_start=? WHERE id=? AND status='Queued'", id, pid, start);
  if (r <= 0) return r;
  if (run_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "run %s is not a queued run", id);
}

static int sq_run_attach_entry(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  sq_store *s = SQ(base);
  int r = set_pids(s, "UPDATE runs SET entry_pid=?, entry_start=? WHERE id=?", id, pid, start);
  if (r <= 0) return r;
  return kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
}

static int sq_run_set_build_cache(kp_store *base, const char *id, const char *cache) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE runs SET build_cache=? WHERE id=?") != 0) return -1;
  bind_text(st, 1, cache);
  bind_text(st, 2, id);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  return sqlite3_changes(s->db) > 0 ? 0 : kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id);
}

static int sq_run_transition(kp_store *base, const char *id, const kp_run_transition *t);

static int sq_run_claim_node(kp_store *base, const char *id, kp_node_claim *claim, int *max_nodes) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT r.cancel_requested, c.max_nodes,"
           " (SELECT coalesce(sum(" SQL_NODES("x") "),0) FROM runs x WHERE x.compute=r.compute AND x.status IN " SQL_BUSY "),"
           " (SELECT coalesce(sum(" SQL_NODES("x") "),0) FROM runs x WHERE x.compute=r.compute AND x.status='Queued' AND x.seq<r.seq),"
           " " SQL_NODES("r")
           " FROM runs r LEFT JOIN computes c ON c.name=r.compute WHERE r.id=?") != 0)
    goto out;
  bind_text(st, 1, id);
  int r = row(s, st);
  if (r > 0) {
    int cancel = sqlite3_column_int(st, 0);
    int max = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int(st, 1);
    int busy = sqlite3_column_int(st, 2), ahead = sqlite3_column_int(st, 3), mine = sqlite3_column_int(st, 4);
    if (cancel) *claim = KP_CLAIM_CANCELED;
    else if (max == 0) *claim = KP_CLAIM_NO_TARGET;
    else if (busy + ahead + mine <= max) *claim = KP_CLAIM_TAKEN;
    else *claim = KP_CLAIM_WAIT;
    if (max_nodes) *max_nodes = max;
  }
  sqlite3_finalize(st);
  if (r < 0) goto out;
  if (r == 0) { kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", id); goto out; }
  if (*claim == KP_CLAIM_TAKEN) {
    kp_run_transition t = {.to = KP_RUN_PREPARING};
    if (sq_run_transition(base, id, &t) != 0) goto out;
  }
  rc = 0;
out:
  return tx_end(s, own, rc);
}

static int sq_run_files_put(kp_store *base, const char *run_id, const kp_file_entry *f, size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (run_exists(s, run_id) <= 0) goto out;
  if (prep(s, &st, "INSERT OR REPLACE INTO files(run_id, path, size, sha256) VALUES(?,?,?,?)") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!f[i].path || !*f[i].path || !f[i].sha256) { kp_store_fail(KP_STORE_EINVAL, "a run file needs a path and a sha256"); goto out; }
    sqlite3_reset(st);
    bind_text(st, 1, run_id);
    bind_text(st, 2, f[i].path);
    sqlite3_bind_int64(st, 3, f[i].size);
    bind_text(st, 4, f[i].sha256);
    if (done(s, st) != 0) goto out;
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_run_transition(kp_store *base, const char *id, const kp_run_transition *t) {
  sq_store *s = SQ(base);
  if ((unsigned)t->to >= KP_RUN_NSTATUS) return kp_store_fail(KP_STORE_EINVAL, "not a run status: %d", (int)t->to);
  sqlite3_stmt *st;
  if (prep(s, &st,
           "UPDATE runs SET status=?2,"
           " prepared=CASE WHEN ?2='Preparing' THEN ?3 ELSE prepared END,"
           " started=CASE WHEN ?2='Running' THEN ?3 ELSE started END,"
           " finalizing=CASE WHEN ?2='Finalizing' THEN ?3 ELSE finalizing END,"
           " ended=CASE WHEN ?4 THEN ?3 ELSE ended END,"
           " exit_code=CASE WHEN ?5 IS NULL THEN exit_code ELSE ?5 END,"
           " signal=CASE WHEN ?6 IS NULL THEN signal ELSE ?6 END,"
           " error=coalesce(?7, CASE WHEN ?2='Canceled' THEN cancel_reason END, error)"
           " WHERE id=?1 AND status NOT IN " SQL_ENDED) != 0)
    return -1;
  bind_text(st, 1, id);
  bind_text(st, 2, kp_run_status_name(t->to));
  sqlite3_bind_double(st, 3, now());
  sqlite3_bind_int(st, 4, t->end);
  if (t->has_exit_code) sqlite3_bind_int(st, 5, t->exit_code);
  else sqlite3_bind_null(st, 5);
  if (t->signal) sqlite3_bind_int(st, 6, t->signal);
  else sqlite3_bind_null(st, 6);
  bind_text(st, 7, t->error);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) > 0) return 0;
  kp_run run;
  if (sq_run_get(base, id, &run) != 0) return -1;  /* ENOTFOUND */
  kp_store_fail(KP_STORE_ECONFLICT, "run %s has ended (%s); its status stays", id, kp_run_status_name(run.status));
  kp_run_free(&run);
  return -1;
}

static int sq_run_request_cancel(kp_store *base, const char *id, double grace, const char *reason) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE runs SET cancel_requested=1, cancel_grace=?, cancel_reason=? WHERE id=? AND status NOT IN " SQL_ENDED) != 0)
    return -1;
  sqlite3_bind_double(st, 1, grace);
  bind_text(st, 2, reason);
  bind_text(st, 3, id);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) > 0) return 0;
  if (run_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "run %s has already ended; there is nothing to cancel", id);
}

/* ---- deleting runs ----------------------------------------------------------------- */
/* Collects rows (id, status, created) of a prepared query into briefs. */
static int briefs(sq_store *s, sqlite3_stmt *st, kp_run_brief **out, size_t *n) {
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    kp_run_brief *b = &(*out)[(*n)++];
    b->id = col_dup(st, 0);
    b->status = col_status(st, 1);
    b->created = col_time(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_run_briefs_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

/* 1 when 'sql' (one parameter) gives a row, 0 when not, -1 on error */
static int exists1(sq_store *s, const char *sql, const char *arg) {
  sqlite3_stmt *st;
  if (prep(s, &st, sql) != 0) return -1;
  bind_text(st, 1, arg);
  int r = row(s, st);
  sqlite3_finalize(st);
  return r;
}

static int sq_experiment_runs(kp_store *base, const char *name, kp_run_brief **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  int r = exists1(s, "SELECT 1 FROM experiments WHERE name=?", name);
  if (r <= 0) return r < 0 ? -1 : kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT r.id, r.status, r.created FROM runs r JOIN experiments e ON e.id=r.experiment_id"
                   " WHERE e.name=? ORDER BY r.seq") != 0)
    return -1;
  bind_text(st, 1, name);
  return briefs(s, st, out, n);
}

static int sq_sweep_runs(kp_store *base, const char *sweep_id, kp_run_brief **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  int r = exists1(s, "SELECT 1 FROM sweeps WHERE run_id=?", sweep_id);
  if (r <= 0) return r < 0 ? -1 : kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", sweep_id);
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT id, status, created FROM runs WHERE id=?1 OR parent_id=?1 ORDER BY seq") != 0) return -1;
  bind_text(st, 1, sweep_id);
  return briefs(s, st, out, n);
}

static int sq_run_is_sweep(kp_store *base, const char *id, int *yes) {
  sq_store *s = SQ(base);
  int r = exists1(s, "SELECT 1 FROM sweeps WHERE run_id=?", id);
  if (r < 0) return -1;
  *yes = r;
  return 0;
}

/* Fills temp.sel_runs with 'ids'. */
static int sel_runs(sq_store *s, const char *const *ids, size_t n) {
  if (exec(s, "CREATE TEMP TABLE IF NOT EXISTS sel_runs(id TEXT PRIMARY KEY); DELETE FROM temp.sel_runs") != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "INSERT OR IGNORE INTO temp.sel_runs(id) VALUES(?)") != 0) return -1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    sqlite3_reset(st);
    bind_text(st, 1, ids[i]);
    rc = done(s, st);
  }
  sqlite3_finalize(st);
  return rc;
}

static void sel_runs_drop(sq_store *s) { sqlite3_exec(s->db, "DROP TABLE IF EXISTS temp.sel_runs", NULL, NULL, NULL); }

static int sq_runs_files_size(kp_store *base, const char *const *ids, size_t n, int64_t *files, int64_t *bytes) {
  sq_store *s = SQ(base);
  *files = *bytes = 0;
  int rc = -1;
  sqlite3_stmt *st;
  if (sel_runs(s, ids, n) != 0) goto out;
  if (prep(s, &st, "SELECT count(*), coalesce(sum(size), 0) FROM files WHERE run_id IN (SELECT id FROM temp.sel_runs)") != 0)
    goto out;
  if (row(s, st) > 0) {
    *files = sqlite3_column_int64(st, 0);
    *bytes = sqlite3_column_int64(st, 1);
    rc = 0;
  }
  sqlite3_finalize(st);
out:
  sel_runs_drop(s);
  return rc;
}

static int strings(sq_store *s, sqlite3_stmt *st, char ***out, size_t *n) {
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 64) != 0) { r = oom(); break; }
    (*out)[(*n)++] = col_dup(st, 0);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_strings_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_runs_blobs(kp_store *base, const char *const *ids, size_t n, char ***files, size_t *nfiles,
                         char ***snapshots, size_t *nsnapshots) {
  sq_store *s = SQ(base);
  *files = *snapshots = NULL;
  *nfiles = *nsnapshots = 0;
  int rc = -1;
  sqlite3_stmt *st;
  if (sel_runs(s, ids, n) != 0) goto out;
  if (prep(s, &st, "SELECT DISTINCT sha256 FROM files WHERE run_id IN (SELECT id FROM temp.sel_runs)") != 0 ||
      strings(s, st, files, nfiles) != 0)
    goto out;
  if (prep(s, &st, "SELECT DISTINCT snapshot FROM runs WHERE id IN (SELECT id FROM temp.sel_runs)") != 0 ||
      strings(s, st, snapshots, nsnapshots) != 0)
    goto out;
  rc = 0;
out:
  sel_runs_drop(s);
  if (rc != 0) {
    kp_strings_free(*files, *nfiles);
    *files = NULL;
    *nfiles = 0;
  }
  return rc;
}

static const char *const RUN_DELETES[] = {
  "DELETE FROM metrics WHERE run_id IN (SELECT id FROM temp.sel_runs)",
  "DELETE FROM tags WHERE run_id IN (SELECT id FROM temp.sel_runs)",
  "DELETE FROM files WHERE run_id IN (SELECT id FROM temp.sel_runs)",
  "DELETE FROM sweep_trials WHERE sweep_id IN (SELECT id FROM temp.sel_runs) OR run_id IN (SELECT id FROM temp.sel_runs)",
  "DELETE FROM sweeps WHERE run_id IN (SELECT id FROM temp.sel_runs)",
  "DELETE FROM runs WHERE id IN (SELECT id FROM temp.sel_runs)",
};

static int sq_runs_delete(kp_store *base, const char *const *ids, size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  if (sel_runs(s, ids, n) != 0) goto out;
  for (size_t i = 0; i < sizeof RUN_DELETES / sizeof RUN_DELETES[0]; i++)
    if (exec(s, RUN_DELETES[i]) != 0) goto out;
  rc = 0;
out:
  sel_runs_drop(s);
  return tx_end(s, own, rc);
}

static int sq_experiment_delete(kp_store *base, const char *name) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "DELETE FROM experiments WHERE name=?") != 0) return -1;
  bind_text(st, 1, name);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no experiment named '%s' in this workspace", name);
  return 0;
}

/* ---- workspace and blobs ------------------------------------------------------ */
static int sq_counts(kp_store *base, kp_store_counts *o) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM runs), (SELECT count(*) FROM computes),"
           " (SELECT count(*) FROM models)") != 0)
    return -1;
  int r = row(s, st);
  if (r > 0) {
    o->experiments = sqlite3_column_int(st, 0);
    o->runs = sqlite3_column_int(st, 1);
    o->computes = sqlite3_column_int(st, 2);
    o->models = sqlite3_column_int(st, 3);
  }
  sqlite3_finalize(st);
  return r > 0 ? 0 : -1;
}

/* every column that refers to a blob */
static const char *const BLOB_REFS[] = {
  "SELECT sha256 FROM files",
  "SELECT sha256 FROM model_files",
  "SELECT snapshot FROM runs",
  "SELECT entry_sha256 FROM services WHERE entry_sha256 IS NOT NULL",
};

static int sq_blobs_referenced(kp_store *base, const char *const *hex, size_t n, unsigned char *used) {
  sq_store *s = SQ(base);
  for (size_t i = 0; i < n; i++) used[i] = 1;  /* on failure nothing looks unused */
  int rc = -1;
  sqlite3_stmt *ins = NULL, *sel = NULL;
  if (exec(s, "CREATE TEMP TABLE IF NOT EXISTS blob_cand(h TEXT PRIMARY KEY); DELETE FROM temp.blob_cand") != 0) return -1;
  if (prep(s, &ins, "INSERT OR IGNORE INTO temp.blob_cand(h) VALUES(?)") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    sqlite3_reset(ins);
    bind_text(ins, 1, hex[i]);
    if (done(s, ins) != 0) goto out;
  }
  for (size_t i = 0; i < sizeof BLOB_REFS / sizeof BLOB_REFS[0]; i++) {
    char sql[512];
    snprintf(sql, sizeof sql, "DELETE FROM temp.blob_cand WHERE h IN (%s)", BLOB_REFS[i]);
    if (exec(s, sql) != 0) goto out;
  }
  if (prep(s, &sel, "SELECT 1 FROM temp.blob_cand WHERE h=?") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    sqlite3_reset(sel);
    bind_text(sel, 1, hex[i]);
    int r = row(s, sel);
    if (r < 0) goto out;
    used[i] = r == 0;  /* still a candidate: nothing refers to it */
  }
  rc = 0;
out:
  sqlite3_finalize(ins);
  sqlite3_finalize(sel);
  sqlite3_exec(s->db, "DROP TABLE IF EXISTS temp.blob_cand", NULL, NULL, NULL);
  if (rc != 0)
    for (size_t i = 0; i < n; i++) used[i] = 1;
  return rc;
}

static int sq_snapshot_list(kp_store *base, char ***out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT DISTINCT snapshot FROM runs") != 0) return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    (*out)[(*n)++] = col_dup(st, 0);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_strings_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

/* ---- tags ---------------------------------------------------------------------- */
static int sq_tag_set(kp_store *base, const char *run_id, const char *key, const char *value) {
  sq_store *s = SQ(base);
  if (!key || !*key || !value) return kp_store_fail(KP_STORE_EINVAL, "a tag needs a key and a value");
  if (run_exists(s, run_id) <= 0) return -1;
  return set_tag(s, run_id, key, value);
}

static int sq_tag_list(kp_store *base, const char *run_id, kp_tag **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT key, value FROM tags WHERE run_id=? ORDER BY key") != 0) return -1;
  bind_text(st, 1, run_id);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 8) != 0) { r = oom(); break; }
    (*out)[*n].key = col_dup(st, 0);
    (*out)[*n].value = col_dup(st, 1);
    (*n)++;
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_tags_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_tag_remove(kp_store *base, const char *run_id, const char *const *keys, size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (run_exists(s, run_id) <= 0) goto out;
  if (prep(s, &st, "DELETE FROM tags WHERE run_id=? AND key=?") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    sqlite3_reset(st);
    bind_text(st, 1, run_id);
    bind_text(st, 2, keys[i]);
    if (done(s, st) != 0) goto out;
    if (sqlite3_changes(s->db) == 0) {
      kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no tag '%s'; no tag was removed", run_id, keys[i]);
      goto out;
    }
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

/* ---- metrics ------------------------------------------------------------------- */
/* The next implicit step of each metric name of one batch, found by a hash
 * of the name (a batch may hold as many distinct names as points). */
typedef struct next_steps {
  struct { const char *name; int64_t next; } *v;
  size_t n;
  size_t *slots;  /* open addressing: index + 1, 0 = empty */
  size_t nslots;  /* a power of two, at least twice n */
} next_steps;

static size_t step_name_hash(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (size_t)h;
}

/* Steps are capped at KS_STEP_MAX (2^53 - 1, the largest integer that JSON
 * readers and doubles keep exactly): the run client refuses a larger
 * explicit step, and a point read from a channel with a larger step, or one
 * whose implicit step would pass the cap, gets the cap (no wrap-around). */
#define KS_STEP_MAX ((int64_t)9007199254740991)

/* The step of a point of 'name': the explicit one, else one past the last. */
static int step_for(sq_store *s, sqlite3_stmt *count, next_steps *ns, const char *run_id, const char *name, int64_t step,
                    int64_t *out) {
  if (2 * (ns->n + 1) > ns->nslots) {
    size_t nsl = ns->nslots ? 2 * ns->nslots : 1024;
    size_t *nv = calloc(nsl, sizeof *nv);
    if (!nv) return oom();
    for (size_t k = 0; k < ns->n; k++) {
      size_t j = step_name_hash(ns->v[k].name) & (nsl - 1);
      while (nv[j]) j = (j + 1) & (nsl - 1);
      nv[j] = k + 1;
    }
    free(ns->slots);
    ns->slots = nv;
    ns->nslots = nsl;
  }
  size_t j = step_name_hash(name) & (ns->nslots - 1);
  while (ns->slots[j] && strcmp(ns->v[ns->slots[j] - 1].name, name)) j = (j + 1) & (ns->nslots - 1);
  size_t i;
  if (ns->slots[j]) {
    i = ns->slots[j] - 1;
  } else {
    i = ns->n;
    if ((ns->n & (ns->n - 1)) == 0) { /* grow at powers of two */
      void *p = realloc(ns->v, (ns->n ? 2 * ns->n : 1) * sizeof *ns->v);
      if (!p) return oom();
      ns->v = p;
    }
    sqlite3_reset(count);
    bind_text(count, 1, run_id);
    bind_text(count, 2, name);
    if (row(s, count) < 0) return -1;
    ns->v[i].name = name;
    ns->v[i].next = sqlite3_column_int64(count, 0);
    ns->n++;
    ns->slots[j] = ns->n;
  }
  int64_t st = step >= 0 ? step : ns->v[i].next;
  if (st > KS_STEP_MAX) st = KS_STEP_MAX;
  *out = st;
  if (st + 1 > ns->v[i].next) ns->v[i].next = st + 1;
  return 0;
}

/* A point of rank > 0 (distributed runs) into metric_ranks; its implicit
 * step is one past that rank's last of that name. */
static int sq_ingest_ranked(sq_store *s, sqlite3_stmt **ins, sqlite3_stmt **next, const char *run_id,
                            const kp_metric_point *p) {
  if (!*ins && prep(s, ins, "INSERT INTO metric_ranks(run_id, rank, name, step, ts, value) VALUES(?,?,?,?,?,?)") != 0)
    return -1;
  int64_t step = p->step;
  if (step < 0) {
    if (!*next && prep(s, next,
                       "SELECT coalesce(min(max(step), 9007199254740990)+1, 0) FROM metric_ranks"
                       " WHERE run_id=? AND rank=? AND name=?") != 0)
      return -1;
    sqlite3_reset(*next);
    bind_text(*next, 1, run_id);
    sqlite3_bind_int(*next, 2, p->rank);
    bind_text(*next, 3, p->name);
    if (row(s, *next) < 0) return -1;
    step = sqlite3_column_int64(*next, 0);
  }
  if (step > KS_STEP_MAX) step = KS_STEP_MAX;
  sqlite3_reset(*ins);
  bind_text(*ins, 1, run_id);
  sqlite3_bind_int(*ins, 2, p->rank);
  bind_text(*ins, 3, p->name);
  sqlite3_bind_int64(*ins, 4, step);
  sqlite3_bind_double(*ins, 5, p->time);
  if (isnan(p->value)) sqlite3_bind_null(*ins, 6);
  else sqlite3_bind_double(*ins, 6, p->value);
  return done(s, *ins);
}

static int sq_metrics_ingest(kp_store *base, const char *run_id, const kp_ingest_batch *b) {
  sq_store *s = SQ(base);
  if (b->to < b->from) return kp_store_fail(KP_STORE_EINVAL, "a batch cannot end (%llu) before it starts (%llu)",
                                             (unsigned long long)b->to, (unsigned long long)b->from);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *off = NULL, *ins = NULL, *count = NULL, *latest = NULL, *rins = NULL, *rnext = NULL;
  next_steps ns = {0};
  if (prep(s, &off, "SELECT channel_offset FROM runs WHERE id=?") != 0) goto out;
  bind_text(off, 1, run_id);
  int r = row(s, off);
  if (r < 0) goto out;
  if (r == 0) { kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", run_id); goto out; }
  uint64_t at = (uint64_t)sqlite3_column_int64(off, 0);
  sqlite3_finalize(off);
  off = NULL;
  if (at != b->from) {
    kp_store_fail(KP_STORE_ECONFLICT, "run %s: the batch starts at offset %llu, the store is at %llu", run_id,
                  (unsigned long long)b->from, (unsigned long long)at);
    goto out;
  }
  if (prep(s, &ins, "INSERT INTO metrics(run_id, name, step, ts, value) VALUES(?,?,?,?,?)") != 0 ||
      prep(s, &count, "SELECT coalesce(min(max(step), 9007199254740990)+1, 0) FROM metrics WHERE run_id=? AND name=?") != 0)
    goto out;
  for (size_t i = 0; i < b->npoints; i++) {
    const kp_metric_point *p = &b->points[i];
    int64_t step = 0;
    if (!p->name || !*p->name) { kp_store_fail(KP_STORE_EINVAL, "a metric needs a name"); goto out; }
    if (p->rank < 0) { kp_store_fail(KP_STORE_EINVAL, "metric '%s': rank %d is negative", p->name, p->rank); goto out; }
    if (p->rank > 0) {
      if (sq_ingest_ranked(s, &rins, &rnext, run_id, p) != 0) goto out;
      continue;
    }
    if (step_for(s, count, &ns, run_id, p->name, p->step, &step) != 0) goto out;
    sqlite3_reset(ins);
    bind_text(ins, 1, run_id);
    bind_text(ins, 2, p->name);
    sqlite3_bind_int64(ins, 3, step);
    sqlite3_bind_double(ins, 4, p->time);
    if (isnan(p->value)) sqlite3_bind_null(ins, 5);
    else sqlite3_bind_double(ins, 5, p->value);
    if (done(s, ins) != 0) goto out;
  }
  /* run search: each metric's latest point, once per metric of the batch */
  if (ns.n && prep(s, &latest,
                   "INSERT INTO metric_latest(run_id, name, step, mid, value)"
                   " SELECT run_id, name, step, id, value FROM metrics WHERE run_id = ?1 AND name = ?2"
                   " ORDER BY step DESC, id DESC LIMIT 1"
                   " ON CONFLICT(run_id, name) DO UPDATE SET step = excluded.step, mid = excluded.mid, value = excluded.value") != 0)
    goto out;
  for (size_t i = 0; i < ns.n; i++) {
    sqlite3_reset(latest);
    bind_text(latest, 1, run_id);
    bind_text(latest, 2, ns.v[i].name);
    if (done(s, latest) != 0) goto out;
  }
  for (size_t i = 0; i < b->ntags; i++)
    if (set_tag(s, run_id, b->tag_keys[i], b->tag_values[i]) != 0) goto out;
  if (prep(s, &off, "UPDATE runs SET channel_offset=? WHERE id=?") != 0) goto out;
  sqlite3_bind_int64(off, 1, (sqlite3_int64)b->to);
  bind_text(off, 2, run_id);
  if (done(s, off) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(off);
  sqlite3_finalize(ins);
  sqlite3_finalize(count);
  sqlite3_finalize(latest);
  sqlite3_finalize(rins);
  sqlite3_finalize(rnext);
  free(ns.v);
  free(ns.slots);
  return tx_end(s, own, rc);
}

static int sq_metric_series(kp_store *base, const char *run_id, const char *name, kp_metric_point **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT step, ts, value FROM metrics WHERE run_id=? AND name=? ORDER BY step, id") != 0) return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, name);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 64) != 0) { r = oom(); break; }
    kp_metric_point *p = &(*out)[(*n)++];
    p->name = NULL;
    p->step = sqlite3_column_int64(st, 0);
    p->time = sqlite3_column_double(st, 1);
    p->value = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
  }
  sqlite3_finalize(st);
  if (r == 0 && *n == 0) r = kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no metric named '%s'", run_id, name);
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int strings(sq_store *s, sqlite3_stmt *st, char ***out, size_t *n);

static int sq_metric_exists(kp_store *base, const char *name, int *yes) {
  int r = exists1(SQ(base), "SELECT 1 FROM metrics WHERE name=? LIMIT 1", name);
  if (r < 0) return -1;
  *yes = r;
  return 0;
}

static int sq_metric_latest_value(kp_store *base, const char *run_id, const char *name, double *value, int *found) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT value FROM metrics WHERE run_id=?1 AND name=?2 ORDER BY step DESC, id DESC LIMIT 1") != 0) return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, name);
  int r = row(s, st);
  if (r > 0) *value = sqlite3_column_type(st, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 0);
  sqlite3_finalize(st);
  if (r < 0) return -1;
  *found = r;
  return 0;
}

static int sq_metric_follow(kp_store *base, const char *run_id, const char *name, int64_t *cursor, kp_metric_latest *out,
                            int *found) {
  sq_store *s = SQ(base);
  *found = 0;
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st;
  if (*cursor < 0) {
    /* this run's newest row so far (one look through its index entries) */
    if (prep(s, &st, "SELECT coalesce(max(id), 0) FROM metrics WHERE run_id=?1 AND (?2 IS NULL OR name=?2)") != 0) return -1;
    bind_text(st, 1, run_id);
    bind_text(st, 2, name);
    int r = row(s, st);
    sqlite3_int64 last = r > 0 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (r < 0) return -1;
    *cursor = last ? last - 1 : 0;
  }
  /* only rows added since the cursor are read (by id), so a run with
   * millions of values costs nothing per poll */
  sqlite3_int64 top = 0;
  if (prep(s, &st, "SELECT coalesce(max(id), 0) FROM metrics") != 0) return -1;
  int r = row(s, st);
  if (r > 0) top = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (r < 0) return -1;
  if (top <= *cursor) return 0;
  if (prep(s, &st, "SELECT name, step, value FROM metrics WHERE id > ?1 AND id <= ?2 AND +run_id = ?3"
                   " AND (?4 IS NULL OR name = ?4) ORDER BY id DESC LIMIT 1") != 0)
    return -1;
  sqlite3_bind_int64(st, 1, *cursor);
  sqlite3_bind_int64(st, 2, top);
  bind_text(st, 3, run_id);
  bind_text(st, 4, name);
  r = row(s, st);
  if (r > 0) {
    out->name = col_dup(st, 0);
    out->step = sqlite3_column_int64(st, 1);
    out->value = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
    *found = 1;
  }
  sqlite3_finalize(st);
  if (r < 0) return -1;
  *cursor = top;
  return 0;
}

static int sq_run_sweep_spec(kp_store *base, const char *run_id, char **spec) {
  sq_store *s = SQ(base);
  *spec = NULL;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT w.spec FROM runs r JOIN sweeps w ON w.run_id=r.parent_id WHERE r.id=?") != 0) return -1;
  bind_text(st, 1, run_id);
  int r = row(s, st);
  if (r > 0) *spec = col_dup(st, 0);
  sqlite3_finalize(st);
  return r < 0 ? -1 : 0;
}

static int sq_metrics_latest(kp_store *base, const char *run_id, kp_metric_latest **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT name, value, step FROM metrics m WHERE run_id=?1 AND id=(SELECT id FROM metrics x"
           " WHERE x.run_id=?1 AND x.name=m.name ORDER BY step DESC, id DESC LIMIT 1) ORDER BY name") != 0)
    return -1;
  bind_text(st, 1, run_id);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    kp_metric_latest *m = &(*out)[(*n)++];
    m->name = col_dup(st, 0);
    m->value = sqlite3_column_type(st, 1) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 1);
    m->step = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_metric_latest_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_metric_names(kp_store *base, const char *run_id, char ***out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT DISTINCT name FROM metrics WHERE run_id=? ORDER BY name") != 0) return -1;
  bind_text(st, 1, run_id);
  return strings(s, st, out, n);
}

/* ---- distributed runs: metrics per rank ------------------------------------------- */
static int sq_metric_series_rank(kp_store *base, const char *run_id, const char *name, int rank, kp_metric_point **out,
                                 size_t *n) {
  if (rank < 0) return kp_store_fail(KP_STORE_EINVAL, "rank %d is negative", rank);
  if (rank == 0) return sq_metric_series(base, run_id, name, out, n);
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT step, ts, value FROM metric_ranks WHERE run_id=? AND rank=? AND name=? ORDER BY step, id") != 0)
    return -1;
  bind_text(st, 1, run_id);
  sqlite3_bind_int(st, 2, rank);
  bind_text(st, 3, name);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 64) != 0) { r = oom(); break; }
    kp_metric_point *p = &(*out)[(*n)++];
    *p = (kp_metric_point){.step = sqlite3_column_int64(st, 0), .time = sqlite3_column_double(st, 1), .rank = rank};
    p->value = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
  }
  sqlite3_finalize(st);
  if (r == 0 && *n == 0) r = kp_store_fail(KP_STORE_ENOTFOUND, "rank %d of run %s logged no metric named '%s'", rank, run_id, name);
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_metric_names_rank(kp_store *base, const char *run_id, int rank, char ***out, size_t *n) {
  if (rank < 0) return kp_store_fail(KP_STORE_EINVAL, "rank %d is negative", rank);
  if (rank == 0) return sq_metric_names(base, run_id, out, n);
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT DISTINCT name FROM metric_ranks WHERE run_id=? AND rank=? ORDER BY name") != 0) return -1;
  bind_text(st, 1, run_id);
  sqlite3_bind_int(st, 2, rank);
  return strings(s, st, out, n);
}

/* ---- models -------------------------------------------------------------------- */
static int sq_model_version_create(kp_store *base, const kp_model_new *m, int64_t *version) {
  sq_store *s = SQ(base);
  if (!m->name || !*m->name || !m->path) return kp_store_fail(KP_STORE_EINVAL, "a model version needs a name and a path");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (m->run_id && run_exists(s, m->run_id) <= 0) goto out;
  if (prep(s, &st, "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name=?") != 0) goto out;
  bind_text(st, 1, m->name);
  if (row(s, st) <= 0) goto out;
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (prep(s, &st, "INSERT INTO models(name, version, run_id, path, description, created) VALUES(?,?,?,?,?,?)") != 0) goto out;
  bind_text(st, 1, m->name);
  sqlite3_bind_int64(st, 2, v);
  bind_text(st, 3, m->run_id);
  bind_text(st, 4, m->path);
  bind_text(st, 5, m->description ? m->description : "");
  sqlite3_bind_double(st, 6, now());
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  sqlite3_int64 mid = sqlite3_last_insert_rowid(s->db);
  if (prep(s, &st, "INSERT INTO model_files(model_id, path, size, sha256) VALUES(?,?,?,?)") != 0) goto out;
  for (size_t i = 0; i < m->nfiles; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, mid);
    bind_text(st, 2, m->files[i].path);
    sqlite3_bind_int64(st, 3, m->files[i].size);
    bind_text(st, 4, m->files[i].sha256);
    if (done(s, st) != 0) goto out;
  }
  sqlite3_finalize(st);
  if (prep(s, &st, "INSERT OR REPLACE INTO model_tags(model_id, key, value) VALUES(?,?,?)") != 0) goto out;
  for (size_t i = 0; i < m->ntags; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, mid);
    bind_text(st, 2, m->tag_keys[i]);
    bind_text(st, 3, m->tag_values[i]);
    if (done(s, st) != 0) goto out;
  }
  *version = v;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}


/* Collects (path, sha256, size) rows into files. */
static int stored_files(sq_store *s, sqlite3_stmt *st, kp_stored_file **out, size_t *n) {
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    kp_stored_file *f = &(*out)[(*n)++];
    f->path = col_dup(st, 0);
    f->sha256 = col_dup(st, 1);
    f->size = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_stored_files_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_run_files_list(kp_store *base, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT path, sha256, size FROM files WHERE run_id=?1 AND (?2 IS NULL OR path=?2"
                   " OR substr(path, 1, length(?2)+1)=?2||'/') ORDER BY path") != 0)
    return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, prefix);
  return stored_files(s, st, out, n);
}

/* The id of model version 'name':'version' (0: the latest); ENOTFOUND. */
static int model_id(sq_store *s, const char *name, int64_t version, sqlite3_int64 *id, int64_t *got) {
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT id, version FROM models WHERE name=?1 AND (?2=0 OR version=?2) ORDER BY version DESC LIMIT 1") != 0)
    return -1;
  bind_text(st, 1, name);
  sqlite3_bind_int64(st, 2, version);
  int r = row(s, st);
  if (r > 0) {
    *id = sqlite3_column_int64(st, 0);
    if (got) *got = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  if (r < 0) return -1;
  if (r == 0) {
    if (version) return kp_store_fail(KP_STORE_ENOTFOUND, "model '%s' has no version %lld", name, (long long)version);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no model named '%s' is registered", name);
  }
  return 0;
}

#define MODEL_COLS "SELECT id, name, version, run_id, path, description, created FROM models"

/* Fills 'm' from a MODEL_COLS row, with its files and tags. */
static int model_from_row(sq_store *s, sqlite3_stmt *row_st, kp_model *m) {
  memset(m, 0, sizeof *m);
  sqlite3_int64 id = sqlite3_column_int64(row_st, 0);
  m->name = col_dup(row_st, 1);
  m->version = sqlite3_column_int64(row_st, 2);
  m->run_id = col_dup_or_null(row_st, 3);
  m->path = col_dup(row_st, 4);
  m->description = col_dup(row_st, 5);
  m->created = col_time(row_st, 6);
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT path, sha256, size FROM model_files WHERE model_id=? ORDER BY path") != 0) return -1;
  sqlite3_bind_int64(st, 1, id);
  if (stored_files(s, st, &m->files, &m->nfiles) != 0) return -1;
  if (prep(s, &st, "SELECT key, value FROM model_tags WHERE model_id=? ORDER BY key") != 0) return -1;
  sqlite3_bind_int64(st, 1, id);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(m->tags, m->ntags, cap, 8) != 0) { r = oom(); break; }
    m->tags[m->ntags].key = col_dup(st, 0);
    m->tags[m->ntags].value = col_dup(st, 1);
    m->ntags++;
  }
  sqlite3_finalize(st);
  return r < 0 ? -1 : 0;
}

static int sq_model_get(kp_store *base, const char *name, int64_t version, kp_model *out) {
  sq_store *s = SQ(base);
  memset(out, 0, sizeof *out);
  sqlite3_int64 id;
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, MODEL_COLS " WHERE id=?") != 0) return -1;
  sqlite3_bind_int64(st, 1, id);
  int r = row(s, st), rc = -1;
  if (r > 0) rc = model_from_row(s, st, out);
  else if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no model named '%s' is registered", name);
  sqlite3_finalize(st);
  if (rc != 0) kp_model_free(out);
  return rc;
}

static int sq_model_list(kp_store *base, const char *name, kp_model **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, MODEL_COLS " WHERE ?1 IS NULL OR name=?1 ORDER BY name, version") != 0) return -1;
  bind_text(st, 1, name);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    if (model_from_row(s, st, &(*out)[(*n)++]) != 0) { r = -1; break; }
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_models_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_model_services(kp_store *base, const char *name, int64_t version, char ***out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_int64 id;
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT name FROM services WHERE model_id=? ORDER BY name") != 0) return -1;
  sqlite3_bind_int64(st, 1, id);
  return strings(s, st, out, n);
}

static int sq_model_delete(kp_store *base, const char *name, int64_t version) {
  sq_store *s = SQ(base);
  sqlite3_int64 id;
  if (version <= 0) return kp_store_fail(KP_STORE_EINVAL, "say which version of '%s' to delete", name);
  if (model_id(s, name, version, &id, NULL) != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "DELETE FROM models WHERE id=?") != 0) return -1;
  sqlite3_bind_int64(st, 1, id);
  int rc = done(s, st);
  sqlite3_finalize(st);
  return rc;
}

static int sq_model_tags_set(kp_store *base, const char *name, int64_t version, const char *const *keys,
                             const char *const *values, size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_int64 id;
  sqlite3_stmt *st = NULL;
  if (model_id(s, name, version, &id, NULL) != 0) goto out;
  if (prep(s, &st, "INSERT OR REPLACE INTO model_tags(model_id, key, value) VALUES(?,?,?)") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!keys[i] || !*keys[i] || !values[i]) { kp_store_fail(KP_STORE_EINVAL, "a tag needs a key and a value"); goto out; }
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, keys[i]);
    bind_text(st, 3, values[i]);
    if (done(s, st) != 0) goto out;
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_model_tags_remove(kp_store *base, const char *name, int64_t version, const char *const *keys, size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_int64 id;
  int64_t got = version;
  sqlite3_stmt *st = NULL;
  if (model_id(s, name, version, &id, &got) != 0) goto out;
  if (prep(s, &st, "DELETE FROM model_tags WHERE model_id=? AND key=?") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, keys[i]);
    if (done(s, st) != 0) goto out;
    if (sqlite3_changes(s->db) == 0) {
      kp_store_fail(KP_STORE_ENOTFOUND, "model %s:%lld has no tag '%s'; nothing was removed", name, (long long)got, keys[i]);
      goto out;
    }
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}
/* ---- run search ------------------------------------------------------------------ */
/* Filters (filter.h) compile into SQL with '?' parameters; every value and
 * name a user wrote is bound, never pasted into the text. What makes them
 * fast is migration 6: metric_latest (each run's latest value of each
 * metric, kept by sq_metrics_ingest), params with a numeric shadow column,
 * and indexes by name and value. Pages are keyset pages: the token holds the
 * last run's order value and seq, signed (HMAC-SHA256) with the store's
 * page_token_key together with the search it belongs to. */
typedef struct sbind {
  char type;  /* 't' text, 'r' real, 'i' integer, 'n' null */
  const char *text;
  double real;
  int64_t integer;
} sbind;

typedef struct squery {
  char *sql;
  size_t len, cap;
  sbind *b;
  size_t nb, capb;
  char **owned;  /* strings the binds point to */
  size_t nowned;
  int oom;
  double now;
} squery;

static void sq_add(squery *q, const char *t) {
  size_t l = strlen(t);
  if (q->oom) return;
  if (q->len + l + 1 > q->cap) {
    size_t cap = q->cap ? q->cap : 1024;
    while (q->len + l + 1 > cap) cap *= 2;
    char *p = realloc(q->sql, cap);
    if (!p) { q->oom = 1; return; }
    q->sql = p;
    q->cap = cap;
  }
  memcpy(q->sql + q->len, t, l + 1);
  q->len += l;
}

static sbind *sq_bind(squery *q, char type) {
  if (q->oom) return NULL;
  if (GROW(q->b, q->nb, q->capb, 16) != 0) { q->oom = 1; return NULL; }
  sbind *b = &q->b[q->nb++];
  memset(b, 0, sizeof *b);
  b->type = type;
  return b;
}

static void bind_t(squery *q, const char *text) {
  sbind *b = sq_bind(q, 't');
  if (b) b->text = text;
}

static void bind_r(squery *q, double v) {
  sbind *b = sq_bind(q, 'r');
  if (b) b->real = v;
}

static void bind_i(squery *q, int64_t v) {
  sbind *b = sq_bind(q, 'i');
  if (b) b->integer = v;
}

/* a string the query keeps until it is freed (NULL when out of memory) */
static const char *sq_own(squery *q, char *s) {
  if (!s) { q->oom = 1; return NULL; }
  char **p = realloc(q->owned, (q->nowned + 1) * sizeof *p);
  if (!p) { free(s); q->oom = 1; return NULL; }
  q->owned = p;
  q->owned[q->nowned++] = s;
  return s;
}

static void squery_free(squery *q) {
  free(q->sql);
  free(q->b);
  for (size_t i = 0; i < q->nowned; i++) free(q->owned[i]);
  free(q->owned);
}

static int squery_prepare(sq_store *s, squery *q, sqlite3_stmt **st) {
  if (q->oom) return oom();
  if (prep(s, st, q->sql) != 0) return -1;
  for (size_t i = 0; i < q->nb; i++) {
    const sbind *b = &q->b[i];
    int k = (int)i + 1;
    if (b->type == 't') bind_text(*st, k, b->text);
    else if (b->type == 'r') sqlite3_bind_double(*st, k, b->real);
    else if (b->type == 'i') sqlite3_bind_int64(*st, k, b->integer);
    else sqlite3_bind_null(*st, k);
  }
  return 0;
}

/* an attribute's column (r: runs, e: experiments); duration is no column */
static const char *attr_column(kp_filter_attr a) {
  switch (a) {
  case KP_ATTR_STATUS: return "r.status";
  case KP_ATTR_EXPERIMENT: return "e.name";
  case KP_ATTR_COMPUTE: return "r.compute";
  case KP_ATTR_CREATED: return "r.created";
  case KP_ATTR_STARTED: return "r.started";
  case KP_ATTR_ENDED: return "r.ended";
  case KP_ATTR_ID: return "r.id";
  case KP_ATTR_PARENT: return "r.parent_id";
  case KP_ATTR_DURATION: break;
  }
  return "NULL";
}

/* an attribute's SQL expression, with its parameters */
static void attr_expr(squery *q, kp_filter_attr a) {
  if (a != KP_ATTR_DURATION) {
    sq_add(q, attr_column(a));
    return;
  }
  sq_add(q, "(coalesce(r.ended, ?) - r.started)");
  bind_r(q, q->now);
}

/* A LIKE pattern (% _, \ escaping) as a GLOB pattern: GLOB is
 * case-sensitive, as LIKE is meant to be (SQLite's LIKE ignores case). */
static char *like_to_glob(const char *p) {
  char *g = malloc(strlen(p) * 3 + 1), *o = g;
  if (!g) return NULL;
  for (; *p; p++) {
    char c = *p;
    if (c == '\\' && p[1]) {
      c = *++p;
      if (c == '*' || c == '?' || c == '[') *o++ = '[', *o++ = c, *o++ = ']';
      else *o++ = c;
    } else if (c == '%') *o++ = '*';
    else if (c == '_') *o++ = '?';
    else if (c == '*' || c == '?' || c == '[') *o++ = '[', *o++ = c, *o++ = ']';
    else *o++ = c;
  }
  *o = '\0';
  return g;
}

static const char *const SQL_OPS[] = {" = ", " != ", " < ", " <= ", " > ", " >= "};

/* 'expr OP value' for the column(s) of a comparison: 'text' the text column,
 * 'num' a numeric one or NULL (numbers then compare with the text column as
 * written: tags) */
static void cmp_value(squery *q, const kp_filter *f, const kp_filter_value *v, kp_filter_op op, const char *text,
                      const char *num) {
  if (op == KP_FOP_IN) op = KP_FOP_EQ;
  switch (op) {
  case KP_FOP_LIKE:
  case KP_FOP_NOT_LIKE:
    sq_add(q, op == KP_FOP_NOT_LIKE ? "NOT (" : "(");
    sq_add(q, text);
    sq_add(q, " GLOB ?)");
    bind_t(q, sq_own(q, like_to_glob(v->text)));
    return;
  case KP_FOP_ILIKE:
  case KP_FOP_NOT_ILIKE:
    sq_add(q, op == KP_FOP_NOT_ILIKE ? "NOT (" : "(");
    sq_add(q, text);
    sq_add(q, " LIKE ? ESCAPE '\\')");
    bind_t(q, v->text);
    return;
  default: break;
  }
  if (v->is_number && num) {
    if (f->key.kind == KP_FILTER_PARAM) {
      sq_add(q, "(typeof(");
      sq_add(q, num);
      sq_add(q, ") IN ('integer','real') AND ");
    } else {
      sq_add(q, "(");
    }
    sq_add(q, num);
    sq_add(q, SQL_OPS[op]);
    sq_add(q, "?)");
    bind_r(q, v->number);
  } else {
    sq_add(q, "(");
    sq_add(q, text);
    sq_add(q, SQL_OPS[op]);
    sq_add(q, "?)");
    bind_t(q, v->text);
  }
}

/* the comparison over its values: one, or IN's list (any of them) */
static void cmp_values(squery *q, const kp_filter *f, const char *text, const char *num) {
  int in = f->op == KP_FOP_IN || f->op == KP_FOP_NOT_IN;
  if (!in) {
    cmp_value(q, f, &f->values[0], f->op, text, num);
    return;
  }
  sq_add(q, f->op == KP_FOP_NOT_IN ? "NOT (" : "(");
  for (size_t i = 0; i < f->nvalues; i++) {
    if (i) sq_add(q, " OR ");
    cmp_value(q, f, &f->values[i], KP_FOP_IN, text, num);
  }
  sq_add(q, ")");
}

static void compile_filter(squery *q, const kp_filter *f) {
  if (f->type != KP_FILTER_CMP) {
    sq_add(q, "(");
    compile_filter(q, f->left);
    sq_add(q, f->type == KP_FILTER_AND ? " AND " : " OR ");
    compile_filter(q, f->right);
    sq_add(q, ")");
    return;
  }
  switch (f->key.kind) {
  case KP_FILTER_METRIC:
    sq_add(q, "r.id IN (SELECT run_id FROM metric_latest WHERE name = ? AND ");
    bind_t(q, f->key.name);
    cmp_values(q, f, "value", "value");
    sq_add(q, ")");
    break;
  case KP_FILTER_PARAM:
    sq_add(q, "r.id IN (SELECT run_id FROM params WHERE key = ? AND ");
    bind_t(q, f->key.name);
    cmp_values(q, f, "value", "num");
    sq_add(q, ")");
    break;
  case KP_FILTER_TAG:
    sq_add(q, "r.id IN (SELECT run_id FROM tags WHERE key = ? AND ");
    bind_t(q, f->key.name);
    cmp_values(q, f, "value", NULL);
    sq_add(q, ")");
    break;
  case KP_FILTER_ATTR:
    if (f->key.attr == KP_ATTR_DURATION) {
      /* the expression binds 'now': written out once per value */
      int in = f->op == KP_FOP_IN || f->op == KP_FOP_NOT_IN;
      sq_add(q, f->op == KP_FOP_NOT_IN ? "NOT (" : "(");
      for (size_t i = 0; i < f->nvalues; i++) {
        if (i) sq_add(q, " OR ");
        sq_add(q, "(");
        attr_expr(q, f->key.attr);
        sq_add(q, SQL_OPS[in ? KP_FOP_EQ : f->op]);
        sq_add(q, "?)");
        bind_r(q, f->values[i].number);
      }
      sq_add(q, ")");
    } else {
      const char *col = attr_column(f->key.attr);
      cmp_values(q, f, col, kp_filter_attr_numeric(f->key.attr) ? col : NULL);
    }
    break;
  }
}

/* the order: a LEFT JOIN giving it (or none) and its expression */
typedef struct sorder {
  int has, desc;
  kp_filter_key key;
  const char *expr;  /* without parameters, except duration (attr_expr) */
} sorder;

static void order_join(squery *q, const sorder *o) {
  if (!o->has) return;
  switch (o->key.kind) {
  case KP_FILTER_METRIC: sq_add(q, " LEFT JOIN metric_latest ok ON ok.run_id = r.id AND ok.name = ?"); break;
  case KP_FILTER_PARAM: sq_add(q, " LEFT JOIN params ok ON ok.run_id = r.id AND ok.key = ?"); break;
  case KP_FILTER_TAG: sq_add(q, " LEFT JOIN tags ok ON ok.run_id = r.id AND ok.key = ?"); break;
  case KP_FILTER_ATTR: return;
  }
  bind_t(q, o->key.name);
}

static void order_expr(squery *q, const sorder *o) {
  if (o->key.kind == KP_FILTER_ATTR) {
    if (o->key.attr == KP_ATTR_ID) sq_add(q, "r.seq");  /* ids order by submission */
    else attr_expr(q, o->key.attr);
  } else {
    sq_add(q, o->key.kind == KP_FILTER_PARAM ? "ok.num" : "ok.value");
  }
}

/* ---- page tokens: hex(payload) "." hex(HMAC-SHA256(key, payload 0 search)) */
typedef struct page_pos {
  double now;
  int64_t seq;
  char type;  /* of the last run's order value: 'n' none, 'i', 'r', 't' */
  int64_t integer;
  double real;
  char *text;
} page_pos;

static int token_key(sq_store *s, char *key, size_t n) {
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT value FROM store_meta WHERE key = 'page_token_key'") != 0) return -1;
  int r = row(s, st);
  if (r > 0) snprintf(key, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (r == 0) return kp_store_fail(KP_STORE_EBACKEND, "store: no page token key (schema migration 6 missing)");
  return r < 0 ? -1 : 0;
}

/* the MAC of a payload for search 'q' (hex, 64 characters) */
static int token_mac(const char *key, const char *payload, size_t plen, const kp_run_search *q, char hex[65]) {
  const char *parts[] = {q->experiment ? q->experiment : "", q->filter ? q->filter : "", q->order_by ? q->order_by : ""};
  size_t n = plen + 3;
  for (int i = 0; i < 3; i++) n += strlen(parts[i]) + 1;
  char *m = malloc(n), *o = m;
  if (!m) return oom();
  memcpy(o, payload, plen);
  o += plen;
  for (int i = 0; i < 3; i++) {
    *o++ = '\0';
    *o++ = q->experiment && i == 0 ? 'y' : q->filter && i == 1 ? 'y' : q->order_by && i == 2 ? 'y' : 'n';
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

static char *token_make(sq_store *s, const kp_run_search *q, const page_pos *p) {
  char key[128], head[128], mac[65];
  if (token_key(s, key, sizeof key) != 0) return NULL;
  if (p->type == 'i') snprintf(head, sizeof head, "1 %.17g %lld i %lld ", p->now, (long long)p->seq, (long long)p->integer);
  else if (p->type == 'r') snprintf(head, sizeof head, "1 %.17g %lld r %.17g ", p->now, (long long)p->seq, p->real);
  else snprintf(head, sizeof head, "1 %.17g %lld %c ", p->now, (long long)p->seq, p->type);
  size_t hl = strlen(head), tl = p->type == 't' ? strlen(p->text) : 0;
  char *payload = malloc(hl + tl + 1);
  if (!payload) return oom(), NULL;
  memcpy(payload, head, hl);
  if (tl) memcpy(payload + hl, p->text, tl);
  payload[hl + tl] = '\0';
  if (token_mac(key, payload, hl + tl, q, mac) != 0) { free(payload); return NULL; }
  char *t = malloc(2 * (hl + tl) + 1 + 64 + 1);
  if (!t) { free(payload); return oom(), NULL; }
  for (size_t i = 0; i < hl + tl; i++) snprintf(t + 2 * i, 3, "%02x", (unsigned char)payload[i]);
  t[2 * (hl + tl)] = '.';
  memcpy(t + 2 * (hl + tl) + 1, mac, 65);
  free(payload);
  return t;
}

static int bad_token(void) {
  return kp_store_fail(KP_STORE_EINVAL, "the page token is not one this search gave (altered, or from another "
                                        "filter, order or experiment)");
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int token_read(sq_store *s, const kp_run_search *q, const char *tok, page_pos *p) {
  memset(p, 0, sizeof *p);
  const char *dot = strchr(tok, '.');
  size_t hl = dot ? (size_t)(dot - tok) : 0;
  if (!dot || hl % 2 || hl == 0 || hl > 65536 || strlen(dot + 1) != 64) return bad_token();
  char *payload = malloc(hl / 2 + 1);
  if (!payload) return oom();
  for (size_t i = 0; i < hl / 2; i++) {
    int a = hexval(tok[2 * i]), b = hexval(tok[2 * i + 1]);
    if (a < 0 || b < 0) { free(payload); return bad_token(); }
    payload[i] = (char)(a * 16 + b);
  }
  payload[hl / 2] = '\0';
  char key[128], mac[65];
  if (token_key(s, key, sizeof key) != 0 || token_mac(key, payload, hl / 2, q, mac) != 0) { free(payload); return -1; }
  if (CRYPTO_memcmp(mac, dot + 1, 64) != 0) { free(payload); return bad_token(); }
  /* signed by this store for this search: well formed */
  long long seq = 0;
  int n = 0;
  char type = 0;
  if (sscanf(payload, "1 %lf %lld %c %n", &p->now, &seq, &type, &n) != 3 || n == 0) { free(payload); return bad_token(); }
  p->seq = seq;
  p->type = type;
  const char *v = payload + n;
  int ok = 1;
  if (type == 'i') { long long x; ok = sscanf(v, "%lld", &x) == 1; p->integer = x; }
  else if (type == 'r') ok = sscanf(v, "%lf", &p->real) == 1;
  else if (type == 't') ok = (p->text = strndup(v, hl / 2 - (size_t)n)) != NULL;
  else ok = type == 'n';
  free(payload);
  if (!ok) { free(p->text); p->text = NULL; return bad_token(); }
  return 0;
}

static int sq_run_search(kp_store *base, const kp_run_search *q, kp_run **out, size_t *n, char **next) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  *next = NULL;
  kp_filter *f = NULL;
  kp_filter_error fe;
  if (kp_filter_parse(q->filter, &f, &fe) != 0) return kp_store_fail(KP_STORE_EINVAL, "filter: %s", fe.message);
  sorder o = {0};
  if (q->order_by && *q->order_by) {
    if (kp_filter_parse_order(q->order_by, &o.key, &o.desc, &fe) != 0) {
      kp_filter_free(f);
      return kp_store_fail(KP_STORE_EINVAL, "order: %s", fe.message);
    }
    o.has = 1;
  }
  page_pos pp = {.now = now(), .type = 'n'};
  int have_pos = 0, rc = -1, own = 0;
  squery sq = {0};
  sqlite3_stmt *st = NULL;
  int64_t *seqs = NULL;
  size_t nseq = 0, cap = 0;
  if (q->page_token && *q->page_token) {
    if (token_read(s, q, q->page_token, &pp) != 0) goto out;
    have_pos = 1;
  }
  sq.now = pp.now;
  /* one read transaction: the page and its rows agree */
  own = sqlite3_get_autocommit(s->db) != 0;
  if (own && exec(s, "BEGIN") != 0) { own = 0; goto out; }
  sq_add(&sq, "SELECT r.seq");
  if (o.has) {
    sq_add(&sq, ", ");
    order_expr(&sq, &o);
  }
  sq_add(&sq, " FROM runs r JOIN experiments e ON e.id = r.experiment_id");
  order_join(&sq, &o);
  sq_add(&sq, " WHERE 1");
  if (q->experiment) {
    sq_add(&sq, " AND e.name = ?");
    bind_t(&sq, q->experiment);
  }
  if (f) {
    sq_add(&sq, " AND ");
    compile_filter(&sq, f);
  }
  if (have_pos && !o.has) {
    sq_add(&sq, " AND r.seq < ?");
    bind_i(&sq, pp.seq);
  } else if (have_pos && pp.type == 'n') {
    sq_add(&sq, " AND (");
    order_expr(&sq, &o);
    sq_add(&sq, ") IS NULL AND r.seq < ?");
    bind_i(&sq, pp.seq);
  } else if (have_pos) {
    /* after (v, seq) in (v IS NULL, v ASC|DESC, seq DESC) */
    for (int part = 0; part < 3; part++) {
      sq_add(&sq, part == 0 ? " AND ((" : part == 1 ? ") IS NULL OR (" : " OR ((");
      order_expr(&sq, &o);
      if (part == 0) continue;
      sq_add(&sq, part == 1 ? (o.desc ? ") < ?" : ") > ?") : ") = ? AND r.seq < ?))");
      if (pp.type == 'i') bind_i(&sq, pp.integer);
      else if (pp.type == 'r') bind_r(&sq, pp.real);
      else bind_t(&sq, pp.text);
      if (part == 2) bind_i(&sq, pp.seq);
    }
  }
  sq_add(&sq, " ORDER BY ");
  if (o.has) {
    sq_add(&sq, "(");
    order_expr(&sq, &o);
    sq_add(&sq, ") IS NULL, (");
    order_expr(&sq, &o);
    sq_add(&sq, o.desc ? ") DESC, " : ") ASC, ");
  }
  sq_add(&sq, "r.seq DESC LIMIT ?");
  bind_i(&sq, q->max_results > 0 && q->max_results < INT64_MAX ? q->max_results + 1 : -1);
  if (squery_prepare(s, &sq, &st) != 0) goto out;
  int r;
  page_pos last = {.now = pp.now, .type = 'n'};
  while ((r = row(s, st)) > 0) {
    if (q->max_results > 0 && (int64_t)nseq == q->max_results) {
      /* there is a next page: it starts after the last row taken */
      if (!(*next = token_make(s, q, &last))) r = -1;
      break;
    }
    if (GROW(seqs, nseq, cap, 64) != 0) { r = oom(); break; }
    seqs[nseq++] = sqlite3_column_int64(st, 0);
    last.seq = seqs[nseq - 1];
    free(last.text);
    last.text = NULL;
    int t = o.has ? sqlite3_column_type(st, 1) : SQLITE_NULL;
    last.type = t == SQLITE_INTEGER ? 'i' : t == SQLITE_FLOAT ? 'r' : t == SQLITE_NULL ? 'n' : 't';
    if (last.type == 'i') last.integer = sqlite3_column_int64(st, 1);
    else if (last.type == 'r') last.real = sqlite3_column_double(st, 1);
    else if (last.type == 't' && !(last.text = col_dup(st, 1))) { r = oom(); break; }
  }
  free(last.text);
  sqlite3_finalize(st);
  st = NULL;
  if (r < 0) goto out;
  if (nseq && !(*out = calloc(nseq, sizeof **out))) { oom(); goto out; }
  if (prep(s, &st, RUN_COLS " WHERE r.seq = ?") != 0) goto out;
  for (size_t i = 0; i < nseq; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, seqs[i]);
    if ((r = row(s, st)) < 0) goto out;
    if (r > 0) run_from_row(st, &(*out)[(*n)++]);
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  if (own) tx_end(s, 1, 0);
  if (rc != 0) {
    kp_runs_free(*out, *n);
    *out = NULL;
    *n = 0;
    free(*next);
    *next = NULL;
  }
  squery_free(&sq);
  free(seqs);
  free(pp.text);
  kp_filter_free(f);
  kp_filter_key_clear(&o.key);
  return rc;
}

static int sq_run_params_set(kp_store *base, const char *run_id, const char *const *keys, const char *const *values,
                             size_t n) {
  sq_store *s = SQ(base);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (run_exists(s, run_id) <= 0) goto out;
  /* num: the same text in a NUMERIC column, which keeps it as a number when
   * it is one (so params compare and order as numbers), else as text */
  if (prep(s, &st, "INSERT OR REPLACE INTO params(run_id, key, value, num) VALUES(?1, ?2, ?3, ?3)") != 0) goto out;
  for (size_t i = 0; i < n; i++) {
    if (!keys[i] || !*keys[i] || !values[i]) { kp_store_fail(KP_STORE_EINVAL, "a param needs a key and a value"); goto out; }
    sqlite3_reset(st);
    bind_text(st, 1, run_id);
    bind_text(st, 2, keys[i]);
    bind_text(st, 3, values[i]);
    if (done(s, st) != 0) goto out;
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_run_params(kp_store *base, const char *run_id, kp_tag **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT key, value FROM params WHERE run_id = ? ORDER BY key") != 0) return -1;
  bind_text(st, 1, run_id);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 8) != 0) { r = oom(); break; }
    (*out)[*n].key = col_dup(st, 0);
    (*out)[*n].value = col_dup(st, 1);
    (*n)++;
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_tags_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

/* ---- services ------------------------------------------------------------------- */
#define SERVICE_COLS                                                                                              \
  "SELECT name, state, model_name, model_version, entry_name, entry_sha256, host, port, coalesce(bound_port, 0),"  \
  " auth, workers, timeout, max_body, primary_key_sha256, secondary_key_sha256, error, coalesce(pid, 0),"         \
  " coalesce(pid_start, 0), created, started, stopped FROM services"

static void service_from_row(sqlite3_stmt *st, kp_service *o) {
  memset(o, 0, sizeof *o);
  o->name = col_dup(st, 0);
  o->state = KP_SERVICE_FAILED;
  kp_service_state_parse((const char *)sqlite3_column_text(st, 1), &o->state);
  o->model_name = col_dup(st, 2);
  o->model_version = sqlite3_column_int64(st, 3);
  o->entry_name = col_dup_or_null(st, 4);
  o->entry_sha256 = col_dup_or_null(st, 5);
  o->host = col_dup(st, 6);
  o->port = sqlite3_column_int(st, 7);
  o->bound_port = sqlite3_column_int(st, 8);
  o->auth = sqlite3_column_int(st, 9);
  o->workers = sqlite3_column_int(st, 10);
  o->timeout = sqlite3_column_int(st, 11);
  o->max_body = sqlite3_column_int64(st, 12);
  o->primary_key_sha256 = col_dup(st, 13);
  o->secondary_key_sha256 = col_dup(st, 14);
  o->error = col_dup_or_null(st, 15);
  o->pid = sqlite3_column_int64(st, 16);
  o->pid_start = (uint64_t)sqlite3_column_int64(st, 17);
  o->created = col_time(st, 18);
  o->started = col_time(st, 19);
  o->stopped = col_time(st, 20);
}

static int no_service(const char *name) {
  return kp_store_fail(KP_STORE_ENOTFOUND, "no service named '%s' in this workspace", name);
}

/* 1 when service 'name' exists, 0 when not (ENOTFOUND set), -1 on error */
static int service_exists(sq_store *s, const char *name) {
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT 1 FROM services WHERE name=?") != 0) return -1;
  bind_text(st, 1, name);
  int r = row(s, st);
  sqlite3_finalize(st);
  if (r == 0) no_service(name);
  return r;
}

/* Runs an UPDATE of one service (its name bound as ?1 by the caller):
 * 0, ENOTFOUND when no row changed because there is no such service, or 1
 * when the service exists but the statement's condition left it alone. */
static int service_update(sq_store *s, sqlite3_stmt *st, const char *name) {
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) > 0) return 0;
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

static int sq_service_create(kp_store *base, const kp_service_new *n) {
  sq_store *s = SQ(base);
  if (service_new_check(n, 1) != 0) return -1;
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_int64 mid;
  sqlite3_stmt *st = NULL;
  if (model_id(s, n->model_name, n->model_version, &mid, NULL) != 0) goto out;
  if (prep(s, &st,
           "INSERT INTO services(name, model_id, model_name, model_version, entry_name, entry_sha256, host, port,"
           " auth, workers, max_body, timeout, primary_key_sha256, secondary_key_sha256, state, created)"
           " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)") != 0)
    goto out;
  bind_text(st, 1, n->name);
  sqlite3_bind_int64(st, 2, mid);
  bind_text(st, 3, n->model_name);
  sqlite3_bind_int64(st, 4, n->model_version);
  bind_text(st, 5, n->entry_name);
  bind_text(st, 6, n->entry_sha256);
  bind_text(st, 7, n->host);
  sqlite3_bind_int(st, 8, n->port);
  sqlite3_bind_int(st, 9, n->auth);
  sqlite3_bind_int(st, 10, n->workers);
  sqlite3_bind_int64(st, 11, n->max_body);
  sqlite3_bind_int(st, 12, n->timeout);
  bind_text(st, 13, n->primary_key_sha256);
  bind_text(st, 14, n->secondary_key_sha256);
  bind_text(st, 15, kp_service_state_name(KP_SERVICE_STOPPED));
  sqlite3_bind_double(st, 16, now());
  if (sqlite3_step(st) != SQLITE_DONE) {
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
      kp_store_fail(KP_STORE_EEXISTS, "service '%s' already exists", n->name);
    else db_fail(s);
    goto out;
  }
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_service_redeploy(kp_store *base, const kp_service_new *n) {
  sq_store *s = SQ(base);
  if (service_new_check(n, 0) != 0) return -1;
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_int64 mid;
  sqlite3_stmt *st = NULL;
  if (model_id(s, n->model_name, n->model_version, &mid, NULL) != 0) goto out;
  if (prep(s, &st,
           "UPDATE services SET model_id=?2, model_name=?3, model_version=?4, entry_name=?5, entry_sha256=?6, host=?7,"
           " port=?8, auth=?9, workers=?10, max_body=?11, timeout=?12,"
           " bound_port=CASE WHEN ?8=0 THEN bound_port ELSE NULL END WHERE name=?1") != 0)
    goto out;
  bind_text(st, 1, n->name);
  sqlite3_bind_int64(st, 2, mid);
  bind_text(st, 3, n->model_name);
  sqlite3_bind_int64(st, 4, n->model_version);
  bind_text(st, 5, n->entry_name);
  bind_text(st, 6, n->entry_sha256);
  bind_text(st, 7, n->host);
  sqlite3_bind_int(st, 8, n->port);
  sqlite3_bind_int(st, 9, n->auth);
  sqlite3_bind_int(st, 10, n->workers);
  sqlite3_bind_int64(st, 11, n->max_body);
  sqlite3_bind_int(st, 12, n->timeout);
  rc = service_update(s, st, n->name);
  st = NULL;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_service_get(kp_store *base, const char *name, kp_service *out) {
  sq_store *s = SQ(base);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st;
  if (prep(s, &st, SERVICE_COLS " WHERE name=?") != 0) return -1;
  bind_text(st, 1, name);
  int r = row(s, st);
  if (r > 0) service_from_row(st, out);
  sqlite3_finalize(st);
  if (r == 0) return no_service(name);
  return r < 0 ? -1 : 0;
}

static int sq_service_list(kp_store *base, kp_service **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, SERVICE_COLS " ORDER BY name") != 0) return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 8) != 0) { r = oom(); break; }
    service_from_row(st, &(*out)[(*n)++]);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_services_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_service_model(kp_store *base, const char *name, kp_model *out, int *found) {
  sq_store *s = SQ(base);
  memset(out, 0, sizeof *out);
  *found = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, MODEL_COLS " WHERE id=(SELECT model_id FROM services WHERE name=?1)") != 0) return -1;
  bind_text(st, 1, name);
  int r = row(s, st), rc = 0;
  if (r > 0) {
    rc = model_from_row(s, st, out);
    *found = rc == 0;
  }
  sqlite3_finalize(st);
  if (r < 0 || rc != 0) {
    kp_model_free(out);
    return -1;
  }
  if (r == 0 && service_exists(s, name) <= 0) return -1;
  return 0;
}

static int sq_service_set_keys(kp_store *base, const char *name, const char *primary_sha256, const char *secondary_sha256) {
  sq_store *s = SQ(base);
  if (!is_sha256_hex(primary_sha256) || !is_sha256_hex(secondary_sha256))
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a key's sha256 is 64 lowercase hex digits", name);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET primary_key_sha256=?2, secondary_key_sha256=?3 WHERE name=?1") != 0) return -1;
  bind_text(st, 1, name);
  bind_text(st, 2, primary_sha256);
  bind_text(st, 3, secondary_sha256);
  return service_update(s, st, name) == 0 ? 0 : -1;
}

static int sq_service_starting(kp_store *base, const char *name) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET state='Starting', pid=NULL, pid_start=NULL, error=NULL, stopped=NULL"
                   " WHERE name=?1") != 0)
    return -1;
  bind_text(st, 1, name);
  return service_update(s, st, name) == 0 ? 0 : -1;
}

static int sq_service_start_failed(kp_store *base, const char *name, const char *error) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET state='Failed', error=coalesce(error, ?2), stopped=?3"
                   " WHERE name=?1 AND state='Starting'") != 0)
    return -1;
  bind_text(st, 1, name);
  bind_text(st, 2, error);
  sqlite3_bind_double(st, 3, now());
  return service_update(s, st, name) < 0 ? -1 : 0;
}

static int sq_service_running(kp_store *base, const char *name, int64_t pid, uint64_t pid_start, int port) {
  sq_store *s = SQ(base);
  if (pid <= 0 || port <= 0 || port > 65535)
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a running server needs its process and port", name);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET state='Running', pid=?2, pid_start=?3, bound_port=?4, started=?5, error=NULL"
                   " WHERE name=?1") != 0)
    return -1;
  bind_text(st, 1, name);
  sqlite3_bind_int64(st, 2, pid);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)pid_start);
  sqlite3_bind_int(st, 4, port);
  sqlite3_bind_double(st, 5, now());
  return service_update(s, st, name) == 0 ? 0 : -1;
}

static int sq_service_stopped(kp_store *base, const char *name) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET state='Stopped', pid=NULL, pid_start=NULL, stopped=coalesce(stopped, ?2)"
                   " WHERE name=?1") != 0)
    return -1;
  bind_text(st, 1, name);
  sqlite3_bind_double(st, 2, now());
  return service_update(s, st, name) == 0 ? 0 : -1;
}

static int sq_service_exited(kp_store *base, const char *name, int64_t pid, kp_service_state to, const char *error) {
  sq_store *s = SQ(base);
  if (to != KP_SERVICE_STOPPED && to != KP_SERVICE_FAILED)
    return kp_store_fail(KP_STORE_EINVAL, "service %s: a server ends Stopped or Failed, not %s", name, kp_service_state_name(to));
  sqlite3_stmt *st;
  if (prep(s, &st, "UPDATE services SET state=?2, error=?3, stopped=?4 WHERE name=?1 AND (pid IS NULL OR pid=?5)") != 0)
    return -1;
  bind_text(st, 1, name);
  bind_text(st, 2, kp_service_state_name(to));
  bind_text(st, 3, error);
  sqlite3_bind_double(st, 4, now());
  sqlite3_bind_int64(st, 5, pid);
  int r = service_update(s, st, name);
  if (r == 1)
    return kp_store_fail(KP_STORE_ECONFLICT, "service %s is recorded with another server process than %lld", name,
                         (long long)pid);
  return r;
}

static int sq_service_delete(kp_store *base, const char *name) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "DELETE FROM services WHERE name=?1") != 0) return -1;
  bind_text(st, 1, name);
  return service_update(s, st, name) == 0 ? 0 : -1;
}

int kp_store_sqlite_service_keys_migrate(kp_store *base, kp_service_keys_save save, void *ctx) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st = NULL, *up = NULL;
  if (prep(s, &st, "SELECT count(*) FROM pragma_table_info('services') WHERE name='primary_key'") != 0) return -1;
  int old = row(s, st) > 0 ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  st = NULL;
  if (old <= 0) return old;
  if (exec(s, "ALTER TABLE services RENAME COLUMN primary_key TO primary_key_sha256;"
              "ALTER TABLE services RENAME COLUMN secondary_key TO secondary_key_sha256;") != 0)
    return -1;
  /* the plain keys' bytes do not stay behind in freed pages of the store */
  int rc = exec(s, "PRAGMA secure_delete=ON");
  if (rc == 0 && (prep(s, &st, "SELECT name, primary_key_sha256, secondary_key_sha256 FROM services") != 0 ||
                  prep(s, &up, "UPDATE services SET primary_key_sha256=?2, secondary_key_sha256=?3 WHERE name=?1") != 0))
    rc = -1;
  int r = 0;
  while (rc == 0 && (r = row(s, st)) > 0) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    char h1[65] = "", h2[65] = "";
    kp_store_clear_error();
    if (save(ctx, name, (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2), h1, h2) != 0) {
      if (kp_store_last_error()->code == KP_STORE_OK)
        kp_store_fail(KP_STORE_EINVAL, "the keys of service %s could not be kept out of the store", name);
      rc = -1;
      break;
    }
    sqlite3_reset(up);
    bind_text(up, 1, name);
    bind_text(up, 2, h1);
    bind_text(up, 3, h2);
    rc = done(s, up);
  }
  if (r < 0) rc = -1;
  sqlite3_finalize(up);
  sqlite3_finalize(st);
  if (rc == 0) rc = exec(s, "PRAGMA secure_delete=OFF");
  return rc;
}

/* ---- sweeps ---------------------------------------------------------------------- */
/* 1 when sweep 'id' exists, 0 when not (ENOTFOUND set), -1 on error */
static int sweep_exists(sq_store *s, const char *id) {
  int r = exists1(s, "SELECT 1 FROM sweeps WHERE run_id=?", id);
  if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
  return r;
}

/* A text column, NULL for SQL NULL (the trial collector's cheaper col_dup_or_null). */
static char *text_or_null(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? strdup((const char *)t) : NULL;
}

/* The error for an update of trial 'idx' that matched no row. */
static int trial_missing(sq_store *s, const char *id, int64_t idx) {
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ENOTFOUND, "sweep %s has no trial %lld", id, (long long)idx);
}

static int sq_sweep_create(kp_store *base, const kp_sweep_new *w, char *id, size_t idn) {
  sq_store *s = SQ(base);
  if (!w->experiment || !*w->experiment || !w->compute || !*w->compute || !w->spec || !*w->spec || !w->source ||
      !w->entry || !w->snapshot)
    return kp_store_fail(KP_STORE_EINVAL, "a sweep needs an experiment, a compute target, a source, an entry, a snapshot"
                                          " and its sweep file");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  int r = exists1(s, "SELECT 1 FROM computes WHERE name=?", w->compute);
  if (r <= 0) {
    if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", w->compute);
    goto out;
  }
  if (prep(s, &st, "INSERT OR IGNORE INTO experiments(name, created) VALUES(?, ?)") != 0) goto out;
  bind_text(st, 1, w->experiment);
  sqlite3_bind_double(st, 2, now());
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  if (prep(s, &st,
           "INSERT INTO runs(experiment_id, status, compute, source, entry, args, snapshot, snapshot_bytes,"
           " env_json, created, started) VALUES((SELECT id FROM experiments WHERE name=?1),"
           " ?10, 'sweep:'||?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)") != 0)
    goto out;
  bind_text(st, 1, w->experiment);
  bind_text(st, 2, w->compute);
  bind_text(st, 3, w->source);
  bind_text(st, 4, w->entry);
  bind_text(st, 5, w->args_json ? w->args_json : "[]");
  bind_text(st, 6, w->snapshot);
  sqlite3_bind_int64(st, 7, (sqlite3_int64)w->snapshot_bytes);
  bind_text(st, 8, w->env_json);
  sqlite3_bind_double(st, 9, now());
  bind_text(st, 10, kp_run_status_name(KP_RUN_RUNNING));
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  sqlite3_int64 seq = sqlite3_last_insert_rowid(s->db);
  snprintf(id, idn, "%s_%lld", w->experiment, (long long)seq);
  if (prep(s, &st, "UPDATE runs SET id=? WHERE seq=?") != 0) goto out;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, seq);
  if (done(s, st) != 0) goto out;
  sqlite3_finalize(st);
  if (prep(s, &st, "INSERT INTO sweeps(run_id, spec, env_json, created) VALUES(?,?,?,?)") != 0) goto out;
  bind_text(st, 1, id);
  bind_text(st, 2, w->spec);
  bind_text(st, 3, w->env_json);
  sqlite3_bind_double(st, 4, now());
  if (done(s, st) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

/* a sweep: its parent run's columns (RUN_COLS), then those of the sweep */
#define SWEEP_COLS                                                                                  \
  "SELECT x.*, w.spec, w.env_json, w.stop_reason,"                                                  \
  " (SELECT count(*) FROM sweep_trials t WHERE t.sweep_id=w.run_id),"                               \
  " (SELECT value FROM tags g WHERE g.run_id=w.run_id AND g.key='best_child_run_id')"               \
  " FROM sweeps w JOIN (" RUN_COLS ") x ON x.id=w.run_id"
#define SWEEP_COL0 29  /* the first column after the run's */

static void sweep_from_row(sqlite3_stmt *st, kp_sweep *w) {
  memset(w, 0, sizeof *w);
  run_from_row(st, &w->run);
  const char *c = w->run.compute ? w->run.compute : "";
  w->compute = strdup(strncmp(c, "sweep:", 6) ? c : c + 6);
  w->spec = col_dup(st, SWEEP_COL0);
  w->env_json = col_dup_or_null(st, SWEEP_COL0 + 1);
  w->stop_reason = col_dup_or_null(st, SWEEP_COL0 + 2);
  w->trials = sqlite3_column_int64(st, SWEEP_COL0 + 3);
  w->best_child = col_dup_or_null(st, SWEEP_COL0 + 4);
}

static int sq_sweep_get(kp_store *base, const char *id, kp_sweep *out) {
  sq_store *s = SQ(base);
  memset(out, 0, sizeof *out);
  sqlite3_stmt *st;
  if (prep(s, &st, SWEEP_COLS " WHERE w.run_id=?") != 0) return -1;
  bind_text(st, 1, id);
  int r = row(s, st);
  if (r > 0) sweep_from_row(st, out);
  sqlite3_finalize(st);
  if (r == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
  return r < 0 ? -1 : 0;
}

static int sq_sweep_list(kp_store *base, kp_sweep **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, SWEEP_COLS " ORDER BY (SELECT seq FROM runs q WHERE q.id=w.run_id)") != 0) return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    sweep_from_row(st, &(*out)[(*n)++]);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_sweeps_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_sweep_attach_controller(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  sq_store *s = SQ(base);
  int r = set_pids(s,
                   "UPDATE runs SET supervisor_pid=?1, supervisor_start=?2 WHERE id=?3 AND status='Running'"
                   " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=?3)",
                   id, pid, start);
  if (r <= 0) return r;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "sweep %s is not running", id);
}

static int sq_sweep_reopen(kp_store *base, const char *id, int64_t pid, uint64_t start) {
  sq_store *s = SQ(base);
  int r = set_pids(s,
                   "UPDATE runs SET status='Running', ended=NULL, error=NULL, supervisor_pid=?1, supervisor_start=?2"
                   " WHERE id=?3 AND status='Failed'"
                   " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=?3 AND coalesce(stop_reason, '')='')",
                   id, pid, start);
  if (r <= 0) return r;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_ECONFLICT, "sweep %s is not one whose controller died (Failed without a stop reason)", id);
}

static int sq_sweep_end(kp_store *base, const char *id, const kp_sweep_end *e) {
  sq_store *s = SQ(base);
  if ((unsigned)e->status >= KP_RUN_NSTATUS || !kp_run_status_ended(e->status))
    return kp_store_fail(KP_STORE_EINVAL, "a sweep ends Completed, Failed or Canceled, not %s", kp_run_status_name(e->status));
  if (!e->reason || !*e->reason) return kp_store_fail(KP_STORE_EINVAL, "a sweep's end needs its stop reason");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (prep(s, &st,
           "UPDATE runs SET status=?1, ended=?2, error=CASE WHEN ?1='Canceled' THEN coalesce(cancel_reason, ?3)"
           " WHEN ?1='Failed' THEN ?3 END"
           " WHERE id=?4 AND status NOT IN " SQL_ENDED " AND EXISTS(SELECT 1 FROM sweeps WHERE run_id=?4)") != 0)
    goto out;
  bind_text(st, 1, kp_run_status_name(e->status));
  sqlite3_bind_double(st, 2, now());
  bind_text(st, 3, e->reason);
  bind_text(st, 4, id);
  if (done(s, st) != 0) goto out;
  if (sqlite3_changes(s->db) == 0) {
    if (sweep_exists(s, id) > 0) kp_store_fail(KP_STORE_ECONFLICT, "sweep %s has ended already; nothing was changed", id);
    goto out;
  }
  if (e->best_child) {
    char v[64];
    snprintf(v, sizeof v, "%.17g", e->best_value);
    if (set_tag(s, id, "best_child_run_id", e->best_child) != 0 || set_tag(s, id, "best_metric_value", v) != 0) goto out;
  }
  sqlite3_finalize(st);
  if (prep(s, &st, "UPDATE sweeps SET stop_reason=? WHERE run_id=?") != 0) goto out;
  bind_text(st, 1, e->reason);
  bind_text(st, 2, id);
  if (done(s, st) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

#define SWEEP_BEST_METRIC "best_child_by_primary_metric"

static int sq_sweep_log_best(kp_store *base, const char *id, int64_t step, double value) {
  sq_store *s = SQ(base);
  if (step < 0) return kp_store_fail(KP_STORE_EINVAL, "a step is 0 or more, not %lld", (long long)step);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (sweep_exists(s, id) <= 0) goto out;
  if (prep(s, &st, "SELECT 1 FROM metrics WHERE run_id=? AND name='" SWEEP_BEST_METRIC "' AND step=?") != 0) goto out;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, step);
  int r = row(s, st);
  if (r != 0) {
    if (r > 0) kp_store_fail(KP_STORE_ECONFLICT, "sweep %s has step %lld of " SWEEP_BEST_METRIC " already", id, (long long)step);
    goto out;
  }
  sqlite3_finalize(st);
  if (prep(s, &st, "INSERT INTO metrics(run_id, name, step, ts, value) VALUES(?, '" SWEEP_BEST_METRIC "', ?, ?, ?)") != 0)
    goto out;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, step);
  sqlite3_bind_double(st, 3, now());
  if (isnan(value)) sqlite3_bind_null(st, 4);
  else sqlite3_bind_double(st, 4, value);
  if (done(s, st) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

static int sq_sweep_trial_add(kp_store *base, const char *id, int64_t idx, const char *params) {
  sq_store *s = SQ(base);
  if (idx < 0) return kp_store_fail(KP_STORE_EINVAL, "a trial's index is 0 or more, not %lld", (long long)idx);
  if (!params || !*params) return kp_store_fail(KP_STORE_EINVAL, "a trial needs its parameter values");
  sqlite3_stmt *st;
  if (prep(s, &st,
           "INSERT OR IGNORE INTO sweep_trials(sweep_id, idx, params, created) SELECT ?1, ?2, ?3, ?4"
           " WHERE EXISTS(SELECT 1 FROM sweeps WHERE run_id=?1)") != 0)
    return -1;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, idx);
  bind_text(st, 3, params);
  sqlite3_bind_double(st, 4, now());
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) > 0) return 0;
  if (sweep_exists(s, id) <= 0) return -1;
  return kp_store_fail(KP_STORE_EEXISTS, "sweep %s has a trial %lld already", id, (long long)idx);
}

static int sq_sweep_trial_list(kp_store *base, const char *id, const char *metric, kp_sweep_trial **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT t.idx, t.params, t.run_id, r.id IS NOT NULL, r.status, r.error, t.error, t.decision, t.evaluated,"
           " t.created FROM sweep_trials t LEFT JOIN runs r ON r.id=t.run_id WHERE t.sweep_id=? ORDER BY t.idx") != 0)
    return -1;
  bind_text(st, 1, id);
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 16) != 0) { r = oom(); break; }
    kp_sweep_trial *t = &(*out)[(*n)++];
    memset(t, 0, sizeof *t);
    t->idx = sqlite3_column_int64(st, 0);
    t->params = col_dup(st, 1);
    t->run_id = text_or_null(st, 2);
    t->has_run = sqlite3_column_int(st, 3);
    t->run_status = t->has_run ? col_status(st, 4) : KP_RUN_QUEUED;
    t->run_error = text_or_null(st, 5);
    t->error = text_or_null(st, 6);
    t->decision = text_or_null(st, 7);
    t->evaluated = sqlite3_column_int(st, 8);
    t->created = col_time(st, 9);
  }
  sqlite3_finalize(st);
  if (r == 0 && *n == 0) return sweep_exists(s, id) > 0 ? 0 : -1;  /* (trials exist only with their sweep) */
  if (r >= 0 && metric && *n) {
    /* every child's values in one query (trials come ordered by idx) */
    if (prep(s, &st,
             "SELECT t.idx, m.value FROM sweep_trials t JOIN metrics m ON m.run_id=t.run_id AND m.name=?2"
             " WHERE t.sweep_id=?1 ORDER BY t.idx, m.step, m.id") != 0) {
      r = -1;
    } else {
      bind_text(st, 1, id);
      bind_text(st, 2, metric);
      size_t pos = 0, vcap = 0;
      while ((r = row(s, st)) > 0) {
        int64_t idx = sqlite3_column_int64(st, 0);
        while (pos < *n && (*out)[pos].idx < idx) pos++, vcap = 0;
        if (pos >= *n || (*out)[pos].idx != idx) continue;
        kp_sweep_trial *t = &(*out)[pos];
        if (GROW(t->values, t->nvalues, vcap, 16) != 0) { r = oom(); break; }
        double v = sqlite3_column_double(st, 1);  /* 0.0 for NULL, which is how NaN is stored */
        t->values[t->nvalues++] = v == 0 && sqlite3_column_type(st, 1) == SQLITE_NULL ? NAN : v;
      }
      sqlite3_finalize(st);
    }
  }
  if (r < 0) {
    kp_sweep_trials_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_sweep_trial_attach_run(kp_store *base, const char *id, int64_t idx, const char *run_id) {
  sq_store *s = SQ(base);
  if (!run_id || !*run_id) return kp_store_fail(KP_STORE_EINVAL, "say which run to link to the trial");
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *st = NULL;
  if (prep(s, &st, "SELECT run_id FROM sweep_trials WHERE sweep_id=? AND idx=?") != 0) goto out;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, idx);
  int r = row(s, st);
  if (r <= 0) {
    if (r == 0) trial_missing(s, id, idx);
    goto out;
  }
  if (sqlite3_column_type(st, 0) != SQLITE_NULL && strcmp((const char *)sqlite3_column_text(st, 0), run_id) != 0) {
    kp_store_fail(KP_STORE_ECONFLICT, "trial %lld of sweep %s has run %s already", (long long)idx, id,
                  (const char *)sqlite3_column_text(st, 0));
    goto out;
  }
  sqlite3_finalize(st);
  if (prep(s, &st, "SELECT coalesce(parent_id, '') FROM runs WHERE id=?") != 0) goto out;
  bind_text(st, 1, run_id);
  r = row(s, st);
  if (r <= 0) {
    if (r == 0) kp_store_fail(KP_STORE_ENOTFOUND, "no run '%s' in this workspace", run_id);
    goto out;
  }
  if (strcmp((const char *)sqlite3_column_text(st, 0), id) != 0) {
    kp_store_fail(KP_STORE_EINVAL, "run %s is not a child run of sweep %s", run_id, id);
    goto out;
  }
  sqlite3_finalize(st);
  if (prep(s, &st, "UPDATE sweep_trials SET run_id=? WHERE sweep_id=? AND idx=?") != 0) goto out;
  bind_text(st, 1, run_id);
  bind_text(st, 2, id);
  sqlite3_bind_int64(st, 3, idx);
  if (done(s, st) != 0) goto out;
  rc = 0;
out:
  sqlite3_finalize(st);
  return tx_end(s, own, rc);
}

/* Runs 'sql' (parameters: 1 sweep id, 2 trial index, then 'text' as 3 and
 * 'num' as 4 when used) on one trial; ENOTFOUND when it matched none. */
static int trial_update(sq_store *s, const char *sql, const char *id, int64_t idx, const char *text, int num) {
  sqlite3_stmt *st;
  if (prep(s, &st, sql) != 0) return -1;
  bind_text(st, 1, id);
  sqlite3_bind_int64(st, 2, idx);
  if (sqlite3_bind_parameter_count(st) >= 3) bind_text(st, 3, text);
  if (sqlite3_bind_parameter_count(st) >= 4) sqlite3_bind_int(st, 4, num);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  return sqlite3_changes(s->db) > 0 ? 0 : trial_missing(s, id, idx);
}

static int sq_sweep_trial_set_error(kp_store *base, const char *id, int64_t idx, const char *error) {
  if (!error || !*error) return kp_store_fail(KP_STORE_EINVAL, "say why the trial's run could not be submitted");
  return trial_update(SQ(base), "UPDATE sweep_trials SET error=?3 WHERE sweep_id=?1 AND idx=?2", id, idx, error, 0);
}

static int sq_sweep_trial_evaluated(kp_store *base, const char *id, int64_t idx, int evaluated, const char *decision) {
  if (evaluated < 0) return kp_store_fail(KP_STORE_EINVAL, "a number of intervals is 0 or more, not %d", evaluated);
  return trial_update(SQ(base), "UPDATE sweep_trials SET evaluated=?4, decision=coalesce(?3, decision) WHERE sweep_id=?1 AND idx=?2",
                      id, idx, decision, evaluated);
}

static int sq_sweep_cancel_requested(kp_store *base, const char *id, int *requested, char **reason) {
  sq_store *s = SQ(base);
  *requested = 0;
  *reason = NULL;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT r.cancel_requested, r.cancel_reason FROM sweeps w JOIN runs r ON r.id=w.run_id WHERE w.run_id=?") != 0)
    return -1;
  bind_text(st, 1, id);
  int r = row(s, st);
  if (r > 0 && (*requested = sqlite3_column_int(st, 0) != 0) && sqlite3_column_type(st, 1) != SQLITE_NULL &&
      !(*reason = col_dup(st, 1)))
    r = oom();
  sqlite3_finalize(st);
  if (r == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no sweep with id '%s' in this workspace", id);
  return r < 0 ? -1 : 0;
}

static int sq_sweep_child_by_index(kp_store *base, const char *id, int64_t idx, char **run_id) {
  sq_store *s = SQ(base);
  *run_id = NULL;
  if (sweep_exists(s, id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st,
           "SELECT r.id FROM runs r JOIN tags g ON g.run_id=r.id AND g.key='sweep_index'"
           " WHERE r.parent_id=? AND g.value=? ORDER BY r.seq LIMIT 1") != 0)
    return -1;
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)idx);
  bind_text(st, 1, id);
  bind_text(st, 2, v);
  int r = row(s, st);
  if (r > 0 && !(*run_id = col_dup(st, 0))) r = oom();
  sqlite3_finalize(st);
  return r < 0 ? -1 : 0;
}

/* ---- tokens (the tracking server) ------------------------------------------------- */
static int sq_token_create(kp_store *base, const char *name, const char *sha256_hex, int read_only) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "INSERT INTO tokens(name, sha256, read_only, created) VALUES(?,?,?,?)") != 0) return -1;
  bind_text(st, 1, name);
  bind_text(st, 2, sha256_hex);
  sqlite3_bind_int(st, 3, read_only ? 1 : 0);
  sqlite3_bind_double(st, 4, now());
  int rc = sqlite3_step(st);
  int ext = sqlite3_extended_errcode(s->db);
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return 0;
  if (ext == SQLITE_CONSTRAINT_PRIMARYKEY) return kp_store_fail(KP_STORE_EEXISTS, "a token named '%s' exists already", name);
  if (ext == SQLITE_CONSTRAINT_UNIQUE) return kp_store_fail(KP_STORE_EEXISTS, "a token with that secret exists already");
  return db_fail(s);
}

static int sq_token_list(kp_store *base, kp_token **out, size_t *n) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT name, read_only, created, last_used FROM tokens ORDER BY name") != 0) return -1;
  int r;
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 8) != 0) { r = oom(); break; }
    kp_token *t = &(*out)[(*n)++];
    t->name = col_dup(st, 0);
    t->read_only = sqlite3_column_int(st, 1);
    t->created = col_time(st, 2);
    t->last_used = col_time(st, 3);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_tokens_free(*out, *n);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_token_revoke(kp_store *base, const char *name) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  if (prep(s, &st, "DELETE FROM tokens WHERE name=?") != 0) return -1;
  bind_text(st, 1, name);
  int rc = done(s, st);
  sqlite3_finalize(st);
  if (rc != 0) return -1;
  if (sqlite3_changes(s->db) == 0) return kp_store_fail(KP_STORE_ENOTFOUND, "no token named '%s'", name);
  return 0;
}

static int sq_token_check(kp_store *base, const char *sha256_hex, int *found, int *read_only) {
  sq_store *s = SQ(base);
  *found = 0;
  *read_only = 1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT read_only, coalesce(last_used, 0) FROM tokens WHERE sha256=?") != 0) return -1;
  bind_text(st, 1, sha256_hex);
  int r = row(s, st);
  double last = 0;
  if (r > 0) {
    *found = 1;
    *read_only = sqlite3_column_int(st, 0) != 0;
    last = sqlite3_column_double(st, 1);
  }
  sqlite3_finalize(st);
  if (r < 0) return -1;
  double t = now();
  if (!*found || t - last < 60) return 0;
  if (prep(s, &st, "UPDATE tokens SET last_used=? WHERE sha256=?") != 0) return -1;
  sqlite3_bind_double(st, 1, t);
  bind_text(st, 2, sha256_hex);
  int rc = done(s, st);
  sqlite3_finalize(st);
  return rc;
}

/* one metric's points with from <= step <= to, downsampled over the window's
 * own step range when there are more than max_points (see store.h) */
static int sq_metric_series_window(kp_store *base, const char *run_id, const char *name, int64_t from, int64_t to,
                                   int64_t max_points, kp_metric_point **out, size_t *n, int64_t *total) {
  sq_store *s = SQ(base);
  *out = NULL;
  *n = 0;
  *total = 0;
  if (max_points < 2) return kp_store_fail(KP_STORE_EINVAL, "max_points must be 2 or more (got %lld)", (long long)max_points);
  if (from > to)
    return kp_store_fail(KP_STORE_EINVAL, "from_step (%lld) is after to_step (%lld)", (long long)from, (long long)to);
  if (run_exists(s, run_id) <= 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "SELECT count(*), min(step), max(step) FROM metrics WHERE run_id=? AND name=? AND step BETWEEN ? AND ?") != 0)
    return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, name);
  sqlite3_bind_int64(st, 3, from);
  sqlite3_bind_int64(st, 4, to);
  int r = row(s, st);
  int64_t lo = 0, hi = 0;
  if (r > 0) {
    *total = sqlite3_column_int64(st, 0);
    lo = sqlite3_column_int64(st, 1);
    hi = sqlite3_column_int64(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) return -1;
  if (*total == 0) {
    /* an empty window of a metric the run has is no error */
    if (prep(s, &st, "SELECT 1 FROM metrics WHERE run_id=? AND name=? LIMIT 1") != 0) return -1;
    bind_text(st, 1, run_id);
    bind_text(st, 2, name);
    r = row(s, st);
    sqlite3_finalize(st);
    if (r < 0) return -1;
    return r > 0 ? 0 : kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no metric named '%s'", run_id, name);
  }
  /* buckets of equal step ranges, 'width' steps each (one bucket per point
   * when there are no more than max_points); in each, the row of the lowest
   * and the row of the highest value (SQLite gives a min() or max() query's
   * other columns from that row; NaN, stored as NULL, only when the bucket
   * has nothing else). Two passes over the series' index, no sort by value. */
  int64_t width;
  if (*total <= max_points) {
    width = 1;
  } else {
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1, nb = (uint64_t)(max_points / 2);
    width = (int64_t)(span / nb + (span % nb != 0));
  }
  const char *sql = *total <= max_points
    ? "SELECT step, ts, value FROM metrics WHERE run_id=?1 AND name=?2 AND step BETWEEN ?5 AND ?6 ORDER BY step, id"
    : "SELECT step, ts, value FROM ("
      " SELECT step, ts, value, id FROM (SELECT (step - ?3) / ?4 AS b, min(value) AS value, step, ts, id"
      "  FROM metrics WHERE run_id=?1 AND name=?2 AND step BETWEEN ?5 AND ?6 GROUP BY b)"
      " UNION"
      " SELECT step, ts, value, id FROM (SELECT (step - ?3) / ?4 AS b, max(value) AS value, step, ts, id"
      "  FROM metrics WHERE run_id=?1 AND name=?2 AND step BETWEEN ?5 AND ?6 GROUP BY b))"
      " ORDER BY step, id";
  if (prep(s, &st, sql) != 0) return -1;
  bind_text(st, 1, run_id);
  bind_text(st, 2, name);
  if (*total > max_points) {
    sqlite3_bind_int64(st, 3, lo);
    sqlite3_bind_int64(st, 4, width);
  }
  sqlite3_bind_int64(st, 5, from);
  sqlite3_bind_int64(st, 6, to);
  size_t cap = 0;
  while ((r = row(s, st)) > 0) {
    if (GROW(*out, *n, cap, 64) != 0) { r = oom(); break; }
    kp_metric_point *p = &(*out)[(*n)++];
    p->name = NULL;
    p->step = sqlite3_column_int64(st, 0);
    p->time = sqlite3_column_double(st, 1);
    p->value = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
  }
  sqlite3_finalize(st);
  if (r < 0) {
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
  }
  return 0;
}

static int sq_metric_series_downsampled(kp_store *base, const char *run_id, const char *name, int64_t max_points,
                                        kp_metric_point **out, size_t *n, int64_t *total) {
  return sq_metric_series_window(base, run_id, name, INT64_MIN, INT64_MAX, max_points, out, n, total);
}

/* ---- server-sent events (h-api) ----------------------------------------------- */
static int sq_metric_events(kp_store *base, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out,
                            size_t *n) {
  sq_store *s = SQ(base);
  sqlite3_stmt *st;
  int r;
  if (*cursor <= 0 && run_exists(s, run_id) <= 0) return -1;
  if (*cursor < 0) {
    if (prep(s, &st, "SELECT coalesce(max(id), 0) FROM metrics") != 0) return -1;
    r = row(s, st);
    if (r > 0) *cursor = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r < 0 ? -1 : 0;
  }
  if (*cursor == 0) {
    /* from the run's first row (its index entries, once) */
    if (prep(s, &st, "SELECT coalesce(min(id), 0) FROM metrics WHERE run_id=?") != 0) return -1;
    bind_text(st, 1, run_id);
    r = row(s, st);
    int64_t first = r > 0 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (r < 0) return -1;
    if (first > 0) *cursor = first - 1;
  }
  if (max == 0) return 0;
  kp_metric_event *v = calloc(max, sizeof *v);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  /* by id from the cursor ('+run_id': the rowid range, not the run's index,
   * so that a poll costs the rows added since, not the run's whole series) */
  if (prep(s, &st, "SELECT id, name, step, ts, value FROM metrics WHERE id > ?1 AND +run_id = ?2 ORDER BY id LIMIT ?3") != 0) {
    free(v);
    return -1;
  }
  sqlite3_bind_int64(st, 1, *cursor);
  bind_text(st, 2, run_id);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
  size_t k = 0;
  while ((r = row(s, st)) > 0) {
    v[k].seq = sqlite3_column_int64(st, 0);
    v[k].name = col_dup(st, 1);
    v[k].step = sqlite3_column_int64(st, 2);
    v[k].time = sqlite3_column_double(st, 3);
    v[k].value = sqlite3_column_type(st, 4) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 4);
    k++;
  }
  sqlite3_finalize(st);
  if (r < 0) {
    kp_metric_events_free(v, k);
    return -1;
  }
  if (k) *cursor = v[k - 1].seq;
  *out = v;
  *n = k;
  return 0;
}

static const kp_store_ops sqlite_ops = {
  .backend = "sqlite",
  .close = sq_close,
  .begin = sq_begin,
  .commit = sq_commit,
  .rollback = sq_rollback,
  .experiment_list = sq_experiment_list,
  .experiment_get = sq_experiment_get,
  .compute_create = sq_compute_create,
  .compute_list = sq_compute_list,
  .compute_delete = sq_compute_delete,
  .run_create = sq_run_create,
  .run_get = sq_run_get,
  .run_transition = sq_run_transition,
  .run_request_cancel = sq_run_request_cancel,
  .run_list_active = sq_run_list_active,
  .run_claim_node = sq_run_claim_node,
  .run_attach_supervisor = sq_run_attach_supervisor,
  .run_attach_entry = sq_run_attach_entry,
  .run_set_build_cache = sq_run_set_build_cache,
  .run_files_put = sq_run_files_put,
  .counts = sq_counts,
  .experiment_runs = sq_experiment_runs,
  .sweep_runs = sq_sweep_runs,
  .run_is_sweep = sq_run_is_sweep,
  .runs_files_size = sq_runs_files_size,
  .runs_blobs = sq_runs_blobs,
  .runs_delete = sq_runs_delete,
  .experiment_delete = sq_experiment_delete,
  .blobs_referenced = sq_blobs_referenced,
  .snapshot_list = sq_snapshot_list,
  .tag_set = sq_tag_set,
  .tag_list = sq_tag_list,
  .tag_remove = sq_tag_remove,
  .metrics_ingest = sq_metrics_ingest,
  .metric_series = sq_metric_series,
  .metric_names = sq_metric_names,
  .metrics_latest = sq_metrics_latest,
  .metric_follow = sq_metric_follow,
  .run_sweep_spec = sq_run_sweep_spec,
  .metric_exists = sq_metric_exists,
  .metric_latest_value = sq_metric_latest_value,
  .run_list = sq_run_list,
  .model_version_create = sq_model_version_create,
  .model_get = sq_model_get,
  .model_list = sq_model_list,
  .model_services = sq_model_services,
  .model_delete = sq_model_delete,
  .model_tags_set = sq_model_tags_set,
  .model_tags_remove = sq_model_tags_remove,
  .run_files_list = sq_run_files_list,
  /* run search */
  .run_params_set = sq_run_params_set,
  .run_params = sq_run_params,
  .run_search = sq_run_search,
  /* services */
  .service_create = sq_service_create,
  .service_redeploy = sq_service_redeploy,
  .service_get = sq_service_get,
  .service_list = sq_service_list,
  .service_model = sq_service_model,
  .service_set_keys = sq_service_set_keys,
  .service_starting = sq_service_starting,
  .service_start_failed = sq_service_start_failed,
  .service_running = sq_service_running,
  .service_stopped = sq_service_stopped,
  .service_exited = sq_service_exited,
  .service_delete = sq_service_delete,
  /* sweeps */
  .sweep_create = sq_sweep_create,
  .sweep_get = sq_sweep_get,
  .sweep_list = sq_sweep_list,
  .sweep_attach_controller = sq_sweep_attach_controller,
  .sweep_reopen = sq_sweep_reopen,
  .sweep_end = sq_sweep_end,
  .sweep_log_best = sq_sweep_log_best,
  .sweep_trial_add = sq_sweep_trial_add,
  .sweep_trial_list = sq_sweep_trial_list,
  .sweep_trial_attach_run = sq_sweep_trial_attach_run,
  .sweep_trial_set_error = sq_sweep_trial_set_error,
  .sweep_trial_evaluated = sq_sweep_trial_evaluated,
  .sweep_child_by_index = sq_sweep_child_by_index,
  .sweep_cancel_requested = sq_sweep_cancel_requested,
  /* tokens (the tracking server) */
  .token_create = sq_token_create,
  .token_list = sq_token_list,
  .token_revoke = sq_token_revoke,
  .token_check = sq_token_check,
  .metric_series_downsampled = sq_metric_series_downsampled,
  /* server-sent events */
  .metric_events = sq_metric_events,
  /* distributed runs: metrics per rank */
  .metric_series_rank = sq_metric_series_rank,
  .metric_names_rank = sq_metric_names_rank,
  /* web UI zoom (h-ui) */
  .metric_series_window = sq_metric_series_window,
};

/* ---- opening and migrating ------------------------------------------------------- */

/* adds the columns (name, type) that table runs lacks (SQLite's ADD COLUMN
 * has no IF NOT EXISTS) */
static int add_run_columns(sq_store *s, const char *const (*cols)[2], size_t n) {
  for (size_t i = 0; i < n; i++) {
    sqlite3_stmt *st;
    if (prep(s, &st, "SELECT count(*) FROM pragma_table_info('runs') WHERE name=?") != 0) return -1;
    bind_text(st, 1, cols[i][0]);
    int have = row(s, st) > 0 ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (have < 0) return -1;
    if (have) continue;
    char sql[128];
    snprintf(sql, sizeof sql, "ALTER TABLE runs ADD COLUMN %s %s", cols[i][0], cols[i][1]);
    if (exec(s, sql) != 0) return -1;
  }
  return 0;
}

/* 1 -> 2: runs.prepared and runs.cancel_reason joined schema 1 during its
 * development; add them to stores created before (new stores have them). */
static int migrate_1_to_2(sq_store *s) {
  static const char *const cols[][2] = {{"prepared", "REAL"}, {"cancel_reason", "TEXT"}};
  return add_run_columns(s, cols, sizeof cols / sizeof cols[0]);
}

/* 8 -> 9: runs.finalizing (a store set back to an older version keeps it) */
static int migrate_8_to_9(sq_store *s) {
  static const char *const cols[][2] = {{"finalizing", "REAL"}};
  return add_run_columns(s, cols, 1);
}

/* KUSARI_FAULT_SQLITE_OOM=N makes every SQLite allocation after the N-th fail
 * (persistent OOM), so tests can check that each command fails cleanly and
 * leaves the store consistent, as SQLite's own FAULTSIM does (tests only). */
static sqlite3_mem_methods g_mem;
static long g_oom_after = -1, g_oom_count;

static void *fault_malloc(int n) { return ++g_oom_count > g_oom_after ? NULL : g_mem.xMalloc(n); }
static void *fault_realloc(void *p, int n) { return ++g_oom_count > g_oom_after ? NULL : g_mem.xRealloc(p, n); }

static void install_faults(void) {
  static int installed;
  if (installed) return;
  installed = 1;
  const char *v = getenv("KUSARI_FAULT_SQLITE_OOM");
  if (!v || !*v) return;
  g_oom_after = atol(v);
  if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &g_mem) != SQLITE_OK) return;
  sqlite3_mem_methods m = g_mem;
  m.xMalloc = fault_malloc;
  m.xRealloc = fault_realloc;
  if (sqlite3_config(SQLITE_CONFIG_MALLOC, &m) != SQLITE_OK) g_oom_after = -1;
}

/* 4 -> 5, after the hook: a store opened without the workspace's hook (a
 * new one, the tests') gets the new column names too; one that still holds
 * services' plain keys cannot be migrated without somewhere to put them. */
static int keys_nowhere(void *ctx, const char *name, const char *k1, const char *k2, char h1[65], char h2[65]) {
  (void)ctx, (void)k1, (void)k2, (void)h1, (void)h2;
  return kp_store_fail(KP_STORE_EINVAL, "service %s holds its keys in the store: open it as a workspace to move them", name);
}

static int migrate_4_to_5(sq_store *s) { return kp_store_sqlite_service_keys_migrate(&s->base, keys_nowhere, NULL); }

static int migrate(sq_store *s, kp_store_migrate_hook hook, void *ctx, int *from) {
  if (exec(s, "BEGIN IMMEDIATE") != 0) return -1;
  sqlite3_stmt *st;
  if (prep(s, &st, "PRAGMA user_version") != 0) { sq_rollback(&s->base); return -1; }
  int version = row(s, st) > 0 ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  *from = version;
  if (version < 0) {
    sq_rollback(&s->base);
    return kp_store_fail(KP_STORE_EBACKEND, "store %s: cannot read its schema version", s->path);
  }
  if (version > SCHEMA_VERSION) {
    sq_rollback(&s->base);
    return kp_store_fail(KP_STORE_ECONFLICT, "has schema version %d, newer than this kusari (%d)", version,
                         SCHEMA_VERSION);
  }
  for (int v = version; v < SCHEMA_VERSION; v++) {
    char uv[64];
    snprintf(uv, sizeof uv, "PRAGMA user_version=%d", v + 1);
    if (exec(s, migrations[v]) != 0 || (v + 1 == 2 && migrate_1_to_2(s) != 0) ||
        (hook && hook(ctx, &s->base, v + 1) != 0) || (v + 1 == 5 && migrate_4_to_5(s) != 0) ||
        (v + 1 == 9 && migrate_8_to_9(s) != 0) || exec(s, uv) != 0) {
      kp_store_error cause = *kp_store_last_error();
      sq_rollback(&s->base);
      return kp_store_fail(KP_STORE_EBACKEND, "migration to schema version %d failed%s%s", v + 1,
                           cause.message[0] ? ": " : "", cause.message);
    }
  }
  return exec(s, "COMMIT");
}

int kp_store_sqlite_open(const char *path, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out) {
  kp_store_clear_error();
  *out = NULL;
  install_faults();
  sq_store *s = calloc(1, sizeof *s);
  if (!s) return oom();
  s->base.ops = &sqlite_ops;
  snprintf(s->path, sizeof s->path, "%s", path);
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
    kp_store_fail(KP_STORE_EBACKEND, "cannot open the store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    sq_close(&s->base);
    return -1;
  }
  int from;
  if (sqlite3_busy_timeout(s->db, 60000) != SQLITE_OK) db_fail(s);
  else if (exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;") == 0 &&
           migrate(s, hook, hook_ctx, &from) == 0) {
    *out = &s->base;
    return 0;
  }
  kp_store_error e = *kp_store_last_error();
  sq_close(&s->base);
  kp_store_fail(e.code, "%s", e.message);
  return -1;
}
