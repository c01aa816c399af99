/*
 * src/functions/activation.c — relu, leaky_relu, sigmoid, tanh, softmax,
 * log_softmax (chainer.functions.activation).
 *
 * Each is one kernel pass forward and one backward. relu, sigmoid, tanh,
 * softmax and log_softmax retain their output (as Chainer's retain_outputs)
 * and differentiate from it; leaky_relu retains its input.
 */
#include "functions_impl.h"

/* ---- element-wise: shared forward skeleton -------------------------------------- */

typedef void (*unary_kernel)(int64_t n, const float *x, float *y);

static ks_var *unary_apply(ks_ctx *ctx, const char *fn, const ks_fn_type *type, ks_var *x,
                           unary_kernel fwd, ks_node **node_out) {
  *node_out = NULL;
  ks_tensor *y = ks_ctx_tensor_like(ctx, x->data);
  if (!y) return NULL;
  fwd(y->size, ks_tensor_f32(x->data), ks_tensor_f32(y));
  if (ks__node(ctx, type, 1, &x, node_out)) return NULL;
  return ks_node_output(ctx, *node_out, y);
}

static int unary_check(ks_ctx *ctx, const char *fn, ks_var *x, const ks_backend_ops **be) {
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return -1;
  *be = ks__backend(fn, x->data);
  return *be ? KS_OK : -1;
}

/* ---- relu ------------------------------------------------------------------------ */

