/*
 * tests/lib/test_conv.c — convolution_2d, deconvolution_2d, max_pooling_2d,
 * average_pooling_2d, flatten and concat, as one table:
 *   (a) forward values and output shape against references written here in
 *       double by direct loops (direct convolution; deconvolution as a
 *       scatter of every input pixel; window max/mean); output shapes are
 *       literals computed by hand from Chainer's get_conv_outsize /
 *       get_deconv_outsize rules;
 *   (b) ks_check_backward on every float32 input (x, W, b);
 * plus a multi-chunk convolution checked against double references for
 * forward and every gradient, and error cases.
 */
#include "testutil.h"
#include "kusari/gradient_check.h"

#include <stdlib.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef enum { K_CONV, K_DECONV, K_MAXP, K_AVGP, K_FLAT, K_CONCAT } op_kind;

typedef struct conv_case {
  const char *name;
  op_kind kind;
  int64_t x[4];        /* x shape (NCHW); concat: unused                    */
  int64_t w[4];        /* W shape (conv/deconv)                             */
  int bias;            /* conv/deconv: with b                               */
  ks_conv2d_opts co;   /* conv/deconv                                       */
  ks_pool2d_opts po;   /* pooling                                           */
  int simple;          /* use the short-form API (square args)              */
  int out_ndim;
  int64_t out[4];
  /* concat: n inputs of ndim 3 with shapes cat[i], axis */
  int n_cat;
  int64_t cat[6][3];
  int axis;
} conv_case;

#define O(...) {__VA_ARGS__}

