/*
 * platform/cmd_run.c — `kusari run submit|wait|list|show|compare|plot|tag|
 * untag|delete|logs|files|download|cancel|metrics`. Submission snapshots the
 * source, records the run (Queued) and starts its detached supervisor
 * (supervisor.c); every reading command first reconciles runs whose
 * supervisor died. Deleting is in delete.c, drawing in plot.c.
 */
#include "kp.h"
#include "compute.h"
#include "filter.h"
#include "limits.h"
#include "views.h"
#include "manage.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int open_ws(kp_ws *ws) {
  if (kp_ws_open(ws) != 0) { kp_ws_close(ws); return -1; }
  kp_reconcile(ws);
  return 0;
}

/* Prints a "no such run" error with a hint. */
static int no_run(const char *id) {
  kp_err("no run with id '%s' in this workspace", id);
  kp_hint("list runs with 'kusari run list'");
  return 1;
}

/* ---- submit ---------------------------------------------------------------------- */
static int run_submit(int argc, char **argv) {
  const char *exp = NULL, *source = NULL, *entry = NULL, *compute = NULL, *envf = NULL, *limit = "300";
  const char *snapshot = NULL, *tags[KP_MULTI_MAX], *params[KP_MULTI_MAX], *pos[1], *nodes = NULL, *ppn = NULL,
             *mpirun = NULL, *memory = NULL, *cpus = NULL;
  int ntags = 0, nparams = 0, np = 0, rest = argc;
  kp_opt opts[] = {{.name = "experiment", .alias = "-e", .val = &exp},
                   {.name = "source", .val = &source},
                   {.name = "entry", .val = &entry},
                   {.name = "compute", .val = &compute},
                   {.name = "env", .val = &envf},
                   {.name = "snapshot-limit-mb", .val = &limit},
                   {.name = "snapshot", .val = &snapshot},
                   {.name = "tag", .multi = tags, .nmulti = &ntags},
                   {.name = "nodes", .val = &nodes},
                   {.name = "processes-per-node", .val = &ppn},
                   {.name = "mpirun", .val = &mpirun},
                   {.name = "param", .multi = params, .nmulti = &nparams},
                   {.name = "memory", .val = &memory},
                   {.name = "cpus", .val = &cpus},
                   {0}};
  const char *cmd = "run submit";
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 0, &rest)) return 2;
  if (!exp) return kp_usage_err(cmd, "missing --experiment NAME");
  if (kp_name_ok(exp) != 0)
    return kp_usage_err(cmd, "invalid experiment name '%s': use letters, digits, '.', '_' and '-', starting with a letter or digit", exp);
  if (!entry) return kp_usage_err(cmd, "missing --entry PROGRAM (a file in the source directory, e.g. train.py)");
  if (kp_rel_path_ok(entry) != 0)
    return kp_usage_err(cmd, "--entry '%s' must be a relative path inside the source directory (no '..', not absolute)", entry);
  long long lim;
  if (kp_parse_int(limit, &lim) != 0 || lim < 1)
    return kp_usage_err(cmd, "--snapshot-limit-mb must be a positive integer, got '%s'", limit);
  for (int i = 0; i < ntags; i++) {
    const char *eq = strchr(tags[i], '=');
    if (!eq || eq == tags[i]) return kp_usage_err(cmd, "--tag '%s' must look like key=value", tags[i]);
  }
  long long nn = 0, pp = 0;
  if (nodes && (kp_parse_int(nodes, &nn) != 0 || nn < 1 || nn > 1024))
    return kp_usage_err(cmd, "--nodes must be an integer from 1 to 1024, got '%s'", nodes);
  if (ppn && (kp_parse_int(ppn, &pp) != 0 || pp < 1 || pp > 1024))
    return kp_usage_err(cmd, "--processes-per-node must be an integer from 1 to 1024, got '%s'", ppn);
  if (mpirun && !nodes && !ppn)
    return kp_usage_err(cmd, "--mpirun is for distributed runs: give --nodes N and/or --processes-per-node P too");
  int64_t mem = 0;
  double ncpus = 0;
  char why[256];
  if (memory && kp_limit_memory_parse(memory, &mem, why, sizeof why) != 0)
    return kp_usage_err(cmd, "--memory %s, got '%s'", why, memory);
  if (cpus && kp_limit_cpus_parse(cpus, &ncpus, why, sizeof why) != 0)
    return kp_usage_err(cmd, "--cpus %s, got '%s'", why, cpus);
  for (int i = 0; i < nparams; i++)
    if (kp_param_ok(params[i]) != 0)
      return kp_usage_err(cmd, "--param '%s' must look like NAME=VALUE, NAME of letters, digits and '_' (not starting "
                          "with a digit, at most 250): it becomes the entry's variable KUSARI_PARAM_NAME", params[i]);
  char *env_json = NULL;
  if (envf && !(env_json = kp_env_load(envf))) return 1;
  kp_ws ws;
  if (open_ws(&ws) != 0) { free(env_json); return 1; }
  if (snapshot && source) return kp_usage_err(cmd, "give --source DIR or --snapshot ID, not both");
  kp_submit sub = {.experiment = exp, .source = source, .snapshot = snapshot, .entry = entry, .compute = compute, .env_json = env_json,
                   .args = (const char *const *)argv + rest, .nargs = argc - rest, .tags = tags, .ntags = ntags,
                   .params = params, .nparams = nparams, .snapshot_limit = (uint64_t)lim * 1000000ull, .nodes = (int)nn,
                   .processes_per_node = (int)pp, .launcher = mpirun, .memory_limit = mem, .cpus = ncpus};
  kp_submitted done;
  int rc = (ws.remote[0] ? kp_run_submit_remote(&ws, &sub, &done) : kp_run_submit(&ws, &sub, &done)) == 0 ? 0 : 1;
  if (rc == 0) {
    printf("Submitted run %s to compute target %s (experiment %s; snapshot %.12s: %d files, %.2f MB)\n", done.id,
           done.compute, exp, done.snapshot, done.nfiles, (double)done.bytes / 1e6);
    if (nn || pp)
      printf("Distributed: %lld node%s x %lld process%s per node = %lld ranks\n", nn ? nn : 1, (nn ? nn : 1) == 1 ? "" : "s",
             pp ? pp : 1, (pp ? pp : 1) == 1 ? "" : "es", (nn ? nn : 1) * (pp ? pp : 1));
    printf("%s\n", done.id);
  }
  free(env_json);
  kp_ws_close(&ws);
  return rc;
}

static int run_status(kp_ws *ws, const char *id, char *out, size_t n);

/* ---- loading runs ------------------------------------------------------------- */
/* Loads run 'id' with tags, last metrics and file count (views.c, the
 * tracking server's shape too); NULL if absent or on a store error (printed). */
static cJSON *load_run(kp_ws *ws, const char *id) {
  cJSON *o = kp_view_run_detail(ws->store, id);
  if (!o && kp_store_last_error()->code != KP_STORE_ENOTFOUND) kp_store_report();
  return o;
}

static const char *jstr(const cJSON *o, const char *k) {
  const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
  return s ? s : "-";
}

static void print_json(const cJSON *j) {
  char *t = cJSON_Print(j);
  puts(t);
  cJSON_free(t);
}

/* ---- show / list ----------------------------------------------------------------- */
static int run_show(int argc, char **argv) {
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("run show", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run show", "missing the RUN id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  cJSON *o = load_run(&ws, pos[0]);
  kp_ws_close(&ws);
  if (!o) return no_run(pos[0]);
  if (json) {
    print_json(o);
  } else {
    char args[8192] = "";
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(o, "arguments")) {
      size_t l = strlen(args);
      snprintf(args + l, sizeof args - l, "%s%s", l ? " " : "", a->valuestring);
    }
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(o, "duration_s");
    char d[64] = "-";
    if (cJSON_IsNumber(dur)) kp_fmt_dur(dur->valuedouble, d, sizeof d);
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(o, "exit_code");
    const cJSON *sg = cJSON_GetObjectItemCaseSensitive(o, "signal");
    printf("run:          %s\nexperiment:   %s\nstatus:       %s\ncompute:      %s\nsource:       %s\n"
           "entry:        %s\narguments:    %s\nsnapshot:     %s (%.2f MB)\nenvironment:  %s\nbuild cache:  %s\n"
           "created:      %s\nstarted:      %s\nended:        %s\nduration:     %s\n",
           jstr(o, "id"), jstr(o, "experiment"), jstr(o, "status"), jstr(o, "compute"), jstr(o, "source"),
           jstr(o, "entry"), args, jstr(o, "snapshot"),
           cJSON_GetObjectItemCaseSensitive(o, "snapshot_bytes")->valuedouble / 1e6, jstr(o, "environment"),
           *jstr(o, "build_cache") ? jstr(o, "build_cache") : "-", jstr(o, "created"), jstr(o, "started"),
           jstr(o, "ended"), d);
    if (cJSON_IsNumber(ec)) printf("exit code:    %d\n", ec->valueint);
    else printf("exit code:    -\n");
    if (cJSON_IsNumber(sg)) printf("signal:       %d\n", sg->valueint);
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "error"))) printf("error:        %s\n", jstr(o, "error"));
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "parent"))) printf("parent:       %s\n", jstr(o, "parent"));
    const cJSON *dist = cJSON_GetObjectItemCaseSensitive(o, "distributed");
    if (dist) {
      int nd = cJSON_GetObjectItemCaseSensitive(dist, "nodes")->valueint;
      int pp = cJSON_GetObjectItemCaseSensitive(dist, "processes_per_node")->valueint;
      printf("distributed:  %d node%s x %d process%s per node = %d ranks, under %s\n", nd, nd == 1 ? "" : "s", pp,
             pp == 1 ? "" : "es", nd * pp, jstr(dist, "launcher"));
      const cJSON *r;
      cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(dist, "rank_status"))
        printf("rank %-8d %s\n", cJSON_GetObjectItemCaseSensitive(r, "rank")->valueint, jstr(r, "status"));
    }
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(o, "tags");
    const char *lim = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_LIMITS));
    const char *lmem = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_MEMORY));
    const char *lcpu = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tags, KP_TAG_CPUS));
    if (lim) {
      printf("limits:       %s\n", lim);
    } else if (lmem || lcpu) {
      char m[32] = "";
      if (lmem) kp_limit_memory_text(strtoll(lmem, NULL, 10), m, sizeof m);
      printf("limits:       %s%s%s%s%s (asked; applied when the entry starts)\n", lmem ? "memory " : "", m,
             lmem && lcpu ? ", " : "", lcpu ? "cpus " : "", lcpu ? lcpu : "");
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tags)
      if (!dist || strncmp(t->string, "kusari.", 7) != 0) printf("tag:          %s=%s\n", t->string, t->valuestring);
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(o, "params")) printf("param:        %s=%s\n", t->string, t->valuestring);
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(o, "metrics")) printf("metric:       %s = %.9g (last)\n", t->string, t->valuedouble);
    printf("files:        %d\n", cJSON_GetObjectItemCaseSensitive(o, "files") ? cJSON_GetObjectItemCaseSensitive(o, "files")->valueint : 0);
  }
  cJSON_Delete(o);
  return 0;
}


