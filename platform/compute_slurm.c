/*
 * platform/compute_slurm.c — the Slurm side of the `slurm` compute target
 * (compute_slurm.h): Slurm's own commands, run without a shell, their output
 * parsed. scontrol's one-line form (-o) and squeue/sinfo format strings are
 * used rather than --json: they exist in every Slurm kusari may meet, and
 * 22.05's squeue --json ignores --jobs (it dumps every job).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "compute_slurm.h"

#include "kp.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- errors --------------------------------------------------------------- */
static int fail(kp_slurm_err *e, kp_slurm_code code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(kp_slurm_err *e, kp_slurm_code code, const char *hint, const char *fmt, ...) {
  if (!e) return -1;
  e->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  snprintf(e->hint, sizeof e->hint, "%s", hint ? hint : "");
  return -1;
}

/* ---- a growing string ------------------------------------------------------- */
typedef struct sb {
  char *p;
  size_t len, cap;
  int oom;
} sb;

static void sb_add(sb *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) { b->oom = 1; return; }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}
static void sb_puts(sb *b, const char *s) { sb_add(b, s, strlen(s)); }
static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) { sb_add(b, tmp, (size_t)n); return; }
  char *big = malloc((size_t)n + 1);
  if (!big) { b->oom = 1; return; }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb_add(b, big, (size_t)n);
  free(big);
}
/* 's' single-quoted for bash */
static void sb_quote(sb *b, const char *s) {
  sb_puts(b, "'");
  for (; *s; s++) {
    if (*s == '\'') sb_puts(b, "'\\''");
    else sb_add(b, s, 1);
  }
  sb_puts(b, "'");
}

/* ---- running a Slurm command ------------------------------------------------- */
typedef struct res {
  int status;  /* exit status; 128+N when killed by signal N */
  char *out, *err;
} res;

static void res_free(res *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

/* The first line of r->err (or out), without "prog: error: " noise. */
static const char *first_line(const res *r, char *buf, size_t n) {
  const char *s = r->err && *r->err ? r->err : (r->out ? r->out : "");
  while (*s == '\n' || *s == ' ') s++;
  size_t k = strcspn(s, "\n");
  if (k >= n) k = n - 1;
  memcpy(buf, s, k);
  buf[k] = '\0';
  return buf;
}

static const char *const slurm_cmds[] = {"sbatch", "scontrol", "squeue", "scancel", "sinfo", NULL};

/* Runs argv (argv[0] found on $PATH) with stdin from /dev/null and
 * environment 'envp' (NULL: this process's), collecting stdout and stderr;
 * kills it after 'timeout' seconds. */
static int run_cmd_env(const char *const argv[], const char *const *envp, double timeout, res *r, kp_slurm_err *e) {
  memset(r, 0, sizeof *r);
  char path[4096];
  if (kp_which(argv[0], path, sizeof path) != 0)
    return fail(e, KP_SLURM_ENOTINSTALLED,
                "install Slurm's client commands (Debian: apt-get install slurm-client) or put their directory on PATH",
                "Slurm is not installed here: '%s' is not on PATH", argv[0]);
  int po[2], pe[2];
  if (pipe2(po, O_CLOEXEC) != 0) return fail(e, KP_SLURM_ECMD, NULL, "cannot run %s: pipe: %s", argv[0], strerror(errno));
  if (pipe2(pe, O_CLOEXEC) != 0) {
    close(po[0]);
    close(po[1]);
    return fail(e, KP_SLURM_ECMD, NULL, "cannot run %s: pipe: %s", argv[0], strerror(errno));
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(po[0]); close(po[1]); close(pe[0]); close(pe[1]);
    return fail(e, KP_SLURM_ECMD, NULL, "cannot run %s: fork: %s", argv[0], strerror(errno));
  }
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    dup2(po[1], 1);
    dup2(pe[1], 2);
    signal(SIGPIPE, SIG_DFL);
    if (envp) execve(path, (char *const *)argv, (char *const *)envp);
    else execv(path, (char *const *)argv);
    _exit(127);
  }
  close(po[1]);
  close(pe[1]);
  sb out = {0}, err = {0};
  struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
  int open_fds = 2, killed = 0;
  double deadline = kp_now() + timeout;
  while (open_fds > 0) {
    double left = deadline - kp_now();
    if (left <= 0) {
      kill(pid, SIGKILL);
      killed = 1;
      break;
    }
    int k = poll(fds, 2, (int)(left * 1000) + 1);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        sb_add(i == 0 ? &out : &err, buf, (size_t)got);
      } else if (got == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
      }
    }
  }
  for (int i = 0; i < 2; i++)
    if (fds[i].fd >= 0) close(fds[i].fd);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  r->out = out.p ? out.p : strdup("");
  r->err = err.p ? err.p : strdup("");
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  if (!r->out || !r->err || out.oom || err.oom) {
    res_free(r);
    return fail(e, KP_SLURM_ECMD, NULL, "out of memory reading the output of %s", argv[0]);
  }
  if (killed) {
    res_free(r);
    return fail(e, KP_SLURM_EDOWN, "check the Slurm controller (scontrol ping) and the network to it",
                "%s did not answer within %.0f s", argv[0], timeout);
  }
  return 0;
}

