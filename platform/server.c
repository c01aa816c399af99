/*
 * platform/server.c — the tracking server's HTTP side (`kusari server`,
 * docs/SERVER.md): libmicrohttpd with a thread pool of --workers threads,
 * each holding its own connection to the store (a thread-local kp_store,
 * opened on its first request), Bearer tokens checked against their sha256
 * in the store, and the routing of /api/v1 to server_api.c.
 *
 * Every error is JSON, {"error": {"code": "...", "message": "..."}}, with
 * its status: the request's head over the limits (431, 414) and bodies over
 * --max-body (413) are checked here so that libmicrohttpd's own HTML pages
 * are not what a client sees. Long polls (GET .../wait, GET .../logs?wait=)
 * suspend their connection (MHD_suspend_connection) so that the worker goes
 * on serving others; a ticker thread resumes every suspended connection
 * each 200 ms and its handler looks again. SIGTERM or SIGINT answers the
 * suspended requests with what there is and stops the server.
 *
 * libmicrohttpd's connection timeout is an idle one: a client that sends a
 * byte now and then would hold its connection for ever. As in the scoring
 * server (service_server.c), a watchdog thread shuts down any connection
 * whose current request has taken more than 3 x --timeout, head, body and
 * answer together; a long poll, suspended, is exempt while it waits (its
 * wait is bounded by KP_SERVER_MAX_WAIT).
 */
#include "server.h"
#include "server_api.h"
#include "server_web.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS_BYTES (8 * 1024)
#define MAX_HEADER_LINES 100
#define MAX_URL_BYTES (4 * 1024)
#define CONNECTION_MEMORY (64 * 1024)
#define MAX_CONNECTIONS 4096
#define MAX_CONNECTIONS_PER_CLIENT 256
#define TICK_NS (200 * 1000 * 1000)

static struct {
  kp_ws *ws;
  char db[4200];
  int auth;
  size_t max_body;
  double body_deadline;
  pthread_key_t store_key;
  /* suspended long polls */
  pthread_mutex_t mu;
  srv_req *waiting;
  int stopping;
  pthread_t ticker;
  atomic_int tick_stop;
  atomic_int in_flight;  /* requests begun and not completed */
} G;

double srv_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void srv_log(const char *fmt, ...) {
  char t[64], msg[1024];
  kp_fmt_time(kp_now(), t, sizeof t);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s %s\n", t, msg);
}

const kp_ws *srv_ws(void) { return G.ws; }

int srv_stopping(void) {
  pthread_mutex_lock(&G.mu);
  int s = G.stopping;
  pthread_mutex_unlock(&G.mu);
  return s;
}

/* ---- the worker's store ----------------------------------------------------------- */
static void store_free(void *p) { kp_store_close(p); }

kp_store *srv_store(void) {
  kp_store *s = pthread_getspecific(G.store_key);
  if (s) return s;
  if (kp_store_open(G.db, NULL, NULL, &s) != 0) return NULL;
  if (pthread_setspecific(G.store_key, s) != 0) {
    kp_store_close(s);
    kp_store_fail(KP_STORE_EBACKEND, "out of memory");
    return NULL;
  }
  return s;
}

/* ---- the whole request's time --------------------------------------------------- */
/* One slot per socket: when its current request began (0: no connection, or
 * a long poll waiting). Its lock is taken at a connection's opening and
 * closing and by the watchdog, so the socket the watchdog shuts down is the
 * connection it looked at. */
typedef struct cslot {
  _Atomic int64_t since_ms;
  atomic_int lock;
} cslot;

static struct {
  cslot *slots;
  int n;
  atomic_int top;  /* the highest socket seen */
  atomic_int stop;
  int64_t limit_ms;
  pthread_t th;
  int started;
  atomic_ullong cut;
} W;

static int64_t now_ms(void) { return (int64_t)(srv_mono() * 1000.0) + 1; /* never 0 */ }

static void slot_lock(cslot *c) {
  int z = 0;
  while (!atomic_compare_exchange_weak_explicit(&c->lock, &z, 1, memory_order_acquire, memory_order_relaxed)) z = 0;
}
static void slot_unlock(cslot *c) { atomic_store_explicit(&c->lock, 0, memory_order_release); }

static cslot *conn_slot(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci || !W.slots || ci->connect_fd < 0 || ci->connect_fd >= W.n) return NULL;
  return &W.slots[ci->connect_fd];
}

