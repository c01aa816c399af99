/*
 * src/functions/convolution.c — convolution_2d and deconvolution_2d
 * (chainer.functions.connection), NCHW float32, lowered to the backend GEMM.
 *
 * Images are processed in chunks of nc images (nc from the shape alone, so a
 * shape always runs the same sequence of kernels and gives the same bits on
 * any thread count). For a chunk, with K = C*kh*kw and P = oh*ow:
 *
 *   convolution   col (K, nc*P) = im2col(x)
 *                 t (out_c, nc*P) = W_g col_g            one GEMM per group
 *                 y (nc, out_c, P) = swap01(t) + b
 *   backward      gyt (out_c, nc*P) = swap01(gy)
 *                 gW_g += gyt_g col_g^T   (beta 1 after chunk 0; as its
 *                                          transpose when out_c/G > K/G)
 *                 gx = col2im(W_g^T gyt_g)
 *                 gb = channel sums of gy
 *
 * A one-image chunk skips both transposes: its product (out_c, P) is y's
 * layout (the bias is added in place), and its gy is gyt.
 *
 * Deconvolution is the same pair read backwards: its forward is
 * convolution's gx (GEMM with W^T then col2im), its backward to x is a
 * convolution of gy. Convolution keeps its col buffer for the gW GEMM when
 * the batch was a single chunk (small batches), otherwise backward
 * recomputes it chunk by chunk, which costs less than keeping a whole
 * batch's col and reading it back from memory; deconvolution keeps nothing
 * but its inputs.
 */
#include "functions_impl.h"

#include <stdio.h>

/* Chunks of images. A chunk's col buffer (K, nc*P) and product (OC, nc*P)
 * should stay in the L2 cache (2 MiB per core on the machines we measure):
 * the whole batch at once (the col of MNIST's second convolution is 20 MB)
 * made im2col, the GEMM's packing of col and the transpose into y all run
 * at memory speed. Smaller is not always better: the GEMM wants at least
 * about 256 columns (nc*P) to amortize packing W, so a chunk holds
 * ceil(256 / P) images (4 for 8x8 outputs, 1 for 24x24), unless col and
 * product then exceed KS_CONV_CHUNK_FLOATS. Chosen from the shape alone. */
#define KS_CONV_MIN_COLS 256
#define KS_CONV_CHUNK_FLOATS ((int64_t)1 << 19)

int64_t ks_conv_outsize(int64_t size, int64_t k, int64_t s, int64_t p, int cover_all, int64_t d) {
  const int64_t dk = k + (k - 1) * (d - 1);
  if (s <= 0) return -1;
  int64_t num = size + 2 * p - dk + (cover_all ? s - 1 : 0);
  /* Python's floor division (num may be negative) */
  int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s);
  return q + 1;
}

int64_t ks_deconv_outsize(int64_t size, int64_t k, int64_t s, int64_t p, int cover_all,
                          int64_t d) {
  const int64_t dk = (k - 1) * d + 1;
  if (cover_all) return s * (size - 1) + dk - s + 1 - 2 * p;
  return s * (size - 1) + dk - 2 * p;
}

typedef struct conv_saved {
  ks_conv_geom g;      /* convolution: x -> y; deconvolution: y -> x (the conv it transposes) */
  int64_t groups;
  int64_t chunk;       /* images per chunk */
  int64_t out_c;       /* conv: y channels; deconv: x channels (W.shape[0]) */
  const float *col;    /* conv: im2col(x) of the forward when the batch was one chunk, else NULL */
} conv_saved;

/* images per chunk for col rows k (K) plus product rows (out channels) and
 * p (P) output pixels per image */
static int64_t chunk_images(int64_t n, int64_t k, int64_t p) {
  if (p < 1) p = 1;
  int64_t nc = (KS_CONV_MIN_COLS + p - 1) / p;
  const int64_t cap = KS_CONV_CHUNK_FLOATS / (k * p > 0 ? k * p : 1);
  if (nc > cap) nc = cap;
  if (nc < 1) nc = 1;
  return nc < n ? nc : n;
}

/* Weight gradient of one chunk: gW (m, n) (+)= A (m, L) B (n, L)^T, with
 * m = output channels of the group and n = its K. When m > n the product is
 * computed as gWt (n, m) = B A^T into 'wt' and transposed into gW after the
 * last chunk (finish_gw): the backend GEMM splits its work into panels of
 * rows (4-aligned) or columns (16-aligned), each panel packing the other
 * operand again, so a tall thin output over a long reduction (MNIST conv1:
 * 32 x 25 over L = 57600) costs 5x more than its transpose. Either way the
 * same calls run on any thread count. */
