/*
 * src/backend/cpu.c — the CPU kernel table: OpenBLAS for GEMM, plain loops
 * (written so gcc -O3 vectorizes them) for the rest. The kernels of the
 * differentiable functions are in cpu_kernels.c.
 */
#include "kusari/backend.h"
#include "kusari/error.h"
#include "cpu_kernels.h" /* defines: ks__cpu_* function kernels */
#include "pool.h"        /* ks__parallel_for */

#include <cblas.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void *cpu_alloc(size_t bytes) {
  return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(void *p) { free(p); }
static void cpu_memcpy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

/* ---------------------------------------------------------------------------- */
/* Threads. OpenBLAS is kept single-threaded and each GEMM is split into
 * independent row or column panels that kusari's own pool runs (pool.c),
 * so two pools never spin on the same cores; OpenBLAS's own threading is
 * also slow on the small products of a training step (0.30 s per epoch on
 * two threads against 0.25 s on one, U=100 b=128). Panels never split the
 * reduction dimension k and depend only on the shape, so results do not
 * depend on the thread count. */

static int g_threads; /* 0 until first use */

static int env_threads(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  int n = atoi(v);
  return n > 0 ? n : 0;
}

static int cpu_threads(void) {
  if (g_threads == 0) {
    int n = env_threads("KUSARI_NUM_THREADS");
    if (!n) n = env_threads("OMP_NUM_THREADS");
    if (!n) n = env_threads("OPENBLAS_NUM_THREADS");
    if (!n) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    openblas_set_num_threads(1);
    g_threads = n;
  }
  return g_threads;
}

static void sgemm1(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc) {
  (void)cpu_threads(); /* OpenBLAS must be single-threaded before its first product:
                        its own threads give other bits (exact resume depends on it) */
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
              (blasint)ldc);
}

/* Panels of a GEMM: chosen from the shape and the machine, never from the
 * thread count, so a product is computed by the same sequence of OpenBLAS
 * calls (and gives the same bits: OpenBLAS picks different kernels for
 * different sizes) on any number of threads. */
static int gemm_panels(int64_t m, int64_t n, int64_t k) {
  double flops = 2.0 * (double)m * (double)n * (double)k;
  if (flops < 1e6) return 1; /* a fork/join costs more */
  /* Each panel packs the operand the panels share again, so panels are few:
   * at most one per processor of the machine (a constant of the machine, not
   * the thread count, so results stay the same bits on any thread count),
   * and at least 64 rows/columns each (conv1's weight gradient 32x25x57600
   * in 11 panels of 3 rows took 10 ms against 1.9 ms unsplit). */
  static int procs;
  if (!procs) {
    long p = sysconf(_SC_NPROCESSORS_ONLN);
    procs = p < 1 ? 1 : p > 16 ? 16 : (int)p;
  }
  int64_t len = m >= n ? m : n, most = len / 64;
  double want = flops / 8e6;
  int P = want < 2 ? 2 : want > procs ? procs : (int)want;
  if (P > most) P = (int)most;
  return P < 2 ? 1 : P;
}

typedef struct gemm_job {
  int trans_a, trans_b, split_rows;
  int64_t m, n, k, lda, ldb, ldc, len, chunk;
  float alpha, beta;
  const float *a, *b;
  float *c;
} gemm_job;

static void gemm_panel(void *arg, int64_t p) {
  const gemm_job *j = arg;
  int64_t lo = p * j->chunk, hi = lo + j->chunk < j->len ? lo + j->chunk : j->len;
  if (j->split_rows) {
    const float *ap = j->trans_a ? j->a + lo : j->a + lo * j->lda;
    sgemm1(j->trans_a, j->trans_b, hi - lo, j->n, j->k, j->alpha, ap, j->lda, j->b, j->ldb,
           j->beta, j->c + lo * j->ldc, j->ldc);
  } else {
    const float *bp = j->trans_b ? j->b + lo * j->ldb : j->b + lo;
    sgemm1(j->trans_a, j->trans_b, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, bp, j->ldb,
           j->beta, j->c + lo, j->ldc);
  }
}

