/*
 * tests/platform/test_sweep_sampler.c — platform_sweep_sampler: the pure half
 * of sweeps (platform/sweep_space.c) linked directly: expression semantics
 * (ranges, distributions, q rounding), grid order, seeded reproducibility,
 * the policy rules on hand-made curves, sweep file validation messages, and
 * the bayesian sampler beating random search on known functions with the
 * same budget, averaged over seeds.
 */
#include "../../platform/sweep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      printf("ok: ");                                      \
    } else {                                               \
      printf("FAIL: ");                                    \
      fails++;                                             \
    }                                                      \
    printf(__VA_ARGS__);                                   \
    printf("\n");                                          \
  } while (0)

static kp_space space_of(const char *json) {
  cJSON *j = cJSON_Parse(json);
  kp_space s;
  char err[512];
  if (kp_space_parse(j, &s, err, sizeof err) != 0) {
    printf("FAIL: space %s: %s\n", json, err);
    fails++;
  }
  cJSON_Delete(j);
  return s;
}

static void test_expressions(void) {
  kp_space s = space_of("{\"--c\": {\"choice\": [1, 2.5, \"x\"]}, \"--r\": {\"randint\": [5]}, \"--u\": {\"uniform\": [-1, 3]},"
                        " \"--qu\": {\"quniform\": [0, 1, 0.1]}, \"--lu\": {\"loguniform\": [-9.2, -2.3]},"
                        " \"--qlu\": {\"qloguniform\": [0, 4.6, 1]}, \"--n\": {\"normal\": [10, 2]},"
                        " \"--qn\": {\"qnormal\": [10, 2, 0.5]}, \"--ln\": {\"lognormal\": [0, 0.5]},"
                        " \"--qln\": {\"qlognormal\": [1, 0.5, 2]}}");
  CHECK(s.n == 10, "10 expressions parsed");
  enum { N = 20000 };
  double x[10], sum[10] = {0}, sq[10] = {0}, lsum = 0, lsq = 0;
  int ok_range = 1, ok_q = 1, counts_c[3] = {0}, counts_r[5] = {0};
  for (int i = 0; i < N; i++) {
    kp_sample_random(&s, 42, i, x);
    for (int j = 0; j < 10; j++) sum[j] += x[j], sq[j] += x[j] * x[j];
    counts_c[(int)x[0]]++;
    counts_r[(int)x[1]]++;
    lsum += log(x[4]);
    lsq += log(x[4]) * log(x[4]);
    if (x[0] < 0 || x[0] > 2 || x[1] < 0 || x[1] > 4 || x[1] != floor(x[1]) || x[2] < -1 || x[2] > 3 || x[3] < 0 ||
        x[3] > 1 || x[4] < exp(-9.2) * 0.999 || x[4] > exp(-2.3) * 1.001 || x[5] < 1 || x[5] > 100 || x[8] <= 0 ||
        x[9] < 0)
      ok_range = 0;
    if (fabs(x[3] * 10 - round(x[3] * 10)) > 1e-9 || x[5] != floor(x[5]) || fabs(x[7] * 2 - round(x[7] * 2)) > 1e-9 ||
        fabs(x[9] / 2 - round(x[9] / 2)) > 1e-9)
      ok_q = 0;
  }
  CHECK(ok_range, "every sample is inside its expression's range (randint 0..upper-1, loguniform exp(min)..exp(max), ...)");
  CHECK(ok_q, "q forms are multiples of q");
  int cok = 1;
  for (int i = 0; i < 3; i++) cok &= abs(counts_c[i] - N / 3) < N / 30;
  for (int i = 0; i < 5; i++) cok &= abs(counts_r[i] - N / 5) < N / 30;
  CHECK(cok, "choice and randint are uniform over their values");
  CHECK(fabs(sum[2] / N - 1.0) < 0.03, "uniform(-1, 3) mean %.3f ~ 1", sum[2] / N);
  double nm = sum[6] / N, nsd = sqrt(sq[6] / N - nm * nm);
  CHECK(fabs(nm - 10) < 0.06 && fabs(nsd - 2) < 0.06, "normal(10, 2): mean %.3f, sd %.3f", nm, nsd);
  double lm = lsum / N, lsd = sqrt(lsq / N - lm * lm);
  CHECK(fabs(lm - (-5.75)) < 0.03 && fabs(lsd - 6.9 / sqrt(12)) < 0.03, "loguniform(-9.2, -2.3): log is uniform (mean %.3f, sd %.3f)", lm, lsd);
  double lnm = sum[8] / N;
  CHECK(fabs(lnm - exp(0.125)) < 0.02, "lognormal(0, 0.5) mean %.4f ~ exp(sigma^2/2) = %.4f", lnm, exp(0.125));
  /* formatting: what the entry gets, and back */
  char buf[64];
  kp_space_format(&s, 0, 1, buf, sizeof buf);
  CHECK(!strcmp(buf, "2.5"), "choice value text '%s'", buf);
  kp_space_format(&s, 3, 0.30000000000000004, buf, sizeof buf);
  CHECK(!strcmp(buf, "0.3"), "quniform value text '%s'", buf);
  double v;
  CHECK(kp_space_value(&s, 0, "x", &v) == 0 && v == 2, "choice text maps back to its index");
  CHECK(kp_space_value(&s, 0, "y", &v) != 0, "an unknown choice text does not map");
  /* seeded reproducibility */
  double a[10], b[10];
  kp_sample_random(&s, 7, 3, a);
  kp_sample_random(&s, 7, 3, b);
  CHECK(!memcmp(a, b, sizeof a), "same seed and index: same point");
  kp_sample_random(&s, 8, 3, b);
  CHECK(memcmp(a, b, sizeof a) != 0, "another seed: another point");
  kp_space_free(&s);
}

