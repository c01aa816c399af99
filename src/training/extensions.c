/*
 * src/training/extensions.c — built-in trainer extensions
 * (chainer.training.extensions): Evaluator, LogReport, PrintReport,
 * ProgressBar, snapshot, ExponentialShift / StepShift / LinearShift,
 * observe_value / observe_lr and RunLogger. PlotReport is in plot_report.c.
 */
#include "core/textbuf.h" /* ks__textbuf: the log and record JSON */
#include "training_impl.h"
#include "kusari/error.h"
#include "kusari/run.h"
#include "comm/comm_impl.h" /* the multi-node Evaluator, without linking src/comm */

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------- */
/* Evaluator */

typedef struct evaluator {
  ks_serial_iterator *it;
  const ks_dataset *ds;
  ks_link *model;
  ks_evaluator_opts o;
  ks_ctx *ctx;
  ks_reporter *obs;
  ks_summary *sum;
  ks_comm *comm;               /* multi-node evaluator (kusari/comm.h), or NULL */
} evaluator;

static void evaluator_free(void *p) {
  evaluator *e = p;
  if (!e) return;
  ks_ctx_free(e->ctx);
  ks_reporter_free(e->obs);
  ks_summary_free(e->sum);
  free(e);
}

/* Multi-node evaluator: each key's weighted sum and weight (the batch count)
 * are summed over the ranks, so the mean is over all ranks' batches. The
 * ranks must have the same keys in the same order, checked by their count
 * and a hash. */
static int summary_over_ranks(ks_comm *comm, ks_summary *s) {
  const int n = s->n;
  double *v = malloc(sizeof(double) * (size_t)(2 * n + 2));
  if (!v) return ks_error_set(KS_ENOMEM, "out of memory");
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < n; i++)
    for (const char *k = s->e[i].key; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
  v[0] = n;
  v[1] = (double)(h >> 12);
  for (int i = 0; i < n; i++) {
    v[2 + 2 * i] = s->e[i].x;
    v[3 + 2 * i] = s->e[i].n;
  }
  const double head[2] = {v[0], v[1]};
  int rc = ks__comm_allreduce_f64(comm, v, 2 * n + 2);
  const int size = ks__comm_size(comm);
  if (rc == KS_OK && (v[0] != head[0] * size || v[1] != head[1] * size))
    rc = ks_error_set(KS_ESTATE, "multi-node Evaluator: the ranks' loss functions reported different keys "
                      "(this rank: %d keys)", n);
  for (int i = 0; i < n && rc == KS_OK; i++) {
    /* x2 (for a standard deviation) is not kept across ranks */
    s->e[i].x = v[2 + 2 * i];
    s->e[i].n = v[3 + 2 * i];
    s->e[i].x2 = 0;
  }
  free(v);
  return rc;
}

int ks_evaluator_evaluate(ks_extension *ext, ks_reporter *rep, const char *prefix) {
  evaluator *e = ks_extension_state(ext);
  if (!e || !rep) return ks_error_set(KS_EINVAL, "ks_evaluator_evaluate: NULL argument");
  int old_train = ks_ctx_set_train(e->ctx, 0), old_bp = ks_ctx_set_backprop(e->ctx, 0);
  ks_summary_reset(e->sum);
  ks_serial_iterator_reset(e->it);
  const int64_t *idx;
  int64_t n;
  int rc;
  while ((rc = ks_serial_iterator_next(e->it, &idx, &n)) == KS_OK) {
    ks_var *in[KS_UPDATER_MAX_IN] = {0};
    int n_in = 0;
    ks_reporter_clear(e->obs);
    if ((rc = e->o.converter(e->ctx, e->ds, idx, n, in, &n_in, e->o.converter_user)) != KS_OK) break;
    ks_var *loss = e->o.lossfun(e->ctx, e->model, in, n_in, e->obs, e->o.lossfun_user);
    if (!loss) { rc = ks_error_last_code() ? ks_error_last_code() : KS_EINVAL; break; }
    if ((rc = ks_summary_add_observation(e->sum, e->obs, NULL, 0)) != KS_OK) break;
    ks_ctx_reset(e->ctx);
  }
  ks_ctx_reset(e->ctx);
  ks_ctx_set_train(e->ctx, old_train);
  ks_ctx_set_backprop(e->ctx, old_bp);
  if (rc == KS_ITER_END) rc = KS_OK;
  else if (rc == KS_OK) rc = ks_error_set(KS_EINVAL, "Evaluator: the test iterator repeats (create it with repeat = 0)");
  if (rc == KS_ITER_END || rc != KS_OK) return rc;
  if (e->comm && (rc = summary_over_ranks(e->comm, e->sum)) != KS_OK) return rc;
  for (int i = 0; i < ks_summary_size(e->sum) && rc == KS_OK; i++) {
    const char *k = ks_summary_key(e->sum, i);
    double m;
    ks_summary_mean(e->sum, k, &m, NULL);
    char *full = ks__strcat3(prefix, k, NULL);
    if (!full) return ks_error_last_code();
    rc = ks_reporter_report(rep, full, m);
    free(full);
  }
  return rc;
}

static int evaluator_run(ks_extension *ext, ks_trainer *tr) {
  char *prefix = ks__strcat3(ks_extension_name(ext), "/", NULL);
  if (!prefix) return ks_error_last_code();
  int rc = ks_evaluator_evaluate(ext, ks_trainer_reporter(tr), prefix);
  free(prefix);
  return rc;
}

static const ks_extension_ops evaluator_ops = {
  .default_name = "validation",
  .default_trigger = {1, KS_EPOCH},
  .default_priority = KS_PRIORITY_WRITER,
  .run = evaluator_run,
  .free_state = evaluator_free,
};

int ks_create_multi_node_evaluator(ks_extension *ev, ks_comm *comm) {
  if (!ev || ev->ops != &evaluator_ops)
    return ks_error_set(KS_EINVAL, "ks_create_multi_node_evaluator: the extension is not an Evaluator");
  ((evaluator *)ks_extension_state(ev))->comm = comm;
  return KS_OK;
}

