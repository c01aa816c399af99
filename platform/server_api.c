/*
 * platform/server_api.c — the tracking server's /api/v1 routes (what
 * docs/openapi.json describes; tests/platform/test_server_openapi.sh checks
 * that the two agree). Each route reads the store through the interface
 * (store.h) on its worker's own connection and answers with the views of
 * views.c, the shapes the CLI's --json prints.
 */
#include "server_api.h"
#include "server.h"
#include "service.h"
#include "sweep.h"
#include "views.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "/api/v1/"
#define MAX_RESULTS_LIMIT 1000
#define DEFAULT_MAX_RESULTS 100
#define LOG_CHUNK_DEFAULT (1024 * 1024)
#define LOG_CHUNK_LIMIT (16 * 1024 * 1024)
#define LATEST_RUNS_LIMIT 1000

typedef enum MHD_Result (*route_fn)(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st);

typedef struct route {
  const char *method;
  const char *pattern;  /* segments; "*" one, "**" the rest (one or more) */
  const char *params;   /* the query parameters it takes, comma-separated */
  int write;
  route_fn fn;
} route;

/* ---- helpers ------------------------------------------------------------------- */
static const char *qarg(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* an integer query parameter within [lo, hi]; 0, or -1 after answering 400 */
static int qint(struct MHD_Connection *c, const char *name, long long def, long long lo, long long hi, long long *out,
                enum MHD_Result *ans) {
  const char *v = qarg(c, name);
  *out = def;
  if (!v) return 0;
  long long x;
  if (kp_parse_int(v, &x) != 0 || x < lo || x > hi) {
    *ans = srv_error(c, 400, "invalid", "query parameter '%s' must be an integer from %lld to %lld, not '%.100s'", name,
                     lo, hi, v);
    return -1;
  }
  *out = x;
  return 0;
}

static cJSON *point_json(const kp_metric_point *p) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "step", (double)p->step);
  cJSON_AddItemToObject(o, "timestamp", kp_json_metric_exact(p->time));
  cJSON_AddItemToObject(o, "value", kp_json_metric_exact(p->value));
  return o;
}

static const char *jstring(const cJSON *o, const char *k) {
  return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* the body as a JSON object (an empty body is {} when 'empty_ok'); NULL after answering 400 */
static cJSON *body_object(struct MHD_Connection *c, srv_req *r, int empty_ok, enum MHD_Result *ans) {
  if (!r->body || !r->n) {
    if (empty_ok) return cJSON_CreateObject();
    *ans = srv_error(c, 400, "invalid", "this request needs a JSON object as its body");
    return NULL;
  }
  if (strlen(r->body) != r->n) {
    *ans = srv_error(c, 400, "invalid", "the body holds a NUL byte; send a JSON object");
    return NULL;
  }
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithOpts(r->body, &end, 1);
  if (!o || !cJSON_IsObject(o)) {
    size_t at = end && end >= r->body ? (size_t)(end - r->body) : 0;
    cJSON_Delete(o);
    *ans = srv_error(c, 400, "invalid", "the body is not a JSON object (at byte %zu)", at);
    return NULL;
  }
  return o;
}

/* blobs (blob.c): content-addressed files of the workspace */
static int hex64(const char *s) {
  if (strlen(s) != 64) return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
  return 1;
}

/* the size of blob 'hex', -1 when the workspace has none */
static long long blob_size(const char *hex) {
  char bp[4400];
  struct stat sb;
  kp_blob_path(srv_ws(), hex, bp, sizeof bp);
  return stat(bp, &sb) == 0 && S_ISREG(sb.st_mode) ? (long long)sb.st_size : -1;
}

/* ---- health, experiments, computes --------------------------------------------- */
static enum MHD_Result api_health(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "status", "ok");
  cJSON_AddStringToObject(o, "version", "0.1.0");
  cJSON_AddNumberToObject(o, "schema_version", kp_store_sqlite_schema_version());
  cJSON_AddStringToObject(o, "backend", st->ops->backend);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_experiments(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  kp_experiment_summary *v;
  size_t n;
  if (kp_store_experiment_list(st, &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "experiments");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, kp_view_experiment_summary(&v[i]));
  kp_experiment_summaries_free(v, n);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_experiment(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_experiment_detail d;
  if (kp_store_experiment_get(st, rt->seg[1], &d) != 0) return srv_store_error(c);
  cJSON *o = kp_view_experiment(&d);
  kp_experiment_detail_free(&d);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_computes(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  kp_compute *v;
  size_t n;
  if (kp_store_compute_list(st, NULL, &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "computes");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, kp_view_compute(&v[i]));
  kp_computes_free(v, n);
  return srv_json(c, 200, o);
}

/* ---- runs -------------------------------------------------------------------------- */
#define MAX_METRIC_COLS 32

static enum MHD_Result api_runs(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  enum MHD_Result ans = MHD_NO;
  /* the filter language of `run list --filter` (filter.h), evaluated in the
   * store; status and parent are added to it as terms */
  const char *filter = qarg(c, "filter"), *status = qarg(c, "status"), *parent = qarg(c, "parent");
  kp_run_status stv;
  if (status && kp_run_status_parse(status, &stv) != 0)
    return srv_error(c, 400, "invalid", "unknown status '%.100s'; use one of Queued, Preparing, Running, Finalizing, "
                     "Completed, Failed, Canceled", status);
  if (filter && strlen(filter) > 8192) return srv_error(c, 400, "invalid", "filter is longer than 8192 bytes");
  if (parent && strlen(parent) > 512) return srv_error(c, 400, "invalid", "parent is longer than 512 bytes");
  size_t fcap = (filter ? strlen(filter) : 0) + (parent ? 2 * strlen(parent) : 0) + 128;
  char *full = malloc(fcap);
  if (!full) return srv_error(c, 503, "backend", "out of memory");
  size_t fl = 0;
  full[0] = '\0';
  if (filter && *filter) fl += (size_t)snprintf(full + fl, fcap - fl, "(%s)", filter);
  if (status) fl += (size_t)snprintf(full + fl, fcap - fl, "%sstatus = '%s'", fl ? " and " : "", kp_run_status_name(stv));
  if (parent) {
    fl += (size_t)snprintf(full + fl, fcap - fl, "%sparent = '", fl ? " and " : "");
    for (const char *p = parent; *p && fl + 3 < fcap; p++) {
      if (*p == '\'') full[fl++] = '\'';
      full[fl++] = *p;
    }
    full[fl++] = '\'';
    full[fl] = '\0';
  }
  long long maxr;
  if (qint(c, "max_results", DEFAULT_MAX_RESULTS, 1, MAX_RESULTS_LIMIT, &maxr, &ans) != 0) {
    free(full);
    return ans;
  }
  kp_run_search q = {.experiment = qarg(c, "experiment"), .filter = full, .order_by = qarg(c, "order_by"),
                     .max_results = maxr, .page_token = qarg(c, "page_token")};
  /* metrics=A,B: each run's latest values */
  char mbuf[4096] = "";
  const char *mcols[MAX_METRIC_COLS];
  int nm = 0;
  const char *metrics = qarg(c, "metrics");
  if (metrics) {
    snprintf(mbuf, sizeof mbuf, "%s", metrics);
    char *save = NULL;
    for (char *t = strtok_r(mbuf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (!*t) continue;
      if (nm == MAX_METRIC_COLS) {
        free(full);
        return srv_error(c, 400, "invalid", "metrics takes at most %d names", MAX_METRIC_COLS);
      }
      mcols[nm++] = t;
    }
  }
  kp_run *runs;
  size_t n;
  char *next = NULL;
  int rc = kp_store_run_search(st, &q, &runs, &n, &next);
  free(full);
  if (rc != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "runs");
  int bad = 0;
  for (size_t i = 0; i < n && !bad; i++) {
    cJSON *j = kp_view_run_row(st, &runs[i], mcols, nm);
    if (!j) bad = 1;
    else cJSON_AddItemToArray(a, j);
  }
  kp_runs_free(runs, n);
  if (bad) {
    free(next);
    cJSON_Delete(o);
    return srv_store_error(c);
  }
  if (next) {
    cJSON_AddStringToObject(o, "next_page_token", next);
    free(next);
  } else {
    cJSON_AddNullToObject(o, "next_page_token");
  }
  return srv_json(c, 200, o);
}

static enum MHD_Result api_run(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  cJSON *o = kp_view_run_detail(st, rt->seg[1]);
  return o ? srv_json(c, 200, o) : srv_store_error(c);
}

static enum MHD_Result api_cancel(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 1, &ans);
  if (!b) return ans;
  const cJSON *reason = cJSON_GetObjectItemCaseSensitive(b, "reason");
  const cJSON *grace = cJSON_GetObjectItemCaseSensitive(b, "grace");
  if ((reason && !cJSON_IsString(reason)) || (grace && (!cJSON_IsNumber(grace) || grace->valuedouble < 0 ||
                                                        grace->valuedouble > 3600))) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "the body is {\"reason\": TEXT, \"grace\": SECONDS (0 to 3600)}, both optional");
  }
  const char *why = reason && *reason->valuestring ? reason->valuestring : "canceled by the user (API)";
  int rc = kp_store_run_request_cancel(st, rt->seg[1], grace ? grace->valuedouble : 10.0, why);
  cJSON_Delete(b);
  if (rc != 0) return srv_store_error(c);
  kp_run run;
  if (kp_store_run_get(st, rt->seg[1], &run) == 0) {
    pid_t p = (pid_t)run.supervisor_pid;
    if (p > 0 && kp_proc_alive(p, run.supervisor_start)) kill(p, SIGUSR1);
    kp_run_free(&run);
  }
  cJSON *o = kp_view_run_detail(st, rt->seg[1]);
  return o ? srv_json(c, 202, o) : srv_store_error(c);
}

static enum MHD_Result api_wait(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  long long timeout;
  if (qint(c, "timeout", 30, 0, KP_SERVER_MAX_WAIT, &timeout, &ans) != 0) return ans;
  if (r->wait_until == 0) r->wait_until = srv_mono() + (double)timeout;
  kp_run run;
  if (kp_store_run_get(st, rt->seg[1], &run) != 0) return srv_store_error(c);
  int ended = kp_run_status_ended(run.status);
  kp_run_free(&run);
  if (!ended && srv_mono() < r->wait_until && srv_suspend(c, r) == 0) return MHD_YES;
  cJSON *d = kp_view_run_detail(st, rt->seg[1]);
  if (!d) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ended", ended);
  cJSON_AddItemToObject(o, "run", d);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_tag_set(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  const char *key = rt->rest;
  static const char *const system[] = {"sweep", "sweep_index", "best_child_run_id", "best_metric_value", NULL};
  size_t kl = strlen(key);
  int ok = kl >= 1 && kl <= 250 && !strchr(key, '=');
  for (size_t i = 0; ok && i < kl; i++)
    if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f) ok = 0;
  if (!ok) return srv_error(c, 400, "invalid", "a tag key is 1 to 250 characters without '=' or control characters");
  for (int i = 0; system[i]; i++)
    if (!strcmp(system[i], key))
      return srv_error(c, 400, "invalid", "tag '%s' is set by kusari itself (sweeps read it); it cannot be changed by hand", key);
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  const char *v = jstring(b, "value");
  if (!v || strlen(v) > 4096) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "the body is {\"value\": TEXT} (at most 4096 bytes)");
  }
  int rc = kp_store_tag_set(st, rt->seg[1], key, v);
  cJSON_Delete(b);
  if (rc != 0) return srv_store_error(c);
  kp_tag *t;
  size_t n;
  if (kp_store_tag_list(st, rt->seg[1], &t, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "tags", kp_view_tags(t, n));
  kp_tags_free(t, n);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_tag_remove(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  const char *key = rt->rest;
  if (kp_store_tag_remove(st, rt->seg[1], &key, 1) != 0) return srv_store_error(c);
  kp_tag *t;
  size_t n;
  if (kp_store_tag_list(st, rt->seg[1], &t, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "tags", kp_view_tags(t, n));
  kp_tags_free(t, n);
  return srv_json(c, 200, o);
}

/* ---- metrics ------------------------------------------------------------------------- */
static enum MHD_Result api_run_metrics(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_metric_latest *v;
  size_t n;
  if (kp_store_metrics_latest(st, rt->seg[1], &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "metrics");
  for (size_t i = 0; i < n; i++) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", v[i].name);
    cJSON_AddNumberToObject(m, "step", (double)v[i].step);
    cJSON_AddItemToObject(m, "value", kp_json_metric(v[i].value));
    cJSON_AddItemToArray(a, m);
  }
  kp_metric_latest_free(v, n);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_series(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  enum MHD_Result ans = MHD_NO;
  long long maxp, rank;
  if (qint(c, "max_points", 0, 2, 10000000, &maxp, &ans) != 0) return ans;
  /* a distributed run's rank (default 0, the one every other route shows) */
  if (qint(c, "rank", 0, 0, 999999, &rank, &ans) != 0) return ans;
  if (rank > 0 && maxp)
    return srv_error(c, 400, "invalid", "max_points is for rank 0's series; leave it out with rank=%lld", rank);
  /* a step window (a zoomed chart): from_step <= step <= to_step */
  long long from, to;
  if (qint(c, "from_step", LLONG_MIN, LLONG_MIN, LLONG_MAX, &from, &ans) != 0) return ans;
  if (qint(c, "to_step", LLONG_MAX, LLONG_MIN, LLONG_MAX, &to, &ans) != 0) return ans;
  int window = qarg(c, "from_step") || qarg(c, "to_step");
  if (from > to) return srv_error(c, 400, "invalid", "from_step (%lld) is after to_step (%lld)", from, to);
  if (window && rank > 0)
    return srv_error(c, 400, "invalid", "from_step and to_step are for rank 0's series; leave them out with rank=%lld", rank);
  kp_metric_point *p;
  size_t n;
  int64_t total;
  if (rank > 0) {
    if (kp_store_metric_series_rank(st, rt->seg[1], rt->rest, (int)rank, &p, &n) != 0) return srv_store_error(c);
    total = (int64_t)n;
  } else if (window) {
    if (kp_store_metric_series_window(st, rt->seg[1], rt->rest, from, to, maxp ? maxp : INT64_MAX, &p, &n, &total) != 0)
      return srv_store_error(c);
  } else if (maxp) {
    if (kp_store_metric_series_downsampled(st, rt->seg[1], rt->rest, maxp, &p, &n, &total) != 0) return srv_store_error(c);
  } else {
    if (kp_store_metric_series(st, rt->seg[1], rt->rest, &p, &n) != 0) return srv_store_error(c);
    total = (int64_t)n;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "run", rt->seg[1]);
  cJSON_AddStringToObject(o, "name", rt->rest);
  cJSON_AddNumberToObject(o, "rank", (double)rank);
  cJSON_AddNumberToObject(o, "total_points", (double)total);
  cJSON_AddBoolToObject(o, "downsampled", (int64_t)n < total);
  cJSON *a = cJSON_AddArrayToObject(o, "points");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, point_json(&p[i]));
  free(p);
  return srv_json(c, 200, o);
}

/* a metric value: a number or "NaN", "Infinity", "-Infinity" (as kp_json_metric writes them) */
static int value_of(const cJSON *v, double *out) {
  if (cJSON_IsNumber(v)) {
    *out = v->valuedouble;
    return 0;
  }
  const char *s = cJSON_GetStringValue(v);
  if (!s) return -1;
  if (!strcmp(s, "NaN")) *out = NAN;
  else if (!strcmp(s, "Infinity")) *out = INFINITY;
  else if (!strcmp(s, "-Infinity")) *out = -INFINITY;
  else return -1;
  return 0;
}

/* a non-negative integer that a double holds exactly */
static int offset_of(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
      v->valuedouble != floor(v->valuedouble))
    return -1;
  *out = (uint64_t)v->valuedouble;
  return 0;
}

static enum MHD_Result api_metrics_post(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  kp_ingest_batch batch = {0};
  kp_metric_point *pts = NULL;
  const char **tk = NULL, **tv = NULL;
  char err[600] = "";
  const cJSON *points = cJSON_GetObjectItemCaseSensitive(b, "points");
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(b, "tags");
  if (offset_of(cJSON_GetObjectItemCaseSensitive(b, "from"), &batch.from) != 0 ||
      offset_of(cJSON_GetObjectItemCaseSensitive(b, "to"), &batch.to) != 0) {
    snprintf(err, sizeof err, "'from' and 'to' must be the batch's offsets in the client's spool (integers >= 0)");
  } else if (batch.to < batch.from) {
    snprintf(err, sizeof err, "'to' (%llu) is before 'from' (%llu)", (unsigned long long)batch.to,
             (unsigned long long)batch.from);
  } else if (points && !cJSON_IsArray(points)) {
    snprintf(err, sizeof err, "'points' must be an array of {name, value, step?, timestamp?}");
  } else if (tags && !cJSON_IsObject(tags)) {
    snprintf(err, sizeof err, "'tags' must be an object of strings");
  }
  size_t np = points ? (size_t)cJSON_GetArraySize(points) : 0, nt = tags ? (size_t)cJSON_GetArraySize(tags) : 0;
  if (!err[0] && (np && !(pts = calloc(np, sizeof *pts)))) snprintf(err, sizeof err, "out of memory");
  if (!err[0] && nt && (!(tk = calloc(nt, sizeof *tk)) || !(tv = calloc(nt, sizeof *tv))))
    snprintf(err, sizeof err, "out of memory");
  double t_now = kp_now();
  size_t i = 0;
  const cJSON *p;
  if (!err[0] && points) cJSON_ArrayForEach(p, points) {
      kp_metric_point *q = &pts[i];
      const char *name = jstring(p, "name");
      const cJSON *step = cJSON_GetObjectItemCaseSensitive(p, "step");
      const cJSON *ts = cJSON_GetObjectItemCaseSensitive(p, "timestamp");
      const cJSON *rk = cJSON_GetObjectItemCaseSensitive(p, "rank");  /* a distributed run's rank; 0 */
      uint64_t sv = 0;
      if (!cJSON_IsObject(p) || !name || !*name || strlen(name) > 250) {
        snprintf(err, sizeof err, "point %zu: a point is {name (1 to 250 characters), value, step?, timestamp?}", i);
        break;
      }
      if (value_of(cJSON_GetObjectItemCaseSensitive(p, "value"), &q->value) != 0) {
        snprintf(err, sizeof err, "point %zu: 'value' must be a number, \"NaN\", \"Infinity\" or \"-Infinity\"", i);
        break;
      }
      if (step && offset_of(step, &sv) != 0) {
        snprintf(err, sizeof err, "point %zu: 'step' must be an integer >= 0 (leave it out for the next step)", i);
        break;
      }
      if (ts && (!cJSON_IsNumber(ts) || !isfinite(ts->valuedouble))) {
        snprintf(err, sizeof err, "point %zu: 'timestamp' must be seconds since the epoch", i);
        break;
      }
      if (rk && (!cJSON_IsNumber(rk) || rk->valuedouble < 0 || rk->valuedouble > 999999 ||
                 rk->valuedouble != (double)(int)rk->valuedouble)) {
        snprintf(err, sizeof err, "point %zu: 'rank' must be an integer from 0 to 999999 (leave it out for rank 0)", i);
        break;
      }
      q->rank = rk ? (int)rk->valuedouble : 0;
      q->name = name;
      q->step = step ? (int64_t)sv : -1;
      q->time = ts ? ts->valuedouble : t_now;
      i++;
    }
  i = 0;
  const cJSON *t;
  if (!err[0] && tags) cJSON_ArrayForEach(t, tags) {
      if (!cJSON_IsString(t) || !*t->string) {
        snprintf(err, sizeof err, "tag '%.100s': a tag's value must be a string", t->string);
        break;
      }
      tk[i] = t->string;
      tv[i] = t->valuestring;
      i++;
    }
  if (err[0]) {
    free(pts);
    free(tk);
    free(tv);
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "%s", err);
  }
  batch.points = pts;
  batch.npoints = np;
  batch.tag_keys = tk;
  batch.tag_values = tv;
  batch.ntags = nt;
  int rc = kp_store_metrics_ingest(st, rt->seg[1], &batch);
  kp_store_error e = *kp_store_last_error();
  free(pts);
  free(tk);
  free(tv);
  cJSON_Delete(b);
  cJSON *o = cJSON_CreateObject();
  if (rc == 0) {
    cJSON_AddBoolToObject(o, "applied", 1);
    cJSON_AddNumberToObject(o, "offset", (double)batch.to);
    cJSON_AddNumberToObject(o, "points", (double)np);
    return srv_json(c, 200, o);
  }
  cJSON_Delete(o);
  if (e.code != KP_STORE_ECONFLICT) return srv_store_error(c);
  /* where the store is: a batch that ends at or before it was applied before */
  kp_run run;
  if (kp_store_run_get(st, rt->seg[1], &run) != 0) return srv_store_error(c);
  uint64_t at = run.channel_offset;
  kp_run_free(&run);
  if (batch.to <= at && batch.from < at) {
    o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "applied", 0);
    cJSON_AddNumberToObject(o, "offset", (double)at);
    cJSON_AddNumberToObject(o, "points", 0);
    return srv_json(c, 200, o);
  }
  /* a gap or an overlap: the error says where the store is ("offset") */
  char msg[400];
  snprintf(msg, sizeof msg,
           "the batch covers offsets %llu to %llu but the store holds the run's metrics up to offset %llu; "
           "send the batch that starts there",
           (unsigned long long)batch.from, (unsigned long long)batch.to, (unsigned long long)at);
  o = cJSON_CreateObject();
  cJSON *eo = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(eo, "code", "conflict");
  cJSON_AddStringToObject(eo, "message", msg);
  cJSON_AddNumberToObject(eo, "offset", (double)at);
  return srv_json(c, 409, o);
}