static void test_grid(void) {
  kp_space s = space_of("{\"--a\": {\"choice\": [1, 2, 3]}, \"b\": {\"choice\": [\"x\", \"y\"]}}");
  CHECK(kp_space_grid_size(&s) == 6, "grid of 3 x 2");
  CHECK(!strcmp(s.p[1].arg, "--b"), "a name without dashes is passed as --name");
  double x[2];
  char got[128] = "";
  for (int i = 0; i < 6; i++) {
    kp_space_grid_point(&s, i, x);
    char t[32];
    snprintf(t, sizeof t, "%s%s%s", i ? " " : "", s.p[0].cstr[(int)x[0]], s.p[1].cstr[(int)x[1]]);
    strcat(got, t);
  }
  CHECK(!strcmp(got, "1x 1y 2x 2y 3x 3y"), "grid order, first parameter slowest: %s", got);
  kp_space_free(&s);
}

/* Draws up to 'max' trials of seed with kp_sample_random_unseen, each seeing
 * the earlier ones; returns how many it drew before the sampler said the space
 * was exhausted (X gets the points, row major). */
static int draw_all(const kp_space *s, uint64_t seed, int max, double *X) {
  int i;
  for (i = 0; i < max; i++)
    if (kp_sample_random_unseen(s, seed, i, X, i, X + (size_t)i * s->n) != 0) break;
  return i;
}

/* Number of distinct rows among n points of d coordinates (exact comparison). */
static int distinct_rows(const double *X, int n, int d) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    int dup = 0;
    for (int j = 0; j < i && !dup; j++) dup = !memcmp(X + (size_t)i * d, X + (size_t)j * d, sizeof(double) * (size_t)d);
    k += !dup;
  }
  return k;
}

