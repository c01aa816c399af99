/*
 * tests/lib/test_npz.c — the .npz serializer against numpy itself and
 * against malformed input.
 *
 * numpy round trips (python3-numpy required: without it these tests FAIL):
 *   - numpy → kusari: a Python script run here writes np.savez and
 *     np.savez_compressed archives (float32/int32/float64/int64, 0-d, empty,
 *     several shapes, keys with '/'), .npy 2.0/3.0 entries, and each array's
 *     raw bytes (ndarray.tofile); the test loads every key and compares with
 *     those bytes exactly.
 *   - kusari → numpy: the test writes an archive (compressed and stored) and
 *     the raw bytes of each array; a script loads the archive with np.load
 *     and checks dtype, shape, the entries' compression and
 *     arr.tobytes() == raw bytes, so the comparison is exact (NaN included).
 * Malformed files: not a zip, empty file, truncated archive, bad .npy magic,
 * truncated header, header dict garbage (several), data shorter than the
 * shape, corrupt deflate data, unsupported versions/dtypes/fortran order;
 * each gives its error code with a message naming the key, and never crashes.
 */
#include "testutil.h"
#include "kusari/link.h"
#include "kusari/optimizer.h"
#include "kusari/serializers.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

static char g_dir[512];

static int setup_dir(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kusari-npz-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static const char *tpath(const char *name) {
  static char buf[4][700];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

static void require_python(void) {
  if (!KS_TEST_PYTHON[0])
    fail_msg("python3 with numpy was not found at configure time: install python3-numpy "
             "(apt-get install python3-numpy) and re-run cmake; the numpy round-trip tests need it");
}

/* runs 'script' (python source) with KS_TEST_PYTHON in g_dir; returns exit status */
static int run_python(const char *name, const char *script) {
  const char *py = tpath(name);
  FILE *f = fopen(py, "w");
  assert_non_null(f);
  fputs(script, f);
  fclose(f);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' '%s'", g_dir, KS_TEST_PYTHON, py);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc((size_t)len + 1);
  assert_true(fread(buf, 1, (size_t)len, f) == (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return buf;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_true(fwrite(data, 1, n, f) == n);
  fclose(f);
}

/* ==================================================================================== */
/* numpy → kusari                                                                         */

static const char *numpy_writer =
  "import numpy as np, zipfile, io\n"
  "arrs = {\n"
  "  'f32': (np.arange(24, dtype=np.float32).reshape(2, 3, 4) * np.float32(0.1) - np.float32(1.3)),\n"
  "  'l1/W': np.array([[1.5, -2.25, 3e-30], [np.inf, -0.0, 7.0]], dtype=np.float32),\n"
  "  'scalar': np.array(3.25, dtype=np.float32),\n"
  "  'empty': np.zeros((0, 3), dtype=np.float32),\n"
  "  'i32': np.array([1, -2, 2147483647, -2147483648], dtype=np.int32),\n"
  "  'f64': np.array([0.1, -1e300, 2.5], dtype=np.float64),\n"
  "  'i64': np.array([[5, -6], [7, 8]], dtype=np.int64),\n"
  "  't': np.asarray(12),\n"
  "}\n"
  "np.savez('np_stored.npz', **arrs)\n"
  "np.savez_compressed('np_deflated.npz', **arrs)\n"
  "# a zip64 archive (zip64 end-of-central-directory record and extra fields):\n"
  "# lower zipfile's limits so a small archive takes the zip64 code paths\n"
  "zipfile.ZIP_FILECOUNT_LIMIT, zipfile.ZIP64_LIMIT = 0, 0\n"
  "np.savez_compressed('np_zip64.npz', **arrs)\n"
  "zipfile.ZIP_FILECOUNT_LIMIT, zipfile.ZIP64_LIMIT = (1 << 16) - 1, (1 << 31) - 1\n"
  "for k, a in arrs.items():\n"
  "  a.tofile('raw_' + k.replace('/', '_') + '.bin')\n"
  "# .npy versions 2.0 and 3.0 inside a zip\n"
  "with zipfile.ZipFile('np_versions.npz', 'w', zipfile.ZIP_DEFLATED) as z:\n"
  "  for ver, key in (((2, 0), 'v2'), ((3, 0), 'v3')):\n"
  "    b = io.BytesIO()\n"
  "    np.lib.format.write_array(b, arrs['f32'], version=ver)\n"
  "    z.writestr(key + '.npy', b.getvalue())\n"
  "  z.writestr('notes.txt', b'not an array')\n"
  "  b = io.BytesIO()\n"
  "  np.lib.format.write_array(b, np.asfortranarray(arrs['i64']))\n"
  "  z.writestr('fortran.npy', b.getvalue())\n"
  "  b = io.BytesIO()\n"
  "  np.lib.format.write_array(b, arrs['f32'].astype('>f4'))\n"
  "  z.writestr('bigendian.npy', b.getvalue())\n"
  "  b = io.BytesIO()\n"
  "  np.lib.format.write_array(b, arrs['f32'].astype(np.float16))\n"
  "  z.writestr('half.npy', b.getvalue())\n";

typedef struct np_case {
  const char *key;
  ks_npz_dtype dtype;
  int ndim;
  int64_t shape[3];
} np_case;

static const np_case np_cases[] = {
  {"f32", KS_NPZ_F4, 3, {2, 3, 4}},
  {"l1/W", KS_NPZ_F4, 2, {2, 3}},
  {"scalar", KS_NPZ_F4, 0, {0}},
  {"empty", KS_NPZ_F4, 2, {0, 3}},
  {"i32", KS_NPZ_I4, 1, {4}},
  {"f64", KS_NPZ_F8, 1, {3}},
  {"i64", KS_NPZ_I8, 2, {2, 2}},
  {"t", KS_NPZ_I8, 0, {0}},
};

static void generate_numpy_files(void) {
  static int done;
  require_python();
  if (done) return;
  if (run_python("gen.py", numpy_writer) != 0) fail_msg("the numpy script failed (see stderr)");
  done = 1;
}

static void check_numpy_file(const char *file) {
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath(file)));
  int n = (int)(sizeof np_cases / sizeof np_cases[0]);
  assert_int_equal(ks_npz_reader_num_keys(r), n);
  for (int i = 0; i < n; i++) {
    const np_case *c = &np_cases[i];
    ks_npz_info in;
    TU_OK(ks_npz_reader_info(r, c->key, &in));
    assert_int_equal(in.dtype, c->dtype);
    assert_int_equal(in.ndim, c->ndim);
    for (int d = 0; d < c->ndim; d++) assert_int_equal(in.shape[d], c->shape[d]);
    char raw[128], *p;
    snprintf(raw, sizeof raw, "raw_%s.bin", c->key);
    for (p = raw; *p; p++) if (*p == '/') *p = '_';
    size_t nraw;
    void *want = read_file(tpath(raw), &nraw);
    assert_int_equal(nraw, (size_t)in.size * ks_npz_dtype_size(in.dtype));
    void *got = malloc(nraw + 1);
    TU_OK(ks_npz_reader_read(r, c->key, c->dtype, got, in.size));
    assert_memory_equal(got, want, nraw); /* bit-exact, incl. -0.0 and inf */
    free(got);
    free(want);
  }
  ks_npz_reader_close(r);
}

static void test_npz__numpy_savez_loads(void **state) {
  (void)state;
  generate_numpy_files();
  check_numpy_file("np_stored.npz");
}

static void test_npz__numpy_savez_compressed_loads(void **state) {
  (void)state;
  generate_numpy_files();
  check_numpy_file("np_deflated.npz");
}

static void test_npz__load_model_written_by_numpy(void **state) {
  (void)state;
  require_python();
  /* what chainer.serializers.save_npz writes for Chain(l1=Linear(None, 4),
   * l2=Linear(4, 2)): savez_compressed with keys l1/W, l1/b, l2/W, l2/b */
  const char *script =
    "import numpy as np\n"
    "rng = np.random.RandomState(0)\n"
    "d = {'l1/W': rng.randn(4, 3).astype(np.float32), 'l1/b': rng.randn(4).astype(np.float32),\n"
    "     'l2/W': rng.randn(2, 4).astype(np.float32), 'l2/b': rng.randn(2).astype(np.float32),\n"
    "     'extra/ignored': np.zeros(3, np.float32)}\n"
    "np.savez_compressed('chainer_like.npz', **d)\n"
    "for k, a in d.items(): a.tofile('cl_' + k.replace('/', '_') + '.bin')\n";
  if (run_python("chainer_like.py", script) != 0) fail_msg("the numpy script failed (see stderr)");
  ks_link *m = ks_chain_new();
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(0, 4, NULL)));
  TU_OK(ks_link_add_child(m, "l2", ks_linear_link_new(4, 2, NULL)));
  TU_OK(ks_load_npz(tpath("chainer_like.npz"), m));
  assert_int_equal(ks_linear_link_in_size(ks_link_child(m, "l1")), 3);
  const char *keys[] = {"l1/W", "l1/b", "l2/W", "l2/b"};
  for (int i = 0; i < 4; i++) {
    char raw[64], *p;
    snprintf(raw, sizeof raw, "cl_%s.bin", keys[i]);
    for (p = raw; *p; p++) if (*p == '/') *p = '_';
    size_t n;
    void *want = read_file(tpath(raw), &n);
    ks_var *v = ks_link_param(m, keys[i]);
    assert_int_equal(ks_tensor_nbytes(v->data), n);
    assert_memory_equal(v->data->data, want, n);
    free(want);
  }
  ks_link_free(m);
}

