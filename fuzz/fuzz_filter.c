/*
 * fuzz/fuzz_filter.c — the run filter and order-by parsers (platform/filter.c:
 * kp_filter_parse, kp_filter_parse_order), which read what clients send in
 * `run list --filter/--order-by` and the server's GET /api/v1/runs?filter=
 * &order_by=. The first line of the input is the filter, the rest the order
 * key. A refusal must say where (a position inside the text) and why.
 */
#include "fuzz_util.h"

#include "filter.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  FZ_CHECK(text != NULL);
  memcpy(text, data, size);
  text[size] = '\0';
  char *nl = strchr(text, '\n');
  char *order = NULL;
  if (nl) {
    *nl = '\0';
    order = nl + 1;
  }
  kp_filter *f = NULL;
  kp_filter_error err;
  memset(&err, 0, sizeof err);
  if (kp_filter_parse(text, &f, &err) != 0) {
    FZ_CHECK(f == NULL);
    FZ_CHECK(err.message[0] != '\0');
    FZ_CHECK(err.pos >= 1 && (size_t)err.pos <= strlen(text) + 1);
  } else {
    kp_filter_free(f);
  }
  if (order) {
    kp_filter_key key;
    memset(&key, 0, sizeof key);
    int desc = 0;
    memset(&err, 0, sizeof err);
    if (kp_filter_parse_order(order, &key, &desc, &err) == 0) kp_filter_key_clear(&key);
    else FZ_CHECK(err.message[0] != '\0');
  }
  free(text);
  return 0;
}
