/*
 * platform/filter.c — the run filter and order parser (filter.h): a
 * recursive-descent parser over the text, giving a tree that store backends
 * compile into queries with bound parameters. Errors carry the 1-based
 * character position and what was expected there.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* timegm */
#endif
#include "filter.h"

#include "store.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_DEPTH 64        /* nested parentheses */
#define MAX_COMPARISONS 256 /* comparisons and IN values in one filter */

typedef struct parser {
  const char *text;
  size_t at;
  int depth, count;
  kp_filter_error *err;
} parser;

static const struct {
  const char *name;
  kp_filter_attr attr;
} ATTRS[] = {
  {"status", KP_ATTR_STATUS},     {"experiment", KP_ATTR_EXPERIMENT}, {"compute", KP_ATTR_COMPUTE},
  {"created", KP_ATTR_CREATED},   {"started", KP_ATTR_STARTED},       {"start_time", KP_ATTR_STARTED},
  {"ended", KP_ATTR_ENDED},       {"end_time", KP_ATTR_ENDED},        {"duration", KP_ATTR_DURATION},
  {"id", KP_ATTR_ID},             {"run_id", KP_ATTR_ID},             {"parent", KP_ATTR_PARENT},
};

int kp_filter_attr_numeric(kp_filter_attr a) {
  return a == KP_ATTR_CREATED || a == KP_ATTR_STARTED || a == KP_ATTR_ENDED || a == KP_ATTR_DURATION;
}

static int fail(parser *p, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, size_t at, const char *fmt, ...) {
  if (p->err->message[0]) return -1;  /* the first error stands */
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  p->err->pos = (int)at + 1;
  snprintf(p->err->message, sizeof p->err->message, "position %d: %s", p->err->pos, what);
  return -1;
}

static int oom(parser *p) { return fail(p, p->at, "out of memory"); }

static void skip_ws(parser *p) {
  while (p->text[p->at] == ' ' || p->text[p->at] == '\t' || p->text[p->at] == '\n' || p->text[p->at] == '\r') p->at++;
}

static int name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':' || c == '/' || c == '-'; }
static int word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* 1 (consumed) when the keyword 'kw' is next, as a whole word */
static int keyword(parser *p, const char *kw) {
  skip_ws(p);
  size_t n = strlen(kw);
  if (strncasecmp(p->text + p->at, kw, n) != 0 || word_char(p->text[p->at + n])) return 0;
  p->at += n;
  return 1;
}

/* what is at the current position, for messages */
static const char *here(parser *p, char *buf, size_t n) {
  if (!p->text[p->at]) return "the end";
  size_t l = 0;
  while (p->text[p->at + l] && !isspace((unsigned char)p->text[p->at + l]) && l < 24) l++;
  snprintf(buf, n, "'%.*s'", (int)l, p->text + p->at);
  return buf;
}

/* a backquoted name at p->at (the opening '`'); '``' is a backquote */
static char *backquoted(parser *p) {
  size_t open = p->at++, cap = 32, n = 0;
  char *s = malloc(cap);
  if (!s) return oom(p), NULL;
  for (;;) {
    char c = p->text[p->at];
    if (!c) {
      free(s);
      fail(p, open, "the name opened with ` here is not closed (expected a closing `)");
      return NULL;
    }
    p->at++;
    if (c == '`') {
      if (p->text[p->at] != '`') break;
      p->at++;
    }
    if (n + 2 > cap) {
      char *t = realloc(s, cap *= 2);
      if (!t) { free(s); oom(p); return NULL; }
      s = t;
    }
    s[n++] = c;
  }
  s[n] = '\0';
  if (!n) {
    free(s);
    fail(p, open, "a name in backquotes cannot be empty");
    return NULL;
  }
  return s;
}

static int find_attr(const char *name, size_t n, kp_filter_attr *out) {
  for (size_t i = 0; i < sizeof ATTRS / sizeof ATTRS[0]; i++)
    if (strlen(ATTRS[i].name) == n && !strncasecmp(ATTRS[i].name, name, n)) {
      *out = ATTRS[i].attr;
      return 0;
    }
  return -1;
}

static const char *const ATTR_LIST = "status, experiment, compute, created, started, ended, duration, id, parent";

