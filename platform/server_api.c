/*
 * platform/server_api.c — the tracking server's /api/v1 routes (what
 * docs/openapi.json describes; tests/platform/test_server_openapi.sh checks
 * that the two agree). Each route reads the store through the interface
 * (store.h) on its worker's own connection and answers with the views of
 * views.c, the shapes the CLI's --json prints.
 */
#include "server_api.h"
#include "server.h"
#include "views.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
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
  long long maxp;
  if (qint(c, "max_points", 0, 2, 10000000, &maxp, &ans) != 0) return ans;
  kp_metric_point *p;
  size_t n;
  int64_t total;
  if (maxp) {
    if (kp_store_metric_series_downsampled(st, rt->seg[1], rt->rest, maxp, &p, &n, &total) != 0) return srv_store_error(c);
  } else {
    if (kp_store_metric_series(st, rt->seg[1], rt->rest, &p, &n) != 0) return srv_store_error(c);
    total = (int64_t)n;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "run", rt->seg[1]);
  cJSON_AddStringToObject(o, "name", rt->rest);
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
  const char *rel = build ? "logs/build.log" : "logs/std_log.txt";
  char p[4600], rd[4400];
  kp_run_dir(srv_ws(), rt->seg[1], rd, sizeof rd);
  snprintf(p, sizeof p, "%s/%s", rd, rel);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    /* the live copy is gone (runs/ is only a cache): the stored one */
    kp_stored_file *v;
    size_t n;
    if (kp_store_run_files_list(st, rt->seg[1], rel, &v, &n) != 0) return srv_store_error(c);
    for (size_t i = 0; i < n && fd < 0; i++)
      if (!strcmp(v[i].path, rel)) {
        kp_blob_path(srv_ws(), v[i].sha256, p, sizeof p);
        fd = open(p, O_RDONLY | O_CLOEXEC);
      }
    kp_stored_files_free(v, n);
  }
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
  {"GET", "runs/*/metrics/**", "max_points", 0, api_series},
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
