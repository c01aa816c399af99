/*
 * bench/bench_cnn.c — kusari's side of the CNN benchmark.
 *
 * Trains exactly what bench/peers/cnn_*.py train: the CNN of
 * examples/mnist/train_mnist_cnn (Conv(1->C1, 5x5)-ReLU-MaxPool2 -
 * Conv(C1->C2, 5x5)-ReLU-MaxPool2 - Linear(C2*16 -> U)-ReLU - Linear(U->10),
 * C1=32, C2=64, U=256 by default), softmax cross entropy, MomentumSGD
 * (lr=0.01, momentum=0.9), shuffled batches of Fashion-MNIST's 60000
 * training images as (N, 1, 28, 28) — and prints one JSON line in the
 * peers' format: seconds per epoch, median, peak RSS, final loss (mean over
 * the last epoch), test accuracy.
 *
 *   bench_cnn --batch 100 --epochs 2 --threads 2 [--unit 256] [--channels 32,64] [--data DIR]
 *             [--train-size N] [--replicas R]
 *
 * Besides wall seconds per epoch it reports the process CPU seconds (user +
 * sys) per epoch, which on one thread is what the epoch costs even on a
 * machine shared with other work. --train-size N trains on the first N
 * images ("epoch" then means N images; the JSON line says train_size).
 * --replicas R > 1 runs each step as R data-parallel replicas
 * (kusari/parallel.h), one slice of the batch each; the JSON line's peer is
 * then "kusari-dp".
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

static void die(const char *what) {
  fprintf(stderr, "bench_cnn: %s: %s\n", what, ks_error_last());
  exit(1);
}

static ks_var *cnn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv1"), x));
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv2"), h));
  h = ks_max_pooling_2d(ctx, h, 2, 2, 0, 1);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "fc3"), h));
  return ks_link_forward(ctx, ks_link_child(self, "fc4"), h);
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
         (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* --replicas: one slice of the batch, gathered and trained by its replica */
typedef struct slice_job {
  const ks_dataset *train;
  const int64_t *idx;
  ks_link *model;
} slice_job;

