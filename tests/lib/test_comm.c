/*
 * tests/lib/test_comm.c — kusari/comm.h. One program for every rank count:
 * run plainly it is rank 0 of 1 (lib_comm), and CTest runs it again under
 * `mpirun -np 2` and `-np 3` (lib_comm_mpi2, lib_comm_mpi3) when libkusari
 * has MPI. The communicator is "auto": MPI under mpirun, else single.
 *
 * What is checked, on every rank:
 *   - the communicator's numbers, and its clear error without MPI;
 *   - the collectives against values computed from the rank numbers;
 *   - scatter_index / scatter_dataset: ChainerMN's shard bounds (by hand),
 *     every example in some shard, equal lengths, no duplicates without
 *     force_equal_length;
 *   - bcast_data and allreduce_grad (parameters, persistent values, cleared
 *     gradients) against the known per-rank values;
 *   - equivalence: R ranks x batch b with the multi-node optimizer give the
 *     parameters of one process trained on the same samples with batch R*b
 *     (relative 1e-5), and the ranks' parameters are the same bits;
 *   - the multi-node Evaluator equals a single-process Evaluator of the
 *     whole set.
 */
#include "testutil.h"
#include "test_trainer_util.h"
#include "kusari/comm.h"

#include <stdlib.h>

static ks_comm *g_comm;
static int R, S; /* rank, size */

/* Under ASan: allocations that Open MPI (MPI_Init's tables, hwloc, its
 * dlopen'd components) and fontconfig (PlotReport's fonts) keep until exit
 * are not kusari's leaks; full stacks (fast_unwind_on_malloc=0) let the
 * suppressions see those libraries. No kusari frame is suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\nleak:libpmix.so\n"
         "leak:libevent\nleak:mca_\nleak:libfontconfig\n";
}
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

/* ---- communicator ------------------------------------------------------------------ */

static void test_comm__communicator(void **state) {
  (void)state;
  assert_true(R >= 0 && R < S);
  const char *env = getenv("OMPI_COMM_WORLD_SIZE");
  if (env) assert_int_equal(S, atoi(env));
  /* one node: every rank is on it */
  assert_int_equal(ks_comm_intra_size(g_comm), S);
  assert_int_equal(ks_comm_intra_rank(g_comm), R);
  assert_int_equal(ks_comm_inter_size(g_comm), 1);
  assert_int_equal(ks_comm_inter_rank(g_comm), 0);
  ks_comm *c = NULL;
  TU_OK(ks_comm_create(&c, "single"));
  assert_int_equal(ks_comm_size(c), 1);
  assert_int_equal(ks_comm_rank(c), 0);
  assert_string_equal(ks_comm_name(c), "single");
  ks_comm_free(c);
  assert_int_equal(ks_comm_create(&c, "nccl2"), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "unknown communicator 'nccl2'", "single, mpi, auto");
  assert_null(c);
  if (!ks_comm_mpi_built()) {
    /* a build without MPI: a clear error, never a crash */
    assert_int_equal(ks_comm_create(&c, "mpi"), KS_EUNSUPPORTED);
    tu_assert_error(KS_EUNSUPPORTED, "built without MPI", "-DKUSARI_MPI=ON", "'single'");
    assert_null(c);
  } else {
    /* a second MPI communicator next to the first */
    TU_OK(ks_comm_create(&c, "mpi"));
    assert_int_equal(ks_comm_size(c), S);
    assert_int_equal(ks_comm_rank(c), R);
    ks_comm_free(c);
  }
}

