/*
 * kusari/link.h — links: objects that own named parameters and named
 * children (chainer.Link, Chain, ChainList/Sequential, links.Linear).
 *
 * A ks_link is an opaque handle. It owns
 *   - parameters: ks_var values with is_param set, whose data and grad are
 *     persistent float32 tensors (see ks_var_param_init in kusari/var.h); a
 *     parameter may be *uninitialized* (lazy: shape not known yet), and
 *   - children: other links, each under a name, owned by the parent and freed
 *     with it.
 *
 * Paths. ks_link_namedparams order is Chainer's namedparams(): a link's own
 * parameters sorted by name, then each child in name order (Chain) or in
 * insertion order (Sequential/ChainList, children named "0", "1", ...), each
 * child's parameters prefixed with "<child name>/". Paths have no leading
 * '/': "l1/W", "l1/b", "l2/W". These paths are the npz keys, exactly what
 * chainer.serializers.save_npz writes for the same Chain.
 *
 * Packing (mirrored flat blocks). Until packed, every parameter has its own
 * data and grad allocation. ks_link_pack(root) moves all parameters of the
 * tree into ONE data block and ONE mirrored grad block: parameter i (in
 * namedparams order) lives at offset[i] floats in both blocks; offsets are
 * rounded up to 16 floats (64 bytes) and the padding is kept at zero in both
 * blocks, so any element-wise rule over the whole block leaves padding at 0.
 * The ks_var handles, their ks_tensor structs and all values (including
 * valid gradients) are preserved: only the tensors' data pointers change, so
 * a pack is transparent to functions and to the autograd engine.
 * After packing:
 *   - ks_link_zerograds is one memset of the grad block,
 *   - an optimizer keeps its state (momentum v, Adam m and v) in blocks of the
 *     same layout, so an update is one fused loop over `size` floats,
 *   - a data-parallel allreduce can run over the grad block in one call.
 * Packing needs every parameter initialized (lazy links get their shape on
 * their first forward), so ks_optimizer_setup packs when it can and otherwise
 * packs on the first ks_optimizer_update. Adding or lazily initializing
 * parameters after a pack leaves those parameters outside the block
 * (ks_link_is_packed then returns 0); packing again re-packs the whole tree.
 *
 * Example (the MLP of Chainer's MNIST example; npz keys l1/W ... l3/b):
 *
 *   static ks_var *mlp_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
 *     ks_var *h1 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l1"), x));
 *     ks_var *h2 = ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "l2"), h1));
 *     return ks_link_forward(ctx, ks_link_child(self, "l3"), h2);
 *   }
 *   ks_rng rng; ks_rng_seed(&rng, seed);
 *   ks_linear_opts o = {.rng = &rng};
 *   ks_link *model = ks_chain_new();
 *   if (ks_link_add_child(model, "l1", ks_linear_link_new(0, n_units, &o)) ||
 *       ks_link_add_child(model, "l2", ks_linear_link_new(0, n_units, &o)) ||
 *       ks_link_add_child(model, "l3", ks_linear_link_new(0, 10, &o)))
 *     die(ks_error_last());
 *   ks_link_set_forward(model, mlp_forward, NULL);
 *   ...
 *   ks_save_npz("model.npz", model);            // kusari/serializers.h
 *
 * Errors follow kusari/error.h: int functions return KS_OK or KS_E*;
 * constructors return NULL with ks_error_last() set. ks_link_free(NULL) is a
 * no-op. Once a link tree's paths are computed, each parameter's var->name
 * is its path from the root ("l1/W"), for error messages.
 */
#ifndef KUSARI_LINK_H
#define KUSARI_LINK_H

#include <stddef.h>
#include <stdint.h>
#include "kusari/var.h"           /* ks_ctx, ks_var        */
#include "kusari/initializers.h"  /* ks_initializer        */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ks_link ks_link;

/* forward of a link: y = link(x). NULL on failure (error set); NULL x → NULL. */
typedef ks_var *(*ks_link_forward_fn)(ks_ctx *ctx, ks_link *link, ks_var *x);
/* a parameter-free function usable inside a Sequential (ks_relu, ks_tanh, ...) */
typedef ks_var *(*ks_unary_fn)(ks_ctx *ctx, ks_var *x);

