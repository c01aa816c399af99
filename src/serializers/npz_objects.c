/*
 * src/serializers/npz_objects.c — save/load of links and optimizers through
 * the npz writer/reader, with Chainer's key names.
 *
 * Loads are two-phase: phase 1 checks every key and reads every value into
 * scratch buffers; phase 2 (which cannot fail except for a lazy parameter's
 * allocation, done before any copy) writes them into the object.
 *
 * A link's persistent values (BatchNormalization's avg_mean, avg_var, N)
 * are saved after its parameters under their paths, float32 tensors as
 * '<f4' and integers as 0-d '<i8', as Chainer's save_npz writes them.
 */
#include "kusari/serializers.h"
#include "kusari/error.h"
#include "links/link_impl.h"
#include "optimizers/optimizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A float scalar stored for an integer (a step, an epoch, BatchNormalization's
 * N): converted only when it lies in int64's range, since the file is outside
 * input and converting NaN or a value out of range is undefined behaviour. */
static int float_to_i64(const char *key, double d, int64_t *out) {
  /* -2^63 is exact as a double; 2^63 is the first value above INT64_MAX */
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
    return ks_error_set(KS_EFORMAT, "key '%s': value %g is not a 64-bit integer (a counter or step was "
                        "expected; the file is corrupt or was not written for this object)", key, d);
  *out = (int64_t)d;
  return KS_OK;
}

static char *join(const char *prefix, const char *path, const char *suffix) {
  prefix = prefix ? prefix : "";
  suffix = suffix ? suffix : "";
  size_t n = strlen(prefix) + strlen(path) + strlen(suffix) + 1;
  char *s = malloc(n);
  if (!s) { ks_error_set(KS_ENOMEM, "out of memory"); return NULL; }
  snprintf(s, n, "%s%s%s", prefix, path, suffix);
  return s;
}

/* ---------------------------------------------------------------------------- */
/* links */

int ks_npz_write_link(ks_npz_writer *w, const char *prefix, ks_link *link) {
  if (!w || !link) return ks_error_set(KS_EINVAL, "ks_npz_write_link: NULL argument");
  int n = 0;
  ks_flat_entry *f = ks__link_flat(link, &n);
  if (!f) return ks_error_last_code();
  for (int i = 0; i < n; i++)
    if (!f[i].param->initialized)
      return ks_error_set(KS_ESTATE, "cannot save parameter '%s': it is not initialized yet "
                          "(run a forward pass first)", f[i].path);
  for (int i = 0; i < n; i++) {
    char *key = join(prefix, f[i].path, NULL);
    if (!key) return ks_error_last_code();
    int rc = ks_npz_writer_add_tensor(w, key, &f[i].param->data);
    free(key);
    if (rc != KS_OK) return rc;
  }
  /* persistent values ("bn/avg_mean", "bn/N", ...) after the parameters */
  int np = 0;
  ks_persist_entry *pl = ks__link_persist_list(link, &np);
  if (!pl && ks_link_num_persistents(link) > 0) return ks_error_last_code();
  int rc = KS_OK;
  for (int i = 0; i < np && rc == KS_OK; i++) {
    char *key = join(prefix, pl[i].path, NULL);
    if (!key) { rc = ks_error_last_code(); break; }
    rc = pl[i].p->is_int ? ks_npz_writer_add_int64(w, key, pl[i].p->ival)
                         : ks_npz_writer_add_tensor(w, key, pl[i].p->t);
    free(key);
  }
  ks__persist_list_free(pl, np);
  return rc;
}

int ks_save_npz_ex(const char *path, ks_link *link, int compress) {
  ks_npz_writer *w = NULL;
  int rc = ks_npz_writer_open(&w, path, compress);
  if (rc != KS_OK) return rc;
  rc = ks_npz_write_link(w, NULL, link);
  if (rc != KS_OK) { ks_npz_writer_discard(w); return rc; }
  return ks_npz_writer_commit(w);
}

int ks_save_npz(const char *path, ks_link *link) { return ks_save_npz_ex(path, link, 1); }

