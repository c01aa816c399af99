/*
 * tests/lib/test_kernels_threads.c — the CPU kernels that split their work
 * over the thread pool (im2col / col2im, transposes, per-channel sums,
 * pooling, batch norm, the big element-wise kernels) must give the same bits
 * on 1, 2 and 3 threads; so must whole convolution / deconvolution / pooling
 * / batch-norm forward and backward passes (which add the panel-split GEMM).
 * Sizes are above the kernels' parallel threshold (KS_CPU_PAR_MIN work), so
 * the threaded paths run. The element-wise kernels are also checked against
 * plain loops here, since the function tests use sizes below the threshold.
 */
#include "testutil.h"

#include <stdlib.h>

#define NT 3 /* thread counts 1..NT */

static float *rnd(int64_t n, uint64_t seed, double lo, double hi) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * ks_rng_uniform(&rng));
  return x;
}

/* runs 'body' (writing 'n' floats to out[t]) at 1..NT threads and compares bits */
#define SAME_BITS(what, n, body)                                                                  \
  do {                                                                                           \
    float *out_[NT];                                                                             \
    for (int t_ = 0; t_ < NT; t_++) {                                                            \
      out_[t_] = calloc((size_t)(n) + 1, sizeof(float));                                         \
      ks_set_num_threads(t_ + 1);                                                                \
      float *out = out_[t_];                                                                     \
      body;                                                                                      \
    }                                                                                            \
    for (int t_ = 1; t_ < NT; t_++)                                                              \
      if (memcmp(out_[0], out_[t_], sizeof(float) * (size_t)(n)) != 0)                           \
        fail_msg("%s: %d threads differ from 1 thread", what, t_ + 1);                           \
    for (int t_ = 0; t_ < NT; t_++) free(out_[t_]);                                              \
  } while (0)

static void test_threads__conv_kernels(void **state) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  int saved = ks_get_num_threads();
  const ks_conv_geom geoms[] = {
    {6, 5, 17, 19, 3, 3, 1, 1, 1, 1, 1, 1, 17, 19},  /* 3x3 pad 1 */
    {4, 6, 20, 20, 5, 5, 2, 2, 2, 2, 1, 1, 10, 10},  /* 5x5 stride 2 pad 2 */
    {3, 4, 21, 21, 3, 3, 2, 3, 0, 1, 2, 2, 9, 7},    /* rect stride, dilation */
    {2, 8, 16, 16, 2, 2, 2, 2, 0, 0, 1, 1, 9, 9},    /* past the edge (cover_all sizes) */
  };
  for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
    const ks_conv_geom *g = &geoms[gi];
    const int64_t xn = g->n * g->c * g->h * g->w, K = g->c * g->kh * g->kw, cn = K * g->n * g->oh * g->ow;
    float *x = rnd(xn, 10 + gi, -1, 1), *col = rnd(cn, 20 + gi, -1, 1);
    SAME_BITS("im2col", cn, be->im2col(g, x, out));
    SAME_BITS("col2im", xn, be->col2im(g, col, out));
    if (g->dy == 1) {
      const int64_t yn = g->n * g->c * g->oh * g->ow;
      float *gy = rnd(yn, 30 + gi, -1, 1);
      int32_t *idx[NT];
      SAME_BITS("max_pool2d_forward", yn, {
        idx[t_] = malloc(sizeof(int32_t) * (size_t)yn);
        be->max_pool2d_forward(g, x, out, idx[t_]);
      });
      for (int t = 1; t < NT; t++) assert_memory_equal(idx[0], idx[t], sizeof(int32_t) * (size_t)yn);
      SAME_BITS("max_pool2d_backward", xn, be->max_pool2d_backward(g, idx[0], gy, out));
      for (int t = 0; t < NT; t++) free(idx[t]);
      SAME_BITS("avg_pool2d_forward", yn, be->avg_pool2d_forward(g, x, out));
      SAME_BITS("avg_pool2d_backward", xn, be->avg_pool2d_backward(g, gy, out));
      free(gy);
    }
    free(x);
    free(col);
  }
  /* layout and per-channel kernels */
  const int64_t a = 24, b = 37, inner = 61, tot = a * b * inner;
  float *src = rnd(tot, 5, -1, 1), *bias = rnd(a, 6, -1, 1);
  SAME_BITS("swap01", tot, be->swap01(a, b, inner, src, NULL, out));
  SAME_BITS("swap01 + bias", tot, be->swap01(a, b, inner, src, bias, out));
  SAME_BITS("channel_sum", b, be->channel_sum(a, b, inner, src, out));
  SAME_BITS("channel_bias", tot, {
    memcpy(out, src, sizeof(float) * (size_t)tot);
    be->channel_bias(b, a, inner, bias, out);
  });
  SAME_BITS("copy2d", a * b * inner, be->copy2d(a * b, inner, src, inner, out, inner));
  /* batch norm over (b, a, inner) with a channels */
  float *gy = rnd(tot, 7, -1, 1), *gamma = rnd(a, 8, 0.5, 1.5), *beta = rnd(a, 9, -1, 1);
  float mean[24], var[24], inv_std[24];
  SAME_BITS("bn_stats", 2 * a, be->bn_stats(b, a, inner, src, out, out + a));
  be->bn_stats(b, a, inner, src, mean, var);
  SAME_BITS("bn_forward", tot + a, be->bn_forward(b, a, inner, 2e-5f, src, mean, var, gamma, beta, out, out + tot));
  float *x2 = rnd(tot, 5, -1, 1), *ybuf = malloc(sizeof(float) * (size_t)tot);
  be->bn_forward(b, a, inner, 2e-5f, x2, mean, var, gamma, beta, ybuf, inv_std);
  free(ybuf);
  for (int batch = 0; batch < 2; batch++)
    SAME_BITS(batch ? "bn_backward (batch stats)" : "bn_backward (fixed)", tot + 2 * a,
              be->bn_backward(b, a, inner, batch, x2, gy, mean, inv_std, gamma, out, out + tot, out + tot + a));
  free(x2);
  free(src); free(bias); free(gy); free(gamma); free(beta);
  ks_set_num_threads(saved);
}

