/*
 * kusari/serializers.h — numpy-compatible .npz files (chainer.serializers
 * save_npz / load_npz).
 *
 * An .npz is a zip archive of .npy files, one per key ("l1/W" is stored as
 * the entry "l1/W.npy"), exactly what np.savez / np.savez_compressed write
 * and what np.load reads back as a dict-like NpzFile. This module has
 *   - a generic writer (key, array) → .npz, deflate-compressed by default
 *     (np.savez_compressed) or stored (np.savez); .npy format 1.0 headers;
 *     the archive is written to a temporary file in the same directory and
 *     renamed over 'path' on success (libzip's zip_close), so a failed or
 *     interrupted save never leaves a half-written file at 'path';
 *   - a generic reader: list the keys, query a key's dtype and shape, read it
 *     with conversion. Reads .npy 1.0/2.0/3.0 headers, dtypes '<f4', '<f8',
 *     '<i4', '<i8' (also '=' byte order), C order, stored or deflated
 *     entries, zip64 archives. Fortran order, big-endian and other dtypes
 *     give KS_EUNSUPPORTED; malformed input (not a zip, bad magic, truncated
 *     header, unparsable header dict, data shorter than the shape, CRC
 *     errors) gives KS_EFORMAT naming the key. Per-entry problems are
 *     reported when that key is queried or read, like numpy's lazy NpzFile;
 *     keys of entries that do not end in ".npy" are not listed.
 *   - Chainer-compatible save/load of a link's parameters (keys are the
 *     namedparams paths, "l1/W") and of an optimizer's state (keys "t",
 *     "epoch", "l1/W/t", "l1/W/v", ...; see kusari/optimizer.h).
 *
 * Loading validates every key first (presence, dtype convertible, shape) and
 * reads all values before changing anything, so a failed load leaves the link
 * or optimizer untouched. Missing keys give KS_ENOTFOUND and shape mismatches
 * KS_ESHAPE, with the key and both shapes in ks_error_last().
 */
#ifndef KUSARI_SERIALIZERS_H
#define KUSARI_SERIALIZERS_H

#include <stdint.h>
#include "kusari/tensor.h"     /* ks_tensor    */
#include "kusari/link.h"       /* ks_link      */
#include "kusari/optimizer.h"  /* ks_optimizer */

#ifdef __cplusplus
extern "C" {
#endif

/* dtypes of .npy data this module reads and writes (little-endian) */
typedef enum ks_npz_dtype {
  KS_NPZ_F4 = 0,  /* '<f4' float32 */
  KS_NPZ_F8 = 1,  /* '<f8' float64 */
  KS_NPZ_I4 = 2,  /* '<i4' int32   */
  KS_NPZ_I8 = 3   /* '<i8' int64   */
} ks_npz_dtype;

typedef struct ks_npz_info {
  ks_npz_dtype dtype;
  int ndim;
  int64_t shape[KS_MAX_DIMS];
  int64_t size;                /* element count (1 for 0-d) */
} ks_npz_info;

size_t ks_npz_dtype_size(ks_npz_dtype dtype);
const char *ks_npz_dtype_descr(ks_npz_dtype dtype);   /* "<f4" */

/* ---- writer ---------------------------------------------------------------------- */
typedef struct ks_npz_writer ks_npz_writer;

/* Starts an archive that will replace 'path' when committed. compress 1:
 * deflate (np.savez_compressed), 0: stored (np.savez). Nothing touches the
 * file system until ks_npz_writer_commit. */
int ks_npz_writer_open(ks_npz_writer **out, const char *path, int compress);
/* Adds array 'key' (C order; ndim 0 is a scalar); copies the data. Keys must
 * be unique and non-empty. */
int ks_npz_writer_add(ks_npz_writer *w, const char *key, ks_npz_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
/* float32 → '<f4', int32 → '<i4'. */
int ks_npz_writer_add_tensor(ks_npz_writer *w, const char *key, const ks_tensor *t);
/* 0-d '<i8', as numpy.asarray(python_int) (Chainer's "t", "epoch"). */
int ks_npz_writer_add_int64(ks_npz_writer *w, const char *key, int64_t value);
/* Writes the archive atomically and frees the writer (also on failure). */
int ks_npz_writer_commit(ks_npz_writer *w);
/* Frees the writer without writing anything. NULL: no-op. */
void ks_npz_writer_discard(ks_npz_writer *w);

/* ---- reader ---------------------------------------------------------------------- */
typedef struct ks_npz_reader ks_npz_reader;

/* Opens an .npz. KS_ENOTFOUND: no such file; KS_EIO: cannot read it;
 * KS_EFORMAT: not a zip archive / inconsistent archive. */
int ks_npz_reader_open(ks_npz_reader **out, const char *path);
void ks_npz_reader_close(ks_npz_reader *r);
/* Keys in archive order (".npy" stripped). */
int ks_npz_reader_num_keys(const ks_npz_reader *r);
const char *ks_npz_reader_key(const ks_npz_reader *r, int i);
/* dtype and shape of 'key'. KS_ENOTFOUND if absent; the entry's own error
 * (KS_EFORMAT / KS_EUNSUPPORTED) if its header is bad. info may be NULL. */
int ks_npz_reader_info(const ks_npz_reader *r, const char *key, ks_npz_info *info);
/* Reads 'key' into dst (count elements of 'dtype', which must equal the
 * array's size), converting as numpy.copyto(casting='same_kind') allows:
 * float/int → float, int → int (int64 → int32 range-checked). float → int is
 * KS_ESHAPE. */
int ks_npz_reader_read(ks_npz_reader *r, const char *key, ks_npz_dtype dtype, void *dst, int64_t count);
/* New heap tensor with the array: float32 for '<f4'/'<f8', int32 for
 * '<i4'/'<i8'. NULL (error set) on failure. */
ks_tensor *ks_npz_reader_read_tensor(ks_npz_reader *r, const char *key);

/* ---- links and optimizers -------------------------------------------------------- */

/* chainer.serializers.save_npz(path, link): every parameter under its path
 * ("l1/W"), compressed. KS_ESTATE when a lazy parameter is still
 * uninitialized. */
int ks_save_npz(const char *path, ks_link *link);
/* compress 0 writes stored entries (np.savez). */
int ks_save_npz_ex(const char *path, ks_link *link, int compress);
/* chainer.serializers.load_npz(path, link) (strict): every parameter must be
 * present with the same shape; lazy parameters take the file's shape. Extra
 * keys in the file are ignored. */
int ks_load_npz(const char *path, ks_link *link);

/* Optimizer state: "t", "epoch", "<path>/t", "<path>/<state>". */
int ks_save_npz_optimizer(const char *path, ks_optimizer *opt);
int ks_load_npz_optimizer(const char *path, ks_optimizer *opt);

/* Building blocks for snapshots holding several objects: keys are prefixed
 * with 'prefix' (NULL or "" for none; e.g. "updater/model:main/").
 * strict 0 skips missing keys instead of failing (load_npz(strict=False)). */
int ks_npz_write_link(ks_npz_writer *w, const char *prefix, ks_link *link);
int ks_npz_read_link(ks_npz_reader *r, const char *prefix, ks_link *link, int strict);
int ks_npz_write_optimizer(ks_npz_writer *w, const char *prefix, ks_optimizer *opt);
int ks_npz_read_optimizer(ks_npz_reader *r, const char *prefix, ks_optimizer *opt, int strict);

#ifdef __cplusplus
}
#endif
#endif
