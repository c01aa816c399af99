/*
 * src/training/plot_report.c — PlotReport: line plots of LogReport entries
 * as PNG files, drawn with cairo (chainer.training.extensions.PlotReport
 * draws the same with matplotlib).
 */
#include "training_impl.h"
#include "kusari/error.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct plot_report {
  char **y_keys;
  int n;
  char *x_key, *filename, *log_name;
  int seen;
} plot_report;

static void plot_report_free(void *p) {
  plot_report *s = p;
  if (!s) return;
  for (int i = 0; i < s->n; i++) free(s->y_keys[i]);
  free(s->y_keys);
  free(s->x_key);
  free(s->filename);
  free(s->log_name);
  free(s);
}

/* a "nice" tick step for a range (1, 2 or 5 times a power of ten) */
static double nice_step(double range, int ticks) {
  double raw = range / ticks, p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static const double colors[][3] = {
  {0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17}, {0.84, 0.15, 0.16},
  {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}, {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}};

static int draw(plot_report *s, const ks_extension *lr, const char *path) {
  int n = ks_log_report_size(lr);
  const int W = 640, H = 480, ml = 70, mr = 20, mt = 20, mb = 50;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  int any = 0;
  for (int i = 0; i < n; i++) {
    double x, y;
    if (ks_log_report_get(lr, i, s->x_key, &x) != KS_OK) continue;
    for (int k = 0; k < s->n; k++) {
      if (ks_log_report_get(lr, i, s->y_keys[k], &y) != KS_OK || !isfinite(y)) continue;
      any = 1;
      xmin = fmin(xmin, x); xmax = fmax(xmax, x);
      ymin = fmin(ymin, y); ymax = fmax(ymax, y);
    }
  }
  if (!any) return KS_OK; /* nothing to plot yet */
  if (xmax == xmin) { xmin -= 0.5; xmax += 0.5; }
  if (ymax == ymin) { ymin -= 0.5; ymax += 0.5; }
  double pad = (ymax - ymin) * 0.05;
  ymin -= pad;
  ymax += pad;
  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  cairo_t *cr = cairo_create(surf);
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    return ks_error_set(KS_ENOMEM, "PlotReport: cannot create a cairo surface");
  }
  double pw = W - ml - mr, ph = H - mt - mb;
#define PX(x) (ml + ((x) - xmin) / (xmax - xmin) * pw)
#define PY(y) (mt + ph - ((y) - ymin) / (ymax - ymin) * ph)
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 11);
  /* grid and tick labels */
  char lab[64];
  cairo_text_extents_t te;
  double ys = nice_step(ymax - ymin, 6);
  for (double y = ceil(ymin / ys) * ys; y <= ymax + 1e-12; y += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, ml, PY(y));
    cairo_line_to(cr, ml + pw, PY(y));
    cairo_stroke(cr);
    snprintf(lab, sizeof lab, "%.4g", fabs(y) < ys * 1e-9 ? 0.0 : y);
    cairo_text_extents(cr, lab, &te);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, ml - 6 - te.width, PY(y) + te.height / 2);
    cairo_show_text(cr, lab);
  }
  double xs = nice_step(xmax - xmin, 8);
  if (xs < 1 && floor(xmin) == xmin && floor(xmax) == xmax) xs = 1;
  for (double x = ceil(xmin / xs) * xs; x <= xmax + 1e-12; x += xs) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, PX(x), mt);
    cairo_line_to(cr, PX(x), mt + ph);
    cairo_stroke(cr);
    snprintf(lab, sizeof lab, "%.6g", x);
    cairo_text_extents(cr, lab, &te);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, PX(x) - te.width / 2, mt + ph + 16);
    cairo_show_text(cr, lab);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, ml, mt, pw, ph);
  cairo_stroke(cr);
  cairo_text_extents(cr, s->x_key, &te);
  cairo_move_to(cr, ml + pw / 2 - te.width / 2, H - 12);
  cairo_show_text(cr, s->x_key);
  /* lines */
  cairo_set_line_width(cr, 1.8);
  for (int k = 0; k < s->n; k++) {
    const double *c = colors[k % 8];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    int started = 0;
    for (int i = 0; i < n; i++) {
      double x, y;
      if (ks_log_report_get(lr, i, s->x_key, &x) != KS_OK || ks_log_report_get(lr, i, s->y_keys[k], &y) != KS_OK || !isfinite(y)) continue;
      if (started) cairo_line_to(cr, PX(x), PY(y));
      else cairo_move_to(cr, PX(x), PY(y));
      started = 1;
    }
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
      double x, y;
      if (ks_log_report_get(lr, i, s->x_key, &x) != KS_OK || ks_log_report_get(lr, i, s->y_keys[k], &y) != KS_OK || !isfinite(y)) continue;
      cairo_arc(cr, PX(x), PY(y), 3, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }
  /* legend (top right) */
  double lw = 0;
  for (int k = 0; k < s->n; k++) {
    cairo_text_extents(cr, s->y_keys[k], &te);
    lw = fmax(lw, te.width);
  }
  double lx = ml + pw - lw - 40, ly = mt + 8;
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, lx - 6, ly - 2, lw + 40, 18.0 * s->n + 4);
  cairo_fill(cr);
  for (int k = 0; k < s->n; k++) {
    const double *c = colors[k % 8];
    cairo_set_source_rgb(cr, c[0], c[1], c[2]);
    cairo_move_to(cr, lx, ly + 9 + 18.0 * k);
    cairo_line_to(cr, lx + 22, ly + 9 + 18.0 * k);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, lx + 28, ly + 13 + 18.0 * k);
    cairo_show_text(cr, s->y_keys[k]);
  }
