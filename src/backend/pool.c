/*
 * src/backend/pool.c — kusari's thread pool for the CPU kernels.
 *
 * Why not OpenMP's parallel-for here: its fork/join ends in a barrier that
 * waits for every thread of the team, including one the OS has not scheduled
 * yet. On a busy machine (concurrent runs of a sweep, other processes) that
 * costs a scheduler time slice per parallel region: measured 8.1 s per epoch
 * on two threads against 0.46 s on one, U=100 b=128, load average 8. Here
 * tasks are claimed one at a time from a shared counter and the caller takes
 * part; it waits only for tasks a worker has actually claimed, so a worker
 * that wakes late finds nothing left and the call degrades to one thread
 * instead of stalling.
 *
 * A job is published under the mutex (function, argument, task count,
 * generation); workers take a consistent copy under the same mutex. A claim
 * is a compare-and-swap on (generation << 32 | next task), so a worker still
 * holding an old job can never claim a task of a newer one. The caller waits
 * until 'done' reaches the task count; a new job is published only after
 * that, so late increments cannot leak between jobs.
 *
 * Affine jobs (ks__parallel_for_affine, at most 32 tasks) claim through a
 * mask instead of a counter: the claim word is (generation << 32 | mask of
 * claimed tasks), and thread p looks for its own tasks (p, p + P, ...)
 * before taking any other. Nothing waits for a thread's own tasks: a late
 * worker's tasks are taken by whoever is free.
 *
 * Several threads may call ks__parallel_for at once (e.g. a scoring server's
 * request threads): a caller that finds the pool busy runs its tasks itself.
 */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#define KS_POOL_MAX_WORKERS 63
#define KS_POOL_SPIN 4000 /* polls of the generation before a worker sleeps */

static struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started;                 /* workers created so far                 */
  /* the current job (written under mu) */
  ks__task_fn fn;
  void *arg;
  int64_t n;
  int want;                    /* workers allowed to take part            */
  int affine;                  /* claims are a mask (see above)           */
  _Atomic uint32_t gen;        /* job generation                          */
  _Atomic uint64_t claim;      /* (gen << 32) | next unclaimed task       */
  _Atomic int64_t done;        /* tasks finished in the current job       */
  atomic_flag busy;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0, 0, ATOMIC_FLAG_INIT};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Claims and runs tasks of job 'gen' until none is left; returns how many. */
static int64_t run_tasks(uint32_t gen, ks__task_fn fn, void *arg, int64_t n) {
  int64_t did = 0;
  uint64_t v = atomic_load_explicit(&P.claim, memory_order_acquire);
  for (;;) {
    if ((uint32_t)(v >> 32) != gen || (int64_t)(v & 0xffffffffu) >= n) break;
    if (!atomic_compare_exchange_weak_explicit(&P.claim, &v, v + 1, memory_order_acq_rel,
                                               memory_order_acquire))
      continue; /* v was reloaded */
    fn(arg, (int64_t)(v & 0xffffffffu));
    did++;
    v = atomic_load_explicit(&P.claim, memory_order_acquire);
  }
  return did;
}

/* The same for an affine job, as thread 'self' of 'parts'. */
static int64_t run_tasks_affine(uint32_t gen, ks__task_fn fn, void *arg, int64_t n, int self,
                                int parts) {
  int64_t did = 0;
  const uint32_t all = n >= 32 ? 0xffffffffu : ((1u << n) - 1u);
  uint64_t v = atomic_load_explicit(&P.claim, memory_order_acquire);
  for (;;) {
    if ((uint32_t)(v >> 32) != gen) break;
    const uint32_t mask = (uint32_t)v;
    int t = -1;
    for (int k = self; k < n; k += parts)
      if (!(mask >> k & 1u)) { t = k; break; }
    if (t < 0) {
      const uint32_t left = ~mask & all;
      if (!left) break;
      t = __builtin_ctz(left);
    }
    if (!atomic_compare_exchange_weak_explicit(&P.claim, &v, v | (1ull << t), memory_order_acq_rel,
                                               memory_order_acquire))
      continue; /* v was reloaded */
    fn(arg, t);
    did++;
    v = atomic_load_explicit(&P.claim, memory_order_acquire);
  }
  return did;
}

