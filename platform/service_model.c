/*
 * platform/service_model.c — the built-in scorer: reads a network
 * description ("kusari-sequential/1", see include/kusari/model_io.h) with
 * cJSON, rebuilds the network from public libkusari calls as a Chain whose
 * children keep the description's names (so the npz keys match: "l1/W" or
 * "0/W", under the description's "root" when it has one: "predictor/l1/W"),
 * loads the weights (strict, like ks_load_npz) and runs it in test mode.
 */
#include "service.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum step_kind { ST_LINK, ST_RELU, ST_TANH, ST_SIGMOID, ST_LOG_SOFTMAX, ST_MAXPOOL, ST_AVGPOOL, ST_IDENTITY } step_kind;

typedef struct step {
  step_kind kind;
  ks_link *link;        /* ST_LINK (a child of the chain) */
  int linear;           /* the link is a Linear */
  float *wt;            /* a Linear's W transposed (in x out), for sparse samples; NULL if too large */
  ks_pool2d_opts pool;
} step;

struct kp_scorer {
  ks_link *chain;
  step *steps;
  int nsteps;
  int in_ndim;
  int64_t in_shape[3];
  int64_t width, classes;
  char desc_path[4096];
  char root[1024];      /* "predictor/" when the description has "root": "predictor"; else "" */
  int has_range;        /* "input_range": [lo, hi] */
  double lo, hi;
  char prep[256];       /* "input_preprocessing" ("" without) */
};

/* Up to this many samples, a Linear runs as one sgemv per sample instead of
 * the library's GEMM, which packs all of W on every call (for one sample
 * that copy costs more than the product itself). Same math (x W^T + b in
 * float32), another summation order: results may differ from a batched
 * evaluation in the last bits. */
#define GEMV_MAX_ROWS 4

/* W^T copies up to this many floats per Linear (16 MiB) */
#define WT_MAX_FLOATS (4 << 20)

/* y (out) = b + sum over the nonzero x[j] of x[j] * W^T row j: for a sample
 * with at most half its inputs nonzero (an image's background, a ReLU's
 * output) this reads only those rows of W, where sgemv reads all of W. The
 * same products, summed in input order. */
static void linear_sparse_row(const float *restrict wt, const float *restrict x, const float *restrict bias,
                              float *restrict y, int64_t in, int64_t out) {
  if (bias) memcpy(y, bias, (size_t)out * sizeof *y);
  else memset(y, 0, (size_t)out * sizeof *y);
  for (int64_t j = 0; j < in; j++) {
    const float xj = x[j];
    if (xj == 0.0f) continue;
    const float *restrict w = wt + j * out;
    for (int64_t q = 0; q < out; q++) y[q] += xj * w[q];
  }
}

static ks_var *linear_small(ks_ctx *ctx, const step *st, ks_var *x) {
  ks_link *l = st->link;
  ks_var *W = ks_link_param(l, "W"), *b = ks_link_param(l, "b");
  const int64_t out = W->data->shape[0], in = W->data->shape[1], n = x->data->shape[0];
  if (x->data->dtype != KS_F32 || x->data->size != n * in) return ks_link_forward(ctx, l, x);
  ks_tensor *yt = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){n, out});
  if (!yt) return NULL;
  const float *xv = ks_tensor_f32(x->data), *wv = ks_tensor_f32(W->data);
  float *yv = ks_tensor_f32(yt);
  for (int64_t i = 0; i < n; i++) {
    if (st->wt) {
      int64_t nz = 0;
      for (int64_t j = 0; j < in; j++) nz += xv[i * in + j] != 0.0f;
      if (2 * nz <= in) {
        linear_sparse_row(st->wt, xv + i * in, b ? ks_tensor_f32(b->data) : NULL, yv + i * out, in, out);
        continue;
      }
    }
    if (b) memcpy(yv + i * out, ks_tensor_f32(b->data), (size_t)out * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)out, (blasint)in, 1.0f, wv, (blasint)in, xv + i * in, 1,
                b ? 1.0f : 0.0f, yv + i * out, 1);
  }
  return ks_var_new(ctx, yt, 0);
}

