/*
 * platform/service_json.c — the scoring server's number conversions, kept
 * apart (pure C, libc only) so a test can compare them with libc over
 * millions of values (tests/platform/test_service_numbers.sh):
 *
 *   kp_json_f32  a JSON number -> float32, always the bits of
 *                (float)strtod(text): what the cJSON path gives
 *   kp_fmt_g7    a double -> the text of printf's "%.7g"
 *
 * Both were a third of the server's CPU time per single-sample request
 * (perf: glibc's strtod for the 17-digit numbers Python writes, vfprintf
 * for the answer's probabilities). Each takes a fast route whose error is
 * bounded and checks that the bound cannot change the result; where it
 * could (about one value in ten million), it asks libc.
 */
#include "service.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P10_MIN (-64)
#define P10_MAX 40
/* 10^k rounded to the nearest double (the compiler converts the literals) */
static const double p10[] = {
  1e-64, 1e-63, 1e-62, 1e-61, 1e-60, 1e-59, 1e-58, 1e-57, 1e-56, 1e-55, 1e-54, 1e-53, 1e-52, 1e-51,
  1e-50, 1e-49, 1e-48, 1e-47, 1e-46, 1e-45, 1e-44, 1e-43, 1e-42, 1e-41, 1e-40, 1e-39, 1e-38, 1e-37,
  1e-36, 1e-35, 1e-34, 1e-33, 1e-32, 1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23,
  1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9,
  1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
  1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25,
  1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40
};
static double pow10d(int k) { return p10[k - P10_MIN]; }

static int is_digit(char c) { return (unsigned)(c - '0') <= 9; }

/* 8 bytes of text, the first in the low byte (one load on x86-64) */
static uint64_t load8(const char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* v: 8 bytes of text from load8. All 8 are '0'..'9' iff every byte is 0x30..0x39: high nibble 3, and
 * adding 6 to the low nibble does not carry into it. */
static int digits8(uint64_t v) {
  const uint64_t hi = 0xf0f0f0f0f0f0f0f0u, three = 0x3030303030303030u;
  return (v & hi) == three && ((v + 0x0606060606060606u) & hi) == three;
}

/* the number written by 8 digit bytes: adjacent lanes merged three times
 * (pairs of digits into 16-bit lanes, pairs of those into 32-bit, then the
 * two halves); each lane's value stays below its width, so no carries */
static uint64_t value8(uint64_t v) {
  v -= 0x3030303030303030u;
  v = (v * 10 + (v >> 8)) & 0x00ff00ff00ff00ffu;
  v = (v * 100 + (v >> 16)) & 0x0000ffff0000ffffu;
  return (v * 10000 + (v >> 32)) & 0xffffffffu;
}

/* inlined into kp_json_rows's loop (a call per number was a tenth of a
 * single-sample request's CPU time) */
static inline const char *json_f32(const char *p, const char *e, float *out) {
  /* "0.0": two thirds of an MNIST image's pixels */
  if (e - p >= 4 && p[0] == '0' && p[1] == '.' && p[2] == '0' && !is_digit(p[3]) && (p[3] | 0x20) != 'e') {
    *out = 0.0f;
    return p + 3;
  }
  const char *s = p;
  int neg = 0;
  if (p < e && *p == '-') { neg = 1; p++; }
  if (p >= e || !is_digit(*p)) return NULL;
  /* m: the first 19 significant digits (m < 10^18 takes one more digit;
   * < 10^19 fits in 64 bits); the digits after them only move exp10 */
  uint64_t m = 0;
  int exp10 = 0;
  if (*p == '0') p++;
  else
    for (; p < e && is_digit(*p); p++) {
      if (m < 1000000000000000000u) m = m * 10 + (uint64_t)(*p - '0');
      else exp10++;
    }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !is_digit(*p)) return NULL;
    /* 8 digits at a time while m has room for them (< 10^11): the digit
     * loop is a chain of dependent multiply-adds, a third of a request's
     * CPU time with the 17-digit fractions Python writes */
    while (m < 100000000000u && e - p >= 8) {
      uint64_t v = load8(p);
      if (!digits8(v)) break;
      m = m * 100000000u + value8(v);
      exp10 -= 8;
      p += 8;
    }
    for (; p < e && is_digit(*p); p++)
      if (m < 1000000000000000000u) { m = m * 10 + (uint64_t)(*p - '0'); exp10--; }
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = 0, ev = 0;
    if (p < e && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= e || !is_digit(*p)) return NULL;
    for (; p < e && is_digit(*p); p++)
      if (ev < 100000) ev = ev * 10 + (*p - '0');
    exp10 += eneg ? -ev : ev;
  }
  /* (the digits dropped after the 19th move the value by < 1e-18
   * relative: inside the bound below) */
  if (m == 0) { *out = neg ? -0.0f : 0.0f; return p; }
  if (exp10 >= P10_MIN && exp10 <= P10_MAX) {
    /* d = m * 10^exp10 with three roundings (m to double, the power, the
     * product): within 3 units in the last place (ulp) of the exact
     * decimal, so within 4 ulps of strtod's correctly rounded double D.
     * (float)D and (float)d differ only if a float32 rounding midpoint lies
     * between them; in a normal float32's range the midpoints are the
     * doubles whose low 29 mantissa bits are 1 followed by 28 zeros, so
     * d more than 16 ulps away from one gives strtod's float. */
    double d = (double)m * pow10d(exp10);
    if (d > 0x1p-125 && d < 0x1p127) {
      uint64_t bits;
      memcpy(&bits, &d, sizeof bits);
      uint32_t low = (uint32_t)(bits & 0x1fffffffu);
      if (low - (0x10000000u - 16u) > 32u) {
        float f = (float)d;
        *out = neg ? -f : f;
        return p;
      }
    }
  }
  char buf[96];
  size_t l = (size_t)(p - s);
  if (l >= sizeof buf) {
    char *heap = malloc(l + 1);
    if (!heap) return NULL;
    memcpy(heap, s, l);
    heap[l] = '\0';
    *out = (float)strtod(heap, NULL);
    free(heap);
    return p;
  }
  memcpy(buf, s, l);
  buf[l] = '\0';
  *out = (float)strtod(buf, NULL);
  return p;
}

