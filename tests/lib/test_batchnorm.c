/*
 * tests/lib/test_batchnorm.c — batch_normalization / fixed_batch_normalization
 * and the BatchNormalization link with its persistent values:
 *   - forward against a double reference (mean, biased variance, eps 2e-5),
 *     running mean/var updates against hand-computed values (decay and
 *     Chainer's m / (m - 1) adjustment), 4-d and 2-d inputs;
 *   - gradient checks of x, gamma, beta in train and inference mode;
 *   - the link: train mode updates avg_mean / avg_var, test mode uses them,
 *     fine-tuning mode averages the batch statistics and counts N,
 *     params are only gamma / beta (packing and optimizers leave the
 *     persistents alone), copyparams copies them;
 *   - npz: keys exactly Chainer's ("bn/gamma", "bn/beta", "bn/avg_mean",
 *     "bn/avg_var", "bn/N" with N a 0-d int64), round trip in C and with
 *     numpy (KS_TEST_PYTHON), missing persistent keys fail strictly;
 *   - error cases.
 */
#include "testutil.h"
#include "kusari/gradient_check.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[512];

static int setup_dir(void **state) {
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kusari-bn-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *tpath(const char *name) {
  static char buf[4][700];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

/* ---- double references ------------------------------------------------------------------- */

/* per-channel mean and biased variance of x (n, c, inner) */
static void ref_stats(const ks_tensor *x, double *mean, double *var) {
  const int64_t n = x->shape[0], c = x->shape[1], inner = x->size / (n * c);
  const float *d = ks_tensor_f32(x);
  for (int64_t ci = 0; ci < c; ci++) {
    double s = 0, q = 0;
    for (int64_t ni = 0; ni < n; ni++)
      for (int64_t k = 0; k < inner; k++) s += d[(ni * c + ci) * inner + k];
    mean[ci] = s / (double)(n * inner);
    for (int64_t ni = 0; ni < n; ni++)
      for (int64_t k = 0; k < inner; k++) {
        double e = d[(ni * c + ci) * inner + k] - mean[ci];
        q += e * e;
      }
    var[ci] = q / (double)(n * inner);
  }
}

static void ref_bn(const ks_tensor *x, const float *gamma, const float *beta, const double *mean,
                   const double *var, double eps, double *y) {
  const int64_t n = x->shape[0], c = x->shape[1], inner = x->size / (n * c);
  for (int64_t i = 0; i < x->size; i++) {
    int64_t ci = (i / inner) % c;
    y[i] = gamma[ci] * (ks_tensor_f32(x)[i] - mean[ci]) / sqrt(var[ci] + eps) + beta[ci];
  }
}

static void check_train_forward(const int64_t *xs, int ndim) {
  ks_rng rng;
  ks_rng_seed(&rng, 17);
  ks_tensor *xt = tu_uniform(&rng, ndim, xs, -2, 3);
  const int64_t c = xs[1], m = xt->size / c;
  ks_tensor *gt = tu_uniform(&rng, 1, &c, 0.5, 1.5), *bt = tu_uniform(&rng, 1, &c, -1, 1);
  ks_tensor *rm = tu_uniform(&rng, 1, &c, -1, 1), *rv = tu_uniform(&rng, 1, &c, 0.5, 2);
  float rm0[8], rv0[8];
  memcpy(rm0, rm->data, sizeof(float) * (size_t)c);
  memcpy(rv0, rv->data, sizeof(float) * (size_t)c);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *y = ks_batch_normalization(ctx, ks_var_new(ctx, xt, 1), ks_var_new(ctx, gt, 1),
                                     ks_var_new(ctx, bt, 1), 2e-5, rm, rv, 0.9);
  TU_NONNULL(y);
  double mean[8], var[8], *want = calloc((size_t)xt->size, sizeof *want);
  ref_stats(xt, mean, var);
  ref_bn(xt, ks_tensor_f32(gt), ks_tensor_f32(bt), mean, var, 2e-5, want);
  tu_assert_close(ks_tensor_f32(y->data), want, xt->size, 1e-5, 1e-5, "batch_normalization forward");
  /* running statistics: decay 0.9, unbiased variance m / (m - 1) */
  double wm[8], wv[8];
  for (int64_t i = 0; i < c; i++) {
    wm[i] = 0.9 * rm0[i] + 0.1 * mean[i];
    wv[i] = 0.9 * rv0[i] + 0.1 * var[i] * (double)m / (double)(m - 1);
  }
  tu_assert_close(ks_tensor_f32(rm), wm, c, 1e-6, 1e-5, "running_mean");
  tu_assert_close(ks_tensor_f32(rv), wv, c, 1e-6, 1e-5, "running_var");
  free(want);
  ks_ctx_free(ctx);
  ks_tensor_free(xt); ks_tensor_free(gt); ks_tensor_free(bt); ks_tensor_free(rm); ks_tensor_free(rv);
}

static void test_bn__train_forward_and_running_stats(void **state) {
  check_train_forward((int64_t[]){4, 3, 2, 5}, 4);
  check_train_forward((int64_t[]){5, 4}, 2);
  check_train_forward((int64_t[]){2, 2, 7}, 3);
}

/* hand-computed: x (2, 1, 1, 2) = [1, 2, 3, 6], mean 3, var 3.5, m = 4 */
static void test_bn__running_stats_by_hand(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  const float xv[4] = {1, 2, 3, 6}, one = 1, zero = 0;
  ks_var *x = ks_var_from_data(ctx, KS_F32, 4, (int64_t[]){2, 1, 1, 2}, xv, 0);
  ks_var *g = ks_var_from_data(ctx, KS_F32, 1, (int64_t[]){1}, &one, 0);
  ks_var *b = ks_var_from_data(ctx, KS_F32, 1, (int64_t[]){1}, &zero, 0);
  ks_tensor *rm = ks_tensor_new(KS_F32, 1, (int64_t[]){1}), *rv = ks_tensor_new(KS_F32, 1, (int64_t[]){1});
  ks_tensor_f32(rv)[0] = 1;
  ks_var *y = ks_batch_normalization(ctx, x, g, b, 2e-5, rm, rv, 0.9);
  TU_NONNULL(y);
  /* 0.9 * 0 + 0.1 * 3 = 0.3; 0.9 * 1 + 0.1 * 3.5 * 4/3 = 1.0666667 */
  assert_true(fabs(ks_tensor_f32(rm)[0] - 0.3) < 1e-6);
  assert_true(fabs(ks_tensor_f32(rv)[0] - (0.9 + 0.1 * 3.5 * 4.0 / 3.0)) < 1e-6);
  double want[4];
  for (int i = 0; i < 4; i++) want[i] = (xv[i] - 3.0) / sqrt(3.5 + 2e-5);
  tu_assert_close(ks_tensor_f32(y->data), want, 4, 1e-6, 1e-6, "hand forward");
  /* m = 1 per channel: adjust = 1 / max(0, 1) = 1, var = 0 */
  ks_var *x1 = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){1, 1}, xv, 0);
  TU_NONNULL(ks_batch_normalization(ctx, x1, g, b, 2e-5, rm, rv, 0.5));
  assert_true(fabs(ks_tensor_f32(rm)[0] - (0.5 * 0.3 + 0.5 * 1.0)) < 1e-6);
  assert_true(fabs(ks_tensor_f32(rv)[0] - 0.5 * (0.9 + 0.1 * 3.5 * 4.0 / 3.0)) < 1e-6);
  ks_tensor_free(rm);
  ks_tensor_free(rv);
  ks_ctx_free(ctx);
}

