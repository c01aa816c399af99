/*
 * tests/lib/test_functions_gradcheck.c — the gradient check utility itself:
 * it passes a correct user-defined op, catches a wrong backward and names the
 * input and element, catches a backward that leaves a gradient out, and
 * reports bad arguments.
 */
#include "testutil.h"
#include "kusari/gradient_check.h"

/* ---- a user-defined op y = x^2 * k with a configurable backward ---------------- */

enum { BW_RIGHT, BW_WRONG_ONE_ELEMENT, BW_FORGETS_INPUT1 };

/* in[0] = x, in[1] = k (same shape); iparam[0] = mode */
static int sq_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const float *x = ks_tensor_f32(node->in[0]->data), *k = ks_tensor_f32(node->in[1]->data);
  const float *g = ks_tensor_f32(gy[0]);
  const int64_t n = gy[0]->size;
  if (gx[0]) {
    float *o = ks_tensor_f32(gx[0]);
    for (int64_t i = 0; i < n; i++) o[i] = 2.0f * x[i] * k[i] * g[i];
    if (node->iparam[0] == BW_WRONG_ONE_ELEMENT) o[n - 1] *= 1.1f;
  }
  if (gx[1]) {
    float *o = ks_tensor_f32(gx[1]);
    for (int64_t i = 0; i < n; i++)
      o[i] = node->iparam[0] == BW_FORGETS_INPUT1 ? 0.0f : x[i] * x[i] * g[i];
  }
  return KS_OK;
}
static const ks_fn_type sq_type = {"test_square_times_k", sq_backward};

static ks_var *sq_apply(ks_ctx *ctx, ks_var *const *in, int n_in, void *user) {
  ks_tensor *y = ks_ctx_tensor_like(ctx, in[0]->data);
  if (!y) return NULL;
  const float *x = ks_tensor_f32(in[0]->data), *k = ks_tensor_f32(in[1]->data);
  for (int64_t i = 0; i < y->size; i++) ks_tensor_f32(y)[i] = x[i] * x[i] * k[i];
  ks_node *node = ks_node_new(ctx, &sq_type, 2, in);
  if (node) node->iparam[0] = *(const int *)user;
  return ks_node_output(ctx, node, y);
}

static void inputs(ks_tensor **x) {
  ks_rng rng;
  ks_rng_seed(&rng, 3);
  x[0] = tu_uniform(&rng, 2, (int64_t[]){2, 3}, -1, 1);
  x[1] = tu_uniform(&rng, 2, (int64_t[]){2, 3}, 0.5, 1.5);
}

static void test_gradcheck__passes_right_backward(void **state) {
  ks_tensor *x[2];
  inputs(x);
  int mode = BW_RIGHT;
  TU_OK(ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, NULL, NULL));
  /* and with an explicit gy */
  ks_tensor *gy = tu_f32(2, (int64_t[]){2, 3}, (float[]){1, -2, 3, 0.5f, 0, 1});
  TU_OK(ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, gy, NULL));
  ks_tensor_free(gy);
  ks_tensor_free(x[0]);
  ks_tensor_free(x[1]);
}

static void test_gradcheck__catches_wrong_element(void **state) {
  ks_tensor *x[2];
  inputs(x);
  int mode = BW_WRONG_ONE_ELEMENT;
  ks_tensor *gy = tu_f32(2, (int64_t[]){2, 3}, (float[]){1, 1, 1, 1, 1, 1});
  int rc = ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, gy, NULL);
  assert_int_equal(rc, KS_EINVAL);
  tu_assert_error(KS_EINVAL, "input 0", "element 5", "analytic", "numeric");
  ks_tensor_free(gy);
  ks_tensor_free(x[0]);
  ks_tensor_free(x[1]);
}

static void test_gradcheck__catches_missing_gradient(void **state) {
  ks_tensor *x[2];
  inputs(x);
  int mode = BW_FORGETS_INPUT1;
  int rc = ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, NULL, NULL);
  assert_int_equal(rc, KS_EINVAL);
  tu_assert_error(KS_EINVAL, "input 1", "element 0");
  /* skipping input 1 makes it pass */
  ks_check_opts o = KS_CHECK_DEFAULTS;
  o.no_grad = (const int[]){0, 1};
  TU_OK(ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, NULL, &o));
  ks_tensor_free(x[0]);
  ks_tensor_free(x[1]);
}

static void test_gradcheck__bad_arguments(void **state) {
  ks_tensor *x[2];
  inputs(x);
  int mode = BW_RIGHT;
  ks_tensor *gy = tu_f32(1, (int64_t[]){2}, (float[]){1, 1});
  assert_int_equal(ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, gy, NULL),
                   KS_ESHAPE);
  tu_assert_error(KS_ESHAPE, "gy (2,)", "(2, 3)");
  assert_int_equal(ks_check_backward(NULL, &mode, 2, (const ks_tensor *const *)x, NULL, NULL),
                   KS_EINVAL);
  assert_int_equal(ks_check_backward(sq_apply, &mode, 0, (const ks_tensor *const *)x, NULL, NULL),
                   KS_EINVAL);
  ks_check_opts o = KS_CHECK_DEFAULTS;
  o.eps = 0;
  assert_int_equal(ks_check_backward(sq_apply, &mode, 2, (const ks_tensor *const *)x, NULL, &o),
                   KS_EINVAL);
  ks_tensor_free(gy);
  ks_tensor_free(x[0]);
  ks_tensor_free(x[1]);
}

/* a forward that fails: its error comes back unchanged */
static ks_var *failing_apply(ks_ctx *ctx, ks_var *const *in, int n_in, void *user) {
  return ks_add(ctx, in[0], in[1]); /* (2, 3) + (4,) does not broadcast */
}

static void test_gradcheck__forward_error_propagates(void **state) {
  ks_tensor *x[2];
  ks_rng rng;
  ks_rng_seed(&rng, 1);
  x[0] = tu_uniform(&rng, 2, (int64_t[]){2, 3}, -1, 1);
  x[1] = tu_uniform(&rng, 1, (int64_t[]){4}, -1, 1);
  assert_int_equal(ks_check_backward(failing_apply, NULL, 2, (const ks_tensor *const *)x, NULL, NULL),
                   KS_ESHAPE);
  tu_assert_error(KS_ESHAPE, "ks_add");
  ks_tensor_free(x[0]);
  ks_tensor_free(x[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_gradcheck__passes_right_backward),
    cmocka_unit_test(test_gradcheck__catches_wrong_element),
    cmocka_unit_test(test_gradcheck__catches_missing_gradient),
    cmocka_unit_test(test_gradcheck__bad_arguments),
    cmocka_unit_test(test_gradcheck__forward_error_propagates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
