/*
 * tests/lib/test_optimizers.c — SGD, MomentumSGD and Adam over several steps
 * on fixed parameters and gradients, against references computed here in
 * double precision from Chainer's update formulas (chainer/optimizers/
 * {sgd,momentum_sgd,adam}.py, Chainer 7 update_core_cpu), never by the code
 * under test. Also the
 * WeightDecay and GradientClipping hooks, cleared gradients (zero-filled and
 * updated, as Chainer's reallocate_cleared_grads does), lazy links set up
 * before their first forward, hyperparameters, and save/load of optimizer
 * state with Chainer's keys.
 */
#include "testutil.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"

#include <stdlib.h>
#include <unistd.h>

#define NP 2            /* parameters: "c/u" (2,3) and "w" (5,), namedparams: w first */
#define N_ALL 11

static const int64_t sizes[NP] = {5, 6}; /* in namedparams order: "w", "c/u" */
static const char *paths[NP] = {"w", "c/u"};

/* model: root param w (5,), child c with param u (2, 3) */
static ks_link *make_model(void) {
  ks_link *m = ks_chain_new();
  ks_link *c = ks_chain_new();
  assert_non_null(ks_link_add_param(m, "w", 1, (int64_t[]){5}, NULL, NULL));
  assert_non_null(ks_link_add_param(c, "u", 2, (int64_t[]){2, 3}, NULL, NULL));
  TU_OK(ks_link_add_child(m, "c", c));
  for (int i = 0; i < NP; i++) {
    float *d = ks_tensor_f32(ks_link_param(m, paths[i])->data);
    for (int64_t j = 0; j < sizes[i]; j++) d[j] = (float)(0.5 - 0.13 * (double)j + 0.7 * i);
  }
  return m;
}

/* gradient of element j of parameter i at step s (1-based) */
static float grad_at(int i, int64_t j, int s) {
  return (float)(0.3 * sin(1.0 + 0.7 * (double)j + 1.3 * i + 0.9 * s) + 0.05 * s);
}

static void set_grads(ks_link *m, int s) {
  for (int i = 0; i < NP; i++) {
    ks_var *v = ks_link_param(m, paths[i]);
    float *g = ks_tensor_f32(v->grad);
    for (int64_t j = 0; j < sizes[i]; j++) g[j] = grad_at(i, j, s);
    v->grad_valid = 1;
  }
}

/* reference state in double, flat over both params */
typedef struct ref {
  double p[N_ALL], g[N_ALL], a[N_ALL], b[N_ALL], c[N_ALL];
} ref;

static void ref_init(ref *r, ks_link *m) {
  memset(r, 0, sizeof *r);
  int k = 0;
  for (int i = 0; i < NP; i++) {
    const float *d = ks_tensor_f32(ks_link_param(m, paths[i])->data);
    for (int64_t j = 0; j < sizes[i]; j++) r->p[k++] = d[j];
  }
}

static void ref_grads(ref *r, int s) {
  int k = 0;
  for (int i = 0; i < NP; i++)
    for (int64_t j = 0; j < sizes[i]; j++) r->g[k++] = grad_at(i, j, s);
}

static void assert_params(ks_link *m, const ref *r, double rtol, const char *what) {
  int k = 0;
  for (int i = 0; i < NP; i++) {
    const float *d = ks_tensor_f32(ks_link_param(m, paths[i])->data);
    tu_assert_close(d, r->p + k, sizes[i], 1e-7, rtol, what);
    k += (int)sizes[i];
  }
}

/* ---- the rules ---------------------------------------------------------------------- */

static void test_optimizers__sgd(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_sgd_new(0.1);
  TU_OK(ks_optimizer_setup(o, m));
  assert_true(ks_link_is_packed(m)); /* all shapes known: packed at setup */
  ref r;
  ref_init(&r, m);
  for (int s = 1; s <= 5; s++) {
    set_grads(m, s);
    TU_OK(ks_optimizer_update(o));
    ref_grads(&r, s);
    for (int k = 0; k < N_ALL; k++) r.p[k] -= 0.1 * r.g[k];
    assert_params(m, &r, 1e-6, "SGD");
  }
  assert_int_equal(ks_optimizer_t(o), 5);
  assert_string_equal(ks_optimizer_name(o), "SGD");
  ks_optimizer_free(o);
  ks_link_free(m);
}

