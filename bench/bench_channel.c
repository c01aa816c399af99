/*
 * bench/bench_channel.c — the cost of logging a metric from a training
 * program: ks_run_log() into a run's metrics channel (src/run/), as an entry
 * program does inside a run. Timing was part of tests/platform/test_channel.c
 * (< 0.1 s per 100,000 calls); it lives here since pass/fail tests assert no
 * time (a loaded machine made that test fail).
 *
 *   build/bench/bench_channel [--calls N] [--reps R]
 *
 * Creates a channel in a temp directory, connects to it the way a run's entry
 * does (KUSARI_RUN_ID, KUSARI_METRICS_CHANNEL), then times R repetitions of
 * N ks_run_log() calls (default 5 x 200,000). Every call appends a new slot,
 * so each repetition also pays for first touching its pages of the channel,
 * as a run does. Prints ns per call for each repetition (wall and process
 * CPU time), the median, and checks that the channel holds every record.
 */
#include <kusari/kusari.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int count(void *ctx, const ks_run_record *r) {
  (void)r;
  ++*(long *)ctx;
  return 0;
}

int main(int argc, char **argv) {
  long calls = 200000;
  int reps = 5;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--calls") && i + 1 < argc) calls = atol(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench_channel [--calls N] [--reps R]\n");
      return 2;
    }
  }
  /* 128-byte slots in a 1 GiB channel */
  if (calls < 1 || reps < 1 || reps > 100 || (double)calls * reps > (double)(KS_RUN_CHANNEL_BYTES / 128) - 1000) {
    fprintf(stderr, "bench_channel: --calls N and --reps R (1..100) must fit %llu records\n",
            (unsigned long long)(KS_RUN_CHANNEL_BYTES / 128 - 1000));
    return 2;
  }
  char dir[] = "/tmp/kusari-bench-channel-XXXXXX", path[128];
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  snprintf(path, sizeof path, "%s/channel", dir);
  if (ks_run_channel_create(path) != KS_OK) { fprintf(stderr, "%s\n", ks_error_last()); return 1; }
  setenv("KUSARI_RUN_ID", "bench_1", 1);
  setenv("KUSARI_METRICS_CHANNEL", path, 1);
  ks_run *r = ks_run_current();
  if (ks_run_is_offline(r)) { fprintf(stderr, "bench_channel: not connected to %s\n", path); return 1; }
  double *wall = calloc((size_t)reps, sizeof *wall), *cpu = calloc((size_t)reps, sizeof *cpu);
  if (!wall || !cpu) return 1;
  printf("ks_run_log into a metrics channel: %d x %ld calls\n", reps, calls);
  int rc = 0;
  for (int k = 0; k < reps && !rc; k++) {
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    for (long i = 0; i < calls; i++)
      if (ks_run_log(r, "loss", (double)i) != KS_OK) { fprintf(stderr, "%s\n", ks_error_last()); rc = 1; break; }
    wall[k] = (now(CLOCK_MONOTONIC) - t0) / (double)calls * 1e9;
    cpu[k] = (now(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)calls * 1e9;
    printf("  rep %d: %6.1f ns/call wall, %6.1f ns/call CPU\n", k + 1, wall[k], cpu[k]);
  }
  long n = 0;
  uint64_t off = 0;
  if (!rc && (ks_run_channel_read(path, &off, 1, count, &n) != KS_OK || n != calls * reps)) {
    fprintf(stderr, "bench_channel: the channel holds %ld records, expected %ld\n", n, calls * reps);
    rc = 1;
  }
  if (!rc) {
    qsort(wall, (size_t)reps, sizeof *wall, cmp);
    qsort(cpu, (size_t)reps, sizeof *cpu, cmp);
    printf("median: %.1f ns/call wall, %.1f ns/call CPU (min %.1f, max %.1f wall); %ld records read back\n",
           wall[reps / 2], cpu[reps / 2], wall[0], wall[reps - 1], n);
  }
  free(wall);
  free(cpu);
  unlink(path);
  rmdir(dir);
  return rc;
}
