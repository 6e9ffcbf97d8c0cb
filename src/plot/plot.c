/* plot.c - line-plot figures with cairo and pango (include/miclip/plot.h).
 *
 * One routine, draw(), lays out and paints a figure onto any cairo context in figure units; the
 * three formats differ only in the surface: an RGB image surface scaled by MC_PLOT_PNG_SCALE
 * (PNG), an SVG surface in user units, a PDF surface in points. Every surface writes to memory
 * through cairo's stream API; mc_plot_write hands the bytes to mc_write_text_file_if_changed
 * (atomic; an unchanged figure is not rewritten, so a report drawn again touches no file).
 *
 * Text: pango with "DejaVu Sans" at absolute sizes, resolution 72, hinting off (outlines and
 * metrics), glyph positions unrounded, greyscale antialiasing: the layout does not depend on the
 * surface or on the user's fontconfig hinting settings. Lines, ticks and the frame sit on whole
 * units, so at MC_PLOT_PNG_SCALE they cover whole pixels and stay crisp.
 */
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <math.h>
#include <pango/pangocairo.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/plot.h"

#define FONT_FAMILY "DejaVu Sans"
#define FONT_PACKAGE "fonts-dejavu-core"
/* The PDF's CreationDate: fixed, so the same figure gives the same bytes. */
#define PDF_DATE "2000-01-01T00:00:00Z"

/* Layout in figure units. */
#define PANEL_W 470
#define PANEL_H 340
#define TITLE_H 34
#define M_TOP 30    /* panel title band (10 without a panel title) */
#define M_BOTTOM 50 /* tick labels and the x label */
#define M_RIGHT 16
#define TICK 5
#define MINOR_TICK 3

#define SZ_TITLE 15.0
#define SZ_PANEL 12.5
#define SZ_LABEL 12.0
#define SZ_TICK 10.5
#define SZ_LEGEND 10.5
#define SZ_MARKER 9.5

