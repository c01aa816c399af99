/*
 * platform/plot.c — metric curves as PNG files through cairo, for
 * `run plot` and `sweep plot`: one line per series, a legend to the right
 * of the plot area, axes with "nice" ticks (1, 2 or 5 times a power of ten),
 * grid lines, tick labels, axis labels and a title.
 */
#include "kp.h"
#include "manage.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* fontconfig (under cairo's text) keeps its caches for the life of the
 * process by design; as in tests/lib/test_extensions.c, LeakSanitizer is
 * told so (sanitizer builds only). */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig\n"; }
#endif

/* a colour-blind-friendly cycle (the usual ten categorical colours) */
static const int PALETTE[10][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                   {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

void kp_plot_color(int i, int rgb[3]) {
  const int *c = PALETTE[(i < 0 ? 0 : i) % 10];
  rgb[0] = c[0], rgb[1] = c[1], rgb[2] = c[2];
}

static void set_color(cairo_t *cr, int i) {
  int c[3];
  kp_plot_color(i, c);
  cairo_set_source_rgb(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0);
}

static double nice_step(double range, int ticks) {
  double raw = range / (ticks > 0 ? ticks : 1), p = pow(10, floor(log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(char *out, size_t n, double v, double step) {
  if (fabs(v) < step * 1e-9) v = 0;
  snprintf(out, n, "%.6g", v);
}

int kp_plot_png(const kp_plot *p, const char *path) {
  const int W = p->width, H = p->height;
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (int k = 0; k < p->n; k++)
    for (int i = 0; i < p->s[k].n; i++) {
      double x = p->s[k].x[i], y = p->s[k].y[i];
      if (!isfinite(x) || !isfinite(y)) continue;
      xmin = fmin(xmin, x), xmax = fmax(xmax, x);
      ymin = fmin(ymin, y), ymax = fmax(ymax, y);
    }
  if (!(xmin <= xmax)) return kp_err("nothing to plot: no finite values");
  if (xmax == xmin) { xmin -= 0.5; xmax += 0.5; }
  if (ymax == ymin) { ymin -= fabs(ymin) > 0 ? fabs(ymin) * 0.1 : 0.5; ymax += fabs(ymax) > 0 ? fabs(ymax) * 0.1 : 0.5; }
  double pad = (ymax - ymin) * 0.05, xpad = (xmax - xmin) * 0.02;  /* markers clear of the frame */
  ymin -= pad, ymax += pad;
  xmin -= xpad, xmax += xpad;

  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, W, H);
  cairo_t *cr = cairo_create(surf);
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    return kp_err("cannot draw a %dx%d image (out of memory?)", W, H);
  }
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  cairo_text_extents_t te;

  /* legend width: the longest label, at most 40% of the image */
  double lw = 0;
  for (int k = 0; k < p->n; k++) {
    cairo_text_extents(cr, p->s[k].label, &te);
    lw = fmax(lw, te.x_advance);
  }
  double legend_w = fmin(lw + 44, W * 0.4);
  const double ml = 78, mt = p->title ? 36 : 16, mb = 52, mr = legend_w + 16;
  double pw = W - ml - mr, ph = H - mt - mb;
  if (pw < 40 || ph < 40) {
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
    return kp_err("a %dx%d image is too small for this plot", W, H);
  }
#define PX(v) (ml + ((v) - xmin) / (xmax - xmin) * pw)
#define PY(v) (mt + ph - ((v) - ymin) / (ymax - ymin) * ph)
  char lab[64];
  /* grid, ticks and tick labels */
  cairo_set_line_width(cr, 1);
  double ys = nice_step(ymax - ymin, (int)(ph / 50));
  for (double y = ceil(ymin / ys) * ys; y <= ymax + ys * 1e-9; y += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, ml, round(PY(y)) + 0.5);
    cairo_line_to(cr, ml + pw, round(PY(y)) + 0.5);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, ml - 5, round(PY(y)) + 0.5);
    cairo_line_to(cr, ml, round(PY(y)) + 0.5);
    cairo_stroke(cr);
    fmt_tick(lab, sizeof lab, y, ys);
    cairo_text_extents(cr, lab, &te);
    cairo_move_to(cr, ml - 8 - te.x_advance, PY(y) + te.height / 2);
    cairo_show_text(cr, lab);
  }
  double xs = nice_step(xmax - xmin, (int)(pw / 80));
  int integral = 1;  /* steps: no ticks between integers */
  for (int k = 0; k < p->n && integral; k++)
    for (int i = 0; i < p->s[k].n && integral; i++) integral = !isfinite(p->s[k].x[i]) || p->s[k].x[i] == floor(p->s[k].x[i]);
  if (integral && xs < 1) xs = 1;
  for (double x = ceil(xmin / xs) * xs; x <= xmax + xs * 1e-9; x += xs) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, round(PX(x)) + 0.5, mt);
    cairo_line_to(cr, round(PX(x)) + 0.5, mt + ph);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, round(PX(x)) + 0.5, mt + ph);
    cairo_line_to(cr, round(PX(x)) + 0.5, mt + ph + 5);
    cairo_stroke(cr);
    fmt_tick(lab, sizeof lab, x, xs);
    cairo_text_extents(cr, lab, &te);
    cairo_move_to(cr, PX(x) - te.x_advance / 2, mt + ph + 20);
    cairo_show_text(cr, lab);
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, ml + 0.5, mt + 0.5, pw, ph);
  cairo_stroke(cr);
  /* axis labels and title */
  if (p->xlabel) {
    cairo_text_extents(cr, p->xlabel, &te);
    cairo_move_to(cr, ml + pw / 2 - te.x_advance / 2, H - 10);
    cairo_show_text(cr, p->xlabel);
  }
  if (p->ylabel) {
    cairo_text_extents(cr, p->ylabel, &te);
    cairo_save(cr);
    cairo_move_to(cr, 16, mt + ph / 2 + te.x_advance / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, p->ylabel);
    cairo_restore(cr);
  }
  if (p->title) {
    cairo_set_font_size(cr, 14);
    cairo_text_extents(cr, p->title, &te);
    cairo_move_to(cr, fmax(4, ml + pw / 2 - te.x_advance / 2), 22);
    cairo_show_text(cr, p->title);
    cairo_set_font_size(cr, 12);
  }
  /* the curves (thick ones last, on top) */
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (int kk = 0; kk < 2 * p->n; kk++) {
    int k = kk % p->n;
    const kp_series *s = &p->s[k];
    if ((kk < p->n) == !!s->thick) continue;
    set_color(cr, k);
    cairo_set_line_width(cr, s->thick ? 3.5 : 2);
    if (s->dashed) {
      const double d[] = {7, 4};
      cairo_set_dash(cr, d, 2, 0);
    }
    int pen = 0;
    for (int i = 0; i < s->n; i++) {
      if (!isfinite(s->x[i]) || !isfinite(s->y[i])) { if (pen) cairo_stroke(cr); pen = 0; continue; }
      if (pen) cairo_line_to(cr, PX(s->x[i]), PY(s->y[i]));
      else cairo_move_to(cr, PX(s->x[i]), PY(s->y[i]));
      pen = 1;
    }
    int single = 0;  /* a curve of one point is only its marker */
    for (int i = 0; i < s->n; i++) single += isfinite(s->x[i]) && isfinite(s->y[i]);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    if (s->n <= 60 || single == 1)
      for (int i = 0; i < s->n; i++) {
        if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
        cairo_arc(cr, PX(s->x[i]), PY(s->y[i]), s->thick ? 3.5 : 2.5, 0, 2 * M_PI);
        cairo_fill(cr);
      }
    int last = s->n - 1;
    while (last >= 0 && !(isfinite(s->x[last]) && isfinite(s->y[last]))) last--;
    if (s->end_cross && last >= 0) {
      double cx = PX(s->x[last]), cy = PY(s->y[last]);
      cairo_set_line_width(cr, 2);
      cairo_move_to(cr, cx - 5, cy - 5);
      cairo_line_to(cr, cx + 5, cy + 5);
      cairo_move_to(cr, cx - 5, cy + 5);
      cairo_line_to(cr, cx + 5, cy - 5);
      cairo_stroke(cr);
    }
    if (s->mark >= 0 && s->mark < s->n && isfinite(s->y[s->mark])) {
      cairo_set_line_width(cr, 2);
      cairo_set_source_rgb(cr, 0, 0, 0);
      cairo_arc(cr, PX(s->x[s->mark]), PY(s->y[s->mark]), 7, 0, 2 * M_PI);
      cairo_stroke(cr);
    }
  }
  /* the legend, right of the plot area: as many entries as fit */
  double lx = ml + pw + 14, ly = mt + 4, row = 18;
  int fit = (int)((ph - 8) / row);
  if (fit < 1) fit = 1;
  int shown = p->n <= fit ? p->n : fit - 1;
  for (int k = 0; k < shown; k++) {
    const kp_series *s = &p->s[k];
    double y = ly + row * k + 9;
    set_color(cr, k);
    cairo_set_line_width(cr, s->thick ? 3.5 : 2);
    if (s->dashed) {
      const double d[] = {5, 3};
      cairo_set_dash(cr, d, 2, 0);
    }
    cairo_move_to(cr, lx, y);
    cairo_line_to(cr, lx + 24, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_save(cr);
    cairo_rectangle(cr, lx + 30, y - 13, W - lx - 30, row + 4);
    cairo_clip(cr);
    cairo_move_to(cr, lx + 30, y + 4);
    cairo_show_text(cr, s->label);
    cairo_restore(cr);
  }
  if (shown < p->n) {
    snprintf(lab, sizeof lab, "... and %d more", p->n - shown);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, lx, ly + row * shown + 13);
    cairo_show_text(cr, lab);
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
    kp_err("cannot write %s: %s", path, st == CAIRO_STATUS_WRITE_ERROR ? "cannot create or write the file" : cairo_status_to_string(st));
    kp_hint("check that the folder exists and is writable");
    return -1;
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return kp_err("cannot write %s: %s", path, strerror(e));
  }
  return 0;
}
