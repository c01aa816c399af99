/*
 * tests/lib/test_trainer_snapshots.c — what a Chainer user expects of
 * triggers and snapshots beyond one process: fractional epoch periods
 * ((0.5, 'epoch') for extensions and the stop trigger, exact resume with
 * them), the snapshots already in the output directory (the newest one for
 * -r DIR, n_retains pruning an earlier process's files), autoload,
 * snapshot_object, and MaxValueTrigger / MinValueTrigger (the best model).
 */
#include "test_trainer_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 100 examples, batch 16: after i iterations epoch_detail is 16 i / 100
 * exactly as a fraction, so a period of p = a / b epochs fires at the
 * iterations where floor(16 i b / (100 a)) changes: integer arithmetic, no
 * rounding, as the reference. */
static void expect_fires(double period, int64_t a, int64_t b) {
  tt_setup s;
  tt_setup_init(&s, (tt_config){.n_train = 100});
  ks_updater *up = ks_trainer_updater(s.tr);
  ks_interval_trigger t;
  ks_interval_trigger_init(&t, KS_TRIGGER(period, KS_EPOCH));
  for (int64_t i = 1; i <= 40; i++) {
    TU_OK(ks_updater_update(up, NULL));
    int want = (16 * i * b) / (100 * a) != (16 * (i - 1) * b) / (100 * a);
    if (ks_interval_trigger_fire(&t, up) != want)
      fail_msg("period %g epochs at iteration %lld (epoch_detail %.17g): fired %d, expected %d", period, (long long)i,
               ks_updater_epoch_detail(up), !want, want);
  }
  tt_setup_free(&s);
}

static void test_fractional_epoch_triggers(void **state) {
  (void)state;
  expect_fires(0.5, 1, 2);
  expect_fires(0.1, 1, 10);   /* 0.3 / 0.1 is 2.9999999999999996 in double */
  expect_fires(0.3, 3, 10);
  expect_fires(1.5, 3, 2);
  expect_fires(2.0, 2, 1);
  expect_fires(0.25, 1, 4);

  /* the stop trigger too: half an epoch of 96 examples in batches of 16 is 3
   * iterations; 1.5 epochs 9 */
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(0.5, KS_EPOCH), .out = out});
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 3);
  tt_setup_free(&s);
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(1.5, KS_EPOCH), .out = out});
  /* what is refused: a fraction of an iteration, negative, NaN, fractional stops of iterations */
  assert_int_equal(ks_trainer_extend(s.tr, ks_observe_lr_new(NULL, NULL), NULL, KS_TRIGGER(1.5, KS_ITERATION),
                                     KS_PRIORITY_DEFAULT),
                   KS_EINVAL);
  assert_int_equal(ks_trainer_extend(s.tr, ks_observe_lr_new(NULL, NULL), NULL, KS_TRIGGER(-0.5, KS_EPOCH),
                                     KS_PRIORITY_DEFAULT),
                   KS_EINVAL);
  assert_int_equal(ks_trainer_extend(s.tr, ks_observe_lr_new(NULL, NULL), NULL, KS_TRIGGER(NAN, KS_EPOCH),
                                     KS_PRIORITY_DEFAULT),
                   KS_EINVAL);
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER(0.5, KS_EPOCH), NULL)));
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 9);
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lr), 3);
  double it;
  TU_OK(ks_log_report_get(lr, 0, "iteration", &it));
  assert_true(it == 3);
  TU_OK(ks_log_report_get(lr, 2, "iteration", &it));
  assert_true(it == 9);

  tt_setup_free(&s);
  ks_updater *up = NULL;
  tt_setup_init(&s, (tt_config){.out = out});
  TU_OK(ks_standard_updater_new(&up, s.train_it, s.train, s.opt, NULL));
  ks_trainer *tr = NULL;
  assert_int_equal(ks_trainer_new(&tr, up, KS_TRIGGER(0.5, KS_ITERATION), out), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "whole number of iterations"));
  tt_setup_free(&s);
  tu_rmtree(dir);
}

/* Training 2 epochs straight and training 1.5 epochs (a fractional stop),
 * then resuming from the newest snapshot to 2 epochs give the same bits,
 * with snapshots and log entries every half epoch (their trigger state,
 * previous_epoch_detail, is in the snapshot). */
