/*
 * platform/cmd_sweep.c — hyperparameter sweeps (HyperDrive):
 * `kusari sweep submit|show|best|wait|cancel|resume|list|plot|delete`, and the sweep
 * controller, a detached process (`kusari sweep __control ID FD`, started like
 * a run's supervisor) that submits the child runs, keeps at most
 * max_concurrent_runs of them active, reads their primary metric from the
 * store, applies the early termination policy and ends the parent run.
 *
 * A sweep is a parent run (runs row, compute "sweep:<target>", its
 * supervisor_pid is the controller, so reconciliation notices a dead
 * controller) + a sweeps row (the resolved sweep file) + one sweep_trials row
 * per child (index, parameter values, its run, how far the policy looked at
 * it, the decision that terminated it). Trials are written before their child
 * is submitted, and children carry the tag sweep_index, so a resumed
 * controller neither loses nor repeats a child. The pure parts (file,
 * expressions, samplers, policy rules) are in sweep_space.c.
 */
#include "kp.h"
#include "sweep.h"
#include "manage.h"
#include "views.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JS(o, k) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k))

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int open_ws(kp_ws *ws) {
  if (kp_ws_open(ws) != 0) { kp_ws_close(ws); return -1; }
  kp_reconcile(ws);
  return 0;
}

/* ---- loading a sweep ------------------------------------------------------------ */
typedef struct sweep {
  kp_sweep w;          /* as recorded: its parent run (w.run), the children's target, ... */
  const char *id;      /* w.run.id */
  kp_sweep_spec spec;  /* w.spec parsed */
} sweep;

static void sweep_free(sweep *s) {
  kp_sweep_free(&s->w);
  kp_sweep_spec_free(&s->spec);
}

/* When the sweep started (its parent run). */
static double sweep_started(const sweep *s) { return s->w.run.started ? s->w.run.started : s->w.run.created; }

/* Loads sweep 'id'; 0, or -1 with an error printed (no such sweep). */
static int sweep_load(kp_ws *ws, const char *id, sweep *s) {
  memset(s, 0, sizeof *s);
  if (kp_store_sweep_get(ws->store, id, &s->w) != 0) {
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return kp_store_report();
    kp_err("no sweep with id '%s' in this workspace", id);
    kp_hint("list sweeps with 'kusari sweep list'");
    return -1;
  }
  s->id = s->w.run.id;
  char err[1024];
  if (kp_sweep_spec_parse(s->w.spec, &s->spec, err, sizeof err) != 0) {
    kp_err("sweep %s: stored sweep file: %s", id, err);
    sweep_free(s);
    return -1;
  }
  return 0;
}

static double sweep_duration_s(const kp_sweep_spec *sp) {
  return (sp->max_duration_minutes > 0 ? sp->max_duration_minutes : 10080.0) * 60.0;
}

/* ---- children --------------------------------------------------------------------- */
typedef struct child {
  long long idx;
  char run_id[300];
  int submitting;     /* its run is not linked yet (or is gone) */
  kp_run_status status;  /* its run's; Failed when it could not be submitted */
  char *params;       /* JSON object name -> value text */
  char *decision;     /* the policy's reason, or NULL */
  char *error;        /* the run's error, or the trial's submission error */
  int evaluated;      /* intervals the policy has looked at */
  int has_best;
  double best, last;
  int nvals;
  double *vals;       /* the primary metric at intervals 1..nvals */
  double *x;          /* the point (sweep's space), or NULL when it does not parse */
} child;

typedef struct children {
  child *v;
  int n;
} children;

static void children_free(children *c) {
  for (int i = 0; i < c->n; i++) {
    free(c->v[i].params);
    free(c->v[i].decision);
    free(c->v[i].error);
    free(c->v[i].vals);
    free(c->v[i].x);
  }
  free(c->v);
  memset(c, 0, sizeof *c);
}

/* The status a child shows ("Submitting" before its run is linked). */
static const char *child_status(const child *c) { return c->submitting ? "Submitting" : kp_run_status_name(c->status); }
static int ended(const child *c) { return !c->submitting && kp_run_status_ended(c->status); }
static int active(const child *c) { return c->run_id[0] && !ended(c); }

/* Parses a trial's parameter JSON into a point of 'sp'; NULL when it does not
 * fit the space (e.g. a warm-start sweep with other parameters). */
static double *point_of(const kp_space *sp, const char *params) {
  cJSON *j = cJSON_Parse(params);
  double *x = malloc(sizeof(double) * (size_t)(sp->n ? sp->n : 1));
  int ok = j && x && cJSON_GetArraySize(j) == sp->n;
  for (int k = 0; ok && k < sp->n; k++) {
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, sp->p[k].name));
    ok = v && kp_space_value(sp, k, v, &x[k]) == 0;
  }
  cJSON_Delete(j);
  if (!ok) { free(x); return NULL; }
  return x;
}

/* Loads the trials of sweep 'id' with their runs and primary metric curves;
 * 0, or -1 with the error printed, or 1 (not printed) when there is no such
 * sweep and 'missing_ok'. */
