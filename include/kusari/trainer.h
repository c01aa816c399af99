/*
 * kusari/trainer.h — the training loop as objects (chainer.training):
 * Reporter and DictSummary, interval triggers, StandardUpdater, Trainer,
 * the extension interface, and trainer snapshots (save and resume).
 *
 * The built-in extensions (Evaluator, LogReport, PrintReport, ProgressBar,
 * PlotReport, snapshot, ExponentialShift, ...) are in kusari/extensions.h.
 *
 * A program written the Chainer way:
 *
 *   ks_link *model = ks_classifier_new(mlp_new(...));
 *   ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.01, 0.9);
 *   ks_optimizer_setup(opt, model);
 *   ks_serial_iterator *train_it, *test_it;   // repeat+shuffle / one sweep
 *   ...
 *   ks_updater *up;
 *   ks_standard_updater_new(&up, train_it, train, opt, NULL);
 *   ks_trainer *tr;
 *   ks_trainer_new(&tr, up, KS_TRIGGER(20, KS_EPOCH), "result");
 *   ks_trainer_extend(tr, ks_evaluator_new(test_it, test, model, NULL), NULL,
 *                     KS_TRIGGER_DEFAULT, KS_PRIORITY_DEFAULT);
 *   ks_trainer_extend(tr, ks_log_report_new(NULL, 0, KS_TRIGGER_DEFAULT, NULL), ...);
 *   ks_trainer_extend(tr, ks_snapshot_new(NULL), ...);
 *   if (resume) ks_trainer_load_snapshot(tr, resume);
 *   ks_trainer_run(tr);
 *   ks_trainer_free(tr);           // frees the updater and the extensions
 *
 * What happens in ks_trainer_run is Chainer's Trainer.run: extensions are
 * sorted by priority (highest first, registration order among equals); each
 * one's initialize runs; then, until the stop trigger fires, the reporter's
 * observation is cleared, the updater runs one iteration (reporting under
 * "main/": "main/loss", "main/accuracy") and every extension whose trigger
 * fires runs. When anything fails, every extension's on_error is called
 * with the error, then (always, also on success) every finalize, and the
 * error code is returned with its message in ks_error_last().
 *
 * Ownership: the trainer owns its updater and the extensions added to it.
 * The updater does not own the iterator, dataset, optimizer or model.
 * Errors follow kusari/error.h.
 */
#ifndef KUSARI_TRAINER_H
#define KUSARI_TRAINER_H

#include <stdint.h>
#include "kusari/var.h"          /* ks_ctx, ks_var             */
#include "kusari/link.h"         /* ks_link                    */
#include "kusari/optimizer.h"    /* ks_optimizer               */
#include "kusari/datasets.h"     /* ks_dataset                 */
#include "kusari/iterator.h"     /* ks_serial_iterator         */
#include "kusari/serializers.h"  /* ks_npz_writer, ks_npz_reader */