/* Random sampling over a finite space draws each point once, then stops. */
static void test_random_unseen(void) {
  /* the README sweep's kind of space: 4 x 2 = 8 points */
  kp_space s = space_of("{\"--a\": {\"choice\": [1, 2, 3, 4]}, \"b\": {\"choice\": [\"x\", \"y\"]}}");
  CHECK(kp_space_finite_size(&s) == 8, "a 4 x 2 choice space has 8 points (%lld)", kp_space_finite_size(&s));
  double X[2 * 20], old[2 * 8];
  int repeats_before = 0, all_ok = 1, first_same = 1;
  for (uint64_t seed = 1; seed <= 30; seed++) {
    for (int i = 0; i < 8; i++) kp_sample_random(&s, seed, i, old + 2 * i);
    repeats_before += distinct_rows(old, 8, 2) < 8;
    int n = draw_all(&s, seed, 20, X);
    if (n != 8 || distinct_rows(X, 8, 2) != 8) all_ok = 0;
    first_same &= X[0] == old[0] && X[1] == old[1];
  }
  CHECK(repeats_before > 0, "independent draws repeat a point within 8 trials (%d of 30 seeds): the problem", repeats_before);
  CHECK(all_ok, "without repetition: 8 distinct points in 8 trials, then 'exhausted', for 30 seeds");
  CHECK(first_same, "the first trial is the plain random sampler's");
  double Y[2 * 20];
  int n1 = draw_all(&s, 77, 20, X), n2 = draw_all(&s, 77, 20, Y);
  CHECK(n1 == n2 && !memcmp(X, Y, sizeof(double) * 2 * (size_t)n1), "same seed, same sequence");
  /* earlier points with duplicates (a sweep from before): distinct ones count */
  double prev[2 * 9] = {0, 0, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 3, 0, 3, 0, 0, 0};
  double x[2];
  CHECK(kp_sample_random_unseen(&s, 5, 9, prev, 9, x) == 0 && x[0] == 3 && x[1] == 1,
        "the one point left is found among repeated earlier points (got %g,%g)", x[0], x[1]);
  prev[2 * 8] = 3, prev[2 * 8 + 1] = 1;
  CHECK(kp_sample_random_unseen(&s, 5, 9, prev, 9, x) == 1, "every point seen: exhausted");
  kp_space_free(&s);

  /* randint 3 x quniform {0, 0.5, 1} x a constant: 9 points */
  s = space_of("{\"n\": {\"randint\": [3]}, \"q\": {\"quniform\": [0, 1, 0.5]}, \"c\": {\"uniform\": [2, 2]}}");
  CHECK(kp_space_finite_size(&s) == 9, "randint 3 x quniform(0, 1, 0.5) x constant has 9 points (%lld)",
        kp_space_finite_size(&s));
  double Z[3 * 12];
  int n = draw_all(&s, 3, 12, Z), inrange = 1;
  for (int i = 0; i < n; i++)
    inrange &= (Z[3 * i] == 0 || Z[3 * i] == 1 || Z[3 * i] == 2) &&
               (Z[3 * i + 1] == 0 || Z[3 * i + 1] == 0.5 || Z[3 * i + 1] == 1) && Z[3 * i + 2] == 2;
  CHECK(n == 9 && distinct_rows(Z, 9, 3) == 9 && inrange, "9 distinct valid points, then exhausted (%d drawn)", n);
  kp_space_free(&s);

  /* 10 x 10: the last points come from the uniform pick among unseen ones */
  s = space_of("{\"a\": {\"choice\": [0,1,2,3,4,5,6,7,8,9]}, \"b\": {\"randint\": 10}}");
  double *W = malloc(sizeof(double) * 2 * 110);
  n = draw_all(&s, 11, 110, W);
  CHECK(n == 100 && distinct_rows(W, 100, 2) == 100, "100 of 100 points without a repeat (%d drawn)", n);
  free(W);
  kp_space_free(&s);

  /* continuous: no limit, the plain sampler */
  s = space_of("{\"lr\": {\"loguniform\": [-5, -1]}, \"k\": {\"choice\": [1, 2]}}");
  CHECK(kp_space_finite_size(&s) == 0, "a loguniform makes the space infinite");
  double a[2], b[2];
  kp_sample_random(&s, 9, 4, a);
  CHECK(kp_sample_random_unseen(&s, 9, 4, a, 1, b) == 0 && a[0] == b[0] && a[1] == b[1],
        "on an infinite space the sampler is the plain one");
  kp_space_free(&s);
}