int ks_npz_read_link(ks_npz_reader *r, const char *prefix, ks_link *link, int strict) {
  if (!r || !link) return ks_error_set(KS_EINVAL, "ks_npz_read_link: NULL argument");
  int n = 0;
  ks_flat_entry *f = ks__link_flat(link, &n);
  if (!f) return ks_error_last_code();
  float **vals = calloc((size_t)(n ? n : 1), sizeof *vals);
  ks_npz_info *infos = calloc((size_t)(n ? n : 1), sizeof *infos);
  char *allocated = calloc((size_t)(n ? n : 1), 1);
  ks_persist_entry *pl = NULL;
  int np = 0;
  float **pvals = NULL;
  int64_t *pints = NULL;
  char *pfound = NULL;
  int rc = KS_OK;
  if (!vals || !infos || !allocated) { rc = ks_error_set(KS_ENOMEM, "out of memory loading parameters"); goto out; }

  /* phase 1: validate and read everything */
  for (int i = 0; i < n && rc == KS_OK; i++) {
    ks_param *p = f[i].param;
    char *key = join(prefix, f[i].path, NULL);
    if (!key) { rc = ks_error_last_code(); break; }
    ks_npz_info *in = &infos[i];
    rc = ks_npz_reader_info(r, key, in);
    if (rc == KS_ENOTFOUND && !strict) { rc = KS_OK; free(key); continue; }
    if (rc == KS_ENOTFOUND) {
      rc = ks_error_set(KS_ENOTFOUND, "key '%s' (parameter '%s') not found in the npz file", key, f[i].path);
    } else if (rc == KS_OK) {
      char a[128], b[128];
      int ok = p->initialized ? (in->ndim == p->data.ndim && ks_shape_size(in->ndim, in->shape) == p->data.size &&
                                 memcmp(in->shape, p->data.shape, (size_t)in->ndim * sizeof(int64_t)) == 0)
                              : ks__param_shape_ok(p, in->ndim, in->shape);
      if (!ok) {
        if (p->initialized) ks_shape_str(p->data.ndim, p->data.shape, b, sizeof b);
        else snprintf(b, sizeof b, "(uninitialized, rank %d)", p->hint_ndim);
        rc = ks_error_set(KS_ESHAPE, "key '%s': shape %s in the file, %s in the link", key,
                          ks_shape_str(in->ndim, in->shape, a, sizeof a), b);
      } else if (in->dtype != KS_NPZ_F4 && in->dtype != KS_NPZ_F8 && in->dtype != KS_NPZ_I4 && in->dtype != KS_NPZ_I8) {
        rc = ks_error_set(KS_ESHAPE, "key '%s': unsupported dtype", key);
      } else {
        vals[i] = malloc((size_t)(in->size ? in->size : 1) * sizeof(float));
        if (!vals[i]) rc = ks_error_set(KS_ENOMEM, "out of memory loading '%s'", key);
        else rc = ks_npz_reader_read(r, key, KS_NPZ_F4, vals[i], in->size);
      }
    }
    free(key);
  }
  if (rc != KS_OK) goto out;

  /* phase 1b: persistent values */
  pl = ks__link_persist_list(link, &np);
  if (!pl && ks_link_num_persistents(link) > 0) { rc = ks_error_last_code(); goto out; }
  if (np) {
    pvals = calloc((size_t)np, sizeof *pvals);
    pints = calloc((size_t)np, sizeof *pints);
    pfound = calloc((size_t)np, 1);
    if (!pvals || !pints || !pfound) { rc = ks_error_set(KS_ENOMEM, "out of memory loading persistent values"); goto out; }
  }
  for (int i = 0; i < np && rc == KS_OK; i++) {
    ks_persistent *p = pl[i].p;
    char *key = join(prefix, pl[i].path, NULL);
    if (!key) { rc = ks_error_last_code(); break; }
    ks_npz_info in;
    rc = ks_npz_reader_info(r, key, &in);
    if (rc == KS_ENOTFOUND && !strict) {
      rc = KS_OK;
    } else if (rc == KS_ENOTFOUND) {
      rc = ks_error_set(KS_ENOTFOUND, "key '%s' (persistent value '%s') not found in the npz file", key,
                        pl[i].path);
    } else if (rc == KS_OK && p->is_int) {
      if (in.size != 1) {
        rc = ks_error_set(KS_ESHAPE, "key '%s': expected a scalar, got %lld elements", key, (long long)in.size);
      } else if (in.dtype == KS_NPZ_F4 || in.dtype == KS_NPZ_F8) {
        double d;
        rc = ks_npz_reader_read(r, key, KS_NPZ_F8, &d, 1);
        if (rc == KS_OK) rc = float_to_i64(key, d, &pints[i]);
      } else {
        rc = ks_npz_reader_read(r, key, KS_NPZ_I8, &pints[i], 1);
      }
      if (rc == KS_OK) pfound[i] = 1;
    } else if (rc == KS_OK) {
      char a[128], b[128];
      if (in.ndim != p->t->ndim || memcmp(in.shape, p->t->shape, (size_t)in.ndim * sizeof(int64_t)) != 0) {
        rc = ks_error_set(KS_ESHAPE, "key '%s': shape %s in the file, %s in the link", key,
                          ks_shape_str(in.ndim, in.shape, a, sizeof a),
                          ks_shape_str(p->t->ndim, p->t->shape, b, sizeof b));
      } else {
        pvals[i] = malloc((size_t)(in.size ? in.size : 1) * sizeof(float));
        rc = pvals[i] ? ks_npz_reader_read(r, key, KS_NPZ_F4, pvals[i], in.size)
                      : ks_error_set(KS_ENOMEM, "out of memory loading '%s'", key);
        if (rc == KS_OK) pfound[i] = 1;
      }
    }
    free(key);
  }
  if (rc != KS_OK) goto out;

  /* phase 2a: allocate lazy parameters (the only step that can still fail) */
  for (int i = 0; i < n; i++) {
    ks_param *p = f[i].param;
    if (!vals[i] || p->initialized) continue;
    rc = ks__param_alloc(p, infos[i].ndim, infos[i].shape);
    if (rc != KS_OK) {
      /* undo this load's earlier lazy allocations so the link is unchanged */
      for (int j = 0; j < i; j++) {
        ks_param *q = f[j].param;
        if (!allocated[j]) continue;
        ks__param_uninit(q);
      }
      goto out;
    }
    allocated[i] = 1;
    p->initialized = 1;
    ks__link_invalidate(p->owner);
  }
  /* phase 2b: copy */
  for (int i = 0; i < n; i++)
    if (vals[i]) (void)ks_tensor_from_host(&f[i].param->data, vals[i]); /* any device */
  for (int i = 0; i < np; i++) {
    if (!pfound[i]) continue;
    if (pl[i].p->is_int) pl[i].p->ival = pints[i];
    else (void)ks_tensor_from_host(pl[i].p->t, pvals[i]);
  }

out:
  if (pvals) for (int i = 0; i < np; i++) free(pvals[i]);
  free(pvals);
  free(pints);
  free(pfound);
  ks__persist_list_free(pl, np);
  if (vals) for (int i = 0; i < n; i++) free(vals[i]);
  free(vals);
  free(infos);
  free(allocated);
  return rc;
}

