/* preprocess.c - Hugging Face image processors (ViT, CLIP, ConvNext/ResNet) in C.
 *
 * The configuration follows the processors' __init__ and preprocess (transformers 4.x, the PIL
 * path): a missing or null key takes the class default; a legacy integer `size` becomes
 * {"height","width"} for ViT and {"shortest_edge"} for CLIP and ConvNext; `crop_size` as an
 * integer becomes a square. The steps are resize (Pillow, see resample.c), center crop with
 * top = (H - h) // 2 (zero padding placed at ceil((h - H) / 2) when the image is smaller),
 * rescale as float32(x * factor computed in float64), normalise as (x - mean) / std in float32
 * with mean and std cast to float32, output CHW. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"
#include "miclip/json.h"

#define MC_PREPROC_MAX_SIDE 65536 /* a sanity cap for sizes read from a config */
/* A shortest-edge resize of an extreme aspect ratio (1 x 40000 -> 224 x 8960000) would make a
 * huge intermediate image; such inputs are refused rather than allowed to exhaust memory. */
#define MC_PREPROC_MAX_RESIZED_PIXELS (1ull << 25)

void mc_preproc_defaults(mc_preproc_kind kind, mc_preproc *p) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->do_resize = true;
    p->do_rescale = true;
    p->rescale_factor = 1.0 / 255.0;
    p->do_normalize = true;
    p->crop_pct = 224.0 / 256.0;
    switch (kind) {
    case MC_PREPROC_VIT:
        p->size_h = p->size_w = 224;
        p->resample = MC_RESAMPLE_BILINEAR;
        for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5f;
        break;
    case MC_PREPROC_CLIP: {
        static const double m[3] = {0.48145466, 0.4578275, 0.40821073};
        static const double s[3] = {0.26862954, 0.26130258, 0.27577711};
        p->shortest_edge = 224;
        p->resample = MC_RESAMPLE_BICUBIC;
        p->do_center_crop = true;
        p->crop_h = p->crop_w = 224;
        for (int c = 0; c < 3; c++) {
            p->mean[c] = (float)m[c];
            p->std[c] = (float)s[c];
        }
        break;
    }
    case MC_PREPROC_CONVNEXT:
        p->shortest_edge = 384;
        p->resample = MC_RESAMPLE_BILINEAR;
        for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5f;
        break;
    }
}

/* ---- JSON helpers (null counts as missing, as Python's `x if x is not None else default`) - */

static const json_t *get(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

static mc_status get_bool(const json_t *o, const char *key, bool *out, const char *file,
                          mc_error *err) {
    const json_t *v = get(o, key);
    if (!v) return MC_OK;
    if (!json_is_boolean(v))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: \"%s\" must be true or false", file, key);
    *out = json_is_true(v);
    return MC_OK;
}

static mc_status get_side(const json_t *v, const char *what, int *out, const char *file,
                          mc_error *err) {
    if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
        json_integer_value(v) > MC_PREPROC_MAX_SIDE)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s must be an integer in 1..%d", file, what,
                       MC_PREPROC_MAX_SIDE);
    *out = (int)json_integer_value(v);
    return MC_OK;
}

/* size / crop_size: int, [h, w], or a dict with height+width or shortest_edge. */
static mc_status get_size(const json_t *o, const char *key, bool int_is_square, int *h, int *w,
                          int *shortest, const char *file, mc_error *err) {
    const json_t *v = get(o, key);
    if (!v) return MC_OK;
    char what[64];
    snprintf(what, sizeof what, "\"%s\"", key);
    if (json_is_integer(v)) {
        int s = 0;
        MC_TRY(get_side(v, what, &s, file, err));
        if (int_is_square || !shortest) {
            *h = *w = s;
            if (shortest) *shortest = 0;
        } else {
            *shortest = s;
            *h = *w = 0;
        }
        return MC_OK;
    }
    if (json_is_array(v)) {
        if (json_array_size(v) != 2)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s as a list must be [height, width]", file,
                           what);
        MC_TRY(get_side(json_array_get(v, 0), what, h, file, err));
        MC_TRY(get_side(json_array_get(v, 1), what, w, file, err));
        if (shortest) *shortest = 0;
        return MC_OK;
    }
    if (!json_is_object(v))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s must be an integer, a list or an object", file,
                       what);
    const json_t *vh = get(v, "height"), *vw = get(v, "width"), *vs = get(v, "shortest_edge");
    const char *k;
    const json_t *x;
    json_object_foreach((json_t *)v, k, x) {
        if (strcmp(k, "height") && strcmp(k, "width") && strcmp(k, "shortest_edge"))
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: %s key \"%s\" is not supported (height/width or shortest_edge)",
                           file, what, k);
    }
    if (vh && vw && !vs) {
        MC_TRY(get_side(vh, what, h, file, err));
        MC_TRY(get_side(vw, what, w, file, err));
        if (shortest) *shortest = 0;
        return MC_OK;
    }
    if (vs && !vh && !vw && shortest) {
        MC_TRY(get_side(vs, what, shortest, file, err));
        *h = *w = 0;
        return MC_OK;
    }
    return MC_FAIL(err, MC_ERR_FORMAT, "%s: %s must have height and width%s", file, what,
                   shortest ? ", or shortest_edge" : "");
}

