/*
 * tests/lib/test_trainer.c — Reporter, DictSummary, IntervalTrigger,
 * StandardUpdater, Trainer (priorities, error paths) and snapshots:
 * resume after k epochs gives bit-identical parameters to a straight run.
 */
#include "test_trainer_util.h"

#include <sys/stat.h>

/* ---------------------------------------------------------------------------- */
/* Reporter and DictSummary */

static void test_trainer__reporter_prefix_and_overwrite(void **state) {
  (void)state;
  ks_reporter *r = ks_reporter_new();
  TU_OK(ks_reporter_report(r, "lr", 0.5));
  TU_OK(ks_reporter_set_prefix(r, "main/"));
  TU_OK(ks_reporter_report(r, "loss", 2.0));
  TU_OK(ks_reporter_report(r, "loss", 3.0)); /* a dict: overwritten */
  assert_int_equal(ks_reporter_size(r), 2);
  assert_string_equal(ks_reporter_key(r, 0), "lr");
  assert_string_equal(ks_reporter_key(r, 1), "main/loss");
  double v;
  TU_OK(ks_reporter_get(r, "main/loss", &v));
  assert_true(v == 3.0);
  assert_int_equal(ks_reporter_get(r, "loss", &v), KS_ENOTFOUND);
  assert_null(ks_reporter_key(r, 5));
  ks_reporter_clear(r);
  assert_int_equal(ks_reporter_size(r), 0);
  assert_string_equal(ks_reporter_prefix(r), "main/");
  assert_int_equal(ks_reporter_report(r, "", 1), KS_EINVAL);
  ks_reporter_free(r);
  ks_reporter_free(NULL);
}

static void test_trainer__summary_means_like_chainer(void **state) {
  (void)state;
  ks_summary *s = ks_summary_new();
  ks_reporter *obs = ks_reporter_new();
  double xs[] = {1.0, 2.0, 4.0, 8.5};
  for (int i = 0; i < 4; i++) {
    ks_reporter_clear(obs);
    TU_OK(ks_reporter_report(obs, "a", xs[i]));
    if (i % 2 == 0) TU_OK(ks_reporter_report(obs, "b", -xs[i]));
    TU_OK(ks_summary_add_observation(s, obs, NULL, 0));
  }
  double m, sd;
  TU_OK(ks_summary_mean(s, "a", &m, &sd));
  assert_true(m == (1.0 + 2.0 + 4.0 + 8.5) / 4);
  double ex2 = (1 + 4 + 16 + 72.25) / 4.0;
  assert_true(fabs(sd - sqrt(ex2 - m * m)) < 1e-12);
  TU_OK(ks_summary_mean(s, "b", &m, NULL)); /* only observed twice: mean over those */
  assert_true(m == (-1.0 - 4.0) / 2);
  assert_int_equal(ks_summary_mean(s, "c", &m, NULL), KS_ENOTFOUND);
  /* weights (Summary.add(value, weight)) */
  TU_OK(ks_summary_add(s, "w", 1.0, 3.0));
  TU_OK(ks_summary_add(s, "w", 5.0, 1.0));
  TU_OK(ks_summary_mean(s, "w", &m, NULL));
  assert_true(m == 2.0);
  /* key filter */
  ks_summary *f = ks_summary_new();
  const char *keys[] = {"a", "zz"};
  TU_OK(ks_summary_add_observation(f, obs, keys, 2));
  assert_int_equal(ks_summary_size(f), 1);
  assert_string_equal(ks_summary_key(f, 0), "a");
  /* round trip through an npz */
  const char *dir = tu_tmpdir();
  char path[600];
  snprintf(path, sizeof path, "%s/s.npz", dir);
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, path, 1));
  TU_OK(ks_summary_save(s, w, "sum/"));
  TU_OK(ks_npz_writer_commit(w));
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, path));
  ks_summary *back = ks_summary_new();
  TU_OK(ks_summary_load(back, r, "sum/"));
  ks_npz_reader_close(r);
  assert_int_equal(ks_summary_size(back), ks_summary_size(s));
  for (int i = 0; i < ks_summary_size(s); i++) {
    double a, b;
    TU_OK(ks_summary_mean(s, ks_summary_key(s, i), &a, NULL));
    TU_OK(ks_summary_mean(back, ks_summary_key(s, i), &b, NULL));
    assert_true(a == b);
  }
  ks_summary_reset(s);
  assert_int_equal(ks_summary_size(s), 0);
  tu_rmtree(dir);
  ks_summary_free(back);
  ks_summary_free(f);
  ks_summary_free(s);
  ks_reporter_free(obs);
}

