/* image.h - image decoding and Hugging Face-exact preprocessing.
 *
 * Decoding: JPEG with libjpeg-turbo using the settings Pillow uses by default (ISLOW DCT,
 * fancy upsampling), so decoded pixels equal PIL's exactly; PNG with stb_image built for PNG
 * only. The format is sniffed from the magic bytes, never from the file name. Every image is
 * converted to 8-bit RGB exactly as PIL's Image.convert("RGB") does (grayscale replicated,
 * alpha dropped, palettes expanded, 16-bit PNG as Pillow reads it, CMYK/YCCK JPEG through
 * Pillow's inverted-CMYK convention). Dimensions are read from the header and checked against
 * mc_image_caps before any pixel buffer is allocated. EXIF orientation is NOT applied (as
 * torchvision's ImageFolder and a PIL image handed to a processor: see docs/preprocessing.md).
 *
 * Preprocessing: a model folder's preprocessor_config.json (ViTImageProcessor,
 * CLIPImageProcessor, ConvNextImageProcessor and their legacy *FeatureExtractor names) is
 * parsed into an mc_preproc; mc_preprocess then runs the processor's steps with Pillow's
 * fixed-point resampling (bit-exact uint8 results), Hugging Face's crop rounding, float64
 * rescale and float32 normalisation, writing float32 CHW (channels R, G, B).
 *
 * Errors: unreadable files give MC_ERR_IO, malformed or truncated ones MC_ERR_FORMAT, valid
 * but unhandled ones (other formats, too large) MC_ERR_UNSUPPORTED; every message names the
 * file. Nothing here keeps global state; all functions are thread-safe on distinct objects.
 */
#ifndef MICLIP_IMAGE_H
#define MICLIP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

/* An 8-bit RGB image, rows top to bottom, pixels interleaved R,G,B. Owns data. */
typedef struct {
    int w, h;
    uint8_t *data; /* w*h*3 bytes, malloc'ed; freed by mc_image_free */
} mc_image;

/* Limits checked before decoding. Zero fields mean "use the default". */
typedef struct {
    uint64_t max_pixels;     /* w*h cap; default MC_IMAGE_DEFAULT_MAX_PIXELS */
    uint64_t max_file_bytes; /* default MC_IMAGE_DEFAULT_MAX_FILE_BYTES */
    int max_jpeg_scans;      /* progressive JPEG scan cap; default MC_IMAGE_DEFAULT_MAX_SCANS */
} mc_image_caps;

#define MC_IMAGE_DEFAULT_MAX_PIXELS (100u * 1000u * 1000u)
#define MC_IMAGE_DEFAULT_MAX_FILE_BYTES (256ull << 20)
#define MC_IMAGE_DEFAULT_MAX_SCANS 256

/* Sniffed container format. */
typedef enum { MC_IMAGE_FMT_UNKNOWN = 0, MC_IMAGE_FMT_JPEG, MC_IMAGE_FMT_PNG } mc_image_format;
mc_image_format mc_image_sniff(const uint8_t *buf, size_t len);

/* Allocates a w x h RGB image (contents undefined). MC_ERR_NOMEM on overflow or failure. */
mc_status mc_image_alloc(int w, int h, mc_image *img, mc_error *err);

/* Reads and decodes path into *img (caller frees with mc_image_free). caps may be NULL. */
mc_status mc_image_load(const char *path, const mc_image_caps *caps, mc_image *img, mc_error *err);

/* Decodes an in-memory file; `label` names it in error messages. buf is borrowed. */
mc_status mc_image_decode(const uint8_t *buf, size_t len, const char *label,
                          const mc_image_caps *caps, mc_image *img, mc_error *err);

/* Frees img->data and zeroes *img. Accepts NULL and an already-freed image. */
void mc_image_free(mc_image *img);