static int children_load(kp_ws *ws, const char *id, const kp_sweep_spec *sp, children *out, int missing_ok) {
  memset(out, 0, sizeof *out);
  kp_sweep_trial *t;
  size_t n;
  if (kp_store_sweep_trial_list(ws->store, id, sp->metric, &t, &n) != 0) {
    if (missing_ok && kp_store_last_error()->code == KP_STORE_ENOTFOUND) return 1;
    return kp_store_report();
  }
  out->v = calloc(n + 1, sizeof *out->v);
  if (!out->v) {
    kp_sweep_trials_free(t, n);
    return kp_err("out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    kp_sweep_trial *tr = &t[i];
    child *c = &out->v[out->n++];
    c->idx = tr->idx;
    snprintf(c->run_id, sizeof c->run_id, "%s", tr->run_id ? tr->run_id : "");
    /* a trial whose child could not be submitted is Failed; one whose run
     * is not linked (or gone) is Submitting; else its run's status */
    c->submitting = !tr->error && !tr->has_run;
    c->status = tr->error ? KP_RUN_FAILED : tr->run_status;
    c->params = tr->params, tr->params = NULL;
    c->decision = tr->decision, tr->decision = NULL;
    if (tr->error) c->error = tr->error, tr->error = NULL;
    else c->error = tr->run_error, tr->run_error = NULL;
    c->evaluated = tr->evaluated;
    c->x = point_of(&sp->space, c->params);
    /* the curve: its finite values (NaN and infinities are no best value) */
    int k = 0;
    for (size_t j = 0; j < tr->nvalues; j++) {
      double v = tr->values[j];
      if (!isfinite(v)) continue;
      tr->values[k++] = v;
      if (!c->has_best || (sp->maximize ? v > c->best : v < c->best)) c->best = v;
      c->has_best = 1;
      c->last = v;
    }
    c->nvals = k;
    c->vals = tr->values, tr->values = NULL;
  }
  kp_sweep_trials_free(t, n);
  return 0;
}

/* The best child (index into c), or -1. completed_only: Completed children only. */
static int best_child(const children *c, int maximize, int completed_only) {
  int b = -1;
  for (int i = 0; i < c->n; i++) {
    if (!c->v[i].has_best || (completed_only && (c->v[i].submitting || c->v[i].status != KP_RUN_COMPLETED))) continue;
    if (b < 0 || (maximize ? c->v[i].best > c->v[b].best : c->v[i].best < c->v[b].best)) b = i;
  }
  return b;
}

/* ---- the controller ------------------------------------------------------------------ */
static volatile sig_atomic_t g_wake;
static void on_usr1(int sig) { (void)sig; g_wake = 1; }

static void note(const char *id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const char *id, const char *fmt, ...) {
  char t[64];
  kp_fmt_time(kp_now(), t, sizeof t);
  fprintf(stderr, "%s sweep %s: ", t, id);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* Observations for the bayesian sampler: this sweep's ended children and the
 * warm-start sweeps' children that fit the space. */
typedef struct obs {
  double *X, *y;
  int n, cap, d;
} obs;

static void obs_add(obs *o, const double *x, double y) {
  if (o->n == o->cap) {
    o->cap = o->cap ? 2 * o->cap : 32;
    o->X = realloc(o->X, (size_t)o->cap * (size_t)o->d * sizeof *o->X);
    o->y = realloc(o->y, (size_t)o->cap * sizeof *o->y);
    if (!o->X || !o->y) { o->n = 0; o->cap = 0; return; }
  }
  memcpy(o->X + (size_t)o->n * o->d, x, (size_t)o->d * sizeof *x);
  o->y[o->n++] = y;
}

/* Loads the warm-start sweeps' children (points that fit this space). */
static int load_warm(kp_ws *ws, const kp_sweep_spec *sp, children *warm) {
  memset(warm, 0, sizeof *warm);
  for (int w = 0; w < sp->nwarm; w++) {
    children c;
    int r = children_load(ws, sp->warm_start[w], sp, &c, 1);
    if (r > 0) continue;  /* deleted since: nothing to build on */
    if (r != 0) { children_free(warm); return -1; }
    void *np = realloc(warm->v, (size_t)(warm->n + c.n + 1) * sizeof *warm->v);
    if (!np) { children_free(&c); children_free(warm); return -1; }
    warm->v = np;
    memcpy(warm->v + warm->n, c.v, (size_t)c.n * sizeof *c.v);
    warm->n += c.n;
    free(c.v);
  }
  return 0;
}

/* 1 when grid point g was already run by a warm-start sweep. */
static int grid_done_before(const kp_space *sp, const children *warm, const double *g) {
  for (int i = 0; i < warm->n; i++) {
    if (!warm->v[i].x || !ended(&warm->v[i])) continue;
    int same = 1;
    for (int k = 0; k < sp->n && same; k++) same = warm->v[i].x[k] == g[k];
    if (same) return 1;
  }
  return 0;
}

/* Picks trial idx's point; 0, or 1 when the sampler has nothing left (grid,
 * or random over a finite space whose every point was drawn). */
static int next_point(const sweep *s, const children *c, const children *warm, long long idx, double *x) {
  const kp_sweep_spec *sp = &s->spec;
  int d = sp->space.n;
  if (sp->sampling == KP_SAMPLING_GRID) {
    long long size = kp_space_grid_size(&sp->space), k = -1;
    double *g = malloc((size_t)d * sizeof *g);
    for (long long i = 0; i < size; i++) {
      kp_space_grid_point(&sp->space, i, g);
      if (sp->nwarm && grid_done_before(&sp->space, warm, g)) continue;
      if (++k == idx) { memcpy(x, g, (size_t)d * sizeof *g); free(g); return 0; }
    }
    free(g);
    return 1;
  }
  if (sp->sampling == KP_SAMPLING_RANDOM) {
    /* the earlier trials' points: random sampling does not repeat one */
    double *prev = malloc(sizeof(double) * (size_t)(c->n + 1) * (size_t)(d ? d : 1));
    long long np = 0;
    for (int i = 0; prev && i < c->n; i++)
      if (c->v[i].x) memcpy(prev + (size_t)(np++) * (size_t)d, c->v[i].x, (size_t)d * sizeof *prev);
    int r = kp_sample_random_unseen(&sp->space, sp->seed, idx, prev, np, x);
    free(prev);
    return r;
  }
  obs o = {.d = d}, p = {.d = d};
  for (int pass = 0; pass < 2; pass++) {
    const children *src = pass ? warm : c;
    for (int i = 0; i < src->n; i++) {
      const child *ch = &src->v[i];
      if (!ch->x) continue;
      if (ended(ch)) {
        if (ch->has_best && isfinite(ch->best)) obs_add(&o, ch->x, ch->best);
      } else if (!pass) {
        obs_add(&p, ch->x, 0);
      }
    }
  }
  kp_bayes_info info;
  kp_bayes_next(&sp->space, o.X, o.y, o.n, p.X, p.n, sp->maximize, sp->seed, idx, x, &info);
  if (info.random) note(s->id, "trial %lld: random point (%d of %d observations before the model is used)", idx, o.n,
                        kp_bayes_n_init(d));
  else note(s->id, "trial %lld: GP on %d observations + %d pending (length scale %.3g, noise %.2g), EI %.4g", idx, o.n,
            p.n, info.length_scale, info.noise, info.ei);
  free(o.X), free(o.y), free(p.X), free(p.y);
  return 0;
}

/* Records trial idx (before its child exists), then submits the child. */
static int submit_trial(kp_ws *ws, const sweep *s, long long idx, const double *x, const char *params_json) {
  const kp_sweep_spec *sp = &s->spec;
  int d = sp->space.n;
  int nargs = sp->nargs + 2 * d;
  const char **args = calloc((size_t)nargs + 1, sizeof *args);
  const char **tags = calloc((size_t)d + 3, sizeof *tags);
  char (*vals)[128] = calloc((size_t)d + 1, sizeof *vals);
  char (*tagbuf)[400] = calloc((size_t)d + 3, sizeof *tagbuf);
  int rc = -1;
  if (!args || !tags || !vals || !tagbuf) goto out;
  int k = 0;
  for (int i = 0; i < sp->nargs; i++) args[k++] = sp->args[i];
  for (int j = 0; j < d; j++) {
    kp_space_format(&sp->space, j, x[j], vals[j], sizeof vals[j]);
    args[k++] = sp->space.p[j].arg;
    args[k++] = vals[j];
    snprintf(tagbuf[j], sizeof tagbuf[j], "%s=%s", sp->space.p[j].name, vals[j]);
    tags[j] = tagbuf[j];
  }
  snprintf(tagbuf[d], sizeof tagbuf[d], "sweep=%s", s->id);
  snprintf(tagbuf[d + 1], sizeof tagbuf[d + 1], "sweep_index=%lld", idx);
  tags[d] = tagbuf[d];
  tags[d + 1] = tagbuf[d + 1];
  kp_submit sub = {.experiment = s->w.run.experiment, .source = s->w.run.source, .snapshot = s->w.run.snapshot,
                   .entry = sp->entry, .compute = s->w.compute, .env_json = s->w.env_json, .parent_id = s->id,
                   .args = args, .nargs = k, .tags = tags, .ntags = d + 2, .nodes = sp->nodes,
                   .processes_per_node = sp->processes_per_node, .launcher = sp->mpirun};
  kp_submitted done;
  if (kp_run_submit(ws, &sub, &done) != 0) {
    if (kp_store_sweep_trial_set_error(ws->store, s->id, idx,
                                       "the child run could not be submitted; see the sweep's controller.log") != 0)
      kp_store_report();
    goto out;
  }
  if (kp_store_sweep_trial_attach_run(ws->store, s->id, idx, done.id) != 0) {
    kp_store_report();
    goto out;
  }
  rc = 0;
  note(s->id, "trial %lld: run %s %s", idx, done.id, params_json);
out:
  free(args);
  free(tags);
  free(vals);
  free(tagbuf);
  return rc;
}

static char *params_json_of(const kp_space *sp, const double *x) {
  cJSON *o = cJSON_CreateObject();
  for (int j = 0; j < sp->n; j++) {
    char v[128];
    kp_space_format(sp, j, x[j], v, sizeof v);
    cJSON_AddStringToObject(o, sp->p[j].name, v);
  }
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return t;
}

/* A trial recorded by a controller that died before submitting its child:
 * link the child if it exists (tag sweep_index), else submit it now. */
static void finish_orphan(kp_ws *ws, const sweep *s, const child *c) {
  char *found = NULL;
  if (kp_store_sweep_child_by_index(ws->store, s->id, c->idx, &found) != 0) {
    kp_store_report();
    return;
  }
  if (found) {
    if (kp_store_sweep_trial_attach_run(ws->store, s->id, c->idx, found) != 0) kp_store_report();
    note(s->id, "trial %lld: linked its run %s (submitted before a restart)", c->idx, found);
    free(found);
  } else if (c->x) {
    note(s->id, "trial %lld: recorded but never submitted (restart); submitting it now", c->idx);
    submit_trial(ws, s, c->idx, c->x, c->params);
  }
}

static void set_trial(kp_ws *ws, const char *sweep_id, long long idx, int evaluated, const char *decision) {
  if (kp_store_sweep_trial_evaluated(ws->store, sweep_id, idx, evaluated, decision) != 0) kp_store_report();
}

/* Applies the early termination policy to the active children, interval by
 * interval, each interval of each child exactly once. */
static void apply_policy(kp_ws *ws, const sweep *s, children *c) {
  const kp_sweep_spec *sp = &s->spec;
  if (sp->policy.type == KP_POLICY_NONE) return;
  kp_curve *all = calloc((size_t)c->n + 1, sizeof *all);
  if (!all) return;
  /* a terminated child counts with its values up to the interval that
   * decided it (what it logged before the cancel landed is left out, so
   * decisions do not depend on timing) */
  for (int i = 0; i < c->n; i++) {
    const child *ch = &c->v[i];
    all[i] = (kp_curve){ch->vals, ch->decision && ch->evaluated < ch->nvals ? ch->evaluated : ch->nvals};
  }
  for (int i = 0; i < c->n; i++) {
    child *ch = &c->v[i];
    if (!active(ch) || ch->decision || ch->nvals <= ch->evaluated) continue;
    char why[1024];
    int k, cancel = 0;
    for (k = ch->evaluated + 1; k <= ch->nvals; k++)
      if ((cancel = kp_policy_check(&sp->policy, sp->maximize, all, c->n, i, k, why, sizeof why))) break;
    if (cancel) {
      note(s->id, "run %s: %s", ch->run_id, why);
      set_trial(ws, s->id, ch->idx, k, why);
      ch->decision = strdup(why);
      ch->evaluated = k;
      kp_run_cancel(ws, ch->run_id, sp->cancel_grace_seconds, why);
    } else {
      ch->evaluated = ch->nvals;
      set_trial(ws, s->id, ch->idx, ch->nvals, NULL);
    }
  }
  free(all);
}

/* Ends the parent run (status Completed, Failed or Canceled) with the best child. */
static void end_sweep(kp_ws *ws, const sweep *s, const children *c, kp_run_status status, const char *why) {
  int b = best_child(c, s->spec.maximize, 0);
  kp_sweep_end e = {.status = status, .reason = why, .best_child = b >= 0 ? c->v[b].run_id : NULL,
                    .best_value = b >= 0 ? c->v[b].best : 0};
  if (kp_store_sweep_end(ws->store, s->id, &e) != 0) kp_store_report();
  note(s->id, "%s: %s%s%s", kp_run_status_name(status), why, b >= 0 ? "; best run " : "", b >= 0 ? c->v[b].run_id : "");
}

/* Logs best_child_by_primary_metric on the parent (step n = the best of the
 * first n+1 ended children with a value) when more children have ended. */
static void log_best(kp_ws *ws, const sweep *s, const children *c, long long *logged) {
  long long nend = 0;
  double best = 0;
  for (int i = 0; i < c->n; i++) {
    const child *ch = &c->v[i];
    if (!ch->has_best || !ended(ch)) continue;
    if (!nend || (s->spec.maximize ? ch->best > best : ch->best < best)) best = ch->best;
    nend++;
  }
  if (nend <= *logged) return;
  if (kp_store_sweep_log_best(ws->store, s->id, nend - 1, best) == 0 || kp_store_last_error()->code == KP_STORE_ECONFLICT)
    *logged = nend;  /* (a conflict: that step is there already) */
  else kp_store_report();
}

#define BEST_METRIC "best_child_by_primary_metric"

static int control(kp_ws *ws, const char *id, int ready) {
  int ok = kp_store_sweep_attach_controller(ws->store, id, getpid(), kp_proc_start(getpid())) == 0;
  if (!ok && kp_store_last_error()->code == KP_STORE_EBACKEND) kp_store_report();
  sweep s;
  if (!ok || sweep_load(ws, id, &s) != 0) return kp_err("sweep __control: %s is not a running sweep", id), 1;
  signal(SIGPIPE, SIG_IGN); /* before the write: a submitter that died must not kill us */
  if (write(ready, "ok\n", 3) != 3) { /* the submitter gave up on us; go on anyway */ }
  close(ready);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  const kp_sweep_spec *sp = &s.spec;
  long long budget = kp_sweep_budget(sp);
  int conc = kp_sweep_concurrency(sp);
  note(id, "controller %d up: %s sampling, %lld runs at most, %d at once, policy %s", (int)getpid(),
       kp_sampling_names[sp->sampling], budget, conc, kp_policy_names[sp->policy.type]);
  children warm;
  if (load_warm(ws, sp, &warm) != 0) memset(&warm, 0, sizeof warm);
  long long logged = 0;
  {
    /* steps logged before (a resumed sweep): the latest is the highest */
    kp_metric_latest *lt;
    size_t nl;
    if (kp_store_metrics_latest(ws->store, id, &lt, &nl) == 0) {
      for (size_t i = 0; i < nl; i++)
        if (!strcmp(lt[i].name, BEST_METRIC)) logged = lt[i].step + 1;
      kp_metric_latest_free(lt, nl);
    } else {
      kp_store_report();
    }
  }
  int stopping = 0, exhausted = 0, rc = 0;
  char stop_why[1200] = "";
  double *x = malloc(sizeof(double) * (size_t)(sp->space.n + 1));
  for (long tick = 0;; tick++) {
    if (tick % 20 == 0) kp_reconcile(ws);
    if (kp_store_errors > 50) {
      note(id, "giving up: the store keeps failing");
      rc = 1;
      break;
    }
    children c;
    if (children_load(ws, id, sp, &c, 0) != 0) { sleep_ms(500); continue; }
    /* orphans of a previous controller */
    int orphans = 0;
    for (int i = 0; i < c.n; i++)
      if (!c.v[i].run_id[0] && c.v[i].submitting) { finish_orphan(ws, &s, &c.v[i]); orphans = 1; }
    if (orphans) { children_free(&c); continue; }
    log_best(ws, &s, &c, &logged);
    /* stop conditions */
    if (!stopping) {
      int requested;
      char *reason;
      if (kp_store_sweep_cancel_requested(ws->store, id, &requested, &reason) == 0) {
        if (requested) {
          stopping = 2;
          snprintf(stop_why, sizeof stop_why, "the sweep was canceled (%s)", reason ? reason : "canceled by the user");
        }
        free(reason);
      } else {
        kp_store_report();
      }
      /* fail fast: the first children all failed (a wrong argument, a
       * broken entry): running the rest would only fail the same way */
      long long need = budget < 3 ? budget : 3, nended = 0, failed = 0;
      const child *first_failed = NULL;
      for (int i = 0; i < c.n; i++) {
        if (!ended(&c.v[i])) continue;
        nended++;
        if (c.v[i].status == KP_RUN_FAILED) {
          failed++;
          if (!first_failed) first_failed = &c.v[i];
        }
      }
      if (!stopping && nended >= need && failed == nended && first_failed) {
        stopping = 3;
        snprintf(stop_why, sizeof stop_why, "the first %lld child runs failed (run %s: %.300s)", nended,
                 first_failed->run_id[0] ? first_failed->run_id : "-", first_failed->error ? first_failed->error : "no error text");
      }
      if (!stopping && kp_now() - sweep_started(&s) >= sweep_duration_s(sp)) {
        stopping = 1;
        snprintf(stop_why, sizeof stop_why, "the sweep reached max_duration_minutes (%g)",
                 sp->max_duration_minutes > 0 ? sp->max_duration_minutes : 10080.0);
      }
      if (stopping) {
        note(id, "stopping: %s", stop_why);
        for (int i = 0; i < c.n; i++)
          if (active(&c.v[i])) kp_run_cancel(ws, c.v[i].run_id, sp->cancel_grace_seconds, stop_why);
      }
    }
    /* fresh metrics of the active children, then the policy */
    for (int i = 0; i < c.n; i++)
      if (active(&c.v[i])) kp_ingest(ws, c.v[i].run_id, 0);
    if (!stopping && sp->policy.type != KP_POLICY_NONE) {
      children_free(&c);
      if (children_load(ws, id, sp, &c, 0) != 0) { sleep_ms(500); continue; }
      apply_policy(ws, &s, &c);
    }
    int nactive = 0;
    for (int i = 0; i < c.n; i++) nactive += active(&c.v[i]);
    /* new children */
    while (!stopping && !exhausted && nactive < conc && c.n < budget) {
      long long idx = c.n;
      if (next_point(&s, &c, &warm, idx, x) != 0) { exhausted = 1; break; }
      char *pj = params_json_of(&sp->space, x);
      if (!pj) break;
      if (kp_store_sweep_trial_add(ws->store, id, idx, pj) == 0) submit_trial(ws, &s, idx, x, pj);
      else kp_store_report();
      free(pj);
      nactive++;
      /* reload so the next point sees this one (bayesian: pending) */
      children_free(&c);
      if (children_load(ws, id, sp, &c, 0) != 0) break;
    }
    int done = nactive == 0 && (stopping || exhausted || c.n >= budget);
    if (done) {
      /* final view: ended children's last metrics are in */
      children_free(&c);
      if (children_load(ws, id, sp, &c, 0) == 0) {
        log_best(ws, &s, &c, &logged);
        if (stopping == 2) end_sweep(ws, &s, &c, KP_RUN_CANCELED, stop_why);
        else if (stopping == 3) end_sweep(ws, &s, &c, KP_RUN_FAILED, stop_why);
        else if (stopping == 1) end_sweep(ws, &s, &c, KP_RUN_COMPLETED, stop_why);
        else if (sp->sampling == KP_SAMPLING_RANDOM &&
                 (exhausted || (kp_space_finite_size(&sp->space) > 0 && c.n >= kp_space_finite_size(&sp->space)))) {
          char why[200];
          snprintf(why, sizeof why, "every point of the space was run (%lld points; random sampling does not repeat one)",
                   kp_space_finite_size(&sp->space));
          end_sweep(ws, &s, &c, KP_RUN_COMPLETED, why);
        } else if (c.n >= budget && sp->sampling != KP_SAMPLING_GRID) end_sweep(ws, &s, &c, KP_RUN_COMPLETED, "max_total_runs reached");
        else if (c.n >= budget && budget < kp_space_grid_size(&sp->space)) end_sweep(ws, &s, &c, KP_RUN_COMPLETED, "max_total_runs reached");
        else end_sweep(ws, &s, &c, KP_RUN_COMPLETED, "every grid point was run");
        children_free(&c);
        break;
      }
    }
    children_free(&c);
    for (int i = 0; i < 5 && !g_wake; i++) sleep_ms(20);
    g_wake = 0;
  }
  free(x);
  children_free(&warm);
  sweep_free(&s);
  return rc;
}

/* Starts the detached controller of sweep 'id' and waits until it is up. */
static int start_controller(kp_ws *ws, const char *id) {
  char rd[4400], clog[4600], reply[64];
  kp_run_dir(ws, id, rd, sizeof rd);
  if (kp_mkdirs(rd, 0755) != 0) return -1;
  snprintf(clog, sizeof clog, "%s/controller.log", rd);
  char *argv[] = {kp_self_exe, "--workspace", ws->root, "sweep", "__control", (char *)id, KP_DAEMON_FD, NULL};
  if (kp_daemon_start(argv, clog, NULL, 120, reply, sizeof reply) != 0 || strcmp(reply, "ok") != 0)
    return kp_err("the controller of sweep %s did not start; see %s", id, clog);
  return 0;
}

/* A sweep whose controller did not start ends Failed. */
static void controller_failed(kp_ws *ws, const char *id) {
  kp_run_transition t = {.to = KP_RUN_FAILED, .end = 1, .error = "its sweep controller did not start"};
  if (kp_store_run_transition(ws->store, id, &t) != 0) kp_store_report();
}

/* ---- submit -------------------------------------------------------------------------- */
static int resolve_compute(kp_ws *ws, const char *want, char *out, size_t n) {
  kp_compute *c;
  size_t count;
  if (kp_store_compute_list(ws->store, want, &c, &count) != 0) {
    if (!want || kp_store_last_error()->code != KP_STORE_ENOTFOUND) return kp_store_report();
    kp_err("sweep file: field 'run.compute': no compute target named '%s'", want);
    kp_hint("create it with 'kusari compute create %s --type local --max-nodes 4'", want);
    return -1;
  }
  if (count) snprintf(out, n, "%s", c[count - 1].name);
  kp_computes_free(c, count);
  if (count != 1) {
    kp_err(count ? "sweep file: field 'run.compute' is missing and there are %d compute targets"
                 : "sweep file: field 'run.compute' is missing and no compute target exists", (int)count);
    kp_hint(count ? "name one in run.compute" : "create one with 'kusari compute create cpu --type local --max-nodes 4'");
    return -1;
  }
  return 0;
}

/* What the sweep file asks that will not happen as written (stderr). */
static void sweep_submit_warnings(kp_ws *ws, const kp_sweep_spec *sp, const char *comp) {
  long long finite = kp_space_finite_size(&sp->space);
  if (sp->sampling == KP_SAMPLING_RANDOM && finite > 0 && finite < sp->max_total_runs) {
    fprintf(stderr, "kusari: warning: the space has only %lld point%s and random sampling does not repeat a point: "
            "the sweep stops after %lld runs, not max_total_runs %lld\n", finite, finite == 1 ? "" : "s", finite,
            sp->max_total_runs);
    kp_hint("widen the space, or use grid sampling to run every point in order");
  }
  kp_compute *c;
  size_t nc;
  int max_nodes = 0;
  if (kp_store_compute_list(ws->store, comp, &c, &nc) != 0) return;
  if (nc) max_nodes = c[0].max_nodes;
  kp_computes_free(c, nc);
  int conc = kp_sweep_concurrency(sp);
  long long budget = kp_sweep_budget(sp);
  if (conc > budget) conc = (int)budget;
  if (max_nodes > 0 && max_nodes < conc) {
    fprintf(stderr, "kusari: warning: compute target '%s' runs at most %d run%s at once (--max-nodes %d), fewer than "
            "the sweep's %d at once (max_concurrent_runs): the other children wait in Queued\n", comp, max_nodes,
            max_nodes == 1 ? "" : "s", max_nodes, conc);
    kp_hint("use a target with --max-nodes %d or more (kusari compute create NAME --type local --max-nodes %d), "
            "or set max_concurrent_runs to %d", conc, conc, max_nodes);
  }
}

/* The sweep recorded and its controller started: the compute target
 * resolved, warm starts checked, the seed drawn when not given, the sweep
 * file stored with them ('src_label' as its run.source). 0 with the id, or
 * -1 (printed; 'what' names the sweep file in messages), -2 when the file
 * names a compute target or a warm start this workspace does not have. */
static int sweep_create_start(kp_ws *ws, kp_sweep_spec *sp, const char *text, const char *what, const char *src_label,
                              const char *env_json, const char *snap, uint64_t bytes, char *id, size_t idn) {
  char comp[256];
  if (resolve_compute(ws, sp->compute, comp, sizeof comp) != 0)
    return kp_store_last_error()->code == KP_STORE_EBACKEND ? -1 : -2;
  for (int i = 0; i < sp->nwarm; i++) {
    int found = 0;
    if (kp_store_run_is_sweep(ws->store, sp->warm_start[i], &found) != 0) return kp_store_report();
    if (!found) {
      kp_err("sweep file '%s': field 'warm_start': '%s' is not a sweep of this workspace", what, sp->warm_start[i]);
      kp_hint("list sweeps with 'kusari sweep list'");
      return -2;
    }
  }
  if (!sp->has_seed) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sp->seed = ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid()) & ((1ull << 53) - 1);
  }
  /* the stored sweep file: resolved source, compute and seed */
  cJSON *j = cJSON_Parse(text);
  cJSON *run = cJSON_GetObjectItemCaseSensitive(j, "run");
  cJSON_DeleteItemFromObjectCaseSensitive(run, "source");
  cJSON_AddStringToObject(run, "source", src_label);
  cJSON_DeleteItemFromObjectCaseSensitive(run, "compute");
  cJSON_AddStringToObject(run, "compute", comp);
  cJSON *samp = cJSON_GetObjectItemCaseSensitive(j, "sampling");
  cJSON_DeleteItemFromObjectCaseSensitive(samp, "seed");
  cJSON_AddNumberToObject(samp, "seed", (double)sp->seed);
  char *spec_out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!spec_out) return kp_err("out of memory");
  cJSON *args = cJSON_CreateArray();
  for (int i = 0; i < sp->nargs; i++) cJSON_AddItemToArray(args, cJSON_CreateString(sp->args[i]));
  char *args_json = cJSON_PrintUnformatted(args);
  cJSON_Delete(args);
  kp_sweep_new nw = {.experiment = sp->experiment, .compute = comp, .source = src_label, .entry = sp->entry,
                     .args_json = args_json, .snapshot = snap, .snapshot_bytes = bytes, .env_json = env_json,
                     .spec = spec_out};
  int created = kp_store_sweep_create(ws->store, &nw, id, idn);
  cJSON_free(args_json);
  cJSON_free(spec_out);
  if (created != 0) return kp_store_report();
  if (start_controller(ws, id) != 0) {
    controller_failed(ws, id);
    return -1;
  }
  sweep_submit_warnings(ws, sp, comp);
  return 0;
}

