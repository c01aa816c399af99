/*
 * tests/lib/test_link.c — links: Chain paths and Chainer's namedparams
 * order, lazy Linear, Linear forward/backward against a double reference,
 * grads (cleargrads / zerograds), packing into mirrored flat blocks,
 * copyparams, Sequential, and npz save/load of a link including failures
 * that must name the key and leave the parameters unchanged.
 */
#include "testutil.h"
#include "kusari/link.h"
#include "kusari/serializers.h"

#include <stdlib.h>
#include <unistd.h>

static ks_linear_opts seeded(uint64_t seed) {
  ks_linear_opts o = {0};
  o.seed = seed;
  return o;
}

/* model: children added out of order: l2, l1 (lazy), block/fc */
static ks_link *make_model(void) {
  ks_link *m = ks_chain_new();
  assert_non_null(m);
  ks_linear_opts o2 = seeded(2), o1 = seeded(1), o3 = seeded(3);
  TU_OK(ks_link_add_child(m, "l2", ks_linear_link_new(5, 3, &o2)));
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(0, 5, &o1)));
  ks_link *block = ks_chain_new();
  TU_OK(ks_link_add_child(block, "fc", ks_linear_link_new(3, 2, &o3)));
  TU_OK(ks_link_add_child(m, "block", block));
  return m;
}

static void test_link__namedparams_order(void **state) {
  (void)state;
  ks_link *m = make_model();
  const char *want[] = {"block/fc/W", "block/fc/b", "l1/W", "l1/b", "l2/W", "l2/b"};
  assert_int_equal(ks_link_num_params(m), 6);
  for (int i = 0; i < 6; i++) {
    const char *path = NULL;
    ks_var *v = ks_link_param_at(m, i, &path);
    assert_non_null(v);
    assert_string_equal(path, want[i]);
    assert_ptr_equal(ks_link_param(m, want[i]), v);
    assert_true(v->is_param);
  }
  assert_null(ks_link_param_at(m, 6, NULL));
  assert_null(ks_link_param(m, "l3/W"));
  /* own parameters come before children, sorted by name ('W' < 'b' < 'z') */
  ks_link *c = ks_chain_new();
  TU_OK(ks_link_add_child(c, "a", ks_linear_link_new(2, 2, NULL)));
  assert_non_null(ks_link_add_param(c, "z", 1, (int64_t[]){3}, NULL, NULL));
  assert_non_null(ks_link_add_param(c, "W", 1, (int64_t[]){3}, NULL, NULL));
  const char *want2[] = {"W", "z", "a/W", "a/b"};
  for (int i = 0; i < 4; i++) {
    const char *path;
    assert_non_null(ks_link_param_at(c, i, &path));
    assert_string_equal(path, want2[i]);
  }
  /* the l1 child itself sees its paths without prefix */
  const char *p0;
  ks_link_param_at(ks_link_child(m, "l1"), 0, &p0);
  assert_string_equal(p0, "W");
  /* uninitialized l1/W is counted by num_params but not count_params */
  assert_int_equal(ks_link_count_params(m), 3 * 2 + 2 + 5 + 3 * 5 + 3);
  ks_link_free(c);
  ks_link_free(m);
}

static void test_link__add_child_errors(void **state) {
  (void)state;
  ks_link *m = ks_chain_new();
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(2, 2, NULL)));
  assert_int_equal(ks_link_add_child(m, "l1", ks_linear_link_new(2, 2, NULL)), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "l1");
  assert_int_equal(ks_link_add_child(m, "a/b", ks_linear_link_new(2, 2, NULL)), KS_EINVAL);
  /* a failed constructor's error passes through */
  assert_int_equal(ks_link_add_child(m, "bad", ks_linear_link_new(2, -1, NULL)), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "out_size");
  assert_int_equal(ks_link_num_children(m), 1);
  ks_link_free(m);
  ks_link_free(NULL);
}

/* y = x W^T + b in double */
static void ref_linear(const float *x, const float *W, const float *b, int64_t n, int64_t in,
                       int64_t out, double *y) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t o = 0; o < out; o++) {
      double s = b ? b[o] : 0.0;
      for (int64_t k = 0; k < in; k++) s += (double)x[i * in + k] * W[o * in + k];
      y[i * out + o] = s;
    }
}

static ks_var *mlp_forward_l1(ks_ctx *ctx, ks_link *self, ks_var *x) {
  return ks_link_forward(ctx, ks_link_child(self, "l1"), x);
}