ks_extension *ks_evaluator_new(ks_serial_iterator *it, const ks_dataset *ds, ks_link *model,
                               const ks_evaluator_opts *opts) {
  if (!it || !ds || !model) {
    ks_error_set(KS_EINVAL, "ks_evaluator_new: NULL iterator, dataset or model");
    return NULL;
  }
  if (ks_serial_iterator_repeat(it)) {
    ks_error_set(KS_EINVAL, "ks_evaluator_new: the test iterator must not repeat (repeat = 0)");
    return NULL;
  }
  evaluator *e = calloc(1, sizeof *e);
  if (!e) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  e->it = it;
  e->ds = ds;
  e->model = model;
  if (opts) e->o = *opts;
  if (!e->o.lossfun) e->o.lossfun = ks_classifier_lossfun;
  if (!e->o.converter) e->o.converter = ks_concat_examples;
  e->ctx = ks_ctx_new();
  e->obs = ks_reporter_new();
  e->sum = ks_summary_new();
  if (!e->ctx || !e->obs || !e->sum || ks_reporter_set_prefix(e->obs, "main/") != KS_OK) {
    evaluator_free(e);
    ks_error_set(KS_ENOMEM, "out of memory");
    return NULL;
  }
  return ks_extension_new(&evaluator_ops, e);
}

/* ---------------------------------------------------------------------------- */
/* LogReport */

typedef struct log_entry {
  int n;
  char **keys;
  double *vals;
} log_entry;

typedef struct log_report {
  char **keys;
  int nkeys;
  ks_interval_trigger trigger;
  char *filename;
  ks_summary *sum;
  log_entry *log;
  int n, cap;
} log_report;

static void log_entry_clear(log_entry *e) {
  for (int i = 0; i < e->n; i++) free(e->keys[i]);
  free(e->keys);
  free(e->vals);
  *e = (log_entry){0};
}

static void log_clear(log_report *l) {
  for (int i = 0; i < l->n; i++) log_entry_clear(&l->log[i]);
  l->n = 0;
}

static void log_report_free(void *p) {
  log_report *l = p;
  if (!l) return;
  log_clear(l);
  free(l->log);
  for (int i = 0; i < l->nkeys; i++) free(l->keys[i]);
  free(l->keys);
  free(l->filename);
  ks_summary_free(l->sum);
  free(l);
}

static int entry_put(log_entry *e, const char *key, double v) {
  char **k = realloc(e->keys, (size_t)(e->n + 1) * sizeof *k);
  if (!k) return ks_error_set(KS_ENOMEM, "out of memory");
  e->keys = k;
  double *vv = realloc(e->vals, (size_t)(e->n + 1) * sizeof *vv);
  if (!vv) return ks_error_set(KS_ENOMEM, "out of memory");
  e->vals = vv;
  if (!(e->keys[e->n] = ks__strcat3(key, NULL, NULL))) return ks_error_last_code();
  e->vals[e->n++] = v;
  return KS_OK;
}

static int log_append(log_report *l, log_entry *e) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    log_entry *g = realloc(l->log, (size_t)cap * sizeof *g);
    if (!g) return ks_error_set(KS_ENOMEM, "out of memory");
    l->log = g;
    l->cap = cap;
  }
  l->log[l->n++] = *e;
  *e = (log_entry){0};
  return KS_OK;
}

static int is_int_key(const char *k) { return strcmp(k, "epoch") == 0 || strcmp(k, "iteration") == 0; }

static int log_write(log_report *l, const char *dir) {
  ks__textbuf b = {0};
  if (l->n == 0) ks__tb_printf(&b, "[]");
  else ks__tb_printf(&b, "[\n");
  for (int i = 0; i < l->n; i++) {
    log_entry *e = &l->log[i];
    ks__tb_printf(&b, "    {\n");
    for (int j = 0; j < e->n; j++) {
      ks__tb_printf(&b, "        ");
      ks__tb_json_string(&b, e->keys[j]);
      ks__tb_printf(&b, ": ");
      if (is_int_key(e->keys[j])) ks__tb_printf(&b, "%lld", (long long)e->vals[j]);
      else ks__tb_json_double(&b, e->vals[j]);
      ks__tb_printf(&b, j + 1 < e->n ? ",\n" : "\n");
    }
    ks__tb_printf(&b, i + 1 < l->n ? "    },\n" : "    }\n]");
  }
  if (b.oom) { free(b.s); return ks_error_set(KS_ENOMEM, "out of memory writing the log"); }
  int rc = ks_write_file_atomic(dir, l->filename, b.s, b.n);
  free(b.s);
  return rc;
}

static int log_report_run(ks_extension *ext, ks_trainer *tr) {
  log_report *l = ks_extension_state(ext);
  int rc = ks_summary_add_observation(l->sum, ks_trainer_reporter(tr), l->nkeys ? (const char *const *)l->keys : NULL, l->nkeys);
  if (rc != KS_OK) return rc;
  if (!ks_interval_trigger_fire(&l->trigger, ks_trainer_updater(tr))) return KS_OK;
  log_entry e = {0};
  for (int i = 0; i < ks_summary_size(l->sum) && rc == KS_OK; i++) {
    double m;
    ks_summary_mean(l->sum, ks_summary_key(l->sum, i), &m, NULL);
    rc = entry_put(&e, ks_summary_key(l->sum, i), m);
  }
  ks_updater *up = ks_trainer_updater(tr);
  if (rc == KS_OK) rc = entry_put(&e, "epoch", (double)ks_updater_epoch(up));
  if (rc == KS_OK) rc = entry_put(&e, "iteration", (double)ks_updater_iteration(up));
  if (rc == KS_OK) rc = entry_put(&e, "elapsed_time", ks_trainer_elapsed_time(tr));
  if (rc == KS_OK) rc = log_append(l, &e);
  log_entry_clear(&e);
  if (rc != KS_OK) return rc;
  ks_summary_reset(l->sum);
  return log_write(l, ks_trainer_out(tr));
}

/* snapshot: the log as text lines "key\tvalue\t...\n" (values %.17g, exact) */
static int log_report_save(ks_extension *ext, ks_npz_writer *w, const char *prefix) {
  log_report *l = ks_extension_state(ext);
  char *k = ks__strcat3(prefix, "_trigger/", NULL);
  if (!k) return ks_error_last_code();
  int rc = ks_interval_trigger_save(&l->trigger, w, k);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_summary/", NULL))) return ks_error_last_code();
  rc = ks_summary_save(l->sum, w, k);
  free(k);
  if (rc != KS_OK) return rc;
  ks__textbuf b = {0};
  ks__tb_printf(&b, "%s", "");
  for (int i = 0; i < l->n; i++) {
    for (int j = 0; j < l->log[i].n; j++) ks__tb_printf(&b, "%s\t%.17g\t", l->log[i].keys[j], l->log[i].vals[j]);
    ks__tb_printf(&b, "\n");
  }
  if (b.oom) { free(b.s); return ks_error_set(KS_ENOMEM, "out of memory"); }
  if (!(k = ks__strcat3(prefix, "_log", NULL))) { free(b.s); return ks_error_last_code(); }
  rc = ks_npz_writer_add_string(w, k, b.s);
  free(k);
  free(b.s);
  return rc;
}

static int log_report_load(ks_extension *ext, ks_npz_reader *r, const char *prefix) {
  log_report *l = ks_extension_state(ext);
  ks_interval_trigger trig = l->trigger;
  char *k = ks__strcat3(prefix, "_trigger/", NULL), *text = NULL;
  if (!k) return ks_error_last_code();
  int rc = ks_interval_trigger_load(&trig, r, k);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_log", NULL))) return ks_error_last_code();
  rc = ks_npz_reader_read_string(r, k, &text);
  free(k);
  if (rc != KS_OK) return rc;
  log_report tmp = {0};
  log_entry e = {0};
  char *save_line = NULL;
  for (char *line = strtok_r(text, "\n", &save_line); line && rc == KS_OK; line = strtok_r(NULL, "\n", &save_line)) {
    char *p = line;
    while (*p && rc == KS_OK) {
      char *tab = strchr(p, '\t');
      if (!tab) { rc = ks_error_set(KS_EFORMAT, "LogReport state: bad log line"); break; }
      *tab = 0;
      char *end;
      double v = strtod(tab + 1, &end);
      if (*end != '\t') { rc = ks_error_set(KS_EFORMAT, "LogReport state: bad value of '%s'", p); break; }
      rc = entry_put(&e, p, v);
      p = end + 1;
    }
    if (rc == KS_OK) rc = log_append(&tmp, &e);
  }
  log_entry_clear(&e);
  free(text);
  ks_summary *sum = ks_summary_new();
  if (rc == KS_OK && !sum) rc = ks_error_last_code();
  if (rc == KS_OK) {
    if (!(k = ks__strcat3(prefix, "_summary/", NULL))) rc = ks_error_last_code();
    else rc = ks_summary_load(sum, r, k);
    free(k);
  }
  if (rc != KS_OK) {
    log_clear(&tmp);
    free(tmp.log);
    ks_summary_free(sum);
    return rc;
  }
  log_clear(l);
  free(l->log);
  l->log = tmp.log;
  l->n = tmp.n;
  l->cap = tmp.cap;
  ks_summary_free(l->sum);
  l->sum = sum;
  l->trigger = trig;
  return KS_OK;
}

static const ks_extension_ops log_report_ops = {
  .default_name = "LogReport",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_READER,
  .run = log_report_run,
  .save = log_report_save,
  .load = log_report_load,
  .free_state = log_report_free,
  .rank0_only = 1,
};

ks_extension *ks_log_report_new(const char *const *keys, int nkeys, ks_trigger trigger, const char *filename) {
  log_report *l = calloc(1, sizeof *l);
  if (!l) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  if (trigger.period <= 0) trigger = KS_TRIGGER(1, KS_EPOCH);
  ks_interval_trigger_init(&l->trigger, trigger);
  l->filename = ks__strcat3(filename && *filename ? filename : "log", NULL, NULL);
  l->sum = ks_summary_new();
  if (keys && nkeys > 0) {
    l->keys = calloc((size_t)nkeys, sizeof *l->keys);
    if (l->keys) {
      l->nkeys = nkeys;
      for (int i = 0; i < nkeys; i++)
        if (!keys[i] || !(l->keys[i] = ks__strcat3(keys[i], NULL, NULL))) { log_report_free(l); ks_error_set(KS_EINVAL, "ks_log_report_new: bad key %d", i); return NULL; }
    }
  }
  if (!l->filename || !l->sum || (nkeys > 0 && keys && !l->keys)) {
    log_report_free(l);
    ks_error_set(KS_ENOMEM, "out of memory");
    return NULL;
  }
  return ks_extension_new(&log_report_ops, l);
}

static log_report *as_log_report(const ks_extension *ext) {
  return ext && ks_extension_ops_of(ext) == &log_report_ops ? ks_extension_state(ext) : NULL;
}

int ks_log_report_size(const ks_extension *ext) {
  log_report *l = as_log_report(ext);
  return l ? l->n : 0;
}

int ks_log_report_get(const ks_extension *ext, int i, const char *key, double *value) {
  log_report *l = as_log_report(ext);
  if (!l || !key || i < 0 || i >= l->n) return KS_ENOTFOUND;
  for (int j = 0; j < l->log[i].n; j++)
    if (strcmp(l->log[i].keys[j], key) == 0) {
      if (value) *value = l->log[i].vals[j];
      return KS_OK;
    }
  return KS_ENOTFOUND;
}