static int parse_key(parser *p, kp_filter_key *k) {
  memset(k, 0, sizeof *k);
  skip_ws(p);
  size_t start = p->at;
  char buf[64];
  if (p->text[p->at] == '`')
    return fail(p, start, "expected a key such as metrics.NAME, params.NAME, tags.NAME or status (a backquoted name "
                          "follows a prefix: metrics.`val/loss`)");
  while (name_char(p->text[p->at])) p->at++;
  size_t len = p->at - start;
  if (!len || isdigit((unsigned char)p->text[start]) || p->text[start] == '-') {
    p->at = start;
    return fail(p, start, "expected a key such as metrics.NAME, params.NAME, tags.NAME or status, found %s",
                here(p, buf, sizeof buf));
  }
  const char *w = p->text + start, *dot = memchr(w, '.', len);
  if (!dot) {
    if (find_attr(w, len, &k->attr) != 0)
      return fail(p, start, "unknown attribute '%.*s' (attributes: %s; or metrics.NAME, params.NAME, tags.NAME)",
                  (int)len, w, ATTR_LIST);
    k->kind = KP_FILTER_ATTR;
    k->name = strndup(w, len);
    return k->name ? 0 : oom(p);
  }
  size_t plen = (size_t)(dot - w);
  static const struct { const char *prefix; kp_filter_kind kind; } PREFIXES[] = {
    {"metrics", KP_FILTER_METRIC}, {"metric", KP_FILTER_METRIC},   {"params", KP_FILTER_PARAM},
    {"param", KP_FILTER_PARAM},    {"parameters", KP_FILTER_PARAM}, {"tags", KP_FILTER_TAG},
    {"tag", KP_FILTER_TAG},        {"attributes", KP_FILTER_ATTR}, {"attribute", KP_FILTER_ATTR},
    {"attr", KP_FILTER_ATTR},
  };
  size_t i;
  for (i = 0; i < sizeof PREFIXES / sizeof PREFIXES[0]; i++)
    if (strlen(PREFIXES[i].prefix) == plen && !strncasecmp(PREFIXES[i].prefix, w, plen)) break;
  if (i == sizeof PREFIXES / sizeof PREFIXES[0])
    return fail(p, start, "unknown key '%.*s' (use metrics.NAME, params.NAME, tags.NAME or an attribute: %s)", (int)plen,
                w, ATTR_LIST);
  k->kind = PREFIXES[i].kind;
  size_t nlen = len - plen - 1;
  if (nlen == 0 && p->text[p->at] == '`') {
    if (!(k->name = backquoted(p))) return -1;
  } else if (nlen == 0) {
    return fail(p, p->at, "expected a name after '%.*s' (backquote odd names: %.*s`val/loss`)", (int)(plen + 1), w,
                (int)(plen + 1), w);
  } else if (!(k->name = strndup(dot + 1, nlen))) {
    return oom(p);
  }
  if (k->kind == KP_FILTER_ATTR && find_attr(k->name, strlen(k->name), &k->attr) != 0) {
    int r = fail(p, start, "unknown attribute '%s' (attributes: %s)", k->name, ATTR_LIST);
    kp_filter_key_clear(k);
    return r;
  }
  return 0;
}

/* a 'string' or "string" at p->at */
static int parse_string(parser *p, kp_filter_value *v) {
  size_t open = p->at;
  char q = p->text[p->at++];
  size_t cap = 32, n = 0;
  char *s = malloc(cap);
  if (!s) return oom(p);
  for (;;) {
    char c = p->text[p->at];
    if (!c) {
      free(s);
      return fail(p, open, "the string opened here is not closed (expected a closing %c)", q);
    }
    p->at++;
    if (c == q) {
      if (p->text[p->at] != q) break;
      p->at++;  /* '' is a quote */
    } else if (c == '\\') {
      char e = p->text[p->at];
      switch (e) {
      case '\\': case '\'': case '"': c = e; break;
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case '%': case '_': c = '\\'; p->at--; break;  /* kept: LIKE's escapes */
      default:
        free(s);
        return fail(p, p->at - 1, "unknown escape '\\%c' in a string (use \\\\, \\', \\\", \\n, \\t, or \\%% and \\_ in LIKE)", e ? e : ' ');
      }
      p->at++;
    }
    if (n + 2 > cap) {
      char *t = realloc(s, cap *= 2);
      if (!t) { free(s); return oom(p); }
      s = t;
    }
    s[n++] = c;
  }
  s[n] = '\0';
  v->is_number = 0;
  v->text = s;
  return 0;
}

