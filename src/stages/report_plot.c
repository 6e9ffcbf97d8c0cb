/* report_plot.c - line plots for the report's figures (report_internal.h): one layout computed
 * once, drawn by two back ends. The SVG back end writes the primitives as SVG elements; the
 * raster back end draws them into an RGB buffer (lines by Bresenham, text with the 5x7 bitmap
 * font below, 1 pixel per font pixel; the title at 2x when it fits). Text widths are 6 px per character in
 * both (SVG uses a 10 px monospace font), so the layouts match. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/buf.h"
#include "miclip/checked.h"
#include "report_internal.h"

#define PANEL_W 520
#define PANEL_H 340
#define TITLE_H 32
#define M_LEFT 70
#define M_RIGHT 16
#define M_TOP 26
#define M_BOTTOM 46
#define CHAR_W 6

/* The 5x7 glyphs of printable ASCII (32..126): 7 rows, bit 4 the leftmost column. */
static const uint8_t font5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* space ! */
    {0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}, /* " # */
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}, {0x19, 0x19, 0x02, 0x04, 0x08, 0x13, 0x13}, /* $ % */
    {0x08, 0x14, 0x14, 0x08, 0x15, 0x12, 0x0D}, {0x04, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, /* & ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ( ) */
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}, {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}, /* * + */
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}, /* , - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}, /* . / */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* 0 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}, /* 2 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}, /* 4 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 6 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}, /* 8 9 */
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}, {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08}, /* : ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}, /* < = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* > ? */
    {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E}, {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, /* @ A */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}, {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}, /* B C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}, /* D E */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}, /* F G */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, /* H I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}, {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* J K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}, {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}, /* L M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* N O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}, /* P Q */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}, {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}, /* R S */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}, /* T U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}, /* V W */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}, {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}, /* X Y */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}, {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}, /* Z [ */
    {0x10, 0x10, 0x08, 0x04, 0x02, 0x01, 0x01}, {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}, /* \ ] */
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}, /* ^ _ */
    {0x08, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F}, /* ` a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E}, /* b c */
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E}, /* d e */
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* f g */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E}, /* h i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* j k */
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11}, /* l m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E}, /* n o */
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}, {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01}, /* p q */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E}, /* r s */
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D}, /* t u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A}, /* v w */
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E}, /* x y */
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* z { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* | } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00},                                             /* ~ */
};

/* Series colours (RGB), distinguishable and printable. */
static const uint8_t palette[10][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

/* ---- the drawing interface: both back ends implement these four primitives ------------------ */
typedef enum { ANCHOR_START, ANCHOR_MIDDLE, ANCHOR_END } anchor;

typedef struct canvas canvas;
struct canvas {
    /* A straight segment, width 1 or 2 px. */
    void (*line)(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t *rgb, int width);
    /* A polyline of n points (NaN y breaks it). */
    void (*poly)(canvas *cv, const double *px, const double *py, int64_t n, const uint8_t *rgb);
    /* Text whose baseline-box (7 px tall at scale 1) has its vertical middle at y; anchor is
     * horizontal; vertical text reads bottom-to-top, centred at (x, y). */
    void (*text)(canvas *cv, double x, double y, const char *s, anchor a, int scale, bool vertical);
    /* A rectangle's outline, optionally filled white. */
    void (*rect)(canvas *cv, double x, double y, double w, double h, const uint8_t *stroke, bool fill);
    /* Back-end state. */
    mc_buf *svg;
    uint8_t *rgb;
    int w, h;
};

static const uint8_t BLACK[3] = {0, 0, 0}, GREY[3] = {200, 200, 200};

/* ---- SVG back end --------------------------------------------------------------------------- */
static void svg_line(canvas *cv, double x0, double y0, double x1, double y1, const uint8_t *c, int width) {
    mc_buf_printf(cv->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%02x%02x%02x\" stroke-width=\"%d\"/>\n",
                  x0, y0, x1, y1, c[0], c[1], c[2], width);
}

static void svg_poly(canvas *cv, const double *px, const double *py, int64_t n, const uint8_t *c) {
    int64_t i = 0;
    while (i < n) {
        while (i < n && isnan(py[i])) i++;
        if (i >= n) break;
        mc_buf_printf(cv->svg, "<polyline fill=\"none\" stroke=\"#%02x%02x%02x\" stroke-width=\"2\" points=\"", c[0], c[1], c[2]);
        for (bool first = true; i < n && !isnan(py[i]); i++, first = false)
            mc_buf_printf(cv->svg, "%s%.1f,%.1f", first ? "" : " ", px[i], py[i]);
        mc_buf_printf(cv->svg, "\"/>\n");
    }
}

static void svg_escaped(mc_buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<') mc_buf_printf(b, "&lt;");
        else if (*s == '>') mc_buf_printf(b, "&gt;");
        else if (*s == '&') mc_buf_printf(b, "&amp;");
        else if (*s == '"') mc_buf_printf(b, "&quot;");
        else if ((unsigned char)*s >= 32 && *s != 127) mc_buf_printf(b, "%c", *s);
    }
}

