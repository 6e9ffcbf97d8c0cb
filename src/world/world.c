/* world.c - the tiny world: parameters per image, rendering, and the ImageFolder writers.
 * See include/miclip/world.h for the layout and the determinism contract. No MPI: which process
 * writes which image is the caller's (src/cli/cmd_world.c, tools/world/world_gen.c). */
#include "miclip/world.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image_write.h"

#define PI 3.14159265358979323846
#define SUPERSAMPLE 4 /* 4x4 samples per pixel: anti-aliased edges */

/* Sorted alphabetically, so that "<colour>_<shape>" folder names sort colour-major: the class
 * index c = colour*6 + shape is then ImageFolder's index. */
static const char *const colour_names[MC_WORLD_NUM_COLOURS] = {"blue",   "green", "orange",
                                                               "purple", "red",   "yellow"};
static const double colour_rgb[MC_WORLD_NUM_COLOURS][3] = {{0.15, 0.30, 0.92}, {0.12, 0.68, 0.18},
                                                           {0.98, 0.52, 0.06}, {0.58, 0.16, 0.76},
                                                           {0.88, 0.10, 0.10}, {0.96, 0.88, 0.12}};
static const char *const shape_names[MC_WORLD_NUM_SHAPES] = {"circle", "cross", "ring",
                                                             "square", "star",  "triangle"};
static const char *const texture_names[MC_WORLD_NUM_TEXTURES] = {"checkered", "dotted",  "noisy",
                                                                 "plain",     "striped", "wavy"};
enum { T_CHECKERED, T_DOTTED, T_NOISY, T_PLAIN, T_STRIPED, T_WAVY };
enum { S_CIRCLE, S_CROSS, S_RING, S_SQUARE, S_STAR, S_TRIANGLE };
static const char *const split_names[MC_WORLD_NUM_SPLITS] = {"train", "val", "unseen", "hard"};

const char *mc_world_colour_name(int i) {
    return i >= 0 && i < MC_WORLD_NUM_COLOURS ? colour_names[i] : NULL;
}
bool mc_world_colour_rgb(int i, double rgb[3]) {
    if (i < 0 || i >= MC_WORLD_NUM_COLOURS) return false;
    for (int k = 0; k < 3; k++) rgb[k] = colour_rgb[i][k];
    return true;
}
const char *mc_world_shape_name(int i) {
    return i >= 0 && i < MC_WORLD_NUM_SHAPES ? shape_names[i] : NULL;
}
const char *mc_world_texture_name(int i) {
    return i >= 0 && i < MC_WORLD_NUM_TEXTURES ? texture_names[i] : NULL;
}
const char *mc_world_split_name(int split) {
    return split >= 0 && split < MC_WORLD_NUM_SPLITS ? split_names[split] : NULL;
}
void mc_world_class_name(int c, char *buf, size_t cap) {
    MC_ASSERT(c >= 0 && c < MC_WORLD_NUM_CLASSES);
    snprintf(buf, cap, "%s %s", colour_names[c / MC_WORLD_NUM_SHAPES],
             shape_names[c % MC_WORLD_NUM_SHAPES]);
}
void mc_world_class_dir(int c, char *buf, size_t cap) {
    MC_ASSERT(c >= 0 && c < MC_WORLD_NUM_CLASSES);
    snprintf(buf, cap, "%s_%s", colour_names[c / MC_WORLD_NUM_SHAPES],
             shape_names[c % MC_WORLD_NUM_SHAPES]);
}

/* ---- counter-based randomness ------------------------------------------------------------ */

/* splitmix64's finaliser: a bijective mix of 64 bits. */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A stream keyed by (seed, split, index): the n-th draw is mix64(key + n*golden), so an image's
 * numbers never depend on which other images were made, or where. */
typedef struct {
    uint64_t key, n;
} rng;

static rng rng_for(uint64_t seed, int split, int64_t index) {
    uint64_t k = mix64(seed) ^ mix64(0x5851f42d4c957f2dull * (uint64_t)(split + 1));
    k = mix64(k ^ mix64((uint64_t)index + 0x2545f4914f6cdd1dull));
    return (rng){k, 0};
}
static uint64_t rng_u64(rng *r) { return mix64(r->key + 0x9e3779b97f4a7c15ull * ++r->n); }
static double rng_unit(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; } /* [0,1) */
static double rng_range(rng *r, double lo, double hi) { return lo + (hi - lo) * rng_unit(r); }
static int rng_int(rng *r, int n) { return (int)(rng_u64(r) % (uint64_t)n); }

/* ---- parameters -------------------------------------------------------------------------- */