/* Series colours: matplotlib's tab10, distinguishable and printable. */
static const double palette[10][3] = {
    {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

/* ---- bytes from cairo's stream writers ------------------------------------------------------- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bytes;

static cairo_status_t bytes_write(void *closure, const unsigned char *data, unsigned int len) {
    bytes *b = closure;
    if (b->oom) return CAIRO_STATUS_NO_MEMORY;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->n + len + 1) cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return CAIRO_STATUS_NO_MEMORY;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = 0;
    return CAIRO_STATUS_SUCCESS;
}

static void bytes_str(bytes *b, const char *s) {
    bytes_write(b, (const unsigned char *)s, (unsigned)strlen(s));
}

/* s with & < > " escaped for XML; bytes below 32 (not tab/newline) dropped. */
static void bytes_xml(bytes *b, const char *s) {
    for (; *s; s++) {
        const char *r = *s == '&'   ? "&amp;"
                        : *s == '<' ? "&lt;"
                        : *s == '>' ? "&gt;"
                        : *s == '"' ? "&quot;"
                                    : NULL;
        if (r)
            bytes_str(b, r);
        else if ((unsigned char)*s >= 32 || *s == '\n')
            bytes_write(b, (const unsigned char *)s, 1);
    }
}

/* ---- text ------------------------------------------------------------------------------------- */
typedef struct {
    cairo_t *cr;
    PangoContext *pc;
} canvas;

typedef enum { V_TOP, V_MIDDLE, V_BASELINE } valign;

/* A layout of s (UTF-8; invalid bytes replaced) at size in figure units. markup: s is pango
 * markup (only the tick labels, which this file writes). */
static PangoLayout *layout_of(canvas *cv, const char *s, double size, bool bold, bool markup) {
    PangoLayout *l = pango_layout_new(cv->pc);
    PangoFontDescription *d = pango_font_description_new();
    pango_font_description_set_family_static(d, FONT_FAMILY);
    pango_font_description_set_absolute_size(d, size * PANGO_SCALE);
    pango_font_description_set_weight(d, bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
    pango_layout_set_font_description(l, d);
    pango_font_description_free(d);
    if (markup) {
        pango_layout_set_markup(l, s, -1);
    } else {
        gchar *v = g_utf8_make_valid(s, -1);
        pango_layout_set_text(l, v, -1);
        g_free(v);
    }
    return l;
}

static double text_width(canvas *cv, const char *s, double size, bool bold, bool markup) {
    PangoLayout *l = layout_of(cv, s, size, bold, markup);
    PangoRectangle log;
    pango_layout_get_extents(l, NULL, &log);
    g_object_unref(l);
    return (double)log.width / PANGO_SCALE;
}

/* Draws s at (x, y): halign 0 starts, 0.5 centres, 1 ends the text at x; valign puts the top
 * of the line box, the middle of the capitals and digits, or the baseline at y. angle rotates
 * about (x, y) (-pi/2 reads bottom to top). */
static void text(canvas *cv, double x, double y, const char *s, double size, bool bold,
                 double halign, valign va, double angle, bool markup, const double *rgb) {
    if (!*s) return;
    cairo_t *cr = cv->cr;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (angle != 0) cairo_rotate(cr, angle);
    pango_cairo_update_context(cr, cv->pc);
    PangoLayout *l = layout_of(cv, s, size, bold, markup);
    PangoRectangle log;
    pango_layout_get_extents(l, NULL, &log);
    const double w = (double)log.width / PANGO_SCALE,
                 base = (double)pango_layout_get_baseline(l) / PANGO_SCALE;
    const double dy = va == V_TOP ? 0 : va == V_BASELINE ? -base : -(base - 0.365 * size);
    cairo_move_to(cr, -halign * w - (double)log.x / PANGO_SCALE, dy);
    cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
    pango_cairo_show_layout(cr, l);
    g_object_unref(l);
    cairo_restore(cr);
}

static const double INK[3] = {0.1, 0.1, 0.1}, FRAME[3] = {0.2, 0.2, 0.2}, GRID[3] = {0.9, 0.9, 0.9},
                    MARK[3] = {0.4, 0.4, 0.4};

/* ---- axes ------------------------------------------------------------------------------------- */

/* A tick step of 1, 2 or 5 x 10^k giving about `want` intervals over range. */
static double nice_step(double range, int want) {
    double raw = range / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

/* A tick label: decimals enough for step, a real minus sign, no "-0". */
static void tick_label(char *out, size_t cap, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 10) dec = 10;
    if (fabs(v) < step * 1e-9) v = 0;
    char num[64];
    mc_snprintf(num, sizeof num, "%.*f", dec, fabs(v));
    mc_snprintf(out, cap, "%s%s", v < 0 ? "\xe2\x88\x92" : "", num);
}

/* A log-axis label for 10^e (or m x 10^e): plain decimals between 1e-4 and 1e5, else 10^e as
 * pango markup with a superscript. */
static void log_label(char *out, size_t cap, int m, int e) {
    if (e >= -4 && e <= 4) {
        char num[64];
        mc_snprintf(num, sizeof num, "%.*f", e < 0 ? -e : 0, m * pow(10.0, e));
        mc_snprintf(out, cap, "%s", num);
    } else if (m == 1) {
        mc_snprintf(out, cap, "10<sup>%s%d</sup>", e < 0 ? "\xe2\x88\x92" : "", abs(e));
    } else {
        mc_snprintf(out, cap,
                    "%d\xc3\x97"
                    "10<sup>%s%d</sup>",
                    m, e < 0 ? "\xe2\x88\x92" : "", abs(e));
    }
}

typedef struct {
    double x0, x1, y0, y1;         /* the plot area */
    double xmin, xmax, ymin, ymax; /* data limits (y in log10 when log) */
    bool log;
} frame;

static double map_x(const frame *f, double x) {
    return f->x0 + (x - f->xmin) / (f->xmax - f->xmin) * (f->x1 - f->x0);
}
static double map_y(const frame *f, double y) {
    double v = f->log ? (y > 0 ? log10(y) : NAN) : y;
    return f->y1 - (v - f->ymin) / (f->ymax - f->ymin) * (f->y1 - f->y0);
}

/* The y ticks of f: values (and labels, markup when log) into t/lab, minor ticks flagged. */
typedef struct {
    double v;
    bool minor;
    char lab[64];
} tick;
#define MAX_TICKS 128

static int y_ticks(const frame *f, tick *t) {
    int n = 0;
    if (!f->log) {
        const double s = nice_step(f->ymax - f->ymin, 5);
        for (double k = ceil(f->ymin / s - 1e-9); k * s <= f->ymax + s * 1e-9 && n < MAX_TICKS;
             k++) {
            t[n].v = k * s, t[n].minor = false;
            tick_label(t[n].lab, sizeof t[n].lab, k * s, s);
            n++;
        }
        return n;
    }
    const double decades = f->ymax - f->ymin;
    const int every = decades > 7 ? (int)ceil(decades / 6) : 1; /* label every n-th decade */
    for (int e = (int)floor(f->ymin); e <= (int)ceil(f->ymax) && n < MAX_TICKS - 10; e++)
        for (int m = 1; m <= 9; m++) {
            double lv = e + log10((double)m);
            if (lv < f->ymin - 1e-9 || lv > f->ymax + 1e-9) continue;
            bool major = m == 1 ? (e % every == 0) : (decades < 2.5 && (m == 2 || m == 5));
            t[n].v = pow(10.0, lv), t[n].minor = !major;
            if (major)
                log_label(t[n].lab, sizeof t[n].lab, m, e);
            else
                t[n].lab[0] = 0;
            n++;
        }
    return n;
}

/* ---- one panel -------------------------------------------------------------------------------- */

static void line(cairo_t *cr, double x0, double y0, double x1, double y1) {
    cairo_move_to(cr, x0, y0);
    cairo_line_to(cr, x1, y1);
    cairo_stroke(cr);
}

static void set_rgb255(cairo_t *cr, const double *c) {
    cairo_set_source_rgb(cr, c[0] / 255, c[1] / 255, c[2] / 255);
}
/* Series s's colour: its own, or the palette's. */
static void set_series_rgb(cairo_t *cr, const mc_plot_series *se, int s) {
    if (!se->own_rgb) {
        set_rgb255(cr, palette[s % 10]);
        return;
    }
    const double c[3] = {se->rgb[0], se->rgb[1], se->rgb[2]};
    set_rgb255(cr, c);
}

/* How many data points of pn fall inside the box (figure units) under frame f. */
static int64_t points_in(const mc_plot_panel *pn, const frame *f, double bx, double by, double bw,
                         double bh) {
    int64_t k = 0;
    for (int s = 0; s < pn->n_series; s++)
        for (int64_t i = 0; i < pn->series[s].n; i++) {
            double px = map_x(f, pn->series[s].x[i]), py = map_y(f, pn->series[s].y[i]);
            k += px >= bx && px <= bx + bw && py >= by && py <= by + bh;
        }
    return k;
}

static void draw_panel(canvas *cv, const mc_plot_panel *pn, double ox, double oy) {
    cairo_t *cr = cv->cr;
    /* Data limits over the finite points. */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY, pmin = INFINITY;
    bool all_pos = true;
    for (int s = 0; s < pn->n_series; s++)
        for (int64_t i = 0; i < pn->series[s].n; i++) {
            double x = pn->series[s].x[i], y = pn->series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
            if (y > 0)
                pmin = fmin(pmin, y);
            else
                all_pos = false;
        }
    frame f = {0};
    f.log = pn->yscale == MC_PLOT_Y_LOG ? isfinite(pmin)
            : pn->yscale == MC_PLOT_Y_AUTO
                ? all_pos && isfinite(pmin) && ymax / pmin >= MC_PLOT_LOG_RATIO
                : false;
    if (!(xmin <= xmax)) xmin = 0, xmax = 1, ymin = 0, ymax = 1; /* no data: empty axes */
    if (f.log) ymin = log10(pmin), ymax = log10(ymax);
    if (xmax - xmin <= 0) xmin -= 0.5, xmax += 0.5;
    if (ymax - ymin <= 0) {
        double d = f.log ? 0.5 : fabs(ymin) * 0.1 + 0.5;
        ymin -= d, ymax += d;
    }
    const double xpad = (xmax - xmin) * 0.02, ypad = (ymax - ymin) * 0.05;
    f.xmin = xmin - xpad, f.xmax = xmax + xpad, f.ymin = ymin - ypad, f.ymax = ymax + ypad;

    /* The left margin fits the widest y tick label and the rotated y label. */
    tick yt[MAX_TICKS];
    const int nyt = y_ticks(&f, yt);
    double wmax = 0;
    for (int i = 0; i < nyt; i++)
        if (yt[i].lab[0]) wmax = fmax(wmax, text_width(cv, yt[i].lab, SZ_TICK, false, f.log));
    const double ylab_x = ox + 10;
    f.x0 = round(ylab_x + (pn->ylabel[0] ? SZ_LABEL * 1.25 + 8 : 0) + wmax + 6 + TICK);
    f.x1 = ox + PANEL_W - M_RIGHT, f.y0 = oy + (pn->title[0] ? M_TOP : 10),
    f.y1 = oy + PANEL_H - M_BOTTOM;

    /* Grid, ticks and labels. */
    cairo_set_line_width(cr, 1);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    const double xs = nice_step(f.xmax - f.xmin, 6);
    for (double k = ceil(f.xmin / xs - 1e-9); k * xs <= f.xmax + xs * 1e-9; k++) {
        const double px = round(map_x(&f, k * xs));
        cairo_set_source_rgb(cr, GRID[0], GRID[1], GRID[2]);
        line(cr, px, f.y0, px, f.y1);
        cairo_set_source_rgb(cr, FRAME[0], FRAME[1], FRAME[2]);
        line(cr, px, f.y1, px, f.y1 + TICK);
        char lab[64];
        tick_label(lab, sizeof lab, k * xs, xs);
        text(cv, px, f.y1 + TICK + 3, lab, SZ_TICK, false, 0.5, V_TOP, 0, false, INK);
    }
    for (int i = 0; i < nyt; i++) {
        const double py = round(map_y(&f, yt[i].v));
        if (!yt[i].minor) {
            cairo_set_source_rgb(cr, GRID[0], GRID[1], GRID[2]);
            line(cr, f.x0, py, f.x1, py);
        }
        cairo_set_source_rgb(cr, FRAME[0], FRAME[1], FRAME[2]);
        line(cr, f.x0 - (yt[i].minor ? MINOR_TICK : TICK), py, f.x0, py);
        if (yt[i].lab[0])
            text(cv, f.x0 - TICK - 4, py, yt[i].lab, SZ_TICK, false, 1, V_MIDDLE, 0, f.log, INK);
    }
    text(cv, (f.x0 + f.x1) / 2, f.y1 + TICK + 3 + SZ_TICK * 1.3 + 6, pn->xlabel, SZ_LABEL, false,
         0.5, V_TOP, 0, false, INK);
    text(cv, ylab_x, (f.y0 + f.y1) / 2, pn->ylabel, SZ_LABEL, false, 0.5, V_TOP, -M_PI / 2, false,
         INK);
    text(cv, (f.x0 + f.x1) / 2, oy + M_TOP / 2.0 + 1, pn->title, SZ_PANEL, true, 0.5, V_MIDDLE, 0,
         false, INK);

    /* Markers: dashed vertical lines with their labels reading upwards beside them. */
    for (int m = 0; m < pn->n_markers && m < MC_PLOT_MAX_MARKERS; m++) {
        const double mx = pn->markers[m].x;
        if (!isfinite(mx) || mx < f.xmin || mx > f.xmax) continue;
        const double px = round(map_x(&f, mx));
        cairo_save(cr);
        const double dash[2] = {4, 3};
        cairo_set_dash(cr, dash, 2, 0);
        cairo_set_source_rgb(cr, MARK[0], MARK[1], MARK[2]);
        line(cr, px, f.y0, px, f.y1);
        cairo_restore(cr);
        text(cv, px + 3 + SZ_MARKER * 0.95, f.y1 - 6, pn->markers[m].label, SZ_MARKER, false, 0,
             V_BASELINE, -M_PI / 2, false, MARK);
    }

    /* The series, clipped to the plot area; a non-finite point breaks the line. */
    cairo_save(cr);
    cairo_rectangle(cr, f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
    cairo_clip(cr);
    cairo_set_line_width(cr, 1.75);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (int s = 0; s < pn->n_series; s++) {
        const mc_plot_series *se = &pn->series[s];
        bool pen = false;
        int64_t drawn = 0;
        for (int64_t i = 0; i < se->n; i++) {
            const double px = map_x(&f, se->x[i]), py = map_y(&f, se->y[i]);
            if (!isfinite(se->x[i]) || !isfinite(se->y[i]) || !isfinite(py)) {
                pen = false;
                continue;
            }
            if (pen)
                cairo_line_to(cr, px, py);
            else
                cairo_move_to(cr, px, py),
                    cairo_line_to(cr, px, py); /* a lone point shows as a dot */
            pen = true, drawn++;
        }
        if (!drawn) continue;
        set_series_rgb(cr, se, s);
        if (!se->points) {
            cairo_stroke(cr);
            continue;
        }
        /* A scatter: the path above is dropped; one filled dot per finite point. */
        cairo_new_path(cr);
        for (int64_t i = 0; i < se->n; i++) {
            const double px = map_x(&f, se->x[i]), py = map_y(&f, se->y[i]);
            if (!isfinite(se->x[i]) || !isfinite(se->y[i]) || !isfinite(py)) continue;
            cairo_new_sub_path(cr);
            cairo_arc(cr, px, py, MC_PLOT_DOT, 0, 2 * M_PI);
        }
        cairo_fill(cr);
    }
    cairo_restore(cr);

    /* The frame over the data's ends. */
    cairo_set_line_width(cr, 1);
    cairo_set_source_rgb(cr, FRAME[0], FRAME[1], FRAME[2]);
    cairo_rectangle(cr, f.x0, f.y0, f.x1 - f.x0, f.y1 - f.y0);
    cairo_stroke(cr);

    /* The legend, in the corner of the plot area that hides the fewest points. */
    if (pn->n_series > 0) {
        double wl = 0;
        for (int s = 0; s < pn->n_series; s++)
            wl = fmax(wl, text_width(cv, pn->series[s].label, SZ_LEGEND, false, false));
        const double row = round(SZ_LEGEND * 1.5), lw = round(8 + 22 + 6 + wl + 8),
                     lh = row * pn->n_series + 8;
        const double cx[4] = {f.x1 - 8 - lw, f.x0 + 8, f.x1 - 8 - lw, f.x0 + 8};
        const double cy[4] = {f.y0 + 8, f.y0 + 8, f.y1 - 8 - lh, f.y1 - 8 - lh};
        int best = 0;
        int64_t least = INT64_MAX;
        for (int k = 0; k < 4; k++) {
            int64_t n = points_in(pn, &f, cx[k], cy[k], lw, lh);
            if (n < least) least = n, best = k;
        }
        const double lx = round(cx[best]), ly = round(cy[best]);
        cairo_rectangle(cr, lx, ly, lw, lh);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
        cairo_stroke(cr);
        cairo_set_line_width(cr, 2);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
        for (int s = 0; s < pn->n_series; s++) {
            const double yy = ly + 4 + row * s + round(row / 2);
            set_series_rgb(cr, &pn->series[s], s);
            if (pn->series[s].points) {
                cairo_new_path(cr); /* no line from the text's current point */
                cairo_arc(cr, lx + 19, yy, MC_PLOT_DOT + 0.5, 0, 2 * M_PI);
                cairo_fill(cr);
            } else {
                line(cr, lx + 8, yy, lx + 30, yy);
            }
            text(cv, lx + 36, yy, pn->series[s].label, SZ_LEGEND, false, 0, V_MIDDLE, 0, false,
                 INK);
        }
        cairo_set_line_width(cr, 1);
    }
}

void mc_plot_size(const mc_plot *p, int *w, int *h) {
    *w = PANEL_W * (p->n_panels > 0
                        ? (p->n_panels < MC_PLOT_MAX_PANELS ? p->n_panels : MC_PLOT_MAX_PANELS)
                        : 1);
    *h = PANEL_H + TITLE_H;
}

static void draw(canvas *cv, const mc_plot *p, int w, int h) {
    cairo_set_source_rgb(cv->cr, 1, 1, 1);
    cairo_paint(cv->cr);
    /* The title in bold, made smaller until it fits the width. */
    double size = SZ_TITLE;
    while (size > 8 && text_width(cv, p->title, size, true, false) > w - 20) size -= 0.5;
    text(cv, w / 2.0, TITLE_H / 2.0 + 2, p->title, size, true, 0.5, V_MIDDLE, 0, false, INK);
    for (int i = 0; i < p->n_panels && i < MC_PLOT_MAX_PANELS; i++)
        draw_panel(cv, &p->panels[i], (double)i * PANEL_W, TITLE_H);
}

/* ---- surfaces --------------------------------------------------------------------------------- */

const char *mc_plot_format_ext(int format) {
    return format == MC_FIG_PNG   ? "png"
           : format == MC_FIG_SVG ? "svg"
           : format == MC_FIG_PDF ? "pdf"
                                  : NULL;
}

/* The pango context for cr with the fixed font settings; fails when fontconfig has no DejaVu
 * Sans (it would otherwise substitute any font it has, or none). */
static mc_status make_context(cairo_t *cr, PangoContext **out, mc_error *err) {
    PangoContext *pc = pango_cairo_create_context(cr);
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_subpixel_order(fo, CAIRO_SUBPIXEL_ORDER_DEFAULT);
    pango_cairo_context_set_font_options(pc, fo);
    cairo_font_options_destroy(fo);
    pango_cairo_context_set_resolution(pc, 72);
    pango_context_set_round_glyph_positions(pc, FALSE);
    pango_context_set_language(pc, pango_language_from_string("en"));

    PangoFontDescription *d = pango_font_description_from_string(FONT_FAMILY);
    pango_font_description_set_absolute_size(d, 12 * PANGO_SCALE);
    PangoFont *font = pango_context_load_font(pc, d);
    pango_font_description_free(d);
    char got[128] = "";
    if (font) {
        PangoFontDescription *fd = pango_font_describe(font);
        const char *fam = pango_font_description_get_family(fd);
        mc_strlcpy(got, fam ? fam : "", sizeof got);
        pango_font_description_free(fd);
        g_object_unref(font);
    }
    if (strcasecmp(got, FONT_FAMILY) != 0) {
        g_object_unref(pc);
        if (!got[0])
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "figures: fontconfig finds no font at all; the figures need '%s' "
                           "(install the Debian package '%s')",
                           FONT_FAMILY, FONT_PACKAGE);
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "figures: fontconfig has no '%s' (it offers '%s' instead): install the "
                       "Debian package '%s'",
                       FONT_FAMILY, got, FONT_PACKAGE);
    }
    *out = pc;
    return MC_OK;
}

/* Paints p on surface (w x h units after scale) and finishes it. */
static mc_status paint(cairo_surface_t *surface, double scale, const mc_plot *p, int w, int h,
                       mc_error *err) {
    cairo_t *cr = cairo_create(surface);
    if (scale != 1) cairo_scale(cr, scale, scale);
    canvas cv = {.cr = cr};
    mc_status s = make_context(cr, &cv.pc, err);
    if (s == MC_OK) {
        draw(&cv, p, w, h);
        g_object_unref(cv.pc);
    }
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    if (s == MC_OK && cs != CAIRO_STATUS_SUCCESS)
        s = MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                    "figure '%s': cairo: %s", p->title, cairo_status_to_string(cs));
    return s;
}

/* Copies cairo's SVG text in[0..n) to out with every "surface<k>" id (and reference to it)
 * renumbered 1, 2, ... in order of appearance: cairo 1.16 names a surface by a counter global to
 * the process, so the same figure would otherwise differ with what was drawn before it. */
static void svg_renumber(bytes *out, const char *in, size_t n) {
    long seen[64];
    int n_seen = 0;
    size_t i = 0;
    while (i < n) {
        const char *q = memmem(in + i, n - i, "surface", 7);
        const size_t at = q ? (size_t)(q - in) : n;
        bytes_write(out, (const unsigned char *)in + i, (unsigned)(at - i));
        if (!q) break;
        size_t j = at + 7;
        long v = 0;
        while (j < n && j - at < 17 && in[j] >= '0' && in[j] <= '9')
            v = v * 10 + (in[j] - '0'), j++;
        const bool id = at > 0 && (in[at - 1] == '"' || in[at - 1] == '#') && j > at + 7 && j < n &&
                        in[j] == '"';
        int k = 0;
        while (id && k < n_seen && seen[k] != v) k++;
        if (!id || k == 64) {
            bytes_write(out, (const unsigned char *)q, 7);
            i = at + 7;
            continue;
        }
        if (k == n_seen) seen[n_seen++] = v;
        char num[32];
        mc_snprintf(num, sizeof num, "surface%d", k + 1);
        bytes_str(out, num);
        i = j;
    }
}

/* The final SVG from cairo's: surface ids renumbered (svg_renumber), and, because cairo's SVG
 * has no text elements (glyphs are outlines), the figure's title in <title> and every text it
 * shows in <desc>, right after the <svg> tag, so the file can be searched and read out by screen
 * readers. */
static mc_status svg_finish(const mc_plot *p, const bytes *in, bytes *out, mc_error *err) {
    const char *svg = in->p ? strstr((const char *)in->p, "<svg") : NULL;
    const char *gt = svg ? strchr(svg, '>') : NULL;
    if (!gt)
        return MC_FAIL(err, MC_ERR_INTERNAL, "figure '%s': cairo wrote no <svg> element", p->title);
    const size_t head = (size_t)(gt + 1 - (const char *)in->p);
    bytes_write(out, in->p, (unsigned)head);
    bytes_str(out, "\n<title>");
    bytes_xml(out, p->title);
    bytes_str(out, "</title>\n<desc>");
    for (int i = 0; i < p->n_panels && i < MC_PLOT_MAX_PANELS; i++) {
        const mc_plot_panel *pn = &p->panels[i];
        bytes_str(out, "\npanel: ");
        bytes_xml(out, pn->title);
        bytes_str(out, "\nx: ");
        bytes_xml(out, pn->xlabel);
        bytes_str(out, "\ny: ");
        bytes_xml(out, pn->ylabel);
        for (int s = 0; s < pn->n_series; s++) {
            bytes_str(out, "\nseries: ");
            bytes_xml(out, pn->series[s].label);
        }
        for (int m = 0; m < pn->n_markers && m < MC_PLOT_MAX_MARKERS; m++) {
            char at[64];
            mc_snprintf(at, sizeof at, " at x = %g", pn->markers[m].x);
            bytes_str(out, "\nmarker: ");
            bytes_xml(out, pn->markers[m].label);
            bytes_str(out, at);
        }
    }
    bytes_str(out, "\n</desc>");
    svg_renumber(out, (const char *)in->p + head, in->n - head);
    return out->oom ? MC_FAIL(err, MC_ERR_NOMEM, "out of memory drawing '%s'", p->title) : MC_OK;
}

/* The cairo surface a figure of w x h points is drawn on, for one format: PNG an image of scale
 * pixels per point, SVG and PDF streams into b (PDF with fixed dates, so equal figures have equal
 * bytes). The caller checks cairo_surface_status. */
static cairo_surface_t *surface_create(int format, int w, int h, int scale, const char *title,
                                       bytes *b) {
    if (format == MC_FIG_PNG)
        return cairo_image_surface_create(CAIRO_FORMAT_RGB24, w * scale, h * scale);
    if (format == MC_FIG_SVG) {
        cairo_surface_t *sf = cairo_svg_surface_create_for_stream(bytes_write, b, w, h);
        cairo_svg_surface_restrict_to_version(sf, CAIRO_SVG_VERSION_1_1);
        cairo_svg_surface_set_document_unit(sf, CAIRO_SVG_UNIT_USER);
        return sf;
    }
    cairo_surface_t *sf = cairo_pdf_surface_create_for_stream(bytes_write, b, w, h);
    cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_TITLE, title);
    cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATOR, "miclip");
    cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_CREATE_DATE, PDF_DATE);
    cairo_pdf_surface_set_metadata(sf, CAIRO_PDF_METADATA_MOD_DATE, PDF_DATE);
    return sf;
}

