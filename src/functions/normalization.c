/*
 * src/functions/normalization.c — batch_normalization and
 * fixed_batch_normalization (chainer.functions.normalization) over x
 * (N, C, ...) with per-channel gamma, beta (C,).
 *
 * Train: per-channel mean and biased variance of the batch (bn_stats,
 * accumulated in double), y = gamma * ((x - mean) * inv_std) + beta with
 * inv_std = 1 / sqrt(var + eps) as Chainer computes it, and the running
 * statistics updated in place with Chainer's decay and m / (m - 1)
 * adjustment. Backward keeps x (the input), mean and inv_std (C floats each)
 * and recomputes x_hat, instead of storing an x-sized x_hat.
 */
#include "functions_impl.h"

#include <stdio.h>

typedef struct bn_saved {
  int64_t n, c, inner;
  int batch_stats;
  ks_tensor *mean, *inv_std;  /* (C,) arena copies */
} bn_saved;

/* in[0] = x, in[1] = gamma, in[2] = beta */
static int bn_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const bn_saved *sv = node->saved;
  ks_backend_for(gy[0])->bn_backward(
      sv->n, sv->c, sv->inner, sv->batch_stats, ks_tensor_f32(node->in[0]->data),
      ks_tensor_f32(gy[0]), ks_tensor_f32(sv->mean), ks_tensor_f32(sv->inv_std),
      ks_tensor_f32(node->in[1]->data), gx[0] ? ks_tensor_f32(gx[0]) : NULL,
      gx[1] ? ks_tensor_f32(gx[1]) : NULL, gx[2] ? ks_tensor_f32(gx[2]) : NULL);
  return KS_OK;
}
static const ks_fn_type bn_type = {"batch_normalization", bn_backward};
static const ks_fn_type fixed_bn_type = {"fixed_batch_normalization", bn_backward};

/* (C,) float32 argument check */
static int check_c(const char *fn, const char *name, const ks_tensor *x, const ks_tensor *t) {
  if (ks__check_dtype(fn, name, t, KS_F32)) return ks_error_last_code();
  if (t->ndim != 1 || t->shape[0] != x->shape[1]) {
    char why[64];
    snprintf(why, sizeof why, "do not match: %s must be (C,) with C = x.shape[1]", name);
    return ks__fail_shapes(fn, "x", x, name, t, why);
  }
  return KS_OK;
}

static ks_var *bn_common(ks_ctx *ctx, const char *fn, ks_var *x, ks_var *gamma, ks_var *beta,
                         double eps, const ks_tensor *fmean, const ks_tensor *fvar,
                         ks_tensor *rmean, ks_tensor *rvar, double decay) {
  if (!x || !gamma || !beta) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  const ks_tensor *xt = x->data;
  if (xt->ndim < 2) {
    ks__fail_shapes(fn, "x", xt, "gamma", gamma->data, "do not match: x must be (N, C, ...)");
    return NULL;
  }
  if (check_c(fn, "gamma", xt, gamma->data) || check_c(fn, "beta", xt, beta->data)) return NULL;
  const int batch = fmean == NULL;
  if (!batch && (check_c(fn, "mean", xt, fmean) || check_c(fn, "var", xt, fvar))) return NULL;
  if (rmean && check_c(fn, "running_mean", xt, rmean)) return NULL;
  if (rvar && check_c(fn, "running_var", xt, rvar)) return NULL;
  if (!(eps > 0)) {
    ks_error_set(KS_EINVAL, "%s: eps must be > 0, got %g", fn, eps);
    return NULL;
  }
  if (batch && (rmean || rvar) && !(decay >= 0.0 && decay <= 1.0)) {
    ks_error_set(KS_EINVAL, "%s: decay must be in [0, 1], got %g", fn, decay);
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, bn_stats) || KS__NEED(fn, be, bn_forward) ||
      KS__NEED(fn, be, bn_backward) || KS__NEED(fn, be, scale))
    return NULL;
  const int64_t N = xt->shape[0], C = xt->shape[1];
  int64_t inner = 1;
  for (int d = 2; d < xt->ndim; d++) inner *= xt->shape[d];
  const int64_t cs[1] = {C};
  ks_tensor *mean = ks_ctx_tensor(ctx, KS_F32, 1, cs), *var = ks_ctx_tensor(ctx, KS_F32, 1, cs);
  ks_tensor *inv_std = ks_ctx_tensor(ctx, KS_F32, 1, cs), *y = ks_ctx_tensor_like(ctx, xt);
  if (!mean || !var || !inv_std || !y) return NULL;
  if (batch) {
    be->bn_stats(N, C, inner, ks_tensor_f32(xt), ks_tensor_f32(mean), ks_tensor_f32(var));
  } else {
    be->copy(mean->data, fmean->data, ks_tensor_nbytes(mean));
    be->copy(var->data, fvar->data, ks_tensor_nbytes(var));
  }
  be->bn_forward(N, C, inner, (float)eps, ks_tensor_f32(xt), ks_tensor_f32(mean),
                 ks_tensor_f32(var), ks_tensor_f32(gamma->data), ks_tensor_f32(beta->data),
                 ks_tensor_f32(y), ks_tensor_f32(inv_std));
  if (batch) {
    const double m = (double)(N * inner);
    const double adjust = m / (m - 1.0 > 1.0 ? m - 1.0 : 1.0);
    if (rmean) {
      be->scale(C, (float)decay, ks_tensor_f32(rmean), ks_tensor_f32(rmean));
      be->axpy(C, (float)(1.0 - decay), ks_tensor_f32(mean), ks_tensor_f32(rmean));
    }
    if (rvar) {
      be->scale(C, (float)decay, ks_tensor_f32(rvar), ks_tensor_f32(rvar));
      be->axpy(C, (float)((1.0 - decay) * adjust), ks_tensor_f32(var), ks_tensor_f32(rvar));
    }
  }
  ks_node *node;
  ks_var *in[3] = {x, gamma, beta};
  if (ks__node(ctx, batch ? &bn_type : &fixed_bn_type, 3, in, &node)) return NULL;
  if (node) {
    bn_saved *sv = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *sv);
    if (!sv) return NULL;
    sv->n = N;
    sv->c = C;
    sv->inner = inner;
    sv->batch_stats = batch;
    sv->mean = mean;
    sv->inv_std = inv_std;
    node->saved = sv;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                               ks_tensor *running_mean, ks_tensor *running_var, double decay) {
  return bn_common(ctx, "ks_batch_normalization", x, gamma, beta, eps, NULL, NULL, running_mean,
                   running_var, decay);
}

ks_var *ks_fixed_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta,
                                     const ks_tensor *mean, const ks_tensor *var, double eps) {
  static const char *fn = "ks_fixed_batch_normalization";
  if (x && gamma && beta && (!mean || !var)) {
    ks_error_set(KS_EINVAL, "%s: mean and var are required", fn);
    return NULL;
  }
  return bn_common(ctx, fn, x, gamma, beta, eps, mean, var, NULL, NULL, 0.0);
}
