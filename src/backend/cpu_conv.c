/*
 * src/backend/cpu_conv.c — CPU kernels of the convolutional functions:
 * im2col / col2im (the lowering of convolution and deconvolution to the
 * backend GEMM), the (C, N, HW) <-> (N, C, HW) transposes around the batched
 * GEMMs, per-channel sums and bias, 2-d strided copies (concat), max and
 * average pooling, and batch normalization.
 *
 * Threads: every kernel splits its work into tasks over *independent
 * outputs* (image planes, channels, rows) run by ks__cpu_parallel_for (the
 * one place where kernels meet the thread pool) when the work is large
 * (ks__cpu_threads_for). Each output is computed by one thread in a fixed
 * order, and no sum is ever split between threads, so the results are the
 * same bits on any number of threads (tests/lib/test_kernels_threads.c).
 * Per-channel sums (bias gradient, batch-norm statistics) are partitioned
 * over channels and accumulate in double over 8 fixed lanes per plane.
 */
#include "cpu_kernels.h"
#include "kusari/backend.h"

#include <math.h>
#include <string.h>

/* first ox with 0 <= ox*s + off, and first ox with ox*s + off >= lim
 * (clamped to [0, n]): the range of output columns whose tap is inside */
static inline void tap_range(int64_t off, int64_t s, int64_t lim, int64_t n, int64_t *lo,
                             int64_t *hi) {
  int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t b = lim - off <= 0 ? 0 : (lim - off + s - 1) / s;
  *lo = a < n ? a : n;
  *hi = b < n ? b : n;
  if (*hi < *lo) *hi = *lo;
}

/* ---- im2col / col2im ------------------------------------------------------------ */

/* column ranges [lo, hi) of the output columns whose tap kx is inside the
 * image, for kx < KS_TAP_TABLE (computed once per call; per-tap divisions
 * would dominate on small images) */
#define KS_TAP_TABLE 64

static void tap_table(const ks_conv_geom *g, int64_t *lo, int64_t *hi) {
  for (int64_t kx = 0; kx < g->kw && kx < KS_TAP_TABLE; kx++)
    tap_range(kx * g->dx - g->pw, g->sx, g->w, g->ow, &lo[kx], &hi[kx]);
}

static inline void tap_lookup(const ks_conv_geom *g, const int64_t *lo_t, const int64_t *hi_t,
                              int64_t kx, int64_t *lo, int64_t *hi) {
  if (kx < KS_TAP_TABLE) { *lo = lo_t[kx]; *hi = hi_t[kx]; }
  else tap_range(kx * g->dx - g->pw, g->sx, g->w, g->ow, lo, hi);
}

/* Short row copies, zero fills and accumulations. im2col/col2im move rows of
 * ow floats (8 on MNIST's second convolution, 24 on its first); gcc's
 * vectorized loop for an unknown trip count spends more on its prologue,
 * epilogue and alias checks than on such a row, so these move fixed blocks
 * of 16 and 8 floats (one or two vector moves each) and finish with single
 * floats. Every float is handled once, by itself: the sums in add_row are
 * the same additions in the same order as a plain loop. */
static inline void copy_row(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) memcpy(d + i, s + i, 16 * sizeof *d);
  if (i + 8 <= n) { memcpy(d + i, s + i, 8 * sizeof *d); i += 8; }
  for (; i < n; i++) d[i] = s[i];
}

static inline void zero_row(float *restrict d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) d[i + j] = 0.0f;
  if (i + 8 <= n) {
    for (int j = 0; j < 8; j++) d[i + j] = 0.0f;
    i += 8;
  }
  for (; i < n; i++) d[i] = 0.0f;
}

static inline void add_row(float *restrict d, const float *restrict s, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) d[i + j] += s[i + j];
  if (i + 8 <= n) {
    for (int j = 0; j < 8; j++) d[i + j] += s[i + j];
    i += 8;
  }
  for (; i < n; i++) d[i] += s[i];
}

/* Arguments of a kernel's tasks (ks__cpu_parallel_for passes one pointer):
 * each kernel uses the fields it needs. */
typedef struct cjob {
  const ks_conv_geom *g;
  const float *x, *x2, *x3, *x4, *x5;     /* inputs  */
  float *y, *y2, *y3;                     /* outputs */
  const int32_t *idx_in;
  int32_t *idx_out;
  const int64_t *lo_t, *hi_t;             /* tap table */
  int64_t a, b, c, n, inner, lds, ldd;
  float f;
  int flag;
} cjob;

/* Whether every tap of every window reads inside the image with unit
 * horizontal stride (no padding, no cover_all overhang): then a col row of
 * one plane is oh rows of ow consecutive input floats, and im2col/col2im
 * need no bounds, zero fills or tap tables (im2col_fast, col2im_fast). */
