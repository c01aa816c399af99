/*
 * kusari/tensor.h — n-dimensional contiguous row-major arrays.
 *
 * A ks_tensor is a plain visible struct (like ggml_tensor): dtype, shape,
 * element count, a data pointer and the device the data lives on. Data is
 * always contiguous and row-major. Tensors are either heap tensors
 * (ks_tensor_new, freed by ks_tensor_free) or arena tensors made through a
 * ks_ctx (ks_ctx_tensor, freed wholesale by ks_ctx_reset); the flags field
 * says which. Views (ks_tensor_view) share data and never own it.
 */
#ifndef KUSARI_TENSOR_H
#define KUSARI_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KS_MAX_DIMS 8

typedef enum ks_dtype { KS_F32 = 0, KS_I32 = 1 } ks_dtype;

/* Device types: the CPU is built in; others are served by a backend
 * registered with ks_backend_register (kusari/backend.h). KS_DEVICE_CHECKED
 * is the tests' checked CPU backend (device memory the host cannot read). */
typedef enum ks_device_type {
  KS_DEVICE_CPU = 0,
  KS_DEVICE_CUDA = 1,
  KS_DEVICE_CHECKED = 2
} ks_device_type;
#define KS_MAX_DEVICE_TYPES 8
/* A device: its type and its index among the devices of that type. */
typedef struct ks_device { ks_device_type type; int id; } ks_device;
#define KS_CPU ((ks_device){KS_DEVICE_CPU, 0})

enum {
  KS_TENSOR_OWNS_DATA = 1u << 0,  /* data was malloc'd with the tensor       */
  KS_TENSOR_ARENA     = 1u << 1,  /* struct and data belong to a ctx arena   */
  KS_TENSOR_HEAP      = 1u << 2   /* struct was malloc'd (ks_tensor_new)     */
};

typedef struct ks_tensor {
  ks_dtype  dtype;
  int       ndim;
  int64_t   shape[KS_MAX_DIMS];
  int64_t   size;     /* product of shape (1 for a scalar, ndim == 0) */
  void     *data;
  ks_device device;
  unsigned  flags;
} ks_tensor;

size_t ks_dtype_size(ks_dtype dtype);
const char *ks_dtype_name(ks_dtype dtype);

/* New zero-filled heap tensor. Returns NULL (error set) on bad shape / OOM. */
ks_tensor *ks_tensor_new(ks_dtype dtype, int ndim, const int64_t *shape);
/* New heap tensor holding a copy of 'src' (size elements of dtype). */
ks_tensor *ks_tensor_from_data(ks_dtype dtype, int ndim, const int64_t *shape, const void *src);
/* Deep copy into a new heap tensor. */
ks_tensor *ks_tensor_clone(const ks_tensor *t);
/* Frees a heap tensor (and its data if owned). NULL and arena tensors: no-op. */
void ks_tensor_free(ks_tensor *t);

/* ---- devices (src/core/device.c). Device memory is reached only through
 * the device's backend (kusari/backend.h): host code must not dereference
 * t->data of a tensor whose device is not the CPU. */
/* New zero-filled heap tensor on 'dev' (KS_EUNSUPPORTED: no backend for it). */
ks_tensor *ks_tensor_new_on(ks_device dev, ks_dtype dtype, int ndim, const int64_t *shape);
/* New heap tensor on 'dev' holding a copy of t (from any device). */
ks_tensor *ks_tensor_to_device(const ks_tensor *t, ks_device dev);
/* Moves a heap tensor that owns its data to 'dev' in place (Chainer's
 * to_gpu/to_cpu): the struct stays, its data is copied and the old freed. */
int ks_to_device(ks_tensor *t, ks_device dev);
/* Copies all of t to host memory dst / from host memory src. */
int ks_tensor_to_host(const ks_tensor *t, void *dst);
int ks_tensor_from_host(ks_tensor *t, const void *src);
/* dst = src (same dtype and shape, any devices). */
int ks_tensor_copy(ks_tensor *dst, const ks_tensor *src);

/* Fills 'view' with a tensor sharing 'data' (not owned). */
int ks_tensor_view_init(ks_tensor *view, ks_dtype dtype, int ndim, const int64_t *shape, void *data);

/* Element count of a shape; -1 (error set) on negative dims or overflow. */
int64_t ks_shape_size(int ndim, const int64_t *shape);
int ks_tensor_same_shape(const ks_tensor *a, const ks_tensor *b);
/* "(128, 784)" into buf; returns buf. */
char *ks_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
size_t ks_tensor_nbytes(const ks_tensor *t);

static inline float *ks_tensor_f32(const ks_tensor *t) { return (float *)t->data; }
static inline int32_t *ks_tensor_i32(const ks_tensor *t) { return (int32_t *)t->data; }

#ifdef __cplusplus
}
#endif
#endif
