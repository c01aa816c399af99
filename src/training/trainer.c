/*
 * src/training/trainer.c — StandardUpdater, the extension handle, Trainer
 * (chainer.training.Trainer.run) and trainer snapshots (save / resume).
 */
#include "training_impl.h"
#include "comm/comm_impl.h" /* ks__comm_rank: reporting on rank 0 */
#include "kusari/error.h"
#include "kusari/functions.h"
#include "kusari/backend.h"   /* ks_get_num_threads */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------- */
/* converter and loss function */

int ks_concat_examples(ks_ctx *ctx, const ks_dataset *ds, const int64_t *idx, int64_t n,
                       ks_var **in, int *n_in, void *user) {
  (void)user;
  if (!ctx || !ds || !idx || !in || !n_in) return ks_error_set(KS_EINVAL, "ks_concat_examples: NULL argument");
  int64_t shape[KS_MAX_DIMS];
  int nd = ds->images->ndim;
  shape[0] = n;
  for (int d = 1; d < nd; d++) shape[d] = ds->images->shape[d];
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, nd, shape);
  ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){n});
  if (!xt || !tt) return ks_error_last_code();
  int rc = ks_dataset_gather(ds, idx, n, ks_tensor_f32(xt), ks_tensor_i32(tt));
  if (rc != KS_OK) return rc;
  in[0] = ks_var_new(ctx, xt, 0);
  in[1] = ks_var_new(ctx, tt, 0);
  if (!in[0] || !in[1]) return ks_error_last_code();
  *n_in = 2;
  return KS_OK;
}

ks_var *ks_classifier_lossfun(ks_ctx *ctx, ks_link *model, ks_var *const *in, int n_in,
                              ks_reporter *rep, void *user) {
  (void)user;
  if (n_in < 2) {
    ks_error_set(KS_EINVAL, "ks_classifier_lossfun: needs (x, t), got %d inputs", n_in);
    return NULL;
  }
  ks_var *acc = NULL;
  ks_var *loss = ks_classifier_forward(ctx, model, in[0], in[1], NULL, &acc);
  if (!loss) return NULL;
  if (rep && (ks_reporter_report_var(rep, "loss", loss) != KS_OK ||
              ks_reporter_report_var(rep, "accuracy", acc) != KS_OK))
    return NULL;
  return loss;
}

/* ---------------------------------------------------------------------------- */
/* StandardUpdater */

int ks_standard_updater_new(ks_updater **out, ks_serial_iterator *it, const ks_dataset *ds,
                            ks_optimizer *opt, const ks_updater_opts *opts) {
  if (!out) return ks_error_set(KS_EINVAL, "ks_standard_updater_new: out is NULL");
  *out = NULL;
  if (!it || !ds || !opt) return ks_error_set(KS_EINVAL, "ks_standard_updater_new: NULL iterator, dataset or optimizer");
  if (!ks_optimizer_target(opt))
    return ks_error_set(KS_EINVAL, "ks_standard_updater_new: the optimizer has no target (call ks_optimizer_setup)");
  if (ks_serial_iterator_size(it) != ds->size)
    return ks_error_set(KS_EINVAL, "ks_standard_updater_new: iterator over %lld examples, dataset has %lld",
                        (long long)ks_serial_iterator_size(it), (long long)ds->size);
  /* Settles the CPU thread setup now (libkusari switches OpenBLAS to one
   * thread on first use): a product run before that would take OpenBLAS's
   * own threads and other bits, so a resumed run, whose first products come
   * at another point of training, would drift from the straight one. */
  (void)ks_get_num_threads();
  ks_updater *up = calloc(1, sizeof *up);
  if (!up) return ks_error_set(KS_ENOMEM, "out of memory");
  ks_updater_opts o = opts ? *opts : (ks_updater_opts){0};
  up->it = it;
  up->ds = ds;
  up->opt = opt;
  up->lossfun = o.lossfun ? o.lossfun : ks_classifier_lossfun;
  up->lossfun_user = o.lossfun_user;
  up->converter = o.converter ? o.converter : ks_concat_examples;
  up->converter_user = o.converter_user;
  if (o.ctx) {
    up->ctx = o.ctx;
  } else {
    up->ctx = ks_ctx_new();
    if (!up->ctx) { free(up); return ks_error_last_code(); }
    ks_ctx_seed(up->ctx, o.seed);
    up->owns_ctx = 1;
  }
  if (o.replicas < 0) {
    ks_updater_free(up);
    return ks_error_set(KS_EINVAL, "ks_standard_updater_new: replicas must be >= 0, got %d", o.replicas);
  }
  if (o.replicas > 1) {
    int rc = ks_data_parallel_new(&up->dp, ks_optimizer_target(opt), o.replicas, o.seed);
    if (rc == KS_OK && !(up->dp_reps = calloc((size_t)o.replicas, sizeof *up->dp_reps)))
      rc = ks_error_set(KS_ENOMEM, "out of memory");
    for (int r = 0; rc == KS_OK && r < o.replicas; r++) {
      if (!(up->dp_reps[r] = ks_reporter_new())) rc = ks_error_last_code();
      else rc = ks_reporter_set_prefix(up->dp_reps[r], "main/");
    }
    if (rc != KS_OK) {
      ks_updater_free(up);
      return rc;
    }
  }
  *out = up;
  return KS_OK;
}

