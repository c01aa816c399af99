/*
 * tests/lib/test_datasets.c — IDX reader, ks_dataset and MNIST directories.
 *
 * Small IDX files (raw and gzipped) are generated in a scratch directory by
 * the tests; each error case checks the code and that the message names the
 * file. If Debian's Fashion-MNIST is installed, the real data is loaded and
 * compared pixel for pixel with an independent reader (python3 + gzip +
 * numpy, KS_TEST_PYTHON); without that python the test fails, not skips.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kusari/backend.h" /* ks_set_num_threads */
#include "kusari/datasets.h"
#include "kusari/error.h"
#include "kusari/random.h"
#include "kusari/tensor.h"
#include "testutil_data.h"

#define CONTAINS(hay, needle)                                                        \
  do {                                                                               \
    if (!strstr((hay), (needle)))                                                    \
      fail_msg("message \"%s\" does not contain \"%s\"", (hay), (needle));          \
  } while (0)

static const float SCALE = (float)(1.0 / 255.0);

/* 3 images of 2x3 pixels covering 0, 1, 127, 128, 254, 255 and more. */
static const unsigned char PIX[3 * 6] = {
  0, 1, 2, 127, 128, 255,
  254, 253, 51, 102, 153, 204,
  10, 20, 30, 40, 50, 60,
};
static const unsigned char LAB[3] = {7, 0, 9};
static const uint32_t IMG_DIMS[3] = {3, 2, 3};
static const uint32_t LAB_DIMS[1] = {3};

typedef struct fixture {
  const char *dir;
} fixture;

static int setup(void **state)
{
  static fixture f;
  static char dir[512];
  const char *d = tu_tmpdir();
  if (!d)
    return -1;
  snprintf(dir, sizeof dir, "%s", d);
  f.dir = dir;
  *state = &f;
  return 0;
}

static int teardown(void **state)
{
  fixture *f = *state;
  tu_rmtree(f->dir);
  return 0;
}

static void check_pixels(const ks_tensor *x)
{
  assert_int_equal(x->dtype, KS_F32);
  assert_int_equal(x->size, 18);
  const float *p = ks_tensor_f32(x);
  for (int i = 0; i < 18; i++) {
    float want = (float)PIX[i] * SCALE;   /* Chainer: astype(f32) *= 1/255. */
    if (memcmp(&p[i], &want, sizeof want) != 0)
      fail_msg("pixel %d: got %.9g, want %.9g", i, p[i], want);
    assert_true(fabs((double)p[i] - PIX[i] / 255.0) < 1e-7);
  }
  assert_true(p[0] == 0.0f);
  assert_true(p[5] == 1.0f);   /* 255 maps to exactly 1 */
}

static void test_datasets__images_raw_and_gz(void **state)
{
  fixture *f = *state;
  char path[1024];
  for (int gz = 0; gz < 2; gz++) {
    assert_int_equal(tu_write_idx(path, f->dir, gz ? "img.gz" : "img", 0x08, 3, IMG_DIMS, PIX,
                                  sizeof PIX, gz), 0);
    ks_tensor *x = NULL;
    assert_int_equal(ks_idx_read_images(path, 1, &x), KS_OK);
    assert_int_equal(x->ndim, 2);
    assert_int_equal(x->shape[0], 3);
    assert_int_equal(x->shape[1], 6);
    check_pixels(x);
    ks_tensor_free(x);

    assert_int_equal(ks_idx_read_images(path, 2, &x), KS_OK);
    assert_int_equal(x->ndim, 3);
    assert_int_equal(x->shape[0], 3);
    assert_int_equal(x->shape[1], 2);
    assert_int_equal(x->shape[2], 3);
    check_pixels(x);
    ks_tensor_free(x);

    assert_int_equal(ks_idx_read_images(path, 3, &x), KS_OK);
    assert_int_equal(x->ndim, 4);
    assert_int_equal(x->shape[0], 3);
    assert_int_equal(x->shape[1], 1);
    assert_int_equal(x->shape[2], 2);
    assert_int_equal(x->shape[3], 3);
    check_pixels(x);
    ks_tensor_free(x);

    x = (ks_tensor *)1;
    assert_int_equal(ks_idx_read_images(path, 4, &x), KS_EINVAL);
    assert_null(x);
  }
}