static int conv_interior(const ks_conv_geom *g) {
  return g->ph == 0 && g->pw == 0 && g->sx == 1 && (g->oh - 1) * g->sy + (g->kh - 1) * g->dy < g->h &&
         (g->ow - 1) + (g->kw - 1) * g->dx < g->w;
}

/* oh rows of n floats: d (rows of n) = s (rows of ws) or d += s. Called with
 * constant n for the common widths so that copy_row/add_row become one to
 * three vector moves per row: the generic path spent about 20 cycles on
 * each 8-float row of MNIST's second convolution (1 float/ns). */
#define KS_ROWS_COPY(n) for (int64_t oy = 0; oy < oh; oy++) copy_row(d + oy * (n), s + oy * ws, (n))
#define KS_ROWS_ADD(n) for (int64_t oy = 0; oy < oh; oy++) add_row(d + oy * ws, s + oy * (n), (n))

static inline void rows_copy(float *restrict d, const float *restrict s, int64_t oh, int64_t ow,
                             int64_t ws) {
  switch (ow) {
    case 8: KS_ROWS_COPY(8); break;
    case 16: KS_ROWS_COPY(16); break;
    case 24: KS_ROWS_COPY(24); break;
    case 32: KS_ROWS_COPY(32); break;
    default: KS_ROWS_COPY(ow); break;
  }
}

/* d (rows of ws) += s (rows of ow) */
static inline void rows_add(float *restrict d, const float *restrict s, int64_t oh, int64_t ow,
                            int64_t ws) {
  switch (ow) {
    case 8: KS_ROWS_ADD(8); break;
    case 16: KS_ROWS_ADD(16); break;
    case 24: KS_ROWS_ADD(24); break;
    case 32: KS_ROWS_ADD(32); break;
    default: KS_ROWS_ADD(ow); break;
  }
}

/* im2col_task for an interior geometry (conv_interior): same output */
static void im2col_fast_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const int64_t kh = g->kh, kw = g->kw, h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const int64_t P = oh * ow, NP = g->n * P, ci = t / g->n, ni = t % g->n;
  const float *xp = J->x + (ni * g->c + ci) * h * w;
  for (int64_t ky = 0; ky < kh; ky++)
    for (int64_t kx = 0; kx < kw; kx++) {
      const int64_t r = (ci * kh + ky) * kw + kx;
      rows_copy(J->y + r * NP + ni * P, xp + ky * g->dy * w + kx * g->dx, oh, ow, g->sy * w);
    }
}

/* col2im_task for an interior geometry: every pixel receives its taps in
 * the same (ky, kx) order as there, so the sums are the same bits */
static void col2im_fast_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const int64_t kh = g->kh, kw = g->kw, h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const int64_t P = oh * ow, NP = g->n * P, ci = t / g->n, ni = t % g->n;
  float *xp = J->y + (ni * g->c + ci) * h * w;
  memset(xp, 0, (size_t)(h * w) * sizeof *xp);
  for (int64_t ky = 0; ky < kh; ky++)
    for (int64_t kx = 0; kx < kw; kx++) {
      const int64_t r = (ci * kh + ky) * kw + kx;
      rows_add(xp + ky * g->dy * w + kx * g->dx, J->x + r * NP + ni * P, oh, ow, g->sy * w);
    }
}

/* one task per input plane, channel-major (ci, ni): the plane stays in L1
 * for its kh*kw taps, and consecutive tasks extend the same kh*kw col rows
 * (kh*kw contiguous write streams) */
static void im2col_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict x = J->x;
  float *restrict col = J->y;
  const int64_t *lo_t = J->lo_t, *hi_t = J->hi_t;
  const int64_t kh = g->kh, kw = g->kw, h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const int64_t P = oh * ow, NP = g->n * P;
  {
    const int64_t ci = t / g->n, ni = t % g->n;
    const float *restrict xp = x + (ni * g->c + ci) * h * w;
    for (int64_t ky = 0; ky < kh; ky++)
      for (int64_t kx = 0; kx < kw; kx++) {
        const int64_t r = (ci * kh + ky) * kw + kx;
        float *restrict dst = col + r * NP + ni * P;
        const int64_t offx = kx * g->dx - g->pw;
        int64_t lo, hi;
        tap_lookup(g, lo_t, hi_t, kx, &lo, &hi);
        for (int64_t oy = 0; oy < oh; oy++) {
          const int64_t iy = oy * g->sy - g->ph + ky * g->dy;
          float *restrict d = dst + oy * ow;
          if (iy < 0 || iy >= h) {
            zero_row(d, ow);
            continue;
          }
          const float *restrict xr = xp + iy * w;
          zero_row(d, lo);
          if (g->sx == 1)
            copy_row(d + lo, xr + lo + offx, hi - lo);
          else
            for (int64_t ox = lo; ox < hi; ox++) d[ox] = xr[ox * g->sx + offx];
          zero_row(d + hi, ow - hi);
        }
      }
  }
}