static void print_submitted(const char *id, const kp_sweep_spec *sp, const char *snap, int nfiles, uint64_t bytes) {
  printf("Submitted sweep %s (experiment %s): %s sampling of %d parameter%s, at most %lld runs, %d at once, "
         "policy %s; snapshot %.12s: %d files, %.2f MB\n", id, sp->experiment, kp_sampling_names[sp->sampling],
         sp->space.n, sp->space.n == 1 ? "" : "s", kp_sweep_budget(sp), kp_sweep_concurrency(sp),
         kp_policy_names[sp->policy.type], snap, nfiles, (double)bytes / 1e6);
  printf("%s\n", id);
}

/* the checks of a sweep file both sides make; 0, or -1 (printed) */
static int sweep_file_ok(const kp_sweep_spec *sp, const char *what) {
  if (kp_name_ok(sp->experiment) != 0)
    return kp_err("sweep file '%s': field 'experiment': invalid name '%s' (letters, digits, '.', '_', '-')", what,
                  sp->experiment);
  if (kp_rel_path_ok(sp->entry) != 0)
    return kp_err("sweep file '%s': field 'run.entry': '%s' must be a relative path inside the source directory", what,
                  sp->entry);
  return 0;
}

/* a file of the source, uploaded to the tracking server as a blob */
static int put_upload(void *ctx, const char *path, char hex[65], int64_t *size) {
  kp_ws *ws = ctx;
  size_t len = 0;
  char *data = kp_read_file(path, &len);
  if (!data) return kp_err("cannot read %s: %s", path, strerror(errno));
  int rc = kp_store_http_put_blob(ws->store, data, len, hex);
  free(data);
  if (rc != 0) return kp_err("cannot upload %s (%zu bytes): %s", path, len, kp_store_last_error()->message);
  *size = (int64_t)len;
  return 0;
}

