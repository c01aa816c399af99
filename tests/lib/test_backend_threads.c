/*
 * tests/lib/test_backend_threads.c — the CPU backend's GEMM splits products
 * into panels run on kusari's thread pool. Results must not depend on the
 * thread count (the panels depend only on the shape), and must match a plain
 * double-precision product.
 */
#include "testutil.h"
#include "backend/pool.h" /* ks__parallel_for */

#include <pthread.h>
#include <stdatomic.h>

#include <stdlib.h>

typedef struct { int64_t m, n, k; int ta, tb; } gemm_case;

static const gemm_case cases[] = {
  {128, 100, 784, 0, 1}, {128, 100, 100, 0, 1}, {128, 10, 100, 0, 1}, {100, 784, 128, 1, 0},
  {100, 100, 128, 1, 0}, {128, 784, 100, 0, 0}, {128, 100, 100, 0, 0}, {1000, 784, 100, 1, 0},
  {100, 1000, 784, 0, 1}, {7, 3, 5, 0, 0},      {333, 257, 129, 1, 1},
  /* cut along the reduction dimension (k much larger than m and n), all transposes */
  {150, 70, 1000, 0, 0},  {150, 70, 1000, 1, 0}, {150, 70, 1000, 0, 1}, {150, 70, 1000, 1, 1},
  {64, 64, 4096, 0, 1},
  /* one row or one column of C: the matrix-vector path */
  {1, 100, 784, 0, 1},    {1, 100, 784, 0, 0},   {1, 37, 50, 1, 1},   {1, 37, 50, 1, 0},
  {100, 1, 784, 0, 0},    {100, 1, 784, 1, 0},   {37, 1, 50, 0, 1},   {37, 1, 50, 1, 1},
  {1, 1, 9, 0, 0},
};

static void fill(float *x, int64_t n, uint64_t seed) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(ks_rng_uniform(&rng) - 0.5);
}

static void test_backend__gemm_same_bits_on_any_thread_count(void **state) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  int saved = ks_get_num_threads();
  for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
    gemm_case g = cases[s];
    int64_t lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
    float *a = malloc(sizeof(float) * (size_t)(g.m * g.k));
    float *b = malloc(sizeof(float) * (size_t)(g.k * g.n));
    float *c[3];
    fill(a, g.m * g.k, 1 + s);
    fill(b, g.k * g.n, 100 + s);
    for (int t = 0; t < 3; t++) {
      c[t] = malloc(sizeof(float) * (size_t)(g.m * g.n));
      fill(c[t], g.m * g.n, 7); /* beta = 0.5 reads C */
      ks_set_num_threads(t + 1);
      be->gemm(g.ta, g.tb, g.m, g.n, g.k, 1.5f, a, lda, b, ldb, 0.5f, c[t], g.n);
    }
    /* against a double-precision reference */
    float *c0 = malloc(sizeof(float) * (size_t)(g.m * g.n));
    fill(c0, g.m * g.n, 7);
    for (int64_t i = 0; i < g.m; i++)
      for (int64_t j = 0; j < g.n; j++) {
        double acc = 0;
        for (int64_t p = 0; p < g.k; p++) {
          double av = g.ta ? a[p * lda + i] : a[i * lda + p];
          double bv = g.tb ? b[j * ldb + p] : b[p * ldb + j];
          acc += av * bv;
        }
        double want = 1.5 * acc + 0.5 * c0[i * g.n + j];
        if (fabs(c[0][i * g.n + j] - want) > 1e-4 * (1 + fabs(want)))
          fail_msg("gemm %lldx%lldx%lld ta=%d tb=%d: C[%lld,%lld] = %g, want %g", (long long)g.m,
                   (long long)g.n, (long long)g.k, g.ta, g.tb, (long long)i, (long long)j,
                   c[0][i * g.n + j], want);
      }
    for (int t = 1; t < 3; t++)
      if (memcmp(c[0], c[t], sizeof(float) * (size_t)(g.m * g.n)) != 0)
        fail_msg("gemm %lldx%lldx%lld ta=%d tb=%d: %d threads differ from 1 thread",
                 (long long)g.m, (long long)g.n, (long long)g.k, g.ta, g.tb, t + 1);
    for (int t = 0; t < 3; t++) free(c[t]);
    free(c0);
    free(a);
    free(b);
  }
  ks_set_num_threads(saved);
}

/* The matrix-vector path with leading dimensions wider than the rows, and
 * beta = 0 over a C full of NaN: BLAS semantics say C is not read then. */