static const conv_case cases[] = {
  /* ---- convolution: oh = (H + 2p - dk [+ s - 1 if cover_all]) // s + 1 */
  {"conv basic", K_CONV, {2, 3, 5, 5}, {4, 3, 3, 3}, 1, {0}, .out_ndim = 4, .out = {2, 4, 3, 3}},
  {"conv stride 2 pad 1", K_CONV, {2, 3, 5, 5}, {4, 3, 3, 3}, 1, {.sy = 2, .sx = 2, .ph = 1, .pw = 1},
   .out_ndim = 4, .out = {2, 4, 3, 3}},
  {"conv simple stride 2 pad 1", K_CONV, {2, 3, 5, 5}, {4, 3, 3, 3}, 1,
   {.sy = 2, .sx = 2, .ph = 1, .pw = 1, .dy = 1, .dx = 1, .groups = 1}, .simple = 1, .out_ndim = 4,
   .out = {2, 4, 3, 3}},
  {"conv dilate 2 pad 1", K_CONV, {1, 2, 6, 6}, {3, 2, 3, 3}, 1, {.ph = 1, .pw = 1, .dy = 2, .dx = 2},
   .out_ndim = 4, .out = {1, 3, 4, 4}},
  {"conv groups 2", K_CONV, {2, 4, 4, 4}, {6, 2, 3, 3}, 1, {.ph = 1, .pw = 1, .groups = 2},
   .out_ndim = 4, .out = {2, 6, 4, 4}},
  {"conv depthwise (groups = C)", K_CONV, {1, 3, 4, 4}, {3, 1, 3, 3}, 0, {.ph = 1, .pw = 1, .groups = 3},
   .out_ndim = 4, .out = {1, 3, 4, 4}},
  {"conv nobias rect kernel/stride/pad", K_CONV, {2, 2, 5, 6}, {3, 2, 2, 3}, 0, {.sy = 2, .sx = 1, .pw = 1},
   .out_ndim = 4, .out = {2, 3, 2, 6}},
  {"conv cover_all stride 2", K_CONV, {1, 2, 5, 5}, {2, 2, 2, 2}, 1, {.sy = 2, .sx = 2, .cover_all = 1},
   .out_ndim = 4, .out = {1, 2, 3, 3}},
  {"conv 1x1", K_CONV, {2, 3, 4, 4}, {5, 3, 1, 1}, 1, {0}, .out_ndim = 4, .out = {2, 5, 4, 4}},
  {"conv 1x1 groups 2 (out > K per group)", K_CONV, {1, 4, 3, 3}, {6, 2, 1, 1}, 1, {.groups = 2},
   .out_ndim = 4, .out = {1, 6, 3, 3}},
  {"conv stride 3 > kernel", K_CONV, {1, 1, 7, 7}, {2, 1, 2, 2}, 1, {.sy = 3, .sx = 3},
   .out_ndim = 4, .out = {1, 2, 2, 2}},
  /* ---- deconvolution: oh = s (H - 1) + dk - 2p unless outsize */
  {"deconv basic", K_DECONV, {2, 3, 3, 3}, {3, 2, 3, 3}, 1, {0}, .out_ndim = 4, .out = {2, 2, 5, 5}},
  {"deconv stride 2 pad 1", K_DECONV, {1, 2, 3, 3}, {2, 3, 3, 3}, 1, {.sy = 2, .sx = 2, .ph = 1, .pw = 1},
   .out_ndim = 4, .out = {1, 3, 5, 5}},
  {"deconv simple stride 2 pad 1", K_DECONV, {1, 2, 3, 3}, {2, 3, 3, 3}, 1,
   {.sy = 2, .sx = 2, .ph = 1, .pw = 1}, .simple = 1, .out_ndim = 4, .out = {1, 3, 5, 5}},
  {"deconv outsize (6, 6)", K_DECONV, {1, 2, 3, 3}, {2, 3, 3, 3}, 1,
   {.sy = 2, .sx = 2, .ph = 1, .pw = 1, .outh = 6, .outw = 6}, .out_ndim = 4, .out = {1, 3, 6, 6}},
  {"deconv groups 2", K_DECONV, {1, 4, 3, 3}, {4, 1, 2, 2}, 1, {.sy = 2, .sx = 2, .groups = 2},
   .out_ndim = 4, .out = {1, 2, 6, 6}},
  {"deconv dilate 2 nobias", K_DECONV, {2, 2, 3, 3}, {2, 2, 2, 2}, 0, {.dy = 2, .dx = 2},
   .out_ndim = 4, .out = {2, 2, 5, 5}},
  {"deconv rect", K_DECONV, {1, 2, 2, 3}, {2, 1, 3, 2}, 1, {.sy = 1, .sx = 2, .pw = 1},
   .out_ndim = 4, .out = {1, 1, 4, 4}},
  {"deconv 1x1 (in > K)", K_DECONV, {2, 6, 3, 3}, {6, 2, 1, 1}, 1, {0}, .out_ndim = 4,
   .out = {2, 2, 3, 3}},
  /* ---- max pooling (cover_all: (H + 2p - k + s - 1) // s + 1) */
  {"max_pool k2 s2 cover_all", K_MAXP, {2, 2, 5, 5}, .po = {2, 2, 2, 2, 0, 0, 1}, .out_ndim = 4,
   .out = {2, 2, 3, 3}},
  {"max_pool k2 s2 no cover_all", K_MAXP, {2, 2, 5, 5}, .po = {2, 2, 2, 2, 0, 0, 0}, .out_ndim = 4,
   .out = {2, 2, 2, 2}},
  {"max_pool k3 s2 p1 cover_all", K_MAXP, {1, 3, 5, 5}, .po = {3, 3, 2, 2, 1, 1, 1}, .out_ndim = 4,
   .out = {1, 3, 3, 3}},
  {"max_pool k3 s2 p1 cover_all (6x6)", K_MAXP, {1, 1, 6, 6}, .po = {3, 3, 2, 2, 1, 1, 1},
   .out_ndim = 4, .out = {1, 1, 4, 4}},
  {"max_pool k3 s1 p1", K_MAXP, {1, 2, 4, 4}, .po = {3, 3, 1, 1, 1, 1, 0}, .out_ndim = 4,
   .out = {1, 2, 4, 4}},
  {"max_pool rect cover_all", K_MAXP, {1, 1, 4, 7}, .po = {2, 3, 1, 2, 0, 0, 1}, .out_ndim = 4,
   .out = {1, 1, 3, 3}},
  {"max_pool stride 0 = ksize", K_MAXP, {1, 2, 4, 4}, .po = {2, 2, 0, 0, 0, 0, 1}, .out_ndim = 4,
   .out = {1, 2, 2, 2}},
  {"max_pool simple k2 (cover_all)", K_MAXP, {2, 1, 5, 5}, .po = {2, 2, 2, 2, 0, 0, 1}, .simple = 1,
   .out_ndim = 4, .out = {2, 1, 3, 3}},
  /* ---- average pooling (never cover_all; divides by kh*kw) */
  {"avg_pool k2 s2", K_AVGP, {2, 2, 4, 4}, .po = {2, 2, 2, 2}, .out_ndim = 4, .out = {2, 2, 2, 2}},
  {"avg_pool k3 s2 p1", K_AVGP, {1, 2, 5, 5}, .po = {3, 3, 2, 2, 1, 1}, .out_ndim = 4,
   .out = {1, 2, 3, 3}},
  {"avg_pool k2 s1 p1", K_AVGP, {1, 1, 3, 3}, .po = {2, 2, 1, 1, 1, 1}, .out_ndim = 4,
   .out = {1, 1, 4, 4}},
  {"avg_pool k2 odd input", K_AVGP, {1, 1, 5, 5}, .po = {2, 2, 0, 0}, .out_ndim = 4, .out = {1, 1, 2, 2}},
  {"avg_pool simple k3 s1 p1", K_AVGP, {1, 2, 4, 4}, .po = {3, 3, 1, 1, 1, 1}, .simple = 1,
   .out_ndim = 4, .out = {1, 2, 4, 4}},
  /* ---- flatten, concat */
  {"flatten", K_FLAT, {2, 3, 2, 2}, .out_ndim = 1, .out = {24}},
  {"concat axis 1", K_CONCAT, .n_cat = 3, .cat = {{2, 1, 3}, {2, 2, 3}, {2, 3, 3}}, .axis = 1,
   .out_ndim = 3, .out = {2, 6, 3}},
  {"concat axis 0", K_CONCAT, .n_cat = 2, .cat = {{1, 2, 2}, {2, 2, 2}}, .axis = 0, .out_ndim = 3,
   .out = {3, 2, 2}},
  {"concat axis -1", K_CONCAT, .n_cat = 2, .cat = {{2, 2, 1}, {2, 2, 3}}, .axis = -1, .out_ndim = 3,
   .out = {2, 2, 4}},
  {"concat 6 inputs (chained nodes)", K_CONCAT, .n_cat = 6,
   .cat = {{2, 1, 2}, {2, 2, 2}, {2, 1, 2}, {2, 1, 2}, {2, 3, 2}, {2, 1, 2}}, .axis = 1,
   .out_ndim = 3, .out = {2, 9, 2}},
  {"concat one input", K_CONCAT, .n_cat = 1, .cat = {{2, 2, 2}}, .axis = 1, .out_ndim = 3,
   .out = {2, 2, 2}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static int n_inputs(const conv_case *c) {
  switch (c->kind) {
    case K_CONV: case K_DECONV: return c->bias ? 3 : 2;
    case K_CONCAT: return c->n_cat;
    default: return 1;
  }
}

/* ---- apply ------------------------------------------------------------------------------ */

static ks_var *apply(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  const conv_case *c = user;
  ks_var *b = c->bias ? in[2] : NULL;
  switch (c->kind) {
    case K_CONV:
      if (c->simple)
        return ks_convolution_2d(ctx, in[0], in[1], b, c->co.sy, c->co.ph, c->co.dy, c->co.groups);
      return ks_convolution_2d_ex(ctx, in[0], in[1], b, &c->co);
    case K_DECONV:
      if (c->simple) return ks_deconvolution_2d(ctx, in[0], in[1], b, c->co.sy, c->co.ph);
      return ks_deconvolution_2d_ex(ctx, in[0], in[1], b, &c->co);
    case K_MAXP:
      if (c->simple) return ks_max_pooling_2d(ctx, in[0], c->po.kh, c->po.sy, c->po.ph, c->po.cover_all);
      return ks_max_pooling_2d_ex(ctx, in[0], &c->po);
    case K_AVGP:
      if (c->simple) return ks_average_pooling_2d(ctx, in[0], c->po.kh, c->po.sy, c->po.ph);
      return ks_average_pooling_2d_ex(ctx, in[0], &c->po);
    case K_FLAT: return ks_flatten(ctx, in[0]);
    case K_CONCAT: return ks_concat(ctx, n, in, c->axis);
  }
  return NULL;
}

/* ---- references in double ----------------------------------------------------------------- */

static int i1(int v) { return v ? v : 1; }

static void ref_conv(const conv_case *c, ks_tensor *const *x, double *y) {
  const float *X = ks_tensor_f32(x[0]), *W = ks_tensor_f32(x[1]);
  const float *B = c->bias ? ks_tensor_f32(x[2]) : NULL;
  const int64_t N = c->x[0], C = c->x[1], H = c->x[2], Wd = c->x[3];
  const int64_t OC = c->w[0], Cg = c->w[1], KH = c->w[2], KW = c->w[3];
  const int64_t G = i1(c->co.groups), OCg = OC / G, OH = c->out[2], OW = c->out[3];
  const int64_t sy = i1(c->co.sy), sx = i1(c->co.sx), dy = i1(c->co.dy), dx = i1(c->co.dx);
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          double s = B ? B[o] : 0.0;
          const int64_t g = o / OCg;
          for (int64_t cc = 0; cc < Cg; cc++)
            for (int64_t ky = 0; ky < KH; ky++)
              for (int64_t kx = 0; kx < KW; kx++) {
                int64_t iy = oy * sy - c->co.ph + ky * dy, ix = ox * sx - c->co.pw + kx * dx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue;
                s += (double)W[((o * Cg + cc) * KH + ky) * KW + kx] *
                     X[((n * C + g * Cg + cc) * H + iy) * Wd + ix];
              }
          y[((n * OC + o) * OH + oy) * OW + ox] = s;
        }
}

/* every input pixel scatters W-weighted copies of itself into the output */
static void ref_deconv(const conv_case *c, ks_tensor *const *x, double *y) {
  const float *X = ks_tensor_f32(x[0]), *W = ks_tensor_f32(x[1]);
  const float *B = c->bias ? ks_tensor_f32(x[2]) : NULL;
  const int64_t N = c->x[0], C = c->x[1], H = c->x[2], Wd = c->x[3];
  const int64_t OCg = c->w[1], KH = c->w[2], KW = c->w[3];
  const int64_t G = i1(c->co.groups), Cg = C / G, OC = OCg * G, OH = c->out[2], OW = c->out[3];
  const int64_t sy = i1(c->co.sy), sx = i1(c->co.sx), dy = i1(c->co.dy), dx = i1(c->co.dx);
  for (int64_t i = 0; i < N * OC * OH * OW; i++) y[i] = B ? B[(i / (OH * OW)) % OC] : 0.0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t ci = 0; ci < C; ci++)
      for (int64_t iy = 0; iy < H; iy++)
        for (int64_t ix = 0; ix < Wd; ix++) {
          const double v = X[((n * C + ci) * H + iy) * Wd + ix];
          const int64_t g = ci / Cg;
          for (int64_t j = 0; j < OCg; j++)
            for (int64_t ky = 0; ky < KH; ky++)
              for (int64_t kx = 0; kx < KW; kx++) {
                int64_t Y = iy * sy - c->co.ph + ky * dy, X2 = ix * sx - c->co.pw + kx * dx;
                if (Y < 0 || Y >= OH || X2 < 0 || X2 >= OW) continue;
                y[((n * OC + g * OCg + j) * OH + Y) * OW + X2] +=
                    v * W[((ci * OCg + j) * KH + ky) * KW + kx];
              }
        }
}

