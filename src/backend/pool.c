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
  _Atomic uint32_t gen;        /* job generation                          */
  _Atomic uint64_t claim;      /* (gen << 32) | next unclaimed task       */
  _Atomic int64_t done;        /* tasks finished in the current job       */
  atomic_flag busy;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0, 0, ATOMIC_FLAG_INIT};

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
    pthread_mutex_unlock(&P.mu);
    seen = g;
    if (index >= want) continue;
    int64_t did = run_tasks(g, fn, arg, n);
    if (did) atomic_fetch_add_explicit(&P.done, did, memory_order_release);
  }
  return NULL;
}

static void run_serial(int64_t n, ks__task_fn fn, void *arg) {
  for (int64_t t = 0; t < n; t++) fn(arg, t);
}

void ks__parallel_for(int64_t n, int threads, ks__task_fn fn, void *arg) {
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
  atomic_store_explicit(&P.done, 0, memory_order_relaxed);
  atomic_store_explicit(&P.claim, (uint64_t)gen << 32, memory_order_release);
  atomic_store_explicit(&P.gen, gen, memory_order_release);
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);

  int64_t did = run_tasks(gen, fn, arg, n);
  if (did) atomic_fetch_add_explicit(&P.done, did, memory_order_release);
  /* wait for the tasks workers claimed (they are running: short waits) */
  for (int s = 0; atomic_load_explicit(&P.done, memory_order_acquire) < n; s++) {
    if (s < 10000) cpu_relax();
    else sched_yield();
  }
  atomic_flag_clear_explicit(&P.busy, memory_order_release);
}
