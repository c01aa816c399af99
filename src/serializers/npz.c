/*
 * src/serializers/npz.c — .npz (zip of .npy) writer and reader over libzip.
 *
 * Writer: arrays are serialized to .npy 1.0 byte strings (header padded so
 * the data starts at a multiple of 64 bytes, as numpy does) and handed to
 * libzip at commit; zip_close writes a temporary file beside the target and
 * renames it over the target, so the replacement is atomic. An archive with
 * no entries (which libzip would not write at all) is written by hand as the
 * 22-byte end-of-central-directory record numpy writes, through the same
 * temp-and-rename.
 *
 * Reader: at open, every "*.npy" entry's header is read and parsed (the data
 * is not); an entry whose header is bad keeps its error, which is returned
 * when that key is used. The header dict is parsed by a small strict parser
 * of the Python literal numpy writes: {'descr': '<f4', 'fortran_order':
 * False, 'shape': (2, 3), }.
 */
#include "kusari/serializers.h"
#include "kusari/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#define NPY_MAX_HEADER (1u << 20)  /* sanity cap for v2/v3 header lengths */
#define NPZ_MAX_RATIO 1032u        /* deflate's largest expansion */

size_t ks_npz_dtype_size(ks_npz_dtype dtype) {
  switch (dtype) {
    case KS_NPZ_F4: case KS_NPZ_I4: return 4;
    case KS_NPZ_F8: case KS_NPZ_I8: return 8;
  }
  return 0;
}

const char *ks_npz_dtype_descr(ks_npz_dtype dtype) {
  switch (dtype) {
    case KS_NPZ_F4: return "<f4";
    case KS_NPZ_F8: return "<f8";
    case KS_NPZ_I4: return "<i4";
    case KS_NPZ_I8: return "<i8";
  }
  return "?";
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ============================================================================ */
/* writer                                                                        */

typedef struct npz_entry {
  char *name;        /* "<key>.npy" */
  void *buf;         /* .npy bytes (ownership passes to libzip at commit) */
  size_t len;
} npz_entry;

struct ks_npz_writer {
  char *path;
  int compress;
  npz_entry *entries;
  int n, cap;
};

int ks_npz_writer_open(ks_npz_writer **out, const char *path, int compress) {
  if (!out || !path || !*path) return ks_error_set(KS_EINVAL, "ks_npz_writer_open: NULL or empty path");
  *out = NULL;
  ks_npz_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->path = dupstr(path))) {
    free(w);
    return ks_error_set(KS_ENOMEM, "out of memory opening an npz writer");
  }
  w->compress = compress;
  *out = w;
  return KS_OK;
}

void ks_npz_writer_discard(ks_npz_writer *w) {
  if (!w) return;
  for (int i = 0; i < w->n; i++) { free(w->entries[i].name); free(w->entries[i].buf); }
  free(w->entries);
  free(w->path);
  free(w);
}

/* .npy 1.0 header (2.0 if it would not fit 65535 bytes) into buf; returns
 * its total length including magic, or 0 if buf is too small */
static size_t npy_header(char *buf, size_t cap, ks_npz_dtype dtype, int ndim, const int64_t *shape) {
  char dict[512];
  size_t off = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                                ks_npz_dtype_descr(dtype));
  for (int i = 0; i < ndim; i++)
    off += (size_t)snprintf(dict + off, sizeof dict - off, i ? ", %lld" : "%lld", (long long)shape[i]);
  off += (size_t)snprintf(dict + off, sizeof dict - off, ndim == 1 ? ",), }" : "), }");
  size_t hlen = off + 1; /* + '\n' */
  size_t total = 10 + hlen;
  size_t pad = (64 - total % 64) % 64;
  total += pad;
  if (total > cap) return 0;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  size_t h = total - 10;
  buf[8] = (char)(h & 0xff);
  buf[9] = (char)(h >> 8);
  memcpy(buf + 10, dict, off);
  memset(buf + 10 + off, ' ', pad);
  buf[total - 1] = '\n';
  return total;
}

