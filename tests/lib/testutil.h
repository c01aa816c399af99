/*
 * tests/lib/testutil.h — small helpers shared by the libkusari unit tests:
 * cmocka includes, random input tensors, closeness checks against double
 * references, and error-message assertions. Header-only (static functions).
 */
#ifndef KUSARI_TESTUTIL_H
#define KUSARI_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kusari/kusari.h"

/* Asserts that an int-returning libkusari call succeeded, printing the message. */
#define TU_OK(expr)                                                                        \
  do {                                                                                     \
    int tu_rc_ = (expr);                                                                   \
    if (tu_rc_ != KS_OK) fail_msg("%s -> %s: %s", #expr, ks_status_name(tu_rc_), ks_error_last()); \
  } while (0)

/* Asserts that a pointer-returning libkusari call succeeded. */
#define TU_NONNULL(expr)                                                                   \
  do {                                                                                     \
    if (!(expr)) fail_msg("%s returned NULL: %s", #expr, ks_error_last());                \
  } while (0)

/* Heap tensor with uniform values in [lo, hi). */
static inline ks_tensor *tu_uniform(ks_rng *rng, int ndim, const int64_t *shape, double lo,
                                    double hi) {
  ks_tensor *t = ks_tensor_new(KS_F32, ndim, shape);
  assert_non_null(t);
  float *d = ks_tensor_f32(t);
  for (int64_t i = 0; i < t->size; i++) d[i] = (float)(lo + (hi - lo) * ks_rng_uniform(rng));
  return t;
}

/* Uniform in [-hi, -gap] U [gap, hi]: keeps inputs away from kinks at 0. */
static inline ks_tensor *tu_away(ks_rng *rng, int ndim, const int64_t *shape, double gap,
                                 double hi) {
  ks_tensor *t = ks_tensor_new(KS_F32, ndim, shape);
  assert_non_null(t);
  float *d = ks_tensor_f32(t);
  for (int64_t i = 0; i < t->size; i++) {
    double m = gap + (hi - gap) * ks_rng_uniform(rng);
    d[i] = (float)(ks_rng_uniform(rng) < 0.5 ? -m : m);
  }
  return t;
}

/* int32 labels in [0, c) of length n; every 'ignore_every'-th (if > 0) set to -1. */
static inline ks_tensor *tu_labels(ks_rng *rng, int64_t n, int64_t c, int ignore_every) {
  ks_tensor *t = ks_tensor_new(KS_I32, 1, (int64_t[]){n});
  assert_non_null(t);
  int32_t *d = ks_tensor_i32(t);
  for (int64_t i = 0; i < n; i++) {
    d[i] = (int32_t)ks_rng_below(rng, (uint64_t)c);
    if (ignore_every > 0 && i % ignore_every == ignore_every - 1) d[i] = -1;
  }
  return t;
}

/* Heap float32 tensor from a literal list. */
static inline ks_tensor *tu_f32(int ndim, const int64_t *shape, const float *v) {
  ks_tensor *t = ks_tensor_from_data(KS_F32, ndim, shape, v);
  assert_non_null(t);
  return t;
}

/* Fails with the first element where |got - want| > atol + rtol * |want|. */
static inline void tu_assert_close_(const float *got, const double *want, int64_t n, double atol,
                                    double rtol, const char *what, const char *file, int line) {
  for (int64_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    if (!(fabs(g - w) <= atol + rtol * fabs(w))) {
      print_error("%s: element %lld: got %.9g, want %.9g (atol %g rtol %g)\n", what,
                  (long long)i, g, w, atol, rtol);
      _fail(file, line);
    }
  }
}
#define tu_assert_close(got, want, n, atol, rtol, what) \
  tu_assert_close_(got, want, n, atol, rtol, what, __FILE__, __LINE__)

/* Asserts that the last error has 'code' and that its message contains each
 * of the NULL-terminated substrings. */
static inline void tu_assert_error_(int code, const char *file, int line, ...) {
  if (ks_error_last_code() != code) {
    print_error("expected %s, got %s: %s\n", ks_status_name(code),
                ks_status_name(ks_error_last_code()), ks_error_last());
    _fail(file, line);
  }
  va_list ap;
  va_start(ap, line);
  for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
    if (!strstr(ks_error_last(), s)) {
      print_error("message \"%s\" lacks \"%s\"\n", ks_error_last(), s);
      va_end(ap);
      _fail(file, line);
    }
  }
  va_end(ap);
}
#define tu_assert_error(code, ...) tu_assert_error_(code, __FILE__, __LINE__, __VA_ARGS__, NULL)

#endif
