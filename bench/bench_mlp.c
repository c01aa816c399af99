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

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time (user + system, all threads): on a shared machine the
 * steady figure for one thread; on two it also counts the pool's spinning. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    double t0 = now_s();
    be->gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = now_s() - t0;
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

/* Seconds for the products of size / b steps (a last partial step counted
 * as its fraction, as the iterator's epochs count it). */
static double gemm_bound_epoch(const gemm_bound *g, int64_t size) {
  const ks_backend_ops *be = ks_backend_for_device(KS_CPU);
  const int64_t b = g->b, u = g->u, in = g->in, steps = (size + b - 1) / b;
  double t0 = now_s();
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
  return (now_s() - t0) * ((double)size / (double)b) / (double)steps;
}

/* --replicas R > 1: the step as R data-parallel replicas (kusari/parallel.h),
 * each gathering and training its slice of the batch. */
typedef struct slice_job {
  const ks_dataset *train;
  const int64_t *idx;
  ks_link *model;
} slice_job;

static ks_var *slice_loss(ks_ctx *ctx, int replica, int64_t start, int64_t count, void *user) {
  (void)replica;
  const slice_job *j = user;
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){count, j->train->row_size});
  ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){count});
  if (!xt || !tt ||
      ks_dataset_gather(j->train, j->idx + start, count, ks_tensor_f32(xt), ks_tensor_i32(tt)))
    return NULL;
  return ks_softmax_cross_entropy(ctx, ks_link_forward(ctx, j->model, ks_var_new(ctx, xt, 0)),
                                  ks_var_new(ctx, tt, 0), -1);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
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
  ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.01, 0.9);
  if (!opt || ks_optimizer_setup(opt, model)) die("optimizer");
  ks_serial_iterator *it;
  if (ks_serial_iterator_new(&it, train->size, batch, 1, 1, 1)) die("iterator");
  ks_ctx *ctx = ks_ctx_new();
  if (!ctx) die("ctx");
  ks_data_parallel *dp = NULL;
  if (replicas > 1 && ks_data_parallel_new(&dp, model, replicas, 0)) die("replicas");
  slice_job job = {train, NULL, model};

  double *epoch_s = calloc((size_t)epochs, sizeof *epoch_s);
  double *epoch_cpu = calloc((size_t)epochs, sizeof *epoch_cpu);
  double *gemm_s = calloc((size_t)epochs, sizeof *gemm_s);
  gemm_bound bound;
  gemm_bound_init(&bound, batch, unit, train->row_size);
  double c0 = cpu_s();
  double t0 = now_s(), last_loss = 0, loss_sum = 0;
  int64_t loss_n = 0;
  while (ks_serial_iterator_epoch(it) < epochs) {
    const int64_t *idx;
    int64_t n;
    if (ks_serial_iterator_next(it, &idx, &n)) die("next");
    if (dp) {
      double l;
      job.idx = idx;
      if (ks_data_parallel_backward(dp, n, slice_loss, &job, &l) || ks_optimizer_update(opt))
        die("data-parallel step");
      loss_sum += l;
      loss_n++;
    } else {
    ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, train->row_size});
    ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){n});
    if (!xt || !tt || ks_dataset_gather(train, idx, n, ks_tensor_f32(xt), ks_tensor_i32(tt)))
      die("batch");
    ks_var *loss = ks_softmax_cross_entropy(
        ctx, ks_link_forward(ctx, model, ks_var_new(ctx, xt, 0)), ks_var_new(ctx, tt, 0), -1);
    if (!loss) die("forward");
    ks_link_cleargrads(model);
    if (ks_backward(ctx, loss) || ks_optimizer_update(opt)) die("step");
    loss_sum += ks_tensor_f32(loss->data)[0];
    loss_n++;
    ks_ctx_reset(ctx);
    }
    if (ks_serial_iterator_is_new_epoch(it)) {
      double t = now_s();
      last_loss = loss_sum / (double)loss_n; /* mean over the epoch, like the peers */
      loss_sum = 0;
      loss_n = 0;
      double cnow = cpu_s();
      const int e = ks_serial_iterator_epoch(it) - 1;
      epoch_s[e] = t - t0;
      epoch_cpu[e] = cnow - c0;
      gemm_s[e] = gemm_bound_epoch(&bound, train->size); /* paired, not counted */
      t0 = now_s();
      c0 = cpu_s();
    }
  }

  /* test accuracy over the test set in batches of 1000, no graph */
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  int64_t correct = 0;
  int64_t *ids = malloc(sizeof *ids * 1000);
  for (int64_t s = 0; s < test->size; s += 1000) {
    int64_t m = test->size - s < 1000 ? test->size - s : 1000;
    for (int64_t i = 0; i < m; i++) ids[i] = s + i;
    ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){m, test->row_size});
    ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){m});
    if (!xt || !tt || ks_dataset_gather(test, ids, m, ks_tensor_f32(xt), ks_tensor_i32(tt)))
      die("test batch");
    ks_var *acc = ks_accuracy(ctx, ks_link_forward(ctx, model, ks_var_new(ctx, xt, 0)),
                              ks_var_new(ctx, tt, 0), -1);
    if (!acc) die("accuracy");
    correct += (int64_t)(ks_tensor_f32(acc->data)[0] * (float)m + 0.5f);
    ks_ctx_reset(ctx);
  }
  free(ids);
  double test_acc = (double)correct / (double)test->size;

  /* GEMM work of one epoch: forward 3 products, backward gW for all three
   * layers and gx for layers 2 and 3 (layer 1's input needs no gradient). */
  double in = 784, u = unit;
  double per_sample = 2 * (in * u + u * u + u * 10);       /* forward  */
  per_sample += 2 * (in * u + u * u + u * 10);              /* gW       */
  per_sample += 2 * (u * u + u * 10);                       /* gx       */
  double epoch_gflop = per_sample * (double)train->size * 1e-9;

  double *sorted = malloc(sizeof *sorted * (size_t)epochs);
  memcpy(sorted, epoch_s, sizeof *sorted * (size_t)epochs);
  qsort(sorted, (size_t)epochs, sizeof *sorted, cmp_double);
  double median = epochs % 2 ? sorted[epochs / 2] : 0.5 * (sorted[epochs / 2 - 1] + sorted[epochs / 2]);
  memcpy(sorted, epoch_cpu, sizeof *sorted * (size_t)epochs);
  qsort(sorted, (size_t)epochs, sizeof *sorted, cmp_double);
  double median_cpu = epochs % 2 ? sorted[epochs / 2] : 0.5 * (sorted[epochs / 2 - 1] + sorted[epochs / 2]);
  double peak = sgemm_peak_gflops(2048);
  double *ratio = malloc(sizeof *ratio * (size_t)epochs);
  for (int e = 0; e < epochs; e++) ratio[e] = epoch_s[e] / gemm_s[e];
  qsort(ratio, (size_t)epochs, sizeof *ratio, cmp_double);
  double median_ratio = epochs % 2 ? ratio[epochs / 2] : 0.5 * (ratio[epochs / 2 - 1] + ratio[epochs / 2]);
  memcpy(sorted, gemm_s, sizeof *sorted * (size_t)epochs);
  qsort(sorted, (size_t)epochs, sizeof *sorted, cmp_double);
  double median_gemm = epochs % 2 ? sorted[epochs / 2] : 0.5 * (sorted[epochs / 2 - 1] + sorted[epochs / 2]);

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

  free(sorted); free(epoch_s); free(epoch_cpu); free(gemm_s); free(ratio);
  gemm_bound_free(&bound);
  ks_ctx_free(ctx);
  ks_data_parallel_free(dp);
  ks_serial_iterator_free(it);
  ks_optimizer_free(opt);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  return 0;
}
