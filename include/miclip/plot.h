/* plot.h - line-plot and scatter figures (the report's training curves, its t-SNE) drawn with cairo and pango.
 *
 * A figure is a title over one or more panels side by side; a panel holds line series (x, y
 * arrays borrowed from the caller), axes with ticks at "nice" values (1/2/5 x 10^k, or decades
 * on a log axis), a title, axis labels (the y label rotated), a legend and optional vertical
 * marker lines with a label (e.g. "AuxK on"). One drawing routine renders it onto a cairo
 * surface, so PNG, SVG and PDF show the same layout; text is DejaVu Sans through pango
 * (fontconfig), antialiased, with hinting off so every format places glyphs alike.
 *
 * Determinism: the same figure gives the same bytes in every format, in one process and across
 * runs (PDF: a fixed CreationDate; SVG: cairo's ids count from 1 per document). A missing
 * "DejaVu Sans" font is an error naming the Debian package (fonts-dejavu-core), never a
 * silent substitute.
 *
 * Ownership: an mc_plot and its series arrays belong to the caller and are only read here.
 * Thread safety: call from one thread at a time (pango's default font map is per thread, the
 * fontconfig set shared).
 */
#ifndef MICLIP_PLOT_H
#define MICLIP_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/config.h"
#include "miclip/status.h"

#define MC_PLOT_MAX_SERIES 16
#define MC_PLOT_MAX_PANELS 2
#define MC_PLOT_MAX_MARKERS 4
/* PNG pixels per SVG/PDF unit (1 unit = 1 pt in the PDF). */
#define MC_PLOT_PNG_SCALE 2

typedef struct {
    char label[64];
    const double *x, *y; /* borrowed, [n]; a non-finite value breaks the line */
    int64_t n;
    bool points;  /* a scatter: each finite point a filled dot (radius MC_PLOT_DOT), no line */
    bool own_rgb; /* draw in rgb (0..255) instead of the palette's colour s */
    uint8_t rgb[3];
} mc_plot_series;
#define MC_PLOT_DOT 2.5

/* A vertical line across a panel at data x, dashed grey, with a short label along it. */
typedef struct {
    double x;
    char label[48];
} mc_plot_marker;

typedef enum {
    MC_PLOT_Y_AUTO =
        0, /* log when every finite y > 0 and max/min >= MC_PLOT_LOG_RATIO, else linear */
    MC_PLOT_Y_LINEAR,
    MC_PLOT_Y_LOG, /* values <= 0 are not drawn */
} mc_plot_yscale;
#define MC_PLOT_LOG_RATIO 30.0

typedef struct {
    char title[128], xlabel[64], ylabel[64];
    int n_series;
    mc_plot_series series[MC_PLOT_MAX_SERIES];
    mc_plot_yscale yscale; /* zero (AUTO) by default */
    /* Hook for events along x (the SAE's AuxK switching on, a learning-rate change): markers
     * outside the panel's x range are not drawn. */
    int n_markers;
    mc_plot_marker markers[MC_PLOT_MAX_MARKERS];
} mc_plot_panel;

typedef struct {
    char title[160];
    int n_panels;
    mc_plot_panel panels[MC_PLOT_MAX_PANELS];
} mc_plot;

/* The figure's size in SVG/PDF units (the PNG is MC_PLOT_PNG_SCALE times larger). */
void mc_plot_size(const mc_plot *p, int *w, int *h);
/* "png", "svg" or "pdf" for an mc_figure_format; NULL for anything else. */
const char *mc_plot_format_ext(int format);
/* Renders p in format (mc_figure_format) into *out (malloc'd, caller frees), *len bytes. */
mc_status mc_plot_render(const mc_plot *p, int format, uint8_t **out, size_t *len, mc_error *err);
/* Renders p and writes it to path atomically (mc_write_text_file: path's folder is created, the
 * bytes go to a temporary beside it that is renamed over path); a file that already holds these
 * bytes is left untouched (mc_write_text_file_if_changed). */
mc_status mc_plot_write(const mc_plot *p, int format, const char *path, mc_error *err);

/* ---- image grids ------------------------------------------------------------------------------
 * A grid of images, each with an optional heat map drawn over it (a unit's activation per patch
 * or per position), a caption of two lines under each tile and a title: the report's per-unit
 * evidence and the attention maps. Drawn with cairo (PNG at 1 px per unit, SVG, PDF); the same
 * grid gives the same bytes. */
typedef struct {
    const uint8_t *rgb; /* borrowed, w * h * 3 (R, G, B rows top to bottom); NULL: no image */
    int w, h;
    const float *heat; /* borrowed, [hh, hw] row-major; NULL: no heat map */
    int hw, hh;
    bool smooth; /* upsample the heat bilinearly (a ResNet map); else as blocks (ViT patches) */
    char caption[96], caption2[96];
} mc_grid_tile;
typedef struct {
    char title[200];
    int n_tiles, cols, tile; /* tile: a tile's edge in px (8..1024); at most 256 tiles */
    const mc_grid_tile *tiles;
    float heat_max; /* the value drawn at full heat, shared by the tiles; <= 0: each tile's max.
                       Values <= 0 are drawn cold. */
} mc_grid;
/* The PNG's size in px, and the top-left pixel of tile i (its captions lie below the tile). */
void mc_grid_size(const mc_grid *g, int *w, int *h);
void mc_grid_tile_origin(const mc_grid *g, int i, int *x, int *y);
/* Renders g in format (mc_figure_format) into *out (malloc'd, caller frees), *len bytes: a PNG at
 * 1 px per unit, or an SVG / PDF of the same units from the same drawing calls (images and heat
 * maps embedded at their own resolution). */
mc_status mc_grid_render(const mc_grid *g, int format, uint8_t **out, size_t *len, mc_error *err);
/* mc_grid_render(g, MC_FIG_PNG, ...). */
mc_status mc_grid_render_png(const mc_grid *g, uint8_t **out, size_t *len, mc_error *err);
#endif