static int parse_value(parser *p, kp_filter_value *v, const char *after) {
  memset(v, 0, sizeof *v);
  skip_ws(p);
  char c = p->text[p->at];
  if (c == '\'' || c == '"') return parse_string(p, v);
  size_t start = p->at, i = start;
  if (c == '-' || c == '+') i++;
  size_t digits = 0;
  while (isdigit((unsigned char)p->text[i])) i++, digits++;
  if (p->text[i] == '.') {
    i++;
    while (isdigit((unsigned char)p->text[i])) i++, digits++;
  }
  if (digits && (p->text[i] == 'e' || p->text[i] == 'E')) {
    size_t j = i + 1;
    if (p->text[j] == '-' || p->text[j] == '+') j++;
    if (isdigit((unsigned char)p->text[j])) {
      while (isdigit((unsigned char)p->text[j])) j++;
      i = j;
    }
  }
  char buf[64];
  if (!digits || name_char(p->text[i]) || p->text[i] == '`')
    return fail(p, start, "expected a value (a number or a 'quoted string') after %s, found %s", after,
                here(p, buf, sizeof buf));
  v->is_number = 1;
  v->text = strndup(p->text + start, i - start);
  if (!v->text) return oom(p);
  v->number = strtod(v->text, NULL);
  p->at = i;
  return 0;
}

/* 'YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z]' as UTC epoch seconds */
static int parse_time(const char *s, double *out) {
  int y, mo, d, h = 0, mi = 0, n = 0;
  double sec = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3) return -1;
  const char *t = s + n;
  if (*t == 'T' || *t == ' ') {
    int m = 0;
    if (sscanf(t + 1, "%2d:%2d%n", &h, &mi, &m) != 2) return -1;
    t += 1 + m;
    if (*t == ':') {
      char *e;
      sec = strtod(t + 1, &e);
      if (e == t + 1 || sec < 0 || sec >= 61) return -1;
      t = e;
    }
  }
  if (*t == 'Z') t++;
  if (*t || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59) return -1;
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
  *out = (double)timegm(&tm) + sec;
  return 0;
}

