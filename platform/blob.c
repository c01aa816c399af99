/*
 * platform/blob.c — the content-addressed blob store: blobs/<2 hex>/<62 hex>,
 * named by the sha256 of their bytes, written once (tmp file + rename, so a
 * crash never leaves a partial blob under its final name), read-only after.
 *
 * Garbage collection (kp_blob_collect, used by `run/sweep/experiment
 * delete`) removes blobs nothing in the store refers to any more. A writer
 * stores a blob before the row that refers to it commits, so a blob that
 * looks unreferenced may be about to be used (a deduplicated put of the same
 * bytes). Writers therefore hold a shared flock on blobs/.lock from their
 * first put until the process exits; the collector takes it exclusively,
 * checks the references again under it and only then unlinks. Blobs it could
 * not check (another process held the lock too long) are remembered in
 * blobs/gc-pending and collected by the next collection.
 */
#include "kp.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int kp__hash_copy(int fd, int out_fd, char hex[65], int64_t *size);

void kp_blob_path(const kp_ws *ws, const char *hex, char *out, size_t n) {
  snprintf(out, n, "%s/blobs/%.2s/%s", ws->root, hex, hex + 2);
}

/* ---- the writers' lock ---------------------------------------------------------------- */
static int g_lock_fd = -1;        /* blobs/.lock of g_lock_root, held shared once pinned */
static char g_lock_root[4096];

static int lock_open(const kp_ws *ws) {
  if (g_lock_fd >= 0 && !strcmp(g_lock_root, ws->root)) return 0;
  if (g_lock_fd >= 0) close(g_lock_fd);  /* another workspace: its pin ends here */
  char p[4200];
  snprintf(p, sizeof p, "%s/blobs/.lock", ws->root);
  g_lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (g_lock_fd < 0) return kp_err("cannot open the blob store's lock %s: %s", p, strerror(errno));
  snprintf(g_lock_root, sizeof g_lock_root, "%s", ws->root);
  return 0;
}

static int g_pinned;

/* Holds the shared lock until the process exits (see the header comment). */
static int blob_pin(const kp_ws *ws) {
  if (g_pinned && g_lock_fd >= 0 && !strcmp(g_lock_root, ws->root)) return 0;
  g_pinned = 0;
  if (lock_open(ws) != 0) return -1;
  while (flock(g_lock_fd, LOCK_SH) != 0)
    if (errno != EINTR) return kp_err("cannot lock the blob store: %s", strerror(errno));
  g_pinned = 1;
  return 0;
}

/* Moves tmp file 'tmp' into place as blob 'hex' (or drops it if present). */
static int blob_commit(kp_ws *ws, const char *tmp, const char *hex) {
  if (blob_pin(ws) != 0) { unlink(tmp); return -1; }
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
  int rc = kp_blob_put_fd(ws, in, path, hex, size);
  close(in);
  return rc;
}

int kp_blob_put_fd(kp_ws *ws, int in, const char *path, char hex[65], int64_t *size) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s/tmp/blob.XXXXXX", ws->root);
  int out = mkstemp(tmp);
  if (out < 0) return kp_err("cannot create a temporary file in %s/tmp: %s", ws->root, strerror(errno));
  int rc = kp__hash_copy(in, out, hex, size);
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

/* ---- garbage collection ------------------------------------------------------------------ */
int kp_blob_pin(const kp_ws *ws) { return blob_pin(ws); }

/* What refers to a blob: the store's records (kp_store_blobs_referenced: run
 * files, model files, snapshots, service entries; a table that starts to
 * refer to blobs adds its query to BLOB_REFS in store_sqlite.c) and the files
 * that snapshot manifests list (read below). */

