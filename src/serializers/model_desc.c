/*
 * src/serializers/model_desc.c — writes the network description of
 * kusari/model_io.h ("kusari-sequential/1" JSON) for a Sequential or for a
 * Chain with an explicit order of steps. JSON is written by hand: libkusari
 * has no JSON dependency (the platform reads it with cJSON).
 *
 * What a layer is (stride, pad, eps, which function a Sequential step runs)
 * is private state of src/links, declared in src/links/link_impl.h; the
 * checks below against public facts (parameter and persistent pointers,
 * channel counts) remain as cheap invariants.
 */
#include "core/textbuf.h" /* ks__textbuf: the JSON text */
#include "../links/link_impl.h"
#include "kusari/model_io.h"
#include "kusari/error.h"
#include "kusari/functions.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* ---- layers ------------------------------------------------------------------- */
static int describe_link(ks__textbuf *b, const char *name, ks_link *l) {
  const char *type = ks_link_type_name(l);
  if (!strcmp(type, "Linear")) {
    ks_var *W = ks_link_param(l, "W");
    if (!W || !ks_link_param_is_initialized(W) || ks_linear_link_in_size(l) <= 0)
      return ks_error_set(KS_ESTATE, "model description: Linear '%s' is not initialized yet (save after a forward)", name);
    ks__tb_printf(b, "{\"type\": \"linear\", \"name\": ");
    ks__tb_json_string(b, name);
    ks__tb_printf(b, ", \"in\": %lld, \"out\": %lld, \"nobias\": %s}", (long long)ks_linear_link_in_size(l),
         (long long)ks_linear_link_out_size(l), ks_link_param(l, "b") ? "false" : "true");
    return KS_OK;
  }
  if (!strcmp(type, "Convolution2D") || !strcmp(type, "Deconvolution2D")) {
    const conv_impl *ci = l->impl;
    ks_var *W = ks_link_param(l, "W");
    int deconv = type[0] == 'D';
    if (!ci || ci->W != W || ci->out_c != ks_conv_link_out_channels(l) || ci->deconv != deconv || ci->fo.groups < 1)
      return ks_error_set(KS_EUNSUPPORTED, "model description: cannot read the settings of %s '%s' (libkusari's layout changed)", type, name);
    if (!ks_link_param_is_initialized(W) || W->data->ndim != 4)
      return ks_error_set(KS_ESTATE, "model description: %s '%s' is not initialized yet (save after a forward)", type, name);
    /* in_channels from W's shape, not from the link: a lazy W that took its
     * shape from a loaded npz or snapshot (no forward since) is initialized
     * while the link's in_channels is still 0 */
    const int64_t in_c = deconv ? W->data->shape[0] : W->data->shape[1] * ci->fo.groups;
    const ks_conv2d_opts *o = &ci->fo;
    ks__tb_printf(b, "{\"type\": \"%s\", \"name\": ", deconv ? "deconvolution_2d" : "convolution_2d");
    ks__tb_json_string(b, name);
    ks__tb_printf(b, ", \"in\": %lld, \"out\": %lld, \"ksize\": [%lld, %lld], \"stride\": [%d, %d], \"pad\": [%d, %d], "
            "\"dilate\": %d, \"groups\": %d, \"nobias\": %s",
         (long long)in_c, (long long)ci->out_c, (long long)ci->kh, (long long)ci->kw,
         o->sy ? o->sy : 1, o->sx ? o->sx : 1, o->ph, o->pw, o->dy ? o->dy : 1, o->groups,
         ks_link_param(l, "b") ? "false" : "true");
    if (deconv) ks__tb_printf(b, ", \"outsize\": [%d, %d]", o->outh, o->outw);
    ks__tb_printf(b, "}");
    return KS_OK;
  }
  if (!strcmp(type, "BatchNormalization")) {
    const bn_impl *bi = l->impl;
    if (!bi || bi->gamma != ks_link_param(l, "gamma") || bi->avg_mean != ks_link_persistent(l, "avg_mean"))
      return ks_error_set(KS_EUNSUPPORTED, "model description: cannot read the settings of BatchNormalization '%s' (libkusari's layout changed)", name);
    ks__tb_printf(b, "{\"type\": \"batch_normalization\", \"name\": ");
    ks__tb_json_string(b, name);
    ks__tb_printf(b, ", \"size\": %lld, \"eps\": %.17g, \"decay\": %.17g}", (long long)bi->avg_mean->size, bi->eps, bi->decay);
    return KS_OK;
  }
  return ks_error_set(KS_EUNSUPPORTED, "model description: layer '%s' is a %s link; the description knows Linear, "
                      "Convolution2D, Deconvolution2D and BatchNormalization", name, type);
}

