/* fuzz_image.c - libFuzzer entry for JPEG/PNG decoding and preprocessing. Any input must give
 * either an image or a clean error; a decoded image is then run through a resize filter chosen
 * by the input's last byte and the CLIP and ConvNext pipelines. Small caps keep runs fast. */
#include <stdint.h>
#include <stdlib.h>

#include "miclip/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_image_caps caps = {.max_pixels = 1u << 22, .max_file_bytes = 1u << 22, .max_jpeg_scans = 64};
    mc_image img = {0};
    mc_error e = {0};
    if (mc_image_decode(data, size, "fuzz", &caps, &img, &e) != MC_OK) return 0;
    mc_image r = {0};
    mc_resample f = (mc_resample)(size ? data[size - 1] % 6 : 0);
    if (mc_image_resize(&img, 1 + img.w / 3, 7, f, &r, &e) == MC_OK) mc_image_free(&r);
    /* shortest-edge resizes of very thin images are legal but slow under sanitizers */
    if (img.w > 16 * img.h || img.h > 16 * img.w) {
        mc_image_free(&img);
        return 0;
    }
    mc_preproc_kind kinds[2] = {MC_PREPROC_CLIP, MC_PREPROC_CONVNEXT};
    for (int k = 0; k < 2; k++) {
        mc_preproc p;
        mc_preproc_defaults(kinds[k], &p);
        p.shortest_edge = 32;
        p.crop_h = p.crop_w = 28;
        int h = 0, w = 0;
        if (mc_preproc_output_size(&p, img.w, img.h, &h, &w, &e) != MC_OK) continue;
        float *out = malloc((size_t)3 * h * w * sizeof(float));
        if (out) mc_preprocess(&p, &img, out, NULL, &e);
        free(out);
    }
    mc_image_free(&img);
    return 0;
}
