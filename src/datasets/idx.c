/*
 * src/datasets/idx.c — IDX (MNIST-format) file reader, raw or gzip.
 *
 * An IDX file is a 4-byte magic (0, 0, element type code, number of
 * dimensions), then one big-endian uint32 per dimension, then the elements in
 * row-major order. MNIST uses type code 0x08 (unsigned byte): images are
 * 3-d (N, rows, cols), labels 1-d (N). Files are read through zlib's gzread,
 * which passes uncompressed files through unchanged.
 *
 * The header is outside input: its dimensions are checked before anything
 * of their size is allocated. An uncompressed file must hold the bytes they
 * say; a gzip file can hold at most 1032 times its size (deflate's largest
 * ratio), and its data is read into a buffer that grows with what the
 * stream actually gives, so a forged header costs at most what the file
 * really decompresses to.
 */
#include "kusari/datasets.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>              /* gzopen, gzread, gzerror */

#include "kusari/error.h"      /* ks_error_set, KS_E* */

#define IDX_TYPE_UBYTE 0x08
/* Largest element count we accept: far above any MNIST-like data, low enough
 * that byte counts of float32 copies cannot overflow. */
#define IDX_MAX_ELEMS ((uint64_t)1 << 40)
/* deflate never expands data by more than about 1032:1 */
#define IDX_GZ_MAX_RATIO 1032u

typedef struct idx_file {
  const char *path;
  gzFile      gz;
  uint64_t    size;      /* bytes of the file on disk */
} idx_file;

static int idx_open(idx_file *f, const char *path)
{
  f->path = path;
  f->gz = NULL;
  if (!path || !*path)
    return ks_error_set(KS_EINVAL, "IDX file path is NULL or empty");
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR)
      return ks_error_set(KS_ENOTFOUND, "%s: no such file", path);
    return ks_error_set(KS_EIO, "%s: cannot stat: %s", path, strerror(e));
  }
  if (S_ISDIR(st.st_mode))
    return ks_error_set(KS_EIO, "%s: is a directory, not an IDX file", path);
  f->size = (uint64_t)st.st_size;
  errno = 0;
  f->gz = gzopen(path, "rb");
  if (!f->gz) {
    int e = errno;
    return ks_error_set(KS_EIO, "%s: cannot open: %s", path, e ? strerror(e) : "out of memory");
  }
  gzbuffer(f->gz, 1 << 17);
  return KS_OK;
}

static void idx_close(idx_file *f)
{
  if (f->gz)
    gzclose(f->gz);
  f->gz = NULL;
}

/* Reads up to n bytes, stopping early only at the end of the data; *got says
 * how many. Errors (KS_EIO, KS_EFORMAT for corrupt gzip) name 'what'. */
