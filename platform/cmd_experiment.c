/*
 * platform/cmd_experiment.c — `kusari experiment list|show|delete`:
 * experiments are created by the first run submitted to them; list gives
 * their run counts, show one experiment's runs by status, last activity and
 * the spread of its runs' final metrics, delete removes it with its runs
 * (delete.c).
 */
#include "kp.h"
#include "manage.h"
#include "views.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static int exp_list(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("experiment list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  kp_reconcile(&ws);
  kp_experiment_summary *v;
  size_t n;
  if (kp_store_experiment_list(ws.store, &v, &n) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  if (json) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, kp_view_experiment_summary(&v[i]));
    char *t = cJSON_Print(arr);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(arr);
  } else {
    printf("%-28s %5s %9s %6s %8s %6s  %s\n", "EXPERIMENT", "RUNS", "COMPLETED", "FAILED", "CANCELED", "ACTIVE", "LAST RUN");
    for (size_t i = 0; i < n; i++) {
      char t[64];
      kp_fmt_time(v[i].last_run, t, sizeof t);
      printf("%-28s %5d %9d %6d %8d %6d  %s\n", v[i].name, v[i].runs, v[i].completed, v[i].failed, v[i].canceled,
             v[i].active, t);
    }
  }
  kp_experiment_summaries_free(v, n);
  return 0;
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
  kp_experiment_detail d;
  if (kp_store_experiment_get(ws.store, pos[0], &d) != 0) {
    int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (notfound) kp_hint("list experiments with 'kusari experiment list'");
    kp_ws_close(&ws);
    return 1;
  }
  kp_ws_close(&ws);
  cJSON *o = kp_view_experiment(&d);
  kp_experiment_detail_free(&d);
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
