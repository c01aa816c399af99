/*
 * tests/lib/test_conv_links.c — Convolution2D / Deconvolution2D links
 * (shapes, lazy in_channels with the same values as an eager link, groups,
 * LeCunNormal scale, forward equal to the function) and a CNN built as a
 * Sequential (conv -> relu -> max_pool -> conv -> relu -> avg_pool ->
 * dropout -> linear) that trains: paths "0/W" ... as in Chainer, gradients
 * reach every parameter, and SGD lowers the loss on a fixed batch; a
 * conv -> BatchNormalization -> linear Sequential saved as npz has exactly
 * the keys Chainer writes for the same model (checked with numpy).
 */
#include "testutil.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static ks_conv_link_opts seeded(uint64_t seed) {
  ks_conv_link_opts o = {0};
  o.seed = seed;
  return o;
}

static void assert_shape(const ks_tensor *t, int ndim, const int64_t *s, const char *what) {
  if (t->ndim != ndim) fail_msg("%s: ndim %d, want %d", what, t->ndim, ndim);
  for (int i = 0; i < ndim; i++)
    if (t->shape[i] != s[i]) fail_msg("%s: dim %d is %lld, want %lld", what, i, (long long)t->shape[i], (long long)s[i]);
}

static void test_conv_links__eager_and_lazy_agree(void **state) {
  ks_conv_link_opts o = seeded(11);
  ks_link *eager = ks_convolution_2d_link_new(3, 4, 3, 1, 1, &o);
  ks_link *lazy = ks_convolution_2d_link_new(0, 4, 3, 1, 1, &o);
  TU_NONNULL(eager);
  TU_NONNULL(lazy);
  assert_string_equal(ks_link_type_name(eager), "Convolution2D");
  assert_int_equal(ks_conv_link_in_channels(eager), 3);
  assert_int_equal(ks_conv_link_in_channels(lazy), 0);
  assert_int_equal(ks_conv_link_out_channels(lazy), 4);
  ks_var *We = ks_link_param(eager, "W"), *Wl = ks_link_param(lazy, "W");
  assert_shape(We->data, 4, (int64_t[]){4, 3, 3, 3}, "eager W");
  assert_false(ks_link_param_is_initialized(Wl));
  assert_shape(ks_link_param(eager, "b")->data, 1, (int64_t[]){4}, "b");
  const char *p0, *p1;
  ks_link_param_at(eager, 0, &p0);
  ks_link_param_at(eager, 1, &p1);
  assert_string_equal(p0, "W");
  assert_string_equal(p1, "b");

  ks_rng rng;
  ks_rng_seed(&rng, 1);
  ks_tensor *xt = tu_uniform(&rng, 4, (int64_t[]){2, 3, 5, 5}, -1, 1);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, xt, 0);
  ks_var *yl = ks_link_forward(ctx, lazy, x);
  TU_NONNULL(yl);
  assert_int_equal(ks_conv_link_in_channels(lazy), 3);
  assert_memory_equal(We->data->data, Wl->data->data, ks_tensor_nbytes(We->data));
  ks_var *ye = ks_link_forward(ctx, eager, x);
  ks_var *yf = ks_convolution_2d(ctx, x, We, ks_link_param(eager, "b"), 1, 1, 1, 1);
  assert_shape(ye->data, 4, (int64_t[]){2, 4, 5, 5}, "y");
  assert_memory_equal(ye->data->data, yf->data->data, ks_tensor_nbytes(ye->data));
  assert_memory_equal(ye->data->data, yl->data->data, ks_tensor_nbytes(ye->data));
  /* b starts at zero (Chainer's initial_bias None -> 0) */
  for (int i = 0; i < 4; i++) assert_true(ks_tensor_f32(ks_link_param(eager, "b")->data)[i] == 0.0f);
  /* a lazy link rejects a non-4-d input, naming itself */
  ks_link *lazy2 = ks_convolution_2d_link_new(0, 4, 3, 1, 1, NULL);
  assert_null(ks_link_forward(ctx, lazy2, ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 2, (int64_t[]){2, 3}), 0)));
  tu_assert_error(KS_ESHAPE, "Convolution2D", "4-d", "(2, 3)");
  ks_link_free(lazy2);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_link_free(eager);
  ks_link_free(lazy);
}

