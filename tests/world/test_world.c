/* test_world.c - unit tests of the tiny world generator (include/miclip/world.h) and the PNG
 * writer: names and class order, determinism, parameter ranges, rendered geometry and masks
 * checked against areas computed from first principles, world.json read back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miclip/fsutil.h"
#include "miclip/image_write.h"
#include "miclip/world.h"
#include "test_util.h"

#define N MC_WORLD_SIZE

static void test_names(void) {
    char a[64], b[64];
    for (int c = 0; c + 1 < MC_WORLD_NUM_CLASSES; c++) {
        mc_world_class_dir(c, a, sizeof a);
        mc_world_class_dir(c + 1, b, sizeof b);
        /* ImageFolder sorts folder names: class index must be that order. */
        CHECK_MSG(strcmp(a, b) < 0, "class dirs out of order: %s, %s", a, b);
    }
    mc_world_class_name(4 * MC_WORLD_NUM_SHAPES + 0, a, sizeof a);
    CHECK(!strcmp(a, "red circle"));
    const char *need[] = {"striped", "dotted", "checkered", "plain", "noisy"};
    for (int i = 0; i < 5; i++) {
        int found = 0;
        for (int t = 0; t < MC_WORLD_NUM_TEXTURES; t++)
            found |= !strcmp(mc_world_texture_name(t), need[i]);
        CHECK_MSG(found, "texture %s missing", need[i]);
    }
    CHECK(mc_world_colour_name(MC_WORLD_NUM_COLOURS) == NULL);
    CHECK(mc_world_shape_name(-1) == NULL);
}

static void test_params(void) {
    mc_world_params p = {.seed = 5, .per_class = 20, .val_per_class = 3, .unseen_per_class = 4};
    mc_error e = {0};
    CHECK(mc_world_params_check(&p, &e) == MC_OK);
    mc_world_params bad = p;
    bad.per_class = 0;
    CHECK(mc_world_params_check(&bad, &e) == MC_ERR_ARG);
    CHECK(mc_world_split_count(&p, MC_WORLD_TRAIN) == 20 * 36);
    CHECK(mc_world_split_count(&p, MC_WORLD_UNSEEN) == 4 * MC_WORLD_NUM_TEXTURES);

    int tex_seen[MC_WORLD_NUM_TEXTURES] = {0}, in_range = 1, label_ok = 1;
    for (int64_t i = 0; i < mc_world_split_count(&p, MC_WORLD_TRAIN); i++) {
        mc_world_sample s, s2;
        mc_world_sample_at(&p, MC_WORLD_TRAIN, i, &s);
        mc_world_sample_at(&p, MC_WORLD_TRAIN, i, &s2);
        CHECK(!memcmp(&s, &s2, sizeof s));
        tex_seen[s.texture]++;
        label_ok &= s.cls == i / 20 && s.k == i % 20 && s.colour * 6 + s.shape == s.cls;
        in_range &= s.x - s.scale >= 1.0 && s.x + s.scale <= N - 1.0 && s.y - s.scale >= 1.0 &&
                    s.y + s.scale <= N - 1.0 && s.rotation >= 0 && s.rotation < 360 &&
                    s.noise >= 0 && s.noise <= 0.03;
        for (int ch = 0; ch < 3; ch++)
            in_range &= s.fg[ch] >= 0 && s.fg[ch] <= 1 && s.bg[ch] >= 0 && s.bg2[ch] <= 1;
    }
    CHECK(in_range);
    CHECK(label_ok);
    for (int t = 0; t < MC_WORLD_NUM_TEXTURES; t++)
        CHECK_MSG(tex_seen[t] > 60, "texture %d drawn %d times of 720", t, tex_seen[t]);

    /* Unseen: grouped by texture. */
    for (int64_t i = 0; i < mc_world_split_count(&p, MC_WORLD_UNSEEN); i++) {
        mc_world_sample s;
        mc_world_sample_at(&p, MC_WORLD_UNSEEN, i, &s);
        CHECK(s.texture == i / 4 && s.k == i % 4);
    }

    /* Image i of a split does not depend on the split's size (other than through its class),
     * and differs across seeds and splits. */
    mc_world_params q = p;
    q.per_class = 40;
    mc_world_sample a, b;
    mc_world_sample_at(&p, MC_WORLD_VAL, 7, &a);
    mc_world_sample_at(&q, MC_WORLD_VAL, 7, &b);
    CHECK(!memcmp(&a, &b, sizeof a));
    q.seed = 6;
    mc_world_sample_at(&q, MC_WORLD_VAL, 7, &b);
    CHECK(a.x != b.x && a.noise_key != b.noise_key);
    mc_world_sample_at(&p, MC_WORLD_TRAIN, 7, &b);
    CHECK(a.x != b.x);

    char path[256], js[1024];
    CHECK(mc_world_sample_path(&a, path, sizeof path));
    CHECK(!strcmp(path, "val/blue_ring/00001.png")); /* val index 7, 3 per class: class 2, k 1 */
    CHECK(mc_world_sample_json(&a, js, sizeof js));
    CHECK(strstr(js, "\"class\":\"blue ring\"") != NULL);
    CHECK(!mc_world_sample_json(&a, js, 40)); /* too small: refused, not truncated silently */
}