static void test_datasets__labels_raw_and_gz(void **state)
{
  fixture *f = *state;
  char path[1024];
  for (int gz = 0; gz < 2; gz++) {
    assert_int_equal(tu_write_idx(path, f->dir, gz ? "lab.gz" : "lab", 0x08, 1, LAB_DIMS, LAB,
                                  sizeof LAB, gz), 0);
    ks_tensor *t = NULL;
    assert_int_equal(ks_idx_read_labels(path, &t), KS_OK);
    assert_int_equal(t->dtype, KS_I32);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(ks_tensor_i32(t)[0], 7);
    assert_int_equal(ks_tensor_i32(t)[1], 0);
    assert_int_equal(ks_tensor_i32(t)[2], 9);
    ks_tensor_free(t);
  }
  /* a .gz name holding raw data and a plain name holding gzip data both read */
  assert_int_equal(tu_write_idx(path, f->dir, "raw-named.gz", 0x08, 1, LAB_DIMS, LAB, 3, 0), 0);
  ks_tensor *t = NULL;
  assert_int_equal(ks_idx_read_labels(path, &t), KS_OK);
  assert_int_equal(ks_tensor_i32(t)[0], 7);
  ks_tensor_free(t);
  assert_int_equal(tu_write_idx(path, f->dir, "gz-named", 0x08, 1, LAB_DIMS, LAB, 3, 1), 0);
  assert_int_equal(ks_idx_read_labels(path, &t), KS_OK);
  assert_int_equal(ks_tensor_i32(t)[2], 9);
  ks_tensor_free(t);
}

/* Expects 'rc' == code and a message naming 'path' and containing 'what'. */
static void expect_error(int rc, int code, const char *path, const char *what)
{
  if (rc != code)
    fail_msg("got %s (%s), want %s", ks_status_name(rc), ks_error_last(), ks_status_name(code));
  CONTAINS(ks_error_last(), path);
  if (what)
    CONTAINS(ks_error_last(), what);
}

