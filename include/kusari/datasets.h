/*
 * kusari/datasets.h — MNIST-format (IDX) data and a TupleDataset-like pair.
 *
 * Implements what chainer.datasets.get_mnist(withlabel=True, ndim=...) gives a
 * Chainer program: float32 images scaled to [0, 1] and int32 labels, read from
 * IDX files (http://yann.lecun.com/exdb/mnist/ format), raw or gzip-compressed
 * (zlib's gzread reads both, so a file may be either whatever its name says).
 *
 * Pixel scaling is Chainer's bit for bit: Chainer computes
 * `images.astype(float32); images *= 1.0 / 255.`, i.e. a float32 multiply by
 * float32(1/255), which is not always the correctly rounded x / 255. We do the
 * same, so a model trained here sees exactly the inputs Chainer would.
 *
 * Errors (return codes of kusari/error.h; the message always names the file):
 *   KS_ENOTFOUND  the file (or a directory's MNIST file) does not exist
 *   KS_EIO        the file exists but cannot be opened or read
 *   KS_EFORMAT    bad magic, wrong element type code, dimensions that make no
 *                 sense, truncated or corrupt (gzip) data, image and label
 *                 counts that disagree, label values outside 0..255 (never)
 *   KS_EINVAL     bad arguments (NULL pointers, ndim not 1/2/3, bad ranges)
 *   KS_ENOMEM     allocation failed
 */
#ifndef KUSARI_DATASETS_H
#define KUSARI_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "kusari/tensor.h"   /* ks_tensor, ks_dtype */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files ------------------------------------------------------------ */

/* Reads an IDX3 unsigned-byte image file (magic 0x00000803: N, rows, cols)
 * into a new heap float32 tensor with values float32(x) * float32(1/255).
 * ndim picks the shape as Chainer's get_mnist does:
 *   1 -> (N, rows*cols)   2 -> (N, rows, cols)   3 -> (N, 1, rows, cols)
 * On success *out owns the tensor (free with ks_tensor_free); on failure
 * *out is NULL and the error is set. */
int ks_idx_read_images(const char *path, int ndim, ks_tensor **out);

/* Reads an IDX1 unsigned-byte label file (magic 0x00000801: N) into a new
 * heap int32 tensor of shape (N,). Same ownership and errors as above. */
int ks_idx_read_labels(const char *path, ks_tensor **out);

/* ---- datasets ------------------------------------------------------------- */

/* A TupleDataset of (image, label) pairs: example i is row i of 'images' and
 * labels[i]. Plain visible struct; it owns both tensors. */
typedef struct ks_dataset {
  ks_tensor *images;    /* float32, (N, row_size) or (N, ...) with ndim >= 2  */
  ks_tensor *labels;    /* int32, (N,)                                          */
  int64_t    size;      /* N, number of examples                               */
  int64_t    row_size;  /* floats per example (784 for MNIST)                  */
} ks_dataset;

/* Makes a dataset from two heap tensors and takes ownership of both on
 * success (on failure the caller still owns them). images: float32 with
 * ndim >= 1 and shape[0] == N; labels: int32 of shape (N,). KS_ESHAPE if the
 * counts or dtypes disagree. */
int ks_dataset_from_tensors(ks_tensor *images, ks_tensor *labels, ks_dataset **out);

/* Loads an image file and a label file as one dataset (see ks_idx_read_*);
 * KS_EFORMAT naming both files if their counts disagree. */
int ks_dataset_load_idx(const char *images_path, const char *labels_path, int ndim,
                        ks_dataset **out);

/* Frees the dataset and both tensors. NULL is a no-op. */
void ks_dataset_free(ks_dataset *ds);

/* New dataset holding a copy of examples [start, start + n) of src (Chainer's
 * split_dataset(ds, n)[0] is ks_dataset_subset(ds, 0, n, &out)). The image
 * shape keeps src's trailing dimensions. KS_EINVAL if the range is outside
 * 0..src->size. */
int ks_dataset_subset(const ks_dataset *src, int64_t start, int64_t n, ks_dataset **out);

/* The converter of every training iteration (Chainer's concat_examples):
 * copies the examples idx[0..n) into caller-provided buffers, row by row.
 *   x: n * ds->row_size floats (x[k*row_size ...] = images row idx[k]), or NULL
 *   t: n int32 labels (t[k] = labels[idx[k]]), or NULL
 * No allocation. KS_EINVAL (naming the position) if an index is outside
 * 0..size-1; the buffers may then be partly written. */
int ks_dataset_gather(const ks_dataset *ds, const int64_t *idx, int64_t n, float *x, int32_t *t);

/* Same, into tensors: x float32 with shape[0] >= n and the product of its
 * other dimensions == row_size (rows n.. are left alone); t int32 with
 * ndim 1 and shape[0] >= n. Either may be NULL. KS_ESHAPE on mismatch. */
int ks_dataset_gather_tensors(const ks_dataset *ds, const int64_t *idx, int64_t n,
                              ks_tensor *x, ks_tensor *t);

/* ---- MNIST directories ---------------------------------------------------- */

/* The Debian Fashion-MNIST directory (package fashion-mnist). */
#define KS_MNIST_DEBIAN_DIR "/usr/share/datasets/fashion-mnist"

/* 1 if 'dir' holds the four MNIST files, each as NAME or NAME.gz:
 * train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte. 0 otherwise (also for NULL). */
int ks_mnist_dir_has_files(const char *dir);

/* Picks the data directory, first match wins:
 *   1. 'given' if not NULL/empty (KS_ENOTFOUND if it lacks the files: an
 *      explicit choice is never silently replaced)
 *   2. $KUSARI_DATA if set and non-empty (same rule)
 *   3. KS_MNIST_DEBIAN_DIR (Fashion-MNIST), if it has the files
 * Writes the path into buf (n bytes; KS_EINVAL if too small). KS_ENOTFOUND
 * with a message listing what was tried if nothing matched. */
int ks_mnist_find_dir(const char *given, char *buf, size_t n);

/* Loads train (60000 for MNIST) and test (10000) from 'dir' (see
 * ks_mnist_dir_has_files for the names; the raw file wins over .gz when both
 * exist). Either out pointer may be NULL to skip that split. On failure
 * nothing is returned (both *train and *test NULL). */
int ks_mnist_load(const char *dir, int ndim, ks_dataset **train, ks_dataset **test);

#ifdef __cplusplus
}
#endif
#endif
