/*
 * src/comm/comm_impl.h — how the rest of libkusari reaches a communicator
 * without linking src/comm/: through a table of functions that every
 * ks_comm carries as its first member. The optimizer, the Evaluator, the
 * Trainer and the BatchNormalization link call these inline helpers, so a
 * program that never creates a communicator does not pull comm.o (and
 * with it MPI) out of the static libkusari.a.
 */
#ifndef KUSARI_COMM_IMPL_H
#define KUSARI_COMM_IMPL_H

#include "kusari/comm.h"

typedef struct ks__comm_hooks {
  int (*rank)(const ks_comm *c);
  int (*size)(const ks_comm *c);
  int (*bcast_data)(ks_comm *c, ks_link *model);
  int (*allreduce_grad)(ks_comm *c, ks_link *model);
  int (*allreduce_f64)(ks_comm *c, double *v, int64_t n);
  ks_var *(*batch_normalization)(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                                 ks_tensor *running_mean, ks_tensor *running_var, double decay, ks_comm *c);
} ks__comm_hooks;

/* struct ks_comm starts with a pointer to its hooks (comm.c) */
static inline const ks__comm_hooks *ks__comm_hooks_of(const ks_comm *c) {
  return *(const ks__comm_hooks *const *)(const void *)c;
}
static inline int ks__comm_rank(const ks_comm *c) { return ks__comm_hooks_of(c)->rank(c); }
static inline int ks__comm_size(const ks_comm *c) { return ks__comm_hooks_of(c)->size(c); }
static inline int ks__comm_bcast_data(ks_comm *c, ks_link *m) { return ks__comm_hooks_of(c)->bcast_data(c, m); }
static inline int ks__comm_allreduce_grad(ks_comm *c, ks_link *m) {
  return ks__comm_hooks_of(c)->allreduce_grad(c, m);
}
static inline int ks__comm_allreduce_f64(ks_comm *c, double *v, int64_t n) {
  return ks__comm_hooks_of(c)->allreduce_f64(c, v, n);
}

#endif
