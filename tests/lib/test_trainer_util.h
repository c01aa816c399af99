/*
 * tests/lib/test_trainer_util.h — a small synthetic classification task and
 * a complete Trainer around it, shared by test_trainer.c and
 * test_extensions.c. Header-only (static functions).
 *
 * Data: D = 8 features uniform in [-1, 1), labels = argmax of a fixed random
 * 3 x 8 projection (learnable), generated from a fixed seed. Model:
 * Classifier(Chain{l1: Linear(None, U), l2: Linear(U, 3)}) with
 * relu(l1(x)) (optionally relu(bn(l1(x))) with a BatchNormalization "bn"),
 * optionally dropout(0.25), then l2.
 */
#ifndef KUSARI_TEST_TRAINER_UTIL_H
#define KUSARI_TEST_TRAINER_UTIL_H

#include "testutil.h"
#include "testutil_data.h"
#include "kusari/trainer.h"
#include "kusari/extensions.h"

#define TT_D 8
#define TT_C 3

static inline ks_dataset *tt_make_dataset(int64_t n, uint64_t seed) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  ks_rng prng;
  ks_rng_seed(&prng, 999); /* the same projection for every split */
  double P[TT_C][TT_D];
  for (int c = 0; c < TT_C; c++)
    for (int d = 0; d < TT_D; d++) P[c][d] = ks_rng_normal(&prng);
  ks_tensor *x = ks_tensor_new(KS_F32, 2, (int64_t[]){n, TT_D});
  ks_tensor *t = ks_tensor_new(KS_I32, 1, (int64_t[]){n});
  assert_non_null(x);
  assert_non_null(t);
  for (int64_t i = 0; i < n; i++) {
    float *row = ks_tensor_f32(x) + i * TT_D;
    for (int d = 0; d < TT_D; d++) row[d] = (float)(2 * ks_rng_uniform(&rng) - 1);
    int best = 0;
    double bv = -1e30;
    for (int c = 0; c < TT_C; c++) {
      double s = 0;
      for (int d = 0; d < TT_D; d++) s += P[c][d] * row[d];
      if (s > bv) { bv = s; best = c; }
    }
    ks_tensor_i32(t)[i] = best;
  }
  ks_dataset *ds = NULL;
  TU_OK(ks_dataset_from_tensors(x, t, &ds));
  return ds;
}

static inline ks_var *tt_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  int flags = (int)(intptr_t)ks_link_user(self);
  ks_var *h = ks_link_forward(ctx, ks_link_child(self, "l1"), x);
  if (flags & 2) h = ks_link_forward(ctx, ks_link_child(self, "bn"), h);
  h = ks_relu(ctx, h);
  if (flags & 1) h = ks_dropout(ctx, h, 0.25);
  return ks_link_forward(ctx, ks_link_child(self, "l2"), h);
}

static inline ks_link *tt_make_model(int units, uint64_t seed, int dropout, int bn) {
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  ks_linear_opts lo = {.rng = &rng};
  ks_link *m = ks_chain_new();
  assert_non_null(m);
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(0, units, &lo)));
  TU_OK(ks_link_add_child(m, "l2", ks_linear_link_new(units, TT_C, &lo)));
  if (bn) TU_OK(ks_link_add_child(m, "bn", ks_batch_normalization_link_new(units, NULL)));
  ks_link_set_forward(m, tt_forward, (void *)(intptr_t)((dropout ? 1 : 0) | (bn ? 2 : 0)));
  ks_link *clf = ks_classifier_new(m);
  assert_non_null(clf);
  return clf;
}

typedef struct tt_setup {
  ks_dataset *train, *test;
  ks_link *model;
  ks_optimizer *opt;
  ks_serial_iterator *train_it, *test_it;
  ks_trainer *tr;
} tt_setup;

typedef struct tt_config {
  int units;          /* 0: 16 */
  int64_t n_train;    /* 0: 96 */
  int64_t n_test;     /* 0: 40 */
  int64_t batch;      /* 0: 16 */
  int dropout;
  int bn;             /* BatchNormalization after l1 (persistent values) */
  int adam;           /* else MomentumSGD(0.05, 0.9) */
  uint64_t seed;
  ks_trigger stop;    /* period 0: 3 epochs */
  const char *out;
  int replicas;       /* ks_updater_opts.replicas */
} tt_config;

static inline void tt_setup_init(tt_setup *s, tt_config c) {
  memset(s, 0, sizeof *s);
  if (!c.units) c.units = 16;
  if (!c.n_train) c.n_train = 96;
  if (!c.n_test) c.n_test = 40;
  if (!c.batch) c.batch = 16;
  if (!c.stop.period) c.stop = KS_TRIGGER(3, KS_EPOCH);
  s->train = tt_make_dataset(c.n_train, 11);
  s->test = tt_make_dataset(c.n_test, 12);
  s->model = tt_make_model(c.units, c.seed, c.dropout, c.bn);
  s->opt = c.adam ? ks_optimizer_adam_new(NULL) : ks_optimizer_momentum_sgd_new(0.05, 0.9);
  assert_non_null(s->opt);
  TU_OK(ks_optimizer_setup(s->opt, s->model));
  TU_OK(ks_serial_iterator_new(&s->train_it, s->train->size, c.batch, 1, 1, c.seed + 1));
  TU_OK(ks_serial_iterator_new(&s->test_it, s->test->size, c.batch, 0, 0, 0));
  ks_updater *up = NULL;
  ks_updater_opts uo = {.seed = c.seed + 2, .replicas = c.replicas};
  TU_OK(ks_standard_updater_new(&up, s->train_it, s->train, s->opt, &uo));
  TU_OK(ks_trainer_new(&s->tr, up, c.stop, c.out));
}

static inline void tt_setup_free(tt_setup *s) {
  ks_trainer_free(s->tr);
  ks_serial_iterator_free(s->train_it);
  ks_serial_iterator_free(s->test_it);
  ks_optimizer_free(s->opt);
  ks_link_free(s->model);
  ks_dataset_free(s->train);
  ks_dataset_free(s->test);
  memset(s, 0, sizeof *s);
}

static inline int tt_extend(ks_trainer *tr, ks_extension *e) {
  return ks_trainer_extend(tr, e, NULL, KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT);
}

/* Copies every parameter of 'model' (namedparams order) into one array. */
static inline float *tt_params(ks_link *model, int64_t *n) {
  int64_t total = ks_link_count_params(model);
  float *out = malloc((size_t)total * sizeof *out);
  assert_non_null(out);
  int64_t at = 0;
  for (int i = 0; i < ks_link_num_params(model); i++) {
    ks_var *p = ks_link_param_at(model, i, NULL);
    memcpy(out + at, p->data->data, (size_t)p->data->size * sizeof(float));
    at += p->data->size;
  }
  *n = total;
  return out;
}

static inline int tt_file_exists(const char *dir, const char *name) {
  char p[1024];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return access(p, F_OK) == 0;
}

#endif
