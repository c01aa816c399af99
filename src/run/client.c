/*
 * src/run/client.c — the run client (kusari/run.h): connects a training
 * program to its platform run through the run protocol's environment
 * variables, or stays offline when they are absent.
 *
 *   KUSARI_RUN_ID           the run's id (absent: offline)
 *   KUSARI_METRICS_CHANNEL  path of the run's metrics channel (channel.c)
 *   KUSARI_UPLOAD_DIR       where ks_run_upload_file() puts files; the
 *                           supervisor stores them in the run's history
 *   KUSARI_RANK             this process's rank in a distributed run (set
 *                           by `kusari __rank`); its metrics carry it
 *
 * Connecting makes stdout line-buffered (it is a file under the platform).
 * Each ks_run_log is one atomic add and a few stores into a shared mapping of
 * the channel file: no system call, no lock, durable across kill -9.
 */
#include "kusari/run.h"
#include "kusari/error.h"
#include "channel_impl.h"
#include "channel_write.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KS_RUN_NAME_MAX KS_CH_NAME_MAX
#define KS_RUN_TEXT_MAX KS_CH_TEXT_MAX

struct ks_run {
  int offline;
  char id[256];
  void *base;          /* channel mapping (NULL offline) */
  uint64_t cap;
  char upload_dir[4096];
  char rank[24];       /* "" for rank 0, else the rank in decimal */
};

static ks_run g_run = {.offline = 1};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void run_unmap(void) {
  if (g_run.base) munmap(g_run.base, (size_t)g_run.cap);
  g_run.base = NULL;
}

static void run_init(void) {
  const char *id = getenv("KUSARI_RUN_ID");
  const char *ch = getenv("KUSARI_METRICS_CHANNEL");
  if (!id || !*id || !ch || !*ch) return;
  if (ks__ch_map(ch, 1, &g_run.base, &g_run.cap) != KS_OK) {
    fprintf(stderr, "kusari: run %s: %s; metrics of this process are not recorded\n", id, ks_error_last());
    return;
  }
  snprintf(g_run.id, sizeof g_run.id, "%s", id);
  const char *up = getenv("KUSARI_UPLOAD_DIR");
  snprintf(g_run.upload_dir, sizeof g_run.upload_dir, "%s", up ? up : "");
  const char *rk = getenv("KUSARI_RANK");
  char *end = NULL;
  long r = rk && *rk ? strtol(rk, &end, 10) : 0;
  if (rk && *rk && (*end || r < 0 || r > KS_CH_RANK_MAX))
    fprintf(stderr, "kusari: run %s: KUSARI_RANK='%s' is not a rank (0 to %d); metrics are logged as rank 0's\n", id, rk,
            KS_CH_RANK_MAX);
  else if (r > 0)
    snprintf(g_run.rank, sizeof g_run.rank, "%d", (int)r);
  g_run.offline = 0;
  /* stdout goes to the run's log file: make it line-buffered so that
   * `kusari run wait --show-output` streams it as it is printed */
  setvbuf(stdout, NULL, _IOLBF, 0);
  atexit(run_unmap);
}

ks_run *ks_run_current(void) {
  pthread_once(&g_once, run_init);
  return &g_run;
}