static void gemm_gw(const ks_backend_ops *be, int64_t m, int64_t n, int64_t L, const float *A,
                    int64_t lda, const float *B, int64_t ldb, int first, float *gW, float *wt) {
  if (m > n)
    be->gemm(0, 1, n, m, L, 1.0f, B, ldb, A, lda, first ? 0.0f : 1.0f, wt, m);
  else
    be->gemm(0, 1, m, n, L, 1.0f, A, lda, B, ldb, first ? 0.0f : 1.0f, gW, n);
}

static void finish_gw(const ks_backend_ops *be, int64_t m, int64_t n, float *gW, const float *wt) {
  if (m > n) be->swap01(n, m, 1, wt, NULL, gW);
}

/* ---- shared argument checks ------------------------------------------------------------- */

typedef struct conv_args {
  int64_t sy, sx, ph, pw, dy, dx, groups;
  int cover_all, outh, outw;
} conv_args;

static int read_opts(const char *fn, const ks_conv2d_opts *o, conv_args *a) {
  ks_conv2d_opts d = {0};
  if (!o) o = &d;
  a->sy = o->sy ? o->sy : 1;
  a->sx = o->sx ? o->sx : 1;
  a->ph = o->ph;
  a->pw = o->pw;
  a->dy = o->dy ? o->dy : 1;
  a->dx = o->dx ? o->dx : 1;
  a->groups = o->groups ? o->groups : 1;
  a->cover_all = o->cover_all;
  a->outh = o->outh;
  a->outw = o->outw;
  if (a->sy < 1 || a->sx < 1 || a->ph < 0 || a->pw < 0 || a->dy < 1 || a->dx < 1 || a->groups < 1 ||
      a->outh < 0 || a->outw < 0)
    return ks_error_set(KS_EINVAL,
                        "%s: bad arguments stride (%d, %d), pad (%d, %d), dilate (%d, %d), groups %d, "
                        "outsize (%d, %d): strides, dilations and groups must be >= 1, pads and "
                        "outsizes >= 0",
                        fn, o->sy, o->sx, o->ph, o->pw, o->dy, o->dx, o->groups, o->outh, o->outw);
  return KS_OK;
}

/* x 4-d, W 4-d, b NULL or float32 (its shape is checked by check_bias) */
static int check_xwb(const char *fn, ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b) {
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32) ||
      ks__check_dtype(fn, "W", W->data, KS_F32))
    return ks_error_last_code();
  if (x->data->ndim != 4)
    return ks__fail_shapes(fn, "x", x->data, "W", W->data, "do not match: x must be 4-d (N, C, H, W)");
  if (W->data->ndim != 4)
    return ks__fail_shapes(fn, "x", x->data, "W", W->data, "do not match: W must be 4-d");
  if (b && ks__check_dtype(fn, "b", b->data, KS_F32)) return ks_error_last_code();
  return KS_OK;
}

static int check_bias(const char *fn, const ks_var *W, const ks_var *b, int64_t out_c,
                      const char *why) {
  if (!b) return KS_OK;
  if (b->data->ndim != 1 || b->data->shape[0] != out_c)
    return ks__fail_shapes(fn, "W", W->data, "b", b->data, why);
  return KS_OK;
}

static int need_conv_kernels(const char *fn, const ks_backend_ops *be) {
  if (!be) return ks_error_last_code();
  if (KS__NEED(fn, be, im2col) || KS__NEED(fn, be, col2im) || KS__NEED(fn, be, swap01) ||
      KS__NEED(fn, be, channel_sum) || KS__NEED(fn, be, channel_bias))
    return ks_error_last_code();
  return KS_OK;
}

/* ---- convolution_2d ------------------------------------------------------------------------ */

