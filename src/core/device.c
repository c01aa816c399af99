/*
 * src/core/device.c — tensors on devices: allocation through the device's
 * backend, copies host <-> device <-> device, moves (Chainer's to_gpu/to_cpu).
 * Host code never reads device memory itself: every byte crosses through the
 * backend table's memcpy_to_host / memcpy_from_host / copy.
 */
#include "kusari/tensor.h"
#include "kusari/backend.h"
#include "kusari/error.h"

#include <stdlib.h>
#include <string.h>

static const ks_backend_ops *backend_or_fail(const char *fn, ks_device dev) {
  const ks_backend_ops *be = ks_backend_for_device(dev);
  if (!be)
    ks_error_set(KS_EUNSUPPORTED, "%s: no backend serves device %d:%d (register one with "
                 "ks_backend_register)", fn, (int)dev.type, dev.id);
  return be;
}

ks_tensor *ks_tensor_new_on(ks_device dev, ks_dtype dtype, int ndim, const int64_t *shape) {
  if (dev.type == KS_DEVICE_CPU && dev.id == 0) return ks_tensor_new(dtype, ndim, shape);
  const ks_backend_ops *be = backend_or_fail("ks_tensor_new_on", dev);
  if (!be) return NULL;
  if (dtype != KS_F32 && dtype != KS_I32) {
    ks_error_set(KS_EINVAL, "unknown dtype %d", (int)dtype);
    return NULL;
  }
  ks_tensor *t = malloc(sizeof *t);
  if (!t) { ks_error_set(KS_ENOMEM, "out of memory allocating a tensor"); return NULL; }
  if (ks_tensor_view_init(t, dtype, ndim, shape, NULL) != KS_OK) { free(t); return NULL; }
  size_t bytes = ks_tensor_nbytes(t);
  t->data = be->alloc(bytes ? bytes : 64);
  if (!t->data) {
    free(t);
    ks_error_set(KS_ENOMEM, "out of memory allocating %zu bytes on device '%s'", bytes, be->name);
    return NULL;
  }
  be->fill_bytes(t->data, 0, bytes);
  t->device = dev;
  t->flags = KS_TENSOR_OWNS_DATA | KS_TENSOR_HEAP;
  return t;
}

int ks_tensor_to_host(const ks_tensor *t, void *dst) {
  const ks_backend_ops *be = backend_or_fail("ks_tensor_to_host", t->device);
  if (!be) return ks_error_last_code();
  be->memcpy_to_host(dst, t->data, ks_tensor_nbytes(t));
  return KS_OK;
}

int ks_tensor_from_host(ks_tensor *t, const void *src) {
  const ks_backend_ops *be = backend_or_fail("ks_tensor_from_host", t->device);
  if (!be) return ks_error_last_code();
  be->memcpy_from_host(t->data, src, ks_tensor_nbytes(t));
  return KS_OK;
}

int ks_tensor_copy(ks_tensor *dst, const ks_tensor *src) {
  if (dst->dtype != src->dtype || !ks_tensor_same_shape(dst, src))
    return ks_error_set(KS_ESHAPE, "ks_tensor_copy: %s and %s tensors of different shapes",
                        ks_dtype_name(dst->dtype), ks_dtype_name(src->dtype));
  const size_t bytes = ks_tensor_nbytes(src);
  if (ks_device_equal(dst->device, src->device)) {
    const ks_backend_ops *be = backend_or_fail("ks_tensor_copy", src->device);
    if (!be) return ks_error_last_code();
    be->copy(dst->data, src->data, bytes);
    return KS_OK;
  }
  if (src->device.type == KS_DEVICE_CPU) return ks_tensor_from_host(dst, src->data);
  if (dst->device.type == KS_DEVICE_CPU) return ks_tensor_to_host(src, dst->data);
  /* between two devices: through a host buffer */
  void *tmp = malloc(bytes ? bytes : 1);
  if (!tmp) return ks_error_set(KS_ENOMEM, "ks_tensor_copy: out of memory (%zu bytes)", bytes);
  int rc = ks_tensor_to_host(src, tmp);
  if (rc == KS_OK) rc = ks_tensor_from_host(dst, tmp);
  free(tmp);
  return rc;
}

ks_tensor *ks_tensor_to_device(const ks_tensor *t, ks_device dev) {
  ks_tensor *c = ks_tensor_new_on(dev, t->dtype, t->ndim, t->shape);
  if (c && ks_tensor_copy(c, t) != KS_OK) { ks_tensor_free(c); return NULL; }
  return c;
}

int ks_to_device(ks_tensor *t, ks_device dev) {
  if (ks_device_equal(t->device, dev)) return KS_OK;
  if ((t->flags & (KS_TENSOR_HEAP | KS_TENSOR_OWNS_DATA)) != (KS_TENSOR_HEAP | KS_TENSOR_OWNS_DATA))
    return ks_error_set(KS_EINVAL, "ks_to_device: only a heap tensor that owns its data can move "
                        "(this one is a view or lives in a ctx arena)");
  ks_tensor *c = ks_tensor_to_device(t, dev);
  if (!c) return ks_error_last_code();
  void *old = t->data;
  const ks_backend_ops *old_be = ks_backend_for_device(t->device);
  t->data = c->data;
  t->device = c->device;
  free(c); /* the struct only: its data now belongs to t */
  if (old_be) old_be->free(old);
  return KS_OK;
}
