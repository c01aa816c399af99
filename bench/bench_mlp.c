/*
 * bench/bench_mlp.c — kusari's side of the MLP benchmark.
 *
 * Trains exactly what the peers in bench/peers/ train (784-U-U-10 MLP, ReLU,
 * softmax cross entropy, MomentumSGD lr=0.01 momentum=0.9, shuffled batches of
 * Fashion-MNIST's 60000 training images) for a few epochs and prints one JSON
 * line in the peers' format: seconds per epoch, median, peak RSS, final loss,
 * test accuracy — plus the GEMM work per epoch, the fraction of this
 * machine's sgemm rate (measured here on a large square product with the same
 * thread count) that the training step achieves, and the step's time over a
 * GEMM-only epoch taken right after each training epoch (gemm_bound_epoch).
 *
 *   bench_mlp --unit 100 --batch 128 --epochs 3 --threads 1 [--data DIR]
 */
#include <kusari/kusari.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_common.h"

static void die(const char *what) {
  fprintf(stderr, "bench_mlp: %s: %s\n", what, ks_error_last());
  exit(1);
}

static ks_var *mlp_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h1 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l1"), x));
  ks_var *h2 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l2"), h1));
  return ks_link_forward(ctx, ks_link_child(self, "l3"), h2);
}

/* Best-of-3 GFLOP/s of an n x n x n sgemm through kusari's backend (so on
 * the same threads as the training step): the machine's practical peak. */
static double sgemm_peak_gflops(int n) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  float *a = malloc(sizeof(float) * (size_t)n * n), *b = malloc(sizeof(float) * (size_t)n * n),
        *c = malloc(sizeof(float) * (size_t)n * n);
  if (!a || !b || !c) return 0;
  for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
  double best = 1e30;
  for (int r = 0; r < 4; r++) {
    double t0 = bc_now();
    be->gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = bc_now() - t0;
    if (r > 0 && dt < best) best = dt; /* r == 0 warms up */
  }
  free(a); free(b); free(c);
  return 2.0 * n * (double)n * n / best * 1e-9;
}

/* A GEMM-only epoch: the eight products of one training step, with the
 * step's shapes and argument order (src/functions/connection.c: x W^T for
 * the three layers, gW = gy^T x for the three, gx = gy W for layers 2 and
 * 3), through the same backend and thread count, for as many steps as an
 * epoch has, and nothing else. One runs after each training epoch, so each
 * epoch is paired with a GEMM-only epoch taken under the same machine
 * conditions. Their ratio says how close the whole step comes to the
 * machine's GEMM limit; on the 2-core VM of bench/RESULTS.md the drift moves
 * it far less than either time (one product's median there can be 1.8x its
 * minimum from one minute to the next). */
typedef struct gemm_bound {
  int64_t b, u, in;
  float *x, *w1, *w2, *w3, *h1, *h2, *y, *gh1, *gh2, *gy, *gw1, *gw2, *gw3;
} gemm_bound;

static float *bound_buf(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)n);
  if (!p) die("gemm-only buffers");
  for (int64_t i = 0; i < n; i++) p[i] = 0.01f * (float)(i % 7) - 0.03f;
  return p;
}

static void gemm_bound_init(gemm_bound *g, int64_t b, int64_t u, int64_t in) {
  *g = (gemm_bound){.b = b, .u = u, .in = in};
  g->x = bound_buf(b * in);    g->w1 = bound_buf(u * in);  g->w2 = bound_buf(u * u);
  g->w3 = bound_buf(10 * u);   g->h1 = bound_buf(b * u);   g->h2 = bound_buf(b * u);
  g->y = bound_buf(b * 10);    g->gh1 = bound_buf(b * u);  g->gh2 = bound_buf(b * u);
  g->gy = bound_buf(b * 10);   g->gw1 = bound_buf(u * in); g->gw2 = bound_buf(u * u);
  g->gw3 = bound_buf(10 * u);
}