int ks_npz_writer_add(ks_npz_writer *w, const char *key, ks_npz_dtype dtype, int ndim,
                      const int64_t *shape, const void *data) {
  if (!w || !key) return ks_error_set(KS_EINVAL, "ks_npz_writer_add: NULL argument");
  if (!*key) return ks_error_set(KS_EINVAL, "npz key is empty");
  if (ks_npz_dtype_size(dtype) == 0) return ks_error_set(KS_EINVAL, "npz key '%s': unknown dtype %d", key, (int)dtype);
  if (ndim < 0 || ndim > KS_MAX_DIMS) return ks_error_set(KS_EINVAL, "npz key '%s': bad rank %d", key, ndim);
  int64_t size = ks_shape_size(ndim, shape);
  if (size < 0) return ks_error_set(KS_EINVAL, "npz key '%s': %s", key, ks_error_last());
  if (size > 0 && !data) return ks_error_set(KS_EINVAL, "npz key '%s': data is NULL", key);
  size_t klen = strlen(key);
  for (int i = 0; i < w->n; i++)
    if (strncmp(w->entries[i].name, key, klen) == 0 && strcmp(w->entries[i].name + klen, ".npy") == 0)
      return ks_error_set(KS_EINVAL, "npz key '%s' added twice", key);
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 16;
    npz_entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
    if (!e) return ks_error_set(KS_ENOMEM, "out of memory adding npz key '%s'", key);
    w->entries = e;
    w->cap = cap;
  }
  char hdr[1024];
  size_t hl = npy_header(hdr, sizeof hdr, dtype, ndim, shape);
  KS_ASSERT(hl > 0);
  size_t nbytes = (size_t)size * ks_npz_dtype_size(dtype);
  char *buf = malloc(hl + nbytes);
  char *name = malloc(klen + 5);
  if (!buf || !name) {
    free(buf); free(name);
    return ks_error_set(KS_ENOMEM, "out of memory adding npz key '%s' (%zu bytes)", key, nbytes);
  }
  memcpy(buf, hdr, hl);
  if (nbytes) memcpy(buf + hl, data, nbytes);
  memcpy(name, key, klen);
  memcpy(name + klen, ".npy", 5);
  w->entries[w->n++] = (npz_entry){name, buf, hl + nbytes};
  return KS_OK;
}

int ks_npz_writer_add_tensor(ks_npz_writer *w, const char *key, const ks_tensor *t) {
  if (!t) return ks_error_set(KS_EINVAL, "npz key '%s': tensor is NULL", key ? key : "");
  ks_npz_dtype dt = t->dtype == KS_F32 ? KS_NPZ_F4 : KS_NPZ_I4;
  if (t->device.type == KS_DEVICE_CPU) return ks_npz_writer_add(w, key, dt, t->ndim, t->shape, t->data);
  /* a tensor on a device: saved from a host copy */
  void *host = malloc(ks_tensor_nbytes(t) ? ks_tensor_nbytes(t) : 1);
  if (!host) return ks_error_set(KS_ENOMEM, "out of memory saving npz key '%s'", key);
  int rc = ks_tensor_to_host(t, host);
  if (rc == KS_OK) rc = ks_npz_writer_add(w, key, dt, t->ndim, t->shape, host);
  free(host);
  return rc;
}

int ks_npz_writer_add_int64(ks_npz_writer *w, const char *key, int64_t value) {
  return ks_npz_writer_add(w, key, KS_NPZ_I8, 0, NULL, &value);
}

