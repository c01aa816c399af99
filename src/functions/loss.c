/*
 * src/functions/loss.c — softmax_cross_entropy and mean_squared_error
 * (chainer.functions.loss).
 *
 * softmax_cross_entropy is fused: one kernel pass per row computes the
 * max-shifted softmax (kept for backward) and the row's -log p[t]; the loss
 * is the mean over the rows whose label is not ignore_label (Chainer's
 * normalize=True, reduce='mean', coefficient 1 / max(count, 1)). Backward is
 * one pass: gx = gloss * (p - onehot(t)) / max(count, 1), ignored rows zero.
 */
#include "functions_impl.h"

/* ---- softmax_cross_entropy ------------------------------------------------------- */

/* saved = p (N, C); iparam[0] = ignore_label; fparam[0] = 1 / max(count, 1) */
static int sce_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  if (!gx[0]) return KS_OK; /* labels never get a gradient */
  const ks_tensor *p = node->saved;
  const ks_backend_ops *be = ks_backend_for(p);
  const float scale = (float)(ks__scalar(be, gy[0]) * node->fparam[0]);
  be->softmax_xent_backward(p->shape[0], p->shape[1], ks_tensor_f32(p),
                            ks_tensor_i32(node->in[1]->data), (int32_t)node->iparam[0], scale,
                            ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type sce_type = {"softmax_cross_entropy", sce_backward};

ks_var *ks_softmax_cross_entropy(ks_ctx *ctx, ks_var *x, ks_var *t, int ignore_label) {
  static const char *fn = "ks_softmax_cross_entropy";
  if (!x || !t) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32) ||
      ks__check_dtype(fn, "t", t->data, KS_I32))
    return NULL;
  const ks_tensor *xt = x->data, *tt = t->data;
  if (xt->ndim != 2 || tt->ndim != 1 || tt->shape[0] != xt->shape[0]) {
    ks__fail_shapes(fn, "x", xt, "t", tt, "do not match: x must be (N, C) and t (N,)");
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, softmax_xent_forward) || KS__NEED(fn, be, softmax_xent_backward))
    return NULL;
  const int64_t n = xt->shape[0], c = xt->shape[1];
  ks_tensor *p = ks_ctx_tensor_like(ctx, xt);
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 0, NULL);
  if (!p || !y) return NULL;
  if (c == 0 && n > 0) {
    /* no class can be right; every label that is not ignored is out of range */
    for (int64_t i = 0; i < n; i++) {
      int32_t lab;
      be->memcpy_to_host(&lab, ks_tensor_i32(tt) + i, sizeof lab);
      if (lab != ignore_label) {
        ks_error_set(KS_EINVAL, "%s: label %d of sample %lld is outside [0, 0) and is not "
                     "ignore_label %d", fn, (int)lab, (long long)i, ignore_label);
        return NULL;
      }
    }
  }
  int64_t count = be->softmax_xent_forward(n, c, ks_tensor_f32(xt), ks_tensor_i32(tt),
                                           (int32_t)ignore_label, ks_tensor_f32(p),
                                           ks_tensor_f32(y));
  if (count < 0) {
    int64_t row = -count - 1;
    int32_t lab;
    be->memcpy_to_host(&lab, ks_tensor_i32(tt) + row, sizeof lab);
    ks_error_set(KS_EINVAL, "%s: label %d of sample %lld is outside [0, %lld) and is not "
                 "ignore_label %d", fn, (int)lab, (long long)row, (long long)c, ignore_label);
    return NULL;
  }
  ks_node *node;
  ks_var *in[2] = {x, t};
  if (ks__node(ctx, &sce_type, 2, in, &node)) return NULL;
  if (node) {
    node->saved = p;
    node->iparam[0] = ignore_label;
    node->fparam[0] = 1.0 / (double)(count > 0 ? count : 1);
  }
  return ks_node_output(ctx, node, y);
}

/* ---- mean_squared_error -------------------------------------------------------- */

/* saved = diff = x0 - x1 */
static int mse_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *d = node->saved;
  const ks_backend_ops *be = ks_backend_for(d);
  const float coeff = (float)(2.0 * ks__scalar(be, gy[0]) / (double)(d->size ? d->size : 1));
  if (gx[0]) be->scale(d->size, coeff, ks_tensor_f32(d), ks_tensor_f32(gx[0]));
  if (gx[1]) be->scale(d->size, -coeff, ks_tensor_f32(d), ks_tensor_f32(gx[1]));
  return KS_OK;
}
static const ks_fn_type mse_type = {"mean_squared_error", mse_backward};

ks_var *ks_mean_squared_error(ks_ctx *ctx, ks_var *x0, ks_var *x1) {
  static const char *fn = "ks_mean_squared_error";
  if (!x0 || !x1) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x0", x0->data, KS_F32) ||
      ks__check_dtype(fn, "x1", x1->data, KS_F32))
    return NULL;
  if (!ks_tensor_same_shape(x0->data, x1->data)) {
    ks__fail_shapes(fn, "x0", x0->data, "x1", x1->data, "must have the same shape");
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, x0->data);
  if (!be || KS__NEED(fn, be, sub) || KS__NEED(fn, be, sum_sq) || KS__NEED(fn, be, scale))
    return NULL;
  const int64_t n = x0->data->size;
  ks_tensor *d = ks_ctx_tensor_like(ctx, x0->data);
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 0, NULL);
  if (!d || !y) return NULL;
  be->sub(1, n, ks_tensor_f32(x0->data), ks_tensor_f32(x1->data), ks_tensor_f32(d));
  be->sum_sq(n, n ? (float)(1.0 / (double)n) : 0.0f, ks_tensor_f32(d), ks_tensor_f32(y));
  ks_node *node;
  ks_var *in[2] = {x0, x1};
  if (ks__node(ctx, &mse_type, 2, in, &node)) return NULL;
  if (node) node->saved = d;
  return ks_node_output(ctx, node, y);
}