static void ref_pool(const conv_case *c, ks_tensor *const *x, double *y, int is_max) {
  const float *X = ks_tensor_f32(x[0]);
  const int64_t N = c->x[0], C = c->x[1], H = c->x[2], Wd = c->x[3], OH = c->out[2], OW = c->out[3];
  const int64_t kh = c->po.kh, kw = c->po.kw;
  const int64_t sy = c->po.sy ? c->po.sy : kh, sx = c->po.sx ? c->po.sx : kw;
  for (int64_t p = 0; p < N * C; p++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++) {
        double best = -INFINITY, sum = 0.0;
        for (int64_t ky = 0; ky < kh; ky++)
          for (int64_t kx = 0; kx < kw; kx++) {
            int64_t iy = oy * sy - c->po.ph + ky, ix = ox * sx - c->po.pw + kx;
            if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue; /* -inf / 0 padding */
            double v = X[(p * H + iy) * Wd + ix];
            if (v > best) best = v;
            sum += v;
          }
        y[(p * OH + oy) * OW + ox] = is_max ? best : sum / (double)(kh * kw);
      }
}

static void ref_concat(const conv_case *c, ks_tensor *const *x, double *y) {
  const int ax = c->axis < 0 ? c->axis + 3 : c->axis;
  int64_t pos = 0;
  const int64_t *o = c->out;
  for (int i = 0; i < c->n_cat; i++) {
    const int64_t *s = c->cat[i];
    const float *X = ks_tensor_f32(x[i]);
    for (int64_t a = 0; a < s[0]; a++)
      for (int64_t b = 0; b < s[1]; b++)
        for (int64_t d = 0; d < s[2]; d++) {
          int64_t idx[3] = {a, b, d};
          idx[ax] += pos;
          y[(idx[0] * o[1] + idx[1]) * o[2] + idx[2]] = X[(a * s[1] + b) * s[2] + d];
        }
    pos += s[ax];
  }
}