const char *kp_json_f32(const char *p, const char *e, float *out) { return json_f32(p, e, out); }

/* The scoring server's fast path: exactly {"data": [[n, ...], ...]} (any
 * JSON whitespace), every row 'width' finite float32 numbers. Anything
 * else returns -1 (the server then takes the cJSON path). */
static const char *skip_ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

int kp_json_rows(const char *s, size_t len, int64_t width, float **xo, int64_t *no) {
  const char *p = s, *e = s + len;
  p = skip_ws(p, e);
  if (p >= e || *p++ != '{') return -1;
  p = skip_ws(p, e);
  if (e - p < 6 || memcmp(p, "\"data\"", 6) != 0) return -1;
  p = skip_ws(p + 6, e);
  if (p >= e || *p++ != ':') return -1;
  p = skip_ws(p, e);
  if (p >= e || *p++ != '[') return -1;
  size_t cap = 1, n = 0;  /* most requests hold one sample: no larger block to fetch from malloc */
  float *x = malloc(cap * (size_t)width * sizeof *x);
  if (!x) return -1;
  for (;;) {
    p = skip_ws(p, e);
    if (p >= e || *p++ != '[') goto bad;
    if (n == cap) {
      cap *= 2;
      float *nx = realloc(x, cap * (size_t)width * sizeof *nx);
      if (!nx) goto bad;
      x = nx;
    }
    float *row = x + n * (size_t)width;
    for (int64_t k = 0;; k++) {
      p = skip_ws(p, e);
      float f;
      if (k >= width || !(p = json_f32(p, e, &f))) goto bad;
      if (!isfinite(f)) goto bad;
      row[k] = f;
      p = skip_ws(p, e);
      if (p < e && *p == ',') { p++; continue; }
      if (p < e && *p == ']' && k == width - 1) { p++; break; }
      goto bad;
    }
    n++;
    p = skip_ws(p, e);
    if (p < e && *p == ',') { p++; continue; }
    if (p < e && *p == ']') { p++; break; }
    goto bad;
  }
  p = skip_ws(p, e);
  if (p >= e || *p++ != '}') goto bad;
  p = skip_ws(p, e);
  if (p != e) goto bad;
  *xo = x;
  *no = (int64_t)n;
  return 0;
bad:
  free(x);
  return -1;
}


