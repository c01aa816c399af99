/*
 * tests/lib/test_extensions_run.c — RunLogger inside a platform run: the
 * values of each LogReport entry reach the run's metrics channel (read back
 * with ks_run_channel_read). A separate program because the process's run
 * is fixed by the environment at the first ks_run_current().
 */
#include "test_trainer_util.h"

#include <stdlib.h>
#include <string.h>

typedef struct got {
  int n;
  char name[16][64];
  double value[16];
} got;

static int collect(void *ctx, const ks_run_record *rec) {
  got *g = ctx;
  if (rec->kind != KS_RUN_RECORD_METRIC || g->n == 16) return 0;
  snprintf(g->name[g->n], sizeof g->name[0], "%s", rec->name);
  g->value[g->n++] = rec->value;
  return 0;
}

static void test_extensions_run__run_logger_reaches_the_channel(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], channel[700];
  snprintf(dir, sizeof dir, "%s", d);
  snprintf(channel, sizeof channel, "%s/channel", dir);
  TU_OK(ks_run_channel_create(channel));
  setenv("KUSARI_RUN_ID", "run-test-1", 1);
  setenv("KUSARI_METRICS_CHANNEL", channel, 1);
  unsetenv("KUSARI_UPLOAD_DIR");
  assert_false(ks_run_is_offline(ks_run_current()));

  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_EPOCH), .out = dir});
  static const char *const keys[] = {"main/loss", "validation/main/accuracy"};
  TU_OK(ks_trainer_extend(s.tr, ks_evaluator_new(s.test_it, s.test, s.model, NULL), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_extend(s.tr, ks_run_logger_new(keys, 2, NULL), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_run(s.tr));

  got g = {0};
  uint64_t off = 0;
  TU_OK(ks_run_channel_read(channel, &off, 1, collect, &g));
  assert_int_equal(g.n, 4);
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  for (int e = 0; e < 2; e++)
    for (int k = 0; k < 2; k++) {
      double v;
      TU_OK(ks_log_report_get(lr, e, keys[k], &v));
      assert_string_equal(g.name[2 * e + k], keys[k]);
      assert_true(g.value[2 * e + k] == v);
    }
  tt_setup_free(&s);
  /* dir (the channel) stays: the next test's run is this one */
}

/* A trainer resumed from a snapshot (a requeued job's --autoload) sends the
 * run only the entries after it: the LogReport's restored log is not sent
 * again (RunLogger keeps its count in the snapshot). */
static void test_extensions_run__resumed_run_logger_sends_no_duplicates(void **state) {
  (void)state;
  /* the process's run is the first test's: its channel, from where it ends */
  const char *channel = getenv("KUSARI_METRICS_CHANNEL");
  assert_non_null(channel);
  got skip = {0};
  uint64_t start = 0;
  TU_OK(ks_run_channel_read(channel, &start, 1, collect, &skip));
  const char *d = tu_tmpdir();
  char dir[600], latest[1200];
  snprintf(dir, sizeof dir, "%s", d);
  static const char *const keys[] = {"main/loss"};
  for (int part = 0; part < 2; part++) {  /* epoch 1 with a snapshot, then resumed to epoch 3 */
    tt_setup s;
    tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(part ? 3 : 1, KS_EPOCH), .out = dir});
    TU_OK(ks_trainer_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
    TU_OK(ks_trainer_extend(s.tr, ks_run_logger_new(keys, 1, NULL), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
    TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(1, KS_EPOCH), KS_PRIORITY_DEFAULT));
    if (part) {
      TU_OK(ks_snapshot_find_latest(dir, NULL, latest, sizeof latest));
      TU_OK(ks_trainer_load_snapshot(s.tr, latest));
    }
    TU_OK(ks_trainer_run(s.tr));
    if (part) {
      got g = {0};
      uint64_t off = start;
      TU_OK(ks_run_channel_read(channel, &off, 1, collect, &g));
      assert_int_equal(g.n, 3);  /* epochs 1, 2, 3: each once */
      ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
      for (int e = 0; e < 3; e++) {
        double v;
        TU_OK(ks_log_report_get(lr, e, keys[0], &v));
        assert_true(g.value[e] == v);
      }
    }
    tt_setup_free(&s);
  }
  tu_rmtree(dir);
  char first[700];  /* the first test's directory, the channel's */
  snprintf(first, sizeof first, "%s", channel);
  *strrchr(first, '/') = '\0';
  tu_rmtree(first);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_extensions_run__run_logger_reaches_the_channel),
    cmocka_unit_test(test_extensions_run__resumed_run_logger_sends_no_duplicates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