/* ---------------------------------------------------------------------------- */
/* triggers and the updater */

static void test_trainer__interval_triggers(void **state) {
  (void)state;
  tt_setup s;
  /* 100 examples, batch 16: epochs end at iterations 7 (112), 13 (208), 19 (304), 25 */
  tt_setup_init(&s, (tt_config){.n_train = 100});
  ks_updater *up = ks_trainer_updater(s.tr);
  ks_interval_trigger every3, epoch1, epoch2;
  ks_interval_trigger_init(&every3, KS_TRIGGER(3, KS_ITERATION));
  ks_interval_trigger_init(&epoch1, KS_TRIGGER(1, KS_EPOCH));
  ks_interval_trigger_init(&epoch2, KS_TRIGGER(2, KS_EPOCH));
  char fired3[64] = "", fired_e1[64] = "", fired_e2[64] = "";
  for (int i = 1; i <= 26; i++) {
    TU_OK(ks_updater_update(up, NULL));
    assert_int_equal(ks_updater_iteration(up), i);
    char b[8];
    snprintf(b, sizeof b, "%d ", i);
    if (ks_interval_trigger_fire(&every3, up)) strcat(fired3, b);
    if (ks_interval_trigger_fire(&epoch1, up)) strcat(fired_e1, b);
    if (ks_interval_trigger_fire(&epoch2, up)) strcat(fired_e2, b);
  }
  assert_string_equal(fired3, "3 6 9 12 15 18 21 24 ");
  assert_string_equal(fired_e1, "7 13 19 25 ");
  assert_string_equal(fired_e2, "13 25 ");
  /* the optimizer's epoch follows the iterator (new_epoch at each new epoch) */
  assert_int_equal(ks_optimizer_epoch(s.opt), 4);
  assert_int_equal(ks_updater_epoch(up), 4);
  assert_int_equal(ks_optimizer_t(s.opt), 26);
  tt_setup_free(&s);
}

static void test_trainer__stop_trigger_iterations_and_epochs(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(10, KS_ITERATION), .out = dir});
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 10);
  assert_int_equal(ks_trainer_run(s.tr), KS_ESTATE); /* cannot run twice */
  tt_setup_free(&s);
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_EPOCH), .out = dir});
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 12); /* 96 / 16 = 6 per epoch */
  assert_int_equal(ks_updater_epoch(ks_trainer_updater(s.tr)), 2);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static void test_trainer__updater_reports_main_loss(void **state) {
  (void)state;
  tt_setup s;
  tt_setup_init(&s, (tt_config){0});
  ks_reporter *rep = ks_reporter_new();
  double first = 0, last = 0;
  for (int i = 0; i < 60; i++) {
    ks_reporter_clear(rep);
    TU_OK(ks_updater_update(ks_trainer_updater(s.tr), rep));
    double l, a;
    TU_OK(ks_reporter_get(rep, "main/loss", &l));
    TU_OK(ks_reporter_get(rep, "main/accuracy", &a));
    assert_true(a >= 0 && a <= 1);
    if (i == 0) first = l;
    last = l;
  }
  assert_string_equal(ks_reporter_prefix(rep), ""); /* restored */
  assert_true(last < first);
  ks_reporter_free(rep);
  tt_setup_free(&s);
}

/* replicas = 2 (data-parallel iterations): the reported loss and accuracy
 * are the whole batch's (slice means weighted by slice size) and training
 * follows the plain updater to rounding; the reporter's prefix is restored. */