static void test_npz__numpy_zip64_loads(void **state) {
  (void)state;
  generate_numpy_files();
  size_t n;
  char *bytes = read_file(tpath("np_zip64.npz"), &n);
  int has_zip64_eocd = 0;
  for (size_t i = 0; i + 4 <= n; i++)
    if (memcmp(bytes + i, "PK\x06\x06", 4) == 0) has_zip64_eocd = 1;
  free(bytes);
  assert_true(has_zip64_eocd);
  check_numpy_file("np_zip64.npz");
}

static void test_npz__numpy_versions_and_unsupported(void **state) {
  (void)state;
  generate_numpy_files();
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("np_versions.npz")));
  /* notes.txt is not an array and is not listed */
  assert_int_equal(ks_npz_reader_num_keys(r), 5);
  size_t nraw;
  float *want = read_file(tpath("raw_f32.bin"), &nraw);
  for (int v = 0; v < 2; v++) {
    const char *key = v ? "v3" : "v2";
    ks_tensor *t = ks_npz_reader_read_tensor(r, key);
    TU_NONNULL(t);
    assert_int_equal(t->ndim, 3);
    assert_memory_equal(t->data, want, nraw);
    ks_tensor_free(t);
  }
  free(want);
  assert_int_equal(ks_npz_reader_info(r, "fortran", NULL), KS_EUNSUPPORTED);
  tu_assert_error(KS_EUNSUPPORTED, "fortran", "fortran_order");
  assert_int_equal(ks_npz_reader_info(r, "bigendian", NULL), KS_EUNSUPPORTED);
  tu_assert_error(KS_EUNSUPPORTED, "bigendian", ">f4");
  float dummy[24];
  assert_int_equal(ks_npz_reader_read(r, "half", KS_NPZ_F4, dummy, 24), KS_EUNSUPPORTED);
  tu_assert_error(KS_EUNSUPPORTED, "half", "<f2");
  assert_int_equal(ks_npz_reader_info(r, "notes", NULL), KS_ENOTFOUND);
  ks_npz_reader_close(r);
}

