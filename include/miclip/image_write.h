/* image_write.h - PNG encoding for images miclip makes itself (the tiny world, figures).
 *
 * Pixels are 8-bit, row-major, interleaved (HWC), 1 to 4 channels, no row padding. Encoding uses
 * stb_image_write (src/image/image_write.c is the one translation unit that compiles it), whose
 * PNG and zlib output depend only on the pixels: the same pixels give the same bytes, which the
 * world's "same seed, same bytes" promise relies on.
 *
 * Ownership: the caller owns the pixels; mc_image_encode_png returns a malloc'd buffer the caller
 * frees with free(). mc_image_write_png writes atomically (fsutil.h), so a killed run never leaves
 * a half-written PNG under its final name.
 */
#ifndef MICLIP_IMAGE_WRITE_H
#define MICLIP_IMAGE_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "miclip/status.h"

/* Largest width or height accepted (guards the size arithmetic). */
#define MC_IMAGE_WRITE_MAX_DIM 65535

/* Encodes w x h x channels pixels as PNG into *out (malloc'd, caller frees) of *len bytes. */
mc_status mc_image_encode_png(const uint8_t *pixels, int w, int h, int channels, uint8_t **out,
                              size_t *len, mc_error *err);

/* Encodes as mc_image_encode_png and writes the bytes to path atomically. */
mc_status mc_image_write_png(const char *path, const uint8_t *pixels, int w, int h, int channels,
                             mc_error *err);

#endif