/* ---- generic links and chains ------------------------------------------------ */

/* New empty link (chainer.Chain()): no parameters, no children, children
 * iterated in name order. Its forward is unset until ks_link_set_forward. */
ks_link *ks_chain_new(void);
/* Frees the link, its parameters and all its children. NULL: no-op.
 * A link that has been added to a parent is owned and freed by the parent:
 * ks_link_free on it does nothing. */
void ks_link_free(ks_link *link);

/* Adds 'child' under 'name' (no '/' allowed). The parent takes ownership of
 * the child in every case: on failure (duplicate name, child already has a
 * parent, bad name) the child is freed. A NULL child (failed constructor)
 * returns that constructor's error code, keeping its message, so
 *   ks_link_add_child(model, "l1", ks_linear_link_new(0, 100, NULL))
 * needs one check. */
int ks_link_add_child(ks_link *parent, const char *name, ks_link *child);
/* Child registered under 'name', or NULL (no error set). */
ks_link *ks_link_child(const ks_link *link, const char *name);
int ks_link_num_children(const ks_link *link);
/* i-th child in iteration order (name order for Chain, insertion order for
 * Sequential); *name (optional) receives its name. NULL when out of range. */
ks_link *ks_link_child_at(const ks_link *link, int i, const char **name);
/* The link's name in its parent ("l1"), or "" for a root. */
const char *ks_link_name(const ks_link *link);
/* Type name: "Chain", "Linear", "Sequential", "Classifier", "Convolution2D",
 * "Deconvolution2D", "BatchNormalization". */
const char *ks_link_type_name(const ks_link *link);

/* Custom forward for a chain (the body of a Chain's __call__). 'user' is
 * available inside the forward through ks_link_user. */
void ks_link_set_forward(ks_link *link, ks_link_forward_fn forward, void *user);
void *ks_link_user(const ks_link *link);
/* Runs the link's forward (Linear, Sequential, or the custom one). NULL with
 * KS_EUNSUPPORTED when the link has no forward; NULL x returns NULL. */
ks_var *ks_link_forward(ks_ctx *ctx, ks_link *link, ks_var *x);

/* ---- parameters ------------------------------------------------------------------ */

/* Registers a float32 parameter 'name' on 'link' (no '/' allowed) and
 * initializes it with 'init' (NULL: zeros) drawing from 'rng'. A lazy
 * (uninitialized) parameter is registered when ndim < 0 (shape unknown) or
 * when some shape[i] is -1 (known rank and dims, -1 unknown, e.g. Linear's W
 * is (out, -1)); its shape is checked against the known dims when it is
 * initialized or loaded. Returns the parameter's variable, owned by the link
 * and valid until the link is freed, or NULL (error set). */
ks_var *ks_link_add_param(ks_link *link, const char *name, int ndim, const int64_t *shape,
                          const ks_initializer *init, ks_rng *rng);
/* Initializes a lazy parameter with its final shape (Chainer's
 * Parameter.initialize). KS_ESTATE if it is already initialized, KS_ESHAPE if
 * the shape contradicts the known dims. */
int ks_link_param_initialize(ks_link *link, const char *name, int ndim, const int64_t *shape,
                             const ks_initializer *init, ks_rng *rng);
/* Parameter of this link (name) or of a descendant ("l1/W"); NULL if absent
 * (no error set). */
ks_var *ks_link_param(ks_link *link, const char *path);
/* Whether the parameter holds data (lazy parameters: after the first forward). */
int ks_link_param_is_initialized(const ks_var *param);

/* Number of parameter variables in the tree (initialized or not). */
int ks_link_num_params(ks_link *link);
/* Total float count of the initialized parameters (Chainer's count_params). */
int64_t ks_link_count_params(ks_link *link);
/* i-th parameter in namedparams order; *path (optional) receives "l1/W",
 * valid until the tree changes. NULL when out of range. */
