/*
 * tests/lib/test_parallel.c — data-parallel replicas of a step
 * (kusari/parallel.h).
 *
 * The reference for every gradient is computed here from plain steps: the
 * whole batch in one ctx (what the replicas' weighted sum must equal up to
 * rounding), and each slice alone (whose weighted sum, computed in double
 * here, the replicas must reproduce to float rounding). Also: one replica
 * gives the plain step's bits, any thread count gives the same bits, uneven
 * and empty slices, lazy links, parameters no loss reaches, the optimizer
 * after a data-parallel step, and every error the header lists.
 */
#include "testutil.h"
#include "kusari/parallel.h"

#include <stdlib.h>

#define IN 12
#define HID 8
#define OUT 5

static ks_var *mlp_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l1"), x));
  return ks_link_forward(ctx, ks_link_child(self, "l2"), h);
}

/* the same weights every time for the same seed; in = 0 makes l1 lazy */
static ks_link *make_mlp(uint64_t seed, int64_t in) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  ks_linear_opts lo = {.rng = &rng};
  ks_link *m = ks_chain_new();
  assert_non_null(m);
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(in, HID, &lo)));
  TU_OK(ks_link_add_child(m, "l2", ks_linear_link_new(HID, OUT, &lo)));
  ks_link_set_forward(m, mlp_forward, NULL);
  return m;
}

typedef struct batch {
  ks_tensor *x, *t; /* (n, IN) float32, (n,) int32 */
  ks_link *model;
  int fail_replica; /* >= 0: that replica's forward fails            */
  ks_var *foreign;  /* non-NULL: added to every replica's loss        */
  int wide_loss;    /* return a 2-element loss                        */
} batch;

static batch make_batch(int64_t n, uint64_t seed) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  batch b = {tu_uniform(&rng, 2, (int64_t[]){n, IN}, -1, 1), tu_labels(&rng, n, OUT, 0), NULL, -1,
             NULL, 0};
  return b;
}

static void free_batch(batch *b) {
  ks_tensor_free(b->x);
  ks_tensor_free(b->t);
}

/* loss of rows [start, start + count) of the batch, in ctx */
static ks_var *rows_loss(ks_ctx *ctx, const batch *b, int64_t start, int64_t count) {
  ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){count, IN},
                               ks_tensor_f32(b->x) + start * IN, 0);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){count}, ks_tensor_i32(b->t) + start, 0);
  return ks_softmax_cross_entropy(ctx, ks_link_forward(ctx, b->model, x), t, -1);
}

static ks_var *slice_loss(ks_ctx *ctx, int replica, int64_t start, int64_t count, void *user) {
  batch *b = user;
  if (replica == b->fail_replica) {
    ks_error_set(KS_EFORMAT, "boom in replica %d", replica);
    return NULL;
  }
  ks_var *loss = rows_loss(ctx, b, start, count);
  if (loss && b->foreign) loss = ks_add(ctx, loss, ks_sum(ctx, b->foreign, KS_AXIS_ALL));
  if (loss && b->wide_loss) loss = ks_concat(ctx, 2, (ks_var *[]){ks_reshape(ctx, loss, 1, (int64_t[]){1}), ks_reshape(ctx, loss, 1, (int64_t[]){1})}, 0);
  return loss;
}

/* copy of the model's packed gradient block (grad_valid checked by the caller) */
static float *grads_of(ks_link *m, int64_t *size) {
  float *g = ks_link_pack_grad(m, size);
  assert_non_null(g);
  float *c = malloc(sizeof(float) * (size_t)*size);
  memcpy(c, g, sizeof(float) * (size_t)*size);
  return c;
}

/* plain step on rows [start, start + count): loss value, model grads set */
static double plain_step(batch *b, int64_t start, int64_t count) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *loss = rows_loss(ctx, b, start, count);
  TU_NONNULL(loss);
  ks_link_cleargrads(b->model);
  TU_OK(ks_backward(ctx, loss));
  if (!ks_link_is_packed(b->model)) TU_OK(ks_link_pack(b->model));
  double v = ks_tensor_f32(loss->data)[0];
  ks_ctx_free(ctx);
  return v;
}

static void assert_all_grads_valid(ks_link *m, int valid) {
  for (int i = 0; i < ks_link_num_params(m); i++)
    assert_int_equal(ks_link_param_at(m, i, NULL)->grad_valid, valid);
}

/* ---------------------------------------------------------------------------- */