static void test_policies(void) {
  double c1[] = {0.5, 0.6, 0.7, 0.8}, c2[] = {0.4, 0.5, 0.55, 0.6}, c3[] = {0.6, 0.7, 0.8, 0.85};
  kp_curve all[] = {{c1, 4}, {c2, 4}, {c3, 4}};
  char why[1024];
  kp_policy bandit = {.type = KP_POLICY_BANDIT, .evaluation_interval = 1, .delay_evaluation = 2, .slack = 0.1};
  CHECK(!kp_policy_check(&bandit, 1, all, 3, 1, 1, why, sizeof why), "bandit: nothing before delay_evaluation");
  CHECK(kp_policy_check(&bandit, 1, all, 3, 1, 2, why, sizeof why) && strstr(why, "0.5 < 0.7 / (1 + 0.1) = 0.636364"),
        "bandit factor at interval 2: %s", why);
  CHECK(!kp_policy_check(&bandit, 1, all, 3, 2, 4, why, sizeof why), "bandit: the best run is never terminated");
  kp_policy amount = {.type = KP_POLICY_BANDIT, .evaluation_interval = 2, .delay_evaluation = 3, .use_amount = 1, .slack = 0.2};
  CHECK(!kp_policy_applies(&amount, 2) && !kp_policy_applies(&amount, 3) && kp_policy_applies(&amount, 4),
        "interval 2, delay 3: evaluated at 4, 6, ...");
  CHECK(kp_policy_check(&amount, 1, all, 3, 1, 4, why, sizeof why) && strstr(why, "0.6 < 0.85 - 0.2 = 0.65"), "bandit amount: %s", why);
  double l1[] = {1.0, 0.8}, l2[] = {1.0, 1.05};
  kp_curve lall[] = {{l1, 2}, {l2, 2}};
  kp_policy mb = {.type = KP_POLICY_BANDIT, .evaluation_interval = 1, .slack = 0.3};
  CHECK(!kp_policy_check(&mb, 0, lall, 2, 1, 2, why, sizeof why), "bandit minimize: 1 <= 0.8 * 1.3 stays");
  mb.slack = 0.1;
  CHECK(kp_policy_check(&mb, 0, lall, 2, 1, 2, why, sizeof why) && strstr(why, "1 > 0.8 * (1 + 0.1) = 0.88"),
        "bandit minimize: %s", why);
  kp_policy med = {.type = KP_POLICY_MEDIAN, .evaluation_interval = 1, .delay_evaluation = 1};
  CHECK(kp_policy_check(&med, 1, all, 3, 1, 2, why, sizeof why) && strstr(why, "0.5 < 0.55"), "median: %s", why);
  CHECK(!kp_policy_check(&med, 1, all, 3, 0, 2, why, sizeof why), "median: a run at the median stays");
  kp_policy tr = {.type = KP_POLICY_TRUNCATION, .evaluation_interval = 1, .truncation = 34};
  CHECK(kp_policy_check(&tr, 1, all, 3, 1, 3, why, sizeof why) && strstr(why, "ranks 3 of the 3"), "truncation: %s", why);
  CHECK(!kp_policy_check(&tr, 1, all, 2, 1, 3, why, sizeof why), "truncation: 34%% of 2 runs is none");
  kp_policy none = {.type = KP_POLICY_NONE, .evaluation_interval = 1};
  CHECK(!kp_policy_check(&none, 1, all, 3, 1, 2, why, sizeof why), "no policy: never");
}

