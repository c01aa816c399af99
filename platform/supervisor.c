/*
 * platform/supervisor.c — the detached process that carries one run through
 * its lifecycle (`kusari __supervise RUN_ID READY_FD`, started by run submit),
 * plus what any kusari process uses to keep the store true: metric ingestion
 * and reconciliation of runs whose supervisor died.
 *
 *   Queued      wait for a free node of the compute target (FIFO per target)
 *   Preparing   extract the snapshot, check the environment's Debian packages,
 *               run its build command (cached by hash(snapshot, environment))
 *   Running     the entry runs in runs/<id>/wd in its own process group, with
 *               stdout+stderr appended to runs/<id>/logs/std_log.txt; metrics
 *               are ingested from the channel every 250 ms
 *   Finalizing  final ingest; wd/outputs, logs and uploads go to the blob store
 *   Completed | Failed | Canceled
 *
 * Cancel: `run cancel` sets runs.cancel_requested (and sends SIGUSR1 to wake
 * the supervisor); the supervisor sends SIGTERM to the entry's process group,
 * then SIGKILL after runs.cancel_grace seconds.
 */
#include "kp.h"
#include "compute.h"
#include "kusari/error.h"
#include "kusari/backend.h" /* ks_blas_suggested_coretype */
#include "kusari/run.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int kp_status_terminal(const char *s) {
  kp_run_status v;
  return kp_run_status_parse(s, &v) == 0 && kp_run_status_ended(v);
}

void kp_run_dir(const kp_ws *ws, const char *id, char *out, size_t n) {
  snprintf(out, n, "%s/runs/%s", ws->root, id);
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- ingestion ------------------------------------------------------------ */
/* The records read from a run's channel, as one batch for the store. */
typedef struct ingest_ctx {
  kp_metric_point *pts;
  size_t npts, cap;
  char **names;  /* distinct metric names (the points point into them) */
  size_t nnames;
  char **tkeys, **tvals;
  size_t ntags;
  int failed;
} ingest_ctx;

static const char *intern(ingest_ctx *c, const char *name) {
  for (size_t i = 0; i < c->nnames; i++)
    if (!strcmp(c->names[i], name)) return c->names[i];
  char **nv = realloc(c->names, (c->nnames + 1) * sizeof *nv);
  if (!nv) return NULL;
  c->names = nv;
  return (c->names[c->nnames] = strdup(name)) ? c->names[c->nnames++] : NULL;
}

static int ingest_record(void *vctx, const ks_run_record *r) {
  ingest_ctx *c = vctx;
  if (r->kind == KS_RUN_RECORD_METRIC) {
    if (c->npts == c->cap) {
      size_t cap = c->cap ? 2 * c->cap : 256;
      kp_metric_point *np = realloc(c->pts, cap * sizeof *np);
      if (!np) { c->failed = 1; return 1; }
      c->pts = np;
      c->cap = cap;
    }
    const char *name = intern(c, r->name);
    if (!name) { c->failed = 1; return 1; }
    c->pts[c->npts++] = (kp_metric_point){.name = name, .step = r->step, .time = r->time, .value = r->value};
  } else {
    char **k = realloc(c->tkeys, (c->ntags + 1) * sizeof *k);
    if (k) c->tkeys = k;
    char **v = realloc(c->tvals, (c->ntags + 1) * sizeof *v);
    if (v) c->tvals = v;
    if (!k || !v) { c->failed = 1; return 1; }
    c->tkeys[c->ntags] = strdup(r->name);
    c->tvals[c->ntags] = strdup(r->text);
    c->ntags++;
    if (!c->tkeys[c->ntags - 1] || !c->tvals[c->ntags - 1]) { c->failed = 1; return 1; }
  }
  return 0;
}

int kp_ingest(kp_ws *ws, const char *run_id, int final) {
  char ch[4400];
  kp_run_dir(ws, run_id, ch, sizeof ch);
  strcat(ch, "/channel");
  if (access(ch, F_OK) != 0) return 0;  /* nothing (yet, or any more) */
  ingest_ctx c = {0};
  kp_run run = {0};
  int rc = -1;
  /* the write lock for the whole read: one ingesting process at a time */
  if (kp_store_begin(ws->store) != 0) return kp_store_report();
  if (kp_store_run_get(ws->store, run_id, &run) != 0) { kp_store_report(); goto out; }
  uint64_t offset = run.channel_offset;
  int r = ks_run_channel_read(ch, &offset, final, ingest_record, &c);
  if (c.failed) { kp_err("run %s: out of memory while reading its metrics", run_id); goto out; }
  if (r < 0) {
    kp_err("run %s: %s", run_id, ks_error_last());
    /* keep what was read before the bad record */
  }
  kp_ingest_batch b = {.from = run.channel_offset, .to = offset, .points = c.pts, .npoints = c.npts,
                       .tag_keys = (const char *const *)c.tkeys, .tag_values = (const char *const *)c.tvals,
                       .ntags = c.ntags};
  if (kp_store_metrics_ingest(ws->store, run_id, &b) != 0) {
    kp_err("store: cannot record the metrics of run %s: %s", run_id, kp_store_last_error()->message);
    if (kp_store_last_error()->code == KP_STORE_EBACKEND) kp_store_errors++;
    goto out;
  }
  if (kp_store_commit(ws->store) != 0) { kp_store_report(); goto out; }
  rc = 0;
out:
  kp_store_rollback(ws->store);
  kp_run_free(&run);
  free(c.pts);
  for (size_t i = 0; i < c.nnames; i++) free(c.names[i]);
  free(c.names);
  for (size_t i = 0; i < c.ntags; i++) {
    free(c.tkeys[i]);
    free(c.tvals[i]);
  }
  free(c.tkeys);
  free(c.tvals);
  return rc;
}

/* ---- run files -------------------------------------------------------------- */
/* Stores regular files under 'dir' as run files "prefix/rel"; symbolic links
 * are skipped (never followed), so a run cannot publish files outside it. */
static int store_walk(kp_ws *ws, const char *run_id, const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : kp_err("cannot read %s: %s", dir, strerror(errno));
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char full[8192], rel[8192];
    snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
    snprintf(rel, sizeof rel, "%s/%s", prefix, e->d_name);
    struct stat st;
    if (lstat(full, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      rc = store_walk(ws, run_id, full, rel);
    } else if (S_ISREG(st.st_mode) && kp_rel_path_ok(rel) == 0) {
      char hex[65];
      int64_t size;
      if (kp_blob_put_file(ws, full, hex, &size) != 0) { rc = -1; break; }
      kp_file_entry fe = {.path = rel, .sha256 = hex, .size = size};
      if (kp_store_run_files_put(ws->store, run_id, &fe, 1) != 0) rc = kp_store_report();
    }
  }
  closedir(d);
  return rc;
}

int kp_store_tree(kp_ws *ws, const char *run_id, const char *dir, const char *prefix) {
  return store_walk(ws, run_id, dir, prefix);
}

/* Stores outputs/, logs/ and uploads of run 'id' (idempotent). */
static int store_run_files(kp_ws *ws, const char *id) {
  char rd[4400], p[4600];
  kp_run_dir(ws, id, rd, sizeof rd);
  int rc = 0;
  snprintf(p, sizeof p, "%s/wd/outputs", rd);
  if (kp_store_tree(ws, id, p, "outputs") != 0) rc = -1;
  /* ./logs of the entry, then the platform's logs (which win a name clash) */
  snprintf(p, sizeof p, "%s/wd/logs", rd);
  if (kp_store_tree(ws, id, p, "logs") != 0) rc = -1;
  snprintf(p, sizeof p, "%s/logs", rd);
  if (kp_store_tree(ws, id, p, "logs") != 0) rc = -1;
  /* uploads keep their own names ("outputs/x.png", "plots/a.png") */
  snprintf(p, sizeof p, "%s/uploads", rd);
  DIR *d = opendir(p);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
      char sub[4900];
      snprintf(sub, sizeof sub, "%s/%s", p, e->d_name);
      struct stat st;
      if (lstat(sub, &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        if (kp_store_tree(ws, id, sub, e->d_name) != 0) rc = -1;
      } else if (S_ISREG(st.st_mode)) {
        char hex[65];
        int64_t size;
        if (kp_blob_put_file(ws, sub, hex, &size) != 0) {
          rc = -1;
          continue;
        }
        kp_file_entry fe = {.path = e->d_name, .sha256 = hex, .size = size};
        if (kp_store_run_files_put(ws->store, id, &fe, 1) != 0) rc = kp_store_report();
      }
    }
    closedir(d);
  }
  return rc;
}