static enum MHD_Result api_latest(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  const char *runs = qarg(c, "runs"), *names = qarg(c, "names");
  if (!runs || !*runs) return srv_error(c, 400, "invalid", "query parameter 'runs' is required: run ids separated by commas");
  char *rbuf = strdup(runs), *nbuf = names ? strdup(names) : NULL;
  const char *nv[MAX_METRIC_COLS];
  int nn = 0;
  enum MHD_Result ans = MHD_NO;
  cJSON *o = cJSON_CreateObject(), *by = cJSON_AddObjectToObject(o, "runs");
  int count = 0, failed = 0;
  if (!rbuf || (names && !nbuf)) {
    failed = 1;
    ans = srv_error(c, 500, "internal", "out of memory");
    goto out;
  }
  char *save = NULL;
  if (nbuf)
    for (char *t = strtok_r(nbuf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (!*t) continue;
      if (nn == MAX_METRIC_COLS) {
        failed = 1;
        ans = srv_error(c, 400, "invalid", "names takes at most %d metric names", MAX_METRIC_COLS);
        goto out;
      }
      nv[nn++] = t;
    }
  for (char *id = strtok_r(rbuf, ",", &save); id; id = strtok_r(NULL, ",", &save)) {
    if (!*id || cJSON_GetObjectItemCaseSensitive(by, id)) continue;
    if (++count > LATEST_RUNS_LIMIT) {
      failed = 1;
      ans = srv_error(c, 400, "invalid", "runs takes at most %d run ids", LATEST_RUNS_LIMIT);
      goto out;
    }
    kp_metric_latest *v;
    size_t n;
    if (kp_store_metrics_latest(st, id, &v, &n) != 0) {
      failed = 1;
      ans = srv_store_error(c);
      goto out;
    }
    cJSON *m = cJSON_AddObjectToObject(by, id);
    if (!nn) {
      for (size_t i = 0; i < n; i++) cJSON_AddItemToObject(m, v[i].name, kp_json_metric(v[i].value));
    } else {
      for (int k = 0; k < nn; k++) {
        size_t i = 0;
        while (i < n && strcmp(v[i].name, nv[k]) != 0) i++;
        if (i < n) cJSON_AddItemToObject(m, nv[k], kp_json_metric(v[i].value));
        else cJSON_AddNullToObject(m, nv[k]);
      }
    }
    kp_metric_latest_free(v, n);
  }
out:
  free(rbuf);
  free(nbuf);
  if (failed) {
    cJSON_Delete(o);
    return ans;
  }
  return srv_json(c, 200, o);
}

/* ---- logs and files ------------------------------------------------------------------ */
/* Sends the file at 'path' ('size' bytes), honouring one "Range: bytes=" range (206). */
static enum MHD_Result send_file(struct MHD_Connection *c, const char *path, uint64_t size, const char *name) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return srv_error(c, 500, "internal", "cannot open the stored copy of '%s': %s", name, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size != size) size = (uint64_t)sb.st_size;
  uint64_t from = 0, to = size ? size - 1 : 0;
  int partial = 0;
  const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE);
  if (range && !strncmp(range, "bytes=", 6) && !strchr(range, ',')) {
    const char *s = range + 6;
    char *end;
    unsigned long long a = 0, z = 0;
    int ok = 1;
    if (*s == '-') {  /* the last N bytes */
      errno = 0;
      z = strtoull(s + 1, &end, 10);
      if (errno || end == s + 1 || *end || z == 0) ok = 0;
      else {
        from = z >= size ? 0 : size - z;
        to = size ? size - 1 : 0;
      }
    } else {
      errno = 0;
      a = strtoull(s, &end, 10);
      if (errno || end == s || *end != '-') ok = 0;
      else {
        const char *e2 = end + 1;
        if (*e2) {
          z = strtoull(e2, &end, 10);
          if (*end || z < a) ok = 0;
        } else {
          z = size ? size - 1 : 0;
        }
        from = a;
        to = z >= size ? (size ? size - 1 : 0) : z;
      }
    }
    if (ok && (size == 0 || from >= size)) {
      close(fd);
      char cr[64];
      snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
      struct MHD_Response *resp = NULL;
      char msg[300];
      int l = snprintf(msg, sizeof msg,
                       "{\"error\":{\"code\":\"range_not_satisfiable\",\"message\":\"the range starts past the end "
                       "(%llu bytes)\"}}\n",
                       (unsigned long long)size);
      resp = MHD_create_response_from_buffer((size_t)l, msg, MHD_RESPMEM_MUST_COPY);
      if (!resp) return MHD_NO;
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
      enum MHD_Result rc = MHD_queue_response(c, 416, resp);
      MHD_destroy_response(resp);
      return rc;
    }
    if (ok) partial = 1;  /* a malformed range is ignored: the whole file */
  }
  uint64_t len = partial ? to - from + 1 : size;
  if (!partial) from = 0;
  struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, from);
  if (!resp) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
  if (partial) {
    char cr[96];
    snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)from, (unsigned long long)to,
             (unsigned long long)size);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
  }
  enum MHD_Result rc = MHD_queue_response(c, partial ? 206 : 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result api_files(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_stored_file *v;
  size_t n;
  if (kp_store_run_files_list(st, rt->seg[1], NULL, &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "files");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, kp_view_file(&v[i]));
  kp_stored_files_free(v, n);
  return srv_json(c, 200, o);
}

static enum MHD_Result bad_path(struct MHD_Connection *c, const char *p) {
  return srv_error(c, 400, "invalid", "'%.300s' is not a file's path: a relative path without empty, '.' or '..' parts", p);
}

static enum MHD_Result api_file(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  if (kp_rel_path_ok(rt->rest) != 0) return bad_path(c, rt->rest);
  kp_stored_file *v;
  size_t n;
  if (kp_store_run_files_list(st, rt->seg[1], rt->rest, &v, &n) != 0) return srv_store_error(c);
  size_t i = 0;
  while (i < n && strcmp(v[i].path, rt->rest) != 0) i++;
  if (i == n) {
    kp_stored_files_free(v, n);
    return srv_error(c, 404, "not_found", "run %s has no file '%.300s' (see GET /api/v1/runs/%s/files)", rt->seg[1],
                     rt->rest, rt->seg[1]);
  }
  char bp[4400];
  kp_blob_path(srv_ws(), v[i].sha256, bp, sizeof bp);
  uint64_t size = (uint64_t)v[i].size;
  kp_stored_files_free(v, n);
  return send_file(c, bp, size, rt->rest);
}

/* A run's log (std or build) for reading: its live copy, else the stored
 * one; *fd -1 when there is none yet. -1 on a store error. */
static int open_log(kp_store *st, const char *run_id, int build, int *fd) {
  const char *rel = build ? "logs/build.log" : "logs/std_log.txt";
  char p[4600], rd[4400];
  kp_run_dir(srv_ws(), run_id, rd, sizeof rd);
  snprintf(p, sizeof p, "%s/%s", rd, rel);
  *fd = open(p, O_RDONLY | O_CLOEXEC);
  if (*fd >= 0) return 0;
  /* the live copy is gone (runs/ is only a cache): the stored one */
  kp_stored_file *v;
  size_t n;
  if (kp_store_run_files_list(st, run_id, rel, &v, &n) != 0) return -1;
  for (size_t i = 0; i < n && *fd < 0; i++)
    if (!strcmp(v[i].path, rel)) {
      kp_blob_path(srv_ws(), v[i].sha256, p, sizeof p);
      *fd = open(p, O_RDONLY | O_CLOEXEC);
    }
  kp_stored_files_free(v, n);
  return 0;
}

static enum MHD_Result api_logs(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  long long off, wait, maxb;
  if (qint(c, "offset", 0, 0, (long long)1 << 52, &off, &ans) != 0 || qint(c, "wait", 0, 0, KP_SERVER_MAX_WAIT, &wait, &ans) != 0 ||
      qint(c, "max_bytes", LOG_CHUNK_DEFAULT, 1, LOG_CHUNK_LIMIT, &maxb, &ans) != 0)
    return ans;
  const char *which = qarg(c, "log");
  if (which && strcmp(which, "std") != 0 && strcmp(which, "build") != 0)
    return srv_error(c, 400, "invalid", "log is 'std' (the entry's output, the default) or 'build', not '%.50s'", which);
  int build = which && !strcmp(which, "build");
  if (r->wait_until == 0) r->wait_until = srv_mono() + (double)wait;
  kp_run run;
  if (kp_store_run_get(st, rt->seg[1], &run) != 0) return srv_store_error(c);
  kp_run_status status = run.status;
  kp_run_free(&run);
  int fd;
  if (open_log(st, rt->seg[1], build, &fd) != 0) return srv_store_error(c);
  struct stat sb;
  uint64_t size = fd >= 0 && fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
  if (size <= (uint64_t)off && !kp_run_status_ended(status) && srv_mono() < r->wait_until) {
    if (fd >= 0) close(fd);
    if (srv_suspend(c, r) == 0) return MHD_YES;
    fd = -1;
  }
  size_t want = size > (uint64_t)off ? (size_t)(size - (uint64_t)off) : 0;
  if (want > (size_t)maxb) want = (size_t)maxb;
  char *buf = malloc(want + 1);
  if (!buf) {
    if (fd >= 0) close(fd);
    return srv_error(c, 500, "internal", "out of memory");
  }
  size_t got = 0;
  while (fd >= 0 && got < want) {
    ssize_t k = pread(fd, buf + got, want - got, (off_t)off + (off_t)got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  if (fd >= 0) close(fd);
  struct MHD_Response *resp = MHD_create_response_from_buffer(got, buf, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(buf);
    return MHD_NO;
  }
  char a[32], z[32];
  snprintf(a, sizeof a, "%lld", off);
  snprintf(z, sizeof z, "%llu", (unsigned long long)off + got);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
  MHD_add_response_header(resp, "X-Kusari-Offset", a);
  MHD_add_response_header(resp, "X-Kusari-Next-Offset", z);
  MHD_add_response_header(resp, "X-Kusari-Run-Status", kp_run_status_name(status));
  enum MHD_Result rc = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* ---- server-sent events: GET /runs/{id}/events ------------------------------------- */
/* The run's status changes, new metric points and log lines as they come,
 * as text/event-stream. The stream is a libmicrohttpd response whose
 * content reader looks at the store each time it is called: with nothing
 * to send it suspends the connection (srv_suspend, as the long polls) and
 * answers 0, so the worker goes on serving others and the ticker wakes the
 * stream 5 times a second. Each event's id is the stream's position
 * "METRICS-LOG-STATUS" (the metrics cursor of metric_events, the log's byte
 * offset, the last status sent): Last-Event-ID resumes after it. The stream
 * ends (event "end") once the run has ended and everything before its end
 * was sent. */
#define SSE_METRICS_PER_CALL 500
#define SSE_LOG_PER_CALL (64 * 1024)
#define SSE_LINE_MAX (64 * 1024)
#define SSE_BLOCK (16 * 1024)

typedef struct sse {
  struct MHD_Connection *c;
  srv_req *r;
  char run[256];
  int64_t mcur;      /* metric_events cursor (-1: from now) */
  uint64_t loff;     /* the std log's offset */
  int loff_now;      /* start the log at its current end */
  int status;        /* the last status sent; -1: none */
  int ended;         /* "end" queued: send what is left, then close */
  double heartbeat, last_sent;
  char *buf;
  size_t n, off, cap;
  int oom;
} sse;

static void sse_put(sse *e, const char *s, size_t l) {
  if (e->oom) return;
  if (e->n + l + 1 > e->cap) {
    size_t cap = e->cap ? e->cap : 8192;
    while (cap < e->n + l + 1) cap *= 2;
    char *nb = realloc(e->buf, cap);
    if (!nb) {
      e->oom = 1;
      return;
    }
    e->buf = nb;
    e->cap = cap;
  }
  memcpy(e->buf + e->n, s, l);
  e->n += l;
  e->buf[e->n] = '\0';
}

/* one event: its id (the position after it), type and data (o, deleted) */
static void sse_event(sse *e, const char *type, cJSON *o) {
  char head[160];
  int l = snprintf(head, sizeof head, "id: %lld-%llu-%d\nevent: %s\ndata: ", (long long)(e->mcur < 0 ? 0 : e->mcur),
                   (unsigned long long)e->loff, e->status, type);
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!t) {
    e->oom = 1;
    return;
  }
  sse_put(e, head, (size_t)l);
  sse_put(e, t, strlen(t));  /* compact JSON: no newline in it */
  sse_put(e, "\n\n", 2);
  cJSON_free(t);
  e->last_sent = srv_mono();
}

static void sse_error(sse *e, const kp_store_error *err) {
  cJSON *o = kp_view_store_error(err);
  sse_event(e, "error", o);
  e->ended = 1;
}

/* the log lines after e->loff (the last one without its newline too when the
 * run has ended); 1 when it read all there was */
static int sse_logs(sse *e, kp_store *st, int ended) {
  int fd;
  if (open_log(st, e->run, 0, &fd) != 0) {
    sse_error(e, kp_store_last_error());
    return 1;
  }
  if (fd < 0) return 1;
  struct stat sb;
  uint64_t size = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
  if (e->loff_now) {
    e->loff = size;
    e->loff_now = 0;
  }
  if (size <= e->loff) {
    close(fd);
    return 1;
  }
  size_t want = size - e->loff > SSE_LOG_PER_CALL ? SSE_LOG_PER_CALL : (size_t)(size - e->loff);
  char *b = malloc(want + 1);
  size_t got = 0;
  while (b && got < want) {
    ssize_t k = pread(fd, b + got, want - got, (off_t)(e->loff + got));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  if (!b) {
    e->oom = 1;
    return 1;
  }
  int all = e->loff + got >= size;
  size_t at = 0;
  while (at < got) {
    char *nl = memchr(b + at, '\n', got - at);
    size_t len = nl ? (size_t)(nl - (b + at)) : got - at;
    /* a partial last line waits for its end, unless the run has ended or it is very long */
    if (!nl && !(ended && all) && len < SSE_LINE_MAX) break;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "offset", (double)(e->loff));
    b[at + len] = '\0';
    cJSON_AddStringToObject(o, "line", b + at);
    e->loff += len + (nl ? 1 : 0);
    at += len + (nl ? 1 : 0);
    sse_event(e, "log", o);
  }
  free(b);
  return all && at == got;
}

/* what happened since the last look, queued as events */
static void sse_poll(sse *e, kp_store *st) {
  kp_run run;
  if (kp_store_run_get(st, e->run, &run) != 0) {
    sse_error(e, kp_store_last_error());
    return;
  }
  kp_run_status status = run.status;
  char *error = run.error && *run.error ? strdup(run.error) : NULL;
  kp_run_free(&run);
  int ended = kp_run_status_ended(status);
  /* a status the run has moved to comes before the points and lines that
   * follow it; an end status after them (all that came before the end is
   * sent before it) */
  if (!ended && (int)status != e->status) {
    e->status = (int)status;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", kp_run_status_name(status));
    cJSON_AddNullToObject(o, "error");
    sse_event(e, "status", o);
  }
  kp_metric_event *v;
  size_t n;
  int caught_up = 1;
  if (kp_store_metric_events(st, e->run, &e->mcur, SSE_METRICS_PER_CALL, &v, &n) != 0) {
    free(error);
    sse_error(e, kp_store_last_error());
    return;
  }
  for (size_t i = 0; i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", v[i].name);
    cJSON_AddNumberToObject(o, "step", (double)v[i].step);
    cJSON_AddItemToObject(o, "value", kp_json_metric_exact(v[i].value));
    cJSON_AddItemToObject(o, "timestamp", kp_json_metric_exact(v[i].time));
    int64_t keep = e->mcur;
    e->mcur = v[i].seq;
    sse_event(e, "metric", o);
    e->mcur = keep;
  }
  if (n == SSE_METRICS_PER_CALL) caught_up = 0;
  kp_metric_events_free(v, n);
  if (!e->ended && !sse_logs(e, st, ended)) caught_up = 0;
  if (!e->ended && (int)status != e->status && ended && caught_up) {
    e->status = (int)status;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", kp_run_status_name(status));
    if (error) cJSON_AddStringToObject(o, "error", error);
    else cJSON_AddNullToObject(o, "error");
    sse_event(e, "status", o);
  }
  if (!e->ended && ended && caught_up) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", kp_run_status_name(status));
    sse_event(e, "end", o);
    e->ended = 1;
  }
  free(error);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  sse *e = cls;
  for (int tries = 0; tries < 2; tries++) {
    if (e->off < e->n) {
      size_t k = e->n - e->off < max ? e->n - e->off : max;
      memcpy(out, e->buf + e->off, k);
      e->off += k;
      return (ssize_t)k;
    }
    e->off = e->n = 0;
    if (e->ended || e->oom || srv_stopping()) return MHD_CONTENT_READER_END_OF_STREAM;
    kp_store *st = srv_store();
    if (!st) {
      sse_error(e, kp_store_last_error());
      continue;
    }
    sse_poll(e, st);
    if (e->n) continue;
    if (srv_mono() - e->last_sent >= e->heartbeat) {
      sse_put(e, ": keepalive\n\n", 13);
      e->last_sent = srv_mono();
      continue;
    }
    /* nothing yet: the worker is free until the next tick */
    if (srv_suspend(e->c, e->r) == 0) return 0;
    return MHD_CONTENT_READER_END_OF_STREAM;
  }
  return MHD_CONTENT_READER_END_OF_STREAM;
}

static void sse_free(void *cls) {
  sse *e = cls;
  free(e->buf);
  free(e);
}

static enum MHD_Result api_events(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  long long hb;
  if (qint(c, "heartbeat", 15, 1, 300, &hb, &ans) != 0) return ans;
  const char *from = qarg(c, "from");
  if (from && strcmp(from, "now") != 0 && strcmp(from, "start") != 0)
    return srv_error(c, 400, "invalid", "from is 'now' (only what happens from now on, the default) or 'start' "
                     "(everything the run logged), not '%.50s'", from);
  if (strlen(rt->seg[1]) >= sizeof ((sse *)0)->run) return srv_error(c, 404, "not_found", "no run '%.300s' in this workspace", rt->seg[1]);
  kp_run run;
  if (kp_store_run_get(st, rt->seg[1], &run) != 0) return srv_store_error(c);
  kp_run_free(&run);
  sse *e = calloc(1, sizeof *e);
  if (!e) return srv_error(c, 500, "internal", "out of memory");
  e->c = c;
  e->r = r;
  snprintf(e->run, sizeof e->run, "%s", rt->seg[1]);
  e->status = -1;
  e->heartbeat = (double)hb;
  e->last_sent = srv_mono();
  const char *last = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
  if (last && *last) {
    long long m;
    unsigned long long l;
    int sv, used = 0;
    if (sscanf(last, "%lld-%llu-%d%n", &m, &l, &sv, &used) != 3 || last[used] || m < 0 || sv < -1 ||
        sv >= KP_RUN_NSTATUS) {
      free(e);
      return srv_error(c, 400, "invalid", "Last-Event-ID '%.100s' is not an id this stream sent (METRICS-LOG-STATUS)", last);
    }
    e->mcur = m;
    e->loff = l;
    e->status = sv;
  } else if (from && !strcmp(from, "start")) {
    e->mcur = 0;
  } else {
    e->mcur = -1;
    e->loff_now = 1;
  }
  /* the first look now: an unknown run is a 404 above, a store error a 503 here */
  kp_metric_event *none;
  size_t nn;
  if (kp_store_metric_events(st, e->run, &e->mcur, 0, &none, &nn) != 0) {
    free(e);
    return srv_store_error(c);
  }
  kp_metric_events_free(none, nn);
  sse_put(e, "retry: 2000\n\n", 13);
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, e, sse_free);
  if (!resp) {
    sse_free(e);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  srv_stream(c);
  enum MHD_Result rc = MHD_queue_response(c, 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

/* ---- models ------------------------------------------------------------------------- */
static enum MHD_Result api_models(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  kp_model *v;
  size_t n;
  if (kp_store_model_list(st, qarg(c, "name"), &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "models");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, kp_view_model(&v[i]));
  kp_models_free(v, n);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_model(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_model *v;
  size_t n;
  if (kp_store_model_list(st, rt->seg[1], &v, &n) != 0) return srv_store_error(c);
  if (n == 0) {
    kp_models_free(v, n);
    return srv_error(c, 404, "not_found", "no model named '%.200s' in this workspace", rt->seg[1]);
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", rt->seg[1]);
  cJSON *a = cJSON_AddArrayToObject(o, "versions");
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, kp_view_model(&v[i]));
  kp_models_free(v, n);
  return srv_json(c, 200, o);
}

/* "latest" or 1, 2, ...; 0 for latest; -1 after answering 400 */
static int version_of(struct MHD_Connection *c, const char *s, int64_t *out, enum MHD_Result *ans) {
  long long v;
  if (!strcmp(s, "latest")) {
    *out = 0;
    return 0;
  }
  if (kp_parse_int(s, &v) != 0 || v < 1) {
    *ans = srv_error(c, 400, "invalid", "a model version is a number from 1, or 'latest'; not '%.50s'", s);
    return -1;
  }
  *out = v;
  return 0;
}

static enum MHD_Result api_model_version(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  enum MHD_Result ans = MHD_NO;
  int64_t ver;
  if (version_of(c, rt->seg[3], &ver, &ans) != 0) return ans;
  kp_model m;
  if (kp_store_model_get(st, rt->seg[1], ver, &m) != 0) return srv_store_error(c);
  cJSON *o = kp_view_model(&m);
  kp_model_free(&m);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_model_file(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  enum MHD_Result ans = MHD_NO;
  int64_t ver;
  if (version_of(c, rt->seg[3], &ver, &ans) != 0) return ans;
  if (kp_rel_path_ok(rt->rest) != 0) return bad_path(c, rt->rest);
  kp_model m;
  if (kp_store_model_get(st, rt->seg[1], ver, &m) != 0) return srv_store_error(c);
  size_t i = 0;
  while (i < m.nfiles && strcmp(m.files[i].path, rt->rest) != 0) i++;
  if (i == m.nfiles) {
    ans = srv_error(c, 404, "not_found", "model %s version %lld has no file '%.300s'", m.name, (long long)m.version,
                    rt->rest);
    kp_model_free(&m);
    return ans;
  }
  char bp[4400];
  kp_blob_path(srv_ws(), m.files[i].sha256, bp, sizeof bp);
  uint64_t size = (uint64_t)m.files[i].size;
  kp_model_free(&m);
  return send_file(c, bp, size, rt->rest);
}

/* ---- sweeps and services (issue 12 §2, issue 15's pages) ---------------------------- */
static enum MHD_Result api_sweeps(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  const char *exp = qarg(c, "experiment");
  kp_sweep *v;
  size_t n;
  if (kp_store_sweep_list(st, &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "sweeps");
  for (size_t i = 0; i < n; i++)
    if (!exp || !strcmp(v[i].run.experiment, exp)) cJSON_AddItemToArray(a, kp_view_sweep_summary(&v[i]));
  kp_sweeps_free(v, n);
  return srv_json(c, 200, o);
}

/* what `sweep show ID --json` prints (cmd_sweep.c builds it the same way);
 * NULL after answering */
static cJSON *sweep_view(struct MHD_Connection *c, kp_store *st, const char *id, enum MHD_Result *ans) {
  kp_sweep w;
  if (kp_store_sweep_get(st, id, &w) != 0) {
    *ans = srv_store_error(c);
    return NULL;
  }
  kp_sweep_spec sp;
  char err[1024];
  memset(&sp, 0, sizeof sp);
  if (kp_sweep_spec_parse(w.spec, &sp, err, sizeof err) != 0) {
    *ans = srv_error(c, 500, "internal", "sweep %s: its stored sweep file does not parse: %s", w.run.id, err);
    kp_sweep_free(&w);
    return NULL;
  }
  kp_sweep_trial *t;
  size_t n;
  cJSON *o = NULL;
  int rc = kp_store_sweep_trial_list(st, w.run.id, sp.metric, &t, &n);
  if (rc == 0) {
    o = kp_view_sweep(&w, &sp, t, n);
    kp_sweep_trials_free(t, n);
  }
  kp_sweep_spec_free(&sp);
  kp_sweep_free(&w);
  if (rc != 0) *ans = srv_store_error(c);
  else if (!o) *ans = srv_error(c, 500, "internal", "out of memory");
  return o;
}

static enum MHD_Result api_sweep(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  enum MHD_Result ans = MHD_NO;
  cJSON *o = sweep_view(c, st, rt->seg[1], &ans);
  return o ? srv_json(c, 200, o) : ans;
}

static enum MHD_Result api_services(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)rt;
  kp_service *v;
  size_t n;
  if (kp_store_service_list(st, &v, &n) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON *a = cJSON_AddArrayToObject(o, "services");
  for (size_t i = 0; i < n; i++) {
    kp_service_check_alive(&v[i]);
    cJSON_AddItemToArray(a, kp_view_service(&v[i]));
  }
  kp_services_free(v, n);
  return srv_json(c, 200, o);
}

/* what `service show NAME --json` prints: the service with its batching */
static enum MHD_Result api_service(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_service s;
  if (kp_store_service_get(st, rt->seg[1], &s) != 0) return srv_store_error(c);
  kp_service_check_alive(&s);
  cJSON *o = kp_view_service(&s);
  kp_service_free(&s);
  char dir[4400];
  snprintf(dir, sizeof dir, "%s/services/%s", srv_ws()->root, rt->seg[1]);
  int bmax;
  long bwait;
  kp_service_batch_load(dir, &bmax, &bwait);
  cJSON_AddNumberToObject(o, "batch_max", bmax);
  cJSON_AddNumberToObject(o, "batch_wait_us", (double)bwait);
  return srv_json(c, 200, o);
}

/* POST /services/{name}/start|stop, DELETE /services/{name}: what `service
 * start|stop|delete` do, on the server's machine (its processes) */
static enum MHD_Result service_op(struct MHD_Connection *c, const srv_route *rt, kp_store *st, const char *op) {
  kp_ws w = *srv_ws();
  w.store = st;  /* this worker's connection */
  int rc = kp_service_control(&w, rt->seg[1], op);
  if (rc == 1) return srv_error(c, 404, "not_found", "no service named '%.200s' in this workspace", rt->seg[1]);
  if (rc != 0) return srv_error(c, 500, "internal", "service %.200s: %s", rt->seg[1], kp_err_last());
  if (!strcmp(op, "delete")) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "deleted", rt->seg[1]);
    return srv_json(c, 200, o);
  }
  kp_service s;
  if (kp_store_service_get(st, rt->seg[1], &s) != 0) return srv_store_error(c);
  kp_service_check_alive(&s);
  cJSON *o = kp_view_service(&s);
  kp_service_free(&s);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_service_start(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  return service_op(c, rt, st, "start");
}
static enum MHD_Result api_service_stop(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  return service_op(c, rt, st, "stop");
}
static enum MHD_Result api_service_delete(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  return service_op(c, rt, st, "delete");
}

/* POST /services/{name}/keys {"regenerate": "primary"|"secondary"|"both"}
 * (optional): `service keys`, the keys in the answer. A POST, so that only
 * read-write tokens ever see a key (and no key is in a URL or a cache). */
static enum MHD_Result api_service_keys(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 1, &ans);
  if (!b) return ans;
  const cJSON *rg = cJSON_GetObjectItemCaseSensitive(b, "regenerate");
  const char *regen = cJSON_GetStringValue(rg);
  if ((rg && !regen) || (regen && strcmp(regen, "primary") && strcmp(regen, "secondary") && strcmp(regen, "both"))) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "the body is {\"regenerate\": \"primary\", \"secondary\" or \"both\"}, optional");
  }
  char which[16] = "";
  if (regen) snprintf(which, sizeof which, "%s", regen);
  cJSON_Delete(b);
  kp_ws w = *srv_ws();
  w.store = st;  /* this worker's connection */
  char k[2][65];
  int auth = 0, running = 0;
  int rc = kp_service_keys(&w, rt->seg[1], which[0] ? which : NULL, k, &auth, &running);
  if (rc == 1) return srv_error(c, 404, "not_found", "no service named '%.200s' in this workspace", rt->seg[1]);
  if (rc != 0) return srv_error(c, 500, "internal", "service %.200s: %s", rt->seg[1], kp_err_last());
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "primary_key", k[0]);
  cJSON_AddStringToObject(o, "secondary_key", k[1]);
  cJSON_AddBoolToObject(o, "auth", auth);
  cJSON_AddBoolToObject(o, "reloaded", running);
  return srv_json(c, 200, o);
}

/* a JSON integer field within [lo, hi] (absent: def); -1 when it is not one */
static int jint(const cJSON *o, const char *k, long long def, long long lo, long long hi, long long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  *out = def;
  if (!v) return 0;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
      v->valuedouble > (double)hi)
    return -1;
  *out = (long long)v->valuedouble;
  return 0;
}

/* POST /services: `model deploy` on the server's machine. 201 (a new
 * service) or 200 (redeployed, with its keys) {"service": view,
 * "redeployed": null | {model, state}}. */
static enum MHD_Result api_service_deploy(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)rt;
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  const char *name = jstring(b, "name"), *model = jstring(b, "model"), *host = jstring(b, "host");
  const cJSON *entry = cJSON_GetObjectItemCaseSensitive(b, "entry"), *auth = cJSON_GetObjectItemCaseSensitive(b, "auth");
  long long version = 0, port = 0, workers = 1, mb = 16, tmo = 10, bmax = 1, bwait = 200;
  long nproc = sysconf(_SC_NPROCESSORS_ONLN);
  char err[600] = "";
  if (!name || !model || (cJSON_GetObjectItemCaseSensitive(b, "host") && !host) || (auth && !cJSON_IsBool(auth)) ||
      jint(b, "version", 0, 0, (long long)1 << 53, &version) || jint(b, "port", 0, -1, 1 << 20, &port) ||
      jint(b, "workers", nproc < 1 ? 1 : nproc, -1, 1 << 20, &workers) || jint(b, "max_body_mb", 16, -1, 1 << 20, &mb) ||
      jint(b, "timeout", 10, -1, 1 << 20, &tmo) || jint(b, "batch_max", 1, -1, 1 << 20, &bmax) ||
      jint(b, "batch_wait_us", 200, -1, (long long)1 << 40, &bwait) || (entry && !cJSON_IsObject(entry)))
    snprintf(err, sizeof err, "the body is {\"name\", \"model\", \"version\"?, \"host\"?, \"port\"?, \"auth\"?, \"workers\"?, "
             "\"max_body_mb\"?, \"timeout\"?, \"batch_max\"?, \"batch_wait_us\"?, \"entry\"?: {\"sha256\", \"name\"}} "
             "(names as text, numbers integers, auth a boolean)");
  const char *esha = entry ? jstring(entry, "sha256") : NULL, *ename = entry ? jstring(entry, "name") : NULL;
  if (!err[0] && entry && (!esha || !hex64(esha) || !ename || kp_name_ok(ename) != 0))
    snprintf(err, sizeof err, "\"entry\" is {\"sha256\": an uploaded blob's, \"name\": a file name of letters, digits, "
             "'.', '_' and '-'}");
  if (!err[0] && entry && blob_size(esha) < 0)
    snprintf(err, sizeof err, "no blob %s here: upload the entry library first (PUT /api/v1/blobs/%s)", esha, esha);
  kp_deploy d = {.name = name, .model = model, .version = version, .host = host ? host : "127.0.0.1", .port = (int)port,
                 .auth = cJSON_IsTrue(auth), .workers = (int)workers, .max_body_mb = mb, .timeout = (int)tmo,
                 .batch_max = (int)bmax, .batch_wait_us = (long)bwait, .entry_name = entry ? ename : NULL,
                 .entry_sha256 = entry ? esha : NULL};
  if (!err[0]) kp_deploy_check(&d, err, sizeof err);
  if (err[0]) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "%s", err);
  }
  kp_ws w = *srv_ws();
  w.store = st;  /* this worker's connection */
  char old_model[300], old_state[32], sname[256];
  snprintf(sname, sizeof sname, "%s", name);
  int rc = kp_service_deploy(&w, &d, old_model, old_state);
  cJSON_Delete(b);
  if (rc == 1) return srv_error(c, 404, "not_found", "%s", kp_err_last());
  if (rc != 0) return srv_error(c, 500, "internal", "service %s: %s", sname, kp_err_last());
  kp_service s;
  if (kp_store_service_get(st, sname, &s) != 0) return srv_store_error(c);
  kp_service_check_alive(&s);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "service", kp_view_service(&s));
  kp_service_free(&s);
  if (old_model[0]) {
    cJSON *rd = cJSON_AddObjectToObject(o, "redeployed");
    cJSON_AddStringToObject(rd, "model", old_model);
    cJSON_AddStringToObject(rd, "state", old_state);
  } else {
    cJSON_AddNullToObject(o, "redeployed");
  }
  return srv_json(c, old_model[0] ? 200 : 201, o);
}

