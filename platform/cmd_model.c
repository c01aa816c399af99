/*
 * platform/cmd_model.c — the model registry: `kusari model register|list|show|
 * download|delete|tag|untag`. A model version is a set of files (one file, or every
 * file of a folder) stored by sha256 in the blob store, with lineage to the
 * run it came from. Versions count up per name from 1; a deleted version's
 * number is not reused.
 */
#include "kp.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kp_download_files(kp_ws *ws, sqlite3_stmt *st, const char *to, const char *strip, int *count);
int kp_model_deploy(int argc, char **argv);  /* cmd_service.c */

/* Splits "NAME[:VERSION]"; version 0 = latest. Returns 0 or prints an error. */
static int parse_ref(const char *cmd, const char *ref, char *name, size_t n, long long *version) {
  const char *c = strrchr(ref, ':');
  *version = 0;
  if (c) {
    if (kp_parse_int(c + 1, version) != 0 || *version < 1)
      return kp_usage_err(cmd, "'%s': the version after ':' must be a positive integer", ref);
    snprintf(name, n, "%.*s", (int)(c - ref), ref);
  } else {
    snprintf(name, n, "%s", ref);
  }
  if (kp_name_ok(name) != 0)
    return kp_usage_err(cmd, "invalid model name '%s': use letters, digits, '.', '_' and '-'", name);
  return 0;
}

/* Resolves NAME[:VERSION] to a model id; prints an error when absent. */
static sqlite3_int64 find_model(kp_ws *ws, const char *name, long long version, long long *got) {
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st, "SELECT id, version FROM models WHERE name=?1 AND (?2=0 OR version=?2) ORDER BY version DESC LIMIT 1") != 0)
    return -1;
  kp_bind_text(st, 1, name);
  sqlite3_bind_int64(st, 2, version);
  sqlite3_int64 id = -1;
  if (kp_db_row(st) > 0) {
    id = sqlite3_column_int64(st, 0);
    if (got) *got = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  if (id < 0) {
    if (version) kp_err("model '%s' has no version %lld", name, version);
    else kp_err("no model named '%s' is registered", name);
    kp_hint("list models with 'kusari model list'");
  }
  return id;
}

typedef struct mfile { char path[8192]; char sha[65]; int64_t size; } mfile;
typedef struct mfiles { mfile *v; size_t n; } mfiles;

static int add_file(mfiles *f, const char *path, const char *sha, int64_t size) {
  mfile *nv = realloc(f->v, (f->n + 1) * sizeof *nv);
  if (!nv) return kp_err("out of memory");
  f->v = nv;
  snprintf(f->v[f->n].path, sizeof f->v[f->n].path, "%s", path);
  snprintf(f->v[f->n].sha, sizeof f->v[f->n].sha, "%s", sha);
  f->v[f->n].size = size;
  f->n++;
  return 0;
}

/* 1 when the path's name ends in ".npz" */
static int is_npz(const char *path) {
  size_t l = strlen(path);
  return l > 4 && !strcmp(path + l - 4, ".npz");
}

/* Stores local files under 'dir' as "rel/..." (symbolic links are refused). */
static int collect_local(kp_ws *ws, mfiles *f, const char *dir, const char *rel) {
  DIR *d = opendir(dir);
  if (!d) return kp_err("cannot read %s: %s", dir, strerror(errno));
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char full[8192], r[8192];
    snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
    snprintf(r, sizeof r, "%s/%s", rel, e->d_name);
    struct stat st;
    if (lstat(full, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      rc = kp_err("%s is a symbolic link; model folders may hold only regular files and folders", full);
    } else if (S_ISDIR(st.st_mode)) {
      rc = collect_local(ws, f, full, r);
    } else if (S_ISREG(st.st_mode)) {
      char hex[65];
      int64_t size;
      rc = kp_blob_put_file(ws, full, hex, &size);
      if (rc == 0) rc = add_file(f, r, hex, size);
    }
  }
  closedir(d);
  return rc;
}