/* ---- status updates ---------------------------------------------------------- */
/* Sets status (and optionally ended/exit/signal/error) of run 'id' if it is
 * not terminal yet (an ended run keeps its status: not an error here).
 * Returns 0, or -1 on a store error (printed). */
static int set_status(kp_ws *ws, const char *id, kp_run_status status, int end, int exit_code, int sig,
                      const char *error) {
  kp_run_transition t = {.to = status, .end = end, .has_exit_code = exit_code != INT32_MIN, .exit_code = exit_code,
                         .signal = sig, .error = error};
  if (kp_store_run_transition(ws->store, id, &t) == 0) return 0;
  if (kp_store_last_error()->code == KP_STORE_ECONFLICT) return 0;
  return kp_store_report();
}

/* Best-effort removal of a finished run's working directory and channel. */
static void cleanup_run_dir(kp_ws *ws, const char *id) {
  char rd[4400], p[4600];
  kp_run_dir(ws, id, rd, sizeof rd);
  snprintf(p, sizeof p, "%s/wd", rd);
  kp_rm_rf(p);
  snprintf(p, sizeof p, "%s/channel", rd);
  unlink(p);
}

/* ---- compute targets ------------------------------------------------------------ */
const kp_compute_ops *kp_compute_of(kp_ws *ws, const char *compute) {
  kp_compute *v = NULL;
  size_t n = 0;
  const kp_compute_ops *ops = NULL;
  if (compute && kp_store_compute_list(ws->store, compute, &v, &n) == 0 && n == 1) ops = kp_compute_find(v[0].type);
  kp_computes_free(v, n);
  return ops ? ops : &kp_compute_local;
}

/* ---- reconciliation ------------------------------------------------------------ */
int kp_reconcile(kp_ws *ws) {
  kp_run *runs;
  size_t nr;
  if (kp_store_run_list_active(ws->store, &runs, &nr) != 0) return kp_store_report();
  struct dead { char id[256], compute[256]; pid_t spid, epid; uint64_t estart; int cancel; } *dead = NULL;
  size_t nd = 0;
  int r = 0;
  double now = kp_now();
  for (size_t i = 0; i < nr; i++) {
    const kp_run *x = &runs[i];
    int has_sup = x->supervisor_pid != 0;
    pid_t spid = (pid_t)x->supervisor_pid;
    int is_dead = has_sup ? !kp_proc_alive(spid, x->supervisor_start) : (now - x->created > 60.0);
    if (!is_dead) continue;
    void *np = realloc(dead, (nd + 1) * sizeof *dead);
    if (!np) break;
    dead = np;
    snprintf(dead[nd].id, sizeof dead[nd].id, "%s", x->id);
    snprintf(dead[nd].compute, sizeof dead[nd].compute, "%s", x->compute);
    dead[nd].spid = spid;
    dead[nd].epid = (pid_t)x->entry_pid;
    dead[nd].estart = x->entry_start;
    dead[nd].cancel = x->cancel_requested;
    nd++;
  }
  kp_runs_free(runs, nr);
  for (size_t i = 0; i < nd; i++) {
    /* the entry may outlive its supervisor: stop it so its metrics are final */
    if (dead[i].epid > 0) kp_compute_of(ws, dead[i].compute)->reap(dead[i].epid, dead[i].estart);
    kp_ingest(ws, dead[i].id, 1);
    store_run_files(ws, dead[i].id);
    char msg[256];
    snprintf(msg, sizeof msg, "the run's supervisor (pid %d) died; the run was reconciled", (int)dead[i].spid);
    if (dead[i].cancel) set_status(ws, dead[i].id, KP_RUN_CANCELED, 1, INT32_MIN, 0, NULL);  /* error = cancel_reason */
    else set_status(ws, dead[i].id, KP_RUN_FAILED, 1, INT32_MIN, 0, msg);
    cleanup_run_dir(ws, dead[i].id);
  }
  free(dead);
  return r == 0 ? 0 : -1;
}

/* ---- the supervisor ------------------------------------------------------------- */
typedef struct sup {
  kp_ws ws;
  char id[256];
  char rd[4400];          /* runs/<id> */
  char experiment[256];
  char compute[256];
  char entry[4096];
  char snapshot[65];
  char *args_json;
  char *env_json;
  char env_hash[65];
  char cancel_reason[512]; /* set by cancel_requested() */
  int max_nodes;           /* of the compute target, once a node is taken */
  int nodes, ppn;          /* launch shape: nodes x processes per node (1 x 1: a plain run) */
  char launcher[4096];     /* the MPI launcher of a distributed run */
  char venv[4700];         /* the environment's Python virtual environment, or "" */
} sup;