static void test_optimizers__momentum_sgd(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.05, 0.8);
  TU_OK(ks_optimizer_setup(o, m));
  ref r;
  ref_init(&r, m);
  for (int s = 1; s <= 6; s++) {
    set_grads(m, s);
    TU_OK(ks_optimizer_update(o));
    ref_grads(&r, s);
    for (int k = 0; k < N_ALL; k++) {
      r.a[k] = 0.8 * r.a[k] - 0.05 * r.g[k]; /* v *= momentum; v -= lr * grad */
      r.p[k] += r.a[k];                       /* param += v                  */
    }
    assert_params(m, &r, 1e-5, "MomentumSGD");
  }
  /* state "v" of each parameter */
  assert_int_equal(ks_optimizer_num_states(o), 1);
  assert_string_equal(ks_optimizer_state_name(o, 0), "v");
  tu_assert_close(ks_optimizer_state(o, 0, 0), r.a, 5, 1e-7, 1e-5, "v of w");
  tu_assert_close(ks_optimizer_state(o, 0, 1), r.a + 5, 6, 1e-7, 1e-5, "v of c/u");
  assert_int_equal(ks_optimizer_param_t(o, 1), 6);
  ks_optimizer_free(o);
  ks_link_free(m);
}

static void adam_ref_step(ref *r, const ks_adam_opts *a, int t) {
  double lr = a->alpha * sqrt(1.0 - pow(a->beta2, t)) / (1.0 - pow(a->beta1, t));
  for (int k = 0; k < N_ALL; k++) {
    r->a[k] += (1 - a->beta1) * (r->g[k] - r->a[k]);               /* m */
    r->b[k] += (1 - a->beta2) * (r->g[k] * r->g[k] - r->b[k]);     /* v */
    double vv = r->b[k];
    if (a->amsgrad) { r->c[k] = fmax(r->c[k], r->b[k]); vv = r->c[k]; }
    double step = lr / (sqrt(vv) + a->eps);
    r->p[k] = (1.0 - a->eta * a->weight_decay_rate) * r->p[k] - a->eta * (step * r->a[k]);
  }
}

static void run_adam(const ks_adam_opts *a) {
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_adam_new(a);
  TU_NONNULL(o);
  TU_OK(ks_optimizer_setup(o, m));
  ks_adam_opts eff = a ? *a : KS_ADAM_OPTS_DEFAULT;
  ref r;
  ref_init(&r, m);
  for (int s = 1; s <= 7; s++) {
    set_grads(m, s);
    TU_OK(ks_optimizer_update(o));
    ref_grads(&r, s);
    adam_ref_step(&r, &eff, s);
    assert_params(m, &r, 2e-5, "Adam");
    double want_lr = eff.alpha * sqrt(1.0 - pow(eff.beta2, s)) / (1.0 - pow(eff.beta1, s));
    assert_true(fabs(ks_optimizer_lr(o) - want_lr) <= 1e-12 * want_lr);
  }
  tu_assert_close(ks_optimizer_state(o, 0, 0), r.a, 5, 1e-7, 1e-5, "m of w");
  tu_assert_close(ks_optimizer_state(o, 1, 1), r.b + 5, 6, 1e-9, 1e-5, "v of c/u");
  ks_optimizer_free(o);
  ks_link_free(m);
}

static void test_optimizers__adam(void **state) {
  (void)state;
  run_adam(NULL); /* Chainer defaults */
  ks_adam_opts a = KS_ADAM_OPTS_DEFAULT;
  a.alpha = 0.01;
  a.beta1 = 0.8;
  a.beta2 = 0.99;
  a.eps = 1e-6;
  a.eta = 0.5;
  a.weight_decay_rate = 0.01;
  run_adam(&a);
  a.amsgrad = 1;
  run_adam(&a);
  ks_adam_opts tiny = KS_ADAM_OPTS_DEFAULT;
  tiny.eps = 1e-50; /* rounds to 0 in float32: Chainer raises */
  assert_null(ks_optimizer_adam_new(&tiny));
  tu_assert_error(KS_EINVAL, "eps");
}

/* The case, by hand (and Chainer 7.8.1 prints the same): one
 * parameter p = 1 with no gradient (zero-filled), one step of Adam with
 * weight_decay_rate = 0.1 and eta = 0.5. m = v = 0, so the step is 0 and
 * p = (1 - eta * weight_decay_rate) * 1 = 0.95 (not 0.90: the decoupled
 * decay is scaled by eta). */
