/*
 * fuzz/fuzz_score_body.c — the scoring body parser of the scoring service
 * (platform/service_json.c: kp_json_rows, kp_json_f32, kp_fmt_g7). The
 * first input byte picks the row width (1..8), the rest is the body.
 */
#include "fuzz_util.h"

#include "service.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int64_t width = 1 + data[0] % 8;
  /* a copy of exactly the body's bytes, so reading past it is caught */
  size_t len = size - 1;
  char *body = malloc(len ? len : 1);
  FZ_CHECK(body != NULL);
  memcpy(body, data + 1, len);
  float *x = NULL;
  int64_t n = -1;
  if (kp_json_rows(body, len, width, &x, &n) == 0) {
    FZ_CHECK(n >= 0);
    for (int64_t i = 0; i < n * width; i++) FZ_CHECK(isfinite(x[i]));
    char out[KP_FMT_G7_MAX];
    for (int64_t i = 0; i < n * width && i < 16; i++) {
      size_t l = kp_fmt_g7(out, x[i]);
      FZ_CHECK(l < KP_FMT_G7_MAX && strlen(out) == l);
    }
    free(x);
  } else {
    FZ_CHECK(x == NULL);
  }
  float f;
  const char *p = body, *e = body + len;
  while (p < e) {
    const char *q = kp_json_f32(p, e, &f);
    FZ_CHECK(q == NULL || (q > p && q <= e));
    p = q ? q : p + 1;
  }
  free(body);
  return 0;
}
