/*
 * src/optimizers/optimizer_impl.h — private layout of ks_optimizer (used by
 * src/optimizers and the npz serializer).
 */
#ifndef KUSARI_OPTIMIZER_IMPL_H
#define KUSARI_OPTIMIZER_IMPL_H

#include "kusari/optimizer.h"
#include "links/link_impl.h"

typedef enum ks_opt_kind { KS_OPT_SGD, KS_OPT_MOMENTUM_SGD, KS_OPT_ADAM } ks_opt_kind;
typedef enum ks_hook_kind { KS_HOOK_WEIGHT_DECAY, KS_HOOK_GRADIENT_CLIPPING, KS_HOOK_CUSTOM } ks_hook_kind;

typedef struct ks_opt_hook {
  char *name;
  ks_hook_kind kind;
  double value;                /* rate / threshold */
  ks_optimizer_hook_fn fn;
  void *user;
} ks_opt_hook;

#define KS_OPT_MAX_STATES 3

struct ks_optimizer {
  ks_opt_kind kind;
  double lr, momentum;         /* SGD, MomentumSGD */
  ks_adam_opts adam;
  ks_link *target;
  int64_t t, epoch;

  /* state, mirroring target->pack */
  int ready;
  uint64_t pack_id;
  int n_params;
  int64_t size;
  float *state[KS_OPT_MAX_STATES];
  int64_t *param_t;

  ks_opt_hook *hooks;
  int n_hooks, cap_hooks;

  /* multi-node (kusari/comm.h): NULL for a plain optimizer */
  struct ks_comm *comm;
  int comm_synced;             /* the target was broadcast ...              */
  uint64_t comm_pack_id;       /* ... while packed as this pack             */
  struct ks__overlap *comm_overlap; /* the gradient buckets' allreduce during
                                     * backward (comm.c), for this pack: */
  uint64_t comm_overlap_pack;
};

#endif