static int run_cmd(const char *const argv[], double timeout, res *r, kp_slurm_err *e) {
  return run_cmd_env(argv, NULL, timeout, r, e);
}

/* A command's failure: the controller is down, no config, or other. */
static int cmd_failed(const char *const argv[], const res *r, kp_slurm_err *e) {
  char line[512];
  first_line(r, line, sizeof line);
  if (strstr(r->err, "Could not establish a configuration source") || strstr(r->err, "Unable to process configuration"))
    return fail(e, KP_SLURM_ENOCONFIG,
                "set SLURM_CONF to the cluster's slurm.conf, or install it as /etc/slurm/slurm.conf",
                "Slurm is installed but not configured: %s", line);
  if (strstr(r->err, "Unable to contact slurm controller") || strstr(r->err, "Socket timed out"))
    return fail(e, KP_SLURM_EDOWN, "start slurmctld (or ask the cluster's administrators); 'scontrol ping' tells when it answers",
                "the Slurm controller does not answer: %s", line);
  return fail(e, KP_SLURM_ECMD, NULL, "%s failed (exit %d): %s", argv[0], r->status, line);
}

/* Value of KEY in scontrol's one-line output ("... KEY=VALUE ..."): the
 * text up to the next space. Returns 0 when found. */
static int field(const char *line, const char *key, char *out, size_t n) {
  size_t kl = strlen(key);
  for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
    if ((p != line && p[-1] != ' ' && p[-1] != '\n') || p[kl] != '=') continue;
    const char *v = p + kl + 1;
    size_t k = strcspn(v, " \n");
    if (k >= n) k = n - 1;
    memcpy(out, v, k);
    out[k] = '\0';
    return 0;
  }
  if (n) out[0] = '\0';
  return -1;
}

/* ---- settings ------------------------------------------------------------- */
int kp_slurm_value_ok(const char *s, size_t max) {
  if (!s || !*s || strlen(s) > max) return -1;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7f || *p == '"') return -1;
  return 0;
}

static int digits(const char **p, int max) {
  int n = 0;
  while (isdigit((unsigned char)**p) && n <= max) { (*p)++; n++; }
  return n >= 1 && n <= max;
}

int kp_slurm_time_ok(const char *t) {
  if (!t || !*t) return -1;
  if (!strcasecmp(t, "UNLIMITED") || !strcasecmp(t, "INFINITE")) return 0;
  const char *p = t;
  if (strchr(t, '-')) {  /* D-HH, D-HH:MM, D-HH:MM:SS */
    if (!digits(&p, 5) || *p++ != '-' || !digits(&p, 2)) return -1;
    for (int i = 0; i < 2 && *p == ':'; i++) {
      p++;
      if (!digits(&p, 2)) return -1;
    }
    return *p ? -1 : 0;
  }
  /* MM, MM:SS, HH:MM:SS */
  if (!digits(&p, 7)) return -1;
  for (int i = 0; i < 2 && *p == ':'; i++) {
    p++;
    if (!digits(&p, 2)) return -1;
  }
  if (*p) return -1;
  return strspn(t, "0:") == strlen(t) ? -1 : 0;  /* 0 would mean "no time at all" */
}

static int write_private(const char *path, const char *data, size_t len, mode_t mode, kp_slurm_err *e) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return fail(e, KP_SLURM_EIO, NULL, "cannot write %s: %s", tmp, strerror(errno));
  int ok = fchmod(fd, mode) == 0 && write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (ok && rename(tmp, path) == 0) return 0;
  if (ok) saved = errno;
  unlink(tmp);
  return fail(e, KP_SLURM_EIO, NULL, "cannot write %s: %s", path, strerror(saved));
}

void kp_slurm_settings_path(const char *ws_root, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/computes/%s.json", ws_root, name);
}

int kp_slurm_target_save(const char *path, const kp_slurm_target *t, kp_slurm_err *e) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "slurm");
  cJSON_AddStringToObject(o, "partition", t->partition);
  cJSON_AddNumberToObject(o, "max_nodes", t->max_nodes);
  cJSON_AddNumberToObject(o, "min_nodes", t->min_nodes);
  cJSON_AddNumberToObject(o, "gpus_per_node", t->gpus_per_node);
  cJSON_AddStringToObject(o, "time_limit", t->time_limit);
  cJSON_AddStringToObject(o, "account", t->account);
  cJSON_AddStringToObject(o, "qos", t->qos);
  char *s = cJSON_Print(o);
  cJSON_Delete(o);
  if (!s) return fail(e, KP_SLURM_EIO, NULL, "out of memory writing %s", path);
  size_t n = strlen(s);
  char *line = realloc(s, n + 2);
  if (!line) { free(s); return fail(e, KP_SLURM_EIO, NULL, "out of memory writing %s", path); }
  line[n] = '\n';
  line[n + 1] = '\0';
  int rc = write_private(path, line, n + 1, 0600, e);
  free(line);
  return rc;
}

