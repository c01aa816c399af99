/*
 * kusari/run.h — the run client: how a training program reports to the
 * platform (the analogue of azureml.core.Run.get_context()).
 *
 * Inside a run started by `kusari run submit`, the environment carries the run
 * protocol's variables (KUSARI_RUN_ID, KUSARI_TRACKING_URI, ...; see
 * docs/PLATFORM.md) and these calls record metrics, tags and files in the
 * run's history. Outside a run the client is offline: every call succeeds and
 * stores nothing, exactly like a script run by hand.
 *
 * Logging is cheap (no round trip per call) and durable: every value logged
 * before the process dies is in the store afterwards.
 */
#ifndef KUSARI_RUN_H
#define KUSARI_RUN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_run ks_run;

/* The process's run (created on first call, never NULL; offline outside a
 * platform run). Owned by the library; released at exit. */
ks_run *ks_run_current(void);
/* 1 when not connected to a platform run. */
int ks_run_is_offline(const ks_run *run);
/* The run id ("" when offline). */
const char *ks_run_id(const ks_run *run);

/* The largest step: 2^53 - 1, the largest integer a double (and so every
 * JSON reader) holds exactly. Implicit steps stop there too (they repeat it
 * rather than wrap around). */
#define KS_RUN_STEP_MAX ((int64_t)9007199254740991)

/* Appends one value to metric 'name' (step = number of earlier values of that
 * name, like Run.log). In a distributed run (`kusari run submit --nodes`)
 * each rank's values are kept with its rank (KUSARI_RANK, set by the
 * launcher); the run's default views show rank 0's. */
int ks_run_log(ks_run *run, const char *name, double value);
/* Same with an explicit step, 0 to KS_RUN_STEP_MAX (a larger one fails with
 * KS_EINVAL and logs nothing; -1 means the next step, like ks_run_log). */
int ks_run_log_step(ks_run *run, const char *name, int64_t step, double value);
/* Logs a list metric (Run.log_list). */
int ks_run_log_list(ks_run *run, const char *name, const double *values, size_t n);
/* Sets a tag on the run. */
int ks_run_tag(ks_run *run, const char *key, const char *value);
/* Copies a local file into the run's history as 'name' (e.g. "outputs/x.png"). */
int ks_run_upload_file(ks_run *run, const char *name, const char *path);
/* Makes sure everything logged so far is durable. */
int ks_run_flush(ks_run *run);

/* ---------------------------------------------------------------------------
 * The metrics channel (used by the platform; training programs need not call
 * these). A channel is a file the supervisor creates per run and names in
 * KUSARI_METRICS_CHANNEL. Writers (this client, `kusari log`) map it shared
 * and append fixed-size slots, reserving space with an atomic add on the
 * header's tail and publishing each record with a release store of its kind
 * word last; so a record is either fully visible or not at all, and what was
 * written survives kill -9 of the writer (the pages belong to the file).
 * See docs/PLATFORM.md for the byte layout. */

/* Bytes in a new channel's sparse file (its capacity). */
#define KS_RUN_CHANNEL_BYTES ((uint64_t)1 << 30)

typedef enum ks_run_record_kind {
  KS_RUN_RECORD_METRIC = 1,  /* name, step (-1 = next of that name), value */
  KS_RUN_RECORD_TAG    = 2   /* name = key, text = value                 */
} ks_run_record_kind;

/* One decoded record; pointers are valid only during the callback. */
typedef struct ks_run_record {
  int kind;          /* ks_run_record_kind */
  const char *name;  /* metric name or tag key (NUL-terminated) */
  const char *text;  /* tag value ("" for metrics) */
  int64_t step;      /* explicit step, or -1 for "next step of this name" */
  double value;      /* metric value */
  double time;       /* seconds since the epoch when logged */
  int rank;          /* metrics: the rank of the process that logged it (0
                      * when not distributed; in the channel, a metric's text
                      * is "" for rank 0, else the rank in decimal) */
} ks_run_record;

/* Returns 0 to go on; non-zero stops the read (that record stays unread). */
typedef int (*ks_run_record_fn)(void *ctx, const ks_run_record *rec);

/* Creates an empty channel file at 'path' (fails if it exists). */
int ks_run_channel_create(const char *path);

/* Calls 'fn' for every record after byte '*offset' (0 = from the start) and
 * advances '*offset' past each record consumed. Without 'final' it stops at
 * the first record still being written; with 'final' (all writers are gone)
 * it skips slots that a killed writer reserved but never published.
 * Returns KS_OK, or the callback's non-zero value, or a KS_E* error. */
int ks_run_channel_read(const char *path, uint64_t *offset, int final,
                        ks_run_record_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
