/*
 * tests/lib/test_iterator.c — SerialIterator against Chainer's semantics.
 *
 * The expected sequences below were written by hand from
 * chainer/iterators/_statemachine.py (Chainer v7), not produced by running
 * kusari: for N = 10, batch 3 a repeating iterator wraps at the epoch end
 * and takes the rest of the batch from the next epoch; a non-repeating one
 * gives a last batch of 1 and then stops.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kusari/error.h"
#include "kusari/iterator.h"
#include "kusari/random.h"
#include "kusari/tensor.h"

typedef struct step {
  int64_t idx[3];
  int     n;
  int64_t position;
  int64_t epoch;
  int     is_new_epoch;
  double  detail;
  double  prev_detail;    /* -1: None */
} step;

static void check_step(ks_serial_iterator *it, const step *s, int k)
{
  const int64_t *idx = NULL;
  int64_t n = -1;
  int rc = ks_serial_iterator_next(it, &idx, &n);
  if (rc != KS_OK)
    fail_msg("step %d: next returned %d (%s)", k, rc, ks_error_last());
  if (n != s->n)
    fail_msg("step %d: batch of %lld, want %d", k, (long long)n, s->n);
  for (int j = 0; j < s->n; j++)
    if (idx[j] != s->idx[j])
      fail_msg("step %d: index %d is %lld, want %lld", k, j, (long long)idx[j],
               (long long)s->idx[j]);
  if (ks_serial_iterator_current_position(it) != s->position ||
      ks_serial_iterator_epoch(it) != s->epoch ||
      ks_serial_iterator_is_new_epoch(it) != s->is_new_epoch)
    fail_msg("step %d: position %lld epoch %lld is_new_epoch %d, want %lld %lld %d", k,
             (long long)ks_serial_iterator_current_position(it),
             (long long)ks_serial_iterator_epoch(it), ks_serial_iterator_is_new_epoch(it),
             (long long)s->position, (long long)s->epoch, s->is_new_epoch);
  if (fabs(ks_serial_iterator_epoch_detail(it) - s->detail) > 1e-12)
    fail_msg("step %d: epoch_detail %.17g, want %g", k, ks_serial_iterator_epoch_detail(it),
             s->detail);
  if (fabs(ks_serial_iterator_previous_epoch_detail(it) - s->prev_detail) > 1e-12)
    fail_msg("step %d: previous_epoch_detail %.17g, want %g", k,
             ks_serial_iterator_previous_epoch_detail(it), s->prev_detail);
}

/* N = 10, batch 3, repeat, no shuffle. */
static const step REPEAT_SEQ[] = {
  {{0, 1, 2}, 3, 3, 0, 0, 0.3, 0.0},
  {{3, 4, 5}, 3, 6, 0, 0, 0.6, 0.3},
  {{6, 7, 8}, 3, 9, 0, 0, 0.9, 0.6},
  {{9, 0, 1}, 3, 2, 1, 1, 1.2, 0.9},   /* crosses the boundary */
  {{2, 3, 4}, 3, 5, 1, 0, 1.5, 1.2},
  {{5, 6, 7}, 3, 8, 1, 0, 1.8, 1.5},
  {{8, 9, 0}, 3, 1, 2, 1, 2.1, 1.8},
  {{1, 2, 3}, 3, 4, 2, 0, 2.4, 2.1},
  {{4, 5, 6}, 3, 7, 2, 0, 2.7, 2.4},
  {{7, 8, 9}, 3, 0, 3, 1, 3.0, 2.7},   /* ends exactly at N: new epoch */
  {{0, 1, 2}, 3, 3, 3, 0, 3.3, 3.0},
};

/* N = 10, batch 3, no repeat, no shuffle: last batch partial, then stop. */
static const step ONCE_SEQ[] = {
  {{0, 1, 2}, 3, 3, 0, 0, 0.3, 0.0},
  {{3, 4, 5}, 3, 6, 0, 0, 0.6, 0.3},
  {{6, 7, 8}, 3, 9, 0, 0, 0.9, 0.6},
  {{9}, 1, 0, 1, 1, 1.0, 0.9},
};

static void check_fresh(ks_serial_iterator *it)
{
  assert_int_equal(ks_serial_iterator_current_position(it), 0);
  assert_int_equal(ks_serial_iterator_epoch(it), 0);
  assert_int_equal(ks_serial_iterator_is_new_epoch(it), 0);
  assert_true(ks_serial_iterator_epoch_detail(it) == 0.0);
  assert_true(ks_serial_iterator_previous_epoch_detail(it) == -1.0);
}

static void test_iterator__repeat_sequence(void **state)
{
  (void)state;
  ks_serial_iterator *it = NULL;
  assert_int_equal(ks_serial_iterator_new(&it, 10, 3, 1, 0, 0), KS_OK);
  assert_int_equal(ks_serial_iterator_size(it), 10);
  assert_int_equal(ks_serial_iterator_batch_size(it), 3);
  assert_int_equal(ks_serial_iterator_repeat(it), 1);
  assert_int_equal(ks_serial_iterator_shuffle(it), 0);
  assert_null(ks_serial_iterator_order(it));
  check_fresh(it);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t k = 0; k < sizeof REPEAT_SEQ / sizeof REPEAT_SEQ[0]; k++)
      check_step(it, &REPEAT_SEQ[k], (int)k);
    ks_serial_iterator_reset(it);
    check_fresh(it);
  }
  ks_serial_iterator_free(it);
}

static void test_iterator__no_repeat_sequence(void **state)
{
  (void)state;
  ks_serial_iterator *it = NULL;
  assert_int_equal(ks_serial_iterator_new(&it, 10, 3, 0, 0, 0), KS_OK);
  for (int pass = 0; pass < 2; pass++) {
    for (size_t k = 0; k < sizeof ONCE_SEQ / sizeof ONCE_SEQ[0]; k++)
      check_step(it, &ONCE_SEQ[k], (int)k);
    /* StopIteration, repeatedly; the state stays, previous_epoch_detail
     * becomes the current one (Chainer sets it before raising) */
    for (int r = 0; r < 3; r++) {
      const int64_t *idx = (const int64_t *)1;
      int64_t n = -1;
      assert_int_equal(ks_serial_iterator_next(it, &idx, &n), KS_ITER_END);
      assert_null(idx);
      assert_int_equal(n, 0);
      assert_int_equal(ks_serial_iterator_epoch(it), 1);
      assert_int_equal(ks_serial_iterator_is_new_epoch(it), 1);
      assert_int_equal(ks_serial_iterator_current_position(it), 0);
      assert_true(ks_serial_iterator_epoch_detail(it) == 1.0);
      assert_true(ks_serial_iterator_previous_epoch_detail(it) == 1.0);
    }
    ks_serial_iterator_reset(it);
    check_fresh(it);
  }
  ks_serial_iterator_free(it);

  /* batch == N: one full batch; batch > N: one batch of N */
  const int64_t *idx;
  int64_t n;
  int64_t bs[2] = {10, 15};
  for (int b = 0; b < 2; b++) {
    assert_int_equal(ks_serial_iterator_new(&it, 10, bs[b], 0, 0, 0), KS_OK);
    assert_int_equal(ks_serial_iterator_next(it, &idx, &n), KS_OK);
    assert_int_equal(n, 10);
    for (int j = 0; j < 10; j++)
      assert_int_equal(idx[j], j);
    assert_int_equal(ks_serial_iterator_epoch(it), 1);
    assert_int_equal(ks_serial_iterator_is_new_epoch(it), 1);
    assert_int_equal(ks_serial_iterator_next(it, &idx, &n), KS_ITER_END);
    ks_serial_iterator_free(it);
  }

}