static void test_conv_links__options(void **state) {
  /* groups, nobias, rectangular windows */
  ks_conv_link_opts o = {.groups = 2, .nobias = 1, .kh = 2, .kw = 3, .sy = 2, .sx = 1, .pw = 1};
  ks_link *l = ks_convolution_2d_link_new(0, 6, 0, 0, 0, &o);
  TU_NONNULL(l);
  assert_null(ks_link_param(l, "b"));
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 4, (int64_t[]){1, 4, 5, 6}), 0);
  ks_var *y = ks_link_forward(ctx, l, x);
  TU_NONNULL(y);
  assert_shape(ks_link_param(l, "W")->data, 4, (int64_t[]){6, 2, 2, 3}, "grouped W");
  assert_shape(y->data, 4, (int64_t[]){1, 6, 2, 6}, "grouped y");
  ks_link_free(l);
  /* in_channels not divisible by groups: KS_ESHAPE on the first forward */
  ks_conv_link_opts og = {.groups = 2};
  l = ks_convolution_2d_link_new(0, 4, 3, 1, 0, &og);
  assert_null(ks_link_forward(ctx, l, ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 4, (int64_t[]){1, 3, 5, 5}), 0)));
  tu_assert_error(KS_ESHAPE, "Convolution2D", "groups 2");
  ks_link_free(l);
  /* bad constructor arguments */
  assert_null(ks_convolution_2d_link_new(3, 0, 3, 1, 0, NULL));
  tu_assert_error(KS_EINVAL, "Convolution2D");
  assert_null(ks_convolution_2d_link_new(3, 4, 0, 1, 0, NULL));
  tu_assert_error(KS_EINVAL, "Convolution2D");
  ks_ctx_free(ctx);
}

static void test_conv_links__lecun_scale(void **state) {
  ks_conv_link_opts o = seeded(3);
  ks_link *l = ks_convolution_2d_link_new(32, 64, 5, 1, 0, &o);
  TU_NONNULL(l);
  const ks_tensor *W = ks_link_param(l, "W")->data;
  double s = 0, q = 0;
  for (int64_t i = 0; i < W->size; i++) {
    s += ks_tensor_f32(W)[i];
    q += (double)ks_tensor_f32(W)[i] * ks_tensor_f32(W)[i];
  }
  double sd = sqrt(q / (double)W->size - (s / (double)W->size) * (s / (double)W->size));
  double want = sqrt(1.0 / (32 * 25)); /* LeCunNormal: fan_in = in * kh * kw */
  if (fabs(sd - want) > 0.05 * want) fail_msg("W std %g, want %g", sd, want);
  ks_link_free(l);
}

static void test_conv_links__deconvolution(void **state) {
  ks_conv_link_opts o = seeded(5);
  ks_link *eager = ks_deconvolution_2d_link_new(3, 2, 4, 2, 1, &o);
  ks_link *lazy = ks_deconvolution_2d_link_new(0, 2, 4, 2, 1, &o);
  TU_NONNULL(eager);
  TU_NONNULL(lazy);
  assert_string_equal(ks_link_type_name(eager), "Deconvolution2D");
  assert_shape(ks_link_param(eager, "W")->data, 4, (int64_t[]){3, 2, 4, 4}, "deconv W");
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 9);
  ks_tensor *xt = tu_uniform(&rng, 4, (int64_t[]){2, 3, 4, 4}, -1, 1);
  ks_var *x = ks_var_new(ctx, xt, 0);
  ks_var *yl = ks_link_forward(ctx, lazy, x), *ye = ks_link_forward(ctx, eager, x);
  TU_NONNULL(yl);
  TU_NONNULL(ye);
  assert_shape(ye->data, 4, (int64_t[]){2, 2, 8, 8}, "deconv y"); /* 2*(4-1) + 4 - 2 */
  assert_int_equal(ks_conv_link_in_channels(lazy), 3);
  assert_memory_equal(ye->data->data, yl->data->data, ks_tensor_nbytes(ye->data));
  ks_tensor_free(xt);
  ks_ctx_free(ctx);
  ks_link_free(eager);
  ks_link_free(lazy);
}

/* conv(1->4, 3, pad 1) relu maxpool(2) conv(->8, 3) relu avgpool(2) dropout linear(->3) */
static ks_link *make_cnn(void) {
  ks_link *seq = ks_sequential_new();
  ks_conv_link_opts o1 = seeded(1), o2 = seeded(2);
  ks_linear_opts lo = {.seed = 3};
  TU_OK(ks_sequential_append(seq, ks_convolution_2d_link_new(0, 4, 3, 1, 1, &o1)));
  TU_OK(ks_sequential_append_fn(seq, ks_relu));
  TU_OK(ks_sequential_append_max_pooling_2d(seq, 2, 2, 0, 1));
  TU_OK(ks_sequential_append(seq, ks_convolution_2d_link_new(0, 8, 3, 1, 0, &o2)));
  TU_OK(ks_sequential_append_fn(seq, ks_relu));
  TU_OK(ks_sequential_append_average_pooling_2d(seq, 2, 2, 0));
  TU_OK(ks_sequential_append_dropout(seq, 0.1));
  TU_OK(ks_sequential_append(seq, ks_linear_link_new(0, 3, &lo)));
  return seq;
}