static void sup_note(const sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static volatile sig_atomic_t g_wake;
static void on_usr1(int sig) { (void)sig; g_wake = 1; }

static int cancel_requested(sup *s, double *grace) {
  kp_run r;
  if (kp_store_run_get(s->ws.store, s->id, &r) != 0) {
    kp_store_report();
    return 0;
  }
  int c = r.cancel_requested;
  if (grace) *grace = r.cancel_grace;
  snprintf(s->cancel_reason, sizeof s->cancel_reason, "%s", r.cancel_reason ? r.cancel_reason : "canceled by the user");
  kp_run_free(&r);
  return c;
}

/* Waits in Queued until this run may take a node. Returns 1 when it did,
 * 0 when canceled meanwhile, -1 on error. */
static int wait_for_node(sup *s) {
  for (;;) {
    kp_reconcile(&s->ws);
    kp_node_claim claim;
    int max = 0;
    if (kp_store_run_claim_node(s->ws.store, s->id, &claim, &max) != 0) return kp_store_report();
    if (claim == KP_CLAIM_TAKEN) {
      s->max_nodes = max;
      return 1;
    }
    if (claim == KP_CLAIM_CANCELED) return 0;
    if (claim == KP_CLAIM_NO_TARGET) {
      set_status(&s->ws, s->id, KP_RUN_FAILED, 1, INT32_MIN, 0, "its compute target no longer exists");
      return -1;
    }
    for (int i = 0; i < 10 && !g_wake; i++) sleep_ms(20);
    g_wake = 0;
  }
}

/* Runs 'argv' in 'dir' with stdout+stderr appended to 'log', in a new
 * process group; returns its pid (or -1). */
static pid_t spawn(const char *dir, const char *log, char *const argv[], char *const envp[]) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  signal(SIGUSR1, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  int in = open("/dev/null", O_RDONLY);
  int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (in < 0 || out < 0 || chdir(dir) != 0) _exit(127);
  dup2(in, 0);
  dup2(out, 1);
  dup2(out, 2);
  if (in > 2) close(in);
  if (out > 2) close(out);
  execve(argv[0], argv, envp);
  fprintf(stderr, "kusari: cannot execute %s: %s\n", argv[0], strerror(errno));
  _exit(127);
}

static void append_log(const char *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append_log(const char *log, const char *fmt, ...) {
  FILE *f = fopen(log, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fclose(f);
}

/* Checks the environment's Debian packages; fills 'missing' (space separated). */
static int check_packages(cJSON *env, char *missing, size_t n) {
  missing[0] = '\0';
  cJSON *pk = cJSON_GetObjectItemCaseSensitive(env, "debian_packages");
  cJSON *p;
  cJSON_ArrayForEach(p, pk) {
    const char *name = cJSON_GetStringValue(p);
    if (!name) continue;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "dpkg-query -W -f='${Status}' '%s' 2>/dev/null", name);
    FILE *f = popen(cmd, "r");
    char buf[256] = "";
    if (f) {
      size_t r = fread(buf, 1, sizeof buf - 1, f);
      buf[r] = '\0';
      pclose(f);
    }
    if (!strstr(buf, "install ok installed")) {
      size_t l = strlen(missing);
      snprintf(missing + l, n - l, "%s%s", l ? " " : "", name);
    }
  }
  return missing[0] ? -1 : 0;
}

/* Runs 'argv' in 'dir' (output appended to 'log') until it exits; kills its
 * process group at once when the run is canceled. Returns the wait status,
 * -1 when it could not start, -2 when canceled. */
static int run_logged(sup *s, const char *dir, const char *log, char **argv) {
  pid_t pid = spawn(dir, log, argv, environ);
  if (pid < 0) return -1;
  int status = 0, canceled = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) break;
    if (!canceled && cancel_requested(s, NULL)) {
      canceled = 1;
      kill(-pid, SIGKILL);
    }
    sleep_ms(50);
  }
  kill(-pid, SIGKILL);
  return canceled ? -2 : status;
}

/* The environment's pip_packages, installed into a virtual environment made
 * with its interpreter and cached in envs/venv-<key> by hash(interpreter,
 * its real path, pip_packages, pip_options, system_site_packages). A lock
 * file (flock) makes concurrent runs of one environment wait for a single
 * build; a build is marked complete by .kusari-ready, so one killed halfway
 * is redone. Sets s->venv. Returns 0, -1 (failed) or -2 (canceled). */