/* the LogReport a reader extension follows */
static int find_log_report(ks_trainer *tr, const char *name, const char *who, ks_extension **out) {
  ks_extension *e = ks_trainer_get_extension(tr, name);
  if (!e || !as_log_report(e))
    return ks_error_set(KS_ENOTFOUND, "%s needs a LogReport registered as '%s'", who, name);
  *out = e;
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* PrintReport */

typedef struct print_report {
  char **entries;
  int n;
  char *log_name;
  FILE *out;
  int header_done;
  int seen;
} print_report;

static void print_report_free(void *p) {
  print_report *s = p;
  if (!s) return;
  for (int i = 0; i < s->n; i++) free(s->entries[i]);
  free(s->entries);
  free(s->log_name);
  free(s);
}

static int print_report_run(ks_extension *ext, ks_trainer *tr) {
  print_report *s = ks_extension_state(ext);
  ks_extension *lr = NULL;
  int rc = find_log_report(tr, s->log_name, "PrintReport", &lr);
  if (rc != KS_OK) return rc;
  FILE *out = s->out ? s->out : stdout;
  if (!s->header_done) {
    for (int i = 0; i < s->n; i++) {
      int w = (int)strlen(s->entries[i]);
      if (w < 10) w = 10;
      fprintf(out, "%-*s%s", w, s->entries[i], i + 1 < s->n ? "  " : "");
    }
    fprintf(out, "\n");
    s->header_done = 1;
  }
  for (; s->seen < ks_log_report_size(lr); s->seen++) {
    for (int i = 0; i < s->n; i++) {
      int w = (int)strlen(s->entries[i]);
      if (w < 10) w = 10;
      double v;
      if (ks_log_report_get(lr, s->seen, s->entries[i], &v) == KS_OK) fprintf(out, "%-*g  ", w, v);
      else fprintf(out, "%*s", w + 2, "");
    }
    fprintf(out, "\n");
  }
  fflush(out);
  return KS_OK;
}

static const ks_extension_ops print_report_ops = {
  .default_name = "PrintReport",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_READER,
  .run = print_report_run,
  .free_state = print_report_free,
  .rank0_only = 1,
};

ks_extension *ks_print_report_new(const char *const *entries, int n, const char *log_name, FILE *out) {
  if (!entries || n < 1) { ks_error_set(KS_EINVAL, "ks_print_report_new: no entries"); return NULL; }
  print_report *s = calloc(1, sizeof *s);
  if (!s || !(s->entries = calloc((size_t)n, sizeof *s->entries))) {
    free(s);
    ks_error_set(KS_ENOMEM, "out of memory");
    return NULL;
  }
  s->n = n;
  s->out = out;
  int ok = (s->log_name = ks__strcat3(log_name ? log_name : "LogReport", NULL, NULL)) != NULL;
  for (int i = 0; i < n && ok; i++) ok = entries[i] && (s->entries[i] = ks__strcat3(entries[i], NULL, NULL));
  if (!ok) { print_report_free(s); ks_error_set(KS_EINVAL, "ks_print_report_new: bad entry"); return NULL; }
  return ks_extension_new(&print_report_ops, s);
}

/* ---------------------------------------------------------------------------- */
/* ProgressBar */

typedef struct progress_bar {
  int64_t interval;
  FILE *out;
  int active;          /* out is a terminal */
  double t0;           /* time and iteration of the previous draw */
  int64_t it0;
  double speed;
  int drawn;
} progress_bar;

static void draw_bar(FILE *out, const char *label, double rate) {
  if (rate < 0) rate = 0;
  if (rate > 1) rate = 1;
  int marks = (int)(rate * 50);
  fprintf(out, "%10s [", label);
  for (int i = 0; i < 50; i++) fputc(i < marks ? '#' : '.', out);
  fprintf(out, "] %6.2f%%\n", rate * 100);
}

static int progress_bar_initialize(ks_extension *ext, ks_trainer *tr) {
  progress_bar *p = ks_extension_state(ext);
  p->active = isatty(fileno(p->out ? p->out : stdout));
  p->t0 = ks__now();
  p->it0 = ks_updater_iteration(ks_trainer_updater(tr));
  return KS_OK;
}

static int progress_bar_run(ks_extension *ext, ks_trainer *tr) {
  progress_bar *p = ks_extension_state(ext);
  if (!p->active) return KS_OK;
  ks_updater *up = ks_trainer_updater(tr);
  int64_t it = ks_updater_iteration(up);
  if (it % p->interval != 0) return KS_OK;
  FILE *out = p->out ? p->out : stdout;
  double now = ks__now();
  if (it > p->it0 && now > p->t0) p->speed = (double)(it - p->it0) / (now - p->t0);
  p->t0 = now;
  p->it0 = it;
  ks_trigger stop = ks_trainer_stop_trigger(tr);
  double epoch_detail = ks_updater_epoch_detail(up);
  ks_serial_iterator *iter = ks_updater_iterator(up);
  double iters_per_epoch = (double)ks_serial_iterator_size(iter) / (double)ks_serial_iterator_batch_size(iter);
  double rate, left_iters;
  if (stop.unit == KS_EPOCH) {
    rate = epoch_detail / (double)stop.period;
    left_iters = ((double)stop.period - epoch_detail) * iters_per_epoch;
  } else {
    rate = (double)it / (double)stop.period;
    left_iters = stop.period - (double)it;
  }
  fprintf(out, "\033[J");
  draw_bar(out, "total", rate);
  draw_bar(out, "this epoch", epoch_detail - floor(epoch_detail));
  if (stop.unit == KS_EPOCH)
    fprintf(out, "%10lld iter, %lld epoch / %g epochs\n", (long long)it, (long long)ks_updater_epoch(up), stop.period);
  else
    fprintf(out, "%10lld iter, %lld epoch / %.0f iterations\n", (long long)it, (long long)ks_updater_epoch(up), stop.period);
  if (p->speed > 0) {
    double eta = left_iters > 0 ? left_iters / p->speed : 0;
    long long s = (long long)eta;
    fprintf(out, "%10.5g iters/sec. Estimated time to finish: %lld:%02lld:%02lld.\n", p->speed, s / 3600, s / 60 % 60, s % 60);
  } else {
    fprintf(out, "%10s iters/sec. Estimated time to finish: -.\n", "-");
  }
  fprintf(out, "\033[4A");
  fflush(out);
  p->drawn = 1;
  return KS_OK;
}

static void progress_bar_finalize(ks_extension *ext, ks_trainer *tr) {
  (void)tr;
  progress_bar *p = ks_extension_state(ext);
  if (p->active && p->drawn) {
    FILE *out = p->out ? p->out : stdout;
    fprintf(out, "\033[J");
    fflush(out);
  }
}

static const ks_extension_ops progress_bar_ops = {
  .default_name = "ProgressBar",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_READER,
  .initialize = progress_bar_initialize,
  .run = progress_bar_run,
  .finalize = progress_bar_finalize,
  .free_state = free,
  .rank0_only = 1,
};

ks_extension *ks_progress_bar_new(int64_t update_interval, FILE *out) {
  progress_bar *p = calloc(1, sizeof *p);
  if (!p) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  p->interval = update_interval > 0 ? update_interval : 100;
  p->out = out;
  return ks_extension_new(&progress_bar_ops, p);
}

/* ---------------------------------------------------------------------------- */
/* snapshot */

typedef struct snapshot_ext {
  char *pattern;
  int n_retains;
  int autoload;
  ks_link *target;    /* snapshot_object: this link alone (not owned) */
} snapshot_ext;

static void snapshot_free(void *p) {
  snapshot_ext *s = p;
  if (!s) return;
  free(s->pattern);
  free(s);
}

#define PH_ITER "{.updater.iteration}"
#define PH_EPOCH "{.updater.epoch}"

static size_t placeholder_len(const char *p) {
  if (strncmp(p, PH_ITER, sizeof PH_ITER - 1) == 0) return sizeof PH_ITER - 1;
  if (strncmp(p, PH_EPOCH, sizeof PH_EPOCH - 1) == 0) return sizeof PH_EPOCH - 1;
  return 0;
}

static char *format_name(const char *pattern, const ks_updater *up) {
  ks__textbuf b = {0};
  ks__tb_printf(&b, "%s", "");
  const char *p = pattern;
  while (*p) {
    size_t ph = placeholder_len(p);
    if (ph) ks__tb_printf(&b, "%lld", (long long)(ph == sizeof PH_ITER - 1 ? ks_updater_iteration(up) : ks_updater_epoch(up)));
    else ks__tb_printf(&b, "%c", *p);
    p += ph ? ph : 1;
  }
  if (b.oom) { free(b.s); ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  return b.s;
}

/* ---- the snapshots already in a directory -------------------------------------
 * A file is one of the pattern's snapshots when it is the pattern with each
 * placeholder replaced by digits (so libzip's temporary "snapshot_iter_600.XXXXXX"
 * of a save that was killed never counts). Newest first: by modification time,
 * as Chainer's snapshot extension orders them (_find_latest_snapshot,
 * _find_stale_snapshots), so that after resuming from an older snapshot the
 * files the resumed run writes count as newer than those the first run left
 * with higher numbers; equal times by the numbers in the name. */
typedef struct snap_file {
  char *name;
  struct timespec mtime;
  int64_t num[4];
  int nnum;
} snap_file;

static int match_snapshot_name(const char *pattern, const char *name, snap_file *f) {
  const char *p = pattern, *q = name;
  f->nnum = 0;
  while (*p) {
    size_t ph = placeholder_len(p);
    if (!ph) {
      if (*p++ != *q++) return 0;
      continue;
    }
    if (*q < '0' || *q > '9') return 0;
    int64_t v = 0;
    while (*q >= '0' && *q <= '9') {
      if (v > (INT64_MAX - 9) / 10) return 0;
      v = v * 10 + (*q++ - '0');
    }
    if (f->nnum < 4) f->num[f->nnum++] = v;
    p += ph;
  }
  return *q == '\0';
}

static int snap_newer_first(const void *a, const void *b) {
  const snap_file *x = a, *y = b;
  if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec > y->mtime.tv_sec ? -1 : 1;
  if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec > y->mtime.tv_nsec ? -1 : 1;
  for (int i = 0; i < x->nnum && i < y->nnum; i++)
    if (x->num[i] != y->num[i]) return x->num[i] > y->num[i] ? -1 : 1;
  return -strcmp(x->name, y->name);
}

static void snap_files_free(snap_file *f, int n) {
  for (int i = 0; i < n; i++) free(f[i].name);
  free(f);
}

/* The pattern's snapshots in dir, newest first (*out NULL when none). A
 * missing directory has none. */
static int scan_snapshots(const char *dir, const char *pattern, snap_file **out, int *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return KS_OK;
    return ks_error_set(KS_EIO, "cannot list '%s': %s", dir, strerror(errno));
  }
  snap_file *f = NULL;
  int cnt = 0, cap = 0, rc = KS_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    snap_file sf = {0};
    if (!match_snapshot_name(pattern, e->d_name, &sf)) continue;
    char *path = ks__strcat3(dir, "/", e->d_name);
    struct stat st;
    if (!path) { rc = ks_error_last_code(); break; }
    int ok = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    if (!ok) continue;
    sf.mtime = st.st_mtim;
    if (!(sf.name = ks__strcat3(e->d_name, NULL, NULL))) { rc = ks_error_last_code(); break; }
    if (cnt == cap) {
      cap = cap ? 2 * cap : 16;
      snap_file *nf = realloc(f, (size_t)cap * sizeof *nf);
      if (!nf) { free(sf.name); rc = ks_error_set(KS_ENOMEM, "out of memory"); break; }
      f = nf;
    }
    f[cnt++] = sf;
  }
  closedir(d);
  if (rc != KS_OK) { snap_files_free(f, cnt); return rc; }
  if (cnt) qsort(f, (size_t)cnt, sizeof *f, snap_newer_first);
  *out = f;
  *n = cnt;
  return KS_OK;
}