static int hex_ok(const char *h) {
  size_t n = 0;
  for (; h[n]; n++)
    if (!((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f'))) return 0;
  return n == 64;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Takes the lock exclusively, waiting at most 'wait_ms'; 1 when held. */
static int lock_exclusive(const kp_ws *ws, int wait_ms) {
  if (lock_open(ws) != 0) return 0;
  for (int waited = 0;; waited += 50) {
    if (flock(g_lock_fd, LOCK_EX | LOCK_NB) == 0) return 1;
    if (errno != EWOULDBLOCK && errno != EINTR) return 0;
    if (waited >= wait_ms) return 0;
    sleep_ms(50);
  }
}

static void lock_release(void) {
  if (g_lock_fd < 0) return;
  flock(g_lock_fd, g_pinned ? LOCK_SH : LOCK_UN);
}

/* A set of candidate blobs (sorted, distinct once finished). */
typedef struct cand_set { char (*v)[65]; size_t n, cap; } cand_set;

static int cand_add(cand_set *c, const char *hex) {
  if (!hex_ok(hex)) return 0;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    void *p = realloc(c->v, cap * sizeof *c->v);
    if (!p) return kp_err("out of memory");
    c->v = p;
    c->cap = cap;
  }
  snprintf(c->v[c->n++], 65, "%s", hex);
  return 0;
}

static int cand_cmp(const void *a, const void *b) { return strcmp(a, b); }

static void cand_finish(cand_set *c) {
  if (!c->n) return;
  qsort(c->v, c->n, sizeof *c->v, cand_cmp);
  size_t w = 1;
  for (size_t i = 1; i < c->n; i++)
    if (strcmp(c->v[i], c->v[w - 1])) memcpy(c->v[w++], c->v[i], 65);
  c->n = w;
}

static long cand_find(const cand_set *c, const char *hex) {
  char(*hit)[65] = bsearch(hex, c->v, c->n, sizeof *c->v, cand_cmp);
  return hit ? (long)(hit - c->v) : -1;
}

/* Adds the candidates remembered in blobs/gc-pending. */
static int add_pending(kp_ws *ws, cand_set *c) {
  char p[4200];
  snprintf(p, sizeof p, "%s/blobs/gc-pending", ws->root);
  char *s = kp_read_file(p, NULL);
  if (!s) return 0;
  int rc = 0;
  for (char *line = strtok(s, "\n"); line && rc == 0; line = strtok(NULL, "\n")) rc = cand_add(c, line);
  free(s);
  return rc;
}

/* Appends blobs to blobs/gc-pending (checked by the next collection). */
static void remember_pending(kp_ws *ws, char (*hex)[65], size_t n) {
  char p[4200];
  snprintf(p, sizeof p, "%s/blobs/gc-pending", ws->root);
  FILE *f = fopen(p, "a");
  if (!f) return;
  for (size_t i = 0; i < n; i++)
    if (hex_ok(hex[i])) fprintf(f, "%s\n", hex[i]);
  fclose(f);
}

/* Marks used every candidate that a snapshot manifest lists. */
static int mark_manifest_refs(kp_ws *ws, const cand_set *c, unsigned char *used) {
  char **snaps;
  size_t ns;
  if (kp_store_snapshot_list(ws->store, &snaps, &ns) != 0) return kp_store_report();
  int rc = 0;
  for (size_t i = 0; i < ns && rc == 0; i++) {
    const char *snap = snaps[i];
    if (!hex_ok(snap)) continue;
    char path[4200];
    kp_blob_path(ws, snap, path, sizeof path);
    char *txt = kp_read_file(path, NULL);
    if (!txt) continue;  /* a missing manifest protects nothing */
    cJSON *man = cJSON_Parse(txt);
    free(txt);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(man, "files"), *f;
    if (!cJSON_IsArray(files)) {  /* unreadable: do not guess, keep everything */
      cJSON_Delete(man);
      rc = kp_err("snapshot %s: cannot read its manifest; no blob was removed", snap);
      break;
    }
    cJSON_ArrayForEach(f, files) {
      const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
      long k = sha ? cand_find(c, sha) : -1;
      if (k >= 0) used[k] = 1;
    }
    cJSON_Delete(man);
  }
  kp_strings_free(snaps, ns);
  return rc;
}

int kp_blob_collect(kp_ws *ws, char (*hex)[65], size_t n, kp_gc_result *res) {
  memset(res, 0, sizeof *res);
  if (!lock_exclusive(ws, 10000)) {
    remember_pending(ws, hex, n);
    res->deferred = (int)n;
    return 0;
  }
  int rc = -1;
  cand_set c = {0};
  unsigned char *used = NULL;
  const char **ptrs = NULL;
  for (size_t i = 0; i < n; i++)
    if (cand_add(&c, hex[i]) != 0) goto out;
  if (add_pending(ws, &c) != 0) goto out;
  cand_finish(&c);
  used = calloc(c.n + 1, 1);
  ptrs = calloc(c.n + 1, sizeof *ptrs);
  if (!used || !ptrs) { kp_err("out of memory"); goto out; }
  for (size_t i = 0; i < c.n; i++) ptrs[i] = c.v[i];
  /* one consistent view of the references */
  if (kp_store_begin(ws->store) != 0) { kp_store_report(); goto out; }
  if (kp_store_blobs_referenced(ws->store, ptrs, c.n, used) != 0) {
    kp_store_report();
    kp_store_rollback(ws->store);
    goto out;
  }
  if (mark_manifest_refs(ws, &c, used) != 0) { kp_store_rollback(ws->store); goto out; }
  /* it only read: writers need not wait while files are removed (the blob
   * lock, held exclusively here, keeps new references out) */
  kp_store_rollback(ws->store);
  int unref = 0;
  for (size_t i = 0; i < c.n; i++) {
    if (used[i]) continue;
    unref++;
    char p[4200];
    kp_blob_path(ws, c.v[i], p, sizeof p);
    struct stat st;
    if (lstat(p, &st) != 0) continue;  /* already gone */
    if (unlink(p) != 0) { kp_err("cannot remove blob %s: %s", p, strerror(errno)); continue; }
    res->removed++;
    res->bytes += (int64_t)st.st_size;
    char *slash = strrchr(p, '/');
    *slash = '\0';
    rmdir(p);  /* only when empty */
  }
  res->kept = (int)c.n - unref;
  char p[4200];
  snprintf(p, sizeof p, "%s/blobs/gc-pending", ws->root);
  unlink(p);
  rc = 0;
out:
  free(c.v);
  free(used);
  free(ptrs);
  lock_release();
  return rc;
}