static int model_register(int argc, char **argv) {
  const char *run = NULL, *name = NULL, *path = NULL, *file = NULL, *desc = "";
  const char *tags[KP_MULTI_MAX];
  int ntags = 0;
  const char *cmd = "model register";
  kp_opt opts[] = {{.name = "run", .val = &run}, {.name = "name", .val = &name}, {.name = "path", .val = &path},
                   {.name = "file", .val = &file}, {.name = "description", .val = &desc},
                   {.name = "tag", .multi = tags, .nmulti = &ntags}, {0}};
  if (kp_parse(cmd, argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  if (!name) return kp_usage_err(cmd, "missing --name NAME");
  if (kp_name_ok(name) != 0)
    return kp_usage_err(cmd, "invalid model name '%s': use letters, digits, '.', '_' and '-', starting with a letter or digit", name);
  if (!!path == !!file) return kp_usage_err(cmd, "give exactly one of --path (a run's file or folder, with --run) and --file (a local file or folder)");
  if (path && !run) return kp_usage_err(cmd, "--path needs --run ID (the run whose file to register)");
  for (int i = 0; i < ntags; i++)
    if (!strchr(tags[i], '=') || tags[i][0] == '=') return kp_usage_err(cmd, "--tag '%s' must look like key=value", tags[i]);
  char prefix[4200] = "";
  int with_desc = 0;  /* model.json was added beside a single .npz */
  if (path) {
    if (kp_rel_path_ok(path) != 0) {
      kp_err("--path '%s' must be a path inside the run's files (not absolute, no '..')", path);
      kp_hint("list the run's files with 'kusari run files %s'", run);
      return 2;
    }
    snprintf(prefix, sizeof prefix, "%s", path);
    size_t pl = strlen(prefix);
    while (pl && prefix[pl - 1] == '/') prefix[--pl] = '\0';
  }
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  mfiles f = {0};
  int rc = 1;
  sqlite3_stmt *st = NULL;
  if (run) {
    if (kp_db_prepare(&ws, &st, "SELECT status FROM runs WHERE id=?") != 0) goto out;
    kp_bind_text(st, 1, run);
    if (kp_db_row(st) <= 0) {
      kp_err("no run with id '%s' in this workspace", run);
      kp_hint("list runs with 'kusari run list'");
      goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
  }
  if (path) {
    if (kp_blob_pin(&ws) != 0) goto out;  /* the run's blobs stay until the model refers to them */
    if (kp_db_prepare(&ws, &st, "SELECT path, sha256, size FROM files WHERE run_id=?1 AND (path=?2 OR substr(path, 1, length(?2)+1)=?2||'/') ORDER BY path") != 0)
      goto out;
    kp_bind_text(st, 1, run);
    kp_bind_text(st, 2, prefix);
    const char *slash = strrchr(prefix, '/');
    size_t strip = slash ? (size_t)(slash - prefix) + 1 : 0;  /* keep the last part: outputs/model.npz -> model.npz */
    while (kp_db_row(st) > 0)
      if (add_file(&f, kp_col_text(st, 0) + strip, kp_col_text(st, 1), sqlite3_column_int64(st, 2)) != 0) goto out;
    sqlite3_finalize(st);
    st = NULL;
    if (f.n == 0) {
      kp_err("run %s has no file or folder '%s' to register", run, prefix);
      kp_hint("list the run's files with 'kusari run files %s'", run);
      goto out;
    }
    /* a single .npz: the network description written beside it (model.json
     * in the same folder of the run's files) goes with it, so that the
     * model's files are servable on their own (download, deploy) */
    if (f.n == 1 && is_npz(prefix) && !strcmp(f.v[0].path, prefix + strip)) {
      char sib[4300];
      snprintf(sib, sizeof sib, "%.*smodel.json", (int)strip, prefix);
      if (kp_db_prepare(&ws, &st, "SELECT path, sha256, size FROM files WHERE run_id=?1 AND path=?2") != 0) goto out;
      kp_bind_text(st, 1, run);
      kp_bind_text(st, 2, sib);
      if (kp_db_row(st) > 0) {
        if (add_file(&f, kp_col_text(st, 0) + strip, kp_col_text(st, 1), sqlite3_column_int64(st, 2)) != 0) goto out;
        with_desc = 1;
      }
      sqlite3_finalize(st);
      st = NULL;
    }
  } else {
    struct stat sst;
    if (lstat(file, &sst) != 0) {
      kp_err("cannot register '%s': %s", file, strerror(errno));
      goto out;
    }
    char real[PATH_MAX];
    if (!realpath(file, real)) { kp_err("cannot resolve %s", file); goto out; }
    const char *base = strrchr(real, '/');
    base = base && base[1] ? base + 1 : "model";
    if (S_ISDIR(sst.st_mode)) {
      if (collect_local(&ws, &f, real, base) != 0) goto out;
      if (f.n == 0) { kp_err("folder %s holds no files to register", file); goto out; }
    } else if (S_ISREG(sst.st_mode)) {
      char hex[65];
      int64_t size;
      if (kp_blob_put_file(&ws, real, hex, &size) != 0 || add_file(&f, base, hex, size) != 0) goto out;
      /* the same for a local .npz with model.json beside it */
      char sib[PATH_MAX + 16];
      struct stat dst;
      const char *slash = strrchr(real, '/');
      snprintf(sib, sizeof sib, "%.*smodel.json", slash ? (int)(slash + 1 - real) : 0, real);
      if (is_npz(base) && lstat(sib, &dst) == 0 && S_ISREG(dst.st_mode)) {
        if (kp_blob_put_file(&ws, sib, hex, &size) != 0 || add_file(&f, "model.json", hex, size) != 0) goto out;
        with_desc = 1;
      }
    } else {
      kp_err("'%s' is neither a regular file nor a folder (symbolic links are not registered)", file);
      goto out;
    }
  }
  if (kp_db_begin(&ws) != 0) goto out;
  long long version = 1;
  if (kp_db_prepare(&ws, &st, "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name=?") != 0) goto fail;
  kp_bind_text(st, 1, name);
  if (kp_db_row(st) > 0) version = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (kp_db_prepare(&ws, &st, "INSERT INTO models(name, version, run_id, path, description, created) VALUES(?,?,?,?,?,?)") != 0) goto fail;
  kp_bind_text(st, 1, name);
  sqlite3_bind_int64(st, 2, version);
  kp_bind_text(st, 3, run);
  kp_bind_text(st, 4, path ? prefix : file);
  kp_bind_text(st, 5, desc);
  sqlite3_bind_double(st, 6, kp_now());
  if (kp_db_done(&ws, st) != 0) goto fail;
  sqlite3_finalize(st);
  sqlite3_int64 mid = sqlite3_last_insert_rowid(ws.db);
  if (kp_db_prepare(&ws, &st, "INSERT INTO model_files(model_id, path, size, sha256) VALUES(?,?,?,?)") != 0) goto fail;
  int64_t total = 0;
  for (size_t i = 0; i < f.n; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, mid);
    kp_bind_text(st, 2, f.v[i].path);
    sqlite3_bind_int64(st, 3, f.v[i].size);
    kp_bind_text(st, 4, f.v[i].sha);
    if (kp_db_done(&ws, st) != 0) goto fail;
    total += f.v[i].size;
  }
  sqlite3_finalize(st);
  st = NULL;
  for (int i = 0; i < ntags; i++) {
    const char *eq = strchr(tags[i], '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - tags[i]), tags[i]);
    if (kp_db_prepare(&ws, &st, "INSERT OR REPLACE INTO model_tags(model_id, key, value) VALUES(?,?,?)") != 0) goto fail;
    sqlite3_bind_int64(st, 1, mid);
    kp_bind_text(st, 2, key);
    kp_bind_text(st, 3, eq + 1);
    if (kp_db_done(&ws, st) != 0) goto fail;
    sqlite3_finalize(st);
    st = NULL;
  }
  if (kp_db_commit(&ws) != 0) goto fail;
  printf("Registered model %s version %lld (%zu file%s, %lld bytes%s%s%s)\n", name, version, f.n, f.n == 1 ? "" : "s",
         (long long)total, run ? ", from run " : "", run ? run : "",
         with_desc ? "; with model.json, the network description beside the weights" : "");
  printf("%s:%lld\n", name, version);
  rc = 0;
  goto out;
fail:
  kp_db_rollback(&ws);
out:
  sqlite3_finalize(st);
  free(f.v);
  kp_ws_close(&ws);
  return rc;
}

static cJSON *model_json(kp_ws *ws, sqlite3_stmt *row) {
  cJSON *o = cJSON_CreateObject();
  sqlite3_int64 id = sqlite3_column_int64(row, 0);
  cJSON_AddStringToObject(o, "name", kp_col_text(row, 1));
  cJSON_AddNumberToObject(o, "version", (double)sqlite3_column_int64(row, 2));
  if (sqlite3_column_type(row, 3) == SQLITE_NULL) cJSON_AddNullToObject(o, "run");
  else cJSON_AddStringToObject(o, "run", kp_col_text(row, 3));
  cJSON_AddStringToObject(o, "path", kp_col_text(row, 4));
  cJSON_AddStringToObject(o, "description", kp_col_text(row, 5));
  char t[64];
  kp_fmt_time(sqlite3_column_double(row, 6), t, sizeof t);
  cJSON_AddStringToObject(o, "created", t);
  cJSON *files = cJSON_AddArrayToObject(o, "files");
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st, "SELECT path, size, sha256 FROM model_files WHERE model_id=? ORDER BY path") == 0) {
    sqlite3_bind_int64(st, 1, id);
    while (kp_db_row(st) > 0) {
      cJSON *f = cJSON_CreateObject();
      cJSON_AddStringToObject(f, "path", kp_col_text(st, 0));
      cJSON_AddNumberToObject(f, "size", (double)sqlite3_column_int64(st, 1));
      cJSON_AddStringToObject(f, "sha256", kp_col_text(st, 2));
      cJSON_AddItemToArray(files, f);
    }
    sqlite3_finalize(st);
  }
  cJSON *tags = cJSON_AddObjectToObject(o, "tags");
  if (kp_db_prepare(ws, &st, "SELECT key, value FROM model_tags WHERE model_id=? ORDER BY key") == 0) {
    sqlite3_bind_int64(st, 1, id);
    while (kp_db_row(st) > 0) cJSON_AddStringToObject(tags, kp_col_text(st, 0), kp_col_text(st, 1));
    sqlite3_finalize(st);
  }
  return o;
}

static const char MODEL_COLS[] = "SELECT id, name, version, run_id, path, description, created FROM models";

static void print_json(const cJSON *j) {
  char *t = cJSON_Print(j);
  puts(t);
  cJSON_free(t);
}

static int model_list(int argc, char **argv) {
  const char *name = NULL;
  int json = 0;
  kp_opt opts[] = {{.name = "name", .val = &name}, {.name = "json", .flag = &json}, {0}};
  if (kp_parse("model list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  char sql[512];
  snprintf(sql, sizeof sql, "%s WHERE ?1 IS NULL OR name=?1 ORDER BY name, version", MODEL_COLS);
  sqlite3_stmt *st;
  if (kp_db_prepare(&ws, &st, sql) != 0) { kp_ws_close(&ws); return 1; }
  kp_bind_text(st, 1, name);
  cJSON *arr = cJSON_CreateArray();
  while (kp_db_row(st) > 0) cJSON_AddItemToArray(arr, model_json(&ws, st));
  sqlite3_finalize(st);
  kp_ws_close(&ws);
  if (json) {
    print_json(arr);
  } else {
    printf("%-28s %7s %-28s %5s %s\n", "NAME", "VERSION", "RUN", "FILES", "CREATED");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
      const char *r = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "run"));
      printf("%-28s %7d %-28s %5d %s\n", cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring,
             cJSON_GetObjectItemCaseSensitive(o, "version")->valueint, r ? r : "-",
             cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "files")),
             cJSON_GetObjectItemCaseSensitive(o, "created")->valuestring);
    }
  }
  cJSON_Delete(arr);
  return 0;
}