mc_status mc_plot_render(const mc_plot *p, int format, uint8_t **out, size_t *len, mc_error *err) {
    *out = NULL, *len = 0;
    if (!mc_plot_format_ext(format))
        return MC_FAIL(err, MC_ERR_ARG, "figure '%s': unknown format %d", p->title, format);
    int w = 0, h = 0;
    mc_plot_size(p, &w, &h);
    bytes b = {0};
    cairo_surface_t *surface = surface_create(format, w, h, MC_PLOT_PNG_SCALE, p->title, &b);
    mc_status s = MC_OK;
    cairo_status_t cs = cairo_surface_status(surface);
    if (cs != CAIRO_STATUS_SUCCESS)
        s = MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                    "figure '%s': cairo: %s", p->title, cairo_status_to_string(cs));
    if (s == MC_OK) s = paint(surface, format == MC_FIG_PNG ? MC_PLOT_PNG_SCALE : 1, p, w, h, err);
    if (s == MC_OK && format == MC_FIG_PNG) {
        cs = cairo_surface_write_to_png_stream(surface, bytes_write, &b);
        if (cs != CAIRO_STATUS_SUCCESS)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "figure '%s': PNG: %s", p->title,
                        cairo_status_to_string(cs));
    }
    cairo_surface_finish(surface); /* SVG and PDF write their documents here */
    cs = cairo_surface_status(surface);
    if (s == MC_OK && cs != CAIRO_STATUS_SUCCESS)
        s = MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY || b.oom ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                    "figure '%s': cairo: %s", p->title, cairo_status_to_string(cs));
    cairo_surface_destroy(surface);
    if (s == MC_OK && b.oom) s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory drawing '%s'", p->title);
    if (s == MC_OK && format == MC_FIG_SVG) {
        bytes a = {0};
        s = svg_finish(p, &b, &a, err);
        free(b.p);
        b = a;
    }
    if (s != MC_OK) {
        free(b.p);
        return s;
    }
    *out = b.p, *len = b.n;
    return MC_OK;
}

