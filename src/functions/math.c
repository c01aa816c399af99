/*
 * src/functions/math.c — add, sub, mul, scale, matmul (chainer.functions.math).
 *
 * add/sub/mul take a and b of equal shapes, or a b whose shape is a trailing
 * suffix of a's ((N, C) + (C,)), or a b of size 1 (a scalar). The result has
 * a's shape. The backward of a broadcast b sums the gradient over the rows
 * it was repeated on (col_sum).
 */
#include "functions_impl.h"

/* ---- broadcasting binary ops ------------------------------------------------------- */

enum { OP_ADD, OP_SUB, OP_MUL };

/* iparam[0] = op, iparam[1] = rows n, iparam[2] = row length m (b's size) */
static int binary_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const int op = (int)node->iparam[0];
  const int64_t n = node->iparam[1], m = node->iparam[2];
  const float *g = ks_tensor_f32(gy[0]);
  const ks_tensor *a = node->in[0]->data, *b = node->in[1]->data;
  if (gx[0]) {
    if (op == OP_MUL) be->mul(n, m, g, ks_tensor_f32(b), ks_tensor_f32(gx[0]));
    else be->copy(gx[0]->data, g, (size_t)gy[0]->size * sizeof(float));
  }
  if (gx[1]) {
    const float *src = g;
    if (op == OP_MUL) {
      /* d(a*b)/db summed over rows: col_sum(gy * a) */
      ks_tensor *t = ks_ctx_tensor_like(ctx, gy[0]);
      if (!t) return ks_error_last_code();
      be->mul(1, t->size, g, ks_tensor_f32(a), ks_tensor_f32(t));
      src = ks_tensor_f32(t);
    }
    if (n == 1) be->copy(gx[1]->data, src, (size_t)m * sizeof(float));
    else be->col_sum(n, m, src, ks_tensor_f32(gx[1]));
    if (op == OP_SUB) be->scale(m, -1.0f, ks_tensor_f32(gx[1]), ks_tensor_f32(gx[1]));
  }
  return KS_OK;
}
static const ks_fn_type add_type = {"add", binary_backward};
static const ks_fn_type sub_type = {"sub", binary_backward};
static const ks_fn_type mul_type = {"mul", binary_backward};

static ks_var *binary(ks_ctx *ctx, const char *fn, int op, ks_var *a, ks_var *b) {
  if (!a || !b) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "a", a->data, KS_F32) ||
      ks__check_dtype(fn, "b", b->data, KS_F32))
    return NULL;
  const ks_tensor *at = a->data, *bt = b->data;
  int ok = bt->size == 1 || ks_tensor_same_shape(at, bt);
  if (!ok && bt->ndim <= at->ndim) {
    ok = 1;
    for (int i = 0; i < bt->ndim; i++)
      if (bt->shape[i] != at->shape[at->ndim - bt->ndim + i]) ok = 0;
  }
  if (!ok) {
    ks__fail_shapes(fn, "a", at, "b", bt,
                    "do not broadcast (b must have a's shape, a trailing part of it, or size 1)");
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, at);
  if (!be || KS__NEED(fn, be, add) || KS__NEED(fn, be, sub) || KS__NEED(fn, be, mul) ||
      KS__NEED(fn, be, copy) || KS__NEED(fn, be, col_sum) || KS__NEED(fn, be, scale))
    return NULL;
  const int64_t m = bt->size, n = m ? at->size / m : 0;
  ks_tensor *y = ks_ctx_tensor_like(ctx, at);
  if (!y) return NULL;
  void (*k)(int64_t, int64_t, const float *, const float *, float *) =
      op == OP_ADD ? be->add : op == OP_SUB ? be->sub : be->mul;
  k(n, m, ks_tensor_f32(at), ks_tensor_f32(bt), ks_tensor_f32(y));
  ks_node *node;
  ks_var *in[2] = {a, b};
  const ks_fn_type *type = op == OP_ADD ? &add_type : op == OP_SUB ? &sub_type : &mul_type;
  if (ks__node(ctx, type, 2, in, &node)) return NULL;
  if (node) {
    node->iparam[0] = op;
    node->iparam[1] = n;
    node->iparam[2] = m;
  }
  return ks_node_output(ctx, node, y);
}

ks_var *ks_add(ks_ctx *ctx, ks_var *a, ks_var *b) { return binary(ctx, "ks_add", OP_ADD, a, b); }
ks_var *ks_sub(ks_ctx *ctx, ks_var *a, ks_var *b) { return binary(ctx, "ks_sub", OP_SUB, a, b); }
ks_var *ks_mul(ks_ctx *ctx, ks_var *a, ks_var *b) { return binary(ctx, "ks_mul", OP_MUL, a, b); }

/* ---- scale ------------------------------------------------------------------------ */

static int scale_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  ks_backend_for(gy[0])->scale(gy[0]->size, (float)node->fparam[0], ks_tensor_f32(gy[0]),
                               ks_tensor_f32(gx[0]));
  return KS_OK;
}
static const ks_fn_type scale_type = {"scale", scale_backward};

