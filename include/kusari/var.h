/*
 * kusari/var.h — define-by-run autograd: contexts, variables, function nodes.
 *
 * A ks_ctx owns the per-iteration arena, the train/test flag, the
 * enable-backprop flag and an RNG (for dropout). Every function call
 * (ks_linear, ks_relu, ...) takes the ctx, computes its output immediately and,
 * when backprop is enabled and some input requires a gradient, records a
 * ks_node as the output's creator. ks_backward(ctx, loss) walks the recorded
 * graph in reverse topological order (by generation, as Chainer does) and
 * accumulates gradients: a variable used twice receives the sum.
 *
 * Memory: variables, nodes and intermediate tensors live in the ctx arena and
 * are released all at once by ks_ctx_reset(), which a training loop calls once
 * per iteration after the optimizer update. Parameters (ks_var_param_init) are
 * the exception: their data and grad are persistent tensors owned by a link.
 *
 * Error convention for functions returning ks_var*: NULL on failure with
 * ks_error_last() set; a NULL input makes the call return NULL without
 * touching the message, so a whole forward pass can be written as nested
 * calls and checked once at the end.
 */
#ifndef KUSARI_VAR_H
#define KUSARI_VAR_H

#include "kusari/tensor.h"
#include "kusari/arena.h"
#include "kusari/random.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_ctx ks_ctx;
typedef struct ks_node ks_node;

typedef struct ks_var {
  ks_tensor *data;
  ks_tensor *grad;        /* NULL until a gradient arrives (or after cleargrad) */
  ks_node   *creator;     /* NULL for leaves                                    */
  const char *name;       /* optional, for messages ("l1/W")                    */
  int requires_grad;      /* leaves: whether backward computes their gradient   */
  int is_param;           /* persistent parameter: grad is a persistent tensor  */
  int grad_valid;         /* params: grad holds a value (else treat as None)    */
  int generation;
  /* internal (the multi-node optimizer's overlap of communication with
   * backward, src/comm/comm.c): see ks_grad_hook below */
  struct ks_grad_hook *grad_hook;
  int grad_pending;
} ks_var;

/* A parameter's gradient hook: a backward (through a ctx without a grad
 * sink) calls fn(hook, param, 0) for every hooked parameter whose gradient
 * the graph will write, before any node's backward runs, then fn(hook,
 * param, 1) as soon as the last node that adds to it is done. */
typedef struct ks_grad_hook {
  void (*fn)(struct ks_grad_hook *hook, ks_var *param, int event);
} ks_grad_hook;

/* ---- context -------------------------------------------------------------- */
ks_ctx *ks_ctx_new(void);
void ks_ctx_free(ks_ctx *ctx);
/* Releases every var/node/tensor made through the ctx since the last reset. */
void ks_ctx_reset(ks_ctx *ctx);
ks_arena *ks_ctx_arena(ks_ctx *ctx);
ks_rng *ks_ctx_rng(ks_ctx *ctx);
void ks_ctx_seed(ks_ctx *ctx, uint64_t seed);
/* Train flag (chainer.config.train); default 1. Returns the previous value. */
int ks_ctx_set_train(ks_ctx *ctx, int train);
int ks_ctx_train(const ks_ctx *ctx);
/* chainer.no_backprop_mode(): with 0, no graph is recorded. Returns previous. */
int ks_ctx_set_backprop(ks_ctx *ctx, int enable);
int ks_ctx_backprop(const ks_ctx *ctx);
/* Whether a forward through this ctx may update persistent values (batch
 * normalization's running statistics); default 1. Data-parallel replicas
 * other than the first run with 0, so the model's statistics come from the
 * first replica's slice alone, as from the main device's with Chainer's
 * ParallelUpdater. Links that write persistent values in their forward
 * honor it. Returns the previous value. */
int ks_ctx_set_update_persistents(ks_ctx *ctx, int enable);
int ks_ctx_update_persistents(const ks_ctx *ctx);

/* Arena tensors: uninitialized / zero-filled. NULL (error set) on failure. */
/* The device whose memory holds the tensors the ctx makes (the CPU unless
 * set): functions compute on the device of their inputs and put their
 * outputs here, so a model on a device runs through a ctx set to it
 * (ks_link_to_device). Each device has its own arena, reset with the ctx.
 * Set it right after ks_ctx_new or ks_ctx_reset (it drops the device arena).
 * KS_EUNSUPPORTED when no backend serves 'dev'. */
