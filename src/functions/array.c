/*
 * src/functions/array.c — reshape, flatten and concat (chainer.functions.array).
 *
 * reshape's (and flatten's) output is a view: it shares x's data (no copy).
 * Backward copies the gradient back under x's shape (the engine wants fresh
 * gradient tensors). concat copies each input's rows into its slice of the
 * output rows (a 2-d strided copy per input) and backward copies them out.
 */
#include "functions_impl.h"

#include <stdio.h>

static int reshape_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  ks_backend_for(gy[0])->copy(gx[0]->data, gy[0]->data, ks_tensor_nbytes(gy[0]));
  return KS_OK;
}
static const ks_fn_type reshape_type = {"reshape", reshape_backward};

ks_var *ks_reshape(ks_ctx *ctx, ks_var *x, int ndim, const int64_t *shape) {
  static const char *fn = "ks_reshape";
  if (!x) return NULL;
  if (ks__check_ctx(fn, ctx)) return NULL;
  if (ndim < 0 || ndim > KS_MAX_DIMS || (ndim > 0 && !shape)) {
    ks_error_set(KS_EINVAL, "%s: bad target rank %d (0..%d with a shape)", fn, ndim, KS_MAX_DIMS);
    return NULL;
  }
  const ks_tensor *xt = x->data;
  int64_t s[KS_MAX_DIMS];
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < ndim; i++) {
    s[i] = shape[i];
    if (s[i] == -1) {
      if (infer >= 0) {
        ks_error_set(KS_EINVAL, "%s: only one dimension may be -1", fn);
        return NULL;
      }
      infer = i;
    } else if (s[i] < 0) {
      ks_error_set(KS_EINVAL, "%s: negative dimension %lld", fn, (long long)s[i]);
      return NULL;
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) s[infer] = known ? xt->size / known : 0;
  int64_t total = 1;
  for (int i = 0; i < ndim; i++) total *= s[i];
  if (total != xt->size || (infer >= 0 && known == 0 && xt->size != 0)) {
    char sx[KS__SHAPE_BUF], st[KS__SHAPE_BUF];
    ks_error_set(KS_ESHAPE, "%s: cannot reshape x %s (size %lld) into %s", fn, ks__shape(xt, sx),
                 (long long)xt->size, ks_shape_str(ndim, shape, st, sizeof st));
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be || KS__NEED(fn, be, copy)) return NULL;
  ks_tensor *y = ks__ctx_view(ctx, xt, ndim, s);
  if (!y) return NULL;
  ks_node *node;
  if (ks__node(ctx, &reshape_type, 1, &x, &node)) return NULL;
  return ks_node_output(ctx, node, y);
}

/* ---- flatten ------------------------------------------------------------------------- */

ks_var *ks_flatten(ks_ctx *ctx, ks_var *x) {
  if (!x) return NULL;
  const int64_t s[1] = {-1};
  return ks_reshape(ctx, x, 1, s);
}

/* ---- concat ---------------------------------------------------------------------------- */

/* in[0..n_in-1] joined along axis; iparam = {outer, row (output floats per
 * outer index), inner (floats per unit of the axis), axis} */
static int concat_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const int64_t outer = node->iparam[0], row = node->iparam[1], inner = node->iparam[2];
  const int axis = (int)node->iparam[3];
  int64_t off = 0;
  for (int i = 0; i < node->n_in; i++) {
    const int64_t wi = node->in[i]->data->shape[axis] * inner;
    if (gx[i] && outer && wi) be->copy2d(outer, wi, ks_tensor_f32(gy[0]) + off, row, ks_tensor_f32(gx[i]), wi);
    off += wi;
  }
  return KS_OK;
}
static const ks_fn_type concat_type = {"concat", concat_backward};

static ks_var *concat_node(ks_ctx *ctx, int n, ks_var *const *xs, int axis,
                           const ks_backend_ops *be) {
  const ks_tensor *x0 = xs[0]->data;
  int64_t shape[KS_MAX_DIMS];
  for (int d = 0; d < x0->ndim; d++) shape[d] = x0->shape[d];
  shape[axis] = 0;
  for (int i = 0; i < n; i++) shape[axis] += xs[i]->data->shape[axis];
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; d++) outer *= shape[d];
  for (int d = axis + 1; d < x0->ndim; d++) inner *= shape[d];
  const int64_t row = shape[axis] * inner;
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, x0->ndim, shape);
  if (!y) return NULL;
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    const int64_t wi = xs[i]->data->shape[axis] * inner;
    if (outer && wi) be->copy2d(outer, wi, ks_tensor_f32(xs[i]->data), wi, ks_tensor_f32(y) + off, row);
    off += wi;
  }
  ks_node *node;
  if (ks__node(ctx, &concat_type, n, xs, &node)) return NULL;
  if (node) {
    node->iparam[0] = outer;
    node->iparam[1] = row;
    node->iparam[2] = inner;
    node->iparam[3] = axis;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_concat(ks_ctx *ctx, int n, ks_var *const *xs, int axis) {
  static const char *fn = "ks_concat";
  if (ks__check_ctx(fn, ctx)) return NULL;
  if (n < 1 || !xs) {
    ks_error_set(KS_EINVAL, "%s: needs at least one input, got %d", fn, n);
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!xs[i]) return NULL;
  const ks_tensor *x0 = xs[0]->data;
  if (ks__check_dtype(fn, "xs[0]", x0, KS_F32)) return NULL;
  const int ax = axis < 0 ? axis + x0->ndim : axis;
  if (ax < 0 || ax >= x0->ndim) {
    char s[KS__SHAPE_BUF];
    ks_error_set(KS_ESHAPE, "%s: axis %d is out of range for xs[0] %s", fn, axis, ks__shape(x0, s));
    return NULL;
  }
  for (int i = 1; i < n; i++) {
    const ks_tensor *xi = xs[i]->data;
    char name[32];
    snprintf(name, sizeof name, "xs[%d]", i);
    if (ks__check_dtype(fn, name, xi, KS_F32)) return NULL;
    int ok = xi->ndim == x0->ndim;
    for (int d = 0; ok && d < x0->ndim; d++)
      if (d != ax && xi->shape[d] != x0->shape[d]) ok = 0;
    if (!ok) {
      char why[96];
      snprintf(why, sizeof why, "do not match: shapes must be equal except along axis %d", ax);
      ks__fail_shapes(fn, "xs[0]", x0, name, xi, why);
      return NULL;
    }
  }
  const ks_backend_ops *be = ks__backend(fn, x0);
  if (!be || KS__NEED(fn, be, copy2d)) return NULL;
  /* a node has at most KS_NODE_MAX_IN inputs: chain the rest */
  int take = n < KS_NODE_MAX_IN ? n : KS_NODE_MAX_IN;
  ks_var *y = concat_node(ctx, take, xs, ax, be);
  for (int i = take; i < n && y;) {
    ks_var *part[KS_NODE_MAX_IN];
    int k = 0;
    part[k++] = y;
    while (k < KS_NODE_MAX_IN && i < n) part[k++] = xs[i++];
    y = concat_node(ctx, k, part, ax, be);
  }
  return y;
}
