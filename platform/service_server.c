/*
 * platform/service_server.c — the scoring server of a service (what
 * `kusari model deploy` starts detached, `kusari service serve NAME` in the
 * foreground): libmicrohttpd with a thread pool of --workers threads (epoll),
 * the built-in scorer (model.json + model.npz) or a user entry library
 * (init(model_dir) / run(input_json), loaded with dlopen).
 *
 *   POST /score    {"data": [[...], ...]} -> {"predictions": [...], "probabilities": [[...], ...]}
 *   GET  /health   {"status": "ok", ...}
 *   GET  /metrics  Prometheus text: requests by code, latency histogram
 *
 * Every error is a JSON body {"error": "..."} with its status: 400 (bad
 * JSON, shapes, non-finite numbers, empty batch, outputs that are not
 * finite), 401 (auth), 404, 405, 413 (body over the limit), 414, 417, 431,
 * 500. Idle connections are closed after --timeout
 * (MHD_OPTION_CONNECTION_TIMEOUT), a request that takes over 3 x --timeout
 * in all by the watchdog; a client address holds at most 256 connections.
 * Keys are reloaded from the store on SIGHUP (`service keys --regenerate`,
 * which waits for services/NAME/keys_loaded); SIGTERM stops the server.
 */
#include "service.h"

#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEY_HASH_LEN 32 /* what the store keeps of it: its sha256 */
#define CHUNK_ROWS 1024
/* Size limits of a request's head, checked by the handler so that they are
 * answered in JSON (431 / 414) like every other error. libmicrohttpd keeps a
 * request's head in the connection's memory pool and answers with its own
 * HTML page when the head does not fit, so the pool is made larger than
 * these limits (MHD_OPTION_CONNECTION_MEMORY_LIMIT; pages of it that are
 * never written are never touched). Beyond the pool, libmicrohttpd's page
 * remains: see docs/SERVING.md. */
#define MAX_HEADERS_BYTES (8 * 1024)
#define MAX_HEADER_LINES 100
#define MAX_URL_BYTES (4 * 1024)
/* libmicrohttpd gives half of the pool to the read buffer and takes 64
 * bytes of the other half per header line: 64 KiB holds about 500 lines,
 * so requests up to well past MAX_HEADER_LINES get kusari's JSON 431 (a
 * 32 KiB pool answered ~450 short lines with libmicrohttpd's HTML 431) */
#define CONNECTION_MEMORY (64 * 1024)
#define MAX_CONNECTIONS 4096
/* connections one client address may hold at once: a client opening
 * thousands of slow connections takes at most this many from the others */
#define MAX_CONNECTIONS_PER_CLIENT 256
/* the network's output of an input is NaN or infinite (finite float32
 * inputs too large for it: 784 values of 3.4e38 overflow a Linear) */
#define NONFINITE_FMT                                                                                       \
  "input %lld: the network's outputs are not finite numbers (its values are too large for this model?); " \
  "nothing to answer in JSON"
static const double lat_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NBUCKETS (sizeof lat_buckets / sizeof lat_buckets[0])

typedef struct server {
  char name[256], model[300];
  kp_scorer *scorer;
  void *dl;
  char *(*e_run)(const char *);
  pthread_mutex_t e_mu;
  int auth;
  /* the sha256 of the two keys (the store keeps nothing else of them),
   * read on every request without a lock (a sequence lock: the main
   * thread rewrites them on SIGHUP, rarely; a reader that saw a write in
   * progress reads again); atomic words, so no data race */
  _Atomic uint64_t keys[2][KEY_HASH_LEN / 8];
  atomic_uint key_seq;
  EVP_MD *sha256;        /* fetched once: no lookup on the request path */
  pthread_key_t md_key;  /* each worker's EVP_MD_CTX */
  /* the description's "input_range" (checked on every input value) and
   * "input_preprocessing" (quoted when one is outside) */
  int has_range;
  double lo, hi;
  const char *prep;
  size_t max_body;
  double body_deadline;  /* seconds a request's body may take in all (trickling clients) */
  pthread_key_t ctx_key;
  /* metrics */
  atomic_ullong by_code[600];
  atomic_ullong lat_count[NBUCKETS + 1];
  atomic_ullong lat_sum_us;
  double started;
} server;

static server S;

typedef struct req req;
struct req {
  char *body;
  size_t n, cap;
  int too_big;
  unsigned refuse;    /* the status of a refused request (431, 414, 417, 404, 405, 401), answered at its end */
  size_t head_n;      /* the size that was over the limit */
  size_t head_lines;
  /* batching (--batch-max > 1): a single-sample request waits, suspended,
   * in the batcher's queue; the batcher fills 'ans' (or 'err') and resumes */
  struct MHD_Connection *conn;
  float *x;
  char *ans;
  size_t ans_n;
  int state;          /* 0, 1 queued, 2 answered */
  int fail;           /* the batch failed: 500 */
  struct req *next;
  int kind;          /* 1 score, 2 health, 3 metrics */
  size_t expect;     /* Content-Length (within the body limit), 0 if unknown */
  double t0;
};

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void slog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void slog(const char *fmt, ...) {
  char t[64], msg[1024];
  kp_fmt_time(kp_now(), t, sizeof t);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s %s\n", t, msg);
}

/* ---- the whole request's time -------------------------------------------------------
 * libmicrohttpd's MHD_OPTION_CONNECTION_TIMEOUT is an idle timeout: a
 * client sending one header byte just under it holds its connection for
 * ever, and 4,096 of them took a service down. Each connection has a slot,
 * indexed by its socket, holding when its current request began (the
 * connection's opening, then the end of its previous request); a watchdog
 * thread shuts down (shutdown(2): libmicrohttpd then closes it) any
 * connection whose request has taken more than 3 x --timeout, headers,
 * body and answer together. The slot's lock is taken only at a
 * connection's opening and closing (libmicrohttpd reports the closing
 * before it closes the socket) and by the watchdog, so the socket it shuts
 * down is always the connection it looked at; requests take no lock. */
typedef struct cslot {
  _Atomic int64_t since_ms;  /* 0: no connection */
  atomic_int lock;
} cslot;

static struct {
  cslot *slots;
  int n;
  atomic_int maxfd;
  atomic_int stop;
  int64_t limit_ms;
  pthread_t th;
  int started;
  atomic_ullong cut;
} W;

static int64_t now_ms(void) { return (int64_t)(mono() * 1000.0) + 1; /* never 0 */ }

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
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    int m = atomic_load_explicit(&W.maxfd, memory_order_relaxed);
    while (fd > m && !atomic_compare_exchange_weak_explicit(&W.maxfd, &m, fd, memory_order_relaxed, memory_order_relaxed)) {}
  }
}


