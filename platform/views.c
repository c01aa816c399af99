/*
 * platform/views.c — the JSON views of the store's structs (views.h).
 */
#include "views.h"

#include "kp.h"
#include "sweep.h"
#include "compute.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>

static void add_time(cJSON *o, const char *k, double t) {
  char s[64];
  kp_fmt_time(t, s, sizeof s);
  cJSON_AddStringToObject(o, k, s);
}

/* a time that may be absent (0): null */
static void add_time_or_null(cJSON *o, const char *k, double t) {
  if (t == 0) cJSON_AddNullToObject(o, k);
  else add_time(o, k, t);
}

cJSON *kp_view_experiment_summary(const kp_experiment_summary *e) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", e->name);
  add_time(o, "created", e->created);
  cJSON_AddNumberToObject(o, "runs", e->runs);
  cJSON_AddNumberToObject(o, "completed", e->completed);
  cJSON_AddNumberToObject(o, "failed", e->failed);
  cJSON_AddNumberToObject(o, "canceled", e->canceled);
  cJSON_AddNumberToObject(o, "active", e->active);
  add_time(o, "last_run", e->last_run);
  return o;
}

cJSON *kp_view_experiment(const kp_experiment_detail *d) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", d->name);
  add_time_or_null(o, "created", d->created);
  cJSON_AddNumberToObject(o, "runs", d->runs);
  if (d->runs) add_time_or_null(o, "last_activity", d->last_activity);
  else cJSON_AddNullToObject(o, "last_activity");
  cJSON_AddNumberToObject(o, "sweeps", d->sweeps);
  cJSON *by = cJSON_AddObjectToObject(o, "by_status");
  for (int i = 0; i < KP_RUN_NSTATUS; i++) cJSON_AddNumberToObject(by, kp_run_status_name((kp_run_status)i), d->by_status[i]);
  cJSON *ms = cJSON_AddArrayToObject(o, "metrics");
  for (size_t i = 0; i < d->nmetrics; i++) {
    const kp_metric_spread *m = &d->metrics[i];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", m->name);
    cJSON_AddNumberToObject(j, "runs", m->runs);
    if (m->has_min) cJSON_AddItemToObject(j, "min", kp_json_metric(m->min));
    else cJSON_AddNullToObject(j, "min");
    cJSON_AddStringToObject(j, "min_run", m->min_run);
    if (m->has_max) cJSON_AddItemToObject(j, "max", kp_json_metric(m->max));
    else cJSON_AddNullToObject(j, "max");
    cJSON_AddStringToObject(j, "max_run", m->max_run);
    cJSON_AddItemToObject(j, "latest", kp_json_metric(m->latest));
    cJSON_AddStringToObject(j, "latest_run", m->latest_run);
    cJSON_AddItemToArray(ms, j);
  }
  cJSON *recent = cJSON_AddArrayToObject(o, "recent_runs");
  for (size_t i = 0; i < d->nrecent; i++) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", d->recent[i].id);
    cJSON_AddStringToObject(r, "status", kp_run_status_name(d->recent[i].status));
    add_time_or_null(r, "created", d->recent[i].created);
    cJSON_AddItemToArray(recent, r);
  }
  return o;
}

cJSON *kp_view_compute(const kp_compute *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", c->name);
  cJSON_AddStringToObject(o, "type", c->type);
  cJSON_AddNumberToObject(o, "max_nodes", c->max_nodes);
  cJSON_AddNumberToObject(o, "busy_nodes", c->busy_nodes);
  cJSON_AddNumberToObject(o, "idle_nodes", c->max_nodes > c->busy_nodes ? c->max_nodes - c->busy_nodes : 0);
  cJSON_AddNumberToObject(o, "queued_runs", c->queued_runs);
  return o;
}

cJSON *kp_view_model(const kp_model *m) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", m->name);
  cJSON_AddNumberToObject(o, "version", (double)m->version);
  if (m->run_id) cJSON_AddStringToObject(o, "run", m->run_id);
  else cJSON_AddNullToObject(o, "run");
  cJSON_AddStringToObject(o, "path", m->path);
  cJSON_AddStringToObject(o, "description", m->description);
  add_time(o, "created", m->created);
  cJSON *files = cJSON_AddArrayToObject(o, "files");
  for (size_t i = 0; i < m->nfiles; i++) cJSON_AddItemToArray(files, kp_view_file(&m->files[i]));
  cJSON_AddItemToObject(o, "tags", kp_view_tags(m->tags, m->ntags));
  return o;
}