static int model_show(int argc, char **argv) {
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("model show", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("model show", "missing NAME[:VERSION]");
  char name[256];
  long long version;
  if (parse_ref("model show", pos[0], name, sizeof name, &version)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  sqlite3_int64 id = find_model(&ws, name, version, NULL);
  if (id < 0) { kp_ws_close(&ws); return 1; }
  char sql[512];
  snprintf(sql, sizeof sql, "%s WHERE id=?", MODEL_COLS);
  sqlite3_stmt *st;
  cJSON *o = NULL;
  if (kp_db_prepare(&ws, &st, sql) == 0) {
    sqlite3_bind_int64(st, 1, id);
    if (kp_db_row(st) > 0) o = model_json(&ws, st);
    sqlite3_finalize(st);
  }
  kp_ws_close(&ws);
  if (!o) return 1;
  if (json) {
    print_json(o);
  } else {
    const char *r = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "run"));
    printf("model:        %s:%d\nrun:          %s\npath:         %s\ndescription:  %s\ncreated:      %s\n", name,
           cJSON_GetObjectItemCaseSensitive(o, "version")->valueint, r ? r : "-",
           cJSON_GetObjectItemCaseSensitive(o, "path")->valuestring,
           cJSON_GetObjectItemCaseSensitive(o, "description")->valuestring,
           cJSON_GetObjectItemCaseSensitive(o, "created")->valuestring);
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(o, "tags")) printf("tag:          %s=%s\n", t->string, t->valuestring);
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(o, "files"))
      printf("file:         %s (%.0f bytes, sha256 %s)\n", cJSON_GetObjectItemCaseSensitive(t, "path")->valuestring,
             cJSON_GetObjectItemCaseSensitive(t, "size")->valuedouble,
             cJSON_GetObjectItemCaseSensitive(t, "sha256")->valuestring);
  }
  cJSON_Delete(o);
  return 0;
}

