/*
 * src/links/parallel.c — data-parallel replicas of a training step
 * (kusari/parallel.h).
 *
 * Each replica owns a ctx and a gradient block laid out like the model's
 * pack (so parameter i's gradient is at the pack's offset i in every block).
 * Its backward reaches the block through a ks_grad_sink: the engine asks the
 * sink for a parameter's gradient tensor and gets the replica's view. The
 * lookup is a binary search over the pack's parameter variables sorted by
 * address (a step touches each parameter a few times).
 *
 * The reduction runs after every replica is done, on the pool with
 * affinity, cut like the optimizer's update (ks__block_piece), so the thread
 * that reduces a piece of the gradient block is the one that then updates
 * it. Each element is w_0 g_0 + w_1 g_1 + ... in replica order whatever
 * thread computes it, so the bits do not depend on the thread count.
 */
#include "kusari/parallel.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/pool.h"  /* ks__parallel_for */
#include "kusari/backend.h" /* ks_get_num_threads */
#include "kusari/error.h"
#include "link_impl.h"

#define KS_DP_MAX_REPLICAS 64
#define KS_DP_CHUNK ((int64_t)1 << 15) /* the optimizer's KS_RULE_CHUNK */

typedef struct dp_replica {
  ks_data_parallel *dp;
  ks_ctx *ctx;
  float *grad;        /* gradient block, pack->size floats                  */
  ks_tensor *views;   /* parameter i's gradient inside 'grad'               */
  int *valid;         /* parameter i's gradient holds a value this step     */
  int foreign_valid;  /* scratch flag for a parameter outside the model     */
  const char *foreign;/* name of such a parameter (an error after the step) */
  int64_t start, count;
  ks_var *loss_var;   /* replica 0's loss when its forward ran alone         */
  int rc;
  double loss;
  char msg[512];
} dp_replica;

typedef struct var_slot {
  uintptr_t var;
  int index;
} var_slot;

struct ks_data_parallel {
  ks_link *model;
  int R;
  dp_replica *reps;
  uint64_t pack_id;  /* pack the blocks were made for (0: none yet)         */
  int n;             /* parameters in the pack                              */
  var_slot *slots;   /* the pack's parameter variables, sorted by address   */
  int64_t per;       /* floats per reduction piece                          */
  float *weights;    /* count_r / n of the current step                     */
  ks_slice_loss_fn fn;
  void *user;
};

/* ---------------------------------------------------------------------------- */

int ks_data_parallel_new(ks_data_parallel **out, ks_link *model, int replicas, uint64_t seed) {
  if (!out) return ks_error_set(KS_EINVAL, "ks_data_parallel_new: out is NULL");
  *out = NULL;
  if (!model) return ks_error_set(KS_EINVAL, "ks_data_parallel_new: model is NULL");
  if (replicas < 1 || replicas > KS_DP_MAX_REPLICAS)
    return ks_error_set(KS_EINVAL, "ks_data_parallel_new: replicas must be 1..%d, got %d",
                        KS_DP_MAX_REPLICAS, replicas);
  ks_data_parallel *dp = calloc(1, sizeof *dp);
  if (!dp) return ks_error_set(KS_ENOMEM, "out of memory creating data-parallel replicas");
  dp->model = model;
  dp->R = replicas;
  dp->reps = calloc((size_t)replicas, sizeof *dp->reps);
  dp->weights = calloc((size_t)replicas, sizeof *dp->weights);
  if (!dp->reps || !dp->weights) {
    ks_data_parallel_free(dp);
    return ks_error_set(KS_ENOMEM, "out of memory creating data-parallel replicas");
  }
  for (int r = 0; r < replicas; r++) {
    dp->reps[r].dp = dp;
    dp->reps[r].ctx = ks_ctx_new();
    if (!dp->reps[r].ctx) {
      ks_data_parallel_free(dp);
      return ks_error_last_code();
    }
    ks_ctx_seed(dp->reps[r].ctx, seed + 0x9e3779b97f4a7c15ull * (uint64_t)r);
    /* persistent values (running statistics) follow the first replica only:
     * the others would write them from another thread at the same time */
    if (r > 0) ks_ctx_set_update_persistents(dp->reps[r].ctx, 0);
  }
  *out = dp;
  return KS_OK;
}

static void free_blocks(ks_data_parallel *dp) {
  for (int r = 0; r < dp->R; r++) {
    free(dp->reps[r].grad);
    free(dp->reps[r].views);
    free(dp->reps[r].valid);
    dp->reps[r].grad = NULL;
    dp->reps[r].views = NULL;
    dp->reps[r].valid = NULL;
  }
  free(dp->slots);
  dp->slots = NULL;
  dp->n = 0;
  dp->pack_id = 0;
}

