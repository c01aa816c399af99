/*
 * platform/sweep.h — hyperparameter sweeps (HyperDrive): the sweep file, the
 * parameter space and its expressions, the samplers (grid, random, bayesian)
 * and the early termination policies. sweep_space.c holds all of it as pure
 * functions (cJSON and libm only, no store), so tests can link it directly;
 * cmd_sweep.c is the CLI and the controller process. docs/SWEEPS.md has the
 * rules.
 */
#ifndef KUSARI_PLATFORM_SWEEP_H
#define KUSARI_PLATFORM_SWEEP_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* ---- parameter expressions ----------------------------------------------- */
enum {
  KP_X_CHOICE, KP_X_RANDINT, KP_X_UNIFORM, KP_X_QUNIFORM, KP_X_LOGUNIFORM, KP_X_QLOGUNIFORM,
  KP_X_NORMAL, KP_X_QNORMAL, KP_X_LOGNORMAL, KP_X_QLOGNORMAL, KP_X_COUNT
};
extern const char *const kp_expr_names[KP_X_COUNT];

typedef struct kp_param {
  char *name;       /* as written in the sweep file ("--lr") */
  char *arg;        /* the option passed to the entry: name, or "--name" when it has no leading '-' */
  int kind;
  double a, b, q;   /* min,max | mu,sigma | upper (randint: a) ; q for the q* forms */
  int nchoice;
  char **cstr;      /* choice values as passed ("128", "adam") */
} kp_param;

typedef struct kp_space {
  int n;
  kp_param *p;
} kp_space;

/* A point is one double per parameter: the choice index for choice, else the
 * value itself (rounded for randint and the q* forms). */

/* Parses "space" (object name -> {expr: [args]}); on error writes a message
 * naming the field to 'err' and returns -1. */
int kp_space_parse(const cJSON *space, kp_space *out, char *err, size_t errn);
void kp_space_free(kp_space *s);
/* The argument text of parameter j's value v. */
void kp_space_format(const kp_space *s, int j, double v, char *out, size_t n);
/* Maps a value text back (choice: its index); -1 when it is not a value of j. */
int kp_space_value(const kp_space *s, int j, const char *text, double *v);
/* Unit-cube coordinates <-> points: a uniform u in [0,1]^n maps to a sample
 * of the expressions' distributions (inverse CDF), so random sampling is
 * from_unit of uniform numbers. */
void kp_space_from_unit(const kp_space *s, const double *u, double *x);
void kp_space_to_unit(const kp_space *s, const double *x, double *u);
/* Grid (choice only): number of combinations (capped at 1e9) and the i-th one
 * (first parameter varies slowest). */
long long kp_space_grid_size(const kp_space *s);
void kp_space_grid_point(const kp_space *s, long long i, double *x);

/* ---- random numbers -------------------------------------------------------- */
typedef struct kp_rng { uint64_t s[4]; } kp_rng;
void kp_rng_seed(kp_rng *r, uint64_t seed, uint64_t stream);
uint64_t kp_rng_next(kp_rng *r);
double kp_rng_uniform(kp_rng *r);  /* [0, 1) */
double kp_rng_normal(kp_rng *r);

/* The random sampler's trial 'idx' (reproducible from seed and idx alone). */
void kp_sample_random(const kp_space *s, uint64_t seed, long long idx, double *x);

/* Number of points of a finite space: every parameter takes finitely many
 * values (choice, randint, quniform, qloguniform, or a uniform/loguniform
 * with min = max). 0 when a parameter is continuous or unbounded (normal
 * forms), or the product passes 1e15. */
long long kp_space_finite_size(const kp_space *s);
/* Random sampling without repetition: trial 'idx's point, never one of the
 * 'nprev' points in 'prev' (row major, nprev x s->n; the earlier trials) as
 * long as the space has others. The first draw is kp_sample_random's; a point
 * drawn before is drawn again from the same stream (so the distribution is
 * the expressions', given "not seen"), and after 64 such draws the point is
 * picked uniformly among the unseen ones. Deterministic in its arguments.
 * Returns 0, or 1 when a finite space has no unseen point left (x unset).
 * On a continuous space it is kp_sample_random. */