void ks_updater_free(ks_updater *up) {
  if (!up) return;
  if (up->owns_ctx) ks_ctx_free(up->ctx);
  if (up->dp_reps)
    for (int r = 0; r < ks_data_parallel_replicas(up->dp); r++) ks_reporter_free(up->dp_reps[r]);
  free(up->dp_reps);
  ks_data_parallel_free(up->dp);
  free(up);
}

/* ---- data-parallel iterations ------------------------------------------------ */

typedef struct dp_iter {
  ks_updater *up;
  const int64_t *idx;
  int report;
} dp_iter;

/* Replica r's slice: the converter and the loss function, on its thread. */
static ks_var *dp_slice(ks_ctx *ctx, int replica, int64_t start, int64_t count, void *user) {
  const dp_iter *it = user;
  ks_updater *up = it->up;
  ks_reporter *rep = it->report ? up->dp_reps[replica] : NULL;
  if (rep) ks_reporter_clear(rep);
  ks_var *in[KS_UPDATER_MAX_IN] = {0};
  int n_in = 0;
  if (up->converter(ctx, up->ds, it->idx + start, count, in, &n_in, up->converter_user) != KS_OK)
    return NULL;
  ks_var *loss = up->lossfun(ctx, ks_optimizer_target(up->opt), in, n_in, rep, up->lossfun_user);
  if (!loss && !ks_error_last_code()) ks_error_set(KS_EINVAL, "loss function returned NULL");
  return loss;
}

/* Every key some replica reported goes to 'rep' (whose prefix is cleared:
 * the keys are whole), as the mean over the replicas that reported it,
 * weighted by their slice sizes. */
static int dp_merge_reports(ks_updater *up, int64_t n, ks_reporter *rep) {
  const int R = ks_data_parallel_replicas(up->dp);
  for (int r = 0; r < R; r++) {
    for (int i = 0; i < ks_reporter_size(up->dp_reps[r]); i++) {
      const char *key = ks_reporter_key(up->dp_reps[r], i);
      int seen = 0;
      double v;
      for (int q = 0; q < r && !seen; q++) {
        int64_t s, c;
        ks_data_parallel_slice(up->dp, n, q, &s, &c);
        seen = c && ks_reporter_get(up->dp_reps[q], key, &v) == KS_OK;
      }
      if (seen) continue;
      double sum = 0, wsum = 0;
      for (int q = r; q < R; q++) {
        int64_t s, c;
        ks_data_parallel_slice(up->dp, n, q, &s, &c);
        if (c && ks_reporter_get(up->dp_reps[q], key, &v) == KS_OK) {
          sum += (double)c * v;
          wsum += (double)c;
        }
      }
      int rc = ks_reporter_report(rep, key, sum / wsum);
      if (rc != KS_OK) return rc;
    }
  }
  return KS_OK;
}

static int dp_update(ks_updater *up, const int64_t *idx, int64_t n, ks_reporter *rep) {
  dp_iter it = {up, idx, rep != NULL};
  const int R = ks_data_parallel_replicas(up->dp);
  for (int r = 0; r < R; r++) ks_reporter_clear(up->dp_reps[r]);
  int rc = ks_data_parallel_backward(up->dp, n, dp_slice, &it, NULL);
  if (rc == KS_OK && rep && (rc = ks_reporter_set_prefix(rep, NULL)) == KS_OK)
    rc = dp_merge_reports(up, n, rep);
  if (rc == KS_OK) rc = ks_optimizer_update(up->opt);
  return rc;
}

int ks_updater_update(ks_updater *up, ks_reporter *rep) {
  if (!up) return ks_error_set(KS_EINVAL, "ks_updater_update: updater is NULL");
  const int64_t *idx;
  int64_t n;
  int rc = ks_serial_iterator_next(up->it, &idx, &n);
  if (rc == KS_ITER_END)
    return ks_error_set(KS_ESTATE, "the training iterator is exhausted (create it with repeat = 1)");
  if (rc != KS_OK) return rc;
  ks_var *in[KS_UPDATER_MAX_IN] = {0};
  int n_in = 0;
  char *old_prefix = NULL;
  if (rep) {
    if (*ks_reporter_prefix(rep) && !(old_prefix = ks__strcat3(ks_reporter_prefix(rep), NULL, NULL)))
      return ks_error_last_code();
    if ((rc = ks_reporter_set_prefix(rep, "main/")) != KS_OK) { free(old_prefix); return rc; }
  }
  ks_link *model = ks_optimizer_target(up->opt);
  if (up->dp) {
    rc = dp_update(up, idx, n, rep);
  } else if ((rc = up->converter(up->ctx, up->ds, idx, n, in, &n_in, up->converter_user)) == KS_OK) {
    ks_var *loss = up->lossfun(up->ctx, model, in, n_in, rep, up->lossfun_user);
    if (!loss) rc = ks_error_last_code() ? ks_error_last_code() : ks_error_set(KS_EINVAL, "loss function returned NULL");
    else {
      ks_link_cleargrads(model);
      rc = ks_backward(up->ctx, loss);
      if (rc == KS_OK) rc = ks_optimizer_update(up->opt);
    }
  }
  if (rep) {
    int r2 = ks_reporter_set_prefix(rep, old_prefix);
    if (rc == KS_OK) rc = r2;
    free(old_prefix);
  }
  ks_ctx_reset(up->ctx);
  if (rc != KS_OK) return rc;
  if (ks_serial_iterator_is_new_epoch(up->it)) ks_optimizer_new_epoch(up->opt);
  up->iteration++;
  return KS_OK;
}