static void test_conv_links__sequential_cnn_trains(void **state) {
  ks_link *seq = make_cnn();
  ks_rng rng;
  ks_rng_seed(&rng, 4);
  ks_tensor *xt = tu_uniform(&rng, 4, (int64_t[]){6, 1, 10, 10}, 0, 1);
  ks_tensor *tt = tu_labels(&rng, 6, 3, 0);
  ks_ctx *ctx = ks_ctx_new();
  ks_optimizer *opt = ks_optimizer_sgd_new(0.5);
  TU_OK(ks_optimizer_setup(opt, seq));
  double first = 0, last = 0;
  for (int it = 0; it < 60; it++) {
    ks_var *x = ks_var_new(ctx, xt, 0), *t = ks_var_new(ctx, tt, 0);
    ks_var *y = ks_link_forward(ctx, seq, x);
    TU_NONNULL(y);
    if (it == 0) {
      /* 10x10 -> conv pad 1: 10 -> pool (cover_all) 5 -> conv 3 -> 3 -> avg 2 -> 1; 8 features */
      assert_shape(y->data, 2, (int64_t[]){6, 3}, "cnn output");
      assert_shape(ks_link_param(seq, "1/W")->data, 4, (int64_t[]){8, 4, 3, 3}, "1/W");
      assert_shape(ks_link_param(seq, "2/W")->data, 2, (int64_t[]){3, 8}, "2/W");
    }
    ks_var *loss = ks_softmax_cross_entropy(ctx, y, t, -1);
    TU_NONNULL(loss);
    ks_link_cleargrads(seq);
    TU_OK(ks_backward(ctx, loss));
    if (it == 0) {
      first = ks_tensor_f32(loss->data)[0];
      const char *want[] = {"0/W", "0/b", "1/W", "1/b", "2/W", "2/b"};
      assert_int_equal(ks_link_num_params(seq), 6);
      for (int i = 0; i < 6; i++) {
        const char *path;
        ks_var *p = ks_link_param_at(seq, i, &path);
        assert_string_equal(path, want[i]);
        assert_true(p->grad_valid);
        double n2 = 0;
        for (int64_t k = 0; k < p->grad->size; k++) n2 += fabs(ks_tensor_f32(p->grad)[k]);
        if (!(n2 > 0)) fail_msg("gradient of %s is zero", path);
      }
    }
    last = ks_tensor_f32(loss->data)[0];
    TU_OK(ks_optimizer_update(opt));
    ks_ctx_reset(ctx);
  }
  if (!(last < 0.7 * first)) fail_msg("loss %g -> %g: the CNN does not train", first, last);
  ks_optimizer_free(opt);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_tensor_free(tt);
  ks_link_free(seq);
}

static void test_conv_links__sequential_fn_with_errors(void **state) {
  ks_link *seq = ks_sequential_new();
  assert_int_equal(ks_sequential_append_fn_with(seq, NULL, NULL, 0), KS_EINVAL);
  ks_link *chain = ks_chain_new();
  assert_int_equal(ks_sequential_append_max_pooling_2d(chain, 2, 2, 0, 1), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "not a Sequential");
  /* a bad pooling window is reported by the forward, naming the function */
  TU_OK(ks_sequential_append_max_pooling_2d(seq, 0, 2, 0, 1));
  ks_ctx *ctx = ks_ctx_new();
  assert_null(ks_link_forward(ctx, seq, ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 4, (int64_t[]){1, 1, 4, 4}), 0)));
  tu_assert_error(KS_EINVAL, "ks_max_pooling_2d");
  ks_ctx_free(ctx);
  ks_link_free(chain);
  ks_link_free(seq);
}

