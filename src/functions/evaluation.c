/*
 * src/functions/evaluation.c — accuracy (chainer.functions.evaluation).
 *
 * Not differentiable: the result is a leaf. Like Chainer, labels equal to
 * ignore_label are left out of both the hits and the total (0 when nothing is
 * left), the prediction is the first argmax of each row, and a label outside
 * [0, C) simply never matches.
 */
#include "functions_impl.h"

ks_var *ks_accuracy(ks_ctx *ctx, ks_var *y, ks_var *t, int ignore_label) {
  static const char *fn = "ks_accuracy";
  if (!y || !t) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "y", y->data, KS_F32) ||
      ks__check_dtype(fn, "t", t->data, KS_I32))
    return NULL;
  const ks_tensor *yt = y->data, *tt = t->data;
  if (yt->ndim != 2 || tt->ndim != 1 || tt->shape[0] != yt->shape[0]) {
    ks__fail_shapes(fn, "y", yt, "t", tt, "do not match: y must be (N, C) and t (N,)");
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, yt);
  if (!be || KS__NEED(fn, be, accuracy)) return NULL;
  ks_tensor *out = ks_ctx_tensor(ctx, KS_F32, 0, NULL);
  if (!out) return NULL;
  if (yt->shape[1] == 0) {
    /* no class to predict: nothing matches */
    be->fill(1, 0.0f, ks_tensor_f32(out));
  } else {
    be->accuracy(yt->shape[0], yt->shape[1], ks_tensor_f32(yt), ks_tensor_i32(tt),
                 (int32_t)ignore_label, ks_tensor_f32(out));
  }
  return ks_node_output(ctx, NULL, out);
}