static int get_str(const cJSON *o, const char *k, char *out, size_t n) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= n) return -1;
  snprintf(out, n, "%s", v->valuestring);
  return 0;
}
static int get_int(const cJSON *o, const char *k, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(v)) return -1;
  *out = v->valueint;
  return 0;
}

int kp_slurm_target_load(const char *path, kp_slurm_target *t, kp_slurm_err *e) {
  memset(t, 0, sizeof *t);
  size_t len;
  char *s = kp_read_file(path, &len);
  if (!s)
    return fail(e, KP_SLURM_EIO, "delete the target and create it again ('kusari compute delete NAME')",
                "cannot read the Slurm settings %s: %s", path, strerror(errno));
  cJSON *o = cJSON_Parse(s);
  free(s);
  int bad = !o || get_str(o, "partition", t->partition, sizeof t->partition) || get_int(o, "max_nodes", &t->max_nodes) ||
            get_int(o, "min_nodes", &t->min_nodes) || get_int(o, "gpus_per_node", &t->gpus_per_node) ||
            get_str(o, "time_limit", t->time_limit, sizeof t->time_limit) ||
            get_str(o, "account", t->account, sizeof t->account) || get_str(o, "qos", t->qos, sizeof t->qos);
  cJSON_Delete(o);
  if (bad)
    return fail(e, KP_SLURM_EIO, "delete the target and create it again ('kusari compute delete NAME')",
                "the Slurm settings %s are not what kusari wrote (invalid JSON or a missing field)", path);
  return 0;
}

/* ---- check ------------------------------------------------------------------ */
/* The partitions, comma-separated, and the default one's name. */
static int partitions(char *list, size_t n, char *def, size_t dn, kp_slurm_err *e) {
  const char *argv[] = {"scontrol", "show", "partition", "-o", NULL};
  res r;
  if (run_cmd(argv, 60, &r, e) != 0) return -1;
  if (r.status != 0) {
    int rc = cmd_failed(argv, &r, e);
    res_free(&r);
    return rc;
  }
  list[0] = def[0] = '\0';
  size_t used = 0;
  for (char *save = NULL, *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char name[128], isdef[16];
    if (field(line, "PartitionName", name, sizeof name) != 0) continue;
    if (field(line, "Default", isdef, sizeof isdef) == 0 && !strcmp(isdef, "YES")) snprintf(def, dn, "%s", name);
    int w = snprintf(list + used, n - used, "%s%s", used ? ", " : "", name);
    if (w > 0 && (size_t)w < n - used) used += (size_t)w;
  }
  res_free(&r);
  return 0;
}

int kp_slurm_partition_size(const char *partition, int *nodes, int *cpus, kp_slurm_err *e) {
  const char *argv[] = {"scontrol", "show", "partition", "-o", partition, NULL};
  res r;
  if (run_cmd(argv, 60, &r, e) != 0) return -1;
  if (r.status != 0) {
    int rc = cmd_failed(argv, &r, e);
    res_free(&r);
    return rc;
  }
  char tn[32], tc[32];
  int ok = field(r.out, "TotalNodes", tn, sizeof tn) == 0 && field(r.out, "TotalCPUs", tc, sizeof tc) == 0;
  res_free(&r);
  if (!ok) return fail(e, KP_SLURM_ECMD, NULL, "scontrol show partition %s gave no TotalNodes and TotalCPUs", partition);
  *nodes = atoi(tn);
  *cpus = atoi(tc);
  return 0;
}

