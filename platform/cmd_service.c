/*
 * platform/cmd_service.c — scoring services: `kusari model deploy` and
 * `kusari service list|show|logs|keys|start|stop|delete|serve`.
 *
 * A service is a record of the store (store.h, the service_* operations;
 * the services table of schema 3 in the SQLite backend) and a detached server
 * process (service_server.c) started like a run's supervisor (fork, setsid,
 * fork, exec `kusari service serve NAME --ready-fd FD`), which answers "ok
 * PORT" on the pipe once it listens. Its files live in
 * WORKSPACE/services/NAME/: server.log, model/ (the model version's files),
 * entry/ (the user's scoring library, kept as a blob in the store).
 * Keys: two per service, 32 bytes from /dev/urandom as 64 hex digits, kept
 * across restarts and redeploys; `keys --regenerate` replaces one and tells
 * a running server with SIGHUP. The store keeps only their sha256
 * (services.primary_key_sha256, schema 5), which the server checks; the
 * keys themselves are in WORKSPACE/services/NAME/keys (mode 0600, in a 0700
 * folder), which `service keys` prints.
 */
#include "service.h"
#include "views.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_BODY_MB 16
#define DEFAULT_TIMEOUT_S 10

static void svc_dir(const kp_ws *ws, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/services/%s", ws->root, name);
}

static int new_key(char out[65]) {
  unsigned char b[32];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kp_err("cannot open /dev/urandom: %s", strerror(errno));
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t k = read(fd, b + got, sizeof b - got);
    if (k <= 0) {
      if (k < 0 && errno == EINTR) continue;
      close(fd);
      return kp_err("cannot read /dev/urandom");
    }
    got += (size_t)k;
  }
  close(fd);
  for (size_t i = 0; i < sizeof b; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
  return 0;
}

/* ---- keys: sha256 in the store, the keys in a 0600 file ------------------------------ */
/* After SIGHUP, waits (up to 10 s) until the server says, in
 * services/NAME/keys_loaded, that it checks requests against the digests h:
 * `service keys --regenerate` returns only once the new key works. */
static void keys_wait_loaded(const kp_ws *ws, const char *name, char h[2][65]) {
  char p[4600], want[140], got[140];
  snprintf(p, sizeof p, "%s/services/%s/keys_loaded", ws->root, name);
  snprintf(want, sizeof want, "%s %s\n", h[0], h[1]);
  for (int i = 0; i < 2000; i++) {
    FILE *f = fopen(p, "r");
    size_t n = 0;
    if (f) {
      n = fread(got, 1, sizeof got - 1, f);
      fclose(f);
    }
    got[n] = '\0';
    if (!strcmp(got, want)) return;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  fprintf(stderr, "kusari: warning: service %s has not confirmed its new keys in 10 s\n"
          "  hint: see 'kusari service logs %s'; 'kusari service start %s' restarts it with them\n", name, name, name);
}

static void keys_path(const kp_ws *ws, const char *name, char *out, size_t n) {
  snprintf(out, n, "%s/services/%s/keys", ws->root, name);
}

/* Writes services/NAME/keys (0600; the folder 0700) through a temporary
 * file renamed over it, so a reader sees the old keys or the new ones. */
static int keys_write(const kp_ws *ws, const char *name, const char *k1, const char *k2) {
  char dir[4400], p[4600], tmp[4700];
  snprintf(dir, sizeof dir, "%s/services", ws->root);
  if (kp_mkdirs(dir, 0755) != 0) return -1;
  snprintf(dir, sizeof dir, "%s/services/%s", ws->root, name);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) return kp_err("cannot create %s: %s", dir, strerror(errno));
  if (chmod(dir, 0700) != 0) return kp_err("cannot make %s private: %s", dir, strerror(errno));
  keys_path(ws, name, p, sizeof p);
  snprintf(tmp, sizeof tmp, "%s.tmp%ld", p, (long)getpid());
  unlink(tmp);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return kp_err("cannot write %s: %s", tmp, strerror(errno));
  char buf[256];
  int len = snprintf(buf, sizeof buf, "{\"primary_key\": \"%s\", \"secondary_key\": \"%s\"}\n", k1, k2);
  int ok = len > 0 && (size_t)len < sizeof buf && write(fd, buf, (size_t)len) == len && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, p) != 0) {
    int e = errno;
    unlink(tmp);
    return kp_err("cannot write %s: %s", p, strerror(e));
  }
  return 0;
}

/* Reads the keys of service 'name' from its keys file; -1 with a message
 * (and a hint) when the file is missing or unreadable. */
static int keys_read(const kp_ws *ws, const char *name, char k[2][65]) {
  char p[4600];
  keys_path(ws, name, p, sizeof p);
  char *t = kp_read_file(p, NULL);
  cJSON *j = t ? cJSON_Parse(t) : NULL;
  free(t);
  const char *a = j ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "primary_key")) : NULL;
  const char *b = j ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "secondary_key")) : NULL;
  int rc = 0;
  if (!a || !b || strlen(a) != 64 || strlen(b) != 64) {
    kp_err("the keys of service %s are not readable in %s%s%s", name, p, j ? "" : ": ", j ? "" : strerror(errno ? errno : EINVAL));
    kp_hint("the store keeps only their sha256; make new ones with 'kusari service keys %s --regenerate both'", name);
    rc = -1;
  } else {
    snprintf(k[0], 65, "%s", a);
    snprintf(k[1], 65, "%s", b);
  }
  cJSON_Delete(j);
  return rc;
}

