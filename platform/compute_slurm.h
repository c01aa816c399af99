/*
 * platform/compute_slurm.h — the Slurm operations of the `slurm` compute
 * target, through Slurm's own commands (sbatch, scontrol, squeue, sacct,
 * scancel, sinfo; found on $PATH, configured by Slurm's usual SLURM_CONF or
 * /etc/slurm/slurm.conf). The compute-target interface (prepare, launch,
 * poll, cancel, collect, describe) calls these; so does the hidden
 * `kusari compute slurm-probe` that the tests use.
 *
 * Nothing here prints: each operation returns 0 or -1 and, on failure, fills
 * a kp_slurm_err (a code, the message and a hint) for the caller to print.
 */
#ifndef KUSARI_PLATFORM_COMPUTE_SLURM_H
#define KUSARI_PLATFORM_COMPUTE_SLURM_H

#include <stddef.h>

struct cJSON;

typedef enum kp_slurm_code {
  KP_SLURM_OK = 0,
  KP_SLURM_ENOTINSTALLED, /* a Slurm command is not on $PATH */
  KP_SLURM_ENOCONFIG,     /* installed, but no slurm.conf to be found */
  KP_SLURM_EDOWN,         /* the controller (slurmctld) does not answer */
  KP_SLURM_ENOPARTITION,  /* the partition does not exist */
  KP_SLURM_EINVAL,        /* bad settings (time limit, a value Slurm cannot take) */
  KP_SLURM_ECMD,          /* a command failed otherwise (its stderr in msg) */
  KP_SLURM_EIO,           /* a file could not be read or written */
} kp_slurm_code;

typedef struct kp_slurm_err {
  kp_slurm_code code;
  char msg[1024];
  char hint[512];
} kp_slurm_err;

/* The settings of a slurm compute target (kept in the workspace as
 * computes/NAME.json, 0600, until the store holds them). Empty strings and 0
 * mean "not set: Slurm's default". */
typedef struct kp_slurm_target {
  char partition[128];
  int max_nodes;       /* nodes this target's runs may use at once (>= 1) */
  int min_nodes;       /* documented as Slurm power saving's concern; 0..max */
  int gpus_per_node;
  char time_limit[64]; /* Slurm's time format: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]], UNLIMITED */
  char account[128];
  char qos[128];
} kp_slurm_target;

/* 0 when 't' is a time limit sbatch accepts (see kp_slurm_target). */
int kp_slurm_time_ok(const char *t);
/* 0 when 's' can go on an #SBATCH line: non-empty, at most 'max' bytes, no
 * control characters, no double quote. */
int kp_slurm_value_ok(const char *s, size_t max);

/* The settings file of slurm target 'name' in workspace 'ws_root':
 * ws_root/computes/NAME.json. */
void kp_slurm_settings_path(const char *ws_root, const char *name, char *out, size_t n);
/* Writes 't' as JSON to 'path' (mode 0600, replacing it atomically). */
int kp_slurm_target_save(const char *path, const kp_slurm_target *t, kp_slurm_err *e);
/* Reads what kp_slurm_target_save wrote. */
int kp_slurm_target_load(const char *path, kp_slurm_target *t, kp_slurm_err *e);

/* Checks, in this order and each with its own code: the Slurm commands are
 * installed, a configuration is found, the controller answers (scontrol
 * ping), and partition 'partition' exists (NULL or "": Slurm's default
 * partition, whose name is then put in 'resolved', if not NULL). */
int kp_slurm_check(const char *partition, char *resolved, size_t n, kp_slurm_err *e);

/* Slurm's size of partition 'partition' (scontrol show partition): its
 * nodes and their CPUs. */
int kp_slurm_partition_size(const char *partition, int *nodes, int *cpus, kp_slurm_err *e);