static int idx_read_partial(idx_file *f, void *buf, size_t n, const char *what, size_t *got_out)
{
  unsigned char *p = buf;
  size_t got = 0;
  *got_out = 0;
  while (got < n) {
    size_t chunk = n - got;
    if (chunk > (size_t)1 << 30)
      chunk = (size_t)1 << 30;
    int r = gzread(f->gz, p + got, (unsigned)chunk);
    if (r < 0) {
      int zerr = 0;
      const char *msg = gzerror(f->gz, &zerr);
      if (zerr == Z_ERRNO)
        return ks_error_set(KS_EIO, "%s: read error in %s: %s", f->path, what, strerror(errno));
      return ks_error_set(KS_EFORMAT, "%s: corrupt gzip data in %s: %s", f->path, what,
                          msg ? msg : "?");
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  *got_out = got;
  if (got < n) {
    int zerr = 0;
    const char *msg = gzerror(f->gz, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR && zerr != Z_STREAM_END)
      return ks_error_set(KS_EFORMAT, "%s: corrupt gzip data in %s: %s", f->path, what,
                          msg ? msg : "?");
  }
  return KS_OK;
}

/* Reads exactly n bytes; 'what' names the part for the message. */
static int idx_read(idx_file *f, void *buf, size_t n, const char *what)
{
  size_t got;
  int rc = idx_read_partial(f, buf, n, what, &got);
  if (rc)
    return rc;
  if (got < n)
    return ks_error_set(KS_EFORMAT, "%s: truncated %s: expected %zu bytes, got %zu",
                        f->path, what, n, got);
  return KS_OK;
}

/* Reads the magic and dimensions; checks type code and dimension count. */
static int idx_read_header(idx_file *f, int want_ndims, const char *kind, uint32_t *dims)
{
  unsigned char m[4];
  int rc = idx_read(f, m, 4, "header (magic number)");
  if (rc)
    return rc;
  uint32_t magic = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
  uint32_t want = (uint32_t)IDX_TYPE_UBYTE << 8 | (uint32_t)want_ndims;
  if (m[0] != 0 || m[1] != 0 || m[3] != want_ndims)
    return ks_error_set(KS_EFORMAT,
                        "%s: bad magic number 0x%08x (expected 0x%08x for an IDX %s file "
                        "with %d dimension%s)",
                        f->path, magic, want, kind, want_ndims, want_ndims == 1 ? "" : "s");
  if (m[2] != IDX_TYPE_UBYTE)
    return ks_error_set(KS_EFORMAT,
                        "%s: wrong element type code 0x%02x in magic 0x%08x "
                        "(expected 0x08, unsigned byte)",
                        f->path, m[2], magic);
  unsigned char d[16];
  rc = idx_read(f, d, 4 * (size_t)want_ndims, "header (dimensions)");
  if (rc)
    return rc;
  for (int i = 0; i < want_ndims; i++) {
    const unsigned char *q = d + 4 * i;
    dims[i] = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
  }
  return KS_OK;
}

/* Checks that 'total' data bytes after a header of 'hdr' bytes can be in
 * the file: exactly there for an uncompressed file, within deflate's ratio
 * for a gzip one. 'what' names the data for the message. */
static int idx_check_size(idx_file *f, uint64_t hdr, uint64_t total, const char *what, const char *dims)
{
  if (gzdirect(f->gz)) {
    if (f->size < hdr || f->size - hdr < total)
      return ks_error_set(KS_EFORMAT,
                          "%s: truncated %s: expected %llu bytes, got %llu (the header's dimensions %s "
                          "need more than the file holds: a damaged or forged IDX file; download it again)",
                          f->path, what, (unsigned long long)total,
                          (unsigned long long)(f->size > hdr ? f->size - hdr : 0), dims);
    return KS_OK;
  }
  if (total + hdr > f->size * (uint64_t)IDX_GZ_MAX_RATIO + 1024)
    return ks_error_set(KS_EFORMAT,
                        "%s: the header's dimensions %s need %llu bytes of %s, more than a %llu-byte gzip "
                        "file can hold (a damaged or forged IDX file)",
                        f->path, dims, (unsigned long long)total, what, (unsigned long long)f->size);
  return KS_OK;
}

/* Reads exactly 'total' bytes into a malloc'd buffer that grows with the
 * data the stream gives (never sized by the header alone). */
static int idx_read_growing(idx_file *f, uint64_t total, const char *what, unsigned char **out)
{
  *out = NULL;
  size_t cap = total < ((size_t)1 << 20) ? (size_t)total : (size_t)1 << 20;
  unsigned char *buf = malloc(cap ? cap : 1);
  if (!buf)
    return ks_error_set(KS_ENOMEM, "%s: out of memory reading %s", f->path, what);
  uint64_t done = 0;
  while (done < total) {
    if (done == cap) {
      size_t ncap = total - cap < cap ? (size_t)total : 2 * cap;
      unsigned char *nb = realloc(buf, ncap);
      if (!nb) {
        free(buf);
        return ks_error_set(KS_ENOMEM, "%s: out of memory reading %s (%zu bytes)", f->path, what, ncap);
      }
      buf = nb;
      cap = ncap;
    }
    size_t got;
    int rc = idx_read_partial(f, buf + done, cap - (size_t)done, what, &got);
    if (rc) {
      free(buf);
      return rc;
    }
    done += got;
    if (got == 0 || (done < cap && done < total)) {
      free(buf);
      return ks_error_set(KS_EFORMAT, "%s: truncated %s: expected %llu bytes, got %llu", f->path, what,
                          (unsigned long long)total, (unsigned long long)done);
    }
  }
  *out = buf;
  return KS_OK;
}

int ks_idx_read_images(const char *path, int ndim, ks_tensor **out)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_idx_read_images: out is NULL");
  *out = NULL;
  if (ndim < 1 || ndim > 3)
    return ks_error_set(KS_EINVAL, "ks_idx_read_images: ndim must be 1, 2 or 3, got %d", ndim);

  idx_file f;
  ks_tensor *t = NULL;
  unsigned char *raw = NULL;
  int rc = idx_open(&f, path);
  if (rc)
    return rc;
  uint32_t dims[3] = {0, 0, 0};
  rc = idx_read_header(&f, 3, "image", dims);
  if (rc)
    goto cleanup;
  if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0) {
    rc = ks_error_set(KS_EFORMAT, "%s: empty image file: dimensions (%u, %u, %u)", path,
                      dims[0], dims[1], dims[2]);
    goto cleanup;
  }
  uint64_t n = dims[0], rows = dims[1], cols = dims[2];
  if (rows * cols > IDX_MAX_ELEMS / n) {
    rc = ks_error_set(KS_EFORMAT, "%s: implausible dimensions (%u, %u, %u)", path, dims[0],
                      dims[1], dims[2]);
    goto cleanup;
  }
  uint64_t total = n * rows * cols;
  char dims_s[64];
  snprintf(dims_s, sizeof dims_s, "(%u, %u, %u)", dims[0], dims[1], dims[2]);
  rc = idx_check_size(&f, 16, total, "pixel data", dims_s);
  if (rc)
    goto cleanup;
  /* gzip: the pixels first, in a buffer that grows with the stream */
  if (!gzdirect(f.gz)) {
    rc = idx_read_growing(&f, total, "pixel data", &raw);
    if (rc)
      goto cleanup;
  }

  int64_t shape[4];
  shape[0] = (int64_t)n;
  if (ndim == 1) {
    shape[1] = (int64_t)(rows * cols);
  } else if (ndim == 2) {
    shape[1] = (int64_t)rows;
    shape[2] = (int64_t)cols;
  } else {
    shape[1] = 1;
    shape[2] = (int64_t)rows;
    shape[3] = (int64_t)cols;
  }
  int tndim = ndim == 3 ? 4 : ndim + 1;

  t = ks_tensor_new(KS_F32, tndim, shape);
  if (!t) {
    rc = ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
    goto cleanup;
  }
  /* Read and convert in chunks, so the peak memory is the float tensor plus
   * one small buffer (not a second copy of the file).
   * Chainer: images.astype(float32); images *= scale / 255. (float32 math) */
  enum { IDX_CHUNK = 1 << 16 };
  const float scale = (float)(1.0 / 255.0);
  float *dst = ks_tensor_f32(t);
  if (raw) {
    for (uint64_t i = 0; i < total; i++)
      dst[i] = (float)raw[i] * scale;
  } else {
    raw = malloc(IDX_CHUNK);
    if (!raw) {
      rc = ks_error_set(KS_ENOMEM, "%s: out of memory", path);
      goto cleanup;
    }
  }
  for (uint64_t done = 0; done < total && gzdirect(f.gz);) {
    size_t len = total - done < IDX_CHUNK ? (size_t)(total - done) : IDX_CHUNK;
    size_t got;
    rc = idx_read_partial(&f, raw, len, "pixel data", &got);
    if (rc)
      goto cleanup;
    if (got < len) {
      rc = ks_error_set(KS_EFORMAT, "%s: truncated pixel data: expected %llu bytes, got %llu",
                        path, (unsigned long long)total, (unsigned long long)(done + got));
      goto cleanup;
    }
    for (size_t i = 0; i < len; i++)
      dst[done + i] = (float)raw[i] * scale;
    done += len;
  }
  *out = t;
  t = NULL;
  rc = KS_OK;

cleanup:
  free(raw);
  ks_tensor_free(t);
  idx_close(&f);
  return rc;
}