static void test_link__lazy_linear(void **state) {
  (void)state;
  ks_linear_opts o = seeded(99);
  ks_link *lazy = ks_linear_link_new(0, 5, &o);
  ks_link *eager = ks_linear_link_new(6, 5, &o);
  assert_int_equal(ks_linear_link_in_size(lazy), 0);
  assert_false(ks_link_param_is_initialized(ks_link_param(lazy, "W")));
  assert_true(ks_link_param_is_initialized(ks_link_param(lazy, "b")));

  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  ks_tensor *xt = tu_uniform(&rng, 3, (int64_t[]){4, 2, 3}, -1, 1);
  ks_var *x = ks_var_new(ctx, xt, 0);
  ks_var *y = ks_link_forward(ctx, lazy, x);
  TU_NONNULL(y);
  assert_int_equal(ks_linear_link_in_size(lazy), 6);
  ks_var *W = ks_link_param(lazy, "W");
  assert_int_equal(W->data->ndim, 2);
  assert_int_equal(W->data->shape[0], 5);
  assert_int_equal(W->data->shape[1], 6);
  /* same seed: lazy init equals eager init */
  assert_memory_equal(W->data->data, ks_link_param(eager, "W")->data->data, 30 * sizeof(float));
  /* LeCunNormal-ish scale and zero bias */
  const float *b = ks_tensor_f32(ks_link_param(lazy, "b")->data);
  for (int i = 0; i < 5; i++) assert_true(b[i] == 0.0f);
  /* forward values */
  assert_int_equal(y->data->shape[0], 4);
  assert_int_equal(y->data->shape[1], 5);
  double want[20];
  ref_linear(ks_tensor_f32(xt), ks_tensor_f32(W->data), b, 4, 6, 5, want);
  tu_assert_close(ks_tensor_f32(y->data), want, 20, 1e-5, 1e-5, "linear forward");
  /* a second input with another size fails instead of re-inferring */
  ks_tensor *x2t = tu_uniform(&rng, 2, (int64_t[]){4, 7}, -1, 1);
  assert_null(ks_link_forward(ctx, lazy, ks_var_new(ctx, x2t, 0)));
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_tensor_free(x2t);
  ks_link_free(lazy);
  ks_link_free(eager);
}

static void test_link__nobias_and_rng_seeds(void **state) {
  (void)state;
  ks_linear_opts o = {0};
  o.nobias = 1;
  ks_link *l = ks_linear_link_new(3, 4, &o);
  assert_int_equal(ks_link_num_params(l), 1);
  assert_null(ks_link_param(l, "b"));
  ks_link_free(l);
  /* links drawing their seeds from one rng differ from each other and are
   * reproducible */
  ks_rng r1, r2;
  ks_rng_seed(&r1, 10);
  ks_rng_seed(&r2, 10);
  ks_linear_opts a = {0}, b = {0};
  a.rng = &r1;
  b.rng = &r2;
  ks_link *a1 = ks_linear_link_new(8, 8, &a), *a2 = ks_linear_link_new(8, 8, &a);
  ks_link *b1 = ks_linear_link_new(8, 8, &b);
  size_t nb = 64 * sizeof(float);
  assert_memory_equal(ks_link_param(a1, "W")->data->data, ks_link_param(b1, "W")->data->data, nb);
  assert_true(memcmp(ks_link_param(a1, "W")->data->data, ks_link_param(a2, "W")->data->data, nb) != 0);
  ks_link_free(a1);
  ks_link_free(a2);
  ks_link_free(b1);
}

/* loss = sum(l2(relu(l1(x)))) through a chain, returns the loss var */
static ks_var *run_mlp(ks_ctx *ctx, ks_link *m, ks_tensor *xt) {
  ks_var *x = ks_var_new(ctx, xt, 0);
  ks_var *h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(m, "l1"), x));
  return ks_sum(ctx, ks_link_forward(ctx, ks_link_child(m, "l2"), h), KS_AXIS_ALL);
}