mc_status mc_plot_write(const mc_plot *p, int format, const char *path, mc_error *err) {
    uint8_t *data = NULL;
    size_t n = 0;
    MC_TRY(mc_plot_render(p, format, &data, &n, err));
    mc_status s = mc_write_text_file_if_changed(path, (const char *)data, n, err);
    free(data);
    return s;
}

/* ---- image grids with heat maps (mc_grid_render_png) ----------------------------------------- */

#define GRID_MARGIN 8
#define GRID_GAP 6
#define GRID_TITLE_H 26
#define GRID_CAPTION_H 30
#define SZ_GRID_TITLE 13.0
#define SZ_CAPTION 10.0

/* The heat colour of t in [0, 1]: dark blue -> red -> yellow, as premultiplied ARGB with alpha
 * rising with t, so cold patches leave the image visible. */
static uint32_t heat_argb(double t) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    static const double stop[4][3] = {
        {0.05, 0.05, 0.45}, {0.75, 0.05, 0.15}, {1.0, 0.55, 0.0}, {1.0, 1.0, 0.3}};
    const double f = t * 3;
    const int i = f >= 3 ? 2 : (int)f;
    const double u = f - i;
    double c[3];
    for (int k = 0; k < 3; k++) c[k] = stop[i][k] + u * (stop[i + 1][k] - stop[i][k]);
    const double a = 0.15 + 0.6 * t;
    uint32_t A = (uint32_t)lround(a * 255);
    uint32_t R = (uint32_t)lround(c[0] * a * 255), G = (uint32_t)lround(c[1] * a * 255),
             B = (uint32_t)lround(c[2] * a * 255);
    return A << 24 | R << 16 | G << 8 | B;
}