static void test_threads__elementwise_kernels(void **state) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  int saved = ks_get_num_threads();
  const int64_t n = 3 * 65536 + 17, m = 257, rows = n / m;
  float *a = rnd(n, 1, -2, 2), *b = rnd(n, 2, -2, 2), *y = rnd(n, 3, 0.05, 0.95);
  SAME_BITS("copy", n, be->copy(out, a, sizeof(float) * (size_t)n));
  SAME_BITS("scale", n, be->scale(n, 1.5f, a, out));
  SAME_BITS("add rows", rows * m, be->add(rows, m, a, b, out));
  SAME_BITS("sub scalar", n, be->sub(n, 1, a, b, out));
  SAME_BITS("mul", n, be->mul(1, n, a, b, out));
  SAME_BITS("relu_forward", n, be->relu_forward(n, a, out));
  SAME_BITS("relu_backward", n, be->relu_backward(n, a, b, out));
  SAME_BITS("leaky_relu_forward", n, be->leaky_relu_forward(n, 0.2f, a, out));
  SAME_BITS("leaky_relu_backward", n, be->leaky_relu_backward(n, 0.2f, a, b, out));
  SAME_BITS("sigmoid_forward", n, be->sigmoid_forward(n, a, out));
  SAME_BITS("sigmoid_backward", n, be->sigmoid_backward(n, y, b, out));
  SAME_BITS("tanh_forward", n, be->tanh_forward(n, a, out));
  SAME_BITS("tanh_backward", n, be->tanh_backward(n, y, b, out));
  /* and the threaded paths compute the right values */
  ks_set_num_threads(3);
  float *o = malloc(sizeof(float) * (size_t)n);
  be->copy(o, a, sizeof(float) * (size_t)n);
  assert_memory_equal(o, a, sizeof(float) * (size_t)n);
  be->add(rows, m, a, b, o);
  for (int64_t i = 0; i < rows * m; i++) assert_true(o[i] == a[i] + b[i % m]);
  be->sub(n, 1, a, b, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == a[i] - b[0]);
  be->mul(1, n, a, b, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == a[i] * b[i]);
  be->scale(n, 1.5f, a, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == 1.5f * a[i]);
  be->relu_forward(n, a, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == (a[i] < 0 ? 0.0f : a[i]));
  be->relu_backward(n, a, b, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == (a[i] > 0 ? b[i] : 0.0f));
  be->leaky_relu_backward(n, 0.2f, a, b, o);
  for (int64_t i = 0; i < n; i++) assert_true(o[i] == (a[i] >= 0 ? b[i] : 0.2f * b[i]));
  be->tanh_forward(n, a, o);
  for (int64_t i = 0; i < n; i++) assert_true(fabs(o[i] - tanh(a[i])) < 1e-6);
  be->sigmoid_forward(n, a, o);
  for (int64_t i = 0; i < n; i++) assert_true(fabs(o[i] - 1 / (1 + exp(-a[i]))) < 1e-6);
  /* overlapping copy (memmove semantics) */
  memcpy(o, a, sizeof(float) * (size_t)n);
  be->copy(o + 1, o, sizeof(float) * (size_t)(n - 1));
  assert_memory_equal(o + 1, a, sizeof(float) * (size_t)(n - 1));
  free(o);
  free(a); free(b); free(y);
  ks_set_num_threads(saved);
}