int ks_load_npz(const char *path, ks_link *link) {
  if (!link) return ks_error_set(KS_EINVAL, "ks_load_npz: link is NULL");
  ks_npz_reader *r = NULL;
  int rc = ks_npz_reader_open(&r, path);
  if (rc != KS_OK) return rc;
  rc = ks_npz_read_link(r, NULL, link, 1);
  ks_npz_reader_close(r);
  return rc;
}

/* ---------------------------------------------------------------------------- */
/* optimizers */

int ks_npz_write_optimizer(ks_npz_writer *w, const char *prefix, ks_optimizer *opt) {
  if (!w || !opt) return ks_error_set(KS_EINVAL, "ks_npz_write_optimizer: NULL argument");
  if (!opt->target) return ks_error_set(KS_ESTATE, "optimizer has no target: call ks_optimizer_setup first");
  char *k;
  int rc;
  if (!(k = join(prefix, "t", NULL))) return ks_error_last_code();
  rc = ks_npz_writer_add_int64(w, k, opt->t);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = join(prefix, "epoch", NULL))) return ks_error_last_code();
  rc = ks_npz_writer_add_int64(w, k, opt->epoch);
  free(k);
  if (rc != KS_OK) return rc;
  if (opt->ready && (rc = ks_optimizer_prepare(opt)) != KS_OK) return rc;
  int n = 0;
  ks_flat_entry *f = ks__link_flat(opt->target, &n);
  if (!f) return ks_error_last_code();
  int ns = ks_optimizer_num_states(opt);
  for (int i = 0; i < n; i++) {
    if (!(k = join(prefix, f[i].path, "/t"))) return ks_error_last_code();
    rc = ks_npz_writer_add_int64(w, k, opt->ready ? opt->param_t[i] : 0);
    free(k);
    if (rc != KS_OK) return rc;
    if (!opt->ready) continue; /* Chainer: state None before the first update */
    const ks_tensor *pd = &f[i].param->data;
    for (int s = 0; s < ns; s++) {
      char suffix[16];
      snprintf(suffix, sizeof suffix, "/%s", ks_optimizer_state_name(opt, s));
      if (!(k = join(prefix, f[i].path, suffix))) return ks_error_last_code();
      rc = ks_npz_writer_add(w, k, KS_NPZ_F4, pd->ndim, pd->shape, ks_optimizer_state(opt, s, i));
      free(k);
      if (rc != KS_OK) return rc;
    }
  }
  return KS_OK;
}