static int write_empty_zip(const char *path) {
  static const unsigned char eocd[22] = {'P', 'K', 5, 6};
  static unsigned counter;
  size_t n = strlen(path) + 64;
  char *tmp = malloc(n);
  if (!tmp) return ks_error_set(KS_ENOMEM, "out of memory");
  int fd = -1;
  for (int tries = 0; tries < 100 && fd < 0; tries++) {
    snprintf(tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666); /* mode filtered by umask */
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    int rc = ks_error_set(KS_EIO, "cannot create a temporary file beside %s: %s", path, strerror(errno));
    free(tmp);
    return rc;
  }
  int ok = write(fd, eocd, sizeof eocd) == (ssize_t)sizeof eocd;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    int rc = ks_error_set(KS_EIO, "cannot write %s: %s", path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return rc;
  }
  free(tmp);
  return KS_OK;
}

int ks_npz_writer_commit(ks_npz_writer *w) {
  if (!w) return ks_error_set(KS_EINVAL, "ks_npz_writer_commit: writer is NULL");
  int rc = KS_OK;
  if (w->n == 0) {
    rc = write_empty_zip(w->path);
    ks_npz_writer_discard(w);
    return rc;
  }
  int zerr = 0;
  zip_t *za = zip_open(w->path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!za) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, zerr);
    rc = ks_error_set(KS_EIO, "cannot create %s: %s", w->path, zip_error_strerror(&ze));
    zip_error_fini(&ze);
    ks_npz_writer_discard(w);
    return rc;
  }
  for (int i = 0; i < w->n; i++) {
    npz_entry *e = &w->entries[i];
    zip_source_t *src = zip_source_buffer(za, e->buf, e->len, 1);
    if (!src) { rc = ks_error_set(KS_ENOMEM, "libzip: %s", zip_strerror(za)); goto fail; }
    e->buf = NULL; /* owned by the source now */
    zip_int64_t idx = zip_file_add(za, e->name, src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) {
      zip_source_free(src);
      rc = ks_error_set(KS_EIO, "cannot add %s to %s: %s", e->name, w->path, zip_strerror(za));
      goto fail;
    }
    if (zip_set_file_compression(za, (zip_uint64_t)idx, w->compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0) {
      rc = ks_error_set(KS_EIO, "cannot set compression of %s: %s", e->name, zip_strerror(za));
      goto fail;
    }
  }
  if (zip_close(za) != 0) {
    rc = ks_error_set(KS_EIO, "cannot write %s: %s", w->path, zip_strerror(za));
    goto fail;
  }
  ks_npz_writer_discard(w);
  return KS_OK;

fail:
  zip_discard(za);
  ks_npz_writer_discard(w);
  return rc;
}

/* ============================================================================ */
/* .npy header parsing                                                            */

typedef struct hparser {
  const char *s, *end;
  char err[160];
} hparser;

