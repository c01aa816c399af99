/*
 * platform/compute_slurm_target.c — the `slurm` compute target (compute.h)
 * over the Slurm operations of compute_slurm.c: a run is one Slurm job.
 *
 * The run's supervisor stays on the submitting machine; the job runs on a
 * node that sees the workspace at the same path (a shared filesystem: the
 * batch script checks it, exit 97). So the run's working directory, its
 * log (the job's --output), its metrics channel and its rank status files
 * are the same files as on the local target, and the supervisor ingests and
 * collects them as it does there.
 *
 *   launch    writes the batch script as runs/<id>/logs/slurm_job.sh (kept
 *             among the run's files) and submits it with sbatch, in the
 *             entry's environment (sbatch passes it to the job; the script
 *             also exports what kusari sets: the run protocol's variables,
 *             KUSARI_PARAM_*, the channel); a distributed run is one job of
 *             nodes x processes tasks, each `kusari __rank` under srun
 *   job_ref   the Slurm job id, recorded as the run's tag kusari.slurm_job
 *   poll      scontrol show job (at most every 0.5 s): PENDING -> queued,
 *             CONFIGURING -> preparing, RUNNING -> running; an end state
 *             with Slurm's state and reason as the run's error
 *   signal    scancel (a pending job is cancelled, a running one signalled)
 *   collect   makes sure the job has left the queue, reads the ranks' ends
 *   reap      scancel of the recorded job (reconciliation)
 *   describe  the partition and the target's limit
 */
#include "compute.h"
#include "compute_slurm.h"
#include "kp.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct kp_job {
  char id[32];            /* the Slurm job id */
  int nranks;             /* > 1 or a launcher: a distributed run (rank status files) */
  int dist;
  char status_dir[4600];  /* runs/<id>/ranks */
  double next_poll;       /* when scontrol is asked again */
  double failing_since;   /* first of a series of failed polls, 0 when the last one worked */
  kp_job_state last;      /* what the last poll said */
};

#define POLL_EVERY 0.5      /* seconds between two scontrol calls */
#define POLL_GIVE_UP 300.0  /* the controller does not answer for this long: the run fails */

/* 1 when 'kv' (NAME=VALUE) is set to exactly this in this process's environment */
static int inherited(const char *kv) {
  for (char **e = environ; *e; e++)
    if (!strcmp(*e, kv)) return 1;
  return 0;
}

/* a variable name the batch script can export */
static int exportable(const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || isdigit((unsigned char)kv[0])) return 0;
  for (const char *p = kv; p < eq; p++)
    if (!isalnum((unsigned char)*p) && *p != '_') return 0;
  return 1;
}

static int slurm_launch(const kp_launch *l, kp_job **job, int64_t *pid, uint64_t *start, char *why, size_t whyn) {
  *pid = 0;
  *start = 0;
  char spath[4300], comment[4200], name[300], script[4700];
  kp_slurm_target t;
  kp_slurm_err e;
  kp_slurm_settings_path(l->ws_root, l->compute, spath, sizeof spath);
  if (kp_slurm_target_load(spath, &t, &e) != 0) {
    snprintf(why, whyn, "%s", e.msg);
    return -1;
  }
  kp_slurm_ws_comment(l->ws_root, comment, sizeof comment);
  snprintf(name, sizeof name, "kusari-%s", l->run_id);
  snprintf(script, sizeof script, "%s/slurm_job.sh", l->log_dir);
  kp_job *j = calloc(1, sizeof *j);
  if (!j) { snprintf(why, whyn, "out of memory"); return -1; }
  int nodes = l->nodes > 0 ? l->nodes : 1, ppn = l->processes_per_node > 0 ? l->processes_per_node : 1;
  j->nranks = nodes * ppn;
  j->dist = (l->launcher && *l->launcher) || j->nranks > 1;
  size_t na = 0, ne = 0;
  while (l->argv[na]) na++;
  while (l->envp[ne]) ne++;
  const char **argv = calloc(na + 8, sizeof *argv), **env = calloc(ne + 1, sizeof *env);
  if (!argv || !env) {
    free(argv), free(env), free(j);
    snprintf(why, whyn, "out of memory");
    return -1;
  }
  size_t k = 0;
  if (j->dist) {  /* each task is a rank wrapper, as under mpirun on the local target */
    snprintf(j->status_dir, sizeof j->status_dir, "%s/ranks", l->run_dir);
    kp_rm_rf(j->status_dir);
    if (kp_mkdirs(j->status_dir, 0755) != 0) {
      snprintf(why, whyn, "cannot create %.3000s", j->status_dir);
      free(argv), free(env), free(j);
      return -1;
    }
    argv[k++] = kp_self_exe;
    argv[k++] = "__rank";
    argv[k++] = j->status_dir;
    argv[k++] = l->log_dir;
    argv[k++] = "--";
  }
  for (size_t i = 0; i < na; i++) argv[k++] = l->argv[i];
  /* the script exports what kusari sets; the rest of the entry's
   * environment reaches the job through sbatch's own */
  size_t m = 0;
  for (size_t i = 0; i < ne; i++)
    if (exportable(l->envp[i]) && !inherited(l->envp[i])) env[m++] = l->envp[i];
  kp_slurm_job_spec spec = {.name = name, .comment = comment, .workdir = l->wd, .stdout_path = l->log,
                            .env = env, .argv = argv, .prepare_argv = (const char *const *)l->prepare_argv,
                            .nodes = nodes, .ntasks_per_node = ppn, .target = &t,
                            .submit_env = (const char *const *)l->envp};
  int rc = kp_slurm_submit(&spec, script, j->id, sizeof j->id, &e);
  free(argv);
  free(env);
  if (rc != 0) {
    snprintf(why, whyn, "cannot submit the run to Slurm: %s%s%s", e.msg, *e.hint ? " (" : "", *e.hint ? e.hint : "");
    if (*e.hint) strncat(why, ")", whyn - strlen(why) - 1);
    free(j);
    return -1;
  }
  j->last.phase = KP_JOB_QUEUED;
  j->last.failed_rank = -1;
  *job = j;
  return 0;
}

