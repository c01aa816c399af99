/*
 * platform/store.h — the platform's store interface: its domain operations
 * (experiments, runs and their status transitions, tags, metrics, models,
 * compute targets, ...) as one struct of operations, with one implementation
 * per backend. store_sqlite.c is the embedded backend (one SQLite file per
 * workspace, and the schema migrations); a PostgreSQL backend and a remote
 * one (the tracking server's HTTP API) implement the same table.
 *
 * The pattern is that of pluggable storage backends (libgit2's odb/refdb): a
 * kp_store is a pointer to a const table of operations followed by whatever
 * the backend keeps; callers use only the kp_store_* wrappers below, never
 * the table directly, so an operation can gain a default or a check in one
 * place.
 *
 * Rules every backend follows (tests/platform/test_store.c checks them):
 *   - Operations return 0 on success and -1 on failure after setting the
 *     calling thread's error (kp_store_error: a code and a message). They
 *     print nothing: the CLI prints the error, a server relays it.
 *   - A run's status changes only while the run has not ended: a transition
 *     of an ended run fails with KP_STORE_ECONFLICT and changes nothing.
 *   - Metrics are ingested exactly once: a batch names the channel offset it
 *     starts at and the one it ends at; it is applied only when the run's
 *     stored offset equals the start (else KP_STORE_ECONFLICT, nothing
 *     written), and the points, tags and new offset commit together.
 *   - Model versions are numbered 1, 2, ... per name inside one transaction.
 *   - An unknown id or name fails with KP_STORE_ENOTFOUND; a name taken
 *     with KP_STORE_EEXISTS.
 *   - Strings passed in are borrowed for the call; results are owned by the
 *     caller and freed with the matching kp_*_free function.
 */
#ifndef KUSARI_PLATFORM_STORE_H
#define KUSARI_PLATFORM_STORE_H

#include <stddef.h>
#include <stdint.h>

/* ---- run status ---------------------------------------------------------- */
typedef enum kp_run_status {
  KP_RUN_QUEUED,
  KP_RUN_PREPARING,
  KP_RUN_RUNNING,
  KP_RUN_FINALIZING,
  KP_RUN_COMPLETED,  /* terminal from here on */
  KP_RUN_FAILED,
  KP_RUN_CANCELED,
  KP_RUN_NSTATUS
} kp_run_status;

/* "Queued", "Preparing", ... ("?" for a value out of range). */
const char *kp_run_status_name(kp_run_status s);
/* Parses a status name (exact, case-sensitive); 0, or -1 when unknown. */
int kp_run_status_parse(const char *name, kp_run_status *out);
/* 1 for Completed, Failed and Canceled. */
int kp_run_status_ended(kp_run_status s);

/* ---- errors (per thread) ------------------------------------------------- */
typedef enum kp_store_code {
  KP_STORE_OK = 0,
  KP_STORE_ENOTFOUND,  /* no such experiment, run, model, target, ... */
  KP_STORE_EEXISTS,    /* the name is taken */
  KP_STORE_ECONFLICT,  /* the state forbids it: the run has ended, the target is in use, the batch was applied */
  KP_STORE_EINVAL,     /* a bad argument */
  KP_STORE_EBACKEND,   /* the database failed (I/O, out of memory, busy past the timeout, ...) */
} kp_store_code;

typedef struct kp_store_error {
  kp_store_code code;
  char message[1024];
} kp_store_error;

/* The calling thread's last error (code KP_STORE_OK after a success of an
 * operation that clears it: every kp_store_* wrapper does). */
