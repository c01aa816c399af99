/*
 * platform/cmd_workspace.c — `kusari workspace create|show|connect|disconnect`.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 if 'dir' is 'root' or below it */
static int inside(const char *dir, const char *root) {
  size_t n = strlen(root);
  return !strncmp(dir, root, n) && (dir[n] == '\0' || dir[n] == '/' || (n == 1 && root[0] == '/'));
}

static int ws_create(int argc, char **argv) {
  const char *name = NULL, *store = NULL, *pos[1];
  int np = 0, no_select = 0;
  kp_opt opts[] = {{.name = "name", .val = &name}, {.name = "no-select", .flag = &no_select}, {.name = "store", .val = &store},
                   {0}};
  if (kp_parse("workspace create", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (name && kp_name_ok(name) != 0)
    return kp_usage_err("workspace create", "invalid workspace name '%s' (letters, digits, '.', '_', '-')", name);
  char def[4096];
  const char *dir = np ? pos[0] : kp_opt_workspace;
  if (!dir) {
    if (kp_default_ws_dir(def, sizeof def) != 0) return 1;
    dir = def;
  }
  /* 'workspace create DIR' selects DIR for the current directory (a
   * .kusari/config.json pointer), unless --no-select or the current
   * directory is inside the workspace already. */
  char cwd[4096];
  int select = np && !no_select;
  if (select && !getcwd(cwd, sizeof cwd)) {
    kp_err("cannot read the current directory to select the workspace there: %s", strerror(errno));
    kp_hint("pass --no-select, and --workspace DIR or KUSARI_WORKSPACE=DIR to later commands");
    return 1;
  }
  if (select && !kp_is_url(dir)) {
    /* refuse a foreign .kusari/config.json before creating anything */
    char p[4200];
    snprintf(p, sizeof p, "%s/.kusari/config.json", cwd);
    char *s = kp_read_file(p, NULL);
    if (s) {
      cJSON *j = cJSON_Parse(s);
      free(s);
      int ours = j && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "workspace"));
      cJSON_Delete(j);
      if (!ours) {
        kp_err("%s exists and does not name a kusari workspace; not replacing it", p);
        kp_hint("move it away, or pass --no-select and use --workspace DIR or KUSARI_WORKSPACE=DIR");
        return 1;
      }
    }
  }
  kp_ws ws;
  if (store && !kp_store_uri_is_postgresql(store))
    return kp_usage_err("workspace create", "--store '%s' is not a PostgreSQL URI (postgresql://USER@HOST:PORT/DATABASE)", store);
  if (kp_ws_create_store(&ws, dir, name, store) != 0) { kp_ws_close(&ws); return 1; }
  printf("workspace %s (schema %d)\n", ws.root, KP_SCHEMA_VERSION);
  if (ws.store_uri[0]) {
    char safe[1100];
    kp_store_uri_redact(ws.store_uri, safe, sizeof safe);
    printf("store: %s\n", safe);
  }
  int rc = 0;
  if (select && inside(cwd, ws.root)) {
    printf("in use here: %s is inside it\n", cwd);
  } else if (select) {
    char old[4200];
    if (kp_ws_select(cwd, ws.root, old, sizeof old) != 0) {
      kp_hint("the workspace was created; use it with --workspace %s or KUSARI_WORKSPACE=%s", ws.root, ws.root);
      rc = 1;
    } else {
      printf("selected for %s and the directories below it (%s/.kusari/config.json)", cwd, cwd);
      if (old[0] && strcmp(old, ws.root)) printf("; it selected %s before", old);
      printf("\n");
      const char *env = getenv("KUSARI_WORKSPACE");
      if (kp_opt_workspace && *kp_opt_workspace)
        fprintf(stderr, "kusari: note: --workspace %s takes precedence over the selection in this command\n", kp_opt_workspace);
      else if (env && *env)
        fprintf(stderr, "kusari: note: KUSARI_WORKSPACE=%s is set and takes precedence over this selection; "
                "unset it to use %s\n", env, ws.root);
    }
  }
  kp_ws_close(&ws);
  return rc;
}