/* the connection's request clock: starts now (ms = now_ms()) or stops (0) */
static void slot_set(struct MHD_Connection *c, int64_t ms) {
  cslot *sl = conn_slot(c);
  if (sl) atomic_store_explicit(&sl->since_ms, ms, memory_order_relaxed);
}

static void notify_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                              enum MHD_ConnectionNotificationCode code) {
  (void)cls;
  (void)socket_context;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci || !W.slots || ci->connect_fd < 0 || ci->connect_fd >= W.n) return;
  int fd = ci->connect_fd;
  cslot *sl = &W.slots[fd];
  slot_lock(sl);
  atomic_store_explicit(&sl->since_ms, code == MHD_CONNECTION_NOTIFY_STARTED ? now_ms() : 0, memory_order_relaxed);
  slot_unlock(sl);
  int t = atomic_load_explicit(&W.top, memory_order_relaxed);
  while (code == MHD_CONNECTION_NOTIFY_STARTED && fd > t &&
         !atomic_compare_exchange_weak_explicit(&W.top, &t, fd, memory_order_relaxed, memory_order_relaxed)) {
  }
}

static void *watchdog(void *arg) {
  (void)arg;
  const struct timespec tick = {0, TICK_NS};
  unsigned long long logged = 0;
  while (!atomic_load(&W.stop)) {
    nanosleep(&tick, NULL);
    int64_t now = now_ms();
    int top = atomic_load_explicit(&W.top, memory_order_relaxed);
    for (int fd = 0; fd <= top && fd < W.n; fd++) {
      cslot *sl = &W.slots[fd];
      int64_t t = atomic_load_explicit(&sl->since_ms, memory_order_relaxed);
      if (!t || now - t <= W.limit_ms) continue;
      slot_lock(sl);
      t = atomic_load_explicit(&sl->since_ms, memory_order_relaxed);
      if (t && now - t > W.limit_ms) {
        shutdown(fd, SHUT_RDWR);
        atomic_store_explicit(&sl->since_ms, 0, memory_order_relaxed);
        atomic_fetch_add(&W.cut, 1);
      }
      slot_unlock(sl);
    }
    unsigned long long cut = atomic_load(&W.cut);
    if (cut != logged) {
      srv_log("closed %llu connection(s) whose request took over %lld s in all (slow clients); %llu so far",
              cut - logged, (long long)(W.limit_ms / 1000), cut);
      logged = cut;
    }
  }
  return NULL;
}

static int watchdog_start(double limit_s) {
  struct rlimit rl;
  W.n = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
  W.slots = calloc((size_t)W.n, sizeof *W.slots);
  if (!W.slots) return -1;
  W.limit_ms = (int64_t)(limit_s * 1000.0);
  if (pthread_create(&W.th, NULL, watchdog, NULL) != 0) return -1;
  W.started = 1;
  return 0;
}

/* after the daemon stopped (no more notifications) */
static void watchdog_stop(void) {
  if (W.started) {
    atomic_store(&W.stop, 1);
    pthread_join(W.th, NULL);
    W.started = 0;
  }
  free(W.slots);
  W.slots = NULL;
}

/* ---- responses ------------------------------------------------------------------- */
/* the methods of the path a 405 answers (its Allow header); per worker */
static _Thread_local const char *t_allow;

enum MHD_Result srv_send(struct MHD_Connection *c, unsigned code, char *body, size_t len, const char *ctype) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (code == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  if (code == 405 && t_allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, t_allow);
  enum MHD_Result rc = MHD_queue_response(c, code, resp);
  MHD_destroy_response(resp);
  return rc;
}

enum MHD_Result srv_json(struct MHD_Connection *c, unsigned code, cJSON *o) {
  char *t = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!t) return srv_error(c, 500, "internal", "out of memory");
  size_t l = strlen(t);
  char *b = malloc(l + 2);
  if (!b) {
    cJSON_free(t);
    return MHD_NO;
  }
  memcpy(b, t, l);
  b[l] = '\n';
  b[l + 1] = '\0';
  cJSON_free(t);
  return srv_send(c, code, b, l + 1, "application/json");
}

