/*
 * bench/bench_search.c — run search on the SQLite store (issue 12, "Scale"):
 * seeds a store through the store interface with RUNS runs x 10 params x 5
 * metrics x 100 points (plus one tag each), then times searches: the first
 * page (50 runs) ordered by a metric with a filter, and a few others.
 * Prints one line per measurement; bench/RESULTS.md has a run.
 *
 *   bench_search [--runs N] [--db PATH|postgresql://...] [--reps N] [--seed-only]
 *
 * With --db, an existing store seeded by an earlier call is reused (it is
 * seeded when it holds no runs); a postgresql:// URI names a PostgreSQL
 * store (when built with it). --seed-only seeds and times nothing
 * (bench/scale/run.sh seeds the stores it serves this way).
 */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
  fprintf(stderr, "bench_search: %s: %s\n", what, kp_store_last_error()->message);
  exit(1);
}

/* a deterministic value in [0, 1) */
static double val(unsigned run, unsigned metric, unsigned step) {
  unsigned x = run * 2654435761u ^ (metric + 1) * 40503u ^ (step + 1) * 2246822519u;
  x ^= x >> 15;
  x *= 2246822519u;
  x ^= x >> 13;
  return (double)(x % 1000000u) / 1e6;
}

static void seed(kp_store *s, int runs) {
  enum { NP = 10, NM = 5, NPTS = 100 };
  double t0 = mono(), c0 = cpu();
  kp_metric_point *pts = malloc(sizeof *pts * NM * NPTS);
  static const char *const MN[NM] = {"m0", "m1", "m2", "m3", "m4"};
  static const char *const PK[NP] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"};
  char pvbuf[NP][32];
  const char *pv[NP];
  long points = 0;
  for (int r = 0; r < runs; r++) {
    if (r % 500 == 0 && kp_store_begin(s) != 0) die("begin");
    char id[256];
    kp_run_new rn = {.experiment = r % 2 ? "bench-a" : "bench-b", .compute = "cpu", .source = "/src", .entry = "train.sh",
                     .args_json = "[]", .snapshot = "0123"};
    if (kp_store_run_create(s, &rn, id, sizeof id) != 0) die("run_create");
    for (int k = 0; k < NP; k++) {
      /* p0..p4 numbers (p0: 20 values), p5..p9 words */
      if (k < 5) snprintf(pvbuf[k], sizeof pvbuf[k], "%d", (r * (k + 3) + k) % (k == 0 ? 20 : 1000));
      else snprintf(pvbuf[k], sizeof pvbuf[k], "v%d", (r + k) % 10);
      pv[k] = pvbuf[k];
    }
    if (kp_store_run_params_set(s, id, PK, pv, NP) != 0) die("params_set");
    for (int m = 0; m < NM; m++)
      for (int t = 0; t < NPTS; t++)
        pts[m * NPTS + t] = (kp_metric_point){.name = MN[m], .step = t, .time = t, .value = val((unsigned)r, (unsigned)m, (unsigned)t)};
    kp_ingest_batch b = {.from = 0, .to = 1, .points = pts, .npoints = NM * NPTS};
    if (kp_store_metrics_ingest(s, id, &b) != 0) die("ingest");
    points += NM * NPTS;
    if (kp_store_tag_set(s, id, "kind", r % 3 ? "base" : "special") != 0) die("tag_set");
    if (r % 2 == 0) {
      kp_run_transition tr = {.to = KP_RUN_COMPLETED, .end = 1};
      if (kp_store_run_transition(s, id, &tr) != 0) die("transition");
    }
    if ((r % 500 == 499 || r == runs - 1) && kp_store_commit(s) != 0) die("commit");
  }
  free(pts);
  double dt = mono() - t0, dc = cpu() - c0;
  printf("seed: %d runs, %ld points in %.1f s wall, %.1f s CPU (%.0f points/s wall, %.0f per CPU second, through "
         "kp_store_metrics_ingest in batches of 500, with params, tags, transitions)\n", runs, points, dt, dc,
         (double)points / dt, (double)points / dc);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void timed(kp_store *s, const char *label, const kp_run_search *q, int reps) {
  double *t = malloc(sizeof *t * (size_t)reps), *c = malloc(sizeof *c * (size_t)reps);
  size_t n = 0;
  for (int i = 0; i < reps; i++) {
    kp_run *v;
    char *next;
    double t0 = mono(), c0 = cpu();
    if (kp_store_run_search(s, q, &v, &n, &next) != 0) die(label);
    t[i] = (mono() - t0) * 1e3;
    c[i] = (cpu() - c0) * 1e3;
    kp_runs_free(v, n);
    free(next);
  }
  double first = t[0];
  qsort(t, (size_t)reps, sizeof *t, cmp_d);
  qsort(c, (size_t)reps, sizeof *c, cmp_d);
  printf("%-58s %4zu runs  wall: first %7.2f ms, median %7.2f ms, min %7.2f ms; CPU median %7.2f ms\n", label, n, first,
         t[reps / 2], t[0], c[reps / 2]);
  free(t);
  free(c);
}

int main(int argc, char **argv) {
  int runs = 10000, reps = 21, seed_only = 0;
  const char *db = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--db") && i + 1 < argc) db = argv[++i];
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed-only")) seed_only = 1;
    else {
      fprintf(stderr, "usage: bench_search [--runs N] [--db PATH|postgresql://...] [--reps N] [--seed-only]\n");
      return 2;
    }
  }
  if (reps < 1) reps = 1;
  char tmp[] = "/tmp/kusari-bench-search-XXXXXX", path[512];
  if (!db) {
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    snprintf(path, sizeof path, "%s/kusari.db", tmp);
    db = path;
  }
  kp_store *s;
  if (!strncmp(db, "postgresql://", 13)) {
#ifdef KUSARI_WITH_POSTGRESQL
    if (kp_store_pg_open(db, NULL, NULL, &s) != 0) die("open");
#else
    fprintf(stderr, "bench_search: built without PostgreSQL (libpq-dev)\n");
    return 1;
#endif
  } else if (kp_store_sqlite_open(db, NULL, NULL, &s) != 0) {
    die("open");
  }
  kp_store_counts c;
  if (kp_store_counts_get(s, &c) != 0) die("counts");
  if (c.runs == 0) seed(s, runs);
  else printf("seed: reusing %s (%d runs)\n", db, c.runs);
  if (seed_only) {
    kp_store_close(s);
    return 0;
  }
  /* the goal: the first page ordered by a metric, with a filter, < 50 ms */
  kp_run_search goal = {.filter = "metrics.m0 > 0.5 and params.p0 = 7", .order_by = "metrics.m1 DESC", .max_results = 50};
  timed(s, "filter metric+param, order metrics.m1 DESC, page 1 (goal)", &goal, reps);
  kp_run_search q2 = {.filter = "metrics.m0 > 0.2 and status = 'Completed'", .order_by = "metrics.m1 DESC", .max_results = 50};
  timed(s, "filter metric+status (40% match), order metric, page 1", &q2, reps);
  kp_run_search q3 = {.order_by = "metrics.m2 DESC", .max_results = 50};
  timed(s, "no filter, order metrics.m2 DESC, page 1", &q3, reps);
  kp_run_search q4 = {.experiment = "bench-a", .filter = "params.p6 = 'v3' and tags.kind = 'special'", .max_results = 50};
  timed(s, "experiment + param text + tag, newest first, page 1", &q4, reps);
  kp_run_search q5 = {.filter = "params.p1 >= 500", .order_by = "params.p2", .max_results = 50};
  timed(s, "param number range, order params.p2, page 1", &q5, reps);
  /* a later page through its token */
  kp_run *v;
  size_t n;
  char *next;
  if (kp_store_run_search(s, &goal, &v, &n, &next) != 0) die("page 1");
  kp_runs_free(v, n);
  if (next) {
    kp_run_search p2 = goal;
    p2.page_token = next;
    timed(s, "the goal's page 2 (keyset token)", &p2, reps);
    free(next);
  }
  kp_store_close(s);
  if (db == path) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  }
  return 0;
}
