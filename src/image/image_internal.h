/* image_internal.h - helpers shared by the files of src/image (not a public API). */
#ifndef MICLIP_IMAGE_INTERNAL_H
#define MICLIP_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "miclip/image.h"

/* caps with zero fields replaced by the defaults */
mc_image_caps mc_image_caps_resolve(const mc_image_caps *c);
/* MC_ERR_FORMAT for zero sizes, MC_ERR_UNSUPPORTED above the pixel cap; label names the file */
mc_status mc_image_check_dims(uint64_t w, uint64_t h, const mc_image_caps *caps, const char *label,
                              mc_error *err);
/* Pillow's L->RGB and RGBA/RGBX->RGB over n pixels, source pixel stride in bytes */
void mc_rgb_from_gray(uint8_t *dst, const uint8_t *src, int n, int stride);
void mc_rgb_from_rgbx(uint8_t *dst, const uint8_t *src, int n, int stride);
/* png_stb.c: PNG through stb_image (PNG only), converted as Pillow converts to RGB */
mc_status mc_png_decode(const uint8_t *buf, size_t len, const char *label,
                        const mc_image_caps *caps, mc_image *img, mc_error *err);

#endif