static void test_npz__conversions(void **state) {
  (void)state;
  generate_numpy_files();
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("np_deflated.npz")));
  float f[4];
  TU_OK(ks_npz_reader_read(r, "f64", KS_NPZ_F4, f, 3)); /* f8 -> f4 */
  assert_true(f[0] == 0.1f && f[2] == 2.5f && isinf(f[1]));
  TU_OK(ks_npz_reader_read(r, "i32", KS_NPZ_F4, f, 4)); /* int -> float */
  assert_true(f[1] == -2.0f);
  int32_t i4[4];
  TU_OK(ks_npz_reader_read(r, "i64", KS_NPZ_I4, i4, 4)); /* i8 -> i4 */
  assert_int_equal(i4[3], 8);
  int64_t i8;
  TU_OK(ks_npz_reader_read(r, "t", KS_NPZ_I8, &i8, 1));
  assert_int_equal(i8, 12);
  assert_int_equal(ks_npz_reader_read(r, "f32", KS_NPZ_I4, i4, 24), KS_ESHAPE); /* float -> int */
  tu_assert_error(KS_ESHAPE, "f32");
  assert_int_equal(ks_npz_reader_read(r, "i32", KS_NPZ_I4, i4, 3), KS_ESHAPE); /* wrong count */
  ks_tensor *t = ks_npz_reader_read_tensor(r, "i64");
  TU_NONNULL(t);
  assert_int_equal(t->dtype, KS_I32);
  ks_tensor_free(t);
  t = ks_npz_reader_read_tensor(r, "empty");
  TU_NONNULL(t);
  assert_int_equal(t->size, 0);
  ks_tensor_free(t);
  assert_null(ks_npz_reader_read_tensor(r, "missing"));
  tu_assert_error(KS_ENOTFOUND, "missing");
  ks_npz_reader_close(r);
}

/* ==================================================================================== */
/* kusari → numpy                                                                         */

typedef struct out_case {
  const char *key;
  ks_npz_dtype dtype;
  int ndim;
  int64_t shape[3];
} out_case;