int kp_slurm_check(const char *partition, char *resolved, size_t n, kp_slurm_err *e) {
  char path[4096];
  for (int i = 0; slurm_cmds[i]; i++)
    if (kp_which(slurm_cmds[i], path, sizeof path) != 0)
      return fail(e, KP_SLURM_ENOTINSTALLED,
                  "install Slurm's client commands (Debian: apt-get install slurm-client) or put their directory on PATH",
                  "Slurm is not installed here: '%s' is not on PATH", slurm_cmds[i]);
  /* Slurm's commands retry a missing SLURM_CONF for 60 s: say it at once */
  const char *conf = getenv("SLURM_CONF");
  struct stat cst;
  if (conf && *conf && stat(conf, &cst) != 0)
    return fail(e, KP_SLURM_ENOCONFIG, "set SLURM_CONF to the cluster's slurm.conf, or unset it to use /etc/slurm/slurm.conf",
                "Slurm is installed but not configured: SLURM_CONF names %s: %s", conf, strerror(errno));
  const char *ping[] = {"scontrol", "ping", NULL};
  res r;
  if (run_cmd(ping, 60, &r, e) != 0) return -1;
  if (r.status != 0 || !strstr(r.out, " is UP")) {
    char line[512];
    int nocfg = strstr(r.err, "configuration") != NULL;
    first_line(&r, line, sizeof line);
    res_free(&r);
    if (nocfg && (strstr(line, "resolve_ctls_from_dns_srv") || strstr(line, "DNS SRV")))
      return fail(e, KP_SLURM_ENOCONFIG,
                  "set SLURM_CONF to the cluster's slurm.conf, or install it as /etc/slurm/slurm.conf",
                  "Slurm is installed but not configured: no slurm.conf (SLURM_CONF is %s, /etc/slurm/slurm.conf "
                  "does not exist) and no DNS SRV record names a controller",
                  conf && *conf ? "set" : "not set");
    if (nocfg)
      return fail(e, KP_SLURM_ENOCONFIG,
                  "set SLURM_CONF to the cluster's slurm.conf, or install it as /etc/slurm/slurm.conf",
                  "Slurm is installed but not configured: %s", line);
    return fail(e, KP_SLURM_EDOWN,
                "start slurmctld (or ask the cluster's administrators); 'scontrol ping' tells when it answers",
                "the Slurm controller is down: %s", line);
  }
  res_free(&r);
  char list[2048], def[128];
  if (partitions(list, sizeof list, def, sizeof def, e) != 0) return -1;
  if (!partition || !*partition) {
    if (!*def)
      return fail(e, KP_SLURM_ENOPARTITION, NULL,
                  "the Slurm cluster has no default partition; name one with --partition (the partitions are: %s)",
                  *list ? list : "none");
    if (resolved) snprintf(resolved, n, "%s", def);
    return 0;
  }
  /* exact match in the list */
  size_t pl = strlen(partition);
  for (const char *p = list; *p;) {
    size_t k = strcspn(p, ",");
    if (k == pl && !strncmp(p, partition, pl)) {
      if (resolved) snprintf(resolved, n, "%s", partition);
      return 0;
    }
    p += k;
    while (*p == ',' || *p == ' ') p++;
  }
  char hint[600];
  snprintf(hint, sizeof hint, "the partitions are: %.500s (see 'sinfo -s')", *list ? list : "none");
  return fail(e, KP_SLURM_ENOPARTITION, hint, "the Slurm partition '%s' does not exist", partition);
}

/* ---- the batch script ---------------------------------------------------------- */
static int env_name_ok(const char *kv) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv || isdigit((unsigned char)kv[0])) return -1;
  for (const char *p = kv; p < eq; p++)
    if (!isalnum((unsigned char)*p) && *p != '_') return -1;
  return 0;
}