/* sweep submit against a tracking server: the source's snapshot travels as
 * blobs (each file, then the manifest: PUT /blobs/{sha256}, only those the
 * server lacks), then POST /sweeps {spec, source, snapshot}; the server
 * checks the manifest, records the sweep and starts its controller */
static int sweep_submit_remote(kp_ws *ws, kp_sweep_spec *sp, const char *text, const char *what, const char *src_abs) {
  if (sp->environment) {
    kp_err("sweep file '%s': field 'run.environment': environments are not supported against a tracking server yet "
           "(%s)", what, ws->remote);
    kp_hint("leave it out (the children then run with the server machine's python3), or submit on the server's machine");
    return 1;
  }
  char *man = NULL, hex[65];
  uint64_t bytes = 0;
  int nfiles = 0;
  if (kp_snapshot_walk(src_abs, KP_SNAPSHOT_LIMIT, NULL, put_upload, ws, &man, &bytes, &nfiles) != 0) return 1;
  int rc = kp_store_http_put_blob(ws->store, man, strlen(man), hex);
  cJSON_free(man);
  if (rc != 0) return kp_store_report(), 1;
  cJSON *b = cJSON_CreateObject(), *o = NULL;
  cJSON_AddItemToObject(b, "spec", cJSON_Parse(text));
  cJSON_AddStringToObject(b, "source", src_abs);
  cJSON_AddStringToObject(b, "snapshot", hex);
  char *body = cJSON_PrintUnformatted(b);
  cJSON_Delete(b);
  if (!body) return kp_err("out of memory"), 1;
  rc = kp_store_http_call(ws->store, "POST", "sweeps", NULL, NULL, body, &o);
  cJSON_free(body);
  if (rc != 0) return kp_store_report(), 1;
  const char *id = JS(o, "id");
  if (!id) {
    cJSON_Delete(o);
    return kp_err("the tracking server %s answered POST /sweeps without the sweep's id", ws->remote), 1;
  }
  print_submitted(id, sp, hex, nfiles, bytes);
  cJSON_Delete(o);
  return 0;
}

