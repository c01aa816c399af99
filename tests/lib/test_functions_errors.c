/*
 * tests/lib/test_functions_errors.c — error cases of every function, as a
 * table: bad shapes and dtypes give NULL with KS_ESHAPE and a message naming
 * the function and both shapes; bad labels, ratios, axes give NULL with the
 * documented code; a NULL input gives NULL and leaves the last error alone.
 */
#include "testutil.h"

typedef struct err_case {
  const char *name;
  /* builds the failing call from fresh vars of the given shapes */
  ks_var *(*call)(ks_ctx *ctx, ks_var *a, ks_var *b, ks_var *c);
  int ndim[3];
  int64_t shape[3][3];
  ks_dtype dtype[3];
  int32_t label; /* value of every int32 element */
  int code;
  const char *msg[4]; /* substrings the message must contain */
} err_case;

static ks_var *c_linear(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_linear(x, a, b, c); }
static ks_var *c_linear_nob(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_linear(x, a, b, NULL); }
static ks_var *c_relu(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_relu(x, a); }
static ks_var *c_sigmoid(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_sigmoid(x, a); }
static ks_var *c_softmax2(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_softmax(x, a, 2); }
static ks_var *c_log_softmax(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_log_softmax(x, a); }
static ks_var *c_sce(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_softmax_cross_entropy(x, a, b, -1); }
static ks_var *c_mse(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_mean_squared_error(x, a, b); }
static ks_var *c_acc(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_accuracy(x, a, b, -1); }
static ks_var *c_dropout1(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_dropout(x, a, 1.0); }
static ks_var *c_dropout_neg(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_dropout(x, a, -0.1); }
static ks_var *c_add(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_add(x, a, b); }
static ks_var *c_sub(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_sub(x, a, b); }
static ks_var *c_mul(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_mul(x, a, b); }
static ks_var *c_scale(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_scale(x, a, 2.0); }
static ks_var *c_matmul(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_matmul(x, a, b, 0, 0); }
static ks_var *c_matmul_t(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_matmul(x, a, b, 1, 0); }
static ks_var *c_reshape(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) {
  return ks_reshape(x, a, 2, (int64_t[]){4, 2});
}
static ks_var *c_reshape2(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) {
  return ks_reshape(x, a, 2, (int64_t[]){-1, -1});
}
static ks_var *c_sum3(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_sum(x, a, 3); }
static ks_var *c_mean2(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_mean(x, a, 2); }
static ks_var *c_sum_m3(ks_ctx *x, ks_var *a, ks_var *b, ks_var *c) { return ks_sum(x, a, -3); }

#define F32 KS_F32
#define I32 KS_I32

