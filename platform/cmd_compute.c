/*
 * platform/cmd_compute.c — `kusari compute create|list|show|delete`.
 * A compute target of type local runs at most max_nodes runs at a time on
 * this machine; the supervisors of the others wait in Queued (supervisor.c).
 */
#include "kp.h"
#include "compute.h"
#include "views.h"

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
  if (!kp_compute_find(type)) {
    char types[256];
    kp_compute_type_names(types, sizeof types);
    return kp_usage_err("compute create", "unsupported --type '%s'; this kusari supports: %s", type, types);
  }
  long long n;
  if (kp_parse_int(nodes, &n) != 0 || n < 1 || n > 1024)
    return kp_usage_err("compute create", "--max-nodes must be an integer from 1 to 1024, got '%s'", nodes);
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  if (kp_store_compute_create(ws.store, pos[0], type, (int)n) == 0) {
    printf("compute target %s created (type %s, max nodes %lld)\n", pos[0], type, n);
    rc = 0;
  } else {
    int exists = kp_store_last_error()->code == KP_STORE_EEXISTS;
    kp_store_report();
    if (exists) kp_hint("see it with 'kusari compute show %s', or delete it first", pos[0]);
  }
  kp_ws_close(&ws);
  return rc;
}

/* Adds the view of each target (or just 'only') to 'arr'. */
static int load(kp_ws *ws, const char *only, cJSON *arr) {
  kp_compute *v;
  size_t n;
  if (kp_store_compute_list(ws->store, only, &v, &n) != 0) {
    int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (notfound)
      kp_hint("list them with 'kusari compute list'; create one with 'kusari compute create %s --type local --max-nodes 1'", only);
    return -1;
  }
  for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, kp_view_compute(&v[i]));
  kp_computes_free(v, n);
  return 0;
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
  if (rc == 0 && json) {
    char *t = cJSON_Print(show ? cJSON_GetArrayItem(arr, 0) : arr);
    puts(t);
    cJSON_free(t);
  } else if (rc == 0 && show) {
    cJSON *o = cJSON_GetArrayItem(arr, 0);
    printf("name:        %s\ntype:        %s\nmax nodes:   %d\nbusy nodes:  %d\nidle nodes:  %d\nqueued runs: %d\n",
           str(o, "name"), str(o, "type"), num(o, "max_nodes"), num(o, "busy_nodes"), num(o, "idle_nodes"),
           num(o, "queued_runs"));
    const kp_compute_ops *t = kp_compute_find(str(o, "type"));
    char d[512];
    if (t) {
      t->describe(num(o, "max_nodes"), d, sizeof d);
      printf("runs on:     %s\n", d);
    }
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
  int rc = 0, active = 0;
  if (kp_store_compute_delete(ws.store, pos[0], &active) == 0) {
    printf("compute target %s deleted\n", pos[0]);
  } else {
    kp_store_code code = kp_store_last_error()->code;
    kp_store_report();
    if (code == KP_STORE_ECONFLICT)
      kp_hint("wait for them ('kusari run list --status Running') or cancel them, then delete the target");
    else if (code == KP_STORE_ENOTFOUND)
      kp_hint("list them with 'kusari compute list'");
    rc = 1;
  }
  kp_ws_close(&ws);
  return rc;
}

static const kp_cmd cmds[] = {
  {"create", cp_create, "create a compute target",
   "usage: kusari compute create NAME [--type local] [--max-nodes N]\n\n"
   "Creates a compute target. Type local runs on this machine, at most N runs at\n"
   "a time (default 1; a distributed run takes its --nodes of the N); further runs\n"
   "wait in state Queued.\n"},
  {"list", cp_list, "list compute targets",
   "usage: kusari compute list [--json]\n\nLists compute targets with busy and idle nodes and queued runs.\n"},
  {"show", cp_show, "show one compute target",
   "usage: kusari compute show NAME [--json]\n\nShows a compute target: type, max nodes, busy/idle nodes, queued runs,\n"
   "and what its type runs on.\n"},
  {"delete", cp_delete, "delete a compute target (refused while runs use it)",
   "usage: kusari compute delete NAME\n\nDeletes a compute target. Refused while runs on it are not finished.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_compute(int argc, char **argv) {
  return kp_dispatch("compute", "usage: kusari compute SUBCOMMAND\n\nManage compute targets.\n", cmds, argc, argv);
}