/* Paints src (an image surface of sw x sh pixels) scaled into the square (x, y, edge). */
static void paint_scaled(cairo_t *cr, cairo_surface_t *src, int sw, int sh, double x, double y,
                         double edge, cairo_filter_t filter) {
    cairo_save(cr);
    cairo_rectangle(cr, x, y, edge, edge);
    cairo_clip(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, edge / sw, edge / sh);
    cairo_set_source_surface(cr, src, 0, 0);
    cairo_pattern_t *pat = cairo_get_source(cr);
    cairo_pattern_set_filter(pat, filter);
    cairo_pattern_set_extend(pat, CAIRO_EXTEND_PAD);
    cairo_paint(cr);
    cairo_restore(cr);
}

void mc_grid_size(const mc_grid *g, int *w, int *h) {
    const int cols = g->cols > 0 ? g->cols : 1, rows = (g->n_tiles + cols - 1) / cols;
    *w = 2 * GRID_MARGIN + cols * g->tile + (cols - 1) * GRID_GAP;
    *h = 2 * GRID_MARGIN + GRID_TITLE_H + (rows > 0 ? rows : 1) * (g->tile + GRID_CAPTION_H);
}

void mc_grid_tile_origin(const mc_grid *g, int i, int *x, int *y) {
    const int cols = g->cols > 0 ? g->cols : 1;
    *x = GRID_MARGIN + (i % cols) * (g->tile + GRID_GAP);
    *y = GRID_MARGIN + GRID_TITLE_H + (i / cols) * (g->tile + GRID_CAPTION_H);
}

