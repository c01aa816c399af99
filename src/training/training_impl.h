/*
 * src/training/training_impl.h — full structs of the trainer objects
 * (kusari/trainer.h) shared by the files of src/training/.
 */
#ifndef KUSARI_TRAINING_IMPL_H
#define KUSARI_TRAINING_IMPL_H

#include "kusari/trainer.h"
#include "kusari/extensions.h"
#include "kusari/parallel.h"

typedef struct ks_obs_entry {
  char *key;
  double value;
} ks_obs_entry;

struct ks_reporter {
  char *prefix;
  ks_obs_entry *e;
  int n, cap;
};

typedef struct ks_summary_entry {
  char *key;
  double x, x2, n;
} ks_summary_entry;

struct ks_summary {
  ks_summary_entry *e;
  int n, cap;
};

struct ks_updater {
  ks_serial_iterator *it;
  const ks_dataset *ds;
  ks_optimizer *opt;
  ks_ctx *ctx;
  int owns_ctx;
  ks_lossfun lossfun;
  void *lossfun_user;
  ks_converter_fn converter;
  void *converter_user;
  int64_t iteration;
  ks_data_parallel *dp;      /* replicas > 1, else NULL                          */
  ks_reporter **dp_reps;     /* one reporter per replica                          */
};

struct ks_extension {
  const ks_extension_ops *ops;
  void *state;
  char *name;
  ks_interval_trigger trigger;
  char *trigger_key;   /* a best-value trigger's key (trigger.spec.key points here) */
  int priority;
  int order;      /* registration order, for a stable sort */
  int added;
};

struct ks_trainer {
  struct ks_comm *comm;     /* multi-node (ks_trainer_set_comm), or NULL   */
  ks_updater *updater;
  ks_reporter *reporter;
  ks_interval_trigger stop;
  char *out;
  ks_extension **ext;
  int n_ext, cap_ext;
  int done;
  double start_at;          /* monotonic seconds when run started (0: not yet) */
  double snapshot_elapsed;  /* elapsed time carried over from a snapshot      */
};

double ks__now(void);
/* "a" + "b" + "c" in a malloc'd string (error set on OOM). */
char *ks__strcat3(const char *a, const char *b, const char *c);
/* Reads a scalar (any numeric dtype) as int64 / double. */
int ks__npz_read_i64(ks_npz_reader *r, const char *key, int64_t *out);
int ks__npz_read_f64(ks_npz_reader *r, const char *key, double *out);
/* Adds a float64 scalar / array. */
int ks__npz_add_f64(ks_npz_writer *w, const char *key, double v);
/* Loads the newest snapshot of the first snapshot extension made with
 * autoload (extensions.c), before any extension is initialized; none in
 * the output directory is a first start (KS_OK). */
int ks__snapshot_autoload(ks_trainer *tr);
/* mkdir -p of a single level (EEXIST is fine). */
int ks__ensure_dir(const char *dir);

#endif
