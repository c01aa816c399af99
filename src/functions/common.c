/*
 * src/functions/common.c — helpers shared by src/functions (see
 * functions_impl.h): checks, messages, kernel lookup, node recording.
 */
#include "functions_impl.h"

#include <string.h>

char *ks__shape(const ks_tensor *t, char *buf) {
  return ks_shape_str(t->ndim, t->shape, buf, KS__SHAPE_BUF);
}

int ks__check_dtype(const char *fn, const char *arg, const ks_tensor *t, ks_dtype want) {
  if (t->dtype == want) return KS_OK;
  char s[KS__SHAPE_BUF];
  return ks_error_set(KS_ESHAPE, "%s: %s must be %s, got %s %s", fn, arg, ks_dtype_name(want),
                      ks_dtype_name(t->dtype), ks__shape(t, s));
}

int ks__fail_shapes(const char *fn, const char *an, const ks_tensor *a, const char *bn,
                    const ks_tensor *b, const char *why) {
  char sa[KS__SHAPE_BUF], sb[KS__SHAPE_BUF];
  return ks_error_set(KS_ESHAPE, "%s: %s %s and %s %s %s", fn, an, ks__shape(a, sa), bn,
                      ks__shape(b, sb), why);
}

int ks__check_ctx(const char *fn, const ks_ctx *ctx) {
  if (ctx) return KS_OK;
  return ks_error_set(KS_EINVAL, "%s: ctx is NULL", fn);
}

const ks_backend_ops *ks__backend(const char *fn, const ks_tensor *t) {
  const ks_backend_ops *be = ks_backend_for(t);
  if (!be)
    ks_error_set(KS_EUNSUPPORTED, "%s: no backend for device type %d", fn, (int)t->device.type);
  return be;
}

int ks__need(const char *fn, const ks_backend_ops *be, const void *member, const char *k) {
  if (member) return KS_OK;
  return ks_error_set(KS_EUNSUPPORTED, "%s: backend '%s' has no kernel '%s'", fn, be->name, k);
}

int ks__node(ks_ctx *ctx, const ks_fn_type *type, int n_in, ks_var *const *in, ks_node **out) {
  *out = NULL;
  if (!ks_ctx_backprop(ctx)) return KS_OK;
  int needed = 0;
  for (int i = 0; i < n_in; i++)
    if (in[i] && (in[i]->creator || in[i]->requires_grad)) needed = 1;
  if (!needed) return KS_OK;
  *out = ks_node_new(ctx, type, n_in, in);
  if (!*out) return ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
  return KS_OK;
}

float ks__scalar(const ks_backend_ops *be, const ks_tensor *t) {
  float v = 0.0f;
  be->memcpy_to_host(&v, t->data, sizeof v);
  return v;
}

ks_tensor *ks__ctx_view(ks_ctx *ctx, const ks_tensor *src, int ndim, const int64_t *shape) {
  ks_tensor *t = ks_arena_alloc(ks_ctx_arena(ctx), sizeof *t);
  if (!t) return NULL;
  if (ks_tensor_view_init(t, src->dtype, ndim, shape, src->data) != KS_OK) return NULL;
  t->device = src->device;
  t->flags = KS_TENSOR_ARENA;
  return t;
}
