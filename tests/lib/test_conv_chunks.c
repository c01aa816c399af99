/*
 * tests/lib/test_conv_chunks.c — convolution and deconvolution on shapes that
 * take the paths of src/functions/convolution.c the small cases of
 * test_conv.c never reach: batches split into several chunks of images (with
 * a shorter last chunk), one-image chunks whose product is written straight
 * into y and whose gy is read in place, and the im2col / col2im fast path of
 * src/backend/cpu_conv.c for geometries without padding and with unit
 * horizontal stride (vertical stride and dilation allowed). Forward and all
 * gradients are compared with plain double loops, and whole passes must give
 * the same bits on 1, 2 and 3 threads.
 */
#include "testutil.h"

#include <stdlib.h>

typedef struct shape_case {
  const char *name;
  int deconv;
  int64_t x[4], w[4];
  int bias, x_grad;
  ks_conv2d_opts o;
} shape_case;

static const shape_case cases[] = {
  /* P = 256: one image per chunk, product written into y */
  {"conv one-image chunks (mnist conv1-like)", 0, {3, 1, 20, 20}, {4, 1, 5, 5}, 1, 0, {0}},
  {"conv one-image chunks, x grad", 0, {2, 2, 20, 20}, {3, 2, 5, 5}, 1, 1, {0}},
  /* P = 64: chunks of 4 images, 7 = 4 + 3 (mnist conv2-like) */
  {"conv chunks of 4 + 3", 0, {7, 3, 12, 12}, {5, 3, 5, 5}, 1, 1, {0}},
  /* interior with vertical stride and dilation, groups: P = 8 x 13 = 104 */
  {"conv interior sy 2, dilate 2, groups 2", 0, {5, 4, 19, 17}, {6, 2, 3, 3}, 1, 1,
   {.sy = 2, .sx = 1, .dy = 2, .dx = 2, .groups = 2}},
  /* groups with one-image chunks: each group's product lands in its rows of y */
  {"conv groups 2, one-image chunks", 0, {2, 4, 18, 18}, {6, 2, 3, 3}, 1, 1, {.groups = 2}},
  /* padded (generic im2col) with one-image chunks: P = 18 x 18 */
  {"conv padded one-image chunks", 0, {2, 2, 16, 16}, {3, 2, 3, 3}, 0, 1, {.ph = 2, .pw = 2}},
  /* deconvolution: P = 8 x 8 of x, chunks of 4 + 1; interior transposed conv */
  {"deconv chunks of 4 + 1", 1, {5, 3, 8, 8}, {3, 2, 3, 3}, 1, 1, {0}},
  {"deconv one-image chunks, stride 2", 1, {2, 2, 16, 16}, {2, 3, 3, 3}, 1, 1, {.sy = 2, .sx = 2}},
};

static int64_t i1(int v) { return v ? v : 1; }

/* One loop nest serves both: for every (image, output-or-input pixel, tap),
 * conv:   y[n, o, oy, ox] += W[o, cl, ky, kx] x[n, g*Cg + cl, iy, ix]
 * deconv: y[n, g*OCg + ol, Y, X] += W[c, ol, ky, kx] x[n, c, iy, ix]
 * with (iy, ix) = (oy*sy - ph + ky*dy, ...) for conv and (Y, X) the same
 * function of (iy, ix) for deconv. 'mode' 0: forward into y; 1: gx from gy;
 * 2: gW from x and gy. Output arrays (double) are zeroed by the caller. */