int ks_snapshot_find_latest(const char *dir, const char *filename, char *path, size_t n) {
  if (!dir || !path || n == 0) return ks_error_set(KS_EINVAL, "ks_snapshot_find_latest: NULL argument");
  path[0] = '\0';
  const char *pattern = filename ? filename : "snapshot_iter_" PH_ITER;
  snap_file *f;
  int cnt, rc = scan_snapshots(dir, pattern, &f, &cnt);
  if (rc != KS_OK) return rc;
  if (cnt == 0) return ks_error_set(KS_ENOTFOUND, "no snapshot named like '%s' in '%s'", pattern, dir);
  if ((size_t)snprintf(path, n, "%s/%s", dir, f[0].name) >= n)
    rc = ks_error_set(KS_EINVAL, "ks_snapshot_find_latest: the path of '%s' does not fit in %zu bytes", f[0].name, n);
  snap_files_free(f, cnt);
  return rc;
}

static int snapshot_run(ks_extension *ext, ks_trainer *tr) {
  snapshot_ext *s = ks_extension_state(ext);
  char *name = format_name(s->pattern, ks_trainer_updater(tr));
  if (!name) return ks_error_last_code();
  char *path = ks__strcat3(ks_trainer_out(tr), "/", name);
  free(name);
  if (!path) return ks_error_last_code();
  int rc = s->target ? ks_save_npz(path, s->target) : ks_trainer_save_snapshot(tr, path);
  free(path);
  if (rc != KS_OK || s->n_retains <= 0) return rc;
  /* the newest n_retains of the directory stay, whichever process wrote
   * them: a resumed run keeps pruning what the run before it left */
  snap_file *f;
  int cnt;
  if ((rc = scan_snapshots(ks_trainer_out(tr), s->pattern, &f, &cnt)) != KS_OK) return rc;
  for (int i = s->n_retains; i < cnt; i++) {
    char *old = ks__strcat3(ks_trainer_out(tr), "/", f[i].name);
    if (old) unlink(old);
    free(old);
  }
  snap_files_free(f, cnt);
  return KS_OK;
}

