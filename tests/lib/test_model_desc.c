/*
 * tests/lib/test_model_desc.c — the network description (kusari/model_io.h)
 * of a Classifier-wrapped network: written with "root": "predictor", read
 * back the way the platform's scorer reads it (a Chain rebuilt from public
 * libkusari calls, weights loaded from the Classifier's model.npz under the
 * root), and the rebuilt network gives the same bits as the original.
 *
 * libkusari has no JSON reader, so this file carries a small one (enough for
 * what model_desc.c writes: objects, arrays, strings, numbers, booleans).
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- a small JSON reader --------------------------------------------------------- */
typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;
typedef struct jv {
  jtype t;
  double num;
  char *str;
  struct jv *items;   /* J_ARR, J_OBJ */
  char **keys;        /* J_OBJ */
  int n;
} jv;

static void jskip(const char **p) {
  while (**p == ' ' || **p == '\n' || **p == '\t' || **p == '\r') (*p)++;
}

static char *jparse_str(const char **p) {
  if (**p != '"') return NULL;
  (*p)++;
  size_t cap = 16, n = 0;
  char *s = malloc(cap);
  while (s && **p && **p != '"') {
    char c = *(*p)++;
    if (c == '\\') {
      c = *(*p)++;
      if (c == 'u') {  /* model_desc.c escapes control characters only */
        c = (char)strtol((char[]){(*p)[0], (*p)[1], (*p)[2], (*p)[3], 0}, NULL, 16);
        *p += 4;
      } else if (c == 'n') c = '\n';
    }
    if (n + 2 > cap) s = realloc(s, cap *= 2);
    if (s) s[n++] = c;
  }
  if (!s || **p != '"') { free(s); return NULL; }
  (*p)++;
  s[n] = '\0';
  return s;
}

static int jparse(const char **p, jv *v) {
  memset(v, 0, sizeof *v);
  jskip(p);
  if (**p == '{' || **p == '[') {
    int obj = **p == '{';
    v->t = obj ? J_OBJ : J_ARR;
    (*p)++;
    jskip(p);
    if (**p == (obj ? '}' : ']')) { (*p)++; return 0; }
    for (;;) {
      v->items = realloc(v->items, (size_t)(v->n + 1) * sizeof *v->items);
      if (obj) v->keys = realloc(v->keys, (size_t)(v->n + 1) * sizeof *v->keys);
      if (!v->items || (obj && !v->keys)) return -1;
      if (obj) {
        jskip(p);
        v->keys[v->n] = jparse_str(p);
        jskip(p);
        if (!v->keys[v->n] || *(*p)++ != ':') return -1;
      }
      if (jparse(p, &v->items[v->n++]) != 0) return -1;
      jskip(p);
      if (**p == ',') { (*p)++; continue; }
      if (**p == (obj ? '}' : ']')) { (*p)++; return 0; }
      return -1;
    }
  }
  if (**p == '"') { v->t = J_STR; v->str = jparse_str(p); return v->str ? 0 : -1; }
  if (!strncmp(*p, "true", 4) || !strncmp(*p, "false", 5)) {
    v->t = J_BOOL;
    v->num = **p == 't';
    *p += **p == 't' ? 4 : 5;
    return 0;
  }
  if (!strncmp(*p, "null", 4)) { *p += 4; return 0; }
  char *end;
  v->num = strtod(*p, &end);
  if (end == *p) return -1;
  v->t = J_NUM;
  *p = end;
  return 0;
}