static void test_optimizers__adam_decay_scaled_by_eta(void **state) {
  (void)state;
  ks_link *m = ks_chain_new();
  ks_var *p = ks_link_add_param(m, "p", 1, (int64_t[]){1}, NULL, NULL);
  assert_non_null(p);
  ks_tensor_f32(p->data)[0] = 1.0f;
  ks_adam_opts a = KS_ADAM_OPTS_DEFAULT;
  a.weight_decay_rate = 0.1;
  a.eta = 0.5;
  ks_optimizer *o = ks_optimizer_adam_new(&a);
  TU_OK(ks_optimizer_setup(o, m));
  ks_link_cleargrads(m);
  TU_OK(ks_optimizer_update(o));
  assert_float_equal(ks_tensor_f32(p->data)[0], 0.95, 1e-7);
  ks_optimizer_free(o);
  ks_link_free(m);
}

/* ---- cleared grads, hooks --------------------------------------------------------- */

static void test_optimizers__cleared_grad_is_zero(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.1, 0.9);
  TU_OK(ks_optimizer_setup(o, m));
  ref r;
  ref_init(&r, m);
  /* step 1: both grads; step 2: w's grad cleared (None) -> zeros, and
   * momentum still moves w */
  for (int s = 1; s <= 2; s++) {
    set_grads(m, s);
    if (s == 2) ks_var_cleargrad(ks_link_param(m, "w"));
    TU_OK(ks_optimizer_update(o));
    ref_grads(&r, s);
    if (s == 2) for (int k = 0; k < 5; k++) r.g[k] = 0.0;
    for (int k = 0; k < N_ALL; k++) { r.a[k] = 0.9 * r.a[k] - 0.1 * r.g[k]; r.p[k] += r.a[k]; }
    assert_params(m, &r, 1e-5, "MomentumSGD with a cleared grad");
  }
  assert_true(ks_link_param(m, "w")->grad_valid);
  const float *g = ks_tensor_f32(ks_link_param(m, "w")->grad);
  for (int k = 0; k < 5; k++) assert_true(g[k] == 0.0f);
  ks_optimizer_free(o);
  ks_link_free(m);
}

static void test_optimizers__weight_decay(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.1, 0.9);
  TU_OK(ks_optimizer_add_weight_decay(o, 0.01));
  TU_OK(ks_optimizer_setup(o, m));
  ref r;
  ref_init(&r, m);
  for (int s = 1; s <= 4; s++) {
    set_grads(m, s);
    TU_OK(ks_optimizer_update(o));
    ref_grads(&r, s);
    for (int k = 0; k < N_ALL; k++) {
      r.g[k] += 0.01 * r.p[k]; /* WeightDecay: grad += rate * param */
      r.a[k] = 0.9 * r.a[k] - 0.1 * r.g[k];
      r.p[k] += r.a[k];
    }
    assert_params(m, &r, 1e-5, "MomentumSGD + WeightDecay");
  }
  /* the hook modified the grads in place, as Chainer's does */
  const float *g = ks_tensor_f32(ks_link_param(m, "w")->grad);
  double want = grad_at(0, 2, 4) + 0.01 * (r.p[2] - r.a[2]);
  assert_true(fabs(g[2] - want) < 1e-6);
  TU_OK(ks_optimizer_remove_hook(o, "WeightDecay"));
  assert_int_equal(ks_optimizer_remove_hook(o, "WeightDecay"), KS_ENOTFOUND);
  ks_optimizer_free(o);
  ks_link_free(m);
}

