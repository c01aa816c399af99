/*
 * src/functions/pooling.c — max_pooling_2d and average_pooling_2d
 * (chainer.functions.pooling), NCHW float32.
 *
 * Output sizes follow Chainer's get_conv_outsize: max pooling honours
 * cover_all (Chainer's default True: the last partial window is covered),
 * average pooling never covers (Chainer's AveragePooling2D). Max pooling
 * keeps the argmax offsets (int32, y's shape) so backward is a scatter;
 * average pooling keeps nothing and divides by the full window kh*kw, the
 * padded zeros included (Chainer's pad_value=0).
 */
#include "functions_impl.h"

/* saved = {ks_conv_geom, argmax tensor (max pooling)} */
typedef struct pool_saved {
  ks_conv_geom g;
  ks_tensor *idx;
} pool_saved;

static int max_pool_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const pool_saved *sv = node->saved;
  ks_backend_for(gy[0])->max_pool2d_backward(&sv->g, ks_tensor_i32(sv->idx), ks_tensor_f32(gy[0]),
                                             ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type max_pool_type = {"max_pooling_2d", max_pool_backward};

static int avg_pool_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const pool_saved *sv = node->saved;
  ks_backend_for(gy[0])->avg_pool2d_backward(&sv->g, ks_tensor_f32(gy[0]), ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type avg_pool_type = {"average_pooling_2d", avg_pool_backward};

static ks_var *pool(ks_ctx *ctx, const char *fn, ks_var *x, const ks_pool2d_opts *o, int is_max) {
  if (!x) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  if (!o) {
    ks_error_set(KS_EINVAL, "%s: opts is NULL", fn);
    return NULL;
  }
  const ks_tensor *xt = x->data;
  char s[KS__SHAPE_BUF];
  if (xt->ndim != 4) {
    ks_error_set(KS_ESHAPE, "%s: x must be 4-d (N, C, H, W), got %s", fn, ks__shape(xt, s));
    return NULL;
  }
  const int64_t kh = o->kh, kw = o->kw, sy = o->sy ? o->sy : kh, sx = o->sx ? o->sx : kw;
  if (kh < 1 || kw < 1 || sy < 1 || sx < 1 || o->ph < 0 || o->pw < 0) {
    ks_error_set(KS_EINVAL, "%s: bad window ksize (%d, %d), stride (%d, %d), pad (%d, %d) "
                 "(ksize >= 1, stride >= 0 with 0 meaning ksize, pad >= 0)", fn, o->kh, o->kw, o->sy,
                 o->sx, o->ph, o->pw);
    return NULL;
  }
  if (!is_max && o->cover_all) {
    ks_error_set(KS_EINVAL, "%s: cover_all is not supported by average pooling", fn);
    return NULL;
  }
  const int64_t N = xt->shape[0], C = xt->shape[1], H = xt->shape[2], W = xt->shape[3];
  const int64_t oh = ks_conv_outsize(H, kh, sy, o->ph, o->cover_all, 1);
  const int64_t ow = ks_conv_outsize(W, kw, sx, o->pw, o->cover_all, 1);
  if (oh <= 0 || ow <= 0) {
    ks_error_set(KS_ESHAPE, "%s: x %s is smaller than the window (%lld, %lld) with pad (%d, %d): "
                 "empty output", fn, ks__shape(xt, s), (long long)kh, (long long)kw, o->ph, o->pw);
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (!be) return NULL;
  if (is_max ? (KS__NEED(fn, be, max_pool2d_forward) || KS__NEED(fn, be, max_pool2d_backward))
             : (KS__NEED(fn, be, avg_pool2d_forward) || KS__NEED(fn, be, avg_pool2d_backward)))
    return NULL;
  const int64_t ys[4] = {N, C, oh, ow};
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 4, ys);
  if (!y) return NULL;
  ks_conv_geom g = {N, C, H, W, kh, kw, sy, sx, o->ph, o->pw, 1, 1, oh, ow};
  ks_tensor *idx = NULL;
  if (is_max) {
    idx = ks_ctx_tensor(ctx, KS_I32, 4, ys);
    if (!idx) return NULL;
    idx->device = xt->device;
    be->max_pool2d_forward(&g, ks_tensor_f32(xt), ks_tensor_f32(y), ks_tensor_i32(idx));
  } else {
    be->avg_pool2d_forward(&g, ks_tensor_f32(xt), ks_tensor_f32(y));
  }
  ks_node *node;
  if (ks__node(ctx, is_max ? &max_pool_type : &avg_pool_type, 1, &x, &node)) return NULL;
  if (node) {
    pool_saved *sv = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *sv);
    if (!sv) return NULL;
    sv->g = g;
    sv->idx = idx;
    node->saved = sv;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_max_pooling_2d_ex(ks_ctx *ctx, ks_var *x, const ks_pool2d_opts *opts) {
  return pool(ctx, "ks_max_pooling_2d", x, opts, 1);
}

ks_var *ks_max_pooling_2d(ks_ctx *ctx, ks_var *x, int ksize, int stride, int pad, int cover_all) {
  ks_pool2d_opts o = {ksize, ksize, stride, stride, pad, pad, cover_all};
  return pool(ctx, "ks_max_pooling_2d", x, &o, 1);
}

ks_var *ks_average_pooling_2d_ex(ks_ctx *ctx, ks_var *x, const ks_pool2d_opts *opts) {
  return pool(ctx, "ks_average_pooling_2d", x, opts, 0);
}

ks_var *ks_average_pooling_2d(ks_ctx *ctx, ks_var *x, int ksize, int stride, int pad) {
  ks_pool2d_opts o = {ksize, ksize, stride, stride, pad, pad, 0};
  return pool(ctx, "ks_average_pooling_2d", x, &o, 0);
}