int64_t ks_updater_iteration(const ks_updater *up) { return up ? up->iteration : 0; }
int64_t ks_updater_epoch(const ks_updater *up) { return up ? ks_serial_iterator_epoch(up->it) : 0; }
double ks_updater_epoch_detail(const ks_updater *up) { return up ? ks_serial_iterator_epoch_detail(up->it) : 0; }
int ks_updater_is_new_epoch(const ks_updater *up) { return up ? ks_serial_iterator_is_new_epoch(up->it) : 0; }
ks_serial_iterator *ks_updater_iterator(const ks_updater *up) { return up ? up->it : NULL; }
ks_optimizer *ks_updater_optimizer(const ks_updater *up) { return up ? up->opt : NULL; }
ks_link *ks_updater_model(const ks_updater *up) { return up ? ks_optimizer_target(up->opt) : NULL; }
ks_ctx *ks_updater_ctx(const ks_updater *up) { return up ? up->ctx : NULL; }
const ks_dataset *ks_updater_dataset(const ks_updater *up) { return up ? up->ds : NULL; }
ks_converter_fn ks_updater_converter(const ks_updater *up, void **user) {
  if (user) *user = up ? up->converter_user : NULL;
  return up ? up->converter : NULL;
}
ks_lossfun ks_updater_lossfun(const ks_updater *up, void **user) {
  if (user) *user = up ? up->lossfun_user : NULL;
  return up ? up->lossfun : NULL;
}

/* ---------------------------------------------------------------------------- */
/* extension handle */

ks_extension *ks_extension_new(const ks_extension_ops *ops, void *state) {
  if (!ops || !ops->run) {
    if (ops && ops->free_state) ops->free_state(state);
    ks_error_set(KS_EINVAL, "ks_extension_new: an extension needs a run function");
    return NULL;
  }
  ks_extension *e = calloc(1, sizeof *e);
  if (!e) {
    if (ops->free_state) ops->free_state(state);
    ks_error_set(KS_ENOMEM, "out of memory");
    return NULL;
  }
  e->ops = ops;
  e->state = state;
  return e;
}

void ks_extension_free(ks_extension *e) {
  if (!e) return;
  if (e->ops->free_state) e->ops->free_state(e->state);
  free(e->name);
  free(e->trigger_key);
  free(e);
}

void *ks_extension_state(const ks_extension *e) { return e ? e->state : NULL; }
const ks_extension_ops *ks_extension_ops_of(const ks_extension *e) { return e ? e->ops : NULL; }
const char *ks_extension_name(const ks_extension *e) { return e && e->name ? e->name : ""; }

/* ---------------------------------------------------------------------------- */
/* Trainer */

/* A period is a whole number of iterations >= 1 or a positive number of
 * epochs (fractions: Chainer's (0.5, 'epoch')); 0 where "the default" is
 * allowed. The 2^53 bound keeps the conversions to int64 exact. */
static int trigger_ok(ks_trigger t, int allow_default) {
  if (t.unit != KS_EPOCH && t.unit != KS_ITERATION) return 0;
  if (t.kind != KS_TRIGGER_INTERVAL && (!allow_default || (t.kind != KS_TRIGGER_MAX_VALUE && t.kind != KS_TRIGGER_MIN_VALUE) ||
                                        !t.key || !t.key[0]))
    return 0;  /* best-value triggers: for extensions, with a key */
  if (!(t.period >= 0 && t.period <= 9007199254740992.0)) return 0;  /* also NaN */
  if (t.period == 0) return allow_default;
  return t.unit == KS_EPOCH || (t.period >= 1 && t.period == floor(t.period));
}

