/*
 * platform/store_http.c — the remote store backend: the store interface
 * (store.h) over a tracking server's /api/v1 (kusari server, docs/SERVER.md),
 * on libcurl. Each operation is one or a few HTTP requests whose JSON answers
 * (views.h's shapes) are mapped back to the store's structs; the server's
 * errors map to store codes (404 ENOTFOUND, 409 ECONFLICT, 400 EINVAL, 401
 * and 403 a token error, anything else or no answer EBACKEND naming the
 * server). One CURL handle per store keeps its connection alive.
 *
 * Operations the API does not offer stay NULL: the wrappers then fail with
 * "the http store cannot ...". Times come as ISO-8601 seconds; a run's end
 * time is rebuilt from its start and duration_s so that durations match.
 */
#include "kp.h"
#include "store.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct http_store {
  kp_store base;
  CURL *h;
  char url[1024];      /* scheme://host:port, no trailing '/' */
  char auth[1100];     /* "Authorization: Bearer TOKEN" or "" */
} http_store;

typedef struct buf {
  char *p;
  size_t n, cap;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *ud) {
  buf *b = ud;
  size_t l = sz * nm;
  if (b->n + l + 1 > b->cap) {
    size_t cap = (b->n + l + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, l);
  b->n += l;
  b->p[b->n] = '\0';
  return l;
}

/* Appends 's' escaped for a URL path segment or query value. */
static int esc_cat(http_store *hs, char *out, size_t n, const char *s) {
  char *e = curl_easy_escape(hs->h, s, 0);
  if (!e) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  size_t l = strlen(out);
  int w = snprintf(out + l, n - l, "%s", e);
  curl_free(e);
  if (w < 0 || (size_t)w >= n - l) return kp_store_fail(KP_STORE_EINVAL, "a name is too long for a request");
  return 0;
}

/* One request: method, path under /api/v1/ (escaped already), an optional
 * JSON body; *out gets the parsed answer (2xx). */
static int req_n(http_store *hs, const char *method, const char *path, const char *body, size_t blen, const char *ctype,
                 cJSON **out);

/* The same with any body ('ctype': its Content-Type, bare). */
static int req_raw(http_store *hs, const char *method, const char *path, const char *body, size_t blen,
                   const char *ctype, cJSON **out) {
  char cth[200];
  snprintf(cth, sizeof cth, "Content-Type: %s", ctype);
  return req_n(hs, method, path, body, blen, cth, out);
}

static int req(http_store *hs, const char *method, const char *path, const char *body, cJSON **out) {
  return req_n(hs, method, path, body, body ? strlen(body) : 0, "Content-Type: application/json", out);
}

static int req_n(http_store *hs, const char *method, const char *path, const char *body, size_t blen, const char *ctype,
                 cJSON **out) {
  char url[8192];
  snprintf(url, sizeof url, "%s/api/v1/%s", hs->url, path);
  buf b = {0};
  struct curl_slist *hd = NULL;
  if (hs->auth[0]) hd = curl_slist_append(hd, hs->auth);
  if (body) hd = curl_slist_append(hd, ctype);
  curl_easy_setopt(hs->h, CURLOPT_URL, url);
  curl_easy_setopt(hs->h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(hs->h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(hs->h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(hs->h, CURLOPT_WRITEDATA, &b);
  if (body) {
    curl_easy_setopt(hs->h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(hs->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
  } else {
    curl_easy_setopt(hs->h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(hs->h, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
  }
  CURLcode cc = curl_easy_perform(hs->h);
  curl_easy_setopt(hs->h, CURLOPT_HTTPHEADER, NULL);
  curl_slist_free_all(hd);
  if (cc != CURLE_OK) {
    free(b.p);
    return kp_store_fail(KP_STORE_EBACKEND, "cannot reach the tracking server %s: %s", hs->url, curl_easy_strerror(cc));
  }
  long code = 0;
  curl_easy_getinfo(hs->h, CURLINFO_RESPONSE_CODE, &code);
  cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
  free(b.p);
  if (code >= 200 && code < 300) {
    if (!j) return kp_store_fail(KP_STORE_EBACKEND, "the tracking server %s answered %s %s with no JSON", hs->url, method, path);
    *out = j;
    return 0;
  }
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
  const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
  char m[900];
  snprintf(m, sizeof m, "%s", msg ? msg : "no error message");
  cJSON_Delete(j);
  switch (code) {
  case 404: return kp_store_fail(KP_STORE_ENOTFOUND, "%s", m);
  case 409: return kp_store_fail(KP_STORE_ECONFLICT, "%s", m);
  case 400: return kp_store_fail(KP_STORE_EINVAL, "%s", m);
  case 401:
    return kp_store_fail(KP_STORE_EINVAL, "the tracking server %s refused the token (%s): set KUSARI_TRACKING_TOKEN or "
                         "'kusari workspace connect %s --token TOKEN' with a valid token", hs->url, m, hs->url);
  case 403:
    return kp_store_fail(KP_STORE_EINVAL, "the tracking server %s refused the token for this (%s): a read-write token "
                         "is needed", hs->url, m);
  default: return kp_store_fail(KP_STORE_EBACKEND, "the tracking server %s answered %ld: %s", hs->url, code, m);
  }
}

static int get(http_store *hs, const char *path, cJSON **out) { return req(hs, "GET", path, NULL, out); }

/* ---- JSON to structs ---------------------------------------------------------- */
static const cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static char *sdup(const cJSON *o, const char *k) {
  const char *s = cJSON_GetStringValue(item(o, k));
  return s ? strdup(s) : NULL;
}

static char *sdup_empty(const cJSON *o, const char *k) {
  char *s = sdup(o, k);
  return s ? s : strdup("");
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = item(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* a metric value: a number or "NaN", "Infinity", "-Infinity" */
static double metric(const cJSON *v) {
  if (cJSON_IsNumber(v)) return v->valuedouble;
  const char *s = cJSON_GetStringValue(v);
  if (s && !strcmp(s, "Infinity")) return INFINITY;
  if (s && !strcmp(s, "-Infinity")) return -INFINITY;
  return NAN;
}

/* an ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SSZ) as seconds; 0 for null or "-" */
static double when(const cJSON *o, const char *k) {
  const char *s = cJSON_GetStringValue(item(o, k));
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (double)timegm(&tm);
}

static kp_run_status status_of(const cJSON *o) {
  kp_run_status st = KP_RUN_QUEUED;
  kp_run_status_parse(cJSON_GetStringValue(item(o, "status")), &st);
  return st;
}

static void run_of(const cJSON *o, kp_run *r) {
  memset(r, 0, sizeof *r);
  r->id = sdup_empty(o, "id");
  r->experiment = sdup_empty(o, "experiment");
  r->parent_id = sdup(o, "parent");
  r->status = status_of(o);
  r->compute = sdup_empty(o, "compute");
  r->error = sdup(o, "error");
  r->source = sdup_empty(o, "source");
  r->entry = sdup_empty(o, "entry");
  const cJSON *a = item(o, "arguments");
  char *t = a ? cJSON_PrintUnformatted(a) : NULL;
  r->args_json = strdup(t ? t : "[]");
  cJSON_free(t);
  r->snapshot = sdup_empty(o, "snapshot");
  r->env_hash = sdup(o, "environment");
  char *bc = sdup(o, "build_cache");
  if (bc && !*bc) {
    free(bc);
    bc = NULL;
  }
  r->build_cache = bc;
  r->snapshot_bytes = (int64_t)num(o, "snapshot_bytes");
  r->created = when(o, "created");
  r->prepared = when(o, "prepared");
  r->started = when(o, "started");
  r->finalizing = when(o, "finalizing");
  r->ended = when(o, "ended");
  const cJSON *d = item(o, "duration_s");
  /* the seconds of both times as shown, and the exact duration: a start
   * inside its second such that start + duration falls in the end's second
   * (times and durations lie on the same binary grid, so this is exact) */
  if (r->started && r->ended && cJSON_IsNumber(d)) {
    double e = r->ended;
    if (r->started + d->valuedouble < e) r->started = e - d->valuedouble;
    r->ended = r->started + d->valuedouble;
  }
  const cJSON *ec = item(o, "exit_code");
  if (cJSON_IsNumber(ec)) {
    r->has_exit_code = 1;
    r->exit_code = ec->valueint;
  }
  r->signal = (int)num(o, "signal");
}

static void tags_of(const cJSON *o, kp_tag **out, size_t *n) {
  size_t k = (size_t)cJSON_GetArraySize(o), i = 0;
  kp_tag *v = calloc(k ? k : 1, sizeof *v);
  const cJSON *t;
  cJSON_ArrayForEach(t, o) {
    if (!v || i == k || !t->string) break;
    v[i].key = strdup(t->string);
    v[i].value = strdup(cJSON_IsString(t) ? t->valuestring : "");
    i++;
  }
  *out = v;
  *n = v ? i : 0;
}

/* GET runs/ID (the run's detail) */
static int run_detail(http_store *hs, const char *id, cJSON **out) {
  char p[2048] = "runs/";
  if (esc_cat(hs, p, sizeof p, id) != 0) return -1;
  return get(hs, p, out);
}

/* ---- operations ---------------------------------------------------------------- */
static void h_close(kp_store *s) {
  http_store *hs = (http_store *)s;
  curl_easy_cleanup(hs->h);
  free(hs);
}

/* a remote store has no transactions: each request is one on the server */
static int h_begin(kp_store *s) { (void)s; return 0; }
static int h_commit(kp_store *s) { (void)s; return 0; }
static void h_rollback(kp_store *s) { (void)s; }

static int h_experiment_list(kp_store *s, kp_experiment_summary **out, size_t *n) {
  cJSON *j;
  if (get((http_store *)s, "experiments", &j) != 0) return -1;
  const cJSON *a = item(j, "experiments");
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0;
  kp_experiment_summary *v = calloc(k ? k : 1, sizeof *v);
  const cJSON *e;
  cJSON_ArrayForEach(e, a) {
    if (!v || i == k) break;
    v[i].name = sdup_empty(e, "name");
    v[i].created = when(e, "created");
    v[i].runs = (int)num(e, "runs");
    v[i].completed = (int)num(e, "completed");
    v[i].failed = (int)num(e, "failed");
    v[i].canceled = (int)num(e, "canceled");
    v[i].active = (int)num(e, "active");
    v[i].last_run = when(e, "last_run");
    i++;
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = v;
  *n = i;
  return 0;
}

static int h_experiment_get(kp_store *s, const char *name, kp_experiment_detail *d) {
  http_store *hs = (http_store *)s;
  char p[2048] = "experiments/";
  cJSON *j;
  if (esc_cat(hs, p, sizeof p, name) != 0 || get(hs, p, &j) != 0) return -1;
  memset(d, 0, sizeof *d);
  d->name = sdup_empty(j, "name");
  d->created = when(j, "created");
  d->runs = (int)num(j, "runs");
  d->sweeps = (int)num(j, "sweeps");
  d->last_activity = when(j, "last_activity");
  const cJSON *by = item(j, "by_status");
  for (int i = 0; i < KP_RUN_NSTATUS; i++) d->by_status[i] = (int)num(by, kp_run_status_name((kp_run_status)i));
  const cJSON *ms = item(j, "metrics"), *m;
  size_t k = (size_t)cJSON_GetArraySize(ms);
  d->metrics = calloc(k ? k : 1, sizeof *d->metrics);
  cJSON_ArrayForEach(m, ms) {
    if (!d->metrics || d->nmetrics == k) break;
    kp_metric_spread *x = &d->metrics[d->nmetrics++];
    x->name = sdup_empty(m, "name");
    x->runs = (int)num(m, "runs");
    x->has_min = item(m, "min") && !cJSON_IsNull(item(m, "min"));
    x->has_max = item(m, "max") && !cJSON_IsNull(item(m, "max"));
    x->min = x->has_min ? metric(item(m, "min")) : 0;
    x->max = x->has_max ? metric(item(m, "max")) : 0;
    x->latest = metric(item(m, "latest"));
    x->min_run = sdup_empty(m, "min_run");
    x->max_run = sdup_empty(m, "max_run");
    x->latest_run = sdup_empty(m, "latest_run");
  }
  const cJSON *rs = item(j, "recent_runs"), *r;
  k = (size_t)cJSON_GetArraySize(rs);
  d->recent = calloc(k ? k : 1, sizeof *d->recent);
  cJSON_ArrayForEach(r, rs) {
    if (!d->recent || d->nrecent == k) break;
    kp_run_brief *b = &d->recent[d->nrecent++];
    b->id = sdup_empty(r, "id");
    b->status = status_of(r);
    b->created = when(r, "created");
  }
  cJSON_Delete(j);
  return 0;
}

static int h_compute_list(kp_store *s, const char *only, kp_compute **out, size_t *n) {
  cJSON *j;
  if (get((http_store *)s, "computes", &j) != 0) return -1;
  const cJSON *a = item(j, "computes"), *c;
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0;
  kp_compute *v = calloc(k ? k : 1, sizeof *v);
  cJSON_ArrayForEach(c, a) {
    if (!v || i == k) break;
    const char *name = cJSON_GetStringValue(item(c, "name"));
    if (!name || (only && strcmp(only, name) != 0)) continue;
    v[i].name = strdup(name);
    v[i].type = sdup_empty(c, "type");
    v[i].max_nodes = (int)num(c, "max_nodes");
    v[i].busy_nodes = (int)num(c, "busy_nodes");
    v[i].queued_runs = (int)num(c, "queued_runs");
    i++;
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  if (only && i == 0) {
    free(v);
    return kp_store_fail(KP_STORE_ENOTFOUND, "no compute target named '%s'", only);
  }
  *out = v;
  *n = i;
  return 0;
}

static int h_run_get(kp_store *s, const char *id, kp_run *out) {
  cJSON *j;
  if (run_detail((http_store *)s, id, &j) != 0) return -1;
  run_of(j, out);
  cJSON_Delete(j);
  return 0;
}

static int h_tag_list(kp_store *s, const char *run_id, kp_tag **out, size_t *n) {
  cJSON *j;
  if (run_detail((http_store *)s, run_id, &j) != 0) return -1;
  tags_of(item(j, "tags"), out, n);
  cJSON_Delete(j);
  return 0;
}

static int h_run_params(kp_store *s, const char *run_id, kp_tag **out, size_t *n) {
  cJSON *j;
  if (run_detail((http_store *)s, run_id, &j) != 0) return -1;
  tags_of(item(j, "params"), out, n);
  cJSON_Delete(j);
  return 0;
}

static int h_tag_set(kp_store *s, const char *run_id, const char *key, const char *value) {
  http_store *hs = (http_store *)s;
  char p[4096] = "runs/";
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  strncat(p, "/tags/", sizeof p - strlen(p) - 1);
  if (esc_cat(hs, p, sizeof p, key) != 0) return -1;
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "value", value);
  char *body = cJSON_PrintUnformatted(b);
  cJSON_Delete(b);
  cJSON *j = NULL;
  int rc = body ? req(hs, "PUT", p, body, &j) : kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  cJSON_free(body);
  cJSON_Delete(j);
  return rc;
}

static int h_tag_remove(kp_store *s, const char *run_id, const char *const *keys, size_t n) {
  http_store *hs = (http_store *)s;
  for (size_t i = 0; i < n; i++) {
    char p[4096] = "runs/";
    if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
    strncat(p, "/tags/", sizeof p - strlen(p) - 1);
    if (esc_cat(hs, p, sizeof p, keys[i]) != 0) return -1;
    cJSON *j = NULL;
    if (req(hs, "DELETE", p, NULL, &j) != 0) return -1;
    cJSON_Delete(j);
  }
  return 0;
}

static int h_metrics_latest(kp_store *s, const char *run_id, kp_metric_latest **out, size_t *n) {
  http_store *hs = (http_store *)s;
  char p[2048] = "runs/";
  cJSON *j;
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  strncat(p, "/metrics", sizeof p - strlen(p) - 1);
  if (get(hs, p, &j) != 0) return -1;
  const cJSON *a = item(j, "metrics"), *m;
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0;
  kp_metric_latest *v = calloc(k ? k : 1, sizeof *v);
  cJSON_ArrayForEach(m, a) {
    if (!v || i == k) break;
    v[i].name = sdup_empty(m, "name");
    v[i].step = (int64_t)num(m, "step");
    v[i].value = metric(item(m, "value"));
    i++;
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = v;
  *n = i;
  return 0;
}

static int h_metric_latest_value(kp_store *s, const char *run_id, const char *name, double *value, int *found) {
  kp_metric_latest *v;
  size_t n;
  if (h_metrics_latest(s, run_id, &v, &n) != 0) return -1;
  *found = 0;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].name, name)) {
      *found = 1;
      *value = v[i].value;
    }
  kp_metric_latest_free(v, n);
  return 0;
}

static int h_metric_exists(kp_store *s, const char *name, int *yes) {
  http_store *hs = (http_store *)s;
  char p[4096] = "metrics/names/";
  cJSON *j;
  if (esc_cat(hs, p, sizeof p, name) != 0) return -1;
  *yes = 0;
  if (get(hs, p, &j) != 0) {
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return -1;
    kp_store_clear_error();
    return 0;
  }
  *yes = 1;
  cJSON_Delete(j);
  return 0;
}

static int h_metric_names(kp_store *s, const char *run_id, char ***out, size_t *n) {
  kp_metric_latest *v;
  size_t k;
  if (h_metrics_latest(s, run_id, &v, &k) != 0) return -1;
  char **names = calloc(k ? k : 1, sizeof *names);
  for (size_t i = 0; names && i < k; i++) {
    names[i] = v[i].name;
    v[i].name = NULL;
  }
  kp_metric_latest_free(v, k);
  if (!names) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = names;
  *n = k;
  return 0;
}

/* GET /runs/{id}/metrics/{name}[?rank=R] */
static int h_series(kp_store *s, const char *run_id, const char *name, int rank, kp_metric_point **out, size_t *n) {
  http_store *hs = (http_store *)s;
  char p[4096] = "runs/";
  cJSON *j;
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  strncat(p, "/metrics/", sizeof p - strlen(p) - 1);
  if (esc_cat(hs, p, sizeof p, name) != 0) return -1;
  if (rank > 0) {
    char q[32];
    snprintf(q, sizeof q, "?rank=%d", rank);
    strncat(p, q, sizeof p - strlen(p) - 1);
  }
  if (get(hs, p, &j) != 0) return -1;
  const cJSON *a = item(j, "points"), *m;
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0;
  kp_metric_point *v = calloc(k ? k : 1, sizeof *v);
  cJSON_ArrayForEach(m, a) {
    if (!v || i == k) break;
    v[i].step = (int64_t)num(m, "step");
    v[i].time = num(m, "timestamp");
    v[i].value = metric(item(m, "value"));
    v[i].rank = rank;
    i++;
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = v;
  *n = i;
  return 0;
}

static int h_metric_series(kp_store *s, const char *run_id, const char *name, kp_metric_point **out, size_t *n) {
  return h_series(s, run_id, name, 0, out, n);
}

/* ---- distributed runs: metrics per rank ---- */
static int h_metric_series_rank(kp_store *s, const char *run_id, const char *name, int rank, kp_metric_point **out,
                                size_t *n) {
  if (rank < 0) return kp_store_fail(KP_STORE_EINVAL, "rank %d is negative", rank);
  return h_series(s, run_id, name, rank, out, n);
}

static int h_metric_names_rank(kp_store *s, const char *run_id, int rank, char ***out, size_t *n) {
  if (rank == 0) return h_metric_names(s, run_id, out, n);
  return kp_store_fail(KP_STORE_EINVAL,
                       "listing the metric names of rank %d is not supported over HTTP; name the metric (--name NAME)",
                       rank);
}

static int h_run_files_list(kp_store *s, const char *run_id, const char *prefix, kp_stored_file **out, size_t *n) {
  http_store *hs = (http_store *)s;
  char p[2048] = "runs/";
  cJSON *j;
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  strncat(p, "/files", sizeof p - strlen(p) - 1);
  if (get(hs, p, &j) != 0) return -1;
  const cJSON *a = item(j, "files"), *f;
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0, pl = prefix ? strlen(prefix) : 0;
  kp_stored_file *v = calloc(k ? k : 1, sizeof *v);
  cJSON_ArrayForEach(f, a) {
    if (!v || i == k) break;
    const char *path = cJSON_GetStringValue(item(f, "path"));
    if (!path || (prefix && strncmp(path, prefix, pl) != 0)) continue;
    v[i].path = strdup(path);
    v[i].sha256 = sdup_empty(f, "sha256");
    v[i].size = (int64_t)num(f, "size");
    i++;
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = v;
  *n = i;
  return 0;
}

static int h_run_request_cancel(kp_store *s, const char *id, double grace, const char *reason) {
  http_store *hs = (http_store *)s;
  char p[2048] = "runs/";
  if (esc_cat(hs, p, sizeof p, id) != 0) return -1;
  strncat(p, "/cancel", sizeof p - strlen(p) - 1);
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "reason", reason ? reason : "");
  cJSON_AddNumberToObject(b, "grace", grace);
  char *body = cJSON_PrintUnformatted(b);
  cJSON_Delete(b);
  cJSON *j = NULL;
  int rc = body ? req(hs, "POST", p, body, &j) : kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  cJSON_free(body);
  cJSON_Delete(j);
  return rc;
}

/* one page of GET runs */
static int search_page(http_store *hs, const kp_run_search *q, int64_t max, const char *token, cJSON **out) {
  char p[32768] = "runs?max_results=";
  size_t l = strlen(p);
  snprintf(p + l, sizeof p - l, "%lld", (long long)max);
  const char *keys[] = {"experiment", "filter", "order_by", "page_token"};
  const char *vals[] = {q->experiment, q->filter, q->order_by, token};
  for (int i = 0; i < 4; i++) {
    if (!vals[i] || !*vals[i]) continue;
    l = strlen(p);
    snprintf(p + l, sizeof p - l, "&%s=", keys[i]);
    if (esc_cat(hs, p, sizeof p, vals[i]) != 0) return -1;
  }
  return get(hs, p, out);
}

#define PAGE_MAX 1000 /* the server's most per page */

static int h_run_search(kp_store *s, const kp_run_search *q, kp_run **out, size_t *n, char **next) {
  http_store *hs = (http_store *)s;
  kp_run *v = NULL;
  size_t k = 0, cap = 0;
  char *token = q->page_token ? strdup(q->page_token) : NULL;
  *next = NULL;
  for (;;) {
    int64_t want = q->max_results > 0 ? q->max_results - (int64_t)k : PAGE_MAX;
    if (want > PAGE_MAX) want = PAGE_MAX;
    cJSON *j;
    if (search_page(hs, q, want, token, &j) != 0) {
      free(token);
      kp_runs_free(v, k);
      return -1;
    }
    free(token);
    token = sdup(j, "next_page_token");
    const cJSON *a = item(j, "runs"), *r;
    cJSON_ArrayForEach(r, a) {
      if (k == cap) {
        cap = cap ? cap * 2 : 64;
        kp_run *nv = realloc(v, cap * sizeof *v);
        if (!nv) {
          cJSON_Delete(j);
          free(token);
          kp_runs_free(v, k);
          return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
        }
        v = nv;
      }
      run_of(r, &v[k++]);
    }
    cJSON_Delete(j);
    if (!token) break;
    if (q->max_results > 0 && (int64_t)k >= q->max_results) {
      *next = token;
      break;
    }
  }
  *out = v;
  *n = k;
  return 0;
}

static void model_of(const cJSON *o, kp_model *m) {
  memset(m, 0, sizeof *m);
  m->name = sdup_empty(o, "name");
  m->version = (int64_t)num(o, "version");
  m->run_id = sdup(o, "run");
  m->path = sdup_empty(o, "path");
  m->description = sdup_empty(o, "description");
  m->created = when(o, "created");
  const cJSON *fs = item(o, "files"), *f;
  size_t k = (size_t)cJSON_GetArraySize(fs);
  m->files = calloc(k ? k : 1, sizeof *m->files);
  cJSON_ArrayForEach(f, fs) {
    if (!m->files || m->nfiles == k) break;
    kp_stored_file *x = &m->files[m->nfiles++];
    x->path = sdup_empty(f, "path");
    x->sha256 = sdup_empty(f, "sha256");
    x->size = (int64_t)num(f, "size");
  }
  tags_of(item(o, "tags"), &m->tags, &m->ntags);
}

static int h_model_list(kp_store *s, const char *name, kp_model **out, size_t *n) {
  http_store *hs = (http_store *)s;
  char p[2048] = "models";
  if (name) {
    strncat(p, "?name=", sizeof p - strlen(p) - 1);
    if (esc_cat(hs, p, sizeof p, name) != 0) return -1;
  }
  cJSON *j;
  if (get(hs, p, &j) != 0) return -1;
  const cJSON *a = item(j, "models"), *m;
  size_t k = (size_t)cJSON_GetArraySize(a), i = 0;
  kp_model *v = calloc(k ? k : 1, sizeof *v);
  cJSON_ArrayForEach(m, a) {
    if (!v || i == k) break;
    model_of(m, &v[i++]);
  }
  cJSON_Delete(j);
  if (!v) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  *out = v;
  *n = i;
  return 0;
}

static int h_model_get(kp_store *s, const char *name, int64_t version, kp_model *out) {
  http_store *hs = (http_store *)s;
  char p[2048] = "models/";
  if (esc_cat(hs, p, sizeof p, name) != 0) return -1;
  size_t l = strlen(p);
  if (version > 0) snprintf(p + l, sizeof p - l, "/versions/%lld", (long long)version);
  else snprintf(p + l, sizeof p - l, "/versions/latest");
  cJSON *j;
  if (get(hs, p, &j) != 0) return -1;
  model_of(j, out);
  cJSON_Delete(j);
  return 0;
}

/* ---- beyond the store interface: logs and file bytes --------------------------------- */
static size_t on_file(char *d, size_t sz, size_t nm, void *ud) { return fwrite(d, sz, nm, ud); }

typedef struct log_head {
  uint64_t next;
  char status[32];
} log_head;

static size_t on_header(char *d, size_t sz, size_t nm, void *ud) {
  log_head *h = ud;
  size_t l = sz * nm;
  char line[256];
  snprintf(line, sizeof line, "%.*s", (int)(l < sizeof line - 1 ? l : sizeof line - 1), d);
  unsigned long long v;
  char st[32];
  if (sscanf(line, "X-Kusari-Next-Offset: %llu", &v) == 1 || sscanf(line, "x-kusari-next-offset: %llu", &v) == 1)
    h->next = v;
  if (sscanf(line, "X-Kusari-Run-Status: %31s", st) == 1 || sscanf(line, "x-kusari-run-status: %31s", st) == 1)
    snprintf(h->status, sizeof h->status, "%s", st);
  return l;
}

/* GET 'path' with the body written to 'out'; the error mapped as req's. */
static int get_to(http_store *hs, const char *path, FILE *out, log_head *h) {
  char url[8192];
  snprintf(url, sizeof url, "%s/api/v1/%s", hs->url, path);
  /* an error's body is JSON: kept in memory rather than written out */
  FILE *mem = NULL;
  char *mb = NULL;
  size_t ml = 0;
  mem = open_memstream(&mb, &ml);
  if (!mem) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  struct curl_slist *hd = NULL;
  if (hs->auth[0]) hd = curl_slist_append(hd, hs->auth);
  curl_easy_setopt(hs->h, CURLOPT_URL, url);
  curl_easy_setopt(hs->h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(hs->h, CURLOPT_CUSTOMREQUEST, NULL);
  curl_easy_setopt(hs->h, CURLOPT_HTTPHEADER, hd);
  curl_easy_setopt(hs->h, CURLOPT_WRITEFUNCTION, on_file);
  curl_easy_setopt(hs->h, CURLOPT_WRITEDATA, mem);
  if (h) {
    curl_easy_setopt(hs->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(hs->h, CURLOPT_HEADERDATA, h);
  }
  CURLcode cc = curl_easy_perform(hs->h);
  curl_easy_setopt(hs->h, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(hs->h, CURLOPT_HEADERFUNCTION, NULL);
  curl_easy_setopt(hs->h, CURLOPT_HEADERDATA, NULL);
  curl_slist_free_all(hd);
  fclose(mem);
  if (cc != CURLE_OK) {
    free(mb);
    return kp_store_fail(KP_STORE_EBACKEND, "cannot reach the tracking server %s: %s", hs->url, curl_easy_strerror(cc));
  }
  long code = 0;
  curl_easy_getinfo(hs->h, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) {
    int ok = ml == 0 || fwrite(mb, 1, ml, out) == ml;
    free(mb);
    return ok ? 0 : kp_store_fail(KP_STORE_EBACKEND, "cannot write what the tracking server sent");
  }
  /* the error again through req, which maps it (the request is cheap) */
  free(mb);
  cJSON *j = NULL;
  int rc = req(hs, "GET", path, NULL, &j);
  cJSON_Delete(j);
  return rc == 0 ? kp_store_fail(KP_STORE_EBACKEND, "the tracking server %s answered %ld for %s", hs->url, code, path) : -1;
}

static http_store *as_http(kp_store *s) {
  if (!s || strcmp(s->ops->backend, "http") != 0) {
    kp_store_fail(KP_STORE_EINVAL, "not a tracking server's store");
    return NULL;
  }
  return (http_store *)s;
}

int kp_store_http_log(kp_store *s, const char *run_id, int build, uint64_t offset, int wait, FILE *out, uint64_t *next,
                      char status[32]) {
  http_store *hs = as_http(s);
  if (!hs) return -1;
  char p[2048] = "runs/";
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  size_t l = strlen(p);
  snprintf(p + l, sizeof p - l, "/logs?offset=%llu&wait=%d%s", (unsigned long long)offset, wait, build ? "&log=build" : "");
  log_head h = {.next = offset};
  if (get_to(hs, p, out, &h) != 0) return -1;
  *next = h.next;
  snprintf(status, 32, "%s", h.status);
  return 0;
}

/* 'prefix', then 'name' escaped (if any), then 'suffix' (if any) into p[n] */
static int api_path(http_store *hs, const char *prefix, const char *name, const char *suffix, char *p, size_t n) {
  snprintf(p, n, "%s", prefix);
  if (name && esc_cat(hs, p, n, name) != 0) return -1;
  if (suffix) {
    size_t l = strlen(p);
    if (snprintf(p + l, n - l, "%s", suffix) >= (int)(n - l)) return kp_store_fail(KP_STORE_EINVAL, "a request path is too long");
  }
  return 0;
}

int kp_store_http_call(kp_store *s, const char *method, const char *prefix, const char *name, const char *suffix,
                       const char *body, cJSON **out) {
  *out = NULL;
  http_store *hs = as_http(s);
  char p[4096];
  if (!hs || api_path(hs, prefix, name, suffix, p, sizeof p) != 0) return -1;
  return req(hs, method, p, body, out);
}

int kp_store_http_text(kp_store *s, const char *prefix, const char *name, const char *suffix, FILE *out) {
  http_store *hs = as_http(s);
  char p[4096];
  if (!hs || api_path(hs, prefix, name, suffix, p, sizeof p) != 0) return -1;
  return get_to(hs, p, out, NULL);
}

int kp_store_http_put_blob(kp_store *s, const void *data, size_t len, char hex[65]) {
  http_store *hs = as_http(s);
  if (!hs) return -1;
  kp_sha256_hex(data, len, hex);
  char p[128];
  snprintf(p, sizeof p, "blobs/%s", hex);
  cJSON *o = NULL;
  if (get(hs, p, &o) == 0) {  /* there already */
    cJSON_Delete(o);
    return 0;
  }
  if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return -1;
  kp_store_clear_error();
  /* (an empty body is sent as such: curl wants a non-NULL pointer) */
  if (req_n(hs, "PUT", p, len ? data : "", len, "Content-Type: application/octet-stream", &o) != 0) return -1;
  cJSON_Delete(o);
  return 0;
}

int kp_store_http_send(kp_store *s, const char *method, const char *path, const void *body, size_t n,
                       const char *ctype, cJSON **out) {
  http_store *hs = as_http(s);
  *out = NULL;
  if (!hs) return -1;
  return req_raw(hs, method, path, body ? (const char *)body : "", n, ctype ? ctype : "application/json", out);
}

const char *kp_store_http_url(kp_store *s) {
  http_store *hs = as_http(s);
  return hs ? hs->url : "";
}

const char *kp_store_http_token(kp_store *s) {
  http_store *hs = as_http(s);
  const char *pre = "Authorization: Bearer ";
  return hs && !strncmp(hs->auth, pre, strlen(pre)) ? hs->auth + strlen(pre) : "";
}

int kp_store_http_file(kp_store *s, const char *run_id, const char *path, const char *dst, int mode) {
  http_store *hs = as_http(s);
  if (!hs) return -1;
  char p[8192] = "runs/";
  if (esc_cat(hs, p, sizeof p, run_id) != 0) return -1;
  strncat(p, "/files", sizeof p - strlen(p) - 1);
  /* each part escaped, the '/' between them kept */
  char part[4096];
  for (const char *a = path; *a;) {
    const char *e = strchr(a, '/');
    size_t n = e ? (size_t)(e - a) : strlen(a);
    snprintf(part, sizeof part, "%.*s", (int)n, a);
    strncat(p, "/", sizeof p - strlen(p) - 1);
    if (esc_cat(hs, p, sizeof p, part) != 0) return -1;
    a = e ? e + 1 : a + n;
  }
  char tmp[8300];
  snprintf(tmp, sizeof tmp, "%s.kusari-part", dst);
  FILE *f = fopen(tmp, "wb");
  if (!f) return kp_store_fail(KP_STORE_EBACKEND, "cannot write %s: %s", tmp, strerror(errno));
  int rc = get_to(hs, p, f, NULL);
  if (fclose(f) != 0 && rc == 0) rc = kp_store_fail(KP_STORE_EBACKEND, "cannot write %s: %s", tmp, strerror(errno));
  if (rc == 0 && (chmod(tmp, (mode_t)mode) != 0 || rename(tmp, dst) != 0))
    rc = kp_store_fail(KP_STORE_EBACKEND, "cannot write %s: %s", dst, strerror(errno));
  if (rc != 0) unlink(tmp);
  return rc;
}

/* server-sent events: the server's own store feeds them; a client reads the
 * stream (GET /runs/{id}/events), not this operation */
static int h_metric_events(kp_store *base, const char *run_id, int64_t *cursor, size_t max, kp_metric_event **out,
                           size_t *n) {
  (void)base;
  (void)run_id;
  (void)cursor;
  (void)max;
  (void)out;
  (void)n;
  return kp_store_fail(KP_STORE_EINVAL, "metric_events is not supported over HTTP: read GET /api/v1/runs/{id}/events");
}

static const kp_store_ops HTTP_OPS = {
  .backend = "http",
  .close = h_close,
  .begin = h_begin,
  .commit = h_commit,
  .rollback = h_rollback,
  .experiment_list = h_experiment_list,
  .experiment_get = h_experiment_get,
  .compute_list = h_compute_list,
  .run_get = h_run_get,
  .run_request_cancel = h_run_request_cancel,
  .tag_set = h_tag_set,
  .tag_list = h_tag_list,
  .tag_remove = h_tag_remove,
  .metric_series = h_metric_series,
  .metric_names = h_metric_names,
  .metric_exists = h_metric_exists,
  .metrics_latest = h_metrics_latest,
  .metric_latest_value = h_metric_latest_value,
  .model_get = h_model_get,
  .model_list = h_model_list,
  .run_files_list = h_run_files_list,
  .run_params = h_run_params,
  .run_search = h_run_search,
  /* server-sent events */
  .metric_events = h_metric_events,
  /* distributed runs: metrics per rank */
  .metric_series_rank = h_metric_series_rank,
  .metric_names_rank = h_metric_names_rank,
};

int kp_store_http_open(const char *url, const char *token, kp_store **out) {
  *out = NULL;
  kp_store_clear_error();
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    return kp_store_fail(KP_STORE_EINVAL, "'%s' is not an http:// or https:// URL", url);
  static int inited;
  if (!inited) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    inited = 1;
  }
  http_store *hs = calloc(1, sizeof *hs);
  if (!hs) return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  hs->base.ops = &HTTP_OPS;
  snprintf(hs->url, sizeof hs->url, "%s", url);
  size_t l = strlen(hs->url);
  while (l > 0 && hs->url[l - 1] == '/') hs->url[--l] = '\0';
  if (token && *token) snprintf(hs->auth, sizeof hs->auth, "Authorization: Bearer %s", token);
  hs->h = curl_easy_init();
  if (!hs->h) {
    free(hs);
    return kp_store_fail(KP_STORE_EBACKEND, "cannot start an HTTP client (libcurl)");
  }
  curl_easy_setopt(hs->h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(hs->h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(hs->h, CURLOPT_TIMEOUT, 120L);
  curl_easy_setopt(hs->h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(hs->h, CURLOPT_USERAGENT, "kusari/0.1.0");
  *out = &hs->base;
  return 0;
}
