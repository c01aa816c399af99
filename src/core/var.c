/*
 * src/core/var.c — contexts, variables and the backward engine.
 *
 * Backward collects the nodes reachable from the loss, orders them by
 * generation (highest first, so every consumer of a variable runs before its
 * creator, as in Chainer's FunctionNode ranks), and for each node calls its
 * type's backward with freshly allocated input-gradient tensors, which are then
 * accumulated into the inputs: set when the input has no gradient yet, added
 * otherwise (add-or-set). Parameters keep persistent grad tensors; a cleared
 * parameter gradient is marked invalid rather than freed.
 */
#include "kusari/var.h"
#include "kusari/backend.h"
#include "kusari/error.h"

#include <stdlib.h>
#include <string.h>

struct ks_ctx {
  ks_arena *arena;     /* host: vars, nodes, tensor structs; tensor data on the CPU */
  ks_device device;    /* where ks_ctx_tensor puts tensor data                    */
  const ks_backend_ops *be;  /* its backend (NULL while the device is the CPU)    */
  ks_arena *dev_arena; /* tensor data on 'device' when that is not the CPU       */
  ks_rng rng;
  int train;
  int backprop;
  int update_persistents;
  unsigned mark;
  ks_grad_sink sink;   /* parameter gradients go here when sink.grad is set */
};

void ks_ctx_set_grad_sink(ks_ctx *ctx, const ks_grad_sink *sink) {
  if (sink) ctx->sink = *sink;
  else ctx->sink = (ks_grad_sink){0};
}

ks_ctx *ks_ctx_new(void) {
  ks_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) { ks_error_set(KS_ENOMEM, "out of memory creating a context"); return NULL; }
  ctx->arena = ks_arena_new(0);
  if (!ctx->arena) { free(ctx); return NULL; }
  ks_rng_seed(&ctx->rng, 0);
  ctx->train = 1;
  ctx->backprop = 1;
  ctx->update_persistents = 1;
  return ctx;
}

void ks_ctx_free(ks_ctx *ctx) {
  if (!ctx) return;
  ks_arena_free(ctx->arena);
  ks_arena_free(ctx->dev_arena);
  free(ctx);
}

void ks_ctx_reset(ks_ctx *ctx) {
  ks_arena_reset(ctx->arena);
  if (ctx->dev_arena) ks_arena_reset(ctx->dev_arena);
}

int ks_ctx_set_device(ks_ctx *ctx, ks_device dev) {
  const ks_backend_ops *be = ks_backend_for_device(dev);
  if (!be)
    return ks_error_set(KS_EUNSUPPORTED, "ks_ctx_set_device: no backend serves device %d:%d "
                        "(register one with ks_backend_register)", (int)dev.type, dev.id);
  if (ks_device_equal(dev, ctx->device)) return KS_OK;
  ks_arena *da = NULL;
  if (dev.type != KS_DEVICE_CPU) {
    da = ks_arena_new_with(0, be->alloc, be->free);
    if (!da) return ks_error_last_code();
  }
  ks_arena_free(ctx->dev_arena);
  ctx->dev_arena = da;
  ctx->device = dev;
  ctx->be = dev.type == KS_DEVICE_CPU ? NULL : be;
  return KS_OK;
}

ks_device ks_ctx_device(const ks_ctx *ctx) { return ctx->device; }
ks_arena *ks_ctx_device_arena(ks_ctx *ctx) { return ctx->dev_arena ? ctx->dev_arena : ctx->arena; }
ks_arena *ks_ctx_arena(ks_ctx *ctx) { return ctx->arena; }
ks_rng *ks_ctx_rng(ks_ctx *ctx) { return &ctx->rng; }
void ks_ctx_seed(ks_ctx *ctx, uint64_t seed) { ks_rng_seed(&ctx->rng, seed); }

int ks_ctx_set_train(ks_ctx *ctx, int train) {
  int old = ctx->train;
  ctx->train = !!train;
  return old;
}
int ks_ctx_train(const ks_ctx *ctx) { return ctx->train; }

int ks_ctx_set_backprop(ks_ctx *ctx, int enable) {
  int old = ctx->backprop;
  ctx->backprop = !!enable;
  return old;
}
int ks_ctx_backprop(const ks_ctx *ctx) { return ctx->backprop; }

