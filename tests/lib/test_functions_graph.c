/*
 * tests/lib/test_functions_graph.c — semantics beyond single-op values:
 * gradient accumulation (a variable used twice, a diamond graph), no-backprop
 * mode, gradients computed only where needed, linear with persistent
 * parameters, numerically stable softmax family, softmax_cross_entropy and
 * accuracy with ignore_label, and dropout (test identity, train statistics,
 * backward with the same mask). Expected values are hand-computed or written
 * here in double.
 */
#include "testutil.h"

#include <stdlib.h>

static ks_var *leaf(ks_ctx *ctx, int ndim, const int64_t *shape, const float *v, int rg) {
  ks_var *x = ks_var_from_data(ctx, KS_F32, ndim, shape, v, rg);
  assert_non_null(x);
  return x;
}

static void assert_grad(const ks_var *v, const double *want, int64_t n, const char *what) {
  if (!v->grad) fail_msg("%s: no gradient", what);
  assert_int_equal(v->grad->size, n);
  tu_assert_close(ks_tensor_f32(v->grad), want, n, 1e-6, 1e-5, what);
}

/* y = sum(x * x): dy/dx = 2x (both uses of x contribute) */
static void test_graph__variable_used_twice(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 1, (int64_t[]){3}, (float[]){1, -2, 0.5f}, 1);
  ks_var *y = ks_sum(ctx, ks_mul(ctx, x, x), KS_AXIS_ALL);
  TU_NONNULL(y);
  assert_float_equal(ks_tensor_f32(y->data)[0], 5.25f, 1e-6);
  TU_OK(ks_backward(ctx, y));
  assert_grad(x, (double[]){2, -4, 1}, 3, "d sum(x*x)/dx");

  /* the same variable in two different nodes: y = sum(x) + sum(3x) -> 4 */
  ks_ctx_reset(ctx);
  x = leaf(ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3}, 1);
  y = ks_add(ctx, ks_sum(ctx, x, KS_AXIS_ALL), ks_sum(ctx, ks_scale(ctx, x, 3.0), KS_AXIS_ALL));
  TU_OK(ks_backward(ctx, y));
  assert_grad(x, (double[]){4, 4, 4}, 3, "two consumers");
  ks_ctx_free(ctx);
}

/* Diamond: h = 3x; y = sum(sigmoid(h) * tanh(h)); both branches meet again.
 * dy/dx = 3 * (s'(h) t(h) + s(h) t'(h)). */
static void test_graph__diamond(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  const float xv[4] = {-0.7f, -0.1f, 0.2f, 0.9f};
  ks_var *x = leaf(ctx, 1, (int64_t[]){4}, xv, 1);
  ks_var *h = ks_scale(ctx, x, 3.0);
  ks_var *y = ks_sum(ctx, ks_mul(ctx, ks_sigmoid(ctx, h), ks_tanh(ctx, h)), KS_AXIS_ALL);
  TU_NONNULL(y);
  TU_OK(ks_backward_ex(ctx, y, 1)); /* retain_grad: h->grad is inspected below */
  double want[4], ysum = 0;
  for (int i = 0; i < 4; i++) {
    double hv = 3.0 * xv[i], s = 1 / (1 + exp(-hv)), t = tanh(hv);
    want[i] = 3.0 * (s * (1 - s) * t + s * (1 - t * t));
    ysum += s * t;
  }
  assert_float_equal(ks_tensor_f32(y->data)[0], ysum, 1e-5);
  assert_grad(x, want, 4, "diamond");
  /* the intermediate h got the sum of both branches' gradients */
  assert_non_null(h->grad);
  for (int i = 0; i < 4; i++) assert_float_equal(ks_tensor_f32(h->grad)[i], want[i] / 3.0, 1e-5);
  ks_ctx_free(ctx);
}

/* Two backwards through one graph: x = 1, h = 2x, l1 = sum(h), l2 = sum(3h).
 * backward(l1) then backward(l2) accumulates dl1/dx + dl2/dx = 2 + 6 = 8 in x
 * (Chainer); h's gradient from the first pass must not be counted again. */