static void test_iterator__batch_larger_than_dataset(void **state)
{
  (void)state;
  /* N = 10, batch 25, repeat: 0..9, 0..9, 0..4 -> epoch 2, position 5 */
  ks_serial_iterator *it = NULL;
  assert_int_equal(ks_serial_iterator_new(&it, 10, 25, 1, 0, 0), KS_OK);
  const int64_t *idx;
  int64_t n;
  assert_int_equal(ks_serial_iterator_next(it, &idx, &n), KS_OK);
  assert_int_equal(n, 25);
  for (int j = 0; j < 25; j++)
    assert_int_equal(idx[j], j % 10);
  assert_int_equal(ks_serial_iterator_epoch(it), 2);
  assert_int_equal(ks_serial_iterator_current_position(it), 5);
  assert_int_equal(ks_serial_iterator_is_new_epoch(it), 1);
  assert_true(ks_serial_iterator_epoch_detail(it) == 2.5);
  assert_int_equal(ks_serial_iterator_next(it, &idx, &n), KS_OK);
  /* 5..9, 0..9, 0..9: three more epoch ends -> epoch 5, position 0 */
  for (int j = 0; j < 25; j++)
    assert_int_equal(idx[j], (j + 5) % 10);
  assert_int_equal(ks_serial_iterator_epoch(it), 5);
  assert_int_equal(ks_serial_iterator_current_position(it), 0);
  ks_serial_iterator_free(it);
}

/* Runs 'steps' batches, appending all indices to 'stream'. */
static int64_t run(ks_serial_iterator *it, int steps, int64_t *stream)
{
  int64_t total = 0;
  for (int s = 0; s < steps; s++) {
    const int64_t *idx;
    int64_t n;
    if (ks_serial_iterator_next(it, &idx, &n) != KS_OK)
      break;
    memcpy(stream + total, idx, (size_t)n * sizeof *idx);
    total += n;
  }
  return total;
}

static void assert_permutation(const int64_t *v, int64_t n)
{
  int seen[64] = {0};
  assert_true(n <= 64);
  for (int64_t k = 0; k < n; k++) {
    assert_true(v[k] >= 0 && v[k] < n);
    if (seen[v[k]])
      fail_msg("index %lld appears twice in one epoch", (long long)v[k]);
    seen[v[k]] = 1;
  }
}

static void test_iterator__shuffle_covers_each_index_once(void **state)
{
  (void)state;
  ks_serial_iterator *it = NULL;
  assert_int_equal(ks_serial_iterator_new(&it, 10, 3, 1, 1, 42), KS_OK);
  assert_int_equal(ks_serial_iterator_shuffle(it), 1);

  /* the first order is the first permutation of an RNG seeded the same way
   * (Chainer: ShuffleOrderSampler draws one at reset) */
  ks_rng rng;
  ks_rng_seed(&rng, 42);
  int64_t want[10];
  ks_rng_permutation(&rng, want, 10);
  assert_memory_equal(ks_serial_iterator_order(it), want, sizeof want);

  /* 10 epochs = 100 indices = 33 full batches + 1 (34 batches: 102) */
  int64_t stream[200];
  int64_t total = run(it, 34, stream);
  assert_int_equal(total, 102);
  for (int e = 0; e < 10; e++) {
    assert_permutation(stream + 10 * e, 10);
    /* each epoch's order is the RNG's next permutation */
    if (e > 0)
      ks_rng_permutation(&rng, want, 10);
    assert_memory_equal(stream + 10 * e, want, sizeof want);
  }
  /* the orders are not all the same */
  int differ = 0;
  for (int e = 1; e < 10; e++)
    differ |= memcmp(stream, stream + 10 * e, 10 * sizeof *stream) != 0;
  assert_true(differ);
  assert_int_equal(ks_serial_iterator_epoch(it), 10);
  ks_serial_iterator_free(it);

  /* no repeat: one epoch of 3 + 3 + 3 + 1 covering everything once */
  assert_int_equal(ks_serial_iterator_new(&it, 10, 3, 0, 1, 7), KS_OK);
  total = run(it, 100, stream);
  assert_int_equal(total, 10);
  assert_permutation(stream, 10);
  assert_int_equal(ks_serial_iterator_epoch(it), 1);
  ks_serial_iterator_free(it);
}

