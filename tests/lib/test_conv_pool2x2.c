/*
 * tests/lib/test_conv_pool2x2.c — the 2x2 stride-2 max pooling kernels of
 * src/backend/cpu_conv.c against the definition (maximum over the window,
 * offset of the first maximum in (ky, kx) order), on inputs full of ties:
 * the flat path over stacks of even-sized planes (blocks of planes per task,
 * segments of output rows that cross plane boundaries) and the per-row path
 * of odd sizes (cover_all). Results must be the same bits on 1..3 threads.
 */
#include "testutil.h"

#include <stdlib.h>

static void check_geom(const ks_conv_geom *g, uint64_t seed) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  const int saved = ks_get_num_threads();
  const int64_t planes = g->n * g->c, hw = g->h * g->w, ohw = g->oh * g->ow;
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  float *x = malloc(sizeof(float) * (size_t)(planes * hw));
  /* few distinct values: most windows hold ties */
  for (int64_t i = 0; i < planes * hw; i++) x[i] = (float)ks_rng_below(&rng, 4) - 1.5f;
  float *y[3];
  int32_t *idx[3];
  for (int t = 0; t < 3; t++) {
    ks_set_num_threads(t + 1);
    y[t] = malloc(sizeof(float) * (size_t)(planes * ohw));
    idx[t] = malloc(sizeof(int32_t) * (size_t)(planes * ohw));
    be->max_pool2d_forward(g, x, y[t], idx[t]);
  }
  ks_set_num_threads(saved);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t oy = 0; oy < g->oh; oy++)
      for (int64_t ox = 0; ox < g->ow; ox++) {
        float best = -INFINITY;
        int32_t bi = -1;
        for (int64_t iy = 2 * oy; iy < 2 * oy + 2 && iy < g->h; iy++)
          for (int64_t ix = 2 * ox; ix < 2 * ox + 2 && ix < g->w; ix++)
            if (bi < 0 || x[p * hw + iy * g->w + ix] > best) {
              best = x[p * hw + iy * g->w + ix];
              bi = (int32_t)(iy * g->w + ix);
            }
        const int64_t o = p * ohw + oy * g->ow + ox;
        if (y[0][o] != best || idx[0][o] != bi)
          fail_msg("%lldx%lld planes: plane %lld output (%lld, %lld): got %g at %d, want %g at %d",
                   (long long)g->h, (long long)g->w, (long long)p, (long long)oy, (long long)ox,
                   y[0][o], idx[0][o], best, bi);
      }
  for (int t = 1; t < 3; t++)
    if (memcmp(y[0], y[t], sizeof(float) * (size_t)(planes * ohw)) ||
        memcmp(idx[0], idx[t], sizeof(int32_t) * (size_t)(planes * ohw)))
      fail_msg("%lldx%lld planes: %d threads differ from 1 thread", (long long)g->h,
               (long long)g->w, t + 1);
  for (int t = 0; t < 3; t++) {
    free(y[t]);
    free(idx[t]);
  }
  free(x);
}

static void test_conv_pool2x2__against_definition(void **state) {
  (void)state;
  const ks_conv_geom geoms[] = {
    {100, 8, 24, 24, 2, 2, 2, 2, 0, 0, 1, 1, 12, 12}, /* MNIST pool 1 (flat, 14 planes a task) */
    {37, 9, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1, 4, 4},      /* MNIST pool 2, partial last task */
    {2, 3, 14, 600, 2, 2, 2, 2, 0, 0, 1, 1, 7, 300},  /* segments of 3 rows across planes */
    {1, 2, 2, 4096, 2, 2, 2, 2, 0, 0, 1, 1, 1, 2048}, /* one output row per segment */
    {3, 4, 9, 11, 2, 2, 2, 2, 0, 0, 1, 1, 5, 6},      /* odd sizes, cover_all: per-row path */
    {2, 2, 10, 6, 2, 2, 2, 2, 0, 0, 1, 1, 5, 3},      /* even, odd outputs */
  };
  for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++) check_geom(&geoms[i], 40 + i);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_conv_pool2x2__against_definition),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