int kp_sweep_submit_uploaded(kp_ws *ws, const char *text, const char *src_label, const char *snap, uint64_t bytes,
                             char *id, size_t idn) {
  kp_sweep_spec sp;
  char err[1024];
  int rc = 2;
  char *env_json = NULL;
  if (kp_sweep_spec_parse(text, &sp, err, sizeof err) != 0) {
    kp_err("the sweep file: %s", err);
    goto out;
  }
  if (sweep_file_ok(&sp, "(uploaded)") != 0) goto out;
  if (sp.environment) {
    kp_err("the sweep file's run.environment names a file of the submitter's machine: environments are not "
           "supported over HTTP yet");
    goto out;
  }
  /* the children run here: this machine's python3 for a .py entry */
  if (kp_env_resolve(NULL, sp.entry, &env_json) != 0) goto out;
  int made = sweep_create_start(ws, &sp, text, "(uploaded)", src_label, env_json, snap, bytes, id, idn);
  rc = made == 0 ? 0 : made == -2 ? 2 : 1;
out:
  free(env_json);
  kp_sweep_spec_free(&sp);
  return rc;
}

static int sweep_submit(int argc, char **argv) {
  const char *pos[1];
  int np = 0;
  kp_opt opts[] = {{0}};
  const char *cmd = "sweep submit";
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the SWEEP_FILE (JSON)");
  char *text = kp_read_file(pos[0], NULL);
  if (!text) {
    kp_err("cannot read sweep file '%s': %s", pos[0], strerror(errno));
    return 1;
  }
  kp_sweep_spec sp;
  char err[1024];
  if (kp_sweep_spec_parse(text, &sp, err, sizeof err) != 0) {
    kp_err("sweep file '%s': %s", pos[0], err);
    kp_hint("see 'kusari sweep submit --help' and docs/SWEEPS.md for the format");
    kp_sweep_spec_free(&sp);
    free(text);
    return 1;
  }
  int rc = 1;
  char *env_json = NULL;
  kp_ws ws = {0};
  if (sweep_file_ok(&sp, pos[0]) != 0) goto out;
  if (sp.environment && !(env_json = kp_env_load(sp.environment))) goto out;
  {
    /* every child runs with the Python of the sweep's submitter */
    char *resolved = NULL;
    if (kp_env_resolve(env_json, sp.entry, &resolved) != 0) goto out;
    free(env_json);
    env_json = resolved;
  }
  const char *source = sp.source ? sp.source : ".";
  char src_abs[4096];
  if (!realpath(source, src_abs)) {
    kp_err("sweep file '%s': field 'run.source': cannot open '%s': %s", pos[0], source, strerror(errno));
    goto out;
  }
  cJSON *envj = env_json ? cJSON_Parse(env_json) : NULL;
  const char *build = envj ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(envj, "build")) : NULL;
  int has_build = build && *build;
  cJSON_Delete(envj);
  if (!has_build) {
    char ep[8400];
    struct stat est;
    snprintf(ep, sizeof ep, "%s/%s", src_abs, sp.entry);
    if (stat(ep, &est) != 0 || !S_ISREG(est.st_mode)) {
      kp_err("sweep file '%s': field 'run.entry': '%s' is not a file in the source directory '%s'", pos[0], sp.entry, source);
      goto out;
    }
  }
  if (open_ws(&ws) != 0) goto out;
  if (ws.remote[0]) {
    rc = sweep_submit_remote(&ws, &sp, text, pos[0], src_abs);
    goto out;
  }
  char snap[65];
  uint64_t bytes = 0;
  int nfiles = 0;
  if (kp_snapshot_create(&ws, src_abs, KP_SNAPSHOT_LIMIT, snap, &bytes, &nfiles) != 0) goto out;
  char id[300];
  if (sweep_create_start(&ws, &sp, text, pos[0], src_abs, env_json, snap, bytes, id, sizeof id) != 0) goto out;
  print_submitted(id, &sp, snap, nfiles, bytes);
  rc = 0;
out:
  free(env_json);
  free(text);
  kp_sweep_spec_free(&sp);
  kp_ws_close(&ws);
  return rc;
}

/* ---- show / best / list ---------------------------------------------------------------- */
/* What `sweep show ID --json` prints: built here from the store, or the
 * tracking server's GET /sweeps/{id} (the same view); NULL after an error
 * was printed. */
static cJSON *sweep_view(kp_ws *ws, const char *id) {
  cJSON *o = NULL;
  if (ws->remote[0]) {
    if (kp_store_http_call(ws->store, "GET", "sweeps/", id, NULL, NULL, &o) == 0) return o;
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return kp_store_report(), NULL;
    kp_err("no sweep with id '%s' in this workspace", id);
    kp_hint("list sweeps with 'kusari sweep list'");
    return NULL;
  }
  sweep s;
  if (sweep_load(ws, id, &s) != 0) return NULL;
  kp_sweep_trial *tr;
  size_t nt;
  if (kp_store_sweep_trial_list(ws->store, s.id, s.spec.metric, &tr, &nt) != 0) {
    kp_store_report();
    sweep_free(&s);
    return NULL;
  }
  o = kp_view_sweep(&s.w, &s.spec, tr, nt);
  kp_sweep_trials_free(tr, nt);
  sweep_free(&s);
  if (!o) kp_err("out of memory");
  return o;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* the text of `sweep show`, from the view alone (so it is the same against a server) */
static void sweep_print(const cJSON *o) {
  int counts[4] = {0, 0, 0, 0}, nchildren = 0;
  const cJSON *ce;
  cJSON_ArrayForEach(ce, cJSON_GetObjectItemCaseSensitive(o, "children")) {
    kp_run_status cs;
    int known = kp_run_status_parse(JS(ce, "status"), &cs) == 0;
    counts[!known ? 3 : cs == KP_RUN_COMPLETED ? 0 : cs == KP_RUN_CANCELED ? 1 : cs == KP_RUN_FAILED ? 2 : 3]++;
    nchildren++;
  }
  const char *stop = JS(o, "stop_reason") ? JS(o, "stop_reason") : "";
  printf("sweep:        %s\nexperiment:   %s\nstatus:       %s%s%s\n", JS(o, "id"), JS(o, "experiment"), JS(o, "status"),
         stop[0] ? " - " : "", stop);
  const char *perr = JS(o, "error");
  if (perr) printf("error:        %s\n", perr);
  int np = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "search_space"));
  printf("sampling:     %s (seed %llu), %d parameter%s\n", JS(o, "sampling"), (unsigned long long)jnum(o, "seed"), np,
         np == 1 ? "" : "s");
  const char *metric = JS(o, "primary_metric");
  printf("metric:       %s (%s)\n", metric, JS(o, "goal"));
  const char *policy = JS(o, "policy");
  const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "policy_settings");
  int none = !strcmp(policy, "none");
  printf("policy:       %s", policy);
  if (!none) printf(" (evaluation_interval %d, delay_evaluation %d", (int)jnum(ps, "evaluation_interval"),
                    (int)jnum(ps, "delay_evaluation"));
  if (cJSON_GetObjectItemCaseSensitive(ps, "slack_amount")) printf(", slack_amount %g", jnum(ps, "slack_amount"));
  if (cJSON_GetObjectItemCaseSensitive(ps, "slack_factor")) printf(", slack_factor %g", jnum(ps, "slack_factor"));
  if (cJSON_GetObjectItemCaseSensitive(ps, "truncation_percentage"))
    printf(", truncation_percentage %g", jnum(ps, "truncation_percentage"));
  printf("%s\n", none ? "" : ")");
  printf("runs:         %d of at most %lld (%d at once): %d Completed, %d Canceled, %d Failed, %d active\n", nchildren,
         (long long)jnum(o, "max_total_runs"), (int)jnum(o, "max_concurrent_runs"), counts[0], counts[1], counts[2],
         counts[3]);
  const char *best = JS(o, "best_child");
  printf("best run:     %s\n\n", best ? best : "-");
  printf("%-28s %-10s %12s %9s  %-40s %s\n", "RUN", "STATUS", metric, "INTERVALS", "PARAMETERS", "EARLY TERMINATION");
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "children")) {
    char val[32] = "-", params[1024] = "";
    const cJSON *bv = cJSON_GetObjectItemCaseSensitive(e, "best");
    if (cJSON_IsNumber(bv)) snprintf(val, sizeof val, "%.6g", bv->valuedouble);
    const cJSON *pv;
    cJSON_ArrayForEach(pv, cJSON_GetObjectItemCaseSensitive(e, "parameters")) {
      size_t l = strlen(params);
      snprintf(params + l, sizeof params - l, "%s%s=%s", l ? " " : "", pv->string,
               pv->valuestring ? pv->valuestring : "");
    }
    const char *why = JS(e, "early_termination");
    const char *cid = JS(e, "id");
    printf("%-28s %-10s %12s %9d  %-40s %s\n", cid && *cid ? cid : "-", JS(e, "status"), val, (int)jnum(e, "intervals"),
           params, why ? why : "");
  }
}

