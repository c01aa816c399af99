/*
 * platform/store.c — the workspace: finding it, creating it, and opening its
 * store (store.h; the SQLite backend, its schema and migrations are in
 * store_sqlite.c).
 *
 * A workspace directory holds config.json ({"kusari_workspace": true, "name",
 * "schema_version", "created"}), kusari.db, blobs/ (sha256-named files),
 * runs/<id>/ (live state of each run), envs/ (build cache) and tmp/.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *kp_opt_workspace = NULL;

int kp_store_errors = 0;

int kp_default_ws_dir(char *out, size_t n) {
  const char *xdg = getenv("XDG_DATA_HOME");
  const char *home = getenv("HOME");
  if (xdg && *xdg) snprintf(out, n, "%s/kusari/workspace", xdg);
  else if (home && *home) snprintf(out, n, "%s/.local/share/kusari/workspace", home);
  else return kp_err("cannot place the default workspace: neither XDG_DATA_HOME nor HOME is set"),
              kp_hint("pass --workspace DIR or set KUSARI_WORKSPACE"), -1;
  return 0;
}

/* 1 if dir/config.json is a kusari workspace config. */
static int is_workspace(const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", dir);
  char *s = kp_read_file(p, NULL);
  if (!s) return 0;
  cJSON *j = cJSON_Parse(s);
  free(s);
  int ok = j && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "kusari_workspace"));
  cJSON_Delete(j);
  return ok;
}

/* Inside the migration transaction: the steps that also touch files (on
 * SQLite; a PostgreSQL store never held service keys). */
static int ws_migrate_hook(void *ctx, kp_store *s, int to) {
  kp_ws *ws = ctx;
  /* the keys of schema 4 lived in SQLite's services table: nothing to move elsewhere */
  return to == 5 && !strcmp(kp_store_backend(s), "sqlite") ? kp_service_keys_migrate(ws, s) : 0;
}

/* The store config.json names ("store"), or "" for the workspace's own
 * kusari.db; -1 (printed) when the entry is not a PostgreSQL URI. */
static int config_store(const char *root, char *uri, size_t n) {
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", root);
  uri[0] = '\0';
  char *s = kp_read_file(p, NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "store") : NULL;
  int rc = 0;
  if (v && !(cJSON_IsString(v) && kp_store_uri_is_postgresql(v->valuestring))) {
    kp_err("%s: \"store\" must be a postgresql:// URI", p);
    kp_hint("remove the entry to use the workspace's own SQLite store (kusari.db)");
    rc = -1;
  } else if (v && strlen(v->valuestring) >= n) {
    kp_err("%s: the \"store\" URI is too long", p);
    rc = -1;
  } else if (v) {
    snprintf(uri, n, "%s", v->valuestring);
  }
  cJSON_Delete(j);
  return rc;
}

int kp_store_report(void) {
  const kp_store_error *e = kp_store_last_error();
  if (e->code == KP_STORE_EBACKEND) kp_store_errors++;
  return kp_err("%s", e->message[0] ? e->message : "store: unknown error");
}

static int open_db(kp_ws *ws) {
  char p[4200];
  snprintf(p, sizeof p, "%s/kusari.db", ws->root);
  int rc = ws->store_uri[0] ? kp_store_pg_open(ws->store_uri, ws_migrate_hook, ws, &ws->store)
                            : kp_store_sqlite_open(p, ws_migrate_hook, ws, &ws->store);
  if (rc != 0) {
    const kp_store_error *e = kp_store_last_error();
    if (ws->store_uri[0] && e->code != KP_STORE_ECONFLICT) {
      kp_err("workspace %s: %s", ws->root, e->message);
      if (e->code == KP_STORE_EINVAL)
        kp_hint("use a kusari built with libpq (apt-get install libpq-dev, then rebuild)");
      else
        kp_hint("check that the PostgreSQL server is running and reachable; the workspace's store URI is in %s/config.json",
                ws->root);
    } else if (e->code == KP_STORE_ECONFLICT) {
      kp_err("workspace %s %s", ws->root, e->message);
      kp_hint("use a newer kusari program with this workspace");
    } else if (!strncmp(e->message, "migration", 9)) {
      kp_err("workspace %s: %s", ws->root, e->message);
    } else {
      kp_err("%s", e->message);
    }
    return -1;
  }
  int version = -1;
  /* keep config.json's schema_version in step */
  snprintf(p, sizeof p, "%s/config.json", ws->root);
  char *s = kp_read_file(p, NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "schema_version") : NULL;
  if (cJSON_IsNumber(v)) version = v->valueint;
  if (j && version != KP_SCHEMA_VERSION) {
    cJSON_DeleteItemFromObjectCaseSensitive(j, "schema_version");
    cJSON_AddNumberToObject(j, "schema_version", KP_SCHEMA_VERSION);
    char *out = cJSON_Print(j);
    if (out && kp_write_file(p, out, strlen(out)) == 0) chmod(p, 0600);
    cJSON_free(out);
  }
  cJSON_Delete(j);
  return 0;
}