static void describe_pool(ks__textbuf *b, const char *type, const ks_pool2d_opts *o, int with_cover) {
  ks__tb_printf(b, "{\"type\": \"%s\", \"ksize\": [%d, %d], \"stride\": [%d, %d], \"pad\": [%d, %d]", type, o->kh, o->kw,
       o->sy ? o->sy : o->kh, o->sx ? o->sx : o->kw, o->ph, o->pw);
  if (with_cover) ks__tb_printf(b, ", \"cover_all\": %s", o->cover_all ? "true" : "false");
  ks__tb_printf(b, "}");
}

static const char *unary_name(ks_unary_fn fn) {
  if (fn == ks_relu) return "relu";
  if (fn == ks_tanh) return "tanh";
  if (fn == ks_sigmoid) return "sigmoid";
  if (fn == ks_log_softmax) return "log_softmax";
  return NULL;
}

/* "a/b/c": non-empty segments (what a link path in an npz looks like) */
static int root_ok(const char *root) {
  if (!root[0] || root[0] == '/') return 0;
  for (const char *p = root; *p; p++)
    if (*p == '/' && (p[1] == '/' || p[1] == '\0')) return 0;
  return 1;
}

/* 'root' ("" for none), the input range and preprocessing are written only
 * when set, so the description of a network saved on its own stays byte for
 * byte what it was before them. */
static int begin(ks__textbuf *b, const char *root, const ks_model_desc_opts *o, int input_ndim,
                 const int64_t *input_shape) {
  if (input_ndim < 1 || input_ndim > 3 || !input_shape)
    return ks_error_set(KS_EINVAL, "model description: the input shape must have 1 to 3 dims (one sample), got %d", input_ndim);
  ks__tb_printf(b, "{\"format\": \"kusari-sequential/1\",\n");
  if (root[0]) {
    ks__tb_printf(b, " \"root\": ");
    ks__tb_json_string(b, root);
    ks__tb_printf(b, ",\n");
  }
  ks__tb_printf(b, " \"input\": [");
  for (int i = 0; i < input_ndim; i++) {
    if (input_shape[i] < 1) return ks_error_set(KS_EINVAL, "model description: input dim %d is %lld", i, (long long)input_shape[i]);
    ks__tb_printf(b, "%s%lld", i ? ", " : "", (long long)input_shape[i]);
  }
  ks__tb_printf(b, "],\n");
  if (o->input_range) {
    const double lo = o->input_range[0], hi = o->input_range[1];
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
      return ks_error_set(KS_EINVAL, "model description: the input range [%g, %g] must be finite with lo <= hi", lo, hi);
    ks__tb_printf(b, " \"input_range\": [%.17g, %.17g],\n", lo, hi);
  }
  if (o->input_preprocessing) {
    ks__tb_printf(b, " \"input_preprocessing\": ");
    ks__tb_json_string(b, o->input_preprocessing);
    ks__tb_printf(b, ",\n");
  }
  ks__tb_printf(b, " \"layers\": [");
  return KS_OK;
}

static int finish(ks__textbuf *b, const char *path) {
  ks__tb_printf(b, "]}\n");
  if (b->oom) return ks_error_set(KS_ENOMEM, "model description: out of memory");
  size_t pl = strlen(path);
  char *tmp = malloc(pl + 32);
  if (!tmp) return ks_error_set(KS_ENOMEM, "model description: out of memory");
  snprintf(tmp, pl + 32, "%s.tmp%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) {
    int e = errno;
    free(tmp);
    return ks_error_set(KS_EIO, "model description: cannot write %s: %s", path, strerror(e));
  }
  int ok = fwrite(b->s, 1, b->n, f) == b->n;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    free(tmp);
    return ks_error_set(KS_EIO, "model description: cannot write %s: %s", path, strerror(e));
  }
  free(tmp);
  return KS_OK;
}

/* The function pointers a Sequential stores for its pooling / dropout
 * shorthands (static in sequential.c): read back from a probe. */
static int probe_fnx(ks_unary_fn_args *maxp, ks_unary_fn_args *avgp, ks_unary_fn_args *drop) {
  ks_link *s = ks_sequential_new();
  if (!s) return ks_error_last_code();
  int rc = ks_sequential_append_max_pooling_2d(s, 2, 2, 0, 1);
  if (rc == KS_OK) rc = ks_sequential_append_average_pooling_2d(s, 2, 2, 0);
  if (rc == KS_OK) rc = ks_sequential_append_dropout(s, 0.5);
  const seq_impl *si = s->impl;
  if (rc == KS_OK && (!si || si->n != 3 || si->n_links != 0 || si->layers[0].link || si->layers[0].fn))
    rc = ks_error_set(KS_EUNSUPPORTED, "model description: cannot read a Sequential's layers (libkusari's layout changed)");
  if (rc == KS_OK) {
    *maxp = si->layers[0].fnx;
    *avgp = si->layers[1].fnx;
    *drop = si->layers[2].fnx;
  }
  ks_link_free(s);
  return rc;
}

