/*
 * tests/lib/test_autograd_memory.c — the steady state of a training loop does
 * no malloc: 1,000 iterations of an MLP-shaped step (linear-relu-dropout-
 * linear-relu-linear, softmax cross entropy, accuracy, backward, an SGD
 * update through the parameters' persistent grads, ks_ctx_reset) leave the
 * arena's malloc count and capacity unchanged after the first iterations.
 * Under ASan (KUSARI_SANITIZE) the same loop proves there are no leaks.
 */
#include "testutil.h"

#include <stdlib.h>

typedef struct param {
  ks_tensor *data, *grad;
  ks_var v;
} param;

static void param_init(param *p, ks_rng *rng, int ndim, const int64_t *shape, double scale,
                       const char *name) {
  p->data = tu_uniform(rng, ndim, shape, -scale, scale);
  p->grad = ks_tensor_new(KS_F32, ndim, shape);
  assert_non_null(p->grad);
  ks_var_param_init(&p->v, p->data, p->grad, name);
}

static void test_autograd_memory__steady_state(void **state) {
  enum { N = 32, IN = 64, H = 48, C = 10, ITERS = 1000, WARMUP = 3 };
  ks_rng rng;
  ks_rng_seed(&rng, 2024);
  param W1, b1, W2, b2, W3, b3;
  param_init(&W1, &rng, 2, (int64_t[]){H, IN}, 0.2, "l1/W");
  param_init(&b1, &rng, 1, (int64_t[]){H}, 0.0, "l1/b");
  param_init(&W2, &rng, 2, (int64_t[]){H, H}, 0.2, "l2/W");
  param_init(&b2, &rng, 1, (int64_t[]){H}, 0.0, "l2/b");
  param_init(&W3, &rng, 2, (int64_t[]){C, H}, 0.2, "l3/W");
  param_init(&b3, &rng, 1, (int64_t[]){C}, 0.0, "l3/b");
  param *ps[] = {&W1, &b1, &W2, &b2, &W3, &b3};

  /* a fixed, learnable batch: label = argmax of the first C features */
  ks_tensor *xb = tu_uniform(&rng, 2, (int64_t[]){N, IN}, 0, 1);
  ks_tensor *tb = ks_tensor_new(KS_I32, 1, (int64_t[]){N});
  for (int i = 0; i < N; i++) {
    int best = 0;
    for (int k = 1; k < C; k++)
      if (ks_tensor_f32(xb)[i * IN + k] > ks_tensor_f32(xb)[i * IN + best]) best = k;
    ks_tensor_i32(tb)[i] = best;
  }

  ks_ctx *ctx = ks_ctx_new();
  ks_ctx_seed(ctx, 1);
  ks_arena_stats after_warmup = {0};
  float first_loss = 0, last_loss = 0;
  for (int it = 0; it < ITERS; it++) {
    for (size_t k = 0; k < 6; k++) ks_var_cleargrad(&ps[k]->v);
    ks_var *x = ks_var_new(ctx, xb, 0);
    ks_var *t = ks_var_new(ctx, tb, 0);
    ks_var *h = ks_dropout(ctx, ks_relu(ctx, ks_linear(ctx, x, &W1.v, &b1.v)), 0.1);
    h = ks_relu(ctx, ks_linear(ctx, h, &W2.v, &b2.v));
    ks_var *y = ks_linear(ctx, h, &W3.v, &b3.v);
    ks_var *loss = ks_softmax_cross_entropy(ctx, y, t, -1);
    ks_var *acc = ks_accuracy(ctx, y, t, -1);
    TU_NONNULL(loss);
    TU_NONNULL(acc);
    TU_OK(ks_backward(ctx, loss));
    for (size_t k = 0; k < 6; k++) {
      assert_int_equal(ps[k]->v.grad_valid, 1);
      float *d = ks_tensor_f32(ps[k]->data);
      const float *g = ks_tensor_f32(ps[k]->grad);
      for (int64_t i = 0; i < ps[k]->data->size; i++) d[i] -= 0.1f * g[i];
    }
    if (it == 0) first_loss = ks_tensor_f32(loss->data)[0];
    last_loss = ks_tensor_f32(loss->data)[0];
    ks_ctx_reset(ctx);
    ks_arena_stats s = ks_arena_get_stats(ks_ctx_arena(ctx));
    if (it + 1 == WARMUP) after_warmup = s;
    if (it + 1 > WARMUP) {
      if (s.mallocs != after_warmup.mallocs)
        fail_msg("iteration %d: arena mallocs grew from %zu to %zu", it, after_warmup.mallocs,
                 s.mallocs);
      assert_int_equal(s.capacity, after_warmup.capacity);
      assert_int_equal(s.used, 0);
    }
  }
  /* it also learned something: the graph is wired right end to end */
  assert_true(last_loss < 0.5f * first_loss);
  ks_ctx_free(ctx);
  for (size_t k = 0; k < 6; k++) {
    ks_tensor_free(ps[k]->data);
    ks_tensor_free(ps[k]->grad);
  }
  ks_tensor_free(xb);
  ks_tensor_free(tb);
}

/* An arena that starts too small grows during the first iteration, is
 * consolidated on reset, and then holds every later iteration in one block. */
static void test_autograd_memory__small_arena_consolidates(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  ks_tensor *xb = tu_uniform(&rng, 2, (int64_t[]){256, 256}, -1, 1); /* 256 KiB per copy */
  size_t mallocs = 0;
  for (int it = 0; it < 20; it++) {
    ks_var *x = ks_var_new(ctx, xb, 1);
    ks_var *y = ks_sum(ctx, ks_tanh(ctx, ks_mul(ctx, ks_relu(ctx, x), x)), KS_AXIS_ALL);
    TU_OK(ks_backward(ctx, y));
    ks_ctx_reset(ctx);
    ks_arena_stats s = ks_arena_get_stats(ks_ctx_arena(ctx));
    if (it == 1) mallocs = s.mallocs;
    if (it > 1) assert_int_equal(s.mallocs, mallocs);
    if (it > 0) assert_true(s.capacity >= s.high_water);
  }
  ks_tensor_free(xb);
  ks_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_autograd_memory__steady_state),
    cmocka_unit_test(test_autograd_memory__small_arena_consolidates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