static void test_fractional_periods_resume_exactly(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], a[700], b[700];
  snprintf(dir, sizeof dir, "%s", d);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  /* 100 examples, batch 16: half epochs end inside iterations */
  tt_config cfg = {.n_train = 100, .adam = 1, .dropout = 1, .seed = 4, .stop = KS_TRIGGER(2, KS_EPOCH), .out = a};
  tt_setup s;
  tt_setup_init(&s, cfg);
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER(0.5, KS_EPOCH), NULL)));
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(0.5, KS_EPOCH), KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_run(s.tr));
  int64_t np;
  float *pa = tt_params(s.model, &np);
  ks_extension *lra = ks_trainer_get_extension(s.tr, "LogReport");
  int na = ks_log_report_size(lra);
  assert_int_equal(na, 4);
  double la[4];
  for (int i = 0; i < na; i++) TU_OK(ks_log_report_get(lra, i, "main/loss", &la[i]));
  tt_setup_free(&s);

  cfg.out = b;
  cfg.stop = KS_TRIGGER(1.5, KS_EPOCH);
  tt_setup_init(&s, cfg);
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER(0.5, KS_EPOCH), NULL)));
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(0.5, KS_EPOCH), KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_run(s.tr));
  int64_t stopped_at = ks_updater_iteration(ks_trainer_updater(s.tr));
  tt_setup_free(&s);

  cfg.stop = KS_TRIGGER(2, KS_EPOCH);
  tt_setup_init(&s, cfg);
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER(0.5, KS_EPOCH), NULL)));
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(0.5, KS_EPOCH), KS_PRIORITY_DEFAULT));
  char snap[800];
  TU_OK(ks_snapshot_find_latest(b, NULL, snap, sizeof snap));
  char want[800];
  snprintf(want, sizeof want, "%s/snapshot_iter_%lld", b, (long long)stopped_at);
  assert_string_equal(snap, want);
  TU_OK(ks_trainer_load_snapshot(s.tr, snap));
  TU_OK(ks_trainer_run(s.tr));
  float *pb = tt_params(s.model, &np);
  assert_memory_equal(pa, pb, (size_t)np * sizeof(float));
  ks_extension *lrb = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lrb), na);
  for (int i = 0; i < na; i++) {
    double v;
    TU_OK(ks_log_report_get(lrb, i, "main/loss", &v));
    assert_true(v == la[i]);
  }
  tt_setup_free(&s);
  free(pa);
  free(pb);
  tu_rmtree(dir);
}

static void touch(const char *dir, const char *name, const char *text, time_t mtime) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  if (text) {
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
  }
  struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
  assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

/* The newest snapshot of a directory: by modification time, then numbers;
 * files that only look similar do not count. */
static void test_find_latest(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], path[1024], want[1024];
  snprintf(dir, sizeof dir, "%s", d);
  assert_int_equal(ks_snapshot_find_latest(dir, NULL, path, sizeof path), KS_ENOTFOUND);
  snprintf(want, sizeof want, "%s/nope", dir);
  assert_int_equal(ks_snapshot_find_latest(want, NULL, path, sizeof path), KS_ENOTFOUND);
  touch(dir, "snapshot_iter_6", "x", 1000);
  touch(dir, "snapshot_iter_12", "x", 1000);
  touch(dir, "snapshot_iter_7.tmp", "x", 5000);   /* a killed save's temporary file */
  touch(dir, "snapshot_iter_", "x", 5000);
  touch(dir, "snapshot_iter_x", "x", 5000);
  touch(dir, "model.npz", "x", 5000);
  TU_OK(ks_snapshot_find_latest(dir, NULL, path, sizeof path));
  snprintf(want, sizeof want, "%s/snapshot_iter_12", dir);
  assert_string_equal(path, want);  /* same time: the higher iteration */
  touch(dir, "snapshot_iter_6", NULL, 2000);
  TU_OK(ks_snapshot_find_latest(dir, NULL, path, sizeof path));
  snprintf(want, sizeof want, "%s/snapshot_iter_6", dir);
  assert_string_equal(path, want);  /* written after 12 (a resumed run): newer */
  touch(dir, "snap_e2_i12", "x", 100);
  TU_OK(ks_snapshot_find_latest(dir, "snap_e{.updater.epoch}_i{.updater.iteration}", path, sizeof path));
  snprintf(want, sizeof want, "%s/snap_e2_i12", dir);
  assert_string_equal(path, want);
  char small[8];
  assert_int_equal(ks_snapshot_find_latest(dir, NULL, small, sizeof small), KS_EINVAL);
  tu_rmtree(dir);
}