static void test_bn__fixed_forward(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 3);
  const int64_t xs[4] = {3, 4, 2, 3}, c = 4;
  ks_tensor *xt = tu_uniform(&rng, 4, xs, -1, 1);
  ks_tensor *gt = tu_uniform(&rng, 1, &c, 0.5, 1.5), *bt = tu_uniform(&rng, 1, &c, -1, 1);
  ks_tensor *mt = tu_uniform(&rng, 1, &c, -1, 1), *vt = tu_uniform(&rng, 1, &c, 0.5, 2);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *y = ks_fixed_batch_normalization(ctx, ks_var_new(ctx, xt, 1), ks_var_new(ctx, gt, 1),
                                           ks_var_new(ctx, bt, 1), mt, vt, 1e-3);
  TU_NONNULL(y);
  double mean[4], var[4], want[72];
  for (int i = 0; i < 4; i++) { mean[i] = ks_tensor_f32(mt)[i]; var[i] = ks_tensor_f32(vt)[i]; }
  ref_bn(xt, ks_tensor_f32(gt), ks_tensor_f32(bt), mean, var, 1e-3, want);
  tu_assert_close(ks_tensor_f32(y->data), want, xt->size, 1e-5, 1e-5, "fixed_batch_normalization");
  ks_ctx_free(ctx);
  ks_tensor_free(xt); ks_tensor_free(gt); ks_tensor_free(bt); ks_tensor_free(mt); ks_tensor_free(vt);
}

