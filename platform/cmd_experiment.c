/*
 * platform/cmd_experiment.c — `kusari experiment list|show|delete`:
 * experiments are created by the first run submitted to them; list gives
 * their run counts, show one experiment's runs by status, last activity and
 * the spread of its runs' final metrics, delete removes it with its runs
 * (delete.c).
 */
#include "kp.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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

static void add_time(cJSON *o, const char *k, sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL) { cJSON_AddNullToObject(o, k); return; }
  char t[64];
  kp_fmt_time(sqlite3_column_double(st, col), t, sizeof t);
  cJSON_AddStringToObject(o, k, t);
}

/* A metric value. SQLite keeps NaN as NULL: a NULL latest value was a NaN, a
 * NULL min or max means no run had a number (null, shown as "-"). */
static void add_num(cJSON *o, const char *k, sqlite3_stmt *st, int col, int null_is_nan) {
  if (sqlite3_column_type(st, col) == SQLITE_NULL && !null_is_nan) cJSON_AddNullToObject(o, k);
  else cJSON_AddItemToObject(o, k, kp_json_metric(sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col)));
}

static const char *const STATUS_ORDER[] = {"Queued", "Preparing", "Running", "Finalizing", "Completed", "Failed", "Canceled", NULL};

/* Loads experiment 'name': counts, times, metrics; NULL when absent. */
static cJSON *load_experiment(kp_ws *ws, const char *name) {
  sqlite3_stmt *st;
  if (kp_db_prepare(ws, &st,
                    "SELECT e.id, e.created, count(r.seq), max(max(coalesce(r.ended, 0), coalesce(r.started, 0), r.created)),"
                    " (SELECT count(*) FROM sweeps w JOIN runs x ON x.id=w.run_id WHERE x.experiment_id=e.id)"
                    " FROM experiments e LEFT JOIN runs r ON r.experiment_id=e.id WHERE e.name=? GROUP BY e.id") != 0)
    return NULL;
  kp_bind_text(st, 1, name);
  if (kp_db_row(st) <= 0) { sqlite3_finalize(st); return NULL; }
  cJSON *o = cJSON_CreateObject();
  sqlite3_int64 eid = sqlite3_column_int64(st, 0);
  cJSON_AddStringToObject(o, "name", name);
  add_time(o, "created", st, 1);
  cJSON_AddNumberToObject(o, "runs", sqlite3_column_int(st, 2));
  if (sqlite3_column_int(st, 2)) add_time(o, "last_activity", st, 3);
  else cJSON_AddNullToObject(o, "last_activity");
  cJSON_AddNumberToObject(o, "sweeps", sqlite3_column_int(st, 4));
  sqlite3_finalize(st);
  cJSON *by = cJSON_AddObjectToObject(o, "by_status");
  for (int i = 0; STATUS_ORDER[i]; i++) cJSON_AddNumberToObject(by, STATUS_ORDER[i], 0);
  if (kp_db_prepare(ws, &st, "SELECT status, count(*) FROM runs WHERE experiment_id=? GROUP BY status") == 0) {
    sqlite3_bind_int64(st, 1, eid);
    while (kp_db_row(st) > 0) {
      cJSON_DeleteItemFromObjectCaseSensitive(by, kp_col_text(st, 0));
      cJSON_AddNumberToObject(by, kp_col_text(st, 0), sqlite3_column_int(st, 1));
    }
    sqlite3_finalize(st);
  }
  /* each run's final value of each metric (latest step), then per metric:
   * how many runs, the lowest and highest with their runs, the newest run's */
  cJSON *ms = cJSON_AddArrayToObject(o, "metrics");
  if (kp_db_prepare(ws, &st,
                    "WITH fin AS (SELECT m.name, m.value, r.id AS run, r.seq FROM metrics m JOIN runs r ON r.id=m.run_id"
                    "  WHERE r.experiment_id=?1 AND m.id=(SELECT x.id FROM metrics x WHERE x.run_id=m.run_id AND x.name=m.name"
                    "  ORDER BY x.step DESC, x.id DESC LIMIT 1)),"
                    " g AS (SELECT name, count(*) AS n, min(value) AS lo, max(value) AS hi, max(seq) AS newest FROM fin GROUP BY name)"
                    " SELECT g.name, g.n, g.lo, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.lo ORDER BY seq DESC LIMIT 1),"
                    "  g.hi, (SELECT run FROM fin WHERE fin.name=g.name AND fin.value=g.hi ORDER BY seq DESC LIMIT 1),"
                    "  (SELECT value FROM fin WHERE fin.name=g.name AND fin.seq=g.newest), (SELECT run FROM fin WHERE fin.name=g.name AND fin.seq=g.newest)"
                    " FROM g ORDER BY g.name") == 0) {
    sqlite3_bind_int64(st, 1, eid);
    while (kp_db_row(st) > 0) {
      cJSON *m = cJSON_CreateObject();
      cJSON_AddStringToObject(m, "name", kp_col_text(st, 0));
      cJSON_AddNumberToObject(m, "runs", sqlite3_column_int(st, 1));
      add_num(m, "min", st, 2, 0);
      cJSON_AddStringToObject(m, "min_run", kp_col_text(st, 3));
      add_num(m, "max", st, 4, 0);
      cJSON_AddStringToObject(m, "max_run", kp_col_text(st, 5));
      add_num(m, "latest", st, 6, 1);
      cJSON_AddStringToObject(m, "latest_run", kp_col_text(st, 7));
      cJSON_AddItemToArray(ms, m);
    }
    sqlite3_finalize(st);
  }
  cJSON *recent = cJSON_AddArrayToObject(o, "recent_runs");
  if (kp_db_prepare(ws, &st, "SELECT id, status, created FROM runs WHERE experiment_id=? ORDER BY seq DESC LIMIT 5") == 0) {
    sqlite3_bind_int64(st, 1, eid);
    while (kp_db_row(st) > 0) {
      cJSON *r = cJSON_CreateObject();
      cJSON_AddStringToObject(r, "id", kp_col_text(st, 0));
      cJSON_AddStringToObject(r, "status", kp_col_text(st, 1));
      add_time(r, "created", st, 2);
      cJSON_AddItemToArray(recent, r);
    }
    sqlite3_finalize(st);
  }
  return o;
}

static const char *js(const cJSON *o, const char *k) {
  const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
  return s ? s : "-";
}


static int exp_show(int argc, char **argv) {
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("experiment show", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("experiment show", "missing the experiment NAME");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  cJSON *o = load_experiment(&ws, pos[0]);
  kp_ws_close(&ws);
  if (!o) {
    if (kp_store_errors) return 1;
    kp_err("no experiment named '%s' in this workspace", pos[0]);
    kp_hint("list experiments with 'kusari experiment list'");
    return 1;
  }
  if (json) {
    char *t = cJSON_Print(o);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(o);
    return 0;
  }
  const cJSON *by = cJSON_GetObjectItemCaseSensitive(o, "by_status"), *b;
  char counts[512] = "";
  cJSON_ArrayForEach(b, by) {
    if (!b->valueint) continue;
    size_t l = strlen(counts);
    snprintf(counts + l, sizeof counts - l, "%s%s %d", l ? ", " : "", b->string, b->valueint);
  }
  printf("experiment:     %s\ncreated:        %s\nruns:           %d%s%s%s\nsweeps:         %d\nlast activity:  %s\n",
         js(o, "name"), js(o, "created"), cJSON_GetObjectItemCaseSensitive(o, "runs")->valueint, *counts ? " (" : "", counts,
         *counts ? ")" : "", cJSON_GetObjectItemCaseSensitive(o, "sweeps")->valueint, js(o, "last_activity"));
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "metrics"), *m;
  if (cJSON_GetArraySize(ms)) {
    printf("\nfinal metrics (each run's latest value):\n");
    int wn = 6, wr = 3;
    cJSON_ArrayForEach(m, ms) {
      int l = (int)strlen(js(m, "name"));
      if (l > wn) wn = l;
      const char *rk[] = {"min_run", "max_run", "latest_run"};
      for (int i = 0; i < 3; i++) {
        l = (int)strlen(js(m, rk[i]));
        if (l > wr) wr = l;
      }
    }
    printf("  %-*s %4s  %-*s  %-*s  %-*s\n", wn, "METRIC", "RUNS", wr + 13, "MIN (RUN)", wr + 13, "MAX (RUN)", wr + 13, "LATEST (RUN)");
    cJSON_ArrayForEach(m, ms) {
      char lo[64], hi[64], la[64], c1[400], c2[400], c3[400];
      kp_fmt_metric(cJSON_GetObjectItemCaseSensitive(m, "min"), lo, sizeof lo);
      kp_fmt_metric(cJSON_GetObjectItemCaseSensitive(m, "max"), hi, sizeof hi);
      kp_fmt_metric(cJSON_GetObjectItemCaseSensitive(m, "latest"), la, sizeof la);
      snprintf(c1, sizeof c1, "%s (%s)", lo, js(m, "min_run"));
      snprintf(c2, sizeof c2, "%s (%s)", hi, js(m, "max_run"));
      snprintf(c3, sizeof c3, "%s (%s)", la, js(m, "latest_run"));
      printf("  %-*s %4d  %-*s  %-*s  %-*s\n", wn, js(m, "name"), cJSON_GetObjectItemCaseSensitive(m, "runs")->valueint,
             wr + 13, c1, wr + 13, c2, wr + 13, c3);
    }
  }
  const cJSON *rr = cJSON_GetObjectItemCaseSensitive(o, "recent_runs"), *r;
  if (cJSON_GetArraySize(rr)) {
    printf("\nrecent runs:\n");
    cJSON_ArrayForEach(r, rr) printf("  %-32s %-10s %s\n", js(r, "id"), js(r, "status"), js(r, "created"));
    printf("(all of them: kusari run list --experiment %s)\n", js(o, "name"));
  }
  cJSON_Delete(o);
  return 0;
}

