/*
 * platform/cmd_model.c — the model registry: `kusari model register|list|show|
 * download|delete|tag|untag`. A model version is a set of files (one file, or every
 * file of a folder) stored by sha256 in the blob store, with lineage to the
 * run it came from. Versions count up per name from 1; a deleted version's
 * number is not reused.
 */
#include "kp.h"
#include "views.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int kp_download_files(kp_ws *ws, const kp_stored_file *v, size_t n, const char *to, const char *strip, int *count);
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

/* Prints the store's error about a model reference, with a hint when it
 * names no model; returns -1. */
static int model_err(void) {
  int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
  kp_store_report();
  if (notfound) kp_hint("list models with 'kusari model list'");
  return -1;
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

int kp_model_run_files(kp_store *st, const char *run, const char *prefix, kp_stored_file **out, size_t *n,
                       int *with_desc) {
  *out = NULL;
  *n = 0;
  *with_desc = 0;
  kp_stored_file *rf = NULL, *sf = NULL;
  size_t nrf = 0, nsf = 0;
  if (kp_store_run_files_list(st, run, prefix, &rf, &nrf) != 0) return -1;
  if (nrf == 0) {
    kp_stored_files_free(rf, nrf);
    return kp_store_fail(KP_STORE_ENOTFOUND, "run %s has no file or folder '%s' to register", run, prefix);
  }
  const char *slash = strrchr(prefix, '/');
  size_t strip = slash ? (size_t)(slash - prefix) + 1 : 0;  /* keep the last part: outputs/model.npz -> model.npz */
  /* a single .npz: the network description written beside it (model.json
   * in the same folder of the run's files) goes with it, so that the
   * model's files are servable on their own (download, deploy) */
  kp_stored_file *desc = NULL;
  if (nrf == 1 && is_npz(prefix) && !strcmp(rf[0].path, prefix)) {
    char sib[4300];
    snprintf(sib, sizeof sib, "%.*smodel.json", (int)strip, prefix);
    if (kp_store_run_files_list(st, run, sib, &sf, &nsf) != 0) {
      kp_stored_files_free(rf, nrf);
      return -1;
    }
    for (size_t i = 0; i < nsf && !desc; i++)
      if (!strcmp(sf[i].path, sib)) desc = &sf[i];  /* the file itself, not a folder of that name */
  }
  kp_stored_file *v = calloc(nrf + 1, sizeof *v);
  size_t k = 0;
  int oom = !v;
  for (size_t i = 0; !oom && i < nrf + (desc ? 1 : 0); i++) {
    const kp_stored_file *f = i < nrf ? &rf[i] : desc;
    v[k].path = strdup(f->path + strip);
    v[k].sha256 = strdup(f->sha256);
    v[k].size = f->size;
    if (!v[k].path || !v[k].sha256) oom = 1;
    k++;
  }
  kp_stored_files_free(rf, nrf);
  kp_stored_files_free(sf, nsf);
  if (oom) {
    kp_stored_files_free(v, k);
    return kp_store_fail(KP_STORE_EBACKEND, "out of memory");
  }
  *with_desc = desc != NULL;
  *out = v;
  *n = k;
  return 0;
}

/* ---- model register against a tracking server ------------------------------------------ */
/* uploads local file 'full' as a blob of the server's workspace and adds it as 'rel' */
static int put_remote(kp_ws *ws, mfiles *f, const char *full, const char *rel) {
  size_t len = 0;
  char *data = kp_read_file(full, &len);
  if (!data) return kp_err("cannot read %s: %s", full, strerror(errno));
  char hex[65];
  int rc = kp_store_http_put_blob(ws->store, data, len, hex);
  free(data);
  if (rc != 0) {
    kp_err("cannot upload %s (%zu bytes): %s", full, len, kp_store_last_error()->message);
    if (strstr(kp_store_last_error()->message, "answered 413")) kp_hint("the server takes bodies up to its --max-body");
    return -1;
  }
  return add_file(f, rel, hex, (int64_t)len);
}

/* collect_local, uploading to the server instead of storing here */
static int collect_remote(kp_ws *ws, mfiles *f, const char *dir, const char *rel) {
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
    if (S_ISLNK(st.st_mode)) rc = kp_err("%s is a symbolic link; model folders may hold only regular files and folders", full);
    else if (S_ISDIR(st.st_mode)) rc = collect_remote(ws, f, full, r);
    else if (S_ISREG(st.st_mode)) rc = put_remote(ws, f, full, r);
  }
  closedir(d);
  return rc;
}

/* Registers through the server: a run's files (POST .../versions {run, path},
 * the server collects them as here) or local files uploaded first (PUT
 * /blobs/{sha256}, then {files}). Prints what the local command prints. */