static void svg_text(canvas *cv, double x, double y, const char *s, anchor a, int scale, bool vertical) {
    const char *an = a == ANCHOR_START ? "start" : a == ANCHOR_MIDDLE ? "middle" : "end";
    /* dominant-baseline central puts the text's middle at y, as the bitmap text does. */
    mc_buf_printf(cv->svg, "<text x=\"%.1f\" y=\"%.1f\" font-family=\"monospace\" font-size=\"%d\" text-anchor=\"%s\" "
                  "dominant-baseline=\"central\"", x, y, 10 * scale, an);
    if (vertical) mc_buf_printf(cv->svg, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
    mc_buf_printf(cv->svg, ">");
    svg_escaped(cv->svg, s);
    mc_buf_printf(cv->svg, "</text>\n");
}

static void svg_rect(canvas *cv, double x, double y, double w, double h, const uint8_t *c, bool fill) {
    mc_buf_printf(cv->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#%02x%02x%02x\"/>\n",
                  x, y, w, h, fill ? "white" : "none", c[0], c[1], c[2]);
}

/* ---- raster back end ------------------------------------------------------------------------ */
static void put(canvas *cv, int x, int y, const uint8_t *c) {
    if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
    uint8_t *p = cv->rgb + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
    p[0] = c[0], p[1] = c[1], p[2] = c[2];
}

static void ras_line(canvas *cv, double fx0, double fy0, double fx1, double fy1, const uint8_t *c, int width) {
    int x0 = (int)lround(fx0), y0 = (int)lround(fy0), x1 = (int)lround(fx1), y1 = (int)lround(fy1);
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy;
    for (;;) {
        put(cv, x0, y0, c);
        if (width > 1) put(cv, x0 + 1, y0, c), put(cv, x0, y0 + 1, c), put(cv, x0 + 1, y0 + 1, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

static void ras_poly(canvas *cv, const double *px, const double *py, int64_t n, const uint8_t *c) {
    for (int64_t i = 0; i + 1 < n; i++)
        if (!isnan(py[i]) && !isnan(py[i + 1])) ras_line(cv, px[i], py[i], px[i + 1], py[i + 1], c, 2);
    if (n == 1 && !isnan(py[0])) ras_line(cv, px[0] - 2, py[0], px[0] + 2, py[0], c, 2);
}

static void ras_text(canvas *cv, double x, double y, const char *s, anchor a, int scale, bool vertical) {
    const int len = (int)strlen(s), adv = CHAR_W * scale, width = len * adv - scale;
    double start = a == ANCHOR_START ? 0 : a == ANCHOR_MIDDLE ? -width / 2.0 : -width;
    for (int i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        const uint8_t *g = font5x7[ch >= 32 && ch < 127 ? ch - 32 : '?' - 32];
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++) {
                if (!(g[r] >> (4 - col) & 1)) continue;
                for (int a1 = 0; a1 < scale; a1++)
                    for (int b1 = 0; b1 < scale; b1++) {
                        /* Offsets along the text (u) and down the glyph (v). */
                        double u = start + i * adv + col * scale + a1, v = -3.5 * scale + r * scale + b1;
                        int px = vertical ? (int)lround(x + v) : (int)lround(x + u);
                        int py = vertical ? (int)lround(y - u) : (int)lround(y + v);
                        put(cv, px, py, BLACK);
                    }
            }
    }
}

static void ras_rect(canvas *cv, double x, double y, double w, double h, const uint8_t *c, bool fill) {
    static const uint8_t WHITE[3] = {255, 255, 255};
    if (fill)
        for (int yy = (int)lround(y); yy <= (int)lround(y + h); yy++)
            for (int xx = (int)lround(x); xx <= (int)lround(x + w); xx++) put(cv, xx, yy, WHITE);
    ras_line(cv, x, y, x + w, y, c, 1), ras_line(cv, x + w, y, x + w, y + h, c, 1);
    ras_line(cv, x + w, y + h, x, y + h, c, 1), ras_line(cv, x, y + h, x, y, c, 1);
}

/* ---- layout ----------------------------------------------------------------------------------- */

/* A tick step of 1, 2 or 5 x 10^k giving about `want` intervals over range. */
static double nice_step(double range, int want) {
    double raw = range / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void tick_label(char *out, size_t cap, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 10) dec = 10;
    if (fabs(v) < step * 1e-9) v = 0; /* no "-0" */
    mc_snprintf(out, cap, "%.*f", dec, v);
}

static void draw_panel(canvas *cv, const mc_plot_panel *pn, double ox, double oy) {
    const double x0 = ox + M_LEFT, x1 = ox + PANEL_W - M_RIGHT, y0 = oy + M_TOP, y1 = oy + PANEL_H - M_BOTTOM;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int s = 0; s < pn->n_series; s++)
        for (int64_t i = 0; i < pn->series[s].n; i++) {
            double x = pn->series[s].x[i], y = pn->series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
        }
    if (!(xmin <= xmax)) xmin = 0, xmax = 1, ymin = 0, ymax = 1; /* no data: empty axes */
    if (xmax - xmin <= 0) xmin -= 0.5, xmax += 0.5;
    if (ymax - ymin <= 0) ymin -= fabs(ymin) * 0.1 + 0.5, ymax += fabs(ymax) * 0.1 + 0.5;
    const double ypad = (ymax - ymin) * 0.05;
    ymin -= ypad, ymax += ypad;
    const double sxs = (x1 - x0) / (xmax - xmin), sys = (y1 - y0) / (ymax - ymin);
    /* Frame, ticks and grid. */
    cv->rect(cv, x0, y0, x1 - x0, y1 - y0, BLACK, false);
    char lab[64];
    const double xs = nice_step(xmax - xmin, 6), ys = nice_step(ymax - ymin, 5);
    for (double t = ceil(xmin / xs) * xs; t <= xmax + xs * 1e-9; t += xs) {
        double px = x0 + (t - xmin) * sxs;
        cv->line(cv, px, y1, px, y1 + 4, BLACK, 1);
        tick_label(lab, sizeof lab, t, xs);
        cv->text(cv, px, y1 + 12, lab, ANCHOR_MIDDLE, 1, false);
    }
    for (double t = ceil(ymin / ys) * ys; t <= ymax + ys * 1e-9; t += ys) {
        double py = y1 - (t - ymin) * sys;
        if (py > y0 + 1 && py < y1 - 1) cv->line(cv, x0 + 1, py, x1 - 1, py, GREY, 1);
        cv->line(cv, x0 - 4, py, x0, py, BLACK, 1);
        tick_label(lab, sizeof lab, t, ys);
        cv->text(cv, x0 - 7, py, lab, ANCHOR_END, 1, false);
    }
    cv->text(cv, (x0 + x1) / 2, y1 + 30, pn->xlabel, ANCHOR_MIDDLE, 1, false);
    cv->text(cv, ox + 12, (y0 + y1) / 2, pn->ylabel, ANCHOR_MIDDLE, 1, true);
    cv->text(cv, (x0 + x1) / 2, oy + M_TOP / 2.0, pn->title, ANCHOR_MIDDLE, 1, false);
    /* The series, in data order. */
    for (int s = 0; s < pn->n_series; s++) {
        const mc_plot_series *se = &pn->series[s];
        double *px = malloc((size_t)(se->n + 1) * sizeof *px), *py = malloc((size_t)(se->n + 1) * sizeof *py);
        if (!px || !py) {
            free(px), free(py);
            continue;
        }
        for (int64_t i = 0; i < se->n; i++) {
            px[i] = x0 + (se->x[i] - xmin) * sxs;
            py[i] = isfinite(se->y[i]) && isfinite(se->x[i]) ? y1 - (se->y[i] - ymin) * sys : NAN;
        }
        cv->poly(cv, px, py, se->n, palette[s % 10]);
        free(px), free(py);
    }
    /* The legend in the top-right corner. */
    if (pn->n_series > 0) {
        int maxlen = 0;
        for (int s = 0; s < pn->n_series; s++) {
            int l = (int)strlen(pn->series[s].label);
            maxlen = l > maxlen ? l : maxlen;
        }
        const double lw = 30 + maxlen * CHAR_W, lh = 8 + 14 * pn->n_series, lx = x1 - lw - 6, ly = y0 + 6;
        cv->rect(cv, lx, ly, lw, lh, BLACK, true);
        for (int s = 0; s < pn->n_series; s++) {
            double yy = ly + 11 + 14 * s;
            cv->line(cv, lx + 5, yy, lx + 21, yy, palette[s % 10], 2);
            cv->text(cv, lx + 26, yy, pn->series[s].label, ANCHOR_START, 1, false);
        }
    }
}

void mc_plot_size(const mc_plot *p, int *w, int *h) {
    *w = PANEL_W * (p->n_panels > 0 ? p->n_panels : 1);
    *h = PANEL_H + TITLE_H;
}

static void draw(canvas *cv, const mc_plot *p) {
    /* The title at 2x when it fits the width, else at 1x. */
    const int scale = (int)strlen(p->title) * CHAR_W * 2 <= cv->w - 20 ? 2 : 1;
    cv->text(cv, cv->w / 2.0, TITLE_H / 2.0, p->title, ANCHOR_MIDDLE, scale, false);
    for (int i = 0; i < p->n_panels && i < MC_PLOT_MAX_PANELS; i++) draw_panel(cv, &p->panels[i], (double)i * PANEL_W, TITLE_H);
}

mc_status mc_plot_svg(const mc_plot *p, char **out, size_t *len, mc_error *err) {
    mc_buf b = {0};
    canvas cv = {.line = svg_line, .poly = svg_poly, .text = svg_text, .rect = svg_rect, .svg = &b};
    mc_plot_size(p, &cv.w, &cv.h);
    mc_buf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                  "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n<title>", cv.w, cv.h, cv.w, cv.h);
    svg_escaped(&b, p->title);
    mc_buf_printf(&b, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", cv.w, cv.h);
    draw(&cv, p);
    mc_buf_printf(&b, "</svg>\n");
    if (b.oom) {
        mc_buf_free(&b);
        return MC_FAIL(err, MC_ERR_NOMEM, "out of memory drawing '%s'", p->title);
    }
    *out = b.p, *len = b.n;
    return MC_OK;
}

mc_status mc_plot_raster(const mc_plot *p, uint8_t **rgb, int *w, int *h, mc_error *err) {
    canvas cv = {.line = ras_line, .poly = ras_poly, .text = ras_text, .rect = ras_rect};
    mc_plot_size(p, &cv.w, &cv.h);
    cv.rgb = mc_alloc_array((size_t)cv.w * (size_t)cv.h, 3);
    if (!cv.rgb) return MC_FAIL(err, MC_ERR_NOMEM, "out of memory drawing '%s'", p->title);
    memset(cv.rgb, 255, (size_t)cv.w * (size_t)cv.h * 3);
    draw(&cv, p);
    *rgb = cv.rgb, *w = cv.w, *h = cv.h;
    return MC_OK;
}