static ks_var *chain_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  const kp_scorer *s = ks_link_user(self);
  for (int i = 0; i < s->nsteps && x; i++) {
    const step *st = &s->steps[i];
    switch (st->kind) {
      case ST_LINK:
        x = st->linear && x->data->shape[0] <= GEMV_MAX_ROWS ? linear_small(ctx, st, x)
                                                             : ks_link_forward(ctx, st->link, x);
        break;
      case ST_RELU: x = ks_relu(ctx, x); break;
      case ST_TANH: x = ks_tanh(ctx, x); break;
      case ST_SIGMOID: x = ks_sigmoid(ctx, x); break;
      case ST_LOG_SOFTMAX: x = ks_log_softmax(ctx, x); break;
      case ST_MAXPOOL: x = ks_max_pooling_2d_ex(ctx, x, &st->pool); break;
      case ST_AVGPOOL: x = ks_average_pooling_2d_ex(ctx, x, &st->pool); break;
      case ST_IDENTITY: break;
    }
  }
  return x;
}

/* finds 'name' under dir (depth-first, sorted is not needed: first match) */
static int find_file(const char *dir, const char *name, char *out, size_t n, int depth) {
  if (depth > 8) return -1;
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  int found = -1;
  char sub[4096];
  while (found && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(sub, &st) != 0) continue;
    if (S_ISREG(st.st_mode) && !strcmp(e->d_name, name)) { snprintf(out, n, "%s", sub); found = 0; }
  }
  if (found) {
    rewinddir(d);
    while (found && (e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
      struct stat st;
      if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) found = find_file(sub, name, out, n, depth + 1);
    }
  }
  closedir(d);
  return found;
}

/* the .npz beside the description: model.npz, else the only .npz there */
static int find_npz(const char *dir, char *out, size_t n) {
  snprintf(out, n, "%s/model.npz", dir);
  struct stat st;
  if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) return 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    if (l > 4 && !strcmp(e->d_name + l - 4, ".npz")) {
      if (count++ == 0) snprintf(out, n, "%s/%s", dir, e->d_name);
    }
  }
  closedir(d);
  return count == 1 ? 0 : -1;
}

static int jint(const cJSON *o, const char *k, long long lo, long long hi, long long dflt, long long *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v) { *out = dflt; return dflt < lo ? -1 : 0; }
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
      v->valuedouble > (double)hi)
    return -1;
  *out = (long long)v->valuedouble;
  return 0;
}

/* [a, b] or a single number */
static int jpair(const cJSON *o, const char *k, int lo, int dflt, int *a, int *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v) { *a = *b = dflt; return dflt < lo ? -1 : 0; }
  double x, y;
  if (cJSON_IsNumber(v)) x = y = v->valuedouble;
  else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 2 && cJSON_IsNumber(cJSON_GetArrayItem(v, 0)) &&
           cJSON_IsNumber(cJSON_GetArrayItem(v, 1))) {
    x = cJSON_GetArrayItem(v, 0)->valuedouble;
    y = cJSON_GetArrayItem(v, 1)->valuedouble;
  } else return -1;
  if (x != floor(x) || y != floor(y) || x < lo || y < lo || x > 65536 || y > 65536) return -1;
  *a = (int)x;
  *b = (int)y;
  return 0;
}

static int jbool(const cJSON *o, const char *k, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v) return dflt;
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
  return -1;
}

/* A parameterised layer's "name" is its npz key prefix. */
static int layer_name_ok(kp_scorer *s, const cJSON *nm, int i, const char *type, char *err, size_t errn) {
  if (cJSON_IsString(nm) && nm->valuestring[0] && !strchr(nm->valuestring, '/')) return 1;
  snprintf(err, errn, "%s: layer %d (%s) needs a \"name\" (its npz key prefix)", s->desc_path, i, type);
  return 0;
}

/* The layer's main array in the npz must have the shape the description
 * declares, checked before the link allocates it: a description is not
 * trusted to size allocations (Linear(30000, 30000) would take 3.6 GB before
 * the npz could refuse it). */