static void *watchdog(void *arg) {
  (void)arg;
  const struct timespec tick = {0, 200 * 1000 * 1000};
  unsigned long long logged = 0;
  while (!atomic_load(&W.stop)) {
    nanosleep(&tick, NULL);
    int64_t now = now_ms();
    int top = atomic_load_explicit(&W.maxfd, memory_order_relaxed);
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
      slog("closed %llu connection(s) whose request took over %lld s in all (slow clients); %llu so far",
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

/* ---- responses ------------------------------------------------------------------ */
static enum MHD_Result send_buf(struct MHD_Connection *c, req *r, unsigned code, char *body, size_t len,
                                const char *ctype, int must_free) {
  struct MHD_Response *resp =
    must_free ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
              : MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
  if (!resp) {
    if (must_free) free(body);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (code == 405) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r && r->kind == 1 ? "POST" : "GET");
  if (code == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  enum MHD_Result rc = MHD_queue_response(c, code, resp);
  MHD_destroy_response(resp);
  if (code < 600) atomic_fetch_add_explicit(&S.by_code[code], 1, memory_order_relaxed);
  if (r) {
    double dt = mono() - r->t0;
    size_t b = 0;
    while (b < NBUCKETS && dt > lat_buckets[b]) b++;
    atomic_fetch_add_explicit(&S.lat_count[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&S.lat_sum_us, (unsigned long long)(dt * 1e6), memory_order_relaxed);
  }
  return rc;
}

static enum MHD_Result send_err(struct MHD_Connection *c, req *r, unsigned code, const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));
static enum MHD_Result send_err(struct MHD_Connection *c, req *r, unsigned code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject();
  char *out = NULL;
  if (o && cJSON_AddStringToObject(o, "error", msg) && cJSON_AddNumberToObject(o, "status", code))
    out = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  if (code >= 500) slog("%u %s", code, msg);
  if (!out) return send_buf(c, r, code, "{\"error\": \"out of memory\"}", 26, "application/json", 0);
  char *copy = strdup(out);
  cJSON_free(out);
  if (!copy) return MHD_NO;
  return send_buf(c, r, code, copy, strlen(copy), "application/json", 1);
}

/* ---- output buffer -------------------------------------------------------------- */
typedef struct obuf { char *s; size_t n, cap; int oom; } obuf;
static void oput(obuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void oput(obuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->n + (size_t)k + 1) cap *= 2;
    char *ns = realloc(b->s, cap);
    if (!ns) { b->oom = 1; return; }
    b->s = ns;
    b->cap = cap;
  }
}

/* room for k more bytes (and a NUL) */
static int oreserve(obuf *b, size_t k) {
  if (b->oom) return -1;
  if (b->s && b->n + k < b->cap) return 0;
  size_t cap = b->cap ? b->cap * 2 : 4096;
  while (cap < b->n + k + 1) cap *= 2;
  char *ns = realloc(b->s, cap);
  if (!ns) { b->oom = 1; return -1; }
  b->s = ns;
  b->cap = cap;
  return 0;
}

static void oraw(obuf *b, const char *s, size_t k) {
  if (oreserve(b, k) != 0) return;
  memcpy(b->s + b->n, s, k);
  b->n += k;
  b->s[b->n] = '\0';
}

/* ---- auth ------------------------------------------------------------------------- */
/* The given key's sha256 against the two stored ones: the time depends on
 * the given key's length only (the digest runs over all of it; every byte
 * of both digests is compared). The digest context is the worker's own. */
static void md_free(void *p) { EVP_MD_CTX_free(p); }

static int key_ok(const char *given, size_t glen) {
  EVP_MD_CTX *md = pthread_getspecific(S.md_key);
  if (!md) {
    md = EVP_MD_CTX_new();
    if (!md) return 0;
    if (pthread_setspecific(S.md_key, md) != 0) { EVP_MD_CTX_free(md); return 0; }
  }
  unsigned char h[EVP_MAX_MD_SIZE];
  unsigned hl = 0;
  if (EVP_DigestInit_ex2(md, S.sha256, NULL) != 1 || EVP_DigestUpdate(md, given, glen) != 1 ||
      EVP_DigestFinal_ex(md, h, &hl) != 1 || hl != KEY_HASH_LEN)
    return 0;
  unsigned char keys[2][KEY_HASH_LEN];
  for (;;) {
    unsigned s0 = atomic_load_explicit(&S.key_seq, memory_order_acquire);
    if (s0 & 1) continue;  /* a reload is writing them */
    for (int k = 0; k < 2; k++)
      for (int w = 0; w < KEY_HASH_LEN / 8; w++) {
        uint64_t v = atomic_load_explicit(&S.keys[k][w], memory_order_relaxed);
        memcpy(keys[k] + 8 * w, &v, 8);
      }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&S.key_seq, memory_order_relaxed) == s0) break;
  }
  int ok = 0;
  for (int k = 0; k < 2; k++) {
    unsigned diff = 0;
    for (size_t i = 0; i < KEY_HASH_LEN; i++) diff |= keys[k][i] ^ h[i];
    ok |= diff == 0;
  }
  return ok;
}

static int authorized(struct MHD_Connection *c) {
  if (!S.auth) return 1;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
  h += 7;
  while (*h == ' ') h++;
  size_t l = strlen(h);
  while (l && (h[l - 1] == ' ' || h[l - 1] == '\t')) l--;
  return key_ok(h, l);
}

/* ---- scoring ------------------------------------------------------------------------ */
static void ctx_free(void *p) { ks_ctx_free(p); }

static ks_ctx *thread_ctx(void) {
  ks_ctx *ctx = pthread_getspecific(S.ctx_key);
  if (!ctx) {
    ctx = ks_ctx_new();
    if (ctx && pthread_setspecific(S.ctx_key, ctx) != 0) { ks_ctx_free(ctx); ctx = NULL; }
  }
  return ctx;
}

/* ---- input parsing -------------------------------------------------------------------- */
/* The fast path is kp_json_rows (service_json.c): exactly {"data": [[n, ...],
 * ...]}; anything else takes the strict path (kp_json_data), which accepts any valid JSON
 * and explains what is wrong. */

/* The general path (kp_json_data): any strict JSON, checked against the
 * model's width before anything is allocated; on a problem answers with
 * its error and returns -1 (*rc set). */
static int parse_slow(struct MHD_Connection *c, req *r, int64_t width, float **xo, int64_t *no, enum MHD_Result *rc) {
  kp_json_err e;
  if (kp_json_data(r->body ? r->body : "", r->n, width, xo, no, &e) == 0) return 0;
  long long i = (long long)e.input, k = (long long)e.value, w = (long long)width;
  switch (e.kind) {
    case KP_JE_MALFORMED:
      *rc = send_err(c, r, 400, "malformed JSON (near byte %zu); send {\"data\": [[...], ...]}", e.at);
      break;
    case KP_JE_NO_DATA:
      *rc = send_err(c, r, 400, "the body must be a JSON object with \"data\": a list of inputs, each a list of %lld numbers", w);
      break;
    case KP_JE_EMPTY: *rc = send_err(c, r, 400, "empty batch: \"data\" holds no inputs"); break;
    case KP_JE_ROW:
      *rc = send_err(c, r, 400, "input %lld is not a list of numbers (each input is a flattened list of %lld numbers)", i, w);
      break;
    case KP_JE_NOT_NUMBER: *rc = send_err(c, r, 400, "input %lld, value %lld is not a number", i, k); break;
    case KP_JE_COUNT:
      *rc = send_err(c, r, 400, "input %lld has %lld values; the model takes %lld", i, (long long)e.got, w);
      break;
    case KP_JE_NONFINITE: *rc = send_err(c, r, 400, "input %lld, value %lld is not a finite float32 number", i, k); break;
    default: *rc = send_err(c, r, 500, "out of memory for %lld inputs", i); break;
  }
  return -1;
}

/* Appends the predictions of the m rows of logits y (m x C) to o and their
 * probabilities to pr, row 'first' of the answer first; without printf
 * (vfprintf was a tenth of the CPU time of a single-sample request): the
 * same bytes, "%.7g" by kp_fmt_g7. */
/* Returns -1, or the first row (0 to m-1) whose logits are not all finite
 * (nothing written): JSON has no NaN, and softmax of an infinity is NaN. */
static int64_t answer_rows(obuf *o, obuf *pr, const float *y, int64_t m, int64_t C, int64_t first) {
  for (int64_t a = 0; a < m; a++) {
    const float *ya = y + a * C;
    float chk = 0.0f;
    for (int64_t q = 0; q < C; q++) chk *= ya[q];  /* NaN or an infinity makes it NaN (0 * inf) */
    if (chk != chk) return a;
  }
  for (int64_t a = 0; a < m; a++) {
    const float *ya = y + a * C;
    int64_t best = 0;
    for (int64_t q = 1; q < C; q++)
      if (ya[q] > ya[best]) best = q;
    double mx = ya[best], sum = 0;
    for (int64_t q = 0; q < C; q++) sum += exp((double)ya[q] - mx);
    char num[24];
    int k = 0;
    for (uint64_t v = (uint64_t)best; k == 0 || v; v /= 10) num[k++] = (char)('0' + v % 10);
    if (oreserve(o, 24) != 0 || oreserve(pr, (size_t)C * (KP_FMT_G7_MAX + 2) + 8) != 0) return -1;
    char *w = o->s + o->n;
    if (first + a) { *w++ = ','; *w++ = ' '; }
    while (k) *w++ = num[--k];
    o->n = (size_t)(w - o->s);
    w = pr->s + pr->n;
    if (first + a) { *w++ = ','; *w++ = ' '; }
    *w++ = '[';
    for (int64_t q = 0; q < C; q++) {
      if (q) { *w++ = ','; *w++ = ' '; }
      w += kp_fmt_g7(w, exp((double)ya[q] - mx) / sum);
    }
    *w++ = ']';
    pr->n = (size_t)(w - pr->s);
  }
  return -1;
}

/* ---- batching ----------------------------------------------------------------------- */
/* With --batch-max N > 1, a request of one sample is not scored by the
 * worker that read it: the worker suspends its connection
 * (MHD_suspend_connection, so it goes on serving its other connections)
 * and queues it. The batcher thread takes the first queued request, waits
 * until N are queued or --batch-wait-us microseconds have passed since
 * that one arrived, scores them as one batch (one GEMM per layer instead
 * of N GEMV), writes each answer and resumes each connection; its worker
 * then sends the answer. */
static struct {
  int max;
  long wait_us;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  req *head, *tail;
  int n, stop;
  double first_at;  /* when the oldest queued request arrived */
  pthread_t th;
  atomic_int started;  /* read by the workers without the lock */
  atomic_ullong batches, samples;
} B;

static void batch_answer(req *r, const float *y, int64_t C) {
  obuf o = {0}, pr = {0};
  oraw(&o, "{\"predictions\": [", 17);
  oraw(&pr, "], \"probabilities\": [", 21);
  if (answer_rows(&o, &pr, y, 1, C, 0) >= 0) {
    free(o.s);
    free(pr.s);
    r->fail = 2;  /* 400: the outputs are not finite */
    return;
  }
  oraw(&pr, "]}\n", 3);
  if (!pr.oom) oraw(&o, pr.s, pr.n);
  free(pr.s);
  if (o.oom) { free(o.s); r->fail = 1; return; }
  r->ans = o.s;
  r->ans_n = o.n;
}

static void *batcher(void *arg) {
  (void)arg;
  const int64_t width = kp_scorer_width(S.scorer), C = kp_scorer_classes(S.scorer);
  float *X = malloc((size_t)B.max * (size_t)width * sizeof *X);
  req **jobs = malloc((size_t)B.max * sizeof *jobs);
  ks_ctx *ctx = thread_ctx();
  pthread_mutex_lock(&B.mu);
  for (;;) {
    while (!B.head && !B.stop) pthread_cond_wait(&B.cv, &B.mu);
    if (B.stop && !B.head) break;
    /* wait for more, up to wait_us after the oldest arrived */
    while (B.n < B.max && !B.stop) {
      double due = B.first_at + (double)B.wait_us * 1e-6;
      if (mono() >= due) break;
      struct timespec ts = {(time_t)due, (long)((due - (double)(time_t)due) * 1e9)};  /* CLOCK_MONOTONIC */
      pthread_cond_timedwait(&B.cv, &B.mu, &ts);
    }
    int n = 0;
    while (B.head && n < B.max) {
      jobs[n++] = B.head;
      B.head = B.head->next;
    }
    if (!B.head) B.tail = NULL;
    B.n -= n;
    if (B.head) B.first_at = mono();  /* the rest start a new window */
    pthread_mutex_unlock(&B.mu);
    const float *y = NULL;
    if (X && jobs && ctx) {
      for (int i = 0; i < n; i++) memcpy(X + (size_t)i * (size_t)width, jobs[i]->x, (size_t)width * sizeof *X);
      y = kp_scorer_run(S.scorer, ctx, X, n);
      if (!y) slog("500 scoring a batch of %d failed: %s", n, ks_error_last());
    }
    for (int i = 0; i < n; i++) {
      req *r = jobs[i];
      if (y) batch_answer(r, y + (size_t)i * (size_t)C, C);
      else r->fail = 1;
      r->state = 2;
      MHD_resume_connection(r->conn);
    }
    if (ctx) ks_ctx_reset(ctx);
    atomic_fetch_add_explicit(&B.batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&B.samples, (unsigned long long)n, memory_order_relaxed);
    pthread_mutex_lock(&B.mu);
  }
  pthread_mutex_unlock(&B.mu);
  free(X);
  free(jobs);
  return NULL;
}

/* queues r (one sample in x, owned by r from now on); the caller's
 * connection is suspended first, so the batcher's resume always follows */
static void batch_queue(struct MHD_Connection *c, req *r, float *x) {
  r->conn = c;
  r->x = x;
  r->state = 1;
  r->next = NULL;
  MHD_suspend_connection(c);
  pthread_mutex_lock(&B.mu);
  if (B.stop) {
    /* stopping: the batcher may be gone; score it here (the server stops
     * only once every connection is resumed) */
    pthread_mutex_unlock(&B.mu);
    ks_ctx *ctx = thread_ctx();
    const float *y = ctx ? kp_scorer_run(S.scorer, ctx, x, 1) : NULL;
    if (y) batch_answer(r, y, kp_scorer_classes(S.scorer));
    else r->fail = 1;
    if (ctx) ks_ctx_reset(ctx);
    r->state = 2;
    MHD_resume_connection(c);
    return;
  }
  if (B.tail) B.tail->next = r;
  else { B.head = r; B.first_at = mono(); }
  B.tail = r;
  B.n++;
  if (B.n == 1 || B.n >= B.max) pthread_cond_signal(&B.cv);
  pthread_mutex_unlock(&B.mu);
}

static enum MHD_Result score_builtin(struct MHD_Connection *c, req *r) {
  const int64_t width = kp_scorer_width(S.scorer);
  float *x = NULL;
  int64_t n = 0;
  enum MHD_Result rc;
  if (kp_json_rows(r->body, r->n, width, &x, &n) != 0 && parse_slow(c, r, width, &x, &n, &rc) != 0) return rc;
  if (S.has_range) {
    /* values outside what the network was trained on (raw pixels where it
     * takes pixels / 255) give a confident wrong answer: refuse them */
    for (int64_t q = 0, nq = n * width; q < nq; q++) {
      if (x[q] >= S.lo && x[q] <= S.hi) continue;
      rc = send_err(c, r, 400, "input %lld, value %lld is %.9g, outside the model's input range [%.9g, %.9g]%s%s%s",
                    (long long)(q / width), (long long)(q % width), (double)x[q], S.lo, S.hi,
                    S.prep[0] ? " (its inputs are " : "", S.prep, S.prep[0] ? ")" : "");
      free(x);
      return rc;
    }
  }
  if (n == 1 && B.started) {
    batch_queue(c, r, x);
    return MHD_YES;
  }
  obuf o = {0}, pr = {0};
  ks_ctx *ctx = thread_ctx();
  if (!ctx) { rc = send_err(c, r, 500, "out of memory"); goto out; }
  const int64_t C = kp_scorer_classes(S.scorer);
  oraw(&o, "{\"predictions\": [", 17);
  oraw(&pr, "], \"probabilities\": [", 21);
  for (int64_t s0 = 0; s0 < n; s0 += CHUNK_ROWS) {
    int64_t m = n - s0 < CHUNK_ROWS ? n - s0 : CHUNK_ROWS;
    const float *y = kp_scorer_run(S.scorer, ctx, x + s0 * width, m);
    if (!y) {
      rc = send_err(c, r, 500, "scoring failed: %s", ks_error_last());
      ks_ctx_reset(ctx);
      goto out;
    }
    int64_t bad = answer_rows(&o, &pr, y, m, C, s0);
    ks_ctx_reset(ctx);
    if (bad >= 0) {
      rc = send_err(c, r, 400, NONFINITE_FMT, (long long)(s0 + bad));
      goto out;
    }
  }
  oraw(&pr, "]}\n", 3);
  if (!pr.oom) oraw(&o, pr.s, pr.n);
  if (o.oom || pr.oom) { rc = send_err(c, r, 500, "out of memory writing the answer"); goto out; }
  rc = send_buf(c, r, 200, o.s, o.n, "application/json", 1);
  o.s = NULL;
out:
  free(pr.s);
  free(o.s);
  free(x);
  return rc;
}

static enum MHD_Result score_entry(struct MHD_Connection *c, req *r) {
  size_t at = 0;
  if (kp_json_valid(r->body ? r->body : "", r->n, &at) != 0)
    return send_err(c, r, 400, "malformed JSON (near byte %zu)", at);
  /* r->body is NUL-terminated (see append) */
  pthread_mutex_lock(&S.e_mu);
  char *out = S.e_run(r->body);
  pthread_mutex_unlock(&S.e_mu);
  if (!out) return send_err(c, r, 500, "the scoring entry's run() returned no answer; see the service's logs");
  size_t olen = strlen(out);
  if (kp_json_valid(out, olen, &at) != 0) {
    free(out);
    return send_err(c, r, 500, "the scoring entry's run() answered something that is not JSON (near byte %zu: NaN, "
                    "Infinity?); see the service's logs", at);
  }
  return send_buf(c, r, 200, out, olen, "application/json", 1);
}

static enum MHD_Result do_metrics(struct MHD_Connection *c, req *r) {
  obuf o = {0};
  oput(&o, "# HELP kusari_requests_total HTTP requests answered, by status code.\n# TYPE kusari_requests_total counter\n");
  for (int code = 100; code < 600; code++) {
    unsigned long long v = atomic_load_explicit(&S.by_code[code], memory_order_relaxed);
    if (v || code == 200) oput(&o, "kusari_requests_total{service=\"%s\",code=\"%d\"} %llu\n", S.name, code, v);
  }
  oput(&o, "# HELP kusari_request_duration_seconds Time from the request's arrival to its answer.\n"
           "# TYPE kusari_request_duration_seconds histogram\n");
  unsigned long long cum = 0;
  for (size_t b = 0; b <= NBUCKETS; b++) {
    cum += atomic_load_explicit(&S.lat_count[b], memory_order_relaxed);
    if (b < NBUCKETS) oput(&o, "kusari_request_duration_seconds_bucket{service=\"%s\",le=\"%g\"} %llu\n", S.name, lat_buckets[b], cum);
    else oput(&o, "kusari_request_duration_seconds_bucket{service=\"%s\",le=\"+Inf\"} %llu\n", S.name, cum);
  }
  oput(&o, "kusari_request_duration_seconds_sum{service=\"%s\"} %.6f\n", S.name,
       (double)atomic_load_explicit(&S.lat_sum_us, memory_order_relaxed) * 1e-6);
  oput(&o, "kusari_request_duration_seconds_count{service=\"%s\"} %llu\n", S.name, cum);
  if (B.started)
    oput(&o, "# HELP kusari_batches_total Batches of single-sample requests scored (--batch-max).\n"
             "# TYPE kusari_batches_total counter\nkusari_batches_total{service=\"%s\"} %llu\n"
             "# HELP kusari_batched_requests_total Requests scored in those batches.\n"
             "# TYPE kusari_batched_requests_total counter\nkusari_batched_requests_total{service=\"%s\"} %llu\n",
         S.name, (unsigned long long)atomic_load(&B.batches), S.name, (unsigned long long)atomic_load(&B.samples));
  oput(&o, "# HELP kusari_uptime_seconds Seconds since the server started.\n# TYPE kusari_uptime_seconds gauge\n"
           "kusari_uptime_seconds{service=\"%s\"} %.3f\n", S.name, mono() - S.started);
  if (o.oom) { free(o.s); return send_err(c, r, 500, "out of memory"); }
  return send_buf(c, r, 200, o.s, o.n, "text/plain; version=0.0.4", 1);
}

typedef struct head_size { size_t bytes, lines; } head_size;

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  head_size *h = cls;
  /* "Key: value\r\n" */
  h->bytes += strlen(key) + (value ? strlen(value) : 0) + 4;
  h->lines++;
  return MHD_YES;
}

