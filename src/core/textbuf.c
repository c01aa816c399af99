/*
 * src/core/textbuf.c — the library's growable text buffer (textbuf.h).
 */
#include "core/textbuf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ks__tb_printf(ks__textbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap <= b->n + (size_t)k) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) { b->oom = 1; return; }
    b->s = s;
    b->cap = cap;
  }
}

void ks__tb_json_string(ks__textbuf *b, const char *s) {
  ks__tb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') ks__tb_printf(b, "\\%c", *p);
    else if (*p < 0x20) ks__tb_printf(b, "\\u%04x", *p);
    else ks__tb_printf(b, "%c", *p);
  }
  ks__tb_printf(b, "\"");
}

void ks__tb_json_double(ks__textbuf *b, double v) {
  if (isnan(v)) { ks__tb_printf(b, "NaN"); return; }
  if (isinf(v)) { ks__tb_printf(b, v > 0 ? "Infinity" : "-Infinity"); return; }
  char tmp[64];
  for (int p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*g", p, v);
    if (strtod(tmp, NULL) == v) break;
  }
  if (!strpbrk(tmp, ".e")) strcat(tmp, ".0");
  ks__tb_printf(b, "%s", tmp);
}