/* in[0] = x (N, C, H, W), in[1] = W (out_c, C/G, kh, kw), in[2] = b or NULL */
static int conv_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const conv_saved *sv = node->saved;
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const ks_conv_geom *g0 = &sv->g;
  const int64_t N = g0->n, C = g0->c, G = sv->groups, OC = sv->out_c;
  const int64_t K = C * g0->kh * g0->kw, Kg = K / G, OCg = OC / G, P = g0->oh * g0->ow;
  const int64_t HW = g0->h * g0->w;
  const float *gyd = ks_tensor_f32(gy[0]);
  if (gx[2]) be->channel_sum(N, OC, P, gyd, ks_tensor_f32(gx[2]));
  if (!gx[0] && !gx[1]) return KS_OK;
  float *gW = gx[1] ? ks_tensor_f32(gx[1]) : NULL;
  if (gW && (N == 0 || P == 0)) be->fill(gx[1]->size, 0.0f, gW);
  if (gx[0] && (P == 0 || OC == 0)) be->fill(gx[0]->size, 0.0f, ks_tensor_f32(gx[0]));
  if (N == 0 || P == 0) return KS_OK;
  const int64_t nc = sv->chunk;
  /* the forward's col when it kept one (read-only: a second backward
   * through the same graph needs it again), else a buffer to recompute it */
  ks_tensor *col = !sv->col || gx[0] ? ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){K, nc * P}) : NULL;
  /* a one-image chunk's gy (OC, P) is already in the (OC, cn*P) layout */
  ks_tensor *gyt = nc > 1 ? ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){OC, nc * P}) : NULL;
  ks_tensor *wt = gW && OCg > Kg ? ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){G * Kg, OCg}) : NULL;
  if ((!col && (!sv->col || gx[0])) || (nc > 1 && !gyt) || (gW && OCg > Kg && !wt))
    return ks_error_last_code();
  float *cold = col ? ks_tensor_f32(col) : NULL, *gytd = gyt ? ks_tensor_f32(gyt) : NULL;
  const float *xd = ks_tensor_f32(node->in[0]->data), *wd = ks_tensor_f32(node->in[1]->data);
  for (int64_t n0 = 0; n0 < N; n0 += nc) {
    const int64_t cn = N - n0 < nc ? N - n0 : nc, ld = cn * P;
    ks_conv_geom g = *g0;
    g.n = cn;
    if (gyt)
      be->swap01(cn, OC, P, gyd + n0 * OC * P, NULL, gytd);
    else
      gytd = (float *)gyd + n0 * OC * P; /* read only */
    if (gW) {
      const float *xcol = sv->col;
      if (!xcol) {
        be->im2col(&g, xd + n0 * C * HW, cold);
        xcol = cold;
      }
      for (int64_t gi = 0; gi < G; gi++)
        gemm_gw(be, OCg, Kg, ld, gytd + gi * OCg * ld, ld, xcol + gi * Kg * ld, ld, n0 == 0,
                gW + gi * OCg * Kg, wt ? ks_tensor_f32(wt) + gi * Kg * OCg : NULL);
    }
    if (gx[0]) {
      for (int64_t gi = 0; gi < G; gi++)
        be->gemm(1, 0, Kg, ld, OCg, 1.0f, wd + gi * OCg * Kg, Kg, gytd + gi * OCg * ld, ld, 0.0f,
                 cold + gi * Kg * ld, ld);
      be->col2im(&g, cold, ks_tensor_f32(gx[0]) + n0 * C * HW);
    }
  }
  if (gW)
    for (int64_t gi = 0; gi < G; gi++)
      finish_gw(be, OCg, Kg, gW + gi * OCg * Kg, wt ? ks_tensor_f32(wt) + gi * Kg * OCg : NULL);
  return KS_OK;
}
static const ks_fn_type conv_type = {"convolution_2d", conv_backward};