static void test_graph__second_backward_counts_once(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 1, (int64_t[]){2}, (float[]){1, 1}, 1);
  ks_var *h = ks_scale(ctx, x, 2.0);
  ks_var *l1 = ks_sum(ctx, h, KS_AXIS_ALL);
  ks_var *l2 = ks_sum(ctx, ks_scale(ctx, h, 3.0), KS_AXIS_ALL);
  TU_OK(ks_backward(ctx, l1));
  TU_OK(ks_backward(ctx, l2));
  assert_float_equal(ks_tensor_f32(x->grad)[0], 8.0f, 1e-6);
  assert_float_equal(ks_tensor_f32(x->grad)[1], 8.0f, 1e-6);
  assert_null(h->grad);
  /* a non-scalar loss needs its gradient set explicitly */
  assert_int_equal(ks_backward(ctx, h), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "set loss->grad"));
  ks_ctx_free(ctx);
}

/* no_backprop_mode: no node is recorded anywhere; values are unchanged */
static void test_graph__no_backprop_mode(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 2, (int64_t[]){2, 3}, (float[]){1, -2, 3, -4, 5, -6}, 1);
  ks_var *W = leaf(ctx, 2, (int64_t[]){2, 3}, (float[]){1, 0, 0, 0, 1, 0}, 1);
  ks_var *b = leaf(ctx, 1, (int64_t[]){2}, (float[]){0.5f, -0.5f}, 1);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, (int32_t[]){0, 1}, 0);
  assert_int_equal(ks_ctx_set_backprop(ctx, 0), 1);
  ks_var *outs[] = {
    ks_linear(ctx, x, W, b), ks_relu(ctx, x), ks_leaky_relu(ctx, x, 0.2), ks_sigmoid(ctx, x),
    ks_tanh(ctx, x), ks_softmax(ctx, x, 1), ks_log_softmax(ctx, x),
    ks_softmax_cross_entropy(ctx, x, t, -1), ks_mean_squared_error(ctx, x, W),
    ks_dropout(ctx, x, 0.5), ks_add(ctx, x, W), ks_sub(ctx, x, W), ks_mul(ctx, x, W),
    ks_scale(ctx, x, 2), ks_matmul(ctx, x, W, 0, 1), ks_reshape(ctx, x, 1, (int64_t[]){6}),
    ks_sum(ctx, x, 0), ks_mean(ctx, x, KS_AXIS_ALL),
  };
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    if (!outs[i]) fail_msg("output %zu: %s", i, ks_error_last());
    if (outs[i]->creator) fail_msg("output %zu recorded a node in no-backprop mode", i);
  }
  assert_float_equal(ks_tensor_f32(outs[0]->data)[0], 1.5f, 1e-6);
  assert_float_equal(ks_tensor_f32(outs[0]->data)[1], -2.5f, 1e-6);
  /* backward from such an output is a no-op and leaves x without gradient */
  TU_OK(ks_backward(ctx, ks_sum(ctx, outs[1], KS_AXIS_ALL)));
  assert_null(x->grad);
  assert_int_equal(ks_ctx_set_backprop(ctx, 1), 0);
  assert_non_null(ks_relu(ctx, x)->creator);
  ks_ctx_free(ctx);
}

/* inputs that require no gradient get none, and a graph over only such
 * inputs records nothing */
static void test_graph__only_needed_gradients(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 2, (int64_t[]){1, 2}, (float[]){1, 2}, 0); /* data, like an image */
  ks_var *W = leaf(ctx, 2, (int64_t[]){1, 2}, (float[]){3, 4}, 1);
  ks_var *c = leaf(ctx, 2, (int64_t[]){1, 2}, (float[]){5, 6}, 0);
  assert_null(ks_add(ctx, x, c)->creator);
  ks_var *y = ks_sum(ctx, ks_linear(ctx, x, W, NULL), KS_AXIS_ALL);
  TU_OK(ks_backward(ctx, y));
  assert_null(x->grad);
  assert_grad(W, (double[]){1, 2}, 2, "gW");
  ks_ctx_free(ctx);
}

/* Linear over persistent parameters: values and gradients against double
 * loops; a second backward without cleargrad accumulates; cleargrad resets. */