int kp_sample_random_unseen(const kp_space *s, uint64_t seed, long long idx, const double *prev, long long nprev,
                            double *x);

/* ---- bayesian optimisation (GP + expected improvement) ---------------------- */
typedef struct kp_bayes_info {
  double length_scale, noise;  /* chosen by marginal likelihood */
  double ei;                   /* EI of the chosen candidate */
  int random;                  /* 1 when too few observations: a random sample */
} kp_bayes_info;
/* Number of random trials before the model takes over, for n parameters. */
int kp_bayes_n_init(int nparams);
/* Picks the next point given 'nobs' observed points X (nobs x s->n, row
 * major) with values y, and 'npend' pending points P (running trials).
 * maximize: 1 or 0. Deterministic given its arguments. */
void kp_bayes_next(const kp_space *s, const double *X, const double *y, int nobs, const double *P, int npend,
                   int maximize, uint64_t seed, long long idx, double *x, kp_bayes_info *info);

/* ---- early termination ------------------------------------------------------ */
enum { KP_POLICY_NONE, KP_POLICY_BANDIT, KP_POLICY_MEDIAN, KP_POLICY_TRUNCATION };
typedef struct kp_policy {
  int type;
  int evaluation_interval;   /* >= 1 */
  int delay_evaluation;      /* >= 0 */
  int use_amount;            /* bandit: slack_amount instead of slack_factor */
  double slack;              /* bandit: slack_factor or slack_amount */
  double truncation;         /* truncation_percentage, 1..99 */
} kp_policy;

/* One child's primary-metric values at intervals 1..n. */
typedef struct kp_curve {
  const double *v;
  int n;
} kp_curve;

/* 1 when the policy is evaluated at interval k (1-based). */
int kp_policy_applies(const kp_policy *p, int k);
/* Decides whether child 'self' of 'all' is terminated at interval k (it has
 * reached k; the others count with the values they have). Returns 1 and
 * writes the rule with its numbers to 'why' when it is. */
int kp_policy_check(const kp_policy *p, int maximize, const kp_curve *all, int nall, int self, int k, char *why,
                    size_t whyn);

/* ---- the sweep file ----------------------------------------------------------- */
enum { KP_SAMPLING_GRID, KP_SAMPLING_RANDOM, KP_SAMPLING_BAYESIAN };
extern const char *const kp_sampling_names[3];
extern const char *const kp_policy_names[4];

typedef struct kp_sweep_spec {
  char *experiment, *source, *entry, *compute, *environment;
  char **args;
  int nargs;
  int nodes, processes_per_node;  /* run.nodes, run.processes_per_node: distributed children (0: not given) */
  char *mpirun;                   /* run.mpirun, or NULL */
  int64_t memory_limit;           /* run.memory ("512M"): bytes, 0 when not given (limits.h) */
  double cpus;                    /* run.cpus: processors, 0 when not given */
  int sampling;
  int has_seed;
  uint64_t seed;
  kp_space space;
  char *metric;
  int maximize;
  kp_policy policy;
  long long max_total_runs;     /* 0: not given (grid: all combinations) */
  int max_concurrent_runs;      /* 0: not given (= max_total_runs) */
  double max_duration_minutes;  /* 0: not given (10080, Azure's 7 days) */
  double cancel_grace_seconds;  /* grace of early-terminated children (default 10) */
  char **warm_start;            /* previous sweeps' ids */
  int nwarm;
} kp_sweep_spec;

/* Parses and validates a sweep file's JSON text; on error writes a message
 * naming the field to 'err' and returns -1. */
int kp_sweep_spec_parse(const char *text, kp_sweep_spec *out, char *err, size_t errn);
void kp_sweep_spec_free(kp_sweep_spec *s);
/* The number of children the sweep may start (before warm-start skips):
 * grid, every combination up to max_total_runs; random sampling does not
 * repeat a point, so a finite space caps it. */
long long kp_sweep_budget(const kp_sweep_spec *sp);
/* How many children run at once: max_concurrent_runs, else the budget
 * (1 to 1000). */
int kp_sweep_concurrency(const kp_sweep_spec *sp);

#endif