static int prepare_venv(sup *s, cJSON *env, const char *buildlog, char *why, size_t whyn) {
  cJSON *pkgs = cJSON_GetObjectItemCaseSensitive(env, "pip_packages");
  if (cJSON_GetArraySize(pkgs) == 0) return 0;
  const char *interp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "interpreter"));
  char found[4096];
  if (!interp) {
    if (kp_which("python3", found, sizeof found) != 0) {
      snprintf(why, whyn, "there is no python3 to install the environment's pip_packages with");
      return -1;
    }
    interp = found;
  }
  cJSON *opts = cJSON_GetObjectItemCaseSensitive(env, "pip_options");
  int system_site = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(env, "system_site_packages"));
  char real[4096];
  if (!realpath(interp, real)) snprintf(real, sizeof real, "%s", interp);
  cJSON *k = cJSON_CreateObject();
  cJSON_AddStringToObject(k, "interpreter", interp);
  cJSON_AddStringToObject(k, "interpreter_realpath", real);
  cJSON_AddItemToObject(k, "pip_packages", cJSON_Duplicate(pkgs, 1));
  cJSON_AddItemToObject(k, "pip_options", opts ? cJSON_Duplicate(opts, 1) : cJSON_CreateArray());
  cJSON_AddBoolToObject(k, "system_site_packages", system_site);
  char *ktext = cJSON_PrintUnformatted(k);
  cJSON_Delete(k);
  if (!ktext) { snprintf(why, whyn, "out of memory"); return -1; }
  char key[65], dir[4600], lockp[4700], ready[4800];
  kp_sha256_hex(ktext, strlen(ktext), key);
  snprintf(dir, sizeof dir, "%s/envs", s->ws.root);
  if (kp_mkdirs(dir, 0755) != 0) { free(ktext); snprintf(why, whyn, "cannot create %.3000s", dir); return -1; }
  snprintf(s->venv, sizeof s->venv, "%s/envs/venv-%s", s->ws.root, key);
  snprintf(lockp, sizeof lockp, "%s/envs/.venv-%s.lock", s->ws.root, key);
  snprintf(ready, sizeof ready, "%s/.kusari-ready", s->venv);
  int rc = -1, fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(why, whyn, "cannot open %.3000s: %s", lockp, strerror(errno));
    free(ktext);
    s->venv[0] = '\0';
    return -1;
  }
  for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) != 0; waited++) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      snprintf(why, whyn, "cannot lock %.3000s: %s", lockp, strerror(errno));
      goto out;
    }
    if (!waited) append_log(buildlog, "kusari: python environment %.12s: waiting for another run that builds it\n", key);
    if (cancel_requested(s, NULL)) {
      snprintf(why, whyn, "%s (while waiting for the python environment)", s->cancel_reason);
      rc = -2;
      goto out;
    }
    sleep_ms(100);
  }
  struct stat st;
  if (stat(ready, &st) == 0) {
    append_log(buildlog, "kusari: python environment cache hit (%.12s): reusing %s\n", key, s->venv);
    sup_note(s, "python environment cache hit: %s", s->venv);
    rc = 0;
    goto out;
  }
  append_log(buildlog, "kusari: python environment cache miss (%.12s): creating %s with %s%s\n", key, s->venv, interp,
             system_site ? " (with the system's site-packages)" : "");
  sup_note(s, "python environment cache miss: creating %s", s->venv);
  kp_rm_rf(s->venv);
  /* Without pip (ensurepip is most of a venv's creation time); the packages
   * are installed by the interpreter's own pip when it has one that can
   * target another Python (pip >= 22.3: --python), else by a pip that
   * ensurepip puts into the venv (offline: it is bundled with Python). */
  char *vargv[] = {(char *)interp, "-m", "venv", "--without-pip", system_site ? "--system-site-packages" : s->venv,
                   system_site ? s->venv : NULL, NULL};
  int r = run_logged(s, dir, buildlog, vargv);
  if (r == -2) {
    snprintf(why, whyn, "%s (while creating the python environment)", s->cancel_reason);
    rc = -2;
    goto fail;
  }
  if (r != 0) {
    snprintf(why, whyn, "'%.3000s -m venv' could not create the python environment for pip_packages; see logs/build.log "
             "(Debian and Ubuntu need the python3-venv package)", interp);
    goto fail;
  }
  char py[4800];
  snprintf(py, sizeof py, "%s/bin/python", s->venv);
  char *probe[] = {(char *)interp, "-c",
                   "import sys, pip; sys.exit(0 if tuple(int(x) for x in pip.__version__.split('.')[:2]) >= (22, 3) else 1)",
                   NULL};
  int base_pip = run_logged(s, dir, "/dev/null", probe) == 0;
  if (!base_pip) {
    append_log(buildlog, "kusari: %s has no pip that can install into another Python: adding pip to the environment\n",
               interp);
    char *eargv[] = {py, "-m", "ensurepip", "--default-pip", NULL};
    r = run_logged(s, dir, buildlog, eargv);
    if (r == -2) {
      snprintf(why, whyn, "%s (while creating the python environment)", s->cancel_reason);
      rc = -2;
      goto fail;
    }
    if (r != 0) {
      snprintf(why, whyn, "the python environment for pip_packages has no pip (ensurepip failed); see logs/build.log "
               "(Debian and Ubuntu need the python3-venv package)");
      goto fail;
    }
  }
  int no = cJSON_GetArraySize(opts), np = cJSON_GetArraySize(pkgs), a = 0;
  char **pargv = calloc((size_t)(no + np + 10), sizeof *pargv);
  if (!pargv) { snprintf(why, whyn, "out of memory"); goto fail; }
  pargv[a++] = base_pip ? (char *)interp : py;
  pargv[a++] = "-m";
  pargv[a++] = "pip";
  if (base_pip) {
    pargv[a++] = "--python";
    pargv[a++] = py;
  }
  pargv[a++] = "install";
  pargv[a++] = "--disable-pip-version-check";
  pargv[a++] = "--no-input";
  const cJSON *it;
  cJSON_ArrayForEach(it, opts) pargv[a++] = it->valuestring;
  cJSON_ArrayForEach(it, pkgs) pargv[a++] = it->valuestring;
  append_log(buildlog, "kusari: installing pip_packages:");
  for (int i = 0; i < a; i++) append_log(buildlog, " %s", pargv[i]);
  append_log(buildlog, "\n");
  r = run_logged(s, dir, buildlog, pargv);
  free(pargv);
  if (r == -2) {
    snprintf(why, whyn, "%s (while installing pip_packages)", s->cancel_reason);
    rc = -2;
    goto fail;
  }
  if (r != 0) {
    if (r > 0 && WIFEXITED(r))
      snprintf(why, whyn, "installing the environment's pip_packages failed (pip exited with code %d); see logs/build.log",
               WEXITSTATUS(r));
    else
      snprintf(why, whyn, "installing the environment's pip_packages failed; see logs/build.log");
    goto fail;
  }
  if (kp_write_file(ready, ktext, strlen(ktext)) != 0) {
    snprintf(why, whyn, "cannot write %.3000s", ready);
    goto fail;
  }
  append_log(buildlog, "kusari: python environment ready\n");
  rc = 0;
  goto out;
fail:
  kp_rm_rf(s->venv);
out:
  if (rc != 0) s->venv[0] = '\0';
  flock(fd, LOCK_UN);
  close(fd);
  free(ktext);
  return rc;
}

/* Builds (or reuses) the environment; leaves the working tree in rd/wd.
 * Returns 0, -1 on failure or -2 when canceled, with 'why' set. */
static int prepare(sup *s, cJSON *env, char *why, size_t whyn) {
  char wd[4600], logs[4600], buildlog[4700];
  snprintf(wd, sizeof wd, "%s/wd", s->rd);
  snprintf(logs, sizeof logs, "%s/logs", s->rd);
  snprintf(buildlog, sizeof buildlog, "%s/build.log", logs);
  kp_rm_rf(wd);
  char missing[2048];
  if (env && check_packages(env, missing, sizeof missing) != 0) {
    snprintf(why, whyn, "the environment requires Debian package(s) that are not installed: %s "
             "(install them with: apt-get install %s)", missing, missing);
    append_log(buildlog, "kusari: %s\n", why);
    return -1;
  }
  const char *build = env ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "build")) : NULL;
  const char *cache = "none";
  if (!build || !*build) {
    if (kp_snapshot_extract(&s->ws, s->snapshot, wd) != 0) {
      snprintf(why, whyn, "cannot extract snapshot %s", s->snapshot);
      return -1;
    }
  } else {
    char keysrc[256], key[65], final_dir[4600], tmp_dir[4700];
    snprintf(keysrc, sizeof keysrc, "%s\n%s", s->snapshot, s->env_hash);
    kp_sha256_hex(keysrc, strlen(keysrc), key);
    snprintf(final_dir, sizeof final_dir, "%s/envs/%s", s->ws.root, key);
    struct stat st;
    if (stat(final_dir, &st) == 0) {
      cache = "hit";
      append_log(buildlog, "kusari: build cache hit (%.12s): reusing the result of '%s'\n", key, build);
    } else {
      cache = "miss";
      snprintf(tmp_dir, sizeof tmp_dir, "%s/envs/.build-%s-%d", s->ws.root, key, (int)getpid());
      kp_rm_rf(tmp_dir);
      if (kp_snapshot_extract(&s->ws, s->snapshot, tmp_dir) != 0) {
        snprintf(why, whyn, "cannot extract snapshot %s", s->snapshot);
        return -1;
      }
      append_log(buildlog, "kusari: build cache miss (%.12s): running '%s'\n", key, build);
      char *argv[] = {"/bin/sh", "-c", (char *)build, NULL};
      pid_t pid = spawn(tmp_dir, buildlog, argv, environ);
      int status = 0, canceled = 0;
      if (pid < 0) status = -1;
      while (pid > 0) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (!canceled && cancel_requested(s, NULL)) {
          canceled = 1;
          kill(-pid, SIGKILL);  /* a build has nothing to save: no grace period */
        }
        sleep_ms(100);
      }
      kill(-pid, SIGKILL);
      if (canceled) {
        kp_rm_rf(tmp_dir);
        snprintf(why, whyn, "%s (while building)", s->cancel_reason);
        return -2;
      }
      if (status != 0) {
        kp_rm_rf(tmp_dir);
        if (WIFEXITED(status))
          snprintf(why, whyn, "the build command '%s' failed with exit code %d; see logs/build.log", build, WEXITSTATUS(status));
        else
          snprintf(why, whyn, "the build command '%s' failed; see logs/build.log", build);
        return -1;
      }
      if (rename(tmp_dir, final_dir) != 0) kp_rm_rf(tmp_dir);  /* another run built it first */
      append_log(buildlog, "kusari: build finished\n");
    }
    if (kp_copy_tree(final_dir, wd) != 0) {
      snprintf(why, whyn, "cannot copy the built environment into the run's working directory");
      return -1;
    }
  }
  if (kp_store_run_set_build_cache(s->ws.store, s->id, cache) != 0) kp_store_report();
  char out[4700];
  snprintf(out, sizeof out, "%s/outputs", wd);
  kp_mkdirs(out, 0755);
  return env ? prepare_venv(s, env, buildlog, why, whyn) : 0;
}