char *kp_slurm_script(const kp_slurm_job_spec *s, kp_slurm_err *e) {
  const kp_slurm_target *t = s->target;
  const char *need[][2] = {{"job name", s->name}, {"comment", s->comment}, {"working directory", s->workdir},
                           {"output file", s->stdout_path}};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
    if (kp_slurm_value_ok(need[i][1], 4000) != 0) {
      fail(e, KP_SLURM_EINVAL, "use paths and names without control characters or double quotes",
           "the job's %s cannot go on an #SBATCH line: '%s'", need[i][0], need[i][1] ? need[i][1] : "(none)");
      return NULL;
    }
  if (s->workdir[0] != '/' || s->stdout_path[0] != '/' || (s->stderr_path && s->stderr_path[0] != '/')) {
    fail(e, KP_SLURM_EINVAL, NULL, "the job's working directory and output files must be absolute paths");
    return NULL;
  }
  if (s->stderr_path && kp_slurm_value_ok(s->stderr_path, 4000) != 0) {
    fail(e, KP_SLURM_EINVAL, NULL, "the job's error file cannot go on an #SBATCH line: '%s'", s->stderr_path);
    return NULL;
  }
  if (s->nodes < 1 || s->ntasks_per_node < 1 || !s->argv || !s->argv[0]) {
    fail(e, KP_SLURM_EINVAL, NULL, "a job needs a command, at least 1 node and 1 task per node");
    return NULL;
  }
  if (t && ((*t->partition && kp_slurm_value_ok(t->partition, 127)) || (*t->account && kp_slurm_value_ok(t->account, 127)) ||
            (*t->qos && kp_slurm_value_ok(t->qos, 127)) || (*t->time_limit && kp_slurm_time_ok(t->time_limit)))) {
    fail(e, KP_SLURM_EINVAL, NULL, "the target's partition, account, QOS or time limit cannot go on an #SBATCH line");
    return NULL;
  }
  for (const char *const *kv = s->env; kv && *kv; kv++)
    if (env_name_ok(*kv) != 0) {
      fail(e, KP_SLURM_EINVAL, NULL, "not an environment variable assignment NAME=VALUE: '%s'", *kv);
      return NULL;
    }
  sb b = {0};
  sb_puts(&b, "#!/bin/bash\n");
  sb_puts(&b, "# Generated by kusari: the Slurm batch script of one run (submitted with sbatch --parsable).\n");
  sb_printf(&b, "#SBATCH --job-name=\"%s\"\n", s->name);
  sb_printf(&b, "#SBATCH --comment=\"%s\"\n", s->comment);
  sb_printf(&b, "#SBATCH --chdir=\"%s\"\n", s->workdir);
  sb_printf(&b, "#SBATCH --output=\"%s\"\n", s->stdout_path);
  if (s->stderr_path) sb_printf(&b, "#SBATCH --error=\"%s\"\n", s->stderr_path);
  sb_puts(&b, "#SBATCH --open-mode=append\n");  /* a requeued job continues its logs */
  sb_printf(&b, "#SBATCH --nodes=%d\n", s->nodes);
  sb_printf(&b, "#SBATCH --ntasks-per-node=%d\n", s->ntasks_per_node);
  if (t && *t->partition) sb_printf(&b, "#SBATCH --partition=\"%s\"\n", t->partition);
  if (t && *t->time_limit) sb_printf(&b, "#SBATCH --time=%s\n", t->time_limit);
  if (t && *t->account) sb_printf(&b, "#SBATCH --account=\"%s\"\n", t->account);
  if (t && *t->qos) sb_printf(&b, "#SBATCH --qos=\"%s\"\n", t->qos);
  if (t && t->gpus_per_node > 0) sb_printf(&b, "#SBATCH --gpus-per-node=%d\n", t->gpus_per_node);
  sb_puts(&b, "set -u\n");
  sb_puts(&b, "# the workspace must be on a filesystem that the nodes share, at the same path\n");
  sb_puts(&b, "wd=");
  sb_quote(&b, s->workdir);
  sb_puts(&b, "\nif [ \"$(pwd -P)\" != \"$(cd \"$wd\" 2>/dev/null && pwd -P)\" ]; then\n"
              "  echo \"kusari: error: the run's directory $wd is not visible on node $(hostname)\" >&2\n"
              "  echo \"  hint: Slurm nodes must see the workspace at the same path (a shared filesystem)\" >&2\n"
              "  exit 97\n"
              "fi\n");
  if (s->prepare_argv && s->prepare_argv[0]) {
    sb_puts(&b, "# the run's environment is prepared here, on the node that runs it\n");
    for (const char *const *a = s->prepare_argv; *a; a++) {
      if (a != s->prepare_argv) sb_puts(&b, " ");
      sb_quote(&b, *a);
    }
    sb_puts(&b, " || exit $?\n"
                "cd \"$wd\" || { echo \"kusari: error: cannot enter the run's directory $wd on node $(hostname)\" >&2; exit 97; }\n");
  }
  for (const char *const *kv = s->env; kv && *kv; kv++) {
    const char *eq = strchr(*kv, '=');
    sb_printf(&b, "export %.*s=", (int)(eq - *kv), *kv);
    sb_quote(&b, eq + 1);
    sb_puts(&b, "\n");
  }
  if (s->nodes * s->ntasks_per_node > 1)
    sb_printf(&b, "exec srun --kill-on-bad-exit=1 --nodes=%d --ntasks-per-node=%d", s->nodes, s->ntasks_per_node);
  else
    sb_puts(&b, "exec");
  for (const char *const *a = s->argv; *a; a++) {
    sb_puts(&b, " ");
    sb_quote(&b, *a);
  }
  sb_puts(&b, "\n");
  if (b.oom) {
    free(b.p);
    fail(e, KP_SLURM_EIO, NULL, "out of memory writing the batch script");
    return NULL;
  }
  return b.p;
}

int kp_slurm_submit(const kp_slurm_job_spec *s, const char *path, char *jobid, size_t n, kp_slurm_err *e) {
  char *text = kp_slurm_script(s, e);
  if (!text) return -1;
  int rc = write_private(path, text, strlen(text), 0700, e);
  free(text);
  if (rc != 0) return -1;
  const char *argv[] = {"sbatch", "--parsable", path, NULL};
  res r;
  if (run_cmd_env(argv, s->submit_env, 120, &r, e) != 0) return -1;
  if (r.status != 0) {
    rc = cmd_failed(argv, &r, e);
    res_free(&r);
    return rc;
  }
  /* "ID" or "ID;CLUSTER" */
  size_t k = strspn(r.out, "0123456789");
  if (k == 0 || k >= n) {
    fail(e, KP_SLURM_ECMD, NULL, "sbatch printed no job id: '%.200s'", r.out);
    res_free(&r);
    return -1;
  }
  memcpy(jobid, r.out, k);
  jobid[k] = '\0';
  res_free(&r);
  return 0;
}

/* ---- states ------------------------------------------------------------------- */
static int in(const char *s, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(s, *list)) return 1;
  return 0;
}

