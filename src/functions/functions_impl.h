/*
 * src/functions/functions_impl.h — helpers shared by the differentiable
 * functions: argument checks with messages that name the function and the
 * shapes, kernel lookup through the backend table, and node recording that
 * tells "no graph needed" apart from "out of memory".
 *
 * Every function in src/functions follows the same steps:
 *   1. NULL input -> return NULL (error message untouched);
 *   2. validate dtypes and shapes (KS_ESHAPE / KS_EINVAL, message names the
 *      function and both shapes);
 *   3. fetch the backend of the first input and check that every kernel the
 *      forward *and* backward need is there (KS_EUNSUPPORTED otherwise), so a
 *      backward never finds a missing kernel;
 *   4. allocate the output from the ctx arena, compute it through the table;
 *   5. record the node (ks__node) and save what backward needs only when a
 *      node exists; wrap the output (ks_node_output).
 */
#ifndef KUSARI_FUNCTIONS_IMPL_H
#define KUSARI_FUNCTIONS_IMPL_H

#include "kusari/functions.h"
#include "kusari/backend.h"
#include "kusari/error.h"

#define KS__SHAPE_BUF 96

/* "(2, 3)" for t into a caller buffer of KS__SHAPE_BUF bytes */
char *ks__shape(const ks_tensor *t, char *buf);

/* KS_ESHAPE unless t is float32 ("ks_relu: x must be float32, got int32 (2, 3)") */
int ks__check_dtype(const char *fn, const char *arg, const ks_tensor *t, ks_dtype want);
/* KS_ESHAPE "fn: a (2, 3) and b (4,) <why>" */
int ks__fail_shapes(const char *fn, const char *an, const ks_tensor *a, const char *bn,
                    const ks_tensor *b, const char *why);
/* KS_EINVAL for a NULL ctx */
int ks__check_ctx(const char *fn, const ks_ctx *ctx);

/* Backend of t, or NULL with KS_EUNSUPPORTED when the device has none. */
const ks_backend_ops *ks__backend(const char *fn, const ks_tensor *t);
/* KS_EUNSUPPORTED "fn: backend 'cpu' lacks kernel k" when member is NULL */
int ks__need(const char *fn, const ks_backend_ops *be, const void *member, const char *k);
#define KS__NEED(fn, be, member) ks__need(fn, be, (const void *)(be)->member, #member)

/* Records a node like ks_node_new; *out is NULL when no graph is needed.
 * Returns KS_OK, or an error when a node was needed but could not be made. */
int ks__node(ks_ctx *ctx, const ks_fn_type *type, int n_in, ks_var *const *in, ks_node **out);

/* Reads a float32 scalar (e.g. the gradient of a loss) into host memory. */
float ks__scalar(const ks_backend_ops *be, const ks_tensor *t);

/* Arena tensor viewing 'data' of 'src' under a new shape (no copy). */
ks_tensor *ks__ctx_view(ks_ctx *ctx, const ks_tensor *src, int ndim, const int64_t *shape);

#endif
