/*
 * fuzz/fuzz_env.c — the run environment file parser (platform/env_file.c,
 * kp_env_load), reading the input as a file. What it accepts must come back
 * as canonical JSON: an object, which the parser accepts again and prints
 * the same way (the run records that text and reads it back).
 */
#include "fuzz_util.h"

#include "kp.h"

#include <cjson/cJSON.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *out = kp_env_load(fz_file(data, size, 0));
  if (!out) return 0;
  cJSON *j = cJSON_Parse(out);
  FZ_CHECK(cJSON_IsObject(j));
  cJSON_Delete(j);
  size_t n = strlen(out);
  char *again = kp_env_load(fz_file(out, n, 0));
  FZ_CHECK(again != NULL);
  FZ_CHECK(strcmp(again, out) == 0);
  free(again);
  free(out);
  return 0;
}
