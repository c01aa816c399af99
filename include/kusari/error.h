/*
 * kusari/error.h — error codes and the thread-local last-error message.
 *
 * Every public call of libkusari that can fail returns an int: KS_OK (0) or a
 * negative KS_E* code. Calls that return a pointer return NULL on failure.
 * In both cases ks_error_last() holds a human-readable message for the
 * calling thread. The library never calls exit() or abort() on bad input;
 * KS_ASSERT is reserved for internal invariants (programming errors).
 */
#ifndef KUSARI_ERROR_H
#define KUSARI_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ks_status {
  KS_OK           =  0,
  KS_EINVAL       = -1,  /* bad argument                                  */
  KS_ENOMEM       = -2,  /* allocation failed                             */
  KS_EIO          = -3,  /* read/write/open failed                        */
  KS_EFORMAT      = -4,  /* malformed file or data                        */
  KS_ENOTFOUND    = -5,  /* missing key, file or name                     */
  KS_ESHAPE       = -6,  /* shape or dtype mismatch                       */
  KS_EUNSUPPORTED = -7,  /* valid but not supported (device, dtype, ...)  */
  KS_ESTATE       = -8   /* call not valid in the current state           */
} ks_status;

/* Sets the thread's last error and returns 'code', so callers can write
 * `return ks_error_set(KS_EINVAL, "batch_size must be > 0, got %d", n);`
 * An argument may be ks_error_last() itself (to wrap the previous reason).
 * Messages longer than 1023 bytes are cut. */
int ks_error_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Message of the last error on this thread ("" if none). Valid until the next
 * failing call on the same thread. */
const char *ks_error_last(void);
int ks_error_last_code(void);
void ks_error_clear(void);
/* Short name of a code: "KS_EINVAL". */
const char *ks_status_name(int code);

/* Internal invariants only: prints file:line and aborts. */
void ks__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define KS_ASSERT(x) do { if (!(x)) ks__assert_fail(#x, __FILE__, __LINE__); } while (0)

#ifdef __cplusplus
}
#endif
#endif