/* The answer to a request refused before its body (r->refuse), written
 * when it is sent: its message names the path and the method, which
 * libmicrohttpd passes on every call. */
static enum MHD_Result refusal(struct MHD_Connection *c, req *r, const char *url, const char *method) {
  switch (r->refuse) {
    case 431:
      if (r->head_lines > MAX_HEADER_LINES)
        return send_err(c, r, 431, "the request has %zu header lines; this service takes at most %d", r->head_lines,
                        MAX_HEADER_LINES);
      return send_err(c, r, 431, "the request's headers (%zu bytes) are over this service's limit of %d bytes",
                      r->head_n, MAX_HEADERS_BYTES);
    case 414:
      return send_err(c, r, 414, "the request's path (%zu bytes) is over this service's limit of %d bytes", r->head_n,
                      MAX_URL_BYTES);
    case 417:
      return send_err(c, r, 417, "this service knows no expectation but 'Expect: 100-continue'");
    case 404:
      return send_err(c, r, 404, "no such path '%.200s'; the paths are POST /score, GET /health, GET /metrics", url);
    case 405:
      if (r->kind == 1) return send_err(c, r, 405, "%.20s is not allowed on /score; use POST", method);
      return send_err(c, r, 405, "%.20s is not allowed on %s; use GET", method, url);
    case 401:
      return send_err(c, r, 401, "missing or invalid key: send 'Authorization: Bearer KEY' (see 'kusari service keys %s')",
                      S.name);
    case 413:
      return send_err(c, r, 413, "the body (%zu bytes) is over this service's limit of %zu bytes", r->head_n, S.max_body);
    default:
      return send_err(c, r, 500, "no answer for this request");
  }
}

