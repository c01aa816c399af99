/*
 * tests/platform/test_store.c — the store interface (platform/store.h)
 * driven directly, against a real backend: the rules every backend must keep
 * (status transitions refused once a run has ended, exactly-once metric
 * ingestion, model versions numbered inside a transaction, error codes for
 * unknown ids and taken names, the per-thread error). Each test opens a new
 * store through open_store(), the one place a backend plugs in to run this
 * same program:
 *   - SQLite (the default): a new file in a temp dir per store;
 *   - PostgreSQL when KUSARI_TEST_PG_URI names a database (store_pg.sh
 *     starts a temporary server and sets it): a new schema per store (the
 *     URI's options=-csearch_path=...), so every store starts empty.
 * An operation a backend lacks fails with "... is not supported by the X
 * backend" (KP_STORE_EINVAL); the case that hit it says so when it fails.
 */
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[] = "/tmp/kusari-store-XXXXXX";
static int g_n;
static const char *g_pg;  /* KUSARI_TEST_PG_URI, or NULL: SQLite */

#ifdef KUSARI_WITH_POSTGRESQL
#include <libpq-fe.h>

/* Runs one statement on the test database (not through the store). */
static void pg_admin(const char *sql) {
  PGconn *c = PQconnectdb(g_pg);
  if (PQstatus(c) != CONNECTION_OK) fail_msg("cannot connect to %s: %s", g_pg, PQerrorMessage(c));
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
  assert_true(ok);
}

/* Ends the store connections named 'app' and waits until their server
 * processes are gone (they have sent their goodbye and closed the socket). */
static void pg_drop(const char *app) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name='%s'", app);
  pg_admin(sql);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE application_name='%s'", app);
  PGconn *c = PQconnectdb(g_pg);
  if (PQstatus(c) != CONNECTION_OK) fail_msg("cannot connect to %s: %s", g_pg, PQerrorMessage(c));
  for (int i = 0; i < 3000; i++) {
    PGresult *r = PQexec(c, sql);
    int left = PQresultStatus(r) == PGRES_TUPLES_OK ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    if (left == 0) break;
    usleep(10000);
  }
  PQfinish(c);
}
#endif

/* The location of a new, empty store of the backend under test: a path, or
 * a PostgreSQL URI whose search_path is a new schema; 'extra' (or NULL) is
 * appended to a URI's parameters. */
static void new_store_uri(char *out, size_t n, const char *extra) {
  ++g_n;
  if (!g_pg) {
    snprintf(out, n, "%s/store-%d.db", g_dir, g_n);
    return;
  }
#ifdef KUSARI_WITH_POSTGRESQL
  char sql[128];
  snprintf(sql, sizeof sql, "CREATE SCHEMA kt_%d_%d", (int)getpid(), g_n);
  pg_admin(sql);
  snprintf(out, n, "%s%coptions=-csearch_path%%3Dkt_%d_%d%s%s", g_pg, strchr(g_pg, '?') ? '&' : '?', (int)getpid(), g_n,
           extra ? "&" : "", extra ? extra : "");
#else
  (void)extra;
  fail_msg("KUSARI_TEST_PG_URI is set but this test was built without libpq");
#endif
}

/* A new, empty store of the backend under test. */
static kp_store *open_store(void) {
  char uri[1024];
  new_store_uri(uri, sizeof uri, NULL);
  kp_store *s = NULL;
  int rc = kp_store_open(uri, NULL, NULL, &s);
  if (rc != 0) fail_msg("cannot open %s: %s", uri, kp_store_last_error()->message);
  return s;
}

static int setup(void **state) {
  *state = open_store();
  return *state ? 0 : -1;
}

/* Says which operation the backend lacks, when a case stopped on one. */
static void report_unsupported(void) {
  const kp_store_error *e = kp_store_last_error();
  if (e->code == KP_STORE_EINVAL && strstr(e->message, " is not supported by the "))
    fprintf(stderr, "[  NOTE    ] the last store error: %s\n", e->message);
}

static int teardown(void **state) {
  report_unsupported();
  kp_store_close(*state);
  return 0;
}

static kp_store_code code(void) { return kp_store_last_error()->code; }

static void new_run(kp_store *s, const char *experiment, const char *compute, char *id, size_t n) {
  kp_run_new r = {.experiment = experiment, .compute = compute, .source = "/src", .entry = "train.sh",
                  .args_json = "[]", .snapshot = "0123"};
  assert_int_equal(kp_store_run_create(s, &r, id, n), 0);
}

static kp_run_status status_of(kp_store *s, const char *id) {
  kp_run r;
  assert_int_equal(kp_store_run_get(s, id, &r), 0);
  kp_run_status st = r.status;
  kp_run_free(&r);
  return st;
}

static void test_store__status_names(void **state) {
  (void)state;
  static const char *const names[] = {"Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled"};
  for (int i = 0; i < 7; i++) {
    kp_run_status v;
    assert_string_equal(kp_run_status_name((kp_run_status)i), names[i]);
    assert_int_equal(kp_run_status_parse(names[i], &v), 0);
    assert_int_equal(v, i);
    assert_int_equal(kp_run_status_ended(v), i >= 4);
  }
  kp_run_status v;
  assert_int_equal(kp_run_status_parse("completed", &v), -1);
  assert_int_equal(kp_run_status_parse("", &v), -1);
  assert_string_equal(kp_run_status_name(KP_RUN_NSTATUS), "?");
}