void ks__cpu_im2col(const ks_conv_geom *g, const float *x, float *col) {
  const int64_t K = g->c * g->kh * g->kw, NP = g->n * g->oh * g->ow, tasks = g->c * g->n;
  int64_t lo_t[KS_TAP_TABLE], hi_t[KS_TAP_TABLE];
  tap_table(g, lo_t, hi_t);
  cjob J = {.g = g, .x = x, .y = col, .lo_t = lo_t, .hi_t = hi_t};
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(K * NP, tasks),
                       conv_interior(g) ? im2col_fast_task : im2col_task, &J);
}

static void col2im_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict col = J->x;
  float *restrict x = J->y;
  const int64_t *lo_t = J->lo_t, *hi_t = J->hi_t;
  const int64_t kh = g->kh, kw = g->kw, h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const int64_t P = oh * ow, NP = g->n * P;
  {
    const int64_t ci = t / g->n, ni = t % g->n; /* channel-major, as im2col */
    float *restrict xp = x + (ni * g->c + ci) * h * w;
    memset(xp, 0, (size_t)(h * w) * sizeof *xp);
    for (int64_t ky = 0; ky < kh; ky++)
      for (int64_t kx = 0; kx < kw; kx++) {
        const int64_t r = (ci * kh + ky) * kw + kx;
        const float *restrict src = col + r * NP + ni * P;
        const int64_t offx = kx * g->dx - g->pw;
        int64_t lo, hi;
        tap_lookup(g, lo_t, hi_t, kx, &lo, &hi);
        for (int64_t oy = 0; oy < oh; oy++) {
          const int64_t iy = oy * g->sy - g->ph + ky * g->dy;
          if (iy < 0 || iy >= h) continue;
          float *restrict xr = xp + iy * w;
          const float *restrict sr = src + oy * ow;
          if (g->sx == 1)
            add_row(xr + lo + offx, sr + lo, hi - lo);
          else
            for (int64_t ox = lo; ox < hi; ox++) xr[ox * g->sx + offx] += sr[ox];
        }
      }
  }
}

void ks__cpu_col2im(const ks_conv_geom *g, const float *col, float *x) {
  const int64_t NP = g->n * g->oh * g->ow, tasks = g->n * g->c;
  int64_t lo_t[KS_TAP_TABLE], hi_t[KS_TAP_TABLE];
  tap_table(g, lo_t, hi_t);
  cjob J = {.g = g, .x = col, .y = x, .lo_t = lo_t, .hi_t = hi_t};
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(g->c * g->kh * g->kw * NP, tasks),
                       conv_interior(g) ? col2im_fast_task : col2im_task, &J);
}

/* Sums in double over 8 independent lanes (gcc vectorizes the lane loop;
 * a single accumulator would be a chain of dependent adds), combined in a
 * fixed order: the result depends only on the data, never on threads. */
static inline double combine8(const double *a) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

static inline double sum8(const float *restrict x, int64_t n) {
  double acc[8] = {0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; j++) acc[j] += x[k + j];
  double s = combine8(acc);
  for (; k < n; k++) s += x[k];
  return s;
}

/* sum of (x - mu)^2 */
static inline double sqdev8(const float *restrict x, int64_t n, double mu) {
  double acc[8] = {0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; j++) {
      const double d = x[k + j] - mu;
      acc[j] += d * d;
    }
  double s = combine8(acc);
  for (; k < n; k++) s += (x[k] - mu) * (x[k] - mu);
  return s;
}

/* sum of gy and of gy * x_hat with x_hat = (x - mu) * is in float, as forward */
static inline void bn_sums8(const float *restrict x, const float *restrict gy, int64_t n,
                            float mu, float is, double *sb, double *sg) {
  double ab[8] = {0}, ag[8] = {0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    for (int j = 0; j < 8; j++) {
      ab[j] += gy[k + j];
      ag[j] += (double)gy[k + j] * ((x[k + j] - mu) * is);
    }
  double b = combine8(ab), g = combine8(ag);
  for (; k < n; k++) {
    b += gy[k];
    g += (double)gy[k] * ((x[k] - mu) * is);
  }
  *sb += b;
  *sg += g;
}

/* ---- layout and per-channel helpers ------------------------------------------------ */

static void swap01_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const int64_t a = J->a, b = J->b, inner = J->inner;
  const float *restrict src = J->x, *restrict bias = J->x2;
  float *restrict dst = J->y;
  {
    const int64_t i = t / b, j = t % b;
    const float *restrict s = src + t * inner;
    float *restrict d = dst + (j * a + i) * inner;
    if (bias) {
      const float bv = bias[i];
      for (int64_t k = 0; k < inner; k++) d[k] = s[k] + bv;
    } else {
      memcpy(d, s, (size_t)inner * sizeof *d);
    }
  }
}