/* GET /services/{name}/logs?tail=N: `service logs` (its server's log, the
 * last N lines; empty when it never started) */
static enum MHD_Result api_service_logs(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  enum MHD_Result ans = MHD_NO;
  long long tail;
  if (qint(c, "tail", 0, 1, 100000000, &tail, &ans) != 0) return ans;
  kp_service s;
  if (kp_store_service_get(st, rt->seg[1], &s) != 0) return srv_store_error(c);
  kp_service_free(&s);
  char p[4600];
  snprintf(p, sizeof p, "%s/services/%s/server.log", srv_ws()->root, rt->seg[1]);
  size_t len = 0;
  char *t = kp_read_file(p, &len);
  if (!t && errno != ENOENT) return srv_error(c, 500, "internal", "cannot read service %s's log: %s", rt->seg[1], strerror(errno));
  size_t from = 0;
  if (t && tail > 0) {
    long long seen = 0;
    for (size_t i = len; i > 0; i--)
      if (t[i - 1] == '\n' && i != len && ++seen == tail) {
        from = i;
        break;
      }
  }
  size_t n = t ? len - from : 0;
  char *out = malloc(n + 1);
  if (!out) {
    free(t);
    return srv_error(c, 500, "internal", "out of memory");
  }
  if (n) memcpy(out, t + from, n);
  free(t);
  return srv_send(c, 200, out, n, "text/plain; charset=utf-8");
}