static int make_layout(const char *root) {
  static const char *const subs[] = {"blobs", "runs", "envs", "tmp"};
  for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", root, subs[i]);
    if (kp_mkdirs(p, 0700) != 0) return -1;
  }
  return 0;
}

/* Sets 'path' to 'mode' if it exists, belongs to this user and has another
 * mode; a missing file is fine. */
static int set_mode(const char *path, mode_t mode) {
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOENT ? 0 : kp_err("cannot stat %s: %s", path, strerror(errno));
  if (st.st_uid != geteuid() || (st.st_mode & 07777) == mode) return 0;
  if (chmod(path, mode) != 0) {
    kp_err("cannot make %s private (chmod %04o): %s", path, (unsigned)mode, strerror(errno));
    kp_hint("the workspace holds service keys and run data: only its owner may read it");
    return -1;
  }
  return 0;
}

/* The workspace is private to its owner, whatever the umask or an earlier
 * kusari left: the directory and its subdirectories 0700, config.json and the
 * store (kusari.db and its -wal and -shm, which SQLite creates with the
 * database's mode) 0600. Blobs live in blobs/ (0700); see blob.c. */
static int make_private(const char *root) {
  static const char *const dirs[] = {"", "/blobs", "/runs", "/envs", "/tmp"};
  static const char *const files[] = {"/config.json", "/kusari.db", "/kusari.db-wal", "/kusari.db-shm"};
  char p[4200];
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, dirs[i]);
    if (set_mode(p, 0700) != 0) return -1;
  }
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    snprintf(p, sizeof p, "%s%s", root, files[i]);
    if (set_mode(p, 0600) != 0) return -1;
  }
  return 0;
}

/* Creates kusari.db 0600 before SQLite opens it: SQLite would create it
 * 0644 minus the umask, and gives the -wal and -shm files the database's
 * mode. */
static int create_store_file(const char *root) {
  char p[4200];
  snprintf(p, sizeof p, "%s/kusari.db", root);
  int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno == EEXIST ? 0 : kp_err("cannot create the store %s: %s", p, strerror(errno));
  int rc = fchmod(fd, 0600);
  close(fd);
  return rc == 0 ? 0 : kp_err("cannot make %s private: %s", p, strerror(errno));
}

static int open_ws(kp_ws *ws) {
  if (config_store(ws->root, ws->store_uri, sizeof ws->store_uri) != 0) return -1;
  if (make_layout(ws->root) != 0 || make_private(ws->root) != 0) return -1;
  if (!ws->store_uri[0] && create_store_file(ws->root) != 0) return -1;
  return open_db(ws);
}

int kp_is_url(const char *s) {
  if (!s || !isalpha((unsigned char)*s)) return 0;
  const char *p = s + 1;
  while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.') p++;
  return strncmp(p, "://", 3) == 0;
}

/* what: "KUSARI_WORKSPACE=", "--workspace ", "" or "POINTER: " */
static int refuse_url(const char *what, const char *v) {
  kp_err("%s'%s' is a URL: tracking servers are not supported yet", what, v);
  if (kp_store_uri_is_postgresql(v))
    kp_hint("a workspace is a directory; to keep its records in PostgreSQL: 'kusari workspace create DIR --store %s', "
            "then --workspace DIR or KUSARI_WORKSPACE=DIR", v);
  else
    kp_hint("use a workspace directory: 'kusari workspace create DIR', then --workspace DIR or KUSARI_WORKSPACE=DIR; "
            "for a tracking server (kusari server) set KUSARI_TRACKING_URI=URL or run 'kusari workspace connect URL --token TOKEN'");
  return -1;
}