cJSON *kp_view_run(const kp_run *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", r->id);
  cJSON_AddStringToObject(o, "experiment", r->experiment);
  cJSON_AddStringToObject(o, "status", kp_run_status_name(r->status));
  cJSON_AddStringToObject(o, "compute", r->compute);
  cJSON_AddStringToObject(o, "source", r->source);
  cJSON_AddStringToObject(o, "entry", r->entry);
  cJSON *args = cJSON_Parse(r->args_json ? r->args_json : "");
  cJSON_AddItemToObject(o, "arguments", args ? args : cJSON_CreateArray());
  cJSON_AddStringToObject(o, "snapshot", r->snapshot);
  cJSON_AddNumberToObject(o, "snapshot_bytes", (double)r->snapshot_bytes);
  if (r->env_hash) cJSON_AddStringToObject(o, "environment", r->env_hash);
  else cJSON_AddNullToObject(o, "environment");
  cJSON_AddStringToObject(o, "build_cache", r->build_cache ? r->build_cache : "");
  add_time_or_null(o, "created", r->created);
  add_time_or_null(o, "prepared", r->prepared);
  add_time_or_null(o, "started", r->started);
  add_time_or_null(o, "finalizing", r->finalizing);
  add_time_or_null(o, "ended", r->ended);
  if (r->started) cJSON_AddNumberToObject(o, "duration_s", (r->ended ? r->ended : kp_now()) - r->started);
  else cJSON_AddNullToObject(o, "duration_s");
  if (r->has_exit_code) cJSON_AddNumberToObject(o, "exit_code", r->exit_code);
  else cJSON_AddNullToObject(o, "exit_code");
  if (r->signal) cJSON_AddNumberToObject(o, "signal", r->signal);
  else cJSON_AddNullToObject(o, "signal");
  if (r->error) cJSON_AddStringToObject(o, "error", r->error);
  else cJSON_AddNullToObject(o, "error");
  if (r->parent_id) cJSON_AddStringToObject(o, "parent", r->parent_id);
  else cJSON_AddNullToObject(o, "parent");
  return o;
}

cJSON *kp_view_metrics_latest(const kp_metric_latest *v, size_t n) {
  cJSON *o = cJSON_CreateObject();
  for (size_t i = 0; i < n; i++) cJSON_AddItemToObject(o, v[i].name, kp_json_metric(v[i].value));
  return o;
}

cJSON *kp_view_file(const kp_stored_file *f) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "path", f->path);
  cJSON_AddNumberToObject(o, "size", (double)f->size);
  cJSON_AddStringToObject(o, "sha256", f->sha256);
  return o;
}

cJSON *kp_view_tags(const kp_tag *v, size_t n) {
  cJSON *o = cJSON_CreateObject();
  for (size_t i = 0; i < n; i++) cJSON_AddStringToObject(o, v[i].key, v[i].value);
  return o;
}

cJSON *kp_view_params(const kp_tag *v, size_t n) { return kp_view_tags(v, n); }

cJSON *kp_view_store_error(const kp_store_error *e) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", kp_store_code_name(e->code));
  cJSON_AddStringToObject(o, "message", e->message);
  return o;
}

/* ---- services ------------------------------------------------------------------- */
void kp_view_service_uri(const kp_service *s, const char *path, char *out, size_t n) {
  int port = s->bound_port ? s->bound_port : s->port;
  snprintf(out, n, "http://%s:%d%s", strcmp(s->host, "0.0.0.0") ? s->host : "127.0.0.1", port, path);
}

