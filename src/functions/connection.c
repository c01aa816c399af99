/*
 * src/functions/connection.c — linear (F.linear).
 *
 * linear is fused: forward copies the bias into every row of y and runs one
 * sgemm with beta = 1 (y = x W^T + y); backward runs one sgemm per needed
 * gradient (gW = gy^T x, gx = gy W) and one column-sum pass for gb. Gradients
 * nobody needs are not computed (the first layer never computes gx).
 */
#include "functions_impl.h"

/* ---- linear -------------------------------------------------------------------- */

/* in[0] = x (N, ...) viewed as (N, K), in[1] = W (M, K), in[2] = b (M,) or NULL;
 * iparam[0] = N, iparam[1] = K, iparam[2] = M */
static int linear_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const int64_t n = node->iparam[0], k = node->iparam[1], m = node->iparam[2];
  const float *g = ks_tensor_f32(gy[0]);                /* gy is (N, M) */
  if (gx[0]) {                                           /* gx (N, K) = gy W */
    if (n && k) {
      if (m) be->gemm(0, 0, n, k, m, 1.0f, g, m, ks_tensor_f32(node->in[1]->data), k, 0.0f,
                      ks_tensor_f32(gx[0]), k);
      else be->fill(gx[0]->size, 0.0f, ks_tensor_f32(gx[0]));
    }
  }
  if (gx[1]) {                                           /* gW (M, K) = gy^T x */
    if (m && k) {
      if (n) be->gemm(1, 0, m, k, n, 1.0f, g, m, ks_tensor_f32(node->in[0]->data), k, 0.0f,
                      ks_tensor_f32(gx[1]), k);
      else be->fill(gx[1]->size, 0.0f, ks_tensor_f32(gx[1]));
    }
  }
  if (gx[2]) be->col_sum(n, m, g, ks_tensor_f32(gx[2])); /* gb (M,) = sum over rows */
  return KS_OK;
}

static const ks_fn_type linear_type = {"linear", linear_backward};

ks_var *ks_linear(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b) {
  static const char *fn = "ks_linear";
  if (!x || !W) return NULL; /* b may legitimately be NULL (nobias) */
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32) ||
      ks__check_dtype(fn, "W", W->data, KS_F32))
    return NULL;
  const ks_tensor *xt = x->data, *wt = W->data;
  if (xt->ndim < 2) {
    ks__fail_shapes(fn, "x", xt, "W", wt, "do not match: x must be (N, ...) with ndim >= 2");
    return NULL;
  }
  if (wt->ndim != 2) {
    ks__fail_shapes(fn, "x", xt, "W", wt, "do not match: W must be 2-d (out, in)");
    return NULL;
  }
  const int64_t n = xt->shape[0], m = wt->shape[0];
  int64_t kx = 1;
  for (int i = 1; i < xt->ndim; i++) kx *= xt->shape[i];
  if (kx != wt->shape[1]) {
    ks__fail_shapes(fn, "x", xt, "W", wt, "do not match: x's row size must equal W.shape[1]");
    return NULL;
  }
  if (b) {
    if (ks__check_dtype(fn, "b", b->data, KS_F32)) return NULL;
    if (b->data->ndim != 1 || b->data->shape[0] != m) {
      ks__fail_shapes(fn, "W", wt, "b", b->data, "do not match: b must be (out,)");
      return NULL;
    }
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, broadcast_rows) || KS__NEED(fn, be, col_sum)) return NULL;

  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, m});
  if (!y) return NULL;
  float *yd = ks_tensor_f32(y);
  if (b) be->broadcast_rows(n, m, ks_tensor_f32(b->data), yd);
  if (n && m && kx)
    be->gemm(0, 1, n, m, kx, 1.0f, ks_tensor_f32(xt), kx, ks_tensor_f32(wt), kx, b ? 1.0f : 0.0f,
             yd, m);
  else if (!b)
    be->fill(y->size, 0.0f, yd);

  ks_node *node;
  ks_var *in[3] = {x, W, b};
  if (ks__node(ctx, &linear_type, 3, in, &node)) return NULL;
  if (node) {
    node->iparam[0] = n;
    node->iparam[1] = kx;
    node->iparam[2] = m;
  }
  return ks_node_output(ctx, node, y);
}