static const char *op_text(kp_filter_op op) {
  static const char *const T[] = {"=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "IN", "NOT IN"};
  return T[op];
}

static int like_op(kp_filter_op op) {
  return op == KP_FOP_LIKE || op == KP_FOP_ILIKE || op == KP_FOP_NOT_LIKE || op == KP_FOP_NOT_ILIKE;
}
static int order_op(kp_filter_op op) { return op >= KP_FOP_LT && op <= KP_FOP_GE; }

/* what a comparison's values must be; positions of each value in 'vpos' */
static int check_cmp(parser *p, kp_filter *f, const size_t *vpos, size_t keypos) {
  const kp_filter_key *k = &f->key;
  if (k->kind == KP_FILTER_METRIC) {
    if (like_op(f->op))
      return fail(p, keypos, "metrics.%s is a number: %s compares text (use =, !=, <, <=, >, >= or IN)", k->name,
                  op_text(f->op));
    for (size_t i = 0; i < f->nvalues; i++)
      if (!f->values[i].is_number)
        return fail(p, vpos[i], "metrics.%s is a number: compare it with a number, not a string", k->name);
  } else if (k->kind == KP_FILTER_TAG) {
    if (order_op(f->op) && f->values[0].is_number)
      return fail(p, vpos[0], "tags hold text: %s with a number does not compare them (quote the value to compare "
                              "text, or record numbers as params)", op_text(f->op));
  } else if (k->kind == KP_FILTER_ATTR && kp_filter_attr_numeric(k->attr)) {
    if (like_op(f->op))
      return fail(p, keypos, "%s is a number: %s compares text (use =, !=, <, <=, >, >= or IN)", k->name, op_text(f->op));
    for (size_t i = 0; i < f->nvalues; i++) {
      kp_filter_value *v = &f->values[i];
      if (v->is_number) continue;
      if (k->attr == KP_ATTR_DURATION)
        return fail(p, vpos[i], "duration is a number of seconds: compare it with a number, not a string");
      if (parse_time(v->text, &v->number) != 0)
        return fail(p, vpos[i], "expected a time for %s: seconds since the epoch, or 'YYYY-MM-DD' or "
                                "'YYYY-MM-DDTHH:MM:SS' (UTC)", k->name);
      v->is_number = 1;
    }
  } else if (k->kind == KP_FILTER_ATTR) {
    for (size_t i = 0; i < f->nvalues; i++) {
      kp_filter_value *v = &f->values[i];
      if (v->is_number)
        return fail(p, vpos[i], "%s is text: compare it with a 'quoted string'", k->name);
      if (k->attr == KP_ATTR_STATUS && !like_op(f->op)) {
        int j;
        for (j = 0; j < KP_RUN_NSTATUS; j++)
          if (!strcasecmp(v->text, kp_run_status_name((kp_run_status)j))) break;
        if (j == KP_RUN_NSTATUS)
          return fail(p, vpos[i], "'%s' is not a run status (use Queued, Preparing, Running, Finalizing, Completed, "
                                  "Failed or Canceled)", v->text);
        char *canon = strdup(kp_run_status_name((kp_run_status)j));
        if (!canon) return oom(p);
        free(v->text);
        v->text = canon;
      }
    }
  }
  return 0;
}

static kp_filter *node(parser *p, kp_filter_type t) {
  kp_filter *f = calloc(1, sizeof *f);
  if (!f) oom(p);
  else f->type = t;
  return f;
}

static kp_filter *parse_or(parser *p);

static kp_filter *parse_comparison(parser *p) {
  skip_ws(p);
  size_t keypos = p->at;
  kp_filter *f = node(p, KP_FILTER_CMP);
  if (!f) return NULL;
  f->pos = (int)keypos + 1;
  if (++p->count > MAX_COMPARISONS) { fail(p, keypos, "too many comparisons (at most %d)", MAX_COMPARISONS); goto bad; }
  if (parse_key(p, &f->key) != 0) goto bad;
  skip_ws(p);
  size_t oppos = p->at;
  const char *t = p->text + p->at;
  size_t keylen = oppos - keypos;
  while (keylen && isspace((unsigned char)p->text[keypos + keylen - 1])) keylen--;
  if (!strncmp(t, "<=", 2)) f->op = KP_FOP_LE, p->at += 2;
  else if (!strncmp(t, ">=", 2)) f->op = KP_FOP_GE, p->at += 2;
  else if (!strncmp(t, "!=", 2) || !strncmp(t, "<>", 2)) f->op = KP_FOP_NE, p->at += 2;
  else if (!strncmp(t, "==", 2)) f->op = KP_FOP_EQ, p->at += 2;
  else if (*t == '=') f->op = KP_FOP_EQ, p->at++;
  else if (*t == '<') f->op = KP_FOP_LT, p->at++;
  else if (*t == '>') f->op = KP_FOP_GT, p->at++;
  else if (keyword(p, "like")) f->op = KP_FOP_LIKE;
  else if (keyword(p, "ilike")) f->op = KP_FOP_ILIKE;
  else if (keyword(p, "in")) f->op = KP_FOP_IN;
  else if (keyword(p, "not")) {
    if (keyword(p, "like")) f->op = KP_FOP_NOT_LIKE;
    else if (keyword(p, "ilike")) f->op = KP_FOP_NOT_ILIKE;
    else if (keyword(p, "in")) f->op = KP_FOP_NOT_IN;
    else { fail(p, p->at, "expected LIKE, ILIKE or IN after NOT"); goto bad; }
  } else {
    char buf[64];
    fail(p, oppos, "expected an operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN) after '%.*s', found %s", (int)keylen,
         p->text + keypos, here(p, buf, sizeof buf));
    goto bad;
  }
  char after[96];
  snprintf(after, sizeof after, "'%s'", op_text(f->op));
  size_t vpos[MAX_COMPARISONS];
  if (f->op == KP_FOP_IN || f->op == KP_FOP_NOT_IN) {
    skip_ws(p);
    if (p->text[p->at] != '(') { fail(p, p->at, "expected '(' and a list of values after %s", after); goto bad; }
    p->at++;
    for (;;) {
      if (f->nvalues == MAX_COMPARISONS || ++p->count > MAX_COMPARISONS) {
        fail(p, p->at, "too many values (at most %d in one filter)", MAX_COMPARISONS);
        goto bad;
      }
      kp_filter_value *nv = realloc(f->values, (f->nvalues + 1) * sizeof *nv);
      if (!nv) { oom(p); goto bad; }
      f->values = nv;
      skip_ws(p);
      vpos[f->nvalues] = p->at;
      if (parse_value(p, &f->values[f->nvalues], f->nvalues ? "','" : after) != 0) goto bad;
      f->nvalues++;
      skip_ws(p);
      if (p->text[p->at] == ',') { p->at++; continue; }
      if (p->text[p->at] == ')') { p->at++; break; }
      char buf[64];
      fail(p, p->at, "expected ',' or ')' in the list after %s, found %s", after, here(p, buf, sizeof buf));
      goto bad;
    }
  } else {
    f->values = calloc(1, sizeof *f->values);
    if (!f->values) { oom(p); goto bad; }
    skip_ws(p);
    vpos[0] = p->at;
    f->nvalues = 1;
    if (parse_value(p, &f->values[0], after) != 0) goto bad;
  }
  if (check_cmp(p, f, vpos, keypos) != 0) goto bad;
  return f;
bad:
  kp_filter_free(f);
  return NULL;
}

static kp_filter *parse_primary(parser *p) {
  skip_ws(p);
  if (p->text[p->at] != '(') return parse_comparison(p);
  size_t open = p->at++;
  if (++p->depth > MAX_DEPTH) {
    fail(p, open, "parentheses nested too deep (at most %d)", MAX_DEPTH);
    return NULL;
  }
  kp_filter *f = parse_or(p);
  if (!f) return NULL;
  skip_ws(p);
  if (p->text[p->at] != ')') {
    char buf[64];
    fail(p, p->at, "expected AND, OR or ')' to close the '(' at position %zu, found %s", open + 1, here(p, buf, sizeof buf));
    kp_filter_free(f);
    return NULL;
  }
  p->at++;
  p->depth--;
  return f;
}

static kp_filter *binary(parser *p, kp_filter_type t, kp_filter *l, kp_filter *r) {
  if (!r) { kp_filter_free(l); return NULL; }
  kp_filter *f = node(p, t);
  if (!f) { kp_filter_free(l); kp_filter_free(r); return NULL; }
  f->left = l;
  f->right = r;
  return f;
}

static kp_filter *parse_and(parser *p) {
  kp_filter *f = parse_primary(p);
  while (f && keyword(p, "and")) f = binary(p, KP_FILTER_AND, f, parse_primary(p));
  return f;
}

static kp_filter *parse_or(parser *p) {
  kp_filter *f = parse_and(p);
  while (f && keyword(p, "or")) f = binary(p, KP_FILTER_OR, f, parse_and(p));
  return f;
}

static int blank(const char *s) {
  for (; s && *s; s++)
    if (!isspace((unsigned char)*s)) return 0;
  return 1;
}

int kp_filter_parse(const char *text, kp_filter **out, kp_filter_error *err) {
  *out = NULL;
  memset(err, 0, sizeof *err);
  if (blank(text)) return 0;
  parser p = {.text = text, .err = err};
  kp_filter *f = parse_or(&p);
  if (!f) return -1;
  skip_ws(&p);
  if (text[p.at]) {
    char buf[64];
    fail(&p, p.at, "expected AND, OR or the end of the filter, found %s", here(&p, buf, sizeof buf));
    kp_filter_free(f);
    return -1;
  }
  *out = f;
  return 0;
}

void kp_filter_key_clear(kp_filter_key *k) {
  free(k->name);
  k->name = NULL;
}

void kp_filter_free(kp_filter *f) {
  if (!f) return;
  kp_filter_free(f->left);
  kp_filter_free(f->right);
  kp_filter_key_clear(&f->key);
  for (size_t i = 0; i < f->nvalues; i++) free(f->values[i].text);
  free(f->values);
  free(f);
}

int kp_filter_parse_order(const char *text, kp_filter_key *key, int *desc, kp_filter_error *err) {
  memset(err, 0, sizeof *err);
  memset(key, 0, sizeof *key);
  *desc = 0;
  parser p = {.text = text ? text : "", .err = err};
  if (parse_key(&p, key) != 0) return -1;
  if (keyword(&p, "desc")) *desc = 1;
  else keyword(&p, "asc");
  skip_ws(&p);
  if (p.text[p.at]) {
    char buf[64];
    fail(&p, p.at, "expected ASC, DESC or the end after the key, found %s", here(&p, buf, sizeof buf));
    kp_filter_key_clear(key);
    return -1;
  }
  return 0;
}
