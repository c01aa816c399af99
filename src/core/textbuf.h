/*
 * src/core/textbuf.h — internal: a growable text buffer for the JSON files
 * the library writes (model.json, the Trainer's log and RunLogger records).
 * An allocation failure sets 'oom' and makes every later call a no-op, so a
 * writer checks once at the end.
 */
#ifndef KUSARI_CORE_TEXTBUF_H
#define KUSARI_CORE_TEXTBUF_H

#include <stddef.h>

typedef struct ks__textbuf {
  char *s;          /* NUL-terminated once anything was written */
  size_t n, cap;    /* bytes used (without the NUL), bytes allocated */
  int oom;
} ks__textbuf;

void ks__tb_printf(ks__textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s as a JSON string: quotes, \" and \\ escaped, control bytes as \u00XX;
 * other bytes (UTF-8 included) as they are. */
void ks__tb_json_string(ks__textbuf *b, const char *s);

/* v as Python's json.dump writes a float: the shortest %g that reads back
 * exactly, ".0" on integral values, NaN / Infinity / -Infinity. */
void ks__tb_json_double(ks__textbuf *b, double v);

#endif