ks_var *ks_link_param_at(ks_link *link, int i, const char **path);
/* Calls fn for each parameter in namedparams order; stops at and returns the
 * first non-zero return of fn. include_uninit 0 skips lazy parameters. */
int ks_link_namedparams(ks_link *link, int include_uninit,
                        int (*fn)(const char *path, ks_var *param, void *user), void *user);

/* Chainer's cleargrads: every gradient becomes "None" (grad_valid = 0). */
void ks_link_cleargrads(ks_link *link);
/* Moves every initialized parameter (data and gradient) and float persistent
 * of the tree to 'dev' (Chainer's to_gpu / to_cpu; KS_CPU brings it back).
 * Run it through a ctx set to the same device (ks_ctx_set_device). Move
 * before ks_link_pack (a packed tree: KS_EUNSUPPORTED). */
int ks_link_to_device(ks_link *link, ks_device dev);
/* Chainer's zerograds: every initialized gradient is set to zeros (valid).
 * One memset when packed. */
void ks_link_zerograds(ks_link *link);
/* Chainer's copyparams: copies the data of src's parameters into dst's
 * parameters with the same paths. Lazy dst parameters are initialized with
 * src's shapes. KS_ENOTFOUND / KS_ESHAPE (naming the path) when the trees
 * differ; dst is unchanged on failure. */
int ks_link_copyparams(ks_link *dst, ks_link *src);

/* ---- persistent values (Chainer's register_persistent) -------------------------------- */
/* Values a link keeps that are not parameters: no gradient, never packed,
 * never updated by optimizers, but saved and loaded by the npz serializers
 * under their path ("bn/avg_mean") next to the parameters, and copied by
 * ks_link_copyparams (Chainer's copy_persistent=True). They share the link's
 * name space with parameters and children. */

/* Registers a float32 persistent tensor 'name' of the given shape filled with
 * 'fill'. Returns the tensor (owned by the link, valid until it is freed;
 * its data may be updated in place) or NULL (error set). */
ks_tensor *ks_link_add_persistent(ks_link *link, const char *name, int ndim, const int64_t *shape,
                                  double fill);
/* Registers an integer persistent (saved as a 0-d int64 array, as Chainer
 * saves a Python int such as BatchNormalization's N). Returns a pointer to
 * the value, owned by the link, or NULL (error set). */
int64_t *ks_link_add_persistent_int(ks_link *link, const char *name, int64_t value);
/* Persistent tensor / integer of this link or a descendant ("bn/avg_mean"),
 * NULL if absent or of the other kind (no error set). */
ks_tensor *ks_link_persistent(ks_link *link, const char *path);
int64_t *ks_link_persistent_int(ks_link *link, const char *path);
/* Number of persistent values in the tree. */
int ks_link_num_persistents(ks_link *link);
/* Calls fn for each persistent value of the tree (a link's own ones sorted
 * by name, then its children in iteration order): t for tensors, ival for
 * integers (the other NULL). Stops at and returns fn's first non-zero
 * return. */
int ks_link_namedpersistents(ks_link *link,
                             int (*fn)(const char *path, ks_tensor *t, int64_t *ival, void *user),
                             void *user);

/* ---- packing ---------------------------------------------------------------------- */

/* Moves every parameter of the tree into one data block and one mirrored grad
 * block (see the top of this file). Values and valid gradients are kept.
 * KS_ESTATE (naming the parameter) when a parameter is not initialized yet. */
int ks_link_pack(ks_link *root);
/* 1 when every parameter of the tree lives in root's pack. */
int ks_link_is_packed(ks_link *root);
/* The blocks of root's pack (NULL when root has none). size (optional):
 * floats in each block, padding included. */
float *ks_link_pack_data(ks_link *root, int64_t *size);
float *ks_link_pack_grad(ks_link *root, int64_t *size);
/* Offset in floats of parameter i (namedparams order) in root's pack, or -1. */
int64_t ks_link_pack_offset(ks_link *root, int i);

/* ---- Linear (chainer.links.Linear) ------------------------------------------------- */

