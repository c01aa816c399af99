/*
 * fuzz/fuzz_model_json.c — the network description reader of the built-in
 * scorer (platform/service_model.c, kp_scorer_load): the input is
 * model.json in a folder whose model.npz (written once at start) holds the
 * weights of the layers the seeds describe: Linear "l1" (4 -> 3), Linear
 * "l2" (3 -> 2), Convolution2D "c1" (1 -> 2, 3x3), BatchNormalization "bn"
 * (2). A description that loads is run once on zeros (kp_scorer_load does)
 * and once more here.
 */
#include "fuzz_util.h"

#include "service.h"

#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];
static char g_json[128];

static void cleanup(void) {
  char p[160];
  snprintf(p, sizeof p, "%s/model.npz", g_dir);
  unlink(p);
  unlink(g_json);
  rmdir(g_dir);
}

static void add(ks_npz_writer *w, const char *key, int ndim, const int64_t *shape, float v) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  float *d = malloc((size_t)n * sizeof *d);
  FZ_CHECK(d != NULL);
  for (int64_t i = 0; i < n; i++) d[i] = v * (float)(i % 7 - 3);
  FZ_CHECK(ks_npz_writer_add(w, key, KS_NPZ_F4, ndim, shape, d) == KS_OK);
  free(d);
}

static void setup(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/kusari-fuzz-model-XXXXXX");
  FZ_CHECK(mkdtemp(g_dir) != NULL);
  snprintf(g_json, sizeof g_json, "%s/model.json", g_dir);
  char npz[160];
  snprintf(npz, sizeof npz, "%s/model.npz", g_dir);
  ks_npz_writer *w = NULL;
  FZ_CHECK(ks_npz_writer_open(&w, npz, 0) == KS_OK);
  add(w, "l1/W", 2, (int64_t[]){3, 4}, 0.1f);
  add(w, "l1/b", 1, (int64_t[]){3}, 0.01f);
  add(w, "l2/W", 2, (int64_t[]){2, 3}, 0.1f);
  add(w, "l2/b", 1, (int64_t[]){2}, 0.01f);
  add(w, "c1/W", 4, (int64_t[]){2, 1, 3, 3}, 0.1f);
  add(w, "c1/b", 1, (int64_t[]){2}, 0.01f);
  add(w, "bn/gamma", 1, (int64_t[]){2}, 1.0f);
  add(w, "bn/beta", 1, (int64_t[]){2}, 0.0f);
  add(w, "bn/avg_mean", 1, (int64_t[]){2}, 0.0f);
  add(w, "bn/avg_var", 1, (int64_t[]){2}, 1.0f);
  FZ_CHECK(ks_npz_writer_add_int64(w, "bn/N", 10) == KS_OK);
  FZ_CHECK(ks_npz_writer_commit(w) == KS_OK);
  atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_dir[0]) setup();
  FILE *f = fopen(g_json, "wb");
  FZ_CHECK(f != NULL);
  FZ_CHECK(fwrite(data, 1, size, f) == size);
  FZ_CHECK(fclose(f) == 0);
  char err[1024] = "";
  kp_scorer *s = kp_scorer_load(g_dir, err, sizeof err);
  if (!s) {
    FZ_CHECK(err[0] != '\0');  /* every refusal says why */
    return 0;
  }
  int64_t w = kp_scorer_width(s);
  FZ_CHECK(w >= 1 && kp_scorer_classes(s) >= 1);
  float *x = calloc((size_t)w * 2, sizeof *x);
  ks_ctx *ctx = ks_ctx_new();
  FZ_CHECK(x && ctx);
  (void)kp_scorer_run(s, ctx, x, 2);
  ks_ctx_free(ctx);
  free(x);
  kp_scorer_free(s);
  return 0;
}
