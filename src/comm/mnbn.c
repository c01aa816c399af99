/*
 * src/comm/mnbn.c — multi-node batch normalization (ChainerMN's
 * MultiNodeBatchNormalization): the batch statistics are those of the
 * union of all ranks' batches, so R ranks with batch b normalize as one
 * process with batch R*b.
 *
 * Forward: per channel, the sums of x over all ranks give the mean (one
 * allreduce of C doubles), then the sums of (x - mean)^2 the biased
 * variance (a second one): the same two passes as the one-process kernel,
 * in double. y and inv_std come from the backend's bn_forward. Running
 * statistics use the global count M for the unbiased adjustment M/(M-1)
 * (ChainerMN uses the local count; with the global one they equal the
 * one-process statistics).
 *
 * Backward: the local sums gbeta = sum gy and ggamma = sum gy * x_hat (the
 * backend's bn_backward without gx) are summed over the ranks (one
 * allreduce of 2C doubles); gx = gamma * inv_std * (gy - (x_hat * GG + GB)
 * / M), the derivative of the sum of every rank's loss, which the
 * multi-node optimizer's mean over ranks turns into the mean loss's. The
 * gradients of gamma and beta are GG / R and GB / R (ChainerMN's: the mean
 * over ranks, which the optimizer's allreduce leaves as it is).
 */
#include "kusari/comm.h"
#include "kusari/error.h"
#include "functions/functions_impl.h"

#include <math.h>
#include <stdlib.h>

typedef struct mnbn_saved {
  ks_comm *comm;
  int64_t n, c, inner;
  double total;                /* M: elements per channel over all ranks */
  ks_tensor *mean, *inv_std;   /* (C,) arena */
} mnbn_saved;

/* in[0] = x, in[1] = gamma, in[2] = beta */
static int mnbn_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const mnbn_saved *sv = node->saved;
  const int64_t n = sv->n, c = sv->c, inner = sv->inner;
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  ks_tensor *gg = ks_ctx_tensor(ctx, KS_F32, 1, (int64_t[]){c});
  ks_tensor *gb = ks_ctx_tensor(ctx, KS_F32, 1, (int64_t[]){c});
  double *sums = ks_arena_alloc(ks_ctx_arena(ctx), sizeof(double) * (size_t)(2 * c));
  if (!gg || !gb || !sums) return ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
  const float *x = ks_tensor_f32(node->in[0]->data), *g = ks_tensor_f32(gy[0]);
  const float *mean = ks_tensor_f32(sv->mean), *inv_std = ks_tensor_f32(sv->inv_std);
  const float *gamma = ks_tensor_f32(node->in[1]->data);
  be->bn_backward(n, c, inner, 1, x, g, mean, inv_std, gamma, NULL, ks_tensor_f32(gg), ks_tensor_f32(gb));
  for (int64_t ci = 0; ci < c; ci++) {
    sums[ci] = ks_tensor_f32(gb)[ci];
    sums[c + ci] = ks_tensor_f32(gg)[ci];
  }
  int rc = ks_comm_allreduce_f64(sv->comm, sums, 2 * c);
  if (rc != KS_OK) return rc;
  const double R = ks_comm_size(sv->comm);
  if (gx[1])
    for (int64_t ci = 0; ci < c; ci++) ks_tensor_f32(gx[1])[ci] = (float)(sums[c + ci] / R);
  if (gx[2])
    for (int64_t ci = 0; ci < c; ci++) ks_tensor_f32(gx[2])[ci] = (float)(sums[ci] / R);
  if (gx[0]) {
    const float inv_m = (float)(1.0 / sv->total);
    float *dx = ks_tensor_f32(gx[0]);
    for (int64_t ni = 0; ni < n; ni++)
      for (int64_t ci = 0; ci < c; ci++) {
        const float mu = mean[ci], is = inv_std[ci], scale = gamma[ci] * is;
        const float GB = (float)sums[ci], GG = (float)sums[c + ci];
        const int64_t off = (ni * c + ci) * inner;
        for (int64_t k = 0; k < inner; k++)
          dx[off + k] = scale * (g[off + k] - (((x[off + k] - mu) * is) * GG + GB) * inv_m);
      }
  }
  return KS_OK;
}
static const ks_fn_type mnbn_type = {"multi_node_batch_normalization", mnbn_backward};

static int check_c(const char *fn, const char *name, const ks_tensor *x, const ks_tensor *t) {
  if (ks__check_dtype(fn, name, t, KS_F32)) return ks_error_last_code();
  if (t->ndim != 1 || t->shape[0] != x->shape[1])
    return ks__fail_shapes(fn, "x", x, name, t, "do not match: it must be (C,) with C = x.shape[1]");
  return KS_OK;
}