static void reference(const conv_case *c, ks_tensor *const *x, double *y) {
  switch (c->kind) {
    case K_CONV: ref_conv(c, x, y); break;
    case K_DECONV: ref_deconv(c, x, y); break;
    case K_MAXP: ref_pool(c, x, y, 1); break;
    case K_AVGP: ref_pool(c, x, y, 0); break;
    case K_FLAT:
      for (int64_t i = 0; i < x[0]->size; i++) y[i] = ks_tensor_f32(x[0])[i];
      break;
    case K_CONCAT: ref_concat(c, x, y); break;
  }
}

/* Inputs. Max pooling gets a random permutation of well-separated values
 * (0.05 apart), so a finite-difference step never changes a window's argmax. */
static void make_inputs(const conv_case *c, ks_rng *rng, ks_tensor **x) {
  if (c->kind == K_CONCAT) {
    for (int i = 0; i < c->n_cat; i++) x[i] = tu_uniform(rng, 3, c->cat[i], -1, 1);
    return;
  }
  x[0] = tu_uniform(rng, 4, c->x, -1, 1);
  if (c->kind == K_MAXP) {
    float *d = ks_tensor_f32(x[0]);
    const int64_t n = x[0]->size;
    for (int64_t i = 0; i < n; i++) d[i] = (float)(0.05 * (double)(i - n / 2));
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)ks_rng_below(rng, (uint64_t)(i + 1));
      float t = d[i]; d[i] = d[j]; d[j] = t;
    }
  }
  if (c->kind == K_CONV || c->kind == K_DECONV) {
    x[1] = tu_uniform(rng, 4, c->w, -1, 1);
    if (c->bias) {
      int64_t oc = c->kind == K_CONV ? c->w[0] : c->w[1] * i1(c->co.groups);
      x[2] = tu_uniform(rng, 1, &oc, -1, 1);
    }
  }
}

