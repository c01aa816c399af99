/*
 * platform/store_api.c — the backend-independent half of the store interface
 * (store.h): run status names, the per-thread error, the kp_store_* wrappers
 * and the functions that free results.
 */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const STATUS_NAMES[KP_RUN_NSTATUS] = {"Queued",    "Preparing", "Running", "Finalizing",
                                                         "Completed", "Failed",    "Canceled"};

const char *kp_run_status_name(kp_run_status s) {
  return (unsigned)s < KP_RUN_NSTATUS ? STATUS_NAMES[s] : "?";
}

int kp_run_status_parse(const char *name, kp_run_status *out) {
  for (int i = 0; name && i < KP_RUN_NSTATUS; i++)
    if (!strcmp(name, STATUS_NAMES[i])) {
      *out = (kp_run_status)i;
      return 0;
    }
  return -1;
}

int kp_run_status_ended(kp_run_status s) { return s == KP_RUN_COMPLETED || s == KP_RUN_FAILED || s == KP_RUN_CANCELED; }

/* ---- errors ------------------------------------------------------------------ */
static _Thread_local kp_store_error t_err;
static _Thread_local int t_unreachable;  /* t_err is "the store cannot be reached" */

const kp_store_error *kp_store_last_error(void) { return &t_err; }

void kp_store_clear_error(void) {
  t_err.code = KP_STORE_OK;
  t_err.message[0] = '\0';
  t_unreachable = 0;
}

int kp_store_fail_unreachable(const char *fmt, ...) {
  t_err.code = KP_STORE_EBACKEND;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_err.message, sizeof t_err.message, fmt, ap);
  va_end(ap);
  t_unreachable = 1;
  return -1;
}

int kp_store_unreachable(void) { return t_err.code == KP_STORE_EBACKEND && t_unreachable; }

int kp_store_fail(kp_store_code code, const char *fmt, ...) {
  t_unreachable = 0;
  t_err.code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_err.message, sizeof t_err.message, fmt, ap);
  va_end(ap);
  return -1;
}

const char *kp_store_code_name(kp_store_code code) {
  switch (code) {
  case KP_STORE_OK: return "ok";
  case KP_STORE_ENOTFOUND: return "not_found";
  case KP_STORE_EEXISTS: return "exists";
  case KP_STORE_ECONFLICT: return "conflict";
  case KP_STORE_EINVAL: return "invalid";
  case KP_STORE_EBACKEND: return "backend";
  }
  return "unknown";
}

/* ---- choosing a backend --------------------------------------------------------- */
int kp_store_uri_is_postgresql(const char *uri) {
  return uri && (!strncmp(uri, "postgresql://", 13) || !strncmp(uri, "postgres://", 11));
}

int kp_store_open(const char *uri, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out) {
  *out = NULL;
  if (!uri || !*uri) {
    kp_store_clear_error();
    return kp_store_fail(KP_STORE_EINVAL, "no store named");
  }
  if (kp_store_uri_is_postgresql(uri)) return kp_store_pg_open(uri, hook, hook_ctx, out);
  if (!strncmp(uri, "sqlite:", 7)) uri += 7;
  return kp_store_sqlite_open(uri, hook, hook_ctx, out);
}

void kp_store_uri_redact(const char *uri, char *out, size_t n) {
  if (!n) return;
  out[0] = '\0';
  if (!uri) return;
  size_t o = 0;
  const char *p = uri, *scheme = strstr(uri, "://");
  /* user:password@ in the authority */
  if (scheme) {
    const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?"), *at = NULL;
    for (const char *c = auth; c < end; c++)
      if (*c == '@') at = c;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon) {
      int w = snprintf(out, n, "%.*s:***", (int)(colon - uri), uri);
      o = w < 0 ? 0 : (size_t)w;
      if (o >= n) o = n - 1;
      p = at;
    }
  }
  /* password=... in the query */
  while (*p && o + 1 < n) {
    if ((p == uri || p[-1] == '?' || p[-1] == '&') && !strncmp(p, "password=", 9)) {
      int w = snprintf(out + o, n - o, "password=***");
      o += w > 0 ? (size_t)w : 0;
      if (o >= n) break;
      p += 9 + strcspn(p + 9, "&");
      continue;
    }
    out[o++] = *p++;
  }
  if (o >= n) o = n - 1;
  out[o] = '\0';
}

const char *kp_store_backend(const kp_store *s) { return s && s->ops ? s->ops->backend : "?"; }

/* ---- wrappers ------------------------------------------------------------------ */
void kp_store_close(kp_store *s) {
  if (s) s->ops->close(s);
}