/* whole functions: forward output and every gradient, per thread count */
typedef enum { F_CONV, F_CONV_G, F_DECONV, F_MAXP, F_AVGP, F_BN } fn_kind;

static void run_fn(fn_kind k, ks_tensor *const *in, float *out) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *v[3];
  int n = k == F_MAXP || k == F_AVGP ? 1 : 3;
  for (int i = 0; i < n; i++) v[i] = ks_var_new(ctx, in[i], 1);
  ks_var *y = NULL;
  ks_conv2d_opts go = {.ph = 1, .pw = 1, .groups = 2};
  switch (k) {
    case F_CONV: y = ks_convolution_2d(ctx, v[0], v[1], v[2], 1, 2, 1, 1); break;
    case F_CONV_G: y = ks_convolution_2d_ex(ctx, v[0], v[1], v[2], &go); break;
    case F_DECONV: y = ks_deconvolution_2d(ctx, v[0], v[1], v[2], 2, 1); break;
    case F_MAXP: y = ks_max_pooling_2d(ctx, v[0], 3, 2, 1, 1); break;
    case F_AVGP: y = ks_average_pooling_2d(ctx, v[0], 3, 2, 1); break;
    case F_BN: y = ks_batch_normalization(ctx, v[0], v[1], v[2], 2e-5, NULL, NULL, 0.9); break;
  }
  if (!y) fail_msg("%s", ks_error_last());
  /* loss = sum(y * y) / 2: gy = y */
  ks_var *loss = ks_scale(ctx, ks_sum(ctx, ks_mul(ctx, y, y), KS_AXIS_ALL), 0.5);
  TU_OK(ks_backward(ctx, loss));
  memcpy(out, y->data->data, ks_tensor_nbytes(y->data));
  out += y->data->size;
  for (int i = 0; i < n; i++) {
    memcpy(out, v[i]->grad->data, ks_tensor_nbytes(v[i]->grad));
    out += v[i]->grad->size;
  }
  ks_ctx_free(ctx);
}

static void test_threads__functions(void **state) {
  int saved = ks_get_num_threads();
  ks_rng rng;
  ks_rng_seed(&rng, 42);
  struct { const char *name; fn_kind k; int64_t s[3][4]; int nd[3]; int64_t total; } fs[] = {
    {"convolution_2d 5x5 pad 2", F_CONV, {{16, 8, 14, 14}, {16, 8, 5, 5}, {16}}, {4, 4, 1}, 0},
    {"convolution_2d groups 2", F_CONV_G, {{8, 8, 12, 12}, {12, 4, 3, 3}, {12}}, {4, 4, 1}, 0},
    {"deconvolution_2d stride 2", F_DECONV, {{8, 8, 10, 10}, {8, 6, 3, 3}, {6}}, {4, 4, 1}, 0},
    {"max_pooling_2d", F_MAXP, {{8, 8, 24, 24}}, {4}, 0},
    {"average_pooling_2d", F_AVGP, {{8, 8, 24, 24}}, {4}, 0},
    {"batch_normalization", F_BN, {{16, 8, 12, 12}, {8}, {8}}, {4, 1, 1}, 0},
  };
  for (size_t f = 0; f < sizeof fs / sizeof fs[0]; f++) {
    int n = fs[f].k == F_MAXP || fs[f].k == F_AVGP ? 1 : 3;
    ks_tensor *in[3];
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
      in[i] = tu_uniform(&rng, fs[f].nd[i], fs[f].s[i], -1, 1);
      total += in[i]->size;
    }
    total += 4 * in[0]->size; /* the output is at most 4x x here */
    SAME_BITS(fs[f].name, total, run_fn(fs[f].k, in, out));
    for (int i = 0; i < n; i++) ks_tensor_free(in[i]);
  }
  ks_set_num_threads(saved);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_threads__conv_kernels),
    cmocka_unit_test(test_threads__elementwise_kernels),
    cmocka_unit_test(test_threads__functions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