/* n_retains counts the snapshots in the directory, also those an earlier
 * process left (Chainer's n_retains scans the directory too). */
static void test_n_retains_prunes_earlier_files(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600];
  snprintf(dir, sizeof dir, "%s", d);
  touch(dir, "snapshot_iter_100", "x", 1000);   /* an earlier, longer run's */
  touch(dir, "snapshot_iter_3", "x", 1000);
  touch(dir, "snapshot_iter_5.tmp", "x", 1000); /* not a snapshot: stays */
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = dir, .stop = KS_TRIGGER(3, KS_EPOCH)});
  TU_OK(tt_extend(s.tr, ks_snapshot_new(NULL, 2)));
  TU_OK(ks_trainer_run(s.tr));
  tt_setup_free(&s);
  assert_false(tt_file_exists(dir, "snapshot_iter_100"));
  assert_false(tt_file_exists(dir, "snapshot_iter_3"));
  assert_false(tt_file_exists(dir, "snapshot_iter_6"));
  assert_true(tt_file_exists(dir, "snapshot_iter_12"));
  assert_true(tt_file_exists(dir, "snapshot_iter_18"));
  assert_true(tt_file_exists(dir, "snapshot_iter_5.tmp"));
  /* without n_retains they accumulate, as in Chainer */
  tt_setup_init(&s, (tt_config){.out = dir, .stop = KS_TRIGGER(2, KS_EPOCH)});
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(4, KS_ITERATION), KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_run(s.tr));
  tt_setup_free(&s);
  assert_true(tt_file_exists(dir, "snapshot_iter_4"));
  assert_true(tt_file_exists(dir, "snapshot_iter_8"));
  assert_true(tt_file_exists(dir, "snapshot_iter_12"));
  assert_true(tt_file_exists(dir, "snapshot_iter_18"));
  tu_rmtree(dir);
}

static void autoload_run(const char *out, int epochs, float **params, int64_t *np) {
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = out, .stop = KS_TRIGGER(epochs, KS_EPOCH), .bn = 1, .seed = 9});
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)));
  TU_OK(tt_extend(s.tr, ks_exponential_shift_new("lr", 0.5, NAN, NAN, NULL)));
  TU_OK(tt_extend(s.tr, ks_snapshot_new_ex(&(ks_snapshot_opts){.n_retains = 1, .autoload = 1})));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 0);
  TU_OK(ks_trainer_run(s.tr));
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  double first;
  TU_OK(ks_log_report_get(lr, 0, "iteration", &first));
  /* the log is part of the snapshot: its first entry is epoch 1's either way */
  assert_true(first == 6);
  assert_int_equal(ks_log_report_size(lr), epochs);
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 6 * epochs);
  *params = tt_params(s.model, np);
  double lr_now;
  TU_OK(ks_optimizer_get_hyperparam(s.opt, "lr", &lr_now));
  assert_true(lr_now == 0.05 * pow(0.5, 6 * epochs));
  tt_setup_free(&s);
}

/* autoload: the same program run again after it stopped goes on from its
 * newest snapshot, bit for bit as one run of the whole length */
static void test_autoload(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], a[700], b[700];
  snprintf(dir, sizeof dir, "%s", d);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  float *pa, *pb, *tmp;
  int64_t np;
  autoload_run(a, 4, &pa, &np);                  /* straight, nothing to load */
  autoload_run(b, 2, &tmp, &np);                 /* first start, stopped after 2 epochs */
  free(tmp);
  assert_true(tt_file_exists(b, "snapshot_iter_12"));
  assert_false(tt_file_exists(b, "snapshot_iter_6"));
  autoload_run(b, 4, &pb, &np);                  /* loads snapshot_iter_12 */
  assert_memory_equal(pa, pb, (size_t)np * sizeof(float));
  free(pa);
  free(pb);

  /* a damaged newest snapshot fails the run clearly and is left alone */
  touch(b, "snapshot_iter_30", "not a snapshot", time(NULL) + 100);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = b, .stop = KS_TRIGGER(6, KS_EPOCH), .bn = 1, .seed = 9});
  TU_OK(tt_extend(s.tr, ks_snapshot_new_ex(&(ks_snapshot_opts){.autoload = 1})));
  assert_int_not_equal(ks_trainer_run(s.tr), KS_OK);
  assert_non_null(strstr(ks_error_last(), "snapshot_iter_30"));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 0);
  tt_setup_free(&s);
  assert_true(tt_file_exists(b, "snapshot_iter_30"));
  tu_rmtree(dir);
}