mc_status mc_world_params_check(const mc_world_params *p, mc_error *err) {
    if (p->per_class < 1 || p->per_class > MC_WORLD_MAX_PER_CLASS)
        return MC_FAIL(err, MC_ERR_ARG, "world: --per-class must be 1..%d, got %lld",
                       MC_WORLD_MAX_PER_CLASS, (long long)p->per_class);
    if (p->val_per_class < 0 || p->val_per_class > MC_WORLD_MAX_PER_CLASS)
        return MC_FAIL(err, MC_ERR_ARG, "world: --val-per-class must be 0..%d, got %lld",
                       MC_WORLD_MAX_PER_CLASS, (long long)p->val_per_class);
    if (p->unseen_per_class < 0 || p->unseen_per_class > MC_WORLD_MAX_PER_CLASS)
        return MC_FAIL(err, MC_ERR_ARG, "world: --unseen-per-class must be 0..%d, got %lld",
                       MC_WORLD_MAX_PER_CLASS, (long long)p->unseen_per_class);
    if (p->hard_per_class < 0 || p->hard_per_class > MC_WORLD_MAX_PER_CLASS)
        return MC_FAIL(err, MC_ERR_ARG, "world: --hard-per-class must be 0..%d, got %lld",
                       MC_WORLD_MAX_PER_CLASS, (long long)p->hard_per_class);
    if (!(p->hard_fade >= 0 && p->hard_fade <= 1))
        return MC_FAIL(err, MC_ERR_ARG, "world: --hard-fade must be in [0, 1], got %g",
                       p->hard_fade);
    if (!(p->hard_occlusion >= 0 && p->hard_occlusion <= 1))
        return MC_FAIL(err, MC_ERR_ARG, "world: --hard-occlusion must be in [0, 1], got %g",
                       p->hard_occlusion);
    if (p->hard_distractors < 0 || p->hard_distractors > MC_WORLD_MAX_DISTRACTORS)
        return MC_FAIL(err, MC_ERR_ARG, "world: --hard-distractors must be 0..%d, got %d",
                       MC_WORLD_MAX_DISTRACTORS, p->hard_distractors);
    return MC_OK;
}

