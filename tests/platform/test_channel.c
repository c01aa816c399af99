/*
 * tests/platform/test_channel.c — the run client and the metrics channel
 * (src/run/): records round-trip in order, long tags span slots, a slot a
 * killed writer reserved but never published is skipped only in final mode,
 * and concurrent writers lose nothing. No timing here (a pass/fail test must
 * not depend on the machine's load): bench/bench_channel measures ns per
 * ks_run_log call (bench/RESULTS.md).
 */
#include "kusari/error.h"
#include "kusari/run.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[] = "/tmp/kusari-channel-XXXXXX";
static char g_path[256];

typedef struct seen { long metrics, tags; double last; int64_t last_step; char tag[70000]; } seen;

static int on_record(void *ctx, const ks_run_record *r) {
  seen *s = ctx;
  if (r->kind == KS_RUN_RECORD_METRIC) {
    if (!strcmp(r->name, "loss")) s->last = r->value;
    s->last_step = r->step;
    s->metrics++;
  } else {
    s->tags++;
    snprintf(s->tag, sizeof s->tag, "%s=%s", r->name, r->text);
  }
  return 0;
}

static void test_channel__offline_before_connect(void **state) {
  (void)state;
  /* a child without the variables is offline and every call succeeds */
  pid_t p = fork();
  if (p == 0) {
    unsetenv("KUSARI_RUN_ID");
    ks_run *r = ks_run_current();
    int ok = ks_run_is_offline(r) && !strcmp(ks_run_id(r), "") && ks_run_log(r, "x", 1) == KS_OK &&
             ks_run_tag(r, "k", "v") == KS_OK && ks_run_log(r, NULL, 1) == KS_EINVAL;
    _exit(ok ? 0 : 1);
  }
  int st;
  waitpid(p, &st, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* KUSARI_RANK (set by `kusari __rank`) goes with each metric a process logs;
 * no rank or a bad one is rank 0 (the bad one with a warning). Each child
 * connects to its own channel before the parent does. */
static int g_rank_seen;
static int on_rank(void *ctx, const ks_run_record *r) {
  (void)ctx;
  g_rank_seen = r->rank;
  return 0;
}

static void test_channel__rank(void **state) {
  (void)state;
  const char *ranks[] = {"3", NULL, "x"};
  const int want[] = {3, 0, 0};
  for (int k = 0; k < 3; k++) {
    char p[300];
    snprintf(p, sizeof p, "%s/rank%d", g_dir, k);
    assert_int_equal(ks_run_channel_create(p), KS_OK);
    pid_t c = fork();
    if (c == 0) {
      setenv("KUSARI_METRICS_CHANNEL", p, 1);
      if (ranks[k]) setenv("KUSARI_RANK", ranks[k], 1);
      else unsetenv("KUSARI_RANK");
      _exit(ks_run_log(ks_run_current(), "acc", 1) == KS_OK ? 0 : 1);
    }
    int st;
    waitpid(c, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t off = 0;
    g_rank_seen = -1;
    assert_int_equal(ks_run_channel_read(p, &off, 1, on_rank, NULL), KS_OK);
    assert_int_equal(g_rank_seen, want[k]);
  }
}

static void test_channel__roundtrip(void **state) {
  (void)state;
  ks_run *r = ks_run_current();
  assert_false(ks_run_is_offline(r));
  assert_string_equal(ks_run_id(r), "test_1");
  const long n = 100000;
  for (long i = 0; i < n; i++) assert_int_equal(ks_run_log(r, "loss", (double)i), KS_OK);
  char big[65000];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(ks_run_tag(r, "big", big), KS_OK);
  assert_int_equal(ks_run_log_step(r, "acc", 42, 0.9), KS_OK);
  seen s;
  memset(&s, 0, sizeof s);
  uint64_t off = 0;
  assert_int_equal(ks_run_channel_read(g_path, &off, 0, on_record, &s), KS_OK);
  assert_int_equal(s.metrics, n + 1);
  assert_int_equal(s.tags, 1);
  assert_true(s.last == (double)(n - 1));
  assert_int_equal(s.last_step, 42);
  assert_int_equal(strlen(s.tag), 4 + sizeof big - 1);
  /* reading again from the returned offset finds nothing new */
  memset(&s, 0, sizeof s);
  assert_int_equal(ks_run_channel_read(g_path, &off, 1, on_record, &s), KS_OK);
  assert_int_equal(s.metrics, 0);
}

static void test_channel__concurrent_writers(void **state) {
  (void)state;
  uint64_t off = 0;
  seen s;
  memset(&s, 0, sizeof s);
  assert_int_equal(ks_run_channel_read(g_path, &off, 1, on_record, &s), KS_OK);
  pid_t kids[4];
  for (int k = 0; k < 4; k++) {
    kids[k] = fork();
    if (kids[k] == 0) {
      ks_run *r = ks_run_current();  /* mapping inherited from the parent */
      for (int i = 0; i < 5000; i++) ks_run_log(r, "par", i);
      _exit(0);
    }
  }
  for (int k = 0; k < 4; k++) waitpid(kids[k], NULL, 0);
  memset(&s, 0, sizeof s);
  assert_int_equal(ks_run_channel_read(g_path, &off, 1, on_record, &s), KS_OK);
  assert_int_equal(s.metrics, 20000);
}

/* A reserved but unpublished slot blocks a live read and is skipped by a
 * final read; records after it are kept. */
static void test_channel__abandoned_slot(void **state) {
  (void)state;
  char p2[300];
  snprintf(p2, sizeof p2, "%s/ch2", g_dir);
  assert_int_equal(ks_run_channel_create(p2), KS_OK);
  assert_int_not_equal(ks_run_channel_create(p2), KS_OK);  /* exists */
  FILE *f = fopen(p2, "r+b");
  assert_non_null(f);
  /* header.tail is at byte 24: reserve one slot (128..256) without writing it */
  uint64_t tail = 256;
  fseek(f, 24, SEEK_SET);
  fwrite(&tail, 8, 1, f);
  fclose(f);
  seen s;
  memset(&s, 0, sizeof s);
  uint64_t off = 0;
  assert_int_equal(ks_run_channel_read(p2, &off, 0, on_record, &s), KS_OK);
  assert_int_equal(off, 128);
  assert_int_equal(ks_run_channel_read(p2, &off, 1, on_record, &s), KS_OK);
  assert_int_equal(off, 256);
  /* not a channel */
  char p3[300];
  snprintf(p3, sizeof p3, "%s/not", g_dir);
  f = fopen(p3, "w");
  fputs("hello", f);
  fclose(f);
  off = 0;
  assert_int_not_equal(ks_run_channel_read(p3, &off, 1, on_record, &s), KS_OK);
}

int main(void) {
  if (!mkdtemp(g_dir)) return 1;
  snprintf(g_path, sizeof g_path, "%s/channel", g_dir);
  if (ks_run_channel_create(g_path) != KS_OK) return 1;
  setenv("KUSARI_RUN_ID", "test_1", 1);
  setenv("KUSARI_METRICS_CHANNEL", g_path, 1);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_channel__offline_before_connect),
    cmocka_unit_test(test_channel__rank),
    cmocka_unit_test(test_channel__roundtrip),
    cmocka_unit_test(test_channel__concurrent_writers),
    cmocka_unit_test(test_channel__abandoned_slot),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  if (system(cmd) != 0) return 1;
  return rc;
}