static void test_link__grads_and_packing(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 11);
  ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){3, 4}, -1, 1);

  /* packing before the lazy layer saw data fails, naming it */
  assert_int_equal(ks_link_pack(m), KS_ESTATE);
  tu_assert_error(KS_ESTATE, "l1/W");

  ks_var *loss = run_mlp(ctx, m, xt);
  TU_NONNULL(loss);
  TU_OK(ks_backward(ctx, loss));
  ks_var *W1 = ks_link_param(m, "l1/W"), *W2 = ks_link_param(m, "l2/W");
  assert_true(W1->grad_valid && W2->grad_valid);
  assert_false(ks_link_param(m, "block/fc/W")->grad_valid); /* unused */
  /* keep copies of values and grads, then pack */
  int n = ks_link_num_params(m);
  float *saved[6], *savedg[6];
  for (int i = 0; i < n; i++) {
    ks_var *v = ks_link_param_at(m, i, NULL);
    saved[i] = malloc(ks_tensor_nbytes(v->data));
    savedg[i] = malloc(ks_tensor_nbytes(v->data));
    memcpy(saved[i], v->data->data, ks_tensor_nbytes(v->data));
    memcpy(savedg[i], v->grad->data, ks_tensor_nbytes(v->data));
  }
  assert_false(ks_link_is_packed(m));
  TU_OK(ks_link_pack(m));
  assert_true(ks_link_is_packed(m));
  int64_t size = 0;
  float *data = ks_link_pack_data(m, &size), *grad = ks_link_pack_grad(m, NULL);
  assert_non_null(data);
  int64_t end = 0;
  for (int i = 0; i < n; i++) {
    ks_var *v = ks_link_param_at(m, i, NULL);
    int64_t off = ks_link_pack_offset(m, i);
    assert_true(off % 16 == 0 && off >= end);
    for (int64_t j = end; j < off; j++) assert_true(data[j] == 0.0f && grad[j] == 0.0f); /* padding */
    end = off + v->data->size;
    assert_ptr_equal(v->data->data, data + off);
    assert_ptr_equal(v->grad->data, grad + off);
    assert_memory_equal(v->data->data, saved[i], ks_tensor_nbytes(v->data));
    if (v->grad_valid) assert_memory_equal(v->grad->data, savedg[i], ks_tensor_nbytes(v->data));
    free(saved[i]);
    free(savedg[i]);
  }
  assert_true(size >= end && size - end < 16);

  /* cleargrads / zerograds */
  ks_link_cleargrads(m);
  for (int i = 0; i < n; i++) assert_false(ks_link_param_at(m, i, NULL)->grad_valid);
  for (int64_t j = 0; j < size; j++) grad[j] = 1.0f;
  ks_link_zerograds(m);
  for (int64_t j = 0; j < size; j++) assert_true(grad[j] == 0.0f);
  for (int i = 0; i < n; i++) assert_true(ks_link_param_at(m, i, NULL)->grad_valid);

  /* backward after packing writes into the grad block; two backward passes
   * without clearing accumulate (2x) */
  ks_ctx_reset(ctx);
  ks_link_cleargrads(m);
  TU_OK(ks_backward(ctx, run_mlp(ctx, m, xt)));
  int64_t off2 = ks_link_pack_offset(m, 4); /* l2/W */
  float g_once = grad[off2];
  assert_true(g_once != 0.0f);
  TU_OK(ks_backward(ctx, run_mlp(ctx, m, xt)));
  assert_true(fabsf(grad[off2] - 2 * g_once) <= 1e-6f * fabsf(g_once));

  /* repacking keeps everything */
  float before = W2->data->data ? ks_tensor_f32(W2->data)[1] : 0;
  TU_OK(ks_link_pack(m));
  assert_true(ks_tensor_f32(W2->data)[1] == before);
  /* packing a subtree inside a packed tree, then the root again */
  TU_OK(ks_link_pack(ks_link_child(m, "block")));
  assert_false(ks_link_is_packed(m));
  TU_OK(ks_link_pack(m));
  assert_true(ks_link_is_packed(m));
  assert_true(ks_tensor_f32(W2->data)[1] == before);

  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_link_free(m);
}