/* The first call of a request (its head read): what to answer, and when.
 * An answer given now, before a body is read, makes libmicrohttpd close the
 * connection (it cannot tell where the next request starts); so a refusal
 * of a request without a body, or with a body within the limit that the
 * client sends anyway (no Expect: 100-continue), waits for the end of the
 * request (the body is read and dropped, never stored) and the connection
 * stays open. A body over the limit, or one the client waits to be invited
 * to send (Expect: 100-continue), is refused at once, without an interim
 * 100 Continue. */
static enum MHD_Result first_call(struct MHD_Connection *c, req *r, const char *url, const char *method) {
  head_size hs = {0, 0};
  MHD_get_connection_values(c, MHD_HEADER_KIND, add_header_size, &hs);
  r->head_lines = hs.lines;
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  const char *ex = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
  unsigned long long cln = cl ? strtoull(cl, NULL, 10) : 0;
  int body = cln > 0 || (!cl && te);
  int expect100 = ex && !strcasecmp(ex, "100-continue");
  r->kind = !strcmp(url, "/score") ? 1 : !strcmp(url, "/health") ? 2 : !strcmp(url, "/metrics") ? 3 : 0;
  int get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  unsigned code = 0;
  if (hs.bytes > MAX_HEADERS_BYTES || hs.lines > MAX_HEADER_LINES) { code = 431; r->head_n = hs.bytes; }
  else if (strlen(url) > MAX_URL_BYTES) { code = 414; r->head_n = strlen(url); }
  else if (ex && !expect100) code = 417;
  else if (!r->kind) code = 404;
  else if (r->kind == 1 ? strcmp(method, "POST") != 0 : !get) code = 405;
  else if (r->kind == 1 && !authorized(c)) code = 401;
  if (cln > S.max_body) {
    /* too much to read and drop: refused now (the connection closes) */
    if (!code) { code = 413; r->head_n = (size_t)cln; }
    r->refuse = code;
    return refusal(c, r, url, method);
  }
  r->refuse = code;
  if (code && body && expect100) return refusal(c, r, url, method);
  if (r->kind == 1) r->expect = (size_t)cln;
  return MHD_YES;  /* the body, if any, then the last call answers */
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  req *r = *con_cls;
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->t0 = mono();
    *con_cls = r;
    return first_call(c, r, url, method);
  }
  if (*upload_size) {
    size_t k = *upload_size;
    *upload_size = 0;
    /* the idle timeout does not catch a client that sends a byte now and
     * then: the whole body has 3 x --timeout seconds (and the watchdog
     * bounds the whole request the same way) */
    if (mono() - r->t0 > S.body_deadline) {
      slog("a request body took over %.0f s (a trickling client); connection closed", S.body_deadline);
      atomic_fetch_add_explicit(&S.by_code[408], 1, memory_order_relaxed);
      return MHD_NO;
    }
    if (r->refuse || r->kind != 1) {
      /* read and dropped, up to the body limit (a chunked body has no
       * length to refuse it by): past it the connection is closed */
      r->n += k;
      return r->n > S.max_body ? MHD_NO : MHD_YES;
    }
    if (r->too_big) return MHD_YES;  /* the rest of a body over the limit is dropped */
    if (r->n + k > S.max_body) {
      r->too_big = 1;
      free(r->body);
      r->body = NULL;
      r->n = r->cap = 0;
      return MHD_YES;
    }
    if (r->n + k + 1 > r->cap) {
      /* the whole body at once when its length is known (one allocation) */
      size_t cap = r->cap ? r->cap : r->expect > k ? r->expect + 1 : 8192;
      while (cap < r->n + k + 1) cap *= 2;
      char *nb = realloc(r->body, cap);
      if (!nb) { r->too_big = 1; return MHD_YES; }
      r->body = nb;
      r->cap = cap;
    }
    memcpy(r->body + r->n, upload, k);
    r->n += k;
    r->body[r->n] = '\0';
    return MHD_YES;
  }
  if (r->state == 2) {  /* resumed by the batcher */
    r->state = 0;
    if (r->fail == 2) return send_err(c, r, 400, NONFINITE_FMT, 0LL);
    if (r->fail || !r->ans) return send_err(c, r, 500, "scoring failed (batch); see the service's logs");
    char *a = r->ans;
    r->ans = NULL;
    return send_buf(c, r, 200, a, r->ans_n, "application/json", 1);
  }
  if (r->state == 1) return MHD_YES;  /* still queued (not expected: suspended) */
  if (r->refuse) return refusal(c, r, url, method);
  if (r->kind == 2) return send_buf(c, r, 200, (char *)"{\"status\": \"ok\"}\n", 17, "application/json", 0);
  if (r->kind == 3) return do_metrics(c, r);
  if (r->too_big) return send_err(c, r, 413, "the body is over this service's limit of %zu bytes", S.max_body);
  if (!r->body) return send_err(c, r, 400, "empty body; send {\"data\": [[...], ...]}");
  return S.scorer ? score_builtin(c, r) : score_entry(c, r);
}