static void test_iterator__seeds(void **state)
{
  (void)state;
  int64_t a[100], b[100], c[100];
  ks_serial_iterator *x = NULL, *y = NULL, *z = NULL;
  assert_int_equal(ks_serial_iterator_new(&x, 30, 7, 1, 1, 1234), KS_OK);
  assert_int_equal(ks_serial_iterator_new(&y, 30, 7, 1, 1, 1234), KS_OK);
  assert_int_equal(ks_serial_iterator_new(&z, 30, 7, 1, 1, 1235), KS_OK);
  assert_int_equal(run(x, 13, a), 91);
  assert_int_equal(run(y, 13, b), 91);
  assert_int_equal(run(z, 13, c), 91);
  assert_memory_equal(a, b, sizeof(int64_t) * 91);
  assert_memory_not_equal(a, c, sizeof(int64_t) * 30);
  assert_memory_not_equal(a + 30, c + 30, sizeof(int64_t) * 30);
  /* reset does not reseed: it draws the next permutation */
  ks_serial_iterator_reset(x);
  ks_serial_iterator_reset(y);
  assert_int_equal(run(x, 5, a), 35);
  assert_int_equal(run(y, 5, b), 35);
  assert_memory_equal(a, b, sizeof(int64_t) * 35);
  ks_serial_iterator_free(x);
  ks_serial_iterator_free(y);
  ks_serial_iterator_free(z);
}

static void compare_continuations(ks_serial_iterator *p, ks_serial_iterator *q, int steps)
{
  for (int s = 0; s < steps; s++) {
    const int64_t *i1, *i2;
    int64_t n1, n2;
    int r1 = ks_serial_iterator_next(p, &i1, &n1);
    int r2 = ks_serial_iterator_next(q, &i2, &n2);
    assert_int_equal(r1, r2);
    if (r1 != KS_OK)
      break;
    assert_int_equal(n1, n2);
    assert_memory_equal(i1, i2, (size_t)n1 * sizeof *i1);
    assert_int_equal(ks_serial_iterator_epoch(p), ks_serial_iterator_epoch(q));
    assert_int_equal(ks_serial_iterator_is_new_epoch(p), ks_serial_iterator_is_new_epoch(q));
    assert_true(ks_serial_iterator_epoch_detail(p) == ks_serial_iterator_epoch_detail(q));
    assert_true(ks_serial_iterator_previous_epoch_detail(p) ==
                ks_serial_iterator_previous_epoch_detail(q));
  }
}

