/*
 * src/core/tensor.c — heap tensors, views and shape helpers.
 */
#include "kusari/tensor.h"
#include "kusari/error.h"
#include "kusari/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h> /* madvise */

size_t ks_dtype_size(ks_dtype dtype) {
  switch (dtype) {
    case KS_F32: return 4;
    case KS_I32: return 4;
  }
  return 0;
}

const char *ks_dtype_name(ks_dtype dtype) {
  switch (dtype) {
    case KS_F32: return "float32";
    case KS_I32: return "int32";
  }
  return "?";
}

int64_t ks_shape_size(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > KS_MAX_DIMS) {
    ks_error_set(KS_EINVAL, "tensor rank %d is outside 0..%d", ndim, KS_MAX_DIMS);
    return -1;
  }
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      ks_error_set(KS_EINVAL, "negative dimension %lld at axis %d", (long long)shape[i], i);
      return -1;
    }
    if (shape[i] != 0 && n > INT64_MAX / 8 / shape[i]) {
      ks_error_set(KS_EINVAL, "tensor shape overflows");
      return -1;
    }
    n *= shape[i];
  }
  return n;
}

char *ks_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t off = 0;
  if (n == 0) return buf;
  buf[0] = '\0';
  off += (size_t)snprintf(buf + off, n - off, "(");
  for (int i = 0; i < ndim && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (off < n) off += (size_t)snprintf(buf + off, n - off, ndim == 1 ? ",)" : ")");
  return buf;
}

size_t ks_tensor_nbytes(const ks_tensor *t) { return (size_t)t->size * ks_dtype_size(t->dtype); }

int ks_tensor_view_init(ks_tensor *view, ks_dtype dtype, int ndim, const int64_t *shape, void *data) {
  int64_t n = ks_shape_size(ndim, shape);
  if (n < 0) return ks_error_last_code();
  memset(view, 0, sizeof *view);
  view->dtype = dtype;
  view->ndim = ndim;
  for (int i = 0; i < ndim; i++) view->shape[i] = shape[i];
  view->size = n;
  view->data = data;
  view->device = KS_CPU;
  return KS_OK;
}

#define KS_HUGE_PAGE ((size_t)2 << 20)
#define KS_HUGE_MIN ((size_t)8 << 20)

ks_tensor *ks_tensor_new(ks_dtype dtype, int ndim, const int64_t *shape) {
  if (dtype != KS_F32 && dtype != KS_I32) {
    ks_error_set(KS_EINVAL, "unknown dtype %d", (int)dtype);
    return NULL;
  }
  ks_tensor *t = malloc(sizeof *t);
  if (!t) { ks_error_set(KS_ENOMEM, "out of memory allocating a tensor"); return NULL; }
  if (ks_tensor_view_init(t, dtype, ndim, shape, NULL) != KS_OK) { free(t); return NULL; }
  size_t bytes = ks_tensor_nbytes(t);
  /* 64-byte alignment for vector loads; round the size up as aligned_alloc
   * wants. Big tensors (a dataset, a big layer) are read at random rows by
   * the batch gather: they get 2 MiB alignment and transparent huge pages
   * where the kernel offers them (madvise mode included), so a random row
   * costs no page walk: a TLB entry covers 2 MiB instead of 4 KiB. */
  size_t align = bytes >= KS_HUGE_MIN ? KS_HUGE_PAGE : 64;
  size_t alloc = (bytes + align - 1) & ~(align - 1);
  t->data = aligned_alloc(align, alloc ? alloc : 64);
#ifdef MADV_HUGEPAGE
  if (t->data && align == KS_HUGE_PAGE) (void)madvise(t->data, alloc, MADV_HUGEPAGE); /* a hint */
#endif
  if (!t->data) {
    free(t);
    ks_error_set(KS_ENOMEM, "out of memory allocating %zu bytes for a tensor", bytes);
    return NULL;
  }
  memset(t->data, 0, bytes);
  t->flags = KS_TENSOR_OWNS_DATA | KS_TENSOR_HEAP;
  return t;
}

ks_tensor *ks_tensor_from_data(ks_dtype dtype, int ndim, const int64_t *shape, const void *src) {
  ks_tensor *t = ks_tensor_new(dtype, ndim, shape);
  if (t && src) memcpy(t->data, src, ks_tensor_nbytes(t));
  return t;
}

ks_tensor *ks_tensor_clone(const ks_tensor *src) {
  if (src->device.type != KS_DEVICE_CPU) return ks_tensor_to_device(src, src->device);
  return ks_tensor_from_data(src->dtype, src->ndim, src->shape, src->data);
}

void ks_tensor_free(ks_tensor *t) {
  if (!t || !(t->flags & KS_TENSOR_HEAP)) return;
  if (t->flags & KS_TENSOR_OWNS_DATA) {
    if (t->device.type == KS_DEVICE_CPU) free(t->data);
    else {
      const ks_backend_ops *be = ks_backend_for_device(t->device);
      if (be) be->free(t->data);
    }
  }
  free(t);
}

int ks_tensor_same_shape(const ks_tensor *a, const ks_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}
