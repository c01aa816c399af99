/*
 * src/core/random.c — xoshiro256** (Blackman & Vigna), seeded with splitmix64.
 */
#include "kusari/random.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void ks_rng_seed(ks_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ks_rng_next(ks_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double ks_rng_uniform(ks_rng *rng) { return (double)(ks_rng_next(rng) >> 11) * 0x1.0p-53; }

uint64_t ks_rng_below(ks_rng *rng, uint64_t n) {
  /* rejection sampling: drop the top values that would bias the modulo */
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = ks_rng_next(rng); while (r >= limit);
  return r % n;
}

double ks_rng_normal(ks_rng *rng) {
  /* Box-Muller; uses two uniforms per call so the stream position is simple */
  double u1 = ks_rng_uniform(rng), u2 = ks_rng_uniform(rng);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2);
}

void ks_rng_permutation(ks_rng *rng, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)ks_rng_below(rng, (uint64_t)i + 1);
    int64_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
}