/* A product with one row or one column of C is a matrix-vector product:
 * sgemv reads the matrix operand once where sgemm's blocking adds work (one
 * sample through a 784x100 layer, one thread: 5.3 -> 3.7 us; a 1000x1000
 * layer is memory-bound and takes the same time either way).
 * The choice depends on the shape only, like the panels. beta == 0 must
 * ignore what C holds (BLAS semantics; arena memory may hold a NaN), so C is
 * cleared and the product accumulated. */
static int gemv_path(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  if ((m != 1 && n != 1) || m < 1 || n < 1 || k < 1) return 0;
  (void)cpu_threads(); /* OpenBLAS single-threaded, as in sgemm1 */
  if (beta == 0.0f) {
    if (m == 1) memset(c, 0, sizeof(float) * (size_t)n);
    else for (int64_t i = 0; i < m; i++) c[i * ldc] = 0.0f;
    beta = 1.0f;
  }
  if (m == 1) {
    /* c (1, n) = a (1, k) op(B) (k, n): c^T = op(B)^T a^T */
    const blasint inc_a = (blasint)(trans_a ? lda : 1);
    if (trans_b) /* B stored (n, k) */
      cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)n, (blasint)k, alpha, b, (blasint)ldb, a,
                  inc_a, beta, c, 1);
    else         /* B stored (k, n) */
      cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)k, (blasint)n, alpha, b, (blasint)ldb, a,
                  inc_a, beta, c, 1);
  } else {
    /* c (m, 1) = op(A) (m, k) b (k, 1), c strided by ldc */
    const blasint inc_b = (blasint)(trans_b ? 1 : ldb);
    if (trans_a) /* A stored (k, m) */
      cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)k, (blasint)m, alpha, a, (blasint)lda, b,
                  inc_b, beta, c, (blasint)ldc);
    else         /* A stored (m, k) */
      cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)k, alpha, a, (blasint)lda, b,
                  inc_b, beta, c, (blasint)ldc);
  }
  return 1;
}