int kp_ws_create(kp_ws *ws, const char *dir, const char *name) { return kp_ws_create_store(ws, dir, name, NULL); }

int kp_ws_create_store(kp_ws *ws, const char *dir, const char *name, const char *store) {
  memset(ws, 0, sizeof *ws);
  ws->selected_by = "create";
  if (kp_is_url(dir)) return refuse_url("", dir);
  if (store && !kp_store_uri_is_postgresql(store)) {
    kp_err("--store '%s' is not a PostgreSQL URI", store);
    kp_hint("give postgresql://USER@HOST:PORT/DATABASE (or leave --store out for the workspace's own SQLite store)");
    return -1;
  }
  if (store && strlen(store) >= sizeof ws->store_uri) return kp_err("the --store URI is too long");
  if (store) {
    /* reach (and migrate) the database before anything is written */
    kp_store *probe;
    if (kp_store_pg_open(store, NULL, NULL, &probe) != 0) {
      const kp_store_error *e = kp_store_last_error();
      kp_err("workspace %s: %s", dir, e->message);
      if (e->code == KP_STORE_EINVAL) kp_hint("use a kusari built with libpq (apt-get install libpq-dev, then rebuild)");
      else kp_hint("check the URI, and that the PostgreSQL server is running and the database exists (createdb NAME)");
      return -1;
    }
    kp_store_close(probe);
  }
  if (kp_mkdirs(dir, 0755) != 0) return -1;  /* a new workspace is made 0700 below */
  if (!realpath(dir, ws->root)) return kp_err("cannot resolve %s: %s", dir, strerror(errno));
  if (!is_workspace(ws->root)) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", ws->root);
    struct stat st;
    if (stat(p, &st) == 0) {
      kp_err("%s already has a config.json that is not a kusari workspace's", ws->root);
      kp_hint("choose an empty directory for the workspace");
      return -1;
    }
    if (set_mode(ws->root, 0700) != 0) return -1;  /* before anything is written in it */
    const char *base = strrchr(ws->root, '/');
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "kusari_workspace", 1);
    cJSON_AddStringToObject(j, "name", name ? name : (base && base[1] ? base + 1 : "workspace"));
    cJSON_AddNumberToObject(j, "schema_version", KP_SCHEMA_VERSION);
    char t[64];
    kp_fmt_time(kp_now(), t, sizeof t);
    cJSON_AddStringToObject(j, "created", t);
    if (store) cJSON_AddStringToObject(j, "store", store);
    char *out = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = out ? kp_write_file(p, out, strlen(out)) : -1;
    cJSON_free(out);
    if (rc != 0 || set_mode(p, 0600) != 0) return -1;
  } else if (store) {
    /* an existing workspace keeps its store */
    char have[sizeof ws->store_uri];
    if (config_store(ws->root, have, sizeof have) != 0) return -1;
    if (strcmp(have, store) != 0) {
      char a[1100], b[1100];
      kp_store_uri_redact(store, a, sizeof a);
      kp_store_uri_redact(have, b, sizeof b);
      kp_err("workspace %s exists with %s%s; not switching it to %s", ws->root, have[0] ? "the store " : "its own SQLite store",
             have[0] ? b : "", a);
      kp_hint("choose an empty directory for a workspace on %s", a);
      return -1;
    }
  }
  return open_ws(ws);
}

/* ---- selection: DIR/.kusari/config.json --------------------------------------
 * {"workspace": "/abs/path"}: the workspace used in DIR and below it when
 * neither --workspace nor KUSARI_WORKSPACE says otherwise (Azure ML's
 * .azureml/config.json). Written by 'workspace create DIR'. */

/* Reads the pointer in 'dir': 1 found (its workspace in 'out', relative to
 * 'dir' if relative), 0 none, -1 unreadable (printed). 'ppath' gets its path. */