static void test_npz__numpy_loads_ours(void **state) {
  (void)state;
  require_python();
  static float f1[24], special[6];
  static int32_t i1[5] = {0, -1, 2147483647, -2147483647 - 1, 42};
  static double d1[2] = {1.0 / 3.0, -1e-310};
  static int64_t l1 = -9000000000LL;
  static float sc = -7.5f;
  for (int i = 0; i < 24; i++) f1[i] = (float)(i * 0.37 - 4.1);
  special[0] = NAN;
  special[1] = INFINITY;
  special[2] = -0.0f;
  special[3] = 1e-45f; /* denormal */
  special[4] = -3.4e38f;
  special[5] = 1.0f;
  const out_case cases[] = {
    {"l1/W", KS_NPZ_F4, 3, {2, 3, 4}}, {"special", KS_NPZ_F4, 2, {2, 3}},
    {"scalar", KS_NPZ_F4, 0, {0}},     {"empty", KS_NPZ_F4, 1, {0}},
    {"empty2", KS_NPZ_F4, 2, {0, 3}},  {"labels", KS_NPZ_I4, 1, {5}},
    {"f64", KS_NPZ_F8, 1, {2}},        {"t", KS_NPZ_I8, 0, {0}},
  };
  const void *data[] = {f1, special, &sc, NULL, NULL, i1, d1, &l1};
  int n = (int)(sizeof cases / sizeof cases[0]);
  for (int compress = 0; compress < 2; compress++) {
    const char *file = compress ? "ours_deflated.npz" : "ours_stored.npz";
    ks_npz_writer *w;
    TU_OK(ks_npz_writer_open(&w, tpath(file), compress));
    for (int i = 0; i < n; i++)
      TU_OK(ks_npz_writer_add(w, cases[i].key, cases[i].dtype, cases[i].ndim, cases[i].shape, data[i]));
    TU_OK(ks_npz_writer_commit(w));
    /* raw bytes and the expectations for the checker */
    char spec[2048] = "";
    size_t off = 0;
    for (int i = 0; i < n; i++) {
      char raw[128], *p;
      snprintf(raw, sizeof raw, "ours_raw_%s.bin", cases[i].key);
      for (p = raw; *p; p++) if (*p == '/') *p = '_';
      int64_t size = ks_shape_size(cases[i].ndim, cases[i].shape);
      write_file(tpath(raw), data[i] ? data[i] : "", (size_t)size * ks_npz_dtype_size(cases[i].dtype));
      off += (size_t)snprintf(spec + off, sizeof spec - off, "  ('%s', '%s', (", cases[i].key,
                              ks_npz_dtype_descr(cases[i].dtype));
      for (int d = 0; d < cases[i].ndim; d++)
        off += (size_t)snprintf(spec + off, sizeof spec - off, "%lld,", (long long)cases[i].shape[d]);
      off += (size_t)snprintf(spec + off, sizeof spec - off, "), '%s'),\n", raw);
    }
    char script[8192];
    snprintf(script, sizeof script,
             "import numpy as np, zipfile, sys\n"
             "spec = [\n%s]\n"
             "f = np.load('%s')\n"
             "assert sorted(f.files) == sorted(k for k, _, _, _ in spec), f.files\n"
             "for key, descr, shape, raw in spec:\n"
             "  a = f[key]\n"
             "  assert a.dtype == np.dtype(descr), (key, a.dtype)\n"
             "  assert a.shape == shape, (key, a.shape, shape)\n"
             "  assert a.tobytes() == open(raw, 'rb').read(), key\n"
             "  assert np.array_equal(a, np.fromfile(raw, dtype=descr).reshape(shape), equal_nan=True), key\n"
             "with zipfile.ZipFile('%s') as z:\n"
             "  assert z.testzip() is None\n"
             "  for i in z.infolist():\n"
             "    assert i.compress_type == %s, (i.filename, i.compress_type)\n"
             "print('numpy read %s: OK')\n",
             spec, file, file, compress ? "zipfile.ZIP_DEFLATED" : "zipfile.ZIP_STORED", file);
    if (run_python("check.py", script) != 0) fail_msg("numpy could not read %s identically (see stderr)", file);
  }
}

static void test_npz__numpy_loads_our_model_and_empty_archive(void **state) {
  (void)state;
  require_python();
  ks_link *m = ks_chain_new();
  ks_linear_opts o = {0};
  o.seed = 3;
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(4, 3, &o)));
  TU_OK(ks_link_add_child(m, "l2", ks_linear_link_new(3, 2, &o)));
  TU_OK(ks_save_npz(tpath("model.npz"), m));
  /* checksum of W of l1 computed here in double; numpy must agree exactly on
   * every element: write the raw bytes and compare */
  ks_var *W = ks_link_param(m, "l1/W");
  write_file(tpath("model_l1_W.bin"), W->data->data, ks_tensor_nbytes(W->data));
  const char *script =
    "import numpy as np\n"
    "f = np.load('model.npz')\n"
    "assert sorted(f.files) == ['l1/W', 'l1/b', 'l2/W', 'l2/b'], f.files\n"
    "assert f['l1/W'].shape == (3, 4) and f['l1/b'].shape == (3,) and f['l2/W'].shape == (2, 3)\n"
    "assert f['l1/W'].tobytes() == open('model_l1_W.bin', 'rb').read()\n"
    "assert not f['l1/b'].any()\n"
    "e = np.load('empty.npz')\n"
    "assert e.files == []\n";
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, tpath("empty.npz"), 1));
  TU_OK(ks_npz_writer_commit(w));
  if (run_python("model.py", script) != 0) fail_msg("numpy could not read model.npz/empty.npz (see stderr)");
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("empty.npz")));
  assert_int_equal(ks_npz_reader_num_keys(r), 0);
  ks_npz_reader_close(r);
  ks_link_free(m);
}

