/*
 * src/backend/cpu_kernels.c — CPU kernels behind the function half of
 * ks_backend_ops: element-wise activations, broadcasts and reductions, the
 * softmax family and the fused softmax cross entropy.
 *
 * Loops are written for gcc -O3's vectorizer: restrict pointers, unit stride,
 * no calls inside the element loops except libm's exp/tanh/log (which gcc
 * does not vectorize without -ffast-math; these are not on the MLP hot path
 * except the per-row softmax, whose rows are short). Reductions over many
 * elements accumulate in double where accuracy matters (sum_sq, loss sums);
 * column sums accumulate row by row in float so they vectorize over columns.
 * The big element-wise kernels (copy, scale, add/sub/mul, activations and
 * their gradients) split their elements into chunks run by
 * ks__cpu_parallel_for when there are at least KS_CPU_PAR_MIN; every element
 * is computed the same way on any thread count, so results are the same
 * bits. Reductions and the softmax family stay single-threaded here
 * (docs/ARCHITECTURE.md, Threads). ks__cpu_parallel_for, defined here, is
 * the one place where all CPU kernels (these and cpu_conv.c's) meet the
 * thread pool: pool.c's, the one the GEMM panels run on.
 */
#include "cpu_kernels.h"
#include "kusari/backend.h" /* ks_get_num_threads */
#include "pool.h"           /* ks__parallel_for: kusari's one thread pool */
#include "kusari/functions.h" /* KS_IGNORE_NONE */

#include <math.h>
#include <string.h>

int ks__cpu_threads_for(int64_t work, int64_t tasks) {
  if (work < KS_CPU_PAR_MIN || tasks < 2) return 1;
  int t = ks_get_num_threads();
  return (int64_t)t > tasks ? (int)tasks : t;
}

void ks__cpu_parallel_for(int64_t tasks, int threads, ks__cpu_task_fn fn, void *arg) {
  if (threads <= 1 || tasks <= 1) {
    for (int64_t t = 0; t < tasks; t++) fn(arg, t);
    return;
  }
  ks__parallel_for(tasks, threads, fn, arg); /* the pool the GEMM panels run on */
}

/* Element-wise kernels: tasks of KS_EW_CHUNK elements. KS_EW_TASK(name,
 * BODY) defines name_task running BODY (an expression over i, x, x2, y, a)
 * for the elements of one chunk. */
#define KS_EW_CHUNK 16384

typedef struct ew_job {
  const float *x, *x2;
  float *y;
  float a;
  int64_t n;
} ew_job;

#define KS_EW_TASK(name, BODY)                                                              \
  static void name##_task(void *arg, int64_t t) {                                           \
    const ew_job *e_ = arg;                                                                 \
    const float *restrict x = e_->x, *restrict x2 = e_->x2;                                 \
    float *restrict y = e_->y;                                                              \
    const float a = e_->a;                                                                  \
    const int64_t lo = t * KS_EW_CHUNK, hi = lo + KS_EW_CHUNK < e_->n ? lo + KS_EW_CHUNK : e_->n; \
    (void)x; (void)x2; (void)a;                                                              \
    for (int64_t i = lo; i < hi; i++) BODY;                                                 \
  }

static void ew_run(ks__cpu_task_fn fn, int64_t n, const float *x, const float *x2, float *y,
                   float a) {
  ew_job e = {x, x2, y, a, n};
  const int64_t tasks = (n + KS_EW_CHUNK - 1) / KS_EW_CHUNK;
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(n, tasks), fn, &e);
}

/* ---- memory and arithmetic ------------------------------------------------- */

#define KS_COPY_CHUNK ((size_t)1 << 18) /* bytes per parallel memcpy piece */

typedef struct copy_job { char *d; const char *s; size_t bytes; } copy_job;

static void copy_task(void *arg, int64_t p) {
  const copy_job *j = arg;
  size_t off = (size_t)p * KS_COPY_CHUNK;
  size_t len = j->bytes - off < KS_COPY_CHUNK ? j->bytes - off : KS_COPY_CHUNK;
  memcpy(j->d + off, j->s + off, len);
}

void ks__cpu_copy(void *dst, const void *src, size_t bytes) {
  if (dst == src || !bytes) return;
  const char *s = src;
  char *d = dst;
  if (bytes < 4 * KS_COPY_CHUNK || (d < s + bytes && s < d + bytes)) { /* small or overlapping */
    memmove(dst, src, bytes);
    return;
  }
  const int64_t pieces = (int64_t)((bytes + KS_COPY_CHUNK - 1) / KS_COPY_CHUNK);
  copy_job j = {d, s, bytes};
  ks__cpu_parallel_for(pieces, ks__cpu_threads_for((int64_t)(bytes / 4), pieces), copy_task, &j);
}