/* 0 when the keys on file are those whose digests the store (and so the
 * server) has; else an error: a file edited by hand or left ahead of the
 * store by an interrupted --regenerate. */
static int keys_match(kp_ws *ws, const kp_service *sv, char k[2][65]) {
  const char *want[2] = {sv->primary_key_sha256, sv->secondary_key_sha256};
  for (int i = 0; i < 2; i++) {
    char h[65];
    kp_sha256_hex(k[i], strlen(k[i]), h);
    if (strcmp(h, want[i]) != 0) {
      char p[4600];
      keys_path(ws, sv->name, p, sizeof p);
      kp_err("the %s key in %s is not the one service %s takes (its sha256 differs from the store's)",
             i ? "secondary" : "primary", p, sv->name);
      kp_hint("make new keys with 'kusari service keys %s --regenerate both'", sv->name);
      return -1;
    }
  }
  return 0;
}

/* The migration's kp_service_keys_save: the keys into the service's keys
 * file, their sha256 back to the store. */
static int keys_save(void *ctx, const char *name, const char *k1, const char *k2, char h1[65], char h2[65]) {
  kp_ws *ws = ctx;
  if (kp_name_ok(name) != 0) return kp_err("service name '%s' is not valid", name);
  if (keys_write(ws, name, k1, k2) != 0) return -1;
  kp_sha256_hex(k1, strlen(k1), h1);
  kp_sha256_hex(k2, strlen(k2), h2);
  return 0;
}

/* Migration to schema 5 (the workspace's migration hook, store.c, in the
 * migration's transaction): the store renames services.primary_key and
 * secondary_key to primary_key_sha256 and secondary_key_sha256 and hands
 * each service's keys to keys_save, which moves them into its keys file;
 * the store keeps their sha256. A store whose columns have the new names
 * already (set back to an older version by hand) is left as it is. A
 * rollback after this leaves the store as it was and the same keys on file. */
int kp_service_keys_migrate(kp_ws *ws, kp_store *s) {
  if (kp_store_sqlite_service_keys_migrate(s, keys_save, ws) != 0) return -1;
  return 0;
}

void kp_service_check_alive(kp_service *s) {
  if ((s->state == KP_SERVICE_RUNNING || s->state == KP_SERVICE_STARTING) &&
      !(s->pid > 0 && kp_proc_alive((pid_t)s->pid, s->pid_start))) {
    if (s->state == KP_SERVICE_RUNNING || s->pid > 0) {
      char e[1024];
      snprintf(e, sizeof e, "the server process (pid %lld) is gone; see 'kusari service logs %s'", (long long)s->pid,
               s->name);
      free(s->error);
      s->error = strdup(e);
      s->state = KP_SERVICE_FAILED;
    }
  }
}

/* 0 found, 1 absent (message printed when 'say'), -1 error (printed) */
static int find_svc(kp_ws *ws, const char *name, kp_service *s, int say) {
  memset(s, 0, sizeof *s);
  if (kp_store_service_get(ws->store, name, s) != 0) {
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) return kp_store_report();
    if (say) {
      kp_store_report();
      kp_hint("list services with 'kusari service list'");
    }
    return 1;
  }
  kp_service_check_alive(s);
  return 0;
}

/* Stops the server of s (SIGTERM, SIGKILL after 10 s) and records Stopped. */
static int stop_server(kp_ws *ws, kp_service *s) {
  if (s->pid > 0 && kp_proc_alive((pid_t)s->pid, (uint64_t)s->pid_start)) {
    kill((pid_t)s->pid, SIGTERM);
    double t0 = kp_now();
    while (kp_proc_alive((pid_t)s->pid, (uint64_t)s->pid_start) && kp_now() - t0 < 10) usleep(20000);
    if (kp_proc_alive((pid_t)s->pid, (uint64_t)s->pid_start)) {
      kill((pid_t)s->pid, SIGKILL);
      while (kp_proc_alive((pid_t)s->pid, (uint64_t)s->pid_start) && kp_now() - t0 < 15) usleep(20000);
    }
  }
  if (kp_store_service_stopped(ws->store, s->name) != 0) return kp_store_report();
  s->state = KP_SERVICE_STOPPED;
  return 0;
}

/* Starts the server of service 'name' and waits until it listens. */
static int start_server(kp_ws *ws, const char *name, int *port) {
  char dir[4400], logp[4600];
  svc_dir(ws, name, dir, sizeof dir);
  if (kp_mkdirs(dir, 0755) != 0) return -1;
  snprintf(logp, sizeof logp, "%s/server.log", dir);
  if (kp_store_service_starting(ws->store, name) != 0) return kp_store_report();
  /* like runs: OpenBLAS's own choice of kernels where Debian's build does not know the CPU */
  const char *coretype = ks_blas_suggested_coretype();
  char envbuf[128];
  const char *envs[2] = {NULL, NULL};
  if (coretype && !getenv("OPENBLAS_CORETYPE")) {
    snprintf(envbuf, sizeof envbuf, "OPENBLAS_CORETYPE=%s", coretype);
    envs[0] = envbuf;
  }
  char *argv[] = {kp_self_exe, "--workspace", ws->root, "service", "serve", (char *)name, "--ready-fd", KP_DAEMON_FD, NULL};
  char buf[1300];
  kp_daemon_start(argv, logp, envs, 120, buf, sizeof buf);
  if (!strncmp(buf, "ok ", 3)) {
    *port = atoi(buf + 3);
    return 0;
  }
  /* a server that died before it could say why (or hangs) must not stay Starting */
  if (kp_store_service_start_failed(ws->store, name, "the server exited (or hung) before it listened; see its log") != 0)
    kp_store_report();
  if (!strncmp(buf, "error: ", 7)) kp_err("service %s did not start: %s", name, buf + 7);
  else kp_err("service %s did not start (no answer from its server)", name);
  kp_hint("see its log: kusari service logs %s", name);
  return -1;
}