/* Path escapes (%HH) are decoded as libmicrohttpd does, except in a path
 * holding %00: decoded, "/score%00/../../admin" compared equal to "/score"
 * (C strings end at the NUL). Such a path is left as it came, so it names
 * no endpoint (404). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
  (void)cls;
  (void)c;
  for (const char *p = s; (p = strchr(p, '%')); p++)
    if (p[1] == '0' && p[2] == '0') return strlen(s);
  return MHD_http_unescape(s);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls;
  req *r = *con_cls;
  if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
    cslot *sl = conn_slot(c);  /* the next request on this connection starts its time now */
    if (sl) atomic_store_explicit(&sl->since_ms, now_ms(), memory_order_relaxed);
  }
  if (toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) slog("a connection timed out (slow or idle client) and was closed");
  if (r) {
    free(r->body);
    free(r->x);
    free(r->ans);
    free(r);
  }
  *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t l = strlen(msg);
  while (l && msg[l - 1] == '\n') msg[--l] = '\0';
  slog("http: %s", msg);
}

static int batch_start(int max, long wait_us) {
  B.max = max;
  B.wait_us = wait_us;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&B.mu, NULL);
  pthread_cond_init(&B.cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&B.th, NULL, batcher, NULL) != 0) return -1;
  B.started = 1;
  return 0;
}