static void skip_ws(hparser *p) {
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static int expect(hparser *p, char c) {
  skip_ws(p);
  if (p->s < p->end && *p->s == c) { p->s++; return 1; }
  snprintf(p->err, sizeof p->err, "expected '%c' at offset %d of the header dict", c, 0);
  return 0;
}

/* Python string literal with ' or " quotes, no escapes needed by numpy */
static int parse_str(hparser *p, char *out, size_t cap) {
  skip_ws(p);
  if (p->s >= p->end || (*p->s != '\'' && *p->s != '"')) {
    snprintf(p->err, sizeof p->err, "expected a quoted string in the header dict");
    return 0;
  }
  char q = *p->s++;
  size_t n = 0;
  while (p->s < p->end && *p->s != q) {
    if (*p->s == '\\' || n + 1 >= cap) {
      snprintf(p->err, sizeof p->err, "unsupported or overlong string in the header dict");
      return 0;
    }
    out[n++] = *p->s++;
  }
  if (p->s >= p->end) { snprintf(p->err, sizeof p->err, "unterminated string in the header dict"); return 0; }
  p->s++;
  out[n] = '\0';
  return 1;
}

static int parse_bool(hparser *p, int *v) {
  skip_ws(p);
  size_t left = (size_t)(p->end - p->s);
  if (left >= 4 && memcmp(p->s, "True", 4) == 0) { p->s += 4; *v = 1; return 1; }
  if (left >= 5 && memcmp(p->s, "False", 5) == 0) { p->s += 5; *v = 0; return 1; }
  snprintf(p->err, sizeof p->err, "fortran_order must be True or False");
  return 0;
}

static int parse_shape(hparser *p, int *ndim, int64_t *shape) {
  if (!expect(p, '(')) { snprintf(p->err, sizeof p->err, "shape must be a tuple"); return 0; }
  int n = 0;
  for (;;) {
    skip_ws(p);
    if (p->s < p->end && *p->s == ')') { p->s++; break; }
    if (p->s >= p->end || *p->s < '0' || *p->s > '9') {
      snprintf(p->err, sizeof p->err, "shape must be a tuple of non-negative integers");
      return 0;
    }
    int64_t v = 0;
    while (p->s < p->end && *p->s >= '0' && *p->s <= '9') {
      if (v > (INT64_MAX - 9) / 10) { snprintf(p->err, sizeof p->err, "shape dimension overflows"); return 0; }
      v = v * 10 + (*p->s++ - '0');
    }
    if (p->s < p->end && (*p->s == 'L' || *p->s == 'l')) p->s++; /* Python 2 longs */
    if (n >= KS_MAX_DIMS) { snprintf(p->err, sizeof p->err, "more than %d dimensions", KS_MAX_DIMS); return 0; }
    shape[n++] = v;
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') { p->s++; continue; }
    if (p->s < p->end && *p->s == ')') { p->s++; break; }
    snprintf(p->err, sizeof p->err, "malformed shape tuple");
    return 0;
  }
  *ndim = n;
  return 1;
}

/* parses the dict; on success fills info and *fortran. On failure returns
 * KS_EFORMAT or KS_EUNSUPPORTED with msg filled */
static int parse_header(const char *h, size_t len, ks_npz_info *info, char *msg, size_t msgcap) {
  hparser p = {h, h + len, ""};
  char key[32], descr[32] = "";
  int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
  if (!expect(&p, '{')) goto bad;
  for (;;) {
    skip_ws(&p);
    if (p.s < p.end && *p.s == '}') { p.s++; break; }
    if (!parse_str(&p, key, sizeof key)) goto bad;
    if (!expect(&p, ':')) goto bad;
    if (strcmp(key, "descr") == 0 && !have_descr) {
      if (!parse_str(&p, descr, sizeof descr)) {
        snprintf(p.err, sizeof p.err, "descr must be a simple dtype string (structured dtypes are not supported)");
        goto bad;
      }
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
      if (!parse_bool(&p, &fortran)) goto bad;
      have_fortran = 1;
    } else if (strcmp(key, "shape") == 0 && !have_shape) {
      if (!parse_shape(&p, &info->ndim, info->shape)) goto bad;
      have_shape = 1;
    } else {
      snprintf(p.err, sizeof p.err, "unexpected or repeated key '%s' in the header dict", key);
      goto bad;
    }
    skip_ws(&p);
    if (p.s < p.end && *p.s == ',') { p.s++; continue; }
    if (p.s < p.end && *p.s == '}') { p.s++; break; }
    snprintf(p.err, sizeof p.err, "expected ',' or '}' in the header dict");
    goto bad;
  }
  skip_ws(&p);
  while (p.s < p.end && *p.s == '\0') p.s++;
  if (p.s != p.end) { snprintf(p.err, sizeof p.err, "trailing characters after the header dict"); goto bad; }
  if (!have_descr || !have_fortran || !have_shape) {
    snprintf(p.err, sizeof p.err, "header dict lacks %s", !have_descr ? "'descr'" : !have_fortran ? "'fortran_order'" : "'shape'");
    goto bad;
  }
  /* dtype */
  char order = descr[0];
  const char *t = descr + 1;
  if (order == '>' ) {
    snprintf(msg, msgcap, "big-endian dtype '%s' is not supported", descr);
    return KS_EUNSUPPORTED;
  }
  if (order != '<' && order != '=' && order != '|') {
    snprintf(msg, msgcap, "dtype '%s' is not supported (float32, float64, int32, int64)", descr);
    return KS_EUNSUPPORTED;
  }
  if (strcmp(t, "f4") == 0 && order != '|') info->dtype = KS_NPZ_F4;
  else if (strcmp(t, "f8") == 0 && order != '|') info->dtype = KS_NPZ_F8;
  else if (strcmp(t, "i4") == 0 && order != '|') info->dtype = KS_NPZ_I4;
  else if (strcmp(t, "i8") == 0 && order != '|') info->dtype = KS_NPZ_I8;
  else {
    snprintf(msg, msgcap, "dtype '%s' is not supported (float32, float64, int32, int64)", descr);
    return KS_EUNSUPPORTED;
  }
  if (fortran) {
    snprintf(msg, msgcap, "fortran_order=True arrays are not supported (save a C-contiguous array)");
    return KS_EUNSUPPORTED;
  }
  int64_t size = 1;
  for (int i = 0; i < info->ndim; i++) {
    if (info->shape[i] != 0 && size > INT64_MAX / 16 / info->shape[i]) {
      snprintf(msg, msgcap, "shape overflows");
      return KS_EFORMAT;
    }
    size *= info->shape[i];
  }
  info->size = size;
  return KS_OK;

bad:
  snprintf(msg, msgcap, "bad .npy header dict: %s", p.err);
  return KS_EFORMAT;
}

/* ============================================================================ */
/* reader                                                                        */

typedef struct rd_entry {
  char *key;
  zip_uint64_t index;
  int status;            /* KS_OK or the entry's error */
  char *msg;             /* message for status != KS_OK */
  ks_npz_info info;
  uint64_t data_offset;
  int64_t entry_size;    /* uncompressed size, -1 unknown */
} rd_entry;

struct ks_npz_reader {
  char *path;
  zip_t *za;
  rd_entry *e;
  int n;
};

static int read_full(zip_file_t *zf, void *buf, uint64_t n, uint64_t *got) {
  uint64_t total = 0;
  while (total < n) {
    uint64_t chunk = n - total;
    if (chunk > (1u << 30)) chunk = 1u << 30;
    zip_int64_t r = zip_fread(zf, (char *)buf + total, chunk);
    if (r < 0) { *got = total; return -1; }
    if (r == 0) break;
    total += (uint64_t)r;
  }
  *got = total;
  return 0;
}

static void entry_fail(rd_entry *e, int code, const char *fmt, const char *detail) {
  char buf[400];
  snprintf(buf, sizeof buf, fmt, detail);
  e->status = code;
  e->msg = dupstr(buf);
}

static void scan_entry(ks_npz_reader *r, rd_entry *e) {
  zip_file_t *zf = zip_fopen_index(r->za, e->index, 0);
  if (!zf) { entry_fail(e, KS_EFORMAT, "cannot open the entry: %s", zip_strerror(r->za)); return; }
  unsigned char pre[12];
  uint64_t got = 0;
  if (read_full(zf, pre, 10, &got) != 0) {
    entry_fail(e, KS_EFORMAT, "cannot read the entry: %s", zip_file_strerror(zf));
    goto out;
  }
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    entry_fail(e, KS_EFORMAT, "%s", got < 6 || memcmp(pre, "\x93NUMPY", 6) != 0 ? "bad .npy magic (not a .npy file)"
                                                                              : "truncated .npy header");
    goto out;
  }
  int major = pre[6];
  uint64_t hlen, prefix;
  if (major == 1) {
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (read_full(zf, pre + 10, 2, &got) != 0 || got < 2) { entry_fail(e, KS_EFORMAT, "%s", "truncated .npy header"); goto out; }
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
    prefix = 12;
  } else {
    char v[32];
    snprintf(v, sizeof v, "%d.%d", major, pre[7]);
    entry_fail(e, KS_EUNSUPPORTED, "unsupported .npy format version %s", v);
    goto out;
  }
  if (hlen > NPY_MAX_HEADER) { entry_fail(e, KS_EFORMAT, "%s", "implausible .npy header length"); goto out; }
  char *h = malloc(hlen + 1);
  if (!h) { entry_fail(e, KS_ENOMEM, "%s", "out of memory reading a header"); goto out; }
  if (read_full(zf, h, hlen, &got) != 0 || got < hlen) {
    free(h);
    entry_fail(e, KS_EFORMAT, "%s", "truncated .npy header");
    goto out;
  }
  h[hlen] = '\0';
  char msg[300];
  int rc = parse_header(h, hlen, &e->info, msg, sizeof msg);
  free(h);
  if (rc != KS_OK) { entry_fail(e, rc, "%s", msg); goto out; }
  e->data_offset = prefix + hlen;
  if (e->entry_size >= 0) {
    uint64_t need = (uint64_t)e->info.size * ks_npz_dtype_size(e->info.dtype);
    if ((uint64_t)e->entry_size < e->data_offset + need) {
      char d[160];
      snprintf(d, sizeof d, "%llu bytes of data, the shape needs %llu",
               (unsigned long long)((uint64_t)e->entry_size - e->data_offset), (unsigned long long)need);
      entry_fail(e, KS_EFORMAT, "data shorter than the shape says (%s)", d);
    }
  }
out:
  zip_fclose(zf);
}

