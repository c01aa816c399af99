/*
 * src/training/reporter.c — Reporter (the current observation), DictSummary
 * (running means), IntervalTrigger, and small helpers of the trainer files:
 * strings in npz archives, atomic file writes.
 */
#include "training_impl.h"
#include "kusari/error.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------- */
/* helpers */

double ks__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *ks__strcat3(const char *a, const char *b, const char *c) {
  a = a ? a : "";
  b = b ? b : "";
  c = c ? c : "";
  size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
  char *s = malloc(n);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  snprintf(s, n, "%s%s%s", a, b, c);
  return s;
}

int ks__npz_read_i64(ks_npz_reader *r, const char *key, int64_t *out) {
  ks_npz_info in;
  int rc = ks_npz_reader_info(r, key, &in);
  if (rc == KS_ENOTFOUND) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", key);
  if (rc != KS_OK) return rc;
  if (in.size != 1)
    return ks_error_set(KS_ESHAPE, "key '%s': expected a scalar, got %lld elements", key, (long long)in.size);
  if (in.dtype == KS_NPZ_F4 || in.dtype == KS_NPZ_F8) {
    double d;
    rc = ks_npz_reader_read(r, key, KS_NPZ_F8, &d, 1);
    *out = (int64_t)d;
    return rc;
  }
  return ks_npz_reader_read(r, key, KS_NPZ_I8, out, 1);
}

int ks__npz_read_f64(ks_npz_reader *r, const char *key, double *out) {
  ks_npz_info in;
  int rc = ks_npz_reader_info(r, key, &in);
  if (rc == KS_ENOTFOUND) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", key);
  if (rc != KS_OK) return rc;
  if (in.size != 1)
    return ks_error_set(KS_ESHAPE, "key '%s': expected a scalar, got %lld elements", key, (long long)in.size);
  return ks_npz_reader_read(r, key, KS_NPZ_F8, out, 1);
}

int ks__npz_add_f64(ks_npz_writer *w, const char *key, double v) {
  return ks_npz_writer_add(w, key, KS_NPZ_F8, 0, NULL, &v);
}

int ks_npz_writer_add_string(ks_npz_writer *w, const char *key, const char *text) {
  if (!w || !key || !text) return ks_error_set(KS_EINVAL, "ks_npz_writer_add_string: NULL argument");
  size_t n = strlen(text);
  int32_t *b = malloc((n ? n : 1) * sizeof *b);
  if (!b) return ks_error_set(KS_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) b[i] = (unsigned char)text[i];
  int64_t shape[1] = {(int64_t)n};
  int rc = ks_npz_writer_add(w, key, KS_NPZ_I4, 1, shape, b);
  free(b);
  return rc;
}

int ks_npz_reader_read_string(ks_npz_reader *r, const char *key, char **out) {
  if (!r || !key || !out) return ks_error_set(KS_EINVAL, "ks_npz_reader_read_string: NULL argument");
  *out = NULL;
  ks_npz_info in;
  int rc = ks_npz_reader_info(r, key, &in);
  if (rc == KS_ENOTFOUND) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in the snapshot", key);
  if (rc != KS_OK) return rc;
  if (in.ndim != 1 || (in.dtype != KS_NPZ_I4 && in.dtype != KS_NPZ_I8))
    return ks_error_set(KS_ESHAPE, "key '%s': expected a 1-d integer array (a string)", key);
  int32_t *b = malloc((size_t)(in.size ? in.size : 1) * sizeof *b);
  char *s = malloc((size_t)in.size + 1);
  if (!b || !s) { free(b); free(s); return ks_error_set(KS_ENOMEM, "out of memory"); }
  rc = ks_npz_reader_read(r, key, KS_NPZ_I4, b, in.size);
  for (int64_t i = 0; rc == KS_OK && i < in.size; i++) {
    if (b[i] <= 0 || b[i] > 255) rc = ks_error_set(KS_EFORMAT, "key '%s': not a string (byte %lld is %d)", key, (long long)i, (int)b[i]);
    else s[i] = (char)b[i];
  }
  free(b);
  if (rc != KS_OK) { free(s); return rc; }
  s[in.size] = 0;
  *out = s;
  return KS_OK;
}

