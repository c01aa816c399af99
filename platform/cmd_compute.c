/*
 * platform/cmd_compute.c — `kusari compute create|list|show|delete`.
 * A compute target of type local runs at most max_nodes runs at a time on
 * this machine; the supervisors of the others wait in Queued (supervisor.c).
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static int cp_create(int argc, char **argv) {
  const char *type = "local", *nodes = "1", *pos[1];
  int np = 0;
  kp_opt opts[] = {{.name = "type", .val = &type}, {.name = "max-nodes", .val = &nodes}, {0}};
  if (kp_parse("compute create", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("compute create", "missing the compute target's NAME");
  if (kp_name_ok(pos[0]) != 0)
    return kp_usage_err("compute create", "invalid name '%s': use letters, digits, '.', '_' and '-', starting with a letter or digit", pos[0]);
  if (strcmp(type, "local") != 0)
    return kp_usage_err("compute create", "unsupported --type '%s'; this kusari supports: local", type);
  long long n;
  if (kp_parse_int(nodes, &n) != 0 || n < 1 || n > 1024)
    return kp_usage_err("compute create", "--max-nodes must be an integer from 1 to 1024, got '%s'", nodes);
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  sqlite3_stmt *st;
  int rc = 1;
  if (kp_db_prepare(&ws, &st, "INSERT INTO computes(name, type, max_nodes, created) VALUES(?,?,?,?)") == 0) {
    kp_bind_text(st, 1, pos[0]);
    kp_bind_text(st, 2, type);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_double(st, 4, kp_now());
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
      printf("compute target %s created (type %s, max nodes %lld)\n", pos[0], type, n);
      rc = 0;
    } else if (sqlite3_extended_errcode(ws.db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      kp_err("compute target '%s' already exists", pos[0]);
      kp_hint("see it with 'kusari compute show %s', or delete it first", pos[0]);
    } else {
      kp_err("store: %s", sqlite3_errmsg(ws.db));
    }
    sqlite3_finalize(st);
  }
  kp_ws_close(&ws);
  return rc;
}

/* Adds {name,type,max_nodes,busy,queued} of each target (or just 'only'). */
static int load(kp_ws *ws, const char *only, cJSON *arr) {
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st,
                    "SELECT c.name, c.type, c.max_nodes,"
                    " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status IN ('Preparing','Running','Finalizing')),"
                    " (SELECT count(*) FROM runs r WHERE r.compute=c.name AND r.status='Queued')"
                    " FROM computes c WHERE ?1 IS NULL OR c.name=?1 ORDER BY c.name") != 0)
    return -1;
  kp_bind_text(st, 1, only);
  int r;
  while ((r = kp_db_row(st)) > 0) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", kp_col_text(st, 0));
    cJSON_AddStringToObject(o, "type", kp_col_text(st, 1));
    int max = sqlite3_column_int(st, 2), busy = sqlite3_column_int(st, 3);
    cJSON_AddNumberToObject(o, "max_nodes", max);
    cJSON_AddNumberToObject(o, "busy_nodes", busy);
    cJSON_AddNumberToObject(o, "idle_nodes", max > busy ? max - busy : 0);
    cJSON_AddNumberToObject(o, "queued_runs", sqlite3_column_int(st, 4));
    cJSON_AddItemToArray(arr, o);
  }
  sqlite3_finalize(st);
  return r == 0 ? 0 : -1;
}

static int num(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k)->valueint; }
static const char *str(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k)->valuestring; }