/* a view's text field, "" when absent */
static const char *jstr(const cJSON *o, const char *k) {
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
  return v ? v : "";
}

/* the lines `service start` and `model deploy` print, from the service's view */
static void print_started_view(const cJSON *o) {
#define S(k) jstr(o, k)
  const char *entry = S("entry");
  printf("Service %s: %s (model %s%s%s, %d workers, auth %s)\n", S("name"), S("state"), S("model"), *entry ? ", entry " : "",
         entry, (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "workers")),
         cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "auth")) ? "on: see 'kusari service keys'" : "off");
  printf("%s\n", S("scoring_uri"));
#undef S
}

static void print_started(kp_ws *ws, const char *name) {
  kp_service s;
  if (find_svc(ws, name, &s, 1) != 0) return;
  cJSON *o = kp_view_service(&s);
  kp_service_free(&s);
  print_started_view(o);
  cJSON_Delete(o);
}

/* ---- kusari model deploy ----------------------------------------------------------- */
int kp_service_deploy(kp_ws *ws, const kp_deploy *d, char old_model[300], char old_state[32]) {
  old_model[0] = old_state[0] = '\0';
  /* the model version */
  kp_model mv;
  if (kp_store_model_get(ws->store, d->model, d->version, &mv) != 0) {
    int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (missing) kp_hint("list models with 'kusari model list'");
    return missing ? 1 : -1;
  }
  long long mver = mv.version;
  kp_model_free(&mv);
  kp_service old;
  int have = find_svc(ws, d->name, &old, 0);
  if (have < 0) return -1;
  if (have == 0) {
    snprintf(old_model, 300, "%s:%lld", old.model_name, (long long)old.model_version);
    snprintf(old_state, 32, "%s", kp_service_state_name(old.state));
    int stopped = stop_server(ws, &old);
    kp_service_free(&old);
    if (stopped != 0) return -1;
  }
  /* a new service's keys: on file first (0600), their sha256 in the store;
   * a redeployed one keeps its keys (service_redeploy leaves them alone) */
  char k1[65], k2[65], h1[65], h2[65];
  if (new_key(k1) != 0 || new_key(k2) != 0) return -1;
  kp_sha256_hex(k1, 64, h1);
  kp_sha256_hex(k2, 64, h2);
  if (have != 0 && keys_write(ws, d->name, k1, k2) != 0) return -1;
  kp_service_new sn = {.name = d->name, .model_name = d->model, .model_version = mver, .entry_name = d->entry_name,
                       .entry_sha256 = d->entry_sha256, .host = d->host, .port = d->port, .auth = d->auth,
                       .workers = d->workers, .timeout = d->timeout, .max_body = d->max_body_mb * 1024 * 1024,
                       .primary_key_sha256 = h1, .secondary_key_sha256 = h2};
  if ((have == 0 ? kp_store_service_redeploy(ws->store, &sn) : kp_store_service_create(ws->store, &sn)) != 0)
    return kp_store_report();
  char sdir[4400];
  svc_dir(ws, d->name, sdir, sizeof sdir);
  if (kp_mkdirs(sdir, 0755) != 0 || kp_service_batch_save(sdir, d->batch_max, d->batch_wait_us) != 0) return -1;
  int bound;
  return start_server(ws, d->name, &bound);
}

int kp_deploy_check(kp_deploy *d, char *err, size_t errn) {
  if (kp_name_ok(d->name) != 0)
    return snprintf(err, errn, "invalid service name '%s': use letters, digits, '.', '_' and '-'", d->name), -1;
  if (kp_name_ok(d->model) != 0) return snprintf(err, errn, "invalid model name '%s'", d->model), -1;
  if (d->version < 0) return snprintf(err, errn, "the model's version must be a positive integer"), -1;
  if (d->port < 0 || d->port > 65535) return snprintf(err, errn, "--port must be 0 to 65535 (0: a free port)"), -1;
  if (d->workers < 1 || d->workers > 256) return snprintf(err, errn, "--workers must be 1 to 256"), -1;
  if (d->max_body_mb < 1 || d->max_body_mb > 1024) return snprintf(err, errn, "--max-body-mb must be 1 to 1024"), -1;
  if (d->timeout < 1 || d->timeout > 3600) return snprintf(err, errn, "--timeout must be 1 to 3600 seconds"), -1;
  if (d->batch_max < 1 || d->batch_max > KP_BATCH_MAX_LIMIT)
    return snprintf(err, errn, "--batch-max must be 1 (no batching) to %d", KP_BATCH_MAX_LIMIT), -1;
  if (d->batch_wait_us < 0 || d->batch_wait_us > KP_BATCH_WAIT_LIMIT_US)
    return snprintf(err, errn, "--batch-wait-us must be 0 to %ld", KP_BATCH_WAIT_LIMIT_US), -1;
  struct in_addr ia;
  if (inet_pton(AF_INET, d->host, &ia) != 1)
    return snprintf(err, errn, "--host must be an IPv4 address (127.0.0.1, 0.0.0.0, ...)"), -1;
  return 0;
}

