/*
 * fuzz/fuzz_sweep.c — the sweep file parser (platform/sweep_space.c,
 * kp_sweep_spec_parse), then the space's samplers on what it accepted. The
 * spec is freed after a refusal too (kp_sweep_spec_free), as cmd_sweep.c
 * does: a refused file may leave fields set.
 */
#include "fuzz_util.h"

#include "sweep.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  FZ_CHECK(text != NULL);
  memcpy(text, data, size);
  text[size] = '\0';
  kp_sweep_spec spec;
  memset(&spec, 0, sizeof spec);
  char err[512] = "";
  if (kp_sweep_spec_parse(text, &spec, err, sizeof err) == 0) {
    const kp_space *s = &spec.space;
    FZ_CHECK(s->n >= 0 && s->n <= 1000);
    double *x = calloc((size_t)(s->n ? s->n : 1), sizeof *x);
    double *u = calloc((size_t)(s->n ? s->n : 1), sizeof *u);
    FZ_CHECK(x && u);
    char buf[256];
    for (long long i = 0; i < 4; i++) {
      kp_sample_random(s, spec.seed, i, x);
      kp_space_to_unit(s, x, u);
      for (int j = 0; j < s->n; j++) {
        kp_space_format(s, j, x[j], buf, sizeof buf);
        double v;
        (void)kp_space_value(s, j, buf, &v);
      }
    }
    long long g = kp_space_grid_size(s);
    if (spec.sampling == KP_SAMPLING_GRID && g > 0) kp_space_grid_point(s, g - 1, x);
    (void)kp_space_finite_size(s);
    free(x);
    free(u);
  } else {
    FZ_CHECK(err[0] != '\0');  /* every refusal says why */
  }
  kp_sweep_spec_free(&spec);  /* after a refusal too, as its callers do */
  free(text);
  return 0;
}