/* snapshot_object: the predictor alone, its keys relative to it, loadable
 * into a bare predictor; n_retains keeps the newest */
static void test_snapshot_object(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], p[800];
  snprintf(dir, sizeof dir, "%s", d);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = dir, .stop = KS_TRIGGER(3, KS_EPOCH), .bn = 1});
  ks_link *pred = ks_link_child(s.model, "predictor");
  TU_OK(tt_extend(s.tr, ks_snapshot_object_new(pred, "model_epoch_{.updater.epoch}", 0)));
  TU_OK(tt_extend(s.tr, ks_snapshot_object_new(pred, "last_{.updater.iteration}.npz", 1)));
  assert_null(ks_snapshot_object_new(pred, "a/b", 0));
  assert_null(ks_snapshot_object_new(NULL, "x", 0));
  assert_non_null(ks_trainer_get_extension(s.tr, "snapshot_object_1"));
  TU_OK(ks_trainer_run(s.tr));
  assert_true(tt_file_exists(dir, "model_epoch_1"));
  assert_true(tt_file_exists(dir, "model_epoch_3"));
  assert_false(tt_file_exists(dir, "last_6.npz"));
  assert_true(tt_file_exists(dir, "last_18.npz"));
  /* keys relative to the predictor: a bare predictor of the same shape loads it */
  ks_link *bare = tt_make_model(16, 77, 0, 1);
  snprintf(p, sizeof p, "%s/model_epoch_3", dir);
  TU_OK(ks_load_npz(p, ks_link_child(bare, "predictor")));
  int64_t na, nb;
  float *pa = tt_params(pred, &na), *pb = tt_params(ks_link_child(bare, "predictor"), &nb);
  assert_int_equal(na, nb);
  assert_memory_equal(pa, pb, (size_t)na * sizeof(float));
  const ks_tensor *ma = ks_link_persistent(pred, "bn/avg_mean");
  const ks_tensor *mb = ks_link_persistent(ks_link_child(bare, "predictor"), "bn/avg_mean");
  assert_memory_equal(ma->data, mb->data, (size_t)ma->size * sizeof(float));
  free(pa);
  free(pb);
  ks_link_free(bare);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

/* MaxValueTrigger / MinValueTrigger on values reported by hand: the mean of
 * each epoch's values against the best mean so far */