size_t kp_fmt_g7(char *out, double v) {
  /* outside (1e-30, 1e15) (zero, negatives, NaN included) printf does it */
  if (!(v > 1e-30 && v < 1e15)) return (size_t)snprintf(out, KP_FMT_G7_MAX, "%.7g", v);
  int b2;
  frexp(v, &b2);
  int e = (int)floor((b2 - 1) * 0.30102999566398120);  /* log10(2): e or e - 1 */
  if (v >= pow10d(e + 1)) e++;
  if (v < pow10d(e)) e--;
  /* 7 significant digits: q = v * 10^(6-e) rounded, about 2 ulps off the
   * exact product, i.e. 4e-9 at most below 10^7. printf rounds the exact
   * value (ties to even); a fraction within 1e-6 of one half could round
   * the other way, so printf decides those. */
  double sc = v * pow10d(6 - e);
  double fl = floor(sc), fr = sc - fl;
  if (fabs(fr - 0.5) < 1e-6) return (size_t)snprintf(out, KP_FMT_G7_MAX, "%.7g", v);
  uint32_t q = (uint32_t)fl + (fr > 0.5);
  if (q == 10000000u) { q = 1000000u; e++; }  /* 9.9999996 -> 10.00000 */
  else if (q > 10000000u || q < 1000000u) return (size_t)snprintf(out, KP_FMT_G7_MAX, "%.7g", v);  /* not expected */
  char dg[7];
  for (int i = 6; i >= 0; i--) { dg[i] = (char)('0' + q % 10); q /= 10; }
  int nd = 7;
  while (nd > 1 && dg[nd - 1] == '0') nd--;  /* %g drops trailing zeros */
  char *o = out;
  if (e < -4 || e >= 7) {
    *o++ = dg[0];
    if (nd > 1) { *o++ = '.'; memcpy(o, dg + 1, (size_t)nd - 1); o += nd - 1; }
    *o++ = 'e';
    *o++ = e < 0 ? '-' : '+';
    int ae = e < 0 ? -e : e;
    if (ae >= 100) *o++ = (char)('0' + ae / 100);
    *o++ = (char)('0' + ae / 10 % 10);
    *o++ = (char)('0' + ae % 10);
  } else if (e >= 0) {
    memcpy(o, dg, (size_t)e + 1);
    o += e + 1;
    if (nd > e + 1) { *o++ = '.'; memcpy(o, dg + e + 1, (size_t)(nd - e - 1)); o += nd - e - 1; }
  } else {
    *o++ = '0';
    *o++ = '.';
    for (int i = 0; i < -e - 1; i++) *o++ = '0';
    memcpy(o, dg, (size_t)nd);
    o += nd;
  }
  *o = '\0';
  return (size_t)(o - out);
}

/* ---- strict JSON (RFC 8259) without a tree --------------------------------------------
 * The general path of the scoring server: any body that is not exactly the
 * fast path's shape. cJSON accepted what is not JSON (01, 1., control bytes
 * in strings) and built a node of about 80 bytes per value before the shape
 * could be checked (a 16 MB body of zeros cost 650 MB); this validates the
 * whole body without allocating, then walks "data" twice: once to check its
 * shape against the model's width, once to convert exactly n x width
 * numbers into the one array it allocates. */
#define JSON_MAX_DEPTH 512

static const char *json_string(const char *p, const char *e) {
  /* p after the opening quote; returns p after the closing one, or NULL */
  while (p < e) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') return p + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      if (++p >= e) return NULL;
      switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': p++; break;
        case 'u':
          if (e - p < 5) return NULL;
          for (int i = 1; i <= 4; i++)
            if (!((p[i] >= '0' && p[i] <= '9') || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f'))) return NULL;
          p += 5;
          break;
        default: return NULL;
      }
      continue;
    }
    if (c < 0x80) { p++; continue; }
    /* UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF */
    int k;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) k = 1;
    else if (c >= 0xe0 && c <= 0xef) { k = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { k = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
    else return NULL;
    if (e - p <= k) return NULL;
    if ((unsigned char)p[1] < lo || (unsigned char)p[1] > hi) return NULL;
    for (int i = 2; i <= k; i++)
      if (((unsigned char)p[i] & 0xc0) != 0x80) return NULL;
    p += k + 1;
  }
  return NULL;
}

/* a number in JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static const char *json_number(const char *p, const char *e) {
  if (p < e && *p == '-') p++;
  if (p >= e || !is_digit(*p)) return NULL;
  if (*p == '0') p++;
  else
    while (p < e && is_digit(*p)) p++;
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !is_digit(*p)) return NULL;
    while (p < e && is_digit(*p)) p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || !is_digit(*p)) return NULL;
    while (p < e && is_digit(*p)) p++;
  }
  return p;
}

/* Validates one value at p (after whitespace); returns the end of it or
 * NULL (*bad: where). With data_at, the value of the top-level object's
 * first member "data" is reported there (NULL if none). */