static int declared_shape_ok(kp_scorer *s, ks_npz_reader *rd, const char *name, const char *key, int ndim,
                             const int64_t *dims, char *err, size_t errn) {
  char k[2048];
  ks_npz_info in;
  if (snprintf(k, sizeof k, "%s%s/%s", s->root, name, key) >= (int)sizeof k) {
    snprintf(err, errn, "%s: layer name '%.64s...' is too long", s->desc_path, name);
    return 0;
  }
  if (ks_npz_reader_info(rd, k, &in) != KS_OK) {
    snprintf(err, errn, "%s: layer '%s' has no '%s' array in the npz (%s)", s->desc_path, name, k, ks_error_last());
    return 0;
  }
  int same = in.ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = in.shape[d] == dims[d];
  if (!same) {
    char want[160] = "", got[160] = "";
    for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)dims[d]);
    for (int d = 0; d < in.ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)in.shape[d]);
    snprintf(err, errn, "%s: layer '%s' declares %s of shape (%s) but the npz's is (%s)", s->desc_path, name, k, want, got);
    return 0;
  }
  return 1;
}

static int build(kp_scorer *s, const cJSON *j, ks_npz_reader *rd, char *err, size_t errn) {
  const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
  if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "kusari-sequential/1") != 0) {
    snprintf(err, errn, "%s: \"format\" must be \"kusari-sequential/1\"", s->desc_path);
    return -1;
  }
  /* "root": where the network's keys are in the npz (a Classifier's
   * "predictor"); absent in descriptions of a network saved on its own */
  const cJSON *root = cJSON_GetObjectItemCaseSensitive(j, "root");
  if (root) {
    const char *r = cJSON_IsString(root) ? root->valuestring : "";
    size_t rl = strlen(r);
    if (!rl || rl + 2 > sizeof s->root || r[0] == '/' || r[rl - 1] == '/' || strstr(r, "//")) {
      snprintf(err, errn, "%s: \"root\" must be an npz key prefix like \"predictor\"", s->desc_path);
      return -1;
    }
    snprintf(s->root, sizeof s->root, "%s/", r);
  }
  const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
  int nd = cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 0;
  if (nd < 1 || nd > 3) {
    snprintf(err, errn, "%s: \"input\" must be the shape of one sample (1 to 3 dims)", s->desc_path);
    return -1;
  }
  s->in_ndim = nd;
  s->width = 1;
  for (int i = 0; i < nd; i++) {
    const cJSON *v = cJSON_GetArrayItem(in, i);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1e7 || v->valuedouble != floor(v->valuedouble)) {
      snprintf(err, errn, "%s: \"input\" dims must be positive integers", s->desc_path);
      return -1;
    }
    s->in_shape[i] = (int64_t)v->valuedouble;
    /* checked before each product: three dims of 2^23 would wrap int64 */
    if (s->in_shape[i] > KP_SCORER_MAX_WIDTH / s->width) {
      snprintf(err, errn, "%s: the input is too large (over %lld values per sample)", s->desc_path,
               (long long)KP_SCORER_MAX_WIDTH);
      return -1;
    }
    s->width *= s->in_shape[i];
  }
  /* optional: the range of the input values, how raw data became them */
  const cJSON *rg = cJSON_GetObjectItemCaseSensitive(j, "input_range");
  if (rg) {
    const cJSON *lo = cJSON_GetArrayItem(rg, 0), *hi = cJSON_GetArrayItem(rg, 1);
    if (!cJSON_IsArray(rg) || cJSON_GetArraySize(rg) != 2 || !cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) ||
        !isfinite(lo->valuedouble) || !isfinite(hi->valuedouble) || lo->valuedouble > hi->valuedouble) {
      snprintf(err, errn, "%s: \"input_range\" must be [lo, hi], two finite numbers with lo <= hi", s->desc_path);
      return -1;
    }
    s->has_range = 1;
    s->lo = lo->valuedouble;
    s->hi = hi->valuedouble;
  }
  const cJSON *pp = cJSON_GetObjectItemCaseSensitive(j, "input_preprocessing");
  if (pp) {
    if (!cJSON_IsString(pp)) {
      snprintf(err, errn, "%s: \"input_preprocessing\" must be a string", s->desc_path);
      return -1;
    }
    snprintf(s->prep, sizeof s->prep, "%s", pp->valuestring);
  }
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
  int nl = cJSON_IsArray(layers) ? cJSON_GetArraySize(layers) : 0;
  if (nl < 1 || nl > 10000) { snprintf(err, errn, "%s: \"layers\" must be a non-empty list", s->desc_path); return -1; }
  s->steps = calloc((size_t)nl, sizeof *s->steps);
  s->chain = ks_chain_new();
  if (!s->steps || !s->chain) { snprintf(err, errn, "out of memory"); return -1; }
  const cJSON *L;
  int i = 0;
  cJSON_ArrayForEach(L, layers) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(L, "type");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(L, "name");
    const char *type = cJSON_IsString(t) ? t->valuestring : "";
    step *st = &s->steps[i];
    int bad = 0;
    long long a = 0, b = 0, g = 0, dil = 0;
    int nobias = jbool(L, "nobias", 0);
    ks_link *link = NULL;
    if (!strcmp(type, "linear")) {
      bad = jint(L, "in", 1, 1LL << 40, 0, &a) || jint(L, "out", 1, 1LL << 40, 0, &b) || nobias < 0;
      if (!bad && !layer_name_ok(s, nm, i, type, err, errn)) return -1;
      if (!bad && !declared_shape_ok(s, rd, nm->valuestring, "W", 2, (int64_t[]){b, a}, err, errn)) return -1;
      if (!bad) link = ks_linear_link_new(a, b, &(ks_linear_opts){.nobias = nobias});
    } else if (!strcmp(type, "convolution_2d") || !strcmp(type, "deconvolution_2d")) {
      ks_conv_link_opts co = {0};
      co.nobias = nobias;
      bad = jint(L, "in", 1, 1LL << 30, 0, &a) || jint(L, "out", 1, 1LL << 30, 0, &b) ||
            jpair(L, "ksize", 1, 0, &co.kh, &co.kw) || jpair(L, "stride", 1, 1, &co.sy, &co.sx) ||
            jpair(L, "pad", 0, 0, &co.ph, &co.pw) || jint(L, "dilate", 1, 65536, 1, &dil) ||
            jint(L, "groups", 1, 65536, 1, &g) || nobias < 0;
      if (type[0] == 'd' && !bad) bad = jpair(L, "outsize", 0, 0, &co.outh, &co.outw);
      co.dilate = (int)dil;
      co.groups = (int)g;
      if (!bad && !layer_name_ok(s, nm, i, type, err, errn)) return -1;
      /* Chainer's W: (out, in/groups, kh, kw); a deconvolution's (in, out/groups, kh, kw) */
      if (!bad && (type[0] == 'd' ? b : a) % g != 0) bad = 1;
      if (!bad && !declared_shape_ok(s, rd, nm->valuestring, "W", 4,
                                     type[0] == 'd' ? (int64_t[]){a, b / g, co.kh, co.kw} : (int64_t[]){b, a / g, co.kh, co.kw},
                                     err, errn)) return -1;
      if (!bad) link = type[0] == 'd' ? ks_deconvolution_2d_link_new(a, b, 0, 0, 0, &co)
                                      : ks_convolution_2d_link_new(a, b, 0, 0, 0, &co);
    } else if (!strcmp(type, "batch_normalization")) {
      ks_bn_link_opts bo = KS_BN_LINK_DEFAULTS;
      const cJSON *eps = cJSON_GetObjectItemCaseSensitive(L, "eps");
      const cJSON *dec = cJSON_GetObjectItemCaseSensitive(L, "decay");
      if (cJSON_IsNumber(eps)) bo.eps = eps->valuedouble;
      if (cJSON_IsNumber(dec)) bo.decay = dec->valuedouble;
      bad = jint(L, "size", 1, 1LL << 30, 0, &a) || !(bo.eps > 0);
      if (!bad && !layer_name_ok(s, nm, i, type, err, errn)) return -1;
      if (!bad && !declared_shape_ok(s, rd, nm->valuestring, "avg_mean", 1, (int64_t[]){a}, err, errn)) return -1;
      if (!bad) link = ks_batch_normalization_link_new(a, &bo);
    } else if (!strcmp(type, "relu")) st->kind = ST_RELU;
    else if (!strcmp(type, "tanh")) st->kind = ST_TANH;
    else if (!strcmp(type, "sigmoid")) st->kind = ST_SIGMOID;
    else if (!strcmp(type, "log_softmax")) st->kind = ST_LOG_SOFTMAX;
    else if (!strcmp(type, "dropout")) st->kind = ST_IDENTITY;
    else if (!strcmp(type, "max_pooling_2d") || !strcmp(type, "average_pooling_2d")) {
      st->kind = type[0] == 'm' ? ST_MAXPOOL : ST_AVGPOOL;
      int cover = jbool(L, "cover_all", 1);
      bad = jpair(L, "ksize", 1, 0, &st->pool.kh, &st->pool.kw) ||
            jpair(L, "stride", 1, st->pool.kh, &st->pool.sy, &st->pool.sx) ||
            jpair(L, "pad", 0, 0, &st->pool.ph, &st->pool.pw) || cover < 0;
      st->pool.cover_all = st->kind == ST_MAXPOOL ? cover : 0;
    } else {
      snprintf(err, errn, "%s: layer %d: unknown type '%s'", s->desc_path, i, type);
      return -1;
    }
    if (bad) {
      snprintf(err, errn, "%s: layer %d (%s): missing or invalid fields", s->desc_path, i, type);
      return -1;
    }
    if (!strcmp(type, "linear") || strstr(type, "convolution_2d") || !strcmp(type, "batch_normalization")) {
      if (!link) { snprintf(err, errn, "%s: layer %d (%s): %s", s->desc_path, i, type, ks_error_last()); return -1; }
      /* its name was checked before the link was made (layer_name_ok) */
      if (ks_link_add_child(s->chain, nm->valuestring, link) != KS_OK) {
        snprintf(err, errn, "%s: layer %d: %s", s->desc_path, i, ks_error_last());
        return -1;
      }
      st->kind = ST_LINK;
      st->link = ks_link_child(s->chain, nm->valuestring);
      st->linear = !strcmp(type, "linear");
    }
    i++;
  }
  s->nsteps = nl;
  ks_link_set_forward(s->chain, chain_forward, s);
  return 0;
}

