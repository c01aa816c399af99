/*
 * platform/sweep_space.c — the pure half of sweeps: the sweep file and its
 * validation, parameter expressions (Azure ML's meanings), grid / random /
 * bayesian sampling and the early termination rules. No store access: the
 * controller (cmd_sweep.c) feeds it what the store holds, and tests link it
 * directly (tests/platform/test_sweep_sampler.c).
 */
#include "sweep.h"
#include "limits.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const kp_expr_names[KP_X_COUNT] = {"choice", "randint", "uniform", "quniform", "loguniform",
                                               "qloguniform", "normal", "qnormal", "lognormal", "qlognormal"};
const char *const kp_sampling_names[3] = {"grid", "random", "bayesian"};
const char *const kp_policy_names[4] = {"none", "bandit", "median", "truncation"};

static int seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int seterr(char *err, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, n, fmt, ap);
  va_end(ap);
  return -1;
}

static char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Shortest "%.*g" text of v that reads back as v (at most 17 digits). */
static void fmt_num(double v, char *out, size_t n) {
  if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(out, n, "%.0f", v);
    return;
  }
  for (int p = 1; p <= 17; p++) {
    snprintf(out, n, "%.*g", p, v);
    if (strtod(out, NULL) == v) return;
  }
}

/* ---- random numbers: xoshiro256** seeded by splitmix64 -------------------------- */
static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void kp_rng_seed(kp_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull + 0x8CB92BA72F3D8DD7ull);
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kp_rng_next(kp_rng *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

double kp_rng_uniform(kp_rng *r) { return (double)(kp_rng_next(r) >> 11) * 0x1.0p-53; }

double kp_rng_normal(kp_rng *r) {
  double u1 = kp_rng_uniform(r), u2 = kp_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- normal distribution helpers ---------------------------------------------------- */
static double norm_cdf(double z) { return 0.5 * erfc(-z / M_SQRT2); }
static double norm_pdf(double z) { return exp(-0.5 * z * z) / sqrt(2.0 * M_PI); }

/* Inverse of norm_cdf (Acklam's rational approximation + one Newton step). */
static double norm_ppf(double p) {
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  if (p < 1e-12) p = 1e-12;
  if (p > 1 - 1e-12) p = 1 - 1e-12;
  double x;
  if (p < 0.02425) {
    double q = sqrt(-2 * log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p > 1 - 0.02425) {
    double q = sqrt(-2 * log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  double e = norm_cdf(x) - p;
  return x - e / (norm_pdf(x) > 1e-300 ? norm_pdf(x) : 1e-300);
}

/* ---- the parameter space --------------------------------------------------------------- */
static int nargs_of(int kind) {
  switch (kind) {
    case KP_X_RANDINT: return 1;
    case KP_X_UNIFORM: case KP_X_LOGUNIFORM: case KP_X_NORMAL: case KP_X_LOGNORMAL: return 2;
    case KP_X_QUNIFORM: case KP_X_QLOGUNIFORM: case KP_X_QNORMAL: case KP_X_QLOGNORMAL: return 3;
    default: return -1;
  }
}

static const char *arg_names(int kind) {
  switch (kind) {
    case KP_X_RANDINT: return "[upper]";
    case KP_X_UNIFORM: case KP_X_LOGUNIFORM: return "[min, max]";
    case KP_X_QUNIFORM: case KP_X_QLOGUNIFORM: return "[min, max, q]";
    case KP_X_NORMAL: case KP_X_LOGNORMAL: return "[mu, sigma]";
    default: return "[mu, sigma, q]";
  }
}

static int parse_param(const cJSON *it, kp_param *p, char *err, size_t errn) {
  const char *name = it->string;
  if (!name || !*name || strchr(name, '=') || strlen(name) > 120)
    return seterr(err, errn, "sampling.space: parameter name '%s' must be 1-120 characters without '='", name ? name : "");
  p->name = xstrdup(name);
  size_t l = strlen(name) + 3;
  p->arg = malloc(l);
  if (!p->name || !p->arg) return seterr(err, errn, "out of memory");
  snprintf(p->arg, l, "%s%s", name[0] == '-' ? "" : "--", name);
  if (!cJSON_IsObject(it) || cJSON_GetArraySize(it) != 1)
    return seterr(err, errn, "sampling.space.%s: must be an object with one expression, e.g. {\"choice\": [128, 256]} "
                  "or {\"uniform\": [0.1, 0.9]}", name);
  const cJSON *e = it->child;
  int kind = -1;
  for (int k = 0; k < KP_X_COUNT; k++)
    if (!strcmp(e->string, kp_expr_names[k])) kind = k;
  if (kind < 0)
    return seterr(err, errn, "sampling.space.%s: unknown expression '%s' (the expressions are choice, randint, uniform, "
                  "quniform, loguniform, qloguniform, normal, qnormal, lognormal, qlognormal)", name, e->string);
  p->kind = kind;
  if (kind == KP_X_CHOICE) {
    if (!cJSON_IsArray(e))
      return seterr(err, errn, "sampling.space.%s.choice: must be an array of values, e.g. [128, 256]", name);
    int n = cJSON_GetArraySize(e);
    if (n == 0) return seterr(err, errn, "sampling.space.%s.choice: is empty; give at least one value", name);
    p->cstr = calloc((size_t)n, sizeof *p->cstr);
    if (!p->cstr) return seterr(err, errn, "out of memory");
    const cJSON *v;
    cJSON_ArrayForEach(v, e) {
      char buf[64];
      const char *s;
      if (cJSON_IsNumber(v)) { fmt_num(v->valuedouble, buf, sizeof buf); s = buf; }
      else if (cJSON_IsString(v)) s = v->valuestring;
      else if (cJSON_IsBool(v)) s = cJSON_IsTrue(v) ? "true" : "false";
      else return seterr(err, errn, "sampling.space.%s.choice: value %d is not a number, string or boolean", name, p->nchoice + 1);
      for (int j = 0; j < p->nchoice; j++)
        if (!strcmp(p->cstr[j], s)) return seterr(err, errn, "sampling.space.%s.choice: value '%s' appears twice", name, s);
      if (!(p->cstr[p->nchoice++] = xstrdup(s))) return seterr(err, errn, "out of memory");
    }
    return 0;
  }
  int want = nargs_of(kind);
  double a[3] = {0, 0, 0};
  if (kind == KP_X_RANDINT && cJSON_IsNumber(e)) {
    a[0] = e->valuedouble;
  } else {
    if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != want)
      return seterr(err, errn, "sampling.space.%s.%s: needs %d number%s %s", name, e->string, want, want > 1 ? "s" : "",
                    arg_names(kind));
    for (int i = 0; i < want; i++) {
      const cJSON *v = cJSON_GetArrayItem(e, i);
      if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return seterr(err, errn, "sampling.space.%s.%s: argument %d is not a finite number (%s)", name, e->string, i + 1,
                      arg_names(kind));
      a[i] = v->valuedouble;
    }
  }
  p->a = a[0];
  p->b = a[1];
  p->q = a[2];
  switch (kind) {
    case KP_X_RANDINT:
      if (p->a < 1 || p->a != floor(p->a) || p->a > 1e15)
        return seterr(err, errn, "sampling.space.%s.randint: upper must be an integer >= 1 (values are 0..upper-1), got %g",
                      name, p->a);
      break;
    case KP_X_UNIFORM: case KP_X_QUNIFORM: case KP_X_LOGUNIFORM: case KP_X_QLOGUNIFORM:
      if (p->a > p->b) return seterr(err, errn, "sampling.space.%s.%s: min %g > max %g", name, e->string, p->a, p->b);
      if ((kind == KP_X_LOGUNIFORM || kind == KP_X_QLOGUNIFORM) && p->b > 700)
        return seterr(err, errn, "sampling.space.%s.%s: max %g is too large (the value is exp(uniform(min, max)))", name,
                      e->string, p->b);
      break;
    default:
      if (p->b <= 0) return seterr(err, errn, "sampling.space.%s.%s: sigma must be > 0, got %g", name, e->string, p->b);
      break;
  }
  if (want == 3 && p->q <= 0) return seterr(err, errn, "sampling.space.%s.%s: q must be > 0, got %g", name, e->string, p->q);
  return 0;
}

int kp_space_parse(const cJSON *space, kp_space *out, char *err, size_t errn) {
  memset(out, 0, sizeof *out);
  if (!cJSON_IsObject(space)) return seterr(err, errn, "sampling.space: missing, or not an object of parameters");
  int n = cJSON_GetArraySize(space);
  if (n == 0) return seterr(err, errn, "sampling.space: is empty; give at least one parameter");
  if (n > 64) return seterr(err, errn, "sampling.space: %d parameters; at most 64", n);
  out->p = calloc((size_t)n, sizeof *out->p);
  if (!out->p) return seterr(err, errn, "out of memory");
  const cJSON *it;
  cJSON_ArrayForEach(it, space) {
    out->n++;
    if (parse_param(it, &out->p[out->n - 1], err, errn) != 0) return -1;
    for (int j = 0; j < out->n - 1; j++)
      if (!strcmp(out->p[j].arg, out->p[out->n - 1].arg))
        return seterr(err, errn, "sampling.space: parameters '%s' and '%s' are the same option %s", out->p[j].name,
                      it->string, out->p[j].arg);
  }
  return 0;
}

void kp_space_free(kp_space *s) {
  for (int j = 0; s->p && j < s->n; j++) {
    free(s->p[j].name);
    free(s->p[j].arg);
    for (int i = 0; i < s->p[j].nchoice; i++) free(s->p[j].cstr[i]);
    free(s->p[j].cstr);
  }
  free(s->p);
  memset(s, 0, sizeof *s);
}

static int is_q(int kind) {
  return kind == KP_X_QUNIFORM || kind == KP_X_QLOGUNIFORM || kind == KP_X_QNORMAL || kind == KP_X_QLOGNORMAL;
}

void kp_space_format(const kp_space *s, int j, double v, char *out, size_t n) {
  const kp_param *p = &s->p[j];
  if (p->kind == KP_X_CHOICE) {
    int i = (int)v;
    if (i < 0) i = 0;
    if (i >= p->nchoice) i = p->nchoice - 1;
    snprintf(out, n, "%s", p->cstr[i]);
  } else if (p->kind == KP_X_RANDINT) {
    snprintf(out, n, "%.0f", v);
  } else {
    /* 12 significant digits: round(x/q)*q prints as 0.3, not 0.30000000000000004 */
    char buf[64];
    snprintf(buf, sizeof buf, "%.12g", v);
    if (!strcmp(buf, "-0")) snprintf(buf, sizeof buf, "0");
    snprintf(out, n, "%s", buf);
  }
}

int kp_space_value(const kp_space *s, int j, const char *text, double *v) {
  const kp_param *p = &s->p[j];
  if (p->kind == KP_X_CHOICE) {
    for (int i = 0; i < p->nchoice; i++)
      if (!strcmp(p->cstr[i], text)) { *v = i; return 0; }
    return -1;
  }
  char *end;
  double x = strtod(text, &end);
  if (end == text || *end || !isfinite(x)) return -1;
  *v = x;
  return 0;
}

static double qround(double x, double q) { return round(x / q) * q; }

void kp_space_from_unit(const kp_space *s, const double *u, double *x) {
  for (int j = 0; j < s->n; j++) {
    const kp_param *p = &s->p[j];
    double t = u[j] < 0 ? 0 : u[j] >= 1 ? 1 - 1e-12 : u[j], v;
    switch (p->kind) {
      case KP_X_CHOICE: v = floor(t * p->nchoice); break;
      case KP_X_RANDINT: v = floor(t * p->a); break;
      case KP_X_UNIFORM: case KP_X_QUNIFORM: v = p->a + t * (p->b - p->a); break;
      case KP_X_LOGUNIFORM: case KP_X_QLOGUNIFORM: v = exp(p->a + t * (p->b - p->a)); break;
      case KP_X_NORMAL: case KP_X_QNORMAL: v = p->a + p->b * norm_ppf(t); break;
      default: v = exp(p->a + p->b * norm_ppf(t)); break;
    }
    if (is_q(p->kind)) v = qround(v, p->q);
    /* the value as the entry sees it (so a stored point maps back exactly) */
    if (p->kind != KP_X_CHOICE && p->kind != KP_X_RANDINT) {
      char buf[64];
      kp_space_format(s, j, v, buf, sizeof buf);
      v = strtod(buf, NULL);
    }
    x[j] = v;
  }
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

void kp_space_to_unit(const kp_space *s, const double *x, double *u) {
  for (int j = 0; j < s->n; j++) {
    const kp_param *p = &s->p[j];
    double v = x[j], t;
    switch (p->kind) {
      case KP_X_CHOICE: t = (v + 0.5) / p->nchoice; break;
      case KP_X_RANDINT: t = (v + 0.5) / p->a; break;
      case KP_X_UNIFORM: case KP_X_QUNIFORM: t = p->b > p->a ? (v - p->a) / (p->b - p->a) : 0.5; break;
      case KP_X_LOGUNIFORM: case KP_X_QLOGUNIFORM:
        t = p->b > p->a ? (log(v > 1e-300 ? v : 1e-300) - p->a) / (p->b - p->a) : 0.5;
        break;
      case KP_X_NORMAL: case KP_X_QNORMAL: t = norm_cdf((v - p->a) / p->b); break;
      default: t = v > 0 ? norm_cdf((log(v) - p->a) / p->b) : 0; break;
    }
    u[j] = clamp01(t);
  }
}

long long kp_space_grid_size(const kp_space *s) {
  long long n = 1;
  for (int j = 0; j < s->n; j++) {
    if (s->p[j].kind != KP_X_CHOICE) return 0;
    n *= s->p[j].nchoice;
    if (n > 1000000000ll) return 1000000000ll;
  }
  return n;
}

void kp_space_grid_point(const kp_space *s, long long i, double *x) {
  for (int j = s->n - 1; j >= 0; j--) {
    long long c = s->p[j].nchoice;
    x[j] = (double)(i % c);
    i /= c;
  }
}

void kp_sample_random(const kp_space *s, uint64_t seed, long long idx, double *x) {
  kp_rng r;
  kp_rng_seed(&r, seed, (uint64_t)idx);
  double u[64];
  for (int j = 0; j < s->n; j++) u[j] = kp_rng_uniform(&r);
  kp_space_from_unit(s, u, x);
}

/* ---- finite spaces: points as integers (mixed radix, first parameter slowest) ---- */
#define KP_FINITE_MAX 1000000000000000ll

/* Number of values of parameter p (0: infinitely many, or too many), and the
 * integer k of its first value (value i is (lo + i) * q for the q forms). */
static long long param_count(const kp_param *p, long long *lo) {
  *lo = 0;
  switch (p->kind) {
    case KP_X_CHOICE: return p->nchoice;
    case KP_X_RANDINT: return (long long)p->a;
    case KP_X_UNIFORM: case KP_X_LOGUNIFORM: return p->a == p->b ? 1 : 0;
    case KP_X_QUNIFORM: case KP_X_QLOGUNIFORM: {
      double a = p->kind == KP_X_QUNIFORM ? p->a : exp(p->a), b = p->kind == KP_X_QUNIFORM ? p->b : exp(p->b);
      double l = round(a / p->q), h = round(b / p->q);
      if (!isfinite(l) || !isfinite(h) || fabs(l) > 1e15 || fabs(h) > 1e15 || h - l + 1 > (double)KP_FINITE_MAX) return 0;
      *lo = (long long)l;
      return (long long)h - (long long)l + 1;
    }
    default: return 0;
  }
}

long long kp_space_finite_size(const kp_space *s) {
  long long n = 1, lo;
  for (int j = 0; j < s->n; j++) {
    long long c = param_count(&s->p[j], &lo);
    if (c <= 0 || n > KP_FINITE_MAX / c) return 0;
    n *= c;
  }
  return n;
}

/* The value as the entry sees it (as kp_space_from_unit leaves it). */
static double canonical(const kp_space *s, int j, double v) {
  char buf[64];
  kp_space_format(s, j, v, buf, sizeof buf);
  return strtod(buf, NULL);
}

/* The integer of point x of a finite space, or -1 when x is not one of its points. */
static long long point_index(const kp_space *s, const double *x) {
  long long i = 0, lo;
  for (int j = 0; j < s->n; j++) {
    const kp_param *p = &s->p[j];
    long long c = param_count(p, &lo), k;
    if (p->kind == KP_X_CHOICE || p->kind == KP_X_RANDINT) k = (long long)x[j];
    else if (p->kind == KP_X_QUNIFORM || p->kind == KP_X_QLOGUNIFORM) k = llround(x[j] / p->q) - lo;
    else k = 0;
    if (!isfinite(x[j]) || k < 0 || k >= c) return -1;
    i = i * c + k;
  }
  return i;
}

static void point_of_index(const kp_space *s, long long i, double *x) {
  long long lo;
  for (int j = s->n - 1; j >= 0; j--) {
    const kp_param *p = &s->p[j];
    long long c = param_count(p, &lo), k = i % c;
    i /= c;
    if (p->kind == KP_X_CHOICE || p->kind == KP_X_RANDINT) x[j] = (double)k;
    else if (p->kind == KP_X_QUNIFORM || p->kind == KP_X_QLOGUNIFORM) x[j] = canonical(s, j, (double)(lo + k) * p->q);
    else x[j] = canonical(s, j, p->kind == KP_X_UNIFORM ? p->a : exp(p->a));
  }
}

static int cmp_ll(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

int kp_sample_random_unseen(const kp_space *s, uint64_t seed, long long idx, const double *prev, long long nprev,
                            double *x) {
  kp_rng r;
  kp_rng_seed(&r, seed, (uint64_t)idx);
  double u[64];
  long long n = kp_space_finite_size(s);
  if (n == 0 || nprev <= 0 || !prev) {
    for (int j = 0; j < s->n; j++) u[j] = kp_rng_uniform(&r);
    kp_space_from_unit(s, u, x);
    return 0;
  }
  /* the earlier points as sorted distinct integers */
  long long *seen = malloc((size_t)nprev * sizeof *seen), m = 0;
  if (!seen) {
    for (int j = 0; j < s->n; j++) u[j] = kp_rng_uniform(&r);
    kp_space_from_unit(s, u, x);
    return 0;
  }
  for (long long i = 0; i < nprev; i++) {
    long long k = point_index(s, prev + i * s->n);
    if (k >= 0) seen[m++] = k;
  }
  qsort(seen, (size_t)m, sizeof *seen, cmp_ll);
  long long w = 0;
  for (long long i = 0; i < m; i++)
    if (w == 0 || seen[i] != seen[w - 1]) seen[w++] = seen[i];
  m = w;
  if (m >= n) { free(seen); return 1; }
  for (int attempt = 0; attempt < 64; attempt++) {
    for (int j = 0; j < s->n; j++) u[j] = kp_rng_uniform(&r);
    kp_space_from_unit(s, u, x);
    long long k = point_index(s, x);
    if (k < 0 || !bsearch(&k, seen, (size_t)m, sizeof *seen, cmp_ll)) { free(seen); return 0; }
  }
  /* nearly exhausted: the t-th unseen integer, t uniform */
  long long t = (long long)(kp_rng_uniform(&r) * (double)(n - m));
  if (t >= n - m) t = n - m - 1;
  for (long long i = 0; i < m && seen[i] <= t; i++) t++;
  free(seen);
  point_of_index(s, t, x);
  return 0;
}

/* ---- bayesian optimisation: GP (RBF kernel) + expected improvement ------------------ */
int kp_bayes_n_init(int nparams) {
  int n = 2 * nparams;
  return n < 3 ? 3 : n > 10 ? 10 : n;
}

/* Cholesky of the n x n matrix A in place (lower); -1 if not positive definite. */
static int cholesky(double *A, int n) {
  for (int j = 0; j < n; j++) {
    double d = A[j * n + j];
    for (int k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
    if (d <= 0) return -1;
    d = sqrt(d);
    A[j * n + j] = d;
    for (int i = j + 1; i < n; i++) {
      double v = A[i * n + j];
      for (int k = 0; k < j; k++) v -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = v / d;
    }
  }
  return 0;
}

/* Solves L L^T x = b in place. */
static void chol_solve(const double *L, int n, double *b) {
  for (int i = 0; i < n; i++) {
    double v = b[i];
    for (int k = 0; k < i; k++) v -= L[i * n + k] * b[k];
    b[i] = v / L[i * n + i];
  }
  for (int i = n - 1; i >= 0; i--) {
    double v = b[i];
    for (int k = i + 1; k < n; k++) v -= L[k * n + i] * b[k];
    b[i] = v / L[i * n + i];
  }
}

static double sqdist(const double *a, const double *b, int d) {
  double s = 0;
  for (int i = 0; i < d; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
  return s;
}

typedef struct gp {
  int n, d;
  const double *U;  /* n x d unit coordinates */
  double *L, *alpha;
  double ls, noise;
} gp;

/* Fits a GP with length scale ls and noise to (U, y); returns the log marginal
 * likelihood, or -INFINITY when the kernel matrix is not positive definite. */
static double gp_fit(gp *g, const double *U, const double *y, int n, int d, double ls, double noise) {
  g->n = n;
  g->d = d;
  g->U = U;
  g->ls = ls;
  g->noise = noise;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      g->L[i * n + j] = exp(-0.5 * sqdist(U + i * d, U + j * d, d) / (ls * ls)) + (i == j ? noise : 0);
  if (cholesky(g->L, n) != 0) return -INFINITY;
  memcpy(g->alpha, y, (size_t)n * sizeof *y);
  chol_solve(g->L, n, g->alpha);
  double lml = 0;
  for (int i = 0; i < n; i++) lml -= 0.5 * y[i] * g->alpha[i] + log(g->L[i * n + i]);
  return lml - 0.5 * n * log(2 * M_PI);
}

static void gp_predict(const gp *g, const double *u, double *k, double *mu, double *sd) {
  int n = g->n;
  double m = 0;
  for (int i = 0; i < n; i++) {
    k[i] = exp(-0.5 * sqdist(u, g->U + i * g->d, g->d) / (g->ls * g->ls));
    m += k[i] * g->alpha[i];
  }
  /* v = L^-1 k */
  double var = 1.0;
  for (int i = 0; i < n; i++) {
    double v = k[i];
    for (int j = 0; j < i; j++) v -= g->L[i * n + j] * k[j];
    k[i] = v / g->L[i * n + i];
    var -= k[i] * k[i];
  }
  *mu = m;
  *sd = var > 1e-12 ? sqrt(var) : 1e-6;
}

void kp_bayes_next(const kp_space *s, const double *X, const double *y, int nobs, const double *P, int npend,
                   int maximize, uint64_t seed, long long idx, double *x, kp_bayes_info *info) {
  kp_bayes_info dummy;
  if (!info) info = &dummy;
  memset(info, 0, sizeof *info);
  int d = s->n;
  if (nobs < kp_bayes_n_init(d) || nobs < 2) {
    info->random = 1;
    kp_sample_random(s, seed, idx, x);
    return;
  }
  int n = nobs + npend;
  double *U = malloc((size_t)n * d * sizeof *U), *Y = malloc((size_t)n * sizeof *Y);
  double *L = malloc((size_t)n * n * sizeof *L), *alpha = malloc((size_t)n * sizeof *alpha);
  double *kbuf = malloc((size_t)n * sizeof *kbuf);
  if (!U || !Y || !L || !alpha || !kbuf) {
    free(U), free(Y), free(L), free(alpha), free(kbuf);
    info->random = 1;
    kp_sample_random(s, seed, idx, x);
    return;
  }
  /* standardised values, turned so that larger is better */
  double mean = 0, var = 0;
  for (int i = 0; i < nobs; i++) mean += (maximize ? y[i] : -y[i]);
  mean /= nobs;
  for (int i = 0; i < nobs; i++) {
    double v = (maximize ? y[i] : -y[i]) - mean;
    var += v * v;
  }
  double sdv = sqrt(var / nobs);
  if (!(sdv > 1e-12)) sdv = 1;
  double worst = INFINITY, best = -INFINITY;
  for (int i = 0; i < nobs; i++) {
    kp_space_to_unit(s, X + (size_t)i * d, U + (size_t)i * d);
    Y[i] = ((maximize ? y[i] : -y[i]) - mean) / sdv;
    if (Y[i] < worst) worst = Y[i];
    if (Y[i] > best) best = Y[i];
  }
  /* pending trials: "constant liar" with the worst value seen, so that
   * concurrent trials spread out instead of piling on one point */
  for (int i = 0; i < npend; i++) {
    kp_space_to_unit(s, P + (size_t)i * d, U + (size_t)(nobs + i) * d);
    Y[nobs + i] = worst;
  }
  /* hyperparameters: the (length scale, noise) pair of a small grid with the
   * largest log marginal likelihood */
  static const double lss[] = {0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.5};
  static const double noises[] = {1e-6, 1e-4, 1e-2, 1e-1};
  gp g = {.L = L, .alpha = alpha};
  double best_lml = -INFINITY, bls = 0.25, bnoise = 1e-2;
  double dscale = sqrt((double)d);
  for (size_t a = 0; a < sizeof lss / sizeof lss[0]; a++)
    for (size_t b = 0; b < sizeof noises / sizeof noises[0]; b++) {
      double lml = gp_fit(&g, U, Y, n, d, lss[a] * dscale, noises[b]);
      if (lml > best_lml) { best_lml = lml; bls = lss[a] * dscale; bnoise = noises[b]; }
    }
  if (gp_fit(&g, U, Y, n, d, bls, bnoise) == -INFINITY) gp_fit(&g, U, Y, n, d, bls, 1e-1);
  info->length_scale = bls;
  info->noise = bnoise;
  /* candidates: uniform in the unit cube (= samples of the prior) plus
   * gaussian steps around the best observed points */
  kp_rng r;
  kp_rng_seed(&r, seed ^ 0xBA7E5ull, (uint64_t)idx);
  enum { NRAND = 1500, NLOCAL = 1000, NTOP = 5 };
  int top[NTOP], ntop = 0;
  for (int t = 0; t < NTOP && t < nobs; t++) {
    int bi = -1;
    for (int i = 0; i < nobs; i++) {
      int used = 0;
      for (int q = 0; q < ntop; q++) used |= top[q] == i;
      if (!used && (bi < 0 || Y[i] > Y[bi])) bi = i;
    }
    top[ntop++] = bi;
  }
  double u[64], cu[64], cx[64], bestu_ei = -1;
  double xi = 0.01;
  for (int c = 0; c < NRAND + NLOCAL; c++) {
    if (c < NRAND) {
      for (int j = 0; j < d; j++) u[j] = kp_rng_uniform(&r);
    } else {
      const double *base = U + (size_t)top[(c - NRAND) % ntop] * d;
      double step = 0.02 + 0.15 * kp_rng_uniform(&r);
      for (int j = 0; j < d; j++) u[j] = clamp01(base[j] + step * kp_rng_normal(&r));
    }
    kp_space_from_unit(s, u, cx);
    kp_space_to_unit(s, cx, cu);
    double mu, sd;
    gp_predict(&g, cu, kbuf, &mu, &sd);
    double z = (mu - best - xi) / sd;
    double ei = (mu - best - xi) * norm_cdf(z) + sd * norm_pdf(z);
    if (ei > bestu_ei) {
      bestu_ei = ei;
      memcpy(x, cx, (size_t)d * sizeof *x);
    }
  }
  info->ei = bestu_ei;
  free(U), free(Y), free(L), free(alpha), free(kbuf);
}

/* ---- early termination ---------------------------------------------------------------- */
int kp_policy_applies(const kp_policy *p, int k) {
  if (p->type == KP_POLICY_NONE || k < 1) return 0;
  return k % p->evaluation_interval == 0 && k >= p->delay_evaluation;
}

static int better(int maximize, double a, double b) { return maximize ? a > b : a < b; }

static double best_upto(int maximize, const kp_curve *c, int k) {
  double b = NAN;
  for (int i = 0; i < k && i < c->n; i++)
    if (isnan(b) || better(maximize, c->v[i], b)) b = c->v[i];
  return b;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int kp_policy_check(const kp_policy *p, int maximize, const kp_curve *all, int nall, int self, int k, char *why,
                    size_t whyn) {
  if (!kp_policy_applies(p, k) || self < 0 || self >= nall || all[self].n < k) return 0;
  const char *worse = maximize ? "<" : ">";
  if (p->type == KP_POLICY_BANDIT) {
    double B = NAN;
    for (int j = 0; j < nall; j++) {
      double b = best_upto(maximize, &all[j], k);
      if (!isnan(b) && (isnan(B) || better(maximize, b, B))) B = b;
    }
    double Y = best_upto(maximize, &all[self], k), lim;
    char rule[160];
    if (p->use_amount) {
      lim = maximize ? B - p->slack : B + p->slack;
      snprintf(rule, sizeof rule, "%.6g %s %.6g", B, maximize ? "-" : "+", p->slack);
    } else {
      lim = maximize ? B / (1 + p->slack) : B * (1 + p->slack);
      snprintf(rule, sizeof rule, maximize ? "%.6g / (1 + %.6g)" : "%.6g * (1 + %.6g)", B, p->slack);
    }
    if (maximize ? Y < lim : Y > lim) {
      snprintf(why, whyn, "bandit policy at interval %d: best value %.6g %s %s = %.6g (the best value of any run by interval %d is %.6g; slack_%s %.6g)",
               k, Y, worse, rule, lim, k, B, p->use_amount ? "amount" : "factor", p->slack);
      return 1;
    }
    return 0;
  }
  if (p->type == KP_POLICY_MEDIAN) {
    double *avg = malloc((size_t)nall * sizeof *avg);
    if (!avg) return 0;
    int m = 0;
    for (int j = 0; j < nall; j++) {
      if (all[j].n < k) continue;
      double s = 0;
      for (int i = 0; i < k; i++) s += all[j].v[i];
      avg[m++] = s / k;
    }
    qsort(avg, (size_t)m, sizeof *avg, cmp_double);
    double med = m % 2 ? avg[m / 2] : 0.5 * (avg[m / 2 - 1] + avg[m / 2]);
    free(avg);
    double Y = best_upto(maximize, &all[self], k);
    if (better(maximize, med, Y)) {
      snprintf(why, whyn, "median stopping policy at interval %d: best value %.6g %s %.6g, the median of the running "
               "averages over intervals 1..%d of the %d runs that reached it", k, Y, worse, med, k, m);
      return 1;
    }
    return 0;
  }
  if (p->type == KP_POLICY_TRUNCATION) {
    int m = 0, ahead = 0;
    double Y = all[self].v[k - 1];
    for (int j = 0; j < nall; j++) {
      if (all[j].n < k) continue;
      m++;
      if (better(maximize, all[j].v[k - 1], Y)) ahead++;
    }
    int cut = (int)floor(m * p->truncation / 100.0 + 1e-9);
    if (cut > 0 && ahead >= m - cut) {
      snprintf(why, whyn, "truncation selection policy at interval %d: value %.6g ranks %d of the %d runs that reached "
               "interval %d, in the worst %g%% (the worst %d)", k, Y, ahead + 1, m, k, p->truncation, cut);
      return 1;
    }
    return 0;
  }
  return 0;
}

/* ---- the sweep file ----------------------------------------------------------------------- */
static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* Checks that object 'o' (named 'what') has only the fields in 'known'. */
static int only_fields(const cJSON *o, const char *what, const char *const *known, char *err, size_t errn) {
  const cJSON *it;
  cJSON_ArrayForEach(it, o) {
    int ok = 0;
    for (const char *const *k = known; *k; k++) ok |= !strcmp(*k, it->string);
    if (!ok) {
      char list[512] = "";
      for (const char *const *k = known; *k; k++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", *k);
      }
      return seterr(err, errn, "%s%sunknown field '%s' (the fields are %s)", what, *what ? ": " : "", it->string, list);
    }
  }
  return 0;
}

static int get_string(const cJSON *o, const char *k, const char *what, int required, char **out, char *err, size_t errn) {
  const cJSON *v = get(o, k);
  if (!v) {
    if (required) return seterr(err, errn, "missing field '%s%s'", what, k);
    return 0;
  }
  if (!cJSON_IsString(v) || !*v->valuestring) return seterr(err, errn, "field '%s%s' must be a non-empty string", what, k);
  *out = xstrdup(v->valuestring);
  return *out ? 0 : seterr(err, errn, "out of memory");
}

/* A number field: -1 error, 0 absent, 1 present. */
static int get_number(const cJSON *o, const char *k, const char *what, double lo, double hi, int integer, double *out,
                      char *err, size_t errn) {
  const cJSON *v = get(o, k);
  if (!v) return 0;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi ||
      (integer && v->valuedouble != floor(v->valuedouble)))
    return seterr(err, errn, "field '%s%s' must be %s from %g to %g", what, k, integer ? "an integer" : "a number", lo, hi);
  *out = v->valuedouble;
  return 1;
}

int kp_sweep_spec_parse(const char *text, kp_sweep_spec *s, char *err, size_t errn) {
  memset(s, 0, sizeof *s);
  s->cancel_grace_seconds = 10;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return seterr(err, errn, "not a JSON object (parse error near byte %ld)", end ? (long)(end - text) : 0L);
  }
  int rc = -1;
  static const char *const top[] = {"experiment", "run", "sampling", "primary_metric", "policy", "max_total_runs",
                                    "max_concurrent_runs", "max_duration_minutes", "cancel_grace_seconds",
                                    "warm_start", "description", NULL};
  static const char *const runf[] = {"source", "entry", "compute", "arguments", "environment", "nodes",
                                     "processes_per_node", "mpirun", "memory", "cpus", NULL};
  static const char *const samplf[] = {"type", "seed", "space", NULL};
  static const char *const metricf[] = {"name", "goal", NULL};
  static const char *const polf[] = {"type", "evaluation_interval", "delay_evaluation", "slack_factor", "slack_amount",
                                     "truncation_percentage", NULL};
  if (only_fields(j, "", top, err, errn) != 0) goto out;
  if (get_string(j, "experiment", "", 1, &s->experiment, err, errn) != 0) goto out;
  const cJSON *run = get(j, "run");
  if (!cJSON_IsObject(run)) { seterr(err, errn, "missing field 'run' (an object with source, entry, compute, arguments)"); goto out; }
  if (only_fields(run, "run", runf, err, errn) != 0) goto out;
  if (get_string(run, "source", "run.", 0, &s->source, err, errn) != 0 ||
      get_string(run, "entry", "run.", 1, &s->entry, err, errn) != 0 ||
      get_string(run, "compute", "run.", 0, &s->compute, err, errn) != 0 ||
      get_string(run, "environment", "run.", 0, &s->environment, err, errn) != 0 ||
      get_string(run, "mpirun", "run.", 0, &s->mpirun, err, errn) != 0)
    goto out;
  {
    /* distributed children: nodes x processes_per_node ranks (docs/PLATFORM.md) */
    double nodes = 0, ppn = 0;
    if (get_number(run, "nodes", "run.", 1, 1024, 1, &nodes, err, errn) < 0 ||
        get_number(run, "processes_per_node", "run.", 1, 1024, 1, &ppn, err, errn) < 0)
      goto out;
    s->nodes = (int)nodes;
    s->processes_per_node = (int)ppn;
    if (s->mpirun && !s->nodes && !s->processes_per_node) {
      seterr(err, errn, "field 'run.mpirun' is for distributed children: give run.nodes and/or run.processes_per_node too");
      goto out;
    }
  }
  {
    /* each child's limits (run submit --memory / --cpus): "512M", 1 */
    const cJSON *mem = get(run, "memory"), *cpus = get(run, "cpus");
    char why[256], txt[64];
    if (mem && (!cJSON_IsString(mem) || kp_limit_memory_parse(mem->valuestring, &s->memory_limit, why, sizeof why) != 0)) {
      seterr(err, errn, "field 'run.memory' %s", cJSON_IsString(mem) ? why : "must be a text such as \"512M\" or \"2G\"");
      goto out;
    }
    if (cpus && cJSON_IsNumber(cpus)) snprintf(txt, sizeof txt, "%.17g", cpus->valuedouble);
    if (cpus && (!cJSON_IsNumber(cpus) || kp_limit_cpus_parse(txt, &s->cpus, why, sizeof why) != 0)) {
      seterr(err, errn, "field 'run.cpus' %s", cJSON_IsNumber(cpus) ? why : "must be a number such as 1 or 0.5");
      goto out;
    }
  }
  const cJSON *args = get(run, "arguments");
  if (args) {
    if (!cJSON_IsArray(args)) { seterr(err, errn, "field 'run.arguments' must be an array of strings or numbers"); goto out; }
    s->args = calloc((size_t)cJSON_GetArraySize(args) + 1, sizeof *s->args);
    const cJSON *a;
    cJSON_ArrayForEach(a, args) {
      char buf[64];
      if (cJSON_IsString(a)) s->args[s->nargs++] = xstrdup(a->valuestring);
      else if (cJSON_IsNumber(a)) { fmt_num(a->valuedouble, buf, sizeof buf); s->args[s->nargs++] = xstrdup(buf); }
      else { seterr(err, errn, "field 'run.arguments': item %d is not a string or a number", s->nargs + 1); goto out; }
    }
  }
  const cJSON *samp = get(j, "sampling");
  if (!cJSON_IsObject(samp)) { seterr(err, errn, "missing field 'sampling' (an object with type and space)"); goto out; }
  if (only_fields(samp, "sampling", samplf, err, errn) != 0) goto out;
  const char *ty = cJSON_GetStringValue(get(samp, "type"));
  if (!ty) { seterr(err, errn, "missing field 'sampling.type' (grid, random or bayesian)"); goto out; }
  s->sampling = -1;
  for (int i = 0; i < 3; i++)
    if (!strcmp(ty, kp_sampling_names[i])) s->sampling = i;
  if (s->sampling < 0) { seterr(err, errn, "field 'sampling.type': unknown sampling '%s' (grid, random or bayesian)", ty); goto out; }
  double seed = 0;
  int hs = get_number(samp, "seed", "sampling.", 0, 9007199254740991.0, 1, &seed, err, errn);
  if (hs < 0) goto out;
  s->has_seed = hs;
  s->seed = (uint64_t)seed;
  if (kp_space_parse(get(samp, "space"), &s->space, err, errn) != 0) goto out;
  if (s->sampling == KP_SAMPLING_GRID)
    for (int i = 0; i < s->space.n; i++)
      if (s->space.p[i].kind != KP_X_CHOICE) {
        seterr(err, errn, "sampling.space.%s: grid sampling takes only choice expressions, not %s", s->space.p[i].name,
               kp_expr_names[s->space.p[i].kind]);
        goto out;
      }
  const cJSON *pm = get(j, "primary_metric");
  if (!cJSON_IsObject(pm)) { seterr(err, errn, "missing field 'primary_metric' (an object with name and goal)"); goto out; }
  if (only_fields(pm, "primary_metric", metricf, err, errn) != 0) goto out;
  if (get_string(pm, "name", "primary_metric.", 1, &s->metric, err, errn) != 0) goto out;
  const char *goal = cJSON_GetStringValue(get(pm, "goal"));
  if (!goal) { seterr(err, errn, "missing field 'primary_metric.goal' (maximize or minimize)"); goto out; }
  if (!strcmp(goal, "maximize")) s->maximize = 1;
  else if (!strcmp(goal, "minimize")) s->maximize = 0;
  else { seterr(err, errn, "field 'primary_metric.goal': unknown goal '%s' (maximize or minimize)", goal); goto out; }
  s->policy.type = KP_POLICY_NONE;
  s->policy.evaluation_interval = 1;
  const cJSON *pol = get(j, "policy");
  if (pol && !cJSON_IsNull(pol)) {
    if (!cJSON_IsObject(pol)) { seterr(err, errn, "field 'policy' must be an object with a type"); goto out; }
    if (only_fields(pol, "policy", polf, err, errn) != 0) goto out;
    const char *pt = cJSON_GetStringValue(get(pol, "type"));
    if (!pt) { seterr(err, errn, "missing field 'policy.type' (bandit, median, truncation or none)"); goto out; }
    s->policy.type = -1;
    for (int i = 0; i < 4; i++)
      if (!strcmp(pt, kp_policy_names[i])) s->policy.type = i;
    if (s->policy.type < 0) {
      seterr(err, errn, "field 'policy.type': unknown policy '%s' (bandit, median, truncation or none)", pt);
      goto out;
    }
    double v;
    int r;
    if ((r = get_number(pol, "evaluation_interval", "policy.", 1, 1e9, 1, &v, err, errn)) < 0) goto out;
    if (r) s->policy.evaluation_interval = (int)v;
    if ((r = get_number(pol, "delay_evaluation", "policy.", 0, 1e9, 1, &v, err, errn)) < 0) goto out;
    if (r) s->policy.delay_evaluation = (int)v;
    double f = 0, a = 0;
    int hf = get_number(pol, "slack_factor", "policy.", 0, 1e300, 0, &f, err, errn);
    if (hf < 0) goto out;
    int ha = get_number(pol, "slack_amount", "policy.", 0, 1e300, 0, &a, err, errn);
    if (ha < 0) goto out;
    double tp = 0;
    int ht = get_number(pol, "truncation_percentage", "policy.", 1, 99, 1, &tp, err, errn);
    if (ht < 0) goto out;
    if (s->policy.type == KP_POLICY_BANDIT) {
      if (hf == ha) {
        seterr(err, errn, "policy: the bandit policy needs exactly one of 'policy.slack_factor' and 'policy.slack_amount'");
        goto out;
      }
      s->policy.use_amount = ha;
      s->policy.slack = ha ? a : f;
    } else if (hf || ha) {
      seterr(err, errn, "policy: '%s' belongs to the bandit policy, not to %s", hf ? "slack_factor" : "slack_amount", pt);
      goto out;
    }
    if (s->policy.type == KP_POLICY_TRUNCATION) {
      if (!ht) { seterr(err, errn, "missing field 'policy.truncation_percentage' (1 to 99) of the truncation policy"); goto out; }
      s->policy.truncation = tp;
    } else if (ht) {
      seterr(err, errn, "policy: 'truncation_percentage' belongs to the truncation policy, not to %s", pt);
      goto out;
    }
  }
  double v;
  int r;
  if ((r = get_number(j, "max_total_runs", "", 1, 1e6, 1, &v, err, errn)) < 0) goto out;
  s->max_total_runs = r ? (long long)v : 0;
  if (!r && s->sampling != KP_SAMPLING_GRID) {
    seterr(err, errn, "missing field 'max_total_runs' (%s sampling needs a budget)", kp_sampling_names[s->sampling]);
    goto out;
  }
  if ((r = get_number(j, "max_concurrent_runs", "", 1, 1000, 1, &v, err, errn)) < 0) goto out;
  s->max_concurrent_runs = r ? (int)v : 0;
  if ((r = get_number(j, "max_duration_minutes", "", 1e-3, 1e7, 0, &v, err, errn)) < 0) goto out;
  s->max_duration_minutes = r ? v : 0;
  if ((r = get_number(j, "cancel_grace_seconds", "", 0, 3600, 0, &v, err, errn)) < 0) goto out;
  if (r) s->cancel_grace_seconds = v;
  const cJSON *ws = get(j, "warm_start");
  if (ws) {
    if (!cJSON_IsArray(ws)) { seterr(err, errn, "field 'warm_start' must be an array of sweep ids"); goto out; }
    s->warm_start = calloc((size_t)cJSON_GetArraySize(ws) + 1, sizeof *s->warm_start);
    const cJSON *a;
    cJSON_ArrayForEach(a, ws) {
      if (!cJSON_IsString(a) || !*a->valuestring) { seterr(err, errn, "field 'warm_start': item %d is not a sweep id", s->nwarm + 1); goto out; }
      s->warm_start[s->nwarm++] = xstrdup(a->valuestring);
    }
  }
  const cJSON *desc = get(j, "description");
  if (desc && !cJSON_IsString(desc)) { seterr(err, errn, "field 'description' must be a string"); goto out; }
  rc = 0;
out:
  cJSON_Delete(j);
  return rc;
}

void kp_sweep_spec_free(kp_sweep_spec *s) {
  free(s->experiment), free(s->source), free(s->entry), free(s->compute), free(s->environment), free(s->metric);
  free(s->mpirun);
  for (int i = 0; i < s->nargs; i++) free(s->args[i]);
  free(s->args);
  for (int i = 0; i < s->nwarm; i++) free(s->warm_start[i]);
  free(s->warm_start);
  kp_space_free(&s->space);
  memset(s, 0, sizeof *s);
}

long long kp_sweep_budget(const kp_sweep_spec *sp) {
  if (sp->sampling == KP_SAMPLING_GRID) {
    long long g = kp_space_grid_size(&sp->space);
    return sp->max_total_runs && sp->max_total_runs < g ? sp->max_total_runs : g;
  }
  if (sp->sampling == KP_SAMPLING_RANDOM) {
    long long f = kp_space_finite_size(&sp->space);
    if (f > 0 && f < sp->max_total_runs) return f;
  }
  return sp->max_total_runs;
}

int kp_sweep_concurrency(const kp_sweep_spec *sp) {
  long long b = kp_sweep_budget(sp);
  if (sp->max_concurrent_runs) return sp->max_concurrent_runs;
  return b > 1000 ? 1000 : (int)(b < 1 ? 1 : b);
}