#define CALL(op, ...)                                                                                     \
  do {                                                                                                    \
    kp_store_clear_error();                                                                               \
    if (!s->ops->op) return kp_store_fail(KP_STORE_EINVAL, #op " is not supported by the %s backend", s->ops->backend); \
    return s->ops->op(s, ##__VA_ARGS__);                                                                  \
  } while (0)

int kp_store_begin(kp_store *s) { CALL(begin); }
int kp_store_commit(kp_store *s) { CALL(commit); }
void kp_store_rollback(kp_store *s) {
  if (s) s->ops->rollback(s);
}
int kp_store_experiment_list(kp_store *s, kp_experiment_summary **out, size_t *n) { CALL(experiment_list, out, n); }
int kp_store_experiment_get(kp_store *s, const char *name, kp_experiment_detail *out) { CALL(experiment_get, name, out); }
int kp_store_compute_create(kp_store *s, const char *name, const char *type, int max_nodes) {
  CALL(compute_create, name, type, max_nodes);
}
int kp_store_compute_list(kp_store *s, const char *only, kp_compute **out, size_t *n) { CALL(compute_list, only, out, n); }
int kp_store_compute_delete(kp_store *s, const char *name, int *active_runs) { CALL(compute_delete, name, active_runs); }
int kp_store_run_create(kp_store *s, const kp_run_new *r, char *id, size_t idn) { CALL(run_create, r, id, idn); }
int kp_store_run_get(kp_store *s, const char *id, kp_run *out) { CALL(run_get, id, out); }
int kp_store_run_list(kp_store *s, const kp_run_query *q, kp_run **out, size_t *n) { CALL(run_list, q, out, n); }
int kp_store_metric_exists(kp_store *s, const char *name, int *yes) { CALL(metric_exists, name, yes); }
int kp_store_metric_latest_value(kp_store *s, const char *run_id, const char *name, double *value, int *found) {
  CALL(metric_latest_value, run_id, name, value, found);
}
int kp_store_run_transition(kp_store *s, const char *id, const kp_run_transition *t) { CALL(run_transition, id, t); }
int kp_store_run_request_cancel(kp_store *s, const char *id, double grace, const char *reason) {
  CALL(run_request_cancel, id, grace, reason);
}
int kp_store_run_list_active(kp_store *s, kp_run **out, size_t *n) { CALL(run_list_active, out, n); }
int kp_store_run_claim_node(kp_store *s, const char *id, kp_node_claim *claim, int *max_nodes) {
  CALL(run_claim_node, id, claim, max_nodes);
}
int kp_store_run_attach_supervisor(kp_store *s, const char *id, int64_t pid, uint64_t start) {
  CALL(run_attach_supervisor, id, pid, start);
}
int kp_store_run_attach_entry(kp_store *s, const char *id, int64_t pid, uint64_t start) {
  CALL(run_attach_entry, id, pid, start);
}
int kp_store_run_set_build_cache(kp_store *s, const char *id, const char *cache) { CALL(run_set_build_cache, id, cache); }
int kp_store_run_files_put(kp_store *s, const char *run_id, const kp_file_entry *f, size_t n) {
  CALL(run_files_put, run_id, f, n);
}
int kp_store_experiment_runs(kp_store *s, const char *name, kp_run_brief **out, size_t *n) {
  CALL(experiment_runs, name, out, n);
}
int kp_store_sweep_runs(kp_store *s, const char *sweep_id, kp_run_brief **out, size_t *n) {
  CALL(sweep_runs, sweep_id, out, n);
}
int kp_store_run_is_sweep(kp_store *s, const char *id, int *yes) { CALL(run_is_sweep, id, yes); }
int kp_store_runs_files_size(kp_store *s, const char *const *ids, size_t n, int64_t *files, int64_t *bytes) {
  CALL(runs_files_size, ids, n, files, bytes);
}
int kp_store_runs_blobs(kp_store *s, const char *const *ids, size_t n, char ***files, size_t *nfiles, char ***snapshots,
                        size_t *nsnapshots) {
  CALL(runs_blobs, ids, n, files, nfiles, snapshots, nsnapshots);
}
int kp_store_runs_delete(kp_store *s, const char *const *ids, size_t n) { CALL(runs_delete, ids, n); }
int kp_store_experiment_delete(kp_store *s, const char *name) { CALL(experiment_delete, name); }
int kp_store_model_get(kp_store *s, const char *name, int64_t version, kp_model *out) {
  CALL(model_get, name, version, out);
}
int kp_store_model_list(kp_store *s, const char *name, kp_model **out, size_t *n) { CALL(model_list, name, out, n); }
int kp_store_model_services(kp_store *s, const char *name, int64_t version, char ***out, size_t *n) {
  CALL(model_services, name, version, out, n);
}
int kp_store_model_delete(kp_store *s, const char *name, int64_t version) { CALL(model_delete, name, version); }
int kp_store_model_tags_set(kp_store *s, const char *name, int64_t version, const char *const *keys,
                            const char *const *values, size_t n) {
  CALL(model_tags_set, name, version, keys, values, n);
}
int kp_store_model_tags_remove(kp_store *s, const char *name, int64_t version, const char *const *keys, size_t n) {
  CALL(model_tags_remove, name, version, keys, n);
}
int kp_store_run_files_list(kp_store *s, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n) {
  CALL(run_files_list, run_id, prefix, out, n);
}
int kp_store_counts_get(kp_store *s, kp_store_counts *out) { CALL(counts, out); }
int kp_store_blobs_referenced(kp_store *s, const char *const *hex, size_t n, unsigned char *used) {
  CALL(blobs_referenced, hex, n, used);
}
int kp_store_snapshot_list(kp_store *s, char ***out, size_t *n) { CALL(snapshot_list, out, n); }
int kp_store_tag_set(kp_store *s, const char *run_id, const char *key, const char *value) {
  CALL(tag_set, run_id, key, value);
}
int kp_store_tag_list(kp_store *s, const char *run_id, kp_tag **out, size_t *n) { CALL(tag_list, run_id, out, n); }
int kp_store_tag_remove(kp_store *s, const char *run_id, const char *const *keys, size_t n) {
  CALL(tag_remove, run_id, keys, n);
}
int kp_store_metrics_ingest(kp_store *s, const char *run_id, const kp_ingest_batch *b) { CALL(metrics_ingest, run_id, b); }
int kp_store_metric_series(kp_store *s, const char *run_id, const char *name, kp_metric_point **out, size_t *n) {
  CALL(metric_series, run_id, name, out, n);
}
int kp_store_metric_names(kp_store *s, const char *run_id, char ***out, size_t *n) { CALL(metric_names, run_id, out, n); }
int kp_store_metrics_latest(kp_store *s, const char *run_id, kp_metric_latest **out, size_t *n) {
  CALL(metrics_latest, run_id, out, n);
}
int kp_store_metric_follow(kp_store *s, const char *run_id, const char *name, int64_t *cursor, kp_metric_latest *out,
                           int *found) {
  CALL(metric_follow, run_id, name, cursor, out, found);
}
int kp_store_run_sweep_spec(kp_store *s, const char *run_id, char **spec) { CALL(run_sweep_spec, run_id, spec); }
int kp_store_model_version_create(kp_store *s, const kp_model_new *m, int64_t *version) {
  CALL(model_version_create, m, version);
}

/* run search */
int kp_store_run_params_set(kp_store *s, const char *run_id, const char *const *keys, const char *const *values, size_t n) {
  CALL(run_params_set, run_id, keys, values, n);
}
int kp_store_run_params(kp_store *s, const char *run_id, kp_tag **out, size_t *n) { CALL(run_params, run_id, out, n); }
int kp_store_run_search(kp_store *s, const kp_run_search *q, kp_run **out, size_t *n, char **next_page_token) {
  *out = NULL;
  *n = 0;
  *next_page_token = NULL;
  CALL(run_search, q, out, n, next_page_token);
}
/* sweeps */
int kp_store_sweep_create(kp_store *s, const kp_sweep_new *w, char *id, size_t idn) { CALL(sweep_create, w, id, idn); }
int kp_store_sweep_get(kp_store *s, const char *id, kp_sweep *out) { CALL(sweep_get, id, out); }
int kp_store_sweep_list(kp_store *s, kp_sweep **out, size_t *n) { CALL(sweep_list, out, n); }
int kp_store_sweep_attach_controller(kp_store *s, const char *id, int64_t pid, uint64_t start) {
  CALL(sweep_attach_controller, id, pid, start);
}
int kp_store_sweep_reopen(kp_store *s, const char *id, int64_t pid, uint64_t start) { CALL(sweep_reopen, id, pid, start); }
int kp_store_sweep_end(kp_store *s, const char *id, const kp_sweep_end *e) { CALL(sweep_end, id, e); }
int kp_store_sweep_log_best(kp_store *s, const char *id, int64_t step, double value) { CALL(sweep_log_best, id, step, value); }
int kp_store_sweep_trial_add(kp_store *s, const char *id, int64_t idx, const char *params) {
  CALL(sweep_trial_add, id, idx, params);
}
int kp_store_sweep_trial_list(kp_store *s, const char *id, const char *metric, kp_sweep_trial **out, size_t *n) {
  CALL(sweep_trial_list, id, metric, out, n);
}
int kp_store_sweep_trial_attach_run(kp_store *s, const char *id, int64_t idx, const char *run_id) {
  CALL(sweep_trial_attach_run, id, idx, run_id);
}
int kp_store_sweep_trial_set_error(kp_store *s, const char *id, int64_t idx, const char *error) {
  CALL(sweep_trial_set_error, id, idx, error);
}
int kp_store_sweep_trial_evaluated(kp_store *s, const char *id, int64_t idx, int evaluated, const char *decision) {
  CALL(sweep_trial_evaluated, id, idx, evaluated, decision);
}
int kp_store_sweep_child_by_index(kp_store *s, const char *id, int64_t idx, char **run_id) {
  CALL(sweep_child_by_index, id, idx, run_id);
}
int kp_store_sweep_cancel_requested(kp_store *s, const char *id, int *requested, char **reason) {
  CALL(sweep_cancel_requested, id, requested, reason);
}

/* ---- freeing --------------------------------------------------------------------- */
void kp_experiment_summaries_free(kp_experiment_summary *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].name);
  free(v);
}