enum MHD_Result srv_error(struct MHD_Connection *c, unsigned code, const char *ecode, const char *fmt, ...) {
  char msg[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (code >= 500) srv_log("%u %s", code, msg);
  cJSON *o = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "code", ecode);
  cJSON_AddStringToObject(e, "message", msg);
  char *t = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (!t) return MHD_NO;
  size_t l = strlen(t);
  char *b = malloc(l + 2);
  if (!b) {
    cJSON_free(t);
    return MHD_NO;
  }
  memcpy(b, t, l);
  b[l] = '\n';
  b[l + 1] = '\0';
  cJSON_free(t);
  return srv_send(c, code, b, l + 1, "application/json");
}

enum MHD_Result srv_store_error(struct MHD_Connection *c) {
  const kp_store_error *e = kp_store_last_error();
  unsigned code = 500;
  switch (e->code) {
    case KP_STORE_ENOTFOUND: code = 404; break;
    case KP_STORE_EEXISTS:
    case KP_STORE_ECONFLICT: code = 409; break;
    case KP_STORE_EINVAL: code = 400; break;
    case KP_STORE_EBACKEND: code = 503; break;
    case KP_STORE_OK: break;
  }
  return srv_error(c, code, kp_store_code_name(e->code), "%s", e->message[0] ? e->message : "the store failed");
}

/* ---- long polls ------------------------------------------------------------------ */
int srv_suspend(struct MHD_Connection *c, srv_req *r) {
  pthread_mutex_lock(&G.mu);
  if (G.stopping) {
    pthread_mutex_unlock(&G.mu);
    return -1;
  }
  r->conn = c;
  slot_set(c, 0);  /* a waiting long poll is exempt from the request deadline */
  MHD_suspend_connection(c);
  r->next = G.waiting;
  G.waiting = r;
  pthread_mutex_unlock(&G.mu);
  return 0;
}

void srv_stream(struct MHD_Connection *c) { slot_set(c, 0); }

/* resumes every suspended connection (their handlers look again) */
static void resume_all(void) {
  pthread_mutex_lock(&G.mu);
  srv_req *w = G.waiting;
  G.waiting = NULL;
  while (w) {
    srv_req *next = w->next;
    w->next = NULL;
    MHD_resume_connection(w->conn);
    w = next;
  }
  pthread_mutex_unlock(&G.mu);
}

static void *ticker(void *arg) {
  (void)arg;
  const struct timespec tick = {0, TICK_NS};
  while (!atomic_load(&G.tick_stop)) {
    nanosleep(&tick, NULL);
    resume_all();
  }
  return NULL;
}

/* ---- auth ------------------------------------------------------------------------ */
/* 0 when the request may go on; else the status to answer (401, 403, 503) */
static unsigned check_auth(struct MHD_Connection *c, kp_store *st, int write, char *why, size_t whyn) {
  if (!G.auth) return 0;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
    snprintf(why, whyn, "missing token: send 'Authorization: Bearer TOKEN' (create one with 'kusari server token create NAME')");
    return 401;
  }
  h += 7;
  while (*h == ' ') h++;
  size_t l = strlen(h);
  while (l && (h[l - 1] == ' ' || h[l - 1] == '\t')) l--;
  char hex[65];
  kp_sha256_hex(h, l, hex);
  int found = 0, ro = 1;
  if (kp_store_token_check(st, hex, &found, &ro) != 0) {
    snprintf(why, whyn, "cannot check the token: %.400s", kp_store_last_error()->message);
    return 503;
  }
  if (!found) {
    snprintf(why, whyn, "unknown or revoked token (see 'kusari server token list')");
    return 401;
  }
  if (write && ro) {
    snprintf(why, whyn, "this token is read-only; this request writes (create a read-write token)");
    return 403;
  }
  return 0;
}

/* ---- requests --------------------------------------------------------------------- */
typedef struct head_size {
  size_t bytes, lines;
} head_size;

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  head_size *h = cls;
  h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
  h->lines++;
  return MHD_YES;
}

static enum MHD_Result refusal(struct MHD_Connection *c, srv_req *r) {
  switch (r->refuse) {
    case 431:
      return srv_error(c, 431, "headers_too_large",
                       "the request's headers (%zu bytes, %zu lines) are over the limits of %d bytes and %d lines",
                       r->head_n, r->head_lines, MAX_HEADERS_BYTES, MAX_HEADER_LINES);
    case 414:
      return srv_error(c, 414, "uri_too_long", "the request's path (%zu bytes) is over the limit of %d bytes", r->head_n,
                       MAX_URL_BYTES);
    case 417: return srv_error(c, 417, "expectation_failed", "the server knows no expectation but 'Expect: 100-continue'");
    case 413:
      return srv_error(c, 413, "too_large", "the body (%zu bytes) is over this server's limit of %zu bytes (--max-body)",
                       r->head_n, G.max_body);
    default: return srv_error(c, 500, "internal", "no answer for this request");
  }
}

