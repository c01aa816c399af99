/*
 * tests/lib/test_functions_ops.c — the table of every differentiable
 * function (and accuracy): for each row, random inputs of the given shapes,
 *   (a) forward values against a reference written here in double precision
 *       by straightforward loops (never the code under test), and the
 *       output shape;
 *   (b) ks_check_backward: analytic gradients of every float32 input against
 *       central finite differences (see kusari/gradient_check.h).
 * Like ggml's test-backend-ops MODE_TEST/MODE_GRAD, in one table.
 */
#include "testutil.h"
#include "kusari/gradient_check.h"

#include <stdlib.h>

#define MAX_IN 6

/* table rows leave trailing arguments (ia, ib, fa, flags) at zero */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

typedef enum {
  G_UNI,      /* uniform [-1, 1)                                        */
  G_AWAY,     /* |x| in [0.05, 1]: away from relu/leaky_relu kinks       */
  G_WIDE,     /* uniform [-3, 3)                                        */
  G_LABELS,   /* int32 in [0, C), N = in[0].shape[0], C = in[0].shape[1] */
  G_LABELS_IGN /* same, every third label -1 (ignored)                   */
} gen_kind;

typedef struct in_spec {
  int ndim;
  int64_t shape[4];
  gen_kind gen;
} in_spec;

typedef struct op_case op_case;
typedef void (*ref_fn)(const op_case *c, ks_tensor *const *x, double *y);

struct op_case {
  const char *name;
  ks_check_fn apply;
  ref_fn ref;
  int n_in;
  in_spec in[MAX_IN];
  int out_ndim;
  int64_t out_shape[4];
  int ia, ib;       /* integer arguments (axis, transposes, ignore_label) */
  double fa;        /* float argument (slope, alpha, ratio)               */
  int no_gradcheck; /* accuracy: not differentiable                       */
  int test_mode;    /* run with ks_ctx_set_train(ctx, 0)                  */
  int n_classes;    /* labels in [0, n_classes); 0: in[0]'s last dim       */
  double eps;       /* finite-difference step; 0: the default              */
};

static const float *F(ks_tensor *const *x, int i) { return ks_tensor_f32(x[i]); }

/* ---- apply: build the output from input vars (user = the op_case) ------------- */

#define C_ ((const op_case *)user)
static ks_var *ap_linear(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_linear(ctx, in[0], in[1], n > 2 ? in[2] : NULL);
}
static ks_var *ap_relu(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_relu(ctx, in[0]); }
static ks_var *ap_leaky(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_leaky_relu(ctx, in[0], C_->fa);
}
static ks_var *ap_sigmoid(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_sigmoid(ctx, in[0]); }
static ks_var *ap_tanh(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_tanh(ctx, in[0]); }
static ks_var *ap_softmax(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_softmax(ctx, in[0], C_->ia);
}
static ks_var *ap_log_softmax(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_log_softmax(ctx, in[0]);
}
static ks_var *ap_sce(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_softmax_cross_entropy(ctx, in[0], in[1], C_->ia);
}
static ks_var *ap_mse(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_mean_squared_error(ctx, in[0], in[1]);
}
static ks_var *ap_accuracy(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_accuracy(ctx, in[0], in[1], C_->ia);
}
static ks_var *ap_dropout(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_dropout(ctx, in[0], C_->fa);
}
static ks_var *ap_add(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_add(ctx, in[0], in[1]); }
static ks_var *ap_sub(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_sub(ctx, in[0], in[1]); }
static ks_var *ap_mul(ks_ctx *ctx, ks_var *const *in, int n, void *user) { return ks_mul(ctx, in[0], in[1]); }
static ks_var *ap_square(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_mul(ctx, in[0], in[0]); /* one variable used twice */
}
static ks_var *ap_scale(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_scale(ctx, in[0], C_->fa);
}
static ks_var *ap_matmul(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_matmul(ctx, in[0], in[1], C_->ia, C_->ib);
}
static ks_var *ap_reshape(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  int64_t s[4];
  memcpy(s, C_->out_shape, sizeof s);
  s[0] = -1; /* inferred */
  return ks_reshape(ctx, in[0], C_->out_ndim, s);
}
static ks_var *ap_sum(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_sum(ctx, in[0], C_->ia);
}
static ks_var *ap_mean(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  return ks_mean(ctx, in[0], C_->ia);
}
/* Linear(K->H)-ReLU-Linear(H->C)-softmax_cross_entropy: the MNIST step */
static ks_var *ap_mlp(ks_ctx *ctx, ks_var *const *in, int n, void *user) {
  ks_var *h = ks_relu(ctx, ks_linear(ctx, in[0], in[1], in[2]));
  return ks_softmax_cross_entropy(ctx, ks_linear(ctx, h, in[3], in[4]), in[5], -1);
}
#undef C_

