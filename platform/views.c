/*
 * platform/views.c — the JSON views of the store's structs (views.h).
 */
#include "views.h"

#include "kp.h"

#include <cjson/cJSON.h>

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
  add_time_or_null(o, "started", r->started);
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

cJSON *kp_view_store_error(const kp_store_error *e) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "code", kp_store_code_name(e->code));
  cJSON_AddStringToObject(o, "message", e->message);
  return o;
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