ks_var *ks_multi_node_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                                          ks_tensor *running_mean, ks_tensor *running_var, double decay,
                                          ks_comm *comm) {
  static const char *fn = "ks_multi_node_batch_normalization";
  if (!x || !gamma || !beta) return NULL;
  if (!comm) {
    ks_error_set(KS_EINVAL, "%s: comm is NULL", fn);
    return NULL;
  }
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  const ks_tensor *xt = x->data;
  if (xt->ndim < 2) {
    ks__fail_shapes(fn, "x", xt, "gamma", gamma->data, "do not match: x must be (N, C, ...)");
    return NULL;
  }
  if (check_c(fn, "gamma", xt, gamma->data) || check_c(fn, "beta", xt, beta->data)) return NULL;
  if (running_mean && check_c(fn, "running_mean", xt, running_mean)) return NULL;
  if (running_var && check_c(fn, "running_var", xt, running_var)) return NULL;
  if (!(eps > 0) || !(decay >= 0.0 && decay <= 1.0)) {
    ks_error_set(KS_EINVAL, "%s: eps must be > 0 and decay in [0, 1], got %g and %g", fn, eps, decay);
    return NULL;
  }
  if (xt->device.type != KS_DEVICE_CPU) {
    ks_error_set(KS_EUNSUPPORTED, "%s: only CPU tensors", fn);
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, bn_forward) || KS__NEED(fn, be, bn_backward)) return NULL;
  const int64_t N = xt->shape[0], C = xt->shape[1];
  int64_t inner = 1;
  for (int d = 2; d < xt->ndim; d++) inner *= xt->shape[d];
  const int64_t cs[1] = {C};
  ks_tensor *mean = ks_ctx_tensor(ctx, KS_F32, 1, cs), *var = ks_ctx_tensor(ctx, KS_F32, 1, cs);
  ks_tensor *inv_std = ks_ctx_tensor(ctx, KS_F32, 1, cs), *y = ks_ctx_tensor_like(ctx, xt);
  double *acc = ks_arena_alloc(ks_ctx_arena(ctx), sizeof(double) * (size_t)(C + 1));
  if (!mean || !var || !inv_std || !y || !acc) return NULL;
  const float *xd = ks_tensor_f32(xt);
  /* pass 1: sums and the global count */
  for (int64_t ci = 0; ci < C; ci++) acc[ci] = 0;
  for (int64_t ni = 0; ni < N; ni++)
    for (int64_t ci = 0; ci < C; ci++) {
      const float *p = xd + (ni * C + ci) * inner;
      double s = 0;
      for (int64_t k = 0; k < inner; k++) s += p[k];
      acc[ci] += s;
    }
  acc[C] = (double)(N * inner);
  if (ks_comm_allreduce_f64(comm, acc, C + 1) != KS_OK) return NULL;
  const double M = acc[C];
  double *mu = ks_arena_alloc(ks_ctx_arena(ctx), sizeof(double) * (size_t)C);
  if (!mu) return NULL;
  for (int64_t ci = 0; ci < C; ci++) mu[ci] = M > 0 ? acc[ci] / M : 0.0;
  /* pass 2: squared deviations from the global mean */
  for (int64_t ci = 0; ci < C; ci++) acc[ci] = 0;
  for (int64_t ni = 0; ni < N; ni++)
    for (int64_t ci = 0; ci < C; ci++) {
      const float *p = xd + (ni * C + ci) * inner;
      double q = 0;
      for (int64_t k = 0; k < inner; k++) {
        const double d = p[k] - mu[ci];
        q += d * d;
      }
      acc[ci] += q;
    }
  if (ks_comm_allreduce_f64(comm, acc, C) != KS_OK) return NULL;
  for (int64_t ci = 0; ci < C; ci++) {
    ks_tensor_f32(mean)[ci] = (float)mu[ci];
    ks_tensor_f32(var)[ci] = (float)(M > 0 ? acc[ci] / M : 0.0);
  }
  be->bn_forward(N, C, inner, (float)eps, xd, ks_tensor_f32(mean), ks_tensor_f32(var),
                 ks_tensor_f32(gamma->data), ks_tensor_f32(beta->data), ks_tensor_f32(y), ks_tensor_f32(inv_std));
  const double adjust = M / (M - 1.0 > 1.0 ? M - 1.0 : 1.0);
  if (running_mean) {
    be->scale(C, (float)decay, ks_tensor_f32(running_mean), ks_tensor_f32(running_mean));
    be->axpy(C, (float)(1.0 - decay), ks_tensor_f32(mean), ks_tensor_f32(running_mean));
  }
  if (running_var) {
    be->scale(C, (float)decay, ks_tensor_f32(running_var), ks_tensor_f32(running_var));
    be->axpy(C, (float)((1.0 - decay) * adjust), ks_tensor_f32(var), ks_tensor_f32(running_var));
  }
  ks_node *node;
  ks_var *in[3] = {x, gamma, beta};
  if (ks__node(ctx, &mnbn_type, 3, in, &node)) return NULL;
  if (node) {
    mnbn_saved *sv = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *sv);
    if (!sv) return NULL;
    *sv = (mnbn_saved){comm, N, C, inner, M, mean, inv_std};
    node->saved = sv;
  }
  return ks_node_output(ctx, node, y);
}