void ks_data_parallel_free(ks_data_parallel *dp) {
  if (!dp) return;
  if (dp->reps) {
    free_blocks(dp);
    for (int r = 0; r < dp->R; r++) ks_ctx_free(dp->reps[r].ctx);
  }
  free(dp->reps);
  free(dp->weights);
  free(dp);
}

int ks_data_parallel_replicas(const ks_data_parallel *dp) { return dp ? dp->R : 0; }

ks_ctx *ks_data_parallel_ctx(ks_data_parallel *dp, int replica) {
  if (!dp || replica < 0 || replica >= dp->R) return NULL;
  return dp->reps[replica].ctx;
}

void ks_data_parallel_slice(const ks_data_parallel *dp, int64_t n, int replica, int64_t *start,
                            int64_t *count) {
  const int64_t R = dp->R, base = n / R, extra = n % R, r = replica;
  *count = base + (r < extra);
  *start = r * base + (r < extra ? r : extra);
}

/* ---------------------------------------------------------------------------- */

static int cmp_slot(const void *a, const void *b) {
  const var_slot *x = a, *y = b;
  return (x->var > y->var) - (x->var < y->var);
}

/* (Re)makes the replicas' blocks for the model's current pack. */
static int ensure_blocks(ks_data_parallel *dp) {
  ks_link *m = dp->model;
  if (!ks_link_is_packed(m) && ks_link_pack(m)) return ks_error_last_code();
  const ks_pack *pk = m->pack;
  if (pk->id == dp->pack_id) return KS_OK;
  free_blocks(dp);
  const int n = pk->n;
  dp->slots = calloc((size_t)(n ? n : 1), sizeof *dp->slots);
  if (!dp->slots) goto oom;
  dp->n = n;
  for (int i = 0; i < n; i++) dp->slots[i] = (var_slot){(uintptr_t)&pk->params[i]->var, i};
  qsort(dp->slots, (size_t)n, sizeof *dp->slots, cmp_slot);
  for (int r = 0; r < dp->R; r++) {
    dp_replica *rp = &dp->reps[r];
    size_t bytes = ((size_t)pk->size * sizeof(float) + 63) & ~(size_t)63;
    rp->grad = aligned_alloc(64, bytes ? bytes : 64);
    rp->views = calloc((size_t)(n ? n : 1), sizeof *rp->views);
    rp->valid = calloc((size_t)(n ? n : 1), sizeof *rp->valid);
    if (!rp->grad || !rp->views || !rp->valid) goto oom;
    memset(rp->grad, 0, bytes ? bytes : 64);
    for (int i = 0; i < n; i++) {
      const ks_tensor *d = &pk->params[i]->data;
      if (ks_tensor_view_init(&rp->views[i], KS_F32, d->ndim, d->shape, rp->grad + pk->offsets[i])) {
        free_blocks(dp);
        return ks_error_last_code();
      }
    }
  }
  dp->pack_id = pk->id;
  return KS_OK;
oom:
  free_blocks(dp);
  return ks_error_set(KS_ENOMEM, "out of memory making the replicas' gradient blocks");
}

static ks_tensor *replica_grad(void *user, const ks_var *param, int **valid) {
  dp_replica *rp = user;
  const ks_data_parallel *dp = rp->dp;
  const uintptr_t key = (uintptr_t)param;
  size_t lo = 0, hi = (size_t)dp->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (dp->slots[mid].var < key) lo = mid + 1;
    else hi = mid;
  }
  if (lo < (size_t)dp->n && dp->slots[lo].var == key) {
    const int i = dp->slots[lo].index;
    *valid = &rp->valid[i];
    return &rp->views[i];
  }
  /* A parameter outside the model: its own gradient would be written by
   * several threads at once. Send it to a scratch tensor and fail the step. */
  if (!rp->foreign) rp->foreign = param->name ? param->name : "(unnamed)";
  rp->foreign_valid = 0;
  *valid = &rp->foreign_valid;
  return ks_ctx_tensor_like(rp->ctx, param->data);
}

static void capture_error(dp_replica *rp, int rc) {
  rp->rc = rc ? rc : KS_EINVAL;
  snprintf(rp->msg, sizeof rp->msg, "%s", ks_error_last());
}

static void run_replica(void *arg, int64_t r) {
  ks_data_parallel *dp = arg;
  dp_replica *rp = &dp->reps[r];
  if (rp->count == 0) return;
  ks_var *loss = rp->loss_var;
  if (!loss) {
    ks_ctx_reset(rp->ctx);
    loss = dp->fn(rp->ctx, (int)r, rp->start, rp->count, dp->user);
    if (!loss) {
      capture_error(rp, ks_error_last_code());
      return;
    }
  }
  if (loss->data->dtype != KS_F32 || loss->data->size != 1) {
    rp->rc = KS_EINVAL;
    snprintf(rp->msg, sizeof rp->msg, "the loss must be one float32 element (it has %lld)",
             (long long)loss->data->size);
    return;
  }
  ks_ctx_set_grad_sink(rp->ctx, &(ks_grad_sink){replica_grad, rp});
  int rc = ks_backward(rp->ctx, loss);
  ks_ctx_set_grad_sink(rp->ctx, NULL);
  if (rc) {
    capture_error(rp, rc);
    return;
  }
  if (rp->foreign) {
    rp->rc = KS_EINVAL;
    snprintf(rp->msg, sizeof rp->msg,
             "parameter '%s' is not part of the model the replicas were made for", rp->foreign);
    return;
  }
  rp->loss = (double)ks_tensor_f32(loss->data)[0];
}

