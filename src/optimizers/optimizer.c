/*
 * src/optimizers/optimizer.c — SGD, MomentumSGD and Adam over the packed
 * parameter block, plus the WeightDecay and GradientClipping hooks.
 *
 * Every rule is one loop over the whole block (the mirrored data, grad and
 * state blocks of link.h); the padding between parameters is zero in all of
 * them and each rule maps zeros to zeros, so it never needs skipping. The
 * loops use float32 arithmetic in the order of Chainer's update_core_cpu and
 * are written so gcc vectorizes them.
 */
#include "backend/pool.h" /* ks__parallel_for */
#include "kusari/backend.h" /* ks_get_num_threads */
#include "optimizer_impl.h"
#include "kusari/error.h"
#include "comm/comm_impl.h" /* a communicator without linking src/comm */

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(ks_opt_kind k) {
  switch (k) {
    case KS_OPT_SGD: return "SGD";
    case KS_OPT_MOMENTUM_SGD: return "MomentumSGD";
    case KS_OPT_ADAM: return "Adam";
  }
  return "?";
}

static ks_optimizer *opt_alloc(ks_opt_kind kind) {
  ks_optimizer *o = calloc(1, sizeof *o);
  if (!o) { ks_error_set(KS_ENOMEM, "out of memory creating an optimizer"); return NULL; }
  o->kind = kind;
  return o;
}

ks_optimizer *ks_optimizer_sgd_new(double lr) {
  ks_optimizer *o = opt_alloc(KS_OPT_SGD);
  if (o) o->lr = lr;
  return o;
}

ks_optimizer *ks_optimizer_momentum_sgd_new(double lr, double momentum) {
  ks_optimizer *o = opt_alloc(KS_OPT_MOMENTUM_SGD);
  if (o) { o->lr = lr; o->momentum = momentum; }
  return o;
}

ks_optimizer *ks_optimizer_adam_new(const ks_adam_opts *opts) {
  ks_adam_opts a = opts ? *opts : KS_ADAM_OPTS_DEFAULT;
  if (a.eps != 0.0 && (float)a.eps == 0.0f) {
    ks_error_set(KS_EINVAL, "eps of Adam optimizer is too small for float32 (%g)", a.eps);
    return NULL;
  }
  ks_optimizer *o = opt_alloc(KS_OPT_ADAM);
  if (o) o->adam = a;
  return o;
}

static void state_free(ks_optimizer *o) {
  for (int k = 0; k < KS_OPT_MAX_STATES; k++) { free(o->state[k]); o->state[k] = NULL; }
  free(o->param_t);
  o->param_t = NULL;
  o->ready = 0;
  o->n_params = 0;
  o->size = 0;
}

static void overlap_drop(ks_optimizer *opt) {
  if (opt->comm && opt->comm_overlap) ks__comm_overlap_release(opt->comm, opt->comm_overlap);
  opt->comm_overlap = NULL;
}

void ks_optimizer_free(ks_optimizer *opt) {
  if (!opt) return;
  overlap_drop(opt);
  state_free(opt);
  for (int i = 0; i < opt->n_hooks; i++) free(opt->hooks[i].name);
  free(opt->hooks);
  free(opt);
}

int ks_optimizer_num_states(const ks_optimizer *opt) {
  if (!opt) return 0;
  switch (opt->kind) {
    case KS_OPT_SGD: return 0;
    case KS_OPT_MOMENTUM_SGD: return 1;
    case KS_OPT_ADAM: return opt->adam.amsgrad ? 3 : 2;
  }
  return 0;
}

const char *ks_optimizer_state_name(const ks_optimizer *opt, int k) {
  if (!opt || k < 0 || k >= ks_optimizer_num_states(opt)) return NULL;
  if (opt->kind == KS_OPT_MOMENTUM_SGD) return "v";
  static const char *adam[] = {"m", "v", "vhat"};
  return adam[k];
}

int ks_optimizer_setup(ks_optimizer *opt, ks_link *link) {
  if (!opt || !link) return ks_error_set(KS_EINVAL, "ks_optimizer_setup: NULL argument");
  state_free(opt);
  opt->target = link;
  opt->t = 0;
  opt->epoch = 0;
  opt->comm_synced = 0;
  /* pack now when every shape is known; lazy links pack on the first update */
  int n = ks_link_num_params(link);
  for (int i = 0; i < n; i++)
    if (!ks_link_param_is_initialized(ks_link_param_at(link, i, NULL))) return KS_OK;
  return ks_optimizer_prepare(opt);
}