int ks_save_npz_optimizer(const char *path, ks_optimizer *opt) {
  ks_npz_writer *w = NULL;
  int rc = ks_npz_writer_open(&w, path, 1);
  if (rc != KS_OK) return rc;
  rc = ks_npz_write_optimizer(w, NULL, opt);
  if (rc != KS_OK) { ks_npz_writer_discard(w); return rc; }
  return ks_npz_writer_commit(w);
}

static int read_scalar(ks_npz_reader *r, const char *key, int strict, int64_t *out, int *found) {
  ks_npz_info in;
  *found = 0;
  int rc = ks_npz_reader_info(r, key, &in);
  if (rc == KS_ENOTFOUND && !strict) return KS_OK;
  if (rc == KS_ENOTFOUND) return ks_error_set(KS_ENOTFOUND, "key '%s' not found in the npz file", key);
  if (rc != KS_OK) return rc;
  if (in.size != 1) return ks_error_set(KS_ESHAPE, "key '%s': expected a scalar, got %lld elements", key, (long long)in.size);
  if (in.dtype == KS_NPZ_F4 || in.dtype == KS_NPZ_F8) {
    double d;
    rc = ks_npz_reader_read(r, key, KS_NPZ_F8, &d, 1);
    if (rc == KS_OK) rc = float_to_i64(key, d, out);
  } else {
    rc = ks_npz_reader_read(r, key, KS_NPZ_I8, out, 1);
  }
  if (rc == KS_OK) *found = 1;
  return rc;
}