typedef struct nonfinite { char path[512]; int64_t at; float v; } nonfinite;

static int tensor_finite(const char *path, const ks_tensor *t, nonfinite *nf) {
  if (!t || t->dtype != KS_F32) return 0;
  const float *v = ks_tensor_f32(t);
  for (int64_t i = 0; i < t->size; i++)
    if (!isfinite(v[i])) {
      snprintf(nf->path, sizeof nf->path, "%s", path);
      nf->at = i;
      nf->v = v[i];
      return 1;
    }
  return 0;
}

static int param_finite(const char *path, ks_var *param, void *user) {
  return tensor_finite(path, param->data, user);
}

static int persistent_finite(const char *path, ks_tensor *t, int64_t *ival, void *user) {
  (void)ival;
  return tensor_finite(path, t, user);
}

kp_scorer *kp_scorer_load(const char *dir, char *err, size_t errn) {
  kp_scorer *s = calloc(1, sizeof *s);
  if (!s) { snprintf(err, errn, "out of memory"); return NULL; }
  char npz[8400], ddir[4096];
  cJSON *j = NULL;
  char *text = NULL;
  if (find_file(dir, "model.json", s->desc_path, sizeof s->desc_path, 0) != 0) {
    snprintf(err, errn, "the model has no model.json (network description); write it with ks_model_desc_save "
             "beside model.npz, or deploy with --entry LIB");
    goto fail;
  }
  snprintf(ddir, sizeof ddir, "%s", s->desc_path);
  *strrchr(ddir, '/') = '\0';
  if (find_npz(ddir, npz, sizeof npz) != 0) {
    snprintf(err, errn, "no model.npz (or single .npz) beside %s", s->desc_path);
    goto fail;
  }
  size_t len;
  text = kp_read_file(s->desc_path, &len);
  j = text ? cJSON_ParseWithLength(text, len) : NULL;
  if (!j) { snprintf(err, errn, "%s is not valid JSON", s->desc_path); goto fail; }
  ks_npz_reader *rd = NULL;
  int lrc = ks_npz_reader_open(&rd, npz);
  if (lrc != KS_OK) {
    snprintf(err, errn, "cannot read %s: %s", npz, ks_error_last());
    goto fail;
  }
  if (build(s, j, rd, err, errn) != 0) { ks_npz_reader_close(rd); goto fail; }
  lrc = ks_npz_read_link(rd, s->root, s->chain, 1);
  ks_npz_reader_close(rd);
  if (lrc != KS_OK) {
    snprintf(err, errn, "loading %s into the network of %s: %s", npz, s->desc_path, ks_error_last());
    goto fail;
  }
  /* a network with a NaN or an infinity among its weights answers NaN to
   * every input: refuse it at deploy, naming the first such value */
  nonfinite nf = {0};
  if (ks_link_namedparams(s->chain, 0, param_finite, &nf) != 0 ||
      ks_link_namedpersistents(s->chain, persistent_finite, &nf) != 0) {
    snprintf(err, errn, "%s: %s%s[%lld] is %s: a model with non-finite weights answers NaN to every input; retrain it "
             "(a diverged training?) or register another version", npz, s->root, nf.path, (long long)nf.at,
             isnan(nf.v) ? "NaN" : nf.v > 0 ? "+Infinity" : "-Infinity");
    goto fail;
  }
  /* W^T of each Linear, for the sparse path of linear_small */
  for (int i = 0; i < s->nsteps; i++) {
    step *st = &s->steps[i];
    ks_var *W = st->linear ? ks_link_param(st->link, "W") : NULL;
    if (!W || W->data->dtype != KS_F32 || W->data->ndim != 2 || W->data->size > WT_MAX_FLOATS) continue;
    const int64_t out = W->data->shape[0], in = W->data->shape[1];
    const float *w = ks_tensor_f32(W->data);
    st->wt = malloc((size_t)(in * out) * sizeof *st->wt);
    if (!st->wt) continue;  /* sgemv only */
    for (int64_t q = 0; q < out; q++)
      for (int64_t c = 0; c < in; c++) st->wt[c * out + q] = w[q * in + c];
  }
  /* one sample of zeros checks that the layers fit together */
  ks_ctx *ctx = ks_ctx_new();
  float *zero = calloc((size_t)s->width, sizeof *zero);
  s->classes = 0;
  const float *y = ctx && zero ? kp_scorer_run(s, ctx, zero, 1) : NULL;
  free(zero);
  if (!y) {
    snprintf(err, errn, "the network of %s does not run on an input of shape %s: %s", s->desc_path,
             "(1, input...)", ctx ? ks_error_last() : "out of memory");
    ks_ctx_free(ctx);
    goto fail;
  }
  ks_ctx_free(ctx);
  cJSON_Delete(j);
  free(text);
  return s;
fail:
  cJSON_Delete(j);
  free(text);
  kp_scorer_free(s);
  return NULL;
}