#define SERVICE_METRICS_LIMIT (1024 * 1024)

static size_t metrics_data(char *d, size_t sz, size_t nm, void *ud) {
  char **b = ud;
  size_t l = sz * nm, have = *b ? strlen(*b) : 0;
  if (have + l > SERVICE_METRICS_LIMIT) return 0;
  char *p = realloc(*b, have + l + 1);
  if (!p) return 0;
  memcpy(p + have, d, l);
  p[have + l] = '\0';
  *b = p;
  return l;
}

/* the value of a Prometheus sample line "NAME{LABELS} VALUE" whose name is
 * 'name'; the text of label 'label' (when asked) in lv */
static int prom_sample(const char *line, const char *name, const char *label, char *lv, size_t lvn, double *v) {
  size_t nl = strlen(name);
  if (strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' ')) return 0;
  const char *p = line + nl;
  if (label) {
    char key[64];
    snprintf(key, sizeof key, "%s=\"", label);
    const char *a = strstr(p, key), *close = strchr(p, '}');
    if (!a || !close || a > close) return 0;
    a += strlen(key);
    const char *e = strchr(a, '"');
    if (!e || (size_t)(e - a) >= lvn) return 0;
    memcpy(lv, a, (size_t)(e - a));
    lv[e - a] = '\0';
  }
  const char *sp = strrchr(p, ' ');
  if (!sp) return 0;
  char *end;
  *v = strtod(sp + 1, &end);
  return end != sp + 1;
}