static void test_conv__forward(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 2024);
  ks_ctx *ctx = ks_ctx_new();
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const conv_case *c = &cases[ci];
    ks_tensor *x[6] = {0};
    make_inputs(c, &rng, x);
    const int n = n_inputs(c);
    ks_var *v[6];
    for (int i = 0; i < n; i++) v[i] = ks_var_new(ctx, x[i], 1);
    ks_var *y = apply(ctx, v, n, (void *)c);
    if (!y) fail_msg("%s: %s", c->name, ks_error_last());
    if (y->data->ndim != c->out_ndim) fail_msg("%s: ndim %d, want %d", c->name, y->data->ndim, c->out_ndim);
    for (int d = 0; d < c->out_ndim; d++)
      if (y->data->shape[d] != c->out[d])
        fail_msg("%s: output dim %d is %lld, want %lld", c->name, d, (long long)y->data->shape[d],
                 (long long)c->out[d]);
    double *want = calloc((size_t)y->data->size, sizeof *want);
    reference(c, x, want);
    char what[128];
    snprintf(what, sizeof what, "forward of %s", c->name);
    tu_assert_close(ks_tensor_f32(y->data), want, y->data->size, 1e-5, 1e-5, what);
    free(want);
    for (int i = 0; i < n; i++) ks_tensor_free(x[i]);
    ks_ctx_reset(ctx);
  }
  ks_ctx_free(ctx);
}

static void test_conv__gradient(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 77);
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const conv_case *c = &cases[ci];
    ks_tensor *x[6] = {0};
    make_inputs(c, &rng, x);
    const int n = n_inputs(c);
    ks_check_opts o = KS_CHECK_DEFAULTS;
    o.seed = 3;
    int rc = ks_check_backward(apply, (void *)c, n, (const ks_tensor *const *)x, NULL, &o);
    if (rc != KS_OK) fail_msg("%s: %s", c->name, ks_error_last());
    for (int i = 0; i < n; i++) ks_tensor_free(x[i]);
  }
}

