/* image_tool.c - a small driver that exposes src/image to the Python reference test
 * (tests/image/check_image.py), which compares every output with Pillow.
 *
 *   image_tool decode IMG OUT.rgb [MAX_PIXELS [MAX_SCANS]] -> raw RGB bytes; prints "W H"
 *   image_tool resize IMG W H FILTER OUT.rgb     -> decode, Pillow resize; prints "W H"
 *   image_tool preproc CONFIG.json IMG OUT.f32 OUT.u8  -> float32 CHW and the uint8 crop
 *                                                 (HWC); prints "H W"
 *   image_tool batch CONFIG.json OUT.f32 IMG...  -> mc_preprocess_files; prints "N H W"
 *   image_tool ycck OUT.jpg                      -> writes a 4-component YCCK JPEG (Adobe marker,
 *                                                 transform 2), which Pillow cannot write
 *   image_tool cmyk-noadobe OUT.jpg              -> a plain CMYK JPEG without the Adobe marker
 *   image_tool bench IMG CONFIG.json N           -> times decode and preprocess in-process
 * On failure it prints "ERROR <status name>: <message>" on stdout and exits 3. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
/* after stdio.h, as jpeglib.h requires */
#include <jpeglib.h>

#include "miclip/image.h"

static int fail(const mc_error *e) {
    printf("ERROR %s: %s\n", mc_status_name(e->code), e->msg);
    return 3;
}

static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    return fclose(f) != 0;
}

static int write_cmyk(const char *path, bool ycck, bool adobe) {
    enum { W = 45, H = 37 };
    static uint8_t px[W * H * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 4; c++)
                px[(y * W + x) * 4 + c] =
                    (uint8_t)((x * (7 + c) + y * (3 + 2 * c) + c * 61) & 0xff);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = W;
    ci.image_height = H;
    ci.input_components = 4;
    ci.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, ycck ? JCS_YCCK : JCS_CMYK); /* Adobe marker, transform 2 or 0 */
    ci.write_Adobe_marker = adobe ? TRUE : FALSE;
    jpeg_set_quality(&ci, 90, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < H) {
        JSAMPROW r = px + ci.next_scanline * W * 4;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return fclose(f) != 0;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int bench(const char *img_path, const char *cfg, int n) {
    mc_error e = {0};
    mc_preproc p;
    mc_image img = {0};
    if (mc_preproc_load_file(cfg, &p, &e) != MC_OK) return fail(&e);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        mc_image_free(&img);
        if (mc_image_load(img_path, NULL, &img, &e) != MC_OK) return fail(&e);
    }
    double t1 = now_s();
    int h = 0, w = 0;
    if (mc_preproc_output_size(&p, img.w, img.h, &h, &w, &e) != MC_OK) return fail(&e);
    float *out = malloc((size_t)3 * h * w * sizeof(float));
    if (!out) return 1;
    for (int i = 0; i < n; i++)
        if (mc_preprocess(&p, &img, out, NULL, &e) != MC_OK) return fail(&e);
    double t2 = now_s();
    printf("%.3f %.3f\n", (t1 - t0) / n * 1e3, (t2 - t1) / n * 1e3);
    free(out);
    mc_image_free(&img);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "ycck")) return write_cmyk(argv[2], true, true);
    if (argc == 3 && !strcmp(argv[1], "cmyk-noadobe")) return write_cmyk(argv[2], false, false);
    if (argc == 5 && !strcmp(argv[1], "bench")) return bench(argv[2], argv[3], atoi(argv[4]));
    mc_error e = {0};
    if (argc >= 4 && !strcmp(argv[1], "decode")) {
        mc_image_caps caps = {0};
        if (argc >= 5) caps.max_pixels = strtoull(argv[4], NULL, 10);
        if (argc >= 6) caps.max_jpeg_scans = atoi(argv[5]);
        mc_image img = {0};
        if (mc_image_load(argv[2], &caps, &img, &e) != MC_OK) return fail(&e);
        int rc = write_all(argv[3], img.data, (size_t)img.w * img.h * 3);
        printf("%d %d\n", img.w, img.h);
        mc_image_free(&img);
        return rc;
    }
    if (argc == 7 && !strcmp(argv[1], "resize")) {
        mc_image img = {0}, out = {0};
        if (mc_image_load(argv[2], NULL, &img, &e) != MC_OK) return fail(&e);
        mc_status st = mc_image_resize(&img, atoi(argv[3]), atoi(argv[4]),
                                       (mc_resample)atoi(argv[5]), &out, &e);
        mc_image_free(&img);
        if (st != MC_OK) return fail(&e);
        int rc = write_all(argv[6], out.data, (size_t)out.w * out.h * 3);
        printf("%d %d\n", out.w, out.h);
        mc_image_free(&out);
        return rc;
    }
    if (argc == 6 && !strcmp(argv[1], "preproc")) {
        mc_preproc p;
        mc_image img = {0};
        if (mc_preproc_load_file(argv[2], &p, &e) != MC_OK) return fail(&e);
        if (mc_image_load(argv[3], NULL, &img, &e) != MC_OK) return fail(&e);
        int h = 0, w = 0;
        if (mc_preproc_output_size(&p, img.w, img.h, &h, &w, &e) != MC_OK) return fail(&e);
        char desc[512];
        if (!mc_preproc_describe(&p, desc, sizeof desc)) return 1;
        fprintf(stderr, "%s\n", desc);
        size_t n = (size_t)3 * h * w;
        float *out = malloc(n * sizeof(float));
        uint8_t *u8 = malloc(n);
        if (!out || !u8) return 1;
        if (mc_preprocess(&p, &img, out, u8, &e) != MC_OK) return fail(&e);
        int rc = write_all(argv[4], out, n * sizeof(float)) | write_all(argv[5], u8, n);
        printf("%d %d\n", h, w);
        free(out);
        free(u8);
        mc_image_free(&img);
        return rc;
    }
    if (argc >= 5 && !strcmp(argv[1], "batch")) {
        mc_preproc p;
        if (mc_preproc_load_file(argv[2], &p, &e) != MC_OK) return fail(&e);
        int h = 0, w = 0;
        if (!mc_preproc_fixed_size(&p, &h, &w)) {
            printf("ERROR unsupported: size not fixed\n");
            return 3;
        }
        size_t n = (size_t)(argc - 4);
        float *out = malloc(n * 3 * (size_t)h * w * sizeof(float));
        if (!out) return 1;
        if (mc_preprocess_files(&p, (const char *const *)(argv + 4), n, NULL, out, &e) != MC_OK)
            return fail(&e);
        int rc = write_all(argv[3], out, n * 3 * (size_t)h * w * sizeof(float));
        printf("%zu %d %d\n", n, h, w);
        free(out);
        return rc;
    }
    fprintf(stderr, "usage: see the comment at the top of tests/image/image_tool.c\n");
    return 2;
}