static int relu_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *y = node->out[0]->data;
  ks_backend_for(y)->relu_backward(y->size, ks_tensor_f32(y), ks_tensor_f32(gy[0]),
                                   ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type relu_type = {"relu", relu_backward};

ks_var *ks_relu(ks_ctx *ctx, ks_var *x) {
  static const char *fn = "ks_relu";
  const ks_backend_ops *be;
  ks_node *node;
  if (!x) return NULL;
  if (unary_check(ctx, fn, x, &be) || KS__NEED(fn, be, relu_forward) ||
      KS__NEED(fn, be, relu_backward))
    return NULL;
  return unary_apply(ctx, fn, &relu_type, x, be->relu_forward, &node);
}

/* ---- leaky_relu ------------------------------------------------------------------ */

static int leaky_relu_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy,
                               ks_tensor **gx) {
  const ks_tensor *x = node->in[0]->data;
  ks_backend_for(x)->leaky_relu_backward(x->size, (float)node->fparam[0], ks_tensor_f32(x),
                                         ks_tensor_f32(gy[0]), ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type leaky_relu_type = {"leaky_relu", leaky_relu_backward};

ks_var *ks_leaky_relu(ks_ctx *ctx, ks_var *x, double slope) {
  static const char *fn = "ks_leaky_relu";
  const ks_backend_ops *be;
  if (!x) return NULL;
  if (unary_check(ctx, fn, x, &be) || KS__NEED(fn, be, leaky_relu_forward) ||
      KS__NEED(fn, be, leaky_relu_backward))
    return NULL;
  ks_tensor *y = ks_ctx_tensor_like(ctx, x->data);
  if (!y) return NULL;
  be->leaky_relu_forward(y->size, (float)slope, ks_tensor_f32(x->data), ks_tensor_f32(y));
  ks_node *node;
  if (ks__node(ctx, &leaky_relu_type, 1, &x, &node)) return NULL;
  if (node) node->fparam[0] = slope;
  return ks_node_output(ctx, node, y);
}

/* ---- sigmoid / tanh -------------------------------------------------------------- */

static int sigmoid_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *y = node->out[0]->data;
  ks_backend_for(y)->sigmoid_backward(y->size, ks_tensor_f32(y), ks_tensor_f32(gy[0]),
                                      ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type sigmoid_type = {"sigmoid", sigmoid_backward};

ks_var *ks_sigmoid(ks_ctx *ctx, ks_var *x) {
  static const char *fn = "ks_sigmoid";
  const ks_backend_ops *be;
  ks_node *node;
  if (!x) return NULL;
  if (unary_check(ctx, fn, x, &be) || KS__NEED(fn, be, sigmoid_forward) ||
      KS__NEED(fn, be, sigmoid_backward))
    return NULL;
  return unary_apply(ctx, fn, &sigmoid_type, x, be->sigmoid_forward, &node);
}

static int tanh_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *y = node->out[0]->data;
  ks_backend_for(y)->tanh_backward(y->size, ks_tensor_f32(y), ks_tensor_f32(gy[0]),
                                   ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type tanh_type = {"tanh", tanh_backward};

ks_var *ks_tanh(ks_ctx *ctx, ks_var *x) {
  static const char *fn = "ks_tanh";
  const ks_backend_ops *be;
  ks_node *node;
  if (!x) return NULL;
  if (unary_check(ctx, fn, x, &be) || KS__NEED(fn, be, tanh_forward) ||
      KS__NEED(fn, be, tanh_backward))
    return NULL;
  return unary_apply(ctx, fn, &tanh_type, x, be->tanh_forward, &node);
}

/* ---- softmax / log_softmax --------------------------------------------------------- */

/* iparam = {outer, c, inner}: the reduced axis split out of x's shape */
static int split_axis(const char *fn, const ks_tensor *x, int axis, int64_t *outer, int64_t *c,
                      int64_t *inner) {
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis >= x->ndim) {
    char s[KS__SHAPE_BUF];
    return ks_error_set(KS_ESHAPE, "%s: axis %d is out of range for x %s", fn, axis,
                        ks__shape(x, s));
  }
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= x->shape[i];
  for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
  *c = x->shape[axis];
  return KS_OK;
}

static int softmax_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_tensor *y = node->out[0]->data;
  ks_backend_for(y)->softmax_backward(node->iparam[0], node->iparam[1], node->iparam[2],
                                      ks_tensor_f32(y), ks_tensor_f32(gy[0]),
                                      ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type softmax_type = {"softmax", softmax_backward};

static int log_softmax_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy,
                                ks_tensor **gx) {
  const ks_tensor *y = node->out[0]->data;
  ks_backend_for(y)->log_softmax_backward(node->iparam[0], node->iparam[1], node->iparam[2],
                                          ks_tensor_f32(y), ks_tensor_f32(gy[0]),
                                          ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type log_softmax_type = {"log_softmax", log_softmax_backward};

static ks_var *softmax_common(ks_ctx *ctx, const char *fn, ks_var *x, int axis, int log) {
  const ks_backend_ops *be;
  if (!x) return NULL;
  if (unary_check(ctx, fn, x, &be)) return NULL;
  if (log ? (KS__NEED(fn, be, log_softmax_forward) || KS__NEED(fn, be, log_softmax_backward))
          : (KS__NEED(fn, be, softmax_forward) || KS__NEED(fn, be, softmax_backward)))
    return NULL;
  int64_t outer = 1, c = 0, inner = 1;
  if (split_axis(fn, x->data, axis, &outer, &c, &inner)) return NULL;
  ks_tensor *y = ks_ctx_tensor_like(ctx, x->data);
  if (!y) return NULL;
  if (y->size)
    (log ? be->log_softmax_forward : be->softmax_forward)(outer, c, inner, ks_tensor_f32(x->data),
                                                          ks_tensor_f32(y));
  ks_node *node;
  if (ks__node(ctx, log ? &log_softmax_type : &softmax_type, 1, &x, &node)) return NULL;
  if (node) {
    node->iparam[0] = outer;
    node->iparam[1] = c;
    node->iparam[2] = inner;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_softmax(ks_ctx *ctx, ks_var *x, int axis) {
  return softmax_common(ctx, "ks_softmax", x, axis, 0);
}

ks_var *ks_log_softmax(ks_ctx *ctx, ks_var *x) {
  return softmax_common(ctx, "ks_log_softmax", x, 1, 1);
}
