/*
 * fuzz/fuzz_npz.c — the .npz reader (src/serializers/npz.c): the zip
 * container, every .npy header, the data with dtype conversions, and the
 * loads into a link (Linear + BatchNormalization, strict and not) and an
 * optimizer's state (npz_objects.c), as a program loading a model file does.
 */
#include "fuzz_util.h"

#include "kusari/error.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fz_file(data, size, 0);
  ks_npz_reader *r = NULL;
  if (ks_npz_reader_open(&r, path) != KS_OK) return 0;
  int n = ks_npz_reader_num_keys(r);
  for (int i = 0; i < n; i++) {
    const char *key = ks_npz_reader_key(r, i);
    FZ_CHECK(key != NULL);
    ks_npz_info info;
    if (ks_npz_reader_info(r, key, &info) != KS_OK) continue;
    FZ_CHECK(info.ndim >= 0 && info.ndim <= KS_MAX_DIMS && info.size >= 0);
    ks_tensor *t = ks_npz_reader_read_tensor(r, key);
    if (t) FZ_CHECK(t->size == info.size);
    ks_tensor_free(t);
    if (info.size == 1) {
      double d;
      int64_t v;
      (void)ks_npz_reader_read(r, key, KS_NPZ_F8, &d, 1);
      (void)ks_npz_reader_read(r, key, KS_NPZ_I8, &v, 1);
    }
  }
  /* the keys a Chain {l1: Linear(3, 2), bn: BatchNormalization(2)} and Adam
   * save (the seeds hold such files) */
  ks_link *m = ks_chain_new();
  ks_link *l1 = ks_linear_link_new(3, 2, &(ks_linear_opts){0});
  ks_link *bn = ks_batch_normalization_link_new(2, NULL);
  FZ_CHECK(m && l1 && bn);
  FZ_CHECK(ks_link_add_child(m, "l1", l1) == KS_OK && ks_link_add_child(m, "bn", bn) == KS_OK);
  (void)ks_npz_read_link(r, NULL, m, 1);
  (void)ks_npz_read_link(r, NULL, m, 0);
  ks_optimizer *opt = ks_optimizer_adam_new(NULL);
  FZ_CHECK(opt && ks_optimizer_setup(opt, m) == KS_OK);
  (void)ks_npz_read_optimizer(r, NULL, opt, 0);
  (void)ks_npz_read_optimizer(r, NULL, opt, 1);
  ks_optimizer_free(opt);
  ks_link_free(m);
  ks_npz_reader_close(r);
  return 0;
}