static void test_link__copyparams(void **state) {
  (void)state;
  ks_link *a = make_model(), *b = make_model();
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 3);
  ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){2, 7}, -1, 1);
  TU_NONNULL(run_mlp(ctx, a, xt)); /* initializes a's l1 with in=7 */
  float *w = ks_tensor_f32(ks_link_param(a, "l2/W")->data);
  w[0] = 42.0f;
  TU_OK(ks_link_copyparams(b, a));
  assert_true(ks_tensor_f32(ks_link_param(b, "l2/W")->data)[0] == 42.0f);
  assert_int_equal(ks_link_param(b, "l1/W")->data->shape[1], 7);
  /* differing trees fail by name and leave dst unchanged */
  ks_link *c = ks_chain_new();
  TU_OK(ks_link_add_child(c, "l2", ks_linear_link_new(5, 4, NULL)));
  float before = ks_tensor_f32(ks_link_param(c, "l2/W")->data)[0];
  assert_int_equal(ks_link_copyparams(c, a), KS_ESHAPE);
  tu_assert_error(KS_ESHAPE, "l2/W", "(3, 5)", "(4, 5)");
  assert_true(ks_tensor_f32(ks_link_param(c, "l2/W")->data)[0] == before);
  assert_int_equal(ks_link_copyparams(a, c), KS_ENOTFOUND);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_link_free(a);
  ks_link_free(b);
  ks_link_free(c);
}

static void test_link__sequential(void **state) {
  (void)state;
  ks_link *s = ks_sequential_new();
  ks_linear_opts o1 = seeded(1), o2 = seeded(2);
  TU_OK(ks_sequential_append(s, ks_linear_link_new(0, 4, &o1)));
  TU_OK(ks_sequential_append_fn(s, ks_relu));
  TU_OK(ks_sequential_append(s, ks_linear_link_new(4, 3, &o2)));
  const char *want[] = {"0/W", "0/b", "1/W", "1/b"};
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 8);
  ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){2, 5}, -1, 1);
  ks_var *y = ks_link_forward(ctx, s, ks_var_new(ctx, xt, 0));
  TU_NONNULL(y);
  for (int i = 0; i < 4; i++) {
    const char *p;
    assert_non_null(ks_link_param_at(s, i, &p));
    assert_string_equal(p, want[i]);
  }
  /* reference: relu(x W0^T + b0) W1^T + b1 */
  double h[8], out[6];
  ks_var *W0 = ks_link_param(s, "0/W"), *b0 = ks_link_param(s, "0/b");
  ks_var *W1 = ks_link_param(s, "1/W"), *b1 = ks_link_param(s, "1/b");
  ref_linear(ks_tensor_f32(xt), ks_tensor_f32(W0->data), ks_tensor_f32(b0->data), 2, 5, 4, h);
  float hf[8];
  for (int i = 0; i < 8; i++) hf[i] = (float)(h[i] > 0 ? h[i] : 0);
  ref_linear(hf, ks_tensor_f32(W1->data), ks_tensor_f32(b1->data), 2, 4, 3, out);
  tu_assert_close(ks_tensor_f32(y->data), out, 6, 1e-5, 1e-5, "sequential forward");
  /* a plain chain has no forward */
  ks_link *c = ks_chain_new();
  assert_null(ks_link_forward(ctx, c, ks_var_new(ctx, xt, 0)));
  tu_assert_error(KS_EUNSUPPORTED, "no forward");
  ks_link_free(c);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_link_free(s);
}

static void test_link__classifier(void **state) {
  (void)state;
  ks_link *mlp = ks_chain_new();
  ks_linear_opts o = seeded(4);
  TU_OK(ks_link_add_child(mlp, "l1", ks_linear_link_new(3, 4, &o)));
  ks_link_set_forward(mlp, mlp_forward_l1, NULL);
  ks_link *clf = ks_classifier_new(mlp);
  TU_NONNULL(clf);
  const char *p;
  assert_non_null(ks_link_param_at(clf, 0, &p));
  assert_string_equal(p, "predictor/l1/W");
  ks_ctx *ctx = ks_ctx_new();
  float xs[6] = {1, 2, 3, -1, 0, 1};
  int32_t ts[2] = {1, 3};
  ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){2, 3}, xs, 0);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, ts, 0);
  ks_var *y = NULL, *acc = NULL;
  ks_var *loss = ks_classifier_forward(ctx, clf, x, t, &y, &acc);
  TU_NONNULL(loss);
  assert_int_equal(y->data->shape[1], 4);
  /* reference: mean of logsumexp(y_i) - y_i[t_i] */
  double want = 0;
  const float *yd = ks_tensor_f32(y->data);
  for (int i = 0; i < 2; i++) {
    double mx = -1e30, s = 0;
    for (int c = 0; c < 4; c++) mx = fmax(mx, yd[i * 4 + c]);
    for (int c = 0; c < 4; c++) s += exp(yd[i * 4 + c] - mx);
    want += (mx + log(s) - yd[i * 4 + ts[i]]) / 2;
  }
  assert_true(fabs(ks_tensor_f32(loss->data)[0] - want) < 1e-5);
  TU_OK(ks_backward(ctx, loss));
  assert_true(ks_link_param(clf, "predictor/l1/W")->grad_valid);
  assert_null(ks_classifier_forward(ctx, mlp, x, t, NULL, NULL)); /* not a Classifier */
  ks_ctx_free(ctx);
  ks_link_free(clf);
}

