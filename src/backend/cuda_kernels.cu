/*
 * src/backend/cuda_kernels.cu — element-wise kernels of the CUDA backend
 * (only with -DKUSARI_CUDA=ON). So far the fill of the required members.
 */
#include <stdint.h>

__global__ static void fill_kernel(int64_t n, float value, float *x) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    x[i] = value;
}

extern "C" void ks__cuda_fill(int64_t n, float value, float *x) {
  if (n <= 0) return;
  int64_t blocks = (n + 255) / 256;
  if (blocks > 4096) blocks = 4096;
  fill_kernel<<<(unsigned)blocks, 256>>>(n, value, x);
}