int ks_ctx_set_update_persistents(ks_ctx *ctx, int enable) {
  int old = ctx->update_persistents;
  ctx->update_persistents = !!enable;
  return old;
}
int ks_ctx_update_persistents(const ks_ctx *ctx) { return ctx->update_persistents; }

ks_tensor *ks_ctx_tensor(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape) {
  ks_tensor *t = ks_arena_alloc(ctx->arena, sizeof *t);
  if (!t) return NULL;
  if (ks_tensor_view_init(t, dtype, ndim, shape, NULL) != KS_OK) return NULL;
  t->data = ks_arena_alloc(ctx->dev_arena ? ctx->dev_arena : ctx->arena, ks_tensor_nbytes(t));
  if (!t->data) return NULL;
  t->device = ctx->device;
  t->flags = KS_TENSOR_ARENA;
  return t;
}

ks_tensor *ks_ctx_tensor_zeros(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape) {
  ks_tensor *t = ks_ctx_tensor(ctx, dtype, ndim, shape);
  if (!t) return NULL;
  if (ctx->be) ctx->be->fill_bytes(t->data, 0, ks_tensor_nbytes(t));
  else memset(t->data, 0, ks_tensor_nbytes(t));
  return t;
}

ks_tensor *ks_ctx_tensor_like(ks_ctx *ctx, const ks_tensor *t) {
  return ks_ctx_tensor(ctx, t->dtype, t->ndim, t->shape);
}

/* ---------------------------------------------------------------------------- */

ks_var *ks_var_new(ks_ctx *ctx, ks_tensor *data, int requires_grad) {
  if (!data) return NULL;
  ks_var *v = ks_arena_calloc(ctx->arena, sizeof *v);
  if (!v) return NULL;
  v->data = data;
  v->requires_grad = requires_grad && data->dtype == KS_F32;
  return v;
}

ks_var *ks_var_from_data(ks_ctx *ctx, ks_dtype dtype, int ndim, const int64_t *shape,
                         const void *src, int requires_grad) {
  ks_tensor *t = ks_ctx_tensor(ctx, dtype, ndim, shape);
  if (!t) return NULL;
  if (ctx->be) ctx->be->memcpy_from_host(t->data, src, ks_tensor_nbytes(t));
  else memcpy(t->data, src, ks_tensor_nbytes(t));
  return ks_var_new(ctx, t, requires_grad);
}

void ks_var_param_init(ks_var *v, ks_tensor *data, ks_tensor *grad, const char *name) {
  memset(v, 0, sizeof *v);
  v->data = data;
  v->grad = grad;
  v->name = name;
  v->requires_grad = 1;
  v->is_param = 1;
  v->grad_valid = 0;
}

void ks_var_cleargrad(ks_var *v) {
  if (!v) return;
  if (v->is_param) v->grad_valid = 0;
  else v->grad = NULL;
}

/* ---------------------------------------------------------------------------- */

ks_node *ks_node_new(ks_ctx *ctx, const ks_fn_type *type, int n_in, ks_var *const *in) {
  KS_ASSERT(n_in >= 1 && n_in <= KS_NODE_MAX_IN);
  if (!ctx->backprop) return NULL;
  int needed = 0, gen = 0;
  for (int i = 0; i < n_in; i++) {
    if (!in[i]) continue;
    if (in[i]->creator || in[i]->requires_grad) needed = 1;
    if (in[i]->generation > gen) gen = in[i]->generation;
  }
  if (!needed) return NULL;
  ks_node *n = ks_arena_calloc(ctx->arena, sizeof *n);
  if (!n) return NULL;
  n->type = type;
  n->n_in = n_in;
  for (int i = 0; i < n_in; i++) n->in[i] = in[i];
  n->generation = gen;
  return n;
}

ks_var *ks_node_output(ks_ctx *ctx, ks_node *node, ks_tensor *y) {
  if (!y) return NULL;
  ks_var *v = ks_var_new(ctx, y, 0);
  if (!v) return NULL;
  if (node) {
    KS_ASSERT(node->n_out < KS_NODE_MAX_OUT);
    node->out[node->n_out++] = v;
    v->creator = node;
    v->generation = node->generation + 1;
  }
  return v;
}

