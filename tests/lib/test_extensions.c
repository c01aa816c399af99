/*
 * tests/lib/test_extensions.c — the built-in trainer extensions: Evaluator
 * against a manual evaluation, LogReport's JSON file read back by Python,
 * PrintReport's table, ProgressBar's silence off a terminal, PlotReport's
 * PNG, snapshot names and n_retains, the hyperparameter schedules,
 * observe_lr, and RunLogger offline.
 */
#include "test_trainer_util.h"

#include <cairo.h>
#include <stdlib.h>

/* fontconfig (under cairo's text) keeps process-wide caches it never frees;
 * LeakSanitizer reads this hook in sanitizer builds. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }

static void unset_run_env(void) {
  unsetenv("KUSARI_RUN_ID");
  unsetenv("KUSARI_METRICS_CHANNEL");
  unsetenv("KUSARI_UPLOAD_DIR");
}

/* ---------------------------------------------------------------------------- */
/* a recorder: runs every iteration at a chosen priority and keeps what it sees */

typedef struct seen {
  int n;
  double lr[64];        /* optimizer hyperparameter 'attr' after the iteration */
  double observed[64];  /* reporter value of 'key' (NAN when absent)           */
  double loss_sum[8];   /* per epoch: sum and count of main/loss               */
  int loss_n[8];
  const char *attr, *key;
} seen;

static int seen_run(ks_extension *e, ks_trainer *tr) {
  seen *s = ks_extension_state(e);
  ks_updater *up = ks_trainer_updater(tr);
  if (s->n < 64) {
    if (s->attr) TU_OK(ks_optimizer_get_hyperparam(ks_updater_optimizer(up), s->attr, &s->lr[s->n]));
    double v = NAN;
    if (s->key) ks_reporter_get(ks_trainer_reporter(tr), s->key, &v);
    s->observed[s->n] = v;
  }
  double l;
  /* the epoch this iteration belongs to: the iterator already moved on when
   * is_new_epoch is set */
  int64_t ep = ks_updater_epoch(up) - (ks_updater_is_new_epoch(up) ? 1 : 0);
  if (ep < 8 && ks_reporter_get(ks_trainer_reporter(tr), "main/loss", &l) == KS_OK) {
    s->loss_sum[ep] += l;
    s->loss_n[ep]++;
  }
  s->n++;
  return KS_OK;
}
static const ks_extension_ops seen_ops = {.default_name = "seen", .run = seen_run};

/* ---------------------------------------------------------------------------- */
/* Evaluator */

static void test_extensions__evaluator_matches_manual_evaluation(void **state) {
  (void)state;
  tt_setup s;
  tt_setup_init(&s, (tt_config){.n_test = 40, .batch = 16});
  for (int i = 0; i < 20; i++) TU_OK(ks_updater_update(ks_trainer_updater(s.tr), NULL));
  ks_extension *ev = ks_evaluator_new(s.test_it, s.test, s.model, NULL);
  TU_NONNULL(ev);
  int64_t np;
  float *before = tt_params(s.model, &np);
  ks_reporter *rep = ks_reporter_new();
  TU_OK(ks_evaluator_evaluate(ev, rep, "validation/"));
  double loss, acc;
  TU_OK(ks_reporter_get(rep, "validation/main/loss", &loss));
  TU_OK(ks_reporter_get(rep, "validation/main/accuracy", &acc));
  assert_int_equal(ks_reporter_size(rep), 2);

  /* by hand: batches of 16, 16, 8; the mean of per-batch means */
  ks_ctx *ctx = ks_ctx_new();
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  double ls = 0, as = 0;
  int64_t starts[] = {0, 16, 32}, sizes[] = {16, 16, 8};
  for (int b = 0; b < 3; b++) {
    int64_t idx[16];
    for (int k = 0; k < sizes[b]; k++) idx[k] = starts[b] + k;
    ks_var *in[4];
    int n_in;
    TU_OK(ks_concat_examples(ctx, s.test, idx, sizes[b], in, &n_in, NULL));
    ks_var *a = NULL;
    ks_var *l = ks_classifier_forward(ctx, s.model, in[0], in[1], NULL, &a);
    TU_NONNULL(l);
    ls += ks_tensor_f32(l->data)[0];
    as += ks_tensor_f32(a->data)[0];
    ks_ctx_reset(ctx);
  }
  assert_true(loss == ls / 3);
  assert_true(acc == as / 3);
  /* evaluation changes no parameter, and a second one gives the same */
  float *after = tt_params(s.model, &np);
  assert_memory_equal(before, after, (size_t)np * sizeof(float));
  ks_reporter_clear(rep);
  TU_OK(ks_evaluator_evaluate(ev, rep, "v2/"));
  double loss2;
  TU_OK(ks_reporter_get(rep, "v2/main/loss", &loss2));
  assert_true(loss2 == loss);
  /* a repeating iterator is refused */
  assert_null(ks_evaluator_new(s.train_it, s.train, s.model, NULL));
  assert_int_equal(ks_error_last_code(), KS_EINVAL);
  ks_extension_free(ev);
  ks_reporter_free(rep);
  ks_ctx_free(ctx);
  free(before);
  free(after);
  tt_setup_free(&s);
}