/* 1 when some run logged metric 'name'. */
static int metric_exists(kp_ws *ws, const char *name) {
  int yes = 0;
  if (kp_store_metric_exists(ws->store, name, &yes) != 0) kp_store_report();
  return yes;
}

#define MAX_METRIC_COLS 32

/* Appends "AND term" to a filter being built from --status and --parent:
 * the value quoted for the filter language (quotes doubled). */
static int add_term(char *buf, size_t n, const char *attr, const char *value) {
  size_t l = strlen(buf);
  int w = snprintf(buf + l, n - l, "%s%s = '", l ? " AND " : "", attr);
  if (w < 0 || (size_t)w >= n - l) return -1;
  l += (size_t)w;
  for (const char *c = value; *c; c++) {
    if (l + 3 >= n) return -1;
    if (*c == '\'' || *c == '\\') buf[l++] = *c == '\'' ? '\'' : '\\';
    buf[l++] = *c;
  }
  if (l + 2 >= n) return -1;
  buf[l++] = '\'';
  buf[l] = '\0';
  return 0;
}

/* A bad --filter or --order-by: the message with its position, and the
 * text with a caret under the position. */
static int filter_err(const char *opt, const char *text, const kp_filter_error *e) {
  if (!strcmp(opt, "--order-by")) kp_err("cannot order by '%s': %s", text, e->message);
  else kp_err("%s: %s", opt, e->message);
  fprintf(stderr, "  hint: %s\n        %*s^ here; the grammar and examples: 'kusari run list --help'\n", text,
          e->pos > 0 ? e->pos - 1 : 0, "");
  return 2;
}

static int run_list(int argc, char **argv) {
  const char *exp = NULL, *status = NULL, *limit = NULL, *parent = NULL, *metrics = NULL, *order = NULL, *pos[1];
  const char *filter = NULL, *maxs = NULL, *token = NULL;
  int json = 0, np = 0;
  const char *cmd = "run list";
  kp_opt opts[] = {{.name = "experiment", .alias = "-e", .val = &exp}, {.name = "status", .val = &status},
                   {.name = "parent", .val = &parent}, {.name = "metrics", .val = &metrics},
                   {.name = "order-by", .val = &order},
                   {.name = "limit", .val = &limit}, {.name = "json", .flag = &json},
                   {.name = "filter", .val = &filter}, {.name = "max", .val = &maxs},
                   {.name = "page-token", .val = &token}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  long long lim = 100;
  if (limit && maxs) return kp_usage_err(cmd, "give --max N or --limit N, not both (--max pages through the runs)");
  if (limit && (kp_parse_int(limit, &lim) != 0 || lim < 1)) return kp_usage_err(cmd, "--limit must be a positive integer");
  if (maxs && (kp_parse_int(maxs, &lim) != 0 || lim < 1))
    return kp_usage_err(cmd, "--max must be a positive integer (the runs on one page), got '%s'", maxs);
  /* paging: --max or --page-token; the next page's token is printed */
  int paging = maxs || token;
  if (status) {
    kp_run_status sv;
    if (kp_run_status_parse(status, &sv) != 0)
      return kp_usage_err(cmd, "unknown --status '%s'; use one of Queued, Preparing, Running, Finalizing, "
                          "Completed, Failed, Canceled", status);
  }
  kp_filter *fparsed = NULL;
  kp_filter_error fe;
  if (filter && kp_filter_parse(filter, &fparsed, &fe) != 0) return filter_err("--filter", filter, &fe);
  kp_filter_free(fparsed);
  /* --metrics A,B: columns */
  char mbuf[4096] = "";
  const char *mcols[MAX_METRIC_COLS];
  int nm = 0;
  if (metrics) {
    snprintf(mbuf, sizeof mbuf, "%s", metrics);
    for (char *t = strtok(mbuf, ","); t; t = strtok(NULL, ",")) {
      while (*t == ' ') t++;
      if (!*t) continue;
      if (nm == MAX_METRIC_COLS) return kp_usage_err(cmd, "--metrics takes at most %d names", MAX_METRIC_COLS);
      mcols[nm++] = t;
    }
    if (!nm) return kp_usage_err(cmd, "--metrics needs metric names separated by commas, e.g. --metrics Accuracy,loss");
  }
  /* --order-by KEY [asc|desc] (one argument, or the direction as the next) */
  char okey[1024] = "";
  kp_filter_key ok = {0};
  if (np && !order) return kp_usage_err(cmd, "unexpected argument '%s'", pos[0]);
  if (order) {
    const char *dir = np ? pos[0] : NULL;
    if (dir && strcasecmp(dir, "asc") != 0 && strcasecmp(dir, "desc") != 0)
      return kp_usage_err(cmd, "the order after --order-by KEY is asc or desc, not '%s'", dir);
    snprintf(okey, sizeof okey, "%s%s%s", order, dir ? " " : "", dir ? dir : "");
    int desc;
    if (kp_filter_parse_order(okey, &ok, &desc, &fe) != 0) return filter_err("--order-by", okey, &fe);
  }
  /* --status and --parent join the filter */
  size_t fcap = (filter ? strlen(filter) : 0) + (parent ? 2 * strlen(parent) : 0) + 128;
  char *fall = calloc(1, fcap);
  if (!fall) { kp_filter_key_clear(&ok); return kp_err("out of memory"), 1; }
  if (filter && *filter) snprintf(fall, fcap, "(%s)", filter);
  if ((status && add_term(fall, fcap, "status", status) != 0) || (parent && add_term(fall, fcap, "parent", parent) != 0)) {
    free(fall);
    kp_filter_key_clear(&ok);
    return kp_err("out of memory"), 1;
  }
  kp_ws ws;
  if (open_ws(&ws) != 0) { free(fall); kp_filter_key_clear(&ok); return 1; }
  if (order && ok.kind == KP_FILTER_METRIC && !metric_exists(&ws, ok.name)) {
    kp_err("no run has a metric named '%s' to order by", ok.name);
    kp_hint("metric names are case-sensitive; see a run's metrics with 'kusari run metrics RUN'");
    kp_ws_close(&ws);
    free(fall);
    kp_filter_key_clear(&ok);
    return 1;
  }
  kp_filter_key_clear(&ok);
  for (int i = 0; i < nm; i++)
    if (!metric_exists(&ws, mcols[i]))
      fprintf(stderr, "kusari: warning: no run has a metric named '%s' (names are case-sensitive)\n", mcols[i]);
  kp_run_search q = {.experiment = exp, .filter = fall, .order_by = order ? okey : NULL, .max_results = lim,
                     .page_token = token};
  kp_run *runs;
  size_t nruns;
  char *next = NULL;
  int src = kp_store_run_search(ws.store, &q, &runs, &nruns, &next);
  free(fall);
  if (src != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    if (kp_store_last_error()->code != KP_STORE_EINVAL) return 1;
    if (token) kp_hint("a page token works only with the filter, order and experiment of the search that gave it");
    return 2;
  }
  cJSON *arr = cJSON_CreateArray();
  int r = 0;
  for (size_t i = 0; i < nruns && r == 0; i++) {
    cJSON *o = kp_view_run_row(ws.store, &runs[i], mcols, nm);
    if (!o) r = kp_store_report();
    else cJSON_AddItemToArray(arr, o);
  }
  kp_runs_free(runs, nruns);
  kp_ws_close(&ws);
  if (r != 0) { cJSON_Delete(arr); free(next); return 1; }
  if (json) {
    if (paging) {
      /* a page: {"runs": [...], "next_page_token": "..." or null} */
      cJSON *page = cJSON_CreateObject();
      cJSON_AddItemToObject(page, "runs", arr);
      if (next) cJSON_AddStringToObject(page, "next_page_token", next);
      else cJSON_AddNullToObject(page, "next_page_token");
      print_json(page);
      cJSON_Delete(page);
    } else {
      print_json(arr);
      cJSON_Delete(arr);
    }
    free(next);
    return 0;
  }
  /* columns as wide as their widest cell */
  enum { NFIX = 6 };
  static const char *const hdr[NFIX] = {"RUN", "EXPERIMENT", "STATUS", "COMPUTE", "CREATED", "DURATION"};
  int nrows = cJSON_GetArraySize(arr), ncol = NFIX + nm;
  char(*cell)[128] = calloc((size_t)(nrows + 1) * (size_t)ncol, sizeof *cell);
  int w[NFIX + MAX_METRIC_COLS] = {0};
  if (!cell) { cJSON_Delete(arr); free(next); return kp_err("out of memory"), 1; }
  for (int c = 0; c < ncol; c++) snprintf(cell[c], sizeof cell[c], "%s", c < NFIX ? hdr[c] : mcols[c - NFIX]);
  int row = 1;
  const cJSON *o;
  cJSON_ArrayForEach(o, arr) {
    char (*rc)[128] = cell + (size_t)row * (size_t)ncol;
    const char *k[] = {"id", "experiment", "status", "compute", "created"};
    for (int c = 0; c < 5; c++) snprintf(rc[c], sizeof rc[c], "%s", jstr(o, k[c]));
    snprintf(rc[5], sizeof rc[5], "-");
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(o, "duration_s");
    if (cJSON_IsNumber(dur)) kp_fmt_dur(dur->valuedouble, rc[5], sizeof rc[5]);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metrics");
    for (int i = 0; i < nm; i++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, mcols[i]);
      kp_fmt_metric(v, rc[NFIX + i], sizeof rc[0]);
    }
    row++;
  }
  for (int i = 0; i < nrows + 1; i++)
    for (int c = 0; c < ncol; c++) {
      int l = (int)strlen(cell[(size_t)i * (size_t)ncol + (size_t)c]);
      if (l > w[c]) w[c] = l;
    }
  for (int i = 0; i < nrows + 1; i++) {
    for (int c = 0; c < ncol; c++) {
      const char *t = cell[(size_t)i * (size_t)ncol + (size_t)c];
      int right = c >= NFIX - 1;  /* duration and metric values align right */
      printf("%s%*s%s", c ? "  " : "", right ? w[c] : 0, right ? t : "", right ? "" : t);
      if (!right && c < ncol - 1) printf("%*s", w[c] - (int)strlen(t), "");
    }
    printf("\n");
  }
  free(cell);
  cJSON_Delete(arr);
  if (paging && next) printf("next page: --page-token %s\n", next);
  free(next);
  return 0;
}

