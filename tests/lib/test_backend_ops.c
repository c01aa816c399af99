/*
 * tests/lib/test_backend_ops.c — one table of functions run forward and
 * backward on every registered backend and compared with the CPU reference
 * (as ggml's test-backend-ops does), plus the device memory API.
 *
 * The "checked" backend used here is the CPU's kernels behind a door: its
 * memory is one mmap'd region kept PROT_NONE except while a call of its
 * table runs, every allocation has a magic tag and guard bytes checked on
 * free. Host code that reads or writes device memory outside the table
 * crashes the test (SIGSEGV), so a pass proves the table carries every byte.
 * Kernels it does not wrap are NULL: the functions needing them report
 * KS_EUNSUPPORTED and the table below lists which ones run.
 */
#include "testutil.h"

#include "kusari/backend.h"
#include "kusari/link.h"
#include "kusari/serializers.h"

#include <stdio.h>
#include <stdlib.h>

#include <math.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the checked backend ------------------------------------------------------- */

#define CK_REGION ((size_t)256 << 20)
#define CK_MAGIC 0x6b75736172696b31ULL /* "kusarik1" */
#define CK_GUARD 64
typedef struct ck_head { uint64_t magic; uint64_t bytes; uint64_t freed; uint64_t pad[5]; } ck_head;

static unsigned char *g_region;
static size_t g_used;
static int g_depth; /* nested opens (a kernel calling copy, say) */
static const ks_backend_ops *g_cpu;

static void ck_open(void) {
  if (g_depth++ == 0) assert_int_equal(mprotect(g_region, CK_REGION, PROT_READ | PROT_WRITE), 0);
}
static void ck_close(void) {
  if (--g_depth == 0) assert_int_equal(mprotect(g_region, CK_REGION, PROT_NONE), 0);
}

static void *ck_alloc(size_t bytes) {
  size_t need = (sizeof(ck_head) + bytes + CK_GUARD + 63) & ~(size_t)63;
  if (g_used + need > CK_REGION) return NULL;
  ck_open();
  ck_head *h = (ck_head *)(g_region + g_used);
  h->magic = CK_MAGIC;
  h->bytes = bytes;
  h->freed = 0;
  memset((unsigned char *)(h + 1) + bytes, 0xA5, CK_GUARD);
  g_used += need;
  ck_close();
  return h + 1;
}
static void ck_free(void *p) {
  if (!p) return;
  assert_true((unsigned char *)p > g_region && (unsigned char *)p < g_region + CK_REGION);
  ck_open();
  ck_head *h = (ck_head *)p - 1;
  assert_true(h->magic == CK_MAGIC);
  assert_true(h->freed == 0);
  for (int i = 0; i < CK_GUARD; i++) assert_int_equal(((unsigned char *)p)[h->bytes + i], 0xA5);
  h->freed = 1;
  ck_close();
}

#define CK_VOID(name, params, args) \
  static void ck_##name params { ck_open(); g_cpu->name args; ck_close(); }
CK_VOID(memcpy_to_host, (void *d, const void *s, size_t n), (d, s, n))
CK_VOID(memcpy_from_host, (void *d, const void *s, size_t n), (d, s, n))
CK_VOID(fill_bytes, (void *d, int v, size_t n), (d, v, n))
CK_VOID(copy, (void *d, const void *s, size_t n), (d, s, n))
CK_VOID(gemm, (int ta, int tb, int64_t m, int64_t n, int64_t k, float al, const float *a,
               int64_t lda, const float *b, int64_t ldb, float be, float *c, int64_t ldc),
        (ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc))