static void *worker_main(void *p) {
  const int index = (int)(intptr_t)p;
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
    for (int s = 0; g == seen && s < KS_POOL_SPIN; s++) {
      cpu_relax();
      g = atomic_load_explicit(&P.gen, memory_order_acquire);
    }
    pthread_mutex_lock(&P.mu);
    while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen)
      pthread_cond_wait(&P.cv, &P.mu);
    ks__task_fn fn = P.fn;
    void *arg = P.arg;
    int64_t n = P.n;
    int want = P.want;
    int affine = P.affine;
    pthread_mutex_unlock(&P.mu);
    seen = g;
    if (index >= want) continue;
    int64_t did = affine ? run_tasks_affine(g, fn, arg, n, index + 1, want + 1)
                         : run_tasks(g, fn, arg, n);
    if (did) atomic_fetch_add_explicit(&P.done, did, memory_order_release);
  }
  return NULL;
}

static void run_serial(int64_t n, ks__task_fn fn, void *arg) {
  for (int64_t t = 0; t < n; t++) fn(arg, t);
}

static void parallel_for(int64_t n, int threads, ks__task_fn fn, void *arg, int affine) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1 || n > 0xffffffffLL) { run_serial(n, fn, arg); return; }
  if (atomic_flag_test_and_set_explicit(&P.busy, memory_order_acquire)) {
    run_serial(n, fn, arg); /* another thread is using the pool */
    return;
  }
  int workers = threads - 1;
  if (workers > KS_POOL_MAX_WORKERS) workers = KS_POOL_MAX_WORKERS;
  if ((int64_t)workers > n - 1) workers = (int)(n - 1);

  pthread_mutex_lock(&P.mu);
  while (P.started < workers) {
    pthread_t tid;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &attr, worker_main, (void *)(intptr_t)P.started);
    pthread_attr_destroy(&attr);
    if (rc != 0) break; /* run with the workers we have */
    P.started++;
  }
  uint32_t gen = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
  P.fn = fn;
  P.arg = arg;
  P.n = n;
  P.want = workers;
  P.affine = affine;
  atomic_store_explicit(&P.done, 0, memory_order_relaxed);
  atomic_store_explicit(&P.claim, (uint64_t)gen << 32, memory_order_release);
  atomic_store_explicit(&P.gen, gen, memory_order_release);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);

  int64_t did = affine ? run_tasks_affine(gen, fn, arg, n, 0, workers + 1)
                       : run_tasks(gen, fn, arg, n);
  if (did) atomic_fetch_add_explicit(&P.done, did, memory_order_release);
  /* wait for the tasks workers claimed (they are running: short waits) */
  for (int s = 0; atomic_load_explicit(&P.done, memory_order_acquire) < n; s++) {
    if (s < 10000) cpu_relax();
    else sched_yield();
  }
  atomic_flag_clear_explicit(&P.busy, memory_order_release);
}

void ks__parallel_for(int64_t n, int threads, ks__task_fn fn, void *arg) {
  parallel_for(n, threads, fn, arg, 0);
}

void ks__parallel_for_affine(int64_t n, int threads, ks__task_fn fn, void *arg) {
  parallel_for(n, threads, fn, arg, n <= KS_POOL_AFFINE_MAX);
}

int64_t ks__block_piece(int64_t size, int threads, int64_t chunk) {
  if (size <= 0) return 16;
  if (threads < 1) threads = 1;
  if (threads > KS_POOL_AFFINE_MAX) threads = KS_POOL_AFFINE_MAX;
  const int64_t round = (int64_t)threads * chunk;
  int64_t pieces = size < chunk ? 1 : threads * ((size + round - 1) / round);
  if (pieces > KS_POOL_AFFINE_MAX) pieces = (KS_POOL_AFFINE_MAX / threads) * threads;
  int64_t per = (size + pieces - 1) / pieces;
  return (per + 15) & ~(int64_t)15; /* whole 64-byte lines per piece */
}