/* Max pooling sends the gradient to the FIRST maximum of a window (ties). */
static void test_conv__max_pool_ties_first(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  const float xv[8] = {1, 1, 0, 0, /* row 0 */ 1, 1, 2, 2};
  ks_var *x = ks_var_from_data(ctx, KS_F32, 4, (int64_t[]){1, 1, 2, 4}, xv, 1);
  ks_var *y = ks_max_pooling_2d(ctx, x, 2, 2, 0, 0);
  TU_NONNULL(y);
  assert_int_equal(y->data->size, 2);
  y->grad = ks_ctx_tensor(ctx, KS_F32, 4, y->data->shape);
  ks_tensor_f32(y->grad)[0] = 10;
  ks_tensor_f32(y->grad)[1] = 20;
  TU_OK(ks_backward(ctx, y));
  const float want[8] = {10, 0, 0, 0, 0, 0, 20, 0};
  assert_memory_equal(ks_tensor_f32(x->grad), want, sizeof want);
  ks_ctx_free(ctx);
}

/* A convolution large enough to run in several image chunks (col buffer
 * limit): forward and all three gradients against double references. */
static void multi_chunk(int64_t N, int64_t C, int64_t H, int64_t Wd, int64_t OC, int64_t KH,
                        int64_t KW) {
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  const int64_t OH = H - KH + 1, OW = Wd - KW + 1;
  ks_tensor *xt = tu_uniform(&rng, 4, (int64_t[]){N, C, H, Wd}, -1, 1);
  ks_tensor *wt = tu_uniform(&rng, 4, (int64_t[]){OC, C, KH, KW}, -0.1, 0.1);
  ks_tensor *bt = tu_uniform(&rng, 1, (int64_t[]){OC}, -1, 1);
  ks_tensor *gyt = tu_uniform(&rng, 4, (int64_t[]){N, OC, OH, OW}, -1, 1);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, xt, 1), *W = ks_var_new(ctx, wt, 1), *b = ks_var_new(ctx, bt, 1);
  ks_var *y = ks_convolution_2d(ctx, x, W, b, 1, 0, 1, 1);
  TU_NONNULL(y);
  y->grad = gyt;
  TU_OK(ks_backward(ctx, y));
  const float *X = ks_tensor_f32(xt), *Wt = ks_tensor_f32(wt), *GY = ks_tensor_f32(gyt);
  /* forward: a sample of outputs */
  for (int64_t i = 0; i < y->data->size; i += 97) {
    int64_t ox = i % OW, oy = (i / OW) % OH, o = (i / (OW * OH)) % OC, n = i / (OW * OH * OC);
    double s = ks_tensor_f32(bt)[o];
    for (int64_t c = 0; c < C; c++)
      for (int64_t ky = 0; ky < KH; ky++)
        for (int64_t kx = 0; kx < KW; kx++)
          s += (double)Wt[((o * C + c) * KH + ky) * KW + kx] * X[((n * C + c) * H + oy + ky) * Wd + ox + kx];
    float got = ks_tensor_f32(y->data)[i];
    tu_assert_close(&got, &s, 1, 1e-4, 1e-4, "multi-chunk forward");
  }
  /* gW and gb: every element */
  double *gw = calloc((size_t)wt->size, sizeof *gw);
  for (int64_t o = 0; o < OC; o++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t ky = 0; ky < KH; ky++)
        for (int64_t kx = 0; kx < KW; kx++) {
          double s = 0;
          for (int64_t n = 0; n < N; n++)
            for (int64_t oy = 0; oy < OH; oy++)
              for (int64_t ox = 0; ox < OW; ox++)
                s += (double)GY[((n * OC + o) * OH + oy) * OW + ox] * X[((n * C + c) * H + oy + ky) * Wd + ox + kx];
          gw[((o * C + c) * KH + ky) * KW + kx] = s;
        }
  tu_assert_close(ks_tensor_f32(W->grad), gw, wt->size, 1e-3, 1e-4, "multi-chunk gW");
  double gb[16] = {0};
  for (int64_t i = 0; i < gyt->size; i++) gb[(i / (OH * OW)) % OC] += GY[i];
  tu_assert_close(ks_tensor_f32(b->grad), gb, OC, 1e-3, 1e-5, "multi-chunk gb");
  /* gx: a sample */
  for (int64_t i = 0; i < xt->size; i += 131) {
    int64_t ix = i % Wd, iy = (i / Wd) % H, c = (i / (Wd * H)) % C, n = i / (Wd * H * C);
    double s = 0;
    for (int64_t o = 0; o < OC; o++)
      for (int64_t ky = 0; ky < KH; ky++)
        for (int64_t kx = 0; kx < KW; kx++) {
          int64_t oy = iy - ky, ox = ix - kx;
          if (oy < 0 || oy >= OH || ox < 0 || ox >= OW) continue;
          s += (double)Wt[((o * C + c) * KH + ky) * KW + kx] * GY[((n * OC + o) * OH + oy) * OW + ox];
        }
    float got = ks_tensor_f32(x->grad)[i];
    tu_assert_close(&got, &s, 1, 1e-5, 1e-4, "multi-chunk gx");
  }
  free(gw);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_tensor_free(wt);
  ks_tensor_free(bt);
  ks_tensor_free(gyt);
}

