/*
 * platform/snapshot.c — snapshots of a run's source directory.
 *
 * A snapshot is a manifest blob, JSON {"files": [{"path", "mode", "size",
 * "sha256"}, ...]} sorted by path, whose own sha256 is the snapshot id; each
 * file's bytes are a blob. Ignore rules come from the first of .kusariignore,
 * .amlignore, .gitignore in the source's top directory (one glob per line,
 * '#' comments, a trailing '/' matches directories only, a pattern with no
 * '/' matches the base name at any depth, else the path from the top).
 * Symbolic links are followed only when they stay inside the source
 * directory; one that points outside fails the snapshot. A workspace that
 * lives inside the source directory is left out.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct snap_ctx {
  const char *skip;         /* a directory left out (the workspace), or NULL */
  kp_snapshot_put put;
  void *put_ctx;
  char root[PATH_MAX];      /* realpath of the source */
  char **pats;
  size_t npats;
  uint64_t limit, bytes;
  int nfiles;
  cJSON *files;
} snap_ctx;

static void load_ignores(snap_ctx *c) {
  static const char *const names[] = {".kusariignore", ".amlignore", ".gitignore"};
  for (size_t i = 0; i < 3; i++) {
    char p[PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/%s", c->root, names[i]);
    char *s = kp_read_file(p, NULL);
    if (!s) continue;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
      size_t n = strlen(line);
      while (n && (line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = '\0';
      if (!n || line[0] == '#' || line[0] == '!') continue;
      char **np = realloc(c->pats, (c->npats + 1) * sizeof *np);
      if (!np) break;
      c->pats = np;
      c->pats[c->npats++] = strdup(line[0] == '/' ? line + 1 : line);
    }
    free(s);
    return;
  }
}

static int ignored(const snap_ctx *c, const char *rel, int is_dir) {
  const char *base = strrchr(rel, '/');
  base = base ? base + 1 : rel;
  for (size_t i = 0; i < c->npats; i++) {
    char pat[PATH_MAX];
    snprintf(pat, sizeof pat, "%s", c->pats[i]);
    size_t n = strlen(pat);
    int dir_only = n && pat[n - 1] == '/';
    if (dir_only) pat[n - 1] = '\0';
    if (dir_only && !is_dir) continue;
    if (strchr(pat, '/')) {
      if (fnmatch(pat, rel, FNM_PATHNAME) == 0) return 1;
    } else if (fnmatch(pat, base, 0) == 0) {
      return 1;
    }
  }
  return 0;
}

static int snap_walk(snap_ctx *c, const char *rel) {
  char dir[PATH_MAX * 2];
  snprintf(dir, sizeof dir, "%s%s%s", c->root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) return kp_err("cannot read directory %s: %s", dir, strerror(errno));
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char r[PATH_MAX], full[PATH_MAX * 2];
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(full, sizeof full, "%s/%s", c->root, r);
    struct stat st;
    if (lstat(full, &st) != 0) { rc = kp_err("cannot stat %s: %s", full, strerror(errno)); break; }
    if (S_ISLNK(st.st_mode)) {
      char real[PATH_MAX];
      size_t rl = strlen(c->root);
      if (!realpath(full, real) || strncmp(real, c->root, rl) != 0 || (real[rl] != '/' && real[rl] != '\0')) {
        rc = kp_err("symbolic link %s points outside the source directory %s", full, c->root);
        kp_hint("replace the link by a copy of what it points to, or add '%s' to .kusariignore", r);
        break;
      }
      if (stat(full, &st) != 0) { rc = kp_err("cannot stat %s: %s", full, strerror(errno)); break; }
      if (S_ISDIR(st.st_mode)) {
        if (ignored(c, r, 1)) continue;
        rc = kp_err("symbolic link %s points to a directory; snapshots do not follow directory links", full);
        kp_hint("add '%s' to .kusariignore", r);
        break;
      }
    }
    if (S_ISDIR(st.st_mode)) {
      if (ignored(c, r, 1)) continue;
      if (c->skip && !strcmp(full, c->skip)) continue;  /* the workspace itself, when it lives in the source */
      rc = snap_walk(c, r);
    } else if (S_ISREG(st.st_mode)) {
      if (ignored(c, r, 0)) continue;
      c->bytes += (uint64_t)st.st_size;
      if (c->bytes > c->limit) {
        rc = kp_err("the source directory %s is over the snapshot size limit of %.1f MB (at %s)", c->root,
                    (double)c->limit / 1e6, r);
        kp_hint("list large files (data sets, outputs) in %s/.kusariignore, or raise the limit with --snapshot-limit-mb", c->root);
        break;
      }
      char hex[65];
      int64_t size;
      if (c->put(c->put_ctx, full, hex, &size) != 0) { rc = -1; break; }
      cJSON *f = cJSON_CreateObject();
      cJSON_AddStringToObject(f, "path", r);
      cJSON_AddNumberToObject(f, "mode", (double)(st.st_mode & 0777));
      cJSON_AddNumberToObject(f, "size", (double)size);
      cJSON_AddStringToObject(f, "sha256", hex);
      cJSON_AddItemToArray(c->files, f);
      c->nfiles++;
    }
  }
  closedir(d);
  return rc;
}

static int cmp_path(const void *a, const void *b) {
  const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
  return strcmp(cJSON_GetObjectItemCaseSensitive(x, "path")->valuestring,
                cJSON_GetObjectItemCaseSensitive(y, "path")->valuestring);
}

int kp_snapshot_walk(const char *src, uint64_t limit, const char *skip, kp_snapshot_put put, void *put_ctx,
                     char **manifest, uint64_t *bytes, int *nfiles) {
  snap_ctx c = {.skip = skip, .put = put, .put_ctx = put_ctx, .limit = limit};
  *manifest = NULL;
  struct stat st;
  if (!realpath(src, c.root) || stat(c.root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    kp_err("source directory '%s' does not exist or is not a directory", src);
    kp_hint("pass --source DIR with the directory that holds your training program");
    return -1;
  }
  load_ignores(&c);
  c.files = cJSON_CreateArray();
  int rc = snap_walk(&c, "");
  for (size_t i = 0; i < c.npats; i++) free(c.pats[i]);
  free(c.pats);
  if (rc == 0) {
    /* sort for a stable id */
    int n = cJSON_GetArraySize(c.files);
    cJSON **items = calloc((size_t)n + 1, sizeof *items);
    for (int i = 0; i < n; i++) items[i] = cJSON_GetArrayItem(c.files, i);
    qsort(items, (size_t)n, sizeof *items, cmp_path);
    cJSON *sorted = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemReferenceToArray(sorted, items[i]);
    cJSON *man = cJSON_CreateObject();
    cJSON_AddItemToObject(man, "files", sorted);
    *manifest = cJSON_PrintUnformatted(man);
    if (!*manifest) rc = kp_err("out of memory");
    cJSON_Delete(man);
    free(items);
  }
  cJSON_Delete(c.files);
  if (bytes) *bytes = c.bytes;
  if (nfiles) *nfiles = c.nfiles;
  return rc;
}

static int put_local(void *ctx, const char *path, char hex[65], int64_t *size) {
  return kp_blob_put_file(ctx, path, hex, size);
}

int kp_snapshot_create(kp_ws *ws, const char *src, uint64_t limit, char hex[65], uint64_t *bytes, int *nfiles) {
  char *man = NULL;
  int rc = kp_snapshot_walk(src, limit, ws->root, put_local, ws, &man, bytes, nfiles);
  if (rc == 0) rc = kp_blob_put_mem(ws, man, strlen(man), hex);
  cJSON_free(man);
  return rc;
}

int kp_snapshot_extract(kp_ws *ws, const char *hex, const char *dst) {
  char *txt = kp_blob_read(ws, hex, NULL);
  if (!txt) return -1;
  cJSON *man = cJSON_Parse(txt);
  free(txt);
  cJSON *files = man ? cJSON_GetObjectItemCaseSensitive(man, "files") : NULL;
  if (!cJSON_IsArray(files)) { cJSON_Delete(man); return kp_err("snapshot %s: bad manifest", hex); }
  int rc = kp_mkdirs(dst, 0755);
  cJSON *f;
  cJSON_ArrayForEach(f, files) {
    if (rc != 0) break;
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "path"));
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    cJSON *mode = cJSON_GetObjectItemCaseSensitive(f, "mode");
    if (!path || !sha || !cJSON_IsNumber(mode) || kp_rel_path_ok(path) != 0) {
      rc = kp_err("snapshot %s: bad manifest entry", hex);
      break;
    }
    char out[8192];
    snprintf(out, sizeof out, "%s/%s", dst, path);
    char *slash = strrchr(out, '/');
    *slash = '\0';
    rc = kp_mkdirs(out, 0755);
    *slash = '/';
    if (rc == 0) rc = kp_blob_get(ws, sha, out, (mode_t)mode->valueint | 0600);
  }
  cJSON_Delete(man);
  return rc;
}