/* model deploy against a tracking server: the entry library (if any)
 * uploaded as a blob, then POST /services; the same lines */
static int deploy_remote(kp_ws *ws, const kp_deploy *d, const char *entry) {
  cJSON *b = cJSON_CreateObject(), *o = NULL;
  int rc = 1;
  cJSON_AddStringToObject(b, "name", d->name);
  cJSON_AddStringToObject(b, "model", d->model);
  if (d->version) cJSON_AddNumberToObject(b, "version", (double)d->version);
  cJSON_AddStringToObject(b, "host", d->host);
  cJSON_AddNumberToObject(b, "port", d->port);
  cJSON_AddBoolToObject(b, "auth", d->auth);
  if (d->workers) cJSON_AddNumberToObject(b, "workers", d->workers);
  cJSON_AddNumberToObject(b, "max_body_mb", (double)d->max_body_mb);
  cJSON_AddNumberToObject(b, "timeout", d->timeout);
  cJSON_AddNumberToObject(b, "batch_max", d->batch_max);
  cJSON_AddNumberToObject(b, "batch_wait_us", (double)d->batch_wait_us);
  if (entry) {
    size_t len = 0;
    char *data = kp_read_file(entry, &len), hex[65];
    if (!data) {
      kp_err("--entry '%s' is not a file: %s", entry, strerror(errno ? errno : EINVAL));
      kp_hint("build a shared library exporting init(const char *model_dir) and run(const char *input_json)");
      goto out;
    }
    int up = kp_store_http_put_blob(ws->store, data, len, hex);
    free(data);
    if (up != 0) { kp_err("cannot upload %s: %s", entry, kp_store_last_error()->message); goto out; }
    cJSON *e = cJSON_AddObjectToObject(b, "entry");
    cJSON_AddStringToObject(e, "sha256", hex);
    cJSON_AddStringToObject(e, "name", d->entry_name);
  }
  char *body = cJSON_PrintUnformatted(b);
  if (!body) { kp_err("out of memory"); goto out; }
  int r = kp_store_http_call(ws->store, "POST", "services", NULL, NULL, body, &o);
  cJSON_free(body);
  if (r != 0) {
    int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
    kp_store_report();
    if (missing) kp_hint("list models with 'kusari model list'");
    goto out;
  }
  const cJSON *rd = cJSON_GetObjectItemCaseSensitive(o, "redeployed");
  if (cJSON_IsObject(rd))
    printf("Service %s exists (model %s, %s): redeploying with the same keys\n", d->name,
           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rd, "model")),
           cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rd, "state")));
  print_started_view(cJSON_GetObjectItemCaseSensitive(o, "service"));
  rc = 0;
out:
  cJSON_Delete(b);
  cJSON_Delete(o);
  return rc;
}