void kp_slurm_map(kp_slurm_job *j, const char *canceled_by, int cancel_requested) {
  static const char *const queued[] = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                                       "SPECIAL_EXIT", NULL};
  static const char *const running[] = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING",
                                        "STAGE_OUT", "POWER_UP_NODE", NULL};
  const char *st = j->state;
  /* a cancelled job's reason is the one it had before (Resources, ...): left out */
  int has_reason = *j->reason && strcmp(j->reason, "None") != 0 && strcmp(st, "CANCELLED") != 0;
  j->error[0] = '\0';
  if (in(st, queued)) { snprintf(j->status, sizeof j->status, "Queued"); return; }
  if (!strcmp(st, "CONFIGURING")) { snprintf(j->status, sizeof j->status, "Preparing"); return; }
  if (in(st, running)) { snprintf(j->status, sizeof j->status, "Running"); return; }
  if (!strcmp(st, "COMPLETED")) { snprintf(j->status, sizeof j->status, "Completed"); return; }
  char what[400];
  if (!strcmp(st, "FAILED")) {
    if (j->signal > 0) snprintf(what, sizeof what, "FAILED: killed by signal %d", j->signal);
    else snprintf(what, sizeof what, "FAILED: exit code %d", j->exit_code);
  } else if (!strcmp(st, "TIMEOUT")) {
    snprintf(what, sizeof what, "TIMEOUT: it reached its time limit");
  } else if (!strcmp(st, "NODE_FAIL")) {
    snprintf(what, sizeof what, "NODE_FAIL: a node it ran on (%s) failed", *j->nodes ? j->nodes : "?");
  } else if (!strcmp(st, "OUT_OF_MEMORY")) {
    snprintf(what, sizeof what, "OUT_OF_MEMORY: it used more memory than it was allowed");
  } else if (!strcmp(st, "PREEMPTED")) {
    snprintf(what, sizeof what, "PREEMPTED: a job of higher priority took its nodes and it was not requeued");
  } else if (!strcmp(st, "BOOT_FAIL")) {
    snprintf(what, sizeof what, "BOOT_FAIL: its nodes failed to boot");
  } else if (!strcmp(st, "DEADLINE")) {
    snprintf(what, sizeof what, "DEADLINE: it reached its deadline");
  } else if (!strcmp(st, "CANCELLED") || !strcmp(st, "REVOKED")) {
    if (canceled_by && *canceled_by) snprintf(what, sizeof what, "CANCELLED by %s", canceled_by);
    else snprintf(what, sizeof what, "CANCELLED (by whom Slurm does not say without accounting: scancel or an administrator)");
  } else {
    snprintf(j->status, sizeof j->status, "Failed");
    snprintf(j->error, sizeof j->error, "Slurm job %s is in a state kusari does not know: %s", j->id, st);
    return;
  }
  int canceled = cancel_requested || !strcmp(st, "CANCELLED") || !strcmp(st, "REVOKED");
  snprintf(j->status, sizeof j->status, "%s", canceled ? "Canceled" : "Failed");
  if (cancel_requested && strcmp(st, "CANCELLED") != 0)
    snprintf(j->error, sizeof j->error, "canceled; Slurm job %s ended %s%s%s%s", j->id, what, has_reason ? " (reason: " : "",
             has_reason ? j->reason : "", has_reason ? ")" : "");
  else
    snprintf(j->error, sizeof j->error, "Slurm job %s %s%s%s%s", j->id, what, has_reason ? " (reason: " : "",
             has_reason ? j->reason : "", has_reason ? ")" : "");
}

/* "CANCELLED by 1000" -> "CANCELLED by alice (uid 1000)" in 'by' ("alice (uid 1000)") */
static void who(const char *sacct_state, char *by, size_t n) {
  by[0] = '\0';
  const char *p = strstr(sacct_state, " by ");
  if (!p) return;
  p += 4;
  char *end;
  long uid = strtol(p, &end, 10);
  if (end == p) { snprintf(by, n, "%.*s", (int)strcspn(p, "\n|"), p); return; }
  struct passwd *pw = getpwuid((uid_t)uid);
  if (pw) snprintf(by, n, "%s (uid %ld)", pw->pw_name, uid);
  else snprintf(by, n, "uid %ld", uid);
}

/* sacct's view of job 'id': "STATE|EXIT:SIG|NODES" of the allocation; 0 when
 * accounting knows the job. */
static int sacct_job(const char *id, kp_slurm_job *j, char *by, size_t bn) {
  char path[4096];
  if (kp_which("sacct", path, sizeof path) != 0) return -1;
  const char *argv[] = {"sacct", "-n", "-P", "-X", "-j", id, "-o", "State,ExitCode,NodeList", NULL};
  res r;
  if (run_cmd(argv, 60, &r, NULL) != 0) return -1;
  int rc = -1;
  char *save = NULL, *line = r.status == 0 ? strtok_r(r.out, "\n", &save) : NULL;
  char *ec = line ? strchr(line, '|') : NULL;
  if (ec) {  /* the allocation's line: STATE|EXIT:SIG|NODES */
    char *state = line;
    *ec++ = '\0';
    char *nodes = strchr(ec, '|');
    if (nodes) *nodes++ = '\0';
    who(state, by, bn);
    snprintf(j->state, sizeof j->state, "%.*s", (int)strcspn(state, " "), state);
    j->exit_code = atoi(ec);
    const char *colon = strchr(ec, ':');
    j->signal = colon ? atoi(colon + 1) : 0;
    snprintf(j->nodes, sizeof j->nodes, "%s", nodes ? nodes : "");
    snprintf(j->reason, sizeof j->reason, "None");
    rc = 0;
  }
  res_free(&r);
  return rc;
}