static int save_sequential(const char *path, ks_link *model, const char *root, const ks_model_desc_opts *o,
                           int input_ndim, const int64_t *input_shape) {
  if (strcmp(ks_link_type_name(model), "Sequential") != 0)
    return ks_error_set(KS_EUNSUPPORTED, "ks_model_desc_save: the model is a %s, not a Sequential; for a Chain with its "
                        "own forward use ks_model_desc_save_chain with the order of its steps", ks_link_type_name(model));
  ks_unary_fn_args maxp = NULL, avgp = NULL, drop = NULL;
  int rc = probe_fnx(&maxp, &avgp, &drop);
  if (rc != KS_OK) return rc;
  const seq_impl *si = model->impl;
  if (!si || si->n_links != ks_link_num_children(model) || si->n < si->n_links)
    return ks_error_set(KS_EUNSUPPORTED, "model description: cannot read a Sequential's layers (libkusari's layout changed)");
  ks__textbuf b = {0};
  rc = begin(&b, root, o, input_ndim, input_shape);
  int k = 0;
  for (int i = 0; rc == KS_OK && i < si->n; i++) {
    const seq_layer *L = &si->layers[i];
    ks__tb_printf(&b, "%s\n  ", i ? "," : "");
    if (L->link) {
      const char *name = NULL;
      if (ks_link_child_at(model, k, &name) != L->link || !name) {
        rc = ks_error_set(KS_EUNSUPPORTED, "model description: cannot read a Sequential's layers (libkusari's layout changed)");
        break;
      }
      k++;
      rc = describe_link(&b, name, L->link);
    } else if (L->fn) {
      const char *fname = unary_name(L->fn);
      if (!fname) rc = ks_error_set(KS_EUNSUPPORTED, "model description: layer %d of the Sequential is a function of the user's; the description knows relu, tanh, sigmoid, log_softmax, pooling and dropout", i);
      else ks__tb_printf(&b, "{\"type\": \"%s\"}", fname);
    } else if (L->fnx == maxp && L->args) {
      describe_pool(&b, "max_pooling_2d", L->args, 1);
    } else if (L->fnx == avgp && L->args) {
      describe_pool(&b, "average_pooling_2d", L->args, 0);
    } else if (L->fnx == drop && L->args) {
      ks__tb_printf(&b, "{\"type\": \"dropout\", \"ratio\": %.17g}", *(const double *)L->args);
    } else {
      rc = ks_error_set(KS_EUNSUPPORTED, "model description: layer %d of the Sequential is a function of the user's; the description knows relu, tanh, sigmoid, log_softmax, pooling and dropout", i);
    }
  }
  if (rc == KS_OK) rc = finish(&b, path);
  free(b.s);
  return rc;
}

/* "name:a:b:c" -> up to 4 ints after the name; returns how many (-1: bad). */
static int parse_step_args(const char *spec, size_t nlen, int *v, int maxv) {
  const char *p = spec + nlen;
  int n = 0;
  while (*p == ':') {
    if (n == maxv) return -1;
    char *end;
    errno = 0;
    long x = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || x < 0 || x > 1 << 20) return -1;
    v[n++] = (int)x;
    p = end;
  }
  return *p ? -1 : n;
}