static void test_graph__linear_params(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 11);
  const int64_t N = 5, K = 7, M = 3;
  ks_tensor *Wd = tu_uniform(&rng, 2, (int64_t[]){M, K}, -1, 1);
  ks_tensor *bd = tu_uniform(&rng, 1, (int64_t[]){M}, -1, 1);
  ks_tensor *Wg = ks_tensor_new(KS_F32, 2, (int64_t[]){M, K});
  ks_tensor *bg = ks_tensor_new(KS_F32, 1, (int64_t[]){M});
  ks_tensor *xd = tu_uniform(&rng, 2, (int64_t[]){N, K}, -1, 1);
  ks_tensor *gyd = tu_uniform(&rng, 2, (int64_t[]){N, M}, -1, 1);
  ks_var W, b;
  ks_var_param_init(&W, Wd, Wg, "l1/W");
  ks_var_param_init(&b, bd, bg, "l1/b");
  ks_ctx *ctx = ks_ctx_new();
  const float *x = ks_tensor_f32(xd), *w = ks_tensor_f32(Wd), *g = ks_tensor_f32(gyd);
  double gW[3 * 7] = {0}, gb[3] = {0}, gx[5 * 7] = {0};
  for (int64_t i = 0; i < N; i++)
    for (int64_t j = 0; j < M; j++) {
      gb[j] += g[i * M + j];
      for (int64_t q = 0; q < K; q++) {
        gW[j * K + q] += (double)g[i * M + j] * x[i * K + q];
        gx[i * K + q] += (double)g[i * M + j] * w[j * K + q];
      }
    }
  for (int rep = 1; rep <= 2; rep++) {
    ks_var *xv = ks_var_new(ctx, xd, 1);
    ks_var *y = ks_linear(ctx, xv, &W, &b);
    TU_NONNULL(y);
    y->grad = ks_ctx_tensor_like(ctx, y->data);
    memcpy(y->grad->data, gyd->data, ks_tensor_nbytes(gyd));
    TU_OK(ks_backward(ctx, y));
    assert_int_equal(W.grad_valid, 1);
    double want_W[3 * 7], want_b[3];
    for (int i = 0; i < M * K; i++) want_W[i] = rep * gW[i];
    for (int i = 0; i < M; i++) want_b[i] = rep * gb[i];
    tu_assert_close(ks_tensor_f32(Wg), want_W, M * K, 1e-5, 1e-5, "gW (accumulated)");
    tu_assert_close(ks_tensor_f32(bg), want_b, M, 1e-5, 1e-5, "gb (accumulated)");
    tu_assert_close(ks_tensor_f32(xv->grad), gx, N * K, 1e-5, 1e-5, "gx");
    ks_ctx_reset(ctx);
  }
  ks_var_cleargrad(&W);
  assert_int_equal(W.grad_valid, 0);
  ks_ctx_free(ctx);
  ks_tensor *ts[] = {Wd, bd, Wg, bg, xd, gyd};
  for (size_t i = 0; i < 6; i++) ks_tensor_free(ts[i]);
}

/* Logits of 1000 must not overflow: softmax(x + 1000) == softmax(x). */
static void test_graph__stable_softmax(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 2, (int64_t[]){2, 3}, (float[]){1000, 1001, 1002, -1000, 0, 1000}, 1);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, (int32_t[]){0, 1}, 0);
  ks_var *p = ks_softmax(ctx, x, 1), *lp = ks_log_softmax(ctx, x);
  ks_var *loss = ks_softmax_cross_entropy(ctx, x, t, -1);
  TU_NONNULL(p);
  TU_NONNULL(lp);
  TU_NONNULL(loss);
  double e0 = exp(-2.0), e1 = exp(-1.0), s = e0 + e1 + 1.0;
  double want_p[6] = {e0 / s, e1 / s, 1 / s, 0, 0, 1};
  double want_lp[6] = {-2 - log(s), -1 - log(s), -log(s), -2000, -1000, 0};
  tu_assert_close(ks_tensor_f32(p->data), want_p, 6, 1e-6, 1e-5, "softmax(1000s)");
  tu_assert_close(ks_tensor_f32(lp->data), want_lp, 6, 1e-4, 1e-6, "log_softmax(1000s)");
  /* sample 0: -log p0 = 2 + log(s); sample 1: -log p1 = 1000 (exactly, no inf) */
  assert_float_equal(ks_tensor_f32(loss->data)[0], (2 + log(s) + 1000) / 2, 1e-3);
  TU_OK(ks_backward(ctx, loss));
  const float *gx = ks_tensor_f32(x->grad);
  for (int i = 0; i < 6; i++) assert_true(isfinite(gx[i]));
  assert_float_equal(gx[0], (e0 / s - 1) / 2, 1e-6);
  assert_float_equal(gx[4], (0.0 - 1) / 2, 1e-6);
  assert_float_equal(gx[5], (1.0 - 0) / 2, 1e-6);
  ks_ctx_free(ctx);
}

