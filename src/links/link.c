/*
 * src/links/link.c — the Link base: named parameters, named children,
 * namedparams paths, grad clearing, copyparams and the flat pack.
 *
 * Parameters are kept sorted by name and a Chain's children by name, so the
 * cached flat list (ks__link_flat) is Chainer's namedparams() order without a
 * sort per call. The cache is rebuilt when the tree changes.
 */
#include "link_impl.h"
#include "kusari/error.h"
#include "kusari/backend.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_pack_id;

/* ---------------------------------------------------------------------------- */
/* allocation helpers */

static float *alloc_floats(int64_t n) {
  size_t bytes = (size_t)n * sizeof(float);
  size_t alloc = (bytes + 63) & ~(size_t)63;
  float *p = aligned_alloc(64, alloc ? alloc : 64);
  if (!p) { ks_error_set(KS_ENOMEM, "out of memory allocating %zu bytes of parameters", bytes); return NULL; }
  memset(p, 0, alloc ? alloc : 64);
  return p;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static int check_name(const char *what, const char *name) {
  if (!name || !*name) return ks_error_set(KS_EINVAL, "%s name is empty", what);
  if (strchr(name, '/')) return ks_error_set(KS_EINVAL, "%s name '%s' contains '/'", what, name);
  return KS_OK;
}

ks_link *ks__link_alloc(const char *type_name) {
  ks_link *l = calloc(1, sizeof *l);
  if (!l) { ks_error_set(KS_ENOMEM, "out of memory creating a link"); return NULL; }
  l->type_name = type_name;
  return l;
}

ks_link *ks_chain_new(void) { return ks__link_alloc("Chain"); }

static void flat_clear(ks_link *l) {
  for (int i = 0; i < l->n_flat; i++) free(l->flat[i].path);
  free(l->flat);
  l->flat = NULL;
  l->n_flat = 0;
  l->flat_valid = 0;
}

static void pack_free(ks_pack *pk) {
  if (!pk) return;
  free(pk->data);
  free(pk->grad);
  free(pk->params);
  free(pk->offsets);
  free(pk);
}

/* A parameter's own buffer lives on its device (ks_link_to_device). */
static void own_free(ks_device dev, void *ptr) {
  const ks_backend_ops *be = ptr ? ks_backend_for_device(dev) : NULL;
  if (be) be->free(ptr);
  else free(ptr);
}

static void param_free(ks_param *p) {
  if (!p) return;
  own_free(p->data.device, p->own_data);
  own_free(p->data.device, p->own_grad);
  free(p->name);
  free(p->path);
  free(p);
}

static void persist_free(ks_persistent *p) {
  if (!p) return;
  ks_tensor_free(p->t);
  free(p->name);
  free(p);
}

static ks_persistent *find_persist(const ks_link *link, const char *name) {
  for (int i = 0; i < link->n_persists; i++)
    if (strcmp(link->persists[i]->name, name) == 0) return link->persists[i];
  return NULL;
}

void ks_link_free(ks_link *link) {
  if (!link || link->parent) return; /* children are freed by their parent */
  for (int i = 0; i < link->n_children; i++) {
    link->children[i]->parent = NULL; /* so the child frees itself fully */
    ks_link_free(link->children[i]);
    free(link->child_names[i]);
  }
  free(link->children);
  free(link->child_names);
  for (int i = 0; i < link->n_params; i++) param_free(link->params[i]);
  free(link->params);
  for (int i = 0; i < link->n_persists; i++) persist_free(link->persists[i]);
  free(link->persists);
  flat_clear(link);
  pack_free(link->pack);
  if (link->free_impl) link->free_impl(link);
  free(link->name);
  free(link);
}

void ks__link_invalidate(ks_link *link) {
  for (ks_link *l = link; l; l = l->parent) l->flat_valid = 0;
}

ks_param *ks__param_of_var(ks_var *v) {
  return (ks_param *)(void *)((char *)v - offsetof(ks_param, var));
}

/* ---------------------------------------------------------------------------- */
/* children */

int ks_link_add_child(ks_link *parent, const char *name, ks_link *child) {
  if (!child) {
    int code = ks_error_last_code();
    return code ? code : ks_error_set(KS_EINVAL, "ks_link_add_child: child is NULL");
  }
  int rc;
  if (!parent) { rc = ks_error_set(KS_EINVAL, "ks_link_add_child: parent is NULL"); goto fail; }
  if ((rc = check_name("child", name)) != KS_OK) goto fail;
  if (child->parent || child == parent) {
    rc = ks_error_set(KS_EINVAL, "link '%s' already has a parent", child->name ? child->name : "");
    goto fail;
  }
  for (ks_link *a = parent; a; a = a->parent)
    if (a == child) { rc = ks_error_set(KS_EINVAL, "adding '%s' would make a cycle", name); goto fail; }
  for (int i = 0; i < parent->n_children; i++)
    if (strcmp(parent->child_names[i], name) == 0) {
      rc = ks_error_set(KS_EINVAL, "link already has a child named '%s'", name);
      goto fail;
    }
  for (int i = 0; i < parent->n_params; i++)
    if (strcmp(parent->params[i]->name, name) == 0) {
      rc = ks_error_set(KS_EINVAL, "link already has a parameter named '%s'", name);
      goto fail;
    }
  if (find_persist(parent, name)) {
    rc = ks_error_set(KS_EINVAL, "link already has a persistent value named '%s'", name);
    goto fail;
  }
  if (parent->n_children == parent->cap_children) {
    int cap = parent->cap_children ? 2 * parent->cap_children : 4;
    ks_link **c = realloc(parent->children, (size_t)cap * sizeof *c);
    if (!c) { rc = ks_error_set(KS_ENOMEM, "out of memory adding a child"); goto fail; }
    parent->children = c;
    char **nm = realloc(parent->child_names, (size_t)cap * sizeof *nm);
    if (!nm) { rc = ks_error_set(KS_ENOMEM, "out of memory adding a child"); goto fail; }
    parent->child_names = nm;
    parent->cap_children = cap;
  }
  char *n1 = dupstr(name), *n2 = dupstr(name);
  if (!n1 || !n2) { free(n1); free(n2); rc = ks_error_set(KS_ENOMEM, "out of memory"); goto fail; }
  int pos = parent->n_children;
  if (!parent->ordered_children)
    while (pos > 0 && strcmp(parent->child_names[pos - 1], name) > 0) pos--;
  memmove(parent->children + pos + 1, parent->children + pos,
          (size_t)(parent->n_children - pos) * sizeof *parent->children);
  memmove(parent->child_names + pos + 1, parent->child_names + pos,
          (size_t)(parent->n_children - pos) * sizeof *parent->child_names);
  parent->children[pos] = child;
  parent->child_names[pos] = n1;
  parent->n_children++;
  free(child->name);
  child->name = n2;
  child->parent = parent;
  ks__link_invalidate(parent);
  return KS_OK;

fail:
  ks_link_free(child);
  return rc;
}

ks_link *ks_link_child(const ks_link *link, const char *name) {
  if (!link || !name) return NULL;
  for (int i = 0; i < link->n_children; i++)
    if (strcmp(link->child_names[i], name) == 0) return link->children[i];
  return NULL;
}

int ks_link_num_children(const ks_link *link) { return link ? link->n_children : 0; }

ks_link *ks_link_child_at(const ks_link *link, int i, const char **name) {
  if (!link || i < 0 || i >= link->n_children) return NULL;
  if (name) *name = link->child_names[i];
  return link->children[i];
}

const char *ks_link_name(const ks_link *link) { return link && link->name ? link->name : ""; }
const char *ks_link_type_name(const ks_link *link) { return link ? link->type_name : ""; }

void ks_link_set_forward(ks_link *link, ks_link_forward_fn forward, void *user) {
  if (!link) return;
  link->forward = forward;
  link->user = user;
}

void *ks_link_user(const ks_link *link) { return link ? link->user : NULL; }

ks_var *ks_link_forward(ks_ctx *ctx, ks_link *link, ks_var *x) {
  if (!x) return NULL;
  if (!link) { ks_error_set(KS_EINVAL, "ks_link_forward: link is NULL"); return NULL; }
  if (!link->forward) {
    ks_error_set(KS_EUNSUPPORTED, "link '%s' (%s) has no forward", ks_link_name(link), link->type_name);
    return NULL;
  }
  return link->forward(ctx, link, x);
}

/* ---------------------------------------------------------------------------- */
/* parameters */

static ks_param *find_param(const ks_link *link, const char *name) {
  for (int i = 0; i < link->n_params; i++)
    if (strcmp(link->params[i]->name, name) == 0) return link->params[i];
  return NULL;
}

int ks__param_shape_ok(const ks_param *p, int ndim, const int64_t *shape) {
  if (p->hint_ndim < 0) return 1;
  if (p->hint_ndim != ndim) return 0;
  for (int i = 0; i < ndim; i++)
    if (p->hint_shape[i] >= 0 && p->hint_shape[i] != shape[i]) return 0;
  return 1;
}

int ks__param_alloc(ks_param *p, int ndim, const int64_t *shape) {
  int64_t n = ks_shape_size(ndim, shape);
  if (n < 0) return ks_error_last_code();
  float *d = alloc_floats(n), *g = alloc_floats(n);
  if (!d || !g) { free(d); free(g); return ks_error_last_code(); }
  const ks_device old_dev = p->data.device;
  ks_tensor_view_init(&p->data, KS_F32, ndim, shape, d);
  ks_tensor_view_init(&p->grad, KS_F32, ndim, shape, g);
  own_free(old_dev, p->own_data);
  own_free(old_dev, p->own_grad);
  p->own_data = d;
  p->own_grad = g;
  p->pack = NULL;
  p->initialized = 1;
  p->var.grad_valid = 0;
  return KS_OK;
}

void ks__param_uninit(ks_param *p) {
  const int64_t none[1] = {0};
  own_free(p->data.device, p->own_data);
  own_free(p->data.device, p->own_grad);
  p->own_data = p->own_grad = NULL;
  p->initialized = 0;
  p->var.grad_valid = 0;
  ks_tensor_view_init(&p->data, KS_F32, 1, none, NULL);
  ks_tensor_view_init(&p->grad, KS_F32, 1, none, NULL);
}

static char *hint_str(const ks_param *p, char *buf, size_t n) {
  size_t off = 0;
  off += (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < p->hint_ndim && off < n; i++) {
    if (p->hint_shape[i] >= 0) off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)p->hint_shape[i]);
    else off += (size_t)snprintf(buf + off, n - off, i ? ", ?" : "?");
  }
  if (off < n) snprintf(buf + off, n - off, p->hint_ndim == 1 ? ",)" : ")");
  return buf;
}