static const char *json_value(const char *p, const char *e, const char **bad, const char **data_at) {
  unsigned char stack[JSON_MAX_DEPTH];  /* '{' or '[' */
  int depth = 0;
  if (data_at) *data_at = NULL;
  for (;;) {
    /* a value */
    p = skip_ws(p, e);
    if (p >= e) goto fail;
    const char *q = NULL;
    switch (*p) {
      case '{':
      case '[':
        if (depth == JSON_MAX_DEPTH) goto fail;
        stack[depth++] = (unsigned char)*p;
        p = skip_ws(p + 1, e);
        if (p < e && *p == (stack[depth - 1] == '{' ? '}' : ']')) { p++; depth--; goto after; }
        if (stack[depth - 1] == '[') continue;
        goto key;
      case '"': q = json_string(p + 1, e); break;
      case 't': q = e - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL; break;
      case 'f': q = e - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL; break;
      case 'n': q = e - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL; break;
      default: q = json_number(p, e); break;
    }
    if (!q) goto fail;
    p = q;
  after:
    /* after a value: a separator, the end of containers, or the end */
    for (;;) {
      if (depth == 0) return p;
      p = skip_ws(p, e);
      if (p >= e) goto fail;
      char close = stack[depth - 1] == '{' ? '}' : ']';
      if (*p == close) { p++; depth--; continue; }
      if (*p != ',') goto fail;
      p = skip_ws(p + 1, e);
      if (stack[depth - 1] == '[') break;
      goto key;
    }
    continue;
  key:
    /* p at an object's key */
    if (p >= e || *p != '"') goto fail;
    q = json_string(p + 1, e);
    if (!q) goto fail;
    int is_data = depth == 1 && q - p == 6 && !memcmp(p, "\"data\"", 6);
    p = skip_ws(q, e);
    if (p >= e || *p != ':') goto fail;
    p = skip_ws(p + 1, e);
    if (is_data && data_at && !*data_at) *data_at = p;
  }
fail:
  *bad = p < e ? p : e;
  return NULL;
}

int kp_json_valid(const char *s, size_t len, size_t *at) {
  const char *e = s + len, *bad = s;
  const char *p = json_value(s, e, &bad, NULL);
  if (p) p = skip_ws(p, e);
  if (p == e) return 0;
  *at = (size_t)((p ? p : bad) - s);
  return -1;
}

/* skips a valid value (after json_value checked the whole document) */
static const char *skip_value(const char *p, const char *e) {
  const char *bad;
  return json_value(p, e, &bad, NULL);
}

int kp_json_data(const char *s, size_t len, int64_t width, float **xo, int64_t *no, kp_json_err *err) {
  const char *e = s + len, *bad = s, *data = NULL;
  memset(err, 0, sizeof *err);
  const char *p = skip_ws(s, e);
  int obj = p < e && *p == '{';
  p = json_value(s, e, &bad, &data);
  if (p) p = skip_ws(p, e);
  if (p != e) {
    err->kind = KP_JE_MALFORMED;
    err->at = (size_t)((p ? p : bad) - s);
    return -1;
  }
  if (!obj || !data || *data != '[') { err->kind = KP_JE_NO_DATA; return -1; }
  /* the shape, in document order, without allocating */
  int64_t n = 0;
  p = skip_ws(data + 1, e);
  if (*p != ']')
    for (;; n++) {
      err->input = n;
      if (*p != '[') { err->kind = KP_JE_ROW; return -1; }
      int64_t k = 0;
      p = skip_ws(p + 1, e);
      if (*p != ']')
        for (;; k++) {
          if (k < width && !(*p == '-' || is_digit(*p))) { err->kind = KP_JE_NOT_NUMBER; err->value = k; return -1; }
          p = skip_ws(skip_value(p, e), e);
          if (*p == ']') { k++; break; }
          p = skip_ws(p + 1, e);  /* ',' */
        }
      p = skip_ws(p + 1, e);
      if (k != width) { err->kind = KP_JE_COUNT; err->got = k; return -1; }
      if (*p == ']') { n++; break; }
      p = skip_ws(p + 1, e);
    }
  if (n == 0) { err->kind = KP_JE_EMPTY; return -1; }
  float *x = malloc((size_t)n * (size_t)width * sizeof *x);
  if (!x) { err->kind = KP_JE_NOMEM; err->input = n; return -1; }
  p = skip_ws(data + 1, e);
  for (int64_t i = 0; i < n; i++) {
    p = skip_ws(p + 1, e);  /* '[' */
    for (int64_t k = 0; k < width; k++) {
      float f;
      p = json_f32(p, e, &f);
      if (!p || !isfinite(f)) {
        free(x);
        err->kind = p ? KP_JE_NONFINITE : KP_JE_NOMEM;
        err->input = i;
        err->value = k;
        return -1;
      }
      x[i * width + k] = f;
      p = skip_ws(skip_ws(p, e) + 1, e);  /* past the ',' or the row's ']' */
    }
    /* p at the ',' or ']' after the row */
    p = skip_ws(p + 1, e);  /* past the ',' between rows: at the next '[' */
  }
  *xo = x;
  *no = n;
  return 0;
}