int ks_npz_read_optimizer(ks_npz_reader *r, const char *prefix, ks_optimizer *opt, int strict) {
  if (!r || !opt) return ks_error_set(KS_EINVAL, "ks_npz_read_optimizer: NULL argument");
  if (!opt->target) return ks_error_set(KS_ESTATE, "optimizer has no target: call ks_optimizer_setup first");
  int ns = ks_optimizer_num_states(opt);
  int64_t t = opt->t, epoch = opt->epoch;
  int ft = 0, fe = 0, rc;
  char *k;
  if (!(k = join(prefix, "t", NULL))) return ks_error_last_code();
  rc = read_scalar(r, k, strict, &t, &ft);
  free(k);
  if (rc != KS_OK) return rc;
  if (!(k = join(prefix, "epoch", NULL))) return ks_error_last_code();
  rc = read_scalar(r, k, strict, &epoch, &fe);
  free(k);
  if (rc != KS_OK) return rc;

  /* the state must exist to receive values: pack the target if needed */
  if ((rc = ks_optimizer_prepare(opt)) != KS_OK) return rc;
  int n = opt->n_params;
  ks_pack *pk = opt->target->pack;
  int64_t *pt = calloc((size_t)(n ? n : 1), sizeof *pt);
  int *pt_found = calloc((size_t)(n ? n : 1), sizeof *pt_found);
  float **vals = calloc((size_t)(n ? n : 1) * KS_OPT_MAX_STATES, sizeof *vals);
  if (!pt || !pt_found || !vals) { rc = ks_error_set(KS_ENOMEM, "out of memory loading optimizer state"); goto out; }
  int nf = 0;
  ks_flat_entry *f = ks__link_flat(opt->target, &nf);
  if (!f || nf != n) { rc = ks_error_set(KS_ESTATE, "optimizer target changed"); goto out; }
  for (int i = 0; i < n && rc == KS_OK; i++) {
    ks_param *p = pk->params[i];
    if (!(k = join(prefix, f[i].path, "/t"))) { rc = ks_error_last_code(); break; }
    rc = read_scalar(r, k, strict, &pt[i], &pt_found[i]);
    free(k);
    for (int s = 0; s < ns && rc == KS_OK; s++) {
      char suffix[16];
      snprintf(suffix, sizeof suffix, "/%s", ks_optimizer_state_name(opt, s));
      if (!(k = join(prefix, f[i].path, suffix))) { rc = ks_error_last_code(); break; }
      ks_npz_info in;
      rc = ks_npz_reader_info(r, k, &in);
      if (rc == KS_ENOTFOUND) {
        rc = KS_OK; /* saved before the first update: state starts fresh (zeros) */
      } else if (rc == KS_OK) {
        char a[128], b[128];
        if (in.ndim != p->data.ndim || memcmp(in.shape, p->data.shape, (size_t)in.ndim * sizeof(int64_t)) != 0) {
          rc = ks_error_set(KS_ESHAPE, "key '%s': shape %s in the file, %s in the optimizer", k,
                            ks_shape_str(in.ndim, in.shape, a, sizeof a),
                            ks_shape_str(p->data.ndim, p->data.shape, b, sizeof b));
        } else {
          float *v = malloc((size_t)(in.size ? in.size : 1) * sizeof(float));
          vals[(size_t)i * KS_OPT_MAX_STATES + (size_t)s] = v;
          rc = v ? ks_npz_reader_read(r, k, KS_NPZ_F4, v, in.size)
                 : ks_error_set(KS_ENOMEM, "out of memory loading '%s'", k);
        }
      }
      free(k);
    }
  }
  if (rc != KS_OK) goto out;
  /* apply */
  if (ft) opt->t = t;
  if (fe) opt->epoch = epoch;
  for (int i = 0; i < n; i++) {
    if (pt_found[i]) opt->param_t[i] = pt[i];
    for (int s = 0; s < ns; s++) {
      float *v = vals[(size_t)i * KS_OPT_MAX_STATES + (size_t)s];
      float *dst = opt->state[s] + pk->offsets[i];
      if (v) memcpy(dst, v, (size_t)pk->params[i]->data.size * sizeof(float));
      else if (pt_found[i]) memset(dst, 0, (size_t)pk->params[i]->data.size * sizeof(float));
    }
  }
out:
  if (vals) for (int i = 0; i < n * KS_OPT_MAX_STATES; i++) free(vals[i]);
  free(vals);
  free(pt);
  free(pt_found);
  return rc;
}

int ks_load_npz_optimizer(const char *path, ks_optimizer *opt) {
  if (!opt) return ks_error_set(KS_EINVAL, "ks_load_npz_optimizer: optimizer is NULL");
  ks_npz_reader *r = NULL;
  int rc = ks_npz_reader_open(&r, path);
  if (rc != KS_OK) return rc;
  rc = ks_npz_read_optimizer(r, NULL, opt, 1);
  ks_npz_reader_close(r);
  return rc;
}