static int var_needs_grad(const ks_var *v) { return v && (v->creator || v->requires_grad); }

/* Where a backward through ctx puts parameter v's gradient: the ctx's sink
 * when it has one for v, else v's own grad tensor; *valid is the flag that
 * says the tensor holds a value. */
static ks_tensor *param_grad(const ks_ctx *ctx, ks_var *v, int **valid) {
  if (ctx->sink.grad) {
    ks_tensor *t = ctx->sink.grad(ctx->sink.user, v, valid);
    if (t) return t;
  }
  *valid = &v->grad_valid;
  return v->grad;
}

/* add-or-set of gradient 'g' (an arena tensor nobody else references) into v */
static void accumulate(const ks_ctx *ctx, ks_var *v, ks_tensor *g) {
  const ks_backend_ops *be = ks_backend_for(g);
  if (v->is_param) {
    int *valid;
    ks_tensor *pg = param_grad(ctx, v, &valid);
    if (!*valid) {
      be->copy(pg->data, g->data, ks_tensor_nbytes(g));
      *valid = 1;
    } else {
      be->axpy(g->size, 1.0f, ks_tensor_f32(g), ks_tensor_f32(pg));
    }
  } else if (!v->grad) {
    v->grad = g;
  } else {
    be->axpy(g->size, 1.0f, ks_tensor_f32(g), ks_tensor_f32(v->grad));
  }
}

/* A parameter whose gradient is not valid yet can receive gx directly in its
 * persistent grad tensor (saves one copy per parameter per step), unless the
 * same parameter is another input of the same node (the two gx would alias). */
static ks_tensor *param_takes_gx_directly(const ks_ctx *ctx, const ks_node *nd, int i,
                                          int **valid) {
  ks_var *v = nd->in[i];
  if (!v->is_param) return NULL;
  ks_tensor *pg = param_grad(ctx, v, valid);
  if (**valid || !pg) return NULL;
  for (int j = 0; j < nd->n_in; j++)
    if (j != i && nd->in[j] == v) return NULL;
  return pg;
}

static int cmp_generation_desc(const void *a, const void *b) {
  const ks_node *x = *(ks_node *const *)a, *y = *(ks_node *const *)b;
  if (x->generation != y->generation) return x->generation < y->generation ? 1 : -1;
  return 0;
}

/* Hooked parameters (ks_grad_hook): counts, for each, the nodes of the
 * graph that add to its gradient and tells its hook (event 0). Returns
 * whether any was found. */
static int grad_hooks_begin(const ks_ctx *ctx, ks_node *const *nodes, size_t n) {
  if (ctx->sink.grad) return 0;
  int any = 0;
  for (size_t k = 0; k < n; k++)
    for (int i = 0; i < nodes[k]->n_in; i++) {
      ks_var *v = nodes[k]->in[i];
      if (v && v->is_param && v->grad_hook) v->grad_pending = 0;
    }
  for (size_t k = 0; k < n; k++)
    for (int i = 0; i < nodes[k]->n_in; i++) {
      ks_var *v = nodes[k]->in[i];
      if (!v || !v->is_param || !v->grad_hook) continue;
      if (v->grad_pending++ == 0) v->grad_hook->fn(v->grad_hook, v, 0);
      any = 1;
    }
  return any;
}

/* After node nd: the hooked parameters it was the last to add to (event 1). */
static void grad_hooks_done(const ks_node *nd) {
  for (int i = 0; i < nd->n_in; i++) {
    ks_var *v = nd->in[i];
    if (v && v->is_param && v->grad_hook && v->grad_pending > 0 && --v->grad_pending == 0)
      v->grad_hook->fn(v->grad_hook, v, 1);
  }
}

int ks_backward(ks_ctx *ctx, ks_var *loss) { return ks_backward_ex(ctx, loss, 0); }