CK_VOID(axpy, (int64_t n, float a, const float *x, float *y), (n, a, x, y))
CK_VOID(fill, (int64_t n, float v, float *x), (n, v, x))
CK_VOID(scale, (int64_t n, float a, const float *x, float *y), (n, a, x, y))
CK_VOID(add, (int64_t n, int64_t m, const float *a, const float *b, float *y), (n, m, a, b, y))
CK_VOID(sub, (int64_t n, int64_t m, const float *a, const float *b, float *y), (n, m, a, b, y))
CK_VOID(mul, (int64_t n, int64_t m, const float *a, const float *b, float *y), (n, m, a, b, y))
CK_VOID(broadcast_rows, (int64_t n, int64_t m, const float *b, float *y), (n, m, b, y))
CK_VOID(col_sum, (int64_t n, int64_t m, const float *x, float *o), (n, m, x, o))
CK_VOID(relu_forward, (int64_t n, const float *x, float *y), (n, x, y))
CK_VOID(relu_backward, (int64_t n, const float *y, const float *gy, float *gx), (n, y, gy, gx))
CK_VOID(sigmoid_forward, (int64_t n, const float *x, float *y), (n, x, y))
CK_VOID(sigmoid_backward, (int64_t n, const float *y, const float *gy, float *gx), (n, y, gy, gx))
CK_VOID(softmax_xent_backward, (int64_t n, int64_t c, const float *p, const int32_t *t,
                                int32_t ig, float s, float *gx), (n, c, p, t, ig, s, gx))
CK_VOID(leaky_relu_forward, (int64_t n, float s, const float *x, float *y), (n, s, x, y))
CK_VOID(leaky_relu_backward, (int64_t n, float s, const float *x, const float *gy, float *gx),
        (n, s, x, gy, gx))
CK_VOID(tanh_forward, (int64_t n, const float *x, float *y), (n, x, y))
CK_VOID(tanh_backward, (int64_t n, const float *y, const float *gy, float *gx), (n, y, gy, gx))
CK_VOID(softmax_forward, (int64_t o, int64_t c, int64_t i, const float *x, float *y), (o, c, i, x, y))
CK_VOID(softmax_backward, (int64_t o, int64_t c, int64_t i, const float *y, const float *gy,
                           float *gx), (o, c, i, y, gy, gx))
CK_VOID(log_softmax_forward, (int64_t o, int64_t c, int64_t i, const float *x, float *y),
        (o, c, i, x, y))
CK_VOID(log_softmax_backward, (int64_t o, int64_t c, int64_t i, const float *y, const float *gy,
                               float *gx), (o, c, i, y, gy, gx))
CK_VOID(sum_axis, (int64_t o, int64_t c, int64_t i, float a, const float *x, float *y),
        (o, c, i, a, x, y))
CK_VOID(broadcast_axis, (int64_t o, int64_t c, int64_t i, float a, const float *gy, float *gx),
        (o, c, i, a, gy, gx))
CK_VOID(sum_sq, (int64_t n, float a, const float *x, float *o), (n, a, x, o))
static int64_t ck_softmax_xent_forward(int64_t n, int64_t c, const float *x, const int32_t *t,
                                       int32_t ig, float *p, float *loss) {
  ck_open();
  int64_t r = g_cpu->softmax_xent_forward(n, c, x, t, ig, p, loss);
  ck_close();
  return r;
}

static ks_backend_ops g_checked;

