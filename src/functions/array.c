/*
 * src/functions/array.c — reshape (chainer.functions.array).
 *
 * The output is a view: it shares x's data (no copy). Backward copies the
 * gradient back under x's shape (the engine wants fresh gradient tensors).
 */
#include "functions_impl.h"

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