static void test_datasets__errors(void **state)
{
  fixture *f = *state;
  char path[1024];
  ks_tensor *x = (ks_tensor *)1;

  /* missing file */
  snprintf(path, sizeof path, "%s/does-not-exist-idx3-ubyte.gz", f->dir);
  expect_error(ks_idx_read_images(path, 1, &x), KS_ENOTFOUND, path, "no such file");
  assert_null(x);
  expect_error(ks_idx_read_labels(path, &x), KS_ENOTFOUND, path, "no such file");
  /* a directory */
  expect_error(ks_idx_read_images(f->dir, 1, &x), KS_EIO, f->dir, "directory");

  for (int gz = 0; gz < 2; gz++) {
    /* bad magic: a label file read as images, images read as labels, junk */
    tu_write_idx(path, f->dir, "lab-as-img", 0x08, 1, LAB_DIMS, LAB, 3, gz);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "bad magic number 0x00000801");
    tu_write_idx(path, f->dir, "img-as-lab", 0x08, 3, IMG_DIMS, PIX, sizeof PIX, gz);
    expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path, "bad magic number 0x00000803");
    static const char junk[] = "PK\x03\x04 this is not an IDX file at all";
    snprintf(path, sizeof path, "%s/junk", f->dir);
    tu_write_bytes(path, junk, sizeof junk, gz);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "bad magic");

    /* wrong element type code: 0x0D is float, 0x09 signed byte */
    tu_write_idx(path, f->dir, "img-float", 0x0D, 3, IMG_DIMS, PIX, sizeof PIX, gz);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "type code 0x0d");
    tu_write_idx(path, f->dir, "lab-sbyte", 0x09, 1, LAB_DIMS, LAB, 3, gz);
    expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path, "type code 0x09");

    /* truncated: pixels, labels, dimensions, magic, empty file */
    tu_write_idx(path, f->dir, "img-trunc", 0x08, 3, IMG_DIMS, PIX, sizeof PIX - 1, gz);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path,
                 "truncated pixel data: expected 18 bytes, got 17");
    tu_write_idx(path, f->dir, "lab-trunc", 0x08, 1, LAB_DIMS, LAB, 1, gz);
    expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path,
                 "truncated label data: expected 3 bytes, got 1");
    snprintf(path, sizeof path, "%s/img-short-dims", f->dir);
    {
      size_t len;
      unsigned char *b = tu_idx_bytes(0x08, 3, IMG_DIMS, NULL, 0, &len);
      tu_write_bytes(path, b, 9, gz);   /* magic + 5 of 12 dimension bytes */
      free(b);
    }
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "truncated header");
    tu_write_bytes(path, "\0\0", 2, gz);
    expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path, "truncated header");
    tu_write_bytes(path, "", 0, gz);
    expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path, "truncated header");

    /* zero images */
    static const uint32_t zero_dims[3] = {0, 28, 28};
    tu_write_idx(path, f->dir, "img-empty", 0x08, 3, zero_dims, NULL, 0, gz);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "empty");
  }

  /* corrupt gzip stream: a valid gzip of the image file with bytes flipped
   * in the middle of the deflate data */
  {
    size_t len;
    unsigned char *b = tu_idx_bytes(0x08, 3, IMG_DIMS, PIX, sizeof PIX, &len);
    snprintf(path, sizeof path, "%s/img-corrupt.gz", f->dir);
    assert_int_equal(tu_write_bytes(path, b, len, 1), 0);
    free(b);
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 12, SEEK_SET);  /* past the 10-byte gzip header */
    for (long i = 12; i < size - 8; i++)
      fputc(0xff, fp);
    fclose(fp);
    int rc = ks_idx_read_images(path, 1, &x);
    expect_error(rc, KS_EFORMAT, path, NULL);
  }
  /* a gzip file cut short in the middle of the stream */
  {
    static unsigned char big[3 * 28 * 28];
    for (size_t i = 0; i < sizeof big; i++)
      big[i] = (unsigned char)(i * 7919 % 251);
    static const uint32_t dims[3] = {3, 28, 28};
    size_t len;
    unsigned char *b = tu_idx_bytes(0x08, 3, dims, big, sizeof big, &len);
    snprintf(path, sizeof path, "%s/img-cut.gz", f->dir);
    assert_int_equal(tu_write_bytes(path, b, len, 1), 0);
    free(b);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size / 2), 0);
    expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, NULL);
  }

  /* image and label counts that disagree */
  char ipath[1024], lpath[1024];
  static const uint32_t two[1] = {2};
  tu_write_idx(ipath, f->dir, "cnt-img.gz", 0x08, 3, IMG_DIMS, PIX, sizeof PIX, 1);
  tu_write_idx(lpath, f->dir, "cnt-lab.gz", 0x08, 1, two, LAB, 2, 1);
  ks_dataset *ds = (ks_dataset *)1;
  expect_error(ks_dataset_load_idx(ipath, lpath, 1, &ds), KS_EFORMAT, ipath, "3 images");
  CONTAINS(ks_error_last(), lpath);
  CONTAINS(ks_error_last(), "2 labels");
  assert_null(ds);

  /* bad arguments */
  assert_int_equal(ks_idx_read_images(NULL, 1, &x), KS_EINVAL);
  assert_int_equal(ks_idx_read_labels("", &x), KS_EINVAL);
  assert_int_equal(ks_idx_read_labels(lpath, NULL), KS_EINVAL);
}

static ks_dataset *small_dataset(const char *dir, int ndim)
{
  char ipath[1024], lpath[1024];
  tu_write_idx(ipath, dir, "ds-img", 0x08, 3, IMG_DIMS, PIX, sizeof PIX, 0);
  tu_write_idx(lpath, dir, "ds-lab.gz", 0x08, 1, LAB_DIMS, LAB, 3, 1);
  ks_dataset *ds = NULL;
  if (ks_dataset_load_idx(ipath, lpath, ndim, &ds) != KS_OK)
    fail_msg("load: %s", ks_error_last());
  return ds;
}

/* A batch big enough to be split over the thread pool, with a row count
 * that does not divide evenly, gives the rows and labels asked for on 1, 2
 * and 3 threads (checked against the source rows one by one). */
static void test_datasets__gather_threads(void **state)
{
  (void)state;
  enum { N = 1000, ROW = 97, B = 203 };
  int64_t xs[2] = {N, ROW}, ts[1] = {N};
  ks_tensor *xt = ks_tensor_new(KS_F32, 2, xs), *tt = ks_tensor_new(KS_I32, 1, ts);
  assert_non_null(xt);
  assert_non_null(tt);
  for (int64_t i = 0; i < N * ROW; i++) ks_tensor_f32(xt)[i] = (float)i * 0.5f;
  for (int64_t i = 0; i < N; i++) ks_tensor_i32(tt)[i] = (int32_t)(i * 7 % 10);
  ks_dataset *ds = NULL;
  assert_int_equal(ks_dataset_from_tensors(xt, tt, &ds), KS_OK);
  int64_t idx[B];
  for (int64_t k = 0; k < B; k++) idx[k] = (k * 389 + 11) % N;
  static float x[B * ROW];
  int32_t t[B];
  const int saved = ks_get_num_threads();
  for (int threads = 1; threads <= 3; threads++) {
    ks_set_num_threads(threads);
    memset(x, 0, sizeof x);
    memset(t, 0xff, sizeof t);
    assert_int_equal(ks_dataset_gather(ds, idx, B, x, t), KS_OK);
    for (int64_t k = 0; k < B; k++) {
      assert_int_equal(t[k], (int32_t)(idx[k] * 7 % 10));
      assert_memory_equal(&x[k * ROW], ks_tensor_f32(ds->images) + idx[k] * ROW, ROW * sizeof(float));
    }
  }
  ks_set_num_threads(saved);
  ks_dataset_free(ds);
}