static void test_iterator__state_roundtrip(void **state)
{
  (void)state;
  for (int shuffle = 0; shuffle < 2; shuffle++) {
    for (int repeat = 0; repeat < 2; repeat++) {
      ks_serial_iterator *p = NULL, *q = NULL;
      assert_int_equal(ks_serial_iterator_new(&p, 10, 3, repeat, shuffle, 99), KS_OK);
      assert_int_equal(ks_serial_iterator_new(&q, 10, 3, repeat, shuffle, 5), KS_OK);
      int64_t junk[64];
      run(p, 2, junk);   /* mid-epoch */
      ks_serial_iterator_state st;
      assert_int_equal(ks_serial_iterator_get_state(p, &st), KS_OK);
      assert_int_equal(st.current_position, 6);
      assert_int_equal(st.epoch, 0);
      assert_int_equal(st.previous_epoch, 0);
      assert_int_equal(st.previous_position, 3);
      assert_int_equal(st.order_size, shuffle ? 10 : 0);
      assert_int_equal(ks_serial_iterator_set_state(q, &st), KS_OK);
      compare_continuations(p, q, 25);
      ks_serial_iterator_free(p);
      ks_serial_iterator_free(q);
    }
  }

  /* restoring the state of a fresh iterator keeps previous_epoch_detail None */
  ks_serial_iterator *p = NULL, *q = NULL;
  assert_int_equal(ks_serial_iterator_new(&p, 10, 3, 1, 1, 3), KS_OK);
  assert_int_equal(ks_serial_iterator_new(&q, 10, 3, 1, 1, 4), KS_OK);
  int64_t junk[64];
  run(q, 5, junk);
  ks_serial_iterator_state st;
  ks_serial_iterator_get_state(p, &st);
  assert_int_equal(ks_serial_iterator_set_state(q, &st), KS_OK);
  check_fresh(q);
  compare_continuations(p, q, 10);

  /* bad states change nothing */
  ks_serial_iterator_get_state(p, &st);
  int64_t order[10];
  memcpy(order, st.order, sizeof order);
  ks_serial_iterator_state bad = st;
  bad.order = order;
  order[3] = order[4];
  assert_int_equal(ks_serial_iterator_set_state(q, &bad), KS_EFORMAT);
  assert_non_null(strstr(ks_error_last(), "permutation"));
  bad.order_size = 0;
  assert_int_equal(ks_serial_iterator_set_state(q, &bad), KS_ESHAPE);
  bad = st;
  bad.current_position = 11;
  assert_int_equal(ks_serial_iterator_set_state(q, &bad), KS_EFORMAT);
  bad = st;
  bad.epoch = -1;
  assert_int_equal(ks_serial_iterator_set_state(q, &bad), KS_EFORMAT);
  compare_continuations(p, q, 10);
  ks_serial_iterator_free(p);
  ks_serial_iterator_free(q);
}

/* A tiny key -> tensor store standing in for a snapshot file. */
typedef struct kv {
  char       key[8][32];
  ks_tensor *val[8];
  int        n;
  const char *drop;       /* get() reports this key as missing */
} kv;

static int kv_put(void *ud, const char *key, const ks_tensor *t)
{
  kv *s = ud;
  if (s->n == 8)
    return KS_ENOMEM;
  snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
  s->val[s->n++] = ks_tensor_clone(t);
  return KS_OK;
}

static int kv_get(void *ud, const char *key, const ks_tensor **t)
{
  kv *s = ud;
  if (s->drop && strcmp(key, s->drop) == 0)
    return ks_error_set(KS_ENOTFOUND, "snapshot has no %s", key);
  for (int k = 0; k < s->n; k++)
    if (strcmp(s->key[k], key) == 0) {
      *t = s->val[k];
      return KS_OK;
    }
  return ks_error_set(KS_ENOTFOUND, "snapshot has no %s", key);
}

static ks_tensor *kv_find(kv *s, const char *key)
{
  for (int k = 0; k < s->n; k++)
    if (strcmp(s->key[k], key) == 0)
      return s->val[k];
  return NULL;
}

static void kv_free(kv *s)
{
  for (int k = 0; k < s->n; k++)
    ks_tensor_free(s->val[k]);
  s->n = 0;
}