typedef struct scale_job { const float *x; float *y; float alpha; int64_t n; } scale_job;

static void scale_task(void *arg, int64_t t) {
  const scale_job *j = arg;
  const int64_t lo = t * KS_EW_CHUNK, hi = lo + KS_EW_CHUNK < j->n ? lo + KS_EW_CHUNK : j->n;
  const float *x = j->x; /* x may equal y: no restrict */
  float *y = j->y;
  for (int64_t i = lo; i < hi; i++) y[i] = j->alpha * x[i];
}

void ks__cpu_scale(int64_t n, float alpha, const float *x, float *y) {
  scale_job j = {x, y, alpha, n};
  const int64_t tasks = (n + KS_EW_CHUNK - 1) / KS_EW_CHUNK;
  ks__cpu_parallel_for(tasks, ks__cpu_threads_for(n, tasks), scale_task, &j);
}

/* y (n, m) = a op b with b (m,) repeated over rows; m == 1 is a scalar b.
 * Scalar b: element chunks; otherwise one task per row. */
typedef struct rows_job { const float *a, *b; float *y; int64_t m; } rows_job;

#define KS_BINARY_KERNEL(name, OP)                                                   \
  KS_EW_TASK(name##_scalar, y[i] = x[i] OP a)                                         \
  static void name##_row_task(void *arg, int64_t r) {                                 \
    const rows_job *j = arg;                                                          \
    const float *restrict ar = j->a + r * j->m, *restrict b = j->b;                   \
    float *restrict yr = j->y + r * j->m;                                             \
    for (int64_t k = 0; k < j->m; k++) yr[k] = ar[k] OP b[k];                         \
  }                                                                                   \
  void ks__cpu_##name(int64_t n, int64_t m, const float *restrict a,                  \
                      const float *restrict b, float *restrict y) {                   \
    if (m == 1) {                                                                     \
      ew_run(name##_scalar_task, n, a, NULL, y, b[0]);                                \
      return;                                                                         \
    }                                                                                 \
    rows_job j = {a, b, y, m};                                                        \
    ks__cpu_parallel_for(n, ks__cpu_threads_for(n * m, n), name##_row_task, &j);      \
  }
KS_BINARY_KERNEL(add, +)
KS_BINARY_KERNEL(sub, -)
KS_BINARY_KERNEL(mul, *)
#undef KS_BINARY_KERNEL

void ks__cpu_broadcast_rows(int64_t n, int64_t m, const float *restrict b, float *restrict y) {
  for (int64_t r = 0; r < n; r++) memcpy(y + r * m, b, (size_t)m * sizeof *y);
}

void ks__cpu_col_sum(int64_t n, int64_t m, const float *restrict x, float *restrict out) {
  if (n == 0) { memset(out, 0, (size_t)m * sizeof *out); return; }
  memcpy(out, x, (size_t)m * sizeof *out);
  for (int64_t r = 1; r < n; r++) {
    const float *restrict xr = x + r * m;
    for (int64_t j = 0; j < m; j++) out[j] += xr[j];
  }
}

void ks__cpu_sum_axis(int64_t outer, int64_t c, int64_t inner, float alpha,
                      const float *restrict x, float *restrict y) {
  if (inner == 1) {
    /* reduce contiguous rows: double accumulator for long rows */
    for (int64_t o = 0; o < outer; o++) {
      const float *restrict xr = x + o * c;
      double s = 0.0;
      for (int64_t k = 0; k < c; k++) s += xr[k];
      y[o] = (float)(alpha * s);
    }
    return;
  }
  for (int64_t o = 0; o < outer; o++) {
    float *restrict yo = y + o * inner;
    const float *restrict xo = x + o * c * inner;
    for (int64_t i = 0; i < inner; i++) yo[i] = 0.0f;
    for (int64_t k = 0; k < c; k++)
      for (int64_t i = 0; i < inner; i++) yo[i] += xo[k * inner + i];
    for (int64_t i = 0; i < inner; i++) yo[i] *= alpha;
  }
}

void ks__cpu_broadcast_axis(int64_t outer, int64_t c, int64_t inner, float alpha,
                            const float *restrict gy, float *restrict gx) {
  for (int64_t o = 0; o < outer; o++) {
    const float *restrict go = gy + o * inner;
    float *restrict xo = gx + o * c * inner;
    for (int64_t k = 0; k < c; k++)
      for (int64_t i = 0; i < inner; i++) xo[k * inner + i] = alpha * go[i];
  }
}

void ks__cpu_sum_sq(int64_t n, float alpha, const float *restrict x, float *restrict out) {
  double s = 0.0;
  for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
  out[0] = (float)(alpha * s);
}

/* ---- activations ------------------------------------------------------------ */

/* NaN passes through (numpy.maximum(x, 0) as Chainer), so divergence shows */
KS_EW_TASK(relu_fwd, y[i] = x[i] < 0.0f ? 0.0f : x[i])
void ks__cpu_relu_forward(int64_t n, const float *x, float *y) {
  ew_run(relu_fwd_task, n, x, NULL, y, 0.0f);
}

KS_EW_TASK(relu_bwd, y[i] = x[i] > 0.0f ? x2[i] : 0.0f) /* x = y, x2 = gy, y = gx */
void ks__cpu_relu_backward(int64_t n, const float *y, const float *gy, float *gx) {
  ew_run(relu_bwd_task, n, y, gy, gx, 0.0f);
}

KS_EW_TASK(leaky_fwd, y[i] = x[i] >= 0.0f ? x[i] : a * x[i])
void ks__cpu_leaky_relu_forward(int64_t n, float slope, const float *x, float *y) {
  ew_run(leaky_fwd_task, n, x, NULL, y, slope);
}

KS_EW_TASK(leaky_bwd, y[i] = x[i] >= 0.0f ? x2[i] : a * x2[i])
void ks__cpu_leaky_relu_backward(int64_t n, float slope, const float *x, const float *gy,
                                 float *gx) {
  ew_run(leaky_bwd_task, n, x, gy, gx, slope);
}

/* Chainer: tanh(x/2)/2 + 1/2, stable for large |x| */
KS_EW_TASK(sigmoid_fwd, y[i] = 0.5f * tanhf(0.5f * x[i]) + 0.5f)
void ks__cpu_sigmoid_forward(int64_t n, const float *x, float *y) {
  ew_run(sigmoid_fwd_task, n, x, NULL, y, 0.0f);
}

KS_EW_TASK(sigmoid_bwd, y[i] = x2[i] * x[i] * (1.0f - x[i])) /* x = y, x2 = gy */
void ks__cpu_sigmoid_backward(int64_t n, const float *y, const float *gy, float *gx) {
  ew_run(sigmoid_bwd_task, n, y, gy, gx, 0.0f);
}

KS_EW_TASK(tanh_fwd, y[i] = tanhf(x[i]))
void ks__cpu_tanh_forward(int64_t n, const float *x, float *y) {
  ew_run(tanh_fwd_task, n, x, NULL, y, 0.0f);
}

KS_EW_TASK(tanh_bwd, y[i] = x2[i] * (1.0f - x[i] * x[i])) /* x = y, x2 = gy */
void ks__cpu_tanh_backward(int64_t n, const float *y, const float *gy, float *gx) {
  ew_run(tanh_bwd_task, n, y, gy, gx, 0.0f);
}

/* ---- softmax family ---------------------------------------------------------- */

/* softmax of one contiguous row of c; returns log(sum exp(x - max)) and max */
static inline void row_softmax(int64_t c, const float *restrict x, float *restrict y,
                               float *mx_out, float *lse_out) {
  float mx = x[0];
  for (int64_t k = 1; k < c; k++) mx = x[k] > mx ? x[k] : mx;
  float s = 0.0f;
  for (int64_t k = 0; k < c; k++) {
    float e = expf(x[k] - mx);
    y[k] = e;
    s += e;
  }
  float inv = 1.0f / s;
  for (int64_t k = 0; k < c; k++) y[k] *= inv;
  *mx_out = mx;
  *lse_out = logf(s);
}

void ks__cpu_softmax_forward(int64_t outer, int64_t c, int64_t inner, const float *restrict x,
                             float *restrict y) {
  if (inner == 1) {
    float mx, lse;
    for (int64_t o = 0; o < outer; o++) row_softmax(c, x + o * c, y + o * c, &mx, &lse);
    return;
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *xo = x + o * c * inner + i;
      float *yo = y + o * c * inner + i;
      float mx = xo[0];
      for (int64_t k = 1; k < c; k++) mx = xo[k * inner] > mx ? xo[k * inner] : mx;
      float s = 0.0f;
      for (int64_t k = 0; k < c; k++) { yo[k * inner] = expf(xo[k * inner] - mx); s += yo[k * inner]; }
      float inv = 1.0f / s;
      for (int64_t k = 0; k < c; k++) yo[k * inner] *= inv;
    }
}

/* gx = y * (gy - sum_k gy*y) over the middle axis */
void ks__cpu_softmax_backward(int64_t outer, int64_t c, int64_t inner, const float *restrict y,
                              const float *restrict gy, float *restrict gx) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * c * inner + i;
      float s = 0.0f;
      for (int64_t k = 0; k < c; k++) s += gy[base + k * inner] * y[base + k * inner];
      for (int64_t k = 0; k < c; k++)
        gx[base + k * inner] = y[base + k * inner] * (gy[base + k * inner] - s);
    }
}