int ks_backward_ex(ks_ctx *ctx, ks_var *loss, int retain_grad) {
  if (!loss) return ks_error_set(KS_EINVAL, "ks_backward: loss is NULL (did the forward pass fail? %s)",
                                 ks_error_last());
  if (loss->data->dtype != KS_F32) return ks_error_set(KS_EINVAL, "ks_backward: loss must be float32");
  if (!loss->grad) {
    if (loss->data->size != 1)
      return ks_error_set(KS_EINVAL,
                          "ks_backward: the loss has %lld elements; set loss->grad first "
                          "(only a one-element loss gets an initial gradient of 1, as in Chainer)",
                          (long long)loss->data->size);
    ks_tensor *g = ks_ctx_tensor(ctx, KS_F32, loss->data->ndim, loss->data->shape);
    if (!g) return ks_error_last_code();
    ks_backend_for(g)->fill(g->size, 1.0f, ks_tensor_f32(g));
    loss->grad = g;
  }
  if (!loss->creator) return KS_OK;

  /* collect reachable nodes (iterative DFS; the stack grows in the arena) */
  unsigned mark = ++ctx->mark;
  size_t cap = 64, n = 0, top = 0;
  ks_node **nodes = ks_arena_alloc(ctx->arena, cap * sizeof *nodes);
  ks_node **stack = ks_arena_alloc(ctx->arena, cap * sizeof *stack);
  size_t scap = cap;
  if (!nodes || !stack) return ks_error_last_code();
  stack[top++] = loss->creator;
  loss->creator->mark = mark;
  while (top) {
    ks_node *nd = stack[--top];
    if (n == cap) {
      ks_node **bigger = ks_arena_alloc(ctx->arena, 2 * cap * sizeof *bigger);
      if (!bigger) return ks_error_last_code();
      memcpy(bigger, nodes, n * sizeof *nodes);
      nodes = bigger;
      cap *= 2;
    }
    nodes[n++] = nd;
    for (int i = 0; i < nd->n_in; i++) {
      ks_node *c = nd->in[i] ? nd->in[i]->creator : NULL;
      if (!c || c->mark == mark) continue;
      c->mark = mark;
      if (top == scap) {
        ks_node **bigger = ks_arena_alloc(ctx->arena, 2 * scap * sizeof *bigger);
        if (!bigger) return ks_error_last_code();
        memcpy(bigger, stack, top * sizeof *stack);
        stack = bigger;
        scap *= 2;
      }
      stack[top++] = c;
    }
  }
  qsort(nodes, n, sizeof *nodes, cmp_generation_desc);
  int hooked = grad_hooks_begin(ctx, nodes, n);

  for (size_t k = 0; k < n; k++) {
    ks_node *nd = nodes[k];
    ks_tensor *gy[KS_NODE_MAX_OUT] = {0};
    ks_tensor *gx[KS_NODE_MAX_IN] = {0};
    int any = 0;
    for (int j = 0; j < nd->n_out; j++) {
      ks_var *o = nd->out[j];
      if (o->grad) { gy[j] = o->grad; any = 1; continue; }
      gy[j] = ks_ctx_tensor_zeros(ctx, o->data->dtype, o->data->ndim, o->data->shape);
      if (!gy[j]) return ks_error_last_code();
    }
    if (!any) { /* nothing flows through this node */
      if (hooked) grad_hooks_done(nd);
      continue;
    }
    int *direct[KS_NODE_MAX_IN] = {0}; /* valid flags of gradients written in place */
    for (int i = 0; i < nd->n_in; i++) {
      if (!var_needs_grad(nd->in[i])) continue;
      ks_tensor *pg = param_takes_gx_directly(ctx, nd, i, &direct[i]);
      if (pg) {
        gx[i] = pg;
        continue;
      }
      direct[i] = NULL;
      gx[i] = ks_ctx_tensor_like(ctx, nd->in[i]->data);
      if (!gx[i]) return ks_error_last_code();
    }
    int rc = nd->type->backward(ctx, nd, gy, gx);
    if (rc != KS_OK) return rc;
    for (int i = 0; i < nd->n_in; i++) {
      if (direct[i]) *direct[i] = 1;
      else if (gx[i]) accumulate(ctx, nd->in[i], gx[i]);
    }
    if (hooked) grad_hooks_done(nd);
    /* Chainer's retain_grad=False: an intermediate variable's gradient is
     * dropped once it has been propagated, so a second backward through the
     * same graph does not count it again. The loss keeps its gradient. */
    if (!retain_grad)
      for (int j = 0; j < nd->n_out; j++)
        if (nd->out[j] != loss) nd->out[j]->grad = NULL;
  }
  return KS_OK;
}
