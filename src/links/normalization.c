/*
 * src/links/normalization.c — chainer.links.BatchNormalization: gamma and
 * beta parameters, avg_mean / avg_var / N persistent values (saved in npz
 * under Chainer's names), batch statistics in train mode and the running
 * averages in test mode.
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/functions.h"  /* ks_batch_normalization, ks_fixed_batch_normalization */
#include "comm/comm_impl.h"    /* multi-node batch norm, without linking src/comm */

#include <stdlib.h>


static const char bn_type[] = "BatchNormalization";

static void bn_free(ks_link *link) { free(link->impl); }

static ks_var *bn_forward(ks_ctx *ctx, ks_link *link, ks_var *x) {
  if (!x) return NULL;
  if (!link || link->type_name != bn_type) {
    ks_error_set(KS_EINVAL, "BatchNormalization forward: link is not a BatchNormalization");
    return NULL;
  }
  bn_impl *b = link->impl;
  if (ctx && ks_ctx_train(ctx)) {
    const int keep = ks_ctx_update_persistents(ctx); /* 0: a data-parallel replica after the first */
    double decay = b->decay;
    if (keep && b->finetune) decay = 1.0 - 1.0 / (double)(*b->N + 1);
    ks_var *y;
    if (b->comm)
      y = ks__comm_hooks_of(b->comm)->batch_normalization(ctx, x, b->gamma, b->beta, b->eps,
                                                          keep ? b->avg_mean : NULL, keep ? b->avg_var : NULL,
                                                          decay, b->comm);
    else
      y = ks_batch_normalization(ctx, x, b->gamma, b->beta, b->eps, keep ? b->avg_mean : NULL,
                                 keep ? b->avg_var : NULL, decay);
    if (!keep) return y;
    if (y && b->finetune) (*b->N)++;
    return y;
  }
  return ks_fixed_batch_normalization(ctx, x, b->gamma, b->beta, b->avg_mean, b->avg_var, b->eps);
}

ks_link *ks_batch_normalization_link_new(int64_t size, const ks_bn_link_opts *opts) {
  ks_bn_link_opts o = opts ? *opts : KS_BN_LINK_DEFAULTS;
  if (size <= 0 || !(o.eps > 0) || !(o.decay >= 0 && o.decay <= 1)) {
    ks_error_set(KS_EINVAL, "BatchNormalization(%lld, decay=%g, eps=%g): size must be > 0, "
                 "decay in [0, 1], eps > 0", (long long)size, o.decay, o.eps);
    return NULL;
  }
  ks_link *link = ks__link_alloc(bn_type);
  if (!link) return NULL;
  bn_impl *b = calloc(1, sizeof *b);
  if (!b) { free(link); ks_error_set(KS_ENOMEM, "out of memory creating BatchNormalization"); return NULL; }
  link->impl = b;
  link->free_impl = bn_free;
  link->forward = bn_forward;
  b->decay = o.decay;
  b->eps = o.eps;
  ks_initializer one = ks_init_one(), zero = ks_init_zero();
  const int64_t shape[1] = {size};
  /* gamma / beta initializers are deterministic by default; a random one
   * gets an rng seeded from the size (there is no seed option) */
  ks_rng rng;
  ks_rng_seed(&rng, (uint64_t)size);
  b->gamma = ks_link_add_param(link, "gamma", 1, shape, o.initial_gamma ? o.initial_gamma : &one, &rng);
  b->beta = ks_link_add_param(link, "beta", 1, shape, o.initial_beta ? o.initial_beta : &zero, &rng);
  if (!b->gamma || !b->beta) goto fail;
  b->avg_mean = ks_link_add_persistent(link, "avg_mean", 1, shape, 0.0);
  b->avg_var = ks_link_add_persistent(link, "avg_var", 1, shape, 1.0);
  b->N = ks_link_add_persistent_int(link, "N", 0);
  if (!b->avg_mean || !b->avg_var || !b->N) goto fail;
  return link;

fail:
  ks_link_free(link);
  return NULL;
}

static bn_impl *as_bn(ks_link *link, const char *fn) {
  if (!link || link->type_name != bn_type) {
    ks_error_set(KS_EINVAL, "%s: link is not a BatchNormalization", fn);
    return NULL;
  }
  return link->impl;
}

int ks_batch_normalization_link_set_finetune(ks_link *bn, int finetune) {
  bn_impl *b = as_bn(bn, "ks_batch_normalization_link_set_finetune");
  if (!b) return KS_EINVAL;
  b->finetune = !!finetune;
  return KS_OK;
}

int ks_batch_normalization_link_start_finetuning(ks_link *bn) {
  bn_impl *b = as_bn(bn, "ks_batch_normalization_link_start_finetuning");
  if (!b) return KS_EINVAL;
  *b->N = 0;
  return KS_OK;
}

/* Every BatchNormalization link of the tree (model itself included) gets
 * the communicator (NULL: back to one process). */
static int set_comm_tree(ks_link *l, ks_comm *comm) {
  int n = 0;
  if (l->type_name == bn_type) {
    ((bn_impl *)l->impl)->comm = comm;
    n++;
  }
  for (int i = 0; i < l->n_children; i++) n += set_comm_tree(l->children[i], comm);
  return n;
}

int ks_create_mnbn_model(ks_link *model, ks_comm *comm, int *n_replaced) {
  if (!model) return ks_error_set(KS_EINVAL, "ks_create_mnbn_model: model is NULL");
  int n = set_comm_tree(model, comm);
  if (n_replaced) *n_replaced = n;
  return KS_OK;
}
