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
#include <stdio.h>
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
/* For backends: sets the thread's error (KP_STORE_EBACKEND) for a store that
 * cannot be reached (a database server down or the connection cut); -1. */
int kp_store_fail_unreachable(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* 1 when the thread's last error says the store could not be reached (so
 * trying again later may work: a server answers 503, a supervisor retries). */
int kp_store_unreachable(void);
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
  int busy_nodes;   /* nodes held by runs Preparing, Running or Finalizing on it (a distributed run holds its tag kusari.nodes) */
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
  double finalizing;  /* when it became Finalizing (run page timeline, h-ui); 0 when not (yet) */
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

/* A metric point as it was stored (metric_events), with its place. */
typedef struct kp_metric_event {
  char *name;
  int64_t step;
  double time;
  double value;  /* NaN allowed */
  int64_t seq;   /* the cursor just past this point */
} kp_metric_event;

typedef struct kp_metric_point {
  const char *name;  /* NULL in query results (one series) */
  int64_t step;      /* < 0 on input: the next step of that metric */
  double time;
  double value;      /* NaN allowed */
  int rank;          /* the distributed run's rank that logged it; 0 by default.
                      * Ranks > 0 are kept apart: only metric_series_rank and
                      * metric_names_rank see them, every other op is rank 0's */
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

/* ---- run search (filter.h: the filter and order language) ------------------ */
/* One page of a run search. filter: NULL or "" for every run; order_by: NULL
 * for newest first, else "KEY [ASC|DESC]" with KEY metrics.NAME, params.NAME,
 * tags.NAME or an attribute (created, started, ended, duration, status,
 * experiment, compute, id, parent); runs without a value come last, ties go
 * newest first. max_results <= 0: every run (no next page). page_token: NULL
 * for the first page, else the token the previous page gave (opaque; one
 * given for another search or altered fails with KP_STORE_EINVAL). A bad
 * filter or order fails with KP_STORE_EINVAL and a message starting
 * "filter: position N: " / "order: position N: ". */
typedef struct kp_run_search {
  const char *experiment;
  const char *filter;
  const char *order_by; /* "metrics.Accuracy DESC", "params.lr", "created", ... */
  int64_t max_results;
  const char *page_token;
} kp_run_search;
/* ---- services (scoring services: cmd_service.c, service_server.c) ---------- */
typedef enum kp_service_state {
  KP_SERVICE_STOPPED,
  KP_SERVICE_STARTING,  /* its server was started and has not listened yet */
  KP_SERVICE_RUNNING,
  KP_SERVICE_FAILED,
  KP_SERVICE_NSTATE
} kp_service_state;

/* "Stopped", "Starting", "Running", "Failed" ("?" out of range). */
const char *kp_service_state_name(kp_service_state s);
/* Parses a state name (exact); 0, or -1 when unknown. */
int kp_service_state_parse(const char *name, kp_service_state *out);

/* A deployment: what service_create records and service_redeploy replaces. */
typedef struct kp_service_new {
  const char *name;
  const char *model_name;
  int64_t model_version;                   /* that version must exist */
  const char *entry_name, *entry_sha256;   /* the user's scoring library (a blob); NULL: the built-in scorer */
  const char *host;
  int port;                                /* 0: any free port */
  int auth, workers, timeout;              /* timeout in s */
  int64_t max_body;                        /* bytes */
  /* the sha256 (64 hex digits) of its two keys; service_create only: a
   * redeployed service keeps its keys (the keys themselves are never stored) */
  const char *primary_key_sha256, *secondary_key_sha256;
} kp_service_new;

typedef struct kp_service {
  char *name;
  kp_service_state state;  /* as recorded: the caller checks that a Running server's process lives */
  char *model_name;
  int64_t model_version;
  char *entry_name, *entry_sha256;  /* NULL when none */
  char *host;
  int port;                /* asked for (0: any free port) */
  int bound_port;          /* where it last listened; 0 when never */
  int auth, workers, timeout;
  int64_t max_body;
  char *primary_key_sha256, *secondary_key_sha256;
  char *error;             /* NULL when none */
  int64_t pid;             /* its server process; 0 when none */
  uint64_t pid_start;      /* the process's start time (kp_proc_start) */
  double created, started, stopped;  /* 0 when not (yet) */
} kp_service;

/* For the migration to schema 5 (kp_store_sqlite_service_keys_migrate):
 * keeps a service's plain keys elsewhere (the workspace: its keys file) and
 * gives their sha256 (64 hex digits); 0, or -1 (the migration fails). */
typedef int (*kp_service_keys_save)(void *ctx, const char *name, const char *primary, const char *secondary,
                                    char primary_sha256[65], char secondary_sha256[65]);
/* ---- sweeps ------------------------------------------------------------------ */
/* A sweep as recorded at submit: a parent run, Running from the start on
 * compute "sweep:<compute>" (its supervisor is the sweep's controller), and
 * the resolved sweep file. */
typedef struct kp_sweep_new {
  const char *experiment;   /* created on first use */
  const char *compute;      /* the children's compute target (it must exist) */
  const char *source, *entry;
  const char *args_json;    /* the fixed arguments: a JSON array of strings */
  const char *snapshot;
  uint64_t snapshot_bytes;
  const char *env_json;     /* or NULL */
  const char *spec;         /* the resolved sweep file (JSON) */
} kp_sweep_new;

typedef struct kp_sweep {
  kp_run run;          /* the parent run */
  char *compute;       /* the children's target (run.compute is "sweep:" and it) */
  char *spec;          /* the resolved sweep file (JSON) */
  char *env_json;      /* NULL when none */
  char *stop_reason;   /* NULL until the controller ended the sweep (sweep_end) */
  char *best_child;    /* the best child run as sweep_end recorded it, or NULL */
  int64_t trials;      /* trials recorded */
} kp_sweep;

/* One trial of a sweep: a point of its space and the child run of it. */
typedef struct kp_sweep_trial {
  int64_t idx;               /* 0, 1, ... in the order they were drawn */
  char *params;              /* JSON object: parameter name -> value text */
  char *run_id;              /* its child run; NULL until linked */
  int has_run;               /* 1 when that run exists (run_status, run_error are its) */
  kp_run_status run_status;
  char *run_error;           /* NULL when none */
  char *error;               /* why its child could not be submitted; NULL when none */
  char *decision;            /* the early termination that stopped it; NULL when none */
  int evaluated;             /* intervals of its curve the policy has looked at */
  double created;
  double *values;            /* when a metric was asked for: the child's values of it by step (NaN kept) */
  size_t nvalues;
} kp_sweep_trial;

/* How a sweep ends (sweep_end). */
typedef struct kp_sweep_end {
  kp_run_status status;     /* Completed, Failed or Canceled */
  const char *reason;       /* the stop reason (required); also the error of a Failed sweep, and of a
                             * Canceled one when no cancel reason was recorded */
  const char *best_child;   /* tagged best_child_run_id with best_value (best_metric_value); NULL: none */
  double best_value;
} kp_sweep_end;
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
   * when fewer than max_nodes runs hold one and no run queued before it waits
   * (a distributed run takes its nodes, the tag kusari.nodes, all at once,
   * and a run queued before it counts with its nodes) */
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

  /* run search */
  /* sets or replaces a run's params (key -> value text), all or none */
  int (*run_params_set)(kp_store *s, const char *run_id, const char *const *keys, const char *const *values, size_t n);
  /* a run's params by key (kp_tags_free); ENOTFOUND for an unknown run */
  int (*run_params)(kp_store *s, const char *run_id, kp_tag **out, size_t *n);
  /* one page of runs (kp_runs_free); *next_page_token NULL on the last page,
   * else free() it */
  int (*run_search)(kp_store *s, const kp_run_search *q, kp_run **out, size_t *n, char **next_page_token);
  /* services (a service's state is written by the CLI around its server's
   * start and stop and by the server itself; nothing per request) */
  /* EEXISTS when the name is taken, ENOTFOUND when the model version is not
   * registered; state Stopped */
  int (*service_create)(kp_store *s, const kp_service_new *n);
  /* replaces the deployment of an existing service (ENOTFOUND): keys,
   * state, process and created stay; the port it last listened on is kept
   * when the new port is 0 (any), else forgotten */
  int (*service_redeploy)(kp_store *s, const kp_service_new *n);
  int (*service_get)(kp_store *s, const char *name, kp_service *out);
  /* every service by name (kp_services_free) */
  int (*service_list)(kp_store *s, kp_service **out, size_t *n);
  /* the model version the service was deployed with, with its files; *found
   * 0 (and *out empty) when that version was deleted since */
  int (*service_model)(kp_store *s, const char *name, kp_model *out, int *found);
  /* replaces the sha256 of its keys (64 hex digits each, else EINVAL) */
  int (*service_set_keys)(kp_store *s, const char *name, const char *primary_sha256, const char *secondary_sha256);
  /* state transitions. starting: the CLI starts its server (no process, no
   * error, not stopped); start_failed: the server never listened: Failed
   * with 'error' unless it recorded one, only while Starting (else nothing
   * changes); running: the server listens on 'port' (its process, started
   * now, error cleared); stopped: the CLI stopped its server (no process;
   * the first stop time is kept); exited: the server records its own end,
   * 'to' Stopped or Failed with 'error' (NULL clears it), only while the
   * record names process 'pid' or none (else ECONFLICT, nothing changes) */
  int (*service_starting)(kp_store *s, const char *name);
  int (*service_start_failed)(kp_store *s, const char *name, const char *error);
  int (*service_running)(kp_store *s, const char *name, int64_t pid, uint64_t pid_start, int port);
  int (*service_stopped)(kp_store *s, const char *name);
  int (*service_exited)(kp_store *s, const char *name, int64_t pid, kp_service_state to, const char *error);
  int (*service_delete)(kp_store *s, const char *name);
  /* sweeps (a sweep's id is its parent run's; ENOTFOUND for an unknown sweep
   * or trial). sweep_create records the parent run and the sweep in one
   * transaction; the id is "<experiment>_<n>" like a run's. */
  int (*sweep_create)(kp_store *s, const kp_sweep_new *w, char *id, size_t idn);
  int (*sweep_get)(kp_store *s, const char *id, kp_sweep *out);
  /* every sweep, oldest first (kp_sweeps_free) */
  int (*sweep_list)(kp_store *s, kp_sweep **out, size_t *n);
  /* the sweep's controller process (the parent's supervisor); ECONFLICT
   * unless the sweep is Running */
  int (*sweep_attach_controller)(kp_store *s, const char *id, int64_t pid, uint64_t start);
  /* resuming a sweep whose controller died: Failed -> Running (end time and
   * error cleared) with process 'pid' standing in as its supervisor; the one
   * way an ended run runs again. ECONFLICT unless it is Failed with no stop
   * reason (it did not end on its own) */
  int (*sweep_reopen)(kp_store *s, const char *id, int64_t pid, uint64_t start);
  /* ends the parent run with the stop reason and the best child, in one
   * transaction; ECONFLICT (nothing written) when it has ended already,
   * EINVAL for a status that is not an end or a missing reason */
  int (*sweep_end)(kp_store *s, const char *id, const kp_sweep_end *e);
  /* logs best_child_by_primary_metric = value at 'step' on the parent run;
   * ECONFLICT when that step is logged already */
  int (*sweep_log_best)(kp_store *s, const char *id, int64_t step, double value);
  /* records trial 'idx' before its child run is submitted; EEXISTS when the
   * index is taken, EINVAL for a negative index or no params */
  int (*sweep_trial_add)(kp_store *s, const char *id, int64_t idx, const char *params);
  /* the trials by index, with their child runs' status and error; with
   * 'metric' (else NULL) each trial's values of it (kp_sweep_trials_free) */
  int (*sweep_trial_list)(kp_store *s, const char *id, const char *metric, kp_sweep_trial **out, size_t *n);
  /* links the trial's child run (a run whose parent is the sweep: else
   * ENOTFOUND / EINVAL); ECONFLICT when it is linked to another run */
  int (*sweep_trial_attach_run)(kp_store *s, const char *id, int64_t idx, const char *run_id);
  /* records why the trial's child could not be submitted */
  int (*sweep_trial_set_error)(kp_store *s, const char *id, int64_t idx, const char *error);
  /* the policy looked at 'evaluated' intervals; 'decision' (NULL: keep the
   * one there is) is why it stopped the child */
  int (*sweep_trial_evaluated)(kp_store *s, const char *id, int64_t idx, int evaluated, const char *decision);
  /* the child run of the sweep tagged sweep_index=idx (a controller can die
   * between submitting a child and linking it); *run_id NULL when none */
  int (*sweep_child_by_index)(kp_store *s, const char *id, int64_t idx, char **run_id);
  /* whether a cancel of the sweep was asked for (run_request_cancel of its
   * parent) and its reason (*reason NULL when none; free() it): what the
   * controller polls, cheaper than sweep_get */
  int (*sweep_cancel_requested)(kp_store *s, const char *id, int *requested, char **reason);
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
  /* ---- server-sent events (GET /runs/{id}/events, h-api) ----
   * A run's metric points in the order they were stored, each with the
   * cursor just past it (seq): at most 'max' of those after '*cursor'
   * (0: from its first; -1: none, the cursor set to now, where a stream
   * that shows only new points starts); *cursor moves past the last one
   * given. Cursors are opaque (a metrics row id) and only grow. ENOTFOUND for
   * an unknown run when the cursor is 0 or -1 (later calls do not look).
   * kp_metric_events_free. The http backend refuses it (not over HTTP). */
  int (*metric_events)(kp_store *s, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out,
                       size_t *n);
  /* ---- distributed runs: metrics per rank (issue 13) ----
   * one metric's points logged by 'rank' (0: the same as metric_series),
   * by step; ENOTFOUND when that rank logged none of that name */
  int (*metric_series_rank)(kp_store *s, const char *run_id, const char *name, int rank, kp_metric_point **out,
                            size_t *n);
  /* the names of the metrics 'rank' logged, sorted (kp_strings_free) */
  int (*metric_names_rank)(kp_store *s, const char *run_id, int rank, char ***out, size_t *n);
  /* ---- web UI zoom (h-ui) ---- */
  /* the points of one metric with from_step <= step <= to_step, downsampled
   * as metric_series_downsampled over that window's own step range when it
   * has more than max_points (>= 2) of them, else all of them (a zoomed
   * chart at full resolution); *total gets the window's point count (0 and
   * no points when the window is empty). EINVAL when from_step > to_step;
   * ENOTFOUND as metric_series when the run has no such metric at all. */
  int (*metric_series_window)(kp_store *s, const char *run_id, const char *name, int64_t from_step, int64_t to_step,
                              int64_t max_points, kp_metric_point **out, size_t *n, int64_t *total);
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
 * the backend's connection, a sqlite3 * (NULL when 's' is another backend). */
void *kp_store_sqlite_handle(kp_store *s);
/* The schema version this program's SQLite backend migrates to. */
int kp_store_sqlite_schema_version(void);
/* The remote backend (store_http.c): a tracking server's /api/v1 at 'url'
 * (http://HOST:PORT), with Bearer 'token' (NULL or "": none). Opening sends
 * nothing; the first operation connects. */
int kp_store_http_open(const char *url, const char *token, kp_store **out);
/* Beyond the interface, for an http store only (EINVAL for another): a run's
 * log (std, or build) from 'offset', waiting up to 'wait' s for more while it
 * runs, written to 'out'; *next the offset after it, 'status' the run's. */
int kp_store_http_log(kp_store *s, const char *run_id, int build, uint64_t offset, int wait, FILE *out, uint64_t *next,
                      char status[32]);
/* One API call: METHOD /api/v1/PREFIX NAME SUFFIX ('name' escaped as a path
 * segment; NULL: none) with an optional JSON body; *out the answer (2xx),
 * else the server's error as a store error. What commands that read or
 * write a server's views directly use (sweeps, services). */
struct cJSON;
int kp_store_http_call(kp_store *s, const char *method, const char *prefix, const char *name, const char *suffix,
                       const char *body, struct cJSON **out);
/* GET /api/v1/PREFIX NAME SUFFIX whose answer is text (not JSON), written
 * to 'out'; errors as kp_store_http_call's. */
int kp_store_http_text(kp_store *s, const char *prefix, const char *name, const char *suffix, FILE *out);
/* Uploads 'len' bytes as a blob of the server's workspace (PUT
 * /blobs/{sha256}; nothing sent when it has it already); hex its sha256. A
 * blob over the server's --max-body is its 413, an EBACKEND error. */
int kp_store_http_put_blob(kp_store *s, const void *data, size_t len, char hex[65]);
/* a run file's bytes into 'dst' (written aside, then renamed; 'mode') */
int kp_store_http_file(kp_store *s, const char *run_id, const char *path, const char *dst, int mode);
struct cJSON;
/* remote runs (h-fwd): one request with any body to PATH under /api/v1/
 * (escaped already); *out gets the JSON answer of a 2xx. The server's URL
 * and token the store was opened with. */
int kp_store_http_send(kp_store *s, const char *method, const char *path, const void *body, size_t n,
                       const char *ctype, struct cJSON **out);
const char *kp_store_http_url(kp_store *s);
const char *kp_store_http_token(kp_store *s);

/* Opens the PostgreSQL store at 'uri' (a libpq connection URI,
 * postgresql://USER@HOST:PORT/DB or postgresql:///DB?host=SOCKETDIR&port=P)
 * and migrates its schema to the current version (store_pg.c). In a kusari
 * built without libpq it fails with KP_STORE_EINVAL and says so. */
int kp_store_pg_open(const char *uri, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out);
/* The schema version the PostgreSQL backend migrates to (0 without libpq);
 * equal to the SQLite one (test_store.c checks). */
int kp_store_pg_schema_version(void);

/* Opens the store that 'uri' names: postgresql://... or postgres://... (the
 * PostgreSQL backend), sqlite:PATH or a plain PATH (the SQLite backend). */
int kp_store_open(const char *uri, kp_store_migrate_hook hook, void *hook_ctx, kp_store **out);
/* 1 when 'uri' names a PostgreSQL store (postgresql:// or postgres://). */
int kp_store_uri_is_postgresql(const char *uri);
/* 'uri' without its password (user:PASSWORD@ and password=... become
 * "***"), for messages and 'workspace show'. */
void kp_store_uri_redact(const char *uri, char *out, size_t n);
/* The backend's name ("sqlite", "postgresql"). */
const char *kp_store_backend(const kp_store *s);

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
/* run search */
int kp_store_run_params_set(kp_store *s, const char *run_id, const char *const *keys, const char *const *values, size_t n);
int kp_store_run_params(kp_store *s, const char *run_id, kp_tag **out, size_t *n);
int kp_store_run_search(kp_store *s, const kp_run_search *q, kp_run **out, size_t *n, char **next_page_token);
/* sweeps */
int kp_store_sweep_create(kp_store *s, const kp_sweep_new *w, char *id, size_t idn);
int kp_store_sweep_get(kp_store *s, const char *id, kp_sweep *out);
int kp_store_sweep_list(kp_store *s, kp_sweep **out, size_t *n);
int kp_store_sweep_attach_controller(kp_store *s, const char *id, int64_t pid, uint64_t start);
int kp_store_sweep_reopen(kp_store *s, const char *id, int64_t pid, uint64_t start);
int kp_store_sweep_end(kp_store *s, const char *id, const kp_sweep_end *e);
int kp_store_sweep_log_best(kp_store *s, const char *id, int64_t step, double value);
int kp_store_sweep_trial_add(kp_store *s, const char *id, int64_t idx, const char *params);
int kp_store_sweep_trial_list(kp_store *s, const char *id, const char *metric, kp_sweep_trial **out, size_t *n);
int kp_store_sweep_trial_attach_run(kp_store *s, const char *id, int64_t idx, const char *run_id);
int kp_store_sweep_trial_set_error(kp_store *s, const char *id, int64_t idx, const char *error);
int kp_store_sweep_trial_evaluated(kp_store *s, const char *id, int64_t idx, int evaluated, const char *decision);
int kp_store_sweep_child_by_index(kp_store *s, const char *id, int64_t idx, char **run_id);
int kp_store_sweep_cancel_requested(kp_store *s, const char *id, int *requested, char **reason);
/* tokens (the tracking server) */
int kp_store_token_create(kp_store *s, const char *name, const char *sha256_hex, int read_only);
int kp_store_token_list(kp_store *s, kp_token **out, size_t *n);
int kp_store_token_revoke(kp_store *s, const char *name);
int kp_store_token_check(kp_store *s, const char *sha256_hex, int *found, int *read_only);
int kp_store_metric_series_window(kp_store *s, const char *run_id, const char *name, int64_t from_step, int64_t to_step,
                                  int64_t max_points, kp_metric_point **out, size_t *n, int64_t *total);
int kp_store_metric_series_downsampled(kp_store *s, const char *run_id, const char *name, int64_t max_points,
                                       kp_metric_point **out, size_t *n, int64_t *total);
/* server-sent events */
int kp_store_metric_events(kp_store *s, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out, size_t *n);
void kp_metric_events_free(kp_metric_event *v, size_t n);
/* distributed runs: metrics per rank */
int kp_store_metric_series_rank(kp_store *s, const char *run_id, const char *name, int rank, kp_metric_point **out,
                                size_t *n);
int kp_store_metric_names_rank(kp_store *s, const char *run_id, int rank, char ***out, size_t *n);

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
/* sweeps */
void kp_sweep_free(kp_sweep *w);
void kp_sweeps_free(kp_sweep *v, size_t n);
void kp_sweep_trials_free(kp_sweep_trial *v, size_t n);

/* services */
int kp_store_service_create(kp_store *s, const kp_service_new *n);
int kp_store_service_redeploy(kp_store *s, const kp_service_new *n);
int kp_store_service_get(kp_store *s, const char *name, kp_service *out);
int kp_store_service_list(kp_store *s, kp_service **out, size_t *n);
int kp_store_service_model(kp_store *s, const char *name, kp_model *out, int *found);
int kp_store_service_set_keys(kp_store *s, const char *name, const char *primary_sha256, const char *secondary_sha256);
int kp_store_service_starting(kp_store *s, const char *name);
int kp_store_service_start_failed(kp_store *s, const char *name, const char *error);
int kp_store_service_running(kp_store *s, const char *name, int64_t pid, uint64_t pid_start, int port);
int kp_store_service_stopped(kp_store *s, const char *name);
int kp_store_service_exited(kp_store *s, const char *name, int64_t pid, kp_service_state to, const char *error);
int kp_store_service_delete(kp_store *s, const char *name);
void kp_service_free(kp_service *v);
void kp_services_free(kp_service *v, size_t n);
/* SQLite backend, inside the migration to schema 5 (its hook): when the
 * services table still holds plain keys (columns primary_key and
 * secondary_key), renames the columns to primary_key_sha256 and
 * secondary_key_sha256 and, for each service, calls 'save' and stores the
 * digests it gives in place of the keys (with secure_delete on, so that the
 * keys' bytes do not stay in freed pages). Nothing when the columns have
 * their new names already. */
int kp_store_sqlite_service_keys_migrate(kp_store *s, kp_service_keys_save save, void *ctx);
void kp_tokens_free(kp_token *v, size_t n);

#endif