static void test_trainer__replicas_follow_the_plain_updater(void **state) {
  (void)state;
  tt_setup a, b;
  tt_setup_init(&a, (tt_config){.batch = 15});
  tt_setup_init(&b, (tt_config){.batch = 15, .replicas = 2}); /* slices of 8 and 7 */
  ks_reporter *ra = ks_reporter_new(), *rb = ks_reporter_new();
  TU_OK(ks_reporter_set_prefix(rb, "other/"));
  for (int i = 0; i < 30; i++) {
    ks_reporter_clear(ra);
    ks_reporter_clear(rb);
    TU_OK(ks_updater_update(ks_trainer_updater(a.tr), ra));
    TU_OK(ks_updater_update(ks_trainer_updater(b.tr), rb));
    assert_int_equal(ks_reporter_size(rb), 2);
    double la, lb, aa, ab;
    TU_OK(ks_reporter_get(ra, "main/loss", &la));
    TU_OK(ks_reporter_get(rb, "main/loss", &lb));
    TU_OK(ks_reporter_get(ra, "main/accuracy", &aa));
    TU_OK(ks_reporter_get(rb, "main/accuracy", &ab));
    if (fabs(la - lb) > 1e-4 * (1 + fabs(la))) fail_msg("iteration %d: loss %.8g plain, %.8g replicas", i, la, lb);
    if (i < 5 && fabs(aa - ab) > 1e-6) fail_msg("iteration %d: accuracy %.8g plain, %.8g replicas", i, aa, ab);
  }
  assert_string_equal(ks_reporter_prefix(rb), "other/");
  int64_t na, nb;
  float *pa = tt_params(a.model, &na), *pb = tt_params(b.model, &nb);
  assert_int_equal(na, nb);
  for (int64_t j = 0; j < na; j++)
    if (fabs((double)pa[j] - (double)pb[j]) > 1e-4 * (1 + fabs((double)pa[j])))
      fail_msg("parameter element %lld: plain %.8g, replicas %.8g", (long long)j, (double)pa[j], (double)pb[j]);
  free(pa);
  free(pb);
  ks_reporter_free(ra);
  ks_reporter_free(rb);
  tt_setup_free(&a);
  tt_setup_free(&b);
}

static void test_trainer__replicas_errors(void **state) {
  (void)state;
  tt_setup s;
  tt_setup_init(&s, (tt_config){0});
  ks_updater *up = (ks_updater *)&up;
  ks_updater_opts uo = {.replicas = -1};
  assert_int_equal(ks_standard_updater_new(&up, s.train_it, s.train, s.opt, &uo), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "replicas must be >= 0"));
  tt_setup_free(&s);
}

/* ---------------------------------------------------------------------------- */
/* extension order and error paths */

typedef struct rec {
  char log[2048];
  int fail_run_at;    /* iteration at which run fails (0: never) */
  int fail_init;
  int codes_seen;
} rec;

typedef struct rec_ext {
  rec *r;
  char tag;
} rec_ext;

static void rec_put(rec *r, char what, char tag) {
  size_t n = strlen(r->log);
  if (n + 3 < sizeof r->log) { r->log[n] = what; r->log[n + 1] = tag; r->log[n + 2] = ' '; r->log[n + 3] = 0; }
}
static int rec_init(ks_extension *e, ks_trainer *tr) {
  (void)tr;
  rec_ext *x = ks_extension_state(e);
  rec_put(x->r, 'I', x->tag);
  if (x->r->fail_init && x->tag == 'b') return ks_error_set(KS_EIO, "init of %c failed", x->tag);
  return KS_OK;
}
static int rec_run(ks_extension *e, ks_trainer *tr) {
  rec_ext *x = ks_extension_state(e);
  rec_put(x->r, 'R', x->tag);
  if (x->r->fail_run_at && x->tag == 'b' && ks_updater_iteration(ks_trainer_updater(tr)) == x->r->fail_run_at)
    return ks_error_set(KS_EFORMAT, "extension %c failed on purpose", x->tag);
  return KS_OK;
}
static void rec_fin(ks_extension *e, ks_trainer *tr) {
  (void)tr;
  rec_ext *x = ks_extension_state(e);
  rec_put(x->r, 'F', x->tag);
}
static void rec_err(ks_extension *e, ks_trainer *tr, int code, const char *msg) {
  (void)tr;
  rec_ext *x = ks_extension_state(e);
  rec_put(x->r, 'E', x->tag);
  if ((code == KS_EFORMAT && strstr(msg, "on purpose")) || (code == KS_EIO && strstr(msg, "init of b")))
    x->r->codes_seen++;
}
static const ks_extension_ops rec_ops = {
  .default_name = "rec", .initialize = rec_init, .run = rec_run, .finalize = rec_fin,
  .on_error = rec_err, .free_state = free};

static ks_extension *rec_new(rec *r, char tag) {
  rec_ext *x = malloc(sizeof *x);
  x->r = r;
  x->tag = tag;
  return ks_extension_new(&rec_ops, x);
}

static void add_three(ks_trainer *tr, rec *r) {
  /* registered a, b, c, d with priorities reader, writer, reader, editor:
   * run order must be b (300), d (200), a, c (100, in registration order) */
  TU_OK(ks_trainer_extend(tr, rec_new(r, 'a'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_extend(tr, rec_new(r, 'b'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_WRITER));
  TU_OK(ks_trainer_extend(tr, rec_new(r, 'c'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_READER));
  TU_OK(ks_trainer_extend(tr, rec_new(r, 'd'), NULL, KS_TRIGGER(2, KS_ITERATION), KS_PRIORITY_EDITOR));
}

static void test_trainer__priorities_order_and_names(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_ITERATION), .out = dir});
  rec r = {0};
  add_three(s.tr, &r);
  /* Chainer's names: rec, rec_1, rec_2, rec_3 */
  assert_non_null(ks_trainer_get_extension(s.tr, "rec"));
  assert_non_null(ks_trainer_get_extension(s.tr, "rec_3"));
  assert_null(ks_trainer_get_extension(s.tr, "rec_4"));
  assert_string_equal(ks_extension_name(ks_trainer_get_extension(s.tr, "rec_1")), "rec_1");
  TU_OK(ks_trainer_run(s.tr));
  assert_string_equal(r.log, "Ib Id Ia Ic Rb Ra Rc Rb Rd Ra Rc Fb Fd Fa Fc ");
  assert_int_equal(ks_trainer_extend(s.tr, rec_new(&r, 'x'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT), KS_ESTATE);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static void test_trainer__error_calls_on_error_then_finalize(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(10, KS_ITERATION), .out = dir});
  rec r = {.fail_run_at = 2};
  add_three(s.tr, &r);
  assert_int_equal(ks_trainer_run(s.tr), KS_EFORMAT);
  assert_non_null(strstr(ks_error_last(), "failed on purpose"));
  /* iteration 2: b fails, nothing after it runs; every on_error, then every finalize */
  assert_string_equal(r.log, "Ib Id Ia Ic Rb Ra Rc Rb Eb Ed Ea Ec Fb Fd Fa Fc ");
  assert_int_equal(r.codes_seen, 4);
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 2);
  tt_setup_free(&s);

  /* a failing initialize: no update at all, on_error and finalize still run */
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(10, KS_ITERATION), .out = dir});
  rec r2 = {.fail_init = 1};
  add_three(s.tr, &r2);
  assert_int_equal(ks_trainer_run(s.tr), KS_EIO);
  assert_string_equal(r2.log, "Ib Eb Ed Ea Ec Fb Fd Fa Fc ");
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 0);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static void test_trainer__unwritable_out_dir(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  char file[600], out[700];
  snprintf(file, sizeof file, "%s/plain-file", dir);
  assert_int_equal(tu_write_bytes(file, "x", 1, 0), 0);
  snprintf(out, sizeof out, "%s/result", file); /* parent is a file: mkdir fails */
  tt_setup s;
  tt_setup_init(&s, (tt_config){.out = out});
  rec r = {0};
  TU_OK(ks_trainer_extend(s.tr, rec_new(&r, 'a'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  assert_int_equal(ks_trainer_run(s.tr), KS_EIO);
  assert_non_null(strstr(ks_error_last(), "result"));
  assert_string_equal(r.log, ""); /* nothing started */
  tt_setup_free(&s);

  /* out dir fine, but the snapshot cannot be written (a directory is in the way) */
  snprintf(out, sizeof out, "%s/res2", dir);
  tt_setup_init(&s, (tt_config){.out = out});
  TU_OK(tt_extend(s.tr, ks_snapshot_new("snap", 0)));
  rec r2 = {0};
  TU_OK(ks_trainer_extend(s.tr, rec_new(&r2, 'a'), NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT));
  mkdir(out, 0777);
  char blocker[800];
  snprintf(blocker, sizeof blocker, "%s/snap", out);
  assert_int_equal(mkdir(blocker, 0777), 0);
  int rc = ks_trainer_run(s.tr);
  assert_true(rc == KS_EIO);
  assert_non_null(strstr(ks_error_last(), "snap"));
  assert_non_null(strstr(r2.log, "Ea"));
  assert_non_null(strstr(r2.log, "Fa"));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 6); /* failed at epoch 1's end */
  tt_setup_free(&s);
  tu_rmtree(dir);
}

/* ---------------------------------------------------------------------------- */
/* snapshots: exact resume */

static void add_standard_extensions(ks_trainer *tr, tt_setup *s) {
  int adam = strcmp(ks_optimizer_name(s->opt), "Adam") == 0;
  TU_OK(tt_extend(tr, ks_evaluator_new(s->test_it, s->test, s->model, NULL)));
  TU_OK(tt_extend(tr, ks_log_report_new(NULL, 0, KS_TRIGGER(2, KS_ITERATION), NULL)));
  TU_OK(tt_extend(tr, ks_observe_lr_new(NULL, NULL)));
  TU_OK(tt_extend(tr, ks_exponential_shift_new(adam ? "alpha" : "lr", 0.97, NAN, adam ? 0.0004 : 0.02, NULL)));
  TU_OK(ks_trainer_extend(tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(1, KS_EPOCH), KS_PRIORITY_DEFAULT));
}

/* straight N epochs vs k epochs + resume to N, each in fresh objects */
typedef struct pers_acc {
  double *v;
  int n, cap;
} pers_acc;

static int collect_persistent(const char *path, ks_tensor *t, int64_t *ival, void *user) {
  (void)path;
  pers_acc *a = user;
  int64_t m = t ? t->size : 1;
  if (a->n + m > a->cap) {
    a->cap = (int)(a->n + m) * 2;
    a->v = realloc(a->v, (size_t)a->cap * sizeof *a->v);
  }
  for (int64_t i = 0; i < m; i++) a->v[a->n++] = t ? (double)ks_tensor_f32(t)[i] : (double)*ival;
  return 0;
}

static void check_resume(int adam, int dropout, int k, int n, int replicas) {
  const char *d = tu_tmpdir();
  char dir[600];
  snprintf(dir, sizeof dir, "%s", d);
  char a[700], b[700];
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  tt_config cfg = {.adam = adam, .dropout = dropout, .bn = !adam, .seed = 5, .stop = KS_TRIGGER(n, KS_EPOCH), .out = a,
                   .replicas = replicas};

  tt_setup s;
  tt_setup_init(&s, cfg);
  add_standard_extensions(s.tr, &s);
  TU_OK(ks_trainer_run(s.tr));
  int64_t np;
  float *pa = tt_params(s.model, &np);
  pers_acc persa = {0}, persb = {0};
  ks_link_namedpersistents(s.model, collect_persistent, &persa);
  assert_int_equal(persa.n, cfg.bn ? 2 * 16 + 1 : 0);
  ks_extension *lra = ks_trainer_get_extension(s.tr, "LogReport");
  int na = ks_log_report_size(lra);
  double *la = calloc((size_t)na, sizeof *la);
  for (int i = 0; i < na; i++) if (ks_log_report_get(lra, i, "main/loss", &la[i]) != KS_OK) fail();
  double lr_a;
  TU_OK(ks_optimizer_get_hyperparam(s.opt, adam ? "alpha" : "lr", &lr_a));
  int64_t t_a = ks_optimizer_t(s.opt);
  tt_setup_free(&s);

  cfg.out = b;
  cfg.stop = KS_TRIGGER(k, KS_EPOCH);
  tt_setup_init(&s, cfg);
  add_standard_extensions(s.tr, &s);
  TU_OK(ks_trainer_run(s.tr));
  tt_setup_free(&s);

  cfg.stop = KS_TRIGGER(n, KS_EPOCH);
  tt_setup_init(&s, cfg);
  add_standard_extensions(s.tr, &s);
  char snap[800];
  snprintf(snap, sizeof snap, "%s/snapshot_iter_%d", b, 6 * k);
  TU_OK(ks_trainer_load_snapshot(s.tr, snap));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 6 * k);
  TU_OK(ks_trainer_run(s.tr));
  float *pb = tt_params(s.model, &np);
  assert_memory_equal(pa, pb, (size_t)np * sizeof(float));
  /* BatchNormalization's running statistics and N too */
  ks_link_namedpersistents(s.model, collect_persistent, &persb);
  assert_int_equal(persa.n, persb.n);
  if (persa.n) assert_memory_equal(persa.v, persb.v, (size_t)persa.n * sizeof(double));
  free(persa.v);
  free(persb.v);
  ks_extension *lrb = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lrb), na);
  for (int i = 0; i < na; i++) {
    double v;
    TU_OK(ks_log_report_get(lrb, i, "main/loss", &v));
    assert_true(v == la[i]);
  }
  double lr_b;
  TU_OK(ks_optimizer_get_hyperparam(s.opt, adam ? "alpha" : "lr", &lr_b));
  assert_true(lr_a == lr_b);
  assert_int_equal(ks_optimizer_t(s.opt), t_a);
  tt_setup_free(&s);
  free(pa);
  free(pb);
  free(la);
  tu_rmtree(dir);
}