static void test_datasets__subset_and_gather(void **state)
{
  fixture *f = *state;
  ks_dataset *ds = small_dataset(f->dir, 1);
  assert_int_equal(ds->size, 3);
  assert_int_equal(ds->row_size, 6);

  /* gather rows 2, 0, 2, 1 */
  const int64_t idx[4] = {2, 0, 2, 1};
  float x[4 * 6];
  int32_t t[4];
  memset(x, 0xff, sizeof x);
  assert_int_equal(ks_dataset_gather(ds, idx, 4, x, t), KS_OK);
  for (int k = 0; k < 4; k++) {
    assert_int_equal(t[k], LAB[idx[k]]);
    for (int j = 0; j < 6; j++) {
      float want = (float)PIX[idx[k] * 6 + j] * SCALE;
      assert_memory_equal(&x[k * 6 + j], &want, sizeof want);
    }
  }
  /* labels only / images only */
  int32_t t2[2] = {-5, -5};
  assert_int_equal(ks_dataset_gather(ds, idx, 2, NULL, t2), KS_OK);
  assert_int_equal(t2[0], 9);
  assert_int_equal(t2[1], 7);
  assert_int_equal(ks_dataset_gather(ds, idx, 0, NULL, NULL), KS_OK);
  /* out of range index */
  const int64_t bad[2] = {1, 3};
  float xs_before[4 * 6];
  int32_t t_before[4];
  memcpy(xs_before, x, sizeof x);
  memcpy(t_before, t, sizeof t);
  assert_int_equal(ks_dataset_gather(ds, bad, 2, x, t), KS_EINVAL);
  CONTAINS(ks_error_last(), "index 3 at position 1");
  const int64_t neg[1] = {-1};
  assert_int_equal(ks_dataset_gather(ds, neg, 1, x, t), KS_EINVAL);
  /* a bad index anywhere is found before anything is written */
  assert_memory_equal(x, xs_before, sizeof x);
  assert_memory_equal(t, t_before, sizeof t);

  /* into tensors; a buffer with more rows than the batch is fine */
  int64_t xs[2] = {5, 6}, ts[1] = {5};
  ks_tensor *xt = ks_tensor_new(KS_F32, 2, xs);
  ks_tensor *tt = ks_tensor_new(KS_I32, 1, ts);
  assert_int_equal(ks_dataset_gather_tensors(ds, idx, 4, xt, tt), KS_OK);
  assert_memory_equal(ks_tensor_f32(xt), x, sizeof x);
  assert_memory_equal(ks_tensor_i32(tt), t, sizeof t);
  assert_true(ks_tensor_f32(xt)[4 * 6] == 0.0f);
  int64_t xs_bad[2] = {4, 5};
  ks_tensor *xb = ks_tensor_new(KS_F32, 2, xs_bad);
  assert_int_equal(ks_dataset_gather_tensors(ds, idx, 4, xb, NULL), KS_ESHAPE);
  assert_int_equal(ks_dataset_gather_tensors(ds, idx, 4, tt, NULL), KS_ESHAPE);
  assert_int_equal(ks_dataset_gather_tensors(ds, idx, 4, NULL, xt), KS_ESHAPE);
  int64_t ts_small[1] = {3};
  ks_tensor *tsm = ks_tensor_new(KS_I32, 1, ts_small);
  assert_int_equal(ks_dataset_gather_tensors(ds, idx, 4, NULL, tsm), KS_ESHAPE);
  ks_tensor_free(tsm);
  ks_tensor_free(xb);
  ks_tensor_free(xt);
  ks_tensor_free(tt);

  /* subset: first 2, then [1, 3) */
  ks_dataset *sub = NULL;
  assert_int_equal(ks_dataset_subset(ds, 0, 2, &sub), KS_OK);
  assert_int_equal(sub->size, 2);
  assert_int_equal(sub->row_size, 6);
  assert_int_equal(sub->images->shape[0], 2);
  assert_int_equal(sub->images->shape[1], 6);
  assert_memory_equal(ks_tensor_f32(sub->images), ks_tensor_f32(ds->images), 12 * sizeof(float));
  assert_int_equal(ks_tensor_i32(sub->labels)[1], 0);
  assert_ptr_not_equal(sub->images->data, ds->images->data);
  ks_dataset_free(sub);
  assert_int_equal(ks_dataset_subset(ds, 1, 2, &sub), KS_OK);
  assert_int_equal(ks_tensor_i32(sub->labels)[0], 0);
  assert_int_equal(ks_tensor_i32(sub->labels)[1], 9);
  assert_memory_equal(ks_tensor_f32(sub->images), ks_tensor_f32(ds->images) + 6, 12 * sizeof(float));
  ks_dataset_free(sub);
  sub = (ks_dataset *)1;
  assert_int_equal(ks_dataset_subset(ds, 2, 2, &sub), KS_EINVAL);
  assert_null(sub);
  assert_int_equal(ks_dataset_subset(ds, -1, 1, &sub), KS_EINVAL);
  ks_dataset_free(ds);
  ks_dataset_free(NULL);

  /* ndim 3 keeps (N, 1, rows, cols) in subsets */
  ds = small_dataset(f->dir, 3);
  assert_int_equal(ds->row_size, 6);
  assert_int_equal(ks_dataset_subset(ds, 0, 1, &sub), KS_OK);
  assert_int_equal(sub->images->ndim, 4);
  assert_int_equal(sub->images->shape[0], 1);
  assert_int_equal(sub->images->shape[3], 3);
  ks_dataset_free(sub);
  ks_dataset_free(ds);

  /* from tensors */
  int64_t is[2] = {2, 4}, ls[1] = {3};
  ks_tensor *im = ks_tensor_new(KS_F32, 2, is), *lb = ks_tensor_new(KS_I32, 1, ls);
  assert_int_equal(ks_dataset_from_tensors(im, lb, &ds), KS_ESHAPE);
  assert_int_equal(ks_dataset_from_tensors(lb, lb, &ds), KS_ESHAPE);
  ks_tensor_free(lb);
  ls[0] = 2;
  lb = ks_tensor_new(KS_I32, 1, ls);
  assert_int_equal(ks_dataset_from_tensors(im, lb, &ds), KS_OK);
  assert_int_equal(ds->size, 2);
  assert_int_equal(ds->row_size, 4);
  ks_dataset_free(ds);
}