void ks__cpu_swap01(int64_t a, int64_t b, int64_t inner, const float *src, const float *bias,
                    float *dst) {
  const int64_t tasks = a * b;
  cjob J = {.a = a, .b = b, .inner = inner, .x = src, .x2 = bias, .y = dst};
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(tasks * inner, tasks), swap01_task, &J);
}

static void channel_sum_task(void *arg, int64_t ci) {
  const cjob *J = arg;
  const int64_t n = J->n, c = J->c, inner = J->inner;
  double s = 0.0;
  for (int64_t ni = 0; ni < n; ni++) s += sum8(J->x + (ni * c + ci) * inner, inner);
  J->y[ci] = (float)s;
}

void ks__cpu_channel_sum(int64_t n, int64_t c, int64_t inner, const float *x, float *out) {
  cjob J = {.n = n, .c = c, .inner = inner, .x = x, .y = out};
  ks__cpu_parallel_for(c, ks__cpu_threads_for(n * c * inner, c), channel_sum_task, &J);
}

static void channel_bias_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const float bv = J->x[t % J->c];
  float *restrict yp = J->y + t * J->inner;
  for (int64_t k = 0; k < J->inner; k++) yp[k] += bv;
}

void ks__cpu_channel_bias(int64_t n, int64_t c, int64_t inner, const float *b, float *y) {
  const int64_t tasks = n * c;
  cjob J = {.c = c, .inner = inner, .x = b, .y = y};
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(tasks * inner, tasks), channel_bias_task, &J);
}

static void copy2d_task(void *arg, int64_t r) {
  const cjob *J = arg;
  memcpy(J->y + r * J->ldd, J->x + r * J->lds, (size_t)J->inner * sizeof(float));
}

void ks__cpu_copy2d(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                    int64_t ldd) {
  cjob J = {.inner = cols, .x = src, .lds = lds, .y = dst, .ldd = ldd};
  ks__cpu_parallel_for(rows, ks__cpu_threads_for(rows * cols, rows), copy2d_task, &J);
}

/* ---- pooling ------------------------------------------------------------------------- */

/* Pooling forward works on blocks of up to KS_POOL_BLOCK outputs of one
 * output row: for each tap (ky, kx) in row-major order, a loop over the
 * block's outputs (gcc vectorizes it), so every output still sees its taps
 * in (ky, kx) order: the first maximum wins, sums are in tap order. */
#define KS_POOL_BLOCK 256

/* the common 2x2 window with stride 2 and no padding: interior windows
 * unrolled (taps (0,0), (0,1), (1,0), (1,1), the first maximum wins), the
 * partial last row/column (cover_all on odd sizes) tap by tap */
static int pool_is_2x2s2(const ks_conv_geom *g) {
  return g->kh == 2 && g->kw == 2 && g->sy == 2 && g->sx == 2 && g->ph == 0 && g->pw == 0;
}

/* gcc if-converts a select on a float comparison only without trapping
 * math (the comparison could raise FE_INVALID on a NaN, and -ftrapping-math
 * keeps such a comparison under its branch); kusari never reads the
 * floating-point exception flags, so this kernel is compiled without it. */
#if defined(__GNUC__) && !defined(__clang__)
#define KS_NO_TRAPPING_MATH __attribute__((optimize("no-trapping-math")))
#else
#define KS_NO_TRAPPING_MATH
#endif