/* ---- tag / untag ------------------------------------------------------------------ */
/* Tags the platform sets and reads itself (sweeps). */
static const char *const SYSTEM_TAGS[] = {"sweep", "sweep_index", "best_child_run_id", "best_metric_value", NULL};

static int system_tag(const char *k) {
  if (!strncmp(k, "kusari.", 7)) return 1;  /* a distributed run's shape and ranks (compute.h) */
  for (int i = 0; SYSTEM_TAGS[i]; i++)
    if (!strcmp(SYSTEM_TAGS[i], k)) return 1;
  return 0;
}

/* A tag key: 1 to 250 printable characters, no '=' (checked by the caller). */
static int tag_key_ok(const char *k, size_t n) {
  if (n == 0 || n > 250) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f) return 0;
  return 1;
}

static int run_tag(int argc, char **argv) {
  const char *cmd = "run tag", *pos[KP_MULTI_MAX + 1];
  int np = 0;
  if (kp_parse(cmd, argc, argv, NULL, pos, &np, KP_MULTI_MAX + 1, NULL)) return 2;
  if (np < 1) return kp_usage_err(cmd, "missing the RUN id");
  if (np < 2) return kp_usage_err(cmd, "missing KEY=VALUE: say which tags to set");
  for (int i = 1; i < np; i++) {
    const char *eq = strchr(pos[i], '=');
    if (!eq) return kp_usage_err(cmd, "'%s' must look like KEY=VALUE", pos[i]);
    if (!tag_key_ok(pos[i], (size_t)(eq - pos[i])))
      return kp_usage_err(cmd, "'%s': a tag key is 1 to 250 characters without control characters", pos[i]);
    if (strlen(eq + 1) > 4096) return kp_usage_err(cmd, "the value of tag '%.*s' is longer than 4096 bytes", (int)(eq - pos[i]), pos[i]);
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - pos[i]), pos[i]);
    if (system_tag(key)) {
      kp_err("tag '%s' is set by kusari itself (sweeps or distributed runs read it); it cannot be changed by hand", key);
      kp_hint("use another key");
      return 2;
    }
  }
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  int rc = 1;
  if (kp_store_begin(ws.store) != 0) { kp_store_report(); goto out; }
  for (int i = 1; i < np; i++) {
    const char *eq = strchr(pos[i], '=');
    char key[256];
    snprintf(key, sizeof key, "%.*s", (int)(eq - pos[i]), pos[i]);
    if (kp_store_tag_set(ws.store, pos[0], key, eq + 1) != 0) {
      int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      if (!notfound) kp_store_report();
      kp_store_rollback(ws.store);
      kp_ws_close(&ws);
      return notfound ? no_run(pos[0]) : 1;
    }
  }
  if (kp_store_commit(ws.store) != 0) { kp_store_report(); goto out; }
  printf("Tagged run %s:", pos[0]);
  for (int i = 1; i < np; i++) printf(" %s", pos[i]);
  printf("\n");
  rc = 0;
out:
  kp_store_rollback(ws.store);
  kp_ws_close(&ws);
  return rc;
}

static int run_untag(int argc, char **argv) {
  const char *cmd = "run untag", *pos[KP_MULTI_MAX + 1];
  int np = 0;
  if (kp_parse(cmd, argc, argv, NULL, pos, &np, KP_MULTI_MAX + 1, NULL)) return 2;
  if (np < 1) return kp_usage_err(cmd, "missing the RUN id");
  if (np < 2) return kp_usage_err(cmd, "missing KEY: say which tags to remove");
  for (int i = 1; i < np; i++)
    if (system_tag(pos[i])) {
      kp_err("tag '%s' is set by kusari itself (sweeps or distributed runs read it); it cannot be removed by hand", pos[i]);
      return 2;
    }
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  int rc = 1;
  if (kp_store_tag_remove(ws.store, pos[0], pos + 1, (size_t)(np - 1)) != 0) {
    int notfound = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (notfound) kp_hint("see its tags with 'kusari run show %s'", pos[0]);
  } else {
    printf("Removed from run %s:", pos[0]);
    for (int i = 1; i < np; i++) printf(" %s", pos[i]);
    printf("\n");
    rc = 0;
  }
  kp_ws_close(&ws);
  return rc;
}

/* ---- compare ---------------------------------------------------------------------- */
/* A run's parameters: its arguments read as "--name value" / "--name=value" /
 * "--flag" (true) pairs; other words are "arg N". */
static cJSON *params_of(const cJSON *args) {
  cJSON *p = cJSON_CreateObject();
  int n = cJSON_GetArraySize(args), npos = 0;
  for (int i = 0; i < n; i++) {
    const char *a = cJSON_GetStringValue(cJSON_GetArrayItem(args, i));
    if (!a) continue;
    char *end;
    int is_opt = a[0] == '-' && a[1] && (strtod(a, &end), *end != '\0');
    if (!is_opt) {
      char k[32];
      snprintf(k, sizeof k, "arg %d", ++npos);
      cJSON_DeleteItemFromObjectCaseSensitive(p, k);
      cJSON_AddStringToObject(p, k, a);
      continue;
    }
    const char *eq = strchr(a, '=');
    char key[512];
    const char *val = "true";
    if (eq) {
      snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
      val = eq + 1;
    } else {
      snprintf(key, sizeof key, "%s", a);
      const char *next = i + 1 < n ? cJSON_GetStringValue(cJSON_GetArrayItem(args, i + 1)) : NULL;
      if (next) {
        int next_opt = next[0] == '-' && next[1] && (strtod(next, &end), *end != '\0');
        if (!next_opt) { val = next; i++; }
      }
    }
    cJSON_DeleteItemFromObjectCaseSensitive(p, key);
    cJSON_AddStringToObject(p, key, val);
  }
  return p;
}

/* Text of a cell: strings as they are, numbers %.6g, absent "-". */
static void cell_text(const cJSON *v, char *out, size_t n) {
  if (cJSON_IsString(v)) snprintf(out, n, "%s", v->valuestring);
  else if (cJSON_IsNumber(v)) snprintf(out, n, "%.6g", v->valuedouble);
  else snprintf(out, n, "-");
}

/* Adds one comparison row per key found in any run's object 'field'. */
static void compare_section(cJSON *rows, const char *section, cJSON *const *objs, int n) {
  cJSON *keys = cJSON_CreateObject();  /* ordered set of keys */
  for (int i = 0; i < n; i++) {
    const cJSON *f;
    cJSON_ArrayForEach(f, objs[i])
      if (!cJSON_GetObjectItemCaseSensitive(keys, f->string)) cJSON_AddTrueToObject(keys, f->string);
  }
  const cJSON *k;
  cJSON_ArrayForEach(k, keys) {
    cJSON *row = cJSON_CreateObject();
    cJSON_AddStringToObject(row, "section", section);
    cJSON_AddStringToObject(row, "name", k->string);
    cJSON *vals = cJSON_AddArrayToObject(row, "values");
    int differs = 0;
    const cJSON *first = NULL;
    for (int i = 0; i < n; i++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[i], k->string);
      cJSON_AddItemToArray(vals, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
      if (i == 0) first = v;
      else if (!differs) {
        if (!v || !first) differs = v != first;
        else if (cJSON_IsNumber(v) && cJSON_IsNumber(first)) differs = v->valuedouble != first->valuedouble;
        else differs = !cJSON_Compare(v, first, 1);
      }
    }
    if (!strcmp(k->string, "duration_s")) differs = 0;  /* always differs a little: shown, not marked */
    cJSON_AddBoolToObject(row, "differs", differs);
    cJSON_AddItemToArray(rows, row);
  }
  cJSON_Delete(keys);
}