/* ignore_label: mean over the non-ignored rows only; ignored rows get zero
 * gradient; all ignored gives loss 0 and zero gradients (Chainer). */
static void test_graph__sce_ignore_label(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  const float xv[9] = {1, 2, 3, 0, 0, 0, 3, -1, 2};
  ks_var *x = leaf(ctx, 2, (int64_t[]){3, 3}, xv, 1);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){3}, (int32_t[]){2, -1, 0}, 0);
  ks_var *loss = ks_softmax_cross_entropy(ctx, x, t, -1);
  TU_NONNULL(loss);
  double l0 = log(exp(1) + exp(2) + exp(3)) - 3, l2 = log(exp(3) + exp(-1) + exp(2)) - 3;
  assert_float_equal(ks_tensor_f32(loss->data)[0], (l0 + l2) / 2, 1e-6);
  TU_OK(ks_backward(ctx, loss));
  const float *gx = ks_tensor_f32(x->grad);
  for (int k = 3; k < 6; k++) assert_float_equal(gx[k], 0.0, 0.0);
  double s0 = exp(1) + exp(2) + exp(3);
  assert_float_equal(gx[2], (exp(3) / s0 - 1) / 2, 1e-6);
  assert_float_equal(gx[0], (exp(1) / s0) / 2, 1e-6);

  /* another ignore value: 7, and a label of -1 is then out of range */
  ks_ctx_reset(ctx);
  x = leaf(ctx, 2, (int64_t[]){3, 3}, xv, 1);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){3}, (int32_t[]){2, 7, 0}, 0);
  loss = ks_softmax_cross_entropy(ctx, x, t, 7);
  TU_NONNULL(loss);
  assert_float_equal(ks_tensor_f32(loss->data)[0], (l0 + l2) / 2, 1e-6);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){3}, (int32_t[]){2, -1, 0}, 0);
  assert_null(ks_softmax_cross_entropy(ctx, x, t, 7));
  tu_assert_error(KS_EINVAL, "label -1", "sample 1");

  /* everything ignored */
  ks_ctx_reset(ctx);
  x = leaf(ctx, 2, (int64_t[]){2, 3}, xv, 1);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, (int32_t[]){-1, -1}, 0);
  loss = ks_softmax_cross_entropy(ctx, x, t, -1);
  TU_NONNULL(loss);
  assert_float_equal(ks_tensor_f32(loss->data)[0], 0.0, 0.0);
  TU_OK(ks_backward(ctx, loss));
  for (int k = 0; k < 6; k++) assert_float_equal(ks_tensor_f32(x->grad)[k], 0.0, 0.0);
  ks_ctx_free(ctx);
}

/* axis -1 is the last axis for sum and mean, as for softmax and concat and
 * in Chainer; KS_AXIS_ALL (axis=None) reduces everything. x = arange(24)
 * reshaped (2, 3, 4); sums by hand (F.sum(x, axis=-1) in Chainer 7.8.1
 * prints the same). */
static void test_graph__reduce_negative_axis(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  float v[24];
  for (int i = 0; i < 24; i++) v[i] = (float)i;
  ks_var *x = leaf(ctx, 3, (int64_t[]){2, 3, 4}, v, 1);
  ks_var *s = ks_sum(ctx, x, -1);
  TU_NONNULL(s);
  assert_int_equal(s->data->ndim, 2);
  assert_int_equal(s->data->shape[0], 2);
  assert_int_equal(s->data->shape[1], 3);
  const float want_sum[6] = {6, 22, 38, 54, 70, 86};
  for (int i = 0; i < 6; i++) assert_float_equal(ks_tensor_f32(s->data)[i], want_sum[i], 0.0);
  ks_var *m = ks_mean(ctx, x, -1);
  const float want_mean[6] = {1.5f, 5.5f, 9.5f, 13.5f, 17.5f, 21.5f};
  for (int i = 0; i < 6; i++) assert_float_equal(ks_tensor_f32(m->data)[i], want_mean[i], 0.0);
  ks_var *s2 = ks_sum(ctx, x, -2); /* (2, 4): 0+4+8, 1+5+9, ... */
  const float want_s2[8] = {12, 15, 18, 21, 48, 51, 54, 57};
  for (int i = 0; i < 8; i++) assert_float_equal(ks_tensor_f32(s2->data)[i], want_s2[i], 0.0);
  ks_var *all = ks_sum(ctx, x, KS_AXIS_ALL);
  assert_int_equal(all->data->ndim, 0);
  assert_float_equal(ks_tensor_f32(all->data)[0], 276.0, 0.0);
  /* backward of mean over the last axis: 1/4 everywhere */
  TU_OK(ks_backward(ctx, ks_sum(ctx, m, KS_AXIS_ALL)));
  for (int i = 0; i < 24; i++) assert_float_equal(ks_tensor_f32(x->grad)[i], 0.25, 0.0);
  ks_ctx_free(ctx);
}