void kp_experiment_detail_free(kp_experiment_detail *d) {
  if (!d) return;
  free(d->name);
  for (size_t i = 0; i < d->nmetrics; i++) {
    free(d->metrics[i].name);
    free(d->metrics[i].min_run);
    free(d->metrics[i].max_run);
    free(d->metrics[i].latest_run);
  }
  free(d->metrics);
  for (size_t i = 0; i < d->nrecent; i++) free(d->recent[i].id);
  free(d->recent);
  memset(d, 0, sizeof *d);
}

void kp_computes_free(kp_compute *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].type);
  }
  free(v);
}

void kp_run_free(kp_run *r) {
  if (!r) return;
  free(r->id);
  free(r->experiment);
  free(r->parent_id);
  free(r->compute);
  free(r->error);
  free(r->source);
  free(r->entry);
  free(r->args_json);
  free(r->snapshot);
  free(r->env_json);
  free(r->env_hash);
  free(r->cancel_reason);
  free(r->build_cache);
  memset(r, 0, sizeof *r);
}

void kp_runs_free(kp_run *v, size_t n) {
  for (size_t i = 0; i < n; i++) kp_run_free(&v[i]);
  free(v);
}

void kp_tags_free(kp_tag *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].key);
    free(v[i].value);
  }
  free(v);
}

