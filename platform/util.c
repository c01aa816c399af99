/*
 * platform/util.c — small helpers of the kusari program: error printing,
 * file-system walks, path and name validation, hashing, process checks,
 * starting detached daemons.
 */
#include "kp.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char t_last_err[16384];  /* (paths in messages are up to 4 KiB each) */

const char *kp_err_last(void) { return t_last_err; }

int kp_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last_err, sizeof t_last_err, fmt, ap);
  va_end(ap);
  fprintf(stderr, "kusari: error: %s\n", t_last_err);
  return -1;
}

void kp_hint(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("  hint: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int kp_usage_err(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kusari: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fprintf(stderr, "  hint: see 'kusari %s --help'\n", cmd);
  return 2;
}

double kp_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int kp_mkdirs(const char *path, mode_t mode) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return kp_err("path too long: %s", path);
  for (char *s = strchr(buf + 1, '/'); s; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (mkdir(buf, mode) != 0 && errno != EEXIST) return kp_err("cannot create directory %s: %s", buf, strerror(errno));
    *s = '/';
  }
  if (mkdir(buf, mode) != 0 && errno != EEXIST) return kp_err("cannot create directory %s: %s", buf, strerror(errno));
  return 0;
}

int kp_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 ? 0 : -1;
  chmod(path, 0755);
  DIR *d = opendir(path);
  if (!d) return -1;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
    if (kp_rm_rf(sub) != 0) rc = -1;
  }
  closedir(d);
  if (rmdir(path) != 0) rc = -1;
  return rc;
}

int kp_copy_file(const char *src, const char *dst, mode_t mode) {
  int in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return kp_err("cannot read %s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (out < 0) {
    close(in);
    return kp_err("cannot write %s: %s", dst, strerror(errno));
  }
  char buf[1 << 16];
  ssize_t r;
  int rc = 0;
  while ((r = read(in, buf, sizeof buf)) > 0)
    if (write(out, buf, (size_t)r) != r) { rc = kp_err("cannot write %s: %s", dst, strerror(errno)); break; }
  if (r < 0) rc = kp_err("cannot read %s: %s", src, strerror(errno));
  close(in);
  if (close(out) != 0 && rc == 0) rc = kp_err("cannot write %s: %s", dst, strerror(errno));
  if (rc == 0) fchmodat(AT_FDCWD, dst, mode, 0);
  return rc;
}

int kp_copy_tree(const char *src, const char *dst) {
  if (kp_mkdirs(dst, 0755) != 0) return -1;
  DIR *d = opendir(src);
  if (!d) return kp_err("cannot read directory %s: %s", src, strerror(errno));
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char s[4096], t[4096];
    snprintf(s, sizeof s, "%s/%s", src, e->d_name);
    snprintf(t, sizeof t, "%s/%s", dst, e->d_name);
    struct stat st;
    if (lstat(s, &st) != 0) { rc = kp_err("cannot stat %s: %s", s, strerror(errno)); break; }
    if (S_ISDIR(st.st_mode)) {
      rc = kp_copy_tree(s, t);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(s, target, sizeof target - 1);
      if (n < 0) { rc = kp_err("cannot read link %s", s); break; }
      target[n] = '\0';
      if (symlink(target, t) != 0) rc = kp_err("cannot create link %s: %s", t, strerror(errno));
    } else if (S_ISREG(st.st_mode)) {
      rc = kp_copy_file(s, t, st.st_mode & 07777);
    }
  }
  closedir(d);
  return rc;
}

int kp_rel_path_ok(const char *rel) {
  if (!rel || !*rel || rel[0] == '/') return -1;
  const char *p = rel;
  while (*p) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0 && !e) break;                      /* trailing slash */
    if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return -1;
    p += len + (e ? 1 : 0);
  }
  for (p = rel; *p; p++)
    if ((unsigned char)*p < 0x20) return -1;
  return 0;
}

int kp_name_ok(const char *name) {
  if (!name || !*name || strlen(name) > 128) return -1;
  const char *p = name;
  if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))) return -1;
  for (; *p; p++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return -1;
  }
  return 0;
}

char *kp_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t r;
  while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) { free(buf); buf = NULL; break; }
      buf = nb;
      cap *= 2;
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf || bad) { free(buf); return NULL; }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

int kp_write_file(const char *path, const char *data, size_t len) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return kp_err("cannot write %s: %s", tmp, strerror(errno));
  int rc = (write(fd, data, len) == (ssize_t)len && fsync(fd) == 0) ? 0 : -1;
  close(fd);
  if (rc == 0 && rename(tmp, path) != 0) rc = -1;
  if (rc != 0) { unlink(tmp); return kp_err("cannot write %s: %s", path, strerror(errno)); }
  return 0;
}

static void to_hex(const unsigned char *d, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    hex[2 * i] = digits[d[i] >> 4];
    hex[2 * i + 1] = digits[d[i] & 15];
  }
  hex[64] = '\0';
}

void kp_sha256_hex(const void *data, size_t len, char hex[65]) {
  unsigned char d[32];
  unsigned int dl = 0;
  EVP_Digest(data, len, d, &dl, EVP_sha256(), NULL);
  to_hex(d, hex);
}