/* the upper bound of the bucket that holds quantile q (null: no requests, or
 * beyond the last finite bucket) */
static void add_quantile(cJSON *o, const char *k, const double *le, const double *cum, int nb, double total, double q) {
  if (total <= 0) {
    cJSON_AddNullToObject(o, k);
    return;
  }
  for (int i = 0; i < nb; i++)
    if (cum[i] >= q * total) {
      cJSON_AddNumberToObject(o, k, le[i]);
      return;
    }
  cJSON_AddNullToObject(o, k);
}

/* The service's own counters (its GET /metrics, Prometheus text) as JSON:
 * {service, state, requests_total, requests_by_code{code: n},
 * latency_seconds{count, sum, mean, p50, p95, p99, buckets[{le, count}]},
 * batches, batched_requests, uptime_seconds}. 503 service_not_running when
 * it is not Running or does not answer. */
static enum MHD_Result api_service_metrics(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  kp_service s;
  if (kp_store_service_get(st, rt->seg[1], &s) != 0) return srv_store_error(c);
  kp_service_check_alive(&s);
  enum MHD_Result ans;
  if (s.state != KP_SERVICE_RUNNING) {
    ans = srv_error(c, 503, "service_not_running", "service %s is %s, so it has no counters to read; start it with "
                    "'kusari service start %s'", s.name, kp_service_state_name(s.state), s.name);
    kp_service_free(&s);
    return ans;
  }
  char uri[600];
  kp_view_service_uri(&s, "/metrics", uri, sizeof uri);
  char *text = NULL;
  CURL *h = curl_easy_init();
  CURLcode cc = CURLE_FAILED_INIT;
  long code = 0;
  if (h) {
    curl_easy_setopt(h, CURLOPT_URL, uri);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, metrics_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &text);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
  }
  if (cc != CURLE_OK || code != 200 || !text) {
    ans = srv_error(c, 503, "service_not_running", "service %s is recorded Running but its %s did not answer (%s)",
                    s.name, uri, cc != CURLE_OK ? curl_easy_strerror(cc) : "no counters");
    free(text);
    kp_service_free(&s);
    return ans;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "service", s.name);
  cJSON_AddStringToObject(o, "state", kp_service_state_name(s.state));
  kp_service_free(&s);
  cJSON *by = cJSON_CreateObject();
  double total = 0, lsum = 0, lcount = 0, batches = -1, batched = -1, up = -1;
  enum { NB = 64 };
  double le[NB], cum[NB];
  int nb = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char lv[64];
    double v;
    if (line[0] == '#') continue;
    if (prom_sample(line, "kusari_requests_total", "code", lv, sizeof lv, &v)) {
      cJSON_AddNumberToObject(by, lv, v);
      total += v;
    } else if (prom_sample(line, "kusari_request_duration_seconds_bucket", "le", lv, sizeof lv, &v)) {
      if (strcmp(lv, "+Inf") != 0 && nb < NB) {
        le[nb] = strtod(lv, NULL);
        cum[nb++] = v;
      }
    } else if (prom_sample(line, "kusari_request_duration_seconds_sum", NULL, NULL, 0, &v)) {
      lsum = v;
    } else if (prom_sample(line, "kusari_request_duration_seconds_count", NULL, NULL, 0, &v)) {
      lcount = v;
    } else if (prom_sample(line, "kusari_batches_total", NULL, NULL, 0, &v)) {
      batches = v;
    } else if (prom_sample(line, "kusari_batched_requests_total", NULL, NULL, 0, &v)) {
      batched = v;
    } else if (prom_sample(line, "kusari_uptime_seconds", NULL, NULL, 0, &v)) {
      up = v;
    }
  }
  free(text);
  cJSON_AddNumberToObject(o, "requests_total", total);
  cJSON_AddItemToObject(o, "requests_by_code", by);
  cJSON *lat = cJSON_AddObjectToObject(o, "latency_seconds");
  cJSON_AddNumberToObject(lat, "count", lcount);
  cJSON_AddNumberToObject(lat, "sum", lsum);
  if (lcount > 0) cJSON_AddNumberToObject(lat, "mean", lsum / lcount);
  else cJSON_AddNullToObject(lat, "mean");
  add_quantile(lat, "p50", le, cum, nb, lcount, 0.50);
  add_quantile(lat, "p95", le, cum, nb, lcount, 0.95);
  add_quantile(lat, "p99", le, cum, nb, lcount, 0.99);
  cJSON *bk = cJSON_AddArrayToObject(lat, "buckets");
  for (int i = 0; i < nb; i++) {
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "le", le[i]);
    cJSON_AddNumberToObject(b, "count", cum[i]);
    cJSON_AddItemToArray(bk, b);
  }
  if (batches >= 0) cJSON_AddNumberToObject(o, "batches", batches);
  else cJSON_AddNullToObject(o, "batches");
  if (batched >= 0) cJSON_AddNumberToObject(o, "batched_requests", batched);
  else cJSON_AddNullToObject(o, "batched_requests");
  if (up >= 0) cJSON_AddNumberToObject(o, "uptime_seconds", up);
  else cJSON_AddNullToObject(o, "uptime_seconds");
  return srv_json(c, 200, o);
}

