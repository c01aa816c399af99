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
 * matches (so -1 counts as a miss unless it is the ignore_label); 0 when
 * every label is ignored (Chainer). ignore_label KS_IGNORE_NONE is Chainer's
 * ignore_label=None (F.accuracy's default, which L.Classifier uses): every
 * sample counts. */
#define KS_IGNORE_NONE (-2147483647 - 1) /* INT32_MIN: not a label */
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
/* F.sum / F.mean over one axis, which the result drops (keepdims=False); a
 * negative axis counts from the end, as everywhere in kusari and Chainer
 * (-1 is the last axis). KS_AXIS_ALL (Chainer's axis=None) reduces over all
 * elements to a scalar. Any other axis outside [-ndim, ndim) is KS_ESHAPE. */
#define KS_AXIS_ALL (-2147483647 - 1) /* INT_MIN: "every axis", never an axis */
ks_var *ks_sum(ks_ctx *ctx, ks_var *x, int axis);
ks_var *ks_mean(ks_ctx *ctx, ks_var *x, int axis);

/* ---- convolutional networks (NCHW float32) ---------------------------------------- */
/* Window arguments of convolution_2d / deconvolution_2d. Zero means
 * Chainer's default: stride 1, pad 0, dilate 1, groups 1, cover_all False,
 * outsize None; so (ks_conv2d_opts){.ph = 1, .pw = 1} is "pad=1". */
typedef struct ks_conv2d_opts {
  int sy, sx;       /* stride (0: 1)                                              */
  int ph, pw;       /* padding                                                    */
  int dy, dx;       /* dilation (0: 1)                                            */
  int groups;       /* grouped convolution (0: 1)                                 */
  int cover_all;    /* convolution: also cover the last partial window            */
  int outh, outw;   /* deconvolution: output size (0: ks_deconv_outsize)          */
} ks_conv2d_opts;

/* Chainer's conv.get_conv_outsize / get_deconv_outsize (d = dilation). */
int64_t ks_conv_outsize(int64_t size, int64_t k, int64_t s, int64_t p, int cover_all, int64_t d);
int64_t ks_deconv_outsize(int64_t size, int64_t k, int64_t s, int64_t p, int cover_all,
                          int64_t d);

/* F.convolution_2d. x is (N, C, H, W), W is (out_c, C / groups, kh, kw), b is
 * (out_c,) or NULL; y is (N, out_c, oh, ow) with oh = ks_conv_outsize(H, kh,
 * sy, ph, cover_all, dy). Lowered to GEMM: im2col over a chunk of images
 * (chunk size from the shape only, about 16 MiB of col), one backend GEMM per
 * group over the whole chunk, a transpose to NCHW with the bias. Keeps its
 * inputs, and the col buffer (C*kh*kw x N*oh*ow floats, arena) when the batch
 * fits one chunk and W needs a gradient; otherwise backward recomputes it. */
ks_var *ks_convolution_2d(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b, int stride, int pad,
                          int dilate, int groups);
ks_var *ks_convolution_2d_ex(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b,
                             const ks_conv2d_opts *opts); /* opts NULL: defaults */

/* F.deconvolution_2d (transposed convolution, the gradient of convolution_2d
 * with respect to its input). x is (N, C, H, W), W is (C, out_c / groups, kh,
 * kw), b (out_c,) or NULL; y is (N, out_c, oh, ow) with oh = opts->outh, or
 * ks_deconv_outsize(H, kh, sy, ph, 0, dy) when 0. An explicit outh must map
 * back to H (get_conv_outsize(outh) <= H <= the cover_all one), as Chainer
 * checks. */
ks_var *ks_deconvolution_2d(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b, int stride, int pad);
ks_var *ks_deconvolution_2d_ex(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b,
                               const ks_conv2d_opts *opts);

/* Pooling windows: kernel (kh, kw), stride (0: the kernel size, Chainer's
 * stride=None), padding, cover_all (max pooling only). */
typedef struct ks_pool2d_opts {
  int kh, kw;
  int sy, sx;
  int ph, pw;
  int cover_all;
} ks_pool2d_opts;

/* F.max_pooling_2d(x, ksize, stride, pad, cover_all); Chainer's default is
 * cover_all = 1 (the output covers the last partial window: oh =
 * ks_conv_outsize(H, k, s, p, cover_all, 1)). Padding never wins the max.
 * stride 0 means ksize. x is (N, C, H, W). Keeps the argmax (int32, y's
 * shape) for backward, which sends each gradient to the first maximum of its
 * window. */
ks_var *ks_max_pooling_2d(ks_ctx *ctx, ks_var *x, int ksize, int stride, int pad, int cover_all);
ks_var *ks_max_pooling_2d_ex(ks_ctx *ctx, ks_var *x, const ks_pool2d_opts *opts);
/* F.average_pooling_2d(x, ksize, stride, pad): the window sum divided by
 * kh*kw, padding counted as zeros (Chainer's pad_value 0); output size
 * without cover_all (opts->cover_all must be 0). stride 0 means ksize. */
ks_var *ks_average_pooling_2d(ks_ctx *ctx, ks_var *x, int ksize, int stride, int pad);
ks_var *ks_average_pooling_2d_ex(ks_ctx *ctx, ks_var *x, const ks_pool2d_opts *opts);

/* ---- normalization ----------------------------------------------------------------- */
/* F.batch_normalization with batch statistics: x is (N, C, ...) and gamma,
 * beta are (C,); per channel, mean and biased variance over N and the
 * trailing axes, y = gamma * (x - mean) / sqrt(var + eps) + beta (Chainer's
 * default eps 2e-5). When running_mean / running_var (float32 (C,) tensors
 * on x's device, updated in place) are given they become
 *   running_mean = decay * running_mean + (1 - decay) * mean,
 *   running_var  = decay * running_var + (1 - decay) * m / max(m - 1, 1) * var
 * with m = x.size / C (Chainer's unbiased adjustment; default decay 0.9).
 * Either may be NULL. Keeps x, mean and 1/std for backward (to x, gamma, beta). */
ks_var *ks_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                               ks_tensor *running_mean, ks_tensor *running_var, double decay);
/* F.fixed_batch_normalization: the same with given statistics mean, var
 * (float32 (C,) tensors; constants: no gradient flows to them, unlike
 * Chainer, because a node has at most 4 inputs). Gradients reach x, gamma,
 * beta. */
ks_var *ks_fixed_batch_normalization(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta,
                                     const ks_tensor *mean, const ks_tensor *var, double eps);

/* ---- more array manipulation ----------------------------------------------------------- */
/* F.flatten: x as a 1-d array of x.size elements (a view, like ks_reshape).
 * To flatten each sample instead, use ks_reshape(ctx, x, 2, (int64_t[]){N, -1});
 * ks_linear and the Linear link do that by themselves. */
ks_var *ks_flatten(ks_ctx *ctx, ks_var *x);
/* F.concat(xs, axis) (Chainer's default axis 1): n >= 1 float32 arrays with
 * equal shapes except along axis (< 0 counts from the end). More than 4
 * inputs are joined as a chain of nodes of at most 4 inputs each. */
ks_var *ks_concat(ks_ctx *ctx, int n, ks_var *const *xs, int axis);

#ifdef __cplusplus
}
#endif
#endif