int ks_trainer_new(ks_trainer **out, ks_updater *updater, ks_trigger stop, const char *out_dir) {
  if (!out) { ks_updater_free(updater); return ks_error_set(KS_EINVAL, "ks_trainer_new: out is NULL"); }
  *out = NULL;
  if (!updater) return ks_error_last_code() ? ks_error_last_code() : ks_error_set(KS_EINVAL, "ks_trainer_new: updater is NULL");
  if (!trigger_ok(stop, 0)) {
    ks_updater_free(updater);
    return ks_error_set(KS_EINVAL, "ks_trainer_new: the stop trigger is an interval with a unit and a period: a whole "
                        "number of iterations >= 1 or a positive number of epochs, got %g", stop.period);
  }
  ks_trainer *tr = calloc(1, sizeof *tr);
  if (!tr) { ks_updater_free(updater); return ks_error_set(KS_ENOMEM, "out of memory"); }
  tr->updater = updater;
  tr->reporter = ks_reporter_new();
  tr->out = ks__strcat3(out_dir ? out_dir : "result", NULL, NULL);
  if (!tr->reporter || !tr->out) { ks_trainer_free(tr); return ks_error_set(KS_ENOMEM, "out of memory"); }
  ks_interval_trigger_init(&tr->stop, stop);
  *out = tr;
  return KS_OK;
}

void ks_trainer_free(ks_trainer *tr) {
  if (!tr) return;
  for (int i = 0; i < tr->n_ext; i++) ks_extension_free(tr->ext[i]);
  free(tr->ext);
  ks_reporter_free(tr->reporter);
  ks_updater_free(tr->updater);
  free(tr->out);
  free(tr);
}

ks_extension *ks_trainer_get_extension(const ks_trainer *tr, const char *name) {
  if (!tr || !name) return NULL;
  for (int i = 0; i < tr->n_ext; i++)
    if (strcmp(tr->ext[i]->name, name) == 0) return tr->ext[i];
  return NULL;
}

int ks_trainer_extend(ks_trainer *tr, ks_extension *ext, const char *name, ks_trigger trigger, int priority) {
  if (!ext) return ks_error_last_code() ? ks_error_last_code() : ks_error_set(KS_EINVAL, "ks_trainer_extend: extension is NULL");
  int rc = KS_OK;
  char *nm = NULL;
  if (!tr) { rc = ks_error_set(KS_EINVAL, "ks_trainer_extend: trainer is NULL"); goto fail; }
  if (tr->done || tr->start_at > 0) { rc = ks_error_set(KS_ESTATE, "ks_trainer_extend: the trainer has already run"); goto fail; }
  if (ext->added) { rc = ks_error_set(KS_ESTATE, "ks_trainer_extend: extension '%s' is already in a trainer", ext->name); ext = NULL; goto fail; }
  if (trigger.kind != KS_TRIGGER_INTERVAL && (!trigger.key || !trigger.key[0])) {
    rc = ks_error_set(KS_EINVAL, "ks_trainer_extend: a MaxValueTrigger / MinValueTrigger needs the key it observes");
    goto fail;
  }
  if (!trigger_ok(trigger, 1)) {
    rc = ks_error_set(KS_EINVAL, "ks_trainer_extend: bad trigger (period %g %s; iterations: a whole number >= 1, "
                      "epochs: a positive number)", trigger.period, trigger.unit == KS_EPOCH ? "epochs" : "iterations");
    goto fail;
  }
  const char *base = name && *name ? name : (ext->ops->default_name ? ext->ops->default_name : "extension");
  if (strchr(base, '/')) { rc = ks_error_set(KS_EINVAL, "ks_trainer_extend: name '%s' contains '/'", base); goto fail; }
  if (!(nm = ks__strcat3(base, NULL, NULL))) { rc = ks_error_last_code(); goto fail; }
  for (int ord = 1; ks_trainer_get_extension(tr, nm); ord++) {
    free(nm);
    char suf[32];
    snprintf(suf, sizeof suf, "_%d", ord);
    if (!(nm = ks__strcat3(base, suf, NULL))) { rc = ks_error_last_code(); goto fail; }
  }
  if (tr->n_ext == tr->cap_ext) {
    int cap = tr->cap_ext ? 2 * tr->cap_ext : 8;
    ks_extension **e = realloc(tr->ext, (size_t)cap * sizeof *e);
    if (!e) { rc = ks_error_set(KS_ENOMEM, "out of memory"); goto fail; }
    tr->ext = e;
    tr->cap_ext = cap;
  }
  ks_trigger t = trigger.period > 0 || trigger.kind != KS_TRIGGER_INTERVAL ? trigger : ext->ops->default_trigger;
  if (t.period <= 0 && t.kind != KS_TRIGGER_INTERVAL) t.period = 1, t.unit = KS_EPOCH;  /* Chainer's (1, 'epoch') */
  if (t.period <= 0) t = KS_TRIGGER(1, KS_ITERATION);
  if (t.kind != KS_TRIGGER_INTERVAL) {
    free(ext->trigger_key);
    if (!(ext->trigger_key = ks__strcat3(t.key, NULL, NULL))) { rc = ks_error_last_code(); goto fail; }
    t.key = ext->trigger_key;
  }
  ks_interval_trigger_init(&ext->trigger, t);
  ext->priority = priority != KS_PRIORITY_DEFAULT ? priority
                  : (ext->ops->default_priority ? ext->ops->default_priority : KS_PRIORITY_READER);
  free(ext->name);
  ext->name = nm;
  ext->order = tr->n_ext;
  ext->added = 1;
  tr->ext[tr->n_ext++] = ext;
  return KS_OK;
fail:
  free(nm);
  ks_extension_free(ext);
  return rc;
}