#ifdef __cplusplus
extern "C" {
#endif

/* ==== Reporter (chainer.Reporter) ======================================== */
/* A reporter holds the current observation: an ordered map name → double.
 * Values are reported under the current prefix ("main/"), so a loss
 * function reporting "loss" fills "main/loss" during training and
 * "validation/main/loss" inside the Evaluator. Reporting a name again
 * overwrites its value (a Python dict). */
typedef struct ks_reporter ks_reporter;

ks_reporter *ks_reporter_new(void);
void ks_reporter_free(ks_reporter *r);                 /* NULL: no-op */
/* Prefix prepended to reported names (copied; NULL or "" for none). */
int ks_reporter_set_prefix(ks_reporter *r, const char *prefix);
const char *ks_reporter_prefix(const ks_reporter *r);
/* observation[prefix + name] = value. */
int ks_reporter_report(ks_reporter *r, const char *name, double value);
/* Same with a one-element variable's value (KS_ESHAPE otherwise). */
int ks_reporter_report_var(ks_reporter *r, const char *name, const ks_var *v);
/* Empties the observation (the prefix stays). */
void ks_reporter_clear(ks_reporter *r);
int ks_reporter_size(const ks_reporter *r);
/* i-th entry in report order; NULL / NAN when out of range. */
const char *ks_reporter_key(const ks_reporter *r, int i);
double ks_reporter_value(const ks_reporter *r, int i);
/* KS_ENOTFOUND (no message) when 'key' was not reported. */
int ks_reporter_get(const ks_reporter *r, const char *key, double *value);

/* ==== DictSummary (chainer.reporter.DictSummary) ========================== */
/* Per key: sum of weight*x, of weight*x*x and of weights; mean = sum / n. */
typedef struct ks_summary ks_summary;

ks_summary *ks_summary_new(void);
void ks_summary_free(ks_summary *s);                   /* NULL: no-op */
int ks_summary_add(ks_summary *s, const char *key, double value, double weight);
/* Adds every entry of the observation (keys NULL) or only those named in
 * keys[0..nkeys) that the observation has, each with weight 1. */
int ks_summary_add_observation(ks_summary *s, const ks_reporter *obs, const char *const *keys,
                               int nkeys);
void ks_summary_reset(ks_summary *s);
int ks_summary_size(const ks_summary *s);
const char *ks_summary_key(const ks_summary *s, int i);
/* Mean (and population std, like compute_mean_and_std) of 'key';
 * KS_ENOTFOUND when absent. std may be NULL. */
int ks_summary_mean(const ks_summary *s, const char *key, double *mean, double *std);
/* Snapshot support: keys as "<prefix>_names" (bytes) and the sums as
 * "<prefix>_x", "_x2", "_n" (float64 arrays). */
int ks_summary_save(const ks_summary *s, ks_npz_writer *w, const char *prefix);
int ks_summary_load(ks_summary *s, ks_npz_reader *r, const char *prefix);

/* ==== triggers (chainer.training.triggers.IntervalTrigger) ================ */
typedef enum ks_trigger_unit { KS_ITERATION = 0, KS_EPOCH = 1 } ks_trigger_unit;
/* "every 'period' iterations / epochs": an iteration period is a whole
 * number >= 1; an epoch period is any positive number, fractions included
 * (KS_TRIGGER(0.5, KS_EPOCH): twice an epoch, as Chainer's (0.5, 'epoch')).
 * period 0 means "the extension's default" where a trigger is optional. */
typedef enum ks_trigger_kind {
  KS_TRIGGER_INTERVAL = 0,   /* IntervalTrigger                                  */
  KS_TRIGGER_MAX_VALUE = 1,  /* MaxValueTrigger(key, trigger=(period, unit))      */
  KS_TRIGGER_MIN_VALUE = 2   /* MinValueTrigger                                  */
} ks_trigger_kind;
typedef struct ks_trigger {
  double period;
  ks_trigger_unit unit;
  ks_trigger_kind kind;
  const char *key;           /* best-value triggers: the observed key (copied)   */
} ks_trigger;
#define KS_TRIGGER(n, u) ((ks_trigger){(n), (u), KS_TRIGGER_INTERVAL, NULL})
#define KS_TRIGGER_DEFAULT ((ks_trigger){0, KS_ITERATION, KS_TRIGGER_INTERVAL, NULL})
/* chainer.training.triggers.MaxValueTrigger / MinValueTrigger, for
 * ks_trainer_extend: every iteration the value of 'key' in the observation
 * (when reported) is accumulated; when the interval (period, unit) fires —
 * (1, epoch) when period is 0 — their mean is compared with the best mean
 * so far and the trigger fires when it is higher (lower), or the first time.
 * The key must have been reported by then (KS_ENOTFOUND otherwise): an
 * Evaluator reports "validation/main/accuracy" before extensions of lower
 * priority are triggered. The usual use, saving the best model:
 *   ks_trainer_extend(tr, ks_snapshot_object_new(predictor, "best.npz", 0), NULL,
 *                     KS_MAX_VALUE_TRIGGER("validation/main/accuracy", 1, KS_EPOCH),
 *                     KS_PRIORITY_DEFAULT);
 * The best value and the accumulated values are part of snapshots. */
#define KS_MAX_VALUE_TRIGGER(k, n, u) ((ks_trigger){(n), (u), KS_TRIGGER_MAX_VALUE, (k)})
#define KS_MIN_VALUE_TRIGGER(k, n, u) ((ks_trigger){(n), (u), KS_TRIGGER_MIN_VALUE, (k)})

/* A trigger with its state, as IntervalTrigger keeps it: fires when
 * floor(previous / period) != floor(current / period), where current is the
 * updater's iteration (or epoch_detail) and previous its value at the last
 * call (0 at first). For a whole number of epochs the integer epochs are
 * compared (the same as comparing epoch_detail); for a fraction,
 * epoch_detail is, with a margin of 1e-9 epoch so that a boundary the
 * iterator reaches exactly (0.3 epoch = 3 x 0.1) fires then and not one
 * iteration late through rounding. */
typedef struct ks_interval_trigger {
  ks_trigger spec;
  int64_t previous_iteration;
  int64_t previous_epoch;
  double previous_epoch_detail;
  /* best-value triggers: the best mean so far (has_best 0: none yet) and the
   * sum and count of the key's values since the interval last fired */
  int has_best;
  double best_value;
  double acc_sum;
  int64_t acc_n;
} ks_interval_trigger;

typedef struct ks_updater ks_updater;
typedef struct ks_trainer ks_trainer;

void ks_interval_trigger_init(ks_interval_trigger *t, ks_trigger spec);
/* Evaluates the trigger against the updater's counters (and records them).
 * The interval only, also for a best-value trigger. */
int ks_interval_trigger_fire(ks_interval_trigger *t, const ks_updater *up);
/* Any trigger, with the current observation: *fire = whether it fires. An
 * interval trigger ignores 'obs' (may be NULL). KS_ENOTFOUND when a
 * best-value trigger's interval fires and its key was never reported. */
int ks_trigger_fire_observed(ks_interval_trigger *t, const ks_updater *up, const ks_reporter *obs, int *fire);
/* Keys "<prefix>previous_iteration" (int64) and "<prefix>previous_epoch_detail"
 * (float64), Chainer 7.8.1's IntervalTrigger keys, and kusari's own
 * "<prefix>_previous_epoch" (int64). Loading also takes the names kusari
 * wrote before (with a leading underscore: "_previous_iteration",
 * "_previous_epoch_detail"); a snapshot without epoch_detail (written before
 * fractional periods) loads with previous_epoch_detail = previous_epoch, one
 * without "_previous_epoch" (Chainer's) with previous_epoch =
 * floor(previous_epoch_detail). Best-value triggers add
 * "<prefix>best_value", "<prefix>_has_best", "<prefix>_summary_sum",
 * "<prefix>_summary_n". */
int ks_interval_trigger_save(const ks_interval_trigger *t, ks_npz_writer *w, const char *prefix);
int ks_interval_trigger_load(ks_interval_trigger *t, ks_npz_reader *r, const char *prefix);

/* ==== StandardUpdater ====================================================== */
#define KS_UPDATER_MAX_IN 4

/* A converter (Chainer's concat_examples): turns the examples idx[0..n) of
 * ds into input variables in[0..*n_in) made in ctx (arena memory). */
typedef int (*ks_converter_fn)(ks_ctx *ctx, const ks_dataset *ds, const int64_t *idx, int64_t n,
                               ks_var **in, int *n_in, void *user);
/* The default converter: in[0] = images of the batch with the dataset's
 * trailing shape, (n, ...) float32; in[1] = labels (n,) int32. */
int ks_concat_examples(ks_ctx *ctx, const ks_dataset *ds, const int64_t *idx, int64_t n,
                       ks_var **in, int *n_in, void *user);

/* A loss function (Chainer's lossfun / the model's __call__): returns the
 * scalar loss built in ctx, reporting what it observes to 'rep' (names
 * without the "main/" prefix, which the reporter adds). NULL on failure. */
typedef ks_var *(*ks_lossfun)(ks_ctx *ctx, ks_link *model, ks_var *const *in, int n_in,
                              ks_reporter *rep, void *user);
/* L.Classifier's __call__: model must be a Classifier (kusari/link.h); in[0]
 * is x, in[1] is t; reports "loss" and "accuracy". */
ks_var *ks_classifier_lossfun(ks_ctx *ctx, ks_link *model, ks_var *const *in, int n_in,
                              ks_reporter *rep, void *user);

typedef struct ks_updater_opts {
  ks_lossfun lossfun;          /* NULL: ks_classifier_lossfun                        */
  void *lossfun_user;
  ks_converter_fn converter;   /* NULL: ks_concat_examples                           */
  void *converter_user;
  ks_ctx *ctx;                 /* NULL: the updater makes (and owns) one, seeded with
                                  'seed'; otherwise used, not owned                  */
  uint64_t seed;               /* seed of the updater's own ctx (dropout RNG)        */
  int replicas;                /* > 1: each iteration runs as that many data-parallel
                                  replicas (kusari/parallel.h; Chainer's
                                  ParallelUpdater), one slice of the batch each; 0/1:
                                  the plain step. With replicas, the converter and
                                  the loss function run on several threads at once
                                  (the defaults can), reported values are the
                                  replicas' means weighted by slice size, and 'ctx'
                                  is not used for the step                          */
} ks_updater_opts;

/* New StandardUpdater over the repeating iterator 'it' on 'ds', updating
 * 'opt' (already set up; its target is the model). opts NULL: defaults.
 * None of the arguments is owned. KS_EINVAL on NULL arguments or an
 * optimizer without a target. */
int ks_standard_updater_new(ks_updater **out, ks_serial_iterator *it, const ks_dataset *ds,
                            ks_optimizer *opt, const ks_updater_opts *opts);
void ks_updater_free(ks_updater *up);                  /* NULL: no-op */
/* One iteration (update_core): next batch → converter → loss → cleargrads
 * → backward → optimizer update → optimizer.new_epoch when the iterator
 * starts a new epoch → ctx reset; iteration += 1. Reported values go to
 * 'rep' under prefix "main/" (rep may be NULL). With replicas, converter,
 * loss and backward run per slice (ks_data_parallel_backward). */
int ks_updater_update(ks_updater *up, ks_reporter *rep);
int64_t ks_updater_iteration(const ks_updater *up);
int64_t ks_updater_epoch(const ks_updater *up);
double ks_updater_epoch_detail(const ks_updater *up);
int ks_updater_is_new_epoch(const ks_updater *up);
ks_serial_iterator *ks_updater_iterator(const ks_updater *up);
ks_optimizer *ks_updater_optimizer(const ks_updater *up);
ks_link *ks_updater_model(const ks_updater *up);
ks_ctx *ks_updater_ctx(const ks_updater *up);
const ks_dataset *ks_updater_dataset(const ks_updater *up);
ks_converter_fn ks_updater_converter(const ks_updater *up, void **user);
ks_lossfun ks_updater_lossfun(const ks_updater *up, void **user);

/* ==== extensions (chainer.training.Extension) ============================== */
#define KS_PRIORITY_WRITER 300
#define KS_PRIORITY_EDITOR 200
#define KS_PRIORITY_READER 100
#define KS_PRIORITY_SNAPSHOT (-100)   /* snapshots run after everything else */
#define KS_PRIORITY_DEFAULT INT32_MIN /* "the extension's own priority"      */

typedef struct ks_extension ks_extension;

/* The table an extension is made of. Only 'run' is required. */
typedef struct ks_extension_ops {
  const char *default_name;     /* "LogReport"; registered under it unless named */
  ks_trigger default_trigger;   /* period 0: every iteration                      */
  int default_priority;         /* KS_PRIORITY_READER if 0                        */
  /* (optional) before the loop; also after a resume */
  int (*initialize)(ks_extension *ext, ks_trainer *tr);
  /* when the trigger fires */
  int (*run)(ks_extension *ext, ks_trainer *tr);
  /* (optional) after the loop, always */
  void (*finalize)(ks_extension *ext, ks_trainer *tr);
  /* (optional) when the loop fails, before finalize */
  void (*on_error)(ks_extension *ext, ks_trainer *tr, int code, const char *message);
  /* (optional) snapshot state under 'prefix' ("extensions/<name>/") */
  int (*save)(ks_extension *ext, ks_npz_writer *w, const char *prefix);
  int (*load)(ks_extension *ext, ks_npz_reader *r, const char *prefix);
  /* (optional) frees the state */
  void (*free_state)(void *state);
  /* 1: with a communicator on the trainer (ks_trainer_set_comm in
   * kusari/comm.h) it runs on rank 0 only: the reporting and file-writing
   * extensions (LogReport, PrintReport, ProgressBar, PlotReport, RunLogger,
   * snapshot_object) */
  int rank0_only;
} ks_extension_ops;

/* New extension over 'ops' (not copied: must outlive the extension) with
 * 'state' (owned: released with ops->free_state). NULL on OOM (state is then
 * released too). */
ks_extension *ks_extension_new(const ks_extension_ops *ops, void *state);
/* Frees an extension not added to a trainer. NULL: no-op. */
void ks_extension_free(ks_extension *ext);
void *ks_extension_state(const ks_extension *ext);
const ks_extension_ops *ks_extension_ops_of(const ks_extension *ext);
/* Name it was registered under ("" before). */
const char *ks_extension_name(const ks_extension *ext);

/* ==== Trainer ================================================================ */

/* New trainer running 'updater' until 'stop' fires, writing its files under
 * 'out' (created by ks_trainer_run when missing; NULL: "result"). Takes
 * ownership of the updater (also on failure). */
int ks_trainer_new(ks_trainer **out, ks_updater *updater, ks_trigger stop, const char *out_dir);
/* Frees the trainer, its updater and its extensions. NULL: no-op. */
void ks_trainer_free(ks_trainer *tr);
/* Registers 'ext' (owned from now on; freed on failure; a NULL ext returns
 * the error of the constructor that failed). name NULL: ops->default_name,
 * and a taken name gets "_1", "_2", ... appended as Chainer does; trigger
 * period 0: the extension's default; priority KS_PRIORITY_DEFAULT: its
 * default. KS_ESTATE once the trainer has run. */
int ks_trainer_extend(ks_trainer *tr, ks_extension *ext, const char *name, ks_trigger trigger,
                      int priority);
/* The training loop (see the top). KS_ESTATE when called twice. */
int ks_trainer_run(ks_trainer *tr);

ks_updater *ks_trainer_updater(const ks_trainer *tr);
/* The reporter holding the current iteration's observation. */
ks_reporter *ks_trainer_reporter(const ks_trainer *tr);
const char *ks_trainer_out(const ks_trainer *tr);
/* Seconds since run started, plus the elapsed time of a loaded snapshot. */
double ks_trainer_elapsed_time(const ks_trainer *tr);
/* The stop trigger's spec (ProgressBar reads the training length from it). */
ks_trigger ks_trainer_stop_trigger(const ks_trainer *tr);
/* Extension registered under 'name', or NULL (no error set). */
ks_extension *ks_trainer_get_extension(const ks_trainer *tr, const char *name);

/* ---- snapshots ----------------------------------------------------------------
 * A snapshot is an .npz holding everything the future of the run depends on,
 * under Chainer's key layout where one exists:
 *   updater/iteration, updater/iterator:main/<iterator state>,
 *   updater/optimizer:main/<t, epoch, per-parameter t and state>,
 *   updater/optimizer:main/hyperparam/<name> (kusari: lr, momentum, ...),
 *   updater/model:main/<parameter paths>, updater/ctx_rng (dropout RNG),
 *   stop_trigger/..., extension_triggers/<name>/..., extensions/<name>/...,
 *   _snapshot_elapsed_time.
 * The file is written to a temporary name and renamed over 'path', so an
 * interrupted save never leaves a partial file. */
int ks_trainer_save_snapshot(ks_trainer *tr, const char *path);
/* Restores a snapshot into a trainer built like the one that saved it (same
 * model, optimizer kind, iterator size and extensions; call it after
 * ks_trainer_extend, before ks_trainer_run — chainer's load_npz(path,
 * trainer)). Every entry is read and every key checked before anything
 * changes: a missing file (KS_ENOTFOUND), a corrupt one (KS_EFORMAT) or one
 * from another model (KS_ENOTFOUND / KS_ESHAPE naming the key) leaves the
 * trainer as it was. Training then continues bit for bit as the saved run
 * did (same seed and thread count). */
int ks_trainer_load_snapshot(ks_trainer *tr, const char *path);

/* ---- helpers for extension authors ---------------------------------------------- */
/* Bytes of 'text' as an int32 array (one element per byte) under 'key', and
 * the reverse (*out is malloc'd, NUL-terminated; free it). */
int ks_npz_writer_add_string(ks_npz_writer *w, const char *key, const char *text);
int ks_npz_reader_read_string(ks_npz_reader *r, const char *key, char **out);
/* Writes 'n' bytes to dir/name atomically (temporary file + rename). */
int ks_write_file_atomic(const char *dir, const char *name, const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif
