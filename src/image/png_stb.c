/* png_stb.c - PNG decoding through stb_image, the one translation unit that compiles it.
 *
 * Debian's stb_image is v2.27, older than its last security fixes, so it is built for PNG only
 * (STBI_ONLY_PNG, no stdio), the header is read with stbi_info first and the dimensions are
 * checked against the pixel cap before anything is decoded, and every allocation stb makes goes
 * through a wrapper that refuses blocks larger than this decode can legitimately need (which
 * stops zlib "bombs": stb grows its inflate buffer by doubling up to 2 GiB otherwise).
 *
 * Conversion to RGB follows Pillow 9.4's PngImagePlugin modes and Image.convert("RGB"):
 *   gray 1/2/4/8-bit -> L (low depths scaled to 0..255, as stb also does), replicated;
 *   gray 16-bit      -> mode "I" (the 16-bit value); convert("RGB") clips it to 0..255;
 *   gray+alpha       -> LA (8-bit) or RGBA from "LA;16B" (16-bit: high byte); alpha dropped;
 *   RGB / RGBA       -> 8-bit as is, 16-bit via "RGB;16B"/"RGBA;16B" (high byte); alpha dropped;
 *   palette          -> P, expanded through the palette; tRNS ignored.
 * CgBI ("iPhone") PNGs are rejected: Pillow cannot read them either. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_internal.h"
#include "miclip/checked.h"

/* stb's allocation macros take no context argument, so the per-decode allocation limit is
 * thread-local; it is set and cleared inside mc_png_decode only. */
static _Thread_local size_t png_alloc_limit;

static void *png_malloc(size_t n) { return n > png_alloc_limit ? NULL : malloc(n); }
static void *png_realloc(void *p, size_t n) { return n > png_alloc_limit ? NULL : realloc(p, n); }

#define STBI_MALLOC(n) png_malloc(n)
#define STBI_REALLOC(p, n) png_realloc(p, n)
#define STBI_FREE(p) free(p)
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ASSERT(x) ((void)0) /* never abort the process on hostile input */
#define STBI_MAX_DIMENSIONS (1 << 20)
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wtype-limits"
#elif defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wshadow"
#pragma clang diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb_image.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#elif defined(__clang__)
#pragma clang diagnostic pop
#endif

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* stb's reason strings can embed raw chunk-type bytes from the file: keep them printable. */
static const char *stb_reason(char *buf, size_t cap) {
    const char *r = stbi_failure_reason();
    size_t i = 0;
    for (; r && r[i] && i + 1 < cap; i++) buf[i] = (r[i] >= 0x20 && r[i] < 0x7f) ? r[i] : '?';
    buf[i] = 0;
    return buf;
}

/* stb v2.27 computes NULL + 0 (undefined behaviour) when the first IDAT chunk is empty, which
 * is legal PNG. Returns a malloc'ed copy without empty IDAT chunks when there is one, else NULL
 * (also on allocation failure, when the caller decodes the original). */
static uint8_t *drop_empty_idat(const uint8_t *buf, size_t len, size_t *out_len) {
    bool any = false;
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = be32(buf + off);
        if (n > len - off - 12) break;
        if (n == 0 && memcmp(buf + off + 4, "IDAT", 4) == 0) any = true;
        if (memcmp(buf + off + 4, "IEND", 4) == 0) break;
        off += 12 + (size_t)n;
    }
    if (!any) return NULL;
    uint8_t *c = malloc(len);
    if (!c) return NULL;
    memcpy(c, buf, 8);
    size_t off = 8, o = 8;
    while (off + 12 <= len) {
        uint32_t n = be32(buf + off);
        if (n > len - off - 12) break;
        if (!(n == 0 && memcmp(buf + off + 4, "IDAT", 4) == 0)) {
            memcpy(c + o, buf + off, 12 + (size_t)n);
            o += 12 + (size_t)n;
        }
        off += 12 + (size_t)n;
    }
    memcpy(c + o, buf + off, len - off); /* any tail as it was */
    *out_len = o + (len - off);
    return c;
}

static mc_status png_decode_impl(const uint8_t *buf, size_t len, const char *label,
                                 const mc_image_caps *caps, mc_image *img, mc_error *err);

mc_status mc_png_decode(const uint8_t *buf, size_t len, const char *label,
                        const mc_image_caps *caps, mc_image *img, mc_error *err) {
    size_t clen = 0;
    uint8_t *copy = len >= 8 ? drop_empty_idat(buf, len, &clen) : NULL;
    mc_status st = copy ? png_decode_impl(copy, clen, label, caps, img, err)
                        : png_decode_impl(buf, len, label, caps, img, err);
    free(copy);
    return st;
}

