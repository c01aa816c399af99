/*
 * kusari/parallel.h — data-parallel training steps on one machine's threads.
 *
 * Chainer's ParallelUpdater runs one copy of the model per GPU, each on a
 * slice of the batch, and adds the copies' gradients into the main model
 * before the update. Here the replicas of a step share the model's
 * parameters (they only read them until the update) and each keeps its
 * gradients in a block of its own, so nothing is copied but the gradients.
 *
 * A step's batch of n examples is cut into R contiguous slices, R fixed at
 * creation: slice r is [start_r, start_r + count_r), the first n % R slices
 * one example longer than the others. Replica r runs the forward of its
 * slice (the caller's function) and the backward from its loss in its own
 * ctx, on its own thread when the thread pool has one; the kernels inside a
 * replica run on that thread alone. Then the model's gradients become
 *
 *     grad = sum over r of (count_r / n) * grad_r      (in replica order)
 *
 * the gradient of the mean loss over the whole batch when each replica's
 * loss is the mean over its slice (softmax_cross_entropy's and
 * mean_squared_error's are). Chainer's ParallelUpdater adds the replicas'
 * gradients unweighted, which multiplies the gradient by R; kusari weights
 * them, so a step means the same for every R and needs no other learning
 * rate.
 *
 * Bits: the slices and the order of the sum depend on n and R only, never on
 * the thread count, so a run gives the same bits on any number of threads.
 * R = 1 gives the plain step's bits. R > 1 differs from the plain step by
 * rounding (other product shapes, another order of summation).
 *
 * Why: the plain step splits each large product (and the large
 * element-wise passes) over the threads, and the threads meet after each;
 * replicas each run the whole step of their slice and meet once, for the
 * reduction. On the 2-core machine of bench/RESULTS.md that makes the CNN's
 * epoch 0.64-0.81x as long, the U=100 MLP's no shorter and the U=1000
 * MLP's 1.43x longer: it pays where the plain step splits poorly.
 *
 * Persistent values: batch normalization's running statistics are updated
 * from the first replica's slice alone (the other replicas' ctxs have
 * ks_ctx_set_update_persistents(ctx, 0)), as Chainer's ParallelUpdater keeps
 * the main device's. Each replica normalizes with its own slice's batch
 * statistics, so with batch normalization the step is not the whole batch's
 * (as with several GPUs). A link of your own that writes persistent values
 * in its forward must honor ks_ctx_update_persistents.
 *
 * Limits:
 *   - lazy parameters get their shape from replica 0's forward, which then
 *     runs alone before the others start;
 *   - with more threads than replicas, the extra threads stay idle.
 */
#ifndef KUSARI_PARALLEL_H
#define KUSARI_PARALLEL_H

#include <stdint.h>

#include "kusari/link.h"  /* ks_link */
#include "kusari/var.h"   /* ks_ctx, ks_var */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_data_parallel ks_data_parallel;

/* R replicas (1..64) of a step of 'model' (not owned; it must outlive the
 * object). Replica r's ctx has its RNG (dropout) seeded from seed and r. */
int ks_data_parallel_new(ks_data_parallel **out, ks_link *model, int replicas, uint64_t seed);
void ks_data_parallel_free(ks_data_parallel *dp);          /* NULL: no-op */
int ks_data_parallel_replicas(const ks_data_parallel *dp);
/* Replica r's ctx (its train flag, RNG...). The graph of the last step stays
 * in it until the next ks_data_parallel_backward. */
ks_ctx *ks_data_parallel_ctx(ks_data_parallel *dp, int replica);
/* Slice r of a batch of n examples (see above). */
void ks_data_parallel_slice(const ks_data_parallel *dp, int64_t n, int replica, int64_t *start,
                            int64_t *count);

/* Builds replica r's forward over examples [start, start + count) of the
 * batch in ctx and returns its loss (a one-element variable), or NULL with
 * the error set. Runs on the replica's thread: it must only touch ctx, the
 * model's parameters (reading) and what belongs to the replica. */
typedef ks_var *(*ks_slice_loss_fn)(ks_ctx *ctx, int replica, int64_t start, int64_t count,
                                    void *user);

/* One step's forward and backward over a batch of n >= 1 examples: resets
 * every replica's ctx, runs fn and backward for each nonempty slice, then
 * sets the model's gradients to the weighted sum above (a parameter that no
 * replica's loss reached keeps no gradient, as after cleargrads). *loss
 * (may be NULL) receives the same weighted sum of the replicas' losses.
 * Then call ks_optimizer_update as after a plain backward.
 * Errors: the error of the first failing replica (in replica order), and
 * the model's gradients are cleared. */
int ks_data_parallel_backward(ks_data_parallel *dp, int64_t n, ks_slice_loss_fn fn, void *user,
                              double *loss);

#ifdef __cplusplus
}
#endif
#endif