ks_updater *ks_trainer_updater(const ks_trainer *tr) { return tr ? tr->updater : NULL; }
ks_reporter *ks_trainer_reporter(const ks_trainer *tr) { return tr ? tr->reporter : NULL; }
const char *ks_trainer_out(const ks_trainer *tr) { return tr ? tr->out : NULL; }
ks_trigger ks_trainer_stop_trigger(const ks_trainer *tr) { return tr ? tr->stop.spec : KS_TRIGGER_DEFAULT; }
double ks_trainer_elapsed_time(const ks_trainer *tr) {
  if (!tr) return 0;
  return (tr->start_at > 0 ? ks__now() - tr->start_at : 0) + tr->snapshot_elapsed;
}

static void sort_extensions(ks_trainer *tr) {
  /* insertion sort: priority descending, registration order among equals */
  for (int i = 1; i < tr->n_ext; i++) {
    ks_extension *e = tr->ext[i];
    int j = i - 1;
    while (j >= 0 && (tr->ext[j]->priority < e->priority ||
                      (tr->ext[j]->priority == e->priority && tr->ext[j]->order > e->order))) {
      tr->ext[j + 1] = tr->ext[j];
      j--;
    }
    tr->ext[j + 1] = e;
  }
}

/* Reporting extensions of a multi-node trainer run on rank 0 only. */
static int skipped_here(const ks_trainer *tr, const ks_extension *e) {
  return tr->comm && e->ops->rank0_only && ks__comm_rank(tr->comm) != 0;
}

int ks_trainer_set_comm(ks_trainer *tr, ks_comm *comm) {
  if (!tr) return ks_error_set(KS_EINVAL, "ks_trainer_set_comm: trainer is NULL");
  if (tr->start_at > 0) return ks_error_set(KS_ESTATE, "ks_trainer_set_comm: the trainer is running");
  tr->comm = comm;
  return KS_OK;
}

int ks_trainer_run(ks_trainer *tr) {
  if (!tr) return ks_error_set(KS_EINVAL, "ks_trainer_run: trainer is NULL");
  if (tr->done || tr->start_at > 0) return ks_error_set(KS_ESTATE, "cannot run the training loop twice");
  int rc = ks__ensure_dir(tr->out);
  if (rc != KS_OK) return rc;
  /* before start_at is set (loading refuses a running trainer) and before
   * any initialize, which must see the restored state (a schedule resumes
   * from its last value) */
  if ((rc = ks__snapshot_autoload(tr)) != KS_OK) return rc;
  sort_extensions(tr);
  tr->start_at = ks__now();
  for (int i = 0; i < tr->n_ext && rc == KS_OK; i++)
    if (tr->ext[i]->ops->initialize && !skipped_here(tr, tr->ext[i]))
      rc = tr->ext[i]->ops->initialize(tr->ext[i], tr);
  while (rc == KS_OK && !ks_interval_trigger_fire(&tr->stop, tr->updater)) {
    ks_reporter_clear(tr->reporter);
    rc = ks_updater_update(tr->updater, tr->reporter);
    for (int i = 0; i < tr->n_ext && rc == KS_OK; i++) {
      ks_extension *e = tr->ext[i];
      if (skipped_here(tr, e)) continue;
      int fire = 0;
      rc = ks_trigger_fire_observed(&e->trigger, tr->updater, tr->reporter, &fire);
      if (rc == KS_OK && fire) rc = e->ops->run(e, tr);
    }
  }
  char msg[1024] = "";
  if (rc != KS_OK) {
    snprintf(msg, sizeof msg, "%s", ks_error_last());
    for (int i = 0; i < tr->n_ext; i++)
      if (tr->ext[i]->ops->on_error && !skipped_here(tr, tr->ext[i]))
        tr->ext[i]->ops->on_error(tr->ext[i], tr, rc, msg);
  }
  for (int i = 0; i < tr->n_ext; i++)
    if (tr->ext[i]->ops->finalize && !skipped_here(tr, tr->ext[i])) tr->ext[i]->ops->finalize(tr->ext[i], tr);
  tr->snapshot_elapsed = ks_trainer_elapsed_time(tr);
  tr->start_at = 0;
  tr->done = 1;
  if (rc != KS_OK) return ks_error_set(rc, "%s", msg);
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* snapshots */

/* Sets "<what> '<path>': <the current message>" (copied first: the message
 * buffer is the one being written). */
static int wrap_error(int rc, const char *what, const char *path) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s", ks_error_last());
  return ks_error_set(rc, "%s '%s': %s", what, path, msg);
}