int ks_npz_reader_open(ks_npz_reader **out, const char *path) {
  if (!out || !path) return ks_error_set(KS_EINVAL, "ks_npz_reader_open: NULL argument");
  *out = NULL;
  int zerr = 0;
  zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
  if (!za) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, zerr);
    int code = zerr == ZIP_ER_NOENT ? KS_ENOTFOUND
             : (zerr == ZIP_ER_NOZIP || zerr == ZIP_ER_INCONS) ? KS_EFORMAT : KS_EIO;
    int rc = ks_error_set(code, "cannot open %s%s: %s", path,
                          code == KS_EFORMAT ? " as .npz (not a zip archive)" : "", zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return rc;
  }
  /* the archive's size bounds what its entries can really hold */
  struct stat fst;
  uint64_t fsize = stat(path, &fst) == 0 ? (uint64_t)fst.st_size : UINT64_MAX;
  ks_npz_reader *r = calloc(1, sizeof *r);
  zip_int64_t n = zip_get_num_entries(za, 0);
  if (!r || !(r->path = dupstr(path)) || n < 0) {
    if (r) free(r->path);
    free(r);
    zip_discard(za);
    return ks_error_set(KS_ENOMEM, "out of memory opening %s", path);
  }
  r->za = za;
  r->e = calloc((size_t)(n ? n : 1), sizeof *r->e);
  if (!r->e) { ks_npz_reader_close(r); return ks_error_set(KS_ENOMEM, "out of memory opening %s", path); }
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_GUESS);
    if (!name) continue;
    size_t len = strlen(name);
    if (len <= 4 || strcmp(name + len - 4, ".npy") != 0) continue;
    rd_entry *e = &r->e[r->n];
    e->key = malloc(len - 3);
    if (!e->key) { ks_npz_reader_close(r); return ks_error_set(KS_ENOMEM, "out of memory opening %s", path); }
    memcpy(e->key, name, len - 4);
    e->key[len - 4] = '\0';
    e->index = (zip_uint64_t)i;
    e->entry_size = -1;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, (zip_uint64_t)i, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE))
      e->entry_size = st.size > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)st.size;
    r->n++;
    /* The sizes in the zip directory are outside input and the .npy shape
     * is checked against them before anything of that size is allocated:
     * a stored entry holds exactly its compressed bytes, a compressed one at
     * most deflate's ratio (about 1032:1) of them, and those lie in the
     * file. A directory that says more is damaged or forged. */
    if (e->entry_size >= 0 && (st.valid & ZIP_STAT_COMP_SIZE) && (st.valid & ZIP_STAT_COMP_METHOD)) {
      uint64_t most = st.comp_method == ZIP_CM_STORE ? st.comp_size
                    : st.comp_size > (UINT64_MAX - 1024) / NPZ_MAX_RATIO ? UINT64_MAX
                    : st.comp_size * NPZ_MAX_RATIO + 1024;
      if (st.comp_size > fsize || (uint64_t)e->entry_size > most) {
        char d[200];
        snprintf(d, sizeof d, "the zip directory says %llu bytes stored in %llu bytes of a %llu-byte file",
                 (unsigned long long)st.size, (unsigned long long)st.comp_size, (unsigned long long)fsize);
        entry_fail(e, KS_EFORMAT, "%s (a damaged or forged archive)", d);
        continue;
      }
    }
    scan_entry(r, e);
  }
  *out = r;
  return KS_OK;
}