KS_NO_TRAPPING_MATH static void max_pool_2x2s2_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict x = J->x;
  float *restrict y = J->y;
  int32_t *restrict idx = J->idx_out;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const int64_t fh = h / 2 < oh ? h / 2 : oh, fw = w / 2 < ow ? w / 2 : ow; /* full windows */
  {
    const float *restrict xp = x + t * h * w;
    for (int64_t oy = 0; oy < oh; oy++) {
      float *restrict yp = y + (t * oh + oy) * ow;
      int32_t *restrict ip = idx + (t * oh + oy) * ow;
      const int64_t r0 = 2 * oy;
      const float *restrict a = xp + r0 * w, *restrict b = a + w;
      const int64_t full = oy < fh ? fw : 0;
      /* branch-free selects (gcc vectorizes the loop; the branches it
       * replaces were taken at random on activations, a misprediction every
       * other window): same comparisons in the same order, so the same
       * maximum and the same first argmax */
      const int32_t base = (int32_t)(r0 * w), wi = (int32_t)w;
      for (int64_t ox = 0; ox < full; ox++) {
        const int64_t c = 2 * ox;
        const float v0 = a[c], v1 = a[c + 1], v2 = b[c], v3 = b[c + 1];
        float best = v0;
        int32_t k = 0;
        k = v1 > best ? 1 : k;
        best = v1 > best ? v1 : best;
        k = v2 > best ? wi : k;
        best = v2 > best ? v2 : best;
        k = v3 > best ? wi + 1 : k;
        best = v3 > best ? v3 : best;
        yp[ox] = best;
        ip[ox] = base + (int32_t)c + k;
      }
      for (int64_t ox = full; ox < ow; ox++) {
        float best = -INFINITY;
        int32_t bi = -1;
        for (int64_t iy = r0; iy < r0 + 2 && iy < h; iy++)
          for (int64_t ix = 2 * ox; ix < 2 * ox + 2 && ix < w; ix++)
            if (bi < 0 || xp[iy * w + ix] > best) { best = xp[iy * w + ix]; bi = (int32_t)(iy * w + ix); }
        yp[ox] = best;
        ip[ox] = bi;
      }
    }
  }
}

static void max_pool_generic_task(void *arg, int64_t t);

/* Planes of even height and width (every window full), as MNIST's 24x24
 * and 8x8. A stack of such planes is one tall image whose 2x2 windows never
 * straddle two planes, and output (oy, ox) of it reads its window from
 * input offset 2q with q = oy*w + ox: one flat loop over q computes every
 * window (and, for ox >= ow, windows across two row pairs that nobody asked
 * for: twice the comparisons, all vectorized) into a scratch row, from
 * which the wanted outputs are copied. Rows of 4 or 12 outputs were too
 * short for a vectorized loop per row, and its scalar remainder branched at
 * random on activations (2.0 -> 0.7 ms for MNIST's first pooling). Same
 * comparisons in the same order as max_pool_2x2s2_task: the same maximum
 * and first argmax.
 *
 * A task is a block of KS_POOL_FLAT_PX input pixels' worth of whole planes
 * (from the shape alone); it runs in segments of output rows whose flat
 * range fits the scratch (KS_POOL_FLAT windows). */
#define KS_POOL_FLAT 2048
#define KS_POOL_FLAT_PX 8192

static int pool_flat_ok(const ks_conv_geom *g) {
  return g->h == 2 * g->oh && g->w == 2 * g->ow && g->w <= KS_POOL_FLAT;
}

static int64_t pool_flat_planes(const ks_conv_geom *g) {
  const int64_t pp = KS_POOL_FLAT_PX / (g->h * g->w);
  return pp < 1 ? 1 : pp;
}

KS_NO_TRAPPING_MATH static void max_pool_2x2s2_flat_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow, hw = h * w;
  const int64_t pp = J->n, planes = g->n * g->c, p0 = t * pp;
  const int64_t np = planes - p0 < pp ? planes - p0 : pp, rows = np * oh; /* tall image */
  const float *restrict xp = J->x + p0 * hw;
  float *restrict yp = J->y + p0 * oh * ow;
  int32_t *restrict ip = J->idx_out + p0 * oh * ow;
  const int32_t wi = (int32_t)w;
  const int64_t seg = KS_POOL_FLAT / w; /* output rows per segment (>= 1) */
  float f[KS_POOL_FLAT];
  int32_t fi[KS_POOL_FLAT];
  for (int64_t r0 = 0; r0 < rows; r0 += seg) {
    const int64_t r1 = rows - r0 < seg ? rows : r0 + seg;
    const int64_t q0 = r0 * w, nq = (r1 - 1) * w + ow - q0;
    const float *restrict xs = xp + 2 * q0;
    for (int64_t q = 0; q < nq; q++) {
      const float v0 = xs[2 * q], v1 = xs[2 * q + 1], v2 = xs[2 * q + w], v3 = xs[2 * q + w + 1];
      float best = v0;
      int32_t k = 0;
      k = v1 > best ? 1 : k;
      best = v1 > best ? v1 : best;
      k = v2 > best ? wi : k;
      best = v2 > best ? v2 : best;
      k = v3 > best ? wi + 1 : k;
      best = v3 > best ? v3 : best;
      f[q] = best;
      fi[q] = (int32_t)(2 * q) + k;
    }
    for (int64_t r = r0; r < r1; r++) {
      /* offsets in the tall image -> offsets in the output row's own plane */
      const int32_t shift = (int32_t)(2 * q0 - (r / oh) * hw);
      const float *restrict fr = f + (r - r0) * w;
      const int32_t *restrict fir = fi + (r - r0) * w;
      float *restrict yr = yp + r * ow;
      int32_t *restrict ir = ip + r * ow;
      for (int64_t ox = 0; ox < ow; ox++) {
        yr[ox] = fr[ox];
        ir[ox] = fir[ox] + shift;
      }
    }
  }
}


