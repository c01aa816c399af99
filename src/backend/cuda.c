/*
 * src/backend/cuda.c — the CUDA backend's skeleton (issue 17, part 2): the
 * required members of the table (device memory through the CUDA runtime,
 * copies, fills, cuBLAS products) and its registration. Built only with
 * -DKUSARI_CUDA=ON; the default build compiles the stub at the end, so
 * ks_backend_cuda_register reports KS_EUNSUPPORTED. The kernels of the
 * functions are not written yet: their members are NULL, so a function run
 * on a CUDA device fails with KS_EUNSUPPORTED naming the missing kernel.
 * Not run on a GPU yet (no GPU was lent while it was written).
 */
#include "kusari/backend.h"
#include "kusari/error.h"

#ifdef KUSARI_HAVE_CUDA
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include <pthread.h>

void ks__cuda_fill(int64_t n, float value, float *x); /* cuda_kernels.cu */

static cublasHandle_t g_blas;
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;
static int g_blas_ok;

static void blas_init(void) { g_blas_ok = cublasCreate(&g_blas) == CUBLAS_STATUS_SUCCESS; }
static cublasHandle_t blas(void) {
  pthread_once(&g_blas_once, blas_init);
  return g_blas_ok ? g_blas : NULL;
}

static void *cuda_alloc(size_t bytes) {
  void *p = NULL;
  return cudaMalloc(&p, bytes) == cudaSuccess ? p : NULL;
}
static void cuda_free(void *p) { (void)cudaFree(p); }
static void cuda_to_host(void *dst, const void *src, size_t bytes) {
  (void)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
}
static void cuda_from_host(void *dst, const void *src, size_t bytes) {
  (void)cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
}
static void cuda_copy(void *dst, const void *src, size_t bytes) {
  (void)cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}
static void cuda_fill_bytes(void *dst, int value, size_t bytes) { (void)cudaMemset(dst, value, bytes); }

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
 * operands and keep the transposition flags. */
static void cuda_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  cublasHandle_t h = blas();
  if (!h) return;
  (void)cublasSgemm(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n,
                    (int)m, (int)k, &alpha, b, (int)ldb, a, (int)lda, &beta, c, (int)ldc);
}
static void cuda_axpy(int64_t n, float alpha, const float *x, float *y) {
  cublasHandle_t h = blas();
  if (h) (void)cublasSaxpy(h, (int)n, &alpha, x, 1, y, 1);
}

static const ks_backend_ops ks_cuda_backend = {
  .name = "cuda",
  .alloc = cuda_alloc,
  .free = cuda_free,
  .memcpy_to_host = cuda_to_host,
  .memcpy_from_host = cuda_from_host,
  .fill_bytes = cuda_fill_bytes,
  .copy = cuda_copy,
  .gemm = cuda_gemm,
  .axpy = cuda_axpy,
  .fill = ks__cuda_fill,
};

int ks_backend_cuda_register(void) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count < 1)
    return ks_error_set(KS_EUNSUPPORTED, "no CUDA device: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
  return ks_backend_register(KS_DEVICE_CUDA, count, &ks_cuda_backend);
}

#else

int ks_backend_cuda_register(void) {
  return ks_error_set(KS_EUNSUPPORTED, "this libkusari was built without CUDA "
                      "(configure with -DKUSARI_CUDA=ON)");
}

#endif
