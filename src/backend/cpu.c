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
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void *cpu_alloc(size_t bytes) {
  return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(void *p) { free(p); }
static void cpu_memcpy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_fill_bytes(void *dst, int value, size_t bytes) { memset(dst, value, bytes); }

/* ---------------------------------------------------------------------------- */
/* Threads. OpenBLAS is kept single-threaded and each GEMM is split into
 * independent row or column panels that kusari's own pool runs (pool.c),
 * so two pools never spin on the same cores; OpenBLAS's own threading is
 * also slow on the small products of a training step (0.30 s per epoch on
 * two threads against 0.25 s on one, U=100 b=128). Panels never split the
 * reduction dimension k and depend only on the shape, so results do not
 * depend on the thread count. */

/* Settings made on first use, once per process (pthread_once: several
 * threads may make their first product at the same moment, e.g. a scoring
 * server's request threads): the thread count from the environment,
 * OpenBLAS switched to one thread, and the processor count that sizes GEMM
 * panels. g_threads then changes only through ks_set_num_threads, while
 * kernels on other threads read it: an atomic (relaxed: it is a setting,
 * not a publication of other data). */
static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
static _Atomic int g_threads;
static int g_procs; /* written once in cpu_init, read-only after */

static int env_threads(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  int n = atoi(v);
  return n > 0 ? n : 0;
}

static void cpu_init(void) {
  int n = env_threads("KUSARI_NUM_THREADS");
  if (!n) n = env_threads("OMP_NUM_THREADS");
  if (!n) n = env_threads("OPENBLAS_NUM_THREADS");
  if (!n) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  openblas_set_num_threads(1);
  long p = sysconf(_SC_NPROCESSORS_ONLN);
  g_procs = p < 1 ? 1 : p > 16 ? 16 : (int)p;
  atomic_store_explicit(&g_threads, n, memory_order_relaxed);
}

static int cpu_threads(void) {
  pthread_once(&g_init_once, cpu_init);
  return atomic_load_explicit(&g_threads, memory_order_relaxed);
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
 * different sizes, so even a split of rows changes bits) on any number of
 * threads.
 *
 * Three ways to cut C = alpha op(A) op(B) + beta C into P parts:
 *   rows:  each part packs all of op(B) again     (extra: n*k per part)
 *   cols:  each part packs all of op(A) again     (extra: m*k per part)
 *   depth: part p multiplies the p-th slice of the reduction dimension k;
 *          part 0 writes C, the others write scratch (m x n) that is then
 *          added to C in part order (extra: ~3*m*n per part: write, read,
 *          add). No operand is packed twice.
 * The cut with the least extra memory traffic is taken. The first layer of
 * the MNIST MLP (x 128x784 times W^T 784x100) was cut by rows: on one
 * thread 208 us against 180-182 unsplit; by depth it takes 183-193 us with
 * the add (thread CPU time, two sessions of measurements), and on two
 * threads 100-104 us against 141 by rows. */
enum { CUT_ROWS, CUT_COLS, CUT_DEPTH };

typedef struct gemm_cut { int kind, parts; } gemm_cut;

static gemm_cut gemm_plan(int64_t m, int64_t n, int64_t k) {
  gemm_cut cut = {CUT_ROWS, 1};
  double flops = 2.0 * (double)m * (double)n * (double)k;
  if (flops < 1e6) return cut; /* a fork/join costs more */
  /* Panels are few: at most one per processor of the machine (a constant of
   * the machine, not the thread count), and at least 48 rows/columns (128
   * deep) each (conv1's weight gradient 32x25x57600 in 11 panels of 3 rows
   * took 10 ms against 1.9 ms unsplit; 48 lets the MLP's 100x100x128 weight
   * gradient run as two panels). */
  pthread_once(&g_init_once, cpu_init);
  const int procs = g_procs;
  double want = flops / 8e6;
  const int P = want < 2 ? 2 : want > procs ? procs : (int)want;
  const int64_t len[3] = {m / 48, n / 48, k / 128};
  const double extra[3] = {(double)n * (double)k, (double)m * (double)k, 3.0 * (double)m * (double)n};
  double best = 0;
  for (int kind = CUT_ROWS; kind <= CUT_DEPTH; kind++) {
    int parts = len[kind] < P ? (int)len[kind] : P;
    if (parts < 2) continue;
    if (cut.parts == 1 || extra[kind] < best) {
      cut.kind = kind;
      cut.parts = parts;
      best = extra[kind];
    }
  }
  return cut;
}

typedef struct gemm_job {
  int trans_a, trans_b, kind;
  int64_t m, n, k, lda, ldb, ldc, len, chunk;
  float alpha, beta;
  const float *a, *b;
  float *c, *scratch; /* scratch: (parts - 1) blocks of m x n for CUT_DEPTH */
} gemm_job;

static void gemm_panel(void *arg, int64_t p) {
  const gemm_job *j = arg;
  int64_t lo = p * j->chunk, hi = lo + j->chunk < j->len ? lo + j->chunk : j->len;
  switch (j->kind) {
    case CUT_ROWS: {
      const float *ap = j->trans_a ? j->a + lo : j->a + lo * j->lda;
      sgemm1(j->trans_a, j->trans_b, hi - lo, j->n, j->k, j->alpha, ap, j->lda, j->b, j->ldb,
             j->beta, j->c + lo * j->ldc, j->ldc);
      break;
    }
    case CUT_COLS: {
      const float *bp = j->trans_b ? j->b + lo * j->ldb : j->b + lo;
      sgemm1(j->trans_a, j->trans_b, j->m, hi - lo, j->k, j->alpha, j->a, j->lda, bp, j->ldb,
             j->beta, j->c + lo, j->ldc);
      break;
    }
    default: { /* CUT_DEPTH: slice [lo, hi) of k */
      const float *ap = j->trans_a ? j->a + lo * j->lda : j->a + lo;
      const float *bp = j->trans_b ? j->b + lo : j->b + lo * j->ldb;
      if (p == 0)
        sgemm1(j->trans_a, j->trans_b, j->m, j->n, hi - lo, j->alpha, ap, j->lda, bp, j->ldb,
               j->beta, j->c, j->ldc);
      else
        sgemm1(j->trans_a, j->trans_b, j->m, j->n, hi - lo, j->alpha, ap, j->lda, bp, j->ldb, 0.0f,
               j->scratch + (p - 1) * j->m * j->n, j->n);
      break;
    }
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

/* C += the depth parts' scratch blocks, in part order, by rows (the same
 * bits however the rows are shared out). */
typedef struct depth_sum { const gemm_job *j; int64_t parts, rows; } depth_sum;

static void depth_sum_rows(void *arg, int64_t t) {
  const depth_sum *d = arg;
  const gemm_job *j = d->j;
  const int64_t lo = t * d->rows, hi = lo + d->rows < j->m ? lo + d->rows : j->m, n = j->n;
  for (int64_t i = lo; i < hi; i++) {
    float *restrict c = j->c + i * j->ldc;
    for (int64_t p = 1; p < d->parts; p++) {
      const float *restrict s = j->scratch + (p - 1) * j->m * n + i * n;
      for (int64_t q = 0; q < n; q++) c[q] += s[q];
    }
  }
}

/* The depth cut's scratch: one block per calling thread, grown as needed and
 * kept (no allocation per product in the steady state), freed when the
 * thread exits (a scoring server's request threads come and go). */
typedef struct gemm_scratch_block { float *p; size_t cap; } gemm_scratch_block;

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static int g_scratch_key_ok;

static void scratch_release(void *v) {
  gemm_scratch_block *b = v;
  free(b->p);
  free(b);
}
static void scratch_key_init(void) {
  g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_release) == 0;
}

static float *gemm_scratch(size_t floats) {
  pthread_once(&g_scratch_once, scratch_key_init);
  if (!g_scratch_key_ok) return NULL;
  gemm_scratch_block *b = pthread_getspecific(g_scratch_key);
  if (!b) {
    b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (pthread_setspecific(g_scratch_key, b) != 0) { free(b); return NULL; }
  }
  if (floats > b->cap) {
    float *p = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
    if (!p) return NULL;
    free(b->p);
    b->p = p;
    b->cap = floats;
  }
  return b->p;
}

static void cpu_gemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                     const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  if (gemv_path(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
  gemm_cut cut = gemm_plan(m, n, k);
  gemm_job j = {.trans_a = trans_a, .trans_b = trans_b, .kind = cut.kind, .m = m, .n = n,
                .k = k, .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
                .a = a, .b = b, .c = c};
  if (cut.kind == CUT_DEPTH && cut.parts > 1) {
    j.scratch = gemm_scratch((size_t)(cut.parts - 1) * (size_t)m * (size_t)n);
    if (!j.scratch) cut.parts = 1; /* out of memory: one product (other bits, still correct) */
  }
  if (cut.parts == 1) {
    sgemm1(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  static const int64_t align[3] = {4, 16, 16};
  j.len = cut.kind == CUT_ROWS ? m : cut.kind == CUT_COLS ? n : k;
  j.chunk = (j.len + cut.parts - 1) / cut.parts;
  j.chunk = (j.chunk + align[cut.kind] - 1) / align[cut.kind] * align[cut.kind];
  int64_t parts = (j.len + j.chunk - 1) / j.chunk;
  ks__parallel_for(parts, cpu_threads(), gemm_panel, &j);
  if (cut.kind == CUT_DEPTH && parts > 1) {
    depth_sum d = {&j, parts, 0};
    int64_t tasks = m * n >= (1 << 15) ? (m * n) / (1 << 14) : 1;
    if (tasks > m) tasks = m;
    d.rows = (m + tasks - 1) / tasks;
    ks__parallel_for((m + d.rows - 1) / d.rows, cpu_threads(), depth_sum_rows, &d);
  }
}

static void cpu_axpy(int64_t n, float alpha, const float *restrict x, float *restrict y) {
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void cpu_fill(int64_t n, float value, float *x) {
  for (int64_t i = 0; i < n; i++) x[i] = value;
}

static void cpu_set_threads(int n) {
  pthread_once(&g_init_once, cpu_init); /* first use: OpenBLAS goes single-threaded */
  atomic_store_explicit(&g_threads, n > 0 ? n : 1, memory_order_relaxed);
}
static int cpu_get_threads(void) { return cpu_threads(); }

static const ks_backend_ops ks_cpu_backend = {
  .name = "cpu",
  .alloc = cpu_alloc,
  .free = cpu_free,
  .memcpy_to_host = cpu_memcpy,
  .memcpy_from_host = cpu_memcpy,
  .fill_bytes = cpu_fill_bytes,
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

/* The built-in entry of the registry (src/backend/registry.c). */
const ks_backend_ops *ks__cpu_backend(void) { return &ks_cpu_backend; }

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
