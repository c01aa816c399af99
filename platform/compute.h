/*
 * platform/compute.h — compute targets behind one interface.
 *
 * A compute target is where a run's entry executes once its supervisor
 * (supervisor.c) has taken its nodes and prepared its working directory.
 * Each target type is one const table of operations in its own file; the
 * supervisor, reconciliation and `compute create` only go through it:
 *
 *   launch   start the entry (one process, or nodes x processes ranks under
 *            an MPI launcher) in the run's working directory, its output
 *            appended to the run's log
 *   poll     without blocking: still running, or ended with which status
 *            (and, for a distributed run, which rank failed first)
 *   signal   deliver a signal to everything the launch started (cancel:
 *            SIGTERM, then SIGKILL after the grace period)
 *   collect  after the end: make sure nothing is left running, report each
 *            rank's exit status, free the job
 *   reap     reconciliation: stop what a run whose supervisor died left
 *            running (the recorded entry pid and start time)
 *   describe one line for `compute show`
 *
 * Storage stays with the supervisor (ingestion, run files, the final
 * status): a target only starts, watches and stops processes or jobs.
 * `local` (this machine: compute_local.c) and `slurm` (each run a Slurm job:
 * compute_slurm_target.c) implement it; a new one is a new file plus one
 * line in kp_compute_types (compute.c).
 */
#ifndef KUSARI_PLATFORM_COMPUTE_H
#define KUSARI_PLATFORM_COMPUTE_H

#include <stddef.h>
#include <stdint.h>

/* What to launch. Strings are borrowed for the call. */
typedef struct kp_launch {
  const char *run_id;
  const char *run_dir;      /* runs/<id>: the target may keep its files here */
  const char *wd;           /* working directory of the entry */
  const char *log;          /* stdout+stderr appended here (logs/std_log.txt) */
  const char *log_dir;      /* where per-rank logs go (logs/) */
  char *const *argv;        /* the entry's argv (argv[0] an absolute path) */
  char *const *envp;        /* its environment */
  int nodes;                /* 1 for a plain run */
  int processes_per_node;   /* 1 for a plain run */
  const char *launcher;     /* a distributed run's MPI launcher (mpirun); NULL or "": a plain run */
  const char *ws_root;      /* the workspace (a target's settings, its jobs' marks) */
  const char *compute;      /* the compute target's name */
  /* targets with prepares_on_node: run first, where the entry runs (on the
   * first node of the job), `kusari __prepare RUN_DIR`, which extracts the
   * snapshot into wd and builds the environment there; a failure ends the job
   * before the entry starts. NULL: the supervisor prepared wd already. */
  char *const *prepare_argv;
} kp_launch;

/* A launched run, as the target keeps it. */
typedef struct kp_job kp_job;

/* One rank's end. */
typedef struct kp_rank_status {
  int known;      /* 0: the rank left no status (it never started, or its wrapper was killed) */
  int exit_code;  /* when !signal */
  int signal;     /* the signal that ended it, 0 when it exited */
  double time;    /* when it ended (seconds since the epoch) */
} kp_rank_status;

/* Where a launched job is (kp_job_state.phase): a target that queues jobs
 * (ops.queues) reports the scheduler's view, the supervisor follows it with
 * the run's status (Queued, Preparing, Running). */
typedef enum kp_job_phase {
  KP_JOB_RUNNING = 0,  /* started (local: always) */
  KP_JOB_QUEUED,       /* waiting in the scheduler's queue (Slurm: PENDING, requeued) */
  KP_JOB_PREPARING,    /* its nodes are being set up (Slurm: CONFIGURING, nodes powering up) */
} kp_job_phase;

typedef struct kp_job_state {
  int ended;         /* every process the launch started has ended */
  kp_job_phase phase; /* while not ended */
  int wait_status;   /* of the launched process (waitpid's), when ended */
  int failed_rank;   /* the first rank that failed (non-zero exit or a signal), -1 when none */
  kp_rank_status failed;  /* its status */
  /* when ended, from a target that knows more than a wait status (a
   * scheduler's end state and reason, e.g. "Slurm job 12 TIMEOUT: ..."):
   * the run's error text; "" when the wait status says it all (local) */
  char reason[1024];
  int canceled;      /* ended because someone canceled it outside kusari (scancel): Canceled */
} kp_job_state;

