/*
 * kusari/arena.h — bump allocator for per-iteration memory.
 *
 * Graph nodes, variables and intermediate tensors of one training iteration
 * come from an arena that is reset after the optimizer update. On reset an
 * arena that had to grow during the iteration is re-made as one block of the
 * high-water size, so from the second iteration on the steady state does no
 * malloc at all (ks_arena_stats counts the mallocs so tests can check this).
 */
#ifndef KUSARI_ARENA_H
#define KUSARI_ARENA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_arena ks_arena;

typedef struct ks_arena_stats {
  size_t used;        /* bytes handed out since the last reset      */
  size_t capacity;    /* bytes held in all blocks                   */
  size_t high_water;  /* largest 'used' seen over the arena's life  */
  size_t mallocs;     /* blocks allocated over the arena's life     */
} ks_arena_stats;

/* New arena with an initial block of 'initial' bytes (0: a default). */
ks_arena *ks_arena_new(size_t initial);
/* Arena whose blocks come from mem_alloc / mem_free (a device's memory, e.g.
 * a backend's alloc and free: the block list itself stays on the host). The
 * memory handed out is then only for that device's kernels. NULL functions:
 * host memory, as ks_arena_new. */
ks_arena *ks_arena_new_with(size_t initial, void *(*mem_alloc)(size_t bytes),
                            void (*mem_free)(void *p));
void ks_arena_free(ks_arena *a);
/* 64-byte aligned memory, NULL (error set) on OOM. Not zeroed. */
void *ks_arena_alloc(ks_arena *a, size_t size);
/* Host arenas only (zeroes with memset). */
void *ks_arena_calloc(ks_arena *a, size_t size);
/* Forget everything allocated; consolidates blocks to the high-water size. */
void ks_arena_reset(ks_arena *a);
ks_arena_stats ks_arena_get_stats(const ks_arena *a);

#ifdef __cplusplus
}
#endif
#endif