/* MomentumSGD runs with a BatchNormalization (persistent values) */
static void test_trainer__resume_is_exact_momentum_sgd_bn(void **state) {
  (void)state;
  check_resume(0, 0, 2, 5, 0);
}

static void test_trainer__resume_is_exact_adam_dropout(void **state) {
  (void)state;
  check_resume(1, 1, 1, 4, 0);
  check_resume(1, 1, 3, 4, 0);
}

/* two data-parallel replicas, each with its own dropout RNG in the snapshot;
 * and with BatchNormalization, whose running statistics follow the first */
static void test_trainer__resume_is_exact_with_replicas(void **state) {
  (void)state;
  check_resume(1, 1, 2, 4, 2);
  check_resume(0, 0, 2, 5, 2);
}

static void test_trainer__snapshot_keys_like_chainer(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(1, KS_EPOCH), .out = dir});
  add_standard_extensions(s.tr, &s);
  TU_OK(ks_trainer_run(s.tr));
  char snap[700];
  snprintf(snap, sizeof snap, "%s/snapshot_iter_6", dir);
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, snap));
  const char *want[] = {"updater/iteration", "updater/iterator:main/current_position",
                        "updater/iterator:main/order", "updater/optimizer:main/t",
                        "updater/optimizer:main/predictor/l1/W/v", "updater/model:main/predictor/l1/W",
                        "updater/model:main/predictor/l2/b", "updater/ctx_rng",
                        /* Chainer 7.8.1's IntervalTrigger.serialize keys */
                        "stop_trigger/previous_iteration", "stop_trigger/previous_epoch_detail",
                        "extension_triggers/LogReport/previous_iteration",
                        "extension_triggers/LogReport/previous_epoch_detail",
                        "extensions/LogReport/_log", "extensions/ExponentialShift/_t",
                        "extensions/ExponentialShift/_last_value", "_snapshot_elapsed_time"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (ks_npz_reader_info(r, want[i], NULL) != KS_OK) fail_msg("missing key %s", want[i]);
  int64_t it;
  TU_OK(ks_npz_reader_read(r, "updater/iteration", KS_NPZ_I8, &it, 1));
  assert_int_equal(it, 6);
  ks_npz_reader_close(r);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

/* Trigger state written under three sets of names loads the same: kusari's
 * (Chainer's names plus "_previous_epoch"), kusari's before it used
 * Chainer's names ("_previous_iteration", "_previous_epoch_detail"), and
 * Chainer's alone (no integer epoch: its whole part is taken). */
static void write_trigger_npz(const char *path, const char *it_key, const char *ed_key, int with_epoch) {
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, path, 0));
  TU_OK(ks_npz_writer_add_int64(w, it_key, 9));
  if (with_epoch) TU_OK(ks_npz_writer_add_int64(w, "stop_trigger/_previous_epoch", 1));
  double ed = 1.44;
  TU_OK(ks_npz_writer_add(w, ed_key, KS_NPZ_F8, 0, NULL, &ed));
  TU_OK(ks_npz_writer_commit(w));
}