void kp_scorer_free(kp_scorer *s) {
  if (!s) return;
  ks_link_free(s->chain);
  for (int i = 0; s->steps && i < s->nsteps; i++) free(s->steps[i].wt);
  free(s->steps);
  free(s);
}

int64_t kp_scorer_width(const kp_scorer *s) { return s->width; }
int64_t kp_scorer_classes(const kp_scorer *s) { return s->classes; }
const char *kp_scorer_desc_path(const kp_scorer *s) { return s->desc_path; }
int kp_scorer_input_range(const kp_scorer *s, double *lo, double *hi, const char **prep) {
  *lo = s->lo;
  *hi = s->hi;
  *prep = s->prep;
  return s->has_range;
}

const float *kp_scorer_run(kp_scorer *s, ks_ctx *ctx, const float *x, int64_t n) {
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  int64_t shape[4] = {n, s->in_shape[0], s->in_shape[1], s->in_shape[2]};
  ks_tensor *xt = ks_ctx_tensor(ctx, KS_F32, 1 + s->in_ndim, shape);
  if (!xt) return NULL;
  memcpy(ks_tensor_f32(xt), x, (size_t)(n * s->width) * sizeof(float));
  ks_var *y = ks_link_forward(ctx, s->chain, ks_var_new(ctx, xt, 0));
  if (!y) return NULL;
  if (y->data->ndim != 2 || y->data->shape[0] != n) {
    char b[96];
    ks_error_set(KS_ESHAPE, "the network's output has shape %s, not (N, classes)",
                 ks_shape_str(y->data->ndim, y->data->shape, b, sizeof b));
    return NULL;
  }
  /* the first run (at load) fixes the class count */
  if (s->classes == 0) s->classes = y->data->shape[1];
  else if (y->data->shape[1] != s->classes) {
    ks_error_set(KS_ESHAPE, "the network's output changed width");
    return NULL;
  }
  return ks_tensor_f32(y->data);
}