ks_var *ks_convolution_2d_ex(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b,
                             const ks_conv2d_opts *opts) {
  static const char *fn = "ks_convolution_2d";
  if (!x || !W) return NULL;
  conv_args a;
  if (check_xwb(fn, ctx, x, W, b) || read_opts(fn, opts, &a)) return NULL;
  const ks_tensor *xt = x->data, *wt = W->data;
  const int64_t N = xt->shape[0], C = xt->shape[1], H = xt->shape[2], Wd = xt->shape[3];
  const int64_t OC = wt->shape[0], kh = wt->shape[2], kw = wt->shape[3], G = a.groups;
  char why[160];
  if (C % G || OC % G) {
    snprintf(why, sizeof why, "do not match: in_channels %lld and out_channels %lld must be "
             "divisible by groups %lld", (long long)C, (long long)OC, (long long)G);
    ks__fail_shapes(fn, "x", xt, "W", wt, why);
    return NULL;
  }
  if (wt->shape[1] != C / G) {
    snprintf(why, sizeof why, "do not match: W.shape[1] must be in_channels / groups = %lld / %lld",
             (long long)C, (long long)G);
    ks__fail_shapes(fn, "x", xt, "W", wt, why);
    return NULL;
  }
  if (check_bias(fn, W, b, OC, "do not match: b must be (out_channels,)")) return NULL;
  const int64_t oh = ks_conv_outsize(H, kh, a.sy, a.ph, a.cover_all, a.dy);
  const int64_t ow = ks_conv_outsize(Wd, kw, a.sx, a.pw, a.cover_all, a.dx);
  if (oh <= 0 || ow <= 0 || kh <= 0 || kw <= 0) {
    snprintf(why, sizeof why, "give an empty output (%lld, %lld) with stride (%lld, %lld), pad "
             "(%lld, %lld), dilate (%lld, %lld)", (long long)oh, (long long)ow, (long long)a.sy,
             (long long)a.sx, (long long)a.ph, (long long)a.pw, (long long)a.dy, (long long)a.dx);
    ks__fail_shapes(fn, "x", xt, "W", wt, why);
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (need_conv_kernels(fn, be)) return NULL;

  const int64_t K = C * kh * kw, Kg = K / G, OCg = OC / G, P = oh * ow, HW = H * Wd;
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){N, OC, oh, ow});
  if (!y) return NULL;
  const int64_t nc = chunk_images(N, K + OC, P);
  ks_conv_geom g0 = {N, C, H, Wd, kh, kw, a.sy, a.sx, a.ph, a.pw, a.dy, a.dx, oh, ow};
  ks_tensor *col = NULL;
  if (N > 0) {
    col = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){K, nc * P});
    /* a one-image chunk's product (OC, P) is y's layout: written in place */
    ks_tensor *t = nc > 1 ? ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){OC, nc * P}) : NULL;
    if (!col || (nc > 1 && !t)) return NULL;
    float *cold = ks_tensor_f32(col), *td = t ? ks_tensor_f32(t) : NULL;
    const float *xd = ks_tensor_f32(xt), *wd = ks_tensor_f32(wt);
    const float *bd = b ? ks_tensor_f32(b->data) : NULL;
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
      const int64_t cn = N - n0 < nc ? N - n0 : nc, ld = cn * P;
      ks_conv_geom g = g0;
      g.n = cn;
      be->im2col(&g, xd + n0 * C * HW, cold);
      if (!t) td = ks_tensor_f32(y) + n0 * OC * P;
      for (int64_t gi = 0; gi < G; gi++) {
        if (Kg > 0)
          be->gemm(0, 0, OCg, ld, Kg, 1.0f, wd + gi * OCg * Kg, Kg, cold + gi * Kg * ld, ld, 0.0f,
                   td + gi * OCg * ld, ld);
        else
          be->fill(OCg * ld, 0.0f, td + gi * OCg * ld);
      }
      if (t)
        be->swap01(OC, cn, P, td, bd, ks_tensor_f32(y) + n0 * OC * P);
      else if (bd)
        be->channel_bias(1, OC, P, bd, td);
    }
  }
  ks_node *node;
  ks_var *in[3] = {x, W, b};
  if (ks__node(ctx, &conv_type, 3, in, &node)) return NULL;
  if (node) {
    conv_saved *sv = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *sv);
    if (!sv) return NULL;
    sv->g = g0;
    sv->groups = G;
    sv->chunk = nc;
    sv->out_c = OC;
    /* one chunk: col still holds im2col(x), which gW needs; keep it (an
     * arena buffer) instead of recomputing it in backward */
    sv->col = col && nc == N && (W->requires_grad || W->creator) ? ks_tensor_f32(col) : NULL;
    node->saved = sv;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_convolution_2d(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b, int stride, int pad,
                          int dilate, int groups) {
  ks_conv2d_opts o = {.sy = stride, .sx = stride, .ph = pad, .pw = pad, .dy = dilate,
                      .dx = dilate, .groups = groups};
  if (!x || !W) return NULL;
  if (stride < 1 || dilate < 1 || groups < 1 || pad < 0) {
    ks_error_set(KS_EINVAL, "ks_convolution_2d: bad arguments stride %d, pad %d, dilate %d, groups %d "
                 "(stride, dilate, groups >= 1; pad >= 0)", stride, pad, dilate, groups);
    return NULL;
  }
  return ks_convolution_2d_ex(ctx, x, W, b, &o);
}

/* ---- deconvolution_2d ------------------------------------------------------------------------ */

/* in[0] = x (N, C, H, W), in[1] = W (C, out_c/G, kh, kw), in[2] = b or NULL.
 * saved->g is the geometry of the convolution from y (N, out_c, oh, ow) to x:
 * g.c = out_c, g.h/w = oh/ow, g.oh/ow = H/W; saved->out_c = C. */