static int save_chain(const char *path, ks_link *chain, const char *const *order, const char *root,
                      const ks_model_desc_opts *dopts, int input_ndim, const int64_t *input_shape) {
  if (!order[0]) return ks_error_set(KS_EINVAL, "ks_model_desc_save_chain: the order of steps is empty");
  ks__textbuf b = {0};
  int rc = begin(&b, root, dopts, input_ndim, input_shape);
  for (int i = 0; rc == KS_OK && order[i]; i++) {
    const char *s = order[i];
    ks__tb_printf(&b, "%s\n  ", i ? "," : "");
    ks_link *child = strchr(s, ':') ? NULL : ks_link_child(chain, s);
    int v[4];
    if (child) {
      rc = describe_link(&b, s, child);
    } else if (!strcmp(s, "relu") || !strcmp(s, "tanh") || !strcmp(s, "sigmoid") || !strcmp(s, "log_softmax")) {
      ks__tb_printf(&b, "{\"type\": \"%s\"}", s);
    } else if (!strncmp(s, "dropout", 7) && (s[7] == '\0' || s[7] == ':')) {
      ks__tb_printf(&b, "{\"type\": \"dropout\", \"ratio\": %s}", s[7] ? s + 8 : "0.5");
      if (s[7]) {
        char *end;
        double r = strtod(s + 8, &end);
        if (end == s + 8 || *end || !(r >= 0 && r < 1)) rc = ks_error_set(KS_EINVAL, "model description: bad step '%s' (dropout:RATIO)", s);
      }
    } else if (!strncmp(s, "max_pooling_2d", 14) || !strncmp(s, "average_pooling_2d", 18)) {
      int is_max = s[0] == 'm';
      size_t nl = is_max ? 14 : 18;
      int n = parse_step_args(s, nl, v, is_max ? 4 : 3);
      if (n < 1 || v[0] < 1) {
        rc = ks_error_set(KS_EINVAL, "model description: bad step '%s' (%s:K[:S[:P%s]])", s, is_max ? "max_pooling_2d" : "average_pooling_2d", is_max ? "[:COVER_ALL]" : "");
        break;
      }
      ks_pool2d_opts o = {v[0], v[0], n > 1 ? v[1] : v[0], n > 1 ? v[1] : v[0], n > 2 ? v[2] : 0, n > 2 ? v[2] : 0,
                          n > 3 ? !!v[3] : 1};
      describe_pool(&b, is_max ? "max_pooling_2d" : "average_pooling_2d", &o, is_max);
    } else {
      rc = ks_error_set(KS_EINVAL, "model description: step '%s' is neither a child link of the chain nor a known "
                        "function (relu, tanh, sigmoid, log_softmax, dropout, max_pooling_2d:K, average_pooling_2d:K)", s);
    }
  }
  if (rc == KS_OK) rc = finish(&b, path);
  free(b.s);
  return rc;
}

/* ---- entry points --------------------------------------------------------------- */

/* A Classifier (ks_classifier_new) saves its predictor's parameters under
 * "predictor/" (the layout of chainer.links.Classifier, which
 * examples/mnist/train_mnist_cnn keeps in model.npz): what runs at scoring
 * time is the predictor, so it is what gets described, and "predictor" is
 * appended to the root. The loss and accuracy of the Classifier are
 * training-only. Returns the network to describe and sets *root_out (a new
 * string) to the root of its parameters in the npz; NULL on failure. */
static ks_link *unwrap(ks_link *net, const char *root, char **root_out) {
  size_t rl = root ? strlen(root) : 0;
  /* one trailing '/' is allowed: the root written as an npz prefix
   * ("predictor/", as ks_npz_read_link takes it) means the same root */
  if (rl > 1 && root[rl - 1] == '/') rl--;
  char *r = malloc(rl + 1);
  if (!r) { ks_error_set(KS_ENOMEM, "model description: out of memory"); return NULL; }
  memcpy(r, root ? root : "", rl);
  r[rl] = '\0';
  if (rl && !root_ok(r)) {
    ks_error_set(KS_EINVAL, "model description: root '%s' must be an npz key prefix like \"predictor\" or \"a/b\"", root);
    free(r);
    return NULL;
  }
  while (!strcmp(ks_link_type_name(net), "Classifier") && ks_link_num_children(net) == 1 &&
         ks_link_child(net, "predictor")) {
    net = ks_link_child(net, "predictor");
    size_t n = strlen(r);
    char *nr = realloc(r, n + sizeof "/predictor");
    if (!nr) {
      free(r);
      ks_error_set(KS_ENOMEM, "model description: out of memory");
      return NULL;
    }
    r = nr;
    memcpy(r + n, n ? "/predictor" : "predictor", n ? sizeof "/predictor" : sizeof "predictor");
  }
  *root_out = r;
  return net;
}

int ks_model_desc_save_ex(const char *path, ks_link *net, const ks_model_desc_opts *opts, int input_ndim,
                          const int64_t *input_shape) {
  if (!path || !net) return ks_error_set(KS_EINVAL, "ks_model_desc_save: path and model are required");
  const ks_model_desc_opts none = {0};
  if (!opts) opts = &none;
  char *root = NULL;
  ks_link *inner = unwrap(net, opts->root, &root);
  if (!inner) return ks_error_last_code();
  int rc = opts->order ? save_chain(path, inner, opts->order, root, opts, input_ndim, input_shape)
                       : save_sequential(path, inner, root, opts, input_ndim, input_shape);
  free(root);
  return rc;
}

int ks_model_desc_save(const char *path, ks_link *model, int input_ndim, const int64_t *input_shape) {
  return ks_model_desc_save_ex(path, model, NULL, input_ndim, input_shape);
}

int ks_model_desc_save_chain(const char *path, ks_link *chain, const char *const *order, int input_ndim,
                             const int64_t *input_shape) {
  if (!path || !chain || !order || !order[0])
    return ks_error_set(KS_EINVAL, "ks_model_desc_save_chain: path, chain and a non-empty order are required");
  return ks_model_desc_save_ex(path, chain, &(ks_model_desc_opts){.order = order}, input_ndim, input_shape);
}
