/* resample.c - Pillow's Image.resize for 8-bit RGB, reproduced bit for bit.
 *
 * Pillow 9.x (libImaging/Resample.c) resizes in two separable passes, horizontal first and only
 * over the source rows the vertical pass needs, each pass skipped when its dimension does not
 * change. Per output sample it centres the filter at (o + 0.5) * scale, widens the support by
 * the downscale factor (antialiasing), evaluates the filter in double at
 * (x - center + 0.5) / filterscale (as a multiply by the precomputed reciprocal), normalises the
 * taps by their sum, converts them to 22-bit fixed point rounding half away from zero, and
 * accumulates pixel * tap in int32 starting from 2^21; the result is clamped to 0..255 and stored
 * as uint8 between the passes and at the end. NEAREST does not use this path: Pillow maps it to
 * an affine scale (libImaging/Geometry.c ImagingScaleAffine) with an accumulated source
 * coordinate, reproduced here too. The floating-point steps are written in the same order as
 * Pillow's, and contraction into FMAs is off (ISO C mode for gcc; the pragma for clang), so the
 * taps and therefore every output byte are identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/image.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define PREC_BITS 22 /* Pillow: 32 - 8 - 2 */

typedef struct {
    double support;
    double (*fn)(double);
} filter_def;

static double f_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double f_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double f_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    /* Pillow writes the constants as float literals */
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}

static double f_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double f_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

static bool get_filter(mc_resample r, filter_def *f) {
    switch (r) {
    case MC_RESAMPLE_BOX: *f = (filter_def){0.5, f_box}; return true;
    case MC_RESAMPLE_BILINEAR: *f = (filter_def){1.0, f_bilinear}; return true;
    case MC_RESAMPLE_HAMMING: *f = (filter_def){1.0, f_hamming}; return true;
    case MC_RESAMPLE_BICUBIC: *f = (filter_def){2.0, f_bicubic}; return true;
    case MC_RESAMPLE_LANCZOS: *f = (filter_def){3.0, f_lanczos}; return true;
    default: return false;
    }
}

/* Fixed-point taps for one axis: bounds[2*o] = first source index, bounds[2*o+1] = tap count,
 * taps[o*ksize + k]. Returns ksize, or 0 on allocation failure. */
typedef struct {
    int ksize;
    int *bounds;
    int32_t *taps;
} axis_coeffs;

static void coeffs_free(axis_coeffs *c) {
    free(c->bounds);
    free(c->taps);
    memset(c, 0, sizeof *c);
}

static bool coeffs_make(int in_size, int out_size, const filter_def *f, axis_coeffs *c) {
    memset(c, 0, sizeof *c);
    /* Pillow passes the box as floats: (in1 - in0) is float(in_size) */
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *kk = mc_alloc_array((size_t)out_size, (size_t)ksize * sizeof(double));
    c->bounds = mc_alloc_array((size_t)out_size, 2 * sizeof(int));
    c->taps = mc_alloc_array((size_t)out_size, (size_t)ksize * sizeof(int32_t));
    if (!kk || !c->bounds || !c->taps) {
        free(kk);
        coeffs_free(c);
        return false;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = kk + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * ksize; i++)
        c->taps[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PREC_BITS))
                               : (int32_t)(0.5 + kk[i] * (1 << PREC_BITS));
    free(kk);
    c->ksize = ksize;
    return true;
}

static inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> PREC_BITS; /* arithmetic shift, as Pillow's */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* rows [y0, y0 + nrows) of src (width in_w) -> dst rows 0.. (width out_w) */
static void pass_horizontal(const uint8_t *src, int in_w, int y0, int nrows, uint8_t *dst,
                            int out_w, const axis_coeffs *c) {
    for (int r = 0; r < nrows; r++) {
        const uint8_t *s = src + (size_t)(y0 + r) * in_w * 3;
        uint8_t *d = dst + (size_t)r * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[2 * xx], n = c->bounds[2 * xx + 1];
            const int32_t *k = c->taps + (size_t)xx * c->ksize;
            const uint8_t *p = s + (size_t)xmin * 3;
            int32_t a0 = 1 << (PREC_BITS - 1), a1 = a0, a2 = a0;
            for (int x = 0; x < n; x++) {
                a0 += p[3 * x] * k[x];
                a1 += p[3 * x + 1] * k[x];
                a2 += p[3 * x + 2] * k[x];
            }
            d[3 * xx] = clip8(a0);
            d[3 * xx + 1] = clip8(a1);
            d[3 * xx + 2] = clip8(a2);
        }
    }
}

