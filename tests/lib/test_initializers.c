/*
 * tests/lib/test_initializers.c — Chainer's initializers: statistics of
 * large draws against the formulas (std = scale*sqrt(1/fan_in) for
 * LeCunNormal, bounds of the uniform kinds), reproducibility for a seed,
 * constants, fans, and errors.
 */
#include "testutil.h"
#include "kusari/initializers.h"

#include <stdlib.h>

static void moments(const float *x, int64_t n, double *mean, double *std) {
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) { s += x[i]; s2 += (double)x[i] * x[i]; }
  *mean = s / (double)n;
  *std = sqrt(s2 / (double)n - *mean * *mean);
}

static void check_normal(ks_initializer init, int64_t out, int64_t in, double want_std) {
  ks_tensor *t = ks_tensor_new(KS_F32, 2, (int64_t[]){out, in});
  ks_rng rng;
  ks_rng_seed(&rng, 42);
  TU_OK(ks_initializer_apply(&init, t, &rng));
  double mean, std;
  moments(ks_tensor_f32(t), t->size, &mean, &std);
  /* n = out*in >= 256k: the sample std is within ~0.3% of the true one */
  assert_true(fabs(std - want_std) < 0.01 * want_std);
  assert_true(fabs(mean) < 0.01 * want_std);
  ks_tensor_free(t);
}

static void check_uniform(ks_initializer init, int64_t out, int64_t in, double bound) {
  ks_tensor *t = ks_tensor_new(KS_F32, 2, (int64_t[]){out, in});
  ks_rng rng;
  ks_rng_seed(&rng, 7);
  TU_OK(ks_initializer_apply(&init, t, &rng));
  const float *d = ks_tensor_f32(t);
  double lo = 1e9, hi = -1e9, mean, std;
  for (int64_t i = 0; i < t->size; i++) { lo = fmin(lo, d[i]); hi = fmax(hi, d[i]); }
  assert_true(lo >= -bound - 1e-7 && hi <= bound + 1e-7);
  assert_true(lo < -0.99 * bound && hi > 0.99 * bound); /* spans the range */
  moments(d, t->size, &mean, &std);
  assert_true(fabs(std - bound / sqrt(3.0)) < 0.01 * bound); /* U[-b,b] std = b/sqrt(3) */
  ks_tensor_free(t);
}

static void test_initializers__lecun_normal_std(void **state) {
  (void)state;
  check_normal(ks_init_lecun_normal(1.0), 1000, 784, sqrt(1.0 / 784));
  check_normal(ks_init_lecun_normal(2.0), 512, 1000, 2.0 * sqrt(1.0 / 1000));
}

static void test_initializers__other_normals(void **state) {
  (void)state;
  check_normal(ks_init_normal(0.05), 600, 500, 0.05);
  check_normal(ks_init_he_normal(1.0), 600, 500, sqrt(2.0 / 500));
  ks_initializer he_out = ks_init_he_normal(1.0);
  he_out.fan_out = 1;
  check_normal(he_out, 600, 500, sqrt(2.0 / 600));
  check_normal(ks_init_glorot_normal(1.0), 600, 500, sqrt(2.0 / 1100));
}

static void test_initializers__uniforms(void **state) {
  (void)state;
  check_uniform(ks_init_uniform(0.05), 600, 500, 0.05);
  check_uniform(ks_init_glorot_uniform(1.0), 600, 500, sqrt(6.0 / 1100));
  check_uniform(ks_init_lecun_uniform(1.0), 600, 500, sqrt(3.0 / 500));
  check_uniform(ks_init_he_uniform(1.0), 600, 500, sqrt(6.0 / 500));
}

static void test_initializers__same_seed_same_values(void **state) {
  (void)state;
  int64_t shape[2] = {100, 784};
  ks_tensor *a = ks_tensor_new(KS_F32, 2, shape), *b = ks_tensor_new(KS_F32, 2, shape),
            *c = ks_tensor_new(KS_F32, 2, shape);
  ks_initializer init = ks_init_lecun_normal(1.0);
  ks_rng r1, r2, r3;
  ks_rng_seed(&r1, 123);
  ks_rng_seed(&r2, 123);
  ks_rng_seed(&r3, 124);
  TU_OK(ks_initializer_apply(&init, a, &r1));
  TU_OK(ks_initializer_apply(&init, b, &r2));
  TU_OK(ks_initializer_apply(&init, c, &r3));
  assert_memory_equal(a->data, b->data, ks_tensor_nbytes(a));
  assert_true(memcmp(a->data, c->data, ks_tensor_nbytes(a)) != 0);
  ks_tensor_free(a);
  ks_tensor_free(b);
  ks_tensor_free(c);
}

static void test_initializers__constants(void **state) {
  (void)state;
  ks_tensor *t = ks_tensor_new(KS_F32, 1, (int64_t[]){37});
  float *d = ks_tensor_f32(t);
  ks_initializer z = ks_init_zero(), o = ks_init_one(), c = ks_init_constant(-2.5);
  for (int i = 0; i < 37; i++) d[i] = 9.0f;
  TU_OK(ks_initializer_apply(&z, t, NULL));
  for (int i = 0; i < 37; i++) assert_true(d[i] == 0.0f);
  TU_OK(ks_initializer_apply(&o, t, NULL));
  for (int i = 0; i < 37; i++) assert_true(d[i] == 1.0f);
  TU_OK(ks_initializer_apply(&c, t, NULL));
  for (int i = 0; i < 37; i++) assert_true(d[i] == -2.5f);
  ks_tensor_free(t);
}

static void test_initializers__fans(void **state) {
  (void)state;
  double fi, fo;
  TU_OK(ks_initializer_fans(2, (int64_t[]){10, 20}, &fi, &fo));
  assert_true(fi == 20 && fo == 10);
  TU_OK(ks_initializer_fans(4, (int64_t[]){8, 3, 5, 5}, &fi, &fo)); /* conv (out, in, kh, kw) */
  assert_true(fi == 75 && fo == 200);
  assert_int_equal(ks_initializer_fans(1, (int64_t[]){10}, &fi, &fo), KS_ESHAPE);
}

static void test_initializers__errors(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 1);
  ks_initializer lecun = ks_init_lecun_normal(1.0);
  ks_tensor *v = ks_tensor_new(KS_F32, 1, (int64_t[]){5});
  assert_int_equal(ks_initializer_apply(&lecun, v, &rng), KS_ESHAPE);
  tu_assert_error(KS_ESHAPE, "LeCunNormal", "rank");
  ks_tensor *i32 = ks_tensor_new(KS_I32, 2, (int64_t[]){2, 2});
  assert_int_equal(ks_initializer_apply(&lecun, i32, &rng), KS_EINVAL);
  ks_initializer bad = {(ks_initializer_kind)99, 0, 0};
  assert_int_equal(ks_initializer_apply(&bad, v, &rng), KS_EINVAL);
  ks_initializer normal = ks_init_normal(0.05);
  assert_int_equal(ks_initializer_apply(&normal, v, NULL), KS_EINVAL); /* needs an rng */
  char buf[64];
  assert_string_equal(ks_initializer_str(&lecun, buf, sizeof buf), "LeCunNormal(scale=1)");
  ks_tensor_free(v);
  ks_tensor_free(i32);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_initializers__lecun_normal_std),
    cmocka_unit_test(test_initializers__other_normals),
    cmocka_unit_test(test_initializers__uniforms),
    cmocka_unit_test(test_initializers__same_seed_same_values),
    cmocka_unit_test(test_initializers__constants),
    cmocka_unit_test(test_initializers__fans),
    cmocka_unit_test(test_initializers__errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