static ks_var *forward_w(ks_ctx *ctx, ks_link *self, ks_var *x) {
  return ks_linear(ctx, x, ks_link_param(self, "W"), NULL);
}

/* The case: W = I, x = I, t = [0, -1]. Chainer 7.8.1's L.Classifier
 * reports accuracy 0.5 (F.accuracy's default ignore_label None: -1 is a miss)
 * and loss log(1 + e^-1) (softmax_cross_entropy ignores -1: sample 0 alone,
 * logits (1, 0), label 0). Both by hand. */
static void test_link__classifier_accuracy_counts_ignored_label(void **state) {
  (void)state;
  ks_link *net = ks_chain_new();
  ks_var *W = ks_link_add_param(net, "W", 2, (int64_t[]){2, 2}, NULL, NULL);
  assert_non_null(W);
  memcpy(ks_tensor_f32(W->data), (float[]){1, 0, 0, 1}, sizeof(float) * 4);
  ks_link_set_forward(net, forward_w, NULL);
  ks_link *clf = ks_classifier_new(net);
  TU_NONNULL(clf);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){2, 2}, (float[]){1, 0, 0, 1}, 0);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, (int32_t[]){0, -1}, 0);
  ks_var *acc = NULL;
  ks_var *loss = ks_classifier_forward(ctx, clf, x, t, NULL, &acc);
  TU_NONNULL(loss);
  assert_float_equal(ks_tensor_f32(acc->data)[0], 0.5, 1e-7);
  assert_float_equal(ks_tensor_f32(loss->data)[0], log1p(exp(-1.0)), 1e-6);
  /* the Trainer's lossfun reports the same */
  ks_reporter *rep = ks_reporter_new();
  TU_NONNULL(rep);
  ks_var *in[2] = {x, t};
  TU_NONNULL(ks_classifier_lossfun(ctx, clf, in, 2, rep, NULL));
  double v;
  TU_OK(ks_reporter_get(rep, "accuracy", &v));
  assert_float_equal(v, 0.5, 1e-7);
  ks_reporter_free(rep);
  ks_ctx_free(ctx);
  ks_link_free(clf);
}

/* ---- npz -------------------------------------------------------------------------- */

static char *g_dir;

static int setup_dir(void **state) {
  (void)state;
  static char dir[512];
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kusari-link-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(dir)) return -1;
  g_dir = dir;
  return 0;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void snapshot(ks_link *m, float **out, int *n) {
  *n = ks_link_num_params(m);
  for (int i = 0; i < *n; i++) {
    ks_var *v = ks_link_param_at(m, i, NULL);
    out[i] = malloc(ks_tensor_nbytes(v->data) + 1);
    if (ks_link_param_is_initialized(v)) memcpy(out[i], v->data->data, ks_tensor_nbytes(v->data));
  }
}

static void assert_unchanged(ks_link *m, float **snap, int n) {
  for (int i = 0; i < n; i++) {
    ks_var *v = ks_link_param_at(m, i, NULL);
    if (ks_link_param_is_initialized(v)) assert_memory_equal(v->data->data, snap[i], ks_tensor_nbytes(v->data));
    free(snap[i]);
  }
}

