/*
 * tests/lib/testutil_data.h — helpers for the dataset tests: a scratch
 * directory and writers of small IDX files (raw or gzipped) built in the test
 * itself, so no binary fixtures are committed.
 */
#ifndef KUSARI_TESTUTIL_DATA_H
#define KUSARI_TESTUTIL_DATA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>   /* gzopen/gzwrite for .gz fixtures */

/* mkdtemp under $TMPDIR (or /tmp); returns a static buffer. */
static inline const char *tu_tmpdir(void)
{
  static char dir[512];
  const char *base = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/kusari-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(dir))
    return NULL;
  return dir;
}

/* rm -rf dir (test scratch only). */
static inline void tu_rmtree(const char *dir)
{
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* Writes bytes to path, gzip-compressed if gz. Returns 0 on success. */
static inline int tu_write_bytes(const char *path, const void *data, size_t n, int gz)
{
  if (gz) {
    gzFile f = gzopen(path, "wb");
    if (!f)
      return -1;
    int ok = n == 0 || gzwrite(f, data, (unsigned)n) == (int)n;
    return gzclose(f) == Z_OK && ok ? 0 : -1;
  }
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  int ok = fwrite(data, 1, n, f) == n;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* Builds an IDX file image in a malloc'd buffer: magic bytes (0, 0, type,
 * ndims), big-endian dims, then 'payload' bytes (may be fewer than the dims
 * say, to make truncated files). *len receives the size. */
static inline unsigned char *tu_idx_bytes(unsigned type, unsigned ndims, const uint32_t *dims,
                                          const unsigned char *payload, size_t payload_len,
                                          size_t *len)
{
  size_t n = 4 + 4 * (size_t)ndims + payload_len;
  unsigned char *b = malloc(n ? n : 1);
  if (!b)
    return NULL;
  b[0] = 0;
  b[1] = 0;
  b[2] = (unsigned char)type;
  b[3] = (unsigned char)ndims;
  for (unsigned i = 0; i < ndims; i++) {
    b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
    b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
    b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
    b[7 + 4 * i] = (unsigned char)dims[i];
  }
  if (payload_len)
    memcpy(b + 4 + 4 * ndims, payload, payload_len);
  *len = n;
  return b;
}

/* Writes dir/name as an IDX file (see tu_idx_bytes); returns 0 on success
 * and the full path in 'path' (at least 1024 bytes). */
static inline int tu_write_idx(char *path, const char *dir, const char *name, unsigned type,
                               unsigned ndims, const uint32_t *dims,
                               const unsigned char *payload, size_t payload_len, int gz)
{
  if (snprintf(path, 1024, "%s/%s", dir, name) >= 1024)
    return -1;
  size_t len;
  unsigned char *b = tu_idx_bytes(type, ndims, dims, payload, payload_len, &len);
  if (!b)
    return -1;
  int rc = tu_write_bytes(path, b, len, gz);
  free(b);
  return rc;
}

#endif
