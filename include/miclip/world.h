/* world.h - the tiny world: a procedurally generated, labelled image world with known ground
 * truth (design.md, "The tiny world"; docs/world.md).
 *
 * Each image is 64x64 RGB: one coloured shape on a textured background. The class is
 * "<colour> <shape>" (6 colours x 6 shapes = 36 classes); the background texture (6 kinds) is the
 * unseen concept set, the analogue of DTD for CLIP zero-shot. Position, scale, rotation, tint,
 * texture colours, texture geometry and pixel noise vary per image.
 *
 * Determinism: every image is a pure function of (seed, split, index). Its parameters come from a
 * counter-based generator keyed by that triple (mc_world_sample_at), and rendering uses no other
 * randomness, so the work can be split over ranks by index and the bytes do not change with the
 * rank count.
 *
 * No MPI here: the generator is pure functions of (params, split, index) plus writers of one
 * image and of the lists. Who writes which image, and agreeing on errors and stop signals, is
 * the caller's: `miclip world make` (src/cli/cmd_world.c) splits the images over MPI ranks;
 * tools/world/world_gen.c, a standalone driver built with gcc alone, splits them over processes.
 *
 * Layout (ImageFolder):
 *   DIR/train/<colour>_<shape>/NNNNN.png    per_class images per class
 *   DIR/val/<colour>_<shape>/NNNNN.png      val_per_class images per class
 *   DIR/unseen/<texture>/NNNNN.png          unseen_per_class images per texture (random class)
 *   DIR/hard/<colour>_<shape>/NNNNN.png     hard_per_class images per class (only when > 0)
 *   DIR/<split>/attributes.jsonl            one JSON object per image, in index order
 *   DIR/classes.txt, textures.txt, colours.txt, shapes.txt, concepts.txt, world.json
 *   DIR/masks/<split>/<folder>/NNNNN.png    with params.masks: the shape's coverage, 8-bit grey
 * Class index = line of classes.txt = sorted order of the folder names (torchvision ImageFolder's
 * order), so labels agree with id2label of the world's models.
 */
#ifndef MICLIP_WORLD_H
#define MICLIP_WORLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

#define MC_WORLD_SIZE 64 /* image width and height in pixels */
#define MC_WORLD_NUM_COLOURS 6
#define MC_WORLD_NUM_SHAPES 6
#define MC_WORLD_NUM_TEXTURES 6
#define MC_WORLD_NUM_CLASSES (MC_WORLD_NUM_COLOURS * MC_WORLD_NUM_SHAPES)
#define MC_WORLD_MAX_PER_CLASS 1000000
#define MC_WORLD_MAX_DISTRACTORS 8

typedef enum {
    MC_WORLD_TRAIN = 0,
    MC_WORLD_VAL = 1,
    MC_WORLD_UNSEEN = 2,
    MC_WORLD_HARD = 3, /* the val distribution made harder (mc_world_hard); absent unless asked */
    MC_WORLD_NUM_SPLITS
} mc_world_split;

typedef struct {
    uint64_t seed;
    int64_t per_class;        /* train images per class */
    int64_t val_per_class;    /* val images per class */
    int64_t unseen_per_class; /* unseen images per texture */
    int masks;                /* also write DIR/masks/<split>/<folder>/NNNNN.png (output only:
                                 does not change any image) */
    /* The hard split (docs/world.md, "The hard split"): hard_per_class images per class drawn as
     * val's, then made harder by three knobs, each 0 = off. No other split depends on them. */
    int64_t hard_per_class;
    double hard_fade;      /* the shape's colour moves towards the background's by U(0, fade) */
    double hard_occlusion; /* a grey bar of width U(0, occlusion) x the shape's diameter on top */
    int hard_distractors;  /* up to this many (uniform) smaller shapes of another colour and
                              shape, behind it */
} mc_world_params;

/* One distractor shape of a hard image: never the object's colour, never its shape. */
typedef struct {
    int colour, shape;
    double x, y, scale, rotation, fg[3];
} mc_world_distractor;

/* Everything that determines one image (and its attributes). Plain data. */
typedef struct {
    int split;     /* mc_world_split */
    int64_t index; /* index within the split */
    int64_t k;     /* index within its folder (the file number) */
    int cls, colour, shape, texture;
    double x, y;          /* shape centre in pixels (0,0 = top-left corner of the image) */
    double scale;         /* circumradius of the shape in pixels */
    double rotation;      /* degrees, counter-clockwise as seen on screen */
    double fg[3];         /* shape colour, RGB in [0,1] */
    double bg[3], bg2[3]; /* the texture's two colours */
    double tex_period;    /* pixels (stripes, checks, dots, waves) */
    double tex_angle;     /* degrees */
    double tex_phase[2];  /* offsets in pixels */
    double tex_aux;       /* dot radius / period, wave amplitude in px, noise cell in px */
    double noise;         /* standard deviation of the additive pixel noise, in [0,1] units */
    uint64_t noise_key;   /* key of the per-pixel noise */
    /* hard split only (all zero elsewhere) */
    double fade;                  /* fg = base + fade * (background mean - base) */
    double occ_width;             /* occluding bar's width in pixels (0: none) */
    double occ_angle, occ_offset; /* its direction (degrees) and signed distance from (x, y) */
    double occ_rgb[3];            /* its grey */
    int n_distractors;
    mc_world_distractor distractors[MC_WORLD_MAX_DISTRACTORS];
} mc_world_sample;

