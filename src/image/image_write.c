/* image_write.c - PNG encoding through stb_image_write (the one translation unit that compiles
 * its implementation; static, so no stb symbol leaves this file). */
#include "miclip/image_write.h"

#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
/* The static build declares writers this file never uses; that is not a defect here. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

/* A growing byte buffer filled by stb's write callback. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} png_buf;

static void png_buf_append(void *ctx, void *data, int size) {
    png_buf *b = ctx;
    if (b->failed || size <= 0) return;
    size_t need = b->len + (size_t)size;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need) cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len = need;
}

mc_status mc_image_encode_png(const uint8_t *pixels, int w, int h, int channels, uint8_t **out,
                              size_t *len, mc_error *err) {
    *out = NULL;
    *len = 0;
    if (!pixels || w <= 0 || h <= 0 || w > MC_IMAGE_WRITE_MAX_DIM || h > MC_IMAGE_WRITE_MAX_DIM ||
        channels < 1 || channels > 4)
        return MC_FAIL(err, MC_ERR_ARG, "PNG encode: bad image %dx%d with %d channels", w, h,
                       channels);
    png_buf b = {0};
    int ok = stbi_write_png_to_func(png_buf_append, &b, w, h, channels, pixels, w * channels);
    if (!ok || b.failed) {
        free(b.data);
        return MC_FAIL(err, MC_ERR_NOMEM, "PNG encode of a %dx%d image failed (out of memory)", w,
                       h);
    }
    *out = b.data;
    *len = b.len;
    return MC_OK;
}

mc_status mc_image_write_png(const char *path, const uint8_t *pixels, int w, int h, int channels,
                             mc_error *err) {
    uint8_t *png = NULL;
    size_t n = 0;
    MC_TRY(mc_image_encode_png(pixels, w, h, channels, &png, &n, err));
    mc_status s = mc_write_file_atomic(path, png, n, err);
    free(png);
    return s;
}