int ks__ensure_dir(const char *dir) {
  if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return KS_OK;
    return ks_error_set(KS_EIO, "output directory '%s' exists and is not a directory", dir);
  }
  return ks_error_set(KS_EIO, "cannot create output directory '%s': %s", dir, strerror(errno));
}

int ks_write_file_atomic(const char *dir, const char *name, const void *data, size_t n) {
  if (!dir || !name || (!data && n)) return ks_error_set(KS_EINVAL, "ks_write_file_atomic: NULL argument");
  char *tmp = ks__strcat3(dir, "/.", name), *path = ks__strcat3(dir, "/", name);
  char *tmpl = tmp ? ks__strcat3(tmp, ".tmpXXXXXX", NULL) : NULL;
  int rc = KS_OK, fd = -1;
  if (!tmp || !path || !tmpl) { rc = ks_error_last_code(); goto out; }
  fd = mkstemp(tmpl);
  if (fd < 0) { rc = ks_error_set(KS_EIO, "cannot write '%s': %s", path, strerror(errno)); goto out; }
  const char *p = data;
  size_t left = n;
  while (left) {
    ssize_t k = write(fd, p, left);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) { rc = ks_error_set(KS_EIO, "cannot write '%s': %s", path, strerror(errno)); break; }
    p += k;
    left -= (size_t)k;
  }
  if (rc == KS_OK && fchmod(fd, 0644) != 0) { /* best effort */ }
  if (close(fd) != 0 && rc == KS_OK) rc = ks_error_set(KS_EIO, "cannot write '%s': %s", path, strerror(errno));
  if (rc == KS_OK && rename(tmpl, path) != 0)
    rc = ks_error_set(KS_EIO, "cannot rename '%s' to '%s': %s", tmpl, path, strerror(errno));
  if (rc != KS_OK) unlink(tmpl);
out:
  free(tmp);
  free(path);
  free(tmpl);
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* Reporter */

ks_reporter *ks_reporter_new(void) {
  ks_reporter *r = calloc(1, sizeof *r);
  if (!r) ks_error_set(KS_ENOMEM, "out of memory");
  return r;
}

void ks_reporter_free(ks_reporter *r) {
  if (!r) return;
  ks_reporter_clear(r);
  free(r->e);
  free(r->prefix);
  free(r);
}

int ks_reporter_set_prefix(ks_reporter *r, const char *prefix) {
  if (!r) return ks_error_set(KS_EINVAL, "ks_reporter_set_prefix: reporter is NULL");
  char *p = NULL;
  if (prefix && *prefix && !(p = ks__strcat3(prefix, NULL, NULL))) return ks_error_last_code();
  free(r->prefix);
  r->prefix = p;
  return KS_OK;
}

const char *ks_reporter_prefix(const ks_reporter *r) { return r && r->prefix ? r->prefix : ""; }

static int reporter_put(ks_reporter *r, const char *key, double value) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->e[i].key, key) == 0) { r->e[i].value = value; return KS_OK; }
  if (r->n == r->cap) {
    int cap = r->cap ? 2 * r->cap : 16;
    ks_obs_entry *e = realloc(r->e, (size_t)cap * sizeof *e);
    if (!e) return ks_error_set(KS_ENOMEM, "out of memory");
    r->e = e;
    r->cap = cap;
  }
  char *k = ks__strcat3(key, NULL, NULL);
  if (!k) return ks_error_last_code();
  r->e[r->n++] = (ks_obs_entry){k, value};
  return KS_OK;
}

int ks_reporter_report(ks_reporter *r, const char *name, double value) {
  if (!r || !name || !*name) return ks_error_set(KS_EINVAL, "ks_reporter_report: NULL reporter or empty name");
  if (!r->prefix) return reporter_put(r, name, value);
  char *key = ks__strcat3(r->prefix, name, NULL);
  if (!key) return ks_error_last_code();
  int rc = reporter_put(r, key, value);
  free(key);
  return rc;
}

