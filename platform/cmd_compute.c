/*
 * platform/cmd_compute.c — `kusari compute create|list|show|delete`.
 * A compute target runs at most max_nodes runs at a time (local: on this
 * machine; slurm: as Slurm jobs); the supervisors of the others wait in
 * Queued (supervisor.c). Where runs execute is compute.h's interface.
 */
#include "compute_slurm.h"
#include "kp.h"
#include "compute.h"
#include "views.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Where a slurm target's settings are kept until the store holds them. */
static void slurm_settings_path(const kp_ws *ws, const char *name, char *out, size_t n) {
  kp_slurm_settings_path(ws->root, name, out, n);
}

static void slurm_report(const kp_slurm_err *e) {
  kp_err("%s", e->msg);
  if (*e->hint) kp_hint("%s", e->hint);
}

static int cp_create(int argc, char **argv) {
  const char *type = "local", *nodes = "1", *pos[1];
  const char *minn = NULL, *partition = NULL, *gpus = NULL, *tlimit = NULL, *account = NULL, *qos = NULL;
  int np = 0;
  kp_opt opts[] = {{.name = "type", .val = &type},           {.name = "max-nodes", .val = &nodes},
                   {.name = "min-nodes", .val = &minn},      {.name = "partition", .val = &partition},
                   {.name = "gpus-per-node", .val = &gpus},  {.name = "time-limit", .val = &tlimit},
                   {.name = "account", .val = &account},     {.name = "qos", .val = &qos},
                   {0}};
  if (kp_parse("compute create", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("compute create", "missing the compute target's NAME");
  if (kp_name_ok(pos[0]) != 0)
    return kp_usage_err("compute create", "invalid name '%s': use letters, digits, '.', '_' and '-', starting with a letter or digit", pos[0]);
  const kp_compute_ops *ops = kp_compute_find(type);
  if (!ops) {
    char types[256];
    kp_compute_type_names(types, sizeof types);
    return kp_usage_err("compute create", "unsupported --type '%s'; this kusari supports: %s", type, types);
  }
  int slurm = ops == &kp_compute_slurm;
  long long n;
  if (kp_parse_int(nodes, &n) != 0 || n < 1 || n > 1024)
    return kp_usage_err("compute create", "--max-nodes must be an integer from 1 to 1024, got '%s'", nodes);
  kp_slurm_target t;
  memset(&t, 0, sizeof t);
  t.max_nodes = (int)n;
  if (!slurm) {
    const char *given = minn ? "min-nodes" : partition ? "partition" : gpus ? "gpus-per-node" : tlimit ? "time-limit"
                      : account ? "account" : qos ? "qos" : NULL;
    if (given) return kp_usage_err("compute create", "--%s applies to --type slurm only", given);
  } else {
    long long v;
    if (minn && (kp_parse_int(minn, &v) != 0 || v < 0 || v > n))
      return kp_usage_err("compute create", "--min-nodes must be an integer from 0 to --max-nodes (%lld), got '%s'", n, minn);
    t.min_nodes = minn ? (int)v : 0;
    if (gpus && (kp_parse_int(gpus, &v) != 0 || v < 0 || v > 64))
      return kp_usage_err("compute create", "--gpus-per-node must be an integer from 0 to 64, got '%s'", gpus);
    t.gpus_per_node = gpus ? (int)v : 0;
    if (tlimit && kp_slurm_time_ok(tlimit) != 0)
      return kp_usage_err("compute create",
                          "--time-limit '%s' is not a Slurm time: use MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS or UNLIMITED",
                          tlimit);
    const char *names[] = {"partition", "account", "qos"}, *vals[] = {partition, account, qos};
    for (int i = 0; i < 3; i++)
      if (vals[i] && kp_slurm_value_ok(vals[i], 127) != 0)
        return kp_usage_err("compute create", "--%s '%s' is not a Slurm name (at most 127 characters, no quotes or control characters)",
                            names[i], vals[i]);
    if (tlimit) snprintf(t.time_limit, sizeof t.time_limit, "%s", tlimit);
    if (account) snprintf(t.account, sizeof t.account, "%s", account);
    if (qos) snprintf(t.qos, sizeof t.qos, "%s", qos);
    kp_slurm_err e;
    if (kp_slurm_check(partition, t.partition, sizeof t.partition, &e) != 0) {
      slurm_report(&e);
      return 1;
    }
    /* --max-nodes against Slurm's view of the partition, said at create:
     * more than its nodes means runs (one-node jobs, placed by CPUs) share
     * nodes; more than its CPUs, the rest wait in Slurm's queue */
    int pnodes = 0, pcpus = 0;
    if (kp_slurm_partition_size(t.partition, &pnodes, &pcpus, &e) != 0) {
      slurm_report(&e);
      return 1;
    }
    if (n > pnodes)
      fprintf(stderr, "kusari: note: Slurm partition %s has %d node%s with %d CPU%s in all: with --max-nodes %lld, runs "
              "share nodes (each run is a job that Slurm places by its CPUs)%s; a distributed run can use at most %d "
              "node%s\n", t.partition, pnodes, pnodes == 1 ? "" : "s", pcpus, pcpus == 1 ? "" : "s", n,
              n > pcpus ? ", and runs beyond its CPUs wait in Slurm's queue (Queued)" : "", pnodes, pnodes == 1 ? "" : "s");
  }
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  if (kp_store_compute_create(ws.store, pos[0], type, (int)n) == 0) {
    rc = 0;
    if (slurm) {
      char dir[4200], path[4300];
      kp_slurm_err e;
      snprintf(dir, sizeof dir, "%s/computes", ws.root);
      slurm_settings_path(&ws, pos[0], path, sizeof path);
      int bad = kp_mkdirs(dir, 0700) != 0;  /* kp_mkdirs prints its error */
      if (!bad && kp_slurm_target_save(path, &t, &e) != 0) {
        slurm_report(&e);
        bad = 1;
      }
      if (bad) {
        int active = 0;
        if (kp_store_compute_delete(ws.store, pos[0], &active) != 0) kp_store_report();
        rc = 1;
      }
    }
    if (rc == 0 && slurm)
      printf("compute target %s created (type slurm, partition %s, max nodes %lld)\n", pos[0], t.partition, n);
    else if (rc == 0)
      printf("compute target %s created (type %s, max nodes %lld)\n", pos[0], type, n);
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

/* Adds "slurm" to the view 'o' of a slurm target: its settings and Slurm's
 * view (nodes, this workspace's unfinished jobs). Returns 1 (and 'e') when
 * the settings or Slurm's view could not be had ("slurm_error" says why). */
static int slurm_view(const kp_ws *ws, cJSON *o, kp_slurm_err *e) {
  char path[4300], comment[4200];
  kp_slurm_target t;
  slurm_settings_path(ws, str(o, "name"), path, sizeof path);
  cJSON *sl = cJSON_AddObjectToObject(o, "slurm");
  if (kp_slurm_target_load(path, &t, e) != 0) {
    cJSON_AddStringToObject(sl, "error", e->msg);
    return 1;
  }
  cJSON_AddStringToObject(sl, "partition", t.partition);
  cJSON_AddNumberToObject(sl, "min_nodes", t.min_nodes);
  cJSON_AddNumberToObject(sl, "gpus_per_node", t.gpus_per_node);
  cJSON_AddStringToObject(sl, "time_limit", t.time_limit);
  cJSON_AddStringToObject(sl, "account", t.account);
  cJSON_AddStringToObject(sl, "qos", t.qos);
  kp_slurm_ws_comment(ws->root, comment, sizeof comment);
  cJSON *view = kp_slurm_describe(t.partition, comment, e);
  if (!view) {
    cJSON_AddNullToObject(sl, "view");
    cJSON_AddStringToObject(sl, "error", e->msg);
    return 1;
  }
  cJSON_AddItemToObject(sl, "view", view);
  return 0;
}

static const char *ostr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void slurm_print(const cJSON *sl) {
  if (!sl) return;
  if (!cJSON_GetObjectItemCaseSensitive(sl, "partition")) return;  /* settings unreadable: the error says it */
  const char *tl = ostr(sl, "time_limit"), *acct = ostr(sl, "account"), *qos = ostr(sl, "qos");
  printf("partition:   %s\nmin nodes:   %d\ngpus/node:   %d\ntime limit:  %s\naccount:     %s\nqos:         %s\n",
         ostr(sl, "partition"), num(sl, "min_nodes"), num(sl, "gpus_per_node"), *tl ? tl : "(partition default)",
         *acct ? acct : "(default)", *qos ? qos : "(default)");
  const cJSON *view = cJSON_GetObjectItemCaseSensitive(sl, "view");
  if (!cJSON_IsObject(view)) return;
  printf("slurm:       partition %s is %s, max time %s, %d node(s)\n", ostr(view, "partition"), ostr(view, "state"),
         ostr(view, "max_time"), num(view, "total_nodes"));
  printf("\n%-20s %-12s %-14s %5s  %s\n", "NODE", "STATE", "POWER", "CPUS", "REASON");
  const cJSON *n;
  cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(view, "nodes"))
    printf("%-20s %-12s %-14s %5d  %s\n", ostr(n, "name"), ostr(n, "state"), ostr(n, "power"), num(n, "cpus"),
           ostr(n, "reason"));
  const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(view, "jobs");
  printf("\n%d pending/running job(s) of this workspace\n", cJSON_GetArraySize(jobs));
  if (cJSON_GetArraySize(jobs) == 0) return;
  printf("%-10s %-24s %-11s %-16s %5s %10s  %s\n", "JOBID", "NAME", "STATE", "REASON", "NODES", "TIME", "NODELIST");
  const cJSON *j;
  cJSON_ArrayForEach(j, jobs)
    printf("%-10s %-24s %-11s %-16s %5d %10s  %s\n", ostr(j, "id"), ostr(j, "name"), ostr(j, "state"),
           ostr(j, "reason"), num(j, "nodes"), ostr(j, "time"), ostr(j, "nodelist"));
}

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
  kp_slurm_err serr = {0};
  int slurm_failed = 0;
  /* (a Slurm target's live state is the server machine's to ask: not remotely) */
  if (rc == 0 && show && !ws.remote[0] && !strcmp(str(cJSON_GetArrayItem(arr, 0), "type"), "slurm"))
    slurm_failed = slurm_view(&ws, cJSON_GetArrayItem(arr, 0), &serr);
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
      t->describe(ws.root, str(o, "name"), num(o, "max_nodes"), d, sizeof d);
      printf("runs on:     %s\n", d);
    }
    if (!strcmp(str(o, "type"), "slurm")) slurm_print(cJSON_GetObjectItemCaseSensitive(o, "slurm"));
  } else if (rc == 0) {
    printf("%-20s %-6s %5s %5s %5s %6s\n", "NAME", "TYPE", "MAX", "BUSY", "IDLE", "QUEUED");
    cJSON *o;
    cJSON_ArrayForEach(o, arr)
      printf("%-20s %-6s %5d %5d %5d %6d\n", str(o, "name"), str(o, "type"), num(o, "max_nodes"),
             num(o, "busy_nodes"), num(o, "idle_nodes"), num(o, "queued_runs"));
  }
  if (slurm_failed) {  /* what the workspace knows is printed; Slurm's view is missing */
    slurm_report(&serr);
    rc = 1;
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
    char path[4300];
    slurm_settings_path(&ws, pos[0], path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT) kp_err("cannot remove the Slurm settings %s: %s", path, strerror(errno));
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

/* ---- slurm-probe: the Slurm operations one at a time (tests, debugging) ---- */
static int probe_submit(int argc, char **argv, int script_only) {
  const char *cmd = script_only ? "compute slurm-probe script" : "compute slurm-probe submit";
  const char *compute = NULL, *workdir = NULL, *output = NULL, *errfile = NULL, *path = NULL, *nodes = "1",
             *tasks = "1", *pos[1], *envs[KP_MULTI_MAX + 1];
  int np = 0, nenv = 0, rest = argc;
  kp_opt opts[] = {{.name = "compute", .val = &compute},     {.name = "workdir", .val = &workdir},
                   {.name = "output", .val = &output},       {.name = "error", .val = &errfile},
                   {.name = "script", .val = &path},         {.name = "nodes", .val = &nodes},
                   {.name = "ntasks-per-node", .val = &tasks}, {.name = "env", .multi = envs, .nmulti = &nenv},
                   {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, &rest)) return 2;
  if (np != 1 || !compute || !workdir || !output || (!script_only && !path) || rest >= argc)
    return kp_usage_err(cmd, "needs NAME, --compute, --workdir, --output%s and a command after --",
                        script_only ? "" : ", --script");
  long long nn, nt;
  if (kp_parse_int(nodes, &nn) != 0 || nn < 1 || nn > 1024 || kp_parse_int(tasks, &nt) != 0 || nt < 1 || nt > 1024)
    return kp_usage_err(cmd, "--nodes and --ntasks-per-node must be integers from 1 to 1024");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  char spath[4300], jname[300], comment[4200], jobid[32];
  kp_slurm_target t;
  kp_slurm_err e;
  slurm_settings_path(&ws, compute, spath, sizeof spath);
  kp_slurm_ws_comment(ws.root, comment, sizeof comment);
  kp_ws_close(&ws);
  if (kp_slurm_target_load(spath, &t, &e) != 0) { slurm_report(&e); return 1; }
  snprintf(jname, sizeof jname, "kusari-%s", pos[0]);
  envs[nenv] = NULL;
  kp_slurm_job_spec spec = {.name = jname, .comment = comment, .workdir = workdir, .stdout_path = output,
                            .stderr_path = errfile, .env = envs, .argv = (const char *const *)(argv + rest),
                            .nodes = (int)nn, .ntasks_per_node = (int)nt, .target = &t};
  if (script_only) {
    char *text = kp_slurm_script(&spec, &e);
    if (!text) { slurm_report(&e); return 1; }
    fputs(text, stdout);
    free(text);
    return 0;
  }
  if (kp_slurm_submit(&spec, path, jobid, sizeof jobid, &e) != 0) { slurm_report(&e); return 1; }
  printf("%s\n", jobid);
  return 0;
}

static int probe(int argc, char **argv) {
  const char *usage = "compute slurm-probe";
  if (argc < 2) return kp_usage_err(usage, "missing the operation: check, script, submit, poll or cancel");
  const char *op = argv[1];
  if (!strcmp(op, "script") || !strcmp(op, "submit")) return probe_submit(argc - 1, argv + 1, op[1] == 'c');
  kp_slurm_err e;
  if (!strcmp(op, "check")) {
    const char *partition = NULL;
    kp_opt opts[] = {{.name = "partition", .val = &partition}, {0}};
    if (kp_parse("compute slurm-probe check", argc - 1, argv + 1, opts, NULL, NULL, 0, NULL)) return 2;
    char part[128];
    if (kp_slurm_check(partition, part, sizeof part, &e) != 0) { slurm_report(&e); return 1; }
    printf("%s\n", part);
    return 0;
  }
  if (!strcmp(op, "poll") || !strcmp(op, "cancel")) {
    const char *grace = "10", *pos[1];
    int creq = 0, np = 0;
    kp_opt opts[] = {{.name = "cancel-requested", .flag = &creq}, {.name = "grace", .val = &grace}, {0}};
    if (kp_parse(op[0] == 'p' ? "compute slurm-probe poll" : "compute slurm-probe cancel", argc - 1, argv + 1, opts,
                 pos, &np, 1, NULL))
      return 2;
    if (np != 1) return kp_usage_err(usage, "missing the JOBID");
    if (op[0] == 'c') {
      char *end;
      double g = strtod(grace, &end);
      if (*end || end == grace || g < 0 || g > 3600) return kp_usage_err(usage, "--grace must be seconds from 0 to 3600");
      if (kp_slurm_cancel(pos[0], g, &e) != 0) { slurm_report(&e); return 1; }
      creq = 1;
    }
    kp_slurm_job j;
    if (kp_slurm_poll(pos[0], creq, &j, &e) != 0) { slurm_report(&e); return 1; }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j.id);
    cJSON_AddBoolToObject(o, "found", j.found);
    cJSON_AddStringToObject(o, "state", j.state);
    cJSON_AddStringToObject(o, "reason", j.reason);
    cJSON_AddStringToObject(o, "nodes", j.nodes);
    cJSON_AddNumberToObject(o, "exit_code", j.exit_code);
    cJSON_AddNumberToObject(o, "signal", j.signal);
    cJSON_AddNumberToObject(o, "restarts", j.restarts);
    cJSON_AddStringToObject(o, "status", j.status);
    cJSON_AddStringToObject(o, "error", j.error);
    char *t = cJSON_PrintUnformatted(o);
    puts(t);
    cJSON_free(t);
    cJSON_Delete(o);
    return 0;
  }
  return kp_usage_err(usage, "unknown operation '%s': use check, script, submit, poll or cancel", op);
}

static const kp_cmd cmds[] = {
  {"create", cp_create, "create a compute target",
   "usage: kusari compute create NAME [--type local] [--max-nodes N]\n"
   "       kusari compute create NAME --type slurm [--partition P] [--max-nodes N] [--min-nodes M]\n"
   "                             [--gpus-per-node G] [--time-limit T] [--account A] [--qos Q]\n\n"
   "Creates a compute target. Type local runs on this machine, at most N runs at\n"
   "a time (default 1; a distributed run takes its --nodes of the N); further runs\n"
   "wait in state Queued.\n\n"
   "Type slurm makes a partition of a Slurm cluster a target (the Slurm commands\n"
   "on PATH, the cluster of SLURM_CONF or /etc/slurm/slurm.conf). It checks that\n"
   "the controller answers and the partition exists (default: Slurm's default\n"
   "partition). --time-limit takes Slurm's formats (MINUTES, MM:SS, HH:MM:SS,\n"
   "D-HH[:MM[:SS]], UNLIMITED); --account, --qos and --gpus-per-node go to\n"
   "sbatch as they are; --min-nodes is recorded (scale-down is Slurm's power\n"
   "saving, see docs/CLUSTER.md). The settings are kept in the workspace as\n"
   "computes/NAME.json (0600). A run on it is one Slurm job (sbatch; its id is\n"
   "the run's tag kusari.slurm_job); the nodes must see the workspace at the\n"
   "same path (a shared filesystem). At most N runs (or nodes of distributed\n"
   "runs) are submitted at a time; further runs wait in state Queued.\n"},
  {"list", cp_list, "list compute targets",
   "usage: kusari compute list [--json]\n\nLists compute targets with busy and idle nodes and queued runs.\n"},
  {"show", cp_show, "show one compute target",
   "usage: kusari compute show NAME [--json]\n\nShows a compute target: type, max nodes, busy/idle nodes, queued runs,\n"
   "and what its type runs on. For a slurm target also its settings and Slurm's\n"
   "view: the partition, its nodes with their state and power state, and this\n"
   "workspace's pending and running jobs (exit 1, after what the workspace knows,\n"
   "when Slurm does not answer).\n"},
  {"delete", cp_delete, "delete a compute target (refused while runs use it)",
   "usage: kusari compute delete NAME\n\nDeletes a compute target. Refused while runs on it are not finished.\n"},
  {"slurm-probe", probe, "Slurm operations one at a time (for tests and debugging)",
   "usage: kusari compute slurm-probe check [--partition P]\n"
   "       kusari compute slurm-probe script NAME --compute C --workdir D --output F [--error F]\n"
   "                             [--nodes N] [--ntasks-per-node P] [--env K=V]... -- COMMAND...\n"
   "       kusari compute slurm-probe submit NAME --script PATH (same options) -- COMMAND...\n"
   "       kusari compute slurm-probe poll JOBID [--cancel-requested]\n"
   "       kusari compute slurm-probe cancel JOBID [--grace SECONDS]\n\n"
   "The operations the slurm compute target is built from, one at a time, for\n"
   "the tests (tests/platform/test_slurm*.sh) and for debugging a cluster: check\n"
   "prints the partition (default: Slurm's); script prints the batch script of a\n"
   "job kusari-NAME on target C; submit writes it to PATH and prints the job id;\n"
   "poll prints the job as JSON (Slurm's state and reason, kusari's status and\n"
   "error text); cancel sends SIGTERM, SIGKILL after the grace (default 10 s),\n"
   "waits for the end and polls.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_compute(int argc, char **argv) {
  return kp_dispatch("compute", "usage: kusari compute SUBCOMMAND\n\nManage compute targets.\n", cmds, argc, argv);
}