static mc_status get_triple(const json_t *o, const char *key, float out[3], const char *file,
                            mc_error *err) {
    const json_t *v = get(o, key);
    if (!v) return MC_OK;
    if (json_is_number(v)) { /* a single float applies to every channel */
        for (int c = 0; c < 3; c++) out[c] = (float)json_number_value(v);
        return MC_OK;
    }
    if (!json_is_array(v) || json_array_size(v) != 3)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: \"%s\" must be a list of 3 numbers", file, key);
    for (int c = 0; c < 3; c++) {
        const json_t *x = json_array_get(v, (size_t)c);
        if (!json_is_number(x))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: \"%s\"[%d] must be a number", file, key, c);
        out[c] = (float)json_number_value(x);
    }
    return MC_OK;
}

static bool kind_from_class(const char *name, mc_preproc_kind *k) {
    static const struct {
        const char *name;
        mc_preproc_kind kind;
    } tab[] = {
        {"ViTImageProcessor", MC_PREPROC_VIT},
        {"ViTFeatureExtractor", MC_PREPROC_VIT},
        {"CLIPImageProcessor", MC_PREPROC_CLIP},
        {"CLIPFeatureExtractor", MC_PREPROC_CLIP},
        {"ConvNextImageProcessor", MC_PREPROC_CONVNEXT},
        {"ConvNextFeatureExtractor", MC_PREPROC_CONVNEXT},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(name, tab[i].name) == 0) {
            *k = tab[i].kind;
            return true;
        }
    return false;
}

/* AutoImageProcessor's fallback when the file names no class: the model type in config.json. */
static bool kind_from_model_type(const char *mt, mc_preproc_kind *k) {
    if (!strcmp(mt, "vit"))
        *k = MC_PREPROC_VIT;
    else if (!strcmp(mt, "clip") || !strcmp(mt, "clip_vision_model"))
        *k = MC_PREPROC_CLIP;
    else if (!strcmp(mt, "resnet") || !strcmp(mt, "convnext"))
        *k = MC_PREPROC_CONVNEXT;
    else
        return false;
    return true;
}