static void test_npz__numpy_reads_optimizer_state(void **state) {
  (void)state;
  require_python();
  ks_link *m = ks_chain_new();
  ks_linear_opts o = {0};
  TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(3, 2, &o)));
  ks_optimizer *opt = ks_optimizer_adam_new(NULL);
  TU_OK(ks_optimizer_setup(opt, m));
  ks_link_zerograds(m);
  ks_tensor_f32(ks_link_param(m, "l1/b")->grad)[1] = 0.5f;
  TU_OK(ks_optimizer_update(opt));
  TU_OK(ks_optimizer_update(opt));
  TU_OK(ks_save_npz_optimizer(tpath("adam.npz"), opt));
  write_file(tpath("adam_b_m.bin"), ks_optimizer_state(opt, 0, 1), 2 * sizeof(float));
  const char *script =
    "import numpy as np\n"
    "f = np.load('adam.npz')\n"
    "want = ['epoch', 'l1/W/m', 'l1/W/t', 'l1/W/v', 'l1/b/m', 'l1/b/t', 'l1/b/v', 't']\n"
    "assert sorted(f.files) == want, f.files\n"
    "assert f['t'].dtype == np.int64 and f['t'].shape == () and int(f['t']) == 2\n"
    "assert int(f['l1/b/t']) == 2 and int(f['epoch']) == 0\n"
    "assert f['l1/W/m'].shape == (2, 3) and f['l1/W/m'].dtype == np.float32\n"
    "assert f['l1/b/m'].tobytes() == open('adam_b_m.bin', 'rb').read()\n"
    "assert f['l1/b/m'][1] != 0 and f['l1/b/m'][0] == 0\n";
  if (run_python("adam.py", script) != 0) fail_msg("numpy could not read adam.npz as expected (see stderr)");
  ks_optimizer_free(opt);
  ks_link_free(m);
}

/* ==================================================================================== */
/* writer behaviour                                                                       */

static int count_dir_entries(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void test_npz__writer_errors_and_atomicity(void **state) {
  (void)state;
  ks_npz_writer *w;
  float x[2] = {1, 2};
  TU_OK(ks_npz_writer_open(&w, tpath("atomic.npz"), 1));
  TU_OK(ks_npz_writer_add(w, "a", KS_NPZ_F4, 1, (int64_t[]){2}, x));
  assert_int_equal(ks_npz_writer_add(w, "a", KS_NPZ_F4, 1, (int64_t[]){2}, x), KS_EINVAL);
  tu_assert_error(KS_EINVAL, "'a'", "twice");
  assert_int_equal(ks_npz_writer_add(w, "", KS_NPZ_F4, 1, (int64_t[]){2}, x), KS_EINVAL);
  assert_int_equal(ks_npz_writer_add(w, "b", KS_NPZ_F4, 1, (int64_t[]){-2}, x), KS_EINVAL);
  TU_OK(ks_npz_writer_commit(w));
  int entries = count_dir_entries();
  /* a second writer for the same path that is discarded leaves the file */
  size_t n1, n2;
  void *before = read_file(tpath("atomic.npz"), &n1);
  TU_OK(ks_npz_writer_open(&w, tpath("atomic.npz"), 1));
  TU_OK(ks_npz_writer_add(w, "zzz", KS_NPZ_F4, 1, (int64_t[]){2}, x));
  ks_npz_writer_discard(w);
  void *after = read_file(tpath("atomic.npz"), &n2);
  assert_int_equal(n1, n2);
  assert_memory_equal(before, after, n1);
  free(before);
  free(after);
  /* overwriting replaces the file and leaves no temporary behind */
  TU_OK(ks_npz_writer_open(&w, tpath("atomic.npz"), 0));
  TU_OK(ks_npz_writer_add(w, "c", KS_NPZ_F4, 0, NULL, x));
  TU_OK(ks_npz_writer_commit(w));
  assert_int_equal(count_dir_entries(), entries);
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("atomic.npz")));
  assert_int_equal(ks_npz_reader_num_keys(r), 1);
  assert_string_equal(ks_npz_reader_key(r, 0), "c");
  ks_npz_reader_close(r);
  /* a directory that does not exist: KS_EIO, nothing written */
  TU_OK(ks_npz_writer_open(&w, tpath("no/such/dir.npz"), 1));
  TU_OK(ks_npz_writer_add(w, "a", KS_NPZ_F4, 1, (int64_t[]){2}, x));
  assert_int_equal(ks_npz_writer_commit(w), KS_EIO);
  tu_assert_error(KS_EIO, "dir.npz");
  assert_int_equal(count_dir_entries(), entries);
  ks_npz_writer_discard(NULL);
}

/* ==================================================================================== */
/* malformed input                                                                        */

