/*
 * kusari/functions.h — differentiable functions (chainer.functions).
 *
 * Semantics and argument conventions follow Chainer's F.*. Each call computes
 * its result at once and, when backprop is enabled and an input needs a
 * gradient, records a node for backward (see kusari/var.h). All return NULL
 * on failure with ks_error_last() set; a NULL input returns NULL and leaves
 * the message alone. Errors: KS_ESHAPE for shapes or dtypes that do not fit
 * (the message names the function and both shapes), KS_EINVAL for bad
 * values (labels, ratio, reshape target), KS_EUNSUPPORTED when the input's
 * device has no kernel for the function. Inputs are float32 unless said.
 * Shapes in comments: (N, C) means a 2-d tensor of N rows and C columns.
 *
 * Kernels are reached through the input's backend table (kusari/backend.h);
 * gradients are first-order (backward works on tensors). What each function
 * keeps for backward: linear, matmul, mul, leaky_relu their inputs; relu,
 * sigmoid, tanh, softmax, log_softmax their output; softmax_cross_entropy
 * the softmax (N, C); mean_squared_error x0 - x1; dropout its mask.
 */
#ifndef KUSARI_FUNCTIONS_H
#define KUSARI_FUNCTIONS_H

#include "kusari/var.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- connection ---------------------------------------------------------- */
/* y = x W^T + b. x is (N, ...) flattened to (N, in), W is (out, in), b is
 * (out,) or NULL (nobias). y is (N, out). Fused: forward is the bias copied
 * into y plus one sgemm with beta = 1; backward runs one sgemm for gW, one
 * for gx and a column sum for gb, each only when that input needs it. */
ks_var *ks_linear(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b);

/* ---- activations ---------------------------------------------------------- */
ks_var *ks_relu(ks_ctx *ctx, ks_var *x);
ks_var *ks_leaky_relu(ks_ctx *ctx, ks_var *x, double slope); /* Chainer default slope 0.2 */
ks_var *ks_sigmoid(ks_ctx *ctx, ks_var *x);
ks_var *ks_tanh(ks_ctx *ctx, ks_var *x);
/* Max-shifted, so logits of 1e3 neither overflow nor give NaN. axis < 0
 * counts from the end. */
ks_var *ks_softmax(ks_ctx *ctx, ks_var *x, int axis);      /* Chainer default axis 1 */
ks_var *ks_log_softmax(ks_ctx *ctx, ks_var *x);           /* over axis 1, ndim >= 2 */

/* ---- losses and evaluation -------------------------------------------------- */
/* x is (N, C) float32 logits, t is (N,) int32 labels; labels equal to
 * ignore_label (Chainer default -1) are skipped; result is the mean over the
 * non-ignored samples (normalize=True), a scalar; 0 when all are ignored.
 * Out-of-range labels fail with KS_EINVAL naming the sample. Fused: one pass
 * per row forward (log-softmax + NLL), one pass backward. */
ks_var *ks_softmax_cross_entropy(ks_ctx *ctx, ks_var *x, ks_var *t, int ignore_label);
/* mean((x0 - x1)^2) over all elements, a scalar. */
ks_var *ks_mean_squared_error(ks_ctx *ctx, ks_var *x0, ks_var *x1);
/* Fraction of argmax(y, axis 1) == t among labels != ignore_label (scalar,
 * not differentiable: the result is a leaf). y is (N, C), t (N,) int32. The
 * first maximum wins ties (numpy.argmax); a label outside [0, C) never
 * matches; 0 when every label is ignored (Chainer). */
ks_var *ks_accuracy(ks_ctx *ctx, ks_var *y, ks_var *t, int ignore_label);

/* ---- noise ------------------------------------------------------------------ */
/* In train mode, zeroes each element with probability ratio and scales the
 * rest by 1/(1-ratio) (uses the ctx RNG); backward uses the same mask. In
 * test mode returns x itself. ratio must be in [0, 1) (KS_EINVAL). */
ks_var *ks_dropout(ks_ctx *ctx, ks_var *x, double ratio);

/* ---- arithmetic --------------------------------------------------------------- */
/* Element-wise with equal shapes, or b broadcast as a trailing-suffix shape
 * (e.g. (N, C) + (C,)) or a scalar (size-1) b. */
ks_var *ks_add(ks_ctx *ctx, ks_var *a, ks_var *b);
ks_var *ks_sub(ks_ctx *ctx, ks_var *a, ks_var *b);
ks_var *ks_mul(ks_ctx *ctx, ks_var *a, ks_var *b);
ks_var *ks_scale(ks_ctx *ctx, ks_var *x, double alpha);    /* alpha * x */
/* Matrix product of 2-d a (M, K) and b (K, N), with optional transposes
 * (F.matmul's transa/transb). */
ks_var *ks_matmul(ks_ctx *ctx, ks_var *a, ks_var *b, int trans_a, int trans_b);

/* ---- array manipulation --------------------------------------------------------- */
/* One dimension may be -1 (inferred). The result is a view sharing x's data
 * (no copy); its gradient is copied back under x's shape. */
ks_var *ks_reshape(ks_ctx *ctx, ks_var *x, int ndim, const int64_t *shape);

/* ---- reductions ------------------------------------------------------------------- */
/* axis < 0: over all elements (scalar result); otherwise over that axis,
 * which the result drops (keepdims=False). */
ks_var *ks_sum(ks_ctx *ctx, ks_var *x, int axis);
ks_var *ks_mean(ks_ctx *ctx, ks_var *x, int axis);

#ifdef __cplusplus
}
#endif
#endif