/* Why this workspace is the one in use, in words. */
static void selected_why(const kp_ws *ws, char *out, size_t n) {
  const char *b = ws->selected_by ? ws->selected_by : "";
  if (!strcmp(b, "flag")) snprintf(out, n, "--workspace");
  else if (!strcmp(b, "env")) snprintf(out, n, "KUSARI_WORKSPACE");
  else if (!strcmp(b, "directory")) snprintf(out, n, "the current directory (inside the workspace)");
  else if (!strcmp(b, "pointer")) snprintf(out, n, "the pointer %s", ws->via);
  else if (!strcmp(b, "default")) snprintf(out, n, "default (nothing else selects a workspace)");
  else snprintf(out, n, "%s", b);
}

/* workspace show against a tracking server: where, with which token, and
 * what the server holds (which also checks the connection and the token) */
static int show_remote(kp_ws *ws, int json) {
  kp_experiment_summary *e = NULL;
  kp_compute *c = NULL;
  kp_model *m = NULL;
  size_t ne = 0, nc = 0, nm = 0;
  int rc = 1;
  if (kp_store_experiment_list(ws->store, &e, &ne) != 0 || kp_store_compute_list(ws->store, NULL, &c, &nc) != 0 ||
      kp_store_model_list(ws->store, NULL, &m, &nm) != 0) {
    kp_store_report();
    goto out;
  }
  int runs = 0, models = 0;
  for (size_t i = 0; i < ne; i++) runs += e[i].runs;
  for (size_t i = 0; i < nm; i++)
    if (i == 0 || strcmp(m[i].name, m[i - 1].name) != 0) models++;
  const char *tok = ws->remote_token_name[0] ? ws->remote_token_name
                    : getenv("KUSARI_TRACKING_TOKEN") && *getenv("KUSARI_TRACKING_TOKEN") ? "(from KUSARI_TRACKING_TOKEN)"
                                                                                           : "(none)";
  if (json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "server", ws->remote);
    cJSON_AddStringToObject(j, "token", tok);
    cJSON_AddStringToObject(j, "selected_by", ws->selected_by ? ws->selected_by : "");
    cJSON_AddNumberToObject(j, "experiments", (double)ne);
    cJSON_AddNumberToObject(j, "runs", runs);
    cJSON_AddNumberToObject(j, "computes", (double)nc);
    cJSON_AddNumberToObject(j, "models", models);
    char *t = cJSON_Print(j);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(j);
  } else {
    printf("server:          %s\ntoken:           %s\nselected by:     %s\nexperiments:     %zu\nruns:            %d\n"
           "compute targets: %zu\nmodels:          %d\n",
           ws->remote, tok, ws->selected_by ? ws->selected_by : "", ne, runs, nc, models);
  }
  rc = 0;
out:
  kp_experiment_summaries_free(e, ne);
  kp_computes_free(c, nc);
  kp_models_free(m, nm);
  return rc;
}

static int ws_show(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("workspace show", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (ws.remote[0]) {
    int rc = show_remote(&ws, json);
    kp_ws_close(&ws);
    return rc;
  }
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", ws.root);
  char *s = kp_read_file(p, NULL);
  cJSON *cfg = s ? cJSON_Parse(s) : NULL;
  free(s);
  const char *name = cfg ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "name")) : NULL;
  kp_store_counts c = {-1, -1, -1, -1};
  if (kp_store_counts_get(ws.store, &c) != 0) kp_store_report();
  int ne = c.experiments, nr = c.runs, nc = c.computes, nm = c.models;
  char store[4200];
  if (ws.store_uri[0]) kp_store_uri_redact(ws.store_uri, store, sizeof store);
  else snprintf(store, sizeof store, "sqlite:%s/kusari.db", ws.root);
  if (json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name ? name : "");
    cJSON_AddStringToObject(j, "path", ws.root);
    cJSON_AddNumberToObject(j, "schema_version", KP_SCHEMA_VERSION);
    cJSON_AddStringToObject(j, "store", store);
    cJSON_AddStringToObject(j, "store_backend", kp_store_backend(ws.store));
    cJSON_AddNumberToObject(j, "experiments", ne);
    cJSON_AddNumberToObject(j, "runs", nr);
    cJSON_AddNumberToObject(j, "computes", nc);
    cJSON_AddNumberToObject(j, "models", nm);
    cJSON_AddStringToObject(j, "selected_by", ws.selected_by ? ws.selected_by : "");
    if (ws.via[0]) cJSON_AddStringToObject(j, "pointer", ws.via);
    char *t = cJSON_Print(j);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(j);
  } else {
    char why[4300];
    selected_why(&ws, why, sizeof why);
    printf("name:            %s\npath:            %s\nselected by:     %s\nstore:           %s\nschema version:  %d\n"
           "experiments:     %d\nruns:            %d\ncompute targets: %d\nmodels:          %d\n",
           name ? name : "", ws.root, why, store, KP_SCHEMA_VERSION, ne, nr, nc, nm);
  }
  cJSON_Delete(cfg);
  kp_ws_close(&ws);
  return 0;
}