int64_t mc_world_split_count(const mc_world_params *p, int split) {
    switch (split) {
    case MC_WORLD_TRAIN: return p->per_class * MC_WORLD_NUM_CLASSES;
    case MC_WORLD_VAL: return p->val_per_class * MC_WORLD_NUM_CLASSES;
    case MC_WORLD_UNSEEN: return p->unseen_per_class * MC_WORLD_NUM_TEXTURES;
    case MC_WORLD_HARD: return p->hard_per_class * MC_WORLD_NUM_CLASSES;
    default: return 0;
    }
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* The hard split's extra draws, after all of val's (so an image's base draws follow val's
 * recipe under the hard split's own key). Each knob at 0 still draws, so turning one knob never
 * moves the others' numbers. */
static void hard_draws(const mc_world_params *p, rng *r, mc_world_sample *s) {
    /* Low contrast: the shape's colour moves towards the background's mean colour. */
    s->fade = rng_range(r, 0.0, p->hard_fade);
    for (int ch = 0; ch < 3; ch++) {
        double bgm = 0.5 * (s->bg[ch] + s->bg2[ch]);
        s->fg[ch] += s->fade * (bgm - s->fg[ch]);
    }
    /* Occlusion: a grey bar across the shape, width a fraction of its diameter, its centre line
     * within half a radius of the shape's centre. */
    s->occ_width = rng_range(r, 0.0, p->hard_occlusion) * 2.0 * s->scale;
    s->occ_angle = rng_range(r, 0.0, 180.0);
    s->occ_offset = rng_range(r, -0.5, 0.5) * s->scale;
    double grey = rng_range(r, 0.30, 0.80);
    for (int ch = 0; ch < 3; ch++) s->occ_rgb[ch] = clamp01(grey + rng_range(r, -0.04, 0.04));
    mc_world_distractor unused;
    /* Clutter: 0..hard_distractors (uniform) smaller shapes of another colour and another
     * shape, anywhere in the image; every slot draws, so the count never moves later numbers. */
    s->n_distractors = rng_int(r, p->hard_distractors + 1);
    for (int i = 0; i < p->hard_distractors; i++) {
        mc_world_distractor *d = i < s->n_distractors ? &s->distractors[i] : &unused;
        d->colour = (s->colour + 1 + rng_int(r, MC_WORLD_NUM_COLOURS - 1)) % MC_WORLD_NUM_COLOURS;
        d->shape = (s->shape + 1 + rng_int(r, MC_WORLD_NUM_SHAPES - 1)) % MC_WORLD_NUM_SHAPES;
        d->scale = rng_range(r, 0.35, 0.6) * s->scale;
        d->x = rng_range(r, d->scale + 1.0, MC_WORLD_SIZE - d->scale - 1.0);
        d->y = rng_range(r, d->scale + 1.0, MC_WORLD_SIZE - d->scale - 1.0);
        d->rotation = rng_range(r, 0.0, 360.0);
        double bright = rng_range(r, 0.85, 1.10);
        for (int ch = 0; ch < 3; ch++) {
            double c = clamp01(colour_rgb[d->colour][ch] * bright + rng_range(r, -0.07, 0.07));
            d->fg[ch] = c + s->fade * (0.5 * (s->bg[ch] + s->bg2[ch]) - c);
        }
    }
}

void mc_world_sample_at(const mc_world_params *p, int split, int64_t index, mc_world_sample *s) {
    MC_ASSERT(split >= 0 && split < MC_WORLD_NUM_SPLITS);
    MC_ASSERT(index >= 0 && index < mc_world_split_count(p, split));
    memset(s, 0, sizeof *s);
    rng r = rng_for(p->seed, split, index);
    s->split = split;
    s->index = index;
    if (split == MC_WORLD_UNSEEN) {
        /* Grouped by texture; the class is drawn uniformly. */
        s->texture = (int)(index / p->unseen_per_class);
        s->k = index % p->unseen_per_class;
        s->cls = rng_int(&r, MC_WORLD_NUM_CLASSES);
    } else {
        int64_t per = split == MC_WORLD_TRAIN ? p->per_class
                      : split == MC_WORLD_VAL ? p->val_per_class
                                              : p->hard_per_class;
        s->cls = (int)(index / per);
        s->k = index % per;
        s->texture = rng_int(&r, MC_WORLD_NUM_TEXTURES);
    }
    s->colour = s->cls / MC_WORLD_NUM_SHAPES;
    s->shape = s->cls % MC_WORLD_NUM_SHAPES;

    /* Geometry: the whole shape stays inside the image with a 1-pixel margin. */
    s->scale = rng_range(&r, 9.0, 20.0);
    s->x = rng_range(&r, s->scale + 1.0, MC_WORLD_SIZE - s->scale - 1.0);
    s->y = rng_range(&r, s->scale + 1.0, MC_WORLD_SIZE - s->scale - 1.0);
    s->rotation = rng_range(&r, 0.0, 360.0);

    /* Shape colour: the class hue with a per-channel tint and a brightness change. */
    double bright = rng_range(&r, 0.85, 1.10);
    for (int ch = 0; ch < 3; ch++)
        s->fg[ch] = clamp01(colour_rgb[s->colour][ch] * bright + rng_range(&r, -0.07, 0.07));

    /* Background: two low-saturation colours (so the shape's colour stands out), with a
     * contrast that keeps the pattern visible. */
    double g = rng_range(&r, 0.30, 0.80);
    double contrast = rng_range(&r, 0.18, 0.35) * (g > 0.55 ? -1.0 : 1.0);
    for (int ch = 0; ch < 3; ch++) {
        s->bg[ch] = clamp01(g + rng_range(&r, -0.06, 0.06));
        s->bg2[ch] = clamp01(s->bg[ch] + contrast + rng_range(&r, -0.04, 0.04));
    }
    s->tex_period = rng_range(&r, 6.0, 12.0);
    s->tex_angle = rng_range(&r, 0.0, 180.0);
    s->tex_phase[0] = rng_range(&r, 0.0, s->tex_period);
    s->tex_phase[1] = rng_range(&r, 0.0, s->tex_period);
    switch (s->texture) {
    case T_DOTTED: s->tex_aux = rng_range(&r, 0.20, 0.32); break;   /* dot radius / period */
    case T_WAVY: s->tex_aux = rng_range(&r, 1.5, 3.0); break;       /* amplitude, px */
    case T_NOISY: s->tex_aux = (double)(1 + rng_int(&r, 2)); break; /* cell size, px */
    default: s->tex_aux = 0.0; break;
    }
    s->noise = rng_range(&r, 0.0, 0.03);
    s->noise_key = rng_u64(&r);
    if (split == MC_WORLD_HARD) hard_draws(p, &r, s);
}

/* ---- rendering --------------------------------------------------------------------------- */

/* Background mix factor in [0,1] between bg (0) and bg2 (1) at pixel coordinates (px, py). */
static double texture_at(const mc_world_sample *s, double px, double py, double ca, double sa) {
    double u = px * ca + py * sa + s->tex_phase[0];
    double v = -px * sa + py * ca + s->tex_phase[1];
    double P = s->tex_period;
    switch (s->texture) {
    case T_PLAIN: return 0.0;
    case T_STRIPED: return u / P - floor(u / P) < 0.5 ? 1.0 : 0.0;
    case T_CHECKERED: {
        long iu = (long)floor(u / P), iv = (long)floor(v / P);
        return ((iu + iv) & 1) ? 1.0 : 0.0;
    }
    case T_DOTTED: {
        double du = u / P - floor(u / P) - 0.5, dv = v / P - floor(v / P) - 0.5;
        return du * du + dv * dv < s->tex_aux * s->tex_aux ? 1.0 : 0.0;
    }
    case T_WAVY: {
        double w = u + s->tex_aux * sin(2.0 * PI * v / (2.0 * P));
        return w / P - floor(w / P) < 0.5 ? 1.0 : 0.0;
    }
    case T_NOISY: {
        /* Constant per cell of tex_aux pixels (unrotated), uniform blend factor. */
        int cell = (int)s->tex_aux;
        uint64_t cx = (uint64_t)(px / cell), cy = (uint64_t)(py / cell);
        uint64_t h = mix64(s->noise_key ^ mix64(cy * 1024u + cx + 0x7f4a7c15ull));
        return (double)(h >> 11) * 0x1.0p-53;
    }
    default: MC_PANIC("bad texture %d", s->texture);
    }
}

/* Star outline: 10 vertices alternating radius 1 and 0.42, first point straight up. */
static int inside_star(double x, double y) {
    double vx[10], vy[10];
    for (int i = 0; i < 10; i++) {
        double a = PI / 2 + i * PI / 5, rad = (i & 1) ? 0.42 : 1.0;
        vx[i] = rad * cos(a);
        vy[i] = rad * sin(a);
    }
    int in = 0;
    for (int i = 0, j = 9; i < 10; j = i++) {
        if ((vy[i] > y) != (vy[j] > y) &&
            x < (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i])
            in = !in;
    }
    return in;
}

/* Is the unit-radius local point (x, y) (y up) inside the shape? */
static int inside_shape(int shape, double x, double y) {
    double r2 = x * x + y * y;
    switch (shape) {
    case S_CIRCLE: return r2 < 0.85 * 0.85;
    case S_RING: return r2 < 0.95 * 0.95 && r2 > 0.55 * 0.55;
    case S_SQUARE: return fabs(x) < 0.70 && fabs(y) < 0.70;
    case S_CROSS: return (fabs(x) < 0.28 && fabs(y) < 0.90) || (fabs(y) < 0.28 && fabs(x) < 0.90);
    case S_TRIANGLE: {
        /* Equilateral, circumradius 1, apex up: three half-planes at inradius 0.5. */
        static const double nx[3] = {0.0, 0.86602540378443865, -0.86602540378443865};
        static const double ny[3] = {-1.0, 0.5, 0.5};
        for (int i = 0; i < 3; i++)
            if (x * nx[i] + y * ny[i] > 0.5) return 0;
        return 1;
    }
    case S_STAR: return r2 < 1.0 && inside_star(x, y);
    default: MC_PANIC("bad shape %d", shape);
    }
}

/* One shape's placement: centre, 1 / circumradius and rotation. */
typedef struct {
    int shape;
    double x, y, inv, cr, sr;
} placed;

static placed place(int shape, double x, double y, double scale, double rotation) {
    double ra = rotation * PI / 180.0;
    return (placed){shape, x, y, 1.0 / scale, cos(ra), sin(ra)};
}

/* Per-image constants of the render. */
typedef struct {
    double ca, sa; /* texture rotation */
    placed obj;    /* the object */
    placed dis[MC_WORLD_MAX_DISTRACTORS];
    double on_x, on_y; /* the occluding bar's unit normal */
} render_frame;

static render_frame frame_of(const mc_world_sample *s) {
    double ta = s->tex_angle * PI / 180.0, oa = s->occ_angle * PI / 180.0;
    render_frame f = {cos(ta), sin(ta),  place(s->shape, s->x, s->y, s->scale, s->rotation),
                      {{0}},   -sin(oa), cos(oa)};
    for (int i = 0; i < s->n_distractors; i++) {
        const mc_world_distractor *d = &s->distractors[i];
        f.dis[i] = place(d->shape, d->x, d->y, d->scale, d->rotation);
    }
    return f;
}

/* Does the placed shape cover the image point (fx, fy) (pixel coordinates, y down)? */
static int covers(const placed *p, double fx, double fy) {
    /* Local shape coordinates: y up, rotated by -rotation. */
    double dx = (fx - p->x) * p->inv, dy = (p->y - fy) * p->inv;
    double lx = dx * p->cr + dy * p->sr, ly = -dx * p->sr + dy * p->cr;
    return dx * dx + dy * dy < 1.0 && inside_shape(p->shape, lx, ly);
}

/* Does the hard image's occluding bar cover (fx, fy)? */
static int occluded(const mc_world_sample *s, const render_frame *f, double fx, double fy) {
    if (s->occ_width <= 0) return 0;
    double d = (fx - s->x) * f->on_x + (fy - s->y) * f->on_y - s->occ_offset;
    return fabs(d) < 0.5 * s->occ_width;
}

void mc_world_render(const mc_world_sample *s, uint8_t *rgb) {
    const int N = MC_WORLD_SIZE;
    render_frame f = frame_of(s);
    for (int py = 0; py < N; py++) {
        for (int px = 0; px < N; px++) {
            double acc[3] = {0, 0, 0};
            for (int sy = 0; sy < SUPERSAMPLE; sy++) {
                for (int sx = 0; sx < SUPERSAMPLE; sx++) {
                    double fx = px + (sx + 0.5) / SUPERSAMPLE, fy = py + (sy + 0.5) / SUPERSAMPLE;
                    const double *col = NULL;
                    double mixed[3];
                    /* Front to back: the bar, the object, the distractors (the last on top). */
                    if (occluded(s, &f, fx, fy)) {
                        col = s->occ_rgb;
                    } else if (covers(&f.obj, fx, fy)) {
                        col = s->fg;
                    } else {
                        for (int i = s->n_distractors - 1; i >= 0 && !col; i--)
                            if (covers(&f.dis[i], fx, fy)) col = s->distractors[i].fg;
                    }
                    if (!col) {
                        double t = texture_at(s, fx, fy, f.ca, f.sa);
                        for (int ch = 0; ch < 3; ch++)
                            mixed[ch] = s->bg[ch] + t * (s->bg2[ch] - s->bg[ch]);
                        col = mixed;
                    }
                    for (int ch = 0; ch < 3; ch++) acc[ch] += col[ch];
                }
            }
            for (int ch = 0; ch < 3; ch++) {
                double v = acc[ch] / (SUPERSAMPLE * SUPERSAMPLE);
                /* Additive Gaussian noise, Box-Muller on two counter-keyed uniforms. */
                uint64_t h = mix64(s->noise_key +
                                   0x632be59bd9b4e019ull * (uint64_t)((py * N + px) * 3 + ch + 1));
                double u1 = ((double)(h >> 11) + 0.5) * 0x1.0p-53;
                double u2 = (double)(mix64(h) >> 11) * 0x1.0p-53;
                v += s->noise * sqrt(-2.0 * log(u1)) * cos(2.0 * PI * u2);
                rgb[(py * N + px) * 3 + ch] = (uint8_t)floor(clamp01(v) * 255.0 + 0.5);
            }
        }
    }
}

void mc_world_render_mask(const mc_world_sample *s, uint8_t *mask) {
    const int N = MC_WORLD_SIZE, S2 = SUPERSAMPLE * SUPERSAMPLE;
    render_frame f = frame_of(s);
    for (int py = 0; py < N; py++) {
        for (int px = 0; px < N; px++) {
            int n = 0;
            for (int sy = 0; sy < SUPERSAMPLE; sy++)
                for (int sx = 0; sx < SUPERSAMPLE; sx++) {
                    double fx = px + (sx + 0.5) / SUPERSAMPLE, fy = py + (sy + 0.5) / SUPERSAMPLE;
                    n += covers(&f.obj, fx, fy) && !occluded(s, &f, fx, fy);
                }
            mask[py * N + px] = (uint8_t)((n * 255 + S2 / 2) / S2);
        }
    }
}

/* Binary (0/255) mask of the pixels where the background texture shows on more than half of the
 * render samples (the complement of the object, the bar and the distractors). */
static void background_mask(const mc_world_sample *s, uint8_t *mask) {
    const int N = MC_WORLD_SIZE, S2 = SUPERSAMPLE * SUPERSAMPLE;
    render_frame f = frame_of(s);
    for (int py = 0; py < N; py++) {
        for (int px = 0; px < N; px++) {
            int n = 0;
            for (int sy = 0; sy < SUPERSAMPLE; sy++)
                for (int sx = 0; sx < SUPERSAMPLE; sx++) {
                    double fx = px + (sx + 0.5) / SUPERSAMPLE, fy = py + (sy + 0.5) / SUPERSAMPLE;
                    int hit = occluded(s, &f, fx, fy) || covers(&f.obj, fx, fy);
                    for (int i = 0; i < s->n_distractors && !hit; i++)
                        hit = covers(&f.dis[i], fx, fy);
                    n += !hit;
                }
            mask[py * N + px] = 2 * n > S2 ? 255 : 0; /* as 255 - fg where nothing else lies */
        }
    }
}

/* ---- files ------------------------------------------------------------------------------- */

int mc_world_sample_path(const mc_world_sample *s, char *buf, size_t cap) {
    char dir[64];
    if (s->split == MC_WORLD_UNSEEN)
        mc_strlcpy(dir, texture_names[s->texture], sizeof dir);
    else
        mc_world_class_dir(s->cls, dir, sizeof dir);
    return mc_snprintf(buf, cap, "%s/%s/%05lld.png", split_names[s->split], dir, (long long)s->k);
}

int mc_world_sample_json(const mc_world_sample *s, char *buf, size_t cap) {
    char path[256], name[64];
    if (!mc_world_sample_path(s, path, sizeof path)) return 0;
    mc_world_class_name(s->cls, name, sizeof name);
    double r = s->scale;
    /* The shape lies inside the circle of radius `scale` around (x, y): bbox is that square,
     * clipped to the image (it never needs clipping: the centre keeps a 1-pixel margin). */
    return mc_snprintf(
        buf, cap,
        "{\"path\":\"%s\",\"split\":\"%s\",\"index\":%lld,\"label\":%d,\"class\":\"%s\","
        "\"colour\":\"%s\",\"shape\":\"%s\",\"texture\":\"%s\",\"x\":%.4f,\"y\":%.4f,"
        "\"scale\":%.4f,\"rotation\":%.4f,\"bbox\":[%.4f,%.4f,%.4f,%.4f],"
        "\"fg\":[%.4f,%.4f,%.4f],\"bg\":[%.4f,%.4f,%.4f],\"bg2\":[%.4f,%.4f,%.4f],"
        "\"texture_period\":%.4f,\"texture_angle\":%.4f,\"texture_aux\":%.4f,\"noise\":%.5f}",
        path, split_names[s->split], (long long)s->index, s->cls, name, colour_names[s->colour],
        shape_names[s->shape], texture_names[s->texture], s->x, s->y, s->scale, s->rotation,
        s->x - r, s->y - r, s->x + r, s->y + r, s->fg[0], s->fg[1], s->fg[2], s->bg[0], s->bg[1],
        s->bg[2], s->bg2[0], s->bg2[1], s->bg2[2], s->tex_period, s->tex_angle, s->tex_aux,
        s->noise);
}

/* sample_json plus, for a hard image, what made it hard (docs/world.md, "The hard split"). */
static int sample_json_full(const mc_world_sample *s, char *buf, size_t cap) {
    if (!mc_world_sample_json(s, buf, cap)) return 0;
    if (s->split != MC_WORLD_HARD) return 1;
    size_t n = strlen(buf) - 1; /* overwrite the closing brace */
    if (!mc_snprintf(buf + n, cap - n,
                     ",\"fade\":%.4f,\"occluder\":{\"width\":%.4f,\"angle\":%.4f,"
                     "\"offset\":%.4f,\"rgb\":[%.4f,%.4f,%.4f]},\"distractors\":[",
                     s->fade, s->occ_width, s->occ_angle, s->occ_offset, s->occ_rgb[0],
                     s->occ_rgb[1], s->occ_rgb[2]))
        return 0;
    for (int i = 0; i < s->n_distractors; i++) {
        const mc_world_distractor *d = &s->distractors[i];
        n = strlen(buf);
        if (!mc_snprintf(buf + n, cap - n,
                         "%s{\"colour\":\"%s\",\"shape\":\"%s\",\"x\":%.4f,\"y\":%.4f,"
                         "\"scale\":%.4f,\"rotation\":%.4f,\"fg\":[%.4f,%.4f,%.4f]}",
                         i ? "," : "", colour_names[d->colour], shape_names[d->shape], d->x, d->y,
                         d->scale, d->rotation, d->fg[0], d->fg[1], d->fg[2]))
            return 0;
    }
    n = strlen(buf);
    return mc_snprintf(buf + n, cap - n, "]}");
}

/* A growing text buffer for the list files and attributes. */
typedef struct {
    char *data;
    size_t len, cap;
} text_buf;

static mc_status text_append(text_buf *b, const char *s, mc_error *err) {
    size_t n = strlen(s), need;
    if (!mc_size_add(b->len, n + 1, &need))
        return MC_FAIL(err, MC_ERR_NOMEM, "world: text too large");
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return MC_FAIL(err, MC_ERR_NOMEM, "world: out of memory for %zu bytes", cap);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
    return MC_OK;
}

static mc_status write_text(const char *dir, const char *name, const text_buf *b, mc_error *err) {
    char path[4096];
    if (!mc_path_join(path, sizeof path, dir, name))
        return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s/%s", dir, name);
    return mc_write_file_atomic(path, b->len ? b->data : "", b->len, err);
}

/* Words that name nothing in the world: the concept set's negatives. */
static const char *const distractors[] = {
    "dog",    "cat",   "car",     "tree",  "house",    "bird",   "flower", "water",
    "music",  "book",  "chair",   "cloud", "mountain", "metal",  "wood",   "glass",
    "smooth", "shiny", "fuzzy",   "face",  "number",   "letter", "pink",   "brown",
    "black",  "white", "hexagon", "arrow", "heart",    "spiral"};

mc_status mc_world_write_lists(const char *out, const mc_world_params *p, mc_error *err) {
    text_buf b = {0};
    mc_status s = MC_OK;
    char line[512], name[64];
#define APPEND(str)                                                                                \
    do {                                                                                           \
        if ((s = text_append(&b, (str), err)) != MC_OK) goto done;                                 \
    } while (0)
#define FLUSH(fname)                                                                               \
    do {                                                                                           \
        if ((s = write_text(out, (fname), &b, err)) != MC_OK) goto done;                           \
        b.len = 0;                                                                                 \
    } while (0)
    for (int c = 0; c < MC_WORLD_NUM_CLASSES; c++) {
        mc_world_class_name(c, name, sizeof name);
        snprintf(line, sizeof line, "%s\n", name);
        APPEND(line);
    }
    FLUSH("classes.txt");
    for (int t = 0; t < MC_WORLD_NUM_TEXTURES; t++) {
        snprintf(line, sizeof line, "%s\n", texture_names[t]);
        APPEND(line);
    }
    FLUSH("textures.txt");
    for (int i = 0; i < MC_WORLD_NUM_COLOURS; i++) {
        snprintf(line, sizeof line, "%s\n", colour_names[i]);
        APPEND(line);
    }
    FLUSH("colours.txt");
    for (int i = 0; i < MC_WORLD_NUM_SHAPES; i++) {
        snprintf(line, sizeof line, "%s\n", shape_names[i]);
        APPEND(line);
    }
    FLUSH("shapes.txt");
    /* concepts.txt: colours, shapes, textures, "<colour> <shape>" phrases, "<texture>
     * background" phrases, then distractors. */
    for (int i = 0; i < MC_WORLD_NUM_COLOURS; i++) {
        snprintf(line, sizeof line, "%s\n", colour_names[i]);
        APPEND(line);
    }
    for (int i = 0; i < MC_WORLD_NUM_SHAPES; i++) {
        snprintf(line, sizeof line, "%s\n", shape_names[i]);
        APPEND(line);
    }
    for (int i = 0; i < MC_WORLD_NUM_TEXTURES; i++) {
        snprintf(line, sizeof line, "%s\n", texture_names[i]);
        APPEND(line);
    }
    for (int c = 0; c < MC_WORLD_NUM_CLASSES; c++) {
        mc_world_class_name(c, name, sizeof name);
        snprintf(line, sizeof line, "%s\n", name);
        APPEND(line);
    }
    for (int i = 0; i < MC_WORLD_NUM_TEXTURES; i++) {
        snprintf(line, sizeof line, "%s background\n", texture_names[i]);
        APPEND(line);
    }
    for (size_t i = 0; i < sizeof distractors / sizeof distractors[0]; i++) {
        snprintf(line, sizeof line, "%s\n", distractors[i]);
        APPEND(line);
    }
    FLUSH("concepts.txt");
    snprintf(line, sizeof line,
             "{\"generator\":\"miclip world make\",\"version\":1,\"seed\":%llu,\"size\":%d,"
             "\"per_class\":%lld,\"val_per_class\":%lld,\"unseen_per_class\":%lld,"
             "\"classes\":%d,\"textures\":%d}\n",
             (unsigned long long)p->seed, MC_WORLD_SIZE, (long long)p->per_class,
             (long long)p->val_per_class, (long long)p->unseen_per_class, MC_WORLD_NUM_CLASSES,
             MC_WORLD_NUM_TEXTURES);
    /* The hard split's fields only when it has images, so other worlds keep their bytes. */
    if (p->hard_per_class > 0)
        snprintf(line + strlen(line) - 2, sizeof line - strlen(line) + 2,
                 ",\"hard_per_class\":%lld,\"hard_fade\":%.17g,\"hard_occlusion\":%.17g,"
                 "\"hard_distractors\":%d}\n",
                 (long long)p->hard_per_class, p->hard_fade, p->hard_occlusion,
                 p->hard_distractors);
    APPEND(line);
    FLUSH("world.json");
    /* attributes.jsonl per split, in index order. */
    for (int split = 0; split < MC_WORLD_NUM_SPLITS; split++) {
        int64_t n = mc_world_split_count(p, split);
        char js[4096], fname[128];
        if (split == MC_WORLD_HARD && n == 0) continue; /* no hard split unless asked */
        for (int64_t i = 0; i < n; i++) {
            mc_world_sample smp;
            mc_world_sample_at(p, split, i, &smp);
            MC_ASSERT(sample_json_full(&smp, js, sizeof js - 1));
            strcat(js, "\n");
            APPEND(js);
        }
        snprintf(fname, sizeof fname, "%s/attributes.jsonl", split_names[split]);
        FLUSH(fname);
    }
#undef APPEND
#undef FLUSH
done:
    free(b.data);
    return s;
}

mc_status mc_world_make_dirs(const char *out, const mc_world_params *p, mc_error *err) {
    char path[4096], dir[64];
    for (int split = 0; split < MC_WORLD_NUM_SPLITS; split++) {
        /* An empty split still gets its folder and an empty attributes.jsonl. */
        if (split == MC_WORLD_HARD && mc_world_split_count(p, split) == 0) continue;
        if (!mc_path_join(path, sizeof path, out, split_names[split]))
            return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out);
        MC_TRY(mc_mkdir_p(path, err));
        if (mc_world_split_count(p, split) == 0) continue;
        int n = split == MC_WORLD_UNSEEN ? MC_WORLD_NUM_TEXTURES : MC_WORLD_NUM_CLASSES;
        for (int i = 0; i < n; i++) {
            if (split == MC_WORLD_UNSEEN)
                mc_strlcpy(dir, texture_names[i], sizeof dir);
            else
                mc_world_class_dir(i, dir, sizeof dir);
            if (!mc_snprintf(path, sizeof path, "%s/%s/%s", out, split_names[split], dir))
                return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out);
            MC_TRY(mc_mkdir_p(path, err));
            if (!p->masks) continue;
            if (!mc_snprintf(path, sizeof path, "%s/masks/%s/%s", out, split_names[split], dir))
                return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out);
            MC_TRY(mc_mkdir_p(path, err));
        }
    }
    return MC_OK;
}