ks_var *ks_scale(ks_ctx *ctx, ks_var *x, double alpha) {
  static const char *fn = "ks_scale";
  if (!x) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "x", x->data, KS_F32)) return NULL;
  const ks_backend_ops *be = ks__backend(fn, x->data);
  if (!be || KS__NEED(fn, be, scale)) return NULL;
  ks_tensor *y = ks_ctx_tensor_like(ctx, x->data);
  if (!y) return NULL;
  be->scale(y->size, (float)alpha, ks_tensor_f32(x->data), ks_tensor_f32(y));
  ks_node *node;
  if (ks__node(ctx, &scale_type, 1, &x, &node)) return NULL;
  if (node) node->fparam[0] = alpha;
  return ks_node_output(ctx, node, y);
}

/* ---- matmul -------------------------------------------------------------------- */

/* y (M, N) = op(a) op(b), op(a) (M, K); iparam = {trans_a, trans_b, M, N} */
static int matmul_backward(ks_ctx *ctx, ks_node *node, ks_tensor *const *gy, ks_tensor **gx) {
  const ks_backend_ops *be = ks_backend_for(gy[0]);
  const int ta = (int)node->iparam[0], tb = (int)node->iparam[1];
  const ks_tensor *a = node->in[0]->data, *b = node->in[1]->data;
  const int64_t M = node->iparam[2], N = node->iparam[3], K = ta ? a->shape[0] : a->shape[1];
  const int64_t lda = a->shape[1], ldb = b->shape[1];
  const float *g = ks_tensor_f32(gy[0]);
  if (gx[0]) {
    if (!M || !K) {
    } else if (!N) {
      be->fill(gx[0]->size, 0.0f, ks_tensor_f32(gx[0]));
    } else if (!ta) { /* ga (M, K) = gy op(b)^T */
      be->gemm(0, !tb, M, K, N, 1.0f, g, N, ks_tensor_f32(b), ldb, 0.0f, ks_tensor_f32(gx[0]), K);
    } else {          /* ga (K, M) = op(b) gy^T */
      be->gemm(tb, 1, K, M, N, 1.0f, ks_tensor_f32(b), ldb, g, N, 0.0f, ks_tensor_f32(gx[0]), M);
    }
  }
  if (gx[1]) {
    if (!K || !N) {
    } else if (!M) {
      be->fill(gx[1]->size, 0.0f, ks_tensor_f32(gx[1]));
    } else if (!tb) { /* gb (K, N) = op(a)^T gy */
      be->gemm(!ta, 0, K, N, M, 1.0f, ks_tensor_f32(a), lda, g, N, 0.0f, ks_tensor_f32(gx[1]), N);
    } else {          /* gb (N, K) = gy^T op(a) */
      be->gemm(1, ta, N, K, M, 1.0f, g, N, ks_tensor_f32(a), lda, 0.0f, ks_tensor_f32(gx[1]), K);
    }
  }
  return KS_OK;
}

static const ks_fn_type matmul_type = {"matmul", matmul_backward};

ks_var *ks_matmul(ks_ctx *ctx, ks_var *a, ks_var *b, int trans_a, int trans_b) {
  static const char *fn = "ks_matmul";
  if (!a || !b) return NULL;
  if (ks__check_ctx(fn, ctx) || ks__check_dtype(fn, "a", a->data, KS_F32) ||
      ks__check_dtype(fn, "b", b->data, KS_F32))
    return NULL;
  const ks_tensor *at = a->data, *bt = b->data;
  if (at->ndim != 2 || bt->ndim != 2) {
    ks__fail_shapes(fn, "a", at, "b", bt, "must both be 2-d");
    return NULL;
  }
  const int64_t M = trans_a ? at->shape[1] : at->shape[0];
  const int64_t K = trans_a ? at->shape[0] : at->shape[1];
  const int64_t Kb = trans_b ? bt->shape[1] : bt->shape[0];
  const int64_t N = trans_b ? bt->shape[0] : bt->shape[1];
  if (K != Kb) {
    ks__fail_shapes(fn, "a", at, "b", bt,
                    trans_a || trans_b ? "do not match (inner dimensions differ after transposes)"
                                       : "do not match (a.shape[1] != b.shape[0])");
    return NULL;
  }
  const ks_backend_ops *be = ks__backend(fn, at);
  if (!be) return NULL;
  ks_tensor *y = ks_ctx_tensor(ctx, KS_F32, 2, (int64_t[]){M, N});
  if (!y) return NULL;
  if (M && N && K)
    be->gemm(!!trans_a, !!trans_b, M, N, K, 1.0f, ks_tensor_f32(at), at->shape[1],
             ks_tensor_f32(bt), bt->shape[1], 0.0f, ks_tensor_f32(y), N);
  else
    be->fill(y->size, 0.0f, ks_tensor_f32(y));

  ks_node *node;
  ks_var *in[2] = {a, b};
  if (ks__node(ctx, &matmul_type, 2, in, &node)) return NULL;
  if (node) {
    node->iparam[0] = !!trans_a;
    node->iparam[1] = !!trans_b;
    node->iparam[2] = M;
    node->iparam[3] = N;
  }
  return ks_node_output(ctx, node, y);
}
