/*
 * kusari/optimizer.h — gradient-method optimizers and their hooks
 * (chainer.optimizers.{SGD, MomentumSGD, Adam},
 *  chainer.optimizer_hooks.{WeightDecay, GradientClipping}).
 *
 * Usage, as in Chainer:
 *
 *   ks_optimizer *opt = ks_optimizer_momentum_sgd_new(0.01, 0.9);
 *   ks_optimizer_setup(opt, model);
 *   for (...) {
 *     ks_link_cleargrads(model);
 *     ks_var *loss = ...forward...;
 *     ks_backward(ctx, loss);
 *     ks_optimizer_update(opt);
 *     ks_ctx_reset(ctx);
 *   }
 *
 * ks_optimizer_update follows GradientMethod.update without a loss function:
 *   1. parameters whose gradient was cleared (grad_valid == 0) get a zero
 *      gradient, as Chainer's reallocate_cleared_grads does (so they are
 *      still updated: momentum keeps moving them, as in Chainer),
 *   2. the hooks run in registration order (all hooks here are 'pre' hooks),
 *   3. t += 1, then every parameter's update rule runs (its own t += 1).
 *
 * Update rules (float32 arithmetic, the order of operations of Chainer's
 * update_core_cpu; g is the gradient, p the parameter):
 *   SGD          p -= lr * g
 *   MomentumSGD  v *= momentum; v -= lr * g; p += v                state "v"
 *   Adam         m += (1 - beta1) * (g - m); v += (1 - beta2) * (g*g - v);
 *                step = alpha_t / (sqrt(v) + eps)
 *                p = (1 - eta * weight_decay_rate) * p - eta * (step * m)
 *                alpha_t = alpha * sqrt(1 - beta2^t) / (1 - beta1^t)
 *                state "m", "v" (amsgrad: vhat = max(vhat, v) replaces v in
 *                the step; state "vhat"). As Chainer 7's AdamRule: the
 *                decoupled weight decay (AdamW) is scaled by eta too.
 *
 * Memory: setup packs the target link (see kusari/link.h) when all its
 * parameters are initialized, otherwise the first update does (lazy links
 * know their shapes after the first forward). State arrays (v, m, vhat) are
 * blocks mirroring the pack, so each rule, WeightDecay and GradientClipping
 * is one fused loop over the whole parameter block. Repacking or adding
 * parameters after the state exists makes update fail with KS_ESTATE.
 *
 * Serialization (kusari/serializers.h) writes Chainer's keys: "t", "epoch",
 * and for each parameter path P: "P/t" and "P/<state>" ("l1/W/v" for
 * MomentumSGD, "l1/W/m" and "l1/W/v" for Adam).
 */
#ifndef KUSARI_OPTIMIZER_H
#define KUSARI_OPTIMIZER_H

#include <stdint.h>
#include "kusari/link.h"   /* ks_link */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_optimizer ks_optimizer;

/* ---- constructors (Chainer's defaults in comments) ----------------------------------- */
ks_optimizer *ks_optimizer_sgd_new(double lr);                            /* lr=0.01 */
ks_optimizer *ks_optimizer_momentum_sgd_new(double lr, double momentum);  /* 0.01, 0.9 */

typedef struct ks_adam_opts {
  double alpha;              /* 0.001 */
  double beta1;              /* 0.9   */
  double beta2;              /* 0.999 */
  double eps;                /* 1e-8  */
  double eta;                /* 1.0   */
  double weight_decay_rate;  /* 0     */
  int amsgrad;               /* 0     */
} ks_adam_opts;
#define KS_ADAM_OPTS_DEFAULT ((ks_adam_opts){0.001, 0.9, 0.999, 1e-8, 1.0, 0.0, 0})
/* opts NULL: the defaults above. */
ks_optimizer *ks_optimizer_adam_new(const ks_adam_opts *opts);

/* Frees the optimizer (not its target link). NULL: no-op. */
void ks_optimizer_free(ks_optimizer *opt);

/* ---- use ------------------------------------------------------------------------------ */
/* Sets the target link and resets t, epoch and the state (hooks added
 * before setup are kept). Packs the link when all its parameters are
 * initialized. The link must outlive the optimizer's use of it. */
int ks_optimizer_setup(ks_optimizer *opt, ks_link *link);
/* One update step over the target's current gradients (see the top). */
int ks_optimizer_update(ks_optimizer *opt);
/* Chainer's new_epoch: epoch += 1. */
void ks_optimizer_new_epoch(ks_optimizer *opt);

int64_t ks_optimizer_t(const ks_optimizer *opt);
int64_t ks_optimizer_epoch(const ks_optimizer *opt);
ks_link *ks_optimizer_target(const ks_optimizer *opt);
/* "SGD", "MomentumSGD", "Adam". */
const char *ks_optimizer_name(const ks_optimizer *opt);
/* Adam's bias-corrected step size alpha_t = alpha*sqrt(1-beta2^t)/(1-beta1^t)
 * at the current t (0 before the first update, where Chainer raises); the
 * learning rate "lr" for SGD and MomentumSGD. */
double ks_optimizer_lr(const ks_optimizer *opt);

/* Hyperparameters by Chainer's names: "lr", "momentum" (SGD/MomentumSGD);
 * "alpha", "beta1", "beta2", "eps", "eta", "weight_decay_rate", "amsgrad"
 * (Adam). KS_ENOTFOUND for a name the optimizer does not have. Changing one
 * between updates is how schedules (ExponentialShift, ...) work. */
int ks_optimizer_set_hyperparam(ks_optimizer *opt, const char *name, double value);
int ks_optimizer_get_hyperparam(const ks_optimizer *opt, const char *name, double *value);

/* ---- hooks ('pre' timing, run in registration order) ------------------------------------ */
/* WeightDecay(rate): g += rate * p for every parameter. */
int ks_optimizer_add_weight_decay(ks_optimizer *opt, double rate);
/* GradientClipping(threshold): when the global L2 norm of all gradients
 * exceeds threshold, every gradient is scaled by threshold / norm. */
int ks_optimizer_add_gradient_clipping(ks_optimizer *opt, double threshold);
/* A custom hook: called once per update with the optimizer, after cleared
 * gradients were zero-filled and before t is incremented. Non-zero return
 * aborts the update with that code. */
typedef int (*ks_optimizer_hook_fn)(ks_optimizer *opt, void *user);
int ks_optimizer_add_hook(ks_optimizer *opt, const char *name, ks_optimizer_hook_fn fn, void *user);
/* Removes the hook with that name ("WeightDecay", "GradientClipping" for
 * the built-in ones). KS_ENOTFOUND if absent. */
int ks_optimizer_remove_hook(ks_optimizer *opt, const char *name);

/* ---- state access (serializers, tests, multi-node wrappers) ---------------------------- */
/* Number of state arrays per parameter (SGD 0, MomentumSGD 1, Adam 2 or 3)
 * and their names ("v"; "m", "v"; "m", "v", "vhat"). */
int ks_optimizer_num_states(const ks_optimizer *opt);
const char *ks_optimizer_state_name(const ks_optimizer *opt, int k);
/* State k of parameter i (namedparams order of the target) as a float array
 * with the parameter's shape, or NULL before the state exists (before the
 * link could be packed). */
float *ks_optimizer_state(ks_optimizer *opt, int k, int param_index);
/* Per-parameter update counts (UpdateRule.t) */
int64_t ks_optimizer_param_t(const ks_optimizer *opt, int param_index);
/* Makes sure the state exists (packs the target if needed). KS_ESTATE when a
 * parameter is still uninitialized. */
int ks_optimizer_prepare(ks_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif
