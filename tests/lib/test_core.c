/*
 * tests/lib/test_core.c — src/core basics: errors, tensors, the arena, the
 * RNG and contexts.
 */
#include "testutil.h"

#include <stdlib.h>

/* ---- errors ----------------------------------------------------------------------- */

static void test_core__error(void **state) {
  ks_error_clear();
  assert_int_equal(ks_error_last_code(), KS_OK);
  assert_string_equal(ks_error_last(), "");
  assert_int_equal(ks_error_set(KS_ESHAPE, "bad %s %d", "shape", 3), KS_ESHAPE);
  assert_int_equal(ks_error_last_code(), KS_ESHAPE);
  assert_string_equal(ks_error_last(), "bad shape 3");
  assert_string_equal(ks_status_name(KS_EINVAL), "KS_EINVAL");
  assert_string_equal(ks_status_name(KS_OK), "KS_OK");
  ks_error_clear();
  assert_int_equal(ks_error_last_code(), KS_OK);
}

/* ---- tensors ---------------------------------------------------------------------- */

static void test_core__tensor(void **state) {
  ks_tensor *t = ks_tensor_new(KS_F32, 2, (int64_t[]){2, 3});
  assert_non_null(t);
  assert_int_equal(t->size, 6);
  assert_int_equal(ks_tensor_nbytes(t), 24);
  assert_int_equal((uintptr_t)t->data % 64, 0);
  for (int i = 0; i < 6; i++) assert_float_equal(ks_tensor_f32(t)[i], 0.0, 0.0);
  char buf[64];
  assert_string_equal(ks_shape_str(t->ndim, t->shape, buf, sizeof buf), "(2, 3)");
  assert_string_equal(ks_shape_str(1, (int64_t[]){4}, buf, sizeof buf), "(4,)");
  assert_string_equal(ks_shape_str(0, NULL, buf, sizeof buf), "()");

  ks_tensor_f32(t)[4] = 7.5f;
  ks_tensor *c = ks_tensor_clone(t);
  assert_non_null(c);
  assert_true(ks_tensor_same_shape(t, c));
  assert_ptr_not_equal(c->data, t->data);
  assert_float_equal(ks_tensor_f32(c)[4], 7.5f, 0.0);
  assert_false(ks_tensor_same_shape(t, &(ks_tensor){.ndim = 2, .shape = {3, 2}}));

  ks_tensor *s = ks_tensor_new(KS_I32, 0, NULL); /* scalar */
  assert_non_null(s);
  assert_int_equal(s->size, 1);
  ks_tensor *z = ks_tensor_new(KS_F32, 2, (int64_t[]){0, 5}); /* empty */
  assert_non_null(z);
  assert_int_equal(z->size, 0);

  assert_null(ks_tensor_new(KS_F32, 2, (int64_t[]){2, -1}));
  assert_int_equal(ks_error_last_code(), KS_EINVAL);
  assert_null(ks_tensor_new(KS_F32, KS_MAX_DIMS + 1, (int64_t[KS_MAX_DIMS + 1]){0}));
  assert_int_equal(ks_shape_size(2, (int64_t[]){INT64_MAX / 2, 4}), -1);

  ks_tensor v;
  float data[4] = {1, 2, 3, 4};
  TU_OK(ks_tensor_view_init(&v, KS_F32, 2, (int64_t[]){2, 2}, data));
  assert_ptr_equal(v.data, data);
  assert_int_equal(v.flags & KS_TENSOR_OWNS_DATA, 0);
  ks_tensor_free(&v); /* not heap: no-op */
  ks_tensor_free(NULL);
  ks_tensor_free(t);
  ks_tensor_free(c);
  ks_tensor_free(s);
  ks_tensor_free(z);
}

/* ---- arena ------------------------------------------------------------------------ */

static void test_core__arena_alignment(void **state) {
  ks_arena *a = ks_arena_new(4096);
  assert_non_null(a);
  for (size_t sz = 0; sz < 300; sz += 7) {
    void *p = ks_arena_alloc(a, sz);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    memset(p, 0xab, sz);
  }
  unsigned char *z = ks_arena_calloc(a, 100);
  for (int i = 0; i < 100; i++) assert_int_equal(z[i], 0);
  ks_arena_free(a);
  ks_arena_free(NULL);
}

static void test_core__arena_reset_consolidates(void **state) {
  ks_arena *a = ks_arena_new(1024);
  assert_int_equal(ks_arena_get_stats(a).mallocs, 1);
  /* one "iteration" of 40 allocations of 200 bytes overflows into new blocks */
  for (int i = 0; i < 40; i++) assert_non_null(ks_arena_alloc(a, 200));
  ks_arena_stats s = ks_arena_get_stats(a);
  assert_true(s.mallocs > 1);
  assert_int_equal(s.used, 40 * 256); /* rounded to 64 */
  assert_int_equal(s.high_water, 40 * 256);
  ks_arena_reset(a);
  s = ks_arena_get_stats(a);
  assert_int_equal(s.used, 0);
  assert_int_equal(s.capacity, 40 * 256); /* one block of the high-water size */
  size_t mallocs = s.mallocs;
  /* the same iteration again and again: no malloc */
  for (int rep = 0; rep < 10; rep++) {
    for (int i = 0; i < 40; i++) assert_non_null(ks_arena_alloc(a, 200));
    ks_arena_reset(a);
  }
  s = ks_arena_get_stats(a);
  assert_int_equal(s.mallocs, mallocs);
  assert_int_equal(s.capacity, 40 * 256);
  /* a bigger iteration grows once more, then is steady again */
  for (int i = 0; i < 80; i++) assert_non_null(ks_arena_alloc(a, 200));
  ks_arena_reset(a);
  mallocs = ks_arena_get_stats(a).mallocs;
  for (int i = 0; i < 80; i++) assert_non_null(ks_arena_alloc(a, 200));
  ks_arena_reset(a);
  assert_int_equal(ks_arena_get_stats(a).mallocs, mallocs);
  /* one allocation larger than twice the block */
  void *big = ks_arena_alloc(a, 1 << 20);
  assert_non_null(big);
  memset(big, 1, 1 << 20);
  ks_arena_free(a);
}