static const ks_extension_ops snapshot_ops = {
  .default_name = "snapshot",
  .default_trigger = {1, KS_EPOCH},
  .default_priority = KS_PRIORITY_SNAPSHOT,
  .run = snapshot_run,
  .free_state = snapshot_free,
};

int ks__snapshot_autoload(ks_trainer *tr) {
  for (int i = 0; i < tr->n_ext; i++) {
    ks_extension *e = tr->ext[i];
    const snapshot_ext *s = e->ops == &snapshot_ops ? e->state : NULL;
    if (!s || !s->autoload) continue;
    char path[8192];
    int rc = ks_snapshot_find_latest(tr->out, s->pattern, path, sizeof path);
    if (rc == KS_ENOTFOUND) continue;  /* a first start: nothing to load */
    if (rc == KS_OK) rc = ks_trainer_load_snapshot(tr, path);
    return rc;
  }
  return KS_OK;
}

ks_extension *ks_snapshot_new_ex(const ks_snapshot_opts *opts) {
  const ks_snapshot_opts none = {0};
  if (!opts) opts = &none;
  const char *filename = opts->filename;
  if (filename && (!*filename || strchr(filename, '/'))) {
    ks_error_set(KS_EINVAL, "ks_snapshot_new: file name '%s' must be a plain name", filename);
    return NULL;
  }
  snapshot_ext *s = calloc(1, sizeof *s);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  s->pattern = ks__strcat3(filename ? filename : "snapshot_iter_" PH_ITER, NULL, NULL);
  s->n_retains = opts->n_retains > 0 ? opts->n_retains : 0;
  s->autoload = !!opts->autoload;
  if (!s->pattern) { snapshot_free(s); ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  return ks_extension_new(&snapshot_ops, s);
}

ks_extension *ks_snapshot_new(const char *filename, int n_retains) {
  return ks_snapshot_new_ex(&(ks_snapshot_opts){.filename = filename, .n_retains = n_retains});
}

/* snapshot_object: the same extension with a link as its target and its own
 * ops (autoload is for trainer snapshots only) */
static const ks_extension_ops snapshot_object_ops = {
  .default_name = "snapshot_object",
  .default_trigger = {1, KS_EPOCH},
  .default_priority = KS_PRIORITY_SNAPSHOT,
  .run = snapshot_run,
  .free_state = snapshot_free,
  .rank0_only = 1,
};

ks_extension *ks_snapshot_object_new(ks_link *link, const char *filename, int n_retains) {
  if (!link || !filename || !*filename || strchr(filename, '/')) {
    ks_error_set(KS_EINVAL, "ks_snapshot_object_new: a link and a plain file name are required, got '%s'",
                 filename ? filename : "(null)");
    return NULL;
  }
  snapshot_ext *s = calloc(1, sizeof *s);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  s->pattern = ks__strcat3(filename, NULL, NULL);
  s->n_retains = n_retains > 0 ? n_retains : 0;
  s->target = link;
  if (!s->pattern) { snapshot_free(s); ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  return ks_extension_new(&snapshot_object_ops, s);
}

/* ---------------------------------------------------------------------------- */
/* hyperparameter schedules */

typedef enum { SHIFT_EXP, SHIFT_STEP, SHIFT_LINEAR } shift_kind;

typedef struct shift {
  shift_kind kind;
  char *attr;
  double rate, init, target, v0, v1;
  int64_t step, t0, t1;
  ks_optimizer *opt;
  int64_t t;
  double last;       /* NAN: none yet */
} shift;

static void shift_free(void *p) {
  shift *s = p;
  if (!s) return;
  free(s->attr);
  free(s);
}

static ks_optimizer *shift_opt(shift *s, ks_trainer *tr) {
  return s->opt ? s->opt : ks_updater_optimizer(ks_trainer_updater(tr));
}

static double clip_target(double value, double rate, double target) {
  if (isnan(target)) return value;
  if (rate > 1) return value / target > 1 ? target : value;
  return value / target < 1 ? target : value;
}

static double shift_value(const shift *s) {
  switch (s->kind) {
    case SHIFT_EXP: return clip_target(s->init * pow(s->rate, (double)s->t), s->rate, s->target);
    case SHIFT_STEP: return clip_target(s->init * pow(s->rate, floor((double)s->t / (double)s->step)), s->rate, s->target);
    case SHIFT_LINEAR:
    default:
      if (s->t <= s->t0) return s->v0;
      if (s->t >= s->t1) return s->v1;
      return s->v0 + (double)(s->t - s->t0) / (double)(s->t1 - s->t0) * (s->v1 - s->v0);
  }
}

static int shift_set(shift *s, ks_trainer *tr, double v) {
  int rc = ks_optimizer_set_hyperparam(shift_opt(s, tr), s->attr, v);
  if (rc == KS_OK) s->last = v;
  return rc;
}

static int shift_initialize(ks_extension *ext, ks_trainer *tr) {
  shift *s = ks_extension_state(ext);
  ks_optimizer *opt = shift_opt(s, tr);
  if (s->kind != SHIFT_LINEAR && isnan(s->init)) {
    int rc = ks_optimizer_get_hyperparam(opt, s->attr, &s->init);
    if (rc != KS_OK) return rc;
  }
  if (!isnan(s->last)) return shift_set(s, tr, s->last);
  return shift_set(s, tr, s->kind == SHIFT_LINEAR ? shift_value(s) : s->init);
}

static int shift_run(ks_extension *ext, ks_trainer *tr) {
  shift *s = ks_extension_state(ext);
  s->t++;
  return shift_set(s, tr, shift_value(s));
}

static int shift_save(ks_extension *ext, ks_npz_writer *w, const char *prefix) {
  shift *s = ks_extension_state(ext);
  char *k = ks__strcat3(prefix, "_t", NULL);
  if (!k) return ks_error_last_code();
  int rc = ks_npz_writer_add_int64(w, k, s->t);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_last_value", NULL))) return ks_error_last_code();
  rc = ks__npz_add_f64(w, k, s->last);
  free(k);
  if (rc != KS_OK) return rc;
  /* kusari: also the initial value, which initialize would otherwise take
   * from the optimizer, whose value the snapshot has already restored */
  if (!(k = ks__strcat3(prefix, "_init", NULL))) return ks_error_last_code();
  rc = ks__npz_add_f64(w, k, s->init);
  free(k);
  return rc;
}

static int shift_load(ks_extension *ext, ks_npz_reader *r, const char *prefix) {
  shift *s = ks_extension_state(ext);
  int64_t t;
  double last, init;
  char *k = ks__strcat3(prefix, "_t", NULL);
  if (!k) return ks_error_last_code();
  int rc = ks__npz_read_i64(r, k, &t);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_last_value", NULL))) return ks_error_last_code();
  rc = ks__npz_read_f64(r, k, &last);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_init", NULL))) return ks_error_last_code();
  rc = ks__npz_read_f64(r, k, &init);
  free(k);
  if (rc != KS_OK) return rc;
  s->t = t;
  s->last = last;
  s->init = init;
  return KS_OK;
}

#define SHIFT_OPS(var, nm)                                                                 \
  static const ks_extension_ops var = {                                                    \
    .default_name = nm, .default_trigger = {1, KS_ITERATION},                               \
    .default_priority = KS_PRIORITY_READER, .initialize = shift_initialize,                 \
    .run = shift_run, .save = shift_save, .load = shift_load, .free_state = shift_free}
SHIFT_OPS(exp_shift_ops, "ExponentialShift");
SHIFT_OPS(step_shift_ops, "StepShift");
SHIFT_OPS(linear_shift_ops, "LinearShift");

static ks_extension *shift_new(const ks_extension_ops *ops, shift proto) {
  if (!proto.attr || !*proto.attr) { ks_error_set(KS_EINVAL, "%s: no attribute name", ops->default_name); return NULL; }
  shift *s = malloc(sizeof *s);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  *s = proto;
  s->t = 0;
  s->last = NAN;
  if (!(s->attr = ks__strcat3(proto.attr, NULL, NULL))) { free(s); return NULL; }
  return ks_extension_new(ops, s);
}

ks_extension *ks_exponential_shift_new(const char *attr, double rate, double init, double target,
                                       ks_optimizer *opt) {
  if (!(rate > 0)) { ks_error_set(KS_EINVAL, "ExponentialShift: rate must be > 0, got %g", rate); return NULL; }
  return shift_new(&exp_shift_ops, (shift){.kind = SHIFT_EXP, .attr = (char *)attr, .rate = rate,
                                           .init = init, .target = target, .opt = opt});
}

ks_extension *ks_step_shift_new(const char *attr, double gamma, int64_t step, double init, double target,
                                ks_optimizer *opt) {
  if (step < 1) { ks_error_set(KS_EINVAL, "StepShift: step must be >= 1, got %lld", (long long)step); return NULL; }
  return shift_new(&step_shift_ops, (shift){.kind = SHIFT_STEP, .attr = (char *)attr, .rate = gamma,
                                            .step = step, .init = init, .target = target, .opt = opt});
}

ks_extension *ks_linear_shift_new(const char *attr, double v0, double v1, int64_t t0, int64_t t1,
                                  ks_optimizer *opt) {
  if (t1 <= t0) { ks_error_set(KS_EINVAL, "LinearShift: needs t0 < t1, got %lld, %lld", (long long)t0, (long long)t1); return NULL; }
  return shift_new(&linear_shift_ops, (shift){.kind = SHIFT_LINEAR, .attr = (char *)attr, .v0 = v0,
                                              .v1 = v1, .t0 = t0, .t1 = t1, .init = NAN, .target = NAN, .opt = opt});
}

/* ---------------------------------------------------------------------------- */
/* observe_value / observe_lr */

typedef struct observe {
  char *key;
  ks_observe_fn fn;
  void *user;
  ks_optimizer *opt;
} observe;

static void observe_free(void *p) {
  observe *o = p;
  if (!o) return;
  free(o->key);
  free(o);
}

static int observe_run(ks_extension *ext, ks_trainer *tr) {
  observe *o = ks_extension_state(ext);
  return ks_reporter_report(ks_trainer_reporter(tr), o->key, o->fn(tr, o->user));
}

static const ks_extension_ops observe_ops = {
  .default_name = "observe_value",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_WRITER,
  .run = observe_run,
  .free_state = observe_free,
};
static const ks_extension_ops observe_lr_ops = {
  .default_name = "observe_lr",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_WRITER,
  .run = observe_run,
  .free_state = observe_free,
};

static ks_extension *observe_new(const ks_extension_ops *ops, const char *key, ks_observe_fn fn, void *user, ks_optimizer *opt) {
  if (!key || !*key || !fn) { ks_error_set(KS_EINVAL, "observe_value: needs a key and a function"); return NULL; }
  observe *o = calloc(1, sizeof *o);
  if (!o || !(o->key = ks__strcat3(key, NULL, NULL))) { free(o); ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  o->fn = fn;
  o->user = user;
  o->opt = opt;
  return ks_extension_new(ops, o);
}

ks_extension *ks_observe_value_new(const char *key, ks_observe_fn fn, void *user) {
  return observe_new(&observe_ops, key, fn, user, NULL);
}

static double observe_lr_fn(ks_trainer *tr, void *user) {
  ks_optimizer *opt = user ? (ks_optimizer *)user : ks_updater_optimizer(ks_trainer_updater(tr));
  return ks_optimizer_lr(opt);
}

ks_extension *ks_observe_lr_new(const char *key, ks_optimizer *opt) {
  return observe_new(&observe_lr_ops, key ? key : "lr", observe_lr_fn, opt, opt);
}

/* ---------------------------------------------------------------------------- */
/* RunLogger */

typedef struct run_logger {
  char **keys;
  int nkeys;
  char *log_name;
  int seen;
  int warned;
} run_logger;

static void run_logger_free(void *p) {
  run_logger *s = p;
  if (!s) return;
  for (int i = 0; i < s->nkeys; i++) free(s->keys[i]);
  free(s->keys);
  free(s->log_name);
  free(s);
}

static int run_logger_run(ks_extension *ext, ks_trainer *tr) {
  run_logger *s = ks_extension_state(ext);
  ks_extension *lrx = NULL;
  int rc = find_log_report(tr, s->log_name, "RunLogger", &lrx);
  if (rc != KS_OK) return rc;
  log_report *l = as_log_report(lrx);
  ks_run *run = ks_run_current();
  for (; s->seen < l->n; s->seen++) {
    log_entry *e = &l->log[s->seen];
    for (int j = 0; j < e->n; j++) {
      int want = s->nkeys == 0;
      for (int k = 0; k < s->nkeys && !want; k++) want = strcmp(s->keys[k], e->keys[j]) == 0;
      if (!want) continue;
      if (ks_run_log(run, e->keys[j], e->vals[j]) != KS_OK && !s->warned) {
        fprintf(stderr, "kusari: RunLogger: cannot log '%s' to the run: %s (training goes on)\n", e->keys[j], ks_error_last());
        s->warned = 1;
      }
    }
  }
  ks_error_clear();
  return KS_OK;
}

static void run_logger_finalize(ks_extension *ext, ks_trainer *tr) {
  (void)ext;
  (void)tr;
  ks_run_flush(ks_run_current());
}

/* kusari: how many of the LogReport's entries were sent to the run, kept in
 * the snapshot beside the LogReport's log: a trainer resumed from it (a
 * requeued or preempted job's --autoload) goes on with the next entry
 * instead of sending the restored ones again. A snapshot without the key
 * (taken before it was kept) starts from 0, as before. */
static int run_logger_save(ks_extension *ext, ks_npz_writer *w, const char *prefix) {
  run_logger *s = ks_extension_state(ext);
  char *k = ks__strcat3(prefix, "_seen", NULL);
  if (!k) return ks_error_last_code();
  int rc = ks_npz_writer_add_int64(w, k, s->seen);
  free(k);
  return rc;
}

static int run_logger_load(ks_extension *ext, ks_npz_reader *r, const char *prefix) {
  run_logger *s = ks_extension_state(ext);
  char *k = ks__strcat3(prefix, "_seen", NULL);
  if (!k) return ks_error_last_code();
  int rc = KS_OK;
  int64_t seen = 0;
  if (ks_npz_reader_info(r, k, NULL) == KS_ENOTFOUND) ks_error_clear();
  else if ((rc = ks__npz_read_i64(r, k, &seen)) == KS_OK && (seen < 0 || seen > INT32_MAX))
    rc = ks_error_set(KS_EFORMAT, "RunLogger state: bad count of entries sent (%lld)", (long long)seen);
  free(k);
  if (rc == KS_OK) s->seen = (int)seen;
  return rc;
}

static const ks_extension_ops run_logger_ops = {
  .default_name = "RunLogger",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_READER,
  .run = run_logger_run,
  .save = run_logger_save,
  .load = run_logger_load,
  .finalize = run_logger_finalize,
  .free_state = run_logger_free,
  .rank0_only = 1,
};

ks_extension *ks_run_logger_new(const char *const *keys, int nkeys, const char *log_name) {
  run_logger *s = calloc(1, sizeof *s);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  int ok = (s->log_name = ks__strcat3(log_name ? log_name : "LogReport", NULL, NULL)) != NULL;
  if (ok && keys && nkeys > 0) {
    ok = (s->keys = calloc((size_t)nkeys, sizeof *s->keys)) != NULL;
    if (ok) s->nkeys = nkeys;
    for (int i = 0; i < nkeys && ok; i++) ok = keys[i] && (s->keys[i] = ks__strcat3(keys[i], NULL, NULL));
  }
  if (!ok) { run_logger_free(s); ks_error_set(KS_EINVAL, "ks_run_logger_new: bad keys"); return NULL; }
  return ks_extension_new(&run_logger_ops, s);
}