/* asks run 'id' to cancel and wakes its supervisor; 1 when that supervisor lives */
static int cancel_run(kp_store *st, const char *id, double grace, const char *why, int *alive) {
  if (kp_store_run_request_cancel(st, id, grace, why) != 0) return -1;
  kp_run run;
  *alive = 0;
  if (kp_store_run_get(st, id, &run) == 0) {
    pid_t p = (pid_t)run.supervisor_pid;
    if (p > 0 && kp_proc_alive(p, run.supervisor_start)) {
      kill(p, SIGUSR1);
      *alive = 1;
    }
    kp_run_free(&run);
  }
  return 0;
}

/* `sweep cancel` (without its wait): the parent run (the controller) is
 * asked to cancel, which cancels the active children with the sweep file's
 * grace; when the controller is gone, the children are asked here. 202
 * with the sweep's view; 409 when it has ended. */
static enum MHD_Result api_sweep_cancel(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 1, &ans);
  if (!b) return ans;
  const cJSON *reason = cJSON_GetObjectItemCaseSensitive(b, "reason");
  if (reason && (!cJSON_IsString(reason) || strlen(reason->valuestring) > 1000)) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "the body is {\"reason\": TEXT (at most 1000 bytes)}, optional");
  }
  char why[1100];
  snprintf(why, sizeof why, "%s", reason && *reason->valuestring ? reason->valuestring : "canceled by the user (API)");
  cJSON_Delete(b);
  kp_sweep w;
  if (kp_store_sweep_get(st, rt->seg[1], &w) != 0) return srv_store_error(c);
  kp_sweep_spec sp;
  char err[1024];
  memset(&sp, 0, sizeof sp);
  int parsed = kp_sweep_spec_parse(w.spec, &sp, err, sizeof err) == 0;
  double grace = parsed ? sp.cancel_grace_seconds : 10.0;
  kp_sweep_spec_free(&sp);
  char id[256];
  snprintf(id, sizeof id, "%s", w.run.id);
  kp_run_status status = w.run.status;
  kp_sweep_free(&w);
  if (kp_run_status_ended(status))
    return srv_error(c, 409, "conflict", "sweep %s already ended (%s); there is nothing to cancel", id,
                     kp_run_status_name(status));
  int alive = 0;
  if (cancel_run(st, id, grace, why, &alive) != 0) return srv_store_error(c);
  if (!alive) {
    /* no controller to stop the children: they are asked here */
    kp_sweep_trial *t;
    size_t n;
    if (kp_store_sweep_trial_list(st, id, NULL, &t, &n) != 0) return srv_store_error(c);
    char cwhy[1200];
    snprintf(cwhy, sizeof cwhy, "the sweep was canceled (%s)", why);
    for (size_t i = 0; i < n; i++) {
      int a;
      if (t[i].has_run && t[i].run_id && !kp_run_status_ended(t[i].run_status))
        cancel_run(st, t[i].run_id, grace, cwhy, &a);  /* one that ended meanwhile is a conflict: fine */
    }
    kp_sweep_trials_free(t, n);
  }
  cJSON *o = sweep_view(c, st, id, &ans);
  return o ? srv_json(c, 202, o) : ans;
}

/* ---- blobs and model registration (remote `model register`) -------------------------- */
/* Blobs are the workspace's content-addressed files (blob.c): a client
 * uploads each file of a model (PUT /blobs/{sha256}, the raw bytes, at most
 * --max-body) and then refers to it by its sha256. */
static pthread_mutex_t blob_mu = PTHREAD_MUTEX_INITIALIZER;

static enum MHD_Result bad_sha(struct MHD_Connection *c, const char *s) {
  return srv_error(c, 400, "invalid", "'%.100s' is not a sha256: 64 lowercase hex digits", s);
}

static enum MHD_Result api_blob(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  (void)st;
  if (!hex64(rt->seg[1])) return bad_sha(c, rt->seg[1]);
  long long size = blob_size(rt->seg[1]);
  if (size < 0) return srv_error(c, 404, "not_found", "no blob %s in this workspace", rt->seg[1]);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "sha256", rt->seg[1]);
  cJSON_AddNumberToObject(o, "size", (double)size);
  return srv_json(c, 200, o);
}

static enum MHD_Result api_blob_put(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)st;
  if (!hex64(rt->seg[1])) return bad_sha(c, rt->seg[1]);
  char hex[65];
  kp_sha256_hex(r->body ? r->body : "", r->n, hex);
  if (strcmp(hex, rt->seg[1]) != 0)
    return srv_error(c, 400, "invalid", "the body's sha256 is %s, not %s (%zu bytes arrived)", hex, rt->seg[1], r->n);
  int existed = blob_size(hex) >= 0;
  pthread_mutex_lock(&blob_mu);
  int rc = existed ? 0 : kp_blob_put_mem((kp_ws *)srv_ws(), r->body ? r->body : "", r->n, hex);
  pthread_mutex_unlock(&blob_mu);
  if (rc != 0) return srv_error(c, 500, "internal", "cannot store blob %s (see the server's log)", hex);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "sha256", hex);
  cJSON_AddNumberToObject(o, "size", (double)r->n);
  return srv_json(c, existed ? 200 : 201, o);
}

#define MODEL_FILES_LIMIT 10000

/* POST /models/{name}/versions: a new version (numbered in the store, as
 * locally) from a run's file or folder {"run", "path"}, or from uploaded
 * blobs {"files": [{"path", "sha256", "size"}], "source"}; "description"
 * and "tags" {key: value} optional. 201 {"model": the version's view,
 * "model_json_added"}. */
static enum MHD_Result api_model_register(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  const char *name = rt->seg[1];
  if (kp_name_ok(name) != 0)
    return srv_error(c, 400, "invalid", "invalid model name '%.200s': use letters, digits, '.', '_' and '-', starting "
                     "with a letter or digit", name);
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  const char *run = jstring(b, "run"), *path = jstring(b, "path"), *source = jstring(b, "source");
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(b, "files"), *tags = cJSON_GetObjectItemCaseSensitive(b, "tags");
  const cJSON *dj = cJSON_GetObjectItemCaseSensitive(b, "description");
  const char *desc = cJSON_GetStringValue(dj);
  char err[600] = "";
  kp_stored_file *v = NULL;
  size_t n = 0;
  int with_desc = 0;
  const char **tk = NULL, **tv = NULL;
  size_t nt = tags ? (size_t)cJSON_GetArraySize(tags) : 0;
  char prefix[4200] = "";
  if (!!files == !!path) {
    snprintf(err, sizeof err, "give either \"run\" and \"path\" (a run's file or folder) or \"files\" (uploaded blobs)");
  } else if (path && (!run || !*run)) {
    snprintf(err, sizeof err, "\"path\" needs \"run\": the run whose file to register");
  } else if (path && kp_rel_path_ok(path) != 0) {
    snprintf(err, sizeof err, "\"path\" '%.300s' must be a path inside the run's files (not absolute, no '..')", path);
  } else if (files && (!cJSON_IsArray(files) || cJSON_GetArraySize(files) < 1 ||
                       cJSON_GetArraySize(files) > MODEL_FILES_LIMIT)) {
    snprintf(err, sizeof err, "\"files\" must be an array of 1 to %d {path, sha256, size}", MODEL_FILES_LIMIT);
  } else if ((dj && !desc) || (desc && strlen(desc) > 4096) || (source && strlen(source) > 4096) ||
             (cJSON_GetObjectItemCaseSensitive(b, "source") && !source)) {
    snprintf(err, sizeof err, "\"description\" and \"source\" are text of at most 4096 bytes");
  } else if (tags && (!cJSON_IsObject(tags) || nt > 256)) {
    snprintf(err, sizeof err, "\"tags\" must be an object of at most 256 text values");
  }
  if (!err[0] && nt && (!(tk = calloc(nt, sizeof *tk)) || !(tv = calloc(nt, sizeof *tv))))
    snprintf(err, sizeof err, "out of memory");
  size_t i = 0;
  const cJSON *t;
  if (!err[0] && tags) cJSON_ArrayForEach(t, tags) {
      if (!cJSON_IsString(t) || !*t->string || strlen(t->string) > 250 || strchr(t->string, '=')) {
        snprintf(err, sizeof err, "tag '%.100s': a key is 1 to 250 characters without '=', its value text", t->string);
        break;
      }
      tk[i] = t->string;
      tv[i++] = t->valuestring;
    }
  if (!err[0] && run && !path) {  /* uploaded files that came from a run: it must be one */
    kp_run run_rec;
    if (kp_store_run_get(st, run, &run_rec) != 0) {
      free(tk);
      free(tv);
      cJSON_Delete(b);
      return srv_store_error(c);
    }
    kp_run_free(&run_rec);
  }
  if (!err[0] && path) {
    kp_run run_rec;
    snprintf(prefix, sizeof prefix, "%s", path);
    size_t pl = strlen(prefix);
    while (pl && prefix[pl - 1] == '/') prefix[--pl] = '\0';
    if (kp_store_run_get(st, run, &run_rec) != 0 ||
        (kp_run_free(&run_rec), kp_model_run_files(st, run, prefix, &v, &n, &with_desc) != 0)) {
      free(tk);
      free(tv);
      cJSON_Delete(b);
      return srv_store_error(c);
    }
  }
  if (!err[0] && files) {
    v = calloc((size_t)cJSON_GetArraySize(files), sizeof *v);
    const cJSON *f;
    if (!v) snprintf(err, sizeof err, "out of memory");
    else cJSON_ArrayForEach(f, files) {
        const char *fp = jstring(f, "path"), *fs = jstring(f, "sha256");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
        if (!fp || !fs || !cJSON_IsNumber(sz)) {
          snprintf(err, sizeof err, "file %zu: a file is {path, sha256, size}", n);
          break;
        }
        if (kp_rel_path_ok(fp) != 0) {
          snprintf(err, sizeof err, "file %zu: '%.300s' is not a file's path: a relative path without empty, '.' or "
                   "'..' parts", n, fp);
          break;
        }
        if (!hex64(fs)) {
          snprintf(err, sizeof err, "file %zu: '%.100s' is not a sha256 (64 lowercase hex digits)", n, fs);
          break;
        }
        for (size_t k = 0; k < n; k++)
          if (!strcmp(v[k].path, fp)) snprintf(err, sizeof err, "file '%.300s' is given twice", fp);
        if (err[0]) break;
        long long have = blob_size(fs);
        if (have < 0) {
          snprintf(err, sizeof err, "file '%.300s': no blob %s here; upload it first (PUT /api/v1/blobs/%s)", fp, fs, fs);
          break;
        }
        if ((double)have != sz->valuedouble) {
          snprintf(err, sizeof err, "file '%.300s': blob %s holds %lld bytes, not %.0f", fp, fs, have, sz->valuedouble);
          break;
        }
        v[n].path = strdup(fp);
        v[n].sha256 = strdup(fs);
        v[n].size = have;
        n++;
        if (!v[n - 1].path || !v[n - 1].sha256) {
          snprintf(err, sizeof err, "out of memory");
          break;
        }
      }
    /* a single .npz with a model.json beside it, as the client collected them */
    with_desc = !err[0] && n == 2 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "model_json_added"));
  }
  if (err[0]) {
    kp_stored_files_free(v, n);
    free(tk);
    free(tv);
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "%s", err);
  }
  kp_model_file *mf = calloc(n ? n : 1, sizeof *mf);
  for (size_t k = 0; mf && k < n; k++) mf[k] = (kp_model_file){.path = v[k].path, .sha256 = v[k].sha256, .size = v[k].size};
  kp_model_new m = {.name = name, .run_id = run && *run ? run : NULL, .path = path ? prefix : (source ? source : "upload"),
                    .description = desc ? desc : "", .files = mf, .nfiles = n, .tag_keys = tk, .tag_values = tv,
                    .ntags = nt};
  int64_t version = 0;
  int rc = mf ? kp_store_model_version_create(st, &m, &version) : kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  free(mf);
  kp_stored_files_free(v, n);
  free(tk);
  free(tv);
  cJSON_Delete(b);
  if (rc != 0) return srv_store_error(c);
  kp_model mo;
  if (kp_store_model_get(st, name, version, &mo) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "model", kp_view_model(&mo));
  cJSON_AddBoolToObject(o, "model_json_added", with_desc);
  kp_model_free(&mo);
  return srv_json(c, 201, o);
}