void ks_npz_reader_close(ks_npz_reader *r) {
  if (!r) return;
  for (int i = 0; i < r->n; i++) { free(r->e[i].key); free(r->e[i].msg); }
  free(r->e);
  if (r->za) zip_discard(r->za);
  free(r->path);
  free(r);
}

int ks_npz_reader_num_keys(const ks_npz_reader *r) { return r ? r->n : 0; }
const char *ks_npz_reader_key(const ks_npz_reader *r, int i) {
  return r && i >= 0 && i < r->n ? r->e[i].key : NULL;
}

static rd_entry *find_entry(const ks_npz_reader *r, const char *key) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->e[i].key, key) == 0) return &r->e[i];
  return NULL;
}

int ks_npz_reader_info(const ks_npz_reader *r, const char *key, ks_npz_info *info) {
  if (!r || !key) return ks_error_set(KS_EINVAL, "ks_npz_reader_info: NULL argument");
  rd_entry *e = find_entry(r, key);
  if (!e) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in %s", key, r->path);
  if (e->status != KS_OK)
    return ks_error_set(e->status, "%s: key '%s': %s", r->path, key, e->msg ? e->msg : "bad entry");
  if (info) *info = e->info;
  return KS_OK;
}

static int is_float(ks_npz_dtype d) { return d == KS_NPZ_F4 || d == KS_NPZ_F8; }

