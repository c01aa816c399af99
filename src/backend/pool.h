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

#endif