/* ---------------------------------------------------------------------------- */
/* LogReport + PrintReport + PlotReport + ProgressBar in one run */

static void test_extensions__log_print_plot_progress(void **state) {
  (void)state;
  if (!KS_TEST_PYTHON[0]) fail_msg("python3 with numpy not found at configure time (install python3-numpy)");
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(3, KS_EPOCH), .out = out});
  seen rec = {0};
  FILE *printed = tmpfile(), *bar = tmpfile();
  static const char *const entries[] = {"epoch", "main/loss", "validation/main/loss"};
  static const char *const ykeys[] = {"main/loss", "validation/main/loss"};
  TU_OK(tt_extend(s.tr, ks_evaluator_new(s.test_it, s.test, s.model, NULL)));
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)));
  TU_OK(tt_extend(s.tr, ks_print_report_new(entries, 3, NULL, printed)));
  TU_OK(tt_extend(s.tr, ks_plot_report_new(ykeys, 2, NULL, "loss.png", NULL)));
  TU_OK(tt_extend(s.tr, ks_progress_bar_new(1, bar)));
  TU_OK(ks_trainer_extend(s.tr, ks_extension_new(&seen_ops, &rec), NULL, KS_TRIGGER_DEFAULT, 250));
  TU_OK(ks_trainer_run(s.tr));

  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lr), 3);
  /* the means are the means of what was reported in each epoch */
  for (int e = 0; e < 3; e++) {
    double m, ep, it;
    TU_OK(ks_log_report_get(lr, e, "main/loss", &m));
    assert_int_equal(rec.loss_n[e], 6);
    assert_true(m == rec.loss_sum[e] / 6);
    TU_OK(ks_log_report_get(lr, e, "epoch", &ep));
    TU_OK(ks_log_report_get(lr, e, "iteration", &it));
    assert_true(ep == e + 1);
    assert_true(it == 6 * (e + 1));
  }

  /* Python reads the log file: a list of dicts in Chainer's key order, the
   * values exactly the C ones */
  char cmd[4096];
  int at = snprintf(cmd, sizeof cmd, "%s -c '\n"
    "import json, sys\n"
    "log = json.load(open(sys.argv[1] + \"/log\"))\n"
    "assert isinstance(log, list) and len(log) == 3, log\n"
    "keys = [\"main/loss\", \"main/accuracy\", \"validation/main/loss\", \"validation/main/accuracy\", \"epoch\", \"iteration\", \"elapsed_time\"]\n"
    "for i, d in enumerate(log):\n"
    "    assert list(d.keys()) == keys, list(d.keys())\n"
    "    assert d[\"epoch\"] == i + 1 and type(d[\"epoch\"]) is int\n"
    "    assert d[\"iteration\"] == 6 * (i + 1) and type(d[\"iteration\"]) is int\n"
    "    assert d[\"main/loss\"] == float(sys.argv[2 + 2 * i]), (d, sys.argv)\n"
    "    assert d[\"validation/main/accuracy\"] == float(sys.argv[3 + 2 * i])\n"
    "    assert d[\"elapsed_time\"] > 0\n"
    "assert log[0][\"elapsed_time\"] <= log[2][\"elapsed_time\"]\n"
    "' '%s'", KS_TEST_PYTHON, out);
  for (int e = 0; e < 3; e++) {
    double m, va;
    TU_OK(ks_log_report_get(lr, e, "main/loss", &m));
    TU_OK(ks_log_report_get(lr, e, "validation/main/accuracy", &va));
    at += snprintf(cmd + at, sizeof cmd - (size_t)at, " %.17g %.17g", m, va);
  }
  assert_int_equal(system(cmd), 0);

  /* PrintReport: a header and one row per entry */
  rewind(printed);
  char line[512];
  assert_non_null(fgets(line, sizeof line, printed));
  assert_string_equal(line, "epoch       main/loss   validation/main/loss\n");
  for (int e = 0; e < 3; e++) {
    assert_non_null(fgets(line, sizeof line, printed));
    double ep, m, vm, want;
    assert_int_equal(sscanf(line, "%lf %lf %lf", &ep, &m, &vm), 3);
    assert_true(ep == e + 1);
    TU_OK(ks_log_report_get(lr, e, "main/loss", &want));
    char g[64];
    snprintf(g, sizeof g, "%g", want);
    assert_true(m == strtod(g, NULL));
    assert_int_equal(line[0], '1' + e);
    assert_int_equal(line[10], ' '); /* columns: 10 wide + 2 spaces */
    assert_true(line[12] != ' ');
  }
  assert_null(fgets(line, sizeof line, printed));

  /* ProgressBar: not a terminal, so nothing at all */
  fseek(bar, 0, SEEK_END);
  assert_int_equal(ftell(bar), 0);

  /* PlotReport: a PNG of 640x480 with something drawn in colour */
  char png[700];
  snprintf(png, sizeof png, "%s/loss.png", out);
  FILE *f = fopen(png, "rb");
  assert_non_null(f);
  unsigned char sig[8];
  assert_int_equal(fread(sig, 1, 8, f), 8);
  fclose(f);
  assert_memory_equal(sig, "\x89PNG\r\n\x1a\n", 8);
  cairo_surface_t *img = cairo_image_surface_create_from_png(png);
  assert_int_equal(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
  assert_int_equal(cairo_image_surface_get_width(img), 640);
  assert_int_equal(cairo_image_surface_get_height(img), 480);
  cairo_surface_flush(img);
  const unsigned char *px = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img), coloured = 0;
  for (int y = 0; y < 480; y++)
    for (int x = 0; x < 640; x++) {
      const unsigned char *p = px + y * stride + 4 * x; /* B G R A */
      if (abs((int)p[0] - (int)p[2]) > 80) coloured++;
    }
  assert_true(coloured > 200);
  cairo_surface_destroy(img);
  fclose(printed);
  fclose(bar);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static void test_extensions__log_report_keys_trigger_filename(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(10, KS_ITERATION), .out = out});
  static const char *const keys[] = {"main/accuracy"};
  TU_OK(tt_extend(s.tr, ks_log_report_new(keys, 1, KS_TRIGGER(4, KS_ITERATION), "my_log")));
  TU_OK(ks_trainer_run(s.tr));
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lr), 2); /* iterations 4 and 8 */
  double v;
  assert_int_equal(ks_log_report_get(lr, 0, "main/loss", &v), KS_ENOTFOUND);
  TU_OK(ks_log_report_get(lr, 1, "main/accuracy", &v));
  TU_OK(ks_log_report_get(lr, 1, "iteration", &v));
  assert_true(v == 8);
  assert_true(tt_file_exists(out, "my_log"));
  assert_false(tt_file_exists(out, "log"));
  tt_setup_free(&s);

  /* readers without a LogReport fail clearly */
  static const char *const e1[] = {"epoch"};
  ks_extension *readers[3] = {ks_print_report_new(e1, 1, NULL, NULL), ks_plot_report_new(e1, 1, NULL, "p.png", NULL),
                              ks_run_logger_new(NULL, 0, NULL)};
  for (int i = 0; i < 3; i++) {
    tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_ITERATION), .out = out});
    TU_OK(tt_extend(s.tr, readers[i]));
    assert_int_equal(ks_trainer_run(s.tr), KS_ENOTFOUND);
    assert_non_null(strstr(ks_error_last(), "LogReport"));
    tt_setup_free(&s);
  }
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------------- */
/* snapshot names */