static void test_parallel__slices(void **state) {
  (void)state;
  ks_link *m = make_mlp(1, IN);
  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, m, 3, 0));
  assert_int_equal(ks_data_parallel_replicas(dp), 3);
  const int64_t want7[3][2] = {{0, 3}, {3, 2}, {5, 2}}, want2[3][2] = {{0, 1}, {1, 1}, {2, 0}};
  for (int r = 0; r < 3; r++) {
    int64_t s, c;
    ks_data_parallel_slice(dp, 7, r, &s, &c);
    assert_int_equal(s, want7[r][0]);
    assert_int_equal(c, want7[r][1]);
    ks_data_parallel_slice(dp, 2, r, &s, &c);
    assert_int_equal(s, want2[r][0]);
    assert_int_equal(c, want2[r][1]);
    assert_non_null(ks_data_parallel_ctx(dp, r));
  }
  assert_null(ks_data_parallel_ctx(dp, 3));
  assert_null(ks_data_parallel_ctx(dp, -1));
  ks_data_parallel_free(dp);
  ks_link_free(m);
}

/* One replica is the plain step: same loss, same gradient bits. */
static void test_parallel__one_replica_is_the_plain_step(void **state) {
  (void)state;
  batch b = make_batch(9, 11);
  b.model = make_mlp(2, IN);
  double want_loss = plain_step(&b, 0, 9);
  int64_t size;
  float *want = grads_of(b.model, &size);

  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, b.model, 1, 0));
  double loss = -1;
  TU_OK(ks_data_parallel_backward(dp, 9, slice_loss, &b, &loss));
  assert_true(loss == (double)(float)want_loss);
  int64_t size2;
  float *got = grads_of(b.model, &size2);
  assert_int_equal(size, size2);
  assert_memory_equal(got, want, sizeof(float) * (size_t)size);
  assert_all_grads_valid(b.model, 1);
  free(got);
  free(want);
  ks_data_parallel_free(dp);
  ks_link_free(b.model);
  free_batch(&b);
}

/* R replicas over n examples: the weighted sum of the slices' own
 * gradients (to float rounding) and the whole batch's gradient (to the
 * rounding of a different order of summation); the loss likewise. */
static void check_replicas(int R, int64_t n) {
  batch b = make_batch(n, 100 + (uint64_t)n);
  b.model = make_mlp(3, IN);
  double whole_loss = plain_step(&b, 0, n);
  int64_t size;
  float *whole = grads_of(b.model, &size);

  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, b.model, R, 0));
  double *ref = calloc((size_t)size, sizeof *ref), ref_loss = 0;
  for (int r = 0; r < R; r++) {
    int64_t s, c;
    ks_data_parallel_slice(dp, n, r, &s, &c);
    if (!c) continue;
    double w = (double)c / (double)n;
    ref_loss += w * plain_step(&b, s, c);
    float *g = ks_link_pack_grad(b.model, NULL);
    for (int64_t j = 0; j < size; j++) ref[j] += w * (double)g[j];
  }

  ks_link_cleargrads(b.model);
  double loss;
  TU_OK(ks_data_parallel_backward(dp, n, slice_loss, &b, &loss));
  assert_all_grads_valid(b.model, 1);
  const float *got = ks_link_pack_grad(b.model, NULL);
  for (int64_t j = 0; j < size; j++) {
    double tol_ref = 1e-6 * (1.0 + fabs(ref[j]));
    double tol_whole = 2e-5 * (1.0 + fabs((double)whole[j]));
    if (fabs((double)got[j] - ref[j]) > tol_ref || fabs((double)got[j] - (double)whole[j]) > tol_whole)
      fail_msg("R=%d n=%lld element %lld: replicas %.9g, slices' weighted sum %.9g, whole batch %.9g",
               R, (long long)n, (long long)j, (double)got[j], ref[j], (double)whole[j]);
  }
  assert_true(fabs(loss - ref_loss) < 1e-6 * (1 + fabs(ref_loss)));
  assert_true(fabs(loss - whole_loss) < 1e-5 * (1 + fabs(whole_loss)));
  free(ref);
  free(whole);
  ks_data_parallel_free(dp);
  ks_link_free(b.model);
  free_batch(&b);
}

static void test_parallel__replicas_match_the_whole_batch(void **state) {
  (void)state;
  check_replicas(2, 10); /* equal halves */
  check_replicas(3, 7);  /* 3, 2, 2 */
  check_replicas(4, 9);  /* 3, 2, 2, 2 */
  check_replicas(3, 2);  /* 1, 1, 0: an empty slice takes no part */
}

/* The same bits on 1, 2 and 3 threads (slices and sum order depend on n and
 * R only), over several steps with the optimizer. */