void kp_strings_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

void kp_run_briefs_free(kp_run_brief *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].id);
  free(v);
}

void kp_stored_files_free(kp_stored_file *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].path);
    free(v[i].sha256);
  }
  free(v);
}

void kp_model_free(kp_model *m) {
  if (!m) return;
  free(m->name);
  free(m->run_id);
  free(m->path);
  free(m->description);
  kp_stored_files_free(m->files, m->nfiles);
  kp_tags_free(m->tags, m->ntags);
  memset(m, 0, sizeof *m);
}

void kp_models_free(kp_model *v, size_t n) {
  for (size_t i = 0; i < n; i++) kp_model_free(&v[i]);
  free(v);
}

void kp_metric_latest_free(kp_metric_latest *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].name);
  free(v);
}

/* ---- services ---------------------------------------------------------------------- */
static const char *const SERVICE_STATE_NAMES[KP_SERVICE_NSTATE] = {"Stopped", "Starting", "Running", "Failed"};

const char *kp_service_state_name(kp_service_state s) {
  return (unsigned)s < KP_SERVICE_NSTATE ? SERVICE_STATE_NAMES[s] : "?";
}

int kp_service_state_parse(const char *name, kp_service_state *out) {
  for (int i = 0; name && i < KP_SERVICE_NSTATE; i++)
    if (!strcmp(name, SERVICE_STATE_NAMES[i])) {
      *out = (kp_service_state)i;
      return 0;
    }
  return -1;
}