static int read_pointer(const char *dir, char *out, size_t n, char *ppath, size_t pn) {
  snprintf(ppath, pn, "%s/.kusari/config.json", dir);
  struct stat st;
  if (stat(ppath, &st) != 0) return 0;
  char *s = kp_read_file(ppath, NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  const char *w = j ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "workspace")) : NULL;
  if (!w || !*w) {
    cJSON_Delete(j);
    kp_err("%s does not name a workspace (it needs {\"workspace\": \"DIR\"})", ppath);
    kp_hint("move it out of %s (then 'kusari workspace create DIR' there writes a pointer), "
            "or name the workspace with --workspace DIR or KUSARI_WORKSPACE=DIR", dir);
    return -1;
  }
  if (w[0] == '/' || kp_is_url(w)) snprintf(out, n, "%s", w);
  else snprintf(out, n, "%s/%s", dir, w);
  cJSON_Delete(j);
  return 1;
}

int kp_ws_select(const char *dir, const char *root, char *old, size_t oldn) {
  char ppath[4200], prev[4200];
  if (oldn) old[0] = '\0';
  int r = read_pointer(dir, prev, sizeof prev, ppath, sizeof ppath);
  if (r < 0) return -1;
  if (r == 1 && oldn) snprintf(old, oldn, "%s", prev);
  char d[4200];
  snprintf(d, sizeof d, "%s/.kusari", dir);
  if (kp_mkdirs(d, 0755) != 0) return -1;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "workspace", root);
  char *out = cJSON_Print(j);
  cJSON_Delete(j);
  int rc = out ? kp_write_file(ppath, out, strlen(out)) : -1;
  cJSON_free(out);
  return rc;
}

/* ---- a tracking server (store_http.c) -----------------------------------------
 * KUSARI_TRACKING_URI (+ KUSARI_TRACKING_TOKEN), else the user's connection
 * ('workspace connect': tracking.json), selects a server in place of a
 * workspace directory. Only the commands below work against one: the others
 * need the workspace's files (snapshots, blobs, supervisors). */
char kp_command[256] = "";

static const char *const REMOTE_OK[] = {
  "experiment list", "experiment show", "run submit", "run list", "run show", "run metrics", "run tag", "run untag", "run cancel",
  "run wait", "run files", "run logs", "run download", "model list", "model show", "model register", "model deploy",
  "compute list", "compute show", "workspace show",
  /* sweeps and services: the server's views and routes (server_api.c) */
  "sweep list", "sweep show", "sweep cancel", "sweep submit", "sweep wait", "sweep best", "service list",
  "service show", "service start", "service stop", "service delete", "service keys", "service logs", NULL};

int kp_tracking_config_path(char *out, size_t n) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  if (xdg && *xdg) snprintf(out, n, "%s/kusari/tracking.json", xdg);
  else if (home && *home) snprintf(out, n, "%s/.config/kusari/tracking.json", home);
  else return -1;
  return 0;
}

static int open_remote(kp_ws *ws, const char *url, const char *token, const char *how) {
  snprintf(ws->remote, sizeof ws->remote, "%s", url);
  ws->selected_by = how;
  int ok = 0;
  for (int i = 0; REMOTE_OK[i]; i++)
    if (!strcmp(kp_command, REMOTE_OK[i])) ok = 1;
  if (!ok) {
    kp_err("'kusari %s' does not work against a tracking server yet (%s, from %s): it needs the workspace's files",
           kp_command[0] ? kp_command : "?", url, how);
    kp_hint("run it on the server's machine with --workspace DIR, or unset KUSARI_TRACKING_URI / run 'kusari workspace "
            "disconnect'; against a server work: experiment list|show, run list|show|metrics|tag|untag|cancel|wait|files|logs|download, "
            "model list|show|register|deploy, compute list|show, sweep list|show|cancel|submit|wait|best, "
            "service list|show|start|stop|delete|keys|logs");
    return -1;
  }
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
    kp_err("%s names '%s', which is not an http:// or https:// URL", how, url);
    kp_hint("give the server's address, e.g. http://127.0.0.1:8080");
    return -1;
  }
  if (kp_store_http_open(url, token, &ws->store) != 0) return kp_err("%s", kp_store_last_error()->message), -1;
  return 0;
}

/* 1 when the user's connection file names a server (url, token and its name
 * copied out), 0 when there is none, -1 when it is unreadable (printed). */