#define MAX_COMPARE 16

static int run_compare(int argc, char **argv) {
  const char *cmd = "run compare", *pos[MAX_COMPARE];
  int np = 0, json = 0, only = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {.name = "only-differences", .flag = &only}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, MAX_COMPARE, NULL)) return 2;
  if (np < 2) return kp_usage_err(cmd, "give at least two RUN ids to compare");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  cJSON *runs[MAX_COMPARE] = {0};
  for (int i = 0; i < np; i++) {
    runs[i] = load_run(&ws, pos[i]);
    if (!runs[i]) {
      for (int k = 0; k < i; k++) cJSON_Delete(runs[k]);
      kp_ws_close(&ws);
      return no_run(pos[i]);
    }
  }
  kp_ws_close(&ws);
  cJSON *out = cJSON_CreateObject(), *ids = cJSON_AddArrayToObject(out, "runs");
  cJSON *rows = cJSON_AddArrayToObject(out, "rows");
  cJSON *info[MAX_COMPARE], *params[MAX_COMPARE], *metrics[MAX_COMPARE], *tags[MAX_COMPARE];
  for (int i = 0; i < np; i++) {
    cJSON_AddItemToArray(ids, cJSON_CreateString(jstr(runs[i], "id")));
    info[i] = cJSON_CreateObject();
    static const char *const keys[] = {"experiment", "status", "entry", "compute", "snapshot", "duration_s", "parent"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(runs[i], keys[k]);
      if (!strcmp(keys[k], "snapshot") && cJSON_IsString(v)) {
        char s12[13];
        snprintf(s12, sizeof s12, "%s", v->valuestring);
        cJSON_AddStringToObject(info[i], keys[k], s12);
      } else if (v && !cJSON_IsNull(v)) {
        cJSON_AddItemToObject(info[i], keys[k], cJSON_Duplicate(v, 1));
      }
    }
    params[i] = params_of(cJSON_GetObjectItemCaseSensitive(runs[i], "arguments"));
    metrics[i] = cJSON_GetObjectItemCaseSensitive(runs[i], "metrics");
    tags[i] = cJSON_GetObjectItemCaseSensitive(runs[i], "tags");
  }
  compare_section(rows, "run", info, np);
  compare_section(rows, "param", params, np);
  compare_section(rows, "metric", metrics, np);
  compare_section(rows, "tag", tags, np);
  for (int i = 0; i < np; i++) cJSON_Delete(info[i]), cJSON_Delete(params[i]);
  if (json) {
    print_json(out);
  } else {
    /* a table: marker, section, name, one column per run; '*' marks rows whose values differ */
    int nrows = cJSON_GetArraySize(rows), ncol = 2 + np;
    char(*cell)[96] = calloc((size_t)(nrows + 1) * (size_t)ncol, sizeof *cell);
    char *mark = calloc((size_t)nrows + 1, 1);
    int w[2 + MAX_COMPARE] = {0}, nr = 0;
    if (!cell || !mark) { free(cell); free(mark); cJSON_Delete(out); for (int i = 0; i < np; i++) cJSON_Delete(runs[i]); return kp_err("out of memory"), 1; }
    snprintf(cell[0], sizeof cell[0], "SECTION");
    snprintf(cell[1], sizeof cell[1], "NAME");
    for (int i = 0; i < np; i++) snprintf(cell[2 + i], sizeof cell[0], "%s", jstr(runs[i], "id"));
    mark[0] = ' ';
    nr = 1;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
      int d = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "differs"));
      if (only && !d) continue;
      char (*rc)[96] = cell + (size_t)nr * (size_t)ncol;
      mark[nr] = d ? '*' : ' ';
      snprintf(rc[0], sizeof rc[0], "%s", jstr(row, "section"));
      snprintf(rc[1], sizeof rc[1], "%s", jstr(row, "name"));
      const cJSON *vals = cJSON_GetObjectItemCaseSensitive(row, "values");
      int iscol = !strcmp(jstr(row, "name"), "duration_s");
      for (int i = 0; i < np; i++) {
        const cJSON *v = cJSON_GetArrayItem(vals, i);
        if (iscol && cJSON_IsNumber(v)) kp_fmt_dur(v->valuedouble, rc[2 + i], sizeof rc[0]);
        else cell_text(v, rc[2 + i], sizeof rc[0]);
      }
      nr++;
    }
    for (int r = 0; r < nr; r++)
      for (int c = 0; c < ncol; c++) {
        int l = (int)strlen(cell[(size_t)r * (size_t)ncol + (size_t)c]);
        if (l > w[c]) w[c] = l;
      }
    for (int r = 0; r < nr; r++) {
      printf("%c", mark[r]);
      for (int c = 0; c < ncol; c++) {
        const char *t = cell[(size_t)r * (size_t)ncol + (size_t)c];
        printf(" %s%*s", t, c < ncol - 1 ? w[c] - (int)strlen(t) : 0, "");
      }
      printf("\n");
    }
    printf("(* = the values differ%s)\n", only ? "; rows with equal values left out" : "");
    free(cell);
    free(mark);
  }
  cJSON_Delete(out);
  for (int i = 0; i < np; i++) cJSON_Delete(runs[i]);
  return 0;
}

/* ---- plot ------------------------------------------------------------------------- */
/* Parses --width/--height; 0 or 2 (printed). */
static int plot_size(const char *cmd, const char *ws_, const char *hs, int *w, int *h) {
  long long a, b;
  if (kp_parse_int(ws_, &a) != 0 || a < 200 || a > 8000)
    return kp_usage_err(cmd, "--width must be a number of pixels from 200 to 8000, got '%s'", ws_);
  if (kp_parse_int(hs, &b) != 0 || b < 150 || b > 8000)
    return kp_usage_err(cmd, "--height must be a number of pixels from 150 to 8000, got '%s'", hs);
  *w = (int)a, *h = (int)b;
  return 0;
}

/* The names of run 'id's metrics, comma separated, into 'out'. */
static void metric_names(kp_ws *ws, const char *id, char *out, size_t n) {
  out[0] = '\0';
  char **names;
  size_t nn;
  if (kp_store_metric_names(ws->store, id, &names, &nn) != 0) {
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) kp_store_report();
    return;
  }
  for (size_t i = 0; i < nn; i++) {
    size_t l = strlen(out);
    snprintf(out + l, n - l, "%s%s", l ? ", " : "", names[i]);
  }
  kp_strings_free(names, nn);
}

/* When run 'id' started, or (never started) when it logged its first metric. */
static double curve_origin(kp_ws *ws, const char *id) {
  kp_run r;
  if (kp_store_run_get(ws->store, id, &r) != 0) return 0;
  double t0 = r.started;
  kp_run_free(&r);
  if (t0) return t0;
  char **names;
  size_t nn;
  if (kp_store_metric_names(ws->store, id, &names, &nn) != 0) return 0;
  for (size_t i = 0; i < nn; i++) {
    kp_metric_point *p;
    size_t np;
    if (kp_store_metric_series(ws->store, id, names[i], &p, &np) != 0) continue;
    for (size_t k = 0; k < np; k++)
      if (!t0 || p[k].time < t0) t0 = p[k].time;
    free(p);
  }
  kp_strings_free(names, nn);
  return t0;
}

/* Loads the curve of metric 'name' of run 'id': x = step, or seconds since
 * the run started when 'time'. Returns the number of points (0: none). */
int kp_metric_curve(kp_ws *ws, const char *id, const char *name, int time, double **x, double **y);
int kp_metric_curve(kp_ws *ws, const char *id, const char *name, int time, double **x, double **y) {
  *x = *y = NULL;
  kp_metric_point *p;
  size_t np;
  if (kp_store_metric_series(ws->store, id, name, &p, &np) != 0) {
    if (kp_store_last_error()->code == KP_STORE_ENOTFOUND) return 0;
    return kp_store_report();
  }
  double t0 = time ? curve_origin(ws, id) : 0;
  *x = malloc((np + 1) * sizeof **x);
  *y = malloc((np + 1) * sizeof **y);
  if (!*x || !*y) {
    free(p);
    free(*x);
    free(*y);
    *x = *y = NULL;
    return -1;
  }
  for (size_t i = 0; i < np; i++) {
    (*x)[i] = time ? p[i].time - t0 : (double)p[i].step;
    (*y)[i] = p[i].value;
  }
  free(p);
  return (int)np;
}

#define MAX_PLOT 64