void ks__cpu_max_pool2d_forward(const ks_conv_geom *g, const float *x, float *y, int32_t *idx) {
  const int64_t planes = g->n * g->c;
  int64_t lo_t[KS_TAP_TABLE], hi_t[KS_TAP_TABLE];
  cjob J = {.g = g, .x = x, .y = y, .idx_out = idx, .lo_t = lo_t, .hi_t = hi_t};
  if (pool_is_2x2s2(g) && pool_flat_ok(g)) {
    J.n = pool_flat_planes(g);
    const int64_t tasks = (planes + J.n - 1) / J.n;
    ks__cpu_parallel_for(tasks, ks__cpu_threads_for(planes * g->oh * g->ow * 4, tasks),
                         max_pool_2x2s2_flat_task, &J);
    return;
  }
  if (pool_is_2x2s2(g)) {
    ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * g->oh * g->ow * 4, planes),
                         max_pool_2x2s2_task, &J);
    return;
  }
  tap_table(g, lo_t, hi_t); /* pooling geometries have dx = 1 */
  ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * g->oh * g->ow * g->kh * g->kw, planes),
                       max_pool_generic_task, &J);
}

static void max_pool_generic_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict x = J->x;
  float *restrict y = J->y;
  int32_t *restrict idx = J->idx_out;
  const int64_t *lo_t = J->lo_t, *hi_t = J->hi_t;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  {
    const float *restrict xp = x + t * h * w;
    float best[KS_POOL_BLOCK];
    int32_t bi[KS_POOL_BLOCK];
    for (int64_t oy = 0; oy < oh; oy++) {
      const int64_t y0 = oy * g->sy - g->ph;
      const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + g->kh < h ? y0 + g->kh : h;
      for (int64_t o0 = 0; o0 < ow; o0 += KS_POOL_BLOCK) {
        const int64_t nb = ow - o0 < KS_POOL_BLOCK ? ow - o0 : KS_POOL_BLOCK;
        for (int64_t j = 0; j < nb; j++) { best[j] = -INFINITY; bi[j] = -1; }
        for (int64_t iy = ya; iy < yb; iy++)
          for (int64_t kx = 0; kx < g->kw; kx++) {
            const int64_t offx = kx - g->pw;
            int64_t lo, hi;
            tap_lookup(g, lo_t, hi_t, kx, &lo, &hi);
            lo = lo > o0 ? lo - o0 : 0;
            hi = hi - o0 < nb ? hi - o0 : nb;
            const float *restrict xr = xp + iy * w;
            const int64_t col0 = o0 * g->sx + offx;
            const int32_t base = (int32_t)(iy * w + col0);
            for (int64_t j = lo; j < hi; j++) {
              const float v = xr[col0 + j * g->sx];
              const int better = (v > best[j]) | (bi[j] < 0);
              best[j] = better ? v : best[j];
              bi[j] = better ? base + (int32_t)(j * g->sx) : bi[j];
            }
          }
        float *restrict yp = y + (t * oh + oy) * ow + o0;
        int32_t *restrict ip = idx + (t * oh + oy) * ow + o0;
        for (int64_t j = 0; j < nb; j++) { yp[j] = best[j]; ip[j] = bi[j]; }
      }
    }
  }
}

static void max_pool_backward_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const int64_t hw = J->g->h * J->g->w, ohw = J->g->oh * J->g->ow;
  float *restrict xp = J->y + t * hw;
  const float *restrict gp = J->x + t * ohw;
  const int32_t *restrict ip = J->idx_in + t * ohw;
  memset(xp, 0, (size_t)hw * sizeof *xp);
  for (int64_t o = 0; o < ohw; o++)
    if (ip[o] >= 0) xp[ip[o]] += gp[o];
}

void ks__cpu_max_pool2d_backward(const ks_conv_geom *g, const int32_t *idx, const float *gy,
                                 float *gx) {
  const int64_t hw = g->h * g->w, ohw = g->oh * g->ow, planes = g->n * g->c;
  cjob J = {.g = g, .idx_in = idx, .x = gy, .y = gx};
  ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * (hw + ohw), planes),
                       max_pool_backward_task, &J);
}

