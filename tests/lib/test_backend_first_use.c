/*
 * tests/lib/test_backend_first_use.c — the CPU backend's lazily initialized
 * settings (the thread count read from the environment, OpenBLAS switched to
 * one thread, the processor count that sizes GEMM panels) must be safe when
 * several threads make their first product at the same moment, as a scoring
 * server's request threads do. A program of its own, so that nothing has
 * touched the backend before the threads start; run under ThreadSanitizer
 * (scripts/test.sh, stage "threaded unit tests") it reports any data race on
 * that first use, and the results are checked against a double reference.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NT 4
#define M 96
#define K 160
#define N 96 /* 2*M*N*K > 1e6 flops: the product is cut into panels */

static float g_a[M * K], g_b[K * N];
static float g_c[NT][M * N];
static atomic_int g_ready;
static int g_threads_seen[NT];

static void *first_product(void *arg) {
  int id = (int)(intptr_t)arg;
  /* start together: every thread spins until all are running */
  atomic_fetch_add(&g_ready, 1);
  while (atomic_load(&g_ready) < NT) {
  }
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  be->gemm(0, 0, M, N, K, 1.0f, g_a, K, g_b, N, 0.0f, g_c[id], N);
  g_threads_seen[id] = ks_get_num_threads();
  return NULL;
}

static void test_first_use__concurrent_first_products(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  for (int i = 0; i < M * K; i++) g_a[i] = (float)(ks_rng_uniform(&rng) - 0.5);
  for (int i = 0; i < K * N; i++) g_b[i] = (float)(ks_rng_uniform(&rng) - 0.5);
  pthread_t th[NT];
  for (int t = 0; t < NT; t++) assert_int_equal(pthread_create(&th[t], NULL, first_product, (void *)(intptr_t)t), 0);
  for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double want = 0;
      for (int p = 0; p < K; p++) want += (double)g_a[i * K + p] * g_b[p * N + j];
      for (int t = 0; t < NT; t++)
        if (fabs(g_c[t][i * N + j] - want) > 1e-4 * (1 + fabs(want)))
          fail_msg("thread %d: C[%d,%d] = %g, want %g", t, i, j, g_c[t][i * N + j], want);
    }
  /* every thread saw the same, initialized thread count */
  for (int t = 0; t < NT; t++) {
    assert_true(g_threads_seen[t] >= 1);
    assert_int_equal(g_threads_seen[t], g_threads_seen[0]);
  }
}

/* ks_set_num_threads while other threads read the count (a trainer's
 * kernels and a thread changing the setting) is not a data race either. */
static atomic_int g_stop;
static void *reader(void *arg) {
  (void)arg;
  while (!atomic_load(&g_stop)) assert_true(ks_get_num_threads() >= 1);
  return NULL;
}

static void test_first_use__set_while_reading(void **state) {
  (void)state;
  int saved = ks_get_num_threads();
  pthread_t r;
  assert_int_equal(pthread_create(&r, NULL, reader, NULL), 0);
  for (int i = 0; i < 200; i++) ks_set_num_threads(1 + i % 3);
  atomic_store(&g_stop, 1);
  pthread_join(r, NULL);
  ks_set_num_threads(saved);
}

int main(void) {
  /* the first test must be the first use of the backend in this process */
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_first_use__concurrent_first_products),
    cmocka_unit_test(test_first_use__set_while_reading),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