/* ---- rng -------------------------------------------------------------------------- */

static void test_core__rng_streams(void **state) {
  ks_rng a, b, c;
  ks_rng_seed(&a, 123);
  ks_rng_seed(&b, 123);
  ks_rng_seed(&c, 124);
  int differ = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = ks_rng_next(&a), y = ks_rng_next(&b), z = ks_rng_next(&c);
    assert_true(x == y);
    differ += x != z;
  }
  assert_true(differ > 990);
  /* the state is a plain value: copying it forks an identical stream */
  ks_rng d = a;
  for (int i = 0; i < 10; i++) assert_true(ks_rng_next(&a) == ks_rng_next(&d));
}

static void test_core__rng_distributions(void **state) {
  ks_rng r;
  ks_rng_seed(&r, 7);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  int64_t buckets[10] = {0};
  for (int i = 0; i < n; i++) {
    double u = ks_rng_uniform(&r);
    assert_true(u >= 0.0 && u < 1.0);
    su += u;
    uint64_t k = ks_rng_below(&r, 10);
    assert_true(k < 10);
    buckets[k]++;
    double g = ks_rng_normal(&r);
    sn += g;
    sn2 += g * g;
  }
  assert_true(fabs(su / n - 0.5) < 0.005);
  for (int k = 0; k < 10; k++) assert_true(llabs(buckets[k] - n / 10) < 600); /* ~6 sigma */
  assert_true(fabs(sn / n) < 0.015);
  assert_true(fabs(sn2 / n - 1.0) < 0.02);
  assert_int_equal(ks_rng_below(&r, 1), 0);
}

static void test_core__rng_permutation(void **state) {
  ks_rng r;
  ks_rng_seed(&r, 99);
  const int64_t n = 1000;
  int64_t *p = malloc((size_t)n * sizeof *p), *q = malloc((size_t)n * sizeof *q);
  char *seen = calloc((size_t)n, 1);
  ks_rng_permutation(&r, p, n);
  int64_t fixed = 0;
  for (int64_t i = 0; i < n; i++) {
    assert_true(p[i] >= 0 && p[i] < n);
    assert_false(seen[p[i]]);
    seen[p[i]] = 1;
    fixed += p[i] == i;
  }
  assert_true(fixed < 10); /* a shuffle, not the identity (expected 1) */
  /* same seed, same permutation */
  ks_rng_seed(&r, 99);
  ks_rng_permutation(&r, q, n);
  assert_memory_equal(p, q, (size_t)n * sizeof *p);
  ks_rng_permutation(&r, q, 0);
  ks_rng_permutation(&r, q, 1);
  assert_int_equal(q[0], 0);
  free(p);
  free(q);
  free(seen);
}

/* ---- ctx ---------------------------------------------------------------------------- */

static void test_core__ctx_flags_and_tensors(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  assert_non_null(ctx);
  assert_int_equal(ks_ctx_train(ctx), 1);
  assert_int_equal(ks_ctx_backprop(ctx), 1);
  assert_int_equal(ks_ctx_set_train(ctx, 0), 1);
  assert_int_equal(ks_ctx_train(ctx), 0);
  assert_int_equal(ks_ctx_set_backprop(ctx, 0), 1);
  assert_int_equal(ks_ctx_set_backprop(ctx, 1), 0);
  ks_tensor *t = ks_ctx_tensor_zeros(ctx, KS_F32, 2, (int64_t[]){3, 5});
  assert_non_null(t);
  assert_true(t->flags & KS_TENSOR_ARENA);
  assert_int_equal((uintptr_t)t->data % 64, 0);
  for (int i = 0; i < 15; i++) assert_float_equal(ks_tensor_f32(t)[i], 0.0, 0.0);
  ks_tensor_free(t); /* arena tensor: no-op */
  ks_var *v = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){2}, (int32_t[]){4, 5}, 1);
  assert_non_null(v);
  assert_int_equal(v->requires_grad, 0); /* int tensors never require grad */
  assert_int_equal(ks_tensor_i32(v->data)[1], 5);
  /* same seed, same ctx stream */
  ks_ctx_seed(ctx, 3);
  uint64_t a = ks_rng_next(ks_ctx_rng(ctx));
  ks_ctx_seed(ctx, 3);
  assert_true(a == ks_rng_next(ks_ctx_rng(ctx)));
  ks_ctx_reset(ctx);
  assert_int_equal(ks_arena_get_stats(ks_ctx_arena(ctx)).used, 0);
  ks_ctx_free(ctx);
  ks_ctx_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_core__error),
    cmocka_unit_test(test_core__tensor),
    cmocka_unit_test(test_core__arena_alignment),
    cmocka_unit_test(test_core__arena_reset_consolidates),
    cmocka_unit_test(test_core__rng_streams),
    cmocka_unit_test(test_core__rng_distributions),
    cmocka_unit_test(test_core__rng_permutation),
    cmocka_unit_test(test_core__ctx_flags_and_tensors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