/* 2x2 stride 2 without padding: taps summed in the generic kernel's order */
static void avg_pool_2x2s2_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict x = J->x;
  float *restrict y = J->y;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  {
    const float *restrict xp = x + t * h * w;
    for (int64_t oy = 0; oy < oh; oy++) {
      const float *restrict a = xp + 2 * oy * w, *restrict b = a + w;
      float *restrict yp = y + (t * oh + oy) * ow;
      for (int64_t ox = 0; ox < ow; ox++)
        yp[ox] = (((0.0f + a[2 * ox]) + a[2 * ox + 1]) + b[2 * ox]) + b[2 * ox + 1];
      for (int64_t ox = 0; ox < ow; ox++) yp[ox] *= 0.25f;
    }
  }
}

static void avg_pool_generic_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict x = J->x;
  float *restrict y = J->y;
  const int64_t *lo_t = J->lo_t, *hi_t = J->hi_t;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const float inv = 1.0f / (float)(g->kh * g->kw);
  {
    const float *restrict xp = x + t * h * w;
    float sum[KS_POOL_BLOCK];
    for (int64_t oy = 0; oy < oh; oy++) {
      const int64_t y0 = oy * g->sy - g->ph;
      const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + g->kh < h ? y0 + g->kh : h;
      for (int64_t o0 = 0; o0 < ow; o0 += KS_POOL_BLOCK) {
        const int64_t nb = ow - o0 < KS_POOL_BLOCK ? ow - o0 : KS_POOL_BLOCK;
        for (int64_t j = 0; j < nb; j++) sum[j] = 0.0f;
        for (int64_t iy = ya; iy < yb; iy++)
          for (int64_t kx = 0; kx < g->kw; kx++) {
            const int64_t offx = kx - g->pw;
            int64_t lo, hi;
            tap_lookup(g, lo_t, hi_t, kx, &lo, &hi);
            lo = lo > o0 ? lo - o0 : 0;
            hi = hi - o0 < nb ? hi - o0 : nb;
            const float *restrict xr = xp + iy * w;
            const int64_t base = o0 * g->sx + offx;
            for (int64_t j = lo; j < hi; j++) sum[j] += xr[base + j * g->sx];
          }
        float *restrict yp = y + (t * oh + oy) * ow + o0;
        for (int64_t j = 0; j < nb; j++) yp[j] = sum[j] * inv;
      }
    }
  }
}

void ks__cpu_avg_pool2d_forward(const ks_conv_geom *g, const float *x, float *y) {
  const int64_t planes = g->n * g->c;
  int64_t lo_t[KS_TAP_TABLE], hi_t[KS_TAP_TABLE];
  cjob J = {.g = g, .x = x, .y = y, .lo_t = lo_t, .hi_t = hi_t};
  /* without cover_all a 2x2/2 window never leaves the image */
  if (pool_is_2x2s2(g) && 2 * g->oh <= g->h && 2 * g->ow <= g->w) {
    ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * g->oh * g->ow * 4, planes),
                         avg_pool_2x2s2_task, &J);
    return;
  }
  tap_table(g, lo_t, hi_t); /* pooling geometries have dx = 1 */
  ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * g->oh * g->ow * g->kh * g->kw, planes),
                       avg_pool_generic_task, &J);
}

static void avg_pool_backward_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const ks_conv_geom *g = J->g;
  const float *restrict gy = J->x;
  float *restrict gx = J->y;
  const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
  const float inv = 1.0f / (float)(g->kh * g->kw);
  {
    float *restrict xp = gx + t * h * w;
    const float *restrict gp = gy + t * oh * ow;
    memset(xp, 0, (size_t)(h * w) * sizeof *xp);
    for (int64_t oy = 0; oy < oh; oy++) {
      const int64_t y0 = oy * g->sy - g->ph;
      const int64_t ya = y0 < 0 ? 0 : y0, yb = y0 + g->kh < h ? y0 + g->kh : h;
      for (int64_t ox = 0; ox < ow; ox++) {
        const int64_t x0 = ox * g->sx - g->pw;
        const int64_t xa = x0 < 0 ? 0 : x0, xb = x0 + g->kw < w ? x0 + g->kw : w;
        const float v = gp[oy * ow + ox] * inv;
        for (int64_t iy = ya; iy < yb; iy++)
          for (int64_t ix = xa; ix < xb; ix++) xp[iy * w + ix] += v;
      }
    }
  }
}

void ks__cpu_avg_pool2d_backward(const ks_conv_geom *g, const float *gy, float *gx) {
  const int64_t planes = g->n * g->c;
  cjob J = {.g = g, .x = gy, .y = gx};
  ks__cpu_parallel_for(planes, ks__cpu_threads_for(planes * g->oh * g->ow * g->kh * g->kw, planes),
                       avg_pool_backward_task, &J);
}

/* ---- batch normalization ---------------------------------------------------------------- */

