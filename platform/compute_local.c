/*
 * platform/compute_local.c — the `local` compute target (compute.h): runs on
 * this machine, max_nodes at a time.
 *
 * A plain run's entry is one process in its own process group; cancel
 * signals the group. A distributed run (nodes x processes_per_node > 1)
 * starts the MPI launcher (mpirun) as the leader of a new session:
 *
 *   mpirun -np N*P kusari __rank RUN/ranks RUN/logs -- ENTRY ARGS...
 *
 * Open MPI puts every rank in a process group of its own, so signals go to
 * every process of the session (found in /proc), not to one group. Each
 * rank is `kusari __rank`, which runs the entry as its child, copies the
 * entry's stdout+stderr into logs/std_log_rank_<R>.txt and to its own
 * stdout (which the launcher merges into logs/std_log.txt), forwards
 * SIGTERM/SIGINT/SIGHUP to the entry, and writes the entry's end into
 * RUN/ranks/<R> ("exit CODE TIME" or "signal N TIME") before it exits with
 * the same code (128+N for a signal). poll() reads those files, so the
 * first rank that fails is known while the others still run, and the
 * supervisor stops them.
 */
#include "compute.h"
#include "kp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct kp_job {
  pid_t pid;          /* the entry, or the launcher */
  int session;        /* 1: pid leads a session holding every rank */
  int reaped;
  int wait_status;
  int nranks;
  double kill_all_at;  /* when a SIGKILL of the ranks' entries is followed by one of everything */
  struct timespec seen; /* status_dir's mtime when its files were last read */
  kp_job_state last;    /* what they said then */
  char status_dir[4600];
};

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* 1 when process 'p' is a `kusari __rank` wrapper (its argv[1]). */
static int is_rank_wrapper(long p) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%ld/cmdline", p);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t r = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (r <= 0) return 0;
  buf[r] = '\0';
  size_t l0 = strlen(buf);
  return (ssize_t)l0 + 1 < r && !strcmp(buf + l0 + 1, "__rank");
}

#define KS_SKIP_LEADER 1    /* not the session's leader (the launcher) */
#define KS_SKIP_WRAPPERS 2  /* not the `kusari __rank` processes */

/* Sends 'sig' to every live process whose session is 'sid' (but this one and
 * those 'skip' names); returns how many it signalled. */
static int kill_session(pid_t sid, int sig, int skip) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *end;
    long p = strtol(e->d_name, &end, 10);
    if (*end || p <= 0 || (pid_t)p == getpid()) continue;
    if ((skip & KS_SKIP_LEADER) && (pid_t)p == sid) continue;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", p);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = '\0';
    /* pid (comm) state ppid pgrp session ...: comm may hold anything, so from the last ')' */
    char *rp = strrchr(buf, ')');
    char state;
    int ppid, pgrp, session;
    if (!rp || sscanf(rp + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4) continue;
    if (session != (int)sid || state == 'Z') continue;
    if ((skip & KS_SKIP_WRAPPERS) && is_rank_wrapper(p)) continue;
    kill((pid_t)p, sig);
    n++;
  }
  closedir(d);
  return n;
}

/* Reads RANKDIR/<r>: 0 when it holds a status. */
int kp_rank_read(const char *dir, int r, kp_rank_status *out) {
  char p[4700], buf[128];
  snprintf(p, sizeof p, "%s/%d", dir, r);
  memset(out, 0, sizeof *out);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  int v;
  double t;
  if (sscanf(buf, "exit %d %lf", &v, &t) == 2) {
    out->exit_code = v;
  } else if (sscanf(buf, "signal %d %lf", &v, &t) == 2 && v > 0) {
    out->signal = v;
  } else {
    return -1;
  }
  out->time = t;
  out->known = 1;
  return 0;
}