int kp_model_deploy(int argc, char **argv);
int kp_model_deploy(int argc, char **argv) {
  const char *cmd = "model deploy";
  const char *name = NULL, *port_s = "0", *host = "127.0.0.1", *entry = NULL, *workers_s = NULL, *body_s = NULL,
             *timeout_s = NULL, *bmax_s = NULL, *bwait_s = NULL, *pos[1];
  int auth = 0, np = 0;
  kp_opt opts[] = {{.name = "name", .val = &name}, {.name = "port", .val = &port_s}, {.name = "host", .val = &host},
                   {.name = "auth", .flag = &auth}, {.name = "entry", .val = &entry},
                   {.name = "workers", .val = &workers_s}, {.name = "max-body-mb", .val = &body_s},
                   {.name = "timeout", .val = &timeout_s}, {.name = "batch-max", .val = &bmax_s},
                   {.name = "batch-wait-us", .val = &bwait_s}, {0}};
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the model: NAME[:VERSION]");
  if (!name) return kp_usage_err(cmd, "missing --name SERVICE");
  if (kp_name_ok(name) != 0) return kp_usage_err(cmd, "invalid service name '%s': use letters, digits, '.', '_' and '-'", name);
  char mname[256];
  long long mver = 0;
  const char *colon = strrchr(pos[0], ':');
  snprintf(mname, sizeof mname, "%.*s", colon ? (int)(colon - pos[0]) : (int)strlen(pos[0]), pos[0]);
  if (colon && (kp_parse_int(colon + 1, &mver) != 0 || mver < 1))
    return kp_usage_err(cmd, "'%s': the version after ':' must be a positive integer", pos[0]);
  if (kp_name_ok(mname) != 0) return kp_usage_err(cmd, "invalid model name '%s'", mname);
  long long port, workers = sysconf(_SC_NPROCESSORS_ONLN), mb = DEFAULT_MAX_BODY_MB, tmo = DEFAULT_TIMEOUT_S;
  if (kp_parse_int(port_s, &port) != 0 || port < 0 || port > 65535) return kp_usage_err(cmd, "--port must be 0 to 65535 (0: a free port)");
  if (workers < 1) workers = 1;
  if (workers_s && (kp_parse_int(workers_s, &workers) != 0 || workers < 1 || workers > 256))
    return kp_usage_err(cmd, "--workers must be 1 to 256");
  if (body_s && (kp_parse_int(body_s, &mb) != 0 || mb < 1 || mb > 1024)) return kp_usage_err(cmd, "--max-body-mb must be 1 to 1024");
  if (timeout_s && (kp_parse_int(timeout_s, &tmo) != 0 || tmo < 1 || tmo > 3600)) return kp_usage_err(cmd, "--timeout must be 1 to 3600 seconds");
  /* batching (docs/SERVING.md): off by default, it did not pay for the MNIST MLP */
  long long bmax = 1, bwait = 200;
  if (bmax_s && (kp_parse_int(bmax_s, &bmax) != 0 || bmax < 1 || bmax > KP_BATCH_MAX_LIMIT))
    return kp_usage_err(cmd, "--batch-max must be 1 (no batching) to %d", KP_BATCH_MAX_LIMIT);
  if (bwait_s && (kp_parse_int(bwait_s, &bwait) != 0 || bwait < 0 || bwait > KP_BATCH_WAIT_LIMIT_US))
    return kp_usage_err(cmd, "--batch-wait-us must be 0 to %ld", KP_BATCH_WAIT_LIMIT_US);
  struct in_addr ia;
  if (inet_pton(AF_INET, host, &ia) != 1) return kp_usage_err(cmd, "--host must be an IPv4 address (127.0.0.1, 0.0.0.0, ...)");
  char ename[256] = "", esha[65] = "";
  if (entry) {
    const char *b = strrchr(entry, '/');
    snprintf(ename, sizeof ename, "%s", b ? b + 1 : entry);
    if (kp_name_ok(ename) != 0) snprintf(ename, sizeof ename, "entry.so");
  }
  kp_deploy d = {.name = name, .model = mname, .version = mver, .host = host, .port = (int)port, .auth = auth,
                 .workers = (int)workers, .max_body_mb = mb, .timeout = (int)tmo, .batch_max = (int)bmax,
                 .batch_wait_us = (long)bwait, .entry_name = entry ? ename : NULL, .entry_sha256 = entry ? esha : NULL};
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  int rc = 1;
  if (ws.remote[0]) {
    if (!workers_s) d.workers = 0;  /* the server's default: its own CPUs */
    rc = deploy_remote(&ws, &d, entry);
    goto out;
  }
  if (entry) {
    /* the model version first, as before: its error comes before the entry's */
    kp_model mv;
    if (kp_store_model_get(ws.store, mname, mver, &mv) != 0) {
      int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      kp_store_report();
      if (missing) kp_hint("list models with 'kusari model list'");
      goto out;
    }
    kp_model_free(&mv);
    struct stat est;
    if (stat(entry, &est) != 0 || !S_ISREG(est.st_mode)) {
      kp_err("--entry '%s' is not a file: %s", entry, strerror(errno ? errno : EINVAL));
      kp_hint("build a shared library exporting init(const char *model_dir) and run(const char *input_json)");
      goto out;
    }
    int64_t sz;
    if (kp_blob_put_file(&ws, entry, esha, &sz) != 0) goto out;
  }
  char old_model[300], old_state[32];
  int r = kp_service_deploy(&ws, &d, old_model, old_state);
  if (old_model[0])
    printf("Service %s exists (model %s, %s): redeploying with the same keys\n", name, old_model, old_state);
  if (r == 0) {
    print_started(&ws, name);
    rc = 0;
  }
out:
  kp_ws_close(&ws);
  return rc;
}

int kp_service_control(kp_ws *ws, const char *name, const char *op) {
  kp_service s;
  int r = find_svc(ws, name, &s, 0);
  if (r != 0) return r;
  int rc = 0, port;
  if (!strcmp(op, "start")) {
    if (s.state != KP_SERVICE_RUNNING) rc = start_server(ws, name, &port);
  } else if (!strcmp(op, "stop")) {
    rc = stop_server(ws, &s);
  } else if (!strcmp(op, "delete")) {
    rc = stop_server(ws, &s);
    if (rc == 0 && kp_store_service_delete(ws->store, name) != 0) rc = kp_store_report();
    if (rc == 0) {
      char dir[4400];
      svc_dir(ws, name, dir, sizeof dir);
      kp_rm_rf(dir);
    }
  } else {
    rc = kp_err("unknown service operation '%s'", op);
  }
  kp_service_free(&s);
  return rc;
}

/* service start|stop|delete against a tracking server: POST
 * /services/{name}/start|stop, DELETE /services/{name}; the same lines */
static int control_remote(kp_ws *ws, const char *name, const char *op) {
  cJSON *o = NULL;
  int was_running = 0;
  if (!strcmp(op, "start")) {
    if (kp_store_http_call(ws->store, "GET", "services/", name, NULL, NULL, &o) != 0) goto fail;
    was_running = !strcmp(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "state")) ?
                          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "state")) : "", "Running");
    cJSON_Delete(o);
    o = NULL;
  }
  int r = !strcmp(op, "delete") ? kp_store_http_call(ws->store, "DELETE", "services/", name, NULL, NULL, &o)
                                : kp_store_http_call(ws->store, "POST", "services/", name, !strcmp(op, "start") ? "/start" : "/stop",
                                                     "{}", &o);
  if (r != 0) goto fail;
  if (!strcmp(op, "start")) {
    if (was_running) printf("Service %s is already running\n", name);
    print_started_view(o);
  } else if (!strcmp(op, "stop")) {
    printf("Service %s stopped\n", name);
  } else {
    printf("Deleted service %s\n", name);
  }
  cJSON_Delete(o);
  return 0;