static int checked_setup(void **state) {
  (void)state;
  g_cpu = ks_backend_for_device(KS_CPU);
  g_region = mmap(NULL, CK_REGION, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (g_region == MAP_FAILED) return -1;
  g_checked = (ks_backend_ops){
    .name = "checked", .alloc = ck_alloc, .free = ck_free,
    .memcpy_to_host = ck_memcpy_to_host, .memcpy_from_host = ck_memcpy_from_host,
    .fill_bytes = ck_fill_bytes, .copy = ck_copy, .gemm = ck_gemm, .axpy = ck_axpy,
    .fill = ck_fill, .scale = ck_scale, .add = ck_add, .sub = ck_sub, .mul = ck_mul,
    .broadcast_rows = ck_broadcast_rows, .col_sum = ck_col_sum,
    .relu_forward = ck_relu_forward, .relu_backward = ck_relu_backward,
    .sigmoid_forward = ck_sigmoid_forward, .sigmoid_backward = ck_sigmoid_backward,
    .leaky_relu_forward = ck_leaky_relu_forward, .leaky_relu_backward = ck_leaky_relu_backward,
    .tanh_forward = ck_tanh_forward, .tanh_backward = ck_tanh_backward,
    .softmax_forward = ck_softmax_forward, .softmax_backward = ck_softmax_backward,
    .log_softmax_forward = ck_log_softmax_forward,
    .log_softmax_backward = ck_log_softmax_backward,
    .sum_axis = ck_sum_axis, .broadcast_axis = ck_broadcast_axis, .sum_sq = ck_sum_sq,
    .softmax_xent_forward = ck_softmax_xent_forward,
    .softmax_xent_backward = ck_softmax_xent_backward,
  };
  return ks_backend_register(KS_DEVICE_CHECKED, 1, &g_checked) == KS_OK ? 0 : -1;
}
static int checked_teardown(void **state) {
  (void)state;
  ks_backend_register(KS_DEVICE_CHECKED, 0, NULL);
  munmap(g_region, CK_REGION);
  return 0;
}

static const ks_device CK = {KS_DEVICE_CHECKED, 0};

/* ---- device memory ------------------------------------------------------------ */

static void test_backend_ops__tensor_moves(void **state) {
  (void)state;
  const float v[6] = {1, -2, 3.5f, 4, 5, -6};
  ks_tensor *h = ks_tensor_from_data(KS_F32, 2, (int64_t[]){2, 3}, v);
  ks_tensor *d = ks_tensor_to_device(h, CK);
  assert_non_null(d);
  assert_int_equal(d->device.type, KS_DEVICE_CHECKED);
  assert_true((unsigned char *)d->data > g_region && (unsigned char *)d->data < g_region + CK_REGION);
  float back[6] = {0};
  assert_int_equal(ks_tensor_to_host(d, back), KS_OK);
  assert_memory_equal(back, v, sizeof v);
  ks_tensor *c = ks_tensor_clone(d); /* device -> device */
  assert_non_null(c);
  assert_int_equal(c->device.type, KS_DEVICE_CHECKED);
  assert_int_equal(ks_to_device(c, KS_CPU), KS_OK); /* in place, back to the host */
  assert_int_equal(c->device.type, KS_DEVICE_CPU);
  assert_memory_equal(c->data, v, sizeof v);
  ks_tensor *z = ks_tensor_new_on(CK, KS_I32, 1, (int64_t[]){5});
  int32_t zi[5] = {9, 9, 9, 9, 9};
  assert_int_equal(ks_tensor_to_host(z, zi), KS_OK);
  for (int i = 0; i < 5; i++) assert_int_equal(zi[i], 0);
  assert_null(ks_tensor_new_on((ks_device){KS_DEVICE_CUDA, 0}, KS_F32, 1, (int64_t[]){2}));
  assert_int_equal(ks_error_last_code(), KS_EUNSUPPORTED);
  ks_tensor_free(z);
  ks_tensor_free(c);
  ks_tensor_free(d);
  ks_tensor_free(h);
}

/* The checker itself: host code reading a checked tensor's memory dies. */
static void test_backend_ops__host_touch_dies(void **state) {
  (void)state;
  ks_tensor *d = ks_tensor_new_on(CK, KS_F32, 1, (int64_t[]){4});
  assert_non_null(d);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL); /* cmocka catches it in the parent */
    volatile float *p = d->data;
    _exit(p[0] == 0.0f ? 0 : 1); /* must fault before exiting */
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGSEGV);
  ks_tensor_free(d);
}