static void test_store__unknown_ids(void **state) {
  kp_store *s = *state;
  kp_run run;
  kp_experiment_detail d;
  kp_compute *c;
  kp_tag *t;
  kp_metric_point *p;
  size_t n;
  int64_t v;
  kp_run_transition tr = {.to = KP_RUN_RUNNING};
  kp_metric_point pt = {.name = "loss", .step = -1, .time = 1, .value = 1};
  kp_ingest_batch b = {.from = 0, .to = 10, .points = &pt, .npoints = 1};
  kp_model_new m = {.name = "m", .run_id = "nope_1", .path = "outputs/model.npz"};

  assert_int_equal(kp_store_run_get(s, "nope_1", &run), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_non_null(strstr(kp_store_last_error()->message, "nope_1"));
  assert_int_equal(kp_store_run_transition(s, "nope_1", &tr), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_tag_set(s, "nope_1", "k", "v"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_tag_list(s, "nope_1", &t, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metrics_ingest(s, "nope_1", &b), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_series(s, "nope_1", "loss", &p, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_experiment_get(s, "nope", &d), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_compute_list(s, "nope", &c, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_compute_delete(s, "nope", NULL), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_model_version_create(s, &m, &v), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* a run that exists, a metric that does not */
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  assert_int_equal(kp_store_metric_series(s, id, "loss", &p, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* a success clears the error */
  assert_int_equal(kp_store_run_get(s, id, &run), 0);
  assert_int_equal(code(), KP_STORE_OK);
  kp_run_free(&run);
}

static void test_store__transitions_stop_at_the_end(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  assert_string_equal(id, "exp_1");
  assert_int_equal(status_of(s, id), KP_RUN_QUEUED);
  kp_run_transition prep = {.to = KP_RUN_PREPARING}, run = {.to = KP_RUN_RUNNING};
  kp_run_transition done = {.to = KP_RUN_COMPLETED, .end = 1, .has_exit_code = 1, .exit_code = 0};
  kp_run_transition fail = {.to = KP_RUN_FAILED, .end = 1, .has_exit_code = 1, .exit_code = 3, .error = "late"};
  assert_int_equal(kp_store_run_transition(s, id, &prep), 0);
  assert_int_equal(kp_store_run_transition(s, id, &run), 0);
  assert_int_equal(status_of(s, id), KP_RUN_RUNNING);
  kp_run_transition fin = {.to = KP_RUN_FINALIZING};
  assert_int_equal(kp_store_run_transition(s, id, &fin), 0);
  assert_int_equal(kp_store_run_transition(s, id, &done), 0);
  kp_run before;
  assert_int_equal(kp_store_run_get(s, id, &before), 0);
  assert_int_equal(before.status, KP_RUN_COMPLETED);
  assert_true(before.prepared > 0 && before.started > 0 && before.ended > 0);
  /* the time of each status (the web UI's timeline), in order */
  assert_true(before.finalizing > 0);
  assert_true(before.created <= before.prepared && before.prepared <= before.started &&
              before.started <= before.finalizing && before.finalizing <= before.ended);
  assert_true(before.has_exit_code);
  assert_int_equal(before.exit_code, 0);
  assert_null(before.error);
  /* once ended, every transition is refused and changes nothing */
  const kp_run_transition *later[] = {&prep, &run, &fail, &done};
  for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
    assert_int_equal(kp_store_run_transition(s, id, later[i]), -1);
    assert_int_equal(code(), KP_STORE_ECONFLICT);
  }
  kp_run after;
  assert_int_equal(kp_store_run_get(s, id, &after), 0);
  assert_int_equal(after.status, KP_RUN_COMPLETED);
  assert_true(after.ended == before.ended);
  assert_int_equal(after.exit_code, 0);
  assert_null(after.error);
  kp_run_free(&before);
  kp_run_free(&after);
  /* a bad status value is refused */
  char id2[256];
  new_run(s, "exp", "cpu", id2, sizeof id2);
  kp_run_transition bad = {.to = KP_RUN_NSTATUS};
  assert_int_equal(kp_store_run_transition(s, id2, &bad), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(status_of(s, id2), KP_RUN_QUEUED);
  /* a failure keeps its exit code and error */
  assert_int_equal(kp_store_run_transition(s, id2, &fail), 0);
  kp_run f;
  assert_int_equal(kp_store_run_get(s, id2, &f), 0);
  assert_int_equal(f.status, KP_RUN_FAILED);
  assert_int_equal(f.exit_code, 3);
  assert_string_equal(f.error, "late");
  assert_true(f.finalizing == 0 && f.started == 0);  /* never Finalizing or Running: no times */
  kp_run_free(&f);
}

static void test_store__metrics_exactly_once(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  kp_metric_point pts[] = {
    {.name = "loss", .step = -1, .time = 10, .value = 0.5},
    {.name = "acc", .step = -1, .time = 10, .value = 0.25},
    {.name = "loss", .step = -1, .time = 11, .value = 0.4},
  };
  const char *tk[] = {"phase"}, *tv[] = {"train"};
  kp_ingest_batch b1 = {.from = 0, .to = 100, .points = pts, .npoints = 3, .tag_keys = tk, .tag_values = tv, .ntags = 1};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b1), 0);
  /* the same batch again (a retry after a lost reply): refused, nothing added */
  assert_int_equal(kp_store_metrics_ingest(s, id, &b1), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  /* a batch from a wrong offset: refused too */
  kp_ingest_batch gap = {.from = 50, .to = 120, .points = pts, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, id, &gap), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  kp_metric_point *p;
  size_t n;
  assert_int_equal(kp_store_metric_series(s, id, "loss", &p, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(p[0].step, 0);
  assert_true(p[0].value == 0.5);
  assert_int_equal(p[1].step, 1);
  assert_true(p[1].value == 0.4);
  free(p);
  /* the next batch continues the steps; explicit steps and NaN are kept */
  kp_metric_point more[] = {
    {.name = "loss", .step = -1, .time = 12, .value = NAN},
    {.name = "loss", .step = 10, .time = 13, .value = 0.1},
    {.name = "loss", .step = -1, .time = 14, .value = 0.05},
  };
  kp_ingest_batch b2 = {.from = 100, .to = 180, .points = more, .npoints = 3};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b2), 0);
  assert_int_equal(kp_store_metric_series(s, id, "loss", &p, &n), 0);
  assert_int_equal(n, 5);
  assert_int_equal(p[2].step, 2);
  assert_true(isnan(p[2].value));
  assert_int_equal(p[3].step, 10);
  assert_int_equal(p[4].step, 11);
  assert_true(p[4].value == 0.05);
  free(p);
  assert_int_equal(kp_store_metric_series(s, id, "acc", &p, &n), 0);
  assert_int_equal(n, 1);
  assert_true(p[0].value == 0.25);
  free(p);
  kp_run r;
  assert_int_equal(kp_store_run_get(s, id, &r), 0);
  assert_int_equal(r.channel_offset, 180);
  kp_run_free(&r);
  kp_tag *t;
  assert_int_equal(kp_store_tag_list(s, id, &t, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].key, "phase");
  assert_string_equal(t[0].value, "train");
  kp_tags_free(t, n);
  /* a batch with a bad point writes nothing, not even its offset */
  kp_metric_point bad[] = {{.name = "loss", .step = -1, .time = 15, .value = 1}, {.name = "", .step = -1}};
  kp_ingest_batch b3 = {.from = 180, .to = 200, .points = bad, .npoints = 2};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b3), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_metric_series(s, id, "loss", &p, &n), 0);
  assert_int_equal(n, 5);
  free(p);
  assert_int_equal(kp_store_run_get(s, id, &r), 0);
  assert_int_equal(r.channel_offset, 180);
  kp_run_free(&r);
}

/* Each metric's latest value (run search, run list --metrics) across batches:
 * a later batch with an earlier step leaves it alone, one with the same step
 * replaces it (it came later), one with a later step replaces it, and a
 * batch of many points keeps the last by step */
static void test_store__metric_latest_across_batches(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  struct { int64_t step; double value, want; } cases[] = {
    {5, 0.5, 0.5}, {2, 0.2, 0.5}, {5, 0.55, 0.55}, {9, 0.9, 0.9}, {-1, 0.95, 0.95}, {0, 0.01, 0.95},
  };
  uint64_t at = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kp_metric_point p = {.name = "acc", .step = cases[i].step, .time = (double)i, .value = cases[i].value};
    kp_ingest_batch b = {.from = at, .to = at + 1, .points = &p, .npoints = 1};
    assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
    at++;
    double v = -1;
    int found = 0;
    assert_int_equal(kp_store_metric_latest_value(s, id, "acc", &v, &found), 0);
    assert_int_equal(found, 1);
    assert_true(v == cases[i].want);
  }
  /* many points in one batch, steps out of order: the largest step wins */
  kp_metric_point many[300];
  for (int i = 0; i < 300; i++)
    many[i] = (kp_metric_point){.name = "loss", .step = (i * 7919) % 300, .time = i, .value = (double)((i * 7919) % 300)};
  kp_ingest_batch b = {.from = at, .to = at + 1, .points = many, .npoints = 300};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
  double v = -1;
  int found = 0;
  assert_int_equal(kp_store_metric_latest_value(s, id, "loss", &v, &found), 0);
  assert_int_equal(found, 1);
  assert_true(v == 299);
}

static void test_store__model_versions(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  kp_model_file files[] = {{.path = "model.npz", .sha256 = "aa", .size = 10}, {.path = "model.json", .sha256 = "bb", .size = 2}};
  const char *tk[] = {"stage"}, *tv[] = {"dev"};
  kp_model_new m = {.name = "mnist", .run_id = id, .path = "outputs/model.npz", .files = files, .nfiles = 2,
                    .tag_keys = tk, .tag_values = tv, .ntags = 1};
  kp_model_new other = {.name = "other", .path = "/tmp/x.npz", .files = files, .nfiles = 1};
  int64_t v = 0;
  for (int64_t want = 1; want <= 3; want++) {
    assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
    assert_int_equal(v, want);
  }
  assert_int_equal(kp_store_model_version_create(s, &other, &v), 0);
  assert_int_equal(v, 1);
  /* inside a transaction that is rolled back, the number is not used up */
  assert_int_equal(kp_store_begin(s), 0);
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  assert_int_equal(v, 4);
  kp_store_rollback(s);
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  assert_int_equal(v, 4);
  /* a version whose files cannot all be recorded is not created */
  kp_model_file dup[] = {{.path = "a", .sha256 = "aa", .size = 1}, {.path = "a", .sha256 = "bb", .size = 1}};
  kp_model_new twice = {.name = "mnist", .path = "p", .files = dup, .nfiles = 2};
  assert_int_equal(kp_store_model_version_create(s, &twice, &v), -1);
  assert_int_equal(code(), KP_STORE_EBACKEND);
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  assert_int_equal(v, 5);
  kp_model_new noname = {.name = "", .path = "p"};
  assert_int_equal(kp_store_model_version_create(s, &noname, &v), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
}

static void test_store__model_reads_and_tags(void **state) {
  kp_store *s = *state;
  kp_model_file files[] = {{.path = "b.json", .sha256 = "bb", .size = 2}, {.path = "a.npz", .sha256 = "aa", .size = 10}};
  kp_model_new m1 = {.name = "net", .path = "p1", .description = "first", .files = files, .nfiles = 2};
  kp_model_new m2 = {.name = "net", .path = "p2", .files = files, .nfiles = 1};
  int64_t v;
  assert_int_equal(kp_store_model_version_create(s, &m1, &v), 0);
  assert_int_equal(kp_store_model_version_create(s, &m2, &v), 0);
  kp_model m;
  assert_int_equal(kp_store_model_get(s, "net", 0, &m), 0);  /* the latest */
  assert_int_equal(m.version, 2);
  assert_string_equal(m.path, "p2");
  assert_null(m.run_id);
  kp_model_free(&m);
  assert_int_equal(kp_store_model_get(s, "net", 1, &m), 0);
  assert_string_equal(m.description, "first");
  assert_int_equal(m.nfiles, 2);
  assert_string_equal(m.files[0].path, "a.npz");  /* by path */
  assert_int_equal(m.files[0].size, 10);
  kp_model_free(&m);
  assert_int_equal(kp_store_model_get(s, "net", 3, &m), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_model_get(s, "nope", 0, &m), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* tags: set and replace; removing is all or none */
  const char *k[] = {"stage", "owner"}, *val[] = {"dev", "ml"}, *val2[] = {"prod", "ml"};
  assert_int_equal(kp_store_model_tags_set(s, "net", 1, k, val, 2), 0);
  assert_int_equal(kp_store_model_tags_set(s, "net", 1, k, val2, 1), 0);
  const char *rm[] = {"owner", "missing"};
  assert_int_equal(kp_store_model_tags_remove(s, "net", 1, rm, 2), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_model_get(s, "net", 1, &m), 0);
  assert_int_equal(m.ntags, 2);
  assert_string_equal(m.tags[0].key, "owner");
  assert_string_equal(m.tags[1].value, "prod");
  kp_model_free(&m);
  assert_int_equal(kp_store_model_tags_remove(s, "net", 1, rm, 1), 0);
  assert_int_equal(kp_store_model_tags_set(s, "net", 9, k, val, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_model *list;
  size_t n;
  assert_int_equal(kp_store_model_list(s, NULL, &list, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(list[0].version, 1);
  assert_int_equal(list[0].ntags, 1);
  kp_models_free(list, n);
  char **svc;
  assert_int_equal(kp_store_model_services(s, "net", 1, &svc, &n), 0);
  assert_int_equal(n, 0);
  kp_strings_free(svc, n);
  assert_int_equal(kp_store_model_delete(s, "net", 0), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_model_delete(s, "net", 1), 0);
  assert_int_equal(kp_store_model_get(s, "net", 1, &m), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* the numbering goes on after the highest version */
  assert_int_equal(kp_store_model_version_create(s, &m2, &v), 0);
  assert_int_equal(v, 3);
  /* run files: all, a file, a folder; an unknown run */
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  kp_file_entry fe[] = {{.path = "outputs/m.npz", .sha256 = "x", .size = 1}, {.path = "outputs/sub/a", .sha256 = "y", .size = 2},
                        {.path = "outputsX", .sha256 = "z", .size = 3}};
  assert_int_equal(kp_store_run_files_put(s, id, fe, 3), 0);
  kp_stored_file *f;
  assert_int_equal(kp_store_run_files_list(s, id, NULL, &f, &n), 0);
  assert_int_equal(n, 3);
  kp_stored_files_free(f, n);
  assert_int_equal(kp_store_run_files_list(s, id, "outputs", &f, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(f[1].path, "outputs/sub/a");
  kp_stored_files_free(f, n);
  assert_int_equal(kp_store_run_files_list(s, id, "outputs/m.npz", &f, &n), 0);
  assert_int_equal(n, 1);
  kp_stored_files_free(f, n);
  assert_int_equal(kp_store_run_files_list(s, "nope_9", NULL, &f, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* Two connections to one store: versions from both are numbered without a gap
 * or a duplicate (the count and the insert are one transaction). */
typedef struct reg_arg { const char *path; int64_t got[20]; int rc; } reg_arg;

static void *register_many(void *va) {
  reg_arg *a = va;
  kp_store *s;
  if (kp_store_open(a->path, NULL, NULL, &s) != 0) { a->rc = -1; return NULL; }
  kp_model_new m = {.name = "shared", .path = "p"};
  for (int i = 0; i < 20 && a->rc == 0; i++) a->rc = kp_store_model_version_create(s, &m, &a->got[i]);
  kp_store_close(s);
  return NULL;
}

static void test_store__model_versions_concurrent(void **state) {
  (void)state;
  char path[1024];
  new_store_uri(path, sizeof path, NULL);
  kp_store *s;
  assert_int_equal(kp_store_open(path, NULL, NULL, &s), 0);  /* created and migrated once */
  kp_store_close(s);
  reg_arg a = {.path = path}, b = {.path = path};
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, register_many, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, register_many, &b), 0);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  assert_int_equal(a.rc, 0);
  assert_int_equal(b.rc, 0);
  int seen[41] = {0};
  for (int i = 0; i < 20; i++) {
    assert_in_range(a.got[i], 1, 40);
    assert_in_range(b.got[i], 1, 40);
    seen[a.got[i]]++;
    seen[b.got[i]]++;
  }
  for (int v = 1; v <= 40; v++) assert_int_equal(seen[v], 1);
}

static void test_store__compute_targets(void **state) {
  kp_store *s = *state;
  assert_int_equal(kp_store_compute_create(s, "cpu", "local", 2), 0);
  assert_int_equal(kp_store_compute_create(s, "cpu", "local", 4), -1);
  assert_int_equal(code(), KP_STORE_EEXISTS);
  assert_int_equal(kp_store_compute_create(s, "big", "local", 8), 0);
  char id[256], id2[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  new_run(s, "exp", "cpu", id2, sizeof id2);
  kp_run_transition run = {.to = KP_RUN_RUNNING};
  assert_int_equal(kp_store_run_transition(s, id, &run), 0);
  kp_compute *c;
  size_t n;
  assert_int_equal(kp_store_compute_list(s, NULL, &c, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(c[0].name, "big");
  assert_string_equal(c[1].name, "cpu");
  assert_int_equal(c[1].max_nodes, 2);
  assert_int_equal(c[1].busy_nodes, 1);
  assert_int_equal(c[1].queued_runs, 1);
  kp_computes_free(c, n);
  int active = 0;
  assert_int_equal(kp_store_compute_delete(s, "cpu", &active), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(active, 2);
  kp_run_transition end = {.to = KP_RUN_CANCELED, .end = 1};
  assert_int_equal(kp_store_run_transition(s, id, &end), 0);
  assert_int_equal(kp_store_run_transition(s, id2, &end), 0);
  assert_int_equal(kp_store_compute_delete(s, "cpu", &active), 0);
  assert_int_equal(kp_store_compute_list(s, "cpu", &c, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

static void test_store__experiments(void **state) {
  kp_store *s = *state;
  char a1[256], a2[256], b1[256];
  new_run(s, "alpha", "cpu", a1, sizeof a1);
  new_run(s, "alpha", "cpu", a2, sizeof a2);
  new_run(s, "beta", "cpu", b1, sizeof b1);
  assert_string_equal(b1, "beta_3");
  kp_run_transition done = {.to = KP_RUN_COMPLETED, .end = 1}, fail = {.to = KP_RUN_FAILED, .end = 1};
  assert_int_equal(kp_store_run_transition(s, a1, &done), 0);
  assert_int_equal(kp_store_run_transition(s, b1, &fail), 0);
  kp_metric_point p1 = {.name = "acc", .step = -1, .time = 1, .value = 0.75};
  kp_metric_point p2 = {.name = "acc", .step = -1, .time = 1, .value = 0.5};
  kp_ingest_batch b = {.from = 0, .to = 1, .points = &p1, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, a1, &b), 0);
  b.points = &p2;
  assert_int_equal(kp_store_metrics_ingest(s, a2, &b), 0);
  kp_experiment_summary *v;
  size_t n;
  assert_int_equal(kp_store_experiment_list(s, &v, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(v[0].name, "alpha");
  assert_int_equal(v[0].runs, 2);
  assert_int_equal(v[0].completed, 1);
  assert_int_equal(v[0].active, 1);
  assert_int_equal(v[0].failed, 0);
  assert_string_equal(v[1].name, "beta");
  assert_int_equal(v[1].failed, 1);
  kp_experiment_summaries_free(v, n);
  kp_experiment_detail d;
  assert_int_equal(kp_store_experiment_get(s, "alpha", &d), 0);
  assert_int_equal(d.runs, 2);
  assert_int_equal(d.by_status[KP_RUN_COMPLETED], 1);
  assert_int_equal(d.by_status[KP_RUN_QUEUED], 1);
  assert_int_equal(d.nmetrics, 1);
  assert_string_equal(d.metrics[0].name, "acc");
  assert_int_equal(d.metrics[0].runs, 2);
  assert_true(d.metrics[0].min == 0.5);
  assert_string_equal(d.metrics[0].min_run, "alpha_2");
  assert_true(d.metrics[0].max == 0.75);
  assert_string_equal(d.metrics[0].max_run, "alpha_1");
  assert_string_equal(d.metrics[0].latest_run, "alpha_2");
  assert_int_equal(d.nrecent, 2);
  assert_string_equal(d.recent[0].id, "alpha_2");
  kp_experiment_detail_free(&d);
}

static void test_store__tags(void **state) {
  kp_store *s = *state;
  char id[256];
  const char *tk[] = {"b", "a"}, *tv[] = {"2", "1"};
  kp_run_new r = {.experiment = "exp", .compute = "cpu", .source = "/s", .entry = "e", .snapshot = "0",
                  .tag_keys = tk, .tag_values = tv, .ntags = 2};
  assert_int_equal(kp_store_run_create(s, &r, id, sizeof id), 0);
  assert_int_equal(kp_store_tag_set(s, id, "a", "one"), 0);
  assert_int_equal(kp_store_tag_set(s, id, "", "x"), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  kp_tag *t;
  size_t n;
  assert_int_equal(kp_store_tag_list(s, id, &t, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].key, "a");
  assert_string_equal(t[0].value, "one");
  assert_string_equal(t[1].key, "b");
  assert_string_equal(t[1].value, "2");
  kp_tags_free(t, n);
  /* removing is all or none */
  const char *rm[] = {"a", "zz"};
  assert_int_equal(kp_store_tag_remove(s, id, rm, 2), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_tag_list(s, id, &t, &n), 0);
  assert_int_equal(n, 2);
  kp_tags_free(t, n);
  assert_int_equal(kp_store_tag_remove(s, id, rm, 1), 0);
  assert_int_equal(kp_store_tag_list(s, id, &t, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(t[0].key, "b");
  kp_tags_free(t, n);
  assert_int_equal(kp_store_tag_remove(s, "nope_9", rm, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

static void test_store__scheduling(void **state) {
  kp_store *s = *state;
  assert_int_equal(kp_store_compute_create(s, "one", "local", 1), 0);
  char a[256], b[256], c[256];
  new_run(s, "exp", "one", a, sizeof a);
  new_run(s, "exp", "one", b, sizeof b);
  new_run(s, "exp", "gone", c, sizeof c);
  kp_node_claim claim;
  int max = 0;
  /* the second run waits while the first is queued before it, and while it holds the node */
  assert_int_equal(kp_store_run_claim_node(s, b, &claim, &max), 0);
  assert_int_equal(claim, KP_CLAIM_WAIT);
  assert_int_equal(kp_store_run_claim_node(s, a, &claim, &max), 0);
  assert_int_equal(claim, KP_CLAIM_TAKEN);
  assert_int_equal(max, 1);
  assert_int_equal(status_of(s, a), KP_RUN_PREPARING);
  assert_int_equal(kp_store_run_claim_node(s, b, &claim, &max), 0);
  assert_int_equal(claim, KP_CLAIM_WAIT);
  assert_int_equal(status_of(s, b), KP_RUN_QUEUED);
  kp_run_transition done = {.to = KP_RUN_COMPLETED, .end = 1};
  assert_int_equal(kp_store_run_transition(s, a, &done), 0);
  assert_int_equal(kp_store_run_request_cancel(s, b, 5, "no longer needed"), 0);
  assert_int_equal(kp_store_run_claim_node(s, b, &claim, &max), 0);
  assert_int_equal(claim, KP_CLAIM_CANCELED);
  assert_int_equal(kp_store_run_claim_node(s, c, &claim, &max), 0);
  assert_int_equal(claim, KP_CLAIM_NO_TARGET);
  assert_int_equal(kp_store_run_claim_node(s, "nope_9", &claim, &max), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* cancel: recorded while active, refused once ended; Canceled takes the reason */
  assert_int_equal(kp_store_run_request_cancel(s, a, 5, "x"), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_run_request_cancel(s, "nope_9", 5, "x"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_run_transition cancel = {.to = KP_RUN_CANCELED, .end = 1};
  assert_int_equal(kp_store_run_transition(s, b, &cancel), 0);
  kp_run r;
  assert_int_equal(kp_store_run_get(s, b, &r), 0);
  assert_int_equal(r.cancel_requested, 1);
  assert_true(r.cancel_grace == 5);
  assert_string_equal(r.error, "no longer needed");
  kp_run_free(&r);
  /* only a queued run takes a supervisor */
  assert_int_equal(kp_store_run_attach_supervisor(s, c, 4242, 77), 0);
  assert_int_equal(kp_store_run_attach_supervisor(s, a, 4242, 77), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_run_attach_supervisor(s, "nope_9", 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_run_attach_entry(s, c, 4243, 78), 0);
  assert_int_equal(kp_store_run_get(s, c, &r), 0);
  assert_int_equal(r.supervisor_pid, 4242);
  assert_int_equal(r.supervisor_start, 77);
  assert_int_equal(r.entry_pid, 4243);
  kp_run_free(&r);
  kp_run *act;
  size_t n;
  assert_int_equal(kp_store_run_list_active(s, &act, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(act[0].id, c);
  kp_runs_free(act, n);
}

static void test_store__files_and_deletes(void **state) {
  kp_store *s = *state;
  char a[256], b[256];
  new_run(s, "exp", "cpu", a, sizeof a);
  new_run(s, "other", "cpu", b, sizeof b);
  kp_file_entry fa[] = {{.path = "outputs/m.npz", .sha256 = "f1", .size = 100}, {.path = "logs/x", .sha256 = "f2", .size = 5}};
  kp_file_entry fb[] = {{.path = "outputs/m.npz", .sha256 = "f1", .size = 100}};
  assert_int_equal(kp_store_run_files_put(s, a, fa, 2), 0);
  assert_int_equal(kp_store_run_files_put(s, b, fb, 1), 0);
  assert_int_equal(kp_store_run_files_put(s, "nope_9", fb, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  int64_t nf, bytes;
  const char *ids[] = {a};
  assert_int_equal(kp_store_runs_files_size(s, ids, 1, &nf, &bytes), 0);
  assert_int_equal(nf, 2);
  assert_int_equal(bytes, 105);
  char **files, **snaps;
  size_t nfl, ns;
  assert_int_equal(kp_store_runs_blobs(s, ids, 1, &files, &nfl, &snaps, &ns), 0);
  assert_int_equal(nfl, 2);
  assert_int_equal(ns, 1);
  assert_string_equal(snaps[0], "0123");
  kp_strings_free(files, nfl);
  kp_strings_free(snaps, ns);
  kp_metric_point p = {.name = "loss", .step = -1, .time = 1, .value = 1};
  kp_ingest_batch batch = {.from = 0, .to = 1, .points = &p, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, a, &batch), 0);
  kp_run_brief *v;
  size_t n;
  assert_int_equal(kp_store_experiment_runs(s, "exp", &v, &n), 0);
  assert_int_equal(n, 1);
  kp_run_briefs_free(v, n);
  assert_int_equal(kp_store_experiment_runs(s, "nope", &v, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_runs(s, a, &v, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  int sweep = 1;
  assert_int_equal(kp_store_run_is_sweep(s, a, &sweep), 0);
  assert_int_equal(sweep, 0);
  /* blobs still referenced after deleting run a: f1 (run b's file) and the snapshot */
  assert_int_equal(kp_store_begin(s), 0);
  assert_int_equal(kp_store_runs_delete(s, ids, 1), 0);
  assert_int_equal(kp_store_experiment_delete(s, "exp"), 0);
  assert_int_equal(kp_store_commit(s), 0);
  const char *cand[] = {"f1", "f2", "0123", "zz"};
  unsigned char used[4];
  assert_int_equal(kp_store_blobs_referenced(s, cand, 4, used), 0);
  assert_int_equal(used[0], 1);
  assert_int_equal(used[1], 0);
  assert_int_equal(used[2], 1);
  assert_int_equal(used[3], 0);
  kp_run r;
  assert_int_equal(kp_store_run_get(s, a, &r), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_metric_point *pts;
  assert_int_equal(kp_store_metric_series(s, a, "loss", &pts, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_experiment_delete(s, "exp"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_store_counts cnt;
  assert_int_equal(kp_store_counts_get(s, &cnt), 0);
  assert_int_equal(cnt.experiments, 1);
  assert_int_equal(cnt.runs, 1);
  assert_int_equal(cnt.models, 0);
  char **sl;
  assert_int_equal(kp_store_snapshot_list(s, &sl, &n), 0);
  assert_int_equal(n, 1);
  kp_strings_free(sl, n);
}

static void test_store__run_queries(void **state) {
  kp_store *s = *state;
  char a[256], b[256], c[256], d[256];
  new_run(s, "exp", "cpu", a, sizeof a);
  new_run(s, "exp", "cpu", b, sizeof b);
  new_run(s, "exp", "cpu", c, sizeof c);
  new_run(s, "other", "cpu", d, sizeof d);
  kp_metric_point pa[] = {{.name = "acc", .step = -1, .time = 1, .value = 0.5}, {.name = "acc", .step = -1, .time = 2, .value = 0.9},
                          {.name = "loss", .step = -1, .time = 2, .value = 0.1}};
  kp_metric_point pb = {.name = "acc", .step = -1, .time = 1, .value = 0.7};
  kp_ingest_batch ba = {.from = 0, .to = 3, .points = pa, .npoints = 3}, bb = {.from = 0, .to = 1, .points = &pb, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, a, &ba), 0);
  assert_int_equal(kp_store_metrics_ingest(s, b, &bb), 0);
  kp_run_transition done = {.to = KP_RUN_COMPLETED, .end = 1};
  assert_int_equal(kp_store_run_transition(s, b, &done), 0);
  kp_run *v;
  size_t n;
  kp_run_query newest = {0};
  assert_int_equal(kp_store_run_list(s, &newest, &v, &n), 0);
  assert_int_equal(n, 4);
  assert_string_equal(v[0].id, d);
  assert_string_equal(v[3].id, a);
  kp_runs_free(v, n);
  /* by a metric, best first; runs without it last, newest first among them */
  kp_run_query bym = {.experiment = "exp", .order = KP_ORDER_METRIC, .order_metric = "acc", .desc = 1};
  assert_int_equal(kp_store_run_list(s, &bym, &v, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(v[0].id, a);  /* its latest acc: 0.9 */
  assert_string_equal(v[1].id, b);
  assert_string_equal(v[2].id, c);
  kp_runs_free(v, n);
  kp_run_query st = {.has_status = 1, .status = KP_RUN_COMPLETED};
  assert_int_equal(kp_store_run_list(s, &st, &v, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].id, b);
  kp_runs_free(v, n);
  kp_run_query lim = {.limit = 2};
  assert_int_equal(kp_store_run_list(s, &lim, &v, &n), 0);
  assert_int_equal(n, 2);
  kp_runs_free(v, n);
  kp_run_query bad = {.order = KP_ORDER_METRIC};
  assert_int_equal(kp_store_run_list(s, &bad, &v, &n), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  int yes = 0;
  assert_int_equal(kp_store_metric_exists(s, "acc", &yes), 0);
  assert_int_equal(yes, 1);
  assert_int_equal(kp_store_metric_exists(s, "Acc", &yes), 0);
  assert_int_equal(yes, 0);
  double val = 0;
  int found = 0;
  assert_int_equal(kp_store_metric_latest_value(s, a, "acc", &val, &found), 0);
  assert_int_equal(found, 1);
  assert_true(val == 0.9);
  assert_int_equal(kp_store_metric_latest_value(s, c, "acc", &val, &found), 0);
  assert_int_equal(found, 0);
  kp_metric_latest *lt;
  assert_int_equal(kp_store_metrics_latest(s, a, &lt, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(lt[0].name, "acc");
  assert_true(lt[0].value == 0.9);
  assert_int_equal(lt[0].step, 1);
  assert_string_equal(lt[1].name, "loss");
  kp_metric_latest_free(lt, n);
  char **names;
  assert_int_equal(kp_store_metric_names(s, a, &names, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(names[1], "loss");
  kp_strings_free(names, n);
  /* following: the newest point already there first, then only newer ones */
  int64_t cur = -1;
  kp_metric_latest m;
  assert_int_equal(kp_store_metric_follow(s, a, NULL, &cur, &m, &found), 0);
  assert_int_equal(found, 1);
  assert_string_equal(m.name, "loss");
  free(m.name);
  assert_int_equal(kp_store_metric_follow(s, a, NULL, &cur, &m, &found), 0);
  assert_int_equal(found, 0);
  kp_metric_point more[] = {{.name = "acc", .step = -1, .time = 3, .value = 0.95}, {.name = "loss", .step = -1, .time = 3, .value = 0.05}};
  kp_ingest_batch bm = {.from = 3, .to = 5, .points = more, .npoints = 2};
  assert_int_equal(kp_store_metrics_ingest(s, a, &bm), 0);
  assert_int_equal(kp_store_metric_follow(s, a, NULL, &cur, &m, &found), 0);
  assert_int_equal(found, 1);
  assert_string_equal(m.name, "loss");
  assert_true(m.value == 0.05);
  free(m.name);
  int64_t cur2 = -1;
  assert_int_equal(kp_store_metric_follow(s, a, "acc", &cur2, &m, &found), 0);
  assert_int_equal(found, 1);
  assert_true(m.value == 0.95);
  assert_int_equal(m.step, 2);
  free(m.name);
  char *spec = (char *)"x";
  assert_int_equal(kp_store_run_sweep_spec(s, a, &spec), 0);
  assert_null(spec);
  assert_int_equal(kp_store_metrics_latest(s, "nope_9", &lt, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_names(s, "nope_9", &names, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* ---- sweeps ------------------------------------------------------------------ */
static void new_sweep(kp_store *s, const char *experiment, char *id, size_t n) {
  kp_sweep_new w = {.experiment = experiment, .compute = "cpu", .source = "/src", .entry = "train.sh",
                    .args_json = "[\"--epochs\", \"3\"]", .snapshot = "0123", .snapshot_bytes = 42,
                    .spec = "{\"experiment\": \"e\"}"};
  assert_int_equal(kp_store_sweep_create(s, &w, id, n), 0);
}

/* a child run of sweep 'sw' tagged sweep_index=idx, as the controller submits it */
static void new_child(kp_store *s, const char *sw, const char *idx, char *id, size_t n) {
  const char *keys[] = {"sweep", "sweep_index"}, *values[] = {sw, idx};
  kp_run_new r = {.experiment = "exp", .compute = "cpu", .source = "/src", .entry = "train.sh", .args_json = "[]",
                  .snapshot = "0123", .parent_id = sw, .tag_keys = keys, .tag_values = values, .ntags = 2};
  assert_int_equal(kp_store_run_create(s, &r, id, n), 0);
}

static void test_store__sweep_create_and_get(void **state) {
  kp_store *s = *state;
  char sw[256], other[256];
  kp_sweep_new w = {.experiment = "exp", .compute = "cpu", .source = "/src", .entry = "train.sh", .snapshot = "0123",
                    .spec = "{}"};
  /* the children's target must exist; a sweep needs its file */
  assert_int_equal(kp_store_sweep_create(s, &w, sw, sizeof sw), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_non_null(strstr(kp_store_last_error()->message, "cpu"));
  assert_int_equal(kp_store_compute_create(s, "cpu", "local", 2), 0);
  w.spec = NULL;
  assert_int_equal(kp_store_sweep_create(s, &w, sw, sizeof sw), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  w.spec = "{}";
  w.experiment = "";
  assert_int_equal(kp_store_sweep_create(s, &w, sw, sizeof sw), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  kp_store_counts cnt;
  assert_int_equal(kp_store_counts_get(s, &cnt), 0);
  assert_int_equal(cnt.runs, 0);  /* nothing was recorded */
  new_run(s, "exp", "cpu", other, sizeof other);
  new_sweep(s, "exp", sw, sizeof sw);
  assert_string_equal(sw, "exp_2");
  kp_sweep g;
  assert_int_equal(kp_store_sweep_get(s, sw, &g), 0);
  assert_string_equal(g.run.id, sw);
  assert_string_equal(g.run.experiment, "exp");
  assert_int_equal(g.run.status, KP_RUN_RUNNING);  /* running from the start */
  assert_string_equal(g.run.compute, "sweep:cpu");
  assert_string_equal(g.compute, "cpu");
  assert_string_equal(g.run.args_json, "[\"--epochs\", \"3\"]");
  assert_string_equal(g.run.snapshot, "0123");
  assert_int_equal(g.run.snapshot_bytes, 42);
  assert_true(g.run.started > 0);
  assert_null(g.run.parent_id);
  assert_string_equal(g.spec, "{\"experiment\": \"e\"}");
  assert_null(g.env_json);
  assert_null(g.stop_reason);
  assert_null(g.best_child);
  assert_int_equal(g.trials, 0);
  kp_sweep_free(&g);
  int yes = 0;
  assert_int_equal(kp_store_run_is_sweep(s, sw, &yes), 0);
  assert_int_equal(yes, 1);
  /* a run that is no sweep, an unknown id */
  assert_int_equal(kp_store_sweep_get(s, other, &g), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_get(s, "nope_1", &g), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_non_null(strstr(kp_store_last_error()->message, "nope_1"));
  /* inside the caller's transaction: a rollback takes it back */
  char sw2[256];
  assert_int_equal(kp_store_begin(s), 0);
  new_sweep(s, "exp", sw2, sizeof sw2);
  kp_store_rollback(s);
  assert_int_equal(kp_store_sweep_get(s, sw2, &g), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  new_sweep(s, "other", sw2, sizeof sw2);
  kp_sweep *v;
  size_t n;
  assert_int_equal(kp_store_sweep_list(s, &v, &n), 0);
  assert_int_equal(n, 2);  /* oldest first */
  assert_string_equal(v[0].run.id, sw);
  assert_string_equal(v[1].run.id, sw2);
  assert_string_equal(v[1].run.experiment, "other");
  kp_sweeps_free(v, n);
}

static void test_store__sweep_trials(void **state) {
  kp_store *s = *state;
  char sw[256], plain[256], child[256], child2[256];
  assert_int_equal(kp_store_compute_create(s, "cpu", "local", 2), 0);
  new_sweep(s, "exp", sw, sizeof sw);
  new_run(s, "exp", "cpu", plain, sizeof plain);
  /* recording trials */
  assert_int_equal(kp_store_sweep_trial_add(s, sw, 0, "{\"--x\":\"0.5\"}"), 0);
  assert_int_equal(kp_store_sweep_trial_add(s, sw, 0, "{\"--x\":\"0.6\"}"), -1);
  assert_int_equal(code(), KP_STORE_EEXISTS);
  assert_int_equal(kp_store_sweep_trial_add(s, sw, -1, "{}"), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_trial_add(s, sw, 1, NULL), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_trial_add(s, "nope_1", 0, "{}"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_trial_add(s, plain, 0, "{}"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_sweep_trial *t;
  size_t n;
  assert_int_equal(kp_store_sweep_trial_list(s, sw, "acc", &t, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(t[0].idx, 0);
  assert_string_equal(t[0].params, "{\"--x\":\"0.5\"}");
  assert_null(t[0].run_id);
  assert_int_equal(t[0].has_run, 0);
  assert_null(t[0].error);
  assert_null(t[0].decision);
  assert_int_equal(t[0].evaluated, 0);
  assert_int_equal(t[0].nvalues, 0);
  kp_sweep_trials_free(t, n);
  assert_int_equal(kp_store_sweep_trial_list(s, "nope_1", NULL, &t, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* a controller that died between submitting and linking: the child is found by its tag */
  new_child(s, sw, "0", child, sizeof child);
  char *found = (char *)"x";
  assert_int_equal(kp_store_sweep_child_by_index(s, sw, 0, &found), 0);
  assert_non_null(found);
  assert_string_equal(found, child);
  free(found);
  assert_int_equal(kp_store_sweep_child_by_index(s, sw, 1, &found), 0);
  assert_null(found);
  assert_int_equal(kp_store_sweep_child_by_index(s, "nope_1", 0, &found), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* linking */
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 0, child), 0);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 0, child), 0);  /* again: the same run */
  new_child(s, sw, "1", child2, sizeof child2);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 0, child2), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 7, child2), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_trial_add(s, sw, 1, "{\"--x\":\"0.7\"}"), 0);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 1, plain), -1);  /* not the sweep's child */
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 1, "nope_9"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_trial_attach_run(s, sw, 1, NULL), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  /* the child's curve of the metric asked for, NaN kept */
  kp_metric_point pts[] = {{.name = "acc", .step = -1, .time = 1, .value = 0.5}, {.name = "acc", .step = -1, .time = 2, .value = NAN},
                           {.name = "loss", .step = -1, .time = 2, .value = 3}, {.name = "acc", .step = -1, .time = 3, .value = 0.75}};
  kp_ingest_batch b = {.from = 0, .to = 4, .points = pts, .npoints = 4};
  assert_int_equal(kp_store_metrics_ingest(s, child, &b), 0);
  /* the policy: intervals looked at, and the decision (kept when none is given) */
  assert_int_equal(kp_store_sweep_trial_evaluated(s, sw, 0, 2, "bandit: 0.5 < 0.6 at interval 2"), 0);
  assert_int_equal(kp_store_sweep_trial_evaluated(s, sw, 0, 3, NULL), 0);
  assert_int_equal(kp_store_sweep_trial_evaluated(s, sw, 9, 1, NULL), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_trial_evaluated(s, "nope_1", 0, 1, NULL), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_trial_evaluated(s, sw, 0, -1, NULL), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  /* a child that could not be submitted */
  assert_int_equal(kp_store_sweep_trial_set_error(s, sw, 1, "the child run could not be submitted"), 0);
  assert_int_equal(kp_store_sweep_trial_set_error(s, sw, 1, NULL), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_trial_set_error(s, sw, 5, "x"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_run_transition fail = {.to = KP_RUN_FAILED, .end = 1, .error = "exit 3"};
  assert_int_equal(kp_store_run_transition(s, child, &fail), 0);
  assert_int_equal(kp_store_sweep_trial_list(s, sw, "acc", &t, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].run_id, child);
  assert_int_equal(t[0].has_run, 1);
  assert_int_equal(t[0].run_status, KP_RUN_FAILED);
  assert_string_equal(t[0].run_error, "exit 3");
  assert_null(t[0].error);
  assert_int_equal(t[0].evaluated, 3);
  assert_string_equal(t[0].decision, "bandit: 0.5 < 0.6 at interval 2");
  assert_int_equal(t[0].nvalues, 3);
  assert_true(t[0].values[0] == 0.5);
  assert_true(isnan(t[0].values[1]));
  assert_true(t[0].values[2] == 0.75);
  assert_int_equal(t[1].idx, 1);
  assert_null(t[1].run_id);
  assert_string_equal(t[1].error, "the child run could not be submitted");
  assert_int_equal(t[1].nvalues, 0);
  kp_sweep_trials_free(t, n);
  assert_int_equal(kp_store_sweep_trial_list(s, sw, NULL, &t, &n), 0);  /* no metric: no values */
  assert_null(t[0].values);
  assert_int_equal(t[0].nvalues, 0);
  kp_sweep_trials_free(t, n);
  kp_sweep g;
  assert_int_equal(kp_store_sweep_get(s, sw, &g), 0);
  assert_int_equal(g.trials, 2);
  kp_sweep_free(&g);
  /* deleting the sweep takes its trials */
  const char *ids[] = {sw, child, child2};
  assert_int_equal(kp_store_runs_delete(s, ids, 3), 0);
  assert_int_equal(kp_store_sweep_trial_list(s, sw, NULL, &t, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

static void test_store__sweep_life(void **state) {
  kp_store *s = *state;
  char sw[256], child[256];
  assert_int_equal(kp_store_compute_create(s, "cpu", "local", 2), 0);
  new_sweep(s, "exp", sw, sizeof sw);
  new_child(s, sw, "0", child, sizeof child);
  /* its controller */
  assert_int_equal(kp_store_sweep_attach_controller(s, sw, 1234, 99), 0);
  kp_run r;
  assert_int_equal(kp_store_run_get(s, sw, &r), 0);
  assert_int_equal(r.supervisor_pid, 1234);
  assert_int_equal(r.supervisor_start, 99);
  kp_run_free(&r);
  assert_int_equal(kp_store_sweep_attach_controller(s, "nope_1", 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_attach_controller(s, child, 1, 1), -1);  /* a run, not a sweep */
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_reopen(s, sw, 1, 1), -1);  /* it is running */
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  /* the best child so far, logged on the parent once per step */
  assert_int_equal(kp_store_sweep_log_best(s, sw, 0, 0.5), 0);
  assert_int_equal(kp_store_sweep_log_best(s, sw, 1, 0.75), 0);
  assert_int_equal(kp_store_sweep_log_best(s, sw, 1, 0.8), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_sweep_log_best(s, sw, -1, 0.8), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_log_best(s, "nope_1", 0, 0.8), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_metric_point *p;
  size_t n;
  assert_int_equal(kp_store_metric_series(s, sw, "best_child_by_primary_metric", &p, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(p[1].step, 1);
  assert_true(p[1].value == 0.75);
  free(p);
  /* ending it */
  kp_sweep_end bad = {.status = KP_RUN_RUNNING, .reason = "x"}, noreason = {.status = KP_RUN_COMPLETED};
  assert_int_equal(kp_store_sweep_end(s, sw, &bad), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_sweep_end(s, sw, &noreason), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  kp_sweep_end done = {.status = KP_RUN_COMPLETED, .reason = "max_total_runs reached", .best_child = child, .best_value = 0.75};
  assert_int_equal(kp_store_sweep_end(s, "nope_1", &done), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_end(s, sw, &done), 0);
  kp_sweep g;
  assert_int_equal(kp_store_sweep_get(s, sw, &g), 0);
  assert_int_equal(g.run.status, KP_RUN_COMPLETED);
  assert_true(g.run.ended > 0);
  assert_null(g.run.error);
  assert_string_equal(g.stop_reason, "max_total_runs reached");
  assert_string_equal(g.best_child, child);
  kp_sweep_free(&g);
  kp_tag *tags;
  assert_int_equal(kp_store_tag_list(s, sw, &tags, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(tags[0].key, "best_child_run_id");
  assert_string_equal(tags[0].value, child);
  assert_string_equal(tags[1].key, "best_metric_value");
  assert_true(strtod(tags[1].value, NULL) == 0.75);
  kp_tags_free(tags, n);
  /* once ended: no second end (nothing changes), no controller, no resume */
  kp_sweep_end again = {.status = KP_RUN_FAILED, .reason = "late"};
  assert_int_equal(kp_store_sweep_end(s, sw, &again), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_sweep_get(s, sw, &g), 0);
  assert_int_equal(g.run.status, KP_RUN_COMPLETED);
  assert_string_equal(g.stop_reason, "max_total_runs reached");
  kp_sweep_free(&g);
  assert_int_equal(kp_store_sweep_attach_controller(s, sw, 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_sweep_reopen(s, sw, 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  /* canceled: the error is the cancel reason; failed on its own: the stop reason, and no resume */
  char c2[256], f3[256], d4[256];
  new_sweep(s, "exp", c2, sizeof c2);
  int requested = 1;
  char *reason = (char *)"x";
  assert_int_equal(kp_store_sweep_cancel_requested(s, c2, &requested, &reason), 0);
  assert_int_equal(requested, 0);
  assert_null(reason);
  assert_int_equal(kp_store_run_request_cancel(s, c2, 5, "stop now"), 0);
  assert_int_equal(kp_store_sweep_cancel_requested(s, c2, &requested, &reason), 0);
  assert_int_equal(requested, 1);
  assert_string_equal(reason, "stop now");
  free(reason);
  assert_int_equal(kp_store_sweep_cancel_requested(s, "nope_1", &requested, &reason), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_sweep_cancel_requested(s, child, &requested, &reason), -1);  /* a run, not a sweep */
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_sweep_end cancel = {.status = KP_RUN_CANCELED, .reason = "the sweep was canceled (stop now)"};
  assert_int_equal(kp_store_sweep_end(s, c2, &cancel), 0);
  assert_int_equal(kp_store_sweep_get(s, c2, &g), 0);
  assert_int_equal(g.run.status, KP_RUN_CANCELED);
  assert_string_equal(g.run.error, "stop now");
  assert_null(g.best_child);
  kp_sweep_free(&g);
  new_sweep(s, "exp", f3, sizeof f3);
  kp_sweep_end failed = {.status = KP_RUN_FAILED, .reason = "the first 3 child runs failed"};
  assert_int_equal(kp_store_sweep_end(s, f3, &failed), 0);
  assert_int_equal(kp_store_sweep_get(s, f3, &g), 0);
  assert_int_equal(g.run.status, KP_RUN_FAILED);
  assert_string_equal(g.run.error, "the first 3 child runs failed");
  kp_sweep_free(&g);
  assert_int_equal(kp_store_sweep_reopen(s, f3, 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  /* its controller died (the parent Failed without a stop reason): resumed */
  new_sweep(s, "exp", d4, sizeof d4);
  kp_run_transition died = {.to = KP_RUN_FAILED, .end = 1, .error = "its supervisor died"};
  assert_int_equal(kp_store_run_transition(s, d4, &died), 0);
  assert_int_equal(kp_store_sweep_reopen(s, d4, 42, 7), 0);
  assert_int_equal(kp_store_sweep_get(s, d4, &g), 0);
  assert_int_equal(g.run.status, KP_RUN_RUNNING);
  assert_null(g.run.error);
  assert_true(g.run.ended == 0);
  assert_int_equal(g.run.supervisor_pid, 42);
  assert_int_equal(g.run.supervisor_start, 7);
  kp_sweep_free(&g);
  assert_int_equal(kp_store_sweep_reopen(s, "nope_1", 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  kp_sweep *v;
  assert_int_equal(kp_store_sweep_list(s, &v, &n), 0);
  assert_int_equal(n, 4);
  assert_string_equal(v[0].best_child, child);
  assert_null(v[1].best_child);
  kp_sweeps_free(v, n);
}

/* tokens (the tracking server): the sha256 is stored, names are unique,
 * a revoked token is no longer found, the scope is kept */
static void test_store__tokens(void **state) {
  kp_store *s = *state;
  const char *h1 = "1111111111111111111111111111111111111111111111111111111111111111";
  const char *h2 = "2222222222222222222222222222222222222222222222222222222222222222";
  assert_int_equal(kp_store_token_create(s, "writer", h1, 0), 0);
  assert_int_equal(kp_store_token_create(s, "reader", h2, 1), 0);
  assert_int_equal(kp_store_token_create(s, "writer", "33", 0), -1);
  assert_int_equal(code(), KP_STORE_EEXISTS);
  int found = 0, ro = 0;
  assert_int_equal(kp_store_token_check(s, h2, &found, &ro), 0);
  assert_int_equal(found, 1);
  assert_int_equal(ro, 1);
  assert_int_equal(kp_store_token_check(s, h1, &found, &ro), 0);
  assert_int_equal(found, 1);
  assert_int_equal(ro, 0);
  assert_int_equal(kp_store_token_check(s, "44", &found, &ro), 0);
  assert_int_equal(found, 0);
  kp_token *t;
  size_t n;
  assert_int_equal(kp_store_token_list(s, &t, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(t[0].name, "reader");  /* by name */
  assert_int_equal(t[0].read_only, 1);
  assert_true(t[0].last_used > 0);  /* checked above */
  assert_string_equal(t[1].name, "writer");
  kp_tokens_free(t, n);
  assert_int_equal(kp_store_token_revoke(s, "reader"), 0);
  assert_int_equal(kp_store_token_check(s, h2, &found, &ro), 0);
  assert_int_equal(found, 0);
  assert_int_equal(kp_store_token_revoke(s, "reader"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* a series downsampled in the store: at most max_points points, in step
 * order, each an original one, the global min and max among them */
static void test_store__series_downsampled(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  enum { N = 1000 };
  kp_metric_point *pts = calloc(N, sizeof *pts);
  assert_non_null(pts);
  for (int i = 0; i < N; i++) {
    pts[i].name = "loss";
    pts[i].step = i;
    pts[i].time = 100 + i;
    pts[i].value = (double)(i % 10);  /* 0..9 repeating */
  }
  pts[123].value = -50;
  pts[877].value = 70;
  pts[500].value = NAN;
  kp_ingest_batch b = {.from = 0, .to = 1, .points = pts, .npoints = N};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
  free(pts);
  kp_metric_point *p;
  size_t n;
  int64_t total;
  const int64_t maxes[] = {2, 3, 10, 100};
  for (size_t k = 0; k < sizeof maxes / sizeof maxes[0]; k++) {
    assert_int_equal(kp_store_metric_series_downsampled(s, id, "loss", maxes[k], &p, &n, &total), 0);
    assert_int_equal(total, N);
    assert_true(n >= 2 && (int64_t)n <= maxes[k]);
    int lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
      if (i) assert_true(p[i].step > p[i - 1].step);
      assert_true(p[i].time == 100 + (double)p[i].step);
      if (p[i].value == -50) lo = 1;
      if (p[i].value == 70) hi = 1;
    }
    assert_true(lo && hi);
    free(p);
  }
  /* 10 buckets of 100 (0..9 each, the min and max): 20 points */
  assert_int_equal(kp_store_metric_series_downsampled(s, id, "loss", 20, &p, &n, &total), 0);
  assert_int_equal(n, 20);
  free(p);
  /* no more points than max_points: all of them */
  assert_int_equal(kp_store_metric_series_downsampled(s, id, "loss", N, &p, &n, &total), 0);
  assert_int_equal(n, N);
  assert_true(isnan(p[500].value));
  free(p);
  assert_int_equal(kp_store_metric_series_downsampled(s, id, "loss", 1, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_metric_series_downsampled(s, id, "nope", 10, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_series_downsampled(s, "nope", "loss", 10, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* a step window of a series (a zoomed chart): the window's own points, all
 * of them when they fit in max_points, else downsampled over the window
 * with its min and max kept; an empty window is no error, a reversed one is */
static void test_store__series_window(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  enum { N = 1000 };
  kp_metric_point *pts = calloc(N, sizeof *pts);
  assert_non_null(pts);
  for (int i = 0; i < N; i++) {
    pts[i].name = "loss";
    pts[i].step = i;
    pts[i].time = 100 + i;
    pts[i].value = (double)(i % 10);
  }
  pts[123].value = -50;
  pts[877].value = 70;
  pts[50].value = -99;  /* outside the windows below */
  kp_ingest_batch b = {.from = 0, .to = 1, .points = pts, .npoints = N};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
  free(pts);
  kp_metric_point *p;
  size_t n;
  int64_t total;
  /* 100 points fit in 1000: every one, in step order */
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", 100, 199, 1000, &p, &n, &total), 0);
  assert_int_equal(total, 100);
  assert_int_equal(n, 100);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(p[i].step, 100 + (int64_t)i);
    assert_true(p[i].time == 100 + (double)p[i].step);
  }
  assert_true(p[23].value == -50);
  free(p);
  /* 800 points in at most 10: the window's min and max, nothing outside it */
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", 100, 899, 10, &p, &n, &total), 0);
  assert_int_equal(total, 800);
  assert_true(n >= 2 && n <= 10);
  int lo = 0, hi = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(p[i].step >= 100 && p[i].step <= 899);
    if (i) assert_true(p[i].step > p[i - 1].step);
    if (p[i].value == -50) lo = 1;
    if (p[i].value == 70) hi = 1;
  }
  assert_true(lo && hi);
  free(p);
  /* the whole range as the unbounded downsampled series */
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", INT64_MIN, INT64_MAX, 20, &p, &n, &total), 0);
  assert_int_equal(total, N);
  assert_int_equal(n, 20);
  free(p);
  /* an empty window of an existing metric: no points, no error */
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", 5000, 6000, 10, &p, &n, &total), 0);
  assert_int_equal(total, 0);
  assert_int_equal(n, 0);
  free(p);
  /* bad input */
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", 200, 100, 10, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_non_null(strstr(kp_store_last_error()->message, "from_step"));
  assert_int_equal(kp_store_metric_series_window(s, id, "loss", 0, 10, 1, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_metric_series_window(s, id, "nope", 0, 10, 10, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_series_window(s, "nope", "loss", 0, 10, 10, &p, &n, &total), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* server-sent events: a run's points in the order stored, after a cursor */
static void ingest2(kp_store *s, const char *id, uint64_t from, const char *name, double v0, double v1) {
  kp_metric_point p[2] = {{.name = name, .step = -1, .time = 10, .value = v0}, {.name = name, .step = -1, .time = 11, .value = v1}};
  kp_ingest_batch b = {.from = from, .to = from + 1, .points = p, .npoints = 2};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
}

static void test_store__metric_events(void **state) {
  kp_store *s = *state;
  char a[256], b[256];
  new_run(s, "exp", "cpu", a, sizeof a);
  new_run(s, "exp", "cpu", b, sizeof b);
  ingest2(s, a, 0, "loss", 1, 2);
  ingest2(s, b, 0, "other", 100, 200);  /* another run's rows between */
  ingest2(s, a, 1, "acc", 0.5, NAN);
  kp_metric_event *v;
  size_t n;
  /* from the first: every point of run a, in order, at most 3 at a time */
  int64_t cur = 0;
  assert_int_equal(kp_store_metric_events(s, a, &cur, 3, &v, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(v[0].name, "loss");
  assert_true(v[0].value == 1 && v[0].step == 0 && v[0].time == 10);
  assert_true(v[1].value == 2 && v[1].step == 1);
  assert_string_equal(v[2].name, "acc");
  assert_true(v[0].seq < v[1].seq && v[1].seq < v[2].seq && cur == v[2].seq);
  kp_metric_events_free(v, n);
  assert_int_equal(kp_store_metric_events(s, a, &cur, 3, &v, &n), 0);
  assert_int_equal(n, 1);
  assert_true(isnan(v[0].value));
  kp_metric_events_free(v, n);
  int64_t end = cur;
  assert_int_equal(kp_store_metric_events(s, a, &cur, 3, &v, &n), 0);
  assert_int_equal(n, 0);
  assert_true(cur == end);
  kp_metric_events_free(v, n);
  /* from now: nothing, then only what comes after */
  int64_t now = -1;
  assert_int_equal(kp_store_metric_events(s, a, &now, 10, &v, &n), 0);
  assert_int_equal(n, 0);
  assert_true(now >= end);
  kp_metric_events_free(v, n);
  ingest2(s, a, 2, "loss", 3, 4);
  assert_int_equal(kp_store_metric_events(s, a, &now, 10, &v, &n), 0);
  assert_int_equal(n, 2);
  assert_true(v[0].value == 3 && v[0].step == 2 && v[1].value == 4 && v[1].step == 3);
  kp_metric_events_free(v, n);
  /* the resumed cursor gives the same points again */
  assert_int_equal(kp_store_metric_events(s, a, &end, 10, &v, &n), 0);
  assert_int_equal(n, 2);
  assert_true(v[0].value == 3);
  kp_metric_events_free(v, n);
  /* run b's own points only */
  int64_t cb = 0;
  assert_int_equal(kp_store_metric_events(s, b, &cb, 10, &v, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(v[1].name, "other");
  kp_metric_events_free(v, n);
  /* a run with no points yet, an unknown run */
  char c[256];
  new_run(s, "exp", "cpu", c, sizeof c);
  int64_t cc = 0;
  assert_int_equal(kp_store_metric_events(s, c, &cc, 10, &v, &n), 0);
  assert_int_equal(n, 0);
  kp_metric_events_free(v, n);
  cc = 0;
  assert_int_equal(kp_store_metric_events(s, "nope", &cc, 10, &v, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* Distributed runs: rank > 0's points are kept with their rank, apart from
 * rank 0's, which every other op (series, latest, names, search) reads. */
static void test_store__metrics_per_rank(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  const kp_metric_point pts[] = {
    {.name = "acc", .step = -1, .time = 1, .value = 10},           {.name = "acc", .step = -1, .time = 2, .value = 20, .rank = 1},
    {.name = "acc", .step = -1, .time = 3, .value = 21, .rank = 1}, {.name = "acc", .step = -1, .time = 4, .value = 11},
    {.name = "only1", .step = 5, .time = 5, .value = NAN, .rank = 1}, {.name = "acc", .step = -1, .time = 6, .value = 30, .rank = 2},
  };
  kp_ingest_batch b = {.from = 0, .to = 1, .points = pts, .npoints = sizeof pts / sizeof pts[0]};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b), 0);
  /* the next batch continues each rank's steps */
  const kp_metric_point more[] = {{.name = "acc", .step = -1, .time = 7, .value = 22, .rank = 1}};
  kp_ingest_batch b2 = {.from = 1, .to = 2, .points = more, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b2), 0);
  kp_metric_point *p;
  size_t n;
  assert_int_equal(kp_store_metric_series(s, id, "acc", &p, &n), 0);
  assert_int_equal(n, 2);
  assert_true(p[0].step == 0 && p[0].value == 10 && p[1].step == 1 && p[1].value == 11);
  free(p);
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", 0, &p, &n), 0);
  assert_int_equal(n, 2);
  free(p);
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", 1, &p, &n), 0);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(p[i].step, (int64_t)i);
    assert_true(p[i].value == 20 + (double)i);
    assert_int_equal(p[i].rank, 1);
  }
  assert_true(p[0].time == 2 && p[2].time == 7);
  free(p);
  assert_int_equal(kp_store_metric_series_rank(s, id, "only1", 1, &p, &n), 0);
  assert_true(n == 1 && p[0].step == 5 && isnan(p[0].value));
  free(p);
  /* rank 0's views: the latest acc is 11, "only1" is not rank 0's */
  double v = 0;
  int found = 0;
  assert_int_equal(kp_store_metric_latest_value(s, id, "acc", &v, &found), 0);
  assert_true(found && v == 11);
  assert_int_equal(kp_store_metric_latest_value(s, id, "only1", &v, &found), 0);
  assert_false(found);
  char **names;
  assert_int_equal(kp_store_metric_names(s, id, &names, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "acc");
  kp_strings_free(names, n);
  assert_int_equal(kp_store_metric_names_rank(s, id, 1, &names, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "acc");
  assert_string_equal(names[1], "only1");
  kp_strings_free(names, n);
  assert_int_equal(kp_store_metric_names_rank(s, id, 7, &names, &n), 0);
  assert_int_equal(n, 0);
  kp_strings_free(names, n);
  /* errors: no such series, rank, run; a negative rank in or out */
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", 3, &p, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_series_rank(s, "nope_1", "acc", 1, &p, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", -1, &p, &n), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_metric_names_rank(s, id, -1, &names, &n), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  const kp_metric_point bad[] = {{.name = "acc", .step = -1, .time = 1, .value = 1, .rank = -2}};
  kp_ingest_batch b3 = {.from = 2, .to = 3, .points = bad, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, id, &b3), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", 1, &p, &n), 0);
  assert_int_equal(n, 3);  /* nothing of the refused batch */
  free(p);
  /* a deleted run's ranks' points are gone with it */
  const char *ids[] = {id};
  assert_int_equal(kp_store_runs_delete(s, ids, 1), 0);
  assert_int_equal(kp_store_metric_series_rank(s, id, "acc", 1, &p, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

/* The error belongs to the thread that got it. */
static void *fail_in_thread(void *va) {
  kp_store_fail(KP_STORE_EEXISTS, "from the other thread");
  *(int *)va = kp_store_last_error()->code;
  return NULL;
}

static void test_store__error_per_thread(void **state) {
  (void)state;
  kp_store_fail(KP_STORE_ENOTFOUND, "here");
  int other = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fail_in_thread, &other), 0);
  pthread_join(t, NULL);
  assert_int_equal(other, KP_STORE_EEXISTS);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_string_equal(kp_store_last_error()->message, "here");
  assert_string_equal(kp_store_code_name(KP_STORE_ENOTFOUND), "not_found");
  assert_string_equal(kp_store_code_name(KP_STORE_ECONFLICT), "conflict");
}

/* ---- run search (filter.h): the conformance cases every backend passes ---- */
#define NS 12
typedef struct search_fixture {
  char id[NS][64];
  int has_acc[NS];
  double acc[NS];   /* the latest value */
  const char *bs[NS];
  int completed[NS];
} search_fixture;

/* Twelve runs of experiment "srch" (and one of "other") with known metrics,
 * params, tags and statuses; the expected answers below are computed from
 * this table, not by the store. */
static void search_setup(kp_store *s, search_fixture *fx) {
  static const char *const BS[] = {"128", "64", "large"};
  for (int i = 0; i < NS; i++) {
    new_run(s, "srch", "cpu", fx->id[i], sizeof fx->id[i]);
    fx->has_acc[i] = i % 4 != 3;
    fx->acc[i] = (i / 2) / 10.0;  /* pairs tie */
    fx->bs[i] = BS[i % 3];
    fx->completed[i] = i % 2 == 0;
    /* acc: an older step with another value, then the latest (explicit
     * steps, the latest logged first, so "latest" is by step) */
    kp_metric_point pts[] = {
      {.name = "acc", .step = 7, .time = 2, .value = fx->acc[i]},
      {.name = "acc", .step = 3, .time = 3, .value = 99},
      {.name = "loss", .step = -1, .time = 1, .value = 1 - i / 10.0},
    };
    kp_ingest_batch b = {.from = 0, .to = 1, .points = fx->has_acc[i] ? pts : pts + 2, .npoints = fx->has_acc[i] ? 3 : 1};
    assert_int_equal(kp_store_metrics_ingest(s, fx->id[i], &b), 0);
    char lr[32], name[32];
    snprintf(lr, sizeof lr, "0.%03d", i + 1);
    const char *pk[] = {"bs", "lr", "val/loss"}, *pv[] = {fx->bs[i], lr, i == 5 ? "odd name" : "x"};
    assert_int_equal(kp_store_run_params_set(s, fx->id[i], pk, pv, 3), 0);
    snprintf(name, sizeof name, "Run-%d", i);
    assert_int_equal(kp_store_tag_set(s, fx->id[i], "name", name), 0);
    assert_int_equal(kp_store_tag_set(s, fx->id[i], "kind", i % 2 ? "odd" : "even"), 0);
    if (fx->completed[i]) {
      kp_run_transition t = {.to = KP_RUN_COMPLETED, .end = 1};
      assert_int_equal(kp_store_run_transition(s, fx->id[i], &t), 0);
    }
  }
  char other[64];
  new_run(s, "other", "cpu", other, sizeof other);
  kp_metric_point p = {.name = "acc", .step = -1, .time = 1, .value = 5};
  kp_ingest_batch b = {.from = 0, .to = 1, .points = &p, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, other, &b), 0);
}

/* every page of a search, as indexes into fx->id (-1 for another run);
 * asserts that no run comes twice */
static size_t search_all(kp_store *s, const search_fixture *fx, const char *exp, const char *filter, const char *order,
                         int64_t max, int *got) {
  char *token = NULL;
  size_t total = 0;
  int pages = 0;
  do {
    kp_run_search q = {.experiment = exp, .filter = filter, .order_by = order, .max_results = max, .page_token = token};
    kp_run *v;
    size_t n;
    char *next;
    if (kp_store_run_search(s, &q, &v, &n, &next) != 0) fail_msg("search '%s': %s", filter, kp_store_last_error()->message);
    free(token);
    token = next;
    if (max > 0) assert_true(n <= (size_t)max);
    for (size_t i = 0; i < n; i++) {
      int k = -1;
      for (int j = 0; j < NS; j++)
        if (!strcmp(v[i].id, fx->id[j])) k = j;
      for (size_t j = 0; j < total; j++)
        if (k >= 0 && got[j] == k) fail_msg("run %s came twice", v[i].id);
      got[total++] = k;
    }
    kp_runs_free(v, n);
    assert_true(++pages < 100);
  } while (token);
  return total;
}

/* the search gives exactly the runs i with want[i], newest first */
static void expect_set(kp_store *s, const search_fixture *fx, const char *filter, const int *want) {
  int got[NS + 1];
  size_t n = search_all(s, fx, "srch", filter, NULL, 0, got);
  size_t k = 0;
  for (int i = NS - 1; i >= 0; i--)
    if (want[i]) {
      if (k >= n || got[k] != i) fail_msg("filter \"%s\": expected run %d at %zu, got %d", filter, i, k, k < n ? got[k] : -2);
      k++;
    }
  if (k != n) fail_msg("filter \"%s\": %zu runs, expected %zu", filter, n, k);
}

static void test_store__run_search_filters(void **state) {
  kp_store *s = *state;
  search_fixture fx;
  search_setup(s, &fx);
  int want[NS];
#define WANT(cond)                                 \
  for (int i = 0; i < NS; i++) want[i] = (cond);
  WANT(fx.has_acc[i] && fx.acc[i] > 0.2) expect_set(s, &fx, "metrics.acc > 0.2", want);
  WANT(fx.has_acc[i] && fx.acc[i] >= 0.2) expect_set(s, &fx, "metrics.acc >= 0.2", want);
  WANT(fx.has_acc[i] && fx.acc[i] < 0.2) expect_set(s, &fx, "metrics.acc < 0.2", want);
  WANT(fx.has_acc[i] && fx.acc[i] <= 0.2) expect_set(s, &fx, "metrics.acc <= 0.2", want);
  WANT(fx.has_acc[i] && fx.acc[i] == 0.2) expect_set(s, &fx, "metrics.acc = 0.2", want);
  WANT(fx.has_acc[i] && fx.acc[i] != 0.2) expect_set(s, &fx, "metrics.acc != 0.2", want);
  WANT(fx.has_acc[i] && (fx.acc[i] == 0.1 || fx.acc[i] == 0.5)) expect_set(s, &fx, "metrics.acc IN (0.1, 0.5)", want);
  WANT(fx.has_acc[i] && !(fx.acc[i] == 0.1 || fx.acc[i] == 0.5)) expect_set(s, &fx, "metrics.acc NOT IN (0.1, 0.5)", want);
  WANT(1 - i / 10.0 > 0.45) expect_set(s, &fx, "metrics.loss > 0.45", want);
  /* params: numbers compare as numbers, text as text */
  WANT(!strcmp(fx.bs[i], "128")) expect_set(s, &fx, "params.bs = 128", want);
  expect_set(s, &fx, "params.bs = '128'", want);
  WANT(!strcmp(fx.bs[i], "64")) expect_set(s, &fx, "params.bs < 100", want);
  WANT(strcmp(fx.bs[i], "large") != 0) expect_set(s, &fx, "params.bs <= 128", want);
  WANT(!strcmp(fx.bs[i], "large")) expect_set(s, &fx, "params.bs LIKE 'la%'", want);
  expect_set(s, &fx, "params.bs NOT IN ('128', '64')", want);
  WANT(strcmp(fx.bs[i], "large") != 0) expect_set(s, &fx, "params.bs IN (128, 64)", want);
  WANT(i + 1 >= 10) expect_set(s, &fx, "params.lr >= 0.010", want);
  WANT(i == 5) expect_set(s, &fx, "params.`val/loss` = 'odd name'", want);
  /* tags: LIKE is case-sensitive, ILIKE not */
  WANT(i == 1 || i == 10 || i == 11) expect_set(s, &fx, "tags.name LIKE 'Run-1%'", want);
  expect_set(s, &fx, "tags.name ILIKE 'run-1%'", want);
  WANT(0) expect_set(s, &fx, "tags.name LIKE 'run-1%'", want);
  WANT(i < 10) expect_set(s, &fx, "tags.name LIKE 'Run-_'", want);
  WANT(i >= 10) expect_set(s, &fx, "tags.name NOT LIKE 'Run-_'", want);
  WANT(!(i == 1 || i == 10 || i == 11)) expect_set(s, &fx, "tags.name NOT ILIKE 'RUN-1%'", want);
  WANT(i % 2 == 1) expect_set(s, &fx, "tags.kind = \"odd\"", want);
  WANT(i % 2 == 0) expect_set(s, &fx, "tags.kind != 'odd'", want);
  /* attributes */
  WANT(fx.completed[i]) expect_set(s, &fx, "status = 'Completed'", want);
  expect_set(s, &fx, "attributes.status = 'completed'", want);
  WANT(!fx.completed[i]) expect_set(s, &fx, "status IN ('Queued', 'Running')", want);
  WANT(1) expect_set(s, &fx, "experiment = 'srch' and created > '2000-01-01'", want);
  WANT(fx.completed[i]) expect_set(s, &fx, "ended >= 0", want);
  WANT(i == 3) {
    char f[128];
    snprintf(f, sizeof f, "id = '%s'", fx.id[3]);
    expect_set(s, &fx, f, want);
  }
  WANT(0) expect_set(s, &fx, "parent = 'none'", want);
  /* and, or, parentheses */
  WANT(fx.has_acc[i] && fx.acc[i] > 0.1 && !strcmp(fx.bs[i], "128") && fx.completed[i])
  expect_set(s, &fx, "metrics.acc > 0.1 and params.bs = 128 and status = 'Completed'", want);
  WANT((fx.has_acc[i] && fx.acc[i] >= 0.5) || (i % 2 == 1 && !strcmp(fx.bs[i], "64")))
  expect_set(s, &fx, "metrics.acc >= 0.5 OR (tags.kind = 'odd' AND params.bs = 64)", want);
  WANT(fx.completed[i] && (i == 0 || i == 2))
  expect_set(s, &fx, "status = 'Completed' and (tags.name = 'Run-0' or tags.name = 'Run-2')", want);
  /* user text is data: quotes inside a string, SQL in names */
  WANT(0) expect_set(s, &fx, "tags.name = 'x'' OR 1=1 --'", want);
  expect_set(s, &fx, "params.`bs = bs) OR (1=1` = 1", want);
  expect_set(s, &fx, "status LIKE '%'' OR ''1''=''1'", want);
#undef WANT
  /* the experiment argument: every experiment when NULL */
  int got[NS + 2];
  assert_int_equal(search_all(s, &fx, NULL, "metrics.acc > 1", NULL, 0, got), 1);
  assert_int_equal(got[0], -1);
}

/* i before j in the order "metrics.acc DESC": values high to low, runs
 * without a value last, ties newest (highest index) first */
static int acc_desc_before(const search_fixture *fx, int i, int j) {
  if (fx->has_acc[i] != fx->has_acc[j]) return fx->has_acc[i];
  if (fx->has_acc[i] && fx->acc[i] != fx->acc[j]) return fx->acc[i] > fx->acc[j];
  return i > j;
}

static int bs_rank(const char *v) { return !strcmp(v, "64") ? 0 : !strcmp(v, "128") ? 1 : 2; }

static void test_store__run_search_order_and_pages(void **state) {
  kp_store *s = *state;
  search_fixture fx;
  search_setup(s, &fx);
  int want[NS], got[NS + 1];
  for (int i = 0; i < NS; i++) want[i] = i;
  for (int a = 0; a < NS; a++)
    for (int b = a + 1; b < NS; b++)
      if (acc_desc_before(&fx, want[b], want[a])) { int t = want[a]; want[a] = want[b]; want[b] = t; }
  /* every page size gives every run exactly once, in the same order */
  for (int64_t max = 1; max <= NS + 1; max += 2) {
    size_t n = search_all(s, &fx, "srch", NULL, "metrics.acc DESC", max, got);
    assert_int_equal(n, NS);
    for (int i = 0; i < NS; i++) assert_int_equal(got[i], want[i]);
  }
  /* ascending: low to high, still without a value last and ties newest first */
  size_t n = search_all(s, &fx, "srch", NULL, "metrics.acc", 5, got);
  assert_int_equal(n, NS);
  for (size_t k = 1; k < n; k++) {
    int i = got[k - 1], j = got[k];
    if (fx.has_acc[i] && fx.has_acc[j]) assert_true(fx.acc[i] < fx.acc[j] || (fx.acc[i] == fx.acc[j] && i > j));
    else assert_true(fx.has_acc[i] || (!fx.has_acc[j] && i > j));
  }
  /* params order as numbers before text; with a filter, over pages */
  n = search_all(s, &fx, "srch", "status = 'Completed'", "params.bs ASC", 2, got);
  int expect = 0;
  for (int i = 0; i < NS; i++) expect += fx.completed[i];
  assert_int_equal(n, expect);
  for (size_t k = 1; k < n; k++) {
    int i = got[k - 1], j = got[k];
    assert_true(fx.completed[i] && fx.completed[j]);
    assert_true(bs_rank(fx.bs[i]) < bs_rank(fx.bs[j]) || (bs_rank(fx.bs[i]) == bs_rank(fx.bs[j]) && i > j));
  }
  /* descending: text before numbers, numbers high to low, over pages */
  n = search_all(s, &fx, "srch", NULL, "params.bs DESC", 3, got);
  assert_int_equal(n, NS);
  for (size_t k = 1; k < n; k++) {
    int i = got[k - 1], j = got[k];
    assert_true(bs_rank(fx.bs[i]) > bs_rank(fx.bs[j]) || (bs_rank(fx.bs[i]) == bs_rank(fx.bs[j]) && i > j));
  }
  /* attributes and tags as orders */
  n = search_all(s, &fx, "srch", NULL, "id", 4, got);
  for (int i = 0; i < NS; i++) assert_int_equal(got[i], i);
  n = search_all(s, &fx, "srch", NULL, "created DESC", 5, got);
  for (int i = 0; i < NS; i++) assert_int_equal(got[i], NS - 1 - i);
  n = search_all(s, &fx, "srch", NULL, "tags.kind DESC", 3, got);
  assert_int_equal(n, NS);
  for (int i = 0; i < NS / 2; i++) assert_int_equal(got[i] % 2, 1);  /* "odd" > "even" */
  n = search_all(s, &fx, "srch", NULL, "duration", 3, got);
  assert_int_equal(n, NS);
  n = search_all(s, &fx, "srch", NULL, "status desc", 5, got);
  assert_int_equal(n, NS);
  for (int i = 0; i < NS / 2; i++) assert_false(fx.completed[got[i]]);  /* "Queued" > "Completed" */
}

static void test_store__run_search_errors(void **state) {
  kp_store *s = *state;
  search_fixture fx;
  search_setup(s, &fx);
  kp_run *v;
  size_t n;
  char *next;
  static const struct { const char *filter; const char *msg; } BAD[] = {
    {"metrics.acc > ", "filter: position 15: expected a value"},
    {"metrics.Accuracy > 0.9 and params.bs >", "filter: position 39: expected a value"},
    {"status = 'x' OR 1=1 --", "filter: position 10: 'x' is not a run status"},
    {"tags.name = 'Run-1' OR 1=1 --", "filter: position 24: expected a key"},
    {"metrics.acc > 'high'", "filter: position 15: metrics.acc is a number"},
    {"bogus = 1", "filter: position 1: unknown attribute 'bogus'"},
    {"(metrics.acc > 1", "filter: position 17: expected AND, OR or ')'"},
    {"tags.name = 'open", "filter: position 13: the string opened here is not closed"},
    {"metrics.acc > 1 metrics.acc < 2", "filter: position 17: expected AND, OR or the end"},
    {"metrics.acc LIKE 'a%'", "filter: position 1: metrics.acc is a number"},
    {"params.`x = 1", "filter: position 8: the name opened with `"},
  };
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    kp_run_search q = {.filter = BAD[i].filter};
    assert_int_equal(kp_store_run_search(s, &q, &v, &n, &next), -1);
    assert_int_equal(code(), KP_STORE_EINVAL);
    if (strncmp(kp_store_last_error()->message, BAD[i].msg, strlen(BAD[i].msg)) != 0)
      fail_msg("\"%s\": got \"%s\", expected \"%s...\"", BAD[i].filter, kp_store_last_error()->message, BAD[i].msg);
    assert_null(v);
    assert_null(next);
  }
  kp_run_search bad_order = {.order_by = "metrics.acc sideways"};
  assert_int_equal(kp_store_run_search(s, &bad_order, &v, &n, &next), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_non_null(strstr(kp_store_last_error()->message, "order: position 13"));
  /* page tokens: altered ones, and ones of another search, are refused */
  kp_run_search q = {.experiment = "srch", .filter = "metrics.loss > 0", .order_by = "metrics.acc DESC", .max_results = 3};
  assert_int_equal(kp_store_run_search(s, &q, &v, &n, &next), 0);
  assert_int_equal(n, 3);
  assert_non_null(next);
  kp_runs_free(v, n);
  char *tok = strdup(next);
  for (size_t i = 0; i < strlen(tok); i += 7) {
    char keep = tok[i];
    tok[i] = tok[i] == '0' ? '1' : '0';
    q.page_token = tok;
    char *nx;
    if (kp_store_run_search(s, &q, &v, &n, &nx) != -1) fail_msg("altered token %s (at %zu) accepted", tok, i);
    assert_int_equal(code(), KP_STORE_EINVAL);
    tok[i] = keep;
  }
  const char *junk[] = {"", "x", "zz.zz", "00", "abc.def"};
  for (size_t i = 1; i < sizeof junk / sizeof junk[0]; i++) {
    q.page_token = junk[i];
    char *nx;
    assert_int_equal(kp_store_run_search(s, &q, &v, &n, &nx), -1);
    assert_int_equal(code(), KP_STORE_EINVAL);
  }
  kp_run_search other = q;
  other.page_token = tok;
  other.filter = "metrics.loss > 0.5";
  char *nx;
  assert_int_equal(kp_store_run_search(s, &other, &v, &n, &nx), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  other.filter = q.filter;
  other.order_by = "metrics.acc ASC";
  assert_int_equal(kp_store_run_search(s, &other, &v, &n, &nx), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  /* the untouched token still works */
  q.page_token = tok;
  assert_int_equal(kp_store_run_search(s, &q, &v, &n, &nx), 0);
  assert_int_equal(n, 3);
  kp_runs_free(v, n);
  free(nx);
  free(tok);
  free(next);
  /* params of an unknown run */
  kp_tag *t;
  assert_int_equal(kp_store_run_params(s, "nope_1", &t, &n), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  const char *k = "a", *val = "b";
  assert_int_equal(kp_store_run_params_set(s, "nope_1", &k, &val, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_run_params(s, fx.id[5], &t, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(t[0].key, "bs");
  assert_string_equal(t[0].value, "large");
  assert_string_equal(t[2].key, "val/loss");
  assert_string_equal(t[2].value, "odd name");
  kp_tags_free(t, n);
}

/* deleting runs removes what search keeps of them */
static void test_store__run_search_after_delete(void **state) {
  kp_store *s = *state;
  search_fixture fx;
  search_setup(s, &fx);
  const char *ids[] = {fx.id[10], fx.id[11]};
  assert_int_equal(kp_store_runs_delete(s, ids, 2), 0);
  int got[NS + 1];
  int want[NS];
  for (int i = 0; i < NS; i++) want[i] = i < 10 && fx.has_acc[i] && fx.acc[i] >= 0.4;
  expect_set(s, &fx, "metrics.acc >= 0.4", want);
  assert_int_equal(search_all(s, &fx, "srch", "params.bs = 128 or params.bs = 64 or params.bs = 'large'", NULL, 0, got), 10);
}

/* ---- services --------------------------------------------------------------------- */
#define H1 "1111111111111111111111111111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222222222222222222222222222"
#define H3 "3333333333333333333333333333333333333333333333333333333333333333"

/* registers model 'name' (one more version) with one file; its version */
static int64_t new_model(kp_store *s, const char *name, const char *sha) {
  kp_model_file f[] = {{.path = "model.npz", .sha256 = sha, .size = 4}};
  kp_model_new m = {.name = name, .path = "m", .files = f, .nfiles = 1};
  int64_t v = 0;
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  return v;
}

static kp_service_new service_new(const char *name, const char *model, int64_t version) {
  kp_service_new n = {.name = name, .model_name = model, .model_version = version, .host = "127.0.0.1", .port = 0,
                      .auth = 1, .workers = 2, .timeout = 10, .max_body = 1 << 20, .primary_key_sha256 = H1,
                      .secondary_key_sha256 = H2};
  return n;
}

static size_t service_count(kp_store *s) {
  kp_service *v;
  size_t n;
  assert_int_equal(kp_store_service_list(s, &v, &n), 0);
  kp_services_free(v, n);
  return n;
}

static void test_store__service_state_names(void **state) {
  (void)state;
  static const char *const names[] = {"Stopped", "Starting", "Running", "Failed"};
  for (int i = 0; i < 4; i++) {
    kp_service_state v;
    assert_string_equal(kp_service_state_name((kp_service_state)i), names[i]);
    assert_int_equal(kp_service_state_parse(names[i], &v), 0);
    assert_int_equal(v, i);
  }
  kp_service_state v;
  assert_int_equal(kp_service_state_parse("running", &v), -1);
  assert_string_equal(kp_service_state_name(KP_SERVICE_NSTATE), "?");
}

static void test_store__service_create_and_read(void **state) {
  kp_store *s = *state;
  assert_int_equal(new_model(s, "lin", "aa"), 1);
  assert_int_equal(new_model(s, "lin", "bb"), 2);
  kp_service_new n = service_new("web", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &n), 0);
  kp_service_new e = service_new("api", "lin", 2);
  e.entry_name = "score.so";
  e.entry_sha256 = "cc";
  e.port = 8080;
  e.auth = 0;
  assert_int_equal(kp_store_service_create(s, &e), 0);
  kp_service v;
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_string_equal(v.name, "web");
  assert_int_equal(v.state, KP_SERVICE_STOPPED);
  assert_string_equal(v.model_name, "lin");
  assert_int_equal(v.model_version, 1);
  assert_null(v.entry_name);
  assert_null(v.entry_sha256);
  assert_string_equal(v.host, "127.0.0.1");
  assert_int_equal(v.port, 0);
  assert_int_equal(v.bound_port, 0);
  assert_int_equal(v.auth, 1);
  assert_int_equal(v.workers, 2);
  assert_int_equal(v.timeout, 10);
  assert_int_equal(v.max_body, 1 << 20);
  assert_string_equal(v.primary_key_sha256, H1);
  assert_string_equal(v.secondary_key_sha256, H2);
  assert_null(v.error);
  assert_int_equal(v.pid, 0);
  assert_true(v.created > 0);
  assert_true(v.started == 0 && v.stopped == 0);
  kp_service_free(&v);
  /* by name */
  kp_service *all;
  size_t na;
  assert_int_equal(kp_store_service_list(s, &all, &na), 0);
  assert_int_equal(na, 2);
  assert_string_equal(all[0].name, "api");
  assert_string_equal(all[0].entry_name, "score.so");
  assert_string_equal(all[0].entry_sha256, "cc");
  assert_int_equal(all[0].port, 8080);
  assert_int_equal(all[0].auth, 0);
  assert_string_equal(all[1].name, "web");
  kp_services_free(all, na);
  /* the services of a model version */
  char **names;
  size_t nn;
  assert_int_equal(kp_store_model_services(s, "lin", 2, &names, &nn), 0);
  assert_int_equal(nn, 1);
  assert_string_equal(names[0], "api");
  kp_strings_free(names, nn);
  /* errors, and nothing written by a failed create */
  assert_int_equal(kp_store_service_create(s, &n), -1);
  assert_int_equal(code(), KP_STORE_EEXISTS);
  kp_service_new bad = service_new("x", "lin", 3);
  assert_int_equal(kp_store_service_create(s, &bad), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  bad = service_new("x", "nomodel", 1);
  assert_int_equal(kp_store_service_create(s, &bad), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  bad = service_new("x", "lin", 1);
  bad.secondary_key_sha256 = "notahash";
  assert_int_equal(kp_store_service_create(s, &bad), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  bad = service_new("", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &bad), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  bad = service_new("x", "lin", 1);
  bad.entry_name = "only-a-name.so";
  assert_int_equal(kp_store_service_create(s, &bad), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(service_count(s), 2);
  assert_int_equal(kp_store_service_get(s, "x", &v), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* a create inside a transaction rolled back leaves nothing */
  assert_int_equal(kp_store_begin(s), 0);
  bad = service_new("x", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &bad), 0);
  kp_store_rollback(s);
  assert_int_equal(service_count(s), 2);
}

static void test_store__service_redeploy_and_keys(void **state) {
  kp_store *s = *state;
  new_model(s, "lin", "aa");
  new_model(s, "lin", "bb");
  kp_service_new n = service_new("web", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &n), 0);
  assert_int_equal(kp_store_service_running(s, "web", 4242, 77, 9001), 0);
  kp_service before;
  assert_int_equal(kp_store_service_get(s, "web", &before), 0);
  /* port 0: the port it last listened on is kept; keys, state, process, created stay */
  kp_service_new r = service_new("web", "lin", 2);
  r.primary_key_sha256 = H3;  /* ignored: a redeploy keeps the keys */
  r.entry_name = "e.so";
  r.entry_sha256 = "ee";
  r.workers = 4;
  assert_int_equal(kp_store_service_redeploy(s, &r), 0);
  kp_service v;
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.model_version, 2);
  assert_string_equal(v.entry_name, "e.so");
  assert_int_equal(v.workers, 4);
  assert_int_equal(v.bound_port, 9001);
  assert_string_equal(v.primary_key_sha256, H1);
  assert_int_equal(v.state, KP_SERVICE_RUNNING);
  assert_int_equal(v.pid, 4242);
  assert_true(v.created == before.created);
  kp_service_free(&v);
  kp_service_free(&before);
  /* another port: the last one is forgotten */
  r.port = 8123;
  r.entry_name = r.entry_sha256 = NULL;
  assert_int_equal(kp_store_service_redeploy(s, &r), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.port, 8123);
  assert_int_equal(v.bound_port, 0);
  assert_null(v.entry_name);
  kp_service_free(&v);
  /* errors */
  kp_service_new u = service_new("nosuch", "lin", 1);
  assert_int_equal(kp_store_service_redeploy(s, &u), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  r.model_version = 9;
  assert_int_equal(kp_store_service_redeploy(s, &r), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.model_version, 2);  /* unchanged */
  kp_service_free(&v);
  /* key rotation: digests only, checked */
  assert_int_equal(kp_store_service_set_keys(s, "web", H3, H1), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_string_equal(v.primary_key_sha256, H3);
  assert_string_equal(v.secondary_key_sha256, H1);
  kp_service_free(&v);
  assert_int_equal(kp_store_service_set_keys(s, "nosuch", H1, H2), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_set_keys(s, "web", "abc", H2), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_service_set_keys(s, "web", H1, "1111111111111111111111111111111111111111111111111111111111111X11"), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_string_equal(v.primary_key_sha256, H3);  /* unchanged */
  kp_service_free(&v);
}

static void test_store__service_transitions(void **state) {
  kp_store *s = *state;
  new_model(s, "lin", "aa");
  kp_service_new n = service_new("web", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &n), 0);
  kp_service v;
  /* the server failed while starting: Failed with the server's error */
  assert_int_equal(kp_store_service_starting(s, "web"), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_STARTING);
  kp_service_free(&v);
  assert_int_equal(kp_store_service_exited(s, "web", 100, KP_SERVICE_FAILED, "cannot listen"), 0);
  assert_int_equal(kp_store_service_start_failed(s, "web", "no answer"), 0);  /* not Starting: nothing changes */
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_FAILED);
  assert_string_equal(v.error, "cannot listen");
  assert_true(v.stopped > 0);
  kp_service_free(&v);
  /* a start clears the error; a server that never said anything */
  assert_int_equal(kp_store_service_starting(s, "web"), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_null(v.error);
  assert_true(v.stopped == 0);
  kp_service_free(&v);
  assert_int_equal(kp_store_service_start_failed(s, "web", "no answer"), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_FAILED);
  assert_string_equal(v.error, "no answer");
  kp_service_free(&v);
  /* running: its process and port */
  assert_int_equal(kp_store_service_starting(s, "web"), 0);
  assert_int_equal(kp_store_service_running(s, "web", 4242, 99, 8500), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_RUNNING);
  assert_int_equal(v.pid, 4242);
  assert_int_equal(v.pid_start, 99);
  assert_int_equal(v.bound_port, 8500);
  assert_true(v.started > 0);
  kp_service_free(&v);
  /* another process cannot record its end over this one's record */
  assert_int_equal(kp_store_service_exited(s, "web", 4243, KP_SERVICE_STOPPED, NULL), -1);
  assert_int_equal(code(), KP_STORE_ECONFLICT);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_RUNNING);
  kp_service_free(&v);
  assert_int_equal(kp_store_service_exited(s, "web", 4242, KP_SERVICE_STOPPED, NULL), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_STOPPED);
  double first_stop = v.stopped;
  assert_true(first_stop > 0);
  kp_service_free(&v);
  /* the CLI's stop: no process; the first stop time is kept */
  assert_int_equal(kp_store_service_stopped(s, "web"), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_int_equal(v.state, KP_SERVICE_STOPPED);
  assert_int_equal(v.pid, 0);
  assert_int_equal(v.pid_start, 0);
  assert_true(v.stopped == first_stop);
  assert_int_equal(v.bound_port, 8500);  /* remembered for the next start */
  kp_service_free(&v);
  /* bad transitions and unknown names */
  assert_int_equal(kp_store_service_exited(s, "web", 1, KP_SERVICE_RUNNING, NULL), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_service_running(s, "web", 0, 0, 8500), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_int_equal(kp_store_service_starting(s, "nosuch"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_start_failed(s, "nosuch", "x"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_running(s, "nosuch", 1, 1, 1), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_stopped(s, "nosuch"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_exited(s, "nosuch", 1, KP_SERVICE_FAILED, "x"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* delete */
  assert_int_equal(kp_store_service_delete(s, "nosuch"), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(kp_store_service_delete(s, "web"), 0);
  assert_int_equal(kp_store_service_get(s, "web", &v), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  assert_int_equal(service_count(s), 0);
}

static void test_store__service_model(void **state) {
  kp_store *s = *state;
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  kp_model_file f[] = {{.path = "outputs/model.npz", .sha256 = "aa", .size = 4}, {.path = "b.json", .sha256 = "bb", .size = 2}};
  kp_model_new m = {.name = "net", .run_id = id, .path = "outputs/model.npz", .files = f, .nfiles = 2};
  int64_t v;
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  assert_int_equal(kp_store_model_version_create(s, &m, &v), 0);
  assert_int_equal(v, 2);
  kp_service_new n = service_new("web", "net", 2);
  assert_int_equal(kp_store_service_create(s, &n), 0);
  kp_model got;
  int found = -1;
  assert_int_equal(kp_store_service_model(s, "web", &got, &found), 0);
  assert_int_equal(found, 1);
  assert_string_equal(got.name, "net");
  assert_int_equal(got.version, 2);
  assert_string_equal(got.run_id, id);
  assert_string_equal(got.path, "outputs/model.npz");
  assert_int_equal(got.nfiles, 2);
  assert_string_equal(got.files[0].path, "b.json");
  assert_string_equal(got.files[1].sha256, "aa");
  kp_model_free(&got);
  assert_int_equal(kp_store_service_model(s, "nosuch", &got, &found), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
  /* the version deleted since ('model delete --force') */
  assert_int_equal(kp_store_model_delete(s, "net", 2), 0);
  assert_int_equal(kp_store_service_model(s, "web", &got, &found), 0);
  assert_int_equal(found, 0);
  assert_null(got.name);
  assert_int_equal(got.nfiles, 0);
}

/* the migration to schema 5: a service's plain keys go to 'save' and the
 * store keeps the digests it gives */
typedef struct saved_keys {
  int calls, fail;
  char name[64], k1[65], k2[65];
} saved_keys;

static int save_keys(void *ctx, const char *name, const char *k1, const char *k2, char h1[65], char h2[65]) {
  saved_keys *sk = ctx;
  sk->calls++;
  if (sk->fail) return -1;
  snprintf(sk->name, sizeof sk->name, "%s", name);
  snprintf(sk->k1, sizeof sk->k1, "%s", k1);
  snprintf(sk->k2, sizeof sk->k2, "%s", k2);
  snprintf(h1, 65, "%s", H3);
  snprintf(h2, 65, "%s", H1);
  return 0;
}

static int keys_hook(void *ctx, kp_store *s, int to) {
  return to == 5 ? kp_store_sqlite_service_keys_migrate(s, save_keys, ctx) : 0;
}

static void sql_on(const char *path, const char *sql) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fail_msg("%s: %s", sql, msg);
  sqlite3_close(db);
}

static void test_store__service_keys_migration(void **state) {
  (void)state;
  if (g_pg) {
    /* the migration 4 -> 5 of service keys is SQLite's alone: a PostgreSQL
     * store never held plain keys (store_pg.c's 4 -> 5 renames the columns) */
    print_message("[ SKIPPED  ] service_keys_migration: SQLite only (a PostgreSQL store never held plain keys)\n");
    skip();
  }
  char path[512];
  snprintf(path, sizeof path, "%s/keys-migration.db", g_dir);
  kp_store *s;
  assert_int_equal(kp_store_sqlite_open(path, NULL, NULL, &s), 0);
  new_model(s, "lin", "aa");
  kp_service_new n = service_new("web", "lin", 1);
  assert_int_equal(kp_store_service_create(s, &n), 0);
  /* columns with their new names already: nothing to do */
  saved_keys sk = {0};
  assert_int_equal(kp_store_sqlite_service_keys_migrate(s, save_keys, &sk), 0);
  assert_int_equal(sk.calls, 0);
  kp_store_close(s);
  /* back to schema 4: the keys in plain text */
  const char *to4 = "ALTER TABLE services RENAME COLUMN primary_key_sha256 TO primary_key;"
                    "ALTER TABLE services RENAME COLUMN secondary_key_sha256 TO secondary_key;"
                    "UPDATE services SET primary_key='plain-one', secondary_key='plain-two';"
                    "PRAGMA user_version=4;";
  sql_on(path, to4);
  /* without the workspace's hook the keys have nowhere to go: refused */
  assert_int_equal(kp_store_sqlite_open(path, NULL, NULL, &s), -1);
  assert_non_null(strstr(kp_store_last_error()->message, "service web holds its keys in the store"));
  /* a save that fails fails the migration, which changes nothing */
  sk.fail = 1;
  assert_int_equal(kp_store_sqlite_open(path, keys_hook, &sk, &s), -1);
  assert_int_equal(sk.calls, 1);
  assert_non_null(strstr(kp_store_last_error()->message, "migration to schema version 5 failed"));
  sk = (saved_keys){0};
  assert_int_equal(kp_store_sqlite_open(path, keys_hook, &sk, &s), 0);
  assert_int_equal(sk.calls, 1);
  assert_string_equal(sk.name, "web");
  assert_string_equal(sk.k1, "plain-one");
  assert_string_equal(sk.k2, "plain-two");
  kp_service v;
  assert_int_equal(kp_store_service_get(s, "web", &v), 0);
  assert_string_equal(v.primary_key_sha256, H3);
  assert_string_equal(v.secondary_key_sha256, H1);
  kp_service_free(&v);
  kp_store_close(s);
  /* migrated once: opening again calls nothing */
  sk = (saved_keys){0};
  assert_int_equal(kp_store_sqlite_open(path, keys_hook, &sk, &s), 0);
  assert_int_equal(sk.calls, 0);
  kp_store_close(s);
}
/* backends (issue 12 section 4): what differs between SQLite and PostgreSQL
 * underneath and must not show */
static void test_store__backend_and_schema(void **state) {
  kp_store *s = *state;
  assert_string_equal(kp_store_backend(s), g_pg ? "postgresql" : "sqlite");
#ifdef KUSARI_WITH_POSTGRESQL
  /* both backends migrate to the same version: a new SQLite migration needs
   * its PostgreSQL twin in store_pg.c */
  if (kp_store_pg_schema_version() != kp_store_sqlite_schema_version())
    fail_msg("store_pg.c migrates to schema version %d, store_sqlite.c to %d: add the missing migrations to store_pg.c",
             kp_store_pg_schema_version(), kp_store_sqlite_schema_version());
#endif
  char red[256];
  kp_store_uri_redact("postgresql://me:secret@db.example:5432/k?sslmode=require&password=x2", red, sizeof red);
  assert_string_equal(red, "postgresql://me:***@db.example:5432/k?sslmode=require&password=***");
  kp_store_uri_redact("postgresql://me@db/k", red, sizeof red);
  assert_string_equal(red, "postgresql://me@db/k");
  assert_true(kp_store_uri_is_postgresql("postgres://x/y"));
  /* an operation a backend lacks (NULL in its table) fails clearly */
  static const kp_store_ops bare = {.backend = "bare"};
  kp_store fake = {.ops = &bare};
  assert_int_equal(kp_store_tag_set(&fake, "r_1", "k", "v"), -1);
  assert_int_equal(code(), KP_STORE_EINVAL);
  assert_string_equal(kp_store_last_error()->message, "tag_set is not supported by the bare backend");
  /* an ordinary failure is no outage */
  kp_run r;
  assert_int_equal(kp_store_run_get(s, "nope_1", &r), -1);
  assert_false(kp_store_unreachable());
  kp_store_fail_unreachable("gone");
  assert_true(kp_store_unreachable());
  kp_store_clear_error();
  assert_false(kp_store_unreachable());
  assert_false(kp_store_uri_is_postgresql("sqlite:/tmp/x.db"));
}

/* NaN and +-Infinity round-trip; NaN counts as "no value" in spreads and
 * when ordering by a metric; odd characters in names survive. */
static void test_store__nonfinite_and_quoting(void **state) {
  kp_store *s = *state;
  char a[256], b[256], c[256];
  new_run(s, "we\"ird\\x,{y}", "cpu", a, sizeof a);
  new_run(s, "we\"ird\\x,{y}", "cpu", b, sizeof b);
  new_run(s, "we\"ird\\x,{y}", "cpu", c, sizeof c);
  kp_metric_point pa[] = {{.name = "v", .step = -1, .time = 1, .value = INFINITY},
                          {.name = "v", .step = -1, .time = 2, .value = -INFINITY},
                          {.name = "v", .step = -1, .time = 3, .value = NAN},
                          {.name = "n\"a,me", .step = -1, .time = 3, .value = 1e-300}};
  kp_metric_point pb = {.name = "v", .step = -1, .time = 1, .value = 0.5};
  kp_metric_point pc = {.name = "v", .step = -1, .time = 1, .value = NAN};
  kp_ingest_batch ba = {.from = 0, .to = 4, .points = pa, .npoints = 4};
  kp_ingest_batch bb = {.from = 0, .to = 1, .points = &pb, .npoints = 1}, bc = {.from = 0, .to = 1, .points = &pc, .npoints = 1};
  assert_int_equal(kp_store_metrics_ingest(s, a, &ba), 0);
  assert_int_equal(kp_store_metrics_ingest(s, b, &bb), 0);
  assert_int_equal(kp_store_metrics_ingest(s, c, &bc), 0);
  kp_metric_point *p;
  size_t n;
  assert_int_equal(kp_store_metric_series(s, a, "v", &p, &n), 0);
  assert_int_equal(n, 3);
  assert_true(isinf(p[0].value) && p[0].value > 0);
  assert_true(isinf(p[1].value) && p[1].value < 0);
  assert_true(isnan(p[2].value));
  free(p);
  assert_int_equal(kp_store_metric_series(s, a, "n\"a,me", &p, &n), 0);
  assert_int_equal(n, 1);
  assert_true(p[0].value == 1e-300);
  free(p);
  double v = 0;
  int found = 0;
  assert_int_equal(kp_store_metric_latest_value(s, a, "v", &v, &found), 0);
  assert_true(found && isnan(v));
  /* the spread: a's and c's final values are NaN, b's is the only number;
   * the newest run (c) has NaN */
  kp_experiment_detail d;
  assert_int_equal(kp_store_experiment_get(s, "we\"ird\\x,{y}", &d), 0);
  assert_int_equal(d.nmetrics, 2);
  assert_string_equal(d.metrics[1].name, "v");
  assert_int_equal(d.metrics[1].runs, 3);
  assert_true(d.metrics[1].has_min && d.metrics[1].min == 0.5);
  assert_true(d.metrics[1].has_max && d.metrics[1].max == 0.5);
  assert_string_equal(d.metrics[1].max_run, b);
  assert_true(isnan(d.metrics[1].latest));
  assert_string_equal(d.metrics[1].latest_run, c);
  kp_experiment_detail_free(&d);
  /* ordering by v: b (a number) first, then the NaN runs, newest first */
  kp_run *runs;
  kp_run_query q = {.order = KP_ORDER_METRIC, .order_metric = "v", .desc = 1};
  assert_int_equal(kp_store_run_list(s, &q, &runs, &n), 0);
  assert_int_equal(n, 3);
  assert_string_equal(runs[0].id, b);
  assert_string_equal(runs[1].id, c);
  assert_string_equal(runs[2].id, a);
  kp_runs_free(runs, n);
  /* a run id with quotes, backslashes and commas in a list of ids */
  kp_file_entry f = {.path = "a \"b\"", .sha256 = "h\\1", .size = 7};
  assert_int_equal(kp_store_run_files_put(s, a, &f, 1), 0);
  const char *ids[] = {a, "nope_1"};
  int64_t files = 0, bytes = 0;
  assert_int_equal(kp_store_runs_files_size(s, ids, 2, &files, &bytes), 0);
  assert_int_equal(files, 1);
  assert_int_equal(bytes, 7);
  const char *cand[] = {"h\\1", "0123", "x"};
  unsigned char used[3];
  assert_int_equal(kp_store_blobs_referenced(s, cand, 3, used), 0);
  assert_true(used[0] && used[1] && !used[2]);
  assert_int_equal(kp_store_runs_delete(s, ids, 2), 0);
  kp_run r;
  assert_int_equal(kp_store_run_get(s, a, &r), -1);
  assert_int_equal(code(), KP_STORE_ENOTFOUND);
}

#ifdef KUSARI_WITH_POSTGRESQL
/* PostgreSQL only: the server drops the store's connection. Dropped while
 * idle (a restart between requests), it is noticed before anything is sent
 * and the operation runs on a new one; dropped inside a transaction, the
 * operation fails (EBACKEND, saying so), commit says the transaction was
 * lost, and the next operation reconnects. */
static void test_store__pg_connection_lost(void **state) {
  (void)state;
  char uri[1024];
  new_store_uri(uri, sizeof uri, "application_name=kt_drop");
  kp_store *s;
  assert_int_equal(kp_store_open(uri, NULL, NULL, &s), 0);
  char id[256];
  new_run(s, "exp", "cpu", id, sizeof id);
  pg_drop("kt_drop");
  kp_run r;
  assert_int_equal(kp_store_run_get(s, id, &r), 0);
  assert_string_equal(r.id, id);
  kp_run_free(&r);
  /* inside a transaction: the transaction is lost, and commit says so */
  assert_int_equal(kp_store_begin(s), 0);
  assert_int_equal(kp_store_tag_set(s, id, "k", "v"), 0);
  pg_drop("kt_drop");  /* and wait until its server process is gone: under load the next statement could otherwise still reach it */
  assert_int_equal(kp_store_tag_set(s, id, "k2", "v"), -1);
  assert_int_equal(code(), KP_STORE_EBACKEND);
  assert_non_null(strstr(kp_store_last_error()->message, "lost the connection to the PostgreSQL store"));
  assert_true(kp_store_unreachable());  /* worth trying again */
  assert_int_equal(kp_store_commit(s), -1);
  assert_int_equal(code(), KP_STORE_EBACKEND);
  kp_store_rollback(s);
  kp_tag *t;
  size_t n;
  assert_int_equal(kp_store_tag_list(s, id, &t, &n), 0);
  assert_int_equal(n, 0);  /* nothing of the lost transaction was kept */
  kp_tags_free(t, n);
  kp_store_close(s);
}
#endif

int main(void) {
  g_pg = getenv("KUSARI_TEST_PG_URI");
  if (g_pg && !*g_pg) g_pg = NULL;
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_store__status_names),
    cmocka_unit_test_setup_teardown(test_store__unknown_ids, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__transitions_stop_at_the_end, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__metrics_exactly_once, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__metric_latest_across_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__model_versions, setup, teardown),
    cmocka_unit_test(test_store__model_versions_concurrent),
    cmocka_unit_test_setup_teardown(test_store__model_reads_and_tags, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__compute_targets, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__experiments, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__tags, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__scheduling, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__files_and_deletes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__run_queries, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__tokens, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__series_downsampled, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__metric_events, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__metrics_per_rank, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__series_window, setup, teardown),
    cmocka_unit_test(test_store__error_per_thread),
    /* run search */
    cmocka_unit_test_setup_teardown(test_store__run_search_filters, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__run_search_order_and_pages, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__run_search_errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__run_search_after_delete, setup, teardown),
    /* services */
    cmocka_unit_test(test_store__service_state_names),
    cmocka_unit_test_setup_teardown(test_store__service_create_and_read, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__service_redeploy_and_keys, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__service_transitions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__service_model, setup, teardown),
    cmocka_unit_test(test_store__service_keys_migration),
    cmocka_unit_test_setup_teardown(test_store__sweep_create_and_get, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__sweep_trials, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__sweep_life, setup, teardown),
    /* backends */
    cmocka_unit_test_setup_teardown(test_store__backend_and_schema, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__nonfinite_and_quoting, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
#ifdef KUSARI_WITH_POSTGRESQL
  if (g_pg) {
    const struct CMUnitTest pg_tests[] = {
      cmocka_unit_test(test_store__pg_connection_lost),
    };
    rc += cmocka_run_group_tests_name("postgresql", pg_tests, NULL, NULL);
  }
#endif
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  return rc;
}