static void test_comm__collectives(void **state) {
  (void)state;
  double v[3] = {R + 1.0, 2.0, -0.5 * R};
  TU_OK(ks_comm_allreduce_f64(g_comm, v, 3));
  assert_true(v[0] == S * (S + 1) / 2.0);
  assert_true(v[1] == 2.0 * S);
  assert_true(v[2] == -0.5 * (S * (S - 1) / 2.0));
  double mine[2] = {(double)R, 10.0 * R};
  double all[2 * 8];
  TU_OK(ks_comm_gather_f64(g_comm, mine, 2, R == 0 ? all : NULL, 0));
  if (R == 0)
    for (int r = 0; r < S; r++) {
      assert_true(all[2 * r] == r);
      assert_true(all[2 * r + 1] == 10.0 * r);
    }
  char buf[32];
  snprintf(buf, sizeof buf, "rank %d", R);
  TU_OK(ks_comm_bcast(g_comm, buf, sizeof buf, S - 1));
  char want[32];
  snprintf(want, sizeof want, "rank %d", S - 1);
  assert_string_equal(buf, want);
  assert_int_equal(ks_comm_bcast(g_comm, buf, 4, S), KS_EINVAL);
  TU_OK(ks_comm_barrier(g_comm));
  /* observations: the mean over ranks, under the same keys */
  ks_reporter *obs = ks_reporter_new();
  TU_OK(ks_reporter_set_prefix(obs, "main/"));
  TU_OK(ks_reporter_report(obs, "loss", (double)R));
  TU_OK(ks_reporter_report(obs, "accuracy", 1.0));
  TU_OK(ks_comm_mean_observation(g_comm, obs));
  double m;
  TU_OK(ks_reporter_get(obs, "main/loss", &m));
  assert_true(fabs(m - (S - 1) / 2.0) < 1e-15);
  TU_OK(ks_reporter_get(obs, "main/accuracy", &m));
  assert_true(m == 1.0);
  assert_int_equal(ks_reporter_size(obs), 2);
  ks_reporter_free(obs);
}

/* ---- scatter_dataset ---------------------------------------------------------------- */

static void test_comm__scatter_index(void **state) {
  (void)state;
  /* ChainerMN's _scatter_index by hand: N = 10 on 3 ranks */
  const int64_t eq[3][2] = {{0, 4}, {3, 7}, {6, 10}}, ne[3][2] = {{0, 4}, {4, 7}, {7, 10}};
  for (int r = 0; r < 3; r++) {
    int64_t b, e;
    ks_scatter_index(10, 3, r, 1, &b, &e);
    assert_int_equal(b, eq[r][0]);
    assert_int_equal(e, eq[r][1]);
    ks_scatter_index(10, 3, r, 0, &b, &e);
    assert_int_equal(b, ne[r][0]);
    assert_int_equal(e, ne[r][1]);
  }
  /* every N and size: inside [0, N), covering it; equal lengths, or no overlap */
  for (int64_t n = 0; n <= 17; n++)
    for (int size = 1; size <= 5; size++) {
      int cover_eq[17] = {0}, cover_ne[17] = {0};
      for (int r = 0; r < size; r++) {
        int64_t b, e;
        ks_scatter_index(n, size, r, 1, &b, &e);
        assert_true(b >= 0 && e <= n);
        assert_int_equal(e - b, (n + size - 1) / size);
        for (int64_t i = b; i < e; i++) cover_eq[i]++;
        ks_scatter_index(n, size, r, 0, &b, &e);
        assert_true(b >= 0 && e <= n && e - b >= n / size && e - b <= n / size + 1);
        for (int64_t i = b; i < e; i++) cover_ne[i]++;
      }
      int dup = 0;
      for (int64_t i = 0; i < n; i++) {
        assert_true(cover_eq[i] >= 1); /* (more than twice only when N < size) */
        dup += cover_eq[i] - 1;
        assert_int_equal(cover_ne[i], 1);
      }
      assert_int_equal(dup, size * ((n + size - 1) / size) - n);
    }
}

/* Rank 0 holds N examples whose label is their index (and whose first
 * feature is index / 2); the other ranks pass NULL. The shards' labels,
 * counted over the ranks, cover every index. */
