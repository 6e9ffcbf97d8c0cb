/* test_plot.c - figures through cairo and pango (src/plot): a two-panel figure (a log-scale
 * panel with a marker, a NaN gap) in PNG, SVG and PDF.
 *   PNG: decodes (mc_image_load) at MC_PLOT_PNG_SCALE x the figure size; the series colours are
 *        drawn inside the plot areas, nowhere else is blank only.
 *   SVG: well-formed XML with the title and one data path per series (check_svg.py).
 *   PDF: starts with %PDF; pdftotext finds the title, the legend and the marker label.
 *   Determinism: every format rendered twice gives the same bytes; writing goes through a
 *   temporary (no stray files left).
 * With the argument `nofont` (run with FONTCONFIG_FILE naming a configuration without fonts),
 * checks that rendering fails with the one line naming the Debian font package. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/plot.h"
#include "test_util.h"

#define N 300

static double xs[N], ya[N], yb[N], yc[N], la[N], lb[N];

static void make_plot(mc_plot *p) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < N; i++) {
        xs[i] = i + 1;
        ya[i] = 2.0 - 1.5 * i / (N - 1.0); /* a falling line from 2 to 0.5 */
        yb[i] = 1.2 + 0.3 * sin(i / 20.0);
        yc[i] = i >= 100 && i < 120 ? NAN : 0.9 + 0.002 * i; /* a gap */
        la[i] = 3.0 * exp(-i / 30.0) + 1e-3;                 /* three decades: log scale */
        lb[i] = 2.0 * exp(-i / 45.0) + 2e-3;
    }
    mc_snprintf(p->title, sizeof p->title, "SAE training: layer 3 (gjpqy descenders)");
    p->n_panels = 2;
    mc_plot_panel *a = &p->panels[0], *b = &p->panels[1];
    mc_snprintf(a->title, sizeof a->title, "linear panel");
    mc_snprintf(a->xlabel, sizeof a->xlabel, "step");
    mc_snprintf(a->ylabel, sizeof a->ylabel, "InfoNCE loss");
    const double *ys[3] = {ya, yb, yc};
    for (int s = 0; s < 3; s++) {
        mc_plot_series *se = &a->series[a->n_series++];
        mc_snprintf(se->label, sizeof se->label, "seed %d", s);
        se->x = xs, se->y = ys[s], se->n = N;
    }
    mc_snprintf(b->title, sizeof b->title, "log panel");
    mc_snprintf(b->xlabel, sizeof b->xlabel, "step");
    mc_snprintf(b->ylabel, sizeof b->ylabel, "loss");
    b->series[0] = (mc_plot_series){.label = "seed 0", .x = xs, .y = la, .n = N};
    b->series[1] = (mc_plot_series){.label = "seed 1", .x = xs, .y = lb, .n = N};
    b->n_series = 2;
    b->n_markers = 1;
    b->markers[0].x = 80;
    mc_snprintf(b->markers[0].label, sizeof b->markers[0].label, "AuxK on");
}

static const char *ext[3] = {"png", "svg", "pdf"};

/* Pixels within tol of rgb in rows [y0, y1) and columns [x0, x1). */
static long count_colour(const mc_image *im, int x0, int x1, int y0, int y1, int r, int g, int b,
                         int tol) {
    long k = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *q = im->data + ((size_t)y * (size_t)im->w + (size_t)x) * 3;
            k += abs(q[0] - r) <= tol && abs(q[1] - g) <= tol && abs(q[2] - b) <= tol;
        }
    return k;
}

static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    return pclose(f);
}