fail:;
  int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
  kp_store_report();
  if (missing) kp_hint("list services with 'kusari service list'");
  return 1;
}

/* ---- kusari service ... --------------------------------------------------------------- */
static void print_json(const cJSON *j) {
  char *t = cJSON_Print(j);
  if (t) puts(t);
  cJSON_free(t);
}

static int service_list(int argc, char **argv) {
  int json = 0;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (kp_parse("service list", argc, argv, opts, NULL, NULL, 0, NULL)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  cJSON *arr = NULL;
  if (ws.remote[0]) {
    /* the tracking server's GET /services: the same views */
    cJSON *o;
    if (kp_store_http_call(ws.store, "GET", "services", NULL, NULL, NULL, &o) != 0) {
      kp_store_report();
      kp_ws_close(&ws);
      return 1;
    }
    arr = cJSON_DetachItemFromObjectCaseSensitive(o, "services");
    cJSON_Delete(o);
    if (!cJSON_IsArray(arr)) {
      cJSON_Delete(arr);
      kp_err("the tracking server %s answered GET /services without a list of services", ws.remote);
      kp_ws_close(&ws);
      return 1;
    }
  } else {
    kp_service *v;
    size_t n;
    if (kp_store_service_list(ws.store, &v, &n) != 0) { kp_store_report(); kp_ws_close(&ws); return 1; }
    arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++) {
      kp_service_check_alive(&v[i]);
      cJSON_AddItemToArray(arr, kp_view_service(&v[i]));
    }
    kp_services_free(v, n);
  }
  kp_ws_close(&ws);
  if (json) {
    print_json(arr);
  } else {
    printf("%-24s %-8s %-28s %-5s %s\n", "NAME", "STATE", "MODEL", "AUTH", "SCORING URI");
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
#define S(k) jstr(o, k)
      printf("%-24s %-8s %-28s %-5s %s\n", S("name"), S("state"), S("model"),
             cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "auth")) ? "key" : "none", S("scoring_uri"));
#undef S
    }
  }
  cJSON_Delete(arr);
  return 0;
}

