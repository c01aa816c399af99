/*
 * src/initializers/initializers.c — Chainer's initializers on float32 arrays.
 *
 * Every random kind reduces to Normal(s) or Uniform(s) with s computed from
 * the fans, exactly as chainer/initializers/{normal,uniform}.py do. Values are
 * drawn in double precision and rounded once to float32.
 */
#include "kusari/initializers.h"
#include "kusari/error.h"

#include <math.h>
#include <stdio.h>

static const char *kind_name(ks_initializer_kind k) {
  switch (k) {
    case KS_INIT_ZERO: return "Zero";
    case KS_INIT_ONE: return "One";
    case KS_INIT_CONSTANT: return "Constant";
    case KS_INIT_NORMAL: return "Normal";
    case KS_INIT_UNIFORM: return "Uniform";
    case KS_INIT_LECUN_NORMAL: return "LeCunNormal";
    case KS_INIT_LECUN_UNIFORM: return "LeCunUniform";
    case KS_INIT_GLOROT_NORMAL: return "GlorotNormal";
    case KS_INIT_GLOROT_UNIFORM: return "GlorotUniform";
    case KS_INIT_HE_NORMAL: return "HeNormal";
    case KS_INIT_HE_UNIFORM: return "HeUniform";
  }
  return NULL;
}

char *ks_initializer_str(const ks_initializer *init, char *buf, size_t n) {
  const char *name = init ? kind_name(init->kind) : NULL;
  if (!name) snprintf(buf, n, "?");
  else if (init->kind == KS_INIT_ZERO || init->kind == KS_INIT_ONE) snprintf(buf, n, "%s()", name);
  else if (init->kind == KS_INIT_CONSTANT) snprintf(buf, n, "%s(%g)", name, init->value);
  else snprintf(buf, n, "%s(scale=%g)", name, init->value);
  return buf;
}

int ks_initializer_fans(int ndim, const int64_t *shape, double *fan_in, double *fan_out) {
  if (ndim < 2)
    return ks_error_set(KS_ESHAPE, "initializer needs fans: tensor rank must be >= 2, got %d", ndim);
  double receptive = 1.0;
  for (int i = 2; i < ndim; i++) receptive *= (double)shape[i];
  if (fan_in) *fan_in = (double)shape[1] * receptive;
  if (fan_out) *fan_out = (double)shape[0] * receptive;
  return KS_OK;
}

int ks_initializer_fill(const ks_initializer *init, float *data, int ndim, const int64_t *shape,
                        ks_rng *rng) {
  if (!init) return ks_error_set(KS_EINVAL, "initializer is NULL");
  if (!kind_name(init->kind)) return ks_error_set(KS_EINVAL, "unknown initializer kind %d", (int)init->kind);
  int64_t n = ks_shape_size(ndim, shape);
  if (n < 0) return ks_error_last_code();
  if (n > 0 && !data) return ks_error_set(KS_EINVAL, "initializer: data is NULL");

  double fill = 0.0, s = init->value, fi = 0, fo = 0;
  int normal = 0; /* 1: N(0, s^2); 0: U[-s, s) */
  switch (init->kind) {
    case KS_INIT_ZERO: fill = 0.0; goto constant;
    case KS_INIT_ONE: fill = 1.0; goto constant;
    case KS_INIT_CONSTANT: fill = init->value; goto constant;
    case KS_INIT_NORMAL: normal = 1; break;
    case KS_INIT_UNIFORM: break;
    default: {
      int rc = ks_initializer_fans(ndim, shape, &fi, &fo);
      if (rc != KS_OK) {
        char b[64];
        return ks_error_set(rc, "%s: %s", ks_initializer_str(init, b, sizeof b), ks_error_last());
      }
      double fan = init->fan_out ? fo : fi;
      switch (init->kind) {
        case KS_INIT_LECUN_NORMAL: normal = 1; s = init->value * sqrt(1.0 / fi); break;
        case KS_INIT_LECUN_UNIFORM: s = init->value * sqrt(3.0 / fi); break;
        case KS_INIT_GLOROT_NORMAL: normal = 1; s = init->value * sqrt(2.0 / (fi + fo)); break;
        case KS_INIT_GLOROT_UNIFORM: s = init->value * sqrt(6.0 / (fi + fo)); break;
        case KS_INIT_HE_NORMAL: normal = 1; s = init->value * sqrt(2.0 / fan); break;
        case KS_INIT_HE_UNIFORM: s = init->value * sqrt(6.0 / fan); break;
        default: break;
      }
    }
  }
  if (!rng) return ks_error_set(KS_EINVAL, "random initializer %s needs an rng", kind_name(init->kind));
  if (normal) {
    for (int64_t i = 0; i < n; i++) data[i] = (float)(s * ks_rng_normal(rng));
  } else {
    for (int64_t i = 0; i < n; i++) data[i] = (float)(s * (2.0 * ks_rng_uniform(rng) - 1.0));
  }
  return KS_OK;

constant:
  for (int64_t i = 0; i < n; i++) data[i] = (float)fill;
  return KS_OK;
}

int ks_initializer_apply(const ks_initializer *init, ks_tensor *t, ks_rng *rng) {
  if (!t) return ks_error_set(KS_EINVAL, "initializer: tensor is NULL");
  if (t->dtype != KS_F32) return ks_error_set(KS_EINVAL, "initializers fill float32 tensors, got %s",
                                              ks_dtype_name(t->dtype));
  if (t->device.type != KS_DEVICE_CPU)
    return ks_error_set(KS_EUNSUPPORTED, "initializers run on CPU tensors only");
  return ks_initializer_fill(init, ks_tensor_f32(t), t->ndim, t->shape, rng);
}
