/*
 * src/links/convolution.c — chainer.links.Convolution2D and
 * Deconvolution2D: W with LeCunNormal, b with zeros, lazy in_channels
 * (L.Convolution2D(None, out, ksize)).
 *
 * Like Linear, the link keeps a seed: W is drawn from an rng seeded with
 * 'seed', b from one seeded with seed ^ KS_CONV_BIAS_STREAM, so a lazy link
 * initialized on its first forward gets exactly the values of an eager one.
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/functions.h"   /* ks_convolution_2d_ex, ks_deconvolution_2d_ex */

#include <stdlib.h>

#define KS_CONV_BIAS_STREAM 0x9e3779b97f4a7c15ULL


static const char conv_type[] = "Convolution2D";
static const char deconv_type[] = "Deconvolution2D";

static void conv_free(ks_link *link) { free(link->impl); }

static conv_impl *as_conv(const ks_link *link) {
  if (!link || (link->type_name != conv_type && link->type_name != deconv_type)) return NULL;
  return link->impl;
}

/* W's shape for in_channels 'in' (-1: unknown) */
static void w_shape(const conv_impl *ci, int64_t in, int64_t *s) {
  const int64_t G = ci->fo.groups;
  if (ci->deconv) {
    s[0] = in;
    s[1] = ci->out_c / G;
  } else {
    s[0] = ci->out_c;
    s[1] = in < 0 ? -1 : in / G;
  }
  s[2] = ci->kh;
  s[3] = ci->kw;
}

static int conv_init_W(ks_link *link, conv_impl *ci, int64_t in) {
  const char *name = ci->deconv ? "Deconvolution2D" : "Convolution2D";
  if (in <= 0 || in % ci->fo.groups)
    return ks_error_set(KS_ESHAPE, "%s: in_channels %lld must be positive and divisible by groups %d",
                        name, (long long)in, ci->fo.groups);
  ks_rng rng;
  ks_rng_seed(&rng, ci->seed);
  int64_t s[4];
  w_shape(ci, in, s);
  int rc = ks_link_param_initialize(link, "W", 4, s, &ci->initW, &rng);
  if (rc == KS_OK) ci->in_c = in;
  return rc;
}

static ks_var *conv_forward(ks_ctx *ctx, ks_link *link, ks_var *x) {
  if (!x) return NULL;
  conv_impl *ci = as_conv(link);
  if (!ci) {
    ks_error_set(KS_EINVAL, "convolution link forward: link is not a Convolution2D/Deconvolution2D");
    return NULL;
  }
  if (!ks_link_param_is_initialized(ci->W)) {
    if (x->data->ndim != 4) {
      char s[96];
      ks_error_set(KS_ESHAPE, "%s: input must be 4-d (N, C, H, W), got %s", link->type_name,
                   ks_shape_str(x->data->ndim, x->data->shape, s, sizeof s));
      return NULL;
    }
    if (conv_init_W(link, ci, x->data->shape[1]) != KS_OK) return NULL;
  }
  return ci->deconv ? ks_deconvolution_2d_ex(ctx, x, ci->W, ci->b, &ci->fo)
                    : ks_convolution_2d_ex(ctx, x, ci->W, ci->b, &ci->fo);
}