/* the batcher answers what is queued, then stops; requests queued after
 * that are scored by their worker (batch_queue) */
static void batch_stop(void) {
  if (!B.started) return;
  B.started = 0;
  pthread_mutex_lock(&B.mu);
  B.stop = 1;
  pthread_cond_signal(&B.cv);
  pthread_mutex_unlock(&B.mu);
  pthread_join(B.th, NULL);
  slog("batching: %llu batches, %llu requests", (unsigned long long)atomic_load(&B.batches),
       (unsigned long long)atomic_load(&B.samples));
}

int kp_service_batch_save(const char *svc_dir, int max, long wait_us) {
  char p[4600];
  snprintf(p, sizeof p, "%s/batch", svc_dir);
  FILE *f = fopen(p, "w");
  if (!f) return kp_err("cannot write %s: %s", p, strerror(errno));
  fprintf(f, "batch_max %d\nbatch_wait_us %ld\n", max, wait_us);
  if (fclose(f) != 0) return kp_err("cannot write %s: %s", p, strerror(errno));
  return 0;
}

void kp_service_batch_load(const char *svc_dir, int *max, long *wait_us) {
  char p[4600];
  snprintf(p, sizeof p, "%s/batch", svc_dir);
  *max = 1;
  *wait_us = 0;
  FILE *f = fopen(p, "r");
  if (!f) return;
  int m;
  long w;
  if (fscanf(f, "batch_max %d batch_wait_us %ld", &m, &w) == 2 && m >= 1 && m <= KP_BATCH_MAX_LIMIT && w >= 0 &&
      w <= KP_BATCH_WAIT_LIMIT_US) {
    *max = m;
    *wait_us = w;
  }
  fclose(f);
}

/* ---- the service record ------------------------------------------------------------ */
typedef struct svc_row {
  char model_name[256];
  long long model_version;
  char entry_name[256], entry_sha[65];
  char host[64];
  int port, last_port, auth, workers;
  long long max_body;
  int timeout;
  int batch_max;       /* 1: no batching */
  long batch_wait_us;
} svc_row;

static int unhex(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; }

/* Reads the sha256 of the two keys from the store (64 hex digits each). */
static int load_keys(kp_ws *ws) {
  kp_service sv;
  if (kp_store_service_get(ws->store, S.name, &sv) != 0) return kp_store_report();
  unsigned char keys[2][KEY_HASH_LEN] = {{0}};
  int rc = 0;
  for (int k = 0; k < 2; k++) {
    const char *t = k ? sv.secondary_key_sha256 : sv.primary_key_sha256;
    if (strlen(t) != 2 * KEY_HASH_LEN) rc = -1;
    for (int i = 0; rc == 0 && i < KEY_HASH_LEN; i++) {
      int a = unhex(t[2 * i]), b = unhex(t[2 * i + 1]);
      if (a < 0 || b < 0) rc = -1;
      else keys[k][i] = (unsigned char)(a << 4 | b);
    }
  }
  if (rc != 0) {
    slog("error: the store's key digests of service %s are not sha256 hex digests", S.name);
  } else {
    /* only this thread writes */
    unsigned s0 = atomic_load_explicit(&S.key_seq, memory_order_relaxed);
    atomic_store_explicit(&S.key_seq, s0 + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int k = 0; k < 2; k++)
      for (int w = 0; w < KEY_HASH_LEN / 8; w++) {
        uint64_t v;
        memcpy(&v, keys[k] + 8 * w, 8);
        atomic_store_explicit(&S.keys[k][w], v, memory_order_relaxed);
      }
    atomic_store_explicit(&S.key_seq, s0 + 2, memory_order_release);
  }
  kp_service_free(&sv);
  return rc;
}

/* services/NAME/keys_loaded: the digests the server now checks keys
 * against (they are in the store too), written after each load through a
 * temporary file and a rename; `service keys --regenerate` waits for it */