static void reference(const shape_case *c, const int64_t *ys, const float *x, const float *W,
                      const float *gy, double *out, int mode) {
  const int64_t N = c->x[0], G = i1(c->o.groups);
  const int64_t sy = i1(c->o.sy), sx = i1(c->o.sx), dy = i1(c->o.dy), dx = i1(c->o.dx);
  const int64_t kh = c->w[2], kw = c->w[3];
  /* "small" side: the conv input / deconv input x; "big": conv y / deconv y */
  const int64_t XC = c->x[1], XH = c->x[2], XW = c->x[3], YC = ys[1], YH = ys[2], YW = ys[3];
  /* conv: windows live on y's grid (oy, ox) reading x; deconv: on x's grid writing y */
  const int64_t GC = c->deconv ? XC : YC, GH = c->deconv ? XH : YH, GW = c->deconv ? XW : YW;
  const int64_t TC = c->deconv ? YC : XC, TH = c->deconv ? YH : XH, TW = c->deconv ? YW : XW;
  const int64_t GCg = GC / G, TCg = TC / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t gc = 0; gc < GC; gc++)
      for (int64_t a = 0; a < GH; a++)
        for (int64_t b = 0; b < GW; b++)
          for (int64_t tl = 0; tl < TCg; tl++)
            for (int64_t ky = 0; ky < kh; ky++)
              for (int64_t kx = 0; kx < kw; kx++) {
                const int64_t ta = a * sy - c->o.ph + ky * dy, tb = b * sx - c->o.pw + kx * dx;
                if (ta < 0 || ta >= TH || tb < 0 || tb >= TW) continue;
                const int64_t tc = (gc / GCg) * TCg + tl;
                const int64_t wi = ((gc * TCg + tl) * kh + ky) * kw + kx;
                /* conv: x = t side, y = grid side; deconv: x = grid, y = t */
                const int64_t gi = ((n * GC + gc) * GH + a) * GW + b;
                const int64_t ti = ((n * TC + tc) * TH + ta) * TW + tb;
                const int64_t xi = c->deconv ? gi : ti, yi = c->deconv ? ti : gi;
                if (mode == 0) out[yi] += (double)W[wi] * x[xi];
                else if (mode == 1) out[xi] += (double)W[wi] * gy[yi];
                else out[wi] += (double)x[xi] * gy[yi];
              }
}

typedef struct run_out {
  ks_tensor *y, *gx, *gW, *gb;
} run_out;

static run_out run_case(const shape_case *c, const ks_tensor *x, const ks_tensor *W,
                        const ks_tensor *b, const ks_tensor *gy) {
  ks_ctx *ctx = ks_ctx_new();
  assert_non_null(ctx);
  ks_var *xv = ks_var_new(ctx, (ks_tensor *)x, c->x_grad);
  ks_tensor *gWt = ks_tensor_new(KS_F32, 4, W->shape), *gbt = NULL;
  ks_var Wv = {0}, bv = {0};
  ks_var_param_init(&Wv, (ks_tensor *)W, gWt, "W");
  if (b) {
    gbt = ks_tensor_new(KS_F32, 1, b->shape);
    ks_var_param_init(&bv, (ks_tensor *)b, gbt, "b");
  }
  ks_var *y = c->deconv ? ks_deconvolution_2d_ex(ctx, xv, &Wv, b ? &bv : NULL, &c->o)
                        : ks_convolution_2d_ex(ctx, xv, &Wv, b ? &bv : NULL, &c->o);
  TU_NONNULL(y);
  assert_int_equal(y->data->size, gy->size);
  y->grad = (ks_tensor *)gy;
  TU_OK(ks_backward(ctx, y));
  run_out r = {ks_tensor_new(KS_F32, 4, y->data->shape), NULL, gWt, gbt};
  memcpy(ks_tensor_f32(r.y), ks_tensor_f32(y->data), sizeof(float) * (size_t)y->data->size);
  if (c->x_grad) {
    assert_non_null(xv->grad);
    r.gx = ks_tensor_new(KS_F32, 4, x->shape);
    memcpy(ks_tensor_f32(r.gx), ks_tensor_f32(xv->grad), sizeof(float) * (size_t)x->size);
  } else {
    assert_null(xv->grad);
  }
  ks_ctx_free(ctx);
  return r;
}

static void free_out(run_out *r) {
  ks_tensor_free(r->y);
  ks_tensor_free(r->gx);
  ks_tensor_free(r->gW);
  ks_tensor_free(r->gb);
}

static int same_bits(const ks_tensor *a, const ks_tensor *b) {
  if (!a || !b) return a == b;
  return a->size == b->size && !memcmp(a->data, b->data, sizeof(float) * (size_t)a->size);
}