/* zip with one entry 'name' holding 'n' bytes */
static void make_zip(const char *file, const char *name, const void *bytes, size_t n, int compress) {
  int err;
  unlink(tpath(file));
  zip_t *za = zip_open(tpath(file), ZIP_CREATE | ZIP_TRUNCATE, &err);
  assert_non_null(za);
  void *copy = malloc(n ? n : 1);
  memcpy(copy, bytes, n);
  zip_source_t *src = zip_source_buffer(za, copy, n, 1);
  zip_int64_t idx = zip_file_add(za, name, src, 0);
  assert_true(idx >= 0);
  zip_set_file_compression(za, (zip_uint64_t)idx, compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  assert_int_equal(zip_close(za), 0);
}

/* .npy v1 bytes: header dict 'dict' then 'ndata' bytes of data */
static size_t npy_bytes(char *out, const char *dict, size_t ndata) {
  size_t hl = strlen(dict);
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (char)(hl & 0xff);
  out[9] = (char)(hl >> 8);
  memcpy(out + 10, dict, hl);
  memset(out + 10 + hl, 0x3f, ndata);
  return 10 + hl + ndata;
}

static void expect_entry_error(const char *file, int code, const char *what) {
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath(file)));
  assert_int_equal(ks_npz_reader_num_keys(r), 1);
  float buf[64];
  int rc = ks_npz_reader_read(r, "x", KS_NPZ_F4, buf, 6);
  if (rc != code)
    fail_msg("%s: expected %s, got %s: %s", file, ks_status_name(code), ks_status_name(rc), ks_error_last());
  tu_assert_error(code, "'x'", what);
  ks_npz_reader_close(r);
  /* and through load_npz into a link: same error, link unchanged */
  ks_link *m = ks_chain_new();
  ks_var *v = ks_link_add_param(m, "x", 2, (int64_t[]){2, 3}, NULL, NULL);
  ks_tensor_f32(v->data)[0] = 5.0f;
  assert_int_equal(ks_load_npz(tpath(file), m), code);
  assert_true(ks_tensor_f32(v->data)[0] == 5.0f);
  ks_link_free(m);
}

static void test_npz__not_a_zip(void **state) {
  (void)state;
  write_file(tpath("text.npz"), "hello, this is not a zip archive at all\n", 40);
  ks_npz_reader *r = (ks_npz_reader *)1;
  assert_int_equal(ks_npz_reader_open(&r, tpath("text.npz")), KS_EFORMAT);
  assert_null(r);
  tu_assert_error(KS_EFORMAT, "text.npz", "not a zip");
  write_file(tpath("zero.npz"), "", 0);
  assert_int_equal(ks_npz_reader_open(&r, tpath("zero.npz")), KS_EFORMAT);
  tu_assert_error(KS_EFORMAT, "zero.npz");
  /* a plain .npy file is not an .npz either */
  char npy[256];
  size_t n = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24);
  write_file(tpath("plain.npy"), npy, n);
  assert_int_equal(ks_npz_reader_open(&r, tpath("plain.npy")), KS_EFORMAT);
  assert_int_equal(ks_npz_reader_open(&r, tpath("missing.npz")), KS_ENOTFOUND);
  tu_assert_error(KS_ENOTFOUND, "missing.npz");
}

static void test_npz__truncated_archive(void **state) {
  (void)state;
  float x[256];
  for (int i = 0; i < 256; i++) x[i] = (float)i;
  ks_npz_writer *w;
  TU_OK(ks_npz_writer_open(&w, tpath("full.npz"), 1));
  TU_OK(ks_npz_writer_add(w, "x", KS_NPZ_F4, 1, (int64_t[]){256}, x));
  TU_OK(ks_npz_writer_commit(w));
  size_t n;
  char *bytes = read_file(tpath("full.npz"), &n);
  for (size_t cut = 1; cut < n; cut += n / 7 + 1) {
    write_file(tpath("cut.npz"), bytes, cut);
    ks_npz_reader *r;
    int rc = ks_npz_reader_open(&r, tpath("cut.npz"));
    assert_int_equal(rc, KS_EFORMAT);
  }
  /* corrupt deflate data in the middle of the entry: read fails cleanly */
  int fnlen = (unsigned char)bytes[26] | (unsigned char)bytes[27] << 8;
  int exlen = (unsigned char)bytes[28] | (unsigned char)bytes[29] << 8;
  size_t data = 30 + (size_t)fnlen + (size_t)exlen;
  for (int k = 0; k < 8; k++) bytes[data + 40 + (size_t)k] ^= 0x5a;
  write_file(tpath("corrupt.npz"), bytes, n);
  ks_npz_reader *r;
  int rc = ks_npz_reader_open(&r, tpath("corrupt.npz"));
  if (rc == KS_OK) {
    float out[256];
    rc = ks_npz_reader_read(r, "x", KS_NPZ_F4, out, 256);
    ks_npz_reader_close(r);
  }
  assert_int_equal(rc, KS_EFORMAT);
  free(bytes);
}

static void test_npz__bad_magic(void **state) {
  (void)state;
  char npy[256];
  size_t n = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24);
  npy[1] = 'X';
  make_zip("magic.npz", "x.npy", npy, n, 1);
  expect_entry_error("magic.npz", KS_EFORMAT, "magic");
  make_zip("tiny.npz", "x.npy", "\x93NU", 3, 0);
  expect_entry_error("tiny.npz", KS_EFORMAT, "magic");
  npy[1] = 'N';
  npy[6] = 4; /* version 4.0 */
  make_zip("v4.npz", "x.npy", npy, n, 0);
  expect_entry_error("v4.npz", KS_EUNSUPPORTED, "version");
}