static const char *const hyperparam_names[] = {"lr", "momentum", "alpha", "beta1", "beta2", "eps",
                                               "eta", "weight_decay_rate", "amsgrad"};
#define N_HYPER ((int)(sizeof hyperparam_names / sizeof hyperparam_names[0]))

typedef struct put_ctx {
  ks_npz_writer *w;
  const char *prefix;
} put_ctx;

static int put_tensor(void *ud, const char *key, const ks_tensor *t) {
  put_ctx *p = ud;
  char *k = ks__strcat3(p->prefix, key, NULL);
  if (!k) return ks_error_last_code();
  int rc = ks_npz_writer_add_tensor(p->w, k, t);
  free(k);
  return rc;
}

typedef struct get_ctx {
  ks_npz_reader *r;
  const char *prefix;
  ks_tensor *held[16];
  int n;
} get_ctx;

static int get_tensor(void *ud, const char *key, const ks_tensor **t) {
  get_ctx *g = ud;
  if (g->n == 16) return ks_error_set(KS_EINVAL, "too many iterator state keys");
  char *k = ks__strcat3(g->prefix, key, NULL);
  if (!k) return ks_error_last_code();
  ks_npz_info in;
  int rc = ks_npz_reader_info(g->r, k, &in);
  if (rc == KS_ENOTFOUND) rc = ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", k);
  ks_tensor *x = rc == KS_OK ? ks_npz_reader_read_tensor(g->r, k) : NULL;
  free(k);
  if (rc != KS_OK) return rc;
  if (!x) return ks_error_last_code();
  g->held[g->n++] = x;
  *t = x;
  return KS_OK;
}

static void get_ctx_release(get_ctx *g) {
  for (int i = 0; i < g->n; i++) ks_tensor_free(g->held[i]);
  g->n = 0;
}

static int save_rng(ks_npz_writer *w, const char *key, const ks_rng *rng) {
  int64_t words[4];
  for (int i = 0; i < 4; i++) memcpy(&words[i], &rng->s[i], sizeof words[i]);
  return ks_npz_writer_add(w, key, KS_NPZ_I8, 1, (int64_t[]){4}, words);
}

static int read_rng(ks_npz_reader *r, const char *key, ks_rng *rng) {
  ks_npz_info in;
  int rc = ks_npz_reader_info(r, key, &in);
  if (rc == KS_ENOTFOUND) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", key);
  if (rc != KS_OK) return rc;
  if (in.ndim != 1 || in.size != 4 || in.dtype != KS_NPZ_I8)
    return ks_error_set(KS_ESHAPE, "key '%s': expected 4 int64 words", key);
  int64_t words[4];
  if ((rc = ks_npz_reader_read(r, key, KS_NPZ_I8, words, 4)) != KS_OK) return rc;
  for (int i = 0; i < 4; i++) memcpy(&rng->s[i], &words[i], sizeof words[i]);
  return KS_OK;
}

static int write_all(ks_trainer *tr, ks_npz_writer *w) {
  ks_updater *up = tr->updater;
  int rc;
  if ((rc = ks_npz_writer_add_int64(w, "updater/iteration", up->iteration)) != KS_OK) return rc;
  put_ctx pc = {w, "updater/iterator:main/"};
  if ((rc = ks_serial_iterator_save_state(up->it, put_tensor, &pc)) != KS_OK) return rc;
  if ((rc = ks_npz_write_optimizer(w, "updater/optimizer:main/", up->opt)) != KS_OK) return rc;
  for (int i = 0; i < N_HYPER; i++) {
    double v;
    if (ks_optimizer_get_hyperparam(up->opt, hyperparam_names[i], &v) != KS_OK) continue;
    char *k = ks__strcat3("updater/optimizer:main/hyperparam/", hyperparam_names[i], NULL);
    if (!k) return ks_error_last_code();
    rc = ks__npz_add_f64(w, k, v);
    free(k);
    if (rc != KS_OK) return rc;
  }
  ks_error_clear();
  if ((rc = ks_npz_write_link(w, "updater/model:main/", ks_optimizer_target(up->opt))) != KS_OK) return rc;
  if ((rc = save_rng(w, "updater/ctx_rng", ks_ctx_rng(up->ctx))) != KS_OK) return rc;
  for (int r = 0; up->dp && r < ks_data_parallel_replicas(up->dp); r++) {
    char key[64];
    snprintf(key, sizeof key, "updater/replica_rng/%d", r);
    if ((rc = save_rng(w, key, ks_ctx_rng(ks_data_parallel_ctx(up->dp, r)))) != KS_OK) return rc;
  }
  if ((rc = ks_interval_trigger_save(&tr->stop, w, "stop_trigger/")) != KS_OK) return rc;
  for (int i = 0; i < tr->n_ext; i++) {
    ks_extension *e = tr->ext[i];
    char *p = ks__strcat3("extension_triggers/", e->name, "/");
    if (!p) return ks_error_last_code();
    rc = ks_interval_trigger_save(&e->trigger, w, p);
    free(p);
    if (rc != KS_OK) return rc;
    if (!e->ops->save) continue;
    if (!(p = ks__strcat3("extensions/", e->name, "/"))) return ks_error_last_code();
    rc = e->ops->save(e, w, p);
    free(p);
    if (rc != KS_OK) return rc;
  }
  return ks__npz_add_f64(w, "_snapshot_elapsed_time", ks_trainer_elapsed_time(tr));
}