/* Renders a noise-free plain-background sample of `shape` and counts pixels equal to the shape
 * colour; compares with area = k * scale^2 (a perimeter band of partly covered pixels allowed). */
static void check_area(int shape, double k, double perim_k) {
    mc_world_params p = {.seed = 11, .per_class = 1, .val_per_class = 0, .unseen_per_class = 0};
    mc_world_sample s;
    mc_world_sample_at(&p, MC_WORLD_TRAIN, shape, &s); /* class `shape` = blue <shape> */
    s.texture = 3;                                     /* plain */
    s.noise = 0;
    s.scale = 18;
    s.x = s.y = 31.3;
    for (int ch = 0; ch < 3; ch++) s.bg[ch] = s.bg2[ch] = 0.5;
    s.fg[0] = 1.0, s.fg[1] = 0.0, s.fg[2] = 0.0;
    static uint8_t rgb[N * N * 3];
    mc_world_render(&s, rgb);
    int full = 0, any = 0;
    for (int i = 0; i < N * N; i++) {
        full += rgb[3 * i] == 255 && rgb[3 * i + 1] == 0;
        any += rgb[3 * i] > 128; /* background red is 128 (0.5 -> 127.5 rounds to 128) */
    }
    double area = k * s.scale * s.scale, band = perim_k * s.scale;
    /* The mask: its sum is the covered area (anti-aliased edges count their fraction), it is
     * 255 exactly where the pixel is pure shape colour and 0 where it is pure background. */
    static uint8_t mask[N * N];
    mc_world_render_mask(&s, mask);
    double msum = 0;
    int mask_ok = 1;
    for (int i = 0; i < N * N; i++) {
        msum += mask[i] / 255.0;
        int pure_fg = rgb[3 * i] == 255 && rgb[3 * i + 1] == 0;
        int pure_bg = rgb[3 * i] == 128 && rgb[3 * i + 1] == 128;
        mask_ok &= (mask[i] == 255) == pure_fg && (mask[i] == 0) == pure_bg;
    }
    CHECK_MSG(mask_ok, "shape %d: mask disagrees with the rendered pixels", shape);
    CHECK_MSG(fabs(msum - area) <= 0.02 * area + 2, "shape %d: mask area %.1f, formula %.1f", shape,
              msum, area);
    CHECK_MSG(full <= area + 1 && full >= area - band, "shape %d: %d full pixels, area %.1f", shape,
              full, area);
    CHECK_MSG(any >= area - 1 && any <= area + band, "shape %d: %d touched pixels, area %.1f",
              shape, any, area);
}