static ks_var *slice_loss(ks_ctx *ctx, int replica, int64_t start, int64_t count, void *user) {
  (void)replica;
  const slice_job *j = user;
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){count, 1, 28, 28});
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
  int unit = 256, batch = 100, epochs = 2, threads = 1, c1 = 32, c2 = 64, replicas = 1;
  long train_size = 0;
  const char *data = NULL;
  static const struct option longopts[] = {
    {"unit", required_argument, 0, 'u'},   {"batch", required_argument, 0, 'b'},
    {"epochs", required_argument, 0, 'e'}, {"threads", required_argument, 0, 't'},
    {"data", required_argument, 0, 'd'},   {"channels", required_argument, 0, 'c'},
    {"train-size", required_argument, 0, 'n'}, {"replicas", required_argument, 0, 'r'},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "u:b:e:t:d:c:r:h", longopts, NULL)) != -1) {
    switch (c) {
      case 'u': unit = atoi(optarg); break;
      case 'b': batch = atoi(optarg); break;
      case 'e': epochs = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      case 'd': data = optarg; break;
      case 'n': train_size = atol(optarg); break;
      case 'r': replicas = atoi(optarg); break;
      case 'c':
        if (sscanf(optarg, "%d,%d", &c1, &c2) != 2) { fprintf(stderr, "bench_cnn: --channels C1,C2\n"); return 2; }
        break;
      case 'h':
        printf("usage: bench_cnn [--batch B] [--epochs E] [--threads T] [--unit U] [--channels C1,C2] [--data DIR]\n"
               "                 [--train-size N] [--replicas R]\n");
        return 0;
      default: return 2;
    }
  }
  if (unit < 1 || batch < 1 || epochs < 1 || threads < 1 || c1 < 1 || c2 < 1 || replicas < 1) {
    fprintf(stderr, "bench_cnn: --unit, --batch, --epochs, --threads, --channels and --replicas must be >= 1\n");
    return 2;
  }
  ks_set_num_threads(threads);

  char dir[4096];
  if (ks_mnist_find_dir(data, dir, sizeof dir) != KS_OK) die("data");
  ks_dataset *train, *test;
  if (ks_mnist_load(dir, 3, &train, &test) != KS_OK) die("loading data");
  if (train_size > 0 && train_size < train->size) {
    ks_dataset *sub;
    if (ks_dataset_subset(train, 0, train_size, &sub) != KS_OK) die("subset");
    ks_dataset_free(train);
    train = sub;
  }

  ks_rng rng;
  ks_rng_seed(&rng, 0);
  ks_conv_link_opts co = {.rng = &rng};
  ks_linear_opts lo = {.rng = &rng};
  ks_link *model = ks_chain_new();
  if (!model || ks_link_add_child(model, "conv1", ks_convolution_2d_link_new(1, c1, 5, 1, 0, &co)) ||
      ks_link_add_child(model, "conv2", ks_convolution_2d_link_new(c1, c2, 5, 1, 0, &co)) ||
      ks_link_add_child(model, "fc3", ks_linear_link_new(c2 * 16, unit, &lo)) ||
      ks_link_add_child(model, "fc4", ks_linear_link_new(unit, 10, &lo)))
    die("model");
  ks_link_set_forward(model, cnn_forward, NULL);
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
    ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){n, 1, 28, 28});
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
      last_loss = loss_sum / (double)loss_n;
      loss_sum = 0;
      loss_n = 0;
      double cn = cpu_s();
      epoch_s[ks_serial_iterator_epoch(it) - 1] = t - t0;
      epoch_cpu[ks_serial_iterator_epoch(it) - 1] = cn - c0;
      fprintf(stderr, "bench_cnn: epoch %lld: %.2f s (cpu %.2f s)\n", (long long)ks_serial_iterator_epoch(it), t - t0, cn - c0);
      t0 = t;
      c0 = cn;
    }
  }

  /* test accuracy in batches of 500, no graph */
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  int64_t correct = 0;
  int64_t *ids = malloc(sizeof *ids * 500);
  for (int64_t s = 0; s < test->size; s += 500) {
    int64_t m = test->size - s < 500 ? test->size - s : 500;
    for (int64_t i = 0; i < m; i++) ids[i] = s + i;
    ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 4, (int64_t[]){m, 1, 28, 28});
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

  double *sorted = malloc(sizeof *sorted * (size_t)epochs);
  memcpy(sorted, epoch_s, sizeof *sorted * (size_t)epochs);
  qsort(sorted, (size_t)epochs, sizeof *sorted, cmp_double);
  double median = epochs % 2 ? sorted[epochs / 2] : 0.5 * (sorted[epochs / 2 - 1] + sorted[epochs / 2]);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"peer\": \"%s\", \"model\": \"cnn\", \"channels\": [%d, %d], \"unit\": %d, \"batch\": %d, "
         "\"threads\": %d, \"replicas\": %d, \"epochs\": %d, \"epoch_seconds\": [",
         replicas > 1 ? "kusari-dp" : "kusari", c1, c2, unit, batch, threads, replicas, epochs);
  for (int e = 0; e < epochs; e++) printf("%s%.4f", e ? ", " : "", epoch_s[e]);
  printf("], \"epoch_cpu_seconds\": [");
  for (int e = 0; e < epochs; e++) printf("%s%.4f", e ? ", " : "", epoch_cpu[e]);
  printf("], \"train_size\": %lld, \"median_epoch_s\": %.4f, \"peak_rss_mb\": %.1f, \"final_loss\": %.6f, "
         "\"test_accuracy\": %.6f, \"blas_coretype\": \"%s\"}\n",
         (long long)train->size, median, (double)ru.ru_maxrss / 1024.0, last_loss, test_acc, ks_blas_corename());

  free(sorted);
  free(epoch_s);
  free(epoch_cpu);
  ks_ctx_free(ctx);
  ks_data_parallel_free(dp);
  ks_serial_iterator_free(it);
  ks_optimizer_free(opt);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  return 0;
}
