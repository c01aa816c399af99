#!/usr/bin/env bash
# platform_service_numbers: the scoring server's own number conversions
# (platform/service_json.c) against libc, which they replace on the request
# path: kp_json_f32 must give the bits of (float)strtod for every number
# (random float32 values written with 6 to 20 digits, in plain and
# exponent form, long mantissas, exact float32 rounding midpoints and their
# neighbours, tiny and huge values, zeros), and kp_fmt_g7 the bytes of
# printf's "%.7g" (random doubles over 1e-35..1e18, probabilities, values
# next to powers of ten and to rounding ties); kp_json_rows reads the fast
# path's bodies and refuses the others. Compiled here with the test's
# sanitizer flags.
. "$(dirname "$0")/lib.sh"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
command -v cc >/dev/null || { echo "skip: no compiler"; exit 77; }
cat > "$T/check.c" <<'EOF'
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
const char *kp_json_f32(const char *p, const char *e, float *out);
size_t kp_fmt_g7(char *out, double v);
int kp_json_rows(const char *s, size_t len, int64_t width, float **x, int64_t *n);

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static double unif(void) { return (double)(rnd() >> 11) * 0x1p-53; }
static long bad_parse, bad_fmt, n_parse, n_fmt, bad_rows;

/* kp_json_rows: 'want' rows, or -1 for a body the fast path must refuse */
static void check_rows(const char *body, int64_t width, int64_t want, const float *vals) {
  float *x = NULL;
  int64_t n = -1;
  int rc = kp_json_rows(body, strlen(body), width, &x, &n);
  int ok = want < 0 ? rc == -1 : rc == 0 && n == want && memcmp(x, vals, (size_t)(n * width) * sizeof *x) == 0;
  if (!ok && bad_rows++ < 10) printf("rows %s (width %lld): rc %d, n %lld\n", body, (long long)width, rc, (long long)n);
  if (rc == 0) free(x);
}

static void check_parse(const char *s) {
  float got, want = (float)strtod(s, NULL);
  size_t l = strlen(s);
  const char *end = kp_json_f32(s, s + l, &got);
  n_parse++;
  if (end != s + l || memcmp(&got, &want, sizeof got) != 0) {
    if (bad_parse++ < 10) printf("parse %s: got %a (end %+td), want %a\n", s, got, end ? end - (s + l) : -999, want);
  }
}
static void check_fmt(double v) {
  char got[64], want[64];
  kp_fmt_g7(got, v);
  snprintf(want, sizeof want, "%.7g", v);
  n_fmt++;
  if (strcmp(got, want) != 0 && bad_fmt++ < 10) printf("fmt %.17g: got %s, want %s\n", v, got, want);
}
static float rand_f32(void) {
  /* any finite float32 bit pattern, or a value in [0, 1) like a pixel */
  if (rnd() & 1) return (float)unif();
  for (;;) {
    uint32_t b = (uint32_t)rnd();
    float f;
    memcpy(&f, &b, sizeof f);
    if (isfinite(f)) return f;
  }
}
int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  char s[128];
  const char *fixed[] = {"0", "-0", "0.0", "1", "-1", "0.1", "1e-1", "0.1000000000000000055511151231257827021181583404541015625",
                         "3.4028235e38", "3.4028236e38", "1e39", "1e-38", "1.17549435e-38", "1e-45", "1e-46", "7e-46",
                         "1e300", "1e-300", "123456789012345678901234567890", "0.00000000000000000000000001234",
                         "9007199254740993", "18446744073709551615", "18446744073709551616", "99999999999999999999e-20",
                         "0e999", "1E+2", "1e0000000000000000000005", "0.0039215688593685627", "0.99999999999999999999"};
  for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) check_parse(fixed[i]);
  check_rows("{\"data\": [[1, 2.5], [3, -4e-1]]}", 2, 2, (float[]){1, 2.5f, 3, -0.4f});
  check_rows(" {\n\"data\"\t:[ [0.0,0.5 ] ] }\r\n", 2, 1, (float[]){0, 0.5f});
  check_rows("{\"data\": [[1, 2, 3]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1, 2]]} x", 2, -1, NULL);
  check_rows("{\"data\": [[1, 1e39]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1, NaN]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1, \"2\"]]}", 2, -1, NULL);
  check_rows("{\"data\": []}", 2, -1, NULL);
  check_rows("{\"data\": [[1, 2],]}", 2, -1, NULL);
  check_rows("{\"x\": 1, \"data\": [[1, 2]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1, 2]]", 2, -1, NULL);
  check_rows("{\"data\": [[1, 2.]]}", 2, -1, NULL);
  check_rows("{\"data\": [[1, .5]]}", 2, -1, NULL);
  for (long i = 0; i < n; i++) {
    float f = rand_f32();
    int digits = 6 + (int)(rnd() % 15);
    snprintf(s, sizeof s, (rnd() & 1) ? "%.*g" : "%.*e", digits, (double)f);
    check_parse(s);
    /* the exact midpoint between f and its neighbour above, and the
     * decimals just around it: where double rounding decides */
    float up = nextafterf(f, INFINITY);
    if (isfinite(up) && fabsf(f) > 1e-37f) {
      double mid = ((double)f + (double)up) / 2;
      snprintf(s, sizeof s, "%.40g", mid);
      check_parse(s);
      snprintf(s, sizeof s, "%.17g", nextafter(mid, 0));
      check_parse(s);
      snprintf(s, sizeof s, "%.17g", nextafter(mid, INFINITY));
      check_parse(s);
      snprintf(s, sizeof s, "%.19g", mid);
      check_parse(s);
    }
    /* the formatter: random magnitudes, probabilities, powers of ten and ties */
    double v = pow(10, -35 + 53 * unif()) * (1 + unif());
    check_fmt(v);
    check_fmt(unif());
    check_fmt((float)unif());
    double p = pow(10, (int)(rnd() % 40) - 30);
    check_fmt(p);
    check_fmt(nextafter(p, 0));
    check_fmt(nextafter(p, 1e300));
    double tie = (double)(1000000 + rnd() % 9000000) + 0.5;
    check_fmt(tie * pow(10, (int)(rnd() % 20) - 15));
  }
  check_fmt(0);
  check_fmt(1);
  check_fmt(9.9999996);
  check_fmt(0.99999995);
  check_fmt(1e-5);
  check_fmt(0.0001);
  check_fmt(1234567.5);
  check_fmt(5e-324);
  printf("parse: %ld of %ld differ from strtod; format: %ld of %ld differ from printf; %ld bodies misread\n", bad_parse,
         n_parse, bad_fmt, n_fmt, bad_rows);
  return bad_parse || bad_fmt || bad_rows;
}
EOF
cc -std=c17 -O2 ${KUSARI_TEST_CFLAGS:-} -I "$REPO/platform" -I "${KUSARI_INCLUDE_DIR:-$REPO/include}" \
  -o "$T/check" "$T/check.c" "$REPO/platform/service_json.c" -lm || die "cannot compile the check"
out="$("$T/check" "${SERVICE_NUMBERS_N:-300000}" 2>&1)"
rc=$?
echo "$out"
[ $rc -eq 0 ] && ok "kp_json_f32 = (float)strtod and kp_fmt_g7 = printf %.7g" || fail "number conversions differ from libc"
[ "$FAILS" -eq 0 ]