static void keys_loaded(const kp_ws *ws) {
  char p[4600], tmp[4700], h[2][2 * KEY_HASH_LEN + 1];
  for (int k = 0; k < 2; k++)
    for (int w = 0; w < KEY_HASH_LEN / 8; w++) {
      uint64_t v = atomic_load_explicit(&S.keys[k][w], memory_order_relaxed);
      unsigned char b[8];
      memcpy(b, &v, 8);
      for (int i = 0; i < 8; i++) snprintf(h[k] + 2 * (8 * w + i), 3, "%02x", b[i]);
    }
  snprintf(p, sizeof p, "%s/services/%s/keys_loaded", ws->root, S.name);
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "%s %s\n", h[0], h[1]);
  if (fclose(f) == 0) rename(tmp, p);
}

static int read_row(kp_ws *ws, svc_row *row) {
  kp_service sv;
  if (kp_store_service_get(ws->store, S.name, &sv) != 0) return kp_store_report();
  snprintf(row->model_name, sizeof row->model_name, "%s", sv.model_name);
  row->model_version = (long long)sv.model_version;
  snprintf(row->entry_name, sizeof row->entry_name, "%s", sv.entry_name ? sv.entry_name : "");
  snprintf(row->entry_sha, sizeof row->entry_sha, "%s", sv.entry_sha256 ? sv.entry_sha256 : "");
  snprintf(row->host, sizeof row->host, "%s", sv.host);
  row->port = sv.port;
  row->last_port = sv.bound_port;
  row->auth = sv.auth;
  row->workers = sv.workers;
  row->max_body = (long long)sv.max_body;
  row->timeout = sv.timeout;
  kp_service_free(&sv);
  return 0;
}

/* 1 when 'path' ends with ".npz" (ASCII case ignored, as SQL's LIKE did) */
static int npz_path(const char *path) {
  size_t n = strlen(path);
  return n >= 4 && !strcasecmp(path + n - 4, ".npz");
}

/* writes the model version's files under dir (fresh) */
static int materialize(kp_ws *ws, const svc_row *row, const char *dir, char *err, size_t errn) {
  kp_rm_rf(dir);
  if (kp_mkdirs(dir, 0755) != 0) return -1;
  kp_model m;
  int found = 0;
  if (kp_store_service_model(ws->store, S.name, &m, &found) != 0) return kp_store_report();
  if (!found) {
    snprintf(err, errn, "model %s:%lld was deleted ('kusari model delete --force'); deploy another version to this "
             "service: kusari model deploy %s:VERSION --name %s", row->model_name, row->model_version,
             row->model_name, S.name);
    return -1;
  }
  int rc = 0, have_desc = 0;
  for (size_t i = 0; rc == 0 && i < m.nfiles; i++) {
    const char *p = m.files[i].path;
    if (kp_rel_path_ok(p) != 0) { rc = kp_err("model file path '%s' is not safe", p); break; }
    const char *base = strrchr(p, '/');
    have_desc |= !strcmp(base ? base + 1 : p, "model.json");
    char dst[8192];
    snprintf(dst, sizeof dst, "%s/%s", dir, p);
    char *sl = strrchr(dst, '/');
    *sl = '\0';
    if (kp_mkdirs(dst, 0755) != 0) { rc = -1; break; }
    *sl = '/';
    rc = kp_blob_get(ws, m.files[i].sha256, dst, 0644);
  }
  if (rc == 0 && m.nfiles == 0) rc = kp_err("model %s:%lld has no files", row->model_name, row->model_version);
  if (rc != 0 || have_desc || row->entry_sha[0] || !m.run_id || !npz_path(m.path)) {
    kp_model_free(&m);
    return rc;
  }
  /* A model registered as the single file outputs/model.npz of a run (the
   * quickstart's way) lacks the description written beside it: take the
   * run's outputs/model.json through the model's lineage. */
  char desc[8192];
  const char *slash = strrchr(m.path, '/');
  snprintf(desc, sizeof desc, "%.*smodel.json", slash ? (int)(slash - m.path + 1) : 0, m.path);
  kp_stored_file *f = NULL;
  size_t nf = 0;
  if (kp_store_run_files_list(ws->store, m.run_id, desc, &f, &nf) != 0) {
    /* a run deleted since: no lineage to follow */
    if (kp_store_last_error()->code != KP_STORE_ENOTFOUND) rc = kp_store_report();
  }
  for (size_t i = 0; rc == 0 && i < nf; i++)
    if (!strcmp(f[i].path, desc)) {
      char dst[8192];
      snprintf(dst, sizeof dst, "%s/model.json", dir);
      rc = kp_blob_get(ws, f[i].sha256, dst, 0644);
      if (rc == 0) slog("model.json: %s of run lineage (the model was registered without it)", f[i].path);
      break;
    }
  kp_stored_files_free(f, nf);
  kp_model_free(&m);
  return rc;
}

static int set_state(kp_ws *ws, kp_service_state state, const char *error, int port) {
  int rc;
  if (state == KP_SERVICE_RUNNING)
    rc = kp_store_service_running(ws->store, S.name, getpid(), kp_proc_start(getpid()), port);
  else { /* only if the record still names this process (else another server's record: left alone, quietly) */
    rc = kp_store_service_exited(ws->store, S.name, getpid(), state, error);
    if (rc != 0 && kp_store_last_error()->code == KP_STORE_ECONFLICT) return -1;
  }
  return rc == 0 ? 0 : kp_store_report();
}

static void tell(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tell(int fd, const char *fmt, ...) {
  if (fd < 0) return;
  char b[1200];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b, sizeof b, fmt, ap);
  va_end(ap);
  if (n > 0 && write(fd, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1) < 0) { /* deploy reads the log instead */ }
}

static struct MHD_Daemon *start_daemon(const svc_row *row, int port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, row->host, &sa.sin_addr) != 1) return NULL;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
  if (row->batch_max > 1) flags |= MHD_ALLOW_SUSPEND_RESUME;
  return MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handler, NULL,
                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                          MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                          MHD_OPTION_THREAD_POOL_SIZE, (unsigned)row->workers,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)row->timeout,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                          MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS_PER_CLIENT,
                          MHD_OPTION_NOTIFY_CONNECTION, notify_connection, NULL,
                          MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                          MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                          MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                          MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                          MHD_OPTION_END);
}