static int model_download(int argc, char **argv) {
  int np = 0;
  const char *pos[1], *to = ".";
  kp_opt opts[] = {{.name = "to", .val = &to}, {0}};
  if (kp_parse("model download", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("model download", "missing NAME[:VERSION]");
  char name[256];
  long long version;
  if (parse_ref("model download", pos[0], name, sizeof name, &version)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  sqlite3_int64 id = find_model(&ws, name, version, NULL);
  int rc = 1;
  sqlite3_stmt *st;
  if (id >= 0 && kp_db_prepare(&ws, &st, "SELECT path, sha256 FROM model_files WHERE model_id=? ORDER BY path") == 0) {
    sqlite3_bind_int64(st, 1, id);
    rc = kp_download_files(&ws, st, to, NULL, NULL) == 0 ? 0 : 1;
    sqlite3_finalize(st);
  }
  kp_ws_close(&ws);
  return rc;
}

static int model_delete(int argc, char **argv) {
  int np = 0, force = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "force", .flag = &force}, {0}};
  if (kp_parse("model delete", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("model delete", "missing NAME:VERSION");
  char name[256];
  long long version;
  if (parse_ref("model delete", pos[0], name, sizeof name, &version)) return 2;
  if (version == 0) return kp_usage_err("model delete", "say which version to delete: NAME:VERSION (e.g. %s:1)", name);
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1, nsvc = 0;
  char svcs[2048] = "";
  sqlite3_stmt *st = NULL;
  sqlite3_int64 id = find_model(&ws, name, version, NULL);
  if (id < 0 || kp_db_begin(&ws) != 0) goto out;
  /* the services deployed with this version (running or not): a service
   * whose model is gone cannot start again */
  if (kp_db_prepare(&ws, &st, "SELECT name FROM services WHERE model_id=? ORDER BY name") != 0) goto fail;
  sqlite3_bind_int64(st, 1, id);
  while (kp_db_row(st) > 0) {
    size_t l = strlen(svcs);
    if (l < sizeof svcs - 300) snprintf(svcs + l, sizeof svcs - l, "%s%s", nsvc ? ", " : "", kp_col_text(st, 0));
    else if (l < sizeof svcs - 8 && !strstr(svcs, ", ...")) snprintf(svcs + l, sizeof svcs - l, ", ...");
    nsvc++;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (nsvc && !force) {
    kp_db_rollback(&ws);
    kp_err("model %s:%lld is used by service%s %s", name, version, nsvc == 1 ? "" : "s", svcs);
    kp_hint("deploy another version to %s ('kusari model deploy %s:V --name SERVICE') or delete %s "
            "('kusari service delete SERVICE') first; --force deletes the model anyway (the service%s then cannot start again)",
            nsvc == 1 ? "it" : "them", name, nsvc == 1 ? "it" : "them", nsvc == 1 ? "" : "s");
    goto out;
  }
  if (kp_db_prepare(&ws, &st, "DELETE FROM models WHERE id=?") != 0) goto fail;
  sqlite3_bind_int64(st, 1, id);
  if (kp_db_done(&ws, st) != 0 || kp_db_commit(&ws) != 0) goto fail;
  printf("Deleted model %s:%lld\n", name, version);
  if (nsvc)
    fprintf(stderr, "warning: service%s %s used %s:%lld: %s cannot start again until another version is deployed to %s\n",
            nsvc == 1 ? "" : "s", svcs, name, version, nsvc == 1 ? "it" : "they", nsvc == 1 ? "it" : "them");
  rc = 0;
  goto out;
fail:
  kp_db_rollback(&ws);
out:
  sqlite3_finalize(st);
  kp_ws_close(&ws);
  return rc;
}

/* KEY=VALUE of a model tag: a key of 1 to 255 bytes without '=' */
static int tag_key_ok(const char *cmd, const char *key, size_t klen) {
  if (klen == 0 || klen > 255) return kp_usage_err(cmd, "tag key '%.*s' must be 1 to 255 characters", (int)klen, key);
  return 0;
}

static int model_tag(int argc, char **argv) {
  const char *cmd = "model tag";
  int np = 0;
  const char *pos[KP_MULTI_MAX + 1];
  if (kp_parse(cmd, argc, argv, NULL, pos, &np, KP_MULTI_MAX + 1, NULL)) return 2;
  if (np < 2) return kp_usage_err(cmd, "give NAME:VERSION and at least one KEY=VALUE");
  char name[256];
  long long version;
  if (parse_ref(cmd, pos[0], name, sizeof name, &version)) return 2;
  if (version == 0) return kp_usage_err(cmd, "say which version to tag: NAME:VERSION (e.g. %s:1)", name);
  for (int i = 1; i < np; i++) {
    const char *eq = strchr(pos[i], '=');
    if (!eq) return kp_usage_err(cmd, "'%s' must look like KEY=VALUE", pos[i]);
    if (tag_key_ok(cmd, pos[i], (size_t)(eq - pos[i]))) return 2;
  }
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  sqlite3_stmt *st = NULL;
  sqlite3_int64 id = find_model(&ws, name, version, NULL);
  if (id < 0 || kp_db_begin(&ws) != 0) goto out;
  if (kp_db_prepare(&ws, &st, "INSERT OR REPLACE INTO model_tags(model_id, key, value) VALUES(?,?,?)") != 0) goto fail;
  for (int i = 1; i < np; i++) {
    const char *eq = strchr(pos[i], '=');
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, pos[i], (int)(eq - pos[i]), SQLITE_TRANSIENT);
    kp_bind_text(st, 3, eq + 1);
    if (kp_db_done(&ws, st) != 0) goto fail;
  }
  if (kp_db_commit(&ws) != 0) goto fail;
  for (int i = 1; i < np; i++) printf("Tagged model %s:%lld: %s\n", name, version, pos[i]);
  rc = 0;
  goto out;
fail:
  kp_db_rollback(&ws);
out:
  sqlite3_finalize(st);
  kp_ws_close(&ws);
  return rc;
}

static int model_untag(int argc, char **argv) {
  const char *cmd = "model untag";
  int np = 0;
  const char *pos[KP_MULTI_MAX + 1];
  if (kp_parse(cmd, argc, argv, NULL, pos, &np, KP_MULTI_MAX + 1, NULL)) return 2;
  if (np < 2) return kp_usage_err(cmd, "give NAME:VERSION and at least one KEY");
  char name[256];
  long long version;
  if (parse_ref(cmd, pos[0], name, sizeof name, &version)) return 2;
  if (version == 0) return kp_usage_err(cmd, "say which version to untag: NAME:VERSION (e.g. %s:1)", name);
  for (int i = 1; i < np; i++)
    if (strchr(pos[i], '=')) return kp_usage_err(cmd, "'%s': give the tag's KEY only, without '='", pos[i]);
    else if (tag_key_ok(cmd, pos[i], strlen(pos[i]))) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  sqlite3_stmt *st = NULL;
  sqlite3_int64 id = find_model(&ws, name, version, NULL);
  if (id < 0 || kp_db_begin(&ws) != 0) goto out;
  if (kp_db_prepare(&ws, &st, "DELETE FROM model_tags WHERE model_id=? AND key=?") != 0) goto fail;
  for (int i = 1; i < np; i++) {
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    kp_bind_text(st, 2, pos[i]);
    if (kp_db_done(&ws, st) != 0) goto fail;
    if (sqlite3_changes(ws.db) == 0) {
      kp_err("model %s:%lld has no tag '%s'; nothing was removed", name, version, pos[i]);
      kp_hint("see its tags with 'kusari model show %s:%lld'", name, version);
      goto fail;
    }
  }
  if (kp_db_commit(&ws) != 0) goto fail;
  for (int i = 1; i < np; i++) printf("Removed tag %s from model %s:%lld\n", pos[i], name, version);
  rc = 0;
  goto out;
fail:
  kp_db_rollback(&ws);
out:
  sqlite3_finalize(st);
  kp_ws_close(&ws);
  return rc;
}

static const kp_cmd cmds[] = {
  {"register", model_register, "register a new version of a model",
   "usage: kusari model register --name NAME (--run RUN --path PATH | --file LOCAL)\n"
   "                             [--tag KEY=VALUE]... [--description TEXT]\n\n"
   "Registers a new version of model NAME (versions count 1, 2, ...). PATH is a file\n"
   "or folder in the run's files (e.g. outputs/model.npz or outputs); LOCAL is a file\n"
   "or folder on disk. A folder registers all of its files together; a single .npz\n"
   "registers with the model.json beside it, if there is one (the network description\n"
   "'kusari model deploy' needs). Files are stored by sha256; the model keeps its\n"
   "lineage to RUN. Prints NAME:VERSION last.\n"},
  {"list", model_list, "list registered models",
   "usage: kusari model list [--name NAME] [--json]\n\nLists every version of every model (or of NAME).\n"},
  {"show", model_show, "show a model version (latest by default)",
   "usage: kusari model show NAME[:VERSION] [--json]\n\nShows a model version: run, files, tags, description.\n"},
  {"download", model_download, "download a model version's files",
   "usage: kusari model download NAME[:VERSION] [--to DIR]\n\nWrites the model's files into DIR (default .).\n"},
  {"deploy", kp_model_deploy, "deploy a model version as a scoring web service",
   "usage: kusari model deploy NAME[:VERSION] --name SERVICE [--port P] [--host ADDR] [--auth]\n"
   "                           [--entry LIB] [--workers N] [--max-body-mb M] [--timeout S]\n"
   "                           [--batch-max N] [--batch-wait-us U]\n\n"
   "Starts a scoring service in the background: POST /score, GET /health, GET /metrics.\n"
   "The model needs model.json beside model.npz (ks_model_desc_save), or --entry LIB, a\n"
   "shared library exporting init(model_dir) and run(input_json). --port 0 (default)\n"
   "picks a free port; --host defaults to 127.0.0.1; --auth asks for 'Authorization:\n"
   "Bearer KEY' (see 'kusari service keys'); --workers defaults to the number of cores.\n"
   "--batch-max N (1 to 1024, default 1: off) lets the built-in scorer run up to N\n"
   "concurrent single-sample requests as one batch, waiting at most --batch-wait-us U\n"
   "microseconds (0 to 1000000, default 200) for it to fill; it did not raise the\n"
   "throughput for the MNIST MLP (docs/SERVING.md). --timeout S (default 10) closes a\n"
   "connection idle for S seconds and one whose request takes over 3 x S in all.\n"
   "Deploying an existing service again replaces it and keeps its keys. Prints the\n"
   "scoring URI last. See docs/SERVING.md.\n"},
  {"delete", model_delete, "delete a model version",
   "usage: kusari model delete NAME:VERSION [--force]\n\nDeletes one version of a model (its number is not reused).\n"
   "A version that a service was deployed with (running or stopped) is kept, and\n"
   "the error names the services: deploy another version to them or delete them\n"
   "first. --force deletes it anyway; those services then cannot start again.\n"},
  {"tag", model_tag, "set tags of a model version",
   "usage: kusari model tag NAME:VERSION KEY=VALUE [KEY=VALUE]...\n\n"
   "Sets tags of a model version (an existing KEY gets the new VALUE). 'kusari model\n"
   "show NAME:VERSION [--json]' lists them; 'kusari model untag' removes them.\n"},
  {"untag", model_untag, "remove tags from a model version",
   "usage: kusari model untag NAME:VERSION KEY [KEY]...\n\n"
   "Removes tags of a model version. A KEY the version does not have is an error,\n"
   "and then nothing is removed.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_model(int argc, char **argv) {
  return kp_dispatch("model", "usage: kusari model SUBCOMMAND\n\nThe model registry.\n", cmds, argc, argv);
}