static void test_npz__truncated_header(void **state) {
  (void)state;
  char npy[256];
  npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 24);
  make_zip("trunc_h.npz", "x.npy", npy, 30, 1); /* header says ~60 bytes */
  expect_entry_error("trunc_h.npz", KS_EFORMAT, "truncated");
  make_zip("trunc_h2.npz", "x.npy", npy, 9, 0); /* cut inside the length field */
  expect_entry_error("trunc_h2.npz", KS_EFORMAT, "truncated");
}

static void test_npz__header_garbage(void **state) {
  (void)state;
  const char *dicts[] = {
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) garbage}\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }}\n",
    "not a dict at all\n",
    "{'descr': '<f4', 'fortran_order': maybe, 'shape': (2, 3), }\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }\n",
    "{'descr': '<f4', 'fortran_order': False, }\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1, }\n",
    "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
    "{'descr: '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 3), }\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3,4,5,6,7,8,9), }\n",
    "",
  };
  for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
    char npy[512];
    size_t n = npy_bytes(npy, dicts[i], 24);
    make_zip("garbage.npz", "x.npy", npy, n, (int)(i & 1));
    ks_npz_reader *r;
    TU_OK(ks_npz_reader_open(&r, tpath("garbage.npz")));
    int rc = ks_npz_reader_info(r, "x", NULL);
    if (rc != KS_EFORMAT && rc != KS_EUNSUPPORTED)
      fail_msg("header %zu: expected KS_EFORMAT, got %s: %s", i, ks_status_name(rc), ks_error_last());
    assert_non_null(strstr(ks_error_last(), "'x'"));
    ks_npz_reader_close(r);
  }
  char npy[512];
  size_t n = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3) garbage}\n", 24);
  make_zip("garbage.npz", "x.npy", npy, n, 1);
  expect_entry_error("garbage.npz", KS_EFORMAT, "header");
  /* a valid header with double quotes and Python 2 longs is fine */
  n = npy_bytes(npy, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 3L)}    \n", 24);
  make_zip("py2.npz", "x.npy", npy, n, 0);
  ks_npz_reader *r;
  TU_OK(ks_npz_reader_open(&r, tpath("py2.npz")));
  ks_npz_info in;
  TU_OK(ks_npz_reader_info(r, "x", &in));
  assert_int_equal(in.ndim, 2);
  assert_int_equal(in.shape[1], 3);
  ks_npz_reader_close(r);
}

static void test_npz__data_shorter_than_shape(void **state) {
  (void)state;
  char npy[256];
  size_t n = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 13);
  make_zip("short.npz", "x.npy", npy, n, 1);
  expect_entry_error("short.npz", KS_EFORMAT, "shorter");
  make_zip("short2.npz", "x.npy", npy, n, 0);
  expect_entry_error("short2.npz", KS_EFORMAT, "shorter");
  /* fortran order through the loader: clear error */
  n = npy_bytes(npy, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", 24);
  make_zip("fortran.npz", "x.npy", npy, n, 1);
  expect_entry_error("fortran.npz", KS_EUNSUPPORTED, "fortran_order");
}

/* A float scalar where an integer counter is expected (an optimizer's t or
 * epoch, BatchNormalization's N), out of int64's range or NaN: a clear
 * KS_EFORMAT, never an undefined conversion (UBSan: "-7.8e+298 is outside the
 * range of representable values of type 'long'"), and the object unchanged. */
