/*
 * kusari/gradient_check.h — numerical check of a function's backward
 * (chainer.gradient_check.check_backward).
 *
 * ks_check_backward(fn, user, n_in, x, gy, opts) builds y = fn(x) in a
 * private ctx, runs ks_backward with y's gradient set to gy, and compares the
 * analytic gradient of every float32 input with a central finite difference of
 * L(x) = sum(y * gy):
 *
 *   numeric_k = (L(x + h e_k) - L(x - h e_k)) / (x_k+ - x_k-)
 *
 * The perturbed forwards run in float32 (the code under test), but L is summed
 * in double and the denominator is the exact difference of the two float32
 * perturbed values, so the only errors are float32 rounding of y and the
 * O(h^2) truncation term. Per element, |analytic - numeric| must be
 * <= atol + rtol * |numeric|.
 *
 * Defaults (KS_CHECK_DEFAULTS) and why: eps = 1e-2, atol = 1e-3, rtol = 1e-2.
 * Chainer's defaults (eps 1e-3, atol 1e-5, rtol 1e-4) assume the perturbed
 * forwards run in float64 (its dtype= argument); ours run the float32 code
 * under test. Rounding of float32 outputs adds about 1e-7 * |y| * |gy| *
 * sqrt(size) / (2 eps) to the quotient, ~1e-5 at eps = 1e-2 for inputs in
 * [-1, 1] (it would be ~1e-4 at eps = 1e-3), and truncation adds
 * eps^2 / 6 * |f'''| ~ 2e-5, so 1e-2 balances the two and the defaults leave
 * a margin of ~50x; the suite also passes with atol 1e-4 / rtol 1e-3 on
 * softmax cross entropy. A wrong backward is typically off by O(|gradient|).
 * Functions with kinks (relu, leaky_relu) must be given inputs farther than
 * eps from the kink, as Chainer's tests do.
 *
 * Unlike Chainer, which checks one directional derivative along a random
 * vector, every element of every float32 input is checked (2 forwards per
 * element), so a failure names the element; keep test inputs small (tens to
 * a few hundred elements). Inputs of dtype
 * int32 (labels) and those listed in opts->no_grad are passed but not checked.
 * Before every call of fn the private ctx is re-seeded with opts->seed, so
 * functions that draw random numbers (dropout) see the same stream in the
 * analytic and every numeric evaluation. The ctx is in train mode unless
 * opts->test_mode.
 */
#ifndef KUSARI_GRADIENT_CHECK_H
#define KUSARI_GRADIENT_CHECK_H

#include "kusari/var.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the output from the input variables in[0..n_in-1]; returns NULL on
 * failure (error set). 'user' is passed through. */
typedef ks_var *(*ks_check_fn)(ks_ctx *ctx, ks_var *const *in, int n_in, void *user);

typedef struct ks_check_opts {
  double eps;          /* finite-difference step h                     */
  double atol, rtol;   /* per-element tolerance                         */
  uint64_t seed;       /* ctx RNG seed before every call of fn          */
  int test_mode;       /* run fn with ks_ctx_set_train(ctx, 0)          */
  const int *no_grad;  /* n_in flags (or NULL): 1 = do not check input i */
} ks_check_opts;

#define KS_CHECK_DEFAULTS ((ks_check_opts){1e-2, 1e-3, 1e-2, 0, 0, NULL})

/* Checks fn's backward at x (n_in tensors, not modified). gy: the gradient of
 * the output (its shape), or NULL for a random one drawn from opts->seed.
 * opts NULL: KS_CHECK_DEFAULTS. Returns KS_OK, or KS_EINVAL with a message
 * "check_backward: input 1 element 3 (of 12): analytic 0.51 vs numeric 0.49
 * (|diff| 0.02 > atol 0.001 + rtol 0.01 * |numeric|)", or the error of fn /
 * backward when those fail. */
int ks_check_backward(ks_check_fn fn, void *user, int n_in, const ks_tensor *const *x,
                      const ks_tensor *gy, const ks_check_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