static void test_conv__multi_chunk(void **state) {
  multi_chunk(3, 64, 62, 62, 2, 5, 5);   /* 3 chunks; gW as gyt col^T   */
  multi_chunk(2, 4, 800, 800, 8, 1, 1);  /* 2 chunks; gW as its transpose */
}

/* Convolution keeps its im2col buffer for backward; a second backward
 * through the same graph must find it intact: gW doubles exactly. */
static void test_conv__second_backward(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 12);
  ks_tensor *xt = tu_uniform(&rng, 4, (int64_t[]){2, 3, 6, 6}, -1, 1);
  ks_tensor *wt = tu_uniform(&rng, 4, (int64_t[]){4, 3, 3, 3}, -1, 1);
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = ks_var_new(ctx, xt, 1), *W = ks_var_new(ctx, wt, 1);
  ks_var *y = ks_convolution_2d(ctx, x, W, NULL, 1, 1, 1, 1);
  ks_var *loss = ks_sum(ctx, ks_mul(ctx, y, y), KS_AXIS_ALL);
  TU_OK(ks_backward(ctx, loss));
  float *gw1 = malloc(ks_tensor_nbytes(wt)), *gx1 = malloc(ks_tensor_nbytes(xt));
  memcpy(gw1, W->grad->data, ks_tensor_nbytes(wt));
  memcpy(gx1, x->grad->data, ks_tensor_nbytes(xt));
  TU_OK(ks_backward(ctx, loss));
  for (int64_t i = 0; i < wt->size; i++) assert_true(ks_tensor_f32(W->grad)[i] == 2 * gw1[i]);
  for (int64_t i = 0; i < xt->size; i++) assert_true(ks_tensor_f32(x->grad)[i] == 2 * gx1[i]);
  free(gw1);
  free(gx1);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_tensor_free(wt);
}

static void test_conv__outsize_rules(void **state) {
  /* Chainer's get_conv_outsize / get_deconv_outsize */
  assert_int_equal(ks_conv_outsize(5, 2, 2, 0, 0, 1), 2);
  assert_int_equal(ks_conv_outsize(5, 2, 2, 0, 1, 1), 3);
  assert_int_equal(ks_conv_outsize(28, 5, 1, 0, 0, 1), 24);
  assert_int_equal(ks_conv_outsize(24, 2, 2, 0, 1, 1), 12);
  assert_int_equal(ks_conv_outsize(7, 3, 1, 0, 0, 2), 3);
  assert_int_equal(ks_deconv_outsize(3, 3, 2, 1, 0, 1), 5);
  assert_int_equal(ks_deconv_outsize(3, 3, 2, 1, 1, 1), 4);
  assert_int_equal(ks_deconv_outsize(4, 4, 2, 1, 0, 1), 8);
}

/* ---- errors -------------------------------------------------------------------------------- */

static ks_var *mk(ks_ctx *ctx, int ndim, const int64_t *s) {
  ks_tensor *t = ks_ctx_tensor_zeros(ctx, KS_F32, ndim, s);
  return ks_var_new(ctx, t, 1);
}