static void jfree(jv *v) {
  for (int i = 0; i < v->n; i++) {
    jfree(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->str);
}

static const jv *jget(const jv *o, const char *k) {
  for (int i = 0; o->t == J_OBJ && i < o->n; i++)
    if (!strcmp(o->keys[i], k)) return &o->items[i];
  return NULL;
}

static double jnum(const jv *o, const char *k, double dflt) {
  const jv *v = jget(o, k);
  return v && (v->t == J_NUM || v->t == J_BOOL) ? v->num : dflt;
}

/* [a, b] or a number */
static void jpair(const jv *o, const char *k, int dflt, int *a, int *b) {
  const jv *v = jget(o, k);
  if (v && v->t == J_ARR && v->n == 2) { *a = (int)v->items[0].num; *b = (int)v->items[1].num; }
  else *a = *b = v && v->t == J_NUM ? (int)v->num : dflt;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* ---- the network rebuilt from a description (as platform/service_model.c) -------- */
typedef struct step {
  char type[32];
  ks_link *link;
  ks_pool2d_opts pool;
} step;

typedef struct rebuilt {
  ks_link *chain;
  step steps[32];
  int n;
  char root[256];
  int in_ndim;
  int64_t in_shape[3];
} rebuilt;

static ks_var *rebuilt_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  const rebuilt *r = ks_link_user(self);
  for (int i = 0; i < r->n && x; i++) {
    const step *s = &r->steps[i];
    if (s->link) x = ks_link_forward(ctx, s->link, x);
    else if (!strcmp(s->type, "relu")) x = ks_relu(ctx, x);
    else if (!strcmp(s->type, "tanh")) x = ks_tanh(ctx, x);
    else if (!strcmp(s->type, "sigmoid")) x = ks_sigmoid(ctx, x);
    else if (!strcmp(s->type, "log_softmax")) x = ks_log_softmax(ctx, x);
    else if (!strcmp(s->type, "max_pooling_2d")) x = ks_max_pooling_2d_ex(ctx, x, &s->pool);
    else if (!strcmp(s->type, "average_pooling_2d")) x = ks_average_pooling_2d_ex(ctx, x, &s->pool);
    else if (strcmp(s->type, "dropout") != 0) fail_msg("unknown step %s", s->type);
  }
  return x;
}

/* Reads the description at 'desc' and the weights of 'npz' into r. */
static void rebuild(rebuilt *r, const char *desc, const char *npz) {
  memset(r, 0, sizeof *r);
  const char *text = read_text(desc), *p = text;
  jv j;
  assert_int_equal(jparse(&p, &j), 0);
  const jv *fmt = jget(&j, "format"), *root = jget(&j, "root"), *in = jget(&j, "input"), *layers = jget(&j, "layers");
  assert_true(fmt && fmt->t == J_STR && !strcmp(fmt->str, "kusari-sequential/1"));
  if (root) {
    assert_int_equal(root->t, J_STR);
    snprintf(r->root, sizeof r->root, "%s/", root->str);
  }
  assert_true(in && in->t == J_ARR && in->n >= 1 && in->n <= 3);
  r->in_ndim = in->n;
  for (int i = 0; i < in->n; i++) r->in_shape[i] = (int64_t)in->items[i].num;
  assert_true(layers && layers->t == J_ARR && layers->n <= 32);
  r->chain = ks_chain_new();
  assert_non_null(r->chain);
  for (int i = 0; i < layers->n; i++) {
    const jv *L = &layers->items[i];
    const jv *type = jget(L, "type"), *name = jget(L, "name");
    assert_true(type && type->t == J_STR);
    step *s = &r->steps[r->n++];
    snprintf(s->type, sizeof s->type, "%s", type->str);
    ks_link *link = NULL;
    int nobias = (int)jnum(L, "nobias", 0);
    if (!strcmp(s->type, "linear")) {
      link = ks_linear_link_new((int64_t)jnum(L, "in", 0), (int64_t)jnum(L, "out", 0), &(ks_linear_opts){.nobias = nobias});
    } else if (!strcmp(s->type, "convolution_2d")) {
      ks_conv_link_opts co = {.nobias = nobias, .dilate = (int)jnum(L, "dilate", 1), .groups = (int)jnum(L, "groups", 1)};
      jpair(L, "ksize", 0, &co.kh, &co.kw);
      jpair(L, "stride", 1, &co.sy, &co.sx);
      jpair(L, "pad", 0, &co.ph, &co.pw);
      link = ks_convolution_2d_link_new((int64_t)jnum(L, "in", 0), (int64_t)jnum(L, "out", 0), 0, 0, 0, &co);
    } else if (!strcmp(s->type, "batch_normalization")) {
      ks_bn_link_opts bo = KS_BN_LINK_DEFAULTS;
      bo.eps = jnum(L, "eps", bo.eps);
      bo.decay = jnum(L, "decay", bo.decay);
      link = ks_batch_normalization_link_new((int64_t)jnum(L, "size", 0), &bo);
    } else if (strstr(s->type, "pooling_2d")) {
      jpair(L, "ksize", 0, &s->pool.kh, &s->pool.kw);
      jpair(L, "stride", s->pool.kh, &s->pool.sy, &s->pool.sx);
      jpair(L, "pad", 0, &s->pool.ph, &s->pool.pw);
      s->pool.cover_all = s->type[0] == 'm' ? (int)jnum(L, "cover_all", 1) : 0;
    }
    if (link) {
      assert_true(name && name->t == J_STR);
      TU_OK(ks_link_add_child(r->chain, name->str, link));
      s->link = ks_link_child(r->chain, name->str);
    }
  }
  jfree(&j);
  ks_link_set_forward(r->chain, rebuilt_forward, r);
  /* strict, like ks_load_npz, but under the description's root */
  ks_npz_reader *rd = NULL;
  TU_OK(ks_npz_reader_open(&rd, npz));
  TU_OK(ks_npz_read_link(rd, r->root, r->chain, 1));
  ks_npz_reader_close(rd);
}

/* ---- the networks ------------------------------------------------------------------ */
static ks_var *cnn_forward(ks_ctx *ctx, ks_link *self, ks_var *x) {
  ks_var *h = ks_link_forward(ctx, ks_link_child(self, "bn1"), ks_link_forward(ctx, ks_link_child(self, "conv1"), x));
  h = ks_max_pooling_2d(ctx, ks_relu(ctx, h), 2, 2, 0, 1);
  h = ks_average_pooling_2d(ctx, ks_relu(ctx, ks_link_forward(ctx, ks_link_child(self, "conv2"), h)), 2, 2, 0);
  h = ks_dropout(ctx, ks_tanh(ctx, ks_link_forward(ctx, ks_link_child(self, "fc1"), h)), 0.3);
  return ks_link_forward(ctx, ks_link_child(self, "fc2"), h);
}
static const char *const cnn_order[] = {"conv1", "bn1", "relu", "max_pooling_2d:2:2:0:1", "conv2", "relu",
                                        "average_pooling_2d:2", "fc1", "tanh", "dropout:0.3", "fc2", NULL};

/* Classifier(conv(1->4, 3x3, pad 1) - BN - relu - maxpool 2 - conv(4->6, 3x3,
 * stride 1) - relu - avgpool 2 - Linear(None, 16) - tanh - dropout - Linear(16, 5)) */
static ks_link *cnn_classifier(ks_rng *rng) {
  ks_conv_link_opts co = {.rng = rng};
  ks_linear_opts lo = {.rng = rng};
  ks_link *net = ks_chain_new();
  assert_non_null(net);
  TU_OK(ks_link_add_child(net, "conv1", ks_convolution_2d_link_new(0, 4, 3, 1, 1, &co)));
  TU_OK(ks_link_add_child(net, "bn1", ks_batch_normalization_link_new(4, NULL)));
  TU_OK(ks_link_add_child(net, "conv2", ks_convolution_2d_link_new(4, 6, 3, 1, 0, &co)));
  TU_OK(ks_link_add_child(net, "fc1", ks_linear_link_new(0, 16, &lo)));
  TU_OK(ks_link_add_child(net, "fc2", ks_linear_link_new(16, 5, &lo)));
  ks_link_set_forward(net, cnn_forward, NULL);
  ks_link *clf = ks_classifier_new(net);
  assert_non_null(clf);
  return clf;
}

static ks_var *input(ks_ctx *ctx, ks_rng *rng, int64_t n, int ndim, const int64_t *sample) {
  int64_t shape[4] = {n, 1, 1, 1};
  for (int i = 0; i < ndim; i++) shape[1 + i] = sample[i];
  ks_tensor *t = ks_ctx_tensor(ctx, KS_F32, 1 + ndim, shape);
  assert_non_null(t);
  for (int64_t i = 0; i < t->size; i++) ks_tensor_f32(t)[i] = (float)ks_rng_uniform(rng);
  return ks_var_new(ctx, t, 0);
}

/* a few training steps, so BN's running statistics and the weights are not
 * their initial values (a mistake in what is loaded would not show
 * otherwise) */
static void train_a_little(ks_link *clf, ks_rng *rng, int64_t nclass) {
  ks_optimizer *opt = ks_optimizer_adam_new(NULL);
  assert_non_null(opt);
  ks_ctx *ctx = ks_ctx_new();
  for (int it = 0; it < 3; it++) {
    ks_var *x = input(ctx, rng, 8, 3, (int64_t[]){1, 12, 12});
    ks_tensor *tt = ks_ctx_tensor(ctx, KS_I32, 1, (int64_t[]){8});
    for (int i = 0; i < 8; i++) ks_tensor_i32(tt)[i] = i % (int)nclass;
    ks_var *loss = ks_classifier_forward(ctx, clf, x, ks_var_new(ctx, tt, 0), NULL, NULL);
    TU_NONNULL(loss);
    if (it == 0) TU_OK(ks_optimizer_setup(opt, clf));
    ks_link_cleargrads(clf);
    TU_OK(ks_backward(ctx, loss));
    TU_OK(ks_optimizer_update(opt));
    ks_ctx_reset(ctx);
  }
  ks_ctx_free(ctx);
  ks_optimizer_free(opt);
}

static void tmp_paths(char *dir, size_t n, char *desc, char *npz) {
  snprintf(dir, n, "/tmp/ks_model_desc_XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(desc, 600, "%s/model.json", dir);
  snprintf(npz, 600, "%s/model.npz", dir);
}

static void rm_dir(const char *dir, const char *desc, const char *npz) {
  unlink(desc);
  unlink(npz);
  rmdir(dir);
}

/* The predictor's logits and the rebuilt network's, in test mode, bitwise. */
static void same_outputs(ks_link *predictor, rebuilt *r, ks_rng *rng, int64_t n) {
  ks_ctx *ctx = ks_ctx_new();
  ks_ctx_set_train(ctx, 0);
  ks_ctx_set_backprop(ctx, 0);
  ks_var *x = input(ctx, rng, n, r->in_ndim, r->in_shape);
  ks_var *y0 = ks_link_forward(ctx, predictor, x);
  ks_var *y1 = ks_link_forward(ctx, r->chain, x);
  TU_NONNULL(y0);
  TU_NONNULL(y1);
  assert_int_equal(y0->data->ndim, 2);
  assert_int_equal(y1->data->ndim, 2);
  assert_int_equal(y0->data->shape[0], n);
  assert_int_equal(y1->data->shape[1], y0->data->shape[1]);
  assert_memory_equal(ks_tensor_f32(y0->data), ks_tensor_f32(y1->data), (size_t)y0->data->size * sizeof(float));
  ks_ctx_free(ctx);
}

/* ---- tests ------------------------------------------------------------------------ */

/* What examples/mnist/train_mnist_cnn does: ks_save_npz of the Classifier
 * (keys "predictor/conv1/W", ...) and ks_model_desc_save_chain of the
 * Classifier with the steps of its predictor's forward. */
static void test_classifier_chain_roundtrip(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 7);
  ks_link *clf = cnn_classifier(&rng);
  train_a_little(clf, &rng, 5);
  char dir[64], desc[600], npz[600];
  tmp_paths(dir, sizeof dir, desc, npz);
  TU_OK(ks_save_npz(npz, clf));
  TU_OK(ks_model_desc_save_chain(desc, clf, cnn_order, 3, (int64_t[]){1, 12, 12}));
  const char *text = read_text(desc);
  assert_non_null(strstr(text, "\"root\": \"predictor\""));
  assert_non_null(strstr(text, "\"input\": [1, 12, 12]"));

  rebuilt r;
  rebuild(&r, desc, npz);
  assert_string_equal(r.root, "predictor/");
  assert_int_equal(r.n, 11);
  same_outputs(ks_link_child(clf, "predictor"), &r, &rng, 7);
  /* the rebuilt network has the BN statistics of the training steps */
  ks_link *bn = ks_link_child(r.chain, "bn1");
  float m = ks_tensor_f32(ks_link_persistent(bn, "avg_mean"))[0];
  assert_true(m != 0.0f);
  assert_true(m == ks_tensor_f32(ks_link_persistent(ks_link_child(ks_link_child(clf, "predictor"), "bn1"), "avg_mean"))[0]);
  ks_link_free(r.chain);

  /* the same network loaded from the npz without a forward since (a
   * program resumed at its last iteration): its lazy layers (conv1, fc1)
   * took their shapes from the file, and the description is the same */
  {
    char *before = strdup(read_text(desc));
    ks_rng r2;
    ks_rng_seed(&r2, 1);
    ks_link *fresh = cnn_classifier(&r2);
    TU_OK(ks_load_npz(npz, fresh));
    TU_OK(ks_model_desc_save_chain(desc, fresh, cnn_order, 3, (int64_t[]){1, 12, 12}));
    assert_string_equal(read_text(desc), before);
    ks_link_free(fresh);
    free(before);
  }

  /* without the root, the keys are not where the description says */
  ks_link *bare = ks_link_child(clf, "predictor");
  char npz2[640];
  snprintf(npz2, sizeof npz2, "%s/bare.npz", dir);
  TU_OK(ks_save_npz(npz2, bare));
  ks_npz_reader *rd = NULL;
  rebuilt r2;
  rebuild(&r2, desc, npz);
  TU_OK(ks_npz_reader_open(&rd, npz2));
  assert_int_equal(ks_npz_read_link(rd, r2.root, r2.chain, 1), KS_ENOTFOUND);
  assert_non_null(strstr(ks_error_last(), "predictor/"));
  ks_npz_reader_close(rd);
  ks_link_free(r2.chain);
  unlink(npz2);

  ks_link_free(clf);
  rm_dir(dir, desc, npz);
}

/* A Sequential predictor in a Classifier (keys "predictor/0/W", ...) through
 * ks_model_desc_save, and an explicit root through ks_model_desc_save_ex. */
static void test_classifier_sequential_and_root(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 3);
  ks_link *seq = ks_sequential_new();
  assert_non_null(seq);
  ks_conv_link_opts co = {.rng = &rng};
  ks_linear_opts lo = {.rng = &rng};
  TU_OK(ks_sequential_append(seq, ks_convolution_2d_link_new(1, 3, 3, 1, 1, &co)));
  TU_OK(ks_sequential_append_fn(seq, ks_relu));
  TU_OK(ks_sequential_append_max_pooling_2d(seq, 2, 2, 0, 1));
  TU_OK(ks_sequential_append(seq, ks_linear_link_new(3 * 6 * 6, 4, &lo)));
  ks_link *clf = ks_classifier_new(seq);
  assert_non_null(clf);
  char dir[64], desc[600], npz[600];
  tmp_paths(dir, sizeof dir, desc, npz);
  TU_OK(ks_save_npz(npz, clf));
  TU_OK(ks_model_desc_save(desc, clf, 3, (int64_t[]){1, 12, 12}));
  rebuilt r;
  rebuild(&r, desc, npz);
  assert_string_equal(r.root, "predictor/");
  same_outputs(seq, &r, &rng, 5);
  ks_link_free(r.chain);

  /* the network saved inside something else: an explicit root (a trailing
   * '/' as in npz prefixes is the same root) */
  ks_npz_writer *w = NULL;
  TU_OK(ks_npz_writer_open(&w, npz, 1));
  TU_OK(ks_npz_write_link(w, "updater/model:main/", clf));
  TU_OK(ks_npz_writer_commit(w));
  TU_OK(ks_model_desc_save_ex(desc, clf, &(ks_model_desc_opts){.root = "updater/model:main/"}, 3,
                              (int64_t[]){1, 12, 12}));
  assert_non_null(strstr(read_text(desc), "\"root\": \"updater/model:main/predictor\""));
  rebuild(&r, desc, npz);
  same_outputs(seq, &r, &rng, 3);
  ks_link_free(r.chain);
  TU_OK(ks_model_desc_save_ex(desc, seq, &(ks_model_desc_opts){.root = "updater/model:main/predictor"}, 3,
                              (int64_t[]){1, 12, 12}));
  rebuild(&r, desc, npz);
  same_outputs(seq, &r, &rng, 2);
  ks_link_free(r.chain);

  /* bad roots */
  static const char *const bad[] = {"/a", "a//b", "//", "/"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(ks_model_desc_save_ex(desc, seq, &(ks_model_desc_opts){.root = bad[i]}, 3, (int64_t[]){1, 12, 12}),
                     KS_EINVAL);
    assert_non_null(strstr(ks_error_last(), "root"));
  }
  ks_link_free(clf);
  rm_dir(dir, desc, npz);
}