const kp_store_error *kp_store_last_error(void);
/* For backends: sets the thread's error; returns -1. */
int kp_store_fail(kp_store_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kp_store_clear_error(void);
/* A stable name for a code ("not_found", "exists", ...), for JSON errors. */
const char *kp_store_code_name(kp_store_code code);

/* ---- domain structs -------------------------------------------------------- */
typedef struct kp_experiment_summary {
  char *name;
  double created;
  int runs, completed, failed, canceled, active;
  double last_run;  /* created time of its newest run; 0 when none */
} kp_experiment_summary;

typedef struct kp_metric_spread {
  char *name;
  int runs;              /* runs that logged it */
  int has_min, has_max;  /* 0: no run had a number */
  double min, max, latest;  /* latest may be NaN */
  char *min_run, *max_run, *latest_run;
} kp_metric_spread;

typedef struct kp_run_brief {
  char *id;
  kp_run_status status;
  double created;
} kp_run_brief;

typedef struct kp_experiment_detail {
  char *name;
  double created;
  int runs, sweeps;
  double last_activity;  /* 0 when it has no run */
  int by_status[KP_RUN_NSTATUS];
  kp_metric_spread *metrics;  /* each metric's runs' final values, by name */
  size_t nmetrics;
  kp_run_brief *recent;       /* the newest runs, newest first (at most 5) */
  size_t nrecent;
} kp_experiment_detail;

typedef struct kp_compute {
  char *name;
  char *type;
  int max_nodes;
  int busy_nodes;   /* runs Preparing, Running or Finalizing on it */
  int queued_runs;
} kp_compute;

/* A run as recorded at submit. */
typedef struct kp_run_new {
  const char *experiment;  /* created on first use */
  const char *compute, *source, *entry;
  const char *args_json;   /* JSON array of strings */
  const char *snapshot;
  uint64_t snapshot_bytes;
  const char *env_json, *env_hash;  /* or NULL */
  const char *parent_id;   /* or NULL */
  const char *const *tag_keys, *const *tag_values;
  size_t ntags;
} kp_run_new;

typedef struct kp_run {
  char *id, *experiment, *parent_id;  /* parent_id NULL when none */
  kp_run_status status;
  char *compute, *error;  /* error NULL when none */
  char *source, *entry, *args_json, *snapshot;
  char *env_json, *env_hash, *cancel_reason, *build_cache;  /* NULL when none */
  int64_t snapshot_bytes;
  double created, prepared, started, ended;  /* 0 when not (yet) */
  int has_exit_code, exit_code, signal;
  int cancel_requested;
  double cancel_grace;
  uint64_t channel_offset;
  int64_t supervisor_pid, entry_pid;        /* 0 when none */
  uint64_t supervisor_start, entry_start;  /* process start times (kp_proc_start) */
} kp_run;

/* What kp_store_run_claim_node found. */
typedef enum kp_node_claim {
  KP_CLAIM_TAKEN,      /* a node was free: the run is Preparing now */
  KP_CLAIM_WAIT,       /* every node is busy, or runs queued before it wait too */
  KP_CLAIM_CANCELED,   /* a cancel was requested while it waited */
  KP_CLAIM_NO_TARGET,  /* its compute target was deleted */
} kp_node_claim;

/* One run file (an index entry; the bytes are in the blob store). */
typedef struct kp_file_entry {
  const char *path, *sha256;
  int64_t size;
} kp_file_entry;

/* How many of each object a workspace holds. */
typedef struct kp_store_counts {
  int experiments, runs, computes, models;
} kp_store_counts;

/* Which runs to list, in which order. */
typedef enum kp_run_order {
  KP_ORDER_NEWEST,    /* by submission, newest first (the default; desc ignored) */
  KP_ORDER_CREATED,
  KP_ORDER_STARTED,
  KP_ORDER_STATUS,    /* by status name */
  KP_ORDER_DURATION,  /* until now for a run that has not ended */
  KP_ORDER_ID,        /* by submission */
  KP_ORDER_METRIC,    /* by the latest value of metric 'order_metric' */
} kp_run_order;

typedef struct kp_run_query {
  const char *experiment;  /* NULL: any */
  int has_status;
  kp_run_status status;
  const char *parent_id;   /* NULL: any */
  kp_run_order order;
  const char *order_metric;
  int desc;                /* runs without a value come last either way; ties newest first */
  int64_t limit;           /* <= 0: no limit */
} kp_run_query;

/* A status transition. 'to' is the new status; the rest is set with it. */
typedef struct kp_run_transition {
  kp_run_status to;
  int end;                 /* record the end time (now) */
  int has_exit_code, exit_code;
  int signal;              /* 0: unchanged */
  const char *error;       /* NULL: unchanged (Canceled takes the cancel reason) */
} kp_run_transition;

typedef struct kp_tag {
  char *key, *value;
} kp_tag;

/* A metric's latest value (the highest step). */
typedef struct kp_metric_latest {
  char *name;
  double value;  /* NaN allowed */
  int64_t step;
} kp_metric_latest;

typedef struct kp_metric_point {
  const char *name;  /* NULL in query results (one series) */
  int64_t step;      /* < 0 on input: the next step of that metric */
  double time;
  double value;      /* NaN allowed */
} kp_metric_point;

/* One exactly-once ingestion batch (the run's channel from 'from' to 'to'). */
typedef struct kp_ingest_batch {
  uint64_t from, to;
  const kp_metric_point *points;
  size_t npoints;
  const char *const *tag_keys, *const *tag_values;
  size_t ntags;
} kp_ingest_batch;

typedef struct kp_model_file {
  const char *path, *sha256;
  int64_t size;
} kp_model_file;

typedef struct kp_model_new {
  const char *name;
  const char *run_id;  /* or NULL */
  const char *path;    /* what was registered (a run path or a local file) */
  const char *description;
  const kp_model_file *files;
  size_t nfiles;
  const char *const *tag_keys, *const *tag_values;
  size_t ntags;
} kp_model_new;

/* A file as recorded (a run's or a model version's); owned. */
typedef struct kp_stored_file {
  char *path, *sha256;
  int64_t size;
} kp_stored_file;

typedef struct kp_model {
  char *name;
  int64_t version;
  char *run_id;  /* NULL when registered from a local file */
  char *path, *description;
  double created;
  kp_stored_file *files;  /* by path */
  size_t nfiles;
  kp_tag *tags;           /* by key */
  size_t ntags;
} kp_model;

/* ---- the tracking server (kusari server) ----------------------------------- */
/* An API token as listed: the store keeps only the sha256 of its secret. */
typedef struct kp_token {
  char *name;
  int read_only;
  double created, last_used;  /* last_used 0: never used */
} kp_token;

/* ---- the interface --------------------------------------------------------- */
typedef struct kp_store kp_store;

typedef struct kp_store_ops {
  const char *backend;  /* "sqlite", "postgresql", ... */
  void (*close)(kp_store *s);

  /* transactions: one writer at a time; begin takes the write lock now */
  int (*begin)(kp_store *s);
  int (*commit)(kp_store *s);
  void (*rollback)(kp_store *s);  /* no-op outside a transaction */

  /* experiments */
  int (*experiment_list)(kp_store *s, kp_experiment_summary **out, size_t *n);
  int (*experiment_get)(kp_store *s, const char *name, kp_experiment_detail *out);

  /* compute targets */
  int (*compute_create)(kp_store *s, const char *name, const char *type, int max_nodes);
  /* every target by name, or only 'only' (ENOTFOUND when absent) */
  int (*compute_list)(kp_store *s, const char *only, kp_compute **out, size_t *n);
  /* ECONFLICT while runs on it have not ended */
  int (*compute_delete)(kp_store *s, const char *name, int *active_runs);

  /* runs */
  int (*run_create)(kp_store *s, const kp_run_new *r, char *id, size_t idn);
  int (*run_get)(kp_store *s, const char *id, kp_run *out);
  int (*run_list)(kp_store *s, const kp_run_query *q, kp_run **out, size_t *n);
  int (*run_transition)(kp_store *s, const char *id, const kp_run_transition *t);
  /* records a cancel request (grace in s, reason) for the run's supervisor;
   * ECONFLICT when the run has ended */
  int (*run_request_cancel)(kp_store *s, const char *id, double grace, const char *reason);
  /* every run that has not ended, oldest first (kp_runs_free) */
  int (*run_list_active)(kp_store *s, kp_run **out, size_t *n);
  /* scheduling: in one transaction, takes a node of the run's compute target
   * when fewer than max_nodes runs hold one and no run queued before it waits */
  int (*run_claim_node)(kp_store *s, const char *id, kp_node_claim *claim, int *max_nodes);
  /* the run's supervisor process; ECONFLICT unless the run is Queued */
  int (*run_attach_supervisor)(kp_store *s, const char *id, int64_t pid, uint64_t start);
  int (*run_attach_entry)(kp_store *s, const char *id, int64_t pid, uint64_t start);
  int (*run_set_build_cache)(kp_store *s, const char *id, const char *cache);

  /* deleting runs (the caller holds a transaction around the checks and
   * the delete): the runs of an experiment / of a sweep (its parent first),
   * oldest first; ENOTFOUND when there is no such experiment / sweep */
  int (*experiment_runs)(kp_store *s, const char *name, kp_run_brief **out, size_t *n);
  int (*sweep_runs)(kp_store *s, const char *sweep_id, kp_run_brief **out, size_t *n);
  int (*run_is_sweep)(kp_store *s, const char *id, int *yes);
  /* what runs hold: their files (count, bytes), the distinct blobs of their
   * files and their distinct snapshots (kp_strings_free each) */
  int (*runs_files_size)(kp_store *s, const char *const *ids, size_t n, int64_t *files, int64_t *bytes);
  int (*runs_blobs)(kp_store *s, const char *const *ids, size_t n, char ***files, size_t *nfiles, char ***snapshots,
                    size_t *nsnapshots);
  /* removes the runs with their metrics, tags, files and sweep records */
  int (*runs_delete)(kp_store *s, const char *const *ids, size_t n);
  int (*experiment_delete)(kp_store *s, const char *name);

  /* the workspace as a whole */
  int (*counts)(kp_store *s, kp_store_counts *out);

  /* blobs: used[i] = 1 when anything recorded refers to blob hex[i] (a run
   * file, a model file, a run's snapshot, a service's entry); the blobs that
   * snapshots list are not looked at (see snapshot_list) */
  int (*blobs_referenced)(kp_store *s, const char *const *hex, size_t n, unsigned char *used);
  /* the distinct snapshots of all runs (free each and the array) */
  int (*snapshot_list)(kp_store *s, char ***out, size_t *n);

  /* run files (index; replaces an entry of the same path) */
  int (*run_files_put)(kp_store *s, const char *run_id, const kp_file_entry *f, size_t n);
  /* a run's files by path: all (prefix NULL), or the file 'prefix' and the
   * files under the folder 'prefix' (ENOTFOUND only for an unknown run) */
  int (*run_files_list)(kp_store *s, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n);

  /* tags */
  int (*tag_set)(kp_store *s, const char *run_id, const char *key, const char *value);
  int (*tag_list)(kp_store *s, const char *run_id, kp_tag **out, size_t *n);
  /* removes tags, all or none: ENOTFOUND when the run lacks one */
  int (*tag_remove)(kp_store *s, const char *run_id, const char *const *keys, size_t n);

  /* metrics */
  int (*metrics_ingest)(kp_store *s, const char *run_id, const kp_ingest_batch *b);
  /* one metric's points by step (name NULL in each point; free() *out) */
  int (*metric_series)(kp_store *s, const char *run_id, const char *name, kp_metric_point **out, size_t *n);
  /* 1 in *yes when any run logged metric 'name' */
  int (*metric_exists)(kp_store *s, const char *name, int *yes);
  /* the latest value of one metric of a run: *found 0 when it has none */
  int (*metric_latest_value)(kp_store *s, const char *run_id, const char *name, double *value, int *found);
  /* following a run: the newest point logged after '*cursor' by the run
   * (of metric 'name', or of any when NULL), in *out (*found 0 when none);
   * *cursor moves past everything logged so far. A cursor starts at -1,
   * which makes the first call give the newest point already there. The
   * cursor is opaque (the SQLite backend: a metric row id). out->name is
   * the caller's to free. */
  int (*metric_follow)(kp_store *s, const char *run_id, const char *name, int64_t *cursor, kp_metric_latest *out,
                       int *found);
  /* the resolved sweep file (JSON) of the sweep whose child run 'run_id' is;
   * *spec NULL when it is no sweep's child (free() it) */
  int (*run_sweep_spec)(kp_store *s, const char *run_id, char **spec);
  /* each metric's latest value, by name (kp_metric_latest_free) */
  int (*metrics_latest)(kp_store *s, const char *run_id, kp_metric_latest **out, size_t *n);
  /* the names of the metrics a run logged, sorted (kp_strings_free) */
  int (*metric_names)(kp_store *s, const char *run_id, char ***out, size_t *n);

  /* models */
  int (*model_version_create)(kp_store *s, const kp_model_new *m, int64_t *version);
  /* version 0: the latest; ENOTFOUND for an unknown name or version */
  int (*model_get)(kp_store *s, const char *name, int64_t version, kp_model *out);
  /* every version of every model (or of 'name'), by name and version */
  int (*model_list)(kp_store *s, const char *name, kp_model **out, size_t *n);
  /* the services deployed with that version (kp_strings_free) */
  int (*model_services)(kp_store *s, const char *name, int64_t version, char ***out, size_t *n);
  int (*model_delete)(kp_store *s, const char *name, int64_t version);
  /* sets or replaces tags, all or none */
  int (*model_tags_set)(kp_store *s, const char *name, int64_t version, const char *const *keys,
                        const char *const *values, size_t n);
  /* removes tags, all or none: ENOTFOUND when the version lacks one */
  int (*model_tags_remove)(kp_store *s, const char *name, int64_t version, const char *const *keys, size_t n);

  /* tokens (the tracking server's API tokens, kusari server token ...):
   * the secret's sha256 (hex) is stored, never the secret; EEXISTS when the
   * name is taken */
  int (*token_create)(kp_store *s, const char *name, const char *sha256_hex, int read_only);
  /* every token by name (kp_tokens_free) */
  int (*token_list)(kp_store *s, kp_token **out, size_t *n);
  /* ENOTFOUND when there is no such token */
  int (*token_revoke)(kp_store *s, const char *name);
  /* the token whose secret has this sha256: *found 0 when none (revoked or
   * never created); else its scope in *read_only, and its last use is
   * recorded (at most once a minute, so reads seldom write) */
  int (*token_check)(kp_store *s, const char *sha256_hex, int *found, int *read_only);
  /* one metric's series downsampled in the database to at most max_points
   * (>= 2) points, in step order: the series' step range is cut into at
   * most max_points / 2 buckets of equal step ranges and each bucket gives
   * the point of its lowest and of its highest value (one point when they are
   * the same; NaN only when the bucket has nothing else), so the global min
   * and max are kept; every point when there are no more than max_points.
   * *total gets the series' point count. ENOTFOUND as metric_series. */
  int (*metric_series_downsampled)(kp_store *s, const char *run_id, const char *name, int64_t max_points,
                                   kp_metric_point **out, size_t *n, int64_t *total);
} kp_store_ops;

struct kp_store {
  const kp_store_ops *ops;
};

/* ---- backends -------------------------------------------------------------- */
/* Called inside the migration transaction after the schema reaches version
 * 'to', for steps that also touch files (see store_sqlite.c). */
typedef int (*kp_store_migrate_hook)(void *ctx, kp_store *s, int to);

/* Opens (creating it if needed) the SQLite store at 'path' and migrates it
 * to the current schema version. */
int kp_store_sqlite_open(const char *path, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out);
/* Transitional (store.c's kp_db_* helpers, the modules not migrated yet):
 * the backend's connection, a sqlite3 *. */
void *kp_store_sqlite_handle(kp_store *s);
/* The schema version this program's SQLite backend migrates to. */
int kp_store_sqlite_schema_version(void);

/* ---- wrappers (clear the thread's error, then call the backend) ----------- */
void kp_store_close(kp_store *s);
int kp_store_begin(kp_store *s);
int kp_store_commit(kp_store *s);
void kp_store_rollback(kp_store *s);
int kp_store_experiment_list(kp_store *s, kp_experiment_summary **out, size_t *n);
int kp_store_experiment_get(kp_store *s, const char *name, kp_experiment_detail *out);
int kp_store_compute_create(kp_store *s, const char *name, const char *type, int max_nodes);
int kp_store_compute_list(kp_store *s, const char *only, kp_compute **out, size_t *n);
int kp_store_compute_delete(kp_store *s, const char *name, int *active_runs);
int kp_store_run_create(kp_store *s, const kp_run_new *r, char *id, size_t idn);
int kp_store_run_get(kp_store *s, const char *id, kp_run *out);
int kp_store_run_list(kp_store *s, const kp_run_query *q, kp_run **out, size_t *n);
int kp_store_metric_exists(kp_store *s, const char *name, int *yes);
int kp_store_metric_latest_value(kp_store *s, const char *run_id, const char *name, double *value, int *found);
int kp_store_run_transition(kp_store *s, const char *id, const kp_run_transition *t);
int kp_store_run_request_cancel(kp_store *s, const char *id, double grace, const char *reason);
int kp_store_run_list_active(kp_store *s, kp_run **out, size_t *n);
int kp_store_run_claim_node(kp_store *s, const char *id, kp_node_claim *claim, int *max_nodes);
int kp_store_run_attach_supervisor(kp_store *s, const char *id, int64_t pid, uint64_t start);
int kp_store_run_attach_entry(kp_store *s, const char *id, int64_t pid, uint64_t start);
int kp_store_run_set_build_cache(kp_store *s, const char *id, const char *cache);
int kp_store_run_files_put(kp_store *s, const char *run_id, const kp_file_entry *f, size_t n);
int kp_store_experiment_runs(kp_store *s, const char *name, kp_run_brief **out, size_t *n);
int kp_store_sweep_runs(kp_store *s, const char *sweep_id, kp_run_brief **out, size_t *n);
int kp_store_run_is_sweep(kp_store *s, const char *id, int *yes);
int kp_store_runs_files_size(kp_store *s, const char *const *ids, size_t n, int64_t *files, int64_t *bytes);
int kp_store_runs_blobs(kp_store *s, const char *const *ids, size_t n, char ***files, size_t *nfiles, char ***snapshots,
                        size_t *nsnapshots);
int kp_store_runs_delete(kp_store *s, const char *const *ids, size_t n);
int kp_store_experiment_delete(kp_store *s, const char *name);
int kp_store_counts_get(kp_store *s, kp_store_counts *out);
int kp_store_blobs_referenced(kp_store *s, const char *const *hex, size_t n, unsigned char *used);
int kp_store_snapshot_list(kp_store *s, char ***out, size_t *n);
int kp_store_tag_set(kp_store *s, const char *run_id, const char *key, const char *value);
int kp_store_tag_list(kp_store *s, const char *run_id, kp_tag **out, size_t *n);
int kp_store_tag_remove(kp_store *s, const char *run_id, const char *const *keys, size_t n);
int kp_store_metrics_ingest(kp_store *s, const char *run_id, const kp_ingest_batch *b);
int kp_store_metric_series(kp_store *s, const char *run_id, const char *name, kp_metric_point **out, size_t *n);
int kp_store_metric_names(kp_store *s, const char *run_id, char ***out, size_t *n);
int kp_store_metrics_latest(kp_store *s, const char *run_id, kp_metric_latest **out, size_t *n);
int kp_store_metric_follow(kp_store *s, const char *run_id, const char *name, int64_t *cursor, kp_metric_latest *out,
                           int *found);
int kp_store_run_sweep_spec(kp_store *s, const char *run_id, char **spec);
int kp_store_model_version_create(kp_store *s, const kp_model_new *m, int64_t *version);
int kp_store_model_get(kp_store *s, const char *name, int64_t version, kp_model *out);
int kp_store_model_list(kp_store *s, const char *name, kp_model **out, size_t *n);
int kp_store_model_services(kp_store *s, const char *name, int64_t version, char ***out, size_t *n);
int kp_store_model_delete(kp_store *s, const char *name, int64_t version);
int kp_store_model_tags_set(kp_store *s, const char *name, int64_t version, const char *const *keys,
                            const char *const *values, size_t n);
int kp_store_model_tags_remove(kp_store *s, const char *name, int64_t version, const char *const *keys, size_t n);
int kp_store_run_files_list(kp_store *s, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n);
/* tokens (the tracking server) */
int kp_store_token_create(kp_store *s, const char *name, const char *sha256_hex, int read_only);
int kp_store_token_list(kp_store *s, kp_token **out, size_t *n);
int kp_store_token_revoke(kp_store *s, const char *name);
int kp_store_token_check(kp_store *s, const char *sha256_hex, int *found, int *read_only);
int kp_store_metric_series_downsampled(kp_store *s, const char *run_id, const char *name, int64_t max_points,
                                       kp_metric_point **out, size_t *n, int64_t *total);

/* freeing results */
void kp_experiment_summaries_free(kp_experiment_summary *v, size_t n);
void kp_experiment_detail_free(kp_experiment_detail *d);
void kp_computes_free(kp_compute *v, size_t n);
void kp_run_free(kp_run *r);
void kp_runs_free(kp_run *v, size_t n);
void kp_tags_free(kp_tag *v, size_t n);
void kp_run_briefs_free(kp_run_brief *v, size_t n);
void kp_strings_free(char **v, size_t n);
void kp_metric_latest_free(kp_metric_latest *v, size_t n);
void kp_stored_files_free(kp_stored_file *v, size_t n);
void kp_model_free(kp_model *m);
void kp_models_free(kp_model *v, size_t n);
void kp_tokens_free(kp_token *v, size_t n);

#endif