static int register_remote(kp_ws *ws, const char *name, const char *run, const char *prefix, const char *file,
                           const char *desc, const char *const *tags, int ntags) {
  mfiles f = {0};
  int with_desc = 0, rc = 1;
  cJSON *b = cJSON_CreateObject(), *o = NULL;
  if (run) cJSON_AddStringToObject(b, "run", run);
  if (prefix) {
    cJSON_AddStringToObject(b, "path", prefix);
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
      if (collect_remote(ws, &f, real, base) != 0) goto out;
      if (f.n == 0) { kp_err("folder %s holds no files to register", file); goto out; }
    } else if (S_ISREG(sst.st_mode)) {
      if (put_remote(ws, &f, real, base) != 0) goto out;
      char sib[PATH_MAX + 16];
      struct stat dst;
      const char *slash = strrchr(real, '/');
      snprintf(sib, sizeof sib, "%.*smodel.json", slash ? (int)(slash + 1 - real) : 0, real);
      if (is_npz(base) && lstat(sib, &dst) == 0 && S_ISREG(dst.st_mode)) {
        if (put_remote(ws, &f, sib, "model.json") != 0) goto out;
        with_desc = 1;
      }
    } else {
      kp_err("'%s' is neither a regular file nor a folder (symbolic links are not registered)", file);
      goto out;
    }
    cJSON *arr = cJSON_AddArrayToObject(b, "files");
    for (size_t i = 0; i < f.n; i++) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "path", f.v[i].path);
      cJSON_AddStringToObject(e, "sha256", f.v[i].sha);
      cJSON_AddNumberToObject(e, "size", (double)f.v[i].size);
      cJSON_AddItemToArray(arr, e);
    }
    cJSON_AddStringToObject(b, "source", file);
    cJSON_AddBoolToObject(b, "model_json_added", with_desc);
  }
  cJSON_AddStringToObject(b, "description", desc);
  cJSON *tj = cJSON_AddObjectToObject(b, "tags");
  for (int i = 0; i < ntags; i++) {
    const char *eq = strchr(tags[i], '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - tags[i]), tags[i]);
    cJSON_DeleteItemFromObjectCaseSensitive(tj, key);  /* the last one wins, as locally */
    cJSON_AddStringToObject(tj, key, eq + 1);
  }
  char *body = cJSON_PrintUnformatted(b);
  if (!body) { kp_err("out of memory"); goto out; }
  int r = kp_store_http_call(ws->store, "POST", "models/", name, "/versions", body, &o);
  cJSON_free(body);
  if (r != 0) {
    int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (missing && run) kp_hint("list the run's files with 'kusari run files %s'", run);
    goto out;
  }
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "model");
  const cJSON *fs = cJSON_GetObjectItemCaseSensitive(m, "files"), *fe;
  long long total = 0, version = (long long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(m, "version"));
  int nf = cJSON_GetArraySize(fs);
  cJSON_ArrayForEach(fe, fs) total += (long long)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(fe, "size"));
  with_desc = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "model_json_added"));
  printf("Registered model %s version %lld (%d file%s, %lld bytes%s%s%s)\n", name, version, nf, nf == 1 ? "" : "s", total,
         run ? ", from run " : "", run ? run : "",
         with_desc ? "; with model.json, the network description beside the weights" : "");
  printf("%s:%lld\n", name, version);
  rc = 0;
