/*
 * src/core/error.c — thread-local last-error message (see kusari/error.h).
 */
#include "kusari/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[1024];
static _Thread_local int g_code;

/* Formats into a local buffer first: an argument may be ks_error_last()
 * itself (ks_backward(ctx, NULL) quotes the forward pass's reason), and
 * vsnprintf into the buffer it reads from is undefined (in practice the
 * reason was overwritten by the new prefix before it was copied). */
int ks_error_set(int code, const char *fmt, ...) {
  char buf[sizeof g_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  memcpy(g_msg, buf, sizeof g_msg);
  g_code = code;
  return code;
}

const char *ks_error_last(void) { return g_msg; }
int ks_error_last_code(void) { return g_code; }
void ks_error_clear(void) { g_msg[0] = '\0'; g_code = KS_OK; }

const char *ks_status_name(int code) {
  switch (code) {
    case KS_OK: return "KS_OK";
    case KS_EINVAL: return "KS_EINVAL";
    case KS_ENOMEM: return "KS_ENOMEM";
    case KS_EIO: return "KS_EIO";
    case KS_EFORMAT: return "KS_EFORMAT";
    case KS_ENOTFOUND: return "KS_ENOTFOUND";
    case KS_ESHAPE: return "KS_ESHAPE";
    case KS_EUNSUPPORTED: return "KS_EUNSUPPORTED";
    case KS_ESTATE: return "KS_ESTATE";
    default: return "KS_E?";
  }
}

void ks__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "kusari: internal assertion failed at %s:%d: %s\n", file, line, expr);
  abort();
}