/* Names (static strings; index out of range gives NULL). */
const char *mc_world_colour_name(int i);
const char *mc_world_shape_name(int i);
const char *mc_world_texture_name(int i);
const char *mc_world_split_name(int split);
/* The colour's base RGB in [0,1] (a shape's colour is this, tinted per image); false out of range. */
bool mc_world_colour_rgb(int i, double rgb[3]);
/* "<colour> <shape>" and its folder name "<colour>_<shape>" for class c into buf. */
void mc_world_class_name(int c, char *buf, size_t cap);
void mc_world_class_dir(int c, char *buf, size_t cap);

/* Checks the counts (each in 0..MC_WORLD_MAX_PER_CLASS, train >= 1) and the hard knobs. */
mc_status mc_world_params_check(const mc_world_params *p, mc_error *err);
/* Number of images in a split. */
int64_t mc_world_split_count(const mc_world_params *p, int split);
/* The parameters of image `index` of `split` (0 <= index < mc_world_split_count). */
void mc_world_sample_at(const mc_world_params *p, int split, int64_t index, mc_world_sample *s);
/* Renders s into rgb (MC_WORLD_SIZE*MC_WORLD_SIZE*3 bytes, HWC). */
void mc_world_render(const mc_world_sample *s, uint8_t *rgb);
/* The shape's ground-truth mask: per pixel, the fraction of its 4x4 render samples the shape
 * covers and shows (a hard image's occluding bar hides what it covers; distractors lie behind
 * the shape), as 0..255 (255 = fully inside; the same geometry as mc_world_render). mask holds
 * MC_WORLD_SIZE*MC_WORLD_SIZE bytes. */
void mc_world_render_mask(const mc_world_sample *s, uint8_t *mask);
/* Reads DIR/world.json (written by mc_world_write_lists) into *p, so that the attributes of any
 * image of that world follow from mc_world_sample_at without parsing attributes.jsonl. */
mc_status mc_world_load_params(const char *dir, mc_world_params *p, mc_error *err);
/* Relative path "train/red_circle/00012.png" into buf; false if it does not fit. */
int mc_world_sample_path(const mc_world_sample *s, char *buf, size_t cap);
/* One JSON object (no newline) with the sample's attributes into buf; false if it does not fit. */
int mc_world_sample_json(const mc_world_sample *s, char *buf, size_t cap);

/* --- writing a world (every function below is local: no MPI) ----------------------------
 * A whole world is: mc_world_make_dirs; mc_world_write_item for every image g in
 * [0, mc_world_total), in any order, split over any number of processes; then, once all are
 * written, mc_world_write_lists (once). Every file is written atomically and its bytes depend only
 * on the params, so a rerun after a stop writes the same world. */

/* Creates DIR, every split folder and its class (or texture) folders, and with masks the
 * DIR/masks/... folders. Idempotent (mkdir -p): every process may call it. */
mc_status mc_world_make_dirs(const char *out_dir, const mc_world_params *p, mc_error *err);
/* Number of images of all splits; they are numbered train, then val, then unseen. */
int64_t mc_world_total(const mc_world_params *p);
/* The split and the index within it of image g (0 <= g < mc_world_total). */
void mc_world_locate(const mc_world_params *p, int64_t g, int *split, int64_t *index);
/* Image `index` of `split`: its parameters and labels into *s, its pixels into rgb
 * (MC_WORLD_SIZE^2 * 3 bytes, HWC) and, if mask is not NULL, its shape coverage into mask
 * (MC_WORLD_SIZE^2 bytes). A pure function of (p->seed, split, index). */
void mc_world_generate(const mc_world_params *p, int split, int64_t index, mc_world_sample *s,
                       uint8_t *rgb, uint8_t *mask);
/* Writes image `index` of `split` as DIR/<split>/<folder>/NNNNN.png and, with p->masks, its
 * coverage mask and concept masks (docs/world.md); the folders must exist (mc_world_make_dirs). */
mc_status mc_world_write_item(const char *out_dir, const mc_world_params *p, int split,
                              int64_t index, mc_error *err);
/* Writes classes.txt, textures.txt, colours.txt, shapes.txt, concepts.txt, world.json and every
 * split's attributes.jsonl (in index order). Call it once, after the images. */
mc_status mc_world_write_lists(const char *out_dir, const mc_world_params *p, mc_error *err);

#endif
