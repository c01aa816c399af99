/*
 * platform/manage.h — internal: deleting runs, sweeps and experiments with
 * their blobs (delete.c, blob.c), and PNG plots of metric curves (plot.c).
 */
#ifndef KUSARI_PLATFORM_MANAGE_H
#define KUSARI_PLATFORM_MANAGE_H

/* Include "kp.h" before this header. */
#include <stdint.h>

/* ---- blob garbage collection (blob.c) -------------------------------------- */
typedef struct kp_gc_result {
  int removed;      /* blobs unlinked */
  int64_t bytes;    /* their size */
  int kept;         /* candidates still referred to (another run, a model, a snapshot) */
  int deferred;     /* candidates left for the next collection (the store was busy) */
} kp_gc_result;

/* Holds the blob store's shared lock until the process exits: a command that
 * is about to refer to blobs it did not store itself (a snapshot id, a run's
 * files) calls this before reading them, so a concurrent collection cannot
 * remove them before its rows commit. Blob puts do it themselves. */
int kp_blob_pin(const kp_ws *ws);
/* Removes those of the blobs hex[0..n) (and of the ones an earlier collection
 * deferred) that nothing in the store refers to. Call after the commit that
 * dropped their references. 0, or -1 (printed; nothing unsafe was removed). */
int kp_blob_collect(kp_ws *ws, char (*hex)[65], size_t n, kp_gc_result *res);

/* ---- deleting runs (delete.c) ------------------------------------------------ */
typedef enum { KP_DEL_RUNS, KP_DEL_SWEEP, KP_DEL_EXPERIMENT } kp_del_kind;
/* Deletes runs with their metrics, tags, files, sweep records and live
 * directories in one transaction, then collects their blobs:
 *   KP_DEL_RUNS        the runs names[0..n) (no sweep or sweep child)
 *   KP_DEL_SWEEP       sweep names[0] with its children
 *   KP_DEL_EXPERIMENT  experiment names[0] with all of its runs
 * Refuses while any of them is active. 'yes' skips the confirmation (asked
 * on a terminal; required otherwise); 'dry_run' only prints the plan.
 * 'cmd' is the command's name for messages. Returns the exit status. */
int kp_delete(const char *cmd, kp_del_kind kind, const char *const *names, int n, int yes, int dry_run);

/* ---- plots (plot.c) ------------------------------------------------------------- */
typedef struct kp_series {
  const char *label;      /* legend text */
  const double *x, *y;    /* n points, x ascending; non-finite y leave a gap */
  int n;
  int dashed;             /* drawn dashed (e.g. a canceled run) */
  int thick;              /* drawn thicker (e.g. the best run) */
  int mark;               /* index of a point to ring (e.g. the best value), or -1 */
  int end_cross;          /* a cross at the last point (e.g. where it was canceled) */
} kp_series;

typedef struct kp_plot {
  const char *title, *xlabel, *ylabel;
  int width, height;      /* pixels */
  const kp_series *s;
  int n;
} kp_plot;

/* The colour of series i (r, g, b in 0..255); documented in docs/PLATFORM.md. */
void kp_plot_color(int i, int rgb[3]);
/* Draws the series as lines with a legend, axes, ticks and labels, and writes
 * a PNG to 'path' (atomically). 0, or -1 (printed). */
int kp_plot_png(const kp_plot *p, const char *path);

#endif