static enum MHD_Result first_call(struct MHD_Connection *c, srv_req *r, const char *url) {
  head_size hs = {0, 0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, add_header_size, &hs);
  r->head_lines = hs.lines;
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  const char *ex = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
  unsigned long long cln = cl ? strtoull(cl, NULL, 10) : 0;
  int body = cln > 0 || (!cl && te);
  int expect100 = ex && !strcasecmp(ex, "100-continue");
  unsigned code = 0;
  if (hs.bytes > MAX_HEADERS_BYTES || hs.lines > MAX_HEADER_LINES) {
    code = 431;
    r->head_n = hs.bytes;
  } else if (strlen(url) > MAX_URL_BYTES) {
    code = 414;
    r->head_n = strlen(url);
  } else if (ex && !expect100) {
    code = 417;
  }
  if (cln > G.max_body) {
    /* too much to read and drop: refused now (the connection closes) */
    if (!code) {
      code = 413;
      r->head_n = (size_t)cln;
    }
    r->refuse = code;
    return refusal(c, r);
  }
  r->refuse = code;
  if (code && body && expect100) return refusal(c, r);
  r->expect = (size_t)cln;
  return MHD_YES;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  srv_req *r = *con_cls;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->t0 = srv_mono();
    *con_cls = r;
    atomic_fetch_add(&G.in_flight, 1);
    return first_call(c, r, url);
  }
  if (*upload_size) {
    size_t k = *upload_size;
    *upload_size = 0;
    if (srv_mono() - r->t0 > G.body_deadline) {
      srv_log("a request body took over %.0f s (a trickling client); connection closed", G.body_deadline);
      return MHD_NO;
    }
    if (r->refuse || r->too_big) {
      r->n += k;  /* read and dropped, up to the limit */
      return r->n > G.max_body ? MHD_NO : MHD_YES;
    }
    if (r->n + k > G.max_body) {
      r->too_big = 1;
      r->head_n = r->n + k;
      free(r->body);
      r->body = NULL;
      r->cap = 0;
      r->n += k;
      return MHD_YES;
    }
    if (r->n + k + 1 > r->cap) {
      size_t cap = r->cap ? r->cap : r->expect > k ? r->expect + 1 : 8192;
      while (cap < r->n + k + 1) cap *= 2;
      char *nb = realloc(r->body, cap);
      if (!nb) return MHD_NO;
      r->body = nb;
      r->cap = cap;
    }
    memcpy(r->body + r->n, upload, k);
    r->n += k;
    r->body[r->n] = '\0';
    return MHD_YES;
  }
  if (r->refuse) return refusal(c, r);
  if (r->too_big)
    return srv_error(c, 413, "too_large", "the body is over this server's limit of %zu bytes (--max-body)", G.max_body);
  if (srv_web_wants(url)) return srv_web(c, url, method);  /* the web UI's files (server_web.c) */
  srv_route rt;
  unsigned miss = srv_match(url, method, &rt);
  if (miss == 404)
    return srv_error(c, 404, "not_found", "no such path '%.300s' (the API is under /api/v1; see docs/openapi.json)", url);
  if (miss == 405) {
    t_allow = rt.allow;
    enum MHD_Result rc = srv_error(c, 405, "method_not_allowed", "%.20s is not allowed on %.300s; use %s", method, url, rt.allow);
    t_allow = NULL;
    return rc;
  }
  kp_store *st = srv_store();
  if (!st) return srv_error(c, 503, "backend", "cannot open the store: %s", kp_store_last_error()->message);
  if (!r->authorized) {  /* once per request (a long poll's handler runs again on each tick) */
    char why[512];
    unsigned a = check_auth(c, st, rt.write, why, sizeof why);
    if (a) return srv_error(c, a, a == 401 ? "unauthorized" : a == 403 ? "forbidden" : "backend", "%s", why);
    r->authorized = 1;
  }
  return srv_dispatch(c, r, &rt, st);
}