/* Draws g onto cr (w x h units): the same calls for every surface, so PNG, SVG and PDF agree. */
static mc_status grid_paint(cairo_t *cr, const mc_grid *g, mc_error *err) {
    canvas cv = {.cr = cr};
    mc_status s = make_context(cr, &cv.pc, err);
    if (s == MC_OK) {
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_paint(cr);
        text(&cv, GRID_MARGIN, GRID_MARGIN + GRID_TITLE_H / 2.0, g->title, SZ_GRID_TITLE, true, 0,
             V_MIDDLE, 0, false, INK);
    }
    for (int i = 0; s == MC_OK && i < g->n_tiles; i++) {
        const mc_grid_tile *t = &g->tiles[i];
        int xi = 0, yi = 0;
        mc_grid_tile_origin(g, i, &xi, &yi);
        const double x = xi, y = yi;
        if (t->rgb && t->w > 0 && t->h > 0) {
            /* cairo's RGB24 is one native-endian uint32 per pixel (x, R, G, B). */
            cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, t->w, t->h);
            cairo_surface_flush(img);
            uint8_t *px = cairo_image_surface_get_data(img);
            const int stride = cairo_image_surface_get_stride(img);
            for (int yy = 0; px && yy < t->h; yy++)
                for (int xx = 0; xx < t->w; xx++) {
                    const uint8_t *p = t->rgb + ((size_t)yy * t->w + xx) * 3;
                    ((uint32_t *)(px + (size_t)yy * stride))[xx] =
                        (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
                }
            cairo_surface_mark_dirty(img);
            paint_scaled(cr, img, t->w, t->h, x, y, g->tile, CAIRO_FILTER_GOOD);
            cairo_surface_destroy(img);
        }
        if (t->heat && t->hw > 0 && t->hh > 0) {
            float mx = g->heat_max;
            if (!(mx > 0)) {
                mx = 0;
                for (int k = 0; k < t->hw * t->hh; k++) mx = t->heat[k] > mx ? t->heat[k] : mx;
            }
            cairo_surface_t *hs = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, t->hw, t->hh);
            cairo_surface_flush(hs);
            uint8_t *px = cairo_image_surface_get_data(hs);
            const int stride = cairo_image_surface_get_stride(hs);
            for (int yy = 0; px && yy < t->hh; yy++)
                for (int xx = 0; xx < t->hw; xx++) {
                    const float v = t->heat[(size_t)yy * t->hw + xx];
                    ((uint32_t *)(px + (size_t)yy * stride))[xx] =
                        heat_argb(mx > 0 && v > 0 ? v / mx : 0);
                }
            cairo_surface_mark_dirty(hs);
            paint_scaled(cr, hs, t->hw, t->hh, x, y, g->tile,
                         t->smooth ? CAIRO_FILTER_BILINEAR : CAIRO_FILTER_NEAREST);
            cairo_surface_destroy(hs);
        }
        cairo_set_source_rgb(cr, FRAME[0], FRAME[1], FRAME[2]);
        cairo_set_line_width(cr, 1);
        cairo_rectangle(cr, x + 0.5, y + 0.5, g->tile - 1, g->tile - 1);
        cairo_stroke(cr);
        for (int l = 0; l < 2; l++) {
            const char *cap = l ? t->caption2 : t->caption;
            /* Captions are cut to the tile's width at a character boundary. */
            char buf[sizeof t->caption];
            mc_strlcpy(buf, cap, sizeof buf);
            for (size_t n = strlen(buf);
                 n > 0 && text_width(&cv, buf, SZ_CAPTION, false, false) > g->tile; n--) {
                while (n > 0 && ((unsigned char)buf[n - 1] & 0xC0) == 0x80) n--;
                if (n > 0) buf[n - 1] = '\0';
            }
            text(&cv, x, y + g->tile + 3 + l * 13, buf, SZ_CAPTION, false, 0, V_TOP, 0, false, INK);
        }
    }
    if (cv.pc) g_object_unref(cv.pc);
    cairo_status_t cs = cairo_status(cr);
    if (s == MC_OK && cs != CAIRO_STATUS_SUCCESS)
        s = MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                    "grid '%s': cairo: %s", g->title, cairo_status_to_string(cs));
    return s;
}

