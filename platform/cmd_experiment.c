/*
 * platform/cmd_experiment.c — `kusari experiment list`: experiments are
 * created by the first run submitted to them; this lists them with their
 * run counts.
 */
#include "kp.h"

#include <cjson/cJSON.h>
#include <stdio.h>

static int exp_list(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("experiment list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  sqlite3_stmt *st;
  if (kp_db_prepare(&ws, &st,
                    "SELECT e.name, e.created, count(r.seq),"
                    " sum(r.status='Completed'), sum(r.status='Failed'), sum(r.status='Canceled'),"
                    " sum(r.status IN ('Queued','Preparing','Running','Finalizing')), max(r.created)"
                    " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id GROUP BY e.id ORDER BY e.name") != 0) {
    kp_ws_close(&ws);
    return 1;
  }
  cJSON *arr = cJSON_CreateArray();
  while (kp_db_row(st) > 0) {
    cJSON *o = cJSON_CreateObject();
    char t[64];
    cJSON_AddStringToObject(o, "name", kp_col_text(st, 0));
    kp_fmt_time(sqlite3_column_double(st, 1), t, sizeof t);
    cJSON_AddStringToObject(o, "created", t);
    cJSON_AddNumberToObject(o, "runs", sqlite3_column_int(st, 2));
    cJSON_AddNumberToObject(o, "completed", sqlite3_column_int(st, 3));
    cJSON_AddNumberToObject(o, "failed", sqlite3_column_int(st, 4));
    cJSON_AddNumberToObject(o, "canceled", sqlite3_column_int(st, 5));
    cJSON_AddNumberToObject(o, "active", sqlite3_column_int(st, 6));
    kp_fmt_time(sqlite3_column_double(st, 7), t, sizeof t);
    cJSON_AddStringToObject(o, "last_run", t);
    cJSON_AddItemToArray(arr, o);
  }
  sqlite3_finalize(st);
  kp_ws_close(&ws);
  if (json) {
    char *t = cJSON_Print(arr);
    puts(t);
    cJSON_free(t);
  } else {
    printf("%-28s %5s %9s %6s %8s %6s  %s\n", "EXPERIMENT", "RUNS", "COMPLETED", "FAILED", "CANCELED", "ACTIVE", "LAST RUN");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
#define N(k) cJSON_GetObjectItemCaseSensitive(o, k)->valueint
      printf("%-28s %5d %9d %6d %8d %6d  %s\n", cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, N("runs"),
             N("completed"), N("failed"), N("canceled"), N("active"),
             cJSON_GetObjectItemCaseSensitive(o, "last_run")->valuestring);
#undef N
    }
  }
  cJSON_Delete(arr);
  return 0;
}

static const kp_cmd cmds[] = {
  {"list", exp_list, "list experiments with their run counts",
   "usage: kusari experiment list [--json]\n\n"
   "Lists experiments (created by the first run submitted to them) with how many\n"
   "runs completed, failed, were canceled or are active. See their runs with\n"
   "'kusari run list --experiment NAME'.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_experiment(int argc, char **argv) {
  return kp_dispatch("experiment", "usage: kusari experiment SUBCOMMAND\n\nExperiments group runs.\n", cmds, argc, argv);
}
