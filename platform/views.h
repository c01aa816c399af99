/*
 * platform/views.h — the JSON views of the store's structs (store.h): what
 * `--json` prints, built in one place so that the CLI and, later, the
 * tracking server's API give the same documents. Each returns a new cJSON
 * item (cJSON_Delete it). Times are ISO-8601 UTC strings; metric values
 * follow kp_json_metric (non-finite values as "NaN"/"Infinity"/"-Infinity").
 */
#ifndef KUSARI_PLATFORM_VIEWS_H
#define KUSARI_PLATFORM_VIEWS_H

#include "store.h"

struct cJSON;

/* {name, created, runs, completed, failed, canceled, active, last_run} */
struct cJSON *kp_view_experiment_summary(const kp_experiment_summary *e);
/* {name, created, runs, last_activity, sweeps, by_status{...}, metrics[...], recent_runs[...]} */
struct cJSON *kp_view_experiment(const kp_experiment_detail *d);
/* {name, type, max_nodes, busy_nodes, idle_nodes, queued_runs} */
struct cJSON *kp_view_compute(const kp_compute *c);
/* {name, version, run, path, description, created, files[{path, size, sha256}], tags{}} */
struct cJSON *kp_view_model(const kp_model *m);
/* {id, experiment, status, compute, source, entry, arguments, snapshot,
 * snapshot_bytes, environment, build_cache, created, started, ended,
 * duration_s (until now while it runs), exit_code, signal, error, parent} */
struct cJSON *kp_view_run(const kp_run *r);
/* {name: latest value, ...} */
struct cJSON *kp_view_metrics_latest(const kp_metric_latest *v, size_t n);
/* {path, size, sha256} */
struct cJSON *kp_view_file(const kp_stored_file *f);
/* {key: value, ...} */
struct cJSON *kp_view_tags(const kp_tag *v, size_t n);
/* a run's params (kp_store_run_params): {key: value text, ...} */
struct cJSON *kp_view_params(const kp_tag *v, size_t n);
/* {code, message}: the thread's store error, as a server relays it */
struct cJSON *kp_view_store_error(const kp_store_error *e);
/* A row of a runs list (run list --json, GET /runs): the run, its tags,
 * params and the latest value of each of the nm metrics (null when none);
 * NULL on a store error. */
struct cJSON *kp_view_run_row(kp_store *s, const kp_run *r, const char *const *mcols, int nm);
/* What `run show --json` prints and GET /api/v1/runs/{id} answers: the run
 * (kp_view_run) with "tags" {}, "metrics" {name: latest value} and "files"
 * (their count). NULL when an operation failed (the thread's store error
 * says why: ENOTFOUND for an unknown run). */
struct cJSON *kp_view_run_detail(kp_store *s, const char *id);
/* {name, scope: "read-only"|"read-write", created, last_used (null: never)} */
struct cJSON *kp_view_token(const kp_token *t);

/* services */
/* {name, state, scoring_uri, health_uri, model ("NAME:VERSION"), entry,
 * auth, port, workers, max_body_bytes, timeout_s, pid (while Running),
 * created, started ("-" when never), error}: the service as given (the
 * caller first marks Failed a Running record whose process is gone) */
struct cJSON *kp_view_service(const kp_service *s);
/* http://HOST:PORT/PATH of the service: the port it last listened on, else
 * the one asked for; host 0.0.0.0 as 127.0.0.1 */
void kp_view_service_uri(const kp_service *s, const char *path, char *out, size_t n);
/* sweeps */
struct kp_sweep_spec;
/* The status a trial shows: its child run's, "Submitting" before the run is
 * linked (or when it is gone), "Failed" when it could not be submitted. */
const char *kp_view_trial_status(const kp_sweep_trial *t);
/* {id, experiment, status, created, runs (trials), best_child ("" when none)} */
struct cJSON *kp_view_sweep_summary(const kp_sweep *w);
/* {id, experiment, status, compute, sampling, seed, primary_metric, goal,
 * policy, policy_settings{evaluation_interval, delay_evaluation,
 * slack_factor|slack_amount, truncation_percentage: those the policy has},
 * search_space{} (the sweep file's sampling.space), max_total_runs,
 * max_concurrent_runs, stop_reason, error,
 * best_child, children[{id, index, status, parameters{}, best, last,
 * intervals, early_termination, error}]}: 'sp' is w->spec parsed, 't' the
 * trials with their values of the primary metric (sweep_trial_list). A
 * child's best and last are over its finite values (intervals: how many);
 * children come best first (those without a value last, then by index).
 * NULL when out of memory. */
struct cJSON *kp_view_sweep(const kp_sweep *w, const struct kp_sweep_spec *sp, const kp_sweep_trial *t, size_t n);

#endif