static void test_extensions__snapshot_names_and_retention(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(4, KS_EPOCH), .out = out});
  TU_OK(tt_extend(s.tr, ks_snapshot_new(NULL, 2)));
  TU_OK(tt_extend(s.tr, ks_snapshot_new("snap_e{.updater.epoch}_i{.updater.iteration}", 0)));
  TU_OK(ks_trainer_run(s.tr));
  assert_false(tt_file_exists(out, "snapshot_iter_6"));
  assert_false(tt_file_exists(out, "snapshot_iter_12"));
  assert_true(tt_file_exists(out, "snapshot_iter_18"));
  assert_true(tt_file_exists(out, "snapshot_iter_24"));
  assert_true(tt_file_exists(out, "snap_e1_i6"));
  assert_true(tt_file_exists(out, "snap_e4_i24"));
  assert_non_null(ks_trainer_get_extension(s.tr, "snapshot_1"));
  tt_setup_free(&s);
  assert_null(ks_snapshot_new("a/b", 0));
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------------- */
/* schedules and observe_lr */

static void run_schedule(ks_extension *shift, const char *attr, int iters, int adam, seen *rec,
                         int expect_rc) {
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.adam = adam, .stop = KS_TRIGGER(iters, KS_ITERATION), .out = out});
  rec->attr = attr;
  rec->key = "lr";
  TU_OK(tt_extend(s.tr, ks_observe_lr_new(NULL, NULL)));
  TU_OK(tt_extend(s.tr, shift));
  TU_OK(ks_trainer_extend(s.tr, ks_extension_new(&seen_ops, rec), NULL, KS_TRIGGER_DEFAULT, 50));
  int rc = ks_trainer_run(s.tr);
  assert_int_equal(rc, expect_rc);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static void expect_values(const double *got, const double *want, int n) {
  for (int i = 0; i < n; i++)
    if (fabs(got[i] - want[i]) > 1e-15 * fabs(want[i]) + 1e-18)
      fail_msg("value %d: got %.17g, want %.17g", i, got[i], want[i]);
}