int kp_store_service_create(kp_store *s, const kp_service_new *n) { CALL(service_create, n); }
int kp_store_service_redeploy(kp_store *s, const kp_service_new *n) { CALL(service_redeploy, n); }
int kp_store_service_get(kp_store *s, const char *name, kp_service *out) { CALL(service_get, name, out); }
int kp_store_service_list(kp_store *s, kp_service **out, size_t *n) { CALL(service_list, out, n); }
int kp_store_service_model(kp_store *s, const char *name, kp_model *out, int *found) {
  CALL(service_model, name, out, found);
}
int kp_store_service_set_keys(kp_store *s, const char *name, const char *primary_sha256, const char *secondary_sha256) {
  CALL(service_set_keys, name, primary_sha256, secondary_sha256);
}
int kp_store_service_starting(kp_store *s, const char *name) { CALL(service_starting, name); }
int kp_store_service_start_failed(kp_store *s, const char *name, const char *error) {
  CALL(service_start_failed, name, error);
}
int kp_store_service_running(kp_store *s, const char *name, int64_t pid, uint64_t pid_start, int port) {
  CALL(service_running, name, pid, pid_start, port);
}
int kp_store_service_stopped(kp_store *s, const char *name) { CALL(service_stopped, name); }
int kp_store_service_exited(kp_store *s, const char *name, int64_t pid, kp_service_state to, const char *error) {
  CALL(service_exited, name, pid, to, error);
}
int kp_store_service_delete(kp_store *s, const char *name) { CALL(service_delete, name); }

void kp_service_free(kp_service *v) {
  if (!v) return;
  free(v->name);
  free(v->model_name);
  free(v->entry_name);
  free(v->entry_sha256);
  free(v->host);
  free(v->primary_key_sha256);
  free(v->secondary_key_sha256);
  free(v->error);
  memset(v, 0, sizeof *v);
}

void kp_services_free(kp_service *v, size_t n) {
  for (size_t i = 0; i < n; i++) kp_service_free(&v[i]);
  free(v);
}

/* sweeps */
void kp_sweep_free(kp_sweep *w) {
  if (!w) return;
  kp_run_free(&w->run);
  free(w->compute);
  free(w->spec);
  free(w->env_json);
  free(w->stop_reason);
  free(w->best_child);
  memset(w, 0, sizeof *w);
}

void kp_sweeps_free(kp_sweep *v, size_t n) {
  for (size_t i = 0; i < n; i++) kp_sweep_free(&v[i]);
  free(v);
}

void kp_sweep_trials_free(kp_sweep_trial *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(v[i].params);
    free(v[i].run_id);
    free(v[i].run_error);
    free(v[i].error);
    free(v[i].decision);
    free(v[i].values);
  }
  free(v);
}

/* ---- tokens (the tracking server) ------------------------------------------------ */
int kp_store_token_create(kp_store *s, const char *name, const char *sha256_hex, int read_only) {
  CALL(token_create, name, sha256_hex, read_only);
}
int kp_store_token_list(kp_store *s, kp_token **out, size_t *n) { CALL(token_list, out, n); }
int kp_store_token_revoke(kp_store *s, const char *name) { CALL(token_revoke, name); }
int kp_store_token_check(kp_store *s, const char *sha256_hex, int *found, int *read_only) {
  CALL(token_check, sha256_hex, found, read_only);
}
int kp_store_metric_series_downsampled(kp_store *s, const char *run_id, const char *name, int64_t max_points,
                                       kp_metric_point **out, size_t *n, int64_t *total) {
  CALL(metric_series_downsampled, run_id, name, max_points, out, n, total);
}
int kp_store_metric_series_window(kp_store *s, const char *run_id, const char *name, int64_t from_step, int64_t to_step,
                                  int64_t max_points, kp_metric_point **out, size_t *n, int64_t *total) {
  CALL(metric_series_window, run_id, name, from_step, to_step, max_points, out, n, total);
}

/* ---- distributed runs: metrics per rank ------------------------------------------- */
int kp_store_metric_series_rank(kp_store *s, const char *run_id, const char *name, int rank, kp_metric_point **out,
                                size_t *n) {
  CALL(metric_series_rank, run_id, name, rank, out, n);
}
int kp_store_metric_names_rank(kp_store *s, const char *run_id, int rank, char ***out, size_t *n) {
  CALL(metric_names_rank, run_id, rank, out, n);
}

void kp_tokens_free(kp_token *v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i].name);
  free(v);
}

/* server-sent events */
int kp_store_metric_events(kp_store *s, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out,
                           size_t *n) {
  *out = NULL;
  *n = 0;
  CALL(metric_events, run_id, cursor, max, out, n);
}

void kp_metric_events_free(kp_metric_event *v, size_t n) {
  for (size_t i = 0; i < n && v; i++) free(v[i].name);
  free(v);
}
