/*
 * src/functions/reduction.c — sum and mean (chainer.functions.math sum,
 * average without weights), over one axis (negative: from the end) or all
 * elements (KS_AXIS_ALL).
 */
#include "functions_impl.h"

/* iparam = {outer, c, inner}; fparam[0] = alpha (1 for sum, 1/c for mean) */
static int reduce_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  ks_backend_for(gy[0])->broadcast_axis(node->iparam[0], node->iparam[1], node->iparam[2],
                                        (float)node->fparam[0], ks_tensor_f32(gy[0]),
                                        ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type sum_type = {"sum", reduce_backward};
static const ks_fn_type mean_type = {"mean", reduce_backward};

static ks_var *reduce(ks_ctx *ctx, const char *fn, ks_var *x, int axis, int mean) {
  if (!x) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  const ks_tensor *xt = x->data;
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, sum_axis) || KS__NEED(fn, be, broadcast_axis)) return NULL;
  int64_t outer = 1, c = xt->size, inner = 1;
  int64_t shape[KS_MAX_DIMS];
  int ndim = 0;
  if (axis != KS_AXIS_ALL) {
    if (axis < -xt->ndim || axis >= xt->ndim) {
      char s[KS__SHAPE_BUF];
      ks_error_set(KS_ESHAPE, "%s: axis %d is out of range for x %s (use KS_AXIS_ALL to reduce over all elements)",
                   fn, axis, ks__shape(xt, s));
      return NULL;
    }
    if (axis < 0) axis += xt->ndim;
    for (int i = 0; i < axis; i++) outer *= xt->shape[i];
    c = xt->shape[axis];
    for (int i = axis + 1; i < xt->ndim; i++) inner *= xt->shape[i];
    for (int i = 0; i < xt->ndim; i++)
      if (i != axis) shape[ndim++] = xt->shape[i];
  }
  const double alpha = mean ? 1.0 / (double)c : 1.0;
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, ndim, shape);
  if (!y) return NULL;
  be->sum_axis(outer, c, inner, (float)alpha, ks_tensor_f32(xt), ks_tensor_f32(y));
  ks_node *node;
  if (ks__node(ctx, mean ? &mean_type : &sum_type, 1, &x, &node)) return NULL;
  if (node) {
    node->iparam[0] = outer;
    node->iparam[1] = c;
    node->iparam[2] = inner;
    node->fparam[0] = alpha;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_sum(ks_ctx *ctx, ks_var *x, int axis) { return reduce(ctx, "ks_sum", x, axis, 0); }
ks_var *ks_mean(ks_ctx *ctx, ks_var *x, int axis) { return reduce(ctx, "ks_mean", x, axis, 1); }
