/*
 * kusari/model_io.h — a network description saved next to the weights, so a
 * program that never saw the training code (kusari's built-in scorer) can
 * rebuild the network and load model.npz into it.
 *
 * The description is a small JSON file, usually "model.json" beside
 * "model.npz":
 *
 *   {"format": "kusari-sequential/1",
 *    "input": [784],                       per-sample shape (C, H, W for CNNs)
 *    "layers": [
 *      {"type": "linear", "name": "l1", "in": 784, "out": 100, "nobias": false},
 *      {"type": "relu"},
 *      {"type": "linear", "name": "l2", "in": 100, "out": 100, "nobias": false},
 *      {"type": "relu"},
 *      {"type": "linear", "name": "l3", "in": 100, "out": 10, "nobias": false}]}
 *
 * Layers run in order. A layer with a "name" is a link whose parameters are
 * the npz keys "<name>/W", "<name>/b", ... ("0", "1", ... for a Sequential,
 * "l1", "l2", ... for a Chain), or "<root>/<name>/W", ... when the
 * description has a "root": the path of the described network inside the
 * link that was saved to the npz. A Classifier (ks_classifier_new) saved
 * with ks_save_npz has its keys under "predictor/"; its description is its
 * predictor's, with
 *
 *   {"format": "kusari-sequential/1", "root": "predictor", "input": [1, 28, 28], ...}
 *
 * A description without "root" (all descriptions written before it
 * existed) has its keys at the top of the npz. Optional, after "input":
 *
 *   "input_range": [0, 1],                          every input value lies in it
 *   "input_preprocessing": "grayscale pixels / 255" how raw data became input
 *
 * (ks_model_desc_opts); the platform's scorer answers 400 for a value
 * outside the range, quoting the preprocessing. Types:
 *   linear               in, out, nobias
 *   convolution_2d       in, out, ksize [kh,kw], stride [sy,sx], pad [ph,pw],
 *                        dilate, groups, nobias
 *   deconvolution_2d     the same, plus outsize [oh,ow] (0: computed)
 *   batch_normalization  size, eps, decay (test mode: running statistics)
 *   relu, tanh, sigmoid, log_softmax        (no fields)
 *   max_pooling_2d       ksize [kh,kw], stride [sy,sx], pad [ph,pw], cover_all
 *   average_pooling_2d   ksize, stride, pad
 *   dropout              ratio (the identity at inference)
 * The network's output is (N, classes): the scorer applies softmax to it.
 *
 * libkusari only writes the description (it has no JSON dependency); the
 * kusari platform reads it (platform/service_model.c, with cJSON) and builds
 * the network from public libkusari calls. docs/SERVING.md has the details.
 */
#ifndef KUSARI_MODEL_IO_H
#define KUSARI_MODEL_IO_H

#include <stdint.h>
#include "kusari/link.h"

#ifdef __cplusplus
extern "C" {
#endif

/* All three writers accept a Classifier (ks_classifier_new) in place of the
 * network: what is described is then its predictor (the network that runs
 * at scoring time), with "root": "predictor", so that the description goes
 * with the npz that ks_save_npz writes for the Classifier. */

/* Writes the description of a Sequential (ks_sequential_new) made of Linear,
 * Convolution2D, Deconvolution2D and BatchNormalization links and the
 * functions relu, tanh, sigmoid, log_softmax and the pooling / dropout
 * shorthands of kusari/link.h. input_shape (input_ndim dims, 1 to 3) is the
 * shape of one sample, e.g. {784} or {1, 28, 28}. Every parameter must be
 * initialized (save after training, or after one forward for lazy links).
 * KS_EUNSUPPORTED names the first layer it cannot describe (another link type
 * or a function of the user's). The file is written to a temporary name and
 * renamed over 'path'. */
int ks_model_desc_save(const char *path, ks_link *model, int input_ndim, const int64_t *input_shape);

/* The same for a Chain with its own forward (like the MNIST MLP with l1, l2,
 * l3): 'order' is a NULL-terminated list of the steps of its forward, each
 * either the name of a child link or a function:
 *   "relu", "tanh", "sigmoid", "log_softmax", "dropout",
 *   "max_pooling_2d:K[:S[:P[:COVER_ALL]]]", "average_pooling_2d:K[:S[:P]]"
 * (S defaults to K, P to 0, COVER_ALL to 1 as in Chainer). Example:
 *   const char *order[] = {"l1", "relu", "l2", "relu", "l3", NULL};
 *   ks_model_desc_save_chain("out/model.json", model, order, 1, (int64_t[]){784});
 */
int ks_model_desc_save_chain(const char *path, ks_link *chain, const char *const *order,
                             int input_ndim, const int64_t *input_shape);

/* Options of ks_model_desc_save_ex. */
typedef struct ks_model_desc_opts {
  /* NULL: the network is a Sequential (ks_model_desc_save); else the steps of
   * a Chain's forward, as for ks_model_desc_save_chain. */
  const char *const *order;
  /* Where the network's parameters are in the npz its weights are saved to:
   * "a/b" when the npz was written for a link of which the network is the
   * child "a/b" (keys "a/b/l1/W", ...); NULL or "" when the network itself
   * was saved. One trailing '/' is ignored. A Classifier adds "predictor"
   * to it. */
  const char *root;
  /* The range of every input value the network was trained on, {lo, hi}
   * (e.g. {0, 1} for pixels scaled by 1/255), written as "input_range":
   * the platform's scorer answers 400 for a value outside it instead of a
   * quietly wrong prediction. NULL: no declared range. */
  const double *input_range;
  /* How raw data becomes the network's input, in words (e.g. "grayscale
   * pixels / 255"), written as "input_preprocessing" and quoted in the
   * scorer's 400 answers. NULL: none. */
  const char *input_preprocessing;
} ks_model_desc_opts;

/* The general form of the two above. opts may be NULL (a Sequential saved on
 * its own). KS_EINVAL for a root with empty segments ("a//b", "/a"), an
 * input range that is not finite with lo <= hi. Example (the MNIST MLP):
 *   ks_model_desc_save_ex("outputs/model.json", model,
 *                         &(ks_model_desc_opts){.order = order, .input_range = (double[]){0, 1},
 *                                               .input_preprocessing = "grayscale pixels / 255"},
 *                         1, (int64_t[]){784});
 */
int ks_model_desc_save_ex(const char *path, ks_link *net, const ks_model_desc_opts *opts,
                          int input_ndim, const int64_t *input_shape);

#ifdef __cplusplus
}
#endif
#endif