static void test_parallel__bits_do_not_depend_on_threads(void **state) {
  (void)state;
  const int saved = ks_get_num_threads();
  float *first = NULL;
  int64_t size = 0;
  double first_loss = 0;
  for (int threads = 1; threads <= 3; threads++) {
    ks_set_num_threads(threads);
    batch b = make_batch(11, 5);
    b.model = make_mlp(4, IN);
    ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.1, 0.9);
    TU_OK(ks_optimizer_setup(opt, b.model));
    ks_data_parallel *dp;
    TU_OK(ks_data_parallel_new(&dp, b.model, 3, 0));
    double loss = 0;
    for (int step = 0; step < 4; step++) {
      TU_OK(ks_data_parallel_backward(dp, 11, slice_loss, &b, &loss));
      TU_OK(ks_optimizer_update(opt));
    }
    float *params = ks_link_pack_data(b.model, &size);
    if (!first) {
      first = malloc(sizeof(float) * (size_t)size);
      memcpy(first, params, sizeof(float) * (size_t)size);
      first_loss = loss;
    } else {
      assert_memory_equal(params, first, sizeof(float) * (size_t)size);
      assert_true(loss == first_loss);
    }
    ks_data_parallel_free(dp);
    ks_optimizer_free(opt);
    ks_link_free(b.model);
    free_batch(&b);
  }
  free(first);
  ks_set_num_threads(saved);
}

/* Training with replicas follows the plain step closely (rounding only). */
static void test_parallel__training_follows_the_plain_step(void **state) {
  (void)state;
  batch b = make_batch(16, 9);
  ks_link *plain = make_mlp(6, IN), *rep = make_mlp(6, IN);
  ks_optimizer *o1 = ks_optimizer_momentum_sgd_new(0.05, 0.9), *o2 = ks_optimizer_momentum_sgd_new(0.05, 0.9);
  TU_OK(ks_optimizer_setup(o1, plain));
  TU_OK(ks_optimizer_setup(o2, rep));
  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, rep, 2, 0));
  double first = 0, last = 0;
  for (int step = 0; step < 20; step++) {
    b.model = plain;
    plain_step(&b, 0, 16);
    TU_OK(ks_optimizer_update(o1));
    b.model = rep;
    TU_OK(ks_data_parallel_backward(dp, 16, slice_loss, &b, &last));
    TU_OK(ks_optimizer_update(o2));
    if (step == 0) first = last;
  }
  assert_true(last < 0.8 * first); /* it learns */
  int64_t n1, n2;
  const float *p1 = ks_link_pack_data(plain, &n1), *p2 = ks_link_pack_data(rep, &n2);
  assert_int_equal(n1, n2);
  for (int64_t j = 0; j < n1; j++)
    if (fabs((double)p1[j] - (double)p2[j]) > 1e-4 * (1 + fabs((double)p1[j])))
      fail_msg("parameter element %lld: plain %.8g, replicas %.8g", (long long)j, (double)p1[j], (double)p2[j]);
  ks_data_parallel_free(dp);
  ks_optimizer_free(o1);
  ks_optimizer_free(o2);
  ks_link_free(plain);
  ks_link_free(rep);
  free_batch(&b);
}

/* A lazy link gets its shape from replica 0's forward; the result is the
 * same as for a model built with the size. */
static void test_parallel__lazy_links(void **state) {
  (void)state;
  batch b = make_batch(6, 21);
  ks_link *lazy = make_mlp(7, 0), *sized = make_mlp(7, IN);
  assert_false(ks_link_is_packed(lazy));
  ks_data_parallel *dp1, *dp2;
  TU_OK(ks_data_parallel_new(&dp1, lazy, 2, 0));
  TU_OK(ks_data_parallel_new(&dp2, sized, 2, 0));
  double l1, l2;
  b.model = lazy;
  TU_OK(ks_data_parallel_backward(dp1, 6, slice_loss, &b, &l1));
  b.model = sized;
  TU_OK(ks_data_parallel_backward(dp2, 6, slice_loss, &b, &l2));
  assert_true(ks_link_is_packed(lazy));
  assert_true(l1 == l2);
  int64_t n1, n2;
  const float *g1 = ks_link_pack_grad(lazy, &n1), *g2 = ks_link_pack_grad(sized, &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(g1, g2, sizeof(float) * (size_t)n1);
  ks_data_parallel_free(dp1);
  ks_data_parallel_free(dp2);
  ks_link_free(lazy);
  ks_link_free(sized);
  free_batch(&b);
}

/* A parameter no replica's loss reaches keeps no gradient, as after
 * cleargrads; the others get theirs. */
static void test_parallel__unreached_parameter(void **state) {
  (void)state;
  batch b = make_batch(8, 31);
  b.model = make_mlp(8, IN);
  ks_linear_opts lo = {.seed = 3};
  TU_OK(ks_link_add_child(b.model, "unused", ks_linear_link_new(4, 4, &lo)));
  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, b.model, 2, 0));
  TU_OK(ks_data_parallel_backward(dp, 8, slice_loss, &b, NULL));
  assert_int_equal(ks_link_param(b.model, "unused/W")->grad_valid, 0);
  assert_int_equal(ks_link_param(b.model, "unused/b")->grad_valid, 0);
  assert_int_equal(ks_link_param(b.model, "l1/W")->grad_valid, 1);
  assert_int_equal(ks_link_param(b.model, "l2/b")->grad_valid, 1);
  ks_data_parallel_free(dp);
  ks_link_free(b.model);
  free_batch(&b);
}

