/*
 * kusari/backend.h — per-device kernel table.
 *
 * Functions never branch on the device: they fetch the table for their input
 * tensor (ks_backend_for) and call through it. The CPU table lives in
 * src/backend/cpu.c (OpenBLAS GEMM, loops written for gcc's vectorizer); a
 * CUDA table plugs in as src/backend/cuda.c without touching callers. Members
 * marked (optional) may be NULL; callers then fall back or report
 * KS_EUNSUPPORTED.
 */
#ifndef KUSARI_BACKEND_H
#define KUSARI_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include "kusari/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_backend_ops {
  const char *name;
  /* memory (required) */
  void *(*alloc)(size_t bytes);
  void  (*free)(void *p);
  void  (*memcpy_to_host)(void *dst, const void *src, size_t bytes);
  void  (*memcpy_from_host)(void *dst, const void *src, size_t bytes);
  /* C(M,N) = alpha * op(A) op(B) + beta * C, row-major, op = transpose if
   * trans_* (required) */
  void (*gemm)(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
  /* y += alpha * x over n floats (required) */
  void (*axpy)(int64_t n, float alpha, const float *x, float *y);
  /* x = value over n floats (required) */
  void (*fill)(int64_t n, float value, float *x);
  /* threads used by kernels; set_threads may be NULL (optional) */
  void (*set_threads)(int n);
  int  (*get_threads)(void);
} ks_backend_ops;

const ks_backend_ops *ks_backend_for_device(ks_device dev);
static inline const ks_backend_ops *ks_backend_for(const ks_tensor *t) {
  return ks_backend_for_device(t->device);
}
/* Number of threads of the CPU kernels (OpenBLAS and our own loops). */
void ks_set_num_threads(int n);
int ks_get_num_threads(void);

#ifdef __cplusplus
}
#endif
#endif
