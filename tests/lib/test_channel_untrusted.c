/*
 * tests/lib/test_channel_untrusted.c — ks_run_channel_read against crafted
 * metrics channels. The channel's writer is the run's entry program, so the
 * reader (the platform's supervisor and reconciliation) must survive any
 * bytes in it: every test here builds a small channel file by hand (the
 * header allows any capacity equal to the file's size), writes valid records
 * with the writer's own append, then damages the file the way a broken or
 * hostile writer could. Each bad record must stop the read with KS_EFORMAT
 * naming its byte offset, after every record before it was delivered, with
 * '*offset' left at the bad record (so nothing is lost or delivered twice),
 * and never read outside the file (run under ASan by scripts/test.sh).
 */
#include "testutil.h"
#include "kusari/run.h"
#include "run/channel_impl.h"
#include "run/channel_write.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

static int setup_dir(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kusari-chan-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

typedef struct got {
  int n;
  char names[16][300];
  double values[16];
} got;

static int collect(void *ctx, const ks_run_record *r) {
  got *g = ctx;
  /* every delivered record is a proper string pair */
  assert_true(strlen(r->name) >= 1 && strlen(r->name) <= KS_CH_NAME_MAX);
  if (g->n < 16) {
    snprintf(g->names[g->n], sizeof g->names[g->n], "%s", r->name);
    g->values[g->n] = r->value;
  }
  g->n++;
  return 0;
}

/* A channel file of 'slots' slots (header included) with tail at slot 1;
 * mapped read-write at *base. */
static const char *make_channel(const char *name, uint64_t slots, char **base) {
  static char path[700];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  unlink(path);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)(slots * KS_CH_SLOT)), 0);
  ks_ch_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, KS_CH_MAGIC, 8);
  h.version = KS_CH_VERSION;
  h.slot = KS_CH_SLOT;
  h.capacity = slots * KS_CH_SLOT;
  h.tail = KS_CH_SLOT;
  assert_int_equal(pwrite(fd, &h, sizeof h, 0), (ssize_t)sizeof h);
  close(fd);
  void *p = NULL;
  uint64_t cap = 0;
  TU_OK(ks__ch_map(path, 1, &p, &cap));
  assert_int_equal(cap, slots * KS_CH_SLOT);
  *base = p;
  return path;
}

static void append(char *base, uint64_t cap, const char *name, const char *text, double v) {
  TU_OK(ks__ch_append(base, cap, text ? KS_RUN_RECORD_TAG : KS_RUN_RECORD_METRIC, name, strlen(name),
                      text ? text : "", text ? strlen(text) : 0, -1, v, 1.0));
}

static ks_ch_header *hdr(char *base) { return (ks_ch_header *)base; }
static ks_ch_head *head_at(char *base, uint64_t off) { return (ks_ch_head *)(base + off); }

/* reads with final = 1 from 0; expects KS_EFORMAT at 'bad_off' mentioning 'why' after 'ngood' records */
static void expect_bad(const char *path, int ngood, uint64_t bad_off, const char *why) {
  got g;
  memset(&g, 0, sizeof g);
  uint64_t off = 0;
  int rc = ks_run_channel_read(path, &off, 1, collect, &g);
  if (rc != KS_EFORMAT) fail_msg("%s: expected KS_EFORMAT, got %s (%s)", path, ks_status_name(rc), ks_error_last());
  assert_int_equal(g.n, ngood);
  assert_int_equal(off, bad_off);
  char at[64];
  snprintf(at, sizeof at, "corrupt record at byte %llu", (unsigned long long)bad_off);
  if (!strstr(ks_error_last(), at) || !strstr(ks_error_last(), why))
    fail_msg("message '%s' lacks '%s' or '%s'", ks_error_last(), at, why);
  /* reading again from the returned offset: the same error, nothing delivered twice */
  memset(&g, 0, sizeof g);
  assert_int_equal(ks_run_channel_read(path, &off, 1, collect, &g), KS_EFORMAT);
  assert_int_equal(g.n, 0);
  assert_int_equal(off, bad_off);
}

/* The finding of issue 18: the last record of the file says its name is
 * longer than its one slot holds; the old reader followed it past the end
 * of its mapping. */
