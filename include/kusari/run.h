/*
 * kusari/run.h — the run client: how a training program reports to the
 * platform (the analogue of azureml.core.Run.get_context()).
 *
 * Inside a run started by `kusari run submit`, the environment carries the run
 * protocol's variables (KUSARI_RUN_ID, KUSARI_TRACKING_URI, ...; see
 * docs/ARCHITECTURE.md) and these calls record metrics, tags and files in the
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

/* Appends one value to metric 'name' (step = number of earlier values of that
 * name, like Run.log). */
int ks_run_log(ks_run *run, const char *name, double value);
/* Same with an explicit step. */
int ks_run_log_step(ks_run *run, const char *name, int64_t step, double value);
/* Logs a list metric (Run.log_list). */
int ks_run_log_list(ks_run *run, const char *name, const double *values, size_t n);
/* Sets a tag on the run. */
int ks_run_tag(ks_run *run, const char *key, const char *value);
/* Copies a local file into the run's history as 'name' (e.g. "outputs/x.png"). */
int ks_run_upload_file(ks_run *run, const char *name, const char *path);
/* Makes sure everything logged so far is durable. */
int ks_run_flush(ks_run *run);

#ifdef __cplusplus
}
#endif
#endif