ks_var *ks_link_add_param(ks_link *link, const char *name, int ndim, const int64_t *shape,
                          const ks_initializer *init, ks_rng *rng) {
  if (!link) { ks_error_set(KS_EINVAL, "ks_link_add_param: link is NULL"); return NULL; }
  if (check_name("parameter", name) != KS_OK) return NULL;
  if (ndim > KS_MAX_DIMS) { ks_error_set(KS_EINVAL, "parameter '%s': rank %d > %d", name, ndim, KS_MAX_DIMS); return NULL; }
  if (find_param(link, name) || ks_link_child(link, name) || find_persist(link, name)) {
    ks_error_set(KS_EINVAL, "link already has a parameter, child or persistent value named '%s'", name);
    return NULL;
  }
  if (link->n_params == link->cap_params) {
    int cap = link->cap_params ? 2 * link->cap_params : 4;
    ks_param **ps = realloc(link->params, (size_t)cap * sizeof *ps);
    if (!ps) { ks_error_set(KS_ENOMEM, "out of memory adding a parameter"); return NULL; }
    link->params = ps;
    link->cap_params = cap;
  }
  ks_param *p = calloc(1, sizeof *p);
  if (!p || !(p->name = dupstr(name))) {
    free(p);
    ks_error_set(KS_ENOMEM, "out of memory adding a parameter");
    return NULL;
  }
  p->owner = link;
  p->hint_ndim = -1;
  int lazy = ndim < 0;
  for (int i = 0; i < ndim; i++)
    if (!shape || shape[i] < 0) lazy = 1;
  if (!lazy) {
    if (ks__param_alloc(p, ndim, shape) != KS_OK) { param_free(p); return NULL; }
    ks_initializer zero = ks_init_zero();
    if (ks_initializer_apply(init ? init : &zero, &p->data, rng) != KS_OK) { param_free(p); return NULL; }
  } else {
    /* lazy: remember what is known; data/grad stay empty (shape (0,),
     * NULL data) so code reading nbytes of an uninitialized one reads 0 */
    const int64_t none[1] = {0};
    ks_tensor_view_init(&p->data, KS_F32, 1, none, NULL);
    ks_tensor_view_init(&p->grad, KS_F32, 1, none, NULL);
    if (ndim >= 0) {
      p->hint_ndim = ndim;
      for (int i = 0; i < ndim; i++) p->hint_shape[i] = shape ? shape[i] : -1;
    }
  }
  ks_var_param_init(&p->var, &p->data, &p->grad, p->name);
  int pos = link->n_params;
  while (pos > 0 && strcmp(link->params[pos - 1]->name, name) > 0) pos--;
  memmove(link->params + pos + 1, link->params + pos, (size_t)(link->n_params - pos) * sizeof *link->params);
  link->params[pos] = p;
  link->n_params++;
  ks__link_invalidate(link);
  return &p->var;
}