#undef PX
#undef PY
  cairo_destroy(cr);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
  cairo_status_t st = cairo_surface_write_to_png(surf, tmp);
  cairo_surface_destroy(surf);
  if (st != CAIRO_STATUS_SUCCESS) {
    unlink(tmp);
    return ks_error_set(KS_EIO, "PlotReport: cannot write '%s': %s", path, cairo_status_to_string(st));
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return ks_error_set(KS_EIO, "PlotReport: cannot rename '%s' to '%s'", tmp, path);
  }
  return KS_OK;
}

static int plot_report_run(ks_extension *ext, ks_trainer *tr) {
  plot_report *s = ks_extension_state(ext);
  ks_extension *lr = ks_trainer_get_extension(tr, s->log_name);
  if (!lr || strcmp(ks_extension_ops_of(lr)->default_name, "LogReport") != 0)
    return ks_error_set(KS_ENOTFOUND, "PlotReport needs a LogReport registered as '%s'", s->log_name);
  int n = ks_log_report_size(lr);
  if (n == s->seen) return KS_OK;
  s->seen = n;
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", ks_trainer_out(tr), s->filename);
  return draw(s, lr, path);
}

static const ks_extension_ops plot_report_ops = {
  .default_name = "PlotReport",
  .default_trigger = {1, KS_ITERATION},
  .default_priority = KS_PRIORITY_READER,
  .run = plot_report_run,
  .free_state = plot_report_free,
  .rank0_only = 1,
};

ks_extension *ks_plot_report_new(const char *const *y_keys, int n, const char *x_key,
                                 const char *filename, const char *log_report) {
  if (!y_keys || n < 1 || !filename || !*filename || strchr(filename, '/')) {
    ks_error_set(KS_EINVAL, "ks_plot_report_new: needs y keys and a plain file name");
    return NULL;
  }
  plot_report *s = calloc(1, sizeof *s);
  if (!s || !(s->y_keys = calloc((size_t)n, sizeof *s->y_keys))) {
    free(s);
    ks_error_set(KS_ENOMEM, "out of memory");
    return NULL;
  }
  s->n = n;
  int ok = (s->x_key = ks__strcat3(x_key ? x_key : "epoch", NULL, NULL)) &&
           (s->filename = ks__strcat3(filename, NULL, NULL)) &&
           (s->log_name = ks__strcat3(log_report ? log_report : "LogReport", NULL, NULL));
  for (int i = 0; i < n && ok; i++) ok = y_keys[i] && (s->y_keys[i] = ks__strcat3(y_keys[i], NULL, NULL));
  if (!ok) { plot_report_free(s); ks_error_set(KS_EINVAL, "ks_plot_report_new: bad key"); return NULL; }
  return ks_extension_new(&plot_report_ops, s);
}
