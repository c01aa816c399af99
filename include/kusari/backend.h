/*
 * kusari/backend.h — per-device kernel table.
 *
 * Functions never branch on the device: they fetch the table for their input
 * tensor (ks_backend_for) and call through it. The CPU table lives in
 * src/backend/cpu.c (OpenBLAS GEMM, loops written for gcc's vectorizer); a
 * CUDA table plugs in as src/backend/cuda.c without touching callers. Members
 * marked (optional) may be NULL; callers then fall back or report
 * KS_EUNSUPPORTED.
 *
 * The first block (memory, gemm, axpy, fill, threads) is the core every
 * backend provides; the second block holds the fused kernels of the
 * differentiable functions, one or two per function (forward/backward), so
 * that e.g. linear is "broadcast_rows + one gemm" forward and "two gemms +
 * col_sum" backward, and softmax cross entropy is one pass per row.
 */
#ifndef KUSARI_BACKEND_H
#define KUSARI_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "kusari/tensor.h"
#include "kusari/random.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Window geometry of a 2-d convolution or pooling over NCHW images: input
 * (n, c, h, w), kernel (kh, kw), stride (sy, sx), padding (ph, pw),
 * dilation (dy, dx), output (oh, ow). */
typedef struct ks_conv_geom {
  int64_t n, c, h, w;
  int64_t kh, kw, sy, sx, ph, pw, dy, dx;
  int64_t oh, ow;
} ks_conv_geom;