void ks__cpu_log_softmax_forward(int64_t outer, int64_t c, int64_t inner,
                                 const float *restrict x, float *restrict y) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * c * inner + i;
      float mx = x[base];
      for (int64_t k = 1; k < c; k++) mx = x[base + k * inner] > mx ? x[base + k * inner] : mx;
      float s = 0.0f;
      for (int64_t k = 0; k < c; k++) s += expf(x[base + k * inner] - mx);
      float shift = mx + logf(s);
      for (int64_t k = 0; k < c; k++) y[base + k * inner] = x[base + k * inner] - shift;
    }
}

/* gx = gy - exp(y) * sum_k gy */
void ks__cpu_log_softmax_backward(int64_t outer, int64_t c, int64_t inner,
                                  const float *restrict y, const float *restrict gy,
                                  float *restrict gx) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      int64_t base = o * c * inner + i;
      float s = 0.0f;
      for (int64_t k = 0; k < c; k++) s += gy[base + k * inner];
      for (int64_t k = 0; k < c; k++)
        gx[base + k * inner] = gy[base + k * inner] - expf(y[base + k * inner]) * s;
    }
}

int64_t ks__cpu_softmax_xent_forward(int64_t n, int64_t c, const float *restrict x,
                                     const int32_t *restrict t, int32_t ignore,
                                     float *restrict p, float *restrict loss) {
  for (int64_t r = 0; r < n; r++)
    if (t[r] != ignore && (t[r] < 0 || t[r] >= c)) return -(1 + r);
  double total = 0.0;
  int64_t count = 0;
  for (int64_t r = 0; r < n; r++) {
    float mx, lse;
    row_softmax(c, x + r * c, p + r * c, &mx, &lse);
    if (t[r] == ignore) continue;
    /* log p[t] = x[t] - max - log(sum exp(x - max)): exact even when p[t] underflows */
    total -= (double)(x[r * c + t[r]] - mx) - (double)lse;
    count++;
  }
  loss[0] = (float)(total / (double)(count > 0 ? count : 1));
  return count;
}