int kp_service_serve(int argc, char **argv) {
  const char *fdstr = NULL, *pos[1];
  int np = 0;
  kp_opt opts[] = {{.name = "ready-fd", .val = &fdstr}, {0}};
  if (kp_parse("service serve", argc, argv, opts, pos, &np, 1, NULL)) return 2;
  if (np != 1) return kp_usage_err("service serve", "missing the service NAME");
  int fd = -1;
  if (fdstr) {
    long long v;
    if (kp_parse_int(fdstr, &v) != 0 || v < 0 || v > 65535) return kp_usage_err("service serve", "bad --ready-fd");
    fd = (int)v;
  }
  snprintf(S.name, sizeof S.name, "%s", pos[0]);
  /* blocked before any thread exists (the entry's init may start some, the
   * pool will): only the main thread takes them, with sigwait */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* a fixed threshold (not glibc's dynamic one, which rises to the size of
   * the largest block freed): blocks of a megabyte and more (large bodies,
   * their samples, their answers) are mapped for their request and given
   * back to the system when it ends */
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  pthread_mutex_init(&S.e_mu, NULL);
  S.started = mono();
  kp_ws ws;
  if (kp_ws_open(&ws) != 0) { tell(fd, "error: cannot open the workspace\n"); kp_ws_close(&ws); return 1; }
  svc_row row;
  memset(&row, 0, sizeof row);
  char err[12000] = "";
  char dir[4400], mdir[4600], edir[4600];
  struct MHD_Daemon *d = NULL;
  int rc = 1;
  S.sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  if (!S.sha256 || pthread_key_create(&S.md_key, md_free) != 0) { snprintf(err, sizeof err, "libcrypto has no sha256"); goto fail; }
  if (read_row(&ws, &row) != 0 || load_keys(&ws) != 0) { snprintf(err, sizeof err, "cannot read the service's record"); goto fail; }
  snprintf(S.model, sizeof S.model, "%s:%lld", row.model_name, row.model_version);
  S.auth = row.auth;
  S.max_body = (size_t)row.max_body;
  S.body_deadline = 3.0 * row.timeout;
  snprintf(dir, sizeof dir, "%s/services/%s", ws.root, S.name);
  snprintf(mdir, sizeof mdir, "%s/model", dir);
  if (materialize(&ws, &row, mdir, err, sizeof err) != 0) {
    if (!err[0]) snprintf(err, sizeof err, "cannot write the model's files into %s", mdir);
    goto fail;
  }
  if (row.entry_sha[0]) {
    snprintf(edir, sizeof edir, "%s/entry", dir);
    kp_rm_rf(edir);
    char lib[5000];
    snprintf(lib, sizeof lib, "%s/%s", edir, row.entry_name);
    if (kp_mkdirs(edir, 0755) != 0 || kp_blob_get(&ws, row.entry_sha, lib, 0755) != 0) {
      snprintf(err, sizeof err, "cannot write the entry library into %s", edir);
      goto fail;
    }
    S.dl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!S.dl) { snprintf(err, sizeof err, "cannot load the entry %s: %s", row.entry_name, dlerror()); goto fail; }
    int (*e_init)(const char *) = (int (*)(const char *))dlsym(S.dl, "init");
    S.e_run = (char *(*)(const char *))dlsym(S.dl, "run");
    if (!e_init || !S.e_run) {
      snprintf(err, sizeof err, "the entry %s must export init(const char *model_dir) and run(const char *input_json)", row.entry_name);
      goto fail;
    }
    int irc = e_init(mdir);
    if (irc != 0) { snprintf(err, sizeof err, "the entry's init(\"%s\") returned %d", mdir, irc); goto fail; }
    slog("entry %s loaded; init(%s) ok", row.entry_name, mdir);
  } else {
    S.scorer = kp_scorer_load(mdir, err, sizeof err);
    if (!S.scorer) goto fail;
    slog("model %s: %s, input width %lld, %lld classes", S.model, kp_scorer_desc_path(S.scorer),
         (long long)kp_scorer_width(S.scorer), (long long)kp_scorer_classes(S.scorer));
    S.has_range = kp_scorer_input_range(S.scorer, &S.lo, &S.hi, &S.prep);
    if (S.has_range)
      slog("input values must lie in [%.9g, %.9g]%s%s%s (the description's input_range)", S.lo, S.hi,
           S.prep[0] ? ": " : "", S.prep, "");
    else
      slog("the description declares no input_range: every finite input value is taken");
  }
  /* one kernel thread per request: the pool's threads are the parallelism */
  ks_set_num_threads(1);
  if (pthread_key_create(&S.ctx_key, ctx_free) != 0) { snprintf(err, sizeof err, "pthread_key_create failed"); goto fail; }
  kp_service_batch_load(dir, &row.batch_max, &row.batch_wait_us);
  if (row.batch_max > 1 && S.scorer && batch_start(row.batch_max, row.batch_wait_us) != 0) {
    snprintf(err, sizeof err, "cannot start the batching thread");
    goto fail;
  }
  if (watchdog_start(S.body_deadline) != 0) { snprintf(err, sizeof err, "cannot start the connections' watchdog"); goto fail; }
  int port = row.port;
  if (port == 0 && row.last_port > 0) {
    d = start_daemon(&row, row.last_port);  /* keep the last URI when we can */
    if (d) port = row.last_port;
  }
  if (!d) d = start_daemon(&row, port);
  if (!d) {
    snprintf(err, sizeof err, "cannot listen on %s:%d (in use, or not an IPv4 address of this machine)", row.host, port);
    goto fail;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  port = info ? info->port : port;
  if (set_state(&ws, KP_SERVICE_RUNNING, NULL, port) != 0) { snprintf(err, sizeof err, "cannot record the service as running"); goto fail; }
  slog("service %s serving model %s on http://%s:%d/score (%d workers, auth %s, body limit %lld bytes, timeout %d s, "
       "batching %s)", S.name, S.model, row.host, port, row.workers, row.auth ? "on" : "off", row.max_body, row.timeout,
       B.started ? "on" : "off");
  if (B.started) slog("batching: up to %d single-sample requests, waiting up to %ld us", B.max, B.wait_us);
  keys_loaded(&ws);
  tell(fd, "ok %d\n", port);
  if (fd >= 0) close(fd);
  fd = -1;
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (load_keys(&ws) == 0) {
        keys_loaded(&ws);
        slog("keys reloaded");
      }
      continue;
    }
    slog("signal %d: stopping", sig);
    break;
  }
  batch_stop();  /* resumes every queued request: libmicrohttpd stops only without suspended connections */
  MHD_stop_daemon(d);
  d = NULL;
  watchdog_stop();
  set_state(&ws, KP_SERVICE_STOPPED, NULL, 0);
  slog("stopped");
  rc = 0;
  goto out;
fail:
  slog("error: %s", err);
  set_state(&ws, KP_SERVICE_FAILED, err, 0);  /* before answering: deploy's caller may look at once */
  tell(fd, "error: %s\n", err);
out:
  batch_stop();
  if (d) MHD_stop_daemon(d);
  watchdog_stop();
  if (fd >= 0) close(fd);
  kp_scorer_free(S.scorer);
  S.scorer = NULL;
  EVP_MD_free(S.sha256);
  S.sha256 = NULL;
  if (S.dl) dlclose(S.dl);
  kp_ws_close(&ws);
  return rc;
}