int kp_slurm_poll(const char *jobid, int cancel_requested, kp_slurm_job *out, kp_slurm_err *e) {
  memset(out, 0, sizeof *out);
  snprintf(out->id, sizeof out->id, "%s", jobid);
  if (!*jobid || strspn(jobid, "0123456789") != strlen(jobid))
    return fail(e, KP_SLURM_EINVAL, NULL, "not a Slurm job id: '%s'", jobid);
  const char *argv[] = {"scontrol", "show", "job", "-o", jobid, NULL};
  res r;
  if (run_cmd(argv, 60, &r, e) != 0) return -1;
  char by[200] = "";
  if (r.status == 0 && strstr(r.out, "JobState=")) {
    char ec[32], restarts[16];
    field(r.out, "JobState", out->state, sizeof out->state);
    field(r.out, "Reason", out->reason, sizeof out->reason);
    field(r.out, "NodeList", out->nodes, sizeof out->nodes);
    if (!strcmp(out->nodes, "(null)")) out->nodes[0] = '\0';
    field(r.out, "ExitCode", ec, sizeof ec);
    out->exit_code = atoi(ec);
    const char *colon = strchr(ec, ':');
    out->signal = colon ? atoi(colon + 1) : 0;
    if (field(r.out, "Restarts", restarts, sizeof restarts) == 0) out->restarts = atoi(restarts);
    out->found = 1;
    res_free(&r);
    if (!strcmp(out->state, "CANCELLED")) {  /* by whom: only accounting knows */
      kp_slurm_job acct;
      memset(&acct, 0, sizeof acct);
      if (sacct_job(jobid, &acct, by, sizeof by) != 0) by[0] = '\0';
    }
  } else if (strstr(r.err, "Invalid job id")) {
    res_free(&r);
    if (sacct_job(jobid, out, by, sizeof by) == 0) out->found = 1;
  } else {
    int rc = cmd_failed(argv, &r, e);
    res_free(&r);
    return rc;
  }
  if (!out->found) {
    snprintf(out->status, sizeof out->status, "%s", cancel_requested ? "Canceled" : "Failed");
    snprintf(out->error, sizeof out->error,
             "Slurm job %s is unknown to the controller (it forgets finished jobs after MinJobAge) and to accounting", jobid);
    return 0;
  }
  kp_slurm_map(out, by, cancel_requested);
  return 0;
}