/* Batch normalization: each replica normalizes with its own slice's
 * statistics (the gradient is the weighted sum of the slices' own, not the
 * whole batch's), and the running statistics are the first replica's slice's
 * alone, bit for bit, whatever the other replicas do at the same time. */
static ks_var *bn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_link_forward(ctx, ks_link_child(self, "l1"), x);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "bn"), h));
  return ks_link_forward(ctx, ks_link_child(self, "l2"), h);
}

static ks_link *make_bn_mlp(void) {
  ks_link *m = make_mlp(12, IN);
  TU_OK(ks_link_add_child(m, "bn", ks_batch_normalization_link_new(HID, NULL)));
  ks_link_set_forward(m, bn_forward, NULL);
  return m;
}

static void test_parallel__batch_normalization(void **state) {
  (void)state;
  batch b = make_batch(10, 51);
  ks_link *ref = make_bn_mlp(), *rep = make_bn_mlp();
  /* reference: slice 0 (rows 0-4) alone, then slice 1 (rows 5-9) alone */
  b.model = ref;
  plain_step(&b, 0, 5);
  int64_t size;
  float *g0 = grads_of(ref, &size);
  float mean0[HID], var0[HID];
  memcpy(mean0, ks_tensor_f32(ks_link_persistent(ref, "bn/avg_mean")), sizeof mean0);
  memcpy(var0, ks_tensor_f32(ks_link_persistent(ref, "bn/avg_var")), sizeof var0);
  plain_step(&b, 5, 5);
  float *g1 = grads_of(ref, &size);

  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, rep, 2, 0));
  b.model = rep;
  TU_OK(ks_data_parallel_backward(dp, 10, slice_loss, &b, NULL));
  assert_memory_equal(ks_tensor_f32(ks_link_persistent(rep, "bn/avg_mean")), mean0, sizeof mean0);
  assert_memory_equal(ks_tensor_f32(ks_link_persistent(rep, "bn/avg_var")), var0, sizeof var0);
  assert_int_equal(*ks_link_persistent_int(rep, "bn/N"), 0);
  const float *got = ks_link_pack_grad(rep, NULL);
  for (int64_t j = 0; j < size; j++) {
    double want = 0.5 * (double)g0[j] + 0.5 * (double)g1[j];
    if (fabs((double)got[j] - want) > 1e-6 * (1 + fabs(want)))
      fail_msg("element %lld: replicas %.9g, slices' weighted sum %.9g", (long long)j, (double)got[j], want);
  }
  /* only the first replica's ctx updates persistent values */
  assert_int_equal(ks_ctx_update_persistents(ks_data_parallel_ctx(dp, 0)), 1);
  assert_int_equal(ks_ctx_update_persistents(ks_data_parallel_ctx(dp, 1)), 0);
  free(g0);
  free(g1);
  ks_data_parallel_free(dp);
  ks_link_free(ref);
  ks_link_free(rep);
  free_batch(&b);
}

/* A fixed workspace: after the first steps, no replica's arena allocates
 * again and the replicas' blocks stay put, over 300 steps with the
 * optimizer (and under ASan, nothing leaks). */