static ks_link *conv_new(int deconv, int64_t in_c, int64_t out_c, int ksize, int stride, int pad,
                         const ks_conv_link_opts *o) {
  const char *name = deconv ? "Deconvolution2D" : "Convolution2D";
  ks_conv_link_opts d = {0};
  if (!o) o = &d;
  int64_t kh = ksize, kw = ksize;
  ks_conv2d_opts fo = {.sy = stride, .sx = stride, .ph = pad, .pw = pad};
  if (o->kh) {
    kh = o->kh;
    kw = o->kw ? o->kw : o->kh;
    fo.sy = o->sy ? o->sy : 1;
    fo.sx = o->sx ? o->sx : 1;
    fo.ph = o->ph;
    fo.pw = o->pw;
  }
  fo.dy = fo.dx = o->dilate ? o->dilate : 1;
  fo.groups = o->groups ? o->groups : 1;
  fo.outh = o->outh;
  fo.outw = o->outw;
  if (in_c < 0 || out_c <= 0 || kh <= 0 || kw <= 0 || fo.sy < 1 || fo.sx < 1 || fo.ph < 0 ||
      fo.pw < 0 || fo.dy < 1 || fo.groups < 1 || out_c % fo.groups || (in_c > 0 && in_c % fo.groups) ||
      o->outh < 0 || o->outw < 0) {
    ks_error_set(KS_EINVAL,
                 "%s(%lld, %lld, ksize (%lld, %lld), stride (%d, %d), pad (%d, %d), dilate %d, "
                 "groups %d): in_channels >= 0 (0: infer), out_channels > 0, ksize/stride/dilate "
                 ">= 1, pad >= 0, channels divisible by groups",
                 name, (long long)in_c, (long long)out_c, (long long)kh, (long long)kw, fo.sy,
                 fo.sx, fo.ph, fo.pw, fo.dy, fo.groups);
    return NULL;
  }
  ks_link *link = ks__link_alloc(deconv ? deconv_type : conv_type);
  if (!link) return NULL;
  conv_impl *ci = calloc(1, sizeof *ci);
  if (!ci) { free(link); ks_error_set(KS_ENOMEM, "out of memory creating %s", name); return NULL; }
  link->impl = ci;
  link->free_impl = conv_free;
  link->forward = conv_forward;
  ci->deconv = deconv;
  ci->out_c = out_c;
  ci->fo = fo;
  ci->kh = kh;
  ci->kw = kw;
  ci->initW = o->initialW ? *o->initialW : ks_init_lecun_normal(1.0);
  ci->initb = o->initial_bias ? *o->initial_bias : ks_init_zero();
  ci->seed = o->rng ? ks_rng_next(o->rng) : o->seed;

  int64_t ws[4];
  w_shape(ci, -1, ws);
  ci->W = ks_link_add_param(link, "W", 4, ws, NULL, NULL);
  if (!ci->W) goto fail;
  if (in_c > 0 && conv_init_W(link, ci, in_c) != KS_OK) goto fail;
  if (!o->nobias) {
    ks_rng rng;
    ks_rng_seed(&rng, ci->seed ^ KS_CONV_BIAS_STREAM);
    ci->b = ks_link_add_param(link, "b", 1, &out_c, &ci->initb, &rng);
    if (!ci->b) goto fail;
  }
  return link;

fail:
  ks_link_free(link);
  return NULL;
}

ks_link *ks_convolution_2d_link_new(int64_t in_channels, int64_t out_channels, int ksize,
                                    int stride, int pad, const ks_conv_link_opts *opts) {
  return conv_new(0, in_channels, out_channels, ksize, stride, pad, opts);
}

ks_link *ks_deconvolution_2d_link_new(int64_t in_channels, int64_t out_channels, int ksize,
                                      int stride, int pad, const ks_conv_link_opts *opts) {
  return conv_new(1, in_channels, out_channels, ksize, stride, pad, opts);
}

/* From W's shape, not from in_c: a lazy link whose W came from an npz file
 * or a snapshot has not seen a forward, so in_c was never set. */
int64_t ks_conv_link_in_channels(const ks_link *link) {
  conv_impl *ci = as_conv(link);
  if (!ci || !ks_link_param_is_initialized(ci->W)) return 0;
  const ks_tensor *W = ci->W->data;
  return ci->deconv ? W->shape[0] : W->shape[1] * ci->fo.groups;
}

int64_t ks_conv_link_out_channels(const ks_link *link) {
  conv_impl *ci = as_conv(link);
  return ci ? ci->out_c : 0;
}