static int run_plot(int argc, char **argv) {
  const char *cmd = "run plot", *pos[MAX_PLOT], *metric = NULL, *outp = NULL, *xs = "step", *wd = "800", *ht = "500", *title = NULL;
  int np = 0;
  kp_opt opts[] = {{.name = "metric", .alias = "-m", .val = &metric}, {.name = "output", .alias = "-o", .val = &outp},
                   {.name = "x", .val = &xs}, {.name = "width", .val = &wd}, {.name = "height", .val = &ht},
                   {.name = "title", .val = &title}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, MAX_PLOT, NULL)) return 2;
  if (np < 1) return kp_usage_err(cmd, "missing the RUN id (one or more)");
  if (!metric) return kp_usage_err(cmd, "missing --metric NAME (see a run's metrics with 'kusari run metrics RUN')");
  if (!outp) return kp_usage_err(cmd, "missing -o FILE.png");
  int time = 0, w = 0, h = 0;
  if (!strcmp(xs, "time")) time = 1;
  else if (strcmp(xs, "step") != 0) return kp_usage_err(cmd, "--x is 'step' or 'time' (seconds since the run started), not '%s'", xs);
  if (plot_size(cmd, wd, ht, &w, &h)) return 2;
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  kp_series s[MAX_PLOT];
  double *xv[MAX_PLOT] = {0}, *yv[MAX_PLOT] = {0};
  int rc = 1, n = 0;
  for (; n < np; n++) {
    char status[32];
    if (run_status(&ws, pos[n], status, sizeof status) != 0) { no_run(pos[n]); goto out; }
    if (!kp_status_terminal(status)) kp_ingest(&ws, pos[n], 0);  /* live view */
    int k = kp_metric_curve(&ws, pos[n], metric, time, &xv[n], &yv[n]);
    if (k < 0) goto out;
    if (k == 0) {
      char names[2048];
      metric_names(&ws, pos[n], names, sizeof names);
      kp_err("run %s has no metric named '%s'%s", pos[n], metric, kp_status_terminal(status) ? "" : " (yet)");
      if (names[0]) kp_hint("its metrics: %s (names are case-sensitive)", names);
      else kp_hint("run %s logged no metrics", pos[n]);
      goto out;
    }
    s[n] = (kp_series){.label = pos[n], .x = xv[n], .y = yv[n], .n = k, .mark = -1};
  }
  char ttl[600];
  if (!title) {
    snprintf(ttl, sizeof ttl, "%s of %s%s", metric, np == 1 ? "run " : "", np == 1 ? pos[0] : "runs");
    title = ttl;
  }
  kp_plot p = {.title = title, .xlabel = time ? "seconds since the run started" : "step", .ylabel = metric,
               .width = w, .height = h, .s = s, .n = np};
  if (kp_plot_png(&p, outp) == 0) {
    printf("Wrote %s (%dx%d): %s of %d run%s\n", outp, w, h, metric, np, np == 1 ? "" : "s");
    rc = 0;
  }
out:
  for (int i = 0; i < np; i++) free(xv[i]), free(yv[i]);
  kp_ws_close(&ws);
  return rc;
}

/* ---- delete ------------------------------------------------------------------------ */
static int run_delete(int argc, char **argv) {
  const char *cmd = "run delete", *pos[KP_MULTI_MAX];
  int np = 0, yes = 0, dry = 0;
  kp_opt opts[] = {{.name = "yes", .alias = "-y", .flag = &yes}, {.name = "dry-run", .flag = &dry}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, KP_MULTI_MAX, NULL)) return 2;
  if (np < 1) return kp_usage_err(cmd, "missing the RUN id (one or more)");
  return kp_delete(cmd, KP_DEL_RUNS, pos, np, yes, dry);
}

/* ---- wait / logs ------------------------------------------------------------------ */
/* Current status of run 'id' into 'out'; -1 if absent. */
static int run_status(kp_ws *ws, const char *id, char *out, size_t n) {
  kp_run r;
  if (kp_store_run_get(ws->store, id, &r) != 0) {
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) kp_store_report();
    return -1;
  }
  snprintf(out, n, "%s", kp_run_status_name(r.status));
  kp_run_free(&r);
  return 0;
}

/* Copies new bytes of 'path' after '*off' to stdout. */
static void pump(const char *path, long *off) {
  FILE *f = fopen(path, "rb");
  if (!f) return;
  if (fseek(f, *off, SEEK_SET) == 0) {
    char buf[65536];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
      fwrite(buf, 1, r, stdout);
      *off += (long)r;
    }
  }
  fclose(f);
  fflush(stdout);
}

/* What `run wait` shows on a terminal: status changes, and the latest value
 * of one metric rewritten in place. */
typedef struct progress {
  char metric[512];      /* the metric to show; "" = whichever was logged last */
  char status[32];       /* the last status printed */
  int64_t cursor;        /* kp_store_metric_follow's */
  int line_open;         /* the metric line has no newline yet */
} progress;

/* Sets up 'pg' for run 'id': the metric is 'want', else the primary metric of
 * the sweep the run belongs to, else "" (the last one logged). */
static void progress_init(kp_ws *ws, progress *pg, const char *id, const char *want) {
  memset(pg, 0, sizeof *pg);
  pg->cursor = -1;
  if (want) { snprintf(pg->metric, sizeof pg->metric, "%s", want); return; }
  char *text = NULL;
  if (kp_store_run_sweep_spec(ws->store, id, &text) != 0) {
    kp_store_report();
    return;
  }
  if (text) {
    cJSON *spec = cJSON_Parse(text);
    const char *m = cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "primary_metric"), "name"));
    if (m) snprintf(pg->metric, sizeof pg->metric, "%s", m);
    cJSON_Delete(spec);
  }
  free(text);
}

static void progress_end_line(progress *pg) {
  if (pg->line_open) fputc('\n', stdout);
  pg->line_open = 0;
}

/* Prints what changed since the last call. Only rows added since then are
 * read (by id), so a run with millions of values costs nothing per poll. */
static void progress_update(kp_ws *ws, progress *pg, const char *id, const char *status) {
  /* (the final status is run wait's last line) */
  if (strcmp(status, pg->status) != 0 && !kp_status_terminal(status)) {
    progress_end_line(pg);
    char t[64];
    kp_fmt_time(kp_now(), t, sizeof t);
    printf("%s  Run %s: %s\n", t, id, status);
    snprintf(pg->status, sizeof pg->status, "%s", status);
  }
  kp_metric_latest m;
  int found = 0;
  if (kp_store_metric_follow(ws->store, id, pg->metric[0] ? pg->metric : NULL, &pg->cursor, &m, &found) != 0) {
    kp_store_report();
    return;
  }
  if (found) {
    printf("\r\033[K  %s = %.6g (step %lld)", m.name, m.value, (long long)m.step);
    pg->line_open = 1;
    free(m.name);
  }
  fflush(stdout);
}

/* Follows run 'id' until it ends; streams logs when 'show', or shows status
 * changes and a metric when 'pg' is given. Returns 0 when Completed, 1
 * otherwise, 3 on timeout. */
static int follow_progress(kp_ws *ws, const char *id, int show, int build_too, double timeout, progress *pg,
                           const char *logname);
static int follow(kp_ws *ws, const char *id, int show, int build_too, double timeout) {
  return follow_progress(ws, id, show, build_too, timeout, NULL, "std_log.txt");
}
static int follow_progress(kp_ws *ws, const char *id, int show, int build_too, double timeout, progress *pg,
                           const char *logname) {
  char rd[4400], build[4600], std[4700], status[32] = "";
  kp_run_dir(ws, id, rd, sizeof rd);
  snprintf(build, sizeof build, "%s/logs/build.log", rd);
  snprintf(std, sizeof std, "%s/logs/%s", rd, logname);
  long boff = 0, soff = 0;
  double t0 = kp_now();
  int n = 0;
  for (;;) {
    if (n++ % 10 == 0) kp_reconcile(ws);
    if (run_status(ws, id, status, sizeof status) != 0) return no_run(id);
    if (kp_store_errors > 20) {
      kp_err("giving up on run %s: the store keeps failing (see the errors above)", id);
      return 1;
    }
    int done = kp_status_terminal(status);
    if (show) {
      if (build_too) pump(build, &boff);
      pump(std, &soff);
    }
    /* every third poll, and always the last one (after the final ingestion) */
    if (pg && (done || n % 3 == 1)) progress_update(ws, pg, id, status);
    if (done) break;
    if (timeout > 0 && kp_now() - t0 > timeout) {
      if (pg) progress_end_line(pg);
      kp_err("run %s is still %s after %.0f s (--timeout)", id, status, timeout);
      return 3;
    }
    sleep_ms(100);
  }
  if (pg) progress_end_line(pg);
  return !strcmp(status, "Completed") ? 0 : 1;
}

static int run_wait(int argc, char **argv) {
  int show = 0, np = 0;
  const char *pos[1], *timeout = "0", *metric = NULL;
  kp_opt opts[] = {{.name = "show-output", .flag = &show}, {.name = "timeout", .val = &timeout},
                   {.name = "metric", .val = &metric}, {0}};
  if (kp_parse("run wait", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run wait", "missing the RUN id");
  long long to;
  if (kp_parse_int(timeout, &to) != 0 || to < 0) return kp_usage_err("run wait", "--timeout must be seconds (0 = none)");
  if (metric && (!*metric || strlen(metric) > 500))
    return kp_usage_err("run wait", "--metric needs a metric name (as logged, e.g. Accuracy)");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  if (ws.remote[0] && show) {
    kp_err("run wait --show-output does not work against a tracking server yet (%s)", ws.remote);
    kp_hint("follow the output with 'kusari run logs %s --follow', or wait without --show-output", pos[0]);
    kp_ws_close(&ws);
    return 1;
  }
  /* progress only for a person watching: not with the log stream, not into a pipe or file */
  progress pg;
  int watch = !show && isatty(STDOUT_FILENO);
  if (watch) progress_init(&ws, &pg, pos[0], metric);
  /* a distributed run's output is rank 0's (its other ranks: run logs --rank R) */
  const char *logname = "std_log.txt";
  if (show) {
    cJSON *o = load_run(&ws, pos[0]);
    if (o && cJSON_GetObjectItemCaseSensitive(o, "distributed")) logname = "std_log_rank_0.txt";
    cJSON_Delete(o);
  }
  int rc = follow_progress(&ws, pos[0], show, 1, (double)to, watch ? &pg : NULL, logname);
  if (rc == 0 || rc == 1) {
    cJSON *o = load_run(&ws, pos[0]);
    if (o) {
      const cJSON *dur = cJSON_GetObjectItemCaseSensitive(o, "duration_s");
      char d[64] = "-";
      if (cJSON_IsNumber(dur)) kp_fmt_dur(dur->valuedouble, d, sizeof d);
      printf("Run %s: %s (duration %s)\n", pos[0], jstr(o, "status"), d);
      if (rc != 0 && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "error")))
        fprintf(stderr, "kusari: run %s did not complete: %s\n", pos[0], jstr(o, "error"));
      cJSON_Delete(o);
    }
  }
  kp_ws_close(&ws);
  return rc;
}