static const char *const MN[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static void test_datasets__mnist_dir(void **state)
{
  fixture *f = *state;
  char dir[1024], path[1024];
  snprintf(dir, sizeof dir, "%s/mnist", f->dir);
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_int_equal(ks_mnist_dir_has_files(dir), 0);
  assert_int_equal(ks_mnist_dir_has_files(NULL), 0);

  /* train: 3 images raw + labels gz; test: 2 images gz + labels raw */
  static const uint32_t two_img[3] = {2, 2, 3}, two[1] = {2};
  char name[128];
  assert_int_equal(tu_write_idx(path, dir, MN[0], 0x08, 3, IMG_DIMS, PIX, sizeof PIX, 0), 0);
  snprintf(name, sizeof name, "%s.gz", MN[1]);
  assert_int_equal(tu_write_idx(path, dir, name, 0x08, 1, LAB_DIMS, LAB, 3, 1), 0);
  snprintf(name, sizeof name, "%s.gz", MN[2]);
  assert_int_equal(tu_write_idx(path, dir, name, 0x08, 3, two_img, PIX + 6, 12, 1), 0);
  assert_int_equal(ks_mnist_dir_has_files(dir), 0);

  /* missing t10k labels: KS_ENOTFOUND naming the file */
  ks_dataset *train = (ks_dataset *)1, *test = (ks_dataset *)1;
  expect_error(ks_mnist_load(dir, 1, &train, &test), KS_ENOTFOUND, MN[3], dir);
  assert_null(train);
  assert_null(test);
  /* train alone loads */
  assert_int_equal(ks_mnist_load(dir, 1, &train, NULL), KS_OK);
  assert_int_equal(train->size, 3);
  ks_dataset_free(train);

  assert_int_equal(tu_write_idx(path, dir, MN[3], 0x08, 1, two, LAB + 1, 2, 0), 0);
  assert_int_equal(ks_mnist_dir_has_files(dir), 1);
  assert_int_equal(ks_mnist_load(dir, 1, &train, &test), KS_OK);
  assert_int_equal(train->size, 3);
  assert_int_equal(test->size, 2);
  assert_int_equal(test->row_size, 6);
  check_pixels(train->images);
  assert_int_equal(ks_tensor_i32(test->labels)[0], 0);
  assert_int_equal(ks_tensor_i32(test->labels)[1], 9);
  float want = (float)PIX[6] * SCALE;
  assert_memory_equal(ks_tensor_f32(test->images), &want, sizeof want);
  ks_dataset_free(train);
  ks_dataset_free(test);

  /* a broken file in the directory: error names it, nothing returned */
  snprintf(name, sizeof name, "%s.gz", MN[2]);
  assert_int_equal(tu_write_idx(path, dir, name, 0x08, 3, two_img, PIX, 5, 1), 0);
  expect_error(ks_mnist_load(dir, 1, &train, &test), KS_EFORMAT, path, "truncated");
  assert_null(train);
  assert_null(test);

  /* find_dir: given beats KUSARI_DATA beats Debian; explicit choices never
   * fall back */
  char buf[1024];
  unsetenv("KUSARI_DATA");
  assert_int_equal(ks_mnist_find_dir(dir, buf, sizeof buf), KS_OK);
  assert_string_equal(buf, dir);
  expect_error(ks_mnist_find_dir(f->dir, buf, sizeof buf), KS_ENOTFOUND, f->dir, NULL);
  assert_int_equal(ks_mnist_find_dir(dir, buf, 4), KS_EINVAL);
  setenv("KUSARI_DATA", dir, 1);
  assert_int_equal(ks_mnist_find_dir(NULL, buf, sizeof buf), KS_OK);
  assert_string_equal(buf, dir);
  assert_int_equal(ks_mnist_find_dir("", buf, sizeof buf), KS_OK);
  assert_string_equal(buf, dir);
  setenv("KUSARI_DATA", f->dir, 1);
  expect_error(ks_mnist_find_dir(NULL, buf, sizeof buf), KS_ENOTFOUND, f->dir, "KUSARI_DATA");
  unsetenv("KUSARI_DATA");
  int rc = ks_mnist_find_dir(NULL, buf, sizeof buf);
  if (ks_mnist_dir_has_files(KS_MNIST_DEBIAN_DIR)) {
    assert_int_equal(rc, KS_OK);
    assert_string_equal(buf, KS_MNIST_DEBIAN_DIR);
  } else {
    expect_error(rc, KS_ENOTFOUND, KS_MNIST_DEBIAN_DIR, NULL);
  }
}

/* ---- the real Fashion-MNIST against python3 + gzip + numpy ------------------- */

static const char PY_READER[] =
  "import gzip, sys\n"
  "import numpy as np\n"
  "d = sys.argv[1]\n"
  "def rd(name, off):\n"
  "    with gzip.open(d + '/' + name + '.gz', 'rb') as f:\n"
  "        return np.frombuffer(f.read(), dtype=np.uint8, offset=off)\n"
  "for split, n, picks in (('train', 60000, (0, 1, 12345, 59999)), ('t10k', 10000, (0, 4321, 9999))):\n"
  "    raw = rd(split + '-images-idx3-ubyte', 16).reshape(n, 784)\n"
  "    lab = rd(split + '-labels-idx1-ubyte', 8)\n"
  "    print('count', split, raw.shape[0], lab.shape[0])\n"
  "    print('sum', split, int(raw.sum(dtype=np.int64)))\n"
  "    print('hist', split, ' '.join(str(int(c)) for c in np.bincount(lab, minlength=10)))\n"
  "    x = raw[list(picks)].astype(np.float32)\n"
  "    x *= 1.0 / 255.0  # chainer.datasets.mnist._preprocess_mnist\n"
  "    for k, i in enumerate(picks):\n"
  "        bits = x[k].view(np.uint32)\n"
  "        print('img', split, i, int(lab[i]), ' '.join('%08x' % b for b in bits))\n";

static void check_against_python(const char *dir, const ks_dataset *train, const ks_dataset *test)
{
  if (KS_TEST_PYTHON[0] == '\0')
    fail_msg("Fashion-MNIST is installed at %s but no python3 with numpy was found at configure "
             "time (KS_TEST_PYTHON is empty): install python3-numpy and re-run cmake", dir);
  char script[1024];
  const char *tmp = tu_tmpdir();
  assert_non_null(tmp);
  char tdir[512];
  snprintf(tdir, sizeof tdir, "%s", tmp);
  snprintf(script, sizeof script, "%s/read_idx.py", tdir);
  assert_int_equal(tu_write_bytes(script, PY_READER, strlen(PY_READER), 0), 0);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", KS_TEST_PYTHON, script, dir);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char *line = NULL;
  size_t cap = 0;
  int nimg = 0, ncount = 0, nsum = 0, nhist = 0;
  while (getline(&line, &cap, p) > 0) {
    char kind[16], split[16];
    int off = 0;
    if (sscanf(line, "%15s %15s %n", kind, split, &off) < 2)
      continue;
    const ks_dataset *ds = strcmp(split, "train") == 0 ? train : test;
    const char *rest = line + off;
    if (strncmp(line, "count", 5) == 0) {
      long long a, b;
      assert_int_equal(sscanf(rest, "%lld %lld", &a, &b), 2);
      assert_int_equal(ds->size, a);
      assert_int_equal(ds->labels->shape[0], b);
      ncount++;
    } else if (strncmp(line, "sum", 3) == 0) {
      long long s;
      assert_int_equal(sscanf(rest, "%lld", &s), 1);
      /* every pixel maps back to its byte: lrint(x * 255) */
      long long mine = 0;
      const float *px = ks_tensor_f32(ds->images);
      for (int64_t i = 0; i < ds->images->size; i++)
        mine += lrintf(px[i] * 255.0f);
      assert_int_equal(mine, s);
      nsum++;
    } else if (strncmp(line, "hist", 4) == 0) {
      long long h[10];
      assert_int_equal(sscanf(rest, "%lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &h[0],
                              &h[1], &h[2], &h[3], &h[4], &h[5], &h[6], &h[7], &h[8], &h[9]), 10);
      long long mine[10] = {0};
      for (int64_t i = 0; i < ds->size; i++)
        mine[ks_tensor_i32(ds->labels)[i]]++;
      for (int c = 0; c < 10; c++)
        assert_int_equal(mine[c], h[c]);
      nhist++;
    } else if (strncmp(line, "img", 3) == 0) {
      long long idx, label;
      int used = 0;
      assert_int_equal(sscanf(rest, "%lld %lld %n", &idx, &label, &used), 2);
      assert_int_equal(ks_tensor_i32(ds->labels)[idx], label);
      const char *q = rest + used;
      const float *row = ks_tensor_f32(ds->images) + idx * 784;
      for (int j = 0; j < 784; j++) {
        char *end;
        unsigned long bits = strtoul(q, &end, 16);
        assert_true(end != q);
        q = end;
        uint32_t mine;
        memcpy(&mine, &row[j], 4);
        if (mine != (uint32_t)bits)
          fail_msg("%s image %lld pixel %d: kusari %08x (%.9g), numpy %08lx", split, idx, j,
                   mine, row[j], bits);
      }
      nimg++;
    }
  }
  free(line);
  int st = pclose(p);
  tu_rmtree(tdir);
  if (st != 0)
    fail_msg("python reader failed (status %d): %s", st, cmd);
  assert_int_equal(ncount, 2);
  assert_int_equal(nsum, 2);
  assert_int_equal(nhist, 2);
  assert_int_equal(nimg, 7);
}

static void test_datasets__fashion_mnist_real(void **state)
{
  (void)state;
  const char *dir = KS_MNIST_DEBIAN_DIR;
  if (!ks_mnist_dir_has_files(dir)) {
    print_message("[ SKIPPED  ] %s not installed (apt-get install fashion-mnist)\n", dir);
    skip();
  }
  ks_dataset *train = NULL, *test = NULL;
  if (ks_mnist_load(dir, 1, &train, &test) != KS_OK)
    fail_msg("ks_mnist_load(%s): %s", dir, ks_error_last());
  assert_int_equal(train->size, 60000);
  assert_int_equal(test->size, 10000);
  assert_int_equal(train->images->ndim, 2);
  assert_int_equal(train->images->shape[1], 784);
  assert_int_equal(test->row_size, 784);
  const ks_dataset *both[2] = {train, test};
  for (int s = 0; s < 2; s++) {
    const ks_dataset *ds = both[s];
    const float *px = ks_tensor_f32(ds->images);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < ds->images->size; i++) {
      lo = px[i] < lo ? px[i] : lo;
      hi = px[i] > hi ? px[i] : hi;
    }
    assert_true(lo == 0.0f);
    assert_true(hi == 1.0f);
    int32_t lmin = 99, lmax = -1;
    for (int64_t i = 0; i < ds->size; i++) {
      int32_t l = ks_tensor_i32(ds->labels)[i];
      lmin = l < lmin ? l : lmin;
      lmax = l > lmax ? l : lmax;
    }
    assert_int_equal(lmin, 0);
    assert_int_equal(lmax, 9);
  }
  check_against_python(dir, train, test);
  ks_dataset_free(train);
  ks_dataset_free(test);
}