/* ---- references in double ------------------------------------------------------ */

static void ref_linear(const op_case *c, ks_tensor *const *x, double *y) {
  const int64_t n = x[0]->shape[0], k = x[0]->size / n, m = x[1]->shape[0];
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < m; j++) {
      double s = c->n_in > 2 ? F(x, 2)[j] : 0.0;
      for (int64_t q = 0; q < k; q++) s += (double)F(x, 0)[i * k + q] * F(x, 1)[j * k + q];
      y[i * m + j] = s;
    }
}
static void ref_relu(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = F(x, 0)[i] > 0 ? F(x, 0)[i] : 0.0;
}
static void ref_leaky(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) {
    double v = F(x, 0)[i];
    y[i] = v >= 0 ? v : c->fa * v;
  }
}
static void ref_sigmoid(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = 1.0 / (1.0 + exp(-(double)F(x, 0)[i]));
}
static void ref_tanh(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = tanh((double)F(x, 0)[i]);
}
static void split(const ks_tensor *t, int axis, int64_t *outer, int64_t *ch, int64_t *inner) {
  *outer = *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= t->shape[i];
  *ch = t->shape[axis];
  for (int i = axis + 1; i < t->ndim; i++) *inner *= t->shape[i];
}
static void softmax_ref(const ks_tensor *t, int axis, int want_log, double *y) {
  int64_t o, ch, in;
  split(t, axis, &o, &ch, &in);
  const float *x = ks_tensor_f32(t);
  for (int64_t a = 0; a < o; a++)
    for (int64_t b = 0; b < in; b++) {
      double s = 0.0;
      for (int64_t k = 0; k < ch; k++) s += exp((double)x[(a * ch + k) * in + b]);
      for (int64_t k = 0; k < ch; k++) {
        double v = x[(a * ch + k) * in + b];
        y[(a * ch + k) * in + b] = want_log ? v - log(s) : exp(v) / s;
      }
    }
}
static void ref_softmax(const op_case *c, ks_tensor *const *x, double *y) {
  softmax_ref(x[0], c->ia < 0 ? c->ia + x[0]->ndim : c->ia, 0, y);
}
static void ref_log_softmax(const op_case *c, ks_tensor *const *x, double *y) {
  softmax_ref(x[0], 1, 1, y);
}
static void ref_sce(const op_case *c, ks_tensor *const *x, double *y) {
  const int64_t n = x[0]->shape[0], ch = x[0]->shape[1];
  const int32_t *t = ks_tensor_i32(x[1]);
  double total = 0.0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    if (t[i] == c->ia) continue;
    double s = 0.0;
    for (int64_t k = 0; k < ch; k++) s += exp((double)F(x, 0)[i * ch + k]);
    total += -(double)F(x, 0)[i * ch + t[i]] + log(s);
    count++;
  }
  y[0] = count ? total / (double)count : 0.0;
}
static void ref_mse(const op_case *c, ks_tensor *const *x, double *y) {
  double s = 0.0;
  for (int64_t i = 0; i < x[0]->size; i++) {
    double d = (double)F(x, 0)[i] - F(x, 1)[i];
    s += d * d;
  }
  y[0] = s / (double)x[0]->size;
}
static void ref_accuracy(const op_case *c, ks_tensor *const *x, double *y) {
  const int64_t n = x[0]->shape[0], ch = x[0]->shape[1];
  const int32_t *t = ks_tensor_i32(x[1]);
  int64_t hit = 0, total = 0;
  for (int64_t i = 0; i < n; i++) {
    if (t[i] == c->ia) continue;
    total++;
    int64_t best = 0;
    for (int64_t k = 0; k < ch; k++)
      if (F(x, 0)[i * ch + k] > F(x, 0)[i * ch + best]) best = k;
    hit += best == t[i];
  }
  y[0] = total ? (double)hit / (double)total : 0.0;
}
static void ref_identity(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = F(x, 0)[i];
}
static void ref_binary(const op_case *c, ks_tensor *const *x, double *y, char op) {
  const int64_t nb = x[1]->size;
  for (int64_t i = 0; i < x[0]->size; i++) {
    double a = F(x, 0)[i], b = F(x, 1)[i % nb];
    y[i] = op == '+' ? a + b : op == '-' ? a - b : a * b;
  }
}
static void ref_add(const op_case *c, ks_tensor *const *x, double *y) { ref_binary(c, x, y, '+'); }
static void ref_sub(const op_case *c, ks_tensor *const *x, double *y) { ref_binary(c, x, y, '-'); }
static void ref_mul(const op_case *c, ks_tensor *const *x, double *y) { ref_binary(c, x, y, '*'); }
static void ref_square(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = (double)F(x, 0)[i] * F(x, 0)[i];
}
static void ref_scale(const op_case *c, ks_tensor *const *x, double *y) {
  for (int64_t i = 0; i < x[0]->size; i++) y[i] = c->fa * F(x, 0)[i];
}
static void ref_matmul(const op_case *c, ks_tensor *const *x, double *y) {
  const ks_tensor *a = x[0], *b = x[1];
  const int64_t M = c->ia ? a->shape[1] : a->shape[0], K = c->ia ? a->shape[0] : a->shape[1];
  const int64_t N = c->ib ? b->shape[0] : b->shape[1];
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0.0;
      for (int64_t k = 0; k < K; k++) {
        double av = c->ia ? F(x, 0)[k * a->shape[1] + i] : F(x, 0)[i * a->shape[1] + k];
        double bv = c->ib ? F(x, 1)[j * b->shape[1] + k] : F(x, 1)[k * b->shape[1] + j];
        s += av * bv;
      }
      y[i * N + j] = s;
    }
}
static void reduce_ref(const op_case *c, ks_tensor *const *x, double *y, int mean) {
  if (c->ia == KS_AXIS_ALL) {
    double s = 0.0;
    for (int64_t i = 0; i < x[0]->size; i++) s += F(x, 0)[i];
    y[0] = mean ? s / (double)x[0]->size : s;
    return;
  }
  int64_t o, ch, in;
  split(x[0], c->ia < 0 ? c->ia + x[0]->ndim : c->ia, &o, &ch, &in);
  for (int64_t a = 0; a < o; a++)
    for (int64_t b = 0; b < in; b++) {
      double s = 0.0;
      for (int64_t k = 0; k < ch; k++) s += F(x, 0)[(a * ch + k) * in + b];
      y[a * in + b] = mean ? s / (double)ch : s;
    }
}
static void ref_sum(const op_case *c, ks_tensor *const *x, double *y) { reduce_ref(c, x, y, 0); }
static void ref_mean(const op_case *c, ks_tensor *const *x, double *y) { reduce_ref(c, x, y, 1); }
static void ref_mlp(const op_case *c, ks_tensor *const *x, double *y) {
  const int64_t n = x[0]->shape[0], k = x[0]->shape[1], hdim = x[1]->shape[0],
                ch = x[3]->shape[0];
  const int32_t *t = ks_tensor_i32(x[5]);
  double total = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double h[64], z[64], s = 0.0;
    for (int64_t j = 0; j < hdim; j++) {
      double v = F(x, 2)[j];
      for (int64_t q = 0; q < k; q++) v += (double)F(x, 0)[i * k + q] * F(x, 1)[j * k + q];
      h[j] = v > 0 ? v : 0;
    }
    for (int64_t j = 0; j < ch; j++) {
      double v = F(x, 4)[j];
      for (int64_t q = 0; q < hdim; q++) v += h[q] * F(x, 3)[j * hdim + q];
      z[j] = v;
      s += exp(v);
    }
    total += log(s) - z[t[i]];
  }
  y[0] = total / (double)n;
}

