/*
 * platform/cmd_workspace.c — `kusari workspace create|show`.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ws_create(int argc, char **argv) {
  const char *name = NULL, *pos[1];
  int np = 0;
  kp_opt opts[] = {{.name = "name", .val = &name}, {0}};
  if (kp_parse("workspace create", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (name && kp_name_ok(name) != 0)
    return kp_usage_err("workspace create", "invalid workspace name '%s' (letters, digits, '.', '_', '-')", name);
  char def[4096];
  const char *dir = np ? pos[0] : kp_opt_workspace;
  if (!dir) {
    if (kp_default_ws_dir(def, sizeof def) != 0) return 1;
    dir = def;
  }
  kp_ws ws;
  if (kp_ws_create(&ws, dir, name) != 0) { kp_ws_close(&ws); return 1; }
  printf("workspace %s (schema %d)\n", ws.root, KP_SCHEMA_VERSION);
  kp_ws_close(&ws);
  return 0;
}

static int count(kp_ws *ws, const char *sql) {
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st, sql) != 0) return -1;
  int n = kp_db_row(st) > 0 ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  return n;
}

static int ws_show(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("workspace show", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  char p[4200];
  snprintf(p, sizeof p, "%s/config.json", ws.root);
  char *s = kp_read_file(p, NULL);
  cJSON *cfg = s ? cJSON_Parse(s) : NULL;
  free(s);
  const char *name = cfg ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cfg, "name")) : NULL;
  int ne = count(&ws, "SELECT count(*) FROM experiments");
  int nr = count(&ws, "SELECT count(*) FROM runs");
  int nc = count(&ws, "SELECT count(*) FROM computes");
  int nm = count(&ws, "SELECT count(*) FROM models");
  if (json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", name ? name : "");
    cJSON_AddStringToObject(j, "path", ws.root);
    cJSON_AddNumberToObject(j, "schema_version", KP_SCHEMA_VERSION);
    cJSON_AddNumberToObject(j, "experiments", ne);
    cJSON_AddNumberToObject(j, "runs", nr);
    cJSON_AddNumberToObject(j, "computes", nc);
    cJSON_AddNumberToObject(j, "models", nm);
    char *t = cJSON_Print(j);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(j);
  } else {
    printf("name:            %s\npath:            %s\nschema version:  %d\nexperiments:     %d\nruns:            %d\n"
           "compute targets: %d\nmodels:          %d\n",
           name ? name : "", ws.root, KP_SCHEMA_VERSION, ne, nr, nc, nm);
  }
  cJSON_Delete(cfg);
  kp_ws_close(&ws);
  return 0;
}

static const kp_cmd cmds[] = {
  {"create", ws_create, "create a workspace (default: the embedded default workspace)",
   "usage: kusari workspace create [DIR] [--name NAME]\n\n"
   "Creates a workspace in DIR (or the --workspace / default location): config.json,\n"
   "kusari.db (SQLite, WAL) and the blob store. Creating an existing workspace is a\n"
   "no-op that migrates its schema if needed. Prints its absolute path.\n"},
  {"show", ws_show, "show the current workspace",
   "usage: kusari workspace show [--json]\n\n"
   "Shows which workspace is in use (see 'kusari --help' for how it is found),\n"
   "its schema version and how many experiments, runs, compute targets and\n"
   "models it holds.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_workspace(int argc, char **argv) {
  return kp_dispatch("workspace", "usage: kusari workspace SUBCOMMAND\n\nManage workspaces.\n", cmds, argc, argv);
}