static const err_case cases[] = {
  {"linear x/W", c_linear, {2, 2, 1}, {{2, 3}, {4, 5}, {4}}, {F32, F32, F32}, 0, KS_ESHAPE,
   {"ks_linear", "(2, 3)", "(4, 5)"}},
  {"linear b", c_linear, {2, 2, 1}, {{2, 3}, {4, 3}, {5}}, {F32, F32, F32}, 0, KS_ESHAPE,
   {"ks_linear", "(4, 3)", "(5,)"}},
  {"linear 1-d x", c_linear_nob, {1, 2, 0}, {{3}, {4, 3}}, {F32, F32}, 0, KS_ESHAPE,
   {"ks_linear", "(3,)", "(4, 3)"}},
  {"linear 3-d W", c_linear_nob, {2, 3, 0}, {{2, 3}, {4, 3, 1}}, {F32, F32}, 0, KS_ESHAPE,
   {"ks_linear", "(2, 3)", "(4, 3, 1)"}},
  {"linear int x", c_linear_nob, {2, 2, 0}, {{2, 3}, {4, 3}}, {I32, F32}, 0, KS_ESHAPE,
   {"ks_linear", "float32", "int32"}},
  {"relu int", c_relu, {2}, {{2, 3}}, {I32}, 0, KS_ESHAPE, {"ks_relu", "int32", "(2, 3)"}},
  {"sigmoid int", c_sigmoid, {1}, {{3}}, {I32}, 0, KS_ESHAPE, {"ks_sigmoid", "int32"}},
  {"softmax axis", c_softmax2, {2}, {{2, 3}}, {F32}, 0, KS_ESHAPE, {"ks_softmax", "axis 2", "(2, 3)"}},
  {"log_softmax 1-d", c_log_softmax, {1}, {{3}}, {F32}, 0, KS_ESHAPE, {"ks_log_softmax", "(3,)"}},
  {"sce N mismatch", c_sce, {2, 1}, {{2, 3}, {3}}, {F32, I32}, 0, KS_ESHAPE,
   {"ks_softmax_cross_entropy", "(2, 3)", "(3,)"}},
  {"sce 3-d x", c_sce, {3, 1}, {{2, 3, 1}, {2}}, {F32, I32}, 0, KS_ESHAPE,
   {"ks_softmax_cross_entropy", "(2, 3, 1)", "(2,)"}},
  {"sce float labels", c_sce, {2, 1}, {{2, 3}, {2}}, {F32, F32}, 0, KS_ESHAPE,
   {"ks_softmax_cross_entropy", "t must be int32"}},
  {"sce label too big", c_sce, {2, 1}, {{2, 3}, {2}}, {F32, I32}, 3, KS_EINVAL,
   {"ks_softmax_cross_entropy", "label 3", "[0, 3)"}},
  {"sce label -2", c_sce, {2, 1}, {{2, 3}, {2}}, {F32, I32}, -2, KS_EINVAL,
   {"ks_softmax_cross_entropy", "label -2", "ignore_label -1"}},
  {"sce zero classes", c_sce, {2, 1}, {{2, 0}, {2}}, {F32, I32}, 0, KS_EINVAL,
   {"ks_softmax_cross_entropy", "label 0"}},
  {"mse", c_mse, {2, 2}, {{2, 3}, {3, 2}}, {F32, F32}, 0, KS_ESHAPE,
   {"ks_mean_squared_error", "(2, 3)", "(3, 2)"}},
  {"accuracy", c_acc, {2, 1}, {{4, 3}, {3}}, {F32, I32}, 0, KS_ESHAPE, {"ks_accuracy", "(4, 3)", "(3,)"}},
  {"accuracy float t", c_acc, {2, 1}, {{4, 3}, {4}}, {F32, F32}, 0, KS_ESHAPE, {"ks_accuracy", "int32"}},
  {"dropout ratio 1", c_dropout1, {1}, {{3}}, {F32}, 0, KS_EINVAL, {"ks_dropout", "ratio"}},
  {"dropout ratio < 0", c_dropout_neg, {1}, {{3}}, {F32}, 0, KS_EINVAL, {"ks_dropout", "ratio"}},
  {"add", c_add, {2, 1}, {{2, 3}, {2}}, {F32, F32}, 0, KS_ESHAPE, {"ks_add", "(2, 3)", "(2,)"}},
  {"add b bigger", c_add, {1, 2}, {{3}, {2, 3}}, {F32, F32}, 0, KS_ESHAPE, {"ks_add", "(3,)", "(2, 3)"}},
  {"sub", c_sub, {2, 2}, {{2, 3}, {3, 3}}, {F32, F32}, 0, KS_ESHAPE, {"ks_sub", "(2, 3)", "(3, 3)"}},
  {"mul", c_mul, {2, 2}, {{2, 3}, {2, 2}}, {F32, F32}, 0, KS_ESHAPE, {"ks_mul", "(2, 3)", "(2, 2)"}},
  {"mul int", c_mul, {1, 1}, {{2}, {2}}, {F32, I32}, 0, KS_ESHAPE, {"ks_mul", "b must be float32"}},
  {"scale int", c_scale, {1}, {{2}}, {I32}, 0, KS_ESHAPE, {"ks_scale", "int32"}},
  {"matmul", c_matmul, {2, 2}, {{2, 3}, {4, 5}}, {F32, F32}, 0, KS_ESHAPE, {"ks_matmul", "(2, 3)", "(4, 5)"}},
  {"matmul trans_a", c_matmul_t, {2, 2}, {{2, 3}, {3, 5}}, {F32, F32}, 0, KS_ESHAPE,
   {"ks_matmul", "(2, 3)", "(3, 5)"}},
  {"matmul 1-d", c_matmul, {1, 2}, {{3}, {3, 5}}, {F32, F32}, 0, KS_ESHAPE, {"ks_matmul", "2-d"}},
  {"reshape size", c_reshape, {2}, {{2, 3}}, {F32}, 0, KS_ESHAPE, {"ks_reshape", "(2, 3)", "(4, 2)"}},
  {"reshape two -1", c_reshape2, {2}, {{2, 3}}, {F32}, 0, KS_EINVAL, {"ks_reshape", "-1"}},
  {"sum axis", c_sum3, {2}, {{2, 3}}, {F32}, 0, KS_ESHAPE, {"ks_sum", "axis 3", "(2, 3)"}},
  {"mean axis", c_mean2, {2}, {{2, 3}}, {F32}, 0, KS_ESHAPE, {"ks_mean", "axis 2", "(2, 3)"}},
  {"sum axis -3 of 2-d", c_sum_m3, {2}, {{2, 3}}, {F32}, 0, KS_ESHAPE, {"ks_sum", "axis -3", "(2, 3)", "KS_AXIS_ALL"}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static int n_inputs(const err_case *c) {
  int n = 0;
  while (n < 3 && c->ndim[n]) n++;
  return n;
}

static void test_errors__table(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const err_case *c = &cases[ci];
    ks_var *v[3] = {0};
    for (int i = 0; i < n_inputs(c); i++) {
      ks_tensor *t = ks_ctx_tensor_zeros(ctx, c->dtype[i], c->ndim[i], c->shape[i]);
      assert_non_null(t);
      if (t->dtype == KS_I32)
        for (int64_t k = 0; k < t->size; k++) ks_tensor_i32(t)[k] = c->label;
      v[i] = ks_var_new(ctx, t, 1);
    }
    ks_error_clear();
    ks_var *y = c->call(ctx, v[0], v[1], v[2]);
    if (y) fail_msg("%s: expected failure, got a result", c->name);
    if (ks_error_last_code() != c->code)
      fail_msg("%s: expected %s, got %s: %s", c->name, ks_status_name(c->code),
               ks_status_name(ks_error_last_code()), ks_error_last());
    for (int k = 0; k < 4 && c->msg[k]; k++)
      if (!strstr(ks_error_last(), c->msg[k]))
        fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, ks_error_last(), c->msg[k]);
    ks_ctx_reset(ctx);
  }
  ks_ctx_free(ctx);
}

