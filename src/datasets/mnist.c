/*
 * src/datasets/mnist.c — finding and loading an MNIST-format directory
 * (MNIST, Fashion-MNIST: the four train/t10k image/label IDX files).
 */
#include "kusari/datasets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kusari/error.h"      /* ks_error_set, KS_E* */

static const char *const mnist_names[4] = {
  "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
  "t10k-images-idx3-ubyte",  "t10k-labels-idx1-ubyte",
};

static int is_file(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Writes dir/name or dir/name.gz (whichever exists, raw first) into buf;
 * KS_ENOTFOUND if neither does, KS_EINVAL if buf is too small. */
static int mnist_path(const char *dir, const char *name, char *buf, size_t n)
{
  int len = snprintf(buf, n, "%s/%s", dir, name);
  if (len < 0 || (size_t)len + 4 >= n)
    return ks_error_set(KS_EINVAL, "path too long: %s/%s", dir, name);
  if (is_file(buf))
    return KS_OK;
  strcat(buf, ".gz");
  if (is_file(buf))
    return KS_OK;
  return ks_error_set(KS_ENOTFOUND, "%s/%s(.gz): no such file (MNIST-format directory %s)",
                      dir, name, dir);
}

int ks_mnist_dir_has_files(const char *dir)
{
  if (!dir || !*dir)
    return 0;
  char buf[4096];
  for (int i = 0; i < 4; i++) {
    int len = snprintf(buf, sizeof buf, "%s/%s", dir, mnist_names[i]);
    if (len < 0 || (size_t)len + 4 >= sizeof buf)
      return 0;
    if (is_file(buf))
      continue;
    strcat(buf, ".gz");
    if (!is_file(buf))
      return 0;
  }
  return 1;
}

static int copy_dir(const char *dir, char *buf, size_t n)
{
  size_t len = strlen(dir);
  if (len + 1 > n)
    return ks_error_set(KS_EINVAL, "ks_mnist_find_dir: buffer of %zu bytes too small for %s", n, dir);
  memcpy(buf, dir, len + 1);
  return KS_OK;
}

int ks_mnist_find_dir(const char *given, char *buf, size_t n)
{
  if (!buf || n == 0)
    return ks_error_set(KS_EINVAL, "ks_mnist_find_dir: buf is NULL or empty");
  buf[0] = '\0';
  if (given && *given) {
    if (!ks_mnist_dir_has_files(given))
      return ks_error_set(KS_ENOTFOUND,
                          "%s does not hold MNIST-format files (train-images-idx3-ubyte[.gz], "
                          "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                          "t10k-labels-idx1-ubyte[.gz])", given);
    return copy_dir(given, buf, n);
  }
  const char *env = getenv("KUSARI_DATA");
  if (env && *env) {
    if (!ks_mnist_dir_has_files(env))
      return ks_error_set(KS_ENOTFOUND,
                          "KUSARI_DATA=%s does not hold MNIST-format files "
                          "(train-images-idx3-ubyte[.gz] and the three others)", env);
    return copy_dir(env, buf, n);
  }
  if (ks_mnist_dir_has_files(KS_MNIST_DEBIAN_DIR))
    return copy_dir(KS_MNIST_DEBIAN_DIR, buf, n);
  return ks_error_set(KS_ENOTFOUND,
                      "no MNIST-format data: KUSARI_DATA is not set and %s is missing "
                      "(apt-get install fashion-mnist, or give a directory holding "
                      "train-images-idx3-ubyte[.gz] and the three others)",
                      KS_MNIST_DEBIAN_DIR);
}

int ks_mnist_load(const char *dir, int ndim, ks_dataset **train, ks_dataset **test)
{
  if (train)
    *train = NULL;
  if (test)
    *test = NULL;
  if (!dir || !*dir)
    return ks_error_set(KS_EINVAL, "ks_mnist_load: dir is NULL or empty");
  if (ndim < 1 || ndim > 3)
    return ks_error_set(KS_EINVAL, "ks_mnist_load: ndim must be 1, 2 or 3, got %d", ndim);
  ks_dataset *ds[2] = {NULL, NULL};
  ks_dataset **outs[2] = {train, test};
  char xp[4096], tp[4096];
  int rc = KS_OK;
  for (int s = 0; s < 2; s++) {
    if (!outs[s])
      continue;
    rc = mnist_path(dir, mnist_names[2 * s], xp, sizeof xp);
    if (rc)
      goto cleanup;
    rc = mnist_path(dir, mnist_names[2 * s + 1], tp, sizeof tp);
    if (rc)
      goto cleanup;
    rc = ks_dataset_load_idx(xp, tp, ndim, &ds[s]);
    if (rc)
      goto cleanup;
  }
  if (train)
    *train = ds[0];
  if (test)
    *test = ds[1];
  return KS_OK;

cleanup:
  ks_dataset_free(ds[0]);
  ks_dataset_free(ds[1]);
  return rc;
}