cJSON *kp_view_service(const kp_service *s) {
  cJSON *o = cJSON_CreateObject();
  char uri[400], m[300];
  cJSON_AddStringToObject(o, "name", s->name);
  cJSON_AddStringToObject(o, "state", kp_service_state_name(s->state));
  kp_view_service_uri(s, "/score", uri, sizeof uri);
  cJSON_AddStringToObject(o, "scoring_uri", uri);
  kp_view_service_uri(s, "/health", uri, sizeof uri);
  cJSON_AddStringToObject(o, "health_uri", uri);
  snprintf(m, sizeof m, "%s:%lld", s->model_name, (long long)s->model_version);
  cJSON_AddStringToObject(o, "model", m);
  if (s->entry_name && s->entry_name[0]) cJSON_AddStringToObject(o, "entry", s->entry_name);
  else cJSON_AddNullToObject(o, "entry");
  cJSON_AddBoolToObject(o, "auth", s->auth);
  cJSON_AddNumberToObject(o, "port", s->bound_port ? s->bound_port : s->port);
  cJSON_AddNumberToObject(o, "workers", s->workers);
  cJSON_AddNumberToObject(o, "max_body_bytes", (double)s->max_body);
  cJSON_AddNumberToObject(o, "timeout_s", s->timeout);
  if (s->state == KP_SERVICE_RUNNING) cJSON_AddNumberToObject(o, "pid", (double)s->pid);
  else cJSON_AddNullToObject(o, "pid");
  add_time(o, "created", s->created);
  add_time(o, "started", s->started);
  if (s->error && s->error[0]) cJSON_AddStringToObject(o, "error", s->error);
  else cJSON_AddNullToObject(o, "error");
  return o;
}

/* ---- sweeps ------------------------------------------------------------------ */
const char *kp_view_trial_status(const kp_sweep_trial *t) {
  if (t->error) return "Failed";
  if (!t->has_run) return "Submitting";
  return kp_run_status_name(t->run_status);
}

cJSON *kp_view_sweep_summary(const kp_sweep *w) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", w->run.id);
  cJSON_AddStringToObject(o, "experiment", w->run.experiment);
  cJSON_AddStringToObject(o, "status", kp_run_status_name(w->run.status));
  add_time(o, "created", w->run.created);
  cJSON_AddNumberToObject(o, "runs", (double)w->trials);
  cJSON_AddStringToObject(o, "best_child", w->best_child ? w->best_child : "");
  return o;
}

/* a child's primary metric summed up: best and last of its finite values */
typedef struct trial_row {
  const kp_sweep_trial *t;
  int maximize, has_best, n;
  double best, last;
} trial_row;

/* best first; no value last; then by index */
static int cmp_trial_row(const void *a, const void *b) {
  const trial_row *x = a, *y = b;
  if (x->has_best != y->has_best) return x->has_best ? -1 : 1;
  if (x->has_best && x->best != y->best) return (x->maximize ? x->best > y->best : x->best < y->best) ? -1 : 1;
  return x->t->idx < y->t->idx ? -1 : x->t->idx > y->t->idx;
}

