/*
 * tests/platform/test_store.c — the store interface (platform/store.h)
 * driven directly, against a real backend: the rules every backend must keep
 * (status transitions refused once a run has ended, exactly-once metric
 * ingestion, model versions numbered inside a transaction, error codes for
 * unknown ids and taken names, the per-thread error). Each test opens a new
 * store through open_store(), the one place a PostgreSQL or remote backend
 * plugs in to run this same program.
 */
#include "store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[] = "/tmp/kusari-store-XXXXXX";
static int g_n;

/* A new, empty store of the backend under test. */
static kp_store *open_store(void) {
  char path[512];
  snprintf(path, sizeof path, "%s/store-%d.db", g_dir, ++g_n);
  kp_store *s = NULL;
  int rc = kp_store_sqlite_open(path, NULL, NULL, &s);
  if (rc != 0) fail_msg("cannot open %s: %s", path, kp_store_last_error()->message);
  return s;
}

static int setup(void **state) {
  *state = open_store();
  return *state ? 0 : -1;
}

static int teardown(void **state) {
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
  assert_int_equal(kp_store_run_transition(s, id, &done), 0);
  kp_run before;
  assert_int_equal(kp_store_run_get(s, id, &before), 0);
  assert_int_equal(before.status, KP_RUN_COMPLETED);
  assert_true(before.prepared > 0 && before.started > 0 && before.ended > 0);
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
  if (kp_store_sqlite_open(a->path, NULL, NULL, &s) != 0) { a->rc = -1; return NULL; }
  kp_model_new m = {.name = "shared", .path = "p"};
  for (int i = 0; i < 20 && a->rc == 0; i++) a->rc = kp_store_model_version_create(s, &m, &a->got[i]);
  kp_store_close(s);
  return NULL;
}

static void test_store__model_versions_concurrent(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/shared.db", g_dir);
  kp_store *s;
  assert_int_equal(kp_store_sqlite_open(path, NULL, NULL, &s), 0);  /* created and migrated once */
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

int main(void) {
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_store__status_names),
    cmocka_unit_test_setup_teardown(test_store__unknown_ids, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__transitions_stop_at_the_end, setup, teardown),
    cmocka_unit_test_setup_teardown(test_store__metrics_exactly_once, setup, teardown),
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
    cmocka_unit_test(test_store__error_per_thread),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
  return rc;
}