static void check_scatter(int64_t n, int shuffle, int force_equal) {
  ks_dataset *full = NULL;
  if (R == 0) {
    ks_tensor *x = ks_tensor_new(KS_F32, 2, (int64_t[]){n, 2});
    ks_tensor *t = ks_tensor_new(KS_I32, 1, (int64_t[]){n});
    for (int64_t i = 0; i < n; i++) {
      ks_tensor_f32(x)[2 * i] = (float)i / 2;
      ks_tensor_f32(x)[2 * i + 1] = -1;
      ks_tensor_i32(t)[i] = (int32_t)i;
    }
    TU_OK(ks_dataset_from_tensors(x, t, &full));
  }
  ks_dataset *mine = NULL;
  TU_OK(ks_scatter_dataset(full, g_comm, shuffle, 42, force_equal, &mine));
  int64_t b, e;
  ks_scatter_index(n, S, R, force_equal, &b, &e);
  assert_int_equal(mine->size, e - b);
  assert_int_equal(mine->row_size, 2);
  double *count = calloc((size_t)n + 1, sizeof(double));
  for (int64_t i = 0; i < mine->size; i++) {
    int32_t lab = ks_tensor_i32(mine->labels)[i];
    assert_true(lab >= 0 && lab < n);
    assert_true(ks_tensor_f32(mine->images)[2 * i] == (float)lab / 2); /* rows travel with labels */
    if (!shuffle) assert_int_equal(lab, b + i);
    count[lab] += 1;
  }
  TU_OK(ks_comm_allreduce_f64(g_comm, count, n));
  double total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (count[i] < 1) fail_msg("N=%lld shuffle=%d: example %lld is in no shard", (long long)n, shuffle, (long long)i);
    if (!force_equal && count[i] != 1) fail_msg("example %lld in %g shards", (long long)i, count[i]);
    total += count[i];
  }
  assert_true(total == (force_equal ? (double)S * (double)((n + S - 1) / S) : (double)n));
  free(count);
  ks_dataset_free(mine);
  ks_dataset_free(full);
}

static void test_comm__scatter_dataset(void **state) {
  (void)state;
  for (int64_t n = 1; n <= 11; n += 5) /* 1, 6, 11: divisible by 2 or 3 or neither */
    for (int shuffle = 0; shuffle <= 1; shuffle++)
      for (int fe = 0; fe <= 1; fe++) check_scatter(n, shuffle, fe);
  /* rank 0 without a dataset: every rank fails, none waits */
  ks_dataset *mine = (ks_dataset *)1;
  assert_int_equal(ks_scatter_dataset(NULL, g_comm, 0, 0, 1, &mine), KS_EINVAL);
  assert_null(mine);
  tu_assert_error(KS_EINVAL, "rank 0 has no dataset");
}

/* ---- model ------------------------------------------------------------------------- */

static void test_comm__bcast_data_and_allreduce_grad(void **state) {
  (void)state;
  /* every rank fills its parameters and persistent values with its own
   * values; after bcast_data all hold rank 0's */
  for (int packed = 0; packed <= 1; packed++) {
    ks_link *m = tt_make_model(4, 5, 0, 1);
    ks_ctx *ctx = ks_ctx_new();
    ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){2, TT_D}, (float[2 * TT_D]){0}, 0);
    TU_NONNULL(ks_link_forward(ctx, m, x)); /* initializes the lazy l1 */
    ks_ctx_free(ctx);
    if (packed) TU_OK(ks_link_pack(m));
    int n = ks_link_num_params(m);
    for (int i = 0; i < n; i++) {
      ks_var *p = ks_link_param_at(m, i, NULL);
      for (int64_t j = 0; j < p->data->size; j++) ks_tensor_f32(p->data)[j] = (float)(100 * R + i + 0.01 * j);
    }
    ks_tensor *avg = ks_link_persistent(m, "predictor/bn/avg_mean");
    assert_non_null(avg);
    ks_tensor_f32(avg)[0] = (float)(7 + R);
    *ks_link_persistent_int(m, "predictor/bn/N") = 3 + R;
    TU_OK(ks_comm_bcast_data(g_comm, m));
    for (int i = 0; i < n; i++) {
      ks_var *p = ks_link_param_at(m, i, NULL);
      for (int64_t j = 0; j < p->data->size; j++) assert_true(ks_tensor_f32(p->data)[j] == (float)(i + 0.01 * j));
    }
    assert_true(ks_tensor_f32(avg)[0] == 7.0f);
    assert_int_equal(*ks_link_persistent_int(m, "predictor/bn/N"), 3);
    /* gradients: rank r holds r + 1 (parameter 0 cleared on rank 0: zeros) */
    for (int i = 0; i < n; i++) {
      ks_var *p = ks_link_param_at(m, i, NULL);
      for (int64_t j = 0; j < p->grad->size; j++) ks_tensor_f32(p->grad)[j] = (float)(R + 1);
      p->grad_valid = !(i == 0 && R == 0);
    }
    TU_OK(ks_comm_allreduce_grad(g_comm, m));
    for (int i = 0; i < n; i++) {
      ks_var *p = ks_link_param_at(m, i, NULL);
      double want = i == 0 ? (S * (S + 1) / 2.0 - 1) / S : (S + 1) / 2.0;
      assert_true(p->grad_valid);
      for (int64_t j = 0; j < p->grad->size; j++)
        if (fabs(ks_tensor_f32(p->grad)[j] - want) > 1e-6 * want)
          fail_msg("packed=%d param %d grad %g, want %g", packed, i, ks_tensor_f32(p->grad)[j], want);
    }
    ks_link_free(m);
  }
}