static void test_trainer__trigger_state_old_and_chainer_keys(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  char path[700];
  snprintf(path, sizeof path, "%s/trig.npz", dir);
  struct { const char *it, *ed; int with_epoch; } cases[] = {
    {"stop_trigger/previous_iteration", "stop_trigger/previous_epoch_detail", 1},
    {"stop_trigger/_previous_iteration", "stop_trigger/_previous_epoch_detail", 1},
    {"stop_trigger/previous_iteration", "stop_trigger/previous_epoch_detail", 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    write_trigger_npz(path, cases[c].it, cases[c].ed, cases[c].with_epoch);
    ks_npz_reader *r;
    TU_OK(ks_npz_reader_open(&r, path));
    ks_interval_trigger t;
    ks_interval_trigger_init(&t, KS_TRIGGER(0.5, KS_EPOCH));
    TU_OK(ks_interval_trigger_load(&t, r, "stop_trigger/"));
    ks_npz_reader_close(r);
    assert_int_equal(t.previous_iteration, 9);
    assert_int_equal(t.previous_epoch, 1);
    assert_true(t.previous_epoch_detail == 1.44);
  }
  /* saving writes Chainer's names */
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, path, 0));
  ks_interval_trigger t;
  ks_interval_trigger_init(&t, KS_TRIGGER(0.5, KS_EPOCH));
  t.previous_iteration = 12;
  t.previous_epoch = 2;
  t.previous_epoch_detail = 2.25;
  TU_OK(ks_interval_trigger_save(&t, w, "stop_trigger/"));
  TU_OK(ks_npz_writer_commit(w));
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, path));
  assert_int_equal(ks_npz_reader_num_keys(r), 3);
  int64_t it;
  double ed;
  TU_OK(ks_npz_reader_read(r, "stop_trigger/previous_iteration", KS_NPZ_I8, &it, 1));
  TU_OK(ks_npz_reader_read(r, "stop_trigger/previous_epoch_detail", KS_NPZ_F8, &ed, 1));
  assert_int_equal(it, 12);
  assert_true(ed == 2.25);
  assert_int_equal(ks_npz_reader_info(r, "stop_trigger/_previous_iteration", NULL), KS_ENOTFOUND);
  ks_npz_reader_close(r);
  /* neither name: a clear error */
  TU_OK(ks_npz_writer_open(&w, path, 0));
  TU_OK(ks_npz_writer_add_int64(w, "other", 1));
  TU_OK(ks_npz_writer_commit(w));
  TU_OK(ks_npz_reader_open(&r, path));
  assert_int_equal(ks_interval_trigger_load(&t, r, "stop_trigger/"), KS_ENOTFOUND);
  tu_assert_error(KS_ENOTFOUND, "stop_trigger/previous_iteration");
  ks_npz_reader_close(r);
  tu_rmtree(dir);
}