static int one_name(const char *cmd, int argc, char **argv, kp_opt *opts, const char **name) {
  const char *pos[1];
  int np = 0;
  if (kp_parse(cmd, argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err(cmd, "missing the service NAME");
  *name = pos[0];
  return 0;
}

static int service_show(int argc, char **argv) {
  int json = 0;
  const char *name = NULL;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {0}};
  if (one_name("service show", argc, argv, opts, &name)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  char dir[4400] = "";
  cJSON *o = NULL;
  if (ws.remote[0]) {
    /* the tracking server's GET /services/{name}: the same view */
    int rc = kp_store_http_call(ws.store, "GET", "services/", name, NULL, NULL, &o);
    if (rc != 0) {
      int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      kp_store_report();
      if (missing) kp_hint("list services with 'kusari service list'");
      kp_ws_close(&ws);
      return 1;
    }
  } else {
    kp_service s;
    int r = find_svc(&ws, name, &s, 1);
    svc_dir(&ws, name, dir, sizeof dir);
    if (r != 0) { kp_ws_close(&ws); return 1; }
    o = kp_view_service(&s);
    kp_service_free(&s);
    int bmax;
    long bwait;
    kp_service_batch_load(dir, &bmax, &bwait); /* 1 and 0 when the service never batched */
    cJSON_AddNumberToObject(o, "batch_max", bmax);
    cJSON_AddNumberToObject(o, "batch_wait_us", (double)bwait);
  }
  kp_ws_close(&ws);
  if (json) {
    print_json(o);
  } else {
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
      char label[64];
      snprintf(label, sizeof label, "%s:", it->string);
      if (cJSON_IsString(it)) printf("%-16s %s\n", label, it->valuestring);
      else if (cJSON_IsNumber(it)) printf("%-16s %.0f\n", label, it->valuedouble);
      else if (cJSON_IsBool(it)) printf("%-16s %s\n", label, cJSON_IsTrue(it) ? "yes (Authorization: Bearer KEY)" : "no");
      else printf("%-16s -\n", label);
    }
    if (dir[0]) printf("%-16s %s/server.log\n", "log:", dir);
    else printf("%-16s on the server's machine ('kusari service logs %s')\n", "log:", name);
  }
  cJSON_Delete(o);
  return 0;
}

static int service_logs(int argc, char **argv) {
  const char *name = NULL, *tail_s = NULL;
  kp_opt opts[] = {{.name = "tail", .val = &tail_s}, {0}};
  if (one_name("service logs", argc, argv, opts, &name)) return 2;
  long long tail = 0;
  if (tail_s && (kp_parse_int(tail_s, &tail) != 0 || tail < 1)) return kp_usage_err("service logs", "--tail must be a positive number of lines");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (ws.remote[0]) {
    /* GET /services/{name}/logs?tail=N: the same text */
    char q[64] = "/logs";
    if (tail > 0) snprintf(q, sizeof q, "/logs?tail=%lld", tail);
    int rc = 0;
    if (kp_store_http_text(ws.store, "services/", name, q, stdout) != 0) {
      int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      kp_store_report();
      if (missing) kp_hint("list services with 'kusari service list'");
      rc = 1;
    }
    kp_ws_close(&ws);
    return rc;
  }
  kp_service s;
  int r = find_svc(&ws, name, &s, 1);
  if (r == 0) kp_service_free(&s);
  char p[4600];
  svc_dir(&ws, name, p, sizeof p - 16);
  strcat(p, "/server.log");
  kp_ws_close(&ws);
  if (r != 0) return 1;
  size_t len = 0;
  char *t = kp_read_file(p, &len);
  if (!t) {
    if (errno == ENOENT) return 0;  /* never started */
    kp_err("cannot read %s: %s", p, strerror(errno));
    return 1;
  }
  const char *from = t;
  if (tail > 0) {
    long long seen = 0;
    for (size_t i = len; i > 0; i--)
      if (t[i - 1] == '\n' && i != len && ++seen == tail) { from = t + i; break; }
  }
  fputs(from, stdout);
  free(t);
  return 0;
}

int kp_service_keys(kp_ws *ws, const char *name, const char *regen, char k[2][65], int *auth, int *running) {
  kp_service s;
  int r = find_svc(ws, name, &s, 0);
  if (r != 0) return r;
  int rc = -1;
  *auth = s.auth;
  *running = 0;
  if (regen) {
    int which = !strcmp(regen, "primary") ? 1 : !strcmp(regen, "secondary") ? 2 : 3;
    /* under the store's write lock, so that two regenerations at once do
     * not mix one's file with the other's digests */
    if (kp_store_begin(ws->store) != 0) { kp_store_report(); goto out; }
    /* the key kept is read from the file; with 'both' there is none to keep */
    if ((which != 3 && keys_read(ws, name, k) != 0)) { kp_store_rollback(ws->store); goto out; }
    for (int i = 0; i < 2; i++)
      if ((which >> i & 1) && new_key(k[i]) != 0) { kp_store_rollback(ws->store); goto out; }
    char h[2][65];
    kp_sha256_hex(k[0], 64, h[0]);
    kp_sha256_hex(k[1], 64, h[1]);
    /* file first: a crash between the two leaves the file ahead of the
     * store ('service keys' then says so), and regenerating again repairs it */
    if (keys_write(ws, name, k[0], k[1]) != 0) { kp_store_rollback(ws->store); goto out; }
    if (kp_store_service_set_keys(ws->store, name, h[0], h[1]) != 0 || kp_store_commit(ws->store) != 0) {
      kp_store_report();
      kp_store_rollback(ws->store);
      goto out;
    }
    *running = s.state == KP_SERVICE_RUNNING;
    if (*running && kill((pid_t)s.pid, SIGHUP) == 0) /* reloads its keys */
      keys_wait_loaded(ws, name, h);
  } else if (keys_read(ws, name, k) != 0 || keys_match(ws, &s, k) != 0) {
    goto out;
  }
  rc = 0;
out:
  kp_service_free(&s);
  return rc;
}

/* what `service keys` prints (keys and notes) */
static void print_keys(const char *name, const char *regen, char k[2][65], int json, int auth, int running) {
  if (regen)
    fprintf(stderr, "Regenerated the %s key%s of service %s%s\n", regen, !strcmp(regen, "both") ? "s" : "", name,
            running ? " (the running server reloads them now)" : "");
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "primary_key", k[0]);
    cJSON_AddStringToObject(o, "secondary_key", k[1]);
    print_json(o);
    cJSON_Delete(o);
  } else {
    printf("primary:   %s\nsecondary: %s\n", k[0], k[1]);
    if (!auth) fprintf(stderr, "note: service %s was deployed without --auth: it does not ask for a key\n", name);
  }
}

static int service_keys(int argc, char **argv) {
  int json = 0;
  const char *name = NULL, *regen = NULL;
  kp_opt opts[] = {{.name = "json", .flag = &json}, {.name = "regenerate", .val = &regen}, {0}};
  if (one_name("service keys", argc, argv, opts, &name)) return 2;
  if (regen && strcmp(regen, "primary") && strcmp(regen, "secondary") && strcmp(regen, "both"))
    return kp_usage_err("service keys", "--regenerate takes 'primary', 'secondary' or 'both'");
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  char k[2][65];
  int auth = 0, running = 0, rc = 1;
  if (ws.remote[0]) {
    /* POST /services/{name}/keys: a write, so only read-write tokens see keys */
    cJSON *o = NULL;
    char body[64];
    snprintf(body, sizeof body, regen ? "{\"regenerate\": \"%s\"}" : "{}", regen ? regen : "");
    if (kp_store_http_call(ws.store, "POST", "services/", name, "/keys", body, &o) != 0) {
      int missing = kp_store_last_error()->code == KP_STORE_ENOTFOUND;
      kp_store_report();
      if (missing) kp_hint("list services with 'kusari service list'");
    } else {
      const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "primary_key"));
      const char *b = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "secondary_key"));
      if (!a || !b || strlen(a) != 64 || strlen(b) != 64) {
        kp_err("the tracking server %s answered without the service's keys", ws.remote);
      } else {
        snprintf(k[0], 65, "%s", a);
        snprintf(k[1], 65, "%s", b);
        print_keys(name, regen, k, json, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "auth")),
                   cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "reloaded")));
        rc = 0;
      }
    }
    cJSON_Delete(o);
    kp_ws_close(&ws);
    return rc;
  }
  int r = kp_service_keys(&ws, name, regen, k, &auth, &running);
  if (r == 1) {
    kp_store_report();
    kp_hint("list services with 'kusari service list'");
  } else if (r == 0) {
    print_keys(name, regen, k, json, auth, running);
    rc = 0;
  }
  kp_ws_close(&ws);
  return rc;
}