/* ---- equivalence ---------------------------------------------------------------------- */

#define EQ_B 8
#define EQ_STEPS 20

/* One step on examples [first, first + n) of ds. */
static void step(ks_ctx *ctx, ks_link *m, ks_optimizer *opt, const ks_dataset *ds, int64_t first, int64_t n) {
  ks_tensor *x = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, TT_D});
  ks_tensor *t = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){n});
  int64_t idx[64];
  for (int64_t i = 0; i < n; i++) idx[i] = first + i;
  TU_OK(ks_dataset_gather_tensors(ds, idx, n, x, t));
  ks_link_cleargrads(m);
  ks_var *loss = ks_classifier_forward(ctx, m, ks_var_new(ctx, x, 0), ks_var_new(ctx, t, 0), NULL, NULL);
  TU_NONNULL(loss);
  TU_OK(ks_backward(ctx, loss));
  TU_OK(ks_optimizer_update(opt));
  ks_ctx_reset(ctx);
}

/* Gradient accumulation: two backward passes (half a batch each) before
 * one update; with the overlap the second one finds buckets already
 * reduced (comm.c folds them). */
static void step_accum(ks_ctx *ctx, ks_link *m, ks_optimizer *opt, const ks_dataset *ds, const int64_t first[2],
                       int64_t n) {
  ks_link_cleargrads(m);
  for (int h = 0; h < 2; h++) {
    ks_tensor *x = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, TT_D});
    ks_tensor *t = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){n});
    int64_t idx[64];
    for (int64_t i = 0; i < n; i++) idx[i] = first[h] + i;
    TU_OK(ks_dataset_gather_tensors(ds, idx, n, x, t));
    ks_var *loss = ks_classifier_forward(ctx, m, ks_var_new(ctx, x, 0), ks_var_new(ctx, t, 0), NULL, NULL);
    TU_NONNULL(loss);
    TU_OK(ks_backward(ctx, loss));
  }
  TU_OK(ks_optimizer_update(opt));
  ks_ctx_reset(ctx);
}

static ks_optimizer *make_opt(void) {
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.1, 0.9);
  TU_OK(ks_optimizer_add_weight_decay(o, 1e-3));
  TU_OK(ks_optimizer_add_gradient_clipping(o, 0.5)); /* sees the mean gradient */
  return o;
}

/* Max |a - b| against max |b| over n floats. */
static void compare(const char *what, const float *a, const float *b, int64_t n, int bn) {
  double maxabs = 0, maxdiff = 0;
  for (int64_t i = 0; i < n; i++) {
    maxabs = fmax(maxabs, fabs(b[i]));
    maxdiff = fmax(maxdiff, fabs((double)a[i] - b[i]));
  }
  if (!(maxdiff <= 1e-5 * maxabs))
    fail_msg("rank %d of %d%s: %s differ from one process by %g (max |p| %g)", R, S, bn ? " (batch norm)" : "",
             what, maxdiff, maxabs);
  if (S > 1 && R == 0)
    print_message("[ info ] %d ranks vs one process%s, %s: max diff %.3g, max |p| %.3g\n", S,
                  bn == 2 ? " (CNN, multi-node batch norm)" : bn ? " (multi-node batch norm)" : "", what, maxdiff,
                  maxabs);
}

/* A small CNN with 2-d batch normalization: x (N, 8) seen as (N, 2, 2, 2),
 * conv 2->4 (2x2, pad 1: 3x3 maps), BN over 4 channels of 9 positions,
 * relu, linear to the classes. */
static ks_var *cnn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_reshape(ctx, x, 4, (int64_t[]){x ? x->data->shape[0] : 0, 2, 2, 2});
  h = ks_link_forward(ctx, ks_link_child(self, "conv"), h);
  h = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "bn"), h));
  return ks_link_forward(ctx, ks_link_child(self, "fc"), h);
}