static void test_trainer__bad_snapshots_change_nothing(void **state) {
  (void)state;
  const char *d = tu_tmpdir();
  char dir[600];
  snprintf(dir, sizeof dir, "%s", d);
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(1, KS_EPOCH), .out = dir});
  add_standard_extensions(s.tr, &s);
  TU_OK(ks_trainer_run(s.tr));
  tt_setup_free(&s);
  char good[1024], garbage[700], trunc[700], other[1024];
  snprintf(good, sizeof good, "%s/snapshot_iter_6", dir);
  snprintf(garbage, sizeof garbage, "%s/garbage", dir);
  snprintf(trunc, sizeof trunc, "%s/truncated", dir);
  snprintf(other, sizeof other, "%s/other", dir);
  static const char junk[] = "PK\003\004 this is not a snapshot";
  assert_int_equal(tu_write_bytes(garbage, junk, sizeof junk - 1, 0), 0);
  FILE *f = fopen(good, "rb");
  assert_non_null(f);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  assert_int_equal(tu_write_bytes(trunc, buf, n / 2, 0), 0);
  /* damage the middle half: CRC or inflate errors in some entries */
  for (size_t i = n / 4; i < 3 * n / 4; i += 7) buf[i] ^= 0x5a;
  char flipped[700];
  snprintf(flipped, sizeof flipped, "%s/flipped", dir);
  assert_int_equal(tu_write_bytes(flipped, buf, n, 0), 0);

  /* a snapshot of another model (32 units instead of 16) */
  char odir[800];
  snprintf(odir, sizeof odir, "%s/o", dir);
  tt_setup_init(&s, (tt_config){.units = 32, .stop = KS_TRIGGER(1, KS_EPOCH), .out = odir});
  add_standard_extensions(s.tr, &s);
  TU_OK(ks_trainer_run(s.tr));
  tt_setup_free(&s);
  snprintf(other, sizeof other, "%s/snapshot_iter_6", odir);

  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(3, KS_EPOCH), .out = dir});
  add_standard_extensions(s.tr, &s);
  /* initialize the lazy l1 so there is something to compare */
  TU_OK(ks_trainer_load_snapshot(s.tr, good));
  int64_t np;
  float *before = tt_params(s.model, &np);
  int64_t it_before = ks_updater_iteration(ks_trainer_updater(s.tr));
  double lr_before;
  TU_OK(ks_optimizer_get_hyperparam(s.opt, "lr", &lr_before));
  struct { const char *path; int code; } cases[] = {
    {garbage, KS_EFORMAT}, {trunc, KS_EFORMAT}, {flipped, KS_EFORMAT}, {other, KS_ESHAPE}};
  char missing[700];
  snprintf(missing, sizeof missing, "%s/no-such-snapshot", dir);
  for (size_t i = 0; i < 4; i++) {
    int rc = ks_trainer_load_snapshot(s.tr, cases[i].path);
    if (rc == KS_OK) fail_msg("loading %s succeeded", cases[i].path);
    if (cases[i].code != KS_EFORMAT || rc != KS_EIO) assert_int_equal(rc, cases[i].code);
    assert_non_null(strstr(ks_error_last(), cases[i].path));
    float *after = tt_params(s.model, &np);
    assert_memory_equal(before, after, (size_t)np * sizeof(float));
    free(after);
    assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), it_before);
  }
  assert_int_equal(ks_trainer_load_snapshot(s.tr, missing), KS_ENOTFOUND);
  assert_non_null(strstr(ks_error_last(), "no-such-snapshot"));
  double lr_after;
  TU_OK(ks_optimizer_get_hyperparam(s.opt, "lr", &lr_after));
  assert_true(lr_before == lr_after);
  /* the good snapshot still loads and training goes on */
  TU_OK(ks_trainer_load_snapshot(s.tr, good));
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(ks_updater_iteration(ks_trainer_updater(s.tr)), 18);
  free(before);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_trainer__reporter_prefix_and_overwrite),
    cmocka_unit_test(test_trainer__summary_means_like_chainer),
    cmocka_unit_test(test_trainer__interval_triggers),
    cmocka_unit_test(test_trainer__stop_trigger_iterations_and_epochs),
    cmocka_unit_test(test_trainer__updater_reports_main_loss),
    cmocka_unit_test(test_trainer__replicas_follow_the_plain_updater),
    cmocka_unit_test(test_trainer__replicas_errors),
    cmocka_unit_test(test_trainer__priorities_order_and_names),
    cmocka_unit_test(test_trainer__error_calls_on_error_then_finalize),
    cmocka_unit_test(test_trainer__unwritable_out_dir),
    cmocka_unit_test(test_trainer__resume_is_exact_momentum_sgd_bn),
    cmocka_unit_test(test_trainer__resume_is_exact_adam_dropout),
    cmocka_unit_test(test_trainer__resume_is_exact_with_replicas),
    cmocka_unit_test(test_trainer__snapshot_keys_like_chainer),
    cmocka_unit_test(test_trainer__trigger_state_old_and_chainer_keys),
    cmocka_unit_test(test_trainer__bad_snapshots_change_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