typedef struct kp_compute_ops {
  const char *type;      /* "local", "slurm", ... */
  const char *summary;   /* one line for `compute create --help` */
  int queues;            /* 1: launch may leave the job waiting (poll's phase says when it runs) */
  int this_machine;      /* 1: runs share this machine's processors (thread counts are divided) */
  int prepares_on_node;  /* 1: the run's environment is prepared inside the job (kp_launch.prepare_argv); the
                          * supervisor follows RUN_DIR/prepare.state (supervisor.c) */
  const char *ref_tag;   /* the run tag that records the job for reap (e.g. "kusari.slurm_job"), or NULL */
  /* Starts the run; *job is the target's handle. 'pid'/'start' receive
   * what identifies it for reap (the launched process, its start time; 0
   * when no local process does). Returns 0, or -1 with 'why' set. */
  int (*launch)(const kp_launch *l, kp_job **job, int64_t *pid, uint64_t *start, char *why, size_t whyn);
  /* The value to record as the run's tag ref_tag (NULL when none); valid
   * until collect. NULL for targets without a ref_tag. */
  const char *(*job_ref)(kp_job *job);
  /* Never blocks long. Returns 0 (state filled), -1 on error. */
  int (*poll)(kp_job *job, kp_job_state *st);
  /* Sends 'sig' to every process of the job. */
  int (*signal)(kp_job *job, int sig);
  /* After the end (or to give up on it): stops whatever is left with
   * SIGKILL, fills ranks[0..nranks) (nranks = nodes x processes) with each
   * rank's status when 'ranks' is not NULL, and frees the job. */
  void (*collect)(kp_job *job, kp_rank_status *ranks, int nranks);
  /* Stops what a dead supervisor's run left running (SIGKILL), given the
   * recorded pid and start time; waits briefly for it to go. */
  void (*reap)(int64_t pid, uint64_t start);
  /* The same for a job that no local process holds, given the run's
   * ref_tag value (NULL for targets without a ref_tag). */
  void (*reap_ref)(const char *ref);
  /* Writes a line describing target 'name' of workspace 'ws_root' (its
   * capacity) into 'out'. */
  void (*describe)(const char *ws_root, const char *name, int max_nodes, char *out, size_t n);
} kp_compute_ops;

/* The target types this kusari knows (NULL-terminated). */
extern const kp_compute_ops *const kp_compute_types[];
/* The ops of 'type', or NULL. */
const kp_compute_ops *kp_compute_find(const char *type);
/* "local, slurm" — the known types, for messages. */
void kp_compute_type_names(char *out, size_t n);

/* The ops of the type of compute target 'compute' of workspace 'ws' (local
 * when it cannot be found) (supervisor.c). */
struct kp_ws;
const kp_compute_ops *kp_compute_of(struct kp_ws *ws, const char *compute);

/* Tags that record a distributed run's launch shape at submit and its ranks'
 * ends (set by kusari, not by hand; see docs/PLATFORM.md). */
#define KP_TAG_NODES "kusari.nodes"
#define KP_TAG_PPN "kusari.processes_per_node"
#define KP_TAG_LAUNCHER "kusari.launcher"
#define KP_TAG_RANKS "kusari.rank_status"

/* The local target (compute_local.c). */
extern const kp_compute_ops kp_compute_local;
/* The slurm target (compute_slurm_target.c): runs as Slurm jobs. */
extern const kp_compute_ops kp_compute_slurm;
#define KP_TAG_SLURM_JOB "kusari.slurm_job"

/* Reads rank r's status file DIR/<r> written by `kusari __rank`: 0 when it
 * holds one (compute_local.c). */
int kp_rank_read(const char *dir, int r, kp_rank_status *out);

/* `kusari __rank STATUS_DIR LOG_DIR -- PROGRAM ARGS...`: what an MPI launcher
 * starts for each rank of a distributed run (compute_local.c). */
int kp_cmd_rank(int argc, char **argv);

/* Formats a rank's status: "exit 0", "exit 3", "signal 9 (SIGKILL)", "unknown". */
void kp_rank_status_text(const kp_rank_status *r, char *out, size_t n);
/* Name of a signal ("SIGKILL"; "a signal" for others). */
const char *kp_signal_name(int sig);

#endif