int ks_reporter_report_var(ks_reporter *r, const char *name, const ks_var *v) {
  if (!v || !v->data) return ks_error_set(KS_EINVAL, "ks_reporter_report_var: '%s' is NULL", name ? name : "?");
  if (v->data->size != 1)
    return ks_error_set(KS_ESHAPE, "ks_reporter_report_var: '%s' has %lld elements, a scalar is needed",
                        name ? name : "?", (long long)v->data->size);
  double x = v->data->dtype == KS_F32 ? (double)ks_tensor_f32(v->data)[0] : (double)ks_tensor_i32(v->data)[0];
  return ks_reporter_report(r, name, x);
}

void ks_reporter_clear(ks_reporter *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) free(r->e[i].key);
  r->n = 0;
}

int ks_reporter_size(const ks_reporter *r) { return r ? r->n : 0; }
const char *ks_reporter_key(const ks_reporter *r, int i) {
  return r && i >= 0 && i < r->n ? r->e[i].key : NULL;
}
double ks_reporter_value(const ks_reporter *r, int i) {
  return r && i >= 0 && i < r->n ? r->e[i].value : NAN;
}
int ks_reporter_get(const ks_reporter *r, const char *key, double *value) {
  if (!r || !key) return KS_ENOTFOUND;
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->e[i].key, key) == 0) {
      if (value) *value = r->e[i].value;
      return KS_OK;
    }
  return KS_ENOTFOUND;
}

/* ---------------------------------------------------------------------------- */
/* DictSummary */

ks_summary *ks_summary_new(void) {
  ks_summary *s = calloc(1, sizeof *s);
  if (!s) ks_error_set(KS_ENOMEM, "out of memory");
  return s;
}

void ks_summary_reset(ks_summary *s) {
  if (!s) return;
  for (int i = 0; i < s->n; i++) free(s->e[i].key);
  s->n = 0;
}

void ks_summary_free(ks_summary *s) {
  if (!s) return;
  ks_summary_reset(s);
  free(s->e);
  free(s);
}

static ks_summary_entry *summary_slot(ks_summary *s, const char *key) {
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->e[i].key, key) == 0) return &s->e[i];
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 16;
    ks_summary_entry *e = realloc(s->e, (size_t)cap * sizeof *e);
    if (!e) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
    s->e = e;
    s->cap = cap;
  }
  char *k = ks__strcat3(key, NULL, NULL);
  if (!k) return NULL;
  s->e[s->n] = (ks_summary_entry){k, 0, 0, 0};
  return &s->e[s->n++];
}

int ks_summary_add(ks_summary *s, const char *key, double value, double weight) {
  if (!s || !key) return ks_error_set(KS_EINVAL, "ks_summary_add: NULL argument");
  ks_summary_entry *e = summary_slot(s, key);
  if (!e) return ks_error_last_code();
  /* Chainer's Summary.add: x += w*v; x2 += w*v*v; n += w */
  e->x += weight * value;
  e->x2 += weight * value * value;
  e->n += weight;
  return KS_OK;
}

int ks_summary_add_observation(ks_summary *s, const ks_reporter *obs, const char *const *keys, int nkeys) {
  if (!s || !obs) return ks_error_set(KS_EINVAL, "ks_summary_add_observation: NULL argument");
  int rc = KS_OK;
  if (!keys) {
    for (int i = 0; i < obs->n && rc == KS_OK; i++) rc = ks_summary_add(s, obs->e[i].key, obs->e[i].value, 1);
  } else {
    for (int k = 0; k < nkeys && rc == KS_OK; k++) {
      double v;
      if (ks_reporter_get(obs, keys[k], &v) == KS_OK) rc = ks_summary_add(s, keys[k], v, 1);
    }
  }
  return rc;
}

int ks_summary_size(const ks_summary *s) { return s ? s->n : 0; }
const char *ks_summary_key(const ks_summary *s, int i) { return s && i >= 0 && i < s->n ? s->e[i].key : NULL; }

int ks_summary_mean(const ks_summary *s, const char *key, double *mean, double *std) {
  if (!s || !key) return KS_ENOTFOUND;
  for (int i = 0; i < s->n; i++) {
    const ks_summary_entry *e = &s->e[i];
    if (strcmp(e->key, key) != 0) continue;
    double m = e->x / e->n;
    if (mean) *mean = m;
    if (std) {
      double var = e->x2 / e->n - m * m;
      *std = sqrt(var > 0 ? var : 0);
    }
    return KS_OK;
  }
  return KS_ENOTFOUND;
}