static mc_status parse(const json_t *o, const char *file, const char *model_dir, mc_preproc *p,
                       mc_error *err) {
    const json_t *cls = get(o, "image_processor_type");
    if (!cls) cls = get(o, "feature_extractor_type");
    mc_preproc_kind kind = MC_PREPROC_VIT;
    if (cls) {
        if (!json_is_string(cls))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: image_processor_type must be a string", file);
        if (!kind_from_class(json_string_value(cls), &kind))
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "%s: image processor \"%s\" is not supported (ViT, CLIP or ConvNext "
                           "image processors)",
                           file, json_string_value(cls));
    } else {
        char cpath[4096];
        json_t *cfg = NULL;
        const char *mt = NULL;
        if (!model_dir || !mc_path_join(cpath, sizeof cpath, model_dir, "config.json"))
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: names no image_processor_type and no config.json is at hand", file);
        MC_TRY(mc_json_load(cpath, false, &cfg, err));
        const json_t *v = get(cfg, "model_type");
        if (v && json_is_string(v)) mt = json_string_value(v);
        bool ok = mt && kind_from_model_type(mt, &kind);
        mc_status st = ok ? MC_OK
                          : MC_FAIL(err, MC_ERR_UNSUPPORTED,
                                    "%s: names no image_processor_type, and model_type \"%s\" in "
                                    "%s has no known processor",
                                    file, mt ? mt : "(missing)", cpath);
        json_decref(cfg);
        MC_TRY(st);
    }
    mc_preproc_defaults(kind, p);

    MC_TRY(get_bool(o, "do_resize", &p->do_resize, file, err));
    MC_TRY(get_size(o, "size", kind == MC_PREPROC_VIT, &p->size_h, &p->size_w, &p->shortest_edge,
                    file, err));
    if (kind == MC_PREPROC_VIT && p->shortest_edge)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: ViTImageProcessor needs size height and width",
                       file);
    if (kind == MC_PREPROC_CONVNEXT && !p->shortest_edge)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: ConvNextImageProcessor needs size shortest_edge",
                       file);
    const json_t *rs = get(o, "resample");
    if (rs) {
        if (!json_is_integer(rs) || json_integer_value(rs) < 0 || json_integer_value(rs) > 5)
            return MC_FAIL(err, MC_ERR_FORMAT,
                           "%s: \"resample\" must be a PIL filter code 0..5 (0 nearest, 1 lanczos, "
                           "2 bilinear, 3 bicubic, 4 box, 5 hamming)",
                           file);
        p->resample = (mc_resample)json_integer_value(rs);
    }
    if (kind == MC_PREPROC_CLIP) {
        MC_TRY(get_bool(o, "do_center_crop", &p->do_center_crop, file, err));
        MC_TRY(get_size(o, "crop_size", true, &p->crop_h, &p->crop_w, NULL, file, err));
    }
    if (kind == MC_PREPROC_CONVNEXT) {
        const json_t *cp = get(o, "crop_pct");
        if (cp) {
            if (!json_is_number(cp) || !(json_number_value(cp) > 0.0) ||
                json_number_value(cp) > 1e3)
                return MC_FAIL(err, MC_ERR_FORMAT, "%s: \"crop_pct\" must be a positive number",
                               file);
            p->crop_pct = json_number_value(cp);
        }
        if (p->shortest_edge < 384 && (double)p->shortest_edge / p->crop_pct > MC_PREPROC_MAX_SIDE)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: shortest_edge / crop_pct is too large", file);
    }
    MC_TRY(get_bool(o, "do_rescale", &p->do_rescale, file, err));
    const json_t *rf = get(o, "rescale_factor");
    if (rf) {
        if (!json_is_number(rf) || !isfinite(json_number_value(rf)))
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: \"rescale_factor\" must be a number", file);
        p->rescale_factor = json_number_value(rf);
    }
    MC_TRY(get_bool(o, "do_normalize", &p->do_normalize, file, err));
    MC_TRY(get_triple(o, "image_mean", p->mean, file, err));
    MC_TRY(get_triple(o, "image_std", p->std, file, err));
    if (p->do_normalize)
        for (int c = 0; c < 3; c++)
            if (!(p->std[c] != 0.0f) || !isfinite(p->std[c]) || !isfinite(p->mean[c]))
                return MC_FAIL(err, MC_ERR_FORMAT,
                               "%s: image_std must be finite and non-zero, image_mean finite",
                               file);
    return MC_OK;
}

mc_status mc_preproc_load_file(const char *json_path, mc_preproc *p, mc_error *err) {
    json_t *o = NULL;
    MC_TRY(mc_json_load(json_path, false, &o, err));
    mc_status st = parse(o, json_path, NULL, p, err);
    json_decref(o);
    return st;
}

mc_status mc_preproc_load(const char *model_dir, mc_preproc *p, mc_error *err) {
    char path[4096];
    if (!mc_path_join(path, sizeof path, model_dir, "preprocessor_config.json"))
        return MC_FAIL(err, MC_ERR_ARG, "%s: model path too long", model_dir);
    json_t *o = NULL;
    MC_TRY(mc_json_load(path, false, &o, err));
    mc_status st = parse(o, path, model_dir, p, err);
    json_decref(o);
    return st;
}