/* ---- connect / disconnect: the user's tracking.json ------------------------------ */
static int ws_connect(int argc, char **argv) {
  const char *cmd = "workspace connect", *pos[1], *token = NULL, *tname = NULL;
  int np = 0;
  kp_opt opts[] = {{.name = "token", .val = &token}, {.name = "token-name", .val = &tname}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the server's URL (http://HOST:PORT)");
  if (strncmp(pos[0], "http://", 7) != 0 && strncmp(pos[0], "https://", 8) != 0)
    return kp_usage_err(cmd, "'%s' is not an http:// or https:// URL", pos[0]);
  if (strlen(pos[0]) > 900) return kp_usage_err(cmd, "the URL is longer than 900 bytes");
  if (!token || !*token)
    return kp_usage_err(cmd, "missing --token TOKEN (make one on the server with 'kusari server token create NAME')");
  if (strlen(token) > 900 || strpbrk(token, " \t\r\n"))
    return kp_usage_err(cmd, "--token must be the secret that 'kusari server token create' printed (no spaces)");
  if (tname && kp_name_ok(tname) != 0) return kp_usage_err(cmd, "invalid --token-name '%s' (letters, digits, '.', '_', '-')", tname);
  char p[4200];
  if (kp_tracking_config_path(p, sizeof p) != 0) {
    kp_err("cannot place the connection file: neither XDG_CONFIG_HOME nor HOME is set");
    kp_hint("set KUSARI_TRACKING_URI and KUSARI_TRACKING_TOKEN instead");
    return 1;
  }
  char d[4200];
  snprintf(d, sizeof d, "%s", p);
  *strrchr(d, '/') = '\0';
  if (kp_mkdirs(d, 0700) != 0) return 1;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "url", pos[0]);
  cJSON_AddStringToObject(j, "token", token);
  cJSON_AddStringToObject(j, "token_name", tname ? tname : "given");
  char *out = cJSON_Print(j);
  cJSON_Delete(j);
  /* written 0600 from the start: it holds the token's secret */
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  int fd = out ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  int ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, out, strlen(out)) == (ssize_t)strlen(out);
  if (fd >= 0 && close(fd) != 0) ok = 0;
  cJSON_free(out);
  if (!ok || rename(tmp, p) != 0) {
    kp_err("cannot write %s: %s", p, strerror(errno));
    unlink(tmp);
    return 1;
  }
  printf("connected to %s (token %s); commands use this server until 'kusari workspace disconnect'\n", pos[0],
         tname ? tname : "given");
  printf("connection saved in %s (mode 0600)\n", p);
  return 0;
}

static int ws_disconnect(int argc, char **argv) {
  if (kp_parse("workspace disconnect", argc, argv, (kp_opt[]){{0}}, NULL, NULL, 0, NULL)) return 2;
  char p[4200];
  if (kp_tracking_config_path(p, sizeof p) != 0 || access(p, F_OK) != 0) {
    printf("not connected to a tracking server\n");
    return 0;
  }
  if (unlink(p) != 0) return kp_err("cannot remove %s: %s", p, strerror(errno)), 1;
  printf("disconnected: commands use workspace directories again\n");
  return 0;
}