int ks_summary_save(const ks_summary *s, ks_npz_writer *w, const char *prefix) {
  size_t len = 1;
  for (int i = 0; i < s->n; i++) len += strlen(s->e[i].key) + 1;
  char *names = malloc(len);
  double *v = malloc((size_t)(s->n ? s->n : 1) * 3 * sizeof *v);
  int rc = KS_OK;
  char *k = NULL;
  if (!names || !v) { rc = ks_error_set(KS_ENOMEM, "out of memory"); goto out; }
  names[0] = 0;
  size_t at = 0;
  for (int i = 0; i < s->n; i++) {
    at += (size_t)sprintf(names + at, "%s\n", s->e[i].key);
    v[i] = s->e[i].x;
    v[s->n + i] = s->e[i].x2;
    v[2 * s->n + i] = s->e[i].n;
  }
  if (!(k = ks__strcat3(prefix, "_names", NULL))) { rc = ks_error_last_code(); goto out; }
  if ((rc = ks_npz_writer_add_string(w, k, names)) != KS_OK) goto out;
  free(k);
  if (!(k = ks__strcat3(prefix, "_sums", NULL))) { rc = ks_error_last_code(); goto out; }
  int64_t shape[2] = {3, s->n};
  rc = ks_npz_writer_add(w, k, KS_NPZ_F8, 2, shape, v);
out:
  free(k);
  free(names);
  free(v);
  return rc;
}