/* POST /sweeps {spec, source, snapshot}: `sweep submit` whose source came
 * as blobs. The manifest (a blob: {"files": [{path, mode, size, sha256}]})
 * is checked before anything is recorded: relative paths without '..', no
 * path twice, every file's blob here with its size, the snapshot limit,
 * the entry among the files. 201 with the sweep's view. */
static enum MHD_Result api_sweep_submit(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)rt;
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  const cJSON *spec = cJSON_GetObjectItemCaseSensitive(b, "spec");
  const char *source = jstring(b, "source"), *snap = jstring(b, "snapshot");
  char err[600] = "";
  if (!cJSON_IsObject(spec) || !snap || (cJSON_GetObjectItemCaseSensitive(b, "source") && !source) ||
      (source && strlen(source) > 4000))
    snprintf(err, sizeof err, "the body is {\"spec\": the sweep file (an object), \"snapshot\": the sha256 of the source's "
             "manifest blob, \"source\": TEXT (what it was, at most 4000 bytes; optional)}");
  else if (!hex64(snap))
    snprintf(err, sizeof err, "'snapshot' '%.100s' is not a sha256 (64 lowercase hex digits)", snap);
  else if (blob_size(snap) < 0)
    snprintf(err, sizeof err, "no blob %s here: upload the source's files and then its manifest (PUT /api/v1/blobs/{sha256})",
             snap);
  char *text = err[0] ? NULL : cJSON_PrintUnformatted(spec);
  uint64_t bytes = 0;
  if (!err[0] && !text) snprintf(err, sizeof err, "out of memory");
  if (!err[0]) {
    /* the manifest, and the entry among its files */
    size_t ml = 0;
    char mp[4400];
    kp_blob_path(srv_ws(), snap, mp, sizeof mp);
    char *mt = kp_read_file(mp, &ml);
    cJSON *man = mt ? cJSON_Parse(mt) : NULL;
    free(mt);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(man, "files"), *f;
    const char *entry = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "run"), "entry"));
    int has_entry = 0;
    size_t i = 0;
    if (!cJSON_IsArray(files)) snprintf(err, sizeof err, "blob %s is not a snapshot manifest ({\"files\": [...]})", snap);
    else cJSON_ArrayForEach(f, files) {
        const char *fp = jstring(f, "path"), *fs = jstring(f, "sha256");
        const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size"), *mode = cJSON_GetObjectItemCaseSensitive(f, "mode");
        if (!fp || !fs || !cJSON_IsNumber(sz) || !cJSON_IsNumber(mode) || mode->valuedouble < 0 || mode->valuedouble > 0777) {
          snprintf(err, sizeof err, "manifest entry %zu: an entry is {path, mode (0 to 0777), size, sha256}", i);
          break;
        }
        if (kp_rel_path_ok(fp) != 0) {
          snprintf(err, sizeof err, "manifest entry %zu: '%.300s' is not a file's path: a relative path without empty, "
                   "'.' or '..' parts", i, fp);
          break;
        }
        /* sorted by path (as snapshots are), so each path is there once */
        if (i && strcmp(fp, jstring(cJSON_GetArrayItem(files, (int)i - 1), "path")) <= 0) {
          snprintf(err, sizeof err, "manifest entry %zu: '%.300s' is given twice or out of order (the entries are "
                   "sorted by path, each path once)", i, fp);
          break;
        }
        long long have = hex64(fs) ? blob_size(fs) : -1;
        if (have < 0 || (double)have != sz->valuedouble) {
          snprintf(err, sizeof err, "manifest entry %zu ('%.300s'): no blob %.64s of %.0f bytes here; upload it first", i,
                   fp, fs, sz->valuedouble);
          break;
        }
        bytes += (uint64_t)have;
        if (bytes > KP_SNAPSHOT_LIMIT) {
          snprintf(err, sizeof err, "the source is over the snapshot size limit of %.1f MB", (double)KP_SNAPSHOT_LIMIT / 1e6);
          break;
        }
        if (entry && !strcmp(entry, fp)) has_entry = 1;
        i++;
      }
    if (!err[0] && entry && !has_entry)
      snprintf(err, sizeof err, "sweep file: field 'run.entry': '%.300s' is not a file of the uploaded source", entry);
    cJSON_Delete(man);
  }
  if (err[0]) {
    cJSON_free(text);
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "%s", err);
  }
  kp_ws w = *srv_ws();
  w.store = st;  /* this worker's connection */
  char id[300];
  int rc = kp_sweep_submit_uploaded(&w, text, source ? source : "(uploaded)", snap, bytes, id, sizeof id);
  cJSON_free(text);
  cJSON_Delete(b);
  if (rc == 2) return srv_error(c, 400, "invalid", "%s", kp_err_last());
  if (rc != 0) return srv_error(c, 500, "internal", "the sweep was not started: %s", kp_err_last());
  cJSON *o = sweep_view(c, st, id, &ans);
  return o ? srv_json(c, 201, o) : ans;
}

/* ---- remote runs (h-fwd): a run that runs on a client node -------------------------
 * The node creates the run here (POST runs), then reports to it: its status
 * (POST runs/ID/status, which also answers whether a cancel was asked for, so
 * the node learns it by polling), its logs (POST runs/ID/logs?offset=N, exactly
 * once by offset) and its output files (PUT runs/ID/files/PATH). Metrics go
 * through POST runs/ID/metrics. Every report refreshes the run's heartbeat tag
 * (KP_TAG_REMOTE_BEAT); reconciliation ends a remote run whose node stopped
 * reporting for KP_REMOTE_STALE seconds. */
static void remote_beat(kp_store *st, const char *id) {
  char now[32];
  snprintf(now, sizeof now, "%.3f", kp_now());
  if (kp_store_tag_set(st, id, KP_TAG_REMOTE_BEAT, now) != 0)
    srv_log("run %s: cannot record its node's heartbeat: %s", id, kp_store_last_error()->message);
}

/* 0 when run 'id' was created by a remote node (it has the heartbeat tag), else -1 after answering */
static int remote_only(struct MHD_Connection *c, kp_store *st, const char *id, enum MHD_Result *ans) {
  kp_tag *t;
  size_t n;
  if (kp_store_tag_list(st, id, &t, &n) != 0) {
    *ans = srv_store_error(c);
    return -1;
  }
  int yes = 0;
  for (size_t i = 0; i < n; i++) yes |= !strcmp(t[i].key, KP_TAG_REMOTE_BEAT);
  kp_tags_free(t, n);
  if (!yes)
    *ans = srv_error(c, 409, "conflict", "run %s runs under this server's own supervisor; only a run created with "
                                        "POST /api/v1/runs takes reports from its node", id);
  return yes ? 0 : -1;
}

static enum MHD_Result api_remote_create(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)rt;
  enum MHD_Result ans = MHD_NO;
  cJSON *b = body_object(c, r, 0, &ans);
  if (!b) return ans;
  const char *exp = jstring(b, "experiment"), *entry = jstring(b, "entry"), *comp = jstring(b, "compute");
  const char *source = jstring(b, "source"), *node = jstring(b, "node");
  const cJSON *args = cJSON_GetObjectItemCaseSensitive(b, "args"), *params = cJSON_GetObjectItemCaseSensitive(b, "params");
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(b, "tags"), *it;
  char err[400] = "";
  if (!exp || kp_name_ok(exp) != 0)
    snprintf(err, sizeof err, "'experiment' must be a name: letters, digits, '.', '_' and '-', starting with a letter or digit");
  else if (!entry || kp_rel_path_ok(entry) != 0)
    snprintf(err, sizeof err, "'entry' must be a relative path inside the source (no '..', not absolute)");
  else if (args && !cJSON_IsArray(args))
    snprintf(err, sizeof err, "'args' must be an array of strings");
  else if (params && !cJSON_IsObject(params))
    snprintf(err, sizeof err, "'params' must be an object of strings");
  else if (tags && !cJSON_IsObject(tags))
    snprintf(err, sizeof err, "'tags' must be an object of strings");
  if (!err[0] && args) cJSON_ArrayForEach(it, args) if (!cJSON_IsString(it)) snprintf(err, sizeof err, "'args' must be an array of strings");
  if (!err[0] && params) cJSON_ArrayForEach(it, params) {
      char kv[300];
      snprintf(kv, sizeof kv, "%s=", it->string);
      if (!cJSON_IsString(it) || kp_param_ok(kv) != 0)
        snprintf(err, sizeof err, "param '%.100s': a name of letters, digits and '_' with a string value", it->string);
    }
  if (!err[0] && tags) cJSON_ArrayForEach(it, tags) {
      if (!cJSON_IsString(it) || !*it->string || !strncmp(it->string, "kusari.", 7))
        snprintf(err, sizeof err, "tag '%.100s': a string value, and no key starting with 'kusari.'", it->string);
    }
  if (err[0]) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "%s", err);
  }
  /* the compute target: named, or the only one there is */
  kp_compute *cv = NULL;
  size_t ncv = 0;
  char target[256] = "";
  if (kp_store_compute_list(st, comp, &cv, &ncv) != 0) {
    cJSON_Delete(b);
    return srv_store_error(c);
  }
  if (ncv == 1) snprintf(target, sizeof target, "%s", cv[0].name);
  kp_computes_free(cv, ncv);
  if (ncv != 1) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", ncv ? "this server has %zu compute targets; name one in 'compute'"
                                            : "this server has no compute target (create one with 'kusari compute create')",
                     ncv);
  }
  char *args_json = args ? cJSON_PrintUnformatted(args) : strdup("[]");
  size_t nt = tags ? (size_t)cJSON_GetArraySize(tags) : 0, np = params ? (size_t)cJSON_GetArraySize(params) : 0;
  const char **tk = calloc(nt + 2, sizeof *tk), **tv = calloc(nt + 2, sizeof *tv);
  const char **pk = calloc(np + 1, sizeof *pk), **pv = calloc(np + 1, sizeof *pv);
  char id[256] = "", beat[32], src[600];
  int rc = -1;
  if (tk && tv && pk && pv && args_json) {
    size_t i = 0;
    if (tags) cJSON_ArrayForEach(it, tags) tk[i] = it->string, tv[i++] = it->valuestring;
    snprintf(beat, sizeof beat, "%.3f", kp_now());
    tk[i] = KP_TAG_REMOTE_BEAT, tv[i++] = beat;
    if (node && *node) tk[i] = KP_TAG_REMOTE_NODE, tv[i++] = node;
    nt = i;
    i = 0;
    if (params) cJSON_ArrayForEach(it, params) pk[i] = it->string, pv[i++] = it->valuestring;
    snprintf(src, sizeof src, "%.500s", source && *source ? source : "(remote)");
    kp_run_new rn = {.experiment = exp, .compute = target, .source = src, .entry = entry, .args_json = args_json,
                     .snapshot = "", .tag_keys = tk, .tag_values = tv, .ntags = nt};
    rc = kp_store_begin(st);
    if (rc == 0) rc = kp_store_run_create(st, &rn, id, sizeof id);
    if (rc == 0 && np) rc = kp_store_run_params_set(st, id, pk, pv, np);
    if (rc == 0) rc = kp_store_commit(st);
    if (rc != 0) {
      kp_store_error e = *kp_store_last_error();
      kp_store_rollback(st);
      kp_store_fail(e.code, "%s", e.message);
    }
  } else {
    kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  }
  free(tk), free(tv), free(pk), free(pv);
  free(args_json);
  cJSON_Delete(b);
  if (rc != 0) return srv_store_error(c);
  char rd[4400], logs[4600];
  kp_run_dir(srv_ws(), id, rd, sizeof rd);
  snprintf(logs, sizeof logs, "%s/logs", rd);
  if (kp_mkdirs(logs, 0755) != 0) srv_log("run %s: cannot create %s: %s", id, logs, strerror(errno));
  cJSON *o = kp_view_run_detail(st, id);
  return o ? srv_json(c, 201, o) : srv_store_error(c);
}