/* A network saved on its own: no "root" in its description (the format of
 * the descriptions written before roots existed), read with keys at the top. */
static void test_no_root_unchanged(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  ks_linear_opts lo = {.rng = &rng};
  ks_link *mlp = ks_chain_new();
  TU_OK(ks_link_add_child(mlp, "l1", ks_linear_link_new(6, 5, &lo)));
  TU_OK(ks_link_add_child(mlp, "l2", ks_linear_link_new(5, 3, &(ks_linear_opts){.rng = &rng, .nobias = 1})));
  char dir[64], desc[600], npz[600];
  tmp_paths(dir, sizeof dir, desc, npz);
  TU_OK(ks_save_npz(npz, mlp));
  const char *order[] = {"l1", "sigmoid", "l2", NULL};
  TU_OK(ks_model_desc_save_chain(desc, mlp, order, 1, (int64_t[]){6}));
  const char *text = read_text(desc);
  assert_null(strstr(text, "root"));
  assert_true(!strncmp(text, "{\"format\": \"kusari-sequential/1\",\n \"input\": [6],\n \"layers\": [", 61));
  TU_OK(ks_model_desc_save_ex(desc, mlp, &(ks_model_desc_opts){.order = order, .root = ""}, 1, (int64_t[]){6}));
  assert_null(strstr(read_text(desc), "root"));
  rebuilt r;
  rebuild(&r, desc, npz);
  assert_string_equal(r.root, "");
  assert_null(ks_link_param(ks_link_child(r.chain, "l2"), "b"));
  ks_link_free(r.chain);
  /* the errors of before stay */
  assert_int_equal(ks_model_desc_save(desc, mlp, 1, (int64_t[]){6}), KS_EUNSUPPORTED);
  assert_int_equal(ks_model_desc_save_chain(desc, mlp, (const char *[]){NULL}, 1, (int64_t[]){6}), KS_EINVAL);
  assert_int_equal(ks_model_desc_save_ex(desc, mlp, &(ks_model_desc_opts){.order = (const char *[]){NULL}}, 1,
                                         (int64_t[]){6}),
                   KS_EINVAL);
  ks_link_free(mlp);
  rm_dir(dir, desc, npz);
}