int ks_summary_load(ks_summary *s, ks_npz_reader *r, const char *prefix) {
  char *k = ks__strcat3(prefix, "_names", NULL), *names = NULL;
  double *v = NULL;
  ks_summary *tmp = NULL;
  int rc;
  if (!k) return ks_error_last_code();
  rc = ks_npz_reader_read_string(r, k, &names);
  free(k);
  if (rc != KS_OK) return rc;
  int n = 0;
  for (char *p = names; *p; p++) n += *p == '\n';
  if (!(k = ks__strcat3(prefix, "_sums", NULL))) { rc = ks_error_last_code(); goto out; }
  ks_npz_info in;
  if ((rc = ks_npz_reader_info(r, k, &in)) != KS_OK) goto out;
  if (in.ndim != 2 || in.shape[0] != 3 || in.shape[1] != n) {
    rc = ks_error_set(KS_ESHAPE, "key '%s': expected (3, %d)", k, n);
    goto out;
  }
  v = malloc((size_t)(n ? n : 1) * 3 * sizeof *v);
  if (!v || !(tmp = ks_summary_new())) { rc = ks_error_set(KS_ENOMEM, "out of memory"); goto out; }
  if ((rc = ks_npz_reader_read(r, k, KS_NPZ_F8, v, 3 * (int64_t)n)) != KS_OK) goto out;
  char *p = names;
  for (int i = 0; i < n; i++) {
    char *nl = strchr(p, '\n');
    *nl = 0;
    ks_summary_entry *e = summary_slot(tmp, p);
    if (!e) { rc = ks_error_last_code(); goto out; }
    e->x = v[i];
    e->x2 = v[n + i];
    e->n = v[2 * n + i];
    p = nl + 1;
  }
  /* swap in */
  ks_summary_reset(s);
  free(s->e);
  *s = *tmp;
  free(tmp);
  tmp = NULL;
out:
  free(k);
  free(names);
  free(v);
  ks_summary_free(tmp);
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* IntervalTrigger */

void ks_interval_trigger_init(ks_interval_trigger *t, ks_trigger spec) {
  t->spec = spec;
  t->previous_iteration = 0;
  t->previous_epoch = 0;
  t->previous_epoch_detail = 0;
  t->has_best = 0;
  t->best_value = 0;
  t->acc_sum = 0;
  t->acc_n = 0;
}

/* Which period of length p (epochs) the point x (epochs) is in. The margin:
 * epoch_detail is epoch + position / N in double, so a boundary that is
 * reached exactly (x = 0.3 with p = 0.1) may come out as 2.9999999999999996
 * periods; 1e-9 epoch is far below one example of any data set. */
static int64_t epoch_period_index(double x, double p) { return (int64_t)floor(x / p + 1e-9); }

static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

int ks_interval_trigger_fire(ks_interval_trigger *t, const ks_updater *up) {
  int64_t it = ks_updater_iteration(up), ep = ks_updater_epoch(up);
  double ed = ks_updater_epoch_detail(up);
  double period = t->spec.period > 0 ? t->spec.period : 1;
  int fire;
  if (t->spec.unit == KS_EPOCH && period != floor(period)) {
    fire = epoch_period_index(t->previous_epoch_detail, period) != epoch_period_index(ed, period);
  } else if (t->spec.unit == KS_EPOCH) {
    /* whole epochs: integers, exactly as before fractions existed */
    int64_t p = (int64_t)period;
    fire = floordiv(t->previous_epoch, p) != floordiv(ep, p);
  } else {
    int64_t p = (int64_t)period;
    int64_t prev = t->previous_iteration < 0 ? it - 1 : t->previous_iteration;
    fire = floordiv(prev, p) != floordiv(it, p);
  }
  t->previous_iteration = it;
  t->previous_epoch = ep;
  t->previous_epoch_detail = ed;
  return fire;
}

int ks_trigger_fire_observed(ks_interval_trigger *t, const ks_updater *up, const ks_reporter *obs, int *fire) {
  *fire = 0;
  if (t->spec.kind == KS_TRIGGER_INTERVAL) {
    *fire = ks_interval_trigger_fire(t, up);
    return KS_OK;
  }
  const char *key = t->spec.key ? t->spec.key : "";
  double v;
  if (obs && ks_reporter_get(obs, key, &v) == KS_OK) {
    t->acc_sum += v;
    t->acc_n++;
  }
  if (!ks_interval_trigger_fire(t, up)) return KS_OK;
  if (t->acc_n == 0)
    return ks_error_set(KS_ENOTFOUND, "%s: key '%s' was not reported in this interval (is the extension reporting "
                        "it registered, with a higher priority?)",
                        t->spec.kind == KS_TRIGGER_MAX_VALUE ? "MaxValueTrigger" : "MinValueTrigger", key);
  double mean = t->acc_sum / (double)t->acc_n;
  t->acc_sum = 0;
  t->acc_n = 0;
  /* NaN is never better (Chainer's comparison is false for it) */
  int better = t->spec.kind == KS_TRIGGER_MAX_VALUE ? mean > t->best_value : mean < t->best_value;
  if (!t->has_best || better) {
    t->has_best = 1;
    t->best_value = mean;
    *fire = 1;
  }
  return KS_OK;
}

/* Chainer 7.8.1's IntervalTrigger.serialize writes "previous_iteration" and
 * "previous_epoch_detail"; "_previous_epoch" (the integer epoch that
 * whole-epoch periods compare) is kusari's own. Snapshots written before
 * kusari used Chainer's names have "_previous_iteration" and
 * "_previous_epoch_detail" instead: the loader takes either. */
int ks_interval_trigger_save(const ks_interval_trigger *t, ks_npz_writer *w, const char *prefix) {
  char *k = ks__strcat3(prefix, "previous_iteration", NULL);
  if (!k) return ks_error_last_code();
  int rc = ks_npz_writer_add_int64(w, k, t->previous_iteration);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "_previous_epoch", NULL))) return ks_error_last_code();
  rc = ks_npz_writer_add_int64(w, k, t->previous_epoch);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = ks__strcat3(prefix, "previous_epoch_detail", NULL))) return ks_error_last_code();
  rc = ks__npz_add_f64(w, k, t->previous_epoch_detail);
  free(k);
  if (rc != KS_OK || t->spec.kind == KS_TRIGGER_INTERVAL) return rc;
  if (!(k = ks__strcat3(prefix, "best_value", NULL))) return ks_error_last_code();
  rc = ks__npz_add_f64(w, k, t->best_value);
  free(k);
  if (rc == KS_OK && !(k = ks__strcat3(prefix, "_has_best", NULL))) return ks_error_last_code();
  if (rc == KS_OK) { rc = ks_npz_writer_add_int64(w, k, t->has_best); free(k); }
  if (rc == KS_OK && !(k = ks__strcat3(prefix, "_summary_sum", NULL))) return ks_error_last_code();
  if (rc == KS_OK) { rc = ks__npz_add_f64(w, k, t->acc_sum); free(k); }
  if (rc == KS_OK && !(k = ks__strcat3(prefix, "_summary_n", NULL))) return ks_error_last_code();
  if (rc == KS_OK) { rc = ks_npz_writer_add_int64(w, k, t->acc_n); free(k); }
  return rc;
}