int ks_idx_read_labels(const char *path, ks_tensor **out)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_idx_read_labels: out is NULL");
  *out = NULL;

  idx_file f;
  ks_tensor *t = NULL;
  unsigned char *raw = NULL;
  int rc = idx_open(&f, path);
  if (rc)
    return rc;
  uint32_t dims[1] = {0};
  rc = idx_read_header(&f, 1, "label", dims);
  if (rc)
    goto cleanup;
  if (dims[0] == 0) {
    rc = ks_error_set(KS_EFORMAT, "%s: empty label file (count 0)", path);
    goto cleanup;
  }
  uint64_t n = dims[0];
  char dims_s[32];
  snprintf(dims_s, sizeof dims_s, "(%u)", dims[0]);
  rc = idx_check_size(&f, 8, n, "label data", dims_s);
  if (rc)
    goto cleanup;
  rc = idx_read_growing(&f, n, "label data", &raw);
  if (rc)
    goto cleanup;
  int64_t shape[1] = {(int64_t)n};
  t = ks_tensor_new(KS_I32, 1, shape);
  if (!t) {
    rc = ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
    goto cleanup;
  }
  int32_t *dst = ks_tensor_i32(t);
  for (uint64_t i = 0; i < n; i++)
    dst[i] = raw[i];
  *out = t;
  t = NULL;
  rc = KS_OK;

cleanup:
  free(raw);
  ks_tensor_free(t);
  idx_close(&f);
  return rc;
}
