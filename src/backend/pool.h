/*
 * src/backend/pool.h — kusari's thread pool (internal; see pool.c for why it
 * is not OpenMP's parallel-for).
 */
#ifndef KUSARI_BACKEND_POOL_H
#define KUSARI_BACKEND_POOL_H

#include <stdint.h>

typedef void (*ks__task_fn)(void *arg, int64_t task);

/* Runs fn(arg, t) for every t in [0, n) on up to 'threads' threads, the
 * caller included, and returns when all are done. Which thread runs a task
 * is not fixed, so a task must depend only on its index. Never blocks on a
 * worker that has not started; a caller that finds the pool busy (another
 * thread's job) runs its tasks itself. */
void ks__parallel_for(int64_t n, int threads, ks__task_fn fn, void *arg);

/* The same, with affinity: with P threads taking part (the caller is thread
 * 0, worker i is thread i + 1), thread p first runs tasks p, p + P, p + 2P...
 * and only then takes any task left, so jobs cut the same way run the same
 * piece on the same core from one call to the next (the data a piece wrote
 * stays in that core's cache) while a late thread still stalls nobody. For
 * n <= KS_POOL_AFFINE_MAX; larger n runs as ks__parallel_for. */
#define KS_POOL_AFFINE_MAX 32
void ks__parallel_for_affine(int64_t n, int threads, ks__task_fn fn, void *arg);

/* The cut of a flat block of 'size' floats that the optimizer's update and
 * the data-parallel reduction share (so that each thread updates what it
 * reduced): equal pieces of whole 64-byte lines, a whole number per thread,
 * at most 'chunk' floats each unless that needs more than
 * KS_POOL_AFFINE_MAX pieces. Returns the floats per piece (the last piece
 * may be shorter); the number of pieces is ceil(size / per). */
int64_t ks__block_piece(int64_t size, int threads, int64_t chunk);

#endif
