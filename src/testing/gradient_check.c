/*
 * src/testing/gradient_check.c — ks_check_backward, the finite-difference
 * check of a function's backward (see kusari/gradient_check.h for the method
 * and the choice of tolerances). Host (CPU) tensors only.
 */
#include "kusari/gradient_check.h"
#include "kusari/backend.h"
#include "kusari/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KS_CHECK_MAX_IN 8

typedef struct check_state {
  ks_check_fn fn;
  void *user;
  int n_in;
  ks_ctx *ctx;
  ks_tensor *xs[KS_CHECK_MAX_IN]; /* mutable heap copies of the inputs */
  int checked[KS_CHECK_MAX_IN];
  ks_check_opts o;
} check_state;

/* Fresh graph over st->xs; requires_grad on the checked inputs when 'grad'. */
static ks_var *forward(check_state *st, ks_var **vars, int grad) {
  ks_ctx_reset(st->ctx);
  ks_ctx_seed(st->ctx, st->o.seed);
  ks_ctx_set_train(st->ctx, !st->o.test_mode);
  ks_ctx_set_backprop(st->ctx, grad);
  for (int i = 0; i < st->n_in; i++) {
    vars[i] = ks_var_new(st->ctx, st->xs[i], grad && st->checked[i]);
    if (!vars[i]) return NULL;
  }
  ks_var *y = st->fn(st->ctx, vars, st->n_in, st->user);
  if (!y) {
    if (ks_error_last_code() == KS_OK)
      ks_error_set(KS_EINVAL, "check_backward: the function returned NULL without an error");
    return NULL;
  }
  if (y->data->dtype != KS_F32) {
    ks_error_set(KS_EINVAL, "check_backward: the output must be float32, got %s",
                 ks_dtype_name(y->data->dtype));
    return NULL;
  }
  return y;
}

/* L = sum(y * gy) in double */
static int loss_at(check_state *st, const float *gy, int64_t n, double *out) {
  ks_var *vars[KS_CHECK_MAX_IN];
  ks_var *y = forward(st, vars, 0);
  if (!y) return ks_error_last_code();
  if (y->data->size != n)
    return ks_error_set(KS_EINVAL, "check_backward: output size changed from %lld to %lld "
                        "under perturbation", (long long)n, (long long)y->data->size);
  const float *yd = ks_tensor_f32(y->data);
  double s = 0.0;
  for (int64_t k = 0; k < n; k++) s += (double)yd[k] * (double)gy[k];
  *out = s;
  return KS_OK;
}