/* Piece t of the block: [t * per, (t + 1) * per), parameter by parameter
 * (padding between parameters stays zero). */
static void reduce_piece(void *arg, int64_t t) {
  const ks_data_parallel *dp = arg;
  const ks_pack *pk = dp->model->pack;
  const int64_t lo = t * dp->per, hi = lo + dp->per < pk->size ? lo + dp->per : pk->size;
  for (int i = 0; i < dp->n; i++) {
    const int64_t off = pk->offsets[i], end = off + pk->params[i]->data.size;
    if (end <= lo) continue;
    if (off >= hi) break;
    const int64_t a = off > lo ? off : lo, b = end < hi ? end : hi;
    float *restrict dst = pk->grad;
    int first = 1;
    for (int r = 0; r < dp->R; r++) {
      const dp_replica *rp = &dp->reps[r];
      if (!rp->count || !rp->valid[i]) continue;
      const float *restrict g = rp->grad;
      const float w = dp->weights[r];
      if (first)
        for (int64_t j = a; j < b; j++) dst[j] = w * g[j];
      else
        for (int64_t j = a; j < b; j++) dst[j] += w * g[j];
      first = 0;
    }
  }
}

int ks_data_parallel_backward(ks_data_parallel *dp, int64_t n, ks_slice_loss_fn fn, void *user,
                              double *loss) {
  if (!dp || !fn) return ks_error_set(KS_EINVAL, "ks_data_parallel_backward: NULL replicas or function");
  if (n < 1) return ks_error_set(KS_EINVAL, "ks_data_parallel_backward: the batch is empty (n = %lld)", (long long)n);
  dp->fn = fn;
  dp->user = user;
  for (int r = 0; r < dp->R; r++) {
    dp_replica *rp = &dp->reps[r];
    ks_data_parallel_slice(dp, n, r, &rp->start, &rp->count);
    dp->weights[r] = (float)((double)rp->count / (double)n);
    rp->rc = KS_OK;
    rp->loss = 0;
    rp->loss_var = NULL;
    rp->foreign = NULL;
    rp->msg[0] = '\0';
  }
  int rc = KS_OK;
  if (!ks_link_is_packed(dp->model)) {
    /* Lazy parameters get their shapes from a forward: run replica 0's
     * alone (it is the same forward it would run in parallel). */
    dp_replica *r0 = &dp->reps[0];
    ks_ctx_reset(r0->ctx);
    r0->loss_var = fn(r0->ctx, 0, r0->start, r0->count, user);
    if (!r0->loss_var) {
      rc = ks_error_last_code();
      goto fail_here;
    }
  }
  if ((rc = ensure_blocks(dp)) != KS_OK) goto fail_here;
  for (int r = 0; r < dp->R; r++) memset(dp->reps[r].valid, 0, sizeof(int) * (size_t)dp->n);

  ks__parallel_for_affine(dp->R, ks_get_num_threads(), run_replica, dp);

  for (int r = 0; r < dp->R; r++) {
    dp_replica *rp = &dp->reps[r];
    if (rp->rc) {
      ks_link_cleargrads(dp->model);
      return ks_error_set(rp->rc, "data-parallel replica %d (examples %lld..%lld): %s", r,
                          (long long)rp->start, (long long)(rp->start + rp->count - 1), rp->msg);
    }
  }
  const ks_pack *pk = dp->model->pack;
  const int threads = ks_get_num_threads();
  dp->per = ks__block_piece(pk->size, threads, KS_DP_CHUNK);
  ks__parallel_for_affine((pk->size + dp->per - 1) / dp->per, threads, reduce_piece, dp);
  double total = 0;
  for (int i = 0; i < dp->n; i++) {
    int any = 0;
    for (int r = 0; r < dp->R; r++) any |= dp->reps[r].count && dp->reps[r].valid[i];
    pk->params[i]->var.grad_valid = any;
  }
  for (int r = 0; r < dp->R; r++) total += (double)dp->weights[r] * dp->reps[r].loss;
  if (loss) *loss = total;
  return KS_OK;
fail_here:
  ks_link_cleargrads(dp->model);
  return rc ? rc : KS_EINVAL;
}
