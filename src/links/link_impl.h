/*
 * src/links/link_impl.h — private layout of ks_link, its parameters and the
 * flat pack (see the packing notes in include/kusari/link.h). Used by
 * src/links, src/optimizers and src/serializers.
 */
#ifndef KUSARI_LINK_IMPL_H
#define KUSARI_LINK_IMPL_H

#include "kusari/link.h"
#include "kusari/functions.h"    /* ks_conv2d_opts */
#include "kusari/initializers.h" /* ks_initializer */

typedef struct ks_pack ks_pack;

/* One parameter. The ks_var and its two tensor structs never move, so the
 * var pointer handed out stays valid; only data.data / grad.data change when
 * the parameter is (re)packed. */
typedef struct ks_param {
  char *name;              /* local name ("W")                                   */
  ks_link *owner;
  ks_var var;              /* var.data == &data, var.grad == &grad               */
  ks_tensor data, grad;    /* views: into own_* or into pack blocks              */
  float *own_data, *own_grad; /* private buffers; NULL when packed / uninitialized */
  int initialized;
  int hint_ndim;           /* lazy: known rank, or -1                            */
  int64_t hint_shape[KS_MAX_DIMS]; /* lazy: known dims, -1 where unknown         */
  ks_pack *pack;           /* pack holding data/grad, or NULL                    */
  char *path;              /* full path from the owner's root (for messages)     */
} ks_param;

struct ks_pack {
  ks_link *root;
  float *data, *grad;      /* mirrored blocks of 'size' floats                   */
  int64_t size;
  int n;                   /* parameters in the pack (namedparams order)         */
  ks_param **params;
  int64_t *offsets;
  uint64_t id;             /* unique per pack (optimizers check it)              */
};

/* A persistent value (Chainer's register_persistent): not a parameter, so
 * no gradient, never packed, never touched by optimizers; saved and loaded
 * by the npz serializers under its path. Either a float32 heap tensor or an
 * int64 scalar (is_int; Chainer saves a Python int as a 0-d int64 array). */
typedef struct ks_persistent {
  char *name;
  ks_link *owner;
  ks_tensor *t;            /* float32 heap tensor, NULL when is_int            */
  int is_int;
  int64_t ival;
} ks_persistent;

typedef struct ks_persist_entry {
  char *path;              /* relative to the link the list was made for     */
  ks_persistent *p;
} ks_persist_entry;

typedef struct ks_flat_entry {
  char *path;              /* relative to the link that owns the cache           */
  ks_param *param;
} ks_flat_entry;

struct ks_link {
  const char *type_name;
  ks_link_forward_fn forward;
  void *user;
  void *impl;                          /* type-specific state                    */
  void (*free_impl)(ks_link *link);    /* (optional)                             */

  char *name;                          /* name in parent, NULL for a root        */
  ks_link *parent;

  ks_param **params;                   /* sorted by name                         */
  int n_params, cap_params;
  ks_link **children;                  /* iteration order                        */
  char **child_names;
  int n_children, cap_children;
  int ordered_children;                /* 1: insertion order (ChainList)         */

  ks_flat_entry *flat;                 /* cached namedparams(include_uninit=1)   */
  int n_flat;
  int flat_valid;

  ks_pack *pack;                       /* pack owned by this link (root)         */

  ks_persistent **persists;            /* sorted by name                         */
  int n_persists, cap_persists;
};

/* Allocates a link of the given type; impl is owned and released by free_impl. */
ks_link *ks__link_alloc(const char *type_name);
/* Cached namedparams of 'link' (including uninitialized). NULL on OOM. */
ks_flat_entry *ks__link_flat(ks_link *link, int *n);
/* Marks cached paths of link and its ancestors stale. */
void ks__link_invalidate(ks_link *link);
ks_param *ks__param_of_var(ks_var *v);
/* Param's buffers: sets shape and allocates own data/grad (zeroed). */
int ks__param_alloc(ks_param *p, int ndim, const int64_t *shape);
/* Back to uninitialized (undoing a ks__param_alloc on a lazy param). */
void ks__param_uninit(ks_param *p);
/* Persistent values of the tree (own ones sorted by name, then each child's
 * in iteration order, paths like "bn/avg_mean"); a new array the caller
 * frees with ks__persist_list_free. NULL with *n = 0 on OOM (error set) or
 * when there are none (no error). */
ks_persist_entry *ks__link_persist_list(ks_link *link, int *n);
void ks__persist_list_free(ks_persist_entry *list, int n);
/* Persistent value of link (name) or of a descendant ("bn/avg_mean"), or NULL. */
ks_persistent *ks__link_persistent_at(ks_link *link, const char *path);
/* Checks a shape against a lazy param's hint. */
int ks__param_shape_ok(const ks_param *p, int ndim, const int64_t *shape);


/* ---- private state of the link types, shared with src/serializers/model_desc.c
 * (which describes layers for the scoring server) ----------------------------- */

/* Sequential (sequential.c) */
typedef struct seq_layer {
  ks_link *link;      /* or NULL ...                              */
  ks_unary_fn fn;     /* ... for a function                       */
  ks_unary_fn_args fnx; /* ... or a function with its own args copy */
  void *args;
} seq_layer;

typedef struct seq_impl {
  seq_layer *layers;
  int n, cap;
  int n_links;
} seq_impl;

/* Convolution2D / Deconvolution2D (convolution.c) */
typedef struct conv_impl {
  int deconv;
  int64_t in_c, out_c;
  ks_conv2d_opts fo;      /* stride, pad, dilate, groups, outsize */
  int64_t kh, kw;
  ks_initializer initW, initb;
  uint64_t seed;
  ks_var *W, *b;
} conv_impl;

/* BatchNormalization (normalization.c) */
typedef struct bn_impl {
  double decay, eps;
  int finetune;
  ks_var *gamma, *beta;
  ks_tensor *avg_mean, *avg_var;
  int64_t *N;
  struct ks_comm *comm;   /* multi-node (ks_create_mnbn_model), or NULL */
} bn_impl;

#endif