out:
  cJSON_Delete(b);
  cJSON_Delete(o);
  free(f.v);
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
  kp_stored_file *rf = NULL;
  size_t nrf = 0;
  if (run) {
    kp_run r;
    if (kp_store_run_get(ws.store, run, &r) != 0) {
      if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) { kp_store_report(); goto out; }
      kp_err("no run with id '%s' in this workspace", run);
      kp_hint("list runs with 'kusari run list'");
      goto out;
    }
    kp_run_free(&r);
  }
  if (ws.remote[0]) {
    rc = register_remote(&ws, name, run, path ? prefix : NULL, file, desc, tags, ntags);
    goto out;
  }
  if (path) {
    if (kp_blob_pin(&ws) != 0) goto out;  /* the run's blobs stay until the model refers to them */
    if (kp_model_run_files(ws.store, run, prefix, &rf, &nrf, &with_desc) != 0) {
      int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      kp_store_report();
      if (missing) kp_hint("list the run's files with 'kusari run files %s'", run);
      goto out;
    }
    for (size_t i = 0; i < nrf; i++)
      if (add_file(&f, rf[i].path, rf[i].sha256, rf[i].size) != 0) goto out;
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
  kp_model_file *mf = calloc(f.n ? f.n : 1, sizeof *mf);
  char(*tkey)[256] = calloc(ntags ? (size_t)ntags : 1, sizeof *tkey);
  const char *tk[KP_MULTI_MAX], *tv[KP_MULTI_MAX];
  if (!mf || !tkey) { free(mf); free(tkey); kp_err("out of memory"); goto out; }
  int64_t total = 0;
  for (size_t i = 0; i < f.n; i++) {
    mf[i] = (kp_model_file){.path = f.v[i].path, .sha256 = f.v[i].sha, .size = f.v[i].size};
    total += f.v[i].size;
  }
  for (int i = 0; i < ntags; i++) {
    const char *eq = strchr(tags[i], '=');
    snprintf(tkey[i], sizeof tkey[i], "%.*s", (int)(eq - tags[i]), tags[i]);
    tk[i] = tkey[i];
    tv[i] = eq + 1;
  }
  kp_model_new m = {.name = name, .run_id = run, .path = path ? prefix : file, .description = desc, .files = mf,
                    .nfiles = f.n, .tag_keys = tk, .tag_values = tv, .ntags = (size_t)ntags};
  int64_t version;
  int reg = kp_store_model_version_create(ws.store, &m, &version);
  free(mf);
  free(tkey);
  if (reg != 0) { kp_store_report(); goto out; }
  printf("Registered model %s version %lld (%zu file%s, %lld bytes%s%s%s)\n", name, (long long)version, f.n, f.n == 1 ? "" : "s",
         (long long)total, run ? ", from run " : "", run ? run : "",
         with_desc ? "; with model.json, the network description beside the weights" : "");
  printf("%s:%lld\n", name, (long long)version);
  rc = 0;
out:
  kp_stored_files_free(rf, nrf);
  free(f.v);
  kp_ws_close(&ws);
  return rc;
}

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
  kp_model *v;
  size_t n;
  if (kp_store_model_list(ws.store, name, &v, &n) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, kp_view_model(&v[i]));
  kp_models_free(v, n);
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
  kp_model m;
  if (kp_store_model_get(ws.store, name, version, &m) != 0) {
    model_err();
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  cJSON *o = kp_view_model(&m);
  kp_model_free(&m);
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
  kp_model m;
  int rc = 1;
  if (kp_store_model_get(ws.store, name, version, &m) != 0) {
    model_err();
  } else {
    rc = kp_download_files(&ws, m.files, m.nfiles, to, NULL, NULL) == 0 ? 0 : 1;
    kp_model_free(&m);
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
  char **sv = NULL;
  size_t nsv = 0;
  if (kp_store_begin(ws.store) != 0) { kp_store_report(); goto out; }
  /* the services deployed with this version (running or not): a service
   * whose model is gone cannot start again */
  if (kp_store_model_services(ws.store, name, version, &sv, &nsv) != 0) { model_err(); goto out; }
  for (size_t i = 0; i < nsv; i++) {
    size_t l = strlen(svcs);
    if (l < sizeof svcs - 300) snprintf(svcs + l, sizeof svcs - l, "%s%s", nsvc ? ", " : "", sv[i]);
    else if (l < sizeof svcs - 8 && !strstr(svcs, ", ...")) snprintf(svcs + l, sizeof svcs - l, ", ...");
    nsvc++;
  }
  if (nsvc && !force) {
    kp_store_rollback(ws.store);
    kp_err("model %s:%lld is used by service%s %s", name, version, nsvc == 1 ? "" : "s", svcs);
    kp_hint("deploy another version to %s ('kusari model deploy %s:V --name SERVICE') or delete %s "
            "('kusari service delete SERVICE') first; --force deletes the model anyway (the service%s then cannot start again)",
            nsvc == 1 ? "it" : "them", name, nsvc == 1 ? "it" : "them", nsvc == 1 ? "" : "s");
    goto out;
  }
  if (kp_store_model_delete(ws.store, name, version) != 0 || kp_store_commit(ws.store) != 0) {
    kp_store_report();
    goto out;
  }
  printf("Deleted model %s:%lld\n", name, version);
  if (nsvc)
    fprintf(stderr, "warning: service%s %s used %s:%lld: %s cannot start again until another version is deployed to %s\n",
            nsvc == 1 ? "" : "s", svcs, name, version, nsvc == 1 ? "it" : "they", nsvc == 1 ? "it" : "them");
  rc = 0;
out:
  kp_store_rollback(ws.store);
  kp_strings_free(sv, nsv);
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
  const char *keys[KP_MULTI_MAX + 1], *vals[KP_MULTI_MAX + 1];
  char kbuf[KP_MULTI_MAX + 1][256];
  for (int i = 1; i < np; i++) {
    const char *eq = strchr(pos[i], '=');
    snprintf(kbuf[i], sizeof kbuf[i], "%.*s", (int)(eq - pos[i]), pos[i]);
    keys[i - 1] = kbuf[i];
    vals[i - 1] = eq + 1;
  }
  int rc = 1;
  if (kp_store_model_tags_set(ws.store, name, version, keys, vals, (size_t)(np - 1)) != 0) {
    model_err();
  } else {
    for (int i = 1; i < np; i++) printf("Tagged model %s:%lld: %s\n", name, version, pos[i]);
    rc = 0;
  }
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
  if (kp_store_model_tags_remove(ws.store, name, version, pos + 1, (size_t)(np - 1)) != 0) {
    int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    const char *msg = kp_store_last_error()->message;
    int no_tag = notfound && strstr(msg, "has no tag") != NULL;
    kp_store_report();
    if (no_tag) kp_hint("see its tags with 'kusari model show %s:%lld'", name, version);
    else if (notfound) kp_hint("list models with 'kusari model list'");
  } else {
    for (int i = 1; i < np; i++) printf("Removed tag %s from model %s:%lld\n", pos[i], name, version);
    rc = 0;
  }
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