/* The concept masks of one image (Network Dissection's layout, docs/baselines.md):
 * DIR/masks/<split>/<folder>/NNNNN/<concept>.png, binary 0/255, for the five concepts the image
 * shows: its colour, its shape and "<colour> <shape>" on the shape's pixels, its texture and
 * "<texture> background" on the rest. A pixel belongs to the shape when at least half of its 16
 * render samples are inside (coverage >= 128). rel is the image's path under DIR. */
static mc_status write_concept_masks(const char *out_dir, const char *rel,
                                     const mc_world_sample *smp, const uint8_t *cover,
                                     mc_error *err) {
    enum { NP = MC_WORLD_SIZE * MC_WORLD_SIZE };
    uint8_t fg[NP], bg[NP];
    for (int i = 0; i < NP; i++) fg[i] = cover[i] >= 128 ? 255 : 0, bg[i] = (uint8_t)(255 - fg[i]);
    /* A hard image's texture shows only where neither the bar nor a distractor lies. */
    if (smp->split == MC_WORLD_HARD) background_mask(smp, bg);
    char dir[4096], path[4400], names[5][96];
    size_t n = strlen(rel);
    if (n < 4 || strcmp(rel + n - 4, ".png") ||
        !mc_snprintf(dir, sizeof dir, "%s/masks/%.*s", out_dir, (int)(n - 4), rel))
        return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out_dir);
    MC_TRY(mc_mkdir_p(dir, err));
    snprintf(names[0], sizeof names[0], "%s", colour_names[smp->colour]);
    snprintf(names[1], sizeof names[1], "%s", shape_names[smp->shape]);
    mc_world_class_name(smp->cls, names[2], sizeof names[2]);
    snprintf(names[3], sizeof names[3], "%s", texture_names[smp->texture]);
    snprintf(names[4], sizeof names[4], "%s background", texture_names[smp->texture]);
    for (int k = 0; k < 5; k++) {
        if (!mc_snprintf(path, sizeof path, "%s/%s.png", dir, names[k]))
            return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out_dir);
        MC_TRY(mc_image_write_png(path, k < 3 ? fg : bg, MC_WORLD_SIZE, MC_WORLD_SIZE, 1, err));
    }
    return MC_OK;
}