/* Builds the entry's argv: an interpreter for .py/.sh, else the file itself. */
static char **entry_argv(sup *s, const char *wd, char *why, size_t whyn) {
  cJSON *args = cJSON_Parse(s->args_json);
  int na = cJSON_GetArraySize(args);
  char **argv = calloc((size_t)na + 4, sizeof *argv);
  int k = 0;
  char path[16384];
  snprintf(path, sizeof path, "%s/%s", wd, s->entry);
  size_t el = strlen(s->entry);
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(why, whyn, "the entry '%s' does not exist in the run's working directory "
             "(check --entry, or that the environment's build command creates it)", s->entry);
    cJSON_Delete(args);
    free(argv);
    return NULL;
  }
  if (el > 3 && !strcmp(s->entry + el - 3, ".py")) {
    /* the virtual environment's, else the one recorded at submit, else (a run
     * submitted before interpreters were recorded) python3 from the PATH */
    char py[4800];
    cJSON *env = s->env_json ? cJSON_Parse(s->env_json) : NULL;
    const char *interp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(env, "interpreter"));
    if (s->venv[0]) snprintf(py, sizeof py, "%s/bin/python", s->venv);
    else if (interp) snprintf(py, sizeof py, "%s", interp);
    else if (kp_which("python3", py, sizeof py) != 0) snprintf(py, sizeof py, "/usr/bin/python3");
    cJSON_Delete(env);
    sup_note(s, "python: %s", py);
    argv[k++] = strdup(py);
  }
  else if (el > 3 && !strcmp(s->entry + el - 3, ".sh")) argv[k++] = strdup("/bin/bash");
  else if (!(st.st_mode & S_IXUSR)) {
    snprintf(why, whyn, "the entry '%s' is not executable (chmod +x it, or use a .py or .sh script)", s->entry);
    cJSON_Delete(args);
    free(argv);
    return NULL;
  }
  argv[k++] = strdup(path);
  cJSON *a;
  cJSON_ArrayForEach(a, args) argv[k++] = strdup(cJSON_GetStringValue(a) ? cJSON_GetStringValue(a) : "");
  cJSON_Delete(args);
  return argv;
}