/* npz save/load of a model on the checked device (host copies both ways). */
static void test_backend_ops__npz_from_device(void **state) {
  (void)state;
  char dir[] = "/tmp/ks_backend_ops_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[64];
  snprintf(path, sizeof path, "%s/m.npz", dir);
  ks_link *ref = ks_linear_link_new(5, 3, &(ks_linear_opts){.seed = 21});
  ks_link *dev = ks_linear_link_new(5, 3, &(ks_linear_opts){.seed = 21});
  ks_link *back = ks_linear_link_new(5, 3, &(ks_linear_opts){.seed = 99});
  ks_link *back_dev = ks_linear_link_new(5, 3, &(ks_linear_opts){.seed = 98});
  assert_int_equal(ks_link_to_device(dev, CK), KS_OK);
  assert_int_equal(ks_save_npz(path, dev), KS_OK);
  assert_int_equal(ks_load_npz(path, back), KS_OK);
  assert_int_equal(ks_link_to_device(back_dev, CK), KS_OK);
  assert_int_equal(ks_load_npz(path, back_dev), KS_OK);
  assert_int_equal(ks_link_param(back_dev, "W")->data->device.type, KS_DEVICE_CHECKED);
  assert_int_equal(ks_link_to_device(back_dev, KS_CPU), KS_OK);
  const ks_tensor *w0 = ks_link_param(ref, "W")->data;
  assert_memory_equal(ks_link_param(back, "W")->data->data, w0->data, ks_tensor_nbytes(w0));
  assert_memory_equal(ks_link_param(back_dev, "W")->data->data, w0->data, ks_tensor_nbytes(w0));
  ks_link_free(ref);
  ks_link_free(dev);
  ks_link_free(back);
  ks_link_free(back_dev);
  unlink(path);
  rmdir(dir);
}

/* Not yet through the table: the flat pack refuses a model on a device
 * instead of reading its memory from the host. */
static void test_backend_ops__pack_refuses_device(void **state) {
  (void)state;
  ks_link *l = ks_linear_link_new(4, 2, NULL);
  assert_int_equal(ks_link_to_device(l, CK), KS_OK);
  assert_int_equal(ks_link_pack(l), KS_EUNSUPPORTED);
  assert_non_null(strstr(ks_error_last(), "host memory only"));
  assert_int_equal(ks_link_to_device(l, KS_CPU), KS_OK);
  assert_int_equal(ks_link_pack(l), KS_OK);
  assert_int_equal(ks_link_to_device(l, CK), KS_EUNSUPPORTED); /* packed: move before packing */
  ks_link_free(l);
}

/* ---- the op table ------------------------------------------------------------- */

/* One case: builds a loss from x (4, 6) int labels t (4,) and the link's
 * params, on whatever device ctx and link are on. */
typedef ks_var *(*op_case_fn)(ks_ctx *ctx, ks_link *lin, ks_var *x, ks_var *t);

static ks_var *case_linear_xent(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  return ks_softmax_cross_entropy(c, ks_link_forward(c, l, x), t, -1);
}
static ks_var *case_relu(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  return ks_softmax_cross_entropy(c, ks_relu(c, ks_link_forward(c, l, x)), t, -1);
}
static ks_var *case_sigmoid(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  return ks_softmax_cross_entropy(c, ks_sigmoid(c, ks_link_forward(c, l, x)), t, -1);
}
static ks_var *case_add_mul(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  ks_var *h = ks_link_forward(c, l, x);
  return ks_softmax_cross_entropy(c, ks_mul(c, ks_add(c, h, h), h), t, -1);
}

static ks_var *case_leaky_tanh(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  ks_var *h = ks_tanh(c, ks_leaky_relu(c, ks_link_forward(c, l, x), 0.2));
  return ks_softmax_cross_entropy(c, h, t, -1);
}
static ks_var *case_softmax_mse(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  (void)t;
  ks_var *h = ks_link_forward(c, l, x);
  return ks_mean_squared_error(c, ks_softmax(c, h, 1), ks_scale(c, ks_sub(c, h, ks_log_softmax(c, h)), 0.5));
}
static ks_var *case_sum_mean(ks_ctx *c, ks_link *l, ks_var *x, ks_var *t) {
  (void)t;
  ks_var *h = ks_link_forward(c, l, x);
  ks_var *a = ks_sum(c, ks_mul(c, h, h), 1);            /* (4,) */
  return ks_mean(c, ks_add(c, a, ks_mean(c, h, 1)), KS_AXIS_ALL);
}