static void test_optimizers__gradient_clipping(void **state) {
  (void)state;
  for (int variant = 0; variant < 3; variant++) {
    /* 0: threshold below the norm (clips); 1: above (no-op);
     * 2: WeightDecay then clipping (order of registration) */
    ks_link *m = make_model();
    ks_optimizer *o = ks_optimizer_sgd_new(0.1);
    double thr = variant == 1 ? 100.0 : 0.3;
    if (variant == 2) TU_OK(ks_optimizer_add_weight_decay(o, 0.5));
    TU_OK(ks_optimizer_add_gradient_clipping(o, thr));
    TU_OK(ks_optimizer_setup(o, m));
    ref r;
    ref_init(&r, m);
    for (int s = 1; s <= 3; s++) {
      set_grads(m, s);
      TU_OK(ks_optimizer_update(o));
      ref_grads(&r, s);
      if (variant == 2) for (int k = 0; k < N_ALL; k++) r.g[k] += 0.5 * r.p[k];
      double sq = 0;
      for (int k = 0; k < N_ALL; k++) sq += r.g[k] * r.g[k];
      double rate = thr / sqrt(sq);
      if (variant != 1) assert_true(rate < 1.0); /* the test really clips */
      if (rate < 1.0) for (int k = 0; k < N_ALL; k++) r.g[k] *= rate;
      for (int k = 0; k < N_ALL; k++) r.p[k] -= 0.1 * r.g[k];
      assert_params(m, &r, 1e-5, "SGD + GradientClipping");
    }
    ks_optimizer_free(o);
    ks_link_free(m);
  }
  ks_optimizer *o = ks_optimizer_sgd_new(0.1);
  assert_int_equal(ks_optimizer_add_gradient_clipping(o, 0.0), KS_EINVAL);
  TU_OK(ks_optimizer_add_gradient_clipping(o, 1.0));
  assert_int_equal(ks_optimizer_add_gradient_clipping(o, 2.0), KS_EINVAL); /* duplicate name */
  ks_optimizer_free(o);
}

static int count_hook(ks_optimizer *opt, void *user) {
  (void)opt;
  (*(int *)user)++;
  return KS_OK;
}

static int failing_hook(ks_optimizer *opt, void *user) {
  (void)opt;
  (void)user;
  return ks_error_set(KS_ESTATE, "hook says no");
}

static void test_optimizers__custom_hooks_and_hyperparams(void **state) {
  (void)state;
  ks_link *m = make_model();
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.01, 0.9);
  int calls = 0;
  TU_OK(ks_optimizer_add_hook(o, "count", count_hook, &calls));
  TU_OK(ks_optimizer_setup(o, m));
  set_grads(m, 1);
  TU_OK(ks_optimizer_update(o));
  TU_OK(ks_optimizer_update(o));
  assert_int_equal(calls, 2);
  TU_OK(ks_optimizer_add_hook(o, "fail", failing_hook, NULL));
  assert_int_equal(ks_optimizer_update(o), KS_ESTATE);
  assert_int_equal(ks_optimizer_t(o), 2); /* aborted before t += 1 */
  double v;
  TU_OK(ks_optimizer_set_hyperparam(o, "lr", 0.5));
  TU_OK(ks_optimizer_get_hyperparam(o, "lr", &v));
  assert_true(v == 0.5);
  assert_true(ks_optimizer_lr(o) == 0.5);
  assert_int_equal(ks_optimizer_set_hyperparam(o, "alpha", 1.0), KS_ENOTFOUND);
  ks_optimizer_new_epoch(o);
  assert_int_equal(ks_optimizer_epoch(o), 1);
  ks_optimizer_free(o);
  ks_link_free(m);
  ks_optimizer_free(NULL);
  /* update without setup */
  ks_optimizer *o2 = ks_optimizer_sgd_new(0.1);
  assert_int_equal(ks_optimizer_update(o2), KS_ESTATE);
  ks_optimizer_free(o2);
}

/* ---- lazy links: setup before the first forward ---------------------------------- */

static void test_optimizers__lazy_setup(void **state) {
  (void)state;
  ks_link *m = ks_chain_new();
  ks_linear_opts lo = {0};
  lo.seed = 5;
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(0, 3, &lo)));
  ks_optimizer *o = ks_optimizer_momentum_sgd_new(0.1, 0.9);
  TU_OK(ks_optimizer_setup(o, m)); /* cannot pack yet */
  assert_false(ks_link_is_packed(m));
  assert_int_equal(ks_optimizer_update(o), KS_ESTATE); /* l1/W still unknown */
  tu_assert_error(KS_ESTATE, "l1/W");
  ks_ctx *ctx = ks_ctx_new();
  ks_rng rng;
  ks_rng_seed(&rng, 1);
  ks_tensor *xt = tu_uniform(&rng, 2, (int64_t[]){4, 2}, -1, 1);
  ks_var *loss = ks_sum(ctx, ks_link_forward(ctx, ks_link_child(m, "l1"), ks_var_new(ctx, xt, 0)), KS_AXIS_ALL);
  TU_OK(ks_backward(ctx, loss));
  ks_var *b = ks_link_param(m, "l1/b");
  float b0 = ks_tensor_f32(b->data)[0], g0 = ks_tensor_f32(b->grad)[0];
  assert_true(g0 == 4.0f); /* d sum / d b = batch size */
  TU_OK(ks_optimizer_update(o));
  assert_true(ks_link_is_packed(m));
  assert_true(fabsf(ks_tensor_f32(b->data)[0] - (b0 - 0.1f * g0)) < 1e-6f);
  /* repacking after the state exists is detected */
  TU_OK(ks_link_pack(m));
  assert_int_equal(ks_optimizer_update(o), KS_ESTATE);
  ks_ctx_free(ctx);
  ks_tensor_free(xt);
  ks_optimizer_free(o);
  ks_link_free(m);
}