static int terminal(const kp_slurm_job *j) {
  return !j->found || !strcmp(j->status, "Completed") || !strcmp(j->status, "Failed") || !strcmp(j->status, "Canceled");
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* polls until the job ended or 'secs' passed; 1 when it ended */
static int wait_end(const char *jobid, double secs, kp_slurm_err *e) {
  double until = kp_now() + secs;
  for (;;) {
    kp_slurm_job j;
    if (kp_slurm_poll(jobid, 1, &j, e) != 0) return -1;
    if (terminal(&j)) return 1;
    if (kp_now() >= until) return 0;
    sleep_s(0.2);
  }
}

static int scancel(const char *const argv[], kp_slurm_err *e) {
  res r;
  if (run_cmd(argv, 60, &r, e) != 0) return -1;
  /* "already completing or completed" and "Invalid job id" are no failures here */
  int rc = 0;
  if (r.status != 0 && !strstr(r.err, "completed") && !strstr(r.err, "Invalid job id")) rc = cmd_failed(argv, &r, e);
  res_free(&r);
  return rc;
}

int kp_slurm_cancel(const char *jobid, double grace, kp_slurm_err *e) {
  kp_slurm_job j;
  if (kp_slurm_poll(jobid, 1, &j, e) != 0) return -1;
  if (terminal(&j)) return 0;
  const char *pending[] = {"scancel", "--state=PENDING", jobid, NULL};
  if (scancel(pending, e) != 0) return -1;
  /* --full: the batch shell and every step; a pending job must not get a
   * signal (Slurm would fail it with JobLaunchFailure), hence --state */
  const char *term[] = {"scancel", "--state=RUNNING", "--signal=TERM", "--full", jobid, NULL};
  if (scancel(term, e) != 0) return -1;
  int ended = wait_end(jobid, grace > 0 ? grace : 0, e);
  if (ended != 0) return ended < 0 ? -1 : 0;
  const char *kill9[] = {"scancel", "--signal=KILL", "--full", jobid, NULL};
  if (scancel(kill9, e) != 0) return -1;
  const char *plain[] = {"scancel", jobid, NULL};
  if (scancel(plain, e) != 0) return -1;
  ended = wait_end(jobid, 10, e);
  if (ended < 0) return -1;
  if (!ended) return fail(e, KP_SLURM_ECMD, "see 'scontrol show job %s'", "Slurm job %s has not ended 10 s after SIGKILL", jobid);
  return 0;
}

int kp_slurm_signal(const char *jobid, int sig, kp_slurm_err *e) {
  if (!*jobid || strspn(jobid, "0123456789") != strlen(jobid))
    return fail(e, KP_SLURM_EINVAL, NULL, "not a Slurm job id: '%s'", jobid);
  if (sig == SIGKILL) {
    const char *kill9[] = {"scancel", "--signal=KILL", "--full", jobid, NULL};
    const char *plain[] = {"scancel", jobid, NULL};
    return scancel(kill9, e) != 0 || scancel(plain, e) != 0 ? -1 : 0;
  }
  char opt[64];
  snprintf(opt, sizeof opt, "--signal=%d", sig);
  const char *pending[] = {"scancel", "--state=PENDING", jobid, NULL};
  const char *running[] = {"scancel", "--state=RUNNING", opt, "--full", jobid, NULL};
  return scancel(pending, e) != 0 || scancel(running, e) != 0 ? -1 : 0;
}

/* ---- describe ----------------------------------------------------------------- */
void kp_slurm_ws_comment(const char *ws_root, char *out, size_t n) { snprintf(out, n, "kusari:%s", ws_root); }

/* sinfo's state suffixes: power saving and the like */
static const char *power_of(const char *state) {
  if (strchr(state, '~')) return "powered down";
  if (strchr(state, '#')) return "powering up";
  if (strchr(state, '%')) return "powering down";
  if (strchr(state, '!')) return "power down pending";
  return "on";
}

/* splits 'line' at '|' into at most 'max' fields (the last takes the rest) */
static int split(char *line, char **f, int max) {
  int k = 0;
  f[k++] = line;
  while (k < max) {
    char *bar = strchr(f[k - 1], '|');
    if (!bar) break;
    *bar = '\0';
    f[k++] = bar + 1;
  }
  return k;
}

cJSON *kp_slurm_describe(const char *partition, const char *comment, kp_slurm_err *e) {
  char part[128];
  if (kp_slurm_check(partition, part, sizeof part, e) != 0) return NULL;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "partition", part);
  const char *pa[] = {"scontrol", "show", "partition", "-o", part, NULL};
  res r;
  if (run_cmd(pa, 60, &r, e) != 0) goto bad;
  if (r.status != 0) { cmd_failed(pa, &r, e); res_free(&r); goto bad; }
  char v[256];
  field(r.out, "State", v, sizeof v);
  cJSON_AddStringToObject(o, "state", v);
  field(r.out, "MaxTime", v, sizeof v);
  cJSON_AddStringToObject(o, "max_time", v);
  field(r.out, "TotalNodes", v, sizeof v);
  cJSON_AddNumberToObject(o, "total_nodes", atoi(v));
  res_free(&r);

  const char *ni[] = {"sinfo", "-h", "-N", "-p", part, "-o", "%N|%T|%c|%G|%E", NULL};
  if (run_cmd(ni, 60, &r, e) != 0) goto bad;
  if (r.status != 0) { cmd_failed(ni, &r, e); res_free(&r); goto bad; }
  cJSON *nodes = cJSON_AddArrayToObject(o, "nodes");
  for (char *save = NULL, *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f[5];
    if (split(line, f, 5) < 5) continue;
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "name", f[0]);
    char state[64];
    snprintf(state, sizeof state, "%.*s", (int)strcspn(f[1], "~#%!*$@^-"), f[1]);
    cJSON_AddStringToObject(n, "state", state);
    cJSON_AddStringToObject(n, "power", power_of(f[1]));
    cJSON_AddNumberToObject(n, "cpus", atoi(f[2]));
    cJSON_AddStringToObject(n, "gres", strcmp(f[3], "(null)") ? f[3] : "");
    cJSON_AddStringToObject(n, "reason", strcmp(f[4], "none") ? f[4] : "");
    cJSON_AddItemToArray(nodes, n);
  }
  res_free(&r);

  const char *jq[] = {"squeue", "-h", "-p", part, "-t", "PD,CF,R,CG,S,RQ,RH,RS", "-o", "%i|%T|%r|%j|%D|%N|%M|%k", NULL};
  if (run_cmd(jq, 60, &r, e) != 0) goto bad;
  if (r.status != 0) { cmd_failed(jq, &r, e); res_free(&r); goto bad; }
  cJSON *jobs = cJSON_AddArrayToObject(o, "jobs");
  for (char *save = NULL, *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f[8];
    if (split(line, f, 8) < 8 || (comment && strcmp(f[7], comment) != 0)) continue;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", f[0]);
    cJSON_AddStringToObject(j, "name", f[3]);
    cJSON_AddStringToObject(j, "state", f[1]);
    cJSON_AddStringToObject(j, "reason", f[2]);
    cJSON_AddNumberToObject(j, "nodes", atoi(f[4]));
    cJSON_AddStringToObject(j, "nodelist", f[5]);
    cJSON_AddStringToObject(j, "time", f[6]);
    cJSON_AddItemToArray(jobs, j);
  }
  res_free(&r);
  return o;
bad:
  cJSON_Delete(o);
  return NULL;
}