/* ---- gradient checks ----------------------------------------------------------------------- */

typedef struct { const ks_tensor *mean, *var; } fixed_args;

static ks_var *ap_bn(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_batch_normalization(ctx, in[0], in[1], in[2], 2e-5, NULL, NULL, 0.9);
}
static ks_var *ap_fixed(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  const fixed_args *a = user;
  return ks_fixed_batch_normalization(ctx, in[0], in[1], in[2], a->mean, a->var, 2e-5);
}

static void test_bn__gradients(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 21);
  const int64_t shapes[3][4] = {{3, 2, 2, 3}, {6, 3, 0, 0}, {2, 3, 4, 0}};
  const int ndims[3] = {4, 2, 3};
  for (int s = 0; s < 3; s++) {
    const int64_t c = shapes[s][1];
    ks_tensor *x[3] = {tu_uniform(&rng, ndims[s], shapes[s], -1, 1), tu_uniform(&rng, 1, &c, 0.5, 1.5),
                       tu_uniform(&rng, 1, &c, -1, 1)};
    ks_check_opts o = KS_CHECK_DEFAULTS;
    o.seed = 1;
    if (ks_check_backward(ap_bn, NULL, 3, (const ks_tensor *const *)x, NULL, &o) != KS_OK)
      fail_msg("batch_normalization shape %d: %s", s, ks_error_last());
    ks_tensor *mt = tu_uniform(&rng, 1, &c, -0.5, 0.5), *vt = tu_uniform(&rng, 1, &c, 0.5, 2);
    fixed_args a = {mt, vt};
    o.test_mode = 1;
    if (ks_check_backward(ap_fixed, &a, 3, (const ks_tensor *const *)x, NULL, &o) != KS_OK)
      fail_msg("fixed_batch_normalization shape %d: %s", s, ks_error_last());
    for (int i = 0; i < 3; i++) ks_tensor_free(x[i]);
    ks_tensor_free(mt);
    ks_tensor_free(vt);
  }
}

/* ---- the link ---------------------------------------------------------------------------- */

static ks_link *bn_model(int64_t c) {
  ks_link *m = ks_chain_new();
  TU_OK(ks_link_add_child(m, "bn", ks_batch_normalization_link_new(c, NULL)));
  return m;
}