static int local_launch(const kp_launch *l, kp_job **job, int64_t *pid_out, uint64_t *start_out, char *why,
                        size_t whyn) {
  int nranks = l->nodes * l->processes_per_node;
  if (nranks < 1) nranks = 1;
  kp_job *j = calloc(1, sizeof *j);
  if (!j) { snprintf(why, whyn, "out of memory"); return -1; }
  j->nranks = nranks;
  j->session = l->launcher && *l->launcher;
  char **argv = (char **)l->argv, **envp = (char **)l->envp;
  char **margv = NULL, **menv = NULL;
  if (j->session) {
    snprintf(j->status_dir, sizeof j->status_dir, "%s/ranks", l->run_dir);
    kp_rm_rf(j->status_dir);
    if (kp_mkdirs(j->status_dir, 0755) != 0) {
      snprintf(why, whyn, "cannot create %.3000s", j->status_dir);
      free(j);
      return -1;
    }
    size_t na = 0, ne = 0;
    while (argv[na]) na++;
    while (envp[ne]) ne++;
    margv = calloc(na + 16, sizeof *margv);
    menv = calloc(ne + 4, sizeof *menv);
    if (!margv || !menv) {
      free(margv), free(menv), free(j);
      snprintf(why, whyn, "out of memory");
      return -1;
    }
    static char np[32];
    snprintf(np, sizeof np, "%d", nranks);
    size_t k = 0;
    margv[k++] = (char *)l->launcher;
    margv[k++] = "-np";
    margv[k++] = np;
    margv[k++] = kp_self_exe;
    margv[k++] = "__rank";
    margv[k++] = j->status_dir;
    margv[k++] = (char *)l->log_dir;
    margv[k++] = "--";
    for (size_t i = 0; i < na; i++) margv[k++] = argv[i];
    margv[k] = NULL;
    /* more ranks than processors: Open MPI refuses unless told to oversubscribe */
    int has_ov = 0;
    for (size_t i = 0; i < ne; i++) {
      menv[i] = envp[i];
      if (!strncmp(envp[i], "OMPI_MCA_rmaps_base_oversubscribe=", 34)) has_ov = 1;
    }
    long procs = sysconf(_SC_NPROCESSORS_ONLN);
    if (!has_ov && procs > 0 && nranks > procs) menv[ne++] = "OMPI_MCA_rmaps_base_oversubscribe=1";
    menv[ne] = NULL;
    argv = margv;
    envp = menv;
  }
  pid_t pid = fork();
  if (pid == 0) {
    if (j->session) setsid();
    else setpgid(0, 0);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    int in = open("/dev/null", O_RDONLY);
    int out = open(l->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0 || chdir(l->wd) != 0) _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    if (in > 2) close(in);
    if (out > 2) close(out);
    execve(argv[0], argv, envp);
    fprintf(stderr, "kusari: cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  free(margv);
  free(menv);
  if (pid < 0) {
    snprintf(why, whyn, "cannot fork the entry process: %s", strerror(errno));
    free(j);
    return -1;
  }
  if (!j->session) setpgid(pid, pid);
  j->pid = pid;
  uint64_t pstart = 0;
  for (int i = 0; i < 50 && !pstart; i++) {
    pstart = kp_proc_start(pid);
    if (!pstart) sleep_ms(1);
  }
  *pid_out = pid;
  *start_out = pstart;
  *job = j;
  return 0;
}

static int local_poll(kp_job *j, kp_job_state *st) {
  memset(st, 0, sizeof *st);
  st->failed_rank = -1;
  if (!j->reaped) {
    pid_t r = waitpid(j->pid, &j->wait_status, WNOHANG);
    if (r == j->pid || (r < 0 && errno == ECHILD)) j->reaped = 1;
  }
  if (j->kill_all_at > 0 && kp_now() >= j->kill_all_at && !j->reaped) {
    kill(-j->pid, SIGKILL);
    kill_session(j->pid, SIGKILL, 0);
    j->kill_all_at = 0;
  }
  st->ended = j->reaped;
  st->wait_status = j->wait_status;
  if (!j->session) return 0;
  /* a rank's status file appears by rename, which changes the directory's
   * mtime: the files are read again only then (and while that mtime is
   * recent, as two renames within one clock tick leave the same one) */
  struct stat sd;
  int have = stat(j->status_dir, &sd) == 0;
  int changed = !have || j->seen.tv_sec == 0 || sd.st_mtim.tv_sec != j->seen.tv_sec ||
                sd.st_mtim.tv_nsec != j->seen.tv_nsec || kp_now() - (double)sd.st_mtim.tv_sec < 2.0;
  if (changed) {
    j->last.failed_rank = -1;
    for (int r = 0; r < j->nranks; r++) {
      kp_rank_status rs;
      if (kp_rank_read(j->status_dir, r, &rs) != 0) continue;
      if (!rs.signal && rs.exit_code == 0) continue;
      if (j->last.failed_rank < 0 || rs.time < j->last.failed.time) {
        j->last.failed_rank = r;
        j->last.failed = rs;
      }
    }
    if (have) j->seen = sd.st_mtim;
  }
  st->failed_rank = j->last.failed_rank;
  st->failed = j->last.failed;
  return 0;
}

/* A distributed run: the launcher would turn a SIGTERM into its own quick
 * SIGKILL of the ranks (no grace), so signals go to the ranks, not to it;
 * SIGKILL goes to the entries first, so that each `__rank` records how its
 * entry ended, and to everything 2 s later. */
static int local_signal(kp_job *j, int sig) {
  if (!j->session) {
    if (!j->reaped) kill(-j->pid, sig);
    return 0;
  }
  if (sig != SIGKILL) {
    kill_session(j->pid, sig, KS_SKIP_LEADER);
    return 0;
  }
  kill_session(j->pid, SIGKILL, KS_SKIP_LEADER | KS_SKIP_WRAPPERS);
  if (!j->kill_all_at) j->kill_all_at = kp_now() + 2;
  return 0;
}

static void local_collect(kp_job *j, kp_rank_status *ranks, int nranks) {
  if (!j) return;
  /* whatever the entry left behind in its group (or session) */
  kill(-j->pid, SIGKILL);
  if (j->session) {
    for (int i = 0; i < 100 && kill_session(j->pid, SIGKILL, 0) > 0; i++) sleep_ms(20);
  }
  if (!j->reaped) {
    while (waitpid(j->pid, &j->wait_status, 0) < 0 && errno == EINTR) {}
    j->reaped = 1;
  }
  for (int r = 0; ranks && r < nranks; r++) {
    if (!j->session) {
      memset(&ranks[r], 0, sizeof ranks[r]);
      ranks[r].known = 1;
      if (WIFSIGNALED(j->wait_status)) ranks[r].signal = WTERMSIG(j->wait_status);
      else ranks[r].exit_code = WIFEXITED(j->wait_status) ? WEXITSTATUS(j->wait_status) : 0;
    } else {
      kp_rank_read(j->status_dir, r, &ranks[r]);
    }
  }
  free(j);
}

static void local_reap(int64_t pid, uint64_t start) {
  pid_t p = (pid_t)pid;
  if (p <= 0) return;
  int alive = kp_proc_alive(p, start);
  if (alive) kill(-p, SIGKILL);
  /* the ranks of a distributed run are in the launcher's session; with the
   * launcher gone no other process can lead a session of that id */
  if (alive || kp_proc_start(p) == 0)
    for (int i = 0; i < 100 && kill_session(p, SIGKILL, 0) > 0; i++) sleep_ms(20);
  for (int k = 0; k < 100 && kp_proc_alive(p, start); k++) sleep_ms(20);
}

static void local_describe(const char *ws_root, const char *name, int max_nodes, char *out, size_t n) {
  (void)ws_root, (void)name;
  long procs = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(out, n, "this machine (%ld processors): up to %d node%s, each a run or a distributed run's share", procs,
           max_nodes, max_nodes == 1 ? "" : "s");
}

const kp_compute_ops kp_compute_local = {
  .type = "local",
  .summary = "this machine; --max-nodes runs (or nodes of distributed runs) at a time",
  .this_machine = 1,
  .launch = local_launch,
  .poll = local_poll,
  .signal = local_signal,
  .collect = local_collect,
  .reap = local_reap,
  .describe = local_describe,
};

/* ---- kusari __rank --------------------------------------------------------- */
static volatile sig_atomic_t g_child;
static void forward(int sig) {
  if (g_child > 0) kill((pid_t)g_child, sig);
}

/* This process's rank, as the launcher tells it. */
static int rank_from_env(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
  for (int i = 0; vars[i]; i++) {
    const char *v = getenv(vars[i]);
    char *end;
    if (!v || !*v) continue;
    long r = strtol(v, &end, 10);
    if (!*end && r >= 0 && r < 1000000) return (int)r;
  }
  return -1;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

int kp_cmd_rank(int argc, char **argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    kp_err("__rank: internal command, needs STATUS_DIR LOG_DIR -- PROGRAM [ARGS...]");
    return 2;
  }
  const char *sdir = argv[1], *ldir = argv[2];
  int rank = rank_from_env();
  if (rank < 0) {
    kp_err("__rank: no rank in the environment (OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK or SLURM_PROCID)");
    kp_hint("the MPI launcher must be Open MPI's or MPICH's mpirun/mpiexec, or srun");
    return 2;
  }
  char lp[4700];
  snprintf(lp, sizeof lp, "%s/std_log_rank_%d.txt", ldir, rank);
  int logfd = open(lp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) {
    kp_err("__rank: cannot open %s: %s", lp, strerror(errno));
    return 2;
  }
  int pfd[2];
  if (pipe(pfd) != 0) {
    kp_err("__rank: pipe: %s", strerror(errno));
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  pid_t parent = getpid();
  pid_t c = fork();
  if (c < 0) {
    kp_err("__rank: fork: %s", strerror(errno));
    return 2;
  }
  if (c == 0) {
    /* the entry dies with its rank process, whatever kills that */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    /* the run client keeps this rank's metrics apart (src/run/client.c) */
    char rk[16];
    snprintf(rk, sizeof rk, "%d", rank);
    setenv("KUSARI_RANK", rk, 1);
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    close(pfd[0]);
    close(pfd[1]);
    execv(argv[4], argv + 4);
    fprintf(stderr, "kusari: cannot execute %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  g_child = c;
  close(pfd[1]);
  /* copy the entry's output until it exits (a grandchild holding the pipe
   * open does not keep this rank alive past its entry) */
  int status = 0, exited = 0;
  char buf[65536];
  for (;;) {
    struct pollfd q = {.fd = pfd[0], .events = POLLIN};
    int pr = poll(&q, 1, exited ? 0 : 200);
    if (pr > 0) {
      ssize_t n = read(pfd[0], buf, sizeof buf);
      if (n > 0) {
        write_all(logfd, buf, (size_t)n);
        write_all(1, buf, (size_t)n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 && !exited) {  /* EOF: the entry closed its output */
        while (waitpid(c, &status, 0) < 0 && errno == EINTR) {}
        exited = 1;
      }
      break;
    }
    if (pr < 0 && errno == EINTR) continue;
    if (exited) break;
    if (waitpid(c, &status, WNOHANG) == c) exited = 1;  /* drain once more, then stop */
  }
  if (!exited) while (waitpid(c, &status, 0) < 0 && errno == EINTR) {}
  close(pfd[0]);
  close(logfd);
  char tmp[4700], fin[4700], line[128];
  snprintf(tmp, sizeof tmp, "%s/.%d.tmp", sdir, rank);
  snprintf(fin, sizeof fin, "%s/%d", sdir, rank);
  int code;
  if (WIFSIGNALED(status)) {
    snprintf(line, sizeof line, "signal %d %.6f\n", WTERMSIG(status), kp_now());
    code = 128 + WTERMSIG(status);
  } else {
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    snprintf(line, sizeof line, "exit %d %.6f\n", code, kp_now());
  }
  if (kp_write_file(tmp, line, strlen(line)) != 0 || rename(tmp, fin) != 0)
    fprintf(stderr, "kusari: rank %d: cannot record its status in %s: %s\n", rank, fin, strerror(errno));
  return code;
}