bool mc_preproc_describe(const mc_preproc *p, char *buf, size_t cap) {
    static const char *kinds[] = {"vit", "clip", "convnext"};
    /* fields that a processor ignores are printed as their neutral values, so the text depends
     * only on what changes the output */
    bool crop = p->kind == MC_PREPROC_CLIP && p->do_center_crop;
    bool pct = p->kind == MC_PREPROC_CONVNEXT;
    int n =
        snprintf(buf, cap,
                 "%s resize=%d size=%dx%d shortest_edge=%d resample=%d crop=%dx%d "
                 "crop_pct=%.17g rescale=%.17g normalize=%d mean=%.9g,%.9g,%.9g "
                 "std=%.9g,%.9g,%.9g",
                 kinds[p->kind], p->do_resize, p->do_resize ? p->size_h : 0,
                 p->do_resize ? p->size_w : 0, p->do_resize ? p->shortest_edge : 0,
                 p->do_resize ? (int)p->resample : -1, crop ? p->crop_h : 0, crop ? p->crop_w : 0,
                 pct ? p->crop_pct : 0.0, p->do_rescale ? p->rescale_factor : 1.0, p->do_normalize,
                 p->do_normalize ? p->mean[0] : 0.0, p->do_normalize ? p->mean[1] : 0.0,
                 p->do_normalize ? p->mean[2] : 0.0, p->do_normalize ? p->std[0] : 1.0,
                 p->do_normalize ? p->std[1] : 1.0, p->do_normalize ? p->std[2] : 1.0);
    return n >= 0 && (size_t)n < cap;
}

/* ---- sizes ----------------------------------------------------------------------------- */

/* transformers get_resize_output_image_size(default_to_square=False) == torchvision's rule:
 * short side -> s, long side -> int(s * long / short), the quotient correctly rounded. */
static void short_edge_size(int in_w, int in_h, int s, int *rh, int *rw) {
    int sh = in_w <= in_h ? in_w : in_h, lo = in_w <= in_h ? in_h : in_w;
    double q = (double)((int64_t)s * lo) / (double)sh;
    /* a long side past 2^30 cannot pass the resized-pixel cap; keep the cast defined */
    int nl = q < (double)(1 << 30) ? (int)q : (1 << 30);
    if (in_w <= in_h) {
        *rw = s;
        *rh = nl;
    } else {
        *rh = s;
        *rw = nl;
    }
}

/* resized size (rh, rw) and final size (oh, ow) */
static mc_status plan(const mc_preproc *p, int in_w, int in_h, int *rh, int *rw, int *oh, int *ow,
                      mc_error *err) {
    if (in_w <= 0 || in_h <= 0)
        return MC_FAIL(err, MC_ERR_ARG, "preprocess: empty image %dx%d", in_w, in_h);
    *rh = in_h;
    *rw = in_w;
    if (p->do_resize) {
        if (p->kind == MC_PREPROC_CONVNEXT) {
            int s = p->shortest_edge;
            if (s <= 0) return MC_FAIL(err, MC_ERR_ARG, "preprocess: ConvNext needs shortest_edge");
            if (s < 384)
                short_edge_size(in_w, in_h, (int)((double)s / p->crop_pct), rh, rw);
            else
                *rh = *rw = s;
        } else if (p->shortest_edge > 0) {
            short_edge_size(in_w, in_h, p->shortest_edge, rh, rw);
        } else {
            if (p->size_h <= 0 || p->size_w <= 0)
                return MC_FAIL(err, MC_ERR_ARG, "preprocess: no resize size configured");
            *rh = p->size_h;
            *rw = p->size_w;
        }
        if (*rh <= 0 || *rw <= 0 || (uint64_t)*rh * (uint64_t)*rw > MC_PREPROC_MAX_RESIZED_PIXELS)
            return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                           "preprocess: a %dx%d image would be resized to %dx%d (more than %llu "
                           "pixels: extreme aspect ratio)",
                           in_w, in_h, *rw, *rh, (unsigned long long)MC_PREPROC_MAX_RESIZED_PIXELS);
    }
    *oh = *rh;
    *ow = *rw;
    if (p->kind == MC_PREPROC_CLIP && p->do_center_crop) {
        if (p->crop_h <= 0 || p->crop_w <= 0)
            return MC_FAIL(err, MC_ERR_ARG, "preprocess: no crop size configured");
        *oh = p->crop_h;
        *ow = p->crop_w;
    } else if (p->kind == MC_PREPROC_CONVNEXT && p->do_resize && p->shortest_edge < 384) {
        *oh = *ow = p->shortest_edge;
    }
    return MC_OK;
}

mc_status mc_preproc_output_size(const mc_preproc *p, int in_w, int in_h, int *out_h, int *out_w,
                                 mc_error *err) {
    int rh = 0, rw = 0;
    return plan(p, in_w, in_h, &rh, &rw, out_h, out_w, err);
}