/* kind 0: the MLP, 1: the MLP with batch norm, 2: the CNN (batch norm) */
static ks_link *make_model(int kind, uint64_t seed) {
  if (kind < 2) return tt_make_model(16, seed, 0, kind);
  ks_rng rng;
  ks_rng_seed(&rng, seed);
  ks_conv_link_opts co = {.rng = &rng};
  ks_linear_opts lo = {.rng = &rng};
  ks_link *m = ks_chain_new();
  TU_OK(ks_link_add_child(m, "conv", ks_convolution_2d_link_new(2, 4, 2, 1, 1, &co)));
  TU_OK(ks_link_add_child(m, "bn", ks_batch_normalization_link_new(4, NULL)));
  TU_OK(ks_link_add_child(m, "fc", ks_linear_link_new(0, TT_C, &lo)));
  ks_link_set_forward(m, cnn_forward, NULL);
  ks_link *clf = ks_classifier_new(m);
  assert_non_null(clf);
  return clf;
}

static void run_equivalence_ex(int kind, int same_init, int accum);
static void run_equivalence(int kind, int same_init) { run_equivalence_ex(kind, same_init, 0); }

/* accum: each step is two backward passes of half the batch (rank r's
 * halves at r*b/2 of each half of the global batch) before one update */
static void run_equivalence_ex(int kind, int same_init, int accum) {
  const int bn = kind > 0;
  ks_dataset *ds = tt_make_dataset((int64_t)S * EQ_B * (EQ_STEPS + 1), 3);
  /* same_init 0: each rank starts from its own initialization; the first
   * update makes them all rank 0's (seed 10) and takes no step (call 0).
   * same_init 1: they start equal, and call 0 is a step like the others. */
  ks_link *m = make_model(kind, same_init ? 10 : 10 + (uint64_t)R);
  if (bn) {
    int nbn = 0;
    TU_OK(ks_create_mnbn_model(m, g_comm, &nbn));
    assert_int_equal(nbn, 1);
  }
  ks_optimizer *opt = make_opt();
  TU_OK(ks_create_multi_node_optimizer(opt, g_comm));
  TU_OK(ks_optimizer_setup(opt, m));
  ks_ctx *ctx = ks_ctx_new();
  /* call 0 (global batch 0): the broadcast; then EQ_STEPS steps on global
   * batches 1..EQ_STEPS, rank r taking the r-th slice of b examples */
  ks_comm_stats st0;
  ks_comm_get_stats(g_comm, &st0);
  for (int k = 0; k <= EQ_STEPS; k++) {
    const int64_t g = (int64_t)k * S * EQ_B, hb = EQ_B / 2;
    if (accum) step_accum(ctx, m, opt, ds, (const int64_t[2]){g + R * hb, g + S * hb + R * hb}, hb);
    else step(ctx, m, opt, ds, g + (int64_t)R * EQ_B, EQ_B);
  }
  ks_comm_stats st1;
  ks_comm_get_stats(g_comm, &st1);
  /* one process skips nothing: its parameters are rank 0's */
  const int skipped = !same_init && S > 1;
  assert_int_equal(ks_optimizer_t(opt), EQ_STEPS + !skipped);
  /* one process, rank 0's initialization, batch S*b over the same samples */
  ks_link *ref = make_model(kind, 10);
  ks_optimizer *ropt = make_opt();
  TU_OK(ks_optimizer_setup(ropt, ref));
  for (int k = skipped; k <= EQ_STEPS; k++) {
    const int64_t g = (int64_t)k * S * EQ_B, hb = EQ_B / 2;
    if (accum) step_accum(ctx, ref, ropt, ds, (const int64_t[2]){g, g + S * hb}, S * hb);
    else step(ctx, ref, ropt, ds, g, (int64_t)S * EQ_B);
  }
  int64_t n1, n2;
  float *p = tt_params(m, &n1), *q = tt_params(ref, &n2);
  assert_int_equal(n1, n2);
  compare("parameters", p, q, n1, kind);
  if (bn) {
    /* the running statistics too (the broadcast of call 0 gave rank 0's,
     * then each step's global batch statistics) */
    const char *names[2] = {"predictor/bn/avg_mean", "predictor/bn/avg_var"};
    for (int i = 0; i < 2; i++)
      compare(names[i], ks_tensor_f32(ks_link_persistent(m, names[i])), ks_tensor_f32(ks_link_persistent(ref, names[i])),
              ks_link_persistent(ref, names[i])->size, bn);
  }
  /* the ranks hold the same bits */
  float *r0 = malloc(sizeof(float) * (size_t)n1);
  memcpy(r0, p, sizeof(float) * (size_t)n1);
  TU_OK(ks_comm_bcast(g_comm, r0, (int64_t)sizeof(float) * n1, 0));
  double differ = memcmp(r0, p, sizeof(float) * (size_t)n1) != 0;
  TU_OK(ks_comm_allreduce_f64(g_comm, &differ, 1));
  assert_true(differ == 0);
  ks_comm_stats st;
  ks_comm_get_stats(g_comm, &st);
  if (S > 1) assert_true(st.calls > 0 && st.bytes > 0);
  /* with KUSARI_COMM_OVERLAP_BUCKET small, the overlap makes several
   * gradient allreduces per step (one per bucket) after the first update */
  const char *bs = getenv("KUSARI_COMM_OVERLAP_BUCKET");
  const char *ov = getenv("KUSARI_COMM_OVERLAP");
  if (S > 1 && bs && atoi(bs) < 64 && !(ov && !strcmp(ov, "0"))) {
    int64_t per_step = (st1.calls - st0.calls) / (EQ_STEPS + 1);
    if (per_step < 3) fail_msg("rank %d: %lld collective calls per step with buckets of %s floats", R, (long long)per_step, bs);
  }
  free(r0);
  free(p);
  free(q);
  ks_ctx_free(ctx);
  ks_optimizer_free(opt);
  ks_optimizer_free(ropt);
  ks_link_free(m);
  ks_link_free(ref);
  ks_dataset_free(ds);
}