static void test_spec_errors(void) {
  static const struct { const char *json, *msg; } cases[] = {
    {"{\"experiment\": \"e\", \"run\": {\"entry\": \"a.sh\"}, \"sampling\": {\"type\": \"random\", \"space\": {\"--x\": {\"gaussian\": [0, 1]}}},"
     " \"primary_metric\": {\"name\": \"m\", \"goal\": \"maximize\"}, \"max_total_runs\": 2}", "unknown expression 'gaussian'"},
    {"{\"experiment\": \"e\", \"run\": {\"entry\": \"a.sh\"}, \"sampling\": {\"type\": \"random\", \"space\": {\"--x\": {\"choice\": []}}},"
     " \"primary_metric\": {\"name\": \"m\", \"goal\": \"maximize\"}, \"max_total_runs\": 2}", "sampling.space.--x.choice: is empty"},
    {"{\"experiment\": \"e\", \"run\": {\"entry\": \"a.sh\"}, \"sampling\": {\"type\": \"random\", \"space\": {\"--x\": {\"uniform\": [2, 1]}}},"
     " \"primary_metric\": {\"name\": \"m\", \"goal\": \"maximize\"}, \"max_total_runs\": 2}", "min 2 > max 1"},
    {"{\"experiment\": \"e\", \"run\": {\"entry\": \"a.sh\"}, \"sampling\": {\"type\": \"random\", \"space\": {\"--x\": {\"uniform\": [0, 1]}}},"
     " \"primary_metric\": {\"name\": \"m\", \"goal\": \"biggest\"}, \"max_total_runs\": 2}", "unknown goal 'biggest'"},
    {"{\"experiment\": \"e\", \"run\": {\"entry\": \"a.sh\"}, \"sampling\": {\"type\": \"grid\", \"space\": {\"--x\": {\"uniform\": [0, 1]}}},"
     " \"primary_metric\": {\"name\": \"m\", \"goal\": \"maximize\"}}", "grid sampling takes only choice"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    kp_sweep_spec sp;
    char err[1024] = "";
    int rc = kp_sweep_spec_parse(cases[i].json, &sp, err, sizeof err);
    CHECK(rc != 0 && strstr(err, cases[i].msg), "rejected: %s", err);
    kp_sweep_spec_free(&sp);
  }
}

/* ---- bayesian vs random ------------------------------------------------------ */
/* Branin on x1 in [-5, 10], x2 in [0, 15]: minimum 0.397887 */
static double branin(const double *x) {
  double a = 1, b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, r = 6, s = 10, t = 1 / (8 * M_PI);
  double y = x[1] - b * x[0] * x[0] + c * x[0] - r;
  return a * y * y + s * (1 - t) * cos(x[0]) + s;
}

/* Mixed space: loguniform learning rate, quniform width, choice; minimum 0 at
 * lr = e^-5, width 0.5, choice "b" */
static double mixed(const double *x) {
  double l = log(x[0]) + 5;
  return l * l / 4 + 4 * (x[1] - 0.5) * (x[1] - 0.5) + (x[2] == 1 ? 0 : 0.3);
}

typedef double (*fn_t)(const double *);

/* Best value found with 'budget' evaluations, sequentially. */
static double search(const kp_space *s, fn_t f, int bayes, uint64_t seed, int budget) {
  double *X = malloc(sizeof(double) * (size_t)budget * (size_t)s->n), y[256], best = INFINITY;
  for (int i = 0; i < budget; i++) {
    double *x = X + (size_t)i * s->n;
    if (bayes) kp_bayes_next(s, X, y, i, NULL, 0, 0, seed, i, x, NULL);
    else kp_sample_random(s, seed, i, x);
    y[i] = f(x);
    if (y[i] < best) best = y[i];
  }
  free(X);
  return best;
}

static void test_bayes(void) {
  struct { const char *name, *space; fn_t f; double opt; int budget; } probs[] = {
    {"branin", "{\"--x1\": {\"uniform\": [-5, 10]}, \"--x2\": {\"uniform\": [0, 15]}}", branin, 0.397887, 30},
    {"mixed", "{\"--lr\": {\"loguniform\": [-9.2, -2.3]}, \"--w\": {\"quniform\": [0, 1, 0.05]}, \"--o\": {\"choice\": [\"a\", \"b\", \"c\"]}}",
     mixed, 0, 30},
  };
  enum { SEEDS = 10 };
  for (size_t p = 0; p < sizeof probs / sizeof probs[0]; p++) {
    kp_space s = space_of(probs[p].space);
    double rb = 0, rr = 0;
    int wins = 0;
    for (int k = 0; k < SEEDS; k++) {
      double b = search(&s, probs[p].f, 1, 100 + k, probs[p].budget) - probs[p].opt;
      double r = search(&s, probs[p].f, 0, 100 + k, probs[p].budget) - probs[p].opt;
      rb += b / SEEDS;
      rr += r / SEEDS;
      wins += b < r;
    }
    printf("%s, %d evaluations, mean regret over %d seeds: bayesian %.4f, random %.4f (bayesian better on %d seeds)\n",
           probs[p].name, probs[p].budget, SEEDS, rb, rr, wins);
    CHECK(rb < rr * 0.5, "%s: bayesian's mean regret %.4f is under half of random's %.4f", probs[p].name, rb, rr);
    kp_space_free(&s);
  }
  /* with pending points (concurrency), the next point is not a pending one */
  kp_space s = space_of("{\"--x1\": {\"uniform\": [-5, 10]}, \"--x2\": {\"uniform\": [0, 15]}}");
  double X[20], y[10], P[2], x[2], x2[2];
  for (int i = 0; i < 10; i++) { kp_sample_random(&s, 1, i, X + 2 * i); y[i] = branin(X + 2 * i); }
  kp_bayes_next(&s, X, y, 10, NULL, 0, 0, 5, 10, x, NULL);
  memcpy(P, x, sizeof P);
  kp_bayes_next(&s, X, y, 10, P, 1, 0, 5, 11, x2, NULL);
  CHECK(fabs(x2[0] - P[0]) + fabs(x2[1] - P[1]) > 0.5, "a pending point is not proposed again (%.3g,%.3g vs %.3g,%.3g)",
        x2[0], x2[1], P[0], P[1]);
  kp_space_free(&s);
}

int main(void) {
  test_expressions();
  test_grid();
  test_random_unseen();
  test_policies();
  test_spec_errors();
  test_bayes();
  if (fails) {
    printf("%d check(s) failed\n", fails);
    return 1;
  }
  printf("all checks passed\n");
  return 0;
}
