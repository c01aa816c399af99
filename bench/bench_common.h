/*
 * bench/bench_common.h — what bench_mlp.c and bench_cnn.c share: clocks, the
 * median, one training step (plain, or as data-parallel replicas with
 * --replicas) and the test accuracy. Header-only: each benchmark is one
 * program built from one source file.
 */
#ifndef KUSARI_BENCH_COMMON_H
#define KUSARI_BENCH_COMMON_H

#include <kusari/kusari.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double bc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time (user + system, all threads): on a shared machine the
 * steady figure for one thread; on two it also counts the pool's spinning. */
static double bc_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bc_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double bc_median(const double *v, int n) {
  double *s = malloc(sizeof *s * (size_t)n);
  if (!s) return 0;
  memcpy(s, v, sizeof *s * (size_t)n);
  qsort(s, (size_t)n, sizeof *s, bc_cmp_double);
  double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  free(s);
  return m;
}

/* The training of a benchmark, as the peers do it: 'model' trained on
 * 'train' with softmax cross entropy and MomentumSGD(lr 0.01, momentum 0.9),
 * shuffled batches (seed 1) built by ks_concat_examples (so x has the
 * dataset's trailing shape). */
typedef struct bc_trainer {
  const char *prog;          /* for messages */
  const ks_dataset *train;
  ks_link *model;
  ks_optimizer *opt;
  ks_serial_iterator *it;
  ks_ctx *ctx;               /* the plain step's */
  ks_data_parallel *dp;      /* --replicas > 1, else NULL */
  const int64_t *idx;        /* the current batch */
} bc_trainer;

static void bc_die(const bc_trainer *t, const char *what) {
  fprintf(stderr, "%s: %s: %s\n", t->prog, what, ks_error_last());
  exit(1);
}

static void bc_trainer_init(bc_trainer *t, const char *prog, const ks_dataset *train,
                            ks_link *model, int64_t batch, int replicas) {
  *t = (bc_trainer){.prog = prog, .train = train, .model = model};
  t->opt = ks_optimizer_momentum_sgd_new(0.01, 0.9);
  if (!t->opt || ks_optimizer_setup(t->opt, model)) bc_die(t, "optimizer");
  if (ks_serial_iterator_new(&t->it, train->size, batch, 1, 1, 1)) bc_die(t, "iterator");
  if (!(t->ctx = ks_ctx_new())) bc_die(t, "ctx");
  if (replicas > 1 && ks_data_parallel_new(&t->dp, model, replicas, 0)) bc_die(t, "replicas");
}

static void bc_trainer_free(bc_trainer *t) {
  ks_data_parallel_free(t->dp);
  ks_ctx_free(t->ctx);
  ks_serial_iterator_free(t->it);
  ks_optimizer_free(t->opt);
}

/* The loss over examples idx[start .. start + count) in ctx. */
static ks_var *bc_slice_loss(ks_ctx *ctx, int replica, int64_t start, int64_t count, void *user) {
  (void)replica;
  const bc_trainer *t = user;
  ks_var *in[KS_UPDATER_MAX_IN];
  int n_in = 0;
  if (ks_concat_examples(ctx, t->train, t->idx + start, count, in, &n_in, NULL) != KS_OK) return NULL;
  return ks_softmax_cross_entropy(ctx, ks_link_forward(ctx, t->model, in[0]), in[1], -1);
}

/* One training step over the batch idx[0..n); returns its loss. */
static double bc_step(bc_trainer *t, const int64_t *idx, int64_t n) {
  t->idx = idx;
  if (t->dp) {
    double loss;
    if (ks_data_parallel_backward(t->dp, n, bc_slice_loss, t, &loss) || ks_optimizer_update(t->opt))
      bc_die(t, "data-parallel step");
    return loss;
  }
  ks_var *loss = bc_slice_loss(t->ctx, 0, 0, n, t);
  if (!loss) bc_die(t, "forward");
  ks_link_cleargrads(t->model);
  if (ks_backward(t->ctx, loss) || ks_optimizer_update(t->opt)) bc_die(t, "step");
  double v = ks_tensor_f32(loss->data)[0];
  ks_ctx_reset(t->ctx);
  return v;
}

/* Trains 'epochs' epochs: epoch_s[e] and epoch_cpu[e] get epoch e's wall
 * and process CPU seconds; after each epoch after_epoch(user, e) runs
 * outside the timing (may be NULL). Returns the mean loss over the last
 * epoch, as the peers report it. */
static double bc_train(bc_trainer *t, int epochs, double *epoch_s, double *epoch_cpu,
                       void (*after_epoch)(void *user, int epoch), void *user) {
  double c0 = bc_cpu(), t0 = bc_now(), last_loss = 0, loss_sum = 0;
  int64_t loss_n = 0;
  while (ks_serial_iterator_epoch(t->it) < epochs) {
    const int64_t *idx;
    int64_t n;
    if (ks_serial_iterator_next(t->it, &idx, &n)) bc_die(t, "next");
    loss_sum += bc_step(t, idx, n);
    loss_n++;
    if (ks_serial_iterator_is_new_epoch(t->it)) {
      const double t1 = bc_now(), c1 = bc_cpu();
      const int e = (int)ks_serial_iterator_epoch(t->it) - 1;
      last_loss = loss_sum / (double)loss_n;
      loss_sum = 0;
      loss_n = 0;
      epoch_s[e] = t1 - t0;
      epoch_cpu[e] = c1 - c0;
      fprintf(stderr, "%s: epoch %d: %.3f s (cpu %.3f s)\n", t->prog, e + 1, t1 - t0, c1 - c0);
      if (after_epoch) after_epoch(user, e);
      t0 = bc_now();
      c0 = bc_cpu();
    }
  }
  return last_loss;
}

/* Test accuracy over 'test' in batches of 'batch', no graph (in the plain
 * step's ctx, which is left in test mode). */
static double bc_test_accuracy(bc_trainer *t, const ks_dataset *test, int64_t batch) {
  ks_ctx_set_train(t->ctx, 0);
  ks_ctx_set_backprop(t->ctx, 0);
  int64_t correct = 0;
  int64_t *ids = malloc(sizeof *ids * (size_t)batch);
  if (!ids) bc_die(t, "test batch");
  for (int64_t s = 0; s < test->size; s += batch) {
    int64_t m = test->size - s < batch ? test->size - s : batch;
    for (int64_t i = 0; i < m; i++) ids[i] = s + i;
    ks_var *in[KS_UPDATER_MAX_IN];
    int n_in = 0;
    if (ks_concat_examples(t->ctx, test, ids, m, in, &n_in, NULL) != KS_OK) bc_die(t, "test batch");
    ks_var *acc = ks_accuracy(t->ctx, ks_link_forward(t->ctx, t->model, in[0]), in[1], -1);
    if (!acc) bc_die(t, "accuracy");
    correct += (int64_t)(ks_tensor_f32(acc->data)[0] * (float)m + 0.5f);
    ks_ctx_reset(t->ctx);
  }
  free(ids);
  return (double)correct / (double)test->size;
}

#endif