/* ---- serialization ---------------------------------------------------------------- */

static void save_load_continue(ks_optimizer *(*make)(void), const char **state_names, int n_states) {
  char dir[512];
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kusari-opt-XXXXXX", base && *base ? base : "/tmp");
  assert_non_null(mkdtemp(dir));
  char path[600], mpath[600];
  snprintf(path, sizeof path, "%s/opt.npz", dir);
  snprintf(mpath, sizeof mpath, "%s/model.npz", dir);

  ks_link *m = make_model();
  ks_optimizer *o = make();
  TU_OK(ks_optimizer_setup(o, m));
  for (int s = 1; s <= 3; s++) { set_grads(m, s); TU_OK(ks_optimizer_update(o)); }
  ks_optimizer_new_epoch(o);
  TU_OK(ks_save_npz_optimizer(path, o));
  TU_OK(ks_save_npz(mpath, m));

  /* Chainer's keys */
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, path));
  assert_int_equal(ks_npz_reader_num_keys(r), 2 + NP * (1 + n_states));
  ks_npz_info in;
  int64_t t = 0;
  TU_OK(ks_npz_reader_info(r, "t", &in));
  assert_int_equal(in.dtype, KS_NPZ_I8);
  assert_int_equal(in.ndim, 0);
  TU_OK(ks_npz_reader_read(r, "t", KS_NPZ_I8, &t, 1));
  assert_int_equal(t, 3);
  TU_OK(ks_npz_reader_read(r, "epoch", KS_NPZ_I8, &t, 1));
  assert_int_equal(t, 1);
  TU_OK(ks_npz_reader_read(r, "c/u/t", KS_NPZ_I8, &t, 1));
  assert_int_equal(t, 3);
  for (int k = 0; k < n_states; k++) {
    char key[64];
    snprintf(key, sizeof key, "c/u/%s", state_names[k]);
    TU_OK(ks_npz_reader_info(r, key, &in));
    assert_int_equal(in.ndim, 2);
    assert_int_equal(in.shape[0], 2);
    assert_int_equal(in.shape[1], 3);
  }
  ks_npz_reader_close(r);

  /* a fresh model + optimizer loaded from the files continues identically */
  ks_link *m2 = make_model();
  ks_optimizer *o2 = make();
  TU_OK(ks_optimizer_setup(o2, m2));
  TU_OK(ks_load_npz(mpath, m2));
  TU_OK(ks_load_npz_optimizer(path, o2));
  assert_int_equal(ks_optimizer_t(o2), 3);
  assert_int_equal(ks_optimizer_epoch(o2), 1);
  for (int s = 4; s <= 5; s++) {
    set_grads(m, s);
    set_grads(m2, s);
    TU_OK(ks_optimizer_update(o));
    TU_OK(ks_optimizer_update(o2));
  }
  for (int i = 0; i < NP; i++)
    assert_memory_equal(ks_link_param(m, paths[i])->data->data, ks_link_param(m2, paths[i])->data->data,
                        (size_t)sizes[i] * sizeof(float));

  /* a state of the wrong shape fails by name and changes nothing */
  if (n_states > 0) {
    ks_link *m3 = ks_chain_new();
    ks_link *c3 = ks_chain_new();
    assert_non_null(ks_link_add_param(m3, "w", 1, (int64_t[]){5}, NULL, NULL));
    assert_non_null(ks_link_add_param(c3, "u", 2, (int64_t[]){3, 2}, NULL, NULL));
    TU_OK(ks_link_add_child(m3, "c", c3));
    ks_optimizer *o3 = make();
    TU_OK(ks_optimizer_setup(o3, m3));
    char key[64];
    snprintf(key, sizeof key, "c/u/%s", state_names[0]);
    assert_int_equal(ks_load_npz_optimizer(path, o3), KS_ESHAPE);
    tu_assert_error(KS_ESHAPE, key, "(2, 3)", "(3, 2)");
    assert_int_equal(ks_optimizer_t(o3), 0);
    for (int j = 0; j < 5; j++) assert_true(ks_optimizer_state(o3, 0, 0)[j] == 0.0f);
    ks_optimizer_free(o3);
    ks_link_free(m3);
  }
  ks_optimizer_free(o);
  ks_optimizer_free(o2);
  ks_link_free(m);
  ks_link_free(m2);
  unlink(path);
  unlink(mpath);
  rmdir(dir);
}