/* Headers that claim far more data than the file holds (issue 18: the
 * reader allocated whatever they said). An uncompressed file is checked
 * against its size, a gzip one against deflate's largest ratio, and a gzip
 * stream that passes that check is read into a buffer that grows with the
 * data, so 1.5e9 claimed labels in a 2 MB stream cost 2 MB, not 1.5 GB (the
 * child runs with its address space limited to well under 1.5 GB). */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=1024"; }
#endif

static void test_datasets__forged_dimensions(void **state)
{
  fixture *f = *state;
  char path[1024];
  ks_tensor *x = (ks_tensor *)1;
  static const uint32_t huge_img[3] = {1000000, 1000, 1000};
  tu_write_idx(path, f->dir, "huge-img", 0x08, 3, huge_img, PIX, sizeof PIX, 0);
  expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path,
               "truncated pixel data: expected 1000000000000 bytes, got 18 (the header's dimensions "
               "(1000000, 1000, 1000) need more than the file holds");
  assert_null(x);
  static const uint32_t huge_lab[1] = {4000000000u};
  tu_write_idx(path, f->dir, "huge-lab", 0x08, 1, huge_lab, LAB, sizeof LAB, 0);
  expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path,
               "truncated label data: expected 4000000000 bytes, got 3");
  /* gzip: beyond what deflate can expand the file to */
  static const uint32_t big_img[3] = {1000000, 1000, 100};
  tu_write_idx(path, f->dir, "huge-img.gz", 0x08, 3, big_img, PIX, sizeof PIX, 1);
  expect_error(ks_idx_read_images(path, 1, &x), KS_EFORMAT, path, "gzip file can hold");
  tu_write_idx(path, f->dir, "huge-lab.gz", 0x08, 1, huge_lab, LAB, sizeof LAB, 1);
  expect_error(ks_idx_read_labels(path, &x), KS_EFORMAT, path, "gzip file can hold");

  /* within the ratio, but the stream ends early: read as it comes */
  const size_t n = (size_t)2 << 20;
  unsigned char *noise = malloc(n);
  assert_non_null(noise);
  ks_rng rng;
  ks_rng_seed(&rng, 18);
  for (size_t i = 0; i < n; i++) noise[i] = (unsigned char)ks_rng_next(&rng);
  static const uint32_t claim[1] = {1500000000u};
  assert_int_equal(tu_write_idx(path, f->dir, "claim-lab.gz", 0x08, 1, claim, noise, n, 1), 0);
  free(noise);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)
    /* the address space in use now plus 768 MiB: a 1.5 GB buffer cannot fit */
    long pages = 0;
    FILE *st = fopen("/proc/self/statm", "r");
    if (!st || fscanf(st, "%ld", &pages) != 1) _exit(3);
    fclose(st);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)768 << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(4);
#endif
    ks_tensor *t = NULL;
    int rc = ks_idx_read_labels(path, &t);
    if (rc != KS_EFORMAT || !strstr(ks_error_last(), "truncated label data: expected 1500000000 bytes, got 2097152")) {
      fprintf(stderr, "child: %s: %s\n", ks_status_name(rc), ks_error_last());
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_datasets__images_raw_and_gz, setup, teardown),
    cmocka_unit_test_setup_teardown(test_datasets__labels_raw_and_gz, setup, teardown),
    cmocka_unit_test_setup_teardown(test_datasets__errors, setup, teardown),
    cmocka_unit_test_setup_teardown(test_datasets__forged_dimensions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_datasets__subset_and_gather, setup, teardown),
    cmocka_unit_test(test_datasets__gather_threads),
    cmocka_unit_test_setup_teardown(test_datasets__mnist_dir, setup, teardown),
    cmocka_unit_test(test_datasets__fashion_mnist_real),
  };
  return cmocka_run_group_tests_name("datasets", tests, NULL, NULL);
}