static void test_conv_chunks__against_loops_and_threads(void **state) {
  (void)state;
  const int saved = ks_get_num_threads();
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const shape_case *c = &cases[ci];
    ks_rng rng;
    ks_rng_seed(&rng, 100 + ci);
    const int64_t G = i1(c->o.groups);
    int64_t ys[4] = {c->x[0], 0, 0, 0};
    if (c->deconv) {
      ys[1] = c->w[1] * G;
      ys[2] = ks_deconv_outsize(c->x[2], c->w[2], i1(c->o.sy), c->o.ph, 0, i1(c->o.dy));
      ys[3] = ks_deconv_outsize(c->x[3], c->w[3], i1(c->o.sx), c->o.pw, 0, i1(c->o.dx));
    } else {
      ys[1] = c->w[0];
      ys[2] = ks_conv_outsize(c->x[2], c->w[2], i1(c->o.sy), c->o.ph, 0, i1(c->o.dy));
      ys[3] = ks_conv_outsize(c->x[3], c->w[3], i1(c->o.sx), c->o.pw, 0, i1(c->o.dx));
    }
    ks_tensor *x = tu_uniform(&rng, 4, c->x, -1, 1), *W = tu_uniform(&rng, 4, c->w, -1, 1);
    ks_tensor *b = c->bias ? tu_uniform(&rng, 1, (int64_t[]){ys[1]}, -1, 1) : NULL;
    ks_tensor *gy = tu_uniform(&rng, 4, ys, -1, 1);
    run_out r[3];
    for (int t = 0; t < 3; t++) {
      ks_set_num_threads(t + 1);
      r[t] = run_case(c, x, W, b, gy);
    }
    ks_set_num_threads(saved);
    /* against plain loops */
    const int64_t yn = gy->size;
    double *want = calloc((size_t)(yn > x->size ? yn : x->size), sizeof(double));
    const float *bd = b ? ks_tensor_f32(b) : NULL;
    reference(c, ys, ks_tensor_f32(x), ks_tensor_f32(W), NULL, want, 0);
    if (bd)
      for (int64_t i = 0; i < yn; i++) want[i] += bd[(i / (ys[2] * ys[3])) % ys[1]];
    char what[160];
    snprintf(what, sizeof what, "%s: y", c->name);
    tu_assert_close(ks_tensor_f32(r[0].y), want, yn, 1e-4, 1e-4, what);
    if (c->x_grad) {
      memset(want, 0, sizeof(double) * (size_t)x->size);
      reference(c, ys, ks_tensor_f32(x), ks_tensor_f32(W), ks_tensor_f32(gy), want, 1);
      snprintf(what, sizeof what, "%s: gx", c->name);
      tu_assert_close(ks_tensor_f32(r[0].gx), want, x->size, 1e-4, 1e-4, what);
    }
    double *gw = calloc((size_t)W->size, sizeof(double));
    reference(c, ys, ks_tensor_f32(x), ks_tensor_f32(W), ks_tensor_f32(gy), gw, 2);
    snprintf(what, sizeof what, "%s: gW", c->name);
    tu_assert_close(ks_tensor_f32(r[0].gW), gw, W->size, 1e-3, 1e-4, what);
    if (b) {
      double gb[64] = {0};
      assert_true(ys[1] <= 64);
      for (int64_t i = 0; i < yn; i++) gb[(i / (ys[2] * ys[3])) % ys[1]] += ks_tensor_f32(gy)[i];
      snprintf(what, sizeof what, "%s: gb", c->name);
      tu_assert_close(ks_tensor_f32(r[0].gb), gb, ys[1], 1e-4, 1e-4, what);
    }
    /* and the same bits on every thread count */
    for (int t = 1; t < 3; t++)
      if (!same_bits(r[0].y, r[t].y) || !same_bits(r[0].gx, r[t].gx) ||
          !same_bits(r[0].gW, r[t].gW) || !same_bits(r[0].gb, r[t].gb))
        fail_msg("%s: %d threads differ from 1 thread", c->name, t + 1);
    for (int t = 0; t < 3; t++) free_out(&r[t]);
    free(want);
    free(gw);
    ks_tensor_free(x);
    ks_tensor_free(W);
    ks_tensor_free(b);
    ks_tensor_free(gy);
  }
}

/* The im2col / col2im fast path (no padding, unit horizontal stride) gives
 * exactly what the definition says, on row widths that take each of its
 * block sizes (8, 16, 24, 32 and others), on 1..3 threads. */