static void gemm_bound_free(gemm_bound *g) {
  float *all[] = {g->x, g->w1, g->w2, g->w3, g->h1, g->h2, g->y, g->gh1, g->gh2, g->gy,
                  g->gw1, g->gw2, g->gw3};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* After each training epoch: its GEMM-only epoch (bc_train's after_epoch) */
typedef struct gemm_pairing {
  gemm_bound bound;
  int64_t size;
  double *out;
} gemm_pairing;

static double gemm_bound_epoch(const gemm_bound *g, int64_t size);

static void gemm_pairing_run(void *user, int epoch) {
  gemm_pairing *p = user;
  p->out[epoch] = gemm_bound_epoch(&p->bound, p->size);
}

/* Seconds for the products of size / b steps (a last partial step counted
 * as its fraction, as the iterator's epochs count it). */
static double gemm_bound_epoch(const gemm_bound *g, int64_t size) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  const int64_t b = g->b, u = g->u, in = g->in, steps = (size + b - 1) / b;
  double t0 = bc_now();
  for (int64_t s = 0; s < steps; s++) {
    be->gemm(0, 1, b, u, in, 1.0f, g->x, in, g->w1, in, 0.0f, g->h1, u);
    be->gemm(0, 1, b, u, u, 1.0f, g->h1, u, g->w2, u, 0.0f, g->h2, u);
    be->gemm(0, 1, b, 10, u, 1.0f, g->h2, u, g->w3, u, 0.0f, g->y, 10);
    be->gemm(0, 0, b, u, 10, 1.0f, g->gy, 10, g->w3, u, 0.0f, g->gh2, u);
    be->gemm(1, 0, 10, u, b, 1.0f, g->gy, 10, g->h2, u, 0.0f, g->gw3, u);
    be->gemm(0, 0, b, u, u, 1.0f, g->gh2, u, g->w2, u, 0.0f, g->gh1, u);
    be->gemm(1, 0, u, u, b, 1.0f, g->gh2, u, g->h1, u, 0.0f, g->gw2, u);
    be->gemm(1, 0, u, in, b, 1.0f, g->gh1, u, g->x, in, 0.0f, g->gw1, in);
  }
  return (bc_now() - t0) * ((double)size / (double)b) / (double)steps;
}

int main(int argc, char **argv) {
  int unit = 100, batch = 128, epochs = 3, threads = 1, replicas = 1;
  const char *data = NULL;
  static const struct option longopts[] = {
    {"unit", required_argument, 0, 'u'}, {"batch", required_argument, 0, 'b'},
    {"epochs", required_argument, 0, 'e'}, {"threads", required_argument, 0, 't'},
    {"data", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
    {"suggest-coretype", no_argument, 0, 'C'}, {"replicas", required_argument, 0, 'r'},
    {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "u:b:e:t:d:r:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'u': unit = atoi(optarg); break;
      case 'b': batch = atoi(optarg); break;
      case 'e': epochs = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      case 'd': data = optarg; break;
      case 'r': replicas = atoi(optarg); break;
      case 'h':
        printf("usage: bench_mlp [--unit U] [--batch B] [--epochs E] [--threads T] [--data DIR]\n"
               "                 [--replicas R]   (R > 1: data-parallel step, kusari/parallel.h)\n"
               "       bench_mlp --suggest-coretype   (the OPENBLAS_CORETYPE this CPU needs, if any)\n");
        return 0;
      case 'C': {
        const char *ct = ks_blas_suggested_coretype();
        if (ct) printf("%s\n", ct);
        return 0;
      }
      default: return 2;
    }
  }
  if (unit < 1 || batch < 1 || epochs < 1 || threads < 1 || replicas < 1) {
    fprintf(stderr, "bench_mlp: --unit, --batch, --epochs, --threads and --replicas must be >= 1\n");
    return 2;
  }
  ks_set_num_threads(threads);

  char dir[4096];
  if (ks_mnist_find_dir(data, dir, sizeof dir) != KS_OK) die("data");
  ks_dataset *train, *test;
  if (ks_mnist_load(dir, 1, &train, &test) != KS_OK) die("loading data");

  ks_rng rng;
  ks_rng_seed(&rng, 0);
  ks_linear_opts lo = {.rng = &rng};
  ks_link *model = ks_chain_new();
  if (!model || ks_link_add_child(model, "l1", ks_linear_link_new(0, unit, &lo)) ||
      ks_link_add_child(model, "l2", ks_linear_link_new(unit, unit, &lo)) ||
      ks_link_add_child(model, "l3", ks_linear_link_new(unit, 10, &lo)))
    die("model");
  ks_link_set_forward(model, mlp_forward, NULL);
  bc_trainer tr;
  bc_trainer_init(&tr, "bench_mlp", train, model, batch, replicas);
  double *epoch_s = calloc((size_t)epochs, sizeof *epoch_s);
  double *epoch_cpu = calloc((size_t)epochs, sizeof *epoch_cpu);
  double *gemm_s = calloc((size_t)epochs, sizeof *gemm_s);
  gemm_pairing pair;
  gemm_bound_init(&pair.bound, batch, unit, train->row_size);
  pair.size = train->size;
  pair.out = gemm_s;
  double last_loss = bc_train(&tr, epochs, epoch_s, epoch_cpu, gemm_pairing_run, &pair);

  /* test accuracy over the test set in batches of 1000, no graph */
  double test_acc = bc_test_accuracy(&tr, test, 1000);

  /* GEMM work of one epoch: forward 3 products, backward gW for all three
   * layers and gx for layers 2 and 3 (layer 1's input needs no gradient). */
  double in = 784, u = unit;
  double per_sample = 2 * (in * u + u * u + u * 10);       /* forward  */
  per_sample += 2 * (in * u + u * u + u * 10);              /* gW       */
  per_sample += 2 * (u * u + u * 10);                       /* gx       */
  double epoch_gflop = per_sample * (double)train->size * 1e-9;

  double median = bc_median(epoch_s, epochs), median_cpu = bc_median(epoch_cpu, epochs);
  double median_gemm = bc_median(gemm_s, epochs);
  double peak = sgemm_peak_gflops(2048);
  double *ratio = malloc(sizeof *ratio * (size_t)epochs);
  for (int e = 0; e < epochs; e++) ratio[e] = epoch_s[e] / gemm_s[e];
  double median_ratio = bc_median(ratio, epochs);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"peer\": \"%s\", \"unit\": %d, \"batch\": %d, \"threads\": %d, \"replicas\": %d, "
         "\"epoch_seconds\": [", replicas > 1 ? "kusari-dp" : "kusari", unit, batch, threads, replicas);
  for (int e = 0; e < epochs; e++) printf("%s%.4f", e ? ", " : "", epoch_s[e]);
  printf("], \"gemm_only_epoch_s\": [");
  for (int e = 0; e < epochs; e++) printf("%s%.4f", e ? ", " : "", gemm_s[e]);
  printf("], \"median_gemm_only_s\": %.4f, \"median_step_over_gemm\": %.3f", median_gemm, median_ratio);
  printf(", \"median_epoch_s\": %.4f, \"median_epoch_cpu_s\": %.4f, \"peak_rss_mb\": %.1f, \"final_loss\": %.4f, "
         "\"test_accuracy\": %.4f, \"blas_coretype\": \"%s\", \"epoch_gflop\": %.3f, "
         "\"step_gflops\": %.1f, \"sgemm_peak_gflops\": %.1f, \"gemm_fraction\": %.3f}\n",
         median, median_cpu, (double)ru.ru_maxrss / 1024.0, last_loss, test_acc, ks_blas_corename(),
         epoch_gflop, epoch_gflop / median, peak, epoch_gflop / median / peak);

  free(epoch_s); free(epoch_cpu); free(gemm_s); free(ratio);
  gemm_bound_free(&pair.bound);
  bc_trainer_free(&tr);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  return 0;
}