static int convert(const void *src, ks_npz_dtype sd, void *dst, ks_npz_dtype dd, int64_t n,
                   const char *path, const char *key) {
  if (sd == dd) { memcpy(dst, src, (size_t)n * ks_npz_dtype_size(sd)); return KS_OK; }
  for (int64_t i = 0; i < n; i++) {
    double dv = 0;
    int64_t iv = 0;
    switch (sd) {
      case KS_NPZ_F4: dv = ((const float *)src)[i]; break;
      case KS_NPZ_F8: dv = ((const double *)src)[i]; break;
      case KS_NPZ_I4: iv = ((const int32_t *)src)[i]; dv = (double)iv; break;
      case KS_NPZ_I8: iv = ((const int64_t *)src)[i]; dv = (double)iv; break;
    }
    switch (dd) {
      case KS_NPZ_F4: ((float *)dst)[i] = (sd == KS_NPZ_I8) ? (float)iv : (float)dv; break;
      case KS_NPZ_F8: ((double *)dst)[i] = (sd == KS_NPZ_I8) ? (double)iv : dv; break;
      case KS_NPZ_I4:
        if (iv < INT32_MIN || iv > INT32_MAX)
          return ks_error_set(KS_EUNSUPPORTED, "%s: key '%s': value %lld does not fit int32", path, key, (long long)iv);
        ((int32_t *)dst)[i] = (int32_t)iv;
        break;
      case KS_NPZ_I8: ((int64_t *)dst)[i] = iv; break;
    }
  }
  return KS_OK;
}