static int run_logs(int argc, char **argv) {
  int f = 0, build = 0, np = 0;
  const char *pos[1], *rank = NULL;
  kp_opt opts[] = {{.name = "follow", .alias = "-f", .flag = &f}, {.name = "build", .flag = &build},
                   {.name = "rank", .val = &rank}, {0}};
  if (kp_parse("run logs", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run logs", "missing the RUN id");
  long long rk = -1;
  if (rank && (kp_parse_int(rank, &rk) != 0 || rk < 0 || rk > 1048576))
    return kp_usage_err("run logs", "--rank must be a rank number (0, 1, ...), got '%s'", rank);
  if (rank && build) return kp_usage_err("run logs", "--build and --rank do not go together: the build log is the run's, not a rank's");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  if (ws.remote[0] && rank) {
    kp_err("run logs --rank does not work against a tracking server yet (%s)", ws.remote);
    kp_hint("print the run's whole output with 'kusari run logs %s', or run this on the server's machine", pos[0]);
    kp_ws_close(&ws);
    return 1;
  }
  char name[64];
  snprintf(name, sizeof name, "%s", build ? "build.log" : "std_log.txt");
  if (rank) {
    cJSON *o = load_run(&ws, pos[0]);
    const cJSON *d = o ? cJSON_GetObjectItemCaseSensitive(o, "distributed") : NULL;
    int n = d ? cJSON_GetObjectItemCaseSensitive(d, "ranks")->valueint : 0;
    cJSON_Delete(o);
    if (!d || rk >= n) {
      if (!d) kp_err("run %s is not a distributed run: it has no ranks", pos[0]);
      else kp_err("run %s has ranks 0 to %d; there is no rank %lld", pos[0], n - 1, rk);
      kp_hint("print its whole output with 'kusari run logs %s'", pos[0]);
      kp_ws_close(&ws);
      return 1;
    }
    snprintf(name, sizeof name, "std_log_rank_%lld.txt", rk);
  }
  if (ws.remote[0]) {
    /* a tracking server: its logs endpoint, from offset 0 until nothing more
     * comes (with --follow: until the run has ended) */
    uint64_t off = 0, next = 0;
    char st[32] = "";
    int rc = 0;
    for (;;) {
      if (kp_store_http_log(ws.store, pos[0], build, off, f ? 20 : 0, stdout, &next, st) != 0) {
        kp_store_report();
        rc = 1;
        break;
      }
      fflush(stdout);
      int more = next > off;
      off = next;
      if (!more && (!f || kp_status_terminal(st))) break;
    }
    kp_ws_close(&ws);
    return rc;
  }
  char rd[4400], p[4700];
  kp_run_dir(&ws, pos[0], rd, sizeof rd);
  snprintf(p, sizeof p, "%s/logs/%s", rd, name);
  struct stat st;
  if (f && !build) {
    follow_progress(&ws, pos[0], 1, 0, 0, NULL, name);
  } else if (stat(p, &st) == 0) {
    long off = 0;
    pump(p, &off);
  } else {
    /* the live copy is gone (runs/ is only a cache): print the stored one */
    char want[128];
    snprintf(want, sizeof want, "logs/%s", name);
    kp_stored_file *v;
    size_t nv;
    if (kp_store_run_files_list(ws.store, pos[0], want, &v, &nv) != 0) {
      kp_store_report();
    } else {
      for (size_t i = 0; i < nv; i++)
        if (!strcmp(v[i].path, want)) {
          char bp[4400];
          long off = 0;
          kp_blob_path(&ws, v[i].sha256, bp, sizeof bp);
          pump(bp, &off);
        }
      kp_stored_files_free(v, nv);
    }
  }
  kp_ws_close(&ws);
  return 0;
}

/* ---- files / download ---------------------------------------------------------------- */
static int run_files(int argc, char **argv) {
  int json = 0, np = 0;
  const char *pos[1];
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("run files", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run files", "missing the RUN id");
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  kp_stored_file *v;
  size_t nv;
  if (kp_store_run_files_list(ws.store, pos[0], NULL, &v, &nv) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  cJSON *arr = cJSON_CreateArray();
  for (size_t i = 0; i < nv; i++) {
    if (json) cJSON_AddItemToArray(arr, kp_view_file(&v[i]));
    else printf("%s\n", v[i].path);
  }
  kp_stored_files_free(v, nv);
  if (json) print_json(arr);
  cJSON_Delete(arr);
  kp_ws_close(&ws);
  return 0;
}

/* Makes the directories of 'dst' (under 'root', which exists) refusing
 * symbolic links on the way, so nothing is written outside 'root'. */
static int safe_parent_dirs(const char *root, const char *rel) {
  char buf[8192];
  snprintf(buf, sizeof buf, "%s/%s", root, rel);
  size_t rl = strlen(root) + 1;
  for (char *s = strchr(buf + rl, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    struct stat st;
    if (lstat(buf, &st) == 0) {
      if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
        kp_err("refusing to write under %s: it is a symbolic link or not a directory", buf);
        return -1;
      }
    } else if (mkdir(buf, 0755) != 0) {
      kp_err("cannot create directory %s: %s", buf, strerror(errno));
      return -1;
    }
    *s = '/';
  }
  return 0;
}

int kp_download_files(kp_ws *ws, const kp_stored_file *v, size_t nv, const char *to, const char *strip, int *count);
/* Writes each file of 'v' to 'to'/path (minus prefix 'strip'); against a
 * tracking server, run 'run''s files come from its files endpoint. */
static int download_files(kp_ws *ws, const char *run, const kp_stored_file *v, size_t nv, const char *to, const char *strip,
                          int *count) {
  if (kp_mkdirs(to, 0755) != 0) return -1;
  char root[4096];
  if (!realpath(to, root)) return kp_err("cannot resolve %s: %s", to, strerror(errno));
  int n = 0;
  for (size_t i = 0; i < nv; i++) {
    const char *path = v[i].path;
    const char *rel = path;
    if (strip && !strncmp(path, strip, strlen(strip))) rel = path + strlen(strip);
    if (kp_rel_path_ok(rel) != 0) return kp_err("stored path '%s' is not a safe relative path; skipped", path);
    if (safe_parent_dirs(root, rel) != 0) return -1;
    char dst[8192];
    snprintf(dst, sizeof dst, "%s/%s", root, rel);
    if (run && ws->remote[0] ? kp_store_http_file(ws->store, run, v[i].path, dst, 0644) != 0 && kp_store_report()
                             : kp_blob_get(ws, v[i].sha256, dst, 0644) != 0)
      return -1;
    printf("%s\n", dst);
    n++;
  }
  if (count) *count = n;
  return 0;
}

int kp_download_files(kp_ws *ws, const kp_stored_file *v, size_t nv, const char *to, const char *strip, int *count) {
  return download_files(ws, NULL, v, nv, to, strip, count);
}

static int run_download(int argc, char **argv) {
  int np = 0;
  const char *pos[2], *to = ".";
  kp_opt opts[] = {{.name = "to", .val = &to}, {0}};
  if (kp_parse("run download", argc, argv, opts, pos, &np, 2, NULL)) return 2;
  if (np != 2) return kp_usage_err("run download", "usage: kusari run download RUN PATH [--to DIR]");
  const char *path = pos[1];
  if (kp_rel_path_ok(path) != 0) {
    kp_err("'%s' is not a path inside the run's files (absolute paths and '..' are not allowed)", path);
    kp_hint("list the run's files with 'kusari run files %s'", pos[0]);
    return 2;
  }
  char prefix[4200];
  snprintf(prefix, sizeof prefix, "%s", path);
  size_t pl = strlen(prefix);
  while (pl && prefix[pl - 1] == '/') prefix[--pl] = '\0';
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  kp_stored_file *v;
  size_t nv;
  if (kp_store_run_files_list(ws.store, pos[0], prefix, &v, &nv) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  int n = 0;
  int rc = download_files(&ws, pos[0], v, nv, to, NULL, &n) == 0 ? 0 : 1;
  kp_stored_files_free(v, nv);
  kp_ws_close(&ws);
  if (rc == 0 && n == 0) {
    kp_err("run %s has no file or folder '%s'%s", pos[0], prefix, kp_status_terminal(status) ? "" : " (yet: it is still running)");
    kp_hint("list the run's files with 'kusari run files %s'", pos[0]);
    return 1;
  }
  return rc;
}

/* ---- cancel ------------------------------------------------------------------------------ */
static int run_cancel(int argc, char **argv) {
  int np = 0, nowait = 0;
  const char *pos[1], *grace = "10";
  kp_opt opts[] = {{.name = "grace", .val = &grace}, {.name = "no-wait", .flag = &nowait}, {0}};
  if (kp_parse("run cancel", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run cancel", "missing the RUN id");
  long long g;
  if (kp_parse_int(grace, &g) != 0 || g < 0 || g > 3600)
    return kp_usage_err("run cancel", "--grace must be seconds from 0 to 3600, got '%s'", grace);
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  if (kp_status_terminal(status)) {
    kp_err("run %s already ended (%s); there is nothing to cancel", pos[0], status);
    kp_ws_close(&ws);
    return 1;
  }
  int rc = kp_run_cancel(&ws, pos[0], (double)g, NULL) == 0 ? 0 : 1;
  if (rc == 0 && !nowait) {
    follow(&ws, pos[0], 0, 0, (double)g + 60);
    run_status(&ws, pos[0], status, sizeof status);
    printf("Run %s: %s\n", pos[0], status);
  } else if (rc == 0) {
    printf("Run %s: cancel requested\n", pos[0]);
  }
  kp_ws_close(&ws);
  return rc;
}

/* ---- metrics ------------------------------------------------------------------------------ */
/* A metric's time as ISO-8601 UTC with milliseconds. */
static void fmt_ts_ms(double t, char *out, size_t n) {
  time_t s = (time_t)t;
  int ms = (int)((t - (double)s) * 1000.0);
  if (ms < 0) ms = 0;
  if (ms > 999) ms = 999;
  struct tm tm;
  gmtime_r(&s, &tm);
  char b[40];
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, n, "%s.%03dZ", b, ms);
}

/* A finite number as JSON, the shortest of %.15g / %.17g that reads back. */
static void put_json_number(double v) {
  char b[40];
  snprintf(b, sizeof b, "%.15g", v);
  if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.17g", v);
  fputs(b, stdout);
}

/* `run metrics --json` is written as it is read, series by series and point
 * by point (no document in memory: 1.8 M points used 889 MB that way). */
static void put_json_point(int first, long long step, double ts, double v) {
  printf("%s\n\t\t{\"step\": %lld, \"timestamp\": ", first ? "" : ",", step);
  put_json_number(ts);
  fputs(", \"value\": ", stdout);
  if (isfinite(v)) put_json_number(v);
  else fputs(isnan(v) ? "\"NaN\"" : v > 0 ? "\"Infinity\"" : "\"-Infinity\"", stdout);
  putchar('}');
}

static void put_json_key(int first, const char *name) {
  cJSON *k = cJSON_CreateString(name);
  char *t = k ? cJSON_PrintUnformatted(k) : NULL;
  printf("%s\n\t%s: [", first ? "" : ",", t ? t : "\"\"");
  cJSON_free(t);
  cJSON_Delete(k);
}

static int run_metrics(int argc, char **argv) {
  int np = 0, csv = 0, json = 0;
  const char *pos[1], *name = NULL, *rank_s = NULL;
  kp_opt opts[] = {{.name = "name", .val = &name}, {.name = "csv", .flag = &csv}, {.name = "json", .flag = &json},
                   {.name = "rank", .val = &rank_s}, {0}};
  if (kp_parse("run metrics", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("run metrics", "missing the RUN id");
  if (csv && json) return kp_usage_err("run metrics", "choose one of --csv and --json");
  long long rank = 0;
  if (rank_s && (kp_parse_int(rank_s, &rank) != 0 || rank < 0 || rank > 999999))
    return kp_usage_err("run metrics", "--rank is a rank of the run, 0 to 999999, not '%s'", rank_s);
  kp_ws ws;
  if (open_ws(&ws) != 0) return 1;
  char status[32];
  if (run_status(&ws, pos[0], status, sizeof status) != 0) { kp_ws_close(&ws); return no_run(pos[0]); }
  if (!kp_status_terminal(status)) kp_ingest(&ws, pos[0], 0);  /* live view */
  char **names = NULL;
  size_t nn = 0;
  if (name) {
    names = calloc(1, sizeof *names);
    if (names && (names[0] = strdup(name))) nn = 1;
  } else if (kp_store_metric_names_rank(ws.store, pos[0], (int)rank, &names, &nn) != 0) {
    kp_store_report();
    kp_ws_close(&ws);
    return 1;
  }
  if (csv) printf("name,step,timestamp,value\n");
  if (json) putchar('{');
  int n = 0, nseries = 0;
  char cur[512] = "";
  for (size_t k = 0; k < nn; k++) {
    const char *nm = names[k];
    kp_metric_point *pts;
    size_t np2;
    if (kp_store_metric_series_rank(ws.store, pos[0], nm, (int)rank, &pts, &np2) != 0) {
      if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) kp_store_report();
      continue;
    }
    for (size_t i = 0; i < np2; i++) {
      long long step = (long long)pts[i].step;
      double ts = pts[i].time;
      double v = pts[i].value;
      n++;
      if (csv) {
        int quote = strpbrk(nm, ",\"\n") != NULL;
        if (quote) {
          putchar('"');
          for (const char *c = nm; *c; c++) { if (*c == '"') putchar('"'); putchar(*c); }
          putchar('"');
        } else {
          fputs(nm, stdout);
        }
        if (isnan(v)) v = NAN;
        printf(",%lld,%.6f,%.17g\n", step, ts, v);
      } else if (json) {
        if (i == 0) put_json_key(nseries++ == 0, nm);
        put_json_point(i == 0, step, ts, v);
        if (i + 1 == np2) fputs("\n\t]", stdout);
      } else {
        if (strcmp(cur, nm) != 0) {
          printf("%s%s:\n", *cur ? "\n" : "", nm);
          snprintf(cur, sizeof cur, "%s", nm);
        }
        char t[64];
        fmt_ts_ms(ts, t, sizeof t);
        if (isnan(v)) v = NAN;  /* "nan", never "-nan" */
        printf("  step %-6lld %s  %.9g\n", step, t, v);
      }
    }
    free(pts);
  }
  kp_strings_free(names, nn);
  if (json) fputs(nseries ? "\n}\n" : "}\n", stdout);
  kp_ws_close(&ws);
  if (n == 0 && name) {
    if (rank) kp_err("rank %lld of run %s logged no metric named '%s'", rank, pos[0], name);
    else kp_err("run %s has no metric named '%s'", pos[0], name);
    kp_hint("see all of its metrics with 'kusari run metrics %s%s'", pos[0], rank ? " --rank R" : "");
    return 1;
  }
  return 0;
}

static const kp_cmd cmds[] = {
  {"submit", run_submit, "submit a run (returns at once; prints the run id last)",
   "usage: kusari run submit --experiment NAME --entry PROGRAM [--source DIR | --snapshot ID]\n"
   "                         [--compute NAME] [--env FILE] [--tag KEY=VALUE]... [--param NAME=VALUE]...\n"
   "                         [--snapshot-limit-mb N] [--nodes N] [--processes-per-node P] [--mpirun PATH]\n"
   "                         [--memory SIZE] [--cpus N] [-- ARGS...]\n\n"
   "Snapshots DIR (default .; files matching .kusariignore, else .amlignore or .gitignore,\n"
   "are left out; the snapshot may be at most N MB, default 300), records the run as\n"
   "Queued on the compute target (default: the only one) and starts its supervisor.\n"
   "The experiment is created on first use. ARGS after -- are passed to PROGRAM.\n"
   "--snapshot ID runs the code of an earlier snapshot again (see 'run show').\n"
   "--param NAME=VALUE records a hyperparameter with the run ('run show', and\n"
   "'run list --filter \"params.NAME = VALUE\"') and gives it to PROGRAM as the\n"
   "variable KUSARI_PARAM_NAME (NAME: letters, digits and _).\n\n"
   "PROGRAM is a file in DIR: a .py file runs with python3 from your PATH (your venv,\n"
   "pyenv or conda Python; found now and recorded with the run), a .sh file with bash,\n"
   "anything else must be executable. The environment FILE is JSON:\n"
   "  {\"name\": \"mnist\", \"debian_packages\": [\"libopenblas-dev\"], \"build\": \"make\",\n"
   "   \"variables\": {\"OMP_NUM_THREADS\": \"1\"}, \"interpreter\": \"/usr/bin/python3\",\n"
   "   \"pip_packages\": [\"numpy\", \"pytest\"], \"pip_options\": [\"--no-index\", \"--find-links\", \"/srv/wheels\"],\n"
   "   \"system_site_packages\": false}\n"
   "Missing packages fail the run; the build command runs in a copy of the snapshot\n"
   "and its result is cached by hash(snapshot, environment). pip_packages are installed\n"
   "into a virtual environment of the interpreter, cached per environment; it sees the\n"
   "system's site-packages only with system_site_packages true.\n\n"
   "A distributed run (--nodes N and/or --processes-per-node P, default 1 each) takes\n"
   "N nodes of the compute target at once (it waits Queued until N are free; N may\n"
   "not exceed the target's max nodes) and starts PROGRAM as N*P ranks under an MPI\n"
   "launcher: --mpirun PATH, else $KUSARI_MPIRUN, else mpirun from your PATH (found\n"
   "now and recorded). Every rank reports to the same run; rank R's output is also in\n"
   "logs/std_log_rank_R.txt ('run logs RUN --rank R'). One rank failing fails the run\n"
   "and stops the others; 'run show' gives each rank's exit status.\n\n"
   "Limits (local compute targets): --memory SIZE (512M, 2G; K, M, G, T are powers of\n"
   "1024) caps the memory of everything the run starts; an entry that goes past it is\n"
   "ended by the kernel and the run Fails with \"out of memory (limit SIZE)\". --cpus N\n"
   "(1, 0.5, 2) caps the processor time it gets per second. Both use a cgroup of the\n"
   "run's own (v2, else v1) where this machine lets kusari make one; else --memory\n"
   "becomes an address-space limit (RLIMIT_AS: allocations past it fail) and --cpus\n"
   "is not enforced. 'run show' says which (limits:).\n\n"
   "The last line of output is the run id.\n"},
  {"wait", run_wait, "wait for a run to end (exit 0 only if it Completed)",
   "usage: kusari run wait RUN [--show-output] [--metric NAME] [--timeout SECONDS]\n\n"
   "Waits until RUN ends, streaming its build and entry output with --show-output,\n"
   "then prints its final status. Exits 0 if it Completed, 1 if it Failed or was\n"
   "Canceled, 3 on --timeout. A distributed run's output is rank 0's (the other\n"
   "ranks': kusari run logs RUN --rank R).\n\n"
   "Without --show-output, on a terminal, it shows each status change as it happens\n"
   "and the latest value of one metric, rewritten in place: NAME with --metric,\n"
   "else, for a child of a sweep, the sweep's primary metric, else whichever metric\n"
   "the run logged last. Into a pipe or a file it prints only the final status.\n"},
  {"list", run_list, "list runs: filter, order by any metric or param, page through them",
   "usage: kusari run list [--experiment NAME] [--filter EXPR] [--order-by KEY [asc|desc]]\n"
   "                       [--status STATUS] [--parent RUN] [--metrics NAME,NAME...]\n"
   "                       [--limit N | --max N [--page-token TOKEN]] [--json]\n\n"
   "Lists runs, newest first, at most N (--limit, default 100). The database does the\n"
   "filtering and ordering, with indexes, so it stays fast with many runs.\n\n"
   "--filter EXPR keeps the runs that match, as MLflow's run search writes it:\n"
   "  EXPR  := TERM [and|or TERM]...          (and binds tighter; parentheses group)\n"
   "  TERM  := KEY OP VALUE | KEY [not] in (VALUE, ...) | ( EXPR )\n"
   "  KEY   := metrics.NAME  the run's latest value (highest step) of a metric\n"
   "         | params.NAME   a param (run submit --param, a sweep's values)\n"
   "         | tags.NAME     a tag\n"
   "         | status | experiment | compute | id | parent      (text)\n"
   "         | created | started | ended | duration            (numbers: seconds)\n"
   "  OP    := = != < <= > >= like ilike 'not like' 'not ilike'\n"
   "  VALUE := a number, or a 'string' (\"double\" quotes too; '' or \\' is a quote)\n"
   "Names with other characters go in backquotes: metrics.`val/loss`. like is\n"
   "case-sensitive (% any text, _ one character), ilike ignores case. Metrics compare\n"
   "with numbers; params compare as numbers when both sides are numbers, else as text;\n"
   "tags as text. created/started/ended also take 'YYYY-MM-DD[THH:MM:SS]' (UTC). A run\n"
   "that lacks the metric, param or tag does not match. Keywords ignore case.\n\n"
   "--order-by KEY [asc|desc] sorts by any KEY above (ascending unless desc; one word\n"
   "or two: \"--order-by 'metrics.Accuracy desc'\"); runs without a value come last,\n"
   "ties newest first. --status and --parent (a sweep's children) add to the filter.\n"
   "--metrics adds a column per metric with its latest value ('-' when none).\n\n"
   "--max N shows one page of N runs and, when more match, the token of the next page\n"
   "(\"next page: --page-token T\"); give it with the same filter and order. --json\n"
   "gives every run with its tags, params (and the --metrics values); with --max or\n"
   "--page-token an object {\"runs\": [...], \"next_page_token\": T or null}.\n"
   "A bad filter exits 2 with the position of the error.\n\n"
   "Examples:\n"
   "  kusari run list --filter \"metrics.Accuracy > 0.9 and params.batchsize = 128\"\n"
   "  kusari run list -e mnist --filter \"status = 'Completed'\" --order-by metrics.loss\n"
   "  kusari run list --filter \"tags.team ilike 'vision%' or params.lr in (0.1, 0.01)\"\n"
   "  kusari run list --filter 'created > \"2026-01-01\" and metrics.`val/loss` < 0.2' --max 20\n"},
  {"show", run_show, "show a run: status, times, arguments, exit code, last metrics",
   "usage: kusari run show RUN [--json]\n\n"
   "Shows a run's status, times and duration, arguments, compute target, snapshot,\n"
   "environment and build cache (hit/miss), exit code, error, tags and last metrics;\n"
   "for a distributed run its nodes, processes per node and launcher, and once it\n"
   "ended each rank's exit status (\"distributed\" in --json).\n"},
  {"compare", run_compare, "compare runs side by side: parameters, final metrics, tags",
   "usage: kusari run compare RUN RUN... [--only-differences] [--json]\n\n"
   "Shows 2 to 16 runs side by side: status, entry, snapshot, duration; parameters\n"
   "(the arguments read as --name value pairs; a lone --flag is true, other words\n"
   "are 'arg N'); final metrics (the latest value of each, as in 'run show'); tags.\n"
   "Rows whose values differ are marked '*' (\"differs\": true in --json).\n"},
  {"plot", run_plot, "draw a metric's curve for one or more runs as a PNG",
   "usage: kusari run plot RUN [RUN...] --metric NAME -o FILE.png [--x step|time]\n"
   "                       [--width PX] [--height PX] [--title TEXT]\n\n"
   "Draws metric NAME of each run as a line (one colour per run, a legend with the\n"
   "run ids) against its step, or with --x time against the seconds since the run\n"
   "started. Default size 800x500. Non-finite values leave a gap. Every run must\n"
   "have logged NAME.\n"},
  {"tag", run_tag, "set tags on a run",
   "usage: kusari run tag RUN KEY=VALUE [KEY=VALUE...]\n\n"
   "Sets (or replaces) tags of RUN, shown by 'run show' and 'run list --json'.\n"
   "The tags sweeps use (sweep, sweep_index, best_child_run_id, best_metric_value)\n"
   "and those starting with 'kusari.' (a distributed run's shape and its ranks'\n"
   "exit status) cannot be set by hand.\n"},
  {"untag", run_untag, "remove tags from a run",
   "usage: kusari run untag RUN KEY [KEY...]\n\n"
   "Removes tags of RUN. A KEY the run does not have is an error and removes nothing.\n"},
  {"delete", run_delete, "delete ended runs with their metrics, files and unused blobs",
   "usage: kusari run delete RUN [RUN...] [--yes] [--dry-run]\n\n"
   "Deletes the runs' records (metrics, tags, files) and then the blobs that nothing\n"
   "else uses: blobs shared with another run, a snapshot still in use or a registered\n"
   "model version stay (a model registered from a deleted run keeps working). Refuses\n"
   "while any of the runs is active (Queued, Preparing, Running, Finalizing). A sweep\n"
   "and its child runs are deleted together with 'kusari sweep delete'.\n"
   "Asks for confirmation on a terminal; --yes deletes without asking (needed when\n"
   "standard input is not a terminal). --dry-run only says what would be deleted.\n"},
  {"logs", run_logs, "print a run's output (-f follows it)",
   "usage: kusari run logs RUN [-f|--follow] [--build | --rank R]\n\n"
   "Prints the entry's stdout+stderr (logs/std_log.txt; every rank's of a distributed\n"
   "run, merged), or the build log with --build, or with --rank R the output of rank\n"
   "R alone (logs/std_log_rank_R.txt). With -f, follows the output until the run ends.\n"},
  {"files", run_files, "list the files in a run's history",
   "usage: kusari run files RUN [--json]\n\nLists the run's stored files (outputs/..., logs/..., uploads).\n"},
  {"download", run_download, "download a run file or folder",
   "usage: kusari run download RUN PATH [--to DIR]\n\n"
   "Downloads the run file PATH, or every file under the folder PATH, into DIR\n"
   "(default .), keeping their paths (DIR/outputs/model.npz). PATH must be relative.\n"},
  {"cancel", run_cancel, "cancel a run (SIGTERM, then SIGKILL after a grace period)",
   "usage: kusari run cancel RUN [--grace SECONDS] [--no-wait]\n\n"
   "Cancels a queued or running run: SIGTERM to its process group (every rank of a\n"
   "distributed run), SIGKILL after SECONDS (default 10). Waits until it is Canceled\n"
   "unless --no-wait.\n"},
  {"metrics", run_metrics, "print a run's metrics",
   "usage: kusari run metrics RUN [--name NAME] [--rank R] [--csv|--json]\n\n"
   "Prints every logged value of RUN (only metric NAME with --name), by name, then\n"
   "step: as text, one line per value with its step, its time (UTC, as logged) and\n"
   "its value; with --csv the columns name,step,timestamp,value (timestamp in\n"
   "seconds since the epoch); with --json an object of arrays of {step, timestamp,\n"
   "value}. Non-finite values are kept as logged: nan, inf, -inf in text and CSV,\n"
   "the strings \"NaN\", \"Infinity\", \"-Infinity\" in JSON. While RUN is active\n"
   "the values logged so far are read first. Output is written as the values are\n"
   "read, one metric at a time (memory grows with the longest metric's values, at\n"
   "32 bytes each, not with the output); JSON numbers read back exactly.\n"
   "In a distributed run (run submit --nodes) each rank's values are kept apart:\n"
   "this shows rank 0's, as every other view does; --rank R shows rank R's.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_run(int argc, char **argv) {
  return kp_dispatch("run", "usage: kusari run SUBCOMMAND\n\nSubmit runs and look at them.\n", cmds, argc, argv);
}