bool mc_preproc_fixed_size(const mc_preproc *p, int *out_h, int *out_w) {
    if (p->kind == MC_PREPROC_CLIP && p->do_center_crop) {
        *out_h = p->crop_h;
        *out_w = p->crop_w;
        return p->crop_h > 0 && p->crop_w > 0;
    }
    if (!p->do_resize) return false;
    if (p->kind == MC_PREPROC_CONVNEXT) {
        *out_h = *out_w = p->shortest_edge;
        return p->shortest_edge > 0;
    }
    if (p->shortest_edge > 0) return false;
    *out_h = p->size_h;
    *out_w = p->size_w;
    return p->size_h > 0 && p->size_w > 0;
}

/* ---- the pipeline ---------------------------------------------------------------------- */

/* transformers center_crop on one axis: source offset (>= 0) or padding offset (> 0). */
static void crop_axis(int in, int out, int *src0, int *dst0, int *n) {
    if (in >= out) {
        *src0 = (in - out) / 2; /* floor, non-negative */
        *dst0 = 0;
        *n = out;
    } else {
        *src0 = 0;
        *dst0 = (out - in + 1) / 2; /* ceil((out - in) / 2) */
        *n = in;
    }
}

mc_status mc_preprocess(const mc_preproc *p, const mc_image *img, float *out, uint8_t *u8_out,
                        mc_error *err) {
    if (!img || !img->data) return MC_FAIL(err, MC_ERR_ARG, "preprocess: no image");
    int rh = 0, rw = 0, oh = 0, ow = 0;
    MC_TRY(plan(p, img->w, img->h, &rh, &rw, &oh, &ow, err));
    mc_image resized = {0};
    const mc_image *r = img;
    if (p->do_resize) {
        MC_TRY(mc_image_resize(img, rw, rh, p->resample, &resized, err));
        r = &resized;
    }
    int sy, dy, ny, sx, dx, nx;
    crop_axis(r->h, oh, &sy, &dy, &ny);
    crop_axis(r->w, ow, &sx, &dx, &nx);
    size_t plane = (size_t)oh * ow;
    /* value table per channel: the 256 possible outputs, computed with HF's exact arithmetic */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = p->do_rescale ? (float)((double)v * p->rescale_factor) : (float)v;
            if (p->do_normalize) x = (x - p->mean[c]) / p->std[c];
            lut[c][v] = x;
        }
    for (int y = 0; y < oh; y++) {
        int iy = y - dy;
        bool row_in = iy >= 0 && iy < ny;
        const uint8_t *src = row_in ? r->data + ((size_t)(sy + iy) * r->w + sx) * 3 : NULL;
        for (int x = 0; x < ow; x++) {
            int ix = x - dx;
            const uint8_t zero[3] = {0, 0, 0};
            const uint8_t *px = (row_in && ix >= 0 && ix < nx) ? src + (size_t)ix * 3 : zero;
            size_t o = (size_t)y * ow + x;
            for (int c = 0; c < 3; c++) out[c * plane + o] = lut[c][px[c]];
            if (u8_out) memcpy(u8_out + o * 3, px, 3);
        }
    }
    mc_image_free(&resized);
    return MC_OK;
}

mc_status mc_preprocess_files(const mc_preproc *p, const char *const *paths, size_t n,
                              const mc_image_caps *caps, float *out, mc_error *err) {
    int oh = 0, ow = 0;
    if (!mc_preproc_fixed_size(p, &oh, &ow))
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "preprocess: this processor's output size depends on the image, so images "
                       "cannot be batched (configure a crop or a height/width size)");
    size_t per = (size_t)3 * oh * ow;
    for (size_t i = 0; i < n; i++) {
        mc_image img = {0};
        MC_TRY(mc_image_load(paths[i], caps, &img, err));
        int h = 0, w = 0;
        mc_status st = mc_preproc_output_size(p, img.w, img.h, &h, &w, err);
        if (st == MC_OK && (h != oh || w != ow))
            st = MC_FAIL(err, MC_ERR_INTERNAL, "preprocess: size mismatch for %s", paths[i]);
        if (st == MC_OK) st = mc_preprocess(p, &img, out + i * per, NULL, err);
        mc_image_free(&img);
        if (st != MC_OK) {
            if (st != MC_ERR_INTERNAL) mc_error_prefix(err, "%s", paths[i]);
            return st;
        }
    }
    return MC_OK;
}