static int sweep_show(int argc, char **argv) {
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("sweep show", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("sweep show", "missing the SWEEP id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  cJSON *o = sweep_view(&ws, pos[0]);
  kp_ws_close(&ws);
  if (!o) return 1;
  if (json) {
    char *t = cJSON_Print(o);
    puts(t);
    cJSON_free(t);
  } else {
    sweep_print(o);
  }
  cJSON_Delete(o);
  return 0;
}

static int sweep_best(int argc, char **argv) {
  int np = 0, completed = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "completed-only", .flag = &completed}, {0}};
  if (kp_parse("sweep best", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("sweep best", "missing the SWEEP id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  if (ws.remote[0]) {
    /* from the view (GET /sweeps/{id}): children best first, then by index */
    cJSON *o = sweep_view(&ws, pos[0]);
    kp_ws_close(&ws);
    if (!o) return 1;
    int rc = 1;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "children")) {
      const cJSON *bv = cJSON_GetObjectItemCaseSensitive(e, "best");
      if (!cJSON_IsNumber(bv) || !JS(e, "id") || !*JS(e, "id")) continue;
      if (completed && strcmp(JS(e, "status"), "Completed") != 0) continue;
      char *pj = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "parameters"));
      printf("best run of sweep %s: %s (%s) %s %.6g %s\n", JS(o, "id"), JS(e, "id"), JS(e, "status"),
             JS(o, "primary_metric"), bv->valuedouble, pj ? pj : "{}");
      printf("%s\n", JS(e, "id"));
      cJSON_free(pj);
      rc = 0;
      break;
    }
    if (rc) kp_err("sweep %s has no %srun with a value of %s yet", JS(o, "id"), completed ? "completed " : "",
                   JS(o, "primary_metric"));
    cJSON_Delete(o);
    return rc;
  }
  sweep s;
  if (sweep_load(&ws, pos[0], &s) != 0) { kp_ws_close(&ws); return 1; }
  children c;
  int rc = 1;
  if (children_load(&ws, s.id, &s.spec, &c, 0) == 0) {
    int b = best_child(&c, s.spec.maximize, completed);
    if (b < 0) {
      kp_err("sweep %s has no %srun with a value of %s yet", s.id, completed ? "completed " : "", s.spec.metric);
    } else {
      printf("best run of sweep %s: %s (%s) %s %.6g %s\n", s.id, c.v[b].run_id, child_status(&c.v[b]), s.spec.metric,
             c.v[b].best, c.v[b].params);
      printf("%s\n", c.v[b].run_id);
      rc = 0;
    }
    children_free(&c);
  }
  sweep_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static int sweep_list(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("sweep list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  cJSON *arr = NULL;
  if (ws.remote[0]) {
    /* the tracking server's GET /sweeps: the same summaries */
    cJSON *o;
    if (kp_store_http_call(ws.store, "GET", "sweeps", NULL, NULL, NULL, &o) != 0) {
      kp_store_report();
      kp_ws_close(&ws);
      return 1;
    }
    arr = cJSON_DetachItemFromObjectCaseSensitive(o, "sweeps");
    cJSON_Delete(o);
    if (!cJSON_IsArray(arr)) {
      cJSON_Delete(arr);
      kp_ws_close(&ws);
      return kp_err("the tracking server %s answered GET /sweeps without a list of sweeps", ws.remote), 1;
    }
  } else {
    kp_sweep *v;
    size_t n;
    if (kp_store_sweep_list(ws.store, &v, &n) != 0) {
      kp_store_report();
      kp_ws_close(&ws);
      return 1;
    }
    arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, kp_view_sweep_summary(&v[i]));
    kp_sweeps_free(v, n);
  }
  kp_ws_close(&ws);
  if (json) {
    char *t = cJSON_Print(arr);
    puts(t);
    cJSON_free(t);
  } else {
    printf("%-28s %-20s %-10s %5s %-20s %s\n", "SWEEP", "EXPERIMENT", "STATUS", "RUNS", "CREATED", "BEST RUN");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
#define S(k) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k))
      printf("%-28s %-20s %-10s %5d %-20s %s\n", S("id"), S("experiment"), S("status"),
             cJSON_GetObjectItemCaseSensitive(o, "runs")->valueint, S("created"), *S("best_child") ? S("best_child") : "-");
#undef S
    }
  }
  cJSON_Delete(arr);
  return 0;
}

/* ---- wait / cancel / resume ------------------------------------------------------------ */
/* The parent run's status and error ("" when none). */
static int parent_status(kp_ws *ws, const char *id, kp_run_status *out, char *err, size_t errn) {
  kp_run r;
  if (kp_store_run_get(ws->store, id, &r) != 0) return kp_store_report();
  *out = r.status;
  if (err) snprintf(err, errn, "%s", r.error ? r.error : "");
  kp_run_free(&r);
  return 0;
}

static int cmp_child_index(const void *a, const void *b) {
  double x = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "index"));
  double y = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "index"));
  return x < y ? -1 : x > y;
}

/* sweep wait against a tracking server: the same loop over GET /sweeps/{id}
 * (the view has each child's status, parameters, best value and decision) */
static int sweep_wait_remote(kp_ws *ws, const char *id, int quiet, long long to) {
  double t0 = kp_now();
  int rc = 1;
  unsigned char *seen = NULL;
  long long nseen = 0;
  for (;;) {
    cJSON *o;
    if (kp_store_http_call(ws->store, "GET", "sweeps/", id, NULL, NULL, &o) != 0) {
      if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) { kp_store_report(); break; }
      kp_err("no sweep with id '%s' in this workspace", id);
      kp_hint("list sweeps with 'kusari sweep list'");
      break;
    }
    kp_run_status status = KP_RUN_RUNNING;
    int known = kp_run_status_parse(JS(o, "status"), &status) == 0;
    const char *metric = JS(o, "primary_metric") ? JS(o, "primary_metric") : "";
    cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "children");
    int n = cJSON_GetArraySize(ch);
    cJSON **v = calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; v && i < n; i++) v[i] = cJSON_GetArrayItem(ch, i);
    if (v) qsort(v, (size_t)n, sizeof *v, cmp_child_index);
    for (int i = 0; !quiet && v && i < n; i++) {
      long long idx = (long long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(v[i], "index"));
      if (idx < 0 || idx > 10000000) continue;
      if (idx >= nseen) {
        void *grown = realloc(seen, (size_t)(idx + 1) * sizeof *seen);
        if (!grown) break;
        seen = grown;
        for (long long k = nseen; k <= idx; k++) seen[k] = 0;
        nseen = idx + 1;
      }
      const char *cid = JS(v[i], "id"), *cst = JS(v[i], "status");
      kp_run_status cs;
      int done = cst && kp_run_status_parse(cst, &cs) == 0 && kp_run_status_ended(cs);
      int was = seen[idx];
      if (!cid || !*cid || (!done && was) || (done && was == 2)) continue;
      char t[64];
      kp_fmt_time(kp_now(), t, sizeof t);
      if (!done) {
        char *pj = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(v[i], "parameters"));
        printf("%s  %-24s submitted %s\n", t, cid, pj ? pj : "{}");
        cJSON_free(pj);
      } else {
        char val[64] = "-";
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(v[i], "best");
        if (cJSON_IsNumber(bv)) snprintf(val, sizeof val, "%.6g", bv->valuedouble);
        const char *why = JS(v[i], "early_termination");
        printf("%s  %-24s %-9s %s %s%s%s\n", t, cid, cst, metric, val, why ? "; " : "", why ? why : "");
      }
      seen[idx] = done ? 2 : 1;
    }
    fflush(stdout);
    free(v);
    if (known && kp_run_status_ended(status)) {
      printf("Sweep %s: %s (%d runs)", JS(o, "id"), JS(o, "status"), n);
      const char *best = JS(o, "best_child");
      cJSON *e;
      cJSON_ArrayForEach(e, ch) {
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(e, "best");
        if (best && JS(e, "id") && !strcmp(JS(e, "id"), best) && cJSON_IsNumber(bv))
          printf("; best run %s with %s %.6g", best, metric, bv->valuedouble);
      }
      printf("\n");
      rc = status == KP_RUN_COMPLETED ? 0 : 1;
      if (rc) {
        const char *err = JS(o, "error") ? JS(o, "error") : "";
        fprintf(stderr, "kusari: sweep %s did not complete: %s\n", JS(o, "id"), err);
        if (strstr(err, "supervisor"))
          fprintf(stderr, "  hint: its controller died; continue it with 'kusari sweep resume %s'\n", JS(o, "id"));
      }
      cJSON_Delete(o);
      break;
    }
    if (to > 0 && kp_now() - t0 > (double)to) {
      kp_err("sweep %s is still %s after %lld s (--timeout)", JS(o, "id"), JS(o, "status"), to);
      cJSON_Delete(o);
      rc = 3;
      break;
    }
    cJSON_Delete(o);
    sleep_ms(200);
  }
  free(seen);
  return rc;
}