static int deconv_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const conv_saved *sv = node->saved;
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const ks_conv_geom *g0 = &sv->g;
  const int64_t N = g0->n, YC = g0->c, G = sv->groups, XC = sv->out_c;
  const int64_t K = YC * g0->kh * g0->kw, Kg = K / G, XCg = XC / G, P = g0->oh * g0->ow;
  const int64_t YHW = g0->h * g0->w;
  const float *gyd = ks_tensor_f32(gy[0]);
  if (gx[2]) be->channel_sum(N, YC, YHW, gyd, ks_tensor_f32(gx[2]));
  if (!gx[0] && !gx[1]) return KS_OK;
  float *gW = gx[1] ? ks_tensor_f32(gx[1]) : NULL;
  if (gW && (N == 0 || P == 0)) be->fill(gx[1]->size, 0.0f, gW);
  if (N == 0 || P == 0) return KS_OK;
  const int64_t nc = sv->chunk;
  ks_tensor *col = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){K, nc * P});
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){XC, nc * P});
  ks_tensor *wt = gW && XCg > Kg ? ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){G * Kg, XCg}) : NULL;
  if (!col || !xt || (gW && XCg > Kg && !wt)) return ks_error_last_code();
  float *cold = ks_tensor_f32(col), *xtd = ks_tensor_f32(xt);
  const float *xd = ks_tensor_f32(node->in[0]->data), *wd = ks_tensor_f32(node->in[1]->data);
  for (int64_t n0 = 0; n0 < N; n0 += nc) {
    const int64_t cn = N - n0 < nc ? N - n0 : nc, ld = cn * P;
    ks_conv_geom g = *g0;
    g.n = cn;
    be->im2col(&g, gyd + n0 * YC * YHW, cold);
    if (gx[0]) {
      for (int64_t gi = 0; gi < G; gi++) {
        if (Kg > 0)
          be->gemm(0, 0, XCg, ld, Kg, 1.0f, wd + gi * XCg * Kg, Kg, cold + gi * Kg * ld, ld, 0.0f,
                   xtd + gi * XCg * ld, ld);
        else
          be->fill(XCg * ld, 0.0f, xtd + gi * XCg * ld);
      }
      be->swap01(XC, cn, P, xtd, NULL, ks_tensor_f32(gx[0]) + n0 * XC * P);
    }
    if (gW) {
      be->swap01(cn, XC, P, xd + n0 * XC * P, NULL, xtd);
      for (int64_t gi = 0; gi < G; gi++)
        gemm_gw(be, XCg, Kg, ld, xtd + gi * XCg * ld, ld, cold + gi * Kg * ld, ld, n0 == 0,
                gW + gi * XCg * Kg, wt ? ks_tensor_f32(wt) + gi * Kg * XCg : NULL);
    }
  }
  if (gW)
    for (int64_t gi = 0; gi < G; gi++)
      finish_gw(be, XCg, Kg, gW + gi * XCg * Kg, wt ? ks_tensor_f32(wt) + gi * Kg * XCg : NULL);
  return KS_OK;
}
static const ks_fn_type deconv_type = {"deconvolution_2d", deconv_backward};