static int service_start(int argc, char **argv) {
  const char *name = NULL;
  kp_opt opts[] = {{0}};
  if (one_name("service start", argc, argv, opts, &name)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (ws.remote[0]) {
    int r = control_remote(&ws, name, "start");
    kp_ws_close(&ws);
    return r;
  }
  kp_service s;
  memset(&s, 0, sizeof s);
  int rc = 1, port;
  if (find_svc(&ws, name, &s, 1) != 0) goto out;
  if (s.state == KP_SERVICE_RUNNING) {
    printf("Service %s is already running\n", name);
    print_started(&ws, name);
    rc = 0;
    goto out;
  }
  if (start_server(&ws, name, &port) != 0) goto out;
  print_started(&ws, name);
  rc = 0;
out:
  kp_service_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static int service_stop(int argc, char **argv) {
  const char *name = NULL;
  kp_opt opts[] = {{0}};
  if (one_name("service stop", argc, argv, opts, &name)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (ws.remote[0]) {
    int r = control_remote(&ws, name, "stop");
    kp_ws_close(&ws);
    return r;
  }
  kp_service s;
  int rc = 1;
  if (find_svc(&ws, name, &s, 1) == 0) {
    if (stop_server(&ws, &s) == 0) {
      printf("Service %s stopped\n", name);
      rc = 0;
    }
    kp_service_free(&s);
  }
  kp_ws_close(&ws);
  return rc;
}

static int service_delete(int argc, char **argv) {
  const char *name = NULL;
  kp_opt opts[] = {{0}};
  if (one_name("service delete", argc, argv, opts, &name)) return 2;
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { kp_ws_close(&ws); return 1; }
  if (ws.remote[0]) {
    int r = control_remote(&ws, name, "delete");
    kp_ws_close(&ws);
    return r;
  }
  kp_service s;
  memset(&s, 0, sizeof s);
  int rc = 1;
  if (find_svc(&ws, name, &s, 1) != 0 || stop_server(&ws, &s) != 0) goto out;
  if (kp_store_service_delete(ws.store, name) != 0) { kp_store_report(); goto out; }
  char dir[4400];
  svc_dir(&ws, name, dir, sizeof dir);
  kp_rm_rf(dir);
  printf("Deleted service %s\n", name);
  rc = 0;
out:
  kp_service_free(&s);
  kp_ws_close(&ws);
  return rc;
}

static const kp_cmd cmds[] = {
  {"list", service_list, "list services with their state and scoring URI",
   "usage: kusari service list [--json]\n\nLists the workspace's scoring services.\n"},
  {"show", service_show, "show a service: state, scoring URI, model",
   "usage: kusari service show NAME [--json]\n\nShows a service's state (Running, Stopped, Failed), scoring and health\n"
   "URIs, model, auth, workers, limits, batching (batch_max, batch_wait_us) and its\n"
   "last error.\n"},
  {"logs", service_logs, "print a service's server log",
   "usage: kusari service logs NAME [--tail N]\n\nPrints the server's log (start, stop, errors, timeouts).\n"},
  {"keys", service_keys, "print or regenerate a service's keys",
   "usage: kusari service keys NAME [--regenerate primary|secondary|both] [--json]\n\n"
   "Prints the primary and secondary keys (send 'Authorization: Bearer KEY'), read\n"
   "from WORKSPACE/services/NAME/keys (mode 0600): the store keeps only their\n"
   "sha256. --regenerate replaces one key (or both); with a running server it\n"
   "returns once the server checks keys against the new ones (up to 10 s).\n"},
  {"start", service_start, "start a stopped service (same keys, same model)",
   "usage: kusari service start NAME\n\nStarts the service's server again with its model, options and keys.\n"},
  {"stop", service_stop, "stop a service's server (keeps the service)",
   "usage: kusari service stop NAME\n\nStops the server (SIGTERM, SIGKILL after 10 s). 'service start' restarts it.\n"},
  {"delete", service_delete, "stop and delete a service",
   "usage: kusari service delete NAME\n\nStops the server and deletes the service, its keys and its files.\n"},
  {"serve", kp_service_serve, "run a service's server in the foreground (what deploy starts)",
   "usage: kusari service serve NAME [--ready-fd FD]\n\n"
   "Runs the server of service NAME in the foreground until SIGTERM or Ctrl-C.\n"
   "'kusari model deploy' and 'kusari service start' run this detached.\n"},
  {NULL, NULL, NULL, NULL},
};

int kp_cmd_service(int argc, char **argv);
int kp_cmd_service(int argc, char **argv) {
  return kp_dispatch("service",
                     "usage: kusari service SUBCOMMAND\n\n"
                     "Scoring services: HTTP endpoints serving registered models, started with\n"
                     "'kusari model deploy MODEL[:VERSION] --name SERVICE [--auth]'.\n",
                     cmds, argc, argv);
}