static const char *slurm_job_ref(kp_job *j) { return j->id; }

/* the first rank that failed, from the ranks' status files */
static void first_failure(kp_job *j, kp_job_state *st) {
  st->failed_rank = -1;
  for (int r = 0; j->dist && r < j->nranks; r++) {
    kp_rank_status rs;
    if (kp_rank_read(j->status_dir, r, &rs) != 0 || (!rs.signal && rs.exit_code == 0)) continue;
    if (st->failed_rank < 0 || rs.time < st->failed.time) {
      st->failed_rank = r;
      st->failed = rs;
    }
  }
}

static int slurm_poll(kp_job *j, kp_job_state *st) {
  double now = kp_now();
  if (j->last.ended || now < j->next_poll) {
    *st = j->last;
    return 0;
  }
  j->next_poll = now + POLL_EVERY;
  kp_slurm_job sj;
  kp_slurm_err e;
  kp_job_state s = j->last;
  if (kp_slurm_poll(j->id, 0, &sj, &e) != 0) {
    /* the controller may be restarting: the job goes on meanwhile */
    if (!j->failing_since) j->failing_since = now;
    if (now - j->failing_since < POLL_GIVE_UP) {
      *st = j->last;
      return 0;
    }
    s.ended = 1;
    s.wait_status = 0;
    snprintf(s.reason, sizeof s.reason, "the Slurm controller did not answer for %.0f s (%.900s); Slurm job %s was "
             "left to itself", POLL_GIVE_UP, e.msg, j->id);
  } else {
    j->failing_since = 0;
    if (!strcmp(sj.status, "Queued")) s.phase = KP_JOB_QUEUED;
    else if (!strcmp(sj.status, "Preparing")) s.phase = KP_JOB_PREPARING;
    else if (!strcmp(sj.status, "Running")) s.phase = KP_JOB_RUNNING;
    else {
      s.ended = 1;
      s.wait_status = sj.signal > 0 ? (sj.signal & 0x7f) : ((sj.exit_code & 0xff) << 8);
      s.canceled = !strcmp(sj.status, "Canceled");
      if (!strcmp(sj.status, "Completed")) s.reason[0] = '\0';
      else snprintf(s.reason, sizeof s.reason, "%s", sj.error);
    }
  }
  first_failure(j, &s);
  j->last = s;
  *st = s;
  return 0;
}

static int slurm_signal(kp_job *j, int sig) {
  kp_slurm_err e;
  if (kp_slurm_signal(j->id, sig, &e) != 0) {
    fprintf(stderr, "kusari: cannot signal Slurm job %s: %s\n", j->id, e.msg);
    return -1;
  }
  j->next_poll = 0;  /* look again at once */
  return 0;
}

static void slurm_collect(kp_job *j, kp_rank_status *ranks, int nranks) {
  if (!j) return;
  kp_slurm_err e;
  /* an ended job has left the queue; one given up on is stopped here */
  if (!j->last.ended && kp_slurm_cancel(j->id, 0, &e) != 0)
    fprintf(stderr, "kusari: cannot cancel Slurm job %s: %s\n", j->id, e.msg);
  for (int r = 0; ranks && r < nranks; r++) {
    memset(&ranks[r], 0, sizeof ranks[r]);
    if (j->dist) {
      kp_rank_read(j->status_dir, r, &ranks[r]);
    } else {
      ranks[r].known = 1;
      if (WIFSIGNALED(j->last.wait_status)) ranks[r].signal = WTERMSIG(j->last.wait_status);
      else ranks[r].exit_code = WEXITSTATUS(j->last.wait_status);
    }
  }
  free(j);
}

static void slurm_reap(int64_t pid, uint64_t start) { (void)pid, (void)start; }  /* no local process */

static void slurm_reap_ref(const char *ref) {
  if (!ref || !*ref) return;
  kp_slurm_err e;
  if (kp_slurm_cancel(ref, 0, &e) != 0) fprintf(stderr, "kusari: cannot cancel Slurm job %s: %s\n", ref, e.msg);
}

static void slurm_describe(const char *ws_root, const char *name, int max_nodes, char *out, size_t n) {
  char spath[4300];
  kp_slurm_target t;
  kp_slurm_err e;
  kp_slurm_settings_path(ws_root, name, spath, sizeof spath);
  if (kp_slurm_target_load(spath, &t, &e) != 0) {
    snprintf(out, n, "a Slurm partition (its settings cannot be read: %s)", e.msg);
    return;
  }
  snprintf(out, n, "Slurm partition %s: each run one job (sbatch), up to %d node%s at once", t.partition, max_nodes,
           max_nodes == 1 ? "" : "s");
}

const kp_compute_ops kp_compute_slurm = {
  .type = "slurm",
  .summary = "a partition of a Slurm cluster; each run one Slurm job (docs/CLUSTER.md)",
  .queues = 1,
  .this_machine = 0,
  .prepares_on_node = 1,
  .ref_tag = KP_TAG_SLURM_JOB,
  .launch = slurm_launch,
  .job_ref = slurm_job_ref,
  .poll = slurm_poll,
  .signal = slurm_signal,
  .collect = slurm_collect,
  .reap = slurm_reap,
  .reap_ref = slurm_reap_ref,
  .describe = slurm_describe,
};