static void test_bn__link_train_and_test_mode(void **state) {
  ks_link *m = bn_model(3);
  ks_link *bn = ks_link_child(m, "bn");
  assert_string_equal(ks_link_type_name(bn), "BatchNormalization");
  assert_int_equal(ks_link_num_params(m), 2);
  const char *p0, *p1;
  ks_link_param_at(m, 0, &p0);
  ks_link_param_at(m, 1, &p1);
  assert_string_equal(p0, "bn/beta");
  assert_string_equal(p1, "bn/gamma");
  assert_int_equal(ks_link_num_persistents(m), 3);
  ks_tensor *am = ks_link_persistent(m, "bn/avg_mean"), *av = ks_link_persistent(m, "bn/avg_var");
  int64_t *N = ks_link_persistent_int(m, "bn/N");
  TU_NONNULL(am);
  TU_NONNULL(av);
  TU_NONNULL(N);
  assert_null(ks_link_persistent(m, "bn/N"));          /* an int, not a tensor */
  assert_null(ks_link_persistent_int(m, "bn/avg_mean"));
  for (int i = 0; i < 3; i++) {
    assert_true(ks_tensor_f32(am)[i] == 0.0f);
    assert_true(ks_tensor_f32(av)[i] == 1.0f);
    assert_true(ks_tensor_f32(ks_link_param(m, "bn/gamma")->data)[i] == 1.0f);
    assert_true(ks_tensor_f32(ks_link_param(m, "bn/beta")->data)[i] == 0.0f);
  }
  /* optimizer setup packs gamma/beta only; the persistents stay put */
  ks_optimizer *opt = ks_optimizer_sgd_new(0.1);
  TU_OK(ks_optimizer_setup(opt, m));
  assert_true(ks_link_is_packed(m));
  int64_t psize = 0;
  ks_link_pack_data(m, &psize);
  assert_int_equal(psize, 32); /* two (3,) params, each padded to 16 floats */

  ks_rng rng;
  ks_rng_seed(&rng, 8);
  ks_tensor *x1 = tu_uniform(&rng, 4, (int64_t[]){4, 3, 2, 2}, -1, 2);
  ks_tensor *x2 = tu_uniform(&rng, 4, (int64_t[]){4, 3, 2, 2}, 0, 3);
  ks_ctx *ctx = ks_ctx_new();
  double m1[3], v1[3], m2[3], v2[3], wm[3], wv[3];
  ref_stats(x1, m1, v1);
  ref_stats(x2, m2, v2);
  const double adj = 16.0 / 15.0;
  for (int i = 0; i < 3; i++) {
    wm[i] = 0.9 * (0.9 * 0.0 + 0.1 * m1[i]) + 0.1 * m2[i];
    wv[i] = 0.9 * (0.9 * 1.0 + 0.1 * adj * v1[i]) + 0.1 * adj * v2[i];
  }
  /* train mode: two batches; the optimizer step changes gamma/beta, not the stats */
  for (int it = 0; it < 2; it++) {
    ks_var *y = ks_link_forward(ctx, bn, ks_var_new(ctx, it ? x2 : x1, 0));
    TU_NONNULL(y);
    ks_link_cleargrads(m);
    ks_var *loss = ks_sum(ctx, ks_mul(ctx, y, y), KS_AXIS_ALL);
    TU_OK(ks_backward(ctx, loss));
    TU_OK(ks_optimizer_update(opt));
    ks_ctx_reset(ctx);
  }
  tu_assert_close(ks_tensor_f32(am), wm, 3, 1e-6, 1e-5, "avg_mean after two batches");
  tu_assert_close(ks_tensor_f32(av), wv, 3, 1e-6, 1e-5, "avg_var after two batches");
  assert_int_equal(*N, 0);
  /* test mode: normalizes with avg_mean / avg_var and leaves them alone */
  ks_ctx_set_train(ctx, 0);
  ks_var *y = ks_link_forward(ctx, bn, ks_var_new(ctx, x1, 0));
  TU_NONNULL(y);
  double mean[3], var[3], want[48];
  for (int i = 0; i < 3; i++) { mean[i] = ks_tensor_f32(am)[i]; var[i] = ks_tensor_f32(av)[i]; }
  ref_bn(x1, ks_tensor_f32(ks_link_param(m, "bn/gamma")->data),
         ks_tensor_f32(ks_link_param(m, "bn/beta")->data), mean, var, 2e-5, want);
  tu_assert_close(ks_tensor_f32(y->data), want, 48, 1e-5, 1e-5, "test-mode forward");
  tu_assert_close(ks_tensor_f32(am), wm, 3, 1e-6, 1e-5, "avg_mean unchanged in test mode");

  /* copyparams copies persistent values too */
  ks_link *m2c = bn_model(3);
  TU_OK(ks_link_copyparams(m2c, m));
  assert_memory_equal(ks_link_persistent(m2c, "bn/avg_var")->data, av->data, 3 * sizeof(float));
  ks_link_free(m2c);
  ks_optimizer_free(opt);
  ks_ctx_free(ctx);
  ks_tensor_free(x1);
  ks_tensor_free(x2);
  ks_link_free(m);
}

/* fine-tuning: avg_mean becomes the plain mean of the batch means seen,
 * avg_var that of the adjusted variances; N counts them */
