/*
 * src/datasets/dataset.c — ks_dataset: an (images, labels) TupleDataset, its
 * subsets and the batch gather used as the converter of every iteration.
 */
#include "kusari/datasets.h"

#include <stdlib.h>
#include <string.h>

#include "backend/pool.h"      /* ks__parallel_for */
#include "kusari/backend.h"    /* ks_get_num_threads */
#include "kusari/error.h"      /* ks_error_set, KS_E* */

static int dataset_wrap(ks_tensor *images, ks_tensor *labels, ks_dataset **out)
{
  ks_dataset *ds = malloc(sizeof *ds);
  if (!ds)
    return ks_error_set(KS_ENOMEM, "cannot allocate a dataset");
  ds->images = images;
  ds->labels = labels;
  ds->size = labels->shape[0];
  ds->row_size = ds->size > 0 ? images->size / ds->size : 1;
  if (ds->size == 0) {
    ds->row_size = 1;
    for (int i = 1; i < images->ndim; i++)
      ds->row_size *= images->shape[i];
  }
  *out = ds;
  return KS_OK;
}

int ks_dataset_from_tensors(ks_tensor *images, ks_tensor *labels, ks_dataset **out)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_dataset_from_tensors: out is NULL");
  *out = NULL;
  if (!images || !labels)
    return ks_error_set(KS_EINVAL, "ks_dataset_from_tensors: images or labels is NULL");
  if (images->dtype != KS_F32 || images->ndim < 1)
    return ks_error_set(KS_ESHAPE, "dataset images must be float32 with ndim >= 1, got %s ndim %d",
                        ks_dtype_name(images->dtype), images->ndim);
  if (labels->dtype != KS_I32 || labels->ndim != 1)
    return ks_error_set(KS_ESHAPE, "dataset labels must be int32 of shape (N,), got %s ndim %d",
                        ks_dtype_name(labels->dtype), labels->ndim);
  if (images->shape[0] != labels->shape[0])
    return ks_error_set(KS_ESHAPE, "dataset has %lld images but %lld labels",
                        (long long)images->shape[0], (long long)labels->shape[0]);
  return dataset_wrap(images, labels, out);
}

int ks_dataset_load_idx(const char *images_path, const char *labels_path, int ndim,
                        ks_dataset **out)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_dataset_load_idx: out is NULL");
  *out = NULL;
  ks_tensor *x = NULL, *t = NULL;
  int rc = ks_idx_read_images(images_path, ndim, &x);
  if (rc)
    goto cleanup;
  rc = ks_idx_read_labels(labels_path, &t);
  if (rc)
    goto cleanup;
  if (x->shape[0] != t->shape[0]) {
    rc = ks_error_set(KS_EFORMAT, "image and label counts disagree: %s has %lld images, %s has %lld labels",
                      images_path, (long long)x->shape[0], labels_path, (long long)t->shape[0]);
    goto cleanup;
  }
  rc = dataset_wrap(x, t, out);
  if (rc)
    goto cleanup;
  return KS_OK;

cleanup:
  ks_tensor_free(x);
  ks_tensor_free(t);
  return rc;
}

void ks_dataset_free(ks_dataset *ds)
{
  if (!ds)
    return;
  ks_tensor_free(ds->images);
  ks_tensor_free(ds->labels);
  free(ds);
}

int ks_dataset_subset(const ks_dataset *src, int64_t start, int64_t n, ks_dataset **out)
{
  if (!out)
    return ks_error_set(KS_EINVAL, "ks_dataset_subset: out is NULL");
  *out = NULL;
  if (!src)
    return ks_error_set(KS_EINVAL, "ks_dataset_subset: src is NULL");
  if (start < 0 || n < 0 || start > src->size || n > src->size - start)
    return ks_error_set(KS_EINVAL, "ks_dataset_subset: range [%lld, %lld) outside the dataset of %lld examples",
                        (long long)start, (long long)start + (long long)n, (long long)src->size);
  int64_t shape[KS_MAX_DIMS];
  memcpy(shape, src->images->shape, sizeof shape);
  shape[0] = n;
  ks_tensor *x = ks_tensor_from_data(KS_F32, src->images->ndim, shape,
                                     ks_tensor_f32(src->images) + start * src->row_size);
  if (!x)
    return ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
  int64_t lshape[1] = {n};
  ks_tensor *t = ks_tensor_from_data(KS_I32, 1, lshape, ks_tensor_i32(src->labels) + start);
  if (!t) {
    ks_tensor_free(x);
    return ks_error_last_code() ? ks_error_last_code() : KS_ENOMEM;
  }
  int rc = dataset_wrap(x, t, out);
  if (rc) {
    ks_tensor_free(x);
    ks_tensor_free(t);
  }
  if (!rc)
    (*out)->row_size = src->row_size;
  return rc;
}