static void test_iterator__save_load_tensors(void **state)
{
  (void)state;
  ks_serial_iterator *p = NULL, *q = NULL;
  assert_int_equal(ks_serial_iterator_new(&p, 10, 4, 1, 1, 2024), KS_OK);
  assert_int_equal(ks_serial_iterator_new(&q, 10, 4, 1, 1, 1), KS_OK);
  int64_t junk[64];
  run(p, 4, junk);   /* 16 indices: epoch 1, position 6 */
  kv s = {0};
  assert_int_equal(ks_serial_iterator_save_state(p, kv_put, &s), KS_OK);
  assert_int_equal(s.n, 7);
  ks_tensor *t = kv_find(&s, "current_position");
  assert_non_null(t);
  assert_int_equal(t->dtype, KS_I32);
  assert_int_equal(t->ndim, 0);
  assert_int_equal(ks_tensor_i32(t)[0], 6);
  assert_int_equal(ks_tensor_i32(kv_find(&s, "epoch"))[0], 1);
  assert_int_equal(ks_tensor_i32(kv_find(&s, "is_new_epoch"))[0], 0);
  assert_int_equal(ks_tensor_i32(kv_find(&s, "previous_epoch"))[0], 1);
  assert_int_equal(ks_tensor_i32(kv_find(&s, "previous_position"))[0], 2);
  t = kv_find(&s, "order");
  assert_non_null(t);
  assert_int_equal(t->ndim, 1);
  assert_int_equal(t->shape[0], 10);
  for (int k = 0; k < 10; k++)
    assert_int_equal(ks_tensor_i32(t)[k], ks_serial_iterator_order(p)[k]);
  assert_int_equal(kv_find(&s, "rng_state")->shape[0], 8);

  /* a missing key is reported as get() said, and nothing changes */
  s.drop = "rng_state";
  assert_int_equal(ks_serial_iterator_load_state(q, kv_get, &s), KS_ENOTFOUND);
  assert_int_equal(ks_serial_iterator_epoch(q), 0);
  s.drop = NULL;
  /* wrong dtype / shape names the key */
  t = kv_find(&s, "order");
  t->dtype = KS_F32;
  assert_int_equal(ks_serial_iterator_load_state(q, kv_get, &s), KS_ESHAPE);
  assert_non_null(strstr(ks_error_last(), "order"));
  t->dtype = KS_I32;
  assert_int_equal(ks_serial_iterator_load_state(q, kv_get, &s), KS_OK);
  compare_continuations(p, q, 30);
  kv_free(&s);
  ks_serial_iterator_free(p);
  ks_serial_iterator_free(q);

  /* without shuffle there is no order key */
  assert_int_equal(ks_serial_iterator_new(&p, 10, 4, 0, 0, 0), KS_OK);
  assert_int_equal(ks_serial_iterator_save_state(p, kv_put, &s), KS_OK);
  assert_int_equal(s.n, 6);
  assert_null(kv_find(&s, "order"));
  kv_free(&s);
  ks_serial_iterator_free(p);
}

static void test_iterator__bad_arguments(void **state)
{
  (void)state;
  ks_serial_iterator *it = (ks_serial_iterator *)1;
  assert_int_equal(ks_serial_iterator_new(&it, 10, 0, 1, 0, 0), KS_EINVAL);
  assert_null(it);
  assert_non_null(strstr(ks_error_last(), "batch_size"));
  assert_int_equal(ks_serial_iterator_new(&it, -1, 3, 0, 0, 0), KS_EINVAL);
  assert_int_equal(ks_serial_iterator_new(&it, 0, 3, 1, 1, 0), KS_EINVAL);
  /* an empty dataset is refused without repeat too (Chainer would hang) */
  assert_int_equal(ks_serial_iterator_new(&it, 0, 3, 0, 0, 0), KS_EINVAL);
  assert_int_equal(ks_serial_iterator_new(NULL, 10, 3, 1, 1, 0), KS_EINVAL);
  assert_int_equal(ks_serial_iterator_new(&it, 10, 3, 1, 1, 0), KS_OK);
  int64_t n;
  assert_int_equal(ks_serial_iterator_next(it, NULL, &n), KS_EINVAL);
  ks_serial_iterator_free(it);
  ks_serial_iterator_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_iterator__repeat_sequence),
    cmocka_unit_test(test_iterator__no_repeat_sequence),
    cmocka_unit_test(test_iterator__batch_larger_than_dataset),
    cmocka_unit_test(test_iterator__shuffle_covers_each_index_once),
    cmocka_unit_test(test_iterator__seeds),
    cmocka_unit_test(test_iterator__state_roundtrip),
    cmocka_unit_test(test_iterator__save_load_tensors),
    cmocka_unit_test(test_iterator__bad_arguments),
  };
  return cmocka_run_group_tests_name("iterator", tests, NULL, NULL);
}