mc_status mc_grid_render(const mc_grid *g, int format, uint8_t **out, size_t *len, mc_error *err) {
    *out = NULL, *len = 0;
    if (!mc_plot_format_ext(format))
        return MC_FAIL(err, MC_ERR_ARG, "grid '%s': unknown format %d", g->title, format);
    if (g->tile < 8 || g->tile > 1024 || g->n_tiles < 0 || g->n_tiles > 256)
        return MC_FAIL(err, MC_ERR_ARG, "grid '%s': tile %d px or %d tiles out of range", g->title,
                       g->tile, g->n_tiles);
    int w = 0, h = 0;
    mc_grid_size(g, &w, &h);
    bytes b = {0};
    cairo_surface_t *surface = surface_create(format, w, h, 1, g->title, &b);
    cairo_status_t cs = cairo_surface_status(surface);
    mc_status s = cs == CAIRO_STATUS_SUCCESS
                      ? MC_OK
                      : MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                                "grid '%s': cairo: %s", g->title, cairo_status_to_string(cs));
    if (s == MC_OK) {
        cairo_t *cr = cairo_create(surface);
        s = grid_paint(cr, g, err);
        cairo_destroy(cr);
    }
    if (s == MC_OK && format == MC_FIG_PNG) {
        cairo_surface_flush(surface);
        cs = cairo_surface_write_to_png_stream(surface, bytes_write, &b);
        if (cs != CAIRO_STATUS_SUCCESS)
            s = MC_FAIL(err, MC_ERR_INTERNAL, "grid '%s': PNG: %s", g->title,
                        cairo_status_to_string(cs));
    }
    cairo_surface_finish(surface); /* SVG and PDF write their documents here */
    cs = cairo_surface_status(surface);
    if (s == MC_OK && cs != CAIRO_STATUS_SUCCESS)
        s = MC_FAIL(err, cs == CAIRO_STATUS_NO_MEMORY ? MC_ERR_NOMEM : MC_ERR_INTERNAL,
                    "grid '%s': cairo: %s", g->title, cairo_status_to_string(cs));
    cairo_surface_destroy(surface);
    if (s == MC_OK && b.oom)
        s = MC_FAIL(err, MC_ERR_NOMEM, "out of memory drawing grid '%s'", g->title);
    if (s != MC_OK) {
        free(b.p);
        return s;
    }
    *out = b.p, *len = b.n;
    return MC_OK;
}

mc_status mc_grid_render_png(const mc_grid *g, uint8_t **out, size_t *len, mc_error *err) {
    return mc_grid_render(g, MC_FIG_PNG, out, len, err);
}