int ks_trainer_save_snapshot(ks_trainer *tr, const char *path) {
  if (!tr || !path) return ks_error_set(KS_EINVAL, "ks_trainer_save_snapshot: NULL argument");
  ks_npz_writer *w = NULL;
  int rc = ks_npz_writer_open(&w, path, 1);
  if (rc != KS_OK) return rc;
  if ((rc = write_all(tr, w)) != KS_OK) {
    ks_npz_writer_discard(w);
    return rc;
  }
  rc = ks_npz_writer_commit(w);
  if (rc != KS_OK) return wrap_error(rc, "cannot write snapshot", path);
  return KS_OK;
}

/* Reads every entry once, so a damaged archive fails here, before anything
 * is changed. */
static int verify_entries(ks_npz_reader *r, const char *path) {
  int n = ks_npz_reader_num_keys(r);
  if (n == 0) return ks_error_set(KS_EFORMAT, "'%s' is not a trainer snapshot (no arrays)", path);
  for (int i = 0; i < n; i++) {
    const char *key = ks_npz_reader_key(r, i);
    ks_npz_info in;
    int rc = ks_npz_reader_info(r, key, &in);
    if (rc != KS_OK) return rc;
    int f = in.dtype == KS_NPZ_F4 || in.dtype == KS_NPZ_F8;
    void *buf = malloc((size_t)(in.size ? in.size : 1) * 8);
    if (!buf) return ks_error_set(KS_ENOMEM, "out of memory");
    rc = ks_npz_reader_read(r, key, f ? KS_NPZ_F8 : KS_NPZ_I8, buf, in.size);
    free(buf);
    if (rc != KS_OK) return rc;
  }
  return KS_OK;
}

typedef struct check_ctx {
  ks_npz_reader *r;
} check_ctx;

static int check_param(const char *path, ks_var *param, void *user) {
  check_ctx *c = user;
  char *k = ks__strcat3("updater/model:main/", path, NULL);
  if (!k) return ks_error_last_code();
  ks_npz_info in;
  int rc = ks_npz_reader_info(c->r, k, &in);
  if (rc == KS_ENOTFOUND) rc = ks_error_set(KS_ENOTFOUND, "key '%s' (parameter '%s') not found in the snapshot", k, path);
  else if (rc == KS_OK && ks_link_param_is_initialized(param) &&
           (in.ndim != param->data->ndim || in.size != param->data->size ||
            memcmp(in.shape, param->data->shape, (size_t)in.ndim * sizeof(int64_t)) != 0)) {
    char a[128], b[128];
    rc = ks_error_set(KS_ESHAPE, "key '%s': shape %s in the snapshot, %s in the model", k,
                      ks_shape_str(in.ndim, in.shape, a, sizeof a),
                      ks_shape_str(param->data->ndim, param->data->shape, b, sizeof b));
  }
  if (rc == KS_OK) {
    free(k);
    if (!(k = ks__strcat3("updater/optimizer:main/", path, "/t"))) return ks_error_last_code();
    rc = ks_npz_reader_info(c->r, k, NULL);
    if (rc == KS_ENOTFOUND) rc = ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", k);
  }
  free(k);
  return rc;
}