int ks_check_backward(ks_check_fn fn, void *user, int n_in, const ks_tensor *const *x,
                      const ks_tensor *gy, const ks_check_opts *opts) {
  if (!fn || !x || n_in < 1 || n_in > KS_CHECK_MAX_IN)
    return ks_error_set(KS_EINVAL, "check_backward: need a function and 1..%d inputs",
                        KS_CHECK_MAX_IN);
  for (int i = 0; i < n_in; i++)
    if (!x[i]) return ks_error_set(KS_EINVAL, "check_backward: input %d is NULL", i);

  check_state st = {.fn = fn, .user = user, .n_in = n_in};
  st.o = opts ? *opts : KS_CHECK_DEFAULTS;
  if (!(st.o.eps > 0.0)) return ks_error_set(KS_EINVAL, "check_backward: eps must be > 0");
  int rc = KS_OK;
  double *analytic = NULL;
  float *gyd = NULL;
  st.ctx = ks_ctx_new();
  if (!st.ctx) return ks_error_last_code();
  for (int i = 0; i < n_in; i++) {
    st.xs[i] = ks_tensor_clone(x[i]);
    if (!st.xs[i]) { rc = ks_error_last_code(); goto cleanup; }
    st.checked[i] = x[i]->dtype == KS_F32 && !(st.o.no_grad && st.o.no_grad[i]);
  }

  /* ---- analytic gradients ---- */
  ks_var *vars[KS_CHECK_MAX_IN];
  ks_var *y = forward(&st, vars, 1);
  if (!y) { rc = ks_error_last_code(); goto cleanup; }
  const int64_t ny = y->data->size;
  gyd = malloc((size_t)(ny ? ny : 1) * sizeof *gyd);
  if (!gyd) { rc = ks_error_set(KS_ENOMEM, "check_backward: out of memory"); goto cleanup; }
  if (gy) {
    if (gy->dtype != KS_F32 || gy->size != ny) {
      char a[96], b[96];
      rc = ks_error_set(KS_ESHAPE, "check_backward: gy %s does not match the output %s",
                        ks_shape_str(gy->ndim, gy->shape, a, sizeof a),
                        ks_shape_str(y->data->ndim, y->data->shape, b, sizeof b));
      goto cleanup;
    }
    memcpy(gyd, gy->data, (size_t)ny * sizeof *gyd);
  } else {
    ks_rng rng;
    ks_rng_seed(&rng, st.o.seed ^ 0x9e3779b97f4a7c15ULL);
    for (int64_t k = 0; k < ny; k++) gyd[k] = (float)(2.0 * ks_rng_uniform(&rng) - 1.0);
  }
  ks_tensor *g = ks_ctx_tensor_like(st.ctx, y->data);
  if (!g) { rc = ks_error_last_code(); goto cleanup; }
  memcpy(g->data, gyd, (size_t)ny * sizeof *gyd);
  y->grad = g;
  rc = ks_backward(st.ctx, y);
  if (rc != KS_OK) goto cleanup;

  int64_t total = 0;
  for (int i = 0; i < n_in; i++)
    if (st.checked[i]) total += x[i]->size;
  analytic = calloc((size_t)(total ? total : 1), sizeof *analytic);
  if (!analytic) { rc = ks_error_set(KS_ENOMEM, "check_backward: out of memory"); goto cleanup; }
  for (int i = 0, off = 0; i < n_in; i++) {
    if (memcmp(st.xs[i]->data, x[i]->data, ks_tensor_nbytes(x[i])) != 0) {
      rc = ks_error_set(KS_EINVAL, "check_backward: the function modified input %d", i);
      goto cleanup;
    }
    if (!st.checked[i]) continue;
    const ks_tensor *gi = vars[i]->grad; /* NULL: no gradient reached it, i.e. zeros */
    if (gi && gi->size != x[i]->size) {
      rc = ks_error_set(KS_EINVAL, "check_backward: gradient of input %d has %lld elements, "
                        "the input %lld", i, (long long)gi->size, (long long)x[i]->size);
      goto cleanup;
    }
    for (int64_t k = 0; k < x[i]->size; k++)
      analytic[off + k] = gi ? (double)ks_tensor_f32(gi)[k] : 0.0;
    off += (int)x[i]->size;
  }

  /* ---- numeric gradients, element by element ---- */
  for (int i = 0, off = 0; i < n_in; i++) {
    if (!st.checked[i]) continue;
    float *xd = ks_tensor_f32(st.xs[i]);
    for (int64_t k = 0; k < x[i]->size; k++) {
      const float orig = xd[k];
      const float xp = (float)((double)orig + st.o.eps), xm = (float)((double)orig - st.o.eps);
      double lp = 0.0, lm = 0.0;
      xd[k] = xp;
      rc = loss_at(&st, gyd, ny, &lp);
      if (rc == KS_OK) {
        xd[k] = xm;
        rc = loss_at(&st, gyd, ny, &lm);
      }
      xd[k] = orig;
      if (rc != KS_OK) goto cleanup;
      const double num = (lp - lm) / ((double)xp - (double)xm);
      const double ana = analytic[off + k];
      const double diff = fabs(ana - num);
      if (!(diff <= st.o.atol + st.o.rtol * fabs(num))) {
        rc = ks_error_set(KS_EINVAL,
                          "check_backward: input %d element %lld (of %lld): analytic %.7g vs "
                          "numeric %.7g (|diff| %.3g > atol %g + rtol %g * |numeric|, eps %g)",
                          i, (long long)k, (long long)x[i]->size, ana, num, diff, st.o.atol,
                          st.o.rtol, st.o.eps);
        goto cleanup;
      }
    }
    off += (int)x[i]->size;
  }
  rc = KS_OK;

cleanup:
  free(analytic);
  free(gyd);
  for (int i = 0; i < n_in; i++) ks_tensor_free(st.xs[i]);
  ks_ctx_free(st.ctx);
  return rc;
}
