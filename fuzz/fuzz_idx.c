/*
 * fuzz/fuzz_idx.c — the IDX reader (src/datasets/idx.c), raw and gzip: the
 * same bytes read as an image file and as a label file.
 */
#include "fuzz_util.h"

#include "kusari/datasets.h"
#include "kusari/error.h"
#include "kusari/tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fz_file(data, size, 0);
  for (int ndim = 1; ndim <= 3; ndim += 2) {
    ks_tensor *t = NULL;
    if (ks_idx_read_images(path, ndim, &t) == KS_OK) {
      FZ_CHECK(t != NULL && t->size > 0);
      const float *p = ks_tensor_f32(t);
      for (int64_t i = 0; i < t->size; i++) FZ_CHECK(p[i] >= 0.0f && p[i] <= 1.0f);
    } else {
      FZ_CHECK(t == NULL);
    }
    ks_tensor_free(t);
  }
  ks_tensor *l = NULL;
  if (ks_idx_read_labels(path, &l) == KS_OK) FZ_CHECK(l != NULL && l->size > 0);
  ks_tensor_free(l);
  return 0;
}