static int read_connection(char *url, size_t un, char *token, size_t tn, char *name, size_t nn) {
  char p[4200];
  if (kp_tracking_config_path(p, sizeof p) != 0) return 0;
  struct stat st;
  if (stat(p, &st) != 0) return 0;
  char *s = kp_read_file(p, NULL);
  cJSON *j = s ? cJSON_Parse(s) : NULL;
  free(s);
  const char *u = j ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "url")) : NULL;
  if (!u || !*u) {
    cJSON_Delete(j);
    kp_err("%s does not name a tracking server (it needs {\"url\": ..., \"token\": ...})", p);
    kp_hint("run 'kusari workspace disconnect', or connect again with 'kusari workspace connect URL --token TOKEN'");
    return -1;
  }
  const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "token"));
  const char *nm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "token_name"));
  snprintf(url, un, "%s", u);
  snprintf(token, tn, "%s", t ? t : "");
  snprintf(name, nn, "%s", nm ? nm : "");
  cJSON_Delete(j);
  return 1;
}

int kp_ws_open(kp_ws *ws) {
  memset(ws, 0, sizeof *ws);
  const char *dir = kp_opt_workspace;
  const char *uri = getenv("KUSARI_TRACKING_URI");
  /* the hidden daemons (__supervise, __rank: kp_command "") always use the
   * workspace directory they were started for */
  int may_remote = kp_command[0] != '\0';
  if (may_remote && (!dir || !*dir) && uri && *uri) return open_remote(ws, uri, getenv("KUSARI_TRACKING_TOKEN"), "KUSARI_TRACKING_URI");
  if (may_remote && (!dir || !*dir) && !(getenv("KUSARI_WORKSPACE") && *getenv("KUSARI_WORKSPACE"))) {
    char url[1024], token[1024];
    int r = read_connection(url, sizeof url, token, sizeof token, ws->remote_token_name, sizeof ws->remote_token_name);
    if (r < 0) return -1;
    if (r == 1) {
      const char *et = getenv("KUSARI_TRACKING_TOKEN");
      return open_remote(ws, url, et && *et ? et : token, "workspace connect");
    }
  }
  if (may_remote && dir && (!strncmp(dir, "http://", 7) || !strncmp(dir, "https://", 8)))
    return open_remote(ws, dir, getenv("KUSARI_TRACKING_TOKEN"), "--workspace");
  const char *how = "--workspace", *url_how = "--workspace ";
  ws->selected_by = "flag";
  if (!dir || !*dir) {
    dir = getenv("KUSARI_WORKSPACE");
    how = "KUSARI_WORKSPACE";
    url_how = "KUSARI_WORKSPACE=";
    ws->selected_by = "env";
  }
  if (dir && *dir) {
    if (kp_is_url(dir)) return refuse_url(url_how, dir);
    if (!realpath(dir, ws->root) || !is_workspace(ws->root)) {
      kp_err("%s names '%s', which is not a kusari workspace", how, dir);
      kp_hint("create it with 'kusari workspace create %s'", dir);
      return -1;
    }
    return open_ws(ws);
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd)) {
    for (;;) {
      if (is_workspace(cwd)) {
        snprintf(ws->root, sizeof ws->root, "%s", cwd);
        ws->selected_by = "directory";
        return open_ws(ws);
      }
      char target[4200];
      int r = read_pointer(cwd, target, sizeof target, ws->via, sizeof ws->via);
      if (r < 0) return -1;
      if (r == 1) {
        if (kp_is_url(target)) {
          char what[4300];
          snprintf(what, sizeof what, "%s: ", ws->via);
          return refuse_url(what, target);
        }
        if (!realpath(target, ws->root) || !is_workspace(ws->root)) {
          kp_err("%s selects '%s', which is not a kusari workspace", ws->via, target);
          kp_hint("create it with 'kusari workspace create %s', select another with 'kusari workspace create DIR' "
                  "in %s, or remove %s", target, cwd, ws->via);
          return -1;
        }
        ws->selected_by = "pointer";
        return open_ws(ws);
      }
      char *s = strrchr(cwd, '/');
      if (!s || s == cwd) break;
      *s = '\0';
    }
  }
  char def[4096];
  if (kp_default_ws_dir(def, sizeof def) != 0) return -1;
  int rc = kp_ws_create(ws, def, "default");
  ws->selected_by = "default";
  return rc;
}

void kp_ws_close(kp_ws *ws) {
  if (ws && ws->store) {
    kp_store_close(ws->store);
    ws->store = NULL;
  }
}