int64_t mc_world_total(const mc_world_params *p) {
    int64_t total = 0;
    for (int i = 0; i < MC_WORLD_NUM_SPLITS; i++) total += mc_world_split_count(p, i);
    return total;
}

void mc_world_locate(const mc_world_params *p, int64_t g, int *split, int64_t *index) {
    MC_ASSERT(g >= 0 && g < mc_world_total(p));
    int sp = 0;
    while (g >= mc_world_split_count(p, sp)) g -= mc_world_split_count(p, sp++);
    *split = sp;
    *index = g;
}

void mc_world_generate(const mc_world_params *p, int split, int64_t index, mc_world_sample *s,
                       uint8_t *rgb, uint8_t *mask) {
    mc_world_sample_at(p, split, index, s);
    mc_world_render(s, rgb);
    if (mask) mc_world_render_mask(s, mask);
}

mc_status mc_world_write_item(const char *out_dir, const mc_world_params *p, int split,
                              int64_t index, mc_error *err) {
    uint8_t rgb[MC_WORLD_SIZE * MC_WORLD_SIZE * 3], mask[MC_WORLD_SIZE * MC_WORLD_SIZE];
    char rel[256], path[4096];
    mc_world_sample smp;
    mc_world_generate(p, split, index, &smp, rgb, p->masks ? mask : NULL);
    if (!mc_world_sample_path(&smp, rel, sizeof rel) ||
        !mc_path_join(path, sizeof path, out_dir, rel))
        return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out_dir);
    MC_TRY(mc_image_write_png(path, rgb, MC_WORLD_SIZE, MC_WORLD_SIZE, 3, err));
    if (!p->masks) return MC_OK;
    if (!mc_snprintf(path, sizeof path, "%s/masks/%s", out_dir, rel))
        return MC_FAIL(err, MC_ERR_ARG, "world: output path too long: %s", out_dir);
    MC_TRY(mc_image_write_png(path, mask, MC_WORLD_SIZE, MC_WORLD_SIZE, 1, err));
    return write_concept_masks(out_dir, rel, &smp, mask, err);
}