typedef struct ks_backend_ops {
  const char *name;
  /* memory (required) */
  void *(*alloc)(size_t bytes);
  void  (*free)(void *p);
  void  (*memcpy_to_host)(void *dst, const void *src, size_t bytes);
  void  (*memcpy_from_host)(void *dst, const void *src, size_t bytes);
  /* every byte of dst (device) = value (required) */
  void  (*fill_bytes)(void *dst, int value, size_t bytes);
  /* C(M,N) = alpha * op(A) op(B) + beta * C, row-major, op = transpose if
   * trans_* (required) */
  void (*gemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
  /* y += alpha * x over n floats (required) */
  void (*axpy)(int64_t n, float alpha, const float *x, float *y);
  /* x = value over n floats (required) */
  void (*fill)(int64_t n, float value, float *x);
  /* threads used by kernels; set_threads may be NULL (optional) */
  void (*set_threads)(int n);
  int  (*get_threads)(void);

  /* ---- kernels of src/functions (optional: a NULL member makes the function
   * that needs it fail with KS_EUNSUPPORTED). All pointers are device memory
   * of this backend, float32 unless typed otherwise, contiguous and row-major;
   * outputs never alias inputs unless said. Shapes: (n, m) is n rows of m. */

  /* dst = src over 'bytes' bytes, both on the device (required, although it
   * stands here next to the kernels that use it) */
  void (*copy)(void *dst, const void *src, size_t bytes);
  /* y = alpha * x over n floats; y may equal x */
  void (*scale)(int64_t n, float alpha, const float *x, float *y);
  /* y (n, m) = a (n, m) op b, b (m,) broadcast over the rows (m == size of a
   * when shapes are equal, m == 1 for a scalar b) */
  void (*add)(int64_t n, int64_t m, const float *a, const float *b, float *y);
  void (*sub)(int64_t n, int64_t m, const float *a, const float *b, float *y);
  void (*mul)(int64_t n, int64_t m, const float *a, const float *b, float *y);
  /* every row of y (n, m) = b (m,)  (linear's bias before a beta=1 gemm) */
  void (*broadcast_rows)(int64_t n, int64_t m, const float *b, float *y);
  /* out (m,) = column sums of x (n, m)  (linear's bias gradient) */
  void (*col_sum)(int64_t n, int64_t m, const float *x, float *out);
  /* y (outer, inner) = alpha * sum over the middle axis of x (outer, c, inner) */
  void (*sum_axis)(int64_t outer, int64_t c, int64_t inner, float alpha,
                   const float *x, float *y);
  /* gx (outer, c, inner) = alpha * gy (outer, inner) repeated over the middle axis */
  void (*broadcast_axis)(int64_t outer, int64_t c, int64_t inner, float alpha,
                         const float *gy, float *gx);
  /* out[0] = alpha * sum(x^2) over n floats, accumulated in double */
  void (*sum_sq)(int64_t n, float alpha, const float *x, float *out);

  /* activations: forward y = f(x); backward gx = gy * f'(.) from the saved
   * output y (relu, sigmoid, tanh) or input x (leaky_relu) */
  void (*relu_forward)(int64_t n, const float *x, float *y);
  void (*relu_backward)(int64_t n, const float *y, const float *gy, float *gx);
  void (*leaky_relu_forward)(int64_t n, float slope, const float *x, float *y);
  void (*leaky_relu_backward)(int64_t n, float slope, const float *x, const float *gy,
                              float *gx);
  void (*sigmoid_forward)(int64_t n, const float *x, float *y);
  void (*sigmoid_backward)(int64_t n, const float *y, const float *gy, float *gx);
  void (*tanh_forward)(int64_t n, const float *x, float *y);
  void (*tanh_backward)(int64_t n, const float *y, const float *gy, float *gx);

  /* softmax / log-softmax over the middle axis of (outer, c, inner), max-shifted
   * so large logits do not overflow; backward from the saved output y */
  void (*softmax_forward)(int64_t outer, int64_t c, int64_t inner, const float *x, float *y);
  void (*softmax_backward)(int64_t outer, int64_t c, int64_t inner, const float *y,
                           const float *gy, float *gx);
  void (*log_softmax_forward)(int64_t outer, int64_t c, int64_t inner, const float *x,
                              float *y);
  void (*log_softmax_backward)(int64_t outer, int64_t c, int64_t inner, const float *y,
                               const float *gy, float *gx);

  /* Fused softmax cross entropy over x (n, c) and labels t (n,), one pass per
   * row: p = softmax(x) (kept for backward), loss[0] = -sum over rows with
   * t != ignore of log p[t] divided by max(count, 1). Returns the count of
   * such rows, or -(1 + i) when row i has a label outside [0, c) that is not
   * 'ignore' (then p and loss are unspecified). */
  int64_t (*softmax_xent_forward)(int64_t n, int64_t c, const float *x, const int32_t *t,
                                  int32_t ignore, float *p, float *loss);
  /* gx (n, c) = scale * (p - onehot(t)), rows with t == ignore set to 0 */
  void (*softmax_xent_backward)(int64_t n, int64_t c, const float *p, const int32_t *t,
                                int32_t ignore, float scale, float *gx);
  /* out[0] = fraction of rows of y (n, c) whose first argmax equals t, among
   * rows with t != ignore (0 when there are none); returns that row count */
  int64_t (*accuracy)(int64_t n, int64_t c, const float *y, const int32_t *t, int32_t ignore,
                      float *out);
  /* mask[i] = 0 with probability ratio, else 1 / (1 - ratio), drawn from rng
   * (a host-side generator whose stream the caller owns) */
  void (*dropout_mask)(int64_t n, double ratio, ks_rng *rng, float *mask);

  /* ---- convolutional networks (CPU: src/backend/cpu_conv.c). Images are
   * NCHW float32; 'g' gives the window geometry (ks_conv_geom above). Taps
   * that fall outside the image (padding, or windows past the padded edge
   * when oh/ow were computed with cover_all) read as 0 and receive nothing.
   * CPU kernels split their work over independent outputs on the thread pool
   * when it is large, so results are the same bits on any thread count. */

  /* col (c*kh*kw, n*oh*ow) from x (n, c, h, w): row (ci, ky, kx), column
   * (ni, oy, ox) holds x[ni, ci, oy*sy - ph + ky*dy, ox*sx - pw + kx*dx] */
  void (*im2col)(const ks_conv_geom *g, const float *x, float *col);
  /* x (n, c, h, w) = sum of the taps of col (c*kh*kw, n*oh*ow) that read each
   * pixel (the adjoint of im2col); x is overwritten */
  void (*col2im)(const ks_conv_geom *g, const float *col, float *x);
  /* dst (b, a, inner) with dst[j, i, :] = src[i, j, :] + bias[i] (bias (a,)
   * or NULL): (C, N, HW) <-> (N, C, HW) around the batched GEMMs */
  void (*swap01)(int64_t a, int64_t b, int64_t inner, const float *src, const float *bias,
                 float *dst);
  /* out (c,) = sums of x (n, c, inner) over n and inner (bias gradients) */
  void (*channel_sum)(int64_t n, int64_t c, int64_t inner, const float *x, float *out);
  /* y (n, c, inner) += b[c] */
  void (*channel_bias)(int64_t n, int64_t c, int64_t inner, const float *b, float *y);
  /* rows of a 2-d strided block: dst[r*ldd + j] = src[r*lds + j], j < cols (concat) */
  void (*copy2d)(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                 int64_t ldd);

  /* pooling over (n, c, h, w) -> (n, c, oh, ow) (g->dy, g->dx are 1). Max:
   * padding reads as -inf; idx (n, c, oh, ow) receives the offset (y*w + x)
   * in its plane of the first maximum in (ky, kx) order, or -1 for a window
   * entirely outside the image (y = -inf there). Average: the sum over the
   * window divided by kh*kw, padding counted as 0 (Chainer's pad_value 0). */
  void (*max_pool2d_forward)(const ks_conv_geom *g, const float *x, float *y, int32_t *idx);
  /* gx (n, c, h, w) = gy scattered to the argmax offsets (overwritten) */
  void (*max_pool2d_backward)(const ks_conv_geom *g, const int32_t *idx, const float *gy,
                              float *gx);
  void (*avg_pool2d_forward)(const ks_conv_geom *g, const float *x, float *y);
  void (*avg_pool2d_backward)(const ks_conv_geom *g, const float *gy, float *gx);

  /* batch normalization over x (n, c, inner), per channel c:
   * mean and biased variance, accumulated in double */
  void (*bn_stats)(int64_t n, int64_t c, int64_t inner, const float *x, float *mean,
                   float *var);
  /* inv_std = 1 / sqrt(var + eps) (c,), y = gamma * ((x - mean) * inv_std) + beta */
  void (*bn_forward)(int64_t n, int64_t c, int64_t inner, float eps, const float *x,
                     const float *mean, const float *var, const float *gamma,
                     const float *beta, float *y, float *inv_std);
  /* gbeta = sum gy, ggamma = sum gy * x_hat (x_hat = (x - mean) * inv_std);
   * gx = gamma * inv_std * (gy - (x_hat * ggamma + gbeta) / m), m = n*inner,
   * when batch_stats (mean/var came from this batch), else gamma * inv_std * gy.
   * Each output may be NULL (not computed). */
  void (*bn_backward)(int64_t n, int64_t c, int64_t inner, int batch_stats, const float *x,
                      const float *gy, const float *mean, const float *inv_std,
                      const float *gamma, float *gx, float *ggamma, float *gbeta);
} ks_backend_ops;

/* The table serving 'dev', or NULL when no backend serves it (an
 * unregistered type, or an id past the type's device count). The CPU (id 0
 * only) is built in. */
const ks_backend_ops *ks_backend_for_device(ks_device dev);
/* Registers 'ops' as the backend of 'count' devices of 'type' (ids 0 ..
 * count-1), replacing any earlier one; ops NULL unregisters. Register before
 * any tensor lives on those devices. KS_EINVAL for the CPU type (built in), a
 * type out of range, count < 1 or a table lacking a required member. */
int ks_backend_register(ks_device_type type, int count, const ks_backend_ops *ops);
/* Devices of 'type' that have a backend (1 for the CPU, 0 when none). */
int ks_device_count(ks_device_type type);
int ks_device_equal(ks_device a, ks_device b);
/* Registers the CUDA backend for every CUDA device the driver reports.
 * KS_EUNSUPPORTED when built without -DKUSARI_CUDA=ON or when no device is
 * present. (A skeleton so far: memory, copies, fills, gemm, axpy.) */
int ks_backend_cuda_register(void);
static inline const ks_backend_ops *ks_backend_for(const ks_tensor *t) {
  return ks_backend_for_device(t->device);
}
/* Number of threads of the CPU kernels (OpenBLAS and our own loops). */
void ks_set_num_threads(int n);
/* Name of the BLAS kernel set in use ("SkylakeX", "Haswell", "Prescott", ...). */
const char *ks_blas_corename(void);
/* When OpenBLAS did not recognise this CPU and fell back to generic kernels,
 * the OPENBLAS_CORETYPE value that selects fast ones ("Cooperlake", "SkylakeX", "Haswell"),
 * else NULL. The variable must be set before the program starts (kusari's run
 * supervisor sets it for entries; examples print a hint). */
const char *ks_blas_suggested_coretype(void);
int ks_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
