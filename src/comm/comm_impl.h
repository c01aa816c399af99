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

struct ks__overlap; /* comm.c */

typedef struct ks__comm_hooks {
  int (*rank)(const ks_comm *c);
  int (*size)(const ks_comm *c);
  int (*bcast_data)(ks_comm *c, ks_link *model);
  int (*allreduce_grad)(ks_comm *c, ks_link *model);
  int (*allreduce_f64)(ks_comm *c, double *v, int64_t n);
  ks_var *(*batch_normalization)(ks_ctx *ctx, ks_var *x, ks_var *gamma, ks_var *beta, double eps,
                                 ks_tensor *running_mean, ks_tensor *running_var, double decay, ks_comm *c);
  /* overlap of the gradients' allreduce with backward (comm.c): arm hooks
   * the packed target's parameters so that each bucket of the gradient
   * block starts its non-blocking allreduce as soon as backward has finished
   * its parameters (*out NULL when there is nothing to overlap: one rank, or
   * no MPI); finish waits for them, reduces the buckets that did not start
   * (zero_fill), and leaves the mean, exactly what allreduce_grad gives;
   * release unhooks the parameters (the pack must still be alive) and frees */
  int (*overlap_arm)(ks_comm *c, ks_link *model, struct ks__overlap **out);
  int (*overlap_finish)(struct ks__overlap *ov);
  void (*overlap_release)(struct ks__overlap *ov);
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
static inline int ks__comm_overlap_arm(ks_comm *c, ks_link *m, struct ks__overlap **out) {
  return ks__comm_hooks_of(c)->overlap_arm(c, m, out);
}
static inline int ks__comm_overlap_finish(ks_comm *c, struct ks__overlap *ov) {
  return ks__comm_hooks_of(c)->overlap_finish(ov);
}
static inline void ks__comm_overlap_release(ks_comm *c, struct ks__overlap *ov) {
  ks__comm_hooks_of(c)->overlap_release(ov);
}

#endif
