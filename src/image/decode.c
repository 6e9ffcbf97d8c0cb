/* decode.c - file reading, format sniffing, JPEG decoding with libjpeg-turbo, and the
 * conversions to RGB that Pillow's Image.convert("RGB") performs.
 *
 * JPEG: the decoder settings are libjpeg's defaults, which are what Pillow uses when no draft
 * mode is requested (JDCT_ISLOW, fancy upsampling on), so the pixels equal PIL's bit for bit.
 * Output colour spaces follow Pillow's JpegImagePlugin: 1 component -> L, 3 -> RGB, 4 -> CMYK
 * read with Pillow's "CMYK;I" raw mode (Adobe polarity assumed for every 4-component file),
 * then Pillow's cmyk2rgb. Pillow raises on truncated files (LOAD_TRUNCATED_IMAGES is False),
 * so libjpeg's "premature end of data" warning, which marks a truncated file with an in-memory
 * source, is an error here; other warnings are ignored, as Pillow ignores them. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
/* jpeglib.h needs stdio.h and stddef.h first; jerror.h has the message codes */
#include <jpeglib.h>
#include <jerror.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image_internal.h"
#include "miclip/checked.h"
#include "miclip/fsutil.h"
#include "miclip/image.h"

mc_image_caps mc_image_caps_resolve(const mc_image_caps *c) {
    mc_image_caps r = {MC_IMAGE_DEFAULT_MAX_PIXELS, MC_IMAGE_DEFAULT_MAX_FILE_BYTES,
                       MC_IMAGE_DEFAULT_MAX_SCANS};
    if (c) {
        if (c->max_pixels) r.max_pixels = c->max_pixels;
        if (c->max_file_bytes) r.max_file_bytes = c->max_file_bytes;
        if (c->max_jpeg_scans > 0) r.max_jpeg_scans = c->max_jpeg_scans;
    }
    return r;
}

mc_status mc_image_check_dims(uint64_t w, uint64_t h, const mc_image_caps *caps, const char *label,
                              mc_error *err) {
    if (w == 0 || h == 0)
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: image has zero size (%llux%llu)", label,
                       (unsigned long long)w, (unsigned long long)h);
    /* int dimensions everywhere downstream; 3 bytes per pixel must fit size_t too */
    if (w > 0x7fffffffull / 4 || h > 0x7fffffffull / 4 || w * h > caps->max_pixels)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                       "%s: image is %llux%llu = %llu pixels, above the cap of %llu pixels "
                       "(mc_image_caps.max_pixels)",
                       label, (unsigned long long)w, (unsigned long long)h,
                       (unsigned long long)(w * h), (unsigned long long)caps->max_pixels);
    return MC_OK;
}

mc_image_format mc_image_sniff(const uint8_t *buf, size_t len) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) return MC_IMAGE_FMT_JPEG;
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return MC_IMAGE_FMT_PNG;
    return MC_IMAGE_FMT_UNKNOWN;
}

mc_status mc_image_alloc(int w, int h, mc_image *img, mc_error *err) {
    memset(img, 0, sizeof *img);
    size_t n;
    if (w <= 0 || h <= 0 || !mc_size_mul((size_t)w, (size_t)h, &n) || !mc_size_mul(n, 3, &n))
        return MC_FAIL(err, MC_ERR_NOMEM, "image size %dx%d is invalid or too large", w, h);
    img->data = malloc(n ? n : 1);
    if (!img->data)
        return MC_FAIL(err, MC_ERR_NOMEM, "cannot allocate a %dx%d RGB image (%zu bytes)", w, h, n);
    img->w = w;
    img->h = h;
    return MC_OK;
}