static void test_link__npz_roundtrip_and_keys(void **state) {
  (void)state;
  char path[600];
  snprintf(path, sizeof path, "%s/model.npz", g_dir);
  ks_link *m = make_model();
  /* saving with an uninitialized lazy parameter fails by name */
  assert_int_equal(ks_save_npz(path, m), KS_ESTATE);
  tu_assert_error(KS_ESTATE, "l1/W");
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 4);
  ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){2, 7}, -1, 1);
  TU_NONNULL(run_mlp(ctx, m, xt));
  TU_OK(ks_save_npz(path, m));

  /* keys exactly as Chainer writes them */
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, path));
  assert_int_equal(ks_npz_reader_num_keys(r), 6);
  const char *want[] = {"block/fc/W", "block/fc/b", "l1/W", "l1/b", "l2/W", "l2/b"};
  for (int i = 0; i < 6; i++) {
    ks_npz_info in;
    TU_OK(ks_npz_reader_info(r, want[i], &in));
    assert_int_equal(in.dtype, KS_NPZ_F4);
  }
  ks_npz_reader_close(r);

  /* load into a fresh model whose l1 is still lazy: takes the file's shape */
  ks_link *m2 = make_model();
  TU_OK(ks_load_npz(path, m2));
  for (int i = 0; i < 6; i++) {
    ks_var *a = ks_link_param(m, want[i]), *b = ks_link_param(m2, want[i]);
    assert_true(ks_tensor_same_shape(a->data, b->data));
    assert_memory_equal(a->data->data, b->data->data, ks_tensor_nbytes(a->data));
  }
  assert_int_equal(ks_linear_link_in_size(ks_link_child(m2, "l1")), 7);
  /* packed targets load too */
  TU_OK(ks_link_pack(m2));
  ks_tensor_f32(ks_link_param(m2, "l2/b")->data)[0] = 5.0f;
  TU_OK(ks_load_npz(path, m2));
  assert_true(ks_tensor_f32(ks_link_param(m2, "l2/b")->data)[0] == ks_tensor_f32(ks_link_param(m, "l2/b")->data)[0]);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_link_free(m);
  ks_link_free(m2);
}

static void test_link__npz_load_failures_leave_params(void **state) {
  (void)state;
  char path[600];
  snprintf(path, sizeof path, "%s/partial.npz", g_dir);
  /* a file with l1 and l2 but no block (missing keys), and l2/W of another
   * shape in a second file */
  ks_link *src = ks_chain_new();
  ks_linear_opts o = seeded(77);
  TU_OK(ks_link_add_child(src, "l1", ks_linear_link_new(7, 5, &o)));
  TU_OK(ks_link_add_child(src, "l2", ks_linear_link_new(5, 3, &o)));
  TU_OK(ks_save_npz(path, src));

  ks_link *m = make_model();
  float *snap[8];
  int n;
  snapshot(m, snap, &n);
  assert_int_equal(ks_load_npz(path, m), KS_ENOTFOUND);
  tu_assert_error(KS_ENOTFOUND, "block/fc/W");
  assert_unchanged(m, snap, n);
  assert_false(ks_link_param_is_initialized(ks_link_param(m, "l1/W"))); /* still lazy */

  /* wrong shape: l2/W is (4, 5) in the file; l1 (lazy) would load fine but
   * must not be touched either */
  char path2[600];
  snprintf(path2, sizeof path2, "%s/shape.npz", g_dir);
  ks_link *bad = make_model();
  ks_link *bad_l2 = ks_linear_link_new(5, 4, &o);
  ks_link *src2 = ks_chain_new();
  TU_OK(ks_link_add_child(src2, "l1", ks_linear_link_new(7, 5, &o)));
  TU_OK(ks_link_add_child(src2, "l2", bad_l2));
  ks_link *blk = ks_chain_new();
  TU_OK(ks_link_add_child(blk, "fc", ks_linear_link_new(3, 2, &o)));
  TU_OK(ks_link_add_child(src2, "block", blk));
  TU_OK(ks_save_npz(path2, src2));
  snapshot(m, snap, &n);
  assert_int_equal(ks_load_npz(path2, m), KS_ESHAPE);
  tu_assert_error(KS_ESHAPE, "l2/W", "(4, 5)", "(3, 5)");
  assert_unchanged(m, snap, n);
  assert_false(ks_link_param_is_initialized(ks_link_param(m, "l1/W")));

  /* missing file */
  char path3[600];
  snprintf(path3, sizeof path3, "%s/nope.npz", g_dir);
  assert_int_equal(ks_load_npz(path3, m), KS_ENOTFOUND);
  ks_link_free(bad);
  ks_link_free(src);
  ks_link_free(src2);
  ks_link_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_link__namedparams_order),
    cmocka_unit_test(test_link__add_child_errors),
    cmocka_unit_test(test_link__lazy_linear),
    cmocka_unit_test(test_link__nobias_and_rng_seeds),
    cmocka_unit_test(test_link__grads_and_packing),
    cmocka_unit_test(test_link__copyparams),
    cmocka_unit_test(test_link__sequential),
    cmocka_unit_test(test_link__classifier),
    cmocka_unit_test(test_link__classifier_accuracy_counts_ignored_label),
    cmocka_unit_test(test_link__npz_roundtrip_and_keys),
    cmocka_unit_test(test_link__npz_load_failures_leave_params),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