/* Streams 'fd' to 'out_fd' (if >= 0) while hashing; used by the blob store. */
int kp__hash_copy(int fd, int out_fd, char hex[65], int64_t *size) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) { EVP_MD_CTX_free(ctx); return -1; }
  char buf[1 << 16];
  ssize_t r;
  int64_t total = 0;
  int rc = 0;
  while ((r = read(fd, buf, sizeof buf)) > 0) {
    EVP_DigestUpdate(ctx, buf, (size_t)r);
    total += r;
    if (out_fd >= 0 && write(out_fd, buf, (size_t)r) != r) { rc = -1; break; }
  }
  if (r < 0) rc = -1;
  unsigned char d[32];
  unsigned int dl = 0;
  EVP_DigestFinal_ex(ctx, d, &dl);
  EVP_MD_CTX_free(ctx);
  to_hex(d, hex);
  if (size) *size = total;
  return rc;
}

static int is_exec_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0;
}

int kp_which(const char *name, char *out, size_t n) {
  if (!name || !*name) return -1;
  if (strchr(name, '/')) {
    char cwd[4096];
    if (name[0] == '/') {
      if (snprintf(out, n, "%s", name) >= (int)n) return -1;
    } else {
      if (!getcwd(cwd, sizeof cwd) || snprintf(out, n, "%s/%s", cwd, name) >= (int)n) return -1;
    }
    return is_exec_file(out) ? 0 : -1;
  }
  const char *path = getenv("PATH");
  if (!path) path = "/usr/local/bin:/usr/bin:/bin";
  while (1) {
    const char *e = strchr(path, ':');
    size_t len = e ? (size_t)(e - path) : strlen(path);
    char dir[4096];
    if (len == 0) {
      if (!getcwd(dir, sizeof dir)) dir[0] = '\0';
    } else {
      snprintf(dir, sizeof dir, "%.*s", (int)(len < sizeof dir - 1 ? len : sizeof dir - 1), path);
    }
    if (dir[0] && snprintf(out, n, "%s/%s", dir, name) < (int)n && out[0] == '/' && is_exec_file(out)) return 0;
    if (!e) break;
    path = e + 1;
  }
  return -1;
}

uint64_t kp_proc_start(pid_t pid) {
  if (pid <= 0) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  char *s = kp_read_file(path, NULL);
  if (!s) return 0;
  char *p = strrchr(s, ')');  /* comm may contain spaces */
  uint64_t start = 0;
  if (p) {
    char state = p[2];
    /* fields after ')': state(3) ... starttime(22) */
    int field = 3;
    char *tok = p + 2;
    while (field < 22 && tok) {
      tok = strchr(tok, ' ');
      if (tok) tok++;
      field++;
    }
    if (tok && state != 'Z' && state != 'X') start = strtoull(tok, NULL, 10);
  }
  free(s);
  return start;
}

int kp_proc_alive(pid_t pid, uint64_t start) {
  uint64_t s = kp_proc_start(pid);
  return s != 0 && s == start;
}

void kp_fmt_time(double t, char *out, size_t n) {
  if (t <= 0) { snprintf(out, n, "-"); return; }
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kp_fmt_dur(double s, char *out, size_t n) {
  if (s < 0) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(out, n, "%ldh%02ldm%02lds", t / 3600, (t / 60) % 60, t % 60);
  else if (t >= 60) snprintf(out, n, "%ldm%02lds", t / 60, t % 60);
  else snprintf(out, n, "%.1fs", s);
}

int kp_parse_int(const char *s, long long *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return -1;
  *out = v;
  return 0;
}

int kp_parse(const char *cmd, int argc, char **argv, const kp_opt *opts, const char **pos, int *npos, int maxpos,
             int *rest) {
  int np = 0;
  if (rest) *rest = argc;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) {
      if (!rest) return kp_usage_err(cmd, "'--' is not expected here");
      *rest = i + 1;
      break;
    }
    if (a[0] == '-' && a[1] != '\0') {
      const char *eq = strchr(a, '=');
      size_t nl = eq ? (size_t)(eq - a) : strlen(a);
      const kp_opt *o = NULL;
      for (const kp_opt *p = opts; p && p->name; p++) {
        if ((a[1] == '-' && strlen(p->name) == nl - 2 && !strncmp(p->name, a + 2, nl - 2)) ||
            (p->alias && strlen(p->alias) == nl && !strncmp(p->alias, a, nl))) {
          o = p;
          break;
        }
      }
      if (!o) {
        /* a negative number is a positional (kusari log metric loss -0.5) */
        char *e2;
        (void)strtod(a, &e2);
        if (e2 != a && !*e2) goto positional;
        return kp_usage_err(cmd, "unknown option '%.*s'", (int)nl, a);
      }
      if (o->flag) {
        if (eq) return kp_usage_err(cmd, "option --%s takes no value", o->name);
        *o->flag = 1;
        continue;
      }
      const char *v = eq ? eq + 1 : NULL;
      if (!v) {
        if (i + 1 >= argc) return kp_usage_err(cmd, "option --%s needs a value", o->name);
        v = argv[++i];
      }
      if (o->multi) {
        if (*o->nmulti >= KP_MULTI_MAX) return kp_usage_err(cmd, "too many --%s options (at most %d)", o->name, KP_MULTI_MAX);
        o->multi[(*o->nmulti)++] = v;
      } else {
        *o->val = v;
      }
      continue;
    }
  positional:
    if (np >= maxpos) return kp_usage_err(cmd, "unexpected argument '%s'", a);
    pos[np++] = a;
  }
  if (npos) *npos = np;
  return 0;
}