void mc_image_free(mc_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* ---- Pillow's mode conversions to RGB -------------------------------------------------- */

void mc_rgb_from_gray(uint8_t *dst, const uint8_t *src, int n, int stride) {
    for (int i = 0; i < n; i++) {
        uint8_t v = src[(size_t)i * stride];
        dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = v;
    }
}

void mc_rgb_from_rgbx(uint8_t *dst, const uint8_t *src, int n, int stride) {
    for (int i = 0; i < n; i++) {
        const uint8_t *s = src + (size_t)i * stride;
        dst[3 * i] = s[0];
        dst[3 * i + 1] = s[1];
        dst[3 * i + 2] = s[2];
    }
}

/* Pillow's cmyk2rgb after its "CMYK;I" unpacker (which inverts every byte): the raw values
 * libjpeg returns are Adobe-inverted, so with c = 255 - raw: out = k' - c*k'/255 with
 * k' = 255 - k = raw_k, MULDIV255 rounding as Pillow does it. */
static void rgb_from_cmyk_inverted(uint8_t *dst, const uint8_t *src, int n) {
    for (int i = 0; i < n; i++) {
        const uint8_t *s = src + 4 * (size_t)i;
        int nk = s[3]; /* 255 - (255 - raw_k) */
        for (int c = 0; c < 3; c++) {
            int v = 255 - s[c];
            int t = v * nk + 128;
            int m = ((t >> 8) + t) >> 8;
            int o = nk - m;
            dst[3 * i + c] = (uint8_t)(o < 0 ? 0 : o > 255 ? 255 : o);
        }
    }
}

/* ---- JPEG ------------------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

typedef struct {
    struct jpeg_progress_mgr pub;
    int max_scans;
    int too_many;
} jpeg_prog;

static void jpeg_on_error(j_common_ptr ci) {
    jpeg_err *e = (jpeg_err *)ci->err;
    ci->err->format_message(ci, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr ci, int level) {
    jpeg_err *e = (jpeg_err *)ci->err;
    if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) {
        /* a truncated file: Pillow raises "image file is truncated" */
        snprintf(e->msg, sizeof e->msg, "file is truncated (premature end of JPEG data)");
        longjmp(e->jump, 1);
    }
    if (level < 0) ci->err->num_warnings++;
}

static void jpeg_on_output(j_common_ptr ci) { (void)ci; }

static void jpeg_on_progress(j_common_ptr ci) {
    jpeg_prog *p = (jpeg_prog *)ci->progress;
    if (ci->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)ci;
        if (d->input_scan_number > p->max_scans) {
            p->too_many = 1;
            jpeg_err *e = (jpeg_err *)ci->err;
            snprintf(e->msg, sizeof e->msg, "progressive JPEG has more than %d scans",
                     p->max_scans);
            longjmp(e->jump, 1);
        }
    }
}

/* State that must survive longjmp lives here, not in locals. */
typedef struct {
    struct jpeg_decompress_struct ci;
    jpeg_err jerr;
    jpeg_prog prog;
    uint8_t *row;
    mc_image img;
} jpeg_state;

static mc_status jpeg_decode_impl(jpeg_state *s, const uint8_t *buf, size_t len, const char *label,
                                  const mc_image_caps *caps, mc_error *err) {
    s->ci.err = jpeg_std_error(&s->jerr.pub);
    s->jerr.pub.error_exit = jpeg_on_error;
    s->jerr.pub.emit_message = jpeg_on_message;
    s->jerr.pub.output_message = jpeg_on_output;
    if (setjmp(s->jerr.jump)) {
        if (s->prog.too_many)
            return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: %s (mc_image_caps.max_jpeg_scans)", label,
                           s->jerr.msg);
        return MC_FAIL(err, MC_ERR_FORMAT, "%s: cannot decode JPEG: %s", label, s->jerr.msg);
    }
    jpeg_create_decompress(&s->ci);
    s->prog.pub.progress_monitor = jpeg_on_progress;
    s->prog.max_scans = caps->max_jpeg_scans;
    s->ci.progress = &s->prog.pub;
    jpeg_mem_src(&s->ci, buf, (unsigned long)len);
    jpeg_read_header(&s->ci, TRUE);

    MC_TRY(mc_image_check_dims(s->ci.image_width, s->ci.image_height, caps, label, err));
    int nc = s->ci.num_components;
    if (s->ci.data_precision != 8)
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: %d-bit JPEG samples are not supported", label,
                       s->ci.data_precision);
    if (nc == 1)
        s->ci.out_color_space = JCS_GRAYSCALE;
    else if (nc == 3)
        s->ci.out_color_space = JCS_RGB;
    else if (nc == 4)
        s->ci.out_color_space = JCS_CMYK;
    else
        return MC_FAIL(err, MC_ERR_UNSUPPORTED, "%s: JPEG with %d components is not supported",
                       label, nc);
    /* Pillow's defaults (no draft): JDCT_ISLOW, fancy upsampling, full scale. */
    s->ci.dct_method = JDCT_ISLOW;
    s->ci.do_fancy_upsampling = TRUE;

    jpeg_start_decompress(&s->ci);
    int w = (int)s->ci.output_width, h = (int)s->ci.output_height;
    MC_TRY(mc_image_alloc(w, h, &s->img, err));
    if (nc != 3) {
        s->row = mc_alloc_array((size_t)w, (size_t)nc);
        if (!s->row) return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", label);
    }
    while (s->ci.output_scanline < s->ci.output_height) {
        size_t y = s->ci.output_scanline;
        uint8_t *dst = s->img.data + y * (size_t)w * 3;
        JSAMPROW rp = nc == 3 ? dst : s->row;
        if (jpeg_read_scanlines(&s->ci, &rp, 1) != 1)
            return MC_FAIL(err, MC_ERR_FORMAT, "%s: JPEG decoding stalled at row %zu", label, y);
        if (nc == 1)
            mc_rgb_from_gray(dst, s->row, w, 1);
        else if (nc == 4)
            rgb_from_cmyk_inverted(dst, s->row, w);
    }
    jpeg_finish_decompress(&s->ci);
    return MC_OK;
}