static void test_channel_untrusted__name_past_end_of_file(void **state) {
  (void)state;
  char *b;
  const uint64_t slots = 4, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("past_end", slots, &b);
  append(b, cap, "loss", NULL, 0.5);
  append(b, cap, "acc", NULL, 0.25);
  append(b, cap, "last", NULL, 1);         /* the file's last slot */
  assert_int_equal(hdr(b)->tail, cap);
  head_at(b, cap - KS_CH_SLOT)->name_len = KS_CH_SLOT - 2; /* old bound: name + text + 2 <= nslots * 128 */
  expect_bad(path, 2, cap - KS_CH_SLOT, "slot count does not match");
  /* longer than any name a writer may log */
  head_at(b, cap - KS_CH_SLOT)->name_len = KS_CH_NAME_MAX + 1;
  expect_bad(path, 2, cap - KS_CH_SLOT, "name length out of range");
  munmap(b, cap);
  /* the records before the bad one were delivered with their values */
  got g;
  memset(&g, 0, sizeof g);
  uint64_t off = 0;
  assert_int_equal(ks_run_channel_read(path, &off, 1, collect, &g), KS_EFORMAT);
  assert_string_equal(g.names[0], "loss");
  assert_true(g.values[0] == 0.5);
  assert_string_equal(g.names[1], "acc");
  assert_true(g.values[1] == 0.25);
}

static void test_channel_untrusted__slot_counts(void **state) {
  (void)state;
  char *b;
  const uint64_t slots = 8, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("slots", slots, &b);
  append(b, cap, "a", NULL, 1);
  append(b, cap, "b", NULL, 2);
  const uint64_t at = 3 * KS_CH_SLOT;
  const uint32_t bad[] = {0, 6, 0xffffffffu};
  const char *why[] = {"no slots", "its slots run past", "its slots run past"};
  hdr(b)->tail = 8 * KS_CH_SLOT;
  /* a record at slot 3 whose slot count is 0, or reaches past the tail (5 slots would end at 8) */
  memcpy(head_at(b, at), head_at(b, KS_CH_SLOT), KS_CH_SLOT);
  for (int i = 0; i < 3; i++) {
    head_at(b, at)->nslots = bad[i];
    expect_bad(path, 2, at, why[i]);
  }
  /* too many slots for its lengths (a writer always uses the fewest) */
  head_at(b, at)->nslots = 2;
  ((ks_ch_cont *)(b + at + KS_CH_SLOT))->kind = KS_CH_CONT;
  expect_bad(path, 2, at, "slot count does not match");
  munmap(b, cap);
}

