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
 * "l1", "l2", ... for a Chain). Types:
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

#ifdef __cplusplus
}
#endif
#endif
