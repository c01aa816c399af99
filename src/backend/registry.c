/*
 * src/backend/registry.c — which kernel table serves which device.
 *
 * One slot per device type holds the table and how many devices of that
 * type it serves (ids 0 .. count-1). The CPU table is built in (one device,
 * id 0); other backends (CUDA, the tests' checked backend) register with one
 * call, ks_backend_register. Lookups read the slot without a lock (atomics):
 * functions look their backend up on every call.
 */
#include "kusari/backend.h"
#include "kusari/error.h"

#include <stdatomic.h>
#include <stddef.h>

const ks_backend_ops *ks__cpu_backend(void); /* src/backend/cpu.c */

typedef struct slot {
  _Atomic(const ks_backend_ops *) ops;
  _Atomic int count;
} slot;

static slot g_slots[KS_MAX_DEVICE_TYPES];

static int required_ok(const ks_backend_ops *ops) {
  return ops->name && ops->alloc && ops->free && ops->memcpy_to_host && ops->memcpy_from_host &&
         ops->copy && ops->fill_bytes && ops->gemm && ops->axpy && ops->fill;
}

int ks_backend_register(ks_device_type type, int count, const ks_backend_ops *ops) {
  if ((int)type <= (int)KS_DEVICE_CPU || (int)type >= KS_MAX_DEVICE_TYPES)
    return ks_error_set(KS_EINVAL, "ks_backend_register: device type %d is not in 1..%d "
                        "(the CPU backend is built in)", (int)type, KS_MAX_DEVICE_TYPES - 1);
  if (ops && count < 1)
    return ks_error_set(KS_EINVAL, "ks_backend_register: backend '%s' needs at least one device",
                        ops->name ? ops->name : "?");
  if (ops && !required_ok(ops))
    return ks_error_set(KS_EINVAL, "ks_backend_register: backend '%s' lacks a required member "
                        "(memory, copies, fill, gemm, axpy)", ops->name ? ops->name : "?");
  /* unregister (ops NULL): count first, so no lookup sees a stale table with a count */
  atomic_store(&g_slots[type].count, 0);
  atomic_store(&g_slots[type].ops, ops);
  if (ops) atomic_store(&g_slots[type].count, count);
  return KS_OK;
}

const ks_backend_ops *ks_backend_for_device(ks_device dev) {
  if (dev.type == KS_DEVICE_CPU) return dev.id == 0 ? ks__cpu_backend() : NULL;
  if ((int)dev.type < 0 || (int)dev.type >= KS_MAX_DEVICE_TYPES) return NULL;
  const slot *s = &g_slots[dev.type];
  if (dev.id < 0 || dev.id >= atomic_load(&s->count)) return NULL;
  return atomic_load(&s->ops);
}

int ks_device_count(ks_device_type type) {
  if (type == KS_DEVICE_CPU) return 1;
  if ((int)type < 0 || (int)type >= KS_MAX_DEVICE_TYPES) return 0;
  return atomic_load(&g_slots[type].count);
}

int ks_device_equal(ks_device a, ks_device b) { return a.type == b.type && a.id == b.id; }
