/*
 * kusari/random.h — a small seedable RNG (xoshiro256**, seeded through
 * splitmix64). Used by initializers, dropout and iterator shuffles so that a
 * program with a fixed seed is reproducible bit for bit. The state is a plain
 * struct so it can be saved in snapshots.
 */
#ifndef KUSARI_RANDOM_H
#define KUSARI_RANDOM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_rng { uint64_t s[4]; } ks_rng;

void     ks_rng_seed(ks_rng *rng, uint64_t seed);
uint64_t ks_rng_next(ks_rng *rng);
/* Uniform double in [0, 1). */
double   ks_rng_uniform(ks_rng *rng);
/* Uniform integer in [0, n), unbiased. n must be > 0. */
uint64_t ks_rng_below(ks_rng *rng, uint64_t n);
/* Standard normal N(0, 1). */
double   ks_rng_normal(ks_rng *rng);
/* Writes a uniformly random permutation of 0..n-1 into perm. */
void     ks_rng_permutation(ks_rng *rng, int64_t *perm, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