/* ---- detached daemons ------------------------------------------------------ */
int kp_daemon_start(char *const argv[], const char *log, const char *const *setenv_kv, double timeout_s, char *reply,
                    size_t n) {
  if (n) reply[0] = '\0';
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return kp_err("cannot create a pipe: %s", strerror(errno));
  fflush(NULL);
  /* KUSARI_FAULT_DAEMON_FORK=1 (tests): the fork fails, as when the process
   * limit is reached */
  const char *fault = getenv("KUSARI_FAULT_DAEMON_FORK");
  pid_t child = fault && *fault == '1' ? (errno = EAGAIN, -1) : fork();
  if (child < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return kp_err("cannot fork: %s", strerror(e));
  }
  if (child == 0) {
    setsid();
    pid_t g = fork();
    if (g != 0) _exit(g < 0 ? 1 : 0);
    close(fds[0]);
    /* above 2 (stdio is replaced below) and without O_CLOEXEC: the daemon keeps it */
    int wfd = fcntl(fds[1], F_DUPFD, 3);
    int in = open("/dev/null", O_RDONLY);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) { dup2(out, 1); dup2(out, 2); }
    if (in > 2) close(in);
    if (out > 2) close(out);
    /* nothing else of the starter's: a descriptor it inherited (a pipe a
     * caller waits on for EOF) must not stay open for the daemon's life */
    for (int more = 1; more;) {
      DIR *fdd = opendir("/proc/self/fd");
      if (!fdd) break;
      int self = dirfd(fdd), fds_to_close[256], nclose = 0;
      struct dirent *de;
      while ((de = readdir(fdd)) && nclose < 256) {
        int fd = atoi(de->d_name);
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' && fd > 2 && fd != wfd && fd != self) fds_to_close[nclose++] = fd;
      }
      closedir(fdd);
      for (int i = 0; i < nclose; i++) close(fds_to_close[i]);
      more = nclose == 256;  /* a full batch: look again */
    }
    for (const char *const *e = setenv_kv; e && *e; e++) putenv((char *)*e);
    size_t argc = 0;
    while (argv[argc]) argc++;
    char **av = calloc(argc + 1, sizeof *av);
    char fdbuf[16];
    snprintf(fdbuf, sizeof fdbuf, "%d", wfd);
    if (!av || wfd < 0) _exit(126);
    for (size_t i = 0; i < argc; i++) av[i] = strcmp(argv[i], KP_DAEMON_FD) ? argv[i] : fdbuf;
    execv(av[0], av);
    _exit(127);
  }
  close(fds[1]);
  int st;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
  char buf[2048];
  size_t got = 0;
  double t0 = kp_now();
  int line = 0;
  while (got < sizeof buf - 1 && !line) {
    int wait_ms = -1;
    if (timeout_s > 0) {
      double left = timeout_s - (kp_now() - t0);
      if (left <= 0) break;
      wait_ms = (int)(left * 1000) + 1;
    }
    struct pollfd p = {fds[0], POLLIN, 0};
    int r = poll(&p, 1, wait_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t k = read(fds[0], buf + got, sizeof buf - 1 - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
    line = memchr(buf, '\n', got) != NULL;
  }
  close(fds[0]);
  buf[got] = '\0';
  char *nl = strchr(buf, '\n');
  if (!nl) return -1;
  *nl = '\0';
  if (n) snprintf(reply, n, "%s", buf);
  return 0;
}

/* A metric value in JSON: a number, or "NaN", "Infinity", "-Infinity" (JSON
 * has no such numbers; Python's float() reads these strings back). SQLite
 * stores NaN as NULL, so callers pass NAN for a NULL value. */
struct cJSON *kp_json_metric(double v) {
  if (isfinite(v)) return cJSON_CreateNumber(v);
  return cJSON_CreateString(isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
}

struct cJSON *kp_json_metric_exact(double v) {
  if (!isfinite(v)) return kp_json_metric(v);
  char b[40];
  snprintf(b, sizeof b, "%.15g", v);
  if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.16g", v);
  if (strtod(b, NULL) != v) snprintf(b, sizeof b, "%.17g", v);
  return cJSON_CreateRaw(b);
}

void kp_fmt_metric(const struct cJSON *v, char *out, size_t n) {
  const char *s = cJSON_GetStringValue(v);
  if (cJSON_IsNumber(v)) snprintf(out, n, "%.6g", v->valuedouble);
  else if (!s) snprintf(out, n, "-");
  else snprintf(out, n, "%s", !strcmp(s, "NaN") ? "nan" : !strcmp(s, "Infinity") ? "inf" : "-inf");
}