cJSON *kp_view_sweep(const kp_sweep *w, const kp_sweep_spec *sp, const kp_sweep_trial *t, size_t n) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", w->run.id);
  cJSON_AddStringToObject(o, "experiment", w->run.experiment);
  cJSON_AddStringToObject(o, "status", kp_run_status_name(w->run.status));
  cJSON_AddStringToObject(o, "compute", w->compute);
  cJSON_AddStringToObject(o, "sampling", kp_sampling_names[sp->sampling]);
  cJSON_AddNumberToObject(o, "seed", (double)sp->seed);
  cJSON_AddStringToObject(o, "primary_metric", sp->metric);
  cJSON_AddStringToObject(o, "goal", sp->maximize ? "maximize" : "minimize");
  cJSON_AddStringToObject(o, "policy", kp_policy_names[sp->policy.type]);
  /* the policy's settings (what early termination compared with) */
  cJSON *ps = cJSON_AddObjectToObject(o, "policy_settings");
  if (sp->policy.type != KP_POLICY_NONE) {
    cJSON_AddNumberToObject(ps, "evaluation_interval", sp->policy.evaluation_interval);
    cJSON_AddNumberToObject(ps, "delay_evaluation", sp->policy.delay_evaluation);
  }
  if (sp->policy.type == KP_POLICY_BANDIT)
    cJSON_AddNumberToObject(ps, sp->policy.use_amount ? "slack_amount" : "slack_factor", sp->policy.slack);
  if (sp->policy.type == KP_POLICY_TRUNCATION) cJSON_AddNumberToObject(ps, "truncation_percentage", sp->policy.truncation);
  /* the search space as the sweep file gave it ({"--lr": {"uniform": [0, 1]}, ...}) */
  cJSON *spec = w->spec ? cJSON_Parse(w->spec) : NULL;
  cJSON *space = cJSON_DetachItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "sampling"), "space");
  cJSON_AddItemToObject(o, "search_space", space ? space : cJSON_CreateObject());
  cJSON_Delete(spec);
  cJSON_AddNumberToObject(o, "max_total_runs", (double)kp_sweep_budget(sp));
  cJSON_AddNumberToObject(o, "max_concurrent_runs", kp_sweep_concurrency(sp));
  if (w->stop_reason && *w->stop_reason) cJSON_AddStringToObject(o, "stop_reason", w->stop_reason);
  else cJSON_AddNullToObject(o, "stop_reason");
  if (w->run.error && *w->run.error) cJSON_AddStringToObject(o, "error", w->run.error);
  else cJSON_AddNullToObject(o, "error");
  trial_row *rows = calloc(n + 1, sizeof *rows);
  if (!rows) {
    cJSON_Delete(o);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    trial_row *r = &rows[i];
    r->t = &t[i];
    r->maximize = sp->maximize;
    for (size_t k = 0; k < t[i].nvalues; k++) {
      double v = t[i].values[k];
      if (!isfinite(v)) continue;  /* NaN or an infinity is no best value */
      if (!r->has_best || (sp->maximize ? v > r->best : v < r->best)) r->best = v;
      r->has_best = 1;
      r->last = v;
      r->n++;
    }
  }
  qsort(rows, n, sizeof *rows, cmp_trial_row);
  if (n && rows[0].has_best) cJSON_AddStringToObject(o, "best_child", rows[0].t->run_id ? rows[0].t->run_id : "");
  else cJSON_AddNullToObject(o, "best_child");
  cJSON *arr = cJSON_AddArrayToObject(o, "children");
  for (size_t i = 0; i < n; i++) {
    const trial_row *r = &rows[i];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", r->t->run_id ? r->t->run_id : "");
    cJSON_AddNumberToObject(e, "index", (double)r->t->idx);
    cJSON_AddStringToObject(e, "status", kp_view_trial_status(r->t));
    cJSON *p = cJSON_Parse(r->t->params);
    cJSON_AddItemToObject(e, "parameters", p ? p : cJSON_CreateObject());
    if (r->has_best) {
      cJSON_AddNumberToObject(e, "best", r->best);
      cJSON_AddNumberToObject(e, "last", r->last);
    } else {
      cJSON_AddNullToObject(e, "best");
      cJSON_AddNullToObject(e, "last");
    }
    cJSON_AddNumberToObject(e, "intervals", r->n);
    if (r->t->decision) cJSON_AddStringToObject(e, "early_termination", r->t->decision);
    else cJSON_AddNullToObject(e, "early_termination");
    const char *err = r->t->error ? r->t->error : r->t->run_error;
    if (err) cJSON_AddStringToObject(e, "error", err);
    else cJSON_AddNullToObject(e, "error");
    cJSON_AddItemToArray(arr, e);
  }
  free(rows);
  return o;
}

/* A row of a runs list (run list --json, GET /runs): the run with its tags,
 * params and, for each of the nm metric names, its latest value (null when
 * none); NULL on a store error (the thread's store error says why). */
cJSON *kp_view_run_row(kp_store *s, const kp_run *r, const char *const *mcols, int nm) {
  cJSON *o = kp_view_run(r);
  kp_tag *t;
  size_t nt;
  if (kp_store_tag_list(s, r->id, &t, &nt) != 0) goto fail;
  cJSON_AddItemToObject(o, "tags", kp_view_tags(t, nt));
  kp_tags_free(t, nt);
  if (kp_store_run_params(s, r->id, &t, &nt) != 0) goto fail;
  cJSON_AddItemToObject(o, "params", kp_view_params(t, nt));
  kp_tags_free(t, nt);
  if (!nm) return o;
  cJSON *m = cJSON_AddObjectToObject(o, "metrics");
  for (int k = 0; k < nm; k++) {
    double v;
    int found = 0;
    if (kp_store_metric_latest_value(s, r->id, mcols[k], &v, &found) != 0) goto fail;
    if (found) cJSON_AddItemToObject(m, mcols[k], kp_json_metric(v));
    else cJSON_AddNullToObject(m, mcols[k]);
  }
  return o;
fail:
  cJSON_Delete(o);
  return NULL;
}