/* The gather is the converter of every iteration: n random rows of a
 * dataset far larger than the caches (Fashion-MNIST's training images are
 * 188 MB of float32), so it waits on memory. Two measures (bench/RESULTS.md):
 * each row's cache lines are prefetched a few rows ahead, so several rows are
 * in flight instead of one, and big batches are copied by the thread pool in
 * contiguous pieces of rows (a copy gives the same bits on any thread count).
 * Indices are all checked before anything is copied, so a bad index leaves
 * x and t untouched. */
#define KS_GATHER_AHEAD 2          /* rows prefetched ahead of the copy       */
#define KS_GATHER_MIN_ROWS 32      /* rows per piece when split over threads  */

typedef struct gather_job {
  const ks_dataset *ds;
  const int64_t *idx;
  int64_t n, per;
  float *x;
  int32_t *t;
} gather_job;

static void gather_rows(void *arg, int64_t piece) {
  const gather_job *j = arg;
  const int64_t row = j->ds->row_size;
  const float *images = ks_tensor_f32(j->ds->images);
  const int32_t *labels = ks_tensor_i32(j->ds->labels);
  const size_t row_bytes = (size_t)row * sizeof(float);
  const int64_t lo = piece * j->per, hi = lo + j->per < j->n ? lo + j->per : j->n;
  for (int64_t k = lo; k < hi; k++) {
    if (j->x) {
      if (k + KS_GATHER_AHEAD < hi) {
        const char *ahead = (const char *)(images + j->idx[k + KS_GATHER_AHEAD] * row);
        for (size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(ahead + b, 0, 3);
      }
      memcpy(j->x + k * row, images + j->idx[k] * row, row_bytes);
    }
    if (j->t) j->t[k] = labels[j->idx[k]];
  }
}

int ks_dataset_gather(const ks_dataset *ds, const int64_t *idx, int64_t n, float *x, int32_t *t)
{
  if (!ds || (n > 0 && !idx) || n < 0)
    return ks_error_set(KS_EINVAL, "ks_dataset_gather: NULL dataset/indices or negative count");
  const int64_t size = ds->size;
  for (int64_t k = 0; k < n; k++)
    if ((uint64_t)idx[k] >= (uint64_t)size)
      return ks_error_set(KS_EINVAL, "ks_dataset_gather: index %lld at position %lld is outside 0..%lld",
                          (long long)idx[k], (long long)k, (long long)size - 1);
  if (n == 0) return KS_OK;
  int threads = ks_get_num_threads();
  int64_t pieces = n / KS_GATHER_MIN_ROWS;
  if (pieces > threads) pieces = threads;
  if (pieces < 1 || !x) pieces = 1;
  gather_job j = {ds, idx, n, (n + pieces - 1) / pieces, x, t};
  ks__parallel_for((n + j.per - 1) / j.per, threads, gather_rows, &j);
  return KS_OK;
}

int ks_dataset_gather_tensors(const ks_dataset *ds, const int64_t *idx, int64_t n,
                              ks_tensor *x, ks_tensor *t)
{
  if (!ds)
    return ks_error_set(KS_EINVAL, "ks_dataset_gather_tensors: dataset is NULL");
  if (x) {
    int64_t row = 1;
    for (int i = 1; i < x->ndim; i++)
      row *= x->shape[i];
    if (x->dtype != KS_F32 || x->ndim < 1 || x->shape[0] < n || row != ds->row_size) {
      char buf[96];
      return ks_error_set(KS_ESHAPE, "ks_dataset_gather_tensors: x is %s %s, need float32 with at least %lld rows of %lld",
                          ks_dtype_name(x->dtype), ks_shape_str(x->ndim, x->shape, buf, sizeof buf),
                          (long long)n, (long long)ds->row_size);
    }
  }
  if (t && (t->dtype != KS_I32 || t->ndim != 1 || t->shape[0] < n)) {
    char buf[96];
    return ks_error_set(KS_ESHAPE, "ks_dataset_gather_tensors: t is %s %s, need int32 (N,) with N >= %lld",
                        ks_dtype_name(t->dtype), ks_shape_str(t->ndim, t->shape, buf, sizeof buf),
                        (long long)n);
  }
  return ks_dataset_gather(ds, idx, n, x ? ks_tensor_f32(x) : NULL, t ? ks_tensor_i32(t) : NULL);
}