int ks_trainer_load_snapshot(ks_trainer *tr, const char *path) {
  if (!tr || !path) return ks_error_set(KS_EINVAL, "ks_trainer_load_snapshot: NULL argument");
  if (tr->done || tr->start_at > 0) return ks_error_set(KS_ESTATE, "load a snapshot before ks_trainer_run");
  ks_updater *up = tr->updater;
  ks_npz_reader *r = NULL;
  ks_serial_iterator *scratch = NULL;
  get_ctx gc = {0};
  int rc = ks_npz_reader_open(&r, path);
  if (rc != KS_OK) return wrap_error(rc, "cannot resume from", path);

  /* ---- phase 1: check everything, change nothing ---- */
  if ((rc = verify_entries(r, path)) != KS_OK) goto out;
  int64_t iteration;
  double elapsed;
  ks_rng rng;
  ks_interval_trigger stop = tr->stop;
  if ((rc = ks__npz_read_i64(r, "updater/iteration", &iteration)) != KS_OK) goto out;
  if ((rc = ks__npz_read_f64(r, "_snapshot_elapsed_time", &elapsed)) != KS_OK) goto out;
  if ((rc = read_rng(r, "updater/ctx_rng", &rng)) != KS_OK) goto out;
  /* the replicas' dropout RNGs, when the snapshot has them (one taken with
   * another replica count resumes, but not bit for bit) */
  ks_rng replica_rng[64];
  int replica_has[64] = {0};
  for (int q = 0; up->dp && q < ks_data_parallel_replicas(up->dp) && q < 64; q++) {
    char key[64];
    snprintf(key, sizeof key, "updater/replica_rng/%d", q);
    if (ks_npz_reader_info(r, key, NULL) != KS_OK) continue;
    if ((rc = read_rng(r, key, &replica_rng[q])) != KS_OK) goto out;
    replica_has[q] = 1;
  }
  ks_error_clear();
  if ((rc = ks_interval_trigger_load(&stop, r, "stop_trigger/")) != KS_OK) goto out;
  ks_interval_trigger *trig = calloc((size_t)(tr->n_ext ? tr->n_ext : 1), sizeof *trig);
  if (!trig) { rc = ks_error_set(KS_ENOMEM, "out of memory"); goto out; }
  for (int i = 0; i < tr->n_ext && rc == KS_OK; i++) {
    char *p = ks__strcat3("extension_triggers/", tr->ext[i]->name, "/");
    trig[i] = tr->ext[i]->trigger;
    rc = p ? ks_interval_trigger_load(&trig[i], r, p) : ks_error_last_code();
    free(p);
  }
  if (rc != KS_OK) { free(trig); goto out; }
  ks_npz_info ti;
  if ((rc = ks_npz_reader_info(r, "updater/optimizer:main/t", &ti)) != KS_OK ||
      (rc = ks_npz_reader_info(r, "updater/optimizer:main/epoch", &ti)) != KS_OK) {
    if (rc == KS_ENOTFOUND) rc = ks_error_set(rc, "optimizer state not found in the snapshot");
    free(trig);
    goto out;
  }
  check_ctx cc = {r};
  if ((rc = ks_link_namedparams(ks_optimizer_target(up->opt), 1, check_param, &cc)) != KS_OK) { free(trig); goto out; }
  /* the iterator state, tried on a scratch iterator of the same shape */
  rc = ks_serial_iterator_new(&scratch, ks_serial_iterator_size(up->it), ks_serial_iterator_batch_size(up->it),
                              ks_serial_iterator_repeat(up->it), ks_serial_iterator_shuffle(up->it), 0);
  if (rc == KS_OK) {
    gc = (get_ctx){.r = r, .prefix = "updater/iterator:main/"};
    rc = ks_serial_iterator_load_state(scratch, get_tensor, &gc);
    get_ctx_release(&gc);
  }
  if (rc != KS_OK) { free(trig); goto out; }

  /* ---- phase 2: apply (each loader is itself all-or-nothing) ---- */
  if ((rc = ks_npz_read_link(r, "updater/model:main/", ks_optimizer_target(up->opt), 1)) != KS_OK ||
      (rc = ks_npz_read_optimizer(r, "updater/optimizer:main/", up->opt, 1)) != KS_OK) {
    free(trig);
    goto out;
  }
  for (int i = 0; i < N_HYPER; i++) {
    double v, cur;
    char *k = ks__strcat3("updater/optimizer:main/hyperparam/", hyperparam_names[i], NULL);
    if (!k) { rc = ks_error_last_code(); break; }
    if (ks_npz_reader_info(r, k, NULL) == KS_OK && ks__npz_read_f64(r, k, &v) == KS_OK &&
        ks_optimizer_get_hyperparam(up->opt, hyperparam_names[i], &cur) == KS_OK)
      ks_optimizer_set_hyperparam(up->opt, hyperparam_names[i], v);
    free(k);
  }
  ks_error_clear();
  gc = (get_ctx){.r = r, .prefix = "updater/iterator:main/"};
  rc = ks_serial_iterator_load_state(up->it, get_tensor, &gc);
  get_ctx_release(&gc);
  if (rc != KS_OK) { free(trig); goto out; }
  for (int i = 0; i < tr->n_ext && rc == KS_OK; i++) {
    ks_extension *e = tr->ext[i];
    if (!e->ops->load) continue;
    char *p = ks__strcat3("extensions/", e->name, "/");
    rc = p ? e->ops->load(e, r, p) : ks_error_last_code();
    free(p);
  }
  if (rc != KS_OK) { free(trig); goto out; }
  for (int i = 0; i < tr->n_ext; i++) tr->ext[i]->trigger = trig[i];
  free(trig);
  *ks_ctx_rng(up->ctx) = rng;
  for (int q = 0; up->dp && q < ks_data_parallel_replicas(up->dp) && q < 64; q++)
    if (replica_has[q]) *ks_ctx_rng(ks_data_parallel_ctx(up->dp, q)) = replica_rng[q];
  up->iteration = iteration;
  tr->stop = stop;
  tr->snapshot_elapsed = elapsed;
out:
  ks_serial_iterator_free(scratch);
  ks_npz_reader_close(r);
  if (rc != KS_OK) return wrap_error(rc, "cannot resume from", path);
  return rc;
}