static void test_conv__errors(void **state) {
  ks_ctx *ctx = ks_ctx_new();
  ks_var *x = mk(ctx, 4, (int64_t[]){2, 3, 5, 5});
  ks_var *w_bad = mk(ctx, 4, (int64_t[]){4, 2, 3, 3});
  assert_null(ks_convolution_2d(ctx, x, w_bad, NULL, 1, 0, 1, 1));
  tu_assert_error(KS_ESHAPE, "ks_convolution_2d", "(2, 3, 5, 5)", "(4, 2, 3, 3)", "W.shape[1]");
  ks_var *w = mk(ctx, 4, (int64_t[]){4, 3, 3, 3});
  assert_null(ks_convolution_2d(ctx, x, w, mk(ctx, 1, (int64_t[]){5}), 1, 0, 1, 1));
  tu_assert_error(KS_ESHAPE, "ks_convolution_2d", "(4, 3, 3, 3)", "(5,)");
  assert_null(ks_convolution_2d(ctx, x, w, NULL, 1, 0, 1, 2));
  tu_assert_error(KS_ESHAPE, "ks_convolution_2d", "groups 2");
  assert_null(ks_convolution_2d(ctx, mk(ctx, 2, (int64_t[]){2, 3}), w, NULL, 1, 0, 1, 1));
  tu_assert_error(KS_ESHAPE, "ks_convolution_2d", "(2, 3)", "4-d");
  assert_null(ks_convolution_2d(ctx, x, mk(ctx, 4, (int64_t[]){4, 3, 7, 7}), NULL, 1, 0, 1, 1));
  tu_assert_error(KS_ESHAPE, "ks_convolution_2d", "(4, 3, 7, 7)", "empty output");
  assert_null(ks_convolution_2d(ctx, x, w, NULL, 0, 0, 1, 1));
  tu_assert_error(KS_EINVAL, "ks_convolution_2d", "stride 0");
  /* deconvolution */
  assert_null(ks_deconvolution_2d(ctx, x, w, NULL, 1, 0));
  tu_assert_error(KS_ESHAPE, "ks_deconvolution_2d", "(2, 3, 5, 5)", "(4, 3, 3, 3)", "W.shape[0]");
  ks_conv2d_opts o = {.sy = 2, .sx = 2, .outh = 20, .outw = 20};
  assert_null(ks_deconvolution_2d_ex(ctx, x, mk(ctx, 4, (int64_t[]){3, 2, 3, 3}), NULL, &o));
  tu_assert_error(KS_ESHAPE, "ks_deconvolution_2d", "outsize (20, 20)");
  /* pooling */
  assert_null(ks_max_pooling_2d(ctx, mk(ctx, 3, (int64_t[]){2, 3, 5}), 2, 2, 0, 1));
  tu_assert_error(KS_ESHAPE, "ks_max_pooling_2d", "(2, 3, 5)", "4-d");
  assert_null(ks_max_pooling_2d(ctx, x, 0, 2, 0, 1));
  tu_assert_error(KS_EINVAL, "ks_max_pooling_2d", "ksize");
  assert_null(ks_average_pooling_2d(ctx, x, 7, 1, 0));
  tu_assert_error(KS_ESHAPE, "ks_average_pooling_2d", "(2, 3, 5, 5)", "empty output");
  ks_pool2d_opts po = {2, 2, 2, 2, 0, 0, 1};
  assert_null(ks_average_pooling_2d_ex(ctx, x, &po));
  tu_assert_error(KS_EINVAL, "ks_average_pooling_2d", "cover_all");
  /* concat */
  ks_var *cs[2] = {mk(ctx, 3, (int64_t[]){2, 3, 4}), mk(ctx, 3, (int64_t[]){2, 3, 5})};
  assert_null(ks_concat(ctx, 2, cs, 1));
  tu_assert_error(KS_ESHAPE, "ks_concat", "(2, 3, 4)", "(2, 3, 5)", "axis 1");
  assert_null(ks_concat(ctx, 2, cs, 3));
  tu_assert_error(KS_ESHAPE, "ks_concat", "axis 3");
  assert_null(ks_concat(ctx, 0, cs, 1));
  tu_assert_error(KS_EINVAL, "ks_concat");
  /* NULL inputs propagate without touching the message */
  ks_error_set(KS_EIO, "marker");
  assert_null(ks_convolution_2d(ctx, NULL, w, NULL, 1, 0, 1, 1));
  assert_null(ks_deconvolution_2d(ctx, x, NULL, NULL, 1, 0));
  assert_null(ks_max_pooling_2d(ctx, NULL, 2, 2, 0, 1));
  assert_null(ks_average_pooling_2d(ctx, NULL, 2, 2, 0));
  assert_null(ks_flatten(ctx, NULL));
  ks_var *cn[2] = {x, NULL};
  assert_null(ks_concat(ctx, 2, cn, 1));
  tu_assert_error(KS_EIO, "marker");
  ks_ctx_free(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_conv__forward),
    cmocka_unit_test(test_conv__gradient),
    cmocka_unit_test(test_conv__max_pool_ties_first),
    cmocka_unit_test(test_conv__multi_chunk),
    cmocka_unit_test(test_conv__second_backward),
    cmocka_unit_test(test_conv__outsize_rules),
    cmocka_unit_test(test_conv__errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