int ks_link_param_initialize(ks_link *link, const char *name, int ndim, const int64_t *shape,
                             const ks_initializer *init, ks_rng *rng) {
  if (!link || !name) return ks_error_set(KS_EINVAL, "ks_link_param_initialize: NULL argument");
  ks_param *p = find_param(link, name);
  if (!p) return ks_error_set(KS_ENOTFOUND, "link '%s' has no parameter '%s'", ks_link_name(link), name);
  if (p->initialized) return ks_error_set(KS_ESTATE, "parameter '%s' is already initialized", name);
  if (ndim < 0 || ndim > KS_MAX_DIMS) return ks_error_set(KS_EINVAL, "parameter '%s': bad rank %d", name, ndim);
  if (!ks__param_shape_ok(p, ndim, shape)) {
    char a[128], b[128];
    return ks_error_set(KS_ESHAPE, "parameter '%s': shape %s does not fit the known shape %s", name,
                        ks_shape_str(ndim, shape, a, sizeof a), hint_str(p, b, sizeof b));
  }
  int rc = ks__param_alloc(p, ndim, shape);
  if (rc != KS_OK) return rc;
  ks_initializer zero = ks_init_zero();
  rc = ks_initializer_apply(init ? init : &zero, &p->data, rng);
  if (rc != KS_OK) {
    const int64_t none[1] = {0};
    free(p->own_data); free(p->own_grad);
    p->own_data = p->own_grad = NULL;
    p->initialized = 0;
    ks_tensor_view_init(&p->data, KS_F32, 1, none, NULL);
    ks_tensor_view_init(&p->grad, KS_F32, 1, none, NULL);
    return rc;
  }
  ks__link_invalidate(link);
  return KS_OK;
}