typedef struct ks_linear_opts {
  int nobias;                          /* no b parameter                            */
  const ks_initializer *initialW;      /* NULL: LeCunNormal(scale=1)               */
  const ks_initializer *initial_bias;  /* NULL: Zero                               */
  ks_rng *rng;      /* non-NULL: a seed for this link is drawn from it at creation  */
  uint64_t seed;    /* used when rng is NULL                                        */
} ks_linear_opts;

/* Linear(in_size, out_size): W is (out_size, in_size), b is (out_size,).
 * in_size 0 means "infer on the first forward" (L.Linear(None, out_size)).
 * opts NULL: Chainer's defaults with seed 0. The weights come from a ks_rng
 * seeded with the link's seed (W first, then b), so eager and lazy links with
 * the same seed and shapes get identical values. */
ks_link *ks_linear_link_new(int64_t in_size, int64_t out_size, const ks_linear_opts *opts);
/* y = x W^T + b. x is (N, ...) flattened to (N, in_size); y is (N, out_size).
 * Initializes W on the first call when in_size was 0. */
ks_var *ks_link_linear_forward(ks_ctx *ctx, ks_link *link, ks_var *x);
/* 0 while a lazy Linear has not seen its input yet. */
int64_t ks_linear_link_in_size(const ks_link *link);
int64_t ks_linear_link_out_size(const ks_link *link);

/* ---- Convolution2D / Deconvolution2D (chainer.links) --------------------------------- */

typedef struct ks_conv_link_opts {
  /* rectangular windows: when kh != 0, kernel (kh, kw), stride (sy, sx) (0: 1)
   * and pad (ph, pw) come from here instead of the ksize/stride/pad arguments */
  int kh, kw, sy, sx, ph, pw;
  int dilate;                          /* 0: 1                                      */
  int groups;                          /* 0: 1                                      */
  int outh, outw;                      /* Deconvolution2D: outsize (0: computed)    */
  int nobias;                          /* no b parameter                            */
  const ks_initializer *initialW;      /* NULL: LeCunNormal(scale=1)               */
  const ks_initializer *initial_bias;  /* NULL: Zero                               */
  ks_rng *rng;      /* non-NULL: a seed for this link is drawn from it at creation  */
  uint64_t seed;    /* used when rng is NULL                                        */
} ks_conv_link_opts;

/* L.Convolution2D(in_channels, out_channels, ksize, stride, pad): W is
 * (out_channels, in_channels / groups, kh, kw), b is (out_channels,).
 * in_channels 0 means "infer on the first forward" (L.Convolution2D(None,
 * out, ksize)). opts NULL: Chainer's defaults, seed 0. As with Linear, W is
 * drawn from an rng seeded with the link's seed and b from a second stream,
 * so eager and lazy links with the same seed get identical values.
 * Forward: ks_convolution_2d_ex (kusari/functions.h). */
ks_link *ks_convolution_2d_link_new(int64_t in_channels, int64_t out_channels, int ksize,
                                    int stride, int pad, const ks_conv_link_opts *opts);
/* L.Deconvolution2D(in_channels, out_channels, ksize, stride, pad): W is
 * (in_channels, out_channels / groups, kh, kw), b is (out_channels,);
 * in_channels 0 is lazy. Forward: ks_deconvolution_2d_ex. */
ks_link *ks_deconvolution_2d_link_new(int64_t in_channels, int64_t out_channels, int ksize,
                                      int stride, int pad, const ks_conv_link_opts *opts);
/* 0 while a lazy link has not seen its input yet. */
int64_t ks_conv_link_in_channels(const ks_link *link);
int64_t ks_conv_link_out_channels(const ks_link *link);

/* ---- BatchNormalization (chainer.links.BatchNormalization) --------------------------- */

typedef struct ks_bn_link_opts {
  double decay;                        /* running-average decay (Chainer 0.9)       */
  double eps;                          /* added to the variance (Chainer 2e-5)      */
  const ks_initializer *initial_gamma; /* NULL: One                                 */
  const ks_initializer *initial_beta;  /* NULL: Zero                                */
} ks_bn_link_opts;
#define KS_BN_LINK_DEFAULTS ((ks_bn_link_opts){0.9, 2e-5, NULL, NULL})

