/*
 * src/functions/noise.c — dropout (chainer.functions.noise).
 *
 * Train mode: mask = (u >= ratio) / (1 - ratio) drawn from the ctx RNG, and
 * y = x * mask; backward multiplies by the same mask. Test mode: returns x
 * itself (as Chainer returns its input variable), so gradients pass through.
 */
#include "functions_impl.h"

/* saved = mask (x's shape) */
static int dropout_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *mask = node->saved;
  ks_backend_for(mask)->mul(1, mask->size, ks_tensor_f32(gy[0]), ks_tensor_f32(mask),
                            ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type dropout_type = {"dropout", dropout_backward};

ks_var *ks_dropout(ks_ctx *ctx, ks_var *x, double ratio) {
  static const char *fn = "ks_dropout";
  if (!x) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  if (!(ratio >= 0.0 && ratio < 1.0)) {
    ks_error_set(KS_EINVAL, "%s: ratio must be in [0, 1), got %g", fn, ratio);
    return NULL;
  }
  if (!ks_ctx_train(ctx)) return x;
  const ks_backend_ops *be = ks__backend(fn, x->data);
  if (!be || KS__NEED(fn, be, dropout_mask) || KS__NEED(fn, be, mul)) return NULL;
  ks_tensor *mask = ks_ctx_tensor_like(ctx, x->data);
  ks_tensor *y = ks_ctx_tensor_like(ctx, x->data);
  if (!mask || !y) return NULL;
  be->dropout_mask(mask->size, ratio, ks_ctx_rng(ctx), ks_tensor_f32(mask));
  be->mul(1, y->size, ks_tensor_f32(x->data), ks_tensor_f32(mask), ks_tensor_f32(y));
  ks_node *node;
  if (ks__node(ctx, &dropout_type, 1, &x, &node)) return NULL;
  if (node) node->saved = mask;
  return ks_node_output(ctx, node, y);
}
