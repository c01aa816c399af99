/*
 * platform/service.h — scoring services (issue 6): the built-in scorer that
 * rebuilds a network from its description (service_model.c), the HTTP
 * server (service_server.c) and the `kusari service` / `kusari model deploy`
 * commands (cmd_service.c). Internal to the kusari program.
 */
#ifndef KUSARI_PLATFORM_SERVICE_H
#define KUSARI_PLATFORM_SERVICE_H

#include "kp.h"

#include <kusari/kusari.h>

/* ---- the built-in scorer (model.json + model.npz) ------------------------- */
typedef struct kp_scorer kp_scorer;

/* Finds model.json under 'dir' (at any depth) and the .npz beside it
 * (model.npz, else the only .npz there), builds the network and loads the
 * weights. NULL with a message in err on failure. */
kp_scorer *kp_scorer_load(const char *dir, char *err, size_t errn);
void kp_scorer_free(kp_scorer *s);
#define KP_SCORER_MAX_WIDTH 100000000LL  /* floats per sample at most */
/* Floats per sample (product of the description's input shape). */
int64_t kp_scorer_width(const kp_scorer *s);
int64_t kp_scorer_classes(const kp_scorer *s);
/* Where the description was found (for logs). */
const char *kp_scorer_desc_path(const kp_scorer *s);
/* 1 when the description declares "input_range" [*lo, *hi] (0: any finite
 * value); *prep gets its "input_preprocessing" ("" without). */
int kp_scorer_input_range(const kp_scorer *s, double *lo, double *hi, const char **prep);
/* logits (n x classes) of the n samples in x (n x width), computed in ctx
 * (test mode, no graph); the result lives in ctx until ks_ctx_reset. NULL
 * on failure (ks_error_last()). Safe to call from several threads at once,
 * each with its own ctx. */
const float *kp_scorer_run(kp_scorer *s, ks_ctx *ctx, const float *x, int64_t n);

/* ---- number conversions of the scoring server (service_json.c) ------------- */
/* Parses the JSON number at p (before e): the pointer past it, or NULL if p
 * holds no number. *out gets exactly (float)strtod(number). */
const char *kp_json_f32(const char *p, const char *e, float *out);
/* Parses a body of exactly {"data": [[x, ...], ...]} (any JSON whitespace),
 * every row 'width' numbers that are finite as float32: *x (malloc'd, n x
 * width) and *n; 0, or -1 for anything else (nothing allocated). */
int kp_json_rows(const char *s, size_t len, int64_t width, float **x, int64_t *n);
/* Strict JSON (RFC 8259: no leading zeros, no "1.", no control bytes in
 * strings, valid UTF-8 and escapes, nesting up to 512), checked without
 * allocating: 0, or -1 with *at the byte offset of the first error. */
int kp_json_valid(const char *s, size_t len, size_t *at);
/* The general path of the scoring body: strict JSON, an object whose
 * "data" (its first such member) is a non-empty list of lists of 'width'
 * numbers, finite as float32. The shape is checked before anything is
 * allocated; then *x (malloc'd, n x width) and *n. 0, or -1 and *err. */
typedef enum kp_json_err_kind {
  KP_JE_MALFORMED = 1,  /* not JSON; at: the byte offset */
  KP_JE_NO_DATA,        /* not an object with "data": a list */
  KP_JE_EMPTY,          /* "data": [] */
  KP_JE_ROW,            /* input 'input' is not a list */
  KP_JE_NOT_NUMBER,     /* input 'input', value 'value' is not a number */
  KP_JE_COUNT,          /* input 'input' has 'got' values */
  KP_JE_NONFINITE,      /* input 'input', value 'value' is beyond float32 */
  KP_JE_NOMEM           /* out of memory for 'input' inputs */
} kp_json_err_kind;
typedef struct kp_json_err {
  kp_json_err_kind kind;
  size_t at;
  int64_t input, value, got;
} kp_json_err;
int kp_json_data(const char *s, size_t len, int64_t width, float **x, int64_t *n, kp_json_err *err);
/* Writes v as printf's "%.7g" would (NUL-terminated, at most
 * KP_FMT_G7_MAX bytes with the NUL); returns its length. */
#define KP_FMT_G7_MAX 32
size_t kp_fmt_g7(char *out, double v);

/* ---- the server -------------------------------------------------------------- */
/* `kusari service serve NAME [--ready-fd FD]`: runs service NAME of the
 * workspace in the foreground until SIGTERM/SIGINT. */
int kp_service_serve(int argc, char **argv);
/* Batching of single-sample requests (`model deploy --batch-max N
 * --batch-wait-us U`; N = 1: none), kept in the service's folder
 * (WORKSPACE/services/NAME/batch): the services table has no columns for
 * them. Load gives 1 and 0 when the file is absent or unreadable. */
#define KP_BATCH_MAX_LIMIT 1024
#define KP_BATCH_WAIT_LIMIT_US 1000000L
int kp_service_batch_save(const char *svc_dir, int max, long wait_us);
void kp_service_batch_load(const char *svc_dir, int *max, long *wait_us);
/* What `service list/show` show of a record (cmd_service.c; the tracking
 * server's GET /services too): a Running (or Starting) record whose process
 * is gone has failed (state and error set here, not in the store). */
struct kp_service;
void kp_service_check_alive(struct kp_service *s);
/* What `service start|stop|delete NAME` do (op "start", "stop", "delete";
 * the tracking server's POST /services/{name}/start|stop and DELETE
 * /services/{name}): 0, 1 when there is no such service, -1 when it failed
 * (printed; kp_err_last() says why). Starting a Running service does
 * nothing. */
struct kp_ws;
int kp_service_control(struct kp_ws *ws, const char *name, const char *op);
/* What `service keys NAME [--regenerate primary|secondary|both]` does
 * (regen NULL: read them): the two keys in k, whether the service asks for
 * them (*auth), whether a running server was told to reload them
 * (*running). 0, 1 when there is no such service (the store's error says
 * so), -1 (printed; kp_err_last()). */
int kp_service_keys(struct kp_ws *ws, const char *name, const char *regen, char k[2][65], int *auth, int *running);
/* `model deploy` (cmd_service.c; the tracking server's POST /services). */
typedef struct kp_deploy {
  const char *name;            /* the service */
  const char *model;           /* the model's name */
  long long version;           /* 0: its latest */
  const char *host;
  int port, auth, workers, timeout, batch_max;
  long long max_body_mb;
  long batch_wait_us;
  const char *entry_name, *entry_sha256;  /* an entry library (a blob), or NULL */
} kp_deploy;
/* 0 when d's fields are in their ranges, else -1 with the message in err */
int kp_deploy_check(kp_deploy *d, char *err, size_t errn);
/* Records the service (a new one gets new keys on file; an existing one is
 * stopped and redeployed with its keys: its model and state before in
 * old_model "NAME:VERSION" and old_state, else "") and starts its server.
 * 0, 1 when the model version does not exist (printed), -1 (printed;
 * kp_err_last()). */
int kp_service_deploy(struct kp_ws *ws, const kp_deploy *d, char old_model[300], char old_state[32]);

#endif