int ks_optimizer_prepare(ks_optimizer *opt) {
  if (!opt) return ks_error_set(KS_EINVAL, "ks_optimizer_prepare: optimizer is NULL");
  if (!opt->target) return ks_error_set(KS_ESTATE, "optimizer has no target: call ks_optimizer_setup first");
  ks_link *l = opt->target;
  if (opt->ready) {
    if (l->pack && l->pack->id == opt->pack_id && ks_link_is_packed(l)) return KS_OK;
    return ks_error_set(KS_ESTATE, "the parameters of the optimizer's target changed after its state "
                        "was created (repacked or new parameters); call ks_optimizer_setup again");
  }
  if (!ks_link_is_packed(l)) {
    int rc = ks_link_pack(l);
    if (rc != KS_OK) return rc;
  }
  ks_pack *pk = l->pack;
  int ns = ks_optimizer_num_states(opt);
  for (int k = 0; k < ns; k++) {
    size_t bytes = ((size_t)pk->size * sizeof(float) + 63) & ~(size_t)63;
    opt->state[k] = aligned_alloc(64, bytes ? bytes : 64);
    if (!opt->state[k]) { state_free(opt); return ks_error_set(KS_ENOMEM, "out of memory for optimizer state"); }
    memset(opt->state[k], 0, bytes ? bytes : 64);
  }
  opt->param_t = calloc((size_t)(pk->n ? pk->n : 1), sizeof *opt->param_t);
  if (!opt->param_t) { state_free(opt); return ks_error_set(KS_ENOMEM, "out of memory for optimizer state"); }
  opt->n_params = pk->n;
  opt->size = pk->size;
  opt->pack_id = pk->id;
  opt->ready = 1;
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* hooks */

static int hook_push(ks_optimizer *opt, const char *name, ks_hook_kind kind, double value,
                     ks_optimizer_hook_fn fn, void *user) {
  if (!opt || !name) return ks_error_set(KS_EINVAL, "add hook: NULL argument");
  for (int i = 0; i < opt->n_hooks; i++)
    if (strcmp(opt->hooks[i].name, name) == 0) return ks_error_set(KS_EINVAL, "hook \"%s\" already exists", name);
  if (opt->n_hooks == opt->cap_hooks) {
    int cap = opt->cap_hooks ? 2 * opt->cap_hooks : 4;
    ks_opt_hook *h = realloc(opt->hooks, (size_t)cap * sizeof *h);
    if (!h) return ks_error_set(KS_ENOMEM, "out of memory adding a hook");
    opt->hooks = h;
    opt->cap_hooks = cap;
  }
  size_t len = strlen(name) + 1;
  char *nm = malloc(len);
  if (!nm) return ks_error_set(KS_ENOMEM, "out of memory adding a hook");
  memcpy(nm, name, len);
  opt->hooks[opt->n_hooks++] = (ks_opt_hook){nm, kind, value, fn, user};
  return KS_OK;
}

int ks_optimizer_add_weight_decay(ks_optimizer *opt, double rate) {
  return hook_push(opt, "WeightDecay", KS_HOOK_WEIGHT_DECAY, rate, NULL, NULL);
}

int ks_optimizer_add_gradient_clipping(ks_optimizer *opt, double threshold) {
  if (!(threshold > 0)) return ks_error_set(KS_EINVAL, "GradientClipping threshold must be > 0, got %g", threshold);
  return hook_push(opt, "GradientClipping", KS_HOOK_GRADIENT_CLIPPING, threshold, NULL, NULL);
}

int ks_optimizer_add_hook(ks_optimizer *opt, const char *name, ks_optimizer_hook_fn fn, void *user) {
  if (!fn) return ks_error_set(KS_EINVAL, "add hook: fn is NULL");
  return hook_push(opt, name, KS_HOOK_CUSTOM, 0.0, fn, user);
}

int ks_optimizer_remove_hook(ks_optimizer *opt, const char *name) {
  if (!opt || !name) return ks_error_set(KS_EINVAL, "remove hook: NULL argument");
  for (int i = 0; i < opt->n_hooks; i++) {
    if (strcmp(opt->hooks[i].name, name) != 0) continue;
    free(opt->hooks[i].name);
    memmove(opt->hooks + i, opt->hooks + i + 1, (size_t)(opt->n_hooks - i - 1) * sizeof *opt->hooks);
    opt->n_hooks--;
    return KS_OK;
  }
  return ks_error_set(KS_ENOTFOUND, "no hook named \"%s\"", name);
}

/* ---------------------------------------------------------------------------- */
/* kernels over n floats */

static void weight_decay(int64_t n, float rate, const float *restrict p, float *restrict g) {
  for (int64_t i = 0; i < n; i++) g[i] += rate * p[i];
}

static double sqnorm(int64_t n, const float *restrict g) {
  /* blocks of float partial sums (vectorizable), accumulated in double */
  double total = 0.0;
  int64_t i = 0;
  for (; i + 1024 <= n; i += 1024) {
    float s[16] = {0};
    for (int64_t j = 0; j < 1024; j += 16)
      for (int k = 0; k < 16; k++) s[k] += g[i + j + k] * g[i + j + k];
    for (int k = 0; k < 16; k++) total += s[k];
  }
  for (; i < n; i++) total += (double)g[i] * g[i];
  return total;
}

static void scale(int64_t n, float a, float *restrict g) {
  for (int64_t i = 0; i < n; i++) g[i] *= a;
}

static void sgd_rule(int64_t n, float lr, float *restrict p, const float *restrict g) {
  for (int64_t i = 0; i < n; i++) p[i] -= lr * g[i];
}

static void momentum_rule(int64_t n, float lr, float mom, float *restrict p, const float *restrict g,
                          float *restrict v) {
  for (int64_t i = 0; i < n; i++) {
    float vi = v[i] * mom;
    vi -= lr * g[i];
    v[i] = vi;
    p[i] += vi;
  }
}

/* Chainer 7's AdamRule.update_core_cpu:
 *   m += (1-beta1)(g-m); v += (1-beta2)(g*g-v); vhat = max(vhat, v) or v
 *   step = alpha_t / (sqrt(vhat) + eps)
 *   p = (1 - eta * weight_decay_rate) * p - eta * (step * m)
 * (the decoupled decay is scaled by the schedule multiplier eta, on the CPU
 * and the GPU alike) */
static void adam_rule(int64_t n, const ks_adam_opts *a, double lr_t, float *restrict p,
                      const float *restrict g, float *restrict m, float *restrict v, float *restrict vhat) {
  const float c1 = (float)(1.0 - a->beta1), c2 = (float)(1.0 - a->beta2);
  const float lr = (float)lr_t, eps = (float)a->eps, neg_eta = (float)-a->eta;
  const float keep = (float)(1.0 - a->eta * a->weight_decay_rate);
  if (!vhat) {
    for (int64_t i = 0; i < n; i++) {
      float gi = g[i];
      float mi = m[i] + c1 * (gi - m[i]);
      float vi = v[i] + c2 * (gi * gi - v[i]);
      m[i] = mi;
      v[i] = vi;
      float step = lr / (sqrtf(vi) + eps);
      p[i] = keep * p[i] + neg_eta * (step * mi);
    }
  } else {
    for (int64_t i = 0; i < n; i++) {
      float gi = g[i];
      float mi = m[i] + c1 * (gi - m[i]);
      float vi = v[i] + c2 * (gi * gi - v[i]);
      float vh = fmaxf(vhat[i], vi);
      m[i] = mi;
      v[i] = vi;
      vhat[i] = vh;
      float step = lr / (sqrtf(vh) + eps);
      p[i] = keep * p[i] + neg_eta * (step * mi);
    }
  }
}

static double adam_lr(const ks_adam_opts *a, int64_t t) {
  double fix1 = 1.0 - pow(a->beta1, (double)t);
  double fix2 = 1.0 - pow(a->beta2, (double)t);
  return a->alpha * sqrt(fix2) / fix1;
}

double ks_optimizer_lr(const ks_optimizer *opt) {
  if (!opt) return 0.0;
  if (opt->kind == KS_OPT_ADAM) return opt->t > 0 ? adam_lr(&opt->adam, opt->t) : 0.0;
  return opt->lr;
}

/* ---------------------------------------------------------------------------- */
/* update */

static void realloc_cleared(ks_pack *pk) {
  for (int i = 0; i < pk->n; i++) {
    ks_param *p = pk->params[i];
    if (p->var.grad_valid) continue;
    memset(p->grad.data, 0, ks_tensor_nbytes(&p->grad));
    p->var.grad_valid = 1;
  }
}

static void rule_range(ks_optimizer *opt, int64_t off, int64_t n, int64_t t, ks_pack *pk) {
  float *p = pk->data + off, *g = pk->grad + off;
  switch (opt->kind) {
    case KS_OPT_SGD: sgd_rule(n, (float)opt->lr, p, g); break;
    case KS_OPT_MOMENTUM_SGD: momentum_rule(n, (float)opt->lr, (float)opt->momentum, p, g, opt->state[0] + off); break;
    case KS_OPT_ADAM:
      adam_rule(n, &opt->adam, adam_lr(&opt->adam, t), p, g, opt->state[0] + off, opt->state[1] + off,
                opt->adam.amsgrad ? opt->state[2] + off : NULL);
      break;
  }
}

/* The rules are element-wise, so how the block is cut cannot change a bit:
 * it is cut into equal pieces, a whole number per thread (at most
 * KS_RULE_CHUNK floats each; ks__block_piece), and run on the library's
 * thread pool with affinity, so each thread updates the same pieces every
 * step and their momentum (or Adam's moments), parameters and, after a
 * data-parallel step, gradients stay in its core's cache. Without affinity
 * the pieces wandered between the two cores: the U=100 MLP's update took
 * 60-80 us on two threads against 20 for an update right after another one
 * (bench/RESULTS.md). With a fixed 32768-float chunk the 89,610 parameters
 * made three pieces, two of them on one of two threads. */
#define KS_RULE_CHUNK ((int64_t)1 << 15)

typedef struct rule_job {
  ks_optimizer *opt;
  ks_pack *pk;
  int64_t t, per;
} rule_job;

static void rule_chunk(void *arg, int64_t c) {
  const rule_job *j = arg;
  int64_t off = c * j->per, n = j->pk->size - off;
  rule_range(j->opt, off, n < j->per ? n : j->per, j->t, j->pk);
}

int ks_create_multi_node_optimizer(ks_optimizer *opt, ks_comm *comm) {
  if (!opt) return ks_error_set(KS_EINVAL, "ks_create_multi_node_optimizer: optimizer is NULL");
  overlap_drop(opt);
  opt->comm = comm;
  opt->comm_synced = 0;
  return KS_OK;
}

/* ChainerMN's _MultiNodeOptimizer.update: parameters new to the optimizer
 * are broadcast from rank 0. When some rank held other values, its
 * gradients were computed elsewhere and the call takes no step (*skip = 1,
 * ChainerMN's rule, which skips always); when every rank already held
 * rank 0's values (the same seed, or the same snapshot: exact resume) the
 * update goes on. Then the gradients become their mean over the ranks. */
static int multi_node_pre_update(ks_optimizer *opt, ks_pack *pk, int *skip) {
  *skip = 0;
  if (opt->comm_overlap && opt->comm_overlap_pack != pk->id) overlap_drop(opt); /* repacked */
  if (!opt->comm_synced || opt->comm_pack_id != pk->id) {
    size_t bytes = (size_t)pk->size * sizeof(float);
    float *mine = malloc(bytes ? bytes : 1);
    if (!mine) return ks_error_set(KS_ENOMEM, "out of memory for the first multi-node update");
    memcpy(mine, pk->data, bytes);
    int rc = ks__comm_bcast_data(opt->comm, opt->target);
    double differ = memcmp(mine, pk->data, bytes) != 0;
    free(mine);
    if (rc == KS_OK) rc = ks__comm_allreduce_f64(opt->comm, &differ, 1);
    if (rc != KS_OK) return rc;
    opt->comm_synced = 1;
    opt->comm_pack_id = pk->id;
    if (differ != 0) {
      *skip = 1;
      return KS_OK;
    }
  }
  /* the buckets that backward started (comm.c's overlap), else one pass */
  int rc = opt->comm_overlap ? ks__comm_overlap_finish(opt->comm, opt->comm_overlap)
                             : ks__comm_allreduce_grad(opt->comm, opt->target);
  if (rc == KS_OK && !opt->comm_overlap) {
    rc = ks__comm_overlap_arm(opt->comm, opt->target, &opt->comm_overlap);
    opt->comm_overlap_pack = pk->id;
  }
  return rc;
}

int ks_optimizer_update(ks_optimizer *opt) {
  int rc = ks_optimizer_prepare(opt);
  if (rc != KS_OK) return rc;
  ks_pack *pk = opt->target->pack;
  if (opt->comm) {
    int skip;
    if ((rc = multi_node_pre_update(opt, pk, &skip)) != KS_OK) return rc;
    if (skip) return KS_OK;
  }
  realloc_cleared(pk);
  for (int h = 0; h < opt->n_hooks; h++) {
    ks_opt_hook *hk = &opt->hooks[h];
    switch (hk->kind) {
      case KS_HOOK_WEIGHT_DECAY: weight_decay(pk->size, (float)hk->value, pk->data, pk->grad); break;
      case KS_HOOK_GRADIENT_CLIPPING: {
        double norm = sqrt(sqnorm(pk->size, pk->grad));
        double rate = hk->value / norm;
        if (rate < 1.0) scale(pk->size, (float)rate, pk->grad);
        break;
      }
      case KS_HOOK_CUSTOM:
        rc = hk->fn(opt, hk->user);
        if (rc != KS_OK) return rc;
        break;
    }
    realloc_cleared(pk);
  }
  opt->t++;
  /* per-parameter t (UpdateRule.t); they only differ after loading a
   * snapshot whose per-parameter counts differ */
  int same = 1;
  for (int i = 0; i < pk->n; i++) {
    opt->param_t[i]++;
    if (opt->param_t[i] != opt->param_t[0]) same = 0;
  }
  if (pk->n == 0) return KS_OK;
  if (same || opt->kind != KS_OPT_ADAM) {
    const int threads = ks_get_num_threads();
    const int64_t per = ks__block_piece(pk->size, threads, KS_RULE_CHUNK);
    rule_job job = {opt, pk, opt->param_t[0], per};
    ks__parallel_for_affine((pk->size + per - 1) / per, threads, rule_chunk, &job);
  } else {
    for (int i = 0; i < pk->n; i++)
      rule_range(opt, pk->offsets[i], pk->params[i]->data.size, opt->param_t[i], pk);
  }
  return KS_OK;
}

void ks_optimizer_new_epoch(ks_optimizer *opt) { if (opt) opt->epoch++; }
int64_t ks_optimizer_t(const ks_optimizer *opt) { return opt ? opt->t : 0; }
int64_t ks_optimizer_epoch(const ks_optimizer *opt) { return opt ? opt->epoch : 0; }
ks_link *ks_optimizer_target(const ks_optimizer *opt) { return opt ? opt->target : NULL; }
const char *ks_optimizer_name(const ks_optimizer *opt) { return opt ? kind_name(opt->kind) : ""; }

float *ks_optimizer_state(ks_optimizer *opt, int k, int param_index) {
  if (!opt || !opt->ready || k < 0 || k >= ks_optimizer_num_states(opt) || param_index < 0 ||
      param_index >= opt->n_params)
    return NULL;
  return opt->state[k] + opt->target->pack->offsets[param_index];
}

int64_t ks_optimizer_param_t(const ks_optimizer *opt, int param_index) {
  if (!opt || !opt->ready || param_index < 0 || param_index >= opt->n_params) return 0;
  return opt->param_t[param_index];
}

/* ---------------------------------------------------------------------------- */
/* hyperparameters */

static double *hyper(ks_optimizer *opt, const char *name) {
  if (opt->kind != KS_OPT_ADAM) {
    if (strcmp(name, "lr") == 0) return &opt->lr;
    if (opt->kind == KS_OPT_MOMENTUM_SGD && strcmp(name, "momentum") == 0) return &opt->momentum;
    return NULL;
  }
  if (strcmp(name, "alpha") == 0) return &opt->adam.alpha;
  if (strcmp(name, "beta1") == 0) return &opt->adam.beta1;
  if (strcmp(name, "beta2") == 0) return &opt->adam.beta2;
  if (strcmp(name, "eps") == 0) return &opt->adam.eps;
  if (strcmp(name, "eta") == 0) return &opt->adam.eta;
  if (strcmp(name, "weight_decay_rate") == 0) return &opt->adam.weight_decay_rate;
  return NULL;
}

int ks_optimizer_set_hyperparam(ks_optimizer *opt, const char *name, double value) {
  if (!opt || !name) return ks_error_set(KS_EINVAL, "set hyperparameter: NULL argument");
  if (opt->kind == KS_OPT_ADAM && strcmp(name, "amsgrad") == 0) {
    if (opt->ready && (value != 0) != (opt->adam.amsgrad != 0))
      return ks_error_set(KS_ESTATE, "amsgrad cannot change after the state exists");
    opt->adam.amsgrad = value != 0;
    return KS_OK;
  }
  double *h = hyper(opt, name);
  if (!h) return ks_error_set(KS_ENOTFOUND, "%s has no hyperparameter '%s'", kind_name(opt->kind), name);
  *h = value;
  return KS_OK;
}

int ks_optimizer_get_hyperparam(const ks_optimizer *opt, const char *name, double *value) {
  if (!opt || !name || !value) return ks_error_set(KS_EINVAL, "get hyperparameter: NULL argument");
  if (opt->kind == KS_OPT_ADAM && strcmp(name, "amsgrad") == 0) { *value = opt->adam.amsgrad; return KS_OK; }
  double *h = hyper((ks_optimizer *)opt, name);
  if (!h) return ks_error_set(KS_ENOTFOUND, "%s has no hyperparameter '%s'", kind_name(opt->kind), name);
  *value = *h;
  return KS_OK;
}