static int cp_list_show(int argc, char **argv, int show) {
  const char *cmd = show ? "compute show" : "compute list";
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, show ? 1 : 0, NULL)) return 2;
  if (show && np != 1) return kp_usage_err(cmd, "missing the compute target's NAME");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  cJSON *arr = cJSON_CreateArray();
  int rc = load(&ws, show ? pos[0] : NULL, arr) == 0 ? 0 : 1;
  if (rc == 0 && show && cJSON_GetArraySize(arr) == 0) {
    kp_err("no compute target named '%s'", pos[0]);
    kp_hint("list them with 'kusari compute list'; create one with 'kusari compute create %s --type local --max-nodes 1'", pos[0]);
    rc = 1;
  } else if (rc == 0 && json) {
    char *t = cJSON_Print(show ? cJSON_GetArrayItem(arr, 0) : arr);
    puts(t);
    cJSON_free(t);
  } else if (rc == 0 && show) {
    cJSON *o = cJSON_GetArrayItem(arr, 0);
    printf("name:        %s\ntype:        %s\nmax nodes:   %d\nbusy nodes:  %d\nidle nodes:  %d\nqueued runs: %d\n",
           str(o, "name"), str(o, "type"), num(o, "max_nodes"), num(o, "busy_nodes"), num(o, "idle_nodes"),
           num(o, "queued_runs"));
  } else if (rc == 0) {
    printf("%-20s %-6s %5s %5s %5s %6s\n", "NAME", "TYPE", "MAX", "BUSY", "IDLE", "QUEUED");
    cJSON *o;
    cJSON_ArrayForEach(o, arr)
      printf("%-20s %-6s %5d %5d %5d %6d\n", str(o, "name"), str(o, "type"), num(o, "max_nodes"),
             num(o, "busy_nodes"), num(o, "idle_nodes"), num(o, "queued_runs"));
  }
  cJSON_Delete(arr);
  kp_ws_close(&ws);
  return rc;
}

static int cp_list(int argc, char **argv) { return cp_list_show(argc, argv, 0); }
static int cp_show(int argc, char **argv) { return cp_list_show(argc, argv, 1); }

static int cp_delete(int argc, char **argv) {
  const char *pos[1];
  int np = 0;
  if (kp_parse("compute delete", argc, argv, NULL, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("compute delete", "missing the compute target's NAME");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  int rc = 1;
  sqlite3_stmt *st = NULL;
  if (kp_db_begin(&ws) != 0) goto out;
  if (kp_db_prepare(&ws, &st, "SELECT count(*) FROM runs WHERE compute=? AND status IN ('Queued','Preparing','Running','Finalizing')") != 0) goto out;
  kp_bind_text(st, 1, pos[0]);
  int active = kp_db_row(st) > 0 ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  st = NULL;
  if (active != 0) {
    kp_err("compute target '%s' is in use by %d active run(s)", pos[0], active);
    kp_hint("wait for them ('kusari run list --status Running') or cancel them, then delete the target");
    goto out;
  }
  if (kp_db_prepare(&ws, &st, "DELETE FROM computes WHERE name=?") != 0) goto out;
  kp_bind_text(st, 1, pos[0]);
  if (kp_db_done(&ws, st) != 0) goto out;
  if (sqlite3_changes(ws.db) == 0) {
    kp_err("no compute target named '%s'", pos[0]);
    kp_hint("list them with 'kusari compute list'");
    goto out;
  }
  if (kp_db_commit(&ws) != 0) goto out;
  printf("compute target %s deleted\n", pos[0]);
  rc = 0;
out:
  sqlite3_finalize(st);
  kp_db_rollback(&ws);
  kp_ws_close(&ws);
  return rc;
}

static const kp_cmd cmds[] = {
  {"create", cp_create, "create a compute target",
   "usage: kusari compute create NAME [--type local] [--max-nodes N]\n\n"
   "Creates a compute target. Type local runs on this machine, at most N runs at\n"
   "a time (default 1); further runs wait in state Queued.\n"},
  {"list", cp_list, "list compute targets",
   "usage: kusari compute list [--json]\n\nLists compute targets with busy and idle nodes and queued runs.\n"},
  {"show", cp_show, "show one compute target",
   "usage: kusari compute show NAME [--json]\n\nShows a compute target: type, max nodes, busy/idle nodes, queued runs.\n"},
  {"delete", cp_delete, "delete a compute target (refused while runs use it)",
   "usage: kusari compute delete NAME\n\nDeletes a compute target. Refused while runs on it are not finished.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_compute(int argc, char **argv) {
  return kp_dispatch("compute", "usage: kusari compute SUBCOMMAND\n\nManage compute targets.\n", cmds, argc, argv);
}
