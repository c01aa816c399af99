/*
 * kusari/kusari.h — umbrella header: includes every public header of libkusari.
 *
 * A minimal define-by-run example:
 *
 *   ks_ctx *ctx = ks_ctx_new();
 *   ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){2, 3}, xs, 1);
 *   ks_var *y = ks_sum(ctx, ks_mul(ctx, x, x), KS_AXIS_ALL); // y = sum(x^2)
 *   ks_backward(ctx, y);                          // x->grad = 2x
 *   ks_ctx_reset(ctx);                            // frees the graph
 */
#ifndef KUSARI_KUSARI_H
#define KUSARI_KUSARI_H

#include "kusari/error.h"
#include "kusari/tensor.h"
#include "kusari/random.h"
#include "kusari/arena.h"
#include "kusari/var.h"
#include "kusari/backend.h"
#include "kusari/functions.h"
#include "kusari/gradient_check.h"
#include "kusari/initializers.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"
#include "kusari/datasets.h"
#include "kusari/iterator.h"
#include "kusari/parallel.h"
#include "kusari/trainer.h"
#include "kusari/extensions.h"
#include "kusari/model_io.h"
#include "kusari/run.h"
#include "kusari/comm.h"

#endif