/* ---- the table ------------------------------------------------------------------- */

#define S1(a) 1, {a}
#define S2(a, b) 2, {a, b}
#define S3(a, b, c) 3, {a, b, c}
#define S0 0, {0}

static const op_case cases[] = {
  {"linear", ap_linear, ref_linear, 3, {{S2(4, 5), G_UNI}, {S2(3, 5), G_UNI}, {S1(3), G_UNI}}, S2(4, 3)},
  {"linear nobias", ap_linear, ref_linear, 2, {{S2(4, 5), G_UNI}, {S2(3, 5), G_UNI}}, S2(4, 3)},
  {"linear 3-d x", ap_linear, ref_linear, 3, {{S3(3, 2, 2), G_UNI}, {S2(2, 4), G_UNI}, {S1(2), G_UNI}}, S2(3, 2)},
  {"relu", ap_relu, ref_relu, 1, {{S2(4, 6), G_AWAY}}, S2(4, 6)},
  {"leaky_relu", ap_leaky, ref_leaky, 1, {{S2(4, 6), G_AWAY}}, S2(4, 6), .fa = 0.2},
  {"sigmoid", ap_sigmoid, ref_sigmoid, 1, {{S2(4, 6), G_WIDE}}, S2(4, 6)},
  {"tanh", ap_tanh, ref_tanh, 1, {{S2(4, 6), G_WIDE}}, S2(4, 6)},
  {"softmax axis 1", ap_softmax, ref_softmax, 1, {{S2(4, 5), G_WIDE}}, S2(4, 5), .ia = 1},
  {"softmax axis 0", ap_softmax, ref_softmax, 1, {{S2(4, 5), G_WIDE}}, S2(4, 5), .ia = 0},
  {"softmax 3-d axis 1", ap_softmax, ref_softmax, 1, {{S3(2, 3, 4), G_WIDE}}, S3(2, 3, 4), .ia = 1},
  {"softmax axis -1", ap_softmax, ref_softmax, 1, {{S3(2, 3, 4), G_WIDE}}, S3(2, 3, 4), .ia = -1},
  {"log_softmax", ap_log_softmax, ref_log_softmax, 1, {{S2(4, 5), G_WIDE}}, S2(4, 5)},
  {"log_softmax 3-d", ap_log_softmax, ref_log_softmax, 1, {{S3(2, 3, 2), G_WIDE}}, S3(2, 3, 2)},
  {"softmax_cross_entropy", ap_sce, ref_sce, 2, {{S2(6, 4), G_WIDE}, {S1(6), G_LABELS}}, S0, .ia = -1},
  {"softmax_cross_entropy ignore -1", ap_sce, ref_sce, 2, {{S2(7, 3), G_WIDE}, {S1(7), G_LABELS_IGN}}, S0, .ia = -1},
  {"mean_squared_error", ap_mse, ref_mse, 2, {{S2(3, 4), G_UNI}, {S2(3, 4), G_UNI}}, S0},
  {"accuracy", ap_accuracy, ref_accuracy, 2, {{S2(9, 4), G_UNI}, {S1(9), G_LABELS}}, S0, .ia = -1, .no_gradcheck = 1},
  {"accuracy ignore -1", ap_accuracy, ref_accuracy, 2, {{S2(9, 4), G_UNI}, {S1(9), G_LABELS_IGN}}, S0, .ia = -1, .no_gradcheck = 1},
  {"dropout test mode", ap_dropout, ref_identity, 1, {{S2(3, 4), G_UNI}}, S2(3, 4), .fa = 0.5, .test_mode = 1},
  {"dropout train mode", ap_dropout, NULL, 1, {{S2(3, 4), G_UNI}}, S2(3, 4), .fa = 0.4},
  {"add", ap_add, ref_add, 2, {{S2(3, 4), G_UNI}, {S2(3, 4), G_UNI}}, S2(3, 4)},
  {"add broadcast (C,)", ap_add, ref_add, 2, {{S2(3, 4), G_UNI}, {S1(4), G_UNI}}, S2(3, 4)},
  {"add broadcast scalar", ap_add, ref_add, 2, {{S2(3, 4), G_UNI}, {S0, G_UNI}}, S2(3, 4)},
  {"sub", ap_sub, ref_sub, 2, {{S2(3, 4), G_UNI}, {S2(3, 4), G_UNI}}, S2(3, 4)},
  {"sub broadcast (3, 4) - (4,)", ap_sub, ref_sub, 2, {{S3(2, 3, 4), G_UNI}, {S2(3, 4), G_UNI}}, S3(2, 3, 4)},
  {"mul", ap_mul, ref_mul, 2, {{S2(3, 4), G_UNI}, {S2(3, 4), G_UNI}}, S2(3, 4)},
  {"mul broadcast (C,)", ap_mul, ref_mul, 2, {{S2(3, 4), G_UNI}, {S1(4), G_UNI}}, S2(3, 4)},
  {"mul broadcast scalar", ap_mul, ref_mul, 2, {{S2(3, 4), G_UNI}, {S1(1), G_UNI}}, S2(3, 4)},
  {"mul(x, x)", ap_square, ref_square, 1, {{S2(3, 4), G_UNI}}, S2(3, 4)},
  {"scale", ap_scale, ref_scale, 1, {{S2(3, 4), G_UNI}}, S2(3, 4), .fa = -2.5},
  {"matmul", ap_matmul, ref_matmul, 2, {{S2(3, 4), G_UNI}, {S2(4, 5), G_UNI}}, S2(3, 5)},
  {"matmul trans_a", ap_matmul, ref_matmul, 2, {{S2(4, 3), G_UNI}, {S2(4, 5), G_UNI}}, S2(3, 5), .ia = 1},
  {"matmul trans_b", ap_matmul, ref_matmul, 2, {{S2(3, 4), G_UNI}, {S2(5, 4), G_UNI}}, S2(3, 5), .ib = 1},
  {"matmul trans_a trans_b", ap_matmul, ref_matmul, 2, {{S2(4, 3), G_UNI}, {S2(5, 4), G_UNI}}, S2(3, 5), .ia = 1, .ib = 1},
  {"reshape", ap_reshape, ref_identity, 1, {{S3(2, 3, 4), G_UNI}}, S2(6, 4)},
  {"sum all", ap_sum, ref_sum, 1, {{S2(3, 4), G_UNI}}, S0, .ia = KS_AXIS_ALL},
  {"sum axis 0", ap_sum, ref_sum, 1, {{S2(3, 4), G_UNI}}, S1(4), .ia = 0},
  {"sum axis 1 of 3-d", ap_sum, ref_sum, 1, {{S3(2, 3, 4), G_UNI}}, S2(2, 4), .ia = 1},
  {"mean all", ap_mean, ref_mean, 1, {{S2(3, 4), G_UNI}}, S0, .ia = KS_AXIS_ALL},
  {"mean axis 1", ap_mean, ref_mean, 1, {{S2(3, 4), G_UNI}}, S1(3), .ia = 1},
  /* negative axes count from the end (Chainer's axis=-1: the last axis) */
  {"sum axis -1 of 3-d", ap_sum, ref_sum, 1, {{S3(2, 3, 4), G_UNI}}, S2(2, 3), .ia = -1},
  {"sum axis -3 of 3-d", ap_sum, ref_sum, 1, {{S3(2, 3, 4), G_UNI}}, S2(3, 4), .ia = -3},
  {"mean axis -1", ap_mean, ref_mean, 1, {{S2(3, 4), G_UNI}}, S1(3), .ia = -1},
  {"mean axis -2 of 3-d", ap_mean, ref_mean, 1, {{S3(2, 3, 4), G_UNI}}, S2(2, 4), .ia = -2},
  {"mlp: linear-relu-linear-sce", ap_mlp, ref_mlp, 6,
   {{S2(5, 6), G_UNI}, {S2(4, 6), G_UNI}, {S1(4), G_UNI}, {S2(3, 4), G_UNI}, {S1(3), G_UNI},
    {S1(5), G_LABELS}}, S0, .n_classes = 3,
   /* hidden pre-activations are random: a smaller step makes crossing the
    * relu kink 10x rarer, at ~1e-4 of float32 rounding in the quotient */
   .eps = 1e-3},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static void make_inputs(const op_case *c, ks_rng *rng, ks_tensor **x) {
  for (int i = 0; i < c->n_in; i++) {
    const in_spec *s = &c->in[i];
    switch (s->gen) {
      case G_UNI: x[i] = tu_uniform(rng, s->ndim, s->shape, -1.0, 1.0); break;
      case G_WIDE: x[i] = tu_uniform(rng, s->ndim, s->shape, -3.0, 3.0); break;
      case G_AWAY: x[i] = tu_away(rng, s->ndim, s->shape, 0.05, 1.0); break;
      case G_LABELS:
      case G_LABELS_IGN:
        x[i] = tu_labels(rng, s->shape[0],
                         c->n_classes ? c->n_classes : c->in[0].shape[c->in[0].ndim - 1],
                         s->gen == G_LABELS_IGN ? 3 : 0);
        break;
    }
  }
}

/* (a) forward values and shape against the double reference */
static void test_ops__forward(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 1234);
  ks_ctx *ctx = ks_ctx_new();
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const op_case *c = &cases[ci];
    ks_tensor *x[MAX_IN] = {0};
    make_inputs(c, &rng, x);
    ks_ctx_set_train(ctx, !c->test_mode);
    ks_var *v[MAX_IN];
    for (int i = 0; i < c->n_in; i++) v[i] = ks_var_new(ctx, x[i], x[i]->dtype == KS_F32);
    ks_var *y = c->apply(ctx, v, c->n_in, (void *)c);
    if (!y) fail_msg("%s: %s", c->name, ks_error_last());
    if (y->data->ndim != c->out_ndim) fail_msg("%s: output ndim %d, want %d", c->name, y->data->ndim, c->out_ndim);
    for (int d = 0; d < c->out_ndim; d++)
      if (y->data->shape[d] != c->out_shape[d])
        fail_msg("%s: output dim %d is %lld, want %lld", c->name, d, (long long)y->data->shape[d],
                 (long long)c->out_shape[d]);
    if (c->ref) {
      double *want = calloc((size_t)y->data->size + 1, sizeof *want);
      c->ref(c, x, want);
      char what[128];
      snprintf(what, sizeof what, "forward of %s", c->name);
      tu_assert_close(ks_tensor_f32(y->data), want, y->data->size, 1e-5, 1e-5, what);
      free(want);
    }
    for (int i = 0; i < c->n_in; i++) ks_tensor_free(x[i]);
    ks_ctx_reset(ctx);
  }
  ks_ctx_free(ctx);
}

