/*
 * kusari/extensions.h — built-in trainer extensions
 * (chainer.training.extensions): Evaluator, LogReport, PrintReport,
 * ProgressBar, PlotReport, snapshot, snapshot_object, ExponentialShift,
 * StepShift, LinearShift, observe_value / observe_lr, and RunLogger (kusari: forwards
 * logged values to the platform run, kusari/run.h).
 *
 * Every constructor returns a new extension for ks_trainer_extend, or NULL
 * with ks_error_last() set (ks_trainer_extend then returns that error).
 * Default trigger / priority of each is given as (trigger; priority).
 *
 * PrintReport, PlotReport and RunLogger read the entries of a LogReport
 * (registered under 'log_report', default "LogReport"), as Chainer's
 * PrintReport does: register them after the LogReport so that they see an
 * entry in the iteration it is made.
 */
#ifndef KUSARI_EXTENSIONS_H
#define KUSARI_EXTENSIONS_H

#include <stdio.h>
#include "kusari/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Evaluator ((1, epoch); writer) ------------------------------------------------
 * Runs the model over one sweep of 'it' (reset first; repeat = 0) in test
 * mode without backprop, and reports the mean over batches of each value the
 * loss function reported (like Chainer's Evaluator: a DictSummary of
 * per-batch values, each with weight 1) as "<name>/main/<key>", e.g.
 * "validation/main/loss". Uses its own ctx. Nothing is owned. */
typedef struct ks_evaluator_opts {
  ks_lossfun lossfun;          /* NULL: ks_classifier_lossfun */
  void *lossfun_user;
  ks_converter_fn converter;   /* NULL: ks_concat_examples    */
  void *converter_user;
} ks_evaluator_opts;
ks_extension *ks_evaluator_new(ks_serial_iterator *it, const ks_dataset *ds, ks_link *model,
                               const ks_evaluator_opts *opts);
/* Runs one evaluation now; the means go to 'rep' under "<prefix>main/". */
int ks_evaluator_evaluate(ks_extension *ev, ks_reporter *rep, const char *prefix);

/* ---- LogReport (every iteration; reader) -------------------------------------------
 * Accumulates the observation (all keys, or keys[0..nkeys)) every iteration;
 * when 'trigger' fires (default (1, epoch)) appends an entry {means...,
 * "epoch", "iteration", "elapsed_time"} and rewrites out/<filename>
 * (default "log") atomically as a JSON list with indent 4, the file Chainer
 * writes. The log is part of snapshots. */
ks_extension *ks_log_report_new(const char *const *keys, int nkeys, ks_trigger trigger,
                                const char *filename);
/* Number of entries, and a value of entry i (KS_ENOTFOUND if absent). */
int ks_log_report_size(const ks_extension *lr);
int ks_log_report_get(const ks_extension *lr, int i, const char *key, double *value);

/* ---- PrintReport (every iteration; reader) -----------------------------------------
 * Prints the chosen entries of new log entries as an aligned table (columns
 * max(10, len(name)) wide, values as "%g"; a header first), to 'out'
 * (NULL: stdout). */
ks_extension *ks_print_report_new(const char *const *entries, int n, const char *log_report,
                                  FILE *out);

/* ---- ProgressBar (every iteration; reader) -----------------------------------------
 * Every 'update_interval' iterations (0: 100) draws the total and epoch
 * progress bars, iterations/s and the estimated time left. Prints nothing
 * when 'out' (NULL: stdout) is not a terminal. The training length is the
 * stop trigger's. */
ks_extension *ks_progress_bar_new(int64_t update_interval, FILE *out);

/* ---- PlotReport (every iteration; reader) ------------------------------------------
 * When the LogReport has a new entry, draws y_keys against x_key ("epoch"
 * or "iteration"; NULL: "epoch") as lines with markers, axes, ticks and a
 * legend, and writes out/<filename> (a PNG, atomically) through cairo. */
ks_extension *ks_plot_report_new(const char *const *y_keys, int n, const char *x_key,
                                 const char *filename, const char *log_report);