/* Path escapes are decoded as libmicrohttpd does, except in a path holding
 * %00 (left as it came: it names nothing, 404). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  for (const char *p = s; (p = strchr(p, '%')); p++)
    if (p[1] == '0' && p[2] == '0') return strlen(s);
  return MHD_http_unescape(s);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls;
  srv_req *r = *con_cls;
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) slot_set(c, now_ms());  /* the next request's clock */
  if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) srv_log("a connection timed out (slow or idle client) and was closed");
  if (r) {
    free(r->body);
    free(r);
    atomic_fetch_sub(&G.in_flight, 1);
  }
  *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t l = strlen(msg);
  while (l && msg[l - 1] == '\n') msg[--l] = '\0';
  srv_log("http: %s", msg);
}

int kp_server_serve(kp_ws *ws, const kp_server_opts *o) {
  memset(&G, 0, sizeof G);
  memset(&W, 0, sizeof W);
  G.ws = ws;
  /* the workspace's store: its PostgreSQL database, else its kusari.db */
  if (ws->store_uri[0]) snprintf(G.db, sizeof G.db, "%s", ws->store_uri);
  else snprintf(G.db, sizeof G.db, "%s/kusari.db", ws->root);
  G.auth = !o->no_auth;
  G.max_body = o->max_body;
  G.body_deadline = 3.0 * o->timeout;
  pthread_mutex_init(&G.mu, NULL);
  /* blocked before any thread exists: only the main thread takes them */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (pthread_key_create(&G.store_key, store_free) != 0) return kp_err("pthread_key_create failed"), 1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)o->port);
  if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) {
    kp_err("--host '%s' is not an IPv4 address", o->host);
    kp_hint("use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)");
    return 2;
  }
  if (srv_web_setup(o->web_root, o->chartjs) != 0) return 2;
  if (watchdog_start(G.body_deadline) != 0) return kp_err("cannot start the connections' watchdog"), 1;
  if (pthread_create(&G.ticker, NULL, ticker, NULL) != 0) {
    watchdog_stop();
    return kp_err("cannot start the server's ticker thread"), 1;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
  struct MHD_Daemon *d =
    MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, handler, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->workers,
                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout, MHD_OPTION_CONNECTION_LIMIT,
                     (unsigned)MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS_PER_CLIENT,
                     MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                     (size_t)CONNECTION_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_NOTIFY_CONNECTION, notify_connection,
                     NULL, MHD_OPTION_END);
  int rc = 1;
  if (!d) {
    kp_err("cannot listen on %s:%d (in use, or not an address of this machine)", o->host, o->port);
    kp_hint("choose another --port, or --port 0 for a free one");
    goto out;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  int port = info ? info->port : o->port;
  printf("http://%s:%d\n", o->host, port);
  fflush(stdout);
  srv_log("serving workspace %s on http://%s:%d/api/v1 (%d workers, auth %s, body limit %zu bytes, timeout %d s)",
          ws->root, o->host, port, o->workers, G.auth ? "on" : "off", G.max_body, o->timeout);
  srv_log("web UI at http://%s:%d/ (files %s, Chart.js %s)", o->host, port,
          srv_web_root()[0] ? srv_web_root() : "not found: --web-root DIR",
          srv_web_chartjs()[0] ? srv_web_chartjs() : "not found: --chartjs FILE");
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    srv_log("signal %d: stopping", sig);
    break;
  }
  /* no request suspends from now on; the suspended ones answer now */
  pthread_mutex_lock(&G.mu);
  G.stopping = 1;
  pthread_mutex_unlock(&G.mu);
  resume_all();
  /* the requests in flight (the resumed long polls among them) are
   * answered before the connections close, for up to 10 s */
  for (int i = 0; i < 100 && atomic_load(&G.in_flight) > 0; i++) {
    const struct timespec t = {0, 100 * 1000 * 1000};
    nanosleep(&t, NULL);
    resume_all();
  }
  MHD_stop_daemon(d);
  srv_log("stopped");
  rc = 0;
out:
  atomic_store(&G.tick_stop, 1);
  pthread_join(G.ticker, NULL);
  watchdog_stop();
  kp_store *mine = pthread_getspecific(G.store_key);
  if (mine) kp_store_close(mine);
  pthread_key_delete(G.store_key);
  pthread_mutex_destroy(&G.mu);
  return rc;
}