ks_var *ks_deconvolution_2d_ex(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b,
                               const ks_conv2d_opts *opts) {
  static const char *fn = "ks_deconvolution_2d";
  if (!x || !W) return NULL;
  conv_args a;
  if (check_xwb(fn, ctx, x, W, b) || read_opts(fn, opts, &a)) return NULL;
  const ks_tensor *xt = x->data, *wt = W->data;
  const int64_t N = xt->shape[0], C = xt->shape[1], H = xt->shape[2], Wd = xt->shape[3];
  const int64_t G = a.groups, kh = wt->shape[2], kw = wt->shape[3];
  const int64_t OC = wt->shape[1] * G;
  char why[200];
  if (wt->shape[0] != C) {
    ks__fail_shapes(fn, "x", xt, "W", wt, "do not match: W.shape[0] must be in_channels (x.shape[1])");
    return NULL;
  }
  if (C % G) {
    snprintf(why, sizeof why, "do not match: in_channels %lld must be divisible by groups %lld",
             (long long)C, (long long)G);
    ks__fail_shapes(fn, "x", xt, "W", wt, why);
    return NULL;
  }
  if (check_bias(fn, W, b, OC, "do not match: b must be (out_channels,) = (W.shape[1] * groups,)"))
    return NULL;
  int64_t oh = a.outh, ow = a.outw;
  if (oh == 0) oh = ks_deconv_outsize(H, kh, a.sy, a.ph, 0, a.dy);
  if (ow == 0) ow = ks_deconv_outsize(Wd, kw, a.sx, a.pw, 0, a.dx);
  if (oh <= 0 || ow <= 0 || kh <= 0 || kw <= 0) {
    snprintf(why, sizeof why, "give a non-positive output size (%lld, %lld)", (long long)oh,
             (long long)ow);
    ks__fail_shapes(fn, "x", xt, "W", wt, why);
    return NULL;
  }
  if (a.outh || a.outw) {
    const int64_t lh = ks_conv_outsize(oh, kh, a.sy, a.ph, 0, a.dy),
                  uh = ks_conv_outsize(oh, kh, a.sy, a.ph, 1, a.dy),
                  lw = ks_conv_outsize(ow, kw, a.sx, a.pw, 0, a.dx),
                  uw = ks_conv_outsize(ow, kw, a.sx, a.pw, 1, a.dx);
    if (H < lh || H > uh || Wd < lw || Wd > uw) {
      snprintf(why, sizeof why, "do not match outsize (%lld, %lld): a convolution of that size "
               "gives heights %lld..%lld and widths %lld..%lld", (long long)oh, (long long)ow,
               (long long)lh, (long long)uh, (long long)lw, (long long)uw);
      ks__fail_shapes(fn, "x", xt, "W", wt, why);
      return NULL;
    }
  }
  const ks_backend_ops *be = ks__backend(fn, xt);
  if (need_conv_kernels(fn, be)) return NULL;

  const int64_t K = OC * kh * kw, Kg = K / G, Cg = C / G, P = H * Wd, YHW = oh * ow;
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){N, OC, oh, ow});
  if (!y) return NULL;
  const int64_t nc = chunk_images(N, K + C, P);
  /* the convolution this deconvolution transposes: y -> x */
  ks_conv_geom g0 = {N, OC, oh, ow, kh, kw, a.sy, a.sx, a.ph, a.pw, a.dy, a.dx, H, Wd};
  if (N > 0) {
    ks_tensor *col = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){K, nc * P});
    ks_tensor *tt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){C, nc * P});
    if (!col || !tt) return NULL;
    float *cold = ks_tensor_f32(col), *ttd = ks_tensor_f32(tt);
    const float *xd = ks_tensor_f32(xt), *wd = ks_tensor_f32(wt);
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
      const int64_t cn = N - n0 < nc ? N - n0 : nc, ld = cn * P;
      ks_conv_geom g = g0;
      g.n = cn;
      be->swap01(cn, C, P, xd + n0 * C * P, NULL, ttd);
      for (int64_t gi = 0; gi < G; gi++) {
        if (Cg > 0)
          be->gemm(1, 0, Kg, ld, Cg, 1.0f, wd + gi * Cg * Kg, Kg, ttd + gi * Cg * ld, ld, 0.0f,
                   cold + gi * Kg * ld, ld);
        else
          be->fill(Kg * ld, 0.0f, cold + gi * Kg * ld);
      }
      be->col2im(&g, cold, ks_tensor_f32(y) + n0 * OC * YHW);
    }
    if (b) be->channel_bias(N, OC, YHW, ks_tensor_f32(b->data), ks_tensor_f32(y));
  }
  ks_node *node;
  ks_var *in[3] = {x, W, b};
  if (ks__node(ctx, &deconv_type, 3, in, &node)) return NULL;
  if (node) {
    conv_saved *sv = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *sv);
    if (!sv) return NULL;
    sv->g = g0;
    sv->groups = G;
    sv->chunk = nc;
    sv->out_c = C;
    sv->col = NULL;
    node->saved = sv;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_deconvolution_2d(ks_ctx *ctx, ks_var *x, ks_var *W, ks_var *b, int stride, int pad) {
  if (!x || !W) return NULL;
  if (stride < 1 || pad < 0) {
    ks_error_set(KS_EINVAL, "ks_deconvolution_2d: bad arguments stride %d, pad %d (stride >= 1, "
                 "pad >= 0)", stride, pad);
    return NULL;
  }
  ks_conv2d_opts o = {.sy = stride, .sx = stride, .ph = pad, .pw = pad};
  return ks_deconvolution_2d_ex(ctx, x, W, b, &o);
}