static void test_bn__finetune(void **state) {
  ks_link *bn = ks_batch_normalization_link_new(2, NULL);
  TU_OK(ks_batch_normalization_link_set_finetune(bn, 1));
  ks_rng rng;
  ks_rng_seed(&rng, 31);
  ks_ctx *ctx = ks_ctx_new();
  double sm[2] = {0, 0}, sv[2] = {0, 0};
  for (int it = 0; it < 3; it++) {
    ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){5, 2}, -1 + it, 2 + it);
    double mean[2], var[2];
    ref_stats(xt, mean, var);
    for (int c = 0; c < 2; c++) { sm[c] += mean[c]; sv[c] += var[c] * 5.0 / 4.0; }
    TU_NONNULL(ks_link_forward(ctx, bn, ks_var_new(ctx, xt, 0)));
    ks_tensor_free(xt);
    ks_ctx_reset(ctx);
  }
  assert_int_equal(*ks_link_persistent_int(bn, "N"), 3);
  double wm[2] = {sm[0] / 3, sm[1] / 3}, wv[2] = {sv[0] / 3, sv[1] / 3};
  tu_assert_close(ks_tensor_f32(ks_link_persistent(bn, "avg_mean")), wm, 2, 1e-6, 1e-5, "finetune avg_mean");
  tu_assert_close(ks_tensor_f32(ks_link_persistent(bn, "avg_var")), wv, 2, 1e-6, 1e-5, "finetune avg_var");
  TU_OK(ks_batch_normalization_link_start_finetuning(bn));
  assert_int_equal(*ks_link_persistent_int(bn, "N"), 0);
  ks_link *chain = ks_chain_new();
  assert_int_equal(ks_batch_normalization_link_set_finetune(chain, 1), KS_EINVAL);
  ks_link_free(chain);
  ks_ctx_free(ctx);
  ks_link_free(bn);
}

/* ---- npz ------------------------------------------------------------------------------------ */

typedef struct { char keys[8][32]; int n; } keyset;
static int collect(const char *path, ks_tensor *t, int64_t *ival, void *user) {
  keyset *k = user;
  snprintf(k->keys[k->n++], 32, "%s%s", path, t ? "" : "#int");
  return 0;
}

static void fill_bn(ks_link *m, float base) {
  for (int i = 0; i < 3; i++) {
    ks_tensor_f32(ks_link_param(m, "bn/gamma")->data)[i] = base + (float)i;
    ks_tensor_f32(ks_link_param(m, "bn/beta")->data)[i] = base - (float)i;
    ks_tensor_f32(ks_link_persistent(m, "bn/avg_mean"))[i] = base * 0.5f + (float)i;
    ks_tensor_f32(ks_link_persistent(m, "bn/avg_var"))[i] = base * 2.0f + (float)i;
  }
  *ks_link_persistent_int(m, "bn/N") = 5;
}

static void test_bn__npz_round_trip(void **state) {
  ks_link *m = bn_model(3);
  keyset ks = {0};
  TU_OK(ks_link_namedpersistents(m, collect, &ks));
  assert_int_equal(ks.n, 3);
  assert_string_equal(ks.keys[0], "bn/N#int");
  assert_string_equal(ks.keys[1], "bn/avg_mean");
  assert_string_equal(ks.keys[2], "bn/avg_var");
  fill_bn(m, 1.5f);
  TU_OK(ks_save_npz(tpath("bn.npz"), m));
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("bn.npz")));
  assert_int_equal(ks_npz_reader_num_keys(r), 5);
  ks_npz_info in;
  TU_OK(ks_npz_reader_info(r, "bn/N", &in));
  assert_int_equal(in.dtype, KS_NPZ_I8);
  assert_int_equal(in.ndim, 0);
  TU_OK(ks_npz_reader_info(r, "bn/avg_var", &in));
  assert_int_equal(in.dtype, KS_NPZ_F4);
  ks_npz_reader_close(r);

  ks_link *m2 = bn_model(3);
  TU_OK(ks_load_npz(tpath("bn.npz"), m2));
  assert_memory_equal(ks_link_persistent(m2, "bn/avg_mean")->data, ks_link_persistent(m, "bn/avg_mean")->data, 12);
  assert_memory_equal(ks_link_persistent(m2, "bn/avg_var")->data, ks_link_persistent(m, "bn/avg_var")->data, 12);
  assert_memory_equal(ks_link_param(m2, "bn/gamma")->data->data, ks_link_param(m, "bn/gamma")->data->data, 12);
  assert_int_equal(*ks_link_persistent_int(m2, "bn/N"), 5);

  /* a file without the persistents (an MLP-era save): strict load fails,
   * naming the key, and changes nothing; non-strict load takes what is there */
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, tpath("params_only.npz"), 0));
  TU_OK(ks_npz_writer_add_tensor(w, "bn/gamma", ks_link_param(m, "bn/gamma")->data));
  TU_OK(ks_npz_writer_add_tensor(w, "bn/beta", ks_link_param(m, "bn/beta")->data));
  TU_OK(ks_npz_writer_commit(w));
  ks_link *m3 = bn_model(3);
  assert_int_equal(ks_load_npz(tpath("params_only.npz"), m3), KS_ENOTFOUND);
  tu_assert_error(KS_ENOTFOUND, "bn/N");
  assert_true(ks_tensor_f32(ks_link_param(m3, "bn/gamma")->data)[0] == 1.0f);
  TU_OK(ks_npz_reader_open(&r, tpath("params_only.npz")));
  TU_OK(ks_npz_read_link(r, NULL, m3, 0));
  ks_npz_reader_close(r);
  assert_true(ks_tensor_f32(ks_link_param(m3, "bn/gamma")->data)[0] == 1.5f);
  assert_true(ks_tensor_f32(ks_link_persistent(m3, "bn/avg_var"))[0] == 1.0f);
  /* a persistent of the wrong shape: KS_ESHAPE naming the key */
  ks_link *m4 = bn_model(4);
  assert_int_equal(ks_load_npz(tpath("bn.npz"), m4), KS_ESHAPE);
  ks_link_free(m4);
  ks_link_free(m3);
  ks_link_free(m2);
  ks_link_free(m);
}