static enum MHD_Result api_remote_status(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  const char *id = rt->seg[1];
  cJSON *b = body_object(c, r, 1, &ans);
  if (!b) return ans;
  if (remote_only(c, st, id, &ans) != 0) {
    cJSON_Delete(b);
    return ans;
  }
  const char *name = jstring(b, "status"), *error = jstring(b, "error");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(b, "exit_code");
  kp_run_status to = KP_RUN_QUEUED;
  if ((name && kp_run_status_parse(name, &to) != 0) || (code && !cJSON_IsNumber(code)) ||
      (cJSON_GetObjectItemCaseSensitive(b, "error") && !error) || (name && to == KP_RUN_QUEUED)) {
    cJSON_Delete(b);
    return srv_error(c, 400, "invalid", "the body is {\"status\": Preparing|Running|Finalizing|Completed|Failed|Canceled, "
                                        "\"error\": TEXT, \"exit_code\": N}, all optional (an empty body is a heartbeat)");
  }
  int rc = 0;
  if (name) {
    kp_run_transition t = {.to = to, .end = kp_run_status_ended(to), .has_exit_code = code != NULL,
                           .exit_code = code ? code->valueint : 0, .error = error};
    rc = kp_store_run_transition(st, id, &t);
  }
  cJSON_Delete(b);
  if (rc != 0) return srv_store_error(c);
  remote_beat(st, id);
  kp_run run;
  if (kp_store_run_get(st, id, &run) != 0) return srv_store_error(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "status", kp_run_status_name(run.status));
  cJSON_AddBoolToObject(o, "cancel_requested", run.cancel_requested);
  if (run.cancel_reason) cJSON_AddStringToObject(o, "cancel_reason", run.cancel_reason);
  else cJSON_AddNullToObject(o, "cancel_reason");
  cJSON_AddNumberToObject(o, "cancel_grace", run.cancel_grace);
  kp_run_free(&run);
  return srv_json(c, 200, o);
}

/* appends the body to the run's log at ?offset=N: a part already here is
 * skipped, a gap answers 409 with the log's size ("offset") */
static enum MHD_Result api_remote_log(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  const char *id = rt->seg[1];
  long long off;
  if (qint(c, "offset", -1, 0, (long long)1 << 52, &off, &ans) != 0) return ans;
  if (off < 0) return srv_error(c, 400, "invalid", "query parameter 'offset' (where the body starts in the log) is required");
  const char *which = qarg(c, "log");
  if (which && strcmp(which, "std") != 0 && strcmp(which, "build") != 0)
    return srv_error(c, 400, "invalid", "log is 'std' (the entry's output, the default) or 'build', not '%.50s'", which);
  if (remote_only(c, st, id, &ans) != 0) return ans;
  char rd[4400], p[4600];
  kp_run_dir(srv_ws(), id, rd, sizeof rd);
  snprintf(p, sizeof p, "%s/logs", rd);
  kp_mkdirs(p, 0755);
  snprintf(p, sizeof p, "%s/logs/%s", rd, which && !strcmp(which, "build") ? "build.log" : "std_log.txt");
  int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    if (fd >= 0) close(fd);
    return srv_error(c, 500, "internal", "cannot open run %s's log: %s", id, strerror(errno));
  }
  uint64_t size = (uint64_t)sb.st_size, end = (uint64_t)off + r->n;
  if ((uint64_t)off > size) {
    close(fd);
    cJSON *o = cJSON_CreateObject();
    cJSON *eo = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(eo, "code", "conflict");
    cJSON_AddStringToObject(eo, "message", "the part starts after the log's end; send the part that starts at 'offset'");
    cJSON_AddNumberToObject(eo, "offset", (double)size);
    return srv_json(c, 409, o);
  }
  size_t skip = (size_t)(size - (uint64_t)off), done = 0;
  while (end > size && skip + done < r->n) {
    ssize_t k = pwrite(fd, r->body + skip + done, r->n - skip - done, (off_t)(size + done));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    done += (size_t)k;
  }
  int bad = end > size && skip + done < r->n;
  close(fd);
  if (bad) return srv_error(c, 500, "internal", "cannot write run %s's log: %s", id, strerror(errno));
  remote_beat(st, id);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "offset", (double)(end > size ? end : size));
  return srv_json(c, 200, o);
}

/* stores the body as the run's file PATH (its outputs: "outputs/model.npz") */
static enum MHD_Result api_remote_file(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  enum MHD_Result ans = MHD_NO;
  const char *id = rt->seg[1];
  if (kp_rel_path_ok(rt->rest) != 0) return bad_path(c, rt->rest);
  if (remote_only(c, st, id, &ans) != 0) return ans;
  char hex[65];
  if (kp_blob_put_mem((kp_ws *)srv_ws(), r->body ? r->body : "", r->n, hex) != 0)
    return srv_error(c, 500, "internal", "cannot store the file's bytes in the blob store");
  kp_file_entry fe = {.path = rt->rest, .sha256 = hex, .size = (int64_t)r->n};
  if (kp_store_run_files_put(st, id, &fe, 1) != 0) return srv_store_error(c);
  remote_beat(st, id);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "path", rt->rest);
  cJSON_AddStringToObject(o, "sha256", hex);
  cJSON_AddNumberToObject(o, "size", (double)r->n);
  return srv_json(c, 201, o);
}

/* ---- remote clients (store_http.c) ---------------------------------------------------- */
/* whether some run logged metric NAME (what `run list --order-by metrics.NAME`
 * checks): 200 {"name"}, else 404 */
static enum MHD_Result api_metric_exists(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  (void)r;
  int yes = 0;
  if (kp_store_metric_exists(st, rt->rest, &yes) != 0) return srv_store_error(c);
  if (!yes) return srv_error(c, 404, "not_found", "no run logged a metric named '%.300s'", rt->rest);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", rt->rest);
  return srv_json(c, 200, o);
}

/* ---- routing ------------------------------------------------------------------------ */
/* Every route of docs/openapi.json (GET routes also answer HEAD). */
static const route ROUTES[] = {
  {"GET", "health", "", 0, api_health},
  {"GET", "experiments", "", 0, api_experiments},
  {"GET", "experiments/*", "", 0, api_experiment},
  {"GET", "runs", "experiment,status,parent,order_by,max_results,page_token,metrics,filter", 0, api_runs},
  {"GET", "runs/*", "", 0, api_run},
  {"POST", "runs/*/cancel", "", 1, api_cancel},
  {"GET", "runs/*/wait", "timeout", 0, api_wait},
  {"GET", "runs/*/metrics", "", 0, api_run_metrics},
  {"POST", "runs/*/metrics", "", 1, api_metrics_post},
  {"GET", "runs/*/metrics/**", "max_points,rank,from_step,to_step", 0, api_series},
  {"GET", "runs/*/logs", "offset,wait,max_bytes,log", 0, api_logs},
  {"GET", "runs/*/files", "", 0, api_files},
  {"GET", "runs/*/files/**", "", 0, api_file},
  {"PUT", "runs/*/tags/**", "", 1, api_tag_set},
  {"DELETE", "runs/*/tags/**", "", 1, api_tag_remove},
  {"GET", "metrics/latest", "runs,names", 0, api_latest},
  {"GET", "models", "name", 0, api_models},
  {"GET", "models/*", "", 0, api_model},
  {"GET", "models/*/versions/*", "", 0, api_model_version},
  {"GET", "models/*/versions/*/files/**", "", 0, api_model_file},
  {"GET", "computes", "", 0, api_computes},
  /* remote clients */
  {"GET", "metrics/names/**", "", 0, api_metric_exists},
  /* sweeps and services */
  {"GET", "sweeps", "experiment", 0, api_sweeps},
  {"POST", "sweeps", "", 1, api_sweep_submit},
  {"GET", "sweeps/*", "", 0, api_sweep},
  {"POST", "sweeps/*/cancel", "", 1, api_sweep_cancel},
  {"GET", "services", "", 0, api_services},
  {"POST", "services", "", 1, api_service_deploy},
  {"GET", "services/*", "", 0, api_service},
  {"GET", "services/*/metrics", "", 0, api_service_metrics},
  {"POST", "services/*/start", "", 1, api_service_start},
  {"POST", "services/*/stop", "", 1, api_service_stop},
  {"DELETE", "services/*", "", 1, api_service_delete},
  {"POST", "services/*/keys", "", 1, api_service_keys},
  {"GET", "services/*/logs", "tail", 0, api_service_logs},
  {"GET", "runs/*/events", "from,heartbeat", 0, api_events},
  /* uploads and model registration */
  {"GET", "blobs/*", "", 0, api_blob},
  {"PUT", "blobs/*", "", 1, api_blob_put},
  {"POST", "models/*/versions", "", 1, api_model_register},
  /* remote runs (h-fwd): a run that runs on a client node reports here */
  {"POST", "runs", "", 1, api_remote_create},
  {"POST", "runs/*/status", "", 1, api_remote_status},
  {"POST", "runs/*/logs", "offset,log", 1, api_remote_log},
  {"PUT", "runs/*/files/**", "", 1, api_remote_file},
};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

/* whether the path's segments (seg, n) fit 'pattern'; *rest_at the index of the segment a ** starts at */
static int fits(const char *pattern, char **seg, int n, int *rest_at) {
  int i = 0;
  const char *p = pattern;
  *rest_at = -1;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == 2 && !strncmp(p, "**", 2)) {
      if (i >= n) return 0;
      *rest_at = i;
      return 1;
    }
    if (i >= n) return 0;
    if (!(l == 1 && *p == '*') && (strlen(seg[i]) != l || strncmp(seg[i], p, l) != 0)) return 0;
    i++;
    p = e ? e + 1 : p + l;
  }
  return i == n;
}

unsigned srv_match(const char *url, const char *method, srv_route *rt) {
  memset(rt, 0, sizeof *rt);
  rt->index = -1;
  size_t pl = strlen(PREFIX);
  if (strncmp(url, PREFIX, pl) != 0 || strlen(url + pl) >= sizeof rt->buf) return 404;
  const char *path = url + pl;
  snprintf(rt->buf, sizeof rt->buf, "%s", path);
  /* segments; an empty one (a doubled or trailing '/') names nothing */
  char *s = rt->buf;
  size_t offs[SRV_MAX_SEGS];
  for (;;) {
    if (rt->nseg == SRV_MAX_SEGS) return 404;
    offs[rt->nseg] = (size_t)(s - rt->buf);
    rt->seg[rt->nseg++] = s;
    char *e = strchr(s, '/');
    if (!e) break;
    *e = '\0';
    s = e + 1;
  }
  for (int i = 0; i < rt->nseg; i++)
    if (!*rt->seg[i]) return 404;
  const char *m = !strcmp(method, "HEAD") ? "GET" : method;
  char allow[64] = "";
  int seen = 0;
  for (size_t k = 0; k < NROUTES; k++) {
    int rest_at;
    if (!fits(ROUTES[k].pattern, rt->seg, rt->nseg, &rest_at)) continue;
    seen = 1;
    if (!strcmp(ROUTES[k].method, m)) {
      rt->index = (int)k;
      rt->write = ROUTES[k].write;
      rt->rest = rest_at >= 0 ? path + offs[rest_at] : NULL;
      return 0;
    }
    size_t l = strlen(allow);
    snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", ROUTES[k].method);
  }
  if (!seen) return 404;
  snprintf(rt->allow, sizeof rt->allow, "%s", allow);
  return 405;
}

typedef struct param_check {
  const char *allowed;
  char bad[128];
} param_check;

static enum MHD_Result check_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  (void)value;
  param_check *pc = cls;
  size_t l = strlen(key);
  for (const char *p = pc->allowed; *p;) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == l && !strncmp(p, key, l)) return MHD_YES;
    p = e ? e + 1 : p + n;
  }
  snprintf(pc->bad, sizeof pc->bad, "%s", key);
  return MHD_NO;
}

enum MHD_Result srv_dispatch(struct MHD_Connection *c, srv_req *r, const srv_route *rt, kp_store *st) {
  const route *ro = &ROUTES[rt->index];
  param_check pc = {.allowed = ro->params};
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_param, &pc);
  if (pc.bad[0])
    return srv_error(c, 400, "invalid", "unknown query parameter '%s'; this path takes: %s", pc.bad,
                     *ro->params ? ro->params : "none");
  return ro->fn(c, r, rt, st);
}