static mc_status png_decode_impl(const uint8_t *buf, size_t len, const char *label,
                                 const mc_image_caps *caps, mc_image *img, mc_error *err) {
    memset(img, 0, sizeof *img);
    /* signature (8) + IHDR length (4) + type (4) + 13 bytes of IHDR data */
    if (len < 33)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: PNG file is truncated (%zu bytes)", label, len);
    if (memcmp(buf + 12, "CgBI", 4) == 0)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: Apple CgBI PNG is not a standard PNG", label);
    if (memcmp(buf + 12, "IHDR", 4) != 0 || be32(buf + 8) != 13)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: PNG does not start with an IHDR chunk", label);
    uint32_t hw = be32(buf + 16), hh = be32(buf + 20);
    int depth = buf[24], ctype = buf[25];
    MC_TRY(mc_image_check_dims(hw, hh, caps, label, err));
    if (hw > STBI_MAX_DIMENSIONS || hh > STBI_MAX_DIMENSIONS)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: PNG side above %d pixels", label,
                       STBI_MAX_DIMENSIONS);
    if (len > INT32_MAX)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: PNG file larger than 2 GiB", label);

    char why[64];
    int w = 0, h = 0, n = 0;
    if (!stbi_info_from_memory(buf, (int)len, &w, &h, &n))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: invalid PNG header (%s)", label,
                       stb_reason(why, sizeof why));
    if ((uint32_t)w != hw || (uint32_t)h != hh || n < 1 || n > 4)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: inconsistent PNG header", label);
    bool is16 = stbi_is_16_bit_from_memory(buf, (int)len) != 0;
    if (is16 != (depth == 16))
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: inconsistent PNG bit depth", label);

    /* Largest legitimate block: the inflated data (<= 8 bytes per pixel plus filter bytes and
     * Adam7 overhead, doubled by stb's growth), or the concatenated IDAT (<= 2x file size). */
    size_t px = (size_t)w * (size_t)h, lim1, lim2;
    if (!mc_size_mul(px, 20, &lim1) ||
        !mc_size_add(lim1, (size_t)(w + h) * 64 + (1u << 20), &lim1) ||
        !mc_size_mul(len, 2, &lim2) || !mc_size_add(lim2, 1u << 20, &lim2))
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: PNG too large", label);
    png_alloc_limit = lim1 > lim2 ? lim1 : lim2;

    mc_status st = mc_image_alloc(w, h, img, err);
    if (st != MC_OK) {
        png_alloc_limit = 0;
        return st;
    }
    int x = 0, y = 0, nc = 0;
    if (is16) {
        stbi_us *p = stbi_load_16_from_memory(buf, (int)len, &x, &y, &nc, 0);
        png_alloc_limit = 0;
        if (!p || x != w || y != h || nc < 1 || nc > 4) {
            stbi_image_free(p);
            mc_image_free(img);
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: cannot decode PNG: %s", label,
                           p ? "inconsistent size" : stb_reason(why, sizeof why));
        }
        uint8_t *d = img->data;
        for (size_t i = 0; i < px; i++, d += 3) {
            const stbi_us *s = p + i * (size_t)nc;
            if (ctype == 0) { /* Pillow mode "I", then clip to 0..255 */
                uint8_t v = s[0] > 255 ? 255 : (uint8_t)s[0];
                d[0] = d[1] = d[2] = v;
            } else if (nc <= 2) {
                d[0] = d[1] = d[2] = (uint8_t)(s[0] >> 8);
            } else {
                d[0] = (uint8_t)(s[0] >> 8);
                d[1] = (uint8_t)(s[1] >> 8);
                d[2] = (uint8_t)(s[2] >> 8);
            }
        }
        stbi_image_free(p);
    } else {
        stbi_uc *p = stbi_load_from_memory(buf, (int)len, &x, &y, &nc, 0);
        png_alloc_limit = 0;
        if (!p || x != w || y != h || nc < 1 || nc > 4) {
            stbi_image_free(p);
            mc_image_free(img);
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: cannot decode PNG: %s", label,
                           p ? "inconsistent size" : stb_reason(why, sizeof why));
        }
        for (int r = 0; r < h; r++) {
            const uint8_t *s = p + (size_t)r * w * nc;
            uint8_t *d = img->data + (size_t)r * w * 3;
            if (nc <= 2)
                mc_rgb_from_gray(d, s, w, nc);
            else
                mc_rgb_from_rgbx(d, s, w, nc);
        }
        stbi_image_free(p);
    }
    return MC_OK;
}
