/*
 * fuzz/fuzz_channel.c — the metrics channel reader (ks_run_channel_read,
 * src/run/channel.c), whose writer is a run's entry program. The input's
 * first 8 bytes are the header's tail (any value: the reader clamps it), the
 * rest the slots after the header; the file gets a valid header with the
 * capacity equal to its size. Read live and final, from the start and again
 * from the offset returned; every record handed on must be well formed.
 */
#include "fuzz_util.h"

#include "kusari/error.h"
#include "kusari/run.h"
#include "run/channel_impl.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check(void *ctx, const ks_run_record *r) {
  ++*(long *)ctx;
  FZ_CHECK(r->kind == KS_RUN_RECORD_METRIC || r->kind == KS_RUN_RECORD_TAG);
  size_t nl = strlen(r->name), tl = strlen(r->text);
  FZ_CHECK(nl >= 1 && nl <= KS_CH_NAME_MAX && tl <= KS_CH_TEXT_MAX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 8) return 0;
  size_t body = size - 8;
  size_t slots = (body + KS_CH_SLOT - 1) / KS_CH_SLOT;
  size_t total = KS_CH_SLOT * (1 + slots);
  uint8_t *file = calloc(1, total);
  FZ_CHECK(file != NULL);
  ks_ch_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, KS_CH_MAGIC, 8);
  h.version = KS_CH_VERSION;
  h.slot = KS_CH_SLOT;
  h.capacity = total;
  memcpy(&h.tail, data, 8);
  memcpy(file, &h, sizeof h);
  memcpy(file + KS_CH_SLOT, data + 8, body);
  const char *path = fz_file(file, total, 0);
  free(file);
  for (int final = 0; final < 2; final++) {
    long n = 0;
    uint64_t off = 0;
    int rc = ks_run_channel_read(path, &off, final, check, &n);
    FZ_CHECK(rc == KS_OK || rc == KS_EFORMAT);
    FZ_CHECK(off % KS_CH_SLOT == 0 && off >= KS_CH_SLOT && off <= total);
    uint64_t again = off;
    long m = 0;
    int rc2 = ks_run_channel_read(path, &again, final, check, &m);
    /* nothing new was written: a second read from the offset adds nothing
     * and stops where the first did */
    FZ_CHECK(rc2 == rc && again == off && m == 0);
  }
  return 0;
}