static void test_backend__gemv_path_strides_and_beta0(void **state) {
  (void)state;
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  enum { K = 19, L = 23, PAD = 5 };
  for (int s = 0; s < 8; s++) {
    const int ta = s & 1, tb = (s >> 1) & 1, row = (s >> 2) & 1; /* row: m == 1, else n == 1 */
    const int64_t m = row ? 1 : L, n = row ? L : 1;
    const int64_t lda = (ta ? m : K) + PAD, ldb = (tb ? K : n) + PAD, ldc = n + PAD;
    float a[(K + PAD) * (L + PAD)], b[(K + PAD) * (L + PAD)], c[(L + PAD) * (L + PAD)];
    fill(a, (int64_t)(sizeof a / sizeof *a), 11 + s);
    fill(b, (int64_t)(sizeof b / sizeof *b), 21 + s);
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) c[i] = NAN;
    be->gemm(ta, tb, m, n, K, 2.0f, a, lda, b, ldb, 0.0f, c, ldc);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t p = 0; p < K; p++)
          acc += (double)(ta ? a[p * lda + i] : a[i * lda + p]) *
                 (double)(tb ? b[j * ldb + p] : b[p * ldb + j]);
        const float got = c[i * ldc + j];
        if (!(fabs(got - 2.0 * acc) <= 1e-5 * (1 + fabs(2.0 * acc))))
          fail_msg("gemv path ta=%d tb=%d m=%lld n=%lld: C[%lld,%lld] = %g, want %g", ta, tb,
                   (long long)m, (long long)n, (long long)i, (long long)j, got, 2.0 * acc);
      }
    /* elements outside C (the padding) are not written */
    if (row) {
      for (int64_t j = n; j < ldc; j++) assert_true(isnan(c[j]));
    } else {
      for (int64_t i = 0; i < m; i++)
        for (int64_t j = 1; j < ldc && i * ldc + j < (int64_t)(sizeof c / sizeof *c); j++)
          assert_true(isnan(c[i * ldc + j]));
    }
  }
}

/* A product cut by depth from a thread that then exits: its scratch block is
 * freed with it (LeakSanitizer, in the sanitizer build, fails the test
 * otherwise — a scoring server's request threads do exactly this). */
static void *depth_cut_in_thread(void *arg) {
  float *c = arg;
  enum { M = 64, N = 64, K = 4096 };
  float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
  fill(a, M * K, 5);
  fill(b, K * N, 6);
  ks_backend_for_device(KS_CPU)->gemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
  free(a);
  free(b);
  return NULL;
}

static void test_backend__depth_scratch_freed_with_thread(void **state) {
  (void)state;
  float *c = malloc(sizeof(float) * 64 * 64), *c2 = malloc(sizeof(float) * 64 * 64);
  for (int round = 0; round < 3; round++) {
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, depth_cut_in_thread, c), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
  }
  depth_cut_in_thread(c2); /* the same product on this thread: the same bits */
  assert_memory_equal(c, c2, sizeof(float) * 64 * 64);
  free(c);
  free(c2);
}

static void test_backend__thread_count_setting(void **state) {
  int saved = ks_get_num_threads();
  assert_true(saved >= 1);
  ks_set_num_threads(3);
  assert_int_equal(ks_get_num_threads(), 3);
  ks_set_num_threads(0); /* clamps to 1 */
  assert_int_equal(ks_get_num_threads(), 1);
  ks_set_num_threads(saved);
}

/* ---- the pool: every task runs exactly once, from one or many callers ---- */

typedef struct { _Atomic int hits[4096]; int64_t n; } count_job;

static void count_task(void *arg, int64_t t) {
  count_job *j = arg;
  atomic_fetch_add(&j->hits[t], 1);
}

static void check_once(count_job *j) {
  for (int64_t t = 0; t < j->n; t++)
    if (atomic_load(&j->hits[t]) != 1)
      fail_msg("task %lld ran %d times", (long long)t, atomic_load(&j->hits[t]));
}

static void test_pool__each_task_once(void **state) {
  static count_job j;
  const int64_t sizes[] = {1, 2, 3, 17, 1000, 4096};
  for (int threads = 1; threads <= 4; threads++)
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int rep = 0; rep < 20; rep++) {
        memset(&j, 0, sizeof j);
        j.n = sizes[s];
        ks__parallel_for(j.n, threads, count_task, &j);
        check_once(&j);
      }
}

static void *caller(void *arg) {
  count_job *j = arg;
  for (int rep = 0; rep < 200; rep++) {
    for (int64_t t = 0; t < j->n; t++) atomic_store(&j->hits[t], 0);
    ks__parallel_for(j->n, 3, count_task, j);
    for (int64_t t = 0; t < j->n; t++)
      if (atomic_load(&j->hits[t]) != 1) return (void *)1;
  }
  return NULL;
}

/* several threads submitting jobs at once (a scoring server's request
 * threads): one gets the pool, the others run their tasks themselves */
static void test_pool__concurrent_callers(void **state) {
  static count_job jobs[4];
  pthread_t tid[4];
  for (int i = 0; i < 4; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].n = 257 + i;
    assert_int_equal(pthread_create(&tid[i], NULL, caller, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    void *rv;
    pthread_join(tid[i], &rv);
    assert_null(rv);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_backend__gemm_same_bits_on_any_thread_count),
    cmocka_unit_test(test_backend__gemv_path_strides_and_beta0),
    cmocka_unit_test(test_backend__depth_scratch_freed_with_thread),
    cmocka_unit_test(test_backend__thread_count_setting),
    cmocka_unit_test(test_pool__each_task_once),
    cmocka_unit_test(test_pool__concurrent_callers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