static void test_render(void) {
    const double pi = 3.14159265358979323846;
    /* Shape order: circle, cross, ring, square, star, triangle (world.c, alphabetical). */
    check_area(0, pi * 0.85 * 0.85, 2 * pi * 0.85);
    check_area(1, 2 * (0.56 * 1.8) - 0.56 * 0.56, 8 * 0.9);
    check_area(2, pi * (0.95 * 0.95 - 0.55 * 0.55), 2 * pi * 1.5);
    check_area(3, 1.4 * 1.4, 4 * 1.4);
    check_area(5, 3 * sqrt(3.0) / 4, 3 * sqrt(3.0));
    /* Star: 10 triangles (origin, outer vertex, inner vertex), each 0.5*1*0.42*sin(36 deg). */
    check_area(4, 10 * 0.5 * 0.42 * sin(pi / 5), 10 * 0.9);

    /* Same sample, same pixels; another seed, other pixels. */
    mc_world_params p = {.seed = 2, .per_class = 2, .val_per_class = 0, .unseen_per_class = 2};
    static uint8_t a[N * N * 3], b[N * N * 3];
    for (int i = 0; i < 12; i++) {
        mc_world_sample s;
        mc_world_sample_at(&p, MC_WORLD_UNSEEN, i, &s);
        mc_world_render(&s, a);
        mc_world_render(&s, b);
        CHECK(!memcmp(a, b, sizeof a));
    }
    mc_world_sample s;
    mc_world_sample_at(&p, MC_WORLD_TRAIN, 0, &s);
    mc_world_render(&s, a);
    p.seed = 3;
    mc_world_sample_at(&p, MC_WORLD_TRAIN, 0, &s);
    mc_world_render(&s, b);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

static void test_png(void) {
    uint8_t px[5 * 3 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 17);
    uint8_t *png = NULL, *png2 = NULL;
    size_t n = 0, n2 = 0;
    mc_error e = {0};
    CHECK(mc_image_encode_png(px, 5, 3, 3, &png, &n, &e) == MC_OK);
    CHECK(mc_image_encode_png(px, 5, 3, 3, &png2, &n2, &e) == MC_OK);
    CHECK(n > 33 && n == n2 && !memcmp(png, png2, n));
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    CHECK(!memcmp(png, sig, 8));
    /* IHDR: width and height big-endian at bytes 16 and 20, bit depth 8, colour type 2 (RGB). */
    CHECK(png[19] == 5 && png[23] == 3 && png[24] == 8 && png[25] == 2);
    free(png);
    free(png2);
    CHECK(mc_image_encode_png(px, 0, 3, 3, &png, &n, &e) == MC_ERR_ARG && png == NULL);
    CHECK(mc_image_encode_png(px, 5, 3, 5, &png, &n, &e) == MC_ERR_ARG);
    CHECK(mc_image_write_png("/nonexistent-dir/x.png", px, 5, 3, 3, &e) != MC_OK);
}

static void test_load_params(void) {
    const char *dir = "world_params_test";
    char path[256];
    mc_error e = {0};
    CHECK(mc_mkdir_p(dir, &e) == MC_OK);
    snprintf(path, sizeof path, "%s/world.json", dir);
    const char *good = "{\"generator\":\"miclip world make\",\"version\":1,\"seed\":42,\"size\":64,"
                       "\"per_class\":7,\"val_per_class\":3,\"unseen_per_class\":0,"
                       "\"classes\":36,\"textures\":6}";
    CHECK(mc_write_file_atomic(path, good, strlen(good), &e) == MC_OK);
    mc_world_params p = {0};
    CHECK(mc_world_load_params(dir, &p, &e) == MC_OK);
    CHECK(p.seed == 42 && p.per_class == 7 && p.val_per_class == 3 && p.unseen_per_class == 0);
    const char *bad[] = {
        "{\"generator\":\"other\",\"version\":1,\"seed\":1,\"size\":64,\"per_class\":1,"
        "\"val_per_class\":0,\"unseen_per_class\":0}",
        "{\"generator\":\"miclip world make\",\"version\":1,\"seed\":1,\"size\":64,"
        "\"per_class\":0,\"val_per_class\":0,\"unseen_per_class\":0}",
        "{\"generator\":\"miclip world make\",\"version\":1,\"size\":64,\"per_class\":1,"
        "\"val_per_class\":0,\"unseen_per_class\":0}",
        "{\"generator\":\"miclip world make\",\"version\":1,\"seed\":\"1\",\"size\":64,"
        "\"per_class\":1,\"val_per_class\":0,\"unseen_per_class\":0}",
        "[1,2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(mc_write_file_atomic(path, bad[i], strlen(bad[i]), &e) == MC_OK);
        mc_error be = {0};
        CHECK_MSG(mc_world_load_params(dir, &p, &be) != MC_OK && strstr(be.msg, "world.json"),
                  "bad world.json %zu accepted or message without the file: %s", i, be.msg);
    }
    mc_error ne = {0};
    CHECK(mc_world_load_params("no-such-world-dir", &p, &ne) != MC_OK);
}

int main(void) {
    test_names();
    test_params();
    test_render();
    test_png();
    test_load_params();
    return TEST_SUMMARY();
}