/* The input's declared range and preprocessing (ks_model_desc_opts): written
 * after "input" when given, as JSON numbers and a JSON string; nothing new
 * in a description without them; bad ranges refused, nothing written. */
static void test_input_range(void **state) {
  (void)state;
  ks_rng rng;
  ks_rng_seed(&rng, 7);
  ks_link *mlp = ks_chain_new();
  TU_OK(ks_link_add_child(mlp, "l1", ks_linear_link_new(4, 2, &(ks_linear_opts){.rng = &rng})));
  char dir[64], desc[600], npz[600];
  tmp_paths(dir, sizeof dir, desc, npz);
  TU_OK(ks_save_npz(npz, mlp));
  const char *order[] = {"l1", NULL};
  TU_OK(ks_model_desc_save_ex(desc, mlp,
                              &(ks_model_desc_opts){.order = order, .input_range = (const double[]){-0.5, 255},
                                                    .input_preprocessing = "pixels \"raw\"\n"},
                              1, (int64_t[]){4}));
  const char *text = read_text(desc), *p = text;
  jv j;
  assert_int_equal(jparse(&p, &j), 0);
  const jv *rg = jget(&j, "input_range");
  assert_non_null(rg);
  assert_int_equal(rg->t, J_ARR);
  assert_int_equal(rg->n, 2);
  assert_true(rg->items[0].num == -0.5 && rg->items[1].num == 255);
  const jv *pp = jget(&j, "input_preprocessing");
  assert_non_null(pp);
  assert_int_equal(pp->t, J_STR);
  assert_string_equal(pp->str, "pixels \"raw\"\n");
  jfree(&j);
  /* the rest reads as before */
  rebuilt r;
  rebuild(&r, desc, npz);
  assert_int_equal(r.n, 1);
  assert_non_null(ks_link_param(ks_link_child(r.chain, "l1"), "W"));
  ks_link_free(r.chain);
  /* only the range; 1/3 exactly as a double */
  TU_OK(ks_model_desc_save_ex(desc, mlp, &(ks_model_desc_opts){.order = order, .input_range = (const double[]){1.0 / 3, 1}},
                              1, (int64_t[]){4}));
  text = read_text(desc);
  p = text;
  assert_int_equal(jparse(&p, &j), 0);
  assert_true(jget(&j, "input_range")->items[0].num == 1.0 / 3);
  assert_null(jget(&j, "input_preprocessing"));
  jfree(&j);
  /* bad ranges: KS_EINVAL, the file is left as it was */
  static const double bad[][2] = {{1, 0}, {0, INFINITY}, {NAN, 1}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(ks_model_desc_save_ex(desc, mlp, &(ks_model_desc_opts){.order = order, .input_range = bad[i]}, 1,
                                           (int64_t[]){4}),
                     KS_EINVAL);
    assert_non_null(strstr(ks_error_last(), "input range"));
    assert_non_null(strstr(read_text(desc), "\"input_range\": [0.33333333333333331, 1]"));
  }
  /* without them: no new keys */
  TU_OK(ks_model_desc_save_chain(desc, mlp, order, 1, (int64_t[]){4}));
  assert_null(strstr(read_text(desc), "input_"));
  ks_link_free(mlp);
  rm_dir(dir, desc, npz);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_input_range),
    cmocka_unit_test(test_classifier_chain_roundtrip),
    cmocka_unit_test(test_classifier_sequential_and_root),
    cmocka_unit_test(test_no_root_unchanged),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