int ks_npz_reader_read(ks_npz_reader *r, const char *key, ks_npz_dtype dtype, void *dst, int64_t count) {
  ks_npz_info info;
  int rc = ks_npz_reader_info(r, key, &info);
  if (rc != KS_OK) return rc;
  if (ks_npz_dtype_size(dtype) == 0) return ks_error_set(KS_EINVAL, "ks_npz_reader_read: unknown dtype");
  if (is_float(info.dtype) && !is_float(dtype))
    return ks_error_set(KS_ESHAPE, "%s: key '%s' holds %s, cannot read it as %s", r->path, key,
                        ks_npz_dtype_descr(info.dtype), ks_npz_dtype_descr(dtype));
  if (count != info.size)
    return ks_error_set(KS_ESHAPE, "%s: key '%s' has %lld elements, %lld requested", r->path, key,
                        (long long)info.size, (long long)count);
  if (count > 0 && !dst) return ks_error_set(KS_EINVAL, "ks_npz_reader_read: dst is NULL");
  rd_entry *e = find_entry(r, key);
  uint64_t nbytes = (uint64_t)info.size * ks_npz_dtype_size(info.dtype);
  zip_file_t *zf = zip_fopen_index(r->za, e->index, 0);
  if (!zf) return ks_error_set(KS_EFORMAT, "%s: key '%s': %s", r->path, key, zip_strerror(r->za));
  char skip[4096];
  void *buf = nbytes == 0 ? (void *)skip : info.dtype == dtype ? dst : malloc(nbytes);
  uint64_t left = e->data_offset, got = 0;
  if (!buf) { rc = ks_error_set(KS_ENOMEM, "out of memory reading '%s'", key); goto out; }
  while (left > 0) {
    uint64_t c = left < sizeof skip ? left : sizeof skip;
    if (read_full(zf, skip, c, &got) != 0 || got < c) {
      rc = ks_error_set(KS_EFORMAT, "%s: key '%s': truncated .npy header", r->path, key);
      goto out;
    }
    left -= c;
  }
  if (read_full(zf, buf, nbytes, &got) != 0) {
    rc = ks_error_set(KS_EFORMAT, "%s: key '%s': cannot read the data: %s", r->path, key, zip_file_strerror(zf));
    goto out;
  }
  if (got < nbytes) {
    rc = ks_error_set(KS_EFORMAT, "%s: key '%s': data shorter than the shape says (%llu of %llu bytes)",
                      r->path, key, (unsigned long long)got, (unsigned long long)nbytes);
    goto out;
  }
  /* drain to the end so libzip verifies the CRC */
  while (read_full(zf, skip, sizeof skip, &got) == 0 && got > 0) {}
  {
    zip_error_t *ze = zip_file_get_error(zf);
    if (ze && zip_error_code_zip(ze) != ZIP_ER_OK) {
      rc = ks_error_set(KS_EFORMAT, "%s: key '%s': %s", r->path, key, zip_error_strerror(ze));
      goto out;
    }
  }
  if (buf != dst && nbytes) rc = convert(buf, info.dtype, dst, dtype, info.size, r->path, key);
out:
  if (buf && buf != dst && buf != (void *)skip) free(buf);
  zip_fclose(zf);
  return rc;
}

ks_tensor *ks_npz_reader_read_tensor(ks_npz_reader *r, const char *key) {
  ks_npz_info info;
  if (ks_npz_reader_info(r, key, &info) != KS_OK) return NULL;
  int f = is_float(info.dtype);
  ks_tensor *t = ks_tensor_new(f ? KS_F32 : KS_I32, info.ndim, info.shape);
  if (!t) return NULL;
  if (ks_npz_reader_read(r, key, f ? KS_NPZ_F4 : KS_NPZ_I4, t->data, info.size) != KS_OK) {
    ks_tensor_free(t);
    return NULL;
  }
  return t;
}
