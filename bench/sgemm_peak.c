/*
 * bench/sgemm_peak.c — this machine's sgemm rate through the OpenBLAS that
 * libkusari links, on 1 and 2 threads: a large square GEMM (the peak) and
 * every GEMM of one MLP training step (784-U-U-10, batch B) with the
 * transposes a row-major framework uses:
 *   forward   y  = x W^T      (B x out, K = in)
 *   backward  gW = gy^T x     (out x in, K = B)
 *             gx = gy W       (B x in, K = out; not for the first layer)
 * First it checks the kernel computes correctly (every shape against a
 * double-precision loop), since OPENBLAS_CORETYPE can force a kernel the CPU
 * or OpenBLAS build gets wrong. It prints GFLOP/s per shape and the GEMM-only time of a training step and
 * of an epoch of 60000 examples (the lower bound a framework can reach
 * without a faster GEMM), plus the OpenBLAS kernel (core) in use.
 *
 *   cc -O2 bench/sgemm_peak.c $(pkg-config --cflags --libs openblas) -o sgemm_peak
 *   ./sgemm_peak [seconds per measurement, default 0.3]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

/* OpenBLAS extensions (declared in its cblas.h too; repeated for other BLAS) */
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);
char *openblas_get_config(void);

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *buf(size_t n)
{
  float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) / 64 * 64);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++)
    p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  return p;
}

typedef struct gemm {
  const char *what;
  int ta, tb;        /* transposes of A, B (row-major) */
  int m, n, k;
} gemm;

static float *A, *Bm, *C;
static double budget = 0.3;

static void run1(const gemm *g)
{
  int lda = g->ta ? g->m : g->k;
  int ldb = g->tb ? g->k : g->n;
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
              g->m, g->n, g->k, 1.0f, A, lda, Bm, ldb, 0.0f, C, g->n);
}

/* max |C - A op B| over C, against a double loop; 0 if exact-ish */
static double check(const gemm *g)
{
  run1(g);
  int lda = g->ta ? g->m : g->k;
  int ldb = g->tb ? g->k : g->n;
  double worst = 0;
  for (int i = 0; i < g->m; i++)
    for (int j = 0; j < g->n; j++) {
      double acc = 0;
      for (int p = 0; p < g->k; p++) {
        double a = g->ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
        double b = g->tb ? Bm[(size_t)j * ldb + p] : Bm[(size_t)p * ldb + j];
        acc += a * b;
      }
      double e = acc - C[(size_t)i * g->n + j];
      e = e < 0 ? -e : e;
      if (e > worst)
        worst = e;
    }
  return worst;
}

/* Median-free but robust enough: best of 5 rounds of 'budget/5' seconds. */
static double seconds_per_call(const gemm *g)
{
  run1(g);
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    long calls = 0;
    double t0 = now(), t;
    do {
      run1(g);
      calls++;
      t = now();
    } while (t - t0 < budget / 5);
    double per = (t - t0) / (double)calls;
    if (per < best)
      best = per;
  }
  return best;
}

int main(int argc, char **argv)
{
  if (argc > 1)
    budget = atof(argv[1]);
  const size_t big = 2048;
  A = buf(big * big);
  Bm = buf(big * big);
  C = buf(big * big);
  printf("OpenBLAS core: %s\nconfig: %s\n", openblas_get_corename(), openblas_get_config());

  {
    static const gemm chk[6] = {
      {"", 0, 1, 128, 100, 784}, {"", 1, 0, 100, 784, 128}, {"", 0, 0, 128, 100, 100},
      {"", 0, 1, 100, 1000, 784}, {"", 1, 0, 1000, 784, 100}, {"", 0, 0, 100, 1000, 1000},
    };
    double worst = 0;
    for (int threads = 1; threads <= 2; threads++) {
      openblas_set_num_threads(threads);
      for (int q = 0; q < 6; q++) {
        double e = check(&chk[q]);
        worst = e > worst ? e : worst;
      }
    }
    /* inputs in [-0.5, 0.5), K <= 1000: float32 error stays far below 1e-3 */
    printf("correctness: max abs error %.3g vs double: %s\n", worst,
           worst < 1e-3 ? "ok" : "WRONG RESULTS");
    if (worst >= 1e-3)
      return 1;
  }

  for (int threads = 1; threads <= 2; threads++) {
    openblas_set_num_threads(threads);
    gemm sq = {"square 2048", 0, 0, 2048, 2048, 2048};
    double s = seconds_per_call(&sq);
    printf("\nthreads %d: peak (2048^3 NN) %.1f GFLOP/s\n", threads,
           2.0 * 2048 * 2048 * 2048 / s * 1e-9);
    static const int cfg[2][2] = {{100, 128}, {1000, 100}};
    for (int c = 0; c < 2; c++) {
      int U = cfg[c][0], Bt = cfg[c][1];
      int ins[3] = {784, U, U}, outs[3] = {U, U, 10};
      double step = 0, flops = 0;
      printf("  U=%d batch=%d\n", U, Bt);
      for (int l = 0; l < 3; l++) {
        gemm gs[3] = {
          {"fwd  y=xW^T ", 0, 1, Bt, outs[l], ins[l]},
          {"bwd gW=gy^Tx", 1, 0, outs[l], ins[l], Bt},
          {"bwd gx=gyW  ", 0, 0, Bt, ins[l], outs[l]},
        };
        for (int q = 0; q < (l == 0 ? 2 : 3); q++) {
          double t = seconds_per_call(&gs[q]);
          double f = 2.0 * gs[q].m * gs[q].n * gs[q].k;
          step += t;
          flops += f;
          printf("    l%d %s %4dx%4dx%4d  %7.1f GFLOP/s  %8.1f us\n", l + 1, gs[q].what,
                 gs[q].m, gs[q].n, gs[q].k, f / t * 1e-9, t * 1e6);
        }
      }
      double steps = 60000.0 / Bt;
      printf("    step: %.1f MFLOP, GEMM-only %.1f us (%.1f GFLOP/s); epoch (60000) GEMM-only "
             "%.3f s; at the peak rate %.3f s\n",
             flops * 1e-6, step * 1e6, flops / step * 1e-9, step * steps,
             flops * steps / (2.0 * 2048 * 2048 * 2048 / s));
    }
  }
  free(A);
  free(Bm);
  free(C);
  return 0;
}
