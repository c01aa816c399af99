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
/* {code, message}: the thread's store error, as a server relays it */
struct cJSON *kp_view_store_error(const kp_store_error *e);
/* What `run show --json` prints and GET /api/v1/runs/{id} answers: the run
 * (kp_view_run) with "tags" {}, "metrics" {name: latest value} and "files"
 * (their count). NULL when an operation failed (the thread's store error
 * says why: ENOTFOUND for an unknown run). */
struct cJSON *kp_view_run_detail(kp_store *s, const char *id);
/* {name, scope: "read-only"|"read-write", created, last_used (null: never)} */
struct cJSON *kp_view_token(const kp_token *t);

#endif