/* ------------------------------------------------------------------------------------------ */
/* Pillow resampling (Image.resize without reducing_gap). Codes are PIL's. */
typedef enum {
    MC_RESAMPLE_NEAREST = 0,
    MC_RESAMPLE_LANCZOS = 1,
    MC_RESAMPLE_BILINEAR = 2,
    MC_RESAMPLE_BICUBIC = 3,
    MC_RESAMPLE_BOX = 4,
    MC_RESAMPLE_HAMMING = 5
} mc_resample;

/* Resizes src to out_w x out_h into *dst (allocated here; caller frees). Bit-exact with
 * Pillow 9.x Image.resize((out_w, out_h), resample) on an RGB image. */
mc_status mc_image_resize(const mc_image *src, int out_w, int out_h, mc_resample filter,
                          mc_image *dst, mc_error *err);

/* ------------------------------------------------------------------------------------------ */
/* A parsed preprocessor_config.json. Plain data: fill it by hand in tests if you like. */
typedef enum {
    MC_PREPROC_VIT = 0, /* ViTImageProcessor: resize to height x width, no crop (crop keys are
                            ignored, as the processor ignores them) */
    MC_PREPROC_CLIP,    /* CLIPImageProcessor: shortest-edge resize, center crop */
    MC_PREPROC_CONVNEXT /* ConvNextImageProcessor: shortest_edge + crop_pct (ResNet uses it) */
} mc_preproc_kind;

typedef struct {
    mc_preproc_kind kind;
    bool do_resize;
    int size_h, size_w; /* when size is {"height","width"}; else 0 */
    int shortest_edge;  /* when size is {"shortest_edge"}; else 0 */
    mc_resample resample;
    bool do_center_crop;
    int crop_h, crop_w;
    double crop_pct; /* ConvNext only */
    bool do_rescale;
    double rescale_factor;
    bool do_normalize;
    float mean[3], std[3]; /* float32, as Hugging Face casts them */
} mc_preproc;

/* Fills *p with a processor's defaults (the values its __init__ uses for missing keys). */
void mc_preproc_defaults(mc_preproc_kind kind, mc_preproc *p);

/* Writes a canonical one-line description of every field into buf (for provenance and cache
 * keys: two configs that preprocess identically describe identically). Returns false if cap
 * is too small. */
bool mc_preproc_describe(const mc_preproc *p, char *buf, size_t cap);

/* Parses model_dir/preprocessor_config.json. The processor class comes from
 * image_processor_type (or feature_extractor_type); unknown classes are MC_ERR_UNSUPPORTED. */
mc_status mc_preproc_load(const char *model_dir, mc_preproc *p, mc_error *err);
/* Same from a JSON file path (label for messages = path). */
mc_status mc_preproc_load_file(const char *json_path, mc_preproc *p, mc_error *err);

/* The resized (before crop) and final output size for an in_w x in_h input. The final size is
 * fixed (independent of the input) whenever a crop or a height/width resize is configured; use
 * mc_preproc_fixed_size to get it up front (returns false if it depends on the input). */
mc_status mc_preproc_output_size(const mc_preproc *p, int in_w, int in_h, int *out_h, int *out_w,
                                 mc_error *err);
bool mc_preproc_fixed_size(const mc_preproc *p, int *out_h, int *out_w);

/* Runs the steps on one RGB image; out receives 3*out_h*out_w floats (CHW), as sized by
 * mc_preproc_output_size. Optional: u8_out (if not NULL) receives the cropped uint8 image
 * (HWC, out_h*out_w*3), which the tests compare with Pillow directly. */
mc_status mc_preprocess(const mc_preproc *p, const mc_image *img, float *out, uint8_t *u8_out,
                        mc_error *err);

/* Batch helper: loads and preprocesses n files into out[n][3][H][W]. All outputs must have the
 * same size (mc_preproc_fixed_size true), else MC_ERR_UNSUPPORTED. caps may be NULL. The first
 * failing file ends the batch with its error. */
mc_status mc_preprocess_files(const mc_preproc *p, const char *const *paths, size_t n,
                              const mc_image_caps *caps, float *out, mc_error *err);

#endif