/* accuracy: hand-computed fractions, ignore_label, first argmax on ties,
 * out-of-range labels never match, no graph */
static void test_graph__accuracy(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *y = leaf(ctx, 2, (int64_t[]){4, 3},
                   (float[]){0.1f, 0.8f, 0.1f, 0.5f, 0.2f, 0.3f, 0.3f, 0.3f, 0.1f, 0, 0, 1}, 1);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){1, 2, 0, 2}, 0);
  ks_var *a = ks_accuracy(ctx, y, t, -1);
  TU_NONNULL(a);
  assert_null(a->creator);
  assert_int_equal(a->data->ndim, 0);
  assert_float_equal(ks_tensor_f32(a->data)[0], 0.75, 1e-7); /* row 2: tie -> class 0 */
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){1, -1, -1, 0}, 0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, y, t, -1)->data)[0], 0.5, 1e-7);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){-1, -1, -1, -1}, 0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, y, t, -1)->data)[0], 0.0, 0.0);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){1, 9, 0, 2}, 0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, y, t, -1)->data)[0], 0.75, 1e-7);
  /* ignore_label None (KS_IGNORE_NONE): -1 is a label that never matches,
   * so 1 hit of 4 (F.accuracy(y, t) in Chainer) */
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){1, -1, -1, 2}, 0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, y, t, KS_IGNORE_NONE)->data)[0], 0.5, 1e-7);
  t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, (int32_t[]){-1, -1, -1, -1}, 0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, y, t, KS_IGNORE_NONE)->data)[0], 0.0, 0.0);
  ks_ctx_free(ctx);
}

/* dropout: identity (the same variable) in test mode; in train mode the kept
 * fraction is 1 - ratio within 5 sigma, kept values are x / (1 - ratio), the
 * mean is preserved, and backward multiplies by the same mask. */
static void test_graph__dropout(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  const int64_t n = 100000;
  const double ratio = 0.3;
  float *xv = malloc((size_t)n * sizeof *xv);
  for (int64_t i = 0; i < n; i++) xv[i] = 1.0f + (float)(i % 7);
  ks_var *x = leaf(ctx, 2, (int64_t[]){n / 100, 100}, xv, 1);

  ks_ctx_set_train(ctx, 0);
  assert_ptr_equal(ks_dropout(ctx, x, ratio), x);
  ks_ctx_set_train(ctx, 1);

  ks_ctx_seed(ctx, 42);
  ks_var *y = ks_dropout(ctx, x, ratio);
  TU_NONNULL(y);
  assert_non_null(y->creator);
  const float *yv = ks_tensor_f32(y->data);
  int64_t kept = 0;
  double sx = 0, sy = 0;
  for (int64_t i = 0; i < n; i++) {
    sx += xv[i];
    sy += yv[i];
    if (yv[i] != 0.0f) {
      kept++;
      assert_float_equal(yv[i], xv[i] / (1 - ratio), 1e-5 * yv[i]);
    }
  }
  double sigma = sqrt(n * ratio * (1 - ratio));
  assert_true(fabs((double)kept - n * (1 - ratio)) < 5 * sigma);
  assert_true(fabs(sy / sx - 1.0) < 0.02);

  /* backward: gx = gy * mask, zero exactly where y was dropped */
  ks_var *loss = ks_sum(ctx, ks_mul(ctx, y, x), KS_AXIS_ALL); /* d/dx = mask * x + y */
  TU_OK(ks_backward(ctx, loss));
  const float *gx = ks_tensor_f32(x->grad);
  for (int64_t i = 0; i < n; i++) {
    double m = yv[i] != 0.0f ? 1 / (1 - ratio) : 0.0;
    double want = m * xv[i] + yv[i];
    if (fabs(gx[i] - want) > 1e-4 * fabs(want) + 1e-6)
      fail_msg("dropout gx[%lld] = %g, want %g", (long long)i, gx[i], want);
  }

  /* same seed, same mask; next call, another mask */
  ks_ctx_seed(ctx, 42);
  ks_var *y2 = ks_dropout(ctx, x, ratio);
  assert_memory_equal(y2->data->data, y->data->data, (size_t)n * sizeof(float));
  ks_var *y3 = ks_dropout(ctx, x, ratio);
  assert_memory_not_equal(y3->data->data, y->data->data, (size_t)n * sizeof(float));

  /* ratio 0: everything kept unchanged */
  ks_var *y0 = ks_dropout(ctx, x, 0.0);
  assert_memory_equal(y0->data->data, xv, (size_t)n * sizeof(float));
  free(xv);
  ks_ctx_free(ctx);
}