static void test_conv_links__sequential_npz_keys(void **state) {
  if (!KS_TEST_PYTHON[0])
    fail_msg("python3 with numpy was not found at configure time: install python3-numpy");
  ks_link *seq = ks_sequential_new();
  ks_conv_link_opts o = seeded(1);
  TU_OK(ks_sequential_append(seq, ks_convolution_2d_link_new(0, 4, 3, 1, 1, &o)));
  TU_OK(ks_sequential_append(seq, ks_batch_normalization_link_new(4, NULL)));
  TU_OK(ks_sequential_append_fn(seq, ks_relu));
  TU_OK(ks_sequential_append_max_pooling_2d(seq, 2, 0, 0, 1));
  TU_OK(ks_sequential_append(seq, ks_linear_link_new(0, 3, NULL)));
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 4, (int64_t[]){2, 1, 6, 6}), 0);
  TU_NONNULL(ks_link_forward(ctx, seq, x));
  char dir[] = "/tmp/kusari-seq-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128], cmd[512];
  snprintf(path, sizeof path, "%s/model.npz", dir);
  TU_OK(ks_save_npz(path, seq));
  snprintf(cmd, sizeof cmd,
           "'%s' -c \"import numpy as np; d = np.load('%s'); k = sorted(d.files); "
           "w = sorted(['0/W', '0/b', '1/gamma', '1/beta', '1/avg_mean', '1/avg_var', '1/N', '2/W', '2/b']); "
           "assert k == w, k; assert d['0/W'].shape == (4, 1, 3, 3); assert d['2/W'].shape == (3, 36); "
           "assert d['1/N'].dtype == np.int64\"", KS_TEST_PYTHON, path);
  int rc = system(cmd);
  assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
  /* and it loads back into a fresh, still lazy model */
  ks_link *seq2 = ks_sequential_new();
  TU_OK(ks_sequential_append(seq2, ks_convolution_2d_link_new(0, 4, 3, 1, 1, NULL)));
  TU_OK(ks_sequential_append(seq2, ks_batch_normalization_link_new(4, NULL)));
  TU_OK(ks_sequential_append(seq2, ks_linear_link_new(0, 3, NULL)));
  TU_OK(ks_load_npz(path, seq2));
  assert_memory_equal(ks_link_param(seq2, "0/W")->data->data, ks_link_param(seq, "0/W")->data->data, 36 * sizeof(float));
  assert_memory_equal(ks_link_persistent(seq2, "1/avg_mean")->data, ks_link_persistent(seq, "1/avg_mean")->data, 4 * sizeof(float));
  unlink(path);
  rmdir(dir);
  ks_link_free(seq2);
  ks_ctx_free(ctx);
  ks_link_free(seq);
}

/* A lazy link whose W is loaded from npz reports its in_channels (from W's
 * shape) before any forward: grouped convolution and deconvolution. */
static void test_conv_links__in_channels_after_load(void **state) {
  (void)state;
  ks_conv_link_opts o = seeded(3);
  o.groups = 2;
  ks_link *conv = ks_convolution_2d_link_new(6, 4, 3, 1, 1, &o);
  ks_link *deconv = ks_deconvolution_2d_link_new(5, 2, 4, 2, 1, NULL);
  TU_NONNULL(conv);
  TU_NONNULL(deconv);
  char dir[] = "/tmp/kusari-inc-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char pc[128], pd[128];
  snprintf(pc, sizeof pc, "%s/conv.npz", dir);
  snprintf(pd, sizeof pd, "%s/deconv.npz", dir);
  TU_OK(ks_save_npz(pc, conv));
  TU_OK(ks_save_npz(pd, deconv));
  ks_link *lc = ks_convolution_2d_link_new(0, 4, 3, 1, 1, &o);
  ks_link *ld = ks_deconvolution_2d_link_new(0, 2, 4, 2, 1, NULL);
  assert_int_equal(ks_conv_link_in_channels(lc), 0); /* lazy, nothing loaded */
  TU_OK(ks_load_npz(pc, lc));
  TU_OK(ks_load_npz(pd, ld));
  assert_int_equal(ks_conv_link_in_channels(lc), 6); /* W (4, 3, 3, 3), groups 2 */
  assert_int_equal(ks_conv_link_in_channels(ld), 5); /* W (5, 2, 4, 4) */
  unlink(pc);
  unlink(pd);
  rmdir(dir);
  ks_link_free(lc);
  ks_link_free(ld);
  ks_link_free(conv);
  ks_link_free(deconv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_conv_links__eager_and_lazy_agree),
    cmocka_unit_test(test_conv_links__options),
    cmocka_unit_test(test_conv_links__lecun_scale),
    cmocka_unit_test(test_conv_links__deconvolution),
    cmocka_unit_test(test_conv_links__sequential_cnn_trains),
    cmocka_unit_test(test_conv_links__sequential_fn_with_errors),
    cmocka_unit_test(test_conv_links__sequential_npz_keys),
    cmocka_unit_test(test_conv_links__in_channels_after_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