static char **entry_env(sup *s, const char *wd, cJSON *env) {
  size_t n = 0;
  while (environ[n]) n++;
  cJSON *vars = env ? cJSON_GetObjectItemCaseSensitive(env, "variables") : NULL;
  size_t nv = (size_t)cJSON_GetArraySize(vars);
  /* the run's params (run submit --param) as KUSARI_PARAM_NAME */
  kp_tag *params = NULL;
  size_t np = 0;
  if (kp_store_run_params(s->ws.store, s->id, &params, &np) != 0) kp_store_report();
  char **e = calloc(n + nv + np + 24, sizeof *e);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if ((strncmp(environ[i], "KUSARI_", 7) != 0 || strncmp(environ[i], "KUSARI_NUM_THREADS=", 19) == 0) &&
        strncmp(environ[i], "PATH=", 5) != 0 && strncmp(environ[i], "PYTHONPATH=", 11) != 0 &&
        !(s->venv[0] && (!strncmp(environ[i], "VIRTUAL_ENV=", 12) || !strncmp(environ[i], "PYTHONHOME=", 11))))
      e[k++] = strdup(environ[i]);
  char buf[16384], bindir[4096];
  snprintf(bindir, sizeof bindir, "%s", kp_self_exe);
  char *sl = strrchr(bindir, '/');
  if (sl) *sl = '\0';
  const char *path = getenv("PATH");
#define KP_SETENV(...) (snprintf(buf, sizeof buf, __VA_ARGS__), e[k++] = strdup(buf))
  if (s->venv[0]) {
    /* like an activated venv: its python3 and scripts first (after kusari) */
    KP_SETENV("PATH=%s:%s/bin:%s", bindir, s->venv, path ? path : "/usr/local/bin:/usr/bin:/bin");
    KP_SETENV("VIRTUAL_ENV=%s", s->venv);
  } else {
    KP_SETENV("PATH=%s:%s", bindir, path ? path : "/usr/local/bin:/usr/bin:/bin");
  }
  KP_SETENV("KUSARI_RUN_ID=%s", s->id);
  KP_SETENV("KUSARI_EXPERIMENT=%s", s->experiment);
  KP_SETENV("KUSARI_TRACKING_URI=%s", s->ws.root);
  KP_SETENV("KUSARI_WORKSPACE=%s", s->ws.root);
  KP_SETENV("KUSARI_OUTPUT_DIR=%s/outputs", wd);
  KP_SETENV("KUSARI_METRICS_CHANNEL=%s/channel", s->rd);
  KP_SETENV("KUSARI_UPLOAD_DIR=%s/uploads", s->rd);
  if (!getenv("PYTHONUNBUFFERED")) KP_SETENV("PYTHONUNBUFFERED=1");
  KP_SETENV("PYTHONPATH=%s/../share/kusari/python%s%s", bindir, getenv("PYTHONPATH") ? ":" : "", getenv("PYTHONPATH") ? getenv("PYTHONPATH") : ""); /* the kusari package (docs/PYTHON.md) */
  /* Debian's OpenBLAS falls back to generic kernels on CPUs newer than it;
   * give the entry the kernel set that fits, unless someone chose one (see
   * docs/ARCHITECTURE.md, "OpenBLAS on CPUs newer than it"). */
  const char *coretype = ks_blas_suggested_coretype();
  if (coretype && !getenv("OPENBLAS_CORETYPE") &&
      !(vars && cJSON_GetObjectItemCaseSensitive(vars, "OPENBLAS_CORETYPE")))
    KP_SETENV("OPENBLAS_CORETYPE=%s", coretype);
  /* A local target runs up to max_nodes runs at once on this machine's
   * processors: each run gets its share as its thread count, unless the
   * submitter or the env file chose one (oversubscribed cores make every
   * thread pool wait on descheduled threads). */
  if (s->max_nodes > 0) {
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    /* a distributed run's ranks share its nodes' part */
    long share = procs > 0 ? procs / ((long)s->max_nodes * s->ppn) : 1;
    if (share < 1) share = 1;
    static const char *const thread_vars[] = {"KUSARI_NUM_THREADS", "OMP_NUM_THREADS",
                                              "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof thread_vars / sizeof thread_vars[0]; i++)
      if (!getenv(thread_vars[i]) && !(vars && cJSON_GetObjectItemCaseSensitive(vars, thread_vars[i])))
        KP_SETENV("%s=%ld", thread_vars[i], share);
  }
  for (size_t i = 0; i < np; i++)  /* names that can be variable names (a sweep's may not) */
    if (params[i].key[0] && strspn(params[i].key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                                strlen(params[i].key))
      KP_SETENV("KUSARI_PARAM_%s=%s", params[i].key, params[i].value);
  kp_tags_free(params, np);
  cJSON *v;
  cJSON_ArrayForEach(v, vars)
    if (cJSON_IsString(v) && v->string) KP_SETENV("%s=%s", v->string, v->valuestring);
#undef KP_SETENV
  return e;
}

static int load_run(sup *s) {
  kp_run r;
  if (kp_store_run_get(s->ws.store, s->id, &r) != 0) return kp_store_report();
  int rc = -1;
  if (r.status == KP_RUN_QUEUED) {
    snprintf(s->experiment, sizeof s->experiment, "%s", r.experiment);
    snprintf(s->compute, sizeof s->compute, "%s", r.compute);
    snprintf(s->entry, sizeof s->entry, "%s", r.entry);
    snprintf(s->snapshot, sizeof s->snapshot, "%s", r.snapshot);
    s->args_json = strdup(r.args_json);
    s->env_json = r.env_json ? strdup(r.env_json) : NULL;
    snprintf(s->env_hash, sizeof s->env_hash, "%s", r.env_hash ? r.env_hash : "");
    rc = 0;
  }
  kp_run_free(&r);
  /* the launch shape, recorded as tags at submit */
  s->nodes = s->ppn = 1;
  kp_tag *t;
  size_t nt;
  if (rc == 0 && kp_store_tag_list(s->ws.store, s->id, &t, &nt) == 0) {
    for (size_t i = 0; i < nt; i++) {
      if (!strcmp(t[i].key, KP_TAG_NODES)) s->nodes = atoi(t[i].value);
      else if (!strcmp(t[i].key, KP_TAG_PPN)) s->ppn = atoi(t[i].value);
      else if (!strcmp(t[i].key, KP_TAG_LAUNCHER)) snprintf(s->launcher, sizeof s->launcher, "%s", t[i].value);
    }
    kp_tags_free(t, nt);
    if (s->nodes < 1) s->nodes = 1;
    if (s->ppn < 1) s->ppn = 1;
  }
  return rc;
}


/* One line in runs/<id>/supervisor.log (this process's stderr). */
static void sup_note(const sup *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sup_note(const sup *s, const char *fmt, ...) {
  char t[64];
  kp_fmt_time(kp_now(), t, sizeof t);
  fprintf(stderr, "%s run %s: ", t, s->id);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* The store may be a database server that is away for a while (restarted,
 * a network cut): the final writes are retried while it cannot be reached,
 * for up to this long; if it stays away the channel is kept, so that the
 * reconciliation of the run ingests it later. */
#define KP_FINISH_RETRY_S 300.0

static int finish(sup *s, kp_run_status status, int exit_code, int sig, const char *error) {
  sup_note(s, "Finalizing, then %s%s%s", kp_run_status_name(status), error ? ": " : "", error ? error : "");
  double until = kp_now() + KP_FINISH_RETRY_S;
  int ok = 0;
  for (int attempt = 0;; attempt++) {
    ok = set_status(&s->ws, s->id, KP_RUN_FINALIZING, 0, INT32_MIN, 0, NULL) == 0 && kp_ingest(&s->ws, s->id, 1) == 0;
    if (ok || !kp_store_unreachable() || kp_now() >= until) break;
    if (attempt == 0) sup_note(s, "the store cannot be reached; retrying for up to %.0f s", KP_FINISH_RETRY_S);
    sleep_ms(1000);
  }
  store_run_files(&s->ws, s->id);
  while (set_status(&s->ws, s->id, status, 1, exit_code, sig, error) != 0 && kp_store_unreachable() && kp_now() < until)
    sleep_ms(1000);
  if (ok) {
    cleanup_run_dir(&s->ws, s->id);
  } else {  /* the working tree goes; the channel stays for whoever ingests it later */
    char rd[4400], p[4600];
    kp_run_dir(&s->ws, s->id, rd, sizeof rd);
    snprintf(p, sizeof p, "%s/wd", rd);
    kp_rm_rf(p);
  }
  return 0;
}

static void free_strv(char **v) {
  for (char **p = v; p && *p; p++) free(*p);
  free(v);
}

/* ---- files the entry wrote where nothing keeps them -------------------------- */
/* The working tree's files (not outputs/ and logs/, which are kept) before the
 * entry runs, so that afterwards the new and changed ones can be named: the
 * run discards them with its working directory. */
typedef struct wd_file {
  char *path;           /* relative to wd */
  off_t size;
  struct timespec mtime;
} wd_file;
typedef struct wd_list {
  wd_file *v;
  size_t n, cap;
  int truncated;        /* more than KP_WD_SCAN_MAX entries: the rest not looked at */
} wd_list;
#define KP_WD_SCAN_MAX 200000

static void wd_scan(const char *root, const char *rel, wd_list *l) {
  char dir[8192];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (!*rel && (!strcmp(e->d_name, "outputs") || !strcmp(e->d_name, "logs"))) continue;
    if (l->n >= KP_WD_SCAN_MAX) { l->truncated = 1; break; }
    char r[8192], full[16384];
    snprintf(r, sizeof r, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(full, sizeof full, "%s/%s", root, r);
    struct stat st;
    if (lstat(full, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      wd_scan(root, r, l);
      continue;
    }
    if (l->n == l->cap) {
      size_t nc = l->cap ? 2 * l->cap : 256;
      void *np = realloc(l->v, nc * sizeof *l->v);
      if (!np) { l->truncated = 1; break; }
      l->v = np;
      l->cap = nc;
    }
    wd_file *f = &l->v[l->n];
    if (!(f->path = strdup(r))) { l->truncated = 1; break; }
    f->size = st.st_size;
    f->mtime = st.st_mtim;
    l->n++;
  }
  closedir(d);
}

static int cmp_wd_file(const void *a, const void *b) {
  return strcmp(((const wd_file *)a)->path, ((const wd_file *)b)->path);
}

static void wd_list_free(wd_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* Says in the run's log which files the entry created or changed outside
 * outputs/ and logs/ (a few by name, the count of the rest). */
static void report_discarded(const sup *s, const char *wd, wd_list *before, const char *stdlog) {
  wd_list after = {0};
  wd_scan(wd, "", &after);
  qsort(before->v, before->n, sizeof *before->v, cmp_wd_file);
  qsort(after.v, after.n, sizeof *after.v, cmp_wd_file);
  enum { NAMED = 5 };
  char names[NAMED * 300 + 64] = "";
  size_t count = 0;
  for (size_t i = 0; i < after.n; i++) {
    const wd_file *a = &after.v[i];
    const wd_file *b = bsearch(a, before->v, before->n, sizeof *before->v, cmp_wd_file);
    if (b && b->size == a->size && b->mtime.tv_sec == a->mtime.tv_sec && b->mtime.tv_nsec == a->mtime.tv_nsec) continue;
    if (count < NAMED) {
      size_t l = strlen(names);
      snprintf(names + l, sizeof names - l, "%s%.280s", count ? ", " : "", a->path);
    }
    count++;
  }
  if (count) {
    char more[64] = "";
    if (count > NAMED) snprintf(more, sizeof more, " and %zu more", count - NAMED);
    append_log(stdlog,
               "kusari: the entry wrote %zu file%s outside outputs/ and logs/, which the run does not keep: %s%s%s.\n"
               "kusari: write what you want to keep under $KUSARI_OUTPUT_DIR (./outputs) or ./logs.\n",
               count, count == 1 ? "" : "s", names, more, after.truncated ? " (the working tree was not read to its end)" : "");
    sup_note(s, "the entry wrote %zu file(s) outside outputs/ and logs/ (not kept): %s%s", count, names, more);
  }
  wd_list_free(&after);
}

/* Carries run sp->id through its lifecycle; returns the exit status. */
static int supervise_entry(sup *sp, const char *wd, const char *stdlog, char **eargv, char **eenv);
static int supervise(sup *sp, int ready) {
  if (kp_ws_open(&sp->ws) != 0) return 1;
  kp_run_dir(&sp->ws, sp->id, sp->rd, sizeof sp->rd);
  /* register this process, then tell `run submit` we are up */
  int ok = kp_store_run_attach_supervisor(sp->ws.store, sp->id, getpid(), kp_proc_start(getpid())) == 0;
  if (!ok && kp_store_last_error()->code == KP_STORE_EBACKEND) kp_store_report();
  if (!ok || load_run(sp) != 0) return kp_err("__supervise: run %s is not a queued run", sp->id), 1;
  signal(SIGPIPE, SIG_IGN); /* before the write: a submitter that died must not kill us */
  if (write(ready, "ok\n", 3) != 3) { /* submit gave up on us; go on anyway */ }
  close(ready);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sigaction(SIGUSR1, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);

  char logs[4600], stdlog[4700], why[4096] = "";
  snprintf(logs, sizeof logs, "%s/logs", sp->rd);
  snprintf(stdlog, sizeof stdlog, "%s/std_log.txt", logs);
  kp_mkdirs(logs, 0755);

  sup_note(sp, "supervisor %d up; Queued on compute target %s", (int)getpid(), sp->compute);
  int w = wait_for_node(sp);
  if (w == 0) {
    cancel_requested(sp, NULL);  /* loads the reason */
    char msg[700];
    snprintf(msg, sizeof msg, "%s (while queued)", sp->cancel_reason);
    set_status(&sp->ws, sp->id, KP_RUN_CANCELED, 1, INT32_MIN, 0, msg);
    return 0;
  }
  if (w < 0) {
    set_status(&sp->ws, sp->id, KP_RUN_FAILED, 1, INT32_MIN, 0, "the supervisor could not schedule the run");
    return 1;
  }
  /* Preparing */
  sup_note(sp, "took a node; Preparing");
  char chpath[4700];
  snprintf(chpath, sizeof chpath, "%s/channel", sp->rd);
  unlink(chpath);
  if (ks_run_channel_create(chpath) != KS_OK) {
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, ks_error_last());
    return 1;
  }
  cJSON *env = sp->env_json ? cJSON_Parse(sp->env_json) : NULL;
  int prc = prepare(sp, env, why, sizeof why);
  if (prc == -2) {
    finish(sp, KP_RUN_CANCELED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 0;
  }
  if (prc != 0) {
    append_log(stdlog, "kusari: run failed while preparing: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 1;
  }
  double grace = 10;
  if (cancel_requested(sp, &grace)) {
    snprintf(why, sizeof why, "%s (while preparing)", sp->cancel_reason);
    finish(sp, KP_RUN_CANCELED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 0;
  }
  char wd[4600];
  snprintf(wd, sizeof wd, "%s/wd", sp->rd);
  char **eargv = entry_argv(sp, wd, why, sizeof why);
  if (!eargv) {
    append_log(stdlog, "kusari: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    cJSON_Delete(env);
    return 1;
  }
  char **eenv = entry_env(sp, wd, env);
  cJSON_Delete(env);
  int rc = supervise_entry(sp, wd, stdlog, eargv, eenv);
  free_strv(eargv);
  free_strv(eenv);
  return rc;
}

/* Records each rank's end as the tag KP_TAG_RANKS ("0:exit 0, 1:exit 3"). */
static void record_ranks(sup *sp, const kp_rank_status *ranks, int n) {
  size_t cap = (size_t)n * 40 + 1;
  char *v = calloc(cap, 1);
  if (!v) return;
  for (int r = 0; r < n; r++) {
    char t[64];
    kp_rank_status_text(&ranks[r], t, sizeof t);
    size_t l = strlen(v);
    snprintf(v + l, cap - l, "%s%d:%s", r ? ", " : "", r, t);
  }
  if (kp_store_tag_set(sp->ws.store, sp->id, KP_TAG_RANKS, v) != 0) kp_store_report();
  free(v);
}

/* Runs the entry on the run's compute target and finishes the run; returns
 * the exit status. */
static int supervise_entry(sup *sp, const char *wd, const char *stdlog, char **eargv, char **eenv) {
  char why[4096] = "";
  double grace = 10;
  const kp_compute_ops *target = kp_compute_of(&sp->ws, sp->compute);
  int nranks = sp->nodes * sp->ppn, dist = sp->launcher[0] != '\0';
  /* Running */
  if (set_status(&sp->ws, sp->id, KP_RUN_RUNNING, 0, INT32_MIN, 0, NULL) != 0) return 1;
  wd_list before = {0};
  wd_scan(wd, "", &before);
  char logdir[4600];
  snprintf(logdir, sizeof logdir, "%s/logs", sp->rd);
  kp_launch l = {.run_id = sp->id, .run_dir = sp->rd, .wd = wd, .log = stdlog, .log_dir = logdir, .argv = eargv,
                 .envp = eenv, .nodes = sp->nodes, .processes_per_node = sp->ppn, .launcher = sp->launcher};
  kp_job *job = NULL;
  int64_t pid = 0;
  uint64_t pstart = 0;
  if (target->launch(&l, &job, &pid, &pstart, why, sizeof why) != 0) {
    wd_list_free(&before);
    append_log(stdlog, "kusari: %s\n", why);
    finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
    return 1;
  }
  if (dist)
    sup_note(sp, "Running entry %s on %s as %d ranks (%d node%s x %d) under %s, pid %lld", sp->entry, target->type,
             nranks, sp->nodes, sp->nodes == 1 ? "" : "s", sp->ppn, sp->launcher, (long long)pid);
  else
    sup_note(sp, "Running entry %s as pid %lld", sp->entry, (long long)pid);
  if (kp_store_run_attach_entry(sp->ws.store, sp->id, pid, pstart) != 0) kp_store_report();
  int canceled = 0, failed_rank = -1;
  kp_rank_status failed = {0};
  double kill_at = 0;
  kp_job_state st = {.failed_rank = -1};
  for (;;) {
    if (target->poll(job, &st) != 0 || st.ended) break;
    kp_ingest(&sp->ws, sp->id, 0);
    if (!canceled && failed_rank < 0 && st.failed_rank >= 0) {
      /* one rank failed: the run has failed; stop the others */
      failed_rank = st.failed_rank;
      failed = st.failed;
      char t[64];
      kp_rank_status_text(&failed, t, sizeof t);
      append_log(stdlog, "kusari: rank %d of %d failed (%s): stopping the other ranks (SIGTERM)\n", failed_rank,
                 nranks, t);
      sup_note(sp, "rank %d failed (%s); stopping the others", failed_rank, t);
      target->signal(job, SIGTERM);
      kill_at = kp_now() + 3;
    }
    if (!canceled && failed_rank < 0 && cancel_requested(sp, &grace)) {
      canceled = 1;
      target->signal(job, SIGTERM);
      kill_at = kp_now() + grace;
      append_log(stdlog, "kusari: cancel requested: sent SIGTERM to the run's process%s\n", dist ? "es" : " group");
    }
    if (kill_at > 0 && kp_now() >= kill_at) {
      target->signal(job, SIGKILL);
      kill_at = 0;
      append_log(stdlog, "kusari: grace period over: sent SIGKILL to the run's process%s\n", dist ? "es" : " group");
    }
    for (int i = 0; i < 12 && !g_wake; i++) {
      if (target->poll(job, &st) == 0 && (st.ended || (!canceled && failed_rank < 0 && st.failed_rank >= 0))) break;
      sleep_ms(20);
    }
    g_wake = 0;
  }
  int status = st.wait_status;
  if (failed_rank < 0 && st.failed_rank >= 0 && !canceled) {
    failed_rank = st.failed_rank;
    failed = st.failed;
  }
  kp_rank_status *ranks = dist ? calloc((size_t)nranks, sizeof *ranks) : NULL;
  target->collect(job, ranks, ranks ? nranks : 0);
  if (ranks) record_ranks(sp, ranks, nranks);
  report_discarded(sp, wd, &before, stdlog);
  wd_list_free(&before);
  if (canceled) {
    free(ranks);
    return finish(sp, KP_RUN_CANCELED, WIFEXITED(status) ? WEXITSTATUS(status) : INT32_MIN,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, NULL);  /* error = cancel_reason */
  }
  if (dist) {
    int rc = 0;
    if (failed_rank >= 0) {
      char t[64];
      kp_rank_status_text(&failed, t, sizeof t);
      snprintf(why, sizeof why, "rank %d of %d failed: %s%s; the other ranks were stopped; see logs/std_log_rank_%d.txt",
               failed_rank, nranks, failed.signal ? "killed by " : "", t, failed_rank);
      finish(sp, KP_RUN_FAILED, failed.signal ? INT32_MIN : failed.exit_code, failed.signal, why);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      /* every rank must have ended well: a rank without a status did not run */
      int missing = -1;
      for (int r = 0; r < nranks && missing < 0; r++)
        if (!ranks || !ranks[r].known) missing = r;
      if (missing < 0) {
        rc = finish(sp, KP_RUN_COMPLETED, 0, 0, NULL);
      } else {
        snprintf(why, sizeof why, "%.2000s exited with code 0 but rank %d of %d left no exit status; see logs/std_log.txt",
                 sp->launcher, missing, nranks);
        finish(sp, KP_RUN_FAILED, INT32_MIN, 0, why);
      }
    } else if (WIFEXITED(status)) {
      snprintf(why, sizeof why, "the MPI launcher %.2000s exited with code %d; see logs/std_log.txt", sp->launcher,
               WEXITSTATUS(status));
      finish(sp, KP_RUN_FAILED, WEXITSTATUS(status), 0, why);
    } else {
      int sg = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      snprintf(why, sizeof why, "the MPI launcher was killed by signal %d (%s)", sg, kp_signal_name(sg));
      finish(sp, KP_RUN_FAILED, INT32_MIN, sg, why);
    }
    free(ranks);
    return rc;
  }
  free(ranks);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return finish(sp, KP_RUN_COMPLETED, 0, 0, NULL);
  if (WIFEXITED(status)) {
    snprintf(why, sizeof why, "the entry exited with code %d; see logs/std_log.txt", WEXITSTATUS(status));
    finish(sp, KP_RUN_FAILED, WEXITSTATUS(status), 0, why);
  } else {
    int sg = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    snprintf(why, sizeof why, "the entry was killed by signal %d (%s)", sg, kp_signal_name(sg));
    finish(sp, KP_RUN_FAILED, INT32_MIN, sg, why);
  }
  return 0;
}

int kp_cmd_supervise(int argc, char **argv) {
  if (argc < 3) return kp_err("__supervise: internal command, needs RUN_ID READY_FD"), 2;
  sup s;
  memset(&s, 0, sizeof s);
  snprintf(s.id, sizeof s.id, "%s", argv[1]);
  int rc = supervise(&s, atoi(argv[2]));
  free(s.args_json);
  free(s.env_json);
  kp_ws_close(&s.ws);
  return rc;
}
