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

#include "bench_common.h"

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
  bc_trainer tr;
  bc_trainer_init(&tr, "bench_cnn", train, model, batch, replicas);
  double *epoch_s = calloc((size_t)epochs, sizeof *epoch_s);
  double *epoch_cpu = calloc((size_t)epochs, sizeof *epoch_cpu);
  double last_loss = bc_train(&tr, epochs, epoch_s, epoch_cpu, NULL, NULL);

  /* test accuracy in batches of 500, no graph */
  double test_acc = bc_test_accuracy(&tr, test, 500);
  double median = bc_median(epoch_s, epochs);

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

  free(epoch_s);
  free(epoch_cpu);
  bc_trainer_free(&tr);
  ks_link_free(model);
  ks_dataset_free(train);
  ks_dataset_free(test);
  return 0;
}