/* One job to submit. Strings are borrowed. */
typedef struct kp_slurm_job_spec {
  const char *name;                /* --job-name (e.g. kusari-RUNID) */
  const char *comment;             /* --comment: kp_slurm_ws_comment() of the workspace */
  const char *workdir;             /* --chdir, absolute; must be visible on the nodes */
  const char *stdout_path;         /* --output (absolute) */
  const char *stderr_path;         /* --error (absolute; NULL: with stdout) */
  const char *const *env;          /* "NAME=VALUE", NULL-terminated (or NULL) */
  const char *const *argv;         /* the command, NULL-terminated */
  const char *const *prepare_argv; /* run first in the batch shell (the run's preparation on the node), NULL:
                                      none; its failure ends the job with its exit code; then the script enters
                                      the working directory again (preparation may have replaced it) */
  int nodes;                       /* --nodes (>= 1) */
  int ntasks_per_node;             /* --ntasks-per-node (>= 1); nodes*tasks > 1: launched with srun */
  const kp_slurm_target *target;   /* partition, time limit, account, qos, GPUs */
  const char *const *submit_env;   /* the environment sbatch runs with, which it passes on to the job
                                      (Slurm's --export=ALL); NULL: this process's */
} kp_slurm_job_spec;

/* The batch script for 's' (malloc'ed text): #SBATCH options, a check that
 * the working directory is visible on the node (exit 97 with a message
 * otherwise), the environment as exports, then the command (exec'ed, or
 * under srun for more than one task). NULL and 'e' filled on bad input. */
char *kp_slurm_script(const kp_slurm_job_spec *s, kp_slurm_err *e);
/* Writes the script to 'path' (0700) and submits it with sbatch --parsable;
 * the job id goes to 'jobid'. */
int kp_slurm_submit(const kp_slurm_job_spec *s, const char *path, char *jobid, size_t n, kp_slurm_err *e);

/* A job as Slurm sees it, and what it means for a kusari run. */
typedef struct kp_slurm_job {
  char id[32];         /* the job id polled */
  int found;           /* 0: neither the controller nor accounting knows the job */
  char state[64];      /* Slurm's job state: PENDING, RUNNING, COMPLETED, ... */
  char reason[256];    /* Slurm's reason (None, Resources, NonZeroExitCode, ...) */
  char nodes[256];     /* NodeList */
  int exit_code;       /* ExitCode=E:S of the batch script */
  int signal;
  int restarts;        /* times requeued (preemption, node failure) */
  char status[16];     /* kusari: Queued, Preparing, Running, Completed, Failed or Canceled */
  char error[1024];     /* for Failed and Canceled: Slurm's state and reason in words */
} kp_slurm_job;

/* Fills out->status and out->error from state, reason, exit code, signal
 * and 'canceled_by' (sacct's "CANCELLED by UID" text, or NULL). A job
 * that kusari itself canceled ('cancel_requested') ends Canceled whatever
 * Slurm says (a job that exits on SIGTERM is FAILED to Slurm). */
void kp_slurm_map(kp_slurm_job *j, const char *canceled_by, int cancel_requested);
/* Polls job 'jobid': scontrol show job; when the controller has forgotten
 * it, sacct (when accounting is enabled). */
int kp_slurm_poll(const char *jobid, int cancel_requested, kp_slurm_job *out, kp_slurm_err *e);
/* Cancels job 'jobid': a pending job at once; a running one gets SIGTERM
 * (scancel --signal=TERM --full), then SIGKILL after 'grace' seconds if it
 * has not ended. Returns when the job has ended (or after grace + 10 s). */
int kp_slurm_cancel(const char *jobid, double grace, kp_slurm_err *e);

/* Sends signal 'sig' to job 'jobid' without waiting: a pending job is
 * cancelled; a running one gets 'sig' in its batch shell and every step
 * (SIGKILL: then scancel). The parts of kp_slurm_cancel, for a caller that
 * keeps its own grace period (the slurm compute target). */
int kp_slurm_signal(const char *jobid, int sig, kp_slurm_err *e);

/* The --comment that marks this workspace's jobs ("kusari:" + its root). */
void kp_slurm_ws_comment(const char *ws_root, char *out, size_t n);
/* Slurm's view of a target: {"partition", "nodes": [{"name", "state",
 * "power", "cpus", "gres", "reason"}], "jobs": [{"id", "name", "state",
 * "reason", "nodes", "time"}]} with the jobs of 'comment' that are not
 * finished. NULL and 'e' filled on failure. */
struct cJSON *kp_slurm_describe(const char *partition, const char *comment, kp_slurm_err *e);

#endif
