/*
 * src/links/sequential.c — chainer.Sequential: links and parameter-free
 * functions applied in order. Links are children named "0", "1", ... in the
 * order appended (a ChainList), so their parameters are "0/W", "1/W", ....
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/functions.h"  /* pooling and dropout shorthands */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char seq_type[] = "Sequential";

static void seq_free(ks_link *link) {
  seq_impl *s = link->impl;
  if (s) {
    for (int i = 0; i < s->n; i++) free(s->layers[i].args);
    free(s->layers);
  }
  free(s);
}

static ks_var *seq_forward(ks_ctx *ctx, ks_link *link, ks_var *x) {
  seq_impl *s = link->impl;
  for (int i = 0; i < s->n && x; i++)
    x = s->layers[i].link  ? ks_link_forward(ctx, s->layers[i].link, x)
        : s->layers[i].fnx ? s->layers[i].fnx(ctx, x, s->layers[i].args)
                           : s->layers[i].fn(ctx, x);
  return x;
}

ks_link *ks_sequential_new(void) {
  ks_link *link = ks__link_alloc(seq_type);
  if (!link) return NULL;
  seq_impl *s = calloc(1, sizeof *s);
  if (!s) { free(link); ks_error_set(KS_ENOMEM, "out of memory creating Sequential"); return NULL; }
  link->impl = s;
  link->free_impl = seq_free;
  link->forward = seq_forward;
  link->ordered_children = 1;
  return link;
}

static int seq_push(seq_impl *s, ks_link *l, ks_unary_fn fn) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 8;
    seq_layer *nl = realloc(s->layers, (size_t)cap * sizeof *nl);
    if (!nl) return ks_error_set(KS_ENOMEM, "out of memory appending to Sequential");
    s->layers = nl;
    s->cap = cap;
  }
  s->layers[s->n].link = l;
  s->layers[s->n].fn = fn;
  s->layers[s->n].fnx = NULL;
  s->layers[s->n].args = NULL;
  s->n++;
  return KS_OK;
}

int ks_sequential_append(ks_link *seq, ks_link *layer) {
  if (!seq || seq->type_name != seq_type) {
    ks_link_free(layer);
    return ks_error_set(KS_EINVAL, "ks_sequential_append: not a Sequential");
  }
  if (!layer) return ks_link_add_child(seq, "0", NULL);
  seq_impl *s = seq->impl;
  char name[32];
  snprintf(name, sizeof name, "%d", s->n_links);
  int rc = seq_push(s, layer, NULL);
  if (rc != KS_OK) { ks_link_free(layer); return rc; }
  rc = ks_link_add_child(seq, name, layer);
  if (rc != KS_OK) { s->n--; return rc; }
  s->n_links++;
  return KS_OK;
}

int ks_sequential_append_fn(ks_link *seq, ks_unary_fn fn) {
  if (!seq || seq->type_name != seq_type) return ks_error_set(KS_EINVAL, "ks_sequential_append_fn: not a Sequential");
  if (!fn) return ks_error_set(KS_EINVAL, "ks_sequential_append_fn: fn is NULL");
  return seq_push(seq->impl, NULL, fn);
}

int ks_sequential_append_fn_with(ks_link *seq, ks_unary_fn_args fn, const void *args,
                                 size_t args_size) {
  static const char *fname = "ks_sequential_append_fn_with";
  if (!seq || seq->type_name != seq_type) return ks_error_set(KS_EINVAL, "%s: not a Sequential", fname);
  if (!fn) return ks_error_set(KS_EINVAL, "%s: fn is NULL", fname);
  if (args_size && !args) return ks_error_set(KS_EINVAL, "%s: args is NULL", fname);
  void *copy = malloc(args_size ? args_size : 1);
  if (!copy) return ks_error_set(KS_ENOMEM, "out of memory appending to Sequential");
  if (args_size) memcpy(copy, args, args_size);
  seq_impl *s = seq->impl;
  int rc = seq_push(s, NULL, NULL);
  if (rc != KS_OK) { free(copy); return rc; }
  s->layers[s->n - 1].fnx = fn;
  s->layers[s->n - 1].args = copy;
  return KS_OK;
}

static ks_var *seq_max_pool(ks_ctx *ctx, ks_var *x, const void *args) {
  return ks_max_pooling_2d_ex(ctx, x, args);
}
static ks_var *seq_avg_pool(ks_ctx *ctx, ks_var *x, const void *args) {
  return ks_average_pooling_2d_ex(ctx, x, args);
}
static ks_var *seq_dropout(ks_ctx *ctx, ks_var *x, const void *args) {
  return ks_dropout(ctx, x, *(const double *)args);
}

int ks_sequential_append_max_pooling_2d(ks_link *seq, int ksize, int stride, int pad,
                                        int cover_all) {
  ks_pool2d_opts o = {ksize, ksize, stride, stride, pad, pad, cover_all};
  return ks_sequential_append_fn_with(seq, seq_max_pool, &o, sizeof o);
}

int ks_sequential_append_average_pooling_2d(ks_link *seq, int ksize, int stride, int pad) {
  ks_pool2d_opts o = {ksize, ksize, stride, stride, pad, pad, 0};
  return ks_sequential_append_fn_with(seq, seq_avg_pool, &o, sizeof o);
}

int ks_sequential_append_dropout(ks_link *seq, double ratio) {
  return ks_sequential_append_fn_with(seq, seq_dropout, &ratio, sizeof ratio);
}