/* (b) analytic vs numeric gradients of every float32 input */
static void test_ops__gradient(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 99);
  for (size_t ci = 0; ci < N_CASES; ci++) {
    const op_case *c = &cases[ci];
    if (c->no_gradcheck) continue;
    for (int rep = 0; rep < 2; rep++) { /* two random draws per row */
      ks_tensor *x[MAX_IN] = {0};
      make_inputs(c, &rng, x);
      ks_check_opts o = KS_CHECK_DEFAULTS;
      o.seed = 7 + (uint64_t)rep;
      o.test_mode = c->test_mode;
      if (c->eps > 0) o.eps = c->eps;
      int rc = ks_check_backward(c->apply, (void *)c, c->n_in, (const ks_tensor *const *)x, NULL,
                                 &o);
      if (rc != KS_OK) fail_msg("%s: %s", c->name, ks_error_last());
      for (int i = 0; i < c->n_in; i++) ks_tensor_free(x[i]);
    }
  }
}

/* the same check with a tighter tolerance on a smooth function: the check
 * must be accurate well below its defaults */
static void test_ops__gradient_tight(void **state) {
  ks_rng rng;
  ks_rng_seed(&rng, 5);
  const op_case *c = NULL;
  for (size_t ci = 0; ci < N_CASES; ci++)
    if (!strcmp(cases[ci].name, "softmax_cross_entropy")) c = &cases[ci];
  assert_non_null(c);
  ks_tensor *x[MAX_IN] = {0};
  make_inputs(c, &rng, x);
  ks_check_opts o = KS_CHECK_DEFAULTS;
  o.atol = 1e-4;
  o.rtol = 1e-3;
  TU_OK(ks_check_backward(c->apply, (void *)c, c->n_in, (const ks_tensor *const *)x, NULL, &o));
  for (int i = 0; i < c->n_in; i++) ks_tensor_free(x[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_ops__forward),
    cmocka_unit_test(test_ops__gradient),
    cmocka_unit_test(test_ops__gradient_tight),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