static void test_parallel__steady_state(void **state) {
  (void)state;
  batch b = make_batch(32, 61);
  b.model = make_mlp(13, IN);
  ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.05, 0.9);
  TU_OK(ks_optimizer_setup(opt, b.model));
  ks_data_parallel *dp;
  TU_OK(ks_data_parallel_new(&dp, b.model, 2, 0));
  ks_arena_stats warm[2];
  double first = 0, last = 0;
  for (int step = 0; step < 300; step++) {
    TU_OK(ks_data_parallel_backward(dp, 32, slice_loss, &b, &last));
    TU_OK(ks_optimizer_update(opt));
    if (step == 0) first = last;
    for (int r = 0; r < 2; r++) {
      ks_arena_stats s = ks_arena_get_stats(ks_ctx_arena(ks_data_parallel_ctx(dp, r)));
      if (step == 2) warm[r] = s;
      if (step > 2 && (s.mallocs != warm[r].mallocs || s.capacity != warm[r].capacity))
        fail_msg("step %d, replica %d: arena mallocs %zu -> %zu, capacity %zu -> %zu", step, r,
                 warm[r].mallocs, s.mallocs, warm[r].capacity, s.capacity);
    }
  }
  assert_true(last < 0.5 * first);
  ks_data_parallel_free(dp);
  ks_optimizer_free(opt);
  ks_link_free(b.model);
  free_batch(&b);
}

static void assert_error(int rc, int code, const char *part) {
  assert_int_equal(rc, code);
  if (!strstr(ks_error_last(), part)) fail_msg("message '%s' lacks '%s'", ks_error_last(), part);
}

static void test_parallel__errors(void **state) {
  (void)state;
  ks_data_parallel *dp = (ks_data_parallel *)&dp;
  ks_link *m = make_mlp(9, IN);
  assert_error(ks_data_parallel_new(&dp, m, 0, 0), KS_EINVAL, "replicas must be 1..64");
  assert_null(dp);
  assert_error(ks_data_parallel_new(&dp, m, 65, 0), KS_EINVAL, "got 65");
  assert_error(ks_data_parallel_new(&dp, NULL, 2, 0), KS_EINVAL, "model is NULL");
  assert_error(ks_data_parallel_new(NULL, m, 2, 0), KS_EINVAL, "out is NULL");

  batch b = make_batch(6, 41);
  b.model = m;
  TU_OK(ks_data_parallel_new(&dp, m, 3, 0));
  assert_error(ks_data_parallel_backward(dp, 0, slice_loss, &b, NULL), KS_EINVAL, "empty");
  assert_error(ks_data_parallel_backward(dp, 6, NULL, &b, NULL), KS_EINVAL, "NULL");
  assert_error(ks_data_parallel_backward(NULL, 6, slice_loss, &b, NULL), KS_EINVAL, "NULL");

  /* a failing replica: its error, which replica and which examples; the
   * model's gradients are cleared (a good step first, so there were some) */
  TU_OK(ks_data_parallel_backward(dp, 6, slice_loss, &b, NULL));
  assert_all_grads_valid(m, 1);
  b.fail_replica = 1;
  assert_error(ks_data_parallel_backward(dp, 6, slice_loss, &b, NULL), KS_EFORMAT,
               "replica 1 (examples 2..3): boom in replica 1");
  assert_all_grads_valid(m, 0);
  b.fail_replica = -1;

  /* a parameter outside the model would be written by several threads */
  ks_tensor *fd = ks_tensor_new(KS_F32, 1, (int64_t[]){3}), *fg = ks_tensor_new(KS_F32, 1, (int64_t[]){3});
  ks_var foreign;
  ks_var_param_init(&foreign, fd, fg, "stray");
  b.foreign = &foreign;
  assert_error(ks_data_parallel_backward(dp, 6, slice_loss, &b, NULL), KS_EINVAL,
               "parameter 'stray' is not part of the model");
  assert_int_equal(foreign.grad_valid, 0); /* never touched */
  assert_all_grads_valid(m, 0);
  b.foreign = NULL;

  b.wide_loss = 1;
  assert_error(ks_data_parallel_backward(dp, 6, slice_loss, &b, NULL), KS_EINVAL, "one float32 element");
  b.wide_loss = 0;

  /* and it recovers */
  TU_OK(ks_data_parallel_backward(dp, 6, slice_loss, &b, NULL));
  assert_all_grads_valid(m, 1);
  ks_tensor_free(fd);
  ks_tensor_free(fg);
  ks_data_parallel_free(dp);
  ks_data_parallel_free(NULL);
  ks_link_free(m);
  free_batch(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parallel__slices),
    cmocka_unit_test(test_parallel__one_replica_is_the_plain_step),
    cmocka_unit_test(test_parallel__replicas_match_the_whole_batch),
    cmocka_unit_test(test_parallel__bits_do_not_depend_on_threads),
    cmocka_unit_test(test_parallel__training_follows_the_plain_step),
    cmocka_unit_test(test_parallel__lazy_links),
    cmocka_unit_test(test_parallel__unreached_parameter),
    cmocka_unit_test(test_parallel__batch_normalization),
    cmocka_unit_test(test_parallel__steady_state),
    cmocka_unit_test(test_parallel__errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