static int sweep_wait(int argc, char **argv) {
  int np = 0, quiet = 0;
  const char *pos[1], *timeout = "0";
  kp_opt opts[] = {{.name = "timeout", .val = &timeout}, {.name = "quiet", .alias = "-q", .flag = &quiet}, {0}};
  if (kp_parse("sweep wait", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("sweep wait", "missing the SWEEP id");
  long long to;
  if (kp_parse_int(timeout, &to) != 0 || to < 0) return kp_usage_err("sweep wait", "--timeout must be seconds (0 = none)");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  if (ws.remote[0]) {
    int r = sweep_wait_remote(&ws, pos[0], quiet, to);
    kp_ws_close(&ws);
    return r;
  }
  sweep s;
  if (sweep_load(&ws, pos[0], &s) != 0) { kp_ws_close(&ws); return 1; }
  kp_run_status status = s.w.run.status;
  char err[1024] = "";
  double t0 = kp_now();
  int rc = 1;
  unsigned char *seen = NULL;  /* what was printed, per trial index: 0 nothing, 1 submitted, 2 ended */
  long long nseen = 0;
  for (int n = 0;; n++) {
    if (n % 10 == 0) kp_reconcile(&ws);
    if (parent_status(&ws, s.id, &status, err, sizeof err) != 0 || kp_store_errors > 20) break;
    if (!quiet) {
      /* progress: a line per child when it starts and when it ends */
      children pc;
      if (children_load(&ws, s.id, &s.spec, &pc, 0) == 0) {
        for (int i = 0; i < pc.n; i++) {
          const child *ch = &pc.v[i];
          if (ch->idx >= nseen) {
            void *grown = realloc(seen, (size_t)(ch->idx + 1) * sizeof *seen);
            if (!grown) break;
            seen = grown;
            for (long long k = nseen; k <= ch->idx; k++) seen[k] = 0;
            nseen = ch->idx + 1;
          }
          int done = ended(ch), was = seen[ch->idx];
          if (!ch->run_id[0] || (!done && was) || (done && was == 2)) continue;
          char t[64];
          kp_fmt_time(kp_now(), t, sizeof t);
          if (!done) {
            printf("%s  %-24s submitted %s\n", t, ch->run_id, ch->params);
          } else {
            char v[64] = "-";
            if (ch->has_best) snprintf(v, sizeof v, "%.6g", ch->best);
            printf("%s  %-24s %-9s %s %s%s%s\n", t, ch->run_id, child_status(ch), s.spec.metric, v,
                   ch->decision ? "; " : "", ch->decision ? ch->decision : "");
          }
          seen[ch->idx] = done ? 2 : 1;
        }
        fflush(stdout);
        children_free(&pc);
      }
    }
    if (kp_run_status_ended(status)) {
      children c;
      if (children_load(&ws, s.id, &s.spec, &c, 0) == 0) {
        int b = best_child(&c, s.spec.maximize, 0);
        printf("Sweep %s: %s (%d runs)", s.id, kp_run_status_name(status), c.n);
        if (b >= 0) printf("; best run %s with %s %.6g", c.v[b].run_id, s.spec.metric, c.v[b].best);
        printf("\n");
        children_free(&c);
      }
      rc = status == KP_RUN_COMPLETED ? 0 : 1;
      if (rc) {
        fprintf(stderr, "kusari: sweep %s did not complete: %s\n", s.id, err);
        if (strstr(err, "supervisor")) fprintf(stderr, "  hint: its controller died; continue it with 'kusari sweep resume %s'\n", s.id);
      }
      break;
    }
    if (to > 0 && kp_now() - t0 > (double)to) {
      kp_err("sweep %s is still %s after %lld s (--timeout)", s.id, kp_run_status_name(status), to);
      rc = 3;
      break;
    }
    sleep_ms(200);
  }
  free(seen);
  sweep_free(&s);
  kp_ws_close(&ws);
  return rc;
}

/* sweep cancel against a tracking server: POST /sweeps/{id}/cancel (the
 * server asks the controller, or the children when it is gone), then the
 * same wait for the end as locally, reading GET /sweeps/{id} */
static int sweep_cancel_remote(kp_ws *ws, const char *id, int nowait) {
  cJSON *o;
  if (kp_store_http_call(ws->store, "POST", "sweeps/", id, "/cancel", "{\"reason\": \"canceled by the user\"}", &o) != 0) {
    int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    if (!missing) return kp_store_report(), 1;
    kp_err("no sweep with id '%s' in this workspace", id);
    kp_hint("list sweeps with 'kusari sweep list'");
    return 1;
  }
  char sid[300], status[32];
  snprintf(sid, sizeof sid, "%s", JS(o, "id") ? JS(o, "id") : id);
  snprintf(status, sizeof status, "%s", JS(o, "status") ? JS(o, "status") : "?");
  cJSON_Delete(o);
  if (nowait) {
    printf("Sweep %s: cancel requested\n", sid);
    return 0;
  }
  /* (the sweep file's cancel grace is not in the view: at most 10 minutes) */
  kp_run_status st;
  double t0 = kp_now();
  while (!(kp_run_status_parse(status, &st) == 0 && kp_run_status_ended(st)) && kp_now() - t0 < 600) {
    sleep_ms(200);
    if (kp_store_http_call(ws->store, "GET", "sweeps/", sid, NULL, NULL, &o) != 0) return kp_store_report(), 1;
    snprintf(status, sizeof status, "%s", JS(o, "status") ? JS(o, "status") : "?");
    cJSON_Delete(o);
  }
  printf("Sweep %s: %s\n", sid, status);
  return 0;
}

static int sweep_cancel(int argc, char **argv) {
  int np = 0, nowait = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "no-wait", .flag = &nowait}, {0}};
  if (kp_parse("sweep cancel", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("sweep cancel", "missing the SWEEP id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  if (ws.remote[0]) {
    int rc = sweep_cancel_remote(&ws, pos[0], nowait);
    kp_ws_close(&ws);
    return rc;
  }
  sweep s;
  if (sweep_load(&ws, pos[0], &s) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  kp_run_status status = s.w.run.status;
  if (kp_run_status_ended(status)) {
    kp_err("sweep %s already ended (%s); there is nothing to cancel", s.id, kp_run_status_name(status));
    goto out;
  }
  if (kp_run_cancel(&ws, s.id, s.spec.cancel_grace_seconds, "canceled by the user") != 0) goto out;
  rc = 0;
  if (nowait) { printf("Sweep %s: cancel requested\n", s.id); goto out; }
  double t0 = kp_now();
  for (int n = 0; kp_now() - t0 < s.spec.cancel_grace_seconds + 60; n++) {
    if (n % 10 == 0) kp_reconcile(&ws);
    if (parent_status(&ws, s.id, &status, NULL, 0) != 0) break;
    if (kp_run_status_ended(status)) break;
    sleep_ms(100);
  }
  /* a dead controller cannot stop the children: do it here */
  children c;
  if (kp_run_status_ended(status) && children_load(&ws, s.id, &s.spec, &c, 0) == 0) {
    for (int i = 0; i < c.n; i++)
      if (active(&c.v[i])) kp_run_cancel(&ws, c.v[i].run_id, s.spec.cancel_grace_seconds, "the sweep was canceled (canceled by the user)");
    children_free(&c);
  }
  printf("Sweep %s: %s\n", s.id, kp_run_status_name(status));
out:
  sweep_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static int sweep_resume(int argc, char **argv) {
  int np = 0;
  const char *pos[1];
  kp_opt opts[] = {{0}};
  if (kp_parse("sweep resume", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("sweep resume", "missing the SWEEP id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;  /* reconciles: a dead controller's parent ends Failed */
  sweep s;
  if (sweep_load(&ws, pos[0], &s) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  kp_run_status status = s.w.run.status;
  const char *stop = s.w.stop_reason ? s.w.stop_reason : "";
  if (status == KP_RUN_RUNNING) {
    kp_err("sweep %s is running: its controller is alive", s.id);
    goto out;
  }
  if (status == KP_RUN_FAILED && stop[0]) {
    kp_err("sweep %s failed on its own (%s); resume is for a sweep whose controller died", s.id, stop);
    kp_hint("fix the cause and submit a new sweep (\"warm_start\": [\"%s\"] builds on its results)", s.id);
    goto out;
  }
  if (status != KP_RUN_FAILED) {
    kp_err("sweep %s ended %s; only a sweep whose controller died (Failed) can be resumed", s.id, kp_run_status_name(status));
    kp_hint("start a new sweep with \"warm_start\": [\"%s\"] to build on its results", s.id);
    goto out;
  }
  /* this process stands in as the parent's supervisor until the new
   * controller registers, so a concurrent reconciliation does not fail it */
  if (kp_store_sweep_reopen(ws.store, s.id, getpid(), kp_proc_start(getpid())) != 0) {
    if (kp_store_last_error()->code == KP_STORE_ECONFLICT) kp_err("sweep %s changed meanwhile; try again", s.id);
    else kp_store_report();
    goto out;
  }
  if (start_controller(&ws, s.id) != 0) {
    controller_failed(&ws, s.id);
    goto out;
  }
  printf("Resumed sweep %s\n%s\n", s.id, s.id);
  rc = 0;
out:
  sweep_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static int sweep_control(int argc, char **argv) {
  if (argc < 3) return kp_err("sweep __control: internal command, needs SWEEP_ID READY_FD"), 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) return 1;
  int rc = control(&ws, argv[1], atoi(argv[2]));
  kp_ws_close(&ws);
  return rc;
}

/* ---- plot / delete -------------------------------------------------------------------- */
int kp_metric_curve(kp_ws *ws, const char *id, const char *name, int time, double **x, double **y);

static int sweep_plot(int argc, char **argv) {
  const char *cmd = "sweep plot", *pos[1], *outp = NULL, *xs = "step", *wd = "900", *ht = "550", *title = NULL;
  int np = 0;
  kp_opt opts[] = {{.name = "output", .alias = "-o", .val = &outp}, {.name = "x", .val = &xs}, {.name = "width", .val = &wd},
                   {.name = "height", .val = &ht}, {.name = "title", .val = &title}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the SWEEP id");
  if (!outp) return kp_usage_err(cmd, "missing -o FILE.png");
  int time = 0;
  if (!strcmp(xs, "time")) time = 1;
  else if (strcmp(xs, "step") != 0) return kp_usage_err(cmd, "--x is 'step' or 'time' (seconds since each run started), not '%s'", xs);
  long long w, h;
  if (kp_parse_int(wd, &w) != 0 || w < 200 || w > 8000) return kp_usage_err(cmd, "--width must be a number of pixels from 200 to 8000, got '%s'", wd);
  if (kp_parse_int(ht, &h) != 0 || h < 150 || h > 8000) return kp_usage_err(cmd, "--height must be a number of pixels from 150 to 8000, got '%s'", ht);
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  sweep s;
  if (sweep_load(&ws, pos[0], &s) != 0) { kp_ws_close(&ws); return 1; }
  children c;
  int rc = 1;
  if (children_load(&ws, s.id, &s.spec, &c, 0) != 0) { sweep_free(&s); kp_ws_close(&ws); return 1; }
  for (int i = 0; i < c.n; i++)
    if (active(&c.v[i])) kp_ingest(&ws, c.v[i].run_id, 0);  /* live view */
  int best = best_child(&c, s.spec.maximize, 0);
  kp_series *ser = calloc((size_t)c.n + 1, sizeof *ser);
  double **xv = calloc((size_t)c.n + 1, sizeof *xv), **yv = calloc((size_t)c.n + 1, sizeof *yv);
  char (*labels)[400] = calloc((size_t)c.n + 1, sizeof *labels);
  int n = 0;
  if (!ser || !xv || !yv || !labels) { kp_err("out of memory"); goto out; }
  for (int i = 0; i < c.n; i++) {
    const child *ch = &c.v[i];
    if (!ch->run_id[0]) continue;
    int k = kp_metric_curve(&ws, ch->run_id, s.spec.metric, time, &xv[n], &yv[n]);
    if (k < 0) goto out;
    if (k == 0) continue;
    int canceled = !ch->submitting && ch->status == KP_RUN_CANCELED;
    snprintf(labels[n], sizeof labels[n], "%s%s%s", ch->run_id, i == best ? " (best)" : "",
             canceled ? " (canceled)" : !ch->submitting && ch->status == KP_RUN_FAILED ? " (failed)" : "");
    int mark = -1;
    if (i == best)
      for (int j = 0; j < k; j++)
        if (yv[n][j] == ch->best) { mark = j; break; }
    ser[n] = (kp_series){.label = labels[n], .x = xv[n], .y = yv[n], .n = k, .dashed = canceled, .end_cross = canceled,
                         .thick = i == best, .mark = mark};
    n++;
  }
  if (n == 0) {
    kp_err("sweep %s has no values of its primary metric '%s' yet", s.id, s.spec.metric);
    kp_hint("plot it once its child runs have logged '%s' ('kusari sweep show %s')", s.spec.metric, s.id);
    goto out;
  }
  char ttl[700];
  if (!title) {
    snprintf(ttl, sizeof ttl, "sweep %s: %s (%s)", s.id, s.spec.metric, s.spec.maximize ? "maximize" : "minimize");
    title = ttl;
  }
  kp_plot p = {.title = title, .xlabel = time ? "seconds since the run started" : "step", .ylabel = s.spec.metric,
               .width = (int)w, .height = (int)h, .s = ser, .n = n};
  if (kp_plot_png(&p, outp) == 0) {
    printf("Wrote %s (%lldx%lld): %s of %d child run%s%s%s\n", outp, w, h, s.spec.metric, n, n == 1 ? "" : "s",
           best >= 0 ? "; best " : "", best >= 0 ? c.v[best].run_id : "");
    rc = 0;
  }
out:
  for (int i = 0; i < n + 1 && xv && yv; i++) free(xv[i]), free(yv[i]);
  free(xv), free(yv), free(ser), free(labels);
  children_free(&c);
  sweep_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static int sweep_delete(int argc, char **argv) {
  const char *cmd = "sweep delete", *pos[1];
  int np = 0, yes = 0, dry = 0;
  kp_opt opts[] = {{.name = "yes", .alias = "-y", .flag = &yes}, {.name = "dry-run", .flag = &dry}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the SWEEP id");
  return kp_delete(cmd, KP_DEL_SWEEP, pos, 1, yes, dry);
}

static const kp_cmd cmds[] = {
  {"submit", sweep_submit, "start a sweep from a JSON sweep file; prints its id last",
   "usage: kusari sweep submit SWEEP_FILE\n\n"
   "Starts a hyperparameter sweep: a parent run and child runs of one entry\n"
   "with sampled parameter values passed as '--name value' after the fixed\n"
   "arguments. Everything is validated before anything starts. The file:\n\n"
   "  {\"experiment\": \"chainer-mnist\",\n"
   "   \"run\": {\"source\": \"examples/mnist\", \"entry\": \"train_mnist\", \"compute\": \"cpu\",\n"
   "           \"arguments\": [\"--output_dir\", \"./outputs\"], \"environment\": \"env.json\"},\n"
   "   \"sampling\": {\"type\": \"random\", \"seed\": 7,\n"
   "                \"space\": {\"--batchsize\": {\"choice\": [128, 256]},\n"
   "                          \"--lr\": {\"loguniform\": [-9.2, -2.3]}}},\n"
   "   \"primary_metric\": {\"name\": \"Accuracy\", \"goal\": \"maximize\"},\n"
   "   \"policy\": {\"type\": \"bandit\", \"evaluation_interval\": 1, \"slack_factor\": 0.1,\n"
   "              \"delay_evaluation\": 3},\n"
   "   \"max_total_runs\": 8, \"max_concurrent_runs\": 4, \"max_duration_minutes\": 60}\n\n"
   "sampling.type: grid (choice only), random, bayesian (GP + expected improvement).\n"
   "Expressions: choice, randint, uniform, quniform, loguniform, qloguniform,\n"
   "normal, qnormal, lognormal, qlognormal (Azure ML's meanings).\n"
   "policy.type: bandit (slack_factor or slack_amount), median, truncation\n"
   "(truncation_percentage), none. Optional: \"warm_start\": [SWEEP_ID, ...],\n"
   "\"cancel_grace_seconds\" (early-terminated children, default 10).\n"
   "See docs/SWEEPS.md for the rules.\n"},
  {"show", sweep_show, "a sweep's settings and its children sorted by the primary metric",
   "usage: kusari sweep show SWEEP [--json]\n\n"
   "The sweep's status and settings, then its child runs sorted by the primary\n"
   "metric (best value each reached), with status, parameter values and the\n"
   "rule and numbers of each early termination.\n"},
  {"best", sweep_best, "the best child run (its id last), like get_best_run_by_primary_metric",
   "usage: kusari sweep best SWEEP [--completed-only]\n\n"
   "Prints the child run with the best value of the primary metric (the best\n"
   "value it logged), its id on the last line. Early-terminated and failed\n"
   "children count unless --completed-only.\n"},
  {"wait", sweep_wait, "wait until a sweep ends (exit 0 if Completed)",
   "usage: kusari sweep wait SWEEP [--timeout S] [--quiet]\n\n"
   "Waits until the sweep ends, printing a line when a child starts and when\n"
   "it ends (status, best value, early termination; not with --quiet), then\n"
   "the best run. Exit 0 when it\n"
   "Completed, 1 when it was canceled or failed, 3 on --timeout.\n"},
  {"cancel", sweep_cancel, "cancel a sweep and its active children",
   "usage: kusari sweep cancel SWEEP [--no-wait]\n\n"
   "Stops starting children, cancels the active ones and ends the sweep\n"
   "Canceled; waits for that unless --no-wait.\n"},
  {"resume", sweep_resume, "restart the controller of a sweep whose controller died",
   "usage: kusari sweep resume SWEEP\n\n"
   "A sweep whose controller died ends Failed (like a run whose supervisor\n"
   "died). resume starts a new controller: ended children are not re-run,\n"
   "running ones are picked up, and sampling continues where it stopped.\n"},
  {"list", sweep_list, "list sweeps",
   "usage: kusari sweep list [--json]\n\nLists sweeps with their status, number of runs and best run.\n"},
  {"plot", sweep_plot, "draw every child's primary metric as a PNG (best and canceled marked)",
   "usage: kusari sweep plot SWEEP -o FILE.png [--x step|time] [--width PX] [--height PX]\n"
   "                         [--title TEXT]\n\n"
   "Draws the primary metric of each child run as a line against its step (or\n"
   "with --x time, the seconds since it started). The best child (as 'sweep best')\n"
   "is drawn thicker with its best value ringed and '(best)' in the legend; children\n"
   "that were canceled (early termination or a sweep cancel) are dashed, end in a\n"
   "cross and say '(canceled)'; failed ones say '(failed)'. Default size 900x550.\n"},
  {"delete", sweep_delete, "delete an ended sweep with its child runs",
   "usage: kusari sweep delete SWEEP [--yes] [--dry-run]\n\n"
   "Deletes the sweep (its parent run and records) and all of its child runs, as\n"
   "'kusari run delete' does: records, then the blobs nothing else uses. Refuses\n"
   "while the sweep or any child is active (cancel it first with 'kusari sweep\n"
   "cancel'). Asks for confirmation on a terminal; --yes deletes without asking;\n"
   "--dry-run only says what would go.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_sweep(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "__control")) return sweep_control(argc - 1, argv + 1);
  return kp_dispatch("sweep", "usage: kusari sweep SUBCOMMAND\n\nHyperparameter sweeps (HyperDrive): a parent run with child runs of sampled\nparameters, early termination, the best run. See docs/SWEEPS.md.\n",
                     cmds, argc, argv);
}