int ks_ctx_set_device(ks_ctx *ctx, ks_device dev);
ks_device ks_ctx_device(const ks_ctx *ctx);
/* The arena holding tensor data on the ctx's device (the host arena on the CPU). */
ks_arena *ks_ctx_device_arena(ks_ctx *ctx);
/* Tensors on the ctx's device; ks_var_from_data copies 'src' from the host. */
ks_tensor *ks_ctx_tensor(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape);
ks_tensor *ks_ctx_tensor_zeros(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape);
ks_tensor *ks_ctx_tensor_like(ks_ctx *ctx, const ks_tensor *t);

/* Gradient sinks, for data-parallel replicas of a step (kusari/parallel.h):
 * a backward through a ctx with a sink writes each parameter's gradient to
 * the tensor sink.grad returns for it (with *valid pointing at the flag that
 * says the tensor holds a value: 0 means set, 1 means add) instead of the
 * parameter's own grad tensor; returning NULL keeps the parameter's own.
 * Several threads can then run backward over the same parameters, each
 * through its own ctx and sink. NULL removes the sink. */
typedef struct ks_grad_sink {
  ks_tensor *(*grad)(void *user, const ks_var *param, int **valid);
  void *user;
} ks_grad_sink;
void ks_ctx_set_grad_sink(ks_ctx *ctx, const ks_grad_sink *sink);

/* ---- variables -------------------------------------------------------------- */
/* Leaf variable wrapping 'data' (not copied; the caller keeps it alive until
 * the next reset). requires_grad: whether backward computes its gradient. */
ks_var *ks_var_new(ks_ctx *ctx, ks_tensor *data, int requires_grad);
/* Leaf variable holding a copy of 'src' in the arena. */
ks_var *ks_var_from_data(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape,
                         const void *src, int requires_grad);
/* Initializes a persistent parameter around heap/arena tensors owned by the
 * caller (usually a link). grad must have data's shape. */
void ks_var_param_init(ks_var *v, ks_tensor *data, ks_tensor *grad, const char *name);
/* Chainer's cleargrad: forget the gradient (params: mark invalid). */
void ks_var_cleargrad(ks_var *v);

/* ---- backward ------------------------------------------------------------------ */
/* Runs backprop from 'loss'. A one-element loss without a gradient starts
 * from 1; a larger loss needs loss->grad set by the caller (KS_EINVAL
 * otherwise), as in Chainer. Gradients reach leaves and parameters; those of
 * intermediate variables are dropped once propagated (retain_grad=False), so
 * a second backward through the same graph counts nothing twice. */
int ks_backward(ks_ctx *ctx, ks_var *loss);
/* ks_backward with Chainer's retain_grad: nonzero keeps the gradients of
 * intermediate variables (for inspection; a second backward then adds to them). */
int ks_backward_ex(ks_ctx *ctx, ks_var *loss, int retain_grad);

/* ---- defining functions (used by src/functions, and by users adding ops) ------ */
#define KS_NODE_MAX_IN  4
#define KS_NODE_MAX_OUT 2

typedef struct ks_fn_type {
  const char *name;
  /* Computes input gradients. gy[j] is the gradient of output j (never NULL:
   * outputs that received none get zeros). gx[i] is NULL when input i needs no
   * gradient; otherwise it is a fresh arena tensor with input i's shape and
   * dtype that backward must overwrite completely. */
  int (*backward)(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx);
} ks_fn_type;

struct ks_node {
  const ks_fn_type *type;
  int n_in, n_out;
  ks_var *in[KS_NODE_MAX_IN];
  ks_var *out[KS_NODE_MAX_OUT];
  int generation;
  unsigned mark;      /* engine bookkeeping (visited flag of a backward) */
  void *saved;        /* function-specific retained state (arena memory)   */
  double fparam[4];   /* small scalar arguments (slope, ratio, ...)       */
  int64_t iparam[4];
};

/* Records a node for 'type' over inputs, or returns NULL (no error) when no
 * graph is needed: backprop disabled or no input requires a gradient. */
ks_node *ks_node_new(ks_ctx *ctx, const ks_fn_type *type, int n_in, ks_var *const *in);
/* Wraps output tensor y in a new variable whose creator is 'node' (which may
 * be NULL, giving a leaf that requires no gradient). */
ks_var *ks_node_output(ks_ctx *ctx, ks_node *node, ks_tensor *y);

#ifdef __cplusplus
}
#endif
#endif