static void test_extensions__exponential_shift(void **state) {
  (void)state;
  seen rec = {0};
  /* MomentumSGD lr 0.05: the update of iteration i uses the value set after i-1 */
  run_schedule(ks_exponential_shift_new("lr", 0.5, NAN, 0.01, NULL), "lr", 5, 0, &rec, KS_OK);
  double after[] = {0.025, 0.0125, 0.01, 0.01, 0.01};
  double used[] = {0.05, 0.025, 0.0125, 0.01, 0.01};
  expect_values(rec.lr, after, 5);
  expect_values(rec.observed, used, 5); /* observe_lr (writer) runs before the shift */
  /* growing, with an explicit init, clipped from below the target */
  seen r2 = {0};
  run_schedule(ks_exponential_shift_new("lr", 2, 0.001, 0.004, NULL), "lr", 4, 0, &r2, KS_OK);
  double a2[] = {0.002, 0.004, 0.004, 0.004};
  double u2[] = {0.001, 0.002, 0.004, 0.004};
  expect_values(r2.lr, a2, 4);
  expect_values(r2.observed, u2, 4);
  /* no target */
  seen r3 = {0};
  run_schedule(ks_exponential_shift_new("lr", 0.9, 1.0, NAN, NULL), "lr", 3, 0, &r3, KS_OK);
  double a3[] = {0.9, 0.9 * 0.9, pow(0.9, 3)};
  expect_values(r3.lr, a3, 3);
  /* an attribute the optimizer does not have */
  seen r4 = {0};
  run_schedule(ks_exponential_shift_new("alpha", 0.5, NAN, NAN, NULL), NULL, 3, 0, &r4, KS_ENOTFOUND);
  assert_null(ks_exponential_shift_new("lr", 0, 1, NAN, NULL));
}