/* src rows are relative to the first row the pass needs (offset already removed from bounds) */
static void pass_vertical(const uint8_t *src, int w, uint8_t *dst, int out_h, int row_off,
                          const axis_coeffs *c, int32_t *acc) {
    size_t n3 = (size_t)w * 3;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[2 * yy] - row_off, n = c->bounds[2 * yy + 1];
        const int32_t *k = c->taps + (size_t)yy * c->ksize;
        for (size_t i = 0; i < n3; i++) acc[i] = 1 << (PREC_BITS - 1);
        for (int y = 0; y < n; y++) {
            const uint8_t *s = src + (size_t)(ymin + y) * n3;
            int32_t ky = k[y];
            for (size_t i = 0; i < n3; i++) acc[i] += s[i] * ky;
        }
        uint8_t *d = dst + (size_t)yy * n3;
        for (size_t i = 0; i < n3; i++) d[i] = clip8(acc[i]);
    }
}

static bool resize_nearest(const mc_image *src, mc_image *dst) {
    int ow = dst->w, oh = dst->h;
    double a0 = (double)((float)src->w - 0.0f) / ow;
    double a4 = (double)((float)src->h - 0.0f) / oh;
    int *xin = mc_alloc_array((size_t)ow, sizeof(int));
    if (!xin) return false;
    double xo = 0.0 + a0 * 0.5, yo = 0.0 + a4 * 0.5;
    for (int x = 0; x < ow; x++) {
        int v = xo < 0.0 ? -1 : (int)xo;
        xin[x] = (v >= 0 && v < src->w) ? v : -1;
        xo += a0;
    }
    for (int y = 0; y < oh; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *d = dst->data + (size_t)y * ow * 3;
        if (yi >= 0 && yi < src->h) {
            const uint8_t *s = src->data + (size_t)yi * src->w * 3;
            for (int x = 0; x < ow; x++) {
                if (xin[x] < 0) {
                    d[3 * x] = d[3 * x + 1] = d[3 * x + 2] = 0;
                } else {
                    memcpy(d + 3 * x, s + 3 * (size_t)xin[x], 3);
                }
            }
        } else {
            memset(d, 0, (size_t)ow * 3);
        }
        yo += a4;
    }
    free(xin);
    return true;
}

mc_status mc_image_resize(const mc_image *src, int out_w, int out_h, mc_resample filter,
                          mc_image *dst, mc_error *err) {
    memset(dst, 0, sizeof *dst);
    if (!src || !src->data || src->w <= 0 || src->h <= 0)
        return MC_FAIL(err, MC_ERR_ARG, "resize: empty source image");
    if (out_w <= 0 || out_h <= 0)
        return MC_FAIL(err, MC_ERR_ARG, "resize: invalid target size %dx%d", out_w, out_h);
    filter_def f = {0};
    if (filter != MC_RESAMPLE_NEAREST && !get_filter(filter, &f))
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "resize: unknown PIL resample code %d",
                       (int)filter);
    MC_TRY(mc_image_alloc(out_w, out_h, dst, err));
    if (out_w == src->w && out_h == src->h) { /* Image.resize returns a copy */
        memcpy(dst->data, src->data, (size_t)out_w * out_h * 3);
        return MC_OK;
    }
    if (filter == MC_RESAMPLE_NEAREST) {
        if (resize_nearest(src, dst)) return MC_OK;
        mc_image_free(dst);
        return MC_FAIL(err, MC_ERR_NOMEM, "resize: out of memory");
    }
    bool need_h = out_w != src->w, need_v = out_h != src->h;
    axis_coeffs ch = {0}, cv = {0};
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    mc_status st = MC_OK;
    if ((need_h && !coeffs_make(src->w, out_w, &f, &ch)) ||
        (need_v && !coeffs_make(src->h, out_h, &f, &cv))) {
        st = MC_FAIL(err, MC_ERR_NOMEM, "resize: out of memory for %dx%d -> %dx%d", src->w, src->h,
                     out_w, out_h);
        goto done;
    }
    if (need_h && need_v) {
        int first = cv.bounds[0];
        int last = cv.bounds[2 * out_h - 2] + cv.bounds[2 * out_h - 1];
        tmp = mc_alloc_array((size_t)(last - first), (size_t)out_w * 3);
        acc = mc_alloc_array((size_t)out_w, 3 * sizeof(int32_t));
        if (!tmp || !acc) {
            st = MC_FAIL(err, MC_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
        pass_horizontal(src->data, src->w, first, last - first, tmp, out_w, &ch);
        pass_vertical(tmp, out_w, dst->data, out_h, first, &cv, acc);
    } else if (need_h) {
        pass_horizontal(src->data, src->w, 0, src->h, dst->data, out_w, &ch);
    } else {
        acc = mc_alloc_array((size_t)out_w, 3 * sizeof(int32_t));
        if (!acc) {
            st = MC_FAIL(err, MC_ERR_NOMEM, "resize: out of memory");
            goto done;
        }
        pass_vertical(src->data, out_w, dst->data, out_h, 0, &cv, acc);
    }
done:
    free(tmp);
    free(acc);
    coeffs_free(&ch);
    coeffs_free(&cv);
    if (st != MC_OK) mc_image_free(dst);
    return st;
}