static void test_best_value_triggers(void **state) {
  (void)state;
  tt_setup s;
  tt_setup_init(&s, (tt_config){0});   /* 96 examples, batch 16: 6 iterations per epoch */
  ks_updater *up = ks_trainer_updater(s.tr);
  ks_reporter *rep = ks_reporter_new();
  assert_non_null(rep);
  ks_interval_trigger mx, mn, never;
  ks_interval_trigger_init(&mx, KS_MAX_VALUE_TRIGGER("v", 1, KS_EPOCH));
  ks_interval_trigger_init(&mn, KS_MIN_VALUE_TRIGGER("v", 1, KS_EPOCH));
  ks_interval_trigger_init(&never, KS_MAX_VALUE_TRIGGER("absent", 1, KS_EPOCH));
  /* epoch means 0.5, 0.7, 0.6 (0.2 and 1.0 alternating), 0.7 (not higher), 0.9, 0.4 */
  static const double mean[] = {0.5, 0.7, 0.6, 0.7, 0.9, 0.4};
  char fired_max[64] = "", fired_min[64] = "";
  for (int it = 1; it <= 36; it++) {
    int ep = (it - 1) / 6;
    double v = ep == 2 ? (it % 2 ? 0.2 : 1.0) : mean[ep];
    ks_reporter_clear(rep);
    TU_OK(ks_reporter_report(rep, "v", v));
    TU_OK(ks_updater_update(up, NULL));
    int f = 0;
    char b[8];
    snprintf(b, sizeof b, "%d ", ep + 1);
    TU_OK(ks_trigger_fire_observed(&mx, up, rep, &f));
    if (f) strcat(fired_max, b);
    TU_OK(ks_trigger_fire_observed(&mn, up, rep, &f));
    if (f) strcat(fired_min, b);
    int rc = ks_trigger_fire_observed(&never, up, rep, &f);
    assert_int_equal(rc, it % 6 == 0 ? KS_ENOTFOUND : KS_OK);
    if (rc != KS_OK) assert_non_null(strstr(ks_error_last(), "'absent'"));
  }
  assert_string_equal(fired_max, "1 2 5 ");
  assert_string_equal(fired_min, "1 6 ");
  assert_true(mx.best_value == 0.9);
  ks_reporter_free(rep);
  /* refused: without a key, as a stop trigger */
  assert_int_equal(ks_trainer_extend(s.tr, ks_observe_lr_new(NULL, NULL), NULL, KS_MAX_VALUE_TRIGGER(NULL, 1, KS_EPOCH),
                                     KS_PRIORITY_DEFAULT),
                   KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "needs the key"));
  tt_setup_free(&s);
  tt_setup_init(&s, (tt_config){0});
  ks_updater *up2 = NULL;
  TU_OK(ks_standard_updater_new(&up2, s.train_it, s.train, s.opt, NULL));
  ks_trainer *tr = NULL;
  assert_int_equal(ks_trainer_new(&tr, up2, KS_MAX_VALUE_TRIGGER("v", 1, KS_EPOCH), NULL), KS_EINVAL);
  tt_setup_free(&s);
}

/* The best model by validation accuracy, saved whenever it improves: the
 * files are those of the epochs whose logged accuracy beat every earlier
 * one; a run stopped and resumed (autoload) saves the same ones, since the
 * best value so far is in the snapshot. */
static void best_model_run(const char *out, int epochs) {
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = out, .stop = KS_TRIGGER(epochs, KS_EPOCH), .n_train = 64, .batch = 8,
                                .units = 4, .seed = 21});
  TU_OK(tt_extend(s.tr, ks_evaluator_new(s.test_it, s.test, s.model, NULL)));
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)));
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_object_new(ks_link_child(s.model, "predictor"), "best_{.updater.epoch}", 0),
                          NULL, KS_MAX_VALUE_TRIGGER("validation/main/accuracy", 1, KS_EPOCH), KS_PRIORITY_DEFAULT));
  TU_OK(tt_extend(s.tr, ks_snapshot_new_ex(&(ks_snapshot_opts){.n_retains = 1, .autoload = 1})));
  TU_OK(ks_trainer_run(s.tr));
  /* the expected files from the log */
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lr), epochs);
  double best = -1;
  int improved = 0;
  for (int i = 0; i < epochs; i++) {
    double acc;
    TU_OK(ks_log_report_get(lr, i, "validation/main/accuracy", &acc));
    char name[32];
    snprintf(name, sizeof name, "best_%d", i + 1);
    if (acc > best) {
      best = acc;
      improved++;
      assert_true(tt_file_exists(out, name));
    } else {
      assert_false(tt_file_exists(out, name));
    }
  }
  assert_true(improved >= 1);
  tt_setup_free(&s);
}

static void test_best_model_snapshot(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600], a[700], b[700];
  snprintf(dir, sizeof dir, "%s", d);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  best_model_run(a, 6);
  /* stopped after epoch 5: epoch 6 is no better than epoch 5 (0.85 < 0.875
   * here), which only the restored best value knows */
  best_model_run(b, 5);
  best_model_run(b, 6);
  assert_false(tt_file_exists(b, "best_6"));
  for (int e = 1; e <= 6; e++) {
    char name[32];
    snprintf(name, sizeof name, "best_%d", e);
    assert_int_equal(tt_file_exists(a, name), tt_file_exists(b, name));
  }
  tu_rmtree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fractional_epoch_triggers),
    cmocka_unit_test(test_fractional_periods_resume_exactly),
    cmocka_unit_test(test_find_latest),
    cmocka_unit_test(test_n_retains_prunes_earlier_files),
    cmocka_unit_test(test_autoload),
    cmocka_unit_test(test_snapshot_object),
    cmocka_unit_test(test_best_value_triggers),
    cmocka_unit_test(test_best_model_snapshot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