static void test_conv_chunks__interior_kernels(void **state) {
  (void)state;
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  const int saved = ks_get_num_threads();
  const ks_conv_geom geoms[] = {
    {5, 7, 12, 12, 5, 5, 1, 1, 0, 0, 1, 1, 8, 8},    /* ow 8 */
    {3, 4, 20, 20, 5, 5, 1, 1, 0, 0, 1, 1, 16, 16},  /* ow 16 */
    {4, 3, 28, 28, 5, 5, 1, 1, 0, 0, 1, 1, 24, 24},  /* ow 24 */
    {2, 2, 34, 34, 3, 3, 1, 1, 0, 0, 1, 1, 32, 32},  /* ow 32 */
    {3, 5, 21, 23, 3, 2, 2, 1, 0, 0, 2, 3, 9, 20},   /* ow 20 (16 + 4), sy 2, dilation */
    {6, 9, 11, 9, 2, 2, 1, 1, 0, 0, 1, 1, 10, 8},    /* ow 8, many planes (threaded) */
  };
  for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
    const ks_conv_geom *g = &geoms[gi];
    const int64_t xn = g->n * g->c * g->h * g->w, K = g->c * g->kh * g->kw;
    const int64_t P = g->oh * g->ow, NP = g->n * P, cn = K * NP;
    ks_rng rng;
    ks_rng_seed(&rng, 7 + gi);
    ks_tensor *xt = tu_uniform(&rng, 1, (int64_t[]){xn}, -1, 1);
    ks_tensor *colt = tu_uniform(&rng, 1, (int64_t[]){cn}, -1, 1);
    const float *x = ks_tensor_f32(xt), *col = ks_tensor_f32(colt);
    float *got[3][2];
    for (int t = 0; t < 3; t++) {
      ks_set_num_threads(t + 1);
      got[t][0] = malloc(sizeof(float) * (size_t)cn);
      got[t][1] = malloc(sizeof(float) * (size_t)xn);
      be->im2col(g, x, got[t][0]);
      be->col2im(g, col, got[t][1]);
    }
    ks_set_num_threads(saved);
    /* im2col is a copy: exact; col2im sums its taps in (ky, kx) order in float */
    float *want_x = calloc((size_t)xn, sizeof(float));
    for (int64_t ci = 0; ci < g->c; ci++)
      for (int64_t ky = 0; ky < g->kh; ky++)
        for (int64_t kx = 0; kx < g->kw; kx++)
          for (int64_t ni = 0; ni < g->n; ni++)
            for (int64_t oy = 0; oy < g->oh; oy++)
              for (int64_t ox = 0; ox < g->ow; ox++) {
                const int64_t r = (ci * g->kh + ky) * g->kw + kx, j = ni * P + oy * g->ow + ox;
                const int64_t iy = oy * g->sy + ky * g->dy, ix = ox + kx * g->dx;
                const int64_t xi = ((ni * g->c + ci) * g->h + iy) * g->w + ix;
                if (got[0][0][r * NP + j] != x[xi])
                  fail_msg("geometry %zu: im2col row %lld column %lld", gi, (long long)r, (long long)j);
              }
    for (int64_t ni = 0; ni < g->n; ni++)
      for (int64_t ci = 0; ci < g->c; ci++)
        for (int64_t ky = 0; ky < g->kh; ky++)
          for (int64_t kx = 0; kx < g->kw; kx++)
            for (int64_t oy = 0; oy < g->oh; oy++)
              for (int64_t ox = 0; ox < g->ow; ox++) {
                const int64_t r = (ci * g->kh + ky) * g->kw + kx, j = ni * P + oy * g->ow + ox;
                const int64_t iy = oy * g->sy + ky * g->dy, ix = ox + kx * g->dx;
                want_x[((ni * g->c + ci) * g->h + iy) * g->w + ix] += col[r * NP + j];
              }
    if (memcmp(got[0][1], want_x, sizeof(float) * (size_t)xn))
      fail_msg("geometry %zu: col2im differs from the loop in tap order", gi);
    for (int t = 1; t < 3; t++)
      if (memcmp(got[0][0], got[t][0], sizeof(float) * (size_t)cn) ||
          memcmp(got[0][1], got[t][1], sizeof(float) * (size_t)xn))
        fail_msg("geometry %zu: %d threads differ from 1 thread", gi, t + 1);
    for (int t = 0; t < 3; t++) {
      free(got[t][0]);
      free(got[t][1]);
    }
    free(want_x);
    ks_tensor_free(xt);
    ks_tensor_free(colt);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_conv_chunks__against_loops_and_threads),
    cmocka_unit_test(test_conv_chunks__interior_kernels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
