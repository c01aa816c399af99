/*
 * src/links/linear.c — chainer.links.Linear: W (out, in) with LeCunNormal,
 * b (out,) with zeros, lazy in_size (L.Linear(None, out)).
 *
 * The link keeps a seed instead of an rng: W is drawn from an rng seeded with
 * 'seed', b from one seeded with seed ^ KS_LINEAR_BIAS_STREAM, so a lazy link
 * initialized on its first forward gets exactly the values an eager link
 * with the same seed and in_size gets at creation.
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/functions.h"   /* ks_linear */

#include <stdlib.h>

#define KS_LINEAR_BIAS_STREAM 0x5bd1e9955bd1e995ULL

typedef struct linear_impl {
  int64_t in_size, out_size;
  int nobias;
  ks_initializer initW, initb;
  uint64_t seed;
  ks_var *W, *b;
} linear_impl;

static const char linear_type[] = "Linear";

static void linear_free(ks_link *link) { free(link->impl); }

static linear_impl *as_linear(const ks_link *link) {
  if (!link || link->type_name != linear_type) return NULL;
  return link->impl;
}

static int linear_init_W(ks_link *link, linear_impl *li, int64_t in_size) {
  ks_rng rng;
  ks_rng_seed(&rng, li->seed);
  int64_t shape[2] = {li->out_size, in_size};
  int rc = ks_link_param_initialize(link, "W", 2, shape, &li->initW, &rng);
  if (rc == KS_OK) li->in_size = in_size;
  return rc;
}

ks_link *ks_linear_link_new(int64_t in_size, int64_t out_size, const ks_linear_opts *opts) {
  if (in_size < 0 || out_size <= 0) {
    ks_error_set(KS_EINVAL, "Linear(%lld, %lld): in_size must be >= 0 (0: infer) and out_size > 0",
                 (long long)in_size, (long long)out_size);
    return NULL;
  }
  ks_link *link = ks__link_alloc(linear_type);
  if (!link) return NULL;
  linear_impl *li = calloc(1, sizeof *li);
  if (!li) { free(link); ks_error_set(KS_ENOMEM, "out of memory creating Linear"); return NULL; }
  link->impl = li;
  link->free_impl = linear_free;
  link->forward = ks_link_linear_forward;
  li->out_size = out_size;
  li->nobias = opts ? opts->nobias : 0;
  li->initW = opts && opts->initialW ? *opts->initialW : ks_init_lecun_normal(1.0);
  li->initb = opts && opts->initial_bias ? *opts->initial_bias : ks_init_zero();
  li->seed = opts ? (opts->rng ? ks_rng_next(opts->rng) : opts->seed) : 0;

  int64_t wshape[2] = {out_size, -1};
  li->W = ks_link_add_param(link, "W", 2, wshape, NULL, NULL);
  if (!li->W) goto fail;
  if (in_size > 0 && linear_init_W(link, li, in_size) != KS_OK) goto fail;
  if (!li->nobias) {
    ks_rng rng;
    ks_rng_seed(&rng, li->seed ^ KS_LINEAR_BIAS_STREAM);
    int64_t bshape[1] = {out_size};
    li->b = ks_link_add_param(link, "b", 1, bshape, &li->initb, &rng);
    if (!li->b) goto fail;
  }
  return link;

fail:
  ks_link_free(link);
  return NULL;
}

ks_var *ks_link_linear_forward(ks_ctx *ctx, ks_link *link, ks_var *x) {
  if (!x) return NULL;
  linear_impl *li = as_linear(link);
  if (!li) { ks_error_set(KS_EINVAL, "ks_link_linear_forward: link is not a Linear"); return NULL; }
  if (!ks_link_param_is_initialized(li->W)) {
    if (x->data->ndim < 1) { ks_error_set(KS_ESHAPE, "Linear: input must have a batch axis"); return NULL; }
    int64_t in = 1;
    for (int i = 1; i < x->data->ndim; i++) in *= x->data->shape[i];
    if (in <= 0) { ks_error_set(KS_ESHAPE, "Linear: cannot infer in_size from an empty input"); return NULL; }
    if (linear_init_W(link, li, in) != KS_OK) return NULL;
  }
  return ks_linear(ctx, x, li->W, li->b);
}

int64_t ks_linear_link_in_size(const ks_link *link) {
  linear_impl *li = as_linear(link);
  if (!li) return 0;
  if (ks_link_param_is_initialized(li->W)) return li->W->data->shape[1];
  return 0;
}

int64_t ks_linear_link_out_size(const ks_link *link) {
  linear_impl *li = as_linear(link);
  return li ? li->out_size : 0;
}
