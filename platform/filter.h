/*
 * platform/filter.h — run filters and orderings, as MLflow's run search
 * writes them: `metrics.Accuracy > 0.9 and params.batchsize = 128 and
 * status = 'Completed'`. The parser gives a backend-neutral tree; each store
 * backend compiles it into its own query with bound parameters (the SQLite
 * backend: store_sqlite.c, "run search"), so no query text is ever made
 * from what a user wrote.
 *
 * Grammar (keywords are case-insensitive; docs/PLATFORM.md, "Run filters"):
 *
 *   filter     := or
 *   or         := and ( OR and )*
 *   and        := primary ( AND primary )*
 *   primary    := '(' or ')' | comparison
 *   comparison := key op value | key [NOT] IN '(' value (',' value)* ')'
 *   op         := = | != | <> | < | <= | > | >= | LIKE | ILIKE | NOT LIKE | NOT ILIKE
 *   key        := metrics.NAME | params.NAME | tags.NAME | [attributes.]ATTR
 *   ATTR       := status | experiment | compute | created | started | ended
 *               | duration | id | parent
 *   NAME       := [A-Za-z0-9_.:/-]+ | `anything, `` for a backquote`
 *   value      := number | 'string' | "string"   (escapes: '' or \' \" \\ \n \t)
 *
 * Prefixes may also be written metric., param., parameters., tag., attribute.
 * and attr.; created/started/ended take epoch seconds or 'YYYY-MM-DD[THH:MM[:SS]][Z]'
 * (UTC). An order is `key [ASC|DESC]` (ASC when not said).
 */
#ifndef KUSARI_PLATFORM_FILTER_H
#define KUSARI_PLATFORM_FILTER_H

#include <stddef.h>

typedef enum kp_filter_kind {
  KP_FILTER_METRIC,  /* a run's latest value of metric 'name' (a number) */
  KP_FILTER_PARAM,   /* param 'name' (text; numbers compare as numbers) */
  KP_FILTER_TAG,     /* tag 'name' (text) */
  KP_FILTER_ATTR,    /* a run attribute ('attr') */
} kp_filter_kind;

typedef enum kp_filter_attr {
  KP_ATTR_STATUS,
  KP_ATTR_EXPERIMENT,
  KP_ATTR_COMPUTE,
  KP_ATTR_CREATED,   /* times: epoch seconds */
  KP_ATTR_STARTED,
  KP_ATTR_ENDED,
  KP_ATTR_DURATION,  /* seconds; until now for a run that has not ended */
  KP_ATTR_ID,
  KP_ATTR_PARENT,
} kp_filter_attr;

typedef struct kp_filter_key {
  kp_filter_kind kind;
  kp_filter_attr attr;  /* KP_FILTER_ATTR */
  char *name;           /* the metric, param or tag name; the attribute's name */
} kp_filter_key;

/* 1 when an attribute holds a number (the times and duration), 0 for text */
int kp_filter_attr_numeric(kp_filter_attr a);

typedef enum kp_filter_op {
  KP_FOP_EQ, KP_FOP_NE, KP_FOP_LT, KP_FOP_LE, KP_FOP_GT, KP_FOP_GE,
  KP_FOP_LIKE,       /* % any run of characters, _ one; case-sensitive */
  KP_FOP_ILIKE,      /* the same, ignoring ASCII case */
  KP_FOP_NOT_LIKE, KP_FOP_NOT_ILIKE,
  KP_FOP_IN, KP_FOP_NOT_IN,
} kp_filter_op;

typedef struct kp_filter_value {
  int is_number;
  double number;  /* is_number */
  char *text;     /* the string; for a number, as written */
} kp_filter_value;

typedef enum kp_filter_type { KP_FILTER_AND, KP_FILTER_OR, KP_FILTER_CMP } kp_filter_type;

typedef struct kp_filter {
  kp_filter_type type;
  struct kp_filter *left, *right;  /* AND, OR */
  kp_filter_key key;               /* CMP */
  kp_filter_op op;
  kp_filter_value *values;         /* one, or the IN list */
  size_t nvalues;
  int pos;                         /* 1-based position of the comparison */
} kp_filter;

typedef struct kp_filter_error {
  int pos;            /* 1-based character position */
  char message[512];  /* "position 23: expected a value after '>'" */
} kp_filter_error;

/* Parses a filter. An empty or blank text gives *out NULL (every run).
 * 0, or -1 with 'err' filled (a syntax error, a value of the wrong type, an
 * unknown attribute or run status). */
int kp_filter_parse(const char *text, kp_filter **out, kp_filter_error *err);
void kp_filter_free(kp_filter *f);

/* Parses an order: "metrics.Accuracy DESC", "params.lr", "created", ...
 * 0, or -1 with 'err' filled. The key's name is the caller's to free
 * (kp_filter_key_clear). */
int kp_filter_parse_order(const char *text, kp_filter_key *key, int *desc, kp_filter_error *err);
void kp_filter_key_clear(kp_filter_key *k);

#endif
