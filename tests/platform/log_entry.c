/*
 * tests/platform/log_entry.c — a C training-program stand-in for the platform
 * tests: logs metrics through libkusari's run client, then optionally waits.
 *
 *   platform_log_entry [--n N] [--marker FILE] [--sleep SECONDS] [--exit CODE]
 *                      [--upload FILE] [--nonfinite 1] [--names N]
 *                      [--bigstep 1] [--by-rank 1]
 *
 * Logs N values of metric "loss" (value = i) with ks_run_log, one value of
 * "Accuracy" with ks_run_log_step, a list "curve" and tag "entry=c"; prints
 * the time the N ks_run_log calls took ("logged N values in S s"); writes
 * FILE (with its pid) when done logging; uploads FILE as plots/uploaded.txt
 * (and checks that "../escape.txt" is refused); with --nonfinite 1 logs
 * metric "nf" = NaN, +Inf, -Inf, 2.5; with --names N logs one value of each
 * of N distinct metrics "m0", "m1", ... (value = i); with --bigstep 1 checks
 * that ks_run_log_step refuses steps past KS_RUN_STEP_MAX (and below -1) and
 * logs "big" at KS_RUN_STEP_MAX, then twice more without a step; with
 * --by-rank 1 logs "acc" = 10 (R + 1) + i for i = 0, 1, 2, R being the
 * rank in KUSARI_RANK (0 when unset); sleeps; exits with CODE.
 */
#include "kusari/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  long n = 10;
  const char *marker = NULL;
  double sleep_s = 0;
  int code = 0;
  const char *upload = NULL;
  int nonfinite = 0;
  long names = 0;
  int bigstep = 0, by_rank = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--n")) n = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--marker")) marker = argv[i + 1];
    else if (!strcmp(argv[i], "--sleep")) sleep_s = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--exit")) code = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--upload")) upload = argv[i + 1];
    else if (!strcmp(argv[i], "--nonfinite")) nonfinite = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--names")) names = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--bigstep")) bigstep = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--by-rank")) by_rank = atoi(argv[i + 1]);
  }
  ks_run *run = ks_run_current();
  printf("run id '%s' offline=%d\n", ks_run_id(run), ks_run_is_offline(run));
  double t0 = now();
  for (long i = 0; i < n; i++)
    if (ks_run_log(run, "loss", (double)i) != 0) { fprintf(stderr, "ks_run_log failed\n"); return 1; }
  double dt = now() - t0;
  printf("logged %ld values in %.6f s\n", n, dt);
  ks_run_log_step(run, "Accuracy", 7, 0.5);
  double curve[3] = {1, 2, 3};
  ks_run_log_list(run, "curve", curve, 3);
  ks_run_tag(run, "entry", "c");
  if (nonfinite) {
    const double nf[] = {NAN, INFINITY, -INFINITY, 2.5};
    for (int i = 0; i < 4; i++)
      if (ks_run_log(run, "nf", nf[i]) != 0) { fprintf(stderr, "ks_run_log of a non-finite value failed\n"); return 1; }
  }
  if (by_rank) {
    const char *rk = getenv("KUSARI_RANK");
    int r = rk ? atoi(rk) : 0;
    printf("rank %d logs acc\n", r);
    for (int i = 0; i < 3; i++)
      if (ks_run_log(run, "acc", 10.0 * (r + 1) + i) != 0) { fprintf(stderr, "ks_run_log of acc failed\n"); return 1; }
  }
  for (long i = 0; i < names; i++) {
    char nm[32];
    snprintf(nm, sizeof nm, "m%ld", i);
    if (ks_run_log(run, nm, (double)i) != 0) { fprintf(stderr, "ks_run_log of %s failed\n", nm); return 1; }
  }
  if (bigstep) {
    if (ks_run_log_step(run, "big", INT64_MAX, 1) == 0 || ks_run_log_step(run, "big", KS_RUN_STEP_MAX + 1, 1) == 0 ||
        ks_run_log_step(run, "big", -2, 1) == 0) {
      fprintf(stderr, "a step out of range was accepted\n");
      return 1;
    }
    printf("steps out of range refused\n");
    if (ks_run_log_step(run, "big", KS_RUN_STEP_MAX, 1) != 0 || ks_run_log(run, "big", 2) != 0 || ks_run_log(run, "big", 3) != 0) {
      fprintf(stderr, "logging at the largest step failed\n");
      return 1;
    }
  }
  if (upload && ks_run_upload_file(run, "plots/uploaded.txt", upload) != 0) { fprintf(stderr, "upload failed\n"); return 1; }
  if (upload && ks_run_upload_file(run, "../escape.txt", upload) == 0) { fprintf(stderr, "unsafe upload name accepted\n"); return 1; }
  fflush(stdout);
  if (marker) {
    FILE *f = fopen(marker, "w");
    if (f) {
      fprintf(f, "%d\n", (int)getpid());
      fclose(f);
    }
  }
  if (sleep_s > 0) {
    struct timespec ts = {(time_t)sleep_s, (long)((sleep_s - (double)(time_t)sleep_s) * 1e9)};
    nanosleep(&ts, NULL);
  }
  return code;
}