static const struct { const char *name; op_case_fn fn; } op_cases[] = {
  {"leaky_relu, tanh", case_leaky_tanh},
  {"softmax, log_softmax, sub, scale, mean_squared_error", case_softmax_mse},
  {"sum, mean", case_sum_mean},
  {"linear+softmax_cross_entropy", case_linear_xent},
  {"relu", case_relu},
  {"sigmoid", case_sigmoid},
  {"add, mul", case_add_mul},
};

/* loss, gW, gb of one case on 'dev', copied to the host */
static void run_case(op_case_fn fn, ks_device dev, float out[1 + 3 * 6 + 3]) {
  float xv[4 * 6];
  for (int i = 0; i < 24; i++) xv[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
  const int32_t tv[4] = {0, 2, 1, 2};
  ks_link *lin = ks_linear_link_new(6, 3, &(ks_linear_opts){.seed = 11});
  assert_non_null(lin);
  ks_ctx *ctx = ks_ctx_new();
  assert_int_equal(ks_ctx_set_device(ctx, dev), KS_OK);
  assert_int_equal(ks_link_to_device(lin, dev), KS_OK);
  ks_var *x = ks_var_from_data(ctx, KS_F32, 2, (int64_t[]){4, 6}, xv, 0);
  ks_var *t = ks_var_from_data(ctx, KS_I32, 1, (int64_t[]){4}, tv, 0);
  ks_var *loss = fn(ctx, lin, x, t);
  if (!loss) fail_msg("forward failed: %s", ks_error_last());
  assert_int_equal(loss->data->device.type, dev.type);
  assert_int_equal(ks_backward(ctx, loss), KS_OK);
  assert_int_equal(ks_tensor_to_host(loss->data, out), KS_OK);
  assert_int_equal(ks_tensor_to_host(ks_link_param(lin, "W")->grad, out + 1), KS_OK);
  assert_int_equal(ks_tensor_to_host(ks_link_param(lin, "b")->grad, out + 19), KS_OK);
  /* back to the host: the parameters are the CPU's again */
  assert_int_equal(ks_link_to_device(lin, KS_CPU), KS_OK);
  assert_int_equal(ks_link_param(lin, "W")->data->device.type, KS_DEVICE_CPU);
  ks_ctx_free(ctx);
  ks_link_free(lin);
}

static void test_backend_ops__table(void **state) {
  (void)state;
  const ks_device_type types[] = {KS_DEVICE_CHECKED, KS_DEVICE_CUDA};
  int compared = 0;
  for (size_t c = 0; c < sizeof op_cases / sizeof op_cases[0]; c++) {
    float ref[22], got[22];
    run_case(op_cases[c].fn, KS_CPU, ref);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
      if (ks_device_count(types[k]) == 0) continue;
      run_case(op_cases[c].fn, (ks_device){types[k], 0}, got);
      for (int i = 0; i < 22; i++)
        if (fabsf(got[i] - ref[i]) > 1e-5f * (1.0f + fabsf(ref[i])))
          fail_msg("%s on %s: value %d is %g, the CPU gives %g", op_cases[c].name,
                   ks_backend_for_device((ks_device){types[k], 0})->name, i, got[i], ref[i]);
      compared++;
    }
  }
  assert_int_equal(compared, (int)(sizeof op_cases / sizeof op_cases[0]));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_backend_ops__tensor_moves),
    cmocka_unit_test(test_backend_ops__host_touch_dies),
    cmocka_unit_test(test_backend_ops__npz_from_device),
    cmocka_unit_test(test_backend_ops__pack_refuses_device),
    cmocka_unit_test(test_backend_ops__table),
  };
  return cmocka_run_group_tests(tests, checked_setup, checked_teardown);
}