static void test_npz__float_counter_out_of_range(void **state) {
  (void)state;
  const double bad[] = {-7.8e298, 9.3e18, NAN, INFINITY};
  for (int k = 0; k < 4; k++) {
    /* optimizer: 't' then 'epoch' */
    for (int which = 0; which < 2; which++) {
      ks_link *m = ks_chain_new();
      TU_OK(ks_link_add_child(m, "l1", ks_linear_link_new(3, 2, &(ks_linear_opts){0})));
      ks_optimizer *opt = ks_optimizer_adam_new(NULL);
      TU_OK(ks_optimizer_setup(opt, m));
      ks_npz_writer *w = NULL;
      TU_OK(ks_npz_writer_open(&w, tpath("badt.npz"), 1));
      double one = 1;
      TU_OK(ks_npz_writer_add(w, "t", KS_NPZ_F8, 0, NULL, which == 0 ? &bad[k] : &one));
      TU_OK(ks_npz_writer_add(w, "epoch", KS_NPZ_F8, 0, NULL, which == 1 ? &bad[k] : &one));
      TU_OK(ks_npz_writer_commit(w));
      assert_int_equal(ks_load_npz_optimizer(tpath("badt.npz"), opt), KS_EFORMAT);
      assert_non_null(strstr(ks_error_last(), which == 0 ? "key 't'" : "key 'epoch'"));
      assert_non_null(strstr(ks_error_last(), "is not a 64-bit integer"));
      ks_optimizer_free(opt);
      ks_link_free(m);
    }
    /* BatchNormalization's persistent N */
    ks_link *bn = ks_batch_normalization_link_new(2, NULL);
    TU_NONNULL(bn);
    ks_npz_writer *w = NULL;
    TU_OK(ks_npz_writer_open(&w, tpath("badn.npz"), 1));
    const float v2[2] = {1, 1};
    const char *keys[] = {"gamma", "beta", "avg_mean", "avg_var"};
    for (int i = 0; i < 4; i++) TU_OK(ks_npz_writer_add(w, keys[i], KS_NPZ_F4, 1, (int64_t[]){2}, v2));
    TU_OK(ks_npz_writer_add(w, "N", KS_NPZ_F8, 0, NULL, &bad[k]));
    TU_OK(ks_npz_writer_commit(w));
    assert_int_equal(ks_load_npz(tpath("badn.npz"), bn), KS_EFORMAT);
    assert_non_null(strstr(ks_error_last(), "key 'N'"));
    /* the same file with N = 3.0 loads (a float that fits is accepted) */
    const double three = 3;
    TU_OK(ks_npz_writer_open(&w, tpath("goodn.npz"), 1));
    for (int i = 0; i < 4; i++) TU_OK(ks_npz_writer_add(w, keys[i], KS_NPZ_F4, 1, (int64_t[]){2}, v2));
    TU_OK(ks_npz_writer_add(w, "N", KS_NPZ_F8, 0, NULL, &three));
    TU_OK(ks_npz_writer_commit(w));
    TU_OK(ks_load_npz(tpath("goodn.npz"), bn));
    ks_link_free(bn);
  }
}

/* Sets the uncompressed size of every entry of 'file' (local and central
 * headers) to 'size', as a forged archive would. */
static void forge_sizes(const char *file, uint32_t size) {
  size_t n = 0;
  unsigned char *b = read_file(tpath(file), &n);
  int patched = 0;
  for (size_t i = 0; i + 46 <= n; i++) {
    size_t at = 0;
    if (!memcmp(b + i, "PK\x03\x04", 4)) at = i + 22;
    else if (!memcmp(b + i, "PK\x01\x02", 4)) at = i + 24;
    else continue;
    for (int k = 0; k < 4; k++) b[at + k] = (unsigned char)(size >> (8 * k));
    patched++;
  }
  assert_int_equal(patched, 2);
  write_file(tpath(file), b, n);
  free(b);
}

/* A zip directory that claims an entry far larger than its compressed bytes
 * (and a .npy shape to match) is refused at open, before anything of that
 * size is allocated: a stored entry holds exactly its compressed bytes, a
 * deflated one at most 1032 times them. */
static void test_npz__forged_entry_sizes(void **state) {
  (void)state;
  char npy[256];
  /* (134217700,) float32 = 536870800 bytes after a 64-byte header */
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (134217700,), }      \n";
  size_t n = npy_bytes(npy, dict, 8);
  assert_int_equal(n, 10 + strlen(dict) + 8);
  for (int compress = 0; compress < 2; compress++) {
    const char *file = compress ? "forged_deflate.npz" : "forged_stored.npz";
    make_zip(file, "x.npy", npy, n, compress);
    forge_sizes(file, (uint32_t)(10 + strlen(dict) + 536870800u));
    ks_npz_reader *r;
    TU_OK(ks_npz_reader_open(&r, tpath(file)));
    ks_npz_info info;
    assert_int_equal(ks_npz_reader_info(r, "x", &info), KS_EFORMAT);
    tu_assert_error(KS_EFORMAT, "'x'", "a damaged or forged archive");
    assert_null(ks_npz_reader_read_tensor(r, "x"));
    ks_npz_reader_close(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_npz__numpy_savez_loads),
    cmocka_unit_test(test_npz__numpy_savez_compressed_loads),
    cmocka_unit_test(test_npz__numpy_zip64_loads),
    cmocka_unit_test(test_npz__load_model_written_by_numpy),
    cmocka_unit_test(test_npz__numpy_versions_and_unsupported),
    cmocka_unit_test(test_npz__numpy_reads_optimizer_state),
    cmocka_unit_test(test_npz__conversions),
    cmocka_unit_test(test_npz__numpy_loads_ours),
    cmocka_unit_test(test_npz__numpy_loads_our_model_and_empty_archive),
    cmocka_unit_test(test_npz__writer_errors_and_atomicity),
    cmocka_unit_test(test_npz__not_a_zip),
    cmocka_unit_test(test_npz__truncated_archive),
    cmocka_unit_test(test_npz__bad_magic),
    cmocka_unit_test(test_npz__truncated_header),
    cmocka_unit_test(test_npz__header_garbage),
    cmocka_unit_test(test_npz__data_shorter_than_shape),
    cmocka_unit_test(test_npz__float_counter_out_of_range),
    cmocka_unit_test(test_npz__forged_entry_sizes),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
