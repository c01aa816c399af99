/*
 * platform/blob.c — the content-addressed blob store: blobs/<2 hex>/<62 hex>,
 * named by the sha256 of their bytes, written once (tmp file + rename, so a
 * crash never leaves a partial blob under its final name), read-only after.
 */
#include "kp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kp__hash_copy(int fd, int out_fd, char hex[65], int64_t *size);

void kp_blob_path(const kp_ws *ws, const char *hex, char *out, size_t n) {
  snprintf(out, n, "%s/blobs/%.2s/%s", ws->root, hex, hex + 2);
}

/* Moves tmp file 'tmp' into place as blob 'hex' (or drops it if present). */
static int blob_commit(kp_ws *ws, const char *tmp, const char *hex) {
  char dst[4200], dir[4200];
  kp_blob_path(ws, hex, dst, sizeof dst);
  snprintf(dir, sizeof dir, "%s/blobs/%.2s", ws->root, hex);
  if (kp_mkdirs(dir, 0700) != 0) { unlink(tmp); return -1; }
  struct stat st;
  if (stat(dst, &st) == 0) { unlink(tmp); return 0; }  /* deduplicated */
  chmod(tmp, 0400);  /* read-only, and private like the rest of the workspace */
  if (rename(tmp, dst) != 0) {
    int e = errno;
    unlink(tmp);
    return kp_err("cannot store blob %s: %s", dst, strerror(e));
  }
  return 0;
}

int kp_blob_put_file(kp_ws *ws, const char *path, char hex[65], int64_t *size) {
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0) return kp_err("cannot read %s: %s", path, strerror(errno));
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/tmp/blob.XXXXXX", ws->root);
  int out = mkstemp(tmp);
  if (out < 0) { close(in); return kp_err("cannot create a temporary file in %s/tmp: %s", ws->root, strerror(errno)); }
  int rc = kp__hash_copy(in, out, hex, size);
  close(in);
  if (fsync(out) != 0) rc = -1;
  if (close(out) != 0) rc = -1;
  if (rc != 0) { unlink(tmp); return kp_err("cannot copy %s into the blob store: %s", path, strerror(errno)); }
  return blob_commit(ws, tmp, hex);
}

int kp_blob_put_mem(kp_ws *ws, const void *data, size_t len, char hex[65]) {
  kp_sha256_hex(data, len, hex);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/tmp/blob.XXXXXX", ws->root);
  int out = mkstemp(tmp);
  if (out < 0) return kp_err("cannot create a temporary file in %s/tmp: %s", ws->root, strerror(errno));
  int rc = (write(out, data, len) == (ssize_t)len && fsync(out) == 0) ? 0 : -1;
  if (close(out) != 0) rc = -1;
  if (rc != 0) { unlink(tmp); return kp_err("cannot write a blob: %s", strerror(errno)); }
  return blob_commit(ws, tmp, hex);
}

int kp_blob_get(const kp_ws *ws, const char *hex, const char *dst, mode_t mode) {
  char src[4200];
  kp_blob_path(ws, hex, src, sizeof src);
  struct stat st;
  if (lstat(dst, &st) == 0 && S_ISLNK(st.st_mode))
    return kp_err("refusing to write %s: it is a symbolic link", dst);
  return kp_copy_file(src, dst, mode);
}

char *kp_blob_read(const kp_ws *ws, const char *hex, size_t *len) {
  char src[4200];
  kp_blob_path(ws, hex, src, sizeof src);
  char *s = kp_read_file(src, len);
  if (!s) kp_err("blob %s is missing from the store (%s)", hex, src);
  return s;
}