static void cpu_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  if (gemv_path(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  int P = gemm_panels(m, n, k);
  if (P == 1) {
    sgemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  gemm_job j = {.trans_a = trans_a, .trans_b = trans_b, .split_rows = m >= n, .m = m, .n = n,
                .k = k, .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
                .a = a, .b = b, .c = c};
  int64_t align = j.split_rows ? 4 : 16;
  j.len = j.split_rows ? m : n;
  j.chunk = (j.len + P - 1) / P;
  j.chunk = (j.chunk + align - 1) / align * align;
  int64_t parts = (j.len + j.chunk - 1) / j.chunk;
  ks__parallel_for(parts, cpu_threads(), gemm_panel, &j);
}

static void cpu_axpy(int64_t n, float alpha, const float *restrict x, float *restrict y) {
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void cpu_fill(int64_t n, float value, float *x) {
  for (int64_t i = 0; i < n; i++) x[i] = value;
}

static void cpu_set_threads(int n) {
  cpu_threads(); /* first use: OpenBLAS goes single-threaded */
  g_threads = n > 0 ? n : 1;
}
static int cpu_get_threads(void) { return cpu_threads(); }

static const ks_backend_ops ks_cpu_backend = {
  .name = "cpu",
  .alloc = cpu_alloc,
  .free = cpu_free,
  .memcpy_to_host = cpu_memcpy,
  .memcpy_from_host = cpu_memcpy,
  .gemm = cpu_gemm,
  .axpy = cpu_axpy,
  .fill = cpu_fill,
  .set_threads = cpu_set_threads,
  .get_threads = cpu_get_threads,

  .copy = ks__cpu_copy,
  .scale = ks__cpu_scale,
  .add = ks__cpu_add,
  .sub = ks__cpu_sub,
  .mul = ks__cpu_mul,
  .broadcast_rows = ks__cpu_broadcast_rows,
  .col_sum = ks__cpu_col_sum,
  .sum_axis = ks__cpu_sum_axis,
  .broadcast_axis = ks__cpu_broadcast_axis,
  .sum_sq = ks__cpu_sum_sq,
  .relu_forward = ks__cpu_relu_forward,
  .relu_backward = ks__cpu_relu_backward,
  .leaky_relu_forward = ks__cpu_leaky_relu_forward,
  .leaky_relu_backward = ks__cpu_leaky_relu_backward,
  .sigmoid_forward = ks__cpu_sigmoid_forward,
  .sigmoid_backward = ks__cpu_sigmoid_backward,
  .tanh_forward = ks__cpu_tanh_forward,
  .tanh_backward = ks__cpu_tanh_backward,
  .softmax_forward = ks__cpu_softmax_forward,
  .softmax_backward = ks__cpu_softmax_backward,
  .log_softmax_forward = ks__cpu_log_softmax_forward,
  .log_softmax_backward = ks__cpu_log_softmax_backward,
  .softmax_xent_forward = ks__cpu_softmax_xent_forward,
  .softmax_xent_backward = ks__cpu_softmax_xent_backward,
  .accuracy = ks__cpu_accuracy,
  .dropout_mask = ks__cpu_dropout_mask,

  .im2col = ks__cpu_im2col,
  .col2im = ks__cpu_col2im,
  .swap01 = ks__cpu_swap01,
  .channel_sum = ks__cpu_channel_sum,
  .channel_bias = ks__cpu_channel_bias,
  .copy2d = ks__cpu_copy2d,
  .max_pool2d_forward = ks__cpu_max_pool2d_forward,
  .max_pool2d_backward = ks__cpu_max_pool2d_backward,
  .avg_pool2d_forward = ks__cpu_avg_pool2d_forward,
  .avg_pool2d_backward = ks__cpu_avg_pool2d_backward,
  .bn_stats = ks__cpu_bn_stats,
  .bn_forward = ks__cpu_bn_forward,
  .bn_backward = ks__cpu_bn_backward,
};

const ks_backend_ops *ks_backend_for_device(ks_device dev) {
  switch (dev.type) {
    case KS_DEVICE_CPU: return &ks_cpu_backend;
    case KS_DEVICE_CUDA: return NULL; /* not built in: see docs/ARCHITECTURE.md */
  }
  return NULL;
}

void ks_set_num_threads(int n) { ks_cpu_backend.set_threads(n); }
int ks_get_num_threads(void) { return ks_cpu_backend.get_threads(); }

/* ---------------------------------------------------------------------------- */
/* Which kernel set OpenBLAS chose. A DYNAMIC_ARCH OpenBLAS picks kernels by
 * CPU model number; one older than the CPU (Debian 12's 0.3.21 on Sapphire or
 * Emerald Rapids, say) falls back to generic SSE3 kernels ("Prescott"), several
 * times slower. The choice is made when the library loads, so it cannot be
 * changed from here; we only say which OPENBLAS_CORETYPE would fix it. */

const char *ks_blas_corename(void) { return openblas_get_corename(); }

static int core_is_generic(const char *name) {
  static const char *const generic[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                        "atom", "katmai", "coppermine", "northwood", "banias",
                                        "unknown", NULL};
  for (int i = 0; generic[i]; i++)
    if (strcasecmp(name, generic[i]) == 0) return 1;
  return 0;
}

const char *ks_blas_suggested_coretype(void) {
  const char *core = openblas_get_corename();
  if (!core || !core_is_generic(core)) return NULL;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return __builtin_cpu_supports("avx512bf16") ? "Cooperlake" : "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "SandyBridge";
  return NULL;
}