/* BatchNormalization(size): parameters gamma (size,) and beta (size,), and
 * persistent values avg_mean (zeros), avg_var (ones) and N (0), saved in npz
 * under Chainer's keys ("bn/gamma", "bn/beta", "bn/avg_mean", "bn/avg_var",
 * "bn/N" for a child named "bn"). Forward on x (N, size, ...): in train mode
 * (ks_ctx_train) ks_batch_normalization with the batch statistics, updating
 * avg_mean / avg_var in place; in test mode ks_fixed_batch_normalization with
 * avg_mean / avg_var. opts NULL: KS_BN_LINK_DEFAULTS (fields are used as
 * given, so decay 0 keeps only the last batch). */
ks_link *ks_batch_normalization_link_new(int64_t size, const ks_bn_link_opts *opts);
/* Chainer's fine-tuning mode (bn(x, finetune=True)): while on, each
 * train-mode forward does N += 1 and updates avg_mean / avg_var with decay
 * 1 - 1/N, so they become the plain average of the batch statistics seen.
 * ks_batch_normalization_link_start_finetuning sets N = 0 (Chainer's
 * start_finetuning). KS_EINVAL when the link is not a BatchNormalization. */
int ks_batch_normalization_link_set_finetune(ks_link *bn, int finetune);
int ks_batch_normalization_link_start_finetuning(ks_link *bn);

/* ---- Sequential (chainer.Sequential) ----------------------------------------------- */

/* New empty Sequential. Layers run in the order appended. */
ks_link *ks_sequential_new(void);
/* Appends a link (owned from now on, freed on failure; see ks_link_add_child).
 * Links are named "0", "1", ... in the order appended (functions do not
 * count), so parameters are "0/W", "0/b", "1/W", ... as in Chainer. */
int ks_sequential_append(ks_link *seq, ks_link *layer);
/* Appends a parameter-free function such as ks_relu. */
int ks_sequential_append_fn(ks_link *seq, ks_unary_fn fn);
/* Appends a parameter-free function with arguments (functools.partial):
 * fn(ctx, x, args) where args points to the Sequential's own copy of the
 * args_size bytes at 'args' (copied now, freed with the Sequential). */
typedef ks_var *(*ks_unary_fn_args)(ks_ctx *ctx, ks_var *x, const void *args);
int ks_sequential_append_fn_with(ks_link *seq, ks_unary_fn_args fn, const void *args,
                                 size_t args_size);
/* Shorthands over ks_sequential_append_fn_with (like appending
 * partial(F.max_pooling_2d, ksize=2) in Chainer; they add no child, so the
 * parameter paths are unchanged): */
int ks_sequential_append_max_pooling_2d(ks_link *seq, int ksize, int stride, int pad,
                                        int cover_all);
int ks_sequential_append_average_pooling_2d(ks_link *seq, int ksize, int stride, int pad);
int ks_sequential_append_dropout(ks_link *seq, double ratio);

/* ---- Classifier (chainer.links.Classifier) ----------------------------------------- */

/* Wraps 'predictor' (owned from now on; freed on failure) as the child
 * "predictor", so parameters are "predictor/l1/W", ... like an L.Classifier
 * saved by Chainer. ks_link_forward on a Classifier runs the predictor. */
ks_link *ks_classifier_new(ks_link *predictor);
/* loss = softmax_cross_entropy(predictor(x), t) (ignore_label -1). y_out and
 * accuracy (optional) receive the predictor's output (N, C) and the accuracy
 * scalar: ks_accuracy with KS_IGNORE_NONE, as L.Classifier's F.accuracy, so
 * a label -1 is left out of the loss but counts as a miss in the accuracy.
 * x is (N, ...), t is (N,) int32. NULL on failure. */
ks_var *ks_classifier_forward(ks_ctx *ctx, ks_link *clf, ks_var *x, ks_var *t, ks_var **y_out,
                              ks_var **accuracy);

#ifdef __cplusplus
}
#endif
#endif