int ks_run_is_offline(const ks_run *run) { return !run || run->offline; }
const char *ks_run_id(const ks_run *run) { return run && !run->offline ? run->id : ""; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check_name(const char *what, const char *name, size_t *len) {
  if (!name) return ks_error_set(KS_EINVAL, "%s: name is NULL", what);
  size_t n = strlen(name);
  if (n == 0 || n > KS_RUN_NAME_MAX)
    return ks_error_set(KS_EINVAL, "%s: name must be 1..%d bytes, got %zu", what, KS_RUN_NAME_MAX, n);
  *len = n;
  return KS_OK;
}

int ks_run_log_step(ks_run *run, const char *name, int64_t step, double value) {
  size_t n = 0;
  int rc = check_name("ks_run_log", name, &n);
  if (rc != KS_OK) return rc;
  if (step > KS_RUN_STEP_MAX || step < -1)
    return ks_error_set(KS_EINVAL, "ks_run_log_step: step %lld of metric '%s' is out of range (0 to %lld, or -1 for the next)",
                        (long long)step, name, (long long)KS_RUN_STEP_MAX);
  if (!run || run->offline) return KS_OK;
  return ks__ch_append(run->base, run->cap, KS_RUN_RECORD_METRIC, name, n, run->rank, strlen(run->rank), step, value,
                       now_s());
}

int ks_run_log(ks_run *run, const char *name, double value) {
  return ks_run_log_step(run, name, -1, value);
}

int ks_run_log_list(ks_run *run, const char *name, const double *values, size_t n) {
  if (n && !values) return ks_error_set(KS_EINVAL, "ks_run_log_list: values is NULL");
  size_t len = 0;
  int rc = check_name("ks_run_log_list", name, &len);
  for (size_t i = 0; rc == KS_OK && i < n; i++) rc = ks_run_log(run, name, values[i]);
  return rc;
}

int ks_run_tag(ks_run *run, const char *key, const char *value) {
  size_t n = 0;
  int rc = check_name("ks_run_tag", key, &n);
  if (rc != KS_OK) return rc;
  if (!value) value = "";
  size_t vn = strlen(value);
  if (vn > KS_RUN_TEXT_MAX)
    return ks_error_set(KS_EINVAL, "ks_run_tag: value of '%s' is %zu bytes, the limit is %d", key, vn, KS_RUN_TEXT_MAX);
  if (!run || run->offline) return KS_OK;
  return ks__ch_append(run->base, run->cap, KS_RUN_RECORD_TAG, key, n, value, vn, -1, 0.0, now_s());
}

/* 'name' must be relative, without "." or ".." components. */
static int check_rel_path(const char *name) {
  if (!name || !*name || name[0] == '/')
    return ks_error_set(KS_EINVAL, "ks_run_upload_file: name '%s' must be a relative path", name ? name : "(null)");
  const char *p = name;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
      return ks_error_set(KS_EINVAL, "ks_run_upload_file: name '%s' may not contain empty, '.' or '..' parts", name);
    p += len + (e ? 1 : 0);
  }
  return KS_OK;
}

static int mkdirs_for(char *path) {
  for (char *s = strchr(path + 1, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    int r = mkdir(path, 0755);
    *s = '/';
    if (r != 0 && errno != EEXIST) return -1;
  }
  return 0;
}

int ks_run_upload_file(ks_run *run, const char *name, const char *path) {
  int rc = check_rel_path(name);
  if (rc != KS_OK) return rc;
  if (!path) return ks_error_set(KS_EINVAL, "ks_run_upload_file: path is NULL");
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return ks_error_set(KS_ENOTFOUND, "ks_run_upload_file: cannot open %s: %s", path, strerror(errno));
  if (!run || run->offline || !run->upload_dir[0]) { close(in); return KS_OK; }
  char dst[8192];
  snprintf(dst, sizeof dst, "%s/%s", run->upload_dir, name);
  int out = -1;
  if (mkdirs_for(dst) == 0) out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (out < 0) {
    close(in);
    return ks_error_set(KS_EIO, "ks_run_upload_file: cannot create %s: %s", dst, strerror(errno));
  }
  char buf[65536];
  ssize_t r;
  rc = KS_OK;
  while ((r = read(in, buf, sizeof buf)) > 0) {
    if (write(out, buf, (size_t)r) != r) { rc = ks_error_set(KS_EIO, "ks_run_upload_file: write %s: %s", dst, strerror(errno)); break; }
  }
  if (r < 0) rc = ks_error_set(KS_EIO, "ks_run_upload_file: read %s: %s", path, strerror(errno));
  close(in);
  if (close(out) != 0 && rc == KS_OK) rc = ks_error_set(KS_EIO, "ks_run_upload_file: close %s", dst);
  return rc;
}

int ks_run_flush(ks_run *run) {
  /* Records are in the shared page cache as soon as they are written; they
   * survive the death of this process without any flush. */
  (void)run;
  return KS_OK;
}