/* ---- snapshot ((1, epoch); KS_PRIORITY_SNAPSHOT) -----------------------------------
 * Saves the trainer (ks_trainer_save_snapshot) as out/<filename>, where
 * "{.updater.iteration}" and "{.updater.epoch}" in 'filename' are replaced
 * by the counters (NULL: Chainer's "snapshot_iter_{.updater.iteration}").
 * The snapshots of a pattern are the files of out/ named like it with
 * digits for the placeholders; newest means most recently modified (as in
 * Chainer), then the highest numbers.
 * n_retains > 0: after each save, only the newest n_retains snapshots of the
 * pattern stay in out/, including those an earlier process wrote (a run
 * resumed there goes on pruning them, as Chainer's n_retains does).
 * Without n_retains they accumulate, one per save, as in Chainer. */
ks_extension *ks_snapshot_new(const char *filename, int n_retains);

typedef struct ks_snapshot_opts {
  const char *filename;  /* NULL: "snapshot_iter_{.updater.iteration}" */
  int n_retains;         /* 0: keep all                                 */
  /* Chainer's autoload: when the trainer starts (ks_trainer_run, before any
   * extension's initialize) the newest snapshot of the pattern in out/ is
   * loaded, so rerunning the same command after a kill or a preemption
   * resumes; none there is a first start. A load that fails fails the run. */
  int autoload;
} ks_snapshot_opts;
/* opts NULL: the defaults (ks_snapshot_new(NULL, 0)). */
ks_extension *ks_snapshot_new_ex(const ks_snapshot_opts *opts);

/* ---- snapshot_object ((1, epoch); KS_PRIORITY_SNAPSHOT) ----------------------------
 * chainer.training.extensions.snapshot_object: saves 'link' alone with
 * ks_save_npz (its parameters and persistent values under their paths
 * relative to it, e.g. the predictor of a Classifier as "conv1/W") as
 * out/<filename>, with the placeholders of snapshot, e.g.
 * "model_epoch_{.updater.epoch}"; n_retains as for snapshot. The link is not
 * owned. Not part of trainer snapshots (nothing to resume). */
ks_extension *ks_snapshot_object_new(ks_link *link, const char *filename, int n_retains);

/* The newest snapshot of pattern 'filename' (NULL: the default) in 'dir',
 * as "dir/name" in path[0..n). KS_ENOTFOUND (message set) when there is
 * none or no such directory. A program's -r/--resume DIR. */
int ks_snapshot_find_latest(const char *dir, const char *filename, char *path, size_t n);

/* ---- hyperparameter schedules (every iteration; reader) ------------------------------
 * Each sets the optimizer's hyperparameter 'attr' ("lr", "alpha", ...;
 * kusari/optimizer.h) — of 'opt', or of the updater's optimizer when NULL —
 * to its initial value at initialize (to the last value set, after a
 * resume), and to the schedule's value at t = 1, 2, ... each time it runs.
 * 'init' NAN: the optimizer's value at initialize. Their t and last value
 * are part of snapshots.
 *   ExponentialShift: init * rate^t, clipped at 'target' (NAN: none) from
 *                     the side it approaches.
 *   StepShift:        init * gamma^floor(t / step), clipped like above.
 *   LinearShift:      v0 for t <= t0, v1 for t >= t1, linear in between. */
ks_extension *ks_exponential_shift_new(const char *attr, double rate, double init, double target,
                                       ks_optimizer *opt);
ks_extension *ks_step_shift_new(const char *attr, double gamma, int64_t step, double init,
                                double target, ks_optimizer *opt);
ks_extension *ks_linear_shift_new(const char *attr, double v0, double v1, int64_t t0, int64_t t1,
                                  ks_optimizer *opt);

/* ---- observe_value / observe_lr ((1, iteration); writer) ----------------------------
 * Reports fn(trainer, user) under 'key' every time it runs. observe_lr
 * reports ks_optimizer_lr of 'opt' (NULL: the updater's) as 'key' (NULL:
 * "lr"). */
typedef double (*ks_observe_fn)(ks_trainer *tr, void *user);
ks_extension *ks_observe_value_new(const char *key, ks_observe_fn fn, void *user);
ks_extension *ks_observe_lr_new(const char *key, ks_optimizer *opt);

/* ---- RunLogger (every iteration; reader) ----------------------------------------------
 * Forwards the chosen keys (NULL: every key) of each new LogReport entry to
 * the current run with ks_run_log (kusari/run.h); offline it stores nothing
 * and never fails. */
ks_extension *ks_run_logger_new(const char *const *keys, int nkeys, const char *log_report);

#ifdef __cplusplus
}
#endif
#endif