int ks_link_param_is_initialized(const ks_var *param) {
  return param && param->is_param && ks__param_of_var((ks_var *)param)->initialized;
}

/* ---------------------------------------------------------------------------- */
/* namedparams */

static int flat_count(const ks_link *l) {
  int n = l->n_params;
  for (int i = 0; i < l->n_children; i++) n += flat_count(l->children[i]);
  return n;
}

/* Visits the parameters (persistent = 0) or the persistent values (1) of l
 * and its descendants in namedparams order, each with its full path
 * ("l1/W", malloc'd, handed to the visitor). */
typedef int (*path_visit)(void *arg, const ks_link *owner, int index, char *path);

static char *path_join(const char *prefix, const char *name, const char *suffix) {
  size_t n = strlen(prefix) + strlen(name) + strlen(suffix) + 1;
  char *s = malloc(n);
  if (s) snprintf(s, n, "%s%s%s", prefix, name, suffix);
  return s;
}

static int walk_paths(const ks_link *l, const char *prefix, int persistent, path_visit visit,
                      void *arg) {
  const int n = persistent ? l->n_persists : l->n_params;
  for (int i = 0; i < n; i++) {
    char *s = path_join(prefix, persistent ? l->persists[i]->name : l->params[i]->name, "");
    if (!s) return ks_error_set(KS_ENOMEM, "out of memory");
    int rc = visit(arg, l, i, s);
    if (rc != KS_OK) return rc;
  }
  for (int i = 0; i < l->n_children; i++) {
    char *s = path_join(prefix, l->child_names[i], "/");
    if (!s) return ks_error_set(KS_ENOMEM, "out of memory");
    int rc = walk_paths(l->children[i], s, persistent, visit, arg);
    free(s);
    if (rc != KS_OK) return rc;
  }
  return KS_OK;
}

typedef struct flat_fill_job { ks_flat_entry *out; int k; } flat_fill_job;

static int flat_visit(void *arg, const ks_link *owner, int index, char *path) {
  flat_fill_job *j = arg;
  j->out[j->k].path = path;
  j->out[j->k].param = owner->params[index];
  j->k++;
  return KS_OK;
}

static int flat_fill(const ks_link *l, ks_flat_entry *out, int *k) {
  flat_fill_job j = {out, *k};
  int rc = walk_paths(l, "", 0, flat_visit, &j);
  *k = j.k;
  return rc;
}

ks_flat_entry *ks__link_flat(ks_link *link, int *n) {
  if (!link->flat_valid) {
    flat_clear(link);
    int total = flat_count(link), k = 0;
    link->flat = calloc((size_t)(total ? total : 1), sizeof *link->flat);
    if (!link->flat) { ks_error_set(KS_ENOMEM, "out of memory"); *n = 0; return NULL; }
    link->n_flat = total;
    if (flat_fill(link, link->flat, &k) != KS_OK) { flat_clear(link); *n = 0; return NULL; }
    link->flat_valid = 1;
    /* the root's paths double as the parameters' full paths for messages */
    if (!link->parent) {
      for (int i = 0; i < total; i++) {
        ks_param *p = link->flat[i].param;
        char *s = dupstr(link->flat[i].path);
        if (s) { free(p->path); p->path = s; p->var.name = p->path; }
      }
    }
  }
  *n = link->n_flat;
  return link->flat;
}

int ks_link_num_params(ks_link *link) {
  int n = 0;
  if (!link) return 0;
  ks__link_flat(link, &n);
  return n;
}

int64_t ks_link_count_params(ks_link *link) {
  int n = 0;
  if (!link) return 0;
  ks_flat_entry *f = ks__link_flat(link, &n);
  int64_t total = 0;
  for (int i = 0; i < n; i++)
    if (f[i].param->initialized) total += f[i].param->data.size;
  return total;
}

ks_var *ks_link_param_at(ks_link *link, int i, const char **path) {
  int n = 0;
  if (!link) return NULL;
  ks_flat_entry *f = ks__link_flat(link, &n);
  if (!f || i < 0 || i >= n) return NULL;
  if (path) *path = f[i].path;
  return &f[i].param->var;
}

ks_var *ks_link_param(ks_link *link, const char *path) {
  if (!link || !path) return NULL;
  const char *slash = strchr(path, '/');
  if (!slash) {
    ks_param *p = find_param(link, path);
    return p ? &p->var : NULL;
  }
  char head[256];
  size_t len = (size_t)(slash - path);
  if (len >= sizeof head) return NULL;
  memcpy(head, path, len);
  head[len] = '\0';
  ks_link *c = ks_link_child(link, head);
  return c ? ks_link_param(c, slash + 1) : NULL;
}

int ks_link_namedparams(ks_link *link, int include_uninit,
                        int (*fn)(const char *path, ks_var *param, void *user), void *user) {
  int n = 0;
  if (!link || !fn) return ks_error_set(KS_EINVAL, "ks_link_namedparams: NULL argument");
  ks_flat_entry *f = ks__link_flat(link, &n);
  if (!f) return ks_error_last_code();
  for (int i = 0; i < n; i++) {
    if (!include_uninit && !f[i].param->initialized) continue;
    int rc = fn(f[i].path, &f[i].param->var, user);
    if (rc) return rc;
  }
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* grads */

void ks_link_cleargrads(ks_link *link) {
  if (!link) return;
  for (int i = 0; i < link->n_params; i++) ks_var_cleargrad(&link->params[i]->var);
  for (int i = 0; i < link->n_children; i++) ks_link_cleargrads(link->children[i]);
}

static void zerograds_rec(ks_link *l, const ks_pack *skip) {
  for (int i = 0; i < l->n_params; i++) {
    ks_param *p = l->params[i];
    if (!p->initialized) continue;
    if (!skip || p->pack != skip) memset(p->grad.data, 0, ks_tensor_nbytes(&p->grad));
    p->var.grad_valid = 1;
  }
  for (int i = 0; i < l->n_children; i++) zerograds_rec(l->children[i], skip);
}

void ks_link_zerograds(ks_link *link) {
  if (!link) return;
  if (link->pack) memset(link->pack->grad, 0, (size_t)link->pack->size * sizeof(float));
  zerograds_rec(link, link->pack);
}

int ks_link_copyparams(ks_link *dst, ks_link *src) {
  if (!dst || !src) return ks_error_set(KS_EINVAL, "ks_link_copyparams: NULL link");
  int nd = 0, ns = 0;
  ks_flat_entry *fd = ks__link_flat(dst, &nd);
  if (!fd) return ks_error_last_code();
  ks_flat_entry *fs = ks__link_flat(src, &ns);
  if (!fs) return ks_error_last_code();
  /* validate first */
  for (int i = 0; i < nd; i++) {
    ks_var *sv = ks_link_param(src, fd[i].path);
    if (!sv) return ks_error_set(KS_ENOTFOUND, "copyparams: source has no parameter '%s'", fd[i].path);
    ks_param *sp = ks__param_of_var(sv), *dp = fd[i].param;
    if (!sp->initialized) {
      if (dp->initialized)
        return ks_error_set(KS_ESTATE, "copyparams: source parameter '%s' is not initialized", fd[i].path);
      continue;
    }
    if (dp->initialized ? !ks_tensor_same_shape(&dp->data, &sp->data)
                        : !ks__param_shape_ok(dp, sp->data.ndim, sp->data.shape)) {
      char a[128], b[128];
      return ks_error_set(KS_ESHAPE, "copyparams: '%s' has shape %s in the source and %s in the destination",
                          fd[i].path, ks_shape_str(sp->data.ndim, sp->data.shape, a, sizeof a),
                          dp->initialized ? ks_shape_str(dp->data.ndim, dp->data.shape, b, sizeof b)
                                          : hint_str(dp, b, sizeof b));
    }
  }
  /* persistent values (Chainer's copyparams(copy_persistent=True)) */
  int npd = 0;
  ks_persist_entry *pd = ks__link_persist_list(dst, &npd);
  if (!pd && ks_link_num_persistents(dst) > 0) return ks_error_last_code();
  for (int i = 0; i < npd; i++) {
    ks_persistent *dp = pd[i].p, *sp = ks__link_persistent_at(src, pd[i].path);
    int rc = KS_OK;
    if (!sp)
      rc = ks_error_set(KS_ENOTFOUND, "copyparams: source has no persistent value '%s'", pd[i].path);
    else if (sp->is_int != dp->is_int || (!dp->is_int && !ks_tensor_same_shape(sp->t, dp->t)))
      rc = ks_error_set(KS_ESHAPE, "copyparams: persistent value '%s' differs in kind or shape",
                        pd[i].path);
    if (rc != KS_OK) { ks__persist_list_free(pd, npd); return rc; }
  }
  for (int i = 0; i < nd; i++) {
    ks_param *sp = ks__param_of_var(ks_link_param(src, fd[i].path)), *dp = fd[i].param;
    if (!sp->initialized) continue;
    if (!dp->initialized) {
      int rc = ks__param_alloc(dp, sp->data.ndim, sp->data.shape);
      if (rc != KS_OK) return rc;
      ks__link_invalidate(dp->owner);
    }
    memcpy(dp->data.data, sp->data.data, ks_tensor_nbytes(&sp->data));
  }
  for (int i = 0; i < npd; i++) {
    ks_persistent *dp = pd[i].p, *sp = ks__link_persistent_at(src, pd[i].path);
    if (dp->is_int) dp->ival = sp->ival;
    else memcpy(dp->t->data, sp->t->data, ks_tensor_nbytes(sp->t));
  }
  ks__persist_list_free(pd, npd);
  return KS_OK;
}

/* ---------------------------------------------------------------------------- */
/* packing */

static void detach_packs(ks_link *l, ks_pack ***list, int *n, int *cap) {
  if (l->pack) {
    if (*n == *cap) {
      int c = *cap ? 2 * *cap : 4;
      ks_pack **nl = realloc(*list, (size_t)c * sizeof *nl);
      if (!nl) return; /* leak-free fallback: the pack stays attached */
      *list = nl;
      *cap = c;
    }
    (*list)[(*n)++] = l->pack;
    l->pack = NULL;
  }
  for (int i = 0; i < l->n_children; i++) detach_packs(l->children[i], list, n, cap);
}

int ks_link_pack(ks_link *root) {
  if (!root) return ks_error_set(KS_EINVAL, "ks_link_pack: link is NULL");
  int n = 0;
  ks_flat_entry *f = ks__link_flat(root, &n);
  if (!f) return ks_error_last_code();
  for (int i = 0; i < n; i++)
    if (!f[i].param->initialized)
      return ks_error_set(KS_ESTATE, "cannot pack: parameter '%s' is not initialized yet "
                          "(run a forward pass first)", f[i].path);
  for (int i = 0; i < n; i++)
    if (f[i].param->data.device.type != KS_DEVICE_CPU)
      return ks_error_set(KS_EUNSUPPORTED, "cannot pack: parameter '%s' is on device %d:%d and "
                          "the flat pack (and so the optimizers) hold host memory only so far",
                          f[i].path, (int)f[i].param->data.device.type, f[i].param->data.device.id);
  ks_pack *pk = calloc(1, sizeof *pk);
  if (!pk) return ks_error_set(KS_ENOMEM, "out of memory packing parameters");
  pk->params = calloc((size_t)(n ? n : 1), sizeof *pk->params);
  pk->offsets = calloc((size_t)(n ? n : 1), sizeof *pk->offsets);
  if (!pk->params || !pk->offsets) { pack_free(pk); return ks_error_set(KS_ENOMEM, "out of memory packing parameters"); }
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    pk->params[i] = f[i].param;
    pk->offsets[i] = off;
    off += (f[i].param->data.size + 15) & ~(int64_t)15;
  }
  pk->size = off;
  pk->n = n;
  pk->root = root;
  pk->data = alloc_floats(off);
  pk->grad = alloc_floats(off);
  if (!pk->data || !pk->grad) { pack_free(pk); return ks_error_last_code(); }
  pk->id = __atomic_add_fetch(&g_pack_id, 1, __ATOMIC_RELAXED);

  for (int i = 0; i < n; i++) {
    ks_param *p = f[i].param;
    float *d = pk->data + pk->offsets[i], *g = pk->grad + pk->offsets[i];
    memcpy(d, p->data.data, ks_tensor_nbytes(&p->data));
    if (p->var.grad_valid) memcpy(g, p->grad.data, ks_tensor_nbytes(&p->grad));
  }
  /* every old buffer is copied: swing the pointers, then release old storage */
  ks_pack **old = NULL;
  int n_old = 0, cap_old = 0;
  detach_packs(root, &old, &n_old, &cap_old);
  for (int i = 0; i < n; i++) {
    ks_param *p = f[i].param;
    p->data.data = pk->data + pk->offsets[i];
    p->grad.data = pk->grad + pk->offsets[i];
    free(p->own_data);
    free(p->own_grad);
    p->own_data = p->own_grad = NULL;
    p->pack = pk;
  }
  for (int i = 0; i < n_old; i++) pack_free(old[i]);
  free(old);
  root->pack = pk;
  return KS_OK;
}

int ks_link_is_packed(ks_link *root) {
  if (!root || !root->pack) return 0;
  int n = 0;
  ks_flat_entry *f = ks__link_flat(root, &n);
  if (!f || n != root->pack->n) return 0;
  for (int i = 0; i < n; i++)
    if (f[i].param->pack != root->pack || root->pack->params[i] != f[i].param) return 0;
  return 1;
}

float *ks_link_pack_data(ks_link *root, int64_t *size) {
  if (size) *size = root && root->pack ? root->pack->size : 0;
  return root && root->pack ? root->pack->data : NULL;
}

float *ks_link_pack_grad(ks_link *root, int64_t *size) {
  if (size) *size = root && root->pack ? root->pack->size : 0;
  return root && root->pack ? root->pack->grad : NULL;
}

int64_t ks_link_pack_offset(ks_link *root, int i) {
  if (!root || !root->pack || i < 0 || i >= root->pack->n) return -1;
  return root->pack->offsets[i];
}


/* ---------------------------------------------------------------------------- */
/* persistent values */

static ks_persistent *persist_add(ks_link *link, const char *name) {
  if (!link) { ks_error_set(KS_EINVAL, "ks_link_add_persistent: link is NULL"); return NULL; }
  if (check_name("persistent value", name) != KS_OK) return NULL;
  if (find_param(link, name) || ks_link_child(link, name) || find_persist(link, name)) {
    ks_error_set(KS_EINVAL, "link already has a parameter, child or persistent value named '%s'", name);
    return NULL;
  }
  if (link->n_persists == link->cap_persists) {
    int cap = link->cap_persists ? 2 * link->cap_persists : 4;
    ks_persistent **ps = realloc(link->persists, (size_t)cap * sizeof *ps);
    if (!ps) { ks_error_set(KS_ENOMEM, "out of memory adding a persistent value"); return NULL; }
    link->persists = ps;
    link->cap_persists = cap;
  }
  ks_persistent *p = calloc(1, sizeof *p);
  if (!p || !(p->name = dupstr(name))) {
    free(p);
    ks_error_set(KS_ENOMEM, "out of memory adding a persistent value");
    return NULL;
  }
  p->owner = link;
  return p;
}

static void persist_insert(ks_link *link, ks_persistent *p) {
  int pos = link->n_persists;
  while (pos > 0 && strcmp(link->persists[pos - 1]->name, p->name) > 0) pos--;
  memmove(link->persists + pos + 1, link->persists + pos,
          (size_t)(link->n_persists - pos) * sizeof *link->persists);
  link->persists[pos] = p;
  link->n_persists++;
}

ks_tensor *ks_link_add_persistent(ks_link *link, const char *name, int ndim, const int64_t *shape,
                                  double fill) {
  if (ndim < 0 || ndim > KS_MAX_DIMS || (ndim > 0 && !shape)) {
    ks_error_set(KS_EINVAL, "persistent value '%s': bad rank %d", name ? name : "", ndim);
    return NULL;
  }
  ks_persistent *p = persist_add(link, name);
  if (!p) return NULL;
  p->t = ks_tensor_new(KS_F32, ndim, shape);
  if (!p->t) { persist_free(p); return NULL; }
  float *d = ks_tensor_f32(p->t);
  for (int64_t i = 0; i < p->t->size; i++) d[i] = (float)fill;
  persist_insert(link, p);
  return p->t;
}

int64_t *ks_link_add_persistent_int(ks_link *link, const char *name, int64_t value) {
  ks_persistent *p = persist_add(link, name);
  if (!p) return NULL;
  p->is_int = 1;
  p->ival = value;
  persist_insert(link, p);
  return &p->ival;
}

ks_persistent *ks__link_persistent_at(ks_link *link, const char *path) {
  if (!link || !path) return NULL;
  const char *slash = strchr(path, '/');
  if (!slash) return find_persist(link, path);
  char head[256];
  size_t len = (size_t)(slash - path);
  if (len >= sizeof head) return NULL;
  memcpy(head, path, len);
  head[len] = '\0';
  return ks__link_persistent_at(ks_link_child(link, head), slash + 1);
}

ks_tensor *ks_link_persistent(ks_link *link, const char *path) {
  ks_persistent *p = ks__link_persistent_at(link, path);
  return p && !p->is_int ? p->t : NULL;
}

int64_t *ks_link_persistent_int(ks_link *link, const char *path) {
  ks_persistent *p = ks__link_persistent_at(link, path);
  return p && p->is_int ? &p->ival : NULL;
}

static int persist_count(const ks_link *l) {
  int n = l->n_persists;
  for (int i = 0; i < l->n_children; i++) n += persist_count(l->children[i]);
  return n;
}

typedef struct persist_fill_job { ks_persist_entry *out; int k; } persist_fill_job;

static int persist_visit(void *arg, const ks_link *owner, int index, char *path) {
  persist_fill_job *j = arg;
  j->out[j->k].path = path;
  j->out[j->k].p = owner->persists[index];
  j->k++;
  return KS_OK;
}

static int persist_fill(const ks_link *l, ks_persist_entry *out, int *k) {
  persist_fill_job j = {out, *k};
  int rc = walk_paths(l, "", 1, persist_visit, &j);
  *k = j.k;
  return rc;
}

void ks__persist_list_free(ks_persist_entry *list, int n) {
  if (!list) return;
  for (int i = 0; i < n; i++) free(list[i].path);
  free(list);
}

ks_persist_entry *ks__link_persist_list(ks_link *link, int *n) {
  *n = 0;
  int total = link ? persist_count(link) : 0, k = 0;
  if (!total) return NULL;
  ks_persist_entry *list = calloc((size_t)total, sizeof *list);
  if (!list) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  if (persist_fill(link, list, &k) != KS_OK) { ks__persist_list_free(list, k); return NULL; }
  *n = total;
  return list;
}

int ks_link_num_persistents(ks_link *link) { return link ? persist_count(link) : 0; }

int ks_link_namedpersistents(ks_link *link,
                             int (*fn)(const char *path, ks_tensor *t, int64_t *ival, void *user),
                             void *user) {
  if (!link || !fn) return ks_error_set(KS_EINVAL, "ks_link_namedpersistents: NULL argument");
  int n = 0;
  ks_persist_entry *list = ks__link_persist_list(link, &n);
  if (!list && persist_count(link)) return ks_error_last_code();
  int rc = KS_OK;
  for (int i = 0; i < n && rc == KS_OK; i++)
    rc = fn(list[i].path, list[i].p->is_int ? NULL : list[i].p->t,
            list[i].p->is_int ? &list[i].p->ival : NULL, user);
  ks__persist_list_free(list, n);
  return rc;
}