int main(int argc, char **argv) {
    mc_plot p;
    make_plot(&p);
    mc_error err = {0};
    if (argc > 1 && strcmp(argv[1], "nofont") == 0) {
        uint8_t *buf = NULL;
        size_t len = 0;
        mc_status s = mc_plot_render(&p, MC_FIG_PNG, &buf, &len, &err);
        CHECK_MSG(s == MC_ERR_UNSUPPORTED && strstr(err.msg, "fonts-dejavu-core") &&
                      strstr(err.msg, "DejaVu Sans"),
                  "no font: status %d, '%s'", s, err.msg);
        printf("without fonts: %s\n", err.msg);
        free(buf);
        return TEST_SUMMARY();
    }
    int w = 0, h = 0;
    mc_plot_size(&p, &w, &h);

    /* Determinism: two renders of every format, byte for byte. */
    for (int f = 0; f < 3; f++) {
        uint8_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_MSG(mc_plot_render(&p, f, &a, &na, &err) == MC_OK, "%s", err.msg);
        CHECK_MSG(mc_plot_render(&p, f, &b, &nb, &err) == MC_OK, "%s", err.msg);
        CHECK_MSG(a && b && na == nb && na > 1000 && memcmp(a, b, na) == 0,
                  "%s: two renders differ (%zu, %zu bytes)", ext[f], na, nb);
        if (a && b && (na != nb || memcmp(a, b, na) != 0)) {
            FILE *fa = fopen("render1.out", "wb"), *fb = fopen("render2.out", "wb");
            if (fa) fwrite(a, 1, na, fa), fclose(fa);
            if (fb) fwrite(b, 1, nb, fb), fclose(fb);
        }
        free(a), free(b);
    }

    /* The files, written atomically into a fresh folder. */
    const char *dir = "plot_out";
    char path[3][256], cmd[1024], out[8192];
    (void)system("rm -rf plot_out");
    for (int f = 0; f < 3; f++) {
        mc_snprintf(path[f], sizeof path[f], "%s/figure.%s", dir, ext[f]);
        CHECK_MSG(mc_plot_write(&p, f, path[f], &err) == MC_OK, "%s", err.msg);
        CHECK(mc_file_exists(path[f]));
    }
    int n_files = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) n_files += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK_MSG(n_files == 3, "%d files in %s (no temporaries left)", n_files, dir);
    CHECK(mc_plot_write(&p, 7, "plot_out/x.bad", &err) == MC_ERR_ARG);

    /* PNG: size, and the series' colours inside the plot areas. */
    mc_image im = {0};
    CHECK_MSG(mc_image_load(path[0], NULL, &im, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(im.w == w * MC_PLOT_PNG_SCALE && im.h == h * MC_PLOT_PNG_SCALE,
              "PNG %dx%d, figure %dx%d", im.w, im.h, w, h);
    if (im.data) {
        const int S = MC_PLOT_PNG_SCALE, half = im.w / 2;
        /* The plot area of a panel lies within 100..half-16 units across, 64..290 down. */
        long blue = count_colour(&im, 100 * S, half - 20 * S, 70 * S, 280 * S, 31, 119, 180, 6);
        long orange = count_colour(&im, 100 * S, half - 20 * S, 70 * S, 280 * S, 255, 127, 14, 6);
        long green = count_colour(&im, 100 * S, half - 20 * S, 70 * S, 280 * S, 44, 160, 44, 6);
        long blue2 =
            count_colour(&im, half + 100 * S, im.w - 20 * S, 70 * S, 280 * S, 31, 119, 180, 6);
        long orange2 =
            count_colour(&im, half + 100 * S, im.w - 20 * S, 70 * S, 280 * S, 255, 127, 14, 6);
        long green2 =
            count_colour(&im, half + 100 * S, im.w - 20 * S, 70 * S, 280 * S, 44, 160, 44, 6);
        CHECK_MSG(blue > 500 && orange > 500 && green > 300,
                  "left panel: %ld %ld %ld series pixels", blue, orange, green);
        CHECK_MSG(blue2 > 500 && orange2 > 500 && green2 == 0,
                  "right panel: %ld %ld %ld series pixels", blue2, orange2, green2);
        long white = count_colour(&im, 0, im.w, 0, im.h, 255, 255, 255, 0);
        long dark = count_colour(&im, 0, im.w, 0, im.h, 26, 26, 26, 30);
        const long all = (long)im.w * im.h;
        CHECK_MSG(white > all / 2 && white < all - all / 50 && dark > 2000,
                  "white %ld, dark %ld of %ld", white, dark, all);
        /* The title band holds text, the corners nothing. */
        CHECK(count_colour(&im, 0, im.w, 0, 30 * S, 255, 255, 255, 0) < (long)im.w * 30 * S);
        CHECK(count_colour(&im, 0, 8 * S, 0, 8 * S, 255, 255, 255, 0) == 64L * S * S);
        mc_image_free(&im);
    }

    /* SVG: XML, title, one data path per series (checked by Python's xml.etree). */
    const char *py = getenv("MICLIP_PYTHON"), *src = getenv("MICLIP_SOURCE_DIR");
    mc_snprintf(cmd, sizeof cmd, "'%s' '%s/tests/plot/check_svg.py' '%s' '%s' 3,2 2>&1",
                py ? py : "/usr/bin/python3", src ? src : "../..", path[1], p.title);
    int rc = run_cmd(cmd, out, sizeof out);
    printf("%s", out);
    CHECK_MSG(rc == 0, "check_svg.py failed (%d)", rc);

    /* PDF: the header, and the text pdftotext extracts. */
    char *pdf = NULL;
    size_t plen = 0;
    CHECK_MSG(mc_read_file(path[2], 1 << 24, &pdf, &plen, &err) == MC_OK, "%s", err.msg);
    CHECK(pdf && plen > 5 && memcmp(pdf, "%PDF-", 5) == 0);
    CHECK(pdf && memmem(pdf, plen, "/CreationDate (20000101000000Z)", 31));
    free(pdf);
    mc_snprintf(cmd, sizeof cmd, "pdftotext -enc UTF-8 '%s' - 2>&1", path[2]);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK_MSG(rc == 0 && strstr(out, p.title) && strstr(out, "seed 2") &&
                  strstr(out, "InfoNCE loss") && strstr(out, "AuxK on"),
              "pdftotext (rc %d): %s", rc, out);

    /* Image grid (the report site's per-unit evidence): a grey image with a 2 x 2 heat map hot
     * only in its top-left cell, beside the same image without a map. Expected colours from the
     * documented map: full heat is (1, 1, 0.3) at alpha 0.75, zero heat (0.05, 0.05, 0.45) at
     * alpha 0.15, composited over grey 128. */
    uint8_t grey[16 * 16 * 3];
    memset(grey, 128, sizeof grey);
    const float heat[4] = {2.0f, 0, 0, -1.0f};
    mc_grid_tile tiles[2] = {{.rgb = grey, .w = 16, .h = 16, .heat = heat, .hw = 2, .hh = 2},
                             {.rgb = grey, .w = 16, .h = 16}};
    mc_snprintf(tiles[0].caption, sizeof tiles[0].caption, "#1 hot corner");
    mc_snprintf(tiles[1].caption2, sizeof tiles[1].caption2, "no map");
    mc_grid g = {.n_tiles = 2, .cols = 2, .tile = 64, .tiles = tiles};
    mc_snprintf(g.title, sizeof g.title, "unit 3: top 2 images");
    uint8_t *ga = NULL, *gb = NULL;
    size_t gna = 0, gnb = 0;
    CHECK_MSG(mc_grid_render_png(&g, &ga, &gna, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(mc_grid_render_png(&g, &gb, &gnb, &err) == MC_OK, "%s", err.msg);
    CHECK_MSG(ga && gb && gna == gnb && !memcmp(ga, gb, gna),
              "grid: two renders give the same bytes");
    mc_image gi = {0};
    CHECK_MSG(ga && mc_image_decode(ga, gna, "grid", NULL, &gi, &err) == MC_OK, "%s", err.msg);
    int gw = 0, gh = 0, x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    mc_grid_size(&g, &gw, &gh);
    mc_grid_tile_origin(&g, 0, &x0, &y0);
    mc_grid_tile_origin(&g, 1, &x1, &y1);
    CHECK_MSG(gi.w == gw && gi.h == gh, "grid: %dx%d, expected %dx%d", gi.w, gi.h, gw, gh);
    if (gi.data && gi.w == gw && gi.h == gh) {
        const double hot[3] = {1 * 0.75 * 255 + 128 * 0.25, 1 * 0.75 * 255 + 128 * 0.25,
                               0.3 * 0.75 * 255 + 128 * 0.25};
        const double cold[3] = {0.05 * 0.15 * 255 + 128 * 0.85, 0.05 * 0.15 * 255 + 128 * 0.85,
                                0.45 * 0.15 * 255 + 128 * 0.85};
        /* Centres of the top-left (hot), top-right (0) and bottom-right (negative: cold) cells. */
        CHECK_MSG(count_colour(&gi, x0 + 8, x0 + 24, y0 + 8, y0 + 24, (int)lround(hot[0]),
                               (int)lround(hot[1]), (int)lround(hot[2]), 3) == 256,
                  "grid: the hot cell has full heat");
        CHECK_MSG(count_colour(&gi, x0 + 40, x0 + 56, y0 + 8, y0 + 24, (int)lround(cold[0]),
                               (int)lround(cold[1]), (int)lround(cold[2]), 3) == 256,
                  "grid: a zero cell is cold");
        CHECK_MSG(count_colour(&gi, x0 + 40, x0 + 56, y0 + 40, y0 + 56, (int)lround(cold[0]),
                               (int)lround(cold[1]), (int)lround(cold[2]), 3) == 256,
                  "grid: a negative cell is cold");
        CHECK_MSG(count_colour(&gi, x1 + 8, x1 + 56, y1 + 8, y1 + 56, 128, 128, 128, 1) == 48 * 48,
                  "grid: a tile without a map shows the image alone");
        CHECK_MSG(count_colour(&gi, x0, x0 + 64, y0 + 66, y0 + 90, 255, 255, 255, 0) < 64 * 24,
                  "grid: the caption is drawn under the tile");
    }
    mc_image_free(&gi);
    free(ga), free(gb);
    g.tile = 4;
    CHECK_MSG(mc_grid_render_png(&g, &ga, &gna, &err) == MC_ERR_ARG && strstr(err.msg, "tile"),
              "grid: tile 4 refused");
    return TEST_SUMMARY();
}