static mc_status jpeg_decode(const uint8_t *buf, size_t len, const char *label,
                             const mc_image_caps *caps, mc_image *img, mc_error *err) {
    jpeg_state *s = calloc(1, sizeof *s);
    if (!s) return MC_FAIL(err, MC_ERR_NOMEM, "%s: out of memory", label);
    mc_status st = jpeg_decode_impl(s, buf, len, label, caps, err);
    jpeg_destroy_decompress(&s->ci);
    free(s->row);
    if (st == MC_OK)
        *img = s->img;
    else
        mc_image_free(&s->img);
    free(s);
    return st;
}

/* ---- entry points ---------------------------------------------------------------------- */

mc_status mc_image_decode(const uint8_t *buf, size_t len, const char *label,
                          const mc_image_caps *caps_in, mc_image *img, mc_error *err) {
    memset(img, 0, sizeof *img);
    if (!label) label = "(image)";
    mc_image_caps caps = mc_image_caps_resolve(caps_in);
    if (len == 0) return MC_FAIL(err, MC_ERR_FORMAT, "%s: file is empty", label);
    if (len > caps.max_file_bytes)
        return MC_FAIL(
            err, MC_ERR_UNSUPPORTED,
            "%s: file is %zu bytes, above the cap of %llu (mc_image_caps.max_file_bytes)", label,
            len, (unsigned long long)caps.max_file_bytes);
    switch (mc_image_sniff(buf, len)) {
    case MC_IMAGE_FMT_JPEG: return jpeg_decode(buf, len, label, &caps, img, err);
    case MC_IMAGE_FMT_PNG: return mc_png_decode(buf, len, label, &caps, img, err);
    default: break;
    }
    return MC_FAIL(err, MC_ERR_UNSUPPORTED,
                   "%s: not a JPEG or PNG file (unrecognised leading bytes %02x %02x %02x %02x)",
                   label, len > 0 ? buf[0] : 0, len > 1 ? buf[1] : 0, len > 2 ? buf[2] : 0,
                   len > 3 ? buf[3] : 0);
}

mc_status mc_image_load(const char *path, const mc_image_caps *caps_in, mc_image *img,
                        mc_error *err) {
    memset(img, 0, sizeof *img);
    mc_image_caps caps = mc_image_caps_resolve(caps_in);
    struct stat st;
    if (stat(path, &st) != 0)
        return MC_FAIL(err, MC_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return MC_FAIL(err, MC_ERR_IO, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > caps.max_file_bytes)
        return MC_FAIL(
            err, MC_ERR_UNSUPPORTED,
            "%s: file is %lld bytes, above the cap of %llu (mc_image_caps.max_file_bytes)", path,
            (long long)st.st_size, (unsigned long long)caps.max_file_bytes);
    char *buf = NULL;
    size_t len = 0;
    MC_TRY(mc_read_file(path, (size_t)caps.max_file_bytes, &buf, &len, err));
    mc_status s = mc_image_decode((const uint8_t *)buf, len, path, &caps, img, err);
    free(buf);
    return s;
}