static const kp_cmd cmds[] = {
  {"create", ws_create, "create a workspace (default: the embedded default workspace)",
   "usage: kusari workspace create [DIR] [--name NAME] [--no-select] [--store postgresql://...]\n\n"
   "Creates a workspace in DIR (or the --workspace / default location): config.json,\n"
   "kusari.db (SQLite, WAL) and the blob store, private to you (the directory 0700,\n"
   "its files 0600). Creating an existing workspace is a no-op that migrates its\n"
   "schema if needed. Prints its absolute path.\n\n"
   "With DIR, it also selects the workspace for the current directory and the\n"
   "directories below it: it writes .kusari/config.json here, naming DIR, so later\n"
   "commands run here use it (unless --workspace or KUSARI_WORKSPACE says\n"
   "otherwise). Nothing is written when the current directory is inside DIR.\n\n"
   "  --name NAME     the workspace's name (default: the directory's name)\n"
   "  --no-select     do not write .kusari/config.json\n"
   "  --store URI     keep the workspace's records (experiments, runs, metrics,\n"
   "                  models, ...) in a PostgreSQL database instead of kusari.db:\n"
   "                  postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?PARAMS] (libpq's\n"
   "                  URI; a password is better in ~/.pgpass). The URI goes into\n"
   "                  config.json (0600); blobs, logs and snapshots stay in DIR.\n"
   "                  One database per workspace. Sweeps and scoring services do\n"
   "                  not work on a PostgreSQL store yet. See docs/PLATFORM.md.\n\n"
   "DIR must be a directory: URLs (http://...) are refused, as tracking servers\n"
   "are not supported yet.\n"},
  {"show", ws_show, "show the current workspace",
   "usage: kusari workspace show [--json]\n\n"
   "Shows which workspace is in use and what selected it, its store (sqlite:PATH,\n"
   "or the PostgreSQL URI without its password), its schema version and how many\n"
   "experiments, runs, compute targets and models it holds.\n\n"
   "The workspace is, in this order: --workspace DIR; $KUSARI_WORKSPACE; going\n"
   "up from the current directory, the first directory that is a workspace or\n"
   "holds a .kusari/config.json (written by 'workspace create DIR'); else the\n"
   "default workspace under $XDG_DATA_HOME/kusari (or ~/.local/share/kusari).\n"
   "--json gives \"selected_by\": flag, env, directory, pointer (with\n"
   "\"pointer\": its path) or default.\n\n"
   "Against a tracking server (KUSARI_TRACKING_URI or 'workspace connect') it\n"
   "shows the server's URL, the token's name (never its secret), what selected\n"
   "it, and how many experiments, runs, compute targets and models it holds.\n"},
  {"connect", ws_connect, "use a tracking server (kusari server) for later commands",
   "usage: kusari workspace connect URL --token TOKEN [--token-name NAME]\n\n"
   "Makes later commands talk to the tracking server at URL (http://HOST:PORT,\n"
   "served by 'kusari server') with the API token TOKEN (made on the server by\n"
   "'kusari server token create NAME'; --token-name records NAME for 'workspace\n"
   "show', default \"given\"). Saved in $XDG_CONFIG_HOME/kusari/tracking.json\n"
   "(~/.config/kusari/tracking.json), mode 0600; the token is never printed.\n"
   "KUSARI_TRACKING_URI (and KUSARI_TRACKING_TOKEN) override it for one\n"
   "command; --workspace DIR and KUSARI_WORKSPACE=DIR still pick a directory.\n\n"
   "Against a server work: experiment list|show, run list|show|metrics|tag|\n"
   "untag|cancel|wait|files|logs|download, model list|show, compute list|show,\n"
   "workspace show.\n"
   "The other commands need the workspace's files and say so (docs/SERVER.md).\n"},
  {"disconnect", ws_disconnect, "stop using the tracking server of 'workspace connect'",
   "usage: kusari workspace disconnect\n\n"
   "Removes the connection that 'workspace connect' saved: later commands use\n"
   "workspace directories again.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_workspace(int argc, char **argv) {
  return kp_dispatch("workspace", "usage: kusari workspace SUBCOMMAND\n\nManage workspaces.\n", cmds, argc, argv);
}