/* A NULL input returns NULL and leaves the previous error in place, so a
 * forward pass of nested calls is checked once at the end. */
static void test_errors__null_propagates(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){1, 2}, (float[]){1, 2}, 1);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){1}, (int32_t[]){0}, 0);
  ks_error_set(KS_EIO, "sentinel");
  assert_null(ks_linear(ctx, NULL, x, NULL));
  assert_null(ks_linear(ctx, x, NULL, NULL));
  assert_null(ks_relu(ctx, NULL));
  assert_null(ks_leaky_relu(ctx, NULL, 0.2));
  assert_null(ks_sigmoid(ctx, NULL));
  assert_null(ks_tanh(ctx, NULL));
  assert_null(ks_softmax(ctx, NULL, 1));
  assert_null(ks_log_softmax(ctx, NULL));
  assert_null(ks_softmax_cross_entropy(ctx, NULL, t, -1));
  assert_null(ks_softmax_cross_entropy(ctx, x, NULL, -1));
  assert_null(ks_mean_squared_error(ctx, x, NULL));
  assert_null(ks_mean_squared_error(ctx, NULL, x));
  assert_null(ks_accuracy(ctx, NULL, t, -1));
  assert_null(ks_accuracy(ctx, x, NULL, -1));
  assert_null(ks_dropout(ctx, NULL, 0.5));
  assert_null(ks_add(ctx, x, NULL));
  assert_null(ks_sub(ctx, NULL, x));
  assert_null(ks_mul(ctx, NULL, NULL));
  assert_null(ks_scale(ctx, NULL, 2.0));
  assert_null(ks_matmul(ctx, NULL, x, 0, 0));
  assert_null(ks_reshape(ctx, NULL, 1, (int64_t[]){2}));
  assert_null(ks_sum(ctx, NULL, KS_AXIS_ALL));
  assert_null(ks_mean(ctx, NULL, 0));
  /* nested: the failure inside stays the reported one */
  assert_null(ks_sum(ctx, ks_relu(ctx, ks_linear(ctx, NULL, x, NULL)), KS_AXIS_ALL));
  tu_assert_error(KS_EIO, "sentinel");
  ks_error_set(KS_EIO, "sentinel");
  ks_var *bad = ks_add(ctx, x, ks_var_from_data(ctx, KS_F32, 1, (int64_t[]){3}, (float[]){1, 2, 3}, 0));
  assert_null(ks_sum(ctx, ks_relu(ctx, bad), KS_AXIS_ALL));
  tu_assert_error(KS_ESHAPE, "ks_add");
  /* ks_backward on the NULL result reports it, quoting the forward pass's
   * reason intact (the message was formatted into the buffer it quoted) */
  char reason[1024];
  snprintf(reason, sizeof reason, "%s", ks_error_last());
  assert_non_null(strstr(reason, "ks_add"));
  assert_int_equal(ks_backward(ctx, NULL), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "ks_backward: loss is NULL", reason);
  /* any message may wrap the previous one */
  ks_error_set(KS_EIO, "first reason: %s", "disk full");
  ks_error_set(KS_EFORMAT, "while saving: %s", ks_error_last());
  assert_string_equal(ks_error_last(), "while saving: first reason: disk full");
  ks_ctx_free(ctx);
}

/* Functions reach kernels only through the input's backend table: a device
 * without a table is reported, not crashed on (no CUDA table is built in). */
static void test_errors__device_without_backend(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_tensor *t = ks_ctx_tensor_zeros(ctx, KS_F32, 2, (int64_t[]){2, 3});
  t->device = (ks_device){KS_DEVICE_CUDA, 0};
  ks_var *x = ks_var_new(ctx, t, 1);
  ks_var *l = ks_var_new(ctx, ks_ctx_tensor_zeros(ctx, KS_I32, 1, (int64_t[]){2}), 0);
  assert_null(ks_relu(ctx, x));
  tu_assert_error(KS_EUNSUPPORTED, "ks_relu", "device");
  assert_null(ks_linear(ctx, x, x, NULL));
  tu_assert_error(KS_EUNSUPPORTED, "ks_linear");
  assert_null(ks_softmax_cross_entropy(ctx, x, l, -1));
  tu_assert_error(KS_EUNSUPPORTED, "ks_softmax_cross_entropy");
  assert_null(ks_sum(ctx, x, KS_AXIS_ALL));
  tu_assert_error(KS_EUNSUPPORTED, "ks_sum");
  ks_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_errors__table),
    cmocka_unit_test(test_errors__null_propagates),
    cmocka_unit_test(test_errors__device_without_backend),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
