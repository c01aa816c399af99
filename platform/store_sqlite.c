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

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define SCHEMA_VERSION 5

/* the status sets the SQL below uses (names as kp_run_status_name gives) */
#define SQL_ENDED "('Completed','Failed','Canceled')"
#define SQL_ACTIVE "('Queued','Preparing','Running','Finalizing')"
#define SQL_BUSY "('Preparing','Running','Finalizing')"

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
   * services/NAME/keys (0600): the migration hook of the workspace does it
   * (kp_service_keys_migrate, cmd_service.c), renaming the columns when they
   * have their old names (a store set back to an older version re-migrates
   * cleanly) */
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
void *kp_store_sqlite_handle(kp_store *s) { return SQ(s)->db; }

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
           " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status IN " SQL_BUSY "),"
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
  " r.snapshot_bytes"                                                                                         \
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
           " (SELECT count(*) FROM runs x WHERE x.compute=r.compute AND x.status IN " SQL_BUSY "),"
           " (SELECT count(*) FROM runs x WHERE x.compute=r.compute AND x.status='Queued' AND x.seq<r.seq)"
           " FROM runs r LEFT JOIN computes c ON c.name=r.compute WHERE r.id=?") != 0)
    goto out;
  bind_text(st, 1, id);
  int r = row(s, st);
  if (r > 0) {
    int cancel = sqlite3_column_int(st, 0);
    int max = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int(st, 1);
    int busy = sqlite3_column_int(st, 2), ahead = sqlite3_column_int(st, 3);
    if (cancel) *claim = KP_CLAIM_CANCELED;
    else if (max == 0) *claim = KP_CLAIM_NO_TARGET;
    else if (busy + ahead < max) *claim = KP_CLAIM_TAKEN;
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

static int sq_metrics_ingest(kp_store *base, const char *run_id, const kp_ingest_batch *b) {
  sq_store *s = SQ(base);
  if (b->to < b->from) return kp_store_fail(KP_STORE_EINVAL, "a batch cannot end (%llu) before it starts (%llu)",
                                             (unsigned long long)b->to, (unsigned long long)b->from);
  int own, rc = -1;
  if (tx_begin(s, &own) != 0) return -1;
  sqlite3_stmt *off = NULL, *ins = NULL, *count = NULL;
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
};

/* ---- opening and migrating ------------------------------------------------------- */

/* 1 -> 2: runs.prepared and runs.cancel_reason joined schema 1 during its
 * development; add them to stores created before (new stores have them). */
static int migrate_1_to_2(sq_store *s) {
  static const char *const cols[][2] = {{"prepared", "REAL"}, {"cancel_reason", "TEXT"}};
  for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
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
        (hook && hook(ctx, &s->base, v + 1) != 0) || exec(s, uv) != 0) {
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