void ks__cpu_softmax_xent_backward(int64_t n, int64_t c, const float *restrict p,
                                   const int32_t *restrict t, int32_t ignore, float scale,
                                   float *restrict gx) {
  for (int64_t r = 0; r < n; r++) {
    float *restrict g = gx + r * c;
    const float *restrict pr = p + r * c;
    if (t[r] == ignore) {
      for (int64_t k = 0; k < c; k++) g[k] = 0.0f;
      continue;
    }
    for (int64_t k = 0; k < c; k++) g[k] = scale * pr[k];
    g[t[r]] -= scale;
  }
}

int64_t ks__cpu_accuracy(int64_t n, int64_t c, const float *restrict y,
                         const int32_t *restrict t, int32_t ignore, float *restrict out) {
  int64_t total = 0, hit = 0;
  for (int64_t r = 0; r < n; r++) {
    if (ignore != KS_IGNORE_NONE && t[r] == ignore) continue;
    total++;
    const float *yr = y + r * c;
    int64_t best = 0;
    for (int64_t k = 1; k < c; k++)
      if (yr[k] > yr[best]) best = k; /* first maximum, like numpy.argmax */
    if (best == (int64_t)t[r]) hit++;
  }
  out[0] = total ? (float)((double)hit / (double)total) : 0.0f;
  return total;
}

void ks__cpu_dropout_mask(int64_t n, double ratio, ks_rng *rng, float *restrict mask) {
  const float scale = (float)(1.0 / (1.0 - ratio));
  for (int64_t i = 0; i < n; i++) mask[i] = ks_rng_uniform(rng) >= ratio ? scale : 0.0f;
}