/* reshape is a view: same data pointer; its gradient comes back in x's shape */
static void test_graph__reshape_view(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6}, 1);
  ks_var *r = ks_reshape(ctx, x, 3, (int64_t[]){3, -1, 1});
  TU_NONNULL(r);
  assert_ptr_equal(r->data->data, x->data->data);
  assert_int_equal(r->data->ndim, 3);
  assert_int_equal(r->data->shape[1], 2);
  ks_var *y = ks_sum(ctx, ks_mul(ctx, r, r), KS_AXIS_ALL);
  TU_OK(ks_backward(ctx, y));
  assert_int_equal(x->grad->ndim, 2);
  assert_grad(x, (double[]){2, 4, 6, 8, 10, 12}, 6, "reshape grad");
  ks_ctx_free(ctx);
}

/* an empty batch flows through the MLP step and backward without touching
 * memory it does not own (ASan); the loss of nothing is 0, like Chainer */
static void test_graph__empty_batch(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_F32, 2, (int64_t[]){0, 3}), 1);
  ks_var *t = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_I32, 1, (int64_t[]){0}), 0);
  ks_var *W = leaf(ctx, 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6}, 1);
  ks_var *b = leaf(ctx, 1, (int64_t[]){2}, (float[]){1, 1}, 1);
  ks_var *h = ks_relu(ctx, ks_linear(ctx, x, W, b));
  TU_NONNULL(h);
  assert_int_equal(h->data->shape[0], 0);
  assert_int_equal(h->data->shape[1], 2);
  ks_var *loss = ks_softmax_cross_entropy(ctx, h, t, -1);
  TU_NONNULL(loss);
  assert_float_equal(ks_tensor_f32(loss->data)[0], 0.0, 0.0);
  assert_float_equal(ks_tensor_f32(ks_accuracy(ctx, h, t, -1)->data)[0], 0.0, 0.0);
  TU_OK(ks_backward(ctx, loss));
  for (int i = 0; i < 6; i++) assert_float_equal(ks_tensor_f32(W->grad)[i], 0.0, 0.0);
  for (int i = 0; i < 2; i++) assert_float_equal(ks_tensor_f32(b->grad)[i], 0.0, 0.0);
  ks_ctx_free(ctx);
}

/* NaN is not hidden: relu and leaky_relu pass it through (numpy.maximum) */
static void test_graph__nan_passes(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = leaf(ctx, 1, (int64_t[]){3}, (float[]){NAN, -1, 2}, 1);
  const float *r = ks_tensor_f32(ks_relu(ctx, x)->data);
  assert_true(isnan(r[0]));
  assert_float_equal(r[1], 0.0, 0.0);
  assert_float_equal(r[2], 2.0, 0.0);
  assert_true(isnan(ks_tensor_f32(ks_leaky_relu(ctx, x, 0.2)->data)[0]));
  ks_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_graph__variable_used_twice),
    cmocka_unit_test(test_graph__diamond),
    cmocka_unit_test(test_graph__second_backward_counts_once),
    cmocka_unit_test(test_graph__no_backprop_mode),
    cmocka_unit_test(test_graph__only_needed_gradients),
    cmocka_unit_test(test_graph__linear_params),
    cmocka_unit_test(test_graph__stable_softmax),
    cmocka_unit_test(test_graph__sce_ignore_label),
    cmocka_unit_test(test_graph__accuracy),
    cmocka_unit_test(test_graph__reduce_negative_axis),
    cmocka_unit_test(test_graph__dropout),
    cmocka_unit_test(test_graph__reshape_view),
    cmocka_unit_test(test_graph__empty_batch),
    cmocka_unit_test(test_graph__nan_passes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