static void bn_stats_task(void *arg, int64_t ci) {
  const cjob *J = arg;
  const int64_t n = J->n, c = J->c, inner = J->inner;
  const float *restrict x = J->x;
  float *restrict mean = J->y, *restrict var = J->y2;
  const double m = (double)(n * inner);
  {
    double s = 0.0;
    for (int64_t ni = 0; ni < n; ni++) s += sum8(x + (ni * c + ci) * inner, inner);
    const double mu = m > 0 ? s / m : 0.0;
    double q = 0.0;
    for (int64_t ni = 0; ni < n; ni++) q += sqdev8(x + (ni * c + ci) * inner, inner, mu);
    mean[ci] = (float)mu;
    var[ci] = (float)(m > 0 ? q / m : 0.0);
  }
}

void ks__cpu_bn_stats(int64_t n, int64_t c, int64_t inner, const float *x, float *mean,
                      float *var) {
  cjob J = {.n = n, .c = c, .inner = inner, .x = x, .y = mean, .y2 = var};
  ks__cpu_parallel_for(c, ks__cpu_threads_for(n * c * inner, c), bn_stats_task, &J);
}

static void bn_forward_task(void *arg, int64_t t) {
  const cjob *J = arg;
  const int64_t c = J->c, inner = J->inner;
  const float *restrict x = J->x, *restrict mean = J->x2, *restrict inv_std = J->x3;
  const float *restrict gamma = J->x4, *restrict beta = J->x5;
  float *restrict y = J->y;
  {
    const int64_t ci = t % c;
    const float mu = mean[ci], is = inv_std[ci], ga = gamma[ci], be = beta[ci];
    const float *restrict xp = x + t * inner;
    float *restrict yp = y + t * inner;
    for (int64_t k = 0; k < inner; k++) yp[k] = ga * ((xp[k] - mu) * is) + be;
  }
}

void ks__cpu_bn_forward(int64_t n, int64_t c, int64_t inner, float eps, const float *x,
                        const float *mean, const float *var, const float *gamma,
                        const float *beta, float *y, float *inv_std) {
  for (int64_t ci = 0; ci < c; ci++) inv_std[ci] = 1.0f / sqrtf(var[ci] + eps);
  const int64_t tasks = n * c;
  cjob J = {.c = c, .inner = inner, .x = x, .x2 = mean, .x3 = inv_std, .x4 = gamma, .x5 = beta,
            .y = y};
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(tasks * inner, tasks), bn_forward_task, &J);
}

static void bn_backward_task(void *arg, int64_t ci) {
  const cjob *J = arg;
  const int64_t n = J->n, c = J->c, inner = J->inner;
  const int batch_stats = J->flag;
  const float *restrict x = J->x, *restrict gy = J->x2, *restrict mean = J->x3;
  const float *restrict inv_std = J->x4, *restrict gamma = J->x5;
  float *restrict gx = J->y, *restrict ggamma = J->y2, *restrict gbeta = J->y3;
  const float m = (float)(n * inner);
  {
    const float mu = mean[ci], is = inv_std[ci];
    double sb = 0.0, sg = 0.0;
    for (int64_t ni = 0; ni < n; ni++)
      bn_sums8(x + (ni * c + ci) * inner, gy + (ni * c + ci) * inner, inner, mu, is, &sb, &sg);
    const float gb = (float)sb, gg = (float)sg;
    if (gbeta) gbeta[ci] = gb;
    if (ggamma) ggamma[ci] = gg;
    if (!gx) return;
    const float scale = gamma[ci] * is;
    for (int64_t ni = 0; ni < n; ni++) {
      const float *restrict xp = x + (ni * c + ci) * inner;
      const float *restrict gp = gy + (ni * c + ci) * inner;
      float *restrict dp = gx + (ni * c + ci) * inner;
      if (batch_stats)
        for (int64_t k = 0; k < inner; k++)
          dp[k] = scale * (gp[k] - (((xp[k] - mu) * is) * gg + gb) / m);
      else
        for (int64_t k = 0; k < inner; k++) dp[k] = scale * gp[k];
    }
  }
}

void ks__cpu_bn_backward(int64_t n, int64_t c, int64_t inner, int batch_stats, const float *x,
                         const float *gy, const float *mean, const float *inv_std,
                         const float *gamma, float *gx, float *ggamma, float *gbeta) {
  cjob J = {.n = n, .c = c, .inner = inner, .flag = batch_stats, .x = x, .x2 = gy, .x3 = mean,
            .x4 = inv_std, .x5 = gamma, .y = gx, .y2 = ggamma, .y3 = gbeta};
  ks__cpu_parallel_for(c, ks__cpu_threads_for(n * c * inner, c), bn_backward_task, &J);
}
