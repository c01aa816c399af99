/*
 * src/run/client.c — offline-only run client (placeholder until the platform
 * connects it through the run protocol): every call succeeds, stores nothing.
 */
#include "kusari/run.h"
#include "kusari/error.h"

struct ks_run { int offline; };
static ks_run g_offline = {1};

ks_run *ks_run_current(void) { return &g_offline; }
int ks_run_is_offline(const ks_run *run) { return run->offline; }
const char *ks_run_id(const ks_run *run) { (void)run; return ""; }
int ks_run_log(ks_run *run, const char *name, double value) {
  (void)run; (void)value;
  return name ? KS_OK : ks_error_set(KS_EINVAL, "ks_run_log: metric name is NULL");
}
int ks_run_log_step(ks_run *run, const char *name, int64_t step, double value) {
  (void)step; return ks_run_log(run, name, value);
}
int ks_run_log_list(ks_run *run, const char *name, const double *values, size_t n) {
  (void)values; (void)n; return ks_run_log(run, name, 0.0);
}
int ks_run_tag(ks_run *run, const char *key, const char *value) {
  (void)run; (void)value;
  return key ? KS_OK : ks_error_set(KS_EINVAL, "ks_run_tag: key is NULL");
}
int ks_run_upload_file(ks_run *run, const char *name, const char *path) {
  (void)run; (void)name; (void)path; return KS_OK;
}
int ks_run_flush(ks_run *run) { (void)run; return KS_OK; }