static void test_channel_untrusted__lengths_and_strings(void **state) {
  (void)state;
  char *b;
  const uint64_t slots = 16, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("lengths", slots, &b);
  append(b, cap, "ok", NULL, 1);
  const uint64_t at = hdr(b)->tail;
  append(b, cap, "tag", "value", 0);
  ks_ch_head *h = head_at(b, at);
  ks_ch_head saved = *h;
  h->text_len = 0xffffffffu;
  expect_bad(path, 1, at, "text length out of range");
  *h = saved;
  h->name_len = 0;
  expect_bad(path, 1, at, "name length out of range");
  *h = saved;
  h->payload[1] = '\0';  /* "t\0g": a NUL inside the name */
  expect_bad(path, 1, at, "the name is not a string of its length");
  *h = saved;
  h->payload[3 + 1 + 5] = 'x';  /* the text's NUL overwritten */
  expect_bad(path, 1, at, "the text is not a string of its length");
  *h = saved;
  h->kind = 77;
  expect_bad(path, 1, at, "unknown record kind");
  *h = saved;
  /* a long tag whose continuation slot lost its mark */
  char big[400];
  memset(big, 'v', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  const uint64_t at2 = hdr(b)->tail;
  append(b, cap, "big", big, 0);
  assert_true(head_at(b, at2)->nslots > 2);
  ((ks_ch_cont *)(b + at2 + 2 * KS_CH_SLOT))->kind = 0;
  expect_bad(path, 2, at2, "a continuation slot is not marked");
  ((ks_ch_cont *)(b + at2 + 2 * KS_CH_SLOT))->kind = KS_CH_CONT;
  got g;
  memset(&g, 0, sizeof g);
  uint64_t off = 0;
  TU_OK(ks_run_channel_read(path, &off, 1, collect, &g));
  assert_int_equal(g.n, 3);
  assert_int_equal(off, hdr(b)->tail);
  munmap(b, cap);
}

/* A metric's text is its rank (distributed runs): a decimal from 1 to
 * KS_CH_RANK_MAX; anything else is a corrupt record. */
static int last_rank;
static int rank_of(void *ctx, const ks_run_record *r) {
  (void)ctx;
  last_rank = r->rank;
  return 0;
}

static void test_channel_untrusted__metric_rank(void **state) {
  (void)state;
  char *b;
  const uint64_t slots = 16, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("rank", slots, &b);
  TU_OK(ks__ch_append(b, cap, KS_RUN_RECORD_METRIC, "acc", 3, "12", 2, -1, 0.5, 1.0));
  uint64_t off = 0;
  last_rank = -1;
  TU_OK(ks_run_channel_read(path, &off, 1, rank_of, NULL));
  assert_int_equal(last_rank, 12);
  const char *bad[] = {"x", "0", "1000000", "-1", "99999999999999999999"};
  const char *why[] = {"not a number", "out of range", "out of range", "not a number", "not a number"};
  for (int i = 0; i < 5; i++) {
    const uint64_t at = hdr(b)->tail;
    TU_OK(ks__ch_append(b, cap, KS_RUN_RECORD_METRIC, "acc", 3, bad[i], strlen(bad[i]), -1, 0.5, 1.0));
    expect_bad(path, 1, at, why[i]);
    hdr(b)->tail = at;  /* drop it for the next one */
    memset(b + at, 0, KS_CH_SLOT);
  }
  munmap(b, cap);
}

/* A tail past the capacity or off the slot grid is clamped to the file;
 * a file shorter than its header's capacity (a writer truncated it) and a
 * read offset off the record grid are refused with a message. */
static void test_channel_untrusted__header_and_offsets(void **state) {
  (void)state;
  char *b;
  const uint64_t slots = 4, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("header", slots, &b);
  append(b, cap, "m", NULL, 1);
  append(b, cap, "n", NULL, 2);
  hdr(b)->tail = UINT64_MAX - 5;
  got g;
  memset(&g, 0, sizeof g);
  uint64_t off = 0;
  TU_OK(ks_run_channel_read(path, &off, 1, collect, &g));
  assert_int_equal(g.n, 2);
  assert_int_equal(off, cap);
  hdr(b)->tail = 2 * KS_CH_SLOT + 7;
  memset(&g, 0, sizeof g);
  off = 0;
  TU_OK(ks_run_channel_read(path, &off, 0, collect, &g));
  assert_int_equal(g.n, 1);
  assert_int_equal(off, 2 * KS_CH_SLOT);
  off = KS_CH_SLOT + 1;
  assert_int_equal(ks_run_channel_read(path, &off, 1, collect, &g), KS_EINVAL);
  assert_non_null(strstr(ks_error_last(), "not a record boundary"));
  munmap(b, cap);
  assert_int_equal(truncate(path, 2 * KS_CH_SLOT), 0);
  off = 0;
  assert_int_equal(ks_run_channel_read(path, &off, 1, collect, &g), KS_EFORMAT);
  assert_non_null(strstr(ks_error_last(), "bad header"));
}

/* Random bytes in every slot after a few good records, many times: the read
 * ends with KS_OK or KS_EFORMAT, delivers the good records first, and never
 * reads outside the file (ASan). */
static void test_channel_untrusted__random_garbage(void **state) {
  (void)state;
  ks_rng rs, *rng = &rs;
  ks_rng_seed(rng, 18);
  char *b;
  const uint64_t slots = 12, cap = slots * KS_CH_SLOT;
  const char *path = make_channel("garbage", slots, &b);
  for (int trial = 0; trial < 3000; trial++) {
    memset(b + KS_CH_SLOT, 0, cap - KS_CH_SLOT);
    hdr(b)->tail = KS_CH_SLOT;
    append(b, cap, "good", NULL, 1);
    uint64_t from = hdr(b)->tail;
    for (uint64_t i = from; i < cap; i++) b[i] = (char)(ks_rng_uniform(rng) * 256);
    /* make some heads look nearly right so the later checks are reached */
    for (uint64_t o = from; o < cap; o += KS_CH_SLOT) {
      ks_ch_head *h = head_at(b, o);
      double u = ks_rng_uniform(rng);
      if (u < 0.3) h->kind = KS_RUN_RECORD_METRIC;
      else if (u < 0.4) h->kind = KS_CH_CONT;
      else if (u < 0.5) h->kind = 0;
      if (ks_rng_uniform(rng) < 0.5) h->nslots = 1 + (uint32_t)(ks_rng_uniform(rng) * 4);
      if (ks_rng_uniform(rng) < 0.5) h->name_len = (uint32_t)(ks_rng_uniform(rng) * 300);
      if (ks_rng_uniform(rng) < 0.5) h->text_len = (uint32_t)(ks_rng_uniform(rng) * 300);
    }
    hdr(b)->tail = ks_rng_uniform(rng) < 0.5 ? cap : from + (uint64_t)(ks_rng_uniform(rng) * 2 * (double)cap);
    got g;
    memset(&g, 0, sizeof g);
    uint64_t off = 0;
    int rc = ks_run_channel_read(path, &off, trial % 2, collect, &g);
    assert_true(rc == KS_OK || rc == KS_EFORMAT);
    assert_true(g.n >= 1);
    assert_string_equal(g.names[0], "good");
    assert_true(off >= from && off <= cap && off % KS_CH_SLOT == 0);
  }
  munmap(b, cap);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_channel_untrusted__name_past_end_of_file),
    cmocka_unit_test(test_channel_untrusted__slot_counts),
    cmocka_unit_test(test_channel_untrusted__lengths_and_strings),
    cmocka_unit_test(test_channel_untrusted__metric_rank),
    cmocka_unit_test(test_channel_untrusted__header_and_offsets),
    cmocka_unit_test(test_channel_untrusted__random_garbage),
  };
  return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