static void test_comm__multi_node_optimizer_equals_one_process(void **state) {
  (void)state;
  run_equivalence(0, 0); /* different starts: call 0 only broadcasts */
  run_equivalence(0, 1); /* the same start: call 0 is a step */
  run_equivalence_ex(0, 1, 1); /* two backward passes per update */
}

static void test_comm__multi_node_batch_norm_equals_one_process(void **state) {
  (void)state;
  /* with different starts call 0's forward would have moved the running
   * statistics by mixed models' statistics, which one process cannot
   * reproduce: the same start */
  run_equivalence(1, 1);
}

static void test_comm__cnn_multi_node_batch_norm_equals_one_process(void **state) {
  (void)state;
  run_equivalence(2, 1);
}

/* ---- evaluator ------------------------------------------------------------------------ */

static void evaluate(ks_link *model, const ks_dataset *ds, ks_comm *comm, double *loss, double *acc) {
  ks_serial_iterator *it;
  TU_OK(ks_serial_iterator_new(&it, ds->size, 10, 0, 0, 0));
  ks_extension *ev = ks_evaluator_new(it, ds, model, NULL);
  TU_NONNULL(ev);
  if (comm) TU_OK(ks_create_multi_node_evaluator(ev, comm));
  ks_reporter *rep = ks_reporter_new();
  TU_OK(ks_evaluator_evaluate(ev, rep, "validation/"));
  TU_OK(ks_reporter_get(rep, "validation/main/loss", loss));
  TU_OK(ks_reporter_get(rep, "validation/main/accuracy", acc));
  ks_reporter_free(rep);
  ks_extension_free(ev);
  ks_serial_iterator_free(it);
}

static void test_comm__multi_node_evaluator(void **state) {
  (void)state;
  ks_dataset *full = tt_make_dataset((int64_t)S * 30, 8); /* 3 batches of 10 per rank */
  ks_link *m = tt_make_model(16, 2, 0, 0);
  ks_dataset *mine = NULL;
  TU_OK(ks_scatter_dataset(R == 0 ? full : NULL, g_comm, 1, 7, 1, &mine));
  double l1, a1, l2, a2;
  evaluate(m, mine, g_comm, &l1, &a1);
  evaluate(m, full, NULL, &l2, &a2); /* one process, the whole set, in order */
  /* the same batches when unshuffled; shuffled shards give other batches of
   * the same examples: the accuracy's mean differs then, so compare
   * unshuffled shards too */
  ks_dataset *plain = NULL;
  TU_OK(ks_scatter_dataset(R == 0 ? full : NULL, g_comm, 0, 0, 1, &plain));
  double l3, a3;
  evaluate(m, plain, g_comm, &l3, &a3);
  if (fabs(l3 - l2) > 1e-6 * fabs(l2) || fabs(a3 - a2) > 1e-12)
    fail_msg("multi-node evaluator %.9g / %.9g, one process %.9g / %.9g", l3, a3, l2, a2);
  assert_true(isfinite(l1) && a1 >= 0 && a1 <= 1);
  ks_dataset_free(plain);
  ks_dataset_free(mine);
  ks_link_free(m);
  ks_dataset_free(full);
}