static int exp_delete(int argc, char **argv) {
  const char *cmd = "experiment delete", *pos[1];
  int np = 0, yes = 0, dry = 0;
  kp_opt opts[] = {{.name = "yes", .alias = "-y", .flag = &yes}, {.name = "dry-run", .flag = &dry}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the experiment NAME");
  return kp_delete(cmd, KP_DEL_EXPERIMENT, pos, 1, yes, dry);
}

static const kp_cmd cmds[] = {
  {"list", exp_list, "list experiments with their run counts",
   "usage: kusari experiment list [--json]\n\n"
   "Lists experiments (created by the first run submitted to them) with how many\n"
   "runs completed, failed, were canceled or are active. See their runs with\n"
   "'kusari run list --experiment NAME'.\n"},
  {"show", exp_show, "show an experiment: runs by status, last activity, final metrics",
   "usage: kusari experiment show NAME [--json]\n\n"
   "Shows the experiment's runs by status, its sweeps, when anything last happened\n"
   "(a run created, started or ended), and for each metric its runs logged: how many\n"
   "runs, the lowest and highest final value (each run's latest) with their runs, and\n"
   "the newest run's value; then the newest runs.\n"},
  {"delete", exp_delete, "delete an experiment with all of its runs (none may be active)",
   "usage: kusari experiment delete NAME [--yes] [--dry-run]\n\n"
   "Deletes the experiment and every run in it (sweeps included), as 'kusari run\n"
   "delete' does: records, then the blobs nothing else uses (registered model versions\n"
   "keep theirs). Refuses while any of its runs is active. Asks for confirmation on a\n"
   "terminal; --yes deletes without asking; --dry-run only says what would go.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_experiment(int argc, char **argv) {
  return kp_dispatch("experiment", "usage: kusari experiment SUBCOMMAND\n\nExperiments group runs.\n", cmds, argc, argv);
}