static int run_python(const char *script) {
  FILE *f = fopen(tpath("check.py"), "w");
  assert_non_null(f);
  fputs(script, f);
  fclose(f);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' check.py", g_dir, KS_TEST_PYTHON);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_bn__npz_numpy(void **state) {
  if (!KS_TEST_PYTHON[0])
    fail_msg("python3 with numpy was not found at configure time: install python3-numpy");
  ks_link *m = bn_model(3);
  fill_bn(m, 1.5f);
  TU_OK(ks_save_npz(tpath("kusari_bn.npz"), m));
  /* numpy reads exactly Chainer's keys and dtypes, then writes a file back */
  const char *script =
    "import numpy as np, sys\n"
    "d = np.load('kusari_bn.npz')\n"
    "keys = sorted(d.files)\n"
    "want = sorted(['bn/gamma', 'bn/beta', 'bn/avg_mean', 'bn/avg_var', 'bn/N'])\n"
    "assert keys == want, keys\n"
    "assert d['bn/N'].dtype == np.int64 and d['bn/N'].shape == () and int(d['bn/N']) == 5\n"
    "for k in ['bn/gamma', 'bn/beta', 'bn/avg_mean', 'bn/avg_var']:\n"
    "    assert d[k].dtype == np.float32 and d[k].shape == (3,), (k, d[k].dtype, d[k].shape)\n"
    "assert np.array_equal(d['bn/avg_mean'], np.array([0.75, 1.75, 2.75], np.float32))\n"
    "assert np.array_equal(d['bn/avg_var'], np.array([3, 4, 5], np.float32))\n"
    "assert np.array_equal(d['bn/gamma'], np.array([1.5, 2.5, 3.5], np.float32))\n"
    "np.savez('numpy_bn.npz', **{'bn/gamma': np.float32([9, 8, 7]), 'bn/beta': np.float32([1, 2, 3]),\n"
    "         'bn/avg_mean': np.float32([.5, .25, .125]), 'bn/avg_var': np.float64([2, 4, 8]),\n"
    "         'bn/N': np.asarray(11)})\n";
  assert_int_equal(run_python(script), 0);
  ks_link *m2 = bn_model(3);
  TU_OK(ks_load_npz(tpath("numpy_bn.npz"), m2));
  const float am[3] = {.5f, .25f, .125f}, av[3] = {2, 4, 8}, g[3] = {9, 8, 7};
  assert_memory_equal(ks_link_persistent(m2, "bn/avg_mean")->data, am, sizeof am);
  assert_memory_equal(ks_link_persistent(m2, "bn/avg_var")->data, av, sizeof av);
  assert_memory_equal(ks_link_param(m2, "bn/gamma")->data->data, g, sizeof g);
  assert_int_equal(*ks_link_persistent_int(m2, "bn/N"), 11);
  ks_link_free(m2);
  ks_link_free(m);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_bn__errors(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 4, (int64_t[]){2, 3, 2, 2}), 1);
  ks_var *g3 = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 1, (int64_t[]){3}), 1);
  ks_var *g4 = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 1, (int64_t[]){4}), 1);
  assert_null(ks_batch_normalization(ctx, x, g4, g3, 2e-5, NULL, NULL, 0.9));
  tu_assert_error(KS_ESHAPE, "ks_batch_normalization", "(2, 3, 2, 2)", "gamma", "(4,)");
  assert_null(ks_batch_normalization(ctx, x, g3, g4, 2e-5, NULL, NULL, 0.9));
  tu_assert_error(KS_ESHAPE, "ks_batch_normalization", "beta", "(4,)");
  ks_tensor *r4 = ks_ctx_tensor_zeros(ctx, KS_F32, 1, (int64_t[]){4});
  assert_null(ks_batch_normalization(ctx, x, g3, g3, 2e-5, r4, NULL, 0.9));
  tu_assert_error(KS_ESHAPE, "running_mean", "(4,)");
  assert_null(ks_batch_normalization(ctx, x, g3, g3, 0.0, NULL, NULL, 0.9));
  tu_assert_error(KS_EINVAL, "ks_batch_normalization", "eps");
  assert_null(ks_fixed_batch_normalization(ctx, x, g3, g3, r4, g3->data, 2e-5));
  tu_assert_error(KS_ESHAPE, "ks_fixed_batch_normalization", "mean", "(4,)");
  assert_null(ks_fixed_batch_normalization(ctx, x, g3, g3, NULL, g3->data, 2e-5));
  tu_assert_error(KS_EINVAL, "ks_fixed_batch_normalization");
  ks_var *x1 = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 1, (int64_t[]){3}), 1);
  assert_null(ks_batch_normalization(ctx, x1, g3, g3, 2e-5, NULL, NULL, 0.9));
  tu_assert_error(KS_ESHAPE, "ks_batch_normalization", "(N, C, ...)");
  /* the link: a channel mismatch names the function and both shapes */
  ks_link *bn = ks_batch_normalization_link_new(4, NULL);
  assert_null(ks_link_forward(ctx, bn, x));
  tu_assert_error(KS_ESHAPE, "ks_batch_normalization", "(2, 3, 2, 2)", "(4,)");
  ks_link_free(bn);
  assert_null(ks_batch_normalization_link_new(0, NULL));
  tu_assert_error(KS_EINVAL, "BatchNormalization");
  /* persistent names share the link's name space */
  ks_link *l = ks_chain_new();
  TU_NONNULL(ks_link_add_persistent(l, "stat", 1, (int64_t[]){2}, 0.0));
  assert_null(ks_link_add_persistent(l, "stat", 1, (int64_t[]){2}, 0.0));
  tu_assert_error(KS_EINVAL, "stat");
  assert_null(ks_link_add_param(l, "stat", 1, (int64_t[]){2}, NULL, NULL));
  tu_assert_error(KS_EINVAL, "stat");
  assert_int_equal(ks_link_add_child(l, "stat", ks_chain_new()), KS_EINVAL);
  assert_null(ks_link_add_persistent_int(l, "a/b", 0));
  tu_assert_error(KS_EINVAL, "a/b");
  ks_link_free(l);
  /* NULL inputs propagate quietly */
  ks_error_set(KS_EIO, "marker");
  assert_null(ks_batch_normalization(ctx, NULL, g3, g3, 2e-5, NULL, NULL, 0.9));
  assert_null(ks_fixed_batch_normalization(ctx, x, NULL, g3, g3->data, g3->data, 2e-5));
  tu_assert_error(KS_EIO, "marker");
  ks_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bn__train_forward_and_running_stats),
    cmocka_unit_test(test_bn__running_stats_by_hand),
    cmocka_unit_test(test_bn__fixed_forward),
    cmocka_unit_test(test_bn__gradients),
    cmocka_unit_test(test_bn__link_train_and_test_mode),
    cmocka_unit_test(test_bn__finetune),
    cmocka_unit_test(test_bn__npz_round_trip),
    cmocka_unit_test(test_bn__npz_numpy),
    cmocka_unit_test(test_bn__errors),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