/* A distributed run's shape and its ranks' ends, from the tags kusari set
 * (compute.h), as "distributed": {nodes, processes_per_node, ranks,
 * launcher, rank_status: [{rank, status, exit_code | signal}]}. */
static void add_distributed(cJSON *o) {
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(o, "tags");
  const char *nodes = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_NODES));
  const char *ppn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_PPN));
  const char *launcher = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_LAUNCHER));
  const char *ranks = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_RANKS));
  if (!nodes || !ppn) return;
  cJSON *d = cJSON_AddObjectToObject(o, "distributed");
  int n = atoi(nodes), p = atoi(ppn);
  cJSON_AddNumberToObject(d, "nodes", n);
  cJSON_AddNumberToObject(d, "processes_per_node", p);
  cJSON_AddNumberToObject(d, "ranks", n * p);
  cJSON_AddStringToObject(d, "launcher", launcher ? launcher : "");
  cJSON *arr = cJSON_AddArrayToObject(d, "rank_status");
  /* "0:exit 0, 1:signal 15 (SIGTERM)"; none until the run has ended */
  for (const char *q = ranks; q && *q;) {
    const char *end = strstr(q, ", ");
    size_t len = end ? (size_t)(end - q) : strlen(q);
    char item[128];
    snprintf(item, sizeof item, "%.*s", (int)(len < sizeof item ? len : sizeof item - 1), q);
    char *colon = strchr(item, ':');
    if (colon) {
      *colon = '\0';
      cJSON *r = cJSON_CreateObject();
      cJSON_AddNumberToObject(r, "rank", atoi(item));
      cJSON_AddStringToObject(r, "status", colon + 1);
      int v;
      if (sscanf(colon + 1, "exit %d", &v) == 1) cJSON_AddNumberToObject(r, "exit_code", v);
      else if (sscanf(colon + 1, "signal %d", &v) == 1) cJSON_AddNumberToObject(r, "signal", v);
      cJSON_AddItemToArray(arr, r);
    }
    q = end ? end + 2 : NULL;
  }
}

cJSON *kp_view_run_detail(kp_store *s, const char *id) {
  kp_run r;
  if (kp_store_run_get(s, id, &r) != 0) return NULL;
  cJSON *o = kp_view_run(&r);
  kp_run_free(&r);
  kp_tag *t;
  kp_metric_latest *m;
  kp_stored_file *f;
  size_t n;
  if (kp_store_tag_list(s, id, &t, &n) != 0) goto fail;
  cJSON_AddItemToObject(o, "tags", kp_view_tags(t, n));
  kp_tags_free(t, n);
  add_distributed(o);
  if (kp_store_run_params(s, id, &t, &n) != 0) goto fail;
  cJSON_AddItemToObject(o, "params", kp_view_params(t, n));
  kp_tags_free(t, n);
  if (kp_store_metrics_latest(s, id, &m, &n) != 0) goto fail;
  cJSON_AddItemToObject(o, "metrics", kp_view_metrics_latest(m, n));
  kp_metric_latest_free(m, n);
  if (kp_store_run_files_list(s, id, NULL, &f, &n) != 0) goto fail;
  cJSON_AddNumberToObject(o, "files", (double)n);
  kp_stored_files_free(f, n);
  return o;
fail:
  cJSON_Delete(o);
  return NULL;
}

cJSON *kp_view_token(const kp_token *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", t->name);
  cJSON_AddStringToObject(o, "scope", t->read_only ? "read-only" : "read-write");
  add_time(o, "created", t->created);
  add_time_or_null(o, "last_used", t->last_used);
  return o;
}