static ks_optimizer *mk_sgd(void) { return ks_optimizer_sgd_new(0.1); }
static ks_optimizer *mk_momentum(void) { return ks_optimizer_momentum_sgd_new(0.1, 0.9); }
static ks_optimizer *mk_adam(void) { return ks_optimizer_adam_new(NULL); }

static void test_optimizers__serialize(void **state) {
  (void)state;
  save_load_continue(mk_sgd, NULL, 0);
  save_load_continue(mk_momentum, (const char *[]){"v"}, 1);
  save_load_continue(mk_adam, (const char *[]){"m", "v"}, 2);
}

/* ---- end to end: a small MLP learns a separable problem ---------------------------- */

static void test_optimizers__mlp_trains(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 2024);
  enum { N = 96, D = 6, C = 3 };
  float xs[N * D];
  int32_t ts[N];
  for (int i = 0; i < N; i++) {
    ts[i] = i % C;
    for (int d = 0; d < D; d++)
      xs[i * D + d] = (float)((d % C == ts[i] ? 1.5 : 0.0) + 0.5 * ks_rng_normal(&rng));
  }
  ks_link *m = ks_sequential_new();
  ks_linear_opts o1 = {0}, o2 = {0};
  o1.rng = &rng;
  o2.rng = &rng;
  TU_OK(ks_sequential_append(m, ks_linear_link_new(0, 16, &o1)));
  TU_OK(ks_sequential_append_fn(m, ks_relu));
  TU_OK(ks_sequential_append(m, ks_linear_link_new(0, C, &o2)));
  ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.05, 0.9);
  TU_OK(ks_optimizer_setup(opt, m));
  ks_ctx *ctx = ks_ctx_new();
  double first = 0, last = 0, acc = 0;
  for (int it = 0; it < 150; it++) {
    ks_link_cleargrads(m);
    ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){N, D}, xs, 0);
    ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){N}, ts, 0);
    ks_var *y = ks_link_forward(ctx, m, x);
    ks_var *loss = ks_softmax_cross_entropy(ctx, y, t, -1);
    TU_NONNULL(loss);
    TU_OK(ks_backward(ctx, loss));
    TU_OK(ks_optimizer_update(opt));
    last = ks_tensor_f32(loss->data)[0];
    if (it == 0) first = last;
    acc = ks_tensor_f32(ks_accuracy(ctx, y, t, -1)->data)[0];
    ks_ctx_reset(ctx);
  }
  assert_true(ks_link_is_packed(m));
  assert_true(last < 0.5 * first);
  assert_true(acc > 0.9);
  ks_ctx_free(ctx);
  ks_optimizer_free(opt);
  ks_link_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_optimizers__sgd),
    cmocka_unit_test(test_optimizers__momentum_sgd),
    cmocka_unit_test(test_optimizers__adam),
    cmocka_unit_test(test_optimizers__adam_decay_scaled_by_eta),
    cmocka_unit_test(test_optimizers__cleared_grad_is_zero),
    cmocka_unit_test(test_optimizers__weight_decay),
    cmocka_unit_test(test_optimizers__gradient_clipping),
    cmocka_unit_test(test_optimizers__custom_hooks_and_hyperparams),
    cmocka_unit_test(test_optimizers__lazy_setup),
    cmocka_unit_test(test_optimizers__serialize),
    cmocka_unit_test(test_optimizers__mlp_trains),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