/* ---- trainer ------------------------------------------------------------------------- */

/* A multi-node trainer: every rank adds the same extensions; LogReport and
 * PlotReport write on rank 0 only, the Evaluator and the snapshot run on
 * every rank, and the ranks end with the same parameters. Each rank has its
 * own output directory here, to see who wrote what. */
static void test_comm__trainer_reports_on_rank_0(void **state) {
  (void)state;
  const char *dir = tu_tmpdir();
  tt_setup s;
  tt_setup_init(&s, (tt_config){.stop = KS_TRIGGER(2, KS_EPOCH), .out = dir, .seed = 1});
  TU_OK(ks_create_multi_node_optimizer(s.opt, g_comm));
  TU_OK(ks_trainer_set_comm(s.tr, g_comm));
  ks_extension *ev = ks_evaluator_new(s.test_it, s.test, s.model, NULL);
  TU_OK(ks_create_multi_node_evaluator(ev, g_comm));
  static const char *const keys[] = {"main/loss", "validation/main/loss"};
  TU_OK(tt_extend(s.tr, ev));
  TU_OK(tt_extend(s.tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL)));
  TU_OK(tt_extend(s.tr, ks_plot_report_new(keys, 2, "epoch", "loss.png", NULL)));
  TU_OK(ks_trainer_extend(s.tr, ks_snapshot_new(NULL, 0), NULL, KS_TRIGGER(1, KS_EPOCH), KS_PRIORITY_DEFAULT));
  TU_OK(ks_trainer_run(s.tr));
  assert_int_equal(tt_file_exists(dir, "log"), R == 0);
  assert_int_equal(tt_file_exists(dir, "loss.png"), R == 0);
  assert_true(tt_file_exists(dir, "snapshot_iter_12")); /* 96 examples, batch 16: 6 a epoch */
  ks_extension *lr = ks_trainer_get_extension(s.tr, "LogReport");
  assert_int_equal(ks_log_report_size(lr), R == 0 ? 2 : 0);
  if (R == 0) {
    double v;
    TU_OK(ks_log_report_get(lr, 1, "validation/main/loss", &v));
    assert_true(isfinite(v));
  }
  int64_t n;
  float *p = tt_params(s.model, &n);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += p[i];
  double all = sum;
  TU_OK(ks_comm_allreduce_f64(g_comm, &all, 1));
  assert_true(all == sum * S); /* the same parameters on every rank */
  assert_int_equal(ks_trainer_set_comm(s.tr, NULL), KS_OK);
  free(p);
  tt_setup_free(&s);
  tu_rmtree(dir);
}

static int setup(void **state) {
  (void)state;
  if (ks_comm_create(&g_comm, "auto") != KS_OK) {
    print_error("cannot create the communicator: %s\n", ks_error_last());
    return -1;
  }
  R = ks_comm_rank(g_comm);
  S = ks_comm_size(g_comm);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  ks_comm_free(g_comm);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_comm__communicator),
    cmocka_unit_test(test_comm__collectives),
    cmocka_unit_test(test_comm__scatter_index),
    cmocka_unit_test(test_comm__scatter_dataset),
    cmocka_unit_test(test_comm__bcast_data_and_allreduce_grad),
    cmocka_unit_test(test_comm__multi_node_optimizer_equals_one_process),
    cmocka_unit_test(test_comm__multi_node_batch_norm_equals_one_process),
    cmocka_unit_test(test_comm__cnn_multi_node_batch_norm_equals_one_process),
    cmocka_unit_test(test_comm__multi_node_evaluator),
    cmocka_unit_test(test_comm__trainer_reports_on_rank_0),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
