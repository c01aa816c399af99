/*
 * tests/lib/test_backend_registry.c — the registry of backends: the CPU is
 * built in with one device, other types are served only once registered,
 * and only for the ids they registered; bad registrations are refused.
 */
#include "testutil.h"

#include "kusari/backend.h"

#include <string.h>

static void test_backend_registry__cpu_builtin(void **state) {
  (void)state;
  const ks_backend_ops *cpu = ks_backend_for_device(KS_CPU);
  assert_non_null(cpu);
  assert_string_equal(cpu->name, "cpu");
  assert_non_null(cpu->fill_bytes);
  assert_non_null(cpu->copy);
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CPU, 1}));
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CPU, -1}));
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CUDA, 0}));
  assert_null(ks_backend_for_device((ks_device){(ks_device_type)99, 0}));
  assert_int_equal(ks_device_count(KS_DEVICE_CPU), 1);
  assert_int_equal(ks_device_count(KS_DEVICE_CUDA), 0);
}

static void test_backend_registry__register_ids(void **state) {
  (void)state;
  ks_backend_ops other = *ks_backend_for_device(KS_CPU);
  other.name = "other";
  assert_int_equal(ks_backend_register(KS_DEVICE_CHECKED, 2, &other), KS_OK);
  assert_ptr_equal(ks_backend_for_device((ks_device){KS_DEVICE_CHECKED, 0}), &other);
  assert_ptr_equal(ks_backend_for_device((ks_device){KS_DEVICE_CHECKED, 1}), &other);
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CHECKED, 2}));
  assert_int_equal(ks_device_count(KS_DEVICE_CHECKED), 2);
  /* the CPU is untouched */
  assert_string_equal(ks_backend_for_device(KS_CPU)->name, "cpu");
  assert_int_equal(ks_backend_register(KS_DEVICE_CHECKED, 0, NULL), KS_OK);
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CHECKED, 0}));
  assert_int_equal(ks_device_count(KS_DEVICE_CHECKED), 0);
}

static void test_backend_registry__refused(void **state) {
  (void)state;
  ks_backend_ops other = *ks_backend_for_device(KS_CPU);
  assert_int_equal(ks_backend_register(KS_DEVICE_CPU, 1, &other), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "built in"));
  assert_int_equal(ks_backend_register((ks_device_type)KS_MAX_DEVICE_TYPES, 1, &other), KS_EINVAL);
  assert_int_equal(ks_backend_register(KS_DEVICE_CHECKED, 0, &other), KS_EINVAL);
  other.copy = NULL;
  assert_int_equal(ks_backend_register(KS_DEVICE_CHECKED, 1, &other), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "required"));
  assert_null(ks_backend_for_device((ks_device){KS_DEVICE_CHECKED, 0}));
}

/* Without -DKUSARI_CUDA=ON (or without a GPU) registering CUDA is refused
 * with a message, and no CUDA device appears. */
static void test_backend_registry__cuda(void **state) {
  (void)state;
  int rc = ks_backend_cuda_register();
  if (rc == KS_OK) {
    assert_true(ks_device_count(KS_DEVICE_CUDA) >= 1);
    assert_string_equal(ks_backend_for_device((ks_device){KS_DEVICE_CUDA, 0})->name, "cuda");
  } else {
    assert_int_equal(rc, KS_EUNSUPPORTED);
    assert_true(strstr(ks_error_last(), "CUDA") != NULL);
    assert_int_equal(ks_device_count(KS_DEVICE_CUDA), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_backend_registry__cpu_builtin),
    cmocka_unit_test(test_backend_registry__register_ids),
    cmocka_unit_test(test_backend_registry__refused),
    cmocka_unit_test(test_backend_registry__cuda),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
