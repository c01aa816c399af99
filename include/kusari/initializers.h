/*
 * kusari/initializers.h — parameter initializers (chainer.initializers).
 *
 * An initializer is a small value struct: a kind plus one number (the scale,
 * or the fill value for Constant). ks_initializer_apply fills a float32 tensor
 * in place, drawing random numbers from the caller's ks_rng, so a fixed seed
 * gives bit-identical parameters. Semantics and defaults follow Chainer:
 *
 *   kind                 Chainer              values
 *   KS_INIT_ZERO         Zero()               0
 *   KS_INIT_ONE          One()                1
 *   KS_INIT_CONSTANT     Constant(v)          v                (value = v)
 *   KS_INIT_NORMAL       Normal(scale=0.05)   N(0, scale^2)
 *   KS_INIT_UNIFORM      Uniform(scale=0.05)  U[-scale, scale)
 *   KS_INIT_LECUN_NORMAL LeCunNormal(1.0)     N(0, s^2),  s = scale*sqrt(1/fan_in)
 *   KS_INIT_LECUN_UNIFORM LeCunUniform(1.0)   U[-s, s),   s = scale*sqrt(3/fan_in)
 *   KS_INIT_GLOROT_NORMAL GlorotNormal(1.0)   N(0, s^2),  s = scale*sqrt(2/(fan_in+fan_out))
 *   KS_INIT_GLOROT_UNIFORM GlorotUniform(1.0) U[-s, s),   s = scale*sqrt(6/(fan_in+fan_out))
 *   KS_INIT_HE_NORMAL    HeNormal(1.0)        N(0, s^2),  s = scale*sqrt(2/fan_in)
 *   KS_INIT_HE_UNIFORM   HeUniform(1.0)       U[-s, s),   s = scale*sqrt(6/fan_in)
 *
 * Fans are Chainer's get_fans: for a shape (out, in, k1, k2, ...),
 * fan_in = in * k1 * k2 * ..., fan_out = out * k1 * k2 * .... Fan-based kinds
 * need a tensor of rank >= 2 (KS_ESHAPE otherwise). The random stream is
 * kusari's own (xoshiro256** + Box-Muller), so values differ from numpy's for
 * the same seed; the distributions are the same.
 */
#ifndef KUSARI_INITIALIZERS_H
#define KUSARI_INITIALIZERS_H

#include "kusari/tensor.h"   /* ks_tensor */
#include "kusari/random.h"   /* ks_rng    */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ks_initializer_kind {
  KS_INIT_ZERO = 0,
  KS_INIT_ONE,
  KS_INIT_CONSTANT,
  KS_INIT_NORMAL,
  KS_INIT_UNIFORM,
  KS_INIT_LECUN_NORMAL,
  KS_INIT_LECUN_UNIFORM,
  KS_INIT_GLOROT_NORMAL,
  KS_INIT_GLOROT_UNIFORM,
  KS_INIT_HE_NORMAL,
  KS_INIT_HE_UNIFORM
} ks_initializer_kind;

typedef struct ks_initializer {
  ks_initializer_kind kind;
  double value;   /* scale (random kinds) or fill value (KS_INIT_CONSTANT) */
  int fan_out;    /* He*: use fan_out instead of fan_in (fan_option='fan_out') */
} ks_initializer;

/* Constructors with Chainer's default arguments spelled out. */
static inline ks_initializer ks_init_zero(void) { return (ks_initializer){KS_INIT_ZERO, 0.0, 0}; }
static inline ks_initializer ks_init_one(void) { return (ks_initializer){KS_INIT_ONE, 1.0, 0}; }
static inline ks_initializer ks_init_constant(double v) { return (ks_initializer){KS_INIT_CONSTANT, v, 0}; }
static inline ks_initializer ks_init_normal(double scale) { return (ks_initializer){KS_INIT_NORMAL, scale, 0}; }   /* Chainer default 0.05 */
static inline ks_initializer ks_init_uniform(double scale) { return (ks_initializer){KS_INIT_UNIFORM, scale, 0}; } /* Chainer default 0.05 */
static inline ks_initializer ks_init_lecun_normal(double scale) { return (ks_initializer){KS_INIT_LECUN_NORMAL, scale, 0}; }
static inline ks_initializer ks_init_lecun_uniform(double scale) { return (ks_initializer){KS_INIT_LECUN_UNIFORM, scale, 0}; }
static inline ks_initializer ks_init_glorot_normal(double scale) { return (ks_initializer){KS_INIT_GLOROT_NORMAL, scale, 0}; }
static inline ks_initializer ks_init_glorot_uniform(double scale) { return (ks_initializer){KS_INIT_GLOROT_UNIFORM, scale, 0}; }
static inline ks_initializer ks_init_he_normal(double scale) { return (ks_initializer){KS_INIT_HE_NORMAL, scale, 0}; }
static inline ks_initializer ks_init_he_uniform(double scale) { return (ks_initializer){KS_INIT_HE_UNIFORM, scale, 0}; }

/* Fills float32 tensor 't' (heap, arena or view; CPU) according to 'init'.
 * rng may be NULL for the deterministic kinds (Zero, One, Constant).
 * Returns KS_OK, KS_EINVAL (NULL/unknown kind/non-float32/rng missing) or
 * KS_ESHAPE (fan-based kind on a tensor of rank < 2). */
int ks_initializer_apply(const ks_initializer *init, ks_tensor *t, ks_rng *rng);

/* Same on a raw float array of the given shape. */
int ks_initializer_fill(const ks_initializer *init, float *data, int ndim, const int64_t *shape,
                        ks_rng *rng);

/* Chainer's get_fans. Returns KS_OK or KS_ESHAPE for rank < 2. */
int ks_initializer_fans(int ndim, const int64_t *shape, double *fan_in, double *fan_out);

/* "LeCunNormal(scale=1)" etc. into buf; returns buf. */
char *ks_initializer_str(const ks_initializer *init, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