static void test_extensions__step_and_linear_shift(void **state) {
  (void)state;
  seen rec = {0};
  run_schedule(ks_step_shift_new("lr", 0.1, 3, 1.0, NAN, NULL), "lr", 7, 0, &rec, KS_OK);
  double want[] = {1, 1, 0.1, 0.1, 0.1, 0.01, 0.01}; /* t = 1..7: gamma^floor(t / 3) */
  expect_values(rec.lr, want, 7);
  assert_true(rec.observed[0] == 1.0);
  seen r2 = {0};
  run_schedule(ks_linear_shift_new("lr", 0.1, 0.0, 2, 6, NULL), "lr", 7, 0, &r2, KS_OK);
  double w2[] = {0.1, 0.1, 0.075, 0.05, 0.025, 0.0, 0.0};
  expect_values(r2.lr, w2, 7);
  assert_true(r2.observed[0] == 0.1); /* initialize set v0 */
  /* Adam's alpha */
  seen r3 = {0};
  run_schedule(ks_step_shift_new("alpha", 0.5, 2, NAN, NAN, NULL), "alpha", 4, 1, &r3, KS_OK);
  double w3[] = {0.001, 0.0005, 0.0005, 0.00025};
  expect_values(r3.lr, w3, 4);
  assert_null(ks_linear_shift_new("lr", 1, 0, 5, 5, NULL));
  assert_null(ks_step_shift_new("lr", 0.5, 0, 1, NAN, NULL));
}

static void test_extensions__observe_lr_adam(void **state) {
  (void)state;
  seen rec = {0};
  /* a schedule that never changes anything, to reuse run_schedule */
  run_schedule(ks_linear_shift_new("alpha", 0.001, 0.001, 0, 1, NULL), "alpha", 5, 1, &rec, KS_OK);
  for (int t = 1; t <= 5; t++) {
    double want = 0.001 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
    if (fabs(rec.observed[t - 1] - want) > 1e-12 * want) fail_msg("t=%d: %.17g vs %.17g", t, rec.observed[t - 1], want);
  }
}

/* ---------------------------------------------------------------------------- */
/* RunLogger (offline) and observe_value */

static double twice_iteration(ks_trainer *tr, void *user) {
  (void)user;
  return 2.0 * (double)ks_updater_iteration(ks_trainer_updater(tr));
}

static void test_extensions__run_logger_offline_and_observe_value(void **state) {
  (void)state;
  assert_true(ks_run_is_offline(ks_run_current()));
  const char *dir = tu_tmpdir();
  char out[600];
  snprintf(out, sizeof out, "%s", dir);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_EPOCH), .out = out});
  static const char *const keys[] = {"main/loss", "twice"};
  TU_OK(tt_extend(s.tr, ks_observe_value_new("twice", twice_iteration, NULL)));
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)));
  TU_OK(tt_extend(s.tr, ks_run_logger_new(keys, 2, NULL)));
  TU_OK(ks_trainer_run(s.tr));
  double v;
  /* mean of 2*1 .. 2*6 and of 2*7 .. 2*12 */
  TU_OK(ks_log_report_get(ks_trainer_get_extension(s.tr, "LogReport"), 0, "twice", &v));
  assert_true(v == 7.0);
  TU_OK(ks_log_report_get(ks_trainer_get_extension(s.tr, "LogReport"), 1, "twice", &v));
  assert_true(v == 19.0);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

int main(void) {
  unset_run_env();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_extensions__evaluator_matches_manual_evaluation),
    cmocka_unit_test(test_extensions__log_print_plot_progress),
    cmocka_unit_test(test_extensions__log_report_keys_trigger_filename),
    cmocka_unit_test(test_extensions__snapshot_names_and_retention),
    cmocka_unit_test(test_extensions__exponential_shift),
    cmocka_unit_test(test_extensions__step_and_linear_shift),
    cmocka_unit_test(test_extensions__observe_lr_adam),
    cmocka_unit_test(test_extensions__run_logger_offline_and_observe_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