/* The first of 'names' present under prefix: KS_OK and *found = its index,
 * or KS_OK and *found = -1 when none is. */
static int find_key(ks_npz_reader *r, const char *prefix, const char *const *names, int n, char **key,
                    int *found) {
  *found = -1;
  *key = NULL;
  for (int i = 0; i < n; i++) {
    char *k = ks__strcat3(prefix, names[i], NULL);
    if (!k) return ks_error_last_code();
    if (ks_npz_reader_info(r, k, NULL) == KS_OK) {
      *found = i;
      *key = k;
      return KS_OK;
    }
    free(k);
  }
  return KS_OK;
}

int ks_interval_trigger_load(ks_interval_trigger *t, ks_npz_reader *r, const char *prefix) {
  static const char *const it_names[] = {"previous_iteration", "_previous_iteration"};
  static const char *const ed_names[] = {"previous_epoch_detail", "_previous_epoch_detail"};
  int64_t pi, pe;
  char *k;
  int found;
  int rc = find_key(r, prefix, it_names, 2, &k, &found);
  if (rc != KS_OK) return rc;
  if (found < 0)
    return ks_error_set(KS_ENOTFOUND, "trigger state: %sprevious_iteration is missing from the snapshot", prefix);
  rc = ks__npz_read_i64(r, k, &pi);
  free(k);
  if (rc != KS_OK) return rc;
  /* epoch_detail: absent from snapshots written before fractional periods,
   * which only had whole-epoch triggers (the epoch is all that counts) */
  double ped = 0;
  int has_ped = 0;
  if ((rc = find_key(r, prefix, ed_names, 2, &k, &found)) != KS_OK) return rc;
  if (found >= 0) {
    rc = ks__npz_read_f64(r, k, &ped);
    free(k);
    if (rc != KS_OK) return rc;
    has_ped = 1;
  }
  /* the integer epoch: kusari's own key; a trigger saved by Chainer has
   * only epoch_detail, whose whole part it is */
  if (!(k = ks__strcat3(prefix, "_previous_epoch", NULL))) return ks_error_last_code();
  if (ks_npz_reader_info(r, k, NULL) == KS_OK || !has_ped) {
    rc = ks__npz_read_i64(r, k, &pe);
  } else {
    pe = ped > 0 ? (int64_t)floor(ped) : 0;
  }
  free(k);
  if (rc != KS_OK) return rc;
  if (!has_ped) ped = (double)pe;
  int64_t has = 0, n = 0;
  double best = 0, sum = 0;
  if (t->spec.kind != KS_TRIGGER_INTERVAL) {
    if (!(k = ks__strcat3(prefix, "best_value", NULL))) return ks_error_last_code();
    rc = ks__npz_read_f64(r, k, &best);
    free(k);
    if (rc == KS_OK && !(k = ks__strcat3(prefix, "_has_best", NULL))) return ks_error_last_code();
    if (rc == KS_OK) { rc = ks__npz_read_i64(r, k, &has); free(k); }
    if (rc == KS_OK && !(k = ks__strcat3(prefix, "_summary_sum", NULL))) return ks_error_last_code();
    if (rc == KS_OK) { rc = ks__npz_read_f64(r, k, &sum); free(k); }
    if (rc == KS_OK && !(k = ks__strcat3(prefix, "_summary_n", NULL))) return ks_error_last_code();
    if (rc == KS_OK) { rc = ks__npz_read_i64(r, k, &n); free(k); }
    if (rc != KS_OK) return rc;
  }
  t->previous_iteration = pi;
  t->previous_epoch = pe;
  t->previous_epoch_detail = ped;
  t->has_best = has != 0;
  t->best_value = best;
  t->acc_sum = sum;
  t->acc_n = n;
  return KS_OK;
}
